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
    /// Power of two choices over the fleet's connection counts (this
    /// node's exact count plus every peer's last report): pick two
    /// candidates at random, take the one with fewer connections, break
    /// ties at random. Never a global argmin: with gossiped (stale) counts
    /// every node would herd onto the same backend.
    #[default]
    LeastConn,
    /// Power of two choices over this node's own counts only, ignoring
    /// the fleet (what a fleet of independent balancers does).
    LocalLeastConn,
    /// Each candidate in turn, in configuration order, skipping those that
    /// are down or full.
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
}

/// Chooses among `candidates` (sorted by index, none excluded yet).
/// `rr_cursor` is the round-robin position, kept by the caller between calls.
/// Returns the chosen backend's index, `None` only if `candidates` is empty.
pub fn choose<R: Rng + ?Sized>(
    policy: Policy,
    candidates: &[Candidate],
    rr_cursor: &mut usize,
    rng: &mut R,
) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let chosen = match policy {
        Policy::LeastConn | Policy::LocalLeastConn => power_of_two(candidates, rng),
        Policy::Random => candidates[rng.random_range(0..candidates.len())],
        Policy::FirstAvailable => candidates[0],
        Policy::RoundRobin => {
            // The first candidate at or after the cursor, wrapping around.
            let c = candidates
                .iter()
                .find(|c| c.index >= *rr_cursor)
                .unwrap_or(&candidates[0]);
            *rr_cursor = c.index + 1;
            *c
        }
    };
    Some(chosen.index)
}

fn power_of_two<R: Rng + ?Sized>(candidates: &[Candidate], rng: &mut R) -> Candidate {
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

/// The one of `a` and `b` with the smaller load, ties at random: the
/// comparison of power of two choices, shared by the scan above and the
/// pool's sampled choice.
pub(crate) fn lesser<R: Rng + ?Sized>(a: Candidate, b: Candidate, rng: &mut R) -> Candidate {
    match a.load.cmp(&b.load) {
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
            .map(|(index, &load)| Candidate { index, load })
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
            assert_eq!(choose(p, &[], &mut 0, &mut rng), None);
        }
    }

    #[test]
    fn least_conn_never_picks_the_strictly_most_loaded_of_three() {
        // P2C picks the lesser of two distinct candidates, so the unique
        // maximum can never win; the unique minimum wins 2/3 of the time.
        let mut rng = SmallRng::seed_from_u64(7);
        let c = cands(&[5, 0, 9]);
        let mut wins = [0u32; 3];
        for _ in 0..3000 {
            wins[choose(Policy::LeastConn, &c, &mut 0, &mut rng).unwrap()] += 1;
        }
        assert_eq!(wins[2], 0);
        assert!((1800..2200).contains(&wins[1]), "{wins:?}");
    }

    #[test]
    fn least_conn_ties_are_broken_at_random_and_seeded() {
        let c = cands(&[3, 3]);
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..64)
                .map(|_| choose(Policy::LeastConn, &c, &mut 0, &mut rng).unwrap())
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

    #[test]
    fn round_robin_cycles_and_skips_missing_candidates() {
        let mut rng = SmallRng::seed_from_u64(0);
        let all = cands(&[0, 0, 0]);
        let mut cursor = 0;
        let picks: Vec<_> = (0..6)
            .map(|_| choose(Policy::RoundRobin, &all, &mut cursor, &mut rng).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        // Backend 1 gone (down or full): the cycle continues over 0 and 2.
        let some = vec![all[0], all[2]];
        let picks: Vec<_> = (0..4)
            .map(|_| choose(Policy::RoundRobin, &some, &mut cursor, &mut rng).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 2, 0, 2]);
    }

    #[test]
    fn first_available_takes_the_lowest_index() {
        let mut rng = SmallRng::seed_from_u64(0);
        let c = vec![
            Candidate { index: 2, load: 0 },
            Candidate { index: 4, load: 0 },
        ];
        assert_eq!(
            choose(Policy::FirstAvailable, &c, &mut 0, &mut rng),
            Some(2)
        );
    }

    #[test]
    fn random_reaches_every_candidate() {
        let mut rng = SmallRng::seed_from_u64(9);
        let c = cands(&[0, 100, 1000]);
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[choose(Policy::Random, &c, &mut 0, &mut rng).unwrap()] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
