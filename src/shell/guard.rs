//! Flood defence in front of the proxy cores: every message is classified by
//! its source address before it is parsed. The PBX and the carriers always
//! get through; anyone else has a small per-source budget of messages, sends
//! no responses, and is dropped silently past the budget, so that a flood
//! costs a table lookup per datagram instead of a parse and an answer.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use metrics::Counter;

use super::glance::{glance, Glance, Kind};
use crate::config::LimitsConfig;
use crate::proxy::TrustList;

/// Who sent a message, as far as the source address tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A PBX of the `[trust]` list.
    Trusted,
    /// The address of a configured carrier.
    Carrier,
    /// Anyone else.
    Untrusted,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Trusted => "trusted",
            Class::Carrier => "carrier",
            Class::Untrusted => "untrusted",
        }
    }
}

/// Why the shell dropped a message before any core saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The untrusted source spent its budget.
    OverBudget,
    /// A response from a source that is neither a carrier nor a PBX.
    StrangerResponse,
    /// The owning core's queue was full.
    QueueFull,
}

impl DropReason {
    const ALL: [DropReason; 3] = [
        DropReason::OverBudget,
        DropReason::StrangerResponse,
        DropReason::QueueFull,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::OverBudget => "over_budget",
            DropReason::StrangerResponse => "stranger_response",
            DropReason::QueueFull => "queue_full",
        }
    }
}

/// Classifies sources and keeps the untrusted ones to their budget.
pub struct Guard {
    trust: TrustList,
    carriers: Vec<IpAddr>,
    budget: Budget,
    /// `cidgate_shell_dropped_total{class, reason}`, one handle per pair so
    /// a flood costs an atomic add per datagram, not a registry lookup.
    dropped: [[Counter; 3]; 3],
}

impl Guard {
    pub fn new(trust: &TrustList, carriers: &[SocketAddr], limits: &LimitsConfig) -> Guard {
        let class_counters = |c: Class| {
            DropReason::ALL.map(|r| {
                metrics::counter!("cidgate_shell_dropped_total", "class" => c.label(), "reason" => r.label())
            })
        };
        Guard {
            trust: trust.clone(),
            carriers: carriers.iter().map(|a| a.ip()).collect(),
            budget: Budget::new(limits),
            dropped: [Class::Trusted, Class::Carrier, Class::Untrusted].map(class_counters),
        }
    }

    pub fn classify(&self, ip: IpAddr) -> Class {
        if self.trust.is_trusted(ip) {
            Class::Trusted
        } else if self.carriers.contains(&ip) {
            Class::Carrier
        } else {
            Class::Untrusted
        }
    }

    /// The class of the sender when the message may go on to a core, or
    /// `None` when it is dropped here (and counted).
    pub fn admit(&mut self, now: Instant, from: SocketAddr, g: &Glance<'_>) -> Option<Class> {
        let class = self.classify(from.ip());
        if class != Class::Untrusted {
            return Some(class);
        }
        let verdict = if g.kind == Kind::Response {
            Err(DropReason::StrangerResponse)
        } else if !self.budget.take(now, from.ip()) {
            Err(DropReason::OverBudget)
        } else {
            Ok(class)
        };
        verdict.map_err(|r| self.count(class, r)).ok()
    }

