//! A listener's backend pool: who is up, how many connections each backend
//! holds, when each backend is due for a health check, and which backend the
//! next client gets.
//!
//! # Driving a [`Pool`]
//! The pool does no I/O. Its driver (the tokio runtime or the simulator)
//! calls, in any order, as things happen:
//! - [`Pool::acquire`] when a client arrives; it chooses a backend and counts
//!   the connection at once (a connection being set up counts, as in
//!   HAProxy), so concurrent arrivals see each other;
//! - [`Pool::release`] exactly once per successful `acquire`, when that
//!   connection ends for any reason (the runtime ties it to an RAII guard);
//! - [`Pool::handle_connect_failure`] when a connection to a backend
//!   failed (passive health);
//! - [`Pool::handle_check_result`] when an active check finishes, or
//!   [`Pool::handle_check_inconclusive`] when it could not be made for a
//!   reason of the node's own (out of file descriptors, say).
//!
//! and after any of those, and whenever the deadline it returned passes:
//! 1. [`Pool::poll_check`] until it returns `None`, starting one active check
//!    (a TCP connect bounded by [`HealthConfig::timeout`]) per backend returned;
//! 2. [`Pool::poll_event`] until it returns `None`, to report health flips;
//! 3. [`Pool::poll_timeout`] for the next instant it must be woken.
//!
//! A live reload changes a pool in place ([`Pool::add_backend`],
//! [`Pool::remove_backend`], [`Pool::set_policy`],
//! [`Pool::set_health_config`], [`Pool::set_limits`]; decision 57). A
//! removed backend is drained: it takes no new connection and is not
//! checked, its open connections finish, and once the last one is
//! released it is gone ([`Pool::ids`] skips it). A backend's id never
//! changes while it has a connection: a later [`Pool::add_backend`] may
//! reuse the slot of a gone one only.
//!
//! In a fleet, the driver (the [`crate::node::Node`]) also calls
//! [`Pool::set_live_nodes`], then [`Pool::set_fleet`] for every backend,
//! whenever its view of the peers changes.
//!
//! # Who checks
//! In a fleet only `k` nodes ([`HealthConfig::checkers`]) check each
//! backend actively; the node says which backends this node is assigned
//! ([`crate::checkers`]). The pool also checks a backend it is not
//! assigned (decision 49):
//! - while no peer's vote on it is in the view (nobody this node hears
//!   checks it: a fleet forming, a partition);
//! - after it stopped being assigned, until the votes of `k` other nodes
//!   are in the view (the hand-over: the new checkers have a verdict);
//! - while failed client connects hold it down here and the checkers do
//!   not (a fault on this node's own path, or one they have not seen
//!   yet); once the checkers' majority holds it down too, their verdict
//!   takes over ([`Health::hand_over`]), and their "up" brings it back.
//!   These checks are for this node's sake and are no vote: with votes,
//!   every node that saw failed connects would outvote the checkers, hand
//!   over once the fleet held the backend down, withdraw its vote, and
//!   so lift the fleet's verdict again (the simulator's 100 nodes flapped
//!   a dead backend this way).
//!
//! Each backend's report entry says whether its verdict is a vote: this
//! node checks it and has finished a check since it began to
//! ([`Pool::is_voting`]).
//!
//! # Who is a candidate
//! A backend takes a new connection when it is up by this node's own
//! verdict (its checks and failed client connects), below
//! `max_connections` here, not already tried for this client, and not
//! down by the fleet: more than half of the votes, counting this node's
//! own, and never fewer than the `k` checkers the fleet should have, say
//! down (with every node checking, `k` is the live node count, decision
//! 17). Until this node's own checks or the checkers' majority have
//! proven the backend (just after start), a majority of the votes held is
//! enough, so a new node benefits from the fleet's checks at once.
//! A backend with a fleet-wide budget must also be below this node's share
//! of it ([`crate::budget`]); a backend over it is skipped like a full
//! one, so the client gets another backend that has room. The driver
//! (the [`crate::node::Node`]) writes the fleet's side of each budget with
//! [`Pool::set_budget_view`] and reads the claims it reports with
//! [`Pool::handle_report`].

use crate::budget::{Budget, BudgetView, Claim};
use crate::checkers;
use crate::cluster::view::RemoteLoad;
use crate::health::{Health, HealthConfig};
use crate::policy::{self, Candidate, Policy, RoundRobin};
use crate::time::Instant;
use rand::{Rng, RngExt};
use std::collections::VecDeque;
use std::fmt;

fn interval_ns(h: &HealthConfig) -> u64 {
    u64::try_from(h.interval.as_nanos()).unwrap_or(u64::MAX)
}

/// Pools larger than this choose by sampling instead of scanning (see
/// [`Pool::acquire`]); below it a scan is as cheap.
pub const SAMPLED_POOL_MIN: usize = 8;

/// `least-conn` scans pools up to this size for the best score, and
/// samples two candidates in larger ones (decision 58): a scan of 64 is a
/// few hundred nanoseconds.
pub const SCAN_POOL_MAX: usize = 64;

/// Random draws the sampled choice makes before it falls back to a scan.
pub const SAMPLE_DRAWS_MAX: usize = 8;

/// A backend's position in its pool (its configuration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub usize);

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the pool needs to know of a configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The name used in logs and metrics: the configured address.
    pub name: String,
    /// This node's limit of concurrent connections to the backend.
    pub max_connections: Option<u32>,
    /// The fleet's limit of concurrent connections to the backend (a
    /// budget shared by every node, see [`crate::budget`]).
    pub fleet_max_connections: Option<u32>,
    /// Its share of the pool's connections relative to the others (at
    /// least 1): least-conn compares load per unit of weight, round-robin
    /// takes it `weight` times a cycle. Configuration, the same on every
    /// node, so no report carries it.
    pub weight: u32,
}

impl BackendSpec {
    /// A backend named `name` with weight 1 and no limits.
    pub fn new(name: impl Into<String>) -> Self {
        BackendSpec {
            name: name.into(),
            max_connections: None,
            fleet_max_connections: None,
            weight: 1,
        }
    }
}

/// What [`Pool::reconcile`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Backends new to the pool (in a new slot or a gone one's).
    pub added: Vec<BackendId>,
    /// Backends no longer wanted that still hold connections: drained.
    pub draining: Vec<BackendId>,
    /// Backends no longer wanted that held none: gone at once.
    pub gone: Vec<BackendId>,
}

/// Why a health state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCause {
    /// An active check.
    Check,
    /// A client connection's connect attempt.
    Traffic,
}

/// Something the driver should report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A backend went up or down.
    HealthChanged {
        backend: BackendId,
        up: bool,
        cause: HealthCause,
    },
}

/// No backend could take a connection; the counts say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no backend available ({down} down, {fleet_down} down by the fleet, {draining} draining, {full} at max_connections, {over_budget} at this node's share of fleet_max_connections, {tried} already tried for this client)"
)]
pub struct NoBackend {
    pub down: usize,
    pub fleet_down: usize,
    /// Drained by an operator (fleet-wide): takes no new connection.
    pub draining: usize,
    pub full: usize,
    /// At this node's share of the fleet-wide budget.
    pub over_budget: usize,
    /// Of those, the ones that would admit the client once every peer has
    /// seen this node's last raise ([`Budget::waits_for_round`]).
    pub round: usize,
    pub tried: usize,
}

impl NoBackend {
    /// Whether the fleet-wide budget was what refused the client: some
    /// backend that was up had room here but not in the budget.
    pub fn is_budget(&self) -> bool {
        self.over_budget > 0
    }

    /// Whether the client may be held for the fleet's next round of budget
    /// raises: only budgets kept it out, and one of them would admit it
    /// then. The driver waits for a newer view (at most
    /// [`crate::budget::ROUND_WAIT_MAX`]) and asks again; if it gives up,
    /// it calls [`Pool::refuse_for_budget`].
    pub fn waits_for_round(&self) -> bool {
        self.round > 0
    }
}

