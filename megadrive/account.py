"""Signup and login: the password becomes keys here and goes no further.

Argon2id turns the password into a root key; labelled derivation splits it
into a key-encryption key (stays here) and an auth key (sent; the server
keeps only a slow hash of it). The KDF parameters are chosen by the client
at signup and pinned locally, so a server can never talk us down.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import crypto, format
from .api import Api, b64d, b64e
from .crypto import KdfParams
from .errors import AuthError, ConfigError, IntegrityError, MegaDriveError, NotFound, PermissionDenied
from .state import Session, clear_session, get_pin, load_session, save_session, set_pin, write_private


def default_kdf() -> KdfParams:
    """MODERATE unless MEGADRIVE_KDF=interactive (the floor; used by the test suite)."""
    choice = os.environ.get("MEGADRIVE_KDF", "moderate").lower()
    if choice == "moderate":
        return crypto.KDF_MODERATE
    if choice == "interactive":
        return crypto.KDF_INTERACTIVE
    raise ConfigError(f"MEGADRIVE_KDF must be 'moderate' or 'interactive', not {choice!r}")


_USER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")


def normalize_user(user: str) -> str:
    """Lower-case and check a user name (the server applies the same rule)."""
    name = user.strip().lower()
    if not _USER_RE.match(name):
        raise ConfigError(f"invalid user name {user!r}: 3-64 characters of a-z, 0-9, '.', '_', '-'")
    return name


def signup(api: Api, base: Path, user: str, password: str, kdf: KdfParams | None = None) -> Session:
    """Create the account's keys and root folder, register them, then log in."""
    user = normalize_user(user)
    if len(password) < 8:
        raise ConfigError("password must be at least 8 characters")
    kdf = kdf or default_kdf()
    user_id = crypto.random_id().hex()
    salt = crypto.random_salt()
    kek, auth_key = crypto.login_keys(crypto.derive_root(password, salt, kdf, user))
    master = crypto.random_key()
    ident = crypto.generate_identity()
    root_id = crypto.random_id().hex()
    root_meta = format.NodeMeta(name="", kind="dir", key=crypto.random_key(), mtime_ns=time.time_ns(),
                                mode=0o755)
    api.signup({
        "user": user, "user_id": user_id, "salt": b64e(salt), "kdf": kdf.to_json(),
        "auth_key": b64e(auth_key), "wrapped_master": b64e(format.wrap_master(kek, master, user_id)),
        "identity": {"sign_pub": b64e(ident.sign_pub), "box_pub": b64e(ident.box_pub),
                     "box_sig": b64e(ident.sign(crypto.box_key_statement(user_id, ident.box_pub))),
                     "wrapped_private": b64e(format.wrap_identity(master, ident, user_id))},
        "root": {"node_id": root_id, "meta": b64e(format.seal_meta(master, user_id, "", root_id, root_meta))},
    })
    set_pin(base, api.base_url, user, {"kdf": kdf.to_json(), "user_id": user_id, "salt": salt.hex(),
                                       "root": root_id})
    return login(api, base, user, password)


def verify_root(api: Api, master: bytes, user_id: str, root_id: str) -> None:
    """The root folder the server names must be ours: no parent, and its meta sealed under our master key.

    Everything in the drive is sealed under keys that hang off the root's, so a
    root the server could choose (or re-parent under a folder it knows the key
    of) would hand it every new name and content key.
    """
    try:
        node = api.get_node(root_id)
    except NotFound:
        raise IntegrityError("integrity check failed: the server's root folder is not this account's root") from None
    finally:
        api.close()
    if node.parent_id is not None or node.kind != "dir" or (node.owner and node.owner != user_id):
        raise IntegrityError("integrity check failed: the server's root folder is not this account's root")
    meta = format.open_meta(master, user_id, "", root_id, node.meta)
    if meta.kind != "dir":
        raise IntegrityError("integrity check failed: the server's root folder is not this account's root")


def _password_keys(api: Api, base: Path, user: str, password: str) -> tuple[bytes, bytes, KdfParams, bytes]:
    """(kek, auth key, KDF parameters, salt) of ``password``, with parameters no weaker than pinned and the
    salt this client pinned (a password change keeps both: other devices' pins stay valid)."""
    pin = get_pin(base, api.base_url, user)
    pre = api.prelogin(user)
    offered = KdfParams.from_json(pre.get("kdf"))
    pinned = KdfParams.from_json(pin["kdf"]) if pin else None
    crypto.check_kdf(offered, pinned, floor=default_kdf())
    salt = b64d(pre.get("salt"))
    if pin and pin.get("salt") and pin["salt"] != salt.hex():
        raise IntegrityError("integrity check failed: the server offered another salt than this client pinned")
    kek, auth_key = crypto.login_keys(crypto.derive_root(password, salt, offered, user))
    return kek, auth_key, offered, salt


