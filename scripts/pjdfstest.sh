#!/usr/bin/env bash
# Run pjdfstest (the POSIX file-system test suite) on a fresh MegaDrive mount and print its totals.
#
#   bash scripts/pjdfstest.sh PJDFSTEST_DIR [TEST_SUBDIR...]
#
# pjdfstest is packaged nowhere: build it from its public source (github.com/pjd/pjdfstest, commit
# 85a8aea; `autoreconf -ifs && ./configure && make pjdfstest`) into a folder of your own and pass that
# folder. Never copy it into this repository. Run as root (it switches users); the mount is made with
# --allow-other so the users it switches to can enter it. A local server on a free port, a fresh account
# and a fresh mount are made under a temporary folder and removed afterwards.
set -euo pipefail
pjd=$(cd "${1:?usage: scripts/pjdfstest.sh PJDFSTEST_DIR [TEST_SUBDIR...]}" && pwd)
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
md="$repo/.venv/bin/megadrive"
work=$(mktemp -d)
export MEGADRIVE_HOME="$work/home" MEGADRIVE_PASSWORD=pjdfstest-password MEGADRIVE_KDF=interactive
mkdir -p "$work/mnt"
"$md" server --data "$work/server" --listen 127.0.0.1:0 --signup-limit 0 >"$work/server.log" 2>&1 &
server=$!
cleanup() {
    "$md" unmount "$work/mnt" >/dev/null 2>&1 || fusermount -uz "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
    kill "$server" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
done
"$md" signup --server "$url" --user pjdfstest >/dev/null
"$md" mount --allow-other "$work/mnt"
chmod 0755 "$work"
mkdir "$work/mnt/run"
cd "$work/mnt/run"
tests=()
if [ $# -eq 0 ]; then tests=("$pjd/tests"); else for t in "$@"; do tests+=("$pjd/tests/$t"); done; fi
prove -r "${tests[@]}" >"$work/prove.log" 2>&1 || true
grep -v '^/.* \.\. ok$' "$work/prove.log" || true
# Totals in assertions: the failed ones, plus those a script planned and never ran.
awk '/Tests: [0-9]+ Failed: [0-9]+\)/ {f += $NF + 0}
     /You planned [0-9]+ tests? but ran [0-9]+/ {for (i = 1; i <= NF; i++) if ($i == "planned") p = $(i + 1); r = $NF + 0; m += p - r}
     /Non-zero exit status/ {x += 1}
     /^Files=/ {split($2, t, "="); n = t[2] + 0}
     END {printf "pjdfstest: %d of %d assertions pass (%d failed, %d never ran); %d scripts exited non-zero\n",
          n - f - m + 0, n + m, f, m, x}' \
    "$work/prove.log"
