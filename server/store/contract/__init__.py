"""The metadata store contract, split by concern; every part shares one unit of work.

:class:`MetaStore` is what the server uses; tests/server/test_server_metastore.py
runs its contract suite against every implementation (SQLite, PostgreSQL).
Read unit.py first: it says what "atomic" and "isolated" mean here, whatever
the engine.

Quota: an account's ``used`` counts every byte it makes the server keep, not
only chunks: node ``meta`` blobs (until purged), retained manifests and
sealed records as well, so metadata cannot be used to store data for free.
Each write checks its growth against ``limits`` and adjusts ``used`` in the
unit that writes, holding the account, so check and write are one unit;
pruning, purging, takedown and garbage collection give the bytes back. Every
write that makes an account store more refuses with ``QuotaExceeded`` when
``used`` plus the growth would pass ``limits.quota`` and changes nothing then;
a write that does not grow ``used`` is never refused for quota. ``used``
always equals :meth:`ChunkLedger.stored_bytes`.

Every node change bumps the owning account's sequence counter in the same
unit and stamps the node with it, which is what the change feed reads.
"""

from __future__ import annotations

from .accounts import AccountStore
from .chunks import CLAIM_SECONDS, DONE_SECONDS, ChunkLedger, DeletionInProgress
from .sealed import RecordStore
from .sharing import SharingStore
from .tree import TreeStore
from .unit import UnitOfWork


class MetaStore(AccountStore, TreeStore, SharingStore, ChunkLedger, RecordStore):
    """The whole metadata store contract (every part, one unit of work)."""


__all__ = [
    "CLAIM_SECONDS",
    "DONE_SECONDS",
    "AccountStore",
    "ChunkLedger",
    "DeletionInProgress",
    "MetaStore",
    "RecordStore",
    "SharingStore",
    "TreeStore",
    "UnitOfWork",
]
