//! The one place where the runtime turns wall-clock time into the core's
//! [`shoal_core::Instant`].

use std::time::Instant as StdInstant;

/// Maps `std::time::Instant` to the core's instant, with the epoch at the
/// clock's creation.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: StdInstant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock {
            epoch: StdInstant::now(),
        }
    }

    /// The core's instant for now.
    pub fn now(&self) -> shoal_core::Instant {
        self.to_core(StdInstant::now())
    }

    /// The core's instant for `t`.
    pub fn to_core(&self, t: StdInstant) -> shoal_core::Instant {
        let nanos = t.saturating_duration_since(self.epoch).as_nanos();
        shoal_core::Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The `std` instant for the core's `t` (for timers).
    pub fn to_std(&self, t: shoal_core::Instant) -> StdInstant {
        self.epoch + (t - shoal_core::Instant::ZERO)
    }
}
