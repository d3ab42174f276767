"""Account commands: signup, login, logout, status."""

from __future__ import annotations

import time

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
        click.echo("Keep your password safe: nobody, not even the server's operator, can recover it. Without a "
                   "recovery key (`megadrive recovery-key`), a forgotten password means your data is gone.")

    run(body)


@cli.command()
@click.option("--server", "server", default=None, help="Server URL (default: the last one used).")
@click.option("--user", default=None, help="User name (default: the last one used).")
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
@click.option("--device", default=None, help="The name this session is listed under (default: the host name).")
@click.option("--recovery-key", "use_recovery", is_flag=True,
              help="Forgot the password: set a new one with the recovery key (asked for, or MEGADRIVE_RECOVERY_KEY).")
def login(server: str | None, user: str | None, password_file: str | None, device: str | None,
          use_recovery: bool) -> None:
    """Log in; the session (token and master key) is kept in a 0600 file until logout."""

    def body() -> None:
        d = defaults()
        srv, usr = server or d.get("server"), user or d.get("user")
        if not srv or not usr:
            raise ConfigError("give --server and --user (no earlier login to default to)")
        if use_recovery:
            key = read_password(None, env="MEGADRIVE_RECOVERY_KEY", prompt="Recovery key")
            s = account.recover(srv, usr, key, read_new_password(password_file), home_dir(), device)
            remember(s.server, s.user)
            click.echo(f"New password set; logged in as {s.user} on {s.server}. Every other session was logged "
                       "out. The recovery key is used up: make a new one with `megadrive recovery-key`.")
            return
        s = account.log_in(srv, usr, read_password(password_file), home_dir(), device)
        remember(s.server, s.user)
        click.echo(f"Logged in as {s.user} on {s.server}")

    run(body)


def read_new_password(password_file: str | None) -> str:
    """The new password: --new-password-file / --password-file, MEGADRIVE_NEW_PASSWORD, or a prompt (twice)."""
    return read_password(password_file, confirm=True, env="MEGADRIVE_NEW_PASSWORD", prompt="New password")


@cli.command()
@click.option("--password-file", default=None, type=click.Path(dir_okay=False), help="The current password.")
@click.option("--new-password-file", default=None, type=click.Path(dir_okay=False), help="The new password.")
def passwd(password_file: str | None, new_password_file: str | None) -> None:
    """Change the password (MEGADRIVE_PASSWORD / MEGADRIVE_NEW_PASSWORD, files, or prompts). Every other
    session is logged out; the server never sees either password."""

    def body() -> None:
        old = read_password(password_file)
        new = read_new_password(new_password_file)
        s = account.change_password(home_dir(), old, new)
        click.echo(f"Password of {s.user} changed; every other session was logged out. A recovery key no longer "
                   "works after a password change: make a new one with `megadrive recovery-key`.")

    run(body)


@cli.command("recovery-key")
@click.option("--password-file", default=None, type=click.Path(dir_okay=False))
def recovery_key(password_file: str | None) -> None:
    """Make a recovery key and print it once: write it down. With it `megadrive login --recovery-key` sets a
    new password if this one is forgotten. A new key replaces the previous one."""

    def body() -> None:
        def show(key: str) -> None:
            click.echo("Your recovery key (shown once; write it down and keep it apart from this machine):")
            click.echo("")
            click.echo(f"    {key}")
            click.echo("")

        account.make_recovery_key(home_dir(), read_password(password_file), show)
        click.echo("Recovery key set; an earlier one no longer works. Anyone with it can take over the account. "
                   "The server keeps only your master key wrapped under it, which it cannot open.")

    run(body)


@cli.group(invoke_without_command=True)
@click.pass_context
def sessions(ctx: click.Context) -> None:
    """The account's sessions (created, last used, device); `megadrive sessions revoke ID` ends one."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        for d in account.sessions(home_dir()):
            device = str(d.get("device") or "(no name)")
            device = device if device.isprintable() else repr(device)[1:-1]
            click.echo(f"{d['id']}  created {_when(d.get('created'))}  last used {_when(d.get('last_used'))}  "
                       f"{device}{'  (this one)' if d.get('current') else ''}")

    run(body)


@sessions.command("revoke")
@click.argument("session_id")
def sessions_revoke(session_id: str) -> None:
    """End a session at once (its next request is refused)."""

    def body() -> None:
        account.revoke_session(home_dir(), session_id.strip().lower())
        click.echo(f"Session {session_id} ended.")

    run(body)


def _when(t: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if isinstance(t, (int, float)) else "-"


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
        click.echo("recovery key: " + ("set" if drive.has_recovery_key() else
                                       "none (a forgotten password means the data is gone: `megadrive recovery-key`)"))

    with_drive(fn)
