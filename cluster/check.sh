#!/usr/bin/env bash
# Checks what cluster/ ships, with the given shoal binary (CI runs it):
#   - shoal@.service with `systemd-analyze verify`, on a copy whose
#     /usr/local/bin/shoal is the given binary (verify refuses a unit whose
#     ExecStart does not exist), as the instance shoal@node-1.service. verify
#     exits 0 after mere warnings (an unknown key, a bad signal name), so any
#     output at all fails the check. Needs no running systemd.
#   - node-{1,2,3}.toml with `shoal check-config`, on copies next to
#     freshly made certificates (cluster/certs is not committed).
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

"$shoal" certs init "$work/certs" >/dev/null
for i in 1 2 3; do
    "$shoal" certs node "node-$i" "$work/certs" >/dev/null
    cp "node-$i.toml" "$work/"
    "$shoal" check-config "$work/node-$i.toml" >/dev/null
    echo "cluster/node-$i.toml: check-config: valid"
done
