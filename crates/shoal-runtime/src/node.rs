//! One shoal node: binds every socket first (so a port in use fails the
//! start, not a later moment), runs the listeners, health checkers and
//! admin endpoint, and on shutdown stops accepting, lets open connections
//! finish for up to the drain timeout, then cuts what is left.

use crate::admin::{self, AdminState};
use crate::checker;
use crate::clock::Clock;
use crate::listener::{self, ListenerState};
use crate::metrics::Metrics;
use shoal_config::Config;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// A socket that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{what}: cannot bind {addr}: {source}")]
pub struct StartError {
    /// What the socket is for, e.g. `listener "web"`.
    pub what: String,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A node with its sockets bound, ready to [`Node::run`].
#[derive(Debug)]
pub struct Node {
    config: Config,
    listeners: Vec<(Arc<ListenerState>, TcpListener)>,
    admin: Option<TcpListener>,
    metrics: Arc<Metrics>,
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    // Lets a restarted node bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

impl Node {
    /// Binds every listener and the admin endpoint.
    pub fn bind(config: Config) -> Result<Node, StartError> {
        let clock = Clock::new();
        let metrics = Arc::new(Metrics::new());
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let tcp = bind_tcp(l.bind, l.backlog).map_err(|source| StartError {
                what: format!("listener \"{}\"", l.name),
                addr: l.bind,
                source,
            })?;
            let local = tcp.local_addr().map_err(|source| StartError {
                what: format!("listener \"{}\"", l.name),
                addr: l.bind,
                source,
            })?;
            let state = ListenerState::new(l.clone(), local, clock, &metrics);
            listeners.push((Arc::new(state), tcp));
        }
        let admin = config
            .node
            .admin
            .map(|addr| {
                bind_tcp(addr, 128).map_err(|source| StartError {
                    what: "admin endpoint (node.admin)".to_owned(),
                    addr,
                    source,
                })
            })
            .transpose()?;
        Ok(Node {
            config,
            listeners,
            admin,
            metrics,
        })
    }

    /// Each listener's name and bound address.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(s, _)| (s.config.name.clone(), s.local_addr))
            .collect()
    }

    /// The admin endpoint's bound address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains (see the module doc).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop_accepting = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let mut background = Vec::new();
        let states: Vec<_> = self.listeners.iter().map(|(s, _)| s.clone()).collect();
        for (state, tcp) in self.listeners {
            info!(listener = %state.config.name, bind = %state.local_addr, policy = %state.config.policy,
                backends = state.config.backends.len(), "listening");
            background.push(tokio::spawn(checker::run(
                state.clone(),
                self.metrics.clone(),
                stop_accepting.clone(),
            )));
            background.push(tokio::spawn(listener::accept_loop(
                state,
                tcp,
                connections.clone(),
                stop_accepting.clone(),
                hard_stop.clone(),
            )));
        }
        let admin_task = self.admin.map(|tcp| {
            if let Ok(addr) = tcp.local_addr() {
                info!(admin = %addr, "admin endpoint serving /metrics and /status");
            }
            let router = admin::router(AdminState {
                node_name: self.config.node.name.clone(),
                listeners: states,
                metrics: self.metrics.clone(),
            });
            let stop = hard_stop.clone();
            tokio::spawn(async move {
                let served = axum::serve(tcp, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    warn!(error = %e, "admin endpoint stopped");
                }
            })
        });

        shutdown.await;
        let drain = self.config.node.drain_timeout;
        info!(
            open = connections.len(),
            drain_timeout_ms = drain.as_millis() as u64,
            "shutting down: stopped accepting, draining open connections"
        );
        stop_accepting.cancel();
        for task in background {
            let _ = task.await;
        }
        connections.close();
        if tokio::time::timeout(drain, connections.wait())
            .await
            .is_err()
        {
            warn!(
                open = connections.len(),
                "drain timeout reached; closing the remaining connections"
            );
            hard_stop.cancel();
            // Cancelled connections end at their next poll; this bound only
            // guards against a task that never yields.
            let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
        }
        hard_stop.cancel();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        info!("stopped");
    }
}
