//! Live reload (issue 12, item 1; decision 57): SIGHUP and `POST /reload`
//! re-read the file given with `-c` and apply it as a diff, on real
//! processes under load. 100 reloads that add and remove a backend and
//! change a health setting break nothing and never close the listening
//! socket; a file that does not validate changes nothing; listeners come
//! and go; a setting that cannot change live is refused by name; a node
//! certificate rotated on disk is taken, and a node started afterwards
//! with a certificate of the same CA joins.

use shoal_e2e::backend::{Backend, Behaviour, PeerEnd, http_request};
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::load::{Tally, long_lived, short};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, echo_round_trip, eventually};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// Reloads in the default run (`just reload-long` runs more).
const RELOADS: usize = 100;

/// Clients opening one short connection after another.
const SHORT_CLIENTS: usize = 4;

/// How long a long-lived connection lasts, one echo every 50 ms.
const LONG_LIVED: Duration = Duration::from_millis(800);

/// The load's bound in time, whatever else happens: this per reload,
/// plus [`LOAD_MAX_BASE`].
const LOAD_MAX_PER_RELOAD: Duration = Duration::from_millis(300);
const LOAD_MAX_BASE: Duration = Duration::from_secs(10);

/// `shoal run -c DIR/shoal.toml` with `config`; returns the node and the
/// file to rewrite.
async fn start(config: &str) -> (Shoal, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.toml");
    std::fs::write(&path, config).unwrap();
    let args = vec!["run".into(), "-c".into(), path.display().to_string()];
    (Shoal::spawn(args, dir).await, path)
}

/// `POST /reload` with the command header: (status, body).
async fn post_reload(node: &Shoal) -> (u16, String) {
    let (code, _, body) = http_request(
        node.admin.unwrap(),
        "POST",
        "/reload",
        &[("x-shoal-command", "1")],
    )
    .await
    .unwrap();
    (code, body)
}

/// A metric's value (the first series whose line starts with `series`).
async fn metric(node: &Shoal, series: &str) -> f64 {
    let text = node.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Writes `text` to `path` whole: a reload never sees half a file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The inodes of the sockets listening on `addr`'s port (from
/// /proc/net/tcp): the same inodes before and after means the listening
/// sockets were never closed.
fn listening_inodes(addr: SocketAddr) -> Vec<u64> {
    let port = format!(":{:04X}", addr.port());
    let mut inodes: Vec<u64> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].ends_with(&port) && f[3] == "0A").then(|| f[9].parse().unwrap())
        })
        .collect();
    inodes.sort_unstable();
    inodes
}

/// Client load on `lb` until `stop`, bounded in count and by `limit`.
fn load(
    lb: SocketAddr,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
    limit: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let deadline = tokio::time::Instant::now() + limit;
    let running = move |stop: &AtomicBool| {
        !stop.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline
    };
    let mut tasks = Vec::new();
    for c in 0..SHORT_CLIENTS {
        let (tally, stop) = (tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while running(&stop) && n < 1_000_000 {
                tally.attempted.fetch_add(1, Ordering::SeqCst);
                if let Err(why) = short(lb, c as u64 * 1_000_000 + n).await {
                    tally.fail(why);
                }
                n += 1;
            }
        }));
    }
    let (tally, stop) = (tally.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let mut n = 0u64;
        let mut held = Vec::new();
        while running(&stop) && n < 50_000 {
            tally.attempted.fetch_add(1, Ordering::SeqCst);
            let tally = tally.clone();
            held.push(tokio::spawn(async move {
                if let Err(why) = long_lived(lb, n, LONG_LIVED).await {
                    tally.fail(why);
                }
            }));
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for h in held {
            h.await.unwrap();
        }
    }));
    tasks
}

/// A standalone node's configuration: listener `web` over `backends`,
/// health checks every 100 ms with `rise`.
fn standalone(backends: &[SocketAddr], rise: u32) -> String {
    shoal_e2e::config(backends, "")
        .replace("interval_ms = 200", "interval_ms = 100")
        .replace("timeout_ms = 100", "timeout_ms = 50")
        .replace("rise = 2", &format!("rise = {rise}"))
}

/// The backend addresses `/status` lists for listener `web`.
async fn listed(node: &Shoal) -> Vec<String> {
    node.backends("web")
        .await
        .into_iter()
        .map(|b| b.0)
        .collect()
}

#[tokio::test]
async fn a_hundred_reloads_under_load_refuse_and_break_nothing() {
    run_reloads(RELOADS).await;
}

