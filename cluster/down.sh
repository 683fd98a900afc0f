#!/usr/bin/env bash
# Stops the processes cluster/up.sh started (by the PIDs it recorded).
set -uo pipefail
cd "$(dirname "$0")"
for f in run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
    rm -f "$f"
done
