"""Front-end commands (webdav, mount, unmount), registered on the core's command group.

They live here so the core never imports the front-ends: this module imports
``megadrive.cli`` and adds to it (megadrive/main.py imports this module). The
helpers `megadrive up` shares are public: gateway options and access, the
banner, mounting and unmounting.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import click

from megadrive.cli import cli, home_dir, open_drive, parse_listen, run
from megadrive.errors import ConfigError

from . import gateway


def wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


GATEWAY_PASSWORD_ENV = "MEGADRIVE_GATEWAY_PASSWORD"  # noqa: S105 - the variable's name, not a password


def gateway_options(f: Callable[..., None]) -> Callable[..., None]:
    """The gateway's access options, shared by `webdav` and `up` (no password ever comes from argv)."""
    options = [
        click.option("--auth-user", default=None, metavar="USER",
                     help="Gateway user (default: 'megadrive' with a fresh random password each run). Its password "
                          f"comes from --auth-password-file or ${GATEWAY_PASSWORD_ENV}; needed off loopback."),
        click.option("--auth-password-file", default=None, type=click.Path(dir_okay=False),
                     help="File holding the --auth-user password (first line)."),
        click.option("--tls-cert", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="PEM certificate: serve HTTPS (with --tls-key; needed off loopback)."),
        click.option("--tls-key", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="PEM private key of --tls-cert."),
        click.option("--host-name", "host_names", multiple=True, metavar="NAME",
                     help="Another name clients reach the gateway by (Host header), NAME or NAME:PORT; repeatable."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def gateway_access(auth_user: str | None, auth_password_file: str | None, tls_cert: Path | None,
                    tls_key: Path | None) -> tuple[tuple[str, str] | None, tuple[Path, Path] | None]:
    """(user, password) and (cert, key) from the options; one-line errors for half-given pairs."""
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    if auth_user is None:
        if auth_password_file:
            raise ConfigError("--auth-password-file needs --auth-user")
        return None, tls
    if not auth_user or ":" in auth_user:
        raise ConfigError("--auth-user must be a non-empty name without ':'")
    if auth_password_file:
        try:
            lines = Path(auth_password_file).read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"cannot read --auth-password-file: {e.strerror}") from None
        password = lines[0] if lines else ""
    else:
        password = os.environ.get(GATEWAY_PASSWORD_ENV, "")
    if not password:
        raise ConfigError(f"--auth-user needs a password: --auth-password-file FILE or ${GATEWAY_PASSWORD_ENV}")
    return (auth_user, password), tls


def howto(gw: gateway.Gateway) -> str:
    url = gw.url
    scheme, rest = url.split("://", 1)
    dav = ("davs" if scheme == "https" else "dav") + "://" + rest
    user = gw.credentials.user
    if gw.credentials.generated:
        pw = gw.credentials.password
        where = f" (also in {gw.state_file}, mode 0600)" if gw.state_file else ""
        login = (f"  login:         user {user}, password {pw}\n"
                 f"                 a new password every start{where}\n"
                 f"  browser:       {scheme}://{user}:{pw}@{rest}\n")
        windows, rclone_pw = f"/user:{user} {pw}", pw
    else:
        login = (f"  login:         user {user}, password from --auth-password-file or ${GATEWAY_PASSWORD_ENV}\n"
                 f"  browser:       open {url} (log in as {user})\n")
        windows, rclone_pw = f"/user:{user} *", "PASSWORD"
    dav = dav.replace("://", f"://{user}@", 1)
    return (f"MegaDrive is served at {url}\n"
            + login
            + f"  GNOME/KDE:     {dav}  (Files > Other Locations > Connect to Server)\n"
            f"  macOS Finder:  Go > Connect to Server > {url}  (user {user})\n"
            f"  Windows:       net use Z: {url} {windows}\n"
            f"  rclone:        rclone config create md webdav url={url} vendor=other user={user} "
            f"pass=$(rclone obscure {rclone_pw}) --no-obscure\n"
            "Press Ctrl-C to stop.")


@cli.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT for the gateway.")
@gateway_options
def webdav(listen: str, auth_user: str | None, auth_password_file: str | None, tls_cert: Path | None,
           tls_key: Path | None, host_names: tuple[str, ...]) -> None:
    """Serve the logged-in drive, decrypted, over WebDAV (every client logs in; see the banner)."""

    def body() -> None:
        host, port = parse_listen(listen, 8080)
        auth, tls = gateway_access(auth_user, auth_password_file, tls_cert, tls_key)
        gateway.check_exposure(host, auth=auth, tls=tls)
        with open_drive() as drive:
            gw = gateway.start(drive, host, port, auth=auth, tls=tls, host_names=host_names,
                               state_file=home_dir() / gateway.STATE_FILE)
            try:
                click.echo(howto(gw))
                wait_for_signal()
            finally:
                gw.stop()

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
@click.option("--allow-other", is_flag=True,
              help="Let other local users in (they get what the file modes allow; off by default, even as root).")
def mount_cmd(mountpoint: Path, foreground: bool, debug: bool, allow_other: bool) -> None:
    """Mount the drive as a folder with FUSE (unmount with `megadrive unmount`)."""

    def body() -> None:
        from . import fuse

        base = home_dir()
        if not foreground:
            mount_here(base, mountpoint, allow_other=allow_other)
            return
        _prepare_mountpoint(mountpoint)
        pid = _pidfile(base, mountpoint)
        pid.write_text(str(os.getpid()))
        try:
            with open_drive() as drive:
                fuse.mount(drive, mountpoint, foreground=True, debug=debug, allow_other=allow_other)
        finally:
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


def mount_here(base: Path, mountpoint: Path, *, allow_other: bool = False) -> None:
    _prepare_mountpoint(mountpoint)
    _spawn_mount(base, mountpoint, allow_other=allow_other)


def _spawn_mount(base: Path, mountpoint: Path, *, allow_other: bool = False) -> None:
    """Run the mount in a detached child (forking after threads exist is unsafe) and wait for it."""
    import subprocess
    import sys
    import time

    log = base / "mount.log"
    with open(log, "ab") as out:
        argv = [sys.executable, "-m", "megadrive", "mount", "--foreground", str(mountpoint),
                *(["--allow-other"] if allow_other else [])]
        child = subprocess.Popen(argv, stdout=out,
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

    run(lambda: unmount_at(home_dir(), mountpoint))


def unmount_at(base: Path, mountpoint: Path) -> None:
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
