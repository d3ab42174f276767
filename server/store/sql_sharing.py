"""Shares, public links, abuse reports and takedowns, in SQL."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..validate import scrub_fragments
from .records import BlobDeleter, Link, Share, TakedownResult
from .sqlbase import (
    LINK_COLS,
    NODE_COLS,
    SHARE_COLS,
    SHARE_FROM,
    SQLStoreBase,
    batches,
    link_row,
    node_row,
    share_row,
    unique,
)
from .tables import (
    abuse_reports,
    blob_deletions,
    chunks,
    links,
    nodes,
    removed_chunks,
    shares,
    users,
    version_chunks,
    versions,
)


class SQLSharing(SQLStoreBase):
    # -- shares -----------------------------------------------------------------------------
    def shares_between(self, owner: str, recipient: str) -> list[Share]:
        with self._read() as c:
            rows = c.execute(
                sa.select(*SHARE_COLS)
                .select_from(SHARE_FROM)
                .where(shares.c.recipient == recipient, shares.c.owner == owner)
                .order_by(shares.c.created, shares.c.share_id)
            ).all()
        return [share_row(r) for r in rows]

    def is_share_root(self, node_id: str) -> bool:
        with self._read() as c:
            row = c.execute(
                sa.select(shares.c.share_id).where(shares.c.node_id == node_id, shares.c.revoked.is_(None)).limit(1)
            ).first()
        return row is not None

    def put_share(self, owner: str, node_id: str, recipient: str, access: str, grant: bytes, now: float) -> Share:
        if access not in ("read", "write"):
            raise BadRequest('access: expected "read" or "write"')
        if recipient == owner:
            raise BadRequest("a folder cannot be shared with its owner")
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if node.kind != "dir":
                raise Conflict("only folders can be shared")
            if node.parent_id is None:
                raise Conflict("the root cannot be shared")
            if node.removed:
                raise Unavailable()
            if c.execute(sa.select(users.c.user_id).where(users.c.user_id == recipient)).first() is None:
                raise NotFound("user not found")
            share_id = c.execute(
                sa.select(shares.c.share_id).where(
                    shares.c.node_id == node_id, shares.c.recipient == recipient, shares.c.revoked.is_(None)
                )
            ).scalar()
            if share_id is not None:
                c.execute(
                    sa.update(shares).where(shares.c.share_id == share_id).values({"access": access, "grant": grant})
                )
            else:
                share_id = secrets.token_hex(16)
                c.execute(
                    sa.insert(shares).values(
                        {
                            "share_id": share_id,
                            "node_id": node_id,
                            "owner": owner,
                            "recipient": recipient,
                            "access": access,
                            "grant": grant,
                            "created": now,
                        }
                    )
                )
            return share_row(
                c.execute(sa.select(*SHARE_COLS).select_from(SHARE_FROM).where(shares.c.share_id == share_id)).one()
            )

    def get_share(self, share_id: str) -> Share | None:
        with self._read() as c:
            row = c.execute(sa.select(*SHARE_COLS).select_from(SHARE_FROM).where(shares.c.share_id == share_id)).first()
        return None if row is None else share_row(row)

    def list_shares(self, user: str) -> tuple[list[Share], list[Share]]:
        q = sa.select(*SHARE_COLS).select_from(SHARE_FROM).order_by(shares.c.created, shares.c.share_id)
        with self._unit(False, snapshot=True) as c:
            out = c.execute(q.where(shares.c.owner == user, shares.c.revoked.is_(None))).all()
            inc = c.execute(q.where(shares.c.recipient == user, shares.c.revoked.is_(None))).all()
        return [share_row(r) for r in out], [share_row(r) for r in inc]

    def revoke_share(self, owner: str, share_id: str, now: float) -> None:
        with self._write() as c:
            self._hold_now([owner])
            done = c.execute(
                sa.update(shares)
                .where(shares.c.share_id == share_id, shares.c.owner == owner, shares.c.revoked.is_(None))
                .values(revoked=now)
            ).rowcount
            if not done:
                raise NotFound("share not found")

    # -- public links -----------------------------------------------------------------------
    def create_link(
        self,
        owner: str,
        node_id: str,
        blob: bytes,
        salt: bytes | None,
        kdf: dict[str, Any] | None,
        expires: int | None,
        now: float,
    ) -> Link:
        with self._write() as c:
            self._hold_now([owner])
            node = self._live(c, owner, node_id)
            if node.parent_id is None:
                raise Conflict("an account's root cannot be linked")
            if node.removed:
                raise Unavailable()
            link_id = secrets.token_urlsafe(16)
            c.execute(
                sa.insert(links).values(
                    link_id=link_id,
                    node_id=node_id,
                    owner=owner,
                    blob=blob,
                    salt=salt,
                    kdf=None if kdf is None else json.dumps(kdf, sort_keys=True),
                    expires=expires,
                    created=now,
                    deleted=None,
                )
            )
            return link_row(c.execute(sa.select(*LINK_COLS).where(links.c.link_id == link_id)).one())

    def get_link(self, link_id: str) -> Link | None:
        with self._read() as c:
            row = c.execute(sa.select(*LINK_COLS).where(links.c.link_id == link_id)).first()
        return None if row is None else link_row(row)

    def list_links(self, owner: str) -> list[Link]:
        with self._read() as c:
            rows = c.execute(
                sa.select(*LINK_COLS)
                .where(links.c.owner == owner, links.c.deleted.is_(None))
                .order_by(links.c.created, links.c.link_id)
            ).all()
        return [link_row(r) for r in rows]

    def delete_link(self, owner: str, link_id: str, now: float) -> None:
        with self._write() as c:
            self._hold_now([owner])
            done = c.execute(
                sa.update(links)
                .where(links.c.link_id == link_id, links.c.owner == owner, links.c.deleted.is_(None))
                .values(deleted=now)
            ).rowcount
            if not done:
                raise NotFound("link not found")

    # -- abuse reports and takedown ---------------------------------------------------------
    def add_abuse_report(self, link_id: str, reason: str, now: float) -> str:
        reason = scrub_fragments(reason)
        report_id = secrets.token_hex(16)
        with self._write() as c:
            c.execute(sa.insert(abuse_reports).values(report_id=report_id, link_id=link_id, reason=reason, created=now))
        return report_id

    def abuse_reports(self, link_ids: Sequence[str]) -> list[tuple[str, str, str, float]]:
        found: list[tuple[str, str, str, float]] = []
        with self._unit(False, snapshot=True) as c:
            for batch in batches(unique(link_ids)):
                rows = c.execute(
                    sa.select(
                        abuse_reports.c.report_id,
                        abuse_reports.c.link_id,
                        abuse_reports.c.reason,
                        abuse_reports.c.created,
                    )
                    .where(abuse_reports.c.link_id.in_(batch))
                    .order_by(abuse_reports.c.created, abuse_reports.c.report_id)
                ).all()
                found.extend((str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows)
        return found

    def take_down(self, node_id: str, now: float, delete_blob: BlobDeleter) -> TakedownResult:
        with self._write() as c:
            row = c.execute(sa.select(*NODE_COLS).where(nodes.c.node_id == node_id, nodes.c.gone == 0)).first()
            if row is None:
                raise NotFound("node not found")
            node = node_row(row)
            if node.parent_id is None:
                raise Conflict("an account's root cannot be taken down")
            self._hold_now([node.owner])
            plan = self._takedown_plan(c, node_id, node.owner)
            if self._hold_now(plan[3]):  # every account it changes: held, then looked at again
                plan = self._takedown_plan(c, node_id, node.owner)
                self._hold_now(plan[3])
            subtree, chunk_ids, link_ids, _, same_content = plan
            for nid, nid_owner in [(n, node.owner) for n in subtree] + same_content:
                self._charge(c, nid_owner, -self._manifest_bytes(c, nid))
                c.execute(sa.delete(version_chunks).where(version_chunks.c.node_id == nid))
                c.execute(sa.delete(versions).where(versions.c.node_id == nid))
                c.execute(
                    sa.update(nodes).where(nodes.c.node_id == nid).values(removed=1, seq=self._bump(c, nid_owner))
                )
            refs = 0
            self._hold_chunks(c, chunk_ids)
            for cid in chunk_ids:
                for holder, size in c.execute(
                    sa.select(chunks.c.owner, chunks.c.size).where(chunks.c.chunk_id == cid)
                ).all():
                    c.execute(sa.update(users).where(users.c.user_id == holder).values(used=users.c.used - size))
                    refs += 1
                c.execute(sa.delete(chunks).where(chunks.c.chunk_id == cid))
                c.execute(
                    self._insert(removed_chunks)
                    .values(chunk_id=cid, node_id=node_id, created=now)
                    .on_conflict_do_nothing()
                )
                c.execute(
                    self._insert(blob_deletions)
                    .values(chunk_id=cid, queued=now, claimed=None, done=None)
                    .on_conflict_do_update(index_elements=["chunk_id"], set_={"claimed": None, "done": None})
                )
            report_ids: list[str] = []
            for batch in batches(link_ids):
                report_ids.extend(
                    c.execute(
                        sa.select(abuse_reports.c.report_id)
                        .where(abuse_reports.c.link_id.in_(batch))
                        .order_by(abuse_reports.c.created, abuse_reports.c.report_id)
                    ).scalars()
                )
        # Committed: the rows are gone, so now the blobs (never inside the unit of work).
        deleted, freed = self.process_deletions(delete_blob, chunk_ids)
        return TakedownResult(
            node_id=node_id,
            owner=node.owner,
            nodes=subtree,
            link_ids=link_ids,
            report_ids=report_ids,
            chunks_deleted=deleted,
            bytes_deleted=freed,
            refs_removed=refs,
            same_content=same_content,
        )

    def _takedown_plan(
        self, c: sa.Connection, node_id: str, owner: str
    ) -> tuple[list[str], list[str], list[str], list[str], list[tuple[str, str]]]:
        """(subtree, chunk ids, link ids, accounts changed, (node, owner) of other files listing the chunks)."""
        subtree = [nid for nid, _ in sorted(self._subtree(c, node_id), key=lambda item: item[1])]
        chunk_ids: list[str] = []
        link_ids: list[str] = []
        for batch in batches(subtree):
            chunk_ids.extend(
                c.execute(
                    sa.select(version_chunks.c.chunk_id).distinct().where(version_chunks.c.node_id.in_(batch))
                ).scalars()
            )
            link_ids.extend(
                c.execute(
                    sa.select(links.c.link_id)
                    .where(links.c.node_id.in_(batch))
                    .order_by(links.c.created, links.c.link_id)
                ).scalars()
            )
        chunk_ids = sorted(set(chunk_ids))
        inside = set(subtree)
        same_content: list[tuple[str, str]] = []
        accounts = {owner}
        for batch in batches(chunk_ids):
            others = c.execute(
                sa.select(version_chunks.c.node_id, nodes.c.owner)
                .distinct()
                .select_from(version_chunks.join(nodes, nodes.c.node_id == version_chunks.c.node_id))
                .where(version_chunks.c.chunk_id.in_(batch))
                .order_by(version_chunks.c.node_id)
            ).all()
            for other, other_owner in others:
                if other not in inside:
                    inside.add(other)
                    same_content.append((other, other_owner))
                    accounts.add(other_owner)
            accounts.update(
                c.execute(sa.select(chunks.c.owner).distinct().where(chunks.c.chunk_id.in_(batch))).scalars()
            )
        return subtree, chunk_ids, link_ids, sorted(accounts), same_content
