"""The web client in a real headless Chromium (Debian's, driven by Playwright) against a real server:
sign up in the page, upload files and a folder with progress bars, make a folder, rename, move and
delete, and read everything back byte for byte in the Python client, and the reverse; a tampered chunk
is refused in the page and nothing is saved. The page is served under a strict Content-Security-Policy."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.accounts import PASSWORD, Server, make_drive, megadrive, new_home
from support.faults import blob_path

from megadrive import format as fmt
from megadrive.drive import Drive

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SERVER_ROOT = Path(__file__).resolve().parents[2] / "server" / "web"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per module (each test opens its own profiles: contexts share nothing)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed (bash scripts/test.sh installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Page:
    """One browser profile on the web client, failing the test on any page error or CSP violation."""

    def __init__(self, browser: Any, url: str, downloads: Path, path: str = "/") -> None:
        self.context = browser.new_context(accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.downloads = downloads
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", self._console)
        # A 404 is an error unless it is the contact record of an account that has none yet (404 is its
        # "none"); the browser's console line does not name the URL, so responses are watched instead.
        self.page.on("response", lambda r: self.errors.append(f"404 {r.url}") if r.status == 404
                     and not r.url.endswith("/v1/records/contacts") else None)
        self.answers: list[str] = []
        self.page.on("dialog", lambda d: d.accept(self.answers.pop(0)))
        self.page.goto(url + path)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def _console(self, m: Any) -> None:
        if m.type == "error" and not m.text.startswith("Failed to load resource: the server responded with a "
                                                       "status of 404"):
            self.errors.append(m.text)

    def enter(self, button: str, user: str) -> None:
        self.page.fill("#user", user)
        self.page.fill("#password", PASSWORD)
        self.page.click(button)
        self.page.wait_for_selector("#drive:not([hidden])", timeout=120_000)

    def idle(self) -> str:
        """Wait until the page finished what it was doing; its status line."""
        self.page.wait_for_selector("body:not([data-busy])", timeout=120_000)  # (no page-side script: the CSP
        return str(self.page.inner_text("#status"))                            # forbids eval, Playwright's too)

    def names(self) -> list[str]:
        return [str(r.get_attribute("data-name")) for r in self.page.locator("#listing tbody tr").all()]

    def row(self, name: str) -> Any:
        return self.page.locator(f'#listing tbody tr[data-name="{name}"]')

    def download(self, name: str) -> bytes:
        with self.page.expect_download(timeout=60_000) as d:
            self.row(name).locator("a.file").click()
        target = self.downloads / f"{len(list(self.downloads.iterdir()))}-{name}"
        d.value.save_as(target)
        assert d.value.suggested_filename == name
        return target.read_bytes()

    def close(self) -> None:
        self.context.close()


def test_the_page_is_served_under_a_strict_csp(server: Server) -> None:
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self' 'wasm-unsafe-eval';" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(rb"<script(?![^>]*\bsrc=)", r.content), "an inline script"
    assert b"http://" not in r.content and b"https://" not in r.content  # nothing from another origin
    for path in ("/js/format.mjs", "/js/client.mjs", "/js/app.mjs", "/vendor/libsodium-sumo.js",
                 "/vendor/libsodium-wrappers.js"):
        js = httpx.get(server.url + path)
        assert js.status_code == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8", path
        assert js.headers["content-security-policy"] == csp
    for path in ("/js/../pyproject.toml", "/node_modules/libsodium-sumo/package.json", "/js/nope.mjs", "/web"):
        assert httpx.get(server.url + path).status_code == 404, path


def test_sign_up_upload_and_read_back_in_both_clients(server: Server, browser: Any, tmp_path: Path) -> None:
    user = "webuser"
    big = os.urandom(2 * (1 << 20) + 12345)  # three chunks
    small = b"hello from the browser\n"
    src = tmp_path / "src"
    (src / "album" / "inner").mkdir(parents=True)
    (src / "big.bin").write_bytes(big)
    (src / "small.txt").write_bytes(small)
    (src / "album" / "a.txt").write_bytes(b"a" * 100)
    (src / "album" / "inner" / "b.txt").write_bytes(b"b" * 200)
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    page = Page(browser, server.url, downloads)
    try:
        page.enter("#do-signup", user)
        page.page.set_input_files("#pick-files", [str(src / "big.bin"), str(src / "small.txt")])
        assert page.idle() == ""
        page.page.set_input_files("#pick-folder", str(src / "album"))
        assert page.idle() == ""
        bars = [(li.locator("span").inner_text(), li.locator("progress").get_attribute("value"),
                 li.locator("progress").get_attribute("max")) for li in page.page.locator("#transfers li").all()]
        assert sorted(bars) == sorted((name, str(n), str(n)) for name, n in [
            ("big.bin", len(big)), ("small.txt", len(small)), ("album/a.txt", 100), ("album/inner/b.txt", 200)])
        assert "of 50.0 GiB used" in page.page.inner_text("#quota-text")
        # Two files dropped on the drop zone at once (the drop's data is read before the first await).
        dropped = page.page.evaluate_handle(
            "() => { const t = new DataTransfer(); t.items.add(new File(['dropped one'], 'drop1.txt'));"
            " t.items.add(new File([new Uint8Array([0, 1, 2, 255])], 'drop2.bin')); return t; }")
        page.page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
        assert page.idle() == ""
        assert page.names() == ["album", "big.bin", "drop1.txt", "drop2.bin", "small.txt"]
        assert page.download("drop2.bin") == bytes([0, 1, 2, 255])
        for name in ("drop1.txt", "drop2.bin"):
            page.row(name).locator("button.delete").click()
            page.idle()
        assert page.names() == ["album", "big.bin", "small.txt"]
        page.answers.append("docs")
        page.page.click("#mkdir")
        page.idle()
        page.answers.append("renamed.txt")
        page.row("small.txt").locator("button.rename").click()
        page.idle()
        page.answers.append("My drive/docs")
        page.row("renamed.txt").locator("button.move").click()
        page.idle()
        assert page.names() == ["album", "big.bin", "docs"]

        py = make_drive(server.url, new_home(tmp_path), user, signup=False)  # the Python client, same account
        try:
            assert py.read_file("/big.bin") == big
            assert py.read_file("/docs/renamed.txt") == small
            assert py.read_file("/album/inner/b.txt") == b"b" * 200
            assert sorted(e.name for e in py.listdir("/")) == ["album", "big.bin", "docs"]
            py.write_file("/docs/from-python.bin", big[:1_500_000])
            assert page.download("big.bin") == big  # (before the Python client's file: refresh next)
            page.page.click("#reload")
            page.idle()
            page.row("docs").locator("a.folder").click()
            page.idle()
            assert page.names() == ["from-python.bin", "renamed.txt"]
            assert page.download("from-python.bin") == big[:1_500_000]
            page.row("renamed.txt").locator("button.delete").click()
            page.idle()
            assert page.names() == ["from-python.bin"]
            py.refresh()
            assert [e.name for e in py.listdir("/docs")] == ["from-python.bin"]
            assert sorted(t.path for t in py.history.trash()) == ["/docs/renamed.txt", "/drop1.txt", "/drop2.bin"]
            _tamper_and_refuse(page, py, server)
        finally:
            py.close()
        assert page.errors == [], page.errors
    finally:
        page.close()


def _tamper_and_refuse(page: Page, py: Drive, server: Server) -> None:
    """A chunk changed on the server's disk: the page refuses the file and saves nothing."""
    cid = py.manifest("/docs/from-python.bin").chunk_ids()[1]  # type: ignore[union-attr]
    blob = blob_path(server.data, cid)
    raw = bytearray(blob.read_bytes())
    raw[100] ^= 1
    blob.write_bytes(bytes(raw))
    before = sorted(page.downloads.iterdir())
    downloads: list[Any] = []
    page.page.on("download", lambda d: downloads.append(d))
    page.row("from-python.bin").locator("a.file").click()
    text = page.idle()
    assert text.startswith("Refused: integrity check failed: chunk 1 is not the one the manifest names"), text
    assert downloads == [] and sorted(page.downloads.iterdir()) == before
    page.errors.clear()  # (the refusal is also logged to the console, as an error should be)
    assert hashlib.sha256(bytes(raw)).hexdigest() != cid