/// The same with 1,000 reloads (`just reload-long`).
#[tokio::test]
#[ignore = "long: just reload-long"]
async fn a_thousand_reloads_under_load_refuse_and_break_nothing() {
    run_reloads(1_000).await;
}

async fn run_reloads(reloads: usize) {
    let a = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(Behaviour::Echo).await;
    let c = Backend::start(Behaviour::Echo).await;
    let with_c = |rise| standalone(&[a.addr, b.addr, c.addr], rise);
    let without_c = |rise| standalone(&[a.addr, b.addr], rise);
    let (node, path) = start(&without_c(2)).await;
    let lb = node.listener("web");
    let sockets = listening_inodes(lb);
    assert!(!sockets.is_empty(), "no listening socket found for {lb}");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let limit = LOAD_MAX_BASE + LOAD_MAX_PER_RELOAD * reloads as u32;
    let tasks = load(lb, &tally, &stop, limit);
    for i in 0..reloads {
        // Even: C added and rise 3; odd: C removed (drained) and rise 2.
        // The last reload removes C.
        let text = if i % 2 == 0 { with_c(3) } else { without_c(2) };
        write(&path, &text);
        if i % 2 == 0 {
            let (code, body) = post_reload(&node).await;
            assert_eq!(code, 200, "reload {i}: {body}");
            assert!(
                body.contains(&format!("+{}", c.addr)) && body.contains("health.rise"),
                "reload {i}: {body}"
            );
        } else {
            node.sighup();
        }
        eventually(&format!("reload {i} applied"), WAIT, || {
            let n = node.logs_with("configuration reloaded").len();
            async move { (n > i).then_some(()) }
        })
        .await;
        // Let the load meet each configuration.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        started.elapsed() < limit,
        "the reloads outlasted the load's bound ({limit:?})"
    );
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let attempted = tally.attempted.load(Ordering::SeqCst);
    let failed = tally.failed.load(Ordering::SeqCst);
    println!("{reloads} reloads: {attempted} connections attempted, {failed} failed");
    assert_eq!(
        failed,
        0,
        "of {attempted} connections; the first failure: {:?}",
        tally.first_failure.lock().unwrap()
    );
    assert!(attempted > 200, "the load barely ran: {attempted}");
    assert_eq!(
        node.logs_with("reload refused: configuration unchanged")
            .len(),
        0
    );
    assert_eq!(metric(&node, "shoal_reloads_total").await, reloads as f64);
    assert_eq!(metric(&node, "shoal_reload_failures_total").await, 0.0);
    // C took clients while it was in, and every one of them ended cleanly
    // (a removed backend is drained, not cut).
    assert!(c.served.load(Ordering::SeqCst) > 0, "C was never used");
    let cut: Vec<_> = c
        .ends
        .lock()
        .unwrap()
        .iter()
        .filter(|(bytes, end)| *bytes > 0 && *end != PeerEnd::Eof)
        .cloned()
        .collect();
    assert!(
        cut.is_empty(),
        "connections to C that did not end cleanly: {cut:?}"
    );
    // The listening sockets were never closed, nor the address moved.
    assert_eq!(listening_inodes(lb), sockets);
    assert_eq!(node.listener("web"), lb);
    // Counts back to 0, and C, drained and removed, leaves /status.
    eventually("counts back to 0 and C gone", WAIT, || async {
        let backends = node.backends("web").await;
        let idle = backends.iter().all(|(_, _, active)| *active == 0);
        let names: Vec<_> = backends.iter().map(|x| x.0.clone()).collect();
        (idle && names == [a.addr.to_string(), b.addr.to_string()]).then_some(())
    })
    .await;
    let s = node.status().await;
    assert_eq!(s["listeners"][0]["active_connections"], 0, "{s}");
    assert_no_bug(&node);
    assert!(
        !node.metrics().await.contains(&format!(
            "shoal_backend_active_connections{{listener=\"web\",backend=\"{}\"}}",
            c.addr
        )),
        "a gone backend's gauge stays"
    );
}

/// No panic and no bookkeeping bug in the node's log.
fn assert_no_bug(node: &Shoal) {
    let bugs: Vec<_> = node
        .logs()
        .into_iter()
        .filter(|v| {
            let text = v.to_string();
            text.contains("panicked") || text.contains("(bug)")
        })
        .collect();
    assert!(bugs.is_empty(), "{bugs:?}");
}

