"""Takedown after an abuse notice: an operator command, not an HTTP endpoint.

``takedown(config, target, reason, operator)`` removes one file (or a
folder with everything in it) named by a node id or by one of its links:

* the node and its subtree are marked ``removed`` (each bumps the owner's
  change sequence, so the owner and any share recipient see ``removed``);
* their versions are dropped and every chunk those versions listed is
  deleted from the chunk store, with every account's ownership row of it
  (quota given back); the chunk ids are remembered and refused (``451``) if
  uploaded again;
* its links, manifests and versions answer ``451``;
* one JSON line is appended to ``DIR/audit.log`` (``O_APPEND``, fsynced).

It works next to running servers: it holds every account it changes (see
server/store/contract/unit.py), and the blobs are queued for deletion in its
unit of work and deleted after it commits, as the garbage collector does.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
from pathlib import Path
from typing import Any

from . import validate
from .config import ServerConfig
from .errors import ServerError
from .gc import blob_deleter

AUDIT_LOG = "audit.log"


class TakedownError(Exception):
    """The target cannot be taken down (unknown id, an account root, no data directory)."""


def default_operator() -> str:
    """The OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
        return f"uid:{os.getuid()}"


def resolve_target(target: str) -> tuple[str | None, str | None]:
    """(node_id, link_id) named by ``target``: a 32-hex node id, a link id or a link URL.

    A pasted URL is cut at its first ``#`` first, so its key is never parsed
    or written anywhere.
    """
    text = validate.scrub_fragments(validate.strip_fragment(target)).strip()
    if validate.is_hex32(text):
        return text, None
    link_id = validate.link_reference(text)
    if link_id is None:
        raise TakedownError("expected a node id (32 hex characters), a link id or a link URL")
    return None, link_id


def append_audit(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line durably (the file is only ever appended to)."""
    line = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def takedown(
    config: ServerConfig,
    target: str,
    reason: str = "",
    operator: str | None = None,
    audit_log: Path | None = None,
) -> dict[str, Any]:
    """Take down the node ``target`` names and return the audit record written
    (to ``audit_log``, by default ``audit.log`` in the data folder).

    Raises :class:`TakedownError` for a target that cannot be taken down.
    """
    from .app import open_stores
    from .fsck import require_data

    if audit_log is None:
        if config.data_dir is None:
            raise TakedownError("name the audit log (--audit-log FILE) or a data folder")
        audit_log = config.data_dir / AUDIT_LOG
    try:
        require_data(config)
    except FileNotFoundError as e:
        raise TakedownError(str(e)) from None
    node_id, link_id = resolve_target(target)
    reason = validate.scrub_fragments(reason)  # an operator's pasted link keeps no key in the audit log
    meta, chunks = open_stores(config)
    try:
        if node_id is None:
            assert link_id is not None
            link = meta.get_link(link_id)
            if link is None:
                raise TakedownError("no such link")
            node_id = link.node_id
        now = datetime.datetime.now(datetime.UTC)
        try:
            result = meta.take_down(node_id, now.timestamp(), blob_deleter(chunks))
        except ServerError as exc:
            raise TakedownError(exc.message) from None
    finally:
        meta.close()
        chunks.close()
    record: dict[str, Any] = {
        "time": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "operator": operator or default_operator(),
        "action": "takedown",
        "node_id": result.node_id,
        "owner": result.owner,
        "nodes_removed": len(result.nodes),
        "same_content_nodes": [{"node_id": n, "owner": o} for n, o in result.same_content],
        "link_ids": result.link_ids,
        "chunks_deleted": result.chunks_deleted,
        "bytes_deleted": result.bytes_deleted,
        "reason": reason,
        "report_ids": result.report_ids,
    }
    append_audit(audit_log, record)
    return record
