//! How fast a crashed node is found, and how a live one is kept from being
//! declared down (decision 50): foca's probe settings, and its suspicion
//! timeout as the live node count changes.
//!
//! A crash is seen by every member after
//! - the wait for some live node to probe the crashed one: each of the
//!   `n - 1` live nodes probes one member per probe period, round-robin
//!   over a shuffled list, so the first probe of a given member comes
//!   about one period after the crash, and `k` periods go by without one
//!   with probability about `e^-k`;
//! - one probe period: the probe, then the indirect probes after
//!   `probe_rtt`, fail, and the member turns suspect at the prober's next
//!   probe tick;
//! - the suspicion timeout, `suspicion_periods × probe_period ×
//!   max(1, log10 n)` (memberlist's rule; foca's LAN settings take 4
//!   periods of 1 s);
//! - the Down update's gossip, a few gossip periods.
//!
//! What keeps a live node that lost a probe's datagrams from being
//! declared down: `indirect_probes` other members probe it on the
//! prober's behalf (a suspicion needs the direct probe and every indirect
//! one to fail), and within the suspicion timeout the suspect learns of
//! the suspicion from the gossip and refutes it.
//!
//! [`crate::cluster::Cluster`] also drops the Down notice foca 2.0 sends
//! a suspect that refuted in time (see decision 50): without that, every
//! refuted suspicion still ended in a false death.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// Members gossiped to every gossip period (foca's LAN value).
pub const GOSSIP_FANOUT: usize = 3;

/// The failure-detection settings. `Detection::default()` is what shoal
/// ships; [`Detection::foca_lan`] what it ran before decision 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// Each node probes one member this often.
    pub probe_period: Duration,
    /// A probe not acknowledged within this starts the indirect probes;
    /// they have the rest of the probe period.
    pub probe_rtt: Duration,
    /// Members asked to probe on this node's behalf after a missed ack.
    pub indirect_probes: usize,
    /// The suspicion timeout in probe periods, for up to 10 live nodes
    /// (times `log10 n` above).
    pub suspicion_periods: u32,
    /// Membership updates are gossiped to [`GOSSIP_FANOUT`] members this
    /// often while there are any (an idle fleet sends none).
    pub gossip_period: Duration,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            indirect_probes: 5,
            suspicion_periods: 3,
            gossip_period: Duration::from_millis(100),
        }
    }
}

/// A setting that cannot work: the field (as the simulator's `[cluster]`
/// table names it) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {reason}")]
pub struct DetectionError {
    pub field: &'static str,
    pub value: u128,
    pub reason: &'static str,
}

impl Detection {
    /// foca's (memberlist's) LAN settings: probe every 1 s, indirect
    /// probes after 500 ms through 3 members, suspicion 4 periods, gossip
    /// every 200 ms. shoal's until decision 50.
    pub fn foca_lan() -> Detection {
        Detection {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_periods: 4,
            gossip_period: Duration::from_millis(200),
        }
    }

    /// The suspicion timeout for `live_nodes` live nodes.
    pub fn suspicion(&self, live_nodes: u32) -> Duration {
        let scale = f64::from(live_nodes.max(1)).log10().max(1.0);
        (self.probe_period * self.suspicion_periods).mul_f64(scale)
    }

    /// Checks the relations foca needs; the error names the field.
    pub fn validate(&self) -> Result<(), DetectionError> {
        let bad = |field, value: Duration, reason| {
            Err(DetectionError {
                field,
                value: value.as_millis(),
                reason,
            })
        };
        if self.probe_rtt.is_zero() {
            return bad("cluster.probe_rtt_ms", self.probe_rtt, "must be positive");
        }
        if self.probe_rtt >= self.probe_period {
            return bad(
                "cluster.probe_rtt_ms",
                self.probe_rtt,
                "must be below probe_period_ms (the indirect probes need the rest of the period)",
            );
        }
        if self.gossip_period.is_zero() {
            return bad(
                "cluster.gossip_period_ms",
                self.gossip_period,
                "must be positive",
            );
        }
        if self.indirect_probes == 0 {
            return Err(DetectionError {
                field: "cluster.indirect_probes",
                value: 0,
                reason: "must be positive",
            });
        }
        if self.suspicion_periods == 0 {
            return Err(DetectionError {
                field: "cluster.suspicion_periods",
                value: 0,
                reason: "must be positive",
            });
        }
        Ok(())
    }

    /// foca's settings for `live_nodes` live nodes, with packets of at most
    /// `packet_bytes_max`: foca's LAN settings (announces, retransmissions,
    /// down members remembered for a day) with these probe, suspicion and
    /// gossip settings. Settings that fail [`Detection::validate`] are
    /// clamped to the nearest ones foca accepts.
    pub fn swim(&self, live_nodes: u32, packet_bytes_max: usize) -> foca::Config {
        let n = NonZeroU32::new(live_nodes.max(1)).expect("max(1)");
        let mut swim = foca::Config::new_lan(n);
        let one_ms = Duration::from_millis(1);
        swim.probe_period = self.probe_period.max(one_ms * 2);
        swim.probe_rtt = self.probe_rtt.clamp(one_ms, swim.probe_period - one_ms);
        swim.num_indirect_probes = NonZeroUsize::new(self.indirect_probes.max(1)).expect("max(1)");
        swim.suspect_to_down_after = self.suspicion(live_nodes).max(one_ms);
        swim.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_period.max(one_ms),
            num_members: NonZeroUsize::new(GOSSIP_FANOUT).expect("non-zero"),
        });
        swim.max_packet_size = NonZeroUsize::new(packet_bytes_max.max(1)).expect("max(1)");
        swim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_follows_memberlists_rule() {
        let d = Detection::default();
        assert_eq!(d.suspicion(3), Duration::from_millis(1500));
        assert_eq!(d.suspicion(10), Duration::from_millis(1500));
        assert_eq!(d.suspicion(100), Duration::from_millis(3000));
        // foca's own LAN settings give the same as foca_lan.
        let lan = foca::Config::new_lan(NonZeroU32::new(30).unwrap());
        let before = Detection::foca_lan().swim(30, 1400);
        assert_eq!(before.suspect_to_down_after, lan.suspect_to_down_after);
        assert_eq!(before.probe_period, lan.probe_period);
        assert_eq!(before.probe_rtt, lan.probe_rtt);
        assert_eq!(before.num_indirect_probes, lan.num_indirect_probes);
        assert_eq!(
            before.periodic_gossip.as_ref().map(|g| g.frequency),
            lan.periodic_gossip.as_ref().map(|g| g.frequency)
        );
    }

    #[test]
    fn settings_foca_refuses_are_named() {
        let d = Detection {
            probe_rtt: Duration::from_millis(500),
            ..Detection::default()
        };
        assert_eq!(d.validate().unwrap_err().field, "cluster.probe_rtt_ms");
        let d = Detection {
            indirect_probes: 0,
            ..Detection::default()
        };
        assert_eq!(d.validate().unwrap_err().field, "cluster.indirect_probes");
        assert!(Detection::default().validate().is_ok());
        assert!(Detection::foca_lan().validate().is_ok());
    }
}
