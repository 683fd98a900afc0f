//! One backend's health: a rise/fall state machine fed by observations.
//!
//! Observations come from active checks (a TCP connect every `interval`) and
//! from the data plane (a client connection that could not reach the backend
//! counts as a failed check at once, like HAProxy's `observe layer4` with
//! `on-error fail-check`; successful client connects are not observations).
//! A backend goes down after `fall` consecutive failures and comes back
//! after `rise` consecutive successes.
//!
//! Bounds (checked by the simulator): a backend that dies is down within
//! `interval * fall + timeout`. One that recovers is up within
//! `interval * rise + max(timeout, connect_timeout)`: a client connect
//! started before the recovery can still fail up to `connect_timeout`
//! later, and that failure restarts the rise streak.
//!
//! A backend starts *up but unproven*: until its first success, a single
//! failure takes it down (HAProxy does the same at start-up), so a backend
//! that is dead when shoal starts is found by the first check instead of
//! after `fall` of them, while a healthy one takes traffic from the first
//! moment.

use std::time::Duration;

/// Active check parameters; the defaults are HAProxy's (`inter 2s`,
/// `timeout check 1s`, `rise 2`, `fall 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between the starts of two checks of one backend.
    pub interval: Duration,
    /// A check that has not connected by then has failed.
    pub timeout: Duration,
    /// Consecutive successes that bring a down backend up.
    pub rise: u32,
    /// Consecutive failures that take an up backend down.
    pub fall: u32,
    /// Nodes of a fleet that actively check each backend (decision 49);
    /// 0 means [`crate::checkers::CHECKERS_DEFAULT`], a value at or above
    /// the fleet's size means every node checks.
    pub checkers: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_millis(2000),
            timeout: Duration::from_millis(1000),
            rise: 2,
            fall: 3,
            checkers: 0,
        }
    }
}

/// A health parameter that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthParamError {
    #[error("`{field}` is 0; it must be at least 1")]
    Zero { field: &'static str },
    #[error("`timeout_ms` ({timeout_ms}) must not exceed `interval_ms` ({interval_ms})")]
    TimeoutOverInterval { timeout_ms: u128, interval_ms: u128 },
}

impl HealthConfig {
    /// Checks the parameters; every error names the field.
    pub fn validate(&self) -> Result<(), HealthParamError> {
        if self.interval.is_zero() {
            return Err(HealthParamError::Zero {
                field: "interval_ms",
            });
        }
        if self.timeout.is_zero() {
            return Err(HealthParamError::Zero {
                field: "timeout_ms",
            });
        }
        if self.rise == 0 {
            return Err(HealthParamError::Zero { field: "rise" });
        }
        if self.fall == 0 {
            return Err(HealthParamError::Zero { field: "fall" });
        }
        if self.timeout > self.interval {
            return Err(HealthParamError::TimeoutOverInterval {
                timeout_ms: self.timeout.as_millis(),
                interval_ms: self.interval.as_millis(),
            });
        }
        Ok(())
    }
}

/// The state machine of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    up: bool,
    /// Consecutive observations against the current state.
    streak: u32,
    /// Whether any check has succeeded since start (see the module doc).
    proven: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    /// A backend that is up but unproven.
    pub fn new() -> Self {
        Health {
            up: true,
            streak: 0,
            proven: false,
        }
    }

    /// Whether the backend takes new connections.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Whether any check has succeeded yet (until then this node's verdict
    /// is a guess, and the fleet's is worth more).
    pub fn is_proven(&self) -> bool {
        self.proven
    }

    /// The fleet's checkers hold the backend up: it counts as proven here
    /// too, so a node that does not check it needs `fall` failed client
    /// connects, not one, before it gives up on it.
    pub fn prove(&mut self) {
        self.proven = true;
    }

    /// The fleet's checkers hold the backend down, and this node, which
    /// does not check it, had taken it down on failed client connects: the
    /// checkers' verdict takes over, so that their "up" brings it back
    /// here at once instead of after `rise` checks of this node's own.
    pub fn hand_over(&mut self) {
        self.up = true;
        self.streak = 0;
    }

    /// Feeds one observation. Returns `Some(new_state)` when the state flips.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.proven = true;
        }
        if ok == self.up {
            // Agrees with the current state: any streak against it is broken.
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match (self.up, self.proven) {
            (true, false) => 1,
            (true, true) => fall,
            (false, _) => rise,
        };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(self.up)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(h: &mut Health, seq: &[bool]) -> Vec<Option<bool>> {
        seq.iter().map(|&ok| h.observe(ok, 2, 3)).collect()
    }

    #[test]
    fn unproven_backend_falls_on_first_failure() {
        let mut h = Health::new();
        assert!(h.is_up());
        assert_eq!(feed(&mut h, &[false]), vec![Some(false)]);
        assert!(!h.is_up());
    }

    #[test]
    fn proven_backend_needs_fall_consecutive_failures() {
        let mut h = Health::new();
        assert_eq!(
            feed(&mut h, &[true, false, false, true, false, false, false]),
            vec![None, None, None, None, None, None, Some(false)]
        );
        assert!(!h.is_up());
    }

    #[test]
    fn down_backend_needs_rise_consecutive_successes() {
        let mut h = Health::new();
        h.observe(false, 2, 3);
        assert_eq!(
            feed(&mut h, &[true, false, true, true]),
            vec![None, None, None, Some(true)]
        );
        assert!(h.is_up());
        // Having come back it is proven: one failure is not enough any more.
        assert_eq!(feed(&mut h, &[false]), vec![None]);
        assert!(h.is_up());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = HealthConfig::default();
        assert!(c.validate().is_ok());
        c.rise = 0;
        assert_eq!(c.validate(), Err(HealthParamError::Zero { field: "rise" }));
        c = HealthConfig {
            timeout: Duration::from_secs(5),
            ..HealthConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("timeout_ms") && err.contains("5000"), "{err}");
    }
}
