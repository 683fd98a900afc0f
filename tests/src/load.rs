//! Client load for the change-without-dropping tests (reload, upgrade):
//! short connections (one echo round trip) and long-lived ones (a round
//! trip every 50 ms), with a tally of what failed and the first reason.

use crate::echo_round_trip;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// Connections attempted and failed, and the first failure's reason.
#[derive(Debug, Default)]
pub struct Tally {
    pub attempted: AtomicU64,
    pub failed: AtomicU64,
    pub first_failure: Mutex<Option<String>>,
}

impl Tally {
    pub fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }
}

/// A short connection: connect, one echo round trip, close.
pub async fn short(lb: SocketAddr, n: u64) -> Result<(), String> {
    let mut s = TcpStream::connect(lb)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    echo_round_trip(&mut s, format!("short {n}").as_bytes())
        .await
        .map_err(|e| format!("short echo {n}: {e}"))
}

/// A long-lived connection: an echo round trip every 50 ms for `life`.
pub async fn long_lived(lb: SocketAddr, n: u64, life: Duration) -> Result<(), String> {
    let mut s = TcpStream::connect(lb)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let end = tokio::time::Instant::now() + life;
    let mut i = 0;
    while tokio::time::Instant::now() < end {
        echo_round_trip(&mut s, format!("long {n}.{i}").as_bytes())
            .await
            .map_err(|e| format!("long-lived echo {n}.{i}: {e}"))?;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
