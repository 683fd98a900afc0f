//! A fleet-wide connection budget with real processes (decision 48): three
//! nodes share `fleet_max_connections = 30` on one backend, 100 clients
//! spread over them all at once, and the backend itself counts how many
//! client connections it holds at the peak. Clients past the budget are
//! closed at once and counted as `over-budget` refusals, not as "no
//! backend"; once the held clients leave, the budget serves new ones.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, NodeCerts, fleet_config};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, echo_round_trip, eventually};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;

const BUDGET: u64 = 30;
const CLIENTS: usize = 100;

async fn start(name: &str, certs: &NodeCerts, backend: SocketAddr, seeds: &[String]) -> Shoal {
    Shoal::start(&fleet_config(
        name,
        &[backend],
        "127.0.0.1:0".parse().unwrap(),
        seeds,
        certs,
        &format!("fleet_max_connections = {BUDGET}"),
        "",
    ))
    .await
}

/// One client: connected and echoed (held open), or refused (closed or
/// reset by shoal before an answer). Bounded by a timeout.
async fn client(addr: SocketAddr, i: usize) -> Option<TcpStream> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        echo_round_trip(&mut s, &(i as u32).to_be_bytes())
            .await
            .ok()?;
        Some(s)
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}

/// `CLIENTS` clients at once, spread over the nodes in turn.
async fn wave(nodes: &[Shoal]) -> Vec<TcpStream> {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(nodes[i % nodes.len()].listener("web"), i)))
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            held.push(s);
        }
    }
    held
}

/// The value of the series `name{listener="web"}` in `/metrics`.
fn metric(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{listener=\"web\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_fleet_budget_of_30_holds_at_the_backend_for_100_clients_over_three_nodes() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let node_certs: Vec<NodeCerts> = (1..=3).map(|i| certs.node(&format!("node-{i}"))).collect();
    let first = start("node-1", &node_certs[0], backend.addr, &[]).await;
    let seed = vec![first.cluster.unwrap().to_string()];
    let second = start("node-2", &node_certs[1], backend.addr, &seed).await;
    let third = start("node-3", &node_certs[2], backend.addr, &seed).await;
    let nodes = vec![first, second, third];
    // Every node hears both peers' reports (so none counts on a silent
    // peer's fair part) and shows the budget.
    for node in &nodes {
        eventually("every node to hear the fleet", WAIT, || async {
            let s = node.status().await;
            let members = s["cluster"]["members"].as_array()?.clone();
            let heard = members
                .iter()
                .filter(|m| m["report_age_ms"].is_u64())
                .count();
            let b = &s["listeners"][0]["backends"][0];
            (heard == 2 && b["up"] == true && b["fleet_budget"]["limit"] == BUDGET).then_some(())
        })
        .await;
    }

    let held = wave(&nodes).await;
    let peak = backend.clients.peak.load(Ordering::SeqCst) as u64;
    eprintln!(
        "peak {peak} of {BUDGET} at the backend, {} served",
        held.len()
    );
    assert!(
        peak <= BUDGET + 1,
        "the backend held {peak} client connections at once, budget {BUDGET}"
    );
    // Within 5 % of the budget: nearly every slot was used.
    assert!(
        held.len() as u64 >= BUDGET * 95 / 100,
        "only {} of {CLIENTS} clients served under a budget of {BUDGET}",
        held.len()
    );
    let refused = CLIENTS - held.len();
    let mut budget_refused = 0;
    for node in &nodes {
        let m = node.metrics().await;
        budget_refused += metric(&m, "shoal_listener_budget_refused_total");
        assert_eq!(metric(&m, "shoal_listener_no_backend_total"), 0, "{m}");
        assert!(m.contains("shoal_backend_fleet_budget{"), "{m}");
    }
    assert_eq!(
        budget_refused as usize, refused,
        "each refused client is one over-budget refusal"
    );
    let statuses = futures_join(&nodes).await;
    let shares: u64 = statuses
        .iter()
        .map(|s| {
            s["listeners"][0]["backends"][0]["fleet_budget"]["share"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(shares <= BUDGET + 1, "the nodes' shares add up to {shares}");

    // The held clients leave; the budget serves a new wave.
    drop(held);
    eventually("the backend to see the clients go", WAIT, || async {
        (backend.clients.open.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    let held = eventually("a new wave to be served", WAIT, || async {
        let held = wave(&nodes).await;
        (held.len() as u64 >= BUDGET * 95 / 100).then_some(held)
    })
    .await;
    let peak = backend.clients.peak.load(Ordering::SeqCst) as u64;
    eprintln!(
        "peak {peak} of {BUDGET} at the backend, {} served",
        held.len()
    );
    assert!(peak <= BUDGET + 1, "second wave: peak {peak}");
    drop(held);
}

async fn futures_join(nodes: &[Shoal]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n.status().await);
    }
    out
}
