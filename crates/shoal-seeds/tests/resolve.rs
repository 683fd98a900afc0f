//! Seed resolution against a DNS server started in the test on 127.0.0.1.
//! No test resolves a name through the system resolver: every query goes to
//! a [`TestDns`] or to a silent socket of the test's own, and every address
//! served is a loopback address.

use shoal_seeds::testdns::TestDns;
use shoal_seeds::{Resolved, SeedError, SeedLimits, SeedResolver};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A hang guard, far above any bound under test: a test that reaches it
/// has a bug, it is not a timing assertion.
const TEST_GUARD: Duration = Duration::from_secs(30);

fn limits() -> SeedLimits {
    SeedLimits {
        query_timeout_ms: 2_000,
        query_attempts_max: 2,
        addresses_max: 64,
        lookups_in_flight_max: 4,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn seeds(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn resolve(resolver: &SeedResolver, list: &[&str]) -> Resolved {
    tokio::time::timeout(TEST_GUARD, resolver.resolve(&seeds(list)))
        .await
        .expect("resolve hung past the test guard")
}

/// The fleet used by most tests: a three-address round-robin name, a
/// dual-stack name and an IPv6-only name, all on loopback.
async fn fleet_dns() -> TestDns {
    TestDns::start(&[
        ("lb.shoal.test", ip("127.0.0.1")),
        ("lb.shoal.test", ip("127.0.0.2")),
        ("lb.shoal.test", ip("127.0.0.3")),
        ("dual.shoal.test", ip("127.0.0.4")),
        ("dual.shoal.test", ip("::1")),
        ("six.shoal.test", ip("::1")),
    ])
    .await
    .unwrap()
}

#[tokio::test]
async fn ip_literals_resolve_with_no_query_and_bad_syntax_names_the_seed() {
    let dns = TestDns::start(&[]).await.unwrap();
    let resolver = SeedResolver::new(Some(dns.addr()), limits()).unwrap();
    let got = resolve(
        &resolver,
        &[
            "127.0.0.1:7946",
            "lb.example:99999",
            "[::1]:7946",
            "::1:7946",
            "127.0.0.1:7946",
        ],
    )
    .await;
    assert_eq!(got.addrs, vec![addr("127.0.0.1:7946"), addr("[::1]:7946")]);
    let messages: Vec<String> = got.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "seed `lb.example:99999`: port out of range",
            "seed `::1:7946`: an IPv6 address must be in brackets: `[ipv6]:port`",
        ]
    );
    assert_eq!(dns.queries(), 0, "IP literals and bad seeds need no query");
}

#[tokio::test]
async fn a_round_robin_name_resolves_to_all_its_addresses() {
    let dns = fleet_dns().await;
    let resolver = SeedResolver::new(Some(dns.addr()), limits()).unwrap();
    let got = resolve(&resolver, &["lb.shoal.test:7946"]).await;
    assert_eq!(got.errors, vec![]);
    assert_eq!(
        got.addrs,
        vec![
            addr("127.0.0.1:7946"),
            addr("127.0.0.2:7946"),
            addr("127.0.0.3:7946"),
        ]
    );
    assert!(dns.queries() >= 1, "the resolver asked the test DNS");
}

#[tokio::test]
async fn a_name_with_a_and_aaaa_records_gives_both() {
    let dns = fleet_dns().await;
    let resolver = SeedResolver::new(Some(dns.addr()), limits()).unwrap();
    let got = resolve(&resolver, &["dual.shoal.test:80", "six.shoal.test.:81"]).await;
    assert_eq!(got.errors, vec![]);
    assert_eq!(
        got.addrs,
        vec![addr("127.0.0.4:80"), addr("[::1]:80"), addr("[::1]:81")]
    );
}

#[tokio::test]
async fn an_unknown_name_fails_alone() {
    let dns = fleet_dns().await;
    let resolver = SeedResolver::new(Some(dns.addr()), limits()).unwrap();
    let got = resolve(
        &resolver,
        &[
            "nope.shoal.test:7946",
            "lb.shoal.test:7946",
            "127.0.0.9:7946",
            "NOPE.example:1",
        ],
    )
    .await;
    assert_eq!(
        got.addrs,
        vec![
            addr("127.0.0.1:7946"),
            addr("127.0.0.2:7946"),
            addr("127.0.0.3:7946"),
            addr("127.0.0.9:7946"),
        ]
    );
    let resolver_addr = dns.addr().to_string();
    assert_eq!(
        got.errors,
        vec![
            SeedError::NoSuchName {
                seed: "nope.shoal.test:7946".into(),
                host: "nope.shoal.test".into(),
                resolver: resolver_addr.clone(),
            },
            SeedError::NoSuchName {
                seed: "NOPE.example:1".into(),
                host: "NOPE.example".into(),
                resolver: resolver_addr.clone(),
            },
        ]
    );
    assert_eq!(
        got.errors[0].to_string(),
        format!(
            "seed `nope.shoal.test:7946`: no such name `nope.shoal.test` (NXDOMAIN from {resolver_addr})"
        )
    );
    assert_eq!(got.errors[0].seed(), Some("nope.shoal.test:7946"));
}

#[tokio::test]
async fn a_name_that_exists_without_addresses_is_reported_as_such() {
    // `shoal.test` exists (it has a child, `lb.shoal.test`) but holds no
    // records: NOERROR with an empty answer, not NXDOMAIN.
    let dns = fleet_dns().await;
    let resolver = SeedResolver::new(Some(dns.addr()), limits()).unwrap();
    let got = resolve(&resolver, &["shoal.test:7946"]).await;
    assert_eq!(got.addrs, vec![]);
    assert_eq!(
        got.errors,
        vec![SeedError::NoAddresses {
            seed: "shoal.test:7946".into(),
            host: "shoal.test".into(),
            resolver: dns.addr().to_string(),
        }]
    );
}

#[tokio::test]
async fn a_silent_resolver_times_out_within_the_bound() {
    // Takes queries on UDP and never answers. (TCP is only tried for a
    // truncated answer; holding the TCP side too, when it is free, keeps any
    // other listener from answering there.)
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent = udp.local_addr().unwrap();
    let _tcp = tokio::net::TcpListener::bind(silent).await;
    let limits = SeedLimits {
        query_timeout_ms: 200,
        query_attempts_max: 2,
        ..limits()
    };
    let resolver = SeedResolver::new(Some(silent), limits).unwrap();
    let got = resolve(&resolver, &["lb.shoal.test:7946", "127.0.0.1:7946"]).await;
    assert_eq!(got.addrs, vec![addr("127.0.0.1:7946")]);
    assert_eq!(got.errors.len(), 1, "{:?}", got.errors);
    let error = &got.errors[0];
    assert_eq!(error.seed(), Some("lb.shoal.test:7946"));
    assert_eq!(
        error.to_string(),
        format!(
            "seed `lb.shoal.test:7946`: no answer for `lb.shoal.test` within 400 ms (asked {silent})"
        )
    );
}

#[tokio::test]
async fn the_address_cap_drops_and_reports() {
    let dns = fleet_dns().await;
    let limits = SeedLimits {
        addresses_max: 2,
        ..limits()
    };
    let resolver = SeedResolver::new(Some(dns.addr()), limits).unwrap();
    let got = resolve(&resolver, &["lb.shoal.test:7946", "127.0.0.9:1"]).await;
    assert_eq!(
        got.addrs,
        vec![addr("127.0.0.1:7946"), addr("127.0.0.2:7946")]
    );
    assert_eq!(
        got.errors,
        vec![
            SeedError::AddressesCapped {
                seed: "lb.shoal.test:7946".into(),
                dropped: 1,
                addresses_max: 2,
            },
            SeedError::AddressesCapped {
                seed: "127.0.0.9:1".into(),
                dropped: 1,
                addresses_max: 2,
            },
        ]
    );
}

#[tokio::test]
async fn many_seeds_one_lookup_at_a_time_keep_seed_order_and_dedup() {
    let dns = fleet_dns().await;
    let limits = SeedLimits {
        lookups_in_flight_max: 1,
        ..limits()
    };
    let resolver = SeedResolver::new(Some(dns.addr()), limits).unwrap();
    let got = resolve(
        &resolver,
        &[
            "127.0.0.3:7946",
            "dual.shoal.test:7946",
            "lb.shoal.test:7946",
            "six.shoal.test:7946",
        ],
    )
    .await;
    assert_eq!(got.errors, vec![]);
    assert_eq!(
        got.addrs,
        vec![
            addr("127.0.0.3:7946"),
            addr("127.0.0.4:7946"),
            addr("[::1]:7946"),
            addr("127.0.0.1:7946"),
            addr("127.0.0.2:7946"),
        ]
    );
    // Ask again: no cache, so the DNS is asked again, same answer.
    let before = dns.queries();
    let again = resolve(&resolver, &["lb.shoal.test:7946"]).await;
    assert_eq!(
        again.addrs,
        vec![
            addr("127.0.0.1:7946"),
            addr("127.0.0.2:7946"),
            addr("127.0.0.3:7946"),
        ]
    );
    assert!(dns.queries() > before, "answers are not cached");
}

#[tokio::test]
async fn zero_limits_are_refused() {
    let dns: SocketAddr = addr("127.0.0.1:53");
    for (limits, field) in [
        (
            SeedLimits {
                query_timeout_ms: 0,
                ..limits()
            },
            "query_timeout_ms",
        ),
        (
            SeedLimits {
                query_attempts_max: 0,
                ..limits()
            },
            "query_attempts_max",
        ),
        (
            SeedLimits {
                addresses_max: 0,
                ..limits()
            },
            "addresses_max",
        ),
        (
            SeedLimits {
                lookups_in_flight_max: 0,
                ..limits()
            },
            "lookups_in_flight_max",
        ),
    ] {
        let error = SeedResolver::new(Some(dns), limits).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("seed limits: `{field}` = 0: must be at least 1")
        );
    }
}

