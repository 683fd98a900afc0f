//! Load reports: what each node tells the fleet about its backends.
//!
//! A node publishes `{origin, epoch, seq, [(backend key, healthy, active)]}`
//! every report interval and at once on a health flip. A report larger than
//! one packet is split into shards of at most [`ENTRIES_PER_SHARD_MAX`]
//! entries; each shard travels as one foca custom broadcast and is newer
//! than another of the same origin and shard index when its `(epoch, seq)`
//! is larger. foca keeps only the newest per origin and shard in its
//! dissemination backlog ([`ReportKey`]'s `Invalidates`).
//!
//! Backends are matched across nodes by [`BackendKey`], a stable 64-bit
//! hash of the listener name and the backend address as configured, so
//! nodes need not list backends in the same order, and a report costs ~15
//! bytes per backend instead of the names. Two different pairs colliding
//! has a probability near 2^-64 per pair.

use crate::wire::{self, WireError};
use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::identity::NodeId;

/// Entries in one shard: with the worst-case varint sizes (9 + 1 + 5 bytes
/// an entry plus ~70 of header) a full shard stays under 700 bytes, which
/// leaves room for a SWIM header and member updates in a ~1150-byte packet.
pub const ENTRIES_PER_SHARD_MAX: usize = 40;

/// Shards in one report: bounds the report of one node to 40 × 256 =
/// 10,240 backends.
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
    /// The origin's own verdict from its checks.
    pub healthy: bool,
    /// The origin's exact count of open connections.
    pub active: u32,
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
}

impl ReportShard {
    /// The `(epoch, seq)` that orders shards of one origin.
    pub fn version(&self) -> (u64, u64) {
        (self.epoch, self.seq)
    }
}

/// Splits `entries` into shards of one report. At least one shard is made
/// (an empty report still says "alive, nothing open").
///
/// # Panics
/// If `entries` would need more than [`SHARDS_MAX`] shards (configuration
/// loading bounds the number of backends first).
pub fn shard(
    origin: SocketAddr,
    epoch: u64,
    seq: u64,
    entries: &[ReportEntry],
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
        })
        .collect()
}

/// What foca keeps in its broadcast backlog for a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportKey {
    origin: SocketAddr,
    shard: u16,
    version: (u64, u64),
}

impl ReportKey {
    fn of(s: &ReportShard) -> Self {
        ReportKey {
            origin: s.origin,
            shard: s.shard,
            version: s.version(),
        }
    }
}

impl Invalidates for ReportKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.origin == other.origin && self.shard == other.shard && self.version >= other.version
    }
}

/// Newest version seen per origin and shard, and shards accepted but not
/// yet taken by the cluster. Shared between the cluster and foca's
/// broadcast handler (foca offers no getter for its handler).
#[derive(Debug)]
pub(crate) struct Inbox {
    self_addr: SocketAddr,
    latest: BTreeMap<(SocketAddr, u16), (u64, u64)>,
    accepted: Vec<ReportShard>,
    rejected: u64,
}

impl Inbox {
    /// Accepts `s` if it is newer than anything seen from its origin and
    /// shard. Versions are kept after an origin goes down, so a stale shard
    /// still travelling cannot resurrect a dead node's counts.
    pub(crate) fn offer(&mut self, s: ReportShard) -> bool {
        if s.origin == self.self_addr {
            return false;
        }
        let slot = (s.origin, s.shard);
        if self.latest.get(&slot).is_some_and(|v| *v >= s.version()) {
            self.rejected += 1;
            return false;
        }
        self.latest.insert(slot, s.version());
        self.accepted.push(s);
        true
    }

    pub(crate) fn take(&mut self) -> Vec<ReportShard> {
        std::mem::take(&mut self.accepted)
    }

    /// Forgets versions of origins not in `keep`, bounding the map.
    pub(crate) fn retain_origins(&mut self, keep: impl Fn(&SocketAddr) -> bool) {
        self.latest.retain(|(o, _), _| keep(o));
    }
}

/// A shared handle on the inbox.
#[derive(Debug, Clone)]
pub(crate) struct SharedInbox(Arc<Mutex<Inbox>>);

