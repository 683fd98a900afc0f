//! The fleet invariants that are not sampled: counts after every input,
//! detection and drains at every choice, refusal at every "no backend",
//! recovery at each recovery deadline, and the checks at the end of the
//! run (counts back to zero, health, membership, exact views, drain marks,
//! the scenario's expectations), which then build the [`FleetReport`].
//! The list and their meaning are in [`crate::fleet`].

use super::{ClientId, Sim, nanos, since_start};
use crate::fleet::report::{Balance, BudgetStats, DrainStats, FleetReport, Summary};
use crate::trace::Record;
use crate::violation::{Invariant, Violation, millis};
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::{DrainMark, ReportEntry};
use shoal_core::{BackendId, Instant, NoBackend};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

impl Sim<'_> {
    /// `None` when every live, running node's members are exactly the
    /// other live nodes' current identities.
    pub(super) fn membership_mismatch(&self) -> Option<String> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_live())
            .collect();
        if let Some(&i) = live.iter().find(|&&i| self.nodes[i].paused.is_some()) {
            return Some(format!("n{i} is paused"));
        }
        let cluster = |i: usize| self.nodes[i].proc.as_ref().expect("live").node.cluster();
        for &i in &live {
            let seen = cluster(i).live_nodes() as usize;
            if seen != live.len() {
                return Some(format!(
                    "n{i} counts {seen} live nodes, {} are: {}",
                    live.len(),
                    self.describe_members(i, &live)
                ));
            }
        }
        let mut truth: Vec<(SocketAddr, u64, u16)> = live
            .iter()
            .map(|&i| {
                let id = cluster(i).identity();
                (id.addr, id.epoch, id.bump)
            })
            .collect();
        truth.sort_unstable();
        for &i in &live {
            let me = self.nodes[i].addr;
            let mut seen: Vec<(SocketAddr, u64, u16)> = cluster(i)
                .members()
                .map(|m| (m.addr, m.epoch, m.bump))
                .collect();
            seen.sort_unstable();
            if !seen
                .iter()
                .copied()
                .eq(truth.iter().copied().filter(|t| t.0 != me))
            {
                return Some(self.describe_members(i, &live));
            }
        }
        None
    }

    pub(super) fn describe_members(&self, i: usize, live: &[usize]) -> String {
        let id = |n: &NodeId| {
            let k = self.by_addr.get(&n.addr).copied().unwrap_or(usize::MAX);
            format!("n{k}#{}.{}", n.epoch, n.bump)
        };
        let cluster = |k: usize| self.nodes[k].proc.as_ref().expect("live").node.cluster();
        let seen: BTreeSet<NodeId> = cluster(i).members().cloned().collect();
        let truth: BTreeSet<NodeId> = live
            .iter()
            .filter(|&&k| k != i)
            .map(|&k| cluster(k).identity().clone())
            .collect();
        let missing: Vec<String> = truth.difference(&seen).map(id).collect();
        let extra: Vec<String> = seen.difference(&truth).map(id).collect();
        format!(
            "n{i} (as {}) misses {missing:?} and holds {extra:?}",
            id(cluster(i).identity())
        )
    }

    /// Counts: node `i`'s pool against the model, per backend.
    pub(super) fn check_counts(&self, i: usize) -> Result<(), Violation> {
        let node = &self.nodes[i];
        let Some(proc) = node.proc.as_ref() else {
            return Ok(());
        };
        for b in 0..self.backends.len() {
            let model = node.connecting[b].len() + node.established[b].len();
            let counted = proc.pool.active(BackendId(b)) as usize;
            if model != counted {
                return Err(self.violation(
                    Invariant::Counts,
                    format!(
                        "n{i}: the pool counts {counted} connections on backend #{b}, the simulation has {model} ({} connecting, {} established)",
                        node.connecting[b].len(),
                        node.established[b].len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Detection: no new connection to a backend dead for longer than the
    /// detection bound (counted from the node's start or resume).
    pub(super) fn check_choice(
        &self,
        i: usize,
        client: ClientId,
        id: BackendId,
    ) -> Result<(), Violation> {
        let b = &self.backends[id.0];
        let from = b.since.max(self.nodes[i].since);
        let now = self.now();
        let down_for = now - from;
        let bounds = &self.bounds;
        if bounds.shared_checks
            && self
                .last_fleet_fault
                .is_some_and(|t| now <= t + bounds.checker_settle)
        {
            // Who checks what is settling (see `bounds`): passive checks only.
            return Ok(());
        }
        if !b.state.is_up() && down_for > bounds.shared_detection {
            let pool = &self.nodes[i].proc.as_ref().expect("a running node").pool;
            return Err(self.violation(
                Invariant::Detection,
                format!(
                    "n{i} gave client {client} backend {id} ({}), dead for {} (counted from {}) > detection bound {}; n{i} checks it: {}, remote {:?}",
                    b.state.as_str(),
                    millis(nanos(down_for)),
                    millis(from.as_nanos()),
                    millis(nanos(bounds.shared_detection)),
                    pool.is_checking(id),
                    pool.remote(id)
                ),
            ));
        }
        Ok(())
    }

    /// Drain: no new connection to a backend whose newest mark this node
    /// holds is a drain. Also counts connections to a backend a newer
    /// drain issued elsewhere has not reached yet (legitimate, and what a
    /// partition should show).
    pub(super) fn check_drain_choice(
        &mut self,
        i: usize,
        client: ClientId,
        id: BackendId,
    ) -> Result<(), Violation> {
        let key = self.keys[id.0];
        let proc = self.nodes[i].proc.as_ref().expect("a running node");
        let held = proc.node.cluster().drain_mark(key);
        if let Some(newest) = self.newest_issued[id.0]
            && newest.draining
            && held != Some(newest)
        {
            self.t.connects_drained_elsewhere += 1;
        }
        match held {
            Some(m) if m.draining => Err(self.violation(
                Invariant::Drain,
                format!(
                    "n{i} gave client {client} backend {id}, which it holds drained ({m:?}); its pool says draining = {}",
                    proc.pool.is_draining(id)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Starts the one-hop watch of a mark node `i` just made: the members
    /// it holds alive that hold it alive, running, that the network lets
    /// its datagrams reach without loss.
    pub(super) fn watch_drain_hop(&mut self, i: usize, backend: usize, mark: DrainMark) {
        let now = self.now();
        let issuer = self.nodes[i].proc.as_ref().expect("running");
        let me = issuer.node.identity().clone();
        let publishes = matches!(
            issuer.node.phase(),
            shoal_core::node::Phase::Warming | shoal_core::node::Phase::Serving
        );
        if !publishes || self.net.loss_per_mille() > 0 {
            return;
        }
        let held: BTreeSet<NodeId> = issuer.node.cluster().members().cloned().collect();
        let receivers = (0..self.nodes.len())
            .filter(|&j| j != i && !self.net.blocked(i, j))
            .filter(|&j| {
                let n = &self.nodes[j];
                n.is_live()
                    && n.paused.is_none()
                    && n.proc.as_ref().is_some_and(|p| {
                        held.contains(p.node.identity())
                            && p.node.cluster().members().any(|m| *m == me)
                    })
            })
            .map(|j| (j, self.nodes[j].life))
            .collect();
        let index = self.hops.len();
        self.hops.push(super::HopWatch {
            issuer: i,
            backend,
            mark,
            at: now,
            receivers,
        });
        self.queue
            .schedule_in(self.bounds.drain_hop, super::Event::DrainHop { index });
    }

    /// Drain hop: each receiver of a hop watch that has run all along
    /// holds the mark, or a newer one.
    pub(super) fn on_drain_hop(&mut self, index: usize) -> Result<(), Violation> {
        let w = self.hops[index].clone();
        self.record(Record::Drain, w.issuer as u64, 2 << 32 | w.backend as u64);
        let key = self.keys[w.backend];
        for (j, life) in w.receivers {
            let n = &self.nodes[j];
            if n.life != life || n.paused.is_some() || n.since > w.at {
                continue;
            }
            self.t.drain_hops_checked += 1;
            let held = n
                .proc
                .as_ref()
                .expect("same life")
                .node
                .cluster()
                .drain_mark(key);
            if !held.is_some_and(|h| h == w.mark || h.supersedes(Some(&w.mark))) {
                let v = self.violation(
                    Invariant::Drain,
                    format!(
                        "n{j} holds {held:?} for backend #{}, {} after n{} made {:?} (drain hop bound): the issuer's publication did not reach it in one hop",
                        w.backend,
                        millis(nanos(self.bounds.drain_hop)),
                        w.issuer,
                        w.mark
                    ),
                );
                return self.soft(Err(v));
            }
        }
        Ok(())
    }

    /// The newest mark the live nodes hold for `backend`, if any.
    pub(super) fn newest_held(&self, backend: usize, live: &[usize]) -> Option<DrainMark> {
        let key = self.keys[backend];
        let mut newest: Option<DrainMark> = None;
        for &i in live {
            let node = &self.nodes[i].proc.as_ref().expect("live").node;
            if let Some(m) = node.cluster().drain_mark(key)
                && m.supersedes(newest.as_ref())
            {
                newest = Some(m);
            }
        }
        newest
    }

    /// Recovery, during the run: the recovery bound after a backend came
    /// back (and stayed up), every live node that has run since before
    /// then holds it up in its own checks, unless the backend has since
    /// refused a connect or check for being at its capacity.
    pub(super) fn on_recovery_deadline(
        &mut self,
        backend: usize,
        epoch: u64,
    ) -> Result<(), Violation> {
        self.record(Record::RecoveryDeadline, backend as u64, epoch);
        let b = &self.backends[backend];
        if b.epoch != epoch || b.last_full.is_some_and(|t| t >= b.since) {
            return Ok(());
        }
        let since = b.since;
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.is_live() || n.paused.is_some() || n.since > since {
                continue;
            }
            let pool = &n.proc.as_ref().expect("live").pool;
            if !pool.is_up(BackendId(backend)) {
                let v = self.violation(
                    Invariant::Recovery,
                    format!(
                        "n{i}'s own checks still hold backend #{backend} down {} after it came back (recovery bound)",
                        millis(nanos(self.bounds.recovery))
                    ),
                );
                return self.soft(Err(v));
            }
        }
        Ok(())
    }

    /// Refusal: no "no backend" while an untried backend is up, below its
    /// limits, not drained as far as this node knows, and trusted (up for
    /// the refusal window, with no node resumed within it).
    pub(super) fn check_refusal(
        &self,
        i: usize,
        client: ClientId,
        tried: &[BackendId],
        why: NoBackend,
    ) -> Result<(), Violation> {
        let now = self.now();
        let window = self.bounds.refusal_window;
        if self.last_resume.is_some_and(|r| now <= r + window) {
            return Ok(());
        }
        let proc = self.nodes[i].proc.as_ref().expect("a running node");
        for (k, b) in self.backends.iter().enumerate() {
            let id = BackendId(k);
            let limit = self
                .s
                .backends
                .max_connections
                .is_some_and(|max| proc.pool.active(id) >= max);
            let full = self.s.backends.capacity.is_some_and(|c| b.established >= c);
            // Over this node's share of the fleet's budget: the budget's
            // own figures judge those refusals.
            let over_budget = proc
                .pool
                .budget(id)
                .is_some_and(|x| !x.admits(proc.pool.active(id)));
            let drained = proc
                .node
                .cluster()
                .drain_mark(self.keys[k])
                .is_some_and(|m| m.draining);
            if tried.contains(&id)
                || !b.state.is_up()
                || now <= b.trusted_at
                || limit
                || over_budget
                || full
                || drained
            {
                continue;
            }
            return Err(self.violation(
                Invariant::Refusal,
                format!(
                    "n{i} refused client {client} ({why}) while backend {id} has been up since {} (refusal window {}); n{i}'s pool: {}, remote {:?}, {} live nodes",
                    millis(b.since.as_nanos()),
                    millis(nanos(window)),
                    if proc.pool.is_up(id) { "up" } else { "down" },
                    proc.pool.remote(id),
                    proc.pool.live_nodes()
                ),
            ));
        }
        Ok(())
    }

    /// The checks at the end, then the report.
    pub(super) fn finish(mut self, end: Instant) -> Result<FleetReport, Violation> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_live())
            .collect();
        for &i in &live {
            self.check_counts(i)?;
            let proc = self.nodes[i].proc.as_ref().expect("live");
            for b in 0..self.backends.len() {
                let id = BackendId(b);
                if proc.pool.active(id) != 0 {
                    return Err(self.violation(
                        Invariant::Counts,
                        format!(
                            "n{i} still counts {} connections on backend {id} after every client left",
                            proc.pool.active(id)
                        ),
                    ));
                }
            }
        }
        let checked = self.check_health_at_end(end, &live);
        self.soft(checked)?;
        let checked = self.check_checkers_at_end(end, &live);
        self.soft(checked)?;
        if let Some(why) = self.membership_mismatch() {
            let v = self.violation(Invariant::Membership, format!("at the end: {why}"));
            self.soft(Err(v))?;
        }
        let checked = self.check_views_exactly(&live);
        self.soft(checked)?;
        let checked = self.check_drains_at_end(&live);
        self.soft(checked)?;
        let checked = self.check_answers_at_end(&live);
        self.soft(checked)?;
        let checked = self.check_expectations();
        self.soft(checked)?;
        let t = &mut self.t;
        assert!(
            t.clients.adds_up(),
            "SEED={}: every client ends exactly one way: {:?}",
            self.seed,
            t.clients
        );
        for n in &self.nodes {
            let mut sent = n.sent_before;
            let mut alive = n.alive_before;
            if let Some(p) = &n.proc {
                let stats = p.node.cluster_stats();
                sent.0 += stats.datagrams_out;
                sent.1 += stats.bytes_out;
                sent.2 += stats.report_datagrams_out;
                alive += end - n.started_at;
            }
            t.net.datagrams_sent += sent.0;
            t.net.bytes_sent += sent.1;
            t.net.report_datagrams_sent += sent.2;
            t.net.node_seconds += alive.as_secs_f64();
        }
        let liveness_at = self.liveness_at.expect("finished in the liveness phase");
        let after_liveness = |t: Option<Instant>| t.map(|t| t.max(liveness_at) - liveness_at);
        Ok(FleetReport {
            scenario: self.s.name.clone(),
            seed: self.seed,
            chooser: self.s.chooser,
            nodes: self.nodes.len(),
            backends: self.backends.len(),
            trace_hash: self.trace.value(),
            events: self.events,
            end: since_start(end),
            liveness_at: since_start(liveness_at),
            bounds: self.bounds,
            clients: t.clients,
            balance: Balance::from_samples(&t.balance),
            backend_stats: self.backends.iter().map(|b| b.stats.clone()).collect(),
            backend_detections: Summary::of(&t.backend_detections),
            backend_recoveries: Summary::of(&t.backend_recoveries),
            fleet_detections: Summary::of(&t.fleet_detections),
            probes_per_backend_interval: {
                let span = (end - liveness_at).as_secs_f64();
                let interval = self.s.health.config().interval.as_secs_f64();
                let rounds = span / interval * self.backends.len().max(1) as f64;
                if rounds > 0.0 {
                    t.liveness_checks as f64 / rounds
                } else {
                    0.0
                }
            },
            crash_detections: Summary::of(&t.crash_detections),
            crash_detections_each: Summary::of(&t.crash_detections_each),
            leave_detections: Summary::of(&t.leave_detections),
            joins: Summary::of(&t.joins),
            warm_starts: Summary::of(&t.warm_starts.iter().map(|w| w.took).collect::<Vec<_>>()),
            formation: t.formation,
            membership_convergence: after_liveness(self.agreed_since),
            view_convergence: after_liveness(self.view_ok_since),
            view_staleness_max: t.view_staleness_max,
            view_staleness_run_max: t.view_staleness_run_max,
            view_gaps: (t.view_gaps, t.view_pairs),
            drains: DrainStats {
                commands: t.drain_commands,
                clock_behind: t.drains_clock_behind,
                hops_checked: t.drain_hops_checked,
                connects_drained_elsewhere: t.connects_drained_elsewhere,
                spread: Summary::of(&t.drain_spread),
                staleness_max: t.drain_staleness_max,
            },
            budget: self
                .s
                .backends
                .fleet_max_connections
                .map(|limit| BudgetStats {
                    limit,
                    peak: t.budget_peak.0,
                    peak_at: since_start(t.budget_peak.1),
                    refills: Summary::of(&t.budget_refills),
                }),
            violations: self.noted,
            members: t.members.clone(),
            net: t.net,
        })
    }

    /// At the end: a backend dead for the (shared) detection bound is
    /// unavailable in every pool, and down by its own checks in every pool
    /// that checks it; one up for the recovery bound is up in every pool.
    pub(super) fn check_health_at_end(
        &self,
        end: Instant,
        live: &[usize],
    ) -> Result<(), Violation> {
        for &i in live {
            let proc = self.nodes[i].proc.as_ref().expect("live");
            for (b, backend) in self.backends.iter().enumerate() {
                let id = BackendId(b);
                let for_ = end - backend.since.max(self.nodes[i].since);
                // A node that checks it must hold it down by its own
                // verdict; any other, by its own or its checkers'.
                let held_up = proc.pool.is_available(id)
                    || (proc.pool.is_checking(id) && proc.pool.is_up(id));
                if !backend.state.is_up() && held_up && for_ > self.bounds.shared_detection {
                    return Err(self.violation(
                        Invariant::Detection,
                        format!(
                            "at the end, n{i}'s pool still has backend {id} available, {} after it died (own checks up: {}, checking: {}, remote {:?})",
                            millis(nanos(for_)),
                            proc.pool.is_up(id),
                            proc.pool.is_checking(id),
                            proc.pool.remote(id)
                        ),
                    ));
                }
                if backend.state.is_up() && !proc.pool.is_up(id) && for_ > self.bounds.recovery {
                    return Err(self.violation(
                        Invariant::Recovery,
                        format!(
                            "at the end, n{i}'s pool still has backend {id} down, {} after it came back",
                            millis(nanos(for_))
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// At the end, the fleet settled (membership agreed, every backend in
    /// its state for the refusal window): every backend is actively
    /// checked by exactly `k` live nodes, `health.checkers` or all of
    /// them if fewer (decision 49), and each of those has a vote.
    pub(super) fn check_checkers_at_end(
        &self,
        end: Instant,
        live: &[usize],
    ) -> Result<(), Violation> {
        if self.membership_mismatch().is_some() {
            return Ok(());
        }
        let k = shoal_core::checkers::effective(self.s.health.checkers, live.len() as u32);
        for (b, backend) in self.backends.iter().enumerate() {
            let settled = self
                .last_fleet_fault
                .into_iter()
                .chain([backend.since])
                .all(|t| end > t + self.bounds.refusal_window + self.bounds.checker_settle);
            if !settled {
                continue;
            }
            let id = BackendId(b);
            let pool = |i: usize| &self.nodes[i].proc.as_ref().expect("live").pool;
            let checking: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| pool(i).is_checking(id))
                .collect();
            let voting = checking.iter().filter(|&&i| pool(i).is_voting(id)).count();
            if checking.len() != k as usize || voting != checking.len() {
                return Err(self.violation(
                    Invariant::Checkers,
                    format!(
                        "at the end, backend {id} ({}) is checked by {checking:?} ({voting} voting), {k} should; assigned: {:?}",
                        backend.state.as_str(),
                        live.iter()
                            .filter(|&&i| pool(i).is_assigned(id))
                            .collect::<Vec<_>>()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// At the end (no client for a view bound): every live node holds
    /// exactly each other live node's latest report, and its pool holds
    /// the sums of those reports.
    pub(super) fn check_views_exactly(&self, live: &[usize]) -> Result<(), Violation> {
        for &x in live {
            let proc = self.nodes[x].proc.as_ref().expect("live");
            let view = proc.node.cluster().view();
            for &o in live {
                if o == x {
                    continue;
                }
                let origin = &self.nodes[o];
                let latest = &origin.proc.as_ref().expect("live").latest_entries;
                let mut shards: Vec<_> =
                    view.shards().filter(|s| s.origin == origin.addr).collect();
                shards.sort_by_key(|s| s.shard);
                let held: Vec<ReportEntry> = shards
                    .iter()
                    .flat_map(|s| s.entries.iter().copied())
                    .collect();
                let epochs_ok = shards.iter().all(|s| s.epoch == origin.epoch);
                if &held != latest || !epochs_ok {
                    return Err(self.violation(
                        Invariant::View,
                        format!(
                            "at the end, n{x} holds {held:?} (epochs {:?}) for n{o}, whose latest report (epoch {}) is {latest:?}",
                            shards.iter().map(|s| s.epoch).collect::<Vec<_>>(),
                            origin.epoch
                        ),
                    ));
                }
            }
            let origins = view.origins().count();
            if origins != live.len() - 1 {
                return Err(self.violation(
                    Invariant::View,
                    format!(
                        "at the end, n{x}'s view holds {origins} origins, {} other nodes are live",
                        live.len() - 1
                    ),
                ));
            }
            for (b, key) in self.keys.iter().enumerate() {
                let id = BackendId(b);
                let expected = proc.node.cluster().remote(*key);
                let mut sum = (0u32, 0u32, 0u32, 0u32);
                for &o in live.iter().filter(|&&o| o != x) {
                    let latest = &self.nodes[o].proc.as_ref().expect("live").latest_entries;
                    if let Some(e) = latest.iter().find(|e| e.key == *key) {
                        sum.0 += e.active;
                        sum.1 += u32::from(e.checker && !e.healthy);
                        sum.2 += 1;
                        sum.3 += u32::from(e.checker);
                    }
                }
                let pool = proc.pool.remote(id);
                if pool != expected
                    || (pool.active, pool.down_votes, pool.reporters, pool.voters) != sum
                {
                    return Err(self.violation(
                        Invariant::View,
                        format!(
                            "at the end, n{x}'s pool has {pool:?} for backend {id}, its cluster {expected:?}, the live reports sum to (active, down votes, reporters, voters) {sum:?}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// At the end: every live node holds the newest mark any live node
    /// holds for each backend, and its pool drains exactly what it holds
    /// drained.
    pub(super) fn check_drains_at_end(&self, live: &[usize]) -> Result<(), Violation> {
        for b in 0..self.backends.len() {
            let newest = self.newest_held(b, live);
            for &i in live {
                let proc = self.nodes[i].proc.as_ref().expect("live");
                let held = proc.node.cluster().drain_mark(self.keys[b]);
                let draining = proc.pool.is_draining(BackendId(b));
                if held != newest || draining != newest.is_some_and(|m| m.draining) {
                    return Err(self.violation(
                        Invariant::Drain,
                        format!(
                            "at the end, n{i} holds {held:?} for backend #{b} (its pool: draining = {draining}), the newest mark a live node holds is {newest:?}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// At the end: every live node's DNS answer (decision 51) holds
    /// exactly the client addresses of the live nodes that serve (its own
    /// included while it serves).
    pub(super) fn check_answers_at_end(&self, live: &[usize]) -> Result<(), Violation> {
        use shoal_core::node::Phase;
        let serving = |i: usize| {
            self.nodes[i]
                .proc
                .as_ref()
                .is_some_and(|p| p.node.phase() == Phase::Serving)
        };
        let expected: Vec<std::net::IpAddr> = live
            .iter()
            .copied()
            .filter(|&o| serving(o))
            .map(super::node::client_ip)
            .collect();
        for &x in live.iter().filter(|&&x| serving(x)) {
            let proc = self.nodes[x].proc.as_ref().expect("live");
            let answer = proc.node.client_answer();
            let mut got: Vec<std::net::IpAddr> = answer
                .v4
                .iter()
                .map(|&ip| std::net::IpAddr::from(ip))
                .collect();
            got.sort_unstable();
            let mut want = expected.clone();
            want.sort_unstable();
            if got != want || !answer.v6.is_empty() {
                return Err(self.violation(
                    Invariant::View,
                    format!(
                        "at the end, n{x}'s DNS answer is {got:?} {:?}, the live serving nodes advertise {want:?}",
                        answer.v6
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The budget invariant, at every connection a pool counts (so every
    /// peak is seen, not only those at a sample): a backend's fleet-wide
    /// count (set up or established) within the budget times
    /// `fleet_overshoot_max_permille`. Also records the peak, and ends the
    /// refill of each crash once the fleet holds 95 % of the budget again.
    pub(super) fn check_budget(&mut self, count: u32) -> Result<(), Violation> {
        let Some(limit) = self.s.backends.fleet_max_connections else {
            return Ok(());
        };
        let now = self.now();
        if count > self.t.budget_peak.0 {
            self.t.budget_peak = (count, now);
        }
        if !self.t.budget_crashes.is_empty() {
            let total: u64 = self
                .backends
                .iter()
                .map(|b| u64::from(b.global_active))
                .sum();
            let budget = u64::from(limit) * self.backends.len() as u64;
            if total * 100 >= budget * 95 {
                let crashes = std::mem::take(&mut self.t.budget_crashes);
                self.t
                    .budget_refills
                    .extend(crashes.into_iter().map(|at| now - at));
            }
        }
        let permille = u64::from(self.s.backends.fleet_overshoot_max_permille);
        if u64::from(count) * 1000 > u64::from(limit) * permille {
            return Err(self.violation(
                Invariant::Budget,
                format!(
                    "{count} connections to one backend fleet-wide, budget {limit} × {permille}‰"
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn check_expectations(&self) -> Result<(), Violation> {
        let e = &self.s.expect;
        let t = &self.t;
        let mut failed = Vec::new();
        if let Some(max) = e.refused_max
            && t.clients.refused() > max
        {
            failed.push(format!(
                "refused {} > refused_max {max}",
                t.clients.refused()
            ));
        }
        if let Some(min) = e.member_downs_min
            && t.members.downs < min
        {
            failed.push(format!(
                "member downs {} < member_downs_min {min}",
                t.members.downs
            ));
        }
        if let Some(max) = e.member_downs_max
            && t.members.downs > max
        {
            failed.push(format!(
                "member downs {} > member_downs_max {max}",
                t.members.downs
            ));
        }
        if let Some(max) = e.rejoins_max
            && t.members.rejoins > max
        {
            failed.push(format!("rejoins {} > rejoins_max {max}", t.members.rejoins));
        }
        let detections = t.backend_detections.len() as u64;
        if let Some(min) = e.backend_detections_min
            && detections < min
        {
            failed.push(format!(
                "backend detections {detections} < backend_detections_min {min}"
            ));
        }
        if let Some(min) = e.restarts_min
            && t.members.restarts < min
        {
            failed.push(format!(
                "restarts {} < restarts_min {min}",
                t.members.restarts
            ));
        }
        if let Some(slow_ms) = e.slow_warm_start_ms {
            let slow = Duration::from_millis(slow_ms);
            let slow: Vec<_> = t.warm_starts.iter().filter(|w| w.took >= slow).collect();
            for w in slow.iter().filter(|w| w.declared_down || !w.informed) {
                failed.push(format!(
                    "n{}'s warm start of {}: {}",
                    w.node,
                    millis(nanos(w.took)),
                    match (w.declared_down, w.informed) {
                        (true, false) =>
                            "a peer declared it down, and its pool never held every peer's report",
                        (true, true) => "a peer declared it down",
                        _ => "its pool never held every peer's report",
                    }
                ));
            }
            if let Some(min) = e.slow_warm_starts_min
                && (slow.len() as u64) < min
            {
                failed.push(format!(
                    "{} warm starts of at least {slow_ms} ms < slow_warm_starts_min {min}",
                    slow.len()
                ));
            }
        }
        let at_least = |what: &str, seen: u64, min: Option<u64>, failed: &mut Vec<String>| {
            if let Some(min) = min
                && seen < min
            {
                failed.push(format!("{what} {seen} < {what}_min {min}"));
            }
        };
        let at_most = |what: &str, seen: u64, max: Option<u64>, failed: &mut Vec<String>| {
            if let Some(max) = max
                && seen > max
            {
                failed.push(format!("{what} {seen} > {what}_max {max}"));
            }
        };
        let recoveries = t.backend_recoveries.len() as u64;
        at_least(
            "refused_no_backend",
            t.clients.refused_no_backend,
            e.refused_no_backend_min,
            &mut failed,
        );
        at_most("resets", t.clients.reset_backend, e.resets_max, &mut failed);
        at_most(
            "backend_detections",
            detections,
            e.backend_detections_max,
            &mut failed,
        );
        at_least(
            "backend_recoveries",
            recoveries,
            e.backend_recoveries_min,
            &mut failed,
        );
        at_most(
            "backend_recoveries",
            recoveries,
            e.backend_recoveries_max,
            &mut failed,
        );
        at_least(
            "connects_drained_elsewhere",
            t.connects_drained_elsewhere,
            e.connects_drained_elsewhere_min,
            &mut failed,
        );
        at_least("drains", t.drain_commands, e.drains_min, &mut failed);
        at_least(
            "budget_refused",
            t.clients.refused_budget,
            e.budget_refused_min,
            &mut failed,
        );
        at_most(
            "budget_refused_under",
            t.clients.refused_budget_under,
            e.budget_refused_under_max,
            &mut failed,
        );
        if let Some(max) = e.budget_refill_max_ms {
            if let Some(r) = t.budget_refills.iter().max()
                && *r > Duration::from_millis(max)
            {
                failed.push(format!(
                    "budget refill {} > budget_refill_max_ms {max}",
                    millis(nanos(*r))
                ));
            }
            if !t.budget_crashes.is_empty() {
                failed.push(format!(
                    "{} crashes never saw the budget refilled",
                    t.budget_crashes.len()
                ));
            }
        }
        at_least(
            "drains_clock_behind",
            t.drains_clock_behind,
            e.drains_clock_behind_min,
            &mut failed,
        );
        if failed.is_empty() {
            Ok(())
        } else {
            Err(self.violation(Invariant::Expectation, failed.join("; ")))
        }
    }
}
