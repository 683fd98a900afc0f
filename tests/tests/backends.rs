//! Backends by name and by weight (issue 12, item 4), through a real shoal
//! process: weights hold under least-conn (connections held in ratio) and
//! round-robin (picks in ratio, exactly per cycle); a backend given as a DNS
//! name follows its answer as it changes (a vanished address is drained,
//! not cut); a failed lookup keeps the last addresses; a name with no
//! records at start does not stop the node; bad backend entries are refused
//! by `check-config` with the entry's path. Every name is served by a
//! [`TestDns`] of the test's own on loopback: no query leaves the machine.

use serde_json::Value;
use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::node::{Shoal, shoal_bin};
use shoal_e2e::{WAIT, echo_round_trip, eventually};
use shoal_seeds::testdns::TestDns;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpStream, UdpSocket};

/// How often the node re-resolves backend names in these tests.
const RESOLVE_INTERVAL_MS: u64 = 300;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(node_extra: &str, backends: &[String], extra: &str) -> String {
    shoal_e2e::config_entries(node_extra, backends, extra)
}

/// `[node]` lines that send backend names to `dns`, re-resolved every
/// [`RESOLVE_INTERVAL_MS`].
fn resolver(dns: SocketAddr) -> String {
    format!("resolver = \"{dns}\"\nbackend_resolve_interval_ms = {RESOLVE_INTERVAL_MS}")
}

/// `{ addr = "ADDR", weight = W }`.
fn weighted(addr: impl std::fmt::Display, weight: u32) -> String {
    format!("{{ addr = \"{addr}\", weight = {weight} }}")
}

/// Echo backends on port 0 of each of `ips`.
async fn echo_backends(ips: &[&str]) -> Vec<Backend> {
    let mut backends = Vec::new();
    for i in ips {
        let at = SocketAddr::new(ip(i), 0);
        backends.push(Backend::start_at(at, Behaviour::Echo).await);
    }
    backends
}

/// Waits until `/status` lists exactly `want` (in any order), all up.
async fn until_backends_are(shoal: &Shoal, want: &[SocketAddr]) {
    let mut want: Vec<String> = want.iter().map(ToString::to_string).collect();
    want.sort();
    eventually(
        &format!("/status to list exactly {want:?}, up"),
        WAIT,
        || {
            let status = shoal.backends("web");
            let want = want.clone();
            async move {
                let got = status.await;
                let mut listed: Vec<String> = got.iter().map(|(a, _, _)| a.clone()).collect();
                listed.sort();
                (listed == want && got.iter().all(|(_, up, _)| *up)).then_some(())
            }
        },
    )
    .await;
}

/// `/status`'s entry for backend `addr` of listener `web`, if listed.
async fn backend_status(shoal: &Shoal, addr: SocketAddr) -> Option<Value> {
    let status = shoal.status().await;
    status["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == "web")?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr.to_string())
        .cloned()
}

/// A client connection that has done one echo round trip (so the backend
/// has counted it) and stays open.
async fn held(lb: SocketAddr, n: usize) -> TcpStream {
    let mut s = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut s, format!("held {n}").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("held connection {n}: {e}"));
    s
}

/// `n` short connections, one after another: connect, one echo round
/// trip, close.
async fn short_connections(lb: SocketAddr, n: usize) {
    for i in 0..n {
        let mut s = TcpStream::connect(lb)
            .await
            .unwrap_or_else(|e| panic!("short connection {i}: connect: {e}"));
        echo_round_trip(&mut s, format!("short {i}").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("short connection {i}: {e}"));
    }
}

/// Each backend's count of client connections served so far (those that
/// carried bytes: health checks carry none).
fn served(backends: &[Backend]) -> Vec<usize> {
    backends
        .iter()
        .map(|b| b.served.load(Ordering::SeqCst))
        .collect()
}

/// Waits until the backends together have served `total` client
/// connections (the backend counts after its echo, so its count can trail
/// what the client has read), and returns each one's count.
async fn served_total(backends: &[Backend], total: usize) -> Vec<usize> {
    eventually(&format!("{total} connections served"), WAIT, || {
        let now = served(backends);
        async move { (now.iter().sum::<usize>() == total).then_some(now) }
    })
    .await
}

