"""Account life through the real `megadrive` console script against a real server: the trash and older
versions, a password change, a recovery key, sessions."""

from __future__ import annotations

import re
from pathlib import Path

from support.accounts import Server, megadrive, new_home, ok, one_line_error

NEW_PASSWORD = "a brand new passphrase"
KEY_RE = re.compile(r"^\s+([A-Z2-7]{4}(?:-[A-Z2-7]{4}){13})$", re.M)


def signup(server: Server, user: str = "alice") -> None:
    ok(megadrive("signup", "--server", server.url, "--user", user))


def put(tmp_path: Path, data: bytes, dest: str) -> None:
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    ok(megadrive("put", str(src), dest))


def get(tmp_path: Path, path: str, env: dict[str, str] | None = None) -> bytes:
    out = tmp_path / "download.bin"
    ok(megadrive("get", path, str(out), env=env))
    return out.read_bytes()


def test_trash_list_restore_keep_both_and_empty(server: Server, tmp_path: Path) -> None:
    signup(server)
    ok(megadrive("mkdir", "-p", "/docs/old"))
    put(tmp_path, b"the original", "/docs/a.txt")
    put(tmp_path, b"inside", "/docs/old/b.txt")
    assert ok(megadrive("trash")).strip() == "The trash is empty."
    ok(megadrive("rm", "/docs/a.txt"))
    ok(megadrive("rm", "-r", "/docs/old"))
    lines = ok(megadrive("trash")).splitlines()
    assert [ln.split()[-1] for ln in lines] == ["/docs/old/", "/docs/a.txt"]  # newest first
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +12 B +/docs/a\.txt$", lines[1]), lines[1]
    assert "folder" in lines[0]

    put(tmp_path, b"a new one", "/docs/a.txt")  # the name is taken meanwhile: both are kept
    assert ok(megadrive("restore", "/docs/a.txt")).strip() == "Restored /docs/a (restored).txt"
    assert get(tmp_path, "/docs/a (restored).txt") == b"the original"
    assert get(tmp_path, "/docs/a.txt") == b"a new one"
    ok(megadrive("restore", "/docs/old", "--to", "/back"))
    assert get(tmp_path, "/back/b.txt") == b"inside"
    assert ok(megadrive("trash")).strip() == "The trash is empty."

    ok(megadrive("rm", "/docs/a.txt"))
    assert ok(megadrive("trash", "--empty")).strip() == "Emptied the trash: 1 item(s) deleted for good."
    r = megadrive("restore", "/docs/a.txt")
    assert r.returncode == 4 and one_line_error(r) == "megadrive: error: nothing in the trash was at /docs/a.txt"


def test_restore_into_a_trashed_folder_says_what_to_do(server: Server, tmp_path: Path) -> None:
    signup(server)
    ok(megadrive("mkdir", "/d"))
    put(tmp_path, b"x", "/d/f.txt")
    ok(megadrive("rm", "/d/f.txt"))
    ok(megadrive("rm", "-r", "/d"))
    r = megadrive("restore", "/d/f.txt")
    assert r.returncode == 8 and "its folder is in the trash" in one_line_error(r)
    ok(megadrive("restore", "/d/f.txt", "--to", "/f.txt"))
    assert get(tmp_path, "/f.txt") == b"x"


def test_versions_and_restoring_an_old_one_loses_nothing(server: Server, tmp_path: Path) -> None:
    signup(server)
    for text in (b"first", b"second", b"third"):
        put(tmp_path, text, "/v.txt")
    lines = ok(megadrive("versions", "/v.txt")).splitlines()
    assert [int(ln.split()[0]) for ln in lines] == [3, 2, 1]
    assert lines[0].endswith("(current)") and not lines[1].endswith("(current)")
    assert [ln.split()[3] for ln in lines] == ["5", "6", "5"]  # the file's sizes (not the stored ciphertext)
    out = ok(megadrive("restore", "/v.txt", "--version", "1")).strip()
    assert out == "Version 1 of /v.txt is now its newest (version 4)."
    assert get(tmp_path, "/v.txt") == b"first"
    assert [int(ln.split()[0]) for ln in ok(megadrive("versions", "/v.txt")).splitlines()] == [4, 3, 2, 1]
    ok(megadrive("restore", "/v.txt", "--version", "3"))
    assert get(tmp_path, "/v.txt") == b"third"
    r = megadrive("restore", "/v.txt", "--version", "99")
    assert r.returncode == 4 and one_line_error(r) == \
        "megadrive: error: /v.txt has no version 99 (see `megadrive versions`)"


