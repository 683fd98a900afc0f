//! The data plane: the threads that accept and proxy client connections.
//!
//! Thread per core, like HAProxy's `nbthread`: each of the node's data
//! threads runs its own single-threaded tokio runtime, and every listener
//! has one socket per thread in an `SO_REUSEPORT` group, so the kernel
//! spreads new connections over the threads and a connection lives on the
//! thread that accepted it. Nothing on a connection's path wakes another
//! thread; the shared state (pools, counts, limits, metrics) is behind
//! locks and atomics that never wait on I/O.
//!
//! The kernel's spread is a hash of the connection's addresses: fine for
//! many connections, lopsided for a few heavy ones (8 bulk streams can land
//! 6 and 2). So a thread that holds clearly more connections than the
//! least busy one hands a new connection over to it (see [`Workers::pick`]).
//!
//! Measured against tokio's work-stealing runtime in bench/DECISIONS.md.

use crate::listener::{self, ListenerState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

/// Binds one listener's `SO_REUSEPORT` group: `threads` sockets on the same
/// address. Returns the sockets and the address bound (port 0 resolved).
///
/// A plain socket is bound first, without `SO_REUSEPORT`: it fails with
/// "address in use" if anything holds the port, including another shoal
/// whose own group would otherwise silently share it. The group then binds
/// the port the probe got.
pub fn bind_group(
    addr: SocketAddr,
    backlog: u32,
    threads: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let probe = new_socket(addr, false)?;
    probe.bind(&addr.into())?;
    let local = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound address is not an IP address"))?;
    drop(probe);
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    let mut group = Vec::with_capacity(threads);
    for _ in 0..threads.max(1) {
        let socket = new_socket(local, true)?;
        socket.bind(&local.into())?;
        socket.listen(backlog)?;
        group.push(socket.into());
    }
    Ok((group, local))
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Lets a restarted node bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// What stops accepting on one listener's sockets, and says when its
/// accept loops have ended (and so dropped their sockets).
#[derive(Debug, Clone)]
pub struct AcceptGroup {
    stop: CancellationToken,
    loops: TaskTracker,
}

impl AcceptGroup {
    /// A group that also stops when `parent` is cancelled.
    pub fn new(parent: &CancellationToken) -> Self {
        AcceptGroup {
            stop: parent.child_token(),
            loops: TaskTracker::new(),
        }
    }

    /// Stops accepting (the loops end at their next poll).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops accepting and waits until every accept loop has ended.
    pub async fn stopped(&self) {
        self.stop.cancel();
        self.loops.close();
        self.loops.wait().await;
    }
}

/// What every data thread knows of the others.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Connections each thread is serving.
    loads: Vec<AtomicUsize>,
}

impl Workers {
    /// The thread a connection accepted on thread `me` should live on: `me`
    /// unless it serves more than the least busy thread plus a slack of
    /// half that (at least two), so that the kernel's spread, which is
    /// even for many connections, is left alone (a hand-over costs two
    /// `epoll_ctl` and a wake-up), and a few heavy connections are not
    /// stacked on one core.
    pub fn pick(&self, me: usize) -> usize {
        let mine = self.loads[me].load(Ordering::Relaxed);
        let (least, min) = self
            .loads
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, l)| l)
            .unwrap_or((me, mine));
        if mine <= min + (min / 2).max(2) {
            me
        } else {
            least
        }
    }

    /// Counts a connection on thread `worker` until the guard drops.
    fn count(self: &Arc<Self>, worker: usize) -> LoadGuard {
        self.loads[worker].fetch_add(1, Ordering::Relaxed);
        LoadGuard {
            workers: self.clone(),
            worker,
        }
    }
}

