//! Who actively checks a backend: `k` nodes of the live membership, chosen
//! by rendezvous (highest random weight) hashing of the backend's key and
//! each node's cluster address (decision 49).
//!
//! The choice is a pure function of `(key, live addresses, k)`: every node
//! that holds the same membership computes the same checkers, with no
//! message about it. When a checker leaves, only the backends it checked
//! move, each to the next node in its own hash order; when a node joins it
//! takes over about `k / N` of the backends. Nodes whose membership views
//! differ for a moment may disagree; the pool's hand-over rule and the
//! checker flag in each report entry (see [`crate::pool`]) cover that.
//!
//! The address, not the name, is hashed: it is unique among live members
//! (two processes of one name may briefly coexist, decision 47) and stays
//! the same when a node restarts, so a restart moves no backend.

use crate::cluster::report::BackendKey;
use std::net::SocketAddr;

/// Checkers per backend when the configuration says 0 or nothing: a
/// majority of three survives one checker that dies (two still agree on
/// a dead backend) and one whose own path to the backend is broken (it is
/// outvoted), where two checkers need both to agree.
pub const CHECKERS_DEFAULT: u32 = 3;

/// The configured `health.checkers`, with 0 meaning the default.
pub fn configured(checkers: u32) -> u32 {
    if checkers == 0 {
        CHECKERS_DEFAULT
    } else {
        checkers
    }
}

/// How many nodes check each backend in a fleet of `live_nodes` (this node
/// included): `k`, or everyone when the fleet is smaller.
pub fn effective(checkers: u32, live_nodes: u32) -> u32 {
    configured(checkers).min(live_nodes.max(1))
}

/// The stable hash of a node's address that [`weight`] combines with a
/// backend key: FNV-1a over the IP's octets and the port, then mixed.
pub fn node_hash(addr: SocketAddr) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    let h = ip
        .iter()
        .chain(addr.port().to_be_bytes().iter())
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    mix(h)
}

/// The rendezvous weight of `(key, node)`; larger checks first.
pub fn weight(key: BackendKey, node_hash: u64) -> u64 {
    mix(key.0 ^ node_hash.rotate_left(29))
}

/// splitmix64's finaliser: FNV-1a alone spreads nearby inputs (ports that
/// differ by one) poorly over the high bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether the node `me` is one of the `k` checkers of `key` among itself
/// and `others` (hashes from [`node_hash`], each with its address to break
/// ties). O(others), no allocation.
pub fn is_checker(
    key: BackendKey,
    me: (SocketAddr, u64),
    others: &[(SocketAddr, u64)],
    k: u32,
) -> bool {
    let mine = (weight(key, me.1), me.0);
    let above = others
        .iter()
        .filter(|(addr, h)| *addr != me.0 && (weight(key, *h), *addr) > mine)
        .count();
    above < k as usize
}

/// The `k` checkers of `key` among `nodes`, in hash order (first checks
/// first). For `/status` and the simulator; a node asks [`is_checker`].
pub fn checkers_of(key: BackendKey, nodes: &[(SocketAddr, u64)], k: u32) -> Vec<SocketAddr> {
    let mut ranked: Vec<(u64, SocketAddr)> =
        nodes.iter().map(|(a, h)| (weight(key, *h), *a)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    ranked.dedup_by_key(|r| r.1);
    ranked.into_iter().take(k as usize).map(|r| r.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u16) -> Vec<(SocketAddr, u64)> {
        (0..n)
            .map(|i| {
                let a = SocketAddr::from(([127, 0, 0, 1], 7000 + i));
                (a, node_hash(a))
            })
            .collect()
    }

    #[test]
    fn exactly_k_nodes_think_they_check_each_backend() {
        for n in [1u16, 2, 3, 10, 100] {
            let all = nodes(n);
            for k in [1, 2, 3, 5] {
                for key in (0..200u64).map(|i| BackendKey::new("l", &i.to_string())) {
                    let chosen: Vec<SocketAddr> = all
                        .iter()
                        .filter(|me| is_checker(key, **me, &all, k))
                        .map(|me| me.0)
                        .collect();
                    assert_eq!(chosen.len(), (k as usize).min(n as usize), "n {n} k {k}");
                    let mut top = checkers_of(key, &all, k);
                    top.sort();
                    assert_eq!(chosen, top);
                }
            }
        }
    }

    #[test]
    fn a_departure_moves_only_the_backends_it_checked() {
        let all = nodes(10);
        let gone = all[4].0;
        let rest: Vec<_> = all.iter().copied().filter(|n| n.0 != gone).collect();
        let (mut moved, mut kept) = (0, 0);
        for key in (0..1000u64).map(|i| BackendKey::new("l", &i.to_string())) {
            let before = checkers_of(key, &all, 2);
            let after = checkers_of(key, &rest, 2);
            if before.contains(&gone) {
                moved += 1;
                // The survivor stays; the next in hash order joins it.
                let survivor = before.iter().find(|a| **a != gone).unwrap();
                assert!(after.contains(survivor));
                assert_eq!(after, checkers_of(key, &rest, 2));
            } else {
                kept += 1;
                assert_eq!(before, after);
            }
        }
        // 2 of 10 nodes check each backend: about a fifth move.
        assert!((120..=280).contains(&moved), "{moved} moved, {kept} kept");
    }

    #[test]
    fn load_spreads_evenly_over_the_nodes() {
        let all = nodes(10);
        let mut per_node = vec![0u32; all.len()];
        for key in (0..3000u64).map(|i| BackendKey::new("web", &format!("10.0.0.1:{i}"))) {
            for (i, me) in all.iter().enumerate() {
                per_node[i] += u32::from(is_checker(key, *me, &all, 2));
            }
        }
        // 600 each on average.
        assert!(
            per_node.iter().all(|c| (480..=720).contains(c)),
            "{per_node:?}"
        );
    }

    #[test]
    fn zero_means_the_default_and_small_fleets_all_check() {
        assert_eq!(configured(0), CHECKERS_DEFAULT);
        assert_eq!(effective(0, 10), CHECKERS_DEFAULT);
        assert_eq!(effective(2, 10), 2);
        assert_eq!(effective(5, 3), 3);
        assert_eq!(effective(2, 0), 1);
    }
}
