//! The fleet's own DNS answer, served (decision 51): an authoritative
//! answer for one name, `dns.name`, over UDP and TCP on `dns.bind`.
//!
//! Which addresses the answer holds is decided by the core
//! ([`shoal_core::dns`], [`shoal_core::node::Node::poll_client_answer`]);
//! the fleet task puts each new answer into a `watch` channel and this
//! server reads the latest one per query. For the name:
//! - `A` / `AAAA`: the answer's addresses of that family, at most
//!   [`ANSWER_RECORDS_MAX`] in random order (so clients that take the first
//!   address spread over the fleet); none of that family: NOERROR with no
//!   record (NODATA) and the SOA, so resolvers cache the absence for
//!   `ttl_s` only;
//! - `SOA`: the zone's SOA (the name is its own zone apex);
//! - any other type: NODATA;
//! - an empty answer (this node left, drains, or knows no node that takes
//!   clients): REFUSED ([`shoal_core::dns::NameReply::Refused`]), so a
//!   resolver takes another of the fleet's servers' word rather than this
//!   one's, and never caches "no address".
//!
//! Names below the fleet's name: NXDOMAIN (this server is their
//! authority); any other name or class: REFUSED (it is not a resolver: no
//! recursion, RA never set). Updates, notifies and other opcodes: NOTIMP;
//! a message without exactly one question: FORMERR. Every query is counted
//! in `shoal_dns_queries_total{qtype,result}`; refused and malformed ones
//! are logged at most once per [`BAD_QUERY_LOG_INTERVAL_MS`] with the
//! number held back, since anyone can send them.

use crate::metrics::{DnsLabels, DnsResult, Metrics};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::rngs::SmallRng;
use shoal_config::DnsConfig;
use shoal_core::dns::{ClientAnswer, NameReply};
use shoal_transport::LogThrottle;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Records of one family in one response, at most: 16 AAAA records
/// (28 bytes each with a compressed name) and the question fit the 512
/// bytes of a UDP response without EDNS, so no client needs TCP.
pub const ANSWER_RECORDS_MAX: usize = 16;
/// How long an idle TCP client is kept.
pub const TCP_IDLE_TIMEOUT_MS: u64 = 5_000;
/// Responses queued per TCP connection.
const TCP_RESPONSES_QUEUED_MAX: usize = 16;
/// Refused or malformed queries get one log line per this interval.
pub const BAD_QUERY_LOG_INTERVAL_MS: u64 = 10_000;
/// Tries at finding a port free for both UDP and TCP (port 0 only).
const BIND_TRIES_MAX: usize = 16;
/// The SOA's serial: the zone's content is the live answer, which has no
/// version a secondary could transfer.
const SOA_SERIAL: u32 = 1;

/// The answer the server gives, as the fleet task updates it.
pub type AnswerSource = watch::Receiver<Arc<ClientAnswer>>;

/// The DNS server's sockets, bound at start (so a port in use fails the
/// start, like every other socket of the node).
#[derive(Debug)]
pub struct DnsSockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

impl DnsSockets {
    /// Binds UDP and TCP on `addr`; with port 0, on a port free for both.
    pub fn bind(addr: SocketAddr) -> io::Result<DnsSockets> {
        let tries = if addr.port() == 0 { BIND_TRIES_MAX } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            let udp = std::net::UdpSocket::bind(addr)?;
            let at = udp.local_addr()?;
            match std::net::TcpListener::bind(at) {
                Ok(tcp) => {
                    udp.set_nonblocking(true)?;
                    tcp.set_nonblocking(true)?;
                    return Ok(DnsSockets { udp, tcp });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no port free for UDP and TCP")))
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Sockets handed over by a previous process (see `handover`).
    pub fn from_std(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> io::Result<DnsSockets> {
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok(DnsSockets { udp, tcp })
    }

    /// Duplicates, for a successor.
    pub fn try_clone(&self) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
        Ok((self.udp.try_clone()?, self.tcp.try_clone()?))
    }
}

/// Serves `config.name` from `answer` until `stop` is cancelled.
pub async fn serve(
    sockets: DnsSockets,
    config: &DnsConfig,
    answer: AnswerSource,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let handler = match FleetName::new(config, answer, metrics) {
        Ok(h) => h,
        Err(e) => {
            // The config crate checked the name; this would be a bug.
            warn!(error = %e, name = %config.name, "dns: cannot serve the name");
            return;
        }
    };
    let (udp, tcp) = match (
        tokio::net::UdpSocket::from_std(sockets.udp),
        tokio::net::TcpListener::from_std(sockets.tcp),
    ) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "dns: cannot register the sockets");
            return;
        }
    };
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(
        tcp,
        Duration::from_millis(TCP_IDLE_TIMEOUT_MS),
        TCP_RESPONSES_QUEUED_MAX,
    );
    stop.cancelled().await;
    if let Err(e) = server.shutdown_gracefully().await {
        debug!(error = %e, "dns server stopped");
    }
}

/// The request handler: one name, answered from the fleet's view.
struct FleetName {
    zone: LowerName,
    name: Name,
    ttl: u32,
    soa: Record,
    answer: AnswerSource,
    metrics: Arc<Metrics>,
    /// Bad queries are logged through this, one line per interval.
    throttle: Mutex<LogThrottle>,
    rng: Mutex<SmallRng>,
}

