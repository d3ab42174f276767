"""MetaStore contract: every implementation passes the same tests.

Covers accounts and tokens, tree rules, compare-and-swap commits,
atomicity (a refused operation changes nothing), chunk ownership and quota,
the change feed and garbage collection (through megadrive.server.gc),
nested transactions, shares and the shared change feed, public links, abuse
reports and takedowns; metadata charged to the quota (``used`` always equals
``stored_bytes``), the node cap, sealed records and schema upgrades.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from megadrive.server import gc
from megadrive.server.errors import (
    BadRequest,
    Conflict,
    Exists,
    MissingChunks,
    NodeLimit,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    RecordLimit,
    StaleMeta,
    Unavailable,
)
from megadrive.server.store import migrate
from megadrive.server.store.chunks import ChunkStore
from megadrive.server.store.chunks_folder import DirChunkStore
from megadrive.server.store.contract import DeletionInProgress, MetaStore
from megadrive.server.store.records import MAX_DEPTH, MAX_TOKENS_PER_ACCOUNT, Identity, Limits, NewAccount, Node, Share
from megadrive.server.store.sqlite import SQLiteMetaStore
from megadrive.server.store.tables import SCHEMA_VERSION
from megadrive.server.store.tables import nodes as nodes_table

BIG_QUOTA = 1 << 40
ROOT_META = b"root-meta"  # every account's root meta: the bytes a fresh account already uses
META = b"meta"  # what mk() gives a node


def hex32() -> str:
    return secrets.token_hex(16)


# Each engine pair of a deployment: the embedded default, and PostgreSQL with SeaweedFS's S3.
ENGINES = ["sqlite+folder", "postgresql+s3"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., MetaStore]]:
    """``make(limits, name=None)``: a store with those limits, each name its own data (a name
    given again reopens that data, say with other limits); all closed at teardown."""
    made: list[MetaStore] = []
    places: dict[str, str] = {}
    # Set up before the first store opens, so its databases are dropped after the stores close.
    new_database = request.getfixturevalue("pg_database") if engine.startswith("postgresql") else None

    def make(limits: Limits | None, name: str | None = None) -> MetaStore:
        name = name or f"limited{len(made)}"
        if engine.startswith("sqlite"):
            where = tmp_path / name
            where.mkdir(exist_ok=True)
            made.append(SQLiteMetaStore(where / "meta.sqlite3", limits))
        else:
            from megadrive.server.store.postgresql import PostgreSQLMetaStore

            if name not in places:
                assert new_database is not None
                places[name] = new_database()
            made.append(PostgreSQLMetaStore(places[name], limits))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def store(make_store: Callable[..., MetaStore]) -> MetaStore:
    return make_store(None, "store")


@pytest.fixture
def chunks(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChunkStore]:
    if engine.endswith("folder"):
        yield DirChunkStore(tmp_path / "chunks")
        return
    from megadrive.server.store.chunks_s3 import S3ChunkStore

    s3 = S3ChunkStore.from_url(request.getfixturevalue("seaweed").url())
    yield s3
    s3.close()


def plant(store: MetaStore, statement: str, **params: Any) -> None:
    """Damage planted behind the store's back (any engine): one SQL statement, committed."""
    import sqlalchemy as sa

    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        conn.execute(sa.text(statement), params)
        conn.commit()


