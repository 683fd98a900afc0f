//! The soak: a fleet of [`NODES`] real `shoal` processes in front of
//! [`BACKENDS`] echo backends on 127.0.0.1, under continuous client load,
//! with nodes and backends killed and restarted on a schedule drawn from a
//! seed. It samples every node's descriptors, memory and counts as it
//! goes, and at the end stops the load, waits for the fleet to settle and
//! checks that nothing is left: no connection counted on any node, none
//! open at any backend, no descriptor more than a node held at the start.
//!
//! Used by `tests/src/bin/soak.rs` (`just soak MINUTES`, minutes long,
//! release build) and `tests/tests/soak.rs` (a short run in `cargo test`).
//!
//! ## Layout
//! - [`plan`]: the churn schedule, a pure function of the seed.
//! - [`fleet`]: the node and backend slots, the churn they undergo (kill
//!   -9, SIGTERM, backend kill, each restarted on the same address), and
//!   the outages that this churn causes, with their start and end.
//! - [`clients`]: the load, a bounded pool of short and long-lived echo
//!   clients, paced to [`CONNECTS_PER_S_MAX`]; every failure is recorded
//!   with its times and afterwards explained by an outage, or not.
//! - [`sample`]: `/proc/PID/fd`, `VmRSS` and `/status` of every node.
//! - [`report`]: slopes, the verdict and the Markdown report.
//!
//! Every bound is a named constant below, with its unit last; the report
//! repeats them.

pub mod clients;
pub mod fleet;
pub mod plan;
pub mod report;
pub mod sample;

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// Fleet size.
pub const NODES: usize = 5;
/// Echo backends behind every node.
pub const BACKENDS: usize = 4;
/// The node that is never churned: its one process lives through the
/// whole run, so its slopes are a leak signal undisturbed by restarts.
pub const CONTROL_NODE: usize = 0;

/// Concurrent short-lived clients (connect, 1 to 3 echo round trips,
/// close), at most.
pub const CLIENTS_SHORT_MAX: usize = 12;
/// Concurrent long-lived clients (hold a connection, one round trip every
/// [`LONG_GAP_MS_MAX`] at most), at most.
pub const CLIENTS_LONG_MAX: usize = 8;
/// New client connections per second, over all clients, at most.
pub const CONNECTS_PER_S_MAX: u32 = 40;
/// Echo payload of one round trip, bytes, at most.
pub const PAYLOAD_BYTES_MAX: usize = 4096;
/// Pause of a short client between two connections, at most.
pub const SHORT_PAUSE_MS_MAX: u64 = 200;
/// Gap between two round trips of a long-lived client: from, to.
pub const LONG_GAP_MS_MIN: u64 = 200;
pub const LONG_GAP_MS_MAX: u64 = 1000;
/// A client connect, a round trip, the close (FIN out, FIN back) that
/// takes longer than this failed (`timeout`).
pub const CONNECT_TIMEOUT_MS: u64 = 3000;
pub const ROUND_TRIP_TIMEOUT_MS: u64 = 5000;
pub const CLOSE_TIMEOUT_MS: u64 = 5000;

/// `drain_timeout_ms` of every node: a SIGTERM ends in at most this.
pub const DRAIN_TIMEOUT_MS: u64 = 3000;
/// A SIGTERMed node that has not exited this long after its drain
/// timeout is a finding (and is then killed).
pub const EXIT_MARGIN_MS: u64 = 10_000;
/// A restarted node that does not serve (warm start over) this long
/// after its `ready` event is a finding.
pub const SERVING_LIMIT_MS: u64 = 20_000;
/// The fleet must be whole (every node sees [`NODES`] members and holds
/// a report from each peer) within this at the start.
pub const STEADY_LIMIT_MS: u64 = 30_000;
/// After the load stops: the bound on every count reaching zero.
pub const SETTLE_LIMIT_MS: u64 = 30_000;
/// Between two looks while waiting for a state.
pub const POLL_MS: u64 = 100;
/// A `/status` request that has not been answered by then failed.
pub const STATUS_TIMEOUT_MS: u64 = 2000;

/// Bound on the least-squares slope of a node's descriptors beyond the
/// two each open connection holds, per minute after warm-up (a leak of
/// one descriptor a minute fails the run).
pub const FD_SLOPE_MAX_PER_MIN: f64 = 1.0;
/// The fd slope is only enforced over at least this much sampled time
/// (summed over a node's processes, warm-up samples excluded): over less,
/// a few descriptors of noise make a large slope. The end check below
/// holds on any run.
pub const SLOPE_SPAN_MIN_S: u64 = 180;
/// After the settle, a node's quiet descriptor count may exceed that of
/// its first process before any load by at most this many.
pub const FD_END_EXCESS_MAX: usize = 0;
/// An RSS slope above this (KiB per minute after warm-up) is flagged in
/// the report, not failed: allocators keep freed memory, so RSS is a
/// hint where descriptors are proof.
pub const RSS_SLOPE_WARN_KIB_PER_MIN: f64 = 256.0;

