"""Accounts: signup, prelogin, login, logout, account info, public keys, health."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import falcon

from . import auth, validate
from .errors import Forbidden, NotFound, Unauthorized
from .store.records import Account, Identity, NewAccount, session_id
from .validate import (
    AUTH_KEY_BYTES,
    MAX_META_BYTES,
    MAX_WRAPPED_BYTES,
    PUBLIC_KEY_BYTES,
    SALT_BYTES,
    SIGNATURE_BYTES,
    b64decode,
    b64encode,
    get_field,
    get_object,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerContext


def _identity(obj: dict[str, Any]) -> Identity:
    return Identity(
        sign_pub=b64decode(get_field(obj, "sign_pub"), "identity.sign_pub", exact=PUBLIC_KEY_BYTES),
        box_pub=b64decode(get_field(obj, "box_pub"), "identity.box_pub", exact=PUBLIC_KEY_BYTES),
        box_sig=b64decode(get_field(obj, "box_sig"), "identity.box_sig", exact=SIGNATURE_BYTES),
        wrapped_private=b64decode(
            get_field(obj, "wrapped_private"), "identity.wrapped_private", max_len=MAX_WRAPPED_BYTES
        ),
    )


def _identity_json(identity: Identity) -> dict[str, str]:
    return {
        "sign_pub": b64encode(identity.sign_pub),
        "box_pub": b64encode(identity.box_pub),
        "box_sig": b64encode(identity.box_sig),
        "wrapped_private": b64encode(identity.wrapped_private),
    }


class Signup:
    """Create an account. Each one gets a quota and a node allowance, so accounts
    themselves are rationed: ``config.signup_rate`` per source address per hour.

    Every well-formed attempt counts, one refused because the name is taken as
    well (signup answers ``409`` for a taken name, so it must not become a fast
    oracle of which names exist). It is counted before the slow hash runs and
    before the account is written, under the limiter's lock, so parallel
    requests cannot exceed the limit. Malformed bodies (``400``) do not count.
    """

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        name = validate.user_name(get_field(body, "user"))
        user_id = validate.user_id(get_field(body, "user_id"))
        salt = b64decode(get_field(body, "salt"), "salt", exact=SALT_BYTES)
        kdf = validate.kdf_params(get_field(body, "kdf"))
        auth_key = b64decode(get_field(body, "auth_key"), "auth_key", exact=AUTH_KEY_BYTES)
        wrapped_master = b64decode(get_field(body, "wrapped_master"), "wrapped_master", max_len=MAX_WRAPPED_BYTES)
        identity = _identity(get_object(body, "identity"))
        root = get_object(body, "root")
        root_id = validate.node_id(get_field(root, "node_id"), "root.node_id")
        root_meta = b64decode(get_field(root, "meta"), "root.meta", max_len=MAX_META_BYTES)
        if self.ctx.signup_limiter is not None:
            self.ctx.signup_limiter.begin([auth.source_key(req.remote_addr)])
        auth_salt, auth_hash = auth.new_auth_hash(auth_key)
        self.ctx.meta.create_account(
            NewAccount(
                name=name,
                user_id=user_id,
                salt=salt,
                kdf=kdf,
                auth_salt=auth_salt,
                auth_hash=auth_hash,
                wrapped_master=wrapped_master,
                identity=identity,
                root_node_id=root_id,
                root_meta=root_meta,
            ),
            time.time(),
        )
        resp.status = falcon.HTTP_201
        resp.media = {"user_id": user_id, "root_node_id": root_id}


class Prelogin:
    """Salt and KDF parameters; a stable fake for unknown names (no account oracle)."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        name = validate.user_name(get_field(body, "user"))
        account = self.ctx.meta.account_by_name(name)
        if account is None:
            salt, kdf = auth.fake_salt(self.ctx.secret, name), dict(auth.DEFAULT_KDF)
        else:
            salt, kdf = account.salt, account.kdf
        # Same key order for real and fake answers, so the bytes do not tell them apart.
        resp.media = {"salt": b64encode(salt), "kdf": {key: kdf[key] for key in sorted(kdf)}}


