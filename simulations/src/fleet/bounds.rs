//! The time bounds the fleet invariants are measured against, each derived
//! from the scenario's settings and foca's (as the core sizes them for the
//! fleet). The derivations are here, next to the numbers.
//!
//! Notation: `P` foca's probe period (500 ms), `R` its probe round trip
//! (200 ms), `S(n)` its suspicion timeout for `n` live nodes (memberlist's
//! rule with 3 periods, `3 P max(1, log10 n)`; decision 50), `G` its
//! periodic gossip period (100 ms),
//! `T(n)` its retransmissions per update (`4 log10(n + 1)`), `A` its
//! period of announcing to members it holds down (65 s); `I` the report
//! interval, `F` the report refresh, `L` the network's one-way latency
//! bound, `latency + 20 jitter` (the jitter is exponential: a datagram
//! exceeds it with probability `e^-20`, about 2 in a billion).
//!
//! - **Dissemination** `D = G (T(n) + 2) + P` (membership updates only:
//!   load reports do not ride on SWIM): an update is re-sent `T(n)`
//!   times by every node that learns it, to 3 members every `G`, and also
//!   rides on probes; in `T + 2` gossip rounds an epidemic of fan-out 3
//!   has reached every node of the fleets simulated here with room to
//!   spare, and one probe period covers an update that only rides on
//!   probes.
//! - **Membership** (after faults stop), `M = P K + R + S(n) + D`, plus
//!   `2 A + P K + D` when the safety phase could make live nodes hold each
//!   other down (a cut, a pause, or loss), where `K` = [`PROBE_PERIODS`]:
//!   - a crashed node is probed by some live node within `K` periods
//!     (every node probes one member per period, round-robin over a
//!     shuffled list, so `n - 1` probers miss a given node for `K`
//!     periods with probability about `e^-K`), fails the probe within
//!     `R`, is declared down `S(n)` later, and the news reaches everyone
//!     within `D`;
//!   - a restarted node announces to the seeds at once and is gossiped
//!     within `D`, well inside the above; but a restarted seed may have
//!     nobody to announce to (its seed list names only itself, or its
//!     other seeds are down too) once the fleet has declared its previous
//!     life down, which takes about 2 s (decision 50): it waits for a
//!     member's announce to the seeds it does not hold alive, so a
//!     scenario that restarts a seed adds that period
//!     (`MISSING_SEED_ANNOUNCE_INTERVAL`, 30 s) and `D` (`fleet-swarm`
//!     seeds 505 and 518);
//!   - two live nodes that hold each other down (each side of a healed
//!     partition) exchange nothing by themselves: foca only contacts down
//!     members in its announce-to-down round every `A`; the first such
//!     announce makes the receiver tell the sender it is down
//!     (`TurnUndead`), the sender renews its identity, and the renewed
//!     identity reaches the other side by the next round at the latest,
//!     hence `2 A`; then every node renewed this way is probed and
//!     gossiped as above (`P K + D`).
//! - **View** `V = F + I + L`: the origin sends each of its report
//!   datagrams itself to every member it holds alive, one hop (decision
//!   27), so once membership has converged (no loss, no cut, nobody
//!   paused in the liveness phase) every publication reaches every node
//!   within `L`: a changed shard when it is published (the simulator
//!   counts a content as changed when it is published), an unchanged one
//!   at its refresh. A shard a node missed before membership converged
//!   (sent before the origin held it alive, or while it held the origin
//!   down) comes again at the origin's next refresh: at the first report
//!   tick at least `F` after the shard's last publication, at most
//!   `F + I` after convergence (ticks come every `I`; a health flip
//!   publishes between ticks), and arrives `L` later. Checked as
//!   *staleness* on contents: how long a node has held an origin's
//!   content after the origin moved on from it, or has held nothing of a
//!   live origin. With epidemic dissemination (before decision 27) this
//!   bound was `I + D`, 2.25 s for 5 nodes and 4.05 s for 1000; it is now
//!   1.26 s for the default settings at any fleet size.
//! - **Detection** of a backend's death by a node,
//!   `interval × fall + timeout + slack`: after the death every
//!   observation is a failure (an attempt that straddles a state change
//!   fails, see `sim/clients.rs`), and passive failures only shorten the
//!   wait. A check is in flight at the death or starts within one
//!   `interval`; checks then start every `interval`, and each failed check
//!   is reported within `timeout` of its start (at `timeout` when
//!   blackholed, one round trip, shorter, when refusing). So the
//!   `fall`-th failure is in by `interval × fall + timeout`. A backend
//!   that has never passed a check or a connect (*unproven*) falls on its
//!   first failure, sooner; one that was already down stays down.
//!   Measured from the later of the death and the node's start or resume.
//! - **Shared detection** (decision 49: only `k` nodes check each
//!   backend, `k` below the fleet's size) `detection + L + slack`: the
//!   checkers detect within the detection bound and publish the flip at
//!   once, one hop, to every member; a node that does not check the
//!   backend holds it down when the majority of its checkers' votes
//!   arrive. It holds while the fleet is settled: within
//!   [`FleetBounds::checker_settle`] after a node or network fault a
//!   node may still hold a departed checker's vote (until its TTL or
//!   its `MemberDown`) or an assignment from before the change, and
//!   only its passive checks guard it, so no bound is checked at a
//!   choice then; at the end, after the liveness phase, the bound is.
//!   `checker_settle` is the crash part of the membership bound (the
//!   departed checker is declared down and its backends reassigned)
//!   plus a report TTL and interval (its vote expires first, if it is
//!   only cut off) plus the detection bound (the new checkers' checks).
//! - **Recovery** of a backend in a node's own checks,
//!   `interval × rise + max(timeout, connect_timeout) + rtt_max + slack`
//!   (`rtt_max` a healthy backend's round trip, or a slow one's if the
//!   scenario has a backend turn slow):
//!   attempts that started before the recovery still fail after it, and
//!   each failure resets the rise streak: a stale check ends within
//!   `timeout`, a client connect to a blackholed backend within
//!   `connect_timeout` (the reason it is in the bound at all, found by the
//!   single-node simulator's `chaos` seeds 19, 26, 87 and 101). After the
//!   last stale failure, checks succeed every `interval` and each answers
//!   within `rtt_max`, so `rise` of them are in by
//!   `interval × rise + rtt_max`.
//! - **Refusal window** `recovery + V + report_ttl + report_interval`: the
//!   fleet-down majority rule can exclude a healthy backend only through a
//!   stale down vote, and a peer flips its vote within `recovery`, after
//!   which the newer report arrives within `V` or the old one expires
//!   (its TTL, checked every report interval). A node alone has no peer
//!   to vote: its window is `recovery`.
//! - **Drain hop** `L + slack`: the issuing node publishes a changed
//!   shard at once (a drain changes its entry) to every member it holds
//!   alive, one hop, and a receiver that holds the issuer alive applies a
//!   newer shard of it and adopts the marks it carries. Checked for the
//!   receivers that both held alive at the issue, that the network let
//!   the datagram reach (no cut from the issuer, no loss), and that ran
//!   meanwhile (no pause, no restart).
//! - **Drain** `V`, from the later of the mark's issue and the
//!   point where the view bound starts (membership agreed in the liveness
//!   phase): the issuing node publishes at once to every member it holds
//!   alive, and every report entry carries its origin's newest mark for
//!   the backend, so the next refresh of any node holding the mark brings
//!   it to every member (decision 33); a node that (re)starts meanwhile
//!   gets it from its warm-start sync or the same refresh.
//!
//! [`BOUND_SLACK`] (1 ms) is added to every bound: the bounds are exact
//! upper limits of the model (strict inequalities already absorb
//! same-instant ties); it only keeps an off-by-one-tick in the reasoning
//! from failing a run, and is far too small to hide a missed interval.

