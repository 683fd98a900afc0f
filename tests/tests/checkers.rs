//! Shared health checking (decision 49) with real processes on loopback:
//! with `health.checkers = 2`, a backend of a four-node fleet is probed by
//! exactly two nodes, the ones `/status` names; after one of them is
//! killed (`kill -9`), two nodes probe it again, the killed one's place
//! taken by the next in hash order. Each node sends its probes from its
//! own loopback address (`health.source`), so the test backend tells the
//! checkers apart by the source of the connections it accepts.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, eventually};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const NODES: usize = 4;

/// Five check intervals (200 ms in the test configuration): every checker
/// probes within it, a node that stopped has not probed for all of it.
const PROBE_WINDOW: Duration = Duration::from_millis(1000);

fn source(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 11 + i as u8])
}

/// The node whose probes come from `ip` ([`source`]'s inverse).
fn node_of(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => usize::from(v4.octets()[3]) - 11,
        IpAddr::V6(_) => panic!("probes come from IPv4 sources here: {ip}"),
    }
}

/// Node `i`'s configuration: checkers = 2, probes from `source(i)`.
fn node_config(i: usize, backend: SocketAddr, seeds: &[String], certs: &Certs) -> String {
    let name = format!("node-{}", i + 1);
    fleet_config(
        &name,
        &[backend],
        "127.0.0.1:0".parse().unwrap(),
        seeds,
        &certs.node(&name),
        "",
        "",
    )
    .replace(
        "  fall = 2\n",
        &format!("  fall = 2\n  checkers = 2\n  source = \"{}\"\n", source(i)),
    )
}

/// The nodes' probe sources seen within the last window, once the same
/// set shows in two windows in a row (no node starting or stopping in
/// between), and it has `n` members.
async fn steady_sources(backend: &Backend, n: usize, what: &str) -> BTreeSet<IpAddr> {
    let mut last = BTreeSet::new();
    eventually(what, WAIT, || {
        let now = backend.sources_within(PROBE_WINDOW);
        let steady = now == last && now.len() == n;
        last = now.clone();
        async move {
            if !steady {
                tokio::time::sleep(PROBE_WINDOW).await;
            }
            steady.then_some(now)
        }
    })
    .await
}

#[tokio::test]
async fn two_checkers_probe_a_backend_and_a_killed_one_is_replaced() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let first = Shoal::start(&node_config(0, backend.addr, &[], &certs)).await;
    let seed = first.cluster.expect("cluster address").to_string();
    let mut nodes = vec![first];
    for i in 1..NODES {
        nodes.push(
            Shoal::start(&node_config(
                i,
                backend.addr,
                std::slice::from_ref(&seed),
                &certs,
            ))
            .await,
        );
    }
    for node in &nodes {
        eventually("every node to see the whole fleet", WAIT, || async {
            (node.live_nodes().await == NODES as u64).then_some(())
        })
        .await;
    }
    let checkers = steady_sources(&backend, 2, "exactly two nodes probing the backend").await;
    let ours: BTreeSet<IpAddr> = (0..NODES).map(source).collect();
    assert!(
        checkers.is_subset(&ours),
        "probes only from the nodes: {checkers:?}"
    );
    // `/status` on every node names the same two.
    for node in &nodes {
        let s = node.status().await;
        let b = &s["listeners"][0]["backends"][0];
        let listed: BTreeSet<String> = b["checkers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().split(' ').next().unwrap().to_owned())
            .collect();
        let expected: BTreeSet<String> = checkers
            .iter()
            .map(|ip| format!("node-{}", node_of(ip) + 1))
            .collect();
        assert_eq!(listed, expected, "{b}");
    }

    // Kill one checker (not the seed, so the others' re-seeding is not in
    // the way); two nodes probe again, the killed one among them no more.
    let victim = checkers
        .iter()
        .map(node_of)
        .find(|&i| i != 0)
        .expect("a checker that is not the seed");
    let survivor = checkers.iter().map(node_of).find(|&i| i != victim).unwrap();
    let killed_at = Instant::now();
    nodes[victim].kill9();
    let again = steady_sources(&backend, 2, "two checkers again after the kill").await;
    let took = killed_at.elapsed();
    assert!(!again.contains(&source(victim)), "{again:?}");
    assert!(
        again.contains(&source(survivor)),
        "the survivor keeps its backend: {again:?}"
    );
    eprintln!(
        "checkers {checkers:?}, node-{} killed, now {again:?} after {took:?}",
        victim + 1
    );
    let probes = nodes[survivor].metrics().await;
    assert!(
        probes.contains("shoal_backend_checking{listener=\"web\",backend=")
            && probes.contains("} 1"),
        "{probes}"
    );
}
