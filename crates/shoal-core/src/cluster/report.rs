//! Load reports: what each node tells the fleet about its backends.
//!
//! A node publishes `{origin, epoch, seq, [(backend key, healthy, active)]}`
//! when its entries change (and refreshes unchanged ones), and at once on a
//! health flip. A report larger than one packet is split into shards of at
//! most [`ENTRIES_PER_SHARD_MAX`] entries; a shard is newer than another
//! of the same origin and shard index when its `(epoch, seq)` is larger.
//! The origin sends its shards itself, packed into report datagrams, to
//! every live member (one hop, no relays; decision 27); the receiver keeps
//! the newest version per origin and shard and accepts only newer ones, so
//! duplicates, reordering and resends are harmless.
//!
//! Backends are matched across nodes by [`BackendKey`], a stable 64-bit
//! hash of the listener name and the backend address as configured, so
//! nodes need not list backends in the same order, and a report costs ~15
//! bytes per backend instead of the names. Two different pairs colliding
//! has a probability near 2^-64 per pair.

pub use crate::budget::Claim;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Entries in one shard: with the worst-case varint sizes (9 + 1 + 5 + 1
/// bytes an entry, 11 more with a drain mark, 11 more with a budget claim,
/// 5 more for the connections opened,
/// plus ~70 of header, and shard 0's client addresses) a full shard stays
/// near 1050 bytes, so one always fits a report datagram (1100), and small
/// shards share one.
pub const ENTRIES_PER_SHARD_MAX: usize = 22;

/// Client-facing IP addresses a node advertises in its report, at most
/// (decision 51): four IPv6 addresses add 69 bytes to shard 0, which
/// keeps a full shard 0 of the widest entries inside one report datagram.
pub const CLIENT_ADDRS_MAX: usize = 4;

/// Shards in one report: bounds the report of one node to 22 × 256 =
/// 5,632 backends.
pub const SHARDS_MAX: usize = 256;

/// A backend as the fleet knows it: FNV-1a 64 of `listener \xff backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendKey(pub u64);

impl BackendKey {
    /// The key of `backend` (its configured address) in `listener`.
    pub fn new(listener: &str, backend: &str) -> Self {
        BackendKey(fnv1a64(
            listener.bytes().chain([0xff]).chain(backend.bytes()),
        ))
    }
}

fn fnv1a64(bytes: impl Iterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// One backend in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEntry {
    pub key: BackendKey,
    /// The origin's own verdict (its checks and failed client connects).
    pub healthy: bool,
    /// The origin's exact count of open connections.
    pub active: u32,
    /// The newest drain command for the backend the origin knows of, if
    /// any: fleet state rides on the reports, so every member that hears
    /// from the origin learns it (see [`DrainMark`]).
    pub drain: Option<DrainMark>,
    /// The connections the origin may hold to the backend under a
    /// fleet-wide budget (its claim and the newest raise clock it has
    /// seen, see [`crate::budget`]); `None` when the origin has no budget
    /// for it.
    pub claim: Option<Claim>,
    /// Connections the origin opened to the backend in its last report
    /// interval: with the others', the share of the fleet's new clients
    /// it receives (decision 58).
    pub opened: u32,
    /// Whether `healthy` is a checker's vote: the origin actively checks
    /// the backend and has finished a check since it started to
    /// (decision 49). Only votes count towards the fleet's majority; the
    /// flag travels with the entry, so receivers need not agree with the
    /// origin on the membership.
    pub checker: bool,
}

impl ReportEntry {
    /// A checker's entry with no drain mark (the cluster fills it in when
    /// it publishes); see [`ReportEntry::with_checker`].
    pub fn new(key: BackendKey, healthy: bool, active: u32) -> Self {
        ReportEntry {
            key,
            healthy,
            active,
            drain: None,
            claim: None,
            opened: 0,
            checker: true,
        }
    }

    /// What the entry holds against a fleet-wide budget: its claim, or its
    /// count when it claims none (an origin without the budget configured
    /// still holds what it has open).
    pub fn claimed(&self) -> u64 {
        u64::from(
            self.claim
                .map_or(self.active, |c| c.connections)
                .max(self.active),
        )
    }

    /// The entry with its checker flag set to `checker`.
    pub fn with_checker(mut self, checker: bool) -> Self {
        self.checker = checker;
        self
    }
}

/// An operator's drain (or undrain) of one backend, fleet-wide. The newer
/// `version` wins, on every node, whoever issued it and in whatever order
/// the marks arrive; so a later command wins and a node that restarts
/// (holding none) or was cut off (holding an older one) takes the newest
/// from the first report or sync that carries it, and cannot bring an old
/// one back.
///
/// `version` is a hybrid logical clock: the issuing node's wall clock in
/// milliseconds, or one more than the newest version it has seen, if
/// that is larger. Two commands for one backend in the same millisecond
/// on two nodes tie; then the drain wins (the cautious choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainMark {
    pub version: u64,
    pub draining: bool,
}

impl DrainMark {
    /// Whether `self` replaces `held`.
    pub fn supersedes(&self, held: Option<&DrainMark>) -> bool {
        match held {
            None => true,
            Some(h) => (self.version, self.draining) > (h.version, h.draining),
        }
    }
}

/// One shard of a node's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportShard {
    /// The origin's cluster address.
    pub origin: SocketAddr,
    /// The origin's start epoch.
    pub epoch: u64,
    /// The origin's report number within the epoch.
    pub seq: u64,
    pub shard: u16,
    pub shards: u16,
    pub entries: Vec<ReportEntry>,
    /// Shard 0 only (empty in every other shard): the IP addresses at
    /// which the origin takes clients now, at most [`CLIENT_ADDRS_MAX`];
    /// empty while it does not (warm start) or advertises none. The
    /// fleet's DNS answer is made of these (decision 51).
    pub clients: Vec<IpAddr>,
}

