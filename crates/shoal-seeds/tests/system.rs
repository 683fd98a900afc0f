//! The system resolver path (no `cluster.resolver`): a seed name resolves
//! as `getaddrinfo(3)` resolves it. The test runs itself again inside a
//! private mount namespace (`unshare --mount`) whose `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/nsswitch.conf` are files it wrote and
//! bind-mounted, so no query for its made-up name leaves the machine:
//! `resolv.conf` names a DNS server on loopback that this test binds and
//! never answers.
//!
//! Needs root and util-linux's `unshare` (CI runs as root); without them the
//! test fails and says why, rather than passing without having run.

use shoal_seeds::{SeedLimits, SeedResolver};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const INSIDE: &str = "SHOAL_SEEDS_TEST_INSIDE_NAMESPACE";
const NAME: &str = "lb.shoal.test";
/// The silent DNS server `resolv.conf` names.
const SILENT_DNS: &str = "127.0.0.77";

#[test]
fn a_hosts_file_name_resolves_to_all_its_addresses_without_waiting_for_dns() {
    if std::env::var_os(INSIDE).is_some() {
        inside();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // IPv4 only: a resolver that also asked DNS for AAAA would wait for
    // the silent server.
    let hosts = file(
        "hosts",
        &format!("127.0.0.1 localhost\n127.0.0.11 {NAME}\n127.0.0.12 {NAME}\n127.0.0.13 {NAME}\n"),
    );
    let resolv = file(
        "resolv.conf",
        &format!("nameserver {SILENT_DNS}\noptions timeout:5 attempts:2\n"),
    );
    let nsswitch = file("nsswitch.conf", "hosts: files dns\n");
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount --bind '{}' /etc/hosts && mount --bind '{}' /etc/resolv.conf && mount --bind '{}' /etc/nsswitch.conf && exec '{}' --exact {} --nocapture",
        hosts.display(),
        resolv.display(),
        nsswitch.display(),
        exe.display(),
        "a_hosts_file_name_resolves_to_all_its_addresses_without_waiting_for_dns",
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env(INSIDE, "1")
        .output()
        .expect("this test needs util-linux's `unshare` (root, a private mount namespace)");
    assert!(
        out.status.success(),
        "inside the namespace: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the inner run did not run the test: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn inside() {
    // Bound but silent: a query to it waits for resolv.conf's timeout.
    let silent = std::net::UdpSocket::bind((SILENT_DNS, 53)).expect("bind the silent DNS server");
    silent.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One second for the whole seed: far below the 5 s a DNS query to
    // the silent server would take.
    let limits = SeedLimits {
        query_timeout_ms: 1_000,
        query_attempts_max: 1,
        ..SeedLimits::default()
    };
    let resolver = SeedResolver::new(None, limits).unwrap();
    let resolved = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            resolver.resolve(&[format!("{NAME}:7946")]),
        )
        .await
        .expect("the resolver bounds itself")
    });
    assert!(resolved.errors.is_empty(), "{:?}", resolved.errors);
    let want: Vec<SocketAddr> = ["127.0.0.11:7946", "127.0.0.12:7946", "127.0.0.13:7946"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(resolved.addrs, want);
    // The hosts file answered: not one query went to DNS (a resolver that
    // also asks for the AAAA record the file lacks would have sent one and
    // waited for it).
    let mut buf = [0u8; 512];
    match silent.recv_from(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a DNS query reached the silent server: {other:?}"),
    }
}
