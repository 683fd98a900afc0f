//! The Prometheus series shoal exports, in one registry.
//!
//! Counters are updated on the data path (each is an atomic; the handles a
//! connection uses are looked up once per connection). Gauges that mirror
//! core state (health, counts) are set from the pools at scrape time, so
//! they can never drift from what the core knows.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Labels of per-backend series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub listener: String,
    pub backend: String,
}

/// Labels of per-listener series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

/// Which way bytes flowed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Direction {
    client_to_backend,
    backend_to_client,
}

/// Labels of `shoal_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    pub backend: String,
    pub direction: Direction,
}

/// Result of an active health check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CheckResult {
    ok,
    failed,
}

/// Labels of `shoal_health_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub listener: String,
    pub backend: String,
    pub result: CheckResult,
}

/// What was being done when a local resource ran out (see
/// [`crate::local`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LocalOp {
    /// Accepting a client.
    accept,
    /// Connecting to a backend for a client.
    connect,
    /// An active health check.
    check,
}

impl LocalOp {
    /// The label value, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            LocalOp::accept => "accept",
            LocalOp::connect => "connect",
            LocalOp::check => "check",
        }
    }
}

/// Labels of `shoal_local_resource_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LocalErrorLabels {
    pub listener: String,
    pub op: LocalOp,
}

/// Which way gossip flowed: `in` or `out`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Flow {
    In,
    Out,
}

impl EncodeLabelValue for Flow {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> std::fmt::Result {
        use std::fmt::Write;
        encoder.write_str(match self {
            Flow::In => "in",
            Flow::Out => "out",
        })
    }
}

/// Labels of the gossip series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub direction: Flow,
}

/// How the fleet's DNS server answered a query (see [`crate::dns`]).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DnsResult {
    /// Records of the asked type.
    answer,
    /// The name, but no record of that type.
    nodata,
    /// A name below the fleet's name.
    nxdomain,
    /// Another name or class: not this server's.
    refused,
    /// The fleet's answer was empty (the node left, drains, or knows no
    /// node taking clients): REFUSED, so the resolver asks another node.
    unavailable,
    /// Not exactly one question.
    formerr,
    /// Not a query (update, notify, ...).
    notimp,
}

/// Labels of `shoal_dns_queries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    /// `A`, `AAAA`, `SOA` or `other`.
    pub qtype: &'static str,
    pub result: DnsResult,
}

/// Labels of the backend-name series: the name as configured (bounded by
/// the configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    pub name: String,
}

/// Every series, registered in `registry`.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub backend_up: Family<BackendLabels, Gauge>,
    pub backend_active: Family<BackendLabels, Gauge>,
    pub backend_cluster: Family<BackendLabels, Gauge>,
    pub backend_draining: Family<BackendLabels, Gauge>,
    pub backend_checking: Family<BackendLabels, Gauge>,
    pub connections: Family<BackendLabels, Counter>,
    pub connect_failures: Family<BackendLabels, Counter>,
    pub bytes: Family<BytesLabels, Counter>,
    pub health_checks: Family<CheckLabels, Counter>,
    pub client_connections: Family<ListenerLabels, Counter>,
    pub listener_active: Family<ListenerLabels, Gauge>,
    pub no_backend: Family<ListenerLabels, Counter>,
    pub proxy_header_errors: Family<ListenerLabels, Counter>,
    pub budget_refused: Family<ListenerLabels, Counter>,
    pub backend_budget: Family<BackendLabels, Gauge>,
    pub backend_share: Family<BackendLabels, Gauge>,
    pub backend_budget_refused: Family<BackendLabels, Counter>,
    pub local_resource_errors: Family<LocalErrorLabels, Counter>,
    pub cluster_members: Gauge,
    pub gossip_messages: Family<FlowLabels, Counter>,
    pub gossip_bytes: Family<FlowLabels, Counter>,
    pub report_age_seconds: Gauge<f64, AtomicU64>,
    pub peers_refused: Counter,
    pub datagrams_dropped: Family<DropLabels, Counter>,
    pub defunct: Counter,
    /// Reports published early, on a change of counts (decision 61).
    pub reports_early: Counter,
    pub fleet_events_dropped: Counter,
    pub admin_connections_refused: Counter,
    /// Live reloads applied, and refused (decision 57).
    pub reloads: Counter,
    pub reload_failures: Counter,
    pub dns_queries: Family<DnsLabels, Counter>,
    pub name_addresses: Family<NameLabels, Gauge>,
    pub name_lookup_failures: Family<NameLabels, Counter>,
}

