//! `[limits]`: how much the gateway accepts from sources it does not know
//! and how much work it queues before it sheds new calls.

use std::time::Duration;

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
    /// Bytes of kernel receive buffer asked for on each UDP socket. A flood
    /// and the trusted traffic on one socket share this buffer; while the
    /// gateway is off the CPU it is all that stands between a burst and
    /// lost datagrams (a carrier's 200, a PBX's BYE). Past
    /// `net.core.rmem_max` it takes `CAP_NET_ADMIN` (`SO_RCVBUFFORCE`).
    pub udp_receive_buffer: usize,
    /// Each UDP listener as two sockets on its address, the kernel steering
    /// the PBX's and the carriers' datagrams into one and everyone else's
    /// into the other, so that a flood cannot fill the buffer trusted
    /// traffic waits in (`crate::transport::steer`; Linux).
    pub udp_trusted_socket: bool,
    /// How long a core that reads the UDP sockets itself lets datagrams
    /// queue up after a turn that read only a few; zero reads again only
    /// when woken. Up to this much latency per message for fewer wake-ups
    /// per call (BENCHMARKS.md).
    pub batch_window: Duration,
}

/// 16 MiB holds 26 214 datagrams of up to about 700 bytes (Linux counts
/// 1 280 bytes for each on loopback; measured): 140 ms of the 186 000
/// messages/s one flooding sender reached (BENCHMARKS.md, "Flood"), where
/// the 4 MiB that `net.core.rmem_max` allowed held 6 553, 35 ms. The memory
/// is only taken while datagrams wait in it.
const DEFAULT_UDP_RECEIVE_BUFFER: usize = 16 << 20;

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            untrusted_rate: 20,
            untrusted_burst: 40,
            sources: 4096,
            tcp_per_source: 8,
            worker_queue: 4096,
            retry_after: 5,
            udp_receive_buffer: DEFAULT_UDP_RECEIVE_BUFFER,
            udp_trusted_socket: true,
            batch_window: Duration::from_millis(1),
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
    udp_receive_buffer: S<i64>,
    udp_trusted_socket: Option<bool>,
    batch_window_us: S<i64>,
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
        let udp_buffer = self.bounded(
            raw.udp_receive_buffer,
            d.udp_receive_buffer as i64,
            64 << 10,
            1 << 30,
            "udp_receive_buffer",
        );
        let window = self.batch_window(raw.batch_window_us, d.batch_window);
        Some(LimitsConfig {
            untrusted_rate: rate? as u32,
            untrusted_burst: burst? as u32,
            sources: sources? as usize,
            tcp_per_source: tcp? as usize,
            worker_queue: queue? as usize,
            retry_after: retry? as u32,
            udp_receive_buffer: udp_buffer? as usize,
            udp_trusted_socket: raw.udp_trusted_socket.unwrap_or(d.udp_trusted_socket),
            batch_window: window?,
        })
    }

    fn batch_window(&mut self, raw: S<i64>, default: Duration) -> Option<Duration> {
        let us = self.bounded(
            raw,
            default.as_micros() as i64,
            0,
            10_000,
            "batch_window_us",
        )?;
        Some(Duration::from_micros(us as u64))
    }

    fn bounded(&mut self, raw: S<i64>, default: i64, min: i64, max: i64, key: &str) -> Option<i64> {
        match raw {
            None => Some(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Some(*v.get_ref()),
            Some(v) => self.fail(&v, format!("[limits] {key}: expected {min} to {max}")),
        }
    }
}
