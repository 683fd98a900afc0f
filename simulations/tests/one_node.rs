//! One-node simulation tests: the single-node simulator's tests, on the
//! fleet simulator with `nodes = 1` (one simulator, one set of bounds and
//! planted bugs). Every one-node scenario file under every core policy for
//! fixed seeds, `chaos` seeds, the seed that shows why `connect_timeout`
//! is in the recovery bound, determinism of the trace hash, the policy
//! changing the trace, and planted bugs that prove each per-node
//! invariant can fail.

use shoal_core::Policy;
use shoal_sim::Invariant;
use shoal_sim::fleet::{self, Chooser, FleetBug, FleetReport, FleetScenario};
use std::ops::Range;
use std::time::Duration;

/// Seeds every one-node scenario runs with under every policy.
const SEEDS: [u64; 4] = [0, 1, 2, 0xdead_beef];

/// Seeds `chaos` runs with (each draws its own scenario).
const CHAOS_SEEDS: Range<u64> = 0..40;

/// The one-node scenario files.
const ONE_NODE: [&str; 4] = [
    "steady",
    "die-and-recover",
    "flapping",
    "all-die-one-recovers",
];

fn scenario(name: &str, seed: u64) -> FleetScenario {
    FleetScenario::named(name, seed)
        .unwrap_or_else(|| panic!("no scenario `{name}`"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn must_pass(s: &FleetScenario, seed: u64) -> FleetReport {
    match fleet::run(s, seed) {
        Ok(r) => {
            assert!(r.clients.adds_up(), "{r}");
            assert_eq!(r.nodes, 1);
            r
        }
        Err(v) => panic!(
            "{v}\nreplay: cargo run --release -p shoal-sim -- run {} --seed {seed} --policy {}",
            s.name, s.chooser
        ),
    }
}

#[test]
fn one_node_scenarios_pass_under_every_policy() {
    for name in ONE_NODE {
        for policy in Policy::ALL {
            let s = scenario(name, 0).with_chooser(Chooser::Policy(policy));
            assert_eq!(s.nodes, 1, "{name}");
            for seed in SEEDS {
                let r = must_pass(&s, seed);
                let c = &r.clients;
                assert!(c.arrived > 1_000, "{name}: {r}");
                // Each scenario's faults must show up, or it tests nothing
                // (its `[expect]` table asks the same of every run).
                match name {
                    "steady" => {
                        assert_eq!(c.refused() + c.reset_backend, 0, "{r}");
                        assert_eq!(r.backend_detections.count, 0, "{r}");
                    }
                    "die-and-recover" => {
                        assert_eq!(c.refused(), 0, "two backends stay up: {r}");
                        assert_eq!(r.backend_detections.count, 1, "{r}");
                        assert_eq!(r.backend_recoveries.count, 1, "{r}");
                    }
                    "flapping" => assert!(r.backend_detections.count >= 2, "{r}"),
                    "all-die-one-recovers" => {
                        assert!(c.refused_no_backend > 0, "{r}");
                        assert_eq!(r.backend_recoveries.count, 1, "{r}");
                    }
                    other => panic!("no expectations for `{other}`"),
                }
            }
        }
    }
}

#[test]
fn chaos_passes_for_fixed_seeds() {
    for seed in CHAOS_SEEDS {
        must_pass(&scenario("chaos", seed), seed);
    }
}

/// The reason `connect_timeout` is in the recovery bound, kept as a test
/// so that nobody tightens the bound back: this run takes longer to
/// recover than `interval × rise + timeout + rtt_max` (9.55 s against
/// 8.37 s; bound 9.69 s). The single-node simulator's `chaos` seeds 19,
/// 26, 87 and 101 found it; 59 is the `chaos` seed that shows it here.
#[test]
fn recovery_can_outlast_rise_checks_plus_check_timeout() {
    let s = scenario("chaos", 59);
    let h = s.health.config();
    assert!(
        Duration::from_millis(s.backends.connect_timeout_ms) > h.timeout,
        "{s:?}"
    );
    let r = must_pass(&s, 59);
    let without_connects =
        h.interval * h.rise + h.timeout + Duration::from_micros(s.backends.rtt_max_us);
    let slowest = r.backend_recoveries.max;
    assert!(
        slowest > without_connects,
        "{slowest:?} <= {without_connects:?}: {r}"
    );
    assert!(slowest <= r.bounds.recovery, "{r}");
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let mut scenarios: Vec<FleetScenario> = ONE_NODE.map(|n| scenario(n, 0)).to_vec();
    scenarios.push(scenario("chaos", 11));
    for s in scenarios {
        let a = must_pass(&s, 11);
        let b = must_pass(&s, 11);
        assert_eq!(a, b, "{}: same seed, same report", s.name);
        let c = must_pass(&s, 12);
        assert_ne!(a.trace_hash, c.trace_hash, "{}: seeds 11 and 12", s.name);
    }
}

#[test]
fn the_policy_changes_the_trace() {
    let s = scenario("die-and-recover", 0);
    let with = |p: Policy| must_pass(&s.clone().with_chooser(Chooser::Policy(p)), 5).trace_hash;
    // Alone, least-conn is an argmin over this node's counts (decision
    // 58) and local-least-conn the power of two choices over them: every
    // pair differs.
    let hashes: Vec<u64> = Policy::ALL.into_iter().map(with).collect();
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            assert_ne!(a, b, "{hashes:x?}");
        }
    }
}

fn must_fail(s: FleetScenario, expected: Invariant) {
    for seed in SEEDS {
        match fleet::run(&s, seed) {
            Ok(r) => panic!("planted bug {:?} not caught: {r}", s.plant_bug),
            Err(v) => {
                assert_eq!(v.invariant, expected, "{v}");
                assert_eq!(v.seed, seed);
                assert!(v.to_string().starts_with(&format!("SEED={seed} ")), "{v}");
            }
        }
    }
}

#[test]
fn a_node_that_never_learns_of_deaths_is_caught() {
    must_fail(
        scenario("die-and-recover", 0).with_bug(FleetBug::IgnoreHealth),
        Invariant::Detection,
    );
}

#[test]
fn a_leaked_count_is_caught() {
    must_fail(
        scenario("die-and-recover", 0).with_bug(FleetBug::LeakOnConnectFailure),
        Invariant::Counts,
    );
}

#[test]
fn refusing_clients_while_backends_are_up_is_caught() {
    must_fail(
        scenario("steady", 0).with_bug(FleetBug::SuccessAsFailure),
        Invariant::Refusal,
    );
}

/// Caught during the run, at the recovery deadline, not only at the end.
#[test]
fn a_backend_that_never_comes_back_is_caught() {
    must_fail(
        scenario("die-and-recover", 0).with_bug(FleetBug::IgnoreCheckSuccesses),
        Invariant::Recovery,
    );
    let s = scenario("die-and-recover", 0).with_bug(FleetBug::IgnoreCheckSuccesses);
    let v = fleet::run(&s, 1).unwrap_err();
    // #1 is back at 30 s; the recovery bound is 6.004 s; the run ends later.
    assert_eq!(v.at.as_nanos(), 36_004_000_000, "{v}");
}