use super::scenario::{BackendState, FaultKind, FleetScenario};
use shoal_core::cluster::MISSING_SEED_ANNOUNCE_INTERVAL;
use shoal_core::node::Settings;
use std::time::Duration;

/// Margin added to every bound (see the module doc).
pub const BOUND_SLACK: Duration = Duration::from_millis(1);

/// Probe periods within which some node probes a given crashed node (see
/// the module doc): `e^-8` is about 3 in 10,000 per crash.
pub const PROBE_PERIODS: u32 = 8;

/// Mean jitters above the base latency that bound a datagram's one-way
/// latency `L` (see the module doc).
pub const LATENCY_TAIL_JITTERS: u64 = 20;

/// The bounds of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetBounds {
    /// `D`.
    pub dissemination: Duration,
    /// `S(n)`.
    pub suspicion: Duration,
    /// `M`, from the start of the liveness phase.
    pub membership: Duration,
    /// `V`.
    pub view: Duration,
    /// Backend death to a node's pool taking it down.
    pub detection: Duration,
    /// Whether fewer nodes than the fleet check each backend.
    pub shared_checks: bool,
    /// Backend death to every node's pool holding it unavailable, with
    /// shared checks (the detection bound without).
    pub shared_detection: Duration,
    /// After a node or network fault, how long the shared detection
    /// bound is not checked at a choice.
    pub checker_settle: Duration,
    /// Backend recovery to a node's pool taking it back.
    pub recovery: Duration,
    /// Recovery to when a refusal with the backend free is a violation.
    pub refusal_window: Duration,
    /// A drain mark's issue to the members the issuer reached in one hop
    /// holding it.
    pub drain_hop: Duration,
    /// A drain mark's issue (or the start of the view bound, if later) to
    /// every live node holding it.
    pub drain: Duration,
    /// Length of the liveness phase (before waiting for clients).
    pub liveness: Duration,
}

