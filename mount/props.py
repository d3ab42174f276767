"""WebDAV dead properties, stored encrypted on the server in each node's meta.

A property travels with its node: a move or copy done by the Drive carries
it, so the copy/move hooks here have nothing to do. The dead properties of
one node hold at most ``MAX_PROPS_BYTES`` (names and values, UTF-8), so its
meta stays within what the server stores; a property past that gets 413 in
the PROPPATCH answer (and the others of the request 424, RFC 4918 9.2).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from wsgidav.dav_error import DAVError

from megadrive.drive import Drive
from megadrive.errors import NotFound

from .webdav import HTTP_CONTENT_TOO_LARGE, LISTED, dav_errors

MAX_PROPS_BYTES = 32 * 1024
PENDING = "megadrive.props.pending"  # environ: path -> the properties this PROPPATCH sets


def _path(norm_url: str) -> str:
    return unquote(norm_url).rstrip("/") or "/"


class DrivePropertyManager:
    """The wsgidav property-manager interface over Drive.set_attrs(props=...)."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive

    def __repr__(self) -> str:
        return "DrivePropertyManager"

    def _props(self, norm_url: str, environ: Any = None) -> dict[str, str]:
        """A node's dead properties; none for one that vanished since it was listed (another client moved or
        deleted it while a PROPFIND was answering): one member gone must not fail the whole listing."""
        if environ is not None and environ.get("REQUEST_METHOD") == "PROPFIND":
            listed = environ.get(LISTED, {}).get(_path(norm_url))
            if listed is not None:  # read by this PROPFIND's listing a moment ago
                return dict(listed.props)
        try:
            return self.drive.stat(_path(norm_url)).props
        except NotFound:
            return {}

    def get_properties(self, norm_url: str, environ: Any = None) -> list[str]:
        with dav_errors():
            return sorted(self._props(norm_url, environ))

    def get_property(self, norm_url: str, name: str, environ: Any = None) -> str | None:
        with dav_errors():
            return self._props(norm_url, environ).get(name)

    def write_property(self, norm_url: str, name: str, property_value: bytes | str, dry_run: bool = False,
                       environ: Any = None) -> None:
        value = property_value.decode("utf-8") if isinstance(property_value, bytes) else str(property_value)
        path = _path(norm_url)
        # wsgidav checks every property of a PROPPATCH (dry_run) before it writes any: count them all.
        staged = (environ if environ is not None else {}).setdefault(PENDING, {}).setdefault(path, {})
        with dav_errors():
            props = {**self._props(norm_url), **staged, name: value}
        if sum(len(k.encode()) + len(v.encode()) for k, v in props.items()) > MAX_PROPS_BYTES:
            raise DAVError(HTTP_CONTENT_TOO_LARGE,
                           context_info=f"the properties of one resource may hold at most {MAX_PROPS_BYTES} bytes")
        if dry_run:
            staged[name] = value
            return
        with dav_errors():
            self.drive.set_attrs(path, props={name: value})

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
