//! The fleet shell: one task that carries bytes and time between this
//! node's [`shoal_core::node::Node`] and the QUIC transport, the seed
//! resolver, the listeners' pools and tokio's timers.
//!
//! It holds I/O only. When to pull a seed's state, re-seed, re-resolve,
//! sync, publish, leave or close is decided by the core's `Node` (see the
//! module doc of `shoal_core::node`), which the simulator drives through
//! the same methods. Here: a datagram, a sync request or answer, resolved
//! seeds, a health flip, a `/status` request or the node's deadline
//! becomes one `handle_*` call; then the node's transmits go to the
//! transport, its actions are carried out (resolve on a task, a sync on a
//! stream, open the listeners, close the transport), its events become
//! log lines and metrics, and with `[dns]` each new DNS answer the node
//! gives goes to the DNS server ([`crate::dns`]) through a `watch`.

use crate::clock::Clock;
use crate::listener::{FleetWakes, ListenerState};
use crate::metrics::Metrics;
use bytes::Bytes;
use rand::RngExt;
use shoal_config::ClusterConfig as FleetConfig;
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::{BackendKey, DrainMark};
use shoal_core::cluster::{ClusterFault, ClusterStats};
use shoal_core::dns::ClientAnswer;
use shoal_core::node::{
    Action, FleetStatus, Node, NodeEvent, NodeStats, Phase, Pools, SYNCS_IN_FLIGHT_MAX,
    SyncFailure, SyncKind, SyncRequest, UnknownBackend, WarmStart,
};
use shoal_core::{Instant, Pool};
use shoal_seeds::{SeedLimits, SeedResolver};
use shoal_transport::{
    ClusterTls, Incoming, TlsFiles, Transport, TransportError, TransportLimits, TransportStats,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Why the fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// `cluster.ca`, `cluster.cert` or `cluster.key` could not be used.
    #[error("cluster certificates: {0}")]
    Tls(#[source] shoal_transport::TlsError),
    #[error("cluster.bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: TransportError,
    },
    #[error("cluster.resolver: {0}")]
    Resolver(#[source] shoal_seeds::SeedError),
    /// `node.name` is not the name the node certificate states.
    #[error(
        "node.name = {configured:?} is not the name in cluster.cert ({certified:?}): a node's name in the fleet is the one its certificate states"
    )]
    NameMismatch {
        configured: String,
        certified: String,
    },
}

/// Checks that `node_name` is the name `tls`'s certificate states: peers
/// accept from a node only the identity its certificate names.
pub fn check_name(node_name: &str, tls: &ClusterTls) -> Result<(), FleetError> {
    if tls.node_name() != node_name {
        return Err(FleetError::NameMismatch {
            configured: node_name.to_owned(),
            certified: tls.node_name().to_owned(),
        });
    }
    Ok(())
}

/// Admin requests waiting for the fleet task, at most.
const ADMIN_REQUESTS_MAX: usize = 16;

/// What a live reload does to the listeners on the fleet task, between
/// two of the core node's inputs (which read the pools with the report
/// keys): changes the pools, and returns the listeners as they are now, in
/// the new configuration's order.
pub type ReloadApply = Box<dyn FnOnce() -> Vec<Arc<ListenerState>> + Send>;

/// What the admin endpoint (and a reload) asks of the fleet task.
enum Request {
    Status(oneshot::Sender<FleetStatus>),
    Drain {
        key: BackendKey,
        draining: bool,
        reply: oneshot::Sender<Result<DrainMark, UnknownBackend>>,
    },
    Reload {
        apply: ReloadApply,
        /// The certificates re-read from disk, to serve and dial with
        /// (boxed: the request queue's slots stay small).
        tls: Option<Box<ClusterTls>>,
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Status(_) => "Status",
            Request::Drain { .. } => "Drain",
            Request::Reload { .. } => "Reload",
        })
    }
}

/// Each listener's report keys, one per pool slot (decision 57: a slot
/// whose backend is gone keeps its last key until a reload reuses it).
fn keys_of(listeners: &[Arc<ListenerState>]) -> Vec<Vec<BackendKey>> {
    listeners
        .iter()
        .map(|l| {
            let b = l.lock();
            (0..b.pool.slots())
                .map(|i| BackendKey::new(&l.name, &b.pool.spec(shoal_core::BackendId(i)).name))
                .collect()
        })
        .collect()
}

