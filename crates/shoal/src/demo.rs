//! `shoal demo`: the embedded default. Starts small HTTP backends on
//! loopback (each answers with its own name), puts one shoal node in front
//! of them, and prints how to reach it.

use crate::{Failure, log_ready, shutdown_signal};
use shoal_config::Config;
use shoal_runtime::Node;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Options of `shoal demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many demo backends to start (each on a free loopback port).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    backends: u16,
    /// Where the node accepts clients. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the node serves /metrics and /status. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9100")]
    admin: SocketAddr,
    /// Balancing policy: least-conn, round-robin, random or first-available.
    #[arg(long, default_value = "least-conn")]
    policy: String,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
}

/// The longest request head a demo backend reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a demo backend waits for a request head.
const REQUEST_TIMEOUT_MS: u64 = 10_000;

async fn serve_demo_client(mut stream: TcpStream, name: String) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if head.len() > REQUEST_HEAD_BYTES_MAX {
                return false;
            }
        }
        true
    };
    let complete = tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), read_head)
        .await
        .unwrap_or(false);
    if !complete {
        return;
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

/// The demo's configuration, as the TOML a user could save and edit.
fn demo_config(args: &DemoArgs, backends: &[SocketAddr]) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[node]
name = "demo"
admin = "{admin}"
drain_timeout_ms = 5000

[[listener]]
name = "demo"
bind = "{listen}"
allow_ephemeral_port = true
policy = "{policy}"
backends = [{list}]
  [listener.health]
  interval_ms = 1000
  timeout_ms = 500
"#,
        admin = args.admin,
        listen = args.listen,
        policy = args.policy,
    )
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let mut backends = Vec::new();
    for i in 1..=usize::from(args.backends) {
        let addr = start_backend(i)
            .await
            .map_err(|e| Failure::Other(anyhow::anyhow!("demo backend {i}: {e}")))?;
        backends.push(addr);
    }
    let toml = demo_config(&args, &backends);
    let config =
        Config::from_toml(&toml, "demo config").map_err(|e| Failure::Usage(e.to_string()))?;
    let node = Node::bind(config).map_err(|e| {
        Failure::Usage(format!(
            "{e} (pick other ports with --listen and --admin; port 0 takes a free one)"
        ))
    })?;
    let listen = node.listener_addrs()[0].1;
    let admin = node.admin_addr().map(|a| a.to_string()).unwrap_or_default();
    println!(
        "shoal demo: {} demo backends behind one shoal node\n",
        backends.len()
    );
    for (i, b) in backends.iter().enumerate() {
        println!("  backend {}:  {b}", i + 1);
    }
    println!();
    println!("  try it:     curl http://{listen}/          (each answer names the backend)");
    println!("  or:         for i in 1 2 3 4 5 6; do curl -s http://{listen}/; done");
    println!("  status:     curl http://{admin}/status");
    println!("  metrics:    curl http://{admin}/metrics");
    println!("  stop:       Ctrl-C\n");
    println!("  the configuration in use (save it and run `shoal run -c FILE`):\n");
    for line in toml.lines() {
        println!("    {line}");
    }
    println!();
    log_ready(&node);
    let duration = args.duration;
    node.run(async move {
        match duration {
            Some(s) => tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(s)) => tracing::info!(seconds = s, "demo duration reached"),
                () = shutdown_signal() => {},
            },
            None => shutdown_signal().await,
        }
    })
    .await;
    Ok(())
}
