//! Clients and backends: Poisson arrivals and bursts reaching a node by
//! DNS, each client's connect attempts and retries through the node's
//! pool, how long they hold, and the simulated backends that answer
//! connects and health checks (up, slow, refusing, blackholed, or full at
//! `capacity`).
//!
//! An attempt (connect or check) succeeds only if the backend was up for
//! the whole attempt: the outcome is decided when the answer would arrive,
//! and each backend carries an *epoch* that every change of state bumps,
//! so an attempt that straddles a change fails (the SYN-ACK of a dying
//! host is lost, a host that comes back has forgotten the SYN); this is
//! what makes the detection bound exact. A blackholed backend never
//! answers: the attempt fails at its timeout. A failed connect is reported
//! and retried on another backend up to `retries` times, like the
//! runtime; when a backend goes down the connections established on it
//! are reset at once. A client reaches a node by DNS (weighted random); if
//! that node does not accept (down, starting, stopping) it tries the next
//! addresses in turn.

use super::{Client, ClientId, Event, HostState, Sim};
use crate::fleet::chooser::Chooser;
use crate::fleet::scenario::{BackendState, FleetBug};
use crate::random::{exponential, uniform};
use crate::trace::Record;
use crate::violation::{Invariant, Violation};
use rand::RngExt;
use shoal_core::BackendId;
use shoal_core::budget::ROUND_WAIT_MAX;
use shoal_core::policy::cmp_per_weight;
use std::time::Duration;