struct LoadGuard {
    workers: Arc<Workers>,
    worker: usize,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.workers.loads[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a data thread needs to start accepting.
#[derive(Debug)]
struct Start {
    accepting: tokio_util::task::task_tracker::TaskTrackerToken,
    /// Each socket with the token that stops accepting on it.
    listeners: Vec<(Arc<ListenerState>, std::net::TcpListener, AcceptGroup)>,
    workers: Arc<Workers>,
    tracker: TaskTracker,
    hard_stop: CancellationToken,
    finished: CancellationToken,
}

#[derive(Debug)]
struct Thread {
    /// Taken when the thread is started; dropping it unsent ends the thread.
    start: Option<oneshot::Sender<Start>>,
    /// Sent (or dropped) when the thread has ended.
    exit: oneshot::Receiver<()>,
}

/// The data threads, started but idle until [`DataPlane::start`].
#[derive(Debug)]
pub struct DataPlane {
    threads: Vec<Thread>,
    workers: Arc<Workers>,
    /// Holds a token per data thread while its accept loops run, and
    /// tracks the accept loops a reload added.
    accepting: TaskTracker,
    finished: CancellationToken,
    /// Once started: the connections' tracker and the hard stop, for
    /// listeners a reload adds.
    started: Option<(TaskTracker, CancellationToken)>,
}

impl DataPlane {
    /// Starts `threads` data threads, each with its runtime built and
    /// waiting for [`DataPlane::start`]. Dropping the plane unstarted ends
    /// them.
    pub fn new(threads: usize) -> std::io::Result<DataPlane> {
        let mut started = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (start_tx, start_rx) = oneshot::channel::<Start>();
            let (exit_tx, exit_rx) = oneshot::channel::<()>();
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("shoal-data-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let runtime = match runtime {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async move {
                        if let Ok(start) = start_rx.await {
                            serve(i, start).await;
                        }
                    });
                    // The runtime (and any connection still on it) is
                    // dropped here, on its own thread, before saying so.
                    drop(runtime);
                    let _ = exit_tx.send(());
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("data thread ended before starting"))??;
            handles.push(handle);
            started.push(Thread {
                start: Some(start_tx),
                exit: exit_rx,
            });
        }
        let loads = handles.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(DataPlane {
            threads: started,
            workers: Arc::new(Workers { handles, loads }),
            accepting: TaskTracker::new(),
            finished: CancellationToken::new(),
            started: None,
        })
    }

    /// How many data threads there are.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Starts accepting: thread `i` serves socket `i` of every listener's
    /// group, until that listener's token is cancelled. Connections are
    /// spawned on `tracker`; they are cut at `hard_stop`.
    pub fn start(
        &mut self,
        listeners: Vec<(Arc<ListenerState>, Vec<std::net::TcpListener>, AcceptGroup)>,
        tracker: &TaskTracker,
        hard_stop: &CancellationToken,
    ) {
        self.started = Some((tracker.clone(), hard_stop.clone()));
        let mut per_thread: Vec<Vec<_>> = self.threads.iter().map(|_| Vec::new()).collect();
        // One socket per thread; a group handed over by a process with
        // more threads than this one has more: every socket is accepted
        // on (a socket nobody accepts on would hold its clients forever),
        // the extra ones by threads in turn.
        let threads = per_thread.len().max(1);
        for (state, group, stop) in listeners {
            for (i, socket) in group.into_iter().enumerate() {
                if let Some(list) = per_thread.get_mut(i % threads) {
                    list.push((state.clone(), socket, stop.clone()));
                }
            }
        }
        for (thread, listeners) in self.threads.iter_mut().zip(per_thread) {
            let Some(start) = thread.start.take() else {
                continue;
            };
            let sent = start.send(Start {
                accepting: self.accepting.token(),
                listeners,
                workers: self.workers.clone(),
                tracker: tracker.clone(),
                hard_stop: hard_stop.clone(),
                finished: self.finished.clone(),
            });
            if sent.is_err() {
                error!("a data thread ended before it started accepting");
            }
        }
    }

    /// After [`DataPlane::start`]: accepts on a group a reload bound
    /// (socket `i` on thread `i`, in turn), until `stop`.
    pub fn add_listener(
        &self,
        state: Arc<ListenerState>,
        group: Vec<std::net::TcpListener>,
        stop: AcceptGroup,
    ) {
        let Some((tracker, hard_stop)) = &self.started else {
            error!(listener = %state.name, "a listener was added before the data threads started (bug)");
            return;
        };
        let threads = self.workers.handles.len().max(1);
        for (i, socket) in group.into_iter().enumerate() {
            let me = i % threads;
            let accept = Accept {
                me,
                workers: self.workers.clone(),
                tracker: tracker.clone(),
                hard_stop: hard_stop.clone(),
            };
            let (state, token) = (state.clone(), stop.stop.clone());
            // Registered with the thread's own reactor, so it runs there.
            let accept_loop = stop.loops.track_future(async move {
                match TcpListener::from_std(socket) {
                    Ok(tcp) => listener::accept_loop(state, tcp, accept, token).await,
                    Err(e) => {
                        error!(listener = %state.name, error = %e, "cannot register the listening socket")
                    }
                }
            });
            self.workers.handles[me].spawn(self.accepting.track_future(accept_loop));
        }
    }

    /// Waits until every data thread has stopped accepting (after
    /// `stop_accepting`), so no connection is spawned after this returns.
    pub async fn stopped_accepting(&self) {
        self.accepting.close();
        self.accepting.wait().await;
    }

    /// Ends the data threads once every connection has ended (or been cut)
    /// and waits until they are gone.
    pub async fn finish(self) {
        self.finished.cancel();
        for thread in self.threads {
            drop(thread.start);
            let _ = thread.exit.await;
        }
    }
}

