//! The PROXY protocol header (HAProxy's; version 1 text, version 2
//! binary): what a balancer sends before a connection's first byte so the
//! server behind it learns the client's address, and what a listener
//! behind another balancer reads first.
//!
//! Parsing and building are [`ppp`]'s; this module adds what a server
//! facing the network needs around them: a size bound checked before any
//! wait ([`HEADER_BYTES_MAX`]; a version-2 header that announces more is
//! refused as soon as its length field arrives), an answer to "is this
//! enough bytes yet" that a read loop can act on ([`parse`]), and
//! addresses as [`SocketAddr`]. Pure functions: the runtime reads the
//! socket, the fuzz target feeds arbitrary bytes.

use std::net::{IpAddr, SocketAddr};

/// The largest header accepted, in bytes. A version-1 header is at most
/// 107 bytes by the specification; a version-2 header with IPv6 addresses
/// is 52 plus its TLVs, which a sender adds for TLS or cloud metadata
/// (a few hundred bytes at most in practice). Larger is refused.
pub const HEADER_BYTES_MAX: usize = 1024;

/// The version-2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The version-2 fixed part: signature, version and command, family and
/// protocol, payload length.
const V2_FIXED_BYTES: usize = 16;

/// Which version of the header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text form: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary form (address family, ports; no TLVs).
    V2,
}

impl ProxyVersion {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        }
    }
}

/// A header read from the start of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes the header took; the connection's data starts after them.
    pub len: usize,
    /// The original client and the address it connected to, when the
    /// sender gave them (`None` for a version-1 `UNKNOWN`, a version-2
    /// `LOCAL` command such as a health check, or an address family other
    /// than IPv4/IPv6: the connection's own addresses stand).
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Why the bytes are not an acceptable header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The first byte starts neither version: the peer sent no header.
    #[error("no PROXY protocol header (first byte {0:#04x})")]
    Missing(u8),
    /// Larger than [`HEADER_BYTES_MAX`] (or version 1's own 107 bytes).
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLong(usize),
    /// A datagram (UDP) header on a TCP listener.
    #[error("PROXY protocol header for a datagram protocol on a TCP listener")]
    Datagram,
    /// Anything else the parser refused, in its words.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
}

/// Reads a header from the first bytes of a connection: `Ok(None)` while
/// more bytes could still make a valid header, the header once complete,
/// or an error as soon as the bytes cannot (no waiting for bytes that
/// would change nothing).
pub fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first {
        b'P' => parse_v1(buf),
        b'\r' => parse_v2(buf),
        other => Err(ProxyHeaderError::Missing(other)),
    }
}

/// Version 1's own bound: `PROXY TCP6` with two full IPv6 addresses.
const V1_BYTES_MAX: usize = 107;

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(ProxyHeaderError::Malformed("no \"PROXY \" prefix".into()));
    }
    // The line is parsed whole: ppp's parser takes some cuts inside the
    // line (in a port, say) for an error, and a sender may split its
    // header across segments.
    let Some(end) = buf.iter().take(V1_BYTES_MAX).position(|&b| b == b'\n') else {
        if buf.len() >= V1_BYTES_MAX {
            return Err(ProxyHeaderError::TooLong(V1_BYTES_MAX));
        }
        return Ok(None);
    };
    match ppp::v1::Header::try_from(&buf[..=end]) {
        Ok(h) => Ok(Some(ProxyHeader {
            len: h.header.len(),
            addresses: match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
                    SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
                )),
                ppp::v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
                    SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
                )),
                ppp::v1::Addresses::Unknown => None,
            },
        })),
        Err(e) => Err(ProxyHeaderError::Malformed(e.to_string())),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    use ppp::PartialResult;
    // The length field is known from byte 16: refuse an oversized header
    // then, rather than wait for (and buffer) what it announces.
    if buf.len() >= V2_FIXED_BYTES && buf[..12] == V2_SIGNATURE[..] {
        let total = V2_FIXED_BYTES + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > HEADER_BYTES_MAX {
            return Err(ProxyHeaderError::TooLong(HEADER_BYTES_MAX));
        }
    }
    let r = ppp::v2::Header::try_from(buf);
    if r.is_incomplete() {
        return Ok(None);
    }
    let h = r.map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    if h.protocol == ppp::v2::Protocol::Datagram {
        return Err(ProxyHeaderError::Datagram);
    }
    let addresses = match (h.command, h.addresses) {
        (ppp::v2::Command::Local, _) => None,
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => Some((
            SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
        )),
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => Some((
            SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
            SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
        )),
        (ppp::v2::Command::Proxy, _) => None,
    };
    Ok(Some(ProxyHeader {
        len: h.len(),
        addresses,
    }))
}

