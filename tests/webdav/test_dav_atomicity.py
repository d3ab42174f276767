"""Atomicity: interrupted uploads, MOVE/COPY over existing resources, metadata-only renames, editors' saves."""

from __future__ import annotations

import threading
import time
from pathlib import PurePosixPath

import httpx
from support.dav import (
    DAV,
    TEST_NS,
    Account,
    GatewayProcess,
    MiB,
    get,
    href,
    interrupted_put,
    prop,
    propfind,
    proppatch_body,
    put,
    seeded_bytes,
    sha256,
)


def dest(c: httpx.Client, path: str) -> str:
    return str(c.base_url.join(href(path)))


def move(c: httpx.Client, src: str, dst: str, overwrite: str = "T") -> httpx.Response:
    return c.request("MOVE", href(src), headers={"Destination": dest(c, dst), "Overwrite": overwrite})


def copy(c: httpx.Client, src: str, dst: str, overwrite: str = "T", depth: str = "infinity") -> httpx.Response:
    return c.request("COPY", href(src), headers={"Destination": dest(c, dst), "Overwrite": overwrite,
                                                 "Depth": depth})


def tree(c: httpx.Client, folder: str) -> dict[str, bytes | None]:
    """Relative path -> content (None for folders), walked with Depth 1 PROPFINDs."""
    out: dict[str, bytes | None] = {}
    todo = [folder.rstrip("/") + "/"]
    while todo:
        cur = todo.pop()
        for res in propfind(c, cur, [f"{DAV}resourcetype"], depth="1"):
            p = res.path.rstrip("/")
            if p == cur.rstrip("/"):
                continue
            rel = str(PurePosixPath(p).relative_to(folder.rstrip("/")))
            rt = res.props.get(f"{DAV}resourcetype")
            if rt is not None and rt.find(f"{DAV}collection") is not None:
                out[rel + "/"] = None
                todo.append(p + "/")
            else:
                out[rel] = get(c, p)
    return out


def test_interrupted_put_keeps_previous_version(gw: GatewayProcess, dav: httpx.Client) -> None:
    old = seeded_bytes(1, 2 * MiB + 3)
    put(dav, "/keep.bin", old)
    interrupted_put(gw, "/keep.bin", 8 * MiB, seeded_bytes(2, 3 * MiB))
    interrupted_put(gw, "/never.bin", 8 * MiB, seeded_bytes(3, 3 * MiB))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # the gateway may still be handling the cut request: watch a while
        assert sha256(get(dav, "/keep.bin")) == sha256(old)
        assert dav.get("/never.bin").status_code == 404
        time.sleep(0.25)
    names = {r.path for r in propfind(dav, "/", depth="1")}
    assert "/never.bin" not in names, names
    # The file is still writable afterwards (no stale lock or half-staged state).
    put(dav, "/keep.bin", b"next")
    assert get(dav, "/keep.bin") == b"next"


def test_move_overwrite_true_replaces_file(dav: httpx.Client) -> None:
    put(dav, "/src.txt", b"from source")
    put(dav, "/dst.txt", b"old destination")
    r = move(dav, "/src.txt", "/dst.txt", "T")
    assert r.status_code == 204, r.text
    assert get(dav, "/dst.txt") == b"from source"
    assert dav.get("/src.txt").status_code == 404


def test_move_overwrite_false_onto_existing_is_412(dav: httpx.Client) -> None:
    put(dav, "/a.txt", b"aaa")
    put(dav, "/b.txt", b"bbb")
    r = move(dav, "/a.txt", "/b.txt", "F")
    assert r.status_code == 412, r.text
    assert get(dav, "/a.txt") == b"aaa"
    assert get(dav, "/b.txt") == b"bbb"
    r = copy(dav, "/a.txt", "/b.txt", "F")
    assert r.status_code == 412, r.text
    assert get(dav, "/b.txt") == b"bbb"


