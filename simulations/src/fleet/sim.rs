//! The fleet event loop: N nodes, each a real [`Cluster`] and a real
//! [`Pool`] driven exactly as `shoal-runtime/src/fleet.rs` and the
//! listener drive them, on one virtual clock, with the simulated network,
//! backends, clients and faults around them.
//!
//! # Driving one node (the runtime's order)
//! - **Start.** A new `Cluster` (identity epoch + 1, seeded from the node's
//!   stream) and a new `Pool`; with seeds, `join` then a warm-start sync
//!   with each seed in turn until one answers or `warm_start_timeout_ms`
//!   passes; without, `publish` at once. Only then does the node accept
//!   clients (its listeners open after the warm start).
//! - **After every input** (datagram, sync, timer, client, check result):
//!   `poll_check` until `None` (one simulated check each), `poll_event`
//!   until `None` (a health flip publishes an urgent report), then the
//!   fleet flush: `poll_transmit` and `poll_event` (`ReportDue` publishes)
//!   up to four rounds, then the view is pushed to the pool
//!   (`set_live_nodes`, `set_remote` for every backend) when
//!   `(view_generation, live_nodes)` changed; then a wake-up at the
//!   earliest of `Cluster::poll_timeout`, `Pool::poll_timeout` and the
//!   sync and re-seed ticks.
//! - **Ticks.** Every `sync_interval_ms` a push-pull with a random live
//!   member; every `reseed_interval_ms` (the first at once) a `join` to
//!   the seeds while `is_alone`.
//! - **Stop** is `leave`, a linger so the notice gets out, then exit;
//!   **crash** is an exit without `leave`. Either way the node's client
//!   connections end and every event addressed to the old process is
//!   dropped (each event carries the process's `life`).
//! - **Pause**: every event addressed to the node waits (datagrams up to
//!   the socket buffer, `paused_datagrams_max`) and is replayed in order
//!   at resume, when the node's timers are also overdue: it catches up.
//!
//! # Clients and backends
//! As in the single-node simulator ([`crate::sim`]): an attempt that
//! straddles a backend's change of state fails; a blackholed backend times
//! out; a failed connect is reported and retried on another backend up to
//! `retries` times. A client reaches a node by DNS (weighted random); if
//! that node does not accept (down, starting, stopping) it tries the next
//! addresses in turn. A backend with a `capacity` refuses beyond it.
//!
//! # Phases
//! The safety phase (`0..duration_ms`) has the workload and the faults.
//! At `duration_ms` the liveness phase begins: every cut heals, loss and
//! duplication stop, paused nodes resume, no client arrives. The run ends
//! once every client has left and the bounds of [`super::bounds`] have
//! passed. The invariants and where they are checked are listed in
//! [`super`].

use super::bounds::FleetBounds;
use super::chooser::Chooser;
use super::net::{Fate, Network};
use super::report::{
    BackendStats, Balance, ClientTally, FleetReport, MemberStats, NetStats, Summary,
};
use super::scenario::{Action, BackendState, FleetBug, FleetScenario};
use crate::invariants::{Invariant, Violation, millis};
use crate::queue::EventQueue;
use crate::random::{SimRng, exponential, uniform};
use crate::trace::{Record, TraceHash};
use rand::{Rng, RngExt, SeedableRng};
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::{BackendKey, ENTRIES_PER_SHARD_MAX, ReportEntry};
use shoal_core::cluster::{Cluster, ClusterConfig, ClusterEvent};
use shoal_core::{BackendId, BackendSpec, Instant, NoBackend, Pool, PoolEvent};
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

/// The cluster address of node `i`: 10.0.x.y, 250 nodes per /24.
pub fn node_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1);
    SocketAddr::from((ip, CLUSTER_PORT))
}

/// Datagrams one flush sends, at most; foca sends a handful per input.
const TRANSMITS_PER_FLUSH_MAX: usize = 100_000;
/// Cluster events one flush handles, at most.
const CLUSTER_EVENTS_PER_FLUSH_MAX: usize = 100_000;
/// Health flips one step produces, at most (one per observation).
const FLIPS_PER_STEP_MAX: usize = 1_024;
/// The runtime's flush loop: rounds of transmits and events.
const FLUSH_ROUNDS: usize = 4;
/// Events a paused node defers, at most (datagrams have their own bound).
const DEFERRED_EVENTS_MAX: usize = 10_000_000;
/// Error messages kept for the report.
const ERROR_SAMPLES_MAX: usize = 5;
/// A node's publication history for the staleness check, at most.
const PUBLISHED_HISTORY_MAX: usize = 100_000;

type ClientId = u64;

