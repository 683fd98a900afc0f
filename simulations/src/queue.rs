//! The virtual clock and the one event queue, ordered by `(time, seq)`.
//!
//! `seq` is a counter taken at scheduling time, so events due at the same
//! instant run in the order they were scheduled: nothing depends on how a
//! heap breaks ties. Popping an event moves the clock to its time; the
//! clock never goes backwards and nothing can be scheduled in the past.

use shoal_core::Instant;
use std::collections::BTreeMap;
use std::time::Duration;

/// Pending events of type `E` and the current virtual time.
#[derive(Debug, Clone)]
pub struct EventQueue<E> {
    now: Instant,
    seq: u64,
    pending: BTreeMap<(Instant, u64), E>,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue::new()
    }
}

impl<E> EventQueue<E> {
    /// An empty queue whose clock reads [`Instant::ZERO`].
    pub fn new() -> Self {
        EventQueue {
            now: Instant::ZERO,
            seq: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The virtual time: that of the last event popped.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Schedules `event` at `at`.
    ///
    /// # Panics
    /// If `at` is before [`EventQueue::now`]: a simulator bug.
    pub fn schedule_at(&mut self, at: Instant, event: E) {
        assert!(
            at >= self.now,
            "event scheduled in the past: {at:?} < {:?}",
            self.now
        );
        self.pending.insert((at, self.seq), event);
        self.seq += 1;
    }

    /// Schedules `event` `delay` from now.
    pub fn schedule_in(&mut self, delay: Duration, event: E) {
        self.schedule_at(self.now + delay, event);
    }

    /// When the next event is due, if any.
    pub fn next_time(&self) -> Option<Instant> {
        self.pending.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Removes the next event and moves the clock to its time.
    pub fn pop(&mut self) -> Option<E> {
        let ((at, _), event) = self.pending.pop_first()?;
        self.now = at;
        Some(event)
    }

    /// Events not yet popped.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_by_scheduling_order() {
        let mut q = EventQueue::new();
        q.schedule_at(Instant::from_millis(5), "late");
        q.schedule_at(Instant::from_millis(1), "first");
        q.schedule_at(Instant::from_millis(1), "second");
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_time(), Some(Instant::from_millis(1)));
        assert_eq!(q.pop(), Some("first"));
        assert_eq!(q.pop(), Some("second"));
        assert_eq!(q.now(), Instant::from_millis(1));
        q.schedule_in(Duration::from_millis(1), "relative");
        assert_eq!(q.pop(), Some("relative"));
        assert_eq!(q.now(), Instant::from_millis(2));
        assert_eq!(q.pop(), Some("late"));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
        assert_eq!(
            q.now(),
            Instant::from_millis(5),
            "an empty pop keeps the clock"
        );
    }

    #[test]
    #[should_panic(expected = "in the past")]
    fn scheduling_in_the_past_is_a_bug() {
        let mut q = EventQueue::new();
        q.schedule_at(Instant::from_millis(5), ());
        q.pop();
        q.schedule_at(Instant::from_millis(4), ());
    }
}
