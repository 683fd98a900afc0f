#!/usr/bin/env bash
# CI's fuzz step: builds the targets, then runs each over the committed
# corpus (every input replayed) and fuzzes a little, FUZZ_RUNS executions
# in all per target (default 20000). A crash fails the step and prints
# the panic and the input (base64) in the log.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${FUZZ_RUNS:-20000}"
targets=(wire_datagram wire_sync config proxy_header)

command -v cargo-fuzz >/dev/null || { echo "fuzz/ci.sh: cargo-fuzz is missing (cargo install cargo-fuzz --locked)" >&2; exit 1; }

for t in "${targets[@]}"; do
    cargo fuzz build -s none "$t"
done

# New inputs found here are not kept: the committed corpus is the input.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    echo "-- fuzz $t: $(ls "fuzz/corpus/$t" | wc -l) corpus inputs, $runs runs"
    status=0
    FUZZ_WORK="$work" bash fuzz/run.sh "$t" -runs="$runs" >"$work/$t.log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|^stat::peak_rss' "$work/$t.log" || true
    if [ "$status" -ne 0 ]; then
        # The panic and the input, in the log: CI's checkout is thrown away.
        grep -E -A4 'panicked at|^==[0-9]+== ERROR|deadly signal|-rss_limit|timeout after' "$work/$t.log" | head -n 40 >&2 || true
        for f in "fuzz/artifacts/$t"/*; do
            [ -f "$f" ] || continue
            echo "$f ($(wc -c <"$f") bytes), base64 (first 64 KiB):" >&2
            head -c 65536 "$f" | base64 -w 0 >&2
            echo >&2
        done
        echo "fuzz/ci.sh: $t failed (exit $status); replay the input with: cargo fuzz run -s none $t FILE" >&2
        exit 1
    fi
done
