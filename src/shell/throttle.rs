//! Log lines for events that can repeat thousands of times a second (a full
//! TCP queue, refused connections): one line per interval with the count,
//! instead of one per event, so that an attack cannot flood the log.

use std::time::{Duration, Instant};

/// How often a throttled event may be logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts occurrences of one kind of event between log lines.
#[derive(Debug, Default)]
pub struct LogThrottle {
    suppressed: u64,
    last: Option<Instant>,
}

impl LogThrottle {
    /// Records one occurrence; returns how many occurred since the last
    /// line (this one included) when a line is due now.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.suppressed += 1;
        match self.last {
            Some(t) if now.saturating_duration_since(t) < LOG_INTERVAL => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let mut t = LogThrottle::default();
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        for _ in 0..999 {
            assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(t.hit(t0 + LOG_INTERVAL), Some(1000));
    }
}
