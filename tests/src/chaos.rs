//! The chaos run: the soak's fleet ([`crate::soak`], five nodes, four
//! echo backends, continuous client load) with every node on a host of
//! its own ([`crate::netlab`]), clients that find the nodes through one
//! round-robin name, and a fault schedule drawn from a printed seed:
//! kill -9 and restart, SIGTERM and restart, backend death and recovery,
//! partition and heal. Each fault waits until the fleet has detected it
//! before it is undone, so each death has a detection time.
//!
//! Used by `tests/src/bin/chaos.rs` (`just chaos MINUTES`, release
//! build) and `tests/tests/chaos.rs` (60 s, in `cargo test`).
//!
//! The verdict is the soak's ([`crate::soak::report::Outcome::passed`]):
//! every count back to zero on every node and every node alive in one
//! fleet of five at the end; every fault detected within
//! [`crate::soak::DETECT_LIMIT_MS`] and every partition healed within
//! [`crate::soak::REASSEMBLE_LIMIT_MS`]; and no client failure that a
//! fault does not explain. Explained, precisely
//! ([`crate::soak::report::explain`]): the connection went through a node
//! that was down at some moment of its life (from the signal until the
//! restarted node served again; that covers connections refused by a
//! dead node, which static DNS still names), or it was open when a
//! backend was killed (or started at most `CUT_GRACE_MS` before). A
//! partition explains nothing: clients and backends reach every node
//! throughout, so a split fleet must go on serving every client.

use crate::netlab::{self, Lab};
use crate::soak::clients::Phase;
use crate::soak::plan::{Churn, Mix};
use crate::soak::report::{Cause, Outcome};
use crate::soak::{self, NODES, Net, Params};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The round-robin name the clients resolve.
pub const NAME: &str = "lb.shoal.test";

/// Each kind of fault, in percent.
pub const MIX: Mix = Mix {
    kill9: 25,
    sigterm: 25,
    backend: 25,
    partition: 25,
};

/// How the clients resolve [`NAME`]: the one switch between a static
/// answer and one the fleet gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// dnsmasq in the clients' namespace answering every node's address,
    /// dead or alive, as a zone file an operator wrote would.
    Static,
    /// The fleet's own answer (`[dns]` on every node, decision 51),
    /// through dnsmasq forwarding the name to all five nodes: a node
    /// leaves the answer once the fleet sees it gone.
    Fleet,
}

impl Resolution {
    pub fn label(self) -> &'static str {
        match self {
            Resolution::Static => "static DNS (dnsmasq, every node's address)",
            Resolution::Fleet => {
                "the fleet's own DNS answer ([dns] on every node, forwarded by dnsmasq)"
            }
        }
    }
}

/// The long run: `duration` of load, a fault every 20 s on average (each
/// waits for its detection, ~10 s), a sample a minute.
pub fn params_long(seed: u64, duration: Duration) -> Params {
    let mut p = Params::long(seed, duration);
    p.mix = MIX;
    p.detect = true;
    p.churn_every = Duration::from_secs(20);
    p
}

/// The `cargo test` run: 60 s, a fault every 12 s on average, half the
/// clients.
pub fn params_minute(seed: u64) -> Params {
    let mut p = Params::short(seed);
    p.duration = Duration::from_secs(60);
    p.sample_every = Duration::from_secs(10);
    p.churn_every = Duration::from_secs(12);
    p.churn_margin = Duration::from_secs(5);
    p.mix = MIX;
    p.detect = true;
    p
}

/// Runs the chaos run; only inside [`crate::netns`]'s namespaces (the
/// lab needs them), writing dnsmasq's log to `dns_log` at the end if
/// given. `Err` is a harness failure.
pub async fn run(
    params: Params,
    resolution: Resolution,
    dns_log: Option<&std::path::Path>,
) -> Result<Outcome> {
    let lab = Arc::new(Mutex::new(Lab::new(NODES)));
    let records: Vec<(&str, Ipv4Addr)> = (0..NODES).map(|i| (NAME, netlab::node_ip(i))).collect();
    let dns = match resolution {
        Resolution::Static => crate::dnsmasq::Dnsmasq::start(&records).await,
        Resolution::Fleet => {
            let servers: Vec<std::net::SocketAddr> = (0..NODES)
                .map(|i| (netlab::node_ip(i), soak::fleet::FLEET_DNS_PORT).into())
                .collect();
            crate::dnsmasq::Dnsmasq::start_forwarding(NAME, &servers).await
        }
    };
    let net = Net::Lab {
        lab: lab.clone(),
        dns: dns.addr(),
        name: NAME.to_owned(),
        fleet_dns: resolution == Resolution::Fleet,
    };
    let outcome = soak::run_on(params, net).await;
    if let Some(path) = dns_log {
        let mut text = dns.logs().join("\n");
        text.push('\n');
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("writing dnsmasq's log to {}: {e}", path.display()))?;
    }
    drop(dns);
    drop(lab);
    outcome
}

