# Everyday commands. Nothing here is required: the README gives the plain
# cargo commands these wrap.

# Run every test (unit, end-to-end, simulation), as CI does.
test:
    cargo test --workspace

# Run the embedded demo: demo backends and a node on loopback.
demo *ARGS:
    cargo run --release -- demo {{ARGS}}

# Format the code.
fmt:
    cargo fmt --all

# Lints as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Everything CI runs.
ci:
    bash .ci/run

# Check a configuration file.
check-config FILE:
    cargo run --release -- check-config {{FILE}}

# Run one simulated scenario (one node or a fleet): `just sim die-and-recover 7`.
sim SCENARIO SEED="1":
    cargo run --release -p shoal-sim -- run {{SCENARIO}} --seed {{SEED}}

# Many seeds over the one-node scenarios, chaos and fleet-swarm: `just swarm 0..1000`.
swarm SEEDS="0..200":
    cargo run --release -p shoal-sim -- swarm --seeds {{SEEDS}}

# Start a local three-node fleet (certs, demo backends, 3 processes).
cluster-up:
    bash cluster/up.sh

# Stop the fleet that cluster-up started.
cluster-down:
    bash cluster/down.sh

# Measure the fleet (propagation, failure detection, gossip cost) into docs/fleet-figures.md:
# 3, 10 and 30 nodes with 1, 10 and 100 backends (~3 minutes). Other sizes:
# `just fleet-measure --nodes 3,10 --backends 100 --samples 40 --rounds 3`.
fleet-measure *ARGS="--nodes 3,10,30 --backends 10,100 --samples 12 --rounds 1 --window-s 10":
    cargo build --release -p shoal
    cargo run --release -p shoal-e2e --bin fleet_measure -- {{ARGS}} --out docs/fleet-figures.md

# Side by side with HAProxy and direct, on loopback; writes BENCHMARKS.md.
bench:
    python3 bench/bench.py

# Micro-benchmarks of the core (criterion).
bench-core:
    cargo bench -p shoal-core

# The same as `sim` (kept for old habits): `just sim-fleet partition-heal 7`.
sim-fleet SCENARIO SEED="1":
    cargo run --release -p shoal-sim -- run {{SCENARIO}} --seed {{SEED}}

# 1000-node convergence (membership figures; slow: minutes).
sim-1000:
    cargo run --release -p shoal-sim -- run convergence-1000 --seed 1 --keep-going

# False downs per node-hour at 5 % loss and 20 ± 15 ms latency (decision 50):
# the simulated hour of `false-downs` (10 nodes, no death) for each seed, ~1 s each.
false-downs SEEDS="1 2 3 4 5":
    cargo build --release -p shoal-sim
    for s in {{SEEDS}}; do cargo run -q --release -p shoal-sim -- run false-downs --seed $s | grep -E '^SEED|per node-hour|membership events'; done

# The balance-quality study: every policy on skewed-dns and sparse-long-lived.
study:
    cargo run --release -p shoal-sim -- study --out simulations/RESULTS.md

# Soak a fleet of 5 nodes for MINUTES under client load, node and backend
# churn; samples fds, RSS and counts every minute, checks that nothing is
# left at the end; writes docs/soak.md (exit 1 on a finding).
soak MINUTES="30":
    cargo build --release -p shoal && cargo run --release -p shoal-e2e --bin soak -- --minutes {{MINUTES}} --out docs/soak.md

# Fuzz one target (wire_datagram, wire_sync or config) for SECONDS:
# `just fuzz wire_datagram 3600`. New inputs go to fuzz/corpus-work/,
# crashes to fuzz/artifacts/; see fuzz/README.md.
fuzz TARGET SECONDS="600":
    bash fuzz/run.sh {{TARGET}} -max_total_time={{SECONDS}}