#[tokio::test]
async fn a_removed_backend_drains_and_leaves_status_when_its_last_connection_ends() {
    let a = Backend::start(Behaviour::Echo).await;
    let c = Backend::start(Behaviour::Echo).await;
    let (node, path) = start(&standalone(&[c.addr], 2)).await;
    let lb = node.listener("web");
    let mut held = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut held, b"to C").await.unwrap();
    write(&path, &standalone(&[a.addr], 2));
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body.trim_end(),
        format!("listener \"web\": backends +{} -{}", a.addr, c.addr)
    );
    // Still listed, with its connection, as removed; new clients go to A.
    let s = node.status().await;
    let backends = s["listeners"][0]["backends"].as_array().unwrap().clone();
    let removed = backends
        .iter()
        .find(|b| b["address"] == c.addr.to_string())
        .unwrap_or_else(|| panic!("C left /status with a connection open: {s}"));
    assert_eq!(removed["removed"], true, "{removed}");
    assert_eq!(removed["active_connections"], 1, "{removed}");
    let served = c.served.load(Ordering::SeqCst);
    for i in 0..20 {
        let mut s = TcpStream::connect(lb).await.unwrap();
        echo_round_trip(&mut s, format!("new {i}").as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(
        c.served.load(Ordering::SeqCst),
        served,
        "C took a new client"
    );
    assert!(a.served.load(Ordering::SeqCst) >= 20);
    // Its connection goes on, then ends: C leaves /status.
    echo_round_trip(&mut held, b"still to C").await.unwrap();
    drop(held);
    eventually("C gone from /status", WAIT, || async {
        (listed(&node).await == [a.addr.to_string()]).then_some(())
    })
    .await;
    // Added back: a new backend, checked and used again.
    write(&path, &standalone(&[a.addr, c.addr], 2));
    assert_eq!(post_reload(&node).await.0, 200);
    // (In the slots' order: C took its old, gone, slot back.)
    let mut now = listed(&node).await;
    now.sort();
    let mut want = [a.addr.to_string(), c.addr.to_string()];
    want.sort();
    assert_eq!(now, want);
    assert_no_bug(&node);
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_says_why() {
    let a = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(Behaviour::Echo).await;
    let good = standalone(&[a.addr, b.addr], 2);
    let (node, path) = start(&good).await;
    let before = listed(&node).await;
    // A typo, and a backend that would have been added with it.
    let bad = standalone(&[a.addr, b.addr, "127.0.0.1:9".parse().unwrap()], 2)
        .replace("retries", "retires")
        .replace("[listener.health]", "retires = 1\n  [listener.health]");
    write(&path, &bad);
    node.sighup();
    let refused = node
        .log_eventually("reload refused: configuration unchanged")
        .await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["level"], "ERROR");
    let line = refused[0]["error"].as_str().unwrap().to_owned();
    assert!(
        line.contains("shoal.toml") && line.contains("unknown field `retires`"),
        "{line}"
    );
    assert!(!line.contains('\n'), "one line: {line:?}");
    assert_eq!(metric(&node, "shoal_reload_failures_total").await, 1.0);
    assert_eq!(metric(&node, "shoal_reloads_total").await, 0.0);
    // Unchanged: still serving, the same backends.
    let mut s = TcpStream::connect(node.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"after a bad reload")
        .await
        .unwrap();
    assert_eq!(listed(&node).await, before);
    // POST /reload answers 400 with that line, and counts it.
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body.trim_end(), line);
    assert_eq!(metric(&node, "shoal_reload_failures_total").await, 2.0);
    // Without the command header: 403, nothing read.
    let (code, _, _) = http_request(node.admin.unwrap(), "POST", "/reload", &[])
        .await
        .unwrap();
    assert_eq!(code, 403);
    // Fixed: applied.
    write(&path, &good);
    let (code, body) = post_reload(&node).await;
    assert_eq!(
        (code, body.trim_end()),
        (200, "no change to the configuration")
    );
    echo_round_trip(&mut s, b"still").await.unwrap();
}

