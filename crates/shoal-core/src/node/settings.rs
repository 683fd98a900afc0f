//! The one settings type of a fleet node: every duration and bound the
//! [`super::Node`] works with, derived in one place. The runtime builds it
//! from the `[cluster]` table of the configuration; the simulator builds
//! it from the same defaults and overrides the fields a scenario names.

use crate::cluster::{ClusterConfig, Detection};
use std::net::IpAddr;
use std::time::Duration;

/// How often a node publishes the shards of its report that changed.
pub const REPORT_INTERVAL_DEFAULT: Duration = Duration::from_millis(250);
/// A node whose counts changed publishes early this long after its last
/// publication at the soonest (decision 61)...
pub const REPORT_EARLY_GAP_DEFAULT: Duration = Duration::from_millis(25);
/// ... at most this many times between two periodic reports.
pub const REPORT_EARLY_MAX_DEFAULT: u32 = 1;
/// The most `cluster.report_early_max` may be: each early report is a
/// datagram to every peer.
pub const REPORT_EARLY_MAX_LIMIT: u32 = 8;
/// Unchanged shards are published every this many report intervals.
pub const REFRESH_PER_INTERVAL: u32 = 4;
/// A peer's shard lives this many refresh periods without a refresh:
/// two refreshes may be lost before a live peer's load stops counting.
pub const TTL_PER_REFRESH: u32 = 3;

/// Settings of one fleet node. `Settings::default()` is what a
/// configuration without overrides gives; [`Settings::with_reports`]
/// derives the report refresh and TTL from the interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often the shards of this node's report that changed are sent.
    pub report_interval: Duration,
    /// How often an unchanged shard is sent anyway (keeps peers' copies
    /// within `report_ttl`). Default: [`REFRESH_PER_INTERVAL`] intervals.
    pub report_refresh: Duration,
    /// A peer's shard older than this stops counting. Default:
    /// [`TTL_PER_REFRESH`] refresh periods.
    pub report_ttl: Duration,
    /// A change of this node's counts is published early (decision 61),
    /// at the soonest this long after the last publication...
    pub report_early_gap: Duration,
    /// ... at most this many times between two periodic reports (0: never
    /// early, only every `report_interval`).
    pub report_early_max: u32,
    /// Full-state push-pull with one random live member, this often.
    pub sync_interval: Duration,
    /// A sync not answered by then has failed (the shell also gives up on
    /// the stream at that deadline).
    pub sync_timeout: Duration,
    /// From the node's start (seed resolution included), how long it may
    /// try to pull a seed's full state before its listeners accept anyway.
    pub warm_start_timeout: Duration,
    /// While the node knows no live peer, seeds are re-resolved and
    /// re-announced this often.
    pub reseed_interval: Duration,
    /// Seeds are re-resolved this often even when the node is not alone,
    /// so a seed name that gains an address is followed.
    pub resolve_interval: Duration,
    /// After the leave notice, how long the node keeps its transport open
    /// (still answering, no longer publishing) so the notice gets out:
    /// QUIC drops datagrams still queued when a connection closes.
    pub leave_linger: Duration,
    /// The fleet size foca's settings start from (they follow the live
    /// node count from then on).
    pub expected_nodes: u32,
    /// The IP addresses at which this node takes clients, advertised to
    /// the fleet while it serves (the fleet's DNS answer, decision 51);
    /// at most [`crate::cluster::report::CLIENT_ADDRS_MAX`] count.
    /// Default: none.
    pub client_addrs: Vec<IpAddr>,
    /// How long the largest fleet seen is remembered for fleet-wide
    /// budgets: a node that sees at most half of it meanwhile keeps to its
    /// fair part of each budget (it may be cut off; decision 48).
    pub budget_hold: Duration,
    /// Failure detection: probe period, indirect probes, suspicion
    /// (decision 50). Not in the configuration file; the simulator's
    /// scenarios override it.
    pub detection: Detection,
}

/// Default of [`Settings::budget_hold`].
pub const BUDGET_HOLD_DEFAULT: Duration = Duration::from_secs(60);

impl Default for Settings {
    fn default() -> Self {
        Settings::with_reports(REPORT_INTERVAL_DEFAULT, None, None)
    }
}

/// A setting that cannot work, named as in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value_ms} ms: {reason}")]
pub struct SettingsError {
    /// The configuration field, e.g. `cluster.report_ttl_ms`.
    pub field: &'static str,
    pub value_ms: u128,
    pub reason: String,
}

