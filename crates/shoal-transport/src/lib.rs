//! shoal's node-to-node transport: QUIC with mutual TLS against a per-cluster CA.
//!
//! Nodes gossip (SWIM) over QUIC datagrams and sync full state over QUIC request streams.
//! A peer is a member exactly when its certificate is signed by the cluster CA.
//!
//! # Layout
//! - [`certs`]: the cluster CA and node certificates (rcgen): `shoal certs init` /
//!   `shoal certs node`, and [`MemoryCa`] for tests and the single-process demo. Its doc
//!   explains the trust model (the fixed server name `shoal-cluster`) and validity.
//! - [`tls`]: loads and checks PEM files into a [`ClusterTls`], the quinn server and client
//!   configurations (TLS 1.3, mutual auth, ALPN `shoal/1`, explicit `ring` provider).
//! - [`endpoint`]: [`Transport`], the endpoint handle: bind, connection cache, dialling,
//!   [`Transport::send_datagram`], [`Transport::request`], close; what arrives is an
//!   [`Incoming`].
//! - `serve` (private): the accept loop and the tasks that read each connection and answer
//!   each request.
//! - `admission` (private): which incoming attempts get handshake state (Retry for
//!   unproven sources when busy, a per-source budget, a global handshake bound).
//! - [`throttle`]: [`LogThrottle`], one log line per interval for events strangers cause.
//! - [`limits`]: [`TransportLimits`], every bound and timeout, with defaults.
//! - [`stats`]: [`TransportStats`], counters of what was sent, received, dropped, refused.

mod admission;
pub mod certs;
pub mod endpoint;
pub mod limits;
mod serve;
pub mod stats;
pub mod throttle;
pub mod tls;

pub use certs::{CaFiles, CertError, MemoryCa, NodeFiles, NodePem, init_ca, issue_node};
pub use endpoint::{Incoming, Transport, TransportError};
pub use limits::{LimitError, TransportLimits};
pub use stats::TransportStats;
pub use throttle::LogThrottle;
pub use tls::{ALPN, CLUSTER_SERVER_NAME, ClusterTls, TlsError, TlsFiles};
