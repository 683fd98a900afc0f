//! [`SeedResolver`]: turns a seed list into the socket addresses to dial.
//!
//! IP literals are taken as they are, with no query. A name is asked for its
//! A and AAAA records in parallel and stands for every address found, each
//! with the seed's port. Seeds are looked up concurrently (at most
//! [`SeedLimits::lookups_in_flight_max`] at once), each within its own time
//! bound, and a seed that fails only adds an error: the others still resolve.
//!
//! The result's order is stable: seeds in the order given, and within one
//! name its addresses sorted (IPv4 before IPv6), so a DNS server that rotates
//! its answers does not reorder the result. Duplicates keep their first
//! place. Answers are never cached here: seeds are re-resolved to notice a
//! fleet that changed, so every call asks the DNS again.

use crate::{Seed, SeedError, parse_seed};
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Bounds on one [`SeedResolver::resolve`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedLimits {
    /// How long one DNS request waits for its answer.
    pub query_timeout_ms: u64,
    /// How many times one DNS request is sent before giving up (1 = no
    /// retry). A seed's whole lookup is cut off after
    /// `query_timeout_ms * query_attempts_max`, whatever happens inside it.
    pub query_attempts_max: u32,
    /// The most addresses one call returns, over all seeds. Addresses past
    /// the cap are dropped and reported as [`SeedError::AddressesCapped`].
    pub addresses_max: usize,
    /// The most names looked up at the same time.
    pub lookups_in_flight_max: usize,
}

impl Default for SeedLimits {
    fn default() -> Self {
        Self {
            query_timeout_ms: 2_000,
            query_attempts_max: 2,
            addresses_max: 64,
            lookups_in_flight_max: 8,
        }
    }
}

impl SeedLimits {
    /// The bound on one seed's whole lookup.
    pub fn seed_timeout(&self) -> Duration {
        Duration::from_millis(
            self.query_timeout_ms
                .saturating_mul(u64::from(self.query_attempts_max)),
        )
    }

    fn check(&self) -> Result<(), SeedError> {
        let at_least_one = |field: &'static str, value: u64| {
            if value == 0 {
                Err(SeedError::Limits {
                    field,
                    value,
                    reason: "must be at least 1",
                })
            } else {
                Ok(())
            }
        };
        at_least_one("query_timeout_ms", self.query_timeout_ms)?;
        at_least_one("query_attempts_max", u64::from(self.query_attempts_max))?;
        at_least_one("addresses_max", self.addresses_max as u64)?;
        at_least_one("lookups_in_flight_max", self.lookups_in_flight_max as u64)
    }
}

/// What one [`SeedResolver::resolve`] call found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Every address found, deduplicated, in a stable order (see the module
    /// doc), at most [`SeedLimits::addresses_max`].
    pub addrs: Vec<SocketAddr>,
    /// One error per seed that failed or lost addresses to the cap, in seed
    /// order. Each names its seed.
    pub errors: Vec<SeedError>,
}

/// Who answers a name.
#[derive(Debug, Clone)]
enum Backend {
    /// The C library's `getaddrinfo(3)` on a blocking thread
    /// (`tokio::net::lookup_host`): the hosts file, `nsswitch.conf`, the
    /// search list and systemd-resolved, exactly as every other program on
    /// the machine resolves the name.
    System,
    /// One DNS server, asked directly (`cluster.resolver`).
    Dns(Box<TokioResolver>),
}

/// Resolves seed lists. Cheap to clone; clones share the DNS connections.
#[derive(Debug, Clone)]
pub struct SeedResolver {
    backend: Backend,
    /// Who is asked, for error messages: `127.0.0.1:5353` or `the system resolver`.
    asked: Arc<str>,
    limits: SeedLimits,
}