impl FleetName {
    fn new(
        config: &DnsConfig,
        answer: AnswerSource,
        metrics: Arc<Metrics>,
    ) -> Result<FleetName, hickory_server::proto::ProtoError> {
        let name = Name::from_ascii(&config.name)?;
        let hostmaster = Name::from_ascii("hostmaster")?.append_domain(&name)?;
        // Refresh, retry and expire matter to secondaries only, of which
        // there are none; the minimum (negative TTL) is the records' TTL.
        let soa = SOA::new(
            name.clone(),
            hostmaster,
            SOA_SERIAL,
            3_600,
            600,
            86_400,
            config.ttl_s,
        );
        Ok(FleetName {
            zone: LowerName::new(&name),
            soa: Record::from_rdata(name.clone(), config.ttl_s, RData::SOA(soa)),
            name,
            ttl: config.ttl_s,
            answer,
            metrics,
            throttle: Mutex::new(LogThrottle::new(Duration::from_millis(
                BAD_QUERY_LOG_INTERVAL_MS,
            ))),
            rng: Mutex::new(rand::make_rng()),
        })
    }

    /// The records for a query of `qtype` for the name itself, and the
    /// result: records, NODATA, or `unavailable` when the core says this
    /// node cannot speak for the fleet.
    fn lookup(&self, qtype: RecordType) -> (Vec<Record>, DnsResult) {
        let answer = self.answer.borrow().clone();
        if answer.reply() == NameReply::Refused {
            return (Vec::new(), DnsResult::unavailable);
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let records: Vec<Record> = match qtype {
            RecordType::A => ClientAnswer::pick(&answer.v4, ANSWER_RECORDS_MAX, &mut *rng)
                .into_iter()
                .map(|ip| Record::from_rdata(self.name.clone(), self.ttl, RData::A(A(ip))))
                .collect(),
            RecordType::AAAA => ClientAnswer::pick(&answer.v6, ANSWER_RECORDS_MAX, &mut *rng)
                .into_iter()
                .map(|ip| Record::from_rdata(self.name.clone(), self.ttl, RData::AAAA(AAAA(ip))))
                .collect(),
            RecordType::SOA => vec![self.soa.clone()],
            _ => Vec::new(),
        };
        let result = if records.is_empty() {
            DnsResult::nodata
        } else {
            DnsResult::answer
        };
        (records, result)
    }

    fn count(&self, qtype: RecordType, result: DnsResult) {
        let qtype = match qtype {
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
            RecordType::SOA => "SOA",
            _ => "other",
        };
        self.metrics
            .dns_queries
            .get_or_create(&DnsLabels { qtype, result })
            .inc();
    }

    /// One line per interval for queries a stranger can send.
    fn log_bad(&self, src: SocketAddr, what: &str, detail: &str) {
        let now = std::time::Instant::now();
        let held = self
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .event(now);
        if let Some(held_back) = held {
            info!(src = %src, query = %detail, held_back, "dns: {what}");
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for FleetName {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // EDNS as hickory's catalog answers it: version 0, the client's
        // payload size (at least 512).
        let mut edns_storage = Edns::new();
        let edns = request.edns.as_ref().map(|req| {
            edns_storage.set_max_payload(req.max_payload().max(512));
            edns_storage.set_version(0);
            &edns_storage
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;
        let qtype_of_first = request
            .queries
            .queries()
            .first()
            .map_or(RecordType::Unknown(0), |q| q.query_type());

        let outcome = if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            self.log_bad(
                request.src(),
                "not a query (NOTIMP)",
                &format!("{:?}", request.metadata.op_code),
            );
            Err((ResponseCode::NotImp, DnsResult::notimp))
        } else {
            match request.request_info() {
                Err(e) => {
                    self.log_bad(request.src(), "malformed query (FORMERR)", &e.to_string());
                    Err((ResponseCode::FormErr, DnsResult::formerr))
                }
                Ok(info) => {
                    let q = info.query;
                    if q.query_class() != DNSClass::IN || !self.zone.zone_of(q.name()) {
                        self.log_bad(
                            request.src(),
                            "not this server's name (REFUSED)",
                            &format!("{} {} {}", q.name(), q.query_class(), q.query_type()),
                        );
                        Err((ResponseCode::Refused, DnsResult::refused))
                    } else if *q.name() != self.zone {
                        Err((ResponseCode::NXDomain, DnsResult::nxdomain))
                    } else {
                        Ok(self.lookup(q.query_type()))
                    }
                }
            }
        };

        let sent = match outcome {
            Err((code, result)) => {
                self.count(qtype_of_first, result);
                metadata.response_code = code;
                metadata.authoritative = code == ResponseCode::NXDomain;
                let soa = (code == ResponseCode::NXDomain).then_some(&self.soa);
                let response = builder.build(metadata, [], [], soa, []);
                response_handle.send_response(response).await
            }
            Ok((records, result)) => {
                self.count(qtype_of_first, result);
                if result == DnsResult::unavailable {
                    metadata.response_code = ResponseCode::Refused;
                    let response = builder.build(metadata, [], [], [], []);
                    response_handle.send_response(response).await
                } else {
                    metadata.authoritative = true;
                    let soa = records.is_empty().then_some(&self.soa);
                    let response = builder.build(metadata, records.iter(), [], soa, []);
                    response_handle.send_response(response).await
                }
            }
        };
        match sent {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "dns: cannot send a response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                hickory_server::proto::op::Header {
                    metadata,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}
