"""The WebDAV gateway: wsgidav on cheroot, serving one logged-in Drive.

Every request must name the gateway in its Host header, come from no other
web origin, and carry the gateway's credentials (HTTP Basic or Digest), on
loopback too: see :mod:`.guard`. Unless the operator sets a user and
password, each run makes a fresh random one. Off loopback the gateway
refuses to start without TLS and an operator-set password.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cheroot import wsgi
from wsgidav.http_authenticator import HTTPAuthenticator
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from megadrive.drive import Drive, write_private
from megadrive.errors import ConfigError, log_text

from .connection import BoundedServer, DeferredTLSAdapter
from .guard import Credentials, FileContentHeaders, Guard, HostPolicy
from .listing import FolderPage
from .locks import PersistentLockStorage
from .props import DrivePropertyManager
from .webdav import DriveProvider, ErrorPages

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 2.0
STATE_FILE = "gateway.json"
# Worker threads: each serves one connection at a time, and a slow client holds one only as long as
# mount.connection allows (10 s for headers, 20 s plus 1 s per 500 bytes for a body).
WORKERS = 64
TIMEOUT = 60  # seconds: the longest wait for one read or write, and how long an idle connection is kept


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, auth: tuple[str, str] | None, tls: tuple[Path, Path] | None) -> None:
    """Off loopback the decrypted drive needs TLS and an operator-set password; refuse early otherwise."""
    if is_loopback(host) or (auth and tls):
        return
    missing = " and ".join(w for w, have in (("TLS (--tls-cert/--tls-key)", tls),
                                              ("a password (--auth-user with --auth-password-file or "
                                               "MEGADRIVE_GATEWAY_PASSWORD)", auth)) if not have)
    raise ConfigError(f"refusing to serve the decrypted drive on {host} without {missing}; or bind 127.0.0.1")


def build_app(drive: Drive, *, verbose: int = 1) -> WsgiDAVApp:
    """wsgidav over the Drive, anonymous inside: the Guard in front of it authenticates every request."""
    config = {
        "provider_mapping": {"/": DriveProvider(drive)},
        "middleware_stack": [ErrorPages, HTTPAuthenticator, FolderPage, FileContentHeaders, RequestResolver],
        "http_authenticator": {"domain_controller": None, "accept_basic": False, "accept_digest": False,
                               "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": True}},
        "verbose": verbose,
        "logging": {"enable_loggers": []},
        "property_manager": DrivePropertyManager(drive),
        "lock_storage": PersistentLockStorage(drive),
        "mutable_live_props": ["{DAV:}getlastmodified"],
        "dir_browser": {"enable": False},  # (mount/listing.py serves folders to browsers instead)
        "hotfixes": {"re_encode_path_info": True, "emulate_win32_lastmod": True},
        "honor_mtime_header": True,
        "block_size": 256 * 1024,
    }
    return WsgiDAVApp(config)


@dataclass
class Gateway:
    """A running gateway: its ``url``, the ``credentials`` it accepts, and ``stop()``."""

    server: wsgi.Server
    thread: threading.Thread
    url: str
    credentials: Credentials
    _stop: threading.Event
    state_file: Path | None = None
    _state: bytes = field(default=b"", repr=False)
    drive: Drive | None = field(default=None, repr=False)

    @property
    def user(self) -> str:
        return self.credentials.user

    @property
    def password(self) -> str:
        return self.credentials.password

    @property
    def auth(self) -> httpx.BasicAuth:
        """For ``httpx.Client(auth=gw.auth)``."""
        return httpx.BasicAuth(self.credentials.user, self.credentials.password)

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client logged in to this gateway (pass ``verify=`` for a self-signed TLS certificate)."""
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=kw.pop("timeout", 60), **kw)

    def stop(self) -> None:
        """Stop serving, then upload what PUTs saved here (what cannot be, waits for the next start)."""
        self._stop.set()
        self.server.stop()
        self.thread.join(timeout=10)
        if self.drive is not None:
            self.drive.uploader.stop()
        if self.state_file is not None:
            try:
                if self.state_file.read_bytes() == self._state:  # not a newer gateway's
                    self.state_file.unlink()
            except OSError:
                pass


def start(drive: Drive, host: str = "127.0.0.1", port: int = 8080, *, auth: tuple[str, str] | None = None,
          tls: tuple[Path, Path] | None = None, host_names: Sequence[str] = (), state_file: Path | None = None,
          poll: bool = True) -> Gateway:
    """Serve the drive in a background thread; port 0 picks a free port.

    ``auth`` is the operator's (user, password); without it a fresh random
    password for user ``megadrive`` is made. ``tls`` is (certificate, key)
    PEM files. ``host_names`` are extra names clients may use in the Host
    header. ``state_file`` (MEGADRIVE_HOME/gateway.json) gets the URL and the
    credentials, mode 0600, and is removed by ``stop()``.
    """
    check_exposure(host, auth=auth, tls=tls)
    credentials = Credentials(*auth) if auth else Credentials.fresh()
    scheme = "https" if tls else "http"
    guard = Guard(build_app(drive), credentials)
    server = BoundedServer((host, port), guard, numthreads=WORKERS, timeout=TIMEOUT, request_queue_size=128)
    server.error_log = _one_line_error_log  # type: ignore[method-assign]
    if tls:
        try:
            server.ssl_adapter = DeferredTLSAdapter(str(tls[0]), str(tls[1]))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot load the TLS certificate and key: {e}") from None
    server.prepare()
    bound = server.bind_addr[1] if isinstance(server.bind_addr, tuple) else port
    try:
        guard.listen_on(HostPolicy(host, bound, scheme, host_names))
    except ValueError as e:
        server.stop()
        raise ConfigError(f"--host-name: {e}") from None
    thread = threading.Thread(target=server.serve, name="megadrive-webdav", daemon=True)
    thread.start()
    stop = threading.Event()
    if poll:
        threading.Thread(target=_poll, args=(drive, stop), name="megadrive-sync", daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    drive.uploader.start()  # write-back: a PUT returns once its version is journaled here
    gw = Gateway(server, thread, f"{scheme}://{shown}:{bound}/", credentials, stop, drive=drive)
    if state_file is not None:
        doc: dict[str, Any] = {"url": gw.url, "user": credentials.user}
        if credentials.generated:  # the operator's own password is not copied anywhere
            doc["password"] = credentials.password
        gw._state = json.dumps(doc).encode()
        write_private(state_file, gw._state)
        gw.state_file = state_file
    return gw


def _one_line_error_log(msg: str = "", level: int = 20, traceback: bool = False) -> None:
    """cheroot's error log without tracebacks: e.g. a body cut short by an integrity failure is one line."""
    log.log(level, "http: %s", msg.strip().splitlines()[-1] if msg.strip() else "error")


def _poll(drive: Drive, stop: threading.Event) -> None:
    """Keep the index current so other clients' changes show up within seconds."""
    while not stop.wait(REFRESH_INTERVAL):
        try:
            drive.refresh()
        except Exception as e:  # noqa: BLE001 - the poller must survive a flaky network
            log.warning("sync failed: %s", log_text(e))
