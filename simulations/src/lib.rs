//! # shoal-sim
//!
//! Deterministic simulation of shoal on a virtual clock, replayable from a
//! seed, in two simulators that share the clock, the event queue, the
//! seeded streams and the trace hash:
//! - the single-node simulator ([`sim`]): ONE node's data plane and active
//!   health checks, simulated clients and backends around the real,
//!   unchanged [`shoal_core::Pool`], with backends that die, blackhole and
//!   recover on a schedule;
//! - the fleet simulator ([`fleet`]): N nodes, each the real
//!   [`shoal_core::node::Node`] and [`shoal_core::Pool`] driven as the
//!   runtime's shell drives them, over a simulated network with partitions, loss
//!   and duplication, with node crashes, restarts, pauses and rolling
//!   restarts, scenarios read from TOML files in `simulations/scenarios/`.
//!
//! One seed decides everything random; the same scenario, seed and commit
//! give the same trace hash. Every invariant is checked while the run goes
//! and at its end, and a broken one comes back as a [`Violation`] that
//! names the seed.
//!
//! ```
//! let report = shoal_sim::run(&shoal_sim::Scenario::die_and_recover(), 7).unwrap();
//! assert_eq!(report.clients, report.served + report.reset
//!     + report.refused_no_backend + report.refused_retries);
//! ```
//!
//! ## Layout
//! - [`fleet`]: the fleet simulator: scenario files, network, bounds,
//!   event loop and report (its own module doc maps it).
//! - [`scenario`]: what a single-node run simulates ([`Scenario`]) and the named
//!   scenarios, including the planted bugs tests use to prove the checks
//!   can fail.
//! - [`sim`]: the single-node event loop that drives the pool ([`run`]), and the model
//!   of clients, backends and network it is checked against.
//! - [`invariants`]: the invariants, the single-node time [`Bounds`]
//!   derived from the health settings, and [`Violation`].
//! - [`report`]: what a passing run returns ([`Report`]).
//! - [`queue`]: the virtual clock and the `(time, seq)` event queue.
//! - [`random`]: per-role RNG streams derived from the seed, and portable
//!   distributions.
//! - [`trace`]: the FNV-1a trace hash.
//!
//! The `shoal-sim` binary (`src/main.rs`) runs one scenario with one seed
//! or a swarm of seeds, and is the only place that reads the wall clock
//! (to report simulated seconds per wall second) or a file (a scenario
//! given by path); `tests/` runs every scenario for fixed seeds and
//! replays the seeds that once failed (`simulations/regressions.toml`).

pub mod fleet;
pub mod invariants;
pub mod queue;
pub mod random;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod trace;

pub use invariants::{Bounds, Invariant, Violation};
pub use report::Report;
pub use scenario::{BackendState, Fault, PlantedBug, Scenario};
pub use sim::run;