impl FleetBounds {
    /// The bounds for `s`.
    pub fn for_scenario(s: &FleetScenario) -> FleetBounds {
        let n = s.nodes.max(3) as u32;
        let settings = s.settings();
        let (interval, refresh, ttl) = (
            settings.report_interval,
            settings.report_refresh,
            settings.report_ttl,
        );
        // foca's settings as the core derives them for n live nodes.
        let swim = Settings {
            expected_nodes: n,
            ..settings.clone()
        }
        .cluster_config()
        .swim;
        let p = swim.probe_period;
        let gossip = swim.periodic_gossip.as_ref().map_or(p, |g| g.frequency);
        let announce_down = swim
            .periodic_announce_to_down_members
            .as_ref()
            .map_or(Duration::ZERO, |a| a.frequency);
        let dissemination = gossip * (u32::from(swim.max_transmissions.get()) + 2) + p;
        let suspicion = swim.suspect_to_down_after;
        let mut membership = p * PROBE_PERIODS + swim.probe_rtt + suspicion + dissemination;
        let crash_membership = membership;
        let may_split = s.network.loss_per_mille > 0
            || s.faults.iter().any(|f| {
                matches!(
                    f.kind,
                    FaultKind::Partition
                        | FaultKind::OneWay
                        | FaultKind::Isolate
                        | FaultKind::Pause
                        | FaultKind::Loss
                )
            });
        if may_split {
            membership += announce_down * 2 + p * PROBE_PERIODS + dissemination;
        }
        let seed_restarts = s.faults.iter().any(|f| match f.kind {
            FaultKind::Restart => f.node.is_some_and(|n| n < s.seeds),
            FaultKind::RollingRestart => s.seeds == 1,
            _ => false,
        });
        if seed_restarts {
            membership += MISSING_SEED_ANNOUNCE_INTERVAL + dissemination;
        }
        let latency = Duration::from_micros(
            s.network.latency_us + LATENCY_TAIL_JITTERS * s.network.jitter_us,
        );
        let view = refresh + interval + latency + BOUND_SLACK;
        let h = s.health.config();
        let b = &s.backends;
        let slow = s.faults.iter().any(|f| f.state == Some(BackendState::Slow));
        let mut rtt_max = Duration::from_micros(b.rtt_max_us);
        if slow {
            rtt_max = rtt_max.max(Duration::from_millis(b.slow_rtt_ms));
        }
        let connect_timeout = Duration::from_millis(b.connect_timeout_ms);
        let detection = h.interval * h.fall + h.timeout + BOUND_SLACK;
        let shared_checks =
            (shoal_core::checkers::effective(h.checkers, s.nodes as u32) as usize) < s.nodes;
        let shared_detection = if shared_checks {
            detection + latency + BOUND_SLACK
        } else {
            detection
        };
        let checker_settle = crash_membership + ttl + interval + detection;
        let recovery = h.interval * h.rise + h.timeout.max(connect_timeout) + rtt_max + BOUND_SLACK;
        let refusal_window = if s.nodes > 1 {
            recovery + view + ttl + interval
        } else {
            recovery
        };
        let drain = view;
        let drain_hop = latency + BOUND_SLACK;
        let liveness = (membership + view).max(shared_detection.max(recovery) + view);
        FleetBounds {
            dissemination,
            suspicion,
            membership,
            view,
            detection,
            shared_checks,
            shared_detection,
            checker_settle,
            recovery,
            refusal_window,
            drain_hop,
            drain,
            liveness,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The single-node simulator's bounds test, on a one-node scenario:
    /// detection `interval × fall + timeout + slack`, recovery
    /// `interval × rise + max(timeout, connect_timeout) + rtt_max + slack`,
    /// and no fleet term in the refusal window.
    #[test]
    fn bounds_follow_the_health_config() {
        let text = "name = \"x\"\nnodes = 1\nseeds = 1\nduration_ms = 1000\n\
            [health]\ninterval_ms = 2000\ntimeout_ms = 1000\nrise = 2\nfall = 3\n\
            [backends]\nconnect_timeout_ms = 1500\nslow_rtt_ms = 10\n";
        let s = FleetScenario::from_toml(text).unwrap();
        let b = FleetBounds::for_scenario(&s);
        assert_eq!(b.detection, ms(7_001));
        assert_eq!(b.recovery, ms(4_000 + 1_500 + 3 + 1));
        assert_eq!(b.refusal_window, b.recovery);
        // A backend that turns slow answers within slow_rtt_ms.
        let text = format!(
            "{text}[[faults]]\nat_ms = 10\nkind = \"backend\"\nbackend = 0\nstate = \"slow\"\n"
        );
        let s = FleetScenario::from_toml(&text).unwrap();
        let b = FleetBounds::for_scenario(&s);
        assert_eq!(b.recovery, ms(4_000 + 1_500 + 10 + 1));
    }

    #[test]
    fn bounds_follow_the_settings() {
        let text = "name = \"x\"\nnodes = 5\nduration_ms = 1000\n";
        let s = FleetScenario::from_toml(text).unwrap();
        let b = FleetBounds::for_scenario(&s);
        // n = 5: T = floor(4 log10 6) = 3, S = 3 × 500 ms (decision 50).
        assert_eq!(b.dissemination, Duration::from_millis(100 * 5 + 500));
        assert_eq!(b.suspicion, Duration::from_millis(1_500));
        assert_eq!(
            b.membership,
            Duration::from_millis(8 * 500 + 200 + 1_500 + 1_000)
        );
        // F = 1 s, I = 250 ms, L = 300 µs + 20 × 300 µs, slack 1 ms.
        assert_eq!(
            b.view,
            Duration::from_micros(1_000_000 + 250_000 + 6_300 + 1_000)
        );
        assert_eq!(b.detection, Duration::from_millis(2_000 * 3 + 1_000 + 1));
        assert_eq!(b.refusal_window, b.recovery + b.view + ms(3_000 + 250));
        assert_eq!(b.drain, b.view);
        assert_eq!(b.drain_hop, Duration::from_micros(6_300 + 1_000));
        let lossy = FleetScenario {
            network: super::super::scenario::NetworkSettings {
                loss_per_mille: 10,
                ..s.network
            },
            ..s
        };
        let l = FleetBounds::for_scenario(&lossy);
        assert_eq!(
            l.membership,
            b.membership + Duration::from_secs(130 + 4) + b.dissemination
        );
        // A seed that restarts may wait for a member's missing-seed announce.
        let text = format!("{text}[[faults]]\nat_ms = 10\nkind = \"restart\"\nnode = 0\n");
        let r = FleetBounds::for_scenario(&FleetScenario::from_toml(&text).unwrap());
        assert_eq!(
            r.membership,
            b.membership + MISSING_SEED_ANNOUNCE_INTERVAL + b.dissemination
        );
    }
}
