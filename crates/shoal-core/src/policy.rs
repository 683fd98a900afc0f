//! Balancing policies and the choice of one backend among candidates.
//!
//! The choice works on a slice of [`Candidate`]s that the pool has already
//! filtered (up, below their connection limit, not yet tried for this
//! client), sorted by backend id. Every random decision uses the caller's
//! RNG, so a seeded run chooses the same backends every time.

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a listener spreads new connections over its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Cluster-wide least connections, own counts first ([`own_first`],
    /// decision 58): the candidate with the least `(own × (nodes − 1) +
    /// fleet + nodes) / weight` (what its score would be with this
    /// connection, per unit of weight), where `own` is this node's exact count, `fleet` that plus
    /// every peer's last report, and `nodes` the fleet's new clients over
    /// this node's ([`crate::pool::Pool::share_nodes`]); ties at random.
    /// Each node evens out its own connections and corrects the fleet's
    /// imbalance by its `1 / nodes` part of it, so nodes holding one stale
    /// view correct an imbalance once between them instead of herding onto
    /// the backend that looks emptiest. Pools larger than
    /// [`crate::pool::SCAN_POOL_MAX`] compare two random candidates by the
    /// same score.
    #[default]
    LeastConn,
    /// Power of two choices over this node's own counts only, ignoring
    /// the fleet (what a fleet of independent balancers does): the lesser
    /// `(own + 1) / weight` of two.
    LocalLeastConn,
    /// Each candidate in turn, in configuration order, skipping those that
    /// are down or full; weighted, interleaved ([`RoundRobin`]): a backend
    /// of weight `w` is taken in `w` of every `max weight` rounds.
    RoundRobin,
    /// A candidate chosen uniformly at random.
    Random,
    /// The first candidate in configuration order that is up and below its
    /// `max_connections`: fills one backend before using the next (HAProxy's
    /// `balance first`).
    FirstAvailable,
}

