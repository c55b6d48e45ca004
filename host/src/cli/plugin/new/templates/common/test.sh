#!/bin/sh
# Builds the plugin, then runs every case of cases.json through the Lyceum server's own
# plugin runtime, offline: `lyceum plugin test`. `lyceum` must be on PATH, or LYCEUM_BIN
# must name it.
set -eu
cd "$(dirname "$0")"
lyceum="${LYCEUM_BIN:-lyceum}"
if ! command -v "$lyceum" >/dev/null 2>&1; then
    echo "cannot find \`$lyceum\`: put lyceum on PATH, or set LYCEUM_BIN to its path" >&2
    exit 2
fi
./build.sh
exec "$lyceum" plugin test dist/{{name}}.wasm --slot {{slot}} --cases cases.json
