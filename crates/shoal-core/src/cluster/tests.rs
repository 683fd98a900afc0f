//! Nodes' cores on an in-memory network in virtual time.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

/// Delivery delay of every datagram.
const HOP_MS: u64 = 2;

struct Net {
    nodes: Vec<Cluster>,
    now: Instant,
    /// `(due, from, to, data)`.
    in_flight: Vec<(Instant, usize, usize, Vec<u8>)>,
    /// Nodes that neither send nor receive (crashed or cut off).
    cut: BTreeSet<usize>,
    /// Nodes whose datagrams are all lost (they still receive).
    mute: BTreeSet<usize>,
    /// Report datagrams `from → to` still to drop (`u32::MAX`: all).
    drop_reports: BTreeMap<(usize, usize), u32>,
    /// Every report datagram delivered: `(from, to, origins of its shards)`.
    report_log: Vec<(usize, usize, Vec<SocketAddr>)>,
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
        Net::with_config(n, config())
    }

    fn with_config(n: usize, config: ClusterConfig) -> Net {
        let nodes = (0..n)
            .map(|i| {
                Cluster::new(
                    NodeId::new(addr(i), format!("n{i}"), 1),
                    config.clone(),
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
            mute: BTreeSet::new(),
            drop_reports: BTreeMap::new(),
            report_log: Vec::new(),
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
            let Some(j) = self.index_of(t.to) else {
                continue;
            };
            if self.cut.contains(&i) || self.mute.contains(&i) {
                continue;
            }
            if wire::is_reports(&t.data)
                && let Some(left) = self.drop_reports.get_mut(&(i, j))
                && *left > 0
            {
                *left = left.saturating_sub(u32::from(*left != u32::MAX));
                continue;
            }
            self.in_flight
                .push((self.now + Duration::from_millis(HOP_MS), i, j, t.data));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            if matches!(e, ClusterEvent::ReportDue) {
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
                .partition(|(t, _, _, _)| *t <= now);
            self.in_flight = later;
            for (_, from, j, data) in due {
                if !self.cut.contains(&j) {
                    if wire::is_reports(&data) {
                        let origins = wire::decode_reports(&data)
                            .expect("a node sends well-formed reports")
                            .iter()
                            .map(|s| s.origin)
                            .collect();
                        self.report_log.push((from, j, origins));
                    }
                    // As the transport delivers it: with the name the
                    // sender's certificate states (its configured name).
                    let certified = self.nodes[from].identity().name.clone();
                    let _ = self.nodes[j].handle_datagram_from(now, &certified, &data);
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
            self.join(i, seed);
        }
    }

    fn join(&mut self, i: usize, seed: usize) {
        let now = self.now;
        self.nodes[i].join(now, &[addr(seed)]);
        self.pump(i);
    }

    /// Runs until `done` holds (checked every millisecond), at most `ms`;
    /// returns how long it took.
    fn run_until(&mut self, ms: u64, done: impl Fn(&Net) -> bool) -> Option<Duration> {
        let start = self.now;
        for _ in 0..ms {
            if done(self) {
                return Some(self.now - start);
            }
            self.run_for(1);
        }
        done(self).then(|| self.now - start)
    }

    /// Every report datagram delivered so far carried only its sender's
    /// own shards: nothing is relayed.
    fn assert_one_hop(&self) {
        for (from, to, origins) in &self.report_log {
            assert!(
                origins.iter().all(|o| *o == addr(*from)),
                "n{from} → n{to} relayed {origins:?}"
            );
        }
    }
}

fn entry(key: u64, healthy: bool, active: u32) -> ReportEntry {
    ReportEntry::new(BackendKey(key), healthy, active)
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
            reporters: 2,
            voters: 2,
            opened: 0,
        }
    );
    assert_eq!(net.nodes[1].remote(BackendKey(1)).active, 6);
    assert_eq!(net.nodes[2].remote(BackendKey(1)).active, 7);
    assert_eq!(net.nodes[2].remote(BackendKey(2)).down_votes, 2);
    assert_eq!(net.nodes[0].remote(BackendKey(2)).down_votes, 1);
    // A change reaches the others at the next report tick, one hop later.
    net.local[0] = vec![entry(1, true, 0), entry(2, false, 0)];
    let took = net
        .run_until(1000, |n| {
            n.nodes[1].remote(BackendKey(1)).active == 1
                && n.nodes[2].remote(BackendKey(1)).active == 2
        })
        .expect("the change arrives");
    assert!(took <= Duration::from_millis(250 + HOP_MS + 1), "{took:?}");
    // Every node heard from each other node directly.
    net.assert_one_hop();
    for to in 0..3 {
        let from: BTreeSet<usize> = net
            .report_log
            .iter()
            .filter(|(_, t, _)| *t == to)
            .map(|(f, _, _)| *f)
            .collect();
        assert_eq!(from.len(), 2, "n{to} heard from {from:?}");
    }
}

#[test]
fn a_publication_is_one_datagram_per_member_sent_at_once() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.run_for(2000);
    let before = net.nodes[0].stats();
    // Call it by hand to see what comes out (a health flip's publication).
    let now = net.now;
    let entries = vec![entry(7, false, 3)];
    net.nodes[0].publish_report(now, &entries, true);
    let mut to = Vec::new();
    while let Some(t) = net.nodes[0].poll_transmit() {
        if wire::is_reports(&t.data) {
            let shards = wire::decode_reports(&t.data).unwrap();
            assert_eq!(shards.len(), 1);
            assert_eq!(shards[0].entries, entries);
            to.push(t.to);
        }
    }
    to.sort();
    assert_eq!(to, vec![addr(1), addr(2)], "one datagram to each member");
    let after = net.nodes[0].stats();
    assert_eq!(after.shards_published, before.shards_published + 1);
    assert_eq!(after.report_datagrams_out, before.report_datagrams_out + 2);
    // A lone node publishes (so its shards are ready) but sends nothing.
    let mut alone = Cluster::new(NodeId::new(addr(9), "n9", 1), config(), 9, Instant::ZERO);
    alone.publish_report(Instant::ZERO, &entries, true);
    assert!(alone.poll_transmit().is_none());
    assert_eq!(alone.stats().shards_published, 1);
}

#[test]
fn a_member_that_comes_up_later_gets_reports_without_waiting_for_a_refresh() {
    // Refreshes 10 s apart: only the welcome can deliver within the test.
    let slow = config().with_refresh(Duration::from_secs(10));
    let slow = ClusterConfig {
        report_ttl: Duration::from_secs(30),
        ..slow
    };
    let mut net = Net::with_config(3, slow);
    net.local[0] = vec![entry(1, true, 4)];
    net.local[1] = vec![entry(1, true, 2)];
    net.local[2] = vec![entry(1, true, 1)];
    net.join(0, 0);
    net.join(1, 0);
    net.run_for(3000);
    assert_eq!(net.nodes[1].remote(BackendKey(1)).active, 4);
    let published = |net: &Net| [0, 1].map(|i| net.nodes[i].stats().shards_published);
    let quiet = published(&net);
    // Node 2 joins late; 0 and 1 have published nothing new for seconds.
    net.join(2, 0);
    let took = net
        .run_until(2000, |n| {
            n.nodes[2].remote(BackendKey(1)).active == 6
                && n.nodes[0].remote(BackendKey(1)).active == 3
                && n.nodes[1].remote(BackendKey(1)).active == 5
        })
        .expect("the newcomer and the others exchange reports");
    assert_eq!(published(&net), quiet, "no refresh or change was published");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    net.assert_one_hop();
}

#[test]
fn lost_report_datagrams_are_repaired_by_resends_then_by_the_refresh() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[0] = vec![entry(1, true, 1)];
    net.run_for(3000);
    assert_eq!(net.nodes[1].remote(BackendKey(1)).active, 1);
    let has = |n: &Net, i: usize, active: u32| n.nodes[i].remote(BackendKey(1)).active == active;
    // The first sending of a change is lost on the way to node 1: the
    // resend at the next tick repairs it.
    net.drop_reports.insert((0, 1), 1);
    net.local[0] = vec![entry(1, true, 2)];
    net.run_until(300, |n| has(n, 2, 2)).expect("node 2 has it");
    assert!(has(&net, 1, 1), "node 1 missed it");
    let took = net.run_until(300, |n| has(n, 1, 2)).expect("resent");
    assert!(took <= Duration::from_millis(250 + HOP_MS), "{took:?}");
    // The change and both resends are lost: the refresh, a second after
    // the last sending, repairs it.
    net.run_for(1000);
    net.drop_reports.insert((0, 1), 3);
    net.local[0] = vec![entry(1, true, 3)];
    net.run_until(300, |n| has(n, 2, 3)).expect("node 2 has it");
    net.run_for(1000);
    assert!(has(&net, 1, 2), "all three sendings lost");
    let took = net.run_until(1000, |n| has(n, 1, 3)).expect("refreshed");
    assert!(took <= Duration::from_millis(500 + HOP_MS), "{took:?}");
}

