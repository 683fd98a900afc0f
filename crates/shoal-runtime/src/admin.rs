//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /status` (JSON: listeners, backends, health and counts, and each
//! peer's view of each backend from its reports), `GET /` (the status page,
//! one self-contained HTML file that reads `/status`), and the commands
//! `POST /backends/{listener}/{backend}/drain`, `.../undrain`,
//! `POST /drain-node` and `POST /reload` (decision 57).
//!
//! The endpoint has no authentication: it is for a loopback or management
//! address. So that a web page from another origin cannot make an
//! operator's browser post a command (a plain HTML form can post
//! cross-site, and the answer need not be readable for the harm to be
//! done), every POST must carry the header [`COMMAND_HEADER`]: a form
//! cannot set headers, and a cross-origin `fetch` that sets one needs a
//! CORS preflight, which this endpoint never grants. `shoal ctl` and the
//! status page send it.
//!
//! [`serve`] is its accept loop. Every bound is from `[node]`
//! ([`AdminLimits`]): connections past `admin_connections_max` are closed at
//! once and counted; a connection that has not sent a request's head within
//! `admin_header_timeout_ms` (from its start, or from the end of the last
//! response) or moved no byte for `admin_idle_timeout_ms` is closed; and at
//! the node's hard stop every connection is closed within
//! [`SHUTDOWN_GRACE_MS`], so an admin client cannot hold a node past its
//! drain. HTTP is hyper's (http1 only), routing is axum's.

use crate::fleet::FleetHandle;
use crate::listener::ListenerSet;
use crate::metrics::{BackendLabels, Metrics};
use crate::reload::ReloadHandle;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use shoal_core::cluster::report::BackendKey;
use shoal_core::node::{FleetStatus, Phase};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// After the stop, how long a response already being written may take to
/// finish before its connection is dropped. Short: the node is exiting, and
/// a scrape cut here is one the next scrape (of another node) replaces.
pub const SHUTDOWN_GRACE_MS: u64 = 500;

/// After a failed accept (out of file descriptors, say), the pause before
/// the next, so the loop does not spin on an error that persists.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 100;

/// The admin endpoint's bounds (`[node]` `admin_*`).
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Connections served at once; more are closed at once.
    pub connections_max: u32,
    /// Time to send a request's head, from the connection's start or the
    /// end of the previous response.
    pub header_timeout: Duration,
    /// Time with no byte read or written, whatever the connection is doing.
    pub idle_timeout: Duration,
}

impl AdminLimits {
    /// The limits of a node's configuration.
    pub fn from_config(node: &shoal_config::NodeConfig) -> AdminLimits {
        AdminLimits {
            connections_max: node.admin_connections_max,
            header_timeout: node.admin_header_timeout,
            idle_timeout: node.admin_idle_timeout,
        }
    }
}

/// Serves `router` on `listener` until `stop` is cancelled, then stops
/// accepting and closes every connection within [`SHUTDOWN_GRACE_MS`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.connections_max as usize));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "admin endpoint: accept failed");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)) => continue,
                }
            }
        };
        // Refused after the accept, not left in the kernel's queue: a full
        // queue would look like a hung endpoint, a closed connection says
        // "busy" at once. Logged at debug only, since a flood of refusals
        // must not become a flood of log lines; the counter shows it.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.admin_connections_refused.inc();
            debug!(%peer, connections_max = limits.connections_max, "admin connection refused");
            drop(tcp);
            continue;
        };
        connections.spawn(serve_connection(
            tcp,
            router.clone(),
            limits,
            stop.clone(),
            slot,
        ));
    }
    // New connects are refused by the kernel from here on.
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One admin connection, holding its slot until it ends.
async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    limits: AdminLimits,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        inner: tcp,
        activity: activity.clone(),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                debug!(error = %e, "admin connection ended");
            }
        }
        () = activity.idle(limits.idle_timeout) => {
            debug!(idle_timeout_ms = limits.idle_timeout.as_millis() as u64, "admin connection idle; closed");
        }
        () = stop.cancelled() => {
            // Closes a kept-alive connection at once and lets a response
            // being written finish; a partial request gets the grace only.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), conn).await;
        }
    }
}