def _open_link(browser: Any, url: str, downloads: Path) -> Page:
    """A fresh browser profile (no account, nothing stored) on a link, once it has opened it (or not)."""
    page = Page(browser, url, downloads, path="")
    page.idle()
    return page


def _save_from_link(page: Page) -> bytes:
    with page.page.expect_download(timeout=60_000) as d:
        page.page.click("#save")
    target = page.downloads / f"link-{len(list(page.downloads.iterdir()))}"
    d.value.save_as(target)
    page.idle()
    return target.read_bytes()


def _no_download(page: Page, action: Any) -> str:
    seen: list[Any] = []
    page.page.on("download", lambda d: seen.append(d))
    action()
    text = page.idle()
    assert seen == [], text
    return text


def test_links_made_in_the_page_open_in_a_fresh_profile(server: Server, browser: Any, tmp_path: Path) -> None:
    from megadrive.publiclink import open_public_link

    data = os.urandom(2 * (1 << 20) + 999)
    src = tmp_path / "report.pdf"
    src.write_bytes(data)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    owner = Page(browser, server.url, downloads)
    try:
        owner.enter("#do-signup", "linker")
        owner.page.set_input_files("#pick-files", str(src))
        owner.idle()
        owner.answers += ["", ""]  # no password, no expiry
        owner.row("report.pdf").locator("button.link").click()
        assert owner.idle() == ""
        url = str(owner.page.input_value("#link-url"))
        owner.answers += ["a link password", "7"]
        owner.row("report.pdf").locator("button.link").click()
        owner.idle()
        pw_url = str(owner.page.input_value("#link-url"))
        assert re.fullmatch(re.escape(server.url) + r"/l/[A-Za-z0-9_-]+#[A-Za-z0-9_-]{43}", url), url
        assert pw_url.endswith("#p")
        assert owner.errors == [], owner.errors
    finally:
        owner.close()

    _, record, manifest, _ = open_public_link(url)  # the Python client reads the page's link record
    assert record.name == "report.pdf" and manifest.size == len(data)

    anon = _open_link(browser, url, downloads)
    assert anon.page.inner_text("#file-name") == "report.pdf"
    assert hashlib.sha256(_save_from_link(anon)).digest() == hashlib.sha256(data).digest()
    assert anon.errors == [], anon.errors
    anon.close()

    locked = _open_link(browser, pw_url, downloads)
    locked.page.fill("#link-password", "not the password")
    text = _no_download(locked, lambda: locked.page.click("#ask-password button"))
    assert text == "Refused: integrity check failed: link (wrong link key or password?). Nothing was saved.", text
    locked.page.fill("#link-password", "a link password")
    locked.page.click("#ask-password button")
    assert locked.idle() == ""
    assert _save_from_link(locked) == data
    locked.close()

    key = url.rsplit("#", 1)[1]
    wrong = _open_link(browser, url.replace(key, ("B" if key[0] != "B" else "C") + key[1:]), downloads)
    assert wrong.page.inner_text("#status") == ("Refused: integrity check failed: link (wrong link key or "
                                                "password?). Nothing was saved.")
    assert not wrong.page.is_visible("#save")
    wrong.close()

    blob = blob_path(server.data, manifest.chunk_ids()[2])
    raw = bytearray(blob.read_bytes())
    raw[-3] ^= 0x80
    blob.write_bytes(bytes(raw))
    before = sorted(downloads.iterdir())
    tampered = _open_link(browser, url, downloads)
    text = _no_download(tampered, lambda: tampered.page.click("#save"))
    assert text == ("Refused: integrity check failed: chunk 2 is not the one the manifest names. "
                    "Nothing was saved."), text
    assert sorted(downloads.iterdir()) == before
    tampered.close()

    r = megadrive("server", "takedown", url, "--data", str(server.data), "--reason", "court order 7")
    assert r.returncode == 0, r.stderr
    gone = _open_link(browser, url, downloads)
    assert gone.page.inner_text("#status").startswith("This was removed after an abuse notice"), \
        gone.page.inner_text("#status")
    gone.close()


