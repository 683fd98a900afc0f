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
    assert!(l.backends[2].is_ipv6());
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
        "test.toml: listener \"web\": backends[1] = \"127.0.0.1:99999\": not an IP:port socket address (e.g. 127.0.0.1:5001 or [::1]:5001; port 1-65535)"
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
