//! One fleet node as a sans-IO state machine: everything a node decides
//! about the fleet, in one place that the runtime (`shoal-runtime`, tokio
//! and QUIC) and the simulator (`shoal-sim`, a virtual network) drive
//! through the same methods.
//!
//! A [`Node`] owns the [`Cluster`] (membership, reports, identity), the
//! push of the fleet's view into the listeners' pools, and every fleet
//! timer: the warm start, re-seeding while alone, periodic re-resolution
//! of the seeds, the periodic full-state sync, report publishing (changed
//! shards each interval, the rest each refresh, at once on a health flip),
//! the leave and its linger. The shells only carry bytes and time.
//!
//! # Life of a node
//! 1. **Warming.** [`Node::new`] asks for the seeds' addresses
//!    ([`Action::Resolve`]). With none, the node starts a fleet of its own
//!    at once. Otherwise it announces itself to every seed and pulls the
//!    full state of one seed after the other ([`Action::Sync`]) until one
//!    answers or [`Settings::warm_start_timeout`] has passed since
//!    `Node::new` (the resolution counts against it). All along it handles
//!    datagrams, syncs and timers like any member: a slow seed delays its
//!    listeners, never its part in the fleet.
//! 2. **Serving.** [`Action::Accept`] tells the shell to open the
//!    listeners. Every [`Settings::sync_interval`] a push-pull with one
//!    random live member; every [`Settings::reseed_interval`] while alone,
//!    and every [`Settings::resolve_interval`] regardless, the seeds are
//!    resolved again.
//! 3. **Leaving.** [`Node::handle_leave`] sends the leave notice; the node
//!    stops publishing and syncing but still answers, and after
//!    [`Settings::leave_linger`] says [`Action::Close`]: the shell may now
//!    close its transport (once its own drain is over too).
//!
//! # Driving a node
//! Inputs, each with the current time and the node's [`Pools`]:
//! [`Node::handle_datagram`], [`Node::handle_sync_request`] (returns the
//! answer to send back), [`Node::handle_sync_answer`] /
//! [`Node::handle_sync_failed`] for an [`Action::Sync`] this node asked
//! for, [`Node::handle_seeds`] for an [`Action::Resolve`] (every one must
//! be answered, with an empty list if resolution failed),
//! [`Node::handle_health_changed`] after a pool's health flip,
//! [`Node::handle_budget_raised`] after a pool raised a budget claim,
//! [`Node::handle_timeout`] once [`Node::poll_timeout`] has passed, and
//! [`Node::handle_leave`].
//!
//! After each input, until each returns `None`:
//! 1. [`Node::poll_transmit`]: datagrams to send (losing one is fine);
//! 2. [`Node::poll_action`]: what the shell must do;
//! 3. [`Node::poll_event`]: what to log and count;
//!
//! then wait for the next input or [`Node::poll_timeout`].
//!
//! Every input ends by reading this node's report from the pools when one
//! is due and writing the fleet's view into them when it changed, so the
//! pools are never more than one input behind the node.
//!
//! A shell that answers DNS for the fleet also polls
//! [`Node::poll_client_answer`] after each input: it gives the fleet's
//! answer ([`crate::dns`]) whenever it may have changed.

pub mod settings;

#[cfg(test)]
mod tests;

pub use settings::{Settings, SettingsError};

use crate::budget::BudgetView;
use crate::checkers;
use crate::cluster::identity::NodeId;
use crate::cluster::report::{BackendKey, DrainMark, ReportEntry};
use crate::cluster::{Cluster, ClusterError, ClusterEvent, ClusterFault, ClusterStats, Transmit};
use crate::dns::ClientAnswer;
use crate::pool::Pool;
use crate::time::Instant;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Syncs this node has asked for and not yet seen answered, at most; a
/// periodic sync due while this many wait is skipped (and counted).
pub const SYNCS_IN_FLIGHT_MAX: usize = 4;

/// Events held for the shell at most; further ones are dropped and
/// counted in [`NodeStats::events_dropped`].
pub const NODE_EVENTS_QUEUED_MAX: usize = 16_384;

/// Rounds of "drain the cluster's events, publish if a report is due" in
/// one input: a publication adds no report request, so two suffice.
const PUBLISH_ROUNDS_MAX: usize = 2;

/// The node's listeners' pools, as the node reaches them: the runtime's
/// sit behind the data threads' locks, the simulator's in its node.
pub trait Pools {
    /// Calls `f` with every pool and its listener index (the order of the
    /// keys given to [`Node::new`]).
    fn each(&mut self, f: &mut dyn FnMut(usize, &mut Pool));
}

impl Pools for Pool {
    fn each(&mut self, f: &mut dyn FnMut(usize, &mut Pool)) {
        f(0, self);
    }
}