def _link_rows(page: Page) -> list[str]:
    return [str(r.get_attribute("data-path")) for r in page.page.locator("#entries tr").all()]


def _save_entry(page: Page, path: str) -> bytes:
    with page.page.expect_download(timeout=60_000) as d:
        page.page.locator(f'#entries tr[data-path="{path}"] button.save').click()
    target = page.downloads / f"entry-{len(list(page.downloads.iterdir()))}"
    d.value.save_as(target)
    assert d.value.suggested_filename == path.rsplit("/", 1)[-1]
    page.idle()
    return target.read_bytes()


def test_a_folder_link_lists_the_folder(server: Server, browser: Any, tmp_path: Path) -> None:
    """A folder linked from the Python client, opened in a fresh profile: listed, files saved byte for
    byte (a hard link reads its file); an entry the server planted is left out and counted; a file taken
    down shows so. The reverse: a folder linked in the page is read by the Python client."""
    import secrets

    from support.evil import EvilServer

    from megadrive import crypto
    from megadrive.publiclink import read_public_folder

    big = os.urandom((1 << 20) + 4321)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    owner = make_drive(server.url, new_home(tmp_path), "folderowner")
    try:
        owner.makedirs("/pub/sub")
        owner.write_file("/pub/sub/big.bin", big)
        owner.write_file("/pub/readme.txt", b"read me")
        owner.write_file("/pub/empty.txt", b"")
        owner.link("/pub/readme.txt", "/pub/sub/again.txt")
        url = owner.sharing.create_link("/pub")
        pw_url = owner.sharing.create_link("/pub", password="folder pass")
        taken = owner.resolve("/pub/readme.txt").row.node_id
        sub = owner.resolve("/pub/sub").row
    finally:
        owner.close()

    anon = _open_link(browser, url, downloads)
    assert anon.page.inner_text("#folder-name") == "pub/"
    assert _link_rows(anon) == ["empty.txt", "readme.txt", "sub", "sub/again.txt", "sub/big.bin"]
    assert anon.page.is_hidden("#refused")
    assert hashlib.sha256(_save_entry(anon, "sub/big.bin")).digest() == hashlib.sha256(big).digest()
    assert _save_entry(anon, "sub/again.txt") == b"read me"
    assert _save_entry(anon, "empty.txt") == b""
    assert anon.errors == [], anon.errors
    anon.close()

    locked = _open_link(browser, pw_url, downloads)
    locked.page.fill("#link-password", "folder pass")
    locked.page.click("#ask-password button")
    assert locked.idle() == ""
    assert _save_entry(locked, "readme.txt") == b"read me"
    locked.close()

    # The server plants an entry (sealed under a key it made up) and takes one file down.
    forged = fmt.NodeMeta(name="planted.exe", kind="file", key=crypto.random_key(), file_id=os.urandom(16))
    blob = fmt.seal_meta(crypto.random_key(), sub.owner or "0" * 32, sub.node_id, "p" * 32, forged)
    evil = EvilServer(server.data)
    evil.insert(secrets.token_hex(16), evil.row(sub.node_id).owner, sub.node_id, "file", blob)
    r = megadrive("server", "takedown", taken, "--data", str(server.data), "--reason", "notice 12")
    assert r.returncode == 0, r.stderr
    seen = _open_link(browser, url, downloads)
    assert seen.page.inner_text("#refused") == ("1 entry failed verification and is not shown (tampered with or "
                                                "corrupted on the server).")
    assert "planted.exe" not in seen.page.inner_text("#entries")
    assert _link_rows(seen) == ["empty.txt", "readme.txt", "sub", "sub/again.txt", "sub/big.bin"]
    assert seen.page.inner_text('#entries tr[data-path="readme.txt"]').endswith("removed after an abuse notice")
    assert seen.page.locator('#entries tr[data-path="readme.txt"] button.save').count() == 0
    seen.close()

    # The reverse: a folder linked in the page, listed and read by the Python client.
    src = tmp_path / "made-in-page"
    src.mkdir()
    (src / "note.txt").write_bytes(b"from the page")
    page = Page(browser, server.url, downloads)
    try:
        page.enter("#do-signup", "pagelinker")
        page.page.set_input_files("#pick-folder", str(src))
        page.idle()
        page.answers += ["", ""]
        page.row("made-in-page").locator("button.link").click()
        assert page.idle() == ""
        page_url = str(page.page.input_value("#link-url"))
        # Moving the file out of the linked folder would leave its keys with the link's holders: the
        # page cannot re-key yet, so it refuses and moves nothing.
        page.row("made-in-page").locator("a.folder").click()
        page.idle()
        page.answers.append("My drive")
        page.row("note.txt").locator("button.move").click()
        assert page.idle() == ("Error: moving this out of a shared or linked folder renews its keys, which this "
                               "page cannot do yet: move it with `megadrive mv`"), page.page.inner_text("#status")
        assert page.names() == ["note.txt"]
        page.errors.clear()  # (the refusal is logged to the console as an error)
    finally:
        page.close()
    with read_public_folder(page_url) as folder:
        assert folder.record.name == "made-in-page" and folder.refused == 0
        (entry,) = folder.entries
        with folder.reader(entry) as reader:
            assert (entry.path, reader.read()) == ("note.txt", b"from the page")


