//! The fleet: SWIM membership (foca) and the load reports nodes send each
//! other.
//!
//! # Two kinds of datagram
//! foca runs the membership only: probes, acks, member updates riding on
//! them and on its periodic gossip. Load reports do not ride on SWIM
//! (decision 27): each node packs the shards of its own report that are
//! due (changed, recently changed, or due for a refresh; see
//! [`Cluster::publish_report`]) into report datagrams
//! ([`crate::wire::encode_reports`], at most [`SWIM_PACKET_BYTES_MAX`]
//! bytes each) and sends them to every live member itself: one hop, no
//! relays, so a publication costs `O(N·B)` bytes out per node and arrives
//! after one network latency, however large the fleet. A member that
//! comes up or restarts gets every shard at once and at the next
//! [`CHANGED_RESENDS`] report ticks; so does every member after this node
//! rejoins with a renewed identity.
//! [`Cluster::handle_datagram`] tells the two kinds apart by their second
//! byte ([`crate::wire::is_reports`]). A report datagram from an origin
//! foca does not know (it missed that member's join) makes this node
//! announce itself to the origin, so membership misses heal within a
//! refresh period instead of waiting for a full-state sync.
//!
//! The trade-off: a member this node cannot reach directly, but which
//! foca keeps alive through indirect probes, gets no report from it; its
//! copy expires after `report_ttl` and it counts this node's load as zero
//! until the path heals.
//!
//! # Driving a [`Cluster`]
//! Like [`crate::Pool`], a `Cluster` does no I/O and reads no clock. Its
//! driver (one task in the runtime; the simulator's event loop) calls:
//! - [`Cluster::join`] with the seeds' addresses at start, and again while
//!   [`Cluster::is_alone`] (re-resolving names first), so a fleet restarted
//!   in any order reassembles;
//! - [`Cluster::handle_datagram`] for every datagram received (SWIM
//!   packets and report datagrams alike);
//! - [`Cluster::handle_timeout`] whenever the deadline from
//!   [`Cluster::poll_timeout`] has passed;
//! - [`Cluster::publish_report`] with this node's backends after a
//!   [`ClusterEvent::ReportDue`], and at once on a health flip;
//! - [`Cluster::sync_message`] / [`Cluster::handle_sync`] for the
//!   full-state push-pull on a stream: the dialling side sends its
//!   `sync_message`, the other side applies it and answers with its own;
//! - [`Cluster::leave`] before shutting down;
//!
//! and after each of those, until they return `None`:
//! 1. [`Cluster::poll_transmit`]: datagrams to send (dropping one is fine);
//! 2. [`Cluster::poll_event`]: membership changes, report requests;
//! 3. [`Cluster::poll_timeout`]: when to call `handle_timeout` next.
//!
//! Remote load for the pools is read with [`Cluster::remote`]; it changes
//! when [`Cluster::view_generation`] does.

pub mod detection;
pub mod identity;
pub mod report;
pub mod timers;
pub mod view;

use crate::time::Instant;
use crate::wire::{self, WireError};
pub use detection::{Detection, DetectionError};
use foca::{AccumulatingRuntime, Foca, Member, NoCustomBroadcast, OwnedNotification, Timer};
use identity::NodeId;
use rand::SeedableRng;
// Xoshiro256++ rather than SmallRng: rand documents SmallRng's algorithm as
// free to change between platforms and releases; a simulator seed must
// replay the same foca choices anywhere.
use rand::rngs::Xoshiro256PlusPlus;
use report::{BackendKey, CLIENT_ADDRS_MAX, DrainMark, Inbox, ReportEntry, ReportShard};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use timers::TimerQueue;
use view::{LoadView, RemoteLoad};

/// Largest datagram a node sends, SWIM packet or report datagram: below
/// the smallest QUIC datagram size at connection start (1162 bytes on
/// loopback, less on some paths).
pub const SWIM_PACKET_BYTES_MAX: usize = 1100;

/// Remembered members a lonely node announces to in one `join`.
pub const REMEMBERED_ANNOUNCES_MAX: usize = 32;

/// How often a node that is not alone announces to the seeds it does not
/// hold alive. A seed that restarts finds nobody by itself when its own
/// seed list names only itself; if every other node restarted too, none
/// remembers it and none is alone, so without this announce it would stay
/// out for good (`fleet-swarm` seed 867).
pub const MISSING_SEED_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(30);

/// Report ticks at which an announce to a seed (or to a new seed address)
/// is repeated while the seed is not held alive. The first one usually
/// finds no QUIC connection and is dropped while the transport dials
/// (decision 21); without the repeats a running fleet reached a node that
/// had just been added to the seed name only at the next
/// [`MISSING_SEED_ANNOUNCE_INTERVAL`] (30 s), and a fleet started all at
/// once waited for QUIC's handshake retransmission.
pub const SEED_ANNOUNCE_REPEATS: u32 = 3;

/// Report intervals after a change in which a changed shard is sent again,
/// and after a member comes up in which it gets every shard again: a
/// datagram may be lost, or arrive before the receiver holds this node
/// alive, and a refresh is several intervals away.
pub const CHANGED_RESENDS: u32 = 2;

/// Timers handled in one `handle_timeout` call; more wait for the next.
const TIMERS_PER_CALL_MAX: usize = 10_000;

/// Events held for the driver at most (a sync from a 1000-node fleet
/// brings about 1000 `MemberUp`s); further ones are dropped and counted
/// in [`ClusterStats::events_dropped`]. A [`ClusterEvent::ReportDue`] is
/// never dropped: it comes at most once per report interval.
pub const EVENTS_QUEUED_MAX: usize = 16_384;

