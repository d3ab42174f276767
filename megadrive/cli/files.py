"""File commands: ls, mkdir, put, get, mv, rm."""

from __future__ import annotations

import os
import stat as stat_mod
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from ..drive import Drive, Entry, join
from ..errors import AlreadyExists, ConfigError, IntegrityError, IsADirectory, NotFound
from ..publiclink import LinkedFolder, LinkReader, OpenedLink, open_link, parse_link, read_file_link
from . import cli, human, run, with_drive

PROGRESS_MIN_BYTES = 16 << 20
BLOCK = 1 << 20


def _fmt_entry(e: Entry, long: bool) -> str:
    shown = e.name if e.name.isprintable() else repr(e.name)[1:-1]  # no terminal escapes from a co-writer
    name = shown + ("/" if e.is_dir else "") + (f" -> {e.link}" if e.link is not None else "") \
        + ("  [removed after an abuse notice]" if e.removed else "")
    if not long:
        return name
    t = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime))
    return f"{stat_mod.filemode((stat_mod.S_IFDIR if e.is_dir else stat_mod.S_IFREG) | e.mode)} " \
           f"{e.size:>12} {t} {name}"


@cli.command("ls")
@click.argument("path", default="/")
@click.option("-l", "long", is_flag=True, help="Long listing: mode, size, mtime.")
def ls_cmd(path: str, long: bool) -> None:
    """List a folder (or show one file); PATH may be a public link (https://HOST/l/ID#KEY)."""

    if "://" in path:
        run(lambda: _ls_link(path, long))
        return

    def fn(drive: Drive) -> None:
        e = drive.stat(path)
        for child in drive.listdir(path) if e.is_dir else [e]:
            click.echo(_fmt_entry(child, long))
        hidden = drive.hidden(path) if e.is_dir else []
        if hidden:
            click.echo(f"megadrive: {len(hidden)} entr{'y' if len(hidden) == 1 else 'ies'} hidden: they fail "
                       "their integrity checks (tampered with or corrupted on the server)", err=True)

    with_drive(fn)


@cli.command()
@click.argument("path")
@click.option("-p", "parents", is_flag=True, help="Create parent folders as needed.")
def mkdir(path: str, parents: bool) -> None:
    """Create a folder."""

    with_drive(lambda drive: drive.makedirs(path) if parents else drive.mkdir(path))


def _progress(total: int, desc: str) -> tqdm[Any]:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False,
                disable=total < PROGRESS_MIN_BYTES or None, file=sys.stderr)


@cli.command()
@click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("remote")
def put(local: Path, remote: str) -> None:
    """Upload LOCAL to REMOTE (an absolute drive path, or a folder to put it in)."""

    def fn(drive: Drive) -> None:
        target = remote
        if remote.endswith("/") or (drive.exists(remote) and drive.stat(remote).is_dir):
            target = join(remote, local.name)
        st = local.stat()
        with drive.open_write(target, mtime_ns=st.st_mtime_ns) as w, open(local, "rb") as f, \
                _progress(st.st_size, local.name) as bar:
            while block := f.read(BLOCK):
                w.write(block)
                bar.update(len(block))
            w.commit()
        drive.set_attrs(target, mode=st.st_mode & 0o777)

    with_drive(fn)


@cli.command()
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path))
def get(remote: str, local: Path) -> None:
    """Download REMOTE to LOCAL; the file appears only once every chunk verified."""

    def fn(drive: Drive) -> None:
        e = drive.stat(remote)
        if e.is_dir:
            raise IsADirectory(f"is a folder: {remote}")
        dest = local / e.name if local.is_dir() else local
        if not dest.parent.is_dir():
            raise NotFound(f"no such local folder: {dest.parent}")
        with drive.open_read(remote, cache=False) as r:
            _write_verified(dest, r.iter_range(), r.size, e.name, e.mode or 0o644, e.mtime_ns)

    if "://" in remote:
        run(lambda: _get_link(remote, local))
    else:
        with_drive(fn)


