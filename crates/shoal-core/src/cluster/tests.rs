//! Nodes' cores on an in-memory network in virtual time.

use super::*;
use std::collections::BTreeSet;

/// Delivery delay of every datagram.
const HOP_MS: u64 = 2;

struct Net {
    nodes: Vec<Cluster>,
    now: Instant,
    in_flight: Vec<(Instant, usize, Vec<u8>)>,
    /// Nodes that neither send nor receive (crashed or cut off).
    cut: BTreeSet<usize>,
    /// What each node reports: (key, healthy, active).
    local: Vec<Vec<ReportEntry>>,
    events: Vec<Vec<ClusterEvent>>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

fn config() -> ClusterConfig {
    ClusterConfig::lan(3, Duration::from_millis(250), Duration::from_millis(3000))
}

impl Net {
    fn new(n: usize) -> Net {
        let nodes = (0..n)
            .map(|i| {
                Cluster::new(
                    NodeId::new(addr(i), format!("n{i}"), 1),
                    config(),
                    i as u64,
                    Instant::ZERO,
                )
            })
            .collect();
        Net {
            nodes,
            now: Instant::ZERO,
            in_flight: Vec::new(),
            cut: BTreeSet::new(),
            local: vec![Vec::new(); n],
            events: vec![Vec::new(); n],
        }
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        (a.port() as usize)
            .checked_sub(7000)
            .filter(|i| *i < self.nodes.len())
    }

    fn pump(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            if let Some(j) = self.index_of(t.to)
                && !self.cut.contains(&i)
            {
                self.in_flight
                    .push((self.now + Duration::from_millis(HOP_MS), j, t.data));
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            if e == ClusterEvent::ReportDue {
                let entries = self.local[i].clone();
                self.nodes[i].publish_report(self.now, &entries, false);
                self.pump(i);
            } else {
                self.events[i].push(e);
            }
        }
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while self.now < end {
            self.now = self.now + Duration::from_millis(1);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(t, _, _)| *t <= now);
            self.in_flight = later;
            for (_, j, data) in due {
                if !self.cut.contains(&j) {
                    let _ = self.nodes[j].handle_datagram(now, &data);
                    self.pump(j);
                }
            }
            for i in 0..self.nodes.len() {
                if !self.cut.contains(&i) && self.nodes[i].poll_timeout() <= now {
                    self.nodes[i].handle_timeout(now);
                    self.pump(i);
                }
            }
        }
    }

    fn join_all_via(&mut self, seed: usize) {
        for i in 0..self.nodes.len() {
            let now = self.now;
            self.nodes[i].join(now, &[addr(seed)]);
            self.pump(i);
        }
    }
}

fn entry(key: u64, healthy: bool, active: u32) -> ReportEntry {
    ReportEntry {
        key: BackendKey(key),
        healthy,
        active,
    }
}

#[test]
fn three_nodes_join_through_one_seed_and_share_counts() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.run_for(2000);
    for n in &net.nodes {
        assert_eq!(n.live_nodes(), 3, "{n:?}");
    }
    net.local[0] = vec![entry(1, true, 5), entry(2, false, 0)];
    net.local[1] = vec![entry(1, true, 2), entry(2, false, 1)];
    net.local[2] = vec![entry(1, true, 1), entry(2, true, 0)];
    net.run_for(1500);
    // Each node sees the others' counts, never its own.
    assert_eq!(
        net.nodes[0].remote(BackendKey(1)),
        RemoteLoad {
            active: 3,
            down_votes: 0,
            reporters: 2
        }
    );
    assert_eq!(net.nodes[1].remote(BackendKey(1)).active, 6);
    assert_eq!(net.nodes[2].remote(BackendKey(1)).active, 7);
    assert_eq!(net.nodes[2].remote(BackendKey(2)).down_votes, 2);
    assert_eq!(net.nodes[0].remote(BackendKey(2)).down_votes, 1);
    // A change reaches the others within a few report intervals.
    net.local[0] = vec![entry(1, true, 0), entry(2, false, 0)];
    net.run_for(1000);
    assert_eq!(net.nodes[1].remote(BackendKey(1)).active, 1);
    assert_eq!(net.nodes[2].remote(BackendKey(1)).active, 2);
}

