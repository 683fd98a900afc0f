//! Transports on real loopback sockets (port 0). Every wait is bounded: by an attempt count
//! and a per-attempt timeout, or by a timeout on the whole test body.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::{ClusterTls, Incoming, MemoryCa, Transport, TransportError, TransportLimits};

pub(super) const TEST_BOUND: Duration = Duration::from_secs(30);
pub(super) const EVENT_WAIT: Duration = Duration::from_secs(5);
const SEND_ATTEMPTS_MAX: usize = 200;
const SEND_ATTEMPT_WAIT: Duration = Duration::from_millis(50);
const REQUEST_BYTES_MAX: usize = 64 * 1024;

pub(super) fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub(super) fn limits() -> TransportLimits {
    TransportLimits {
        request_bytes_max: REQUEST_BYTES_MAX,
        request_timeout_ms: 3_000,
        connect_timeout_ms: 2_000,
        // Every refusal reported: these tests count them one by one.
        refused_log_interval_ms: 0,
        ..TransportLimits::default()
    }
}

fn bind(tls: &ClusterTls) -> (Transport, mpsc::Receiver<Incoming>) {
    Transport::bind(loopback(), tls, limits()).expect("bind on loopback")
}

pub(super) async fn bounded<F: Future>(body: F) -> F::Output {
    timeout(TEST_BOUND, body)
        .await
        .expect("test did not finish within its bound")
}

/// Sends `payload` from `from` to `to` until `rx` yields a datagram: the first sends are
/// dropped while the connection is dialled.
pub(super) async fn send_until_received(
    from: &Transport,
    to: SocketAddr,
    rx: &mut mpsc::Receiver<Incoming>,
    payload: &'static [u8],
) -> (SocketAddr, Bytes) {
    for _ in 0..SEND_ATTEMPTS_MAX {
        from.send_datagram(to, Bytes::from_static(payload));
        match timeout(SEND_ATTEMPT_WAIT, rx.recv()).await {
            Ok(Some(Incoming::Datagram { from, data, .. })) => return (from, data),
            Ok(Some(other)) => panic!("expected a datagram, got {other:?}"),
            Ok(None) => panic!("incoming channel closed"),
            Err(_) => continue,
        }
    }
    panic!("no datagram arrived after {SEND_ATTEMPTS_MAX} sends");
}

/// Answers requests the way the tests need: `big` gets an oversized response, `drop` gets
/// none, anything else is echoed with a `pong:` prefix. Datagrams are ignored.
fn spawn_responder(mut rx: mpsc::Receiver<Incoming>) {
    tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if let Incoming::Request { data, respond, .. } = item {
                match data.as_slice() {
                    b"big" => {
                        let _ = respond.send(vec![7; REQUEST_BYTES_MAX + 1]);
                    }
                    b"drop" => drop(respond),
                    other => {
                        let _ = respond.send([b"pong:".as_slice(), other].concat());
                    }
                }
            }
        }
    });
}

#[tokio::test]
async fn members_exchange_datagrams_and_requests() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let (a, mut rx_a) = bind(&ca.node("a").unwrap());
        let (b, mut rx_b) = bind(&ca.node("b").unwrap());

        let (from, data) = send_until_received(&a, b.local_addr(), &mut rx_b, b"ping").await;
        assert_eq!(
            from,
            a.local_addr(),
            "datagram source is A's endpoint address"
        );
        assert_eq!(&data[..], b"ping");
        assert_eq!(
            a.stats().connects_started,
            1,
            "one dial, however many sends"
        );
        assert!(b.stats().datagrams_received >= 1);

        // B replies over the connection A dialled: it is cached under A's address.
        let (from, data) = send_until_received(&b, a.local_addr(), &mut rx_a, b"ack").await;
        assert_eq!(from, b.local_addr());
        assert_eq!(&data[..], b"ack");
        assert_eq!(
            b.stats().connects_started,
            0,
            "B reused A's incoming connection"
        );

        let too_large = a.stats().datagrams_dropped_too_large;
        a.send_datagram(b.local_addr(), Bytes::from(vec![0u8; 2_000]));
        assert_eq!(a.stats().datagrams_dropped_too_large, too_large + 1);

        spawn_responder(rx_b);
        let response = a.request(b.local_addr(), b"hello".to_vec()).await.unwrap();
        assert_eq!(response, b"pong:hello");
        assert_eq!(b.stats().requests_received, 1);
    })
    .await;
}

