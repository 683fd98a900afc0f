//! The soak, short: 35 s of client load over a fleet of five nodes with a
//! few kills and restarts (nodes and backends), then the same end check
//! as `just soak`: every count back to zero, every backend without an
//! open connection, no client failure that a node or backend dying at
//! that moment does not explain, no descriptor more than before the load.
//!
//! The seed is printed; `SHOAL_SOAK_SEED=N` runs a given one again (the
//! schedule of kills, not the processes' timing). Seen failing against a
//! wrong behaviour: with `SelfCheck::Leak` (a client that holds one
//! connection through the end check) the run fails on the count left at
//! node-1 and its backend; see the soak commit.

use shoal_e2e::soak::{self, Params};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churned_fleet_under_load_ends_with_nothing_left() {
    let seed = soak::seed_from_env("SHOAL_SOAK_SEED");
    eprintln!("SHOAL_SOAK_SEED={seed}");
    let outcome = soak::run(Params::short(seed)).await.expect("the soak runs");
    assert!(
        !outcome.events.is_empty() && outcome.tally.succeeded > 0,
        "the soak churned nothing or carried no load (SHOAL_SOAK_SEED={seed})"
    );
    assert!(
        outcome.passed(),
        "SHOAL_SOAK_SEED={seed}: {:#?}\n\n{}",
        outcome.findings,
        outcome.markdown(&format!("cargo test --test soak, SHOAL_SOAK_SEED={seed}"))
    );
}