impl SeedResolver {
    /// `resolver`: `None` resolves as `getaddrinfo(3)` does (hosts file,
    /// `nsswitch.conf`, search domains, systemd-resolved where present), so
    /// a name resolves here exactly as it does for curl or getent; a name
    /// the hosts file lists answers at once, with no DNS query (not even
    /// for the record type it lacks). `Some(addr)` sends every query to
    /// that DNS server only, over UDP with TCP for truncated answers, and
    /// reads no hosts file.
    ///
    /// Does no I/O. Needs no runtime; [`resolve`](Self::resolve) needs Tokio.
    pub fn new(resolver: Option<SocketAddr>, limits: SeedLimits) -> Result<Self, SeedError> {
        limits.check()?;
        let Some(addr) = resolver else {
            return Ok(Self {
                backend: Backend::System,
                asked: "the system resolver".into(),
                limits,
            });
        };
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_parts(None, vec![], vec![server]);
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = Duration::from_millis(limits.query_timeout_ms);
        options.attempts = limits.query_attempts_max.saturating_sub(1) as usize;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.cache_size = 0;
        let resolver = builder.build().map_err(|e| SeedError::SystemConfig {
            reason: e.to_string(),
        })?;
        Ok(Self {
            backend: Backend::Dns(Box::new(resolver)),
            asked: addr.to_string().into(),
            limits,
        })
    }

    /// The limits this resolver was built with.
    pub fn limits(&self) -> SeedLimits {
        self.limits
    }

    /// Resolves every seed. IP literals need no query; names are looked up
    /// concurrently, each within [`SeedLimits::seed_timeout`]. Never fails as
    /// a whole: each seed that fails adds one error to
    /// [`Resolved::errors`].
    pub async fn resolve(&self, seeds: &[String]) -> Resolved {
        let mut outcomes: Vec<Option<Result<Vec<SocketAddr>, SeedError>>> =
            (0..seeds.len()).map(|_| None).collect();
        let mut pending = VecDeque::new();
        for (index, raw) in seeds.iter().enumerate() {
            match parse_seed(raw) {
                Ok(Seed::Addr(addr)) => outcomes[index] = Some(Ok(vec![addr])),
                Ok(Seed::Name { host, port }) => pending.push_back((index, host, port)),
                Err(error) => outcomes[index] = Some(Err(error)),
            }
        }

        // Each lookup runs in its own task so that a panic deep in the DNS
        // stack costs one seed, not the caller. Dropping this future drops
        // the set, which aborts the lookups still running.
        let mut lookups = JoinSet::new();
        let mut task_seed = HashMap::new();
        loop {
            while lookups.len() < self.limits.lookups_in_flight_max {
                let Some((index, host, port)) = pending.pop_front() else {
                    break;
                };
                let this = self.clone();
                let seed = seeds[index].clone();
                let task_host = host.clone();
                let handle =
                    lookups.spawn(async move { this.lookup_name(&seed, &task_host, port).await });
                task_seed.insert(handle.id(), (index, host));
            }
            let Some(joined) = lookups.join_next_with_id().await else {
                break;
            };
            let (id, outcome) = match joined {
                Ok((id, outcome)) => (id, Ok(outcome)),
                Err(error) => (error.id(), Err(error.to_string())),
            };
            let Some((index, host)) = task_seed.remove(&id) else {
                continue;
            };
            outcomes[index] = Some(outcome.unwrap_or_else(|reason| {
                Err(SeedError::Lookup {
                    seed: seeds[index].clone(),
                    host,
                    resolver: self.asked.to_string(),
                    reason: format!("lookup task failed: {reason}"),
                })
            }));
        }

        self.assemble(seeds, outcomes)
    }

