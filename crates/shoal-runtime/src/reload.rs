//! Live reload (decision 57): how a reload reaches a running node and
//! what it is given to re-read its configuration.
//!
//! SIGHUP ([`ReloadHandle::signal`]) and `POST /reload`
//! ([`ReloadHandle::request`]) queue a request to the node's main loop
//! ([`crate::Node::run`]), which carries the reload out one at a time:
//! the [`Loader`] reads and checks the file and the certificates as at
//! start, [`shoal_config::diff::diff`] says what changed or refuses what
//! cannot change live, the new sockets are bound, and only then is
//! anything applied. Once the node stops accepting (drain-node, SIGTERM,
//! a successor) it takes no more reloads.

use shoal_config::Config;
use shoal_transport::ClusterTls;
use tokio::sync::{mpsc, oneshot};

/// Reloads waiting for the node's main loop, at most; a SIGHUP beyond it
/// is one reload more than needed (the queued ones re-read the file).
pub const RELOADS_QUEUED_MAX: usize = 4;

/// A configuration read and checked again, with the certificates of its
/// `[cluster]` loaded (the node certificate and key re-read from disk).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub tls: Option<ClusterTls>,
}

/// Reads the node's configuration again, with the same checks as at
/// start (`shoal run` and `shoal check-config` share them). The error is
/// the one line an operator needs (file, field, value).
pub struct Loader {
    /// The file, as errors name it.
    pub origin: String,
    pub load: Box<dyn Fn() -> Result<Loaded, String> + Send + Sync>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Where a reload came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadSource {
    Signal,
    Admin,
}

/// The answer to a reload: a one-line summary of what changed, or the one
/// line saying why nothing was.
pub type ReloadOutcome = Result<String, String>;

/// One reload for the node's main loop.
#[derive(Debug)]
pub struct ReloadRequest {
    pub source: ReloadSource,
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Why a SIGHUP's reload was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// [`RELOADS_QUEUED_MAX`] wait already; they re-read the same file.
    Pending,
    /// The node takes no more reloads (it stopped accepting).
    Stopping,
}

/// Asks a node for reloads.
#[derive(Debug, Clone)]
pub struct ReloadHandle(pub(crate) mpsc::Sender<ReloadRequest>);

impl ReloadHandle {
    /// A SIGHUP: queues a reload without waiting for it (its outcome is
    /// logged).
    pub fn signal(&self) -> Result<(), NotQueued> {
        self.0
            .try_send(ReloadRequest {
                source: ReloadSource::Signal,
                reply: None,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NotQueued::Pending,
                mpsc::error::TrySendError::Closed(_) => NotQueued::Stopping,
            })
    }

    /// `POST /reload`: the reload's outcome, `None` if the node takes no
    /// more reloads.
    pub async fn request(&self) -> Option<ReloadOutcome> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(ReloadRequest {
                source: ReloadSource::Admin,
                reply: Some(tx),
            })
            .await
            .ok()?;
        rx.await.ok()
    }
}
