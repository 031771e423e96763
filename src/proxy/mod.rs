//! The I/O-free proxy: transactions, routing and the caller-ID rewrite.
//!
//! [`Proxy`] is driven like quinn-proto's connection: feed it received messages
//! with [`Proxy::handle`] and expired timers with [`Proxy::handle_timeout`], then
//! drain [`Proxy::poll_transmit`] and [`Proxy::poll_event`]. It never touches a
//! socket or a clock, so every behaviour is testable with virtual time.

mod carrier_health;
mod core;
pub mod dialog;
mod ids;
mod in_dialog;
mod late;
mod new_call;
mod outbox;
mod relay;
mod rewrite;
mod settings;
mod signing;
mod trust;
mod txn;
mod via;

use std::net::SocketAddr;

use bytes::Bytes;

use crate::sip::Transport;

pub use self::core::{Proxy, DRAIN_GRACE};
pub use carrier_health::{HealthSettings, PROBE_CALL_ID_PREFIX};
pub use settings::Settings;
pub use signing::StirSigning;
pub use trust::TrustList;

/// A transport address: where a message came from or goes to. For TCP the shell
/// maps it to a connection (an existing one from or to that address first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub to: Peer,
    pub data: Bytes,
}

/// Something worth logging or counting; the shell turns these into tracing
/// events and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One caller-ID decision per new outbound INVITE.
    Decision {
        call_id: String,
        queue: String,
        /// `queue`, `dynamic`, `fallback_*`, or the reject reason.
        outcome: &'static str,
        /// The presented number; `None` when the call was rejected.
        number: Option<String>,
        /// The PASSporT `origid` of a signed call (the same in the carrier's
        /// traceback), `None` when calls are not signed.
        origid: Option<String>,
    },
    /// A request answered with an error by the gateway itself.
    Refused {
        from: SocketAddr,
        code: u16,
        reason: &'static str,
    },
    /// A request refused (403) because its source is not a trusted PBX.
    Untrusted { from: SocketAddr },
    /// Input dropped without an answer.
    Dropped {
        from: SocketAddr,
        reason: &'static str,
    },
    /// A carrier was marked up or down (probes, or calls it left unanswered).
    CarrierState {
        carrier: Peer,
        up: bool,
        reason: &'static str,
    },
}