class Login:
    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        name = validate.user_name(get_field(body, "user"))
        auth_key = b64decode(get_field(body, "auth_key"), "auth_key", exact=AUTH_KEY_BYTES)
        device = validate.device_name(body.get("device"))
        account = self.ctx.meta.account_by_name(name)
        _counted_check(self.ctx, req, name, auth_key, None if account is None else (account.auth_salt,
                                                                                     account.auth_hash),
                       Unauthorized("bad credentials"))
        assert account is not None  # (the check refuses an unknown name)
        token = auth.new_token()
        now = time.time()
        expires = now + self.ctx.config.token_ttl
        self.ctx.meta.add_token(auth.token_hash(token), account.user_id, now, expires, device)
        resp.media = {
            "token": token,
            "expires": int(expires),
            "user_id": account.user_id,
            "root_node_id": account.root_node_id,
            "wrapped_master": b64encode(account.wrapped_master),
            "identity": _identity_json(account.identity),
        }


class Logout:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ctx.meta.revoke_token(req.context.token_hash)
        resp.status = falcon.HTTP_204


def _own_account(ctx: ServerContext, req: falcon.Request) -> Account:
    account = ctx.meta.account_by_id(req.context.user_id)
    if account is None:  # deleted under a live token
        raise Unauthorized("account no longer exists")
    return account


class AccountInfo:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        account = _own_account(self.ctx, req)
        resp.media = {
            "user": account.name,
            "user_id": account.user_id,
            "root_node_id": account.root_node_id,
            "quota": self.ctx.config.quota,
            "used": account.used,
            "seq": account.seq,
            "recovery_key": account.recovery_hash is not None,
        }


class Sessions:
    """The account's logins: when made, last used, from which device (never a token)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        current = session_id(req.context.token_hash)
        resp.media = {"sessions": [
            {"id": s.session_id, "created": s.created, "last_used": s.last_used, "expires": s.expires,
             "device": s.device, "current": s.session_id == current}
            for s in self.ctx.meta.sessions(req.context.user_id, time.time())
        ]}


class SessionItem:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        if not self.ctx.meta.revoke_session(req.context.user_id, validate.session_id(sid)):
            raise NotFound("no such session")
        resp.status = falcon.HTTP_204


def _counted_check(ctx: ServerContext, req: falcon.Request, name: str, key: bytes,
                   stored: tuple[bytes, bytes] | None, refusal: Exception) -> None:
    """One attempt at a secret of the account ``name`` (its password's auth key, or its recovery key's),
    checked against ``stored`` (salt, hash; None: no such account or secret, refused after the same
    slow hash). Counted per user name and per address before the check, forgiven if it was right, so
    parallel guesses cannot pass the limit (see Login)."""
    keys = [f"user:{name}", auth.source_key(req.remote_addr)]
    stamp = ctx.limiter.begin(keys)
    if stored is None:
        auth.burn_auth_check(key)
        raise refusal
    if not auth.verify_auth_key(key, *stored):
        raise refusal
    ctx.limiter.forgive(keys, stamp)


def _check_password(ctx: ServerContext, req: falcon.Request, account: Account, auth_key: bytes) -> None:
    """The current password's auth key, counted as a login attempt (a stolen session alone cannot
    change the password or set a recovery key, nor guess the password quickly through these)."""
    _counted_check(ctx, req, account.name, auth_key, (account.auth_salt, account.auth_hash),
                   Forbidden("wrong password"))


class Password:
    """Change the password: the new auth key and the master key wrapped under the new password's key
    replace the old ones in one transaction; every other session ends."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        current = b64decode(get_field(body, "auth_key"), "auth_key", exact=AUTH_KEY_BYTES)
        new_key = b64decode(get_field(body, "new_auth_key"), "new_auth_key", exact=AUTH_KEY_BYTES)
        wrapped = b64decode(get_field(body, "wrapped_master"), "wrapped_master", max_len=MAX_WRAPPED_BYTES)
        account = _own_account(self.ctx, req)
        _check_password(self.ctx, req, account, current)
        auth_salt, auth_hash = auth.new_auth_hash(new_key)
        self.ctx.meta.change_password(account.user_id, auth_salt, auth_hash, wrapped, req.context.token_hash)
        resp.status = falcon.HTTP_204