/// The header that tells a server `source` (the client) connected to
/// `destination` (the address the client dialled). An IPv4-mapped IPv6
/// address (a dual-stack listener's view of an IPv4 client) is written as
/// IPv4; if the two are still of different families, both are written as
/// IPv6 (the IPv4 one mapped), which every receiver accepts.
pub fn encode(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    match version {
        ProxyVersion::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (source, destination),
        )
        .build()
        .expect("a header with two addresses and no TLV fits its length field"),
    }
}

/// The header of a connection that carries no client (a health check):
/// version 1 `UNKNOWN`, version 2 `LOCAL`. The server uses the
/// connection's own addresses.
pub fn encode_local(version: ProxyVersion) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyVersion::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .expect("an empty header fits its length field"),
    }
}

fn unmapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        SocketAddr::V6(_) => a,
    }
}

fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (s, d) = (unmapped(source), unmapped(destination));
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (mapped(s), mapped(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_versions_round_trip_both_families() {
        for v in [ProxyVersion::V1, ProxyVersion::V2] {
            for (s, d) in [
                (sa("10.1.2.3:4567"), sa("127.0.0.1:80")),
                (sa("[2001:db8::1]:4567"), sa("[::1]:443")),
            ] {
                let mut bytes = encode(v, s, d);
                let len = bytes.len();
                bytes.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
                let h = parse(&bytes).unwrap().unwrap();
                assert_eq!(h.len, len, "{v:?}");
                assert_eq!(h.addresses, Some((s, d)), "{v:?}");
            }
        }
    }

    #[test]
    fn v1_text_is_the_specification_s() {
        let b = encode(
            ProxyVersion::V1,
            sa("192.0.2.7:51000"),
            sa("127.0.0.1:8080"),
        );
        assert_eq!(b, b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 8080\r\n");
    }

    #[test]
    fn mapped_and_mixed_families_are_written_in_one_family() {
        let h = encode(
            ProxyVersion::V1,
            sa("[::ffff:192.0.2.7]:1000"),
            sa("127.0.0.1:80"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 1000 80\r\n");
        let h = encode(ProxyVersion::V1, sa("192.0.2.7:1000"), sa("[::1]:80"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1000 80\r\n");
    }

    #[test]
    fn every_prefix_of_a_header_asks_for_more() {
        for v in [ProxyVersion::V1, ProxyVersion::V2] {
            let bytes = encode(v, sa("[2001:db8::1]:4567"), sa("[::1]:443"));
            for k in 0..bytes.len() {
                assert_eq!(parse(&bytes[..k]), Ok(None), "{v:?} prefix of {k} bytes");
            }
        }
    }

    #[test]
    fn local_and_unknown_carry_no_addresses() {
        for v in [ProxyVersion::V1, ProxyVersion::V2] {
            let b = encode_local(v);
            let h = parse(&b).unwrap().unwrap();
            assert_eq!((h.len, h.addresses), (b.len(), None), "{v:?}");
        }
    }

    #[test]
    fn no_header_is_refused_at_the_first_byte() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::Missing(b'G'))
        );
        assert!(matches!(
            parse(b"PROXY TCP9 1 2 3 4\r\n"),
            Err(ProxyHeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"\r\n\r\n\0\r\nQUIX\n!!!!"),
            Err(ProxyHeaderError::Malformed(_))
        ));
    }

    #[test]
    fn an_oversized_v2_header_is_refused_from_its_length_field() {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x21, 0x11]);
        b.extend_from_slice(&u16::MAX.to_be_bytes());
        // Only the fixed part has arrived: refused already.
        assert_eq!(parse(&b), Err(ProxyHeaderError::TooLong(HEADER_BYTES_MAX)));
        // A v1 line with no end within its 107 bytes.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Err(ProxyHeaderError::TooLong(V1_BYTES_MAX)));
    }

    #[test]
    fn a_datagram_header_is_refused() {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[0x21, 0x12, 0, 12]);
        b.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2]);
        assert_eq!(parse(&b), Err(ProxyHeaderError::Datagram));
    }
}
