//! # shoal-config
//!
//! shoal's configuration file: TOML read into raw serde structs (unknown
//! fields rejected), then validated into typed values. Every error is one
//! line naming the file position or the field and the value that was wrong,
//! e.g. `listener "web": backends[1] = "127.0.0.1:99999": invalid address`.
//!
//! ## Layout
//! - [`raw`]: the file's shape, as serde reads it, with defaults.
//! - [`diff`]: what changed between two configurations (a live reload).
//! - this module: [`Config`] and friends, the validated form the runtime
//!   uses, and [`ConfigError`].

pub mod diff;
pub mod raw;

use shoal_core::node::Settings;
use shoal_core::proxy_header::ProxyVersion;
use shoal_core::{HealthConfig, Policy};
use shoal_seeds::escape_controls;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node: NodeConfig,
    pub listeners: Vec<ListenerConfig>,
    /// The fleet; `None` is a fleet of one.
    pub cluster: Option<ClusterConfig>,
    /// This node's DNS answer for the fleet's name; `None`: no DNS server.
    pub dns: Option<DnsConfig>,
    /// The IP addresses at which this node takes clients, advertised to
    /// the fleet (`dns.advertise`, or the listeners' bind IPs that are not
    /// wildcards, at most [`CLIENT_ADDRS_MAX`]); also in
    /// `cluster.settings.client_addrs`.
    pub client_addrs: Vec<IpAddr>,
}

/// The `[dns]` table: an authoritative answer for one name, the fleet's.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Where the UDP and TCP DNS server listens.
    pub bind: SocketAddr,
    /// The fleet's name: absolute (trailing dot), lower case.
    pub name: String,
    /// The TTL of every record, in seconds.
    pub ttl_s: u32,
}

/// Backends one node takes, over all its listeners: what its load report
/// can carry.
pub const BACKENDS_MAX: usize =
    shoal_core::cluster::report::ENTRIES_PER_SHARD_MAX * shoal_core::cluster::report::SHARDS_MAX;

/// Largest `dns.ttl_s`: an hour. A long TTL defeats the answer's point
/// (clients keep a dead node's address that long).
pub const DNS_TTL_S_MAX: u32 = 3_600;
pub use shoal_core::cluster::report::CLIENT_ADDRS_MAX;

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The node's QUIC endpoint.
    pub bind: SocketAddr,
    /// The address peers dial (defaults to `bind`; needed when `bind` is
    /// a wildcard like 0.0.0.0).
    pub advertise: SocketAddr,
    /// `host:port` strings; a name resolves to all its addresses.
    pub seeds: Vec<String>,
    /// A DNS server for seed names instead of the system resolver.
    pub resolver: Option<SocketAddr>,
    /// Cluster CA certificate, node certificate and key (PEM), resolved
    /// against the configuration file's directory.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The fleet node's timings, derived once (`shoal_core::node::Settings`
    /// holds every default and derivation; the simulator builds from it too).
    pub settings: Settings,
}

/// The `[node]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The node's name in logs, metrics and (later) the cluster.
    pub name: String,
    /// Where `/metrics` and `/status` are served; none if absent.
    pub admin: Option<SocketAddr>,
    /// How long open connections may finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// Data threads (each with its own event loop and listening sockets);
    /// `None` = one per core.
    pub worker_threads: Option<usize>,
    /// Admin connections served at once; further ones are closed at once.
    pub admin_connections_max: u32,
    /// How long an admin client may take to send a request's head, also
    /// counted from the end of the previous response on a kept-alive
    /// connection.
    pub admin_header_timeout: Duration,
    /// An admin connection with no byte either way for this long is closed
    /// (a client that stops reading a response, or trickles a body).
    pub admin_idle_timeout: Duration,
    /// A Unix socket where this node hands its listening sockets to a
    /// successor (`shoal run --take-over PATH`), relative to the file.
    pub takeover_socket: Option<PathBuf>,
    /// The DNS server asked for backend names (`node.resolver`); `None`:
    /// `cluster.resolver` if set, else the system resolver
    /// ([`Config::backend_resolver`]).
    pub resolver: Option<SocketAddr>,
    /// How often backend names are resolved again.
    pub backend_resolve_interval: Duration,
}