impl Pools for [Pool] {
    fn each(&mut self, f: &mut dyn FnMut(usize, &mut Pool)) {
        for (i, p) in self.iter_mut().enumerate() {
            f(i, p);
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Resolve the configured seeds (every address of every name) and
    /// call [`Node::handle_seeds`] with the result, also when it failed.
    Resolve,
    /// Send a sync request and call [`Node::handle_sync_answer`] or
    /// [`Node::handle_sync_failed`] with its `id`.
    Sync(SyncRequest),
    /// The warm start is over: open the listeners.
    Accept,
    /// The leave notice has had its linger: the transport may close.
    Close,
}

/// A full-state sync to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub id: u64,
    pub to: SocketAddr,
    pub data: Vec<u8>,
    /// The node counts the sync as failed from then on; the shell should
    /// give up on the stream by then too.
    pub deadline: Instant,
}

/// Why a sync was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// A start-up pull from a seed, before the listeners accept.
    Warm,
    /// Anti-entropy with a random live member.
    Periodic,
}

/// How the warm start ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmStart {
    /// No seed but this node: a new fleet.
    NoSeeds,
    /// `seed` answered with the state of `from`.
    Pulled {
        seed: SocketAddr,
        from: NodeId,
        live_nodes: u32,
    },
    /// Every seed was tried and none answered.
    NoAnswer { tried: usize },
    /// `warm_start_timeout` passed (seed resolution included).
    TimedOut,
}

/// Why a sync failed.
#[derive(Debug, Clone)]
pub enum SyncFailure {
    /// The shell reported no answer (stream refused, reset, transport error).
    Unanswered,
    /// No answer by the request's deadline.
    TimedOut,
    /// The answer did not decode; nothing of it was applied.
    Refused(Arc<ClusterError>),
}

/// What happened, for logs and metrics.
#[derive(Debug, Clone)]
pub enum NodeEvent {
    MemberUp(NodeId),
    MemberDown(NodeId),
    /// A member restarted or renewed its identity at the same address.
    Renamed {
        from: NodeId,
        to: NodeId,
    },
    /// This node was declared down and rejoined with a renewed identity.
    Rejoined(NodeId),
    /// This node knows no live peer (it re-announces to its seeds).
    Idle,
    /// This node is known by at least one live member.
    Active,
    /// This node was declared down and cannot renew its identity: it
    /// takes no further part in the fleet until restarted.
    Defunct,
    /// The warm start ended; [`Action::Accept`] follows.
    WarmStart(WarmStart),
    SyncDone {
        peer: SocketAddr,
        from: NodeId,
        kind: SyncKind,
    },
    SyncFailed {
        peer: SocketAddr,
        kind: SyncKind,
        cause: SyncFailure,
    },
    /// The leave notice went out.
    Leaving,
    /// Something inside the membership protocol failed.
    Fault(Arc<ClusterFault>),
    /// Two live processes have one name: the newer is kept, the other
    /// refused (see [`crate::cluster::ClusterEvent::DuplicateName`]).
    DuplicateName {
        kept: NodeId,
        refused: NodeId,
    },
    /// A newer process with this node's name joined: the fleet refuses
    /// this one from now on.
    NameTaken {
        by: NodeId,
    },
}

/// Counters of the node's own decisions (the cluster's are
/// [`Node::cluster_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    /// Periodic syncs skipped because [`SYNCS_IN_FLIGHT_MAX`] were waiting.
    pub syncs_skipped: u64,
    pub resolves: u64,
    /// Events dropped because [`NODE_EVENTS_QUEUED_MAX`] were waiting.
    pub events_dropped: u64,
    /// Times this node found itself defunct.
    pub defunct: u64,
    /// Reports published early, on a change of counts (decision 61).
    pub early_reports: u64,
}

/// A drain named a backend none of this node's listeners has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no listener of this node has the backend with key {0:?}")]
pub struct UnknownBackend(pub BackendKey);

/// Where a node is in its life (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warming,
    Serving,
    Leaving,
    Closed,
}

/// What `/status` shows of the fleet, built when asked.
#[derive(Debug, Clone)]
pub struct FleetStatus {
    pub identity: NodeId,
    pub phase: Phase,
    pub live_nodes: u32,
    /// Live peers, by name.
    pub members: Vec<MemberStatus>,
    /// Per listener, per backend: the nodes that should check it by this
    /// node's view of the membership, first in hash order.
    pub checkers: Vec<Vec<Vec<SocketAddr>>>,
}

/// One live peer in [`FleetStatus`].
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub id: NodeId,
    /// Age of its newest report shard held here, if any.
    pub report_age: Option<Duration>,
    /// Its entries from the report shards held here (its own verdict and
    /// exact count per backend), so an operator sees each node's view of
    /// each backend from any one node. Empty while no report is held.
    pub entries: BTreeMap<BackendKey, ReportEntry>,
}

