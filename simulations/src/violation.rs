//! What a run returns when something that must hold did not: which
//! invariant broke ([`Invariant`]), when, in which run, and what was seen
//! ([`Violation`], whose message starts with `SEED=<n>` so that it can be
//! replayed). The invariants themselves are listed in [`crate::fleet`].

use shoal_core::Instant;
use std::fmt;

/// Which invariant a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invariant {
    /// A pool's count differs from the simulation's, or went below zero.
    Counts,
    /// A node handed out a backend dead for longer than the detection
    /// bound, or still holds it up at the end.
    Detection,
    /// A node's own checks had not taken a backend back the recovery bound
    /// after it came back.
    Recovery,
    /// A node refused a client while a trusted backend was free.
    Refusal,
    /// The run did not end within its event budget.
    EventsMax,
    /// A live node's member set differs from the true live set after the
    /// membership bound of the liveness phase.
    Membership,
    /// A node's view of a live origin's report is older than the view
    /// bound, or holds a node that is not live, or differs at the end.
    View,
    /// A node opened a connection to a backend it holds drained, a drain
    /// command was lost on its own node, or a live node lacks the newest
    /// drain mark past the drain bound.
    Drain,
    /// A backend's fleet-wide count went past its budget's bound.
    Budget,
    /// A scenario's `[expect]` table was not met (the faults did not show).
    Expectation,
    /// Once the fleet is settled, a backend is not actively checked by
    /// exactly `k` nodes (`health.checkers`, or every node if fewer).
    Checkers,
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
            Invariant::Drain => "drain",
            Invariant::Budget => "budget",
            Invariant::Expectation => "expectation",
            Invariant::Checkers => "checkers",
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
    /// What was wrong, naming the node, backend or client and the values
    /// seen.
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