/// The most addresses one backend name stands for (more in an answer are
/// dropped, with a warning). The node's backend count counts each name
/// as this many, so what names resolve to never exceeds what a report
/// carries.
pub const NAME_ADDRESSES_MAX: usize = 64;

/// Largest backend weight (HAProxy's too).
pub const WEIGHT_MAX: u32 = 256;

/// Where one entry of a listener's `backends` points.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendTarget {
    /// An IP literal: one backend.
    Addr(SocketAddr),
    /// A DNS name (lower case, no trailing dot): every A and AAAA address
    /// it resolves to, each with `port`, is a backend; resolved again
    /// every `node.backend_resolve_interval_ms`.
    Name { host: String, port: u16 },
}

impl std::fmt::Display for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendTarget::Addr(a) => write!(f, "{a}"),
            BackendTarget::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// One entry of a listener's `backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendEntry {
    pub target: BackendTarget,
    /// 1 to [`WEIGHT_MAX`]; every address of a name has it.
    pub weight: u32,
}

/// A backend as the pool has it: one address, with the weight of the
/// entry it came from and, for a name's address, the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub addr: SocketAddr,
    pub weight: u32,
    /// The name it is an address of; `None` for an IP literal.
    pub via: Option<String>,
}

/// The addresses each backend name resolved to last (lower-case host →
/// IPs), as the runtime keeps them between lookups.
pub type NameAddrs = BTreeMap<String, Vec<IpAddr>>;

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub policy: Policy,
    /// As configured, in order: IP literals and names, with weights
    /// ([`ListenerConfig::members`] gives the addresses).
    pub backends: Vec<BackendEntry>,
    /// Concurrent client connections this listener holds; past it, new
    /// clients wait in the kernel's accept queue.
    pub max_connections: Option<u32>,
    /// Concurrent connections this node opens to any one backend; a full
    /// backend is skipped, and a client for whom every backend is full is
    /// refused (closed at once).
    pub backend_max_connections: Option<u32>,
    /// Concurrent connections the whole fleet opens to any one backend
    /// (each node keeps to its share; decision 48). Both limits apply.
    pub fleet_max_connections: Option<u32>,
    pub connect_timeout: Duration,
    /// How many other backends a client is tried on after a failed connect.
    pub retries: u32,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// The listen(2) backlog.
    pub backlog: u32,
    /// A PROXY protocol header (this version) is sent to the backend
    /// before the client's first byte, so the backend learns the client's
    /// address; health checks send the version's "no client" form.
    pub send_proxy: Option<ProxyVersion>,
    /// Every client must start with a PROXY protocol header (v1 or v2):
    /// the listener is behind another balancer, and the header's source
    /// is the client (in logs, and in the header sent on with
    /// `send_proxy`). A connection without a valid header within
    /// `proxy_header_timeout` is closed.
    pub accept_proxy: bool,
    pub proxy_header_timeout: Duration,
    pub health: HealthConfig,
    /// The local address health probes are sent from (`health.source`);
    /// `None`: the kernel chooses, as for client connections.
    pub health_source: Option<std::net::IpAddr>,
}

impl ListenerConfig {
    /// The backend names this listener has (lower case), each once.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut seen = BTreeSet::new();
        self.backends.iter().filter_map(move |b| match &b.target {
            BackendTarget::Name { host, .. } if seen.insert(host.as_str()) => Some(host.as_str()),
            _ => None,
        })
    }

    /// The listener's backends now: every IP literal, and every address
    /// in `resolved` of every name (a name not in it yet has none), in
    /// configuration order, a name's addresses sorted. An address that two
    /// entries give is one backend, with the first entry's weight. With
    /// `health.source`, a name's addresses of the other family are left
    /// out (probes to them could not be sent; literals are checked at
    /// validation). At most `max` (the rest is dropped; the caller warns).
    pub fn members(&self, resolved: &NameAddrs, max: usize) -> Vec<Member> {
        let mut out: Vec<Member> = Vec::with_capacity(self.backends.len());
        let mut push = |m: Member| {
            if out.len() < max && !out.iter().any(|o| o.addr == m.addr) {
                out.push(m);
            }
        };
        for b in &self.backends {
            match &b.target {
                BackendTarget::Addr(addr) => push(Member {
                    addr: *addr,
                    weight: b.weight,
                    via: None,
                }),
                BackendTarget::Name { host, port } => {
                    let mut ips = resolved.get(host).cloned().unwrap_or_default();
                    ips.sort_unstable();
                    for ip in ips {
                        if self
                            .health_source
                            .is_some_and(|s| s.is_ipv4() != ip.is_ipv4())
                        {
                            continue;
                        }
                        push(Member {
                            addr: SocketAddr::new(ip, *port),
                            weight: b.weight,
                            via: Some(host.clone()),
                        });
                    }
                }
            }
        }
        out
    }
}

