//! Micro-benchmarks of the core's hot functions: choosing a backend,
//! applying a peer's report, encoding and decoding a report shard.
//! Run with `cargo bench -p shoal-core` (or `just bench-core`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use shoal_core::cluster::SWIM_PACKET_BYTES_MAX;
use shoal_core::cluster::report::{BackendKey, ReportEntry, ReportShard, shard};
use shoal_core::cluster::view::{LoadView, RemoteLoad};
use shoal_core::{BackendId, BackendSpec, HealthConfig, Instant, Policy, Pool, wire};
use std::hint::black_box;
use std::net::SocketAddr;

fn pool(backends: usize, peers: u32) -> (Pool, SmallRng) {
    let mut rng = SmallRng::seed_from_u64(1);
    let specs = (0..backends)
        .map(|i| BackendSpec {
            name: format!("10.0.{}.{}:80", i / 250, i % 250),
            max_connections: None,
            fleet_max_connections: None,
            weight: 1,
        })
        .collect();
    let mut p = Pool::new(
        Policy::LeastConn,
        HealthConfig::default(),
        specs,
        Instant::ZERO,
        &mut rng,
    );
    p.set_live_nodes(peers + 1);
    for i in 0..backends {
        p.set_remote(
            BackendId(i),
            RemoteLoad {
                active: (i as u32 * 7) % 50,
                down_votes: 0,
                reporters: peers,
                voters: peers,
                opened: 0,
            },
        );
    }
    (p, rng)
}

fn choose(c: &mut Criterion) {
    let mut g = c.benchmark_group("acquire_release");
    for backends in [3usize, 100, 1000] {
        for peers in [10u32, 100] {
            let (mut p, mut rng) = pool(backends, peers);
            g.bench_with_input(
                BenchmarkId::new(format!("{backends}_backends"), format!("{peers}_peers")),
                &(),
                |b, _| {
                    b.iter(|| {
                        let id = p.acquire(&mut rng, &[]).unwrap();
                        black_box(p.release(id));
                    })
                },
            );
        }
    }
    g.finish();
}

fn entries(n: usize, salt: u32) -> Vec<ReportEntry> {
    (0..n)
        .map(|i| {
            ReportEntry::new(
                BackendKey::new("web", &format!("10.0.0.{i}:80")),
                true,
                (i as u32 + salt) % 100,
            )
        })
        .collect()
}

fn apply_report(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_peer_report");
    for backends in [3usize, 100, 1000] {
        for peers in [10u16, 100] {
            let mut view = LoadView::default();
            let origin =
                |p: u16| SocketAddr::from(([10, 1, (p / 250) as u8, (p % 250) as u8], 7946));
            let mut seq = 1;
            for p in 0..peers {
                for s in shard(origin(p), 1, seq, &entries(backends, 0), &[]) {
                    view.apply(Instant::ZERO, s);
                }
            }
            g.bench_with_input(
                BenchmarkId::new(format!("{backends}_backends"), format!("{peers}_peers")),
                &(),
                |b, _| {
                    b.iter(|| {
                        seq += 1;
                        // One peer's whole report (all its shards) replaces its last one.
                        for s in shard(origin(0), 1, seq, &entries(backends, seq as u32), &[]) {
                            view.apply(Instant::ZERO, s);
                        }
                        black_box(view.remote(BackendKey::new("web", "10.0.0.1:80")));
                    })
                },
            );
        }
    }
    g.finish();
}

fn codec(c: &mut Criterion) {
    let full: ReportShard = shard(
        "10.1.0.1:7946".parse().unwrap(),
        1,
        99,
        &entries(40, 3),
        &[],
    )
    .remove(0);
    let full = [full];
    let datagram = wire::encode_reports(&full, SWIM_PACKET_BYTES_MAX)
        .unwrap()
        .remove(0);
    c.bench_function("encode_report_datagram_40_entries", |b| {
        b.iter(|| black_box(wire::encode_reports(black_box(&full), SWIM_PACKET_BYTES_MAX).unwrap()))
    });
    c.bench_function("decode_report_datagram_40_entries", |b| {
        b.iter(|| black_box(wire::decode_reports(black_box(&datagram)).unwrap()))
    });
}

criterion_group!(benches, choose, apply_report, codec);
criterion_main!(benches);
