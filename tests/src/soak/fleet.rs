//! The soak's processes: [`NODES`] node slots and [`BACKENDS`] backend
//! slots, each of which keeps its addresses across restarts; the churn
//! that kills and restarts them; and the outages it causes, which the
//! report uses to explain client failures.

use super::plan::{Churn, Planned};
use super::{
    BACKENDS, DETECT_LIMIT_MS, DRAIN_TIMEOUT_MS, EXIT_MARGIN_MS, NODES, Net, POLL_MS,
    REASSEMBLE_LIMIT_MS, SERVING_LIMIT_MS, STATUS_TIMEOUT_MS, STEADY_LIMIT_MS, progress,
};
use crate::backend::{Backend, Behaviour, http_get};
use crate::fleet::{Certs, NodeCerts, fleet_config, pinned};
use crate::netlab::{self, Lab};
use crate::node::Shoal;
use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};

/// The nodes' log filter: per-connection lines only when they are
/// warnings (refusals), so that a long run's logs stay small in memory.
const LOG_LEVEL: &str = "info,shoal::conn=warn";
/// Attempts to restart a node or a backend on its address.
const RESTART_TRIES: usize = 3;
/// A panic message (a node that did not become ready carries all its
/// logs) is cut to this in findings.
const MESSAGE_CHARS_MAX: usize = 1500;
/// Tries at two equal readings of a node's descriptors.
const QUIET_TRIES: usize = 100;

/// What was down, and when, from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub target: Target,
    /// Just before the signal or the kill.
    pub from: Duration,
    /// When the restarted node serves again (warm start over) or the
    /// backend listens again; `None` if it never came back.
    pub to: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Node(usize),
    Backend(usize),
    /// The fleet split (from the cut to the reassembly). It explains no
    /// client failure: clients and backends reach every node throughout.
    Partition,
}

/// One churn event as it went.
#[derive(Debug, Clone)]
pub struct Done {
    pub planned: Planned,
    /// When it started (later than planned if the one before ran long).
    pub started: Duration,
    /// From the signal to serving (or listening) again.
    pub took: Duration,
    pub note: String,
    /// Something shoal did wrong during it.
    pub finding: Option<String>,
    /// With [`super::Params::detect`]: from the kill (or the cut) until
    /// every node that can see it had detected it.
    pub detected: Option<Duration>,
    /// A partition: from the heal until every node held every member.
    pub reassembled: Option<Duration>,
}

/// What an event measured, filled in as it goes.
#[derive(Debug, Default)]
struct Times {
    detected: Option<Duration>,
    reassembled: Option<Duration>,
}

/// `a; b`, or whichever is not empty.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}; {b}"),
    }
}

/// The state at the end check.
#[derive(Debug, Clone, Default)]
pub struct Settle {
    /// Whatever was not back to zero (or not whole) at the last look.
    pub problems: Vec<String>,
    /// How long until nothing was left, if it came to that.
    pub took: Option<Duration>,
}

/// WARN and ERROR log lines per node: `LEVEL message [end=…]` → count.
pub type LogTally = BTreeMap<String, BTreeMap<String, usize>>;

#[derive(Debug)]
struct NodeSlot {
    name: String,
    /// What runs the process on the node's host (`ip netns exec …`).
    wrapper: Vec<String>,
    certs: NodeCerts,
    listener: SocketAddr,
    admin: SocketAddr,
    cluster: SocketAddr,
    process: Option<Shoal>,
    incarnation: u32,
}

#[derive(Debug)]
struct Inner {
    /// Holds the CA's directory for the whole run.
    _certs: Certs,
    nodes: Mutex<Vec<NodeSlot>>,
    backends: Mutex<Vec<Option<Backend>>>,
    backend_addrs: Vec<SocketAddr>,
    listeners: Vec<SocketAddr>,
    admins: Vec<SocketAddr>,
    /// The nodes' hosts, with [`Net::Lab`].
    lab: Option<Arc<std::sync::Mutex<Lab>>>,
    /// The name each node answers with `[dns]` (see [`Net::Lab`]).
    fleet_dns: Option<String>,
    detect: bool,
    outages: std::sync::Mutex<Vec<Outage>>,
    logs: std::sync::Mutex<LogTally>,
}

