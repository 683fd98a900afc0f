//! `dns_failover`: what the fleet's own DNS answer (decision 51) saves
//! clients when a node dies. Three real `shoal` processes take clients on
//! 127.0.0.41–43 (one port), a backend echoes; two groups of clients
//! connect over and over for `--seconds`, each picking a random address
//! per connect: the *static* group from the fixed list of three (DNS
//! that does not follow the fleet), the *fleet* group from the answer it
//! re-resolves every `--resolve-ms` from node 1's `[dns]` server. At
//! `--kill-at-s` node 3 is killed with SIGKILL (by its PID); the tool
//! counts the connects that fail after it, per group, and when the last
//! one failed.
//!
//! ```text
//! cargo build --release -p shoal
//! cargo run --release -p shoal-e2e --bin dns_failover -- \
//!     [--clients 8] [--seconds 20] [--kill-at-s 5] [--resolve-ms 1000] [--rounds 1]
//! ```
//!
//! Production fleet timings (report interval 250 ms, so a silent node's
//! report expires after 3 s; SWIM's LAN settings). Each client makes at
//! most one connect per [`PACE`], each bounded by [`CONNECT_TIMEOUT`], so
//! the load is bounded in count and time. A connect to the dead node's
//! address is refused at once on loopback; on a real network it would
//! wait for a timeout instead, which makes each failure costlier, not
//! rarer. Markdown goes to stdout, progress to stderr.

use anyhow::{Context, Result, bail, ensure};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use shoal_e2e::backend::{Backend, Behaviour};
use shoal_e2e::dnsq::{Transport, query};
use shoal_e2e::echo_round_trip;
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::node::Shoal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Production `report_interval_ms` (the harness uses 100).
const REPORT_INTERVAL_MS: u64 = 250;
/// One connect per client per this, at most.
const PACE: Duration = Duration::from_millis(50);
/// A connect (and its echo) that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The fleet's name.
const NAME: &str = "lb.failover.test.";
/// Bound on the fleet answering with all three addresses.
const STEADY_LIMIT: Duration = Duration::from_secs(30);
/// Tries at finding a port free on all three addresses.
const PORT_TRIES_MAX: usize = 32;

#[derive(Debug, Clone)]
struct Args {
    clients: usize,
    seconds: u64,
    kill_at_s: u64,
    resolve_ms: u64,
    rounds: usize,
}

fn usage() -> &'static str {
    "usage: dns_failover [--clients 8] [--seconds 20] [--kill-at-s 5] [--resolve-ms 1000] [--rounds 1]"
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        clients: 8,
        seconds: 20,
        kill_at_s: 5,
        resolve_ms: 1000,
        rounds: 1,
    };
    let mut flags = shoal_e2e::node::Flags::new(usage());
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value(&flag);
        match flag.as_str() {
            "--clients" => args.clients = value()?.parse().context("--clients")?,
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--kill-at-s" => args.kill_at_s = value()?.parse().context("--kill-at-s")?,
            "--resolve-ms" => args.resolve_ms = value()?.parse().context("--resolve-ms")?,
            "--rounds" => args.rounds = value()?.parse().context("--rounds")?,
            other => return Err(flags.unknown(other)),
        }
    }
    ensure!((1..=64).contains(&args.clients), "--clients: 1..=64");
    ensure!((2..=300).contains(&args.seconds), "--seconds: 2..=300");
    ensure!(
        args.kill_at_s >= 1 && args.kill_at_s < args.seconds,
        "--kill-at-s: 1 to --seconds - 1"
    );
    ensure!(
        (100..=60_000).contains(&args.resolve_ms),
        "--resolve-ms: 100..=60000"
    );
    ensure!((1..=10).contains(&args.rounds), "--rounds: 1..=10");
    Ok(args)
}

fn main() -> ExitCode {
    shoal_e2e::node::tool_main("dns_failover", parse_args, run)
}

fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 41 + i as u8)
}