impl Config {
    /// The DNS server asked for backend names: `node.resolver`, else
    /// `cluster.resolver`, else `None` (the system resolver).
    pub fn backend_resolver(&self) -> Option<SocketAddr> {
        self.node
            .resolver
            .or_else(|| self.cluster.as_ref().and_then(|c| c.resolver))
    }

    /// Every backend name of every listener, each once.
    pub fn backend_names(&self) -> BTreeSet<String> {
        self.listeners
            .iter()
            .flat_map(|l| l.names().map(str::to_owned))
            .collect()
    }
}

/// What was wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value of the wrong type or an unknown field; `field` is its path,
    /// e.g. `listener[0].health.interval_ms`.
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Type {
        origin: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    #[error("{origin}: {field} = {value}: {reason}")]
    Invalid {
        origin: String,
        field: String,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses and validates `text`; `origin` names it in errors. Relative
    /// certificate paths are taken from the current directory.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse(text, origin, Path::new(""))
    }

    fn parse(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let position = |e: &toml::de::Error| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            let message = e.message().trim().replace('\n', " ");
            (line, column, escape_controls(&message))
        };
        let document = toml::de::Deserializer::parse(text).map_err(|e| {
            let (line, column, message) = position(&e);
            ConfigError::Syntax {
                origin: origin.to_owned(),
                line,
                column,
                message,
            }
        })?;
        // toml's errors give the position only; the path names the field,
        // which is what a reader of the message looks for.
        let raw: raw::RawConfig = serde_path_to_error::deserialize(document).map_err(|e| {
            let field = escape_controls(&e.path().to_string());
            let (line, column, message) = position(e.inner());
            if field == "." {
                ConfigError::Syntax {
                    origin: origin.to_owned(),
                    line,
                    column,
                    message,
                }
            } else {
                ConfigError::Type {
                    origin: origin.to_owned(),
                    line,
                    column,
                    field,
                    message,
                }
            }
        })?;
        validate(raw, origin, base)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

struct Ctx<'a> {
    origin: &'a str,
}

impl Ctx<'_> {
    fn invalid(
        &self,
        field: impl Into<String>,
        value: impl std::fmt::Debug,
        reason: impl Into<String>,
    ) -> ConfigError {
        // The field may hold a listener's name and the reason another
        // crate's message quoting the value, both as configured.
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            field: escape_controls(&field.into()),
            value: format!("{value:?}"),
            reason: escape_controls(&reason.into()),
        }
    }

    fn addr(&self, field: impl Into<String>, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                field,
                value,
                "not an IP:port socket address (e.g. 127.0.0.1:5001 or [::1]:5001; port 1-65535)",
            )
        })
    }

    fn millis(&self, field: impl Into<String>, ms: u64) -> Result<Duration, ConfigError> {
        if ms == 0 {
            return Err(self.invalid(field, ms, "must be at least 1"));
        }
        Ok(Duration::from_millis(ms))
    }
}

