//! The fleet event loop: N simulated hosts, each running at most one
//! node process (a real [`shoal_core::node::Node`] and a real
//! [`Pool`]), on one virtual clock, with the simulated network, backends,
//! clients and faults around them. This file holds the state, the event
//! queue and its dispatch; each role has its own file:
//!
//! - `node.rs`: driving one node exactly as the runtime's shell
//!   does, and nothing more: it carries datagrams, syncs and actions,
//!   feeds timers and health flips, and records events. Every fleet
//!   decision (warm start, re-seeding, sync, publishing, leave, linger) is
//!   the core's.
//! - `clients.rs`: clients, their connects and holds, the
//!   simulated backends and their health checks.
//! - `faults.rs`: the fault schedule, the liveness phase,
//!   and timing how fast departures are noticed.
//! - `sample.rs`: the periodic sample: balance, joins,
//!   membership agreement, view staleness, warm starts.
//! - `invariants.rs`: the checks and the end-of-run report.
//!
//! # Hosts and processes
//! A host has a fixed address and name. A **start** runs a new process:
//! identity epoch + 1, a new `Node` and `Pool` seeded from the host's
//! stream; the host accepts clients once the node says
//! [`shoal_core::node::Action::Accept`]. A **stop** is
//! [`shoal_core::node::Node::handle_leave`] (the listeners close at once)
//! and the process exits at [`shoal_core::node::Action::Close`]; a
//! **crash** exits without a word. Either way the process's client
//! connections end and every event addressed to it is dropped (each
//! carries the process's `life`). A **pause** defers every event addressed
//! to the host (datagrams up to the socket buffer, `paused_datagrams_max`)
//! and replays them in order at resume, when the node's timers are also
//! overdue: it catches up.
//!
//! # Phases
//! The safety phase (`0..duration_ms`) has the workload and the faults.
//! At `duration_ms` the liveness phase begins: every cut heals, loss and
//! duplication stop, paused nodes resume, no client arrives. The run ends
//! once every client has left and the bounds of [`super::bounds`] have
//! passed. The invariants and where they are checked are listed in
//! [`super`].

mod clients;
mod faults;
mod invariants;
mod node;
mod sample;

use super::bounds::FleetBounds;
use super::report::{BackendStats, BalanceSample, ClientTally, FleetReport, MemberStats, NetStats};
use super::scenario::{Action, BackendState, FleetBug, FleetScenario};
use crate::queue::EventQueue;
use crate::random::{SimRng, uniform};
use crate::trace::{Record, TraceHash};
use crate::violation::{Invariant, Violation};
use rand::{Rng, RngExt, SeedableRng};
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::{BackendKey, DrainMark, ReportEntry};
use shoal_core::node::Settings;
use shoal_core::{BackendId, BackendSpec, Instant, Pool};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Runs `scenario` with `seed` and checks every invariant during and after
/// the run. The same scenario and seed give the same report and trace
/// hash.
///
/// # Panics
/// If the scenario does not validate, or a core breaks its call contract.
pub fn run(scenario: &FleetScenario, seed: u64) -> Result<FleetReport, Violation> {
    run_with(scenario, seed, false)
}

/// [`run`], but a broken invariant other than the count invariant (after
/// which the model itself is wrong) or the event budget is noted in
/// [`FleetReport::violations`] (the first of each kind) and the run goes
/// on, so that a study still gets every figure. A run with a violation
/// still failed.
pub fn run_keep_going(scenario: &FleetScenario, seed: u64) -> Result<FleetReport, Violation> {
    run_with(scenario, seed, true)
}

fn run_with(
    scenario: &FleetScenario,
    seed: u64,
    keep_going: bool,
) -> Result<FleetReport, Violation> {
    if let Err(e) = scenario.validate() {
        panic!("{e}");
    }
    let mut sim = Sim::new(scenario, seed);
    sim.keep_going = keep_going;
    let end = sim.run_events()?;
    sim.finish(end)
}

/// The port every node's cluster endpoint listens on.
pub const CLUSTER_PORT: u16 = 7946;

/// Events a paused host defers, at most (datagrams have their own bound).
const DEFERRED_EVENTS_MAX: usize = 10_000_000;

type ClientId = u64;

