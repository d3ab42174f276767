"""Account commands: signup, login, logout, status."""

from __future__ import annotations

import click

from .. import account
from ..drive import Drive
from ..errors import ConfigError
from . import cli, defaults, home_dir, human, read_password, remember, run, with_drive


@cli.command()
@click.option("--server", "server", required=True, help="Server URL, e.g. http://127.0.0.1:8420")
@click.option("--user", required=True)
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
def signup(server: str, user: str, password_file: str | None) -> None:
    """Create an account (keys are made here; the server never sees them) and log in."""

    def body() -> None:
        s = account.sign_up(server, user, read_password(password_file, confirm=True), home_dir())
        remember(s.server, s.user)
        click.echo(f"Signed up and logged in as {s.user} on {s.server}")
        click.echo("Keep your password safe: nobody, not even the server's operator, can recover it.")

    run(body)


@cli.command()
@click.option("--server", "server", default=None, help="Server URL (default: the last one used).")
@click.option("--user", default=None, help="User name (default: the last one used).")
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
def login(server: str | None, user: str | None, password_file: str | None) -> None:
    """Log in; the session (token and master key) is kept in a 0600 file until logout."""

    def body() -> None:
        d = defaults()
        srv, usr = server or d.get("server"), user or d.get("user")
        if not srv or not usr:
            raise ConfigError("give --server and --user (no earlier login to default to)")
        s = account.log_in(srv, usr, read_password(password_file), home_dir())
        remember(s.server, s.user)
        click.echo(f"Logged in as {s.user} on {s.server}")

    run(body)


@cli.command()
def logout() -> None:
    """Revoke the session on the server and forget the keys on this machine."""

    def body() -> None:
        s = account.log_out(home_dir())
        click.echo(f"Logged out {s.user}." if s else "Not logged in.")

    run(body)


@cli.command()
def status() -> None:
    """Account, quota used and available, and what waits on this machine to be uploaded."""

    def fn(drive: Drive) -> None:
        q = drive.quota(max_age=0)
        pct = 100.0 * q.used / q.total if q.total else 0.0
        click.echo(f"account:   {drive.session.user} on {drive.session.server}")
        click.echo(f"quota:     {human(q.total)} ({q.total} bytes)")
        click.echo(f"used:      {human(q.used)} ({q.used} bytes, {pct:.1f}%)")
        click.echo(f"available: {human(q.available)} ({q.available} bytes)")
        click.echo(f"pending uploads: {drive.pending_uploads()}")

    with_drive(fn)
