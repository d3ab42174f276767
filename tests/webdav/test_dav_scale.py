"""Scale: a folder of many files (10,000 with MEGADRIVE_LONG_TESTS=1, 2,500 in the default run; made by
write-back and uploaded in batches, as a gateway's PUTs are) lists with one PROPFIND and no server round
trip; Depth infinity is refused."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from support.dav import DAV, InProcessGateway, assert_clean_body, inprocess_gateway, parse_multistatus, signup
from support.server import ServerProcess

N = 10_000 if os.environ.get("MEGADRIVE_LONG_TESTS") == "1" else 2_500
NAMED_PROPS = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/>'
               b'<D:getlastmodified/><D:resourcetype/><D:getetag/><D:displayname/></D:prop></D:propfind>')


@pytest.fixture(scope="module")
def big_folder(dav_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    """An in-process gateway over an account with /big holding N files."""
    acct = signup(dav_server.url, tmp_path_factory.mktemp("scale"))
    with inprocess_gateway(acct.home) as g:
        g.drive.mkdir("/big")
        t0 = time.monotonic()
        for i in range(N):  # write-back, as the gateway saves a PUT: the uploader creates them in batches
            path = f"/big/file-{i:05d}.txt"
            g.drive.create_file(path, local=True)
            with g.drive.open_write(path, journal=True) as w:
                w.save()
        deadline = time.monotonic() + 120
        while g.drive.pending_uploads() and time.monotonic() < deadline:  # (the gateway's uploader, or this)
            g.drive.replay_journal()
            time.sleep(0.1)
        assert g.drive.pending_uploads() == 0
        print(f"\n{N} files created in {time.monotonic() - t0:.1f}s")
        g.drive.write_file(f"/big/file-{N // 2:05d}.txt", b"4242")  # one file of the folder is not empty
        yield g


def propfind_big(g: InProcessGateway, body: bytes | None) -> tuple[list, list, float]:
    with g.client(timeout=300) as c:
        assert c.options("/").status_code == 200  # connect first; OPTIONS needs nothing from the server
        g.counters.reset()
        t0 = time.monotonic()
        r = c.request("PROPFIND", "/big/", headers={"Depth": "1"}, content=body)
        elapsed = time.monotonic() - t0
        calls = list(g.counters.requests)
    assert r.status_code == 207, r.text[:2000]
    responses = parse_multistatus(r.content)
    print(f"\nPROPFIND Depth 1 of {N} files ({'named props' if body else 'allprop'}): {elapsed:.2f}s, "
          f"{len(r.content) / 2**20:.1f} MiB, {len(calls)} server calls")
    assert len(responses) == N + 1
    names = {res.path for res in responses}
    assert "/big/" in names or "/big" in names
    assert "/big/file-00000.txt" in names and f"/big/file-{N - 1:05d}.txt" in names
    one = next(res for res in responses if res.path == f"/big/file-{N // 2:05d}.txt")
    assert one.text(f"{DAV}getcontentlength") == "4"
    return responses, calls, elapsed


def test_big_folder_listings(big_folder: InProcessGateway) -> None:
    """One test over the big folder (its creation is the cost; pytest-xdist would pay it once per worker):
    Depth 1 with named properties and with allprop makes no server round trip; a whole-subtree PROPFIND past
    MAX_INFINITE_PROPFIND entries (2,000) is refused, with or without Depth."""
    _, calls, elapsed = propfind_big(big_folder, NAMED_PROPS)
    assert calls == [], f"PROPFIND made {len(calls)} server round trips: {calls[:10]}"
    assert elapsed < 60
    time.sleep(5.5)  # let any cached account info expire: a listing must not depend on it
    _, calls, _ = propfind_big(big_folder, None)
    assert calls == [], f"PROPFIND made {len(calls)} server round trips: {calls[:10]}"
    with big_folder.client(timeout=300) as c:
        for headers in ({"Depth": "infinity"}, {}):
            for path in ("/", "/big/"):
                r = c.request("PROPFIND", path, headers=headers)
                assert r.status_code == 403 and "propfind-finite-depth" in r.text, (path, headers, r.text)
                assert_clean_body(r)
