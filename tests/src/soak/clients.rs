//! The load: short-lived clients (connect, 1 to 3 echo round trips, close)
//! and long-lived ones (hold a connection, a round trip now and then),
//! each through a node drawn at random, all paced by one shared token
//! bucket of [`super::CONNECTS_PER_S_MAX`]. A client counts what it
//! attempted and what succeeded, and records every failure with its node,
//! its times and how it failed; the report explains failures afterwards
//! from the outages (see [`super::report`]).

use super::{
    CLOSE_TIMEOUT_MS, CONNECT_TIMEOUT_MS, LONG_GAP_MS_MAX, LONG_GAP_MS_MIN, NODES,
    PAYLOAD_BYTES_MAX, Params, ROUND_TRIP_TIMEOUT_MS, SHORT_PAUSE_MS_MAX,
};
use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};
use shoal_seeds::{SeedLimits, SeedResolver};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Connections one client task attempts, at most.
const ATTEMPTS_PER_CLIENT_MAX: u64 = 1_000_000;
/// Round trips on one long-lived connection, at most.
const LONG_ROUND_TRIPS_MAX: u32 = 10_000;
/// Failures kept with their details; more are only counted.
const FAILURES_KEPT_MAX: usize = 20_000;
/// Connection starts the pacer lets accumulate while nobody takes them.
const PACE_BURST: usize = 8;
/// After the stop, a client task that has not ended within this is
/// aborted and counted as stuck (its own timeouts should end it sooner).
const CLIENT_STOP_LIMIT_MS: u64 =
    CONNECT_TIMEOUT_MS + 2 * ROUND_TRIP_TIMEOUT_MS + CLOSE_TIMEOUT_MS + 1000;

/// Where in its life a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asking DNS for the node's address ([`Dial::Name`]).
    Resolve,
    Connect,
    /// The n-th round trip (1-based).
    RoundTrip(u32),
    /// FIN sent, waiting for the FIN back.
    Close,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Resolve => write!(f, "resolve"),
            Phase::Connect => write!(f, "connect"),
            Phase::RoundTrip(n) => write!(f, "round trip {n}"),
            Phase::Close => write!(f, "close"),
        }
    }
}

/// How long a client's DNS query waits for the answer ([`Dial::Name`]).
const RESOLVE_TIMEOUT_MS: u64 = 1000;

/// How a client finds the node of each connection.
#[derive(Debug, Clone)]
pub enum Dial {
    /// One of these listeners (node `i` at index `i`), drawn at random.
    Nodes(Vec<SocketAddr>),
    /// `seed` (`name:port`) resolved at one DNS server afresh for every
    /// connection (a client without a cache: a changed answer shows at
    /// once), one of the addresses drawn at random; `nodes` maps an
    /// address back to its node.
    Name {
        resolver: SeedResolver,
        seed: String,
        nodes: Vec<SocketAddr>,
    },
}

impl Dial {
    /// `name` at the DNS server `dns`, on the port of `nodes` (the same
    /// on every node, as behind a round-robin name).
    pub fn name(dns: SocketAddr, name: &str, nodes: Vec<SocketAddr>) -> Result<Dial> {
        let port = nodes.first().context("no node")?.port();
        anyhow::ensure!(
            nodes.iter().all(|n| n.port() == port),
            "one name needs one port on every node: {nodes:?}"
        );
        let limits = SeedLimits {
            query_timeout_ms: RESOLVE_TIMEOUT_MS,
            query_attempts_max: 1,
            ..SeedLimits::default()
        };
        Ok(Dial::Name {
            resolver: SeedResolver::new(Some(dns), limits)?,
            seed: format!("{name}:{port}"),
            nodes,
        })
    }

    /// The node (its index; [`NODES`] for an address of none) and the
    /// address of the next connection, or why none was found.
    async fn pick(&self, rng: &mut SmallRng) -> Result<(usize, SocketAddr), String> {
        match self {
            Dial::Nodes(nodes) => {
                let node = rng.random_range(0..nodes.len());
                Ok((node, nodes[node]))
            }
            Dial::Name {
                resolver,
                seed,
                nodes,
            } => {
                let got = resolver.resolve(std::slice::from_ref(seed)).await;
                if let Some(e) = got.errors.first() {
                    return Err(format!("dns: {e}"));
                }
                if got.addrs.is_empty() {
                    return Err("dns: no address".into());
                }
                let addr = got.addrs[rng.random_range(0..got.addrs.len())];
                let node = nodes.iter().position(|n| *n == addr).unwrap_or(NODES);
                Ok((node, addr))
            }
        }
    }
}

