//! The balance sample (every `balance_interval_ms`: the true fleet-wide
//! counts per backend) and the periodic sample (every `sample_interval_ms`):
//! the count invariant for every node, joins, membership agreement and the membership bound, view
//! staleness and the view bound, drain marks and the drain bound, and
//! what warming nodes already know.

use super::{BalanceSample, Event, Sim, nanos};
use crate::violation::{Invariant, Violation, millis};
use shoal_core::Instant;
use shoal_core::cluster::report::{ENTRIES_PER_SHARD_MAX, ReportEntry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

impl Sim<'_> {
    /// The balance sample (every `balance_interval_ms`): the true
    /// fleet-wide counts of the backends that are up, from
    /// `balance_settle_ms` after the clients start until they stop.
    pub(super) fn on_balance(&mut self) -> Result<(), Violation> {
        let now = self.now();
        self.queue.schedule_in(
            Duration::from_millis(self.s.balance_interval_ms),
            Event::Balance,
        );
        let from =
            Instant::ZERO + Duration::from_millis(self.s.warmup_ms + self.s.balance_settle_ms);
        if now < from || now >= self.arrivals_end {
            return Ok(());
        }
        let weights = &self.s.backends.weights;
        let up: Vec<(u32, f64)> = self
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.state.is_up())
            .map(|(i, b)| {
                let w = weights.get(i).copied().unwrap_or(1).max(1);
                (b.global_active, f64::from(w))
            })
            .collect();
        let sum: u32 = up.iter().map(|&(n, _)| n).sum();
        if sum > 0 {
            // Per unit of weight: equal weights give max / mean.
            let per_weight = f64::from(sum) / up.iter().map(|&(_, w)| w).sum::<f64>();
            let peak = up
                .iter()
                .map(|&(n, w)| f64::from(n) / w)
                .fold(0.0, f64::max);
            self.t.balance.push(BalanceSample {
                max: up.iter().map(|&(n, _)| n).max().unwrap_or(0),
                mean: f64::from(sum) / up.len() as f64,
                peak_over_mean: peak / per_weight,
            });
        }
        Ok(())
    }

    pub(super) fn on_sample(&mut self) -> Result<(), Violation> {
        let now = self.now();
        self.queue.schedule_in(
            Duration::from_millis(self.s.sample_interval_ms),
            Event::Sample,
        );
        for i in 0..self.nodes.len() {
            if self.nodes[i].proc.is_some() {
                self.check_counts(i)?;
            }
        }
        self.sample_joins();
        self.sample_warm_starts();
        self.sample_drain_spread();
        let mismatch = self.membership_mismatch();
        match (&mismatch, self.agreed_since) {
            (None, None) => self.agreed_since = Some(now),
            (Some(_), Some(_)) => self.agreed_since = None,
            _ => {}
        }
        if mismatch.is_none() && self.t.formation.is_none() && self.boots_pending == 0 {
            let last_boot = self
                .nodes
                .iter()
                .filter(|n| n.starts == 1)
                .map(|n| n.started_at)
                .max()
                .unwrap_or(Instant::ZERO);
            self.t.formation = Some(now - last_boot);
        }
        let (stale, who) = self.view_staleness();
        if self.t.formation.is_some() && mismatch.is_none() {
            self.t.view_staleness_run_max = self.t.view_staleness_run_max.max(stale);
        }
        let Some(l) = self.liveness_at else {
            return Ok(());
        };
        if let Some(why) = mismatch
            && now > l + self.bounds.membership
        {
            let v = self.violation(
                Invariant::Membership,
                format!(
                    "{} after the liveness phase began (membership bound {}): {why}",
                    millis(nanos(now - l)),
                    millis(nanos(self.bounds.membership))
                ),
            );
            self.soft(Err(v))?;
        }
        // Views are held to their bound once membership has agreed, in
        // the liveness phase, for a view bound.
        if let Some(agreed) = self.agreed_since {
            if stale <= self.bounds.view {
                self.view_ok_since.get_or_insert(now);
            } else {
                self.view_ok_since = None;
            }
            let start = agreed.max(l);
            if now > start + self.bounds.drain {
                let checked = self.check_drain_staleness(start);
                self.soft(checked)?;
            }
            if now > start + self.bounds.view {
                self.t.view_staleness_max = self.t.view_staleness_max.max(stale);
                if stale > self.bounds.view {
                    let v = self.violation(
                        Invariant::View,
                        format!(
                            "{who} for {} > view bound {}",
                            millis(nanos(stale)),
                            millis(nanos(self.bounds.view))
                        ),
                    );
                    self.soft(Err(v))?;
                }
            }
        } else {
            self.view_ok_since = None;
        }
        Ok(())
    }

    /// Marks issued that every live, running node now holds (or holds
    /// something newer than): how long that took.
    fn sample_drain_spread(&mut self) {
        let now = self.now();
        let mut spreading = std::mem::take(&mut self.spreading);
        spreading.retain(|m| {
            let key = self.keys[m.backend];
            let everywhere = self.nodes.iter().all(|n| {
                !n.is_live()
                    || n.paused.is_some()
                    || n.proc.as_ref().is_some_and(|p| {
                        p.node
                            .cluster()
                            .drain_mark(key)
                            .is_some_and(|h| h == m.mark || h.supersedes(Some(&m.mark)))
                    })
            });
            if everywhere {
                self.t.drain_spread.push(now - m.at);
            }
            !everywhere
        });
        self.spreading = spreading;
    }

    /// Drain, in the liveness phase once `start` (membership agreed) is a
    /// drain bound past: every live node holds the newest mark any live
    /// node holds for each backend, at the latest a drain bound after the
    /// later of `start` and the mark's issue; and every mark held was
    /// issued by a command.
    fn check_drain_staleness(&mut self, start: Instant) -> Result<(), Violation> {
        let now = self.now();
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_live())
            .collect();
        for b in 0..self.backends.len() {
            let Some(newest) = self.newest_held(b, &live) else {
                continue;
            };
            let Some(&issued) = self.issued.get(&(b, newest.version, newest.draining)) else {
                return Err(self.violation(
                    Invariant::Drain,
                    format!(
                        "a live node holds {newest:?} for backend #{b}, which no command issued"
                    ),
                ));
            };
            let key = self.keys[b];
            for &i in &live {
                let held = self.nodes[i]
                    .proc
                    .as_ref()
                    .expect("live")
                    .node
                    .cluster()
                    .drain_mark(key);
                if held == Some(newest) {
                    continue;
                }
                let stale = now - issued.max(start);
                self.t.drain_staleness_max = self.t.drain_staleness_max.max(stale);
                if stale > self.bounds.drain {
                    return Err(self.violation(
                        Invariant::Drain,
                        format!(
                            "n{i} holds {held:?} for backend #{b}, {} after the newest mark {newest:?} (issued at {}) could reach it (drain bound {})",
                            millis(nanos(stale)),
                            millis(issued.as_nanos()),
                            millis(nanos(self.bounds.drain))
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether each warming node's pool already holds a report of every
    /// other live node on every backend (for the slow-warm-start
    /// expectation: a warm start must not keep the node blind).
    fn sample_warm_starts(&mut self) {
        let live = self.nodes.iter().filter(|n| n.is_live()).count();
        for n in &mut self.nodes {
            let Some(p) = n.proc.as_mut() else {
                continue;
            };
            let Some(w) = p.warm.as_mut() else {
                continue;
            };
            let peers = live.saturating_sub(1) as u32;
            if p.pool.ids().all(|id| p.pool.remote(id).reporters >= peers) {
                w.informed = true;
            }
        }
    }

    pub(super) fn sample_joins(&mut self) {
        let now = self.now();
        let mut done = Vec::new();
        for (k, w) in self.join_watches.iter().enumerate() {
            let all = self.nodes.iter().enumerate().all(|(x, n)| {
                x == w.subject
                    || !n.is_live()
                    || n.paused.is_some()
                    || n.proc
                        .as_ref()
                        .is_some_and(|p| p.node.cluster().members().any(|m| *m == w.identity))
            });
            if all {
                done.push(k);
            }
        }
        for k in done.into_iter().rev() {
            let w = self.join_watches.remove(k);
            // The first start of every node forms the fleet: not a join.
            if self.nodes[w.subject].starts > 1 {
                self.t.joins.push(now - w.at);
            }
        }
    }

    /// The longest time a live node has been missing a newer report of a
    /// live origin (or holds a node that is not live), and who.
    ///
    /// The core publishes a shard when its entries change and refreshes it
    /// otherwise, so staleness is measured on contents: a node that holds
    /// content `C` of an origin has been stale since the origin's content
    /// stopped being `C` (zero if it still is). A node that holds nothing
    /// of the origin's current life has been stale since it was last seen
    /// holding it (at a sample; one sample interval is given back), or
    /// since the origin's first publication if it never held it.
    pub(super) fn view_staleness(&mut self) -> (Duration, String) {
        let now = self.now();
        let sample = Duration::from_millis(self.s.sample_interval_ms);
        let shards = self.backends.len().div_ceil(ENTRIES_PER_SHARD_MAX).max(1);
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_live())
            .collect();
        let mut worst = (Duration::ZERO, String::new());
        for &x in &live {
            let view = self.nodes[x]
                .proc
                .as_ref()
                .expect("live")
                .node
                .cluster()
                .view();
            // Per origin and shard index: (epoch, entries).
            let mut held: BTreeMap<SocketAddr, BTreeMap<u16, (u64, &[ReportEntry])>> =
                BTreeMap::new();
            for s in view.shards() {
                held.entry(s.origin)
                    .or_default()
                    .insert(s.shard, (s.epoch, &s.entries));
            }
            for addr in held.keys() {
                let o = self.by_addr.get(addr).copied();
                if !o.is_some_and(|o| self.nodes[o].is_live()) && worst.0 < Duration::MAX {
                    worst = (
                        Duration::MAX,
                        format!("n{x} holds a report of {addr}, which is not a live node"),
                    );
                }
            }
            for &o in &live {
                if o == x {
                    continue;
                }
                let origin = &self.nodes[o];
                let proc = origin.proc.as_ref().expect("live");
                let now_held = held
                    .get(&origin.addr)
                    .filter(|h| h.len() == shards && h.values().all(|(e, _)| *e == origin.epoch))
                    .map(|h| {
                        let entries: Vec<ReportEntry> =
                            h.values().flat_map(|(_, e)| e.iter().copied()).collect();
                        content_hash(&entries)
                    });
                if now_held.is_some() {
                    self.held_last[x][o] = Some((origin.epoch, now));
                }
                // A gap: a peer that has reported for a TTL, missing.
                let reporting = proc
                    .first_publish
                    .is_some_and(|t| t + self.settings.report_ttl < now);
                let running = self.nodes[x].since + self.bounds.view < now;
                if reporting && running && origin.paused.is_none() && self.nodes[x].paused.is_none()
                {
                    self.t.view_pairs += 1;
                    if now_held.is_none() {
                        self.t.view_gaps += 1;
                    }
                }
                let c = &proc.contents;
                let stale = match now_held {
                    Some(hash) => match c.iter().rposition(|&(_, h)| h == hash) {
                        Some(k) => c.get(k + 1).map_or(Duration::ZERO, |&(t, _)| now - t),
                        // Older than the history kept, or never published.
                        None => c.front().map_or(Duration::ZERO, |&(t, _)| now - t),
                    },
                    None => match self.held_last[x][o] {
                        Some((epoch, seen)) if epoch == origin.epoch => {
                            (now - seen).saturating_sub(sample)
                        }
                        _ => now - proc.first_publish.unwrap_or(origin.started_at),
                    },
                };
                if stale > worst.0 {
                    worst = (
                        stale,
                        format!(
                            "n{x} has missed a newer report of n{o} ({}; n{o}'s content changed {} times in the history kept)",
                            if now_held.is_some() {
                                "holds an older content"
                            } else {
                                "holds none of its current life"
                            },
                            c.len().saturating_sub(1)
                        ),
                    );
                }
            }
        }
        worst
    }
}

/// FNV-1a 64 of a report's entries, to compare contents cheaply.
pub(super) fn content_hash(entries: &[ReportEntry]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for e in entries {
        for b in e
            .key
            .0
            .to_le_bytes()
            .into_iter()
            .chain([u8::from(e.healthy)])
            .chain(e.active.to_le_bytes())
            .chain(e.drain.map_or([0; 9], |m| {
                let mut b = [0; 9];
                b[..8].copy_from_slice(&m.version.to_le_bytes());
                b[8] = 1 + u8::from(m.draining);
                b
            }))
        {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    h
}