#[derive(Debug, Clone)]
struct Backend {
    spec: BackendSpec,
    health: Health,
    active: u32,
    next_check: Instant,
    checking: bool,
    remote: RemoteLoad,
    draining: bool,
    budget: Option<Budget>,
    /// Whether the node assigned this node to check it.
    assigned: bool,
    /// Whether this node checks it as one of the fleet's checkers:
    /// assigned, covering for missing ones, or handing over (see the
    /// module doc). Only then is its verdict a vote.
    checker: bool,
    /// Whether this node checks it for its own sake: failed client
    /// connects hold it down here and the checkers do not. No vote: a
    /// local signal, which the checkers' verdict must not count.
    suspect: bool,
    /// Whether an observation came in since `checker` last became true.
    voted: bool,
    /// Removed by a reload: no new connection, no checks; its open
    /// connections finish.
    removed: bool,
    /// Removed and without connections: not a backend any more; its slot
    /// may be reused by [`Pool::add_backend`].
    gone: bool,
    /// Connections opened since the last periodic report, and in the
    /// report interval before (what the reports carry).
    opened_now: u32,
    opened_last: u32,
}

impl Backend {
    /// Whether it may take a new connection (tried-for-this-client aside).
    fn takes(&self, checkers: u32) -> bool {
        self.health.is_up()
            && !self.draining
            && !self.removed
            && !self.fleet_down(checkers)
            && !self.full()
            && !self.over_budget()
    }

    fn full(&self) -> bool {
        self.spec
            .max_connections
            .is_some_and(|max| self.active >= max)
    }

    fn over_budget(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| !b.admits(self.active))
    }

    /// Counts a new connection; true if it raised the budget claim.
    fn open(&mut self) -> bool {
        let raised = self
            .budget
            .as_mut()
            .is_some_and(|b| b.handle_open(self.active));
        self.active += 1;
        self.opened_now = self.opened_now.saturating_add(1);
        raised
    }

    /// Whether its verdict is a vote.
    fn voting(&self) -> bool {
        self.checker && self.voted
    }

    /// `checkers`: how many nodes should check it ([`checkers::effective`]).
    fn fleet_down(&self, checkers: u32) -> bool {
        let r = self.remote;
        // Our own down vote excludes it anyway; our up vote counts.
        let votes = r.voters + u32::from(self.voting() && self.health.is_up());
        if self.health.is_proven() {
            r.down_votes * 2 > votes.max(checkers)
        } else {
            r.down_votes * 2 > votes
        }
    }

    /// Re-decides whether this node checks it (see the module doc).
    fn update_checker(&mut self, checkers: u32) {
        let others = self.remote.voters;
        let fleet_down = self.fleet_down(checkers);
        // Only a verdict of failed client connects is handed over: one of a
        // checker's (covering or handing over) is its vote.
        if !self.assigned && !self.checker && !self.health.is_up() && fleet_down {
            self.health.hand_over();
        }
        if others > 0 && self.remote.down_votes * 2 < others {
            self.health.prove();
        }
        let checker = self.assigned || others == 0 || (self.checker && others < checkers);
        if !checker {
            self.voted = false;
        } else if !self.checker && self.health.is_up() {
            // A new checker's "up" is the fleet's (or handed over), not its
            // own: unproven, its first check decides, so it cannot vote a
            // dead backend up for `fall` intervals.
            self.health = Health::new();
        }
        self.checker = checker;
        self.suspect = !checker && !self.health.is_up();
    }

    /// Whether this node probes it.
    fn probes(&self) -> bool {
        !self.removed && (self.checker || self.suspect)
    }

    /// A new backend at `now`, up but unproven, first checked at a random
    /// point of the first interval.
    fn new<R: Rng + ?Sized>(
        spec: BackendSpec,
        interval_ns: u64,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        Backend {
            health: Health::new(),
            active: 0,
            next_check: Instant::from_nanos(
                now.as_nanos() + rng.random_range(0..interval_ns.max(1)),
            ),
            checking: false,
            remote: RemoteLoad::default(),
            draining: false,
            budget: spec.fleet_max_connections.map(Budget::new),
            spec,
            assigned: true,
            checker: true,
            suspect: false,
            voted: false,
            removed: false,
            gone: false,
            opened_now: 0,
            opened_last: 0,
        }
    }
}

/// A listener's backends. See the module doc for the call order.
#[derive(Debug, Clone)]
pub struct Pool {
    policy: Policy,
    health_config: HealthConfig,
    backends: Vec<Backend>,
    rr_cursor: RoundRobin,
    events: VecDeque<PoolEvent>,
    candidates: Vec<Candidate>,
    live_nodes: u32,
    /// A budget claim was raised since the node last read the claims.
    raised: bool,
    /// `least-conn`'s fleet size, cached until an input changes it (see
    /// [`Pool::share_nodes`]).
    share_nodes: Option<u32>,
    /// A count changed since the node last reported, and
    /// [`Pool::take_report_wake`] said so already.
    woken: bool,
    /// A count changed since the node last reported.
    unreported: bool,
}

impl Pool {
    /// A pool whose backends all start up but unproven (see
    /// [`crate::health`]). First checks are spread at random over one
    /// interval so that many backends are not probed in one burst.
    ///
    /// # Panics
    /// If `health_config` does not validate (configuration loading checks
    /// it first, so this is a programmer error).
    pub fn new<R: Rng + ?Sized>(
        policy: Policy,
        health_config: HealthConfig,
        specs: Vec<BackendSpec>,
        now: Instant,
        rng: &mut R,
    ) -> Self {
        assert!(
            health_config.validate().is_ok(),
            "invalid health config {health_config:?}"
        );
        let interval_ns = interval_ns(&health_config);
        let backends = specs
            .into_iter()
            .map(|spec| Backend::new(spec, interval_ns, now, rng))
            .collect::<Vec<_>>();
        Pool {
            policy,
            health_config,
            candidates: Vec::with_capacity(backends.len()),
            backends,
            rr_cursor: RoundRobin::default(),
            events: VecDeque::new(),
            live_nodes: 1,
            raised: false,
            share_nodes: None,
            woken: false,
            unreported: false,
        }
    }

    // ----- getters -----

    /// The pool's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The health check parameters.
    pub fn health_config(&self) -> &HealthConfig {
        &self.health_config
    }

    /// Number of backends (removed ones included until they are gone).
    pub fn len(&self) -> usize {
        self.backends.iter().filter(|b| !b.gone).count()
    }

