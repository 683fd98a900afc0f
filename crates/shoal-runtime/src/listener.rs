//! One listener: its shared state, its accept loop and the life of each
//! client connection.
//!
//! A client connection: choose a backend (the core counts it at once),
//! connect with a timeout; on failure tell the core (passive health) and try
//! another backend, at most `retries` more times; then proxy until the end
//! and write one log line (HAProxy's tcplog, in `tracing` fields). The
//! count is released by [`BackendLease`]'s `Drop`, so no early return, error
//! or cancelled task can leak it.
//!
//! A connect that fails for want of a local resource (see [`crate::local`])
//! is neither told to the core nor retried: every other backend would fail
//! the same way, for the same reason, and be blamed for it. The client is
//! refused at once (`end = local-resource`). An accept that fails that way
//! pauses the accept loop, doubling from [`ACCEPT_BACKOFF_MIN_MS`] to
//! [`ACCEPT_BACKOFF_MAX_MS`], instead of retrying at once: the waiting
//! clients stay in the kernel's accept queue until descriptors free up.

use crate::clock::Clock;
use crate::dataplane::Accept;
use crate::local::{LOCAL_ERROR_LOG_INTERVAL_MS, LocalErrors, LogLimit};
use crate::metrics::{BackendLabels, BytesLabels, Direction, ListenerLabels, LocalOp, Metrics};
use crate::proxy::{self, ByteCounters, End};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::rngs::SmallRng;
use shoal_config::{ListenerConfig, Member, NameAddrs};
use shoal_core::budget::ROUND_WAIT_MAX;
use shoal_core::proxy_header::{self, ProxyHeader};
use shoal_core::{BackendId, BackendSpec, NoBackend, Pool, PoolEvent};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// A pool, the RNG its choices use, and what the shell keeps of each of
/// its backends (`backends[i]` is the pool's `BackendId(i)`), behind one
/// lock, so a reload that adds or removes backends changes them together.
#[derive(Debug)]
pub struct Balancer {
    pub pool: Pool,
    pub rng: SmallRng,
    pub backends: Vec<BackendSlot>,
}

/// A backend's address and metric handles, looked up once.
#[derive(Debug, Clone)]
pub struct BackendSlot {
    pub addr: SocketAddr,
    /// The backend name it is an address of (`None`: an IP literal).
    pub via: Option<String>,
    handles: BackendHandles,
}

/// Per-backend metric handles.
#[derive(Debug, Clone)]
struct BackendHandles {
    connections: Counter,
    connect_failures: Counter,
    bytes: ByteCounters,
}

impl BackendHandles {
    fn new(listener: &str, backend: SocketAddr, metrics: &Metrics) -> Self {
        let labels = BackendLabels {
            listener: listener.to_owned(),
            backend: backend.to_string(),
        };
        let bytes = |direction| {
            metrics
                .bytes
                .get_or_create(&BytesLabels {
                    listener: listener.to_owned(),
                    backend: backend.to_string(),
                    direction,
                })
                .clone()
        };
        BackendHandles {
            connections: metrics.connections.get_or_create(&labels).clone(),
            connect_failures: metrics.connect_failures.get_or_create(&labels).clone(),
            bytes: ByteCounters {
                client_to_backend: bytes(Direction::client_to_backend),
                backend_to_client: bytes(Direction::backend_to_client),
            },
        }
    }
}

