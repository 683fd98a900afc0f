//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /status` (JSON: listeners, backends, health and counts).

use crate::fleet::FleetHandle;
use crate::listener::ListenerState;
use crate::metrics::{BackendLabels, Metrics};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;
use shoal_core::node::FleetStatus;
use std::sync::Arc;

/// What the endpoint reads.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub node_name: String,
    pub listeners: Vec<Arc<ListenerState>>,
    pub metrics: Arc<Metrics>,
    /// With `[cluster]`: asks the fleet task, which builds its status when
    /// asked.
    pub fleet: Option<FleetHandle>,
}

/// `/status` body.
#[derive(Debug, Serialize)]
pub struct Status {
    pub node: String,
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
    /// Whether this node sends it new connections (its own checks and the
    /// fleet's majority agree it is up).
    pub up: bool,
    /// This node's own checks.
    pub checks_up: bool,
    /// Live peers whose checks say it is down.
    pub fleet_down_votes: u32,
    pub active_connections: u32,
    /// Σ of the peers' reported counts.
    pub remote_connections: u32,
    /// This node's estimate of the whole fleet's count.
    pub cluster_connections: u64,
}

impl AdminState {
    /// A snapshot of every listener, also copied into the gauges.
    pub fn status(&self, fleet: Option<FleetStatus>) -> Status {
        let listeners = self
            .listeners
            .iter()
            .map(|l| {
                let b = l.lock();
                let backends = b
                    .pool
                    .ids()
                    .map(|id| {
                        let address = b.pool.spec(id).name.clone();
                        let active = b.pool.active(id);
                        let labels = BackendLabels {
                            listener: l.config.name.clone(),
                            backend: address.clone(),
                        };
                        let checks_up = b.pool.is_up(id);
                        let up = checks_up && !b.pool.is_fleet_down(id);
                        let remote = b.pool.remote(id);
                        let cluster = b.pool.cluster_active(id);
                        let m = &self.metrics;
                        m.backend_up.get_or_create(&labels).set(i64::from(up));
                        m.backend_active
                            .get_or_create(&labels)
                            .set(i64::from(active));
                        m.backend_cluster
                            .get_or_create(&labels)
                            .set(i64::try_from(cluster).unwrap_or(i64::MAX));
                        BackendStatus {
                            address,
                            up,
                            checks_up,
                            fleet_down_votes: remote.down_votes,
                            active_connections: active,
                            remote_connections: remote.active,
                            cluster_connections: cluster,
                        }
                    })
                    .collect();
                ListenerStatus {
                    name: l.config.name.clone(),
                    bind: l.local_addr.to_string(),
                    policy: l.config.policy.to_string(),
                    active_connections: l.active.get(),
                    backends,
                }
            })
            .collect();
        let cluster = fleet.map(|f| ClusterStatus {
            identity: format!("{:?}", f.identity),
            live_nodes: f.live_nodes,
            members: f
                .members
                .iter()
                .map(|(id, age)| MemberStatus {
                    name: id.name.clone(),
                    addr: id.addr.to_string(),
                    report_age_ms: age.map(|a| a.as_millis() as u64),
                })
                .collect(),
        });
        Status {
            node: self.node_name.clone(),
            cluster_members: self.metrics.cluster_members.get(),
            cluster,
            listeners,
        }
    }
}

/// The endpoint's routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
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
