"""One format, two implementations: the web client's format module (server/web/js/format.mjs, on
libsodium's JavaScript build from npm) computes every known-answer vector of docs/FORMAT.md section 12
under node, byte for byte, opens what the Python client sealed (those records, a share grant, the
contact record), computes the same fingerprint, and refuses what was changed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "crypto"))

import test_crypto_vectors as tv  # noqa: E402  (the inputs and the expected values of section 12)

from megadrive import crypto  # noqa: E402
from megadrive import format as fmt  # noqa: E402

RUNNER = Path(__file__).with_name("format_vectors.mjs")
NODE_MODULES = ROOT / "server" / "web" / "node_modules" / "libsodium-wrappers-sumo"


def _inputs() -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("K_TEST", "SALT", "MASTER", "SIGN_SEED", "BOX_SECRET", "ROOT_KEY", "FILE_FID", "CONTENT_KEY",
                 "CONTENT", "BIG_FID", "BIG_KEY", "BIG", "LINK_FID"):
        out[name] = getattr(tv, name).hex()
    for name in ("PASSWORD", "USER", "USER_ID", "ROOT_ID", "FILE_NODE", "BIG_NODE", "LINK_NODE"):
        out[name] = getattr(tv, name)
    out["MTIME"] = str(tv.MTIME)
    # Made by the Python client, opened by the JavaScript: a share grant (7.7), the contact record (7.9), and
    # the fingerprint people compare.
    owner = crypto.Identity(tv.SIGN_SEED, tv.BOX_SECRET)
    recipient = crypto.Identity(bytes(range(0xE0, 0x100)), bytes(range(0x30, 0x50)))
    grant = fmt.Grant(tv.USER_ID, "ab" * 16, tv.FILE_NODE, "write", "Shared folder", tv.ROOT_KEY, 123456789)
    out["GRANT"] = fmt.seal_grant(grant, owner, recipient.box_pub).hex()
    out["RECIPIENT_ID"] = "ab" * 16
    out["RECIPIENT_BOX_SECRET"] = recipient.box_secret.hex()
    out["RECIPIENT_BOX_PUB"] = recipient.box_pub.hex()
    out["OWNER_SIGN_PUB"] = owner.sign_pub.hex()
    out["FINGERPRINT"] = crypto.fingerprint(owner.sign_pub)
    record = json.dumps({"c": {"bob": {"id": "ab" * 16, "k": owner.sign_pub.hex(), "v": False, "a": True,
                                       "t": 1700000000.5}}, "e": {tv.FILE_NODE: 123456789}},
                        sort_keys=True, separators=(",", ":")).encode()
    out["RECORD"] = fmt.seal_account_record(tv.MASTER, tv.USER_ID, "contacts", 3, record).hex()
    # Link records (7.8), a file's and a folder's, under the link key K_TEST; and one naming both.
    file_link = fmt.LinkRecord(tv.USER_ID, tv.FILE_NODE, "hello.txt", tv.CONTENT_KEY, tv.FILE_FID)
    out["FILE_LINK"] = fmt.seal_link(tv.K_TEST, file_link).hex()
    folder_link = fmt.LinkRecord(tv.USER_ID, tv.ROOT_ID, "Photos", tv.ROOT_KEY, kind="dir")
    out["FOLDER_LINK"] = fmt.seal_link(tv.K_TEST, folder_link).hex()
    both = json.dumps({"f": tv.FILE_FID.hex(), "k": tv.ROOT_KEY.hex(), "n": "x", "t": "dir"}).encode()
    out["BOTH_LINK"] = crypto.seal(tv.K_TEST, fmt.pad(both), crypto.aad("link", tv.USER_ID, tv.ROOT_ID)).hex()
    return out


def test_the_javascript_format_computes_every_vector(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not NODE_MODULES.is_dir():  # scripts/bootstrap.sh installs both
        pytest.fail("node and server/web/node_modules are needed (bash scripts/test.sh installs them)")
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps({"inputs": _inputs(), "expected": tv.EXPECTED}))
    r = subprocess.run([node, str(RUNNER), str(vectors)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(tv.EXPECTED)
    assert r.stdout.strip().splitlines()[-1] == f"{n} of {n} vectors, 31 of 31 checks", r.stdout