/// When a connection last moved a byte, shared between its I/O and the
/// task that enforces the idle timeout.
#[derive(Debug, Clone)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A socket that records each read or write that moved bytes.
#[derive(Debug)]
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the endpoint reads.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub node_name: String,
    /// The listeners as they are now (a reload replaces them).
    pub listeners: Arc<ListenerSet>,
    /// Where `POST /reload` goes; `None` for a node not run from a file.
    pub reload: Option<ReloadHandle>,
    pub metrics: Arc<Metrics>,
    /// With `[cluster]`: asks the fleet task, which builds its status when
    /// asked.
    pub fleet: Option<FleetHandle>,
    /// Cancelled by `POST /drain-node`: the node stops accepting and
    /// leaves the fleet, and keeps running until told to stop.
    pub drain_node: CancellationToken,
    /// Cancelled once the listeners stop accepting (drain-node, SIGTERM).
    pub stopped_accepting: CancellationToken,
}

/// `/status` body.
#[derive(Debug, Serialize)]
pub struct Status {
    pub node: String,
    /// Whether the listeners take new clients (false after `drain-node`
    /// and during a shutdown's drain).
    pub accepting: bool,
    pub cluster_members: i64,
    /// With `[cluster]`: this node and its live peers.
    pub cluster: Option<ClusterStatus>,
    pub listeners: Vec<ListenerStatus>,
}

/// The fleet in `/status`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// This node's identity, `name@addr#epoch.bump`.
    pub identity: String,
    /// This node's cluster (QUIC) address.
    pub addr: String,
    /// `warming` (joined; listeners not accepting until the warm start
    /// ends), `serving`, `leaving` or `closed`.
    pub phase: &'static str,
    pub live_nodes: u32,
    pub members: Vec<MemberStatus>,
}

/// One live peer in `/status`.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub addr: String,
    /// Age of its newest load report here, if one is held.
    pub report_age_ms: Option<u64>,
}

/// One node's view of one backend in `/status` (`backends[].nodes`): this
/// node's own, then each live peer's from its newest report held here.
#[derive(Debug, Serialize)]
pub struct NodeView {
    pub node: String,
    /// The node's own checks; `null` if no report of the peer carries the
    /// backend (none arrived yet, or it aged out).
    pub checks_up: Option<bool>,
    /// The node's exact count of open connections to the backend; `null`
    /// as above.
    pub active_connections: Option<u32>,
}

/// One listener in `/status`.
#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    pub name: String,
    pub bind: String,
    pub policy: String,
    pub active_connections: i64,
    pub backends: Vec<BackendStatus>,
}

/// One backend in `/status`.
#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub address: String,
    /// The backend name it is an address of; absent for an IP literal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its weight (`{ addr, weight }`; 1 by default).
    pub weight: u32,
    /// A reload removed it: no new connection; shown until its last
    /// connection ends.
    pub removed: bool,
    /// Whether this node sends it new connections (its own checks and the
    /// fleet's majority agree it is up).
    pub up: bool,
    /// This node's own checks.
    pub checks_up: bool,
    /// Checkers among the live peers whose verdict is down (decision 49).
    pub fleet_down_votes: u32,
    pub active_connections: u32,
    /// Σ of the peers' reported counts.
    pub remote_connections: u32,
    /// This node's estimate of the whole fleet's count.
    pub cluster_connections: u64,
    /// Drained fleet-wide: no node opens a new connection to it; the
    /// counts above are the connections left.
    pub draining: bool,
    /// Its fleet-wide budget, when `fleet_max_connections` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_budget: Option<BudgetStatus>,
    /// Each node's checks and count: this node first, then the live peers
    /// (with `[cluster]`; this node alone without).
    pub nodes: Vec<NodeView>,
    /// Whether this node actively checks it now (decision 49).
    pub checking: bool,
    /// Checkers' votes this node holds, its own included.
    pub checker_votes: u32,
    /// With `[cluster]`: the nodes that should check it by this node's
    /// view of the membership (`name (addr)`), first in hash order.
    pub checkers: Vec<String>,
}