/// What every connection of a listener shares.
///
/// A live reload changes it in place ([`ListenerState::reconfigure`]):
/// the configuration a new connection reads, the pool's backends, policy,
/// health and limits, and the listening sockets' address
/// ([`ListenerState::set_local_addr`]). A connection reads the
/// configuration once, when it starts.
#[derive(Debug)]
pub struct ListenerState {
    /// The listener's name: the one thing a reload never changes.
    pub name: String,
    config: RwLock<Arc<ListenerConfig>>,
    /// The address actually bound (differs from the config for port 0).
    local_addr: Mutex<SocketAddr>,
    pub balancer: Mutex<Balancer>,
    pub clock: Clock,
    limit: Mutex<Option<Arc<Semaphore>>>,
    /// Cancelled to cut this listener's connections: at the node's hard
    /// stop (its parent), or when a reload removed the listener and its
    /// drain timeout has passed.
    pub cut: CancellationToken,
    client_connections: Counter,
    no_backend: Counter,
    proxy_header_errors: Counter,
    budget_refused: Counter,
    pub active: Gauge,
    /// Wakes the fleet task (shared by every listener).
    pub wakes: Arc<FleetWakes>,
    /// Woken when the pool's next check may have moved earlier (the fleet
    /// gave this node a backend to check), so the checker task, which
    /// sleeps until the deadline it last read, looks again.
    pub checks_moved: Notify,
    /// Woken whenever the fleet writes its view into the pool: clients
    /// held for a round of budget raises ([`NoBackend::waits_for_round`])
    /// ask the pool again.
    pub views: Notify,
    /// Accepts, connects and checks that failed for want of a local
    /// resource.
    pub local: LocalErrors,
    /// Other accept errors, logged at most once per period.
    accept_errors: LogLimit,
    /// Clients without a valid PROXY protocol header: anyone can send
    /// those, so they are logged at most once per period (with a count).
    proxy_header_log: LogLimit,
}

/// The node's listeners as they are now, for readers that outlive a
/// reload (the admin endpoint): a reload replaces the list.
#[derive(Debug, Default)]
pub struct ListenerSet(RwLock<Vec<Arc<ListenerState>>>);

impl ListenerSet {
    pub fn new(listeners: Vec<Arc<ListenerState>>) -> Self {
        ListenerSet(RwLock::new(listeners))
    }

    /// The listeners now.
    pub fn get(&self) -> Vec<Arc<ListenerState>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, listeners: Vec<Arc<ListenerState>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = listeners;
    }
}

/// First pause of the accept loop after an accept error (out of file
/// descriptors, say); it doubles on every further error.
pub const ACCEPT_BACKOFF_MIN_MS: u64 = 5;

/// Longest pause of the accept loop between two accepts that fail: bounds
/// how long after descriptors free up the waiting clients are accepted,
/// and how often a persistent error is retried (HAProxy retries a listener
/// paused for want of descriptors after 100 ms too).
pub const ACCEPT_BACKOFF_MAX_MS: u64 = 100;

impl ListenerState {
    /// State for `config`, bound at `local_addr`, with a pool seeded from
    /// the OS whose backends are `config`'s with its names' addresses in
    /// `names`; its connections are cut when `cut` is cancelled.
    pub fn new(
        config: ListenerConfig,
        names: &NameAddrs,
        local_addr: SocketAddr,
        clock: Clock,
        metrics: &Metrics,
        wakes: Arc<FleetWakes>,
        cut: CancellationToken,
    ) -> Self {
        let mut rng: SmallRng = rand::make_rng();
        let members = config.members(names, shoal_config::BACKENDS_MAX);
        let specs = members.iter().map(|m| spec(&config, m)).collect();
        let pool = Pool::new(config.policy, config.health, specs, clock.now(), &mut rng);
        let backends = members
            .iter()
            .map(|m| BackendSlot::new(&config.name, m, metrics))
            .collect();
        let listener_labels = ListenerLabels {
            listener: config.name.clone(),
        };
        ListenerState {
            name: config.name.clone(),
            cut,
            limit: Mutex::new(
                config
                    .max_connections
                    .map(|n| Arc::new(Semaphore::new(n as usize))),
            ),
            client_connections: metrics
                .client_connections
                .get_or_create(&listener_labels)
                .clone(),
            no_backend: metrics.no_backend.get_or_create(&listener_labels).clone(),
            proxy_header_errors: metrics
                .proxy_header_errors
                .get_or_create(&listener_labels)
                .clone(),
            budget_refused: metrics
                .budget_refused
                .get_or_create(&listener_labels)
                .clone(),
            active: metrics
                .listener_active
                .get_or_create(&listener_labels)
                .clone(),
            local: LocalErrors::new(&config.name, metrics),
            accept_errors: LogLimit::new(Duration::from_millis(LOCAL_ERROR_LOG_INTERVAL_MS)),
            proxy_header_log: LogLimit::new(Duration::from_millis(LOCAL_ERROR_LOG_INTERVAL_MS)),
            local_addr: Mutex::new(local_addr),
            balancer: Mutex::new(Balancer {
                pool,
                rng,
                backends,
            }),
            clock,
            config: RwLock::new(Arc::new(config)),
            wakes,
            checks_moved: Notify::new(),
            views: Notify::new(),
        }
    }

