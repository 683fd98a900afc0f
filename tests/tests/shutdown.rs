//! Signals to a real shoal process (graceful shutdown, SIGHUP), and the
//! demo command.

use shoal_e2e::backend::{Backend, Behaviour, PeerEnd, http_get, read_until_end};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, config, echo_round_trip, eventually};
use tokio::net::TcpStream;

#[tokio::test]
async fn sigterm_stops_accepting_and_lets_open_connections_finish() {
    let backend = Backend::start(Behaviour::Echo).await;
    let mut shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let lb = shoal.listener("web");
    let mut open = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut open, b"before").await.unwrap();
    shoal.sigterm();
    eventually("the listener to refuse new clients", WAIT, || async move {
        TcpStream::connect(lb).await.is_err().then_some(())
    })
    .await;
    // The open connection still works while draining.
    echo_round_trip(&mut open, b"during the drain")
        .await
        .unwrap();
    assert!(shoal.try_exit().is_none(), "still draining");
    drop(open);
    let status = shoal.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}");
    assert!(!shoal.logs_with("stopped").is_empty());
    // The held connection (6 + 16 bytes in) ended by the client; probes
    // made while waiting for the refusal may have been served too.
    let closed = shoal.logs_with("connection closed");
    let held: Vec<_> = closed.iter().filter(|l| l["bytes_in"] == 22).collect();
    assert_eq!(held.len(), 1, "{closed:?}");
    assert_eq!(held[0]["end"], "client-close");
}

#[tokio::test]
async fn the_drain_timeout_cuts_connections_that_stay_open() {
    let backend = Backend::start(Behaviour::Echo).await;
    let text =
        config(&[backend.addr], "").replace("drain_timeout_ms = 10000", "drain_timeout_ms = 300");
    let mut shoal = Shoal::start(&text).await;
    let mut open = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut open, b"held").await.unwrap();
    shoal.sigterm();
    let status = shoal.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}");
    // Cut, and said so with a reset both ways: a FIN would make a cut
    // transfer look finished.
    let (got, end) = tokio::time::timeout(WAIT, read_until_end(&mut open, 16))
        .await
        .expect("cut by shoal");
    assert!(got.is_empty(), "{got:?}");
    let e = end.expect_err("a reset, not a clean end");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert_eq!(backend.first_exchange_end().await, PeerEnd::Reset);
    let closed = shoal.logs_with("connection closed");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["end"], "shutdown");
}

#[tokio::test]
async fn sighup_reloads_and_the_node_keeps_serving() {
    let backend = Backend::start(Behaviour::Echo).await;
    let mut shoal = Shoal::start(&config(&[backend.addr], "")).await;
    shoal.sighup();
    // The file is unchanged: a reload that changes nothing (reloads
    // themselves are tests/tests/reload.rs's).
    let message = "configuration reloaded";
    // Waits for the log line or the end of the process, whichever comes
    // first: a node killed by the signal fails here, not after a timeout.
    let logged = eventually("the SIGHUP log line, or an exit", WAIT, || {
        let found = shoal.logs_with(message);
        let exit = shoal.try_exit();
        async move {
            match (found.is_empty(), exit) {
                (false, _) => Some(Ok(found)),
                (true, Some(exit)) => Some(Err(exit)),
                (true, None) => None,
            }
        }
    })
    .await;
    let logged = logged.unwrap_or_else(|exit| panic!("SIGHUP ended the node: {exit:?}"));
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["level"], "INFO", "{logged:?}");
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"after SIGHUP").await.unwrap();
    drop(s);
    assert!(shoal.try_exit().is_none(), "still running");
    shoal.sigterm();
    let status = shoal.wait_exit(WAIT).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_demo_serves_answers_from_its_backends() {
    let args = [
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--duration",
        "60",
    ]
    .map(String::from)
    .to_vec();
    let mut demo = Shoal::spawn(args, tempfile::tempdir().unwrap()).await;
    let lb = demo.listener("demo");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (code, body) = http_get(lb, "/").await.unwrap();
        assert_eq!(code, 200);
        assert!(body.starts_with("hello from demo backend "), "{body}");
        seen.insert(body);
    }
    assert!(!seen.is_empty());
    // The demo's own clients hold connections: least-conn spreads them
    // over every backend. (One request after another may all go to the
    // one backend with the fewest: each is closed before the next.)
    eventually("the demo's clients on every backend", WAIT, || async {
        let counts = demo.cluster_counts("demo").await;
        (counts.len() == 3 && counts.iter().all(|c| c.1 > 0)).then_some(())
    })
    .await;
    let status = demo.status().await;
    assert_eq!(
        status["listeners"][0]["backends"].as_array().unwrap().len(),
        3
    );
    demo.sigterm();
    assert!(demo.wait_exit(WAIT).await.success());
}