def _write_verified(dest: Path, blocks: Any, total: int, name: str, mode: int, mtime_ns: int | None) -> None:
    """Write to a temp file beside ``dest``; rename into place only when every block verified."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, _progress(total, name) as bar:
            for block in blocks:
                f.write(block)
                bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode & 0o777)
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_link(url: str) -> OpenedLink:
    """Open a public link (no account), asking for its password if it has one; the key stays here."""
    password = None
    if parse_link(url).fragment == "p":
        password = os.environ.get("MEGADRIVE_LINK_PASSWORD") or (
            str(click.prompt("Link password", hide_input=True)) if sys.stdin.isatty() else None)
        if not password:
            raise ConfigError("this link is password-protected: set MEGADRIVE_LINK_PASSWORD or run in a terminal")
    return open_link(url, password)


def _refused(folder: LinkedFolder) -> None:
    if folder.refused:
        one = folder.refused == 1
        raise IntegrityError(f"integrity check failed: {folder.refused} entr{'y' if one else 'ies'} of the link "
                             f"{'was' if one else 'were'} left out (tampered with or corrupted on the server)")


def _ls_link(url: str, long: bool) -> None:
    link = _open_link(url)
    if link.record.kind == "file":
        with read_file_link(link) as reader:
            click.echo(f"{reader.size:>12} {link.record.name}" if long else link.record.name)
        return
    with LinkedFolder(link) as folder:
        click.echo(f"{folder.record.name}/")
        for e in folder.entries:
            shown = e.path if e.path.isprintable() else repr(e.path)[1:-1]
            line = shown + ("/" if e.is_dir else "") + ("  [removed after an abuse notice]" if e.removed else "")
            click.echo(f"{'' if e.is_dir else e.size:>12} {line}" if long else line)
        _refused(folder)


def _get_link(url: str, local: Path) -> None:
    """Download a public link: no account, the key from the URL's #fragment stays here. A folder link
    is downloaded whole into LOCAL/<its name>, which must not exist yet."""
    link = _open_link(url)
    if link.record.kind == "dir":
        with LinkedFolder(link) as folder:
            _get_folder(folder, local)
        return
    reader: LinkReader
    with read_file_link(link) as reader:
        name = reader.record.name
        dest = local / Path(name).name if local.is_dir() else local
        if not dest.parent.is_dir():
            raise NotFound(f"no such local folder: {dest.parent}")
        _write_verified(dest, reader.iter_range(), reader.size, name, 0o644, None)
    click.echo(f"Downloaded {name} ({human(reader.size)}) to {dest}")


def _numbered(name: str, n: int, is_dir: bool) -> str:
    """'a.txt' -> 'a (2).txt'; a folder or a name without an extension: 'a (2)'."""
    if is_dir or "." not in name.lstrip("."):
        return f"{name} ({n})"
    stem, _, ext = name.rpartition(".")
    return f"{stem} ({n}).{ext}"


def _get_folder(folder: LinkedFolder, local: Path) -> None:
    """Save a linked folder into LOCAL/<its name>. Two entries with one name in a folder (two devices
    made them at once, or the server shows an older state of one) are both saved, the later as
    'name (2)'; nothing is written outside the new folder."""
    if not local.is_dir():
        raise NotFound(f"no such local folder: {local} (a folder link is saved into a folder)")
    top = local / folder.record.name
    if top.exists():
        raise AlreadyExists(f"{top} already exists")
    top.mkdir()
    inside = top.resolve()
    where = {folder.record.node_id: top}  # node id -> the local folder its entries go into
    files = total = 0
    for e in folder.entries:
        parent = where.get(e.parent_id)
        if parent is None:  # (its folder was skipped)
            continue
        dest, n = parent / e.meta.name, 1
        while os.path.lexists(dest):
            n += 1
            dest = parent / _numbered(e.meta.name, n, e.is_dir)
        if not dest.resolve().is_relative_to(inside):  # (a name only another system reads as a path)
            click.echo(f"megadrive: skipped {e.path}: its name is not a plain file name here", err=True)
        elif e.is_dir:
            dest.mkdir()
            where[e.node_id] = dest
        elif e.removed:
            click.echo(f"megadrive: skipped {e.path}: removed after an abuse notice", err=True)
        else:
            with folder.reader(e) as r:
                _write_verified(dest, r.iter_range(), r.size, dest.name, e.content.mode or 0o644,
                                e.content.mtime_ns or None)
            files, total = files + 1, total + r.size
    click.echo(f"Downloaded {folder.record.name}/: {files} file(s), {human(total)}, to {top}")
    _refused(folder)


@cli.command()
@click.argument("src")
@click.argument("dst")
@click.option("-f", "force", is_flag=True, help="Replace an existing destination file.")
def mv(src: str, dst: str, force: bool) -> None:
    """Move or rename (metadata only; nothing is re-uploaded)."""

    def fn(drive: Drive) -> None:
        target = dst
        if drive.exists(dst) and drive.stat(dst).is_dir and not drive.stat(src).is_dir or dst.endswith("/"):
            target = join(dst, drive.stat(src).name)
        drive.rename(src, target, overwrite=force)

    with_drive(fn)


@cli.command()
@click.argument("path")
@click.option("-r", "recursive", is_flag=True, help="Remove a folder and its contents.")
def rm(path: str, recursive: bool) -> None:
    """Move a file (or, with -r, a folder) to the trash."""

    def fn(drive: Drive) -> None:
        if drive.stat(path).is_dir and not recursive:
            raise IsADirectory(f"is a folder (use -r): {path}")
        drive.delete(path)

    with_drive(fn)

