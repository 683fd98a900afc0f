//! What a fleet run that kept every invariant reports: the trace hash,
//! what happened to the clients, balance quality, how fast the fleet
//! noticed crashes, leaves, joins and backend deaths, how fast membership
//! and views converged after the faults stopped, and what the traffic
//! between nodes (SWIM packets and report datagrams) cost.
//!
//! Balance quality (for the balance study) is measured on the simulator's
//! TRUE fleet-wide counts (every node's connections on a backend, in setup
//! or established), sampled every `balance_interval_ms` while clients
//! arrive after the warm-up, over the backends that are up:
//! - `peak_over_mean`: `max_b (active_b / weight_b)` over
//!   `Σ active / Σ weight` per sample (with equal weights `max / mean`;
//!   1.0 is perfect), averaged over the samples with a non-zero mean, and
//!   its 99th percentile;
//! - `max_active`: `max_b active_b` per sample (the busiest backend), its
//!   99th percentile and maximum.

use super::bounds::FleetBounds;
use super::chooser::Chooser;
use crate::violation::millis;
use std::fmt;
use std::time::Duration;

/// How every client ended. Each client ends exactly one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientTally {
    pub arrived: u64,
    /// Connected and later left on their own.
    pub served: u64,
    /// Connection reset by its backend's death.
    pub reset_backend: u64,
    /// Connection (or wait) ended by its node's crash or stop.
    pub reset_node: u64,
    /// The pool found no backend.
    pub refused_no_backend: u64,
    /// `retries` more connects failed.
    pub refused_retries: u64,
    /// No node accepted (every address the client tried was down).
    pub refused_no_node: u64,
    /// Not counted in the sum: clients whose first address was down and
    /// who reached another node.
    pub redirected: u64,
    /// Of `refused_no_backend`: refused by a fleet-wide budget.
    pub refused_budget: u64,
    /// Of those: while every backend that could take them held less than
    /// 95 % of its budget fleet-wide.
    pub refused_budget_under: u64,
}

impl ClientTally {
    /// Refused for any reason.
    pub fn refused(&self) -> u64 {
        self.refused_no_backend + self.refused_retries + self.refused_no_node
    }

    /// Whether every client ended exactly one way.
    pub fn adds_up(&self) -> bool {
        self.arrived
            == self.served
                + self.reset_backend
                + self.reset_node
                + self.refused_no_backend
                + self.refused_retries
                + self.refused_no_node
    }
}

/// One balance sample of the true fleet-wide counts of the backends that
/// are up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalanceSample {
    /// The busiest backend's count.
    pub max: u32,
    /// The mean count.
    pub mean: f64,
    /// The largest count per unit of weight over the fleet's count per
    /// unit of weight (`max / mean` when the weights are equal).
    pub peak_over_mean: f64,
}

impl BalanceSample {
    /// A sample of equal weights.
    pub fn even(max: u32, mean: f64) -> BalanceSample {
        BalanceSample {
            max,
            mean,
            peak_over_mean: f64::from(max) / mean,
        }
    }
}

/// Balance quality (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Balance {
    /// Samples with a non-zero mean.
    pub samples: u64,
    pub peak_over_mean_avg: f64,
    pub peak_over_mean_p99: f64,
    pub max_active_p99: u32,
    pub max_active_max: u32,
    pub mean_active_avg: f64,
}

impl Balance {
    /// Summarises samples (means of zero already left out).
    pub fn from_samples(samples: &[BalanceSample]) -> Balance {
        if samples.is_empty() {
            return Balance::default();
        }
        let n = samples.len();
        let mut ratios: Vec<f64> = samples.iter().map(|s| s.peak_over_mean).collect();
        let mut maxes: Vec<u32> = samples.iter().map(|s| s.max).collect();
        let ratio_avg = ratios.iter().sum::<f64>() / n as f64;
        let mean_avg = samples.iter().map(|s| s.mean).sum::<f64>() / n as f64;
        ratios.sort_by(f64::total_cmp);
        maxes.sort_unstable();
        Balance {
            samples: n as u64,
            peak_over_mean_avg: ratio_avg,
            peak_over_mean_p99: ratios[percentile_index(n, 99)],
            max_active_p99: maxes[percentile_index(n, 99)],
            max_active_max: maxes[n - 1],
            mean_active_avg: mean_avg,
        }
    }
}

/// The index of the `p`-th percentile in a sorted list of `n` (nearest
/// rank).
fn percentile_index(n: usize, p: usize) -> usize {
    (n * p).div_ceil(100).clamp(1, n) - 1
}

