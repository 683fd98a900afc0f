//! Driving one node process: what the runtime's shell does for a
//! [`Node`] and its [`Pool`], over the simulated network, and nothing
//! more. Every fleet decision is the core's; the shell
//!
//! - starts a process: a new `Node` (identity epoch + 1, seeded from the
//!   host's stream) and a new `Pool`;
//! - after every input (datagram, sync, timer, seeds, client, check
//!   result), drives the pool (`poll_check` until `None`, one simulated
//!   check each; `poll_event` until `None`, each health flip handed to
//!   [`Node::handle_health_changed`]), then carries the node's outputs:
//!   `poll_transmit` onto the network, `poll_action` (below), `poll_event`
//!   into the tallies and the trace; then wakes up at the earlier of
//!   [`Node::poll_timeout`] and the pool's;
//! - carries actions: [`Action::Resolve`] is answered (at once, as a
//!   resolver cache would) with the seed addresses;
//!   [`Action::Sync`] becomes a stream request to the peer, answered with
//!   [`Node::handle_sync_request`] there and
//!   [`Node::handle_sync_answer`] back, or refused
//!   ([`Node::handle_sync_failed`]) when the peer refuses it or no process
//!   listens at its address; a request lost to a cut is never answered
//!   and the node times it out itself;
//!   [`Action::Accept`] opens the host to clients; [`Action::Close`] ends
//!   the process.
//!
//! The staleness check needs what each node published and when: the shell
//! reads it from the pool whenever the node's
//! [`shoal_core::cluster::ClusterStats::reports_published`] has grown
//! (the node reads its report from the same pool in the same input).

use super::{Event, HostState, IssuedMark, Proc, Sim, WarmRecord, WarmWatch, since_start};
use crate::fleet::scenario::FleetBug;
use crate::trace::Record;
use crate::violation::{Invariant, Violation, millis};
use rand::Rng;
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::ReportEntry;
use shoal_core::node::{Action, Node, NodeEvent, SyncFailure, SyncRequest};
use shoal_core::wire::{SYNC_BYTES_MAX, is_reports};
use shoal_core::{Instant, Pool, PoolEvent};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Health flips one step produces, at most (one per observation).
const FLIPS_PER_STEP_MAX: usize = 1_024;
/// Error messages kept for the report.
const ERROR_SAMPLES_MAX: usize = 5;
/// A node's publication history for the staleness check, at most.
const PUBLISHED_HISTORY_MAX: usize = 100_000;

/// The client address host `i` advertises: `10.x.y.z` from its index.
pub(super) fn client_ip(i: usize) -> std::net::IpAddr {
    let [_, x, y, z] = (i as u32).to_be_bytes();
    std::net::IpAddr::from([10, x, y, z])
}