fn validate_cluster(
    cx: &Ctx<'_>,
    c: raw::RawCluster,
    base: &Path,
) -> Result<ClusterConfig, ConfigError> {
    let bind = cx.addr("cluster.bind", &c.bind)?;
    let advertise = match &c.advertise {
        Some(a) => cx.addr("cluster.advertise", a)?,
        None => bind,
    };
    // Port 0 (tests, demos) advertises the port the kernel picks.
    if advertise.ip().is_unspecified() {
        let (field, value) = match &c.advertise {
            Some(a) => ("cluster.advertise", a.clone()),
            None => ("cluster.bind", c.bind.clone()),
        };
        return Err(cx.invalid(
            field,
            value,
            "peers cannot dial a wildcard address; set cluster.advertise to this node's reachable IP:port",
        ));
    }
    for (i, seed) in c.seeds.iter().enumerate() {
        shoal_seeds::parse_seed(seed)
            .map_err(|e| cx.invalid(format!("cluster.seeds[{i}]"), seed, e.to_string()))?;
    }
    let resolver = c
        .resolver
        .as_deref()
        .map(|r| cx.addr("cluster.resolver", r))
        .transpose()?;
    let path = |field: &str, p: &str| {
        if p.trim().is_empty() {
            Err(cx.invalid(field, p, "must name a PEM file"))
        } else {
            Ok(base.join(p))
        }
    };
    let opt = |field: &'static str, ms: Option<u64>| ms.map(|ms| cx.millis(field, ms)).transpose();
    let mut settings = match opt("cluster.report_interval_ms", c.report_interval_ms)? {
        Some(interval) => Settings::with_reports(
            interval,
            opt("cluster.report_refresh_ms", c.report_refresh_ms)?,
            opt("cluster.report_ttl_ms", c.report_ttl_ms)?,
        ),
        None => {
            let d = Settings::default();
            Settings::with_reports(
                d.report_interval,
                opt("cluster.report_refresh_ms", c.report_refresh_ms)?,
                opt("cluster.report_ttl_ms", c.report_ttl_ms)?,
            )
        }
    };
    if let Some(d) = opt("cluster.report_early_gap_ms", c.report_early_gap_ms)? {
        settings.report_early_gap = d;
    }
    if let Some(n) = c.report_early_max {
        settings.report_early_max = n;
    }
    if let Some(d) = opt("cluster.sync_interval_ms", c.sync_interval_ms)? {
        settings.sync_interval = d;
    }
    if let Some(ms) = c.warm_start_timeout_ms {
        // 0 is allowed: no warm start at all.
        settings.warm_start_timeout = Duration::from_millis(ms);
    }
    if let Some(d) = opt("cluster.reseed_interval_ms", c.reseed_interval_ms)? {
        settings.reseed_interval = d;
    }
    if let Some(d) = opt("cluster.resolve_interval_ms", c.resolve_interval_ms)? {
        settings.resolve_interval = d;
    }
    settings
        .validate()
        .map_err(|e| cx.invalid(e.field, e.value_ms, e.reason))?;
    Ok(ClusterConfig {
        bind,
        advertise,
        seeds: c.seeds,
        resolver,
        ca: path("cluster.ca", &c.ca)?,
        cert: path("cluster.cert", &c.cert)?,
        key: path("cluster.key", &c.key)?,
        settings,
    })
}