#[derive(Debug, Clone)]
enum Event {
    /// Poisson arrival of a client; schedules the next.
    Arrival,
    /// One client of a burst.
    BurstArrival {
        node: Option<usize>,
    },
    /// A host's first start.
    Boot {
        node: usize,
    },
    /// Invariant sweep.
    Sample,
    /// Balance sample.
    Balance,
    /// The `index`-th entry of the expanded fault schedule.
    Fault {
        index: usize,
    },
    /// The liveness phase begins.
    Liveness,
    Resume {
        node: usize,
        life: u64,
    },
    Wake {
        node: usize,
        life: u64,
        at: Instant,
    },
    /// The answer to the node's `Action::Resolve`.
    Resolved {
        node: usize,
        life: u64,
    },
    Datagram {
        node: usize,
        from: usize,
        data: Vec<u8>,
    },
    SyncRequest {
        node: usize,
        from: usize,
        from_life: u64,
        id: u64,
        data: Vec<u8>,
    },
    SyncAnswer {
        node: usize,
        life: u64,
        id: u64,
        data: Vec<u8>,
    },
    /// The peer refused the sync stream.
    SyncRefused {
        node: usize,
        life: u64,
        id: u64,
    },
    ClientAt {
        node: usize,
        life: u64,
        client: ClientId,
    },
    ConnectDone {
        node: usize,
        life: u64,
        client: ClientId,
        backend: BackendId,
        epoch: u64,
    },
    Leave {
        node: usize,
        life: u64,
        client: ClientId,
        backend: BackendId,
    },
    Reset {
        node: usize,
        life: u64,
        client: ClientId,
        backend: BackendId,
    },
    CheckDone {
        node: usize,
        life: u64,
        backend: BackendId,
        epoch: u64,
    },
    Stop {
        node: usize,
        life: u64,
    },
    /// An operator's drain or undrain, addressed to the process running
    /// then (a paused one handles it at resume, as its admin endpoint
    /// would).
    Drain {
        node: usize,
        life: u64,
        backend: usize,
        draining: bool,
    },
    /// The recovery bound has passed since `backend` came back in `epoch`.
    RecoveryDeadline {
        backend: usize,
        epoch: u64,
    },
    /// The drain hop bound has passed since the `index`-th hop watch's
    /// mark was issued.
    DrainHop {
        index: usize,
    },
}

impl Event {
    /// The host a paused process would have to handle this, and the life
    /// it is addressed to (`None`: whatever process has the address).
    fn target(&self) -> Option<(usize, Option<u64>)> {
        use Event::*;
        match *self {
            Arrival
            | BurstArrival { .. }
            | Boot { .. }
            | Sample
            | Balance
            | Fault { .. }
            | Liveness
            | Resume { .. }
            | RecoveryDeadline { .. }
            | DrainHop { .. } => None,
            Datagram { node, .. } | SyncRequest { node, .. } => Some((node, None)),
            Wake { node, life, .. }
            | Resolved { node, life }
            | SyncAnswer { node, life, .. }
            | SyncRefused { node, life, .. }
            | ClientAt { node, life, .. }
            | ConnectDone { node, life, .. }
            | Leave { node, life, .. }
            | Reset { node, life, .. }
            | CheckDone { node, life, .. }
            | Drain { node, life, .. }
            | Stop { node, life } => Some((node, Some(life))),
        }
    }
}

/// A host's process as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostState {
    Down,
    /// The node warms up: in the fleet, listeners not open yet.
    Starting,
    Up,
    /// The node left the fleet (listeners closed); exits at `Close`.
    Stopping,
}

/// A warm start in progress, watched for the slow-warm-start expectation.
#[derive(Debug, Clone, Copy)]
struct WarmWatch {
    since: Instant,
    /// A peer declared this identity down meanwhile.
    declared_down: bool,
    /// At a sample meanwhile, the pool held a report of every other live
    /// node on every backend.
    informed: bool,
}

/// A running node process.
#[derive(Debug)]
struct Proc {
    node: shoal_core::node::Node,
    pool: Pool,
    wakes: BTreeSet<Instant>,
    /// `ClusterStats::reports_published` when the shell last looked.
    published: u64,
    /// `(since when, content hash)` of the report's recent contents, one
    /// entry per change (see the staleness check), read from the pool
    /// whenever the node published.
    contents: VecDeque<(Instant, u64)>,
    first_publish: Option<Instant>,
    latest_entries: Vec<ReportEntry>,
    warm: Option<WarmWatch>,
    /// Per backend: whether the pool held it available at the last look,
    /// and since when.
    available: Vec<(bool, Instant)>,
}

