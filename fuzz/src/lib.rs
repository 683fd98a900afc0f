//! What the fuzz targets and the seed generator share: the node under
//! test and a small in-memory fleet whose traffic is the seed corpus.
//!
//! Layout:
//! - `fuzz_targets/wire_datagram.rs`: report datagrams and SWIM packets,
//!   through the codec and through a node;
//! - `fuzz_targets/wire_sync.rs`: full-state sync messages, likewise;
//! - `fuzz_targets/config.rs`: configuration text;
//! - `src/bin/seeds.rs`: writes [`fleet_traffic`] and the repository's
//!   `cluster/*.toml` to `corpus/<target>/`.
//!
//! Everything here is deterministic (virtual time, fixed RNG seeds), so a
//! crashing input replays the same way on every machine.

use shoal_core::Instant;
use shoal_core::cluster::identity::NodeId;
use shoal_core::cluster::report::{BackendKey, ReportEntry};
use shoal_core::cluster::{Cluster, ClusterConfig, ClusterEvent};
use shoal_core::wire;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Nodes in the seed fleet; node 0 is the node under test.
pub const FLEET_NODES: usize = 3;

/// Virtual time the seed fleet runs for: long enough for membership to
/// converge, reports to flow and a drain mark to spread.
pub const FLEET_RUN_MS: u64 = 3_000;

/// Step of the seed fleet's virtual clock.
const FLEET_STEP_MS: u64 = 10;

/// Datagrams to node 0 kept from the seed fleet, at most (the corpus
/// stays small; the first ones are the most varied: announces, joins,
/// first reports).
pub const SEED_DATAGRAMS_MAX: usize = 48;

/// Rounds of `poll_*` after one input, at most: the node's outputs are
/// bounded, but a target must never loop on a bug.
const POLL_ROUNDS_MAX: usize = 100_000;

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

pub fn name(i: usize) -> String {
    format!("n{i}")
}

pub fn identity(i: usize) -> NodeId {
    NodeId::new(addr(i), name(i), 1)
}

pub fn config() -> ClusterConfig {
    ClusterConfig::lan(
        FLEET_NODES as u32,
        Duration::from_millis(250),
        Duration::from_millis(3000),
    )
}

/// A fresh node `i` of the seed fleet.
pub fn node(i: usize) -> Cluster {
    Cluster::new(identity(i), config(), i as u64, Instant::ZERO)
}

/// What each node of the seed fleet reports.
fn entries(i: usize) -> Vec<ReportEntry> {
    (0..4)
        .map(|b| {
            ReportEntry::new(
                BackendKey::new("web", &format!("10.0.0.{b}:80")),
                b != 3,
                (i * 10 + b) as u32,
            )
        })
        .collect()
}

/// What the seed fleet said.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// Datagrams node 0 received (SWIM packets and report datagrams), in
    /// order, with the name of the sender; at most [`SEED_DATAGRAMS_MAX`].
    pub to_node0: Vec<(String, Vec<u8>)>,
    /// Each node's `sync_message()` at the end.
    pub syncs: Vec<Vec<u8>>,
}

/// Runs three nodes on virtual time for [`FLEET_RUN_MS`], every datagram
/// delivered at once, node 1 draining a backend half way.
pub fn fleet_traffic() -> Traffic {
    let mut nodes: Vec<Cluster> = (0..FLEET_NODES).map(node).collect();
    let mut to_node0 = Vec::new();
    let mut now = Instant::ZERO;
    for (i, n) in nodes.iter_mut().enumerate() {
        let seed = if i == 0 { addr(1) } else { addr(0) };
        n.join(now, &[seed]);
    }
    let mut ms = 0;
    while ms <= FLEET_RUN_MS {
        now = Instant::from_millis(ms);
        if ms == FLEET_RUN_MS / 2 {
            nodes[1].set_drain(entries(1)[0].key, true, 1_000);
        }
        for i in 0..FLEET_NODES {
            if nodes[i].poll_timeout() <= now {
                nodes[i].handle_timeout(now);
            }
            while let Some(e) = nodes[i].poll_event() {
                if matches!(e, ClusterEvent::ReportDue) {
                    nodes[i].publish_report(now, &entries(i), false);
                }
            }
            // Delivered until quiet: an answer can cause another.
            let mut queue = Vec::new();
            while let Some(t) = nodes[i].poll_transmit() {
                queue.push((i, t));
            }
            while let Some((from, t)) = queue.pop() {
                let to = usize::from(t.to.port() - 7000);
                if to >= FLEET_NODES {
                    continue;
                }
                if to == 0 && to_node0.len() < SEED_DATAGRAMS_MAX {
                    to_node0.push((name(from), t.data.clone()));
                }
                let _ = nodes[to].handle_datagram_from(now, &name(from), &t.data);
                while let Some(t) = nodes[to].poll_transmit() {
                    queue.push((to, t));
                }
            }
        }
        ms += FLEET_STEP_MS;
    }
    let syncs = nodes
        .iter()
        .map(|n| n.sync_message().expect("the seed fleet's sync encodes"))
        .collect();
    Traffic { to_node0, syncs }
}

/// Node 1's sync message from the seed fleet, computed once per process.
fn node1_sync() -> &'static [u8] {
    static SYNC: OnceLock<Vec<u8>> = OnceLock::new();
    SYNC.get_or_init(|| fleet_traffic().syncs.swap_remove(1))
}

/// When the node under test receives the input.
pub const NOW: Instant = Instant::from_millis(FLEET_RUN_MS);

/// Node 0 as it would be after a push-pull with node 1: it knows the
/// fleet's members and reports, so SWIM packets from them reach foca's
/// member paths and report datagrams can replace shards. Its outputs so
/// far are discarded.
pub fn warm_node() -> Cluster {
    let mut n = node(0);
    n.join(NOW, &[addr(1)]);
    n.handle_sync(NOW, node1_sync())
        .expect("the seed fleet's sync applies");
    drain(&mut n);
    n
}

/// Takes every output of `n`, publishing a report when asked.
pub fn drain(n: &mut Cluster) {
    for _ in 0..POLL_ROUNDS_MAX {
        let mut busy = false;
        while let Some(e) = n.poll_event() {
            busy = true;
            if matches!(e, ClusterEvent::ReportDue) {
                n.publish_report(NOW, &entries(0), false);
            }
        }
        while n.poll_transmit().is_some() {
            busy = true;
        }
        if !busy {
            return;
        }
    }
    panic!("node 0 kept producing outputs for {POLL_ROUNDS_MAX} rounds");
}

/// What every target checks after feeding a node: it still answers, its
/// sync message encodes and decodes to what it knows, and its timers run.
pub fn assert_usable(n: &mut Cluster) {
    drain(n);
    let sync = n
        .sync_message()
        .expect("a node's own sync message always encodes");
    let state = wire::decode_sync(&sync).expect("a node's own sync message decodes");
    assert_eq!(&state.from, n.identity());
    n.handle_timeout(NOW + Duration::from_secs(1));
    drain(n);
}
