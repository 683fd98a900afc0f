//! One real `shoal` process, started from a config string.

use crate::backend::http_get;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The `shoal` binary: `$SHOAL_BIN`, or the one cargo built next to this
/// test executable (`cargo test --workspace` builds it: the `shoal`
/// package has integration tests of its own).
pub fn shoal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return PathBuf::from(p);
    }
    // Tests run from target/<profile>/deps, tools from target/<profile>.
    let exe = std::env::current_exe().expect("current_exe");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("shoal"))
        .collect();
    candidates.iter().find(|b| b.is_file()).cloned().unwrap_or_else(|| {
        panic!("no shoal binary in {candidates:?}: run `cargo build -p shoal` first, or set SHOAL_BIN")
    })
}

/// For a long-run binary of this package (fleet_measure, soak), which sits
/// in `target/P` beside `shoal` while the harness looks next to a test
/// executable: unless `$SHOAL_BIN` is set, runs this program again with it
/// pointing at the sibling (no `set_var`: unsafe) and returns that run's
/// exit code; `None` when it is set and the caller should go on.
pub fn rerun_with_sibling_shoal() -> Option<std::process::ExitCode> {
    use std::process::ExitCode;
    if std::env::var_os("SHOAL_BIN").is_some() {
        return None;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe.with_file_name("shoal");
    if !bin.exists() {
        eprintln!(
            "{} does not exist: run `cargo build --release -p shoal` first, or set SHOAL_BIN",
            bin.display()
        );
        return Some(ExitCode::FAILURE);
    }
    let status = Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env("SHOAL_BIN", &bin)
        .status();
    Some(match status {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("re-running {}: {e}", exe.display());
            ExitCode::FAILURE
        }
    })
}