#[derive(Debug)]
struct Paused {
    deferred: Vec<Event>,
    datagrams: usize,
}

/// A simulated machine: one address, one process at a time.
#[derive(Debug)]
struct Host {
    addr: SocketAddr,
    name: String,
    state: HostState,
    /// Bumped at every start and exit: events for an older life are stale.
    life: u64,
    epoch: u64,
    starts: u64,
    /// The last start or resume: since when the node's own state is fresh.
    since: Instant,
    started_at: Instant,
    proc: Option<Proc>,
    paused: Option<Paused>,
    rng: SimRng,
    /// The model of this host's connections per backend.
    connecting: Vec<BTreeSet<ClientId>>,
    established: Vec<BTreeSet<ClientId>>,
    /// Datagrams (all, reports) and bytes sent by earlier lives.
    sent_before: (u64, u64, u64),
    alive_before: Duration,
    /// How far the host's wall clock runs ahead of the simulated time.
    clock_skew: Duration,
}

impl Host {
    fn accepting(&self) -> bool {
        self.proc.is_some() && self.state == HostState::Up
    }

    /// Live in the truth the membership is checked against.
    fn is_live(&self) -> bool {
        self.proc.is_some() && matches!(self.state, HostState::Starting | HostState::Up)
    }
}

#[derive(Debug)]
struct SimBackend {
    state: BackendState,
    epoch: u64,
    /// When it last went down or came up.
    since: Instant,
    /// From when a refusal with it free breaks the refusal invariant.
    trusted_at: Instant,
    /// Connections counted on it fleet-wide (setup or established).
    global_active: u32,
    established: u32,
    /// The last connect or check it refused for being at its capacity.
    last_full: Option<Instant>,
    stats: BackendStats,
}

#[derive(Debug)]
struct Client {
    node: usize,
    tried: Vec<BackendId>,
    /// Held for the fleet's next round of budget raises until then, as
    /// the runtime holds it ([`shoal_core::budget::ROUND_WAIT_MAX`]).
    held_until: Option<Instant>,
}

/// A crash or stop whose detection by every live node is awaited.
#[derive(Debug)]
struct DownWatch {
    subject: usize,
    at: Instant,
    leave: bool,
    pending: BTreeSet<usize>,
    slowest: Duration,
}

/// A start whose identity every live node must come to hold.
#[derive(Debug)]
struct JoinWatch {
    subject: usize,
    at: Instant,
    identity: NodeId,
}

#[derive(Debug)]
struct Streams {
    arrivals: SimRng,
    holds: SimRng,
    dns: SimRng,
    backend_net: SimRng,
    faults: SimRng,
}

/// A finished warm start, for the slow-warm-start expectation.
#[derive(Debug, Clone, Copy)]
struct WarmRecord {
    node: usize,
    took: Duration,
    declared_down: bool,
    informed: bool,
}

#[derive(Debug, Default)]
struct Tallies {
    clients: ClientTally,
    backend_detections: Vec<Duration>,
    backend_recoveries: Vec<Duration>,
    crash_detections: Vec<Duration>,
    crash_detections_each: Vec<Duration>,
    leave_detections: Vec<Duration>,
    joins: Vec<Duration>,
    balance: Vec<BalanceSample>,
    members: MemberStats,
    net: NetStats,
    warm_starts: Vec<WarmRecord>,
    formation: Option<Duration>,
    view_staleness_max: Duration,
    view_staleness_run_max: Duration,
    view_pairs: u64,
    view_gaps: u64,
    drain_commands: u64,
    drains_clock_behind: u64,
    drain_hops_checked: u64,
    connects_drained_elsewhere: u64,
    drain_spread: Vec<Duration>,
    drain_staleness_max: Duration,
    /// The largest fleet-wide count on a budgeted backend, and when.
    budget_peak: (u32, Instant),
    /// Crashes whose budget refill is awaited.
    budget_crashes: Vec<Instant>,
    budget_refills: Vec<Duration>,
    /// A node's pool ceasing to hold a dead backend available (its own
    /// verdict or the fleet's), per node and death.
    fleet_detections: Vec<Duration>,
    /// Active checks started in the liveness phase, over all backends.
    liveness_checks: u64,
}

