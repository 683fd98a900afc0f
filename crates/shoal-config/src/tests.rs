use super::*;

const GOOD: &str = r#"
[node]
name = "node-1"
admin = "127.0.0.1:9100"

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
policy = "least-conn"
backends = ["127.0.0.1:5001", "127.0.0.1:5002", "[::1]:5003"]
  [listener.health]
  interval_ms = 2000
  timeout_ms = 1000
  rise = 2
  fall = 3
"#;

fn err(text: &str) -> String {
    Config::from_toml(text, "test.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn the_documented_shape_parses_with_defaults() {
    let c = Config::from_toml(GOOD, "test.toml").unwrap();
    assert_eq!(c.node.name, "node-1");
    assert_eq!(c.node.admin, Some("127.0.0.1:9100".parse().unwrap()));
    let l = &c.listeners[0];
    assert_eq!(l.policy, Policy::LeastConn);
    assert_eq!(l.backends.len(), 3);
    assert!(matches!(l.backends[2].target, BackendTarget::Addr(a) if a.is_ipv6()));
    assert_eq!(l.health, HealthConfig::default());
    assert_eq!(l.health.checkers, 0, "0: the default");
    assert_eq!(l.connect_timeout, Duration::from_secs(2));
    assert_eq!(l.retries, 2);
    assert_eq!(l.max_connections, None);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = err(&GOOD.replace("policy =", "polcy ="));
    assert!(
        e.starts_with("test.toml:9:1: listener[0].polcy: unknown field `polcy`"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn a_quoted_key_with_control_characters_gives_a_one_line_error() {
    // From fuzz/corpus/config/regression-newline-in-key.
    let e = err("[node]\n\"a\\nb\\rc\" = 1\n");
    assert!(
        e.starts_with("test.toml:2:1: node.a\\nb\\rc: unknown field `a b\\rc`"),
        "{e}"
    );
    assert!(!e.contains(['\n', '\r']), "one line: {e:?}");
}

#[test]
fn a_value_or_name_with_control_characters_gives_a_one_line_error() {
    // From fuzz/corpus/config/regression-newline-in-policy: the reason
    // quotes the value as configured.
    let e = err(&GOOD.replace("least-conn", "least\\nconn"));
    assert!(
        e.starts_with(
            "test.toml: listener \"web\": policy = \"least\\nconn\": unknown policy `least\\nconn`;"
        ),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e:?}");
    // A listener's name goes into the field of later errors.
    let e = err(&GOOD
        .replace("name = \"web\"", "name = \"w\\reb\"")
        .replace("127.0.0.1:8080", "127.0.0.1:0"));
    assert!(e.starts_with("test.toml: listener \"w\\reb\": bind"), "{e}");
    assert!(!e.contains('\r'), "one line: {e:?}");
}

#[test]
fn bad_address_names_field_and_value() {
    let e = err(&GOOD.replace("127.0.0.1:5002", "127.0.0.1:99999"));
    assert_eq!(
        e,
        "test.toml: listener \"web\": backends[1] = \"127.0.0.1:99999\": port out of range (a backend is IP:port, [IPv6]:port or name:port)"
    );
    let e = err(&GOOD.replace("127.0.0.1:8080", "localhost"));
    assert!(e.contains("bind = \"localhost\""), "{e}");
}

#[test]
fn duplicate_listeners_are_refused() {
    let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[listener]]").unwrap()..]);
    assert!(err(&twice).contains("listener[1].name = \"web\": duplicate listener name"));
    let other_name = format!(
        "{GOOD}\n{}",
        GOOD[GOOD.find("[[listener]]").unwrap()..].replace("\"web\"", "\"web2\"")
    );
    assert!(err(&other_name).contains(
        "listener \"web2\": bind = \"127.0.0.1:8080\": another listener binds the same address"
    ));
}

#[test]
fn empty_or_duplicate_backends_are_refused() {
    let e = err(&GOOD.replace(
        r#"["127.0.0.1:5001", "127.0.0.1:5002", "[::1]:5003"]"#,
        "[]",
    ));
    assert!(
        e.contains("backends = \"[]\": a listener needs at least one backend"),
        "{e}"
    );
    let e = err(&GOOD.replace("127.0.0.1:5002", "127.0.0.1:5001"));
    assert!(
        e.contains("backends[1] = \"127.0.0.1:5001\": duplicate backend"),
        "{e}"
    );
}

#[test]
fn bad_policy_and_health_values_are_named() {
    let e = err(&GOOD.replace("least-conn", "fastest"));
    assert!(
        e.contains("policy = \"fastest\": unknown policy `fastest`"),
        "{e}"
    );
    let e = err(&GOOD.replace("rise = 2", "rise = 0"));
    assert!(e.contains("health.rise = 0"), "{e}");
    let e = err(&GOOD.replace("timeout_ms = 1000", "timeout_ms = 5000"));
    assert!(e.contains("health.timeout_ms = 5000"), "{e}");
    let e = err(&GOOD.replace("fall = 3", "fall = -1"));
    assert!(e.starts_with("test.toml:15:10:"), "{e}");
    let e = err(&GOOD.replace("fall = 3", "fall = 3\n  checkers = -2"));
    assert!(e.contains("listener[0].health.checkers"), "{e}");
    let c = Config::from_toml(&GOOD.replace("fall = 3", "fall = 3\n  checkers = 2"), "t").unwrap();
    assert_eq!(c.listeners[0].health.checkers, 2);
    assert_eq!(c.listeners[0].health_source, None);
    let e = err(&GOOD.replace("fall = 3", "fall = 3\n  source = \"127.0.0.300\""));
    assert!(
        e.contains("health.source = \"127.0.0.300\": not an IP"),
        "{e}"
    );
    // GOOD has an IPv6 backend: an IPv4 source cannot reach it.
    let e = err(&GOOD.replace("fall = 3", "fall = 3\n  source = \"127.0.0.2\""));
    assert!(
        e.contains("backend [::1]:5003 is of the other address family"),
        "{e}"
    );
    let one = GOOD.replace(", \"[::1]:5003\"", "");
    let c = Config::from_toml(
        &one.replace("fall = 3", "fall = 3\n  source = \"127.0.0.2\""),
        "t",
    )
    .unwrap();
    assert_eq!(
        c.listeners[0].health_source,
        Some("127.0.0.2".parse().unwrap())
    );
}

#[test]
fn no_listener_is_an_error_and_syntax_errors_are_one_line() {
    assert!(err("[node]\nname = \"x\"\n").contains("at least one [[listener]]"));
    let e = err("[node\n");
    assert!(e.starts_with("test.toml:1:"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn port_zero_needs_an_explicit_opt_in() {
    let e = err(&GOOD.replace("127.0.0.1:8080", "127.0.0.1:0"));
    assert!(e.contains("port 0 is not a fixed port"), "{e}");
    let ok = GOOD.replace(
        "bind = \"127.0.0.1:8080\"",
        "bind = \"127.0.0.1:0\"\nallow_ephemeral_port = true",
    );
    assert_eq!(
        Config::from_toml(&ok, "t").unwrap().listeners[0]
            .bind
            .port(),
        0
    );
}

const CLUSTER: &str = r#"
[cluster]
bind = "127.0.0.1:7946"
seeds = ["127.0.0.1:7946", "lb.shoal.test:7946", "[::1]:7947"]
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
"#;

#[test]
fn the_cluster_table_parses_with_defaults_and_paths_from_the_file() {
    let dir = std::env::temp_dir().join(format!("shoal-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shoal.toml");
    std::fs::write(&file, format!("{GOOD}{CLUSTER}")).unwrap();
    let c = Config::from_file(&file).unwrap().cluster.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c.advertise, c.bind);
    assert_eq!(c.seeds.len(), 3);
    assert_eq!(c.ca, dir.join("certs/ca.pem"));
    assert_eq!(c.settings.report_interval, Duration::from_millis(250));
    assert_eq!(c.settings.report_refresh, Duration::from_millis(1000));
    assert_eq!(c.settings.report_ttl, Duration::from_millis(3000));
    assert!(
        Config::from_toml(GOOD, "t").unwrap().cluster.is_none(),
        "no table: a fleet of one"
    );
}

#[test]
fn cluster_errors_name_the_field_and_value() {
    let e = err(&format!(
        "{GOOD}{}",
        CLUSTER.replace("lb.shoal.test:7946", "lb.shoal.test")
    ));
    assert!(e.contains("cluster.seeds[1] = \"lb.shoal.test\""), "{e}");
    let e = err(&format!(
        "{GOOD}{}",
        CLUSTER.replace("lb.shoal.test:7946", "bad_name!:7946")
    ));
    assert!(
        e.contains("cluster.seeds[1] = \"bad_name!:7946\"") && e.contains("contains `!`"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}{}",
        CLUSTER.replace("127.0.0.1:7946\"\nseeds", "0.0.0.0:7946\"\nseeds")
    ));
    assert!(
        e.contains("cluster.bind = \"0.0.0.0:7946\": peers cannot dial"),
        "{e}"
    );
    let ok = format!(
        "{GOOD}{}",
        CLUSTER.replace(
            "bind = \"127.0.0.1:7946\"",
            "bind = \"0.0.0.0:7946\"\nadvertise = \"10.1.2.3:7946\""
        )
    );
    assert_eq!(
        Config::from_toml(&ok, "t")
            .unwrap()
            .cluster
            .unwrap()
            .advertise
            .to_string(),
        "10.1.2.3:7946"
    );
    let e = err(&format!(
        "{GOOD}{CLUSTER}report_interval_ms = 500\nreport_ttl_ms = 400\n"
    ));
    assert!(e.contains("cluster.report_ttl_ms = 400"), "{e}");
    // Early reports (decision 61): the gap must be below the interval.
    let e = err(&format!("{GOOD}{CLUSTER}report_early_gap_ms = 250\n"));
    assert!(e.contains("cluster.report_early_gap_ms = 250"), "{e}");
    assert!(e.contains("report_early_max = 0"), "{e}");
    let e = err(&format!("{GOOD}{CLUSTER}report_early_max = 9\n"));
    assert!(e.contains("cluster.report_early_max"), "{e}");
    let c = Config::from_toml(
        &format!("{GOOD}{CLUSTER}report_early_gap_ms = 250\nreport_early_max = 0\n"),
        "test.toml",
    );
    assert!(c.is_ok(), "no early reports, any gap: {:?}", c.err());
    let e = err(&format!("{GOOD}{}", CLUSTER.replace("key = ", "kee = ")));
    assert!(e.contains("unknown field `kee`"), "{e}");
}

#[test]
fn worker_threads_is_optional_and_bounded() {
    assert_eq!(
        Config::from_toml(GOOD, "t").unwrap().node.worker_threads,
        None
    );
    let one = GOOD.replace("name = \"node-1\"", "name = \"node-1\"\nworker_threads = 1");
    assert_eq!(
        Config::from_toml(&one, "t").unwrap().node.worker_threads,
        Some(1)
    );
    let zero = GOOD.replace("name = \"node-1\"", "name = \"node-1\"\nworker_threads = 0");
    assert!(
        err(&zero).contains("node.worker_threads = 0: must be 1 to 1024"),
        "{}",
        err(&zero)
    );
}

#[test]
fn type_errors_name_the_field_as_well_as_the_position() {
    let e = err(&GOOD.replace("interval_ms = 2000", "interval_ms = -5"));
    assert!(
        e.starts_with("test.toml:12:17: listener[0].health.interval_ms: "),
        "{e}"
    );
    assert!(e.contains("-5"), "{e}");
    let e = err(&GOOD.replace(
        "name = \"node-1\"",
        "name = \"node-1\"\ndrain_timeout_ms = \"5s\"",
    ));
    assert!(e.contains(": node.drain_timeout_ms: "), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn admin_limits_have_defaults_and_refuse_zero() {
    let n = Config::from_toml(GOOD, "t").unwrap().node;
    assert_eq!(n.admin_connections_max, 64);
    assert_eq!(n.admin_header_timeout, Duration::from_secs(10));
    assert_eq!(n.admin_idle_timeout, Duration::from_secs(60));
    for field in [
        "admin_connections_max",
        "admin_header_timeout_ms",
        "admin_idle_timeout_ms",
    ] {
        let zero = GOOD.replace(
            "name = \"node-1\"",
            &format!("name = \"node-1\"\n{field} = 0"),
        );
        assert!(
            err(&zero).contains(&format!("node.{field} = 0: must be at least 1")),
            "{}",
            err(&zero)
        );
    }
}

#[test]
fn proxy_protocol_settings_parse_and_bad_versions_are_named() {
    let c = Config::from_toml(GOOD, "test.toml").unwrap();
    let l = &c.listeners[0];
    assert_eq!((l.send_proxy, l.accept_proxy), (None, false));
    assert_eq!(l.proxy_header_timeout, Duration::from_secs(3));
    let text = GOOD.replace(
        "policy = \"least-conn\"",
        "policy = \"least-conn\"\nsend_proxy = \"v2\"\naccept_proxy = true\nproxy_header_timeout_ms = 500",
    );
    let c = Config::from_toml(&text, "test.toml").unwrap();
    let l = &c.listeners[0];
    assert_eq!(l.send_proxy, Some(ProxyVersion::V2));
    assert!(l.accept_proxy);
    assert_eq!(l.proxy_header_timeout, Duration::from_millis(500));
    let e = err(&GOOD.replace(
        "policy = \"least-conn\"",
        "policy = \"least-conn\"\nsend_proxy = \"v3\"",
    ));
    assert!(
        e.contains("listener \"web\": send_proxy = \"v3\": must be \"v1\" or \"v2\""),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "policy = \"least-conn\"",
        "policy = \"least-conn\"\nproxy_header_timeout_ms = 0",
    ));
    assert!(e.contains("proxy_header_timeout_ms = 0"), "{e}");
}

#[test]
fn the_takeover_socket_is_relative_to_the_file_and_not_empty() {
    let text = GOOD.replace(
        "[node]\n",
        "[node]\ntakeover_socket = \"run/takeover.sock\"\n",
    );
    let c = Config::parse(&text, "test.toml", Path::new("/etc/shoal")).unwrap();
    assert_eq!(
        c.node.takeover_socket,
        Some(PathBuf::from("/etc/shoal/run/takeover.sock"))
    );
    let e = err(&GOOD.replace("[node]\n", "[node]\ntakeover_socket = \" \"\n"));
    assert!(
        e.contains("node.takeover_socket = \" \": must name a path"),
        "{e}"
    );
}

#[test]
fn the_dns_table_parses_with_defaults_and_advertises_the_listener_ips() {
    let c = Config::from_toml(GOOD, "test.toml").unwrap();
    assert_eq!(c.dns, None);
    // Without [dns] a node still advertises its listeners' IPs.
    assert_eq!(c.client_addrs, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    let text =
        format!("{GOOD}\n[dns]\nbind = \"127.0.0.1:5353\"\nname = \"LB.Example.Internal.\"\n");
    let c = Config::from_toml(&text, "test.toml").unwrap();
    let d = c.dns.unwrap();
    assert_eq!(d.bind, "127.0.0.1:5353".parse().unwrap());
    assert_eq!(d.name, "lb.example.internal.");
    assert_eq!(d.ttl_s, 5);
    // The fleet node advertises the same addresses.
    let c = Config::from_toml(&format!("{text}{CLUSTER}"), "test.toml").unwrap();
    assert_eq!(c.cluster.unwrap().settings.client_addrs, c.client_addrs);
    let text = format!(
        "{}\n[dns]\nbind = \"[::1]:53\"\nname = \"lb.\"\nttl_s = 0\nadvertise = [\"10.0.0.5\", \"fd00::5\"]\n",
        GOOD.replace("127.0.0.1:8080", "0.0.0.0:8080")
    );
    let c = Config::from_toml(&text, "test.toml").unwrap();
    assert_eq!(c.dns.unwrap().ttl_s, 0);
    assert_eq!(
        c.client_addrs,
        [
            "10.0.0.5".parse::<IpAddr>().unwrap(),
            "fd00::5".parse().unwrap()
        ]
    );
}

#[test]
fn dns_errors_name_the_field_and_value() {
    let dns = |body: &str| err(&format!("{GOOD}\n[dns]\n{body}\n"));
    let ok_bind = "bind = \"127.0.0.1:5353\"";
    let cases = [
        (
            "bind = \"localhost:53\"\nname = \"lb.\"".to_owned(),
            "dns.bind = \"localhost:53\": not an IP:port",
        ),
        (
            "bind = \"127.0.0.1:0\"\nname = \"lb.\"".to_owned(),
            "dns.bind = \"127.0.0.1:0\": port 0",
        ),
        (
            format!("{ok_bind}\nname = \"lb.example\""),
            "dns.name = \"lb.example\": must be an absolute name ending with a dot",
        ),
        (
            format!("{ok_bind}\nname = \".\""),
            "dns.name = \".\": the root",
        ),
        (
            format!("{ok_bind}\nname = \"a..b.\""),
            "dns.name = \"a..b.\": label `` has 0 characters",
        ),
        (
            format!("{ok_bind}\nname = \"-a.b.\""),
            "dns.name = \"-a.b.\": label `-a` starts or ends with a hyphen",
        ),
        (
            format!("{ok_bind}\nname = \"a_b.c.\""),
            "dns.name = \"a_b.c.\": label `a_b` has '_'",
        ),
        (
            format!("{ok_bind}\nname = \"{}.\"", "a".repeat(64)),
            "has 64 characters (1 to 63)",
        ),
        (
            format!("{ok_bind}\nname = \"lb.\"\nttl_s = 3601"),
            "dns.ttl_s = 3601: must be 0 to 3600 seconds",
        ),
        (
            format!("{ok_bind}\nname = \"lb.\"\nadvertise = [\"10.0.0.1\", \"nope\"]"),
            "dns.advertise[1] = \"nope\": not an IP address",
        ),
        (
            format!("{ok_bind}\nname = \"lb.\"\nadvertise = [\"0.0.0.0\"]"),
            "dns.advertise[0] = \"0.0.0.0\": clients cannot dial a wildcard",
        ),
        (
            format!("{ok_bind}\nname = \"lb.\"\nadvertise = [\"10.0.0.1\", \"10.0.0.1\"]"),
            "dns.advertise[1] = \"10.0.0.1\": listed twice",
        ),
        (
            format!(
                "{ok_bind}\nname = \"lb.\"\nadvertise = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\", \"10.0.0.4\", \"10.0.0.5\"]"
            ),
            "dns.advertise = [",
        ),
        (
            format!("{ok_bind}\nname = \"lb.\"\nadvertise = []"),
            "must list 1 to 4 IP addresses",
        ),
    ];
    for (body, want) in cases {
        let e = dns(&body);
        assert!(e.contains(want), "{body:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    let wildcard = GOOD.replace("127.0.0.1:8080", "0.0.0.0:8080");
    let e = err(&format!("{wildcard}\n[dns]\n{ok_bind}\nname = \"lb.\"\n"));
    assert!(
        e.contains("dns.advertise = \"(absent)\": every listener binds a wildcard"),
        "{e}"
    );
    // Port 0 with the opt-in.
    let c = Config::from_toml(
        &format!(
            "{GOOD}\n[dns]\nbind = \"127.0.0.1:0\"\nname = \"lb.\"\nallow_ephemeral_port = true\n"
        ),
        "test.toml",
    )
    .unwrap();
    assert_eq!(c.dns.unwrap().bind.port(), 0);
}

#[test]
fn fleet_max_connections_is_read_and_zero_is_refused_by_name() {
    let c = Config::from_toml(
        &GOOD.replace(
            "policy = \"least-conn\"",
            "policy = \"least-conn\"\nfleet_max_connections = 30",
        ),
        "test.toml",
    )
    .unwrap();
    assert_eq!(c.listeners[0].fleet_max_connections, Some(30));
    assert_eq!(
        Config::from_toml(GOOD, "t").unwrap().listeners[0].fleet_max_connections,
        None
    );
    let e = err(&GOOD.replace(
        "policy = \"least-conn\"",
        "policy = \"least-conn\"\nfleet_max_connections = 0",
    ));
    assert!(
        e.contains("fleet_max_connections = 0: must be at least 1"),
        "{e}"
    );
}

#[test]
fn more_backends_than_a_report_carries_are_refused() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("\"10.{}.{}.{}:80\"", i >> 16, (i >> 8) & 255, i & 255))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = |n: usize| {
        GOOD.replace(
            "backends = [\"127.0.0.1:5001\", \"127.0.0.1:5002\", \"[::1]:5003\"]",
            &format!("backends = [{}]", list(n)),
        )
    };
    assert!(Config::from_toml(&text(BACKENDS_MAX), "t").is_ok());
    let e = err(&text(BACKENDS_MAX + 1));
    assert!(
        e.contains(&format!("{} backends", BACKENDS_MAX + 1))
            && e.contains(&format!("at most {BACKENDS_MAX} backends")),
        "{e}"
    );
}

#[test]
fn backends_may_be_names_and_carry_weights() {
    let text = GOOD.replace(
        r#"backends = ["127.0.0.1:5001", "127.0.0.1:5002", "[::1]:5003"]"#,
        r#"backends = ["127.0.0.1:5001", { addr = "127.0.0.1:5002", weight = 3 }, "App.Shoal.Test.:9000", { addr = "db.shoal.test:9001", weight = 2 }]"#,
    );
    let c = Config::from_toml(&text, "test.toml").unwrap();
    let l = &c.listeners[0];
    let weights: Vec<u32> = l.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [1, 3, 1, 2]);
    assert_eq!(
        l.backends[2].target,
        BackendTarget::Name {
            host: "app.shoal.test".into(),
            port: 9000
        },
        "lower case, no trailing dot"
    );
    assert_eq!(
        l.names().collect::<Vec<_>>(),
        ["app.shoal.test", "db.shoal.test"]
    );
    assert_eq!(c.node.backend_resolve_interval, Duration::from_secs(5));
    assert_eq!(c.backend_resolver(), None, "the system resolver");

    // Members: literals, then each name's addresses sorted, with the
    // entry's weight; an address two entries give is one backend.
    let mut resolved = NameAddrs::new();
    resolved.insert(
        "app.shoal.test".into(),
        vec!["127.0.0.9".parse().unwrap(), "127.0.0.1".parse().unwrap()],
    );
    let m = l.members(&resolved, 100);
    let shown: Vec<(String, u32, Option<&str>)> = m
        .iter()
        .map(|m| (m.addr.to_string(), m.weight, m.via.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            ("127.0.0.1:5001".to_owned(), 1, None),
            ("127.0.0.1:5002".to_owned(), 3, None),
            ("127.0.0.1:9000".to_owned(), 1, Some("app.shoal.test")),
            ("127.0.0.9:9000".to_owned(), 1, Some("app.shoal.test")),
        ]
    );
    assert_eq!(l.members(&resolved, 3).len(), 3, "capped");
    resolved.insert("db.shoal.test".into(), vec!["127.0.0.1".parse().unwrap()]);
    let m = l.members(&resolved, 100);
    assert_eq!(m.len(), 5);
    assert_eq!(m[4].addr.to_string(), "127.0.0.1:9001");
}

#[test]
fn bad_backend_entries_are_named_with_the_problem() {
    let with = |b: &str| {
        err(&GOOD.replace(
            r#"backends = ["127.0.0.1:5001", "127.0.0.1:5002", "[::1]:5003"]"#,
            &format!(r#"backends = ["127.0.0.1:5001", {b}]"#),
        ))
    };
    let e = with(r#"{ addr = "127.0.0.1:5002", weight = 0 }"#);
    assert!(
        e.contains("backends[1].weight = 0: must be 1 to 256"),
        "{e}"
    );
    let e = with(r#"{ addr = "127.0.0.1:5002", weight = 257 }"#);
    assert!(e.contains("backends[1].weight = 257"), "{e}");
    let e = with(r#"{ addr = "app.shoal.test" }"#);
    assert!(
        e.contains("backends[1] = \"app.shoal.test\": missing port"),
        "{e}"
    );
    let e = with(r#"{ weight = 2 }"#);
    assert!(
        e.contains("backends[1]") && e.contains("missing field `addr`"),
        "{e}"
    );
    let e = with(r#"{ addr = "127.0.0.1:5002", wieght = 2 }"#);
    assert!(
        e.contains("backends[1]") && e.contains("unknown field `wieght`"),
        "{e}"
    );
    let e = with(r#"{ addr = "127.0.0.1:5002", weight = -1 }"#);
    assert!(e.contains("backends[1].weight"), "{e}");
    let e = with(r#""127.0.0.1:5001""#);
    assert!(
        e.contains("backends[1] = \"127.0.0.1:5001\": duplicate backend"),
        "{e}"
    );
    let e = with(r#"{ addr = "APP.shoal.test:80" }, "app.shoal.test:80""#);
    assert!(e.contains("backends[2]") && e.contains("duplicate"), "{e}");
    let e = with("5");
    assert!(e.contains("backends[1]") && e.contains("a backend"), "{e}");
    let e = err(&GOOD.replace(
        "admin = \"127.0.0.1:9100\"",
        "admin = \"127.0.0.1:9100\"\nresolver = \"dns\"",
    ));
    assert!(e.contains("node.resolver = \"dns\""), "{e}");
    let e = err(&GOOD.replace(
        "admin = \"127.0.0.1:9100\"",
        "admin = \"127.0.0.1:9100\"\nbackend_resolve_interval_ms = 0",
    ));
    assert!(e.contains("node.backend_resolve_interval_ms = 0"), "{e}");
}
