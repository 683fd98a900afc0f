//! # shoal-core
//!
//! The sans-IO heart of shoal. Nothing in this crate reads a clock, opens a
//! socket, spawns a task or seeds its own random number generator: time
//! arrives as an [`Instant`] argument and randomness as a caller-owned
//! [`rand::Rng`]. The real runtime (`shoal-runtime`, tokio) and the
//! deterministic simulator (`shoal-sim`, virtual clock) drive the *same* types
//! through the *same* methods, so a bug the simulator finds is a bug in
//! production code. `crates/shoal-core/clippy.toml` bans the clock and OS
//! entropy so the compiler, not memory, keeps this rule.
//!
//! ## Layout
//! - [`time`]: [`Instant`], a caller-supplied monotonic timestamp.
//! - [`health`]: one backend's rise/fall health state machine.
//! - [`checkers`]: which `k` nodes of the fleet actively check a backend
//!   (rendezvous hashing over the live membership).
//! - [`policy`]: the balancing policies and the choice among candidates
//!   (power of two choices, round-robin, random, first-available).
//! - [`pool`]: a listener's backend pool: counts, health, check schedule; the
//!   `handle_*` / `poll_*` type the runtime drives.
//! - [`budget`]: one backend's fleet-wide connection budget: this node's
//!   claim on it and whether a new connection fits.
//! - [`cluster`]: the fleet: SWIM membership (foca) with its timer queue,
//!   node identities, load reports and the view of the fleet's load.
//! - [`node`]: one fleet node as a state machine: the [`cluster::Cluster`],
//!   the pools' fleet view and every fleet timer (warm start, re-seeding,
//!   sync, publishing, leave), with the one [`node::Settings`] type both
//!   shells build nodes from.
//! - [`proxy_header`]: the PROXY protocol header (v1, v2) a listener
//!   sends to backends or reads from a balancer in front of it.
//! - [`dns`]: the fleet's own DNS answer: which client-facing addresses a
//!   node gives for the fleet's name, from its view of the members.
//! - [`wire`]: the one codec module: every byte between nodes.

pub mod budget;
pub mod checkers;
pub mod cluster;
pub mod dns;
pub mod health;
pub mod node;
pub mod policy;
pub mod pool;
pub mod proxy_header;
pub mod time;
pub mod wire;

pub use health::{Health, HealthConfig, HealthParamError};
pub use policy::{Candidate, Policy};
pub use pool::{BackendId, BackendSpec, HealthCause, NoBackend, Pool, PoolEvent};
pub use time::Instant;
