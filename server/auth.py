"""Authentication: auth-key hashing, bearer tokens, login and signup throttling, fake salts.

The client derives ``auth_key`` from the password with a slow KDF and sends
only that; the server hashes it once more with scrypt so a leaked database
does not hand out login credentials. Tokens are random and stored only as
their SHA-256, so a leaked database does not hand out sessions either.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import RateLimited

if TYPE_CHECKING:  # pragma: no cover
    from .store.contract import AccountStore

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
AUTH_HASH_BYTES = 32
AUTH_SALT_BYTES = 16
SECRET_BYTES = 32
FAKE_SALT_BYTES = 16
# What prelogin answers for unknown accounts; also what a current client
# would send, so a fake answer looks like a real one.
DEFAULT_KDF: dict[str, Any] = {"alg": "argon2id13", "opslimit": 3, "memlimit": 268435456}


def hash_auth_key(auth_key: bytes, salt: bytes) -> bytes:
    """scrypt(auth_key, salt, n=2**14, r=8, p=1, dklen=32)."""
    return hashlib.scrypt(auth_key, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=AUTH_HASH_BYTES)


def new_auth_hash(auth_key: bytes) -> tuple[bytes, bytes]:
    """(salt, hash) to store for a new account."""
    salt = secrets.token_bytes(AUTH_SALT_BYTES)
    return salt, hash_auth_key(auth_key, salt)


def verify_auth_key(auth_key: bytes, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_auth_key(auth_key, salt), expected)


def burn_auth_check(auth_key: bytes) -> None:
    """Spend the same scrypt work as a real check, for unknown accounts.

    Without it a login for a non-existent user would answer measurably
    faster, revealing which names exist.
    """
    hash_auth_key(auth_key, b"\0" * AUTH_SALT_BYTES)


def new_token() -> str:
    """32 random bytes as 43 url-safe base64 characters."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def fake_salt(secret: bytes, name: str) -> bytes:
    """Deterministic per-name salt for prelogin of unknown accounts."""
    return hmac.new(secret, b"megadrive-prelogin-salt\0" + name.encode("utf-8"), hashlib.sha256).digest()[
        :FAKE_SALT_BYTES
    ]


def load_or_create_secret(path: Path) -> bytes:
    """The server secret: 32 random bytes in a 0600 file, created once.

    Written to a temp file, fsynced, then hard-linked into place: linking
    fails if the name exists, so two processes starting on a fresh data dir
    agree on one secret, and a crash never leaves a truncated one.
    """
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=path.parent)
        try:
            try:
                os.write(fd, secrets.token_bytes(SECRET_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    secret = path.read_bytes()
    if len(secret) != SECRET_BYTES:
        raise RuntimeError(f"{path}: expected {SECRET_BYTES} bytes")
    return secret


def source_key(remote_addr: str | None) -> str:
    """The limiter key of a client address: ``addr:`` plus the IPv4 address, or the IPv6 /64.

    An IPv6 host is usually handed a whole /64 and can pick any address in
    it, so counting per IPv6 address would let one host rotate through 2**64
    of them; an IPv4-mapped IPv6 address counts as its IPv4 address.
    """
    text = remote_addr or ""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return f"addr:{text}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"


class Limiter(Protocol):
    """Counts attempts per key in a sliding window: ``begin`` counts one (or raises
    RateLimited) and returns its stamp; ``forgive`` stops counting a successful one."""

    def begin(self, keys: list[str]) -> float: ...

    def forgive(self, keys: list[str], stamp: float) -> None: ...


class SharedLimiter:
    """The limiter every server process on one metadata store shares: attempts are rows.

    Same rule as :class:`WindowLimiter` (counted before the work it guards,
    atomically, so parallel requests, on any process, never pass the limit;
    Retry-After until the oldest counted attempt leaves the window), kept by
    :meth:`AccountStore.count_attempt` in the database. The window runs on the
    wall clock, which the processes share. ``scope`` keeps limiters apart
    (``login``, ``signup``); the collector forgets attempts past their window.
    """

    def __init__(
        self,
        store: AccountStore,
        scope: str,
        max_attempts: int,
        window: float,
        message: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.scope = scope
        self.max_attempts = max_attempts
        self.window = window
        self.message = message
        self._clock = clock

    def begin(self, keys: list[str]) -> float:
        attempt, wait = self.store.count_attempt(self.scope, keys, self.max_attempts, self.window, self._clock())
        if attempt is None:
            raise RateLimited(retry_after=max(1, math.ceil(wait)), message=self.message)
        return float(attempt)

    def forgive(self, keys: list[str], stamp: float) -> None:
        self.store.forgive_attempt(int(stamp))


class WindowLimiter:
    """Counts attempts per key (a user name, a client address) in a sliding window, in memory
    (one process; :class:`SharedLimiter` is what the server uses).

    Once a key has ``max_attempts`` attempts within ``window`` seconds,
    further ones are refused with 429 (``message``, and a Retry-After of
    when the oldest of them leaves the window). An attempt is counted
    *before* the work it guards, under one lock, so parallel requests can
    never exceed the limit: logins count each attempt before the key is
    checked and forgive it if it was right (so only failures count);
    signups count every well-formed attempt. Memory is bounded: at most
    ``max_keys`` keys are tracked, the longest-idle ones are dropped first.
    """

    def __init__(
        self,
        max_attempts: int,
        window: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        message: str | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.window = window
        self.max_keys = max_keys
        self.message = message
        self._clock = clock
        self._stamps: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        stamps = self._stamps.get(key)
        if stamps is None:
            return []
        fresh = [t for t in stamps if t > now - self.window]
        if fresh:
            self._stamps[key] = fresh
        else:
            del self._stamps[key]
        return fresh

    def begin(self, keys: list[str]) -> float:
        """Count an attempt against every key, or raise RateLimited. Returns its stamp."""
        with self._lock:
            now = self._clock()
            blocked_until = 0.0
            for key in keys:
                recent = self._recent(key, now)
                if len(recent) >= self.max_attempts:
                    blocked_until = max(blocked_until, recent[-self.max_attempts] + self.window)
            if blocked_until:
                raise RateLimited(retry_after=max(1, math.ceil(blocked_until - now)), message=self.message)
            for key in keys:
                stamps = self._stamps.pop(key, [])
                stamps.append(now)
                self._stamps[key] = stamps  # re-insert: dict order = least recently counted first
            self._evict(now)
            return now

    def forgive(self, keys: list[str], stamp: float) -> None:
        """The attempt stamped ``stamp`` succeeded: stop counting it."""
        with self._lock:
            for key in keys:
                stamps = self._stamps.get(key)
                if stamps and stamp in stamps:
                    stamps.remove(stamp)
                    if not stamps:
                        del self._stamps[key]

    def _evict(self, now: float) -> None:
        if len(self._stamps) <= self.max_keys:
            return
        for key in list(self._stamps):
            self._recent(key, now)
        while len(self._stamps) > self.max_keys:
            del self._stamps[next(iter(self._stamps))]