/// Count, median, 99th percentile and maximum of some delays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(delays: &[Duration]) -> Summary {
        if delays.is_empty() {
            return Summary::default();
        }
        let mut d = delays.to_vec();
        d.sort_unstable();
        let n = d.len();
        Summary {
            count: n,
            median: d[percentile_index(n, 50)],
            p99: d[percentile_index(n, 99)],
            max: d[n - 1],
        }
    }
}

/// Counters of one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    pub name: String,
    /// Times a pool chose it.
    pub chosen: u64,
    pub connections: u64,
    pub connect_failures: u64,
    /// Connects refused because it was at its capacity.
    pub full_refusals: u64,
    pub resets: u64,
    pub checks: u64,
    pub check_failures: u64,
}

/// Traffic between nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetStats {
    /// Every datagram: SWIM packets and report datagrams.
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Of `datagrams_sent`, the report datagrams.
    pub report_datagrams_sent: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Dropped by a cut.
    pub cut: u64,
    pub duplicated: u64,
    /// Sent to an address with no running node.
    pub to_dead_node: u64,
    /// Dropped because a paused node's buffer was full.
    pub dropped_paused: u64,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    /// Seconds of running node processes, summed over nodes.
    pub node_seconds: f64,
}

impl NetStats {
    /// Datagrams sent per running node per second.
    pub fn datagrams_per_node_second(&self) -> f64 {
        self.datagrams_sent as f64 / self.node_seconds.max(f64::MIN_POSITIVE)
    }

    /// Bytes sent per running node per second.
    pub fn bytes_per_node_second(&self) -> f64 {
        self.bytes_sent as f64 / self.node_seconds.max(f64::MIN_POSITIVE)
    }
}

/// Operators' drains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Drain and undrain commands a running node took.
    pub commands: u64,
    /// Of those, commands whose node's wall clock was behind the newest
    /// mark it held: the mark's version is one past that mark's.
    pub clock_behind: u64,
    /// Receivers held to the drain hop bound, over all commands.
    pub hops_checked: u64,
    /// Connections opened to a backend whose newest drain, issued
    /// elsewhere, had not reached the node yet.
    pub connects_drained_elsewhere: u64,
    /// A command to every live node holding its mark or a newer one
    /// (sampled); commands whose mark was lost with its holders are left
    /// out.
    pub spread: Summary,
    /// The longest a live node lacked the newest mark, over the liveness
    /// samples held to the drain bound.
    pub staleness_max: Duration,
}

/// A fleet-wide budget (`fleet_max_connections`, decision 48).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStats {
    pub limit: u32,
    /// The largest fleet-wide count on one backend (set up or
    /// established), and when (from the start).
    pub peak: u32,
    pub peak_at: Duration,
    /// From each crash to the fleet holding 95 % of the budget again.
    pub refills: Summary,
}

/// Membership events the nodes reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStats {
    pub ups: u64,
    pub downs: u64,
    pub renames: u64,
    /// Nodes renewing their identity after being declared down.
    pub rejoins: u64,
    /// `ClusterEvent::Error`s and refused datagrams or syncs.
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Node starts after the first of each node.
    pub restarts: u64,
}

/// The outcome of a fleet run that kept every invariant.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetReport {
    pub scenario: String,
    pub seed: u64,
    pub chooser: Chooser,
    pub nodes: usize,
    pub backends: usize,
    /// The fingerprint of the run; same seed and commit, same hash.
    pub trace_hash: u64,
    pub events: u64,
    /// Virtual time at the end.
    pub end: Duration,
    /// When the liveness phase began.
    pub liveness_at: Duration,
    pub bounds: FleetBounds,
    pub clients: ClientTally,
    pub balance: Balance,
    pub backend_stats: Vec<BackendStats>,
    /// A node's pool taking a dead backend down, per node and death.
    pub backend_detections: Summary,
    /// A node's pool taking a recovered backend back.
    pub backend_recoveries: Summary,
    /// A node's pool ceasing to hold a dead backend available, by its own
    /// verdict or its checkers' votes, per node and death.
    pub fleet_detections: Summary,
    /// Active checks per backend per check interval in the liveness
    /// phase (every node checks: the node count; shared checks: `k`).
    pub probes_per_backend_interval: f64,
    /// A crash to the last live node's `MemberDown`.
    pub crash_detections: Summary,
    /// A crash to each live node's `MemberDown`.
    pub crash_detections_each: Summary,
    /// A graceful stop to the last live node's `MemberDown`.
    pub leave_detections: Summary,
    /// A start to every live node holding the new identity (sampled).
    pub joins: Summary,
    /// A start to the node's listeners opening (its warm start).
    pub warm_starts: Summary,
    /// From the last initial start to the first full agreement (sampled).
    pub formation: Option<Duration>,
    /// From the liveness phase to agreement for good (sampled).
    pub membership_convergence: Option<Duration>,
    /// From the liveness phase to every view within the view bound, for
    /// good (sampled).
    pub view_convergence: Option<Duration>,
    /// The longest a node missed an origin's newer report, over the
    /// liveness samples after membership converged.
    pub view_staleness_max: Duration,
    /// The same over every sample of the run at which membership agreed
    /// (after formation), faults and all: not held to a bound.
    pub view_staleness_run_max: Duration,
    /// `(missing, observed)`: at each sample, each pair of a running node
    /// and a peer that has reported for longer than the report TTL;
    /// missing when the node holds no report of the peer's current life
    /// (never arrived, or expired). Non-zero means remote counts vanish.
    pub view_gaps: (u64, u64),
    pub drains: DrainStats,
    /// Fleet-wide budgets, when the scenario sets one.
    pub budget: Option<BudgetStats>,
    pub members: MemberStats,
    pub net: NetStats,
    /// Only from [`super::sim::run_keep_going`]: the first violation of
    /// each invariant; a run with any failed.
    pub violations: Vec<crate::Violation>,
}