impl Policy {
    /// Every policy, in the order the docs list them.
    pub const ALL: [Policy; 5] = [
        Policy::LeastConn,
        Policy::LocalLeastConn,
        Policy::RoundRobin,
        Policy::Random,
        Policy::FirstAvailable,
    ];

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::LeastConn => "least-conn",
            Policy::LocalLeastConn => "local-least-conn",
            Policy::RoundRobin => "round-robin",
            Policy::Random => "random",
            Policy::FirstAvailable => "first-available",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of [`Policy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown policy `{0}`; expected one of least-conn, local-least-conn, round-robin, random, first-available"
)]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

/// A backend that may take the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Position of the backend in its pool (configuration order).
    pub index: usize,
    /// Connections the policy weighs (the fleet's or this node's).
    pub load: u64,
    /// This node's own connections to it (exact), part of `load`.
    pub own: u64,
    /// Its configured weight (at least 1): the policies compare load per
    /// unit of weight, and round-robin takes it `weight` times a cycle.
    pub weight: u32,
}

/// Where weighted round-robin is (interleaved, as LVS's `wrr`): round
/// `r` of a cycle visits, in configuration order, every candidate whose
/// weight exceeds `r`, and a cycle has as many rounds as the largest
/// weight. Weights 1:2:3 give `a b c | b c | c`; equal weights plain
/// round-robin. O(candidates) a choice, two scans at most; no state per
/// backend, so a pool that changes (a backend down, added, removed)
/// needs no bookkeeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundRobin {
    /// The next candidate is the first at or after this index...
    pub index: usize,
    /// ... in this round.
    pub round: u32,
}

impl RoundRobin {
    /// The next candidate of the cycle; `candidates` is not empty.
    fn next(&mut self, candidates: &[Candidate]) -> Candidate {
        let rounds = candidates
            .iter()
            .map(|c| c.weight.max(1))
            .max()
            .unwrap_or(1);
        if self.round >= rounds {
            *self = RoundRobin::default();
        }
        loop {
            if let Some(c) = candidates
                .iter()
                .find(|c| c.index >= self.index && c.weight.max(1) > self.round)
            {
                self.index = c.index + 1;
                return *c;
            }
            // The round is over. The heaviest candidate is in every round,
            // so the next one (or round 0 after the last) finds one.
            self.index = 0;
            self.round += 1;
            if self.round >= rounds {
                self.round = 0;
            }
        }
    }
}

/// Whether `a / wa` is less than, equal to or greater than `b / wb`, exactly
/// (weights at least 1).
pub fn cmp_per_weight(a: u64, wa: u32, b: u64, wb: u32) -> std::cmp::Ordering {
    let (wa, wb) = (u128::from(wa.max(1)), u128::from(wb.max(1)));
    (u128::from(a) * wb).cmp(&(u128::from(b) * wa))
}

/// Chooses among `candidates` (sorted by index, none excluded yet).
/// `rr_cursor` is the round-robin position, kept by the caller between calls;
/// `nodes` the live fleet size, this node included.
/// Returns the chosen backend's index, `None` only if `candidates` is empty.
pub fn choose<R: Rng + ?Sized>(
    policy: Policy,
    candidates: &[Candidate],
    rr_cursor: &mut RoundRobin,
    nodes: u32,
    rng: &mut R,
) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let chosen = match policy {
        Policy::LeastConn => own_first(candidates, nodes, rng),
        Policy::LocalLeastConn => power_of_two(candidates, rng),
        Policy::Random => candidates[rng.random_range(0..candidates.len())],
        Policy::FirstAvailable => candidates[0],
        Policy::RoundRobin => rr_cursor.next(candidates),
    };
    Some(chosen.index)
}

/// The score [`own_first`] minimizes, per unit of the candidate's
/// weight: `own × (nodes − 1) + load + nodes`, with `load` the fleet's
/// count (this node's own included), i.e. the score the candidate would
/// have with this connection. Minimizing it is minimizing
/// `own × (1 − 1/nodes) + load / nodes`: this node evens out its own
/// connections and takes its `1 / nodes` part of the fleet's imbalance;
/// with `nodes` = 1 (it receives every new client) it is an argmin over
/// the fleet's counts. The `+ nodes` (one connection more) only matters
/// between different weights: idle backends of weights 1 and 3 score
/// 1 and 1/3, so the heavier is filled first (HAProxy's `leastconn`
/// orders by `(connections + 1) / weight` too).
pub fn own_first_score(c: &Candidate, nodes: u32) -> u64 {
    let nodes = u64::from(nodes.max(1));
    c.own
        .saturating_mul(nodes - 1)
        .saturating_add(c.load)
        .saturating_add(nodes)
}

/// Argmin of [`own_first_score`], ties at random (reservoir sampling): each
/// node evens out its own connections, nudged by the fleet's imbalance
/// divided by the nodes that all see it, so `nodes` nodes holding one
/// stale view correct an imbalance once between them, not `nodes` times.
/// O(candidates), no allocation.
pub fn own_first<R: Rng + ?Sized>(candidates: &[Candidate], nodes: u32, rng: &mut R) -> Candidate {
    let score = |c: &Candidate| own_first_score(c, nodes);
    let mut best = candidates[0];
    let mut ties = 1u32;
    for c in &candidates[1..] {
        match cmp_per_weight(score(c), c.weight, score(&best), best.weight) {
            std::cmp::Ordering::Less => {
                best = *c;
                ties = 1;
            }
            std::cmp::Ordering::Equal => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = *c;
                }
            }
            std::cmp::Ordering::Greater => {}
        }
    }
    best
}

/// Power of two choices over `load`: two candidates at random, the lesser
/// ([`lesser`]). `least-conn` before decision 58; the simulator keeps it
/// as a reference.
pub fn power_of_two<R: Rng + ?Sized>(candidates: &[Candidate], rng: &mut R) -> Candidate {
    let n = candidates.len();
    if n == 1 {
        return candidates[0];
    }
    let i = rng.random_range(0..n);
    let mut j = rng.random_range(0..n - 1);
    if j >= i {
        j += 1;
    }
    lesser(candidates[i], candidates[j], rng)
}

/// The one of `a` and `b` with the smaller `(load + 1) / weight`, ties at
/// random: the comparison of power of two choices, shared by the scan
/// above and the pool's sampled choice.
pub fn lesser<R: Rng + ?Sized>(a: Candidate, b: Candidate, rng: &mut R) -> Candidate {
    let next = |c: &Candidate| c.load.saturating_add(1);
    match cmp_per_weight(next(&a), a.weight, next(&b), b.weight) {
        std::cmp::Ordering::Less => a,
        std::cmp::Ordering::Greater => b,
        std::cmp::Ordering::Equal => {
            if rng.random_bool(0.5) {
                a
            } else {
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn cands(loads: &[u64]) -> Vec<Candidate> {
        loads
            .iter()
            .enumerate()
            .map(|(index, &load)| Candidate {
                index,
                load,
                own: load,
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for p in Policy::ALL {
            assert_eq!(p.as_str().parse::<Policy>(), Ok(p));
        }
        let err = "leastconn".parse::<Policy>().unwrap_err().to_string();
        assert!(err.contains("`leastconn`"), "{err}");
    }

    #[test]
    fn empty_candidates_choose_nothing() {
        let mut rng = SmallRng::seed_from_u64(1);
        for p in Policy::ALL {
            assert_eq!(
                choose(p, &[], &mut RoundRobin::default(), 1, &mut rng),
                None
            );
        }
    }

    #[test]
    fn local_least_conn_never_picks_the_strictly_most_loaded_of_three() {
        // P2C picks the lesser of two distinct candidates, so the unique
        // maximum can never win; the unique minimum wins 2/3 of the time.
        let mut rng = SmallRng::seed_from_u64(7);
        let c = cands(&[5, 0, 9]);
        let mut wins = [0u32; 3];
        for _ in 0..3000 {
            wins[choose(
                Policy::LocalLeastConn,
                &c,
                &mut RoundRobin::default(),
                1,
                &mut rng,
            )
            .unwrap()] += 1;
        }
        assert_eq!(wins[2], 0);
        assert!((1800..2200).contains(&wins[1]), "{wins:?}");
    }

    #[test]
    fn power_of_two_ties_are_broken_at_random_and_seeded() {
        let c = cands(&[3, 3]);
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..64)
                .map(|_| {
                    choose(
                        Policy::LocalLeastConn,
                        &c,
                        &mut RoundRobin::default(),
                        1,
                        &mut rng,
                    )
                    .unwrap()
                })
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42), "same seed, same choices");
        assert_ne!(a, run(43), "another seed, other choices");
        let ones = a.iter().filter(|&&i| i == 1).count();
        assert!(
            (16..=48).contains(&ones),
            "both tied backends win: {ones}/64"
        );
    }

    /// Ten nodes hold one stale view in which backend 0 is 40 connections
    /// below the three others, and each gets 8 new clients before the view
    /// changes: an argmin over the view would send all 80 to backend 0
    /// (120 against 40); least-conn's own-first score sends it about its
    /// deficit, so the fleet ends even (50 each).
    #[test]
    fn nodes_holding_one_stale_view_fill_a_deficit_without_herding() {
        let mut rng = SmallRng::seed_from_u64(3);
        let view = [0u64, 40, 40, 40];
        let mut fleet = view;
        for _node in 0..10 {
            let mut own = [0u64; 4];
            for _client in 0..8 {
                let c: Vec<Candidate> = (0..4)
                    .map(|i| Candidate {
                        index: i,
                        load: view[i] + own[i],
                        own: own[i],
                        weight: 1,
                    })
                    .collect();
                let i = choose(
                    Policy::LeastConn,
                    &c,
                    &mut RoundRobin::default(),
                    10,
                    &mut rng,
                )
                .unwrap();
                own[i] += 1;
                fleet[i] += 1;
            }
        }
        assert!(fleet.iter().all(|&n| (48..=52).contains(&n)), "{fleet:?}");
    }

    /// Own counts come first: a node holding more of its own on the
    /// emptier backend (by the fleet's view) sends the next client to the
    /// other when the fleet's difference is less than the fleet's size.
    #[test]
    fn least_conn_evens_its_own_counts_before_the_fleets() {
        let mut rng = SmallRng::seed_from_u64(1);
        let c = [
            Candidate {
                index: 0,
                load: 20,
                own: 3,
                weight: 1,
            },
            Candidate {
                index: 1,
                load: 24,
                own: 1,
                weight: 1,
            },
        ];
        // 3 × 4 + 20 = 32 against 1 × 4 + 24 = 28.
        assert_eq!(
            choose(
                Policy::LeastConn,
                &c,
                &mut RoundRobin::default(),
                5,
                &mut rng
            ),
            Some(1)
        );
        // Alone, the fleet is this node: the lesser load.
        assert_eq!(
            choose(
                Policy::LeastConn,
                &c,
                &mut RoundRobin::default(),
                1,
                &mut rng
            ),
            Some(0)
        );
    }

    #[test]
    fn round_robin_cycles_and_skips_missing_candidates() {
        let mut rng = SmallRng::seed_from_u64(0);
        let all = cands(&[0, 0, 0]);
        let mut cursor = RoundRobin::default();
        let picks: Vec<_> = (0..6)
            .map(|_| choose(Policy::RoundRobin, &all, &mut cursor, 1, &mut rng).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        // Backend 1 gone (down or full): the cycle continues over 0 and 2.
        let some = vec![all[0], all[2]];
        let picks: Vec<_> = (0..4)
            .map(|_| choose(Policy::RoundRobin, &some, &mut cursor, 1, &mut rng).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
    }

    /// Interleaved weighted round-robin: weights 1:2:3 give `0 1 2 | 1 2 | 2`
    /// each cycle; a candidate missing (down, full) leaves the others'
    /// turns as they were.
    #[test]
    fn weighted_round_robin_takes_each_backend_its_weight_a_cycle() {
        let mut rng = SmallRng::seed_from_u64(0);
        let all: Vec<Candidate> = (0..3)
            .map(|index| Candidate {
                index,
                load: 0,
                own: 0,
                weight: index as u32 + 1,
            })
            .collect();
        let mut cursor = RoundRobin::default();
        let picks: Vec<_> = (0..12)
            .map(|_| choose(Policy::RoundRobin, &all, &mut cursor, 1, &mut rng).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 1, 2, 2, 0, 1, 2, 1, 2, 2]);
        let some = vec![all[0], all[1]];
        let picks: Vec<_> = (0..6)
            .map(|_| choose(Policy::RoundRobin, &some, &mut cursor, 1, &mut rng).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 1, 0, 1, 1]);
    }

    /// Least-conn fills backends in proportion to their weights, on its
    /// own and in a fleet; so does local-least-conn (power of two).
    #[test]
    fn least_conn_holds_connections_in_the_ratio_of_the_weights() {
        for (policy, nodes) in [
            (Policy::LeastConn, 1),
            (Policy::LeastConn, 4),
            (Policy::LocalLeastConn, 1),
        ] {
            let mut rng = SmallRng::seed_from_u64(5);
            let mut held = [0u64; 3];
            for _ in 0..600 {
                let c: Vec<Candidate> = (0..3)
                    .map(|i| Candidate {
                        index: i,
                        load: held[i],
                        own: held[i],
                        weight: i as u32 + 1,
                    })
                    .collect();
                held[choose(policy, &c, &mut RoundRobin::default(), nodes, &mut rng).unwrap()] += 1;
            }
            for (i, &n) in held.iter().enumerate() {
                let expected = 100 * (i as u64 + 1);
                assert!(
                    n.abs_diff(expected) <= expected / 10,
                    "{policy} ×{nodes}: {held:?}"
                );
            }
        }
        // Idle, the heaviest is taken first.
        let mut rng = SmallRng::seed_from_u64(1);
        let idle: Vec<Candidate> = (0..3)
            .map(|i| Candidate {
                index: i,
                load: 0,
                own: 0,
                weight: [1, 3, 2][i],
            })
            .collect();
        assert_eq!(
            choose(
                Policy::LeastConn,
                &idle,
                &mut RoundRobin::default(),
                3,
                &mut rng
            ),
            Some(1)
        );
    }

    #[test]
    fn comparisons_per_weight_are_exact_at_the_extremes() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_per_weight(u64::MAX, 256, u64::MAX, 255), Less);
        assert_eq!(cmp_per_weight(2, 2, 1, 1), Equal);
        assert_eq!(cmp_per_weight(3, 2, 1, 1), Greater);
    }

    #[test]
    fn first_available_takes_the_lowest_index() {
        let mut rng = SmallRng::seed_from_u64(0);
        let c = vec![
            Candidate {
                index: 2,
                load: 0,
                own: 0,
                weight: 1,
            },
            Candidate {
                index: 4,
                load: 0,
                own: 0,
                weight: 1,
            },
        ];
        assert_eq!(
            choose(
                Policy::FirstAvailable,
                &c,
                &mut RoundRobin::default(),
                1,
                &mut rng
            ),
            Some(2)
        );
    }

    #[test]
    fn random_reaches_every_candidate() {
        let mut rng = SmallRng::seed_from_u64(9);
        let c = cands(&[0, 100, 1000]);
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[choose(Policy::Random, &c, &mut RoundRobin::default(), 1, &mut rng).unwrap()] =
                true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
