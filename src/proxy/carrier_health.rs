//! Which carriers new calls may go to, learnt the way Kamailio's dispatcher
//! learns it: OPTIONS probes at an interval, a carrier marked down after
//! `down_after` failures in a row and up again after `up_after` answers in a
//! row. Calls that got no provisional answer count as failures too, so a
//! carrier that dies between probes is taken out by the calls it drops.
//!
//! Sans-IO like the rest of the core: the table is told the time, hands the
//! probes it wants sent to the outbox, and reports state changes as events.

use std::time::{Duration, Instant};

/// How the Call-ID of every probe starts: a shell running several cores
/// hands the answers to all of them, since each core probes on its own.
pub const PROBE_CALL_ID_PREFIX: &str = "cgprobe-";

use bytes::Bytes;

use super::dialog::SealKey;
use super::outbox::Outbox;
use super::via::OwnVia;
use super::{Event, Peer};
use crate::sip::Transport;

/// How carriers are watched, and how long a call waits for a carrier's
/// first answer before the next carrier is tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between OPTIONS probes to each carrier; `None` turns probing off,
    /// and with it the up/down state (every carrier stays up).
    pub probe_interval: Option<Duration>,
    /// A probe with no answer within this is a failure.
    pub probe_timeout: Duration,
    /// Failures in a row (probes, or calls without a provisional answer)
    /// that mark a carrier down.
    pub down_after: u32,
    /// Probe answers in a row that mark a down carrier up again.
    pub up_after: u32,
    /// A call attempt without any provisional answer (a 100 Trying counts)
    /// after this moves on to the next carrier that is up, instead of
    /// waiting out Timer B (32 s).
    pub no_provisional: Duration,
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            probe_interval: Some(Duration::from_secs(10)),
            probe_timeout: Duration::from_secs(2),
            down_after: 3,
            up_after: 2,
            no_provisional: Duration::from_secs(3),
        }
    }
}

/// RFC 3261 T1: the first retransmission interval of a probe over UDP.
const PROBE_T1: Duration = Duration::from_millis(500);

/// A probe waiting for its answer.
struct Probe {
    branch: String,
    data: Bytes,
    deadline: Instant,
    /// Next UDP retransmission and its interval.
    retrans: Option<(Instant, Duration)>,
}

struct Carrier {
    peer: Peer,
    up: bool,
    failures: u32,
    successes: u32,
    /// `None` until probing starts.
    next_probe: Option<Instant>,
    probe: Option<Probe>,
}

/// The health of every configured carrier, in failover order.
pub(super) struct CarrierHealth {
    settings: HealthSettings,
    carriers: Vec<Carrier>,
    started: bool,
    seq: u64,
}

impl CarrierHealth {
    pub(super) fn new(carriers: &[Peer], settings: HealthSettings) -> CarrierHealth {
        CarrierHealth {
            settings,
            carriers: carriers
                .iter()
                .map(|&peer| Carrier {
                    peer,
                    up: true,
                    failures: 0,
                    successes: 0,
                    next_probe: None,
                    probe: None,
                })
                .collect(),
            started: false,
            seq: 0,
        }
    }

    pub(super) fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    fn probing(&self) -> bool {
        self.settings.probe_interval.is_some()
    }