/// One data thread: an accept loop per listener, then wait for the end.
async fn serve(me: usize, start: Start) {
    let mut loops = Vec::new();
    for (state, socket, stop) in start.listeners {
        let tcp = match TcpListener::from_std(socket) {
            Ok(t) => t,
            Err(e) => {
                error!(listener = %state.name, error = %e, "cannot register the listening socket");
                continue;
            }
        };
        let accept = Accept {
            me,
            workers: start.workers.clone(),
            tracker: start.tracker.clone(),
            hard_stop: start.hard_stop.clone(),
        };
        loops.push(tokio::spawn(stop.loops.track_future(
            listener::accept_loop(state, tcp, accept, stop.stop.clone()),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
    drop(start.accepting);
    debug!(thread = me, "data thread stopped accepting");
    start.finished.cancelled().await;
}

/// Where an accepted connection goes: this thread or a less busy one.
#[derive(Debug, Clone)]
pub struct Accept {
    me: usize,
    workers: Arc<Workers>,
    tracker: TaskTracker,
    hard_stop: CancellationToken,
}

impl Accept {
    /// Serves `stream` (from `peer`) on the thread [`Workers::pick`] names.
    pub fn dispatch<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let target = self.workers.pick(self.me);
        let hard_stop = self.hard_stop.clone();
        if target == self.me {
            let load = self.workers.count(target);
            self.tracker.spawn(async move {
                let _load = load;
                serve(stream, hard_stop).await;
            });
            return;
        }
        // Moving a socket between runtimes: out of this thread's epoll,
        // into the target's (registered when first polled there).
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot hand a connection to another data thread");
                return;
            }
        };
        let load = self.workers.count(target);
        self.workers.handles[target].spawn(self.tracker.track_future(async move {
            let _load = load;
            match TcpStream::from_std(stream) {
                Ok(s) => serve(s, hard_stop).await,
                Err(e) => {
                    warn!(error = %e, "cannot take over a connection from another data thread")
                }
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(loads: &[usize]) -> Workers {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Workers {
            handles: loads.iter().map(|_| rt.handle().clone()).collect(),
            loads: loads.iter().map(|&l| AtomicUsize::new(l)).collect(),
        }
    }

    #[test]
    fn a_thread_keeps_its_connections_unless_clearly_busier() {
        // Even enough: keep.
        assert_eq!(workers(&[0, 0]).pick(0), 0);
        assert_eq!(workers(&[2, 0]).pick(0), 0);
        assert_eq!(workers(&[24, 16]).pick(0), 0);
        // Clearly busier: hand over to the least busy.
        assert_eq!(workers(&[3, 0]).pick(0), 1);
        assert_eq!(workers(&[6, 5, 1]).pick(0), 2);
        assert_eq!(workers(&[25, 16]).pick(0), 1);
    }

    #[test]
    fn a_group_shares_one_port_and_refuses_a_port_in_use() {
        let (group, addr) = bind_group("127.0.0.1:0".parse().unwrap(), 16, 3).unwrap();
        assert_eq!(group.len(), 3);
        assert_ne!(addr.port(), 0);
        for s in &group {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        // A second group on the same port: refused, not silently shared.
        let err = bind_group(addr, 16, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
