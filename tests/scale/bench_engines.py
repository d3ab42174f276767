"""The WebDAV rows of benchmarks/webdav_throughput.py, on the embedded default and on
PostgreSQL + SeaweedFS (S3), in one run; prints both and their ratios. Not a test.

The gateway (`megadrive webdav`, a real client) is the same; only its server
changes: ``--data DIR`` (SQLite and a folder) or ``--meta postgresql://...
--chunks s3://...`` (throwaway instances started here, as the tests do).

usage: python tests/scale/bench_engines.py [SIZE_MIB]   (default 256)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1] / "benchmarks"), str(HERE.parent)]

import webdav_throughput as bench  # noqa: E402
from support import engines  # noqa: E402
from support.server import running_server  # noqa: E402


@contextmanager
def megadrive_dav(tmp: Path, procs: bench.Procs, rss: dict[str, bench.PeakRss], extra: list[str], tag: str
                  ) -> Iterator[str]:  # fmt: skip
    """bench.megadrive_dav, with the server's stores given by ``extra``."""
    home = tmp / f"{tag}-home"
    env = dict(os.environ, MEGADRIVE_HOME=str(home), MEGADRIVE_PASSWORD=bench.PASSWORD, MEGADRIVE_KDF="interactive")
    with running_server(tmp / f"{tag}-server", extra_args=extra) as server_url:
        pid = bench._server_pid(tmp / f"{tag}-server")
        if pid:
            rss["server"] = bench.PeakRss(pid)
        subprocess.run([str(bench.BIN / "megadrive"), "signup", "--server", server_url, "--user", "bench"],
                       env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        log = tmp / f"{tag}-gateway.log"
        gw = procs.start_piped([str(bench.BIN / "megadrive"), "webdav", "--listen", "127.0.0.1:0"], env, log)
        rss["gateway"] = bench.PeakRss(gw.pid)
        try:
            url = bench.read_served_url(gw, log)
            state = json.loads((home / "gateway.json").read_text())
            yield url.replace("://", f"://{quote(state['user'], safe='')}:{quote(state['password'], safe='')}@", 1)
        finally:
            procs.stop(gw)


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    procs = bench.Procs()
    tmp = Path(tempfile.mkdtemp(prefix="md-engines-bench-"))
    pg, s3 = engines.PostgresCluster(), engines.SeaweedS3(tmp / "weed")
    rows: list[bench.Row] = []
    rates: dict[str, dict[str, float]] = {}
    peaks: dict[str, dict[str, int]] = {}
    try:
        src = tmp / "big.bin"
        digest = bench.make_big(src, size)
        tree = tmp / "tree"
        nfiles = bench.make_tree(tree)
        peers = {
            "default": ["--signup-limit", "0"],
            "pg+s3": ["--signup-limit", "0", "--meta", pg.url(pg.create_database("bench")), "--chunks", s3.url()],
        }
        for name, extra in peers.items():
            rss: dict[str, bench.PeakRss] = {}
            try:
                with ExitStack() as stack:
                    url = stack.enter_context(megadrive_dav(tmp, procs, rss, extra, name.replace("+", "-")))
                    peer_rows, rates[name] = bench.run_peer(name, url, src, digest, size, tree)
                    rows += peer_rows
            finally:
                peaks[name] = {what: r.stop() for what, r in rss.items()}
    finally:
        procs.stop_all()
        s3.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"file {size} MiB random; tree {nfiles} .py files (Python stdlib); loopback only")
    print(f"{'server':<14} {'operation':<22} {'seconds':>8}   rate")
    for name, opname, secs, rate in rows:
        s = f"{secs:8.2f}" if secs is not None else f"{'-':>8}"
        print(f"{name:<14} {opname:<22} {s}   {rate}".rstrip())
    base, other = rates.get("default", {}), rates.get("pg+s3", {})
    parts = [
        f"{k} {other[k] / base[k]:.2f}" for k in ("PUT", "GET", "tree-up", "tree-down") if k in other and base.get(k)
    ]
    print("ratio pg+s3/default  " + ("  ".join(parts) if parts else "(n/a)"))
    for name, peak in peaks.items():
        print(f"{name} peak RSS: " + ", ".join(f"{w} {v / bench.MIB:.0f} MiB" for w, v in peak.items()))


if __name__ == "__main__":
    main()