    /// Probing starts the first time the core is told the time: the first
    /// probes go out then.
    pub(super) fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            for c in &mut self.carriers {
                c.next_probe = Some(now);
            }
        }
    }

    /// The first carrier at or after `from` in failover order that is up.
    pub(super) fn first_up_from(&self, from: usize) -> Option<usize> {
        (from..self.carriers.len()).find(|&i| self.carriers[i].up)
    }

    /// Seconds a caller should wait before trying again when every carrier
    /// is down: the soonest a carrier can be marked up again.
    pub(super) fn retry_after(&self) -> u64 {
        let interval = self
            .settings
            .probe_interval
            .unwrap_or(Duration::from_secs(5));
        (interval * self.settings.up_after.max(1)).as_secs().max(1)
    }

    /// Every carrier and whether it is up (for the admin view).
    pub(super) fn states(&self) -> impl Iterator<Item = (Peer, bool)> + '_ {
        self.carriers.iter().map(|c| (c.peer, c.up))
    }

    /// Earliest time `on_timeout` has work to do.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        if !self.probing() || !self.started {
            return None;
        }
        self.carriers
            .iter()
            .filter_map(|c| match &c.probe {
                Some(p) => Some(p.retrans.map_or(p.deadline, |(t, _)| t.min(p.deadline))),
                None => c.next_probe,
            })
            .min()
    }

    /// Sends due probes and retransmissions, and counts probes that timed out.
    pub(super) fn on_timeout(&mut self, now: Instant, ids: &ProbeIds<'_>, out: &mut Outbox) {
        if !self.probing() || !self.started {
            return;
        }
        let interval = self.settings.probe_interval.unwrap_or_default();
        for i in 0..self.carriers.len() {
            let c = &mut self.carriers[i];
            match c.probe.as_mut() {
                Some(p) if p.deadline <= now => {
                    c.probe = None;
                    self.observe(i, false, "probe timed out", out);
                }
                Some(p) => {
                    if let Some((_, iv)) = p.retrans.filter(|(t, _)| *t <= now) {
                        out.send(c.peer, p.data.clone());
                        let next = (iv * 2).min(Duration::from_secs(4));
                        p.retrans = Some((now + next, next));
                    }
                }
                None if c.next_probe.is_some_and(|t| t <= now) => {
                    self.seq += 1;
                    let (branch, data) = ids.options(c.peer, self.seq);
                    out.send(c.peer, data.clone());
                    c.next_probe = Some(now + interval);
                    c.probe = Some(Probe {
                        branch,
                        data,
                        deadline: now + self.settings.probe_timeout,
                        retrans: (c.peer.transport == Transport::Udp)
                            .then_some((now + PROBE_T1, PROBE_T1)),
                    });
                }
                None => {}
            }
        }
    }

    /// A response with `branch`: true when it answers one of our probes. Any
    /// answer from the carrier's SIP stack shows it alive, except the ones
    /// that say it cannot take calls (408, 5xx, 6xx).
    pub(super) fn on_response(&mut self, branch: &[u8], code: u16, out: &mut Outbox) -> bool {
        let Some(i) = self.carriers.iter().position(|c| {
            c.probe
                .as_ref()
                .is_some_and(|p| p.branch.as_bytes() == branch)
        }) else {
            return false;
        };
        if code < 200 {
            // Still coming; stop retransmitting (RFC 3261 §17.1.2.2).
            if let Some(p) = self.carriers[i].probe.as_mut() {
                p.retrans = None;
            }
            return true;
        }
        self.carriers[i].probe = None;
        let alive = code < 500 && code != 408;
        self.observe(i, alive, "probe answered", out);
        true
    }

    /// A call attempt to `index` went without any answer for the
    /// no-provisional time, or timed out altogether.
    pub(super) fn call_failed(&mut self, index: usize, out: &mut Outbox) {
        self.observe(index, false, "call attempt unanswered", out);
    }

    /// A carrier answered a call attempt: whatever failures it had are over.
    pub(super) fn call_answered(&mut self, index: usize) {
        if let Some(c) = self.carriers.get_mut(index) {
            if c.up {
                c.failures = 0;
            }
        }
    }

    fn observe(&mut self, index: usize, ok: bool, why: &'static str, out: &mut Outbox) {
        if !self.probing() {
            return;
        }
        let (down_after, up_after) = (self.settings.down_after, self.settings.up_after);
        let Some(c) = self.carriers.get_mut(index) else {
            return;
        };
        if ok {
            c.failures = 0;
            c.successes = c.successes.saturating_add(1);
        } else {
            c.successes = 0;
            c.failures = c.failures.saturating_add(1);
        }
        let flip = if c.up {
            !ok && c.failures >= down_after
        } else {
            ok && c.successes >= up_after
        };
        if flip {
            c.up = !c.up;
            c.failures = 0;
            c.successes = 0;
            out.event(Event::CarrierState {
                carrier: c.peer,
                up: c.up,
                reason: why,
            });
        }
    }
}

/// What a probe is written with: our Via, the gateway's name and the key
/// that makes its branch recognisably ours.
pub(super) struct ProbeIds<'a> {
    pub(super) via: &'a OwnVia,
    pub(super) key: &'a SealKey,
    pub(super) domain: &'a str,
}

impl ProbeIds<'_> {
    /// An OPTIONS probe to `peer` (RFC 3261 §11), number `seq`.
    fn options(&self, peer: Peer, seq: u64) -> (String, Bytes) {
        let branch = self.key.probe_branch(seq);
        let via = self.via.line(peer.transport, &branch);
        let target = match peer.addr {
            std::net::SocketAddr::V4(a) => a.to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let transport = match peer.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        let domain = self.domain;
        let msg = format!(
            "OPTIONS sip:{target}{transport} SIP/2.0\r\n{via}Max-Forwards: 70\r\nFrom: <sip:cidgate@{domain}>;tag=cgp{seq:x}\r\nTo: <sip:{target}>\r\nCall-ID: {PROBE_CALL_ID_PREFIX}{seq:x}@{domain}\r\nCSeq: {seq} OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
        );
        (branch, Bytes::from(msg))
    }
}
