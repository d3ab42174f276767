"""Trash and version commands: trash, restore, versions."""

from __future__ import annotations

import time

import click

from ..drive import Drive
from ..errors import ConfigError
from . import cli, human, with_drive


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "(unknown)"


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]  # no terminal escapes from a co-writer's names


@cli.command()
@click.option("--empty", is_flag=True, help="Delete everything in the trash for good.")
def trash(empty: bool) -> None:
    """List the trash (deleted on, size, where it was), newest first; --empty deletes it for good."""

    def fn(drive: Drive) -> None:
        if empty:
            click.echo(f"Emptied the trash: {drive.empty_trash()} item(s) deleted for good.")
            return
        items = drive.trash()
        if not items:
            click.echo("The trash is empty.")
        for item in items:
            size, slash = ("folder", "/") if item.kind == "dir" else (human(item.size), "")
            click.echo(f"{_when(item.trashed_at)}  {size:>10}  {_printable(item.path)}{slash}")

    with_drive(fn)


@cli.command()
@click.argument("path")
@click.option("--to", "to", default=None, help="Restore to this path instead of where it was.")
@click.option("--version", "number", type=int, default=None,
              help="Make this older version of the file at PATH its newest (see `megadrive versions`).")
def restore(path: str, to: str | None, number: int | None) -> None:
    """Bring PATH back from the trash (the newest item that was there), or an older version of it.

    A name taken meanwhile gets " (restored)" added: a restore never overwrites anything."""

    def fn(drive: Drive) -> None:
        if number is not None:
            if to is not None:
                raise ConfigError("--to goes with a restore from the trash, not with --version")
            e = drive.restore_version(path, number)
            click.echo(f"Version {number} of {_printable(e.path)} is now its newest (version {e.version}).")
            return
        e = drive.restore(path, to=to)
        click.echo(f"Restored {_printable(e.path)}")

    with_drive(fn)


@cli.command()
@click.argument("path")
def versions(path: str) -> None:
    """The versions the server keeps of a file, newest first: number, date, size."""

    def fn(drive: Drive) -> None:
        for v in drive.versions(path):
            click.echo(f"{v.number:>5}  {_when(v.created)}  {human(v.size):>10}{'  (current)' if v.current else ''}")

    with_drive(fn)
