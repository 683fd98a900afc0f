//! `shoal demo`: the embedded default, a local fleet on loopback.
//!
//! Starts small HTTP backends (each answers with its own name), a fleet of
//! shoal nodes in one process (certificates from an in-memory CA, joined
//! through the first node as seed), and demo clients that hold connections
//! open, arriving at the nodes with a skew (the first node gets half, as a
//! sticky DNS cache would cause). Every few seconds it draws the fleet
//! table of `shoal status` from the first node's `/status` (each node's
//! count per backend and the fleet-wide one): the backends stay balanced
//! even though one node holds most clients.
//!
//! On a terminal the table is redrawn in place and the logs go to a file
//! (named on screen), so per-connection lines do not push the table away;
//! when stdout is not a terminal, tables follow each other and the logs
//! stay on stderr unless `--log-file` is given.

use crate::status::{Screen, get_status};
use crate::{Failure, log_ready, shutdown_signal};
use rand::RngExt;
use rand::rngs::SmallRng;
use shoal_config::Config;
use shoal_runtime::Node;
use std::fmt::Write;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Options of `shoal demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many shoal nodes form the fleet.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// How many demo backends to start (each on a free loopback port).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    backends: u16,
    /// Where the first node accepts clients; node N uses the port plus N-1.
    /// Port 0 gives every node a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the first node serves its status page (/), /status and
    /// /metrics; node N uses the port plus N-1. Port 0 gives every node a
    /// free port.
    #[arg(long, default_value = "127.0.0.1:9100")]
    admin: SocketAddr,
    /// Balancing policy: least-conn (fleet-wide), local-least-conn,
    /// round-robin, random or first-available.
    #[arg(long, default_value = "least-conn")]
    policy: String,
    /// Demo clients holding connections open (each reconnects every few
    /// seconds, half of them through the first node). 0 for none.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    clients: u32,
    /// Seconds between two draws of the fleet table (the one `shoal
    /// status` draws, from the first node's /status); 0 to never draw.
    #[arg(long, default_value_t = 2)]
    table_every: u64,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Write the logs to FILE. Default: on a terminal, where the table is
    /// redrawn in place, a file in the temporary directory
    /// (shoal-demo-PID.log, named on screen); otherwise stderr.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

impl DemoArgs {
    /// Where the logs go: `--log-file`, or the default file on a
    /// terminal, or `None` for stderr.
    pub fn log_file(&self) -> Option<PathBuf> {
        self.log_file.clone().or_else(|| {
            std::io::stdout().is_terminal().then(|| {
                std::env::temp_dir().join(format!("shoal-demo-{}.log", std::process::id()))
            })
        })
    }
}

/// The longest request head a demo backend reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// Answers one HTTP request with the backend's name; a connection that
/// sends nothing is held open (it is a demo client holding a slot) until
/// the client or shoal's idle timeout closes it.
async fn serve_demo_client(mut stream: TcpStream, name: String) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return;
        }
    }
    let body = format!("hello from {name}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn start_backend(index: usize) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let name = format!("demo backend {index} ({addr})");
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_demo_client(stream, name.clone()));
            }
        }
    });
    Ok(addr)
}

fn offset(addr: SocketAddr, i: u16) -> SocketAddr {
    match addr.port() {
        0 => addr,
        p => SocketAddr::new(addr.ip(), p.saturating_add(i)),
    }
}

/// Node `i`'s configuration, as TOML a user could save (certificates are
/// in memory here; a saved file needs `shoal certs` files instead).
fn node_config(
    args: &DemoArgs,
    i: u16,
    backends: &[SocketAddr],
    seed: Option<SocketAddr>,
) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let seeds = seed.map(|s| format!("\"{s}\"")).unwrap_or_default();
    format!(
        r#"[node]
name = "node-{n}"
admin = "{admin}"
drain_timeout_ms = 2000

[[listener]]
name = "demo"
bind = "{listen}"
allow_ephemeral_port = true
policy = "{policy}"
backends = [{list}]
  [listener.health]
  interval_ms = 1000
  timeout_ms = 500

[cluster]
bind = "127.0.0.1:0"
seeds = [{seeds}]
ca = "in-memory"
cert = "in-memory"
key = "in-memory"
"#,
        n = i + 1,
        admin = offset(args.admin, i),
        listen = offset(args.listen, i),
        policy = args.policy,
    )
}