/// Asks the fleet task for what `/status` and `/metrics` show of the
/// fleet (built when asked, not after every datagram), and carries
/// operators' fleet-wide commands to the node.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    requests: mpsc::Sender<Request>,
}

impl FleetHandle {
    /// The fleet as the node sees it now; `None` once the task has ended.
    pub async fn status(&self) -> Option<FleetStatus> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Drains (or undrains) `key` fleet-wide; `None` once the task has
    /// ended.
    pub async fn drain(
        &self,
        key: BackendKey,
        draining: bool,
    ) -> Option<Result<DrainMark, UnknownBackend>> {
        let (reply, rx) = oneshot::channel();
        let request = Request::Drain {
            key,
            draining,
            reply,
        };
        self.requests.send(request).await.ok()?;
        rx.await.ok()
    }

    /// Runs `apply` on the fleet task and has the node follow the
    /// listeners it returns (new report keys, checkers, a report at
    /// once); with `tls`, new fleet connections use it from then on
    /// ([`Transport::set_tls`]). Once the task has ended (the endpoint is
    /// closed), `apply` is given back, to be run by the caller.
    pub async fn reload(
        &self,
        apply: ReloadApply,
        tls: Option<ClusterTls>,
    ) -> Result<(), ReloadApply> {
        let (reply, rx) = oneshot::channel();
        let request = Request::Reload {
            apply,
            tls: tls.map(Box::new),
            reply,
        };
        match self.requests.send(request).await {
            Ok(()) => {
                // The task ran it, or ended with it unrun (dropped): the
                // pools are changed in either case only by it.
                let _ = rx.await;
                Ok(())
            }
            Err(mpsc::error::SendError(Request::Reload { apply, .. })) => Err(apply),
            Err(_) => unreachable!("the request sent was a reload"),
        }
    }
}

/// Wall-clock milliseconds, the floor of a drain mark's version.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The listeners' pools, as the node reaches them: each behind its lock.
struct Listeners<'a>(&'a [Arc<ListenerState>]);

impl Pools for Listeners<'_> {
    fn each(&mut self, f: &mut dyn FnMut(usize, &mut Pool)) {
        for (i, l) in self.0.iter().enumerate() {
            let mut b = l.lock();
            let before = b.pool.poll_timeout();
            f(i, &mut b.pool);
            l.views.notify_waiters();
            let after = b.pool.poll_timeout();
            if after.is_some_and(|t| before.is_none_or(|b| t < b)) {
                l.checks_moved.notify_one();
            }
        }
    }
}

type SyncResult = (u64, SocketAddr, Result<Vec<u8>, SyncError>);

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Transport(TransportError),
    #[error("no answer by the node's deadline")]
    Deadline,
}

