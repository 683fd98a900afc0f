#!/usr/bin/env bash
# Starts the local three-node fleet of cluster/README.md, or whatever part of
# it is not running (so after `kill -9` of one node, running this again
# brings back that node only):
#   - certificates in cluster/certs (`shoal certs`), made once;
#   - dnsmasq on 127.0.0.10:1053 serving lb.shoal.test from
#     lb.shoal.test.hosts (the nodes' seed name);
#   - three demo HTTP backends (python3 http.server) on 127.0.0.21-23:8000;
#   - shoal nodes 1-3 from node-{1,2,3}.toml on 127.0.0.11-13.
# Each process's PID goes to cluster/run/NAME.pid and its output to
# cluster/run/NAME.log; cluster/down.sh stops exactly those processes.
# Builds `shoal` in release mode first, unless SHOAL_BIN names a binary.
# Needs no root: all of 127.0.0.0/8 is loopback on Linux.
set -euo pipefail
# SHOAL_BIN is relative to where the script is run from.
[ -z "${SHOAL_BIN:-}" ] || SHOAL_BIN=$(realpath "$SHOAL_BIN")
cd "$(dirname "$0")"
# How long to wait for the fleet to form before giving up, in seconds.
ready_timeout_s=30

if [ -n "${SHOAL_BIN:-}" ]; then
    shoal=$SHOAL_BIN
else
    cargo build --release --manifest-path ../Cargo.toml -p shoal >&2
    shoal=$(realpath ../target/release/shoal)
fi
dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[ -x "$dnsmasq" ] || { echo "up.sh: dnsmasq is missing (Debian/Ubuntu: apt-get install dnsmasq-base)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "up.sh: python3 is missing (it runs the demo backends)" >&2; exit 1; }
mkdir -p run certs

# Whether run/NAME.pid names a live process running PROGRAM (a PID file left
# by a process that died, and reused since, does not count).
alive() {
    local pid
    pid=$(cat "run/$1.pid" 2>/dev/null) || return 1
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$2"
}

# start NAME PROGRAM ARGS...: runs it in the background unless it is alive.
start() {
    local name=$1
    shift
    if alive "$name" "$1"; then
        echo "$name: already running (PID $(cat "run/$name.pid"))"
        return
    fi
    "$@" >"run/$name.log" 2>&1 &
    echo $! >"run/$name.pid"
    echo "$name: started (PID $!), log in cluster/run/$name.log"
}

if [ ! -f certs/ca.pem ]; then
    "$shoal" certs init certs
fi
for i in 1 2 3; do
    [ -f "certs/node-$i.pem" ] || "$shoal" certs node "node-$i" certs
done

# Answers only from the hosts file: not the machine's configuration or
# /etc/hosts, nothing forwarded, any other .test name is NXDOMAIN.
start dnsmasq "$dnsmasq" --keep-in-foreground --conf-file=/dev/null --no-hosts \
    --no-resolv --local=/test/ --addn-hosts="$PWD/lb.shoal.test.hosts" \
    --bind-interfaces --listen-address=127.0.0.10 --port=1053 \
    --pid-file= --log-facility=- --log-queries

for n in 21 22 23; do
    mkdir -p "run/www-$n"
    echo "hello from backend 127.0.0.$n:8000" >"run/www-$n/index.html"
    start "backend-$n" python3 -m http.server 8000 --bind "127.0.0.$n" --directory "run/www-$n"
done

# The nodes' first health checks should find the backends listening.
python3 - <<'PY'
import socket, sys, time
deadline = time.monotonic() + 10
for n in (21, 22, 23):
    while True:
        try:
            socket.create_connection((f"127.0.0.{n}", 8000), timeout=1).close()
            break
        except OSError as e:
            if time.monotonic() > deadline:
                sys.exit(f"up.sh: backend 127.0.0.{n}:8000 does not answer ({e}); see cluster/run/backend-{n}.log")
            time.sleep(0.1)
PY

for i in 1 2 3; do
    start "node-$i" "$shoal" run -c "node-$i.toml"
done

# Waits until every node's /status shows the three members.
python3 - "$ready_timeout_s" <<'PY'
import json, sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
while True:
    live = {}
    for i in (1, 2, 3):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1{i}:9100/status", timeout=1) as r:
                live[i] = json.load(r)["cluster"]["live_nodes"]
        except Exception as e:
            live[i] = f"no answer ({e.__class__.__name__})"
    if all(v == 3 for v in live.values()):
        print("fleet up: every node sees 3 live members")
        break
    if time.monotonic() > deadline:
        print(f"up.sh: the fleet did not form in {sys.argv[1]} s; live members per node: {live}; "
              "see cluster/run/node-*.log", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
PY
cat <<MSG
  clients:   curl http://127.0.0.11:8080/   (also .12 and .13)
  status:    curl http://127.0.0.11:9100/status
  metrics:   curl http://127.0.0.11:9100/metrics
  DNS:       dig @127.0.0.10 -p 1053 lb.shoal.test +short
  stop:      bash cluster/down.sh   (or: just cluster-down)
MSG