#[derive(Debug)]
enum State {
    Warming {
        deadline: Instant,
        resolved: bool,
        pending: VecDeque<SocketAddr>,
        tried: usize,
        /// Addresses pulled from (or being pulled from) already.
        asked: BTreeSet<SocketAddr>,
    },
    Serving {
        next_sync: Instant,
        next_reseed: Instant,
        next_resolve: Instant,
    },
    Leaving {
        close_at: Instant,
    },
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    peer: SocketAddr,
    kind: SyncKind,
    deadline: Instant,
}

/// One fleet node. See the module doc.
pub struct Node {
    cluster: Cluster,
    settings: Settings,
    /// Per listener, per backend: the key its counts travel under.
    keys: Vec<Vec<BackendKey>>,
    rng: Xoshiro256PlusPlus,
    state: State,
    resolving: bool,
    syncs: BTreeMap<u64, InFlight>,
    next_sync_id: u64,
    actions: VecDeque<Action>,
    events: VecDeque<NodeEvent>,
    /// `(view generation, live nodes, membership generation, fleet
    /// high-water)` last written into the pools.
    pushed: Option<(u64, u32, u64, u32)>,
    /// The largest fleet seen (this node included) and until when it is
    /// held: fleet-wide budgets split their fair parts over it.
    fleet_high: (u32, Instant),
    /// Per listener, per backend: whether this node is one of its
    /// checkers, as of the membership generation in `pushed`.
    assigned: Vec<Vec<bool>>,
    /// Per listener: its `health.checkers`, as read from its pool.
    checkers_configured: Vec<u32>,
    entries: Vec<ReportEntry>,
    /// The early report (decision 61): this node's counts changed since
    /// its last publication, which was at `published_at`; `early_used`
    /// early publications since the last periodic one.
    early_pending: bool,
    early_used: u32,
    published_at: Option<Instant>,
    stats: NodeStats,
    /// `(clients generation, phase)` of the last answer polled.
    answered: Option<(u64, Phase)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cluster", &self.cluster)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node starting its warm start at `now`. `keys[l][b]` is the key
    /// of backend `b` of listener `l` ([`BackendKey::new`]); `rng_seed`
    /// seeds every choice the node and foca make.
    pub fn new(
        identity: NodeId,
        settings: Settings,
        keys: Vec<Vec<BackendKey>>,
        rng_seed: u64,
        now: Instant,
    ) -> Node {
        let cluster = Cluster::new(identity, settings.cluster_config(), rng_seed, now);
        // A stream of its own, so the node's choices do not shift foca's.
        let rng = Xoshiro256PlusPlus::seed_from_u64(rng_seed ^ 0x9e37_79b9_7f4a_7c15);
        let deadline = now + settings.warm_start_timeout;
        let mut node = Node {
            cluster,
            settings,
            keys,
            rng,
            state: State::Warming {
                deadline,
                resolved: false,
                pending: VecDeque::new(),
                tried: 0,
                asked: BTreeSet::new(),
            },
            resolving: false,
            syncs: BTreeMap::new(),
            next_sync_id: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            pushed: None,
            fleet_high: (1, now),
            assigned: Vec::new(),
            checkers_configured: Vec::new(),
            entries: Vec::new(),
            early_pending: false,
            early_used: 0,
            published_at: None,
            stats: NodeStats::default(),
            answered: None,
        };
        node.request_resolve();
        node
    }

    // ----- getters -----

    /// This node's current identity (it renews after a false death).
    pub fn identity(&self) -> &NodeId {
        self.cluster.identity()
    }