/// With [`Params::detect`]: the bound on every node seeing a death (a
/// node gone from its members, a backend down) or a partition (each
/// side holding only its own members); beyond it, a finding.
pub const DETECT_LIMIT_MS: u64 = 30_000;
/// After a heal, the bound on every node holding every member again.
/// Nobody in a partition is alone, so the halves meet through foca's
/// gossip or, at the latest, the core's announce to seeds not held
/// alive (every `MISSING_SEED_ANNOUNCE_INTERVAL`, 30 s); beyond it, a
/// finding.
pub const REASSEMBLE_LIMIT_MS: u64 = 45_000;

/// Churn events in one run, at most.
pub const CHURN_EVENTS_MAX: usize = 500;
/// Samples in one run, at most.
pub const SAMPLES_MAX: usize = 2000;

/// A wrong behaviour the soak can be told to have, to see its end check
/// fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfCheck {
    /// One client opens a connection after the load stops and holds it
    /// through the end check.
    Leak,
    /// The end check runs at once, without waiting for the fleet to settle.
    NoSettle,
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    /// Load and churn time (the settle comes after).
    pub duration: Duration,
    pub sample_every: Duration,
    /// Mean gap between two churn events (each gap is 0.5 to 1.5 times it).
    pub churn_every: Duration,
    /// No churn event starts earlier than this, nor later than this
    /// before the end.
    pub churn_margin: Duration,
    /// How long a long-lived client holds one connection: from, to.
    pub long_hold: (Duration, Duration),
    pub clients_short: usize,
    pub clients_long: usize,
    pub connects_per_s: u32,
    pub self_check: Option<SelfCheck>,
    /// How often each kind of churn is drawn.
    pub mix: plan::Mix,
    /// Each fault waits until every node that can see it has detected
    /// it (bounded by [`DETECT_LIMIT_MS`]) before the fault is undone,
    /// and the time is recorded: the chaos run's detection times.
    pub detect: bool,
}

impl Params {
    /// The long run: `minutes` of load, a sample a minute, a churn event
    /// every 30 s on average.
    pub fn long(seed: u64, duration: Duration) -> Params {
        Params {
            seed,
            duration,
            sample_every: Duration::from_secs(60),
            churn_every: Duration::from_secs(30),
            churn_margin: Duration::from_secs(10),
            long_hold: (Duration::from_secs(5), Duration::from_secs(30)),
            clients_short: CLIENTS_SHORT_MAX,
            clients_long: CLIENTS_LONG_MAX,
            connects_per_s: CONNECTS_PER_S_MAX,
            self_check: None,
            mix: plan::Mix::SOAK,
            detect: false,
        }
    }

    /// The `cargo test` run: 35 s, a sample every 5 s, a few churn events,
    /// half the clients.
    pub fn short(seed: u64) -> Params {
        Params {
            seed,
            duration: Duration::from_secs(35),
            sample_every: Duration::from_secs(5),
            churn_every: Duration::from_secs(8),
            churn_margin: Duration::from_secs(4),
            long_hold: (Duration::from_secs(2), Duration::from_secs(8)),
            clients_short: CLIENTS_SHORT_MAX / 2,
            clients_long: CLIENTS_LONG_MAX / 2,
            connects_per_s: CONNECTS_PER_S_MAX / 2,
            self_check: None,
            mix: plan::Mix::SOAK,
            detect: false,
        }
    }

    fn check(&self, net: &Net) -> Result<()> {
        self.mix.check()?;
        anyhow::ensure!(
            self.mix.partition == 0 || matches!(net, Net::Lab { .. }),
            "partitions need the nodes on hosts of their own (Net::Lab)"
        );
        anyhow::ensure!(
            self.clients_short <= CLIENTS_SHORT_MAX && self.clients_long <= CLIENTS_LONG_MAX,
            "clients: {} short and {} long, at most {CLIENTS_SHORT_MAX} and {CLIENTS_LONG_MAX}",
            self.clients_short,
            self.clients_long
        );
        anyhow::ensure!(
            (1..=CONNECTS_PER_S_MAX).contains(&self.connects_per_s),
            "connects_per_s {}: 1..={CONNECTS_PER_S_MAX}",
            self.connects_per_s
        );
        anyhow::ensure!(
            !self.sample_every.is_zero()
                && self.duration.as_secs_f64() / self.sample_every.as_secs_f64()
                    < SAMPLES_MAX as f64,
            "duration {:?} / sample_every {:?}: at most {SAMPLES_MAX} samples",
            self.duration,
            self.sample_every
        );
        anyhow::ensure!(
            self.long_hold.0 <= self.long_hold.1 && !self.churn_every.is_zero(),
            "long_hold {:?} or churn_every {:?}",
            self.long_hold,
            self.churn_every
        );
        Ok(())
    }
}