/// What the sampler needs of a running node.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub pid: u32,
    pub admin: SocketAddr,
    pub incarnation: u32,
}

/// The soak's fleet; clones share it.
#[derive(Debug, Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The harness's fleet config with the soak's drain timeout, its log
/// filter's needs, (on a restart or a host of its own) the node's fixed
/// addresses, and with `fleet_dns` a `[dns]` answer for that name on
/// port [`FLEET_DNS_PORT`] of the listener's IP.
fn node_config(
    slot_name: &str,
    backends: &[SocketAddr],
    cluster: SocketAddr,
    seeds: &[String],
    certs: &NodeCerts,
    fixed: Option<(SocketAddr, SocketAddr)>,
    fleet_dns: Option<&str>,
) -> Result<String> {
    let mut text = fleet_config(slot_name, backends, cluster, seeds, certs, "", "");
    let drain = "drain_timeout_ms = 10000\n";
    ensure!(
        text.contains(drain),
        "the harness's fleet_config changed; update the soak:\n{text}"
    );
    text = text.replace(drain, &format!("drain_timeout_ms = {DRAIN_TIMEOUT_MS}\n"));
    if let Some((listener, admin_addr)) = fixed {
        text = pinned(&text, listener, admin_addr)?;
        if let Some(name) = fleet_dns {
            text.push_str(&format!(
                "\n[dns]\nbind = \"{}\"\nname = \"{name}.\"\nttl_s = 1\n",
                SocketAddr::new(listener.ip(), FLEET_DNS_PORT)
            ));
        }
    }
    Ok(text)
}

/// Where each node of a lab answers the fleet's name with `[dns]`.
pub const FLEET_DNS_PORT: u16 = 53;

/// The text of a panic, cut to [`MESSAGE_CHARS_MAX`].
fn panic_text(e: tokio::task::JoinError) -> String {
    let text = match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(e) => e.to_string(),
    };
    text.chars().take(MESSAGE_CHARS_MAX).collect()
}

/// Starts `shoal run` on `config` with the soak's log filter. The harness
/// panics when a node does not become ready: caught here, it is an error.
async fn spawn_node(config: String, wrapper: Vec<String>) -> Result<Shoal, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let path = dir.path().join("shoal.toml");
    std::fs::write(&path, config).map_err(|e| format!("write {}: {e}", path.display()))?;
    let args = vec![
        "run".to_owned(),
        "-c".to_owned(),
        path.display().to_string(),
        "--log-level".to_owned(),
        LOG_LEVEL.to_owned(),
    ];
    tokio::spawn(async move { Shoal::spawn_with(&wrapper, args, dir).await })
        .await
        .map_err(panic_text)
}

