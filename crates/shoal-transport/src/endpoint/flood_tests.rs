//! Floods from strangers: real QUIC Initials, forged with quinn-proto and never answered
//! (half-open handshakes), sent from loopback sockets; and repeated refused handshakes.
//! Every loop is bounded in count and every wait by a deadline.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use tokio::time::timeout;

use super::tests::{EVENT_WAIT, bounded, limits, loopback, send_until_received};
use crate::{CLUSTER_SERVER_NAME, Incoming, MemoryCa, Transport, TransportLimits, TransportStats};

/// Initials per flood: far above the bounds under test, small enough for loopback buffers
/// when sent in batches.
const FLOOD: usize = 200;
const BATCH: usize = 10;

/// `n` client Initials to `to`, each opening a new connection (its own connection IDs).
fn initials(client: quinn::ClientConfig, to: SocketAddr, n: usize) -> Vec<Vec<u8>> {
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = Instant::now();
    (0..n)
        .map(|_| {
            let (_, mut conn) = endpoint
                .connect(now, client.clone(), to, CLUSTER_SERVER_NAME)
                .expect("a client connection");
            let mut buf = Vec::new();
            let transmit = conn.poll_transmit(now, 1, &mut buf).expect("an Initial");
            buf.truncate(transmit.size);
            buf
        })
        .collect()
}

/// The highest gauges seen while a flood went in, and the counters at the end.
#[derive(Debug, Default)]
struct Peaks {
    handshakes: u64,
    open: u64,
    last: TransportStats,
}

/// Sends `packets` to `server` from `sockets` in turn, a batch each, waiting (bounded) after
/// each batch until the server has judged it, and records the peaks of its gauges.
async fn flood(server: &Transport, sockets: &[UdpSocket], packets: &[Vec<u8>]) -> Peaks {
    let to = server.local_addr();
    let mut peaks = Peaks::default();
    let attempts_before = server.stats().incoming_attempts;
    for (i, batch) in packets.chunks(BATCH).enumerate() {
        let socket = &sockets[i % sockets.len()];
        for packet in batch {
            socket.send_to(packet, to).expect("send on loopback");
        }
        let sent = ((i + 1) * BATCH).min(packets.len()) as u64;
        // A packet lost on loopback only ends this wait at its deadline.
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let stats = server.stats();
            peaks.handshakes = peaks.handshakes.max(stats.handshakes_in_progress);
            peaks.open = peaks.open.max(stats.connections_open);
            let judged = stats.incoming_attempts - attempts_before >= sent;
            peaks.last = stats;
            if judged || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    peaks
}

fn sockets(n: usize) -> Vec<UdpSocket> {
    (0..n)
        .map(|_| UdpSocket::bind(loopback()).expect("bind a flood socket"))
        .collect()
}

#[tokio::test]
async fn a_half_open_handshake_flood_holds_at_most_handshakes_max() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let flood_limits = TransportLimits {
            handshakes_max: 8,
            handshakes_unvalidated_max: 4,
            // Twenty sockets share 127.0.0.1: keep the per-source budget out of this test.
            source_handshakes_max: 100_000,
            ..limits()
        };
        let (server, mut rx) = Transport::bind(
            loopback(),
            &ca.node("server").unwrap(),
            flood_limits.clone(),
        )
        .unwrap();
        let to = server.local_addr();
        let packets = initials(ca.node("client").unwrap().client_config(), to, FLOOD);
        let peaks = flood(&server, &sockets(20), &packets).await;

        let stats = &peaks.last;
        assert!(
            stats.incoming_attempts >= (FLOOD / 2) as u64,
            "the flood arrived: {peaks:?}"
        );
        assert!(
            peaks.handshakes <= flood_limits.handshakes_max as u64,
            "{peaks:?}"
        );
        assert!(
            peaks.open <= flood_limits.handshakes_max as u64,
            "{peaks:?}"
        );
        assert!(stats.incoming_retried > 0, "{peaks:?}");

        // A member still gets in while the forged handshakes are pending: its quinn client
        // answers the Retry.
        let (member, _member_rx) = Transport::bind(
            loopback(),
            &ca.node("member").unwrap(),
            flood_limits.clone(),
        )
        .unwrap();
        let (from, data) = send_until_received(&member, to, &mut rx, b"still here").await;
        assert_eq!((from, &data[..]), (member.local_addr(), &b"still here"[..]));
    })
    .await;
}

#[tokio::test]
async fn one_source_starts_at_most_its_budget_of_handshakes() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let budget = 5u32;
        let flood_limits = TransportLimits {
            handshakes_max: 64,
            handshakes_unvalidated_max: 64,
            source_handshakes_max: budget,
            // One window for the whole test.
            source_window_ms: 600_000,
            ..limits()
        };
        let (server, _rx) =
            Transport::bind(loopback(), &ca.node("server").unwrap(), flood_limits).unwrap();
        let to = server.local_addr();
        let packets = initials(ca.node("client").unwrap().client_config(), to, FLOOD / 2);
        let peaks = flood(&server, &sockets(1), &packets).await;
        let stats = &peaks.last;
        assert!(
            stats.incoming_attempts >= (FLOOD / 4) as u64,
            "the flood arrived: {peaks:?}"
        );
        assert!(peaks.handshakes <= u64::from(budget), "{peaks:?}");
        assert!(
            stats.incoming_retried >= stats.incoming_attempts - u64::from(budget),
            "{peaks:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn refused_peers_are_reported_once_per_interval() {
    bounded(async {
        let ca = MemoryCa::new().unwrap();
        let other = MemoryCa::new().unwrap();
        let quiet = TransportLimits {
            refused_log_interval_ms: 600_000,
            ..limits()
        };
        let (member, mut rx) =
            Transport::bind(loopback(), &ca.node("member").unwrap(), quiet).unwrap();
        let (intruder, _intruder_rx) =
            Transport::bind(loopback(), &other.node("x").unwrap(), limits()).unwrap();
        let to = member.local_addr();
        // Each request is one more refused handshake (the intruder dials afresh each time).
        let refusals = 5;
        for _ in 0..refusals {
            let refused_before = member.stats().peers_refused;
            assert!(intruder.request(to, b"let me in".to_vec()).await.is_err());
            let deadline = Instant::now() + EVENT_WAIT;
            while member.stats().peers_refused == refused_before && Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        let stats = member.stats();
        assert!(stats.peers_refused >= refusals, "{stats:?}");
        match timeout(EVENT_WAIT, rx.recv()).await {
            Ok(Some(Incoming::PeerRefused { from, .. })) => assert_eq!(from, intruder.local_addr()),
            other => panic!("expected the first refusal reported at once, got {other:?}"),
        }
        let more: Vec<Incoming> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(more.is_empty(), "one report per interval: {more:?}");
        assert_eq!(
            stats.reports_throttled,
            stats.peers_refused - 1,
            "{stats:?}"
        );
    })
    .await;
}