#[tokio::test]
async fn request_sizes_and_refusals_are_bounded() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let (a, _rx_a) = bind(&ca.node("a").unwrap());
        let (b, rx_b) = bind(&ca.node("b").unwrap());
        spawn_responder(rx_b);
        let to = b.local_addr();

        // The first request dials and waits for the handshake.
        assert_eq!(a.request(to, b"x".to_vec()).await.unwrap(), b"pong:x");

        let err = a.request(to, b"big".to_vec()).await.unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::ResponseTooLarge {
                    bytes_max: REQUEST_BYTES_MAX,
                    ..
                }
            ),
            "{err}"
        );

        let err = a.request(to, b"drop".to_vec()).await.unwrap_err();
        assert!(matches!(err, TransportError::Refused { .. }), "{err}");
        assert!(err.to_string().contains("without answering"), "{err}");

        let err = a
            .request(to, vec![0; REQUEST_BYTES_MAX + 1])
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::RequestTooLarge { .. }),
            "{err}"
        );

        // A peer with a larger limit than B's is refused by B, not by itself.
        let (c, _rx_c) = Transport::bind(
            loopback(),
            &ca.node("c").unwrap(),
            TransportLimits {
                request_bytes_max: 4 * REQUEST_BYTES_MAX,
                ..limits()
            },
        )
        .unwrap();
        let err = c
            .request(to, vec![0; 2 * REQUEST_BYTES_MAX])
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Refused { .. }), "{err}");
        assert!(b.stats().requests_refused >= 2, "{:?}", b.stats());

        // The connection survives all of that.
        assert_eq!(a.request(to, b"y".to_vec()).await.unwrap(), b"pong:y");
        assert_eq!(a.stats().connects_started, 1);
        assert_eq!(a.stats().requests_failed, 3);
    })
    .await;
}

/// Tries datagrams and requests from `intruder` to `member` for a few rounds; every round's
/// failed handshake must show up at `member` as `PeerRefused`, and nothing else may.
async fn assert_intruder_refused(
    intruder: &Transport,
    member: &Transport,
    member_rx: &mut mpsc::Receiver<Incoming>,
) {
    let to = member.local_addr();
    for round in 0..3 {
        for _ in 0..10 {
            intruder.send_datagram(to, Bytes::from_static(b"intruder"));
        }
        let result = intruder.request(to, b"intruder".to_vec()).await;
        assert!(
            result.is_err(),
            "round {round}: request succeeded: {result:?}"
        );
        for _ in 0..10 {
            intruder.send_datagram(to, Bytes::from_static(b"intruder"));
        }
        match timeout(EVENT_WAIT, member_rx.recv()).await {
            Ok(Some(Incoming::PeerRefused { from, reason })) => {
                assert_eq!(from, intruder.local_addr(), "round {round}: {reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("round {round}: expected PeerRefused, got {other:?}"),
        }
    }
    while let Ok(item) = member_rx.try_recv() {
        assert!(
            matches!(item, Incoming::PeerRefused { .. }),
            "intruder got through: {item:?}"
        );
    }
    let stats = member.stats();
    assert_eq!(stats.datagrams_received, 0, "{stats:?}");
    assert_eq!(stats.requests_received, 0, "{stats:?}");
    assert!(stats.peers_refused >= 3, "{stats:?}");
}

#[tokio::test]
async fn peer_from_another_ca_is_refused() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let other = MemoryCa::new().unwrap();
        let (b, mut rx_b) = bind(&ca.node("b").unwrap());
        let (a, mut rx_a) = bind(&other.node("a").unwrap());

        assert_intruder_refused(&a, &b, &mut rx_b).await;

        // A does not trust B either: its own handshakes refuse B.
        match timeout(EVENT_WAIT, rx_a.recv()).await {
            Ok(Some(Incoming::PeerRefused { from, reason })) => {
                assert_eq!(from, b.local_addr(), "{reason}");
            }
            other => panic!("expected PeerRefused at A, got {other:?}"),
        }
        assert_eq!(a.stats().datagrams_sent, 0);
    })
    .await;
}

