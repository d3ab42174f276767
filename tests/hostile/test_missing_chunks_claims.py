"""A server that claims, on commit, to lack chunks: the uploader sends only chunks of that version from its
journal, a bounded number of times, and never drops an acknowledged write for the server's claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, new_home
from support.evil import EvilServer, LyingProxy

from megadrive.errors import ServerError
from megadrive.format import CHUNK_SIZE


def test_a_claim_of_missing_chunks_never_costs_a_saved_version(server: Server, tmp_path: Path) -> None:
    proxy = LyingProxy(server.url, EvilServer(server.data))
    drive = make_drive(proxy.url, new_home(tmp_path), "victim")
    try:
        old = bytes(range(256)) * (2 * CHUNK_SIZE // 256)  # two chunks
        drive.write_file("/f.bin", old)
        shared = drive.manifest("/f.bin").chunk_ids()[0]  # type: ignore[union-attr]
        w = drive.open_write("/f.bin", truncate=False, create=False, journal=True)
        w.pwrite(CHUNK_SIZE + 5, b"edited")  # the second chunk changes; the first is the server's already
        w.save()
        w.close()
        lied: list[str] = []

        def claim(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
            if method == "POST" and path.endswith("/versions"):
                lied.append(path)
                return 409, json.dumps({"error": "missing_chunks", "message": "missing chunks",
                                        "missing": [shared]}).encode()
            return None

        proxy.forge = claim
        with pytest.raises(ServerError, match="lacks a chunk it already had"):
            drive.replay_journal()  # the round stops (the uploader retries later): nothing committed, nothing lost
        assert lied
        assert drive.pending_uploads() == 1
        assert drive.read_file("/f.bin")[CHUNK_SIZE + 5:CHUNK_SIZE + 11] == b"edited"

        for claimed in (["ab" * 32], "all"):  # a chunk of no version of ours; or the version's own, forever
            lied.clear()

            def again(method: str, path: str, body: bytes, claimed: object = claimed) -> tuple[int, bytes] | None:
                if method == "POST" and path.endswith("/versions"):
                    lied.append(path)
                    ids = json.loads(body)["chunks"][1:] if claimed == "all" else claimed
                    return 409, json.dumps({"error": "missing_chunks", "message": "m", "missing": ids}).encode()
                return None

            proxy.forge = again
            with pytest.raises(ServerError, match="keeps asking"):
                drive.replay_journal()
            assert len(lied) == (1 if claimed != "all" else 3)  # bounded: three rounds at most
            assert drive.pending_uploads() == 1

        proxy.forge = lambda method, path, body: None  # the server behaves again: the edit goes up
        report = drive.replay_journal()
        assert len(report) == 1 and report[0].startswith("committed node")
        assert drive.pending_uploads() == 0
        other = make_drive(server.url, new_home(tmp_path), "victim", signup=False)
        try:
            got = other.read_file("/f.bin")
            assert got[CHUNK_SIZE + 5:CHUNK_SIZE + 11] == b"edited" and got[:CHUNK_SIZE] == old[:CHUNK_SIZE]
        finally:
            other.close()
    finally:
        drive.close()
        proxy.close()
