//! What must hold in every run, the time bounds it is measured against,
//! and the error a run returns when something does not.
//!
//! The invariants (checked by the event loop in [`crate::sim`]):
//! 1. [`Invariant::Counts`]: after every event, each backend's
//!    `Pool::active` equals the simulation's own count of connections on it
//!    (connecting or established); no `release` is ever made on a zero
//!    count; at the end every count is zero.
//! 2. [`Invariant::Detection`]: `acquire` never returns a backend that has
//!    been down (refusing or blackholed) for longer than
//!    [`Bounds::detection`]; at the end no such backend is up in the pool.
//! 3. [`Invariant::Recovery`]: [`Bounds::recovery`] after a backend comes
//!    back (and has stayed up), a clone of the pool asked to choose with
//!    every other backend excluded chooses it.
//! 4. [`Invariant::Refusal`]: no client gets "no backend" while a backend
//!    it has not tried has been up for longer than [`Bounds::recovery`]
//!    (from the start, for one that never went down) and is below its
//!    connection limit.
//!
//! Plus [`Invariant::EventsMax`]: a run that does not finish within its
//! event budget fails instead of looping.
//!
//! The fleet simulator ([`crate::fleet`]) checks the same four per node
//! and three more, with their bounds in [`crate::fleet::bounds`]:
//! [`Invariant::Membership`], [`Invariant::View`] and
//! [`Invariant::Expectation`] (what a scenario file says must happen).

use crate::scenario::Scenario;
use shoal_core::Instant;
use std::fmt;
use std::time::Duration;

/// Margin added to both bounds. The bounds below are exact upper limits of
/// the model (strict inequalities already absorb same-instant ties); this
/// millisecond only keeps an off-by-one-tick in the reasoning from failing a
/// run, and is far too small to hide a missed check interval.
pub const BOUND_SLACK: Duration = Duration::from_millis(1);

/// How long the pool may take to notice a change, derived from a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// From a backend's death to the pool taking it down:
    /// `interval * fall + timeout + slack`.
    ///
    /// After the death every observation is a failure (an attempt that
    /// straddles a state change fails, see `crate::sim`), and passive
    /// failures only shorten the wait. A check is in flight at the death or
    /// starts within one `interval`; checks then start every `interval`, and
    /// each failed check is reported within `timeout` of its start (at
    /// `timeout` when blackholed, one round trip, shorter, when refusing).
    /// So the `fall`-th failure is in by `interval * fall + timeout`. A
    /// backend that has never passed a check or a connect (*unproven*) falls
    /// on its first failure, sooner; one that was already down stays down.
    pub detection: Duration,
    /// From a backend's recovery to the pool taking it back:
    /// `interval * rise + max(timeout, connect_timeout) + latency.max + slack`.
    ///
    /// Attempts that started before the recovery still fail after it, and
    /// each failure resets the rise streak: a stale check ends within
    /// `timeout`, a client connect to a blackholed backend within
    /// `connect_timeout`; passive failures are the reason `connect_timeout`
    /// is in the bound at all. After the last stale failure, checks succeed
    /// every `interval` and each answers within `latency.max`, so `rise` of
    /// them are in by `interval * rise + latency.max`.
    pub recovery: Duration,
}

impl Bounds {
    /// The bounds for `scenario`'s health and network settings.
    pub fn for_scenario(scenario: &Scenario) -> Bounds {
        let h = &scenario.health;
        Bounds {
            detection: h.interval * h.fall + h.timeout + BOUND_SLACK,
            recovery: h.interval * h.rise
                + h.timeout.max(scenario.connect_timeout)
                + scenario.latency.max
                + BOUND_SLACK,
        }
    }
}

/// Which invariant a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    Counts,
    Detection,
    Recovery,
    Refusal,
    EventsMax,
    /// A live node's member set differs from the true live set after the
    /// membership bound of the liveness phase.
    Membership,
    /// A node's view of a live origin's report is older than the view
    /// bound, or holds a node that is not live, or differs at the end.
    View,
    /// A scenario's `[expect]` table was not met (the faults did not show).
    Expectation,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::Counts => "counts",
            Invariant::Detection => "detection",
            Invariant::Recovery => "recovery",
            Invariant::Refusal => "refusal",
            Invariant::EventsMax => "events-max",
            Invariant::Membership => "membership",
            Invariant::View => "view",
            Invariant::Expectation => "expectation",
        })
    }
}

/// A broken invariant: which, when, in which run, and what was seen. The
/// run's state is not kept: replay the seed to look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub seed: u64,
    pub scenario: String,
    /// Virtual time of the event that broke it.
    pub at: Instant,
    /// What was wrong, naming the backend or client and the values seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SEED={} scenario `{}`: invariant `{}` broken at t={}: {}",
            self.seed,
            self.scenario,
            self.invariant,
            millis(self.at.as_nanos()),
            self.detail
        )
    }
}

impl std::error::Error for Violation {}

/// A duration in nanoseconds as milliseconds with three decimals.
pub(crate) fn millis(nanos: u64) -> String {
    format!("{}.{:03}ms", nanos / 1_000_000, (nanos / 1_000) % 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::HealthConfig;

    #[test]
    fn bounds_follow_the_health_config() {
        let s = Scenario {
            health: HealthConfig {
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                rise: 2,
                fall: 3,
            },
            connect_timeout: Duration::from_millis(1500),
            ..Scenario::steady()
        };
        let b = Bounds::for_scenario(&s);
        assert_eq!(b.detection, Duration::from_millis(7_001));
        assert_eq!(
            b.recovery,
            Duration::from_millis(4_000 + 1_500 + 1) + s.latency.max
        );
    }

    #[test]
    fn a_violation_names_its_seed() {
        let v = Violation {
            invariant: Invariant::Detection,
            seed: 42,
            scenario: "steady".into(),
            at: Instant::from_nanos(1_234_567_000),
            detail: "backend #1 chosen".into(),
        };
        assert_eq!(
            v.to_string(),
            "SEED=42 scenario `steady`: invariant `detection` broken at t=1234.567ms: backend #1 chosen"
        );
    }
}
