//! The fleet driver: one task that owns this node's [`Cluster`] core and
//! connects it to the QUIC transport, the seed resolver and the listeners'
//! pools.
//!
//! Loop: wait for a datagram, a sync request or answer, a health flip, the
//! core's deadline, the re-seed or sync period, or shutdown; feed it to the
//! core; then flush the core's outputs (datagrams to the transport, events
//! to logs and reports, the view to the pools) until nothing changes, as
//! quinn's connection driver does.
//!
//! - **Warm start.** Before the listeners accept, the node resolves its
//!   seeds, announces itself, and pulls the full state of the first seed
//!   that answers (bounded by `warm_start_timeout_ms`), so its first
//!   client already benefits from the fleet's health verdicts and counts.
//! - **Re-seeding.** While the node knows no live peer, seeds are
//!   re-resolved and re-announced every `reseed_interval_ms`: a fleet
//!   restarted in any order reassembles.
//! - **Anti-entropy.** Every `sync_interval_ms` a push-pull with one random
//!   live member. Load reports travel as their own datagrams, straight to
//!   every live member: changed shards each report interval, unchanged ones
//!   each refresh (decision 27).
//! - **Leave.** When the node stops accepting, it tells the fleet it
//!   leaves, so peers drop its counts at once, and keeps the transport open
//!   until the drain ends so the notice gets out.

use crate::clock::Clock;
use crate::listener::ListenerState;
use crate::metrics::Metrics;
use bytes::Bytes;
use rand::RngExt;
use rand::rngs::SmallRng;
use shoal_config::ClusterConfig as FleetConfig;
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::{BackendKey, ReportEntry};
use shoal_core::cluster::{Cluster, ClusterConfig, ClusterEvent};
use shoal_seeds::{SeedLimits, SeedResolver};
use shoal_transport::{ClusterTls, Incoming, TlsFiles, Transport, TransportLimits};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// What `/status` shows of the fleet, refreshed by the driver.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    pub identity: Option<NodeId>,
    pub live_nodes: u32,
    /// Live peers and the age of their newest report, if any.
    pub members: Vec<(NodeId, Option<Duration>)>,
}

/// Why the fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cluster certificates: {0}")]
    Tls(String),
    #[error("cluster.bind {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cluster.resolver: {0}")]
    Resolver(String),
}

type SyncResult = (SocketAddr, Result<Vec<u8>, String>);