def new_account(store: MetaStore, name: str | None = None) -> tuple[str, str]:
    """Create an account; returns (user_id, root_node_id)."""
    user_id, root = hex32(), hex32()
    store.create_account(
        NewAccount(
            name=name or "u" + secrets.token_hex(5),
            user_id=user_id,
            salt=os.urandom(16),
            kdf={"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456},
            auth_salt=os.urandom(16),
            auth_hash=os.urandom(32),
            wrapped_master=b"wm",
            identity=Identity(os.urandom(32), os.urandom(32), os.urandom(64), b"wp"),
            root_node_id=root,
            root_meta=ROOT_META,
        ),
        time.time(),
    )
    return user_id, root


@pytest.fixture
def acct(store: MetaStore) -> tuple[str, str]:
    return new_account(store)


def mk(store: MetaStore, owner: str, parent: str, kind: str = "dir") -> Node:
    return store.create_node(owner, hex32(), parent, kind, META)


def upload(store: MetaStore, chunks: ChunkStore | None, owner: str, data: bytes, quota: int = BIG_QUOTA) -> str:
    """What PUT /v1/chunks does: the blob first, then its row (and the blob again if asked)."""
    cid = hashlib.sha256(data).hexdigest()
    if chunks is not None:
        chunks.put(cid, data)
    added = store.add_chunk(owner, cid, len(data), quota, time.time())
    if added.restore and chunks is not None:
        chunks.put(cid, data)
    return cid


def seq_of(store: MetaStore, owner: str) -> int:
    account = store.account_by_id(owner)
    assert account is not None
    return account.seq


# -- accounts and tokens ------------------------------------------------------------


class TestAccounts:
    def test_create_and_lookup(self, store: MetaStore) -> None:
        uid, root = new_account(store, "alice")
        by_name = store.account_by_name("alice")
        by_id = store.account_by_id(uid)
        assert by_name == by_id and by_name is not None
        assert by_name.root_node_id == root and by_name.used == len(ROOT_META) and by_name.seq == 1
        assert by_name.kdf == {"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456}
        rootnode = store.get_node(uid, root)
        assert rootnode.kind == "dir" and rootnode.parent_id is None and rootnode.meta == b"root-meta"
        assert store.account_by_name("nobody") is None

    def test_duplicate_name_refused(self, store: MetaStore) -> None:
        new_account(store, "alice")
        with pytest.raises(Exists):
            new_account(store, "alice")

    def test_duplicate_user_id_and_root_id(self, store: MetaStore) -> None:
        uid, root = new_account(store)
        base = dict(
            salt=b"s" * 16,
            kdf={"alg": "x", "opslimit": 1, "memlimit": 1},
            auth_salt=b"a" * 16,
            auth_hash=b"h" * 32,
            wrapped_master=b"w",
            identity=Identity(b"1" * 32, b"2" * 32, b"3" * 64, b"4"),
            root_meta=b"m",
        )
        with pytest.raises(Exists):
            store.create_account(NewAccount(name="fresh1", user_id=uid, root_node_id=hex32(), **base), 0.0)  # type: ignore[arg-type]
        with pytest.raises(Exists):
            store.create_account(NewAccount(name="fresh2", user_id=hex32(), root_node_id=root, **base), 0.0)  # type: ignore[arg-type]
        assert store.account_by_name("fresh1") is None and store.account_by_name("fresh2") is None

    def test_tokens(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        now = time.time()
        store.add_token("h1", uid, now, now + 100)
        store.add_token("h2", uid, now, now - 1)
        assert store.user_for_token("h1", now) == uid
        assert store.user_for_token("h2", now) is None  # expired
        assert store.user_for_token("nope", now) is None
        assert store.user_for_token("h1", now + 101) is None
        store.revoke_token("h1")
        assert store.user_for_token("h1", now) is None
        assert store.purge_expired_tokens(now) == 1

    def test_token_cap(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        now = time.time()
        for i in range(MAX_TOKENS_PER_ACCOUNT + 5):
            store.add_token(f"t{i}", uid, now + i, now + 1000)
        assert store.user_for_token("t0", now) is None  # oldest revoked
        assert store.user_for_token(f"t{MAX_TOKENS_PER_ACCOUNT + 4}", now) == uid
        assert sum(store.user_for_token(f"t{i}", now) is not None for i in range(MAX_TOKENS_PER_ACCOUNT + 5)) == (
            MAX_TOKENS_PER_ACCOUNT
        )


# -- tree rules ----------------------------------------------------------------------


class TestTree:
    def test_create_and_get(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        f = mk(store, uid, d.node_id, "file")
        assert store.get_node(uid, f.node_id) == f
        assert f.parent_id == d.node_id and f.version == 0 and f.size == 0 and not f.trashed and not f.gone

    def test_create_refusals(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        before = seq_of(store, uid)
        with pytest.raises(Exists):
            store.create_node(uid, f.node_id, root, "dir", b"m")
        with pytest.raises(NotFound):
            store.create_node(uid, hex32(), hex32(), "dir", b"m")
        with pytest.raises(Conflict):
            store.create_node(uid, hex32(), f.node_id, "dir", b"m")  # parent is a file
        d = mk(store, uid, root)
        sub = mk(store, uid, d.node_id)
        store.trash_node(uid, d.node_id)
        before = seq_of(store, uid)
        with pytest.raises(Conflict):
            store.create_node(uid, hex32(), d.node_id, "dir", b"m")  # parent trashed
        with pytest.raises(Conflict):
            store.create_node(uid, hex32(), sub.node_id, "dir", b"m")  # grandparent trashed
        assert seq_of(store, uid) == before

    def test_other_accounts_are_invisible(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        other, other_root = new_account(store)
        d = mk(store, uid, root)
        for call in (
            lambda: store.get_node(other, d.node_id),
            lambda: store.create_node(other, hex32(), d.node_id, "dir", b"m"),
            lambda: store.update_node(other, d.node_id, b"x"),
            lambda: store.trash_node(other, d.node_id),
            lambda: store.restore_node(other, d.node_id),
            lambda: store.purge_node(other, d.node_id, True),
            lambda: store.list_versions(other, d.node_id),
            lambda: store.update_node(uid, d.node_id, b"x", parent_id=other_root),
        ):
            with pytest.raises(NotFound):
                call()
        assert store.get_node(uid, d.node_id) == d
        # Node ids are global: another account cannot reuse one.
        with pytest.raises(Exists):
            store.create_node(other, d.node_id, other_root, "dir", b"m")

    def test_rename_and_move(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        a, b = mk(store, uid, root), mk(store, uid, root)
        f = mk(store, uid, a.node_id, "file")
        renamed = store.update_node(uid, f.node_id, b"new-name")
        assert renamed.meta == b"new-name" and renamed.parent_id == a.node_id and renamed.seq > f.seq
        moved = store.update_node(uid, f.node_id, b"moved", parent_id=b.node_id)
        assert moved.parent_id == b.node_id and moved.meta == b"moved"
        # Root: attributes can be re-encrypted, but it cannot move.
        assert store.update_node(uid, root, b"root2").meta == b"root2"
        with pytest.raises(Conflict):
            store.update_node(uid, root, b"x", parent_id=a.node_id)

    def test_no_move_into_own_subtree(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        a = mk(store, uid, root)
        b = mk(store, uid, a.node_id)
        c = mk(store, uid, b.node_id)
        before = seq_of(store, uid)
        for target in (a, b, c):
            with pytest.raises(Conflict):
                store.update_node(uid, a.node_id, b"x", parent_id=target.node_id)
        assert seq_of(store, uid) == before
        assert store.get_node(uid, a.node_id) == a

    def test_move_target_rules(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        g = mk(store, uid, root, "file")
        t = mk(store, uid, root)
        store.trash_node(uid, t.node_id)
        with pytest.raises(Conflict):
            store.update_node(uid, g.node_id, b"x", parent_id=f.node_id)  # into a file
        with pytest.raises(Conflict):
            store.update_node(uid, g.node_id, b"x", parent_id=t.node_id)  # into the trash
        with pytest.raises(NotFound):
            store.update_node(uid, g.node_id, b"x", parent_id=hex32())
        assert store.get_node(uid, g.node_id) == g

    def test_replace_is_atomic(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        src_dir, dst_dir = mk(store, uid, root), mk(store, uid, root)
        f = mk(store, uid, src_dir.node_id, "file")
        target = mk(store, uid, dst_dir.node_id, "file")
        moved = store.update_node(uid, f.node_id, b"over", parent_id=dst_dir.node_id, replace=target.node_id)
        trashed = store.get_node(uid, target.node_id)
        assert trashed.trashed and moved.parent_id == dst_dir.node_id
        assert trashed.seq == moved.seq - 1  # same transaction, target first
        changes, _ = store.changes(uid, moved.seq - 2, 10)
        assert [n.node_id for n in changes] == [target.node_id, f.node_id]

    def test_replace_refusals_change_nothing(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        a, b = mk(store, uid, root), mk(store, uid, root)
        f = mk(store, uid, a.node_id, "file")
        elsewhere = mk(store, uid, a.node_id, "file")
        full = mk(store, uid, b.node_id)
        mk(store, uid, full.node_id, "file")
        before = seq_of(store, uid)
        cases: list[dict[str, Any]] = [
            dict(parent_id=b.node_id, replace=elsewhere.node_id),  # target not in destination
            dict(parent_id=b.node_id, replace=f.node_id),  # itself
        ]
        for kwargs in cases:
            with pytest.raises(Conflict):
                store.update_node(uid, f.node_id, b"x", **kwargs)
        with pytest.raises(NotFound):
            store.update_node(uid, f.node_id, b"x", parent_id=b.node_id, replace=hex32())
        assert seq_of(store, uid) == before
        assert store.get_node(uid, f.node_id) == f
        assert not store.get_node(uid, elsewhere.node_id).trashed
        assert not store.get_node(uid, full.node_id).trashed

    def test_replace_non_empty_folder_trashes_its_subtree(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        full = mk(store, uid, root)
        inner = mk(store, uid, full.node_id, "file")
        d = mk(store, uid, root)
        store.update_node(uid, d.node_id, b"x", replace=full.node_id)
        assert store.get_node(uid, full.node_id).trashed
        assert not store.get_node(uid, inner.node_id).trashed  # inside a trashed folder, restorable with it

    def test_replace_folder_with_only_trashed_children(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        child = mk(store, uid, d.node_id, "file")
        store.trash_node(uid, child.node_id)
        f = mk(store, uid, root)
        store.update_node(uid, f.node_id, b"x", replace=d.node_id)  # rename over, no move
        assert store.get_node(uid, d.node_id).trashed

    def test_trash_and_restore(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        f = mk(store, uid, d.node_id, "file")
        with pytest.raises(Conflict):
            store.trash_node(uid, root)
        t = store.trash_node(uid, d.node_id)
        assert t.trashed
        assert store.trash_node(uid, d.node_id).seq == t.seq  # idempotent, no new change
        store.trash_node(uid, f.node_id)
        before = seq_of(store, uid)
        with pytest.raises(Conflict):
            store.restore_node(uid, f.node_id)  # parent still trashed
        assert seq_of(store, uid) == before
        assert not store.restore_node(uid, d.node_id).trashed
        assert not store.restore_node(uid, f.node_id).trashed

    def test_trash_list_newest_first_undated_last_and_empty_spares_the_restored(
            self, store: MetaStore, acct: tuple[str, str]) -> None:
        """The trash list (GET /v1/trash) on every engine: newest first, a node trashed before schema 5
        (no time) last (PostgreSQL sorts NULL first unless told); a purge "if trashed" of a node restored
        meanwhile is refused and purges nothing."""
        uid, root = acct
        old, a, b = mk(store, uid, root, "file"), mk(store, uid, root, "file"), mk(store, uid, root)
        for n in (old, a, b):
            store.trash_node(uid, n.node_id)
        with store.engine.begin() as c:  # type: ignore[attr-defined]
            c.execute(sa.update(nodes_table).where(nodes_table.c.node_id == old.node_id).values(trashed_at=None))
        assert [nid for nid, _ in store.trash(uid)] == [b.node_id, a.node_id, old.node_id]
        store.restore_node(uid, b.node_id)
        with pytest.raises(Conflict):
            store.purge_node(uid, b.node_id, True, only_trashed=True)
        assert not store.get_node(uid, b.node_id).gone
        assert store.purge_node(uid, a.node_id, True, only_trashed=True) == 1
        assert [nid for nid, _ in store.trash(uid)] == [old.node_id]

    def test_purge(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        sub = mk(store, uid, d.node_id)
        f = mk(store, uid, sub.node_id, "file")
        with pytest.raises(Conflict):
            store.purge_node(uid, root, True)
        before = seq_of(store, uid)
        with pytest.raises(Conflict):
            store.purge_node(uid, d.node_id, False)
        assert seq_of(store, uid) == before
        assert store.purge_node(uid, d.node_id, True) == 3
        for n in (d, sub, f):
            with pytest.raises(NotFound):
                store.get_node(uid, n.node_id)
        changes, _ = store.changes(uid, before, 100)
        assert [n.node_id for n in changes] == [f.node_id, sub.node_id, d.node_id]  # deepest first
        assert all(n.gone and n.meta == b"" for n in changes)
        with pytest.raises(Exists):  # tombstones keep the id
            store.create_node(uid, d.node_id, root, "dir", b"m")
        assert store.purge_node(uid, mk(store, uid, root, "file").node_id, False) == 1

    def test_depth_limit(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        parent = root
        first = None
        for _ in range(MAX_DEPTH):
            node = mk(store, uid, parent)
            first = first or node.node_id
            parent = node.node_id
        with pytest.raises(Conflict):
            mk(store, uid, parent)
        # A shallow folder with a child cannot be moved to the bottom either.
        shallow = mk(store, uid, root)
        mk(store, uid, shallow.node_id)
        with pytest.raises(Conflict):
            store.update_node(uid, shallow.node_id, b"x", parent_id=parent)
        assert first is not None
        with pytest.raises(Conflict):  # and the cycle check still works at depth
            store.update_node(uid, first, b"x", parent_id=parent)


# -- change feed ---------------------------------------------------------------------


class TestChanges:
    def test_order_since_limit_more(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        nodes = [mk(store, uid, root) for _ in range(5)]
        all_changes, more = store.changes(uid, 0, 100)
        assert not more
        assert [n.node_id for n in all_changes] == [root] + [n.node_id for n in nodes]
        seqs = [n.seq for n in all_changes]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        page, more = store.changes(uid, 0, 2)
        assert more and [n.node_id for n in page] == [root, nodes[0].node_id]
        page, more = store.changes(uid, page[-1].seq, 10)
        assert not more and [n.node_id for n in page] == [n.node_id for n in nodes[1:]]
        assert store.changes(uid, seq_of(store, uid), 10) == ([], False)

    def test_node_appears_once_in_latest_state(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        store.update_node(uid, d.node_id, b"renamed")
        store.trash_node(uid, d.node_id)
        changes, _ = store.changes(uid, 1, 100)
        assert len(changes) == 1 and changes[0].trashed and changes[0].meta == b"renamed"
        assert changes[0].seq == seq_of(store, uid)

    def test_accounts_have_separate_feeds(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        other, other_root = new_account(store)
        mk(store, uid, root)
        changes, _ = store.changes(other, 0, 100)
        assert [n.node_id for n in changes] == [other_root]

    def test_every_change_kind_bumps_seq(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        seqs = [seq_of(store, uid)]
        f = mk(store, uid, root, "file")
        seqs.append(seq_of(store, uid))
        c = upload(store, chunks, uid, b"data")
        store.commit_version(uid, f.node_id, 0, b"man", [c], None, 10, time.time())
        seqs.append(seq_of(store, uid))
        store.update_node(uid, f.node_id, b"m2")
        seqs.append(seq_of(store, uid))
        store.trash_node(uid, f.node_id)
        seqs.append(seq_of(store, uid))
        store.restore_node(uid, f.node_id)
        seqs.append(seq_of(store, uid))
        store.purge_node(uid, f.node_id, False)
        seqs.append(seq_of(store, uid))
        assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False))


# -- versions ------------------------------------------------------------------------


class TestVersions:
    def test_commit_and_read(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        c1, c2 = upload(store, chunks, uid, b"a" * 10), upload(store, chunks, uid, b"b" * 20)
        n = store.commit_version(uid, f.node_id, 0, b"manifest-1", [c1, c2, c1], b"newmeta", 10, 1000.0)
        assert n.version == 1 and n.size == 40 and n.meta == b"newmeta" and n.seq > f.seq
        assert store.get_manifest(uid, f.node_id) == (1, b"manifest-1")
        n2 = store.commit_version(uid, f.node_id, 1, b"manifest-2", [], None, 10, 1001.0)
        assert n2.version == 2 and n2.size == 0 and n2.meta == b"newmeta"
        assert store.get_manifest(uid, f.node_id, 1) == (1, b"manifest-1")
        assert [(v.version, v.size) for v in store.list_versions(uid, f.node_id)] == [(2, 0), (1, 40)]
        with pytest.raises(NotFound):
            store.get_manifest(uid, f.node_id, 3)

    def test_no_version_yet(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        with pytest.raises(NotFound):
            store.get_manifest(uid, f.node_id)
        assert store.list_versions(uid, f.node_id) == []

    def test_stale_base_refused_and_newer_survives(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        store.commit_version(uid, f.node_id, 0, b"first", [], None, 10, 1.0)
        store.commit_version(uid, f.node_id, 1, b"second", [], None, 10, 2.0)
        before = seq_of(store, uid)
        with pytest.raises(PreconditionFailed) as info:
            store.commit_version(uid, f.node_id, 1, b"stale", [], None, 10, 3.0)
        assert info.value.version == 2
        assert store.get_manifest(uid, f.node_id) == (2, b"second")
        assert seq_of(store, uid) == before

    def test_missing_chunks_commit_nothing(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        other, _ = new_account(store)
        f = mk(store, uid, root, "file")
        mine = upload(store, chunks, uid, b"mine")
        theirs = upload(store, chunks, other, b"theirs")  # stored, but not by uid
        absent = hashlib.sha256(b"absent").hexdigest()
        before = seq_of(store, uid)
        with pytest.raises(MissingChunks) as info:
            store.commit_version(uid, f.node_id, 0, b"m", [mine, theirs, absent, absent], b"meta!", 10, 1.0)
        assert info.value.missing == [theirs, absent]
        node = store.get_node(uid, f.node_id)
        assert node == f and node.meta == b"meta"
        assert store.list_versions(uid, f.node_id) == []
        assert seq_of(store, uid) == before

    def test_dirs_have_no_versions(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        with pytest.raises(Conflict):
            store.commit_version(uid, root, 0, b"m", [], None, 10, 1.0)

    def test_retention(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        for v in range(6):
            store.commit_version(uid, f.node_id, v, b"m%d" % v, [], None, 3, float(v))
        assert [v.version for v in store.list_versions(uid, f.node_id)] == [6, 5, 4]
        with pytest.raises(NotFound):
            store.get_manifest(uid, f.node_id, 3)

    def test_concurrent_commits_exactly_one_wins(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        results: list[str] = []
        barrier = threading.Barrier(8)

        def worker(i: int) -> None:
            barrier.wait()
            try:
                store.commit_version(uid, f.node_id, 0, b"w%d" % i, [], None, 10, time.time())
                results.append("ok")
            except PreconditionFailed:
                results.append("stale")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["ok"] + ["stale"] * 7
        assert store.get_node(uid, f.node_id).version == 1


class TestMetaCompareAndSwap:
    """``base_seq`` (update_node) and ``meta_seq`` (commit_version): a meta built on a node's
    older state is refused with ``StaleMeta`` (and the current seq), and changes nothing."""

    def test_update_with_current_base_seq_applies(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        f = mk(store, uid, root, "file")
        moved = store.update_node(uid, f.node_id, b"renamed", parent_id=d.node_id, base_seq=f.seq)
        assert moved.meta == b"renamed" and moved.parent_id == d.node_id and moved.seq > f.seq
        # The new seq is the base of the next change.
        assert store.update_node(uid, f.node_id, b"again", base_seq=moved.seq).meta == b"again"

    def test_stale_base_seq_changes_nothing(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        f = mk(store, uid, root, "file")
        target = mk(store, uid, d.node_id, "file")
        current = store.update_node(uid, f.node_id, b"theirs" * 10)  # another client renamed it
        before, used = seq_of(store, uid), store.usage(uid)
        with pytest.raises(StaleMeta) as info:
            store.update_node(
                uid, f.node_id, b"mine" * 100, parent_id=d.node_id, replace=target.node_id, base_seq=f.seq
            )
        assert info.value.seq == current.seq and info.value.status == 412 and info.value.code == "stale_meta"
        assert info.value.body()["seq"] == current.seq
        assert store.get_node(uid, f.node_id) == current  # meta and parent kept
        assert store.get_node(uid, target.node_id) == target  # the replaced node was not trashed
        assert seq_of(store, uid) == before and store.usage(uid) == used == audited(store, uid)

    def test_a_base_seq_from_the_future_is_stale_too(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        for wrong in (f.seq + 1, 0, 2**63 - 1):
            with pytest.raises(StaleMeta):
                store.update_node(uid, f.node_id, b"x", base_seq=wrong)
        assert store.get_node(uid, f.node_id) == f

    def test_without_base_seq_the_last_writer_wins(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        store.update_node(uid, f.node_id, b"first")
        assert store.update_node(uid, f.node_id, b"second").meta == b"second"

    @pytest.mark.parametrize("change", ["rename", "commit", "trash", "restore"])
    def test_every_change_of_the_node_makes_its_old_seq_stale(
        self, store: MetaStore, acct: tuple[str, str], change: str
    ) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        if change == "restore":
            f = store.trash_node(uid, f.node_id)
        {
            "rename": lambda: store.update_node(uid, f.node_id, b"other"),
            "commit": lambda: store.commit_version(uid, f.node_id, 0, b"m", [], None, 10, 1.0),
            "trash": lambda: store.trash_node(uid, f.node_id),
            "restore": lambda: store.restore_node(uid, f.node_id),
        }[change]()
        with pytest.raises(StaleMeta):
            store.update_node(uid, f.node_id, b"mine", base_seq=f.seq)
        with pytest.raises(StaleMeta):
            version = store.get_node(uid, f.node_id).version
            store.commit_version(uid, f.node_id, version, b"m", [], b"mine", 10, 2.0, meta_seq=f.seq)

    def test_a_change_elsewhere_in_the_account_is_not_a_conflict(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        mk(store, uid, root)  # bumps the account's seq, not f's
        assert store.update_node(uid, f.node_id, b"mine", base_seq=f.seq).meta == b"mine"

    def test_commit_with_current_meta_seq(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        c = upload(store, chunks, uid, b"data")
        n = store.commit_version(uid, f.node_id, 0, b"m1", [c], b"meta1", 10, 1.0, meta_seq=f.seq)
        assert (n.version, n.meta) == (1, b"meta1")
        n2 = store.commit_version(uid, f.node_id, 1, b"m2", [c], None, 10, 2.0, meta_seq=n.seq)
        assert (n2.version, n2.meta) == (2, b"meta1")

    def test_stale_meta_seq_commits_nothing(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        c = upload(store, chunks, uid, b"data")
        renamed = store.update_node(uid, f.node_id, b"renamed-elsewhere")
        before, used = seq_of(store, uid), store.usage(uid)
        with pytest.raises(StaleMeta) as info:
            store.commit_version(uid, f.node_id, 0, b"manifest", [c], b"old-name", 10, 1.0, meta_seq=f.seq)
        assert info.value.seq == renamed.seq
        assert store.get_node(uid, f.node_id) == renamed
        assert store.list_versions(uid, f.node_id) == []
        assert seq_of(store, uid) == before and store.usage(uid) == used == audited(store, uid)

    def test_a_version_mismatch_wins_over_a_stale_meta(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        n = store.commit_version(uid, f.node_id, 0, b"theirs", [], b"their-meta", 10, 1.0)
        with pytest.raises(PreconditionFailed) as info:
            store.commit_version(uid, f.node_id, 0, b"mine", [], b"my-meta", 10, 2.0, meta_seq=f.seq)
        assert info.value.version == 1 and info.value.code == "precondition_failed"
        assert store.get_node(uid, f.node_id) == n

    def test_concurrent_renames_with_one_base_exactly_one_wins(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        outcomes = run_parallel(8, lambda i: store.update_node(uid, f.node_id, b"w%d" % i, base_seq=f.seq))
        assert sorted(outcomes) == ["StaleMeta"] * 7 + ["ok"], outcomes
        node = store.get_node(uid, f.node_id)
        assert node.meta in {b"w%d" % i for i in range(8)} and node.seq > f.seq

    def test_concurrent_renames_and_commits_one_base_exactly_one_wins(
        self, store: MetaStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")

        def work(i: int) -> object:
            if i % 2:
                return store.update_node(uid, f.node_id, b"r%d" % i, base_seq=f.seq)
            return store.commit_version(uid, f.node_id, 0, b"c%d" % i, [], b"c%d" % i, 10, 1.0, meta_seq=f.seq)

        outcomes = run_parallel(8, work)
        assert outcomes.count("ok") == 1, outcomes
        node = store.get_node(uid, f.node_id)
        if node.version == 1:  # a commit won: the other commits see a new version, the renames a new seq
            assert sorted(outcomes) == ["PreconditionFailed"] * 3 + ["StaleMeta"] * 4 + ["ok"], outcomes
        else:  # a rename won: everybody else sees a new seq
            assert sorted(outcomes) == ["StaleMeta"] * 7 + ["ok"], outcomes
        assert node.meta.startswith(b"c" if node.version else b"r")


# -- chunks, quota -------------------------------------------------------------------


class TestChunks:
    def test_add_and_usage(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        base = len(ROOT_META)
        c = upload(store, chunks, uid, b"x" * 100)
        assert store.owns_chunk(uid, c) and store.usage(uid) == base + 100
        assert not store.add_chunk(uid, c, 100, BIG_QUOTA, time.time()).created  # already owned
        assert store.usage(uid) == base + 100
        other, _ = new_account(store)
        assert not store.owns_chunk(other, c)
        assert store.add_chunk(other, c, 100, BIG_QUOTA, time.time()).created  # each owner pays
        assert store.usage(other) == base + 100 and store.usage(uid) == base + 100

    def test_quota_refusal_changes_nothing(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        used = len(ROOT_META) + 60
        store.add_chunk(uid, "a" * 64, 60, 100, 1.0)
        with pytest.raises(QuotaExceeded) as info:
            store.add_chunk(uid, "b" * 64, 100 - used + 1, 100, 1.0)
        assert (info.value.quota, info.value.used) == (100, used)
        assert not store.owns_chunk(uid, "b" * 64) and store.usage(uid) == used
        assert store.add_chunk(uid, "c" * 64, 100 - used, 100, 1.0).created  # exactly at quota is fine

    def test_recording_cancels_a_queued_deletion(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, _ = acct
        data = b"queued for deletion"
        cid = hashlib.sha256(data).hexdigest()
        chunks.put(cid, data)
        assert store.queue_unowned([cid], time.time()) == 1 and store.pending_deletions() == [cid]
        added = store.add_chunk(uid, cid, len(data), BIG_QUOTA, time.time())
        assert added.created and not added.restore and store.pending_deletions() == []
        assert store.process_deletions(gc.blob_deleter(chunks)) == (0, 0) and chunks.has(cid)

    def test_named_chunks_are_never_queued_nor_deleted(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, _ = acct
        cid = upload(store, chunks, uid, b"owned")
        assert store.queue_unowned([cid], time.time()) == 0
        assert store.delete_unowned([cid], gc.blob_deleter(chunks)) == (0, 0) and chunks.has(cid)

    def test_a_deletion_being_carried_out_makes_recording_wait_then_restore(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        """The claim is committed before the blob goes: a row recorded meanwhile would name a
        blob about to vanish, so add_chunk refuses until the deletion is done, then says
        the blob must be written again."""
        uid, _ = acct
        data = b"being deleted"
        cid = hashlib.sha256(data).hexdigest()
        chunks.put(cid, data)
        store.queue_unowned([cid], time.time())
        refused: list[str] = []

        def deleter(chunk_id: str) -> int | None:
            try:
                store.add_chunk(uid, chunk_id, len(data), BIG_QUOTA, time.time())
            except DeletionInProgress:
                refused.append(chunk_id)
            return gc.blob_deleter(chunks)(chunk_id)

        assert store.process_deletions(deleter) == (1, len(data)) and refused == [cid]
        assert not store.owns_chunk(uid, cid) and not chunks.has(cid)
        added = store.add_chunk(uid, cid, len(data), BIG_QUOTA, time.time())
        assert added.created and added.restore

    def test_missing(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        have = upload(store, chunks, uid, b"have")
        ids = ["1" * 64, have, "2" * 64, "1" * 64]
        assert store.missing_chunks(uid, ids, time.time()) == ["1" * 64, "2" * 64]
        many = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1200)]
        assert store.missing_chunks(uid, many, time.time()) == many


# -- garbage collection --------------------------------------------------------------


class TestGarbageCollection:
    def test_unreferenced_old_chunks_go_referenced_stay(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        kept = upload(store, chunks, uid, b"kept")
        dropped = upload(store, chunks, uid, b"dropped")
        store.commit_version(uid, f.node_id, 0, b"m", [kept], None, 10, time.time())
        result = gc.collect(store, chunks, grace=0, now=time.time() + 1)
        assert result["chunks_deleted"] == 1 and result["bytes_freed"] == len(b"dropped")
        assert chunks.has(kept) and not chunks.has(dropped)
        assert store.owns_chunk(uid, kept) and not store.owns_chunk(uid, dropped)
        assert store.usage(uid) == len(ROOT_META) + len(META) + len(b"m") + len(b"kept") == store.stored_bytes(uid)

    def test_grace_protects_recent_uploads(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        c = upload(store, chunks, uid, b"fresh")
        assert gc.collect(store, chunks, grace=3600)["chunks_deleted"] == 0
        assert chunks.has(c)
        # Asking about a chunk ("missing") renews its grace period.
        later = time.time() + 7200
        store.missing_chunks(uid, [c], later)
        assert gc.collect(store, chunks, grace=3600, now=later + 10)["chunks_deleted"] == 0
        assert gc.collect(store, chunks, grace=3600, now=later + 3601)["chunks_deleted"] == 1

    def test_pruned_and_purged_versions_release_chunks(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        old = upload(store, chunks, uid, b"old")
        new = upload(store, chunks, uid, b"new")
        store.commit_version(uid, f.node_id, 0, b"m1", [old], None, 1, 1.0)
        store.commit_version(uid, f.node_id, 1, b"m2", [new], None, 1, 2.0)  # prunes v1
        gc.collect(store, chunks, grace=0, now=time.time() + 1)
        assert not chunks.has(old) and chunks.has(new)
        store.purge_node(uid, f.node_id, False)
        gc.collect(store, chunks, grace=0, now=time.time() + 1)
        assert not chunks.has(new) and store.usage(uid) == len(ROOT_META) == store.stored_bytes(uid)

    def test_trashed_files_keep_their_chunks(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        c = upload(store, chunks, uid, b"in trash")
        store.commit_version(uid, f.node_id, 0, b"m", [c], None, 10, 1.0)
        store.trash_node(uid, f.node_id)
        gc.collect(store, chunks, grace=0, now=time.time() + 1)
        assert chunks.has(c)

    def test_shared_blob_survives_until_last_owner(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        other, other_root = new_account(store)
        c = upload(store, chunks, uid, b"same ciphertext")
        upload(store, chunks, other, b"same ciphertext")
        f = mk(store, other, other_root, "file")
        store.commit_version(other, f.node_id, 0, b"m", [c], None, 10, 1.0)
        result = gc.collect(store, chunks, grace=0, now=time.time() + 1)
        assert result["refs_removed"] == 1 and result["chunks_deleted"] == 0
        assert chunks.has(c) and not store.owns_chunk(uid, c) and store.owns_chunk(other, c)

    def test_orphan_blobs_are_swept(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        data = b"written but never recorded"
        cid = hashlib.sha256(data).hexdigest()
        chunks.put(cid, data)
        owned = upload(store, chunks, uid, b"owned")
        result = gc.collect(store, chunks, grace=3600)
        assert result["orphans_deleted"] == 1
        assert not chunks.has(cid) and chunks.has(owned)

    def test_upload_racing_collection_keeps_blob(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        """The blob is written before the row; a sweep in between must not lose it."""
        uid, _ = acct
        data = b"racing upload"
        cid = hashlib.sha256(data).hexdigest()
        chunks.put(cid, data)  # step 1 of an upload
        gc.collect(store, chunks, grace=0)  # collector deletes the unowned blob
        assert not chunks.has(cid)
        added = store.add_chunk(uid, cid, len(data), BIG_QUOTA, time.time())  # step 2: the row
        assert added.created and added.restore  # ... and the store says the blob went meanwhile
        chunks.put(cid, data)  # step 3, as PUT /v1/chunks does
        assert chunks.has(cid) and store.owns_chunk(uid, cid)

    def test_blob_deletion_follows_the_committed_row_removal(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        """When a blob is deleted, its row's removal is already committed (a crash in between
        leaves an orphan blob, never a row whose blob is gone)."""
        uid, _ = acct
        ids = [upload(store, chunks, uid, b"garbage %d" % i) for i in range(3)]
        seen: list[tuple[str, bool]] = []
        plain = gc.blob_deleter(chunks)

        def committed_owns(cid: str) -> bool:
            """Asked from another thread (another connection): what is committed."""
            answer: list[bool] = []
            t = threading.Thread(target=lambda: answer.append(store.owns_chunk(uid, cid)))
            t.start()
            t.join()
            return answer[0]

        def delete(cid: str) -> int | None:
            seen.append((cid, committed_owns(cid)))
            return plain(cid)

        report = store.collect_garbage(time.time() + 10, delete)
        assert sorted(seen) == sorted((cid, False) for cid in ids)
        assert report.chunks_deleted == 3 and not any(chunks.has(cid) for cid in ids)

    def test_a_blob_a_kept_version_lists_is_never_swept(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        """Even with its ownership row lost (damage for fsck to report), a referenced blob stays."""
        uid, root = acct
        f = mk(store, uid, root, "file")
        cid = upload(store, chunks, uid, b"kept")
        store.commit_version(uid, f.node_id, 0, b"m", [cid], None, 10, 1.0)
        assert store.delete_unowned([cid], gc.blob_deleter(chunks)) == (0, 0)
        assert store.named_chunks([cid, hex32() * 2]) == {cid}
        assert chunks.has(cid)


# -- consistency audit (server/fsck.py) ------------------------------------------------


class TestAudit:
    def test_rows_and_refs_page_through_everything(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        other, _ = new_account(store)
        ids = [upload(store, None, uid, b"r%d" % i) for i in range(1203)]  # more than two pages
        upload(store, None, other, b"r0")
        f = mk(store, uid, root, "file")
        store.commit_version(uid, f.node_id, 0, b"m", ids[:700], None, 10, 1.0)
        store.commit_version(uid, f.node_id, 1, b"m", ids[600:1300], None, 10, 2.0)
        rows = list(store.iter_chunk_rows())
        assert len(rows) == 1204 == len({(r.owner, r.chunk_id) for r in rows})
        assert {r.chunk_id for r in rows if r.owner == uid and r.referenced} == set(ids)
        assert [(r.owner, r.referenced, r.size) for r in rows if r.owner == other] == [(other, False, 2)]
        refs = list(store.iter_version_refs())
        assert len(refs) == 700 + 603
        assert {(r.version, r.chunk_id) for r in refs} == {(1, c) for c in ids[:700]} | {(2, c) for c in ids[600:]}
        sizes = {cid: len(b"r%d" % i) for i, cid in enumerate(ids)}
        assert all(r.owner == uid and r.node_id == f.node_id and r.held_size == sizes[r.chunk_id] for r in refs)
        store.purge_node(uid, f.node_id, False)
        assert list(store.iter_version_refs()) == []
        assert not any(r.referenced for r in store.iter_chunk_rows())

    def test_usage_audit_and_recompute(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        other, _ = new_account(store)
        assert all(a.consistent for a in store.usage_audit())
        assert {a.user_id for a in store.usage_audit()} >= {uid, other}
        plant(store, "UPDATE users SET used = used + 7, node_count = 99 WHERE user_id = :uid", uid=uid)
        (bad,) = [a for a in store.usage_audit() if not a.consistent]
        assert (bad.user_id, bad.used - bad.stored, bad.node_count, bad.nodes) == (uid, 7, 99, 1)
        store.recompute_usage([uid])
        assert all(a.consistent for a in store.usage_audit())
        audited(store, uid)

    def test_drop_unstored_chunks_rechecks_everything(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        gone = upload(store, chunks, uid, b"blob lost")
        back = upload(store, chunks, uid, b"blob back")
        kept = upload(store, chunks, uid, b"listed by a version")
        f = mk(store, uid, root, "file")
        store.commit_version(uid, f.node_id, 0, b"m", [kept], None, 10, 1.0)
        for cid in (gone, back, kept):
            chunks.delete(cid)
        chunks.put(back, b"blob back")  # re-stored since fsck looked
        used = store.usage(uid)
        dropped = store.drop_unstored_chunks([(uid, gone), (uid, back), (uid, kept), (uid, hex32() * 2)], chunks.has)
        assert [(r.owner, r.chunk_id, r.size) for r in dropped] == [(uid, gone, 9)]
        assert not store.owns_chunk(uid, gone) and store.owns_chunk(uid, back) and store.owns_chunk(uid, kept)
        assert audited(store, uid) == used - 9


# -- transactions --------------------------------------------------------------------


class TestTransactions:
    def test_enclosed_calls_commit_together(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        with store.transaction():
            a = mk(store, uid, root)
            b = mk(store, uid, a.node_id)
        assert store.get_node(uid, b.node_id).parent_id == a.node_id

    def test_failure_undoes_everything(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        before = seq_of(store, uid)
        ids: list[str] = []
        with pytest.raises(RuntimeError), store.transaction():
            ids.append(mk(store, uid, root).node_id)
            ids.append(mk(store, uid, root).node_id)
            raise RuntimeError("access refused half-way")
        assert seq_of(store, uid) == before
        for nid in ids:
            with pytest.raises(NotFound):
                store.find_node(nid)

    def test_inner_refusal_undoes_only_the_inner_call(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        with store.transaction():
            kept = mk(store, uid, root)
            with pytest.raises(Conflict):
                store.create_node(uid, hex32(), f.node_id, "dir", b"m")  # parent is a file
        assert store.get_node(uid, kept.node_id) == kept

    def test_snapshot_reads(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        with store.snapshot():
            assert store.find_node(d.node_id) == d
            assert [nid for nid, _ in store.ancestry(d.node_id)] == [d.node_id, root]


# -- sharing -------------------------------------------------------------------------


def share(store: MetaStore, owner: str, node: str, recipient: str, access: str = "read") -> Share:
    return store.put_share(owner, node, recipient, access, b"grant-" + access.encode(), time.time())


class TestShares:
    def test_lookups_across_accounts(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        d = mk(store, uid, root)
        f = mk(store, uid, d.node_id, "file")
        assert store.find_node(f.node_id) == f  # any owner: access decisions are server/access.py's
        assert store.ancestry(f.node_id) == [(f.node_id, False), (d.node_id, False), (root, False)]
        store.trash_node(uid, d.node_id)
        assert store.ancestry(f.node_id)[1] == (d.node_id, True)
        with pytest.raises(NotFound):
            store.find_node(hex32())
        store.purge_node(uid, d.node_id, True)
        with pytest.raises(NotFound):
            store.find_node(f.node_id)

    def test_create_replace_list_revoke(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, _ = new_account(store, "bobshare")
        d = mk(store, uid, root)
        s1 = share(store, uid, d.node_id, bob)
        assert (s1.node_id, s1.owner, s1.recipient, s1.recipient_name, s1.access, s1.grant) == (
            d.node_id,
            uid,
            bob,
            "bobshare",
            "read",
            b"grant-read",
        )
        assert len(s1.share_id) == 32 and s1.active and store.is_share_root(d.node_id)
        s2 = share(store, uid, d.node_id, bob, "write")  # replaces: same id, new access and grant
        assert s2.share_id == s1.share_id and s2.access == "write" and s2.grant == b"grant-write"
        assert s2.created == s1.created
        out, inc = store.list_shares(uid)
        assert [s.share_id for s in out] == [s1.share_id] and inc == []
        out, inc = store.list_shares(bob)
        assert out == [] and [s.access for s in inc] == ["write"]
        assert inc[0].owner_name == store.account_by_id(uid).name  # type: ignore[union-attr]
        with pytest.raises(NotFound):
            store.revoke_share(bob, s1.share_id, time.time())  # the recipient is not the owner
        store.revoke_share(uid, s1.share_id, time.time())
        with pytest.raises(NotFound):
            store.revoke_share(uid, s1.share_id, time.time())  # already ended
        assert store.list_shares(bob) == ([], [])
        assert not store.is_share_root(d.node_id)
        revoked = store.get_share(s1.share_id)
        assert revoked is not None and not revoked.active
        assert [s.active for s in store.shares_between(uid, bob)] == [False]
        s3 = share(store, uid, d.node_id, bob)  # a new share after a revocation gets a new id
        assert s3.share_id != s1.share_id
        assert [s.active for s in store.shares_between(uid, bob)] == [False, True]
        assert store.shares_between(bob, uid) == []

    def test_refusals(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, bob_root = new_account(store)
        d = mk(store, uid, root)
        f = mk(store, uid, root, "file")
        with pytest.raises(Conflict):
            share(store, uid, f.node_id, bob)
        with pytest.raises(Conflict):
            share(store, uid, root, bob)
        with pytest.raises(BadRequest):
            share(store, uid, d.node_id, uid)
        with pytest.raises(NotFound):
            share(store, uid, d.node_id, hex32())  # unknown recipient
        with pytest.raises(NotFound):
            share(store, bob, d.node_id, uid)  # not bob's folder
        with pytest.raises(BadRequest):
            share(store, uid, d.node_id, bob, "admin")
        assert store.list_shares(uid) == ([], [])

    def test_purge_revokes_shares_and_deletes_links(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, _ = new_account(store)
        d = mk(store, uid, root)
        inner = mk(store, uid, d.node_id)
        f = mk(store, uid, inner.node_id, "file")
        share(store, uid, inner.node_id, bob)
        link = store.create_link(uid, f.node_id, b"blob", None, None, None, time.time())
        store.purge_node(uid, d.node_id, True)
        assert store.list_shares(bob) == ([], [])
        got = store.get_link(link.link_id)
        assert got is not None and got.deleted is not None
        assert store.list_links(uid) == []


class TestLinkTree:
    def test_live_untrashed_subtree_by_seq(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        other, other_root = new_account(store)
        d = mk(store, uid, root)
        a = mk(store, uid, d.node_id, "file")
        sub = mk(store, uid, d.node_id)
        deep = mk(store, uid, sub.node_id, "file")
        binned = mk(store, uid, d.node_id)
        under_bin = mk(store, uid, binned.node_id, "file")
        purged = mk(store, uid, d.node_id, "file")
        mk(store, uid, root, "file")  # beside the folder
        mk(store, other, other_root, "file")
        store.trash_node(uid, binned.node_id)
        store.purge_node(uid, purged.node_id, False)
        found, more = store.link_tree(uid, d.node_id, 0, 100)
        assert not more
        assert [n.node_id for n in found] == [a.node_id, sub.node_id, deep.node_id]  # in seq order
        page, more = store.link_tree(uid, d.node_id, 0, 2)
        assert more and page == found[:2]
        assert store.link_tree(uid, d.node_id, page[-1].seq, 2) == (found[2:], False)
        assert under_bin.node_id not in {n.node_id for n in found}
        assert store.link_tree(other, d.node_id, 0, 100) == ([], False)  # another owner: nothing
        store.restore_node(uid, binned.node_id)
        assert {n.node_id for n in store.link_tree(uid, d.node_id, 0, 100)[0]} == {
            a.node_id, sub.node_id, deep.node_id, binned.node_id, under_bin.node_id}


class TestSharedChanges:
    def test_only_the_shared_subtrees(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        s = mk(store, uid, root)
        inside = mk(store, uid, s.node_id, "file")
        deep = mk(store, uid, mk(store, uid, s.node_id).node_id, "file")
        mk(store, uid, root, "file")  # outside
        changes, more = store.shared_changes(uid, [s.node_id], 0, 100)
        assert not more
        assert {n.node_id for n in changes} >= {s.node_id, inside.node_id, deep.node_id}
        assert all(n.node_id != root for n in changes) and len(changes) == 4
        seqs = [n.seq for n in changes]
        assert seqs == sorted(seqs)
        page, more = store.shared_changes(uid, [s.node_id], 0, 2)
        assert more and page == changes[:2]
        rest, more = store.shared_changes(uid, [s.node_id], page[-1].seq, 100)
        assert not more and rest == changes[2:]
        assert store.shared_changes(uid, [], 0, 100) == ([], False)

    def test_trash_and_purge_inside_are_seen(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, _ = new_account(store)
        s = mk(store, uid, root)
        share(store, uid, s.node_id, bob)
        a = mk(store, uid, s.node_id, "file")
        b = mk(store, uid, s.node_id)
        b_child = mk(store, uid, b.node_id, "file")
        cursor = seq_of(store, uid)
        store.trash_node(uid, a.node_id)
        store.purge_node(uid, b.node_id, True)
        changes, _ = store.shared_changes(uid, [s.node_id], cursor, 100)
        assert [(n.node_id, n.trashed, n.gone) for n in changes] == [
            (a.node_id, True, False),
            (b_child.node_id, False, True),
            (b.node_id, False, True),
        ]

    def test_moves_across_the_boundary(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, _ = new_account(store)
        s = mk(store, uid, root)
        outside = mk(store, uid, root)
        share(store, uid, s.node_id, bob)
        leaving = mk(store, uid, s.node_id)
        leaving_child = mk(store, uid, leaving.node_id, "file")
        arriving = mk(store, uid, outside.node_id)
        arriving_child = mk(store, uid, arriving.node_id, "file")
        cursor = seq_of(store, uid)
        store.update_node(uid, leaving.node_id, b"out", parent_id=outside.node_id)
        store.update_node(uid, arriving.node_id, b"in", parent_id=s.node_id)
        changes, _ = store.shared_changes(uid, [s.node_id], cursor, 100)
        by_id = {n.node_id: n for n in changes}
        assert set(by_id) == {leaving.node_id, leaving_child.node_id, arriving.node_id, arriving_child.node_id}
        for nid in (leaving.node_id, leaving_child.node_id):  # left: a bare tombstone
            n = by_id[nid]
            assert n.gone and n.meta == b"" and n.parent_id is None and n.version == 0
        assert by_id[arriving.node_id].meta == b"in" and by_id[arriving.node_id].parent_id == s.node_id
        assert not by_id[arriving_child.node_id].gone  # the subtree arrives in full
        # Moving back in shows it again in full; moves inside the share bump only the moved node.
        cursor = seq_of(store, uid)
        store.update_node(uid, leaving.node_id, b"back", parent_id=s.node_id)
        store.update_node(uid, arriving.node_id, b"x", parent_id=leaving.node_id)
        changes, _ = store.shared_changes(uid, [s.node_id], cursor, 100)
        assert [(n.node_id, n.gone) for n in changes] == [
            (leaving_child.node_id, False),
            (leaving.node_id, False),
            (arriving.node_id, False),
        ]

    def test_nested_shares_to_different_recipients(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, _ = new_account(store)
        carol, _ = new_account(store)
        outer = mk(store, uid, root)
        inner = mk(store, uid, outer.node_id)
        share(store, uid, outer.node_id, bob)
        share(store, uid, inner.node_id, carol)
        f = mk(store, uid, inner.node_id, "file")
        cursor = seq_of(store, uid)
        store.update_node(uid, f.node_id, b"up", parent_id=outer.node_id)  # leaves carol's, stays in bob's
        (for_bob,), _ = store.shared_changes(uid, [outer.node_id], cursor, 100)
        (for_carol,), _ = store.shared_changes(uid, [inner.node_id], cursor, 100)
        assert not for_bob.gone and for_bob.meta == b"up"
        assert for_carol.gone and for_carol.meta == b""


# -- public links, abuse reports -------------------------------------------------------


def test_shared_changes_with_nested_roots_list_each_node_once(store: MetaStore, acct: tuple[str, str]) -> None:
    uid, root = acct
    bob, _ = new_account(store)
    outer = mk(store, uid, root)
    inner = mk(store, uid, outer.node_id)
    f = mk(store, uid, inner.node_id, "file")
    share(store, uid, outer.node_id, bob)
    share(store, uid, inner.node_id, bob)
    changes, more = store.shared_changes(uid, [inner.node_id, outer.node_id], 0, 100)
    assert [n.node_id for n in changes] == [outer.node_id, inner.node_id, f.node_id] and not more


class TestLinks:
    def test_create_list_delete(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        plain = store.create_link(uid, f.node_id, b"sealed", None, None, None, 10.0)
        kdf = {"alg": "argon2id13", "opslimit": 3, "memlimit": 65536}
        pw = store.create_link(uid, f.node_id, b"sealed2", b"s" * 16, kdf, 2_000_000_000, 11.0)
        assert len(plain.link_id) == 22 and plain.link_id != pw.link_id
        assert (plain.salt, plain.kdf, plain.expires, plain.deleted) == (None, None, None, None)
        assert store.get_link(pw.link_id) == pw and pw.kdf == kdf and pw.salt == b"s" * 16
        assert pw.expires == 2_000_000_000 and pw.owner == uid and pw.blob == b"sealed2"
        assert store.list_links(uid) == [plain, pw]
        other, _ = new_account(store)
        with pytest.raises(NotFound):
            store.delete_link(other, plain.link_id, 12.0)
        store.delete_link(uid, plain.link_id, 12.0)
        with pytest.raises(NotFound):
            store.delete_link(uid, plain.link_id, 13.0)
        assert store.list_links(uid) == [pw]
        assert store.get_link(plain.link_id).deleted == 12.0  # type: ignore[union-attr]
        assert store.get_link("A" * 22) is None

    def test_refusals(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        other, _ = new_account(store)
        d = mk(store, uid, root)
        f = mk(store, uid, root, "file")
        with pytest.raises(Conflict):
            store.create_link(uid, root, b"b", None, None, None, 1.0)  # never the whole account
        with pytest.raises(NotFound):
            store.create_link(other, f.node_id, b"b", None, None, None, 1.0)
        assert store.list_links(uid) == [] and store.list_links(other) == []
        folder_link = store.create_link(uid, d.node_id, b"b", None, None, None, 1.0)  # a folder may be linked
        assert store.list_links(uid) == [folder_link] and folder_link.node_id == d.node_id

    def test_version_has_chunk(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        f = mk(store, uid, root, "file")
        c1, c2 = upload(store, chunks, uid, b"one"), upload(store, chunks, uid, b"two")
        store.commit_version(uid, f.node_id, 0, b"m1", [c1], None, 10, 1.0)
        store.commit_version(uid, f.node_id, 1, b"m2", [c2], None, 10, 2.0)
        assert store.version_has_chunk(f.node_id, 2, c2) and not store.version_has_chunk(f.node_id, 2, c1)
        assert store.version_has_chunk(f.node_id, 1, c1) and not store.version_has_chunk(f.node_id, 3, c2)

    def test_abuse_reports(self, store: MetaStore) -> None:
        r1 = store.add_abuse_report("A" * 22, "spam", 1.0)
        r2 = store.add_abuse_report("A" * 22, "still spam", 2.0)
        r3 = store.add_abuse_report("B" * 22, "other", 3.0)
        assert len({r1, r2, r3}) == 3 and all(len(r) == 32 for r in (r1, r2, r3))
        assert store.abuse_reports(["A" * 22]) == [(r1, "A" * 22, "spam", 1.0), (r2, "A" * 22, "still spam", 2.0)]
        assert [r[0] for r in store.abuse_reports(["B" * 22, "C" * 22])] == [r3]
        assert store.abuse_reports([]) == []


# -- takedown ------------------------------------------------------------------------


class TestTakedown:
    def test_file(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, bob_root = new_account(store)
        f = mk(store, uid, root, "file")
        keep = mk(store, uid, root, "file")
        c1, c2 = upload(store, chunks, uid, b"v1-a" * 10), upload(store, chunks, uid, b"v1-b" * 10)
        c3 = upload(store, chunks, uid, b"v2" * 10)
        kept = upload(store, chunks, uid, b"unrelated")
        store.commit_version(uid, f.node_id, 0, b"m1", [c1, c2], None, 10, 1.0)
        store.commit_version(uid, f.node_id, 1, b"m2", [c3], None, 10, 2.0)
        store.commit_version(uid, keep.node_id, 0, b"mk", [kept], None, 10, 2.0)
        upload(store, chunks, bob, b"v1-a" * 10)  # the same ciphertext, held by bob too
        link = store.create_link(uid, f.node_id, b"blob", None, None, None, 3.0)
        report = store.add_abuse_report(link.link_id, "bad", 4.0)
        store.add_abuse_report("Z" * 22, "unrelated", 4.0)
        before = seq_of(store, uid)
        result = store.take_down(f.node_id, 5.0, gc.blob_deleter(chunks))
        assert (result.node_id, result.owner, result.nodes) == (f.node_id, uid, [f.node_id])
        assert result.link_ids == [link.link_id] and result.report_ids == [report]
        assert result.chunks_deleted == 3 and result.bytes_deleted == 40 + 40 + 20
        assert result.refs_removed == 4
        for cid in (c1, c2, c3):
            assert not chunks.has(cid) and store.is_removed_chunk(cid) and store.chunk_holders(cid) == []
        assert chunks.has(kept) and not store.is_removed_chunk(kept)
        # The file's manifests went with its chunks; its meta stays (the node stays, marked removed).
        assert store.usage(uid) == len(ROOT_META) + 2 * len(META) + len(b"mk") + len(b"unrelated")
        assert store.usage(bob) == len(ROOT_META)
        assert store.usage(uid) == store.stored_bytes(uid) and store.usage(bob) == store.stored_bytes(bob)
        node = store.get_node(uid, f.node_id)
        assert node.removed and node.seq == seq_of(store, uid) > before
        changes, _ = store.changes(uid, before, 10)
        assert [(n.node_id, n.removed) for n in changes] == [(f.node_id, True)]
        with pytest.raises(Unavailable):
            store.get_manifest(uid, f.node_id)
        with pytest.raises(Unavailable):
            store.list_versions(uid, f.node_id)
        with pytest.raises(Unavailable):
            store.commit_version(uid, f.node_id, 2, b"m3", [], None, 10, 6.0)
        with pytest.raises(Unavailable):
            store.add_chunk(uid, c1, 40, BIG_QUOTA, 6.0)  # cannot come back
        with pytest.raises(Unavailable):
            store.create_link(uid, f.node_id, b"b", None, None, None, 6.0)
        assert store.get_manifest(uid, keep.node_id) == (1, b"mk")
        # The owner can still rename, trash and purge it.
        store.update_node(uid, f.node_id, b"renamed")
        store.trash_node(uid, f.node_id)
        assert store.purge_node(uid, f.node_id, False) == 1

    def test_folder_subtree(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        bob, _ = new_account(store)
        d = mk(store, uid, root)
        sub = mk(store, uid, d.node_id)
        f = mk(store, uid, sub.node_id, "file")
        c = upload(store, chunks, uid, b"deep")
        store.commit_version(uid, f.node_id, 0, b"m", [c], None, 10, 1.0)
        share(store, uid, d.node_id, bob)
        result = store.take_down(d.node_id, 2.0, gc.blob_deleter(chunks))
        assert result.nodes == [d.node_id, sub.node_id, f.node_id] and result.chunks_deleted == 1
        assert all(store.get_node(uid, n).removed for n in result.nodes)
        with pytest.raises(Unavailable):
            mk(store, uid, d.node_id)  # nothing new inside
        with pytest.raises(Unavailable):
            store.update_node(uid, mk(store, uid, root).node_id, b"x", parent_id=sub.node_id)
        with pytest.raises(Unavailable):
            share(store, uid, sub.node_id, bob)
        changes, _ = store.shared_changes(uid, [d.node_id], 0, 100)  # recipients see it too
        assert all(n.removed for n in changes) and len(changes) == 3

    def test_refusals(self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]) -> None:
        uid, root = acct
        with pytest.raises(NotFound):
            store.take_down(hex32(), 1.0, gc.blob_deleter(chunks))
        with pytest.raises(Conflict):
            store.take_down(root, 1.0, gc.blob_deleter(chunks))
        f = mk(store, uid, root, "file")
        store.purge_node(uid, f.node_id, False)
        with pytest.raises(NotFound):
            store.take_down(f.node_id, 1.0, gc.blob_deleter(chunks))


def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    """A database written before takedowns (no nodes.removed, no sharing tables) opens and works."""
    path = tmp_path / "meta.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE nodes (
            node_id TEXT PRIMARY KEY, owner TEXT NOT NULL, parent_id TEXT, kind TEXT NOT NULL,
            meta BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,
            trashed INTEGER NOT NULL DEFAULT 0, gone INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL);
        PRAGMA user_version=1;
        """
    )
    conn.close()
    store = SQLiteMetaStore(path)
    try:
        uid, root = new_account(store)
        d = mk(store, uid, root)
        assert not d.removed and store.get_node(uid, root).removed is False
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (5,)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (migrate.HEAD,)
    conn.close()


# -- quota: metadata is charged, node cap, records -----------------------------------------


def audited(store: MetaStore, owner: str) -> int:
    """``used``, after checking it equals the bytes counted from the data (the invariant)."""
    used = store.usage(owner)
    assert used == store.stored_bytes(owner), (used, store.stored_bytes(owner))
    return used


class TestUsage:
    def test_every_write_charges_exactly_its_bytes(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        expect = len(ROOT_META)
        assert audited(store, uid) == expect
        d = store.create_node(uid, hex32(), root, "dir", b"d" * 500)
        f = store.create_node(uid, hex32(), d.node_id, "file", b"f" * 300)
        expect += 500 + 300
        assert audited(store, uid) == expect
        store.update_node(uid, f.node_id, b"f" * 600)  # a larger meta charges the difference
        expect += 300
        assert audited(store, uid) == expect
        store.update_node(uid, f.node_id, b"f" * 100, parent_id=root)  # a smaller one gives it back
        expect -= 500
        assert audited(store, uid) == expect
        store.update_node(uid, root, ROOT_META * 3)  # the root's meta too
        expect += 2 * len(ROOT_META)
        assert audited(store, uid) == expect
        c = upload(store, chunks, uid, b"c" * 1000)
        expect += 1000
        store.commit_version(uid, f.node_id, 0, b"M" * 700, [c], None, 2, 1.0)
        expect += 700
        assert audited(store, uid) == expect
        store.commit_version(uid, f.node_id, 1, b"M" * 800, [c], b"f" * 150, 2, 2.0)  # with a new meta
        expect += 800 + 50
        assert audited(store, uid) == expect
        store.commit_version(uid, f.node_id, 2, b"M" * 200, [c], None, 2, 3.0)  # prunes v1: its manifest goes
        expect += 200 - 700
        assert audited(store, uid) == expect
        g = store.create_node(uid, hex32(), d.node_id, "file", b"g" * 250)
        store.commit_version(uid, g.node_id, 0, b"G" * 90, [c], None, 2, 4.0)
        expect += 250 + 90
        store.trash_node(uid, d.node_id)  # the trash still counts
        assert audited(store, uid) == expect
        store.restore_node(uid, d.node_id)
        store.trash_node(uid, d.node_id)
        assert audited(store, uid) == expect
        assert store.purge_node(uid, d.node_id, True) == 2  # purging gives back metas and manifests
        expect -= 500 + 250 + 90
        assert audited(store, uid) == expect
        assert store.put_record(uid, "pins", 0, b"r" * 400, 5.0) == 1
        expect += 400
        assert store.put_record(uid, "pins", 1, b"r" * 1000, 6.0) == 2
        expect += 600
        assert audited(store, uid) == expect
        store.delete_record(uid, "pins", 2)
        expect -= 1000
        assert audited(store, uid) == expect
        store.purge_node(uid, f.node_id, False)
        expect -= 150 + 800 + 200
        assert audited(store, uid) == expect
        gc.collect(store, chunks, grace=0, now=time.time() + 1)  # the chunk is garbage now
        expect -= 1000
        assert audited(store, uid) == expect == 3 * len(ROOT_META)

    def test_takedown_gives_back_the_manifests_of_every_file_it_removes(
        self, store: MetaStore, chunks: ChunkStore, acct: tuple[str, str]
    ) -> None:
        uid, root = acct
        bob, bob_root = new_account(store)
        f = mk(store, uid, root, "file")
        c = upload(store, chunks, uid, b"same ciphertext")
        store.commit_version(uid, f.node_id, 0, b"A" * 300, [c], None, 10, 1.0)
        g = mk(store, bob, bob_root, "file")
        upload(store, chunks, bob, b"same ciphertext")
        store.commit_version(bob, g.node_id, 0, b"B" * 200, [c], None, 10, 1.0)
        store.take_down(f.node_id, 2.0, gc.blob_deleter(chunks))
        assert audited(store, uid) == len(ROOT_META) + len(META)
        assert audited(store, bob) == len(ROOT_META) + len(META)

    def test_refusals_change_nothing(self, make_store: Callable[..., MetaStore]) -> None:
        quota = 4000
        store = make_store(Limits(quota=quota))
        uid, root = new_account(store)
        used = len(ROOT_META)
        f = store.create_node(uid, hex32(), root, "file", b"f" * 1000)
        used += 1000
        before = seq_of(store, uid)
        with pytest.raises(QuotaExceeded) as info:
            store.create_node(uid, hex32(), root, "dir", b"x" * (quota - used + 1))
        assert (info.value.quota, info.value.used) == (quota, used)
        with pytest.raises(QuotaExceeded):
            store.update_node(uid, f.node_id, b"f" * (quota - len(ROOT_META) + 1))
        with pytest.raises(QuotaExceeded):
            store.commit_version(uid, f.node_id, 0, b"M" * (quota - used + 1), [], None, 10, 1.0)
        with pytest.raises(QuotaExceeded):
            store.put_record(uid, "pins", 0, b"r" * (quota - used + 1), 1.0)
        assert audited(store, uid) == used and seq_of(store, uid) == before
        assert store.get_node(uid, f.node_id).meta == b"f" * 1000 and store.list_versions(uid, f.node_id) == []
        assert store.get_record(uid, "pins") is None
        assert [n.node_id for n in store.changes(uid, 0, 100)[0]] == [root, f.node_id]  # nothing created
        # Exactly at the quota is fine, and a write that does not grow is never refused.
        store.commit_version(uid, f.node_id, 0, b"M" * (quota - used), [], None, 1, 2.0)
        assert audited(store, uid) == quota
        store.commit_version(uid, f.node_id, 1, b"N" * (quota - used), [], None, 1, 3.0)  # prunes v1: net 0
        store.update_node(uid, f.node_id, b"f" * 1000)
        with pytest.raises(QuotaExceeded):
            store.commit_version(uid, f.node_id, 2, b"N" * (quota - used + 1), [], None, 1, 4.0)
        with pytest.raises(QuotaExceeded):
            upload(store, None, uid, b"x", quota=quota)
        store.update_node(uid, f.node_id, b"f")  # shrinking at the limit
        assert audited(store, uid) == quota - 999

    def test_an_account_over_its_quota_can_still_shrink(self, make_store: Callable[..., MetaStore]) -> None:
        roomy = make_store(Limits(quota=10_000), "data")
        uid, root = new_account(roomy)
        f = roomy.create_node(uid, hex32(), root, "file", b"f" * 3000)
        roomy.put_record(uid, "pins", 0, b"r" * 3000, 1.0)
        roomy.close()
        tight = make_store(Limits(quota=1000), "data")  # the operator lowered the quota
        with pytest.raises(QuotaExceeded):
            tight.update_node(uid, f.node_id, b"f" * 3001)
        tight.update_node(uid, f.node_id, b"f" * 2000)
        assert tight.put_record(uid, "pins", 1, b"r" * 10, 2.0) == 2
        tight.delete_record(uid, "pins", 2)
        assert audited(tight, uid) == len(ROOT_META) + 2000

    def test_signup_root_meta_is_charged(self, make_store: Callable[..., MetaStore]) -> None:
        store = make_store(Limits(quota=len(ROOT_META) - 1))
        with pytest.raises(QuotaExceeded):
            new_account(store, "refused")
        assert store.account_by_name("refused") is None
        exact = make_store(Limits(quota=len(ROOT_META)))
        uid, _ = new_account(exact)
        assert audited(exact, uid) == len(ROOT_META)

    def test_quota_holds_under_concurrent_writes(self, make_store: Callable[..., MetaStore]) -> None:
        store = make_store(Limits(quota=len(ROOT_META) + 5 * 1000))
        uid, root = new_account(store)
        outcomes = run_parallel(12, lambda i: store.create_node(uid, hex32(), root, "file", b"m" * 1000))
        assert outcomes.count("ok") == 5 and outcomes.count("QuotaExceeded") == 7, outcomes
        assert audited(store, uid) == len(ROOT_META) + 5000


def run_parallel(n: int, work: Callable[[int], object]) -> list[str]:
    """Run ``work(i)`` for i < n in n threads released together; "ok" or the exception's class name each."""
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            work(i)
            outcome = "ok"
        except Exception as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


class TestNodeCap:
    def test_cap_counts_the_root_and_the_trash(self, make_store: Callable[..., MetaStore]) -> None:
        store = make_store(Limits(max_nodes=4))
        uid, root = new_account(store)  # the root is node 1
        d = mk(store, uid, root)
        a = mk(store, uid, d.node_id, "file")
        b = mk(store, uid, d.node_id, "file")
        before = seq_of(store, uid)
        with pytest.raises(NodeLimit) as info:
            mk(store, uid, root)
        assert info.value.limit == 4 and "4" in info.value.message and info.value.status == 507
        assert info.value.body()["error"] == "node_limit"
        store.trash_node(uid, a.node_id)  # trashed, not purged: still counts
        with pytest.raises(NodeLimit):
            mk(store, uid, root)
        assert seq_of(store, uid) == before + 1  # only the trashing
        store.purge_node(uid, a.node_id, False)
        mk(store, uid, root)
        with pytest.raises(NodeLimit):
            mk(store, uid, root)
        assert store.purge_node(uid, d.node_id, True) == 2  # a folder and what is left in it
        mk(store, uid, root)
        mk(store, uid, root)
        with pytest.raises(NodeLimit):
            mk(store, uid, root)
        del b
        other, other_root = new_account(store)  # the cap is per account
        mk(store, other, other_root)

    def test_cap_holds_under_concurrent_creates(self, make_store: Callable[..., MetaStore]) -> None:
        store = make_store(Limits(max_nodes=6))
        uid, root = new_account(store)
        outcomes = run_parallel(12, lambda i: mk(store, uid, root))
        assert outcomes.count("ok") == 5 and outcomes.count("NodeLimit") == 7, outcomes
        assert len(store.changes(uid, 0, 100)[0]) == 6


class TestRecords:
    def test_compare_and_swap(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        assert store.get_record(uid, "pins") is None
        assert store.put_record(uid, "pins", 0, b"sealed-1", 1.0) == 1
        record = store.get_record(uid, "pins")
        assert record is not None and (record.name, record.version, record.blob) == ("pins", 1, b"sealed-1")
        assert store.put_record(uid, "pins", 1, b"sealed-2", 2.0) == 2
        for stale in (0, 1, 3):
            with pytest.raises(PreconditionFailed) as info:
                store.put_record(uid, "pins", stale, b"lost", 3.0)
            assert info.value.version == 2
        with pytest.raises(PreconditionFailed) as info:
            store.delete_record(uid, "pins", 1)
        assert info.value.version == 2
        got = store.get_record(uid, "pins")
        assert got is not None and got.blob == b"sealed-2"
        store.delete_record(uid, "pins", 2)
        assert store.get_record(uid, "pins") is None
        with pytest.raises(NotFound):
            store.delete_record(uid, "pins", 2)
        with pytest.raises(PreconditionFailed) as info:
            store.put_record(uid, "pins", 2, b"x", 4.0)  # absent: its version is 0
        assert info.value.version == 0
        assert store.put_record(uid, "pins", 0, b"again", 5.0) == 1

    def test_concurrent_writers_exactly_one_wins(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        store.put_record(uid, "pins", 0, b"v1", 1.0)
        outcomes = run_parallel(8, lambda i: store.put_record(uid, "pins", 1, b"writer %d" % i, 2.0))
        assert sorted(outcomes) == ["PreconditionFailed"] * 7 + ["ok"]
        record = store.get_record(uid, "pins")
        assert record is not None and record.version == 2

    def test_accounts_never_see_each_others_records(self, store: MetaStore, acct: tuple[str, str]) -> None:
        uid, _ = acct
        bob, _ = new_account(store)
        store.put_record(uid, "pins", 0, b"alice's", 1.0)
        assert store.get_record(bob, "pins") is None
        with pytest.raises(NotFound):
            store.delete_record(bob, "pins", 1)
        with pytest.raises(PreconditionFailed) as info:
            store.put_record(bob, "pins", 1, b"overwrite?", 2.0)
        assert info.value.version == 0  # bob's own (absent) record, not alice's
        assert store.put_record(bob, "pins", 0, b"bob's", 3.0) == 1
        mine, his = store.get_record(uid, "pins"), store.get_record(bob, "pins")
        assert mine is not None and his is not None and (mine.blob, his.blob) == (b"alice's", b"bob's")
        assert audited(store, uid) == len(ROOT_META) + len(b"alice's")
        assert audited(store, bob) == len(ROOT_META) + len(b"bob's")

    def test_record_limit(self, make_store: Callable[..., MetaStore]) -> None:
        store = make_store(Limits(max_records=3))
        uid, _ = new_account(store)
        for name in ("a", "b", "c"):
            store.put_record(uid, name, 0, b"x", 1.0)
        with pytest.raises(RecordLimit) as info:
            store.put_record(uid, "d", 0, b"x", 1.0)
        assert info.value.limit == 3 and info.value.status == 507 and info.value.body()["error"] == "record_limit"
        assert store.put_record(uid, "c", 1, b"updated", 2.0) == 2  # updates are not new records
        store.delete_record(uid, "a", 1)
        assert store.put_record(uid, "d", 0, b"x", 3.0) == 1
        assert audited(store, uid) == len(ROOT_META) + 1 + len(b"updated") + 1


def test_sqlite_upgrade_to_3_recomputes_used(tmp_path: Path) -> None:
    """A version-2 database counted only chunk bytes: opening it charges metas and manifests."""
    path = tmp_path / "meta.sqlite3"
    store = SQLiteMetaStore(path)
    try:
        uid, root = new_account(store)
        bob, _ = new_account(store)
        f = store.create_node(uid, hex32(), root, "file", b"f" * 700)
        gone = mk(store, uid, root)
        c = upload(store, None, uid, b"c" * 1234)
        store.commit_version(uid, f.node_id, 0, b"M" * 5000, [c], None, 10, 1.0)
        store.commit_version(uid, f.node_id, 1, b"N" * 6000, [c], None, 10, 2.0)
        store.purge_node(uid, gone.node_id, False)  # a tombstone: not counted
        store.trash_node(uid, f.node_id)  # trashed: counted
        expect = len(ROOT_META) + 700 + 1234 + 5000 + 6000
        assert audited(store, uid) == expect
    finally:
        store.close()
    # Make it what version 2 wrote: no records table, no node counts, used = chunk bytes only.
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        DROP TABLE records;
        DROP TABLE alembic_version;
        DROP TABLE attempts;
        DROP TABLE blob_deletions;
        DROP TABLE server_state;
        ALTER TABLE users DROP COLUMN node_count;
        UPDATE users SET used = COALESCE((SELECT SUM(size) FROM chunks WHERE chunks.owner = users.user_id), 0);
        PRAGMA user_version=2;
        """
    )
    conn.close()
    store = SQLiteMetaStore(path, Limits(max_nodes=3))
    try:
        assert store.usage(uid) == expect and store.usage(bob) == len(ROOT_META)
        mk(store, uid, root)  # node 3 of 3 (the root, the trashed file, this one)
        with pytest.raises(NodeLimit):
            mk(store, uid, root)
        assert store.put_record(uid, "pins", 0, b"works", 3.0) == 1
        assert audited(store, uid) == expect + len(META) + len(b"works")
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_two_batches_naming_each_others_shared_folders_do_not_deadlock(store: MetaStore,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /v1/batch/nodes as alice [her root, bob's folder shared with her] while bob sends [his root,
    alice's folder shared with him]. Each item's access check holds that item's owner: were the checks the
    first to hold, alice would hold alice and wait for bob while bob holds bob and waits for alice
    (PostgreSQL: DeadlockDetected, a 500). The batch holds every owner first, in one order, so one waits
    for the other and both succeed. The checks are made to interleave as badly as they can."""
    from megadrive.server import access, routes_nodes

    a, root_a = new_account(store, "alice")
    b, root_b = new_account(store, "bob")
    fa = store.create_node(a, hex32(), root_a, "dir", b"m").node_id
    fb = store.create_node(b, hex32(), root_b, "dir", b"m").node_id
    store.put_share(a, fa, b, "write", b"g" * 112, time.time())
    store.put_share(b, fb, a, "write", b"g" * 112, time.time())
    both_checked_one = threading.Barrier(2)
    real = access.for_create
    seen: dict[str, int] = {}

    def for_create(meta: MetaStore, caller: str, parent_id: str) -> str:
        owner = real(meta, caller, parent_id)
        seen[caller] = seen.get(caller, 0) + 1
        if seen[caller] == 1:  # after each batch's first check, wait for the other's (as long as it can come)
            try:
                both_checked_one.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass
        return owner

    monkeypatch.setattr(access, "for_create", for_create)
    results: dict[str, object] = {}

    def batch(caller: str, parents: list[str]) -> None:
        items = [routes_nodes.Create(hex32(), p, "dir", b"m", None) for p in parents]
        try:
            results[caller] = len(routes_nodes.create_all(store, caller, items, versions_kept=10))
        except Exception as e:  # noqa: BLE001 - the test reports whatever went wrong
            results[caller] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=batch, args=(a, [root_a, fb])),
               threading.Thread(target=batch, args=(b, [root_b, fa]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {a: 2, b: 2}