#[tokio::test]
async fn the_system_resolver_takes_ip_literals_without_asking() {
    // Only IP literals: nothing may leave the machine.
    match SeedResolver::new(None, limits()) {
        Ok(resolver) => {
            let got = resolve(&resolver, &["127.0.0.1:1", "[::1]:2"]).await;
            assert_eq!(got.errors, vec![]);
            assert_eq!(got.addrs, vec![addr("127.0.0.1:1"), addr("[::1]:2")]);
        }
        // A machine with no resolver configuration: the error says so.
        Err(error) => assert!(matches!(error, SeedError::SystemConfig { .. }), "{error}"),
    }
}

#[tokio::test]
async fn an_answer_too_big_for_udp_comes_over_tcp() {
    // 200 A records do not fit in one UDP answer: the server truncates it
    // and the resolver must ask again over TCP.
    let records: Vec<(&str, IpAddr)> = (0..200u8)
        .map(|i| ("big.shoal.test", IpAddr::from([127, 0, 1, i])))
        .collect();
    let dns = TestDns::start(&records).await.unwrap();
    let limits = SeedLimits {
        addresses_max: 1_000,
        ..limits()
    };
    let resolver = SeedResolver::new(Some(dns.addr()), limits).unwrap();
    let got = resolve(&resolver, &["big.shoal.test:7946"]).await;
    assert_eq!(got.errors, vec![]);
    let want: Vec<SocketAddr> = (0..200u8)
        .map(|i| SocketAddr::from(([127, 0, 1, i], 7946)))
        .collect();
    assert_eq!(got.addrs, want);
    // A over UDP (truncated), A again over TCP, AAAA (none) over UDP.
    assert!(dns.queries() >= 3, "queries: {}", dns.queries());
}

