#!/usr/bin/env bash
# README's second command: install everything the tests need, then run the whole suite:
# ruff, mypy, import-linter contracts and pytest (real server, gateway, litmus, FUSE).
. "$(dirname "$0")/bootstrap.sh" "[test]" litmus fuse libfuse2 libfuse3-3 rsync vim
set -x
.venv/bin/ruff check megadrive/ server/ mount/ tests/
.venv/bin/mypy megadrive/
.venv/bin/lint-imports
.venv/bin/pytest "$@"
