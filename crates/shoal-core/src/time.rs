//! A monotonic timestamp supplied by whoever drives the core.
//!
//! The core never asks the operating system for the time. The runtime maps a
//! `std::time::Instant` taken at start-up to [`Instant::ZERO`]; the simulator
//! starts its virtual clock there. Only differences between instants mean
//! anything, which keeps simulated traces independent of the wall clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Nanoseconds since an epoch chosen by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_millis(3), Instant::from_millis(8));
        assert_eq!(Instant::from_millis(8) - t, Duration::from_millis(3));
        assert_eq!(t - Instant::from_millis(8), Duration::ZERO);
        assert_eq!(
            Instant::from_nanos(u64::MAX - 1) + Duration::from_secs(10),
            Instant::from_nanos(u64::MAX)
        );
    }
}