def login(api: Api, base: Path, user: str, password: str, device: str | None = None) -> Session:
    """Derive keys with parameters no weaker than pinned, authenticate, unwrap the master key."""
    user = normalize_user(user)
    pin = get_pin(base, api.base_url, user)
    kek, auth_key, offered, salt = _password_keys(api, base, user, password)
    resp = api.login(user, auth_key, device or default_device())
    user_id = str(resp["user_id"])
    if pin and pin.get("user_id") and pin["user_id"] != user_id:
        raise IntegrityError("integrity check failed: the server answered with another account's id")
    master = format.unwrap_master(kek, b64d(resp["wrapped_master"]), user_id)
    ident_d = resp.get("identity") or {}
    ident = format.unwrap_identity(master, b64d(ident_d.get("wrapped_private")), user_id)
    if not crypto.ct_equal(ident.sign_pub, b64d(ident_d.get("sign_pub"))) or not crypto.ct_equal(
            ident.box_pub, b64d(ident_d.get("box_pub"))):
        raise IntegrityError("integrity check failed: the server altered this account's public keys")
    crypto.verify_signature(ident.sign_pub, crypto.box_key_statement(user_id, ident.box_pub),
                            b64d(ident_d.get("box_sig")))
    root_id = str(resp["root_node_id"])
    if pin and pin.get("root") and pin["root"] != root_id:
        raise IntegrityError("integrity check failed: the server names another root folder than this client pinned")
    verify_root(Api(api.base_url, str(resp["token"])), master, user_id, root_id)
    new_pin = {"kdf": offered.to_json(), "user_id": user_id, "salt": salt.hex(), "root": root_id}
    if pin != new_pin:
        set_pin(base, api.base_url, user, new_pin)
    return Session(server=api.base_url, user=user, user_id=user_id, token=str(resp["token"]),
                   expires=float(resp.get("expires", 0)), root_node_id=root_id,
                   master_hex=master.hex(), sign_pub_hex=ident.sign_pub.hex(),
                   identity_hex=b64d(ident_d.get("wrapped_private")).hex())


# -- sessions on this machine (what the command line and `megadrive up` call) -------------------------


def sign_up(server: str, user: str, password: str, base: Path) -> Session:
    """Create an account on ``server`` and keep its session under ``base`` (MEGADRIVE_HOME)."""
    return _session(server, base, lambda api: signup(api, base, user, password))


def log_in(server: str, user: str, password: str, base: Path, device: str | None = None) -> Session:
    return _session(server, base, lambda api: login(api, base, user, password, device))


def default_device() -> str:
    """The name a session is listed under (`megadrive sessions`) unless the user gives one."""
    name = "".join(ch for ch in socket.gethostname() if ch.isprintable())[:48]
    return f"megadrive on {name or 'this machine'}"


# -- password, recovery key, sessions -------------------------------------------------------------------


def change_password(base: Path, old: str, new: str) -> Session:
    """A new password: keys derived again (same salt and parameters), the master key wrapped under the new
    one, the new auth key and wrap replacing the old on the server in one transaction; every other session
    ends. The server sees neither password; a crash leaves the old one working or the new one, not neither."""
    if len(new) < 8:
        raise ConfigError("password must be at least 8 characters")
    s = load_session(base)
    api = Api(s.server, s.token)
    try:
        _, old_auth, _, _ = _password_keys(api, base, s.user, old)
        kek, new_auth, _, _ = _password_keys(api, base, s.user, new)
        with _wrong_password():
            api.change_password(old_auth, new_auth, format.wrap_master(kek, s.master, s.user_id))
    finally:
        api.close()
    return s


@contextlib.contextmanager
def _wrong_password() -> Iterator[None]:
    """The server refuses a change (403) when the current password it was proved with is wrong."""
    try:
        yield
    except PermissionDenied:
        raise AuthError("wrong password") from None