def test_copy_overwrite_true_over_folder_makes_exact_copy(dav: httpx.Client) -> None:
    for folder in ("/src", "/src/sub", "/src/sub/deeper", "/dst", "/dst/stale"):
        assert dav.request("MKCOL", href(folder)).status_code == 201
    put(dav, "/src/a.txt", b"A")
    put(dav, "/src/sub/b.bin", seeded_bytes(5, MiB + 1))
    put(dav, "/src/sub/deeper/c d.txt", b"C D")
    r = dav.request("PROPPATCH", href("/src/sub/deeper/c d.txt"),
                    content=proppatch_body({f"{{{TEST_NS}}}label": "kept by the copy"}))
    assert r.status_code == 207
    put(dav, "/dst/old.txt", b"to be replaced")
    put(dav, "/dst/stale/x.txt", b"x")
    expected = tree(dav, "/src")
    r = copy(dav, "/src/", "/dst/", "T")
    assert r.status_code == 204, r.text
    assert tree(dav, "/dst") == expected
    assert tree(dav, "/src") == expected
    assert dav.get("/dst/old.txt").status_code == 404
    assert prop(dav, "/dst/sub/deeper/c d.txt", f"{{{TEST_NS}}}label") == "kept by the copy"
    # A copy, not an alias: changing it leaves the source alone.
    put(dav, "/dst/a.txt", b"changed")
    assert get(dav, "/src/a.txt") == b"A"


def test_rename_of_64mib_uploads_nothing(account: Account, dav: httpx.Client) -> None:
    data = seeded_bytes(64, 64 * MiB)
    put(dav, "/video.mkv", data)
    used = account.used()
    t0 = time.monotonic()
    r = move(dav, "/video.mkv", "/renamed video.mkv")
    elapsed = time.monotonic() - t0
    assert r.status_code == 201, r.text
    assert elapsed < 2.0, f"MOVE took {elapsed:.2f}s"
    assert account.used() == used
    assert dav.get("/video.mkv").status_code == 404
    assert sha256(get(dav, "/renamed video.mkv")) == sha256(data)
    # into another folder, too
    assert dav.request("MKCOL", "/films").status_code == 201
    used = account.used()  # the new folder's meta is charged (553 bytes); a move re-seals a meta of one size
    t0 = time.monotonic()
    assert move(dav, "/renamed video.mkv", "/films/video.mkv").status_code == 201
    assert time.monotonic() - t0 < 2.0
    assert account.used() == used


# -- editors' save patterns ----------------------------------------------------------------------


def test_save_via_temp_file_and_move(dav: httpx.Client) -> None:
    """vim, LibreOffice, most editors: write a temp file, then MOVE it over the target."""
    put(dav, "/notes.txt", b"draft 1")
    put(dav, "/.notes.txt.swp~", b"draft 2")
    r = move(dav, "/.notes.txt.swp~", "/notes.txt", "T")
    assert r.status_code == 204, r.text
    assert get(dav, "/notes.txt") == b"draft 2"
    assert dav.get(href("/.notes.txt.swp~")).status_code == 404


def test_gnome_empty_put_then_content(dav: httpx.Client) -> None:
    """GVfs creates the file empty, then PUTs the content."""
    r = dav.put("/gnome.txt", content=b"")
    assert r.status_code == 201
    assert get(dav, "/gnome.txt") == b""
    r = dav.put("/gnome.txt", content=b"the real content")
    assert r.status_code == 204
    assert get(dav, "/gnome.txt") == b"the real content"
    (res,) = propfind(dav, "/gnome.txt", [f"{DAV}getcontentlength"])
    assert res.text(f"{DAV}getcontentlength") == "16"


def test_readers_never_see_a_mix_of_versions(gw: GatewayProcess, dav: httpx.Client) -> None:
    versions = [seeded_bytes(100 + i, 8 * MiB) for i in range(3)]
    hashes = {sha256(v) for v in versions}
    put(dav, "/shared.bin", versions[0])
    stop = threading.Event()
    seen: list[str] = []
    errors: list[str] = []

    def reader() -> None:
        with gw.client() as c:
            while not stop.is_set():
                r = c.get("/shared.bin")
                if r.status_code != 200:
                    errors.append(f"GET {r.status_code}")
                    continue
                seen.append(sha256(r.content))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            put(dav, "/shared.bin", versions[(i + 1) % 3])
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert len(seen) >= 4, f"only {len(seen)} reads completed"
    mixed = [h for h in seen if h not in hashes]
    assert not mixed, f"{len(mixed)} of {len(seen)} GETs returned a mix of versions"
    assert sha256(get(dav, "/shared.bin")) == sha256(versions[0])