    /// The configuration new connections follow.
    pub fn config(&self) -> Arc<ListenerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The address the listening sockets are bound at.
    pub fn local_addr(&self) -> SocketAddr {
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reload moved the listener to new sockets bound at `addr`.
    pub fn set_local_addr(&self, addr: SocketAddr) {
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// The listener's connection limit now (`max_connections`).
    fn limit(&self) -> Option<Arc<Semaphore>> {
        self.limit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies a reload's new configuration of this listener (same name),
    /// or new addresses of its backend names (`names`): backends added
    /// (up but unproven, checked within an interval) and removed (drained:
    /// no new connection, the open ones finish, then gone), weights,
    /// policy, health and limits in place; what a connection reads when it
    /// starts (timeouts, retries, PROXY protocol) applies to the next one.
    /// A changed `max_connections` is a new limit for clients accepted from
    /// now on. Returns the backends that are gone at once (removed with no
    /// connection), whose gauges the caller drops.
    pub fn reconfigure(
        &self,
        config: ListenerConfig,
        names: &NameAddrs,
        metrics: &Metrics,
    ) -> Vec<SocketAddr> {
        assert_eq!(config.name, self.name, "a listener keeps its name");
        let old = self.config();
        let members = config.members(names, shoal_config::BACKENDS_MAX);
        let gone: Vec<SocketAddr>;
        {
            let mut b = self.lock();
            let Balancer {
                pool,
                rng,
                backends,
            } = &mut *b;
            let now = self.clock.now();
            if old.policy != config.policy {
                pool.set_policy(config.policy);
            }
            if old.health != config.health {
                pool.set_health_config(config.health, now);
            }
            let specs: Vec<BackendSpec> = members.iter().map(|m| spec(&config, m)).collect();
            let done = pool.reconcile(&specs, now, rng);
            for id in &done.draining {
                let slot = &backends[id.0];
                info!(listener = %self.name, backend = %slot.addr, via = slot.via.as_deref(),
                    open = pool.active(*id), "backend removed: draining its open connections");
            }
            gone = done.gone.iter().map(|id| backends[id.0].addr).collect();
            for addr in &gone {
                info!(listener = %self.name, backend = %addr, "backend removed");
            }
            for id in done.added {
                let m = members
                    .iter()
                    .find(|m| m.addr.to_string() == pool.spec(id).name)
                    .expect("an added backend is a member");
                info!(listener = %self.name, backend = %m.addr, via = m.via.as_deref(),
                    weight = m.weight, "backend added");
                let slot = BackendSlot::new(&self.name, m, metrics);
                if id.0 == backends.len() {
                    backends.push(slot);
                } else {
                    backends[id.0] = slot;
                }
            }
        }
        if old.max_connections != config.max_connections {
            *self.limit.lock().unwrap_or_else(|p| p.into_inner()) = config
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize)));
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        // Added backends and a shorter interval move checks earlier.
        self.checks_moved.notify_one();
        self.wakes.flips.notify_one();
        gone
    }

    /// Locks the balancer. A panic while it was held cannot leave the pool
    /// half-updated (every core method completes or does nothing), so a
    /// poisoned lock is taken over rather than spreading the panic.
    pub fn lock(&self) -> MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs the pool's pending events.
    pub fn report_events(&self, pool: &mut Pool) {
        while let Some(event) = pool.poll_event() {
            match event {
                PoolEvent::HealthChanged { backend, up, cause } => {
                    self.wakes.flips.notify_one();
                    let name = &pool.spec(backend).name;
                    if up {
                        info!(listener = %self.name, backend = %name, ?cause, "backend is up");
                    } else {
                        warn!(listener = %self.name, backend = %name, ?cause, "backend is down");
                    }
                }
            }
        }
    }
}

/// The pool's view of backend `m` of `config`. Its name, which the
/// fleet's report key hashes, is the address: nodes that resolve a name
/// to the same address count the same backend.
fn spec(config: &ListenerConfig, m: &Member) -> BackendSpec {
    BackendSpec {
        name: m.addr.to_string(),
        max_connections: config.backend_max_connections,
        fleet_max_connections: config.fleet_max_connections,
        weight: m.weight,
    }
}

impl BackendSlot {
    fn new(listener: &str, m: &Member, metrics: &Metrics) -> Self {
        BackendSlot {
            addr: m.addr,
            via: m.via.clone(),
            handles: BackendHandles::new(listener, m.addr, metrics),
        }
    }
}

/// One counted connection to a backend; dropping it releases the count.
/// What the listeners wake the fleet task for.
#[derive(Debug, Default)]
pub struct FleetWakes {
    /// A health flip or a budget raise: the fleet publishes at once.
    pub flips: Notify,
    /// A connection count changed since the last report
    /// ([`Pool::take_report_wake`], once a report): the fleet publishes
    /// early if it may (decision 61).
    pub counts: Notify,
}

struct BackendLease {
    state: Arc<ListenerState>,
    id: BackendId,
}

impl Drop for BackendLease {
    fn drop(&mut self) {
        let mut b = self.state.lock();
        if !b.pool.release(self.id) {
            error!(listener = %self.state.name, backend = %self.id,
                "released a connection the pool did not count (bug)");
        }
        if b.pool.take_report_wake() {
            self.state.wakes.counts.notify_one();
        }
    }
}

/// Accepts clients until `stop_accepting`, serving each on the data thread
/// `accept` names. Connections end on their own or at the hard stop.
pub async fn accept_loop(
    state: Arc<ListenerState>,
    listener: TcpListener,
    accept: Accept,
    stop_accepting: CancellationToken,
) {
    let mut backoff = Duration::from_millis(ACCEPT_BACKOFF_MIN_MS);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop_accepting.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(ACCEPT_BACKOFF_MIN_MS);
                // Over the listener's limit, this thread holds the one
                // client it accepted (not yet counted, no backend chosen)
                // until a slot frees, and accepts nothing more meanwhile:
                // later clients wait in the kernel's accept queue. Taking
                // the slot before accepting would deadlock with several
                // threads: the slot's winner could wait on an empty queue
                // while the client sits in another thread's.
                let permit = match state.limit() {
                    None => None,
                    Some(sem) => tokio::select! {
                        p = sem.clone().acquire_owned() => Some(p.expect("the semaphore is never closed")),
                        () = stop_accepting.cancelled() => break,
                    },
                };
                state.client_connections.inc();
                let state = state.clone();
                // The listener's own token: cancelled with the node's hard
                // stop, or alone when a reload removed it and its drain
                // timeout passed.
                accept.dispatch(stream, move |stream, _hard_stop| {
                    let cut = state.cut.clone();
                    serve_client(state, stream, peer, permit, cut)
                });
            }
            // A client that reset before it was accepted: its own
            // problem, and the next one may be waiting already.
            Err(e) if is_client_abort(&e) => {
                debug!(listener = %state.name, error = %e, "accept: client gone");
            }
            Err(e) => {
                if !state.local.record(LocalOp::accept, None, &e)
                    && let Some(held_back) = state.accept_errors.admit(Instant::now())
                {
                    warn!(listener = %state.name, error = %e, held_back, "accept failed");
                }
                // Retrying at once would spin: the listening socket stays
                // readable while its queue holds the client that could not
                // be taken.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop_accepting.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_millis(ACCEPT_BACKOFF_MAX_MS));
            }
        }
    }
    debug!(listener = %state.name, "stopped accepting");
}

