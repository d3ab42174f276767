"""Zero knowledge: a unique name marker and content marker never reach any file on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from support.accounts import PASSWORD, Server, megadrive, ok

from megadrive.drive import Drive


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _contains(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for p in _files(root):
        data = p.read_bytes()
        for n in needles:
            if n in data:
                hits.append(f"{p}: {n!r}")
    return hits


def test_markers_never_on_disk(server: Server, tmp_path: Path) -> None:
    name_marker = f"NAME{secrets.token_hex(8)}"
    content_marker = f"CONTENT{secrets.token_hex(8)}".encode()
    ok(megadrive("signup", "--server", server.url, "--user", "alice"))
    src = tmp_path / "upload" / f"{name_marker}.txt"
    src.parent.mkdir()
    src.write_bytes(content_marker * 1000 + os.urandom(2 << 20) + content_marker)
    ok(megadrive("mkdir", f"/{name_marker}-folder"))
    ok(megadrive("put", str(src), f"/{name_marker}-folder/{name_marker}.txt"))
    out = tmp_path / "download"
    out.mkdir()
    ok(megadrive("get", f"/{name_marker}-folder/{name_marker}.txt", str(out / "x")))
    assert (out / "x").read_bytes() == src.read_bytes()
    d = Drive.open(Path(os.environ["MEGADRIVE_HOME"]))  # a cached read, as the gateway does
    assert d.read_file(f"/{name_marker}-folder/{name_marker}.txt") == src.read_bytes()
    d.close()
    assert ok(megadrive("ls", f"/{name_marker}-folder")).strip() == f"{name_marker}.txt"

    home = Path(os.environ["MEGADRIVE_HOME"])
    assert _files(server.data), "server stored nothing?"
    assert any((home / "accounts").rglob("cache/*")), "client cache is empty?"
    needles = [name_marker.encode(), name_marker.encode("utf-16-le"), content_marker, PASSWORD.encode()]
    assert _contains(server.data, needles) == []
    assert _contains(home, needles) == []
