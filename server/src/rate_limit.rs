//! A count of repeated events (refused connections, refused requests,
//! failed exports) that says when to log them, so a flood of them makes a
//! line a period instead of a line each.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// Counts events and says when to log them: at most once a period (a
/// second by default), with how many happened since the last line.
#[derive(Debug)]
pub(crate) struct RateLimitedCount {
    count: AtomicU64,
    last_logged_ms: AtomicU64,
    period_ms: u64,
}

impl Default for RateLimitedCount {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitedCount {
    /// At most one line a second.
    pub(crate) const fn new() -> Self {
        Self::every(Duration::from_secs(1))
    }

    /// At most one line per `period`.
    pub(crate) const fn every(period: Duration) -> Self {
        Self {
            count: AtomicU64::new(0),
            last_logged_ms: AtomicU64::new(0),
            period_ms: period.as_millis() as u64,
        }
    }

    /// Counts one event; `Some(n)` when a line should be logged now for the
    /// `n` events since the last one.
    pub(crate) fn hit(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let now = u64::try_from(process_start().elapsed().as_millis()).unwrap_or(u64::MAX) + self.period_ms;
        let last = self.last_logged_ms.load(Ordering::SeqCst);
        if now < last + self.period_ms {
            return None;
        }
        if self
            .last_logged_ms
            .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        Some(self.count.swap(0, Ordering::SeqCst))
    }
}

fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_makes_one_line_counting_the_events_before_it() {
        let refused = RateLimitedCount::every(Duration::from_secs(60));
        assert_eq!(refused.hit(), Some(1), "the first event is logged at once");
        for _ in 0..5 {
            assert_eq!(refused.hit(), None, "within the period, events are only counted");
        }
    }
}
