//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /status` (JSON: listeners, backends, health and counts).

use crate::listener::ListenerState;
use crate::metrics::{BackendLabels, Metrics};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;

/// What the endpoint reads.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub node_name: String,
    pub listeners: Vec<Arc<ListenerState>>,
    pub metrics: Arc<Metrics>,
}

/// `/status` body.
#[derive(Debug, Serialize)]
pub struct Status {
    pub node: String,
    pub cluster_members: i64,
    pub listeners: Vec<ListenerStatus>,
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
    pub up: bool,
    pub active_connections: u32,
    pub cluster_connections: u64,
}

impl AdminState {
    /// A snapshot of every listener, also copied into the gauges.
    pub fn status(&self) -> Status {
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
                        let up = b.pool.is_up(id);
                        self.metrics
                            .backend_up
                            .get_or_create(&labels)
                            .set(i64::from(up));
                        self.metrics
                            .backend_active
                            .get_or_create(&labels)
                            .set(i64::from(active));
                        // A fleet of one: the cluster-wide count is ours.
                        self.metrics
                            .backend_cluster
                            .get_or_create(&labels)
                            .set(i64::from(active));
                        BackendStatus {
                            address,
                            up,
                            active_connections: active,
                            cluster_connections: u64::from(active),
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
        Status {
            node: self.node_name.clone(),
            cluster_members: self.metrics.cluster_members.get(),
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

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    s.status();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn status(State(s): State<AdminState>) -> Json<Status> {
    Json(s.status())
}
