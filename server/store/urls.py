"""Where the stores live, as URLs: ``--meta`` and ``--chunks``.

* metadata: ``sqlite:////absolute/path/meta.sqlite3`` (SQLAlchemy's spelling: three
  slashes, then the path) or
  ``postgresql://user[:password]@host[:port]/database`` (a password is better
  left to ``PGPASSWORD`` or ``~/.pgpass`` than put on a command line);
* chunks: ``file:///absolute/path/chunks`` or
  ``s3://bucket[/prefix]?endpoint=https://host:port&region=R`` (credentials
  from the environment, as for any AWS tool).

``--data DIR`` means ``sqlite:///DIR/meta.sqlite3`` and ``file://DIR/chunks`` (DIR absolute).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .chunks import ChunkStore
from .contract import MetaStore
from .records import Limits

META_SCHEMES = ("sqlite", "postgresql", "postgres")
CHUNK_SCHEMES = ("file", "s3")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).absolute()}"


def file_url(path: Path) -> str:
    return f"file://{Path(path).absolute()}"


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.split("+", 1)[0]


def check_meta_url(url: str) -> str:
    """The URL if it names a metadata store we can open (else ValueError with why)."""
    scheme = _scheme(url)
    if scheme not in META_SCHEMES:
        raise ValueError(f"--meta: expected sqlite:///PATH or postgresql://..., got {url.split(':', 1)[0]}:...")
    if scheme == "sqlite" and not sqlite_path(url).name:
        raise ValueError("--meta: sqlite:///PATH needs a file path")
    return url


def check_chunks_url(url: str) -> str:
    scheme = _scheme(url)
    if scheme not in CHUNK_SCHEMES:
        raise ValueError(f"--chunks: expected file:///PATH or s3://BUCKET..., got {url.split(':', 1)[0]}:...")
    if scheme == "file" and not urlsplit(url).path:
        raise ValueError("--chunks: file:///PATH needs a folder path")
    if scheme == "s3" and not urlsplit(url).netloc:
        raise ValueError("--chunks: s3://BUCKET needs a bucket name")
    return url


def sqlite_path(url: str) -> Path:
    """As SQLAlchemy reads it: ``sqlite:////srv/md/meta.sqlite3`` is absolute (four slashes),
    ``sqlite:///meta.sqlite3`` relative to the working folder."""
    prefix = url.split("?", 1)[0].split(":///", 1)
    if len(prefix) != 2:
        raise ValueError(f"not a sqlite URL: {url}")
    return Path(unquote(prefix[1]))


def file_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def open_meta(url: str, limits: Limits | None = None) -> MetaStore:
    """Open (creating or upgrading its schema if needed) the metadata store ``url`` names."""
    scheme = _scheme(check_meta_url(url))
    if scheme == "sqlite":
        from .sqlite import SQLiteMetaStore

        path = sqlite_path(url)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SQLiteMetaStore(path, limits)
    from .postgresql import PostgreSQLMetaStore

    return PostgreSQLMetaStore(url, limits)


def open_chunks(url: str) -> ChunkStore:
    """Open the chunk store ``url`` names (a folder is created if missing)."""
    scheme = _scheme(check_chunks_url(url))
    if scheme == "file":
        from .chunks_folder import DirChunkStore

        return DirChunkStore(file_path(url))
    from .chunks_s3 import S3ChunkStore

    return S3ChunkStore.from_url(url)


def describe(url: str) -> str:
    """The URL without a password (for logs and banners)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
