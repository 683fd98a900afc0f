//! Test backends on 127.0.0.1. Each counts its open connections and can be
//! killed (listener closed and every open connection reset) and started
//! again on the same port; its open connections can be reset on demand
//! (`SO_LINGER` 0, then close: an RST, not a FIN).

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Accepted connections whose source [`Backend::peers`] keeps.
pub const PEERS_KEPT_MAX: usize = 10_000;

/// How a backend answers a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Echoes every byte until the client's FIN, then closes.
    Echo,
    /// Reads until the client's FIN, then answers `got N bytes\n` and closes:
    /// works only if half-close reaches it and the return way stays open.
    CountThenReply,
    /// Sends `hello\n` and its FIN at once, then reads until the client's
    /// FIN and answers nothing; the byte count read is recorded in
    /// `received`.
    GreetThenListen,
    /// An HTTP/1.0-style server answering `backend <port>` to any request.
    Http,
    /// Reads a request (any bytes), answers `partial\n`, then resets the
    /// connection (`SO_LINGER` 0 and close): a backend that dies in the
    /// middle of its answer. (Waiting for the request first makes sure
    /// shoal's connect has completed: a reset before that is a failed
    /// connect, retried, not a cut answer.)
    AnswerThenReset,
    /// Sends 64 KiB writes without end, until [`Backend::reset_all`]
    /// resets the connection: a bulk answer (forwarded by `splice`) cut
    /// by an abort.
    Stream,
}

/// How the client side of a backend connection ended, as the backend saw
/// it (recorded by [`Behaviour::Echo`] connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEnd {
    /// A clean FIN.
    Eof,
    /// `ECONNRESET`: the other side aborted.
    Reset,
    /// Any other error.
    Error(std::io::ErrorKind),
}

impl From<std::io::Error> for PeerEnd {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionReset => PeerEnd::Reset,
            k => PeerEnd::Error(k),
        }
    }
}

/// `Echo` connections that carried bytes (clients, not health checks,
/// which connect and close): open now, and the most open at once.
#[derive(Debug, Default)]
pub struct ClientGauge {
    pub open: AtomicUsize,
    pub peak: AtomicUsize,
}

/// One client connection counted by a [`ClientGauge`] until dropped (also
/// when the connection's task is cancelled).
struct ClientCounted<'a>(&'a ClientGauge);

impl<'a> ClientCounted<'a> {
    fn new(g: &'a ClientGauge) -> Self {
        let now = g.open.fetch_add(1, Ordering::SeqCst) + 1;
        g.peak.fetch_max(now, Ordering::SeqCst);
        ClientCounted(g)
    }
}

