//! Runs one test again inside namespaces of its own, so that it can change
//! what `getaddrinfo(3)` reads without touching the machine: a network
//! namespace (only `lo`, brought up; every 127.0.0.0/8 address works and
//! nothing leaves), a mount namespace whose `/etc` files are the test's
//! (bind mounts), and a PID namespace that dies with the outer test, so
//! every `shoal` the inner run started goes with it even if it hangs.
//!
//! The outer run calls [`run_inside`]; the inner run, the same test
//! function re-executed with [`INSIDE`] set, sees [`inside`] true and
//! does the work. Needs root, util-linux (`unshare`, `mount`) and iproute2
//! (`ip`); without them the test fails and says which is missing.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Set in the inner run's environment.
pub const INSIDE: &str = "SHOAL_E2E_INSIDE_NAMESPACE";

/// How long the inner run may take before it is killed and the test fails.
const INNER_RUN_MS: u64 = 120_000;

/// True in the inner run.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Runs the test `test` (its full name in this test binary) again, alone,
/// inside new network, mount and PID namespaces where each `(path,
/// contents)` of `etc` is bind-mounted over `path` (which must exist).
/// Fails unless the inner run passed that one test. Its output is
/// printed, so `--nocapture` shows it.
pub fn run_inside(test: &str, etc: &[(&str, &str)]) {
    run_inside_for(test, etc, Duration::from_millis(INNER_RUN_MS));
}

/// `'s'`, for a shell script.
fn quoted(s: &str) -> String {
    assert!(!s.contains('\''), "no quote in a path or argument: {s}");
    format!("'{s}'")
}

/// `unshare` with new network, mount and PID namespaces running `sh -c
/// script` (which should end by exec'ing the program to run), with
/// [`INSIDE`] set.
fn unshare(script: &str) -> Command {
    crate::needs::root("new network, mount and PID namespaces (unshare)");
    let unshare = crate::needs::tool("unshare", "util-linux");
    crate::needs::tool("mount", "mount");
    crate::needs::tool("ip", "iproute2");
    let mut c = Command::new(&unshare);
    // --kill-child: if unshare dies (killed, or with the outer run), the
    // namespace's first process gets SIGKILL, and with it every process
    // of the PID namespace.
    c.args([
        "--net",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        script,
    ])
    .env(INSIDE, "1");
    c
}

/// For a binary of this package (the chaos run): runs this program again
/// with `args` inside new network, mount and PID namespaces (no `/etc`
/// files of its own), its output going where this one's goes, and
/// returns its exit status. Needs root, util-linux and iproute2.
pub fn exec_inside(args: &[String]) -> std::io::Result<std::process::ExitStatus> {
    let exe = std::env::current_exe()?;
    let mut script = String::from("set -e\nip link set lo up\nexec ");
    script += &quoted(&exe.display().to_string());
    for a in args {
        script += " ";
        script += &quoted(a);
    }
    script += "\n";
    unshare(&script).status()
}

/// [`run_inside`] with the inner run bounded by `limit` rather than
/// [`INNER_RUN_MS`].
pub fn run_inside_for(test: &str, etc: &[(&str, &str)], limit: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from("set -e\nip link set lo up\n");
    for (i, (target, contents)) in etc.iter().enumerate() {
        let source = dir.path().join(format!("etc-{i}"));
        std::fs::write(&source, contents).unwrap();
        script += &format!(
            "mount --bind {} {}\n",
            quoted(&source.display().to_string()),
            quoted(target)
        );
    }
    let exe = std::env::current_exe().unwrap();
    script += &format!(
        "exec {} --exact {} --nocapture --test-threads=1\n",
        quoted(&exe.display().to_string()),
        quoted(test)
    );
    let child = unshare(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn unshare: {e}"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for unshare"),
        Err(_) => {
            // This PID is the unshare process this function started.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let out = rx.recv().unwrap().expect("wait for unshare");
            panic!(
                "the inner run took longer than {limit:?} and was killed\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- inside the namespaces ---\n{stdout}\n{stderr}\n--- end ---");
    assert!(
        out.status.success(),
        "inside the namespaces: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the inner run did not run `{test}`: {stdout}"
    );
}
