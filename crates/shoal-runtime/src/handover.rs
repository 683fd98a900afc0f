//! Binary upgrade without a refused connect: a new `shoal` process takes
//! over a running one's listening sockets (listeners, admin endpoint,
//! `[dns]` server) over a Unix socket (`SCM_RIGHTS`), as HAProxy does
//! since 1.8.
//!
//! Closing a listening socket resets the connections in its accept queue,
//! and a second process binding the same port with `SO_REUSEPORT` only
//! adds a socket to the group (the old one's queue is still lost when it
//! closes). Passing the sockets themselves keeps every queue: both
//! processes hold the same sockets, and the old one's close only drops its
//! reference.
//!
//! The exchange, on the `node.takeover_socket` path the running process
//! listens on (the successor is `shoal run -c FILE --take-over PATH`):
//!
//! | successor → running | running → successor |
//! |---|---|
//! | `TAKE-OVER 1` | a header (listener names, sockets each, admin) with every socket attached |
//! | `RELEASE` | leaves the fleet (the leave notice goes out), closes its fleet endpoint, stops its DNS server (queries wait in the shared socket for the successor's), `RELEASED` |
//! | (binds the fleet endpoint, joins with a warm start, starts accepting) `ACCEPTING` | stops accepting, drains its connections within `drain_timeout_ms`, exits |
//!
//! Between `RELEASED` and `ACCEPTING` both processes hold the sockets and
//! the running one still accepts, so no client waits longer than before;
//! only the fleet has one node fewer for the length of the successor's
//! warm start. The running process accepts a successor only of its own
//! user (`SO_PEERCRED`). If the successor fails before `RELEASE`, nothing
//! changed; after it, the running process keeps serving outside the fleet
//! (logged at error level: restart it).

use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

/// The exchange's version: a successor speaking another is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Sockets attached to one message (the kernel's bound, `SCM_MAX_FD`, is
/// 253); more are sent in further messages.
const FDS_PER_MESSAGE: usize = 200;

/// The header's largest size: a successor refuses a larger one.
const HEADER_BYTES_MAX: usize = 1 << 20;

