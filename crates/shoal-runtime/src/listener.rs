//! One listener: its shared state, its accept loop and the life of each
//! client connection.
//!
//! A client connection: choose a backend (the core counts it at once),
//! connect with a timeout; on failure tell the core (passive health) and try
//! another backend, at most `retries` more times; then proxy until the end
//! and write one log line (HAProxy's tcplog, in `tracing` fields). The
//! count is released by [`BackendLease`]'s `Drop`, so no early return, error
//! or cancelled task can leak it.

use crate::clock::Clock;
use crate::dataplane::Accept;
use crate::metrics::{BackendLabels, BytesLabels, Direction, ListenerLabels, Metrics};
use crate::proxy::{self, ByteCounters, End};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::rngs::SmallRng;
use shoal_config::ListenerConfig;
use shoal_core::{BackendId, BackendSpec, NoBackend, Pool, PoolEvent};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// A pool and the RNG its choices use, behind one lock.
#[derive(Debug)]
pub struct Balancer {
    pub pool: Pool,
    pub rng: SmallRng,
}

/// Per-backend metric handles, looked up once.
#[derive(Debug)]
struct BackendHandles {
    connections: Counter,
    connect_failures: Counter,
    bytes: ByteCounters,
}

/// What every connection of a listener shares.
#[derive(Debug)]
pub struct ListenerState {
    pub config: ListenerConfig,
    /// The address actually bound (differs from the config for port 0).
    pub local_addr: SocketAddr,
    pub balancer: Mutex<Balancer>,
    pub clock: Clock,
    limit: Option<Arc<Semaphore>>,
    handles: Vec<BackendHandles>,
    client_connections: Counter,
    no_backend: Counter,
    pub active: Gauge,
    /// Woken on every health flip, so the fleet publishes at once.
    pub flips: Arc<Notify>,
}

impl ListenerState {
    /// State for `config`, bound at `local_addr`, with a pool seeded from
    /// the OS.
    pub fn new(
        config: ListenerConfig,
        local_addr: SocketAddr,
        clock: Clock,
        metrics: &Metrics,
        flips: Arc<Notify>,
    ) -> Self {
        let mut rng: SmallRng = rand::make_rng();
        let specs = config
            .backends
            .iter()
            .map(|a| BackendSpec {
                name: a.to_string(),
                max_connections: config.backend_max_connections,
            })
            .collect();
        let pool = Pool::new(config.policy, config.health, specs, clock.now(), &mut rng);
        let handles = config
            .backends
            .iter()
            .map(|a| {
                let labels = BackendLabels {
                    listener: config.name.clone(),
                    backend: a.to_string(),
                };
                let bytes = |direction| {
                    metrics
                        .bytes
                        .get_or_create(&BytesLabels {
                            listener: config.name.clone(),
                            backend: a.to_string(),
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
            })
            .collect();
        let listener_labels = ListenerLabels {
            listener: config.name.clone(),
        };
        ListenerState {
            limit: config
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            client_connections: metrics
                .client_connections
                .get_or_create(&listener_labels)
                .clone(),
            no_backend: metrics.no_backend.get_or_create(&listener_labels).clone(),
            active: metrics
                .listener_active
                .get_or_create(&listener_labels)
                .clone(),
            handles,
            local_addr,
            balancer: Mutex::new(Balancer { pool, rng }),
            clock,
            config,
            flips,
        }
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
                    self.flips.notify_one();
                    let name = &pool.spec(backend).name;
                    if up {
                        info!(listener = %self.config.name, backend = %name, ?cause, "backend is up");
                    } else {
                        warn!(listener = %self.config.name, backend = %name, ?cause, "backend is down");
                    }
                }
            }
        }
    }
}

/// One counted connection to a backend; dropping it releases the count.
struct BackendLease {
    state: Arc<ListenerState>,
    id: BackendId,
}

