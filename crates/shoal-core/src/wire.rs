//! The wire format: every byte shoal nodes send each other is encoded and
//! decoded here, and nowhere else.
//!
//! serde + bincode 2.x (standard configuration: little endian, variable
//! length integers). bincode is unmaintained (3.0.0 is a compile-error
//! tombstone), so it is pinned to 2.0.x and kept behind this module; a
//! bincode-compatible successor (`wincode`) can replace it here alone.
//!
//! Every message starts with [`PROTOCOL_VERSION`]; a node refuses other
//! versions with an error naming both. Every decode checks the input length
//! against a named maximum *before* decoding and gives bincode the same
//! limit, so a hostile length prefix cannot make a node allocate.
//!
//! | message | layout | max |
//! |---|---|---|
//! | SWIM packet (foca; QUIC datagram) | `version, bincode(Header)`, then foca's member updates | [`PACKET_BYTES_MAX`] |
//! | SWIM member (foca) | `bincode(Member)` | inside a packet |
//! | load reports (QUIC datagram) | `version, KIND_REPORTS, bincode(Vec<ReportShard>)` | [`PACKET_BYTES_MAX`], [`REPORT_SHARDS_PER_DATAGRAM_MAX`] shards |
//! | full-state sync (QUIC stream) | `version, KIND_SYNC, bincode(SyncState)` | [`SYNC_BYTES_MAX`] |
//!
//! Kinds: 1 was a single report shard inside a foca custom broadcast
//! (retired with decision 27; never reused), 2 is [`KIND_SYNC`], 3
//! [`KIND_REPORTS`].
//!
//! # Telling datagrams apart
//! SWIM packets and report datagrams share the QUIC datagram channel.
//! After the version byte a SWIM packet holds `bincode(Header)`, whose
//! first field is the sender's `NodeId`, whose first field is a
//! `SocketAddr`: serde writes it as an enum variant index, `0` (V4) or `1`
//! (V6), so the second byte of every SWIM packet is 0 or 1 (pinned by a
//! test). The second byte of a report datagram is [`KIND_REPORTS`] (3);
//! [`is_reports`] dispatches on it alone, so a report datagram of a foreign
//! version is refused as a report, not as a SWIM packet.
//!
//! A report datagram is built by [`encode_reports`] as `count` (bincode's
//! variable-length integer) followed by `count` encoded shards, which is
//! byte for byte `bincode(Vec<ReportShard>)`; shards are packed greedily,
//! in order, so a publication of `k` shards takes as few datagrams as fit.
use crate::cluster::SyncState;
use crate::cluster::identity::NodeId;
use crate::cluster::report::{CLIENT_ADDRS_MAX, ENTRIES_PER_SHARD_MAX, ReportShard, SHARDS_MAX};
use bytes::{Buf, BufMut};
use foca::{Header, Member};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The protocol version every message starts with.
/// 2: report entries carry a drain mark (fleet state); version 1 nodes
/// and version 2 nodes refuse each other's messages.
/// 3: shard 0 of a report carries the origin's client-facing addresses
/// (`ReportShard::clients`, decision 51), and report entries carry a
/// budget claim (decision 48).
/// 4: report entries say whether their verdict is a checker's vote
/// (decision 49).
/// 5: a budget claim carries the newest raise clock its origin has seen
/// (decision 48, the rounds); report entries carry the connections opened
/// in the last interval (decision 58).
pub const PROTOCOL_VERSION: u8 = 5;
/// Largest SWIM packet a node accepts.
pub const PACKET_BYTES_MAX: usize = 1500;
/// Shards in one report datagram, at most (the smallest shard takes about
/// 12 bytes, so 1100 bytes never hold more than ~90).
pub const REPORT_SHARDS_PER_DATAGRAM_MAX: usize = 128;
/// Largest full-state sync message, request or answer: the one cap, used
/// by the core's codec, the transport's stream reads
/// (`request_bytes_max`) and the simulator. 4 MiB hold the full state of
/// 1000 nodes with 100 backends each (about 1.2 MiB) with room to spare.
pub const SYNC_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The kind byte of a full-state sync message.
pub const KIND_SYNC: u8 = 2;
/// The kind byte of a report datagram (see the module doc for why a SWIM
/// packet can never carry it in the same place).
pub const KIND_REPORTS: u8 = 3;

