"""The `megadrive` command line: accounts, scripting commands and the server.

Errors are one line on stderr and a non-zero exit code (the error type's
``exit_code``); :func:`run` is the one place that maps them. The front-end
commands (webdav, mount, up) are added by ``megadrive.mount.commands``, so
the core never imports the front-ends.
"""

from __future__ import annotations

import json
import logging
import os
import stat as stat_mod
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from . import account
from .api import Api
from .drive import Drive, Entry, join
from .errors import ConfigError, IsADirectory, MegaDriveError, NotFound
from .state import clear_session, home, load_session, save_session, write_private

PROGRESS_MIN_BYTES = 16 << 20
BLOCK = 1 << 20


def parse_size(text: str) -> int:
    """'50G', '512M', '1.5T', '1000' -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (use e.g. 50G, 512M)") from None
    if value <= 0:
        raise click.BadParameter("size must be positive")
    return value


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def parse_listen(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}") from None


def read_password(password_file: str | None, *, confirm: bool = False) -> str:
    """From --password-file, then MEGADRIVE_PASSWORD, then an interactive prompt."""
    if password_file:
        try:
            return Path(password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read password file: {e.strerror}") from None
    env = os.environ.get("MEGADRIVE_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        raise ConfigError("no password: set MEGADRIVE_PASSWORD, use --password-file, or run in a terminal")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=confirm))


def _defaults() -> dict[str, Any]:
    p = home() / "config.json"
    try:
        return dict(json.loads(p.read_text())) if p.exists() else {}
    except ValueError:
        return {}


def _remember(server: str, user: str) -> None:
    write_private(home() / "config.json", json.dumps({"server": server, "user": user}).encode())


def open_drive() -> Drive:
    return Drive.open(home())


def run(fn: Callable[[], Any]) -> None:
    """Run a command body; turn every failure into one clear line and an exit code."""
    try:
        fn()
    except MegaDriveError as e:
        click.echo(f"megadrive: error: {e.message}", err=True)
        sys.exit(e.exit_code)
    except OSError as e:
        click.echo(f"megadrive: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("megadrive: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the user gets one line, never a traceback
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        click.echo(f"megadrive: internal error: {type(e).__name__}: {e} (run with -v for details)", err=True)
        sys.exit(70)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug information to stderr.")
def cli(verbose: bool) -> None:
    """MegaDrive: an end-to-end encrypted cloud drive."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="megadrive: %(levelname)s: %(message)s")


# -- server ---------------------------------------------------------------------------------------