/// The trap from DEPENDENCIES.md: an intruder that trusts our CA but holds a certificate
/// from another CA completes its own `connect()` (TLS 1.3 clients finish before the server
/// has judged their certificate) and may even send datagrams on it; none may arrive.
#[tokio::test]
async fn intruder_that_trusts_our_ca_is_refused_after_its_connect_succeeds() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let other = MemoryCa::new().unwrap();
        let intruder_pem = other.issue("a").unwrap();
        let both_cas = format!("{}{}", ca.cert_pem(), other.cert_pem());
        let intruder_tls =
            ClusterTls::from_pem(&both_cas, &intruder_pem.cert_pem, &intruder_pem.key_pem).unwrap();
        let (b, mut rx_b) = bind(&ca.node("b").unwrap());
        let (a, _rx_a) = bind(&intruder_tls);

        assert_intruder_refused(&a, &b, &mut rx_b).await;
        // The intruder's own handshakes completed: this test does cover the trap.
        let stats = a.stats();
        assert!(stats.connects_started >= 3, "{stats:?}");
        assert!(stats.connects_failed < stats.connects_started, "{stats:?}");
    })
    .await;
}

#[tokio::test]
async fn send_datagram_to_a_silent_address_never_waits() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let (a, _rx_a) = bind(&ca.node("a").unwrap());
        // Bound but never answering, so no other test can take the port meanwhile.
        let silent = std::net::UdpSocket::bind(loopback()).unwrap();
        let to = silent.local_addr().unwrap();

        // Current-thread runtime: the background dial cannot even start during the loop, so
        // the counts are exact.
        for _ in 0..10_000 {
            a.send_datagram(to, Bytes::from_static(b"x"));
        }
        let stats = a.stats();
        assert_eq!(stats.datagrams_dropped_no_connection, 10_000, "{stats:?}");
        assert_eq!(stats.connects_started, 1, "{stats:?}");
        assert_eq!(stats.datagrams_sent, 0, "{stats:?}");

        let err = a.request(to, b"anyone?".to_vec()).await.unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&to.to_string()), "{err}");
    })
    .await;
}

#[tokio::test]
async fn lost_connection_is_forgotten_and_redialled() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let (a, _rx_a) = bind(&ca.node("a").unwrap());
        let (b, mut rx_b) = bind(&ca.node("b").unwrap());
        let to = b.local_addr();
        send_until_received(&a, to, &mut rx_b, b"ping").await;
        assert_eq!(a.stats().connects_started, 1);

        b.close_and_wait().await;
        // A learns of the close from B's CONNECTION_CLOSE; the next send after that dials.
        for _ in 0..SEND_ATTEMPTS_MAX {
            a.send_datagram(to, Bytes::from_static(b"ping"));
            if a.stats().connects_started >= 2 {
                break;
            }
            tokio::time::sleep(SEND_ATTEMPT_WAIT).await;
        }
        assert_eq!(a.stats().connects_started, 2, "{:?}", a.stats());
        // B's channel ends once its endpoint and connections are gone.
        drop(b);
        loop {
            match timeout(EVENT_WAIT, rx_b.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => panic!("B's incoming channel still open after close"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn closed_transport_refuses_work() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let (a, _rx_a) = bind(&ca.node("a").unwrap());
        let (b, _rx_b) = bind(&ca.node("b").unwrap());
        a.close();
        a.send_datagram(b.local_addr(), Bytes::from_static(b"x"));
        assert_eq!(a.stats().datagrams_dropped_no_connection, 1);
        assert_eq!(a.stats().connects_started, 0);
        let err = a.request(b.local_addr(), b"x".to_vec()).await.unwrap_err();
        assert!(matches!(err, TransportError::Closed), "{err}");
    })
    .await;
}

#[test]
fn bind_needs_a_runtime_and_valid_limits() {
    let ca = MemoryCa::new().unwrap();
    let tls = ca.node("a").unwrap();
    let err = Transport::bind(loopback(), &tls, limits()).unwrap_err();
    assert!(matches!(err, TransportError::NoRuntime), "{err}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bad = TransportLimits {
            incoming_queue_len: 0,
            ..limits()
        };
        let err = Transport::bind(loopback(), &tls, bad).unwrap_err();
        assert!(err.to_string().contains("incoming_queue_len"), "{err}");
    });
}
