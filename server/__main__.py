"""``python -m megadrive.server``: run the storage server (or one GC pass).

``python -m megadrive.server takedown LINK-or-NODE-ID --data DIR [--reason
TEXT] [--operator NAME]`` takes content down (server/takedown.py) and prints
the audit record as JSON. ``python -m megadrive.server fsck --data DIR
[--repair] [--grace SECONDS] [--json]`` checks the chunk store against the
metadata (server/fsck.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig

READY_LINE = "MegaDrive server listening on {url}"


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if number < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return number

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m megadrive.server", description="MegaDrive storage server")
    p.add_argument("--data", required=True, type=Path, help="data directory (created if missing)")
    p.add_argument("--listen", type=_listen, default=(DEFAULT_HOST, DEFAULT_PORT), help="HOST:PORT (port 0: any)")
    p.add_argument("--quota", type=_non_negative(int), help="per-account quota in bytes")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate (with --tls-key: serve HTTPS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--versions-kept", type=_non_negative(int), help="versions retained per file")
    p.add_argument("--token-ttl", type=_non_negative(int), help="token lifetime in seconds")
    p.add_argument("--gc-grace", type=_non_negative(float), help="seconds before an unreferenced chunk is deleted")
    p.add_argument("--gc-interval", type=_non_negative(float), help="seconds between GC passes (0: none)")
    p.add_argument("--login-max-failures", type=_non_negative(int), help="failed logins allowed per window")
    p.add_argument("--login-window", type=_non_negative(float), help="failed-login window in seconds")
    p.add_argument("--max-nodes", type=_non_negative(int), help="nodes per account, trash included (default 1000000)")
    p.add_argument(
        "--signup-limit", type=_non_negative(int), help="signups per source address per hour (default 10; 0: no limit)"
    )
    p.add_argument("--gc", action="store_true", help="run one garbage collection pass, print JSON and exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        p.error("--tls-cert and --tls-key go together")
    return args


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    options = {
        "quota": args.quota,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "versions_kept": args.versions_kept,
        "token_ttl": args.token_ttl,
        "gc_grace": args.gc_grace,
        "gc_interval": args.gc_interval,
        "login_max_failures": args.login_max_failures,
        "login_window": args.login_window,
        "max_nodes": args.max_nodes,
        "signup_rate": args.signup_limit,
    }
    host, port = args.listen
    return ServerConfig(data_dir=args.data, host=host, port=port, **{k: v for k, v in options.items() if v is not None})


def takedown_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m megadrive.server takedown", description="Take content down after an abuse notice"
    )
    p.add_argument("target", help="node id, link id or link URL (a #fragment is ignored)")
    p.add_argument("--data", required=True, type=Path, help="data directory of the server")
    p.add_argument("--reason", default="", help="why (goes to the audit log)")
    p.add_argument("--operator", default=None, help="who (default: the OS user)")
    args = p.parse_args(argv)
    from .takedown import TakedownError, takedown

    try:
        record = takedown(ServerConfig(data_dir=args.data), args.target, args.reason, args.operator)
    except TakedownError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(record, sort_keys=True), flush=True)
    return 0


def fsck_main(argv: list[str]) -> int:
    """Exit 0 when nothing is wrong at the end, 1 when a problem remains, 2 without data."""
    from .fsck import DEFAULT_GRACE, run, text_report

    p = argparse.ArgumentParser(
        prog="python -m megadrive.server fsck", description="Check the chunk store against the metadata (and repair)"
    )
    p.add_argument("--data", required=True, type=Path, help="data directory of the server")
    p.add_argument("--repair", action="store_true", help="delete old orphans, drop rows without blob, fix used")
    p.add_argument(
        "--grace",
        type=_non_negative(float),
        default=DEFAULT_GRACE,
        help="seconds an orphan blob is spared (an upload in flight); default 3600",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    try:
        result = run(ServerConfig(data_dir=args.data), do_repair=args.repair, grace=args.grace)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), sort_keys=True), flush=True)
    else:
        print("\n".join(text_report(result)), flush=True)
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["takedown"]:
        return takedown_main(argv[1:])
    if argv[:1] == ["fsck"]:
        return fsck_main(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from . import serve

    if args.gc:
        print(json.dumps(serve.run_gc(config)), flush=True)
        return 0

    def ready(url: str) -> None:
        print(READY_LINE.format(url=url), flush=True)

    try:
        serve.serve_forever(config, on_ready=ready)
    except OSError as exc:  # e.g. address in use, unreadable TLS key, data dir not writable
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