    /// Where the node is in its life.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Warming { .. } => Phase::Warming,
            State::Serving { .. } => Phase::Serving,
            State::Leaving { .. } => Phase::Leaving,
            State::Closed => Phase::Closed,
        }
    }

    /// Live members, this node included.
    pub fn live_nodes(&self) -> u32 {
        self.cluster.live_nodes()
    }

    /// Whether this node knows no live peer.
    pub fn is_alone(&self) -> bool {
        self.cluster.is_alone()
    }

    /// The membership and load view (read only).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    pub fn cluster_stats(&self) -> ClusterStats {
        self.cluster.stats()
    }

    /// The fleet's DNS answer as this node sees it now (see [`crate::dns`]):
    /// its own client addresses while it serves, and those every live
    /// member advertises in the shard 0 this node holds. Empty once this
    /// node leaves. O(members).
    pub fn client_answer(&self) -> ClientAnswer {
        let own: &[std::net::IpAddr] = match self.phase() {
            Phase::Serving => &self.settings.client_addrs,
            Phase::Warming => &[],
            Phase::Leaving | Phase::Closed => return ClientAnswer::default(),
        };
        ClientAnswer::from_view(
            own,
            self.cluster
                .members()
                .map(|m| self.cluster.clients_of(m.addr)),
        )
    }

    /// The fleet as `/status` shows it: built on each call, O(members).
    pub fn status(&self, now: Instant) -> FleetStatus {
        let view = self.cluster.view();
        let mut entries: BTreeMap<SocketAddr, BTreeMap<BackendKey, ReportEntry>> = BTreeMap::new();
        for shard in view.shards() {
            let held = entries.entry(shard.origin).or_default();
            held.extend(shard.entries.iter().map(|e| (e.key, *e)));
        }
        let mut members: Vec<MemberStatus> = self
            .cluster
            .members()
            .map(|id| MemberStatus {
                id: id.clone(),
                report_age: view.age_of(id.addr, now),
                entries: entries.remove(&id.addr).unwrap_or_default(),
            })
            .collect();
        // By name, so that tables and pages drawn from it keep their rows
        // and columns in place from one refresh to the next.
        members.sort_by(|a, b| (&a.id.name, a.id.addr).cmp(&(&b.id.name, b.id.addr)));
        let checkers = self
            .keys
            .iter()
            .enumerate()
            .map(|(l, keys)| {
                let k = self.checkers_configured.get(l).copied().unwrap_or(0);
                keys.iter().map(|&key| self.checkers_of(key, k)).collect()
            })
            .collect();
        FleetStatus {
            identity: self.identity().clone(),
            phase: self.phase(),
            live_nodes: self.live_nodes(),
            members,
            checkers,
        }
    }

    // ----- inputs -----

    /// A datagram (SWIM packet or report datagram) from a peer whose
    /// certificate names `peer`. An error says the bytes were refused and
    /// changed nothing: malformed, claiming an identity that is not
    /// `peer`'s, or from an older process of a name a newer one holds.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        peer: &str,
        data: &[u8],
        pools: &mut dyn Pools,
    ) -> Result<(), ClusterError> {
        let result = self.cluster.handle_datagram_from(now, peer, data);
        self.after(now, pools);
        result
    }

    /// A sync request from a peer whose certificate names `peer` (the
    /// request's sender must have that name): applies it and returns this
    /// node's answer. On an error nothing of the request was applied and
    /// the shell should refuse the stream.
    pub fn handle_sync_request(
        &mut self,
        now: Instant,
        peer: &str,
        data: &[u8],
        pools: &mut dyn Pools,
    ) -> Result<Vec<u8>, ClusterError> {
        let result = self
            .cluster
            .handle_sync_from(now, peer, data)
            .and_then(|_| self.cluster.sync_message().map_err(ClusterError::Wire));
        self.after(now, pools);
        result
    }

    /// The answer to this node's sync `id`. A late answer (after its
    /// deadline) is ignored.
    pub fn handle_sync_answer(
        &mut self,
        now: Instant,
        id: u64,
        data: &[u8],
        pools: &mut dyn Pools,
    ) {
        if let Some(sync) = self.syncs.remove(&id) {
            match self.cluster.handle_sync(now, data) {
                Ok(from) => {
                    self.stats.syncs_ok += 1;
                    self.push_event(NodeEvent::SyncDone {
                        peer: sync.peer,
                        from: from.clone(),
                        kind: sync.kind,
                    });
                    if sync.kind == SyncKind::Warm && self.phase() == Phase::Warming {
                        let live_nodes = self.cluster.live_nodes();
                        self.serve(
                            now,
                            WarmStart::Pulled {
                                seed: sync.peer,
                                from,
                                live_nodes,
                            },
                        );
                    }
                }
                Err(e) => self.sync_failed(now, sync, SyncFailure::Refused(Arc::new(e))),
            }
        }
        self.after(now, pools);
    }

    /// This node's sync `id` got no answer (the shell says why in its log).
    pub fn handle_sync_failed(&mut self, now: Instant, id: u64, pools: &mut dyn Pools) {
        if let Some(sync) = self.syncs.remove(&id) {
            self.sync_failed(now, sync, SyncFailure::Unanswered);
        }
        self.after(now, pools);
    }

    /// The seeds' addresses, answering an [`Action::Resolve`] (empty if
    /// resolution failed). This node's own address is skipped.
    pub fn handle_seeds(&mut self, now: Instant, addrs: &[SocketAddr], pools: &mut dyn Pools) {
        self.resolving = false;
        let me = self.identity().addr;
        let mut seeds: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
        for &a in addrs {
            if a != me && !seeds.contains(&a) {
                seeds.push(a);
            }
        }
        let first = matches!(
            self.state,
            State::Warming {
                resolved: false,
                ..
            }
        );
        if first {
            if let State::Warming {
                resolved, pending, ..
            } = &mut self.state
            {
                *resolved = true;
                pending.extend(seeds.iter().copied());
            }
            if seeds.is_empty() {
                self.serve(now, WarmStart::NoSeeds);
            } else {
                self.cluster.join(now, &seeds);
                self.warm_next(now);
            }
        } else if self.publishing() {
            if self.cluster.is_alone() {
                if !seeds.is_empty() {
                    self.cluster.join(now, &seeds);
                }
            } else {
                self.cluster.update_seeds(now, &seeds);
            }
        }
        self.after(now, pools);
    }

    /// A pool's backend changed health: publish at once, so the fleet's
    /// majority rule sees it within a hop.
    pub fn handle_health_changed(&mut self, now: Instant, pools: &mut dyn Pools) {
        if self.publishing() {
            self.publish(now, pools, true);
        }
        self.after(now, pools);
    }

    /// A pool raised a budget claim ([`Pool::has_unpublished_raise`]):
    /// publish at once, so peers count it before they raise their own.
    pub fn handle_budget_raised(&mut self, now: Instant, pools: &mut dyn Pools) {
        if self.publishing() {
            self.publish(now, pools, true);
        }
        self.after(now, pools);
    }

    /// A pool's connection counts changed since the node last published
    /// ([`Pool::take_report_wake`] said so): the node publishes early,
    /// at most [`Settings::report_early_max`] times between two periodic
    /// reports and [`Settings::report_early_gap`] after its last
    /// publication (decision 61), so that a fleet whose counts change
    /// rarely sees each change within a gap, not within an interval. A
    /// call while the gap runs arms [`Node::poll_timeout`].
    pub fn handle_counts_changed(&mut self, now: Instant, pools: &mut dyn Pools) {
        if self.publishing() && self.settings.report_early_max > 0 {
            self.early_pending = true;
            self.publish_early(now, pools);
        }
        self.after(now, pools);
    }

    /// When the early report may go ([`Node::handle_counts_changed`]), if
    /// one waits.
    fn early_at(&self) -> Option<Instant> {
        if !self.early_pending
            || self.early_used >= self.settings.report_early_max
            || !self.publishing()
        {
            return None;
        }
        Some(
            self.published_at
                .map_or(Instant::ZERO, |t| t + self.settings.report_early_gap),
        )
    }

    /// Publishes the early report if it is due; true if it went.
    fn publish_early(&mut self, now: Instant, pools: &mut dyn Pools) -> bool {
        let due = self.early_at().is_some_and(|t| t <= now);
        if due {
            self.early_used += 1;
            self.stats.early_reports += 1;
            self.publish(now, pools, true);
        }
        due
    }

    /// Fires whatever is due at `now` (call once [`Node::poll_timeout`]
    /// has passed; an early call does nothing harmful).
    pub fn handle_timeout(&mut self, now: Instant, pools: &mut dyn Pools) {
        if self.cluster.poll_timeout() <= now {
            self.cluster.handle_timeout(now);
        }
        let expired: Vec<u64> = self
            .syncs
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(sync) = self.syncs.remove(&id) {
                self.sync_failed(now, sync, SyncFailure::TimedOut);
            }
        }
        match &mut self.state {
            State::Warming { deadline, .. } => {
                if now >= *deadline {
                    self.serve(now, WarmStart::TimedOut);
                }
            }
            State::Serving {
                next_sync,
                next_reseed,
                next_resolve,
            } => {
                let sync_due = now >= *next_sync;
                if sync_due {
                    *next_sync = now + self.settings.sync_interval;
                }
                let mut resolve = false;
                if now >= *next_reseed {
                    *next_reseed = now + self.settings.reseed_interval;
                    resolve |= self.cluster.is_alone();
                }
                if now >= *next_resolve {
                    *next_resolve = now + self.settings.resolve_interval;
                    resolve = true;
                }
                if sync_due {
                    self.periodic_sync(now);
                }
                if resolve {
                    self.request_resolve();
                }
            }
            State::Leaving { close_at } => {
                if now >= *close_at {
                    self.state = State::Closed;
                    self.actions.push_back(Action::Close);
                }
            }
            State::Closed => {}
        }
        self.after(now, pools);
        // After the periodic report, if one was due: it carries the change
        // and clears the early one, so the two never go out at once.
        if self.publish_early(now, pools) {
            self.after(now, pools);
        }
    }

    /// An operator drains (`draining`) or undrains backend `key` on this
    /// node, at wall-clock time `wall_ms` (the shell's clock; the mark's
    /// version is at least that, see
    /// [`crate::cluster::report::DrainMark`]): from now on no node of the
    /// fleet opens a new connection to it; established ones finish. It is
    /// fleet state: published at once and carried in every report and
    /// sync, so nodes that join later or were cut off learn it.
    pub fn handle_drain(
        &mut self,
        now: Instant,
        wall_ms: u64,
        key: BackendKey,
        draining: bool,
        pools: &mut dyn Pools,
    ) -> Result<DrainMark, UnknownBackend> {
        if !self.keys.iter().any(|l| l.contains(&key)) {
            return Err(UnknownBackend(key));
        }
        let mark = self.cluster.set_drain(key, draining, wall_ms);
        if self.publishing() {
            self.publish(now, pools, true);
        }
        self.after(now, pools);
        Ok(mark)
    }

    /// A live reload changed the listeners or their backends (decision
    /// 57): `keys` as for [`Node::new`], for the pools as they are now
    /// (`keys[l][b]` for every slot `b` of pool `l`, gone ones included,
    /// [`Pool::slots`]; listeners in the order [`Pools::each`] gives them
    /// from now on). Which backends this node checks is decided anew and
    /// the report is published at once, so peers learn of added backends
    /// within a hop and stop hearing of removed ones once they are gone.
    pub fn handle_reload(
        &mut self,
        now: Instant,
        keys: Vec<Vec<BackendKey>>,
        pools: &mut dyn Pools,
    ) {
        self.keys = keys;
        // Forces the checkers' assignment and the view into every pool.
        self.pushed = None;
        self.push_view(now, pools);
        if self.publishing() {
            self.publish(now, pools, true);
        }
        self.after(now, pools);
    }

    /// Tells the fleet this node leaves (the shell stops accepting): peers
    /// drop its counts at once. From here on the node neither publishes
    /// nor syncs; [`Action::Close`] follows after the linger.
    pub fn handle_leave(&mut self, now: Instant, pools: &mut dyn Pools) {
        if matches!(self.state, State::Warming { .. } | State::Serving { .. }) {
            self.cluster.leave(now);
            self.state = State::Leaving {
                close_at: now + self.settings.leave_linger,
            };
            self.push_event(NodeEvent::Leaving);
        }
        self.after(now, pools);
    }

    // ----- outputs -----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.cluster.poll_transmit()
    }

    /// The next thing the shell must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event to log or count.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// The fleet's DNS answer ([`Node::client_answer`]) when it may have
    /// changed since the last poll (members, the addresses they advertise,
    /// or this node's phase); `None` otherwise, so a shell can poll after
    /// every input for O(1). The first poll always gives one.
    pub fn poll_client_answer(&mut self) -> Option<ClientAnswer> {
        let key = (self.cluster.clients_generation(), self.phase());
        if self.answered == Some(key) {
            return None;
        }
        self.answered = Some(key);
        Some(self.client_answer())
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.cluster.poll_timeout();
        match self.state {
            State::Warming { deadline, .. } => t = t.min(deadline),
            State::Serving {
                next_sync,
                next_reseed,
                next_resolve,
            } => t = t.min(next_sync).min(next_reseed).min(next_resolve),
            State::Leaving { close_at } => t = t.min(close_at),
            State::Closed => {}
        }
        if let Some(early) = self.early_at() {
            t = t.min(early);
        }
        self.syncs.values().fold(t, |t, s| t.min(s.deadline))
    }

    // ----- decisions -----

    fn publishing(&self) -> bool {
        matches!(self.state, State::Warming { .. } | State::Serving { .. })
    }

    fn request_resolve(&mut self) {
        if !self.resolving {
            self.resolving = true;
            self.stats.resolves += 1;
            self.actions.push_back(Action::Resolve);
        }
    }

    /// Ends the warm start: the listeners may accept.
    fn serve(&mut self, now: Instant, outcome: WarmStart) {
        self.state = State::Serving {
            next_sync: now + self.settings.sync_interval,
            // At once: a node that found nobody re-resolves right away.
            next_reseed: now,
            next_resolve: now + self.settings.resolve_interval,
        };
        self.push_event(NodeEvent::WarmStart(outcome));
        self.actions.push_back(Action::Accept);
    }

    /// Pulls from the next seed of the warm start (several may be asked
    /// at once, up to [`SYNCS_IN_FLIGHT_MAX`]), or ends it once every seed
    /// was asked and none answered.
    fn warm_next(&mut self, now: Instant) {
        loop {
            let State::Warming {
                deadline,
                pending,
                tried,
                asked,
                ..
            } = &mut self.state
            else {
                return;
            };
            if now >= *deadline {
                self.serve(now, WarmStart::TimedOut);
                return;
            }
            if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX {
                return;
            }
            let Some(seed) = pending.pop_front() else {
                let tried = *tried;
                if !self.syncs.values().any(|s| s.kind == SyncKind::Warm) {
                    self.serve(now, WarmStart::NoAnswer { tried });
                }
                return;
            };
            if !asked.insert(seed) {
                continue;
            }
            *tried += 1;
            if self.start_sync(now, seed, SyncKind::Warm) {
                return;
            }
        }
    }

    /// A member came up while this node warms: it holds the fleet's state
    /// and a connection to it exists now, so pull from it at once instead
    /// of waiting for a seed that is slow or not up yet.
    fn warm_from_member(&mut self, now: Instant, addr: SocketAddr) {
        let State::Warming {
            resolved: true,
            tried,
            asked,
            ..
        } = &mut self.state
        else {
            return;
        };
        if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX || !asked.insert(addr) {
            return;
        }
        *tried += 1;
        self.start_sync(now, addr, SyncKind::Warm);
    }

    fn periodic_sync(&mut self, now: Instant) {
        let n = self.cluster.members().count();
        if n == 0 {
            return;
        }
        let pick = self.rng.random_range(0..n);
        let Some(peer) = self.cluster.members().nth(pick).map(|m| m.addr) else {
            return;
        };
        if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX {
            self.stats.syncs_skipped += 1;
            return;
        }
        self.start_sync(now, peer, SyncKind::Periodic);
    }

    /// Asks the shell for a sync with `peer`; false if none was started.
    fn start_sync(&mut self, now: Instant, peer: SocketAddr, kind: SyncKind) -> bool {
        if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX {
            return false;
        }
        let data = match self.cluster.sync_message() {
            Ok(d) => d,
            Err(e) => {
                self.push_event(NodeEvent::SyncFailed {
                    peer,
                    kind,
                    cause: SyncFailure::Refused(Arc::new(ClusterError::Wire(e))),
                });
                return false;
            }
        };
        let mut deadline = now + self.settings.sync_timeout;
        if let State::Warming { deadline: warm, .. } = self.state {
            deadline = deadline.min(warm);
        }
        let id = self.next_sync_id;
        self.next_sync_id += 1;
        self.syncs.insert(
            id,
            InFlight {
                peer,
                kind,
                deadline,
            },
        );
        self.actions.push_back(Action::Sync(SyncRequest {
            id,
            to: peer,
            data,
            deadline,
        }));
        true
    }

    fn sync_failed(&mut self, now: Instant, sync: InFlight, cause: SyncFailure) {
        self.stats.syncs_failed += 1;
        self.push_event(NodeEvent::SyncFailed {
            peer: sync.peer,
            kind: sync.kind,
            cause,
        });
        if sync.kind == SyncKind::Warm {
            self.warm_next(now);
        }
    }

    /// This node's report, read from the pools, to the cluster.
    fn publish(&mut self, now: Instant, pools: &mut dyn Pools, urgent: bool) {
        // Every publication carries the counts as they are now.
        self.early_pending = false;
        self.published_at = Some(now);
        if !urgent {
            self.early_used = 0;
        }
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        // Clients are sent here only once the warm start is over.
        let clients: &[std::net::IpAddr] = match self.state {
            State::Serving { .. } => &self.settings.client_addrs,
            _ => &[],
        };
        self.cluster.set_clients(clients);
        let keys = &self.keys;
        pools.each(&mut |l, pool| {
            for id in pool.ids() {
                let claim = pool.handle_report(id, !urgent);
                entries.push(ReportEntry {
                    claim,
                    opened: pool.opened(id),
                    ..ReportEntry::new(keys[l][id.0], pool.is_up(id), pool.active(id))
                        .with_checker(pool.is_voting(id))
                });
            }
        });
        self.cluster.publish_report(now, &entries, urgent);
        self.entries = entries;
    }

    /// What every input ends with: the cluster's events turned into the
    /// node's (publishing when a report is due), then the view into the
    /// pools if it changed.
    fn after(&mut self, now: Instant, pools: &mut dyn Pools) {
        for _ in 0..PUBLISH_ROUNDS_MAX {
            let mut due = false;
            while let Some(event) = self.cluster.poll_event() {
                let event = match event {
                    ClusterEvent::ReportDue => {
                        due = true;
                        continue;
                    }
                    ClusterEvent::MemberUp(id) => {
                        self.warm_from_member(now, id.addr);
                        NodeEvent::MemberUp(id)
                    }
                    ClusterEvent::MemberDown(id) => NodeEvent::MemberDown(id),
                    ClusterEvent::Renamed { from, to } => NodeEvent::Renamed { from, to },
                    ClusterEvent::Rejoined(id) => NodeEvent::Rejoined(id),
                    ClusterEvent::Idle => NodeEvent::Idle,
                    ClusterEvent::Active => NodeEvent::Active,
                    // After the leave, peers telling this node it is down is
                    // the leave working, not a fault.
                    ClusterEvent::Defunct if !self.publishing() => continue,
                    ClusterEvent::Defunct => {
                        self.stats.defunct += 1;
                        NodeEvent::Defunct
                    }
                    ClusterEvent::Error(fault) => NodeEvent::Fault(fault),
                    ClusterEvent::DuplicateName { kept, refused } => {
                        NodeEvent::DuplicateName { kept, refused }
                    }
                    ClusterEvent::NameTaken { by } => NodeEvent::NameTaken { by },
                };
                self.push_event(event);
            }
            if !(due && self.publishing()) {
                break;
            }
            self.publish(now, pools, false);
        }
        if self.push_view(now, pools) && self.publishing() {
            // A peer raised a budget claim: say at once that this node has
            // seen it, so the fleet's next round of raises is not held
            // back by this node (decision 48).
            self.publish(now, pools, true);
        }
    }

    /// The largest fleet seen within [`Settings::budget_hold`], this node
    /// included: it rises at once and falls to the live count only after
    /// the hold, so a node cut off from the rest keeps to its fair part of
    /// each budget for that long.
    fn fleet_high(&mut self, now: Instant) -> u32 {
        let live = self.cluster.live_nodes().max(1);
        let (high, until) = &mut self.fleet_high;
        if live >= *high || now >= *until {
            *high = live;
            *until = now + self.settings.budget_hold;
        }
        *high
    }

    /// Writes the fleet's load, size, drains, budget claims and this
    /// node's checker assignments into the pools when they changed; true
    /// if a budget has seen a raise clock this node has not published.
    fn push_view(&mut self, now: Instant, pools: &mut dyn Pools) -> bool {
        let high = self.fleet_high(now);
        let current = (
            self.cluster.view_generation(),
            self.cluster.live_nodes(),
            self.cluster.membership_generation(),
            high,
        );
        if self.pushed == Some(current) {
            return false;
        }
        let members_changed = self.pushed.is_none_or(|p| p.2 != current.2);
        self.pushed = Some(current);
        if members_changed {
            self.assign_checkers(pools);
        }
        let keys = &self.keys;
        let assigned = &self.assigned;
        let cluster = &self.cluster;
        let me = cluster.identity().addr;
        // Budgets split over the peers this node hears: those with a fresh
        // report (decision 48).
        let live = current.1.max(1);
        let rank = cluster.view().origins().filter(|a| *a < me).count() as u32;
        let mut ack = false;
        pools.each(&mut |l, pool| {
            pool.set_live_nodes(current.1);
            for id in pool.ids() {
                let key = keys[l][id.0];
                let remote = cluster.remote(key);
                if let Some(limit) = pool.budget(id).map(|b| b.limit()) {
                    // A member SWIM holds alive but whose report is not
                    // fresh (lost, or it cannot reach us) is taken to hold
                    // its fair part: its claim is unknown, not zero.
                    let heard = remote.reporters + 1;
                    let silent = live.saturating_sub(heard);
                    let fleet_nodes = high.max(heard);
                    let fair = u64::from(limit) / u64::from(fleet_nodes);
                    let (clock_min, clock_max) = cluster.view().claim_clocks(key);
                    pool.set_budget_view(
                        id,
                        BudgetView {
                            peer_claims: cluster.view().claims(key) + u64::from(silent) * fair,
                            live_nodes: heard,
                            fleet_nodes,
                            rank,
                            clock_min,
                            clock_max,
                        },
                    );
                }
                pool.set_fleet(
                    id,
                    remote,
                    cluster.drain_mark(key).is_some_and(|m| m.draining),
                    assigned[l][id.0],
                );
            }
            ack |= pool.needs_budget_ack();
        });
        ack
    }

    /// Which backends this node checks, from the live membership
    /// ([`crate::checkers`]): O(backends × members), on membership
    /// changes only.
    fn assign_checkers(&mut self, pools: &mut dyn Pools) {
        let me = self.identity().addr;
        let me = (me, checkers::node_hash(me));
        let others: Vec<(SocketAddr, u64)> = self
            .cluster
            .members()
            .map(|m| (m.addr, checkers::node_hash(m.addr)))
            .collect();
        let keys = &self.keys;
        let assigned = &mut self.assigned;
        let configured = &mut self.checkers_configured;
        assigned.resize_with(keys.len(), Vec::new);
        configured.resize(keys.len(), 0);
        pools.each(&mut |l, pool| {
            configured[l] = pool.health_config().checkers;
            let k = checkers::configured(configured[l]);
            assigned[l] = keys[l]
                .iter()
                .map(|&key| checkers::is_checker(key, me, &others, k))
                .collect();
        });
    }

    /// The nodes that should check `key` by this node's view of the live
    /// membership, first in hash order (for `/status`); `k` as configured
    /// for its listener.
    pub fn checkers_of(&self, key: BackendKey, k: u32) -> Vec<SocketAddr> {
        let nodes: Vec<(SocketAddr, u64)> = std::iter::once(self.identity().addr)
            .chain(self.cluster.members().map(|m| m.addr))
            .map(|a| (a, checkers::node_hash(a)))
            .collect();
        checkers::checkers_of(key, &nodes, checkers::configured(k))
    }

    fn push_event(&mut self, event: NodeEvent) {
        if self.events.len() >= NODE_EVENTS_QUEUED_MAX {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}
