//! The churn schedule: a pure function of the parameters and the seed, so
//! that a printed seed names the same kills and restarts at the same
//! offsets (the timing of the processes themselves is not replayable).

use super::{BACKENDS, CHURN_EVENTS_MAX, CONTROL_NODE, NODES, Params};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// Down time of a node killed with SIGKILL, at most (0: restarted at once).
pub const KILL_DOWN_MS_MAX: u64 = 2000;
/// Down time of a node after its SIGTERM exit, at most.
pub const TERM_DOWN_MS_MAX: u64 = 1000;
/// Down time of a killed backend: from, to.
pub const BACKEND_DOWN_MS_MIN: u64 = 500;
pub const BACKEND_DOWN_MS_MAX: u64 = 5000;
/// How long a partition is held once both sides have detected it
/// (without detection: from the cut): from, to.
pub const PARTITION_HOLD_MS_MIN: u64 = 500;
pub const PARTITION_HOLD_MS_MAX: u64 = 5000;

/// How often each kind of churn is drawn, in percent (they sum to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub kill9: u32,
    pub sigterm: u32,
    pub backend: u32,
    /// Needs the nodes on hosts of their own ([`super::Net::Lab`]).
    pub partition: u32,
}

impl Mix {
    /// The soak's: kill -9 35 %, SIGTERM 30 %, backend 35 %, no partition.
    pub const SOAK: Mix = Mix {
        kill9: 35,
        sigterm: 30,
        backend: 35,
        partition: 0,
    };

    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let sum = self.kill9 + self.sigterm + self.backend + self.partition;
        anyhow::ensure!(sum == 100, "churn mix {self:?} sums to {sum}, not 100");
        Ok(())
    }
}

/// One churn event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Churn {
    /// SIGKILL node `node`, restart it on the same addresses after `down_ms`.
    Kill9 { node: usize, down_ms: u64 },
    /// SIGTERM node `node`; once it has exited, restart it after `down_ms`.
    Sigterm { node: usize, down_ms: u64 },
    /// Kill backend `backend` (listener closed, connections dropped),
    /// start it again on its port after `down_ms`.
    Backend { backend: usize, down_ms: u64 },
    /// Cut the nodes of `side` (a bit per node, node 0 the lowest) from
    /// the others; heal `hold_ms` after both sides detected it.
    Partition { side: u32, hold_ms: u64 },
}

/// The nodes of a [`Churn::Partition`] side, `node-1,node-3`.
pub fn side_names(side: u32) -> String {
    (0..NODES)
        .filter(|&n| side & (1 << n) != 0)
        .map(|n| format!("node-{}", n + 1))
        .collect::<Vec<_>>()
        .join(",")
}

impl std::fmt::Display for Churn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Churn::Kill9 { node, down_ms } => {
                write!(f, "kill -9 node-{}, restart after {down_ms} ms", node + 1)
            }
            Churn::Sigterm { node, down_ms } => write!(
                f,
                "SIGTERM node-{}, restart {down_ms} ms after its exit",
                node + 1
            ),
            Churn::Backend { backend, down_ms } => {
                write!(
                    f,
                    "kill backend-{}, restart after {down_ms} ms",
                    backend + 1
                )
            }
            Churn::Partition { side, hold_ms } => write!(
                f,
                "partition {} | the rest, heal {hold_ms} ms after both sides see it",
                side_names(side)
            ),
        }
    }
}

/// A churn event and when it is due, from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub at: Duration,
    pub what: Churn,
}

/// The events of one run: gaps of 0.5 to 1.5 × `churn_every`, none in the
/// first or last `churn_margin`; kinds drawn by `p.mix` (the soak's draws
/// the same plan for a seed as before partitions existed); never a node
/// churn of [`CONTROL_NODE`] (a partition side may hold it: the process
/// lives on). A partition side holds 1 to [`NODES`]/2 nodes.
pub fn plan(p: &Params) -> Vec<Planned> {
    let mut rng = SmallRng::seed_from_u64(p.seed);
    let mean_ms = p.churn_every.as_millis() as u64;
    let last = p.duration.saturating_sub(p.churn_margin);
    let mut at = p.churn_margin;
    let mut out = Vec::new();
    let m = p.mix;
    let (k, t, b) = (
        m.kill9,
        m.kill9 + m.sigterm,
        m.kill9 + m.sigterm + m.backend,
    );
    while out.len() < CHURN_EVENTS_MAX {
        at += Duration::from_millis(rng.random_range(mean_ms / 2..=mean_ms * 3 / 2));
        if at > last {
            break;
        }
        let node = loop {
            let n = rng.random_range(0..NODES);
            if n != CONTROL_NODE {
                break n;
            }
        };
        let what = match rng.random_range(0..100u32) {
            x if x < k => Churn::Kill9 {
                node,
                down_ms: rng.random_range(0..=KILL_DOWN_MS_MAX),
            },
            x if x < t => Churn::Sigterm {
                node,
                down_ms: rng.random_range(0..=TERM_DOWN_MS_MAX),
            },
            x if x < b => Churn::Backend {
                backend: rng.random_range(0..BACKENDS),
                down_ms: rng.random_range(BACKEND_DOWN_MS_MIN..=BACKEND_DOWN_MS_MAX),
            },
            _ => {
                let size = rng.random_range(1..=NODES / 2);
                let mut side = 0u32;
                while (side.count_ones() as usize) < size {
                    side |= 1 << rng.random_range(0..NODES);
                }
                Churn::Partition {
                    side,
                    hold_ms: rng.random_range(PARTITION_HOLD_MS_MIN..=PARTITION_HOLD_MS_MAX),
                }
            }
        };
        out.push(Planned { at, what });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_plan_inside_the_margins() {
        let p = Params::long(7, Duration::from_secs(600));
        let a = plan(&p);
        assert_eq!(a, plan(&p));
        assert_ne!(a, plan(&Params::long(8, Duration::from_secs(600))));
        assert!(a.len() >= 10, "{a:?}");
        assert!(!a.iter().any(|e| matches!(e.what, Churn::Partition { .. })));
        for e in &a {
            assert!(e.at > p.churn_margin && e.at <= p.duration - p.churn_margin);
            if let Churn::Kill9 { node, .. } | Churn::Sigterm { node, .. } = e.what {
                assert_ne!(node, CONTROL_NODE);
            }
        }
    }

    #[test]
    fn partitions_are_drawn_by_the_mix_with_sides_of_at_most_half() {
        let mut p = Params::long(7, Duration::from_secs(600));
        p.mix = Mix {
            kill9: 0,
            sigterm: 0,
            backend: 0,
            partition: 100,
        };
        let a = plan(&p);
        assert!(a.len() >= 10, "{a:?}");
        for e in &a {
            let Churn::Partition { side, .. } = e.what else {
                panic!("not a partition: {e:?}");
            };
            let n = side.count_ones() as usize;
            assert!((1..=NODES / 2).contains(&n) && side < 1 << NODES, "{e:?}");
        }
    }
}
