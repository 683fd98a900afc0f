//! Nodes on an in-memory network in virtual time: the contract of the
//! warm start, the leave and publishing, driven as both shells drive it.

use super::*;
use crate::health::HealthConfig;
use crate::policy::Policy;
use crate::pool::{BackendId, BackendSpec};
use rand::rngs::Xoshiro256PlusPlus;
use std::collections::BTreeSet;

const HOP: Duration = Duration::from_millis(2);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7100 + i as u16))
}

fn keys() -> Vec<Vec<BackendKey>> {
    vec![
        (0..3)
            .map(|b| BackendKey::new("web", &format!("b{b}")))
            .collect(),
    ]
}

fn pool(now: Instant) -> Pool {
    budget_pool(now, None)
}

/// Three backends, each with the fleet-wide budget `budget`.
fn budget_pool(now: Instant, budget: Option<u32>) -> Pool {
    let specs = (0..3)
        .map(|b| BackendSpec {
            name: format!("b{b}"),
            max_connections: None,
            fleet_max_connections: budget,
            weight: 1,
        })
        .collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    Pool::new(
        Policy::LeastConn,
        HealthConfig::default(),
        specs,
        now,
        &mut rng,
    )
}

/// How a test answers a node's actions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seeds {
    /// Node 0's address (node 0 itself gets none).
    Zero,
    /// Never answered.
    Never,
}

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    pools: Vec<Pool>,
    seeds: Seeds,
    /// `(due, from, to, data)` datagrams and `(due, from, id, to, data)`
    /// sync requests.
    datagrams: Vec<(Instant, usize, usize, Vec<u8>)>,
    syncs: Vec<(Instant, usize, u64, usize, Vec<u8>)>,
    /// Nodes whose sync requests are never answered (a slow seed).
    mute_syncs: BTreeSet<usize>,
    accepted: Vec<Option<Instant>>,
    closed: Vec<bool>,
    events: Vec<Vec<NodeEvent>>,
    report_datagrams_to: Vec<u64>,
}

impl Net {
    fn new(n: usize, seeds: Seeds) -> Net {
        let now = Instant::ZERO;
        let nodes = (0..n)
            .map(|i| {
                Node::new(
                    NodeId::new(addr(i), format!("n{i}"), 1),
                    Settings::default(),
                    keys(),
                    i as u64,
                    now,
                )
            })
            .collect();
        let mut net = Net {
            now,
            nodes,
            pools: (0..n).map(|_| pool(now)).collect(),
            seeds,
            datagrams: Vec::new(),
            syncs: Vec::new(),
            mute_syncs: BTreeSet::new(),
            accepted: vec![None; n],
            closed: vec![false; n],
            events: vec![Vec::new(); n],
            report_datagrams_to: vec![0; n],
        };
        for i in 0..n {
            net.flush(i);
        }
        net
    }