#[test]
fn a_crashed_node_is_declared_down_and_its_counts_leave_the_view() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[2] = vec![entry(1, true, 9)];
    net.run_for(2000);
    assert_eq!(net.nodes[0].remote(BackendKey(1)).active, 9);
    net.cut.insert(2);
    net.run_for(15_000);
    for i in 0..2 {
        assert_eq!(net.nodes[i].live_nodes(), 2);
        assert_eq!(net.nodes[i].remote(BackendKey(1)), RemoteLoad::default());
        assert!(
            net.events[i]
                .iter()
                .any(|e| matches!(e, ClusterEvent::MemberDown(id) if id.addr == addr(2)))
        );
    }
}

#[test]
fn a_leaving_node_is_dropped_without_waiting_for_suspicion() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[2] = vec![entry(1, true, 4)];
    net.run_for(2000);
    let now = net.now;
    net.nodes[2].leave(now);
    net.pump(2);
    net.cut.insert(2);
    // Well under foca's suspicion timeout for 3 nodes.
    net.run_for(300);
    for i in 0..2 {
        assert_eq!(net.nodes[i].live_nodes(), 2, "node {i}");
        assert_eq!(net.nodes[i].remote(BackendKey(1)).active, 0);
    }
}

#[test]
fn a_node_wrongly_declared_down_rejoins_with_a_renewed_identity() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.run_for(2000);
    net.cut.insert(2);
    net.run_for(15_000);
    assert_eq!(net.nodes[0].live_nodes(), 2);
    net.cut.remove(&2);
    // Node 2 still thinks the others are up; they tell it it is down.
    net.run_for(10_000);
    let renewed = net.nodes[2].identity().clone();
    assert!(renewed.bump > 0, "{renewed:?}");
    for i in 0..3 {
        assert_eq!(
            net.nodes[i].live_nodes(),
            3,
            "node {i}: {:?}",
            net.events[i]
        );
    }
}

#[test]
fn sync_gives_a_new_node_the_whole_state_at_once() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[1] = vec![entry(1, false, 3)];
    net.run_for(2000);
    // A fourth node, not on the network: one push-pull with node 0.
    let mut fresh = Cluster::new(NodeId::new(addr(3), "n3", 1), config(), 99, net.now);
    let request = fresh.sync_message().unwrap();
    let from = net.nodes[0].handle_sync(net.now, &request).unwrap();
    assert_eq!(from.name, "n3");
    let reply = net.nodes[0].sync_message().unwrap();
    let from = fresh.handle_sync(net.now, &reply).unwrap();
    assert_eq!(from.name, "n0");
    assert_eq!(fresh.live_nodes(), 4, "{:?}", fresh);
    assert_eq!(
        fresh.remote(BackendKey(1)),
        RemoteLoad {
            active: 3,
            down_votes: 1,
            reporters: 1
        }
    );
}

