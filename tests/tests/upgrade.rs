//! Binary upgrade without a refused connect (issue 12, item 2): one node of
//! a two-node fleet is replaced 20 times by `shoal run --take-over PATH`
//! while clients connect to it all along, short connections and
//! long-lived ones. No connect may fail, no connection may break, the
//! listening, admin and DNS addresses never change (the DNS server answers
//! after the last upgrade), every predecessor drains and exits
//! cleanly, and the fleet ends whole, with counts back to zero.

use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::dnsq::{Transport, query};
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::load::{Tally, long_lived, short};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, echo_round_trip, eventually};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// Upgrades in a row.
const UPGRADES: usize = 20;

/// Clients opening one short connection after another.
const SHORT_CLIENTS: usize = 4;

/// Clients holding a connection for this long, one echo every 50 ms.
const LONG_LIVED: Duration = Duration::from_millis(1500);

/// `shoal run -c CONFIG --take-over SOCK`.
fn take_over_args(config: &std::path::Path, sock: &std::path::Path) -> Vec<String> {
    [
        "run",
        "-c",
        &config.display().to_string(),
        "--take-over",
        &sock.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn twenty_upgrades_under_load_refuse_and_break_nothing() {
    let backend = Backend::start(Behaviour::Echo).await;
    let ca = Certs::new();
    let certs = [ca.node("node-1"), ca.node("node-2")];
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("takeover.sock");
    let extra = format!("takeover_socket = \"{}\"", sock.display());
    let config = |bind: SocketAddr, seeds: &[String]| {
        fleet_config("node-1", &[backend.addr], bind, seeds, &certs[0], "", "")
            .replace("[node]\n", &format!("[node]\n{extra}\n"))
            + "\n[dns]\nbind = \"127.0.0.1:0\"\nallow_ephemeral_port = true\nname = \"lb.upgrade.test.\"\n"
    };
    let mut current = Shoal::start(&config("127.0.0.1:0".parse().unwrap(), &[])).await;
    let cluster = current.cluster.expect("a cluster address");
    let peer = Shoal::start(&fleet_config(
        "node-2",
        &[backend.addr],
        "127.0.0.1:0".parse().unwrap(),
        &[cluster.to_string()],
        &certs[1],
        "",
        "",
    ))
    .await;
    for n in [&current, &peer] {
        eventually("a fleet of two", WAIT, || async {
            (n.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    let lb = current.listener("web");
    let admin = current.admin;
    let dns = current.dns.expect("a DNS server");
    // The successors bind the fleet endpoint the peer knows.
    let successor_config = config(cluster, &[peer.cluster.unwrap().to_string()]);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for c in 0..SHORT_CLIENTS {
        let (tally, stop) = (tally.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded in count as well as by `stop`.
            while !stop.load(Ordering::SeqCst) && n < 200_000 {
                tally.attempted.fetch_add(1, Ordering::SeqCst);
                if let Err(why) = short(lb, c as u64 * 1_000_000 + n).await {
                    tally.fail(why);
                }
                n += 1;
            }
        }));
    }
    {
        let (tally, stop) = (tally.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut held = Vec::new();
            while !stop.load(Ordering::SeqCst) && n < 10_000 {
                tally.attempted.fetch_add(1, Ordering::SeqCst);
                let tally = tally.clone();
                held.push(tokio::spawn(async move {
                    if let Err(why) = long_lived(lb, n, LONG_LIVED).await {
                        tally.fail(why);
                    }
                }));
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for h in held {
                h.await.unwrap();
            }
        }));
    }

    let mut predecessors = Vec::new();
    for i in 0..UPGRADES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, &successor_config).unwrap();
        let next = Shoal::spawn(take_over_args(&path, &sock), dir).await;
        assert_eq!(next.listener("web"), lb, "upgrade {i}: the listener moved");
        assert_eq!(next.admin, admin, "upgrade {i}: the admin endpoint moved");
        assert_eq!(next.dns, Some(dns), "upgrade {i}: the DNS server moved");
        next.log_eventually("took over from the previous process: it stops accepting and drains")
            .await;
        current
            .log_eventually("the successor accepts: this process stops accepting and drains")
            .await;
        predecessors.push(std::mem::replace(&mut current, next));
        // Load keeps running between two upgrades.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    for (i, mut old) in predecessors.into_iter().enumerate() {
        let status = old.wait_exit(WAIT).await;
        assert!(status.success(), "process {i} exited with {status}");
    }
    let attempted = tally.attempted.load(Ordering::SeqCst);
    let failed = tally.failed.load(Ordering::SeqCst);
    println!("{UPGRADES} upgrades: {attempted} connections attempted, {failed} failed");
    assert!(
        attempted > 100,
        "the load barely ran: {attempted} connections"
    );
    assert_eq!(
        failed,
        0,
        "of {attempted} connections; the first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );
    // The DNS server the last successor took over answers, both ways.
    for transport in [Transport::Udp, Transport::Tcp] {
        let reply = eventually("the fleet's DNS answer", WAIT, || async {
            query(dns, "lb.upgrade.test.", RecordType::A, transport)
                .await
                .ok()
                .filter(|r| r.code == ResponseCode::NoError && !r.v4.is_empty())
        })
        .await;
        assert_eq!(
            reply.v4,
            ["127.0.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
        );
    }
    // The fleet: whole on both nodes, the last successor under its name,
    // and every count back to zero.
    for n in [&current, &peer] {
        eventually("the fleet whole and idle", WAIT, || async {
            let whole = n.live_nodes().await == 2;
            let idle = n.cluster_counts("web").await.iter().all(|(_, c)| *c == 0);
            (whole && idle).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn take_over_with_nobody_there_starts_fresh_and_a_live_path_is_not_stolen() {
    let backend = Backend::start(Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("takeover.sock");
    let config = shoal_e2e::config(&[backend.addr], "").replace(
        "[node]\n",
        &format!("[node]\ntakeover_socket = \"{}\"\n", sock.display()),
    );
    // Nothing listens at the path: --take-over starts as usual.
    let cfg_dir = tempfile::tempdir().unwrap();
    let path = cfg_dir.path().join("shoal.toml");
    std::fs::write(&path, &config).unwrap();
    let first = Shoal::spawn(take_over_args(&path, &sock), cfg_dir).await;
    first
        .log_eventually("no running process at the take-over socket: starting fresh")
        .await;
    let mut s = TcpStream::connect(first.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"fresh").await.unwrap();
    // A second process without --take-over must not take the path of the
    // live one: it exits 2, naming the path and what to do.
    let out = std::process::Command::new(shoal_e2e::node::shoal_bin())
        .args(["run", "-c", &path.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("start this one with --take-over"),
        "{stderr}"
    );
    // The first one still answers there and still serves.
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    echo_round_trip(&mut s, b"still").await.unwrap();
}
