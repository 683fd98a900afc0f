//! A DNS server nobody here wrote: dnsmasq (Debian package `dnsmasq-base`) on
//! a loopback address, answering names from a hosts file of the test's.
//! A name listed on several lines gets all those A records in one
//! answer, which is DNS round-robin as operators deploy it; rewriting the
//! file and sending SIGHUP (dnsmasq re-reads `--addn-hosts` files and
//! clears its cache) changes the answer under a running fleet.
//!
//! It answers only from that file: `--conf-file=/dev/null` (not the
//! machine's configuration), `--no-hosts` (not the machine's
//! `/etc/hosts`), `--no-resolv` and no `--server` (nothing to forward a
//! query to), `--local=/test/` (a `.test` name not in the file is
//! NXDOMAIN at once). So no query for a made-up name leaves the machine.
//!
//! The server is killed by its PID when [`Dnsmasq`] is dropped.

use shoal_seeds::{SeedLimits, SeedResolver};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// The loopback address dnsmasq listens on (not 127.0.0.1, where the
/// harness binds everything else; not .53, which systemd-resolved takes).
pub const LISTEN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 153);

/// How long one test query waits for dnsmasq's answer.
const QUERY_TIMEOUT_MS: u64 = 500;

/// One running dnsmasq; killed (by its PID) when dropped.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    hosts: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Hosts-file lines for `records` (one `IP name` line each, so a name
/// given several times has several addresses).
fn hosts_text(records: &[(&str, Ipv4Addr)]) -> String {
    for (name, _) in records {
        assert!(
            name.ends_with(".test"),
            "test names stay under .test (RFC 6761), which dnsmasq answers locally: {name}"
        );
    }
    records
        .iter()
        .map(|(name, ip)| format!("{ip} {name}\n"))
        .collect()
}

/// The addresses `records` give each name, sorted.
fn expected(records: &[(&str, Ipv4Addr)]) -> Vec<(String, Vec<IpAddr>)> {
    let mut names: Vec<&str> = records.iter().map(|(n, _)| *n).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let mut ips: Vec<IpAddr> = records
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, ip)| IpAddr::V4(*ip))
                .collect();
            ips.sort();
            (name.to_owned(), ips)
        })
        .collect()
}

/// A UDP port free on [`LISTEN_IP`] for both UDP and TCP (dnsmasq binds
/// both), found by binding port 0.
fn free_port() -> u16 {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((LISTEN_IP, 0)).expect("bind a UDP port on loopback");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((LISTEN_IP, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on {LISTEN_IP} in 20 tries");
}

/// Log lines kept of one dnsmasq, at most (a 5-minute chaos run logs
/// about 150,000 with every query logged).
const LOG_LINES_MAX: usize = 2_000_000;

/// Runs `cmd` (dnsmasq at `bin`) with its log lines, read from stderr,
/// kept in the returned list (the first [`LOG_LINES_MAX`]), each after
/// the seconds since the start (dnsmasq's stderr lines carry no time).
fn spawn_logged(bin: &std::path::Path, mut cmd: Command) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    {
        let logs = logs.clone();
        let t0 = std::time::Instant::now();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let at = t0.elapsed().as_secs_f64();
                let mut logs = logs.lock().unwrap();
                match logs.len() {
                    n if n < LOG_LINES_MAX => logs.push(format!("{at:9.3}s {line}")),
                    LOG_LINES_MAX => logs.push(format!("{at:9.3}s (later lines not kept)")),
                    _ => {}
                }
            }
        });
    }
    (child, logs)
}

impl Dnsmasq {
    /// Starts dnsmasq serving `records` and waits (bounded by
    /// [`crate::WAIT`]) until it answers every name with its addresses.
    pub async fn start(records: &[(&str, Ipv4Addr)]) -> Dnsmasq {
        let bin = crate::needs::tool("dnsmasq", "dnsmasq-base");
        let dir = tempfile::tempdir().unwrap();
        // Started as root, dnsmasq drops to its own user, which must still
        // read the file when SIGHUP makes it read it again.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, hosts_text(records)).unwrap();
        std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let addr = SocketAddr::from((LISTEN_IP, port));
        let mut cmd = Command::new(&bin);
        cmd.arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--no-hosts")
            .arg("--no-resolv")
            .arg("--local=/test/")
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg("--bind-interfaces")
            .arg(format!("--listen-address={LISTEN_IP}"))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .arg("--log-facility=-")
            .arg("--log-queries");
        let (child, logs) = spawn_logged(&bin, cmd);
        let mut server = Dnsmasq {
            child,
            addr,
            hosts,
            logs,
            _dir: dir,
        };
        server.await_answers(records).await;
        server
    }

