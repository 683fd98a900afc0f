//! `shoal ctl`: operate a running node, and through it the fleet, over its
//! admin endpoint (HTTP on `node.admin`).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use shoal_runtime::admin::COMMAND_HEADER;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often `--wait` reads the node's status.
const WAIT_POLL_MS: u64 = 500;

#[derive(Debug, Args)]
pub struct CtlArgs {
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Args)]
struct Target {
    /// The admin endpoint of any node of the fleet (`node.admin`), IP:port.
    #[arg(long, value_name = "ADDR")]
    admin: SocketAddr,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Drain a backend fleet-wide: from now on no node of the fleet opens a
    /// new connection to it; established connections finish. The command
    /// is fleet state: nodes that start later or were cut off learn it.
    Drain {
        /// The listener's name (`[[listener]] name`).
        listener: String,
        /// The backend as configured (`IP:port`).
        backend: String,
        /// Wait until the fleet-wide count of the backend's connections
        /// reaches zero (as this node sees it), printing it as it falls.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit 1).
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout_s: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Take this node out of new-connection duty before stopping it: its
    /// listeners stop accepting, it tells the fleet it leaves, and its open
    /// connections finish. The process keeps running (serving /status)
    /// until SIGTERM or Ctrl-C.
    DrainNode {
        /// Wait until the node's open client connections reach zero,
        /// printing the count as it falls.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit 1).
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        timeout_s: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Undo a drain, fleet-wide: the backend takes new connections again
    /// (if its health allows).
    Undrain {
        /// The listener's name (`[[listener]] name`).
        listener: String,
        /// The backend as configured (`IP:port`).
        backend: String,
        #[command(flatten)]
        target: Target,
    },
}

/// A refusal by the node (unknown listener or backend): the caller's
/// input was wrong, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

pub fn run(args: &CtlArgs) -> anyhow::Result<()> {
    let agent = crate::status::agent();
    match &args.command {
        CtlCommand::Drain {
            listener,
            backend,
            wait,
            timeout_s,
            target,
        } => {
            let base = format!("http://{}", target.admin);
            command(&agent, &base, listener, backend, "drain")?;
            if *wait {
                wait_drained(
                    &agent,
                    &base,
                    listener,
                    backend,
                    Duration::from_secs(*timeout_s),
                )?;
            }
        }
        CtlCommand::DrainNode {
            wait,
            timeout_s,
            target,
        } => {
            let base = format!("http://{}", target.admin);
            let mut response = agent
                .post(format!("{base}/drain-node"))
                .header(COMMAND_HEADER, "1")
                .send_empty()
                .with_context(|| format!("admin endpoint {base}"))?;
            let status = response.status();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            if !status.is_success() {
                bail!("admin endpoint {base}: {status}: {}", body.trim());
            }
            println!("drain-node: {base}: listeners closed, leaving the fleet");
            if *wait {
                wait_until_zero(
                    &agent,
                    &base,
                    "this node",
                    |status| {
                        Ok(status["listeners"]
                            .as_array()
                            .map(|ls| {
                                ls.iter()
                                    .filter_map(|l| l["active_connections"].as_u64())
                                    .sum()
                            })
                            .unwrap_or(0))
                    },
                    Duration::from_secs(*timeout_s),
                )?;
            }
        }
        CtlCommand::Undrain {
            listener,
            backend,
            target,
        } => {
            let base = format!("http://{}", target.admin);
            command(&agent, &base, listener, backend, "undrain")?;
        }
    }
    Ok(())
}

fn command(
    agent: &ureq::Agent,
    base: &str,
    listener: &str,
    backend: &str,
    verb: &str,
) -> anyhow::Result<()> {
    let url = format!(
        "{base}/backends/{}/{}/{verb}",
        encode(listener),
        encode(backend)
    );
    let mut response = agent
        .post(&url)
        .header(COMMAND_HEADER, "1")
        .send_empty()
        .with_context(|| format!("admin endpoint {base}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("admin endpoint {base}: reading the answer"))?;
    if status == 404 {
        return Err(Refused(body.trim().to_owned()).into());
    }
    if !status.is_success() {
        bail!("admin endpoint {base}: {status}: {}", body.trim());
    }
    let answer: Value = serde_json::from_str(&body)
        .with_context(|| format!("admin endpoint {base}: not a drain answer: {body}"))?;
    let scope = answer["scope"].as_str().unwrap_or("?");
    match answer["version"].as_u64() {
        Some(v) => println!("{verb}: {listener} {backend}: done ({scope}-wide, version {v})"),
        None => println!("{verb}: {listener} {backend}: done ({scope} only)"),
    }
    Ok(())
}

/// Reads `/status` until the backend's fleet-wide count is zero.
fn wait_drained(
    agent: &ureq::Agent,
    base: &str,
    listener: &str,
    backend: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let what = format!("{listener} {backend}");
    wait_until_zero(
        agent,
        base,
        &what,
        |status| {
            let b = status["listeners"]
                .as_array()
                .and_then(|ls| ls.iter().find(|l| l["name"] == listener))
                .and_then(|l| l["backends"].as_array())
                .and_then(|bs| bs.iter().find(|b| b["address"] == backend))
                .ok_or_else(|| {
                    Refused(format!(
                        "/status has no backend `{backend}` in `{listener}`"
                    ))
                })?;
            Ok(b["cluster_connections"].as_u64().unwrap_or(0))
        },
        timeout,
    )
}

/// Reads `/status` every [`WAIT_POLL_MS`] until `count` of it is zero,
/// printing it when it changes; an error after `timeout`.
fn wait_until_zero(
    agent: &ureq::Agent,
    base: &str,
    what: &str,
    count: impl Fn(&Value) -> Result<u64, Refused>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let status = crate::status::get_status(agent, base)?;
        let left = count(&status)?;
        if last != Some(left) {
            println!("{what}: {left} connections left");
            last = Some(left);
        }
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: still {left} connections after {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(WAIT_POLL_MS));
    }
}

/// Percent-encodes a path segment (backends contain `:`, IPv6 ones `[`
/// and `]`).
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
