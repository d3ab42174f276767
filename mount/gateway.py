"""The WebDAV gateway: wsgidav on cheroot, serving one logged-in Drive.

Without authentication it binds only to loopback; any other address needs a
gateway user and password (HTTP Digest).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

from megadrive.drive import Drive
from megadrive.errors import ConfigError

from .locks import PersistentLockStorage
from .props import DrivePropertyManager
from .webdav import DriveProvider

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 2.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(drive: Drive, *, auth: tuple[str, str] | None = None, verbose: int = 1) -> WsgiDAVApp:
    dc: dict[str, Any]
    users: dict[str, Any]
    if auth:
        dc = {"domain_controller": None, "accept_basic": False, "accept_digest": True, "default_to_digest": True}
        users = {"*": {auth[0]: {"password": auth[1]}}}
    else:
        dc = {"domain_controller": None, "accept_basic": True, "accept_digest": True, "default_to_digest": True}
        users = {"*": True}
    config = {
        "provider_mapping": {"/": DriveProvider(drive)},
        "http_authenticator": dc,
        "simple_dc": {"user_mapping": users},
        "verbose": verbose,
        "logging": {"enable_loggers": []},
        "property_manager": DrivePropertyManager(drive),
        "lock_storage": PersistentLockStorage(drive),
        "mutable_live_props": ["{DAV:}getlastmodified"],
        "dir_browser": {"enable": True, "response_trailer": "MegaDrive (decrypted on this machine)"},
        "hotfixes": {"re_encode_path_info": True, "emulate_win32_lastmod": True},
        "honor_mtime_header": True,
        "block_size": 256 * 1024,
    }
    return WsgiDAVApp(config)


@dataclass
class Gateway:
    server: wsgi.Server
    thread: threading.Thread
    url: str
    _stop: threading.Event

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()
        self.thread.join(timeout=10)


def start(drive: Drive, host: str = "127.0.0.1", port: int = 8080, *, auth: tuple[str, str] | None = None,
          poll: bool = True) -> Gateway:
    """Serve the drive in a background thread; port 0 picks a free port."""
    if not is_loopback(host) and not auth:
        raise ConfigError(f"refusing to serve the decrypted drive on {host} without a gateway password "
                          "(use --auth USER:PASSWORD, or bind 127.0.0.1)")
    server = wsgi.Server((host, port), build_app(drive, auth=auth), numthreads=16, timeout=60)
    server.error_log = _one_line_error_log  # type: ignore[method-assign]
    server.prepare()
    bound = server.bind_addr[1] if isinstance(server.bind_addr, tuple) else port
    thread = threading.Thread(target=server.serve, name="megadrive-webdav", daemon=True)
    thread.start()
    stop = threading.Event()
    if poll:
        threading.Thread(target=_poll, args=(drive, stop), name="megadrive-sync", daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    return Gateway(server, thread, f"http://{shown}:{bound}/", stop)


def _one_line_error_log(msg: str = "", level: int = 20, traceback: bool = False) -> None:
    """cheroot's error log without tracebacks: e.g. a body cut short by an integrity failure is one line."""
    log.log(level, "http: %s", msg.strip().splitlines()[-1] if msg.strip() else "error")


def _poll(drive: Drive, stop: threading.Event) -> None:
    """Keep the index current so other clients' changes show up within seconds."""
    while not stop.wait(REFRESH_INTERVAL):
        try:
            drive.refresh()
        except Exception as e:  # noqa: BLE001 - the poller must survive a flaky network
            log.warning("sync failed: %s", e)