/// A TCP port free on all three hosts (a fleet behind one name shares one).
fn common_port() -> Result<u16> {
    for _ in 0..PORT_TRIES_MAX {
        let first = std::net::TcpListener::bind((host(0), 0))?;
        let port = first.local_addr()?.port();
        let rest: Vec<_> = (1..3)
            .map(|i| std::net::TcpListener::bind((host(i), port)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return Ok(port);
        }
    }
    bail!("no port free on {}, {} and {}", host(0), host(1), host(2))
}

fn node_config(
    i: usize,
    port: u16,
    backend: SocketAddr,
    seed: Option<String>,
    certs: &Certs,
) -> String {
    let name = format!("node-{}", i + 1);
    let text = fleet_config(
        &name,
        &[backend],
        "127.0.0.1:0".parse().unwrap(),
        &seed.into_iter().collect::<Vec<_>>(),
        &certs.node(&name),
        "",
        "",
    )
    .replacen(
        "bind = \"127.0.0.1:0\"",
        &format!("bind = \"{}:{port}\"", host(i)),
        1,
    )
    .replace(
        "report_interval_ms = 100\n",
        &format!("report_interval_ms = {REPORT_INTERVAL_MS}\n"),
    );
    format!(
        "{text}\n[dns]\nbind = \"127.0.0.1:0\"\nallow_ephemeral_port = true\nname = \"{NAME}\"\nttl_s = 1\n"
    )
}

/// One client's connect outcomes: (time since the kill, ok); negative
/// before it.
type Outcomes = Vec<(f64, bool)>;

/// How a client finds the addresses it picks from.
#[derive(Clone)]
enum Source {
    Static(Vec<Ipv4Addr>),
    /// Re-resolved every `every` from `server`.
    Fleet {
        server: SocketAddr,
        every: Duration,
    },
}

/// xorshift64*: picks only.
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

async fn resolve(server: SocketAddr) -> Option<Vec<Ipv4Addr>> {
    let r = query(server, NAME, RecordType::A, Transport::Udp)
        .await
        .ok()?;
    (r.code == ResponseCode::NoError && !r.v4.is_empty()).then_some(r.v4)
}

async fn client(
    k: usize,
    source: Source,
    port: u16,
    until: Instant,
    killed_at: Arc<Mutex<Option<Instant>>>,
) -> Outcomes {
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15 ^ ((k as u64 + 1) * 0x1000_0001));
    let mut out = Vec::new();
    let (mut addrs, mut next_resolve) = match &source {
        Source::Static(a) => (a.clone(), None),
        Source::Fleet { server, .. } => (
            resolve(*server).await.unwrap_or_default(),
            Some(Instant::now()),
        ),
    };
    while Instant::now() < until {
        if let (Source::Fleet { server, every }, Some(at)) = (&source, next_resolve)
            && Instant::now() >= at
        {
            // A failed resolution keeps the previous answer, as a
            // resolver serving stale data would.
            if let Some(fresh) = resolve(*server).await {
                addrs = fresh;
            }
            next_resolve = Some(at + *every);
        }
        let started = Instant::now();
        let ok = if addrs.is_empty() {
            false
        } else {
            let to = SocketAddr::from((addrs[pick.below(addrs.len())], port));
            tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut s = TcpStream::connect(to).await?;
                echo_round_trip(&mut s, b"ping").await
            })
            .await
            .is_ok_and(|r| r.is_ok())
        };
        let since_kill = match *killed_at.lock().unwrap() {
            Some(t) if started >= t => (started - t).as_secs_f64(),
            Some(t) => -(t - started).as_secs_f64(),
            None => -1.0,
        };
        out.push((since_kill, ok));
        tokio::time::sleep_until(started + PACE).await;
    }
    out
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    connects: usize,
    failed_before: usize,
    failed_after: usize,
    last_failure_s: Option<f64>,
}