/// `GET /status`, parsed, bounded by [`STATUS_TIMEOUT_MS`].
pub async fn status(admin: SocketAddr) -> Result<Value> {
    let (code, body) = tokio::time::timeout(
        Duration::from_millis(STATUS_TIMEOUT_MS),
        http_get(admin, "/status"),
    )
    .await
    .map_err(|_| anyhow!("/status of {admin}: no answer in {STATUS_TIMEOUT_MS} ms"))??;
    ensure!(code == 200, "/status of {admin} answered {code}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// The entries of `/proc/PID/fd`.
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Whether a node's `/status` shows all [`NODES`] members, each with a
/// report held.
fn is_whole(s: &Value) -> bool {
    let members = s["cluster"]["members"].as_array();
    s["cluster"]["live_nodes"].as_u64() == Some(NODES as u64)
        && members
            .is_some_and(|m| m.len() == NODES - 1 && m.iter().all(|m| m["report_age_ms"].is_u64()))
}

/// The names of the members a node's `/status` lists, sorted.
fn member_names(s: &Value) -> Vec<String> {
    let mut names: Vec<String> = s["cluster"]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Whether a node's `/status` says backend `addr` is down.
fn backend_is_down(s: &Value, addr: SocketAddr) -> bool {
    let addr = addr.to_string();
    s["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["backends"].as_array().into_iter().flatten())
        .any(|b| b["address"].as_str() == Some(addr.as_str()) && b["up"] == false)
}

fn tally_logs(into: &mut LogTally, name: &str, node: &Shoal) {
    let per = into.entry(name.to_owned()).or_default();
    for l in node.logs() {
        let level = l["level"].as_str().unwrap_or("");
        if !matches!(level, "WARN" | "ERROR") {
            continue;
        }
        let mut key = format!("{level} {}", l["message"].as_str().unwrap_or("?"));
        if let Some(end) = l["end"].as_str() {
            key.push_str(&format!(" end={end}"));
        }
        *per.entry(key).or_default() += 1;
    }
}

impl Fleet {
    /// [`BACKENDS`] echo backends, then [`NODES`] nodes, each seeded with
    /// the ones before it (on loopback) or with every other (on a lab's
    /// hosts, where every address is known beforehand); returns once the
    /// fleet is whole. `detect`: see [`super::Params::detect`].
    pub async fn start(t0: Instant, net: &Net, detect: bool) -> Result<Fleet> {
        let certs = Certs::new();
        let lab = match net {
            Net::Loopback => None,
            Net::Lab { lab, .. } => Some(lab.clone()),
        };
        let fleet_dns = match net {
            Net::Lab {
                fleet_dns: true,
                name,
                ..
            } => Some(name.clone()),
            _ => None,
        };
        let backend_ip = match lab {
            None => std::net::Ipv4Addr::LOCALHOST,
            Some(_) => netlab::HOST_IP,
        };
        let mut backends = Vec::new();
        for _ in 0..BACKENDS {
            let at = SocketAddr::from((backend_ip, 0));
            backends.push(Some(Backend::start_at(at, Behaviour::Echo).await));
        }
        let backend_addrs: Vec<SocketAddr> = backends.iter().flatten().map(|b| b.addr).collect();
        let mut nodes: Vec<NodeSlot> = Vec::new();
        for i in 0..NODES {
            let name = format!("node-{}", i + 1);
            let node_certs = certs.node(&name);
            let (text, wrapper) = match &lab {
                None => {
                    let seeds: Vec<String> = nodes.iter().map(|n| n.cluster.to_string()).collect();
                    let text = node_config(
                        &name,
                        &backend_addrs,
                        any_port(),
                        &seeds,
                        &node_certs,
                        None,
                        None,
                    )?;
                    (text, Vec::new())
                }
                Some(lab) => {
                    let seeds: Vec<String> = (0..NODES)
                        .filter(|&j| j != i)
                        .map(|j| netlab::cluster_addr(j).to_string())
                        .collect();
                    let fixed = (netlab::listener_addr(i), netlab::admin_addr(i));
                    let cluster = netlab::cluster_addr(i);
                    let text = node_config(
                        &name,
                        &backend_addrs,
                        cluster,
                        &seeds,
                        &node_certs,
                        Some(fixed),
                        fleet_dns.as_deref(),
                    )?;
                    (text, lab.lock().unwrap().wrapper(i))
                }
            };
            let shoal = spawn_node(text, wrapper.clone())
                .await
                .map_err(|e| anyhow!("{name} did not start: {e}"))?;
            nodes.push(NodeSlot {
                wrapper,
                listener: shoal.listener("web"),
                admin: shoal.admin.context("no admin address")?,
                cluster: shoal.cluster.context("no cluster address")?,
                name,
                certs: node_certs,
                process: Some(shoal),
                incarnation: 0,
            });
        }
        let fleet = Fleet {
            inner: Arc::new(Inner {
                _certs: certs,
                listeners: nodes.iter().map(|n| n.listener).collect(),
                admins: nodes.iter().map(|n| n.admin).collect(),
                lab,
                fleet_dns,
                detect,
                nodes: Mutex::new(nodes),
                backends: Mutex::new(backends),
                backend_addrs,
                outages: Default::default(),
                logs: Default::default(),
            }),
        };
        fleet.wait_steady(t0).await?;
        Ok(fleet)
    }

    /// Each node's client listener; the same across restarts.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.inner.listeners.clone()
    }

    pub fn backend_addrs(&self) -> Vec<SocketAddr> {
        self.inner.backend_addrs.clone()
    }

    /// The running process of each node slot.
    pub async fn running(&self) -> Vec<Option<Running>> {
        self.inner
            .nodes
            .lock()
            .await
            .iter()
            .map(|n| {
                n.process.as_ref().map(|p| Running {
                    pid: p.pid(),
                    admin: n.admin,
                    incarnation: n.incarnation,
                })
            })
            .collect()
    }

    /// Until every node sees every node and holds a report from each peer.
    async fn wait_steady(&self, t0: Instant) -> Result<()> {
        let began = Instant::now();
        let limit = Duration::from_millis(STEADY_LIMIT_MS);
        loop {
            let mut whole = true;
            for &admin in &self.inner.admins {
                whole &= status(admin).await.is_ok_and(|s| is_whole(&s));
            }
            if whole {
                progress(
                    t0,
                    format_args!("fleet of {NODES} whole after {:?}", began.elapsed()),
                );
                return Ok(());
            }
            if began.elapsed() > limit {
                bail!("the fleet of {NODES} was not whole within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Each running node's descriptor count once two readings
    /// [`POLL_MS`] apart agree (a health check's socket comes and goes).
    pub async fn quiet_fds(&self) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        for r in self.running().await {
            let Some(r) = r else {
                out.push(None);
                continue;
            };
            let mut last = fd_count(r.pid);
            let mut quiet = None;
            for _ in 0..QUIET_TRIES {
                tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
                let now = fd_count(r.pid);
                if now == last {
                    quiet = now;
                    break;
                }
                last = now;
            }
            out.push(quiet);
        }
        out
    }

    pub fn outages(&self) -> Vec<Outage> {
        self.inner.outages.lock().unwrap().clone()
    }

    fn outage_begins(&self, target: Target, t0: Instant) -> usize {
        let mut o = self.inner.outages.lock().unwrap();
        o.push(Outage {
            target,
            from: t0.elapsed(),
            to: None,
        });
        o.len() - 1
    }

    fn outage_ends(&self, i: usize, t0: Instant) {
        self.inner.outages.lock().unwrap()[i].to = Some(t0.elapsed());
    }

    /// Runs `plan` in order, each event when due (or at once, if the one
    /// before ran late), until the plan ends or `stop`. An event under
    /// way when `stop` comes is finished: the fleet ends whole.
    pub async fn churn(
        self,
        plan: Vec<Planned>,
        t0: Instant,
        mut stop: watch::Receiver<bool>,
    ) -> Vec<Done> {
        let mut done = Vec::new();
        for planned in plan {
            let due = tokio::time::Instant::from_std(t0 + planned.at);
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stop.changed() => break,
            }
            let started = t0.elapsed();
            progress(t0, format_args!("churn: {}", planned.what));
            let mut times = Times::default();
            let (note, finding) = match planned.what {
                Churn::Kill9 { node, down_ms } => {
                    self.node_down(node, false, down_ms, t0, &mut times).await
                }
                Churn::Sigterm { node, down_ms } => {
                    self.node_down(node, true, down_ms, t0, &mut times).await
                }
                Churn::Backend { backend, down_ms } => {
                    self.backend_down(backend, down_ms, t0, &mut times).await
                }
                Churn::Partition { side, hold_ms } => {
                    self.partition(side, hold_ms, t0, &mut times).await
                }
            };
            if !note.is_empty() {
                progress(t0, format_args!("  {note}"));
            }
            if let Some(f) = &finding {
                progress(t0, format_args!("  finding: {f}"));
            }
            done.push(Done {
                planned,
                started,
                took: t0.elapsed() - started,
                note,
                finding,
                detected: times.detected,
                reassembled: times.reassembled,
            });
        }
        done
    }

    /// Takes node `i` down (SIGKILL, or SIGTERM and its exit), then starts
    /// it again on its addresses after `down_ms`.
    async fn node_down(
        &self,
        i: usize,
        term: bool,
        down_ms: u64,
        t0: Instant,
        times: &mut Times,
    ) -> (String, Option<String>) {
        let (taken, name) = {
            let mut nodes = self.inner.nodes.lock().await;
            (nodes[i].process.take(), nodes[i].name.clone())
        };
        let Some(mut process) = taken else {
            return (format!("{name} was not running"), None);
        };
        let outage = self.outage_begins(Target::Node(i), t0);
        let signalled = Instant::now();
        let mut note = String::new();
        let mut finding = None;
        if term {
            process.sigterm();
            let limit = Duration::from_millis(DRAIN_TIMEOUT_MS + EXIT_MARGIN_MS);
            let mut exit = None;
            while exit.is_none() && signalled.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(POLL_MS / 2)).await;
                exit = process.try_exit();
            }
            match exit {
                Some(s) if s.success() => {
                    note = format!("exited 0 after {} ms", signalled.elapsed().as_millis())
                }
                Some(s) => finding = Some(format!("{name} exited with {s} after SIGTERM")),
                None => {
                    finding = Some(format!("{name} had not exited {limit:?} after SIGTERM"));
                    process.kill9();
                }
            }
        } else {
            process.kill9();
        }
        // Let the reader thread take the last lines before they are counted.
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        tally_logs(&mut self.inner.logs.lock().unwrap(), &name, &process);
        drop(process);
        // The slot is empty now: every running node is another.
        let late = format!(
            "{name} still a member somewhere {DETECT_LIMIT_MS} ms after its {}",
            if term { "SIGTERM" } else { "kill" }
        );
        let gone = |_: usize, s: &Value| !member_names(s).contains(&name);
        let seen = "gone from every member list";
        finding = finding.or(self
            .detect(signalled, gone, times, &mut note, seen, late)
            .await);
        tokio::time::sleep(Duration::from_millis(down_ms)).await;

        match self.restart_node(i).await {
            Ok(serving_ms) => {
                self.outage_ends(outage, t0);
                note = join(
                    &note,
                    &format!(
                        "serving again {} ms after the signal (warm start {serving_ms} ms)",
                        signalled.elapsed().as_millis()
                    ),
                );
            }
            Err(e) => finding = Some(format!("{name} did not come back: {e}")),
        }
        (note, finding)
    }

    /// Starts node `i` on its old addresses, seeded with every other node,
    /// and waits until it serves. Returns the warm start's length in ms.
    async fn restart_node(&self, i: usize) -> Result<u128, String> {
        let (text, name, wrapper) = {
            let nodes = self.inner.nodes.lock().await;
            let n = &nodes[i];
            let seeds: Vec<String> = nodes
                .iter()
                .filter(|o| o.name != n.name)
                .map(|o| o.cluster.to_string())
                .collect();
            let text = node_config(
                &n.name,
                &self.inner.backend_addrs,
                n.cluster,
                &seeds,
                &n.certs,
                Some((n.listener, n.admin)),
                self.inner.fleet_dns.as_deref(),
            )
            .map_err(|e| e.to_string())?;
            (text, n.name.clone(), n.wrapper.clone())
        };
        let mut errors = Vec::new();
        for _ in 0..RESTART_TRIES {
            match spawn_node(text.clone(), wrapper.clone()).await {
                Ok(shoal) => {
                    let ready = Instant::now();
                    let admin = shoal.admin;
                    {
                        let mut nodes = self.inner.nodes.lock().await;
                        nodes[i].process = Some(shoal);
                        nodes[i].incarnation += 1;
                    }
                    let limit = Duration::from_millis(SERVING_LIMIT_MS);
                    while ready.elapsed() < limit {
                        if let Some(a) = admin
                            && status(a)
                                .await
                                .is_ok_and(|s| s["cluster"]["phase"] == "serving")
                        {
                            return Ok(ready.elapsed().as_millis());
                        }
                        tokio::time::sleep(Duration::from_millis(POLL_MS / 2)).await;
                    }
                    return Err(format!("{name} did not serve within {limit:?} of ready"));
                }
                Err(e) => {
                    errors.push(e);
                    tokio::time::sleep(Duration::from_millis(POLL_MS * 5)).await;
                }
            }
        }
        Err(errors.join(" | "))
    }

    /// Kills backend `b` and starts it again on its port after `down_ms`.
    async fn backend_down(
        &self,
        b: usize,
        down_ms: u64,
        t0: Instant,
        times: &mut Times,
    ) -> (String, Option<String>) {
        let taken = self.inner.backends.lock().await[b].take();
        let Some(backend) = taken else {
            return (format!("backend-{} was not running", b + 1), None);
        };
        let outage = self.outage_begins(Target::Backend(b), t0);
        let open = backend.open.load(std::sync::atomic::Ordering::SeqCst);
        let killed = Instant::now();
        let addr = backend.kill().await;
        let mut note = format!("{open} connections open at the kill");
        let late = format!(
            "backend-{} not down on every node {DETECT_LIMIT_MS} ms after its kill",
            b + 1
        );
        let down = |_: usize, s: &Value| backend_is_down(s, addr);
        let seen = "down on every node";
        let finding = self
            .detect(killed, down, times, &mut note, seen, late)
            .await;
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        let mut errors = Vec::new();
        for _ in 0..RESTART_TRIES {
            match tokio::spawn(Backend::start_at(addr, Behaviour::Echo)).await {
                Ok(again) => {
                    self.inner.backends.lock().await[b] = Some(again);
                    self.outage_ends(outage, t0);
                    return (note, finding);
                }
                Err(e) => {
                    errors.push(panic_text(e));
                    tokio::time::sleep(Duration::from_millis(POLL_MS * 5)).await;
                }
            }
        }
        (
            String::new(),
            Some(format!(
                "backend-{} could not listen on {addr} again (not shoal's doing): {}",
                b + 1,
                errors.join(" | ")
            )),
        )
    }

    /// Polls `/status` of every running node until `holds(node, status)`
    /// for each; the time since `since`, or `None` after
    /// [`DETECT_LIMIT_MS`] from now.
    async fn until_all(
        &self,
        since: Instant,
        holds: impl Fn(usize, &Value) -> bool,
    ) -> Option<Duration> {
        self.until_all_for(since, DETECT_LIMIT_MS, holds).await
    }

    /// With [`super::Params::detect`]: [`Fleet::until_all`] for `holds`,
    /// its time into `times` and "`seen` after N ms" into `note`, or
    /// `Some(late)` (a finding) past the bound. Without: nothing.
    async fn detect(
        &self,
        since: Instant,
        holds: impl Fn(usize, &Value) -> bool,
        times: &mut Times,
        note: &mut String,
        seen: &str,
        late: String,
    ) -> Option<String> {
        if !self.inner.detect {
            return None;
        }
        match self.until_all(since, holds).await {
            Some(d) => {
                times.detected = Some(d);
                *note = join(note, &format!("{seen} after {} ms", d.as_millis()));
                None
            }
            None => Some(late),
        }
    }

    async fn until_all_for(
        &self,
        since: Instant,
        limit_ms: u64,
        holds: impl Fn(usize, &Value) -> bool,
    ) -> Option<Duration> {
        let began = Instant::now();
        loop {
            let mut all = true;
            for (j, r) in self.running().await.iter().enumerate() {
                let Some(r) = r else { continue };
                all &= status(r.admin).await.is_ok_and(|s| holds(j, &s));
                if !all {
                    break;
                }
            }
            if all {
                return Some(since.elapsed());
            }
            if began.elapsed() > Duration::from_millis(limit_ms) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Cuts the nodes of `side` from the rest, waits until each side
    /// holds only its own members (with detection), holds the cut
    /// `hold_ms`, heals, and waits until every node holds every member.
    async fn partition(
        &self,
        side: u32,
        hold_ms: u64,
        t0: Instant,
        times: &mut Times,
    ) -> (String, Option<String>) {
        let Some(lab) = self.inner.lab.clone() else {
            return (String::new(), Some("a partition needs Net::Lab".into()));
        };
        let a: Vec<usize> = (0..NODES).filter(|&n| side & (1 << n) != 0).collect();
        let b: Vec<usize> = (0..NODES).filter(|&n| side & (1 << n) == 0).collect();
        let outage = self.outage_begins(Target::Partition, t0);
        let cut = Instant::now();
        lab.lock().unwrap().partition(&[a.clone(), b.clone()]);
        let mut note = String::new();
        let own_side = |j: usize, s: &Value| {
            let mine = if a.contains(&j) { &a } else { &b };
            let want: Vec<String> = mine
                .iter()
                .filter(|&&n| n != j)
                .map(|n| format!("node-{}", n + 1))
                .collect();
            member_names(s) == want
        };
        let late = format!("the sides did not see each other gone within {DETECT_LIMIT_MS} ms");
        let seen = "each side alone";
        let mut finding = self
            .detect(cut, own_side, times, &mut note, seen, late)
            .await;
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        lab.lock().unwrap().heal();
        let healed = Instant::now();
        match self
            .until_all_for(healed, REASSEMBLE_LIMIT_MS, |_, s| is_whole(s))
            .await
        {
            Some(d) => {
                self.outage_ends(outage, t0);
                times.reassembled = Some(d);
                note = join(
                    &note,
                    &format!("whole again {} ms after the heal", d.as_millis()),
                );
            }
            None => {
                finding = Some(format!(
                    "the fleet was not whole {REASSEMBLE_LIMIT_MS} ms after the heal"
                ))
            }
        }
        (note, finding)
    }

    /// What is left now: a node not running or not whole, a count not
    /// zero on a node, a connection open at a backend.
    pub async fn end_state(&self) -> Settle {
        let mut problems = Vec::new();
        let running = self.running().await;
        for (i, r) in running.iter().enumerate() {
            let name = format!("node-{}", i + 1);
            let Some(r) = r else {
                problems.push(format!("{name}: not running"));
                continue;
            };
            let s = match status(r.admin).await {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let live = s["cluster"]["live_nodes"].as_u64().unwrap_or(0);
            if live != NODES as u64 {
                problems.push(format!("{name}: {live} live members, not {NODES}"));
            }
            for l in s["listeners"].as_array().into_iter().flatten() {
                let active = l["active_connections"].as_i64().unwrap_or(-1);
                if active != 0 {
                    problems.push(format!("{name}: listener {} active {active}", l["name"]));
                }
                for b in l["backends"].as_array().into_iter().flatten() {
                    let a = b["active_connections"].as_u64().unwrap_or(u64::MAX);
                    let c = b["cluster_connections"].as_u64().unwrap_or(u64::MAX);
                    if a != 0 || c != 0 {
                        problems.push(format!(
                            "{name}: backend {} active {a} cluster {c}",
                            b["address"].as_str().unwrap_or("?")
                        ));
                    }
                }
            }
        }
        for (i, b) in self.inner.backends.lock().await.iter().enumerate() {
            match b {
                None => problems.push(format!("backend-{}: not running", i + 1)),
                Some(b) => {
                    let open = b.open.load(std::sync::atomic::Ordering::SeqCst);
                    if open != 0 {
                        problems.push(format!("backend-{} ({}): {open} open", i + 1, b.addr));
                    }
                }
            }
        }
        Settle {
            problems,
            took: None,
        }
    }

    /// [`Fleet::end_state`] until nothing is left, bounded by `limit`.
    pub async fn settle(&self, limit: Duration, t0: Instant) -> Settle {
        let began = Instant::now();
        loop {
            let mut s = self.end_state().await;
            if s.problems.is_empty() {
                s.took = Some(began.elapsed());
                progress(t0, format_args!("settled after {:?}", began.elapsed()));
                return s;
            }
            if began.elapsed() > limit {
                progress(
                    t0,
                    format_args!("not settled after {limit:?}: {:?}", s.problems),
                );
                return s;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Stops every process (by PID, through the harness) and returns the
    /// warnings and errors every node process logged.
    pub async fn finish(&self) -> LogTally {
        let mut nodes = self.inner.nodes.lock().await;
        for n in nodes.iter_mut() {
            if let Some(mut p) = n.process.take() {
                p.kill9();
                tally_logs(&mut self.inner.logs.lock().unwrap(), &n.name, &p);
            }
        }
        for b in self.inner.backends.lock().await.iter_mut() {
            if let Some(b) = b.take() {
                b.kill().await;
            }
        }
        self.inner.logs.lock().unwrap().clone()
    }
}
