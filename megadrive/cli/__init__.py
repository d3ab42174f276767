"""The `megadrive` command line of the client core: accounts, files, sharing.

Errors are one line on stderr and a non-zero exit code (the error type's
``exit_code``); :func:`run` is the one place that maps them. The command
group is assembled in :mod:`megadrive.main`, which adds the server's commands
(from the server package) and the front-ends' (from ``megadrive.mount``), so
the core never imports either.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..drive import Drive
from ..errors import ConfigError, MegaDriveError
from ..state import home, write_private

__all__ = ["cli", "home_dir", "human", "open_drive", "parse_listen", "read_password", "run", "with_drive"]


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


def read_password(password_file: str | None, *, confirm: bool = False, env: str = "MEGADRIVE_PASSWORD",
                  prompt: str = "Password") -> str:
    """From --password-file, then the environment variable ``env``, then an interactive prompt (also the
    new password of `passwd` and the recovery key, under their own variable and prompt)."""
    if password_file:
        try:
            return Path(password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read password file: {e.strerror}") from None
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise ConfigError(f"no {prompt.lower()}: set {env}, use a password file, or run in a terminal")
    return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


def home_dir() -> Path:
    """MEGADRIVE_HOME (or the platform's user data folder): where this machine's client state lives."""
    return home()


def defaults() -> dict[str, Any]:
    p = home() / "config.json"
    try:
        return dict(json.loads(p.read_text())) if p.exists() else {}
    except ValueError:
        return {}


def remember(server: str, user: str) -> None:
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


def with_drive(fn: Callable[[Drive], Any]) -> None:
    """Run a command body with the logged-in drive, closed afterwards."""

    def body() -> None:
        with open_drive() as drive:
            fn(drive)

    run(body)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug information to stderr.")
def cli(verbose: bool) -> None:
    """MegaDrive: an end-to-end encrypted cloud drive."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="megadrive: %(levelname)s: %(message)s")


from . import accounts, files, history, sharing  # noqa: E402,F401 - each module registers its commands on `cli`
