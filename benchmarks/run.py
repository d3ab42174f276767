"""One benchmark command: every workload of MegaDrive and of each installed peer, in one run, with ratios.

Runs ``webdav_throughput.py`` (MegaDrive's gateway, plain wsgidav, ``rclone serve
webdav`` over a crypt remote) and ``fuse_throughput.py`` (``megadrive mount``,
gocryptfs, ``rclone mount`` of a crypt remote) one after the other as children,
reads their JSON, prints one table in the layout of the performance issue with
the ratio MegaDrive / rclone crypt for each row (>= 1.0: MegaDrive at least as
fast; for rows in seconds the ratio is inverted so the rule holds), and writes
everything to ``--json`` (default ``benchmarks/results.json``).

A peer that is not installed is skipped with a line saying so; the FUSE half is
skipped (with a line) unless the command runs as root with /dev/fuse. Not a
test: nothing is asserted, figures depend on the machine and its load.

usage: python benchmarks/run.py [SIZE_MIB] [--json PATH]   (default 256 MiB)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FUSE_SYSTEMS = "md-mfusepy-fuse3,rclone-crypt,gocryptfs"
CHILD_TIMEOUT = 900.0


def child(script: str, size: int, extra: list[str]) -> dict[str, Any] | None:
    """Run one benchmark script; its own report goes to our stdout as it runs, its JSON comes back."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, str(HERE / script), str(size), *extra, "--json", out.name]
        print(f"$ {' '.join(cmd[1:])}", flush=True)
        try:
            rc = subprocess.run(cmd, timeout=CHILD_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            print(f"{script}: timed out after {CHILD_TIMEOUT:.0f} s", flush=True)
            return None
        text = Path(out.name).read_text()
        if rc or not text:
            print(f"{script}: exit {rc}, no figures", flush=True)
            return None
        result: dict[str, Any] = json.loads(text)
        return result


Row = tuple[str, str, dict[str, float | None], bool]  # label, unit, value per system, higher is better


def webdav_rows(d: dict[str, Any]) -> list[Row]:
    rates = d["rates"]
    size, files = d["size_mib"], d["files"]

    def pick(key: str) -> dict[str, float | None]:
        return {"megadrive": rates.get("megadrive", {}).get(key), "rclone": rates.get("rclone-crypt", {}).get(key),
                "wsgidav": rates.get("wsgidav", {}).get(key)}

    return [(f"WebDAV PUT {size} MiB", "MiB/s", pick("PUT"), True),
            (f"WebDAV GET {size} MiB", "MiB/s", pick("GET"), True),
            (f"WebDAV tree upload ({files} files, 8 threads)", "files/s", pick("tree-up"), True),
            ("WebDAV tree download", "files/s", pick("tree-down"), True),
            ("WebDAV tree list (PROPFIND per folder)", "s", pick("tree-list-s"), False)]


def fuse_rows(d: dict[str, Any]) -> list[Row]:
    systems = d["systems"]
    size, files = d["size_mib"], d["files"]

    def secs(name: str, op: str) -> float | None:
        v = systems.get(name, {}).get("secs", {}).get(op)
        return float(v) if v else None

    def rate(op: str, amount: float) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, name in (("megadrive", "md-mfusepy-fuse3"), ("rclone", "rclone-crypt"), ("gocryptfs", "gocryptfs")):
            s = secs(name, op)
            out[key] = amount / s if s else None
        return out

    def seconds(op: str) -> dict[str, float | None]:
        return {"megadrive": secs("md-mfusepy-fuse3", op), "rclone": secs("rclone-crypt", op),
                "gocryptfs": secs("gocryptfs", op)}

    sent: dict[str, float | None] = {}
    for key, name in (("megadrive", "md-mfusepy-fuse3"),):
        note = next((r[2] for r in systems.get(name, {}).get("rows", []) if r[0] == "4 KiB edit (dd+sync)"), "")
        m = re.search(r"server used \+(-?\d+) bytes", note or "")
        sent[key] = float(m[1]) if m else None
    return [(f"FUSE big write {size} MiB (cp+sync)", "MiB/s", rate("big write (cp+sync)", size), True),
            ("FUSE big read (cold cat)", "MiB/s", rate("big read (cold cat)", size), True),
            (f"FUSE tree cp -r in ({files} files)", "files/s", rate(f"tree cp -r in ({files})", files), True),
            ("FUSE tree cp -r out", "files/s", rate("tree cp -r out", files), True),
            ("FUSE tree ls -lR", "s", seconds("tree ls -lR"), False),
            ("FUSE tree rm -rf", "s", seconds("tree rm -rf"), False),
            ("FUSE 4 KiB edit in the big file: server bytes added", "bytes", sent, False)]


def ratio(values: dict[str, float | None], higher_better: bool, peer: str) -> str:
    md, other = values.get("megadrive"), values.get(peer)
    if not md or not other:
        return "-"
    return f"{(md / other if higher_better else other / md):.2f}"


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.0f}"


def main() -> None:
    args = sys.argv[1:]
    json_out = HERE / "results.json"
    if "--json" in args:
        i = args.index("--json")
        json_out = Path(args[i + 1])
        del args[i : i + 2]
    size = int(args[0]) if args else 256
    started = time.monotonic()
    rows: list[Row] = []
    raw: dict[str, Any] = {"size_mib": size, "cpus": os.cpu_count(), "kernel": os.uname().release}
    dav = child("webdav_throughput.py", size, [])
    if dav is not None:
        raw["webdav"] = dav
        rows += webdav_rows(dav)
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("skipping the FUSE workloads: they need root (to drop the page cache and mount) and /dev/fuse")
    else:
        fuse = child("fuse_throughput.py", size, ["--only", FUSE_SYSTEMS])
        if fuse is not None:
            raw["fuse"] = fuse
            rows += fuse_rows(fuse)
    print()
    print(f"{'workload':<52} {'unit':<8} {'MegaDrive':>10} {'rclone':>10} {'gocryptfs':>10} {'wsgidav':>10}"
          f" {'vs rclone':>10} {'vs gocryptfs':>12}")
    table = []
    for label, unit, values, higher in rows:
        r_rclone, r_gocrypt = ratio(values, higher, "rclone"), ratio(values, higher, "gocryptfs")
        print(f"{label:<52} {unit:<8} {fmt(values.get('megadrive')):>10} {fmt(values.get('rclone')):>10}"
              f" {fmt(values.get('gocryptfs')):>10} {fmt(values.get('wsgidav')):>10} {r_rclone:>10} {r_gocrypt:>12}")
        table.append({"workload": label, "unit": unit, "higher_is_better": higher, **values,
                      "ratio_rclone": r_rclone, "ratio_gocryptfs": r_gocrypt})
    print("(ratios: MegaDrive's speed / the peer's; >= 1.00 means MegaDrive is at least as fast)")
    elapsed = time.monotonic() - started
    print(f"total wall time {elapsed:.0f} s; JSON in {json_out}")
    raw["table"], raw["wall_s"] = table, elapsed
    json_out.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
