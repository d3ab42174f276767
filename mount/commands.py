"""Front-end commands (webdav, up) added to the core CLI; the console script's entry point.

They live here so the core package never imports the front-ends: this module
imports ``megadrive.cli`` and adds to it, not the other way round.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import click

from megadrive import account
from megadrive.api import Api
from megadrive.cli import cli, parse_listen, parse_size, read_password, run
from megadrive.drive import Drive
from megadrive.errors import AuthError, ConfigError, MegaDriveError
from megadrive.state import get_pin, home, load_session, save_session, write_private

from . import gateway


def _wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def _parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, pw = auth.partition(":")
    if not sep or not user or not pw:
        raise ConfigError("--auth takes USER:PASSWORD")
    return user, pw


def _howto(url: str) -> str:
    return (f"MegaDrive is served at {url}\n"
            f"  browser:       open {url}\n"
            f"  GNOME/KDE:     dav://{url.split('://', 1)[1]}  (Files > Other Locations > Connect to Server)\n"
            f"  macOS Finder:  Go > Connect to Server > {url}\n"
            f"  Windows:       net use Z: {url}\n"
            f"  rclone:        rclone config create md webdav url={url} vendor=other\n"
            "Press Ctrl-C to stop.")


@cli.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT for the gateway.")
@click.option("--auth", default=None, help="USER:PASSWORD required of WebDAV clients (needed off loopback).")
def webdav(listen: str, auth: str | None) -> None:
    """Serve the logged-in drive, decrypted, over WebDAV."""

    def body() -> None:
        host, port = parse_listen(listen, 8080)
        drive = Drive.open(home())
        gw = gateway.start(drive, host, port, auth=_parse_auth(auth))
        try:
            click.echo(_howto(gw.url))
            _wait_for_signal()
        finally:
            gw.stop()
            drive.close()

    run(body)


@cli.command()
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Server storage folder (default: MEGADRIVE_HOME/server).")
@click.option("--server-listen", default="127.0.0.1:8420", show_default=True, help="HOST:PORT of the local server.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT of the WebDAV gateway.")
@click.option("--user", default="local", show_default=True, help="Account name on the local server.")
@click.option("--quota", default="50G", show_default=True)
@click.option("--auth", default=None, help="USER:PASSWORD required of WebDAV clients (needed off loopback).")
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
@click.option("--mount", "mount_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also mount the drive as a folder here (FUSE).")
def up(data: Path | None, server_listen: str, listen: str, user: str, quota: str, auth: str | None,
       password_file: str | None, mount_dir: Path | None) -> None:
    """Run a local server and the WebDAV gateway in one process (creates the account on first run)."""

    def body() -> None:
        from megadrive.server.config import ServerConfig
        from megadrive.server.serve import start as start_server

        base = home()
        shost, sport = parse_listen(server_listen, 8420)
        ghost, gport = parse_listen(listen, 8080)
        gauth = _parse_auth(auth)
        if not gateway.is_loopback(ghost) and not gauth:
            raise ConfigError(f"refusing to serve the decrypted drive on {ghost} without --auth USER:PASSWORD")
        cfg = ServerConfig(data_dir=data or base / "server", host=shost, port=sport, quota=parse_size(quota))
        srv = start_server(cfg)
        try:
            api = Api(srv.url)
            name = account.normalize_user(user)
            session = None
            try:
                s = load_session(base)
                if s.server == api.base_url and s.user == name:
                    Api(s.server, s.token).account()
                    session = s
            except MegaDriveError:
                session = None
            if session is None:
                marker = base / "up.json"
                known = json.loads(marker.read_text()) if marker.exists() else {}
                if known.get(str(cfg.data_dir.resolve())) != name and get_pin(base, api.base_url, name) is None:
                    click.echo(f"First run: creating account {name!r} on the local server.")
                    session = account.signup(api, base, name, read_password(password_file, confirm=True))
                    known[str(cfg.data_dir.resolve())] = name
                    write_private(marker, json.dumps(known).encode())
                else:
                    session = account.login(api, base, name, read_password(password_file))
                save_session(base, session)
            drive = Drive.open(base)
            try:
                gw = gateway.start(drive, ghost, gport, auth=gauth)
                try:
                    click.echo(f"Local server (ciphertext only) at {srv.url}, data in {cfg.data_dir}")
                    if mount_dir is not None:
                        _mount_here(base, mount_dir)
                    click.echo(_howto(gw.url))
                    _wait_for_signal()
                finally:
                    if mount_dir is not None and os.path.ismount(mount_dir):
                        _unmount(base, mount_dir)
                    gw.stop()
            finally:
                drive.close()
        except AuthError as e:
            raise AuthError(f"{e.message} (wrong password for {user!r}?)") from None
        finally:
            srv.stop()

    run(body)


def _pidfile(base: Path, mountpoint: Path) -> Path:
    import hashlib

    d = base / "mounts"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d / (hashlib.sha256(str(mountpoint.resolve()).encode()).hexdigest()[:16] + ".pid")


@cli.command("mount")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
@click.option("--foreground", is_flag=True, help="Stay in the foreground until unmounted.")
@click.option("--debug", is_flag=True, help="libfuse debug output (with --foreground).")
def mount_cmd(mountpoint: Path, foreground: bool, debug: bool) -> None:
    """Mount the drive as a folder with FUSE (unmount with `megadrive unmount`)."""

    def body() -> None:
        from . import fuse

        base = home()
        if not foreground:
            _mount_here(base, mountpoint)
            return
        _prepare_mountpoint(mountpoint)
        drive = Drive.open(base)
        pid = _pidfile(base, mountpoint)
        pid.write_text(str(os.getpid()))
        try:
            fuse.mount(drive, mountpoint, foreground=True, debug=debug)
        finally:
            drive.close()
            pid.unlink(missing_ok=True)

    run(body)


def _prepare_mountpoint(mountpoint: Path) -> None:
    from . import fuse

    if fuse.is_stale(mountpoint):
        click.echo(f"Cleaning a dead mount at {mountpoint} (left by a crash).", err=True)
        fuse.lazy_unmount(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(mountpoint):
        raise ConfigError(f"{mountpoint} is already a mount point")


def _mount_here(base: Path, mountpoint: Path) -> None:
    _prepare_mountpoint(mountpoint)
    _spawn_mount(base, mountpoint)


def _spawn_mount(base: Path, mountpoint: Path) -> None:
    """Run the mount in a detached child (forking after threads exist is unsafe) and wait for it."""
    import subprocess
    import sys
    import time

    log = base / "mount.log"
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.argv[0], "mount", "--foreground", str(mountpoint)], stdout=out,
                                 stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            click.echo(f"MegaDrive mounted at {mountpoint} (pid {child.pid}; log {log}).")
            return
        if child.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            last = tail[0].removeprefix("megadrive: error: ") if tail else f"see {log}"
            raise ConfigError(f"mount failed: {last}")
        time.sleep(0.1)
    child.terminate()
    raise ConfigError(f"mount did not come up within 60 s; see {log}")


@cli.command("unmount")
@click.argument("mountpoint", type=click.Path(file_okay=False, path_type=Path))
def unmount_cmd(mountpoint: Path) -> None:
    """Commit everything pending, then unmount."""

    def body() -> None:
        _unmount(home(), mountpoint)
    run(body)


def _unmount(base: Path, mountpoint: Path) -> None:
    """fusermount -u, then wait for the mount process to commit what is staged and exit."""
    import subprocess
    import time

    from . import fuse

    if fuse.is_stale(mountpoint):
        fuse.lazy_unmount(mountpoint)
        click.echo(f"Cleaned a dead mount at {mountpoint}.")
        return
    if not os.path.ismount(mountpoint):
        raise ConfigError(f"{mountpoint} is not mounted")
    pidfile = _pidfile(base, mountpoint)
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    r = subprocess.run(["fusermount", "-u", str(mountpoint)], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True)
    if r.returncode != 0:
        raise ConfigError(f"cannot unmount {mountpoint}: {r.stderr.strip() or 'busy?'}")
    deadline = time.monotonic() + 120
    while pid is not None and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break  # our own child (megadrive up --mount): reaped
        except ChildProcessError:
            pass  # a mount started by another command
        if not pidfile.exists() or _is_zombie(pid):
            break  # the mount process removes its pid file as it exits; a zombie has finished too
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    click.echo(f"Unmounted {mountpoint}.")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def main() -> None:
    cli(prog_name="megadrive")

