//! Partitions on real processes: four `shoal` nodes, each in a network
//! namespace of its own on one bridge (`shoal_e2e::netlab`), split 2|2
//! by nftables on the bridge while clients hold connections through
//! every node, then healed.
//!
//! What must hold: each side detects the other gone and shows only its
//! own members; both sides keep proxying their clients (the backends sit
//! on the bridge, reachable from both sides); each side's fleet-wide
//! counts are its own side's connections only; after the heal every node
//! holds all four members again, and every node's count per backend is
//! the whole fleet's once the load stops changing; closing every
//! connection brings every count on every node back to zero.
//!
//! Needs root (network namespaces, veth pairs, nftables), iproute2,
//! util-linux and nftables: without them the test fails and says which
//! is missing (CI runs as root and `.ci/run` installs the packages).
//!
//! Seen failing against a wrong behaviour: with the core keeping a down
//! peer's reports (`View::remove_origin` and `View::expire` made no-ops),
//! each side kept counting the other side's connections and the wait
//! for "each side to count only its own connections" timed out.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, fleet_config, pinned};
use shoal_e2e::netlab::{self, Lab};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, echo_round_trip, eventually, netns};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

const NODES: usize = 4;
const BACKENDS: usize = 2;
/// Bound on the reassembly after the heal. Nobody in a 2|2 split is
/// alone, so nobody re-seeds; the halves find each other through foca's
/// gossip or, at the latest, the core's announce to seeds not held alive
/// (`MISSING_SEED_ANNOUNCE_INTERVAL`, 30 s per node). Seen: 0.8 to 20 s.
const HEAL_LIMIT: Duration = Duration::from_secs(40);

/// Per backend address: the connections counted.
type Counts = BTreeMap<String, u64>;

/// `(live_nodes, names of the members holding a report from them)`.
async fn members(node: &Shoal) -> (u64, Vec<String>) {
    let s = node.status().await;
    let mut names: Vec<String> = s["cluster"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["report_age_ms"].is_u64())
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    (s["cluster"]["live_nodes"].as_u64().unwrap_or(0), names)
}

fn name(i: usize) -> String {
    format!("node-{}", i + 1)
}

/// Until every node of `side` holds exactly the other members of `side`.
async fn side_is_whole(nodes: &[Shoal], side: &[usize]) -> bool {
    for &i in side {
        let mut want: Vec<String> = side.iter().filter(|&&j| j != i).map(|&j| name(j)).collect();
        want.sort();
        if members(&nodes[i]).await != (side.len() as u64, want) {
            return false;
        }
    }
    true
}

/// Node `i`'s own connections per backend.
async fn own(node: &Shoal) -> Counts {
    node.backends("web")
        .await
        .into_iter()
        .map(|(a, _, active)| (a, active))
        .collect()
}

/// Node `i`'s estimate of the fleet's connections per backend.
async fn fleet_view(node: &Shoal) -> Counts {
    node.cluster_counts("web").await.into_iter().collect()
}

/// Σ of the own counts of `of`.
async fn truth(nodes: &[Shoal], of: &[usize]) -> Counts {
    let mut sum = Counts::new();
    for &i in of {
        for (b, n) in own(&nodes[i]).await {
            *sum.entry(b).or_default() += n;
        }
    }
    sum
}

