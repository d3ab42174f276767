"""`megadrive up`: a local server, the WebDAV gateway and optionally a FUSE mount, in one command.

It composes the three (so it sits above the core, the front-ends and the
server); the first run creates the account on the local server.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import click

from . import account
from .cli import cli, home_dir, open_drive, parse_listen, read_password, run
from .errors import AuthError, ConfigError
from .mount import gateway
from .mount.commands import gateway_access, gateway_options, howto, mount_here, unmount_at, wait_for_signal
from .server.cli import parse_size, store_options
from .server.config import ServerConfig
from .server.serve import start as start_server
from .server.store.urls import describe


@cli.command()
@store_options
@click.option("--server-listen", default="127.0.0.1:8420", show_default=True, help="HOST:PORT of the local server.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT of the WebDAV gateway.")
@click.option("--user", default="local", show_default=True, help="Account name on the local server.")
@click.option("--quota", default="50G", show_default=True)
@gateway_options
@click.option("--password-file", default=None, type=click.Path(dir_okay=False),
              help="The account password (first line); or MEGADRIVE_PASSWORD, or a prompt.")
@click.option("--mount", "mount_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also mount the drive as a folder here (FUSE).")
@click.option("--allow-other", is_flag=True,
              help="With --mount: let other local users in (they get what the file modes allow).")
def up(data: Path | None, meta_url: str | None, chunks_url: str | None, server_listen: str, listen: str, user: str,
       quota: str, auth_user: str | None,
       auth_password_file: str | None, tls_cert: Path | None, tls_key: Path | None, host_names: tuple[str, ...],
       password_file: str | None, mount_dir: Path | None, allow_other: bool) -> None:
    """Run a local server and the WebDAV gateway in one process (creates the account on first run).

    The server keeps its data in --data (default MEGADRIVE_HOME/server), or in the stores --meta and
    --chunks name (say PostgreSQL and S3; the data folder then only seeds the server's secret)."""

    def body() -> None:
        base = home_dir()
        shost, sport = parse_listen(server_listen, 8420)
        ghost, gport = parse_listen(listen, 8080)
        gauth, tls = gateway_access(auth_user, auth_password_file, tls_cert, tls_key)
        gateway.check_exposure(ghost, auth=gauth, tls=tls)
        if allow_other and mount_dir is None:
            raise ConfigError("--allow-other goes with --mount")
        folder = data or base / "server"
        cfg = ServerConfig(data_dir=folder, meta_url=meta_url, chunks_url=chunks_url, host=shost, port=sport,
                           quota=parse_size(quota))
        # Where this account was first created (a signup, not a login, for a new place).
        place = folder if meta_url is None else folder / "stores" / hashlib.sha256(meta_url.encode()).hexdigest()[:16]
        srv = start_server(cfg)
        try:
            account.local_session(srv.url, user, base, place,
                                  lambda confirm: read_password(password_file, confirm=confirm),
                                  lambda name: click.echo(f"First run: creating account {name!r} on the local "
                                                          "server. Nobody can recover its password: keep it safe, and "
                                                          "make a recovery key (`megadrive recovery-key`)."))
            with open_drive() as drive:
                gw = gateway.start(drive, ghost, gport, auth=gauth, tls=tls, host_names=host_names,
                                   state_file=base / gateway.STATE_FILE)
                try:
                    where = cfg.data_dir if meta_url is None and chunks_url is None else (
                        f"{describe(cfg.meta_location)} and {describe(cfg.chunks_location)}")
                    click.echo(f"Local server (ciphertext only) at {srv.url}, data in {where}")
                    click.echo(f"Web client (encrypts in the browser, nothing to install) at {srv.url}/")
                    if mount_dir is not None:
                        mount_here(base, mount_dir, allow_other=allow_other)
                    click.echo(howto(gw))
                    wait_for_signal()
                finally:
                    if mount_dir is not None and os.path.ismount(mount_dir):
                        unmount_at(base, mount_dir)
                    gw.stop()
        except AuthError as e:
            raise AuthError(f"{e.message} (wrong password for {user!r}?)") from None
        finally:
            srv.stop()

    run(body)
