//! The fleet with real processes on loopback: nodes join through seeds
//! (addresses, and a DNS name served by a test DNS server on loopback),
//! agree on cluster-wide counts, drop a killed node's counts, refuse a
//! node from another CA, share health with a node that has not checked
//! yet, and leave gracefully.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, echo_round_trip, eventually};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use tokio::net::TcpStream;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts `n` nodes; the first is the others' seed.
async fn fleet(
    n: usize,
    certs: &Certs,
    backends: &[SocketAddr],
    listener_extra: &str,
) -> Vec<Shoal> {
    fleet_with(n, certs, backends, listener_extra, |text| text).await
}

/// [`fleet`], each node's configuration passed through `edit` first.
async fn fleet_with(
    n: usize,
    certs: &Certs,
    backends: &[SocketAddr],
    listener_extra: &str,
    edit: impl Fn(String) -> String,
) -> Vec<Shoal> {
    let first = Shoal::start(&edit(fleet_config(
        "node-1",
        backends,
        any_port(),
        &[],
        &certs.node("node-1"),
        listener_extra,
        "",
    )))
    .await;
    let seed = first.cluster.expect("cluster address").to_string();
    let mut nodes = vec![first];
    for i in 2..=n {
        let name = format!("node-{i}");
        let text = edit(fleet_config(
            &name,
            backends,
            any_port(),
            std::slice::from_ref(&seed),
            &certs.node(&name),
            listener_extra,
            "",
        ));
        nodes.push(Shoal::start(&text).await);
    }
    for node in &nodes {
        eventually("every node to see the whole fleet", WAIT, || async {
            (node.live_nodes().await == n as u64).then_some(())
        })
        .await;
    }
    nodes
}

async fn counts_agree(nodes: &[Shoal], expected_total: u64) -> Vec<(String, u64)> {
    eventually(
        "every node's cluster-wide counts to agree",
        WAIT,
        || async {
            let mut views = Vec::new();
            for n in nodes {
                views.push(n.cluster_counts("web").await);
            }
            let total: u64 = views[0].iter().map(|(_, c)| c).sum();
            (views.iter().all(|v| *v == views[0]) && total == expected_total)
                .then(|| views[0].clone())
        },
    )
    .await
}

#[tokio::test]
async fn three_nodes_join_through_a_seed_and_agree_on_cluster_wide_counts() {
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(Backend::start(Behaviour::Echo).await);
    }
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let certs = Certs::new();
    let nodes = fleet(3, &certs, &addrs, "").await;
    // Skewed arrivals, as DNS caches cause: 20, 6 and 4 clients.
    let mut clients = Vec::new();
    for (node, n) in nodes.iter().zip([20u32, 6, 4]) {
        for i in 0..n {
            let mut s = TcpStream::connect(node.listener("web")).await.unwrap();
            echo_round_trip(&mut s, &i.to_be_bytes()).await.unwrap();
            clients.push(s);
        }
    }
    let view = counts_agree(&nodes, 30).await;
    for ((addr, count), backend) in view.iter().zip(&backends) {
        // The fleet's estimate is the truth the backend sees. (That the
        // fleet balances better than independent nodes would is shown by
        // `cluster_wide_least_conn_evens_out_what_one_node_piled_up`:
        // with these arrivals per-node balancing is even too.)
        assert_eq!(*count, backend.open.load(Ordering::SeqCst) as u64, "{addr}");
    }
    let m = nodes[0].metrics().await;
    for series in [
        "shoal_cluster_members 3",
        "shoal_gossip_messages_total{direction=\"in\"}",
        "shoal_gossip_bytes_total{direction=\"out\"}",
        "shoal_report_age_seconds",
    ] {
        assert!(m.contains(series), "missing {series}:\n{m}");
    }
    drop(clients);
    counts_agree(&nodes, 0).await;
}