#[test]
fn garbage_oversized_and_foreign_version_input_is_an_error_not_a_panic() {
    let mut n = Cluster::new(NodeId::new(addr(0), "n0", 1), config(), 1, Instant::ZERO);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    for len in [0usize, 1, 2, 7, 64, 1100, 1500, 5000] {
        let mut junk = vec![0u8; len];
        rand::Rng::fill_bytes(&mut rng, &mut junk);
        assert!(
            n.handle_datagram(Instant::ZERO, &junk).is_err(),
            "len {len}"
        );
        assert!(n.handle_sync(Instant::ZERO, &junk).is_err(), "len {len}");
    }
    let mut good = n.sync_message().unwrap();
    good[0] = wire::PROTOCOL_VERSION + 1;
    let err = n.handle_sync(Instant::ZERO, &good).unwrap_err().to_string();
    assert!(err.contains("protocol version 2"), "{err}");
    let huge = vec![wire::PROTOCOL_VERSION; wire::SYNC_BYTES_MAX + 1];
    assert!(
        n.handle_sync(Instant::ZERO, &huge)
            .unwrap_err()
            .to_string()
            .contains("exceed")
    );
    // A length prefix promising more than the limit is refused by bincode.
    let mut lying = vec![wire::PROTOCOL_VERSION, 2];
    lying.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(n.handle_sync(Instant::ZERO, &lying).is_err());
    assert_eq!(n.live_nodes(), 1);
}

#[test]
fn a_report_of_many_backends_travels_in_shards_and_arrives_whole() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    // 100 backends: three shards of at most 40 entries.
    net.local[0] = (0..100).map(|k| entry(k, k % 10 != 0, k as u32)).collect();
    net.run_for(3000);
    for i in 1..3 {
        for k in 0..100u64 {
            let r = net.nodes[i].remote(BackendKey(k));
            assert_eq!(r.active, k as u32, "node {i} key {k}");
            assert_eq!(r.down_votes, u32::from(k % 10 == 0), "node {i} key {k}");
        }
        assert_eq!(
            net.nodes[i]
                .view()
                .shards()
                .filter(|s| s.origin == addr(0))
                .count(),
            3
        );
    }
    // Shrinking to 10 backends drops the two shards that no longer exist.
    net.local[0] = (0..10).map(|k| entry(k, true, 1)).collect();
    net.run_for(2000);
    assert_eq!(
        net.nodes[1]
            .view()
            .shards()
            .filter(|s| s.origin == addr(0))
            .count(),
        1
    );
    assert_eq!(net.nodes[1].remote(BackendKey(50)), RemoteLoad::default());
}

#[test]
fn only_changed_shards_are_published_until_a_refresh_is_due() {
    let mut n = Cluster::new(NodeId::new(addr(0), "n0", 1), config(), 1, Instant::ZERO);
    let t = Instant::from_millis;
    let mut entries: Vec<ReportEntry> = (0..100).map(|k| entry(k, true, 0)).collect();
    let mut at = |ms: u64, entries: &[ReportEntry]| {
        n.publish_report(t(ms), entries, false);
        n.stats().shards_published
    };
    assert_eq!(at(0, &entries), 3, "a new report: every shard");
    assert_eq!(at(250, &entries), 6, "sent again while recent");
    assert_eq!(at(500, &entries), 9, "and once more");
    assert_eq!(at(750, &entries), 9, "then quiet");
    assert_eq!(
        at(1000, &entries),
        9,
        "no refresh before 1 s since the last send"
    );
    entries[45].active = 1; // in shard 1
    assert_eq!(at(1250, &entries), 10, "only the changed shard");
    assert_eq!(at(1500, &entries), 13, "shard 1 again, 0 and 2 refreshed");
    assert_eq!(at(1750, &entries), 14, "shard 1 a last time");
    assert_eq!(at(2000, &entries), 14, "quiet");
    entries.truncate(10);
    assert_eq!(at(2100, &entries), 15, "one shard now, with a new count");
}

#[test]
fn refreshed_reports_stay_fresh_when_nothing_changes() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    for i in 0..3 {
        net.local[i] = vec![entry(1, true, 1)];
    }
    net.run_for(3000);
    let mut worst = Duration::ZERO;
    for _ in 0..100 {
        net.run_for(50);
        for n in &net.nodes {
            worst = worst.max(n.view().max_age(net.now).unwrap_or_default());
        }
    }
    // Refreshed every second, carried by the next gossip (200 ms).
    assert!(
        worst < Duration::from_millis(1500),
        "oldest shard held: {worst:?}"
    );
}