/// Checks that `name` is an absolute DNS host name (letters, digits and
/// hyphens; labels of 1 to 63 characters, not starting or ending with a
/// hyphen; at most 253 characters before the final dot) and returns it in
/// lower case.
fn dns_name(cx: &Ctx<'_>, field: &str, name: &str) -> Result<String, ConfigError> {
    let bad = |reason: String| Err(cx.invalid(field, name, reason));
    let Some(body) = name.strip_suffix('.') else {
        return bad(
            "must be an absolute name ending with a dot, e.g. \"lb.example.internal.\"".into(),
        );
    };
    if body.is_empty() {
        return bad("the root is not a name this node can answer for".into());
    }
    if body.len() > 253 {
        return bad(format!(
            "{} characters; a DNS name has at most 253",
            body.len()
        ));
    }
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad(format!(
                "label `{label}` has {} characters (1 to 63)",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(format!("label `{label}` starts or ends with a hyphen"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return bad(format!(
                "label `{label}` has {c:?}; use letters, digits and hyphens"
            ));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// The `[dns]` table, and the client addresses this node advertises
/// (with or without it).
fn validate_dns(
    cx: &Ctx<'_>,
    d: Option<raw::RawDns>,
    listeners: &[ListenerConfig],
) -> Result<(Option<DnsConfig>, Vec<IpAddr>), ConfigError> {
    let mut from_listeners = Vec::new();
    for l in listeners {
        let ip = l.bind.ip();
        if !ip.is_unspecified() && !from_listeners.contains(&ip) {
            from_listeners.push(ip);
        }
    }
    from_listeners.truncate(CLIENT_ADDRS_MAX);
    let Some(d) = d else {
        return Ok((None, from_listeners));
    };
    let bind = cx.addr("dns.bind", &d.bind)?;
    if bind.port() == 0 && !d.allow_ephemeral_port {
        return Err(cx.invalid("dns.bind", &d.bind, "port 0 is not a fixed port"));
    }
    let name = dns_name(cx, "dns.name", &d.name)?;
    if d.ttl_s > DNS_TTL_S_MAX {
        return Err(cx.invalid(
            "dns.ttl_s",
            d.ttl_s,
            format!("must be 0 to {DNS_TTL_S_MAX} seconds"),
        ));
    }
    let clients = match &d.advertise {
        None if from_listeners.is_empty() => {
            return Err(cx.invalid(
                "dns.advertise",
                "(absent)",
                "every listener binds a wildcard address; name the IPs clients dial",
            ));
        }
        None => from_listeners,
        Some(list) => {
            if list.is_empty() || list.len() > CLIENT_ADDRS_MAX {
                return Err(cx.invalid(
                    "dns.advertise",
                    list,
                    format!("must list 1 to {CLIENT_ADDRS_MAX} IP addresses"),
                ));
            }
            let mut ips = Vec::with_capacity(list.len());
            for (i, a) in list.iter().enumerate() {
                let field = format!("dns.advertise[{i}]");
                let ip: IpAddr = a.parse().map_err(|_| {
                    cx.invalid(&field, a, "not an IP address (e.g. 10.0.0.5 or fd00::5)")
                })?;
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(cx.invalid(
                        &field,
                        a,
                        "clients cannot dial a wildcard or multicast address",
                    ));
                }
                if ips.contains(&ip) {
                    return Err(cx.invalid(&field, a, "listed twice"));
                }
                ips.push(ip);
            }
            ips
        }
    };
    Ok((
        Some(DnsConfig {
            bind,
            name,
            ttl_s: d.ttl_s,
        }),
        clients,
    ))
}

fn validate(raw: raw::RawConfig, origin: &str, base: &Path) -> Result<Config, ConfigError> {
    let cx = Ctx { origin };
    let node = raw.node;
    if node.name.trim().is_empty() {
        return Err(cx.invalid("node.name", &node.name, "must not be empty"));
    }
    let admin = node
        .admin
        .as_deref()
        .map(|a| cx.addr("node.admin", a))
        .transpose()?;
    let drain_timeout = Duration::from_millis(node.drain_timeout_ms);
    /// More threads than this is a typo, not a machine.
    const WORKER_THREADS_MAX: u32 = 1024;
    let worker_threads = match node.worker_threads {
        Some(n) if n == 0 || n > WORKER_THREADS_MAX => {
            return Err(cx.invalid(
                "node.worker_threads",
                n,
                format!("must be 1 to {WORKER_THREADS_MAX}"),
            ));
        }
        n => n.map(|n| n as usize),
    };
    let resolver = node
        .resolver
        .as_deref()
        .map(|r| cx.addr("node.resolver", r))
        .transpose()?;
    let backend_resolve_interval = cx.millis(
        "node.backend_resolve_interval_ms",
        node.backend_resolve_interval_ms,
    )?;

    if node.admin_connections_max == 0 {
        return Err(cx.invalid("node.admin_connections_max", 0, "must be at least 1"));
    }
    let admin_header_timeout =
        cx.millis("node.admin_header_timeout_ms", node.admin_header_timeout_ms)?;
    let admin_idle_timeout = cx.millis("node.admin_idle_timeout_ms", node.admin_idle_timeout_ms)?;
    let takeover_socket = match node.takeover_socket.as_deref() {
        None => None,
        Some(p) if p.trim().is_empty() => {
            return Err(cx.invalid("node.takeover_socket", p, "must name a path"));
        }
        Some(p) => Some(base.join(p)),
    };

    if raw.listener.is_empty() {
        return Err(cx.invalid("listener", "[]", "at least one [[listener]] is needed"));
    }
    let mut names = BTreeSet::new();
    let mut binds = BTreeSet::new();
    let mut listeners = Vec::with_capacity(raw.listener.len());
    for (i, l) in raw.listener.into_iter().enumerate() {
        let at = |field: &str| format!("listener[{i}].{field}");
        if l.name.trim().is_empty() {
            return Err(cx.invalid(at("name"), &l.name, "must not be empty"));
        }
        if !names.insert(l.name.clone()) {
            return Err(cx.invalid(at("name"), &l.name, "duplicate listener name"));
        }
        let at = |field: &str| format!("listener \"{}\": {field}", l.name);
        let bind = cx.addr(at("bind"), &l.bind)?;
        if bind.port() == 0 && !l.allow_ephemeral_port {
            return Err(cx.invalid(at("bind"), &l.bind, "port 0 is not a fixed port"));
        }
        if bind.port() != 0 && !binds.insert(bind) {
            return Err(cx.invalid(
                at("bind"),
                &l.bind,
                "another listener binds the same address",
            ));
        }
        let policy = l
            .policy
            .parse::<Policy>()
            .map_err(|e| cx.invalid(at("policy"), &l.policy, e.to_string()))?;
        if l.backends.is_empty() {
            return Err(cx.invalid(
                at("backends"),
                "[]",
                "a listener needs at least one backend",
            ));
        }
        let mut backends: Vec<BackendEntry> = Vec::with_capacity(l.backends.len());
        for (j, b) in l.backends.iter().enumerate() {
            let field = at(&format!("backends[{j}]"));
            let target = match shoal_seeds::parse_seed(&b.addr) {
                Ok(shoal_seeds::Seed::Addr(addr)) => BackendTarget::Addr(addr),
                Ok(shoal_seeds::Seed::Name { host, port }) => BackendTarget::Name {
                    host: host.trim_end_matches('.').to_ascii_lowercase(),
                    port,
                },
                Err(e) => {
                    let reason = match e {
                        shoal_seeds::SeedError::Syntax { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    return Err(cx.invalid(
                        field,
                        &b.addr,
                        format!("{reason} (a backend is IP:port, [IPv6]:port or name:port)"),
                    ));
                }
            };
            if matches!(target, BackendTarget::Addr(a) if a.port() == 0) {
                return Err(cx.invalid(field, &b.addr, "port 0 cannot be connected to"));
            }
            if !(1..=WEIGHT_MAX).contains(&b.weight) {
                return Err(cx.invalid(
                    format!("{field}.weight"),
                    b.weight,
                    format!(
                        "must be 1 to {WEIGHT_MAX} (drain a backend to stop its new connections)"
                    ),
                ));
            }
            if backends.iter().any(|o| o.target == target) {
                return Err(cx.invalid(field, &b.addr, "duplicate backend in this listener"));
            }
            backends.push(BackendEntry {
                target,
                weight: b.weight,
            });
        }
        let positive = |field: &str, v: Option<u32>| match v {
            Some(0) => Err(cx.invalid(
                at(field),
                0,
                "must be at least 1 (leave it out for no limit)",
            )),
            v => Ok(v),
        };
        let max_connections = positive("max_connections", l.max_connections)?;
        let backend_max_connections =
            positive("backend_max_connections", l.backend_max_connections)?;
        let fleet_max_connections = positive("fleet_max_connections", l.fleet_max_connections)?;
        if l.backlog == 0 {
            return Err(cx.invalid(at("backlog"), 0, "must be at least 1"));
        }
        let send_proxy = match l.send_proxy.as_deref() {
            None => None,
            Some("v1") => Some(ProxyVersion::V1),
            Some("v2") => Some(ProxyVersion::V2),
            Some(other) => {
                return Err(cx.invalid(
                    at("send_proxy"),
                    other,
                    "must be \"v1\" or \"v2\" (leave it out to send no header)",
                ));
            }
        };
        let proxy_header_timeout =
            cx.millis(at("proxy_header_timeout_ms"), l.proxy_header_timeout_ms)?;
        let h = &l.health;
        let health = HealthConfig {
            interval: cx.millis(at("health.interval_ms"), h.interval_ms)?,
            timeout: cx.millis(at("health.timeout_ms"), h.timeout_ms)?,
            rise: h.rise,
            fall: h.fall,
            checkers: h.checkers,
        };
        health.validate().map_err(|e| {
            let (field, value) = match &e {
                shoal_core::HealthParamError::Zero { field } => (*field, 0),
                shoal_core::HealthParamError::TimeoutOverInterval { .. } => {
                    ("timeout_ms", h.timeout_ms)
                }
            };
            cx.invalid(at(&format!("health.{field}")), value, e.to_string())
        })?;
        let health_source = match &h.source {
            None => None,
            Some(text) => {
                let field = at("health.source");
                let ip = text.parse::<std::net::IpAddr>().map_err(|_| {
                    cx.invalid(&field, text, "not an IP address (e.g. 127.0.0.2 or ::1)")
                })?;
                if let Some(b) = backends.iter().find(
                    |b| matches!(b.target, BackendTarget::Addr(a) if a.is_ipv4() != ip.is_ipv4()),
                ) {
                    let b = &b.target;
                    return Err(cx.invalid(
                        &field,
                        text,
                        format!("backend {b} is of the other address family: probes to it could not be sent"),
                    ));
                }
                Some(ip)
            }
        };
        listeners.push(ListenerConfig {
            health_source,
            connect_timeout: cx.millis(at("connect_timeout_ms"), l.connect_timeout_ms)?,
            idle_timeout: cx.millis(at("idle_timeout_ms"), l.idle_timeout_ms)?,
            name: l.name,
            bind,
            policy,
            backends,
            max_connections,
            backend_max_connections,
            fleet_max_connections,
            retries: l.retries,
            backlog: l.backlog,
            send_proxy,
            accept_proxy: l.accept_proxy,
            proxy_header_timeout,
            health,
        });
    }
    // Every backend is an entry of this node's load report, which has a
    // bound (shoal_core::cluster::report::SHARDS_MAX shards). A name
    // counts once here; the runtime drops its addresses past the bound.
    let backends: usize = listeners
        .iter()
        .flat_map(|l| &l.backends)
        .map(|b| match b.target {
            BackendTarget::Addr(_) => 1,
            BackendTarget::Name { .. } => NAME_ADDRESSES_MAX,
        })
        .sum();
    if backends > BACKENDS_MAX {
        return Err(cx.invalid(
            "listener",
            format!("{backends} backends"),
            format!("a node takes at most {BACKENDS_MAX} backends over all its listeners (a backend name counts as {NAME_ADDRESSES_MAX})"),
        ));
    }
    let mut cluster = raw
        .cluster
        .map(|c| validate_cluster(&cx, c, base))
        .transpose()?;
    let (dns, client_addrs) = validate_dns(&cx, raw.dns, &listeners)?;
    if let Some(c) = &mut cluster {
        c.settings.client_addrs = client_addrs.clone();
    }
    if let Some(c) = &cluster
        && listeners
            .iter()
            .any(|l| l.bind.port() != 0 && l.bind == c.bind)
    {
        return Err(cx.invalid(
            "cluster.bind",
            c.bind.to_string(),
            "a listener binds the same address",
        ));
    }
    Ok(Config {
        node: NodeConfig {
            name: node.name,
            admin,
            drain_timeout,
            worker_threads,
            admin_connections_max: node.admin_connections_max,
            admin_header_timeout,
            admin_idle_timeout,
            takeover_socket,
            resolver,
            backend_resolve_interval,
        },
        listeners,
        cluster,
        dns,
        client_addrs,
    })
}

#[cfg(test)]
mod tests;
