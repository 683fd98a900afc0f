//! The `shoal` command: `run`, `check-config`, `demo`, `ctl`, `status`,
//! `certs`.
//!
//! Exit codes: 0 after a clean stop, 2 for a bad configuration, a bad
//! certificate, a bad `--log-level` or a socket that cannot be bound, 1 for
//! any other failure.
//!
//! ## Layout
//! - this module: the command line, logging, signals, exit codes.
//! - [`load`]: reading a configuration and its certificates, shared by
//!   `run` and `check-config`.
//! - [`demo`]: `shoal demo`.
//! - [`ctl`]: `shoal ctl`, commands to a running node's admin endpoint.
//! - [`status`]: `shoal status`, and the admin HTTP client and in-place
//!   redraw that `ctl` and `demo` share.
//! - [`view`]: the fleet table drawn from a node's `/status`, for
//!   `status` and `demo`.

mod ctl;
mod demo;
mod load;
mod status;
mod view;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shoal_runtime::Node;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::info;

/// shoal: a fleet of Layer-4 TCP load balancers that act as one.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about, long_about = None)]
struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or tracing
    /// directives such as `info,shoal::conn=warn`. Per-connection lines are
    /// logged at info under the target `shoal::conn`. The DNS server's
    /// library (`hickory_server`) logs errors only unless the filter names
    /// it.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log_level: String,

    /// Log line format: human-readable `text`, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node from a TOML configuration file until SIGTERM or Ctrl-C,
    /// then stop accepting and drain open connections
    /// (`node.drain_timeout_ms`).
    ///
    /// SIGHUP (or `POST /reload` on the admin endpoint) reloads: the file
    /// and the node certificate and key are read again and applied as a
    /// diff (listeners and backends added or removed, which drain; health,
    /// timeouts and limits in place; unchanged listeners keep their
    /// sockets). A file that does not validate, or that changes a setting
    /// that cannot change live (node.name, cluster.bind, the CA, ...),
    /// changes nothing; the error is logged and counted
    /// (`shoal_reload_failures_total`).
    Run {
        /// Path to the configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Binary upgrade: take the listening sockets of the shoal process
        /// listening at PATH (its `node.takeover_socket`), which then
        /// leaves the fleet, stops accepting once this one accepts, and
        /// drains. No client is refused meanwhile. If no process answers
        /// at PATH, start as usual (so a service can always pass it).
        #[arg(long, value_name = "PATH")]
        take_over: Option<PathBuf>,
    },
    /// Check a configuration file and the cluster certificates it names
    /// (loaded and verified as `run` does) and exit: 0 if both are valid, 2
    /// with a one-line error naming the field and value if not. Binds
    /// nothing.
    CheckConfig {
        /// Path to the configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Start a local fleet on loopback: demo backends, three shoal nodes
    /// with generated certificates, and the fleet table of `shoal status`
    /// (redrawn in place on a terminal, with the logs sent to a file it
    /// names); runs until Ctrl-C or --duration.
    Demo(demo::DemoArgs),
    /// Operate a running fleet through any node's admin endpoint: drain
    /// or undrain a backend fleet-wide.
    Ctl(ctl::CtlArgs),
    /// Show the fleet at a glance, as one node sees it: its members and
    /// the age of their last report, and per backend each node's checks
    /// and connections, the verdict, drains and the local and fleet-wide
    /// counts. The same table `shoal demo` draws; the admin endpoint's
    /// page (`GET /`) shows it in a browser.
    Status(status::StatusArgs),
    /// Generate the cluster CA and node certificates (mutual TLS between
    /// nodes: a node without a certificate from the CA cannot join).
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a new cluster CA to DIR/ca.pem and DIR/ca.key (refuses to
    /// overwrite). Keep ca.key secret: whoever holds it can admit nodes.
    Init {
        /// Directory for the CA files (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write DIR/NAME.pem and DIR/NAME.key, a node certificate signed by
    /// the CA in DIR (from `shoal certs init DIR`).
    Node {
        /// The node's name (letters, digits, `-`; it appears in the
        /// certificate).
        #[arg(value_name = "NAME")]
        name: String,
        /// Directory holding ca.pem and ca.key; the node files go there too.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// A bad filter is bad input (exit 2). The parse error's `Display` already
/// holds its cause, so it is printed once, not as a chain. Logs go to
/// stderr, or to `file` (created or truncated; no colours) if given.
fn init_logging(cli: &Cli, file: Option<&std::path::Path>) -> Result<(), Failure> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).map_err(|e| {
        Failure::Usage(format!(
            "--log-level (or RUST_LOG) {:?} is not a valid filter: {e}",
            cli.log_level
        ))
    })?;
    // Colour only on a terminal: log files and journald would keep the
    // escape codes. NO_COLOR (no-color.org) turns it off there too.
    let ansi = file.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // hickory-server logs every request it answers at info, and at warn
    // some that a stranger can send: the DNS server ([dns]) counts and
    // logs those itself, rate-limited. An explicit directive still wins.
    let filter = if cli.log_level.contains("hickory") {
        filter
    } else {
        filter.add_directive(
            "hickory_server=error"
                .parse()
                .map_err(|e| Failure::Usage(format!("internal log directive: {e}")))?,
        )
    };
    let writer = match file {
        None => BoxMakeWriter::new(std::io::stderr),
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| {
                Failure::Usage(format!(
                    "log file {}: cannot create it: {e}",
                    path.display()
                ))
            })?;
            BoxMakeWriter::new(std::sync::Arc::new(f))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Registers the SIGTERM, SIGINT (Ctrl-C) and SIGHUP handlers at once, and
/// returns a future that resolves on SIGTERM or SIGINT. Registering before
/// anything is bound matters: a signal that arrives before the handler
/// exists would kill the process with no drain.
///
/// SIGHUP is logged and otherwise ignored: its default action kills, and
/// `logrotate` and `systemctl reload` send it to a node that should stay up.
/// tokio keeps a handler installed for the life of the process, so a
/// SIGHUP during the drain (after this future resolved) is ignored too,
/// without a log line. `shoal run` reloads on SIGHUP instead
/// ([`signals_with_reload`]).
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (shutdown, hup) = signals_with_reload();
    async move {
        if let Some(mut hup) = hup {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP received: no configuration file to reload; nothing changed");
                }
            });
        }
        shutdown.await
    }
}

