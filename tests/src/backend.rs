//! Test backends on 127.0.0.1. Each counts its open connections and can be
//! killed (listener closed and every open connection reset) and started
//! again on the same port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    kill: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts on a free port.
    pub async fn start(behaviour: Behaviour) -> Backend {
        Backend::start_at("127.0.0.1:0".parse().unwrap(), behaviour).await
    }

    /// Starts on `addr` (e.g. the port of a killed backend).
    pub async fn start_at(addr: SocketAddr, behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let task = {
            let (open, accepted, received) = (open.clone(), accepted.clone(), received.clone());
            tokio::spawn(async move {
                let mut killed_accept = killed.clone();
                loop {
                    let stream = tokio::select! {
                        r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                        _ = killed_accept.changed() => return,
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let (open, received) = (open.clone(), received.clone());
                    let mut killed = killed.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(stream, behaviour, addr, &received) => {},
                            _ = killed.changed() => {},
                        }
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
            kill,
            task,
        }
    }

    /// Closes the listener (new connects are refused) and drops every open
    /// connection.
    pub async fn kill(self) -> SocketAddr {
        let _ = self.kill.send(true);
        let _ = self.task.await;
        self.addr
    }
}

async fn serve(mut s: TcpStream, behaviour: Behaviour, addr: SocketAddr, received: &AtomicUsize) {
    let mut buf = vec![0u8; 64 * 1024];
    match behaviour {
        Behaviour::Echo => {
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
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
    }
}

/// One HTTP/1.0 GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await?;
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
    Ok((status, body.to_owned()))
}