/// One failed connection.
#[derive(Debug, Clone)]
pub struct Failure {
    pub client: usize,
    pub long: bool,
    pub node: usize,
    /// From the start of the load.
    pub started: Duration,
    pub failed: Duration,
    pub phase: Phase,
    /// `refused`, `reset`, `eof`, `timeout`, `mismatch`, `broken-pipe`,
    /// `extra-bytes` or an `io::ErrorKind`.
    pub error: String,
}

/// What the clients did.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub round_trips: u64,
    pub failures: Vec<Failure>,
    /// Failures beyond the kept ones (`FAILURES_KEPT_MAX`), counted only.
    pub failures_dropped: u64,
    /// Client tasks that did not end after the stop.
    pub stuck: usize,
}

/// The running load.
#[derive(Debug)]
pub struct Load {
    clients: Vec<JoinHandle<()>>,
    pacer: JoinHandle<()>,
    tally: Arc<Mutex<Tally>>,
}

fn error_kind(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        K::ConnectionReset => "reset".into(),
        K::UnexpectedEof => "eof".into(),
        K::BrokenPipe => "broken-pipe".into(),
        K::TimedOut => "timeout".into(),
        K::ConnectionAborted => "aborted".into(),
        K::InvalidData => "mismatch".into(),
        k => format!("{k:?}"),
    }
}

async fn bounded<T>(
    ms: u64,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(Duration::from_millis(ms), f)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Writes a random payload and reads the same bytes back.
async fn round_trip(s: &mut TcpStream, rng: &mut SmallRng) -> std::io::Result<()> {
    let mut msg = vec![0u8; rng.random_range(1..=PAYLOAD_BYTES_MAX)];
    rng.fill_bytes(&mut msg);
    bounded(ROUND_TRIP_TIMEOUT_MS, async {
        s.write_all(&msg).await?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await?;
        if back != msg {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "echo differs",
            ));
        }
        Ok(())
    })
    .await
}

/// Sends FIN and waits for the FIN back, with no byte before it.
async fn close(mut s: TcpStream) -> std::io::Result<()> {
    bounded(CLOSE_TIMEOUT_MS, async {
        s.shutdown().await?;
        let mut rest = [0u8; 64];
        match s.read(&mut rest).await? {
            0 => Ok(()),
            n => Err(std::io::Error::other(format!("{n} bytes after the echo"))),
        }
    })
    .await
}

/// The shape of one client's connections.
#[derive(Debug, Clone, Copy)]
struct Shape {
    long: bool,
    hold: (Duration, Duration),
}