#[test]
fn reports_are_not_relayed_so_an_unreachable_member_lacks_them_until_the_path_heals() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[0] = vec![entry(1, true, 5)];
    // Node 0's reports never reach node 2; SWIM still flows both ways.
    net.drop_reports.insert((0, 2), u32::MAX);
    net.run_for(5000);
    assert_eq!(net.nodes[2].live_nodes(), 3);
    assert_eq!(net.nodes[1].remote(BackendKey(1)).active, 5);
    assert_eq!(net.nodes[2].remote(BackendKey(1)), RemoteLoad::default());
    net.assert_one_hop();
    // Once the path heals the next refresh delivers.
    net.drop_reports.clear();
    let took = net
        .run_until(2000, |n| n.nodes[2].remote(BackendKey(1)).active == 5)
        .expect("refreshed");
    assert!(took <= Duration::from_millis(1250 + HOP_MS), "{took:?}");
}

/// Three nodes; node 2 reports 9 connections on backend 1 (seen by node
/// 0), then is cut off for long enough to be declared down.
fn three_nodes_after_node_2_reporting_crashed() -> Net {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[2] = vec![entry(1, true, 9)];
    net.run_for(2000);
    assert_eq!(net.nodes[0].remote(BackendKey(1)).active, 9);
    net.cut.insert(2);
    net.run_for(15_000);
    net
}