/// The fleet shell of one node.
pub struct Fleet {
    node: Node,
    /// The certificates the transport serves and dials with now.
    tls: ClusterTls,
    transport: Transport,
    incoming: mpsc::Receiver<Incoming>,
    resolver: SeedResolver,
    seeds: Vec<String>,
    listeners: Vec<Arc<ListenerState>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    wakes: Arc<FleetWakes>,
    requests: mpsc::Receiver<Request>,
    handle: FleetHandle,
    sync_tx: mpsc::Sender<SyncResult>,
    sync_rx: mpsc::Receiver<SyncResult>,
    seeds_tx: mpsc::Sender<Vec<SocketAddr>>,
    seeds_rx: mpsc::Receiver<Vec<SocketAddr>>,
    ready: Option<oneshot::Sender<()>>,
    /// Where the fleet's DNS answer goes, with `[dns]`.
    answer: Option<watch::Sender<Arc<ClientAnswer>>>,
    closed: bool,
    counted: ClusterStats,
    counted_node: NodeStats,
    counted_transport: TransportStats,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What the fleet shell shares with the rest of the node.
#[derive(Debug)]
pub struct NodeParts {
    pub node_name: String,
    pub listeners: Vec<Arc<ListenerState>>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Woken by the listeners on a health flip or a budget raise, and
    /// once a report when a connection count changed.
    pub wakes: Arc<FleetWakes>,
    /// With `[dns]`: gets the fleet's DNS answer whenever it changes.
    pub answer: Option<watch::Sender<Arc<ClientAnswer>>>,
}

impl Fleet {
    /// Binds the QUIC endpoint (so a bad certificate or a port in use fails
    /// the start), with the certificates from `config`'s files, or `tls`
    /// when given (the demo keeps them in memory). The node's warm start
    /// begins now; `ready` fires when its listeners may accept.
    pub fn bind(
        config: &FleetConfig,
        tls: Option<&ClusterTls>,
        parts: NodeParts,
        ready: oneshot::Sender<()>,
    ) -> Result<Fleet, FleetError> {
        let loaded;
        let tls = match tls {
            Some(tls) => tls,
            None => {
                loaded = ClusterTls::load(&TlsFiles {
                    ca: config.ca.clone(),
                    cert: config.cert.clone(),
                    key: config.key.clone(),
                })
                .map_err(FleetError::Tls)?;
                &loaded
            }
        };
        check_name(&parts.node_name, tls)?;
        let NodeParts {
            node_name,
            listeners,
            clock,
            metrics,
            wakes,
            answer,
        } = parts;
        let settings = config.settings.clone();
        let limits = TransportLimits {
            request_bytes_max: shoal_core::wire::SYNC_BYTES_MAX,
            request_timeout_ms: u64::try_from(settings.sync_timeout.as_millis())
                .unwrap_or(u64::MAX),
            ..TransportLimits::default()
        };
        let tls = tls.clone();
        let (transport, incoming) =
            Transport::bind(config.bind, &tls, limits).map_err(|source| FleetError::Bind {
                addr: config.bind,
                source,
            })?;
        let resolver = SeedResolver::new(config.resolver, SeedLimits::default())
            .map_err(FleetError::Resolver)?;
        // The epoch orders this start after every earlier one of the node:
        // milliseconds of wall-clock time are enough for that.
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        // Port 0 (tests, demos): advertise the port the kernel picked.
        let advertise = match config.advertise.port() {
            0 => SocketAddr::new(config.advertise.ip(), transport.local_addr().port()),
            _ => config.advertise,
        };
        let identity = NodeId::new(advertise, node_name, epoch);
        let keys = keys_of(&listeners);
        let mut rng: rand::rngs::SmallRng = rand::make_rng();
        let node = Node::new(identity, settings, keys, rng.random(), clock.now());
        let (sync_tx, sync_rx) = mpsc::channel(SYNCS_IN_FLIGHT_MAX);
        let (seeds_tx, seeds_rx) = mpsc::channel(1);
        let (requests_tx, requests) = mpsc::channel(ADMIN_REQUESTS_MAX);
        Ok(Fleet {
            node,
            tls,
            transport,
            incoming,
            resolver,
            seeds: config.seeds.clone(),
            listeners,
            clock,
            metrics,
            wakes,
            requests,
            handle: FleetHandle {
                requests: requests_tx,
            },
            sync_tx,
            sync_rx,
            seeds_tx,
            seeds_rx,
            ready: Some(ready),
            answer,
            closed: false,
            counted: ClusterStats::default(),
            counted_node: NodeStats::default(),
            counted_transport: TransportStats::default(),
        })
    }

    /// The QUIC endpoint's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// The certificates the fleet endpoint was bound with.
    pub fn tls(&self) -> &ClusterTls {
        &self.tls
    }

    /// For `/status` and `/metrics`.
    pub fn handle(&self) -> FleetHandle {
        self.handle.clone()
    }