/// How long either side waits for the other's next step: the first line,
/// and the running process's leave (its linger is 300 ms).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the running process waits for the successor to accept after
/// `RELEASED`: its fleet endpoint bind and warm start (3 s by default).
const ACCEPTING_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a hand-over failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("take-over socket {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("take-over socket {path}: cannot listen: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error("hand-over: {what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("hand-over: no answer within {} s while waiting for {what}", timeout.as_secs())]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("hand-over: the other process ended the exchange while this one waited for {0}")]
    Closed(&'static str),
    #[error("hand-over: {0}")]
    Protocol(String),
    #[error("hand-over: refused a process of user {uid} (this one runs as {ours})")]
    Stranger { uid: u32, ours: u32 },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> HandoverError {
    move |source| HandoverError::Io { what, source }
}

/// What the running process hands over: each listener's sockets by name,
/// the admin endpoint's, and the `[dns]` server's (UDP, TCP).
#[derive(Debug, Default)]
pub struct Sockets {
    pub listeners: Vec<(String, Vec<std::net::TcpListener>)>,
    pub admin: Option<std::net::TcpListener>,
    pub dns: Option<(std::net::UdpSocket, std::net::TcpListener)>,
}

impl Sockets {
    /// Takes the sockets of listener `name`, if handed over.
    pub fn take_listener(&mut self, name: &str) -> Option<Vec<std::net::TcpListener>> {
        let i = self.listeners.iter().position(|(n, _)| n == name)?;
        Some(self.listeners.swap_remove(i).1)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    protocol: u32,
    /// Listener name and how many of the sockets that follow are its, in
    /// order; the admin socket, if any, comes last.
    listeners: Vec<(String, usize)>,
    admin: bool,
    /// The DNS server's UDP and TCP sockets come after the admin one.
    dns: bool,
}

impl Header {
    fn fds(&self) -> usize {
        self.listeners.iter().map(|(_, n)| n).sum::<usize>()
            + usize::from(self.admin)
            + 2 * usize::from(self.dns)
    }
}

async fn write_all(
    s: &UnixStream,
    mut bytes: &[u8],
    what: &'static str,
) -> Result<(), HandoverError> {
    while !bytes.is_empty() {
        s.writable().await.map_err(io_err(what))?;
        match s.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io_err(what)(e)),
        }
    }
    Ok(())
}

/// Reads one line (the peer sends one and waits for the answer, so
/// nothing past it is read).
async fn read_line(
    s: &UnixStream,
    what: &'static str,
    timeout: Duration,
) -> Result<String, HandoverError> {
    let read = async {
        let mut line = Vec::new();
        loop {
            s.readable().await.map_err(io_err(what))?;
            let mut byte = [0u8; 1];
            match s.try_read(&mut byte) {
                Ok(0) => return Err(HandoverError::Closed(what)),
                Ok(_) if byte[0] == b'\n' => {
                    return Ok(String::from_utf8_lossy(&line).into_owned());
                }
                Ok(_) if line.len() >= 256 => {
                    return Err(HandoverError::Protocol(format!("{what}: line too long")));
                }
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_err(what)(e)),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| HandoverError::Timeout { what, timeout })?
}

async fn expect_line(
    s: &UnixStream,
    want: &'static str,
    timeout: Duration,
) -> Result<(), HandoverError> {
    let line = read_line(s, want, timeout).await?;
    if line == want {
        Ok(())
    } else {
        Err(HandoverError::Protocol(format!(
            "expected {want:?}, got {:?}",
            shoal_seeds::escape_controls(&line)
        )))
    }
}

/// Sends `bytes` with `fds` attached, in messages of at most
/// [`FDS_PER_MESSAGE`] sockets (every message carries at least one byte:
/// the first holds `bytes`, the others one `+`).
async fn send_with_fds(s: &UnixStream, bytes: &[u8], fds: &[OwnedFd]) -> Result<(), HandoverError> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    use std::os::fd::AsFd;
    let mut chunks: Vec<&[OwnedFd]> = fds.chunks(FDS_PER_MESSAGE).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        let payload: &[u8] = if i == 0 { bytes } else { b"+" };
        let borrowed: Vec<_> = chunk.iter().map(AsFd::as_fd).collect();
        let mut space =
            vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut sent = 0;
        while sent < payload.len() {
            let n = s
                .async_io(Interest::WRITABLE, || {
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    // The sockets go with the first byte; a short write
                    // sends the rest of the bytes without them.
                    if sent == 0 && !borrowed.is_empty() {
                        control.push(SendAncillaryMessage::ScmRights(&borrowed));
                    }
                    sendmsg(
                        s,
                        &[IoSlice::new(&payload[sent..])],
                        &mut control,
                        SendFlags::empty(),
                    )
                    .map_err(io::Error::from)
                })
                .await
                .map_err(io_err("sending the sockets"))?;
            sent += n;
        }
    }
    Ok(())
}

/// Receives the header and the sockets [`send_with_fds`] sent.
async fn receive_with_fds(s: &UnixStream) -> Result<(Header, Vec<OwnedFd>), HandoverError> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut bytes: Vec<u8> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut header: Option<(Header, usize)> = None;
    let receive = async {
        loop {
            // Done: the header and all its sockets (and the `+` of every
            // further message) are in.
            if let Some((h, len)) = &header {
                let messages = h.fds().div_ceil(FDS_PER_MESSAGE).max(1);
                if fds.len() >= h.fds() && bytes.len() >= 4 + len + messages - 1 {
                    break;
                }
            }
            let mut buf = vec![0u8; 64 * 1024];
            let mut space =
                vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
            let n = s
                .async_io(Interest::READABLE, || {
                    let mut control = RecvAncillaryBuffer::new(&mut space);
                    let msg = recvmsg(
                        s,
                        &mut [IoSliceMut::new(&mut buf)],
                        &mut control,
                        RecvFlags::CMSG_CLOEXEC,
                    )
                    .map_err(io::Error::from)?;
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(received) = m {
                            fds.extend(received);
                        }
                    }
                    Ok(msg.bytes)
                })
                .await
                .map_err(io_err("receiving the sockets"))?;
            if n == 0 {
                return Err(HandoverError::Closed("the sockets"));
            }
            bytes.extend_from_slice(&buf[..n]);
            if header.is_none() && bytes.len() >= 4 {
                let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if len > HEADER_BYTES_MAX {
                    return Err(HandoverError::Protocol(format!(
                        "a header of {len} bytes (at most {HEADER_BYTES_MAX})"
                    )));
                }
                if bytes.len() >= 4 + len {
                    let h: Header = serde_json::from_slice(&bytes[4..4 + len])
                        .map_err(|e| HandoverError::Protocol(format!("bad header: {e}")))?;
                    if h.protocol != PROTOCOL_VERSION {
                        return Err(HandoverError::Protocol(format!(
                            "the running process speaks hand-over version {}, this one {PROTOCOL_VERSION}",
                            h.protocol
                        )));
                    }
                    header = Some((h, len));
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(STEP_TIMEOUT, receive)
        .await
        .map_err(|_| HandoverError::Timeout {
            what: "the sockets",
            timeout: STEP_TIMEOUT,
        })??;
    let (h, _) = header.expect("the loop ends with a header");
    if fds.len() != h.fds() {
        return Err(HandoverError::Protocol(format!(
            "{} sockets received, the header lists {}",
            fds.len(),
            h.fds()
        )));
    }
    Ok((h, fds))
}

/// The successor's end of the exchange, between `RELEASED` and
/// `ACCEPTING`.
#[derive(Debug)]
pub struct Predecessor {
    link: UnixStream,
}

impl Predecessor {
    /// Tells the running process this one accepts: it stops accepting and
    /// drains.
    pub async fn accepting(self) -> Result<(), HandoverError> {
        write_all(
            &self.link,
            b"ACCEPTING\n",
            "telling the old process to stop",
        )
        .await
    }
}

/// The successor's side: connects to `path` and takes the running
/// process's sockets, after it has left the fleet. `Ok(None)` if no
/// process listens at `path` (no file, or a stale one nobody accepts on):
/// the caller starts as usual, binding its own sockets.
pub async fn take_over(path: &Path) -> Result<Option<(Sockets, Predecessor)>, HandoverError> {
    let link = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(source) => {
            return Err(HandoverError::Connect {
                path: path.to_owned(),
                source,
            });
        }
    };
    write_all(
        &link,
        format!("TAKE-OVER {PROTOCOL_VERSION}\n").as_bytes(),
        "asking for the sockets",
    )
    .await?;
    let (header, fds) = receive_with_fds(&link).await?;
    write_all(
        &link,
        b"RELEASE\n",
        "asking the old process to leave the fleet",
    )
    .await?;
    expect_line(&link, "RELEASED", STEP_TIMEOUT).await?;
    let mut fds = fds.into_iter();
    let mut sockets = Sockets::default();
    for (name, n) in header.listeners {
        let group = fds
            .by_ref()
            .take(n)
            .map(std::net::TcpListener::from)
            .collect();
        sockets.listeners.push((name, group));
    }
    if header.admin {
        sockets.admin = fds.next().map(std::net::TcpListener::from);
    }
    if header.dns
        && let (Some(udp), Some(tcp)) = (fds.next(), fds.next())
    {
        sockets.dns = Some((
            std::net::UdpSocket::from(udp),
            std::net::TcpListener::from(tcp),
        ));
    }
    Ok(Some((sockets, Predecessor { link })))
}

/// What the running process's side asks of the node.
#[derive(Debug)]
pub enum Step {
    /// Leave the fleet and close its endpoint; answer when done.
    Release(tokio::sync::oneshot::Sender<()>),
    /// The successor accepts: stop accepting and drain.
    HandedOver,
}

/// The running process's side: listens at `path`. A file left there by a
/// process that is gone is replaced; one a live process answers on is
/// refused (that process is to be taken over, not robbed of its path),
/// unless this process is its `successor`, which took over from it.
pub fn listen(path: &Path, successor: bool) -> Result<UnixListener, HandoverError> {
    let err = |source| HandoverError::Listen {
        path: path.to_owned(),
        source,
    };
    if !successor && std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a running shoal process listens there: start this one with --take-over to replace it",
        )));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
}

