//! The PROXY protocol against a peer nobody here wrote (HAProxy):
//! `send_proxy = "v1" | "v2"` tells an `accept-proxy` HAProxy the client's
//! address; `accept_proxy = true` takes the client from HAProxy's
//! `send-proxy-v2` in front; a client without a valid header is closed
//! alone, logged and counted. The headers the tests send themselves are
//! written out byte by byte here, not by shoal's encoder.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::haproxy::{Haproxy, free_port};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, config, echo_round_trip, eventually};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// HAProxy's `global` and `defaults` for every test here.
const PREAMBLE: &str = "global
  maxconn 200
defaults
  timeout connect 2s
  timeout client 10s
  timeout server 10s
";

/// An HAProxy frontend at `echo` that requires the PROXY protocol
/// (`accept-proxy`) and answers every HTTP request with the client and
/// destination addresses it took from the header: `src|sport|dst|dport`.
fn echo_config(echo: SocketAddr, more: &str) -> String {
    format!(
        r#"{PREAMBLE}frontend seen
  mode http
  bind {echo} accept-proxy
  http-request return status 200 content-type text/plain lf-string "%[src]|%[src_port]|%[dst]|%[dst_port]"
{more}"#
    )
}

/// GET / through `addr`; returns the local address the request left from
/// and the response body.
async fn get(addr: SocketAddr) -> (SocketAddr, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{out}");
    (me, body.to_owned())
}

#[tokio::test]
async fn send_proxy_tells_haproxy_the_client_in_both_versions() {
    let echo = free_port();
    let _haproxy = Haproxy::start(&echo_config(echo, ""), &[echo]);
    for version in ["v1", "v2"] {
        let shoal = Shoal::start(&config(&[echo], &format!("send_proxy = \"{version}\""))).await;
        let lb = shoal.listener("web");
        let (me, body) = get(lb).await;
        assert_eq!(
            body,
            format!("{}|{}|{}|{}", me.ip(), me.port(), lb.ip(), lb.port()),
            "HAProxy saw another client or destination with send_proxy = {version}"
        );
        // Health checks send the "no client" header (v1 UNKNOWN, v2
        // LOCAL), which HAProxy accepts: the backend stays up.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let backends = shoal.backends("web").await;
        assert!(backends[0].1, "checked with {version}: {backends:?}");
    }
}

#[tokio::test]
async fn accept_proxy_takes_the_client_from_haproxy_in_front() {
    let echo = free_port();
    let _seen = Haproxy::start(&echo_config(echo, ""), &[echo]);
    // HAProxy (send-proxy-v2) → shoal (accept_proxy, send_proxy v1) →
    // HAProxy (accept-proxy): the last one must see the first client.
    let shoal = Shoal::start(&config(&[echo], "accept_proxy = true\nsend_proxy = \"v1\"")).await;
    let lb = shoal.listener("web");
    let front = free_port();
    let _front = Haproxy::start(
        &format!(
            r#"{PREAMBLE}frontend front
  mode tcp
  bind {front}
  default_backend to_shoal
backend to_shoal
  mode tcp
  server shoal {lb} send-proxy-v2
"#
        ),
        &[front],
    );
    let (me, body) = get(front).await;
    assert_eq!(
        body,
        format!("{}|{}|{}|{}", me.ip(), me.port(), front.ip(), front.port()),
        "the client or the address it dialled was lost on the way"
    );
    // shoal's own log names the client from the header, and the
    // balancer it came through.
    let line = eventually("the connection's log line", WAIT, || async {
        shoal
            .logs_with("connection closed")
            .into_iter()
            .find(|l| l["client"] == me.to_string().as_str())
    })
    .await;
    assert_ne!(line["via"], serde_json::Value::Null, "{line}");
    assert_ne!(line["via"], line["client"], "{line}");
}

/// A version-2 header for TCP over IPv4 from `192.0.2.7:51000` to
/// `198.51.100.1:443`, per the specification's layout.
fn v2_header() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1]);
    h.extend_from_slice(&51000u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Reads until the peer ends the connection (FIN or reset); fails if it
/// has not within `WAIT`. Returns the bytes read before.
async fn closed_by_peer(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Err(_) => panic!("the connection was not closed (got {got:?})"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_without_a_valid_header_is_closed_alone() {
    let backend = Backend::start(Behaviour::Echo).await;
    let shoal = Shoal::start(&config(
        &[backend.addr],
        "accept_proxy = true\nproxy_header_timeout_ms = 300",
    ))
    .await;
    let lb = shoal.listener("web");

    // A good client first, with its first data in the header's segment:
    // the header is taken off, the data reaches the backend.
    let mut good = TcpStream::connect(lb).await.unwrap();
    good.write_all(b"PROXY TCP4 192.0.2.9 198.51.100.1 40000 80\r\nhello")
        .await
        .unwrap();
    let mut back = [0u8; 5];
    tokio::time::timeout(WAIT, good.read_exact(&mut back))
        .await
        .expect("the data after the header came back")
        .unwrap();
    assert_eq!(&back, b"hello");

    // No header at all: closed, nothing reaches the backend.
    let mut plain = TcpStream::connect(lb).await.unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(closed_by_peer(&mut plain).await, b"");
    // A header begun and never finished: closed at the timeout.
    let mut stalled = TcpStream::connect(lb).await.unwrap();
    stalled.write_all(b"PROXY TCP4 192.0.2.").await.unwrap();
    assert_eq!(closed_by_peer(&mut stalled).await, b"");
    // A version-2 header split over two writes is still a header.
    let mut split = TcpStream::connect(lb).await.unwrap();
    let h = v2_header();
    split.write_all(&h[..7]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    split.write_all(&h[7..]).await.unwrap();
    echo_round_trip(&mut split, b"binary header ok")
        .await
        .unwrap();

    // The good connection never noticed.
    echo_round_trip(&mut good, b"still here").await.unwrap();
    let metrics = shoal.metrics().await;
    assert!(
        metrics.contains("shoal_listener_proxy_header_errors_total{listener=\"web\"} 2"),
        "{metrics}"
    );
    let logged = shoal
        .log_eventually("client closed: no valid PROXY protocol header")
        .await;
    assert!(
        logged[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no PROXY protocol header")),
        "{logged:?}"
    );
    // The clients the backend served: the two with a header.
    assert_eq!(backend.served.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The log names the client from the header.
    drop(good);
    let line = eventually("the good connection's log line", WAIT, || async {
        shoal
            .logs_with("connection closed")
            .into_iter()
            .find(|l| l["client"] == "192.0.2.9:40000")
    })
    .await;
    assert_eq!(line["bytes_in"], 5 + 10, "{line}");
}
