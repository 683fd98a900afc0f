//! Health and counting through a real shoal process: a killed backend is
//! skipped without failing clients, comes back when it recovers; counts
//! return to zero; connection limits per backend and per listener.

use shoal_e2e::backend::{Backend, Behaviour, http_get};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, config, echo_round_trip, eventually};
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_killed_backend_is_skipped_without_failing_clients_and_comes_back() {
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(Backend::start(Behaviour::Http).await);
    }
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let shoal = Shoal::start(&config(&addrs, "policy = \"round-robin\"")).await;
    let lb = shoal.listener("web");
    // Every backend has passed checks (so it is "proven" and needs `fall`
    // failures to go down) before the kill.
    eventually("two checks of every backend", WAIT, || {
        let n = shoal.metrics();
        async move {
            let m = n.await;
            let ok = m
                .lines()
                .filter(|l| {
                    l.starts_with("shoal_health_checks_total") && l.contains("result=\"ok\"")
                })
                .filter(|l| {
                    l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        >= 2
                })
                .count();
            (ok == 3).then_some(())
        }
    })
    .await;

    let dead = backends.remove(1).kill().await;
    for i in 0..30 {
        let (code, body) = http_get(lb, "/")
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(code, 200);
        assert_ne!(body, format!("backend {}\n", dead.port()), "request {i}");
    }
    eventually("the killed backend to be down", WAIT, || {
        let s = shoal.backends("web");
        async move {
            s.await
                .iter()
                .any(|(a, up, _)| a == &dead.to_string() && !up)
                .then_some(())
        }
    })
    .await;
    let log = shoal.log_eventually("backend is down").await;
    assert!(
        log.iter().any(|l| l["backend"] == dead.to_string()),
        "{log:?}"
    );

    // Recovery: same port again; checks bring it back, and it gets traffic.
    let back = Backend::start_at(dead, Behaviour::Http).await;
    eventually("the backend to be up again", WAIT, || {
        let s = shoal.backends("web");
        async move { s.await.iter().all(|(_, up, _)| *up).then_some(()) }
    })
    .await;
    for _ in 0..6 {
        assert_eq!(http_get(lb, "/").await.unwrap().0, 200);
    }
    assert!(
        back.accepted.load(Ordering::SeqCst) >= 1,
        "recovered backend gets traffic"
    );
}

#[tokio::test]
async fn connection_counts_follow_clients_and_return_to_zero() {
    let mut backends = Vec::new();
    for _ in 0..3 {
        backends.push(Backend::start(Behaviour::Echo).await);
    }
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let shoal = Shoal::start(&config(&addrs, "")).await;
    let lb = shoal.listener("web");
    let mut clients = Vec::new();
    for i in 0..30u32 {
        let mut s = TcpStream::connect(lb).await.unwrap();
        echo_round_trip(&mut s, &i.to_be_bytes()).await.unwrap();
        clients.push(s);
    }
    let counts = shoal.backends("web").await;
    assert_eq!(counts.iter().map(|c| c.2).sum::<u64>(), 30, "{counts:?}");
    for (b, c) in backends.iter().zip(&counts) {
        assert_eq!(
            b.open.load(Ordering::SeqCst) as u64,
            c.2,
            "shoal's count matches the backend's"
        );
        // least-conn (power of two choices over exact counts) keeps them near 10.
        assert!((6..=14).contains(&c.2), "{counts:?}");
    }
    drop(clients);
    eventually("every count back to zero", WAIT, || {
        let s = shoal.status();
        async move {
            let s = s.await;
            let l = &s["listeners"][0];
            let zero = l["active_connections"] == 0
                && l["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["active_connections"] == 0);
            zero.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_is_refused_when_every_backend_is_at_its_limit() {
    let a = Backend::start(Behaviour::Echo).await;
    let b = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[a.addr, b.addr], "backend_max_connections = 1")).await;
    let lb = shoal.listener("web");
    let mut s1 = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut s1, b"one").await.unwrap();
    let mut s2 = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut s2, b"two").await.unwrap();
    assert_eq!(
        (a.open.load(Ordering::SeqCst), b.open.load(Ordering::SeqCst)),
        (1, 1)
    );
    // Third client: accepted, then closed at once with no data.
    let mut s3 = TcpStream::connect(lb).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, s3.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    let m = shoal.metrics().await;
    assert!(
        m.contains("shoal_listener_no_backend_total{listener=\"web\"} 1"),
        "{m}"
    );
    let refused = shoal.log_eventually("client refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["end"], "no-backend");
    // A slot frees up: the next client is served again.
    drop(s1);
    eventually("a freed slot to serve a new client", WAIT, || async move {
        let mut s = TcpStream::connect(lb).await.ok()?;
        echo_round_trip(&mut s, b"four").await.ok()
    })
    .await;
}

#[tokio::test]
async fn clients_over_the_listener_limit_wait_for_a_free_slot() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "max_connections = 1")).await;
    let lb = shoal.listener("web");
    let mut first = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut first, b"first").await.unwrap();
    // The second connect completes in the kernel's accept queue...
    let mut second = TcpStream::connect(lb).await.unwrap();
    let waiter = tokio::spawn(async move {
        echo_round_trip(&mut second, b"second").await.unwrap();
        second
    });
    // ...but shoal does not accept it while the first is open: a round trip
    // on the first shows shoal is running, and the backend saw one client.
    echo_round_trip(&mut first, b"again").await.unwrap();
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        shoal.status().await["listeners"][0]["active_connections"],
        1
    );
    assert!(!waiter.is_finished());
    drop(first);
    let _second = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
}
