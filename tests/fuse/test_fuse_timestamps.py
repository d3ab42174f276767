"""Copying tools restore modification times (and modes) on the mount: tar x, cp -p, rsync -a.

The times are checked through the mount (stat) and on the server (a second
client's Drive.stat), to the nanosecond: the mount keeps nanoseconds, and
every tool here sets them with utimensat.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import pytest
from support.mounts import Account, Mount, drive_of

MiB = 1 << 20
T2001 = 978_307_200  # 2001-01-01T00:00:00Z

# name -> (mtime in ns, mode, size); folders end in "/"
TREE: dict[str, tuple[int, int, int]] = {
    "top/": (T2001 * 10**9 + 86_400 * 10**9 * 40, 0o755, 0),
    "top/readme.txt": (T2001 * 10**9, 0o644, 1000),
    "top/exact.txt": (T2001 * 10**9 + 123_456_789, 0o600, 10),
    "top/sub/": (T2001 * 10**9 + 86_400 * 10**9 * 100 + 500_000_000, 0o750, 0),
    "top/sub/big.bin": (T2001 * 10**9 + 86_400 * 10**9 * 200 + 1, 0o640, MiB + MiB // 2),
    "top/sub/empty": (T2001 * 10**9 + 86_400 * 10**9 * 300, 0o444, 0),
}


def content(name: str, size: int) -> bytes:
    return random.Random(name).randbytes(size)


def make_local_tree(root: Path) -> None:
    for name, (_, mode, size) in TREE.items():
        p = root / name
        if name.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content(name, size))
    for name, (mtime, mode, _) in sorted(TREE.items(), reverse=True):  # files before their folders
        p = root / name
        os.chmod(p, mode)
        os.utime(p, ns=(mtime, mtime))


def make_tarball(path: Path) -> None:
    """Built with Python's tarfile (pax, so sub-second mtimes are carried), folders listed first."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for name, (mtime, mode, size) in TREE.items():
            ti = tarfile.TarInfo(name.rstrip("/"))
            ti.mode = mode
            ti.mtime = mtime // 10**9
            if mtime % 10**9:
                ti.pax_headers = {"mtime": f"{mtime // 10**9}.{mtime % 10**9:09d}"}
            if name.endswith("/"):
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = size
                t.addfile(ti, io.BytesIO(content(name, size)))


def check_tree(mount: Mount, peer: Account, dest: Path, *, check_dirs: bool = True) -> None:
    problems = []
    for name, (mtime, mode, size) in TREE.items():
        p = dest / name
        st = os.stat(p)
        if name.endswith("/") and not check_dirs:
            continue
        if st.st_mtime_ns // 10**9 != mtime // 10**9:
            problems.append(f"{name}: mtime {st.st_mtime_ns} != {mtime} (to the second)")
        elif st.st_mtime_ns != mtime:
            problems.append(f"{name}: mtime {st.st_mtime_ns} != {mtime} (nanoseconds)")
        if st.st_mode & 0o7777 != mode:
            problems.append(f"{name}: mode {oct(st.st_mode & 0o7777)} != {oct(mode)}")
        if not name.endswith("/"):
            assert p.read_bytes() == content(name, size), name
    assert problems == []
    # ... and that is what the server holds, not only what the mount remembers
    with drive_of(peer) as d:
        for name, (mtime, mode, size) in TREE.items():
            if name.endswith("/") and not check_dirs:
                continue
            e = d.stat("/" + str((dest / name).relative_to(mount.path)))
            if e.mtime_ns != mtime:
                problems.append(f"server {name}: mtime {e.mtime_ns} != {mtime}")
            if e.mode != mode:
                problems.append(f"server {name}: mode {oct(e.mode)} != {oct(mode)}")
            if not name.endswith("/"):
                assert e.size == size
    assert problems == []


def run(*cmd: str | Path) -> None:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout}{r.stderr}"


def test_tar_x_restores_mtimes(folder: Path, module_mount: Mount, module_peer: Account, tmp_path: Path) -> None:
    tarball = tmp_path / "old.tar"
    make_tarball(tarball)
    run("tar", "-x", "-p", "-f", tarball, "-C", folder)
    check_tree(module_mount, module_peer, folder)


def test_cp_p_restores_mtimes(folder: Path, module_mount: Mount, module_peer: Account, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_local_tree(src)
    run("cp", "-r", "-p", src / "top", folder / "top")
    check_tree(module_mount, module_peer, folder)


def test_cp_p_single_file_over_existing(folder: Path, module_mount: Mount, module_peer: Account,
                                        tmp_path: Path) -> None:
    """cp -p onto an existing file: O_TRUNC, write, then utimensat and chmod through the open descriptor."""
    src = tmp_path / "f"
    src.write_bytes(b"new bytes")
    os.chmod(src, 0o604)
    os.utime(src, ns=(T2001 * 10**9, T2001 * 10**9 + 7))
    dst = folder / "f"
    dst.write_bytes(b"older, longer content")
    run("cp", "-p", src, dst)
    st = os.stat(dst)
    assert (st.st_mtime_ns, st.st_mode & 0o7777, dst.read_bytes()) == (T2001 * 10**9 + 7, 0o604, b"new bytes")
    with drive_of(module_peer) as d:
        e = d.stat("/" + str(dst.relative_to(module_mount.path)))
        assert (e.mtime_ns, e.mode, e.size) == (T2001 * 10**9 + 7, 0o604, 9)


@pytest.mark.parametrize("inplace", [False, True], ids=["tempfile-rename", "inplace"])
def test_rsync_a_restores_mtimes(folder: Path, module_mount: Mount, module_peer: Account, tmp_path: Path,
                                 inplace: bool) -> None:
    src = tmp_path / "src"
    make_local_tree(src)
    extra = ["--inplace"] if inplace else []
    run("rsync", "-a", *extra, f"{src}/", f"{folder}/")
    check_tree(module_mount, module_peer, folder)
    assert not [n for n in os.listdir(folder / "top") if n.startswith(".")], "rsync temp files left behind"
    # a second run finds nothing to do (size and mtime match), and a changed file is sent again
    out = subprocess.run(["rsync", "-a", "-i", *extra, f"{src}/", f"{folder}/"], capture_output=True, text=True,
                         check=True).stdout
    assert [ln for ln in out.splitlines() if ln.startswith((">f", "cd", ".d"))] == [], out
    changed = src / "top" / "readme.txt"
    changed.write_bytes(b"changed")
    os.utime(changed, ns=(T2001 * 10**9, T2001 * 10**9 + 5))
    run("rsync", "-a", *extra, f"{src}/", f"{folder}/")
    st = os.stat(folder / "top" / "readme.txt")
    assert (folder / "top" / "readme.txt").read_bytes() == b"changed" and st.st_mtime_ns == T2001 * 10**9 + 5