    fn index(&self, a: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| addr(i) == a)
    }

    /// The shell's part after every input.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        while let Some(t) = self.nodes[i].poll_transmit() {
            if let Some(j) = self.index(t.to) {
                self.datagrams.push((now + HOP, i, j, t.data));
            }
        }
        while let Some(a) = self.nodes[i].poll_action() {
            match a {
                Action::Resolve => match self.seeds {
                    Seeds::Zero => {
                        let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
                        self.nodes[i].handle_seeds(now, &seeds, &mut self.pools[i]);
                    }
                    Seeds::Never => {}
                },
                Action::Sync(req) => {
                    if let Some(j) = self.index(req.to) {
                        self.syncs.push((now + HOP, i, req.id, j, req.data));
                    }
                }
                Action::Accept => self.accepted[i] = Some(now),
                Action::Close => self.closed[i] = true,
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
    }

    fn step_to(&mut self, until: Instant) {
        loop {
            let next_timer = (0..self.nodes.len())
                .filter(|&i| !self.closed[i])
                .map(|i| (self.nodes[i].poll_timeout(), i))
                .min();
            let next_dgram = self.datagrams.iter().map(|d| d.0).min();
            let next_sync = self.syncs.iter().map(|s| s.0).min();
            let next = [next_timer.map(|t| t.0), next_dgram, next_sync]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = self.now.max(t);
            let now = self.now;
            if let Some(k) = self.datagrams.iter().position(|d| d.0 <= now) {
                let (_, from, j, data) = self.datagrams.remove(k);
                if !self.closed[j] {
                    if crate::wire::is_reports(&data) {
                        self.report_datagrams_to[j] += 1;
                    }
                    let peer = self.nodes[from].identity().name.clone();
                    let _ = self.nodes[j].handle_datagram(now, &peer, &data, &mut self.pools[j]);
                    self.flush(j);
                }
                continue;
            }
            if let Some(k) = self.syncs.iter().position(|s| s.0 <= now) {
                let (_, from, id, to, data) = self.syncs.remove(k);
                if self.mute_syncs.contains(&to) || self.closed[to] {
                    continue;
                }
                let peer = self.nodes[from].identity().name.clone();
                let answer =
                    self.nodes[to].handle_sync_request(now, &peer, &data, &mut self.pools[to]);
                self.flush(to);
                match answer {
                    Ok(a) => {
                        self.nodes[from].handle_sync_answer(now, id, &a, &mut self.pools[from])
                    }
                    Err(_) => self.nodes[from].handle_sync_failed(now, id, &mut self.pools[from]),
                }
                self.flush(from);
                continue;
            }
            if let Some((_, i)) = next_timer.filter(|t| t.0 <= now) {
                self.nodes[i].handle_timeout(now, &mut self.pools[i]);
                self.flush(i);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.step_to(until);
    }

    fn warm(&self, i: usize) -> Option<&WarmStart> {
        self.events[i].iter().find_map(|e| match e {
            NodeEvent::WarmStart(w) => Some(w),
            _ => None,
        })
    }
}

#[test]
fn a_node_without_seeds_accepts_at_once_and_a_second_pulls_its_state() {
    let mut net = Net::new(2, Seeds::Zero);
    assert_eq!(net.accepted[0], Some(Instant::ZERO));
    assert_eq!(net.warm(0), Some(&WarmStart::NoSeeds));
    net.run_for(Duration::from_millis(100));
    assert!(
        matches!(net.warm(1), Some(WarmStart::Pulled { seed, .. }) if *seed == addr(0)),
        "{:?}",
        net.warm(1)
    );
    assert_eq!(net.nodes[1].phase(), Phase::Serving);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.nodes[0].live_nodes(), 2);
    assert_eq!(net.nodes[1].live_nodes(), 2);
}

/// The runtime's old warm start handled nothing while it waited for a
/// seed: a node warming against a slow seed must still answer probes and
/// apply reports.
#[test]
fn a_warming_node_keeps_answering_while_its_seed_is_slow() {
    let mut net = Net::new(2, Seeds::Zero);
    net.mute_syncs.insert(0);
    // A connection on node 0, so its reports carry a count.
    let b = net.pools[0]
        .acquire(&mut Xoshiro256PlusPlus::seed_from_u64(1), &[])
        .unwrap();
    net.run_for(Duration::from_millis(2_500));
    assert_eq!(
        net.nodes[1].phase(),
        Phase::Warming,
        "still waiting for the seed"
    );
    assert_eq!(net.accepted[1], None);
    // Membership went on: both hold each other alive.
    assert_eq!(net.nodes[0].live_nodes(), 2);
    assert_eq!(net.nodes[1].live_nodes(), 2);
    // Reports were applied and pushed into the warming node's pool.
    let key = keys()[0][b.0];
    assert_eq!(net.nodes[1].cluster().remote(key).active, 1);
    assert_eq!(net.pools[1].remote(b).active, 1);
    // The deadline counts from the start.
    net.run_for(Duration::from_millis(600));
    assert_eq!(net.warm(1), Some(&WarmStart::TimedOut));
    assert_eq!(
        net.accepted[1],
        Some(Instant::ZERO + Duration::from_secs(3))
    );
}

#[test]
fn the_warm_start_deadline_bounds_seed_resolution_too() {
    let mut net = Net::new(1, Seeds::Never);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.warm(0), Some(&WarmStart::TimedOut));
    assert_eq!(
        net.accepted[0],
        Some(Instant::ZERO + Duration::from_secs(3))
    );
}