/// A seed drawn from the clock (printed by whoever uses it).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(1)
}

/// The seed in `$var` (a test run again with a printed seed), else
/// [`clock_seed`].
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(clock_seed)
}

/// Progress to stderr, with the time since `t0`.
pub(crate) fn progress(t0: Instant, msg: impl std::fmt::Display) {
    eprintln!("[{:>7.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// Where the processes run and how clients find the nodes.
#[derive(Debug, Clone)]
pub enum Net {
    /// Everything on 127.0.0.1 (ports 0); each client connection goes to
    /// a node drawn at random.
    Loopback,
    /// Each node on a host of its own ([`crate::netlab`]), backends on
    /// the bridge; each client connection resolves `name` at the DNS
    /// server `dns` and goes to one of its addresses drawn at random.
    Lab {
        lab: std::sync::Arc<std::sync::Mutex<crate::netlab::Lab>>,
        dns: std::net::SocketAddr,
        name: String,
        /// Each node also answers `name` itself (`[dns]` on port 53 of its
        /// host, decision 51), for a resolver that forwards to them.
        fleet_dns: bool,
    },
}

/// Runs the soak on loopback ([`run_on`] with [`Net::Loopback`]).
pub async fn run(params: Params) -> Result<report::Outcome> {
    run_on(params, Net::Loopback).await
}

/// Runs the soak. `Err` is a harness failure (a port that cannot be
/// bound, a fleet that never forms); what the soak finds in shoal is in
/// the [`report::Outcome`], whose [`report::Outcome::passed`] is the verdict.
pub async fn run_on(params: Params, net: Net) -> Result<report::Outcome> {
    params.check(&net)?;
    let t0 = Instant::now();
    progress(t0, format_args!("SEED={}", params.seed));
    let plan = plan::plan(&params);
    progress(
        t0,
        format_args!(
            "{} churn events planned over {:?}",
            plan.len(),
            params.duration
        ),
    );

    let fleet = fleet::Fleet::start(t0, &net, params.detect)
        .await
        .context("starting the fleet")?;
    let baseline = fleet.quiet_fds().await;
    progress(
        t0,
        format_args!("quiet descriptors before load: {baseline:?}"),
    );

    // Load, sampler and churn share one clock origin: `load_t0`.
    let load_t0 = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dial = match &net {
        Net::Loopback => clients::Dial::Nodes(fleet.listeners()),
        Net::Lab { dns, name, .. } => clients::Dial::name(*dns, name, fleet.listeners())?,
    };
    let load = clients::Load::start(&params, dial, load_t0, stop_rx.clone());
    let sampler = tokio::spawn(sample::sampler(
        fleet.clone(),
        params.sample_every,
        params.duration,
        load_t0,
        stop_rx.clone(),
    ));
    let churn = tokio::spawn(fleet.clone().churn(plan.clone(), load_t0, stop_rx));

    tokio::time::sleep_until(tokio::time::Instant::from_std(load_t0 + params.duration)).await;
    // The sampler took every sample due before the end; this is the one
    // due at the end, still under load.
    let last_index = (0..SAMPLES_MAX)
        .take_while(|&i| params.sample_every * (i as u32) < params.duration)
        .count();
    let last = sample::sample_all(&fleet, load_t0, last_index, false).await;
    progress(t0, "stopping the load and the churn");
    let _ = stop_tx.send(true);
    let events = churn.await.context("churn task")?;
    let tally = load.stop().await;
    let mut samples = sampler.await.context("sampler task")?;
    samples.extend(last);

    let leaked = match params.self_check {
        Some(SelfCheck::Leak) => Some(clients::leak_one(fleet.listeners()[CONTROL_NODE]).await?),
        _ => None,
    };
    let settle = if params.self_check == Some(SelfCheck::NoSettle) {
        fleet.end_state().await
    } else {
        fleet
            .settle(Duration::from_millis(SETTLE_LIMIT_MS), t0)
            .await
    };
    samples.extend(sample::sample_all(&fleet, load_t0, last_index + 1, true).await);
    let end_fds = fleet.quiet_fds().await;
    drop(leaked);
    let outages = fleet.outages();
    let logs = fleet.finish().await;
    progress(t0, "done");
    Ok(report::Outcome::new(
        params, plan, events, outages, tally, samples, settle, baseline, end_fds, logs,
    ))
}
