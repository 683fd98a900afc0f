//! The fleet's own DNS answer (decision 51): which client-facing
//! addresses a node gives for the fleet's name.
//!
//! Every node advertises the IP addresses at which it takes clients in
//! shard 0 of its load report ([`crate::cluster::report::ReportShard::clients`]);
//! the answer is this node's own addresses while it takes clients, plus
//! those of every member it holds alive whose shard 0 it holds (within
//! the report TTL). So a member leaves the answer when it leaves the
//! fleet (a drain-node or a shutdown announces the leave), when SWIM
//! declares it down, or when its reports stop arriving for `report_ttl`
//! (a `kill -9`: usually the first of the two); a member in its warm
//! start advertises nothing yet. Suspects stay in: foca does not tell
//! suspicion apart from a lost probe, and a DNS answer that shrinks on
//! every lost probe would flap. A node cut off from the rest answers
//! with its side's view; a node that has left answers nothing (its view
//! goes stale).
//!
//! A node with nothing to answer (it left, drains, or knows no node that
//! takes clients, e.g. early in its warm start) replies REFUSED
//! ([`NameReply::Refused`]), never SERVFAIL: a resolver forwarding to
//! every server at once (dnsmasq `--all-servers`) passes on the first
//! SERVFAIL it gets but holds a REFUSED until another server answers, and
//! resolvers that ask one server at a time (dnsmasq without it, the glibc
//! stub) move on to the next after either (decision 51, amended
//! 2026-12-02).
//!
//! The answer is a set, sorted and without duplicates, so equal views
//! give equal answers; [`ClientAnswer::pick`] chooses what one response
//! carries (at most a bound, in random order, with the caller's RNG), so
//! clients that take the first address spread over the fleet.

use crate::cluster::report::CLIENT_ADDRS_MAX;
use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The addresses a node answers for the fleet's name, by family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAnswer {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

/// How a node's DNS server replies to a query for the fleet's name
/// itself, of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameReply {
    /// Authoritatively, with the answer's records of the asked type
    /// (NOERROR with none when it holds none of that type: NODATA).
    Records,
    /// REFUSED: this node cannot speak for the fleet (its answer is
    /// empty), so the resolver takes another server's word. Not SERVFAIL,
    /// which a resolver asking every server at once passes on as the
    /// first reply; not NODATA, which it would cache as "no address".
    Refused,
}

impl ClientAnswer {
    /// Whether there is no address of either family.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// How the server replies to a query for the name with this answer.
    pub fn reply(&self) -> NameReply {
        if self.is_empty() {
            NameReply::Refused
        } else {
            NameReply::Records
        }
    }

    /// The answer from this node's `own` addresses (empty unless it takes
    /// clients now) and, for each live member, the addresses in its newest
    /// shard 0 (`None`: no shard 0 held). Each node counts with at most
    /// [`CLIENT_ADDRS_MAX`] addresses.
    pub fn from_view<'a>(
        own: &[IpAddr],
        members: impl IntoIterator<Item = Option<&'a [IpAddr]>>,
    ) -> ClientAnswer {
        let mut all = BTreeSet::new();
        let mut add = |addrs: &[IpAddr]| {
            all.extend(addrs.iter().take(CLIENT_ADDRS_MAX).copied());
        };
        add(own);
        for m in members.into_iter().flatten() {
            add(m);
        }
        let mut answer = ClientAnswer::default();
        for ip in all {
            match ip {
                IpAddr::V4(v4) => answer.v4.push(v4),
                IpAddr::V6(v6) => answer.v6.push(v6),
            }
        }
        answer
    }

    /// At most `max` of `addrs`, in random order: what one response
    /// carries.
    pub fn pick<T: Copy>(addrs: &[T], max: usize, rng: &mut impl Rng) -> Vec<T> {
        let mut out = addrs.to_vec();
        out.shuffle(rng);
        out.truncate(max);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_answer_is_own_and_live_members_addresses_split_by_family() {
        let own = ips(&["10.0.0.1", "fd00::1"]);
        let b = ips(&["10.0.0.2"]);
        let c = ips(&["10.0.0.3", "10.0.0.2"]);
        let a = ClientAnswer::from_view(&own, [Some(&b[..]), Some(&c[..])]);
        assert_eq!(
            a.v4,
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(|s| s.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(a.v6, ["fd00::1".parse::<Ipv6Addr>().unwrap()]);
        assert!(!a.is_empty());
    }

    #[test]
    fn members_without_a_held_shard_0_and_a_node_not_serving_are_left_out() {
        let b = ips(&["10.0.0.2"]);
        // This node warms or left (own empty); one member's report
        // expired (None); one advertises nothing (warming).
        let a = ClientAnswer::from_view(&[], [None, Some(&b[..]), Some(&[][..])]);
        assert_eq!(a.v4, ["10.0.0.2".parse::<Ipv4Addr>().unwrap()]);
        assert!(a.v6.is_empty());
        assert!(ClientAnswer::from_view(&[], [None, Some(&[][..])]).is_empty());
    }

    #[test]
    fn an_empty_answer_is_refused_and_any_address_is_answered() {
        assert_eq!(ClientAnswer::default().reply(), NameReply::Refused);
        let v6 = ips(&["fd00::1"]);
        // One address of either family: the name exists here, so a query
        // for the other family is NODATA, not a refusal.
        assert_eq!(
            ClientAnswer::from_view(&[], [Some(&v6[..])]).reply(),
            NameReply::Records
        );
    }

    #[test]
    fn a_member_counts_with_at_most_the_advertised_bound() {
        let many: Vec<IpAddr> = (1..=10).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        let a = ClientAnswer::from_view(&[], [Some(&many[..])]);
        assert_eq!(a.v4.len(), CLIENT_ADDRS_MAX);
        let a = ClientAnswer::from_view(&many, []);
        assert_eq!(a.v4.len(), CLIENT_ADDRS_MAX);
    }

    #[test]
    fn a_pick_is_a_bounded_random_order_of_the_set() {
        let set: Vec<u32> = (0..20).collect();
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        let p = ClientAnswer::pick(&set, 8, &mut rng);
        assert_eq!(p.len(), 8);
        assert!(p.iter().all(|x| set.contains(x)));
        let mut firsts = BTreeSet::new();
        for _ in 0..200 {
            let all = ClientAnswer::pick(&set, 100, &mut rng);
            let mut sorted = all.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, set, "every address, once");
            firsts.insert(all[0]);
        }
        assert!(firsts.len() > 10, "the first address varies: {firsts:?}");
    }
}
