//! Copying bytes between a client and a backend.
//!
//! Each direction is a read-then-write loop; when one side sends FIN the
//! other side's write half is shut down and the opposite direction keeps
//! flowing (half-close), until both directions have ended. The whole
//! exchange ends early on an I/O error in either direction, on the idle
//! timeout (no byte either way for that long), or on cancellation (the node
//! gave up draining).
//!
//! An end that is not two FINs is passed on as an abort: after an error on
//! one side (a reset, say) the other side is reset, and after the idle
//! timeout or the drain timeout both are (`SO_LINGER` 0, then close, sends
//! an RST). A plain close would send a FIN, and a client could not tell an
//! answer cut by a dying backend from a whole one. The option is set only
//! on that path, so a clean close costs no extra system call.

use crate::splice::{self, Burst, Failed};
use prometheus_client::metrics::counter::Counter;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

/// Size of each direction's copy buffer.
pub const COPY_BUFFER_BYTES: usize = 16 * 1024;

/// Which end of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Backend,
}

/// How a proxied connection ended.
#[derive(Debug)]
pub enum End {
    /// Both directions finished; the client sent its FIN first.
    ClientClose,
    /// Both directions finished; the backend sent its FIN first.
    BackendClose,
    /// No byte in either direction for the idle timeout.
    IdleTimeout,
    /// The node stopped before the connection finished.
    Shutdown,
    /// A read or write failed (e.g. a reset) on that peer's socket.
    Error(Peer, io::Error),
}

impl End {
    /// Short stable name, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            End::ClientClose => "client-close",
            End::BackendClose => "backend-close",
            End::IdleTimeout => "idle-timeout",
            End::Shutdown => "shutdown",
            End::Error(Peer::Client, _) => "client-error",
            End::Error(Peer::Backend, _) => "backend-error",
        }
    }
}

/// What a proxied connection did.
#[derive(Debug)]
pub struct Transfer {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub end: End,
}

/// Byte counters one connection adds to as data flows.
#[derive(Debug, Clone)]
pub struct ByteCounters {
    pub client_to_backend: Counter,
    pub backend_to_client: Counter,
}

/// What both directions of a connection share.
struct Shared {
    start: Instant,
    /// Milliseconds from `start` to the last byte either way.
    last_ms: AtomicU64,
    /// Set by the first direction to end.
    one_ended: AtomicBool,
}

impl Shared {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Copies `from` to `to` until FIN, then passes the FIN on.
///
/// The buffer exists only while bytes are flowing: it is allocated when the
/// socket turns readable and dropped as soon as a read finds nothing more,
/// so an idle connection holds no user-space buffer (HAProxy does the same
/// with its dynamic buffers). Under a steady stream the buffer is kept from
/// one read to the next.
///
/// Reads go through tokio's `poll_read`, which treats a short read as "the
/// socket is drained" (edge-triggered epoll reports the next arrival), so a
/// small request costs one `recv`, not a second one that finds `EAGAIN`.
async fn pipe(
    mut from: ReadHalf<'_>,
    from_peer: Peer,
    mut to: WriteHalf<'_>,
    to_peer: Peer,
    total: &AtomicU64,
    counter: &Counter,
    shared: &Shared,
) -> Result<(), (Peer, io::Error)> {
    // FIN from `from`: pass it on and keep the other direction open, unless
    // that one has ended too: both sockets are about to be closed, and the
    // close sends the FIN without a `shutdown` call.
    let pass_fin = async |to: &mut WriteHalf<'_>| {
        if shared.one_ended.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        to.shutdown().await.map_err(|e| (to_peer, e))
    };
    loop {
        // A read refused for want of coop budget returns Pending although
        // the socket is readable; yielding here (when the budget is spent)
        // keeps that from turning into a busy loop.
        tokio::task::consume_budget().await;
        from.readable().await.map_err(|e| (from_peer, e))?;
        // Capacity only: `read_buf` fills it without zeroing first.
        let mut buf = Vec::with_capacity(COPY_BUFFER_BYTES);
        let moved = |n: usize| {
            total.fetch_add(n as u64, Ordering::Relaxed);
            counter.inc_by(n as u64);
            shared.touch();
        };
        let mut full_reads = 0;
        loop {
            buf.clear();
            match poll_once(from.read_buf(&mut buf)).await {
                // Nothing more for now: drop the buffer, wait for bytes.
                None => break,
                Some(Ok(0)) => return pass_fin(&mut to).await,
                Some(Ok(n)) => {
                    to.write_all(&buf).await.map_err(|e| (to_peer, e))?;
                    moved(n);
                    if n == buf.capacity() {
                        full_reads += 1;
                    }
                }
                Some(Err(e)) => return Err((from_peer, e)),
            }
            // A bulk burst: the rest of it goes through a pipe, zero copy.
            if full_reads >= splice::SPLICE_AFTER_FULL_READS
                && let Some(pipe) = splice::Pipe::new()
            {
                drop(buf);
                // Boxed: its state would otherwise sit in every
                // connection's future, idle ones included.
                match Box::pin(pipe.burst(from.as_ref(), to.as_ref(), moved)).await {
                    Ok(Burst::Drained) => break,
                    Ok(Burst::Fin) => return pass_fin(&mut to).await,
                    Err(Failed::Read(e)) => return Err((from_peer, e)),
                    Err(Failed::Write(e)) => return Err((to_peer, e)),
                }
            }
        }
    }
}