/// What went wrong encoding or decoding a message. Nothing is applied
/// when a decode fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what}: {len} bytes exceed the maximum of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: protocol version {found}, this node speaks {PROTOCOL_VERSION}")]
    Version { what: &'static str, found: u8 },
    #[error("{what}: message kind {found}, expected {expected}")]
    Kind {
        what: &'static str,
        found: u8,
        expected: u8,
    },
    #[error("{what}: empty or truncated")]
    Truncated { what: &'static str },
    #[error("{what}: cannot decode: {message}")]
    Decode { what: &'static str, message: String },
    #[error("{what}: cannot encode: {message}")]
    Encode { what: &'static str, message: String },
    #[error("{what}: needs {need} bytes, {room} left in the packet")]
    NoRoom {
        what: &'static str,
        need: usize,
        room: usize,
    },
}

fn config<const N: usize>() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<N>()
}

fn encode<T: Serialize, const N: usize>(
    what: &'static str,
    prefix: &[u8],
    value: &T,
) -> Result<Vec<u8>, WireError> {
    let mut out = prefix.to_vec();
    let body =
        bincode::serde::encode_to_vec(value, config::<N>()).map_err(|e| WireError::Encode {
            what,
            message: e.to_string(),
        })?;
    out.extend_from_slice(&body);
    if out.len() > N {
        return Err(WireError::TooLarge {
            what,
            len: out.len(),
            max: N,
        });
    }
    Ok(out)
}

/// Checks length, version and kind, and returns the body.
fn open<'a>(
    what: &'static str,
    data: &'a [u8],
    kind: Option<u8>,
    max: usize,
) -> Result<&'a [u8], WireError> {
    if data.len() > max {
        return Err(WireError::TooLarge {
            what,
            len: data.len(),
            max,
        });
    }
    let (&version, rest) = data.split_first().ok_or(WireError::Truncated { what })?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::Version {
            what,
            found: version,
        });
    }
    match kind {
        None => Ok(rest),
        Some(expected) => {
            let (&found, rest) = rest.split_first().ok_or(WireError::Truncated { what })?;
            if found != expected {
                return Err(WireError::Kind {
                    what,
                    found,
                    expected,
                });
            }
            Ok(rest)
        }
    }
}

fn decode<T: DeserializeOwned, const N: usize>(
    what: &'static str,
    body: &[u8],
) -> Result<(T, usize), WireError> {
    bincode::serde::decode_from_slice(body, config::<N>()).map_err(|e| WireError::Decode {
        what,
        message: e.to_string(),
    })
}

fn decode_exact<T: DeserializeOwned, const N: usize>(
    what: &'static str,
    body: &[u8],
) -> Result<T, WireError> {
    let (value, used) = decode::<T, N>(what, body)?;
    if used != body.len() {
        return Err(WireError::Decode {
            what,
            message: format!("{} trailing bytes", body.len() - used),
        });
    }
    Ok(value)
}

/// Whether a received datagram is a report datagram (its second byte is
/// [`KIND_REPORTS`]) rather than a SWIM packet. Says nothing about whether
/// it decodes.
pub fn is_reports(data: &[u8]) -> bool {
    data.get(1) == Some(&KIND_REPORTS)
}

fn varint_len(n: usize) -> Result<usize, WireError> {
    bincode::serde::encode_to_vec(n as u64, config::<16>())
        .map(|v| v.len())
        .map_err(|e| WireError::Encode {
            what: "reports",
            message: e.to_string(),
        })
}