def make_recovery_key(base: Path, password: str, show: Callable[[str], None]) -> None:
    """A new recovery key, shown once (``show``) to be written down *before* the server gets it: a key the
    server took but nobody saw would replace the old one for nothing. The server keeps the master key
    wrapped under it and the salted hash of its authentication half; an earlier recovery key stops working."""
    s = load_session(base)
    key = crypto.random_key()
    api = Api(s.server, s.token)
    try:
        _, auth_key, _, _ = _password_keys(api, base, s.user, password)
        show(format.encode_recovery_key(key))
        try:
            with _wrong_password():
                api.set_recovery(auth_key, format.recovery_keys(key)[1],
                                 format.wrap_master_recovery(key, s.master, s.user_id))
        except MegaDriveError as e:
            raise type(e)(f"{e.message}: the key above was NOT set (a recovery key made before still works)") \
                from None
    finally:
        api.close()


def recover(server: str, user: str, key_text: str, new_password: str, base: Path,
            device: str | None = None) -> Session:
    """A forgotten password: the recovery key opens the master key, which is wrapped under a new password;
    every session ends; then a normal login (which checks everything a login checks)."""
    user = normalize_user(user)
    if len(new_password) < 8:
        raise ConfigError("password must be at least 8 characters")
    key = format.decode_recovery_key(key_text)
    if key is None:
        raise ConfigError("that is not a recovery key (14 groups of 4 letters and digits; check for a typo)")
    recovery_auth = format.recovery_keys(key)[1]
    api = Api(server)
    try:
        d = api.recover(user, recovery_auth)
        user_id = str(d.get("user_id"))
        pin = get_pin(base, api.base_url, user)
        if pin and pin.get("user_id") and pin["user_id"] != user_id:
            raise IntegrityError("integrity check failed: the server answered with another account's id")
        master = format.unwrap_master_recovery(key, b64d(d.get("recovery_wrap")), user_id)
        kek, auth_key, _, _ = _password_keys(api, base, user, new_password)
        api.recover(user, recovery_auth, (auth_key, format.wrap_master(kek, master, user_id)))
        s = login(api, base, user, new_password, device)
    finally:
        api.close()
    save_session(base, s)
    return s


def sessions(base: Path) -> list[dict[str, object]]:
    s = load_session(base)
    api = Api(s.server, s.token)
    try:
        return api.sessions()
    finally:
        api.close()


def revoke_session(base: Path, session_id: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{16}", session_id):
        raise ConfigError(f"not a session id: {session_id!r} (16 hex digits, as `megadrive sessions` lists them)")
    s = load_session(base)
    api = Api(s.server, s.token)
    try:
        api.revoke_session(session_id)
    finally:
        api.close()


def _session(server: str, base: Path, start: Callable[[Api], Session]) -> Session:
    api = Api(server)
    try:
        s = start(api)
    finally:
        api.close()
    save_session(base, s)
    return s


def log_out(base: Path) -> Session | None:
    """Revoke the session on the server (if it answers) and forget its keys here; None if logged out."""
    try:
        s = load_session(base)
    except MegaDriveError:
        return None
    api = Api(s.server, s.token)
    try:
        api.logout()
    except MegaDriveError:
        pass  # the keys go from this machine whatever the server says
    finally:
        api.close()
    clear_session(base)
    return s


def local_session(server: str, user: str, base: Path, place: Path, password: Callable[[bool], str],
                  first_run: Callable[[str], None] = lambda name: None) -> Session:
    """The session of ``user`` on a server this machine runs (`megadrive up`) from the data folder
    ``place``: the saved one while it is valid; else a login, or a signup the first time this folder is
    served (its port may change between runs). ``password(confirm)`` asks for the password,
    ``first_run(name)`` tells the user."""
    name = normalize_user(user)
    try:
        s = load_session(base)
        if s.server == server.rstrip("/") and s.user == name:
            api = Api(s.server, s.token)
            try:
                api.account()
                return s
            finally:
                api.close()
    except MegaDriveError:
        pass
    if get_pin(base, server.rstrip("/"), name) is None and not _known_locally(base, place, name):
        first_run(name)
        s = sign_up(server, name, password(True), base)
        _note_locally(base, place, name)
        return s
    return log_in(server, name, password(False), base)


def _known_locally(base: Path, place: Path, name: str) -> bool:
    p = base / "up.json"
    try:
        return bool(json.loads(p.read_text()).get(str(place.resolve())) == name) if p.exists() else False
    except ValueError:
        return False


def _note_locally(base: Path, place: Path, name: str) -> None:
    p = base / "up.json"
    try:
        known = json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        known = {}
    known[str(place.resolve())] = name
    write_private(p, json.dumps(known).encode())
