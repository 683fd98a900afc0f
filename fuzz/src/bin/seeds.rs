//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml
//! --bin seeds` (from the repository root).
//!
//! - `corpus/wire_datagram/seed-*`: what node 0 of the seed fleet
//!   received (SWIM packets and report datagrams);
//! - `corpus/wire_sync/seed-*`: each seed node's sync message, and a lone
//!   node's;
//! - `corpus/config/seed-*`: `cluster/*.toml`, the README's TOML examples
//!   and one configuration that sets every field.
//!
//! Only `seed-*` files are rewritten; inputs kept from fuzzing (minimised
//! corpus, `regression-*`) are left alone.

use shoal_core::wire;
use std::fs;
use std::path::{Path, PathBuf};

/// Every field the configuration knows, so the fuzzer starts from the
/// validation of each.
const EVERY_FIELD: &str = r#"
[node]
name = "node-1"
admin = "127.0.0.1:9100"
drain_timeout_ms = 30000
admin_connections_max = 64
admin_header_timeout_ms = 10000
admin_idle_timeout_ms = 60000
worker_threads = 2

[[listener]]
name = "web"
bind = "[::1]:8080"
policy = "round-robin"
backends = ["127.0.0.1:5001", "[::1]:5002"]
connect_timeout_ms = 2000
retries = 2
idle_timeout_ms = 300000
max_connections = 1000
backend_max_connections = 100
backlog = 1024
  [listener.health]
  interval_ms = 2000
  timeout_ms = 1000
  rise = 2
  fall = 3

[[listener]]
name = "db"
bind = "127.0.0.1:5432"
policy = "first-available"
backends = ["10.0.0.5:5432"]

[cluster]
bind = "0.0.0.0:7946"
advertise = "10.0.0.1:7946"
seeds = ["127.0.0.1:7946", "lb.example.internal:7946"]
resolver = "127.0.0.1:53"
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
report_interval_ms = 250
report_refresh_ms = 1000
report_ttl_ms = 3000
sync_interval_ms = 30000
warm_start_timeout_ms = 3000
reseed_interval_ms = 5000
resolve_interval_ms = 30000
"#;

fn main() -> std::io::Result<()> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = fuzz.parent().expect("fuzz/ has a parent").to_path_buf();
    let corpus = fuzz.join("corpus");

    let traffic = shoal_fuzz::fleet_traffic();
    let datagrams: Vec<(String, Vec<u8>)> = traffic
        .to_node0
        .iter()
        .enumerate()
        .map(|(k, (from, d))| {
            let kind = if wire::is_reports(d) {
                "reports"
            } else {
                "swim"
            };
            (format!("seed-{k:02}-{kind}-from-{from}"), d.clone())
        })
        .collect();
    write(&corpus.join("wire_datagram"), &datagrams)?;

    let mut syncs: Vec<(String, Vec<u8>)> = traffic
        .syncs
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("seed-sync-n{i}"), s.clone()))
        .collect();
    let lone = shoal_fuzz::node(0)
        .sync_message()
        .expect("a lone node's sync encodes");
    syncs.push(("seed-sync-lone".to_owned(), lone));
    write(&corpus.join("wire_sync"), &syncs)?;

    let mut configs = vec![(
        "seed-every-field".to_owned(),
        EVERY_FIELD.as_bytes().to_vec(),
    )];
    let mut cluster: Vec<PathBuf> = fs::read_dir(repo.join("cluster"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    cluster.sort();
    for path in cluster
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let stem = path.file_stem().expect("a file name").to_string_lossy();
        configs.push((format!("seed-cluster-{stem}"), fs::read(path)?));
    }
    let readme = fs::read_to_string(repo.join("README.md"))?;
    for (k, block) in toml_blocks(&readme).into_iter().enumerate() {
        configs.push((format!("seed-readme-{k}"), block.into_bytes()));
    }
    write(&corpus.join("config"), &configs)
}

/// The fenced TOML examples of a Markdown text.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Replaces the `seed-*` files of `dir` with `files`.
fn write(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        {
            fs::remove_file(path)?;
        }
    }
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes)?;
    }
    println!("{}: {} seeds", dir.display(), files.len());
    Ok(())
}