/// Packs `shards`, in order, into as few report datagrams of at most
/// `datagram_max` bytes (and [`REPORT_SHARDS_PER_DATAGRAM_MAX`] shards)
/// as they fit in. No shards, no datagram.
///
/// # Errors
/// A shard that does not fit a datagram alone (`datagram_max` is below
/// a shard's size, or above [`PACKET_BYTES_MAX`]: receivers would refuse
/// it), or an encoding failure; nothing is returned then.
pub fn encode_reports(
    shards: &[ReportShard],
    datagram_max: usize,
) -> Result<Vec<Vec<u8>>, WireError> {
    let what = "reports";
    if datagram_max > PACKET_BYTES_MAX {
        return Err(WireError::TooLarge {
            what,
            len: datagram_max,
            max: PACKET_BYTES_MAX,
        });
    }
    let mut bodies = Vec::with_capacity(shards.len());
    for s in shards {
        let body = bincode::serde::encode_to_vec(s, config::<PACKET_BYTES_MAX>()).map_err(|e| {
            WireError::Encode {
                what,
                message: e.to_string(),
            }
        })?;
        let alone = 2 + varint_len(1)? + body.len();
        if alone > datagram_max {
            return Err(WireError::TooLarge {
                what,
                len: alone,
                max: datagram_max,
            });
        }
        bodies.push(body);
    }
    let mut out = Vec::new();
    let mut batch: Vec<&[u8]> = Vec::new();
    let mut batch_bytes = 0;
    let flush = |batch: &mut Vec<&[u8]>, out: &mut Vec<Vec<u8>>| -> Result<(), WireError> {
        let mut d = vec![PROTOCOL_VERSION, KIND_REPORTS];
        d.extend(
            bincode::serde::encode_to_vec(batch.len() as u64, config::<16>()).map_err(|e| {
                WireError::Encode {
                    what,
                    message: e.to_string(),
                }
            })?,
        );
        for b in batch.drain(..) {
            d.extend_from_slice(b);
        }
        out.push(d);
        Ok(())
    };
    for body in &bodies {
        let full = batch.len() == REPORT_SHARDS_PER_DATAGRAM_MAX
            || 2 + varint_len(batch.len() + 1)? + batch_bytes + body.len() > datagram_max;
        if full && !batch.is_empty() {
            flush(&mut batch, &mut out)?;
            batch_bytes = 0;
        }
        batch.push(body);
        batch_bytes += body.len();
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut out)?;
    }
    Ok(out)
}

/// Decodes a report datagram: the length is checked before anything is
/// decoded, the shard count before any shard is, and each shard's index,
/// count and entries against the report limits.
pub fn decode_reports(data: &[u8]) -> Result<Vec<ReportShard>, WireError> {
    let what = "reports";
    let body = open(what, data, Some(KIND_REPORTS), PACKET_BYTES_MAX)?;
    let (count, mut used) = decode::<u64, PACKET_BYTES_MAX>(what, body)?;
    if count == 0 || count > REPORT_SHARDS_PER_DATAGRAM_MAX as u64 {
        return Err(WireError::Decode {
            what,
            message: format!("{count} shards (1 to {REPORT_SHARDS_PER_DATAGRAM_MAX} expected)"),
        });
    }
    let mut shards = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (shard, n) = decode::<ReportShard, PACKET_BYTES_MAX>(what, &body[used..])?;
        used += n;
        if shard.shard >= shard.shards
            || usize::from(shard.shards) > SHARDS_MAX
            || shard.entries.len() > ENTRIES_PER_SHARD_MAX
        {
            return Err(WireError::Decode {
                what,
                message: format!(
                    "shard {} of {} with {} entries (at most {SHARDS_MAX} shards of {ENTRIES_PER_SHARD_MAX})",
                    shard.shard,
                    shard.shards,
                    shard.entries.len()
                ),
            });
        }
        if shard.clients.len() > CLIENT_ADDRS_MAX || (shard.shard != 0 && !shard.clients.is_empty())
        {
            return Err(WireError::Decode {
                what,
                message: format!(
                    "shard {} with {} client addresses (at most {CLIENT_ADDRS_MAX}, in shard 0 only)",
                    shard.shard,
                    shard.clients.len()
                ),
            });
        }
        shards.push(shard);
    }
    if used != body.len() {
        return Err(WireError::Decode {
            what,
            message: format!("{} trailing bytes", body.len() - used),
        });
    }
    Ok(shards)
}

