//! One shoal node: binds every socket first (so a port in use or a bad
//! certificate fails the start, not a later moment), joins its fleet and
//! pulls the fleet's state before its listeners accept (warm start), runs
//! the listeners, health checkers, fleet driver and admin endpoint, and on
//! shutdown tells the fleet it leaves, stops accepting, lets open
//! connections finish for up to the drain timeout, then cuts what is left.
//!
//! While it serves, it takes live reloads ([`crate::reload`], decision
//! 57), one at a time, in its main loop: listeners added are bound and
//! accept; removed ones stop accepting, their connections finish within
//! the drain timeout and are then cut; changed ones change in place and
//! keep their sockets unless their address moved; the node certificate is
//! re-read. Nothing is applied unless everything validates and binds.

use crate::admin::{self, AdminState};
use crate::checker;
use crate::clock::Clock;
use crate::dataplane::{self, AcceptGroup, DataPlane};
use crate::dns::DnsSockets;
use crate::fleet::{Fleet, FleetError, FleetHandle, NodeParts, ReloadApply};
use crate::handover::{self, HandoverError, Predecessor, Sockets, Step};
use crate::listener::{FleetWakes, ListenerSet, ListenerState};
use crate::metrics::{BackendLabels, Metrics};
use crate::names::{self, Answers, Plan};
use crate::reload::{Loader, RELOADS_QUEUED_MAX, ReloadHandle, ReloadRequest};
use shoal_config::{Config, ListenerConfig, NameAddrs};
use shoal_core::dns::ClientAnswer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A TCP socket could not be bound; `what` is e.g. `listener "web"`.
    #[error("{what}: cannot bind {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Handover(#[from] HandoverError),
    /// The DNS resolver for backend names could not be set up.
    #[error("node.resolver: {0}")]
    Resolver(#[source] shoal_seeds::SeedError),
    #[error("cannot start the data threads (node.worker_threads = {threads}): {source}")]
    Threads {
        threads: usize,
        source: std::io::Error,
    },
}

/// A node with its sockets bound, ready to [`Node::run`].
#[derive(Debug)]
pub struct Node {
    config: Config,
    listeners: Vec<(Arc<ListenerState>, Vec<std::net::TcpListener>)>,
    data: DataPlane,
    admin: Option<TcpListener>,
    metrics: Arc<Metrics>,
    fleet: Option<Fleet>,
    /// Fires when the fleet's warm start is over (the listeners may accept).
    fleet_ready: Option<oneshot::Receiver<()>>,
    /// Where a successor asks for this node's sockets (`node.takeover_socket`).
    takeover: Option<UnixListener>,
    /// The process this one took the sockets from: told once this one accepts.
    predecessor: Option<Predecessor>,
    /// With `[dns]`: the server's sockets, and the answer it serves (the
    /// fleet task updates it; without a fleet, this node's own addresses
    /// while it accepts).
    dns: Option<DnsSockets>,
    answer: watch::Sender<Arc<ClientAnswer>>,
    clock: Clock,
    wakes: Arc<FleetWakes>,
    /// Cuts every connection; each listener's `cut` is a child of it.
    hard_stop: CancellationToken,
    /// With `[cluster]`: the certificates the fleet endpoint uses now.
    tls: Option<shoal_transport::ClusterTls>,
    /// Reads the configuration again on a reload; `None`: no reloads.
    loader: Option<Loader>,
    reloads: (mpsc::Sender<ReloadRequest>, mpsc::Receiver<ReloadRequest>),
    /// The last answer for every backend name ([`crate::names`]).
    names: NameAddrs,
    /// Who is asked for them, and what the refresher task looks up.
    plan: watch::Sender<Plan>,
}

/// One listener while the node serves: what stops it, and duplicates of
/// its listening sockets (to set a new backlog, and for a successor).
#[derive(Debug)]
struct Live {
    state: Arc<ListenerState>,
    accepting: AcceptGroup,
    checker: CancellationToken,
    dups: Vec<std::net::TcpListener>,
}

fn dups(group: &[std::net::TcpListener], name: &str) -> Vec<std::net::TcpListener> {
    group
        .iter()
        .filter_map(|l| {
            l.try_clone()
                .inspect_err(|e| warn!(listener = %name, error = %e, "cannot keep a duplicate of a listening socket"))
                .ok()
        })
        .collect()
}

