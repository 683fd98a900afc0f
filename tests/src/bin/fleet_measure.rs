//! `fleet_measure`: measures a fleet of real `shoal` processes on loopback
//! and writes the figures as Markdown.
//!
//! ```text
//! cargo build --release -p shoal
//! cargo run --release -p shoal-e2e --bin fleet_measure -- \
//!     [--nodes 3,10] [--backends 100] [--samples 40] [--rounds 3] [--window-s 10] \
//!     [--out docs/fleet-figures.md]
//! ```
//!
//! For each fleet size N it measures:
//! 1. count propagation: one client connection opened (then closed)
//!    through one node, and the delay until every other node's `/status`
//!    `cluster_connections` shows it, polled every 5 ms (with 1 backend,
//!    and with fewer samples with each `--backends` count);
//! 2. failure detection: `kill -9` of one node (never the seed) and, on a
//!    fresh member, SIGTERM (a graceful leave), and the delay until every
//!    other node's `cluster.live_nodes` drops to N − 1;
//! 3. gossip cost: `shoal_gossip_{bytes,messages}_total` over an idle
//!    window, with 1 backend and with each `--backends` count.
//!
//! Every node runs with the production report interval (250 ms) and the
//! production health-check settings; progress goes to stderr, the Markdown
//! to stdout and to `--out`. Every process started is killed by PID when
//! its handle drops (the harness's `Drop`).

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use shoal_e2e::backend::{Backend, Behaviour, http_get};
use shoal_e2e::echo_round_trip;
use shoal_e2e::fleet::{Certs, fleet_config};
use shoal_e2e::node::Shoal;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Production `report_interval_ms` (the harness uses 100).
const REPORT_INTERVAL_MS: u64 = 250;
/// How often an observer's `/status` is read while waiting for a count.
const COUNT_POLL: Duration = Duration::from_millis(5);
/// How often an observer's `/status` is read while waiting for a member to go.
const MEMBER_POLL: Duration = Duration::from_millis(10);
/// An observer that has not seen a count change by then is a miss.
const COUNT_LIMIT: Duration = Duration::from_secs(5);
/// An observer that has not dropped a member by then is a miss.
const MEMBER_LIMIT: Duration = Duration::from_secs(30);
/// Bound on a fleet becoming steady.
const STEADY_LIMIT: Duration = Duration::from_secs(30);
/// Idle time after a fleet is steady, before gossip is counted: the join's
/// membership broadcasts have long been sent by then.
const SETTLE: Duration = Duration::from_secs(2);
/// Backends of the large gossip-cost fleet.
const MANY_BACKENDS: usize = 100;

#[derive(Debug, Clone)]
struct Args {
    nodes: Vec<usize>,
    /// Backend counts measured besides the single backend.
    many: Vec<usize>,
    samples: usize,
    rounds: usize,
    window: Duration,
    out: Option<PathBuf>,
}