/// Registers the SIGTERM, SIGINT (Ctrl-C) and SIGHUP handlers at once (see
/// [`shutdown_signal`]); returns the future that resolves on SIGTERM or
/// SIGINT, and SIGHUP's stream for the caller to reload on
/// ([`reload_on_sighup`]); SIGHUPs that arrive before it is read wait in
/// the stream (once: signals coalesce).
pub(crate) fn signals_with_reload() -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    Option<tokio::signal::unix::Signal>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    let hup = match signal(SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler: SIGHUP would kill the node; reload with POST /reload");
            None
        }
    };
    let shutdown = async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("interrupt received"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    };
    (shutdown, hup)
}

/// Reloads `reload`'s node on every SIGHUP, for the life of the process.
/// Once the node stops accepting (a drain), SIGHUP is logged and ignored.
fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    reload: shoal_runtime::reload::ReloadHandle,
) {
    use shoal_runtime::reload::NotQueued;
    tokio::spawn(async move {
        // A stream that ended (`None`) ends the task instead of spinning.
        while hup.recv().await.is_some() {
            match reload.signal() {
                Ok(()) => info!("SIGHUP received: reloading the configuration"),
                Err(NotQueued::Pending) => {
                    info!(
                        "SIGHUP received: reloads are queued already; they read the file as it is now"
                    )
                }
                Err(NotQueued::Stopping) => {
                    info!(
                        "SIGHUP received during the drain: ignored, the configuration is unchanged"
                    )
                }
            }
        }
    });
}

