//! What a soak run found: each client failure explained by an outage (or
//! not), the slopes of descriptors and memory per node, the end state,
//! the verdict, and all of it as Markdown.

use super::clients::{Failure, Tally};
use super::fleet::{Done, LogTally, Outage, Settle, Target};
use super::plan::{Churn, Planned};
use super::sample::Sample;
use super::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A connection that was open when a backend was killed, or started up to
/// this long after, is explained by that kill: the kill takes a moment,
/// and a connect that the dying backend's kernel completed is then reset.
pub const CUT_GRACE_MS: u64 = 200;
/// Unexplained failures listed one by one in the report, at most.
const FAILURES_LISTED_MAX: usize = 100;

/// Why a client connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The node it went through was down (killed, or SIGTERMed and
    /// draining or gone) at some moment of its life: expected.
    NodeDied,
    /// A backend was killed while it was open: its connection to that
    /// backend was cut, which no balancer can prevent. Expected; the
    /// echo backends do not say who they are, so this is by time only.
    BackendDied,
    /// Nothing explains it: a finding.
    Unexplained,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::NodeDied => "node died at that moment (expected)",
            Cause::BackendDied => "backend killed at that moment (expected)",
            Cause::Unexplained => "**unexplained (a finding)**",
        }
    }
}

/// The cause of `f`, given every outage (`end`: the end of the load, for
/// an outage that never ended).
pub fn explain(f: &Failure, outages: &[Outage], end: Duration) -> Cause {
    let grace = Duration::from_millis(CUT_GRACE_MS);
    let node = outages.iter().any(|o| {
        o.target == Target::Node(f.node) && o.from <= f.failed && o.to.unwrap_or(end) >= f.started
    });
    if node {
        return Cause::NodeDied;
    }
    let backend = outages.iter().any(|o| {
        matches!(o.target, Target::Backend(_)) && f.started <= o.from + grace && o.from <= f.failed
    });
    if backend {
        Cause::BackendDied
    } else {
        Cause::Unexplained
    }
}

