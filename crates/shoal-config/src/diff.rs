//! What changed between two validated configurations: the plan of a live
//! reload (SIGHUP, `POST /reload`; decision 57). A pure function, so the
//! runtime only carries the plan out, and every rule of what may change
//! live is here, tested without a process.
//!
//! Listeners are matched by name, backends by their entry (an address or
//! a name, as configured). A setting that a
//! running node cannot change (the node's name, its admin, fleet and DNS
//! sockets, the fleet's CA and timings, ...) makes the whole reload a
//! [`LiveOnlyChanges`]: nothing is applied, and the message names every
//! such setting.

use crate::{BackendTarget, ClusterConfig, Config, ListenerConfig};
use std::fmt;
use std::time::Duration;

/// What a reload changes, in the new configuration's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Listeners only the new configuration has (to bind).
    pub added: Vec<String>,
    /// Listeners only the old one has (to stop and drain).
    pub removed: Vec<String>,
    /// Listeners of both that differ.
    pub changed: Vec<ListenerDiff>,
    /// `node.drain_timeout_ms`, if it changed: `(old, new)`.
    pub drain_timeout: Option<(Duration, Duration)>,
    /// `cluster.cert` or `cluster.key` names another file (the node's
    /// certificate is re-read on every reload anyway).
    pub cert_paths: bool,
    /// How backend names are resolved changed (`node.resolver`,
    /// `node.backend_resolve_interval_ms`): applied from the next lookup.
    pub name_resolution: bool,
}

/// One listener present in both configurations, and what differs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerDiff {
    pub name: String,
    /// `bind` changed: a new socket is bound, the old one stops accepting
    /// and its connections finish. Unchanged, the socket is kept.
    pub rebind: bool,
    /// `backlog` changed: set on the listening sockets in place.
    pub backlog: bool,
    /// Backend entries only the new list has.
    pub backends_added: Vec<BackendTarget>,
    /// Backend entries only the old list has (drained: no new connection,
    /// the open ones finish).
    pub backends_removed: Vec<BackendTarget>,
    /// The other fields that changed, by their configuration names
    /// (`policy`, `health.interval_ms`, ...), all applied in place.
    pub fields: Vec<&'static str>,
}

impl ListenerDiff {
    fn is_empty(&self) -> bool {
        !self.rebind
            && !self.backlog
            && self.backends_added.is_empty()
            && self.backends_removed.is_empty()
            && self.fields.is_empty()
    }
}

/// A setting a running node cannot change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOnly {
    /// Its configuration name, e.g. `cluster.bind`.
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

/// Every setting of a reload that a running node cannot change: the
/// reload is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LiveOnlyChanges(pub Vec<LiveOnly>);

impl fmt::Display for LiveOnlyChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {} -> {}", c.field, c.old, c.new)?;
        }
        let one = self.0.len() == 1;
        write!(
            f,
            ": {} cannot change while the node runs (restart it, or upgrade it with --take-over); nothing was applied",
            if one {
                "this setting"
            } else {
                "these settings"
            }
        )
    }
}

impl ConfigDiff {
    /// Whether the reload changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.drain_timeout.is_none()
            && !self.cert_paths
    }

    /// One line saying what changed, for the log and `POST /reload`'s
    /// answer, e.g. `listener "web": backends +127.0.0.1:5003
    /// -127.0.0.1:5001, health.rise; listener "api" added`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for name in &self.added {
            parts.push(format!("listener {name:?} added"));
        }
        for name in &self.removed {
            parts.push(format!("listener {name:?} removed"));
        }
        for l in &self.changed {
            let mut what: Vec<String> = Vec::new();
            if l.rebind {
                what.push("bind".into());
            }
            if !l.backends_added.is_empty() || !l.backends_removed.is_empty() {
                let list = l
                    .backends_added
                    .iter()
                    .map(|b| format!("+{b}"))
                    .chain(l.backends_removed.iter().map(|b| format!("-{b}")))
                    .collect::<Vec<_>>()
                    .join(" ");
                what.push(format!("backends {list}"));
            }
            if l.backlog {
                what.push("backlog".into());
            }
            what.extend(l.fields.iter().map(|f| (*f).to_owned()));
            parts.push(format!("listener {:?}: {}", l.name, what.join(", ")));
        }
        if let Some((_, new)) = self.drain_timeout {
            parts.push(format!("node.drain_timeout_ms = {}", new.as_millis()));
        }
        if self.cert_paths {
            parts.push("cluster.cert/key paths".into());
        }
        if self.name_resolution {
            parts.push(
                "backend name resolution (node.resolver, node.backend_resolve_interval_ms)".into(),
            );
        }
        if parts.is_empty() {
            "no change to the configuration".into()
        } else {
            parts.join("; ")
        }
    }
}

