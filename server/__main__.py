"""``python -m megadrive.server``: the same ``server`` command as ``megadrive server`` (server/cli.py)."""

from __future__ import annotations

from .cli import server

if __name__ == "__main__":
    server(prog_name="python -m megadrive.server")