/// Answers every query on `socket` with SERVFAIL: the query sent back
/// with QR set and RCODE 2.
async fn answer_servfail(socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if n < 12 {
            continue;
        }
        let mut reply = buf[..n].to_vec();
        reply[2] = 0x80 | (buf[2] & 0x79);
        reply[3] = 0x80 | 2;
        let _ = socket.send_to(&reply, peer).await;
    }
}

#[tokio::test]
async fn a_servfail_and_a_vanished_server_are_failures_not_empty_answers() {
    // Backends by name keep their last addresses when a lookup fails but
    // drop them on NXDOMAIN or an empty answer: the two must not look
    // alike.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let servfail = udp.local_addr().unwrap();
    let responder = tokio::spawn(answer_servfail(udp));
    let resolver = SeedResolver::new(Some(servfail), limits()).unwrap();
    let got = resolve(&resolver, &["lb.shoal.test:7946"]).await;
    assert_eq!(got.addrs, vec![]);
    assert!(
        matches!(&got.errors[..], [SeedError::Lookup { .. }]),
        "SERVFAIL: {:?}",
        got.errors
    );
    responder.abort();

    let dns = fleet_dns().await;
    let gone = dns.addr();
    let short = SeedLimits {
        query_timeout_ms: 200,
        ..limits()
    };
    let resolver = SeedResolver::new(Some(gone), short).unwrap();
    assert_eq!(
        resolve(&resolver, &["lb.shoal.test:7946"])
            .await
            .addrs
            .len(),
        3
    );
    drop(dns);
    let got = resolve(&resolver, &["lb.shoal.test:7946"]).await;
    assert_eq!(got.addrs, vec![]);
    assert!(
        matches!(
            &got.errors[..],
            [SeedError::Lookup { .. } | SeedError::Timeout { .. }]
        ),
        "server gone: {:?}",
        got.errors
    );
}