/// What reloading `new` over the running `old` changes, or every setting
/// in it that cannot change live.
pub fn diff(old: &Config, new: &Config) -> Result<ConfigDiff, LiveOnlyChanges> {
    let mut refused = Vec::new();
    live_only_node(old, new, &mut refused);
    live_only_cluster(old.cluster.as_ref(), new.cluster.as_ref(), &mut refused);
    live_only_dns(old, new, &mut refused);
    if !refused.is_empty() {
        return Err(LiveOnlyChanges(refused));
    }
    let mut d = ConfigDiff::default();
    for l in &new.listeners {
        match old.listeners.iter().find(|o| o.name == l.name) {
            None => d.added.push(l.name.clone()),
            Some(o) => {
                let c = listener_diff(o, l);
                if !c.is_empty() {
                    d.changed.push(c);
                }
            }
        }
    }
    for o in &old.listeners {
        if !new.listeners.iter().any(|l| l.name == o.name) {
            d.removed.push(o.name.clone());
        }
    }
    if old.node.drain_timeout != new.node.drain_timeout {
        d.drain_timeout = Some((old.node.drain_timeout, new.node.drain_timeout));
    }
    if let (Some(o), Some(n)) = (&old.cluster, &new.cluster) {
        d.cert_paths = o.cert != n.cert || o.key != n.key;
    }
    d.name_resolution = old.backend_resolver() != new.backend_resolver()
        || old.node.backend_resolve_interval != new.node.backend_resolve_interval;
    Ok(d)
}

fn refuse<T: fmt::Debug + PartialEq>(
    field: &'static str,
    old: T,
    new: T,
    refused: &mut Vec<LiveOnly>,
) {
    if old != new {
        refused.push(LiveOnly {
            field,
            old: shown(&old),
            new: shown(&new),
        });
    }
}

/// A value as an operator reads it: `127.0.0.1:9100`, not
/// `Some(127.0.0.1:9100)`; an unset one is `none`.
fn shown<T: fmt::Debug>(v: &T) -> String {
    let text = format!("{v:?}");
    match text.strip_prefix("Some(").and_then(|t| t.strip_suffix(')')) {
        Some(inner) => inner.to_owned(),
        None if text == "None" => "none".to_owned(),
        None => text,
    }
}

fn live_only_node(old: &Config, new: &Config, refused: &mut Vec<LiveOnly>) {
    let (o, n) = (&old.node, &new.node);
    // The name is the node's identity in the fleet and its certificate's.
    refuse("node.name", &o.name, &n.name, refused);
    // The admin endpoint serves this very reload; its limits are its
    // accept loop's, set when it started.
    refuse("node.admin", o.admin, n.admin, refused);
    refuse(
        "node.admin_connections_max",
        o.admin_connections_max,
        n.admin_connections_max,
        refused,
    );
    refuse(
        "node.admin_header_timeout_ms",
        o.admin_header_timeout.as_millis(),
        n.admin_header_timeout.as_millis(),
        refused,
    );
    refuse(
        "node.admin_idle_timeout_ms",
        o.admin_idle_timeout.as_millis(),
        n.admin_idle_timeout.as_millis(),
        refused,
    );
    // The data threads and their sockets exist from the start.
    refuse(
        "node.worker_threads",
        o.worker_threads,
        n.worker_threads,
        refused,
    );
    refuse(
        "node.takeover_socket",
        &o.takeover_socket,
        &n.takeover_socket,
        refused,
    );
    // What the node advertises to the fleet (and answers in DNS) is in
    // the fleet settings the core was built with.
    refuse(
        "the client addresses (dns.advertise, or the listeners' IPs)",
        &old.client_addrs,
        &new.client_addrs,
        refused,
    );
}

