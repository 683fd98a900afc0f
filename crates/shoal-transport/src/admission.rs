//! Which incoming connection attempts get handshake state, decided before the handshake.
//!
//! A QUIC Initial costs its sender one UDP packet, possibly with a spoofed source; the
//! handshake it starts costs us TLS and connection state until `connect_timeout_ms`. So
//! each attempt is judged on what quinn knows of it before any state exists:
//!
//! - Has the source proven its address? quinn's `Incoming::remote_address_validated` is
//!   true once the client echoed a Retry token. A Retry costs us one small packet and no
//!   state, and a spoofed source never comes back with the token.
//! - How many handshakes are in progress? Below
//!   [`TransportLimits::handshakes_unvalidated_max`] anyone is served at once (no extra
//!   round trip in a quiet fleet); above it only validated sources, and above
//!   [`TransportLimits::handshakes_max`] nobody (ignored: no answer at all).
//! - How many handshakes has this source IP started in the current window
//!   ([`SourceLimiter`])? Unvalidated and validated attempts are counted apart, so a
//!   spoofer burning a victim's unvalidated budget only makes the victim take a Retry.
//!
//! [`decide`] is a pure function of those facts; the accept loop (`serve`) applies it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::limits::TransportLimits;

/// What the per-source limiter says of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceBudget {
    /// Within the source's budget for this window (now counted).
    Within,
    /// The source used its budget for this window.
    Spent,
    /// The table of sources is full: this source is not tracked.
    Untracked,
}

/// Handshakes per source IP in fixed windows, unvalidated and validated attempts apart.
/// The table holds at most `sources_max` sources and is emptied every window, so its size
/// is bounded whatever the number of (spoofed) sources.
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    window: Duration,
    per_source_max: u32,
    sources_max: usize,
    window_start: Option<Instant>,
    /// Attempts this window: (unvalidated, validated).
    counts: HashMap<IpAddr, (u32, u32)>,
}

impl SourceLimiter {
    pub(crate) fn new(limits: &TransportLimits) -> Self {
        SourceLimiter {
            window: Duration::from_millis(limits.source_window_ms),
            per_source_max: limits.source_handshakes_max,
            sources_max: limits.sources_tracked_max,
            window_start: None,
            counts: HashMap::new(),
        }
    }

    /// Counts one attempt from `ip` at `now` if it is within budget.
    pub(crate) fn check(&mut self, ip: IpAddr, validated: bool, now: Instant) -> SourceBudget {
        if self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window)
        {
            self.window_start = Some(now);
            self.counts.clear();
        }
        let tracked = self.counts.len();
        let counts = match self.counts.get_mut(&ip) {
            Some(counts) => counts,
            None if tracked >= self.sources_max => return SourceBudget::Untracked,
            None => self.counts.entry(ip).or_default(),
        };
        let count = if validated {
            &mut counts.1
        } else {
            &mut counts.0
        };
        if *count >= self.per_source_max {
            return SourceBudget::Spent;
        }
        *count += 1;
        SourceBudget::Within
    }
}

/// Why an attempt was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IgnoreReason {
    /// A validated source used its budget for this window.
    SourceRateLimited,
    /// `handshakes_max` handshakes are in progress.
    Busy,
    /// A Retry was due but the Initial already carried a token that did not validate
    /// (forged, expired or from another node): a second Retry would not help.
    BadToken,
}

/// What to do with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start the handshake.
    Accept,
    /// Answer with a Retry: the client must prove its address first.
    Retry,
    /// Drop the Initial without an answer.
    Ignore(IgnoreReason),
}

/// The verdict on one attempt; see the module doc.
pub(crate) fn decide(
    budget: SourceBudget,
    validated: bool,
    handshakes_in_progress: usize,
    limits: &TransportLimits,
) -> Verdict {
    if !validated {
        let crowded = handshakes_in_progress >= limits.handshakes_unvalidated_max;
        return match budget {
            SourceBudget::Within if !crowded => Verdict::Accept,
            _ => Verdict::Retry,
        };
    }
    if budget == SourceBudget::Spent {
        return Verdict::Ignore(IgnoreReason::SourceRateLimited);
    }
    if handshakes_in_progress >= limits.handshakes_max {
        return Verdict::Ignore(IgnoreReason::Busy);
    }
    Verdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TransportLimits {
        TransportLimits {
            handshakes_max: 8,
            handshakes_unvalidated_max: 4,
            source_handshakes_max: 3,
            source_window_ms: 1_000,
            sources_tracked_max: 2,
            ..TransportLimits::default()
        }
    }

    #[test]
    fn a_source_gets_its_budget_per_window_validated_and_not_apart() {
        let mut l = SourceLimiter::new(&limits());
        let start = Instant::now();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let first: Vec<_> = (0..5).map(|_| l.check(ip, false, start)).collect();
        assert_eq!(first[..3], [SourceBudget::Within; 3]);
        assert_eq!(first[3..], [SourceBudget::Spent; 2]);
        // A spent unvalidated budget does not touch the validated one.
        assert_eq!(l.check(ip, true, start), SourceBudget::Within);
        let next = start + Duration::from_millis(1_000);
        assert_eq!(l.check(ip, false, next), SourceBudget::Within, "new window");
    }

    #[test]
    fn the_source_table_is_bounded() {
        let mut l = SourceLimiter::new(&limits());
        let now = Instant::now();
        for i in 1..=2u8 {
            assert_eq!(
                l.check([10, 0, 0, i].into(), false, now),
                SourceBudget::Within
            );
        }
        assert_eq!(
            l.check([10, 0, 0, 3].into(), false, now),
            SourceBudget::Untracked
        );
        assert_eq!(l.counts.len(), 2);
    }

    #[test]
    fn verdicts() {
        let l = limits();
        use SourceBudget::*;
        // Quiet: an unvalidated source is served at once.
        assert_eq!(decide(Within, false, 0, &l), Verdict::Accept);
        // Crowded, spent or untracked: prove the address first.
        assert_eq!(decide(Within, false, 4, &l), Verdict::Retry);
        assert_eq!(decide(Spent, false, 0, &l), Verdict::Retry);
        assert_eq!(decide(Untracked, false, 0, &l), Verdict::Retry);
        // Validated: served up to handshakes_max, unless its own budget is spent.
        assert_eq!(decide(Within, true, 7, &l), Verdict::Accept);
        assert_eq!(decide(Untracked, true, 7, &l), Verdict::Accept);
        assert_eq!(
            decide(Within, true, 8, &l),
            Verdict::Ignore(IgnoreReason::Busy)
        );
        assert_eq!(
            decide(Spent, true, 0, &l),
            Verdict::Ignore(IgnoreReason::SourceRateLimited)
        );
    }
}