/// Unexplained failures the summary lists one by one, at most.
const UNEXPLAINED_LISTED_MAX: usize = 20;

/// `min / median / max` of `v` in ms, and the count.
fn spread(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort();
    format!(
        "{} faults: min {} / median {} / max {} ms",
        v.len(),
        v[0].as_millis(),
        v[v.len() / 2].as_millis(),
        v[v.len() - 1].as_millis()
    )
}

/// Why a failure happened, in the summary's words.
fn why(phase: Phase, error: &str, cause: Cause) -> String {
    let what = match (phase, error) {
        (Phase::Connect, "refused") if cause == Cause::NodeDied => "refused by a dead node".into(),
        (_, "reset") => "reset".into(),
        (_, "timeout") => "timed out".into(),
        (Phase::Resolve, e) => e.to_owned(),
        (_, e) => e.to_owned(),
    };
    let because = match cause {
        Cause::NodeDied => "its node was down",
        Cause::BackendDied => "its backend was killed",
        Cause::Unexplained => "UNEXPLAINED",
    };
    format!("{what} ({because})")
}

/// The summary: requests, failures and why, faults with their detection
/// times, the counts at the end, the verdict.
pub fn summary(o: &Outcome, resolution: Resolution) -> String {
    let p = &o.params;
    let t = &o.tally;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "chaos SEED={}: {NODES} nodes on hosts of their own, {} echo backends, {:.0} s of load, clients resolve {NAME} by {}",
        p.seed,
        soak::BACKENDS,
        p.duration.as_secs_f64(),
        resolution.label()
    );
    let _ = writeln!(
        s,
        "requests: {} attempted, {} succeeded, {} failed ({:.3} %)",
        t.attempted,
        t.succeeded,
        t.failed,
        100.0 * t.failed as f64 / t.attempted.max(1) as f64
    );
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for (f, c) in t.failures.iter().zip(&o.causes) {
        *by.entry(why(f.phase, &f.error, *c)).or_default() += 1;
    }
    for (w, n) in &by {
        let _ = writeln!(s, "  failed: {n} {w}");
    }
    // Each unexplained one with its times, next to the churn log's.
    for (f, _) in t
        .failures
        .iter()
        .zip(&o.causes)
        .filter(|(_, c)| **c == Cause::Unexplained)
        .take(UNEXPLAINED_LISTED_MAX)
    {
        let _ = writeln!(
            s,
            "    unexplained: started {:.1} s, failed {:.1} s, client {} via node-{}: {}",
            f.started.as_secs_f64(),
            f.failed.as_secs_f64(),
            f.client,
            f.node + 1,
            f.error
        );
    }
    let mut detect: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut reassembly = Vec::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &o.events {
        let kind = match e.planned.what {
            Churn::Kill9 { .. } => "kill -9",
            Churn::Sigterm { .. } => "SIGTERM",
            Churn::Backend { .. } => "backend death",
            Churn::Partition { .. } => "partition",
        };
        *kinds.entry(kind).or_default() += 1;
        detect.entry(kind).or_default().extend(e.detected);
        reassembly.extend(e.reassembled);
    }
    let _ = writeln!(
        s,
        "faults: {} of {} planned ran: {}",
        o.events.len(),
        o.plan.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (kind, v) in &mut detect {
        let _ = writeln!(s, "  detected ({kind}): {}", spread(v));
    }
    let _ = writeln!(s, "  whole again after a heal: {}", spread(&mut reassembly));
    match o.settle.took {
        Some(d) => {
            let _ = writeln!(
                s,
                "end: settled {:.1} s after the load stopped",
                d.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(s, "end: NOT settled: {}", o.settle.problems.join("; "));
        }
    }
    for x in o.samples.iter().filter(|x| x.after_load) {
        let line = match x.seen.as_ref().and_then(|seen| seen.counts.as_ref()) {
            Some(c) => format!(
                "active {}, own per backend {}, fleet-wide {}, members {}",
                c.active, c.backend_active, c.cluster, c.members
            ),
            None => "down or not answering".into(),
        };
        let _ = writeln!(s, "  node-{}: {line}", x.node + 1);
    }
    let _ = writeln!(s, "verdict: {}", if o.passed() { "PASS" } else { "FAIL" });
    for f in &o.findings {
        let _ = writeln!(s, "  finding: {f}");
    }
    s
}
