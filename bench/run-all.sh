#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md: builds the release binaries, runs the criterion
# microbenchmarks, then each load scenario several times on a fresh server (medians in each
# report). PostgreSQL scenarios run when LYCEUM_TEST_DATABASE_URL names a database.
# Reports go to target/bench-results/<scenario>.json (tables to the matching .txt).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT="${REPEAT:-3}"
OUT=target/bench-results
mkdir -p "$OUT"
unset RUST_BACKTRACE

rustup toolchain install
cargo build --release -p lyceum -p lyceum-bench
B=target/release/lyceum-bench

cargo bench -p lyceum --bench hot_paths 2>&1 | tee "$OUT/hot_paths.txt"
cargo bench -p lyceum-plugin-runtime --bench policy 2>&1 | tee "$OUT/plugins.txt"
cargo bench -p lyceum-plugin-runtime --bench operations 2>&1 | tee "$OUT/plugin-operations.txt"

run() {
    local name=$1
    shift
    echo "== $name: $*"
    "$B" --json "$OUT/$name.json" "$@" 2> >(tee "$OUT/$name.txt" >&2)
}

run fanout-100-paced --repeat "$REPEAT" fanout --clients 100 --rooms 1 --rate 500 --duration 10
run fanout-100-max --repeat "$REPEAT" fanout --clients 100 --rooms 1 --max --in-flight 4 --duration 10
run fanout-1000-paced --repeat "$REPEAT" fanout --clients 1000 --rooms 10 --rate 1000 --duration 10
run fanout-100-overload --repeat "$REPEAT" fanout --clients 100 --rooms 1 --rate 6000 --duration 10
run ingest --repeat "$REPEAT" ingest --rooms 100 --max --in-flight 4 --duration 10
run idle-5000 --repeat "$REPEAT" idle --sockets 5000 --room-size 50 --users 2500 --hold 5
run idle-20000 idle --sockets 19500 --room-size 50 --users 9750 --hold 5
run signup signup --count 1000 --concurrency 16
run signaling --repeat "$REPEAT" signaling --pairs 50 --rate 2000 --duration 10
run upload --repeat "$REPEAT" upload --size 256M --count 4 --concurrency 2
# Bounded soak (about 3.2 minutes: 60 s warm-up, 120 s measured): chat, signaling and uploads
# at once; exits 1 when one of its alarms fails.
run soak soak --duration 120

if [ -n "${LYCEUM_TEST_DATABASE_URL:-}" ]; then
    PG=(--database "$LYCEUM_TEST_DATABASE_URL")
    run pg-fanout-100-paced "${PG[@]}" --repeat "$REPEAT" fanout --clients 100 --rooms 1 --rate 500 --duration 10
    run pg-ingest "${PG[@]}" --repeat "$REPEAT" ingest --rooms 100 --max --in-flight 4 --duration 10
fi
echo "reports in $OUT"
