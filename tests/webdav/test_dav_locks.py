"""Locks: persisted across gateway restarts (sealed, no plaintext on disk), unmapped URLs, Windows' saves."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx
from support.dav import (
    DAV,
    TEST_NS,
    WIN32,
    Account,
    GatewayProcess,
    files_containing,
    get,
    href,
    if_token,
    lock,
    needle_forms,
    parse_multistatus,
    prop,
    propfind,
    proppatch_body,
    put,
    unlock,
    win32_props,
)


def proppatch(c: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return c.request("PROPPATCH", href(path), content=body,
                     headers={"Content-Type": "application/xml", **headers})


def all_propstats_ok(r: httpx.Response) -> None:
    assert r.status_code == 207, f"{r.status_code} {r.text}"
    (res,) = parse_multistatus(r.content)
    assert res.status_of, r.text
    assert set(res.status_of.values()) == {200}, r.text


def test_lock_survives_gateway_restart_and_no_plaintext_name_on_disk(
        account: Account, gateways: Callable[..., GatewayProcess]) -> None:
    marker = f"lockmarker{secrets.token_hex(6)}"
    path = f"/{marker}.docx"
    gw1 = gateways(account.home)
    with gw1.client() as c:
        put(c, path, b"version 1")
        token = lock(c, path)
        assert c.put(href(path), content=b"intruder").status_code == 423
    assert gw1.stop() == 0, gw1.stderr()

    hits = files_containing(account.home, needle_forms(marker))
    assert not hits, f"a plaintext file name reached MEGADRIVE_HOME: {hits}"

    gw2 = gateways(account.home)
    with gw2.client() as c:
        assert c.put(href(path), content=b"no token").status_code == 423
        assert get(c, path) == b"version 1"
        discovery = prop(c, path, f"{DAV}lockdiscovery")
        assert discovery is not None
        (res,) = propfind(c, path, [f"{DAV}lockdiscovery"])
        tokens = [e.text for e in res.props[f"{DAV}lockdiscovery"].iter(f"{DAV}href")]
        assert token in tokens, tokens
        r = c.put(href(path), content=b"version 2", headers=if_token(token))
        assert r.status_code in (200, 201, 204), r.text
        assert get(c, path) == b"version 2"
        assert unlock(c, path, token).status_code == 204
        assert c.put(href(path), content=b"version 3").status_code in (200, 204)
        assert get(c, path) == b"version 3"
    assert not files_containing(account.home, needle_forms(marker))


def test_unlock_is_persisted_too(account: Account, gateways: Callable[..., GatewayProcess]) -> None:
    gw1 = gateways(account.home)
    with gw1.client() as c:
        put(c, "/u.txt", b"x")
        token = lock(c, "/u.txt")
        assert unlock(c, "/u.txt", token).status_code == 204
    gw1.stop()
    with gateways(account.home).client() as c:
        assert c.put("/u.txt", content=b"free").status_code == 204


def test_lock_survives_a_gateway_crash(account: Account, gateways: Callable[..., GatewayProcess]) -> None:
    """Locks are written through when taken, not saved at shutdown: SIGKILL loses none."""
    gw1 = gateways(account.home)
    with gw1.client() as c:
        put(c, "/crash.txt", b"before")
        token = lock(c, "/crash.txt")
    gw1.proc.kill()
    gw1.proc.wait(10)
    with gateways(account.home).client() as c:
        assert c.put("/crash.txt", content=b"no token").status_code == 423
        assert c.put("/crash.txt", content=b"owner", headers=if_token(token)).status_code == 204
        assert unlock(c, "/crash.txt", token).status_code == 204


def test_lock_on_unmapped_url_creates_empty_resource(dav: httpx.Client) -> None:
    token = lock(dav, "/new-by-lock.txt", expect=201)
    r = dav.get("/new-by-lock.txt")
    assert r.status_code == 200 and r.content == b""
    (res,) = propfind(dav, "/new-by-lock.txt", [f"{DAV}getcontentlength"])
    assert res.text(f"{DAV}getcontentlength") == "0"
    # The lock-null resource is locked: only the owner writes it.
    assert dav.put("/new-by-lock.txt", content=b"x").status_code == 423
    assert dav.put("/new-by-lock.txt", content=b"mine", headers=if_token(token)).status_code in (200, 204)
    assert unlock(dav, "/new-by-lock.txt", token).status_code == 204
    assert get(dav, "/new-by-lock.txt") == b"mine"


WIN32_DATE = "Wed, 15 Jan 2020 08:30:00 GMT"


def test_win32_proppatch_on_locked_file_without_token(dav: httpx.Client) -> None:
    put(dav, "/report.docx", b"saved by word")
    token = lock(dav, "/report.docx")
    ts = parsedate_to_datetime(WIN32_DATE).timestamp()
    # Windows' mini-redirector sends this without the lock token after saving a locked file.
    r = proppatch(dav, "/report.docx", proppatch_body(win32_props(ts)))
    all_propstats_ok(r)
    assert prop(dav, "/report.docx", f"{DAV}getlastmodified") == WIN32_DATE
    assert dav.head("/report.docx").headers.get("Last-Modified") == WIN32_DATE
    # Only Win32 properties get through a lock without its token.
    body = proppatch_body({f"{{{TEST_NS}}}note": "sneaky"})
    assert proppatch(dav, "/report.docx", body).status_code == 423
    mixed = proppatch_body({**win32_props(ts), f"{{{TEST_NS}}}note": "sneaky"})
    assert proppatch(dav, "/report.docx", mixed).status_code == 423
    assert prop(dav, "/report.docx", f"{{{TEST_NS}}}note") is None
    # With the token the dead property is written.
    all_propstats_ok(proppatch(dav, "/report.docx", body, **if_token(token)))
    assert prop(dav, "/report.docx", f"{{{TEST_NS}}}note") == "sneaky"
    assert unlock(dav, "/report.docx", token).status_code == 204
    assert get(dav, "/report.docx") == b"saved by word"


def test_windows_save_pattern(dav: httpx.Client) -> None:
    """Explorer/Office: LOCK, PUT with the token, PROPPATCH the Win32 times, UNLOCK."""
    put(dav, "/budget.xlsx", b"old numbers")
    token = lock(dav, "/budget.xlsx")
    r = dav.put("/budget.xlsx", content=b"new numbers", headers=if_token(token))
    assert r.status_code in (200, 204), r.text
    ts = parsedate_to_datetime(WIN32_DATE).timestamp()
    all_propstats_ok(proppatch(dav, "/budget.xlsx", proppatch_body(win32_props(ts)), **if_token(token)))
    assert unlock(dav, "/budget.xlsx", token).status_code == 204
    assert get(dav, "/budget.xlsx") == b"new numbers"
    assert prop(dav, "/budget.xlsx", f"{DAV}getlastmodified") == WIN32_DATE
    (res,) = propfind(dav, "/budget.xlsx", [f"{{{WIN32}}}Win32FileAttributes", f"{DAV}getcontentlength"])
    assert res.text(f"{DAV}getcontentlength") == str(len(b"new numbers"))
    # Not locked any more: anyone may write.
    assert dav.put("/budget.xlsx", content=b"after").status_code == 204