    /// Starts dnsmasq as the forwarding resolver an operator puts in
    /// front of the fleet's own DNS answer (decision 51): queries for
    /// `zone` (and below) go to every one of `servers` at once
    /// (`--all-servers`, the first answer wins), nothing is cached longer
    /// than the answer's TTL, and no other name is answered (`.test`
    /// names are NXDOMAIN, everything else REFUSED for want of a server).
    /// Each query is logged with its serial number and client
    /// (`--log-queries=extra`): what a node's reply became for a client.
    /// Waits until it answers a query (the servers may not be up yet).
    pub async fn start_forwarding(zone: &str, servers: &[SocketAddr]) -> Dnsmasq {
        let bin = crate::needs::tool("dnsmasq", "dnsmasq-base");
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "").unwrap();
        let port = free_port();
        let addr = SocketAddr::from((LISTEN_IP, port));
        let mut cmd = Command::new(&bin);
        cmd.arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--no-hosts")
            .arg("--no-resolv")
            .arg("--local=/test/")
            .arg("--all-servers")
            .arg("--no-negcache")
            .arg("--bind-interfaces")
            .arg(format!("--listen-address={LISTEN_IP}"))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .arg("--log-facility=-")
            .arg("--log-queries=extra");
        for s in servers {
            cmd.arg(format!("--server=/{zone}/{}#{}", s.ip(), s.port()));
        }
        let (child, logs) = spawn_logged(&bin, cmd);
        crate::eventually("dnsmasq to listen", crate::WAIT, || async {
            std::net::TcpStream::connect(addr).ok().map(|_| ())
        })
        .await;
        Dnsmasq {
            child,
            addr,
            hosts,
            logs,
            _dir: dir,
        }
    }

    /// `IP:port` to give as `cluster.resolver`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Rewrites the hosts file with `records`, sends SIGHUP, and waits
    /// (bounded by [`crate::WAIT`]) until dnsmasq answers with them.
    pub async fn set_records(&mut self, records: &[(&str, Ipv4Addr)]) {
        // A rename, so dnsmasq never reads a half-written file.
        let next = self.hosts.with_extension("next");
        std::fs::write(&next, hosts_text(records)).unwrap();
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&next, &self.hosts).unwrap();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        self.await_answers(records).await;
    }

    /// Asks dnsmasq for `name`'s addresses (A and AAAA), sorted.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let limits = SeedLimits {
            query_timeout_ms: QUERY_TIMEOUT_MS,
            query_attempts_max: 1,
            ..SeedLimits::default()
        };
        let resolver = SeedResolver::new(Some(self.addr), limits).map_err(|e| e.to_string())?;
        let resolved = resolver.resolve(&[format!("{name}:1")]).await;
        if !resolved.errors.is_empty() {
            let errors: Vec<String> = resolved.errors.iter().map(|e| e.to_string()).collect();
            return Err(errors.join("; "));
        }
        let mut ips: Vec<IpAddr> = resolved.addrs.iter().map(|a| a.ip()).collect();
        ips.sort();
        Ok(ips)
    }

    /// Everything dnsmasq has written to stderr so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    async fn await_answers(&mut self, records: &[(&str, Ipv4Addr)]) {
        let want = expected(records);
        let what = format!("dnsmasq at {} to answer {want:?}", self.addr);
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dnsmasq exited ({status}); its log: {:#?}", self.logs());
            }
            let mut answers = Vec::new();
            for (name, _) in &want {
                answers.push((name.clone(), self.lookup(name).await));
            }
            if answers
                .iter()
                .zip(&want)
                .all(|((_, got), (_, ips))| got.as_ref() == Ok(ips))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {:?} waiting for {what}; last answers {answers:?}; its log: {:#?}",
                crate::WAIT,
                self.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
