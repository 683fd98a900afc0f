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
//!   pool.
//! - **Recovery**: the recovery bound after a backend came back (and
//!   stayed up), every live node running since before then holds it up
//!   in its own checks (unless it refused for being at its capacity
//!   meanwhile); at the end, a backend up for the recovery bound is up in
//!   every pool.
//! - **Refusal**: no client gets "no backend" while an untried backend is
//!   up, below its limits, not drained as far as the node knows, and has
//!   been up for the refusal window (which allows for the fleet-down
//!   majority rule acting on stale votes; a node alone has none), with
//!   no node resumed within that window.
//! - **Drain**: no node opens a new connection to a backend whose newest
//!   mark it holds is a drain; a command given to a node makes a mark
//!   that supersedes the one it held, whatever its wall clock (each host's
//!   runs ahead of the simulated time by a skew drawn from the seed), so
//!   no command is lost on its own node; the drain hop bound after a
//!   command, every member its node reached in one hop (both held each
//!   other alive, no cut, no loss, no pause or restart since) holds the
//!   mark or a newer one; in the liveness phase, once
//!   membership agrees, every live node holds the newest mark any live
//!   node holds within the drain bound, and every mark held was issued by
//!   a command; at the end every node holds it and its pool drains
//!   exactly that.
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
//!   load before its listeners open (scenario `slow-seed`), and that a
//!   drain cut off by a partition was really not seen on the far side
//!   (scenario `drain-partition`).
//! - **Determinism**: the same seed gives the same trace hash (tested by
//!   running twice).
//!
//! A single node is a scenario with `nodes = 1` (files `steady`,
//! `die-and-recover`, `flapping`, `all-die-one-recovers`, and the
//! seed-drawn [`FleetScenario::chaos`]): the same invariants, bounds and
//! planted bugs, with no peer.
//!
//! # Layout
//! - [`scenario`]: the TOML scenario format, the compiled-in files, the
//!   swarm and chaos generators and the planted bugs.
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