fn live_only_cluster(
    old: Option<&ClusterConfig>,
    new: Option<&ClusterConfig>,
    refused: &mut Vec<LiveOnly>,
) {
    let (o, n) = match (old, new) {
        (None, None) => return,
        (Some(o), Some(n)) => (o, n),
        (o, n) => {
            let show = |c: Option<&ClusterConfig>| match c {
                Some(_) => "present".to_owned(),
                None => "absent".to_owned(),
            };
            refused.push(LiveOnly {
                field: "[cluster]",
                old: show(o),
                new: show(n),
            });
            return;
        }
    };
    // The QUIC endpoint's socket and the identity peers know.
    refuse("cluster.bind", o.bind, n.bind, refused);
    // Left out, it is `bind`'s, named already.
    if !(o.advertise == o.bind && n.advertise == n.bind) {
        refuse("cluster.advertise", o.advertise, n.advertise, refused);
    }
    refuse("cluster.seeds", &o.seeds, &n.seeds, refused);
    refuse("cluster.resolver", o.resolver, n.resolver, refused);
    // The fleet's trust: a node cannot leave its fleet's CA live. A new
    // file at the same path is caught by the runtime, which compares the
    // certificates themselves.
    refuse("cluster.ca", &o.ca, &n.ca, refused);
    // The core node's timings (report interval, sync, warm start, ...).
    let mut os = o.settings.clone();
    os.client_addrs.clone_from(&n.settings.client_addrs);
    if os != n.settings {
        refused.push(LiveOnly {
            field: "cluster timings (report_*, sync_interval_ms, warm_start_timeout_ms, reseed_interval_ms, resolve_interval_ms)",
            old: "as running".into(),
            new: "changed".into(),
        });
    }
}

fn live_only_dns(old: &Config, new: &Config, refused: &mut Vec<LiveOnly>) {
    match (&old.dns, &new.dns) {
        (None, None) => {}
        (Some(o), Some(n)) => {
            refuse("dns.bind", o.bind, n.bind, refused);
            refuse("dns.name", &o.name, &n.name, refused);
            refuse("dns.ttl_s", o.ttl_s, n.ttl_s, refused);
        }
        (o, n) => refused.push(LiveOnly {
            field: "[dns]",
            old: if o.is_some() { "present" } else { "absent" }.into(),
            new: if n.is_some() { "present" } else { "absent" }.into(),
        }),
    }
}

