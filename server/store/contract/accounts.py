"""Accounts, tokens, the shared attempt limiter and the shared server secret."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from ..records import Account, NewAccount, SessionInfo
from .unit import UnitOfWork


class AccountStore(UnitOfWork):
    @abstractmethod
    def create_account(self, account: NewAccount, now: float) -> None:
        """Create the account and its root folder (its meta charged to the new account).
        ``Exists`` if name, user id or root id is taken (also when another unit takes it first)."""

    @abstractmethod
    def account_by_name(self, name: str) -> Account | None: ...

    @abstractmethod
    def account_by_id(self, user_id: str) -> Account | None: ...

    @abstractmethod
    def add_token(self, token_hash: str, user_id: str, now: float, expires: float, device: str | None = None) -> None:
        """Store a token's hash (and the device name given at login); keeps at most
        MAX_TOKENS_PER_ACCOUNT per account (the newest)."""

    @abstractmethod
    def touch_token(self, token_hash: str, now: float) -> None:
        """Record that the session was used at ``now``."""

    @abstractmethod
    def sessions(self, user_id: str, now: float) -> list[SessionInfo]:
        """The account's unexpired sessions, newest first."""

    @abstractmethod
    def revoke_session(self, user_id: str, session_id: str) -> bool:
        """End the account's session with this id (False: no such session of this account)."""

    @abstractmethod
    def change_password(self, user_id: str, auth_salt: bytes, auth_hash: bytes, wrapped_master: bytes,
                        keep_token: str) -> None:
        """Replace the password's authentication hash and the wrapped master key in one transaction,
        forget the recovery key (whoever knew the old password may have set it), and end every
        session but ``keep_token`` (a token hash)."""

    @abstractmethod
    def set_recovery(self, user_id: str, wrap: bytes, salt: bytes, auth_hash: bytes) -> None:
        """Store (or replace) the master key wrapped under the recovery key, and its key's hash."""

    @abstractmethod
    def user_for_token(self, token_hash: str, now: float) -> str | None:
        """The user id of a valid, unexpired token."""

    @abstractmethod
    def revoke_token(self, token_hash: str) -> None: ...

    @abstractmethod
    def purge_expired_tokens(self, now: float) -> int: ...

    # -- attempt limiting, shared by every server process ------------------------------
    @abstractmethod
    def count_attempt(
        self, scope: str, keys: Sequence[str], limit: int, window: float, now: float
    ) -> tuple[int | None, float]:
        """Count one attempt against every key of ``scope`` (say ``login``: a user name and
        an address), atomically across processes, or refuse it.

        Answers ``(attempt id, 0.0)`` (the id for :meth:`forgive_attempt`), or, if a key
        already has ``limit`` attempts younger than ``window`` seconds, ``(None, seconds)``:
        nothing is counted, and the seconds are how long until the oldest of them leaves
        the window.
        Parallel attempts never pass the limit.
        """

    @abstractmethod
    def forgive_attempt(self, attempt_id: int) -> None:
        """Stop counting an attempt (it succeeded)."""

    @abstractmethod
    def prune_attempts(self, now: float) -> int:
        """Forget attempts that left their window; returns how many."""

    @abstractmethod
    def shared_secret(self, seed: bytes) -> bytes:
        """The secret every server process on this store uses (keys the fake prelogin salts).

        The first call ever stores ``seed``; every later call, in any process, returns
        what was stored."""
