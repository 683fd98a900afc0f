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
/// first or last `churn_margin`; 35 % kill -9, 30 % SIGTERM, 35 % backend;
/// never [`CONTROL_NODE`].
pub fn plan(p: &Params) -> Vec<Planned> {
    let mut rng = SmallRng::seed_from_u64(p.seed);
    let mean_ms = p.churn_every.as_millis() as u64;
    let last = p.duration.saturating_sub(p.churn_margin);
    let mut at = p.churn_margin;
    let mut out = Vec::new();
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
            0..35 => Churn::Kill9 {
                node,
                down_ms: rng.random_range(0..=KILL_DOWN_MS_MAX),
            },
            35..65 => Churn::Sigterm {
                node,
                down_ms: rng.random_range(0..=TERM_DOWN_MS_MAX),
            },
            _ => Churn::Backend {
                backend: rng.random_range(0..BACKENDS),
                down_ms: rng.random_range(BACKEND_DOWN_MS_MIN..=BACKEND_DOWN_MS_MAX),
            },
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
        for e in &a {
            assert!(e.at > p.churn_margin && e.at <= p.duration - p.churn_margin);
            if let Churn::Kill9 { node, .. } | Churn::Sigterm { node, .. } = e.what {
                assert_ne!(node, CONTROL_NODE);
            }
        }
    }
}
