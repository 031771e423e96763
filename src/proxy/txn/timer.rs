//! The RFC 3261 §17 timers by name, and their values.

use std::time::{Duration, Instant};

/// T1: the round-trip estimate every retransmission interval starts from.
pub const T1: Duration = Duration::from_millis(500);
/// T2: the longest retransmission interval for non-INVITE requests and
/// INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// T4: how long a message may stay in the network.
pub const T4: Duration = Duration::from_secs(5);
/// 64·T1: how long any transaction waits for an answer (Timers B, F, H, J,
/// L, M).
pub const TIMEOUT: Duration = Duration::from_secs(32);
/// Timer C: a proxy gives up on a ringing INVITE after more than three
/// minutes (RFC 3261 §16.6 step 11).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// Which timer of which machine fired: stored in the proxy's timer queue
/// beside the deadline, so an expiry goes straight to the machine and state
/// it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Client INVITE: retransmit the request (unreliable transports).
    A,
    /// Client INVITE: no response at all in time.
    B,
    /// Client INVITE, proxy only: no final response while ringing; the
    /// first expiry CANCELs, the second gives up.
    C,
    /// Client INVITE: stop absorbing retransmitted failure responses.
    D,
    /// Client non-INVITE: retransmit the request (unreliable transports).
    E,
    /// Client non-INVITE: no final response in time.
    F,
    /// Server INVITE: retransmit the failure response (unreliable transports).
    G,
    /// Server INVITE: no ACK for the failure response in time.
    H,
    /// Server INVITE: stop absorbing ACK copies.
    I,
    /// Server non-INVITE: stop answering retransmitted requests.
    J,
    /// Client non-INVITE: stop absorbing retransmitted final responses.
    K,
    /// Server INVITE (RFC 6026): stop absorbing INVITE copies after a 2xx.
    L,
    /// Client INVITE (RFC 6026): stop forwarding 2xx retransmissions.
    M,
    /// Proxy only, not in RFC 3261 (Kamailio's fr_timer idea): a call
    /// attempt with no provisional response yet moves on to the next
    /// carrier. The relay handles it; the machines ignore it.
    NoProvisional,
}

/// Which side of a transaction a timer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Timer {
    pub fn side(self) -> Side {
        match self {
            Timer::A
            | Timer::B
            | Timer::C
            | Timer::D
            | Timer::E
            | Timer::F
            | Timer::K
            | Timer::M
            | Timer::NoProvisional => Side::Client,
            Timer::G | Timer::H | Timer::I | Timer::J | Timer::L => Side::Server,
        }
    }
}

/// A retransmission timer: when it fires next and the interval that led
/// there (the next one doubles it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub at: Instant,
    pub interval: Duration,
}

impl Backoff {
    pub fn first(now: Instant) -> Backoff {
        Backoff {
            at: now + T1,
            interval: T1,
        }
    }

    /// The next retransmission after one at `now`, the interval doubled and
    /// capped at `cap` when there is one.
    pub fn next(self, now: Instant, cap: Option<Duration>) -> Backoff {
        let doubled = self.interval * 2;
        let interval = cap.map_or(doubled, |c| doubled.min(c));
        Backoff {
            at: now + interval,
            interval,
        }
    }
}
