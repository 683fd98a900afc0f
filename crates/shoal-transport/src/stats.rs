//! Counters of one transport: what was sent, received, dropped and refused, and why.
//!
//! The network tasks bump [`Counters`] (relaxed atomics: each counter is independent and
//! only ever read as a snapshot); [`crate::Transport::stats`] copies them into a
//! [`TransportStats`] and adds the gauges (what is open now).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a transport's counters. All counts are since [`crate::Transport::bind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams handed to QUIC for sending.
    pub datagrams_sent: u64,
    /// Payload bytes of `datagrams_sent`.
    pub datagram_bytes_sent: u64,
    /// Datagrams received from members (whether or not the channel had room).
    pub datagrams_received: u64,
    /// Payload bytes of `datagrams_received`.
    pub datagram_bytes_received: u64,
    /// Datagrams not sent because no live connection existed (a connect was started or was
    /// already in flight), the connection was just lost, or the transport is closed.
    pub datagrams_dropped_no_connection: u64,
    /// Datagrams not sent because they exceed the connection's current datagram size.
    pub datagrams_dropped_too_large: u64,
    /// Datagrams not sent because the peer does not accept datagrams at all.
    pub datagrams_dropped_unsupported: u64,
    /// Datagrams not sent because `peers_max` connections are cached already.
    pub datagrams_dropped_peers_full: u64,
    /// Received datagrams dropped because the incoming channel was full or closed.
    pub datagrams_dropped_queue_full: u64,
    /// Requests this node sent (attempted).
    pub requests_sent: u64,
    /// Requests this node sent that failed (connect, stream, timeout, refusal, size).
    pub requests_failed: u64,
    /// Requests received from members and handed to the channel.
    pub requests_received: u64,
    /// Received requests refused: too large, channel full, no answer, or timed out.
    pub requests_refused: u64,
    /// Outgoing handshakes started.
    pub connects_started: u64,
    /// Outgoing handshakes that failed or timed out.
    pub connects_failed: u64,
    /// Handshakes (either direction) in which this node refused the peer, or an incoming
    /// handshake failed: each one is also reported as [`crate::Incoming::PeerRefused`].
    pub peers_refused: u64,
    /// Incoming connections refused before the handshake because
    /// `incoming_connections_max` were open.
    pub incoming_refused_full: u64,
    /// `PeerRefused` reports dropped because the incoming channel was full.
    pub reports_dropped_queue_full: u64,
    /// `PeerRefused` reports not sent because one was sent less than
    /// `refused_log_interval_ms` ago (the next one counts them in its reason).
    pub reports_throttled: u64,
    /// Incoming connection attempts (QUIC Initials that quinn handed to the accept loop).
    pub incoming_attempts: u64,
    /// Attempts answered with a Retry (the source must prove its address).
    pub incoming_retried: u64,
    /// Attempts ignored because their (validated) source spent its budget.
    pub incoming_ignored_rate_limited: u64,
    /// Attempts ignored because `handshakes_max` handshakes were in progress.
    pub incoming_ignored_busy: u64,
    /// Attempts ignored because they needed a Retry but carried a token that did not
    /// validate.
    pub incoming_ignored_bad_token: u64,
    /// Gauge, not a count: incoming handshakes in progress at the snapshot.
    pub handshakes_in_progress: u64,
    /// Gauge, not a count: connections quinn holds state for at the snapshot (handshaking,
    /// established or closing; either direction).
    pub connections_open: u64,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The live counters behind [`TransportStats`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            /// The counters; the gauges are left at 0 for the caller to fill in.
            pub(crate) fn snapshot(&self) -> TransportStats {
                TransportStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    ..TransportStats::default()
                }
            }
        }
    };
}

counters!(
    datagrams_sent,
    datagram_bytes_sent,
    datagrams_received,
    datagram_bytes_received,
    datagrams_dropped_no_connection,
    datagrams_dropped_too_large,
    datagrams_dropped_unsupported,
    datagrams_dropped_peers_full,
    datagrams_dropped_queue_full,
    requests_sent,
    requests_failed,
    requests_received,
    requests_refused,
    connects_started,
    connects_failed,
    peers_refused,
    incoming_refused_full,
    reports_dropped_queue_full,
    reports_throttled,
    incoming_attempts,
    incoming_retried,
    incoming_ignored_rate_limited,
    incoming_ignored_busy,
    incoming_ignored_bad_token,
);

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    add(counter, 1);
}
