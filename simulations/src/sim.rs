//! The event loop: one shoal node's data plane and active health checks on
//! a virtual clock, driving the real [`shoal_core::Pool`] through the same
//! calls as `shoal-runtime` (`listener.rs` and `checker.rs`).
//!
//! # The model
//! - A client arrives, the pool chooses (`acquire`, which counts the
//!   connection at once) and the client connects. On failure the driver
//!   reports a failure (`handle_connect_failure`), releases the count and tries
//!   another backend, at most `retries` more times, like the runtime. A
//!   connection that got through is held for a drawn time, then released.
//! - A connect or a check succeeds only if the backend was up for the whole
//!   attempt: the outcome is decided when the answer would arrive, and each
//!   backend carries an *epoch* that every state change bumps. An attempt
//!   that straddles a change fails (the SYN-ACK of a dying host is lost, a
//!   host that comes back has forgotten the SYN). This is what makes the
//!   detection bound in [`crate::invariants`] exact.
//! - Answers (accept or RST) take one round trip; a blackholed backend never
//!   answers, so the attempt fails at its timeout (`connect_timeout` for a
//!   client, `HealthConfig::timeout` for a check).
//! - When a backend goes down, the connections established on it are reset
//!   at once (their clients leave); connects in flight fail when they end.
//! - After every event the loop drives the pool as its module doc says:
//!   `poll_check` until `None` (starting a simulated check for each),
//!   `poll_event` until `None`, then a wake-up at `poll_timeout`.
//!
//! The run stops once arrivals are over, every client has left, and every
//! backend has had the longer of the two [`Bounds`] since its last change,
//! so that the final convergence check means something.

use crate::invariants::{Bounds, Invariant, Violation, millis};
use crate::queue::EventQueue;
use crate::random::{Streams, exponential, uniform};
use crate::report::{BackendReport, Delay, Report};
use crate::scenario::{BackendState, PlantedBug, Scenario};
use crate::trace::{Record, TraceHash};
use rand::RngExt;
use shoal_core::pool::HealthCause;
use shoal_core::{BackendId, BackendSpec, Instant, NoBackend, Pool, PoolEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Runs `scenario` with `seed` and checks every invariant during and after
/// the run. The same scenario and seed give the same result and the same
/// trace hash on every machine.
///
/// # Panics
/// If the scenario is invalid ([`Scenario::assert_valid`]) or the pool
/// breaks the call contract in its module doc.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Report, Violation> {
    scenario.assert_valid();
    let mut sim = Sim::new(scenario, seed);
    let end = sim.run_events()?;
    sim.finish(end)
}

type ClientId = u64;

#[derive(Debug, Clone, Copy)]
enum Event {
    /// A new client; schedules the next arrival.
    Arrival,
    /// A client's connect attempt gets its answer (or times out).
    ConnectDone {
        client: ClientId,
        backend: BackendId,
        epoch: u64,
    },
    /// A connected client is done and closes.
    Leave {
        client: ClientId,
        backend: BackendId,
    },
    /// An active check gets its answer (or times out).
    CheckDone { backend: BackendId, epoch: u64 },
    /// The pool's `poll_timeout` deadline.
    Wake,
    /// A scheduled change of a backend's state.
    Fault {
        backend: BackendId,
        state: BackendState,
    },
    /// The recovery bound has passed since `backend` came back in `epoch`.
    RecoveryDeadline { backend: BackendId, epoch: u64 },
}

/// The simulation's own view of one backend: the ground truth the pool's
/// view is checked against.
#[derive(Debug)]
struct SimBackend {
    state: BackendState,
    /// Bumped at every state change; an attempt started in another epoch
    /// fails.
    epoch: u64,
    /// When the backend last went down, or came up.
    since: Instant,
    /// From when invariant 4 covers it (meaningful while up): the start for
    /// a backend that never went down, else recovery plus the bound.
    trusted_at: Instant,
    /// Recovery time, until the first `acquire` chooses it again.
    awaiting_choice: Option<Instant>,
    /// Clients counted on it whose connect is in flight.
    connecting: BTreeSet<ClientId>,
    /// Clients connected to it.
    established: BTreeSet<ClientId>,
    report: BackendReport,
}

