//! Fleet helpers: certificates made with the real `shoal certs` commands,
//! and node configurations with a `[cluster]` table.

use crate::node::shoal_bin;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

/// A cluster CA in a temporary directory, made by `shoal certs init`.
#[derive(Debug)]
pub struct Certs {
    dir: tempfile::TempDir,
}

/// The three PEM files of one node.
#[derive(Debug, Clone)]
pub struct NodeCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn run_shoal(args: &[&str]) {
    let out = Command::new(shoal_bin())
        .args(args)
        .output()
        .expect("run shoal");
    assert!(out.status.success(), "shoal {args:?}: {out:?}");
}

impl Default for Certs {
    fn default() -> Self {
        Certs::new()
    }
}

impl Certs {
    /// A new CA (`shoal certs init DIR`).
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        run_shoal(&["certs", "init", dir.path().to_str().unwrap()]);
        Certs { dir }
    }

    /// A node certificate (`shoal certs node NAME DIR`).
    pub fn node(&self, name: &str) -> NodeCerts {
        let d = self.dir.path();
        run_shoal(&["certs", "node", name, d.to_str().unwrap()]);
        NodeCerts {
            ca: d.join("ca.pem"),
            cert: d.join(format!("{name}.pem")),
            key: d.join(format!("{name}.key")),
        }
    }
}

/// A node named `name` with listener `web` (port 0) over `backends`,
/// admin on port 0, and a `[cluster]` bound at `cluster_bind` joining
/// `seeds`, with fast reports (100 ms) and re-seeding (300 ms).
/// `listener_extra` and `cluster_extra` add lines to those tables.
pub fn fleet_config(
    name: &str,
    backends: &[SocketAddr],
    cluster_bind: SocketAddr,
    seeds: &[String],
    certs: &NodeCerts,
    listener_extra: &str,
    cluster_extra: &str,
) -> String {
    let base = crate::config(backends, listener_extra)
        .replace("name = \"e2e\"", &format!("name = \"{name}\""));
    let seeds = seeds
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{base}
[cluster]
bind = "{cluster_bind}"
seeds = [{seeds}]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
report_interval_ms = 100
reseed_interval_ms = 300
warm_start_timeout_ms = 2000
{cluster_extra}
"#,
        ca = certs.ca.display(),
        cert = certs.cert.display(),
        key = certs.key.display(),
    )
}

/// Starts `n` nodes, `node-1` … `node-n`, over `backends` (listener
/// `web`, cluster on port 0, node-1 the others' seed) with `fleet_config`,
/// each configuration passed through `edit` first; returns once every
/// node sees `n` live members.
pub async fn start_fleet(
    certs: &Certs,
    n: u32,
    backends: &[SocketAddr],
    edit: impl Fn(String) -> String,
) -> Vec<crate::node::Shoal> {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut nodes: Vec<crate::node::Shoal> = Vec::new();
    for i in 1..=n {
        let seeds: Vec<String> = nodes
            .first()
            .map(|n| vec![n.cluster.unwrap().to_string()])
            .unwrap_or_default();
        let name = format!("node-{i}");
        let config = fleet_config(&name, backends, any, &seeds, &certs.node(&name), "", "");
        nodes.push(crate::node::Shoal::start(&edit(config)).await);
    }
    for node in &nodes {
        crate::eventually("every node to see the fleet", crate::WAIT, || async {
            (node.live_nodes().await == u64::from(n)).then_some(())
        })
        .await;
    }
    nodes
}

/// `config` (from [`crate::config`] or [`fleet_config`]) with its
/// listener bound at `listener` and its admin endpoint at `admin` rather
/// than 127.0.0.1 port 0: a node restarted on its old addresses, or one
/// on a host of its own ([`crate::netlab`]).
pub fn pinned(config: &str, listener: SocketAddr, admin: SocketAddr) -> anyhow::Result<String> {
    let listener_bind = "bind = \"127.0.0.1:0\"\nallow_ephemeral_port = true\n";
    let admin_bind = "admin = \"127.0.0.1:0\"\n";
    anyhow::ensure!(
        config.contains(listener_bind) && config.contains(admin_bind),
        "the harness's config changed; update fleet::pinned:\n{config}"
    );
    Ok(config
        .replacen(listener_bind, &format!("bind = \"{listener}\"\n"), 1)
        .replace(admin_bind, &format!("admin = \"{admin}\"\n")))
}