/// A backend's fleet-wide budget in `/status` (decision 48).
#[derive(Debug, Serialize)]
pub struct BudgetStatus {
    /// `fleet_max_connections`.
    pub limit: u32,
    /// The connections this node may hold now.
    pub share: u64,
    /// Whether this node sees at most half of the fleet and keeps to its
    /// fair part.
    pub cut_off: bool,
    /// Clients refused because of the budget alone.
    pub refused: u64,
}

impl AdminState {
    /// A snapshot of every listener, also copied into the gauges.
    pub fn status(&self, fleet: Option<FleetStatus>) -> Status {
        let members = fleet.as_ref().map_or(&[][..], |f| &f.members[..]);
        let names: std::collections::BTreeMap<std::net::SocketAddr, String> = fleet
            .iter()
            .flat_map(|f| std::iter::once(&f.identity).chain(f.members.iter().map(|m| &m.id)))
            .map(|id| (id.addr, id.to_string()))
            .collect();
        let listeners = self
            .listeners
            .get()
            .iter()
            .enumerate()
            .map(|(li, l)| {
                let b = l.lock();
                // A backend a reload removed is shown until its last
                // connection ends; its gauges go with it.
                for slot in (0..b.pool.slots()).map(shoal_core::BackendId) {
                    if b.pool.is_gone(slot) {
                        self.metrics.forget_backend(&BackendLabels {
                            listener: l.name.clone(),
                            backend: b.pool.spec(slot).name.clone(),
                        });
                    }
                }
                let backends = b
                    .pool
                    .ids()
                    .map(|id| {
                        let address = b.pool.spec(id).name.clone();
                        let active = b.pool.active(id);
                        let labels = BackendLabels {
                            listener: l.name.clone(),
                            backend: address.clone(),
                        };
                        let checks_up = b.pool.is_up(id);
                        let up = checks_up && !b.pool.is_fleet_down(id);
                        let remote = b.pool.remote(id);
                        let cluster = b.pool.cluster_active(id);
                        let draining = b.pool.is_draining(id);
                        let key = BackendKey::new(&l.name, &address);
                        let mut nodes = vec![NodeView {
                            node: self.node_name.clone(),
                            checks_up: Some(checks_up),
                            active_connections: Some(active),
                        }];
                        nodes.extend(members.iter().map(|m| {
                            let entry = m.entries.get(&key);
                            NodeView {
                                node: m.id.name.clone(),
                                checks_up: entry.map(|e| e.healthy),
                                active_connections: entry.map(|e| e.active),
                            }
                        }));
                        let m = &self.metrics;
                        m.backend_draining
                            .get_or_create(&labels)
                            .set(i64::from(draining));
                        m.backend_up.get_or_create(&labels).set(i64::from(up));
                        let checking = b.pool.is_checking(id);
                        m.backend_checking
                            .get_or_create(&labels)
                            .set(i64::from(checking));
                        let checkers = fleet
                            .as_ref()
                            .and_then(|f| f.checkers.get(li)?.get(id.0))
                            .map(|addrs| {
                                addrs
                                    .iter()
                                    .map(|a| names.get(a).cloned().unwrap_or_else(|| a.to_string()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        m.backend_active
                            .get_or_create(&labels)
                            .set(i64::from(active));
                        m.backend_cluster
                            .get_or_create(&labels)
                            .set(i64::try_from(cluster).unwrap_or(i64::MAX));
                        let fleet_budget = b.pool.budget(id).map(|budget| {
                            m.backend_budget
                                .get_or_create(&labels)
                                .set(i64::from(budget.limit()));
                            m.backend_share
                                .get_or_create(&labels)
                                .set(i64::try_from(budget.share()).unwrap_or(i64::MAX));
                            // A counter mirroring the core's count.
                            let refused = m.backend_budget_refused.get_or_create(&labels);
                            refused.inc_by(budget.refused().saturating_sub(refused.get()));
                            BudgetStatus {
                                limit: budget.limit(),
                                share: budget.share(),
                                cut_off: budget.view().is_cut_off(),
                                refused: budget.refused(),
                            }
                        });
                        BackendStatus {
                            address,
                            name: b.backends[id.0].via.clone(),
                            weight: b.pool.spec(id).weight,
                            removed: b.pool.is_removed(id),
                            up,
                            checks_up,
                            fleet_down_votes: remote.down_votes,
                            active_connections: active,
                            remote_connections: remote.active,
                            cluster_connections: cluster,
                            draining,
                            fleet_budget,
                            nodes,
                            checking,
                            checker_votes: remote.voters + u32::from(b.pool.is_voting(id)),
                            checkers,
                        }
                    })
                    .collect();
                ListenerStatus {
                    name: l.name.clone(),
                    bind: l.local_addr().to_string(),
                    policy: b.pool.policy().to_string(),
                    active_connections: l.active.get(),
                    backends,
                }
            })
            .collect();
        let cluster = fleet.map(|f| ClusterStatus {
            identity: format!("{:?}", f.identity),
            addr: f.identity.addr.to_string(),
            phase: match f.phase {
                Phase::Warming => "warming",
                Phase::Serving => "serving",
                Phase::Leaving => "leaving",
                Phase::Closed => "closed",
            },
            live_nodes: f.live_nodes,
            members: f
                .members
                .iter()
                .map(|m| MemberStatus {
                    name: m.id.name.clone(),
                    addr: m.id.addr.to_string(),
                    report_age_ms: m.report_age.map(|a| a.as_millis() as u64),
                })
                .collect(),
        });
        Status {
            node: self.node_name.clone(),
            accepting: !self.stopped_accepting.is_cancelled(),
            cluster_members: self.metrics.cluster_members.get(),
            cluster,
            listeners,
        }
    }
}

/// The header every POST must carry (any value), so that only a client
/// that can set headers on a same-origin request can command the node: not
/// a cross-site form, not a cross-origin `fetch` (see the module doc).
pub const COMMAND_HEADER: &str = "x-shoal-command";

/// The status page: one self-contained file (inline CSS and JS, no
/// external URL) that reads `/status` every 2 s and posts drains.
const PAGE_HTML: &str = include_str!("admin_page.html");

/// The endpoint's routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/backends/{listener}/{backend}/drain", post(drain))
        .route("/backends/{listener}/{backend}/undrain", post(undrain))
        .route("/drain-node", post(drain_node))
        .route("/reload", post(reload))
        .with_state(state)
}

/// The answer to a drain or undrain.
#[derive(Debug, Serialize)]
pub struct DrainAnswer {
    pub listener: String,
    pub backend: String,
    pub draining: bool,
    /// `fleet`: every node of the fleet applies it (fleet state, versioned);
    /// `node`: this node only (it has no `[cluster]`).
    pub scope: &'static str,
    /// The command's version, with a fleet.
    pub version: Option<u64>,
}

/// The answer to `POST /drain-node`.
#[derive(Debug, Serialize)]
pub struct DrainNodeAnswer {
    pub node: String,
    /// Client connections still open on this node.
    pub open: i64,
}

/// Refuses a POST without [`COMMAND_HEADER`], naming what is missing.
fn refuse_without_command_header(headers: &HeaderMap) -> Option<Response> {
    if headers.contains_key(COMMAND_HEADER) {
        return None;
    }
    Some(
        (
            StatusCode::FORBIDDEN,
            format!(
                "commands need the header `{COMMAND_HEADER}: 1` (shoal ctl and the status page send it; \
                 it keeps pages of other sites from posting commands through a browser)\n"
            ),
        )
            .into_response(),
    )
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page runs only its own inline script and talks only to
            // this endpoint; no other site may frame it (clickjacking of
            // the drain buttons).
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE_HTML,
    )
}

async fn drain_node(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_without_command_header(&headers) {
        return refused;
    }
    if !s.drain_node.is_cancelled() {
        tracing::info!("drain-node requested on the admin endpoint");
    }
    s.drain_node.cancel();
    Json(DrainNodeAnswer {
        node: s.node_name.clone(),
        open: s.listeners.get().iter().map(|l| l.active.get()).sum(),
    })
    .into_response()
}

/// `POST /reload`: re-reads the configuration file (decision 57). 200
/// with a one-line summary of what changed, 400 with the one-line reason
/// nothing was applied, 503 once the node is stopping.
async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_without_command_header(&headers) {
        return refused;
    }
    let Some(handle) = &s.reload else {
        return (
            StatusCode::BAD_REQUEST,
            "this node was not started from a configuration file (shoal run -c FILE): nothing to reload\n",
        )
            .into_response();
    };
    match handle.request().await {
        Some(Ok(summary)) => (StatusCode::OK, summary + "\n").into_response(),
        Some(Err(line)) => (StatusCode::BAD_REQUEST, line + "\n").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping: reloads are not taken during the drain\n",
        )
            .into_response(),
    }
}

