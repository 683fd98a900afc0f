//! The fault schedule and the phases: node crashes, stops, starts and
//! pauses, network cuts, loss and duplication, slow syncs, backend changes,
//! operators' drains and client bursts, then the liveness phase that ends them all; and the
//! timing of how long the live nodes take to notice a departure.

use super::{DownWatch, Event, Paused, Sim};
use crate::fleet::scenario::Action;
use crate::random::uniform;
use crate::trace::Record;
use crate::violation::Violation;
use shoal_core::Instant;
use shoal_core::cluster::identity::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;

impl Sim<'_> {
    pub(super) fn on_fault(&mut self, index: usize) -> Result<(), Violation> {
        let action = self.schedule[index].1.clone();
        let now = self.now();
        if !matches!(
            action,
            Action::Backend(..)
                | Action::Drain { .. }
                | Action::Burst { .. }
                | Action::Dup(_)
                | Action::SlowSyncs(..)
        ) {
            self.last_fleet_fault = Some(now);
        }
        match action {
            Action::Crash(i) => {
                if self.s.backends.fleet_max_connections.is_some() && self.nodes[i].proc.is_some() {
                    self.t.budget_crashes.push(now);
                }
                self.exit_node(i, true);
                Ok(())
            }
            Action::Stop(i) => {
                if self.nodes[i].proc.is_none() {
                    return Ok(());
                }
                let life = self.nodes[i].life;
                self.dispatch(Event::Stop { node: i, life })
            }
            Action::Start(i) => self.start_node(i),
            Action::Pause(i, d) => {
                let node = &mut self.nodes[i];
                if node.proc.is_none() || node.paused.is_some() {
                    return Ok(());
                }
                node.paused = Some(Paused {
                    deferred: Vec::new(),
                    datagrams: 0,
                });
                let life = node.life;
                self.record(Record::Lifecycle, i as u64, 5);
                self.queue.schedule_in(d, Event::Resume { node: i, life });
                Ok(())
            }
            Action::Partition(groups) => {
                self.record(Record::NetFault, 1, groups.len() as u64);
                self.net.partition(&groups);
                Ok(())
            }
            Action::OneWay(from, to) => {
                self.record(
                    Record::NetFault,
                    2,
                    (from.len() as u64) << 32 | to.len() as u64,
                );
                self.net.cut_one_way(&from, &to);
                Ok(())
            }
            Action::Isolate(i) => {
                self.record(Record::NetFault, 3, i as u64);
                self.net.isolate(i);
                Ok(())
            }
            Action::Heal => {
                self.record(Record::NetFault, 4, 0);
                self.net.heal();
                Ok(())
            }
            Action::Loss(p) => {
                self.record(Record::NetFault, 5, u64::from(p));
                self.net.set_loss(p);
                Ok(())
            }
            Action::Dup(p) => {
                self.record(Record::NetFault, 6, u64::from(p));
                self.net.set_dup(p);
                Ok(())
            }
            Action::SlowSyncs(i, d) => {
                self.record(Record::NetFault, 9, i as u64);
                self.net.slow_syncs(i, d);
                Ok(())
            }
            Action::Backend(b, state) => self.set_backend(b, state),
            Action::Drain {
                node,
                backend,
                draining,
            } => {
                // An operator's command to a host with no process fails.
                if self.nodes[node].proc.is_none() {
                    self.record(Record::Drain, node as u64, backend as u64);
                    return Ok(());
                }
                let life = self.nodes[node].life;
                self.dispatch(Event::Drain {
                    node,
                    life,
                    backend,
                    draining,
                })
            }
            Action::Burst {
                clients,
                over,
                node,
            } => {
                self.record(Record::NetFault, 7, u64::from(clients));
                for _ in 0..clients {
                    let at = now + uniform(&mut self.streams.faults, Duration::ZERO, over);
                    self.bursts_pending += 1;
                    self.queue.schedule_at(at, Event::BurstArrival { node });
                }
                Ok(())
            }
        }
    }

    pub(super) fn on_liveness(&mut self) -> Result<(), Violation> {
        let now = self.now();
        self.record(Record::NetFault, 8, 0);
        self.liveness_at = Some(now);
        self.net.calm();
        if self.clients.is_empty() {
            self.quiet_since = now;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused.is_some() {
                let life = self.nodes[i].life;
                self.on_resume(i, life)?;
            }
        }
        Ok(())
    }

    pub(super) fn on_resume(&mut self, i: usize, life: u64) -> Result<(), Violation> {
        if self.nodes[i].life != life {
            return Ok(());
        }
        let Some(paused) = self.nodes[i].paused.take() else {
            return Ok(());
        };
        let now = self.now();
        self.nodes[i].since = now;
        self.last_resume = Some(now);
        self.last_fleet_fault = Some(now);
        self.record(Record::Lifecycle, i as u64, 6);
        for event in paused.deferred {
            // A deferred event may end the process (a stop's end).
            if event
                .target()
                .is_some_and(|(_, l)| l.is_some_and(|l| l != self.nodes[i].life))
            {
                continue;
            }
            self.handle(event)?;
        }
        if self.nodes[i].proc.is_some() {
            let at = self.now();
            self.on_wake(i, at)?;
        }
        Ok(())
    }

    /// Starts timing how long the live nodes that know `identity` take to
    /// drop it (a crash, or a leave).
    pub(super) fn watch_departure(
        &mut self,
        i: usize,
        identity: &NodeId,
        now: Instant,
        leave: bool,
    ) {
        let pending: BTreeSet<usize> = (0..self.nodes.len())
            .filter(|&x| x != i && self.nodes[x].is_live())
            .filter(|&x| {
                self.nodes[x]
                    .proc
                    .as_ref()
                    .is_some_and(|p| p.node.cluster().members().any(|m| m == identity))
            })
            .collect();
        self.down_watches.retain(|w| w.subject != i);
        self.down_watches.push(DownWatch {
            subject: i,
            at: now,
            leave,
            pending,
            slowest: Duration::ZERO,
        });
        self.settle_down_watches();
    }

    pub(super) fn settle_down_watches(&mut self) {
        let t = &mut self.t;
        self.down_watches.retain(|w| {
            if !w.pending.is_empty() {
                return true;
            }
            if w.leave {
                t.leave_detections.push(w.slowest);
            } else {
                t.crash_detections.push(w.slowest);
            }
            false
        });
    }

    pub(super) fn on_member_down(&mut self, observer: usize, id: &NodeId) {
        let Some(&subject) = self.by_addr.get(&id.addr) else {
            return;
        };
        if let Some(p) = self.nodes[subject].proc.as_mut()
            && p.node.identity() == id
            && let Some(w) = p.warm.as_mut()
        {
            w.declared_down = true;
        }
        let now = self.now();
        for w in &mut self.down_watches {
            if w.subject == subject && w.pending.remove(&observer) {
                let after = now - w.at;
                w.slowest = w.slowest.max(after);
                if !w.leave {
                    self.t.crash_detections_each.push(after);
                }
            }
        }
        self.settle_down_watches();
    }
}
