"""Accounts, tokens, the attempt limiter and the shared secret, in SQL."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..errors import Exists, QuotaExceeded
from .records import MAX_TOKENS_PER_ACCOUNT, Account, NewAccount, SessionInfo, session_id
from .sqlbase import ACCOUNT_COLS, SQLStoreBase, account_row
from .tables import attempts, nodes, server_state, tokens, users


class SQLAccounts(SQLStoreBase):
    def create_account(self, account: NewAccount, now: float) -> None:
        ident = account.identity
        with self._write() as c:
            taken = c.execute(
                sa.select(users.c.user_id).where(
                    sa.or_(users.c.user_id == account.user_id, users.c.name == account.name)
                )
            ).first()
            if taken is not None:
                raise Exists("user name or user id already taken")
            if c.execute(sa.select(nodes.c.node_id).where(nodes.c.node_id == account.root_node_id)).first():
                raise Exists("node id already taken")
            if len(account.root_meta) > self.limits.quota:
                raise QuotaExceeded(quota=self.limits.quota, used=0)
            try:
                with c.begin_nested():
                    c.execute(
                        sa.insert(users).values(
                            name=account.name,
                            user_id=account.user_id,
                            salt=account.salt,
                            kdf=json.dumps(account.kdf, sort_keys=True),
                            auth_salt=account.auth_salt,
                            auth_hash=account.auth_hash,
                            wrapped_master=account.wrapped_master,
                            sign_pub=ident.sign_pub,
                            box_pub=ident.box_pub,
                            box_sig=ident.box_sig,
                            wrapped_private=ident.wrapped_private,
                            root_node_id=account.root_node_id,
                            seq=1,
                            used=len(account.root_meta),  # the root's meta: the account's first stored bytes
                            created=now,
                            node_count=1,
                        )
                    )
                    c.execute(
                        sa.insert(nodes).values(
                            node_id=account.root_node_id,
                            owner=account.user_id,
                            parent_id=None,
                            kind="dir",
                            meta=account.root_meta,
                            seq=1,
                        )
                    )
            except IntegrityError:  # another unit took the name or an id first
                raise Exists("user name, user id or node id already taken") from None

    def account_by_name(self, name: str) -> Account | None:
        with self._read() as c:
            row = c.execute(sa.select(*ACCOUNT_COLS).where(users.c.name == name)).first()
        return None if row is None else account_row(row)

    def account_by_id(self, user_id: str) -> Account | None:
        with self._read() as c:
            row = c.execute(sa.select(*ACCOUNT_COLS).where(users.c.user_id == user_id)).first()
        return None if row is None else account_row(row)

    def add_token(self, token_hash: str, user_id: str, now: float, expires: float, device: str | None = None) -> None:
        with self._write() as c:
            self._hold_now([user_id])
            c.execute(sa.insert(tokens).values(token_hash=token_hash, user_id=user_id, created=now, expires=expires,
                                               device=device, last_used=now))
            keep = (
                sa.select(tokens.c.token_hash)
                .where(tokens.c.user_id == user_id)
                .order_by(tokens.c.created.desc(), tokens.c.token_hash.desc())
                .limit(MAX_TOKENS_PER_ACCOUNT)
            )
            c.execute(
                sa.delete(tokens).where(tokens.c.user_id == user_id, tokens.c.token_hash.not_in(keep.scalar_subquery()))
            )

    def user_for_token(self, token_hash: str, now: float) -> str | None:
        with self._read() as c:
            user = c.execute(
                sa.select(tokens.c.user_id).where(tokens.c.token_hash == token_hash, tokens.c.expires > now)
            ).scalar()
        return None if user is None else str(user)

    def revoke_token(self, token_hash: str) -> None:
        with self._write() as c:
            c.execute(sa.delete(tokens).where(tokens.c.token_hash == token_hash))

    def touch_token(self, token_hash: str, now: float) -> None:
        with self._write() as c:
            c.execute(sa.update(tokens).where(tokens.c.token_hash == token_hash).values(last_used=now))

    def sessions(self, user_id: str, now: float) -> list[SessionInfo]:
        with self._read() as c:
            rows = c.execute(
                sa.select(tokens.c.token_hash, tokens.c.created, tokens.c.last_used, tokens.c.expires, tokens.c.device)
                .where(tokens.c.user_id == user_id, tokens.c.expires > now)
                .order_by(tokens.c.created.desc(), tokens.c.token_hash.desc())
            ).all()
        return [SessionInfo(session_id(str(r[0])), float(r[1]), None if r[2] is None else float(r[2]), float(r[3]),
                            None if r[4] is None else str(r[4])) for r in rows]

    def revoke_session(self, user_id: str, session: str) -> bool:
        with self._write() as c:
            self._hold_now([user_id])
            hashes = c.execute(sa.select(tokens.c.token_hash).where(tokens.c.user_id == user_id)).scalars().all()
            mine = [h for h in hashes if session_id(str(h)) == session]
            if not mine:
                return False
            c.execute(sa.delete(tokens).where(tokens.c.user_id == user_id, tokens.c.token_hash.in_(mine)))
            return True

    def change_password(self, user_id: str, auth_salt: bytes, auth_hash: bytes, wrapped_master: bytes,
                        keep_token: str) -> None:
        with self._write() as c:
            self._hold_now([user_id])
            # The recovery key goes too: one set by whoever knew the old password must not outlive it.
            c.execute(sa.update(users).where(users.c.user_id == user_id).values(
                auth_salt=auth_salt, auth_hash=auth_hash, wrapped_master=wrapped_master,
                recovery_wrap=None, recovery_salt=None, recovery_hash=None))
            c.execute(sa.delete(tokens).where(tokens.c.user_id == user_id, tokens.c.token_hash != keep_token))

    def set_recovery(self, user_id: str, wrap: bytes, salt: bytes, auth_hash: bytes) -> None:
        with self._write() as c:
            self._hold_now([user_id])
            c.execute(sa.update(users).where(users.c.user_id == user_id).values(
                recovery_wrap=wrap, recovery_salt=salt, recovery_hash=auth_hash))

    def purge_expired_tokens(self, now: float) -> int:
        with self._write() as c:
            return int(c.execute(sa.delete(tokens).where(tokens.c.expires <= now)).rowcount)

    # -- attempt limiting -------------------------------------------------------------------
    def _hold_keys(self, c: sa.Connection, keys: Sequence[str]) -> None:
        """Exclude other units counting attempts against these keys (dialect hook)."""

    def count_attempt(
        self, scope: str, keys: Sequence[str], limit: int, window: float, now: float
    ) -> tuple[int | None, float]:
        keys = sorted(set(keys))
        with self._write() as c:
            self._hold_keys(c, [f"{scope}:{k}" for k in keys])
            blocked_until = 0.0
            for key in keys:
                stamps = (
                    c.execute(
                        sa.select(attempts.c.stamp)
                        .where(attempts.c.scope == scope, attempts.c.key == key, attempts.c.stamp > now - window)
                        .order_by(attempts.c.stamp.desc())
                        .limit(limit)
                    )
                    .scalars()
                    .all()
                )
                if len(stamps) >= limit:
                    blocked_until = max(blocked_until, float(stamps[-1]) + window)
            if blocked_until:
                return None, max(blocked_until - now, 0.001)
            attempt = secrets.randbits(50) + 1  # exact as a float stamp
            c.execute(
                sa.insert(attempts),
                [{"attempt": attempt, "scope": scope, "key": k, "stamp": now, "expires": now + window} for k in keys],
            )
            return attempt, 0.0

    def forgive_attempt(self, attempt_id: int) -> None:
        with self._write() as c:
            c.execute(sa.delete(attempts).where(attempts.c.attempt == attempt_id))

    def prune_attempts(self, now: float) -> int:
        with self._write() as c:
            return int(c.execute(sa.delete(attempts).where(attempts.c.expires <= now)).rowcount)

    def shared_secret(self, seed: bytes) -> bytes:
        with self._write() as c:
            c.execute(self._insert(server_state).values(name="prelogin_secret", value=seed).on_conflict_do_nothing())
            return bytes(
                c.execute(sa.select(server_state.c.value).where(server_state.c.name == "prelogin_secret")).scalar_one()
            )
