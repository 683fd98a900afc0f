//! The fleet as operators deploy it: three hosts, one cluster port, and
//! one round-robin name as the whole seed list, resolved by a DNS server
//! nobody here wrote (dnsmasq) or by the hosts file through
//! `getaddrinfo(3)`. The "hosts" are 127.0.0.11–14 on loopback; every
//! node's config is what an operator writes (bind, seeds, certificates,
//! `resolver`), with every fleet timing at its default, so a node that
//! missed its first resolution would wait the default 5 s re-seed.
//!
//! The issue asks that every node hold the whole fleet within
//! [`ASSEMBLED_WITHIN_MS`] of the last node's start; the hosts-file path
//! once took 58 s, waiting on DNS for a name the hosts file lists.
//!
//! Needs dnsmasq (Debian package `dnsmasq-base`), and for the hosts-file
//! test root, util-linux and iproute2; without them a test fails, naming
//! what is missing. `.ci/run` installs them.

use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::dnsmasq::Dnsmasq;
use shoal_e2e::fleet::{Certs, NodeCerts};
use shoal_e2e::netns;
use shoal_e2e::node::Shoal;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// The round-robin name every node is seeded with.
const NAME: &str = "lb.shoal.test";

/// The issue's requirement: from the last node's start (its process
/// spawned) until every node holds every member.
const ASSEMBLED_WITHIN_MS: u64 = 2_000;

/// `cluster.resolve_interval_ms` where a test needs the running fleet to
/// re-resolve its seeds soon (the default is 30 s).
const RESOLVE_INTERVAL_MS: u64 = 500;

/// The "hosts": node `i` runs on `HOSTS[i]`.
const HOSTS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(127, 0, 0, 11),
    Ipv4Addr::new(127, 0, 0, 12),
    Ipv4Addr::new(127, 0, 0, 13),
    Ipv4Addr::new(127, 0, 0, 14),
];

/// The DNS server `resolv.conf` names in the hosts-file test: bound
/// inside the namespace and never answering, so a query to it waits the
/// whole `timeout:5 attempts:2`.
const SILENT_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);

