"""Sharing commands: share, shares (and accept), unshare, contacts, link, unlink, report."""

from __future__ import annotations

import os
import sys
import time

import click

from ..drive import Drive
from ..errors import ConfigError
from ..publiclink import report_link
from . import cli, run, with_drive


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

    with_drive(fn)


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

    with_drive(fn)


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

    with_drive(fn)


@cli.command()
@click.argument("path")
@click.option("--with", "user", required=True)
def unshare(path: str, user: str) -> None:
    """Revoke a share at once and re-key the folder (later content is sealed under new keys)."""

    def fn(d: Drive) -> None:
        done = d.sharing.unshare(path, user)
        click.echo(f"Unshared {path} from {user}; re-keyed {done.nodes} node(s). "
                   "They may keep what they could read before.")
        _links_inside(done.links_removed)

    with_drive(fn)


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

    with_drive(fn)


@contacts.command("verify")
@click.argument("user")
def contacts_verify(user: str) -> None:
    """Print USER's key fingerprint to compare out of band, and mark it verified."""

    def fn(d: Drive) -> None:
        c = d.sharing.verify_contact(user)
        click.echo(f"{c.user}: {c.fingerprint}\nMarked verified. Compare these digits with {c.user} in person "
                   "or over a channel you trust; if they differ, do not share with this account.")

    with_drive(fn)


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
    """Print a public link to a file or a folder; its key is only in the URL's #fragment, never sent to the server."""

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

    with_drive(fn)


@cli.command()
@click.argument("path")
def unlink(path: str) -> None:
    """Delete the public links to a file or folder, and take back their keys (re-key)."""

    def fn(d: Drive) -> None:
        n, done = d.sharing.remove_links(path)
        click.echo(f"Removed {n} link(s) to {path}" + (f"; re-keyed {done.nodes} node(s)." if done else "."))
        if done:
            _links_inside(done.links_removed)

    with_drive(fn)


def _links_inside(n: int) -> None:
    if n:
        click.echo(f"Also deleted {n} link(s) inside it: they held its old keys (make new ones with "
                   "megadrive link).")


@cli.command()
@click.argument("url")
@click.option("--reason", required=True)
def report(url: str, reason: str) -> None:
    """Report a link as abusive (the #key part of the URL is never sent)."""

    run(lambda: click.echo(f"Reported (report {report_link(url, reason)})."))