#[derive(Debug)]
struct Client {
    /// Backends this client failed to reach, passed to `acquire`.
    tried: Vec<BackendId>,
}

#[derive(Debug, Default)]
struct Tally {
    clients: u64,
    served: u64,
    reset: u64,
    refused_no_backend: u64,
    refused_retries: u64,
    detections: Vec<Delay>,
    recoveries: Vec<Delay>,
    first_choices: Vec<Delay>,
    stale_flips: u64,
}

#[derive(Debug)]
struct Sim<'a> {
    scenario: &'a Scenario,
    seed: u64,
    bounds: Bounds,
    queue: EventQueue<Event>,
    pool: Pool,
    streams: Streams,
    backends: Vec<SimBackend>,
    clients: BTreeMap<ClientId, Client>,
    next_client: ClientId,
    arrivals_end: Instant,
    arrivals_done: bool,
    /// Pending `Wake` events, so that one is not scheduled twice.
    wakes: BTreeSet<Instant>,
    recovery_deadlines_pending: u32,
    /// The run does not end before this (see the module doc).
    settle_until: Instant,
    trace: TraceHash,
    events: u64,
    tally: Tally,
}

/// A health flip comes from one observation and an event makes at most a
/// few; more than this in one step means the pool queues events it should
/// not.
const FLIPS_PER_STEP_MAX: usize = 64;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn since_start(t: Instant) -> Duration {
    t - Instant::ZERO
}

