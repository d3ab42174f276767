"""The gateway's page for a folder opened in a browser: a plain MegaDrive listing (wsgidav's stock
"Index of" page no longer), with a link to the web client the storage server serves.

Names are decrypted here, on this machine, and may come from another account (a shared folder):
every one is HTML-escaped, every link URL-quoted, and the page runs no script at all (the Guard
sends it under ``PAGE_CSP``: no script source, no inline style).
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from wsgidav import util
from wsgidav.mw.base_mw import BaseMiddleware

from megadrive.cli import human
from megadrive.drive import Drive

from .webdav import DriveProvider

Environ = dict[str, Any]


def render(drive: Drive, path: str) -> bytes:
    """The HTML of one folder (``path`` ends with "/")."""
    rows = []
    if path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for e in sorted(drive.listdir(path), key=lambda e: (e.kind != "dir", e.name)):
        slash = "/" if e.kind == "dir" else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime_ns / 1e9))
        size = "" if e.kind == "dir" else human(e.size)
        rows.append(f'<tr><td><a href="{quote(e.name)}{slash}">{html.escape(e.name)}{slash}</a></td>'
                    f"<td>{size}</td><td>{when}</td></tr>")
    web = html.escape(drive.server_url, quote=True)
    title = html.escape(path)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MegaDrive: {title}</title></head>'
            f"<body><h1>MegaDrive: {title}</h1><p>Decrypted on this machine by the MegaDrive gateway. "
            f'The web client (nothing to install) is at <a href="{web}/" rel="noreferrer">{web}/</a>.</p>'
            f"<table><thead><tr><th>Name</th><th>Size</th><th>Modified</th></tr></thead><tbody>{''.join(rows)}"
            "</tbody></table></body></html>").encode()


class FolderPage(BaseMiddleware):  # type: ignore[misc]
    """GET or HEAD of a folder: the listing above (a folder asked for without its slash is redirected
    to it, so the relative links resolve); anything else goes on to wsgidav."""

    def __call__(self, environ: Environ, start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        provider = environ.get("wsgidav.provider")
        if method not in ("GET", "HEAD") or not isinstance(provider, DriveProvider):
            return self.next_app(environ, start_response)  # type: ignore[no-any-return]
        path = environ["PATH_INFO"]
        res = provider.get_resource_inst(path, environ)
        if res is None or not res.is_collection:
            return self.next_app(environ, start_response)  # type: ignore[no-any-return]
        if not path.endswith("/"):
            location = quote(environ.get("SCRIPT_NAME", "") + path) + "/"
            start_response("301 Moved Permanently", [("Location", location), ("Content-Length", "0"),
                                                     ("Date", util.get_rfc1123_time())])
            return [b""]
        body = render(provider.drive, path)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "private"), ("Referrer-Policy", "no-referrer"),
                                  ("Date", util.get_rfc1123_time())])  # (its URL holds decrypted names)
        return [b""] if method == "HEAD" else [body]
