//! A node's identity in the SWIM membership.
//!
//! `addr` is the node's QUIC endpoint as its peers dial it; `epoch` is set
//! once per process start by the driver (the runtime uses the wall clock in
//! milliseconds; the simulator a seeded counter) so a restarted node is a
//! new identity that wins over its previous life; `bump` renews the
//! identity while the process runs, so a node that the fleet wrongly
//! declared down rejoins by itself (foca's `Identity::renew`).

use foca::Identity;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// One node's identity.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Where peers reach the node (its cluster endpoint).
    pub addr: SocketAddr,
    /// The node's configured name, for logs and `/status`.
    pub name: String,
    /// Which start of the process this is; larger is newer.
    pub epoch: u64,
    /// Renewals within one start; larger is newer.
    pub bump: u16,
}

impl NodeId {
    /// A node's first identity of this start.
    pub fn new(addr: SocketAddr, name: impl Into<String>, epoch: u64) -> Self {
        NodeId {
            addr,
            name: name.into(),
            epoch,
            bump: 0,
        }
    }

    /// A stand-in for a seed we know only by address: foca accepts an
    /// announce addressed to any identity with the receiver's address.
    pub fn seed(addr: SocketAddr) -> Self {
        NodeId {
            addr,
            name: String::new(),
            epoch: 0,
            bump: 0,
        }
    }

    fn version(&self) -> (u64, u16) {
        (self.epoch, self.bump)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}#{}.{}",
            self.name, self.addr, self.epoch, self.bump
        )
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // After 65535 renewals in one start, move to the next epoch: still
        // newer than every identity this process had.
        let (epoch, bump) = match self.bump.checked_add(1) {
            Some(b) => (self.epoch, b),
            None => (self.epoch.saturating_add(1), 0),
        };
        Some(NodeId {
            addr: self.addr,
            name: self.name.clone(),
            epoch,
            bump,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.version() > adversary.version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_newer_and_keeps_the_address() {
        let a = NodeId::new("127.0.0.1:7946".parse().unwrap(), "n1", 10);
        let b = a.renew().unwrap();
        assert_eq!(b.addr(), a.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        let restarted = NodeId::new(a.addr, "n1", 11);
        assert!(
            restarted.win_addr_conflict(&b),
            "a new start beats renewals"
        );
        let last = NodeId {
            bump: u16::MAX,
            ..a.clone()
        };
        let next = last.renew().unwrap();
        assert!(next.win_addr_conflict(&last));
        assert_eq!((next.epoch, next.bump), (11, 0));
    }
}