#[test]
fn a_leaving_node_stops_publishing_and_closes_after_the_linger() {
    let mut net = Net::new(2, Seeds::Zero);
    net.run_for(Duration::from_secs(2));
    let now = net.now;
    net.nodes[1].handle_leave(now, &mut net.pools[1]);
    net.flush(1);
    assert_eq!(net.nodes[1].phase(), Phase::Leaving);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.nodes[0].live_nodes(), 1, "the leave reached the peer");
    let before = net.report_datagrams_to[0];
    // A health flip after the leave publishes nothing.
    net.nodes[1].handle_health_changed(net.now, &mut net.pools[1]);
    net.flush(1);
    net.run_for(Duration::from_millis(150));
    assert_eq!(net.report_datagrams_to[0], before);
    assert!(!net.closed[1], "still lingering");
    net.run_for(Duration::from_millis(100));
    assert!(net.closed[1]);
    assert_eq!(net.nodes[1].phase(), Phase::Closed);
}

#[test]
fn a_health_flip_publishes_at_once() {
    let mut net = Net::new(2, Seeds::Zero);
    net.run_for(Duration::from_secs(2));
    let before = net.report_datagrams_to[1];
    // Take a backend down on node 0 between two report ticks.
    for _ in 0..3 {
        net.pools[0].handle_connect_failure(BackendId(0));
    }
    net.nodes[0].handle_health_changed(net.now, &mut net.pools[0]);
    net.flush(0);
    net.step_to(net.now + HOP);
    assert!(
        net.report_datagrams_to[1] > before,
        "sent before the next tick"
    );
    let key = keys()[0][0];
    assert_eq!(net.nodes[1].cluster().remote(key).down_votes, 1);
}

/// One connection opened on node 0 and what node 1 sees of it.
fn open_one(net: &mut Net, rng: &mut Xoshiro256PlusPlus) {
    net.pools[0].acquire(rng, &[]).expect("a backend");
    if net.pools[0].take_report_wake() {
        let now = net.now;
        net.nodes[0].handle_counts_changed(now, &mut net.pools[0]);
        net.flush(0);
    }
}

fn seen_by_1(net: &Net) -> u32 {
    keys()[0]
        .iter()
        .map(|&k| net.nodes[1].cluster().remote(k).active)
        .sum()
}

/// Decision 61: a change of counts is published `report_early_gap` after
/// the last publication, not at the next tick; one early publication per
/// interval, so a second change waits for the tick; and the pool wakes
/// the node once per publication, not once per connection. Checked
/// failing with `report_early_max = 0` (node 1 saw 0 after 30 ms).
#[test]
fn a_change_of_counts_is_published_early_once_an_interval() {
    let mut net = Net::new(2, Seeds::Zero);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    net.run_for(Duration::from_secs(2));
    // Just after a periodic report: the next tick is ~250 ms away.
    let before = net.report_datagrams_to[1];
    for _ in 0..300 {
        net.run_for(Duration::from_millis(1));
        if net.report_datagrams_to[1] > before {
            break;
        }
    }
    net.run_for(Duration::from_millis(40));
    let gap = Settings::default().report_early_gap;
    open_one(&mut net, &mut rng);
    assert!(!net.pools[0].take_report_wake(), "one wake per report");
    net.run_for(gap + HOP * 2);
    assert_eq!(seen_by_1(&net), 1, "published early");
    assert_eq!(net.nodes[0].stats().early_reports, 1);
    // A second change in the same interval waits for the tick.
    open_one(&mut net, &mut rng);
    net.run_for(gap + HOP * 2);
    assert_eq!(seen_by_1(&net), 1, "one early report an interval");
    net.run_for(Settings::default().report_interval);
    assert_eq!(seen_by_1(&net), 2, "the tick carries it");
    assert_eq!(net.nodes[0].stats().early_reports, 1);
}

