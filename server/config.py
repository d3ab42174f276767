"""Server configuration.

One frozen dataclass carries every tunable so the CLI, the tests and
``serve.start`` all build the server the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420
DEFAULT_QUOTA = 50 * 2**30
# Nodes per account (trashed ones count until purged): bounds what one
# account can make every tree walk, feed and backup carry.
DEFAULT_MAX_NODES = 1_000_000
# Sealed records per account (GET/PUT /v1/records/{name}).
MAX_RECORDS = 16
# Signups accepted per source address per SIGNUP_WINDOW seconds.
DEFAULT_SIGNUP_RATE = 10
SIGNUP_WINDOW = 3600.0


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one server instance.

    Where it keeps things: ``meta_url`` (``sqlite:///...`` or
    ``postgresql://...``) and ``chunks_url`` (``file:///...`` or
    ``s3://bucket?endpoint=...``); ``data_dir`` stands for
    ``sqlite:///DIR/meta.sqlite3`` and ``file://DIR/chunks`` for whichever of
    the two is not given, and also holds ``server.secret`` (the seed of the
    prelogin secret) and takedown's ``audit.log``. Several processes given the
    same URLs serve the same accounts (see docs/DEPLOY.md).

    ``quota`` applies to every account and counts chunk bytes and metadata
    bytes alike; ``max_nodes`` caps the nodes of one account. ``gc_grace``
    protects chunks uploaded but not yet committed; ``gc_interval`` is the
    pause between background collection passes (0 disables the thread).
    ``signup_rate`` is how many accounts one source address may create per
    hour (0: no limit).
    """

    data_dir: Path | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    quota: int = DEFAULT_QUOTA
    versions_kept: int = 10
    token_ttl: int = 86400
    gc_grace: float = 3600.0
    gc_interval: float = 600.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    login_max_failures: int = 5
    login_window: float = 60.0
    max_nodes: int = DEFAULT_MAX_NODES
    signup_rate: int = DEFAULT_SIGNUP_RATE
    meta_url: str | None = None
    chunks_url: str | None = None

    def __post_init__(self) -> None:
        from .store.urls import check_chunks_url, check_meta_url

        # Normalise paths given as str so callers can pass either.
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.tls_cert is not None:
            object.__setattr__(self, "tls_cert", Path(self.tls_cert))
        if self.tls_key is not None:
            object.__setattr__(self, "tls_key", Path(self.tls_key))
        if self.data_dir is None and (self.meta_url is None or self.chunks_url is None):
            raise ValueError("give a data folder, or both a metadata URL and a chunks URL")
        if self.meta_url is not None:
            check_meta_url(self.meta_url)
        if self.chunks_url is not None:
            check_chunks_url(self.chunks_url)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")
        if self.quota < 0:
            raise ValueError("quota must be >= 0")
        if self.versions_kept < 1:
            raise ValueError("versions_kept must be >= 1")
        if self.token_ttl < 1:
            raise ValueError("token_ttl must be >= 1")
        if self.gc_grace < 0 or self.gc_interval < 0:
            raise ValueError("gc_grace and gc_interval must be >= 0")
        if self.login_max_failures < 1 or self.login_window <= 0:
            raise ValueError("login_max_failures must be >= 1 and login_window > 0")
        if self.max_nodes < 1:
            raise ValueError("max_nodes must be >= 1 (the root is a node)")
        if self.signup_rate < 0:
            raise ValueError("signup_rate must be >= 0 (0: no limit)")

    def _dir(self) -> Path:
        if self.data_dir is None:
            raise ValueError("this configuration has no data folder")
        return self.data_dir

    @property
    def meta_location(self) -> str:
        """The metadata store's URL."""
        from .store.urls import sqlite_url

        return self.meta_url if self.meta_url is not None else sqlite_url(self.meta_path)

    @property
    def chunks_location(self) -> str:
        """The chunk store's URL."""
        from .store.urls import file_url

        return self.chunks_url if self.chunks_url is not None else file_url(self.chunks_dir)

    @property
    def meta_path(self) -> Path:
        """The data folder's SQLite database (accounts, nodes, versions, chunk ownership)."""
        return self._dir() / "meta.sqlite3"

    @property
    def chunks_dir(self) -> Path:
        """The data folder's content-addressed chunk files."""
        return self._dir() / "chunks"

    @property
    def secret_path(self) -> Path | None:
        """32 random bytes seeding the prelogin secret (None without a data folder)."""
        return None if self.data_dir is None else self.data_dir / "server.secret"