impl SharedInbox {
    pub(crate) fn new(self_addr: SocketAddr) -> Self {
        SharedInbox(Arc::new(Mutex::new(Inbox {
            self_addr,
            latest: BTreeMap::new(),
            accepted: Vec::new(),
            rejected: 0,
        })))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Inbox methods cannot panic half-way, so a poisoned lock is sound.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// foca's broadcast handler for report shards.
#[derive(Debug)]
pub struct ReportHandler {
    inbox: SharedInbox,
}

impl ReportHandler {
    pub(crate) fn new(inbox: SharedInbox) -> Self {
        ReportHandler { inbox }
    }
}

impl BroadcastHandler<NodeId> for ReportHandler {
    type Key = ReportKey;
    type Error = WireError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<ReportKey>, WireError> {
        let shard = wire::decode_report(data)?;
        let key = ReportKey::of(&shard);
        let mut inbox = self.inbox.lock();
        if shard.origin == inbox.self_addr {
            // Our own shard: disseminate it when we add it, never when it
            // comes back to us.
            return Ok(sender.is_none().then_some(key));
        }
        Ok(inbox.offer(shard).then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> ReportEntry {
        ReportEntry {
            key: BackendKey(u64::MAX - i),
            healthy: i.is_multiple_of(2),
            active: u32::MAX - i as u32,
        }
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
    fn a_full_shard_of_worst_case_entries_fits_its_byte_limit() {
        let entries: Vec<_> = (0..ENTRIES_PER_SHARD_MAX as u64).map(entry).collect();
        let origin = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        let s = shard(origin, u64::MAX, u64::MAX, &entries);
        assert_eq!(s.len(), 1);
        let bytes = wire::encode_report(&s[0]).unwrap();
        assert!(bytes.len() <= 700, "{} bytes", bytes.len());
        assert_eq!(wire::decode_report(&bytes).unwrap(), s[0]);
    }

    #[test]
    fn reports_are_split_into_numbered_shards() {
        let entries: Vec<_> = (0..95).map(entry).collect();
        let s = shard("127.0.0.1:1".parse().unwrap(), 1, 7, &entries);
        assert_eq!(s.len(), 3);
        assert!(
            s.iter()
                .enumerate()
                .all(|(i, x)| x.shard == i as u16 && x.shards == 3 && x.seq == 7)
        );
        assert_eq!(s.iter().map(|x| x.entries.len()).sum::<usize>(), 95);
        assert_eq!(shard("127.0.0.1:1".parse().unwrap(), 1, 1, &[]).len(), 1);
    }

    #[test]
    fn only_newer_shards_are_accepted_per_origin_and_shard() {
        let me: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let inbox = SharedInbox::new(me);
        let mk = |origin, epoch, seq, shard| ReportShard {
            origin,
            epoch,
            seq,
            shard,
            shards: 2,
            entries: vec![],
        };
        let mut i = inbox.lock();
        assert!(i.offer(mk(peer, 1, 5, 0)));
        assert!(!i.offer(mk(peer, 1, 5, 0)), "duplicate");
        assert!(!i.offer(mk(peer, 1, 4, 0)), "older seq");
        assert!(i.offer(mk(peer, 1, 4, 1)), "other shard");
        assert!(i.offer(mk(peer, 2, 0, 0)), "new epoch wins over any seq");
        assert!(!i.offer(mk(peer, 1, 99, 0)), "old epoch loses");
        assert!(!i.offer(mk(me, 9, 9, 0)), "our own");
        assert_eq!(i.take().len(), 3);
        assert!(i.take().is_empty());
    }

    #[test]
    fn newer_keys_invalidate_older_ones_of_the_same_slot_only() {
        let a = |origin: &str, shard, seq| ReportKey {
            origin: origin.parse().unwrap(),
            shard,
            version: (1, seq),
        };
        assert!(a("127.0.0.1:1", 0, 2).invalidates(&a("127.0.0.1:1", 0, 1)));
        assert!(!a("127.0.0.1:1", 0, 1).invalidates(&a("127.0.0.1:1", 0, 2)));
        assert!(!a("127.0.0.1:1", 1, 2).invalidates(&a("127.0.0.1:1", 0, 1)));
        assert!(!a("127.0.0.1:2", 0, 2).invalidates(&a("127.0.0.1:1", 0, 1)));
    }
}