#[tokio::test]
async fn a_listener_added_accepts_and_a_removed_one_refuses_while_its_connection_finishes() {
    let a = Backend::start(Behaviour::Echo).await;
    let base =
        standalone(&[a.addr], 2).replace("drain_timeout_ms = 10000", "drain_timeout_ms = 1500");
    // The added listener on an address of its own, so that no socket of
    // another test can answer at its port once it is closed; the [dns]
    // table's advertise keeps the node's client addresses unchanged.
    let base = base
        + "\n[dns]\nbind = \"127.0.0.1:0\"\nallow_ephemeral_port = true\nname = \"lb.reload.test.\"\nadvertise = [\"127.0.0.1\"]\n";
    let extra = "\n[[listener]]\nname = \"extra\"\nbind = \"127.0.0.7:0\"\nallow_ephemeral_port = true\nbackends = [\"BACKEND\"]\n"
        .replace("BACKEND", &a.addr.to_string());
    let (node, path) = start(&base).await;
    let web = node.listener("web");
    let web_sockets = listening_inodes(web);
    write(&path, &(base.clone() + &extra));
    let (code, body) = post_reload(&node).await;
    assert_eq!((code, body.trim_end()), (200, "listener \"extra\" added"));
    let s = node.status().await;
    let bind: SocketAddr = s["listeners"][1]["bind"].as_str().unwrap().parse().unwrap();
    assert_eq!(s["listeners"][1]["name"], "extra");
    let mut finishing = TcpStream::connect(bind).await.unwrap();
    echo_round_trip(&mut finishing, b"on the added listener")
        .await
        .unwrap();
    let mut lingering = TcpStream::connect(bind).await.unwrap();
    echo_round_trip(&mut lingering, b"held past the drain")
        .await
        .unwrap();
    // Removed: new connects are refused at once, the established ones go
    // on within the drain timeout.
    write(&path, &base);
    let (code, body) = post_reload(&node).await;
    assert_eq!((code, body.trim_end()), (200, "listener \"extra\" removed"));
    let refused = TcpStream::connect(bind).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    echo_round_trip(&mut finishing, b"still served")
        .await
        .unwrap();
    drop(finishing);
    // The one still open at the drain timeout is cut (a reset).
    node.log_eventually(
        "removed listener: drain timeout reached; closing its remaining connections",
    )
    .await;
    let mut buf = [0u8; 1];
    let end = tokio::io::AsyncReadExt::read(&mut lingering, &mut buf).await;
    assert!(
        matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    // The other listener never noticed.
    assert_eq!(listening_inodes(web), web_sockets);
    let mut s = TcpStream::connect(web).await.unwrap();
    echo_round_trip(&mut s, b"web").await.unwrap();
    assert_eq!(
        node.status().await["listeners"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_setting_that_cannot_change_live_is_refused_by_name_and_nothing_applies() {
    let a = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(Behaviour::Echo).await;
    let ca = Certs::new();
    let certs = ca.node("node-1");
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cluster: SocketAddr = free.local_addr().unwrap();
    drop(free);
    let config = |bind: SocketAddr, backends: &[SocketAddr]| {
        fleet_config("node-1", backends, bind, &[], &certs, "", "")
    };
    let (node, path) = start(&config(cluster, &[a.addr])).await;
    assert_eq!(node.cluster, Some(cluster));
    // The fleet address and a backend at once: all or nothing.
    let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
    write(&path, &config(other, &[a.addr, b.addr]));
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains(&format!("cluster.bind: {cluster} -> {other}"))
            && body.contains("cannot change while the node runs")
            && body.contains("nothing was applied"),
        "{body}"
    );
    assert_eq!(listed(&node).await, [a.addr.to_string()]);
    assert_eq!(metric(&node, "shoal_reload_failures_total").await, 1.0);
    let refused = node
        .log_eventually("reload refused: configuration unchanged")
        .await;
    assert_eq!(refused[0]["error"].as_str().unwrap(), body.trim_end());
}

#[tokio::test]
async fn a_rotated_node_certificate_is_read_again_and_a_later_node_still_joins() {
    let a = Backend::start(Behaviour::Echo).await;
    let ca = Certs::new();
    let issued = ca.node("node-1");
    // The node's own copies, which the rotation rewrites.
    let dir = tempfile::tempdir().unwrap();
    let certs = shoal_e2e::fleet::NodeCerts {
        ca: issued.ca.clone(),
        cert: dir.path().join("node-1.pem"),
        key: dir.path().join("node-1.key"),
    };
    std::fs::copy(&issued.cert, &certs.cert).unwrap();
    std::fs::copy(&issued.key, &certs.key).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = fleet_config("node-1", &[a.addr], any, &[], &certs, "", "");
    let (node, path) = start(&config).await;
    let seed = node.cluster.unwrap().to_string();
    // The key file is read again on every reload: a broken one is refused
    // by name, and the node goes on with the certificate it has.
    std::fs::write(&certs.key, "not a key").unwrap();
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("cluster.key"), "{body}");
    // A new certificate and key from the same CA (a second `shoal certs
    // node` in a copy of the CA's directory), written over the old files.
    let fresh = tempfile::tempdir().unwrap();
    let ca_dir = issued.ca.parent().unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(ca_dir.join(f), fresh.path().join(f)).unwrap();
    }
    let out = std::process::Command::new(shoal_e2e::node::shoal_bin())
        .args(["certs", "node", "node-1", fresh.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let new_cert = std::fs::read(fresh.path().join("node-1.pem")).unwrap();
    assert_ne!(new_cert, std::fs::read(&issued.cert).unwrap());
    std::fs::write(&certs.cert, &new_cert).unwrap();
    std::fs::copy(fresh.path().join("node-1.key"), &certs.key).unwrap();
    node.sighup();
    let reloaded = node.log_eventually("configuration reloaded").await;
    assert_eq!(reloaded[0]["changes"], "no change to the configuration");
    // The old certificate is gone from disk; a node that starts now dials
    // and is dialled with the new one, and joins.
    let peer = Shoal::start(&fleet_config(
        "node-2",
        &[a.addr],
        any,
        &[seed],
        &ca.node("node-2"),
        "",
        "",
    ))
    .await;
    for n in [&node, &peer] {
        eventually("a fleet of two after the rotation", WAIT, || async {
            (n.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    let _ = path;
}

/// `backend`'s fleet-wide count in `node`'s `/status`, if listed.
async fn fleet_count(node: &Shoal, backend: SocketAddr) -> Option<u64> {
    let backend = backend.to_string();
    node.cluster_counts("web")
        .await
        .into_iter()
        .find(|(b, _)| *b == backend)
        .map(|(_, count)| count)
}

/// In a fleet the report keys follow a reload: a backend added on two
/// nodes is counted fleet-wide, and one removed leaves the reports.
#[tokio::test]
async fn in_a_fleet_the_reports_follow_the_backends_a_reload_adds() {
    let a = Backend::start(Behaviour::Echo).await;
    let c = Backend::start(Behaviour::Echo).await;
    let ca = Certs::new();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let certs = [ca.node("node-1"), ca.node("node-2")];
    let cfg = |name: &str, i: usize, backends: &[SocketAddr], seeds: &[String]| {
        fleet_config(name, backends, any, seeds, &certs[i], "", "")
    };
    let (one, one_path) = start(&cfg("node-1", 0, &[a.addr], &[])).await;
    let seeds = [one.cluster.unwrap().to_string()];
    let (two, two_path) = start(&cfg("node-2", 1, &[a.addr], &seeds)).await;
    for n in [&one, &two] {
        eventually("a fleet of two", WAIT, || async {
            (n.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    // node-1 gets C beside A; node-2 only C (A removed there).
    write(&one_path, &cfg("node-1", 0, &[a.addr, c.addr], &[]));
    write(&two_path, &cfg("node-2", 1, &[c.addr], &seeds));
    assert_eq!(post_reload(&one).await.0, 200);
    two.sighup();
    two.log_eventually("configuration reloaded").await;
    // A client of node-2 lands on C; node-1 counts it from node-2's report.
    let mut held = TcpStream::connect(two.listener("web")).await.unwrap();
    echo_round_trip(&mut held, b"via node-2").await.unwrap();
    eventually("node-1 counting node-2's connection to C", WAIT, || async {
        (fleet_count(&one, c.addr).await == Some(1)).then_some(())
    })
    .await;
    // node-1 lists node-2's checks of C, and who checks it.
    let s = one.status().await;
    let entry = s["listeners"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == c.addr.to_string())
        .cloned()
        .unwrap();
    assert_eq!(entry["checkers"].as_array().unwrap().len(), 2, "{entry}");
    drop(held);
    eventually("the fleet's count of C back to 0", WAIT, || async {
        (fleet_count(&one, c.addr).await == Some(0)).then_some(())
    })
    .await;
    assert_no_bug(&one);
    assert_no_bug(&two);
}

/// With `node.takeover_socket`, the sockets a successor would be handed
/// follow reloads: a removed listener's socket is not kept for it (its
/// port refuses), and an added one is handed over at its address.
#[tokio::test]
async fn a_binary_upgrade_after_reloads_takes_the_listeners_as_they_are() {
    let a = Backend::start(Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("takeover.sock");
    let listener = |name: &str| {
        format!(
            // An address of their own (as above), the same for both.
            "\n[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.7:0\"\nallow_ephemeral_port = true\nbackends = [\"{}\"]\n",
            a.addr
        )
    };
    let base = standalone(&[a.addr], 2).replace(
        "[node]\n",
        &format!("[node]\ntakeover_socket = \"{}\"\n", sock.display()),
    );
    let (node, path) = start(&(base.clone() + &listener("old"))).await;
    let old = node.listener("old");
    // "old" removed, "new" added.
    write(&path, &(base.clone() + &listener("new")));
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 200, "{body}");
    // The reload's answer waits at most 2 s for the data threads to close
    // the socket; a loaded machine (CI, many tests at once) may take longer.
    shoal_e2e::eventually(
        "a removed listener's socket to close (kept for a successor?)",
        Duration::from_secs(10),
        || async {
            TcpStream::connect(old)
                .await
                .err()
                .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        },
    )
    .await;
    let s = node.status().await;
    let new: SocketAddr = s["listeners"][1]["bind"].as_str().unwrap().parse().unwrap();
    let mut held = TcpStream::connect(new).await.unwrap();
    echo_round_trip(&mut held, b"before the upgrade")
        .await
        .unwrap();
    // The successor, from the same file, takes "web" and "new" over at
    // their addresses.
    let args = vec![
        "run".into(),
        "-c".into(),
        path.display().to_string(),
        "--take-over".into(),
        sock.display().to_string(),
    ];
    let next = Shoal::spawn(args, tempfile::tempdir().unwrap()).await;
    assert_eq!(next.listener("new"), new);
    assert_eq!(next.listener("web"), node.listener("web"));
    node.log_eventually("the successor accepts: this process stops accepting and drains")
        .await;
    echo_round_trip(&mut held, b"after the upgrade")
        .await
        .unwrap();
    let mut s = TcpStream::connect(new).await.unwrap();
    echo_round_trip(&mut s, b"to the successor").await.unwrap();
    assert_no_bug(&node);
}

/// During the shutdown drain SIGHUP is logged and ignored (the node
/// neither reloads nor dies of it), and POST /reload answers 503.
#[tokio::test]
async fn during_the_drain_sighup_is_ignored_and_post_reload_answers_503() {
    let a = Backend::start(Behaviour::Echo).await;
    let (mut node, path) = start(&standalone(&[a.addr], 2)).await;
    let mut held = TcpStream::connect(node.listener("web")).await.unwrap();
    echo_round_trip(&mut held, b"held through the drain")
        .await
        .unwrap();
    node.sigterm();
    node.log_eventually("shutting down: stopped accepting, draining open connections")
        .await;
    // A file the node would refuse: ignored, not even read.
    write(&path, "not toml");
    node.sighup();
    node.log_eventually(
        "SIGHUP received during the drain: ignored, the configuration is unchanged",
    )
    .await;
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        node.logs_with("reload refused: configuration unchanged")
            .is_empty()
    );
    assert!(node.try_exit().is_none(), "SIGHUP ended the node");
    echo_round_trip(&mut held, b"still draining").await.unwrap();
    drop(held);
    let status = node.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}");
}

/// A CA rewritten in place (with a node certificate of the new CA, so the
/// files check out) is the fleet's trust changing: refused, by name.
#[tokio::test]
async fn a_new_ca_at_the_same_path_is_refused() {
    let a = Backend::start(Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = shoal_e2e::fleet::NodeCerts {
        ca: dir.path().join("ca.pem"),
        cert: dir.path().join("node-1.pem"),
        key: dir.path().join("node-1.key"),
    };
    let install = |from: &shoal_e2e::fleet::NodeCerts| {
        std::fs::copy(&from.ca, &certs.ca).unwrap();
        std::fs::copy(&from.cert, &certs.cert).unwrap();
        std::fs::copy(&from.key, &certs.key).unwrap();
    };
    let (first, second) = (Certs::new(), Certs::new());
    install(&first.node("node-1"));
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (node, _path) = start(&fleet_config("node-1", &[a.addr], any, &[], &certs, "", "")).await;
    install(&second.node("node-1"));
    let (code, body) = post_reload(&node).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("cluster.ca: the CA certificate changed")
            && body.contains("nothing was applied"),
        "{body}"
    );
    assert_eq!(metric(&node, "shoal_reload_failures_total").await, 1.0);
}
