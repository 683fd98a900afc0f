#!/usr/bin/env bash
# Runs one fuzz target over the committed corpus: `fuzz/run.sh TARGET
# LIMIT [libFuzzer flags...]`, LIMIT being `-runs=N` or
# `-max_total_time=SECONDS`. New inputs go to $FUZZ_WORK/TARGET
# (default fuzz/corpus-work/TARGET, not committed), crashes to
# fuzz/artifacts/TARGET/. The one place that knows each target's flags.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:?usage: fuzz/run.sh TARGET LIMIT [libFuzzer flags...]}"
limit="${2:?usage: fuzz/run.sh TARGET LIMIT [libFuzzer flags...]}"
shift 2

# Inputs a little over each parser's own maximum, so the length checks
# are fuzzed too, but no bigger: longer inputs only slow the search.
case "$target" in
    wire_datagram) max_len=2048 ;;  # wire::PACKET_BYTES_MAX is 1500
    wire_sync) max_len=16384 ;;     # the seed syncs are ~1 KiB; SYNC_BYTES_MAX (4 MiB) is checked before decoding
    config) max_len=8192 ;;         # the seed configs are under 2 KiB
    proxy_header) max_len=1100 ;;   # proxy_header::HEADER_BYTES_MAX is 1024
    *) echo "fuzz/run.sh: unknown target $target" >&2; exit 2 ;;
esac

work="${FUZZ_WORK:-fuzz/corpus-work}/$target"
mkdir -p "$work" "fuzz/artifacts/$target"
# -s none: no sanitizer, so the stable toolchain builds the targets
# (shoal has no unsafe code; libFuzzer's coverage and Rust's panics and
# debug assertions are what finds bugs).
exec cargo fuzz run -s none "$target" "$work" "fuzz/corpus/$target" -- \
    "$limit" -max_len="$max_len" -print_final_stats=1 "$@"
