//! A headless Chromium driven over WebDriver: `chromedriver` (Debian
//! package chromium-driver) on a loopback port, started by the test, and
//! `fantoccini` as the client. A machine without the packages fails the
//! test naming them ([`needs::tool`]); `.ci/run` installs them.
//!
//! Chromium runs as root here, so with `--no-sandbox`; and with every
//! background service off (`--disable-background-networking` and the
//! others), so that it sends nothing beyond loopback.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use shoal_e2e::needs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The flags every Chromium of the tests gets (a profile directory is
/// added per browser).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
];

/// How long chromedriver may take to listen, and Chromium to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One chromedriver process and one browser session through it. Dropping
/// it kills, by PID, chromedriver and every process it started.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// A free loopback port, for a process that takes no port 0.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let chromium = needs::tool("chromium", "chromium");
        let chromedriver = needs::tool("chromedriver", "chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut browser_args: Vec<String> =
            CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        browser_args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": chromium, "args": browser_args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        // chromedriver needs a moment to listen; a refused connect before
        // that is retried, anything else after the deadline fails.
        let client = loop {
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let mut b = Partial {
                        driver: Some(driver),
                    };
                    b.kill();
                    panic!("no WebDriver session from chromedriver on {url}: {e}");
                }
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Loads `addr`'s page at `path`.
    pub async fn goto(&self, addr: SocketAddr, path: &str) {
        let url = format!("http://{addr}{path}");
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("loading {url}: {e}"));
    }

    /// The text of every element `css` matches (empty if none, or if the
    /// page replaced them while they were read: the caller polls).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let Ok(found) = self.client.find_all(Locator::Css(css)).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in found {
            match e.text().await {
                Ok(t) => out.push(t),
                Err(_) => return Vec::new(),
            }
        }
        out
    }

    /// Attribute `name` of the first element `css` matches, if any.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let e = self.client.find(Locator::Css(css)).await.ok()?;
        e.attr(name).await.ok().flatten()
    }

    /// Clicks the first element `css` matches; false if there is none (or
    /// the page replaced it before the click: the caller polls).
    pub async fn click(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.click().await.is_ok(),
            Err(_) => false,
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?} in the page: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_tree(&mut self.driver);
    }
}

/// chromedriver before a session exists.
struct Partial {
    driver: Option<Child>,
}

impl Partial {
    fn kill(&mut self) {
        if let Some(mut d) = self.driver.take() {
            kill_tree(&mut d);
        }
    }
}

/// The PIDs of every descendant of `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and ')'.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
            {
                parent_of.push((child, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, ppid) in &parent_of {
            if ppid == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Kills chromedriver and everything it started (Chromium and its helper
/// processes), each by its PID, then reaps chromedriver.
fn kill_tree(driver: &mut Child) {
    let below = descendants(driver.id());
    for pid in below {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = driver.kill();
    let _ = driver.wait();
}