/// The WARN log lines that mention `text` anywhere (message or fields).
fn warnings_naming(shoal: &Shoal, text: &str) -> Vec<Value> {
    shoal
        .logs()
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l.to_string().contains(text))
        .collect()
}

#[tokio::test]
async fn weighted_least_conn_holds_connections_in_ratio() {
    let backends = echo_backends(&["127.0.0.61", "127.0.0.62", "127.0.0.63"]).await;
    let weights = [1u32, 2, 3];
    let entries: Vec<String> = backends
        .iter()
        .zip(weights)
        .map(|(b, w)| weighted(b.addr, w))
        .collect();
    let shoal = Shoal::start(&config("", &entries, "policy = \"least-conn\"")).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    until_backends_are(&shoal, &addrs).await;
    let lb = shoal.listener("web");

    let mut clients = Vec::new();
    for n in 0..60 {
        clients.push(held(lb, n).await);
    }
    let counts = eventually("60 client connections held at the backends", WAIT, || {
        let now: Vec<usize> = backends
            .iter()
            .map(|b| b.clients.open.load(Ordering::SeqCst))
            .collect();
        async move { (now.iter().sum::<usize>() == 60).then_some(now) }
    })
    .await;
    // (connections + 1) / weight: 60 over weights 1:2:3 is 10/20/30.
    // Within 10 %, and at least ±1 so that the 10 has room for a tie.
    for ((count, expected), addr) in counts.iter().zip([10usize, 20, 30]).zip(&addrs) {
        let slack = (expected / 10).max(1);
        assert!(
            count.abs_diff(expected) <= slack,
            "{addr}: {count} held, expected {expected} ± {slack}; all: {counts:?}"
        );
    }

    drop(clients);
    eventually("every count back to 0 in /status", WAIT, || {
        let status = shoal.backends("web");
        async move {
            let got = status.await;
            (got.len() == 3 && got.iter().all(|(_, _, active)| *active == 0)).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn weighted_round_robin_follows_weights() {
    let backends = echo_backends(&["127.0.0.71", "127.0.0.72", "127.0.0.73"]).await;
    let entries: Vec<String> = backends
        .iter()
        .zip([1u32, 2, 3])
        .map(|(b, w)| weighted(b.addr, w))
        .collect();
    let shoal = Shoal::start(&config("", &entries, "policy = \"round-robin\"")).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    until_backends_are(&shoal, &addrs).await;

    // Ten whole cycles of 1 + 2 + 3 picks: exact, wherever the cycle
    // starts.
    short_connections(shoal.listener("web"), 60).await;
    let counts = served_total(&backends, 60).await;
    assert_eq!(counts, vec![10, 20, 30], "served by {addrs:?}");
}

#[tokio::test]
async fn a_backend_name_is_followed_when_its_answer_changes() {
    let dns = TestDns::start(&[("app.shoal.test", ip("127.0.0.51"))])
        .await
        .unwrap();
    let b51 = Backend::start_at("127.0.0.51:0".parse().unwrap(), Behaviour::Echo).await;
    let port = b51.addr.port();
    let b52 = Backend::start_at(SocketAddr::new(ip("127.0.0.52"), port), Behaviour::Echo).await;
    let (a51, a52) = (b51.addr, b52.addr);
    let backends = [b51, b52];
    // Round-robin, so that a drained address still picked would get every
    // other connection (least-conn would avoid it for its count alone).
    let shoal = Shoal::start(&config(
        &resolver(dns.addr()),
        &[format!("\"app.shoal.test:{port}\"")],
        "policy = \"round-robin\"",
    ))
    .await;
    let lb = shoal.listener("web");
    until_backends_are(&shoal, &[a51]).await;

    let mut long = held(lb, 0).await;
    assert_eq!(served(&backends), [1, 0], "the first client on .51");

    dns.set_records(&[("app.shoal.test", ip("127.0.0.52"))])
        .unwrap();
    eventually("/status to list .52, up", WAIT, || {
        let s = backend_status(&shoal, a52);
        async move { s.await.is_some_and(|b| b["up"] == true).then_some(()) }
    })
    .await;
    // Drained, not removed yet: .51 is still listed with its connection.
    let kept = backend_status(&shoal, a51).await;
    assert!(
        kept.as_ref().is_some_and(|b| b["active_connections"] == 1),
        "{a51} drained but listed with its connection: {kept:?}"
    );
    short_connections(lb, 4).await;
    assert_eq!(
        served_total(&backends, 5).await[..],
        [1, 4],
        "every new connection went to .52"
    );
    echo_round_trip(&mut long, b"still here")
        .await
        .expect("the connection to the drained address goes on");
    // Each address is a backend of its own, named by its address.
    let series = format!("shoal_connections_total{{listener=\"web\",backend=\"{a52}\"}} 4");
    eventually(&format!("{series} in /metrics"), WAIT, || {
        let metrics = shoal.metrics();
        let series = series.clone();
        async move { metrics.await.lines().any(|l| l == series).then_some(()) }
    })
    .await;
    eventually("a connection log line naming .52", WAIT, || {
        let found = shoal
            .logs_with("connection closed")
            .iter()
            .any(|l| l["backend"] == a52.to_string());
        async move { found.then_some(()) }
    })
    .await;

    drop(long);
    eventually(
        ".51 to leave /status once its last connection ended",
        WAIT,
        || {
            let s = backend_status(&shoal, a51);
            async move { s.await.is_none().then_some(()) }
        },
    )
    .await;

    dns.set_records(&[
        ("app.shoal.test", ip("127.0.0.51")),
        ("app.shoal.test", ip("127.0.0.52")),
    ])
    .unwrap();
    until_backends_are(&shoal, &[a51, a52]).await;
    let before = served(&backends);
    short_connections(lb, 4).await;
    let after = served_total(&backends, before.iter().sum::<usize>() + 4).await;
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "both addresses of the name get connections: {before:?} -> {after:?}"
    );
}

/// Answers every DNS query on `socket` with SERVFAIL (the query sent back
/// with QR set and RCODE 2) and counts them: a server that is up and fails.
fn servfail_responder(socket: UdpSocket) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = queries.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if n < 12 {
                continue;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reply = buf[..n].to_vec();
            // QR = response; opcode and RD kept; AA and TC cleared.
            reply[2] = 0x80 | (buf[2] & 0x79);
            // RA set, RCODE = 2 (SERVFAIL).
            reply[3] = 0x80 | 2;
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    (queries, task)
}

#[tokio::test]
async fn a_failed_lookup_keeps_the_last_addresses() {
    let name = "kept.shoal.test";
    let dns = TestDns::start(&[(name, ip("127.0.0.53")), (name, ip("127.0.0.54"))])
        .await
        .unwrap();
    let dns_addr = dns.addr();
    let b53 = Backend::start_at("127.0.0.53:0".parse().unwrap(), Behaviour::Echo).await;
    let port = b53.addr.port();
    let b54 = Backend::start_at(SocketAddr::new(ip("127.0.0.54"), port), Behaviour::Echo).await;
    let addrs = [b53.addr, b54.addr];
    let backends = [b53, b54];
    let shoal = Shoal::start(&config(
        &resolver(dns_addr),
        &[format!("\"{name}:{port}\"")],
        "policy = \"round-robin\"",
    ))
    .await;
    let lb = shoal.listener("web");
    until_backends_are(&shoal, &addrs).await;

    // The server goes away: queries to its port are refused or time out.
    drop(dns);
    eventually(&format!("a WARN log line naming {name}"), WAIT, || {
        let found = !warnings_naming(&shoal, name).is_empty();
        async move { found.then_some(()) }
    })
    .await;
    until_backends_are(&shoal, &addrs).await;
    let before = served(&backends);
    short_connections(lb, 4).await;
    let after = served_total(&backends, before.iter().sum::<usize>() + 4).await;
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "both addresses still get connections with the server gone: {before:?} -> {after:?}"
    );

    // Then a server that answers, with SERVFAIL, on the same port (free
    // once the test DNS's tasks have ended). One lookup asks A and AAAA,
    // each tried at most twice: 12 queries span several resolve intervals.
    let socket = eventually("the old DNS port to be free", WAIT, || async move {
        UdpSocket::bind(dns_addr).await.ok()
    })
    .await;
    let (queries, responder) = servfail_responder(socket);
    eventually("12 queries answered with SERVFAIL", WAIT * 2, || {
        let n = queries.load(Ordering::SeqCst);
        async move { (n >= 12).then_some(()) }
    })
    .await;
    until_backends_are(&shoal, &addrs).await;
    for addr in addrs {
        let b = backend_status(&shoal, addr).await.unwrap();
        assert!(
            b["removed"] != true && b["draining"] != true,
            "{addr} is kept as it was: {b}"
        );
    }
    let before = served(&backends);
    short_connections(lb, 4).await;
    let after = served_total(&backends, before.iter().sum::<usize>() + 4).await;
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "both addresses still get connections: {before:?} -> {after:?}"
    );
    responder.abort();
}

#[tokio::test]
async fn a_name_that_does_not_resolve_at_start_does_not_stop_the_node() {
    // The server knows no name at all: `gone.shoal.test` is NXDOMAIN.
    let dns = TestDns::start(&[]).await.unwrap();
    let literal = Backend::start(Behaviour::Echo).await;
    let text = config(
        &resolver(dns.addr()),
        &[
            format!("\"{}\"", literal.addr),
            "\"gone.shoal.test:9001\"".to_owned(),
        ],
        "",
    );
    let shoal = Shoal::start(&text).await;
    until_backends_are(&shoal, &[literal.addr]).await;
    short_connections(shoal.listener("web"), 3).await;
    assert_eq!(served_total(std::slice::from_ref(&literal), 3).await, [3]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(shoal_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config refused a name with no records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `shoal check-config` on `text`: (exit code, stderr).
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(shoal_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_backend_entries_are_refused_with_their_path() {
    // Should check-config ever ask about names, it asks this server, not
    // whatever listens on some fixed port.
    let dns = TestDns::start(&[("app.shoal.test", ip("127.0.0.55"))])
        .await
        .unwrap();
    let first = "\"127.0.0.1:9001\"".to_owned();
    // The documented shapes, all four: accepted (so the refusals below are
    // about the entry, not the rest of the file).
    let good = config(
        &format!(
            "resolver = \"{}\"\nbackend_resolve_interval_ms = 500",
            dns.addr()
        ),
        &[
            first.clone(),
            weighted("127.0.0.2:9001", 2),
            "\"app.shoal.test:9001\"".to_owned(),
            weighted("app.shoal.test:9002", 3),
            weighted("127.0.0.3:9001", 1),
            weighted("127.0.0.4:9001", 256),
        ],
        "",
    );
    let (code, stderr) = check_config(&good);
    assert_eq!(code, Some(0), "the documented shapes: {stderr}");

    let cases = [
        (weighted("127.0.0.2:9001", 0), "weight"),
        (weighted("127.0.0.2:9001", 257), "weight"),
        ("{ addr = \"x\" }".to_owned(), "port"),
        ("{ addr = \"x\", weight = 2 }".to_owned(), "port"),
        ("{ weight = 2 }".to_owned(), "addr"),
        (
            "{ addr = \"127.0.0.2:9001\", weight = 2, colour = \"red\" }".to_owned(),
            "colour",
        ),
        (weighted("127.0.0.1:9001", 2), "duplicate"),
        ("\"127.0.0.1:9001\"".to_owned(), "duplicate"),
    ];
    for (entry, word) in cases {
        let (code, stderr) = check_config(&config("", &[first.clone(), entry.clone()], ""));
        assert_eq!(code, Some(2), "{entry}: {stderr}");
        assert!(
            stderr.contains("backends[1]") && stderr.contains(word),
            "{entry}: expected `backends[1]` and `{word}` in {stderr:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // A name listed twice is a duplicate entry too.
    let name = "\"app.shoal.test:9001\"".to_owned();
    let (code, stderr) = check_config(&config(
        &format!("resolver = \"{}\"", dns.addr()),
        &[name.clone(), name],
        "",
    ));
    assert_eq!(code, Some(2), "a name twice: {stderr}");
    assert!(
        stderr.contains("backends[1]") && stderr.contains("duplicate"),
        "a name twice: {stderr:?}"
    );
}