impl Sim<'_> {
    /// Starts a new process on host `i` (crashing the running one).
    pub(super) fn start_node(&mut self, i: usize) -> Result<(), Violation> {
        if self.nodes[i].proc.is_some() {
            self.exit_node(i, true);
        }
        let now = self.now();
        let s = self.s;
        let mut settings = self.settings.clone();
        // Every host advertises one client address, so the fleet's DNS
        // answer (decision 51) is checked at the end of every run.
        settings.client_addrs = vec![client_ip(i)];
        let keys = vec![self.keys.clone()];
        let host = &mut self.nodes[i];
        host.life += 1;
        host.epoch += 1;
        host.starts += 1;
        host.state = HostState::Starting;
        host.since = now;
        host.started_at = now;
        let identity = NodeId::new(host.addr, host.name.clone(), host.epoch);
        let node = Node::new(identity.clone(), settings, keys, host.rng.next_u64(), now);
        let pool = Pool::new(
            s.chooser.pool_policy(),
            s.health.config(),
            self.specs.clone(),
            now,
            &mut host.rng,
        );
        host.proc = Some(Proc {
            node,
            pool,
            wakes: BTreeSet::new(),
            published: 0,
            contents: VecDeque::new(),
            first_publish: None,
            latest_entries: Vec::new(),
            available: vec![(true, now); self.backends.len()],
            warm: Some(WarmWatch {
                since: now,
                declared_down: false,
                informed: false,
            }),
        });
        let restart = host.starts > 1;
        let epoch = host.epoch;
        self.record(Record::Lifecycle, i as u64, epoch << 8 | 1);
        if restart {
            self.t.members.restarts += 1;
            // Watch the old identity's successor reach everyone.
            self.down_watches.retain(|w| w.subject != i);
        }
        self.join_watches.retain(|w| w.subject != i);
        self.join_watches.push(super::JoinWatch {
            subject: i,
            at: now,
            identity,
        });
        self.after_input(i)
    }

    /// `Action::Accept`: the listeners open.
    fn become_up(&mut self, i: usize) {
        let now = self.now();
        let proc = self.proc(i);
        if let Some(w) = proc.warm.take() {
            self.t.warm_starts.push(WarmRecord {
                node: i,
                took: now - w.since,
                declared_down: w.declared_down,
                informed: w.informed,
            });
        }
        self.nodes[i].state = HostState::Up;
        self.record(Record::Lifecycle, i as u64, 2);
    }

    /// The process exits: crash (no leave) or `Action::Close` after a stop.
    pub(super) fn exit_node(&mut self, i: usize, crash: bool) {
        let now = self.now();
        let host = &mut self.nodes[i];
        let Some(proc) = host.proc.take() else {
            return;
        };
        let stats = proc.node.cluster_stats();
        host.sent_before.0 += stats.datagrams_out;
        host.sent_before.1 += stats.bytes_out;
        host.sent_before.2 += stats.report_datagrams_out;
        host.alive_before += now - host.started_at;
        let identity = proc.node.identity().clone();
        let was_stopping = host.state == HostState::Stopping;
        host.state = HostState::Down;
        host.life += 1;
        host.paused = None;
        self.record(Record::Lifecycle, i as u64, u64::from(crash) << 8 | 3);
        // Its connections end with it.
        let mut ended = 0;
        for b in 0..self.backends.len() {
            let connecting = std::mem::take(&mut self.nodes[i].connecting[b]);
            let established = std::mem::take(&mut self.nodes[i].established[b]);
            let backend = &mut self.backends[b];
            backend.global_active -= (connecting.len() + established.len()) as u32;
            backend.established -= established.len() as u32;
            ended += connecting.len() + established.len();
        }
        let before = self.clients.len();
        self.clients.retain(|_, c| c.node != i);
        let gone = before - self.clients.len();
        debug_assert!(gone >= ended, "connections of clients that are not there");
        self.t.clients.reset_node += gone as u64;
        if self.clients.is_empty() && gone > 0 {
            self.quiet_since = now;
        }
        // Its detection by the others, unless it had already left.
        for w in &mut self.down_watches {
            w.pending.remove(&i);
        }
        self.settle_down_watches();
        self.join_watches.retain(|w| w.subject != i);
        if !was_stopping {
            self.watch_departure(i, &identity, now, false);
        }
    }

    /// A stop: the listeners close and the node leaves; the process exits
    /// when the node says `Close`.
    pub(super) fn on_stop(&mut self, i: usize) -> Result<(), Violation> {
        if !self.nodes[i].is_live() {
            return Ok(());
        }
        let now = self.now();
        let proc = self.proc(i);
        let identity = proc.node.identity().clone();
        proc.node.handle_leave(now, &mut proc.pool);
        self.nodes[i].state = HostState::Stopping;
        self.record(Record::Lifecycle, i as u64, 4);
        self.watch_departure(i, &identity, now, true);
        self.after_input(i)
    }

    pub(super) fn on_wake(&mut self, i: usize, at: Instant) -> Result<(), Violation> {
        let now = self.now();
        let Proc {
            node, pool, wakes, ..
        } = self.proc(i);
        wakes.remove(&at);
        if node.poll_timeout() <= now {
            node.handle_timeout(now, pool);
        }
        self.after_input(i)
    }

    /// The answer to `Action::Resolve`: the seed list (none for the
    /// planted bug `NeverJoins`).
    pub(super) fn on_resolved(&mut self, i: usize) -> Result<(), Violation> {
        let now = self.now();
        let seeds = if self.buggy(i, FleetBug::NeverJoins) {
            Vec::new()
        } else {
            self.seeds.clone()
        };
        let Some(proc) = self.nodes[i].proc.as_mut() else {
            return Ok(());
        };
        proc.node.handle_seeds(now, &seeds, &mut proc.pool);
        self.after_input(i)
    }

    /// An operator's drain or undrain on node `i`, with the host's wall
    /// clock (the simulated time plus its skew). The mark the node makes
    /// must supersede the one it held: a command is never lost on the
    /// node it is given to, whatever that node's clock says (the hybrid
    /// logical clock of decision 33).
    pub(super) fn on_drain(
        &mut self,
        i: usize,
        backend: usize,
        draining: bool,
    ) -> Result<(), Violation> {
        let now = self.now();
        let key = self.keys[backend];
        let wall = since_start(now) + self.nodes[i].clock_skew;
        let wall_ms = u64::try_from(wall.as_millis()).unwrap_or(u64::MAX);
        let proc = self.proc(i);
        let held = proc.node.cluster().drain_mark(key);
        let mark = proc
            .node
            .handle_drain(now, wall_ms, key, draining, &mut proc.pool)
            .expect("every node has every backend");
        self.record(Record::Drain, i as u64, 1 << 32 | backend as u64);
        self.record(Record::Drain, mark.version, u64::from(mark.draining));
        self.t.drain_commands += 1;
        if mark.version > wall_ms {
            self.t.drains_clock_behind += 1;
        }
        self.issued
            .insert((backend, mark.version, mark.draining), now);
        if mark.supersedes(self.newest_issued[backend].as_ref()) {
            self.newest_issued[backend] = Some(mark);
        }
        self.spreading.push(IssuedMark {
            backend,
            mark,
            at: now,
        });
        self.watch_drain_hop(i, backend, mark);
        if !mark.supersedes(held.as_ref()) || mark.draining != draining {
            let v = self.violation(
                Invariant::Drain,
                format!(
                    "n{i} (wall clock {wall_ms} ms) held {held:?} for backend #{backend} and made {mark:?} of the command draining = {draining}: the command is lost"
                ),
            );
            self.soft(Err(v))?;
        }
        self.after_input(i)
    }

    /// Everything the runtime's shell does after an input: the pool's
    /// outputs, the node's outputs, the next wake-up; then the count
    /// invariant for this node.
    pub(super) fn after_input(&mut self, i: usize) -> Result<(), Violation> {
        if self.nodes[i].proc.is_none() {
            return Ok(());
        }
        self.drive_pool(i);
        if !self.drive_node(i) {
            return Ok(());
        }
        if self.buggy(i, FleetBug::IgnoreDrain) {
            // The planted bug: a data plane that never reads the flags.
            let pool = &mut self.proc(i).pool;
            for id in pool.ids().collect::<Vec<_>>() {
                pool.set_draining(id, false);
            }
        }
        self.watch_availability(i);
        self.note_publication(i);
        self.schedule_wake(i);
        self.check_counts(i)
    }

    /// Times a node's pool ceasing to hold a dead backend available, by
    /// its own verdict or the fleet's checkers' (shared detection), from
    /// the latest of the death, the node's start and the moment it last
    /// took the backend back (a checker's vote lost, say).
    fn watch_availability(&mut self, i: usize) {
        let now = self.now();
        let since = self.nodes[i].since;
        for b in 0..self.backends.len() {
            let (dead, died) = (!self.backends[b].state.is_up(), self.backends[b].since);
            let proc = self.proc(i);
            let available = proc.pool.is_available(shoal_core::BackendId(b));
            let (was, from) = std::mem::replace(&mut proc.available[b], (available, now));
            if was && !available && dead {
                self.t
                    .fleet_detections
                    .push(now - died.max(since).max(from));
            } else if was == available {
                proc.available[b].1 = from;
            }
        }
    }

    /// The pool's checks to run and health flips to tell the node about.
    fn drive_pool(&mut self, i: usize) {
        let now = self.now();
        let checks_max = self.backends.len();
        for round in 0..=checks_max {
            let Some(id) = self.proc(i).pool.poll_check(now) else {
                break;
            };
            if self.liveness_at.is_some() {
                self.t.liveness_checks += 1;
            }
            assert!(
                round < checks_max,
                "SEED={}: node {i}: poll_check returned more than one check per backend",
                self.seed
            );
            let b = &self.backends[id.0];
            let (state, epoch) = (b.state, b.epoch);
            let delay = self.answer_delay(state, Duration::from_millis(self.s.health.timeout_ms));
            let life = self.nodes[i].life;
            self.queue.schedule_in(
                delay,
                Event::CheckDone {
                    node: i,
                    life,
                    backend: id,
                    epoch,
                },
            );
        }
        for round in 0..=FLIPS_PER_STEP_MAX {
            let Some(event) = self.proc(i).pool.poll_event() else {
                break;
            };
            assert!(
                round < FLIPS_PER_STEP_MAX,
                "SEED={}: node {i}: more than {FLIPS_PER_STEP_MAX} health flips in one step",
                self.seed
            );
            let PoolEvent::HealthChanged { backend, up, .. } = event;
            self.record(
                Record::HealthChanged,
                i as u64,
                (backend.0 as u64) << 1 | u64::from(up),
            );
            let b = &self.backends[backend.0];
            if up == b.state.is_up() {
                let after = now - b.since.max(self.nodes[i].since);
                if up {
                    self.t.backend_recoveries.push(after);
                } else {
                    self.t.backend_detections.push(after);
                }
            }
            let proc = self.proc(i);
            proc.node.handle_health_changed(now, &mut proc.pool);
        }
        let proc = self.proc(i);
        if proc.pool.has_unpublished_raise() {
            proc.node.handle_budget_raised(now, &mut proc.pool);
        }
        if proc.pool.take_report_wake() {
            proc.node.handle_counts_changed(now, &mut proc.pool);
        }
    }

    /// Carries the node's outputs until it has none; false if the process
    /// exited (`Action::Close`). Carrying starts no input to this node,
    /// so each queue (bounded by the core) drains once.
    fn drive_node(&mut self, i: usize) -> bool {
        while let Some(t) = self.proc(i).node.poll_transmit() {
            self.send_datagram(i, t.to, t.data);
        }
        while let Some(action) = self.proc(i).node.poll_action() {
            match action {
                Action::Resolve => {
                    let life = self.nodes[i].life;
                    self.queue
                        .schedule_in(Duration::ZERO, Event::Resolved { node: i, life });
                }
                Action::Sync(request) => self.send_sync(i, request),
                Action::Accept => self.become_up(i),
                Action::Close => {
                    // Its last events are of no interest: it is gone.
                    self.exit_node(i, false);
                    return false;
                }
            }
        }
        while let Some(event) = self.proc(i).node.poll_event() {
            self.on_node_event(i, event);
        }
        true
    }

    fn on_node_event(&mut self, i: usize, event: NodeEvent) {
        match event {
            NodeEvent::MemberUp(id) => {
                self.t.members.ups += 1;
                self.record_member(i, 1, &id);
            }
            NodeEvent::MemberDown(id) => {
                self.t.members.downs += 1;
                self.record_member(i, 2, &id);
                self.on_member_down(i, &id);
            }
            NodeEvent::Renamed { to, .. } => {
                self.t.members.renames += 1;
                self.record_member(i, 3, &to);
            }
            NodeEvent::Rejoined(id) => {
                self.t.members.rejoins += 1;
                self.record_member(i, 4, &id);
            }
            NodeEvent::Idle => self.record(Record::Member, i as u64, 5 << 32),
            NodeEvent::Active => self.record(Record::Member, i as u64, 6 << 32),
            NodeEvent::Defunct => {
                self.record(Record::Member, i as u64, 7 << 32);
                self.count_error(i, "defunct: declared down and cannot renew its identity");
            }
            NodeEvent::WarmStart(outcome) => {
                let code = match outcome {
                    shoal_core::node::WarmStart::NoSeeds => 0,
                    shoal_core::node::WarmStart::Pulled { .. } => 1,
                    shoal_core::node::WarmStart::NoAnswer { .. } => 2,
                    shoal_core::node::WarmStart::TimedOut => 3,
                };
                self.record(Record::Lifecycle, i as u64, code << 8 | 7);
            }
            NodeEvent::SyncDone { .. } => self.t.net.syncs_ok += 1,
            NodeEvent::SyncFailed { peer, cause, .. } => {
                self.t.net.syncs_failed += 1;
                if let SyncFailure::Refused(e) = cause {
                    self.count_error(i, &format!("sync answer from {peer}: {e}"));
                }
            }
            NodeEvent::Leaving => {}
            NodeEvent::Fault(fault) => self.count_error(i, &fault.to_string()),
            // Simulated nodes have unique names: either is a bug.
            NodeEvent::DuplicateName { kept, refused } => {
                self.count_error(
                    i,
                    &format!("duplicate name: kept {kept:?}, refused {refused:?}"),
                );
            }
            NodeEvent::NameTaken { by } => {
                self.count_error(i, &format!("this node's name was taken by {by:?}"));
            }
        }
    }

    /// When the node has published, what it published (read from the
    /// pool it read it from), for the staleness check.
    fn note_publication(&mut self, i: usize) {
        let now = self.now();
        let keys = &self.keys;
        let history_keep =
            (self.bounds.view + Duration::from_millis(self.s.sample_interval_ms)) * 2;
        let proc = self.nodes[i].proc.as_mut().expect("a running node");
        let published = proc.node.cluster_stats().reports_published;
        if published == proc.published {
            return;
        }
        proc.published = published;
        // The core adds its newest drain mark to each entry it publishes.
        let cluster = proc.node.cluster();
        let entries: Vec<ReportEntry> = proc
            .pool
            .ids()
            .map(|id| ReportEntry {
                drain: cluster.drain_mark(keys[id.0]),
                claim: proc.pool.budget(id).map(|b| b.reported()),
                opened: proc.pool.opened(id),
                ..ReportEntry::new(keys[id.0], proc.pool.is_up(id), proc.pool.active(id))
                    .with_checker(proc.pool.is_voting(id))
            })
            .collect();
        let hash = super::sample::content_hash(&entries);
        if proc.contents.back().is_none_or(|&(_, h)| h != hash) {
            proc.contents.push_back((now, hash));
        }
        while proc.contents.len() > 1
            && (proc.contents.len() > PUBLISHED_HISTORY_MAX
                || proc.contents[1].0 + history_keep < now)
        {
            proc.contents.pop_front();
        }
        proc.first_publish.get_or_insert(now);
        proc.latest_entries = entries;
        self.record(Record::Publish, i as u64, published);
    }

    fn schedule_wake(&mut self, i: usize) {
        let now = self.now();
        let life = self.nodes[i].life;
        let proc = self.proc(i);
        let mut due = proc.node.poll_timeout();
        if let Some(t) = proc.pool.poll_timeout() {
            due = due.min(t);
        }
        let due = due.max(now);
        if proc.wakes.range(..=due).next().is_none() {
            proc.wakes.insert(due);
            self.queue.schedule_at(
                due,
                Event::Wake {
                    node: i,
                    life,
                    at: due,
                },
            );
        }
    }

    pub(super) fn count_error(&mut self, i: usize, message: &str) {
        self.t.members.errors += 1;
        if self.t.members.error_samples.len() < ERROR_SAMPLES_MAX {
            self.t.members.error_samples.push(format!(
                "n{i} at {}: {message}",
                millis(self.now().as_nanos())
            ));
        }
    }

    fn record_member(&mut self, i: usize, kind: u64, id: &NodeId) {
        let subject = self.by_addr.get(&id.addr).copied().unwrap_or(usize::MAX) as u64;
        self.record(
            Record::Member,
            i as u64,
            kind << 32 | (subject & 0xffff_ffff),
        );
    }

    // ----- network -----

    fn send_datagram(&mut self, from: usize, to: SocketAddr, data: Vec<u8>) {
        let Some(&j) = self.by_addr.get(&to) else {
            self.t.net.to_dead_node += 1;
            return;
        };
        // The planted bug: the node's reports never leave it.
        if self.buggy(from, FleetBug::SkipReports) && is_reports(&data) {
            return;
        }
        match self.net.datagram(from, j) {
            super::super::net::Fate::Cut => self.t.net.cut += 1,
            super::super::net::Fate::Lost => self.t.net.lost += 1,
            super::super::net::Fate::Delivered(first, dup) => {
                if let Some(second) = dup {
                    self.t.net.duplicated += 1;
                    self.queue.schedule_in(
                        second,
                        Event::Datagram {
                            node: j,
                            from,
                            data: data.clone(),
                        },
                    );
                }
                self.queue.schedule_in(
                    first,
                    Event::Datagram {
                        node: j,
                        from,
                        data,
                    },
                );
            }
        }
    }

    pub(super) fn on_datagram(
        &mut self,
        i: usize,
        from: usize,
        data: &[u8],
    ) -> Result<(), Violation> {
        let now = self.now();
        let deaf = self.buggy(i, FleetBug::DeafWhileWarming);
        // What the transport hands over: the sender's certificate name.
        let peer = self.nodes[from].name.clone();
        let Some(proc) = self.nodes[i].proc.as_mut() else {
            self.t.net.to_dead_node += 1;
            return Ok(());
        };
        // The planted bug: the old runtime's warm start handled nothing.
        if deaf && proc.node.phase() == shoal_core::node::Phase::Warming {
            return Ok(());
        }
        self.t.net.delivered += 1;
        let result = proc.node.handle_datagram(now, &peer, data, &mut proc.pool);
        self.record(
            Record::Datagram,
            from as u64,
            (i as u64) << 32 | data.len() as u64,
        );
        if let Err(e) = result {
            self.count_error(i, &format!("datagram from n{from}: {e}"));
        }
        self.after_input(i)
    }

    /// `Action::Sync`: the request travels on a stream, which needs both
    /// directions; a request that cannot arrive is never answered and the
    /// node times it out at its deadline.
    fn send_sync(&mut self, i: usize, request: SyncRequest) {
        let SyncRequest { id, to, data, .. } = request;
        let Some(&peer) = self.by_addr.get(&to) else {
            return;
        };
        if self.net.blocked(i, peer) || self.net.blocked(peer, i) {
            return;
        }
        let life = self.nodes[i].life;
        let at = self.net.latency();
        self.queue.schedule_in(
            at,
            Event::SyncRequest {
                node: peer,
                from: i,
                from_life: life,
                id,
                data,
            },
        );
    }

    pub(super) fn on_sync_request(
        &mut self,
        j: usize,
        from: usize,
        from_life: u64,
        id: u64,
        data: &[u8],
    ) -> Result<(), Violation> {
        let now = self.now();
        let peer = self.nodes[from].name.clone();
        let Some(proc) = self.nodes[j].proc.as_mut() else {
            // Nothing listens there: the connection is refused at once.
            if !self.net.blocked(j, from) {
                let at = self.net.latency();
                self.queue.schedule_in(
                    at,
                    Event::SyncRefused {
                        node: from,
                        life: from_life,
                        id,
                    },
                );
            }
            return Ok(());
        };
        // The stream's read bound on both ends, as in the runtime.
        let answer = if data.len() > SYNC_BYTES_MAX {
            Err(format!("request of {} bytes > SYNC_BYTES_MAX", data.len()))
        } else {
            match proc
                .node
                .handle_sync_request(now, &peer, data, &mut proc.pool)
            {
                Ok(a) if a.len() > SYNC_BYTES_MAX => {
                    Err(format!("answer of {} bytes > SYNC_BYTES_MAX", a.len()))
                }
                Ok(a) => Ok(a),
                Err(e) => Err(e.to_string()),
            }
        };
        self.record(Record::Sync, from as u64, j as u64);
        if !self.net.blocked(j, from) {
            let at = self.net.latency();
            match answer {
                Ok(data) => {
                    let at = at + self.net.sync_delay(j);
                    self.queue.schedule_in(
                        at,
                        Event::SyncAnswer {
                            node: from,
                            life: from_life,
                            id,
                            data,
                        },
                    );
                }
                Err(e) => {
                    self.count_error(j, &format!("sync request from n{from}: {e}"));
                    self.queue.schedule_in(
                        at,
                        Event::SyncRefused {
                            node: from,
                            life: from_life,
                            id,
                        },
                    );
                }
            }
        }
        self.after_input(j)
    }

    pub(super) fn on_sync_answer(
        &mut self,
        i: usize,
        id: u64,
        data: &[u8],
    ) -> Result<(), Violation> {
        let now = self.now();
        self.record(Record::Sync, i as u64, 1 << 32 | id);
        let proc = self.proc(i);
        proc.node.handle_sync_answer(now, id, data, &mut proc.pool);
        self.after_input(i)
    }

    pub(super) fn on_sync_refused(&mut self, i: usize, id: u64) -> Result<(), Violation> {
        let now = self.now();
        self.record(Record::Sync, i as u64, 2 << 32 | id);
        let proc = self.proc(i);
        proc.node.handle_sync_failed(now, id, &mut proc.pool);
        self.after_input(i)
    }
}