/// What a reload works with in [`Node::run`].
struct Serving {
    stop_accepting: CancellationToken,
    /// The fleet task, which owns the QUIC endpoint: holding a handle on
    /// the endpoint here would keep its UDP socket bound after the fleet
    /// closed it for a successor.
    fleet: Option<FleetHandle>,
    listeners: Arc<ListenerSet>,
    /// With `node.takeover_socket`: what a successor would be handed.
    offer: Option<Arc<tokio::sync::Mutex<Sockets>>>,
    admin_dup: Option<std::net::TcpListener>,
    dns_dup: Option<(std::net::UdpSocket, std::net::TcpListener)>,
}

fn bind_tcp(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    // Lets a restarted node bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Whether `l` is bound at `addr` (port 0 in `addr`: any port of that IP).
fn same_address(l: &std::net::TcpListener, addr: SocketAddr) -> bool {
    l.local_addr()
        .is_ok_and(|a| a == addr || (addr.port() == 0 && a.ip() == addr.ip()))
}

/// The handed-over sockets of listener `name`, if they are bound at
/// `bind`, with their address.
fn inherited_group(
    sockets: &mut Sockets,
    name: &str,
    bind: SocketAddr,
) -> Option<std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)>> {
    let i = sockets
        .listeners
        .iter()
        .position(|(n, g)| n == name && g.first().is_some_and(|l| same_address(l, bind)))?;
    let (_, group) = sockets.listeners.swap_remove(i);
    Some((|| {
        let local = group[0].local_addr()?;
        for l in &group {
            l.set_nonblocking(true)?;
        }
        info!(listener = %name, bind = %local, sockets = group.len(), "listening sockets taken over");
        Ok((group, local))
    })())
}

/// Duplicates of every listening socket, for a successor.
fn offer(
    lives: &[Live],
    admin: Option<&std::net::TcpListener>,
    dns: Option<&(std::net::UdpSocket, std::net::TcpListener)>,
) -> Sockets {
    let mut sockets = Sockets::default();
    for live in lives {
        sockets
            .listeners
            .push((live.state.name.clone(), dups(&live.dups, &live.state.name)));
    }
    sockets.admin = admin.and_then(|a| a.try_clone().ok());
    sockets.dns = dns.and_then(|(udp, tcp)| Some((udp.try_clone().ok()?, tcp.try_clone().ok()?)));
    sockets
}

/// A listener a reload removed, which has stopped accepting: its
/// connections finish, and those left after `drain` are cut.
fn retire(state: Arc<ListenerState>, drain: Duration) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + drain;
        // The count is a gauge the connections keep; polling it is cheap
        // and bounded by the drain.
        while state.active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = state.cut.cancelled() => return,
            }
        }
        let open = state.active.get();
        if open > 0 {
            warn!(listener = %state.name, open, "removed listener: drain timeout reached; closing its remaining connections");
            state.cut.cancel();
        } else {
            info!(listener = %state.name, "removed listener: its last connection ended");
        }
    });
}

impl Node {
    /// Binds every listener, the admin endpoint and (with `[cluster]`) the
    /// fleet's QUIC endpoint, loading the certificates from their files.
    pub fn bind(config: Config) -> Result<Node, StartError> {
        Node::bind_with(config, None, None)
    }

    /// [`Node::bind`] with the fleet's certificates already in memory.
    pub fn bind_with_tls(
        config: Config,
        tls: &shoal_transport::ClusterTls,
    ) -> Result<Node, StartError> {
        Node::bind_with(config, Some(tls), None)
    }