fn listener_diff(o: &ListenerConfig, n: &ListenerConfig) -> ListenerDiff {
    let mut fields = Vec::new();
    let mut field = |name: &'static str, changed: bool| {
        if changed {
            fields.push(name);
        }
    };
    field("policy", o.policy != n.policy);
    field("max_connections", o.max_connections != n.max_connections);
    field(
        "backend_max_connections",
        o.backend_max_connections != n.backend_max_connections,
    );
    field(
        "fleet_max_connections",
        o.fleet_max_connections != n.fleet_max_connections,
    );
    field("connect_timeout_ms", o.connect_timeout != n.connect_timeout);
    field("retries", o.retries != n.retries);
    field("idle_timeout_ms", o.idle_timeout != n.idle_timeout);
    field("send_proxy", o.send_proxy != n.send_proxy);
    field("accept_proxy", o.accept_proxy != n.accept_proxy);
    field(
        "proxy_header_timeout_ms",
        o.proxy_header_timeout != n.proxy_header_timeout,
    );
    field("health.interval_ms", o.health.interval != n.health.interval);
    field("health.timeout_ms", o.health.timeout != n.health.timeout);
    field("health.rise", o.health.rise != n.health.rise);
    field("health.fall", o.health.fall != n.health.fall);
    field("health.checkers", o.health.checkers != n.health.checkers);
    field("health.source", o.health_source != n.health_source);
    field(
        "backends[].weight",
        n.backends.iter().any(|b| {
            o.backends
                .iter()
                .any(|ob| ob.target == b.target && ob.weight != b.weight)
        }),
    );
    let has = |list: &[crate::BackendEntry], t: &BackendTarget| list.iter().any(|b| &b.target == t);
    ListenerDiff {
        name: n.name.clone(),
        rebind: o.bind != n.bind,
        backlog: o.backlog != n.backlog,
        backends_added: n
            .backends
            .iter()
            .filter(|b| !has(&o.backends, &b.target))
            .map(|b| b.target.clone())
            .collect(),
        backends_removed: o
            .backends
            .iter()
            .filter(|b| !has(&n.backends, &b.target))
            .map(|b| b.target.clone())
            .collect(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[node]
name = "node-1"
admin = "127.0.0.1:9100"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
backends = ["127.0.0.1:5001", "127.0.0.1:5002"]
  [listener.health]
  interval_ms = 2000
  timeout_ms = 1000

[[listener]]
name = "api"
bind = "127.0.0.1:8081"
backends = ["127.0.0.1:6001"]

[cluster]
bind = "127.0.0.1:7946"
seeds = ["127.0.0.1:7947"]
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
"#;

    fn parse(text: &str) -> Config {
        Config::from_toml(text, "t.toml").unwrap()
    }

    fn d(new: &str) -> Result<ConfigDiff, LiveOnlyChanges> {
        diff(&parse(BASE), &parse(new))
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let same = d(BASE).unwrap();
        assert!(same.is_empty(), "{same:?}");
        assert_eq!(same.summary(), "no change to the configuration");
    }

    #[test]
    fn backends_are_matched_by_address_and_listeners_by_name() {
        let new = BASE.replace(
            "backends = [\"127.0.0.1:5001\", \"127.0.0.1:5002\"]",
            "backends = [\"127.0.0.1:5002\", \"127.0.0.1:5003\"]",
        );
        let got = d(&new).unwrap();
        assert_eq!(
            got.changed,
            vec![ListenerDiff {
                name: "web".into(),
                backends_added: vec![BackendTarget::Addr("127.0.0.1:5003".parse().unwrap())],
                backends_removed: vec![BackendTarget::Addr("127.0.0.1:5001".parse().unwrap())],
                ..ListenerDiff::default()
            }]
        );
        assert!(got.added.is_empty() && got.removed.is_empty());
        assert_eq!(
            got.summary(),
            "listener \"web\": backends +127.0.0.1:5003 -127.0.0.1:5001"
        );
        // Only the order changed: nothing to do.
        let reordered = BASE.replace(
            "backends = [\"127.0.0.1:5001\", \"127.0.0.1:5002\"]",
            "backends = [\"127.0.0.1:5002\", \"127.0.0.1:5001\"]",
        );
        assert!(d(&reordered).unwrap().is_empty());
    }

    #[test]
    fn listeners_added_removed_and_renamed() {
        // "api" renamed "api2": one removed, one added (names are the key).
        let new = BASE.replace("name = \"api\"", "name = \"api2\"").replace(
            "[cluster]",
            "[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:8090\"\nbackends = [\"127.0.0.1:7001\"]\n\n[cluster]",
        );
        let got = d(&new).unwrap();
        assert_eq!(got.added, ["api2", "extra"]);
        assert_eq!(got.removed, ["api"]);
        assert!(got.changed.is_empty(), "{:?}", got.changed);
        assert_eq!(
            got.summary(),
            "listener \"api2\" added; listener \"extra\" added; listener \"api\" removed"
        );
    }

    #[test]
    fn in_place_changes_are_named_and_a_moved_bind_rebinds() {
        let new = BASE
            .replace("interval_ms = 2000", "interval_ms = 500")
            .replace("timeout_ms = 1000", "timeout_ms = 400\n  rise = 3")
            .replace(
                "bind = \"127.0.0.1:8081\"",
                "bind = \"127.0.0.1:8082\"\npolicy = \"round-robin\"\nbacklog = 10\nretries = 0",
            )
            .replace("[node]\n", "[node]\ndrain_timeout_ms = 5000\n");
        let got = d(&new).unwrap();
        assert_eq!(got.changed.len(), 2, "{:?}", got.changed);
        let web = &got.changed[0];
        assert_eq!(web.name, "web");
        assert!(!web.rebind && !web.backlog);
        assert_eq!(
            web.fields,
            ["health.interval_ms", "health.timeout_ms", "health.rise"]
        );
        let api = &got.changed[1];
        assert!(api.rebind && api.backlog);
        assert_eq!(api.fields, ["policy", "retries"]);
        assert_eq!(
            got.drain_timeout,
            Some((Duration::from_secs(30), Duration::from_secs(5)))
        );
        assert_eq!(
            got.summary(),
            "listener \"web\": health.interval_ms, health.timeout_ms, health.rise; \
             listener \"api\": bind, backlog, policy, retries; node.drain_timeout_ms = 5000"
        );
    }

    #[test]
    fn settings_that_cannot_change_live_are_all_named_and_refuse_the_whole_reload() {
        let new = BASE
            .replace("bind = \"127.0.0.1:7946\"", "bind = \"127.0.0.1:7950\"")
            .replace("certs/ca.pem", "other/ca.pem")
            .replace("name = \"node-1\"", "name = \"node-9\"")
            // Applied in place were the reload allowed; refused with it.
            .replace("interval_ms = 2000", "interval_ms = 3000");
        let e = d(&new).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["node.name", "cluster.bind", "cluster.ca"]);
        let line = e.to_string();
        assert!(
            line.starts_with("node.name: \"node-1\" -> \"node-9\"; cluster.bind: 127.0.0.1:7946 -> 127.0.0.1:7950; cluster.ca: "),
            "{line}"
        );
        assert!(
            line.ends_with(
                "these settings cannot change while the node runs (restart it, or upgrade it with --take-over); nothing was applied"
            ),
            "{line}"
        );
        assert!(!line.contains('\n'));
        // One alone.
        let e = d(&BASE.replace("admin = \"127.0.0.1:9100\"", "admin = \"127.0.0.1:9101\""))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node.admin: 127.0.0.1:9100 -> 127.0.0.1:9101: this setting cannot change while the node runs (restart it, or upgrade it with --take-over); nothing was applied"
        );
    }

    #[test]
    fn the_fleet_and_dns_tables_cannot_come_or_go_nor_their_timings_change() {
        let without = BASE.split("[cluster]").next().unwrap().to_owned();
        let e = d(&without).unwrap_err();
        assert_eq!(e.0[0].field, "[cluster]");
        let e =
            d(&BASE.replace("[cluster]\n", "[cluster]\nreport_interval_ms = 100\n")).unwrap_err();
        assert!(e.0[0].field.starts_with("cluster timings"), "{e}");
        let with_dns = format!("{BASE}\n[dns]\nbind = \"127.0.0.1:5353\"\nname = \"lb.test.\"\n");
        assert_eq!(d(&with_dns).unwrap_err().0[0].field, "[dns]");
        // A node certificate at another path is re-read: allowed.
        let moved = d(&BASE.replace("certs/node-1.pem", "certs/node-1-new.pem")).unwrap();
        assert!(moved.cert_paths && !moved.is_empty());
    }

    #[test]
    fn a_listener_at_a_new_ip_changes_the_advertised_addresses_and_is_refused() {
        let new = BASE.replace("bind = \"127.0.0.1:8081\"", "bind = \"127.0.0.2:8081\"");
        let e = d(&new).unwrap_err();
        assert_eq!(
            e.0[0].field,
            "the client addresses (dns.advertise, or the listeners' IPs)"
        );
    }
}
