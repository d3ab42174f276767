#!/usr/bin/env bash
# README's first command: install MegaDrive into .venv and run `megadrive up`
# (a local server on local storage plus the WebDAV gateway).
. "$(dirname "$0")/bootstrap.sh" "" 
exec .venv/bin/megadrive up "$@"