/// Polls `fut` once: its output if it is ready at once, `None` if not.
async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Proxies between `client` and `backend` until both directions end, an
/// error, the idle timeout or `stop`.
pub async fn proxy(
    mut client: TcpStream,
    mut backend: TcpStream,
    idle_timeout: Duration,
    counters: &ByteCounters,
    stop: &CancellationToken,
) -> Transfer {
    let shared = Shared {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        one_ended: AtomicBool::new(false),
    };
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let end = exchange(
        &mut client,
        &mut backend,
        idle_timeout,
        counters,
        stop,
        &shared,
        &up,
        &down,
    )
    .await;
    let (abort_client, abort_backend) = match &end {
        End::ClientClose | End::BackendClose => (false, false),
        // The failed side is reset or broken already; tell the other.
        End::Error(Peer::Client, _) => (false, true),
        End::Error(Peer::Backend, _) => (true, false),
        End::IdleTimeout | End::Shutdown => (true, true),
    };
    if abort_client {
        abort(&client);
    }
    if abort_backend {
        abort(&backend);
    }
    Transfer {
        client_to_backend: up.load(Ordering::Relaxed),
        backend_to_client: down.load(Ordering::Relaxed),
        end,
    }
}

/// Makes the coming close of `s` an abort: `SO_LINGER` 0 discards what is
/// unsent and sends an RST instead of a FIN. A close with that option does
/// not block (only a non-zero linger does), so tokio's warning about it
/// does not apply.
fn abort(s: &TcpStream) {
    // Fails only on a socket already gone; the close then sends nothing.
    let _ = s.set_zero_linger();
}

/// Both directions of [`proxy`], until they end.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    idle_timeout: Duration,
    counters: &ByteCounters,
    stop: &CancellationToken,
    shared: &Shared,
    up: &AtomicU64,
    down: &AtomicU64,
) -> End {
    let (cr, cw) = client.split();
    let (br, bw) = backend.split();
    let c2b = pipe(
        cr,
        Peer::Client,
        bw,
        Peer::Backend,
        up,
        &counters.client_to_backend,
        shared,
    );
    let b2c = pipe(
        br,
        Peer::Backend,
        cw,
        Peer::Client,
        down,
        &counters.backend_to_client,
        shared,
    );
    tokio::pin!(c2b, b2c);
    let (mut c2b_done, mut b2c_done) = (false, false);
    let mut first_fin = None;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            r = &mut c2b, if !c2b_done => match r {
                Ok(()) => { c2b_done = true; first_fin.get_or_insert(Peer::Client); }
                Err((peer, e)) => break End::Error(peer, e),
            },
            r = &mut b2c, if !b2c_done => match r {
                Ok(()) => { b2c_done = true; first_fin.get_or_insert(Peer::Backend); }
                Err((peer, e)) => break End::Error(peer, e),
            },
            () = &mut idle => {
                let deadline = shared.last() + idle_timeout;
                if deadline <= Instant::now() {
                    break End::IdleTimeout;
                }
                idle.as_mut().reset(tokio::time::Instant::from_std(deadline));
            },
            () = stop.cancelled() => break End::Shutdown,
        }
        if c2b_done && b2c_done {
            break match first_fin {
                Some(Peer::Backend) => End::BackendClose,
                _ => End::ClientClose,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// Bytes flowing without pause spend the task's coop budget; a read
    /// refused for that reason must yield, not spin (it once did: the
    /// proxy went to 100% CPU with data left in the socket).
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_stream_crosses_whole_in_both_directions_and_the_fins_follow() {
        const BYTES: usize = 48 * 1024 * 1024;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut client, client_side) = pair(&listener).await;
        let (backend_side, mut backend) = pair(&listener).await;
        let counters = ByteCounters {
            client_to_backend: Counter::default(),
            backend_to_client: Counter::default(),
        };
        // The proxy runs on a runtime of its own, as on a data thread, so
        // that a proxy that never yields fails this test instead of
        // hanging it.
        let (client_side, backend_side) = (
            client_side.into_std().unwrap(),
            backend_side.into_std().unwrap(),
        );
        let (done, proxied) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let t = rt.block_on(async move {
                let client = TcpStream::from_std(client_side).unwrap();
                let backend = TcpStream::from_std(backend_side).unwrap();
                let stop = CancellationToken::new();
                proxy(client, backend, Duration::from_secs(30), &counters, &stop).await
            });
            let _ = done.send(t);
        });
        let payload: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let (mut cr, mut cw) = client.split();
        let (mut br, mut bw) = backend.split();
        let exchange = async {
            tokio::join!(
                async {
                    cw.write_all(&sent).await.unwrap();
                    cw.shutdown().await.unwrap();
                },
                async {
                    let mut got = Vec::new();
                    br.read_to_end(&mut got).await.unwrap();
                    assert!(
                        got == payload,
                        "client to backend: {} bytes arrived",
                        got.len()
                    );
                },
                async {
                    bw.write_all(&sent).await.unwrap();
                    bw.shutdown().await.unwrap();
                },
                async {
                    let mut got = Vec::new();
                    cr.read_to_end(&mut got).await.unwrap();
                    assert!(
                        got == payload,
                        "backend to client: {} bytes arrived",
                        got.len()
                    );
                },
            )
        };
        tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .expect("the proxy stalled");
        let t = tokio::time::timeout(Duration::from_secs(10), proxied)
            .await
            .expect("the proxy did not end after both FINs")
            .expect("the proxy thread ended without a result");
        assert_eq!(t.client_to_backend, BYTES as u64);
        assert_eq!(t.backend_to_client, BYTES as u64);
        assert!(
            matches!(t.end, End::ClientClose | End::BackendClose),
            "{:?}",
            t.end
        );
    }
}
