//! [`Transport`]: one QUIC endpoint per node that both serves and dials.
//!
//! # What goes over it
//! - Datagrams ([`Transport::send_datagram`]): SWIM probes, acks and gossip. Fire and
//!   forget: a datagram for a peer without a live connection is dropped while a
//!   connection is dialled in the background, because SWIM already tolerates loss and a
//!   caller on the gossip path must never wait on the network.
//! - Requests ([`Transport::request`]): one bidirectional stream per request, for the
//!   push-pull full-state sync. The request is the whole send side, the response the whole
//!   receive side; both bounded by [`TransportLimits::request_bytes_max`].
//!
//! Everything received from members arrives on the bounded `mpsc` channel returned by
//! [`Transport::bind`] as an [`Incoming`].
//!
//! # Connections
//! At most one connection per peer address is cached, whichever side dialled it (an
//! incoming connection is cached under the peer's address too, so replies reuse it). A
//! connection that closes or is lost is removed from the cache by the task that serves it,
//! and the next send dials again. A new incoming connection replaces the cached one: a
//! peer dials only when it holds no live connection to us, so ours is either to a process
//! that died at that address (a crash and restart) or a twin from a simultaneous dial,
//! and the new one is live in both cases. A restarted process starts with an empty cache
//! and dials every peer it sends to, so each peer learns its new connection at once. At most one dial per address is in flight; requests for
//! an address that is being dialled wait for that dial (bounded by
//! [`TransportLimits::connect_timeout_ms`]).
//!
//! # Membership
//! A peer is a member when its certificate chains to the cluster CA; both sides check
//! (mutual TLS, see [`crate::tls`]). A completed outgoing `connect()` is *not* proof that
//! the peer accepted us: in TLS 1.3 the client finishes before the server has checked the
//! client certificate, so a node whose certificate is foreign sees its connect succeed and
//! only its first stream or datagram fail. On the accepting side a connection is served
//! only after the server-side handshake completed, which is after the client certificate
//! was verified; a failed incoming handshake is reported as [`Incoming::PeerRefused`] and
//! never yields a datagram or request. 0-RTT is never enabled, so no data is accepted
//! before that point.
//!
//! # Tasks
//! `bind` spawns the accept loop; each connection (either direction) gets one task that
//! reads datagrams and accepts request streams, and each request stream one task that
//! reads it, hands it over and writes the answer. Every wait in them has a deadline.
//! Dropping the last [`Transport`] handle closes the endpoint, which ends all of them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use quinn::{Connection, ConnectionError, ReadError, ReadToEndError, SendDatagramError, VarInt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::timeout;

use crate::admission::SourceLimiter;
use crate::limits::{LimitError, TransportLimits};
use crate::stats::{Counters, TransportStats, add, bump};
use crate::throttle::LogThrottle;
use crate::tls::{CLUSTER_SERVER_NAME, ClusterTls};

/// Something a member sent us, or a peer we refused.
#[derive(Debug)]
pub enum Incoming {
    /// A datagram from a member; `peer` is the node name its certificate
    /// states (subject common name), the only name it may claim.
    Datagram {
        from: SocketAddr,
        peer: Arc<str>,
        data: Bytes,
    },
    /// A request from a member. Send the response on `respond`; dropping `respond` resets
    /// the stream, and the requester's [`Transport::request`] fails with
    /// [`TransportError::Refused`]. Answer within `request_timeout_ms` of its arrival.
    Request {
        from: SocketAddr,
        /// The node name its certificate states.
        peer: Arc<str>,
        data: Vec<u8>,
        respond: oneshot::Sender<Vec<u8>>,
    },
    /// A handshake with `from` failed: its certificate is not from our CA, it refused ours,
    /// it spoke another protocol or it timed out. Nothing it sent is delivered.
    PeerRefused { from: SocketAddr, reason: String },
}

