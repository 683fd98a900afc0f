//! [`TestDns`]: a tiny authoritative DNS server on `127.0.0.1`, for tests
//! and demos that need names without sending a query off the machine.
//!
//! It serves one in-memory zone, the root zone, so it answers for any name:
//! the A and AAAA records it was given, NXDOMAIN for every other name, and
//! NOERROR with no answer for a name that has records of the other family
//! only. It listens on UDP and TCP on the same loopback port and counts the
//! queries it handles, so a test can prove that the resolver asked it.
//! Answers are not rotated between queries. [`TestDns::set_records`]
//! replaces every record at once, so a test can change what a name stands
//! for while a resolver keeps asking: each query is answered from one set,
//! the old or the new, never a mix. It stops when dropped.
//!
//! Point a [`SeedResolver`](crate::SeedResolver) at [`TestDns::addr`] (in a
//! config: `cluster.resolver = "127.0.0.1:PORT"`, or `node.resolver` for
//! the names of backends).

use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// TTL of every record served, in seconds.
const RECORD_TTL_S: u32 = 60;
/// The zone's serial number. [`TestDns::set_records`] builds a new zone
/// rather than changing this one, and no secondary ever transfers it, so
/// the serial never needs to move.
const ZONE_SERIAL: u32 = 1;
/// How many times to look for a port free for both UDP and TCP.
const BIND_TRIES_MAX: usize = 16;
/// How long an idle TCP client is kept.
const TCP_IDLE_TIMEOUT_MS: u64 = 5_000;
/// Responses queued per TCP connection.
const TCP_RESPONSES_QUEUED_MAX: usize = 16;

/// A DNS server on `127.0.0.1` serving A and AAAA records, which
/// [`TestDns::set_records`] can replace. Stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    server: Server<CountingHandler>,
}

impl fmt::Debug for TestDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDns")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

impl TestDns {
    /// Starts a server on `127.0.0.1` (UDP and TCP, same port) answering
    /// for `records`. Several records with the same name form a round-robin
    /// set. Names are case-insensitive; a trailing dot is optional.
    ///
    /// Must be called within a Tokio runtime; the server runs on it.
    pub async fn start(records: &[(&str, IpAddr)]) -> io::Result<TestDns> {
        let catalog = catalog(records)?;
        let (udp, tcp) = bind_loopback_pair().await?;
        let addr = udp.local_addr()?;
        let queries = Arc::new(AtomicUsize::new(0));
        let catalog = Arc::new(RwLock::new(Arc::new(catalog)));
        let mut server = Server::new(CountingHandler {
            catalog: catalog.clone(),
            queries: queries.clone(),
        });
        server.register_socket(udp);
        server.register_listener(
            tcp,
            Duration::from_millis(TCP_IDLE_TIMEOUT_MS),
            TCP_RESPONSES_QUEUED_MAX,
        );
        Ok(TestDns {
            addr,
            queries,
            catalog,
            server,
        })
    }

    /// Replaces every record with `records` (same rules as
    /// [`TestDns::start`]): the next query is answered from the new set, and
    /// a name no longer listed answers NXDOMAIN. A query already being
    /// answered finishes with the set it started with. On `Err` (a bad
    /// name) the old records stay.
    pub fn set_records(&self, records: &[(&str, IpAddr)]) -> io::Result<()> {
        let new = Arc::new(catalog(records)?);
        // A panic elsewhere cannot leave the pointer half-written: the old
        // or the new catalog is whole either way, so a poisoned lock is
        // still usable.
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    /// The address to send queries to (`127.0.0.1:PORT`, UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries the server has handled so far. A query is counted
    /// before it is answered, so any answer a client has seen is counted.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        // Dropping the server aborts its tasks too; cancelling first lets
        // them end at their next await rather than mid-answer.
        self.server.shutdown_token().cancel();
    }
}

/// The catalog with one zone, the root, holding an SOA and `records`.
fn catalog(records: &[(&str, IpAddr)]) -> io::Result<Catalog> {
    let root = Name::root();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        root.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        name("ns.shoal.test")?,
        name("hostmaster.shoal.test")?,
        ZONE_SERIAL,
        3_600,
        600,
        86_400,
        0,
    );
    if !zone.upsert_mut(
        Record::from_rdata(root.clone(), RECORD_TTL_S, RData::SOA(soa)),
        ZONE_SERIAL,
    ) {
        return Err(io::Error::other("test DNS: the SOA record was refused"));
    }
    for (host, ip) in records {
        let data = match ip {
            IpAddr::V4(ip) => RData::A(A(*ip)),
            IpAddr::V6(ip) => RData::AAAA(AAAA(*ip)),
        };
        let record = Record::from_rdata(name(host)?, RECORD_TTL_S, data);
        if !zone.upsert_mut(record, ZONE_SERIAL) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("test DNS: record `{host}` -> {ip} was refused"),
            ));
        }
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&root), vec![Arc::new(zone)]);
    Ok(catalog)
}