/// Datagrams held for the driver at most (welcoming 1000 members with
/// every shard is a few thousand); further ones are dropped, as a full
/// socket buffer would, and counted in [`ClusterStats::transmits_dropped`].
pub const TRANSMITS_QUEUED_MAX: usize = 262_144;

/// Settings of the fleet protocol.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How often this node publishes the shards of its report that changed.
    pub report_interval: Duration,
    /// How often an unchanged shard is published anyway, so peers' copies
    /// stay within `report_ttl`.
    pub report_refresh: Duration,
    /// A peer's shard older than this (on our clock) is dropped.
    pub report_ttl: Duration,
    /// How fast a crash is found (decision 50); `swim` is derived from it.
    pub detection: Detection,
    /// foca's settings.
    pub swim: foca::Config,
}

impl ClusterConfig {
    /// The shipped failure detection ([`Detection::default`]) for
    /// `expected_nodes`; see [`ClusterConfig::new`].
    pub fn lan(expected_nodes: u32, report_interval: Duration, report_ttl: Duration) -> Self {
        ClusterConfig::new(
            expected_nodes,
            Detection::default(),
            report_interval,
            report_ttl,
        )
    }

    /// foca's LAN settings for `expected_nodes` with `detection`'s probe,
    /// suspicion and gossip settings ([`Detection::swim`]), packets sized
    /// for QUIC datagrams and down members remembered long enough that a
    /// stale shard cannot resurrect them.
    /// Unchanged shards are refreshed every 4 report intervals; see
    /// [`ClusterConfig::with_refresh`].
    pub fn new(
        expected_nodes: u32,
        detection: Detection,
        report_interval: Duration,
        report_ttl: Duration,
    ) -> Self {
        ClusterConfig {
            report_interval,
            report_refresh: report_interval * 4,
            report_ttl,
            swim: detection.swim(expected_nodes, SWIM_PACKET_BYTES_MAX),
            detection,
        }
    }

    /// Sets how often unchanged shards are published anyway.
    pub fn with_refresh(mut self, report_refresh: Duration) -> Self {
        self.report_refresh = report_refresh;
        self
    }
}

/// What a driver is told.
#[derive(Debug, Clone)]
pub enum ClusterEvent {
    MemberUp(NodeId),
    MemberDown(NodeId),
    /// A member restarted or renewed its identity at the same address.
    Renamed {
        from: NodeId,
        to: NodeId,
    },
    /// This node was declared down and rejoined with a renewed identity.
    Rejoined(NodeId),
    /// This node knows no live member: the driver re-announces to seeds.
    Idle,
    /// This node is known by at least one live member.
    Active,
    /// Time to call [`Cluster::publish_report`].
    ReportDue,
    /// This node was declared down and foca cannot renew its identity: it
    /// takes no further part in the fleet until restarted.
    Defunct,
    /// Something foca was asked to do failed; see [`ClusterFault`] for
    /// what that left changed.
    Error(Arc<ClusterFault>),
    /// Two live processes have one name (a copied certificate, or a node
    /// started twice on two addresses): the newer identity is kept, the
    /// other's datagrams are refused and its counts dropped until it is
    /// gone.
    DuplicateName {
        kept: NodeId,
        refused: NodeId,
    },
    /// A newer process with this node's name joined the fleet: the fleet
    /// now refuses this one. Stop one of the two.
    NameTaken {
        by: NodeId,
    },
}

