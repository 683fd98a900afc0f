//! A DNS client for tests: one question to one server (an IP literal on
//! loopback, never the system resolver), over UDP or TCP, with the reply's
//! code, flags and addresses. Built on hickory-proto's message types.

use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one query waits for its reply.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ResponseCode,
    pub authoritative: bool,
    pub recursion_available: bool,
    /// A and AAAA records in the answer section, sorted.
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// Records in the answer section, of any type.
    pub answers: usize,
    /// An SOA in the authority section (a negative answer's TTL).
    pub soa_in_authority: bool,
}

/// Which transport a query uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

fn encode(name: &str, qtype: RecordType) -> io::Result<(u16, Vec<u8>)> {
    let name =
        Name::from_ascii(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, qtype));
    let bytes = m.to_vec().map_err(io::Error::other)?;
    Ok((m.metadata.id, bytes))
}

fn decode(id: u16, bytes: &[u8]) -> io::Result<Reply> {
    let m = Message::from_vec(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if m.metadata.id != id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reply id mismatch",
        ));
    }
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for r in &m.answers {
        match &r.data {
            RData::A(a) => v4.push(a.0),
            RData::AAAA(a) => v6.push(a.0),
            _ => {}
        }
    }
    v4.sort_unstable();
    v6.sort_unstable();
    Ok(Reply {
        code: m.metadata.response_code,
        authoritative: m.metadata.authoritative,
        recursion_available: m.metadata.recursion_available,
        v4,
        v6,
        answers: m.answers.len(),
        soa_in_authority: m
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
    })
}

/// Asks `server` one question; fails after [`QUERY_TIMEOUT`].
pub async fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    transport: Transport,
) -> io::Result<Reply> {
    let (id, bytes) = encode(name, qtype)?;
    let exchange = async {
        match transport {
            Transport::Udp => {
                let local: SocketAddr = if server.is_ipv6() {
                    "[::1]:0".parse().unwrap()
                } else {
                    "127.0.0.1:0".parse().unwrap()
                };
                let socket = tokio::net::UdpSocket::bind(local).await?;
                socket.send_to(&bytes, server).await?;
                let mut buf = vec![0u8; 4096];
                let (n, _) = socket.recv_from(&mut buf).await?;
                decode(id, &buf[..n])
            }
            Transport::Tcp => {
                let mut s = tokio::net::TcpStream::connect(server).await?;
                s.write_all(&(bytes.len() as u16).to_be_bytes()).await?;
                s.write_all(&bytes).await?;
                let len = s.read_u16().await?;
                let mut buf = vec![0u8; usize::from(len)];
                s.read_exact(&mut buf).await?;
                decode(id, &buf)
            }
        }
    };
    tokio::time::timeout(QUERY_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no DNS reply"))?
}