/// Serves one successor at a time until one has taken over: sends it
/// `sockets` (duplicates of the running ones), and drives the node
/// through `steps`. Returns when the hand-over is done or `stop` fires.
pub async fn serve(
    listener: UnixListener,
    offer: std::sync::Arc<tokio::sync::Mutex<Sockets>>,
    steps: tokio::sync::mpsc::Sender<Step>,
) {
    loop {
        let link = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "take-over socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Held for the exchange: a live reload, which replaces the offer,
        // is refused meanwhile.
        let sockets = offer.lock().await;
        match exchange(&link, &sockets, &steps).await {
            Ok(()) => return,
            Err((released, e)) if released => {
                tracing::error!(error = %e,
                    "hand-over failed after this process left the fleet: it keeps serving its listeners outside the fleet; restart it");
                return;
            }
            Err((_, e)) => {
                tracing::warn!(error = %e, "hand-over failed; this process keeps serving as before");
            }
        }
    }
}

/// One successor's exchange; the error says whether the node had left the
/// fleet already.
async fn exchange(
    link: &UnixStream,
    sockets: &Sockets,
    steps: &tokio::sync::mpsc::Sender<Step>,
) -> Result<(), (bool, HandoverError)> {
    let before = |e| (false, e);
    let ours = rustix::process::geteuid().as_raw();
    let cred = rustix::net::sockopt::socket_peercred(link)
        .map_err(|e| before(io_err("reading the successor's credentials")(e.into())))?;
    if cred.uid.as_raw() != ours {
        return Err(before(HandoverError::Stranger {
            uid: cred.uid.as_raw(),
            ours,
        }));
    }
    let hello = read_line(link, "TAKE-OVER", STEP_TIMEOUT)
        .await
        .map_err(before)?;
    if hello != format!("TAKE-OVER {PROTOCOL_VERSION}") {
        return Err(before(HandoverError::Protocol(format!(
            "the successor asked {:?}; this process speaks \"TAKE-OVER {PROTOCOL_VERSION}\"",
            shoal_seeds::escape_controls(&hello)
        ))));
    }
    tracing::info!(
        pid = cred.pid.as_raw_nonzero().get(),
        "a successor asks for the sockets"
    );
    let header = Header {
        protocol: PROTOCOL_VERSION,
        listeners: sockets
            .listeners
            .iter()
            .map(|(n, g)| (n.clone(), g.len()))
            .collect(),
        admin: sockets.admin.is_some(),
        dns: sockets.dns.is_some(),
    };
    let mut fds = Vec::with_capacity(header.fds());
    let dup = |l: &std::net::TcpListener| {
        l.try_clone()
            .map(OwnedFd::from)
            .map_err(|e| before(io_err("duplicating a listening socket")(e)))
    };
    for (_, group) in &sockets.listeners {
        for l in group {
            fds.push(dup(l)?);
        }
    }
    if let Some(a) = &sockets.admin {
        fds.push(dup(a)?);
    }
    if let Some((udp, tcp)) = &sockets.dns {
        fds.push(
            udp.try_clone()
                .map(OwnedFd::from)
                .map_err(|e| before(io_err("duplicating the DNS socket")(e)))?,
        );
        fds.push(dup(tcp)?);
    }
    let json = serde_json::to_vec(&header).expect("the header serializes");
    let mut bytes = (json.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&json);
    send_with_fds(link, &bytes, &fds).await.map_err(before)?;
    drop(fds);
    expect_line(link, "RELEASE", STEP_TIMEOUT)
        .await
        .map_err(before)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    if steps.send(Step::Release(done_tx)).await.is_err() || done_rx.await.is_err() {
        return Err(before(HandoverError::Protocol(
            "this node is stopping".to_owned(),
        )));
    }
    let after = |e| (true, e);
    write_all(link, b"RELEASED\n", "telling the successor")
        .await
        .map_err(after)?;
    expect_line(link, "ACCEPTING", ACCEPTING_TIMEOUT)
        .await
        .map_err(after)?;
    let _ = steps.send(Step::HandedOver).await;
    Ok(())
}