class RecoveryKey:
    """Store the master key wrapped under a recovery key the client made (the server never sees the key,
    only the salted hash of its authentication half)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        current = b64decode(get_field(body, "auth_key"), "auth_key", exact=AUTH_KEY_BYTES)
        recovery_auth = b64decode(get_field(body, "recovery_auth"), "recovery_auth", exact=AUTH_KEY_BYTES)
        wrap = b64decode(get_field(body, "recovery_wrap"), "recovery_wrap", max_len=MAX_WRAPPED_BYTES)
        account = _own_account(self.ctx, req)
        _check_password(self.ctx, req, account, current)
        salt, digest = auth.new_auth_hash(recovery_auth)
        self.ctx.meta.set_recovery(account.user_id, wrap, salt, digest)
        resp.status = falcon.HTTP_204


class Recover:
    """A forgotten password: the recovery key's authentication half gets the wrapped master key back
    (without new keys), or sets a new password (with them; every session ends). Counted as logins."""

    public = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = validate.read_json(req)
        name = validate.user_name(get_field(body, "user"))
        recovery_auth = b64decode(get_field(body, "recovery_auth"), "recovery_auth", exact=AUTH_KEY_BYTES)
        new_key = body.get("new_auth_key")
        new = None if new_key is None else (
            b64decode(new_key, "new_auth_key", exact=AUTH_KEY_BYTES),
            b64decode(get_field(body, "wrapped_master"), "wrapped_master", max_len=MAX_WRAPPED_BYTES))
        account = self.ctx.meta.account_by_name(name)
        stored = None
        if account is not None and account.recovery_salt is not None and account.recovery_hash is not None:
            stored = (account.recovery_salt, account.recovery_hash)
        _counted_check(self.ctx, req, name, recovery_auth, stored, Unauthorized("bad credentials"))
        assert account is not None
        if new is None:
            assert account.recovery_wrap is not None
            resp.media = {"user_id": account.user_id, "recovery_wrap": b64encode(account.recovery_wrap)}
            return
        auth_salt, auth_hash = auth.new_auth_hash(new[0])
        self.ctx.meta.change_password(account.user_id, auth_salt, auth_hash, new[1], keep_token="")
        resp.status = falcon.HTTP_204


class UserKeys:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, user: str) -> None:
        name = validate.user_name(user)
        account = self.ctx.meta.account_by_name(name)
        if account is None:
            raise NotFound("user not found")
        ident = account.identity
        resp.media = {
            "user": account.name,
            "user_id": account.user_id,
            "sign_pub": b64encode(ident.sign_pub),
            "box_pub": b64encode(ident.box_pub),
            "box_sig": b64encode(ident.box_sig),
        }


class Health:
    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


def register(app: falcon.App, ctx: ServerContext) -> None:
    app.add_route("/v1/signup", Signup(ctx))
    app.add_route("/v1/prelogin", Prelogin(ctx))
    app.add_route("/v1/login", Login(ctx))
    app.add_route("/v1/logout", Logout(ctx))
    app.add_route("/v1/account", AccountInfo(ctx))
    app.add_route("/v1/account/password", Password(ctx))
    app.add_route("/v1/account/recovery", RecoveryKey(ctx))
    app.add_route("/v1/recover", Recover(ctx))
    app.add_route("/v1/sessions", Sessions(ctx))
    app.add_route("/v1/sessions/{sid}", SessionItem(ctx))
    app.add_route("/v1/users/{user}/keys", UserKeys(ctx))
    app.add_route("/v1/health", Health())