/// A drain mark the members its issuer reached in one hop must hold by
/// the drain hop bound: `(node, life)` of each.
#[derive(Debug, Clone)]
struct HopWatch {
    issuer: usize,
    backend: usize,
    mark: DrainMark,
    at: Instant,
    receivers: Vec<(usize, u64)>,
}

/// A drain mark the fleet must come to hold: issued at `at` on a node.
#[derive(Debug, Clone, Copy)]
struct IssuedMark {
    backend: usize,
    mark: DrainMark,
    at: Instant,
}

#[derive(Debug)]
struct Sim<'a> {
    s: &'a FleetScenario,
    seed: u64,
    settings: Settings,
    bounds: FleetBounds,
    queue: EventQueue<Event>,
    net: super::net::Network,
    streams: Streams,
    nodes: Vec<Host>,
    by_addr: BTreeMap<SocketAddr, usize>,
    seeds: Vec<SocketAddr>,
    specs: Vec<BackendSpec>,
    keys: Vec<BackendKey>,
    backends: Vec<SimBackend>,
    schedule: Vec<(Duration, Action)>,
    clients: BTreeMap<ClientId, Client>,
    next_client: ClientId,
    arrivals_end: Instant,
    arrivals_done: bool,
    bursts_pending: u64,
    boots_pending: usize,
    liveness_at: Option<Instant>,
    /// When the last client left (or the liveness phase began).
    quiet_since: Instant,
    /// The last resume: votes and verdicts of resumed nodes may be stale.
    last_resume: Option<Instant>,
    /// The last node or network fault: who checks what may be settling.
    last_fleet_fault: Option<Instant>,
    agreed_since: Option<Instant>,
    view_ok_since: Option<Instant>,
    /// Per node and origin: the origin's epoch and the last sample at
    /// which the node held a report of it.
    held_last: Vec<Vec<Option<(u64, Instant)>>>,
    down_watches: Vec<DownWatch>,
    join_watches: Vec<JoinWatch>,
    /// Every drain mark issued, by backend, version and state: when.
    issued: BTreeMap<(usize, u64, bool), Instant>,
    /// The newest mark issued per backend, held anywhere or lost.
    newest_issued: Vec<Option<DrainMark>>,
    /// Issued marks not yet held (or superseded) on every live node.
    spreading: Vec<IssuedMark>,
    /// Every drain's one-hop watch, by index.
    hops: Vec<HopWatch>,
    trace: TraceHash,
    events: u64,
    t: Tallies,
    keep_going: bool,
    /// With `keep_going`: the first violation of each invariant.
    noted: Vec<Violation>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn since_start(t: Instant) -> Duration {
    t - Instant::ZERO
}

