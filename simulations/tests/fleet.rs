//! Fleet simulation tests with seeds: every scenario file (its `[quick]`
//! variant) for fixed seeds, every policy and reference chooser, swarm
//! seeds, determinism of the trace hash, the regressions list, drains, and
//! planted bugs that prove each fleet invariant can fail. The one-node
//! scenarios have their own file (`one_node.rs`).

use shoal_sim::Invariant;
use shoal_sim::fleet::regressions::{self, Regression};
use shoal_sim::fleet::scenario::{FaultKind, FaultSpec, SCENARIO_FILES};
use shoal_sim::fleet::{self, Chooser, FleetBug, FleetReport, FleetScenario};
use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

/// Seeds every scenario file runs with.
const SEEDS: [u64; 3] = [1, 2, 0xdead_beef];

/// Seeds `fleet-swarm` runs with (each draws its own scenario).
const SWARM_SEEDS: Range<u64> = 0..12;

fn scenario(name: &str, seed: u64) -> FleetScenario {
    FleetScenario::named(name, seed)
        .unwrap_or_else(|| panic!("no scenario `{name}`"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn quick(name: &str) -> FleetScenario {
    scenario(name, 0).quick()
}

fn must_pass(s: &FleetScenario, seed: u64, replay: &str) -> FleetReport {
    match fleet::run(s, seed) {
        Ok(r) => {
            assert!(r.clients.adds_up(), "{r}");
            r
        }
        Err(v) => panic!(
            "{v}\nreplay: cargo run --release -p shoal-sim -- run {} --seed {seed} --policy {} {replay}",
            s.name, s.chooser
        ),
    }
}

#[test]
fn every_scenario_file_is_compiled_in() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let compiled: BTreeSet<String> = SCENARIO_FILES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, compiled, "add new files to SCENARIO_FILES");
}

#[test]
fn every_scenario_passes_for_fixed_seeds() {
    for name in FleetScenario::names() {
        let s = quick(name);
        for seed in SEEDS {
            let r = must_pass(&s, seed, "--quick");
            assert!(r.clients.arrived > 50, "{name}: {r}");
            assert!(r.formation.is_some(), "{name}: the fleet formed: {r}");
            // Each scenario's faults must show, or it tests nothing.
            match name {
                "steady-state" | "skewed-dns" | "sparse-long-lived" | "burst-herd"
                | "heterogeneous" => {
                    assert_eq!(r.members.downs, 0, "{name}: {r}");
                    assert!(r.balance.samples > 0, "{name}: {r}");
                }
                "node-crash" => {
                    assert!(r.crash_detections_each.count >= 4, "{r}");
                    assert_eq!(r.joins.count, 1, "{r}");
                }
                "partition-heal" => assert!(r.members.rejoins > 0, "{r}"),
                "backend-flap" => {
                    assert!(r.backend_detections.count >= s.nodes, "{r}");
                    assert!(r.backend_recoveries.count >= s.nodes, "{r}");
                }
                "rolling-restart" => {
                    assert_eq!(r.members.restarts, s.nodes as u64, "{r}");
                    assert!(r.leave_detections.count >= s.nodes - 1, "{r}");
                }
                "convergence-1000" => assert_eq!(r.crash_detections.count, 3, "{r}"),
                // Two probes per backend per interval once settled (the
                // end check holds it to exactly 2 checkers), where every
                // node checking made one per node; every live node stopped
                // using the dead backends.
                "shared-checks" => {
                    assert!(r.probes_per_backend_interval <= 2.5, "{r}");
                    assert!(r.probes_per_backend_interval >= 1.5, "{r}");
                    assert!(r.fleet_detections.count >= s.nodes, "{r}");
                    assert!(r.crash_detections_each.count >= 4, "{r}");
                }
                // The drain did not cross the cut, the later undrain won
                // over a clock behind (also its `[expect]`).
                "drain-partition" => {
                    assert!(r.drains.connects_drained_elsewhere > 0, "{r}");
                    assert_eq!(r.drains.commands, 4, "{r}");
                    assert!(r.drains.clock_behind >= 1, "{r}");
                    // Two commands reached the two others of their side
                    // in one hop, two the five others of the whole fleet.
                    assert_eq!(r.drains.hops_checked, 2 + 2 + 5 + 5, "{r}");
                    assert!(r.members.downs > 0, "{r}");
                }
                // One node: `one_node.rs` holds them to more.
                "steady" | "die-and-recover" | "flapping" | "all-die-one-recovers" => {
                    assert_eq!(r.nodes, 1, "{r}");
                    assert!(r.formation.is_some(), "{r}");
                }
                // The warm start the seeds held up lasted (its expectation
                // checks what the node did meanwhile).
                "slow-seed" => {
                    assert!(r.warm_starts.max >= Duration::from_secs(12), "{r}");
                    assert_eq!(r.members.restarts, 1, "{r}");
                }
                // Fleet-wide budgets (decision 48): the burst reached the
                // budget and stayed within 5 % of it; the partition went
                // over it (each side holding its part) within its bound;
                // the crashed node's share came back.
                "budget-burst" => {
                    let b = r.budget.as_ref().expect("a budget");
                    assert!(r.clients.refused_budget > 0, "{r}");
                    assert!(u64::from(b.peak) * 100 <= u64::from(b.limit) * 105, "{r}");
                }
                "budget-partition" => {
                    let b = r.budget.as_ref().expect("a budget");
                    assert!(r.members.downs > 0, "{r}");
                    assert!(b.peak > b.limit, "the split shows: {r}");
                }
                "budget-crash" => {
                    let b = r.budget.as_ref().expect("a budget");
                    assert_eq!(b.refills.count, 1, "{r}");
                    assert!(b.peak <= b.limit * 105 / 100, "{r}");
                }
                // No death: every down would be a false one (decision 50;
                // also its `[expect]`).
                "false-downs" => {
                    assert_eq!(r.members.downs, 0, "{r}");
                    assert_eq!(r.members.rejoins, 0, "{r}");
                    assert!(r.net.lost > 0, "{r}");
                }
                // Four crashes and four restarts. Crashes 2 s apart (n3,
                // then n4) may leave the second dying before it saw the
                // first, so "seen by every other node" can miss one.
                "churn" => {
                    assert_eq!(r.members.restarts, 4, "{r}");
                    assert!(r.crash_detections.count >= 3, "{r}");
                    assert!(r.crash_detections_each.count >= 15, "{r}");
                    assert!(r.balance.samples > 0, "{r}");
                }
                other => panic!("no expectations for `{other}`"),
            }
        }
    }
}

#[test]
fn every_policy_and_reference_chooser_passes_and_differs() {
    let s = quick("skewed-dns");
    let mut traces = BTreeSet::new();
    for chooser in Chooser::ALL {
        let r = must_pass(&s.clone().with_chooser(chooser), 3, "--quick");
        assert_eq!(r.chooser, chooser);
        assert!(r.balance.peak_over_mean_avg >= 1.0, "{r}");
        traces.insert(r.trace_hash);
    }
    assert_eq!(
        traces.len(),
        Chooser::ALL.len(),
        "each chooser chooses its own way"
    );
}

#[test]
fn swarm_seeds_pass() {
    for seed in SWARM_SEEDS {
        must_pass(&scenario("fleet-swarm", seed), seed, "");
    }
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    for s in [quick("partition-heal"), scenario("fleet-swarm", 5)] {
        let a = must_pass(&s, 5, "");
        let b = must_pass(&s, 5, "");
        assert_eq!(a, b, "{}: same seed, same report", s.name);
        let c = must_pass(&s, 6, "");
        assert_ne!(a.trace_hash, c.trace_hash, "{}: seeds 5 and 6", s.name);
    }
}

fn replay(r: &Regression) -> Result<FleetReport, shoal_sim::Violation> {
    let s = scenario(&r.scenario, r.seed);
    let s = if r.quick { s.quick() } else { s };
    let s = match &r.policy {
        Some(p) => s.with_chooser(p.parse().unwrap()),
        None => s,
    };
    fleet::run(&s, r.seed)
}

#[test]
fn regressions_replay() {
    let list = regressions::all();
    assert!(!list.is_empty());
    for r in list {
        match (replay(&r), &r.known_violation) {
            (Ok(_), None) => {}
            (Err(v), None) => panic!("{v}\n({}: {})", r.scenario, r.note),
            (Err(v), Some(known)) => assert_eq!(
                &v.invariant.to_string(),
                known,
                "{v}: a known core problem now breaks another invariant"
            ),
            (Ok(rep), Some(known)) => panic!(
                "{} --seed {} no longer breaks `{known}`: the core problem is fixed? remove `known_violation` from regressions.toml\n{rep}",
                r.scenario, r.seed
            ),
        }
    }
}

fn must_fail(s: FleetScenario, expected: Invariant) {
    for seed in [1, 2] {
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
fn a_node_that_ignores_health_is_caught() {
    must_fail(
        quick("backend-flap").with_bug(FleetBug::IgnoreHealth),
        Invariant::Detection,
    );
}

#[test]
fn a_node_that_never_publishes_is_caught() {
    must_fail(
        quick("steady-state").with_bug(FleetBug::SkipReports),
        Invariant::View,
    );
}

#[test]
fn a_node_that_never_joins_is_caught() {
    must_fail(
        quick("steady-state").with_bug(FleetBug::NeverJoins),
        Invariant::Membership,
    );
}

#[test]
fn a_leaked_count_is_caught() {
    must_fail(
        quick("backend-flap").with_bug(FleetBug::LeakOnConnectFailure),
        Invariant::Counts,
    );
}

#[test]
fn a_node_that_takes_healthy_backends_down_is_caught() {
    must_fail(
        quick("steady-state").with_bug(FleetBug::SuccessAsFailure),
        Invariant::Refusal,
    );
}

/// The warm-start stall regression: the runtime once handled no datagram
/// or timer while its warm start waited for a slow seed. With the shell
/// dropping a warming node's datagrams (as that runtime did), `slow-seed`
/// fails its expectation: peers declare the node down and its pool has
/// none of their load when it starts accepting.
#[test]
fn a_node_deaf_while_warming_is_caught() {
    must_fail(
        quick("slow-seed").with_bug(FleetBug::DeafWhileWarming),
        Invariant::Expectation,
    );
}

/// A node that holds a drain must not open a connection to the backend:
/// with the shell clearing the last node's draining flags after every
/// input (its data plane ignores drains), the drain invariant fires at its
/// first connection to the drained backend after the drain reached it.
/// `drain-partition`'s last node, n5, learns n3's drain of #1 at 40 s.
#[test]
fn a_node_that_ignores_drains_is_caught() {
    must_fail(
        quick("drain-partition").with_bug(FleetBug::IgnoreDrain),
        Invariant::Drain,
    );
    let v = fleet::run(&quick("drain-partition").with_bug(FleetBug::IgnoreDrain), 1).unwrap_err();
    assert!(v.detail.contains("which it holds drained"), "{v}");
}

/// A steady fleet whose last node, with the network dropping every report
/// it sends (`SkipReports`), drains backend #1 a second before the
/// liveness phase; isolated first if `isolated`.
fn drain_on_a_mute_node(isolated: bool) -> FleetScenario {
    let mut s = quick("steady-state").with_bug(FleetBug::SkipReports);
    let last = s.nodes - 1;
    if isolated {
        let mut cut = FaultSpec::new(s.duration_ms - 2_000, FaultKind::Isolate);
        cut.node = Some(last);
        s.faults.push(cut);
    }
    let mut drain = FaultSpec::new(s.duration_ms - 1_000, FaultKind::Drain);
    drain.node = Some(last);
    drain.backend = Some(1);
    s.faults.push(drain);
    s
}

/// The drain hop check can fail: the issuer's publication never leaves
/// it, so the members it holds alive lack the mark one hop later.
#[test]
fn a_drain_publication_that_never_arrives_is_caught() {
    must_fail(drain_on_a_mute_node(false), Invariant::Drain);
    let v = fleet::run(&drain_on_a_mute_node(false), 1).unwrap_err();
    assert!(v.detail.contains("(drain hop bound)"), "{v}");
}

/// The drain bound can fail: the issuer is cut off when it drains (no
/// hop to check) and its reports never leave it, so after the heal no
/// peer learns the drain but from a sync, too late for the drain bound
/// (checked before the view bound, which breaks at the same sample).
#[test]
fn a_drain_that_never_reaches_the_fleet_is_caught() {
    must_fail(drain_on_a_mute_node(true), Invariant::Drain);
    let v = fleet::run(&drain_on_a_mute_node(true), 1).unwrap_err();
    assert!(v.detail.contains("(drain bound"), "{v}");
}

/// Seeds of the least-conn comparison.
const BALANCE_SEEDS: std::ops::RangeInclusive<u64> = 1..=4;

/// The means over `BALANCE_SEEDS` of the time-averaged peak/mean balance
/// figure and of its p99: the full scenario (`full`, as the study runs
/// it) or its `[quick]` variant. The seeds run on every core.
fn balance_of(name: &str, chooser: &str, full: bool) -> (f64, f64) {
    let runs: Vec<(f64, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = BALANCE_SEEDS
            .map(|seed| {
                scope.spawn(move || {
                    let s = if full {
                        scenario(name, seed)
                    } else {
                        quick(name)
                    };
                    let s = s.with_chooser(chooser.parse().unwrap());
                    let r = must_pass(&s, seed, if full { "" } else { "--quick" });
                    assert!(r.balance.samples > 100, "{name} {chooser}: {r}");
                    (r.balance.peak_over_mean_avg, r.balance.peak_over_mean_p99)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let n = runs.len() as f64;
    (
        runs.iter().map(|r| r.0).sum::<f64>() / n,
        runs.iter().map(|r| r.1).sum::<f64>() / n,
    )
}

fn balance(name: &str, chooser: &str) -> (f64, f64) {
    balance_of(name, chooser, false)
}

/// Issue 13's goal, pinned: `least-conn` (own counts first, decision 58,
/// with early reports, decision 61) on every scenario of the balance
/// study stays within 5 % of the oracle's time-averaged peak/mean and
/// 10 % of its p99, and beats the power of two choices it replaced (the
/// study's scenarios as it runs them, seeds 1..=4; the full study, 10
/// seeds, is simulations/RESULTS.md). Measured when written (÷ oracle,
/// avg / p99): steady-state 1.033 / 1.076, skewed-dns 1.010 / 1.021,
/// sparse-long-lived 1.002 / 1.018, burst-herd 1.020 / 1.044, churn
/// 1.034 / 1.061, heterogeneous 1.020 / 1.049. Without early reports
/// (`REPORT_EARLY_MAX_DEFAULT = 0`) it fails on sparse-long-lived (1.059
/// × the oracle): checked.
#[test]
fn least_conn_is_within_the_goal_of_the_oracle_on_every_study_scenario() {
    for name in [
        "steady-state",
        "skewed-dns",
        "sparse-long-lived",
        "burst-herd",
        "churn",
        "heterogeneous",
    ] {
        let ours = balance_of(name, "least-conn", true);
        let p2c = balance_of(name, "power-of-two", true);
        let oracle = balance_of(name, "oracle", true);
        eprintln!(
            "{name}: least-conn ÷ oracle {:.3} / {:.3}, power-of-two {:.3} / {:.3}",
            ours.0 / oracle.0,
            ours.1 / oracle.1,
            p2c.0 / oracle.0,
            p2c.1 / oracle.1
        );
        assert!(
            ours.0 < p2c.0,
            "{name}: least-conn {:.3} against power-of-two {:.3}",
            ours.0,
            p2c.0
        );
        assert!(
            ours.0 <= oracle.0 * 1.05 && ours.1 <= oracle.1 * 1.10,
            "{name}: least-conn {ours:.3?}, oracle {oracle:.3?}: {:.3} x, p99 {:.3} x",
            ours.0 / oracle.0,
            ours.1 / oracle.1
        );
    }
}

/// Cluster-wide least-conn spreads `sparse-long-lived` (each node holds
/// about one connection, so only the fleet's view can spread them) far
/// better than per-node least-conn: at least 30 % lower peak/mean over
/// seeds 1..=4 of the `[quick]` variant. Measured when written: 1.364
/// against 2.282 (40 % lower). With the cluster-wide
/// chooser swapped for the local one the test fails (ratio 1.0): checked
/// on bc16ac4.
#[test]
fn cluster_wide_least_conn_beats_local_least_conn_on_sparse_long_lived() {
    let fleet = balance("sparse-long-lived", "least-conn").0;
    let local = balance("sparse-long-lived", "local-least-conn").0;
    eprintln!("sparse-long-lived: least-conn {fleet:.3}, local-least-conn {local:.3}");
    assert!(
        fleet <= local * 0.7,
        "peak/mean: least-conn {fleet:.3}, local-least-conn {local:.3}: not 30% better"
    );
}

#[test]
fn keep_going_notes_violations_and_still_reports() {
    let s = quick("steady-state").with_bug(FleetBug::SkipReports);
    let r = fleet::sim::run_keep_going(&s, 1).unwrap();
    assert_eq!(
        r.violations.first().map(|v| v.invariant),
        Some(Invariant::View)
    );
    assert!(r.membership_convergence.is_some(), "{r}");
    assert!(r.to_string().contains("VIOLATION: SEED=1 "), "{r}");
}

#[test]
fn an_event_budget_that_is_too_small_fails_the_run() {
    let s = FleetScenario {
        events_max: 1_000,
        ..quick("steady-state")
    };
    assert_eq!(
        fleet::run(&s, 1).unwrap_err().invariant,
        Invariant::EventsMax
    );
}