    /// Runs until `stop` and the node's close: tells the node to leave
    /// when `leave` is cancelled (the listeners stop accepting), keeps
    /// carrying until the drain is over (`stop`) and the leave's linger
    /// has passed, then closes the transport.
    pub async fn run(mut self, leave: CancellationToken, stop: CancellationToken) {
        self.carry();
        let mut stopping = false;
        while !(stopping && self.closed) {
            let mut reload = None;
            let deadline = self.clock.to_std(self.node.poll_timeout());
            let leaving = matches!(self.node.phase(), Phase::Leaving | Phase::Closed);
            let mut pools = Listeners(&self.listeners);
            tokio::select! {
                biased;
                // Before `stop`: a node with nothing to drain gets both at
                // once, and must still say goodbye.
                () = leave.cancelled(), if !leaving => {
                    self.node.handle_leave(self.clock.now(), &mut pools);
                }
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    self.node.handle_leave(self.clock.now(), &mut pools);
                }
                Some(incoming) = self.incoming.recv() => {
                    let now = self.clock.now();
                    handle_incoming(&mut self.node, now, incoming, &mut pools);
                }
                Some((id, peer, result)) = self.sync_rx.recv() => {
                    let now = self.clock.now();
                    match result {
                        Ok(answer) => self.node.handle_sync_answer(now, id, &answer, &mut pools),
                        Err(e) => {
                            debug!(peer = %peer, error = %e, "sync request got no answer");
                            self.node.handle_sync_failed(now, id, &mut pools);
                        }
                    }
                }
                Some(addrs) = self.seeds_rx.recv() => {
                    self.node.handle_seeds(self.clock.now(), &addrs, &mut pools);
                }
                () = self.wakes.flips.notified() => {
                    self.node.handle_health_changed(self.clock.now(), &mut pools);
                }
                () = self.wakes.counts.notified() => {
                    self.node.handle_counts_changed(self.clock.now(), &mut pools);
                }
                Some(request) = self.requests.recv() => match request {
                    Request::Status(reply) => {
                        let status = self.node.status(self.clock.now());
                        let age = self.node.cluster().view().max_age(self.clock.now());
                        self.metrics
                            .report_age_seconds
                            .set(age.map_or(0.0, |d| d.as_secs_f64()));
                        let _ = reply.send(status);
                    }
                    Request::Drain { key, draining, reply } => {
                        let now = self.clock.now();
                        let result = self.node.handle_drain(now, wall_ms(), key, draining, &mut pools);
                        if let Ok(mark) = &result {
                            info!(backend_key = ?key, draining, version = mark.version,
                                "fleet-wide drain command");
                        }
                        let _ = reply.send(result);
                    }
                    // After the select: it replaces the listeners `pools`
                    // borrows.
                    Request::Reload { apply, tls, reply } => reload = Some((apply, tls, reply)),
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.node.handle_timeout(self.clock.now(), &mut pools);
                }
            }
            if let Some((apply, tls, reply)) = reload {
                if let Some(tls) = tls {
                    self.transport.set_tls(&tls);
                    self.tls = *tls;
                }
                self.listeners = apply();
                let keys = keys_of(&self.listeners);
                let mut pools = Listeners(&self.listeners);
                self.node.handle_reload(self.clock.now(), keys, &mut pools);
                let _ = reply.send(());
            }
            self.carry();
        }
        self.transport.close_and_wait().await;
        debug!("fleet transport closed");
    }

    /// Carries the node's outputs out: transmits, actions, events.
    fn carry(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            self.transport.send_datagram(t.to, Bytes::from(t.data));
        }
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Resolve => self.spawn_resolve(),
                Action::Sync(request) => self.spawn_sync(request),
                Action::Accept => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(());
                    }
                }
                Action::Close => self.closed = true,
            }
        }
        while let Some(event) = self.node.poll_event() {
            log_event(event);
        }
        if let Some(tx) = &self.answer
            && let Some(answer) = self.node.poll_client_answer()
        {
            debug!(v4 = ?answer.v4, v6 = ?answer.v6, "dns answer");
            tx.send_replace(Arc::new(answer));
        }
        self.count();
    }

    fn spawn_resolve(&self) {
        let resolver = self.resolver.clone();
        let seeds = self.seeds.clone();
        let tx = self.seeds_tx.clone();
        // Failures are loud while the node has not started serving (a
        // typo in a seed), quiet when re-resolving.
        let loud = self.node.phase() == Phase::Warming;
        tokio::spawn(async move {
            let resolved = resolver.resolve(&seeds).await;
            for e in &resolved.errors {
                if loud {
                    warn!(error = %e, "seed");
                } else {
                    debug!(error = %e, "seed");
                }
            }
            let _ = tx.send(resolved.addrs).await;
        });
    }

    fn spawn_sync(&self, request: SyncRequest) {
        let SyncRequest {
            id,
            to,
            data,
            deadline,
        } = request;
        let deadline = self.clock.to_std(deadline);
        let transport = self.transport.clone();
        let tx = self.sync_tx.clone();
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout_at(deadline.into(), transport.request(to, data)).await {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(e)) => Err(SyncError::Transport(e)),
                    Err(_) => Err(SyncError::Deadline),
                };
            let _ = tx.send((id, to, result)).await;
        });
    }

    /// Counters and the cheap gauges, after every input (O(1)).
    fn count(&mut self) {
        let m = &self.metrics;
        m.cluster_members.set(i64::from(self.node.live_nodes()));
        let stats = self.node.cluster_stats();
        m.count_gossip(&self.counted, &stats);
        let node = self.node.stats();
        m.defunct.inc_by(node.defunct - self.counted_node.defunct);
        m.reports_early
            .inc_by(node.early_reports - self.counted_node.early_reports);
        let dropped = |n: &NodeStats, c: &ClusterStats| {
            n.events_dropped + c.events_dropped + c.transmits_dropped
        };
        m.fleet_events_dropped
            .inc_by(dropped(&node, &stats) - dropped(&self.counted_node, &self.counted));
        self.counted_node = node;
        self.counted = stats;
        let transport = self.transport.stats();
        m.count_drops(&self.counted_transport, &transport);
        m.peers_refused
            .inc_by(transport.peers_refused - self.counted_transport.peers_refused);
        self.counted_transport = transport;
    }
}