#[derive(Debug, Clone)]
enum Event {
    /// Poisson arrival of a client; schedules the next.
    Arrival,
    /// One client of a burst.
    BurstArrival {
        node: Option<usize>,
    },
    /// A node's first start.
    Boot {
        node: usize,
    },
    /// Balance sample and invariant sweep.
    Sample,
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
    SyncTimeout {
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
    StopFinish {
        node: usize,
        life: u64,
    },
}

impl Event {
    /// The node a paused process would have to handle this, and the life
    /// it is addressed to (`None`: whatever process has the address).
    fn target(&self) -> Option<(usize, Option<u64>)> {
        use Event::*;
        match *self {
            Arrival
            | BurstArrival { .. }
            | Boot { .. }
            | Sample
            | Fault { .. }
            | Liveness
            | Resume { .. } => None,
            Datagram { node, .. } | SyncRequest { node, .. } => Some((node, None)),
            Wake { node, life, .. }
            | SyncAnswer { node, life, .. }
            | SyncTimeout { node, life, .. }
            | ClientAt { node, life, .. }
            | ConnectDone { node, life, .. }
            | Leave { node, life, .. }
            | Reset { node, life, .. }
            | CheckDone { node, life, .. }
            | Stop { node, life }
            | StopFinish { node, life } => Some((node, Some(life))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Down,
    /// Warm start: in the fleet, not accepting clients yet.
    Starting,
    Up,
    /// Left the fleet; exits after the linger.
    Stopping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncKind {
    Warm,
    Periodic,
}

#[derive(Debug)]
struct WarmStart {
    seeds: VecDeque<usize>,
    deadline: Instant,
}

/// A running node process.
#[derive(Debug)]
struct Proc {
    cluster: Cluster,
    pool: Pool,
    pushed: (u64, u32),
    wakes: BTreeSet<Instant>,
    next_sync: Option<Instant>,
    next_reseed: Option<Instant>,
    syncs: BTreeMap<u64, SyncKind>,
    warm: Option<WarmStart>,
    /// `(since when, content hash)` of the report's recent contents, one
    /// entry per change (see the staleness check).
    contents: VecDeque<(Instant, u64)>,
    first_publish: Option<Instant>,
    latest_entries: Vec<ReportEntry>,
}

#[derive(Debug)]
struct Paused {
    deferred: Vec<Event>,
    datagrams: usize,
}

#[derive(Debug)]
struct Node {
    addr: SocketAddr,
    name: String,
    state: NodeState,
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
    /// The model of this node's connections per backend.
    connecting: Vec<BTreeSet<ClientId>>,
    established: Vec<BTreeSet<ClientId>>,
    /// Datagrams (all, reports) and bytes sent by earlier lives.
    sent_before: (u64, u64, u64),
    alive_before: Duration,
}

impl Node {
    fn accepting(&self) -> bool {
        self.proc.is_some() && self.state == NodeState::Up
    }

    /// Live in the truth the membership is checked against.
    fn is_live(&self) -> bool {
        self.proc.is_some() && matches!(self.state, NodeState::Starting | NodeState::Up)
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
    stats: BackendStats,
}

#[derive(Debug)]
struct Client {
    node: usize,
    tried: Vec<BackendId>,
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

#[derive(Debug, Default)]
struct Tallies {
    clients: ClientTally,
    backend_detections: Vec<Duration>,
    backend_recoveries: Vec<Duration>,
    crash_detections: Vec<Duration>,
    crash_detections_each: Vec<Duration>,
    leave_detections: Vec<Duration>,
    joins: Vec<Duration>,
    balance: Vec<(u32, f64)>,
    members: MemberStats,
    net: NetStats,
    formation: Option<Duration>,
    view_staleness_max: Duration,
    view_staleness_run_max: Duration,
    view_pairs: u64,
    view_gaps: u64,
}

#[derive(Debug)]
struct Sim<'a> {
    s: &'a FleetScenario,
    seed: u64,
    bounds: FleetBounds,
    queue: EventQueue<Event>,
    net: Network,
    streams: Streams,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, usize>,
    seeds: Vec<SocketAddr>,
    specs: Vec<BackendSpec>,
    keys: Vec<BackendKey>,
    backends: Vec<SimBackend>,
    schedule: Vec<(Duration, Action)>,
    clients: BTreeMap<ClientId, Client>,
    next_client: ClientId,
    next_sync_id: u64,
    arrivals_end: Instant,
    arrivals_done: bool,
    bursts_pending: u64,
    boots_pending: usize,
    liveness_at: Option<Instant>,
    /// When the last client left (or the liveness phase began).
    quiet_since: Instant,
    /// The last resume: votes and verdicts of resumed nodes may be stale.
    last_resume: Option<Instant>,
    agreed_since: Option<Instant>,
    view_ok_since: Option<Instant>,
    /// Per node and origin: the origin's epoch and the last sample at
    /// which the node held a report of it.
    held_last: Vec<Vec<Option<(u64, Instant)>>>,
    down_watches: Vec<DownWatch>,
    join_watches: Vec<JoinWatch>,
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

/// FNV-1a 64 of a report's entries, to compare contents cheaply.
fn content_hash(entries: &[ReportEntry]) -> u64 {
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
        {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    h
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
        let net = Network::new(s.network, s.nodes, child());
        let mut nodes_root = child();
        let specs: Vec<BackendSpec> = (0..s.backends.count)
            .map(|i| BackendSpec {
                name: format!("10.1.0.{}:8080", i + 1),
                max_connections: s.backends.max_connections,
            })
            .collect();
        let keys = specs
            .iter()
            .map(|b| BackendKey::new("sim", &b.name))
            .collect();
        let nodes = (0..s.nodes)
            .map(|i| Node {
                addr: node_addr(i),
                name: format!("n{i}"),
                state: NodeState::Down,
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
            next_sync_id: 0,
            arrivals_end: Instant::ZERO + s.duration(),
            arrivals_done: false,
            bursts_pending: 0,
            boots_pending: s.nodes,
            liveness_at: None,
            quiet_since: Instant::ZERO,
            last_resume: None,
            agreed_since: None,
            view_ok_since: None,
            held_last: vec![vec![None; s.nodes]; s.nodes],
            down_watches: Vec::new(),
            join_watches: Vec::new(),
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
            .max(self.quiet_since + self.bounds.view + self.s.cluster.report_interval());
        self.arrivals_done && self.bursts_pending == 0 && self.clients.is_empty() && next >= end
    }

    /// Routes an event: drops it if addressed to a dead life, defers it if
    /// its node is paused, handles it otherwise.
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
            Event::Fault { index } => self.on_fault(index),
            Event::Liveness => self.on_liveness(),
            Event::Resume { node, life } => self.on_resume(node, life),
            Event::Wake { node, at, .. } => self.on_wake(node, at),
            Event::Datagram { node, from, data } => self.on_datagram(node, from, &data),
            Event::SyncRequest {
                node,
                from,
                from_life,
                id,
                data,
            } => self.on_sync_request(node, from, from_life, id, &data),
            Event::SyncAnswer { node, id, data, .. } => self.on_sync_answer(node, id, &data),
            Event::SyncTimeout { node, id, .. } => self.on_sync_timeout(node, id),
            Event::ClientAt { node, client, .. } => {
                if !self.clients.contains_key(&client) {
                    return Ok(());
                }
                self.record(Record::ClientAt, client, node as u64);
                if self.nodes[node].state == NodeState::Stopping {
                    // Its listeners closed while the client waited.
                    self.t.clients.reset_node += 1;
                    self.remove_client(client);
                    return Ok(());
                }
                self.attempt(client)?;
                self.after_input(node)
            }
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
            Event::StopFinish { node, .. } => {
                self.exit_node(node, false);
                Ok(())
            }
        }
    }

    // ----- nodes -----

    fn proc(&mut self, i: usize) -> &mut Proc {
        self.nodes[i].proc.as_mut().expect("a running node")
    }

    fn buggy(&self, i: usize, bug: FleetBug) -> bool {
        i + 1 == self.nodes.len() && self.s.plant_bug == Some(bug)
    }

    fn start_node(&mut self, i: usize) -> Result<(), Violation> {
        if self.nodes[i].proc.is_some() {
            self.exit_node(i, true);
        }
        let now = self.now();
        let s = self.s;
        let config = ClusterConfig::lan(3, s.cluster.report_interval(), s.cluster.report_ttl())
            .with_refresh(s.cluster.report_refresh());
        let node = &mut self.nodes[i];
        node.life += 1;
        node.epoch += 1;
        node.starts += 1;
        node.state = NodeState::Starting;
        node.since = now;
        node.started_at = now;
        let identity = NodeId::new(node.addr, node.name.clone(), node.epoch);
        let cluster = Cluster::new(identity.clone(), config, node.rng.next_u64(), now);
        let pool = Pool::new(
            s.chooser.pool_policy(),
            s.health.config(),
            self.specs.clone(),
            now,
            &mut node.rng,
        );
        node.proc = Some(Proc {
            cluster,
            pool,
            pushed: (u64::MAX, 0),
            wakes: BTreeSet::new(),
            next_sync: None,
            next_reseed: None,
            syncs: BTreeMap::new(),
            warm: None,
            contents: VecDeque::new(),
            first_publish: None,
            latest_entries: Vec::new(),
        });
        let restart = node.starts > 1;
        let epoch = node.epoch;
        self.record(Record::Lifecycle, i as u64, epoch << 8 | 1);
        if restart {
            self.t.members.restarts += 1;
            // Watch the old identity's successor reach everyone.
            self.down_watches.retain(|w| w.subject != i);
        }
        self.join_watches.retain(|w| w.subject != i);
        self.join_watches.push(JoinWatch {
            subject: i,
            at: now,
            identity,
        });
        let me = self.nodes[i].addr;
        let seeds: Vec<SocketAddr> = self.seeds.iter().copied().filter(|&a| a != me).collect();
        if seeds.is_empty() || self.buggy(i, FleetBug::NeverJoins) {
            self.publish(i, false);
            self.flush(i);
            self.become_up(i);
        } else {
            self.proc(i).cluster.join(now, &seeds);
            self.flush(i);
            let warm = WarmStart {
                seeds: seeds.iter().map(|a| self.by_addr[a]).collect(),
                deadline: now + Duration::from_millis(s.cluster.warm_start_timeout_ms),
            };
            self.proc(i).warm = Some(warm);
            self.warm_next(i);
        }
        self.after_input(i)
    }

    /// Tries the next seed of the warm start, or gives up on it.
    fn warm_next(&mut self, i: usize) {
        let now = self.now();
        let proc = self.proc(i);
        let Some(warm) = proc.warm.as_mut() else {
            return;
        };
        let next = if now < warm.deadline {
            warm.seeds.pop_front()
        } else {
            None
        };
        let deadline = warm.deadline;
        match next {
            Some(seed) => self.send_sync(i, seed, SyncKind::Warm, Some(deadline)),
            None => self.become_up(i),
        }
    }

    fn become_up(&mut self, i: usize) {
        let now = self.now();
        let sync_interval = Duration::from_millis(self.s.cluster.sync_interval_ms);
        let proc = self.proc(i);
        proc.warm = None;
        proc.next_sync = Some(now + sync_interval);
        // The runtime's re-seed interval ticks at once.
        proc.next_reseed = Some(now);
        self.nodes[i].state = NodeState::Up;
        self.record(Record::Lifecycle, i as u64, 2);
    }

    /// The process exits: crash (no `leave`) or the end of a stop.
    fn exit_node(&mut self, i: usize, crash: bool) {
        let now = self.now();
        let node = &mut self.nodes[i];
        let Some(proc) = node.proc.take() else {
            return;
        };
        let stats = proc.cluster.stats();
        node.sent_before.0 += stats.datagrams_out;
        node.sent_before.1 += stats.bytes_out;
        node.sent_before.2 += stats.report_datagrams_out;
        node.alive_before += now - node.started_at;
        let identity = proc.cluster.identity().clone();
        let was_stopping = node.state == NodeState::Stopping;
        node.state = NodeState::Down;
        node.life += 1;
        node.paused = None;
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

    /// Starts timing how long the live nodes that know `identity` take to
    /// drop it (a crash, or a leave).
    fn watch_departure(&mut self, i: usize, identity: &NodeId, now: Instant, leave: bool) {
        let pending: BTreeSet<usize> = (0..self.nodes.len())
            .filter(|&x| x != i && self.nodes[x].is_live())
            .filter(|&x| {
                self.nodes[x]
                    .proc
                    .as_ref()
                    .is_some_and(|p| p.cluster.members().any(|m| m == identity))
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

    fn on_stop(&mut self, i: usize) -> Result<(), Violation> {
        if !self.nodes[i].is_live() {
            return Ok(());
        }
        let now = self.now();
        let identity = self.proc(i).cluster.identity().clone();
        self.proc(i).cluster.leave(now);
        self.nodes[i].state = NodeState::Stopping;
        self.record(Record::Lifecycle, i as u64, 4);
        self.watch_departure(i, &identity, now, true);
        let life = self.nodes[i].life;
        self.queue.schedule_in(
            Duration::from_millis(self.s.cluster.stop_linger_ms),
            Event::StopFinish { node: i, life },
        );
        self.after_input(i)
    }

    fn settle_down_watches(&mut self) {
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

    fn on_resume(&mut self, i: usize, life: u64) -> Result<(), Violation> {
        if self.nodes[i].life != life {
            return Ok(());
        }
        let Some(paused) = self.nodes[i].paused.take() else {
            return Ok(());
        };
        let now = self.now();
        self.nodes[i].since = now;
        self.last_resume = Some(now);
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

    fn on_wake(&mut self, i: usize, at: Instant) -> Result<(), Violation> {
        let now = self.now();
        let never_joins = self.buggy(i, FleetBug::NeverJoins);
        let s = self.s;
        let seeds = self.seeds.clone();
        let proc = self.proc(i);
        proc.wakes.remove(&at);
        if proc.cluster.poll_timeout() <= now {
            proc.cluster.handle_timeout(now);
        }
        if let Some(due) = proc.next_reseed
            && now >= due
        {
            proc.next_reseed = Some(now + Duration::from_millis(s.cluster.reseed_interval_ms));
            if proc.cluster.is_alone() && !never_joins {
                let me = proc.cluster.identity().addr;
                let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|&a| a != me).collect();
                if !seeds.is_empty() {
                    proc.cluster.join(now, &seeds);
                }
            }
        }
        if let Some(due) = proc.next_sync
            && now >= due
        {
            proc.next_sync = Some(now + Duration::from_millis(s.cluster.sync_interval_ms));
            let members: Vec<SocketAddr> = proc.cluster.members().map(|m| m.addr).collect();
            if !members.is_empty() {
                let peer = members[self.nodes[i].rng.random_range(0..members.len())];
                if let Some(&j) = self.by_addr.get(&peer) {
                    self.send_sync(i, j, SyncKind::Periodic, None);
                }
            }
        }
        self.after_input(i)
    }

    /// Everything the runtime does after an input: pool outputs, the fleet
    /// flush, the next wake-up; then the count invariant for this node.
    fn after_input(&mut self, i: usize) -> Result<(), Violation> {
        if self.nodes[i].proc.is_none() {
            return Ok(());
        }
        self.drive_pool(i);
        self.flush(i);
        self.schedule_wake(i);
        self.check_counts(i)
    }

    fn drive_pool(&mut self, i: usize) {
        let now = self.now();
        let checks_max = self.backends.len();
        for round in 0..=checks_max {
            let Some(id) = self.proc(i).pool.poll_check(now) else {
                break;
            };
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
            // The listener tells the fleet driver, which publishes at once.
            self.publish(i, true);
        }
    }

    /// The runtime's flush: transmits and events, up to four rounds, then
    /// the view to the pool.
    fn flush(&mut self, i: usize) {
        let skip_reports = self.buggy(i, FleetBug::SkipReports);
        for _ in 0..FLUSH_ROUNDS {
            let mut again = false;
            for round in 0..=TRANSMITS_PER_FLUSH_MAX {
                let Some(t) = self.proc(i).cluster.poll_transmit() else {
                    break;
                };
                assert!(
                    round < TRANSMITS_PER_FLUSH_MAX,
                    "SEED={}: transmit storm",
                    self.seed
                );
                self.send_datagram(i, t.to, t.data);
            }
            for round in 0..=CLUSTER_EVENTS_PER_FLUSH_MAX {
                let Some(event) = self.proc(i).cluster.poll_event() else {
                    break;
                };
                assert!(
                    round < CLUSTER_EVENTS_PER_FLUSH_MAX,
                    "SEED={}: cluster event storm",
                    self.seed
                );
                match event {
                    ClusterEvent::ReportDue => {
                        if !skip_reports {
                            self.publish(i, false);
                        }
                        again = true;
                    }
                    ClusterEvent::MemberUp(id) => {
                        self.t.members.ups += 1;
                        self.record_member(i, 1, &id);
                    }
                    ClusterEvent::MemberDown(id) => {
                        self.t.members.downs += 1;
                        self.record_member(i, 2, &id);
                        self.on_member_down(i, &id);
                    }
                    ClusterEvent::Renamed { to, .. } => {
                        self.t.members.renames += 1;
                        self.record_member(i, 3, &to);
                    }
                    ClusterEvent::Rejoined(id) => {
                        self.t.members.rejoins += 1;
                        self.record_member(i, 4, &id);
                    }
                    ClusterEvent::Idle => self.record(Record::Member, i as u64, 5 << 32),
                    ClusterEvent::Active => self.record(Record::Member, i as u64, 6 << 32),
                    ClusterEvent::Error(e) => self.count_error(i, &e),
                }
            }
            if !again {
                break;
            }
        }
        self.push_view(i);
    }

    fn push_view(&mut self, i: usize) {
        let keys = &self.keys;
        let proc = self.nodes[i].proc.as_mut().expect("a running node");
        let now = (proc.cluster.view_generation(), proc.cluster.live_nodes());
        if now == proc.pushed {
            return;
        }
        proc.pushed = now;
        proc.pool.set_live_nodes(now.1);
        for (b, key) in keys.iter().enumerate() {
            let remote = proc.cluster.remote(*key);
            proc.pool.set_remote(BackendId(b), remote);
        }
    }

    fn publish(&mut self, i: usize, urgent: bool) {
        let now = self.now();
        let keys = &self.keys;
        let history_keep =
            (self.bounds.view + Duration::from_millis(self.s.sample_interval_ms)) * 2;
        let proc = self.nodes[i].proc.as_mut().expect("a running node");
        let entries: Vec<ReportEntry> = proc
            .pool
            .ids()
            .map(|id| ReportEntry {
                key: keys[id.0],
                healthy: proc.pool.is_up(id),
                active: proc.pool.active(id),
            })
            .collect();
        let hash = content_hash(&entries);
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
        proc.cluster.publish_report(now, &entries, urgent);
        proc.latest_entries = entries;
        // The core publishes only what changed, and refreshes.
        let published = proc.cluster.stats().reports_published;
        self.record(Record::Publish, i as u64, published);
    }

    fn schedule_wake(&mut self, i: usize) {
        let now = self.now();
        let life = self.nodes[i].life;
        let proc = self.proc(i);
        let mut due = proc.cluster.poll_timeout();
        for t in [proc.pool.poll_timeout(), proc.next_sync, proc.next_reseed]
            .into_iter()
            .flatten()
        {
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

    fn count_error(&mut self, i: usize, message: &str) {
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

    fn on_member_down(&mut self, observer: usize, id: &NodeId) {
        let Some(&subject) = self.by_addr.get(&id.addr) else {
            return;
        };
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

    // ----- network -----

    fn send_datagram(&mut self, from: usize, to: SocketAddr, data: Vec<u8>) {
        let Some(&j) = self.by_addr.get(&to) else {
            self.t.net.to_dead_node += 1;
            return;
        };
        match self.net.datagram(from, j) {
            Fate::Cut => self.t.net.cut += 1,
            Fate::Lost => self.t.net.lost += 1,
            Fate::Delivered(first, dup) => {
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

    fn on_datagram(&mut self, i: usize, from: usize, data: &[u8]) -> Result<(), Violation> {
        let now = self.now();
        let Some(proc) = self.nodes[i].proc.as_mut() else {
            self.t.net.to_dead_node += 1;
            return Ok(());
        };
        self.t.net.delivered += 1;
        let result = proc.cluster.handle_datagram(now, data);
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

    fn send_sync(&mut self, i: usize, peer: usize, kind: SyncKind, deadline: Option<Instant>) {
        let now = self.now();
        let id = self.next_sync_id;
        self.next_sync_id += 1;
        let life = self.nodes[i].life;
        let timeout = now + Duration::from_millis(self.s.cluster.sync_timeout_ms);
        let timeout = deadline.map_or(timeout, |d| d.min(timeout));
        let request = self.proc(i).cluster.sync_message();
        self.proc(i).syncs.insert(id, kind);
        self.queue
            .schedule_at(timeout.max(now), Event::SyncTimeout { node: i, life, id });
        let data = match request {
            Ok(d) => d,
            Err(e) => {
                self.count_error(i, &format!("sync message: {e}"));
                return;
            }
        };
        // A stream needs both directions.
        if self.net.blocked(i, peer) || self.net.blocked(peer, i) {
            return;
        }
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

    fn on_sync_request(
        &mut self,
        j: usize,
        from: usize,
        from_life: u64,
        id: u64,
        data: &[u8],
    ) -> Result<(), Violation> {
        let now = self.now();
        let Some(proc) = self.nodes[j].proc.as_mut() else {
            return Ok(());
        };
        let answer = match proc.cluster.handle_sync(now, data) {
            Ok(_) => proc.cluster.sync_message().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.record(Record::Sync, from as u64, j as u64);
        match answer {
            Ok(answer) if !self.net.blocked(j, from) => {
                let at = self.net.latency();
                self.queue.schedule_in(
                    at,
                    Event::SyncAnswer {
                        node: from,
                        life: from_life,
                        id,
                        data: answer,
                    },
                );
            }
            Ok(_) => {}
            Err(e) => self.count_error(j, &format!("sync request from n{from}: {e}")),
        }
        self.after_input(j)
    }

    fn on_sync_answer(&mut self, i: usize, id: u64, data: &[u8]) -> Result<(), Violation> {
        let now = self.now();
        let Some(kind) = self.proc(i).syncs.remove(&id) else {
            // Timed out already.
            return Ok(());
        };
        let result = self.proc(i).cluster.handle_sync(now, data);
        self.record(Record::Sync, i as u64, 1 << 32 | id);
        match result {
            Ok(_) => {
                self.t.net.syncs_ok += 1;
                if kind == SyncKind::Warm {
                    self.become_up(i);
                }
            }
            Err(e) => {
                self.t.net.syncs_failed += 1;
                self.count_error(i, &format!("sync answer: {e}"));
                if kind == SyncKind::Warm {
                    self.warm_next(i);
                }
            }
        }
        self.after_input(i)
    }

    fn on_sync_timeout(&mut self, i: usize, id: u64) -> Result<(), Violation> {
        let Some(kind) = self.proc(i).syncs.remove(&id) else {
            return Ok(());
        };
        self.t.net.syncs_failed += 1;
        self.record(Record::Sync, i as u64, 2 << 32 | id);
        if kind == SyncKind::Warm {
            self.warm_next(i);
        }
        self.after_input(i)
    }

    // ----- clients -----

    fn schedule_arrival(&mut self) {
        let mean = Duration::from_secs(1) / self.s.workload.arrivals_per_sec;
        let at = self.now() + exponential(&mut self.streams.arrivals, mean);
        if at < self.arrivals_end {
            self.queue.schedule_at(at, Event::Arrival);
        } else {
            self.arrivals_done = true;
        }
    }

    /// The node DNS gives the next client: weighted at random.
    fn dns_pick(&mut self) -> usize {
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

    fn new_client(&mut self, preferred: usize) -> Result<(), Violation> {
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
            },
        );
        let life = self.nodes[node].life;
        self.dispatch(Event::ClientAt { node, life, client })
    }

    fn attempt(&mut self, client: ClientId) -> Result<(), Violation> {
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
        let Node { proc, rng, .. } = &mut self.nodes[i];
        let pool = &mut proc.as_mut().expect("a running node").pool;
        let chosen = match chooser {
            Chooser::Policy(_) => pool.acquire(rng, &tried),
            Chooser::GlobalArgmin => pool.acquire_with(&tried, |candidates, _| {
                candidates
                    .iter()
                    .min_by_key(|c| (c.load, c.index))
                    .map(|c| c.index)
            }),
            Chooser::Oracle => pool.acquire_with(&tried, |candidates, _| {
                let least = candidates.iter().map(|c| global[c.index]).min()?;
                let ties: Vec<usize> = candidates
                    .iter()
                    .filter(|c| global[c.index] == least)
                    .map(|c| c.index)
                    .collect();
                Some(ties[rng.random_range(0..ties.len())])
            }),
        };
        match chosen {
            Err(why) => {
                self.record(Record::Refused, client, 0);
                self.t.clients.refused_no_backend += 1;
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
    fn answer_delay(&mut self, state: BackendState, timeout: Duration) -> Duration {
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

    fn start_connect(
        &mut self,
        i: usize,
        client: ClientId,
        id: BackendId,
    ) -> Result<(), Violation> {
        self.record(Record::Acquired, client, id.0 as u64);
        let checked = self.check_choice(i, client, id);
        self.soft(checked)?;
        let b = &mut self.backends[id.0];
        b.stats.chosen += 1;
        b.global_active += 1;
        let (state, epoch) = (b.state, b.epoch);
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

    fn on_connect_done(
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

    fn on_leave(
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

    fn remove_client(&mut self, client: ClientId) {
        self.clients.remove(&client);
        if self.clients.is_empty() {
            self.quiet_since = self.now();
        }
    }

    fn draw_hold(&mut self) -> Duration {
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
    fn release(&mut self, i: usize, id: BackendId) -> Result<(), Violation> {
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

    // ----- backends -----

    fn on_check_done(&mut self, i: usize, id: BackendId, epoch: u64) -> Result<(), Violation> {
        let capacity = self.s.backends.capacity;
        let trust_again = self.now() + self.bounds.refusal_window;
        let b = &mut self.backends[id.0];
        let full = capacity.is_some_and(|c| b.established >= c);
        let ok = b.state.is_up() && b.epoch == epoch && !full;
        b.stats.checks += 1;
        if !ok {
            b.stats.check_failures += 1;
        }
        if full {
            b.trusted_at = b.trusted_at.max(trust_again);
        }
        self.record(
            Record::CheckDone,
            (i as u64) << 32 | id.0 as u64,
            u64::from(ok),
        );
        if !self.buggy(i, FleetBug::IgnoreHealth) {
            let ok = ok && !self.buggy(i, FleetBug::SuccessAsFailure);
            self.proc(i).pool.handle_check_result(id, ok);
        }
        self.after_input(i)
    }

    fn set_backend(&mut self, id: usize, state: BackendState) -> Result<(), Violation> {
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

    // ----- faults and phases -----

    fn on_fault(&mut self, index: usize) -> Result<(), Violation> {
        let action = self.schedule[index].1.clone();
        let now = self.now();
        match action {
            Action::Crash(i) => {
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
            Action::Backend(b, state) => self.set_backend(b, state),
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

    fn on_liveness(&mut self) -> Result<(), Violation> {
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

    // ----- sampling and the fleet invariants -----

    fn on_sample(&mut self) -> Result<(), Violation> {
        let now = self.now();
        self.queue.schedule_in(
            Duration::from_millis(self.s.sample_interval_ms),
            Event::Sample,
        );
        let workload = now >= Instant::ZERO + Duration::from_millis(self.s.warmup_ms)
            && now < self.arrivals_end;
        if workload {
            let up: Vec<u32> = self
                .backends
                .iter()
                .filter(|b| b.state.is_up())
                .map(|b| b.global_active)
                .collect();
            if !up.is_empty() {
                let sum: u32 = up.iter().sum();
                let mean = f64::from(sum) / up.len() as f64;
                if sum > 0 {
                    let max = up.iter().copied().max().unwrap_or(0);
                    self.t.balance.push((max, mean));
                }
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].proc.is_some() {
                self.check_counts(i)?;
            }
        }
        self.sample_joins();
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
            if now > agreed.max(l) + self.bounds.view {
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

    fn sample_joins(&mut self) {
        let now = self.now();
        let mut done = Vec::new();
        for (k, w) in self.join_watches.iter().enumerate() {
            let all = self.nodes.iter().enumerate().all(|(x, n)| {
                x == w.subject
                    || !n.is_live()
                    || n.paused.is_some()
                    || n.proc
                        .as_ref()
                        .is_some_and(|p| p.cluster.members().any(|m| *m == w.identity))
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

    /// `None` when every live, running node's members are exactly the
    /// other live nodes' current identities.
    fn membership_mismatch(&self) -> Option<String> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_live())
            .collect();
        if let Some(&i) = live.iter().find(|&&i| self.nodes[i].paused.is_some()) {
            return Some(format!("n{i} is paused"));
        }
        let cluster = |i: usize| &self.nodes[i].proc.as_ref().expect("live").cluster;
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

    fn describe_members(&self, i: usize, live: &[usize]) -> String {
        let id = |n: &NodeId| {
            let k = self.by_addr.get(&n.addr).copied().unwrap_or(usize::MAX);
            format!("n{k}#{}.{}", n.epoch, n.bump)
        };
        let cluster = |k: usize| &self.nodes[k].proc.as_ref().expect("live").cluster;
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
    fn view_staleness(&mut self) -> (Duration, String) {
        let now = self.now();
        let sample = Duration::from_millis(self.s.sample_interval_ms);
        let shards = self.backends.len().div_ceil(ENTRIES_PER_SHARD_MAX).max(1);
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_live())
            .collect();
        let mut worst = (Duration::ZERO, String::new());
        for &x in &live {
            let view = self.nodes[x].proc.as_ref().expect("live").cluster.view();
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
                    .is_some_and(|t| t + self.s.cluster.report_ttl() < now);
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

    fn violation(&self, invariant: Invariant, detail: String) -> Violation {
        Violation {
            invariant,
            seed: self.seed,
            scenario: self.s.name.clone(),
            at: self.now(),
            detail,
        }
    }

    /// Counts: node `i`'s pool against the model, per backend.
    fn check_counts(&self, i: usize) -> Result<(), Violation> {
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
    fn check_choice(&self, i: usize, client: ClientId, id: BackendId) -> Result<(), Violation> {
        let b = &self.backends[id.0];
        let from = b.since.max(self.nodes[i].since);
        let down_for = self.now() - from;
        if !b.state.is_up() && down_for > self.bounds.detection {
            return Err(self.violation(
                Invariant::Detection,
                format!(
                    "n{i} gave client {client} backend {id} ({}), dead for {} (counted from {}) > detection bound {}",
                    b.state.as_str(),
                    millis(nanos(down_for)),
                    millis(from.as_nanos()),
                    millis(nanos(self.bounds.detection))
                ),
            ));
        }
        Ok(())
    }

    /// Refusal: no "no backend" while an untried backend is up, below its
    /// limits, and trusted (up for the refusal window, with no node resumed
    /// within it).
    fn check_refusal(
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
            if tried.contains(&id) || !b.state.is_up() || now <= b.trusted_at || limit || full {
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
    fn finish(mut self, end: Instant) -> Result<FleetReport, Violation> {
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
        if let Some(why) = self.membership_mismatch() {
            let v = self.violation(Invariant::Membership, format!("at the end: {why}"));
            self.soft(Err(v))?;
        }
        let checked = self.check_views_exactly(&live);
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
                let stats = p.cluster.stats();
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
            crash_detections: Summary::of(&t.crash_detections),
            crash_detections_each: Summary::of(&t.crash_detections_each),
            leave_detections: Summary::of(&t.leave_detections),
            joins: Summary::of(&t.joins),
            formation: t.formation,
            membership_convergence: after_liveness(self.agreed_since),
            view_convergence: after_liveness(self.view_ok_since),
            view_staleness_max: t.view_staleness_max,
            view_staleness_run_max: t.view_staleness_run_max,
            view_gaps: (t.view_gaps, t.view_pairs),
            violations: self.noted,
            members: t.members.clone(),
            net: t.net,
        })
    }

    /// At the end: a backend dead for the detection bound is down in every
    /// pool, one up for the recovery bound is up in every pool.
    fn check_health_at_end(&self, end: Instant, live: &[usize]) -> Result<(), Violation> {
        for &i in live {
            let proc = self.nodes[i].proc.as_ref().expect("live");
            for (b, backend) in self.backends.iter().enumerate() {
                let id = BackendId(b);
                let for_ = end - backend.since.max(self.nodes[i].since);
                if !backend.state.is_up() && proc.pool.is_up(id) && for_ > self.bounds.detection {
                    return Err(self.violation(
                        Invariant::Detection,
                        format!(
                            "at the end, n{i}'s pool still has backend {id} up, {} after it died",
                            millis(nanos(for_))
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

    /// At the end (no client for a view bound): every live node holds
    /// exactly each other live node's latest report, and its pool holds
    /// the sums of those reports.
    fn check_views_exactly(&self, live: &[usize]) -> Result<(), Violation> {
        for &x in live {
            let proc = self.nodes[x].proc.as_ref().expect("live");
            let view = proc.cluster.view();
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
                let expected = proc.cluster.remote(*key);
                let mut sum = (0u32, 0u32, 0u32);
                for &o in live.iter().filter(|&&o| o != x) {
                    let latest = &self.nodes[o].proc.as_ref().expect("live").latest_entries;
                    if let Some(e) = latest.iter().find(|e| e.key == *key) {
                        sum.0 += e.active;
                        sum.1 += u32::from(!e.healthy);
                        sum.2 += 1;
                    }
                }
                let pool = proc.pool.remote(id);
                if pool != expected || (pool.active, pool.down_votes, pool.reporters) != sum {
                    return Err(self.violation(
                        Invariant::View,
                        format!(
                            "at the end, n{x}'s pool has {pool:?} for backend {id}, its cluster {expected:?}, the live reports sum to (active, down votes, reporters) {sum:?}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_expectations(&self) -> Result<(), Violation> {
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
        if failed.is_empty() {
            Ok(())
        } else {
            Err(self.violation(Invariant::Expectation, failed.join("; ")))
        }
    }

    // ----- helpers -----

    fn now(&self) -> Instant {
        self.queue.now()
    }

    fn record(&mut self, what: Record, a: u64, b: u64) {
        self.trace.record(self.queue.now(), what, a, b);
    }
}
