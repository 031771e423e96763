//! Admission of accepted TCP connections: a cap on all connections and a
//! smaller one per untrusted source, so that one address cannot hold the
//! gateway's descriptors. Refusals are counted and logged once per interval.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::guard::Class;
use super::throttle::LogThrottle;

/// Held by a connection for its life; dropping it frees its places.
pub type ConnSlot = Arc<dyn Send + Sync>;

/// The two places a connection takes: one of all, one of its source's.
struct Places {
    _all: Arc<()>,
    _source: Option<Arc<()>>,
}

pub struct AcceptGate {
    all: Arc<()>,
    max_all: usize,
    per_source: usize,
    by_source: HashMap<IpAddr, Arc<()>>,
    refused: [metrics::Counter; 2],
    log: LogThrottle,
}

/// Sources remembered before forgetting those without a live connection.
const TRACKED_SOURCES: usize = 4096;

impl AcceptGate {
    pub fn new(max_all: usize, per_source: usize) -> AcceptGate {
        AcceptGate {
            all: Arc::new(()),
            max_all,
            per_source,
            by_source: HashMap::new(),
            refused: ["total", "per_source"]
                .map(|r| metrics::counter!("cidgate_tcp_refused_total", "reason" => r)),
            log: LogThrottle::default(),
        }
    }

    /// A slot for a connection from `peer` of class `class`, or `None` when
    /// it is to be closed at once.
    pub fn admit(&mut self, peer: SocketAddr, class: Class) -> Option<ConnSlot> {
        if Arc::strong_count(&self.all) > self.max_all {
            return self.refuse(peer, 0);
        }
        let source = if class == Class::Untrusted {
            if self.by_source.len() >= TRACKED_SOURCES {
                self.by_source.retain(|_, c| Arc::strong_count(c) > 1);
            }
            let count = self.by_source.entry(peer.ip()).or_default();
            if Arc::strong_count(count) > self.per_source {
                return self.refuse(peer, 1);
            }
            Some(count.clone())
        } else {
            None
        };
        Some(Arc::new(Places {
            _all: self.all.clone(),
            _source: source,
        }))
    }

    fn refuse(&mut self, peer: SocketAddr, reason: usize) -> Option<ConnSlot> {
        self.refused[reason].increment(1);
        if let Some(n) = self.log.hit(Instant::now()) {
            let why = [
                "too many TCP connections",
                "too many TCP connections from one source",
            ];
            tracing::warn!(%peer, refused = n, "{}; refusing (count since the last line)", why[reason]);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_sources_get_their_share_and_it_comes_back() {
        let mut gate = AcceptGate::new(100, 2);
        let a: SocketAddr = "127.0.0.9:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.8:1000".parse().unwrap();
        let s1 = gate.admit(a, Class::Untrusted).unwrap();
        let _s2 = gate.admit(a, Class::Untrusted).unwrap();
        assert!(gate.admit(a, Class::Untrusted).is_none());
        assert!(gate.admit(b, Class::Untrusted).is_some());
        // Trusted peers are limited by the total only.
        let pbx: Vec<_> = (0..10)
            .map(|_| gate.admit(a, Class::Trusted).unwrap())
            .collect();
        drop(s1);
        assert!(gate.admit(a, Class::Untrusted).is_some());
        drop(pbx);
    }

    #[test]
    fn the_total_is_capped() {
        let mut gate = AcceptGate::new(3, 10);
        let a: SocketAddr = "127.0.0.10:1000".parse().unwrap();
        let held: Vec<_> = (0..3)
            .filter_map(|_| gate.admit(a, Class::Trusted))
            .collect();
        assert_eq!(held.len(), 3);
        assert!(gate.admit(a, Class::Trusted).is_none());
    }
}
