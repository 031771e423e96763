//! `[limits]`: how much the gateway accepts from sources it does not know
//! and how much work it queues before it sheds new calls.

use serde::Deserialize;

use super::{Checker, S};

/// Checked `[limits]` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Messages per second a source that is neither a PBX nor a carrier may
    /// send before the rest are dropped unanswered (sustained rate).
    pub untrusted_rate: u32,
    /// Messages such a source may send at once before the rate applies.
    pub untrusted_burst: u32,
    /// Slots in the per-source table: its memory is fixed, a new source
    /// takes the slot of an old one when they collide.
    pub sources: usize,
    /// TCP connections one untrusted source may hold open.
    pub tcp_per_source: usize,
    /// Messages queued per proxy core; past it new calls are refused with
    /// 503 while responses and in-dialog requests still get in.
    pub worker_queue: usize,
    /// Seconds written into the `Retry-After` of a 503 for shed calls.
    pub retry_after: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            untrusted_rate: 20,
            untrusted_burst: 40,
            sources: 4096,
            tcp_per_source: 8,
            worker_queue: 4096,
            retry_after: 5,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    untrusted_rate: S<i64>,
    untrusted_burst: S<i64>,
    sources: S<i64>,
    tcp_per_source: S<i64>,
    worker_queue: S<i64>,
    retry_after: S<i64>,
}

impl Checker<'_> {
    pub(super) fn limits(&mut self, raw: RawLimits) -> Option<LimitsConfig> {
        let d = LimitsConfig::default();
        let rate = self.bounded(
            raw.untrusted_rate,
            d.untrusted_rate as i64,
            1,
            100_000,
            "untrusted_rate",
        );
        let burst = self.bounded(
            raw.untrusted_burst,
            d.untrusted_burst as i64,
            1,
            100_000,
            "untrusted_burst",
        );
        let sources = self.bounded(raw.sources, d.sources as i64, 16, 1 << 20, "sources");
        let tcp = self.bounded(
            raw.tcp_per_source,
            d.tcp_per_source as i64,
            1,
            100_000,
            "tcp_per_source",
        );
        let queue = self.bounded(
            raw.worker_queue,
            d.worker_queue as i64,
            16,
            1 << 20,
            "worker_queue",
        );
        let retry = self.bounded(
            raw.retry_after,
            d.retry_after as i64,
            1,
            3600,
            "retry_after",
        );
        Some(LimitsConfig {
            untrusted_rate: rate? as u32,
            untrusted_burst: burst? as u32,
            sources: sources? as usize,
            tcp_per_source: tcp? as usize,
            worker_queue: queue? as usize,
            retry_after: retry? as u32,
        })
    }

    fn bounded(&mut self, raw: S<i64>, default: i64, min: i64, max: i64, key: &str) -> Option<i64> {
        match raw {
            None => Some(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Some(*v.get_ref()),
            Some(v) => self.fail(&v, format!("[limits] {key}: expected {min} to {max}")),
        }
    }
}
