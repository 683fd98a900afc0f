//! Backend names (decision 59): a listener's `"name:port"` backend is
//! every A and AAAA address the name resolves to, each a backend of its
//! own, named by its address (so two nodes that resolve the same address
//! count the same backend in the fleet's reports).
//!
//! The node's main loop ([`crate::Node::run`]) owns the last answer of
//! every name ([`NameAddrs`]). It looks every name up before its
//! listeners first accept, again on every reload that brings a new name,
//! and every `node.backend_resolve_interval_ms` on a background task
//! ([`refresher`]); each time an answer changes a name's addresses, every
//! listener's pool is made its configuration's members again
//! ([`shoal_core::Pool::reconcile`]): an address that left the answer is
//! drained (no new connection, the open ones finish), a new one added.
//!
//! What counts as an answer: addresses, or the DNS saying the name has
//! none (NXDOMAIN, no A or AAAA record): that empties it. A lookup that
//! fails (no answer in time, a server failure, a refused query) is no
//! answer: the name keeps its last addresses, the failure is logged and
//! counted (`shoal_backend_name_lookup_failures_total`). A name that has
//! never answered has no address, and does not stop the node from
//! starting: DNS trouble must not keep a balancer from restarting.

use crate::metrics::{Metrics, NameLabels};
use shoal_config::{Config, NAME_ADDRESSES_MAX, NameAddrs};
use shoal_seeds::{SeedError, SeedLimits, SeedResolver};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// One lookup of each name: its addresses, or why there is no answer.
pub type Answers = Vec<(String, Result<Vec<IpAddr>, SeedError>)>;

/// The resolver `config` asks for backend names (`node.resolver`, else
/// `cluster.resolver`, else the system resolver).
pub fn resolver(config: &Config) -> Result<SeedResolver, SeedError> {
    SeedResolver::new(
        config.backend_resolver(),
        SeedLimits {
            addresses_max: NAME_ADDRESSES_MAX,
            ..SeedLimits::default()
        },
    )
}

/// Looks every one of `hosts` up, concurrently, each within the
/// resolver's bound ([`SeedLimits::seed_timeout`]). Never fails as a
/// whole; the answers are in `hosts`' order.
pub async fn lookup(resolver: &SeedResolver, hosts: &[String]) -> Answers {
    let mut set = JoinSet::new();
    for (i, host) in hosts.iter().enumerate() {
        let resolver = resolver.clone();
        let host = host.clone();
        set.spawn(async move {
            // The seed resolver takes `host:port`; the port is the entry's.
            let found = resolver.resolve(&[format!("{host}:1")]).await;
            let answer = match found.errors.into_iter().next() {
                None | Some(SeedError::AddressesCapped { .. }) => {
                    Ok(found.addrs.iter().map(|a| a.ip()).collect())
                }
                Some(SeedError::NoSuchName { .. } | SeedError::NoAddresses { .. }) => {
                    Ok(Vec::new())
                }
                Some(e) => Err(e),
            };
            (i, answer)
        });
    }
    let mut answers: Vec<Option<Result<Vec<IpAddr>, SeedError>>> = vec![None; hosts.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, answer)) = joined {
            answers[i] = Some(answer);
        }
    }
    hosts
        .iter()
        .zip(answers)
        .map(|(host, a)| {
            let a = a.unwrap_or_else(|| {
                Err(SeedError::Lookup {
                    seed: format!("{host}:1"),
                    host: host.clone(),
                    resolver: "the resolver".into(),
                    reason: "lookup task failed".into(),
                })
            });
            (host.clone(), a)
        })
        .collect()
}

/// Takes `answers` into `addrs`, logging and counting what changed and
/// what failed. Returns whether any name's addresses changed.
pub fn absorb(addrs: &mut NameAddrs, answers: Answers, metrics: &Metrics) -> bool {
    let mut changed = false;
    for (host, answer) in answers {
        let labels = NameLabels { name: host.clone() };
        match answer {
            Ok(mut ips) => {
                ips.sort_unstable();
                ips.dedup();
                if ips.len() >= NAME_ADDRESSES_MAX {
                    warn!(name = %host, kept = NAME_ADDRESSES_MAX,
                        "the backend name has more addresses than a name may stand for; the rest are left out");
                }
                metrics
                    .name_addresses
                    .get_or_create(&labels)
                    .set(ips.len() as i64);
                if addrs.get(&host) != Some(&ips) {
                    let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                    if ips.is_empty() {
                        warn!(name = %host, "the backend name has no address (NXDOMAIN or no A/AAAA record): its backends drain");
                    } else {
                        info!(name = %host, addresses = %shown.join(" "), "backend name resolved");
                    }
                    addrs.insert(host, ips);
                    changed = true;
                }
            }
            Err(error) => {
                metrics.name_lookup_failures.get_or_create(&labels).inc();
                let kept = addrs.get(&host).map_or(0, Vec::len);
                warn!(name = %host, %error, kept,
                    "backend name lookup failed: its last addresses stay");
            }
        }
    }
    changed
}

/// What the [`refresher`] looks up, and how often: the main loop sends a
/// new one on every reload.
#[derive(Debug, Clone)]
pub struct Plan {
    pub resolver: SeedResolver,
    pub hosts: Vec<String>,
    pub interval: Duration,
}

/// Looks `plan`'s names up every interval and sends the answers to the
/// main loop; ends when either side goes. Waits an interval first: the
/// main loop looked them up just before.
pub async fn refresher(mut plan: watch::Receiver<Plan>, answers: mpsc::Sender<Answers>) {
    loop {
        let interval = plan.borrow().interval;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = plan.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let Plan {
            resolver, hosts, ..
        } = plan.borrow_and_update().clone();
        if hosts.is_empty() {
            continue;
        }
        let found = lookup(&resolver, &hosts).await;
        if answers.send(found).await.is_err() {
            return;
        }
    }
}
