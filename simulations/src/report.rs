//! What a run that kept every invariant reports: its trace hash, what
//! happened to the clients, per-backend counts, and how long the pool took
//! to notice each death and recovery.

use crate::invariants::{Bounds, millis};
use shoal_core::BackendId;
use std::fmt;
use std::time::Duration;

/// The outcome of a successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    /// The fingerprint of the run; same seed and commit, same hash.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time at the end.
    pub end: Duration,
    pub bounds: Bounds,
    /// Clients that arrived.
    pub clients: u64,
    /// Clients that connected and later left on their own.
    pub served: u64,
    /// Clients whose connection was reset by their backend's death.
    pub reset: u64,
    /// Clients refused because `acquire` found no backend.
    pub refused_no_backend: u64,
    /// Clients refused after `retries` more failed connects.
    pub refused_retries: u64,
    /// One entry per backend, in pool order.
    pub backends: Vec<BackendReport>,
    /// The pool taking a dead backend down.
    pub detections: Vec<Delay>,
    /// The pool taking a recovered backend back.
    pub recoveries: Vec<Delay>,
    /// The first `acquire` that chose a recovered backend.
    pub first_choices: Vec<Delay>,
    /// Health flips that disagreed with the backend's real state when they
    /// happened (a stale failure taking a just-recovered backend down).
    pub stale_flips: u64,
}

/// Counters of one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendReport {
    pub name: String,
    /// Times `acquire` chose it.
    pub chosen: u64,
    /// Connections established on it.
    pub connections: u64,
    pub connect_failures: u64,
    /// Established connections reset by its death.
    pub resets: u64,
    pub checks: u64,
    pub check_failures: u64,
}

/// How long after a backend's change of state something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub backend: BackendId,
    /// Virtual time it happened.
    pub at: Duration,
    /// Time since the backend's change of state.
    pub after: Duration,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn delays(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    list: &[Delay],
    bound: Option<Duration>,
) -> fmt::Result {
    write!(f, "  {what}:")?;
    if list.is_empty() {
        write!(f, " none")?;
    }
    for d in list {
        write!(
            f,
            " {}@{}+{}",
            d.backend,
            millis(nanos(d.at)),
            millis(nanos(d.after))
        )?;
    }
    match bound {
        Some(b) => writeln!(f, " (bound {})", millis(nanos(b))),
        None => writeln!(f),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} seed {}: ok, trace {:016x}, {} events, ended at {}",
            self.scenario,
            self.seed,
            self.trace_hash,
            self.events,
            millis(nanos(self.end))
        )?;
        writeln!(
            f,
            "  clients {}: served {}, reset {}, refused {} (no backend {}, retries spent {})",
            self.clients,
            self.served,
            self.reset,
            self.refused_no_backend + self.refused_retries,
            self.refused_no_backend,
            self.refused_retries
        )?;
        for (i, b) in self.backends.iter().enumerate() {
            writeln!(
                f,
                "  backend #{i} {}: chosen {}, connected {}, connect failures {}, resets {}, checks {} ({} failed)",
                b.name,
                b.chosen,
                b.connections,
                b.connect_failures,
                b.resets,
                b.checks,
                b.check_failures
            )?;
        }
        delays(
            f,
            "detected down",
            &self.detections,
            Some(self.bounds.detection),
        )?;
        delays(f, "back up", &self.recoveries, Some(self.bounds.recovery))?;
        delays(f, "chosen again", &self.first_choices, None)?;
        write!(f, "  stale flips: {}", self.stale_flips)
    }
}
