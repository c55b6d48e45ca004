#!/bin/sh
# Builds the plugin into dist/{{name}}.wasm.
#
# cargo puts it in its target directory (target/, or $CARGO_TARGET_DIR when set); the copy
# in dist/ is the file to test, check and install.
set -eu
cd "$(dirname "$0")"
cargo build --release --target {{target}}
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p dist
cp "$target_dir/{{target}}/release/{{crate_file}}.wasm" dist/{{name}}.wasm
echo "built dist/{{name}}.wasm"
