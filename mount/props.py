"""WebDAV dead properties, stored encrypted on the server in each node's meta.

A property travels with its node: a move or copy done by the Drive carries
it, so the copy/move hooks here have nothing to do.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from megadrive.drive import Drive
from megadrive.errors import NotFound

from .webdav import dav_errors


def _path(norm_url: str) -> str:
    return unquote(norm_url).rstrip("/") or "/"


class DrivePropertyManager:
    """The wsgidav property-manager interface over Drive.set_attrs(props=...)."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive

    def __repr__(self) -> str:
        return "DrivePropertyManager"

    def _props(self, norm_url: str) -> dict[str, str]:
        """A node's dead properties; none for one that vanished since it was listed (another client moved or
        deleted it while a PROPFIND was answering): one member gone must not fail the whole listing."""
        try:
            return self.drive.stat(_path(norm_url)).props
        except NotFound:
            return {}

    def get_properties(self, norm_url: str, environ: Any = None) -> list[str]:
        with dav_errors():
            return sorted(self._props(norm_url))

    def get_property(self, norm_url: str, name: str, environ: Any = None) -> str | None:
        with dav_errors():
            return self._props(norm_url).get(name)

    def write_property(self, norm_url: str, name: str, property_value: bytes | str, dry_run: bool = False,
                       environ: Any = None) -> None:
        value = property_value.decode("utf-8") if isinstance(property_value, bytes) else str(property_value)
        if dry_run:
            return
        with dav_errors():
            self.drive.set_attrs(_path(norm_url), props={name: value})

    def remove_property(self, norm_url: str, name: str, dry_run: bool = False, environ: Any = None) -> None:
        if dry_run:
            return
        with dav_errors():
            if name in self.drive.stat(_path(norm_url)).props:
                self.drive.set_attrs(_path(norm_url), props={name: None})

    def remove_properties(self, norm_url: str, environ: Any = None) -> None:
        """Called when a resource is deleted: its properties went with its node."""

    def copy_properties(self, src_url: str, dest_url: str, environ: Any = None) -> None:
        """The Drive's copy already copied the encrypted properties."""

    def move_properties(self, src_url: str, dest_url: str, with_children: bool, environ: Any = None) -> None:
        """The Drive's move kept the properties with the node."""
