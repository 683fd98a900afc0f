//! # shoal-runtime
//!
//! The tokio shell around `shoal-core`: it binds sockets, reads the clock,
//! seeds the RNG from the operating system and feeds what happens into the
//! core's `handle_*` methods, then acts on its `poll_*` outputs.
//!
//! ## Layout
//! - [`node`]: [`Node`], one shoal process: binds every socket up front (so a
//!   port in use is a start-up error), runs until a shutdown future
//!   resolves, then drains.
//! - [`dataplane`]: the data threads (thread per core, one runtime each,
//!   `SO_REUSEPORT` listening sockets, hand-over to a less busy thread).
//! - [`listener`]: the accept loop and the life of one client connection:
//!   choose, connect with timeout and retries, proxy, log.
//! - [`proxy`]: the byte copy between client and backend with half-close,
//!   idle timeout and cancellation.
//! - [`splice`]: zero-copy forwarding of bulk bursts through a pipe.
//! - [`checker`]: the active health-check driver of one listener's pool.
//! - [`local`]: errors that are this node's own (out of file descriptors,
//!   memory or ports), told apart from backend failures.
//! - [`fleet`]: the fleet shell: carries bytes and time between the core's
//!   `Node` (which decides everything about the fleet) and the QUIC
//!   transport, the seed resolver, the pools and tokio's timers.
//! - [`handover`]: binary upgrade: the listening sockets passed to a
//!   successor process over a Unix socket (`SCM_RIGHTS`).
//! - [`reload`]: live reload (SIGHUP, `POST /reload`): the handle that
//!   asks a node for one and the loader that re-reads its configuration.
//! - [`metrics`]: the Prometheus registry and the series shoal exports.
//! - [`admin`]: the HTTP endpoint serving `/metrics` and `/status`, with
//!   its own accept loop: connection limit, header and idle timeouts.
//! - [`dns`]: the fleet's own DNS answer for `dns.name`, served over UDP
//!   and TCP from the answer the core's node keeps (decision 51).
//! - [`clock`]: the mapping from `std::time::Instant` to the core's instant.

pub mod admin;
pub mod checker;
pub mod clock;
pub mod dataplane;
pub mod dns;
pub mod fleet;
pub mod handover;
pub mod listener;
pub mod local;
pub mod metrics;
pub mod names;
pub mod node;
pub mod proxy;
pub mod reload;
pub mod splice;

pub use node::{Node, StartError};