/// Least-squares slope of `y` over `x` with one intercept per group:
/// each process of a node starts from its own level, and what is asked
/// is whether a level grows while a process lives. `None` without two
/// points of one group at different times.
pub fn pooled_slope(points: &[(u32, f64, f64)]) -> Option<f64> {
    let mut groups: BTreeMap<u32, Vec<(f64, f64)>> = BTreeMap::new();
    for &(g, x, y) in points {
        groups.entry(g).or_default().push((x, y));
    }
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for pts in groups.values() {
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        for &(x, y) in pts {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
        }
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The slopes of one node, per minute, after each process's first sample.
#[derive(Debug, Clone)]
pub struct Slope {
    pub node: usize,
    /// Descriptors beyond the two of each open connection.
    pub fds_net: Option<f64>,
    /// Descriptors as `/proc/PID/fd` lists them.
    pub fds: Option<f64>,
    pub rss_kib: Option<f64>,
    pub points: usize,
    pub processes: usize,
    /// Sampled time the slope rests on, summed over processes.
    pub span: Duration,
    /// Whether the span is long enough for the fd bound to hold.
    pub enforced: bool,
}

fn slopes(samples: &[Sample]) -> Vec<Slope> {
    (0..NODES)
        .map(|node| {
            let mut per: BTreeMap<u32, Vec<(f64, f64, f64, f64)>> = BTreeMap::new();
            for s in samples.iter().filter(|s| s.node == node && !s.after_load) {
                let Some(seen) = &s.seen else { continue };
                let Some(c) = &seen.counts else { continue };
                let min = s.t.as_secs_f64() / 60.0;
                let net = seen.fds as f64 - 2.0 * c.active as f64;
                per.entry(seen.incarnation).or_default().push((
                    min,
                    net,
                    seen.fds as f64,
                    seen.rss_kib as f64,
                ));
            }
            let mut net = Vec::new();
            let mut raw = Vec::new();
            let mut rss = Vec::new();
            let mut span = 0.0;
            let mut processes = 0;
            for (&g, pts) in &per {
                // Warm-up: a process's first sample.
                let used = &pts[1.min(pts.len())..];
                if used.len() < 2 {
                    continue;
                }
                processes += 1;
                span += used.last().unwrap().0 - used[0].0;
                for &(x, n, f, r) in used {
                    net.push((g, x, n));
                    raw.push((g, x, f));
                    rss.push((g, x, r));
                }
            }
            let span = Duration::from_secs_f64(span * 60.0);
            Slope {
                node,
                fds_net: pooled_slope(&net),
                fds: pooled_slope(&raw),
                rss_kib: pooled_slope(&rss),
                points: net.len(),
                processes,
                span,
                enforced: span >= Duration::from_secs(SLOPE_SPAN_MIN_S),
            }
        })
        .collect()
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub params: Params,
    pub plan: Vec<Planned>,
    pub events: Vec<Done>,
    pub outages: Vec<Outage>,
    pub tally: Tally,
    /// One per failure in `tally.failures`.
    pub causes: Vec<Cause>,
    pub samples: Vec<Sample>,
    pub slopes: Vec<Slope>,
    pub settle: Settle,
    /// Quiet descriptors per node before the load, and after the settle.
    pub fds_before: Vec<Option<usize>>,
    pub fds_after: Vec<Option<usize>>,
    pub logs: LogTally,
    /// Everything that fails the run.
    pub findings: Vec<String>,
}

fn f1(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:+.2}"))
}

impl Outcome {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        params: Params,
        plan: Vec<Planned>,
        events: Vec<Done>,
        outages: Vec<Outage>,
        tally: Tally,
        samples: Vec<Sample>,
        settle: Settle,
        fds_before: Vec<Option<usize>>,
        fds_after: Vec<Option<usize>>,
        logs: LogTally,
    ) -> Outcome {
        let end = params.duration + Duration::from_secs(60);
        let causes: Vec<Cause> = tally
            .failures
            .iter()
            .map(|f| explain(f, &outages, end))
            .collect();
        let slopes = slopes(&samples);
        let mut findings = Vec::new();
        if !settle.problems.is_empty() {
            findings.push(format!(
                "counts not back to zero (or fleet not whole) at the end check (settle bound {SETTLE_LIMIT_MS} ms): {}",
                settle.problems.join("; ")
            ));
        }
        let unexplained = causes.iter().filter(|&&c| c == Cause::Unexplained).count();
        if unexplained > 0 {
            findings.push(format!(
                "{unexplained} client failures not explained by a node or backend dying at that moment"
            ));
        }
        if tally.failures_dropped > 0 {
            findings.push(format!(
                "{} client failures beyond the {} kept could not be classified",
                tally.failures_dropped,
                tally.failures.len()
            ));
        }
        if tally.stuck > 0 {
            findings.push(format!(
                "{} client tasks did not end after the stop",
                tally.stuck
            ));
        }
        findings.extend(events.iter().filter_map(|e| e.finding.clone()));
        for s in &slopes {
            if let Some(v) = s.fds_net
                && s.enforced
                && v > FD_SLOPE_MAX_PER_MIN
            {
                findings.push(format!(
                    "node-{}: descriptors grow {v:.2}/min (bound {FD_SLOPE_MAX_PER_MIN}/min)",
                    s.node + 1
                ));
            }
        }
        for (i, (b, a)) in fds_before.iter().zip(&fds_after).enumerate() {
            if let (Some(b), Some(a)) = (b, a)
                && *a > b + FD_END_EXCESS_MAX
            {
                findings.push(format!(
                    "node-{}: {a} quiet descriptors after the settle, {b} before the load (at most {FD_END_EXCESS_MAX} more allowed)",
                    i + 1
                ));
            }
        }
        Outcome {
            params,
            plan,
            events,
            outages,
            tally,
            causes,
            samples,
            slopes,
            settle,
            fds_before,
            fds_after,
            logs,
            findings,
        }
    }

    /// The verdict: nothing left, every failure explained, no fd growth.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// The report; `provenance` is a line saying how and where it ran.
    pub fn markdown(&self, provenance: &str) -> String {
        let p = &self.params;
        let mut o = String::new();
        let _ = writeln!(o, "# Soak: {NODES} nodes, churn, continuous load\n");
        let _ = writeln!(o, "{provenance}\n");
        let _ = writeln!(
            o,
            "**Verdict: {}.** SEED={} (the churn schedule below is a function of it; process timing is not).\n",
            if self.passed() { "PASS" } else { "FAIL" },
            p.seed
        );
        if !self.findings.is_empty() {
            let _ = writeln!(o, "Findings:\n");
            for f in &self.findings {
                let _ = writeln!(o, "- {f}");
            }
            let _ = writeln!(o);
        }

        let _ = writeln!(o, "## Parameters and bounds\n");
        let _ = writeln!(o, "| | |\n|---|---|");
        let rows = [
            ("seed", p.seed.to_string()),
            (
                "load and churn",
                format!("{:.1} min", p.duration.as_secs_f64() / 60.0),
            ),
            (
                "sample every",
                format!("{} s", p.sample_every.as_secs_f64()),
            ),
            (
                "fleet",
                format!(
                    "{NODES} nodes (node-{} never churned: the control), {BACKENDS} echo backends, `drain_timeout_ms` {DRAIN_TIMEOUT_MS}, health checks every 200 ms (rise 2, fall 2)",
                    CONTROL_NODE + 1
                ),
            ),
            (
                "clients",
                format!(
                    "{} short (1–3 round trips of 1–{PAYLOAD_BYTES_MAX} bytes, then close; pause ≤ {SHORT_PAUSE_MS_MAX} ms) + {} long-lived (held {:.0}–{:.0} s, a round trip every {LONG_GAP_MS_MIN}–{LONG_GAP_MS_MAX} ms), each connection through a node drawn at random",
                    p.clients_short,
                    p.clients_long,
                    p.long_hold.0.as_secs_f64(),
                    p.long_hold.1.as_secs_f64()
                ),
            ),
            (
                "connection rate",
                format!(
                    "≤ {} new connections/s over all clients (bound {CONNECTS_PER_S_MAX})",
                    p.connects_per_s
                ),
            ),
            (
                "client timeouts",
                format!(
                    "connect {CONNECT_TIMEOUT_MS} ms, round trip {ROUND_TRIP_TIMEOUT_MS} ms, close {CLOSE_TIMEOUT_MS} ms"
                ),
            ),
            (
                "churn",
                format!(
                    "one event every {:.0} s on average (0.5–1.5×), none in the first or last {:.0} s; kill -9 35 %, SIGTERM 30 %, backend kill 35 %; one at a time",
                    p.churn_every.as_secs_f64(),
                    p.churn_margin.as_secs_f64()
                ),
            ),
            (
                "bound: counts",
                format!(
                    "{SETTLE_LIMIT_MS} ms after the load stops, every node sees {NODES} members and counts 0 (listener active, per backend active and cluster); every backend has 0 open connections"
                ),
            ),
            (
                "bound: client failures",
                format!(
                    "none unexplained: a failure is expected only if the node it went through was down at some moment of its life (signal to serving again), or a backend was killed while it was open (or ≤ {CUT_GRACE_MS} ms before it started)"
                ),
            ),
            (
                "bound: fd slope",
                format!(
                    "≤ {FD_SLOPE_MAX_PER_MIN} descriptor/min per node (descriptors less 2 per open connection; least squares with one intercept per process, each process's first sample left out as warm-up), enforced where it rests on ≥ {SLOPE_SPAN_MIN_S} s of samples"
                ),
            ),
            (
                "bound: fds at the end",
                format!(
                    "after the settle, each node's quiet descriptor count ≤ that before the load + {FD_END_EXCESS_MAX}"
                ),
            ),
            (
                "RSS slope",
                format!(
                    "reported; above {RSS_SLOPE_WARN_KIB_PER_MIN} KiB/min it is flagged (⚠), not failed"
                ),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(o, "| {k} | {v} |");
        }

        self.write_clients(&mut o);
        self.write_slopes(&mut o);
        self.write_end(&mut o);
        self.write_churn(&mut o);
        self.write_samples(&mut o);
        self.write_logs(&mut o);
        o
    }

    fn write_clients(&self, o: &mut String) {
        let t = &self.tally;
        let _ = writeln!(o, "\n## Client outcomes\n");
        let _ = writeln!(
            o,
            "{} connections attempted, {} succeeded, {} failed; {} echo round trips completed.\n",
            t.attempted, t.succeeded, t.failed, t.round_trips
        );
        let mut by: BTreeMap<(Cause, String, String), usize> = BTreeMap::new();
        for (f, c) in t.failures.iter().zip(&self.causes) {
            let phase = match f.phase {
                clients::Phase::RoundTrip(1) => "first round trip".to_owned(),
                clients::Phase::RoundTrip(_) => "later round trip".to_owned(),
                p => p.to_string(),
            };
            *by.entry((*c, phase, f.error.clone())).or_default() += 1;
        }
        if !by.is_empty() {
            let _ = writeln!(o, "| cause | phase | error | count |\n|---|---|---|---:|");
            for ((c, phase, e), n) in &by {
                let _ = writeln!(o, "| {} | {phase} | {e} | {n} |", c.label());
            }
        }
        let unexplained: Vec<&Failure> = t
            .failures
            .iter()
            .zip(&self.causes)
            .filter(|(_, c)| **c == Cause::Unexplained)
            .map(|(f, _)| f)
            .collect();
        if !unexplained.is_empty() {
            let _ = writeln!(
                o,
                "\nUnexplained failures (first {FAILURES_LISTED_MAX}):\n\n| started (s) | failed (s) | client | node | phase | error |\n|---:|---:|---|---|---|---|"
            );
            for f in unexplained.iter().take(FAILURES_LISTED_MAX) {
                let _ = writeln!(
                    o,
                    "| {:.3} | {:.3} | {} {} | node-{} | {} | {} |",
                    f.started.as_secs_f64(),
                    f.failed.as_secs_f64(),
                    if f.long { "long" } else { "short" },
                    f.client,
                    f.node + 1,
                    f.phase,
                    f.error
                );
            }
        }
    }

    fn write_slopes(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\n## Slopes per node (per minute, after warm-up)\n\n| node | fds net of connections | fds | RSS KiB | points | processes | span (s) | fd bound |\n|---|---:|---:|---:|---:|---:|---:|---|"
        );
        for s in &self.slopes {
            let rss_flag = if s.rss_kib.is_some_and(|v| v > RSS_SLOPE_WARN_KIB_PER_MIN) {
                " ⚠"
            } else {
                ""
            };
            let bound = match (s.enforced, s.fds_net) {
                (true, Some(v)) if v > FD_SLOPE_MAX_PER_MIN => "**exceeded**",
                (true, _) => "held",
                (false, _) => "not enforced (span too short)",
            };
            let _ = writeln!(
                o,
                "| node-{} | {} | {} | {}{rss_flag} | {} | {} | {:.0} | {bound} |",
                s.node + 1,
                f1(s.fds_net),
                f1(s.fds),
                f1(s.rss_kib),
                s.points,
                s.processes,
                s.span.as_secs_f64()
            );
        }
    }

    fn write_end(&self, o: &mut String) {
        let _ = writeln!(o, "\n## End state\n");
        match (self.settle.took, self.settle.problems.is_empty()) {
            (Some(d), _) => {
                let _ = writeln!(
                    o,
                    "Settled {:.1} s after the load stopped: every node sees {NODES} members and counts 0, every backend has 0 open connections.\n",
                    d.as_secs_f64()
                );
            }
            (None, true) => {
                let _ = writeln!(o, "Nothing left at the end check.\n");
            }
            (None, false) => {
                let _ = writeln!(o, "Left at the end check:\n");
                for p in &self.settle.problems {
                    let _ = writeln!(o, "- {p}");
                }
                let _ = writeln!(o);
            }
        }
        let _ = writeln!(
            o,
            "| node | quiet fds before the load | after the settle |\n|---|---:|---:|"
        );
        let show = |v: &Option<usize>| v.map_or("–".to_owned(), |v| v.to_string());
        for (i, (b, a)) in self.fds_before.iter().zip(&self.fds_after).enumerate() {
            let _ = writeln!(o, "| node-{} | {} | {} |", i + 1, show(b), show(a));
        }
    }

    fn write_churn(&self, o: &mut String) {
        let mut kinds = [0usize; 4];
        for e in &self.events {
            kinds[match e.planned.what {
                Churn::Kill9 { .. } => 0,
                Churn::Sigterm { .. } => 1,
                Churn::Backend { .. } => 2,
                Churn::Partition { .. } => 3,
            }] += 1;
        }
        let _ = writeln!(
            o,
            "\n## Churn\n\n{} of {} planned events ran: kill -9 {}, SIGTERM {}, backend kill {}, partition {}.\n\n| planned (s) | started (s) | event | took (s) | outcome |\n|---:|---:|---|---:|---|",
            self.events.len(),
            self.plan.len(),
            kinds[0],
            kinds[1],
            kinds[2],
            kinds[3]
        );
        for e in &self.events {
            let outcome = match &e.finding {
                Some(f) => format!("**{f}**"),
                None => e.note.clone(),
            };
            let _ = writeln!(
                o,
                "| {:.1} | {:.1} | {} | {:.1} | {outcome} |",
                e.planned.at.as_secs_f64(),
                e.started.as_secs_f64(),
                e.planned.what,
                e.took.as_secs_f64()
            );
        }
    }

    fn write_samples(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\n## Samples\n\nProcess: 0 is a node's first process, +1 each restart. Active: the listener's open client connections; backend / cluster: Σ over backends of the node's own count and of its fleet-wide estimate, and per backend (backend-1 first) own/cluster. The last rows, *end*, are after the settle.\n\n| t (min) | node | process | fds | RSS KiB | active | backend | cluster | per backend own/cluster | members |\n|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"
        );
        for s in &self.samples {
            let t = if s.after_load {
                "end".to_owned()
            } else {
                format!("{:.2}", s.t.as_secs_f64() / 60.0)
            };
            let node = format!("node-{}", s.node + 1);
            match &s.seen {
                None => {
                    let _ = writeln!(o, "| {t} | {node} | down | | | | | | | |");
                }
                Some(seen) => {
                    let (a, b, c, per, m) = match &seen.counts {
                        Some(c) => (
                            c.active.to_string(),
                            c.backend_active.to_string(),
                            c.cluster.to_string(),
                            c.per_backend
                                .iter()
                                .map(|(own, fleet)| format!("{own}/{fleet}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                            c.members.to_string(),
                        ),
                        None => ("?".into(), "?".into(), "?".into(), "?".into(), "?".into()),
                    };
                    let _ = writeln!(
                        o,
                        "| {t} | {node} | {} | {} | {} | {a} | {b} | {c} | {per} | {m} |",
                        seen.incarnation, seen.fds, seen.rss_kib
                    );
                }
            }
        }
    }

    fn write_logs(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\n## Warnings and errors the nodes logged\n\nOver all processes of each node (log filter `info,shoal::conn=warn`).\n"
        );
        let any = self.logs.values().any(|m| !m.is_empty());
        if !any {
            let _ = writeln!(o, "None.");
            return;
        }
        let _ = writeln!(o, "| node | line | count |\n|---|---|---:|");
        for (node, lines) in &self.logs {
            for (line, n) in lines {
                let _ = writeln!(o, "| {node} | {line} | {n} |");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::clients::Phase;

    fn failure(node: usize, started: u64, failed: u64) -> Failure {
        Failure {
            client: 0,
            long: false,
            node,
            started: Duration::from_millis(started),
            failed: Duration::from_millis(failed),
            phase: Phase::RoundTrip(1),
            error: "eof".into(),
        }
    }

    #[test]
    fn a_failure_is_explained_only_by_an_outage_in_its_life() {
        let outages = [
            Outage {
                target: Target::Node(1),
                from: Duration::from_millis(1000),
                to: Some(Duration::from_millis(2000)),
            },
            Outage {
                target: Target::Backend(0),
                from: Duration::from_millis(5000),
                to: Some(Duration::from_millis(6000)),
            },
        ];
        let end = Duration::from_secs(60);
        // Through node-2 while it was down; open when it died.
        assert_eq!(
            explain(&failure(1, 1500, 1501), &outages, end),
            Cause::NodeDied
        );
        assert_eq!(
            explain(&failure(1, 500, 2500), &outages, end),
            Cause::NodeDied
        );
        // Another node, or node-2 after it served again.
        assert_eq!(
            explain(&failure(2, 1500, 1501), &outages, end),
            Cause::Unexplained
        );
        assert_eq!(
            explain(&failure(1, 2100, 2200), &outages, end),
            Cause::Unexplained
        );
        // Open when the backend died; started after it died.
        assert_eq!(
            explain(&failure(3, 4000, 5100), &outages, end),
            Cause::BackendDied
        );
        assert_eq!(
            explain(&failure(3, 5500, 5600), &outages, end),
            Cause::Unexplained
        );
    }

    #[test]
    fn the_slope_ignores_the_level_of_each_process() {
        // Two processes, each flat, the second at a higher level.
        let flat = [
            (0, 0.0, 10.0),
            (0, 1.0, 10.0),
            (1, 2.0, 50.0),
            (1, 3.0, 50.0),
        ];
        assert_eq!(pooled_slope(&flat), Some(0.0));
        let growing = [
            (0, 0.0, 10.0),
            (0, 1.0, 12.0),
            (1, 2.0, 50.0),
            (1, 3.0, 52.0),
        ];
        assert_eq!(pooled_slope(&growing), Some(2.0));
        assert_eq!(pooled_slope(&[(0, 1.0, 3.0)]), None);
    }
}
