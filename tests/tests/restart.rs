//! A node killed with SIGKILL and restarted at once on the same address
//! (hardening issue 15, defect 2): the fleet must stay whole. The peers
//! still hold a QUIC connection to the dead process; the new process must
//! not be cut off by it.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, NodeCerts, fleet_config};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, eventually};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the fleet is watched after the restart. Covers what the
/// defect needed to show: the peers' idle timeout on the dead process's
/// connection (10 s) plus SWIM's failure detection (about 2.5 s for 3
/// nodes since decision 50, 6 s before).
const WATCH: Duration = Duration::from_secs(20);

/// Between two looks at every node's `/status`.
const POLL: Duration = Duration::from_millis(50);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn node_config(
    name: &str,
    backend: SocketAddr,
    bind: SocketAddr,
    seeds: &[String],
    certs: &NodeCerts,
) -> String {
    fleet_config(name, &[backend], bind, seeds, certs, "", "")
}

/// Log lines on `node` that show the fleet split: this node renewed its
/// identity, or it declared a member down.
fn split_signs(node: &Shoal, name: &str) -> Vec<String> {
    let mut signs: Vec<String> = node
        .logs_with("this node was declared down; rejoined with a renewed identity")
        .iter()
        .map(|l| format!("{name}: rejoined as {}", l["identity"]))
        .collect();
    signs.extend(
        node.logs_with("member down")
            .iter()
            .map(|l| format!("{name}: member down {}", l["member"])),
    );
    signs
}

/// The node's membership story at INFO and above, for a failure message.
fn membership_log(node: &Shoal, name: &str) -> String {
    node.logs()
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("INFO" | "WARN" | "ERROR")))
        .filter(|l| l["target"] != "shoal::conn")
        .map(|l| {
            let mut fields = l.as_object().cloned().unwrap_or_default();
            for noise in ["timestamp", "level", "target", "message"] {
                fields.remove(noise);
            }
            format!(
                "{name} {} {} {}",
                l["timestamp"],
                l["message"],
                serde_json::Value::Object(fields)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_node_killed_and_restarted_at_once_stays_in_the_fleet() {
    let backend = Backend::start(Behaviour::Echo).await;
    let ca = Certs::new();
    let certs: Vec<NodeCerts> = (1..=3).map(|i| ca.node(&format!("node-{i}"))).collect();
    let first = Shoal::start(&node_config(
        "node-1",
        backend.addr,
        any_port(),
        &[],
        &certs[0],
    ))
    .await;
    let seed = first.cluster.expect("cluster address").to_string();
    let seeds = std::slice::from_ref(&seed);
    let second = Shoal::start(&node_config(
        "node-2",
        backend.addr,
        any_port(),
        seeds,
        &certs[1],
    ))
    .await;
    let mut third = Shoal::start(&node_config(
        "node-3",
        backend.addr,
        any_port(),
        seeds,
        &certs[2],
    ))
    .await;
    for node in [&first, &second, &third] {
        eventually("every node to see the whole fleet", WAIT, || async {
            (node.live_nodes().await == 3).then_some(())
        })
        .await;
    }
    // The peers must have talked to node-3 over QUIC: each holds a cached
    // connection to the process about to die.
    for node in [&first, &second] {
        eventually("node-3's report to reach its peers", WAIT, || async {
            let s = node.status().await;
            let members = s["cluster"]["members"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            members
                .iter()
                .any(|m| m["name"] == "node-3" && !m["report_age_ms"].is_null())
                .then_some(())
        })
        .await;
    }
    let before: Vec<String> = [(&first, "node-1"), (&second, "node-2")]
        .iter()
        .flat_map(|(n, name)| split_signs(n, name))
        .collect();
    assert!(
        before.is_empty(),
        "the fleet split before the test: {before:?}"
    );

    // The crash and the restart on the same address. The port was bound by
    // the killed process until it died; the new process takes it over.
    let addr = third.cluster.expect("cluster address");
    third.kill9();
    drop(third);
    let restarted =
        Shoal::start(&node_config("node-3", backend.addr, addr, seeds, &certs[2])).await;
    let restarted_at = Instant::now();
    // The restarted node itself starts with a view of one; what the test
    // watches is the fleet after it has warmed up (its listeners open).
    eventually("the restarted node's warm start to end", WAIT, || async {
        (restarted.status().await["cluster"]["phase"] == "serving").then_some(())
    })
    .await;
    let identity = restarted.status().await["cluster"]["identity"]
        .as_str()
        .unwrap()
        .to_owned();

    // Watch every node for the whole window; note when any of them sees
    // fewer than 3 live members. Assert afterwards, so the run also
    // reports how long a split lasted.
    let nodes = [
        (&first, "node-1"),
        (&second, "node-2"),
        (&restarted, "node-3"),
    ];
    let mut short: Option<(Duration, Duration)> = None;
    let mut polls = 0u32;
    while restarted_at.elapsed() < WATCH {
        polls += 1;
        for (node, _) in &nodes {
            if node.live_nodes().await < 3 {
                let at = restarted_at.elapsed();
                short = Some(short.map_or((at, at), |(first_at, _)| (first_at, at)));
            }
        }
        tokio::time::sleep(POLL).await;
    }
    if let Some((from, to)) = short {
        eprintln!(
            "split: a node saw fewer than 3 members from {from:?} to {to:?} after the restart ({:?})",
            to - from
        );
    } else {
        eprintln!("split: none in {polls} polls over {WATCH:?}");
    }

    let signs: Vec<String> = nodes
        .iter()
        .flat_map(|(n, name)| split_signs(n, name))
        .collect();
    assert!(
        signs.is_empty() && short.is_none(),
        "the fleet split after the restart (first/last short view {short:?}): {signs:#?}\n{}",
        nodes
            .iter()
            .map(|(n, name)| membership_log(n, name))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The peers know the new process, not just its old identity.
    for (node, name) in &nodes[..2] {
        let renamed = node.logs_with("member restarted or renewed");
        assert!(
            renamed.iter().any(|l| l["to"] == identity),
            "{name} never learned node-3's new identity {identity}: {renamed:?}"
        );
    }
}
