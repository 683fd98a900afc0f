//! `shoal demo`: the embedded default, a local fleet on loopback.
//!
//! Starts small HTTP backends (each answers with its own name), a fleet of
//! shoal nodes in one process (certificates from an in-memory CA, joined
//! through the first node as seed), and demo clients that hold connections
//! open, arriving at the nodes with a skew (the first node gets half, as a
//! sticky DNS cache would cause). Every few seconds it prints, for each
//! node, its own count and its estimate of the fleet's count per backend:
//! the estimates agree across nodes, and the backends stay balanced even
//! though one node holds most clients.

use crate::{Failure, log_ready, shutdown_signal};
use rand::RngExt;
use rand::rngs::SmallRng;
use shoal_config::Config;
use shoal_runtime::Node;
use shoal_runtime::listener::ListenerState;
use std::net::SocketAddr;
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
    /// Where the first node serves /metrics and /status; node N uses the
    /// port plus N-1. Port 0 gives every node a free port.
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
    /// Seconds between two prints of the count table; 0 to never print.
    #[arg(long, default_value_t = 3)]
    table_every: u64,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
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

fn print_table(started: tokio::time::Instant, names: &[String], states: &[Arc<ListenerState>]) {
    let mut out = format!(
        "[{:>4}s] local/fleet-wide connections per backend\n",
        started.elapsed().as_secs()
    );
    let Some(first) = states.first() else { return };
    let backends: Vec<String> = first
        .config
        .backends
        .iter()
        .map(|b| b.to_string())
        .collect();
    out.push_str(&format!("{:<8}", ""));
    for b in &backends {
        out.push_str(&format!("{b:>18}"));
    }
    out.push_str(&format!("{:>10}\n", "members"));
    for (name, s) in names.iter().zip(states) {
        let b = s.lock();
        out.push_str(&format!("{name:<8}"));
        for id in b.pool.ids() {
            let cell = format!(
                "{}/{}{}",
                b.pool.active(id),
                b.pool.cluster_active(id),
                if b.pool.is_up(id) { "" } else { " down" }
            );
            out.push_str(&format!("{cell:>18}"));
        }
        out.push_str(&format!("{:>10}\n", b.pool.live_nodes()));
    }
    println!("{out}");
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
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
    println!(
        "shoal demo: a fleet of {} nodes in front of {} demo backends\n",
        nodes.len(),
        backends.len()
    );
    for (i, b) in backends.iter().enumerate() {
        println!("  backend {}: {b}", i + 1);
    }
    println!();
    let mut listen = Vec::new();
    for (name, node) in &nodes {
        let l = node.listener_addrs()[0].1;
        let admin = node.admin_addr().map(|a| a.to_string()).unwrap_or_default();
        let cluster = node
            .cluster_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "  {name}: clients http://{l}/   status http://{admin}/status   fleet (QUIC) {cluster}"
        );
        listen.push(l);
    }
    println!();
    println!(
        "  try it:   curl http://{}/          (each answer names the backend)",
        listen[0]
    );
    println!(
        "  status:   curl http://{}/status    (each node's own and fleet-wide counts)",
        nodes[0]
            .1
            .admin_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    println!("  stop:     Ctrl-C\n");
    if args.clients > 0 {
        println!(
            "  {} demo clients hold connections open; half arrive through node-1, yet the backends stay even\n",
            args.clients
        );
    }
    for (_, node) in &nodes {
        log_ready(node);
    }
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let states: Vec<Arc<ListenerState>> = nodes
        .iter()
        .map(|(_, n)| n.listener_states()[0].clone())
        .collect();
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
        tick.tick().await;
        loop {
            tick.tick().await;
            print_table(started, &names, &states);
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
