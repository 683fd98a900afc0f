//! The fleet simulator: N shoal nodes, each the real
//! [`shoal_core::node::Node`] (membership, reports, every fleet timer) and
//! the real [`shoal_core::Pool`], driven in one thread on one virtual clock
//! through the same methods the runtime's shell calls, over a simulated
//! network, with simulated backends, clients and faults. Node settings
//! are production's ([`shoal_core::node::Settings`]) with the fields a
//! scenario names overridden. One seed decides everything; the same scenario, seed and commit
//! give the same [`FleetReport::trace_hash`].
//!
//! # Invariants
//! Checked while the run goes and at its end; a broken one is a
//! [`crate::Violation`] whose message starts with `SEED=<n>`. Bounds and
//! their derivations are in [`bounds`].
//! - **Counts** ([`crate::Invariant::Counts`]): after every input to a
//!   node and at every sample, each backend's `Pool::active` equals the
//!   simulation's own count of that node's connections on it; no release
//!   is made on a zero count; at the end every count is zero.
//! - **Detection**: no node's pool hands out a backend that has been dead
//!   for longer than the detection bound (counted from the later of the
//!   death and the node's start or resume); at the end none is up in a
//!   pool. **Recovery** (at the end): a backend up for the recovery bound
//!   is up in every pool.
//! - **Refusal**: no client gets "no backend" while an untried backend is
//!   up, below its limits, and has been up for the refusal window (which
//!   allows for the fleet-down majority rule acting on stale votes), with
//!   no node resumed within that window.
//! - **Membership** (liveness phase): from the membership bound on, every
//!   live node's members are exactly the other live nodes' current
//!   identities.
//! - **View** (liveness phase): once membership agrees and the view bound
//!   has passed, no live node has been missing a newer report of a live
//!   origin for longer than the view bound, nor holds a report of a node
//!   that is not live; at the end every node holds exactly each live
//!   origin's latest report and its pool holds their sums.
//! - **Expectation**: what the scenario's `[expect]` table asks for, so a
//!   scenario whose faults did not show fails; among them, that a slow
//!   warm start keeps the node in the fleet and brings it the fleet's
//!   load before its listeners open (scenario `slow-seed`).
//! - **Determinism**: the same seed gives the same trace hash (tested by
//!   running twice).
//!
//! # Layout
//! - [`scenario`]: the TOML scenario format, the compiled-in files, the
//!   swarm generator and the planted bugs.
//! - [`chooser`]: the core policies and the reference choosers.
//! - [`net`]: latency, loss, duplication, partitions.
//! - [`bounds`]: the time bounds and their derivations.
//! - [`sim`]: the event loop ([`run`]), split by role: driving one node,
//!   clients and backends, faults, sampling, invariants.
//! - [`report`]: what a passing run reports ([`FleetReport`]).
//! - [`regressions`]: the seeds that once failed, replayed by the tests.

pub mod bounds;
pub mod chooser;
pub mod net;
pub mod regressions;
pub mod report;
pub mod scenario;
pub mod sim;

pub use bounds::FleetBounds;
pub use chooser::Chooser;
pub use report::FleetReport;
pub use scenario::{FleetBug, FleetScenario};
pub use sim::run;