/// Until every node of `side` counts, per backend, exactly the
/// connections of `side` (read again at each look).
async fn views_are(nodes: &[Shoal], side: &[usize], what: &str) {
    eventually(what, WAIT, || async {
        let want = truth(nodes, side).await;
        for &i in side {
            if fleet_view(&nodes[i]).await != want {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// `n` connections through `node`, each after one echo round trip.
async fn hold(node: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for k in 0..n {
        let mut s = TcpStream::connect(node).await.unwrap();
        echo_round_trip(&mut s, format!("held {k} via {node}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("echo through {node}: {e}"));
        held.push(s);
    }
    held
}

async fn split_and_heal() {
    let mut lab = Lab::new(NODES);
    let certs = Certs::new();
    let mut backends = Vec::new();
    for _ in 0..BACKENDS {
        let at = SocketAddr::from((netlab::HOST_IP, 0));
        backends.push(Backend::start_at(at, Behaviour::Echo).await);
    }
    let backend_addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let seeds: Vec<String> = (0..NODES)
            .filter(|&j| j != i)
            .map(|j| netlab::cluster_addr(j).to_string())
            .collect();
        let config = fleet_config(
            &name(i),
            &backend_addrs,
            netlab::cluster_addr(i),
            &seeds,
            &certs.node(&name(i)),
            "",
            "",
        );
        let config = pinned(&config, netlab::listener_addr(i), netlab::admin_addr(i)).unwrap();
        nodes.push(Shoal::start_with(&lab.wrapper(i), &config).await);
    }
    let all: Vec<usize> = (0..NODES).collect();
    eventually("the fleet of four to assemble", WAIT, || async {
        side_is_whole(&nodes, &all).await.then_some(())
    })
    .await;

    // Node i holds i+1 connections: ten in all, each side's share differs.
    let mut held = Vec::new();
    for i in 0..NODES {
        held.extend(hold(netlab::listener_addr(i), i + 1).await);
    }
    views_are(
        &nodes,
        &all,
        "every node to count the fleet's 10 connections",
    )
    .await;

    let sides = [vec![0, 1], vec![2, 3]];
    lab.partition(&sides);
    let cut = Instant::now();
    eventually("each side to hold only its own members", WAIT, || async {
        for side in &sides {
            if !side_is_whole(&nodes, side).await {
                return None;
            }
        }
        Some(())
    })
    .await;
    eprintln!(
        "2|2 partition detected on both sides after {:?}",
        cut.elapsed()
    );

    // Both sides keep serving their clients, and each counts only its own.
    for side in &sides {
        views_are(&nodes, side, "each side to count only its own connections").await;
    }
    for i in 0..NODES {
        let mut s = TcpStream::connect(netlab::listener_addr(i)).await.unwrap();
        echo_round_trip(&mut s, b"during the partition")
            .await
            .unwrap_or_else(|e| panic!("node {} stopped proxying in the partition: {e}", i + 1));
    }
    // The other side's new connections stay unseen until the heal.
    held.extend(hold(netlab::listener_addr(2), 3).await);
    for side in &sides {
        views_are(&nodes, side, "each side to count its new connections").await;
    }
    let a = fleet_view(&nodes[0]).await;
    let b = fleet_view(&nodes[2]).await;
    assert_ne!(a, b, "the two sides' views do not differ");
    let total = |c: &Counts| c.values().sum::<u64>();
    assert_eq!((total(&a), total(&b)), (3, 10), "side views {a:?} | {b:?}");

    lab.heal();
    let healed = Instant::now();
    eventually(
        "the fleet of four to reassemble after the heal",
        HEAL_LIMIT,
        || async { side_is_whole(&nodes, &all).await.then_some(()) },
    )
    .await;
    eprintln!("reassembled {:?} after the heal", healed.elapsed());
    views_are(
        &nodes,
        &all,
        "every node to count the fleet's 13 connections",
    )
    .await;
    assert_eq!(total(&fleet_view(&nodes[1]).await), 13);

    drop(held);
    eventually("every count on every node back to zero", WAIT, || async {
        for n in &nodes {
            let zero = |c: Counts| c.values().all(|&v| v == 0);
            if !zero(own(n).await) || !zero(fleet_view(n).await) {
                return None;
            }
        }
        Some(())
    })
    .await;
    drop(nodes);
    for b in backends {
        b.kill().await;
    }
    drop(lab);
}

#[test]
fn a_split_fleet_serves_on_both_sides_and_reassembles_after_the_heal() {
    if netns::inside() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(split_and_heal());
        return;
    }
    netns::run_inside(
        "a_split_fleet_serves_on_both_sides_and_reassembles_after_the_heal",
        &[],
    );
}