impl<'a> Sim<'a> {
    fn new(s: &'a FleetScenario, seed: u64) -> Self {
        let mut root = SimRng::seed_from_u64(seed);
        let mut child = || SimRng::seed_from_u64(root.next_u64());
        let streams = Streams {
            arrivals: child(),
            holds: child(),
            dns: child(),
            backend_net: child(),
            faults: child(),
        };
        let net = super::net::Network::new(s.network, s.nodes, child());
        let mut nodes_root = child();
        let mut skews = child();
        let specs: Vec<BackendSpec> = (0..s.backends.count)
            .map(|i| BackendSpec {
                name: format!("10.1.0.{}:8080", i + 1),
                max_connections: s.backends.max_connections,
                fleet_max_connections: s.backends.fleet_max_connections,
                weight: s.backends.weights.get(i).copied().unwrap_or(1).max(1),
            })
            .collect();
        let keys = specs
            .iter()
            .map(|b| BackendKey::new("sim", &b.name))
            .collect();
        let nodes = (0..s.nodes)
            .map(|i| Host {
                addr: node_addr(i),
                name: format!("n{i}"),
                state: HostState::Down,
                life: 0,
                epoch: 0,
                starts: 0,
                since: Instant::ZERO,
                started_at: Instant::ZERO,
                proc: None,
                paused: None,
                rng: SimRng::seed_from_u64(nodes_root.next_u64()),
                connecting: vec![BTreeSet::new(); s.backends.count],
                established: vec![BTreeSet::new(); s.backends.count],
                sent_before: (0, 0, 0),
                alive_before: Duration::ZERO,
                clock_skew: Duration::from_millis({
                    let drawn = skews.random_range(0..=s.clock_skew_max_ms);
                    s.clock_skews_ms.get(i).copied().unwrap_or(drawn)
                }),
            })
            .collect::<Vec<_>>();
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        let backends = specs
            .iter()
            .map(|spec| SimBackend {
                state: BackendState::Up,
                epoch: 0,
                since: Instant::ZERO,
                trusted_at: Instant::ZERO,
                global_active: 0,
                established: 0,
                last_full: None,
                stats: BackendStats {
                    name: spec.name.clone(),
                    ..BackendStats::default()
                },
            })
            .collect();
        let schedule = s.schedule().expect("validated");
        let mut sim = Sim {
            s,
            seed,
            settings: s.settings(),
            bounds: FleetBounds::for_scenario(s),
            queue: EventQueue::new(),
            net,
            seeds: (0..s.seeds).map(node_addr).collect(),
            streams,
            nodes,
            by_addr,
            specs,
            keys,
            backends,
            schedule,
            clients: BTreeMap::new(),
            next_client: 0,
            arrivals_end: Instant::ZERO + s.duration(),
            arrivals_done: false,
            bursts_pending: 0,
            boots_pending: s.nodes,
            liveness_at: None,
            quiet_since: Instant::ZERO,
            last_resume: None,
            last_fleet_fault: None,
            agreed_since: None,
            view_ok_since: None,
            held_last: vec![vec![None; s.nodes]; s.nodes],
            down_watches: Vec::new(),
            join_watches: Vec::new(),
            issued: BTreeMap::new(),
            newest_issued: vec![None; s.backends.count],
            spreading: Vec::new(),
            hops: Vec::new(),
            trace: TraceHash::new(),
            events: 0,
            t: Tallies::default(),
            keep_going: false,
            noted: Vec::new(),
        };
        for node in 0..s.nodes {
            let at = uniform(
                &mut sim.streams.faults,
                Duration::ZERO,
                Duration::from_millis(s.start_spread_ms),
            );
            sim.queue
                .schedule_at(Instant::ZERO + at, Event::Boot { node });
        }
        for index in 0..sim.schedule.len() {
            let at = Instant::ZERO + sim.schedule[index].0;
            sim.queue.schedule_at(at, Event::Fault { index });
        }
        // After the faults due at the same instant.
        sim.queue
            .schedule_at(Instant::ZERO + s.duration(), Event::Liveness);
        let first = Instant::ZERO + Duration::from_millis(s.warmup_ms);
        if first < sim.arrivals_end {
            sim.queue.schedule_at(first, Event::Arrival);
        } else {
            sim.arrivals_done = true;
        }
        sim.queue.schedule_at(Instant::ZERO, Event::Sample);
        sim.queue.schedule_at(Instant::ZERO, Event::Balance);
        sim
    }

    // ----- the loop -----

    fn run_events(&mut self) -> Result<Instant, Violation> {
        while self.events < self.s.events_max {
            let Some(next) = self.queue.next_time() else {
                return Ok(self.now());
            };
            if self.finished(next) {
                return Ok(next);
            }
            let event = self.queue.pop().expect("an event was due");
            self.events += 1;
            self.dispatch(event)?;
        }
        Err(self.violation(
            Invariant::EventsMax,
            format!(
                "not finished after {} events (events_max); {} clients open, {} events pending, liveness phase {}",
                self.events,
                self.clients.len(),
                self.queue.len(),
                if self.liveness_at.is_some() { "reached" } else { "not reached" }
            ),
        ))
    }

    fn finished(&self, next: Instant) -> bool {
        let Some(l) = self.liveness_at else {
            return false;
        };
        let end = (l + self.bounds.liveness)
            .max(self.quiet_since + self.bounds.view + self.settings.report_interval);
        self.arrivals_done && self.bursts_pending == 0 && self.clients.is_empty() && next >= end
    }

