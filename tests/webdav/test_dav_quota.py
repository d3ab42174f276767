"""Quota: RFC 4331 properties match the server's account, and an over-quota PUT is 507 keeping the old file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.dav import DAV, Account, GatewayProcess, MiB, assert_clean_body, get, propfind, put, seeded_bytes, signup
from support.server import ServerProcess

USED, AVAILABLE = f"{DAV}quota-used-bytes", f"{DAV}quota-available-bytes"


def quota_props(c: httpx.Client, path: str = "/") -> tuple[int, int]:
    (res,) = propfind(c, path, [USED, AVAILABLE])
    assert res.status_of.get(USED) == 200 and res.status_of.get(AVAILABLE) == 200, res.status_of
    return int(res.text(USED) or -1), int(res.text(AVAILABLE) or -1)


def test_quota_properties_match_the_server(account: Account, dav: httpx.Client) -> None:
    srv = account.server_account()
    used, available = quota_props(dav)
    assert used == int(srv["used"])
    assert available == int(srv["quota"]) - int(srv["used"])
    put(dav, "/three-mib.bin", seeded_bytes(3, 3 * MiB))
    deadline = time.monotonic() + 8  # the gateway may cache the account for a few seconds
    while True:
        used2, available2 = quota_props(dav)
        if used2 != used or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    srv2 = account.server_account()
    assert int(srv2["used"]) >= int(srv["used"]) + 3 * MiB
    assert used2 == int(srv2["used"])
    assert available2 == int(srv2["quota"]) - int(srv2["used"])
    assert dav.request("MKCOL", "/sub").status_code == 201
    assert quota_props(dav, "/sub/") == (used2, available2)


@pytest.fixture
def small_quota_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "small", quota=3 * MiB)
    try:
        yield server
    finally:
        server.stop()


def test_put_over_quota_is_507_and_old_content_survives(small_quota_server: ServerProcess, tmp_path: Path,
                                                        gateways: Callable[..., GatewayProcess]) -> None:
    acct = signup(small_quota_server.url, tmp_path)
    with gateways(acct.home).client() as c:
        old = seeded_bytes(1, 512 * 1024)
        put(c, "/file.bin", old)
        r = c.put("/file.bin", content=seeded_bytes(2, 5 * MiB))
        assert r.status_code == 507, f"{r.status_code} {r.text[:500]}"
        assert_clean_body(r)
        assert get(c, "/file.bin") == old
        r = c.put("/other.bin", content=seeded_bytes(3, 5 * MiB))
        assert r.status_code == 507, r.text[:500]
        assert c.get("/other.bin").status_code == 404
        # streamed (chunked) uploads too
        r = c.put("/file.bin", content=iter([seeded_bytes(4, MiB)] * 5))
        assert r.status_code == 507, r.text[:500]
        assert get(c, "/file.bin") == old
        # what fits still works
        put(c, "/file.bin", b"small")
        assert get(c, "/file.bin") == b"small"