fn handle_incoming(node: &mut Node, now: Instant, incoming: Incoming, pools: &mut dyn Pools) {
    match incoming {
        Incoming::Datagram { from, peer, data } => {
            if let Err(e) = node.handle_datagram(now, &peer, &data, pools) {
                debug!(from = %from, error = %e, "datagram from a peer refused");
            }
        }
        Incoming::Request {
            from,
            peer,
            data,
            respond,
        } => match node.handle_sync_request(now, &peer, &data, pools) {
            Ok(answer) => {
                debug!(from = %from, "sync request answered");
                let _ = respond.send(answer);
            }
            // Dropping `respond` resets the stream: the peer learns it failed.
            Err(e) => warn!(from = %from, error = %e, "sync request refused"),
        },
        // Counted from the transport's statistics (`count`): these reports
        // are throttled, one per interval with the count in `reason`.
        Incoming::PeerRefused { from, reason } => {
            warn!(from = %from, reason = %reason, "refused a peer: not a member of this fleet");
        }
    }
}

fn log_event(event: NodeEvent) {
    match event {
        NodeEvent::MemberUp(id) => info!(member = %id, "member up"),
        NodeEvent::MemberDown(id) => warn!(member = %id, "member down"),
        NodeEvent::Renamed { from, to } => {
            info!(from = ?from, to = ?to, "member restarted or renewed");
        }
        NodeEvent::Rejoined(id) => {
            warn!(identity = ?id, "this node was declared down; rejoined with a renewed identity");
        }
        NodeEvent::Idle => info!("no live peer: will re-announce to the seeds"),
        NodeEvent::Active => info!("joined the fleet"),
        NodeEvent::Defunct => error!(
            "this node was declared down and cannot renew its identity: it takes no part in the fleet until restarted"
        ),
        NodeEvent::WarmStart(WarmStart::NoSeeds) => {
            info!("no seed but this node: starting a new fleet");
        }
        NodeEvent::WarmStart(WarmStart::Pulled {
            seed,
            from,
            live_nodes,
        }) => info!(seed = %seed, from = %from, live_nodes, "warm start: pulled the fleet's state"),
        NodeEvent::WarmStart(WarmStart::NoAnswer { tried }) => info!(
            tried,
            "warm start: no seed answered; starting with this node's own checks"
        ),
        NodeEvent::WarmStart(WarmStart::TimedOut) => {
            info!("warm start: no seed answered in time; starting with this node's own checks")
        }
        NodeEvent::SyncDone { peer, from, kind } => {
            debug!(peer = %peer, from = %from, kind = ?kind, "sync done");
        }
        NodeEvent::SyncFailed { peer, kind, cause } => match cause {
            SyncFailure::Refused(e) => {
                warn!(peer = %peer, kind = ?kind, error = %e, "sync answer refused")
            }
            cause => match kind {
                SyncKind::Warm => {
                    info!(seed = %peer, cause = ?cause, "warm start: seed did not answer")
                }
                SyncKind::Periodic => debug!(peer = %peer, cause = ?cause, "periodic sync failed"),
            },
        },
        NodeEvent::Leaving => info!("leaving the fleet"),
        NodeEvent::DuplicateName { kept, refused } => error!(
            kept = ?kept, refused = ?refused,
            "two live processes have one node name: the newer is kept, the other refused until it is gone"
        ),
        NodeEvent::NameTaken { by } => error!(
            by = ?by,
            "a newer process with this node's name joined the fleet: the fleet refuses this one; stop one of them"
        ),
        NodeEvent::Fault(fault) => match &*fault {
            // An announce to an address nobody answers at is routine.
            ClusterFault::Announce { .. } => debug!(error = %fault, "fleet"),
            _ => warn!(error = %fault, "fleet"),
        },
    }
}
