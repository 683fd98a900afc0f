#!/usr/bin/env bash
# Starts a local three-node fleet from cluster/node-{1,2,3}.toml: makes the
# certificates (cluster/certs), three demo HTTP backends on 127.0.0.1:5001-5003
# (python3's http.server), and three shoal processes. PIDs go to cluster/run/;
# cluster/down.sh stops exactly those processes.
set -euo pipefail
cd "$(dirname "$0")"
root=..
cargo build --release --manifest-path "$root/Cargo.toml" -p shoal >&2
shoal="$root/target/release/shoal"
mkdir -p run certs
if [ ! -f certs/ca.pem ]; then
    "$shoal" certs init certs
fi
for i in 1 2 3; do
    [ -f "certs/node-$i.pem" ] || "$shoal" certs node "node-$i" certs
done
for port in 5001 5002 5003; do
    mkdir -p "run/www-$port"
    echo "hello from backend $port" > "run/www-$port/index.html"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "run/www-$port" >"run/backend-$port.log" 2>&1 &
    echo $! > "run/backend-$port.pid"
done
for i in 1 2 3; do
    "$shoal" run -c "node-$i.toml" >"run/node-$i.log" 2>&1 &
    echo $! > "run/node-$i.pid"
done
sleep 2
cat <<MSG
fleet up: clients on 127.0.0.1:8081-8083, status on http://127.0.0.1:9101-9103/status
  curl -s http://127.0.0.1:8081/
  curl -s http://127.0.0.1:9101/status
logs in cluster/run/*.log; stop with cluster/down.sh
MSG