impl Drop for BackendLease {
    fn drop(&mut self) {
        if !self.state.lock().pool.release(self.id) {
            error!(listener = %self.state.config.name, backend = %self.id,
                "released a connection the pool did not count (bug)");
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
    /// Pause after an accept error (e.g. out of file descriptors), so that
    /// a persistent error does not spin a core.
    const ACCEPT_ERROR_PAUSE_MS: u64 = 50;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop_accepting.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Over the listener's limit, this thread holds the one
                // client it accepted (not yet counted, no backend chosen)
                // until a slot frees, and accepts nothing more meanwhile:
                // later clients wait in the kernel's accept queue. Taking
                // the slot before accepting would deadlock with several
                // threads: the slot's winner could wait on an empty queue
                // while the client sits in another thread's.
                let permit = match &state.limit {
                    None => None,
                    Some(sem) => tokio::select! {
                        p = sem.clone().acquire_owned() => Some(p.expect("the semaphore is never closed")),
                        () = stop_accepting.cancelled() => break,
                    },
                };
                state.client_connections.inc();
                let state = state.clone();
                accept.dispatch(stream, move |stream, hard_stop| {
                    serve_client(state, stream, peer, permit, hard_stop)
                });
            }
            Err(e) => {
                warn!(listener = %state.config.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
            }
        }
    }
    debug!(listener = %state.config.name, "stopped accepting");
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

struct ActiveGuard(Gauge);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_client(
    state: Arc<ListenerState>,
    client: TcpStream,
    peer: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
    hard_stop: CancellationToken,
) {
    let start = Instant::now();
    state.active.inc();
    let _active = ActiveGuard(state.active.clone());
    let cfg = &state.config;
    let _ = client.set_nodelay(true);
    let mut tried: Vec<BackendId> = Vec::new();
    let mut last_error: Option<String> = None;
    let connected = loop {
        if tried.len() > cfg.retries as usize {
            break Err(None);
        }
        let id = {
            let mut b = state.lock();
            let Balancer { pool, rng } = &mut *b;
            match pool.acquire(rng, &tried) {
                Ok(id) => id,
                Err(why) => break Err(Some(why)),
            }
        };
        let lease = BackendLease {
            state: state.clone(),
            id,
        };
        let addr = cfg.backends[id.0];
        let result = tokio::select! {
            r = connect(addr, cfg.connect_timeout) => r,
            () = hard_stop.cancelled() => Err(std::io::Error::other("node shutting down")),
        };
        if result.is_err() {
            let mut b = state.lock();
            b.pool.handle_connect_failure(id);
            state.report_events(&mut b.pool);
        }
        match result {
            Ok(stream) => break Ok((stream, lease)),
            Err(e) => {
                state.handles[id.0].connect_failures.inc();
                debug!(listener = %cfg.name, backend = %addr, error = %e, "connect failed");
                last_error = Some(format!("{addr}: {e}"));
                tried.push(id);
                if hard_stop.is_cancelled() {
                    break Err(None);
                }
            }
        }
    };
    let (backend, lease) = match connected {
        Ok(c) => c,
        Err(why) => {
            state.no_backend.inc();
            let reason = match (&why, tried.is_empty()) {
                (Some(NoBackend { .. }), true) => "no-backend",
                _ => "connect-failed",
            };
            warn!(
                target: "shoal::conn",
                client = %peer,
                listener = %cfg.name,
                tries = tried.len(),
                end = reason,
                no_backend = why.map(|w| w.to_string()),
                last_error,
                duration_ms = start.elapsed().as_millis() as u64,
                "client refused"
            );
            return;
        }
    };
    let _ = backend.set_nodelay(true);
    let connect_ms = start.elapsed().as_millis() as u64;
    let handles = &state.handles[lease.id.0];
    handles.connections.inc();
    let addr = cfg.backends[lease.id.0];
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
        listener = %cfg.name,
        backend = %addr,
        bytes_in = t.client_to_backend,
        bytes_out = t.backend_to_client,
        connect_ms,
        duration_ms = start.elapsed().as_millis() as u64,
        tries = tried.len() + 1,
        end = t.end.as_str(),
        error,
        "connection closed"
    );
}