#[test]
fn status_lists_members_with_their_report_age() {
    let mut net = Net::new(3, Seeds::Zero);
    net.run_for(Duration::from_secs(3));
    let s = net.nodes[0].status(net.now);
    assert_eq!(s.live_nodes, 3);
    assert_eq!(s.members.len(), 2);
    assert!(
        s.members
            .iter()
            .all(|m| m.report_age.is_some_and(|a| a < Duration::from_secs(1)))
    );
    // Each peer's own entries, one per backend of every pool.
    let backends: usize = keys().iter().map(Vec::len).sum();
    for m in &s.members {
        assert_eq!(m.entries.len(), backends, "{m:?}");
        assert!(m.entries.values().all(|e| e.healthy), "{m:?}");
    }
}

#[test]
fn a_drain_on_one_node_reaches_every_pool_and_a_later_node_learns_it() {
    let mut net = Net::new(3, Seeds::Zero);
    net.run_for(Duration::from_secs(3));
    let key = keys()[0][1];
    let now = net.now;
    let mark = net.nodes[2]
        .handle_drain(now, 1_000, key, true, &mut net.pools[2])
        .unwrap();
    assert!(mark.draining);
    net.flush(2);
    assert!(
        net.pools[2].is_draining(BackendId(1)),
        "at once on the issuer"
    );
    // One hop: the urgent publication reaches the others.
    net.step_to(net.now + HOP);
    for i in 0..2 {
        assert!(net.pools[i].is_draining(BackendId(1)), "node {i}");
        assert!(!net.pools[i].is_draining(BackendId(0)), "node {i}");
    }
    // A new node (the same address as node 1, restarted) pulls it in its
    // warm start, before it accepts.
    net.nodes[1] = Node::new(
        NodeId::new(addr(1), "n1", 2),
        Settings::default(),
        keys(),
        99,
        net.now,
    );
    net.pools[1] = pool(net.now);
    net.accepted[1] = None;
    net.events[1].clear();
    net.flush(1);
    while net.accepted[1].is_none() {
        net.step_to(net.now + HOP);
    }
    assert!(
        net.pools[1].is_draining(BackendId(1)),
        "learned by the warm start"
    );
    assert_eq!(net.nodes[1].cluster().drain_mark(key), Some(mark));
    // A later undrain from another node wins everywhere.
    let now = net.now;
    net.nodes[0]
        .handle_drain(now, 1_000, key, false, &mut net.pools[0])
        .unwrap();
    net.flush(0);
    net.run_for(Duration::from_millis(600));
    for i in 0..3 {
        assert!(!net.pools[i].is_draining(BackendId(1)), "node {i}");
    }
    let unknown = BackendKey::new("web", "nowhere");
    assert_eq!(
        net.nodes[0].handle_drain(net.now, 1, unknown, true, &mut net.pools[0]),
        Err(UnknownBackend(unknown))
    );
}

/// Commands are ordered by the hybrid clock, not by the issuers' wall
/// clocks alone: an undrain issued after a drain wins even from a node
/// whose clock is far behind the drain's issuer.
#[test]
fn a_later_undrain_wins_over_a_drain_from_a_clock_far_ahead() {
    let mut net = Net::new(2, Seeds::Zero);
    net.run_for(Duration::from_secs(3));
    let key = keys()[0][0];
    let now = net.now;
    // Issued with a wall clock far ahead: its version is large.
    net.nodes[0]
        .handle_drain(now, 5_000_000, key, true, &mut net.pools[0])
        .unwrap();
    net.flush(0);
    net.run_for(Duration::from_millis(300));
    assert!(net.pools[1].is_draining(BackendId(0)));
    // Node 1's clock is behind: its undrain still wins, since the mark's
    // version is at least one more than any it has seen.
    let now = net.now;
    let undo = net.nodes[1]
        .handle_drain(now, 10, key, false, &mut net.pools[1])
        .unwrap();
    assert!(undo.version > 5_000_000);
    net.flush(1);
    net.run_for(Duration::from_secs(3));
    assert!(!net.pools[0].is_draining(BackendId(0)));
    assert!(!net.pools[1].is_draining(BackendId(0)));
}

