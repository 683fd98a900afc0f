//! The fleet's own DNS answer (`[dns]`, decision 51) with real processes:
//! three nodes whose listeners bind 127.0.0.31–33 each answer A for the
//! fleet's name with the three addresses; after a `kill -9` of one node
//! its address leaves every survivor's answer, after a `drain-node` too
//! (and the drained node answers REFUSED); the name's other records and
//! other names get the right codes. Through dnsmasq forwarding to every
//! node (`--all-servers`), no lookup fails while a node is drained or
//! leaves with SIGTERM and comes back.
//! Queries go to each node's DNS server on loopback (an IP literal),
//! never through the system resolver.

use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::dnsmasq::Dnsmasq;
use shoal_e2e::dnsq::{Reply, Transport, query};
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::node::{Shoal, shoal_bin};
use shoal_e2e::{WAIT, eventually};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::time::Instant;

const NAME: &str = "lb.fleet.test.";

/// Node `i` takes clients on this address.
fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 31 + i as u8)
}

/// Node `i` of a fleet seeded by `seed`, its listener on `host(i)`, a
/// DNS server on port 0 answering `NAME` with a 1 s TTL.
fn config(i: usize, backend: SocketAddr, seed: Option<String>, certs: &Certs) -> String {
    config_with(i, backend, seed, certs, "127.0.0.1:0".parse().unwrap(), 1)
}

/// [`config`] with the DNS server on `dns` and records of `ttl_s`.
fn config_with(
    i: usize,
    backend: SocketAddr,
    seed: Option<String>,
    certs: &Certs,
    dns: SocketAddr,
    ttl_s: u32,
) -> String {
    let name = format!("node-{}", i + 1);
    let seeds: Vec<String> = seed.into_iter().collect();
    let text = fleet_config(
        &name,
        &[backend],
        "127.0.0.1:0".parse().unwrap(),
        &seeds,
        &certs.node(&name),
        "",
        "",
    );
    // The listener's bind is the first one in the text.
    let text = text.replacen(
        "bind = \"127.0.0.1:0\"",
        &format!("bind = \"{}:0\"", host(i)),
        1,
    );
    format!(
        "{text}\n[dns]\nbind = \"{dns}\"\nallow_ephemeral_port = true\nname = \"{NAME}\"\nttl_s = {ttl_s}\n"
    )
}

async fn a(node: &Shoal) -> Reply {
    query(
        node.dns.expect("dns address"),
        NAME,
        RecordType::A,
        Transport::Udp,
    )
    .await
    .unwrap()
}

