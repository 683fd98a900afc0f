//! # shoal-e2e
//!
//! The harness of shoal's end-to-end tests: it starts real `shoal`
//! processes with a config written to a temporary file, real backends on
//! 127.0.0.1 port 0, and talks to them over real sockets. The tests
//! themselves live in `tests/tests/`.
//!
//! ## Layout
//! - [`backend`]: test backends (echo, hold-open, HTTP) that can be killed
//!   and restarted on the same port, counting their open connections.
//! - [`node`]: [`node::Shoal`], one `shoal` process: waits for its `ready`
//!   log event, reads `/status` and `/metrics`, sends SIGTERM, and kills
//!   the process it started (by PID) when dropped.
//! - [`fleet`]: certificates through `shoal certs`, fleet configurations.
//! - [`dnsq`]: one DNS question to one server on loopback (UDP or TCP),
//!   with the reply's code, flags and addresses.
//! - [`dnsmasq`]: a real DNS server (dnsmasq) on loopback, serving a
//!   hosts file the test rewrites.
//! - [`haproxy`]: HAProxy on loopback with a test's configuration (a PROXY
//!   protocol peer nobody here wrote).
//! - [`netns`]: re-runs a test inside network, mount and PID namespaces
//!   with `/etc` files of its own.
//! - [`chaos`]: the chaos run, the soak's fleet on a [`netlab`] with
//!   clients through a round-robin name and partitions among its faults.
//! - [`netlab`]: nodes in network namespaces of their own on one
//!   bridge, and partitions cut and healed with nftables.
//! - [`needs`]: fails a test that lacks root or a tool, naming it.
//! - [`eventually`]: polling with a bound, instead of sleeping.

pub mod backend;
pub mod chaos;
pub mod dnsmasq;
pub mod dnsq;
pub mod fleet;
pub mod haproxy;
pub mod load;
pub mod needs;
pub mod netlab;
pub mod netns;
pub mod node;
pub mod soak;

use std::future::Future;
use std::time::Duration;

/// Calls `check` every 50 ms until it returns `Some`, or fails after
/// `limit` with `what` in the message. Waiting for a state, never for a
/// time: a slow machine only makes this slower, not wrong.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The generous bound for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(20);

/// A one-listener config named `web` on 127.0.0.1 port 0 with an admin
/// endpoint on port 0, fast health checks (200 ms, timeout 100 ms, rise 2,
/// fall 2), and `extra` lines added to the listener table.
pub fn config(backends: &[std::net::SocketAddr], extra: &str) -> String {
    let entries: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    config_entries("", &entries, extra)
}

/// [`config`] with `backends` as TOML entries as written (`"name:port"`,
/// `{ addr = "…", weight = 2 }`) and `node_extra` lines in `[node]`.
pub fn config_entries(node_extra: &str, backends: &[String], extra: &str) -> String {
    format!(
        r#"[node]
name = "e2e"
admin = "127.0.0.1:0"
drain_timeout_ms = 10000
{node_extra}

[[listener]]
name = "web"
bind = "127.0.0.1:0"
allow_ephemeral_port = true
backends = [{list}]
{extra}
  [listener.health]
  interval_ms = 200
  timeout_ms = 100
  rise = 2
  fall = 2
"#,
        list = backends.join(", ")
    )
}

/// Writes `msg` and reads exactly as many bytes back (an echo round trip).
pub async fn echo_round_trip(s: &mut tokio::net::TcpStream, msg: &[u8]) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    assert_eq!(back, msg);
    Ok(())
}