/// A port free for UDP on every one of `hosts`, as one cluster port is on
/// every host of a real fleet; found by binding, in at most 20 tries.
fn common_port(hosts: &[Ipv4Addr]) -> u16 {
    for _ in 0..20 {
        let first = std::net::UdpSocket::bind((hosts[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        // Held until all are checked, then released for the nodes.
        let rest: Vec<_> = hosts[1..]
            .iter()
            .map(|ip| std::net::UdpSocket::bind((*ip, port)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!("no UDP port free on all of {hosts:?} in 20 tries");
}

/// `NAME` → each of `hosts`.
fn records(hosts: &[Ipv4Addr]) -> Vec<(&'static str, Ipv4Addr)> {
    hosts.iter().map(|ip| (NAME, *ip)).collect()
}

/// What an operator writes: one listener, the admin endpoint, and a
/// `[cluster]` with bind, seeds, certificates and maybe `resolver`, plus
/// `extra` lines; everything else at its default.
fn deployed_config(
    name: &str,
    bind: SocketAddr,
    seed: &str,
    certs: &NodeCerts,
    backend: SocketAddr,
    resolver: Option<SocketAddr>,
    extra: &str,
) -> String {
    let base =
        shoal_e2e::config(&[backend], "").replace("name = \"e2e\"", &format!("name = \"{name}\""));
    let resolver = resolver.map_or(String::new(), |r| format!("resolver = \"{r}\"\n"));
    format!(
        r#"{base}
[cluster]
bind = "{bind}"
seeds = ["{seed}"]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
{resolver}{extra}
"#,
        ca = certs.ca.display(),
        cert = certs.cert.display(),
        key = certs.key.display(),
    )
}

/// Nodes on the fleet's hosts, seeded with `NAME:port` only unless told
/// otherwise.
struct Fleet {
    _ca: Certs,
    /// One per host, made before any node starts, so that the nodes start
    /// back to back as a fleet started at once does.
    certs: Vec<NodeCerts>,
    backend: Backend,
    port: u16,
    resolver: Option<SocketAddr>,
    /// Lines added to every node's `[cluster]`.
    extra: String,
    nodes: Vec<Shoal>,
}

impl Fleet {
    /// Certificates for `size` nodes; none started yet.
    async fn new(size: usize, port: u16, resolver: Option<SocketAddr>, extra: &str) -> Fleet {
        let ca = Certs::new();
        let certs = (1..=size).map(|i| ca.node(&format!("node-{i}"))).collect();
        Fleet {
            _ca: ca,
            certs,
            backend: Backend::start(Behaviour::Echo).await,
            port,
            resolver,
            extra: extra.to_owned(),
            nodes: Vec::new(),
        }
    }

    /// Starts the next node, on `HOSTS[nodes.len()]`, seeded with the
    /// name; returns when it is ready, with the instant its process was
    /// spawned.
    async fn start_next(&mut self) -> Instant {
        let seed = format!("{NAME}:{}", self.port);
        self.start_next_seeded(&seed).await
    }

    /// [`Fleet::start_next`] with `seed` as the node's only seed.
    async fn start_next_seeded(&mut self, seed: &str) -> Instant {
        let i = self.nodes.len();
        let name = format!("node-{}", i + 1);
        let bind = SocketAddr::from((HOSTS[i], self.port));
        let text = deployed_config(
            &name,
            bind,
            seed,
            &self.certs[i],
            self.backend.addr,
            self.resolver,
            &self.extra,
        );
        let started = Instant::now();
        self.nodes.push(Shoal::start(&text).await);
        started
    }

    /// Waits until every node holds `self.nodes.len()` live members, at
    /// most until `ASSEMBLED_WITHIN_MS` after `since`, and prints how long
    /// after `since` that was.
    async fn assembled(&self, since: Instant) {
        let limit = Duration::from_millis(ASSEMBLED_WITHIN_MS);
        self.assembled_within(since, "the last node's start", limit)
            .await;
    }

    /// [`Fleet::assembled`] within `limit` of `since`, which is `what`.
    async fn assembled_within(&self, since: Instant, what: &str, limit: Duration) {
        let n = self.nodes.len() as u64;
        let deadline = since + limit;
        loop {
            let mut live = Vec::new();
            for node in &self.nodes {
                live.push(node.live_nodes().await);
            }
            if live.iter().all(|&l| l == n) {
                let took = since.elapsed();
                eprintln!("every node held {n} members {took:?} after {what}");
                return;
            }
            if Instant::now() >= deadline {
                let seed_logs: Vec<Vec<_>> =
                    self.nodes.iter().map(|s| s.logs_with("seed")).collect();
                panic!(
                    "{limit:?} after {what} the nodes hold {live:?} members, not {n} each; their `seed` warnings: {seed_logs:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// dnsmasq serving `NAME` as 127.0.0.11–13, and three nodes (of a fleet
/// of `size`, with `extra` cluster lines) seeded with the name alone
/// through `cluster.resolver`.
async fn three_nodes_through_dnsmasq(size: usize, port: u16, extra: &str) -> (Dnsmasq, Fleet) {
    let dns = Dnsmasq::start(&records(&HOSTS[..3])).await;
    let mut fleet = Fleet::new(size, port, Some(dns.addr()), extra).await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(fleet.start_next().await);
    }
    fleet.assembled(last.unwrap()).await;
    (dns, fleet)
}

#[tokio::test]
async fn three_nodes_assemble_from_one_round_robin_name_served_by_dnsmasq() {
    let port = common_port(&HOSTS[..3]);
    // Each node found the others through dnsmasq's answer alone: the
    // name is its only seed, and `cluster.resolver` asks no one else.
    let (_dns, _fleet) = three_nodes_through_dnsmasq(3, port, "").await;
}

/// The host is added to the name, then its node is started with the same
/// seed as the others. (It would reach them without its own address in
/// the name too; the next test is the one that needs the name to grow.)
#[tokio::test]
async fn a_fourth_node_seeded_with_the_grown_name_joins_the_running_fleet() {
    let port = common_port(&HOSTS);
    let (mut dns, mut fleet) = three_nodes_through_dnsmasq(4, port, "").await;
    dns.set_records(&records(&HOSTS)).await;
    let started = fleet.start_next().await;
    fleet.assembled(started).await;
}

/// A fourth node that knows no one (its only seed is itself: a fleet of
/// one) is found by the running fleet once the name gains its address:
/// the nodes re-resolve their seeds every `resolve_interval_ms` even when
/// not alone, and announce to an address that is new "at once"
/// (`Cluster::update_seeds`), repeated at the next report ticks
/// (`SEED_ANNOUNCE_REPEATS`): the first one is a datagram to a peer with no
/// QUIC connection yet, which the transport drops while it dials. Without
/// the repeats this failed: the fleet reached node 4 only with the
/// missing-seed announce, 30 s later (seen: 29.2 s).
#[tokio::test]
async fn the_running_fleet_follows_the_name_to_the_node_it_gained() {
    let port = common_port(&HOSTS);
    let extra = format!("resolve_interval_ms = {RESOLVE_INTERVAL_MS}");
    let (mut dns, mut fleet) = three_nodes_through_dnsmasq(4, port, &extra).await;
    fleet
        .start_next_seeded(&SocketAddr::from((HOSTS[3], port)).to_string())
        .await;
    assert_eq!(fleet.nodes[3].live_nodes().await, 1, "node 4 starts alone");
    dns.set_records(&records(&HOSTS)).await;
    let grown = Instant::now();
    // One re-resolution period, and the 2 s of the issue for the rest.
    fleet
        .assembled_within(
            grown,
            "the name gained node 4's address",
            Duration::from_millis(RESOLVE_INTERVAL_MS + ASSEMBLED_WITHIN_MS),
        )
        .await;
}

/// Run inside its own namespaces (see `shoal_e2e::netns`): there
/// `/etc/hosts` lists the name three times, `resolv.conf` names a DNS
/// server that never answers, and the nodes have no `cluster.resolver`.
#[test]
fn three_nodes_assemble_from_a_hosts_file_name_without_waiting_for_dns() {
    if netns::inside() {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(hosts_file_fleet());
        return;
    }
    let hosts: String = std::iter::once("127.0.0.1 localhost\n".to_owned())
        .chain(HOSTS[..3].iter().map(|ip| format!("{ip} {NAME}\n")))
        .collect();
    netns::run_inside(
        "three_nodes_assemble_from_a_hosts_file_name_without_waiting_for_dns",
        &[
            ("/etc/hosts", &hosts),
            (
                "/etc/resolv.conf",
                &format!("nameserver {SILENT_DNS}\noptions timeout:5 attempts:2\n"),
            ),
            ("/etc/nsswitch.conf", "hosts: files dns\n"),
        ],
    );
}

async fn hosts_file_fleet() {
    let silent = std::net::UdpSocket::bind((SILENT_DNS, 53)).expect("bind the silent DNS server");
    silent.set_nonblocking(true).unwrap();
    let port = common_port(&HOSTS[..3]);
    let mut fleet = Fleet::new(3, port, None, "").await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(fleet.start_next().await);
    }
    fleet.assembled(last.unwrap()).await;
    // The hosts file answered every lookup: no query went to DNS, not
    // even for the AAAA record the file lacks.
    let mut buf = [0u8; 512];
    match silent.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a DNS query reached the silent server: {other:?}"),
    }
}