/// The start of a long-run binary of this package: re-runs it with the
/// sibling `shoal` if needed ([`rerun_with_sibling_shoal`]), parses its
/// arguments (a bad one: the message and exit 2) and builds a
/// multi-threaded runtime. `Err` is the exit code to return at once.
pub fn tool_start<A>(
    parse: impl FnOnce() -> anyhow::Result<A>,
) -> Result<(A, tokio::runtime::Runtime), std::process::ExitCode> {
    if let Some(code) = rerun_with_sibling_shoal() {
        return Err(code);
    }
    let args = parse().map_err(|e| {
        eprintln!("{e:#}");
        std::process::ExitCode::from(2)
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    Ok((args, rt))
}

/// The command-line flags of a long-run binary, one at a time.
#[derive(Debug)]
pub struct Flags {
    it: std::iter::Skip<std::env::Args>,
    usage: &'static str,
}

impl Flags {
    /// This process's arguments; `usage` is printed for `--help` and in
    /// errors.
    pub fn new(usage: &'static str) -> Flags {
        Flags {
            it: std::env::args().skip(1),
            usage,
        }
    }

    /// The next flag, `None` after the last; `-h` or `--help` prints the
    /// usage and exits with 0.
    pub fn next_flag(&mut self) -> Option<String> {
        let flag = self.it.next()?;
        if flag == "-h" || flag == "--help" {
            println!("{}", self.usage);
            std::process::exit(0);
        }
        Some(flag)
    }

    /// The value that follows `flag`.
    pub fn value(&mut self, flag: &str) -> anyhow::Result<String> {
        use anyhow::Context;
        self.it
            .next()
            .with_context(|| format!("{flag} needs a value\n{}", self.usage))
    }

    /// The error for a flag this binary does not know.
    pub fn unknown(&self, flag: &str) -> anyhow::Error {
        anyhow::anyhow!("unknown argument {flag:?}\n{}", self.usage)
    }
}

/// The whole `main` of a long-run binary whose `run` prints its own
/// results: [`tool_start`], then `run`; a failure is printed as
/// `NAME failed: …` with exit 1.
pub fn tool_main<A, F>(
    name: &str,
    parse: impl FnOnce() -> anyhow::Result<A>,
    run: impl FnOnce(A) -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let (args, rt) = match tool_start(parse) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A running `shoal` process; killed (by its PID) when dropped.
#[derive(Debug)]
pub struct Shoal {
    child: Child,
    /// Listener name → bound address, from the `ready` event.
    pub listeners: BTreeMap<String, SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// The fleet endpoint, with `[cluster]`.
    pub cluster: Option<SocketAddr>,
    /// The DNS server (UDP and TCP), with `[dns]`.
    pub dns: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<Value>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
    _dir: tempfile::TempDir,
}

impl Shoal {
    /// Writes `config` to a file and runs `shoal run -c FILE`.
    pub async fn start(config: &str) -> Shoal {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shoal.toml");
        std::fs::write(&path, config).unwrap();
        let args = vec![
            "run".to_owned(),
            "-c".to_owned(),
            path.display().to_string(),
        ];
        Shoal::spawn(args, dir).await
    }

    /// Runs `shoal --log-format json ARGS…` and waits for its `ready` event.
    pub async fn spawn(args: Vec<String>, dir: tempfile::TempDir) -> Shoal {
        let mut child = Command::new(shoal_bin())
            .args(["--log-format", "json", "--log-level", "debug"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shoal");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let v: Value =
                        serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
                    if v["message"] == "ready" {
                        let _ = ready_tx.send(v.clone());
                    }
                    logs.lock().unwrap().push(v);
                }
            })
        };
        let ready = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(crate::WAIT))
            .await
            .unwrap();
        let Ok(ready) = ready else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "shoal did not become ready; logs: {:?}",
                logs.lock().unwrap()
            );
        };
        let listeners = ready["listeners"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.parse().unwrap())
            })
            .collect();
        let admin = ready["admin"].as_str().and_then(|a| a.parse().ok());
        let cluster = ready["cluster"].as_str().and_then(|a| a.parse().ok());
        let dns = ready["dns"].as_str().and_then(|a| a.parse().ok());
        Shoal {
            child,
            listeners,
            admin,
            cluster,
            dns,
            logs,
            reader: Some(reader),
            exit: None,
            _dir: dir,
        }
    }

    /// The bound address of listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    /// `GET /status`, parsed.
    pub async fn status(&self) -> Value {
        let (code, body) = http_get(self.admin.expect("admin endpoint"), "/status")
            .await
            .unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let (code, body) = http_get(self.admin.expect("admin endpoint"), "/metrics")
            .await
            .unwrap();
        assert_eq!(code, 200, "{body}");
        body
    }

    /// `/status`'s entry for listener `name`.
    async fn listener_status(&self, name: &str) -> Value {
        let s = self.status().await;
        s["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no listener {name} in {s}"))
    }

    /// `/status` backends of listener `name`: (address, up, active).
    pub async fn backends(&self, name: &str) -> Vec<(String, bool, u64)> {
        let l = self.listener_status(name).await;
        l["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["address"].as_str().unwrap().to_owned(),
                    b["up"].as_bool().unwrap(),
                    b["active_connections"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// The log events whose message is `message`.
    pub fn logs_with(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["message"] == message)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until at least one log event has message `message`,
    /// then returns all of them. Log lines travel through a pipe and a
    /// reader thread, so they can trail what `/status` already shows.
    pub async fn log_eventually(&self, message: &str) -> Vec<Value> {
        crate::eventually(&format!("a log line `{message}`"), crate::WAIT, || {
            let found = self.logs_with(message);
            async move { (!found.is_empty()).then_some(found) }
        })
        .await
    }

    /// Every log event so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// The PID of the process this harness started.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file descriptors the process holds now (the entries of
    /// `/proc/PID/fd`).
    pub fn open_fds(&self) -> BTreeSet<u32> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// [`Shoal::open_fds`] once two readings in a row agree, so that a
    /// socket open for a moment (a health check) is not counted.
    pub async fn open_fds_quiet(&self) -> BTreeSet<u32> {
        let mut last = self.open_fds();
        crate::eventually("two equal readings of the open fds", crate::WAIT, || {
            let now = self.open_fds();
            let same = (now == last).then(|| now.clone());
            last = now;
            async move { same }
        })
        .await
    }

    /// Lowers the file descriptor limit so that exactly `free` descriptors
    /// can still be opened (the limit bounds descriptor *numbers*, and the
    /// process may hold a high one it inherited), from a quiet reading.
    /// Returns the limit set.
    pub async fn leave_fds_free(&self, free: usize) -> u32 {
        let open = self.open_fds_quiet().await;
        let limit = (0..)
            .filter(|n| !open.contains(n))
            .nth(free)
            .expect("a free descriptor number");
        self.set_fd_limit(limit);
        limit
    }

    /// Sets the process's file descriptor limit (soft and hard) to `n`
    /// with `prlimit(1)`. Lowering needs no privilege; raising the hard
    /// limit back would, so tests only lower it.
    pub fn set_fd_limit(&self, n: u32) {
        let status = Command::new("prlimit")
            .arg("--pid")
            .arg(self.child.id().to_string())
            .arg(format!("--nofile={n}:{n}"))
            .status()
            .expect("run prlimit (util-linux)");
        assert!(status.success(), "prlimit --nofile={n}: {status:?}");
    }

    /// Sends SIGKILL to the process this harness started (a crash).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    /// `/status`'s fleet size (`cluster.live_nodes`, 1 without a fleet).
    pub async fn live_nodes(&self) -> u64 {
        let s = self.status().await;
        s["cluster"]["live_nodes"].as_u64().unwrap_or(1)
    }

    /// `/status` backends of listener `name`: (address, cluster_connections).
    pub async fn cluster_counts(&self, name: &str) -> Vec<(String, u64)> {
        let l = self.listener_status(name).await;
        l["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["address"].as_str().unwrap().to_owned(),
                    b["cluster_connections"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Sends SIGTERM to the process this harness started.
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends SIGHUP to the process this harness started.
    pub fn sighup(&self) {
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// The exit status, if the process has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().unwrap();
        }
        self.exit
    }

    /// Waits (bounded by `limit`) for the process to exit, then for its
    /// last log lines to be read.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = crate::eventually("shoal to exit", limit, || {
            let e = self.try_exit();
            async move { e }
        })
        .await;
        if let Some(reader) = self.reader.take() {
            // The pipe closed with the process: the reader ends promptly.
            let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        }
        status
    }
}

impl Drop for Shoal {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
