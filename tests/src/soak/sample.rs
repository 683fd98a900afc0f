//! Samples of every node: open descriptors (`/proc/PID/fd`), resident
//! memory (`VmRSS` of `/proc/PID/status`) and the counts of `/status`.
//! The descriptors are read first and `/status` right after, so that the
//! report can subtract the two descriptors of each open connection.

use super::SAMPLES_MAX;
use super::fleet::{Fleet, fd_count, status};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One node at one sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The sample's number; all nodes of one sample share it.
    pub index: usize,
    /// From the start of the load.
    pub t: Duration,
    pub node: usize,
    /// Taken after the load stopped (not used for slopes).
    pub after_load: bool,
    /// `None`: the node was down (churned) at that moment.
    pub seen: Option<Seen>,
}

/// What a running node showed.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which process of this node (0 the first, +1 each restart).
    pub incarnation: u32,
    pub fds: usize,
    pub rss_kib: u64,
    /// `None` if `/status` did not answer (e.g. the node was just killed).
    pub counts: Option<Counts>,
}

/// From `/status`.
#[derive(Debug, Clone)]
pub struct Counts {
    /// The listener's open client connections.
    pub active: i64,
    /// Σ over backends of this node's own connections.
    pub backend_active: u64,
    /// Σ over backends of the fleet-wide estimate.
    pub cluster: u64,
    /// Per backend, in configuration order: (own, fleet-wide estimate).
    pub per_backend: Vec<(u64, u64)>,
    pub members: u64,
}

/// `VmRSS` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn counts(s: &serde_json::Value) -> Option<Counts> {
    let l = &s["listeners"][0];
    let backends = l["backends"].as_array()?;
    Some(Counts {
        active: l["active_connections"].as_i64()?,
        backend_active: backends
            .iter()
            .map(|b| b["active_connections"].as_u64())
            .sum::<Option<u64>>()?,
        cluster: backends
            .iter()
            .map(|b| b["cluster_connections"].as_u64())
            .sum::<Option<u64>>()?,
        per_backend: backends
            .iter()
            .map(|b| {
                Some((
                    b["active_connections"].as_u64()?,
                    b["cluster_connections"].as_u64()?,
                ))
            })
            .collect::<Option<_>>()?,
        members: s["cluster"]["live_nodes"].as_u64()?,
    })
}

/// One sample of every node.
pub async fn sample_all(fleet: &Fleet, t0: Instant, index: usize, after_load: bool) -> Vec<Sample> {
    let t = t0.elapsed();
    let mut out = Vec::new();
    for (node, r) in fleet.running().await.into_iter().enumerate() {
        let seen = match r {
            None => None,
            Some(r) => match (fd_count(r.pid), rss_kib(r.pid)) {
                (Some(fds), Some(rss_kib)) => Some(Seen {
                    incarnation: r.incarnation,
                    fds,
                    rss_kib,
                    counts: status(r.admin).await.ok().as_ref().and_then(counts),
                }),
                _ => None,
            },
        };
        out.push(Sample {
            index,
            t,
            node,
            after_load,
            seen,
        });
    }
    out
}

/// Samples every `every` from `t0` while the time is short of `until`,
/// or until `stop`.
pub async fn sampler(
    fleet: Fleet,
    every: Duration,
    until: Duration,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut out = Vec::new();
    for index in 0..SAMPLES_MAX {
        let at = every * index as u32;
        if at >= until || *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(t0 + at)) => {}
            _ = stop.changed() => break,
        }
        out.extend(sample_all(&fleet, t0, index, false).await);
    }
    out
}