/// Labels of `shoal_gossip_datagrams_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Drops the gauges of a backend a reload removed and whose last
    /// connection ended (its counters stay: they are totals).
    pub fn forget_backend(&self, labels: &BackendLabels) {
        for family in [
            &self.backend_up,
            &self.backend_active,
            &self.backend_cluster,
            &self.backend_draining,
            &self.backend_checking,
            &self.backend_budget,
            &self.backend_share,
        ] {
            family.remove(labels);
        }
    }

    /// A registry with every shoal series.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            backend_up: Family::default(),
            backend_active: Family::default(),
            backend_cluster: Family::default(),
            backend_draining: Family::default(),
            backend_checking: Family::default(),
            connections: Family::default(),
            connect_failures: Family::default(),
            bytes: Family::default(),
            health_checks: Family::default(),
            client_connections: Family::default(),
            listener_active: Family::default(),
            no_backend: Family::default(),
            proxy_header_errors: Family::default(),
            budget_refused: Family::default(),
            backend_budget: Family::default(),
            backend_share: Family::default(),
            backend_budget_refused: Family::default(),
            local_resource_errors: Family::default(),
            cluster_members: Gauge::default(),
            gossip_messages: Family::default(),
            gossip_bytes: Family::default(),
            report_age_seconds: Gauge::default(),
            peers_refused: Counter::default(),
            datagrams_dropped: Family::default(),
            defunct: Counter::default(),
            reports_early: Counter::default(),
            fleet_events_dropped: Counter::default(),
            admin_connections_refused: Counter::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            dns_queries: Family::default(),
            name_addresses: Family::default(),
            name_lookup_failures: Family::default(),
        };
        registry.register(
            "shoal_backend_name_addresses",
            "Addresses the backend name resolved to at its last answer (each one a backend)",
            m.name_addresses.clone(),
        );
        registry.register(
            "shoal_backend_name_lookup_failures",
            "Lookups of the backend name that failed (timeout, server failure): its last addresses stay",
            m.name_lookup_failures.clone(),
        );
        registry.register(
            "shoal_backend_up",
            "Whether this node sends new connections to the backend (1) or not (0)",
            m.backend_up.clone(),
        );
        registry.register(
            "shoal_backend_active_connections",
            "This node's exact count of open connections to the backend",
            m.backend_active.clone(),
        );
        registry.register(
            "shoal_backend_cluster_connections",
            "This node's estimate of the whole fleet's open connections to the backend",
            m.backend_cluster.clone(),
        );
        registry.register(
            "shoal_backend_draining",
            "1 if the backend is drained fleet-wide (no node opens new connections to it; established ones finish)",
            m.backend_draining.clone(),
        );
        registry.register(
            "shoal_backend_checking",
            "1 if this node actively checks the backend: it is one of the health.checkers nodes that check it, or covers for missing ones (shoal_health_checks_total counts the probes)",
            m.backend_checking.clone(),
        );
        registry.register(
            "shoal_connections",
            "Client connections forwarded to the backend (connect succeeded)",
            m.connections.clone(),
        );
        registry.register(
            "shoal_connect_failures",
            "Failed connect attempts to the backend on behalf of clients",
            m.connect_failures.clone(),
        );
        registry.register(
            "shoal_bytes",
            "Bytes forwarded, by direction",
            m.bytes.clone(),
        );
        registry.register(
            "shoal_health_checks",
            "Active health checks, by result",
            m.health_checks.clone(),
        );
        registry.register(
            "shoal_listener_client_connections",
            "Client connections accepted by the listener",
            m.client_connections.clone(),
        );
        registry.register(
            "shoal_listener_active_connections",
            "Client connections open on the listener",
            m.listener_active.clone(),
        );
        registry.register(
            "shoal_listener_no_backend",
            "Clients closed because no backend could take them",
            m.no_backend.clone(),
        );
        registry.register(
            "shoal_listener_proxy_header_errors",
            "Clients closed because they did not start with a valid PROXY protocol header (accept_proxy listeners)",
            m.proxy_header_errors.clone(),
        );
        registry.register(
            "shoal_listener_budget_refused",
            "Clients closed because every backend that could take them was at this node's share of its fleet_max_connections",
            m.budget_refused.clone(),
        );
        registry.register(
            "shoal_backend_fleet_budget",
            "The backend's fleet_max_connections: connections the whole fleet may open to it",
            m.backend_budget.clone(),
        );
        registry.register(
            "shoal_backend_fleet_share",
            "This node's share of the backend's fleet_max_connections (new connections open while its own count is below it)",
            m.backend_share.clone(),
        );
        registry.register(
            "shoal_backend_budget_refused",
            "Times the backend's fleet budget alone kept it from a client that was then refused",
            m.backend_budget_refused.clone(),
        );
        registry.register(
            "shoal_local_resource_errors",
            "Accepts, connects and health checks that failed for want of a local resource (file descriptors, memory, ephemeral ports); never counted against a backend",
            m.local_resource_errors.clone(),
        );
        registry.register(
            "shoal_cluster_members",
            "Live members of the fleet, this node included",
            m.cluster_members.clone(),
        );
        registry.register(
            "shoal_gossip_messages",
            "Datagrams exchanged with peers (SWIM packets and load reports)",
            m.gossip_messages.clone(),
        );
        registry.register(
            "shoal_gossip_bytes",
            "Payload bytes of the datagrams exchanged with peers, SWIM and load reports (QUIC overhead excluded)",
            m.gossip_bytes.clone(),
        );
        registry.register(
            "shoal_report_age_seconds",
            "Age of the oldest peer load report in use (0 with no peer)",
            m.report_age_seconds.clone(),
        );
        registry.register(
            "shoal_cluster_peers_refused",
            "Peers refused at the TLS handshake (certificate not from the cluster CA, or no certificate)",
            m.peers_refused.clone(),
        );
        registry.register(
            "shoal_gossip_datagrams_dropped",
            "Datagrams to peers the transport dropped, by reason (no_connection: none yet, one is being set up)",
            m.datagrams_dropped.clone(),
        );
        registry.register(
            "shoal_cluster_defunct",
            "Times this node was declared down and could not renew its identity (it takes no part in the fleet until restarted)",
            m.defunct.clone(),
        );
        registry.register(
            "shoal_reports_early",
            "Load reports published before their interval because this node's connection counts changed (cluster.report_early_gap_ms, report_early_max)",
            m.reports_early.clone(),
        );
        registry.register(
            "shoal_fleet_events_dropped",
            "Fleet events and datagrams the core dropped because its bounded output queues were full",
            m.fleet_events_dropped.clone(),
        );
        registry.register(
            "shoal_admin_connections_refused",
            "Admin connections closed at once because node.admin_connections_max were open",
            m.admin_connections_refused.clone(),
        );
        registry.register(
            "shoal_reloads",
            "Live reloads (SIGHUP, POST /reload) applied",
            m.reloads.clone(),
        );
        registry.register(
            "shoal_reload_failures",
            "Live reloads refused: a file that does not validate, or a setting that cannot change while the node runs; nothing of them was applied",
            m.reload_failures.clone(),
        );
        registry.register(
            "shoal_dns_queries",
            "Queries the fleet's DNS server ([dns]) answered, by query type and result",
            m.dns_queries.clone(),
        );
        m.cluster_members.set(1);
        Metrics { registry, ..m }
    }

    /// Adds the gossip traffic between two readings of the core's counters.
    pub fn count_gossip(
        &self,
        before: &shoal_core::cluster::ClusterStats,
        after: &shoal_core::cluster::ClusterStats,
    ) {
        let flows = [
            (
                Flow::In,
                after.datagrams_in - before.datagrams_in,
                after.bytes_in - before.bytes_in,
            ),
            (
                Flow::Out,
                after.datagrams_out - before.datagrams_out,
                after.bytes_out - before.bytes_out,
            ),
        ];
        for (direction, messages, bytes) in flows {
            let labels = FlowLabels { direction };
            self.gossip_messages.get_or_create(&labels).inc_by(messages);
            self.gossip_bytes.get_or_create(&labels).inc_by(bytes);
        }
    }

    /// Adds the transport's datagram drops between two readings.
    pub fn count_drops(
        &self,
        before: &shoal_transport::TransportStats,
        after: &shoal_transport::TransportStats,
    ) {
        let reasons = [
            (
                "no_connection",
                after.datagrams_dropped_no_connection - before.datagrams_dropped_no_connection,
            ),
            (
                "too_large",
                after.datagrams_dropped_too_large - before.datagrams_dropped_too_large,
            ),
            (
                "unsupported",
                after.datagrams_dropped_unsupported - before.datagrams_dropped_unsupported,
            ),
            (
                "peers_full",
                after.datagrams_dropped_peers_full - before.datagrams_dropped_peers_full,
            ),
            (
                "queue_full",
                after.datagrams_dropped_queue_full - before.datagrams_dropped_queue_full,
            ),
        ];
        for (reason, n) in reasons {
            self.datagrams_dropped
                .get_or_create(&DropLabels { reason })
                .inc_by(n);
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