/// The fleet driver of one node.
pub struct Fleet {
    cluster: Cluster,
    transport: Transport,
    incoming: mpsc::Receiver<Incoming>,
    resolver: SeedResolver,
    config: FleetConfig,
    listeners: Vec<Arc<ListenerState>>,
    keys: Vec<Vec<BackendKey>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    flips: Arc<Notify>,
    snapshot: Arc<Mutex<FleetSnapshot>>,
    rng: SmallRng,
    pushed: (u64, u32),
    sync_tx: mpsc::Sender<SyncResult>,
    sync_rx: mpsc::Receiver<SyncResult>,
    seeds_tx: mpsc::Sender<Vec<SocketAddr>>,
    seeds_rx: mpsc::Receiver<Vec<SocketAddr>>,
    resolving: bool,
    counted: shoal_core::cluster::ClusterStats,
    counted_transport: shoal_transport::TransportStats,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Syncs in flight at once (the periodic one plus warm start).
const SYNCS_IN_FLIGHT_MAX: usize = 4;

/// After announcing the leave, how long the transport stays open so the
/// notices get out (quinn drops queued datagrams when a connection closes).
const LEAVE_LINGER_MS: u64 = 300;

/// What the fleet driver shares with the rest of the node.
#[derive(Debug)]
pub struct NodeParts {
    pub node_name: String,
    pub listeners: Vec<Arc<ListenerState>>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Woken by the listeners on every health flip.
    pub flips: Arc<Notify>,
    /// Where the driver leaves what `/status` shows.
    pub snapshot: Arc<Mutex<FleetSnapshot>>,
}

impl Fleet {
    /// Binds the QUIC endpoint (so a bad certificate or a port in use fails
    /// the start), with the certificates from `config`'s files, or `tls`
    /// when given (the demo keeps them in memory).
    pub fn bind(
        config: &FleetConfig,
        tls: Option<&ClusterTls>,
        parts: NodeParts,
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
                .map_err(|e| FleetError::Tls(e.to_string()))?;
                &loaded
            }
        };
        let NodeParts {
            node_name,
            listeners,
            clock,
            metrics,
            flips,
            snapshot,
        } = parts;
        let (transport, incoming) = Transport::bind(config.bind, tls, TransportLimits::default())
            .map_err(|e| FleetError::Bind {
            addr: config.bind,
            reason: e.to_string(),
        })?;
        let resolver = SeedResolver::new(config.resolver, SeedLimits::default())
            .map_err(|e| FleetError::Resolver(e.to_string()))?;
        // The epoch orders this start after every earlier one of the node:
        // milliseconds of wall-clock time are enough for that.
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let mut rng: SmallRng = rand::make_rng();
        // Port 0 (tests, demos): advertise the port the kernel picked.
        let advertise = match config.advertise.port() {
            0 => SocketAddr::new(config.advertise.ip(), transport.local_addr().port()),
            _ => config.advertise,
        };
        let identity = NodeId::new(advertise, node_name, epoch);
        let core_config = ClusterConfig::lan(3, config.report_interval, config.report_ttl)
            .with_refresh(config.report_refresh);
        let cluster = Cluster::new(identity, core_config, rng.random(), clock.now());
        let keys = listeners
            .iter()
            .map(|l| {
                l.config
                    .backends
                    .iter()
                    .map(|b| BackendKey::new(&l.config.name, &b.to_string()))
                    .collect()
            })
            .collect();
        let (sync_tx, sync_rx) = mpsc::channel(SYNCS_IN_FLIGHT_MAX);
        let (seeds_tx, seeds_rx) = mpsc::channel(1);
        Ok(Fleet {
            cluster,
            transport,
            incoming,
            resolver,
            config: config.clone(),
            listeners,
            keys,
            clock,
            metrics,
            flips,
            snapshot,
            rng,
            pushed: (u64::MAX, 0),
            sync_tx,
            sync_rx,
            seeds_tx,
            seeds_rx,
            resolving: false,
            counted: Default::default(),
            counted_transport: Default::default(),
        })
    }

    /// The QUIC endpoint's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Resolves seeds, announces, and pulls one seed's full state; bounded
    /// by `warm_start_timeout_ms`. Returns whether a sync succeeded.
    pub async fn warm_start(&mut self) -> bool {
        let deadline = StdInstant::now() + self.config.warm_start_timeout;
        let seeds = self.resolve_seeds().await;
        if seeds.is_empty() {
            info!("no seed but this node: starting a new fleet");
            self.publish(false);
            self.flush();
            return false;
        }
        self.cluster.join(self.clock.now(), &seeds);
        self.flush();
        let Ok(request) = self.cluster.sync_message() else {
            return false;
        };
        for seed in seeds {
            let left = deadline.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.transport.request(seed, request.clone())).await {
                Ok(Ok(answer)) => match self.cluster.handle_sync(self.clock.now(), &answer) {
                    Ok(from) => {
                        self.flush();
                        info!(seed = %seed, from = %from, live_nodes = self.cluster.live_nodes(),
                            "warm start: pulled the fleet's state");
                        return true;
                    }
                    Err(e) => warn!(seed = %seed, error = %e, "warm start: bad sync answer"),
                },
                Ok(Err(e)) => debug!(seed = %seed, error = %e, "warm start: seed did not answer"),
                Err(_) => break,
            }
        }
        info!("warm start: no seed answered in time; starting with this node's own checks");
        false
    }

    /// Runs until `stop`; leaves the fleet when `leave` is cancelled.
    pub async fn run(mut self, leave: CancellationToken, stop: CancellationToken) {
        let mut reseed = tokio::time::interval(self.config.reseed_interval);
        reseed.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval(self.config.sync_interval);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sync.tick().await; // the first tick is immediate; warm start just synced
        let mut left_at: Option<StdInstant> = None;
        loop {
            let deadline = self.clock.to_std(self.cluster.poll_timeout());
            let left = left_at.is_some();
            tokio::select! {
                biased;
                // Before `stop`: a node with nothing to drain gets both at once,
                // and must still say goodbye.
                () = leave.cancelled(), if !left => {
                    left_at = Some(StdInstant::now());
                    info!("leaving the fleet");
                    self.cluster.leave(self.clock.now());
                }
                () = stop.cancelled() => break,
                Some(incoming) = self.incoming.recv() => self.handle_incoming(incoming),
                Some((peer, result)) = self.sync_rx.recv() => self.handle_sync_answer(peer, result),
                Some(addrs) = self.seeds_rx.recv() => {
                    self.resolving = false;
                    if self.cluster.is_alone() && !left && !addrs.is_empty() {
                        debug!(seeds = ?addrs, "alone: announcing to seeds");
                        self.cluster.join(self.clock.now(), &addrs);
                    }
                }
                () = self.flips.notified(), if !left => self.publish(true),
                () = tokio::time::sleep_until(deadline.into()) => self.cluster.handle_timeout(self.clock.now()),
                _ = reseed.tick(), if !left => {
                    if self.cluster.is_alone() && !self.resolving {
                        self.spawn_resolve();
                    }
                }
                _ = sync.tick(), if !left => self.spawn_periodic_sync(),
            }
            self.flush();
        }
        if left_at.is_none() {
            info!("leaving the fleet");
            self.cluster.leave(self.clock.now());
            self.flush();
            left_at = Some(StdInstant::now());
        }
        let linger_until = left_at.map(|t| t + Duration::from_millis(LEAVE_LINGER_MS));
        if let Some(t) = linger_until {
            tokio::time::sleep_until(t.into()).await;
        }
        self.transport.close_and_wait().await;
        debug!("fleet transport closed");
    }

    async fn resolve_seeds(&self) -> Vec<SocketAddr> {
        let resolved = self.resolver.resolve(&self.config.seeds).await;
        for e in &resolved.errors {
            warn!(error = %e, "seed");
        }
        let me = self.cluster.identity().addr;
        resolved.addrs.into_iter().filter(|a| *a != me).collect()
    }

    fn spawn_resolve(&mut self) {
        self.resolving = true;
        let resolver = self.resolver.clone();
        let seeds = self.config.seeds.clone();
        let me = self.cluster.identity().addr;
        let tx = self.seeds_tx.clone();
        tokio::spawn(async move {
            let resolved = resolver.resolve(&seeds).await;
            for e in &resolved.errors {
                debug!(error = %e, "seed");
            }
            let addrs = resolved.addrs.into_iter().filter(|a| *a != me).collect();
            let _ = tx.send(addrs).await;
        });
    }

    fn spawn_periodic_sync(&mut self) {
        let members: Vec<SocketAddr> = self.cluster.members().map(|m| m.addr).collect();
        if members.is_empty() {
            return;
        }
        let peer = members[self.rng.random_range(0..members.len())];
        let Ok(request) = self.cluster.sync_message() else {
            return;
        };
        let transport = self.transport.clone();
        let tx = self.sync_tx.clone();
        tokio::spawn(async move {
            let result = transport
                .request(peer, request)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.try_send((peer, result));
        });
    }

    fn handle_sync_answer(&mut self, peer: SocketAddr, result: Result<Vec<u8>, String>) {
        match result.map(|data| self.cluster.handle_sync(self.clock.now(), &data)) {
            Ok(Ok(from)) => debug!(peer = %peer, from = %from, "periodic sync done"),
            Ok(Err(e)) => warn!(peer = %peer, error = %e, "sync answer refused"),
            Err(e) => debug!(peer = %peer, error = %e, "periodic sync failed"),
        }
    }

    fn handle_incoming(&mut self, incoming: Incoming) {
        let now = self.clock.now();
        match incoming {
            Incoming::Datagram { from, data } => {
                if let Err(e) = self.cluster.handle_datagram(now, &data) {
                    debug!(from = %from, error = %e, "datagram from a peer refused");
                }
            }
            Incoming::Request {
                from,
                data,
                respond,
            } => match self.cluster.handle_sync(now, &data) {
                Ok(peer) => {
                    debug!(from = %from, peer = %peer, "sync request");
                    if let Ok(answer) = self.cluster.sync_message() {
                        let _ = respond.send(answer);
                    }
                }
                // Dropping `respond` resets the stream: the peer learns it failed.
                Err(e) => warn!(from = %from, error = %e, "sync request refused"),
            },
            Incoming::PeerRefused { from, reason } => {
                self.metrics.peers_refused.inc();
                warn!(from = %from, reason = %reason, "refused a peer: not a member of this fleet");
            }
        }
    }

    /// This node's report: every backend of every listener.
    fn publish(&mut self, urgent: bool) {
        let mut entries = Vec::new();
        for (l, keys) in self.listeners.iter().zip(&self.keys) {
            let b = l.lock();
            for id in b.pool.ids() {
                entries.push(ReportEntry {
                    key: keys[id.0],
                    healthy: b.pool.is_up(id),
                    active: b.pool.active(id),
                });
            }
        }
        self.cluster
            .publish_report(self.clock.now(), &entries, urgent);
    }

    /// Sends what the core produced and applies what changed.
    fn flush(&mut self) {
        // Publishing can produce transmits and events, events can ask for
        // a publish: loop until quiet (bounded: a publish adds no ReportDue).
        for _ in 0..4 {
            let mut again = false;
            while let Some(t) = self.cluster.poll_transmit() {
                self.transport.send_datagram(t.to, Bytes::from(t.data));
            }
            while let Some(event) = self.cluster.poll_event() {
                match event {
                    ClusterEvent::ReportDue => {
                        self.publish(false);
                        again = true;
                    }
                    ClusterEvent::MemberUp(id) => info!(member = %id, "member up"),
                    ClusterEvent::MemberDown(id) => warn!(member = %id, "member down"),
                    ClusterEvent::Renamed { from, to } => {
                        info!(from = ?from, to = ?to, "member restarted or renewed")
                    }
                    ClusterEvent::Rejoined(id) => {
                        warn!(identity = ?id, "this node was declared down; rejoined with a renewed identity")
                    }
                    ClusterEvent::Idle => info!("no live peer: will re-announce to the seeds"),
                    ClusterEvent::Active => info!("joined the fleet"),
                    ClusterEvent::Error(e) => debug!(error = %e, "fleet"),
                }
            }
            if !again {
                break;
            }
        }
        self.push_view();
        self.update_status();
    }

    /// Copies the fleet's load into the pools when it changed.
    fn push_view(&mut self) {
        let now = (self.cluster.view_generation(), self.cluster.live_nodes());
        if now == self.pushed {
            return;
        }
        self.pushed = now;
        for (l, keys) in self.listeners.iter().zip(&self.keys) {
            let mut b = l.lock();
            b.pool.set_live_nodes(now.1);
            for id in b.pool.ids().collect::<Vec<_>>() {
                let remote = self.cluster.remote(keys[id.0]);
                b.pool.set_remote(id, remote);
            }
        }
    }

    fn update_status(&mut self) {
        let now = self.clock.now();
        let stats = self.cluster.stats();
        let m = &self.metrics;
        m.cluster_members.set(i64::from(self.cluster.live_nodes()));
        m.count_gossip(&self.counted, &stats);
        self.counted = stats;
        let transport = self.transport.stats();
        m.count_drops(&self.counted_transport, &transport);
        self.counted_transport = transport;
        let view = self.cluster.view();
        m.report_age_seconds
            .set(view.max_age(now).map_or(0.0, |d| d.as_secs_f64()));
        let ages: BTreeMap<SocketAddr, Duration> = view
            .origins()
            .filter_map(|o| view.age_of(o, now).map(|a| (o, a)))
            .collect();
        let members = self
            .cluster
            .members()
            .map(|id| (id.clone(), ages.get(&id.addr).copied()))
            .collect();
        let mut s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        s.identity = Some(self.cluster.identity().clone());
        s.live_nodes = self.cluster.live_nodes();
        s.members = members;
    }
}