/// Why binding or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A [`TransportLimits`] value cannot work.
    #[error(transparent)]
    Limits(#[from] LimitError),
    /// [`Transport::bind`] was called outside a tokio runtime.
    #[error("transport: bind must be called from inside a tokio runtime")]
    NoRuntime,
    /// The UDP socket could not be bound.
    #[error("transport: cannot bind UDP address `{addr}`: {error}")]
    Bind {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
    /// No connection to the peer could be established.
    #[error("peer `{peer}`: cannot connect: {reason}")]
    Connect { peer: SocketAddr, reason: String },
    /// `peers_max` peers have cached connections already.
    #[error("peer `{peer}`: no connection slot free (peers_max = {peers_max})")]
    PeersFull { peer: SocketAddr, peers_max: usize },
    /// The transport was closed.
    #[error("transport is closed")]
    Closed,
    /// The request is larger than `request_bytes_max`; nothing was sent.
    #[error("peer `{peer}`: request of {bytes} bytes exceeds request_bytes_max = {bytes_max}")]
    RequestTooLarge {
        peer: SocketAddr,
        bytes: usize,
        bytes_max: usize,
    },
    /// The response is larger than `request_bytes_max`; it was abandoned.
    #[error("peer `{peer}`: response exceeds request_bytes_max = {bytes_max}")]
    ResponseTooLarge { peer: SocketAddr, bytes_max: usize },
    /// The peer reset the request stream on purpose.
    #[error("peer `{peer}`: request refused by the peer: {reason}")]
    Refused { peer: SocketAddr, reason: String },
    /// The stream or connection failed mid-request.
    #[error("peer `{peer}`: request failed: {reason}")]
    Request { peer: SocketAddr, reason: String },
    /// The request did not complete within `request_timeout_ms`.
    #[error("peer `{peer}`: request timed out after {timeout_ms} ms")]
    Timeout { peer: SocketAddr, timeout_ms: u64 },
}

/// Stream reset codes the answering side uses; the requester turns them into
/// [`TransportError::Refused`] reasons.
pub(crate) mod reset_code {
    pub(crate) const TOO_LARGE: u32 = 1;
    pub(crate) const BUSY: u32 = 2;
    pub(crate) const NO_ANSWER: u32 = 3;
    pub(crate) const TIMED_OUT: u32 = 4;

    pub(crate) fn describe(code: u64) -> String {
        match code {
            0x1 => "request larger than the peer's request_bytes_max".to_string(),
            0x2 => "peer's incoming queue is full".to_string(),
            0x3 => "peer dropped the request without answering".to_string(),
            0x4 => "peer timed out handling the request".to_string(),
            other => format!("stream reset with code {other}"),
        }
    }
}

/// Connection close code used when this node shuts down.
const CLOSE_SHUTDOWN: u32 = 0;

/// A handle on the node's QUIC endpoint. Clones share the endpoint; dropping the last
/// clone closes it.
#[derive(Clone, Debug)]
pub struct Transport {
    owner: Arc<Owner>,
}

/// Closes the endpoint when the last [`Transport`] goes; the network tasks hold only
/// [`Shared`], so they do not keep the endpoint open by themselves.
#[derive(Debug)]
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.close();
    }
}

type ConnectOutcome = Option<Result<Connection, String>>;

/// One peer's entry in the connection cache.
pub(crate) enum Slot {
    /// A dial is in flight; its outcome is published on `done`.
    Connecting {
        id: u64,
        done: watch::Receiver<ConnectOutcome>,
    },
    Ready(Connection),
}

enum Lookup {
    Ready(Connection),
    Pending(watch::Receiver<ConnectOutcome>),
    PeersFull,
    Closed,
}

