//! This node's view of the fleet's load: the newest report shards of every
//! live peer, and their per-backend totals.
//!
//! Totals are kept incrementally (a shard's old entries are subtracted
//! when a newer shard replaces it), so reading a backend's remote load is
//! one map look-up. A peer's shards leave the view when the peer goes down
//! or when they are older than the report TTL (measured on this node's
//! clock from when each shard arrived, so clocks need not agree).
//!
//! Shard 0 of each peer also carries the addresses at which it takes
//! clients ([`LoadView::clients_of`]); they leave with the shard, so a
//! peer that stops reporting leaves the fleet's DNS answer after the TTL
//! even before SWIM declares it down (decision 51).

use super::report::{BackendKey, ReportEntry, ReportShard};
use crate::time::Instant;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The fleet's load on one backend, as this node's peers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteLoad {
    /// Σ of peers' open connections.
    pub active: u32,
    /// Checkers among the peers whose verdict is down.
    pub down_votes: u32,
    /// Peers reporting the backend at all.
    pub reporters: u32,
    /// Peers whose entry is a checker's vote ([`ReportEntry::checker`]).
    pub voters: u32,
    /// Σ of the connections peers opened to it in their last report
    /// interval ([`ReportEntry::opened`]).
    pub opened: u32,
}

#[derive(Debug, Clone)]
struct Held {
    shard: ReportShard,
    received_at: Instant,
}

/// The newest shards of each peer and their totals.
#[derive(Debug, Clone, Default)]
pub struct LoadView {
    origins: BTreeMap<SocketAddr, BTreeMap<u16, Held>>,
    totals: BTreeMap<BackendKey, RemoteLoad>,
    /// The peers' budget claims per backend.
    claims: BTreeMap<BackendKey, Claims>,
    generation: u64,
    /// Bumped whenever any origin's client addresses may have changed.
    clients_generation: u64,
}

/// The peers' claims on one backend's budget.
#[derive(Debug, Clone, Default)]
struct Claims {
    /// Σ [`ReportEntry::claimed`] over the entries held.
    sum: u64,
    /// How many entries hold each raise clock (a multiset, so the oldest
    /// and newest are at hand as entries come and go).
    clocks: BTreeMap<u32, u32>,
    /// Entries counted.
    entries: u32,
}

fn add_claims(claims: &mut BTreeMap<BackendKey, Claims>, entries: &[ReportEntry]) {
    for e in entries {
        let c = claims.entry(e.key).or_default();
        c.sum += e.claimed();
        c.entries += 1;
        if let Some(claim) = e.claim {
            *c.clocks.entry(claim.clock).or_default() += 1;
        }
    }
}

fn subtract_claims(claims: &mut BTreeMap<BackendKey, Claims>, entries: &[ReportEntry]) {
    for e in entries {
        if let Some(c) = claims.get_mut(&e.key) {
            c.sum = c.sum.saturating_sub(e.claimed());
            c.entries = c.entries.saturating_sub(1);
            if let Some(claim) = e.claim
                && let Some(n) = c.clocks.get_mut(&claim.clock)
            {
                *n -= 1;
                if *n == 0 {
                    c.clocks.remove(&claim.clock);
                }
            }
            if c.entries == 0 {
                claims.remove(&e.key);
            }
        }
    }
}

fn add(totals: &mut BTreeMap<BackendKey, RemoteLoad>, entries: &[ReportEntry]) {
    for e in entries {
        let t = totals.entry(e.key).or_default();
        t.active = t.active.saturating_add(e.active);
        t.opened = t.opened.saturating_add(e.opened);
        t.down_votes += u32::from(e.checker && !e.healthy);
        t.reporters += 1;
        t.voters += u32::from(e.checker);
    }
}

fn subtract(totals: &mut BTreeMap<BackendKey, RemoteLoad>, entries: &[ReportEntry]) {
    for e in entries {
        if let Some(t) = totals.get_mut(&e.key) {
            t.active = t.active.saturating_sub(e.active);
            t.opened = t.opened.saturating_sub(e.opened);
            t.down_votes -= u32::from(e.checker && !e.healthy);
            t.reporters -= 1;
            t.voters -= u32::from(e.checker);
            if t.reporters == 0 {
                totals.remove(&e.key);
            }
        }
    }
}

impl LoadView {
    /// The fleet's load on `key`, zero if no peer reports it.
    pub fn remote(&self, key: BackendKey) -> RemoteLoad {
        self.totals.get(&key).copied().unwrap_or_default()
    }

    /// Σ of the peers' claims on `key` against its fleet-wide budget (a
    /// peer's count where it claims nothing).
    pub fn claims(&self, key: BackendKey) -> u64 {
        self.claims.get(&key).map_or(0, |c| c.sum)
    }