#[test]
fn a_report_datagram_from_an_origin_held_down_is_ignored() {
    let mut net = three_nodes_after_node_2_reporting_crashed();
    assert_eq!(net.nodes[0].live_nodes(), 2);
    let shard = |origin, active| ReportShard {
        origin,
        epoch: 1,
        seq: 1_000,
        shard: 0,
        shards: 1,
        entries: vec![entry(1, true, active)],
        clients: vec![],
    };
    let late = wire::encode_reports(&[shard(addr(2), 7)], SWIM_PACKET_BYTES_MAX).unwrap();
    let now = net.now;
    let (applied, generation) = (
        net.nodes[0].stats().shards_applied,
        net.nodes[0].view_generation(),
    );
    net.nodes[0].handle_datagram(now, &late[0]).unwrap();
    assert_eq!(net.nodes[0].stats().shards_applied, applied);
    assert_eq!(net.nodes[0].view_generation(), generation);
    assert_eq!(net.nodes[0].remote(BackendKey(1)), RemoteLoad::default());
    // The same datagram from a live origin is applied.
    let live = wire::encode_reports(&[shard(addr(1), 7)], SWIM_PACKET_BYTES_MAX).unwrap();
    net.nodes[0].handle_datagram(now, &live[0]).unwrap();
    assert_eq!(net.nodes[0].stats().shards_applied, applied + 1);
    assert_eq!(net.nodes[0].remote(BackendKey(1)).active, 7);
}

