//! The trace hash: a fingerprint of everything a run did, in order.
//!
//! Two runs of the same scenario with the same seed on the same commit must
//! produce the same hash; if they do not, something in the simulation (or in
//! the core) depends on state outside the seed. The hash is FNV-1a 64 over
//! fixed-width little-endian fields, written here rather than taken from
//! `std::hash`: `DefaultHasher`'s algorithm is unspecified and `RandomState`
//! is seeded from the OS on purpose, so neither may fingerprint a run.

use shoal_core::Instant;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// What a trace record is about; the discriminant is part of the hash, so
/// the values must never be reused for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Record {
    Arrival = 1,
    Acquired = 2,
    Refused = 3,
    ConnectDone = 4,
    Leave = 5,
    Reset = 6,
    // 7 (a check started) and 11 (a pool wake-up) were the single-node
    // simulator's: retired, never to be reused.
    CheckDone = 8,
    HealthChanged = 9,
    Fault = 10,
    /// The recovery bound after a backend came back: backend, epoch.
    RecoveryDeadline = 12,
    /// A datagram delivered: sender, receiver << 32 | length.
    Datagram = 13,
    /// A membership event seen by a node: node, kind << 32 | subject.
    Member = 14,
    /// A node starting, stopping, crashing, pausing or resuming.
    Lifecycle = 15,
    /// A sync request or answer applied, or a sync that failed.
    Sync = 16,
    /// A node asked the core to publish: node, reports the core published.
    Publish = 17,
    /// A network or fleet fault applied (partition, loss, burst).
    NetFault = 18,
    /// A client reached a node (after DNS): client, node.
    ClientAt = 19,
    /// An operator's drain command: node, applied << 32 | backend, then
    /// the mark's version and state.
    Drain = 20,
}

/// A running FNV-1a 64 hash of trace records.
#[derive(Debug, Clone)]
pub struct TraceHash {
    state: u64,
    records: u64,
}

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash::new()
    }
}

impl TraceHash {
    /// The hash of an empty trace.
    pub fn new() -> Self {
        TraceHash {
            state: FNV_OFFSET_BASIS,
            records: 0,
        }
    }

    /// Adds one record: when, what, and two ids (0 where unused).
    pub fn record(&mut self, at: Instant, what: Record, a: u64, b: u64) {
        self.write(&at.as_nanos().to_le_bytes());
        self.write(&[what as u8]);
        self.write(&a.to_le_bytes());
        self.write(&b.to_le_bytes());
        self.records += 1;
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.state
    }

    /// Records added so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published FNV-1a 64 test vectors, to prove this is the real thing.
    #[test]
    fn matches_the_reference_vectors() {
        let hash = |s: &[u8]| {
            let mut h = TraceHash::new();
            h.write(s);
            h.value()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn order_and_content_change_the_hash() {
        let t = Instant::from_millis(1);
        let mut a = TraceHash::new();
        a.record(t, Record::Arrival, 1, 0);
        a.record(t, Record::Leave, 1, 0);
        let mut b = TraceHash::new();
        b.record(t, Record::Leave, 1, 0);
        b.record(t, Record::Arrival, 1, 0);
        assert_ne!(a.value(), b.value());
        let mut c = TraceHash::new();
        c.record(t, Record::Arrival, 1, 0);
        c.record(t, Record::Leave, 2, 0);
        assert_ne!(a.value(), c.value());
        assert_eq!(a.records(), 2);
    }
}