    /// Routes an event: drops it if addressed to a dead life, defers it if
    /// its host is paused, handles it otherwise.
    fn dispatch(&mut self, event: Event) -> Result<(), Violation> {
        if let Some((node, life)) = event.target() {
            let n = &mut self.nodes[node];
            if life.is_some_and(|l| l != n.life) {
                return Ok(());
            }
            if let Some(p) = n.paused.as_mut() {
                if matches!(event, Event::Datagram { .. }) {
                    if p.datagrams >= self.s.network.paused_datagrams_max {
                        self.t.net.dropped_paused += 1;
                        return Ok(());
                    }
                    p.datagrams += 1;
                }
                assert!(
                    p.deferred.len() < DEFERRED_EVENTS_MAX,
                    "SEED={}: node {node} deferred {DEFERRED_EVENTS_MAX} events",
                    self.seed
                );
                p.deferred.push(event);
                return Ok(());
            }
        }
        self.handle(event)
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Arrival => {
                self.schedule_arrival();
                let node = self.dns_pick();
                self.new_client(node)
            }
            Event::BurstArrival { node } => {
                self.bursts_pending -= 1;
                let node = node.unwrap_or_else(|| self.dns_pick());
                self.new_client(node)
            }
            Event::Boot { node } => {
                self.boots_pending -= 1;
                self.start_node(node)
            }
            Event::Sample => self.on_sample(),
            Event::Balance => self.on_balance(),
            Event::Fault { index } => self.on_fault(index),
            Event::Liveness => self.on_liveness(),
            Event::Resume { node, life } => self.on_resume(node, life),
            Event::Wake { node, at, .. } => self.on_wake(node, at),
            Event::Resolved { node, .. } => self.on_resolved(node),
            Event::Datagram { node, from, data } => self.on_datagram(node, from, &data),
            Event::SyncRequest {
                node,
                from,
                from_life,
                id,
                data,
            } => self.on_sync_request(node, from, from_life, id, &data),
            Event::SyncAnswer { node, id, data, .. } => self.on_sync_answer(node, id, &data),
            Event::SyncRefused { node, id, .. } => self.on_sync_refused(node, id),
            Event::ClientAt { node, client, .. } => self.on_client_at(node, client),
            Event::ConnectDone {
                node,
                client,
                backend,
                epoch,
                ..
            } => self.on_connect_done(node, client, backend, epoch),
            Event::Leave {
                node,
                client,
                backend,
                ..
            } => self.on_leave(node, client, backend, false),
            Event::Reset {
                node,
                client,
                backend,
                ..
            } => self.on_leave(node, client, backend, true),
            Event::CheckDone {
                node,
                backend,
                epoch,
                ..
            } => self.on_check_done(node, backend, epoch),
            Event::Stop { node, .. } => self.on_stop(node),
            Event::Drain {
                node,
                backend,
                draining,
                ..
            } => self.on_drain(node, backend, draining),
            Event::RecoveryDeadline { backend, epoch } => self.on_recovery_deadline(backend, epoch),
            Event::DrainHop { index } => self.on_drain_hop(index),
        }
    }

    // ----- helpers -----

    fn proc(&mut self, i: usize) -> &mut Proc {
        self.nodes[i].proc.as_mut().expect("a running node")
    }

    /// Whether host `i` runs with the planted `bug` (the last host only).
    fn buggy(&self, i: usize, bug: FleetBug) -> bool {
        i + 1 == self.nodes.len() && self.s.plant_bug == Some(bug)
    }

    fn now(&self) -> Instant {
        self.queue.now()
    }

    fn record(&mut self, what: Record, a: u64, b: u64) {
        self.trace.record(self.queue.now(), what, a, b);
    }

    fn violation(&self, invariant: Invariant, detail: String) -> Violation {
        Violation {
            invariant,
            seed: self.seed,
            scenario: self.s.name.clone(),
            at: self.now(),
            detail,
        }
    }

    /// Passes a check's result on, or with `keep_going` notes a violation
    /// (the first of its invariant) and carries on. The count invariant
    /// always stops the run: past it the model is wrong.
    fn soft(&mut self, checked: Result<(), Violation>) -> Result<(), Violation> {
        match checked {
            Err(v) if self.keep_going && v.invariant != Invariant::Counts => {
                if !self.noted.iter().any(|n| n.invariant == v.invariant) {
                    self.noted.push(v);
                }
                Ok(())
            }
            other => other,
        }
    }
}

/// The cluster address of host `i`: 10.0.x.y, 250 hosts per /24.
pub fn node_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
    SocketAddr::from((ip, CLUSTER_PORT))
}
