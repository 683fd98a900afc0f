//! Every bound the transport keeps, in one place, with defaults and validation.
//!
//! Timeouts: the QUIC idle timeout is [`TransportLimits::idle_timeout_ms`] (10 s) and both
//! sides send a keep-alive every [`TransportLimits::keep_alive_interval_ms`] (2 s), so a
//! live peer's connection never idles out (five keep-alives fit in one idle period, enough
//! to ride out a few lost packets) while a vanished peer's connection is dropped from the
//! cache within about 10 s and the next send dials afresh. SWIM decides liveness on its own
//! probe timers; these timeouts only decide when a connection is worth keeping.
//!
//! Strangers: an incoming attempt gets handshake state only within
//! [`TransportLimits::handshakes_max`] and its source's
//! [`TransportLimits::source_handshakes_max`], and proves its address with a Retry first
//! when [`TransportLimits::handshakes_unvalidated_max`] handshakes are in progress (see
//! `admission`). What quinn buffers before that judgement is bounded by the constants
//! below. Refusals are logged once per [`TransportLimits::refused_log_interval_ms`].

use std::time::Duration;

/// Bounds of one [`crate::Transport`]. Build with `TransportLimits::default()` and
/// override fields; [`crate::Transport::bind`] validates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportLimits {
    /// Largest request and largest response body of [`crate::Transport::request`].
    pub request_bytes_max: usize,
    /// Deadline for one request: open stream, send, wait for the answer, read it. The
    /// answering side uses the same deadline for queueing, answering and writing back.
    pub request_timeout_ms: u64,
    /// Deadline for one QUIC handshake, outgoing or incoming.
    pub connect_timeout_ms: u64,
    /// Capacity of the [`crate::Incoming`] channel; datagrams arriving while it is full are
    /// dropped and counted.
    pub incoming_queue_len: usize,
    /// QUIC idle timeout (negotiated: the smaller of both sides' values wins).
    pub idle_timeout_ms: u64,
    /// Interval of QUIC keep-alive pings on every connection; must be below the idle
    /// timeout.
    pub keep_alive_interval_ms: u64,
    /// Most peers with a cached or in-progress connection; sends to further peers are
    /// dropped (datagrams) or refused (requests) until one goes away.
    pub peers_max: usize,
    /// Most incoming connections (handshaking or established) at once; further ones are
    /// refused before the handshake.
    pub incoming_connections_max: usize,
    /// Most requests a peer may have open on one connection at once (QUIC bidirectional
    /// stream limit).
    pub requests_per_connection_max: u32,
    /// How long [`crate::Transport::close_and_wait`] waits for peers to acknowledge the close.
    pub close_wait_ms: u64,
    /// Most incoming handshakes in progress at once; further attempts are ignored (no
    /// answer) until one ends. Each holds TLS and connection state for up to
    /// `connect_timeout_ms`, so this bounds what a handshake flood costs.
    pub handshakes_max: usize,
    /// With this many incoming handshakes in progress, an attempt from a source that has
    /// not proven its address gets a QUIC Retry first (one small packet, no state); a
    /// spoofed source never comes back. Below it, a quiet fleet saves the round trip.
    pub handshakes_unvalidated_max: usize,
    /// Handshakes one source IP may start per `source_window_ms`, counted apart for
    /// unvalidated and validated attempts. Beyond it, unvalidated attempts get a Retry
    /// and validated ones are ignored.
    pub source_handshakes_max: u32,
    /// The window of `source_handshakes_max`.
    pub source_window_ms: u64,
    /// Most source IPs the per-source limit tracks in one window; attempts from further
    /// sources must prove their address (Retry) and are then bounded by `handshakes_max`.
    pub sources_tracked_max: usize,
    /// At most one log line (and one [`crate::Incoming::PeerRefused`] report) per this
    /// interval for refused peers, and one for ignored connection attempts; each line
    /// counts what was held back since the previous one. The first is logged at once;
    /// 0 logs and reports every one.
    pub refused_log_interval_ms: u64,
}

/// Bytes quinn may buffer for one incoming connection attempt before the accept loop
/// judges it (quinn's default is 10 MiB); the accept loop judges each at once, and an
/// Initial flight is a few KiB.
pub const INCOMING_BUFFER_BYTES: u64 = 64 * 1024;

/// Bytes quinn may buffer for all not-yet-judged attempts together (quinn's default is
/// 100 MiB).
pub const INCOMING_BUFFER_TOTAL_BYTES: u64 = 2 * 1024 * 1024;