/// Peers that hold a leaving node down tell it so; that is the leave
/// working, not the node failing to renew its identity.
#[test]
fn a_leaving_node_reports_no_defunct() {
    let mut net = Net::new(3, Seeds::Zero);
    net.run_for(Duration::from_secs(3));
    let now = net.now;
    net.nodes[2].handle_leave(now, &mut net.pools[2]);
    net.flush(2);
    net.run_for(Duration::from_millis(250));
    assert!(
        !net.events[2]
            .iter()
            .any(|e| matches!(e, NodeEvent::Defunct)),
        "{:?}",
        net.events[2]
    );
    assert_eq!(net.nodes[2].stats().defunct, 0);
}

fn client_ip(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::from([10, 0, 0, i as u8 + 1])
}

/// Gives node `i` the client address `10.0.0.(i+1)`.
fn advertise(net: &mut Net) {
    for (i, n) in net.nodes.iter_mut().enumerate() {
        n.settings.client_addrs = vec![client_ip(i)];
    }
}

fn answer_v4(net: &Net, i: usize) -> Vec<std::net::IpAddr> {
    let a = net.nodes[i].client_answer();
    assert!(a.v6.is_empty());
    a.v4.into_iter().map(std::net::IpAddr::from).collect()
}

fn ips(list: &[usize]) -> Vec<std::net::IpAddr> {
    list.iter().map(|&i| client_ip(i)).collect()
}

#[test]
fn the_dns_answer_follows_the_fleet_kill_and_leave() {
    let mut net = Net::new(3, Seeds::Zero);
    advertise(&mut net);
    net.run_for(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(answer_v4(&net, i), ips(&[0, 1, 2]), "node {i}");
        assert!(net.nodes[i].poll_client_answer().is_some(), "first poll");
    }
    // Steady fleet: reports keep arriving, the answer stays, no poll.
    net.run_for(Duration::from_secs(2));
    for i in 0..3 {
        assert_eq!(net.nodes[i].poll_client_answer(), None, "node {i}");
    }
    // kill -9 of node 2: no datagram in or out, no timer. Its shard 0
    // expires within the report TTL (3 s) and a report tick.
    net.closed[2] = true;
    net.run_for(Duration::from_millis(3_300));
    for i in 0..2 {
        assert_eq!(answer_v4(&net, i), ips(&[0, 1]), "node {i} after the kill");
        assert!(net.nodes[i].poll_client_answer().is_some(), "node {i}");
    }
    // A leave takes node 1 out of node 0's answer within a hop or two,
    // and node 1, no longer speaking for the fleet, refuses the name
    // (its linger: a resolver must take another node's word).
    let now = net.now;
    net.nodes[1].handle_leave(now, &mut net.pools[1]);
    net.flush(1);
    assert!(net.nodes[1].client_answer().is_empty());
    assert_eq!(
        net.nodes[1].client_answer().reply(),
        crate::dns::NameReply::Refused
    );
    assert_eq!(
        net.nodes[0].client_answer().reply(),
        crate::dns::NameReply::Records
    );
    assert_eq!(
        net.nodes[1].poll_client_answer(),
        Some(ClientAnswer::default())
    );
    net.run_for(Duration::from_millis(50));
    assert_eq!(answer_v4(&net, 0), ips(&[0]));
}

#[test]
fn a_warming_node_is_left_out_of_every_answer_until_it_serves() {
    let mut net = Net::new(2, Seeds::Zero);
    advertise(&mut net);
    net.mute_syncs.insert(0);
    net.run_for(Duration::from_millis(2_500));
    assert_eq!(net.nodes[1].phase(), Phase::Warming);
    assert_eq!(net.nodes[0].live_nodes(), 2, "a member already");
    assert_eq!(answer_v4(&net, 0), ips(&[0]));
    // The warming node answers with the fleet it sees, without itself.
    assert_eq!(answer_v4(&net, 1), ips(&[0]));
    // The warm start times out at 3 s; the next report carries its address.
    net.run_for(Duration::from_millis(800));
    assert_eq!(net.nodes[1].phase(), Phase::Serving);
    assert_eq!(answer_v4(&net, 0), ips(&[0, 1]));
    assert_eq!(answer_v4(&net, 1), ips(&[0, 1]));
}