/// A failure inside the membership protocol, with what it left behind.
/// None of these is caused by a peer's bytes alone (those are
/// [`ClusterError`]s returned by the inputs).
#[derive(Debug, thiserror::Error)]
pub enum ClusterFault {
    /// foca refused to announce: no packet went out to `to`.
    #[error("announce to {to}: {source}")]
    Announce {
        to: SocketAddr,
        #[source]
        source: foca::Error,
    },
    /// A SWIM timer failed; foca's state is what it was before the timer.
    #[error("SWIM timer: {0}")]
    Timer(#[source] foca::Error),
    /// The members of a peer's sync were not (all) applied; its shards were.
    #[error("members of the sync from {from}: {source}")]
    SyncMembers {
        from: Box<NodeId>,
        #[source]
        source: foca::Error,
    },
    /// The leave notice was not sent: peers find out by failure detection.
    #[error("leave: {0}")]
    Leave(#[source] foca::Error),
    /// The re-evaluation after a rejoin failed; foca may stay idle until
    /// a live member's update arrives.
    #[error("re-evaluating membership after a rejoin: {0}")]
    AfterRejoin(#[source] foca::Error),
    /// foca's settings were not re-derived for `nodes` live nodes; the
    /// previous ones stay.
    #[error("resizing SWIM for {nodes} nodes: {source}")]
    Resize {
        nodes: u32,
        #[source]
        source: foca::Error,
    },
    /// This node's shards could not be packed: none was sent.
    #[error("packing {shards} report shards: {source}")]
    PackReports {
        shards: usize,
        #[source]
        source: WireError,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// A full-state sync message: everything a node knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub from: NodeId,
    pub members: Vec<Member<NodeId>>,
    pub reports: Vec<ReportShard>,
}

/// Errors of the inputs; each says nothing was applied unless stated.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// foca refused the packet; members it read before the failure may
    /// have been applied.
    #[error("SWIM packet refused: {0}")]
    Swim(#[source] foca::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The sender's certificate names one node and its message claims
    /// another identity; nothing was applied.
    #[error("a peer whose certificate names `{certified}` claims to be {claimed:?}")]
    Impersonation {
        certified: String,
        claimed: Box<NodeId>,
    },
    /// The sender is an older process with the name of a newer live member;
    /// nothing was applied.
    #[error("{sender:?} has the name of a newer live member, {owner:?}: refused")]
    Superseded {
        sender: Box<NodeId>,
        owner: Box<NodeId>,
    },
}

/// Counters for metrics. `datagrams_*` and `bytes_*` count both kinds of
/// datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub bad_datagrams: u64,
    pub reports_published: u64,
    /// Shard versions published (each sent to every live member).
    pub shards_published: u64,
    /// Of `datagrams_out`, report datagrams (one per member and packed
    /// group of shards).
    pub report_datagrams_out: u64,
    /// Peers' shards accepted into the view (newer than what was held).
    pub shards_applied: u64,
    /// Announces to origins of report datagrams foca did not know.
    pub unknown_origin_announces: u64,
    /// Datagrams and syncs refused because the sender's claim did not
    /// match its certificate, or it was superseded by a newer process of
    /// its name.
    pub impostors_refused: u64,
    /// Down notices foca addressed to a member it holds alive (a
    /// suspicion the member refuted in time), not sent: see
    /// [`Cluster::is_stale_down_notice`].
    pub stale_down_notices_dropped: u64,
    /// Events dropped because [`EVENTS_QUEUED_MAX`] were waiting.
    pub events_dropped: u64,
    /// Datagrams dropped because [`TRANSMITS_QUEUED_MAX`] were waiting.
    pub transmits_dropped: u64,
}

/// The membership and load view of one node. See the module doc.
pub struct Cluster {
    foca: Foca<NodeId, wire::SwimCodec, Xoshiro256PlusPlus, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<NodeId>,
    timers: TimerQueue<Timer<NodeId>>,
    inbox: Inbox,
    view: LoadView,
    config: ClusterConfig,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClusterEvent>,
    next_report: Instant,
    report_seq: u64,
    own_shards: Vec<ReportShard>,
    /// When each of `own_shards` was last published, and last changed.
    own_published: Vec<Instant>,
    own_changed: Vec<Instant>,
    epoch: u64,
    stats: ClusterStats,
    /// The live node count foca's settings were last derived from.
    sized_for: u32,
    /// Addresses foca declared down and has not seen alive since.
    down: BTreeSet<SocketAddr>,
    /// Addresses of the members foca holds alive.
    live: BTreeSet<SocketAddr>,
    /// Origins of report datagrams foca did not know, and when this node
    /// last announced itself to each (see [`Cluster::handle_datagram`]).
    announced: BTreeMap<SocketAddr, Instant>,
    /// Members that came up recently, and until when every report tick
    /// sends them all of this node's shards.
    welcome: BTreeMap<SocketAddr, Instant>,
    /// The seeds of the last `join`, and when missing ones were last announced to.
    seeds: Vec<SocketAddr>,
    seeds_announced: Option<Instant>,
    /// Fleet state operators set: the newest drain mark per backend this
    /// node knows, from its own commands, peers' reports and syncs.
    drains: BTreeMap<BackendKey, DrainMark>,
    /// The newest drain version seen (the hybrid clock's floor).
    drain_clock: u64,
    /// Bumped when `drains` changes, so the view is pushed again.
    drain_generation: u64,
    /// Seeds announced to lately and not yet held alive, with the report
    /// ticks left at which the announce is repeated.
    announce_repeats: BTreeMap<SocketAddr, u32>,
    /// The names of the live members, by address, and the newest live
    /// identity of each name.
    live_names: BTreeMap<SocketAddr, String>,
    owners: BTreeMap<String, NodeId>,
    /// Whether [`ClusterEvent::NameTaken`] was told (once per taker).
    name_taken_by: Option<NodeId>,
    /// The addresses this node's shard 0 advertises to clients (see
    /// [`Cluster::set_clients`]).
    own_clients: Vec<IpAddr>,
    /// Bumped on every membership change foca notifies.
    members_generation: u64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("identity", self.foca.identity())
            .field("members", &self.foca.num_members())
            .field("view_generation", &self.view.generation())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A node alone, with `identity`; `rng_seed` seeds foca's choices.
    pub fn new(identity: NodeId, config: ClusterConfig, rng_seed: u64, now: Instant) -> Self {
        let inbox = Inbox::new(identity.addr);
        let epoch = identity.epoch;
        let foca = Foca::new(
            identity,
            config.swim.clone(),
            Xoshiro256PlusPlus::seed_from_u64(rng_seed),
            wire::SwimCodec,
        );
        Cluster {
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: TimerQueue::default(),
            inbox,
            view: LoadView::default(),
            next_report: now,
            config,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            report_seq: 0,
            own_shards: Vec::new(),
            own_published: Vec::new(),
            own_changed: Vec::new(),
            epoch,
            stats: ClusterStats::default(),
            sized_for: 0,
            down: BTreeSet::new(),
            live: BTreeSet::new(),
            announced: BTreeMap::new(),
            welcome: BTreeMap::new(),
            seeds: Vec::new(),
            seeds_announced: None,
            drains: BTreeMap::new(),
            drain_clock: 0,
            drain_generation: 0,
            announce_repeats: BTreeMap::new(),
            live_names: BTreeMap::new(),
            owners: BTreeMap::new(),
            name_taken_by: None,
            own_clients: Vec::new(),
            members_generation: 0,
        }
    }

    // ----- getters -----

    /// This node's current identity (it renews after a false death).
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Live members, this node included.
    pub fn live_nodes(&self) -> u32 {
        self.foca.num_members() as u32 + 1
    }

    /// Live peers (this node excluded).
    pub fn members(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.foca.iter_members().map(|m| m.id())
    }

    /// Whether this node knows no live peer.
    pub fn is_alone(&self) -> bool {
        self.foca.num_members() == 0
    }

    /// The fleet's load on a backend, as peers report it.
    pub fn remote(&self, key: BackendKey) -> RemoteLoad {
        self.view.remote(key)
    }

    /// The peers' shards and their totals.
    pub fn view(&self) -> &LoadView {
        &self.view
    }

    /// Changes whenever [`Cluster::remote`] or [`Cluster::drain_mark`] may have
    /// changed.
    pub fn view_generation(&self) -> u64 {
        self.view.generation().wrapping_add(self.drain_generation)
    }

    /// Changes whenever the live members may have changed (who checks
    /// which backend is re-decided then, see [`crate::checkers`]).
    pub fn membership_generation(&self) -> u64 {
        self.members_generation
    }

    /// The newest drain mark this node knows for `key`.
    pub fn drain_mark(&self, key: BackendKey) -> Option<DrainMark> {
        self.drains.get(&key).copied()
    }

    /// Every drain mark this node knows.
    pub fn drain_marks(&self) -> impl Iterator<Item = (BackendKey, DrainMark)> + '_ {
        self.drains.iter().map(|(k, m)| (*k, *m))
    }

    /// The client addresses live peer `addr` advertises in its newest
    /// shard 0, if this node holds one (within the report TTL).
    pub fn clients_of(&self, addr: SocketAddr) -> Option<&[IpAddr]> {
        self.view.clients_of(addr)
    }

    /// Changes whenever the live members or the client addresses they
    /// advertise may have changed (what the fleet's DNS answer is made
    /// of); far less often than [`Cluster::view_generation`].
    pub fn clients_generation(&self) -> u64 {
        self.view
            .clients_generation()
            .wrapping_add(self.members_generation)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> ClusterStats {
        self.stats
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    // ----- inputs -----

    /// The addresses at which this node takes clients now (empty while
    /// it does not), advertised in shard 0 of its next publication and
    /// every one after (at most [`CLIENT_ADDRS_MAX`]; more are dropped).
    pub fn set_clients(&mut self, clients: &[IpAddr]) {
        self.own_clients = clients[..clients.len().min(CLIENT_ADDRS_MAX)].to_vec();
    }

    /// Announces this node to every seed address but its own and, while
    /// it knows no live peer, to members it once knew (foca remembers down
    /// members for a day; at most [`REMEMBERED_ANNOUNCES_MAX`] of them).
    /// Without the latter, two nodes that lost their seeds for good would
    /// stay apart: foca announces to down members only while it has a live
    /// one (found by the simulator, `fleet-swarm` seed 138). The seeds
    /// are kept: while not alone, [`Cluster::handle_timeout`] announces to
    /// those not held alive every [`MISSING_SEED_ANNOUNCE_INTERVAL`].
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        let me = self.identity().addr;
        let mut targets: Vec<SocketAddr> = seeds.iter().copied().filter(|&s| s != me).collect();
        self.seeds = targets.clone();
        if self.is_alone() {
            let remembered = self
                .foca
                .iter_membership_state()
                .map(|m| m.id().addr)
                .filter(|a| *a != me && !targets.contains(a))
                .take(REMEMBERED_ANNOUNCES_MAX)
                .collect::<Vec<_>>();
            targets.extend(remembered);
        }
        for seed in targets {
            self.announce(seed);
            self.announce_repeats.insert(seed, SEED_ANNOUNCE_REPEATS);
        }
        self.drain(now);
    }

    /// The seeds' addresses again (a periodic re-resolution while this node
    /// is not alone): kept for the missing-seed announces, and announced
    /// to at once if new, so a seed name that gains an address is followed
    /// without waiting for [`MISSING_SEED_ANNOUNCE_INTERVAL`].
    pub fn update_seeds(&mut self, now: Instant, seeds: &[SocketAddr]) {
        let me = self.identity().addr;
        let fresh: Vec<SocketAddr> = seeds
            .iter()
            .copied()
            .filter(|s| *s != me && !self.seeds.contains(s) && !self.live.contains(s))
            .collect();
        self.seeds = seeds.iter().copied().filter(|&s| s != me).collect();
        for seed in fresh {
            self.announce(seed);
            self.announce_repeats.insert(seed, SEED_ANNOUNCE_REPEATS);
        }
        self.drain(now);
    }

    /// Asks foca to announce this node to whoever listens at `to`; the
    /// caller drains.
    fn announce(&mut self, to: SocketAddr) {
        if let Err(e) = self.foca.announce(NodeId::seed(to), &mut self.runtime) {
            self.fault(ClusterFault::Announce { to, source: e });
        }
    }

    /// A datagram arrived: a report datagram ([`wire::is_reports`]) goes to
    /// the view, anything else to foca. A report datagram is decoded whole
    /// before any of its shards is applied, so a bad one changes nothing;
    /// shards from an origin foca holds down, or no newer than what is
    /// held, are ignored (not an error).
    ///
    /// A report datagram from an origin foca does not know at all (it
    /// missed the origin's join: gossip reaches each node with high
    /// probability only, and at 1000 nodes some miss) makes this node
    /// announce itself to the origin, at most once per `report_refresh`:
    /// the origin's answer names it, so foca learns it within one round
    /// trip and this node starts sending it reports too. Without this,
    /// only the full-state sync (every `sync_interval`) would repair the
    /// miss, and the origin would get no report from this node meanwhile.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) -> Result<(), ClusterError> {
        if wire::is_reports(data) {
            return self.handle_reports(now, None, data);
        }
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let result = self.foca.handle_data(data, &mut self.runtime);
        // Even a refused packet may have been partly applied (foca reads
        // members before the rest): always collect what it produced.
        self.drain(now);
        result.map_err(|e| {
            self.stats.bad_datagrams += 1;
            ClusterError::Swim(e)
        })
    }

    /// A report datagram: decoded whole, then (from a peer certified as
    /// `certified`) refused whole if any shard's origin is a live member
    /// of another name or an older process of a name a newer one holds,
    /// then applied shard by shard.
    fn handle_reports(
        &mut self,
        now: Instant,
        certified: Option<&str>,
        data: &[u8],
    ) -> Result<(), ClusterError> {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let shards = wire::decode_reports(data).map_err(|e| {
            self.stats.bad_datagrams += 1;
            ClusterError::Wire(e)
        })?;
        if let Some(certified) = certified {
            for s in &shards {
                let refused = match self.live_names.get(&s.origin) {
                    Some(name) if name != certified => true,
                    Some(name) => self
                        .owners
                        .get(name)
                        .is_some_and(|owner| owner.addr != s.origin),
                    None => false,
                };
                if refused {
                    self.stats.impostors_refused += 1;
                    return Err(ClusterError::Impersonation {
                        certified: certified.to_owned(),
                        claimed: Box::new(NodeId::new(
                            s.origin,
                            self.live_names.get(&s.origin).cloned().unwrap_or_default(),
                            s.epoch,
                        )),
                    });
                }
            }
        }
        let mut unknown = None;
        for s in shards {
            let origin = s.origin;
            if !self.live.contains(&origin) && !self.down.contains(&origin) {
                unknown = Some(origin);
            }
            self.accept(now, s);
        }
        if let Some(origin) = unknown {
            self.announce_to_unknown(now, origin);
        }
        Ok(())
    }

    /// [`Cluster::handle_datagram`] from a peer whose certificate names
    /// `certified`: a SWIM packet must come from an identity of that name,
    /// a report datagram may carry only shards of an origin whose live
    /// member has that name (or is unknown), and an older process with the
    /// name of a newer live member is refused. A refused datagram changes
    /// nothing.
    pub fn handle_datagram_from(
        &mut self,
        now: Instant,
        certified: &str,
        data: &[u8],
    ) -> Result<(), ClusterError> {
        if wire::is_reports(data) {
            // The origins are checked after the decode, before any shard
            // is applied (see `handle_reports`).
            return self.handle_reports(now, Some(certified), data);
        }
        if let Ok(sender) = wire::swim_sender(data) {
            self.check_claim(certified, &sender)?;
        }
        self.handle_datagram(now, data)
    }

    /// [`Cluster::handle_sync`] from a peer whose certificate names
    /// `certified`: the sync's sender must have that name.
    pub fn handle_sync_from(
        &mut self,
        now: Instant,
        certified: &str,
        data: &[u8],
    ) -> Result<NodeId, ClusterError> {
        let state = wire::decode_sync(data)?;
        self.check_claim(certified, &state.from)?;
        self.apply_sync(now, state)
    }

    /// Whether `sender` may speak for itself: its name is its certificate's,
    /// and no newer live process holds that name.
    fn check_claim(&mut self, certified: &str, sender: &NodeId) -> Result<(), ClusterError> {
        if sender.name != certified {
            self.stats.impostors_refused += 1;
            return Err(ClusterError::Impersonation {
                certified: certified.to_owned(),
                claimed: Box::new(sender.clone()),
            });
        }
        let me = self.identity();
        let owner = if sender.name == me.name {
            Some(me.clone())
        } else {
            self.owners.get(&sender.name).cloned()
        };
        if let Some(owner) = owner
            && owner.addr != sender.addr
        {
            if (owner.epoch, owner.bump) > (sender.epoch, sender.bump) {
                self.stats.impostors_refused += 1;
                return Err(ClusterError::Superseded {
                    sender: Box::new(sender.clone()),
                    owner: Box::new(owner),
                });
            }
            if owner == *self.identity() && self.name_taken_by.as_ref() != Some(sender) {
                self.name_taken_by = Some(sender.clone());
                self.push_event(ClusterEvent::NameTaken { by: sender.clone() });
            }
        }
        Ok(())
    }

    /// Fires every timer due at `now`, asks for a report when one is due,
    /// and drops expired shards.
    pub fn handle_timeout(&mut self, now: Instant) {
        for _ in 0..TIMERS_PER_CALL_MAX {
            let Some(timer) = self.timers.pop_due(now) else {
                break;
            };
            if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
                self.fault(ClusterFault::Timer(e));
            }
            self.drain(now);
        }
        if !self.is_alone()
            && self
                .seeds_announced
                .is_none_or(|t| now - t >= MISSING_SEED_ANNOUNCE_INTERVAL)
        {
            self.seeds_announced = Some(now);
            let missing: Vec<SocketAddr> = self
                .seeds
                .iter()
                .copied()
                .filter(|a| !self.live.contains(a))
                .collect();
            for seed in missing {
                self.announce(seed);
            }
            self.drain(now);
        }
        if now >= self.next_report {
            self.repeat_announces(now);
            self.push_event(ClusterEvent::ReportDue);
            // Skip missed periods instead of bursting after a stall.
            self.next_report = (self.next_report + self.config.report_interval).max(now);
            self.view.expire(now, self.config.report_ttl);
            let refresh = self.config.report_refresh;
            self.announced.retain(|_, t| now - *t < refresh);
            // Forget versions of origins foca no longer remembers at all.
            let known: BTreeSet<SocketAddr> = self
                .foca
                .iter_membership_state()
                .map(|m| m.id().addr)
                .collect();
            self.inbox.retain_origins(|o| known.contains(o));
        }
    }

    /// Publishes this node's report (every backend of every listener):
    /// each shard whose entries changed since it was last published, again
    /// in the next [`CHANGED_RESENDS`] intervals (a datagram can be lost),
    /// and each unchanged one older than `report_refresh` (so peers' copies
    /// stay within `report_ttl`). The due shards are packed into report
    /// datagrams and sent at once to every live member; members in their
    /// welcome window (just up) get every shard instead. `urgent` marks a
    /// health flip; since every publication goes out at once, it changes
    /// nothing (it did when reports rode on SWIM gossip).
    pub fn publish_report(&mut self, now: Instant, entries: &[ReportEntry], urgent: bool) {
        let _ = urgent;
        let me = self.identity().addr;
        // Fleet state rides on the report: each entry carries the newest
        // drain mark this node knows for its backend.
        let entries: Vec<ReportEntry> = entries
            .iter()
            .map(|e| ReportEntry {
                drain: self.drains.get(&e.key).copied(),
                ..*e
            })
            .collect();
        let fresh = report::shard(
            me,
            self.epoch,
            self.report_seq + 1,
            &entries,
            &self.own_clients,
        );
        let refresh = self.config.report_refresh;
        let recent = self.resend_window();
        let mut changed = vec![true; fresh.len()];
        for (i, new) in fresh.iter().enumerate() {
            if let Some(old) = self.own_shards.get(i) {
                changed[i] = old.entries != new.entries
                    || old.shards != new.shards
                    || old.clients != new.clients;
            }
        }
        let due: Vec<usize> = (0..fresh.len())
            .filter(|&i| {
                let published = self.own_published.get(i).copied();
                let changed_at = self.own_changed.get(i).copied();
                match (published, changed_at) {
                    (Some(p), Some(c)) => changed[i] || now - c < recent || now - p >= refresh,
                    _ => true,
                }
            })
            .collect();
        self.own_shards.truncate(fresh.len());
        self.own_published.truncate(fresh.len());
        self.own_changed.truncate(fresh.len());
        self.welcome.retain(|_, until| *until >= now);
        if due.is_empty() && self.welcome.is_empty() {
            return;
        }
        if !due.is_empty() {
            self.report_seq += 1;
            self.stats.reports_published += 1;
        }
        let mut sent = Vec::with_capacity(due.len());
        for &i in &due {
            let s = &fresh[i];
            if i < self.own_shards.len() {
                self.own_shards[i] = s.clone();
                self.own_published[i] = now;
                if changed[i] {
                    self.own_changed[i] = now;
                }
            } else {
                self.own_shards.push(s.clone());
                self.own_published.push(now);
                self.own_changed.push(now);
            }
            sent.push(s.clone());
            self.stats.shards_published += 1;
        }
        let members: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        let (welcomed, others): (Vec<SocketAddr>, Vec<SocketAddr>) = members
            .into_iter()
            .partition(|a| self.welcome.contains_key(a));
        self.send_shards(&others, &sent);
        let all = self.own_shards.clone();
        self.send_shards(&welcomed, &all);
        self.drain(now);
    }

    /// How long after a change a shard is re-sent, and after a member
    /// comes up it gets every shard: [`CHANGED_RESENDS`] more report ticks
    /// (half an interval of slack for ticks that come a little late).
    fn resend_window(&self) -> std::time::Duration {
        self.config.report_interval * CHANGED_RESENDS + self.config.report_interval / 2
    }

    /// Packs `shards` into report datagrams and queues them for each of
    /// `to`.
    fn send_shards(&mut self, to: &[SocketAddr], shards: &[ReportShard]) {
        if to.is_empty() || shards.is_empty() {
            return;
        }
        let datagrams = match wire::encode_reports(shards, SWIM_PACKET_BYTES_MAX) {
            Ok(d) => d,
            Err(e) => {
                self.fault(ClusterFault::PackReports {
                    shards: shards.len(),
                    source: e,
                });
                return;
            }
        };
        for &addr in to {
            for data in &datagrams {
                self.push_transmit(Transmit {
                    to: addr,
                    data: data.clone(),
                });
            }
        }
    }

    /// An operator's drain (`draining`) or undrain of `key`, issued on this
    /// node at wall-clock time `wall_ms`: a mark newer than any this node
    /// has seen (see [`DrainMark`]). It travels in this node's next
    /// publication; the caller publishes at once.
    pub fn set_drain(&mut self, key: BackendKey, draining: bool, wall_ms: u64) -> DrainMark {
        let mark = DrainMark {
            version: wall_ms.max(self.drain_clock.saturating_add(1)),
            draining,
        };
        self.adopt_drain(key, mark);
        mark
    }

    /// Keeps `mark` if it supersedes what is held for `key`.
    fn adopt_drain(&mut self, key: BackendKey, mark: DrainMark) -> bool {
        self.drain_clock = self.drain_clock.max(mark.version);
        if !mark.supersedes(self.drains.get(&key)) {
            return false;
        }
        self.drains.insert(key, mark);
        self.drain_generation += 1;
        true
    }

    /// Repeats the announces to seeds not yet held alive (see
    /// [`SEED_ANNOUNCE_REPEATS`]).
    fn repeat_announces(&mut self, now: Instant) {
        let live = &self.live;
        self.announce_repeats
            .retain(|addr, left| *left > 0 && !live.contains(addr));
        let due: Vec<SocketAddr> = self.announce_repeats.keys().copied().collect();
        if due.is_empty() {
            return;
        }
        for addr in due {
            self.announce(addr);
            if let Some(left) = self.announce_repeats.get_mut(&addr) {
                *left -= 1;
            }
        }
        self.drain(now);
    }

    /// Announces this node to `origin`, which sends reports but which foca
    /// does not know, unless it did so within `report_refresh`.
    fn announce_to_unknown(&mut self, now: Instant, origin: SocketAddr) {
        if origin == self.identity().addr
            || self
                .announced
                .get(&origin)
                .is_some_and(|t| now - *t < self.config.report_refresh)
        {
            return;
        }
        self.announced.insert(origin, now);
        self.stats.unknown_origin_announces += 1;
        self.announce(origin);
        self.drain(now);
    }

    /// Applies a peer's shard if its origin is not held down and it is
    /// newer than what is held.
    fn accept(&mut self, now: Instant, mut shard: ReportShard) -> bool {
        // A shard from an origin foca holds down is stale news.
        if self.down.contains(&shard.origin) || !self.inbox.offer(&shard) {
            return false;
        }
        // Report datagrams are checked when decoded; shards from a sync
        // are held to the same bound here.
        if shard.shard != 0 {
            shard.clients.clear();
        }
        shard.clients.truncate(CLIENT_ADDRS_MAX);
        for e in &shard.entries {
            if let Some(mark) = e.drain {
                self.adopt_drain(e.key, mark);
            }
        }
        self.stats.shards_applied += 1;
        self.view.apply(now, shard);
        true
    }

    /// Everything this node knows, for a push-pull sync.
    pub fn sync_message(&self) -> Result<Vec<u8>, WireError> {
        let mut members: Vec<Member<NodeId>> = self.foca.iter_membership_state().cloned().collect();
        members.push(Member::alive(self.identity().clone()));
        let reports = self
            .view
            .shards()
            .chain(self.own_shards.iter())
            .cloned()
            .collect();
        wire::encode_sync(&SyncState {
            from: self.identity().clone(),
            members,
            reports,
        })
    }

    /// Applies a peer's sync message: its members through foca (so the
    /// usual SWIM rules decide), then its shards through the same rules as
    /// report datagrams (newer wins, none from an origin held down).
    /// Returns who sent it.
    pub fn handle_sync(&mut self, now: Instant, data: &[u8]) -> Result<NodeId, ClusterError> {
        let state = wire::decode_sync(data)?;
        self.apply_sync(now, state)
    }

    fn apply_sync(&mut self, now: Instant, state: SyncState) -> Result<NodeId, ClusterError> {
        let me = self.identity().addr;
        let members = state.members.into_iter().filter(|m| m.id().addr != me);
        if let Err(e) = self.foca.apply_many(members, true, &mut self.runtime) {
            self.fault(ClusterFault::SyncMembers {
                from: Box::new(state.from.clone()),
                source: e,
            });
        }
        self.drain(now);
        for s in state.reports {
            self.accept(now, s);
        }
        Ok(state.from)
    }

    /// Tells the fleet this node leaves, so peers drop its counts at once.
    pub fn leave(&mut self, now: Instant) {
        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
            self.fault(ClusterFault::Leave(e));
        }
        self.drain(now);
    }