def test_the_page_refuses_what_a_lying_server_shows(server: Server, browser: Any, tmp_path: Path) -> None:
    """The tree-shape checks of the Python client, in the page: a node moved under another folder than
    its meta was sealed for, a meta rolled back to an older revision, a kind the seal contradicts, a name
    the drive refuses. Each is left out (the page says how many); everything else is shown. A file the
    server says has no version, while its sealed meta says it has, is refused, not saved empty."""
    from support.evil import EvilServer, LyingProxy

    proxy = LyingProxy(server.url, EvilServer(server.data))
    page = Page(browser, proxy.url, tmp_path)
    try:
        page.enter("#do-signup", "victim")
        py = make_drive(server.url, new_home(tmp_path), "victim", signup=False)
        try:
            py.mkdir("/dir")
            py.write_file("/dir/moved.txt", b"m")
            py.write_file("/renamed.txt", b"r")
            old_meta = proxy.evil.row(py.stat("/renamed.txt").node_id).meta
            py.rename("/renamed.txt", "/renamed-again.txt")
            py.write_file("/kind.txt", b"k")
            py.write_file("/fine.txt", b"f")
            py.write_file("/empty-looking.txt", b"eleven byte")
            py.write_file("/dots.txt", b"d")
            ids = {p: py.stat(p).node_id for p in ("/dir", "/dir/moved.txt", "/renamed-again.txt", "/kind.txt",
                                                   "/empty-looking.txt", "/dots.txt")}
            # A co-writer (any holder of the folder's key) seals a name the drive refuses.
            root_row, root_meta = py.ns.root()
            dots = py.verified_meta(py.ctx.row(ids["/dots.txt"]))
            forged = fmt.seal_meta(root_meta.key, py.ctx.owner, root_row.node_id, ids["/dots.txt"],
                                   dataclasses.replace(dots, name="..", rev=dots.rev + 1))
        finally:
            py.close()
        page.page.click("#reload")
        assert page.idle() == ""
        assert page.names() == ["dir", "dots.txt", "empty-looking.txt", "fine.txt", "kind.txt", "renamed-again.txt"]
        proxy.lies[ids["/dir/moved.txt"]] = {"parent_id": proxy.evil.row(ids["/dir"]).parent_id}  # into the root
        proxy.lies[ids["/renamed-again.txt"]] = {"meta": old_meta}  # the meta of an older revision
        proxy.lies[ids["/kind.txt"]] = {"kind": "dir"}
        proxy.lies[ids["/dots.txt"]] = {"meta": forged}
        proxy.lies[ids["/empty-looking.txt"]] = {"version": 0}  # "no content": the sealed meta says version 1
        page.page.click("#reload")
        assert page.idle() == "4 entries failed verification and are not shown."
        assert page.names() == ["dir", "empty-looking.txt", "fine.txt"]
        text = _no_download(page, lambda: page.row("empty-looking.txt").locator("a.file").click())
        assert text == ("Refused: integrity check failed: the server's version differs from the sealed one. "
                        "Nothing was saved."), text
        page.errors.clear()  # (the refusal is logged to the console too)
        page.row("dir").locator("a.folder").click()
        page.idle()
        assert page.names() == []  # (moved.txt is not shown here either: its parent in the feed is the root)
        assert page.errors == [], page.errors
    finally:
        page.close()
        proxy.close()