impl FleetReport {
    /// Nodes × the run's length (liveness phase included), in hours.
    pub fn node_hours(&self) -> f64 {
        self.nodes as f64 * self.end.as_secs_f64() / 3600.0
    }

    /// `count` events per node-hour of the run: with no death in the
    /// schedule, `members.downs` and `members.rejoins` this way are the
    /// false-down rates of decision 50.
    pub fn per_node_hour(&self, count: u64) -> f64 {
        count as f64 / self.node_hours().max(f64::MIN_POSITIVE)
    }
}

fn ms(d: Duration) -> String {
    millis(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn opt(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), ms)
}

fn summary(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    s: &Summary,
    bound: Option<Duration>,
) -> fmt::Result {
    write!(f, "  {what:<26}")?;
    if s.count == 0 {
        write!(f, " none")?;
    } else {
        write!(
            f,
            " n={:<5} median {:>12} p99 {:>12} max {:>12}",
            s.count,
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        )?;
    }
    match bound {
        Some(b) => writeln!(f, "  (bound {})", ms(b)),
        None => writeln!(f),
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} seed {}: ok, trace {:016x}, {} events, {} nodes, {} backends, policy {}, liveness from {}, ended at {}",
            self.scenario,
            self.seed,
            self.trace_hash,
            self.events,
            self.nodes,
            self.backends,
            self.chooser,
            ms(self.liveness_at),
            ms(self.end)
        )?;
        let c = &self.clients;
        writeln!(
            f,
            "  clients {}: served {}, reset by backend {}, by node {}, refused {} (no backend {}, retries spent {}, no node {}), redirected by DNS {}",
            c.arrived,
            c.served,
            c.reset_backend,
            c.reset_node,
            c.refused(),
            c.refused_no_backend,
            c.refused_retries,
            c.refused_no_node,
            c.redirected
        )?;
        let b = &self.balance;
        writeln!(
            f,
            "  balance (true fleet-wide counts, {} samples):",
            b.samples
        )?;
        writeln!(
            f,
            "    peak/mean avg {:.3}  p99 {:.3}   busiest backend p99 {}  max {}   mean per backend {:.2}",
            b.peak_over_mean_avg,
            b.peak_over_mean_p99,
            b.max_active_p99,
            b.max_active_max,
            b.mean_active_avg
        )?;
        for s in &self.backend_stats {
            writeln!(
                f,
                "    {:<14} chosen {:>7} connected {:>7} connect failures {:>5} full {:>5} resets {:>5} checks {:>6} ({} failed)",
                s.name,
                s.chosen,
                s.connections,
                s.connect_failures,
                s.full_refusals,
                s.resets,
                s.checks,
                s.check_failures
            )?;
        }
        writeln!(f, "  times:")?;
        summary(
            f,
            "backend detection",
            &self.backend_detections,
            Some(self.bounds.detection),
        )?;
        summary(
            f,
            "backend unavailable (all)",
            &self.fleet_detections,
            Some(self.bounds.shared_detection),
        )?;
        writeln!(
            f,
            "  {:<26} {:.2} per backend per interval (liveness phase)",
            "probe load", self.probes_per_backend_interval
        )?;
        summary(
            f,
            "backend recovery",
            &self.backend_recoveries,
            Some(self.bounds.recovery),
        )?;
        summary(f, "crash detection (all)", &self.crash_detections, None)?;
        summary(
            f,
            "crash detection (each)",
            &self.crash_detections_each,
            None,
        )?;
        summary(f, "leave detection (all)", &self.leave_detections, None)?;
        summary(f, "join (all hold it)", &self.joins, None)?;
        summary(f, "warm start", &self.warm_starts, None)?;
        writeln!(f, "  {:<26} {}", "formation", opt(self.formation))?;
        writeln!(
            f,
            "  {:<26} {}  (bound {})",
            "membership convergence",
            opt(self.membership_convergence),
            ms(self.bounds.membership)
        )?;
        writeln!(
            f,
            "  {:<26} {}  (staleness max {}, bound {}; over the whole run {})",
            "view convergence",
            opt(self.view_convergence),
            ms(self.view_staleness_max),
            ms(self.bounds.view),
            ms(self.view_staleness_run_max)
        )?;
        writeln!(
            f,
            "  {:<26} {} of {} node-peer samples ({:.3}%) held no report of a live, reporting peer",
            "view gaps",
            self.view_gaps.0,
            self.view_gaps.1,
            100.0 * self.view_gaps.0 as f64 / self.view_gaps.1.max(1) as f64
        )?;
        let d = &self.drains;
        if d.commands > 0 {
            writeln!(
                f,
                "  drains: {} commands ({} from a clock behind), {} receivers held to the hop bound ({}), {} connects before a drain reached the node; staleness max {} (bound {})",
                d.commands,
                d.clock_behind,
                d.hops_checked,
                ms(self.bounds.drain_hop),
                d.connects_drained_elsewhere,
                ms(d.staleness_max),
                ms(self.bounds.drain)
            )?;
            summary(f, "drain spread (all hold it)", &d.spread, None)?;
        }
        if let Some(b) = &self.budget {
            writeln!(
                f,
                "  budget {}: peak {} ({:.3} of the budget) at {}; refused by it {} ({} with the fleet under 95 %)",
                b.limit,
                b.peak,
                f64::from(b.peak) / f64::from(b.limit.max(1)),
                ms(b.peak_at),
                self.clients.refused_budget,
                self.clients.refused_budget_under
            )?;
            summary(f, "budget refill after a crash", &b.refills, None)?;
        }
        let m = &self.members;
        writeln!(
            f,
            "  membership events: up {}, down {}, renamed {}, rejoined {}, restarts {}, errors {}{}",
            m.ups,
            m.downs,
            m.renames,
            m.rejoins,
            m.restarts,
            m.errors,
            if m.error_samples.is_empty() {
                String::new()
            } else {
                format!(" (first: {})", m.error_samples.join("; "))
            }
        )?;
        writeln!(
            f,
            "  per node-hour ({:.2} node-hours): down {:.3}, rejoined {:.3}",
            self.node_hours(),
            self.per_node_hour(m.downs),
            self.per_node_hour(m.rejoins)
        )?;
        let n = &self.net;
        write!(
            f,
            "  datagrams: {:.1} and {:.0} bytes per node per second; {} sent ({} of them reports), {} delivered, {} lost, {} cut, {} duplicated, {} to dead nodes, {} dropped while paused; syncs {} ok, {} failed",
            n.datagrams_per_node_second(),
            n.bytes_per_node_second(),
            n.datagrams_sent,
            n.report_datagrams_sent,
            n.delivered,
            n.lost,
            n.cut,
            n.duplicated,
            n.to_dead_node,
            n.dropped_paused,
            n.syncs_ok,
            n.syncs_failed
        )?;
        for v in &self.violations {
            write!(f, "\n  VIOLATION: {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(percentile_index(1, 99), 0);
        assert_eq!(percentile_index(100, 99), 98);
        assert_eq!(percentile_index(100, 50), 49);
        assert_eq!(percentile_index(200, 99), 197);
        let s = Summary::of(&[3, 1, 2].map(Duration::from_millis));
        assert_eq!(s.count, 3);
        assert_eq!(s.median, Duration::from_millis(2));
        assert_eq!(s.max, Duration::from_millis(3));
        assert_eq!(Summary::of(&[]), Summary::default());
    }

    #[test]
    fn balance_of_even_and_skewed_samples() {
        let e = BalanceSample::even;
        let even = Balance::from_samples(&[e(2, 2.0), e(2, 2.0)]);
        assert_eq!(even.peak_over_mean_avg, 1.0);
        let skewed = Balance::from_samples(&[e(4, 2.0), e(2, 2.0)]);
        assert_eq!(skewed.peak_over_mean_avg, 1.5);
        assert_eq!(skewed.peak_over_mean_p99, 2.0);
        assert_eq!(skewed.max_active_max, 4);
    }
}