impl Sim<'_> {
    /// A client reaches its node (after DNS).
    pub(super) fn on_client_at(&mut self, node: usize, client: ClientId) -> Result<(), Violation> {
        if !self.clients.contains_key(&client) {
            return Ok(());
        }
        self.record(Record::ClientAt, client, node as u64);
        if self.nodes[node].state == HostState::Stopping {
            // Its listeners closed while the client waited.
            self.t.clients.reset_node += 1;
            self.remove_client(client);
            return Ok(());
        }
        self.attempt(client)?;
        self.after_input(node)
    }

    pub(super) fn schedule_arrival(&mut self) {
        let mean = Duration::from_secs(1) / self.s.workload.arrivals_per_sec;
        let at = self.now() + exponential(&mut self.streams.arrivals, mean);
        if at < self.arrivals_end {
            self.queue.schedule_at(at, Event::Arrival);
        } else {
            self.arrivals_done = true;
        }
    }

    /// The node DNS gives the next client: weighted at random.
    pub(super) fn dns_pick(&mut self) -> usize {
        let weights = self.s.workload.weights(self.nodes.len());
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.streams.dns.random_range(0..total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        unreachable!("x < total")
    }

    pub(super) fn new_client(&mut self, preferred: usize) -> Result<(), Violation> {
        let client = self.next_client;
        self.next_client += 1;
        self.t.clients.arrived += 1;
        self.record(Record::Arrival, client, preferred as u64);
        let n = self.nodes.len();
        // A client with several addresses tries the next when one refuses.
        let Some(node) = (0..n)
            .map(|k| (preferred + k) % n)
            .find(|&j| self.nodes[j].accepting())
        else {
            self.t.clients.refused_no_node += 1;
            return Ok(());
        };
        if node != preferred {
            self.t.clients.redirected += 1;
        }
        self.clients.insert(
            client,
            Client {
                node,
                tried: Vec::new(),
                held_until: None,
            },
        );
        let life = self.nodes[node].life;
        self.dispatch(Event::ClientAt { node, life, client })
    }

    pub(super) fn attempt(&mut self, client: ClientId) -> Result<(), Violation> {
        let c = self.clients.get_mut(&client).expect("live client");
        let i = c.node;
        let tried = std::mem::take(&mut c.tried);
        if tried.len() > self.s.backends.retries as usize {
            self.record(Record::Refused, client, 1);
            self.t.clients.refused_retries += 1;
            self.remove_client(client);
            return Ok(());
        }
        let global: Vec<u32> = match self.s.chooser {
            Chooser::Oracle => self.backends.iter().map(|b| b.global_active).collect(),
            _ => Vec::new(),
        };
        let chooser = self.s.chooser;
        let super::Host { proc, rng, .. } = &mut self.nodes[i];
        let pool = &mut proc.as_mut().expect("a running node").pool;
        let chosen = match chooser {
            Chooser::Policy(_) => pool.acquire(rng, &tried),
            Chooser::GlobalArgmin => pool.acquire_with(&tried, |candidates, _| {
                // The least `(load + 1) / weight`, ties to the lowest index.
                candidates
                    .iter()
                    .min_by(|a, b| {
                        cmp_per_weight(a.load + 1, a.weight, b.load + 1, b.weight)
                            .then(a.index.cmp(&b.index))
                    })
                    .map(|c| c.index)
            }),
            Chooser::PowerOfTwo => pool.acquire_with(&tried, |candidates, _| {
                (!candidates.is_empty())
                    .then(|| shoal_core::policy::power_of_two(candidates, rng).index)
            }),
            Chooser::Oracle => pool.acquire_with(&tried, |candidates, _| {
                // The least true `(count + 1) / weight`, ties at random.
                let next = |c: &shoal_core::policy::Candidate| u64::from(global[c.index]) + 1;
                let least = candidates
                    .iter()
                    .min_by(|a, b| cmp_per_weight(next(a), a.weight, next(b), b.weight))?;
                let ties: Vec<usize> = candidates
                    .iter()
                    .filter(|c| {
                        cmp_per_weight(next(c), c.weight, next(least), least.weight).is_eq()
                    })
                    .map(|c| c.index)
                    .collect();
                Some(ties[rng.random_range(0..ties.len())])
            }),
        };
        // A client that only waits for the fleet's next round of raises
        // is held (at most ROUND_WAIT_MAX) and asks again, as the runtime
        // does; the runtime asks on every view change, the simulator
        // every millisecond.
        if let Err(why) = &chosen
            && why.waits_for_round()
        {
            let now = self.now();
            let c = self.clients.get_mut(&client).expect("live client");
            let until = *c.held_until.get_or_insert(now + ROUND_WAIT_MAX);
            if now < until {
                c.tried = tried;
                let life = self.nodes[i].life;
                self.queue.schedule_in(
                    Duration::from_millis(1),
                    Event::ClientAt {
                        node: i,
                        life,
                        client,
                    },
                );
                return Ok(());
            }
            let super::Host { proc, .. } = &mut self.nodes[i];
            let pool = &mut proc.as_mut().expect("a running node").pool;
            pool.refuse_for_budget(&tried);
        }
        match chosen {
            Err(why) => {
                self.record(Record::Refused, client, 0);
                self.t.clients.refused_no_backend += 1;
                if why.is_budget() {
                    self.t.clients.refused_budget += 1;
                    if let Some(limit) = self.s.backends.fleet_max_connections {
                        // Under by more than 5 % on every backend the
                        // client could still have had.
                        let under = self.backends.iter().enumerate().all(|(k, b)| {
                            tried.contains(&BackendId(k))
                                || !b.state.is_up()
                                || u64::from(b.global_active) * 100 < u64::from(limit) * 95
                        });
                        self.t.clients.refused_budget_under += u64::from(under);
                    }
                }
                self.remove_client(client);
                let checked = self.check_refusal(i, client, &tried, why);
                self.soft(checked)
            }
            Ok(id) => {
                self.clients.get_mut(&client).expect("live client").tried = tried;
                self.start_connect(i, client, id)
            }
        }
    }

    /// How long a connect or check to a backend in `state` takes to end.
    pub(super) fn answer_delay(&mut self, state: BackendState, timeout: Duration) -> Duration {
        let b = &self.s.backends;
        match state {
            BackendState::Up | BackendState::Refusing => uniform(
                &mut self.streams.backend_net,
                Duration::from_micros(b.rtt_min_us),
                Duration::from_micros(b.rtt_max_us),
            ),
            BackendState::Slow => Duration::from_millis(b.slow_rtt_ms),
            BackendState::Blackholed => timeout,
        }
    }

    pub(super) fn start_connect(
        &mut self,
        i: usize,
        client: ClientId,
        id: BackendId,
    ) -> Result<(), Violation> {
        self.record(Record::Acquired, client, id.0 as u64);
        let checked = self.check_choice(i, client, id);
        self.soft(checked)?;
        let checked = self.check_drain_choice(i, client, id);
        self.soft(checked)?;
        let b = &mut self.backends[id.0];
        b.stats.chosen += 1;
        b.global_active += 1;
        let (count, state, epoch) = (b.global_active, b.state, b.epoch);
        let checked = self.check_budget(count);
        self.soft(checked)?;
        self.nodes[i].connecting[id.0].insert(client);
        let delay = self.answer_delay(
            state,
            Duration::from_millis(self.s.backends.connect_timeout_ms),
        );
        let life = self.nodes[i].life;
        self.queue.schedule_in(
            delay,
            Event::ConnectDone {
                node: i,
                life,
                client,
                backend: id,
                epoch,
            },
        );
        Ok(())
    }

    pub(super) fn on_connect_done(
        &mut self,
        i: usize,
        client: ClientId,
        id: BackendId,
        epoch: u64,
    ) -> Result<(), Violation> {
        let now = self.now();
        let window = self.bounds.refusal_window;
        let capacity = self.s.backends.capacity;
        let b = &mut self.backends[id.0];
        let reachable = b.state.is_up() && b.epoch == epoch;
        let full = reachable && capacity.is_some_and(|c| b.established >= c);
        if full {
            b.stats.full_refusals += 1;
            b.last_full = Some(now);
            // Refusals may take it down in pools: trust it again later.
            b.trusted_at = b.trusted_at.max(now + window);
        }
        let ok = reachable && !full;
        self.record(
            Record::ConnectDone,
            client,
            (id.0 as u64) << 1 | u64::from(ok),
        );
        let was = self.nodes[i].connecting[id.0].remove(&client);
        assert!(
            was,
            "SEED={}: client {client} was not connecting to {id} at n{i}",
            self.seed
        );
        let report_failure = if self.buggy(i, FleetBug::IgnoreHealth) {
            false
        } else {
            self.buggy(i, FleetBug::SuccessAsFailure) || !ok
        };
        if report_failure {
            self.proc(i).pool.handle_connect_failure(id);
        }
        if ok {
            let hold = self.draw_hold();
            let b = &mut self.backends[id.0];
            b.established += 1;
            b.stats.connections += 1;
            self.nodes[i].established[id.0].insert(client);
            let life = self.nodes[i].life;
            self.queue.schedule_in(
                hold,
                Event::Leave {
                    node: i,
                    life,
                    client,
                    backend: id,
                },
            );
            return self.after_input(i);
        }
        let b = &mut self.backends[id.0];
        b.stats.connect_failures += 1;
        b.global_active -= 1;
        if !self.buggy(i, FleetBug::LeakOnConnectFailure) {
            self.release(i, id)?;
        }
        self.clients
            .get_mut(&client)
            .expect("live client")
            .tried
            .push(id);
        self.attempt(client)?;
        self.after_input(i)
    }

    pub(super) fn on_leave(
        &mut self,
        i: usize,
        client: ClientId,
        id: BackendId,
        reset: bool,
    ) -> Result<(), Violation> {
        let open = self.nodes[i].established[id.0].remove(&client);
        self.record(
            if reset { Record::Reset } else { Record::Leave },
            client,
            u64::from(open),
        );
        if open {
            if reset {
                self.t.clients.reset_backend += 1;
                self.backends[id.0].stats.resets += 1;
            } else {
                self.t.clients.served += 1;
            }
            let b = &mut self.backends[id.0];
            b.global_active -= 1;
            b.established -= 1;
            self.remove_client(client);
            self.release(i, id)?;
        }
        self.after_input(i)
    }

    pub(super) fn remove_client(&mut self, client: ClientId) {
        self.clients.remove(&client);
        if self.clients.is_empty() {
            self.quiet_since = self.now();
        }
    }

    pub(super) fn draw_hold(&mut self) -> Duration {
        let w = &self.s.workload;
        let long = self.streams.holds.random_range(0..1000) < w.long_per_mille;
        let mean = Duration::from_millis(if long {
            w.long_mean_ms
        } else {
            w.short_mean_ms
        });
        exponential(&mut self.streams.holds, mean).min(Duration::from_millis(w.hold_max_ms))
    }

    /// Releases one count, refusing to take it below zero (the pool only
    /// `debug_assert`s that).
    pub(super) fn release(&mut self, i: usize, id: BackendId) -> Result<(), Violation> {
        if self.proc(i).pool.active(id) == 0 {
            return Err(self.violation(
                Invariant::Counts,
                format!("n{i}: release of backend {id} whose pool count is already 0"),
            ));
        }
        let released = self.proc(i).pool.release(id);
        debug_assert!(released, "checked just above");
        Ok(())
    }

    pub(super) fn on_check_done(
        &mut self,
        i: usize,
        id: BackendId,
        epoch: u64,
    ) -> Result<(), Violation> {
        let capacity = self.s.backends.capacity;
        let now = self.now();
        let trust_again = now + self.bounds.refusal_window;
        let b = &mut self.backends[id.0];
        let full = capacity.is_some_and(|c| b.established >= c);
        let ok = b.state.is_up() && b.epoch == epoch && !full;
        b.stats.checks += 1;
        if !ok {
            b.stats.check_failures += 1;
        }
        if full {
            b.trusted_at = b.trusted_at.max(trust_again);
            b.last_full = Some(now);
        }
        self.record(
            Record::CheckDone,
            (i as u64) << 32 | id.0 as u64,
            u64::from(ok),
        );
        let dropped = self.buggy(i, FleetBug::IgnoreHealth)
            || (ok && self.buggy(i, FleetBug::IgnoreCheckSuccesses));
        if !dropped {
            let ok = ok && !self.buggy(i, FleetBug::SuccessAsFailure);
            self.proc(i).pool.handle_check_result(id, ok);
        }
        self.after_input(i)
    }

    pub(super) fn set_backend(&mut self, id: usize, state: BackendState) -> Result<(), Violation> {
        let now = self.now();
        self.record(Record::Fault, id as u64, state.code());
        let window = self.bounds.refusal_window;
        let b = &mut self.backends[id];
        if b.state == state {
            return Ok(());
        }
        let was_up = b.state.is_up();
        b.state = state;
        if was_up == state.is_up() {
            // Up <-> slow keeps connections; refusing <-> blackholed is
            // still down since the same time. Only attempts in flight
            // between two down states notice.
            if !state.is_up() {
                b.epoch += 1;
            }
            return Ok(());
        }
        b.epoch += 1;
        b.since = now;
        if state.is_up() {
            b.trusted_at = b.trusted_at.max(now + window);
            let epoch = b.epoch;
            self.queue.schedule_in(
                self.bounds.recovery,
                Event::RecoveryDeadline { backend: id, epoch },
            );
            return Ok(());
        }
        // Its established connections are reset; each node notices when
        // it runs.
        for j in 0..self.nodes.len() {
            let clients: Vec<ClientId> = self.nodes[j].established[id].iter().copied().collect();
            let life = self.nodes[j].life;
            for client in clients {
                self.dispatch(Event::Reset {
                    node: j,
                    life,
                    client,
                    backend: BackendId(id),
                })?;
            }
        }
        Ok(())
    }
}