    /// The oldest and newest budget raise clocks among the peers' claims
    /// on `key` (`(u32::MAX, 0)` when none claims): see
    /// [`crate::budget::BudgetView::clock_min`].
    pub fn claim_clocks(&self, key: BackendKey) -> (u32, u32) {
        let Some(c) = self.claims.get(&key) else {
            return (u32::MAX, 0);
        };
        let min = c.clocks.keys().next().copied().unwrap_or(u32::MAX);
        let max = c.clocks.keys().next_back().copied().unwrap_or(0);
        (min, max)
    }

    /// Changes on every update; drivers compare it to skip unchanged views.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Changes whenever [`LoadView::clients_of`] may give another answer
    /// for some origin (it changes far less often than
    /// [`LoadView::generation`]).
    pub fn clients_generation(&self) -> u64 {
        self.clients_generation
    }

    /// The client addresses in `origin`'s shard 0, if the view holds it.
    pub fn clients_of(&self, origin: SocketAddr) -> Option<&[IpAddr]> {
        self.origins
            .get(&origin)?
            .get(&0)
            .map(|h| h.shard.clients.as_slice())
    }

    /// Peers with at least one shard in the view.
    pub fn origins(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.origins.keys().copied()
    }

    /// Every shard held.
    pub fn shards(&self) -> impl Iterator<Item = &ReportShard> + '_ {
        self.origins
            .values()
            .flat_map(|s| s.values().map(|h| &h.shard))
    }

    /// Age of the oldest shard in use.
    pub fn max_age(&self, now: Instant) -> Option<Duration> {
        self.origins
            .values()
            .flat_map(|s| s.values())
            .map(|h| now - h.received_at)
            .max()
    }

    /// Age of `origin`'s newest shard.
    pub fn age_of(&self, origin: SocketAddr, now: Instant) -> Option<Duration> {
        self.origins
            .get(&origin)?
            .values()
            .map(|h| now - h.received_at)
            .min()
    }

    /// Applies a shard already known to be the newest of its slot. A shard
    /// from a newer epoch drops everything of older epochs from the origin
    /// (it restarted); shard indices past the new `shards` count are
    /// dropped (it has fewer backends now).
    pub fn apply(&mut self, now: Instant, shard: ReportShard) {
        let held = self.origins.entry(shard.origin).or_default();
        let clients_before = held.get(&0).map(|h| h.shard.clients.clone());
        let stale: Vec<u16> = held
            .iter()
            .filter(|(i, h)| {
                **i == shard.shard
                    || h.shard.epoch < shard.epoch
                    || (h.shard.version() < shard.version() && **i >= shard.shards)
            })
            .map(|(i, _)| *i)
            .collect();
        for i in stale {
            if let Some(old) = held.remove(&i) {
                subtract(&mut self.totals, &old.shard.entries);
                subtract_claims(&mut self.claims, &old.shard.entries);
            }
        }
        add(&mut self.totals, &shard.entries);
        add_claims(&mut self.claims, &shard.entries);
        held.insert(
            shard.shard,
            Held {
                shard,
                received_at: now,
            },
        );
        if held.get(&0).map(|h| &h.shard.clients) != clients_before.as_ref() {
            self.clients_generation += 1;
        }
        self.generation += 1;
    }

    /// Drops everything `origin` reported (it went down or left).
    pub fn remove_origin(&mut self, origin: SocketAddr) -> bool {
        let Some(held) = self.origins.remove(&origin) else {
            return false;
        };
        for h in held.values() {
            subtract(&mut self.totals, &h.shard.entries);
            subtract_claims(&mut self.claims, &h.shard.entries);
        }
        if held.contains_key(&0) {
            self.clients_generation += 1;
        }
        self.generation += 1;
        true
    }

    /// Drops shards that arrived more than `ttl` before `now`; returns how
    /// many.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let mut dropped = 0;
        for held in self.origins.values_mut() {
            let old: Vec<u16> = held
                .iter()
                .filter(|(_, h)| now - h.received_at > ttl)
                .map(|(i, _)| *i)
                .collect();
            for i in old {
                if let Some(h) = held.remove(&i) {
                    subtract(&mut self.totals, &h.shard.entries);
                    subtract_claims(&mut self.claims, &h.shard.entries);
                    dropped += 1;
                    if i == 0 {
                        self.clients_generation += 1;
                    }
                }
            }
        }
        self.origins.retain(|_, held| !held.is_empty());
        if dropped > 0 {
            self.generation += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(
        origin: u16,
        epoch: u64,
        seq: u64,
        idx: u16,
        shards: u16,
        entries: &[(u64, bool, u32)],
    ) -> ReportShard {
        ReportShard {
            origin: SocketAddr::from(([127, 0, 0, 1], origin)),
            epoch,
            seq,
            shard: idx,
            shards,
            entries: entries
                .iter()
                .map(|&(k, healthy, active)| ReportEntry::new(BackendKey(k), healthy, active))
                .collect(),
            clients: Vec::new(),
        }
    }

    const T0: Instant = Instant::ZERO;

    #[test]
    fn totals_sum_peers_and_newer_shards_replace_older() {
        let mut v = LoadView::default();
        v.apply(T0, shard(1, 1, 1, 0, 1, &[(10, true, 3), (11, false, 0)]));
        v.apply(T0, shard(2, 1, 1, 0, 1, &[(10, true, 4), (11, false, 1)]));
        assert_eq!(
            v.remote(BackendKey(10)),
            RemoteLoad {
                active: 7,
                down_votes: 0,
                reporters: 2,
                voters: 2,
                opened: 0,
            }
        );
        assert_eq!(
            v.remote(BackendKey(11)),
            RemoteLoad {
                active: 1,
                down_votes: 2,
                reporters: 2,
                voters: 2,
                opened: 0,
            }
        );
        // Without claims, a peer holds what it has open.
        assert_eq!(v.claims(BackendKey(10)), 7);
        let mut claiming = shard(1, 1, 2, 0, 1, &[(10, true, 1), (11, true, 0)]);
        claiming.entries[0].claim = Some(crate::budget::Claim {
            connections: 9,
            clock: 3,
        });
        v.apply(T0, claiming);
        assert_eq!(v.remote(BackendKey(10)).active, 5);
        assert_eq!(v.claims(BackendKey(10)), 9 + 4);
        // Only claims carry clocks: the plain count of the other origin
        // has none.
        assert_eq!(v.claim_clocks(BackendKey(10)), (3, 3));
        assert_eq!(v.claim_clocks(BackendKey(11)), (u32::MAX, 0));
        assert_eq!(v.remote(BackendKey(11)).down_votes, 1);
        assert_eq!(v.remote(BackendKey(99)), RemoteLoad::default());
    }

    #[test]
    fn only_checkers_entries_are_votes() {
        let mut v = LoadView::default();
        let mut s = shard(1, 1, 1, 0, 1, &[(10, false, 3)]);
        s.entries[0] = s.entries[0].with_checker(false);
        v.apply(T0, s);
        v.apply(T0, shard(2, 1, 1, 0, 1, &[(10, false, 1)]));
        v.apply(T0, shard(3, 1, 1, 0, 1, &[(10, true, 1)]));
        assert_eq!(
            v.remote(BackendKey(10)),
            RemoteLoad {
                active: 5,
                down_votes: 1,
                reporters: 3,
                voters: 2,
                opened: 0,
            }
        );
        assert!(v.remove_origin(SocketAddr::from(([127, 0, 0, 1], 2))));
        assert_eq!(v.remote(BackendKey(10)).down_votes, 0);
        assert_eq!(v.remote(BackendKey(10)).voters, 1);
    }

    #[test]
    fn a_restart_or_a_smaller_report_drops_stale_shards() {
        let mut v = LoadView::default();
        v.apply(T0, shard(1, 1, 1, 0, 2, &[(10, true, 3)]));
        v.apply(T0, shard(1, 1, 1, 1, 2, &[(11, true, 5)]));
        assert_eq!(v.remote(BackendKey(11)).active, 5);
        // Restarted with one shard only: shard 1 of the old epoch goes.
        v.apply(T0, shard(1, 2, 0, 0, 1, &[(10, true, 1)]));
        assert_eq!(v.remote(BackendKey(10)).active, 1);
        assert_eq!(v.remote(BackendKey(11)), RemoteLoad::default());
        assert_eq!(v.shards().count(), 1);
    }

    #[test]
    fn down_origins_and_old_shards_leave_the_totals() {
        let mut v = LoadView::default();
        let t = Instant::from_millis;
        v.apply(t(0), shard(1, 1, 1, 0, 1, &[(10, true, 3)]));
        v.apply(t(900), shard(2, 1, 1, 0, 1, &[(10, true, 4)]));
        assert_eq!(v.max_age(t(1000)), Some(Duration::from_millis(1000)));
        assert_eq!(v.expire(t(1000), Duration::from_millis(500)), 1);
        assert_eq!(v.remote(BackendKey(10)).active, 4);
        let g = v.generation();
        assert!(v.remove_origin(SocketAddr::from(([127, 0, 0, 1], 2))));
        assert!(v.generation() > g);
        assert_eq!(v.remote(BackendKey(10)), RemoteLoad::default());
        assert_eq!(v.claims(BackendKey(10)), 0);
        assert_eq!(v.origins().count(), 0);
    }
}
