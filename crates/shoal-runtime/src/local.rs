//! Errors that are this node's own problem, not a backend's.
//!
//! A connect or a health check that fails because this process is out of
//! file descriptors, the machine out of memory or socket buffers, or out
//! of ephemeral ports says nothing about the backend: counting it against
//! the backend (passive health, a failed check) takes healthy backends
//! down, refuses every later client with `no-backend` and, in a fleet,
//! casts down votes on other nodes. So these errors are recognised here,
//! counted in `shoal_local_resource_errors_total{op}` and logged as a
//! local problem at most once per [`LOCAL_ERROR_LOG_INTERVAL_MS`] per
//! listener and operation (clients can provoke them, so the log must not
//! grow with the traffic).

use crate::metrics::{LocalErrorLabels, LocalOp, Metrics};
use prometheus_client::metrics::counter::Counter;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::warn;

/// At most one log line per listener and operation in this period; the
/// line says how many errors it stands for.
pub const LOCAL_ERROR_LOG_INTERVAL_MS: u64 = 1000;

/// The name of `e`'s errno if it is a local resource error:
///
/// - `EMFILE`: this process is at its file descriptor limit (`ulimit -n`);
/// - `ENFILE`: the whole system is at its file limit (`fs.file-max`);
/// - `ENOBUFS`, `ENOMEM`: no kernel memory for a socket or its buffers;
/// - `EADDRNOTAVAIL`: on a connect that binds no address first, as
///   shoal's are, Linux returns it when no ephemeral port is free for
///   that destination (`net.ipv4.ip_local_port_range`).
///
/// Everything else (refused, unreachable, timed out, reset) is the
/// backend's or the network's and counts against the backend as before.
pub fn resource_errno(e: &io::Error) -> Option<&'static str> {
    let errno = nix::errno::Errno::from_raw(e.raw_os_error()?);
    use nix::errno::Errno::*;
    match errno {
        EMFILE => Some("EMFILE"),
        ENFILE => Some("ENFILE"),
        ENOBUFS => Some("ENOBUFS"),
        ENOMEM => Some("ENOMEM"),
        EADDRNOTAVAIL => Some("EADDRNOTAVAIL"),
        _ => None,
    }
}

/// Lets one event through per period and counts the ones it held back.
/// Lock-free: the data threads and the main thread share it.
#[derive(Debug)]
pub struct LogLimit {
    origin: Instant,
    period_ms: u64,
    /// Milliseconds from `origin` to the last admitted event, plus one
    /// (0: none yet).
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl LogLimit {
    /// A limit of one event per `period`.
    pub fn new(period: Duration) -> Self {
        LogLimit {
            origin: Instant::now(),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(events held back since the last admitted one)` if an event
    /// at `now` may be logged, `None` if it is held back.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let now_ms = u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// One listener's local resource errors: a counter and a log limit per
/// operation.
#[derive(Debug)]
pub struct LocalErrors {
    listener: String,
    ops: [(LocalOp, Counter, LogLimit); 3],
}

impl LocalErrors {
    /// The counters of `listener` in `metrics`.
    pub fn new(listener: &str, metrics: &Metrics) -> Self {
        let op = |op: LocalOp| {
            let counter = metrics
                .local_resource_errors
                .get_or_create(&LocalErrorLabels {
                    listener: listener.to_owned(),
                    op: op.clone(),
                })
                .clone();
            let limit = LogLimit::new(Duration::from_millis(LOCAL_ERROR_LOG_INTERVAL_MS));
            (op, counter, limit)
        };
        LocalErrors {
            listener: listener.to_owned(),
            ops: [
                op(LocalOp::accept),
                op(LocalOp::connect),
                op(LocalOp::check),
            ],
        }
    }

    /// If `e` is a local resource error, counts and (rate-limited) logs
    /// it and returns true; otherwise does nothing and returns false.
    /// `target` is the backend for a connect or a check.
    pub fn record(&self, op: LocalOp, target: Option<&str>, e: &io::Error) -> bool {
        let Some(errno) = resource_errno(e) else {
            return false;
        };
        let Some((_, counter, limit)) = self.ops.iter().find(|(o, _, _)| *o == op) else {
            return false;
        };
        counter.inc();
        if let Some(held_back) = limit.admit(Instant::now()) {
            warn!(
                listener = %self.listener,
                op = op.as_str(),
                backend = target,
                errno,
                error = %e,
                total = counter.get(),
                held_back,
                "local resource exhausted"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_resource_errnos_are_local() {
        for (errno, name) in [
            (nix::errno::Errno::EMFILE, "EMFILE"),
            (nix::errno::Errno::ENFILE, "ENFILE"),
            (nix::errno::Errno::ENOBUFS, "ENOBUFS"),
            (nix::errno::Errno::ENOMEM, "ENOMEM"),
            (nix::errno::Errno::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        ] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert_eq!(resource_errno(&e), Some(name));
        }
        for errno in [
            nix::errno::Errno::ECONNREFUSED,
            nix::errno::Errno::ETIMEDOUT,
            nix::errno::Errno::EHOSTUNREACH,
            nix::errno::Errno::ECONNRESET,
        ] {
            assert_eq!(
                resource_errno(&io::Error::from_raw_os_error(errno as i32)),
                None
            );
        }
        // Errors without an errno (a timeout of ours) are never local.
        assert_eq!(resource_errno(&io::Error::other("timed out")), None);
    }

    #[test]
    fn the_log_limit_admits_one_event_per_period_and_counts_the_rest() {
        let limit = LogLimit::new(Duration::from_millis(1000));
        let t0 = limit.origin;
        assert_eq!(limit.admit(t0), Some(0));
        assert_eq!(limit.admit(t0 + Duration::from_millis(10)), None);
        assert_eq!(limit.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(limit.admit(t0 + Duration::from_millis(1000)), Some(2));
        assert_eq!(limit.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(limit.admit(t0 + Duration::from_millis(2100)), Some(1));
    }
}