    /// Whether the pool has no backends.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every backend id, in configuration order (slots of added backends
    /// after), removed ones included until their last connection ends.
    pub fn ids(&self) -> impl Iterator<Item = BackendId> + use<> {
        let gone = self.backends.iter().filter(|b| b.gone).count();
        let ids: Vec<BackendId> = if gone == 0 {
            (0..self.backends.len()).map(BackendId).collect()
        } else {
            self.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.gone)
                .map(|(i, _)| BackendId(i))
                .collect()
        };
        ids.into_iter()
    }

    /// Slots, gone backends' included: every [`BackendId`] is below it.
    pub fn slots(&self) -> usize {
        self.backends.len()
    }

    /// Whether a reload removed `id` (it drains until its connections end).
    pub fn is_removed(&self, id: BackendId) -> bool {
        self.backends[id.0].removed
    }

    /// Whether `id` was removed and its last connection has ended.
    pub fn is_gone(&self, id: BackendId) -> bool {
        self.backends[id.0].gone
    }

    /// The backend named `name` (its configured address), unless gone.
    pub fn find(&self, name: &str) -> Option<BackendId> {
        self.backends
            .iter()
            .position(|b| !b.gone && b.spec.name == name)
            .map(BackendId)
    }

    /// The backend's configured spec.
    pub fn spec(&self, id: BackendId) -> &BackendSpec {
        &self.backends[id.0].spec
    }

    /// Whether an operator drained `id` ([`Pool::set_draining`]).
    pub fn is_draining(&self, id: BackendId) -> bool {
        self.backends[id.0].draining
    }

    /// Whether this node's own checks hold `id` up.
    pub fn is_up(&self, id: BackendId) -> bool {
        self.backends[id.0].health.is_up()
    }

    /// This node's exact count of connections to the backend.
    pub fn active(&self, id: BackendId) -> u32 {
        self.backends[id.0].active
    }

    /// The peers' reported load on the backend.
    pub fn remote(&self, id: BackendId) -> RemoteLoad {
        self.backends[id.0].remote
    }

    /// The fleet-wide estimate: this node's exact count plus the peers'.
    pub fn cluster_active(&self, id: BackendId) -> u64 {
        let b = &self.backends[id.0];
        u64::from(b.active) + u64::from(b.remote.active)
    }

    /// Whether a majority of the fleet's checkers report the backend down
    /// (see the module doc).
    pub fn is_fleet_down(&self, id: BackendId) -> bool {
        self.backends[id.0].fleet_down(self.checkers())
    }

    /// Whether the backend may take new connections as far as health goes:
    /// up by this node's verdict and not down by the fleet.
    pub fn is_available(&self, id: BackendId) -> bool {
        self.is_up(id) && !self.is_fleet_down(id)
    }

    /// Whether this node actively checks the backend now, as one of its
    /// checkers or for its own sake (see the module doc).
    pub fn is_checking(&self, id: BackendId) -> bool {
        self.backends[id.0].probes()
    }

    /// Whether the node assigned this node to check the backend.
    pub fn is_assigned(&self, id: BackendId) -> bool {
        self.backends[id.0].assigned
    }

    /// Whether this node's verdict on the backend is a checker's vote: it
    /// checks it and a check has finished since it began to.
    pub fn is_voting(&self, id: BackendId) -> bool {
        self.backends[id.0].voting()
    }

    /// How many nodes should check each backend: `health.checkers`, or
    /// every live node if fewer.
    pub fn checkers(&self) -> u32 {
        checkers::effective(self.health_config.checkers, self.live_nodes)
    }

    /// Whether this node's checks have passed for the backend at least once.
    pub fn is_proven(&self, id: BackendId) -> bool {
        self.backends[id.0].health.is_proven()
    }

    /// Live nodes in the fleet, this one included.
    pub fn live_nodes(&self) -> u32 {
        self.live_nodes
    }

    /// The backend's fleet-wide budget on this node, if it has one.
    pub fn budget(&self, id: BackendId) -> Option<&Budget> {
        self.backends[id.0].budget.as_ref()
    }

    // ----- inputs -----

    /// Chooses a backend for a new client and counts the connection.
    /// `tried` lists backends this client already failed to reach; they are
    /// not chosen again.
    ///
    /// For the power-of-two and random policies with more than
    /// [`SAMPLED_POOL_MIN`] backends this is O(1): backends are drawn at
    /// random until two (one for `random`) that may take the connection
    /// turn up, which picks uniformly among the candidates like a scan
    /// would; only when candidates are scarce (no pair within
    /// [`SAMPLE_DRAWS_MAX`] draws) does it fall back to the scan.
    pub fn acquire<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        tried: &[BackendId],
    ) -> Result<BackendId, NoBackend> {
        let policy = self.policy;
        let nodes = self.share_nodes();
        let sampled_min = match policy {
            Policy::LeastConn => SCAN_POOL_MAX,
            _ => SAMPLED_POOL_MIN,
        };
        if self.backends.len() > sampled_min
            && let Some(index) = self.sample(rng, tried)
        {
            self.raised |= self.backends[index].open();
            self.unreported = true;
            if self.backends.len() <= SCAN_POOL_MAX {
                // Large pools refresh it at the next report or view instead.
                self.share_nodes = None;
            }
            return Ok(BackendId(index));
        }
        self.acquire_with(tried, |candidates, rr_cursor| {
            policy::choose(policy, candidates, rr_cursor, nodes, rng)
        })
    }

    /// The O(1) choice of [`Pool::acquire`], or `None` to scan instead.
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R, tried: &[BackendId]) -> Option<usize> {
        let needed = match self.policy {
            Policy::LeastConn | Policy::LocalLeastConn => 2,
            Policy::Random => 1,
            Policy::RoundRobin | Policy::FirstAvailable => return None,
        };
        let n = self.backends.len();
        let checkers = self.checkers();
        let mut first: Option<usize> = None;
        for _ in 0..SAMPLE_DRAWS_MAX {
            let i = rng.random_range(0..n);
            if first == Some(i)
                || tried.contains(&BackendId(i))
                || !self.backends[i].takes(checkers)
            {
                continue;
            }
            let Some(a) = first else {
                if needed == 1 {
                    return Some(i);
                }
                first = Some(i);
                continue;
            };
            let candidate = |index: usize| {
                let b = &self.backends[index];
                let remote = if self.policy == Policy::LeastConn {
                    u64::from(b.remote.active)
                } else {
                    0
                };
                Candidate {
                    index,
                    load: u64::from(b.active) + remote,
                    own: u64::from(b.active),
                    weight: b.spec.weight,
                }
            };
            let (a, b) = (candidate(a), candidate(i));
            return Some(if self.policy == Policy::LeastConn {
                policy::own_first(&[a, b], self.share_nodes.unwrap_or(self.live_nodes), rng).index
            } else {
                policy::lesser(a, b, rng).index
            });
        }
        None
    }

    /// [`Pool::acquire`] with the choice among the candidates made by
    /// `choose` (given the candidates, with the load the pool's policy
    /// weighs, and the round-robin cursor); it returns a candidate's
    /// `index`, or `None` to refuse. Which backends are candidates, and the
    /// counting, stay the pool's. The simulator uses this to compare the
    /// policies with reference choosers (global argmin, an oracle).
    ///
    /// # Panics
    /// If `choose` returns an index that is not a candidate's.
    pub fn acquire_with<F>(
        &mut self,
        tried: &[BackendId],
        choose: F,
    ) -> Result<BackendId, NoBackend>
    where
        F: FnOnce(&[Candidate], &mut RoundRobin) -> Option<usize>,
    {
        let mut why = NoBackend {
            down: 0,
            fleet_down: 0,
            draining: 0,
            full: 0,
            over_budget: 0,
            round: 0,
            tried: 0,
        };
        let fleet = self.policy != Policy::LocalLeastConn;
        let checkers = self.checkers();
        self.candidates.clear();
        for (index, b) in self.backends.iter().enumerate() {
            if b.gone {
                continue;
            } else if tried.contains(&BackendId(index)) {
                why.tried += 1;
            } else if b.removed {
                // Removed by a reload: drained until its connections end.
                why.draining += 1;
            } else if !b.health.is_up() {
                why.down += 1;
            } else if b.draining {
                why.draining += 1;
            } else if b.fleet_down(checkers) {
                why.fleet_down += 1;
            } else if b.full() {
                why.full += 1;
            } else if b.over_budget() {
                why.over_budget += 1;
                if b.budget
                    .as_ref()
                    .is_some_and(|x| x.waits_for_round(b.active))
                {
                    why.round += 1;
                }
            } else {
                let remote = if fleet { u64::from(b.remote.active) } else { 0 };
                self.candidates.push(Candidate {
                    index,
                    load: u64::from(b.active) + remote,
                    own: u64::from(b.active),
                    weight: b.spec.weight,
                });
            }
        }
        let Some(index) = choose(&self.candidates, &mut self.rr_cursor) else {
            if self.candidates.is_empty() && why.over_budget > 0 && !why.waits_for_round() {
                self.refuse_for_budget(tried);
            }
            return Err(why);
        };
        assert!(
            self.candidates.iter().any(|c| c.index == index),
            "chooser returned {index}, not a candidate"
        );
        self.raised |= self.backends[index].open();
        self.unreported = true;
        if self.backends.len() <= SCAN_POOL_MAX {
            // Large pools refresh it at the next report or view instead.
            self.share_nodes = None;
        }
        Ok(BackendId(index))
    }

    /// Ends the count of one connection returned by [`Pool::acquire`].
    /// Returns `false`, and leaves the count at zero, if the backend had no
    /// connection to release: a bookkeeping bug in the driver, which it
    /// should log.
    ///
    /// # Panics
    /// In debug builds, on that bug, so tests find it.
    #[must_use = "a false return is a driver bug worth logging"]
    pub fn release(&mut self, id: BackendId) -> bool {
        let b = &mut self.backends[id.0];
        debug_assert!(b.active > 0, "release of {id} with no active connection");
        let had = b.active > 0;
        b.active = b.active.saturating_sub(1);
        self.unreported = true;
        if b.removed && b.active == 0 {
            b.gone = true;
        }
        had
    }

    /// A reload added a backend: it starts up but unproven, like those of
    /// [`Pool::new`], first checked within one interval from `now`. Takes
    /// the slot of a gone backend whose last check has ended, if any, else
    /// a new one. An address already in the pool and not gone is a
    /// programmer error (the configuration has no duplicates, and a
    /// removed backend added back is [`Pool::restore_backend`]'s).
    pub fn add_backend<R: Rng + ?Sized>(
        &mut self,
        spec: BackendSpec,
        now: Instant,
        rng: &mut R,
    ) -> BackendId {
        self.share_nodes = None;
        assert!(
            self.find(&spec.name).is_none(),
            "backend {} is in the pool already",
            spec.name
        );
        let backend = Backend::new(spec, interval_ns(&self.health_config), now, rng);
        match self.backends.iter().position(|b| b.gone && !b.checking) {
            Some(i) => {
                self.backends[i] = backend;
                BackendId(i)
            }
            None => {
                self.backends.push(backend);
                BackendId(self.backends.len() - 1)
            }
        }
    }

    /// A reload removed `id`: it takes no new connection and is no longer
    /// checked; its open connections finish, and it is gone once the last
    /// is released (at once if it has none). Returns whether it is gone.
    pub fn remove_backend(&mut self, id: BackendId) -> bool {
        self.share_nodes = None;
        let b = &mut self.backends[id.0];
        b.removed = true;
        b.gone = b.active == 0;
        b.gone
    }

    /// A reload added back a backend that is still draining from its
    /// removal: it keeps its connections, health and id, and takes new
    /// connections again.
    pub fn restore_backend(&mut self, id: BackendId) {
        self.share_nodes = None;
        let b = &mut self.backends[id.0];
        assert!(!b.gone, "restoring gone backend {id}");
        b.removed = false;
    }

    /// Makes the pool's backends `specs` (by name; a reload, or a backend
    /// name whose addresses changed): a backend not in `specs` is removed
    /// ([`Pool::remove_backend`]: drained, gone once its connections end),
    /// one removed but still draining is restored, a new one added
    /// ([`Pool::add_backend`]), and every wanted one takes its spec's
    /// weight and limits (a changed `fleet_max_connections` starts its
    /// budget anew, as [`Pool::set_limits`]). Duplicate names in `specs`
    /// after the first are ignored.
    pub fn reconcile<R: Rng + ?Sized>(
        &mut self,
        specs: &[BackendSpec],
        now: Instant,
        rng: &mut R,
    ) -> Reconciled {
        let mut done = Reconciled::default();
        let wanted = |name: &str| specs.iter().any(|s| s.name == name);
        for id in self.ids() {
            if !self.is_removed(id) && !wanted(&self.spec(id).name) {
                if self.remove_backend(id) {
                    done.gone.push(id);
                } else {
                    done.draining.push(id);
                }
            }
        }
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                continue;
            }
            match self.find(&spec.name) {
                Some(id) => {
                    if self.is_removed(id) {
                        self.restore_backend(id);
                    }
                    let b = &mut self.backends[id.0];
                    b.spec.weight = spec.weight;
                    b.spec.max_connections = spec.max_connections;
                    if b.spec.fleet_max_connections != spec.fleet_max_connections {
                        b.spec.fleet_max_connections = spec.fleet_max_connections;
                        b.budget = spec.fleet_max_connections.map(Budget::new);
                    }
                }
                None => done.added.push(self.add_backend(spec.clone(), now, rng)),
            }
        }
        self.share_nodes = None;
        done
    }

    /// A reload changed the policy: the next choice follows it.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
        self.rr_cursor = RoundRobin::default();
    }

    /// A reload changed the health checks' parameters, from `now`: streaks
    /// and verdicts stay; a check due later than one new interval from
    /// `now` is brought forward to then.
    ///
    /// # Panics
    /// If `health_config` does not validate (as [`Pool::new`]).
    pub fn set_health_config(&mut self, health_config: HealthConfig, now: Instant) {
        assert!(
            health_config.validate().is_ok(),
            "invalid health config {health_config:?}"
        );
        let latest = now + health_config.interval;
        for b in &mut self.backends {
            b.next_check = b.next_check.min(latest);
        }
        self.health_config = health_config;
    }

    /// A reload changed the listener's limits for its backends: this
    /// node's `max_connections` applies to the next choice; a changed
    /// `fleet_max_connections` starts the backend's budget anew (its claim
    /// grows again from what it holds).
    pub fn set_limits(&mut self, max_connections: Option<u32>, fleet_max_connections: Option<u32>) {
        for b in &mut self.backends {
            b.spec.max_connections = max_connections;
            if b.spec.fleet_max_connections != fleet_max_connections {
                b.spec.fleet_max_connections = fleet_max_connections;
                b.budget = fleet_max_connections.map(Budget::new);
            }
        }
    }

    /// The peers' latest load on `id` (from the cluster's view).
    pub fn set_remote(&mut self, id: BackendId, remote: RemoteLoad) {
        self.share_nodes = None;
        self.backends[id.0].remote = remote;
        self.update_checker(id);
    }

    /// Everything the fleet says about `id` at once, so that whether this
    /// node checks it is decided once, on the whole new view: the peers'
    /// load and votes, whether it is drained, and whether the node
    /// assigned this node to check it (see the module doc). Call
    /// [`Pool::set_live_nodes`] first.
    pub fn set_fleet(&mut self, id: BackendId, remote: RemoteLoad, draining: bool, assigned: bool) {
        self.share_nodes = None;
        let b = &mut self.backends[id.0];
        b.remote = remote;
        b.draining = draining;
        b.assigned = assigned;
        self.update_checker(id);
    }

    /// Whether the node assigned this node to check `id`.
    pub fn set_assigned(&mut self, id: BackendId, assigned: bool) {
        self.backends[id.0].assigned = assigned;
        self.update_checker(id);
    }

    fn update_checker(&mut self, id: BackendId) {
        let checkers = self.checkers();
        self.backends[id.0].update_checker(checkers);
    }

    /// Whether `id` is drained (fleet state an operator set): a drained
    /// backend takes no new connection; established ones are left alone.
    pub fn set_draining(&mut self, id: BackendId, draining: bool) {
        self.backends[id.0].draining = draining;
    }

    /// Counts a client refused by the budgets alone (each backend whose
    /// budget kept it out): [`Pool::acquire`] does when the client cannot
    /// wait for a round, the driver after it waited in vain.
    pub fn refuse_for_budget(&mut self, tried: &[BackendId]) {
        for (index, b) in self.backends.iter_mut().enumerate() {
            if !tried.contains(&BackendId(index))
                && b.health.is_up()
                && !b.draining
                && !b.removed
                && !b.fleet_down(self.live_nodes)
                && !b.full()
                && let Some(budget) = b.budget.as_mut().filter(|x| !x.admits(b.active))
            {
                budget.handle_refused();
            }
        }
    }

    /// The fleet's side of `id`'s budget (ignored if it has none).
    pub fn set_budget_view(&mut self, id: BackendId, view: BudgetView) {
        if let Some(b) = &mut self.backends[id.0].budget {
            b.set_view(view);
        }
    }

    /// This node reports `id` now (`periodic`: the report of an
    /// interval): its budget claim is re-decided (see
    /// [`Budget::handle_report`]) and returned for the report; `None`
    /// without a budget.
    pub fn handle_report(&mut self, id: BackendId, periodic: bool) -> Option<Claim> {
        // The node reports every backend at once.
        self.raised = false;
        self.unreported = false;
        self.woken = false;
        let b = &mut self.backends[id.0];
        if periodic {
            b.opened_last = std::mem::take(&mut b.opened_now);
            self.share_nodes = None;
        }
        let active = b.active;
        b.budget
            .as_mut()
            .map(|budget| budget.handle_report(active, periodic))
    }

    /// True once after a connection count changed since the node last
    /// reported: the driver then calls
    /// [`crate::node::Node::handle_counts_changed`], which publishes early
    /// when it may (decision 61). Once per report, so a busy pool wakes
    /// the fleet driver at most once a publication, not once a
    /// connection. O(1).
    pub fn take_report_wake(&mut self) -> bool {
        let wake = self.unreported && !self.woken;
        self.woken |= wake;
        wake
    }

    /// Whether some budget has seen a raise clock it has not published
    /// ([`Budget::needs_ack`]): the node then publishes, so the peers
    /// waiting for it may raise again. O(backends).
    pub fn needs_budget_ack(&self) -> bool {
        self.backends
            .iter()
            .filter_map(|b| b.budget.as_ref())
            .any(Budget::needs_ack)
    }

    /// Whether a backend's budget claim was raised and not yet published:
    /// the driver then calls [`crate::node::Node::handle_budget_raised`],
    /// so the fleet hears of the raise within a hop. O(1).
    pub fn has_unpublished_raise(&self) -> bool {
        self.raised
    }

    /// How many nodes are live in the fleet, this one included (1 alone).
    /// Whether this node checks each backend is re-decided by
    /// [`Pool::set_fleet`], which should follow.
    /// Connections this node opened to `id` in its last report interval
    /// (what its report carries: [`ReportEntry::opened`]).
    ///
    /// [`ReportEntry::opened`]: crate::cluster::report::ReportEntry::opened
    pub fn opened(&self, id: BackendId) -> u32 {
        self.backends[id.0].opened_last
    }

    /// The fleet size `least-conn` divides the fleet's imbalance by
    /// ([`crate::policy::own_first`]): the nodes that would correct it
    /// with this one, i.e. the fleet's new clients over this node's in the
    /// last report interval (this node's and the peers' reports, over the
    /// listener's backends), at least 1 and at most the live nodes; the
    /// live nodes when either is unknown (no client in the interval).
    /// A node that receives every new client corrects the whole imbalance
    /// (an argmin over the fleet's counts); one of `n` that receive alike,
    /// its `1 / n`. O(backends) once per change, then cached.
    pub fn share_nodes(&mut self) -> u32 {
        if let Some(n) = self.share_nodes {
            return n;
        }
        // Like with like: this node's last interval against the peers'.
        // Only a node that received nothing then counts its current
        // interval so far (so one that starts receiving while the others
        // are idle learns it at its first client; counting the current
        // interval always would make every node at the start of a burst
        // look like the only one receiving, and herd).
        let (last, now, peers) = self
            .backends
            .iter()
            .fold((0u64, 0u64, 0u64), |(l, n, p), b| {
                (
                    l + u64::from(b.opened_last),
                    n + u64::from(b.opened_now),
                    p + u64::from(b.remote.opened),
                )
            });
        let own = if last > 0 { last } else { now };
        let fleet = own + peers;
        let live = self.live_nodes.max(1);
        let n = if own == 0 || fleet == 0 {
            live
        } else {
            u32::try_from((fleet + own / 2) / own)
                .unwrap_or(u32::MAX)
                .clamp(1, live)
        };
        self.share_nodes = Some(n);
        n
    }

    pub fn set_live_nodes(&mut self, n: u32) {
        self.share_nodes = None;
        self.live_nodes = n.max(1);
    }

    /// A client connection could not reach `id`: counts as a failed check
    /// at once. Successful connects are not reported: passive observation
    /// only reports errors (HAProxy's `observe layer4`), so a backend that
    /// fails its checks still reaches `fall` under traffic, and only
    /// active checks bring a backend up.
    pub fn handle_connect_failure(&mut self, id: BackendId) {
        if self.backends[id.0].removed {
            return;
        }
        self.observe(id, false, HealthCause::Traffic);
    }

    /// An active check of `id` finished. A result for a backend with no
    /// check in flight is ignored.
    pub fn handle_check_result(&mut self, id: BackendId, ok: bool) {
        let b = &mut self.backends[id.0];
        if !b.checking {
            return;
        }
        b.checking = false;
        // A removed backend's health no longer matters (and its flip would
        // be logged as if it were still in service).
        if !b.removed {
            self.observe(id, ok, HealthCause::Check);
        }
    }

    /// The active check of `id` could not be made for a reason of this
    /// node's own (out of file descriptors, memory or local ports): it says
    /// nothing about the backend, so the health state and any streak stay
    /// as they were; the next check is due on the usual schedule. Ignored
    /// for a backend with no check in flight, like a result.
    pub fn handle_check_inconclusive(&mut self, id: BackendId) {
        self.backends[id.0].checking = false;
    }

    fn observe(&mut self, id: BackendId, ok: bool, cause: HealthCause) {
        let HealthConfig { rise, fall, .. } = self.health_config;
        let b = &mut self.backends[id.0];
        // Any observation of a checker's is evidence; its default "up" is not.
        b.voted |= b.checker;
        if let Some(up) = b.health.observe(ok, rise, fall) {
            self.events.push_back(PoolEvent::HealthChanged {
                backend: id,
                up,
                cause,
            });
            // Down by failed connects: this node checks it until it is up.
            self.update_checker(id);
        }
    }

    // ----- outputs -----

    /// A backend whose active check is due at `now`; the driver starts one
    /// check for it and reports with [`Pool::handle_check_result`].
    pub fn poll_check(&mut self, now: Instant) -> Option<BackendId> {
        let interval = self.health_config.interval;
        let (index, b) = self
            .backends
            .iter_mut()
            .enumerate()
            .find(|(_, b)| b.probes() && !b.checking && b.next_check <= now)?;
        b.checking = true;
        // Measured from the due time, not from `now`, so a late wake-up does
        // not make the schedule drift; but never schedule in the past.
        b.next_check = (b.next_check + interval).max(now);
        Some(BackendId(index))
    }

    /// The next health flip to report.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// When the driver must next call [`Pool::poll_check`]; `None` while
    /// every backend this node checks has a check in flight. A backend
    /// this node starts to check is due at once (its schedule stood still).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.backends
            .iter()
            .filter(|b| b.probes() && !b.checking)
            .map(|b| b.next_check)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use std::time::Duration;

    fn pool(policy: Policy, n: usize, max: Option<u32>) -> (Pool, SmallRng) {
        let mut rng = SmallRng::seed_from_u64(3);
        let specs = (0..n)
            .map(|i| BackendSpec {
                name: format!("127.0.0.1:{}", 5000 + i),
                max_connections: max,
                fleet_max_connections: None,
                weight: 1,
            })
            .collect();
        let p = Pool::new(
            policy,
            HealthConfig::default(),
            specs,
            Instant::ZERO,
            &mut rng,
        );
        (p, rng)
    }

    #[test]
    fn acquire_counts_and_release_uncounts() {
        let (mut p, mut rng) = pool(Policy::LeastConn, 3, None);
        let ids: Vec<_> = (0..30).map(|_| p.acquire(&mut rng, &[]).unwrap()).collect();
        assert_eq!(p.ids().map(|id| p.active(id)).sum::<u32>(), 30);
        // P2C over exact counts keeps them within a couple of each other.
        let counts: Vec<_> = p.ids().map(|id| p.active(id)).collect();
        let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
        assert!(spread <= 2, "{counts:?}");
        for id in ids {
            assert!(p.release(id));
        }
        assert!(p.ids().all(|id| p.active(id) == 0));
    }

    #[test]
    fn down_backends_get_no_connections() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 3, None);
        p.handle_connect_failure(BackendId(1));
        assert!(!p.is_up(BackendId(1)));
        assert_eq!(
            p.poll_event(),
            Some(PoolEvent::HealthChanged {
                backend: BackendId(1),
                up: false,
                cause: HealthCause::Traffic
            })
        );
        for _ in 0..10 {
            assert_ne!(p.acquire(&mut rng, &[]).unwrap(), BackendId(1));
        }
    }

    #[test]
    fn tried_and_full_backends_are_skipped_and_explained() {
        let (mut p, mut rng) = pool(Policy::FirstAvailable, 3, Some(1));
        assert_eq!(p.acquire(&mut rng, &[]), Ok(BackendId(0)));
        assert_eq!(p.acquire(&mut rng, &[BackendId(1)]), Ok(BackendId(2)));
        p.handle_connect_failure(BackendId(1));
        assert_eq!(
            p.acquire(&mut rng, &[]),
            Err(NoBackend {
                down: 1,
                fleet_down: 0,
                draining: 0,
                full: 2,
                over_budget: 0,
                round: 0,
                tried: 0
            })
        );
        assert!(p.release(BackendId(0)));
        assert_eq!(p.acquire(&mut rng, &[]), Ok(BackendId(0)));
    }

    #[test]
    fn checks_follow_the_interval_and_spread_the_first_round() {
        let (mut p, _) = pool(Policy::LeastConn, 4, None);
        let interval = p.health_config().interval;
        let first = p.poll_timeout().unwrap();
        assert!(first < Instant::ZERO + interval);
        // Nothing is due before the first deadline.
        assert_eq!(p.poll_check(Instant::ZERO), None);
        // After one interval every backend has been due once.
        let t = Instant::ZERO + interval;
        let mut due = Vec::new();
        while let Some(id) = p.poll_check(t) {
            due.push(id);
        }
        due.sort();
        assert_eq!(due, p.ids().collect::<Vec<_>>());
        assert_eq!(p.poll_timeout(), None, "all checks in flight");
        for id in p.ids() {
            p.handle_check_result(id, true);
        }
        let next = p.poll_timeout().unwrap();
        assert!(next > first && next <= t + interval, "{next:?}");
    }

    /// A check the node could not make (out of file descriptors) is no
    /// observation: any number of them leaves an unproven backend up, a
    /// streak where it was, and the schedule running.
    #[test]
    fn inconclusive_checks_change_no_health() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        let id = BackendId(0);
        // Unproven: one failure would take it down; inconclusive ones do not.
        for _ in 0..10 {
            let now = p.poll_timeout().unwrap();
            assert_eq!(p.poll_check(now), Some(id));
            p.handle_check_inconclusive(id);
        }
        assert!(p.is_up(id) && !p.is_proven(id));
        assert_eq!(p.poll_event(), None);
        // Proven, one failure, inconclusive ones, one failure: down (fall 3
        // is reached on the third real failure, not before).
        let check = |p: &mut Pool, result: Option<bool>| {
            let now = p.poll_timeout().unwrap();
            assert_eq!(p.poll_check(now), Some(id));
            match result {
                Some(ok) => p.handle_check_result(id, ok),
                None => p.handle_check_inconclusive(id),
            }
        };
        for r in [Some(true), Some(false), None, None, Some(false), None] {
            check(&mut p, r);
        }
        assert!(p.is_up(id));
        assert_eq!(p.poll_event(), None);
        check(&mut p, Some(false));
        assert!(!p.is_up(id));
        // A stray one with no check in flight is ignored.
        p.handle_check_inconclusive(id);
        assert!(p.poll_timeout().is_some());
    }

    #[test]
    fn a_dead_backend_goes_down_and_comes_back_by_checks() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        let id = BackendId(0);
        let mut now = Instant::ZERO;
        let results = [true, false, false, false, true, true];
        let mut flips = Vec::new();
        for ok in results {
            now = p.poll_timeout().unwrap();
            assert_eq!(p.poll_check(now), Some(id));
            p.handle_check_result(id, ok);
            while let Some(PoolEvent::HealthChanged { up, .. }) = p.poll_event() {
                flips.push((now, up));
            }
        }
        let step = Duration::from_millis(2000);
        let first = flips[0].0;
        assert_eq!(flips, vec![(first, false), (first + step * 2, true)]);
        assert!(now > Instant::ZERO);
    }

    #[test]
    fn least_conn_weighs_the_fleet_and_local_least_conn_does_not() {
        // Backend 0 is idle here but carries 100 connections fleet-wide,
        // in a fleet of 3. If the two peers opened nothing in their last
        // interval, this node receives every new client and least-conn
        // corrects the whole imbalance: none of 50 to backend 0. If the
        // peers opened 100 (so the three receive alike), it takes its part
        // (score 2 × own + fleet): backend 1 gets the first 34, then every
        // other one (8 to backend 0). local-least-conn ignores the fleet
        // (about 25).
        for (policy, peers_opened, to_zero_range) in [
            (Policy::LeastConn, 0, 0..=0),
            (Policy::LeastConn, 100, 6..=10),
            (Policy::LocalLeastConn, 0, 18..=32),
        ] {
            let (mut p, mut rng) = pool(policy, 2, None);
            p.set_live_nodes(3);
            p.set_remote(
                BackendId(0),
                RemoteLoad {
                    active: 100,
                    down_votes: 0,
                    reporters: 2,
                    voters: 2,
                    opened: peers_opened,
                },
            );
            let mut to_zero = 0;
            for _ in 0..50 {
                let id = p.acquire(&mut rng, &[]).unwrap();
                to_zero += usize::from(id == BackendId(0));
            }
            assert!(
                to_zero_range.contains(&to_zero),
                "{policy}, peers opened {peers_opened}: {to_zero}/50 to backend 0"
            );
            assert_eq!(
                p.cluster_active(BackendId(0)),
                100 + u64::from(p.active(BackendId(0)))
            );
        }
    }

    #[test]
    fn a_majority_of_live_nodes_reporting_down_excludes_a_backend() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 2, None);
        let id = BackendId(0);
        // Proven up here; 3 live nodes.
        p.poll_check(Instant::ZERO + Duration::from_secs(5));
        p.handle_check_result(id, true);
        assert!(p.is_proven(id));
        p.set_live_nodes(3);
        p.set_remote(
            id,
            RemoteLoad {
                active: 0,
                down_votes: 1,
                reporters: 2,
                voters: 2,
                opened: 0,
            },
        );
        assert!(!p.is_fleet_down(id), "1 of 3 is no majority");
        p.set_remote(
            id,
            RemoteLoad {
                active: 0,
                down_votes: 2,
                reporters: 2,
                voters: 2,
                opened: 0,
            },
        );
        assert!(p.is_fleet_down(id), "2 of 3 is");
        for _ in 0..5 {
            assert_eq!(p.acquire(&mut rng, &[]), Ok(BackendId(1)));
        }
        // 5 live nodes, 3 of which check it (the default): 2 is a majority
        // of the checkers.
        p.set_live_nodes(5);
        assert!(p.is_fleet_down(id), "2 of 3 checkers");
        // Every node checks: 2 of 5 is not.
        p.health_config.checkers = 5;
        assert!(!p.is_fleet_down(id), "2 of 5 is not");
    }

    #[test]
    fn an_unproven_backend_follows_the_peers_that_report_it() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 2, None);
        let id = BackendId(0);
        assert!(!p.is_proven(id));
        p.set_live_nodes(5);
        // Only one peer has checked it, and says down: a new node trusts it.
        p.set_remote(
            id,
            RemoteLoad {
                active: 0,
                down_votes: 1,
                reporters: 1,
                voters: 1,
                opened: 0,
            },
        );
        assert!(p.is_fleet_down(id));
        let err = p.acquire(&mut rng, &[BackendId(1)]).unwrap_err();
        assert_eq!(err.fleet_down, 1);
        assert!(err.to_string().contains("1 down by the fleet"), "{err}");
    }

    #[test]
    fn large_pools_sample_and_still_respect_health_limits_and_tried() {
        let (mut p, mut rng) = pool(Policy::LeastConn, 50, Some(2));
        for i in 0..25 {
            p.handle_connect_failure(BackendId(i * 2)); // every even backend down
        }
        let tried = [BackendId(1), BackendId(3)];
        let mut chosen = Vec::new();
        for _ in 0..46 {
            let id = p.acquire(&mut rng, &tried).unwrap();
            assert!(id.0 % 2 == 1 && !tried.contains(&id), "{id}");
            chosen.push(id);
        }
        // 23 candidates × max 2 each = 46: every slot got filled exactly.
        assert!(p.ids().all(|id| p.active(id) <= 2));
        let err = p.acquire(&mut rng, &tried).unwrap_err();
        assert_eq!((err.down, err.full, err.tried), (25, 23, 2));
        for id in chosen {
            assert!(p.release(id));
        }
    }

    #[test]
    fn sampled_least_conn_spreads_evenly_over_a_large_pool() {
        let (mut p, mut rng) = pool(Policy::LeastConn, 100, None);
        for _ in 0..1000 {
            p.acquire(&mut rng, &[]).unwrap();
        }
        let counts: Vec<u32> = p.ids().map(|id| p.active(id)).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        // Two choices keep the gap at O(log log n) above the mean: 2-4 here
        // over seeds (a single choice at random: about 12).
        assert!(
            max - min <= 4,
            "P2C keeps a 100-backend pool within a few: {min}..{max}"
        );
    }

    #[test]
    fn a_drained_backend_takes_no_new_connection_and_keeps_its_own() {
        for size in [3, 20] {
            let (mut p, mut rng) = pool(Policy::LeastConn, size, None);
            let held = p.acquire(&mut rng, &[]).unwrap();
            p.set_draining(held, true);
            for _ in 0..200 {
                let id = p.acquire(&mut rng, &[]).unwrap();
                assert_ne!(id, held, "pool of {size}");
                assert!(p.release(id));
            }
            // Its established connection still counts and ends normally.
            assert_eq!(p.active(held), 1);
            assert!(p.release(held));
            for id in p.ids() {
                p.set_draining(id, true);
            }
            let why = p.acquire(&mut rng, &[]).unwrap_err();
            assert_eq!(why.draining, size);
            p.set_draining(held, false);
            assert_eq!(p.acquire(&mut rng, &[]), Ok(held));
        }
    }

    fn votes(down_votes: u32, voters: u32) -> RemoteLoad {
        RemoteLoad {
            active: 0,
            down_votes,
            reporters: voters,
            voters,
            opened: 0,
        }
    }

    /// Runs every check due within `span` from `now`, answering `ok`;
    /// returns the backends checked and the time reached.
    fn run_checks(
        p: &mut Pool,
        mut now: Instant,
        span: Duration,
        ok: bool,
    ) -> (Vec<BackendId>, Instant) {
        let end = now + span;
        let mut checked = Vec::new();
        while let Some(t) = p.poll_timeout().filter(|t| *t <= end) {
            now = now.max(t);
            while let Some(id) = p.poll_check(now) {
                checked.push(id);
                p.handle_check_result(id, ok);
            }
        }
        (checked, end)
    }

    /// A node checks what it is assigned, what nobody it hears checks, and
    /// after losing an assignment keeps checking until `k` others vote.
    #[test]
    fn only_assigned_backends_are_checked_once_the_checkers_vote() {
        let (mut p, _) = pool(Policy::LeastConn, 2, None);
        p.health_config.checkers = 2;
        p.set_live_nodes(10);
        let (a, b) = (BackendId(0), BackendId(1));
        // Nobody votes yet: both are checked (a fleet forming).
        p.set_fleet(a, votes(0, 0), false, true);
        p.set_fleet(b, votes(0, 0), false, false);
        let (checked, now) = run_checks(&mut p, Instant::ZERO, Duration::from_secs(2), true);
        assert!(checked.contains(&a) && checked.contains(&b), "{checked:?}");
        assert!(p.is_voting(a) && p.is_voting(b));
        // One other node votes on b: fewer than k, so this node goes on.
        p.set_fleet(b, votes(0, 1), false, false);
        assert!(p.is_checking(b) && p.is_voting(b));
        // Two do: b is handed over, a (assigned) stays.
        p.set_fleet(a, votes(0, 2), false, true);
        p.set_fleet(b, votes(0, 2), false, false);
        assert!(p.is_checking(a) && !p.is_checking(b) && !p.is_voting(b));
        let (checked, now) = run_checks(&mut p, now, Duration::from_secs(10), true);
        assert!(
            !checked.is_empty() && checked.iter().all(|id| *id == a),
            "{checked:?}"
        );
        // Assigned again: checked at once, and a vote only after a check.
        p.set_fleet(b, votes(0, 2), false, true);
        assert!(p.is_checking(b) && !p.is_voting(b));
        assert!(p.poll_timeout().unwrap() <= now, "due at once");
        assert_eq!(p.poll_check(now), Some(b));
        p.handle_check_result(b, true);
        assert!(p.is_voting(b));
        // Its votes gone (the checkers left), an unassigned backend is
        // checked again by whoever still hears nobody.
        p.set_fleet(b, votes(0, 0), false, false);
        assert!(p.is_checking(b));
    }

    /// A node that does not check a backend follows the checkers' votes,
    /// and its own failed client connects still count: it checks the
    /// backend itself until it comes back, unless the checkers hold it
    /// down too, whose "up" then brings it back at once.
    #[test]
    fn a_non_checker_follows_the_votes_and_keeps_passive_health() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        p.health_config.checkers = 2;
        p.set_live_nodes(10);
        let id = BackendId(0);
        p.set_fleet(id, votes(0, 2), false, false);
        assert!(!p.is_checking(id) && p.is_available(id));
        assert!(p.is_proven(id), "the checkers' majority proves it");
        // One checker says down: 1 of 2 is no majority.
        p.set_fleet(id, votes(1, 2), false, false);
        assert!(p.is_available(id));
        // Both do: down by the fleet, without a check of this node's own.
        p.set_fleet(id, votes(2, 2), false, false);
        assert!(!p.is_available(id) && p.is_up(id) && !p.is_checking(id));
        // Back up by the checkers.
        p.set_fleet(id, votes(0, 2), false, false);
        assert!(p.is_available(id));
        // Failed connects here (proven: `fall` of them) take it down here
        // while the checkers see it up: this node checks it itself.
        for _ in 0..3 {
            p.handle_connect_failure(id);
        }
        assert!(!p.is_up(id) && p.is_checking(id));
        let (checked, now) = run_checks(&mut p, Instant::ZERO, Duration::from_secs(5), true);
        assert!(checked.len() >= 2 && p.is_up(id), "rise by its own checks");
        assert!(!p.is_checking(id), "and it hands the checks back");
        // Down here again, and the checkers agree: their verdict takes over
        // and this node stops checking; their "up" is enough to return.
        for _ in 0..3 {
            p.handle_connect_failure(id);
        }
        assert!(p.is_checking(id));
        p.set_fleet(id, votes(2, 2), false, false);
        assert!(!p.is_checking(id) && !p.is_available(id));
        let (checked, _) = run_checks(&mut p, now, Duration::from_secs(10), false);
        assert!(checked.is_empty(), "{checked:?}");
        p.set_fleet(id, votes(0, 2), false, false);
        assert!(p.is_available(id));
    }

    /// A node handing a backend over keeps voting with its own checks'
    /// verdict: only a verdict of failed client connects is handed over.
    #[test]
    fn a_handing_over_checker_keeps_its_own_down_vote() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        p.health_config.checkers = 3;
        p.set_live_nodes(10);
        let id = BackendId(0);
        p.set_fleet(id, votes(0, 0), false, true);
        let (_, now) = run_checks(&mut p, Instant::ZERO, Duration::from_secs(2), true);
        // Unassigned, two others vote: fewer than 3, so it keeps checking;
        // its checks find the backend dead, as the two others do.
        p.set_fleet(id, votes(0, 2), false, false);
        run_checks(&mut p, now, Duration::from_secs(8), false);
        assert!(!p.is_up(id) && p.is_voting(id));
        p.set_fleet(id, votes(2, 2), false, false);
        assert!(!p.is_up(id), "its own verdict stays");
        assert!(p.is_voting(id) && p.is_fleet_down(id));
    }

    /// Entries that are not votes (an observer's verdict) do not count.
    #[test]
    fn only_votes_count_and_a_fleet_smaller_than_k_all_votes() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        let id = BackendId(0);
        p.health_config.checkers = 2;
        p.set_live_nodes(2);
        assert_eq!(p.checkers(), 2);
        p.set_live_nodes(1);
        assert_eq!(p.checkers(), 1, "alone it checks everything itself");
        p.set_live_nodes(10);
        p.set_fleet(
            id,
            RemoteLoad {
                active: 0,
                down_votes: 0,
                reporters: 9,
                voters: 0,
                opened: 0,
            },
            false,
            false,
        );
        assert!(p.is_checking(id), "reports without votes: nobody checks it");
    }

    /// A removed backend is drained: no new connection, no check, its
    /// connections finish, then it is gone and its slot is reused by the
    /// next added backend, while the others keep their ids and counts.
    #[test]
    fn a_removed_backend_drains_then_goes_and_an_added_one_takes_its_slot() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 3, None);
        let (a, b, c) = (BackendId(0), BackendId(1), BackendId(2));
        let held: Vec<_> = (0..3).map(|_| p.acquire(&mut rng, &[]).unwrap()).collect();
        assert_eq!(held, [a, b, c]);
        assert!(!p.remove_backend(b), "it holds a connection: not gone yet");
        assert!(p.is_removed(b) && !p.is_gone(b));
        assert_eq!(p.ids().collect::<Vec<_>>(), [a, b, c], "still reported");
        for _ in 0..20 {
            let id = p.acquire(&mut rng, &[]).unwrap();
            assert_ne!(id, b);
            assert!(p.release(id));
        }
        // Not checked any more, even when due.
        let (checked, now) = run_checks(&mut p, Instant::ZERO, Duration::from_secs(10), true);
        assert!(!checked.contains(&b) && checked.contains(&a), "{checked:?}");
        let why = p.acquire(&mut rng, &[a, c]).unwrap_err();
        assert_eq!((why.draining, why.tried), (1, 2), "{why}");
        // Its last connection ends: gone, out of ids and len.
        assert!(p.release(b));
        assert!(p.is_gone(b));
        assert_eq!(p.ids().collect::<Vec<_>>(), [a, c]);
        assert_eq!((p.len(), p.slots()), (2, 3));
        assert_eq!(p.find("127.0.0.1:5001"), None);
        // A new backend takes the gone slot; the others are untouched.
        let spec = BackendSpec {
            name: "127.0.0.1:6000".into(),
            max_connections: None,
            fleet_max_connections: None,
            weight: 1,
        };
        let d = p.add_backend(spec, now, &mut rng);
        assert_eq!(d, b);
        assert_eq!(p.find("127.0.0.1:6000"), Some(d));
        assert_eq!((p.active(a), p.active(c), p.active(d)), (1, 1, 0));
        assert!(p.is_up(d) && !p.is_proven(d) && !p.is_removed(d));
        // It is checked within one interval, and chosen.
        let (checked, _) = run_checks(&mut p, now, Duration::from_secs(2), true);
        assert!(checked.contains(&d), "{checked:?}");
        let chosen: Vec<_> = (0..3).map(|_| p.acquire(&mut rng, &[]).unwrap()).collect();
        assert!(chosen.contains(&d), "{chosen:?}");
        // No gone slot left: the next one is appended.
        let spec = BackendSpec {
            name: "127.0.0.1:6001".into(),
            max_connections: None,
            fleet_max_connections: None,
            weight: 1,
        };
        assert_eq!(p.add_backend(spec, now, &mut rng), BackendId(3));
        // A backend without connections is gone at once.
        assert!(p.remove_backend(BackendId(3)));
        assert_eq!(p.len(), 3);
    }

    /// A backend removed and added back before its connections ended keeps
    /// its id, count and health.
    #[test]
    fn a_removed_backend_added_back_keeps_its_connections() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 2, None);
        let a = p.acquire(&mut rng, &[]).unwrap();
        p.remove_backend(a);
        p.restore_backend(a);
        assert!(!p.is_removed(a));
        assert_eq!(p.active(a), 1);
        let chosen: Vec<_> = (0..4).map(|_| p.acquire(&mut rng, &[]).unwrap()).collect();
        assert!(chosen.contains(&a), "{chosen:?}");
    }

    /// What a name's new answer does: a backend that left is drained (it
    /// keeps its connection, takes no new one, and is gone once it ends),
    /// one that came back is restored with its connections, a new one is
    /// added, and weights follow the specs.
    #[test]
    fn reconcile_drains_restores_adds_and_reweighs() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 3, None);
        let names: Vec<String> = p.ids().map(|id| p.spec(id).name.clone()).collect();
        let held = p.acquire(&mut rng, &[]).unwrap();
        assert_eq!(held, BackendId(0));
        let spec = |name: &str, weight| BackendSpec {
            weight,
            ..BackendSpec::new(name)
        };
        // Backends 0 and 1 leave; a new one arrives; 2 weighs 3.
        let done = p.reconcile(
            &[spec(&names[2], 3), spec("127.0.0.9:1", 1)],
            Instant::ZERO,
            &mut rng,
        );
        assert_eq!(done.draining, vec![BackendId(0)]);
        assert_eq!(done.gone, vec![BackendId(1)]);
        assert_eq!(done.added, vec![BackendId(1)], "the gone slot is reused");
        assert_eq!(p.spec(BackendId(2)).weight, 3);
        let picks: Vec<_> = (0..8)
            .map(|_| p.acquire(&mut rng, &[]).unwrap().0)
            .collect();
        assert!(
            !picks.contains(&0),
            "a drained backend takes no client: {picks:?}"
        );
        assert_eq!(picks.iter().filter(|&&i| i == 2).count(), 6, "{picks:?}");
        // Backend 0 comes back before its connection ended: restored.
        let done = p.reconcile(&[spec(&names[0], 1)], Instant::ZERO, &mut rng);
        assert!(done.added.is_empty() && !p.is_removed(held));
        assert_eq!(p.active(held), 1);
        // The same answer again changes nothing.
        let again = p.reconcile(&[spec(&names[0], 1)], Instant::ZERO, &mut rng);
        assert_eq!(again, Reconciled::default());
    }

    #[test]
    fn policy_health_and_limits_change_in_place() {
        let (mut p, mut rng) = pool(Policy::RoundRobin, 2, None);
        let held = p.acquire(&mut rng, &[]).unwrap();
        p.set_policy(Policy::FirstAvailable);
        for _ in 0..5 {
            assert_eq!(p.acquire(&mut rng, &[]), Ok(BackendId(0)));
        }
        // A limit applies to the next choice; the count is kept.
        p.set_limits(Some(2), None);
        assert_eq!(p.acquire(&mut rng, &[]), Ok(BackendId(1)));
        assert_eq!(p.active(BackendId(0)), 6);
        assert_eq!(p.spec(BackendId(0)).max_connections, Some(2));
        p.set_limits(None, Some(10));
        assert_eq!(p.budget(BackendId(0)).map(|b| b.limit()), Some(10));
        assert!(p.release(held));
        // A shorter interval brings far checks forward; rise applies next.
        let now = Instant::ZERO + Duration::from_secs(1);
        let health = HealthConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            rise: 5,
            ..HealthConfig::default()
        };
        p.set_health_config(health, now);
        assert_eq!(p.health_config().rise, 5);
        assert!(p.poll_timeout().unwrap() <= now + Duration::from_millis(100));
        // Down (unproven: one failure), then rise 5 checks to come back.
        p.handle_connect_failure(BackendId(0));
        assert!(!p.is_up(BackendId(0)));
        let mut t = now;
        let mut ups = 0;
        while !p.is_up(BackendId(0)) {
            t = p.poll_timeout().unwrap().max(t);
            while let Some(id) = p.poll_check(t) {
                p.handle_check_result(id, true);
                ups += usize::from(id == BackendId(0));
            }
        }
        assert_eq!(ups, 5);
    }

    #[test]
    fn stale_check_results_are_ignored() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        p.handle_check_result(BackendId(0), false);
        assert!(p.is_up(BackendId(0)));
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    #[should_panic(expected = "no active connection")]
    #[cfg(debug_assertions)]
    fn releasing_more_than_acquired_is_caught() {
        let (mut p, _) = pool(Policy::LeastConn, 1, None);
        let _ = p.release(BackendId(0));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[derive(Debug, Clone)]
    enum Op {
        Acquire,
        Release(usize),
        Fail(usize),
        Check(usize, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Acquire),
            3 => any::<usize>().prop_map(Op::Release),
            1 => any::<usize>().prop_map(Op::Fail),
            1 => (any::<usize>(), any::<bool>()).prop_map(|(i, ok)| Op::Check(i, ok)),
        ]
    }

    proptest! {
        /// Whatever happens, each backend's count equals the connections
        /// acquired on it and not yet released, and returns to zero.
        #[test]
        fn counts_match_a_model_and_return_to_zero(
            seed in any::<u64>(),
            n in 1usize..6,
            max in proptest::option::of(1u32..4),
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut rng = SmallRng::seed_from_u64(seed);
            let specs = (0..n).map(|i| BackendSpec { name: i.to_string(), max_connections: max, fleet_max_connections: None , weight: 1}).collect();
            let mut p = Pool::new(Policy::LeastConn, HealthConfig::default(), specs, Instant::ZERO, &mut rng);
            let mut open: Vec<BackendId> = Vec::new();
            let mut now = Instant::ZERO;
            for op in ops {
                match op {
                    Op::Acquire => if let Ok(id) = p.acquire(&mut rng, &[]) {
                        prop_assert!(p.is_up(id));
                        if let Some(max) = max { prop_assert!(p.active(id) <= max); }
                        open.push(id);
                    },
                    Op::Release(i) => if !open.is_empty() {
                        let id = open.swap_remove(i % open.len());
                        prop_assert!(p.release(id));
                    },
                    Op::Fail(i) => p.handle_connect_failure(BackendId(i % n)),
                    Op::Check(i, ok) => {
                        now = p.poll_timeout().unwrap_or(now).max(now);
                        if p.poll_check(now).is_some() { p.handle_check_result(BackendId(i % n), ok); }
                    }
                }
                for id in p.ids() {
                    let model = open.iter().filter(|&&o| o == id).count() as u32;
                    prop_assert_eq!(p.active(id), model);
                }
            }
            for id in open.drain(..) { prop_assert!(p.release(id)); }
            prop_assert!(p.ids().all(|id| p.active(id) == 0));
        }
    }
}