fn name(host: &str) -> io::Result<Name> {
    let mut name = Name::from_ascii(host).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("test DNS: name `{host}`: {e}"),
        )
    })?;
    name.set_fqdn(true);
    Ok(name)
}

/// A UDP socket and a TCP listener on the same `127.0.0.1` port.
async fn bind_loopback_pair() -> io::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..BIND_TRIES_MAX {
        let udp = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("test DNS: no free port")))
}

/// The catalog, counting every request it is handed. The catalog sits
/// behind a lock so that [`TestDns::set_records`] can swap it; a request
/// clones the `Arc` and lets go of the lock before it awaits, so a swap
/// never waits for an answer in flight.
struct CountingHandler {
    catalog: Arc<RwLock<Arc<Catalog>>>,
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for CountingHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Resolved, SeedError, SeedLimits, SeedResolver};

    /// A hang guard, far above any bound under test: a test that reaches
    /// it has a bug, it is not a timing assertion.
    const TEST_GUARD: Duration = Duration::from_secs(30);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    async fn resolve(resolver: &SeedResolver, seed: &str) -> Resolved {
        tokio::time::timeout(TEST_GUARD, resolver.resolve(&[seed.to_owned()]))
            .await
            .expect("resolve hung past the test guard")
    }

    #[tokio::test]
    async fn set_records_changes_the_next_answer_and_unlisted_names_vanish() {
        let dns = TestDns::start(&[
            ("app.shoal.test", ip("127.0.0.51")),
            ("old.shoal.test", ip("127.0.0.60")),
        ])
        .await
        .unwrap();
        let resolver = SeedResolver::new(Some(dns.addr()), SeedLimits::default()).unwrap();
        let before = resolve(&resolver, "app.shoal.test:9001").await;
        assert_eq!(before.errors, vec![]);
        assert_eq!(before.addrs, vec![addr("127.0.0.51:9001")]);

        dns.set_records(&[
            ("app.shoal.test", ip("127.0.0.52")),
            ("app.shoal.test", ip("127.0.0.53")),
            ("new.shoal.test", ip("::1")),
        ])
        .unwrap();
        let app = resolve(&resolver, "app.shoal.test:9001").await;
        assert_eq!(app.errors, vec![]);
        assert_eq!(
            app.addrs,
            vec![addr("127.0.0.52:9001"), addr("127.0.0.53:9001")],
            "the old address is gone, both new ones are there"
        );
        let new = resolve(&resolver, "new.shoal.test:1").await;
        assert_eq!(new.errors, vec![]);
        assert_eq!(new.addrs, vec![addr("[::1]:1")]);
        let old = resolve(&resolver, "old.shoal.test:1").await;
        assert_eq!(old.addrs, vec![]);
        assert_eq!(
            old.errors,
            vec![SeedError::NoSuchName {
                seed: "old.shoal.test:1".into(),
                host: "old.shoal.test".into(),
                resolver: dns.addr().to_string(),
            }],
            "a name no longer listed is NXDOMAIN"
        );

        dns.set_records(&[]).unwrap();
        let none = resolve(&resolver, "app.shoal.test:9001").await;
        assert_eq!(none.addrs, vec![]);
        assert!(
            matches!(none.errors[..], [SeedError::NoSuchName { .. }]),
            "{:?}",
            none.errors
        );
    }

    #[tokio::test]
    async fn a_bad_name_in_set_records_keeps_the_old_records() {
        let dns = TestDns::start(&[("app.shoal.test", ip("127.0.0.51"))])
            .await
            .unwrap();
        let error = dns
            .set_records(&[
                ("app.shoal.test", ip("127.0.0.52")),
                ("bad..name", ip("127.0.0.53")),
            ])
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("bad..name"), "{error}");
        let resolver = SeedResolver::new(Some(dns.addr()), SeedLimits::default()).unwrap();
        let got = resolve(&resolver, "app.shoal.test:9001").await;
        assert_eq!(got.addrs, vec![addr("127.0.0.51:9001")]);
    }
}
