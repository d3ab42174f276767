"""The one `megadrive` command: the core's group, with the server's and the front-ends' commands added.

``megadrive`` (the console script) and ``python -m megadrive`` both enter
:func:`main`. Each package registers its own commands: the core's are in
:mod:`megadrive.cli`, the server's group in the server package
(``megadrive server``, also ``python -m megadrive.server``), the front-ends'
in :mod:`megadrive.mount.commands`, and `up` (all three at once) in
:mod:`megadrive.up`. This module is the only place that imports them all.
"""

from __future__ import annotations

from . import up  # noqa: F401 - registers `up`
from .cli import cli
from .mount import commands  # noqa: F401 - registers `webdav`, `mount`, `unmount`
from .server.cli import server

cli.add_command(server)


def main() -> None:
    cli(prog_name="megadrive")
