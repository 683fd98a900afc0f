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
//! | SWIM packet header (foca) | `version, bincode(Header)` | [`PACKET_BYTES_MAX`] |
//! | SWIM member (foca) | `bincode(Member)` | inside a packet |
//! | load report shard (foca custom broadcast) | `version, KIND_REPORT, bincode(ReportShard)` | [`REPORT_BYTES_MAX`] |
//! | full-state sync (QUIC stream) | `version, KIND_SYNC, bincode(SyncState)` | [`SYNC_BYTES_MAX`] |

use crate::cluster::SyncState;
use crate::cluster::identity::NodeId;
use crate::cluster::report::ReportShard;
use bytes::{Buf, BufMut};
use foca::{Header, Member};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The protocol version every message starts with.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest SWIM packet a node accepts.
pub const PACKET_BYTES_MAX: usize = 1500;
/// Largest encoded report shard.
pub const REPORT_BYTES_MAX: usize = 1024;
/// Largest full-state sync message.
pub const SYNC_BYTES_MAX: usize = 8 * 1024 * 1024;

const KIND_REPORT: u8 = 1;
const KIND_SYNC: u8 = 2;

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

/// Encodes a load report shard (a foca custom broadcast item).
pub fn encode_report(shard: &ReportShard) -> Result<Vec<u8>, WireError> {
    encode::<_, REPORT_BYTES_MAX>("report", &[PROTOCOL_VERSION, KIND_REPORT], shard)
}

/// Decodes a load report shard.
pub fn decode_report(data: &[u8]) -> Result<ReportShard, WireError> {
    let body = open("report", data, Some(KIND_REPORT), REPORT_BYTES_MAX)?;
    decode_exact::<_, REPORT_BYTES_MAX>("report", body)
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