#[test]
fn a_crashed_node_is_declared_down_and_its_counts_leave_the_view() {
    let net = three_nodes_after_node_2_reporting_crashed();
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
            reporters: 1,
            voters: 1,
            opened: 0,
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
    assert!(
        err.contains(&format!("protocol version {}", wire::PROTOCOL_VERSION + 1)),
        "{err}"
    );
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
    // Report datagrams: junk after the two bytes, a foreign version, an
    // oversized one, a truncated one. A bad datagram applies nothing, not
    // even the shards before the fault.
    let two: Vec<ReportShard> = (0..2u16)
        .map(|i| ReportShard {
            origin: addr(1),
            epoch: 1,
            seq: 1,
            shard: i,
            shards: 2,
            entries: vec![entry(u64::from(i), true, 1)],
            clients: vec![],
        })
        .collect();
    let good = wire::encode_reports(&two, SWIM_PACKET_BYTES_MAX)
        .unwrap()
        .remove(0);
    for len in [2usize, 3, 64, 1100, 1500, 5000] {
        let mut junk = vec![0u8; len];
        rand::Rng::fill_bytes(&mut rng, &mut junk);
        junk[0] = wire::PROTOCOL_VERSION;
        junk[1] = wire::KIND_REPORTS;
        assert!(
            n.handle_datagram(Instant::ZERO, &junk).is_err(),
            "len {len}"
        );
    }
    let mut foreign = good.clone();
    foreign[0] = wire::PROTOCOL_VERSION + 1;
    let err = n
        .handle_datagram(Instant::ZERO, &foreign)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("protocol version {}", wire::PROTOCOL_VERSION + 1)),
        "{err}"
    );
    assert!(
        n.handle_datagram(Instant::ZERO, &good[..good.len() - 1])
            .is_err()
    );
    assert_eq!(n.stats().shards_applied, 0);
    assert_eq!(n.view_generation(), 0);
    n.handle_datagram(Instant::ZERO, &good).unwrap();
    assert_eq!(n.stats().shards_applied, 2);
}

