"""Hostile: content keys shared between nodes let a removed account read what it should not (finding 5).

Before the fix a copy kept the original's content key and file id, unshare re-keyed only the shared
subtree and unlink only the linked node: copy a private file into a shared folder (or link a copy),
revoke, and the removed account still decrypted later versions of the private original, with the
server's help (it hands over the ciphertext; the test plays that server by calling the API as the owner).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, new_home

from megadrive import format
from megadrive.drive import Drive
from megadrive.errors import IntegrityError


def _cannot_open_current(owner: Drive, path: str, held: set[bytes]) -> None:
    """No key in ``held`` opens the file's current manifest or any of its chunks."""
    loc = owner.resolve(path)
    meta = loc.verified()
    _, mblob = owner.api.get_manifest(loc.row.node_id)
    m = owner.manifest(path)
    assert m is not None
    blobs = [owner.api.get_chunk(c) for c in m.chunk_ids()]
    for k in held:
        with pytest.raises(IntegrityError):
            format.open_manifest(k, owner.owner, loc.row.node_id, meta.version, meta.file_id, mblob)
        for i, (cid, blob) in enumerate(zip(m.chunks, blobs, strict=True)):
            with pytest.raises(IntegrityError):
                format.open_chunk(format.chunk_key(k), meta.file_id, i, i == len(blobs) - 1, cid, blob, len(blob) - 40)


@pytest.fixture
def trio(server: Server, tmp_path: Path) -> tuple[Drive, Drive]:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    b = make_drive(server.url, new_home(tmp_path), "bob")
    a.mkdir("/shared")
    a.sharing.share("/shared", "bob", "read")
    b.sharing.accept("alice")
    return a, b


def test_copy_into_a_shared_folder_then_revoke(trio: tuple[Drive, Drive]) -> None:
    a, b = trio
    a.write_file("/private.txt", b"private v1")
    a.copy("/private.txt", "/shared/copy.txt")
    b.refresh()
    assert b.read_file("/Shared with me/alice/shared/copy.txt") == b"private v1"
    held = {s.folder_key for s in b.sharing.incoming.values()} | {m.key for m in b.tree.cached_metas()}
    a.sharing.unshare("/shared", "bob")
    a.write_file("/private.txt", b"private v2, after the revocation")
    assert a.resolve("/private.txt").verified().key not in held
    _cannot_open_current(a, "/private.txt", held)
    a.close()
    b.close()


def test_a_link_to_a_copy_opens_only_the_copy(server: Server, tmp_path: Path) -> None:
    a = make_drive(server.url, new_home(tmp_path), "alice")
    a.write_file("/private.txt", b"private v1")
    a.copy("/private.txt", "/public.txt")
    url = a.sharing.create_link("/public.txt")
    key = base64.urlsafe_b64decode(url.split("#", 1)[1] + "==")
    info = a.api.public_link(url.split("/l/", 1)[1].split("#")[0])
    record = format.open_link(key, a.owner, str(info["node_id"]), base64.b64decode(info["blob"]))
    a.sharing.remove_links("/public.txt")
    a.write_file("/private.txt", b"private v2")
    _cannot_open_current(a, "/private.txt", {record.key, key})
    a.close()


def test_moving_out_of_a_shared_folder_re_keys(trio: tuple[Drive, Drive]) -> None:
    """A sibling of finding 5: a node that leaves a share keeps no key the former audience holds."""
    a, b = trio
    a.mkdir("/shared/sub")
    a.write_file("/shared/sub/notes.txt", b"shared once")
    b.refresh()
    assert b.read_file("/Shared with me/alice/shared/sub/notes.txt") == b"shared once"
    held = {s.folder_key for s in b.sharing.incoming.values()} | {m.key for m in b.tree.cached_metas()}
    a.rename("/shared/sub", "/private-sub")
    a.write_file("/private-sub/notes.txt", b"private from now on")
    a.write_file("/private-sub/new.txt", b"new and private")
    assert a.resolve("/private-sub").verified().key not in held
    _cannot_open_current(a, "/private-sub/notes.txt", held)
    _cannot_open_current(a, "/private-sub/new.txt", held)
    a.close()
    b.close()