fn state_code(state: BackendState) -> u64 {
    match state {
        BackendState::Up => 0,
        BackendState::Refusing => 1,
        BackendState::Blackholed => 2,
    }
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let mut streams = Streams::from_seed(seed);
        let bounds = Bounds::for_scenario(scenario);
        let specs = (0..scenario.backends)
            .map(|i| BackendSpec {
                name: format!("sim-backend-{i}"),
                max_connections: scenario.max_connections,
            })
            .collect::<Vec<_>>();
        let backends = specs
            .iter()
            .map(|spec| SimBackend {
                state: BackendState::Up,
                epoch: 0,
                since: Instant::ZERO,
                trusted_at: Instant::ZERO,
                awaiting_choice: None,
                connecting: BTreeSet::new(),
                established: BTreeSet::new(),
                report: BackendReport {
                    name: spec.name.clone(),
                    ..BackendReport::default()
                },
            })
            .collect();
        let pool = Pool::new(
            scenario.policy,
            scenario.health,
            specs,
            Instant::ZERO,
            &mut streams.pool,
        );
        let arrivals_end = Instant::ZERO + scenario.duration;
        let settle = bounds.detection.max(bounds.recovery);
        let settle_until = scenario
            .faults
            .iter()
            .map(|f| Instant::ZERO + f.at + settle)
            .fold(arrivals_end, Instant::max);
        let mut sim = Sim {
            scenario,
            seed,
            bounds,
            queue: EventQueue::new(),
            pool,
            streams,
            backends,
            clients: BTreeMap::new(),
            next_client: 0,
            arrivals_end,
            arrivals_done: false,
            wakes: BTreeSet::new(),
            recovery_deadlines_pending: 0,
            settle_until,
            trace: TraceHash::new(),
            events: 0,
            tally: Tally::default(),
        };
        for f in &scenario.faults {
            sim.queue.schedule_at(
                Instant::ZERO + f.at,
                Event::Fault {
                    backend: BackendId(f.backend),
                    state: f.state,
                },
            );
        }
        sim.schedule_arrival();
        sim.drive_pool();
        sim
    }

    // ----- the loop -----

    /// Processes events until the run is over; returns the end time.
    fn run_events(&mut self) -> Result<Instant, Violation> {
        while self.events < self.scenario.events_max {
            let Some(next) = self.queue.next_time() else {
                // Only a driver that stopped the checks gets here.
                return Ok(self.now());
            };
            if self.finished(next) {
                // Nothing changes between events, so the state now is the
                // state at `next`, past the settling time.
                return Ok(next);
            }
            let event = self.queue.pop().expect("an event was due");
            self.events += 1;
            self.handle(event)?;
            self.drive_pool();
            self.check_counts()?;
        }
        Err(self.violation(
            Invariant::EventsMax,
            format!(
                "not finished after {} events (events_max); {} clients still open, {} events pending",
                self.events,
                self.clients.len(),
                self.queue.len()
            ),
        ))
    }

    fn finished(&self, next: Instant) -> bool {
        self.arrivals_done
            && self.clients.is_empty()
            && self.recovery_deadlines_pending == 0
            && next >= self.settle_until
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Arrival => self.on_arrival(),
            Event::ConnectDone {
                client,
                backend,
                epoch,
            } => self.on_connect_done(client, backend, epoch),
            Event::Leave { client, backend } => self.on_leave(client, backend),
            Event::CheckDone { backend, epoch } => {
                self.on_check_done(backend, epoch);
                Ok(())
            }
            Event::Wake => {
                self.record(Record::Wake, 0, 0);
                self.wakes.remove(&self.now());
                Ok(())
            }
            Event::Fault { backend, state } => self.on_fault(backend, state),
            Event::RecoveryDeadline { backend, epoch } => self.on_recovery_deadline(backend, epoch),
        }
    }

    // ----- clients -----

    fn schedule_arrival(&mut self) {
        let mean = Duration::from_secs(1) / self.scenario.arrivals_per_sec;
        let at = self.now() + exponential(&mut self.streams.arrivals, mean);
        if at < self.arrivals_end {
            self.queue.schedule_at(at, Event::Arrival);
        } else {
            self.arrivals_done = true;
        }
    }

    fn on_arrival(&mut self) -> Result<(), Violation> {
        let client = self.next_client;
        self.next_client += 1;
        self.tally.clients += 1;
        self.record(Record::Arrival, client, 0);
        self.clients.insert(client, Client { tried: Vec::new() });
        self.schedule_arrival();
        self.attempt(client)
    }

    /// One try of `client` to get a backend, as the runtime's connect loop.
    fn attempt(&mut self, client: ClientId) -> Result<(), Violation> {
        let tried = std::mem::take(&mut self.clients.get_mut(&client).expect("live client").tried);
        if tried.len() > self.scenario.retries as usize {
            self.record(Record::Refused, client, 1);
            self.tally.refused_retries += 1;
            self.clients.remove(&client);
            return Ok(());
        }
        let chosen = self.pool.acquire(&mut self.streams.pool, &tried);
        let result = match chosen {
            Err(why) => {
                self.record(Record::Refused, client, 0);
                self.tally.refused_no_backend += 1;
                self.clients.remove(&client);
                return self.check_refusal(client, &tried, why);
            }
            Ok(id) => self.start_connect(client, id),
        };
        self.clients.get_mut(&client).expect("live client").tried = tried;
        result
    }

    fn start_connect(&mut self, client: ClientId, id: BackendId) -> Result<(), Violation> {
        self.record(Record::Acquired, client, id.0 as u64);
        self.check_choice(client, id)?;
        let now = self.now();
        let (state, epoch) = (self.backends[id.0].state, self.backends[id.0].epoch);
        let delay = match state {
            BackendState::Up | BackendState::Refusing => self.round_trip(),
            BackendState::Blackholed => self.scenario.connect_timeout,
        };
        let b = &mut self.backends[id.0];
        b.report.chosen += 1;
        b.connecting.insert(client);
        if state.is_up()
            && let Some(recovered) = b.awaiting_choice.take()
        {
            self.tally.first_choices.push(Delay {
                backend: id,
                at: since_start(now),
                after: now - recovered,
            });
        }
        self.queue.schedule_in(
            delay,
            Event::ConnectDone {
                client,
                backend: id,
                epoch,
            },
        );
        Ok(())
    }

    fn on_connect_done(
        &mut self,
        client: ClientId,
        id: BackendId,
        epoch: u64,
    ) -> Result<(), Violation> {
        let b = &self.backends[id.0];
        let ok = b.state.is_up() && b.epoch == epoch;
        self.record(
            Record::ConnectDone,
            client,
            (id.0 as u64) << 1 | u64::from(ok),
        );
        let was_connecting = self.backends[id.0].connecting.remove(&client);
        assert!(
            was_connecting,
            "SEED={}: client {client} was not connecting to {id}",
            self.seed
        );
        match self.scenario.plant_bug {
            Some(PlantedBug::IgnoreHealth) => {}
            Some(PlantedBug::ReportSuccessAsFailure) => self.pool.handle_connect_failure(id),
            _ if !ok => self.pool.handle_connect_failure(id),
            _ => {}
        }
        if ok {
            let hold = self.draw_hold();
            let b = &mut self.backends[id.0];
            b.established.insert(client);
            b.report.connections += 1;
            self.queue.schedule_in(
                hold,
                Event::Leave {
                    client,
                    backend: id,
                },
            );
            return Ok(());
        }
        self.backends[id.0].report.connect_failures += 1;
        if self.scenario.plant_bug != Some(PlantedBug::LeakOnConnectFailure) {
            self.release(id)?;
        }
        self.clients
            .get_mut(&client)
            .expect("live client")
            .tried
            .push(id);
        self.attempt(client)
    }

    fn on_leave(&mut self, client: ClientId, id: BackendId) -> Result<(), Violation> {
        // A client whose connection was reset has already gone.
        let open = self.backends[id.0].established.remove(&client);
        self.record(Record::Leave, client, u64::from(open));
        if open {
            self.tally.served += 1;
            self.clients.remove(&client);
            self.release(id)?;
        }
        Ok(())
    }

    fn draw_hold(&mut self) -> Duration {
        let h = self.scenario.holds;
        let long = self.streams.holds.random_range(0..1000) < h.long_per_mille;
        let mean = if long { h.long_mean } else { h.short_mean };
        exponential(&mut self.streams.holds, mean).min(h.max)
    }

    fn round_trip(&mut self) -> Duration {
        let l = self.scenario.latency;
        uniform(&mut self.streams.network, l.min, l.max)
    }

    /// Releases one count, refusing to take it below zero: the pool only
    /// catches that with a `debug_assert` and saturates in release builds.
    fn release(&mut self, id: BackendId) -> Result<(), Violation> {
        if self.pool.active(id) == 0 {
            return Err(self.violation(
                Invariant::Counts,
                format!("release of backend {id} whose pool count is already 0"),
            ));
        }
        let released = self.pool.release(id);
        debug_assert!(released, "checked just above");
        Ok(())
    }

    // ----- health checks -----

    fn on_check_done(&mut self, id: BackendId, epoch: u64) {
        let b = &mut self.backends[id.0];
        let ok = b.state.is_up() && b.epoch == epoch;
        b.report.checks += 1;
        if !ok {
            b.report.check_failures += 1;
        }
        self.record(Record::CheckDone, id.0 as u64, u64::from(ok));
        match self.scenario.plant_bug {
            Some(PlantedBug::IgnoreHealth) => {}
            Some(PlantedBug::ReportSuccessAsFailure) => self.pool.handle_check_result(id, false),
            Some(PlantedBug::IgnoreCheckSuccesses) if ok => {}
            _ => self.pool.handle_check_result(id, ok),
        }
    }

    /// Drives the pool's outputs in the documented order.
    fn drive_pool(&mut self) {
        let now = self.now();
        // A backend returned by `poll_check` has a check in flight and is
        // not returned again until its result, so this ends within
        // `backends` rounds.
        let checks_max = self.backends.len();
        for round in 0..=checks_max {
            let Some(id) = self.pool.poll_check(now) else {
                break;
            };
            assert!(
                round < checks_max,
                "SEED={}: poll_check returned more than one check per backend at {now:?}",
                self.seed
            );
            self.record(Record::CheckStarted, id.0 as u64, 0);
            let b = &self.backends[id.0];
            let epoch = b.epoch;
            let delay = match b.state {
                BackendState::Up | BackendState::Refusing => self.round_trip(),
                BackendState::Blackholed => self.scenario.health.timeout,
            };
            self.queue
                .schedule_in(delay, Event::CheckDone { backend: id, epoch });
        }
        for round in 0..=FLIPS_PER_STEP_MAX {
            let Some(event) = self.pool.poll_event() else {
                break;
            };
            assert!(
                round < FLIPS_PER_STEP_MAX,
                "SEED={}: more than {FLIPS_PER_STEP_MAX} pool events in one step at {now:?}",
                self.seed
            );
            self.on_pool_event(event);
        }
        if let Some(due) = self.pool.poll_timeout() {
            let due = due.max(now);
            // An earlier pending wake-up will ask again.
            if self.wakes.range(..=due).next().is_none() {
                self.wakes.insert(due);
                self.queue.schedule_at(due, Event::Wake);
            }
        }
    }

    fn on_pool_event(&mut self, event: PoolEvent) {
        let PoolEvent::HealthChanged { backend, up, cause } = event;
        let cause_code = match cause {
            HealthCause::Check => 0,
            HealthCause::Traffic => 1,
        };
        self.record(
            Record::HealthChanged,
            backend.0 as u64,
            u64::from(up) << 1 | cause_code,
        );
        let now = self.now();
        let b = &self.backends[backend.0];
        if up != b.state.is_up() {
            self.tally.stale_flips += 1;
            return;
        }
        let delay = Delay {
            backend,
            at: since_start(now),
            after: now - b.since,
        };
        if up {
            self.tally.recoveries.push(delay);
        } else {
            self.tally.detections.push(delay);
        }
    }

    // ----- faults -----

    fn on_fault(&mut self, id: BackendId, state: BackendState) -> Result<(), Violation> {
        self.record(Record::Fault, id.0 as u64, state_code(state));
        let now = self.now();
        let recovery = self.bounds.recovery;
        let b = &mut self.backends[id.0];
        if b.state == state {
            return Ok(());
        }
        let was_up = b.state.is_up();
        b.state = state;
        b.epoch += 1;
        if was_up == state.is_up() {
            // Refusing <-> blackholed: still down since the same time.
            return Ok(());
        }
        b.since = now;
        if state.is_up() {
            b.trusted_at = now + recovery;
            b.awaiting_choice = Some(now);
            let epoch = b.epoch;
            self.recovery_deadlines_pending += 1;
            self.queue
                .schedule_in(recovery, Event::RecoveryDeadline { backend: id, epoch });
            return Ok(());
        }
        b.awaiting_choice = None;
        let reset = std::mem::take(&mut b.established);
        b.report.resets += reset.len() as u64;
        for client in reset {
            self.record(Record::Reset, client, id.0 as u64);
            self.tally.reset += 1;
            self.clients.remove(&client);
            self.release(id)?;
        }
        Ok(())
    }

    // ----- invariants -----

    fn violation(&self, invariant: Invariant, detail: String) -> Violation {
        Violation {
            invariant,
            seed: self.seed,
            scenario: self.scenario.name.clone(),
            at: self.now(),
            detail,
        }
    }

    fn describe(&self, id: BackendId) -> String {
        let b = &self.backends[id.0];
        format!(
            "backend {id} `{}` ({} since {}; pool: {}, {} active)",
            b.report.name,
            b.state.as_str(),
            millis(b.since.as_nanos()),
            if self.pool.is_up(id) { "up" } else { "down" },
            self.pool.active(id)
        )
    }

    /// Invariant 1, after every event.
    fn check_counts(&self) -> Result<(), Violation> {
        for (i, b) in self.backends.iter().enumerate() {
            let id = BackendId(i);
            let model = b.connecting.len() + b.established.len();
            let counted = self.pool.active(id) as usize;
            if model != counted {
                return Err(self.violation(
                    Invariant::Counts,
                    format!(
                        "{}: the pool counts {counted} connections, the simulation has {model} ({} connecting, {} established)",
                        self.describe(id),
                        b.connecting.len(),
                        b.established.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Invariant 2, at every successful `acquire`.
    fn check_choice(&self, client: ClientId, id: BackendId) -> Result<(), Violation> {
        let b = &self.backends[id.0];
        let down_for = self.now() - b.since;
        if !b.state.is_up() && down_for > self.bounds.detection {
            return Err(self.violation(
                Invariant::Detection,
                format!(
                    "client {client} was given {}, down for {} > detection bound {}",
                    self.describe(id),
                    millis(nanos(down_for)),
                    millis(nanos(self.bounds.detection))
                ),
            ));
        }
        Ok(())
    }

    /// Invariant 4, at every `acquire` that found no backend.
    fn check_refusal(
        &self,
        client: ClientId,
        tried: &[BackendId],
        why: NoBackend,
    ) -> Result<(), Violation> {
        let now = self.now();
        for (i, b) in self.backends.iter().enumerate() {
            let id = BackendId(i);
            let full = self
                .scenario
                .max_connections
                .is_some_and(|max| self.pool.active(id) >= max);
            if tried.contains(&id) || !b.state.is_up() || now <= b.trusted_at || full {
                continue;
            }
            return Err(self.violation(
                Invariant::Refusal,
                format!(
                    "client {client} refused ({why}) while {} has been up for {} > recovery bound {}",
                    self.describe(id),
                    millis(nanos(now - b.since)),
                    millis(nanos(self.bounds.recovery))
                ),
            ));
        }
        Ok(())
    }

    /// Invariant 3, the recovery bound after a backend came back.
    fn on_recovery_deadline(&mut self, id: BackendId, epoch: u64) -> Result<(), Violation> {
        self.record(Record::RecoveryDeadline, id.0 as u64, epoch);
        self.recovery_deadlines_pending -= 1;
        if self.backends[id.0].epoch != epoch {
            // It went down again since: a later deadline covers it, if any.
            return Ok(());
        }
        // Ask a copy of the pool, so that checking changes nothing in the run.
        let mut probe = self.pool.clone();
        let others = self.pool.ids().filter(|&o| o != id).collect::<Vec<_>>();
        match probe.acquire(&mut self.streams.probe, &others) {
            Ok(chosen) if chosen == id => Ok(()),
            // Up but at its connection limit: choosable once one ends.
            Err(NoBackend { full: 1, .. }) => Ok(()),
            other => Err(self.violation(
                Invariant::Recovery,
                format!(
                    "{} would not be chosen {} after it came back (recovery bound): acquire gave {other:?}",
                    self.describe(id),
                    millis(nanos(self.bounds.recovery))
                ),
            )),
        }
    }

    /// The checks at the end, then the report.
    fn finish(self, end: Instant) -> Result<Report, Violation> {
        self.check_counts()?;
        for (i, b) in self.backends.iter().enumerate() {
            let id = BackendId(i);
            let active = self.pool.active(id);
            if active != 0 || !b.connecting.is_empty() || !b.established.is_empty() {
                return Err(self.violation(
                    Invariant::Counts,
                    format!(
                        "{} still counts connections after every client left",
                        self.describe(id)
                    ),
                ));
            }
            let for_ = end - b.since;
            let up_in_pool = self.pool.is_up(id);
            if !b.state.is_up() && up_in_pool && for_ > self.bounds.detection {
                return Err(self.violation(
                    Invariant::Detection,
                    format!(
                        "at the end, {} is still up in the pool {} after it died",
                        self.describe(id),
                        millis(nanos(for_))
                    ),
                ));
            }
            if b.state.is_up() && !up_in_pool && end > b.trusted_at {
                return Err(self.violation(
                    Invariant::Recovery,
                    format!(
                        "at the end, {} is still down in the pool {} after it came back",
                        self.describe(id),
                        millis(nanos(for_))
                    ),
                ));
            }
        }
        let Tally {
            clients,
            served,
            reset,
            refused_no_backend,
            refused_retries,
            detections,
            recoveries,
            first_choices,
            stale_flips,
        } = self.tally;
        assert_eq!(
            clients,
            served + reset + refused_no_backend + refused_retries,
            "SEED={}: every client ends exactly one way",
            self.seed
        );
        Ok(Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            trace_hash: self.trace.value(),
            events: self.events,
            end: since_start(end),
            bounds: self.bounds,
            clients,
            served,
            reset,
            refused_no_backend,
            refused_retries,
            backends: self.backends.into_iter().map(|b| b.report).collect(),
            detections,
            recoveries,
            first_choices,
            stale_flips,
        })
    }

    // ----- helpers -----

    fn now(&self) -> Instant {
        self.queue.now()
    }

    fn record(&mut self, what: Record, a: u64, b: u64) {
        self.trace.record(self.queue.now(), what, a, b);
    }
}