impl Settings {
    /// The defaults with this report interval, and the refresh and TTL
    /// given or derived from it.
    pub fn with_reports(
        report_interval: Duration,
        report_refresh: Option<Duration>,
        report_ttl: Option<Duration>,
    ) -> Self {
        let report_refresh = report_refresh.unwrap_or(report_interval * REFRESH_PER_INTERVAL);
        let report_ttl = report_ttl.unwrap_or(report_refresh * TTL_PER_REFRESH);
        Settings {
            report_interval,
            report_refresh,
            report_ttl,
            report_early_gap: REPORT_EARLY_GAP_DEFAULT,
            report_early_max: REPORT_EARLY_MAX_DEFAULT,
            sync_interval: Duration::from_secs(30),
            sync_timeout: Duration::from_secs(5),
            warm_start_timeout: Duration::from_secs(3),
            reseed_interval: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(30),
            leave_linger: Duration::from_millis(300),
            expected_nodes: 3,
            client_addrs: Vec::new(),
            budget_hold: BUDGET_HOLD_DEFAULT,
            detection: Detection::default(),
        }
    }

    /// Checks the relations between the durations; the error names the
    /// configuration field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("cluster.report_interval_ms", self.report_interval),
            ("cluster.sync_interval_ms", self.sync_interval),
            ("cluster.sync_timeout_ms", self.sync_timeout),
            ("cluster.reseed_interval_ms", self.reseed_interval),
            ("cluster.resolve_interval_ms", self.resolve_interval),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(SettingsError {
                    field,
                    value_ms: 0,
                    reason: "must be positive".into(),
                });
            }
        }
        if self.report_refresh < self.report_interval {
            return Err(SettingsError {
                field: "cluster.report_refresh_ms",
                value_ms: self.report_refresh.as_millis(),
                reason: format!(
                    "must be at least report_interval_ms ({})",
                    self.report_interval.as_millis()
                ),
            });
        }
        if self.report_early_max > 0 && self.report_early_gap >= self.report_interval {
            return Err(SettingsError {
                field: "cluster.report_early_gap_ms",
                value_ms: self.report_early_gap.as_millis(),
                reason: format!(
                    "must be below report_interval_ms ({}), or set report_early_max = 0 for no early reports",
                    self.report_interval.as_millis()
                ),
            });
        }
        if self.report_early_max > REPORT_EARLY_MAX_LIMIT {
            return Err(SettingsError {
                field: "cluster.report_early_max",
                value_ms: u128::from(self.report_early_max),
                reason: format!("at most {REPORT_EARLY_MAX_LIMIT} early reports per interval"),
            });
        }
        if self.report_ttl <= self.report_refresh {
            return Err(SettingsError {
                field: "cluster.report_ttl_ms",
                value_ms: self.report_ttl.as_millis(),
                reason: format!(
                    "must exceed report_refresh_ms ({}): a shard must live longer than the time to its refresh",
                    self.report_refresh.as_millis()
                ),
            });
        }
        self.detection.validate().map_err(|e| SettingsError {
            field: e.field,
            value_ms: e.value,
            reason: e.reason.to_owned(),
        })
    }

    /// The membership and report settings of the [`crate::cluster::Cluster`].
    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig::new(
            self.expected_nodes,
            self.detection,
            self.report_interval,
            self.report_ttl,
        )
        .with_refresh(self.report_refresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_and_ttl_follow_the_interval_unless_given() {
        let s = Settings::with_reports(Duration::from_millis(100), None, None);
        assert_eq!(s.report_refresh, Duration::from_millis(400));
        assert_eq!(s.report_ttl, Duration::from_millis(1200));
        let s = Settings::with_reports(
            Duration::from_millis(100),
            Some(Duration::from_millis(1000)),
            None,
        );
        assert_eq!(s.report_ttl, Duration::from_millis(3000));
        assert!(s.validate().is_ok());
        assert_eq!(Settings::default().report_ttl, Duration::from_secs(3));
    }

    #[test]
    fn a_ttl_within_the_refresh_is_refused_by_name() {
        let s = Settings::with_reports(
            Duration::from_millis(250),
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(1)),
        );
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "cluster.report_ttl_ms");
        let s = Settings::with_reports(
            Duration::from_millis(250),
            Some(Duration::from_millis(100)),
            None,
        );
        assert_eq!(s.validate().unwrap_err().field, "cluster.report_refresh_ms");
    }
}
