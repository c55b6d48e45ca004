#!/usr/bin/env bash
# Builds app.py into a component of the `chat-moderation` world.
#
#   ./build.sh [OUTPUT]      (or LYCEUM_PLUGIN_OUT=OUTPUT ./build.sh)
#
# Needs componentize-py (requirements.txt) on PATH, or its path in COMPONENTIZE_PY. The
# default output is the repository's target/plugins/guests/template_python.wasm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${LYCEUM_PLUGIN_OUT:-$here/../../target/plugins/guests/template_python.wasm}}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"
cd "$here"
# --stub-wasi: the Python runtime imports WASI (files, clocks, random, environment) and the
# server refuses a plugin that imports anything but its world; the stubs answer those
# imports inside the component instead. So time comes from ctx.at_unix_ms only, and
# files, stdout and the environment are empty.
"${COMPONENTIZE_PY:-componentize-py}" -d ../../wit/since_v0.1.0 -w chat-moderation \
    componentize app --stub-wasi -o "$out"