impl Drop for ClientCounted<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running test backend.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub behaviour: Behaviour,
    /// Connections open right now.
    pub open: Arc<AtomicUsize>,
    /// Connections accepted since start.
    pub accepted: Arc<AtomicUsize>,
    /// Bytes read by `GreetThenListen` connections that have finished.
    pub received: Arc<AtomicUsize>,
    /// `Echo` connections that echoed at least one byte: clients served,
    /// not health checks (which connect and close).
    pub served: Arc<AtomicUsize>,
    /// How each finished `Echo` connection ended, in order, with the
    /// bytes it echoed (health checks echo none).
    pub ends: Arc<Mutex<Vec<(usize, PeerEnd)>>>,
    /// Client connections (those that carried bytes) open and at peak,
    /// counted here at the backend.
    pub clients: Arc<ClientGauge>,
    /// When each connection was accepted and where it came from, newest
    /// last, at most [`PEERS_KEPT_MAX`]: health probes are told apart by
    /// their source address (`health.source`).
    pub peers: Arc<Mutex<VecDeque<(std::time::Instant, SocketAddr)>>>,
    kill: watch::Sender<bool>,
    reset: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Backend {
    /// The source IPs of the connections accepted within `window` before
    /// now.
    pub fn sources_within(&self, window: std::time::Duration) -> BTreeSet<IpAddr> {
        let since = std::time::Instant::now() - window;
        self.peers
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, p)| p.ip())
            .collect()
    }

    /// Starts on a free port.
    pub async fn start(behaviour: Behaviour) -> Backend {
        Backend::start_at("127.0.0.1:0".parse().unwrap(), behaviour).await
    }

    /// Starts on `addr` (e.g. the port of a killed backend).
    pub async fn start_at(addr: SocketAddr, behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = watch::channel(false);
        let (reset, resets) = watch::channel(0u64);
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let ends = Arc::new(Mutex::new(Vec::new()));
        let clients = Arc::new(ClientGauge::default());
        let peers = Arc::new(Mutex::new(VecDeque::new()));
        let task = {
            let clients = clients.clone();
            let (open, accepted, received, ends) = (
                open.clone(),
                accepted.clone(),
                received.clone(),
                ends.clone(),
            );
            let peers = peers.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let mut killed_accept = killed.clone();
                loop {
                    let stream = tokio::select! {
                        r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                        _ = killed_accept.changed() => return,
                    };
                    let (stream, peer) = stream;
                    {
                        let mut p = peers.lock().unwrap();
                        if p.len() >= PEERS_KEPT_MAX {
                            p.pop_front();
                        }
                        p.push_back((std::time::Instant::now(), peer));
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let (open, received, ends) = (open.clone(), received.clone(), ends.clone());
                    let served = served.clone();
                    let clients = clients.clone();
                    let mut killed = killed.clone();
                    let mut resets = resets.clone();
                    resets.mark_unchanged();
                    tokio::spawn(async move {
                        let mut stream = stream;
                        tokio::select! {
                            _ = serve(&mut stream, behaviour, addr, &received, &served, &ends, &clients) => {},
                            _ = killed.changed() => {},
                            _ = resets.changed() => {
                                let _ = stream.set_zero_linger();
                            },
                        }
                        drop(stream);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Backend {
            addr,
            behaviour,
            open,
            accepted,
            received,
            served,
            ends,
            clients,
            peers,
            kill,
            reset,
            task,
        }
    }

    /// How the first `Echo` connection that carried bytes ended (health
    /// checks carry none), waiting for it within [`crate::WAIT`].
    pub async fn first_exchange_end(&self) -> PeerEnd {
        crate::eventually(
            "a backend connection with bytes to end",
            crate::WAIT,
            || {
                let end = self
                    .ends
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(n, _)| *n > 0)
                    .map(|(_, e)| e.clone());
                async move { end }
            },
        )
        .await
    }

    /// Resets every connection open now (`SO_LINGER` 0, then close); the
    /// listener keeps accepting.
    pub fn reset_all(&self) {
        self.reset.send_modify(|n| *n += 1);
    }

    /// Closes the listener (new connects are refused) and drops every open
    /// connection.
    pub async fn kill(self) -> SocketAddr {
        let _ = self.kill.send(true);
        let _ = self.task.await;
        self.addr
    }
}

async fn serve(
    s: &mut TcpStream,
    behaviour: Behaviour,
    addr: SocketAddr,
    received: &AtomicUsize,
    served: &AtomicUsize,
    ends: &Mutex<Vec<(usize, PeerEnd)>>,
    clients: &ClientGauge,
) {
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Echo => {
            let mut echoed = 0usize;
            let mut counted = None;
            let end = loop {
                match s.read(&mut buf).await {
                    Ok(0) => break PeerEnd::Eof,
                    Ok(n) => match s.write_all(&buf[..n]).await {
                        Ok(()) => {
                            if echoed == 0 {
                                served.fetch_add(1, Ordering::SeqCst);
                                counted = Some(ClientCounted::new(clients));
                            }
                            echoed += n;
                        }
                        Err(e) => break PeerEnd::from(e),
                    },
                    Err(e) => break PeerEnd::from(e),
                }
            };
            ends.lock().unwrap().push((echoed, end));
            drop(counted);
            let _ = s.shutdown().await;
        }
        Behaviour::CountThenReply => {
            let mut n = 0usize;
            while let Ok(k) = s.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                n += k;
            }
            let _ = s.write_all(format!("got {n} bytes\n").as_bytes()).await;
            let _ = s.shutdown().await;
        }
        Behaviour::GreetThenListen => {
            let _ = s.write_all(b"hello\n").await;
            let _ = s.shutdown().await;
            let mut n = 0usize;
            while let Ok(k) = s.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                n += k;
            }
            received.fetch_add(n, Ordering::SeqCst);
        }
        Behaviour::Http => {
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => head.extend_from_slice(&buf[..k]),
                }
            }
            let body = format!("backend {}\n", addr.port());
            let resp = format!(
                "HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        Behaviour::AnswerThenReset => {
            if let Ok(1..) = s.read(&mut buf).await {
                let _ = s.write_all(b"partial\n").await;
                // Closed with SO_LINGER 0 by the caller: an RST.
                let _ = s.set_zero_linger();
            }
        }
        Behaviour::Stream => {
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            // Ends when the connection is reset (by the caller, on
            // `reset_all`) or fails.
            while s.write_all(&chunk).await.is_ok() {}
        }
    }
}

/// Reads from `s` until EOF, an error or `max` bytes; returns the bytes
/// read and how it ended (`Ok(())` for EOF, `Err` for an error, `Ok` with
/// `max` bytes if the bound was reached first).
pub async fn read_until_end(s: &mut TcpStream, max: usize) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < max {
        match s.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
    (got, Ok(()))
}

/// One HTTP/1.0 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, _, body) = http_request(addr, "GET", path, &[]).await?;
    Ok((status, body))
}

/// One HTTP/1.0 request with no body and `headers` added; returns
/// (status, response head, body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8(out)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP head in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}
