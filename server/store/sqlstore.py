"""The SQL metadata store: every part of the contract, over one SQLAlchemy engine.

The parts (accounts, tree, sharing, chunks, records) share one unit of work
(sqlbase.py); an engine's class (sqlite.py, postgresql.py) adds how a unit
begins and how accounts and chunk ids are held.
"""

from __future__ import annotations

from .sql_accounts import SQLAccounts
from .sql_chunks import SQLChunks
from .sql_sealed import SQLRecords
from .sql_sharing import SQLSharing
from .sql_tree import SQLTree


class SQLMetaStore(SQLAccounts, SQLTree, SQLSharing, SQLChunks, SQLRecords):
    """The contract in SQL; instantiate an engine's subclass."""
