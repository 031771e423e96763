//! `[health]`: how carriers are probed and how long a call waits for a
//! carrier's first answer before the next one is tried.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, S};
use crate::proxy::HealthSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    probe_interval: S<f64>,
    probe_timeout: S<f64>,
    down_after: S<i64>,
    up_after: S<i64>,
    no_provisional: S<f64>,
}

impl Checker<'_> {
    pub(super) fn health(&mut self, raw: RawHealth) -> Option<HealthSettings> {
        let d = HealthSettings::default();
        let timeout_span = raw.probe_timeout.as_ref().map(|v| v.span());
        let default_interval = d.probe_interval.map_or(0.0, |i| i.as_secs_f64());
        let interval = self.seconds(
            raw.probe_interval,
            default_interval,
            0.0,
            3600.0,
            "probe_interval",
        );
        let timeout = self.seconds(
            raw.probe_timeout,
            d.probe_timeout.as_secs_f64(),
            0.1,
            60.0,
            "probe_timeout",
        );
        let down_after = self.count(raw.down_after, d.down_after, "down_after");
        let up_after = self.count(raw.up_after, d.up_after, "up_after");
        let no_provisional = self.seconds(
            raw.no_provisional,
            d.no_provisional.as_secs_f64(),
            0.1,
            32.0,
            "no_provisional",
        );
        let (interval, timeout) = (interval?, timeout?);
        let probe_interval = (interval > 0.0).then_some(interval);
        if probe_interval.is_some_and(|i| timeout >= i) {
            self.issue(
                timeout_span,
                format!("[health] probe_timeout ({timeout} s) must be shorter than probe_interval ({interval} s)"),
            );
            return None;
        }
        Some(HealthSettings {
            probe_interval: probe_interval.map(Duration::from_secs_f64),
            probe_timeout: Duration::from_secs_f64(timeout),
            down_after: down_after?,
            up_after: up_after?,
            no_provisional: Duration::from_secs_f64(no_provisional?),
        })
    }

    /// A duration in seconds within `min..=max` (0 allowed where `min` is 0).
    fn seconds(&mut self, raw: S<f64>, default: f64, min: f64, max: f64, key: &str) -> Option<f64> {
        match raw {
            None => Some(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Some(*v.get_ref()),
            Some(v) => self.fail(&v, format!("[health] {key}: seconds, {min} to {max}")),
        }
    }

    fn count(&mut self, raw: Option<Spanned<i64>>, default: u32, key: &str) -> Option<u32> {
        match raw {
            None => Some(default),
            Some(v) if (1..=100).contains(v.get_ref()) => Some(*v.get_ref() as u32),
            Some(v) => self.fail(&v, format!("[health] {key}: a count, 1 to 100")),
        }
    }
}