fn usage() -> &'static str {
    "usage: fleet_measure [--nodes 3,10] [--backends 100] [--samples 40] [--rounds 3] [--window-s 10] [--out FILE]"
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        nodes: vec![3, 10],
        many: vec![MANY_BACKENDS],
        samples: 40,
        rounds: 3,
        window: Duration::from_secs(10),
        out: None,
    };
    let mut flags = shoal_e2e::node::Flags::new(usage());
    while let Some(flag) = flags.next_flag() {
        let mut value = || flags.value(&flag);
        match flag.as_str() {
            "--nodes" => {
                args.nodes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--nodes: a comma-separated list of fleet sizes")?;
                ensure!(
                    args.nodes.iter().all(|&n| (2..=32).contains(&n)),
                    "--nodes: each fleet size must be 2..=32"
                );
            }
            "--backends" => {
                args.many = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--backends: a comma-separated list of backend counts")?;
                ensure!(
                    args.many.iter().all(|&b| (1..=500).contains(&b)),
                    "--backends: each backend count must be 1..=500"
                );
            }
            "--samples" => {
                args.samples = value()?.parse().context("--samples")?;
                ensure!((1..=1000).contains(&args.samples), "--samples: 1..=1000");
            }
            "--rounds" => {
                args.rounds = value()?.parse().context("--rounds")?;
                ensure!((1..=10).contains(&args.rounds), "--rounds: 1..=10");
            }
            "--window-s" => {
                let s: u64 = value()?.parse().context("--window-s")?;
                ensure!((1..=120).contains(&s), "--window-s: 1..=120");
                args.window = Duration::from_secs(s);
            }
            "--out" => args.out = Some(PathBuf::from(value()?)),
            other => return Err(flags.unknown(other)),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    shoal_e2e::node::tool_main("fleet_measure", parse_args, run)
}

// ---------------------------------------------------------------------------
// Small helpers

macro_rules! progress {
    ($start:expr, $($arg:tt)*) => {
        eprintln!("[{:>6.1}s] {}", $start.elapsed().as_secs_f64(), format_args!($($arg)*))
    };
}

/// xorshift64*: jitter only, no need for a real generator.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Jitter(seed | 1)
    }

    /// Uniform-ish in `0..max`.
    fn below(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let nanos = max.as_nanos().max(1) as u64;
        Duration::from_nanos(r % nanos)
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A node config: the harness's fleet config with the production report
/// interval and the production health-check settings.
fn node_config(name: &str, backends: &[SocketAddr], seeds: &[String], certs: &Certs) -> String {
    let text = fleet_config(name, backends, any_port(), seeds, &certs.node(name), "", "");
    let fast_health = "  interval_ms = 200\n  timeout_ms = 100\n  rise = 2\n  fall = 2";
    let prod_health = "  interval_ms = 2000\n  timeout_ms = 1000\n  rise = 2\n  fall = 3";
    assert!(
        text.contains("report_interval_ms = 100\n") && text.contains(fast_health),
        "the harness's fleet_config changed; update fleet_measure:\n{text}"
    );
    text.replace(
        "report_interval_ms = 100\n",
        &format!("report_interval_ms = {REPORT_INTERVAL_MS}\n"),
    )
    .replace(fast_health, prod_health)
}

/// `GET /status`, parsed; errors instead of panics (nodes come and go).
async fn status(admin: SocketAddr) -> Result<Value> {
    let (code, body) = http_get(admin, "/status").await?;
    ensure!(code == 200, "/status answered {code}: {body}");
    Ok(serde_json::from_str(&body)?)
}

fn live_nodes(s: &Value) -> u64 {
    s["cluster"]["live_nodes"].as_u64().unwrap_or(1)
}

/// Σ `cluster_connections` over the backends of the first listener.
fn cluster_connections(s: &Value) -> Option<u64> {
    s["listeners"][0]["backends"]
        .as_array()?
        .iter()
        .map(|b| b["cluster_connections"].as_u64())
        .sum()
}

/// Whether this node holds a load report from each of `peers` peers.
fn has_all_reports(s: &Value, peers: usize) -> bool {
    let members = s["cluster"]["members"].as_array();
    members.is_some_and(|m| {
        m.len() == peers && m.iter().all(|m| m["report_age_ms"].as_u64().is_some())
    })
}

/// The value of the series `name` (with labels, exactly) in `/metrics`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// A fleet

/// N `shoal` processes; the first is every other node's seed.
struct Fleet {
    certs: Certs,
    backends: Vec<SocketAddr>,
    nodes: Vec<Shoal>,
    seed: String,
    next_name: usize,
}

impl Fleet {
    async fn start(n: usize, backends: &[SocketAddr], t: Instant) -> Result<Fleet> {
        let certs = Certs::new();
        let first = Shoal::start(&node_config("node-1", backends, &[], &certs)).await;
        let seed = first.cluster.context("no cluster address")?.to_string();
        let mut fleet = Fleet {
            certs,
            backends: backends.to_vec(),
            nodes: vec![first],
            seed,
            next_name: 2,
        };
        for _ in 1..n {
            fleet.add_node().await;
        }
        fleet.wait_steady(t).await?;
        Ok(fleet)
    }

    async fn add_node(&mut self) {
        let name = format!("node-{}", self.next_name);
        self.next_name += 1;
        let text = node_config(
            &name,
            &self.backends,
            std::slice::from_ref(&self.seed),
            &self.certs,
        );
        self.nodes.push(Shoal::start(&text).await);
    }

    fn admins(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .map(|n| n.admin.expect("admin endpoint"))
            .collect()
    }

    /// Until every node sees every node and holds a report from each peer.
    async fn wait_steady(&self, t: Instant) -> Result<()> {
        let n = self.nodes.len();
        let deadline = Instant::now() + STEADY_LIMIT;
        let began = Instant::now();
        loop {
            let mut steady = true;
            for admin in self.admins() {
                match status(admin).await {
                    Ok(s) if live_nodes(&s) == n as u64 && has_all_reports(&s, n - 1) => {}
                    _ => {
                        steady = false;
                        break;
                    }
                }
            }
            if steady {
                progress!(
                    t,
                    "  steady: {n} nodes see {n} members and {} reports each ({} ms)",
                    n - 1,
                    began.elapsed().as_millis()
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the fleet of {n} did not become steady within {STEADY_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls every admin in `observers` concurrently every `every` until
/// `done(status)`; returns per observer the delay from `t0` to the answer
/// that showed it (`None`: not within `limit`), and the `/status` round
/// trips seen.
async fn observe(
    observers: &[SocketAddr],
    t0: Instant,
    every: Duration,
    limit: Duration,
    done: Arc<dyn Fn(&Value) -> bool + Send + Sync>,
) -> (Vec<Option<Duration>>, Vec<Duration>) {
    let tasks: Vec<_> = observers
        .iter()
        .map(|&admin| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut rtts = Vec::new();
                loop {
                    let asked = Instant::now();
                    let s = status(admin).await;
                    let answered = Instant::now();
                    rtts.push(answered - asked);
                    if s.as_ref().is_ok_and(|s| done(s)) {
                        return (Some(answered - t0), rtts);
                    }
                    if answered - t0 > limit {
                        return (None, rtts);
                    }
                    tokio::time::sleep(every).await;
                }
            })
        })
        .collect();
    let mut delays = Vec::new();
    let mut rtts = Vec::new();
    for task in tasks {
        let (d, r) = task.await.expect("observer task");
        delays.push(d);
        rtts.extend(r);
    }
    (delays, rtts)
}

// ---------------------------------------------------------------------------
// 1. Count propagation

#[derive(Debug, Default)]
struct Propagation {
    n: usize,
    backends: usize,
    samples: usize,
    up: Vec<Duration>,
    down: Vec<Duration>,
    missed: usize,
    rtts: Vec<Duration>,
}

async fn propagation(
    fleet: &Fleet,
    samples: usize,
    jitter: &mut Jitter,
    t: Instant,
) -> Result<Propagation> {
    let n = fleet.nodes.len();
    let admins = fleet.admins();
    let mut out = Propagation {
        n,
        backends: fleet.backends.len(),
        samples,
        ..Default::default()
    };
    for sample in 0..samples {
        let origin = sample % n;
        let observers: Vec<SocketAddr> = admins
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != origin)
            .map(|(_, a)| *a)
            .collect();
        // A random phase against the report and gossip timers.
        tokio::time::sleep(jitter.below(Duration::from_millis(REPORT_INTERVAL_MS))).await;

        let mut client = TcpStream::connect(fleet.nodes[origin].listener("web")).await?;
        echo_round_trip(&mut client, format!("sample {sample}").as_bytes()).await?;
        let t0 = Instant::now();
        let (delays, rtts) = observe(
            &observers,
            t0,
            COUNT_POLL,
            COUNT_LIMIT,
            Arc::new(|s| cluster_connections(s) == Some(1)),
        )
        .await;
        out.rtts.extend(rtts);
        for d in delays {
            match d {
                Some(d) => out.up.push(d),
                None => out.missed += 1,
            }
        }

        // Close, and wait for the proxy's close (its FIN after the
        // backend's): the node has finished the connection then.
        client.shutdown().await?;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await?;
        let t0 = Instant::now();
        drop(client);
        let (delays, rtts) = observe(
            &observers,
            t0,
            COUNT_POLL,
            COUNT_LIMIT,
            Arc::new(|s| cluster_connections(s) == Some(0)),
        )
        .await;
        out.rtts.extend(rtts);
        for d in delays {
            match d {
                Some(d) => out.down.push(d),
                None => out.missed += 1,
            }
        }
        if (sample + 1) % 10 == 0 || sample + 1 == samples {
            progress!(
                t,
                "  propagation N={n} backends={}: {}/{samples} samples",
                out.backends,
                sample + 1
            );
        }
    }
    out.up.sort();
    out.down.sort();
    out.rtts.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------
// 2. Failure detection

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    /// SIGKILL: peers find out through SWIM probes and suspicion.
    Kill9,
    /// SIGTERM to an idle node: it announces its leave, and with nothing
    /// to drain it exits right after.
    Sigterm,
    /// SIGTERM to a node with one client connection open: it announces its
    /// leave and keeps running while it drains.
    SigtermDraining,
}

#[derive(Debug)]
struct Detection {
    n: usize,
    how: Departure,
    rounds: usize,
    delays: Vec<Duration>,
    missed: usize,
}

/// Takes node `victim` out (kill -9 or SIGTERM), measures how long every
/// other node takes to count N − 1 live nodes, then starts a replacement
/// and waits until the fleet of N is steady again.
async fn depart(
    fleet: &mut Fleet,
    victim: usize,
    how: Departure,
    out: &mut Detection,
    t: Instant,
) -> Result<()> {
    let n = fleet.nodes.len();
    assert!(victim != 0, "never the seed");
    let observers: Vec<SocketAddr> = fleet
        .admins()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, a)| a)
        .collect();
    let expect = (n - 1) as u64;
    let mut client = None;
    if how == Departure::SigtermDraining {
        let mut c = TcpStream::connect(fleet.nodes[victim].listener("web")).await?;
        echo_round_trip(&mut c, b"held open through the leave").await?;
        client = Some(c);
    }
    let t0 = Instant::now();
    match how {
        Departure::Kill9 => fleet.nodes[victim].kill9(),
        Departure::Sigterm | Departure::SigtermDraining => fleet.nodes[victim].sigterm(),
    }
    let (delays, _) = observe(
        &observers,
        t0,
        MEMBER_POLL,
        MEMBER_LIMIT,
        Arc::new(move |s| live_nodes(s) == expect),
    )
    .await;
    let mut seen: Vec<Duration> = delays.iter().flatten().copied().collect();
    seen.sort();
    progress!(
        t,
        "  {how:?} N={n}: {}/{} observers dropped the node after (ms) {:?}",
        seen.len(),
        observers.len(),
        seen.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    out.missed += delays.len() - seen.len();
    out.delays.extend(seen);
    // The client closes: the drain ends, and the node exits.
    drop(client);
    let mut gone = fleet.nodes.remove(victim);
    if how != Departure::Kill9 {
        let status = gone.wait_exit(Duration::from_secs(15)).await;
        if !status.success() {
            progress!(t, "  warning: the SIGTERMed node exited with {status:?}");
        }
        let announced = !gone.logs_with("leaving the fleet").is_empty();
        if !announced {
            progress!(
                t,
                "  note: the SIGTERMed node did not log `leaving the fleet`"
            );
        }
    }
    drop(gone);
    fleet.add_node().await;
    fleet.wait_steady(t).await
}

// ---------------------------------------------------------------------------
// 3. Gossip cost

#[derive(Debug)]
struct GossipCost {
    n: usize,
    backends: usize,
    window: Duration,
    /// Per node: bytes/s in, bytes/s out, packets/s in, packets/s out.
    per_node: Vec<[f64; 4]>,
    /// Largest `shoal_report_age_seconds` (oldest peer shard held) seen on
    /// any node during the window.
    oldest_report: Duration,
}

const SERIES: [&str; 4] = [
    "shoal_gossip_bytes_total{direction=\"in\"}",
    "shoal_gossip_bytes_total{direction=\"out\"}",
    "shoal_gossip_messages_total{direction=\"in\"}",
    "shoal_gossip_messages_total{direction=\"out\"}",
];

async fn read_counters(node: &Shoal) -> Result<(Instant, [f64; 4])> {
    let text = node.metrics().await;
    let at = Instant::now();
    let mut v = [0.0; 4];
    for (slot, series) in v.iter_mut().zip(SERIES) {
        *slot = metric(&text, series).with_context(|| format!("no {series} in /metrics"))?;
    }
    Ok((at, v))
}

async fn gossip_cost(fleet: &Fleet, window: Duration, t: Instant) -> Result<GossipCost> {
    tokio::time::sleep(SETTLE).await;
    let mut before = Vec::new();
    for node in &fleet.nodes {
        before.push(read_counters(node).await?);
    }
    let mut oldest = Duration::ZERO;
    let end = Instant::now() + window;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
        for node in &fleet.nodes {
            let age = metric(&node.metrics().await, "shoal_report_age_seconds").unwrap_or(0.0);
            oldest = oldest.max(Duration::from_secs_f64(age.max(0.0)));
        }
    }
    let mut per_node = Vec::new();
    for (node, (t_a, a)) in fleet.nodes.iter().zip(&before) {
        let (t_b, b) = read_counters(node).await?;
        let dt = (t_b - *t_a).as_secs_f64();
        let mut rates = [0.0; 4];
        for i in 0..4 {
            rates[i] = (b[i] - a[i]) / dt;
        }
        per_node.push(rates);
    }
    let out = GossipCost {
        n: fleet.nodes.len(),
        backends: fleet.backends.len(),
        window,
        per_node,
        oldest_report: oldest,
    };
    let (mean, _) = out.column(1);
    progress!(
        t,
        "  gossip N={} backends={}: {:.0} B/s out per node (mean)",
        out.n,
        out.backends,
        mean
    );
    Ok(out)
}

impl GossipCost {
    /// Mean and max over nodes of column `i`.
    fn column(&self, i: usize) -> (f64, f64) {
        let v: Vec<f64> = self.per_node.iter().map(|r| r[i]).collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max = v.iter().copied().fold(0.0, f64::max);
        (mean, max)
    }
}

// ---------------------------------------------------------------------------
// The run

async fn run(args: Args) -> Result<()> {
    let t = Instant::now();
    let mut jitter = Jitter::new();
    let mut props = Vec::new();
    let mut detections = Vec::new();
    let mut costs = Vec::new();

    for &n in &args.nodes {
        // One echo backend: gossip cost, propagation, then departures.
        progress!(t, "fleet of {n} with 1 backend: starting");
        let backend = Backend::start(Behaviour::Echo).await;
        let mut fleet = Fleet::start(n, &[backend.addr], t).await?;
        progress!(t, "  gossip cost, idle, {:?} window", args.window);
        costs.push(gossip_cost(&fleet, args.window, t).await?);
        progress!(t, "  count propagation, {} samples", args.samples);
        props.push(propagation(&fleet, args.samples, &mut jitter, t).await?);
        for how in [
            Departure::Kill9,
            Departure::Sigterm,
            Departure::SigtermDraining,
        ] {
            let mut d = Detection {
                n,
                how,
                rounds: args.rounds,
                delays: Vec::new(),
                missed: 0,
            };
            for round in 0..args.rounds {
                // Never the seed; a different member each round.
                let victim = 1 + (round * 3 + how as usize) % (n - 1);
                depart(&mut fleet, victim, how, &mut d, t).await?;
            }
            d.delays.sort();
            detections.push(d);
        }
        drop(fleet);
        drop(backend);

        for &count in &args.many {
            progress!(t, "fleet of {n} with {count} backends: starting");
            let mut many = Vec::new();
            for _ in 0..count {
                many.push(Backend::start(Behaviour::Echo).await);
            }
            let addrs: Vec<SocketAddr> = many.iter().map(|b| b.addr).collect();
            let fleet = Fleet::start(n, &addrs, t).await?;
            progress!(t, "  gossip cost, idle, {:?} window", args.window);
            costs.push(gossip_cost(&fleet, args.window, t).await?);
            let fewer = (args.samples / 4).max(1);
            progress!(t, "  count propagation, {fewer} samples");
            props.push(propagation(&fleet, fewer, &mut jitter, t).await?);
            drop(fleet);
            drop(many);
        }
    }

    let md = markdown(&args, &props, &detections, &costs, t.elapsed());
    print!("{md}");
    if let Some(path) = &args.out {
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
        progress!(t, "wrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Markdown

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> String {
    let cpus = command_output("nproc", &[]).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_owned())
    });
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = command_output("uname", &["-sr"]).unwrap_or_default();
    format!("`nproc` = {cpus} ({model}), {kernel}")
}

fn markdown(
    args: &Args,
    props: &[Propagation],
    detections: &[Detection],
    costs: &[GossipCost],
    took: Duration,
) -> String {
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo run --release -p shoal-e2e --bin fleet_measure -- {}",
        argv.join(" ")
    );
    let mut m = String::new();
    let w = &mut m;
    let _ = writeln!(w, "# Fleet figures\n");
    let _ = writeln!(
        w,
        "Generated by `fleet_measure` (`tests/src/bin/fleet_measure.rs`); do not edit by hand, \
         re-run `just fleet-measure`.\n"
    );
    let _ = writeln!(w, "- Date: {date}");
    let _ = writeln!(w, "- Machine: {}", machine());
    let _ = writeln!(
        w,
        "- Command: `cargo build --release -p shoal && {}` ({:.0} s)",
        command.trim_end(),
        took.as_secs_f64()
    );
    let _ = writeln!(
        w,
        "- Setup: every node is a real `shoal` process on 127.0.0.1 (all on this one machine, \
         sharing its CPUs with the backends and the measuring process), with one listener and \
         a `[cluster]` joined through node-1 as seed. Production settings: \
         `report_interval_ms = {REPORT_INTERVAL_MS}` (unchanged shards refreshed every 4 × that, \
         dropped after 12 × that), SWIM = foca's LAN config with decision 50's failure \
         detection (probe every 500 ms, indirect probes after 200 ms through 5 members, \
         suspicion 1.5 s for up to 10 nodes, gossip every 100 ms to 3 members), health checks \
         every 2 s (timeout 1 s, rise 2, fall 3). Join-only harness \
         values: `reseed_interval_ms = 300`, `warm_start_timeout_ms = 2000`."
    );
    let _ = writeln!(
        w,
        "- Percentiles are nearest-rank; \"missed\" counts observations that did not happen \
         within the bound ({} s for counts, {} s for members).\n",
        COUNT_LIMIT.as_secs(),
        MEMBER_LIMIT.as_secs()
    );

    // 1.
    let _ = writeln!(w, "## 1. Count propagation\n");
    let _ = writeln!(
        w,
        "One echo backend (and, with fewer samples, {} echo backends; a report shard holds \
         up to 40). Each sample opens one client connection through node *i* \
         (round-robin over the nodes, after a random 0–{REPORT_INTERVAL_MS} ms pause), does an \
         echo round trip, then reads every other node's `/status` concurrently every {} ms \
         until its `cluster_connections`, summed over the backends, is 1; then closes the connection \
         (shutdown, read to the proxy's FIN) and waits likewise for 0. One observation = one \
         (sample, change, observing node); the delay runs from the echo reply (or the FIN) to \
         the `/status` answer that showed the change, so it includes up to one poll period \
         plus one `/status` round trip (p50 and p99 of those round trips are in the last \
         column).\n",
        args.many
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        COUNT_POLL.as_millis()
    );
    let _ = writeln!(
        w,
        "| N | backends | change | samples | observations | p50 ms | p90 ms | p99 ms | max ms | missed | /status RTT p50 / p99 ms |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|");
    let mut props: Vec<&Propagation> = props.iter().collect();
    props.sort_by_key(|p| (p.backends, p.n));
    for p in props {
        let mut all: Vec<Duration> = p.up.iter().chain(&p.down).copied().collect();
        all.sort();
        for (label, v, missed) in [
            ("open (+1)", &p.up, None),
            ("close (−1)", &p.down, None),
            ("**both**", &all, Some(p.missed)),
        ] {
            let _ = writeln!(
                w,
                "| {} | {} | {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.n,
                p.backends,
                p.samples,
                v.len(),
                ms(pct(v, 0.50)),
                ms(pct(v, 0.90)),
                ms(pct(v, 0.99)),
                ms(pct(v, 1.0)),
                missed.map_or("".to_owned(), |m| m.to_string()),
                if missed.is_some() {
                    format!("{} / {}", ms(pct(&p.rtts, 0.5)), ms(pct(&p.rtts, 0.99)))
                } else {
                    String::new()
                },
            );
        }
    }
    let _ = writeln!(w);

    // 2.
    let _ = writeln!(w, "## 2. Failure detection and leave\n");
    let _ = writeln!(
        w,
        "In a steady fleet of N (1 backend), one node other than the seed is killed with \
         SIGKILL, or sent SIGTERM (which announces the leave, drains, then exits): idle, so it \
         exits at once, or with one client connection open, so it keeps running while it \
         drains. Each other node's `/status` is read every {} ms until `cluster.live_nodes` is \
         N − 1. Delays run from the signal. After each round a replacement node joins and the fleet is steady at N again \
         before the next round (a different victim each round).\n",
        MEMBER_POLL.as_millis()
    );
    let _ = writeln!(
        w,
        "| N | departure | rounds | observations | p50 s | p90 s | max s | over 1 s | missed |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
    for d in detections {
        let how = match d.how {
            Departure::Kill9 => "kill -9 (SWIM suspicion)",
            Departure::Sigterm => "SIGTERM, idle node (leave, then exit at once)",
            Departure::SigtermDraining => "SIGTERM, 1 connection open (leave, then drain)",
        };
        let _ = writeln!(
            w,
            "| {} | {how} | {} | {} | {} | {} | {} | {} | {} |",
            d.n,
            d.rounds,
            d.delays.len(),
            secs(pct(&d.delays, 0.5)),
            secs(pct(&d.delays, 0.9)),
            secs(pct(&d.delays, 1.0)),
            d.delays
                .iter()
                .filter(|x| **x > Duration::from_secs(1))
                .count(),
            d.missed
        );
    }
    let _ = writeln!(w);

    // 3.
    let _ = writeln!(w, "## 3. Gossip cost (idle fleet)\n");
    let window = costs.first().map_or(args.window, |c| c.window);
    let _ = writeln!(
        w,
        "A steady, idle fleet (no client connections; {} s after it became steady): \
         `shoal_gossip_bytes_total` and `shoal_gossip_messages_total` read on every node, \
         again {} s later. These count every datagram between nodes and its payload bytes (SWIM \
         membership messages with their piggybacked member updates, and the load-report \
         datagrams each node sends straight to every live member) as handed to and \
         received from the QUIC transport: **QUIC/UDP/IP overhead (headers, packet \
         protection, ACKs, handshakes) is excluded**, and so are the full-state syncs on QUIC \
         streams (one per node every 30 s, and at join). Per node, mean (max) over the \
         nodes. \"Oldest report\" is the largest `shoal_report_age_seconds` (age of the \
         oldest peer report shard held) seen on any node, read every 0.5 s during the window; \
         changed shards are sent every {REPORT_INTERVAL_MS} ms, unchanged ones every {} ms, \
         and a peer's copy is dropped after {} ms.\n",
        SETTLE.as_secs(),
        window.as_secs(),
        REPORT_INTERVAL_MS * 4,
        REPORT_INTERVAL_MS * 12
    );
    let _ = writeln!(
        w,
        "| N | backends | out B/s | in B/s | out packets/s | in packets/s | B/packet (out) | oldest report ms |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    let mut costs: Vec<&GossipCost> = costs.iter().collect();
    costs.sort_by_key(|c| (c.backends, c.n));
    for c in costs {
        let (bi, bi_max) = c.column(0);
        let (bo, bo_max) = c.column(1);
        let (pi, pi_max) = c.column(2);
        let (po, po_max) = c.column(3);
        let _ = writeln!(
            w,
            "| {} | {} | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.1} ({:.1}) | {:.1} ({:.1}) | {:.0} | {} |",
            c.n,
            c.backends,
            bo,
            bo_max,
            bi,
            bi_max,
            po,
            po_max,
            pi,
            pi_max,
            if po > 0.0 { bo / po } else { 0.0 },
            ms(c.oldest_report)
        );
    }
    m
}
