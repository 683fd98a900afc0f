//! The chaos run, one minute (`just chaos MINUTES` runs it for longer):
//! five nodes on hosts of their own, clients through a round-robin name
//! served by dnsmasq, faults drawn from a printed seed (kill -9, SIGTERM,
//! backend death, partition), each undone once detected. Asserts the
//! run's safety properties (see `shoal_e2e::chaos`): every count back to
//! zero on every node and every node alive in one fleet at the end,
//! every fault detected and every partition healed within its bound, no
//! client failure that a fault does not explain.
//!
//! The seed is printed; `SHOAL_CHAOS_SEED=N` runs a given one again (the
//! schedule of faults, not the processes' timing). Needs root, iproute2,
//! util-linux, nftables and dnsmasq; without them the test fails, naming
//! what is missing.
//!
//! Seen failing against a wrong behaviour: with the data plane leaking
//! the count of every connection whose client sent a multiple of 97
//! bytes (`std::mem::forget` of its `BackendLease`), the run (seed
//! 735325373) ended "NOT settled" with counts left on four nodes.

use shoal_e2e::chaos::{self, Resolution};
use shoal_e2e::{netns, soak};
use std::time::Duration;

/// The inner run's bound: 60 s of load, the fleet's start, a fault under
/// way at the end (its detection and heal bounds), the settle.
const INNER_RUN_S: u64 = 300;

#[test]
fn a_minute_of_chaos_ends_with_one_fleet_and_nothing_left() {
    if !netns::inside() {
        netns::run_inside_for(
            "a_minute_of_chaos_ends_with_one_fleet_and_nothing_left",
            &[],
            Duration::from_secs(INNER_RUN_S),
        );
        return;
    }
    let seed = soak::seed_from_env("SHOAL_CHAOS_SEED");
    eprintln!("SHOAL_CHAOS_SEED={seed}");
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(chaos::run(
            chaos::params_minute(seed),
            Resolution::Static,
            None,
        ))
        .expect("the chaos run runs");
    let summary = chaos::summary(&outcome, Resolution::Static);
    eprintln!("{summary}");
    assert!(
        !outcome.events.is_empty() && outcome.tally.succeeded > 0,
        "the run faulted nothing or carried no load (SHOAL_CHAOS_SEED={seed})\n{summary}"
    );
    assert!(
        outcome.passed(),
        "SHOAL_CHAOS_SEED={seed}: {:#?}\n\n{summary}",
        outcome.findings
    );
}
