//! # shoal-sim
//!
//! Deterministic simulation of shoal on a virtual clock, replayable from a
//! seed: N nodes, each the real [`shoal_core::node::Node`] and
//! [`shoal_core::Pool`] driven as the runtime's shell drives them, over a
//! simulated network with partitions, loss and duplication, with node
//! crashes, restarts, pauses and rolling restarts, backends that die,
//! blackhole, turn slow and recover, operators' drains, and scenarios read
//! from TOML files in `simulations/scenarios/`. A single node is the fleet
//! scenario with `nodes = 1` (`steady`, `die-and-recover`, `flapping`,
//! `all-die-one-recovers` and the seed-drawn `chaos`): one simulator, one
//! set of bounds and planted bugs.
//!
//! One seed decides everything random; the same scenario, seed and commit
//! give the same trace hash. Every invariant is checked while the run goes
//! and at its end, and a broken one comes back as a [`Violation`] that
//! names the seed.
//!
//! ```
//! use shoal_sim::fleet::{self, FleetScenario};
//! let s = FleetScenario::named("die-and-recover", 7).unwrap().unwrap();
//! let report = fleet::run(&s, 7).unwrap();
//! assert!(report.clients.adds_up());
//! assert_eq!(report.backend_detections.count, 1);
//! ```
//!
//! ## Layout
//! - [`fleet`]: the simulator: scenario files, network, bounds, event loop
//!   and report (its own module doc maps it and lists the invariants).
//! - [`violation`]: the invariants' names ([`Invariant`]) and what a
//!   broken one returns ([`Violation`]).
//! - [`queue`]: the virtual clock and the `(time, seq)` event queue.
//! - [`random`]: the seeded generator and portable distributions.
//! - [`trace`]: the FNV-1a trace hash.
//!
//! The `shoal-sim` binary (`src/main.rs`) runs one scenario with one seed
//! or a swarm of seeds, and is the only place that reads the wall clock
//! (to report simulated seconds per wall second) or a file (a scenario
//! given by path); `tests/` runs every scenario for fixed seeds and
//! replays the seeds that once failed (`simulations/regressions.toml`).

pub mod fleet;
pub mod queue;
pub mod random;
pub mod trace;
pub mod violation;

pub use violation::{Invariant, Violation};