/// The server and client configurations of an endpoint with `tls`.
fn configs(
    tls: &ClusterTls,
    limits: &TransportLimits,
    transport_config: &Arc<quinn::TransportConfig>,
) -> (quinn::ServerConfig, quinn::ClientConfig) {
    let mut server_config = tls.server_config();
    server_config.transport_config(transport_config.clone());
    // Connections are cached by peer address; a peer that migrates would be cached
    // under an address it no longer uses. Nodes do not roam, so refuse migration.
    server_config.migration(false);
    limits.apply_to_server(&mut server_config);
    let mut client_config = tls.client_config();
    client_config.transport_config(transport_config.clone());
    (server_config, client_config)
}

/// State shared by the handles and the network tasks.
pub(crate) struct Shared {
    pub(crate) endpoint: quinn::Endpoint,
    /// What this node dials with ([`Transport::set_tls`] replaces it).
    client_config: Mutex<quinn::ClientConfig>,
    transport_config: Arc<quinn::TransportConfig>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) limits: TransportLimits,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) incoming: mpsc::Sender<Incoming>,
    pub(crate) peers: Mutex<HashMap<SocketAddr, Slot>>,
    pub(crate) counters: Counters,
    pub(crate) incoming_permits: Arc<Semaphore>,
    /// Incoming handshakes in progress (a gauge for [`TransportStats`]; bounds admission).
    pub(crate) handshakes: AtomicU64,
    pub(crate) sources: Mutex<SourceLimiter>,
    /// One line per interval for refused peers, one for attempts dropped before the
    /// handshake.
    refused_log: Mutex<LogThrottle>,
    pub(crate) dropped_log: Mutex<LogThrottle>,
    next_connect_id: AtomicU64,
    closed: AtomicBool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("local_addr", &self.local_addr)
            .field("limits", &self.limits)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds a QUIC endpoint on `addr` that both serves and dials with `tls`, and spawns its
    /// accept loop on the current tokio runtime. Returns the handle and the receiver of
    /// everything members send.
    pub fn bind(
        addr: SocketAddr,
        tls: &ClusterTls,
        limits: TransportLimits,
    ) -> Result<(Transport, mpsc::Receiver<Incoming>), TransportError> {
        limits.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TransportError::NoRuntime)?;
        let transport_config = Arc::new(limits.quinn_transport_config()?);
        let (server_config, client_config) = configs(tls, &limits, &transport_config);

        // quinn binds through its own tokio runtime lookup; we are inside one (checked above).
        let endpoint = quinn::Endpoint::server(server_config, addr)
            .map_err(|error| TransportError::Bind { addr, error })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|error| TransportError::Bind { addr, error })?;

        let (incoming_tx, incoming_rx) = mpsc::channel(limits.incoming_queue_len);
        let shared = Arc::new(Shared {
            endpoint,
            client_config: Mutex::new(client_config),
            transport_config,
            local_addr,
            incoming_permits: Arc::new(Semaphore::new(limits.incoming_connections_max)),
            sources: Mutex::new(SourceLimiter::new(&limits)),
            refused_log: Mutex::new(LogThrottle::new(limits.refused_log_interval())),
            dropped_log: Mutex::new(LogThrottle::new(limits.refused_log_interval())),
            limits,
            runtime,
            incoming: incoming_tx,
            peers: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            handshakes: AtomicU64::new(0),
            next_connect_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        shared.runtime.spawn(Arc::clone(&shared).accept_loop());
        tracing::debug!(%local_addr, "transport bound");
        Ok((
            Transport {
                owner: Arc::new(Owner { shared }),
            },
            incoming_rx,
        ))
    }

    /// Serves and dials with `tls` from now on (a node certificate rotated
    /// on disk, decision 57): new connections, either way, use it;
    /// established ones keep the certificate they were made with.
    pub fn set_tls(&self, tls: &ClusterTls) {
        let shared = &self.owner.shared;
        let (server, client) = configs(tls, &shared.limits, &shared.transport_config);
        shared.endpoint.set_server_config(Some(server));
        *shared.lock(&shared.client_config) = client;
    }

    /// The bound UDP address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.owner.shared.local_addr
    }

    /// Sends `data` as one QUIC datagram to `to` if a live connection exists; never blocks
    /// and never awaits. Without one, starts a background dial (unless one is in flight)
    /// and drops `data`. Datagrams larger than the connection's current
    /// `max_datagram_size()` (1162 bytes right after the handshake) are dropped. Every drop
    /// is counted in [`TransportStats`].
    pub fn send_datagram(&self, to: SocketAddr, data: Bytes) {
        let shared = &self.owner.shared;
        let counters = &shared.counters;
        match shared.lookup_or_dial(to) {
            Lookup::Ready(conn) => shared.send_on(&conn, to, data),
            Lookup::Pending(_) | Lookup::Closed => bump(&counters.datagrams_dropped_no_connection),
            Lookup::PeersFull => bump(&counters.datagrams_dropped_peers_full),
        }
    }

    /// Sends `data` as one request to `to` on the cached connection (dialling if needed)
    /// and returns the whole response. Both are bounded by `request_bytes_max`; the request
    /// as a whole (after the connection exists) by `request_timeout_ms`, the dial by
    /// `connect_timeout_ms`.
    pub async fn request(&self, to: SocketAddr, data: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let shared = &self.owner.shared;
        bump(&shared.counters.requests_sent);
        let result = shared.request(to, data).await;
        if let Err(e) = &result {
            bump(&shared.counters.requests_failed);
            tracing::debug!(peer = %to, error = %e, "request failed");
        }
        result
    }

    /// A snapshot of the counters and gauges.
    pub fn stats(&self) -> TransportStats {
        let shared = &self.owner.shared;
        TransportStats {
            handshakes_in_progress: shared.handshakes.load(Ordering::Relaxed),
            connections_open: shared.endpoint.open_connections() as u64,
            ..shared.counters.snapshot()
        }
    }

    /// Closes the endpoint and every connection at once; pending requests fail, later sends
    /// are dropped. Peers learn of the close from a best-effort CONNECTION_CLOSE; use
    /// [`Transport::close_and_wait`] to give it time to go out.
    pub fn close(&self) {
        self.owner.shared.close();
    }

    /// [`Transport::close`], then waits up to `close_wait_ms` for the peers to acknowledge.
    pub async fn close_and_wait(&self) {
        let shared = &self.owner.shared;
        shared.close();
        let _ = timeout(shared.limits.close_wait(), shared.endpoint.wait_idle()).await;
    }
}