#[tokio::test]
async fn a_killed_node_leaves_the_fleet_and_takes_its_counts_along() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let mut nodes = fleet(3, &certs, &[backend.addr], "").await;
    let mut clients = Vec::new();
    for i in 0..9u32 {
        let mut s = TcpStream::connect(nodes[2].listener("web")).await.unwrap();
        echo_round_trip(&mut s, &i.to_be_bytes()).await.unwrap();
        clients.push(s);
    }
    counts_agree(&nodes, 9).await;
    nodes[2].kill9();
    let killed = nodes.pop().unwrap();
    drop(killed);
    for node in &nodes {
        eventually("the killed node to be declared down", WAIT, || async {
            (node.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    counts_agree(&nodes, 0).await;
    eventually("node-1 to log node-3 down", WAIT, || {
        let down = nodes[0].logs_with("member down");
        let logged = down
            .iter()
            .any(|l| l["member"].as_str().unwrap_or("").starts_with("node-3"));
        async move { logged.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_node_with_a_certificate_from_another_ca_is_refused() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let nodes = fleet(2, &certs, &[backend.addr], "").await;
    let intruder_ca = Certs::new();
    let seed = nodes[0].cluster.unwrap().to_string();
    let text = fleet_config(
        "node-x",
        &[backend.addr],
        any_port(),
        &[seed],
        &intruder_ca.node("node-x"),
        "",
        "",
    );
    let intruder = Shoal::start(&text).await;
    eventually("node-1 to refuse the intruder", WAIT, || async {
        let m = nodes[0].metrics().await;
        let refused = m
            .lines()
            .find(|l| l.starts_with("shoal_cluster_peers_refused_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        (refused >= 1).then_some(())
    })
    .await;
    nodes[0]
        .log_eventually("refused a peer: not a member of this fleet")
        .await;
    for node in &nodes {
        assert_eq!(node.live_nodes().await, 2);
        let s = node.status().await;
        assert!(
            !s.to_string().contains("node-x"),
            "the intruder is nowhere in {s}"
        );
    }
    assert_eq!(
        intruder.live_nodes().await,
        1,
        "the intruder learned nothing"
    );
}

#[tokio::test]
async fn a_dns_name_seeds_a_fleet_started_in_any_order() {
    // Three nodes on 127.0.0.1, .2 and .3, one port; the seed is a name
    // served by a DNS server on loopback (no query leaves the machine).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let records: Vec<(&str, std::net::IpAddr)> = ips
        .iter()
        .map(|ip| ("fleet.shoal.test.", ip.parse().unwrap()))
        .collect();
    let dns = shoal_seeds::testdns::TestDns::start(&records)
        .await
        .unwrap();
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let seed = format!("fleet.shoal.test:{port}");
    let extra = format!("resolver = \"{}\"", dns.addr());
    let mut nodes = Vec::new();
    // The last node first: it is alone until the others come.
    for (i, ip) in ips.iter().enumerate().rev() {
        let name = format!("node-{}", i + 1);
        let bind: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let text = fleet_config(
            &name,
            &[backend.addr],
            bind,
            std::slice::from_ref(&seed),
            &certs.node(&name),
            "",
            &extra,
        );
        nodes.push(Shoal::start(&text).await);
    }
    for node in &nodes {
        eventually("every node to see the whole fleet", WAIT, || async {
            (node.live_nodes().await == 3).then_some(())
        })
        .await;
    }
    assert!(
        dns.queries() >= 3,
        "seeds were resolved through the test DNS: {}",
        dns.queries()
    );
}

#[tokio::test]
async fn a_new_node_trusts_the_fleets_health_verdicts_before_its_own() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let live = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let backends = [dead, live.addr];
    let nodes = fleet(2, &certs, &backends, "policy = \"first-available\"").await;
    // The fleet agrees: each node's checks found the dead backend, and each
    // holds the other's report saying so.
    for node in &nodes {
        eventually("the fleet to agree the backend is dead", WAIT, || async {
            let s = node.status().await;
            let b = &s["listeners"][0]["backends"][0];
            (b["checks_up"] == false && b["fleet_down_votes"] == 1).then_some(())
        })
        .await;
    }
    // Node 3 checks only every ten minutes: what it knows of the dead
    // backend at first comes from the fleet, pulled before it accepts.
    let seed = nodes[0].cluster.unwrap().to_string();
    let slow = "\n  [listener.health]\n  interval_ms = 600000\n  timeout_ms = 1000";
    let text = fleet_config(
        "node-3",
        &backends,
        any_port(),
        &[seed],
        &certs.node("node-3"),
        "policy = \"first-available\"",
        "",
    )
    .replace(
        "  [listener.health]\n  interval_ms = 200\n  timeout_ms = 100",
        slow.trim_start_matches('\n'),
    );
    let fresh = Shoal::start(&text).await;

    let mut s = TcpStream::connect(fresh.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"first client").await.unwrap();
    let m = fresh.metrics().await;
    let failures = format!("shoal_connect_failures_total{{listener=\"web\",backend=\"{dead}\"}} 0");
    assert!(
        m.contains(&failures),
        "the first client never tried the dead backend:\n{m}"
    );
    let status = fresh.status().await;
    let b = &status["listeners"][0]["backends"][0];
    assert_eq!(b["up"], false, "{b}");
    assert_eq!(b["fleet_down_votes"], 2, "{b}");
    fresh
        .log_eventually("warm start: pulled the fleet's state")
        .await;
}

/// Node 1 (`first-available`) piles 10 long-lived clients onto the first
/// of two backends; once node 2 holds node 1's report, node 2 takes 10
/// clients with `policy`. Returns the open connections each backend sees.
async fn pile_then_balance(policy: &str) -> Vec<u64> {
    let backends = [
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    ];
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let certs = Certs::new();
    let first = Shoal::start(&fleet_config(
        "node-1",
        &addrs,
        any_port(),
        &[],
        &certs.node("node-1"),
        "policy = \"first-available\"",
        "",
    ))
    .await;
    let seed = first.cluster.expect("cluster address").to_string();
    let second = Shoal::start(&fleet_config(
        "node-2",
        &addrs,
        any_port(),
        &[seed],
        &certs.node("node-2"),
        &format!("policy = \"{policy}\""),
        "",
    ))
    .await;
    for node in [&first, &second] {
        eventually("both nodes to see the fleet", WAIT, || async {
            (node.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    let mut clients = Vec::new();
    for i in 0..10u32 {
        let mut s = TcpStream::connect(first.listener("web")).await.unwrap();
        echo_round_trip(&mut s, &i.to_be_bytes()).await.unwrap();
        clients.push(s);
    }
    eventually("node 2 to hold node 1's report", WAIT, || async {
        let total: u64 = second.cluster_counts("web").await.iter().map(|c| c.1).sum();
        (total == 10).then_some(())
    })
    .await;
    // A quiet report interval of node 1 (250 ms) reaches node 2: node 1
    // no longer counts as receiving new clients (decision 58).
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    for i in 0..10u32 {
        let mut s = TcpStream::connect(second.listener("web")).await.unwrap();
        echo_round_trip(&mut s, &i.to_be_bytes()).await.unwrap();
        clients.push(s);
    }
    let open = backends
        .iter()
        .map(|b| b.served.load(Ordering::SeqCst) as u64)
        .collect();
    drop(clients);
    open
}

/// Cluster-wide least-conn: node 2 sees node 1's pile and, receiving
/// every new client of the fleet (node 1's reports say it opened none in
/// its last interval), corrects the whole imbalance: all of its clients
/// go to the other backend (decision 58). Seen failing with the fleet
/// size fixed at the live nodes: [13, 7].
#[tokio::test]
async fn cluster_wide_least_conn_evens_out_what_one_node_piled_up() {
    assert_eq!(pile_then_balance("least-conn").await, [10, 10]);
}

/// The same arrivals with per-node least-conn (independent balancers):
/// node 2 splits its clients evenly and the pile stays. This is the
/// wrong behaviour the test above must tell apart.
#[tokio::test]
async fn per_node_least_conn_leaves_one_nodes_pile_in_place() {
    assert_eq!(pile_then_balance("local-least-conn").await, [15, 5]);
}

/// Failure detection of a vanished node takes at least a probe period
/// plus the suspicion timeout, 2 s for 3 nodes (decision 50; about 2.5 s
/// measured); a leave notice is seen within a round trip. The bound sits
/// well between the two, so a lost notice (peers noticing by failure
/// detection) fails the test.
const LEAVE_SEEN_MAX: std::time::Duration = std::time::Duration::from_millis(1_500);

#[tokio::test]
async fn sigterm_announces_the_leave_to_the_fleet() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let mut nodes = fleet(3, &certs, &[backend.addr], "").await;
    let sent = std::time::Instant::now();
    nodes[2].sigterm();
    for node in &nodes[..2] {
        eventually(
            "the others to drop the leaving node",
            LEAVE_SEEN_MAX,
            || async { (node.live_nodes().await == 2).then_some(()) },
        )
        .await;
    }
    let seen = sent.elapsed();
    let status = nodes[2].wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}");
    assert!(
        !nodes[2].logs_with("leaving the fleet").is_empty(),
        "{:#?}",
        nodes[2]
            .logs()
            .iter()
            .map(|l| format!("{} {}", l["message"], l["target"]))
            .collect::<Vec<_>>()
    );
    assert!(seen < LEAVE_SEEN_MAX, "{seen:?}");
}

async fn seen(node: &Shoal) -> u64 {
    node.cluster_counts("web")
        .await
        .iter()
        .map(|(_, c)| c)
        .sum()
}

/// Decision 61: with a long report interval (5 s), a connection opened on
/// one node reaches the other's cluster-wide counts within the early gap
/// (25 ms; 2 s allowed for a loaded machine), not at the next tick; the
/// early report is counted. Checked failing with `report_early_max = 0`
/// (the count arrived only with the tick, after > 2 s).
#[tokio::test]
async fn a_new_connection_reaches_the_fleet_before_the_report_interval() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let nodes = fleet_with(2, &certs, &[backend.addr], "", |text| {
        assert!(text.contains("report_interval_ms = 100\n"), "{text}");
        text.replace("report_interval_ms = 100", "report_interval_ms = 5000")
    })
    .await;
    let (first, second) = (&nodes[0], &nodes[1]);
    // Let the join's publications settle: the next periodic tick is
    // seconds away.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seen(second).await, 0);
    let mut s = TcpStream::connect(first.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"early").await.unwrap();
    let opened = std::time::Instant::now();
    eventually(
        "node-2 to count node-1's connection",
        std::time::Duration::from_secs(2),
        || async { (seen(second).await == 1).then_some(()) },
    )
    .await;
    let took = opened.elapsed();
    let m = first.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("shoal_reports_early_total ") && !l.ends_with(" 0")),
        "no early report counted:\n{m}"
    );
    eprintln!("node-2 counted node-1's new connection after {took:?}");
    drop(s);
}