/// Waits until every node in `nodes` answers A with exactly `hosts`.
async fn answers_become(nodes: &[&Shoal], hosts: &[usize], what: &str) {
    let want: Vec<Ipv4Addr> = hosts.iter().map(|&i| host(i)).collect();
    for (k, node) in nodes.iter().enumerate() {
        eventually(&format!("{what} (node {k})"), WAIT, || async {
            let r = a(node).await;
            (r.code == ResponseCode::NoError && r.v4 == want).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn the_fleets_dns_answer_follows_kill_and_leave() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let first = Shoal::start(&config(0, backend.addr, None, &certs)).await;
    let seed = first.cluster.unwrap().to_string();
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(Shoal::start(&config(i, backend.addr, Some(seed.clone()), &certs)).await);
    }
    let all: Vec<&Shoal> = nodes.iter().collect();
    answers_become(&all, &[0, 1, 2], "three addresses").await;

    // The answer is authoritative, not recursive, and over TCP the same.
    let dns = nodes[0].dns.unwrap();
    let r = a(&nodes[0]).await;
    assert!(r.authoritative && !r.recursion_available, "{r:?}");
    let tcp = query(dns, NAME, RecordType::A, Transport::Tcp)
        .await
        .unwrap();
    assert_eq!(tcp.v4, r.v4);
    // No IPv6 address: NODATA with the SOA (negative caching).
    let r = query(dns, NAME, RecordType::AAAA, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.answers, r.soa_in_authority),
        (ResponseCode::NoError, 0, true),
        "{r:?}"
    );
    let r = query(dns, NAME, RecordType::SOA, Transport::Udp)
        .await
        .unwrap();
    assert_eq!((r.code, r.answers), (ResponseCode::NoError, 1), "{r:?}");
    let r = query(dns, NAME, RecordType::MX, Transport::Udp)
        .await
        .unwrap();
    assert_eq!((r.code, r.answers), (ResponseCode::NoError, 0), "{r:?}");
    // Below the name: NXDOMAIN, authoritatively; elsewhere: REFUSED.
    let r = query(dns, "x.lb.fleet.test.", RecordType::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!(r.code, ResponseCode::NXDomain, "{r:?}");
    assert!(r.authoritative && r.soa_in_authority, "{r:?}");
    for other in ["fleet.test.", "example.com.", "."] {
        let r = query(dns, other, RecordType::A, Transport::Udp)
            .await
            .unwrap();
        assert_eq!(
            (r.code, r.answers),
            (ResponseCode::Refused, 0),
            "{other}: {r:?}"
        );
    }
    let m = nodes[0].metrics().await;
    for series in [
        "shoal_dns_queries_total{qtype=\"A\",result=\"answer\"}",
        "shoal_dns_queries_total{qtype=\"AAAA\",result=\"nodata\"}",
        "shoal_dns_queries_total{qtype=\"A\",result=\"nxdomain\"}",
        "shoal_dns_queries_total{qtype=\"A\",result=\"refused\"}",
    ] {
        assert!(m.contains(series), "missing {series}:\n{m}");
    }

    // kill -9 of node 3 (by its PID): gone from both survivors' answers.
    let killed_at = Instant::now();
    nodes[2].kill9();
    drop(nodes.pop());
    let survivors: Vec<&Shoal> = nodes.iter().collect();
    answers_become(&survivors, &[0, 1], "the killed node to leave the answer").await;
    eprintln!(
        "kill -9: the address left both answers {:?} after the kill",
        killed_at.elapsed()
    );

    // `shoal ctl drain-node` (what a deploy script calls): node 2 leaves
    // node 1's answer, and, no longer speaking for the fleet, refuses
    // the name itself while its process stays up (REFUSED, never the
    // SERVFAIL a resolver asking all servers would pass on), and counts
    // that.
    let admin = nodes[1].admin.unwrap().to_string();
    let out = std::process::Command::new(shoal_bin())
        .args(["ctl", "drain-node", "--admin", &admin])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    answers_become(&[&nodes[0]], &[0], "the drained node to leave the answer").await;
    eventually("the drained node to answer REFUSED", WAIT, || async {
        (a(&nodes[1]).await.code == ResponseCode::Refused).then_some(())
    })
    .await;
    let r = query(
        nodes[1].dns.unwrap(),
        NAME,
        RecordType::AAAA,
        Transport::Tcp,
    )
    .await
    .unwrap();
    assert_eq!((r.code, r.answers), (ResponseCode::Refused, 0), "{r:?}");
    let m = nodes[1].metrics().await;
    let series = "shoal_dns_queries_total{qtype=\"A\",result=\"unavailable\"}";
    assert!(m.contains(series), "missing {series}:\n{m}");
}

/// A port free on `ip` for both UDP and TCP, so that a node restarted on
/// it is where the resolver in front still forwards to.
fn free_dns_addr(ip: Ipv4Addr) -> SocketAddr {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let at = udp.local_addr().unwrap();
        if std::net::TcpListener::bind(at).is_ok() {
            return at;
        }
    }
    panic!("no port free for both UDP and TCP on {ip} in 20 tries");
}

/// Lookups through the resolver while a fleet changes, at most this many
/// (one per [`LOOKUP_EVERY_MS`]), so the loop ends even if the change
/// never completes.
const LOOKUPS_MAX: usize = 4_000;
const LOOKUP_EVERY_MS: u64 = 5;
/// Lookups while a node stays drained.
const DRAINED_LOOKUPS: usize = 300;

/// The resolver setup an operator puts in front of the fleet's servers:
/// dnsmasq forwarding the name to every node at once (`--all-servers`),
/// with a TTL of 0 so each lookup reaches the nodes. While a node is
/// drained (its process up, out of the fleet), and while another leaves
/// with SIGTERM and comes back (its linger, then its warm start), every
/// lookup through the resolver gets addresses: a node that cannot speak
/// for the fleet must not answer in a way the resolver passes on
/// (decision 51, amended 2026-12-02: dnsmasq returns the first SERVFAIL
/// it gets, but holds a REFUSED until another server answers).
#[tokio::test]
async fn a_resolver_in_front_of_the_fleet_never_fails_while_nodes_leave_and_return() {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let dns: Vec<SocketAddr> = (0..3).map(|i| free_dns_addr(host(i))).collect();
    let node =
        |i: usize, seed: Option<String>| config_with(i, backend.addr, seed, &certs, dns[i], 0);
    let first = Shoal::start(&node(0, None)).await;
    let seed = first.cluster.unwrap().to_string();
    // Each node's certificate is made once: node 2 restarts on its own.
    let configs: Vec<String> = (1..3).map(|i| node(i, Some(seed.clone()))).collect();
    let mut nodes = vec![first];
    for config in &configs {
        nodes.push(Shoal::start(config).await);
    }
    answers_become(
        &nodes.iter().collect::<Vec<_>>(),
        &[0, 1, 2],
        "three addresses",
    )
    .await;
    let resolver = Dnsmasq::start_forwarding(NAME.trim_end_matches('.'), &dns).await;
    let name = NAME.trim_end_matches('.');
    let ips = |hosts: &[usize]| -> Vec<IpAddr> { hosts.iter().map(|&i| host(i).into()).collect() };
    eventually("the resolver to give the three addresses", WAIT, || async {
        (resolver.lookup(name).await.ok()? == ips(&[0, 1, 2])).then_some(())
    })
    .await;

    // Node 3 drained: out of the survivors' answers, and no answer of
    // its own (its process stays up, its DNS server too).
    let admin = nodes[2].admin.unwrap().to_string();
    let out = std::process::Command::new(shoal_bin())
        .args(["ctl", "drain-node", "--admin", &admin])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    answers_become(
        &[&nodes[0], &nodes[1]],
        &[0, 1],
        "the drained node to leave the answer",
    )
    .await;
    let own = eventually(
        "the drained node to stop answering NOERROR",
        WAIT,
        || async {
            let r = a(&nodes[2]).await;
            (r.code != ResponseCode::NoError).then_some(r.code)
        },
    )
    .await;
    let mut failed = Vec::new();
    for _ in 0..DRAINED_LOOKUPS {
        match resolver.lookup(name).await {
            Ok(got) if got == ips(&[0, 1]) => {}
            other => failed.push(other),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {DRAINED_LOOKUPS} lookups failed while node 3 was drained (it answers {own:?} itself), the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    // Node 2: SIGTERM, exit, restart on the same DNS address; lookups
    // all along, until its address is back in the resolver's answer.
    let done = std::sync::atomic::AtomicBool::new(false);
    let lookups = async {
        let mut failed = Vec::new();
        let mut made = 0;
        while made < LOOKUPS_MAX && !done.load(std::sync::atomic::Ordering::Relaxed) {
            made += 1;
            match resolver.lookup(name).await {
                Ok(got) if !got.is_empty() => {}
                other => failed.push((made, other)),
            }
            tokio::time::sleep(std::time::Duration::from_millis(LOOKUP_EVERY_MS)).await;
        }
        (made, failed)
    };
    let churn = async {
        let mut leaving = nodes.remove(1);
        leaving.sigterm();
        leaving.wait_exit(WAIT).await;
        drop(leaving);
        let back = Shoal::start(&configs[0]).await;
        eventually(
            "the restarted node back in the resolver's answer",
            WAIT,
            || async { (resolver.lookup(name).await.ok()? == ips(&[0, 1])).then_some(()) },
        )
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        back
    };
    let ((made, failed), back) = tokio::join!(lookups, churn);
    nodes.insert(1, back);
    eprintln!(
        "drained: {DRAINED_LOOKUPS} lookups; SIGTERM and restart: {made} lookups, {} failed",
        failed.len()
    );
    assert!(made < LOOKUPS_MAX, "the restart took {LOOKUPS_MAX} lookups");
    assert!(
        failed.is_empty(),
        "{} of {made} lookups failed while node 2 left and came back, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
}

/// Without `[cluster]` a node answers with its own listeners' addresses,
/// split by family: A gets the IPv4 one, AAAA the IPv6 one.
#[tokio::test]
async fn a_node_of_its_own_answers_its_listeners_addresses_by_family() {
    let backend = Backend::start(Behaviour::Echo).await;
    let text = format!(
        "{}\n[[listener]]\nname = \"web6\"\nbind = \"[::1]:0\"\nallow_ephemeral_port = true\nbackends = [\"{}\"]\n\n[dns]\nbind = \"[::1]:0\"\nallow_ephemeral_port = true\nname = \"{NAME}\"\n",
        shoal_e2e::config(&[backend.addr], ""),
        backend.addr
    );
    let node = Shoal::start(&text).await;
    let dns = node.dns.unwrap();
    assert!(dns.is_ipv6(), "{dns}");
    let r = eventually("the node's own A answer", WAIT, || async {
        let r = query(dns, NAME, RecordType::A, Transport::Udp).await.ok()?;
        (r.code == ResponseCode::NoError && !r.v4.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(r.v4, [Ipv4Addr::LOCALHOST], "{r:?}");
    assert!(r.v6.is_empty(), "{r:?}");
    let r = query(dns, NAME, RecordType::AAAA, Transport::Tcp)
        .await
        .unwrap();
    assert_eq!(r.code, ResponseCode::NoError, "{r:?}");
    assert_eq!(r.v6, [std::net::Ipv6Addr::LOCALHOST], "{r:?}");
    assert!(r.v4.is_empty() && r.authoritative, "{r:?}");
}