impl ReportShard {
    /// The `(epoch, seq)` that orders shards of one origin.
    pub fn version(&self) -> (u64, u64) {
        (self.epoch, self.seq)
    }
}

/// Splits `entries` into shards of one report, `clients` in shard 0. At
/// least one shard is made (an empty report still says "alive, nothing
/// open").
///
/// # Panics
/// If `entries` would need more than [`SHARDS_MAX`] shards (configuration
/// loading bounds the number of backends first).
pub fn shard(
    origin: SocketAddr,
    epoch: u64,
    seq: u64,
    entries: &[ReportEntry],
    clients: &[IpAddr],
) -> Vec<ReportShard> {
    let chunks: Vec<&[ReportEntry]> = if entries.is_empty() {
        vec![&[]]
    } else {
        entries.chunks(ENTRIES_PER_SHARD_MAX).collect()
    };
    assert!(
        chunks.len() <= SHARDS_MAX,
        "{} backends exceed the report limit",
        entries.len()
    );
    let shards = chunks.len() as u16;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| ReportShard {
            origin,
            epoch,
            seq,
            shard: i as u16,
            shards,
            entries: c.to_vec(),
            clients: if i == 0 { clients.to_vec() } else { Vec::new() },
        })
        .collect()
}

/// Newest version seen per origin and shard: only a newer shard is
/// accepted.
#[derive(Debug)]
pub(crate) struct Inbox {
    self_addr: SocketAddr,
    latest: BTreeMap<(SocketAddr, u16), (u64, u64)>,
}

impl Inbox {
    pub(crate) fn new(self_addr: SocketAddr) -> Self {
        Inbox {
            self_addr,
            latest: BTreeMap::new(),
        }
    }

    /// Whether `s` is newer than anything seen from its origin and shard
    /// (and not our own); if so it is remembered as the newest. Versions
    /// are kept after an origin goes down, so a stale shard still in
    /// flight cannot resurrect a dead node's counts.
    pub(crate) fn offer(&mut self, s: &ReportShard) -> bool {
        if s.origin == self.self_addr {
            return false;
        }
        let slot = (s.origin, s.shard);
        if self.latest.get(&slot).is_some_and(|v| *v >= s.version()) {
            return false;
        }
        self.latest.insert(slot, s.version());
        true
    }

    /// Forgets versions of origins not in `keep`, bounding the map.
    pub(crate) fn retain_origins(&mut self, keep: impl Fn(&SocketAddr) -> bool) {
        self.latest.retain(|(o, _), _| keep(o));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> ReportEntry {
        ReportEntry::new(
            BackendKey(u64::MAX - i),
            i.is_multiple_of(2),
            u32::MAX - i as u32,
        )
    }

    #[test]
    fn the_newer_drain_mark_wins_and_a_tie_drains() {
        let m = |version, draining| DrainMark { version, draining };
        assert!(m(1, true).supersedes(None));
        assert!(m(5, false).supersedes(Some(&m(4, true))));
        assert!(!m(4, true).supersedes(Some(&m(5, false))));
        assert!(!m(5, false).supersedes(Some(&m(5, false))), "the same mark");
        assert!(m(5, true).supersedes(Some(&m(5, false))), "a tie drains");
        assert!(!m(5, false).supersedes(Some(&m(5, true))));
    }

    #[test]
    fn keys_are_stable_and_distinguish_listener_and_backend() {
        let k = BackendKey::new("web", "127.0.0.1:5001");
        assert_eq!(k, BackendKey::new("web", "127.0.0.1:5001"));
        assert_ne!(k, BackendKey::new("api", "127.0.0.1:5001"));
        assert_ne!(k, BackendKey::new("web", "127.0.0.1:5002"));
        assert_ne!(BackendKey::new("ab", "c"), BackendKey::new("a", "bc"));
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64("".bytes()), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a".bytes()), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn reports_are_split_into_numbered_shards() {
        let entries: Vec<_> = (0..64).map(entry).collect();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let s = shard("127.0.0.1:1".parse().unwrap(), 1, 7, &entries, &[ip]);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].clients, [ip]);
        assert!(s[1..].iter().all(|x| x.clients.is_empty()), "shard 0 only");
        assert!(
            s.iter()
                .enumerate()
                .all(|(i, x)| x.shard == i as u16 && x.shards == 3 && x.seq == 7)
        );
        assert_eq!(s.iter().map(|x| x.entries.len()).sum::<usize>(), 64);
        let empty = shard("127.0.0.1:1".parse().unwrap(), 1, 1, &[], &[]);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].clients.is_empty());
    }

    #[test]
    fn only_newer_shards_are_accepted_per_origin_and_shard() {
        let me: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut i = Inbox::new(me);
        let mk = |origin, epoch, seq, shard| ReportShard {
            origin,
            epoch,
            seq,
            shard,
            shards: 2,
            entries: vec![],
            clients: vec![],
        };
        assert!(i.offer(&mk(peer, 1, 5, 0)));
        assert!(!i.offer(&mk(peer, 1, 5, 0)), "duplicate");
        assert!(!i.offer(&mk(peer, 1, 4, 0)), "older seq");
        assert!(i.offer(&mk(peer, 1, 4, 1)), "other shard");
        assert!(i.offer(&mk(peer, 2, 0, 0)), "new epoch wins over any seq");
        assert!(!i.offer(&mk(peer, 1, 99, 0)), "old epoch loses");
        assert!(!i.offer(&mk(me, 9, 9, 0)), "our own");
        i.retain_origins(|o| *o != peer);
        assert!(i.offer(&mk(peer, 1, 1, 0)), "forgotten origin");
    }
}
