//! Bytes through a real shoal process: intact both ways, half-close in
//! both directions, an abort passed on as an abort, IPv6, idle timeout.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_e2e::backend::{Backend, Behaviour, PeerEnd, read_until_end};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, config, echo_round_trip, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn large_payloads_arrive_intact_both_ways() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let lb = shoal.listener("web");
    let mut clients = Vec::new();
    for seed in 0..4u64 {
        clients.push(tokio::spawn(async move {
            let mut payload = vec![0u8; 8 * 1024 * 1024];
            SmallRng::seed_from_u64(seed).fill_bytes(&mut payload);
            let s = TcpStream::connect(lb).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let sent = payload.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert_eq!(back.len(), payload.len());
            assert!(back == payload, "payload {seed} corrupted");
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let total: u64 = 4 * 8 * 1024 * 1024;
    let metrics = shoal.metrics().await;
    for dir in ["client_to_backend", "backend_to_client"] {
        let series = format!(
            "shoal_bytes_total{{listener=\"web\",backend=\"{}\",direction=\"{dir}\"}} {total}",
            backend.addr
        );
        assert!(metrics.contains(&series), "missing {series} in\n{metrics}");
    }
}

#[tokio::test]
async fn client_half_close_keeps_the_return_way_open() {
    let backend = Backend::start(Behaviour::CountThenReply).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    s.write_all(&vec![7u8; 1 << 20]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "got 1048576 bytes\n");
}

#[tokio::test]
async fn backend_half_close_keeps_the_way_in_open() {
    let backend = Backend::start(Behaviour::GreetThenListen).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    let mut greeting = Vec::new();
    s.read_to_end(&mut greeting).await.unwrap();
    assert_eq!(greeting, b"hello\n", "greeting then FIN");
    s.write_all(&vec![1u8; 100_000]).await.unwrap();
    s.shutdown().await.unwrap();
    let received = backend.received.clone();
    eventually("the backend to read all 100000 bytes", WAIT, || {
        let n = received.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n == 100_000).then_some(()) }
    })
    .await;
    let line = eventually("the connection log line", WAIT, || {
        let l = shoal.logs_with("connection closed").pop();
        async move { l }
    })
    .await;
    assert_eq!(line["end"], "backend-close", "{line}");
    assert_eq!(line["bytes_in"], 100_000);
    assert_eq!(line["bytes_out"], 6);
}

#[tokio::test]
async fn ipv6_listener_and_backend() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let backend = Backend::start_at("[::1]:0".parse().unwrap(), Behaviour::Echo).await;
    let text = config(&[backend.addr], "").replace("bind = \"127.0.0.1:0\"", "bind = \"[::1]:0\"");
    let shoal = Shoal::start(&text).await;
    let lb = shoal.listener("web");
    assert!(lb.is_ipv6());
    let mut s = TcpStream::connect(lb).await.unwrap();
    echo_round_trip(&mut s, b"over ipv6").await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "idle_timeout_ms = 300")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"ping").await.unwrap();
    // Now silent: shoal must cut the connection by itself, and say so
    // with a reset to both sides (a FIN would look like a finished
    // exchange).
    let (got, end) = tokio::time::timeout(WAIT, read_until_end(&mut s, 16))
        .await
        .expect("shoal closed the idle connection");
    assert!(got.is_empty(), "{got:?}");
    let e = end.expect_err("a reset, not a clean end");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    let line = eventually("the connection log line", WAIT, || {
        let l = shoal.logs_with("connection closed").pop();
        async move { l }
    })
    .await;
    assert_eq!(line["end"], "idle-timeout", "{line}");
    assert_eq!(line["bytes_in"], 4);
    assert_eq!(backend.first_exchange_end().await, PeerEnd::Reset);
}

/// A backend that dies in the middle of its answer: the client must see
/// the abort (ECONNRESET), not a clean FIN that makes the truncated answer
/// look whole.
#[tokio::test]
async fn a_backend_reset_reaches_the_client_as_a_reset() {
    let backend = Backend::start(Behaviour::AnswerThenReset).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    s.write_all(b"request").await.unwrap();
    let (got, end) = tokio::time::timeout(WAIT, read_until_end(&mut s, 1 << 20))
        .await
        .expect("the connection ended");
    assert!(b"partial\n".starts_with(&got), "{got:?}");
    let e = end.expect_err("an abort, not a clean end");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    let line = shoal.log_eventually("connection closed").await;
    assert_eq!(line[0]["end"], "backend-error", "{line:?}");
}

/// The same in the middle of a bulk transfer, which goes through
/// `splice` (a burst of more than 4 full buffers).
#[tokio::test]
async fn a_backend_reset_during_a_bulk_transfer_reaches_the_client_as_a_reset() {
    let backend = Backend::start(Behaviour::Stream).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    let mut head = vec![0u8; 4 << 20];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("4 MiB arrived")
        .unwrap();
    backend.reset_all();
    // What was in flight still arrives, then the reset; the bound is far
    // above what the sockets and the proxy can hold.
    let (_, end) = tokio::time::timeout(WAIT, read_until_end(&mut s, 1 << 30))
        .await
        .expect("the connection ended");
    let e = end.expect_err("an abort, not a clean end");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

/// A client that aborts: the backend must see the abort too.
#[tokio::test]
async fn a_client_reset_reaches_the_backend_as_a_reset() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"before the reset").await.unwrap();
    s.set_zero_linger().unwrap();
    drop(s);
    assert_eq!(backend.first_exchange_end().await, PeerEnd::Reset);
    let line = shoal.log_eventually("connection closed").await;
    assert_eq!(line[0]["end"], "client-error", "{line:?}");
}

/// Half-close and a clean close stay clean: FIN in, FIN out, both ways.
#[tokio::test]
async fn a_clean_close_still_arrives_as_a_fin_both_ways() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(&[backend.addr], "")).await;
    let mut s = TcpStream::connect(shoal.listener("web")).await.unwrap();
    echo_round_trip(&mut s, b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    let (got, end) = tokio::time::timeout(WAIT, read_until_end(&mut s, 1 << 20))
        .await
        .expect("the connection ended");
    assert!(got.is_empty(), "{got:?}");
    end.expect("a clean FIN from the backend");
    assert_eq!(backend.first_exchange_end().await, PeerEnd::Eof);
}