/// Attempts quinn queues for the accept loop before dropping further Initials (quinn's
/// default is 65,536).
pub const INCOMING_PENDING_MAX: usize = 256;

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            request_bytes_max: 4 * 1024 * 1024,
            request_timeout_ms: 5_000,
            connect_timeout_ms: 3_000,
            incoming_queue_len: 1_024,
            idle_timeout_ms: 10_000,
            keep_alive_interval_ms: 2_000,
            peers_max: 1_024,
            incoming_connections_max: 1_024,
            requests_per_connection_max: 16,
            close_wait_ms: 1_000,
            handshakes_max: 64,
            handshakes_unvalidated_max: 16,
            source_handshakes_max: 32,
            source_window_ms: 1_000,
            sources_tracked_max: 4_096,
            refused_log_interval_ms: 10_000,
        }
    }
}

/// A limit that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport limit `{name}` = {value}: {reason}")]
pub struct LimitError {
    pub name: &'static str,
    pub value: u64,
    pub reason: &'static str,
}

impl TransportLimits {
    /// Checks that every bound is usable.
    pub fn validate(&self) -> Result<(), LimitError> {
        let positive: [(&'static str, u64); 14] = [
            ("request_bytes_max", self.request_bytes_max as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("incoming_queue_len", self.incoming_queue_len as u64),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("keep_alive_interval_ms", self.keep_alive_interval_ms),
            ("peers_max", self.peers_max as u64),
            (
                "incoming_connections_max",
                self.incoming_connections_max as u64,
            ),
            (
                "requests_per_connection_max",
                u64::from(self.requests_per_connection_max),
            ),
            ("handshakes_max", self.handshakes_max as u64),
            (
                "handshakes_unvalidated_max",
                self.handshakes_unvalidated_max as u64,
            ),
            (
                "source_handshakes_max",
                u64::from(self.source_handshakes_max),
            ),
            ("source_window_ms", self.source_window_ms),
            ("sources_tracked_max", self.sources_tracked_max as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(LimitError {
                    name,
                    value,
                    reason: "must be greater than 0",
                });
            }
        }
        if self.keep_alive_interval_ms >= self.idle_timeout_ms {
            return Err(LimitError {
                name: "keep_alive_interval_ms",
                value: self.keep_alive_interval_ms,
                reason: "must be below idle_timeout_ms, or live connections idle out",
            });
        }
        if self.handshakes_unvalidated_max > self.handshakes_max {
            return Err(LimitError {
                name: "handshakes_unvalidated_max",
                value: self.handshakes_unvalidated_max as u64,
                reason: "must not exceed handshakes_max",
            });
        }
        // QUIC encodes the idle timeout as a varint of milliseconds (< 2^62); a day is
        // already absurd for a cluster link, so cap well below that.
        const IDLE_TIMEOUT_MS_MAX: u64 = 24 * 60 * 60 * 1_000;
        if self.idle_timeout_ms > IDLE_TIMEOUT_MS_MAX {
            return Err(LimitError {
                name: "idle_timeout_ms",
                value: self.idle_timeout_ms,
                reason: "must be at most one day (86400000)",
            });
        }
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn close_wait(&self) -> Duration {
        Duration::from_millis(self.close_wait_ms)
    }

    pub(crate) fn refused_log_interval(&self) -> Duration {
        Duration::from_millis(self.refused_log_interval_ms)
    }

    /// Bounds on what quinn keeps for attempts the accept loop has not judged yet.
    pub(crate) fn apply_to_server(&self, server: &mut quinn::ServerConfig) {
        server
            .max_incoming(INCOMING_PENDING_MAX)
            .incoming_buffer_size(INCOMING_BUFFER_BYTES)
            .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL_BYTES);
    }

    /// QUIC transport parameters for both directions. Call after [`Self::validate`].
    pub(crate) fn quinn_transport_config(&self) -> Result<quinn::TransportConfig, LimitError> {
        let idle = quinn::IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms))
            .map_err(|_| LimitError {
                name: "idle_timeout_ms",
                value: self.idle_timeout_ms,
                reason: "too large for QUIC",
            })?;
        let mut config = quinn::TransportConfig::default();
        config
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_interval_ms)))
            .max_concurrent_bidi_streams(self.requests_per_connection_max.into())
            // Nothing here uses unidirectional streams; refuse them outright.
            .max_concurrent_uni_streams(0u32.into());
        Ok(config)
    }
}