/// Logs, in one line, where every socket is bound; tests and scripts wait
/// for it (with `--log-format json`, the event whose message is `ready`).
fn log_ready(node: &Node) {
    let listeners = node
        .listener_addrs()
        .iter()
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    let admin = node.admin_addr().map(|a| a.to_string()).unwrap_or_default();
    let cluster = node
        .cluster_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let dns = node.dns_addr().map(|a| a.to_string()).unwrap_or_default();
    info!(listeners, admin, cluster, dns, "ready");
}

/// The control runtime: health checks, the fleet, the admin endpoint and
/// signals, on the main thread. Client connections run on the node's own
/// data threads (`[node] worker_threads`, see shoal_runtime::dataplane).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

pub(crate) enum Failure {
    /// Bad input (configuration, certificates, flags) or binding: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Other(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::CheckConfig { file } => match load::load(file) {
            Ok(load::Loaded { config: c, tls }) => {
                let backends = c.listeners.iter().map(|l| l.backends.len()).sum::<usize>();
                println!(
                    "{}: ok ({} listener{}, {} backend{}{})",
                    file.display(),
                    c.listeners.len(),
                    if c.listeners.len() == 1 { "" } else { "s" },
                    backends,
                    if backends == 1 { "" } else { "s" },
                    if tls.is_some() {
                        ", cluster certificates verified"
                    } else {
                        ""
                    },
                );
                Ok(())
            }
            Err(e) => Err(Failure::Usage(e)),
        },
        Command::Run { config, take_over } => init_logging(&cli, None)
            .and_then(|()| load::load(config).map_err(Failure::Usage))
            .and_then(|loaded| {
                let rt = runtime().map_err(Failure::Other)?;
                rt.block_on(async {
                    let (shutdown, hup) = signals_with_reload();
                    // The configuration and certificates are checked
                    // first: a successor that cannot start must not make
                    // the running process leave its fleet.
                    let inherited = match take_over {
                        None => None,
                        Some(path) => {
                            let taken = shoal_runtime::handover::take_over(path)
                                .await
                                .map_err(|e| Failure::Other(e.into()))?;
                            if taken.is_none() {
                                info!(path = %path.display(), "no running process at the take-over socket: starting fresh");
                            }
                            taken
                        }
                    };
                    let mut node = Node::bind_with(loaded.config, loaded.tls.as_ref(), inherited)
                        .map_err(|e| Failure::Usage(e.to_string()))?;
                    let path = config.clone();
                    node.set_loader(shoal_runtime::reload::Loader {
                        origin: config.display().to_string(),
                        load: Box::new(move || {
                            load::load(&path).map(|l| shoal_runtime::reload::Loaded {
                                config: l.config,
                                tls: l.tls,
                            })
                        }),
                    });
                    if let Some(hup) = hup {
                        reload_on_sighup(hup, node.reload_handle());
                    }
                    log_ready(&node);
                    node.run(shutdown).await;
                    Ok(())
                })
            }),
        Command::Certs(CertsCommand::Init { dir }) => shoal_transport::init_ca(dir)
            .map(|files| {
                println!("wrote {} and {}", files.cert.display(), files.key.display());
            })
            .map_err(|e| Failure::Usage(e.to_string())),
        Command::Certs(CertsCommand::Node { name, dir }) => shoal_transport::issue_node(name, dir)
            .map(|files| {
                println!("wrote {} and {}", files.cert.display(), files.key.display());
            })
            .map_err(|e| Failure::Usage(e.to_string())),
        Command::Ctl(args) => ctl::run(args).map_err(|e| match e.downcast::<ctl::Refused>() {
            Ok(refused) => Failure::Usage(refused.to_string()),
            Err(e) => Failure::Other(e),
        }),
        Command::Status(args) => status::run(args).map_err(Failure::Other),
        Command::Demo(args) => {
            let log_file = args.log_file();
            init_logging(&cli, log_file.as_deref()).and_then(|()| {
                let rt = runtime().map_err(Failure::Other)?;
                rt.block_on(demo::run(args.clone(), log_file))
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("shoal: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("shoal: {e:#}");
            ExitCode::from(1)
        }
    }
}