fn figures(all: &[Outcomes]) -> Figures {
    let mut f = Figures::default();
    for (t, ok) in all.iter().flatten() {
        f.connects += 1;
        if !ok {
            if *t < 0.0 {
                f.failed_before += 1;
            } else {
                f.failed_after += 1;
                f.last_failure_s = Some(f.last_failure_s.map_or(*t, |l: f64| l.max(*t)));
            }
        }
    }
    f
}

async fn round(args: &Args, n: usize) -> Result<(Figures, Figures, f64)> {
    let backend = Backend::start(Behaviour::Echo).await;
    let certs = Certs::new();
    let port = common_port()?;
    let first = Shoal::start(&node_config(0, port, backend.addr, None, &certs)).await;
    let seed = first.cluster.context("cluster address")?.to_string();
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(
            Shoal::start(&node_config(
                i,
                port,
                backend.addr,
                Some(seed.clone()),
                &certs,
            ))
            .await,
        );
    }
    let server = nodes[0].dns.context("dns address")?;
    let steady = Instant::now() + STEADY_LIMIT;
    while resolve(server).await.map(|a| a.len()) != Some(3) {
        ensure!(
            Instant::now() < steady,
            "the fleet never answered three addresses"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "round {n}: fleet steady on port {port}; {} clients per group",
        args.clients
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let killed_at = Arc::new(Mutex::new(None));
    let fixed: Vec<Ipv4Addr> = (0..3).map(host).collect();
    let every = Duration::from_millis(args.resolve_ms);
    let mut statics = Vec::new();
    let mut fleets = Vec::new();
    for k in 0..args.clients {
        statics.push(tokio::spawn(client(
            k,
            Source::Static(fixed.clone()),
            port,
            until,
            killed_at.clone(),
        )));
        fleets.push(tokio::spawn(client(
            k + 1000,
            Source::Fleet { server, every },
            port,
            until,
            killed_at.clone(),
        )));
    }
    tokio::time::sleep_until(start + Duration::from_secs(args.kill_at_s)).await;
    *killed_at.lock().unwrap() = Some(Instant::now());
    let killed = Instant::now();
    nodes[2].kill9();
    eprintln!("round {n}: killed node-3 ({}) with SIGKILL", host(2));
    // When the fleet's answer stopped holding the dead node.
    let mut left_answer = None;
    while Instant::now() < until {
        if left_answer.is_none() && resolve(server).await.is_some_and(|a| !a.contains(&host(2))) {
            left_answer = Some(killed.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut s = Vec::new();
    for h in statics {
        s.push(h.await?);
    }
    let mut f = Vec::new();
    for h in fleets {
        f.push(h.await?);
    }
    let left = left_answer.context("the dead node never left the answer")?;
    Ok((figures(&s), figures(&f), left))
}

async fn run(args: Args) -> Result<()> {
    let mut rows = Vec::new();
    for n in 1..=args.rounds {
        let (s, f, left) = round(&args, n).await?;
        eprintln!("round {n}: static {s:?}; fleet {f:?}; left the answer after {left:.2} s");
        rows.push((s, f, left));
    }
    println!(
        "`dns_failover --clients {} --seconds {} --kill-at-s {} --resolve-ms {}`: 3 nodes, SIGKILL of one at {} s; \
         each client connects every {} ms to a random address of its list.\n",
        args.clients,
        args.seconds,
        args.kill_at_s,
        args.resolve_ms,
        args.kill_at_s,
        PACE.as_millis()
    );
    println!(
        "| round | group | connects | failed before the kill | failed after it | last failure after the kill | dead node out of the answer after |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, (s, f, left)) in rows.iter().enumerate() {
        for (name, x) in [("static list", s), ("fleet DNS", f)] {
            println!(
                "| {} | {name} | {} | {} | {} | {} | {} |",
                n + 1,
                x.connects,
                x.failed_before,
                x.failed_after,
                x.last_failure_s
                    .map_or("none".into(), |t| format!("{t:.2} s")),
                if name == "fleet DNS" {
                    format!("{left:.2} s")
                } else {
                    "never".into()
                },
            );
        }
    }
    Ok(())
}