def test_an_interrupted_upload_resumes_where_it_stopped(server: Server, browser: Any, tmp_path: Path) -> None:
    """The network drops every try of the second chunk: the upload stops with a Resume button, sends
    nothing twice, and finishes from there once the network is back."""
    data = os.urandom(3 * (1 << 20) + 77)  # four chunks
    src = tmp_path / "video.bin"
    src.write_bytes(data)
    page = Page(browser, server.url, tmp_path)
    try:
        page.enter("#do-signup", "resumer")
        puts: list[str] = []
        dropped: list[str] = []

        def network(route: Any) -> None:
            cid = route.request.url.rsplit("/", 1)[1]
            if len(puts) == 1 and not (dropped and dropped[0] != cid) and len(dropped) < 5:
                dropped.append(cid)
                route.abort("connectionreset")
                return
            puts.append(cid)
            route.continue_()

        page.page.route("**/v1/chunks/*", network)
        page.page.set_input_files("#pick-files", str(src))
        text = page.idle()
        assert text == "Error: the server cannot be reached", text
        assert len(dropped) == 5 and len(puts) == 1  # one try and four retries of the second chunk
        assert page.names() == []  # nothing half made
        page.page.unroute("**/v1/chunks/*")
        page.page.route("**/v1/chunks/*", lambda route: (puts.append(route.request.url.rsplit("/", 1)[1]),
                                                         route.continue_()))
        page.page.click("#transfers button.resume")
        assert page.idle() == ""
        assert page.names() == ["video.bin"]
        # The first chunk was not sent again; the second is sealed again (a fresh nonce: a new id) and sent.
        assert len(puts) == 4 and len(set(puts)) == 4 and len(set(dropped)) == 1 and dropped[0] not in puts
        assert page.page.locator("#transfers li progress").get_attribute("value") == str(len(data))
        py = make_drive(server.url, new_home(tmp_path), "resumer", signup=False)
        try:
            assert py.read_file("/video.bin") == data
        finally:
            py.close()
        expected = ("ERR_CONNECTION_RESET", "Failed to fetch", "the server cannot be reached")  # (the drop, logged)
        page.errors = [e for e in page.errors if not any(x in e for x in expected)]
        assert page.errors == [], page.errors
    finally:
        page.close()