/// One demo client: connect through a node (half the time the first),
/// hold the connection a few seconds, repeat, until the demo ends.
async fn demo_client(nodes: Arc<Vec<SocketAddr>>, mut rng: SmallRng) {
    loop {
        let node = if rng.random_bool(0.5) {
            nodes[0]
        } else {
            nodes[rng.random_range(0..nodes.len())]
        };
        let hold = Duration::from_millis(rng.random_range(3000..10_000));
        if let Ok(stream) = TcpStream::connect(node).await {
            tokio::time::sleep(hold).await;
            drop(stream);
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One frame of the demo's view: its banner, the time, and the fleet
/// table drawn from the first node's `/status` (or why it could not be
/// read).
async fn frame(banner: &str, started: tokio::time::Instant, admin: SocketAddr) -> String {
    let base = format!("http://{admin}");
    let status =
        tokio::task::spawn_blocking(move || get_status(&crate::status::agent(), &base)).await;
    let table = match status {
        Ok(Ok(status)) => crate::view::render(&status),
        Ok(Err(e)) => format!("{e:#}\n"),
        Err(e) => format!("cannot read /status: {e}\n"),
    };
    format!(
        "{banner}[{:>4}s] the fleet as node-1 sees it (each node: its checks and connections):\n\n{table}",
        started.elapsed().as_secs()
    )
}

pub async fn run(args: DemoArgs, log_file: Option<PathBuf>) -> Result<(), Failure> {
    let signal = shutdown_signal();
    let mut backends = Vec::new();
    for i in 1..=usize::from(args.backends) {
        let addr = start_backend(i)
            .await
            .map_err(|e| Failure::Other(anyhow::anyhow!("demo backend {i}: {e}")))?;
        backends.push(addr);
    }
    let ca = shoal_transport::MemoryCa::new().map_err(|e| Failure::Other(e.into()))?;
    let mut nodes = Vec::new();
    let mut seed = None;
    for i in 0..args.nodes {
        let toml = node_config(&args, i, &backends, seed);
        let config =
            Config::from_toml(&toml, "demo config").map_err(|e| Failure::Usage(e.to_string()))?;
        let name = config.node.name.clone();
        let tls = ca.node(&name).map_err(|e| Failure::Other(e.into()))?;
        let node = Node::bind_with_tls(config, &tls).map_err(|e| {
            Failure::Usage(format!(
                "{e} (pick other ports with --listen and --admin; port 0 takes free ones)"
            ))
        })?;
        seed = seed.or(node.cluster_addr());
        nodes.push((name, node));
    }
    let mut banner = format!(
        "shoal demo: a fleet of {} nodes in front of {} demo backends\n\n",
        nodes.len(),
        backends.len()
    );
    for (i, b) in backends.iter().enumerate() {
        let _ = writeln!(banner, "  backend {}: {b}", i + 1);
    }
    banner.push('\n');
    let mut listen = Vec::new();
    for (name, node) in &nodes {
        let l = node.listener_addrs()[0].1;
        let admin = node.admin_addr().map(|a| a.to_string()).unwrap_or_default();
        let cluster = node
            .cluster_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            banner,
            "  {name}: clients http://{l}/   status page http://{admin}/   fleet (QUIC) {cluster}"
        );
        listen.push(l);
    }
    let admin = nodes[0].1.admin_addr().ok_or_else(|| {
        Failure::Other(anyhow::anyhow!("the first demo node has no admin endpoint"))
    })?;
    let _ = write!(
        banner,
        "\n  try it:   curl http://{}/          (each answer names the backend)\n\
         \x20 status:   shoal status --admin {admin}   (this table), curl http://{admin}/status (JSON)\n\
         \x20 drain:    shoal ctl drain demo {} --admin {admin}   (or the page's buttons)\n",
        listen[0], backends[0],
    );
    match &log_file {
        Some(path) => {
            let _ = writeln!(banner, "  logs:     {}", path.display());
        }
        None => banner.push_str("  logs:     stderr\n"),
    }
    banner.push_str("  stop:     Ctrl-C\n\n");
    if args.clients > 0 {
        let _ = writeln!(
            banner,
            "  {} demo clients hold connections open; half arrive through node-1, yet the backends stay even\n",
            args.clients
        );
    }
    let screen = Screen::stdout();
    if screen.in_place() {
        print!("\x1b[2J");
    }
    // On a terminal the banner is part of every frame; elsewhere it is
    // printed once, ahead of the tables.
    let banner = if screen.in_place() {
        banner
    } else {
        println!("{banner}");
        String::new()
    };
    for (_, node) in &nodes {
        log_ready(node);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut runs = Vec::new();
    for (_, node) in nodes {
        let stop = stop.clone();
        runs.push(tokio::spawn(
            node.run(async move { stop.cancelled().await }),
        ));
    }
    let targets = Arc::new(listen);
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(tokio::spawn(demo_client(targets.clone(), rand::make_rng())));
    }
    let started = tokio::time::Instant::now();
    let table = async {
        if args.table_every == 0 {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(args.table_every));
        loop {
            tick.tick().await;
            if screen.show(&frame(&banner, started, admin).await).is_err() {
                // Nobody reads stdout any more; the demo runs on.
                return std::future::pending().await;
            }
        }
    };
    let until = async {
        match args.duration {
            Some(s) => tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(s)) => tracing::info!(seconds = s, "demo duration reached"),
                () = signal => {},
            },
            None => signal.await,
        }
    };
    tokio::select! {
        () = until => {}
        () = table => {}
    }
    for c in clients {
        c.abort();
    }
    stop.cancel();
    for r in runs {
        let _ = r.await;
    }
    Ok(())
}