/// One connection; `Ok(round trips)` or the phase and error it failed with.
async fn connection(
    addr: SocketAddr,
    shape: Shape,
    rng: &mut SmallRng,
    stop: &mut watch::Receiver<bool>,
) -> (u32, Result<(), (Phase, String)>) {
    let mut s = match bounded(CONNECT_TIMEOUT_MS, TcpStream::connect(addr)).await {
        Ok(s) => s,
        Err(e) => return (0, Err((Phase::Connect, error_kind(&e)))),
    };
    let _ = s.set_nodelay(true);
    let mut done = 0u32;
    if shape.long {
        let hold = rng.random_range(shape.hold.0..=shape.hold.1);
        let until = Instant::now() + hold;
        while done < LONG_ROUND_TRIPS_MAX {
            if let Err(e) = round_trip(&mut s, rng).await {
                return (done, Err((Phase::RoundTrip(done + 1), error_kind(&e))));
            }
            done += 1;
            if Instant::now() >= until || *stop.borrow() {
                break;
            }
            let gap = Duration::from_millis(rng.random_range(LONG_GAP_MS_MIN..=LONG_GAP_MS_MAX));
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = stop.changed() => {}
            }
        }
    } else {
        for _ in 0..rng.random_range(1..=3u32) {
            if let Err(e) = round_trip(&mut s, rng).await {
                return (done, Err((Phase::RoundTrip(done + 1), error_kind(&e))));
            }
            done += 1;
        }
    }
    match close(s).await {
        Ok(()) => (done, Ok(())),
        Err(e) => (done, Err((Phase::Close, error_kind(&e)))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn client(
    id: usize,
    shape: Shape,
    seed: u64,
    dial: Arc<Dial>,
    pace: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    tally: Arc<Mutex<Tally>>,
    t0: Instant,
) {
    let mut rng =
        SmallRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for _ in 0..ATTEMPTS_PER_CLIENT_MAX {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            p = pace.acquire() => match p {
                Ok(p) => p.forget(),
                Err(_) => break,
            },
            _ = stop.changed() => break,
        }
        let started = t0.elapsed();
        let (node, (trips, result)) = match dial.pick(&mut rng).await {
            Ok((node, addr)) => (node, connection(addr, shape, &mut rng, &mut stop).await),
            Err(e) => (NODES, (0, Err((Phase::Resolve, e)))),
        };
        {
            let mut t = tally.lock().unwrap();
            t.attempted += 1;
            t.round_trips += u64::from(trips);
            match result {
                Ok(()) => t.succeeded += 1,
                Err((phase, error)) => {
                    t.failed += 1;
                    if t.failures.len() < FAILURES_KEPT_MAX {
                        t.failures.push(Failure {
                            client: id,
                            long: shape.long,
                            node,
                            started,
                            failed: t0.elapsed(),
                            phase,
                            error,
                        });
                    } else {
                        t.failures_dropped += 1;
                    }
                }
            }
        }
        if !shape.long {
            let pause = Duration::from_millis(rng.random_range(0..=SHORT_PAUSE_MS_MAX));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

impl Load {
    /// Starts `p.clients_short + p.clients_long` clients, each finding
    /// its nodes through `dial`.
    pub fn start(p: &Params, dial: Dial, t0: Instant, stop: watch::Receiver<bool>) -> Load {
        let pace = Arc::new(Semaphore::new(0));
        let pacer = {
            let pace = pace.clone();
            let every = Duration::from_secs_f64(1.0 / f64::from(p.connects_per_s));
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while !*stop.borrow() {
                    tick.tick().await;
                    if pace.available_permits() < PACE_BURST {
                        pace.add_permits(1);
                    }
                }
            })
        };
        let dial = Arc::new(dial);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let shapes = (0..p.clients_short)
            .map(|_| Shape {
                long: false,
                hold: (Duration::ZERO, Duration::ZERO),
            })
            .chain((0..p.clients_long).map(|_| Shape {
                long: true,
                hold: p.long_hold,
            }));
        let clients = shapes
            .enumerate()
            .map(|(id, shape)| {
                tokio::spawn(client(
                    id,
                    shape,
                    p.seed,
                    dial.clone(),
                    pace.clone(),
                    stop.clone(),
                    tally.clone(),
                    t0,
                ))
            })
            .collect();
        Load {
            clients,
            pacer,
            tally,
        }
    }

    /// Waits for every client to end (the caller has sent the stop) and
    /// returns the tally.
    pub async fn stop(self) -> Tally {
        let limit = Duration::from_millis(CLIENT_STOP_LIMIT_MS);
        let mut stuck = 0;
        for c in self.clients {
            let abort = c.abort_handle();
            if tokio::time::timeout(limit, c).await.is_err() {
                abort.abort();
                stuck += 1;
            }
        }
        self.pacer.abort();
        let mut t = self.tally.lock().unwrap().clone();
        t.stuck = stuck;
        t
    }
}

/// The wrong behaviour [`super::SelfCheck::Leak`]: a connection opened
/// through `node` (one round trip) and held by the caller.
pub async fn leak_one(node: SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(node).await.context("leak: connect")?;
    let mut rng = SmallRng::seed_from_u64(0);
    round_trip(&mut s, &mut rng)
        .await
        .context("leak: round trip")?;
    Ok(s)
}