def test_a_folder_shared_by_another_account_is_seen_and_read_in_the_page(server: Server, browser: Any,
                                                                          tmp_path: Path) -> None:
    """alice (the Python client) shares a folder with bob (the page): pending, with alice's fingerprint,
    until bob accepts it in the page (then his Python client has the acceptance too); bob's page lists it
    under "Shared with me", browses it and downloads byte for byte; it is shared for reading: the page
    writes nothing there."""
    from megadrive import crypto

    data = os.urandom((1 << 20) + 4321)
    page = Page(browser, server.url, tmp_path)
    try:
        page.enter("#do-signup", "bob")
        alice = make_drive(server.url, new_home(tmp_path), "alice")
        bob_py = make_drive(server.url, new_home(tmp_path), "bob", signup=False)
        try:
            alice.mkdir("/team")
            alice.mkdir("/team/plans")
            alice.write_file("/team/plans/q1.bin", data)
            alice.write_file("/private.txt", b"not shared")
            alice.sharing.share("/team", "bob", "read")
            page.page.click("#reload")
            page.idle()
            assert page.names() == ["Shared with me"]
            page.row("Shared with me").locator("a.folder").click()
            page.idle()
            bob_py.refresh()
            fp = crypto.fingerprint(bytes.fromhex(alice.session.sign_pub_hex))
            pending = page.page.locator("tr.pending td").first.inner_text()
            assert pending == (f'Pending: "team" from alice. To see it here, compare the fingerprint {fp} with alice, '
                               "then accept it."), pending
            page.answers.append("")  # the confirm dialog that shows the fingerprint: OK
            page.page.click("tr.pending button.accept")
            assert page.idle() == ""
            assert page.names() == ["team"]
            bob_py.refresh()  # the page's acceptance is in the contact record: bob's other devices have it
            assert [e.name for e in bob_py.listdir("/Shared with me/alice")] == ["team"]
            page.row("team").locator("a.folder").click()
            page.idle()
            assert page.names() == ["plans"]
            page.row("plans").locator("a.folder").click()
            page.idle()
            assert page.names() == ["q1.bin"]
            assert page.row("q1.bin").locator("button").count() == 0  # read-only here
            assert page.download("q1.bin") == data
            crumbs = page.page.inner_text("#crumbs")
            assert crumbs == "My drive / Shared with me / team / plans", crumbs
            page.page.set_input_files("#pick-files", __file__)  # an upload into alice's folder: refused
            text = page.idle()
            assert text == "Error: this folder is shared with you for reading only", text
        finally:
            alice.close()
            bob_py.close()
        page.errors = [e for e in page.errors if "shared with you for reading only" not in e]
        assert page.errors == [], page.errors
    finally:
        page.close()


