//! Packets from strangers (hardening issue 15, defect 6): a flood of garbage and of real
//! QUIC Initials that never complete their handshake, sent from the test to a node's
//! fleet endpoint on 127.0.0.1. The node must log a bounded number of lines, keep its
//! fleet, and still let a new member in.

use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::node::Shoal;
use shoal_e2e::{WAIT, eventually};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

/// Forged Initials: each opens a new half-open handshake (its own connection IDs).
const INITIALS: usize = 2_000;
/// Garbage datagrams, some shaped like a long-header Initial.
const GARBAGE: usize = 2_000;
/// Flood sockets (source ports; all on 127.0.0.1).
const SOURCES: usize = 50;
/// WARN and ERROR lines the node may write because of the flood. Before the fix it wrote
/// two per forged Initial.
const WARN_LINES_MAX: usize = 10;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `n` client Initials to `to`. The certificate is from a CA nobody trusts: it is never
/// sent, because these handshakes never get past the server's first flight.
fn initials(to: SocketAddr, n: usize) -> Vec<Vec<u8>> {
    let ca = shoal_transport::MemoryCa::new().unwrap();
    let client = ca.node("stranger").unwrap().client_config();
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
                .connect(
                    now,
                    client.clone(),
                    to,
                    shoal_transport::CLUSTER_SERVER_NAME,
                )
                .unwrap();
            let mut buf = Vec::new();
            let transmit = conn.poll_transmit(now, 1, &mut buf).expect("an Initial");
            buf.truncate(transmit.size);
            buf
        })
        .collect()
}

/// Garbage of assorted sizes; every other one starts like a QUIC v1 Initial.
fn garbage(n: usize) -> Vec<Vec<u8>> {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let len = [40, 600, 1200, 1350][i % 4];
            let mut packet: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 2 == 0 {
                packet[..5].copy_from_slice(&[0xc3, 0, 0, 0, 1]);
            }
            packet
        })
        .collect()
}

fn warn_lines(node: &Shoal) -> usize {
    node.logs()
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        .count()
}

#[tokio::test]
async fn a_flood_of_strangers_packets_gives_bounded_logs_and_the_fleet_carries_on() {
    let backend = shoal_e2e::backend::Backend::start(shoal_e2e::backend::Behaviour::Echo).await;
    let certs = Certs::new();
    let node = |name: &str, seeds: &[String]| {
        fleet_config(
            name,
            &[backend.addr],
            any_port(),
            seeds,
            &certs.node(name),
            "",
            "",
        )
    };
    let first = Shoal::start(&node("node-1", &[])).await;
    let target = first.cluster.expect("cluster address");
    let seeds = [target.to_string()];
    let second = Shoal::start(&node("node-2", &seeds)).await;
    for n in [&first, &second] {
        eventually("both nodes to see each other", WAIT, || async {
            (n.live_nodes().await == 2).then_some(())
        })
        .await;
    }
    let warned_before = warn_lines(&first);

    let sockets: Vec<UdpSocket> = (0..SOURCES)
        .map(|_| UdpSocket::bind(any_port()).unwrap())
        .collect();
    let mut packets = initials(target, INITIALS);
    packets.extend(garbage(GARBAGE));
    for (i, packet) in packets.iter().enumerate() {
        // Loopback may drop some when the node's buffer is full; that only shrinks the flood.
        let _ = sockets[i % SOURCES].send_to(packet, target);
        if i % 50 == 49 {
            // Let the node read between bursts instead of overflowing its socket buffer.
            tokio::task::yield_now().await;
        }
    }

    // The forged handshakes that got state time out after connect_timeout_ms; their
    // refusal is the line the flood used to multiply.
    first.log_eventually("refused peer").await;
    // The node keeps its fleet and admits a newcomer right after the flood.
    let third = Shoal::start(&node("node-3", &seeds)).await;
    for n in [&first, &second, &third] {
        eventually("the fleet to grow to 3 after the flood", WAIT, || async {
            (n.live_nodes().await == 3).then_some(())
        })
        .await;
    }
    let warned = warn_lines(&first) - warned_before;
    let lines = first.logs().len();
    eprintln!(
        "flood of {INITIALS} Initials and {GARBAGE} garbage packets: {warned} WARN/ERROR lines, {lines} lines in all at debug level"
    );
    assert!(
        warned <= WARN_LINES_MAX,
        "{warned} WARN/ERROR lines for the flood; the first ones: {:#?}",
        first
            .logs()
            .iter()
            .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
            .take(5)
            .collect::<Vec<_>>()
    );
}
