# Sourced by up.sh and test.sh: Debian packages (when root), then a venv with the project.
# Usage: . scripts/bootstrap.sh EXTRAS DEB_PACKAGES...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras=$1; shift
want=("$@")
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "MegaDrive needs Python >= 3.11" >&2; exit 1; }
python3 -c 'import ensurepip' 2>/dev/null || want+=(python3-venv)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    # libfuse2 is called libfuse2t64 on newer Debian/Ubuntu releases.
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]/libfuse2/libfuse2t64}" >/dev/null
    fi
  fi
elif [ ${#want[@]} -gt 0 ]; then
  echo "note: not root, so not installing Debian packages (${want[*]}); tests needing them may fail" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
# The web client's one dependency, libsodium's JavaScript build, from npm into server/web/node_modules
# (the storage server serves it from there; it is never committed), exactly as package-lock.json pins it.
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: nodejs npm" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if command -v npm >/dev/null 2>&1; then
  (cd server/web && npm ci --no-audit --no-fund --silent)
else
  echo "note: npm is missing, so the web client has no libsodium (server/web/node_modules)" >&2
fi
