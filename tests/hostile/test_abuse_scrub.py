"""Hostile: a link key pasted into an abuse report must never leave the reporter's machine (finding 8).

The scrub missed keys written as ``/l/ID/#KEY``, ``/l/ID?x#KEY`` or ``/L/ID#KEY``. The client now cuts
every ``#fragment`` out of the reason before sending (and the server does the same before storing,
tests/server/test_server_api_abuse.py). A proxy in front of the server records what the client sent.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support.accounts import Server, make_drive, megadrive, new_home, ok
from support.evil import EvilServer, LyingProxy


@pytest.mark.parametrize("shape", ["{u}/l/{i}/#{k}", "{u}/l/{i}?x#{k}", "{u}/L/{i}#{k}", "see #{k} there",
                                   "{u}/l/{i}#{k}", "({u}/l/{i}#{k})"])
def test_no_pasted_link_key_reaches_the_server(server: Server, tmp_path: Path, shape: str) -> None:
    proxy = LyingProxy(server.url, EvilServer(server.data))
    owner = make_drive(proxy.url, new_home(tmp_path), "alice")
    owner.write_file("/f.txt", b"reported")
    url = owner.sharing.create_link("/f.txt")
    link_id, key = url.split("/l/")[1].split("#")
    raw_key = base64.urlsafe_b64decode(key + "==")
    reason = "illegal: " + shape.format(u=proxy.url, i=link_id, k=key)
    env = {"MEGADRIVE_HOME": str(new_home(tmp_path))}
    out = ok(megadrive("report", url, "--reason", reason, env=env))
    assert "Reported" in out
    sent = b"\n".join(proxy.received)
    assert b"/v1/abuse" in sent
    for form in (key.encode(), raw_key, base64.b64encode(raw_key), raw_key.hex().encode()):
        assert form not in sent, f"the link key left the machine in {shape!r}"
    assert key.encode() not in EvilServer(server.data).all_bytes()
    owner.close()
    proxy.close()