impl Shared {
    pub(crate) fn lock_peers(&self) -> MutexGuard<'_, HashMap<SocketAddr, Slot>> {
        self.lock(&self.peers)
    }

    /// Locks one of the transport's mutexes. A panic while holding one cannot leave its
    /// state inconsistent (every update is a single insert, remove or counter step), so a
    /// poisoned lock is still usable.
    pub(crate) fn lock<'a, T>(&self, mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"node shutting down");
        self.lock_peers().clear();
        tracing::debug!(local_addr = %self.local_addr, "transport closed");
    }

    /// The live cached connection to `to`, or the dial in flight to it, starting one if
    /// there is neither.
    fn lookup_or_dial(self: &Arc<Self>, to: SocketAddr) -> Lookup {
        if self.closed.load(Ordering::SeqCst) {
            return Lookup::Closed;
        }
        let mut peers = self.lock_peers();
        match peers.get(&to) {
            Some(Slot::Ready(conn)) if conn.close_reason().is_none() => {
                return Lookup::Ready(conn.clone());
            }
            Some(Slot::Ready(_)) => {
                peers.remove(&to);
            }
            Some(Slot::Connecting { done, .. }) => return Lookup::Pending(done.clone()),
            None => {}
        }
        if peers.len() >= self.limits.peers_max {
            // Dead connections are normally removed by their tasks; sweeping here as well
            // keeps a burst of closes from locking new peers out until those tasks run.
            peers.retain(|_, slot| !matches!(slot, Slot::Ready(c) if c.close_reason().is_some()));
            if peers.len() >= self.limits.peers_max {
                return Lookup::PeersFull;
            }
        }
        let id = self.next_connect_id.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done_rx) = watch::channel(None);
        peers.insert(
            to,
            Slot::Connecting {
                id,
                done: done_rx.clone(),
            },
        );
        drop(peers);
        bump(&self.counters.connects_started);
        self.runtime
            .spawn(Arc::clone(self).dial_and_serve(to, id, done_tx));
        Lookup::Pending(done_rx)
    }

    async fn dial_and_serve(
        self: Arc<Self>,
        to: SocketAddr,
        id: u64,
        done: watch::Sender<ConnectOutcome>,
    ) {
        let outcome = self.dial(to).await;
        {
            let mut peers = self.lock_peers();
            let ours = matches!(peers.get(&to), Some(Slot::Connecting { id: slot_id, .. }) if *slot_id == id);
            if ours {
                match &outcome {
                    Ok(conn) => {
                        peers.insert(to, Slot::Ready(conn.clone()));
                    }
                    Err(_) => {
                        peers.remove(&to);
                    }
                }
            }
        }
        done.send_replace(Some(outcome.clone()));
        drop(done);
        if let Ok(conn) = outcome {
            self.serve(conn).await;
        }
    }

    async fn dial(&self, to: SocketAddr) -> Result<Connection, String> {
        let client = self.lock(&self.client_config).clone();
        let result = match self.endpoint.connect_with(client, to, CLUSTER_SERVER_NAME) {
            Err(e) => Err(e.to_string()),
            Ok(connecting) => match timeout(self.limits.connect_timeout(), connecting).await {
                Err(_) => Err(format!(
                    "handshake timed out after {} ms",
                    self.limits.connect_timeout_ms
                )),
                Ok(Err(e)) => {
                    // A locally detected error during our client handshake means we
                    // rejected the peer (certificate not from our CA, wrong ALPN, ...).
                    if matches!(e, ConnectionError::TransportError(_)) {
                        self.report_refused(to, format!("handshake as client: {e}"));
                    }
                    Err(e.to_string())
                }
                Ok(Ok(conn)) => Ok(conn),
            },
        };
        if let Err(reason) = &result {
            bump(&self.counters.connects_failed);
            tracing::debug!(peer = %to, %reason, "connect failed");
        }
        result
    }

    /// Counts a refused peer; logs and reports it at most once per
    /// `refused_log_interval_ms`. A stranger can cause a refusal with one spoofed packet,
    /// so one line (and one report, which the driver logs too) per refusal would let a
    /// packet flood become a log flood; the line and the report say how many were held
    /// back since the last one.
    pub(crate) fn report_refused(&self, from: SocketAddr, reason: String) {
        bump(&self.counters.peers_refused);
        let Some(suppressed) = self
            .lock(&self.refused_log)
            .event(std::time::Instant::now())
        else {
            bump(&self.counters.reports_throttled);
            return;
        };
        tracing::warn!(peer = %from, %reason, suppressed, "refused peer");
        let reason = match suppressed {
            0 => reason,
            n => format!("{reason} (and {n} more refused since the last report)"),
        };
        if self
            .incoming
            .try_send(Incoming::PeerRefused { from, reason })
            .is_err()
        {
            bump(&self.counters.reports_dropped_queue_full);
        }
    }

    /// Removes `to` from the cache if it still holds the connection `stable_id`.
    pub(crate) fn forget(&self, to: SocketAddr, stable_id: usize) {
        let mut peers = self.lock_peers();
        if matches!(peers.get(&to), Some(Slot::Ready(c)) if c.stable_id() == stable_id) {
            peers.remove(&to);
        }
    }

    fn send_on(&self, conn: &Connection, to: SocketAddr, data: Bytes) {
        let counters = &self.counters;
        let len = data.len();
        match conn.max_datagram_size() {
            None => return bump(&counters.datagrams_dropped_unsupported),
            Some(size_max) if len > size_max => return bump(&counters.datagrams_dropped_too_large),
            Some(_) => {}
        }
        match conn.send_datagram(data) {
            Ok(()) => {
                bump(&counters.datagrams_sent);
                add(&counters.datagram_bytes_sent, len as u64);
            }
            Err(SendDatagramError::TooLarge) => bump(&counters.datagrams_dropped_too_large),
            Err(SendDatagramError::UnsupportedByPeer | SendDatagramError::Disabled) => {
                bump(&counters.datagrams_dropped_unsupported);
            }
            Err(SendDatagramError::ConnectionLost(_)) => {
                bump(&counters.datagrams_dropped_no_connection);
                self.forget(to, conn.stable_id());
            }
        }
    }

    /// A live connection to `to`, waiting for a dial if one is needed.
    async fn connection(self: &Arc<Self>, to: SocketAddr) -> Result<Connection, TransportError> {
        let mut done = match self.lookup_or_dial(to) {
            Lookup::Ready(conn) => return Ok(conn),
            Lookup::Pending(done) => done,
            Lookup::PeersFull => {
                return Err(TransportError::PeersFull {
                    peer: to,
                    peers_max: self.limits.peers_max,
                });
            }
            Lookup::Closed => return Err(TransportError::Closed),
        };
        // The dial has its own deadline; this one only guards against a dial task that
        // vanished without publishing (runtime shutting down).
        let wait = self.limits.connect_timeout() * 2;
        let outcome = match timeout(wait, done.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone(),
            Ok(Err(_)) => None,
            Err(_) => {
                return Err(TransportError::Connect {
                    peer: to,
                    reason: format!("no handshake outcome after {} ms", wait.as_millis()),
                });
            }
        };
        match outcome {
            Some(Ok(conn)) => Ok(conn),
            Some(Err(reason)) => Err(TransportError::Connect { peer: to, reason }),
            None => Err(TransportError::Connect {
                peer: to,
                reason: "dial ended without an outcome".to_string(),
            }),
        }
    }

    async fn request(
        self: &Arc<Self>,
        to: SocketAddr,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let bytes_max = self.limits.request_bytes_max;
        if data.len() > bytes_max {
            return Err(TransportError::RequestTooLarge {
                peer: to,
                bytes: data.len(),
                bytes_max,
            });
        }
        let conn = self.connection(to).await?;
        match timeout(
            self.limits.request_timeout(),
            exchange(&conn, to, &data, bytes_max),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                peer: to,
                timeout_ms: self.limits.request_timeout_ms,
            }),
        }
    }
}

/// One request on a fresh bidirectional stream: write it all, finish, read the whole answer.
async fn exchange(
    conn: &Connection,
    peer: SocketAddr,
    data: &[u8],
    bytes_max: usize,
) -> Result<Vec<u8>, TransportError> {
    let failed = |reason: String| TransportError::Request { peer, reason };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| failed(format!("cannot open stream: {e}")))?;
    send.write_all(data).await.map_err(|e| match e {
        quinn::WriteError::Stopped(code) => TransportError::Refused {
            peer,
            reason: reset_code::describe(code.into_inner()),
        },
        other => failed(format!("cannot send request: {other}")),
    })?;
    send.finish()
        .map_err(|e| failed(format!("cannot finish request: {e}")))?;
    recv.read_to_end(bytes_max).await.map_err(|e| match e {
        ReadToEndError::TooLong => TransportError::ResponseTooLarge { peer, bytes_max },
        ReadToEndError::Read(ReadError::Reset(code)) => TransportError::Refused {
            peer,
            reason: reset_code::describe(code.into_inner()),
        },
        ReadToEndError::Read(other) => failed(format!("cannot read response: {other}")),
    })
}

#[cfg(test)]
mod flood_tests;
#[cfg(test)]
mod tests;
