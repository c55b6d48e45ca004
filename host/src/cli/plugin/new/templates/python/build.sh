#!/bin/sh
# Builds app.py into dist/{{name}}.wasm, a component of the `{{world}}` world.
#
# componentize-py (requirements.txt) runs from a virtual environment in .venv, made on the
# first build with $PYTHON (default python3) and brought up to date when requirements.txt
# changes.
set -eu
cd "$(dirname "$0")"
if ! cmp -s requirements.txt .venv/requirements.txt 2>/dev/null; then
    "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install --quiet --requirement requirements.txt
    cp requirements.txt .venv/requirements.txt
fi
mkdir -p dist
# --stub-wasi: the Python runtime imports WASI (files, clocks, random, environment) and the
# server refuses a plugin that imports anything but its world; the stubs answer those
# imports inside the component instead. So time comes from ctx.at_unix_ms only, and files,
# stdout and the environment are empty.
.venv/bin/componentize-py -d wit -w {{world}} componentize app --stub-wasi -o dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
