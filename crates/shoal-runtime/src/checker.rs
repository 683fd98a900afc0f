//! The active health-check driver of one listener: asks the pool which
//! backends are due (`poll_check`: in a fleet only those this node checks,
//! decision 49), probes each with a TCP connect (from `health.source`, if
//! configured) bounded
//! by the check timeout, feeds results back (`handle_check_result`, or
//! `handle_check_inconclusive` when the probe could not be made for want
//! of a local resource, see [`crate::local`]), and sleeps until the pool's
//! next deadline (`poll_timeout`).

use crate::listener::ListenerState;
use crate::metrics::{CheckLabels, CheckResult, LocalOp, Metrics};
use shoal_core::proxy_header::{self, ProxyVersion};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Why a probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The connect failed (refused, unreachable, or a local error: the
    /// caller tells those apart with [`crate::local::resource_errno`]).
    Connect(io::Error),
    /// No answer within the check timeout.
    Timeout(Duration),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Connect(e) => e.fmt(f),
            ProbeError::Timeout(t) => write!(f, "no answer within {} ms", t.as_millis()),
        }
    }
}

/// A probe: can a TCP connection be opened within `timeout`, from
/// `source` (any port) if given? With `send_proxy`, the probe then sends
/// the PROXY protocol header that says "no client" (v1 `UNKNOWN`, v2
/// `LOCAL`), as HAProxy's `check-send-proxy` does, so a backend that
/// requires the header sees a well-formed connection; whether that write
/// succeeds does not change the verdict.
pub async fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
    send_proxy: Option<ProxyVersion>,
) -> Result<(), ProbeError> {
    let connect = async {
        let Some(ip) = source else {
            return TcpStream::connect(addr).await;
        };
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(ip, 0))?;
        socket.connect(addr).await
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => {
            if let Some(v) = send_proxy {
                let _ = stream.try_write(&proxy_header::encode_local(v));
            }
            Ok(())
        }
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

/// Runs the checks of `state`'s pool until `stop`. Each probe follows the
/// listener's configuration as it is when the probe starts (a reload may
/// change it).
pub async fn run(state: Arc<ListenerState>, metrics: Arc<Metrics>, stop: CancellationToken) {
    // At most one check per backend is in flight, and a probe that finds
    // the channel full waits for room, so no result is lost.
    let (tx, mut rx) = mpsc::channel(state.lock().pool.len().max(1));
    loop {
        let config = state.config();
        let timeout = config.health.timeout;
        let source = config.health_source;
        let send_proxy = config.send_proxy;
        let deadline = {
            let mut b = state.lock();
            let now = state.clock.now();
            while let Some(id) = b.pool.poll_check(now) {
                let addr = b.backends[id.0].addr;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = probe(addr, source, timeout, send_proxy).await;
                    let _ = tx.send((id, addr, result)).await;
                });
            }
            b.pool.poll_timeout()
        };
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(state.clock.to_std(t).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((id, addr, result)) = rx.recv() => {
                let backend = addr.to_string();
                if let Err(ProbeError::Connect(e)) = &result
                    && state.local.record(LocalOp::check, Some(&backend), e)
                {
                    // This node's shortage, not the backend's: no verdict.
                    let mut b = state.lock();
                    b.pool.handle_check_inconclusive(id);
                    continue;
                }
                let ok = result.is_ok();
                if let Err(e) = &result {
                    debug!(listener = %state.name, %backend, error = %e, "health check failed");
                }
                metrics.health_checks.get_or_create(&CheckLabels {
                    listener: state.name.clone(),
                    backend,
                    result: if ok { CheckResult::ok } else { CheckResult::failed },
                }).inc();
                let mut b = state.lock();
                b.pool.handle_check_result(id, ok);
                state.report_events(&mut b.pool);
            }
            () = sleep => {}
            () = state.checks_moved.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}
