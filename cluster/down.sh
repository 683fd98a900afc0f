#!/usr/bin/env bash
# Stops the processes cluster/up.sh started, by the PIDs it recorded in
# cluster/run/*.pid, and nothing else: a PID whose process is gone, or now
# runs another program, is skipped. Nodes first (SIGTERM: they leave the
# fleet and drain, up to drain_timeout_ms), then the backends and dnsmasq.
#   bash cluster/down.sh            everything
#   bash cluster/down.sh node-2     one process (a name from cluster/run)
set -uo pipefail
cd "$(dirname "$0")"
# How long to wait for a process to exit after SIGTERM, in seconds: covers
# the nodes' drain_timeout_ms (10 s) and the admin endpoint's grace.
stop_timeout_s=15

# The program each PID file must still be running.
program() {
    case $1 in
    node-*) echo "shoal" ;;
    backend-*) echo "http.server" ;;
    dnsmasq) echo "dnsmasq" ;;
    *) echo "?" ;;
    esac
}

stop() {
    local name=$1 pid
    pid=$(cat "run/$name.pid" 2>/dev/null) || { echo "$name: no PID file in cluster/run"; return; }
    if ! [ -r "/proc/$pid/cmdline" ] || ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(program "$name")"; then
        echo "$name: not running (PID $pid gone)"
        rm -f "run/$name.pid"
        return
    fi
    kill -TERM "$pid"
    for _ in $(seq $((stop_timeout_s * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name: still running ${stop_timeout_s} s after SIGTERM (PID $pid); left alone" >&2
        return
    fi
    echo "$name: stopped (PID $pid)"
    rm -f "run/$name.pid"
}

if [ $# -gt 0 ]; then
    for name in "$@"; do stop "$name"; done
    exit 0
fi
# The nodes stop in parallel, each draining on its own.
for f in run/node-*.pid; do
    [ -e "$f" ] && stop "$(basename "$f" .pid)" &
done
wait
for f in run/backend-*.pid run/dnsmasq.pid; do
    [ -e "$f" ] && stop "$(basename "$f" .pid)"
done
exit 0
