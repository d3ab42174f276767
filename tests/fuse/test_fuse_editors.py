"""How real programs save files, each checked on the mount and on the server.

vim (swap file, then backup-and-rename, or backupcopy=yes: rewrite in place),
the atomic temp-file-and-rename save, an in-place rewrite, cp -r of a source
tree and extracting a real tarball, verified with diff -r.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tarfile
import tempfile
from pathlib import Path

import pytest
from support.mounts import Account, Mount, drive_of, hidden_files, server_names, server_read

STDLIB = Path(sysconfig.get_paths()["stdlib"])
ORIGINAL = "".join(f"line {i}: the quick brown fox\n" for i in range(200)).encode()


def rel(mount: Mount, p: Path) -> str:
    return "/" + str(p.relative_to(mount.path))


def node_id(peer: Account, path: str) -> str:
    with drive_of(peer) as d:
        return d.stat(path).node_id


def run(*cmd: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, cwd=cwd,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def vim(folder: Path, name: str, *commands: str) -> None:
    """vim in Ex mode, scripted: -u NONE -N (no vimrc, nocompatible), each command a -c."""
    if shutil.which("vim") is None:
        pytest.fail("vim is not installed (apt-get install -y vim)")
    args: list[str | Path] = ["vim", "-E", "-s", "-u", "NONE", "-N", "-i", "NONE"]
    for c in commands:
        args += ["-c", c]
    run(*args, "-c", "wq", name, cwd=folder)


def expected_after_vim_edit() -> bytes:
    return ORIGINAL.replace(b"line 7: the quick", b"line 7: THE QUICK").replace(b"line 150:", b"LINE 150:")


def test_vim_default_save_swapfile_backup_rename(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    """Vim's defaults: a .swp file while editing, then writebackup with backupcopy=auto.

    Under /tmp vim skips the backup ('backupskip' matches /tmp/*), so it is cleared here to get what an
    editor does in a home folder: rename the file to f.txt~, write a new f.txt, delete f.txt~.
    """
    f = folder / "f.txt"
    f.write_bytes(ORIGINAL)
    before = node_id(module_peer, rel(module_mount, f))
    vim(folder, "f.txt", "set backupskip=", "8s/the quick/THE QUICK/", "151s/line/LINE/")
    assert f.read_bytes() == expected_after_vim_edit()
    names = os.listdir(folder)
    assert names == ["f.txt"], names  # no .f.txt.swp, f.txt~, 4913 or .fuse_hidden* left
    assert server_names(module_peer, rel(module_mount, folder)) == ["f.txt"]
    assert server_read(module_peer, rel(module_mount, f)) == expected_after_vim_edit()
    # vim really took the rename path: the saved file is a new node
    assert node_id(module_peer, rel(module_mount, f)) != before
    assert os.stat(f).st_mode & 0o777 == 0o644


def test_vim_backupcopy_yes_rewrites_in_place(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    f = folder / "f.txt"
    f.write_bytes(ORIGINAL)
    os.chmod(f, 0o640)
    before = node_id(module_peer, rel(module_mount, f))
    vim(folder, "f.txt", "set backupskip= backupcopy=yes", "8s/the quick/THE QUICK/", "151s/line/LINE/")
    assert f.read_bytes() == expected_after_vim_edit()
    assert os.listdir(folder) == ["f.txt"]
    assert server_names(module_peer, rel(module_mount, folder)) == ["f.txt"]
    assert server_read(module_peer, rel(module_mount, f)) == expected_after_vim_edit()
    assert node_id(module_peer, rel(module_mount, f)) == before  # the same file, rewritten
    assert os.stat(f).st_mode & 0o777 == 0o640


def test_vim_new_file(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    vim(folder, "new.txt", "call setline(1, ['hello', 'world'])")
    assert (folder / "new.txt").read_bytes() == b"hello\nworld\n"
    assert os.listdir(folder) == ["new.txt"]
    assert server_read(module_peer, rel(module_mount, folder / "new.txt")) == b"hello\nworld\n"


def test_python_atomic_save(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    target = folder / "settings.json"
    target.write_bytes(b'{"v": 1}')
    fd_old = os.open(target, os.O_RDONLY)  # a reader holding the old version
    try:
        for v in range(2, 5):
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".settings.", delete=False) as tmp:
                tmp.write(b'{"v": %d, "pad": "%s"}' % (v, b"x" * v * 1000))
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp.name, target)
            assert target.read_bytes().startswith(b'{"v": %d' % v)
        assert os.pread(fd_old, 100, 0) == b'{"v": 1}'
    finally:
        os.close(fd_old)
    expect = b'{"v": 4, "pad": "' + b"x" * 4000 + b'"}'
    names = os.listdir(folder)
    assert names == ["settings.json"] and not hidden_files(names), names
    assert target.read_bytes() == expect
    assert server_names(module_peer, rel(module_mount, folder)) == ["settings.json"]
    assert server_read(module_peer, rel(module_mount, target)) == expect


def test_rewrite_in_place(folder: Path, module_mount: Mount, module_peer: Account) -> None:
    f = folder / "data.bin"
    original = bytes(range(256)) * 8192  # 2 MiB
    f.write_bytes(original)
    with open(f, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"PATCHED")
        fh.seek(0, os.SEEK_END)
        fh.write(b"TAIL")
        fh.seek(1_500_000)
        fh.truncate()
    expect = original[:1000] + b"PATCHED" + original[1007:1_500_000]
    assert f.read_bytes() == expect
    assert os.stat(f).st_size == 1_500_000
    assert server_read(module_peer, rel(module_mount, f)) == expect


def diff_r(a: Path, b: Path) -> None:
    r = subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"diff -r {a} {b}:\n{r.stdout[:3000]}{r.stderr[:1000]}"


def _copy_ignoring_pycache(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)


def test_cp_r_source_tree(folder: Path, module_mount: Mount, module_peer: Account, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for pkg in ("email", "json"):
        _copy_ignoring_pycache(STDLIB / pkg, src / pkg)  # a snapshot, so nothing changes under us
    run("cp", "-r", src / "email", src / "json", folder)
    diff_r(src / "email", folder / "email")
    diff_r(src / "json", folder / "json")
    # and the server has the same tree
    with drive_of(module_peer) as d:
        for p in sorted(src.rglob("*")):
            remote = rel(module_mount, folder / p.relative_to(src))
            if p.is_dir():
                assert {e.name for e in d.listdir(remote)} == set(os.listdir(p)), remote
            else:
                assert d.read_file(remote) == p.read_bytes(), remote


def _tarball_of(src: Path, tarball: Path, arcname: str) -> int:
    with tarfile.open(tarball, "w:gz") as t:
        t.add(src, arcname=arcname, filter=lambda ti: None if "__pycache__" in ti.name else ti)
    with tarfile.open(tarball) as t:
        return len(t.getmembers())


def test_extract_real_tarball(folder: Path, module_mount: Mount, tmp_path: Path) -> None:
    tarball = tmp_path / "xml.tar.gz"
    n = _tarball_of(STDLIB / "xml", tarball, "xml")
    assert n > 20
    run("tar", "-x", "-z", "-f", tarball, "-C", folder)
    ref = tmp_path / "ref"
    ref.mkdir()
    run("tar", "-x", "-z", "-f", tarball, "-C", ref)
    diff_r(ref / "xml", folder / "xml")


def test_extract_tarball_with_a_symlink(folder: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "target.txt").write_bytes(b"t")
    os.symlink("target.txt", src / "link")
    tarball = tmp_path / "l.tar"
    with tarfile.open(tarball, "w") as t:
        t.add(src, arcname="pkg")
    r = subprocess.run(["tar", "-x", "-f", str(tarball), "-C", str(folder)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.readlink(folder / "pkg" / "link") == "target.txt"
    assert (folder / "pkg" / "link").read_bytes() == b"t"
    os.symlink("/etc/hostname", folder / "abs")  # ln -s, absolute target, kept verbatim
    assert os.readlink(folder / "abs") == "/etc/hostname" and os.path.islink(folder / "abs")
    os.rename(folder / "abs", folder / "abs2")
    assert os.readlink(folder / "abs2") == "/etc/hostname"
    os.unlink(folder / "abs2")
    assert not os.path.lexists(folder / "abs2")
