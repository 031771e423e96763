//! Rate-limited reporting of requests refused for their source.
//!
//! A trust list missing a PBX, or a scanner, produces one refusal per
//! request; a log line each would drown everything else. The first refusal
//! after a quiet interval is logged at once with its source (what an operator
//! setting up a PBX needs to see), the ones after it are counted per source
//! and summed up in one line per interval.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// At most one summary line per interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Sources counted one by one in a summary; more are counted together, so a
/// scan from many addresses cannot grow the table without bound.
const MAX_SOURCES: usize = 1024;

/// Sources named in a summary line, busiest first.
const NAMED: usize = 5;

/// What to log, decided by [`UntrustedLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The first refusal after a quiet interval.
    First(SocketAddr),
    /// The refusals since the last line.
    Summary {
        total: u64,
        /// Busiest sources first: up to five `ip ×count`, then how many other
        /// sources there were.
        sources: String,
        seconds: u64,
    },
}

/// Counts untrusted refusals between log lines; pure, driven with times.
#[derive(Debug)]
pub struct UntrustedLog {
    /// When the last line was written.
    last_line: Option<Instant>,
    /// Refusals since then, per source, and in total.
    by_source: BTreeMap<IpAddr, u64>,
    total: u64,
}

impl Default for UntrustedLog {
    fn default() -> UntrustedLog {
        UntrustedLog::new()
    }
}

impl UntrustedLog {
    pub const fn new() -> UntrustedLog {
        UntrustedLog {
            last_line: None,
            by_source: BTreeMap::new(),
            total: 0,
        }
    }

    /// Notes one refusal; the line to log now, if any.
    pub fn note(&mut self, now: Instant, from: SocketAddr) -> Option<Line> {
        let quiet = match self.last_line {
            None => true,
            Some(t) => now.duration_since(t) >= INTERVAL,
        };
        if quiet && self.total == 0 {
            self.last_line = Some(now);
            return Some(Line::First(from));
        }
        self.total += 1;
        if self.by_source.len() < MAX_SOURCES || self.by_source.contains_key(&from.ip()) {
            *self.by_source.entry(from.ip()).or_default() += 1;
        }
        None
    }

    /// The summary of the refusals noted since the last line, once an
    /// interval has passed since it.
    pub fn flush(&mut self, now: Instant) -> Option<Line> {
        let since = self.last_line?;
        if self.total == 0 || now.duration_since(since) < INTERVAL {
            return None;
        }
        let mut busiest: Vec<(IpAddr, u64)> =
            std::mem::take(&mut self.by_source).into_iter().collect();
        busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut sources = String::new();
        for (i, (ip, n)) in busiest.iter().take(NAMED).enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(sources, "{sep}{ip} ×{n}");
        }
        let named: u64 = busiest.iter().take(NAMED).map(|(_, n)| n).sum();
        if named < self.total {
            let _ = write!(sources, ", other sources ×{}", self.total - named);
        }
        let line = Line::Summary {
            total: self.total,
            sources,
            seconds: now.duration_since(since).as_secs(),
        };
        self.total = 0;
        self.last_line = Some(now);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_refusal_at_once_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut log = UntrustedLog::default();
        let a = addr("192.0.2.1:5060");
        let b = addr("192.0.2.2:5062");
        assert_eq!(log.note(t0, a), Some(Line::First(a)));
        // A burst within the interval: counted, not logged.
        for i in 0..5 {
            assert_eq!(log.note(t0 + Duration::from_millis(i), a), None);
        }
        assert_eq!(log.note(t0 + Duration::from_secs(1), b), None);
        assert_eq!(log.flush(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            log.flush(t0 + Duration::from_secs(10)),
            Some(Line::Summary {
                total: 6,
                sources: "192.0.2.1 ×5, 192.0.2.2 ×1".into(),
                seconds: 10
            })
        );
        // Still refusing within the next interval: summed up again, not
        // logged one by one.
        assert_eq!(log.note(t0 + Duration::from_secs(12), b), None);
        assert_eq!(log.flush(t0 + Duration::from_secs(15)), None);
        assert!(matches!(
            log.flush(t0 + Duration::from_secs(20)),
            Some(Line::Summary { total: 1, .. })
        ));
        // Nothing to say: no line. After a quiet interval, the next one is
        // logged at once again.
        assert_eq!(log.flush(t0 + Duration::from_secs(60)), None);
        assert_eq!(
            log.note(t0 + Duration::from_secs(61), b),
            Some(Line::First(b))
        );
    }

    #[test]
    fn a_summary_names_the_busiest_sources_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut log = UntrustedLog::default();
        log.note(t0, addr("10.0.0.1:1"));
        for host in 1..=8u8 {
            for _ in 0..host {
                log.note(t0, SocketAddr::from(([10, 0, 0, host], 5060)));
            }
        }
        let Some(Line::Summary { total, sources, .. }) = log.flush(t0 + INTERVAL) else {
            panic!("no summary");
        };
        assert_eq!(total, 36);
        assert_eq!(
            sources,
            "10.0.0.8 ×8, 10.0.0.7 ×7, 10.0.0.6 ×6, 10.0.0.5 ×5, 10.0.0.4 ×4, other sources ×6"
        );
    }

    #[test]
    fn sources_beyond_the_table_are_still_counted() {
        let t0 = Instant::now();
        let mut log = UntrustedLog::default();
        log.note(t0, addr("10.0.0.1:1"));
        for i in 0..(MAX_SOURCES as u32 + 100) {
            log.note(t0, SocketAddr::from((i.to_be_bytes(), 5060)));
        }
        assert!(log.by_source.len() <= MAX_SOURCES);
        let Some(Line::Summary { total, .. }) = log.flush(t0 + INTERVAL) else {
            panic!("no summary");
        };
        assert_eq!(total, MAX_SOURCES as u64 + 100);
    }
}