    // ----- outputs -----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += t.data.len() as u64;
        if wire::is_reports(&t.data) {
            self.stats.report_datagrams_out += 1;
        }
        Some(t)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        self.events.pop_front()
    }

    /// When [`Cluster::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        match self.timers.next_deadline() {
            Some(t) => t.min(self.next_report),
            None => self.next_report,
        }
    }

    /// A live member `id`: records its name; a second live process of one
    /// name keeps the newer identity as the name's owner and drops the
    /// other's counts (its datagrams are refused from now on).
    fn name_up(&mut self, id: &NodeId) {
        self.live_names.insert(id.addr, id.name.clone());
        let held = self.owners.get(&id.name).cloned();
        match held {
            Some(owner) if owner.addr != id.addr && self.live.contains(&owner.addr) => {
                let (kept, refused) = if (id.epoch, id.bump) > (owner.epoch, owner.bump) {
                    (id.clone(), owner)
                } else {
                    (owner, id.clone())
                };
                self.view.remove_origin(refused.addr);
                self.owners.insert(kept.name.clone(), kept.clone());
                self.push_event(ClusterEvent::DuplicateName { kept, refused });
            }
            _ => {
                self.owners.insert(id.name.clone(), id.clone());
            }
        }
    }

    fn name_down(&mut self, id: &NodeId) {
        self.live_names.remove(&id.addr);
        if self.owners.get(&id.name).is_some_and(|o| o.addr == id.addr) {
            self.owners.remove(&id.name);
            // Another live process of the name (the one refused) takes it.
            if let Some((&addr, _)) = self.live_names.iter().find(|(_, n)| **n == id.name)
                && let Some(next) = self
                    .foca
                    .iter_members()
                    .map(|m| m.id())
                    .find(|m| m.addr == addr)
            {
                self.owners.insert(id.name.clone(), next.clone());
            }
        }
    }

    fn fault(&mut self, fault: ClusterFault) {
        self.push_event(ClusterEvent::Error(Arc::new(fault)));
    }

    fn push_event(&mut self, event: ClusterEvent) {
        if self.events.len() >= EVENTS_QUEUED_MAX && !matches!(event, ClusterEvent::ReportDue) {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn push_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= TRANSMITS_QUEUED_MAX {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.transmits.push_back(t);
    }

    /// Moves what foca produced into our queues, applies membership
    /// changes to the view, and welcomes members that came up.
    fn drain(&mut self, now: Instant) {
        let mut welcome = BTreeSet::new();
        let mut rejoined = false;
        while let Some((to, data)) = self.runtime.to_send() {
            if self.is_stale_down_notice(&to, &data) {
                self.stats.stale_down_notices_dropped += 1;
                continue;
            }
            self.push_transmit(Transmit {
                to: to.addr,
                data: data.to_vec(),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push(now + after, timer);
        }
        while let Some(n) = self.runtime.to_notify() {
            let event = match n {
                OwnedNotification::MemberUp(id) => {
                    self.members_generation += 1;
                    self.down.remove(&id.addr);
                    self.live.insert(id.addr);
                    welcome.insert(id.addr);
                    self.name_up(&id);
                    ClusterEvent::MemberUp(id)
                }
                OwnedNotification::MemberDown(id) => {
                    self.members_generation += 1;
                    self.view.remove_origin(id.addr);
                    self.down.insert(id.addr);
                    self.live.remove(&id.addr);
                    self.name_down(&id);
                    self.welcome.remove(&id.addr);
                    welcome.remove(&id.addr);
                    ClusterEvent::MemberDown(id)
                }
                // A restarted member lost our shards with its old life.
                OwnedNotification::Rename(from, to) => {
                    self.members_generation += 1;
                    welcome.insert(to.addr);
                    self.name_down(&from);
                    self.name_up(&to);
                    ClusterEvent::Renamed { from, to }
                }
                // The others dropped our shards when they held us down.
                OwnedNotification::Rejoin(id) => {
                    rejoined = true;
                    welcome.extend(self.foca.iter_members().map(|m| m.id().addr));
                    ClusterEvent::Rejoined(id)
                }
                OwnedNotification::Active => ClusterEvent::Active,
                OwnedNotification::Idle => ClusterEvent::Idle,
                OwnedNotification::Defunct => ClusterEvent::Defunct,
                #[allow(unreachable_patterns)]
                _ => continue,
            };
            self.push_event(event);
        }
        // foca 2.0's change_identity (a rejoin) leaves it Disconnected even
        // while it holds live members: its timers carry the old token, so no
        // probe, gossip or announce runs until an update arrives from a
        // live member, which may be dead by then (`fleet-swarm` seed 524).
        // An empty apply re-evaluates the connection state.
        if rejoined && !self.is_alone() {
            if let Err(e) = self
                .foca
                .apply_many(std::iter::empty(), false, &mut self.runtime)
            {
                self.fault(ClusterFault::AfterRejoin(e));
            }
            self.drain(now);
        }
        self.resize_swim();
        if !welcome.is_empty() {
            // Every shard at once (if a report was published yet), and at
            // the next report ticks: the first datagrams may arrive before
            // the member holds this node alive, or find no connection yet.
            let until = now + self.resend_window();
            let to: Vec<SocketAddr> = welcome.into_iter().collect();
            for &a in &to {
                self.welcome.insert(a, until);
            }
            let all = self.own_shards.clone();
            self.send_shards(&to, &all);
        }
    }

    /// Whether `data`, which foca is sending to `to`, is a Down notice
    /// (`TurnUndead`) to a member foca holds alive with that very
    /// identity. foca 2.0 sends one whenever a suspicion's timer runs
    /// out, even when the member refuted the suspicion in time (its
    /// timer then finds a newer incarnation and changes nothing, but
    /// the notice goes anyway), and the member, told it is down, renews
    /// its identity: every refuted suspicion became a false death
    /// (decision 50). A real Down notice (the suspicion ran out, or the
    /// sender is held down) goes to a member foca no longer holds alive,
    /// so it is kept.
    fn is_stale_down_notice(&self, to: &NodeId, data: &[u8]) -> bool {
        matches!(
            wire::swim_header(data),
            Ok(h) if h.message == foca::Message::TurnUndead
        ) && self.foca.iter_members().any(|m| m.id() == to)
    }

    /// Re-derives foca's dissemination count (of member updates) and
    /// suspicion timeout from the live node count (memberlist's LAN rules,
    /// with this node's [`Detection`]), as the fleet grows or shrinks. The
    /// configured packet size and periods stay.
    fn resize_swim(&mut self) {
        let n = self.live_nodes().max(3);
        if n == self.sized_for {
            return;
        }
        let lan = self.config.detection.swim(n, SWIM_PACKET_BYTES_MAX);
        let config = foca::Config {
            max_transmissions: lan.max_transmissions,
            suspect_to_down_after: lan.suspect_to_down_after,
            ..self.config.swim.clone()
        };
        match self.foca.set_config(config) {
            Ok(()) => self.sized_for = n,
            Err(e) => {
                self.sized_for = n;
                self.fault(ClusterFault::Resize {
                    nodes: n,
                    source: e,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