    /// [`Guard::admit`] for a core that reads the sockets itself: the
    /// message is glanced at only when it comes from a stranger, the one case
    /// whose verdict depends on it (most traffic is the PBX and carriers).
    pub fn admit_message(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Option<Class> {
        match self.classify(from.ip()) {
            Class::Untrusted => self.admit(now, from, &glance(data)),
            known => Some(known),
        }
    }

    /// Counts a drop decided elsewhere in the shell (a full queue).
    pub fn count(&self, class: Class, reason: DropReason) {
        self.dropped[class as usize][reason as usize].increment(1);
    }
}

/// Token buckets per source in a fixed table indexed by a hash of the
/// address: memory never grows with the number of sources. Two sources that
/// share a slot take it from each other, each time with a full bucket, which
/// makes a many-address flood no cheaper to absorb than a single source at
/// `sources` addresses.
struct Budget {
    slots: Vec<Slot>,
    rate: f64,
    burst: f64,
}

#[derive(Clone, Copy)]
struct Slot {
    ip: Option<IpAddr>,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    fn new(limits: &LimitsConfig) -> Budget {
        let n = limits.sources.next_power_of_two();
        Budget {
            slots: vec![
                Slot {
                    ip: None,
                    tokens: 0.0,
                    at: None
                };
                n
            ],
            rate: f64::from(limits.untrusted_rate),
            burst: f64::from(limits.untrusted_burst),
        }
    }

    /// Spends one token of `ip`'s bucket; false when it is empty.
    fn take(&mut self, now: Instant, ip: IpAddr) -> bool {
        let i = (hash_ip(ip) as usize) & (self.slots.len() - 1);
        let slot = &mut self.slots[i];
        if slot.ip != Some(ip) {
            *slot = Slot {
                ip: Some(ip),
                tokens: self.burst,
                at: Some(now),
            };
        } else if let Some(at) = slot.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            slot.tokens = (slot.tokens + refill).min(self.burst);
            slot.at = Some(now);
        }
        if slot.tokens >= 1.0 {
            slot.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn hash_ip(ip: IpAddr) -> u64 {
    let bits: u128 = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let folded = (bits as u64) ^ ((bits >> 64) as u64);
    folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::glance::glance;
    use std::time::Duration;

    fn guard(rate: u32, burst: u32) -> Guard {
        let trust = TrustList::new(vec!["127.0.0.10/32".parse().unwrap()]);
        let limits = LimitsConfig {
            untrusted_rate: rate,
            untrusted_burst: burst,
            sources: 16,
            ..LimitsConfig::default()
        };
        Guard::new(&trust, &["127.0.0.20:5080".parse().unwrap()], &limits)
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: x\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n";

    #[test]
    fn pbx_and_carrier_are_never_limited() {
        let mut g = guard(1, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            let pbx = "127.0.0.10:5070".parse().unwrap();
            let carrier = "127.0.0.20:9999".parse().unwrap();
            assert_eq!(g.admit(now, pbx, &glance(OK)), Some(Class::Trusted));
            assert_eq!(
                g.admit(now, carrier, &glance(OPTIONS)),
                Some(Class::Carrier)
            );
        }
    }

    #[test]
    fn strangers_get_their_burst_then_the_rate() {
        let mut g = guard(10, 5);
        let t0 = Instant::now();
        let s: SocketAddr = "127.0.0.9:5060".parse().unwrap();
        let admitted = (0..100)
            .filter(|_| g.admit(t0, s, &glance(OPTIONS)).is_some())
            .count();
        assert_eq!(admitted, 5);
        // One second later: ten more, not a hundred.
        let t1 = t0 + Duration::from_secs(1);
        let admitted = (0..100)
            .filter(|_| g.admit(t1, s, &glance(OPTIONS)).is_some())
            .count();
        assert_eq!(admitted, 5, "the bucket holds at most the burst");
        // Another stranger has its own bucket.
        let other: SocketAddr = "127.0.0.8:5060".parse().unwrap();
        assert!(g.admit(t1, other, &glance(OPTIONS)).is_some());
    }

    #[test]
    fn responses_from_strangers_are_dropped() {
        let mut g = guard(100, 100);
        let s = "127.0.0.9:5060".parse().unwrap();
        assert_eq!(g.admit(Instant::now(), s, &glance(OK)), None);
    }

    #[test]
    fn the_table_stays_its_size() {
        let mut g = guard(1, 1);
        let now = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            g.admit(now, SocketAddr::new(ip, 5060), &glance(OPTIONS));
        }
        assert_eq!(g.budget.slots.len(), 16);
    }
}
