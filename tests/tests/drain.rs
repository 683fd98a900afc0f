//! Fleet-wide drain with real processes: `shoal ctl drain` on one node
//! stops new connections to the backend on every node while their
//! established connections keep flowing; `--wait` returns once they have
//! closed; a node restarted after the drain honours it.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::fleet::{Certs, NodeCerts, fleet_config};
use shoal_e2e::node::{Shoal, shoal_bin};
use shoal_e2e::{WAIT, echo_round_trip, eventually};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use tokio::net::TcpStream;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(name: &str, certs: &NodeCerts, backends: &[SocketAddr], seeds: &[String]) -> Shoal {
    Shoal::start(&fleet_config(
        name,
        backends,
        any_port(),
        seeds,
        certs,
        "",
        "",
    ))
    .await
}

async fn clients(node: &Shoal, n: u32) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut s = TcpStream::connect(node.listener("web")).await.unwrap();
        echo_round_trip(&mut s, &i.to_be_bytes()).await.unwrap();
        out.push(s);
    }
    out
}

/// `shoal ctl VERB web BACKEND --admin ADMIN [extra…]`, to completion.
fn ctl(verb: &str, backend: &str, admin: &str, extra: &[&str]) -> std::process::Output {
    Command::new(shoal_bin())
        .args(["ctl", verb, "web", backend, "--admin", admin])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_drain_on_one_node_holds_for_the_fleet_and_wait_returns_when_connections_end() {
    let backends = [
        Backend::start(Behaviour::Echo).await,
        Backend::start(Behaviour::Echo).await,
    ];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let certs = Certs::new();
    let node_certs: Vec<NodeCerts> = (1..=3).map(|i| certs.node(&format!("node-{i}"))).collect();
    let first = start("node-1", &node_certs[0], &addrs, &[]).await;
    let seed = vec![first.cluster.unwrap().to_string()];
    let second = start("node-2", &node_certs[1], &addrs, &seed).await;
    let third = start("node-3", &node_certs[2], &addrs, &seed).await;
    let mut nodes = vec![first, second, third];
    for node in &nodes {
        eventually("every node to see the fleet", WAIT, || async {
            (node.live_nodes().await == 3).then_some(())
        })
        .await;
    }
    // Clients on both backends through nodes 1 and 2.
    let mut early = clients(&nodes[0], 6).await;
    early.extend(clients(&nodes[1], 6).await);
    let on_drained = backends[0].served.load(Ordering::SeqCst);
    assert!(on_drained > 0, "P2C put some clients on the first backend");

    // Drained through node 3, with the command-line tool.
    let admin = nodes[2].admin.unwrap().to_string();
    let out = ctl("drain", &addrs[0].to_string(), &admin, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fleet-wide"),
        "{out:?}"
    );
    for node in &nodes {
        eventually("every node to hold the drain", WAIT, || async {
            node.draining(addrs[0]).await.then_some(())
        })
        .await;
    }
    // New clients through every node go to the other backend only.
    let before = backends[0].served.load(Ordering::SeqCst);
    let mut late = Vec::new();
    for node in &nodes {
        late.extend(clients(node, 5).await);
    }
    assert_eq!(
        backends[0].served.load(Ordering::SeqCst),
        before,
        "no new connection to the drained backend"
    );
    assert_eq!(
        backends[1].served.load(Ordering::SeqCst),
        12 - on_drained + 15
    );
    // The established ones still flow.
    for (i, s) in early.iter_mut().enumerate() {
        echo_round_trip(s, &(i as u32).to_be_bytes()).await.unwrap();
    }

    // `--wait` through node 1 reports what is left and returns when it is 0.
    let admin = nodes[0].admin.unwrap().to_string();
    let mut wait = Command::new(shoal_bin())
        .args([
            "ctl",
            "drain",
            "web",
            &addrs[0].to_string(),
            "--admin",
            &admin,
            "--wait",
            "--timeout-s",
            "60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(wait.stdout.take().unwrap()).lines();
    let first_count = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let waiting = line.contains("connections left") && !line.contains(": 0 connections");
            seen.push(line);
            if waiting {
                return (seen, lines);
            }
        }
        panic!("--wait ended without reporting what is left: {seen:?}");
    })
    .await
    .unwrap();
    let (seen, lines) = first_count;
    assert!(
        wait.try_wait().unwrap().is_none(),
        "--wait returned with connections left: {seen:?}"
    );
    drop(early);
    let status = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        (wait.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{status:?}");
    assert!(
        status.1.iter().any(|l| l.contains(": 0 connections left")),
        "{status:?}"
    );

    // A node restarted after the drain honours it before its first client.
    nodes.remove(1).sigterm();
    let restarted = start("node-2", &node_certs[1], &addrs, &seed).await;
    eventually("the restarted node's warm start to end", WAIT, || async {
        (restarted.status().await["cluster"]["phase"] == "serving").then_some(())
    })
    .await;
    assert!(
        restarted.draining(addrs[0]).await,
        "learned at the warm start"
    );
    let before = backends[0].served.load(Ordering::SeqCst);
    let more = clients(&restarted, 5).await;
    assert_eq!(backends[0].served.load(Ordering::SeqCst), before);

    // Undrain: the backend takes new connections again.
    let out = ctl("undrain", &addrs[0].to_string(), &admin, &[]);
    assert!(out.status.success(), "{out:?}");
    eventually("the undrain to reach the restarted node", WAIT, || async {
        (!restarted.draining(addrs[0]).await).then_some(())
    })
    .await;
    drop((late, more));
}

#[tokio::test]
async fn a_drain_of_an_unknown_backend_is_refused_by_name() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let node = start("node-1", &certs.node("node-1"), &[backend.addr], &[]).await;
    let admin = node.admin.unwrap().to_string();
    let out = ctl("drain", "127.0.0.1:1", &admin, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no backend `127.0.0.1:1`"), "{err}");
    let out = Command::new(shoal_bin())
        .args(["ctl", "drain", "api", &backend.addr.to_string()])
        .args(["--admin", &admin])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no listener named `api`"));
}

/// `shoal ctl drain-node`: the node leaves new-connection duty (listeners
/// closed, the fleet told at once) while its open connections finish, and
/// stays up until a signal; `--wait` returns once they have closed.
#[tokio::test]
async fn drain_node_closes_the_listeners_tells_the_fleet_and_lets_connections_finish() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let first = start("node-1", &certs.node("node-1"), &[backend.addr], &[]).await;
    let seed = vec![first.cluster.unwrap().to_string()];
    let mut second = start("node-2", &certs.node("node-2"), &[backend.addr], &seed).await;
    for node in [&first, &second] {
        eventually("both nodes to see the fleet", WAIT, || async {
            (node.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    let mut held = clients(&second, 3).await;
    let admin = second.admin.unwrap().to_string();
    let out = Command::new(shoal_bin())
        .args(["ctl", "drain-node", "--admin", &admin])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    eventually("the fleet to drop the drained node", WAIT, || async {
        (first.live_nodes().await == 1).then_some(())
    })
    .await;
    eventually("the drained node's listener to close", WAIT, || async {
        TcpStream::connect(second.listener("web"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert_eq!(second.status().await["accepting"], false);
    // Its connections still flow.
    for (i, s) in held.iter_mut().enumerate() {
        echo_round_trip(s, &(i as u32).to_be_bytes()).await.unwrap();
    }
    let mut wait = Command::new(shoal_bin())
        .args(["ctl", "drain-node", "--admin", &admin, "--wait"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(wait.stdout.take().unwrap()).lines();
    let lines = tokio::task::spawn_blocking(move || {
        for line in lines.by_ref() {
            if line.unwrap().contains(": 3 connections left") {
                return lines;
            }
        }
        panic!("--wait did not report the 3 open connections");
    })
    .await
    .unwrap();
    drop(held);
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
        (wait.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains(": 0 connections left")),
        "{rest:?}"
    );
    assert!(
        second.try_exit().is_none(),
        "the node stays up until told to stop"
    );
    second.sigterm();
    assert!(second.wait_exit(WAIT).await.success());
}