/// A client on node `i`, driven as the shells do: a budget raise is
/// published at once; a client that could wait for the next round of
/// raises is refused at once here (as in the simulator).
fn acquire(
    net: &mut Net,
    i: usize,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<BackendId, crate::pool::NoBackend> {
    let r = net.pools[i].acquire(rng, &[]);
    if let Err(why) = &r
        && why.waits_for_round()
    {
        net.pools[i].refuse_for_budget(&[]);
    }
    if net.pools[i].has_unpublished_raise() {
        let now = net.now;
        net.nodes[i].handle_budget_raised(now, &mut net.pools[i]);
        net.flush(i);
    }
    r
}

/// A fleet-wide budget holds over three nodes that all take clients
/// faster than reports travel; a crashed node's share comes back to the
/// others once it is declared down, and a node cut off from the other two
/// keeps to its fair third.
#[test]
fn a_fleet_budget_holds_over_nodes_and_a_crashed_nodes_share_returns() {
    let mut net = Net::new(3, Seeds::Zero);
    let now = net.now;
    net.pools = (0..3).map(|_| budget_pool(now, Some(30))).collect();
    for i in 0..3 {
        net.flush(i);
    }
    net.run_for(Duration::from_secs(3));
    assert!((0..3).all(|i| net.nodes[i].live_nodes() == 3));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let b = BackendId(0);
    // Only backend 0 takes clients here.
    for i in 0..3 {
        for other in [1, 2] {
            net.pools[i].set_draining(BackendId(other), true);
        }
    }
    let total = |net: &Net| (0..3).map(|i| net.pools[i].active(b)).sum::<u32>();
    // 100 clients spread over the nodes, between two report ticks.
    let mut refused = 0;
    for c in 0..100 {
        let i = c % 3;
        match acquire(&mut net, i, &mut rng) {
            Ok(id) => assert_eq!(id, b),
            Err(why) => {
                assert!(why.is_budget(), "{why}");
                refused += 1;
            }
        }
    }
    assert_eq!(total(&net), 30, "the budget is taken whole, not more");
    assert_eq!(refused, 70);
    assert!((0..3).all(|i| net.pools[i].budget(b).unwrap().refused() > 0));
    // Reports go round; clients keep coming: the total stays at 30.
    for _ in 0..20 {
        net.run_for(Duration::from_millis(100));
        for i in 0..3 {
            let _ = acquire(&mut net, i, &mut rng);
        }
        assert!(total(&net) <= 30, "{}", total(&net));
    }
    // Node 2 crashes holding its connections: once it is declared down,
    // nodes 0 and 1 may take its part.
    let held_by_2 = net.pools[2].active(b);
    assert!(held_by_2 > 0);
    net.closed[2] = true;
    let mut returned = None;
    for step in 0..300 {
        net.run_for(Duration::from_millis(100));
        for i in 0..2 {
            let _ = acquire(&mut net, i, &mut rng);
        }
        if net.pools[0].active(b) + net.pools[1].active(b) == 30 {
            returned = Some(step);
            break;
        }
    }
    assert!(
        returned.is_some(),
        "node 2's share never came back: live {} {}, active {} {}, budgets {:?} {:?}",
        net.nodes[0].live_nodes(),
        net.nodes[1].live_nodes(),
        net.pools[0].active(b),
        net.pools[1].active(b),
        net.pools[0].budget(b),
        net.pools[1].budget(b)
    );
    assert!(net.nodes[0].live_nodes() == 2 && net.nodes[1].live_nodes() == 2);
    // Node 1 alone of 3 (node 0 gone too) is cut off: its fair third only.
    for _ in 0..net.pools[1].active(b) {
        assert!(net.pools[1].release(b));
    }
    net.closed[0] = true;
    for _ in 0..300 {
        net.run_for(Duration::from_millis(100));
        if net.nodes[1].live_nodes() == 1 {
            break;
        }
    }
    assert_eq!(net.nodes[1].live_nodes(), 1);
    net.run_for(Duration::from_millis(300));
    while acquire(&mut net, 1, &mut rng).is_ok() {}
    assert_eq!(net.pools[1].active(b), 10, "the fair part of 30 over 3");
}

/// Once membership has converged, each backend has exactly `k` assigned
/// checkers (the default, 3, of 5 nodes), the same set on every node's
/// view; when one of them leaves, the survivors take its backends over.
#[test]
fn each_backend_gets_exactly_k_checkers_and_a_leaver_is_replaced() {
    let mut net = Net::new(5, Seeds::Zero);
    net.run_for(Duration::from_secs(3));
    let assigned = |net: &Net, live: &[usize]| -> Vec<Vec<SocketAddr>> {
        (0..3)
            .map(|b| {
                live.iter()
                    .filter(|&&i| net.pools[i].is_assigned(BackendId(b)))
                    .map(|&i| addr(i))
                    .collect()
            })
            .collect()
    };
    let all: Vec<usize> = (0..5).collect();
    for (b, mut who) in assigned(&net, &all).into_iter().enumerate() {
        assert_eq!(who.len(), 3, "backend {b}: {who:?}");
        let key = keys()[0][b];
        for i in 0..5 {
            let mut seen = net.nodes[i].checkers_of(key, 0);
            seen.sort();
            who.sort();
            assert_eq!(seen, who, "n{i}'s view of backend {b}");
        }
    }
    // A checker of backend 0 leaves; the other four reassign it.
    let leaver = net.index(assigned(&net, &all)[0][0]).unwrap();
    let now = net.now;
    net.nodes[leaver].handle_leave(now, &mut net.pools[leaver]);
    net.flush(leaver);
    net.run_for(Duration::from_secs(1));
    let rest: Vec<usize> = all.into_iter().filter(|&i| i != leaver).collect();
    for (b, who) in assigned(&net, &rest).into_iter().enumerate() {
        assert_eq!(who.len(), 3, "after the leave, backend {b}: {who:?}");
    }
}

/// A reload that adds a backend and removes one: the report carries the
/// new one at once, the removed one while it still has a connection, and
/// drops it once it is gone.
#[test]
fn a_reload_adds_and_removes_backends_in_the_report() {
    let mut net = Net::new(2, Seeds::Zero);
    net.run_for(Duration::from_secs(3));
    assert!(net.accepted.iter().all(Option::is_some));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let held = net.pools[0].acquire(&mut rng, &[]).unwrap();
    let held_key = keys()[0][held.0];
    assert!(!net.pools[0].remove_backend(held));
    let spec = BackendSpec {
        name: "b3".into(),
        max_connections: None,
        fleet_max_connections: None,
        weight: 1,
    };
    let added = net.pools[0].add_backend(spec, net.now, &mut rng);
    assert_eq!(added, BackendId(3), "no gone slot to reuse");
    let on_added = net.pools[0]
        .acquire_with(&[], |c, _| {
            c.iter().find(|c| c.index == added.0).map(|c| c.index)
        })
        .unwrap();
    let new_key = BackendKey::new("web", "b3");
    let mut new_keys = keys();
    new_keys[0].push(new_key);
    let now = net.now;
    net.nodes[0].handle_reload(now, new_keys, &mut net.pools[0]);
    net.flush(0);
    net.run_for(Duration::from_millis(500));
    let view = |net: &Net, key| net.nodes[1].cluster().remote(key);
    assert_eq!(
        view(&net, new_key).active,
        1,
        "the added backend is reported"
    );
    assert_eq!(
        view(&net, held_key).active,
        1,
        "the removed one while it drains"
    );
    // Its last connection ends: it leaves the report.
    assert!(net.pools[0].release(held));
    assert!(net.pools[0].is_gone(held));
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        view(&net, held_key).reporters,
        0,
        "{:?}",
        view(&net, held_key)
    );
    assert_eq!(view(&net, new_key).active, 1);
    assert!(net.pools[0].release(on_added));
}
