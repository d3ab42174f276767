"""The `megadrive` console script end to end, against a real server process."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from support.accounts import PASSWORD, Server, megadrive, new_home, ok, one_line_error

from megadrive.format import CHUNK_SIZE

MiB = 1 << 20


def signup(server: Server, user: str = "alice") -> None:
    ok(megadrive("signup", "--server", server.url, "--user", user))


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 100 * MiB],
                         ids=["empty", "1B", "one-chunk", "chunk+1", "100MiB"])
def test_put_get_roundtrip(server: Server, tmp_path: Path, size: int) -> None:
    signup(server)
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n
    ok(megadrive("put", str(src), "/file.bin"))
    out = tmp_path / "out.bin"
    ok(megadrive("get", "/file.bin", str(out)))
    assert out.stat().st_size == size
    with open(src, "rb") as a, open(out, "rb") as b:
        while True:
            x, y = a.read(8 * MiB), b.read(8 * MiB)
            assert x == y
            if not x:
                break
    assert int(out.stat().st_mtime) == int(src.stat().st_mtime)


def test_full_session(server: Server, tmp_path: Path) -> None:
    signup(server)
    ok(megadrive("mkdir", "/docs"))
    ok(megadrive("mkdir", "-p", "/docs/deep/er"))
    f = tmp_path / "note.txt"
    f.write_text("hello world\n")
    ok(megadrive("put", str(f), "/docs/"))
    assert ok(megadrive("ls", "/docs")).split() == ["deep/", "note.txt"]
    assert "note.txt" in ok(megadrive("ls", "-l", "/docs"))
    ok(megadrive("mv", "/docs/note.txt", "/docs/deep/renamed.txt"))
    assert ok(megadrive("ls", "/docs/deep")).split() == ["er/", "renamed.txt"]
    got = tmp_path / "got"
    got.mkdir()
    ok(megadrive("get", "/docs/deep/renamed.txt", str(got)))
    assert (got / "renamed.txt").read_text() == "hello world\n"
    one_line_error(megadrive("rm", "/docs"))  # a folder needs -r
    ok(megadrive("rm", "/docs/deep/renamed.txt"))
    ok(megadrive("rm", "-r", "/docs"))
    assert ok(megadrive("ls", "/")).split() == []
    st = ok(megadrive("status"))
    assert "alice" in st and "pending uploads: 0" in st
    ok(megadrive("logout"))
    assert one_line_error(megadrive("ls")).startswith("megadrive: error: Not logged in")
    ok(megadrive("login"))  # server and user default to the last ones
    assert ok(megadrive("ls")).split() == []


def test_session_file_is_private(server: Server) -> None:
    signup(server)
    home = Path(os.environ["MEGADRIVE_HOME"])
    mode = stat.S_IMODE((home / "session.json").stat().st_mode)
    assert mode == 0o600
    assert json.loads((home / "session.json").read_text())["user"] == "alice"


def test_errors_are_one_clear_line(server: Server, tmp_path: Path) -> None:
    signup(server)
    assert "no such file" in one_line_error(megadrive("get", "/missing", str(tmp_path / "x")))
    assert one_line_error(megadrive("ls", "/missing")).endswith("/missing")
    assert one_line_error(megadrive("mkdir", "/a/b")).startswith("megadrive: error: no such")
    ok(megadrive("mkdir", "/a"))
    assert "already exists" in one_line_error(megadrive("mkdir", "/a"))
    assert "invalid name" in one_line_error(megadrive("mkdir", "/a/.."))
    r = megadrive("login", "--server", server.url, "--user", "alice", env={"MEGADRIVE_PASSWORD": "wrong password"})
    assert "Authentication" in one_line_error(r) or "unauthorized" in r.stderr.lower() or r.returncode == 10
    r = megadrive("login", "--server", "http://127.0.0.1:9", "--user", "alice")
    assert "cannot reach" in one_line_error(r)
    r = megadrive("signup", "--server", server.url, "--user", "alice")
    assert "exists" in one_line_error(r) or "taken" in r.stderr


def test_password_sources(server: Server, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    env = {"MEGADRIVE_PASSWORD": ""}
    ok(megadrive("signup", "--server", server.url, "--user", "bob", "--password-file", str(pw), env=env))
    ok(megadrive("logout"))
    r = megadrive("login", "--server", server.url, "--user", "bob", env=env)
    assert "no password" in one_line_error(r)
    ok(megadrive("login", "--server", server.url, "--user", "bob", "--password-file", str(pw), env=env))


def test_quota_is_enforced_and_nothing_partial_is_visible(small_server: Server, tmp_path: Path) -> None:
    signup(small_server)
    fits = tmp_path / "fits"
    fits.write_bytes(os.urandom(MiB))
    ok(megadrive("put", str(fits), "/fits"))
    big = tmp_path / "big"
    big.write_bytes(os.urandom(4 * MiB))
    line = one_line_error(megadrive("put", str(big), "/big"))
    assert "quota" in line
    assert ok(megadrive("ls", "/")).split() == ["fits"]
    st = ok(megadrive("status"))
    assert "quota:     3.0 MiB (3145728 bytes)" in st
    used = int(st.split("used:")[1].split("(")[1].split()[0])
    assert MiB <= used <= 3 * MiB
    # The earlier version of an existing file survives a refused overwrite.
    line = one_line_error(megadrive("put", str(big), "/fits"))
    assert "quota" in line
    out = tmp_path / "out"
    ok(megadrive("get", "/fits", str(out)))
    assert out.read_bytes() == fits.read_bytes()


def test_second_machine_logs_in(server: Server, tmp_path: Path) -> None:
    signup(server)
    f = tmp_path / "f"
    f.write_bytes(b"from machine one")
    ok(megadrive("put", str(f), "/f"))
    other = {"MEGADRIVE_HOME": str(new_home(tmp_path))}
    ok(megadrive("login", "--server", server.url, "--user", "alice", env=other))
    out = tmp_path / "o"
    ok(megadrive("get", "/f", str(out), env=other))
    assert out.read_bytes() == b"from machine one"
