//! [`LogThrottle`]: at most one log line per interval for events a stranger can cause, with
//! the count of what was held back.
//!
//! Anyone who can send a UDP packet can make a node refuse a handshake, and source addresses
//! can be spoofed: one line per refusal turns a packet flood into a disk flood. The first
//! event is logged at once (an operator sees the first intruder immediately); after that
//! one line per interval says how many more there were. The type holds no clock: callers
//! pass `now`, so tests drive it with made-up instants.

use std::time::{Duration, Instant};

/// Decides which of a stream of similar events get a log line.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    interval: Duration,
    /// When the next line may be written; `None` before the first event.
    next_line_at: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// At most one line per `interval`; a zero interval lets every event through.
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            next_line_at: None,
            suppressed: 0,
        }
    }

    /// Records one event at `now`. `Some(n)`: write a line now, saying that `n` similar
    /// events since the previous line were not logged. `None`: stay quiet (counted).
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        match self.next_line_at {
            Some(at) if now < at => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.next_line_at = Some(now + self.interval);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Events held back since the last line.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_is_logged_then_one_line_per_interval_with_the_count() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut t = LogThrottle::new(Duration::from_millis(1_000));
        assert_eq!(t.event(ms(0)), Some(0));
        let quiet = (1..1_000).filter_map(|i| t.event(ms(i))).count();
        assert_eq!(quiet, 0, "nothing logged within the interval");
        assert_eq!(t.suppressed(), 999);
        assert_eq!(
            t.event(ms(1_000)),
            Some(999),
            "the next line carries the count"
        );
        assert_eq!(t.event(ms(1_001)), None);
        assert_eq!(t.event(ms(5_000)), Some(1));
    }

    #[test]
    fn a_flood_yields_lines_bounded_by_time_not_by_events() {
        let start = Instant::now();
        let mut t = LogThrottle::new(Duration::from_millis(100));
        // 50,000 events over 10 s (one every 200 µs).
        let lines = (0..50_000u64)
            .filter_map(|i| t.event(start + Duration::from_micros(200 * i)))
            .count();
        assert_eq!(lines, 100);
    }
}
