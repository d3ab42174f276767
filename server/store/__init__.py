"""The server's stores: the metadata store (contract + one implementation per engine) and
the chunk stores (contract + local folder + S3), opened from URLs.

* ``records``: what the stores hand out; ``contract``: the metadata store contract,
  split by concern, sharing one unit of work (read contract/unit.py for isolation);
* ``tables``: the tables, once for every engine; ``migrate`` and ``migrations/``: Alembic;
* ``sqlbase`` and ``sql_*``: the contract in SQL (SQLAlchemy Core); ``sqlite``,
  ``postgresql``: each engine's specifics;
* ``chunks`` (contract, in-memory store), ``chunks_folder``, ``chunks_s3``;
* ``urls``: ``--meta`` and ``--chunks`` URLs to stores.

Importing this package is cheap: engines and drivers load when a store opens.
"""

from __future__ import annotations

from .contract import MetaStore
from .records import Limits

__all__ = ["Limits", "MetaStore"]