    async fn lookup_name(
        &self,
        seed: &str,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, SeedError> {
        let timeout = self.limits.seed_timeout();
        let resolver = match &self.backend {
            Backend::System => return self.lookup_system(seed, host, port).await,
            Backend::Dns(resolver) => resolver,
        };
        let lookup = match tokio::time::timeout(timeout, resolver.lookup_ip(host)).await {
            Ok(Ok(lookup)) => lookup,
            Ok(Err(error)) => return Err(self.lookup_error(seed, host, &error)),
            Err(_elapsed) => return Err(self.timeout_error(seed, host)),
        };
        self.addresses(seed, host, port, lookup.iter().collect())
    }

    /// `getaddrinfo(3)` on a blocking thread. Its own timeouts come from
    /// `resolv.conf`; the seed's bound cuts the wait (the thread finishes
    /// on its own).
    async fn lookup_system(
        &self,
        seed: &str,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, SeedError> {
        let timeout = self.limits.seed_timeout();
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => self.addresses(seed, host, port, addrs.map(|a| a.ip()).collect()),
            // getaddrinfo's EAI_NONAME and friends reach us as io::Error
            // text only (gai_strerror, in the C locale Rust runs in): the
            // two answers that say the name has no address are told
            // apart from failures, so a caller can believe them.
            Ok(Err(error)) => {
                let (seed, host, resolver) =
                    (seed.to_owned(), host.to_owned(), self.asked.to_string());
                let text = error.to_string();
                if text.contains("Name or service not known") {
                    Err(SeedError::NoSuchName {
                        seed,
                        host,
                        resolver,
                    })
                } else if text.contains("No address associated with hostname") {
                    Err(SeedError::NoAddresses {
                        seed,
                        host,
                        resolver,
                    })
                } else {
                    Err(SeedError::Lookup {
                        seed,
                        host,
                        resolver,
                        reason: text,
                    })
                }
            }
            Err(_elapsed) => Err(self.timeout_error(seed, host)),
        }
    }

    fn timeout_error(&self, seed: &str, host: &str) -> SeedError {
        SeedError::Timeout {
            seed: seed.to_owned(),
            host: host.to_owned(),
            timeout_ms: self.limits.seed_timeout().as_millis() as u64,
            resolver: self.asked.to_string(),
        }
    }

    /// Sorted, deduplicated, with the seed's port; none is an error.
    fn addresses(
        &self,
        seed: &str,
        host: &str,
        port: u16,
        mut ips: Vec<IpAddr>,
    ) -> Result<Vec<SocketAddr>, SeedError> {
        ips.sort_unstable();
        ips.dedup();
        if ips.is_empty() {
            return Err(SeedError::NoAddresses {
                seed: seed.to_owned(),
                host: host.to_owned(),
                resolver: self.asked.to_string(),
            });
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    fn lookup_error(&self, seed: &str, host: &str, error: &NetError) -> SeedError {
        let (seed, host, resolver) = (seed.to_owned(), host.to_owned(), self.asked.to_string());
        if error.is_nx_domain() {
            SeedError::NoSuchName {
                seed,
                host,
                resolver,
            }
        } else if error.is_no_records_found() {
            SeedError::NoAddresses {
                seed,
                host,
                resolver,
            }
        } else if matches!(error, NetError::Timeout) {
            SeedError::Timeout {
                seed,
                host,
                timeout_ms: self.limits.seed_timeout().as_millis() as u64,
                resolver,
            }
        } else {
            SeedError::Lookup {
                seed,
                host,
                resolver,
                reason: error.to_string(),
            }
        }
    }

    /// Puts the per-seed outcomes together in seed order, deduplicating and
    /// applying the address cap.
    fn assemble(
        &self,
        seeds: &[String],
        outcomes: Vec<Option<Result<Vec<SocketAddr>, SeedError>>>,
    ) -> Resolved {
        let mut resolved = Resolved::default();
        let mut seen = HashSet::new();
        for (raw, outcome) in seeds.iter().zip(outcomes) {
            let addrs = match outcome {
                Some(Ok(addrs)) => addrs,
                Some(Err(error)) => {
                    resolved.errors.push(error);
                    continue;
                }
                // Unreachable by construction; still, never panic on it.
                None => {
                    resolved.errors.push(SeedError::Lookup {
                        seed: raw.clone(),
                        host: String::new(),
                        resolver: self.asked.to_string(),
                        reason: "lookup did not finish".to_owned(),
                    });
                    continue;
                }
            };
            let mut dropped = 0;
            for addr in addrs {
                if seen.contains(&addr) {
                    continue;
                }
                if resolved.addrs.len() >= self.limits.addresses_max {
                    dropped += 1;
                    continue;
                }
                seen.insert(addr);
                resolved.addrs.push(addr);
            }
            if dropped > 0 {
                resolved.errors.push(SeedError::AddressesCapped {
                    seed: raw.clone(),
                    dropped,
                    addresses_max: self.limits.addresses_max,
                });
            }
        }
        resolved
    }
}
