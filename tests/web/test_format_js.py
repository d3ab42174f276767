"""One format, two implementations: the web client's format module (server/web/js/format.mjs, on
libsodium's JavaScript build from npm) computes every known-answer vector of docs/FORMAT.md section 12
under node, byte for byte, opens what the Python client sealed, and refuses what was changed."""

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
    assert r.stdout.strip().splitlines()[-1] == f"{n} of {n} vectors, 18 of 18 checks", r.stdout