async fn drain(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((listener, backend)): Path<(String, String)>,
) -> Response {
    match refuse_without_command_header(&headers) {
        Some(refused) => refused,
        None => set_drain(&s, listener, backend, true).await,
    }
}

async fn undrain(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path((listener, backend)): Path<(String, String)>,
) -> Response {
    match refuse_without_command_header(&headers) {
        Some(refused) => refused,
        None => set_drain(&s, listener, backend, false).await,
    }
}

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, message + "\n").into_response()
}

async fn set_drain(s: &AdminState, listener: String, backend: String, draining: bool) -> Response {
    let Some(state) = s.listeners.get().into_iter().find(|l| l.name == listener) else {
        return not_found(format!("no listener named `{listener}`"));
    };
    let id = {
        let b = state.lock();
        b.pool.find(&backend).filter(|&id| !b.pool.is_removed(id))
    };
    let Some(id) = id else {
        return not_found(format!(
            "listener `{listener}` has no backend `{backend}` (backends are named by their configured address)"
        ));
    };
    let (scope, version) = match &s.fleet {
        Some(fleet) => match fleet
            .drain(BackendKey::new(&listener, &backend), draining)
            .await
        {
            Some(Ok(mark)) => ("fleet", Some(mark.version)),
            Some(Err(e)) => return not_found(e.to_string()),
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the node is stopping: its fleet task has ended\n",
                )
                    .into_response();
            }
        },
        None => {
            state.lock().pool.set_draining(id, draining);
            ("node", None)
        }
    };
    tracing::info!(listener = %listener, backend = %backend, draining, scope, "drain command");
    Json(DrainAnswer {
        listener,
        backend,
        draining,
        scope,
        version,
    })
    .into_response()
}

/// The fleet's status, asked of the fleet task (which also refreshes the
/// gauges that are costly to keep current, such as the report age).
async fn fleet(s: &AdminState) -> Option<FleetStatus> {
    match &s.fleet {
        Some(f) => f.status().await,
        None => None,
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let fleet = fleet(&s).await;
    s.status(fleet);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn status(State(s): State<AdminState>) -> Json<Status> {
    let fleet = fleet(&s).await;
    Json(s.status(fleet))
}
