"""MegaDrive storage server.

The server stores only opaque, client-encrypted blobs and enforces the tree,
versioning and quota rules of docs/SERVER_API.md. Importing this package is
deliberately cheap: the Falcon app and the stores are only loaded by the
modules that need them (``app``, ``serve``), so the client can import
``megadrive.server.config`` without pulling in a web framework.
"""

from .config import ServerConfig

__all__ = ["ServerConfig"]
