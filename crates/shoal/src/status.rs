//! `shoal status`: the fleet at a glance, as one node's admin endpoint
//! sees it (its `/status`, drawn by [`crate::view`]); and the HTTP client
//! and the in-place redraw that `shoal ctl` and `shoal demo` share.

use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// One HTTP exchange with an admin endpoint, at most.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// The shortest `--watch` interval: a table redrawn faster cannot be read
/// and only loads the node.
const WATCH_MIN_S: u64 = 1;

/// Options of `shoal status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The admin endpoint of any node of the fleet (`node.admin`), IP:port.
    #[arg(long, value_name = "ADDR")]
    admin: SocketAddr,
    /// Redraw every SECONDS until Ctrl-C (in place on a terminal; one
    /// table after another otherwise).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(WATCH_MIN_S..))]
    watch: Option<u64>,
    /// Print the node's /status JSON as it is, instead of the table.
    #[arg(long)]
    json: bool,
}

/// The client for admin endpoints: answers of every status are returned
/// (the caller reads the body of an error), and nothing waits longer than
/// [`REQUEST_TIMEOUT_MS`].
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(REQUEST_TIMEOUT_MS)))
        .build()
        .into()
}

/// `GET {base}/status` as JSON; an error names the endpoint and what failed.
pub fn get_status(agent: &ureq::Agent, base: &str) -> anyhow::Result<Value> {
    let mut response = agent
        .get(format!("{base}/status"))
        .call()
        .with_context(|| format!("admin endpoint {base}"))?;
    let code = response.status();
    if !code.is_success() {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        bail!(
            "admin endpoint {base}: /status answered {code}: {}",
            body.trim()
        );
    }
    response
        .body_mut()
        .read_json()
        .with_context(|| format!("admin endpoint {base}: reading /status"))
}

/// Where frames of a periodically redrawn view go: on a terminal each one
/// replaces the last (cursor home, clear screen), so nothing scrolls;
/// otherwise (a pipe, a file) they follow each other, a blank line apart.
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    in_place: bool,
}

impl Screen {
    /// In place when stdout is a terminal.
    pub fn stdout() -> Screen {
        Screen {
            in_place: std::io::stdout().is_terminal(),
        }
    }

    pub fn in_place(&self) -> bool {
        self.in_place
    }

    /// Shows one frame. An error writing stdout (a closed pipe) is
    /// returned, so a watcher whose reader went away stops.
    pub fn show(&self, frame: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.in_place {
            // Home, the frame, then clear what an older, longer frame left
            // below it: no blank flash between two frames.
            write!(out, "\x1b[H{}\x1b[J", frame.replace('\n', "\x1b[K\n"))?;
        } else {
            writeln!(out, "{frame}")?;
        }
        out.flush()
    }
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let agent = agent();
    let base = format!("http://{}", args.admin);
    let draw = |status: &Value| {
        if args.json {
            serde_json::to_string_pretty(status).unwrap_or_default()
        } else {
            crate::view::render(status)
        }
    };
    let Some(every) = args.watch else {
        print!("{}", draw(&get_status(&agent, &base)?));
        if args.json {
            println!();
        }
        return Ok(());
    };
    let screen = Screen::stdout();
    if screen.in_place() {
        print!("\x1b[2J");
    }
    loop {
        // A node that does not answer is shown as such, and the watch goes
        // on: it may be restarting.
        let frame = match get_status(&agent, &base) {
            Ok(status) => draw(&status),
            Err(e) => format!("{e:#}\n"),
        };
        screen.show(&frame).context("writing to stdout")?;
        std::thread::sleep(Duration::from_secs(every));
    }
}
