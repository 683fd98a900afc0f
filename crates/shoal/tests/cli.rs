//! The `shoal` command line: help text, `check-config` exit codes and
//! messages, and start-up failures (bad config, port in use) that must exit
//! 2 with one line naming what was wrong, never panic.

use std::net::TcpListener;
use std::process::{Command, Output};

/// `$SHOAL_BIN` if set (to run these tests against another build, e.g.
/// one without a fix, and see them fail), else the binary cargo built.
fn shoal(args: &[&str]) -> Output {
    let bin = std::env::var_os("SHOAL_BIN")
        .unwrap_or_else(|| std::ffi::OsString::from(env!("CARGO_BIN_EXE_shoal")));
    Command::new(bin).args(args).output().expect("run shoal")
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

/// Writes a CA and a node certificate `NAME.pem`/`NAME.key` into `dir`
/// with the CLI, as an operator would.
fn certs(dir: &std::path::Path, names: &[&str]) {
    let d = dir.to_str().unwrap();
    let out = shoal(&["certs", "init", d]);
    assert!(out.status.success(), "{out:?}");
    for name in names {
        let out = shoal(&["certs", "node", name, d]);
        assert!(out.status.success(), "{out:?}");
    }
}

#[test]
fn every_shipped_example_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../cluster");
    // The fleet examples name certificates that cluster/up.sh makes in
    // cluster/certs (not in the repository): check each copy next to
    // freshly made ones, since check-config verifies them.
    let work = tempfile::tempdir().unwrap();
    certs(&work.path().join("certs"), &["node-1", "node-2", "node-3"]);
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let copy = work.path().join(path.file_name().unwrap());
            std::fs::copy(&path, &copy).unwrap();
            let out = shoal(&["check-config", copy.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {out:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example config in {dir}");
}

/// A node config with `[cluster]` naming `ca`, `cert` and `key`, every
/// socket on port 0.
fn cluster_config(ca: &str, cert: &str, key: &str) -> String {
    format!(
        r#"[node]
name = "node-1"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
allow_ephemeral_port = true
backends = ["127.0.0.1:5001"]

[cluster]
bind = "127.0.0.1:0"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
"#
    )
}

#[test]
fn check_config_verifies_the_cluster_certificates_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    certs(&dir.path().join("certs"), &["node-1"]);
    certs(&dir.path().join("other"), &["node-1"]);
    std::fs::write(dir.path().join("garbage.pem"), "this is not PEM\n").unwrap();
    let good = write_config(
        &dir,
        &cluster_config("certs/ca.pem", "certs/node-1.pem", "certs/node-1.key"),
    );
    let out = shoal(&["check-config", &good]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cluster certificates verified"),
        "{out:?}"
    );
    let cases = [
        (
            "missing certificate",
            cluster_config("certs/ca.pem", "certs/missing.pem", "certs/node-1.key"),
            "cluster.cert",
            "missing.pem",
        ),
        (
            "certificate from another CA",
            cluster_config("certs/ca.pem", "other/node-1.pem", "other/node-1.key"),
            "cluster.cert",
            "other/node-1.pem",
        ),
        (
            "key of another certificate",
            cluster_config("certs/ca.pem", "certs/node-1.pem", "other/node-1.key"),
            "cluster.key",
            "other/node-1.key",
        ),
        (
            "garbage CA",
            cluster_config("garbage.pem", "certs/node-1.pem", "certs/node-1.key"),
            "cluster.ca",
            "garbage.pem",
        ),
    ];
    for (what, text, field, file) in cases {
        let path = write_config(&dir, &text);
        let check = shoal(&["check-config", &path]);
        let check_err = String::from_utf8_lossy(&check.stderr);
        assert_eq!(check.status.code(), Some(2), "{what}: {check_err}");
        assert_eq!(
            check_err.trim_end().lines().count(),
            1,
            "{what}: one line: {check_err:?}"
        );
        assert!(
            check_err.contains(&format!("shoal.toml: {field}: ")) && check_err.contains(file),
            "{what}: expected {field} and {file} in {check_err:?}"
        );
        let run = shoal(&["run", "-c", &path]);
        let run_err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{what}: {run_err}");
        assert_eq!(
            run_err.trim_end().lines().last(),
            check_err.trim_end().lines().last(),
            "{what}: run and check-config report the same error"
        );
    }
}

#[test]
fn type_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &GOOD.replace("interval_ms = 2000", "interval_ms = -5"),
    );
    let out = shoal(&["check-config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("listener[0].health.interval_ms: ") && stderr.contains("-5"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn an_invalid_log_level_is_bad_input_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, GOOD);
    let out = shoal(&["--log-level", "web=loud=yes", "run", "-c", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("--log-level"), "{stderr}");
    let reason = "error parsing level filter";
    assert_eq!(
        stderr.matches(reason).count(),
        1,
        "printed once: {stderr:?}"
    );
}

/// A node's name in the fleet is its certificate's: a node holding
/// node-3's certificate cannot start as node-9 (issue 15, defect 8).
#[test]
fn a_node_name_that_is_not_the_certificates_is_refused_by_check_config_and_run() {
    let dir = tempfile::tempdir().unwrap();
    certs(&dir.path().join("certs"), &["node-3"]);
    let text = cluster_config("certs/ca.pem", "certs/node-3.pem", "certs/node-3.key")
        .replace("name = \"node-1\"", "name = \"node-9\"");
    let path = write_config(&dir, &text);
    for args in [
        vec!["check-config", path.as_str()],
        vec!["run", "-c", path.as_str()],
    ] {
        let out = shoal(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("node.name = \"node-9\" is not the name in cluster.cert (\"node-3\")"),
            "{args:?}: {err}"
        );
    }
    let good = write_config(&dir, &text.replace("node-9", "node-3"));
    assert!(shoal(&["check-config", &good]).status.success());
}

/// Logs written to a file or a pipe (journald, `up.sh`'s log files) are
/// plain text: colour codes only on a terminal.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let out = shoal(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--nodes",
        "1",
        "--clients",
        "0",
        "--table-every",
        "0",
        "--duration",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
