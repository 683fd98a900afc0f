//! The `shoal` command line: help text, `check-config` exit codes and
//! messages, and start-up failures (bad config, port in use) that must exit
//! 2 with one line naming what was wrong, never panic.

use std::net::TcpListener;
use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .expect("run shoal")
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("shoal.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The shipped example, so the documented shape is what is tested.
const GOOD: &str = include_str!("../../../cluster/single-node.toml");

#[test]
fn help_explains_every_command_and_flag() {
    let out = shoal(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["run", "check-config", "demo", "--log-level", "--log-format"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    let demo = String::from_utf8(shoal(&["demo", "--help"]).stdout).unwrap();
    for word in [
        "--backends",
        "--listen",
        "--admin",
        "--policy",
        "--duration",
    ] {
        assert!(demo.contains(word), "demo --help lacks {word}:\n{demo}");
    }
}

#[test]
fn check_config_accepts_the_documented_example() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, GOOD);
    let out = shoal(&["check-config", &path]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 listener, 3 backends)"));
}

#[test]
fn check_config_errors_name_field_and_value_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (GOOD.replace("policy =", "polcy ="), "unknown field `polcy`"),
        (
            GOOD.replace("127.0.0.1:5002", "127.0.0.1:99999"),
            "backends[1] = \"127.0.0.1:99999\"",
        ),
        (
            GOOD.replace(
                r#"["127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"]"#,
                "[]",
            ),
            "at least one backend",
        ),
        (
            format!("{GOOD}\n{}", &GOOD[GOOD.find("[[listener]]").unwrap()..]),
            "duplicate listener name",
        ),
        (
            GOOD.replace("least-conn", "fastest"),
            "unknown policy `fastest`",
        ),
        ("not toml at all [".to_owned(), "shoal.toml:1:"),
    ];
    for (text, expected) in cases {
        let path = write_config(&dir, &text);
        let out = shoal(&["check-config", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = shoal(&["check-config", "/nonexistent/shoal.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/shoal.toml"));
}

#[test]
fn run_with_a_port_in_use_exits_2_naming_the_listener() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("admin = \"127.0.0.1:9100\"", "");
    let path = write_config(&dir, &text);
    let out = shoal(&["run", "-c", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap();
    assert!(
        last.contains(&format!("listener \"web\": cannot bind 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn run_with_a_bad_config_exits_2_before_binding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &GOOD.replace("rise = 2", "rise = 0"));
    let out = shoal(&["run", "-c", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("health.rise = 0"));
}

#[test]
fn every_shipped_example_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../cluster");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = shoal(&["check-config", path.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {out:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example config in {dir}");
}