@cli.group("server", invoke_without_command=True)
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), help="Storage folder.")
@click.option("--listen", default="127.0.0.1:8420", show_default=True, help="HOST:PORT to bind.")
@click.option("--quota", default="50G", show_default=True, help="Per-account quota (e.g. 50G).")
@click.option("--versions", default=10, show_default=True, help="File versions kept.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None)
@click.pass_context
def server_cmd(ctx: click.Context, data: Path | None, listen: str, quota: str, versions: int,
               tls_cert: str | None, tls_key: str | None) -> None:
    """Run the storage server (it only ever sees ciphertext)."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        from .server.config import ServerConfig
        from .server.serve import serve_forever

        if data is None:
            raise ConfigError("--data DIR is required")
        if bool(tls_cert) != bool(tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        host, port = parse_listen(listen, 8420)
        cfg = ServerConfig(data_dir=data, host=host, port=port, quota=parse_size(quota), versions_kept=versions,
                           tls_cert=Path(tls_cert) if tls_cert else None, tls_key=Path(tls_key) if tls_key else None)
        serve_forever(cfg, on_ready=lambda url: click.echo(f"MegaDrive server listening on {url}", err=False))

    run(body)


@server_cmd.command("gc")
@click.option("--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--grace", default=3600.0, show_default=True, help="Keep unreferenced chunks younger than this (s).")
def server_gc(data: Path, grace: float) -> None:
    """Delete chunks no file version references."""

    def body() -> None:
        from .server.config import ServerConfig
        from .server.serve import run_gc

        stats = run_gc(ServerConfig(data_dir=data), grace=grace)
        click.echo(" ".join(f"{k}={v}" for k, v in stats.items()))

    run(body)


@server_cmd.command("fsck")
@click.option("--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--repair", is_flag=True, help="Delete old orphan blobs, drop rows without a blob, recompute used.")
@click.option("--grace", default=3600.0, show_default=True, type=click.FloatRange(min=0),
              help="Spare orphan blobs younger than this (s): an upload in flight.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def server_fsck(data: Path, repair: bool, grace: float, as_json: bool) -> None:
    """Check the chunk store against the metadata; exit 1 if something is wrong."""

    def body() -> None:
        from .server.config import ServerConfig
        from .server.fsck import run as run_fsck
        from .server.fsck import text_report

        try:
            result = run_fsck(ServerConfig(data_dir=data), do_repair=repair, grace=grace)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
        click.echo(json.dumps(result.to_json(), sort_keys=True) if as_json else "\n".join(text_report(result)))
        if result.exit_code:
            sys.exit(result.exit_code)

    run(body)


# -- accounts -------------------------------------------------------------------------------------


@cli.command()
@click.option("--server", "server", required=True, help="Server URL, e.g. http://127.0.0.1:8420")
@click.option("--user", required=True)
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
def signup(server: str, user: str, password_file: str | None) -> None:
    """Create an account (keys are made here; the server never sees them) and log in."""

    def body() -> None:
        pw = read_password(password_file, confirm=True)
        base = home()
        api = Api(server)
        s = account.signup(api, base, user, pw)
        save_session(base, s)
        _remember(api.base_url, s.user)
        click.echo(f"Signed up and logged in as {s.user} on {api.base_url}")

    run(body)


@cli.command()
@click.option("--server", "server", default=None, help="Server URL (default: the last one used).")
@click.option("--user", default=None, help="User name (default: the last one used).")
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
def login(server: str | None, user: str | None, password_file: str | None) -> None:
    """Log in; the session (token and master key) is kept in a 0600 file until logout."""

    def body() -> None:
        d = _defaults()
        srv, usr = server or d.get("server"), user or d.get("user")
        if not srv or not usr:
            raise ConfigError("give --server and --user (no earlier login to default to)")
        pw = read_password(password_file)
        base = home()
        api = Api(srv)
        s = account.login(api, base, usr, pw)
        save_session(base, s)
        _remember(api.base_url, s.user)
        click.echo(f"Logged in as {s.user} on {api.base_url}")

    run(body)


@cli.command()
def logout() -> None:
    """Revoke the session on the server and forget the keys on this machine."""

    def body() -> None:
        base = home()
        try:
            s = load_session(base)
        except MegaDriveError:
            click.echo("Not logged in.")
            return
        with suppress(MegaDriveError):
            Api(s.server, s.token).logout()
        clear_session(base)
        click.echo(f"Logged out {s.user}.")

    run(body)


@cli.command()
def status() -> None:
    """Account, quota used and available, pending uploads."""

    def body() -> None:
        drive = open_drive()
        try:
            q = drive.quota(max_age=0)
            pct = 100.0 * q.used / q.total if q.total else 0.0
            click.echo(f"account:   {drive.session.user} on {drive.session.server}")
            click.echo(f"quota:     {human(q.total)} ({q.total} bytes)")
            click.echo(f"used:      {human(q.used)} ({q.used} bytes, {pct:.1f}%)")
            click.echo(f"available: {human(q.available)} ({q.available} bytes)")
            click.echo(f"pending uploads: {drive.pending_uploads()}")
        finally:
            drive.close()

    run(body)


# -- files ----------------------------------------------------------------------------------------


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
    """List a folder (or show one file)."""

    def body() -> None:
        drive = open_drive()
        try:
            e = drive.stat(path)
            for child in drive.listdir(path) if e.is_dir else [e]:
                click.echo(_fmt_entry(child, long))
        finally:
            drive.close()

    run(body)


@cli.command()
@click.argument("path")
@click.option("-p", "parents", is_flag=True, help="Create parent folders as needed.")
def mkdir(path: str, parents: bool) -> None:
    """Create a folder."""

    def body() -> None:
        drive = open_drive()
        try:
            drive.makedirs(path) if parents else drive.mkdir(path)
        finally:
            drive.close()

    run(body)


def _progress(total: int, desc: str) -> tqdm[Any]:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False,
                disable=total < PROGRESS_MIN_BYTES or None, file=sys.stderr)


@cli.command()
@click.argument("local", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("remote")
def put(local: Path, remote: str) -> None:
    """Upload LOCAL to REMOTE (an absolute drive path, or a folder to put it in)."""

    def body() -> None:
        drive = open_drive()
        try:
            target = remote
            if remote.endswith("/") or (drive.exists(remote) and drive.stat(remote).is_dir):
                target = join(remote, local.name)
            st = local.stat()
            w = drive.open_write(target, mtime_ns=st.st_mtime_ns)
            try:
                with open(local, "rb") as f, _progress(st.st_size, local.name) as bar:
                    while block := f.read(BLOCK):
                        w.write(block)
                        bar.update(len(block))
                w.commit()
            finally:
                w.close()
            drive.set_attrs(target, mode=st.st_mode & 0o777)
        finally:
            drive.close()

    run(body)


@cli.command()
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path))
def get(remote: str, local: Path) -> None:
    """Download REMOTE to LOCAL; the file appears only once every chunk verified."""

    def body() -> None:
        if "://" in remote:
            _get_link(remote, local)
            return
        drive = open_drive()
        try:
            e = drive.stat(remote)
            if e.is_dir:
                raise IsADirectory(f"is a folder: {remote}")
            dest = local / e.name if local.is_dir() else local
            if not dest.parent.is_dir():
                raise NotFound(f"no such local folder: {dest.parent}")
            r = drive.open_read(remote, cache=False)
            try:
                _write_verified(dest, r.iter_range(), r.size, e.name, e.mode or 0o644, e.mtime_ns)
            finally:
                r.close()
        finally:
            drive.close()

    run(body)


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


def _get_link(url: str, local: Path) -> None:
    """Download a public link: no account, the key from the URL's #fragment stays here."""
    from . import format
    from .content import chunk_len
    from .sharing import open_public_link, parse_link

    password = None
    if parse_link(url).fragment == "p":
        password = os.environ.get("MEGADRIVE_LINK_PASSWORD") or (
            str(click.prompt("Link password", hide_input=True)) if sys.stdin.isatty() else None)
        if not password:
            raise ConfigError("this link is password-protected: set MEGADRIVE_LINK_PASSWORD or run in a terminal")
    api, record, m, link_id = open_public_link(url, password)
    dest = local / Path(record.name).name if local.is_dir() else local
    if not dest.parent.is_dir():
        raise NotFound(f"no such local folder: {dest.parent}")
    ckey = format.chunk_key(record.content_key)

    def blocks() -> Any:
        for i, cid in enumerate(m.chunks):
            blob = api.public_chunk(link_id, cid.hex())
            yield format.open_chunk(ckey, record.file_id, i, i == len(m.chunks) - 1, cid, blob,
                                    chunk_len(m.size, i, m.chunk_size))

    _write_verified(dest, blocks(), m.size, record.name, 0o644, None)
    click.echo(f"Downloaded {record.name} ({human(m.size)}) to {dest}")


@cli.command()
@click.argument("src")
@click.argument("dst")
@click.option("-f", "force", is_flag=True, help="Replace an existing destination file.")
def mv(src: str, dst: str, force: bool) -> None:
    """Move or rename (metadata only; nothing is re-uploaded)."""

    def body() -> None:
        drive = open_drive()
        try:
            target = dst
            if drive.exists(dst) and drive.stat(dst).is_dir and not drive.stat(src).is_dir or dst.endswith("/"):
                target = join(dst, drive.stat(src).name)
            drive.rename(src, target, overwrite=force)
        finally:
            drive.close()

    run(body)


@cli.command()
@click.argument("path")
@click.option("-r", "recursive", is_flag=True, help="Remove a folder and its contents.")
def rm(path: str, recursive: bool) -> None:
    """Move a file (or, with -r, a folder) to the trash."""

    def body() -> None:
        drive = open_drive()
        try:
            e = drive.stat(path)
            if e.is_dir and not recursive:
                raise IsADirectory(f"is a folder (use -r): {path}")
            drive.delete(path)
        finally:
            drive.close()

    run(body)


# -- sharing, contacts, links ----------------------------------------------------------------------


def _with_drive(fn: Callable[[Drive], Any]) -> None:
    def body() -> None:
        drive = open_drive()
        try:
            fn(drive)
        finally:
            drive.close()

    run(body)


@cli.command()
@click.argument("path")
@click.option("--with", "user", required=True, help="Account to share with.")
@click.option("--access", type=click.Choice(["read", "write"]), default="read", show_default=True)
def share(path: str, user: str, access: str) -> None:
    """Share a folder with another account (its key is sealed to their verified identity)."""

    def fn(d: Drive) -> None:
        s = d.sharing.share(path, user, access)
        c = d.sharing.contact(user)
        click.echo(f"Shared {path} with {s.recipient} ({access}).")
        if not c.verified:
            click.echo(f"  {s.recipient}'s key fingerprint: {c.fingerprint}\n"
                       f"  compare it with them, then run: megadrive contacts verify {s.recipient}")

    _with_drive(fn)


@cli.group(invoke_without_command=True)
@click.pass_context
def shares(ctx: click.Context) -> None:
    """Outgoing and incoming shares with their access levels (and those waiting to be accepted)."""
    if ctx.invoked_subcommand is not None:
        return

    def fn(d: Drive) -> None:
        out = d.sharing.outgoing()
        click.echo("outgoing:" if out else "outgoing: none")
        for s in out:
            click.echo(f"  {s.path} -> {s.recipient} ({s.access})")
        inc = sorted(d.sharing.incoming.values(), key=lambda s: (s.owner_name, s.name))
        click.echo("incoming:" if inc else "incoming: none")
        for i in inc:
            pin = d.sharing.book.get(i.owner_name)
            note = "" if pin and pin.verified else f"  [key not verified: megadrive contacts verify {i.owner_name}]"
            click.echo(f"  /Shared with me/{i.owner_name}/{i.name} <- {i.owner_name} ({i.access}){note}")
        waiting = sorted(d.sharing.pending.values(), key=lambda s: (s.owner_name, s.name))
        if waiting:
            click.echo("pending (from accounts you have not accepted yet; nothing of them is loaded):")
        for p in waiting:
            pin = d.sharing.book.get(p.owner_name)
            fp = f", key {pin.fingerprint}" if pin else ""
            click.echo(f"  {p.name} <- {p.owner_name} ({p.access}{fp})  [accept: megadrive shares accept "
                       f"{p.owner_name}]")

    _with_drive(fn)


@shares.command("accept")
@click.argument("user")
def shares_accept(user: str) -> None:
    """Accept the shares of USER (an account you had no contact with before): their folders appear."""

    def fn(d: Drive) -> None:
        pin = d.sharing.book.get(user.strip().lower())
        accepted = d.sharing.accept(user)
        if pin is not None and not pin.verified:
            click.echo(f"{pin.user}'s key fingerprint: {pin.fingerprint}\n"
                       f"  compare it with them, then run: megadrive contacts verify {pin.user}")
        for s in accepted:
            click.echo(f"Accepted /Shared with me/{s.owner_name}/{s.name} ({s.access}).")
        if not accepted:
            click.echo(f"Accepted {user}; no share from them is active now.")

    _with_drive(fn)


@cli.command()
@click.argument("path")
@click.option("--with", "user", required=True)
def unshare(path: str, user: str) -> None:
    """Revoke a share at once and re-key the folder (later content is sealed under new keys)."""

    def fn(d: Drive) -> None:
        n = d.sharing.unshare(path, user)
        click.echo(f"Unshared {path} from {user}; re-keyed {n} node(s). "
                   "They may keep what they could read before.")

    _with_drive(fn)


@cli.group(invoke_without_command=True)
@click.pass_context
def contacts(ctx: click.Context) -> None:
    """Contacts' identity keys, pinned on first use."""
    if ctx.invoked_subcommand is not None:
        return

    def fn(d: Drive) -> None:
        cs = d.sharing.contacts()
        if not cs:
            click.echo("no contacts yet")
        for c in cs:
            click.echo(f"{c.user:<20} {c.fingerprint}  {'verified' if c.verified else 'NOT verified'}")

    _with_drive(fn)


@contacts.command("verify")
@click.argument("user")
def contacts_verify(user: str) -> None:
    """Print USER's key fingerprint to compare out of band, and mark it verified."""

    def fn(d: Drive) -> None:
        c = d.sharing.verify_contact(user)
        click.echo(f"{c.user}: {c.fingerprint}\nMarked verified. Compare these digits with {c.user} in person "
                   "or over a channel you trust; if they differ, do not share with this account.")

    _with_drive(fn)


def scrub_fragments(text: str) -> str:
    """Cut every '#fragment' out of free text: a pasted link's key never leaves this machine, however written."""
    return " ".join(w.split("#", 1)[0] + ("#" if "#" in w else "") for w in text.split())


def parse_duration(text: str) -> float:
    """'30m', '24h', '7d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise click.BadParameter(f"not a duration: {text!r} (use e.g. 24h, 7d)") from None


@cli.command()
@click.argument("path")
@click.option("--password", "with_password", is_flag=True, help="Protect the link with a password (prompted, "
              "or MEGADRIVE_LINK_PASSWORD).")
@click.option("--expires", default=None, help="Lifetime, e.g. 24h or 7d.")
def link(path: str, with_password: bool, expires: str | None) -> None:
    """Print a public link to a file; its key is only in the URL's #fragment, never sent to the server."""

    def fn(d: Drive) -> None:
        pw = None
        if with_password:
            pw = os.environ.get("MEGADRIVE_LINK_PASSWORD") or (
                str(click.prompt("Link password", hide_input=True, confirmation_prompt=True))
                if sys.stdin.isatty() else None)
            if not pw:
                raise ConfigError("give the link password (MEGADRIVE_LINK_PASSWORD or a terminal)")
        until = time.time() + parse_duration(expires) if expires else None
        click.echo(d.sharing.create_link(path, pw, until))

    _with_drive(fn)


@cli.command()
@click.argument("path")
def unlink(path: str) -> None:
    """Delete the public links to a file."""

    def fn(d: Drive) -> None:
        n = d.sharing.remove_links(path)
        click.echo(f"Removed {n} link(s) to {path}.")

    _with_drive(fn)


@cli.command()
@click.argument("url")
@click.option("--reason", required=True)
def report(url: str, reason: str) -> None:
    """Report a link as abusive (the #key part of the URL is never sent)."""

    def body() -> None:
        from .sharing import parse_link

        p = parse_link(url)
        clean = scrub_fragments(reason)
        r = Api(p.server).report_abuse(f"{p.server}/l/{p.link_id}", clean)
        click.echo(f"Reported (report {r.get('report_id', '?')}).")

    run(body)


@server_cmd.command("takedown")
@click.argument("target")
@click.option("--data", "data", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--reason", default="abuse notice", show_default=True)
@click.option("--operator", default=None, help="Who orders it (default: the OS user).")
def server_takedown(target: str, data: Path, reason: str, operator: str | None) -> None:
    """Remove reported content: chunks deleted, node marked, links answer 451, audit log entry."""

    def body() -> None:
        from .server.config import ServerConfig
        from .server.takedown import TakedownError, takedown

        try:
            result = takedown(ServerConfig(data_dir=data), target.split("#", 1)[0], reason=reason, operator=operator)
        except TakedownError as e:
            raise ConfigError(f"takedown refused: {e}") from None
        click.echo(" ".join(f"{k}={v}" for k, v in result.items()))

    run(body)