def test_a_folder_shared_from_the_page_is_read_by_the_python_client(server: Server, browser: Any,
                                                                    tmp_path: Path) -> None:
    """alice (the page) shares a folder with bob (the Python client), after the page showed bob's
    fingerprint; bob accepts and reads it byte for byte, and writes into it (write access)."""
    from megadrive import crypto

    src = tmp_path / "proj"
    src.mkdir()
    (src / "spec.txt").write_bytes(b"the spec\n")
    page = Page(browser, server.url, tmp_path)
    bob = make_drive(server.url, new_home(tmp_path), "bob")
    try:
        page.enter("#do-signup", "alice")
        page.page.set_input_files("#pick-folder", str(src))
        page.idle()
        seen: list[str] = []
        page.page.on("dialog", lambda d: seen.append(d.message))
        page.answers += ["bob", "write", ""]
        page.row("proj").locator("button.share").click()
        assert page.idle() == "Shared proj with bob."
        fp = crypto.fingerprint(bytes.fromhex(bob.session.sign_pub_hex))
        assert any(fp in m and "First contact" in m for m in seen), seen
        bob.refresh()
        bob.sharing.accept("alice")
        assert bob.read_file("/Shared with me/alice/proj/spec.txt") == b"the spec\n"
        bob.write_file("/Shared with me/alice/proj/reply.txt", b"from bob")
        page.page.click("#reload")
        page.idle()
        page.row("proj").locator("a.folder").click()
        page.idle()
        assert page.names() == ["reply.txt", "spec.txt"]
        assert page.download("reply.txt") == b"from bob"
        assert page.errors == [], page.errors
    finally:
        bob.close()
        page.close()


def test_the_page_writes_into_a_folder_shared_for_writing(server: Server, browser: Any, tmp_path: Path) -> None:
    """bob (the page) writes into alice's folder shared with write access: a new file (its chunks held
    by alice), a folder, a rename; alice's Python client reads them, and the quota they use is hers."""
    data = os.urandom((1 << 20) + 10)
    src = tmp_path / "draft.bin"
    src.write_bytes(data)
    page = Page(browser, server.url, tmp_path)
    alice = make_drive(server.url, new_home(tmp_path), "alice")
    try:
        page.enter("#do-signup", "bob")
        alice.mkdir("/team")
        alice.sharing.share("/team", "bob", "write")
        page.page.click("#reload")
        page.idle()
        page.row("Shared with me").locator("a.folder").click()
        page.idle()
        page.answers.append("")
        page.page.click("tr.pending button.accept")
        page.idle()
        page.row("team").locator("a.folder").click()
        page.idle()
        alice_before = int(alice.api.account()["used"])
        page.page.set_input_files("#pick-files", str(src))
        assert page.idle() == ""
        page.answers.append("notes")
        page.page.click("#mkdir")
        page.idle()
        page.answers.append("final.bin")
        page.row("draft.bin").locator("button.rename").click()
        assert page.idle() == ""
        assert page.names() == ["final.bin", "notes"]
        alice.refresh()
        assert sorted(e.name for e in alice.listdir("/team")) == ["final.bin", "notes"]
        assert alice.read_file("/team/final.bin") == data
        assert int(alice.api.account()["used"]) >= alice_before + len(data)  # alice's quota holds bob's chunks
        assert page.errors == [], page.errors
    finally:
        alice.close()
        page.close()

