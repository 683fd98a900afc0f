#!/usr/bin/env bash
# Checks cluster/shoal@.service with `systemd-analyze verify` (CI runs it),
# on a copy whose /usr/local/bin/shoal is the given binary (verify refuses a
# unit whose ExecStart does not exist), as the instance
# shoal@node-1.service. verify exits 0 after mere warnings (an unknown key,
# a bad signal name), so any output at all fails the check. Needs no
# running systemd. (The node configs are checked by `cargo test`:
# crates/shoal/tests/cli.rs runs check-config on every cluster/*.toml.)
# Usage: bash cluster/check.sh target/debug/shoal
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 SHOAL_BINARY" >&2; exit 2; }
shoal=$(realpath "$1")
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed "s#/usr/local/bin/shoal#$shoal#g" shoal@.service >"$work/shoal@.service"
ln -s shoal@.service "$work/shoal@node-1.service"
if ! out=$(systemd-analyze verify "$work/shoal@node-1.service" 2>&1) || [ -n "$out" ]; then
    echo "cluster/shoal@.service: systemd-analyze verify:" >&2
    echo "${out:-(failed without a message)}" >&2
    exit 1
fi
echo "cluster/shoal@.service: systemd-analyze verify: clean"
