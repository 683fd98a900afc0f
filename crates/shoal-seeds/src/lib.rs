//! # shoal-seeds
//!
//! The addresses a node dials to join the fleet. A seed is a `host:port`
//! string: an IP literal (`10.0.0.5:7946`, `[2001:db8::5]:7946`) or a DNS
//! name (`lb.example:7946`). A name stands for *all* its A and AAAA
//! addresses, so one DNS round-robin name is a whole seed list.
//!
//! ## Layout
//! - [`seed`]: [`parse_seed`], the syntax check with no I/O that config
//!   validation uses, and the parsed [`Seed`].
//! - [`error`]: [`SeedError`]; every message names the seed and what was
//!   wrong with it.
//! - [`resolve`]: [`SeedResolver`], which turns a seed list into socket
//!   addresses ([`Resolved`]) within [`SeedLimits`]; a seed that fails does
//!   not stop the others.
//! - [`testdns`]: [`TestDns`](testdns::TestDns), a tiny authoritative DNS
//!   server on `127.0.0.1` for tests and demos, so that no test ever sends a
//!   query off the machine.

pub mod error;
pub mod resolve;
pub mod seed;
pub mod testdns;

pub use error::{SeedError, escape_controls};
pub use resolve::{Resolved, SeedLimits, SeedResolver};
pub use seed::{Seed, parse_seed};