#[test]
fn a_report_of_many_backends_travels_in_shards_and_arrives_whole() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    // 66 backends: three shards of 22 entries.
    net.local[0] = (0..66).map(|k| entry(k, k % 10 != 0, k as u32)).collect();
    net.run_for(3000);
    for i in 1..3 {
        for k in 0..66u64 {
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
    // Three shards of 22 entries.
    let mut entries: Vec<ReportEntry> = (0..66).map(|k| entry(k, true, 0)).collect();
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
    // Refreshed every second (at a report tick), one hop later.
    assert!(
        worst < Duration::from_millis(1000 + 250 + HOP_MS),
        "oldest shard held: {worst:?}"
    );
}

#[test]
fn a_report_from_an_origin_foca_does_not_know_makes_this_node_announce_to_it() {
    let mut net = Net::new(3);
    net.join(0, 0);
    net.join(1, 0);
    net.run_for(2000);
    assert_eq!(net.nodes[0].live_nodes(), 2, "node 2 has not joined");
    let datagram = |origin, seq| {
        let shard = ReportShard {
            origin,
            epoch: 1,
            seq,
            shard: 0,
            shards: 1,
            entries: vec![entry(1, true, 2)],
            clients: vec![],
        };
        wire::encode_reports(&[shard], SWIM_PACKET_BYTES_MAX)
            .unwrap()
            .remove(0)
    };
    // What handling one datagram made node 0 send, SWIM packets only.
    let receive = |net: &mut Net, data: &[u8]| {
        let now = net.now;
        net.nodes[0].handle_datagram(now, data).unwrap();
        let mut to = Vec::new();
        while let Some(t) = net.nodes[0].poll_transmit() {
            assert!(!wire::is_reports(&t.data), "no report of ours is due");
            to.push(t.to);
        }
        to
    };
    // Node 2 is unknown to node 0: its report counts, and node 0 announces
    // itself to it (dropped here), once per refresh period.
    assert_eq!(receive(&mut net, &datagram(addr(2), 1)), vec![addr(2)]);
    assert_eq!(net.nodes[0].remote(BackendKey(1)).active, 2);
    net.run_for(500);
    assert!(receive(&mut net, &datagram(addr(2), 2)).is_empty());
    // A live member's report announces nothing.
    assert!(receive(&mut net, &datagram(addr(1), 99)).is_empty());
    net.run_for(600);
    assert_eq!(
        receive(&mut net, &datagram(addr(2), 3)),
        vec![addr(2)],
        "a refresh period later"
    );
    assert_eq!(net.nodes[0].stats().unknown_origin_announces, 2);
    // Delivered, the announce makes them members of each other, and each
    // welcomes the other with its report.
    net.local[0] = vec![entry(1, true, 4)];
    net.run_for(1000);
    let now = net.now;
    net.nodes[0]
        .handle_datagram(now, &datagram(addr(2), 4))
        .unwrap();
    net.pump(0);
    net.run_for(50);
    assert!(net.nodes[0].members().any(|m| m.addr == addr(2)));
    assert!(net.nodes[2].members().any(|m| m.addr == addr(0)));
    assert_eq!(net.nodes[2].remote(BackendKey(1)).active, 4);
}

/// A peer's certificate names it; a SWIM packet or sync claiming another
/// name is refused whole, and one with the right name is applied.
#[test]
fn a_claim_that_is_not_the_certificates_name_is_refused() {
    let now = Instant::ZERO;
    let mut a = Cluster::new(NodeId::new(addr(0), "n0", 1), config(), 1, now);
    let mut b = Cluster::new(NodeId::new(addr(1), "n1", 1), config(), 2, now);
    a.join(now, &[addr(1)]);
    let announce = a.poll_transmit().expect("an announce to the seed");
    assert_eq!(announce.to, addr(1));
    let e = b
        .handle_datagram_from(now, "n9", &announce.data)
        .unwrap_err();
    assert!(matches!(e, ClusterError::Impersonation { .. }), "{e}");
    assert!(b.is_alone(), "nothing applied");
    assert_eq!(b.stats().impostors_refused, 1);
    let sync = a.sync_message().unwrap();
    assert!(matches!(
        b.handle_sync_from(now, "n9", &sync),
        Err(ClusterError::Impersonation { .. })
    ));
    assert!(b.is_alone());
    b.handle_datagram_from(now, "n0", &announce.data).unwrap();
    assert!(b.members().any(|m| m.name == "n0"));
}

/// Two live processes named `n1` (a copied certificate, two addresses):
/// the newer identity is kept, the older's datagrams are refused and its
/// counts dropped; the older learns its name was taken.
#[test]
fn a_second_live_process_of_one_name_replaces_the_first() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.local[1] = vec![entry(7, true, 5)];
    net.run_for(2000);
    assert_eq!(net.nodes[0].remote(BackendKey(7)).active, 5);
    // Node 2 becomes a second `n1`, newer (epoch 2), at its own address.
    let now = net.now;
    net.nodes[2] = Cluster::new(NodeId::new(addr(2), "n1", 2), config(), 9, now);
    net.local[2] = vec![entry(7, true, 1)];
    net.nodes[2].join(now, &[addr(0)]);
    net.run_for(3000);
    let events: Vec<_> = net.events[0].clone();
    assert!(
        events.iter().any(
            |e| matches!(e, ClusterEvent::DuplicateName { kept, refused }
            if kept.addr == addr(2) && refused.addr == addr(1))
        ),
        "{events:?}"
    );
    assert!(
        net.events[1]
            .iter()
            .any(|e| matches!(e, ClusterEvent::NameTaken { by } if by.addr == addr(2))),
        "the older process is told"
    );
    // Only the newer process's counts count.
    assert_eq!(net.nodes[0].remote(BackendKey(7)).active, 1);
    // Its datagrams were refused (it stops sending to node 0 once it has
    // declared node 0 down for not answering, which the shipped failure
    // detection does within these 3 s).
    assert!(
        net.nodes[0].stats().impostors_refused > 0,
        "the older is refused: {:?}",
        net.events[1]
    );
}