/// Encodes a full-state sync message.
pub fn encode_sync(state: &SyncState) -> Result<Vec<u8>, WireError> {
    encode::<_, SYNC_BYTES_MAX>("sync", &[PROTOCOL_VERSION, KIND_SYNC], state)
}

/// Decodes a full-state sync message.
pub fn decode_sync(data: &[u8]) -> Result<SyncState, WireError> {
    let body = open("sync", data, Some(KIND_SYNC), SYNC_BYTES_MAX)?;
    decode_exact::<_, SYNC_BYTES_MAX>("sync", body)
}

/// foca's codec: SWIM headers and members in bincode. Encoding goes to a
/// scratch buffer first so a failure leaves foca's buffer untouched.
#[derive(Debug, Default, Clone, Copy)]
pub struct SwimCodec;

impl SwimCodec {
    fn put<T: Serialize>(
        what: &'static str,
        prefix: &[u8],
        value: &T,
        mut buf: impl BufMut,
    ) -> Result<(), WireError> {
        let bytes = encode::<_, PACKET_BYTES_MAX>(what, prefix, value)?;
        if buf.remaining_mut() < bytes.len() {
            return Err(WireError::NoRoom {
                what,
                need: bytes.len(),
                room: buf.remaining_mut(),
            });
        }
        buf.put_slice(&bytes);
        Ok(())
    }

    fn take<T: DeserializeOwned>(what: &'static str, mut buf: impl Buf) -> Result<T, WireError> {
        let (value, used) = decode::<T, PACKET_BYTES_MAX>(what, buf.chunk())?;
        buf.advance(used);
        Ok(value)
    }
}

/// The identity a SWIM packet's sender claims (its header's `src`),
/// decoded without the rest of the packet.
pub fn swim_sender(data: &[u8]) -> Result<NodeId, WireError> {
    Ok(swim_header(data)?.src)
}

/// The header of a SWIM packet (sender, receiver, message), read without
/// the member updates that follow it.
pub fn swim_header(data: &[u8]) -> Result<Header<NodeId>, WireError> {
    use foca::Codec;
    SwimCodec.decode_header(data)
}