/// Errors of accept(2) that concern one client, not the listener (Linux
/// reports some network errors of a pending connection there).
fn is_client_abort(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        || e.raw_os_error() == Some(nix::errno::Errno::EPROTO as i32)
}

async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect timed out after {} ms", timeout.as_millis()),
        )),
    }
}

/// Why a client got no backend connection.
enum Refused {
    /// No backend could take it (down, full, or all tried).
    NoBackend(NoBackend),
    /// `retries + 1` connects failed, or the node stopped meanwhile.
    ConnectFailed,
    /// A connect failed for want of a local resource.
    Local,
}

struct ActiveGuard(Gauge);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads the PROXY protocol header a balancer in front of this listener
/// sends first. Returns it and the bytes read past it (the client's first
/// data, to be sent on to the backend). The buffer exists only while the
/// header is read.
async fn read_proxy_header(
    client: &mut TcpStream,
    timeout: Duration,
) -> Result<(ProxyHeader, Vec<u8>), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; proxy_header::HEADER_BYTES_MAX];
    let mut n = 0;
    loop {
        let read = tokio::time::timeout_at(deadline, client.read(&mut buf[n..]))
            .await
            .map_err(|_| {
                format!(
                    "no complete PROXY protocol header within {} ms ({n} bytes)",
                    timeout.as_millis()
                )
            })?
            .map_err(|e| format!("reading the PROXY protocol header: {e}"))?;
        if read == 0 {
            return Err(format!(
                "closed before a complete PROXY protocol header ({n} bytes)"
            ));
        }
        n += read;
        match proxy_header::parse(&buf[..n]) {
            Ok(Some(h)) => return Ok((h, buf[h.len..n].to_vec())),
            Ok(None) if n == buf.len() => {
                return Err(format!(
                    "PROXY protocol header longer than {} bytes",
                    buf.len()
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn serve_client(
    state: Arc<ListenerState>,
    mut client: TcpStream,
    tcp_peer: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
    hard_stop: CancellationToken,
) {
    let start = Instant::now();
    state.active.inc();
    let _active = ActiveGuard(state.active.clone());
    let cfg = &*state.config();
    let _ = client.set_nodelay(true);
    // Who the client is and what it dialled: the connection's own
    // addresses, or what the balancer in front says.
    // The address dialled is needed only for a header sent on, and read
    // (a system call) only then, off the path of other listeners.
    let (peer, dialled, early_data) = if cfg.accept_proxy {
        let read = tokio::select! {
            r = read_proxy_header(&mut client, cfg.proxy_header_timeout) => r,
            () = hard_stop.cancelled() => return,
        };
        match read {
            Ok((h, early)) => match h.addresses {
                Some((p, d)) => (p, Some(d), early),
                None => (tcp_peer, None, early),
            },
            Err(why) => {
                state.proxy_header_errors.inc();
                if let Some(held_back) = state.proxy_header_log.admit(Instant::now()) {
                    warn!(
                        target: "shoal::conn",
                        client = %tcp_peer,
                        listener = %cfg.name,
                        error = %why,
                        held_back,
                        "client closed: no valid PROXY protocol header"
                    );
                }
                return;
            }
        }
    } else {
        (tcp_peer, None, Vec::new())
    };
    let mut tried: Vec<BackendId> = Vec::new();
    let mut last_error: Option<String> = None;
    // A client that only waits for the fleet's next round of budget raises
    // is held (at most ROUND_WAIT_MAX) until the fleet's view changes.
    let mut round: Option<(Pin<Box<Notified<'_>>>, tokio::time::Instant)> = None;
    let connected = loop {
        if tried.len() > cfg.retries as usize {
            break Err(Refused::ConnectFailed);
        }
        let acquired = {
            let mut b = state.lock();
            let Balancer {
                pool,
                rng,
                backends,
            } = &mut *b;
            match pool.acquire(rng, &tried) {
                Ok(id) => {
                    if pool.has_unpublished_raise() {
                        // The fleet task publishes at once, as after a
                        // health flip (decision 48).
                        state.wakes.flips.notify_one();
                    }
                    if pool.take_report_wake() {
                        state.wakes.counts.notify_one();
                    }
                    Ok((id, backends[id.0].clone()))
                }
                Err(why) if why.waits_for_round() => {
                    if round
                        .as_ref()
                        .is_some_and(|(_, until)| tokio::time::Instant::now() >= *until)
                        || hard_stop.is_cancelled()
                    {
                        pool.refuse_for_budget(&tried);
                        break Err(Refused::NoBackend(why));
                    }
                    Err(())
                }
                Err(why) => break Err(Refused::NoBackend(why)),
            }
        };
        let Ok((id, slot)) = acquired else {
            match &mut round {
                None => {
                    // Listen first, then ask again: a view written between
                    // the two is not missed.
                    let mut views = Box::pin(state.views.notified());
                    views.as_mut().enable();
                    round = Some((views, tokio::time::Instant::now() + ROUND_WAIT_MAX));
                }
                Some((views, until)) => {
                    tokio::select! {
                        () = views.as_mut() => {}
                        () = tokio::time::sleep_until(*until) => {}
                        () = hard_stop.cancelled() => {}
                    }
                    let mut again = Box::pin(state.views.notified());
                    again.as_mut().enable();
                    *views = again;
                }
            }
            continue;
        };
        let lease = BackendLease {
            state: state.clone(),
            id,
        };
        let addr = slot.addr;
        let result = tokio::select! {
            r = connect(addr, cfg.connect_timeout) => r,
            () = hard_stop.cancelled() => Err(std::io::Error::other("node shutting down")),
        };
        match result {
            Ok(stream) => break Ok((stream, lease, slot)),
            Err(e)
                if state
                    .local
                    .record(LocalOp::connect, Some(&addr.to_string()), &e) =>
            {
                // Not the backend's failure, and every other backend would
                // fail alike: refuse the client (the lease is dropped, so
                // the count is released).
                last_error = Some(format!("{addr}: {e}"));
                tried.push(id);
                break Err(Refused::Local);
            }
            Err(e) => {
                {
                    let mut b = state.lock();
                    b.pool.handle_connect_failure(id);
                    state.report_events(&mut b.pool);
                }
                slot.handles.connect_failures.inc();
                debug!(listener = %cfg.name, backend = %addr, error = %e, "connect failed");
                last_error = Some(format!("{addr}: {e}"));
                tried.push(id);
                if hard_stop.is_cancelled() {
                    break Err(Refused::ConnectFailed);
                }
            }
        }
    };
    let (backend, lease, slot) = match connected {
        Ok(c) => c,
        Err(why) => {
            let reason = match (&why, tried.is_empty()) {
                (Refused::Local, _) => "local-resource",
                // Some backend had room here but not in the fleet's
                // budget: not a "no backend" (decision 48).
                (Refused::NoBackend(w), _) if w.is_budget() => "over-budget",
                (Refused::NoBackend(_), true) => "no-backend",
                _ => "connect-failed",
            };
            match &why {
                Refused::Local => {}
                Refused::NoBackend(w) if w.is_budget() => {
                    state.budget_refused.inc();
                }
                _ => {
                    state.no_backend.inc();
                }
            }
            let no_backend = match why {
                Refused::NoBackend(w) => Some(w.to_string()),
                _ => None,
            };
            warn!(
                target: "shoal::conn",
                client = %peer,
                listener = %cfg.name,
                tries = tried.len(),
                end = reason,
                no_backend,
                last_error,
                duration_ms = start.elapsed().as_millis() as u64,
                "client refused"
            );
            return;
        }
    };
    let mut backend = backend;
    let _ = backend.set_nodelay(true);
    let connect_ms = start.elapsed().as_millis() as u64;
    let handles = &slot.handles;
    handles.connections.inc();
    let addr = slot.addr;
    // The header for the backend, then what the client sent with its own
    // header: one write, before any other byte.
    let mut first = match cfg.send_proxy {
        Some(v) => {
            let dialled =
                dialled.unwrap_or_else(|| client.local_addr().unwrap_or(state.local_addr()));
            proxy_header::encode(v, peer, dialled)
        }
        None => Vec::new(),
    };
    first.extend_from_slice(&early_data);
    if !first.is_empty()
        && let Err(e) = backend.write_all(&first).await
    {
        warn!(
            target: "shoal::conn",
            client = %peer,
            listener = %cfg.name,
            backend = %addr,
            end = "backend-error",
            error = %e,
            duration_ms = start.elapsed().as_millis() as u64,
            "connection closed"
        );
        return;
    }
    handles
        .bytes
        .client_to_backend
        .inc_by(early_data.len() as u64);
    let t = proxy::proxy(
        client,
        backend,
        cfg.idle_timeout,
        &handles.bytes,
        &hard_stop,
    )
    .await;
    drop(lease);
    let error = match &t.end {
        End::Error(_, e) => Some(e.to_string()),
        _ => None,
    };
    info!(
        target: "shoal::conn",
        client = %peer,
        via = cfg.accept_proxy.then(|| tcp_peer.to_string()),
        listener = %cfg.name,
        backend = %addr,
        bytes_in = t.client_to_backend + early_data.len() as u64,
        bytes_out = t.backend_to_client,
        connect_ms,
        duration_ms = start.elapsed().as_millis() as u64,
        tries = tried.len() + 1,
        end = t.end.as_str(),
        error,
        "connection closed"
    );
}