/// A member whose datagrams are lost for two probe periods (well within
/// the suspicion timeout; it still hears the others, so the suspicion's
/// gossip reaches it) is suspected, refutes the suspicion, and keeps
/// its identity. foca 2.0 still sends it a Down notice when the refuted
/// suspicion's timer runs out, which made it renew its identity as if it
/// had been declared down (decision 50); the cluster drops that notice.
#[test]
fn a_refuted_suspicion_is_not_a_death() {
    let mut net = Net::new(3);
    net.join_all_via(0);
    net.run_for(2000);
    let before = net.nodes[2].identity().clone();
    let probe_period = net.nodes[0].config().detection.probe_period;
    net.mute.insert(2);
    net.run_for(2 * probe_period.as_millis() as u64);
    net.mute.remove(&2);
    net.run_for(10_000);
    // It was suspected and refuted: the others hold a newer incarnation
    // of the same identity.
    for i in 0..2 {
        let held = net.nodes[i]
            .foca
            .iter_members()
            .find(|m| m.id().addr == addr(2))
            .unwrap_or_else(|| panic!("node {i} lost node 2: {:?}", net.events[i]));
        assert_eq!(held.id(), &before, "node {i}: {:?}", net.events[i]);
        assert!(held.incarnation() > 0, "node {i}: never suspected node 2");
        assert_eq!(net.nodes[i].live_nodes(), 3);
    }
    assert_eq!(net.nodes[2].identity(), &before, "{:?}", net.events[2]);
    let dropped: u64 = (0..2)
        .map(|i| net.nodes[i].stats().stale_down_notices_dropped)
        .sum();
    assert!(dropped > 0, "the notice this test is about was never sent");
}

/// With the shipped settings and no loss, a crashed member is dropped by
/// every other member of a 10-node fleet within the bound the settings
/// give, and within the 3 s issue 10 asks for (virtual time, fixed
/// seeds: each victim is another sample of the probe order).
#[test]
fn a_crash_is_seen_by_every_member_within_the_bound_of_the_settings() {
    let settings = crate::node::Settings {
        expected_nodes: 10,
        ..crate::node::Settings::default()
    };
    let config = settings.cluster_config();
    let d = config.detection;
    // Some member probes the victim within 4 periods (missed with
    // probability about e^-4 per crash), the probe fails by the prober's
    // next tick, the suspicion runs out, and the Down update is gossiped
    // in T + 2 rounds, a hop each.
    let rounds = u32::from(config.swim.max_transmissions.get()) + 2;
    let bound = d.probe_period * 5
        + d.suspicion(10)
        + (d.gossip_period + Duration::from_millis(HOP_MS)) * rounds;
    let mut took = Vec::new();
    for victim in 1..10 {
        let mut net = Net::with_config(10, config.clone());
        net.join_all_via(0);
        net.run_until(5_000, |net| net.nodes.iter().all(|n| n.live_nodes() == 10))
            .expect("the fleet forms");
        net.run_for(1_000);
        net.cut.insert(victim);
        let t = net
            .run_until(bound.as_millis() as u64, |net| {
                (0..10)
                    .filter(|i| *i != victim)
                    .all(|i| net.nodes[i].live_nodes() == 9)
            })
            .unwrap_or_else(|| panic!("victim {victim} not dropped by all within {bound:?}"));
        took.push(t);
    }
    took.sort();
    let max = *took.last().expect("nine victims");
    assert!(max <= Duration::from_secs(3), "{took:?}");
}