impl foca::Codec<NodeId> for SwimCodec {
    type Error = WireError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Self::put("swim header", &[PROTOCOL_VERSION], header, buf)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, Self::Error> {
        let what = "swim header";
        if buf.remaining() > PACKET_BYTES_MAX {
            return Err(WireError::TooLarge {
                what,
                len: buf.remaining(),
                max: PACKET_BYTES_MAX,
            });
        }
        if !buf.has_remaining() {
            return Err(WireError::Truncated { what });
        }
        let version = buf.get_u8();
        if version != PROTOCOL_VERSION {
            return Err(WireError::Version {
                what,
                found: version,
            });
        }
        Self::take(what, buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Self::put("swim member", &[], member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, Self::Error> {
        Self::take("swim member", buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::report::{self, BackendKey, ReportEntry};
    use foca::Codec;
    use rand::{Rng, SeedableRng};
    use std::net::SocketAddr;

    /// What the cluster packs report datagrams to.
    const DATAGRAM: usize = crate::cluster::SWIM_PACKET_BYTES_MAX;

    /// The largest entry there is: every varint at its widest, with a
    /// drain mark.
    fn entry(i: u64) -> ReportEntry {
        ReportEntry {
            key: BackendKey(u64::MAX - i),
            healthy: i.is_multiple_of(2),
            active: u32::MAX - i as u32,
            drain: Some(crate::cluster::report::DrainMark {
                version: u64::MAX - i,
                draining: true,
            }),
            claim: Some(crate::budget::Claim {
                connections: u32::MAX - i as u32,
                clock: u32::MAX - i as u32,
            }),
            opened: u32::MAX - i as u32,
            checker: true,
        }
    }

    /// The widest client addresses there are.
    fn clients() -> Vec<std::net::IpAddr> {
        (0..CLIENT_ADDRS_MAX as u16)
            .map(|i| {
                std::net::Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, i)
                    .into()
            })
            .collect()
    }

    fn shards(origin: &str, backends: u64) -> Vec<ReportShard> {
        let entries: Vec<_> = (0..backends).map(entry).collect();
        report::shard(
            origin.parse().unwrap(),
            u64::MAX,
            u64::MAX,
            &entries,
            &clients(),
        )
    }

    #[test]
    fn a_full_shard_of_worst_case_entries_fits_one_datagram() {
        let worst = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        let s = shards(worst, ENTRIES_PER_SHARD_MAX as u64);
        assert_eq!(s.len(), 1);
        let d = encode_reports(&s, DATAGRAM).unwrap();
        assert_eq!(d.len(), 1);
        // A shard 0 of the widest entries, each with a drain mark and a
        // budget claim, and the most client addresses: it fits the
        // datagram.
        assert!(d[0].len() <= DATAGRAM, "{} bytes", d[0].len());
        assert!(is_reports(&d[0]));
        assert_eq!(decode_reports(&d[0]).unwrap(), s);
    }

    #[test]
    fn shards_are_packed_in_order_into_as_few_datagrams_as_fit() {
        // 7 small shards: one datagram.
        let small: Vec<ReportShard> = (0..7)
            .map(|i| {
                let mut s = shards("10.0.0.1:7946", 2).remove(0);
                s.shard = i;
                s.shards = 7;
                if i != 0 {
                    s.clients.clear();
                }
                s
            })
            .collect();
        let d = encode_reports(&small, DATAGRAM).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(decode_reports(&d[0]).unwrap(), small);
        // The encoding is bincode(Vec<ReportShard>) after the two bytes.
        let whole = bincode::serde::encode_to_vec(&small, config::<PACKET_BYTES_MAX>()).unwrap();
        assert_eq!(&d[0][2..], &whole[..]);

        // 1000 backends of worst-case entries: 46 shards of ~1000 bytes,
        // one per datagram.
        for (backends, per) in [(1000u64, 1usize), (64, 3)] {
            let all = shards("[::1]:7946", backends);
            let d = encode_reports(&all, DATAGRAM).unwrap();
            let mut back = Vec::new();
            let mut sizes = Vec::new();
            for x in &d {
                assert!(x.len() <= DATAGRAM, "{} bytes", x.len());
                let got = decode_reports(x).unwrap();
                sizes.push(got.len());
                back.extend(got);
            }
            assert_eq!(back, all, "{backends} backends");
            if per == 1 {
                assert_eq!(d.len(), all.len());
            } else {
                // 3 shards of 22, 22 and 20 worst-case entries (~1000
                // bytes each): none can share a datagram.
                assert_eq!(d.len(), 3, "{sizes:?}");
            }
        }
        // Greedy: each datagram but the last has no room for the next shard.
        let mixed: Vec<ReportShard> = (0..40u16)
            .map(|i| {
                let mut s = shards("10.0.0.1:7946", u64::from(i % 7) * 5 + 1).remove(0);
                s.shard = i;
                s.shards = 40;
                if i != 0 {
                    s.clients.clear();
                }
                s
            })
            .collect();
        let d = encode_reports(&mixed, DATAGRAM).unwrap();
        let mut at = 0;
        for (k, x) in d.iter().enumerate() {
            let n = decode_reports(x).unwrap().len();
            at += n;
            if k + 1 < d.len() {
                let next = bincode::serde::encode_to_vec(&mixed[at], config::<PACKET_BYTES_MAX>())
                    .unwrap()
                    .len();
                assert!(x.len() + next > DATAGRAM, "datagram {k} had room");
            }
        }
        assert_eq!(at, mixed.len());
        assert!(encode_reports(&[], DATAGRAM).unwrap().is_empty());
    }

    #[test]
    fn a_shard_that_cannot_fit_or_an_oversized_target_is_refused() {
        let s = shards("10.0.0.1:7946", ENTRIES_PER_SHARD_MAX as u64);
        let e = encode_reports(&s, 100).unwrap_err();
        assert!(matches!(e, WireError::TooLarge { max: 100, .. }), "{e}");
        let e = encode_reports(&s, PACKET_BYTES_MAX + 1).unwrap_err();
        assert!(matches!(e, WireError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn garbage_oversized_foreign_and_malformed_report_datagrams_are_errors() {
        let good = encode_reports(&shards("10.0.0.1:7946", 26), DATAGRAM)
            .unwrap()
            .remove(0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        for len in [0usize, 1, 2, 3, 7, 64, 1100, 1500] {
            for _ in 0..50 {
                let mut junk = vec![0u8; len];
                rng.fill_bytes(&mut junk);
                if len > 1 {
                    junk[0] = PROTOCOL_VERSION;
                    junk[1] = KIND_REPORTS;
                }
                // Random bytes may decode by chance only if well formed;
                // never a panic.
                let _ = decode_reports(&junk);
            }
        }
        let e = decode_reports(&vec![PROTOCOL_VERSION; PACKET_BYTES_MAX + 1]).unwrap_err();
        assert!(matches!(e, WireError::TooLarge { .. }), "{e}");
        let mut foreign = good.clone();
        foreign[0] = PROTOCOL_VERSION + 1;
        let e = decode_reports(&foreign).unwrap_err().to_string();
        assert!(
            e.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1)),
            "{e}"
        );
        let mut other_kind = good.clone();
        other_kind[1] = KIND_SYNC;
        assert!(matches!(
            decode_reports(&other_kind).unwrap_err(),
            WireError::Kind { found: 2, .. }
        ));
        for cut in [2, 3, good.len() / 2, good.len() - 1] {
            assert!(decode_reports(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_reports(&trailing).is_err());
        // A count of zero, or one promising more shards than allowed.
        assert!(decode_reports(&[PROTOCOL_VERSION, KIND_REPORTS, 0]).is_err());
        let mut lying = vec![PROTOCOL_VERSION, KIND_REPORTS];
        lying.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        lying.extend_from_slice(&good[3..]);
        assert!(decode_reports(&lying).is_err());
        assert_eq!(decode_reports(&good).unwrap().len(), 1);
        // Well-formed bincode, impossible shards.
        let base = shards("10.0.0.1:7946", 3).remove(0);
        let mut past = base.clone();
        past.shard = past.shards;
        let mut too_many = base.clone();
        too_many.shards = SHARDS_MAX as u16 + 1;
        let mut too_big = base.clone();
        too_big.entries = (0..=ENTRIES_PER_SHARD_MAX as u64).map(entry).collect();
        let mut too_many_clients = base.clone();
        too_many_clients.clients.push("10.0.0.9".parse().unwrap());
        let mut clients_past_shard_0 = base;
        clients_past_shard_0.shard = 1;
        clients_past_shard_0.shards = 2;
        for bad in [
            past,
            too_many,
            too_big,
            too_many_clients,
            clients_past_shard_0,
        ] {
            let mut d = vec![PROTOCOL_VERSION, KIND_REPORTS, 1];
            d.extend(bincode::serde::encode_to_vec(&bad, config::<PACKET_BYTES_MAX>()).unwrap());
            assert!(decode_reports(&d).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn swim_packets_and_report_datagrams_cannot_be_confused() {
        let mut codec = SwimCodec;
        for (src, dst) in [
            ("10.0.0.1:7946", "10.0.0.2:7946"),
            ("[::1]:7946", "10.0.0.2:7946"),
            ("[ffff::ffff]:65535", "[::2]:1"),
        ] {
            let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
            let header = Header {
                src: NodeId::new(addr(src), "n", u64::MAX),
                src_incarnation: u16::MAX,
                dst: NodeId::new(addr(dst), "m", 1),
                message: foca::Message::Ping(7),
            };
            let mut buf = Vec::new();
            codec.encode_header(&header, &mut buf).unwrap();
            assert_eq!(buf[0], PROTOCOL_VERSION);
            assert!(buf[1] <= 1, "SocketAddr variant, {}", buf[1]);
            assert!(!is_reports(&buf), "{src}");
            assert_eq!(codec.decode_header(&buf[..]).unwrap(), header);
        }
        // And a report datagram is no SWIM header.
        let d = encode_reports(&shards("10.0.0.1:7946", 3), DATAGRAM)
            .unwrap()
            .remove(0);
        assert!(codec.decode_header(&d[..]).is_err());
    }
}
