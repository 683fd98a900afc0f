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
    assert_eq!(l.connect_timeout, Duration::from_secs(2));
    assert_eq!(l.retries, 2);
    assert_eq!(l.max_connections, None);
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e = err(&GOOD.replace("policy =", "polcy ="));
    assert!(e.starts_with("test.toml:9:1: unknown field `polcy`"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
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
