//! foca's timers, kept in one queue ordered by `(deadline, sequence)`.
//!
//! foca requires its timer events to be delivered in the order they were
//! scheduled when deadlines tie (foca issue #26); a task or a sleep per
//! timer would not guarantee that. The sequence number breaks ties in
//! submission order.

use crate::time::Instant;
use std::collections::BTreeMap;

/// Timers due at instants, delivered in `(deadline, submission)` order.
#[derive(Debug, Clone)]
pub struct TimerQueue<T> {
    queue: BTreeMap<(Instant, u64), T>,
    next_seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            queue: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    /// Schedules `timer` at `deadline`.
    pub fn push(&mut self, deadline: Instant, timer: T) {
        self.queue.insert((deadline, self.next_seq), timer);
        self.next_seq += 1;
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no timer waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_timers_come_out_by_deadline_then_submission_order() {
        let mut q = TimerQueue::default();
        let t = Instant::from_millis;
        q.push(t(20), "c");
        q.push(t(10), "a");
        q.push(t(10), "b");
        q.push(t(30), "d");
        assert_eq!(q.next_deadline(), Some(t(10)));
        assert_eq!(q.pop_due(t(5)), None);
        let mut out = Vec::new();
        while let Some(x) = q.pop_due(t(20)) {
            out.push(x);
        }
        assert_eq!(out, ["a", "b", "c"]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(t(30)));
    }
}
