//! The active health-check driver of one listener: asks the pool which
//! backends are due (`poll_check`), probes each with a TCP connect bounded
//! by the check timeout, feeds results back (`handle_check_result`), and
//! sleeps until the pool's next deadline (`poll_timeout`).

use crate::listener::ListenerState;
use crate::metrics::{CheckLabels, CheckResult, Metrics};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A probe: can a TCP connection be opened within `timeout`?
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Runs the checks of `state`'s pool until `stop`.
pub async fn run(state: Arc<ListenerState>, metrics: Arc<Metrics>, stop: CancellationToken) {
    // At most one check per backend is in flight, so this bound is never hit.
    let (tx, mut rx) = mpsc::channel(state.config.backends.len().max(1));
    let timeout = state.config.health.timeout;
    loop {
        let deadline = {
            let mut b = state.lock();
            let now = state.clock.now();
            while let Some(id) = b.pool.poll_check(now) {
                let addr = state.config.backends[id.0];
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = probe(addr, timeout).await;
                    let _ = tx.send((id, result)).await;
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
            Some((id, result)) = rx.recv() => {
                let backend = state.config.backends[id.0].to_string();
                let ok = result.is_ok();
                if let Err(e) = &result {
                    debug!(listener = %state.config.name, %backend, error = %e, "health check failed");
                }
                metrics.health_checks.get_or_create(&CheckLabels {
                    listener: state.config.name.clone(),
                    backend,
                    result: if ok { CheckResult::ok } else { CheckResult::failed },
                }).inc();
                let mut b = state.lock();
                b.pool.handle_check_result(id, ok);
                state.report_events(&mut b.pool);
            }
            () = sleep => {}
            () = stop.cancelled() => return,
        }
    }
}