def test_password_change_logs_out_other_sessions_and_the_old_password_fails(server: Server, tmp_path: Path) -> None:
    signup(server)
    put(tmp_path, b"kept across the change", "/keep.txt")
    laptop = {"MEGADRIVE_HOME": str(new_home(tmp_path))}
    ok(megadrive("login", "--server", server.url, "--user", "alice", env=laptop))
    assert get(tmp_path, "/keep.txt", env=laptop) == b"kept across the change"

    r = megadrive("passwd", env={"MEGADRIVE_PASSWORD": "not the password", "MEGADRIVE_NEW_PASSWORD": NEW_PASSWORD})
    assert r.returncode == 10 and one_line_error(r) == "megadrive: error: wrong password"
    assert get(tmp_path, "/keep.txt", env=laptop) == b"kept across the change"  # nothing changed

    out = ok(megadrive("passwd", env={"MEGADRIVE_NEW_PASSWORD": NEW_PASSWORD}))
    assert out.strip() == ("Password of alice changed; every other session was logged out. A recovery key no "
                           "longer works after a password change: make a new one with `megadrive recovery-key`.")
    assert get(tmp_path, "/keep.txt") == b"kept across the change"  # this session goes on
    r = megadrive("ls", "/", env=laptop)  # the other one is logged out
    assert r.returncode == 10, r.stderr

    elsewhere = {"MEGADRIVE_HOME": str(new_home(tmp_path))}
    r = megadrive("login", "--server", server.url, "--user", "alice", env=elsewhere)
    assert r.returncode == 10 and "bad credentials" in one_line_error(r)
    ok(megadrive("login", "--server", server.url, "--user", "alice",
                 env={**laptop, "MEGADRIVE_PASSWORD": NEW_PASSWORD}))
    assert get(tmp_path, "/keep.txt", env=laptop) == b"kept across the change"


def test_recovery_key_sets_a_new_password_after_a_forgotten_one(server: Server, tmp_path: Path) -> None:
    signup(server)
    put(tmp_path, b"recoverable", "/r.txt")
    assert "recovery key: none (a forgotten password means the data is gone" in ok(megadrive("status"))
    first = KEY_RE.search(ok(megadrive("recovery-key")))
    assert "recovery key: set" in ok(megadrive("status"))
    assert first is not None
    latest = KEY_RE.search(ok(megadrive("recovery-key")))  # a new key replaces the earlier one
    assert latest is not None and latest.group(1) != first.group(1)
    key = latest.group(1)

    fresh = {"MEGADRIVE_HOME": str(new_home(tmp_path)), "MEGADRIVE_NEW_PASSWORD": NEW_PASSWORD}
    typo = key[:-1] + ("A" if key[-1] != "A" else "B")
    r = megadrive("login", "--recovery-key", "--server", server.url, "--user", "alice",
                  env={**fresh, "MEGADRIVE_RECOVERY_KEY": typo})
    assert r.returncode == 2 and "not a recovery key" in one_line_error(r)
    r = megadrive("login", "--recovery-key", "--server", server.url, "--user", "alice",
                  env={**fresh, "MEGADRIVE_RECOVERY_KEY": first.group(1)})
    assert r.returncode == 10 and "bad credentials" in one_line_error(r)

    out = ok(megadrive("login", "--recovery-key", "--server", server.url, "--user", "alice",
                       env={**fresh, "MEGADRIVE_RECOVERY_KEY": key.lower().replace("-", " ")}))
    assert out.startswith("New password set; logged in as alice")
    assert get(tmp_path, "/r.txt", env=fresh) == b"recoverable"
    r = megadrive("ls", "/")  # the first machine's session ended with the reset
    assert r.returncode == 10
    r = megadrive("login", "--server", server.url, "--user", "alice", env={"MEGADRIVE_HOME": str(new_home(tmp_path))})
    assert r.returncode == 10  # the forgotten password no longer works
    ok(megadrive("login", "--server", server.url, "--user", "alice", env={"MEGADRIVE_PASSWORD": NEW_PASSWORD}))
    assert get(tmp_path, "/r.txt") == b"recoverable"


def test_sessions_are_listed_and_a_revoked_one_is_refused_at_once(server: Server, tmp_path: Path) -> None:
    signup(server)
    phone = {"MEGADRIVE_HOME": str(new_home(tmp_path))}
    ok(megadrive("login", "--server", server.url, "--user", "alice", "--device", "lost phone", env=phone))
    ok(megadrive("ls", "/", env=phone))
    lines = ok(megadrive("sessions")).splitlines()
    assert len(lines) == 2
    mine = [ln for ln in lines if ln.endswith("(this one)")]
    theirs = [ln for ln in lines if ln.endswith("lost phone")]
    assert len(mine) == 1 and len(theirs) == 1
    assert re.match(r"^[0-9a-f]{16}  created \d{4}-\d\d-\d\d \d\d:\d\d  last used \d{4}-", theirs[0]), theirs[0]
    sid = theirs[0].split()[0]
    assert ok(megadrive("sessions", "revoke", sid)).strip() == f"Session {sid} ended."
    r = megadrive("ls", "/", env=phone)
    assert r.returncode == 10, r.stderr
    assert len(ok(megadrive("sessions")).splitlines()) == 1
    r = megadrive("sessions", "revoke", sid)
    assert r.returncode == 4 and one_line_error(r) == "megadrive: error: server: no such session"
    r = megadrive("sessions", "revoke", "not-an-id")
    assert r.returncode == 2 and one_line_error(r) == \
        "megadrive: error: not a session id: 'not-an-id' (16 hex digits, as `megadrive sessions` lists them)"
