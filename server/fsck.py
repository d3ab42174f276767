"""fsck: check the chunk store against the metadata, and optionally repair.

``megadrive server fsck --data DIR [--repair] [--grace SECONDS] [--json]``
(also ``python -m megadrive.server fsck ...``). What it looks for:

* **missing**: a chunk a retained version lists whose blob is absent, and
  **wrong size**: a blob whose size differs from what its ownership row
  records. A version naming such a chunk is a *broken version*: reported,
  never repaired (nothing can bring the bytes back but a client uploading
  them again; fsck never deletes or rewrites anything a kept version
  references);
* **unowned**: a chunk a retained version lists that the file's owner holds
  no row for (nobody pays for it, and the collector could delete it);
* **orphan**: a blob no ownership row and no retained version names. One younger than ``grace`` is
  only *pending* (an upload writes its blob before its row), not a problem;
* **dead row**: an ownership row whose blob is absent and that no retained
  version of its owner lists (``chunks/missing`` would call it stored);
* **usage**: an account whose ``used`` or node count differs from what it holds.

``--repair`` deletes orphans older than ``grace`` (default one hour, so an
upload in flight is never touched), drops dead rows (giving their bytes
back), then recomputes ``used`` and the node count of every account that is
still off. Every repair re-checks its condition under the metadata store's
write lock, so fsck is safe next to a running server (run it with the
server stopped for an exact report: a live server changes things while it
looks). After a repair it checks again and reports what is left.

Exit status (CLI): 0 when nothing is wrong at the end, 1 when a problem
remains (found without ``--repair``, or one fsck does not repair).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import ServerConfig
from .store.chunks import ChunkNotFound, ChunkStore
from .store.contract import MetaStore
from .store.records import BlobDeleter, ChunkRow, UsageAudit, VersionRef

DEFAULT_GRACE = 3600.0
_BATCH = 500


@dataclass(frozen=True)
class WrongSize:
    owner: str
    chunk_id: str
    recorded: int
    stored: int
    referenced: bool


@dataclass(frozen=True)
class Orphan:
    chunk_id: str
    size: int
    age: float  # seconds since the blob was written


@dataclass
class FsckReport:
    """What one check found. ``problems`` counts everything that is wrong."""

    rows: int = 0  # ownership rows looked at
    refs: int = 0  # (version, chunk) references looked at
    blobs: int = 0  # blobs in the chunk store
    accounts: int = 0
    missing: list[VersionRef] = field(default_factory=list)
    wrong_size: list[WrongSize] = field(default_factory=list)
    unowned: list[VersionRef] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    pending: list[Orphan] = field(default_factory=list)  # orphans younger than the grace period: not a problem
    dead_rows: list[ChunkRow] = field(default_factory=list)
    usage: list[UsageAudit] = field(default_factory=list)
    broken_versions: list[tuple[str, int]] = field(default_factory=list)  # (node id, version)

    @property
    def problems(self) -> int:
        return (
            len(self.missing)
            + len(self.wrong_size)
            + len(self.unowned)
            + len(self.orphans)
            + len(self.dead_rows)
            + len(self.usage)
        )

    @property
    def clean(self) -> bool:
        return self.problems == 0

    def counts(self) -> dict[str, int]:
        return {
            "missing": len(self.missing),
            "wrong_size": len(self.wrong_size),
            "unowned": len(self.unowned),
            "orphans": len(self.orphans),
            "dead_rows": len(self.dead_rows),
            "usage": len(self.usage),
            "broken_versions": len(self.broken_versions),
            "pending": len(self.pending),
        }

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["broken_versions"] = [list(v) for v in self.broken_versions]
        body["problems"] = self.problems
        body["counts"] = self.counts()
        return body


@dataclass
class RepairReport:
    """What ``--repair`` changed."""

    orphans_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    rows_dropped: list[ChunkRow] = field(default_factory=list)
    usage_fixed: list[str] = field(default_factory=list)  # user ids

    @property
    def total(self) -> int:
        return len(self.orphans_deleted) + len(self.rows_dropped) + len(self.usage_fixed)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["total"] = self.total
        return body


def _stored_size(chunks: ChunkStore, chunk_id: str) -> int | None:
    try:
        return chunks.size(chunk_id)
    except ChunkNotFound:
        return None


def _batched(ids: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for chunk_id in ids:
        batch.append(chunk_id)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def check(meta: MetaStore, chunks: ChunkStore, grace: float = DEFAULT_GRACE, now: float | None = None) -> FsckReport:
    """Compare the stores; changes nothing."""
    now = time.time() if now is None else now
    report = FsckReport()
    wrong: dict[str, int] = {}  # chunk id -> stored size, for blobs whose size some row contradicts
    for row in meta.iter_chunk_rows():
        report.rows += 1
        stored = _stored_size(chunks, row.chunk_id)
        if stored is None:
            if not row.referenced:  # (a referenced one is reported below, with its versions)
                report.dead_rows.append(row)
        elif stored != row.size:
            report.wrong_size.append(WrongSize(row.owner, row.chunk_id, row.size, stored, row.referenced))
            wrong[row.chunk_id] = stored
    broken: set[tuple[str, int]] = set()
    for ref in meta.iter_version_refs():
        report.refs += 1
        if not chunks.has(ref.chunk_id):
            report.missing.append(ref)
            broken.add((ref.node_id, ref.version))
            continue
        if ref.held_size is None:
            report.unowned.append(ref)
        if ref.chunk_id in wrong:
            broken.add((ref.node_id, ref.version))
    report.broken_versions = sorted(broken)
    for batch in _batched(chunks.iter_ids()):
        report.blobs += len(batch)
        named = meta.named_chunks(batch)
        for chunk_id in batch:
            if chunk_id in named:
                continue
            try:
                orphan = Orphan(chunk_id, chunks.size(chunk_id), max(0.0, now - chunks.modified(chunk_id)))
            except ChunkNotFound:  # deleted meanwhile (a live server's collector)
                continue
            (report.orphans if orphan.age >= grace else report.pending).append(orphan)
    audits = meta.usage_audit()
    report.accounts = len(audits)
    report.usage = [a for a in audits if not a.consistent]
    return report


def _old_blob_deleter(chunks: ChunkStore, cutoff: float) -> BlobDeleter:
    """Deletes a blob only if it was last written before ``cutoff`` (checked when its claimed
    deletion is carried out, so a blob an upload just re-wrote is kept)."""

    def delete(chunk_id: str) -> int | None:
        try:
            if chunks.modified(chunk_id) >= cutoff:
                return None
            size = chunks.size(chunk_id)
        except ChunkNotFound:
            return None
        return size if chunks.delete(chunk_id) else None

    return delete


def repair(
    meta: MetaStore, chunks: ChunkStore, report: FsckReport, grace: float = DEFAULT_GRACE, now: float | None = None
) -> RepairReport:
    """Fix what ``report`` found that fsck may fix (see the module docstring)."""
    now = time.time() if now is None else now
    done = RepairReport()
    delete_old = _old_blob_deleter(chunks, now - grace)

    def delete(chunk_id: str) -> int | None:
        freed = delete_old(chunk_id)
        if freed is not None:
            done.orphans_deleted.append(chunk_id)
        return freed

    # delete_unowned re-checks, in the unit that claims each blob, that no row names it.
    orphans = [o.chunk_id for o in report.orphans]
    for start in range(0, len(orphans), _BATCH):
        done.bytes_freed += meta.delete_unowned(orphans[start : start + _BATCH], delete)[1]
    done.rows_dropped = meta.drop_unstored_chunks([(r.owner, r.chunk_id) for r in report.dead_rows], chunks.has)
    off = [a.user_id for a in meta.usage_audit() if not a.consistent]
    if off:
        meta.recompute_usage(off)
        done.usage_fixed = off
    return done


@dataclass
class FsckResult:
    found: FsckReport
    repaired: RepairReport | None = None
    after: FsckReport | None = None  # the check after the repair

    @property
    def final(self) -> FsckReport:
        return self.after if self.after is not None else self.found

    @property
    def exit_code(self) -> int:
        return 0 if self.final.clean else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found.to_json(),
            "repaired": None if self.repaired is None else self.repaired.to_json(),
            "after": None if self.after is None else self.after.to_json(),
            "clean": self.final.clean,
        }


def run(config: ServerConfig, *, do_repair: bool = False, grace: float = DEFAULT_GRACE) -> FsckResult:
    """Check (and with ``do_repair``, repair and check again) the data directory of ``config``.

    Raises FileNotFoundError if a data folder holds no MegaDrive data.
    """
    from .app import open_stores

    require_data(config)
    meta, chunks = open_stores(config)
    try:
        result = FsckResult(check(meta, chunks, grace))
        if do_repair:
            result.repaired = repair(meta, chunks, result.found, grace)
            result.after = check(meta, chunks, grace)
        return result
    finally:
        meta.close()
        chunks.close()


def require_data(config: ServerConfig) -> None:
    """FileNotFoundError if the configuration's SQLite database does not exist (an operator's
    command pointed at the wrong folder: it must not create an empty store there)."""
    if config.meta_url is None and not config.meta_path.is_file():
        raise FileNotFoundError(f"no MegaDrive data in {config.data_dir}")
    if config.meta_url is not None and config.meta_url.startswith("sqlite:"):
        from .store.urls import sqlite_path

        if not sqlite_path(config.meta_url).is_file():
            raise FileNotFoundError(f"no MegaDrive data at {config.meta_url}")


# -- text output ---------------------------------------------------------------------------------


def describe(report: FsckReport) -> list[str]:
    """One line per finding."""
    lines: list[str] = []
    for ref in report.missing:
        lines.append(
            f"missing: chunk {ref.chunk_id} of node {ref.node_id} version {ref.version} (owner {ref.owner}): no blob"
        )
    for w in report.wrong_size:
        kept = ", listed by a kept version" if w.referenced else ""
        lines.append(
            f"wrong size: chunk {w.chunk_id} (owner {w.owner}): {w.stored} bytes stored, {w.recorded} recorded{kept}"
        )
    for ref in report.unowned:
        lines.append(
            f"unowned: chunk {ref.chunk_id} of node {ref.node_id} version {ref.version}: "
            f"its owner {ref.owner} holds no row for it"
        )
    for node_id, version in report.broken_versions:
        lines.append(f"broken version: node {node_id} version {version} (not repaired: its chunks are gone)")
    for o in report.orphans:
        lines.append(f"orphan: blob {o.chunk_id} ({o.size} bytes, {o.age:.0f} s old): no row names it")
    for row in report.dead_rows:
        lines.append(f"dead row: owner {row.owner} holds chunk {row.chunk_id} ({row.size} bytes) but it has no blob")
    for a in report.usage:
        lines.append(
            f"usage: account {a.user_id}: used {a.used} but holds {a.stored} bytes; "
            f"node count {a.node_count} but has {a.nodes} nodes"
        )
    for o in report.pending:
        lines.append(f"pending: blob {o.chunk_id} ({o.age:.0f} s old) has no row yet (an upload in progress?)")
    return lines


def summary(result: FsckResult) -> str:
    """The one summary line."""
    found = result.found
    seen = f"{found.rows} rows, {found.refs} version refs, {found.blobs} blobs, {found.accounts} accounts"
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in found.counts().items())
    if result.repaired is None:
        state = "clean" if found.clean else f"{found.problems} problems"
        return f"fsck: {state} ({seen}): {counts}"
    left = result.final.problems
    return (
        f"fsck: {found.problems} problems ({seen}): {counts}; repaired {result.repaired.total}, "
        f"{'clean now' if left == 0 else f'{left} left'}"
    )


def text_report(result: FsckResult) -> list[str]:
    """Every output line: the findings, what was repaired, what is left, and the summary last."""
    lines = describe(result.found)
    if result.repaired is not None:
        lines += [f"repaired: deleted orphan blob {cid}" for cid in result.repaired.orphans_deleted]
        lines += [f"repaired: dropped row of {r.owner} for chunk {r.chunk_id}" for r in result.repaired.rows_dropped]
        lines += [f"repaired: recomputed used and node count of {uid}" for uid in result.repaired.usage_fixed]
        if result.after is not None and not result.after.clean:
            lines += ["left: " + line for line in describe(result.after) if not line.startswith("pending:")]
    lines.append(summary(result))
    return lines
