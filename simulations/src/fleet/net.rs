//! The simulated network between nodes: who can reach whom, and how long a
//! datagram or a stream message takes.
//!
//! - Latency: `latency_us` plus an exponential jitter of mean `jitter_us`,
//!   drawn per datagram, so datagrams overtake each other (reordering).
//! - Loss and duplication: per datagram, in thousandths; a duplicate gets
//!   its own latency.
//! - Cuts: a symmetric partition gives each node a group (nodes in
//!   different groups cannot talk), a one-way cut drops `from → to` only,
//!   and an isolated node reaches nobody. A cut applies when a message is
//!   sent; with sub-millisecond latencies, what is in flight when a cut
//!   starts is not worth modelling.
//! - Streams (syncs) are reliable: only a cut stops them, and then the
//!   sender's request fails at its timeout. A node made slow at syncs
//!   (a seed busy serving its state) answers each one that much later.

use super::scenario::NetworkSettings;
use crate::random::{SimRng, exponential};
use rand::RngExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after the first delay, and again after the second if
    /// duplicated.
    Delivered(Duration, Option<Duration>),
    /// Dropped by a cut.
    Cut,
    /// Lost at random.
    Lost,
}

/// The network's state and its random stream.
#[derive(Debug, Clone)]
pub struct Network {
    settings: NetworkSettings,
    loss_per_mille: u32,
    dup_per_mille: u32,
    /// Partition group of each node; all 0 when whole.
    group: Vec<u32>,
    one_way: BTreeSet<(usize, usize)>,
    isolated: BTreeSet<usize>,
    /// Extra delay of the sync answers each node sends.
    sync_delay: BTreeMap<usize, Duration>,
    rng: SimRng,
}

impl Network {
    /// A whole network of `nodes` nodes with the scenario's loss rates.
    pub fn new(settings: NetworkSettings, nodes: usize, rng: SimRng) -> Network {
        Network {
            settings,
            loss_per_mille: settings.loss_per_mille,
            dup_per_mille: settings.dup_per_mille,
            group: vec![0; nodes],
            one_way: BTreeSet::new(),
            isolated: BTreeSet::new(),
            sync_delay: BTreeMap::new(),
            rng,
        }
    }

    /// Whether a message from `from` to `to` is dropped by a cut.
    pub fn blocked(&self, from: usize, to: usize) -> bool {
        self.group[from] != self.group[to]
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.one_way.contains(&(from, to))
    }

    /// Whether any cut is in force.
    pub fn is_cut(&self) -> bool {
        self.group.iter().any(|&g| g != 0) || !self.one_way.is_empty() || !self.isolated.is_empty()
    }

    /// One-way latency of one message.
    pub fn latency(&mut self) -> Duration {
        Duration::from_micros(self.settings.latency_us)
            + exponential(
                &mut self.rng,
                Duration::from_micros(self.settings.jitter_us),
            )
    }

    /// Decides the fate of a datagram sent now.
    pub fn datagram(&mut self, from: usize, to: usize) -> Fate {
        if self.blocked(from, to) {
            return Fate::Cut;
        }
        if self.loss_per_mille > 0 && self.rng.random_range(0..1000) < self.loss_per_mille {
            return Fate::Lost;
        }
        let first = self.latency();
        let dup = (self.dup_per_mille > 0 && self.rng.random_range(0..1000) < self.dup_per_mille)
            .then(|| self.latency());
        Fate::Delivered(first, dup)
    }

    /// Splits the nodes into `groups`; nodes in none form one more group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let rest = groups.len() as u32 + 1;
        self.group.iter_mut().for_each(|g| *g = rest);
        for (k, members) in groups.iter().enumerate() {
            for &n in members {
                self.group[n] = k as u32 + 1;
            }
        }
    }

    /// Drops everything from each of `from` to each of `to`.
    pub fn cut_one_way(&mut self, from: &[usize], to: &[usize]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.one_way.insert((a, b));
                }
            }
        }
    }

    /// Cuts `node` off from every other.
    pub fn isolate(&mut self, node: usize) {
        self.isolated.insert(node);
    }

    /// Ends every cut.
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
        self.one_way.clear();
        self.isolated.clear();
    }

    /// Datagrams lost now, in thousandths.
    pub fn loss_per_mille(&self) -> u32 {
        self.loss_per_mille
    }

    pub fn set_loss(&mut self, per_mille: u32) {
        self.loss_per_mille = per_mille;
    }

    pub fn set_dup(&mut self, per_mille: u32) {
        self.dup_per_mille = per_mille;
    }

    /// `node`'s sync answers take `delay` longer from now on.
    pub fn slow_syncs(&mut self, node: usize, delay: Duration) {
        self.sync_delay.insert(node, delay);
    }

    /// The extra delay of `node`'s sync answers.
    pub fn sync_delay(&self, node: usize) -> Duration {
        self.sync_delay.get(&node).copied().unwrap_or_default()
    }

    /// The liveness phase: no cut, no loss, no duplicate, no slow sync.
    pub fn calm(&mut self) {
        self.heal();
        self.sync_delay.clear();
        self.loss_per_mille = 0;
        self.dup_per_mille = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn net(n: usize) -> Network {
        Network::new(NetworkSettings::default(), n, SimRng::seed_from_u64(1))
    }

    #[test]
    fn partitions_one_way_cuts_and_isolation() {
        let mut n = net(5);
        assert!(!n.blocked(0, 4) && !n.is_cut());
        n.partition(&[vec![0, 1]]);
        assert!(n.blocked(0, 2) && n.blocked(2, 0));
        assert!(
            !n.blocked(0, 1) && !n.blocked(2, 4),
            "the rest is one group"
        );
        n.heal();
        n.cut_one_way(&[0], &[1, 2]);
        assert!(n.blocked(0, 1) && !n.blocked(1, 0) && n.blocked(0, 2));
        n.heal();
        n.isolate(3);
        assert!(n.blocked(3, 0) && n.blocked(4, 3) && !n.blocked(0, 4));
        n.slow_syncs(2, Duration::from_secs(9));
        assert_eq!(n.sync_delay(2), Duration::from_secs(9));
        assert_eq!(n.sync_delay(1), Duration::ZERO);
        n.calm();
        assert!(!n.is_cut());
        assert_eq!(n.sync_delay(2), Duration::ZERO);
    }

    #[test]
    fn loss_and_duplication_follow_their_rates() {
        let mut n = net(2);
        n.set_loss(100);
        n.set_dup(200);
        let (mut lost, mut dups) = (0, 0);
        for _ in 0..10_000 {
            match n.datagram(0, 1) {
                Fate::Lost => lost += 1,
                Fate::Delivered(_, Some(_)) => dups += 1,
                Fate::Delivered(_, None) => {}
                Fate::Cut => panic!("no cut"),
            }
        }
        assert!((800..1200).contains(&lost), "{lost}");
        assert!((1500..2100).contains(&dups), "{dups}");
    }
}
