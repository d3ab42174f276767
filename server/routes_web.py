"""The web client, served by the storage server itself: static HTML, CSS and JavaScript from
``server/web`` and libsodium's JavaScript build from ``server/web/node_modules`` (installed from npm by
scripts/bootstrap.sh, never committed). No CDN, no third-party request.

Every file is named in :data:`FILES` (no path from a request ever reaches the file system), and every
answer carries a strict Content-Security-Policy: scripts only from this origin (libsodium compiles
WebAssembly, hence ``'wasm-unsafe-eval'``; no inline script, no ``eval``), requests only to this origin,
no frames. Nothing here reads an account: the page talks to ``/v1`` with a bearer token like any
client, and every key stays in the page (docs/THREAT_MODEL.md says what a server serving the code can
still do).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import falcon

from .errors import NotFound, NotInstalled

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext

WEB = Path(__file__).resolve().parent / "web"
HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
CSP = ("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SODIUM = "node_modules/libsodium-sumo/dist/modules-sumo/libsodium-sumo.js"
WRAPPERS = "node_modules/libsodium-wrappers-sumo/dist/modules-sumo/libsodium-wrappers.js"

# URL path -> (file under WEB, content type). The only files this route serves.
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", HTML),
    "/app.css": ("app.css", CSS),
    "/js/format.mjs": ("js/format.mjs", JS),
    "/js/client.mjs": ("js/client.mjs", JS),
    "/js/app.mjs": ("js/app.mjs", JS),
    "/js/link.mjs": ("js/link.mjs", JS),
    "/vendor/libsodium-sumo.js": (SODIUM, JS),
    "/vendor/libsodium-wrappers.js": (WRAPPERS, JS),
}


def _send(resp: falcon.Response, name: str, content_type: str) -> None:
    path = WEB / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if name.startswith("node_modules/"):
            raise NotInstalled("the web client's libsodium is not installed here (scripts/bootstrap.sh runs "
                              "npm ci in server/web)") from None
        raise NotFound("no such page") from None
    resp.content_type = content_type
    resp.set_header("Content-Security-Policy", CSP)
    resp.set_header("Cross-Origin-Opener-Policy", "same-origin")
    resp.set_header("X-Frame-Options", "DENY")
    resp.data = data


class StaticFile:
    public = True

    def __init__(self, name: str, content_type: str) -> None:
        self.name, self.content_type = name, content_type

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, self.name, self.content_type)


class LinkPage:
    """``/l/{link_id}``: the page that opens a public link (its key is in the URL's fragment, which the
    browser never sends)."""

    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response, link_id: str) -> None:
        _send(resp, "link.html", HTML)


def register(app: falcon.App, ctx: ServerContext) -> None:
    for url, (name, content_type) in FILES.items():
        app.add_route(url, StaticFile(name, content_type))
    app.add_route("/l/{link_id}", LinkPage())
