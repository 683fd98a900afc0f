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

# The fleet-wide budget alone between 2-10 nodes with late, reordered
# views (crates/shoal-core/tests/budget_model.rs), over 20,000 seeds.
budget-model:
    cargo test --release -p shoal-core --test budget_model -- --include-ignored --nocapture

# The fleet-wide budget's figures (decision 48): each budget scenario over
# seeds 1..N, its peak and refusals (and the crash's refill) per seed.
budget-figures N="20":
    cargo build --release -q -p shoal-sim
    for s in budget-burst budget-partition budget-crash; do for seed in $(seq 1 {{N}}); do echo "$s seed $seed: $(./target/release/shoal-sim run $s --seed $seed | grep -E '^  budget [0-9]+:|refill after' | tr -s ' ' | tr '\n' ' ')"; done; done

# Start the local three-node fleet of cluster/README.md (127.0.0.11-13:
# certs, dnsmasq for lb.shoal.test, demo backends, 3 nodes; PIDs in
# cluster/run/), or whatever part of it is not running.
cluster-up:
    bash cluster/up.sh

# Stop exactly the processes cluster-up started (by their PIDs).
cluster-down:
    bash cluster/down.sh

# What CI checks of cluster/shoal@.service (systemd-analyze verify).
cluster-check:
    cargo build -p shoal
    bash cluster/check.sh target/debug/shoal

# Measure the fleet (propagation, failure detection, gossip cost) into docs/fleet-figures.md:
# 3, 10 and 30 nodes with 1, 10 and 100 backends (~3 minutes). Other sizes:
# `just fleet-measure --nodes 3,10 --backends 100 --samples 40 --rounds 3`.
fleet-measure *ARGS="--nodes 3,10,30 --backends 10,100 --samples 12 --rounds 1 --window-s 10":
    cargo build --release -p shoal
    cargo run --release -p shoal-e2e --bin fleet_measure -- {{ARGS}} --out docs/fleet-figures.md

# Connects clients lose after a kill -9 of one of 3 nodes: a fixed address
# list against the fleet's own DNS answer ([dns]); ~25 s per round.
dns-failover *ARGS="--clients 8 --seconds 20 --kill-at-s 5 --rounds 3":
    cargo build --release -p shoal
    cargo run --release -p shoal-e2e --bin dns_failover -- {{ARGS}}

# 1,000 live reloads under load (the default test run does 100:
# tests/tests/reload.rs); prints connections attempted and failed.
reload-long:
    cargo build -p shoal
    cargo test -p shoal-e2e --test reload -- --ignored --nocapture a_thousand_reloads

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

# The balance-quality study (~4 min): every policy on the five study scenarios, seeds 1-10.
study:
    cargo run --release -p shoal-sim -- study --out simulations/RESULTS.md

# Soak a fleet of 5 nodes for MINUTES under client load, node and backend
# churn; samples fds, RSS and counts every minute, checks that nothing is
# left at the end; writes docs/soak.md (exit 1 on a finding).
soak MINUTES="30":
    cargo build --release -p shoal && cargo run --release -p shoal-e2e --bin soak -- --minutes {{MINUTES}} --out docs/soak.md

# The chaos run (needs root): 5 nodes on hosts of their own (network
# namespaces), clients through a round-robin name, a random fault schedule
# (kill -9, SIGTERM, backend death, partition) from a printed seed; prints
# each fault as it happens and the summary (exit 1 on a finding).
# `cargo test` runs a 60-second variant (tests/tests/chaos.rs).
chaos MINUTES="5":
    cargo build --release -p shoal && cargo run --release -p shoal-e2e --bin chaos -- --minutes {{MINUTES}}

# Fuzz one target (wire_datagram, wire_sync or config) for SECONDS:
# `just fuzz wire_datagram 3600`. New inputs go to fuzz/corpus-work/,
# crashes to fuzz/artifacts/; see fuzz/README.md.
fuzz TARGET SECONDS="600":
    bash fuzz/run.sh {{TARGET}} -max_total_time={{SECONDS}}

# Refresh the RustSec advisory snapshot CI checks offline (.ci/advisory-db)
# from GitHub (needs network), for every crate in the lock files; then
# `python3 .ci/advisories.py check` (what CI runs).
advisories-update:
    python3 .ci/advisories.py update
    python3 .ci/advisories.py check
