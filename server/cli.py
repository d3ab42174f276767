"""The server's commands: ``megadrive server`` and ``python -m megadrive.server`` are this one click group.

``server`` runs the storage server; ``server gc``, ``server fsck`` and
``server takedown`` are the operator's tools. The group lives in the server
package (it imports nothing of the client) and the client's command line
registers it (megadrive/main.py). Errors are one line on stderr: exit 2 for
bad arguments, 1 when the server cannot start or a check fails.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig

READY_LINE = "MegaDrive server listening on {url}"
_UNITS = (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40))


def parse_size(text: str) -> int:
    """'50G', '512M', '1.5T', '1000' (bytes) -> bytes (binary units); 0 or more."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in _UNITS:
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = int(float(t) * mult)
    except ValueError:
        raise click.BadParameter(f"not a size: {text!r} (use e.g. 50G, 512M, or bytes)") from None
    if value < 0:
        raise click.BadParameter("a size is 0 or more")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT' (port 0: any free port); '[::1]:8420' for IPv6."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or DEFAULT_HOST, int(port)


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else parse_size(value)


def _listen(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    return parse_listen(value)


def startup_errors() -> tuple[type[BaseException], ...]:
    """What keeps a server from starting that the operator must fix: one line, no traceback."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from sqlalchemy.exc import SQLAlchemyError

        errors.append(SQLAlchemyError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] if "(Background on this error" not in text else text.split("(Background on this error")[0]


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, named by the command that runs (``megadrive: error: ...``), then exit."""
    ctx = click.get_current_context(silent=True)
    prog = ctx.find_root().info_name if ctx is not None else None
    click.echo(f"{prog or 'megadrive'}: error: {message}", err=True)
    sys.exit(code)


_COUNT = click.IntRange(min=0)
_SECONDS = click.FloatRange(min=0)


def _meta_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .store.urls import check_meta_url

    try:
        return None if value is None else check_meta_url(value)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--meta: ")) from None


def _chunks_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .store.urls import check_chunks_url

    try:
        return None if value is None else check_chunks_url(value)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--chunks: ")) from None


def store_options(func: Any) -> Any:
    """``--data``, ``--meta``, ``--chunks``: where the stores live (the server and its tools; `megadrive up`)."""
    func = click.option("--chunks", "chunks_url", default=None, callback=_chunks_url, metavar="URL",
                        help="Chunk store: file:///PATH or s3://BUCKET[/PREFIX]?endpoint=URL&region=R "
                             "(credentials from the environment) [default: DATA/chunks].")(func)
    func = click.option("--meta", "meta_url", default=None, callback=_meta_url, metavar="URL",
                        help="Metadata store: sqlite:///PATH or postgresql://USER@HOST[:PORT]/DB "
                             "(password from PGPASSWORD or ~/.pgpass) [default: DATA/meta.sqlite3].")(func)
    return click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Data folder (created if missing): the default place of both stores.")(func)


def stores_config(data: Path | None, meta_url: str | None, chunks_url: str | None, **options: Any) -> ServerConfig:
    """A configuration from the store options (and any other ServerConfig fields)."""
    if data is None and (meta_url is None or chunks_url is None):
        raise click.UsageError("--data DIR is required (or both --meta URL and --chunks URL)")
    try:
        return ServerConfig(data_dir=data, meta_url=meta_url, chunks_url=chunks_url, **options)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


@click.group("server", invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@store_options
@click.option("--listen", default=f"{DEFAULT_HOST}:{DEFAULT_PORT}", show_default=True, callback=_listen,
              help="HOST:PORT to bind (port 0: any free port).")
@click.option("--quota", default=None, callback=_size, help="Per-account quota: bytes, or e.g. 50G [default: 50G].")
@click.option("--versions-kept", type=click.IntRange(min=1), default=None, help="File versions kept [default: 10].")
@click.option("--max-nodes", type=click.IntRange(min=1), default=None,
              help="Nodes per account, trash included [default: 1000000].")
@click.option("--signup-limit", type=_COUNT, default=None,
              help="Signups per source address per hour; 0: no limit [default: 10].")
@click.option("--token-ttl", type=_COUNT, default=None, help="Token lifetime in seconds.")
@click.option("--login-max-failures", type=_COUNT, default=None, help="Failed logins allowed per window.")
@click.option("--login-window", type=_SECONDS, default=None, help="Failed-login window in seconds.")
@click.option("--gc-grace", type=_SECONDS, default=None, help="Seconds before an unreferenced chunk is deleted.")
@click.option("--gc-interval", type=_SECONDS, default=None, help="Seconds between GC passes (0: none).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM certificate (with --tls-key: serve HTTPS).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PEM private key.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
def server(ctx: click.Context, data: Path | None, meta_url: str | None, chunks_url: str | None, log_level: str,
           **options: Any) -> None:
    """Run the storage server: it stores only ciphertext, and never sees a key, a name or a password.

    Its stores: --data DIR (SQLite and a folder), or --meta and --chunks URLs (PostgreSQL and S3, for
    several server processes serving the same accounts; see docs/DEPLOY.md)."""
    if ctx.invoked_subcommand is not None:
        return
    stores_config(data, meta_url, chunks_url)  # (the usage error first)
    config = build_config(data, meta_url=meta_url, chunks_url=chunks_url, **options)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from . import serve

    try:
        serve.serve_forever(config, on_ready=lambda url: click.echo(READY_LINE.format(url=url)))
    except startup_errors() as e:  # address in use, unreadable TLS key, data folder not writable, store unreachable
        click.echo(f"error: {one_line(e)}", err=True)
        sys.exit(1)


def build_config(data: Path | None, *, meta_url: str | None = None, chunks_url: str | None = None,
                 listen: tuple[str, int] = (DEFAULT_HOST, DEFAULT_PORT), quota: int | None = None,
                 versions_kept: int | None = None, max_nodes: int | None = None, signup_limit: int | None = None,
                 token_ttl: int | None = None, login_max_failures: int | None = None,
                 login_window: float | None = None, gc_grace: float | None = None, gc_interval: float | None = None,
                 tls_cert: Path | None = None, tls_key: Path | None = None) -> ServerConfig:
    """The server's configuration from the command's options (unset ones keep ServerConfig's defaults)."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    given: dict[str, Any] = {
        "quota": quota, "versions_kept": versions_kept, "max_nodes": max_nodes, "signup_rate": signup_limit,
        "token_ttl": token_ttl, "login_max_failures": login_max_failures, "login_window": login_window,
        "gc_grace": gc_grace, "gc_interval": gc_interval, "tls_cert": tls_cert, "tls_key": tls_key}
    return stores_config(data, meta_url, chunks_url, host=listen[0], port=listen[1],
                         **{k: v for k, v in given.items() if v is not None})


@server.command("gc")
@store_options
@click.option("--grace", default=3600.0, show_default=True, type=_SECONDS,
              help="Keep unreferenced chunks younger than this (s).")
def gc(data: Path | None, meta_url: str | None, chunks_url: str | None, grace: float) -> None:
    """Delete chunks no kept file version references; prints what it did as JSON."""
    from .serve import run_gc

    click.echo(json.dumps(run_gc(stores_config(data, meta_url, chunks_url), grace=grace), sort_keys=True))


@server.command("fsck")
@store_options
@click.option("--repair", is_flag=True, help="Delete old orphan blobs, drop rows without a blob, recompute used.")
@click.option("--grace", default=3600.0, show_default=True, type=_SECONDS,
              help="Spare orphan blobs younger than this (s): an upload in flight.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def fsck(data: Path | None, meta_url: str | None, chunks_url: str | None, repair: bool, grace: float,
         as_json: bool) -> None:
    """Check the chunk store against the metadata; exit 1 if something is wrong, 2 without data."""
    from .fsck import run, text_report

    config = stores_config(data, meta_url, chunks_url)
    try:
        result = run(config, do_repair=repair, grace=grace)
    except FileNotFoundError as e:
        fail(str(e), 2)
    click.echo(json.dumps(result.to_json(), sort_keys=True) if as_json else "\n".join(text_report(result)))
    sys.exit(result.exit_code)


@server.command("takedown")
@click.argument("target")
@store_options
@click.option("--reason", default="", help="Why (goes to the audit log).")
@click.option("--operator", default=None, help="Who orders it (default: the OS user).")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append the record here [default: DATA/audit.log].")
def takedown(target: str, data: Path | None, meta_url: str | None, chunks_url: str | None, reason: str,
             operator: str | None, audit_log: Path | None) -> None:
    """Remove reported content: chunks deleted, node marked, links answer 451, an audit log entry.

    TARGET is a node id, a link id or a link URL (a #fragment is ignored)."""
    from .takedown import TakedownError
    from .takedown import takedown as take_down

    try:
        record = take_down(stores_config(data, meta_url, chunks_url), target, reason=reason, operator=operator,
                           audit_log=audit_log)
    except TakedownError as e:
        fail(f"takedown refused: {e}")
    click.echo(json.dumps(record, sort_keys=True))
