//! The configuration file's shape as serde reads it. Unknown fields are
//! errors (a typo must not be silently ignored); every default is here.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    pub cluster: Option<RawCluster>,
    pub dns: Option<RawDns>,
}

/// The `[dns]` table: this node answers for the fleet's name (decision 51).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub bind: String,
    pub name: String,
    #[serde(default = "default_dns_ttl_s")]
    pub ttl_s: u32,
    pub advertise: Option<Vec<String>>,
    /// Lets `bind` use port 0, for tests (the `ready` log line says which
    /// port the kernel picked).
    #[serde(default)]
    pub allow_ephemeral_port: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub bind: String,
    pub advertise: Option<String>,
    #[serde(default)]
    pub seeds: Vec<String>,
    pub resolver: Option<String>,
    pub ca: String,
    pub cert: String,
    pub key: String,
    // The fleet's timings: absent means `shoal_core::node::Settings`'
    // default, the one place they are derived.
    pub report_interval_ms: Option<u64>,
    pub report_refresh_ms: Option<u64>,
    pub report_ttl_ms: Option<u64>,
    pub report_early_gap_ms: Option<u64>,
    pub report_early_max: Option<u32>,
    pub sync_interval_ms: Option<u64>,
    pub warm_start_timeout_ms: Option<u64>,
    pub reseed_interval_ms: Option<u64>,
    pub resolve_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    #[serde(default = "default_node_name")]
    pub name: String,
    pub admin: Option<String>,
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    pub worker_threads: Option<u32>,
    #[serde(default = "default_admin_connections_max")]
    pub admin_connections_max: u32,
    #[serde(default = "default_admin_header_timeout_ms")]
    pub admin_header_timeout_ms: u64,
    #[serde(default = "default_admin_idle_timeout_ms")]
    pub admin_idle_timeout_ms: u64,
    pub takeover_socket: Option<String>,
    pub resolver: Option<String>,
    #[serde(default = "default_backend_resolve_interval_ms")]
    pub backend_resolve_interval_ms: u64,
}

impl Default for RawNode {
    fn default() -> Self {
        RawNode {
            name: default_node_name(),
            admin: None,
            drain_timeout_ms: default_drain_timeout_ms(),
            worker_threads: None,
            admin_connections_max: default_admin_connections_max(),
            admin_header_timeout_ms: default_admin_header_timeout_ms(),
            admin_idle_timeout_ms: default_admin_idle_timeout_ms(),
            takeover_socket: None,
            resolver: None,
            backend_resolve_interval_ms: default_backend_resolve_interval_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub bind: String,
    #[serde(default = "default_policy")]
    pub policy: String,
    pub backends: Vec<RawBackend>,
    pub max_connections: Option<u32>,
    pub backend_max_connections: Option<u32>,
    pub fleet_max_connections: Option<u32>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// Lets `bind` use port 0 (the kernel picks one; `/status` shows it).
    /// Meant for tests and demos, where a fixed port could be taken.
    #[serde(default)]
    pub allow_ephemeral_port: bool,
    /// `"v1"` or `"v2"`: a PROXY protocol header before the client's bytes.
    pub send_proxy: Option<String>,
    #[serde(default)]
    pub accept_proxy: bool,
    #[serde(default = "default_proxy_header_timeout_ms")]
    pub proxy_header_timeout_ms: u64,
    #[serde(default)]
    pub health: RawHealth,
}

/// One element of a listener's `backends`: `"host:port"`, or a table
/// `{ addr = "host:port", weight = 3 }`. Deserialized by hand rather than
/// as an untagged enum, so a table's mistakes (an unknown key, no `addr`,
/// a weight that is not a number) keep serde's message naming them.
#[derive(Debug)]
pub struct RawBackend {
    pub addr: String,
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTable {
    addr: String,
    #[serde(default = "default_weight")]
    weight: u32,
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawBackend;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a backend: \"host:port\" or { addr = \"host:port\", weight = N }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: v.to_owned(),
                    weight: default_weight(),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawBackend {
                    addr: t.addr,
                    weight: t.weight,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Nodes of the fleet that actively check each backend; 0 or absent:
    /// the default (`shoal_core::checkers::CHECKERS_DEFAULT`).
    #[serde(default)]
    pub checkers: u32,
    /// The local IP address health probes are sent from.
    pub source: Option<String>,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            rise: default_rise(),
            fall: default_fall(),
            checkers: 0,
            source: None,
        }
    }
}

/// Short: a client that re-resolves stops getting a dead node's address
/// this long after the fleet noticed.
fn default_dns_ttl_s() -> u32 {
    5
}
fn default_node_name() -> String {
    "shoal".to_owned()
}
fn default_drain_timeout_ms() -> u64 {
    30_000
}
/// A scraper or two and a few people with curl; far below what would
/// starve the node of file descriptors.
fn default_admin_connections_max() -> u32 {
    64
}
/// Generous for any client on a real network, short enough that a
/// connection holding a partial request is gone long before an operator
/// wonders why.
fn default_admin_header_timeout_ms() -> u64 {
    10_000
}
fn default_admin_idle_timeout_ms() -> u64 {
    60_000
}
fn default_weight() -> u32 {
    1
}
/// Envoy's DNS refresh default: a backend that left the name stops
/// getting clients within about this long.
fn default_backend_resolve_interval_ms() -> u64 {
    5_000
}
fn default_policy() -> String {
    "least-conn".to_owned()
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_retries() -> u32 {
    2
}
fn default_proxy_header_timeout_ms() -> u64 {
    3_000
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}
fn default_backlog() -> u32 {
    1024
}
fn default_interval_ms() -> u64 {
    2_000
}
fn default_timeout_ms() -> u64 {
    1_000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