    /// [`Node::bind`] with the certificates in memory if given, and the
    /// sockets a running process handed over ([`handover::take_over`]):
    /// a listener (by name, at the same address) and the admin endpoint
    /// (at the same address) use them instead of binding; a listener the
    /// old process had and this configuration lacks, or moved, is closed
    /// here (the old process closes its copy when it stops accepting).
    pub fn bind_with(
        config: Config,
        tls: Option<&shoal_transport::ClusterTls>,
        inherited: Option<(Sockets, Predecessor)>,
    ) -> Result<Node, StartError> {
        let (mut sockets, predecessor) = match inherited {
            Some((s, p)) => (s, Some(p)),
            None => (Sockets::default(), None),
        };
        let clock = Clock::new();
        let wakes = Arc::new(FleetWakes::default());
        let hard_stop = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let threads = config.node.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let bind_err = |source| StartError::Bind {
                what: format!("listener \"{}\"", l.name),
                addr: l.bind,
                source,
            };
            let (group, local) = match inherited_group(&mut sockets, &l.name, l.bind) {
                Some(found) => found.map_err(bind_err)?,
                None => dataplane::bind_group(l.bind, l.backlog, threads).map_err(bind_err)?,
            };
            // Names have no address until the first lookup, in `run`.
            let state = ListenerState::new(
                l.clone(),
                &NameAddrs::new(),
                local,
                clock,
                &metrics,
                wakes.clone(),
                hard_stop.child_token(),
            );
            listeners.push((Arc::new(state), group));
        }
        for (name, _) in &sockets.listeners {
            info!(listener = %name, "a listener of the previous process is not in this configuration (or moved): closed here");
        }
        let inherited_admin = sockets.admin.take();
        let admin = config
            .node
            .admin
            .map(|addr| {
                let err = |source| StartError::Bind {
                    what: "admin endpoint (node.admin)".to_owned(),
                    addr,
                    source,
                };
                match inherited_admin.filter(|a| same_address(a, addr)) {
                    Some(a) => {
                        a.set_nonblocking(true).map_err(err)?;
                        TcpListener::from_std(a).map_err(err)
                    }
                    None => bind_tcp(addr, 128).map_err(err),
                }
            })
            .transpose()?;
        // A successor's own successor asks here; the predecessor still
        // listens on the path, so it is taken over too.
        let takeover = config
            .node
            .takeover_socket
            .as_deref()
            .map(|p| handover::listen(p, predecessor.is_some()))
            .transpose()?;
        let inherited_dns = sockets.dns.take();
        let dns = config
            .dns
            .as_ref()
            .map(|d| {
                let err = |source| StartError::Bind {
                    what: "DNS server (dns.bind)".to_owned(),
                    addr: d.bind,
                    source,
                };
                let same = |(udp, _): &(std::net::UdpSocket, std::net::TcpListener)| {
                    udp.local_addr()
                        .is_ok_and(|a| a == d.bind || (d.bind.port() == 0 && a.ip() == d.bind.ip()))
                };
                match inherited_dns.filter(same) {
                    Some((udp, tcp)) => DnsSockets::from_std(udp, tcp).map_err(err),
                    None => DnsSockets::bind(d.bind).map_err(err),
                }
            })
            .transpose()?;
        let (answer, _) = watch::channel(Arc::new(ClientAnswer::default()));
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut tls_now = None;
        let fleet = match &config.cluster {
            None => None,
            Some(c) => {
                let parts = NodeParts {
                    node_name: config.node.name.clone(),
                    listeners: listeners.iter().map(|(s, _)| s.clone()).collect(),
                    clock,
                    metrics: metrics.clone(),
                    wakes: wakes.clone(),
                    answer: dns.is_some().then(|| answer.clone()),
                };
                let fleet = Fleet::bind(c, tls, parts, ready_tx)?;
                tls_now = Some(fleet.tls().clone());
                Some(fleet)
            }
        };
        let data =
            DataPlane::new(threads).map_err(|source| StartError::Threads { threads, source })?;
        let (plan, _) = watch::channel(Plan {
            resolver: names::resolver(&config).map_err(StartError::Resolver)?,
            hosts: config.backend_names().into_iter().collect(),
            interval: config.node.backend_resolve_interval,
        });
        Ok(Node {
            config,
            listeners,
            data,
            admin,
            metrics,
            fleet_ready: fleet.is_some().then_some(ready_rx),
            fleet,
            takeover,
            predecessor,
            dns,
            answer,
            clock,
            wakes,
            hard_stop,
            tls: tls_now,
            loader: None,
            reloads: mpsc::channel(RELOADS_QUEUED_MAX),
            names: NameAddrs::new(),
            plan,
        })
    }

    /// Lets the node reload: SIGHUP ([`ReloadHandle::signal`]) and `POST
    /// /reload` re-read the configuration with `loader`. Without one,
    /// `POST /reload` answers that there is nothing to reload.
    pub fn set_loader(&mut self, loader: Loader) {
        self.loader = Some(loader);
    }

    /// Where reloads are asked for (SIGHUP). Reloads wait while the node
    /// warms up; once it stops accepting it takes none.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.reloads.0.clone())
    }

    /// Every listener's shared state (pools, counts), e.g. for a demo table.
    pub fn listener_states(&self) -> Vec<Arc<ListenerState>> {
        self.listeners.iter().map(|(s, _)| s.clone()).collect()
    }

    /// The fleet endpoint's bound address, with `[cluster]`.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.fleet.as_ref().map(Fleet::local_addr)
    }

    /// Each listener's name and bound address.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(s, _)| (s.name.clone(), s.local_addr()))
            .collect()
    }

    /// The admin endpoint's bound address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The DNS server's bound address (UDP and TCP), with `[dns]`.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().and_then(|d| d.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains (see the module doc).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let stop_accepting = CancellationToken::new();
        let hard_stop = self.hard_stop.clone();
        let connections = TaskTracker::new();
        let mut background = Vec::new();
        let states: Vec<_> = self.listeners.iter().map(|(s, _)| s.clone()).collect();
        let listener_set = Arc::new(ListenerSet::new(states.clone()));
        let mut lives: Vec<Live> = self
            .listeners
            .iter()
            .map(|(state, group)| Live {
                state: state.clone(),
                accepting: AcceptGroup::new(&stop_accepting),
                checker: stop_accepting.child_token(),
                dups: dups(group, &state.name),
            })
            .collect();
        // Checks start at once, so a warm start that finds no peer still
        // has this node's own verdicts soon.
        for live in &lives {
            background.push(tokio::spawn(checker::run(
                live.state.clone(),
                self.metrics.clone(),
                live.checker.clone(),
            )));
        }
        let mut fleet_task = None;
        let fleet_handle = self.fleet.as_ref().map(Fleet::handle);

        let drain_node = CancellationToken::new();
        // The admin endpoint serves from the start: during the warm start
        // too, so /status shows a node that is joining.
        let admin_dup = match (&self.takeover, &self.admin) {
            (Some(_), Some(a)) => socket2::SockRef::from(a)
                .try_clone()
                .map(std::net::TcpListener::from)
                .inspect_err(|e| warn!(error = %e, "cannot keep the admin socket for a successor"))
                .ok(),
            _ => None,
        };
        let reload_handle = self.loader.is_some().then(|| self.reload_handle());
        let admin_task = self.admin.take().map(|tcp| {
            if let Ok(addr) = tcp.local_addr() {
                info!(admin = %addr, "admin endpoint serving /metrics and /status");
            }
            let router = admin::router(AdminState {
                node_name: self.config.node.name.clone(),
                listeners: listener_set.clone(),
                reload: reload_handle.clone(),
                metrics: self.metrics.clone(),
                fleet: fleet_handle.clone(),
                drain_node: drain_node.clone(),
                stopped_accepting: stop_accepting.clone(),
            });
            // Serves through the drain; stops at the hard stop, so an admin
            // client cannot keep the node alive past it.
            tokio::spawn(admin::serve(
                tcp,
                router,
                admin::AdminLimits::from_config(&self.config.node),
                self.metrics.clone(),
                hard_stop.clone(),
            ))
        });
        // The fleet leaves when the node stops accepting, or earlier, for
        // a successor (see `handover`).
        let leave_fleet = stop_accepting.child_token();
        let fleet_stop = hard_stop.child_token();
        // The DNS server, like the admin endpoint, serves from the start
        // (an empty answer is REFUSED) until the hard stop.
        let standalone = self.fleet.is_none();
        // It stops early for a successor, which takes its sockets.
        let dns_stop = hard_stop.child_token();
        let dns_dup = match (&self.takeover, &self.dns) {
            (Some(_), Some(d)) => d
                .try_clone()
                .inspect_err(|e| warn!(error = %e, "cannot keep the DNS sockets for a successor"))
                .ok(),
            _ => None,
        };
        let dns_task = match (self.dns.take(), &self.config.dns) {
            (Some(sockets), Some(config)) => {
                if let Ok(addr) = sockets.local_addr() {
                    info!(dns = %addr, name = %config.name, "DNS server answering for the fleet's name");
                }
                Some(tokio::spawn({
                    let config = config.clone();
                    let answer = self.answer.subscribe();
                    let metrics = self.metrics.clone();
                    let stop = dns_stop.clone();
                    async move { crate::dns::serve(sockets, &config, answer, metrics, stop).await }
                }))
            }
            _ => None,
        };
        if let Some(fleet) = self.fleet.take() {
            info!(cluster = %fleet.local_addr(), "joining the fleet");
            fleet_task = Some(tokio::spawn(
                fleet.run(leave_fleet.clone(), fleet_stop.clone()),
            ));
        }
        // Backend names are looked up once before the listeners accept
        // (during the warm start), within the resolver's bound.
        let hosts = self.plan.borrow().hosts.clone();
        if !hosts.is_empty() {
            let resolver = self.plan.borrow().resolver.clone();
            let answers = names::lookup(&resolver, &hosts).await;
            self.take_answers(answers, states.clone(), fleet_handle.as_ref())
                .await;
        }
        let (answers_tx, mut answers_rx) = mpsc::channel::<Answers>(1);
        let refresher = tokio::spawn(names::refresher(self.plan.subscribe(), answers_tx));
        {
            // The node takes part in the fleet from now on; its listeners
            // wait for the warm start (the core bounds it).
            if let Some(ready) = self.fleet_ready.take() {
                tokio::select! {
                    _ = ready => {}
                    () = &mut shutdown => {
                        info!("stopped before the warm start finished");
                        refresher.abort();
                        stop_accepting.cancel();
                        hard_stop.cancel();
                        if let Some(task) = fleet_task {
                            let _ = task.await;
                        }
                        if let Some(task) = admin_task {
                            let _ = task.await;
                        }
                        if let Some(task) = dns_task {
                            let _ = task.await;
                        }
                        return;
                    }
                }
            }
        }
        for (state, _) in &self.listeners {
            let config = state.config();
            info!(listener = %state.name, bind = %state.local_addr(), policy = %config.policy,
                backends = config.backends.len(), threads = self.data.threads(), "listening");
        }
        // What a successor will be handed: duplicates of the sockets the
        // data threads accept on (taken before they get them).
        let offer = self.takeover.as_ref().map(|_| {
            Arc::new(tokio::sync::Mutex::new(offer(
                &lives,
                admin_dup.as_ref(),
                dns_dup.as_ref(),
            )))
        });
        let groups = std::mem::take(&mut self.listeners)
            .into_iter()
            .zip(&lives)
            .map(|((state, group), live)| (state, group, live.accepting.clone()))
            .collect();
        self.data.start(groups, &connections, &hard_stop);
        if let Some(p) = self.predecessor.take() {
            match p.accepting().await {
                Ok(()) => {
                    info!("took over from the previous process: it stops accepting and drains")
                }
                Err(e) => {
                    warn!(error = %e, "could not tell the previous process to stop accepting")
                }
            }
        }
        let (steps_tx, mut steps_rx) = mpsc::channel(1);
        if let (Some(listener), Some(offer)) = (self.takeover.take(), offer.clone()) {
            let stop = stop_accepting.clone();
            // The duplicates live in this task (and in `serving`, for
            // reloads): once the node stops accepting, they must go too,
            // or the kernel would keep queueing clients nobody accepts.
            background.push(tokio::spawn(async move {
                tokio::select! {
                    () = handover::serve(listener, offer, steps_tx) => {}
                    () = stop.cancelled() => {}
                }
            }));
        }
        let mut serving = Serving {
            stop_accepting: stop_accepting.clone(),
            fleet: fleet_handle.clone(),
            listeners: listener_set.clone(),
            offer,
            admin_dup,
            dns_dup,
        };
        // A node of its own answers with its own addresses while it
        // accepts (the same core function the fleet's answer comes from),
        // and nothing from a drain-node or a shutdown on.
        if standalone {
            self.answer.send_replace(Arc::new(ClientAnswer::from_view(
                &self.config.client_addrs,
                [],
            )));
            let answer = self.answer.clone();
            let stopped = stop_accepting.clone();
            tokio::spawn(async move {
                stopped.cancelled().await;
                answer.send_replace(Arc::new(ClientAnswer::default()));
            });
        }

        let mut drained = false;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                // What a deploy script asks before stopping the node: out
                // of new-connection duty (listeners closed, the fleet told
                // it leaves), open connections finish; the process stays
                // until a signal ends it, serving /status meanwhile.
                () = drain_node.cancelled(), if !drained => {
                    info!(open = connections.len(),
                        "drain-node: stopped accepting and left the fleet; open connections finish; SIGTERM or Ctrl-C ends the process");
                    stop_accepting.cancel();
                    drained = true;
                    self.reloads.1.close();
                    serving.offer = None;
                    for live in &mut lives {
                        live.dups.clear();
                    }
                }
                Some(answers) = answers_rx.recv(), if !drained => {
                    let now = serving.listeners.get();
                    self.take_answers(answers, now, serving.fleet.as_ref()).await;
                }
                Some(request) = self.reloads.1.recv(), if !drained => {
                    let outcome = self.reload(&mut lives, &serving).await;
                    match &outcome {
                        Ok(summary) => {
                            self.metrics.reloads.inc();
                            info!(source = ?request.source, changes = %summary, "configuration reloaded");
                        }
                        Err(line) => {
                            self.metrics.reload_failures.inc();
                            error!(source = ?request.source, error = %line, "reload refused: configuration unchanged");
                        }
                    }
                    if let Some(reply) = request.reply {
                        let _ = reply.send(outcome);
                    }
                }
                Some(step) = steps_rx.recv() => match step {
                    Step::Release(done) => {
                        info!("a successor takes over: leaving the fleet");
                        leave_fleet.cancel();
                        fleet_stop.cancel();
                        dns_stop.cancel();
                        if let Some(task) = fleet_task.take() {
                            let _ = task.await;
                        }
                        let _ = done.send(());
                    }
                    Step::HandedOver => {
                        info!("the successor accepts: this process stops accepting and drains");
                        break;
                    }
                },
            }
        }
        // No reload from here on: SIGHUP is ignored, POST /reload answers
        // 503. The duplicates of the listening sockets go, so a listener
        // is closed once its accept loops end. Names are no longer looked
        // up: the pools keep the backends they have while they drain.
        self.reloads.1.close();
        refresher.abort();
        drop(serving);
        drop(lives);
        let drain = self.config.node.drain_timeout;
        info!(
            open = connections.len(),
            drain_timeout_ms = drain.as_millis() as u64,
            "shutting down: stopped accepting, draining open connections"
        );
        stop_accepting.cancel();
        for task in background {
            let _ = task.await;
        }
        self.data.stopped_accepting().await;
        connections.close();
        if tokio::time::timeout(drain, connections.wait())
            .await
            .is_err()
        {
            warn!(
                open = connections.len(),
                "drain timeout reached; closing the remaining connections"
            );
            hard_stop.cancel();
            // Cancelled connections end at their next poll; this bound only
            // guards against a task that never yields.
            let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
        }
        hard_stop.cancel();
        self.data.finish().await;
        if let Some(task) = fleet_task {
            let _ = task.await;
        }
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        if let Some(task) = dns_task {
            let _ = task.await;
        }
        info!("stopped");
    }

    /// Takes a lookup's answers ([`names::absorb`]); if a name's
    /// addresses changed, makes every one of `listeners`' pools its
    /// configuration's members again, on the fleet task when there is one
    /// (the report keys follow).
    async fn take_answers(
        &mut self,
        answers: Answers,
        listeners: Vec<Arc<ListenerState>>,
        fleet: Option<&FleetHandle>,
    ) {
        if !names::absorb(&mut self.names, answers, &self.metrics) {
            return;
        }
        let names = self.names.clone();
        let metrics = self.metrics.clone();
        let apply: ReloadApply = Box::new(move || {
            for state in &listeners {
                if state.config().names().next().is_none() {
                    continue;
                }
                let config = (*state.config()).clone();
                for backend in state.reconfigure(config, &names, &metrics) {
                    metrics.forget_backend(&BackendLabels {
                        listener: state.name.clone(),
                        backend: backend.to_string(),
                    });
                }
            }
            listeners
        });
        match fleet {
            Some(fleet) => {
                if let Err(apply) = fleet.reload(apply, None).await {
                    apply();
                }
            }
            None => {
                apply();
            }
        }
    }

    /// One live reload (see the module doc): everything that can fail is
    /// done before anything is applied. The answer is a summary of what
    /// changed, or the one line saying why nothing was.
    async fn reload(&mut self, lives: &mut Vec<Live>, serving: &Serving) -> Result<String, String> {
        let Some(loader) = &self.loader else {
            return Err("this node was not started from a configuration file".to_owned());
        };
        let origin = loader.origin.clone();
        let loaded = (loader.load)()?;
        let plan = shoal_config::diff::diff(&self.config, &loaded.config)
            .map_err(|e| format!("{origin}: {e}"))?;
        if let (Some(old), Some(new)) = (&self.tls, &loaded.tls)
            && !old.same_ca(new)
        {
            return Err(format!(
                "{origin}: cluster.ca: the CA certificate changed: the fleet's CA cannot change while the node runs (restart it, or upgrade it with --take-over); nothing was applied"
            ));
        }
        // A hand-over in progress holds the offer; a reload would change
        // the sockets it is handing over.
        let mut offer_guard = match &serving.offer {
            None => None,
            Some(o) => Some(o.try_lock().map_err(|_| {
                "a binary upgrade (take-over) is in progress: reload after it; nothing was applied"
                    .to_owned()
            })?),
        };
        // New backend names are looked up before anything is applied (a
        // name that does not answer is no reason to refuse the reload: its
        // backends come with its first answer).
        let hosts: Vec<String> = loaded.config.backend_names().into_iter().collect();
        let resolver = if plan.name_resolution {
            names::resolver(&loaded.config)
                .map_err(|e| format!("{origin}: node.resolver: {e}; nothing was applied"))?
        } else {
            self.plan.borrow().resolver.clone()
        };
        let new_hosts: Vec<String> = hosts
            .iter()
            .filter(|h| !self.names.contains_key(*h))
            .cloned()
            .collect();
        if !new_hosts.is_empty() {
            let answers = names::lookup(&resolver, &new_hosts).await;
            names::absorb(&mut self.names, answers, &self.metrics);
        }
        // Bind every new socket first: a port in use changes nothing.
        let threads = self.data.threads();
        let mut bound: Vec<(String, Vec<std::net::TcpListener>, SocketAddr)> = Vec::new();
        for l in &loaded.config.listeners {
            let moved = plan.changed.iter().any(|c| c.name == l.name && c.rebind);
            if plan.added.contains(&l.name) || moved {
                let (group, local) =
                    dataplane::bind_group(l.bind, l.backlog, threads).map_err(|e| {
                        format!(
                            "{origin}: listener \"{}\": cannot bind {}: {e}; nothing was applied",
                            l.name, l.bind
                        )
                    })?;
                bound.push((l.name.clone(), group, local));
            }
        }

        // From here on nothing fails. New fleet connections, either way,
        // use the certificate on disk now (the fleet task sets it).
        if let Some(tls) = &loaded.tls {
            self.tls = Some(tls.clone());
        }
        let drain = loaded.config.node.drain_timeout;
        let mut old: Vec<Live> = std::mem::take(lives);
        // Accept groups that stop: the answer waits for their loops, so
        // that from then on their sockets are closed (connects refused).
        let mut closing: Vec<AcceptGroup> = Vec::new();
        for name in &plan.removed {
            if let Some(i) = old.iter().position(|l| &l.state.name == name) {
                let live = old.swap_remove(i);
                live.accepting.stop();
                closing.push(live.accepting.clone());
                live.checker.cancel();
                info!(listener = %name, open = live.state.active.get(), drain_timeout_ms = drain.as_millis() as u64,
                    "listener removed: stopped accepting; its connections finish within the drain timeout");
                retire(live.state.clone(), drain);
            }
        }
        let mut changes: Vec<(Arc<ListenerState>, ListenerConfig)> = Vec::new();
        let mut start: Vec<(Arc<ListenerState>, Vec<std::net::TcpListener>, AcceptGroup)> =
            Vec::new();
        let mut new_checkers = Vec::new();
        for l in &loaded.config.listeners {
            let group = bound
                .iter()
                .position(|(n, _, _)| n == &l.name)
                .map(|i| bound.swap_remove(i));
            match old.iter().position(|o| o.state.name == l.name) {
                None => {
                    let Some((_, group, local)) = group else {
                        continue;
                    };
                    let state = Arc::new(ListenerState::new(
                        l.clone(),
                        &self.names,
                        local,
                        self.clock,
                        &self.metrics,
                        self.wakes.clone(),
                        self.hard_stop.child_token(),
                    ));
                    info!(listener = %l.name, bind = %local, "listener added");
                    let live = Live {
                        state: state.clone(),
                        accepting: AcceptGroup::new(&serving.stop_accepting),
                        checker: serving.stop_accepting.child_token(),
                        dups: dups(&group, &l.name),
                    };
                    new_checkers.push((state.clone(), live.checker.clone()));
                    start.push((state, group, live.accepting.clone()));
                    lives.push(live);
                }
                Some(i) => {
                    let mut live = old.swap_remove(i);
                    let diff = plan.changed.iter().find(|c| c.name == l.name);
                    if let Some(diff) = diff {
                        changes.push((live.state.clone(), l.clone()));
                        if let Some((_, group, local)) = group {
                            // A new address: the old sockets stop accepting
                            // (their connections go on), the new accept.
                            live.accepting.stop();
                            closing.push(live.accepting.clone());
                            live.accepting = AcceptGroup::new(&serving.stop_accepting);
                            live.dups = dups(&group, &l.name);
                            info!(listener = %l.name, bind = %local, "listener moved");
                            live.state.set_local_addr(local);
                            start.push((live.state.clone(), group, live.accepting.clone()));
                        } else if diff.backlog {
                            let backlog = i32::try_from(l.backlog).unwrap_or(i32::MAX);
                            for d in &live.dups {
                                if let Err(e) = socket2::SockRef::from(d).listen(backlog) {
                                    warn!(listener = %l.name, error = %e, "cannot set the new backlog");
                                }
                            }
                        }
                    }
                    lives.push(live);
                }
            }
        }
        // Whatever is left was matched to nothing (cannot happen with a
        // plan from these two configurations).
        for live in old {
            error!(listener = %live.state.name, "a listener the reload did not place was stopped (bug)");
            live.accepting.stop();
            live.checker.cancel();
        }
        let order: Vec<Arc<ListenerState>> = lives.iter().map(|l| l.state.clone()).collect();
        // The pools change where the core node reads them with the report
        // keys: on the fleet task, between two of its inputs.
        let apply: ReloadApply = {
            let order = order.clone();
            let metrics = self.metrics.clone();
            let names = self.names.clone();
            Box::new(move || {
                for (state, config) in changes {
                    for backend in state.reconfigure(config, &names, &metrics) {
                        metrics.forget_backend(&BackendLabels {
                            listener: state.name.clone(),
                            backend: backend.to_string(),
                        });
                    }
                }
                order
            })
        };
        match &serving.fleet {
            Some(fleet) => {
                if let Err(apply) = fleet.reload(apply, loaded.tls.clone()).await {
                    apply();
                }
            }
            None => {
                apply();
            }
        }
        for (state, group, stop) in start {
            self.data.add_listener(state, group, stop);
        }
        for (state, stop) in new_checkers {
            tokio::spawn(checker::run(state, self.metrics.clone(), stop));
        }
        serving.listeners.set(order);
        if let Some(offer) = offer_guard.as_deref_mut() {
            *offer = self::offer(lives, serving.admin_dup.as_ref(), serving.dns_dup.as_ref());
        }
        drop(offer_guard);
        for group in closing {
            // Bounded: a data thread busy for longer than this only delays
            // the close, which follows at its next poll.
            let _ = tokio::time::timeout(Duration::from_secs(2), group.stopped()).await;
        }
        let summary = plan.summary();
        self.names.retain(|h, _| hosts.contains(h));
        self.plan.send_replace(Plan {
            resolver,
            hosts,
            interval: loaded.config.node.backend_resolve_interval,
        });
        self.config = loaded.config;
        Ok(summary)
    }
}
