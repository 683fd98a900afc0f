//! The receiving half of [`crate::Transport`]: the accept loop, the per-connection task
//! and the per-request task.
//!
//! The per-connection task is the "network task" that must never block: it moves
//! datagrams into the incoming channel with `try_send` and drops them (counted) when the
//! channel is full. Request streams get a task each (at most
//! `requests_per_connection_max` per connection, enforced by QUIC stream credit), which may
//! wait for channel room and for the answer, up to `request_timeout_ms`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use quinn::{Connection, ReadToEndError, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::{Instant, timeout, timeout_at};

use crate::admission::{IgnoreReason, Verdict, decide};
use crate::endpoint::{Incoming, Shared, Slot, reset_code};
use crate::stats::{add, bump};
use crate::tls::ALPN;

/// Close code for a connection whose peer passed the handshake but not our membership
/// checks.
const CLOSE_NOT_MEMBER: u32 = 1;

impl Shared {
    /// Accepts connections until the endpoint closes. Each attempt is judged before any
    /// handshake state exists (see [`crate::admission`]): accepted, sent a Retry, ignored,
    /// or refused when `incoming_connections_max` connections are open.
    pub(crate) async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            bump(&self.counters.incoming_attempts);
            let from = incoming.remote_address();
            let validated = incoming.remote_address_validated();
            let now = std::time::Instant::now();
            let budget = self.lock(&self.sources).check(from.ip(), validated, now);
            let in_progress = self.handshakes.load(Ordering::Relaxed) as usize;
            match decide(budget, validated, in_progress, &self.limits) {
                Verdict::Accept => {}
                Verdict::Retry if incoming.may_retry() => {
                    bump(&self.counters.incoming_retried);
                    // Fails only for an Initial that already carried a token, which
                    // `may_retry` ruled out.
                    let _ = incoming.retry();
                    continue;
                }
                Verdict::Retry => {
                    self.ignore(incoming, IgnoreReason::BadToken);
                    continue;
                }
                Verdict::Ignore(reason) => {
                    self.ignore(incoming, reason);
                    continue;
                }
            }
            let Ok(permit) = Arc::clone(&self.incoming_permits).try_acquire_owned() else {
                bump(&self.counters.incoming_refused_full);
                self.note_dropped(from, "incoming_connections_max reached");
                incoming.refuse();
                continue;
            };
            // Counted here, not in the task, so the next attempt already sees it.
            self.handshakes.fetch_add(1, Ordering::Relaxed);
            self.runtime
                .spawn(Arc::clone(&self).accept_one(incoming, permit));
        }
        tracing::debug!(local_addr = %self.local_addr, "accept loop ended");
    }

    /// Drops an attempt without an answer (an answer would make us a reflector for
    /// spoofed sources), counted and logged at most once per interval.
    fn ignore(&self, incoming: quinn::Incoming, reason: IgnoreReason) {
        let from = incoming.remote_address();
        incoming.ignore();
        let why = match reason {
            IgnoreReason::SourceRateLimited => {
                bump(&self.counters.incoming_ignored_rate_limited);
                "source_handshakes_max reached"
            }
            IgnoreReason::Busy => {
                bump(&self.counters.incoming_ignored_busy);
                "handshakes_max reached"
            }
            IgnoreReason::BadToken => {
                bump(&self.counters.incoming_ignored_bad_token);
                "address validation token did not validate"
            }
        };
        self.note_dropped(from, why);
    }

    /// One line per `refused_log_interval_ms` for attempts dropped before the handshake;
    /// `suppressed` counts the others since the previous line.
    fn note_dropped(&self, from: SocketAddr, why: &str) {
        let now = std::time::Instant::now();
        if let Some(suppressed) = self.lock(&self.dropped_log).event(now) {
            tracing::warn!(
                peer = %from,
                reason = why,
                suppressed,
                "dropped incoming connection attempts"
            );
        }
    }

    async fn accept_one(self: Arc<Self>, incoming: quinn::Incoming, _permit: OwnedSemaphorePermit) {
        let from = incoming.remote_address();
        let handshake = self.handshake_incoming(incoming).await;
        self.handshakes.fetch_sub(1, Ordering::Relaxed);
        match handshake {
            Ok(conn) => {
                self.cache_incoming(from, &conn);
                self.serve(conn).await;
            }
            Err(reason) => self.report_refused(from, reason),
        }
    }

    /// Completes the server side of the handshake. With mandatory client authentication it
    /// completes only after rustls verified the peer's chain against the cluster CA, so a
    /// foreign peer fails here even though its own `connect()` may have succeeded.
    async fn handshake_incoming(&self, incoming: quinn::Incoming) -> Result<Connection, String> {
        let connecting = incoming
            .accept()
            .map_err(|e| format!("handshake as server: {e}"))?;
        let conn = match timeout(self.limits.connect_timeout(), connecting).await {
            Err(_) => {
                return Err(format!(
                    "handshake as server timed out after {} ms",
                    self.limits.connect_timeout_ms
                ));
            }
            Ok(Err(e)) => return Err(format!("handshake as server: {e}")),
            Ok(Ok(conn)) => conn,
        };
        // These hold by construction of the TLS config; checking them here keeps a later
        // change there (optional client auth, a second ALPN) from silently admitting
        // strangers.
        let reject = |reason: &str| {
            conn.close(VarInt::from_u32(CLOSE_NOT_MEMBER), reason.as_bytes());
            Err(reason.to_string())
        };
        let has_chain = conn
            .peer_identity()
            .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
            .is_some_and(|chain| !chain.is_empty());
        if !has_chain {
            return reject("peer presented no certificate");
        }
        let protocol = conn
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        if protocol.as_deref() != Some(ALPN) {
            return reject("peer did not negotiate ALPN shoal/1");
        }
        Ok(conn)
    }

    /// Serves one established connection until it closes: datagrams to the channel, each
    /// request stream to its own task. Removes it from the cache when it ends.
    pub(crate) async fn serve(self: Arc<Self>, conn: Connection) {
        let from = conn.remote_address();
        // The name the peer's certificate states: what it may call itself
        // in the fleet (the core checks every claim against it).
        let Some(peer) = conn
            .peer_identity()
            .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|chain| chain.first().and_then(crate::tls::certificate_name))
        else {
            conn.close(
                VarInt::from_u32(CLOSE_NOT_MEMBER),
                b"certificate names no node",
            );
            self.forget(from, conn.stable_id());
            return;
        };
        let peer: Arc<str> = peer.into();
        let reason = loop {
            tokio::select! {
                datagram = conn.read_datagram() => match datagram {
                    Ok(data) => self.deliver_datagram(from, &peer, data),
                    Err(e) => break e,
                },
                stream = conn.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        self.runtime
                            .spawn(Arc::clone(&self).answer(from, peer.clone(), send, recv));
                    }
                    Err(e) => break e,
                },
            }
        };
        tracing::debug!(peer = %from, %reason, "connection ended");
        self.forget(from, conn.stable_id());
    }

    /// Caches an accepted connection under the peer's address, replacing a cached one: the
    /// peer dialled because it holds no live connection to us, so the cached one may lead
    /// to a process that died at this address, whose datagrams would vanish until the
    /// idle timeout; if it is a twin from a simultaneous dial, both work and the other one
    /// keeps being served. A dial in flight is left alone: it ends in a connection to the
    /// same live process.
    fn cache_incoming(&self, from: SocketAddr, conn: &Connection) {
        let mut peers = self.lock_peers();
        match peers.get(&from) {
            Some(Slot::Connecting { .. }) => {}
            Some(Slot::Ready(cached)) => {
                if cached.close_reason().is_none() {
                    tracing::debug!(peer = %from, "new incoming connection replaces the cached one");
                }
                peers.insert(from, Slot::Ready(conn.clone()));
            }
            None if peers.len() < self.limits.peers_max => {
                peers.insert(from, Slot::Ready(conn.clone()));
            }
            None => {}
        }
    }

    fn deliver_datagram(&self, from: SocketAddr, peer: &Arc<str>, data: Bytes) {
        bump(&self.counters.datagrams_received);
        add(&self.counters.datagram_bytes_received, data.len() as u64);
        let peer = peer.clone();
        if self
            .incoming
            .try_send(Incoming::Datagram { from, peer, data })
            .is_err()
        {
            bump(&self.counters.datagrams_dropped_queue_full);
        }
    }

    /// Reads one request, hands it to the channel, writes back the answer; resets the
    /// stream with a [`reset_code`] when any step fails or runs out of time.
    async fn answer(
        self: Arc<Self>,
        from: SocketAddr,
        peer: Arc<str>,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let deadline = Instant::now() + self.limits.request_timeout();
        let refuse = |send: &mut SendStream, code: u32| {
            bump(&self.counters.requests_refused);
            tracing::debug!(peer = %from, reason = %reset_code::describe(code.into()), "request refused");
            // The stream may already be gone with the connection; nothing left to tell.
            let _ = send.reset(VarInt::from_u32(code));
        };
        let data = match timeout_at(deadline, recv.read_to_end(self.limits.request_bytes_max)).await
        {
            Ok(Ok(data)) => data,
            Ok(Err(ReadToEndError::TooLong)) => {
                let _ = recv.stop(VarInt::from_u32(reset_code::TOO_LARGE));
                return refuse(&mut send, reset_code::TOO_LARGE);
            }
            Ok(Err(ReadToEndError::Read(e))) => {
                tracing::debug!(peer = %from, error = %e, "request stream failed");
                return;
            }
            Err(_) => return refuse(&mut send, reset_code::TIMED_OUT),
        };
        let (respond, answer) = oneshot::channel();
        let request = Incoming::Request {
            from,
            peer,
            data,
            respond,
        };
        match timeout_at(deadline, self.incoming.send(request)).await {
            Ok(Ok(())) => bump(&self.counters.requests_received),
            Ok(Err(_)) | Err(_) => return refuse(&mut send, reset_code::BUSY),
        }
        let response = match timeout_at(deadline, answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return refuse(&mut send, reset_code::NO_ANSWER),
            Err(_) => return refuse(&mut send, reset_code::TIMED_OUT),
        };
        // Writing back gets a fresh deadline: how fast it drains is up to the requester.
        let written = timeout(self.limits.request_timeout(), async {
            send.write_all(&response).await?;
            send.finish()?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(peer = %from, error = %e, "cannot write response"),
            Err(_) => refuse(&mut send, reset_code::TIMED_OUT),
        }
    }
}
