//! Transaction state: what the proxy remembers per forwarded request until
//! retransmissions can no longer arrive, and the RFC 3261 timer values.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rewrite::HopRequest;
use super::Peer;
use crate::sip::{self as sipmod, Message, Request, Response};

/// RFC 3261 timer values.
pub(super) const T1: Duration = Duration::from_millis(500);
pub(super) const T2: Duration = Duration::from_secs(4);
/// Timer B / F / H: 64·T1.
pub(super) const TIMEOUT: Duration = Duration::from_secs(32);
/// Timer C: a proxy gives up on a ringing INVITE after more than three minutes.
pub(super) const TIMER_C: Duration = Duration::from_secs(181);
/// Timer I (T4): how long a confirmed INVITE transaction absorbs ACK copies.
pub(super) const TIMER_I: Duration = Duration::from_secs(5);
/// How long a finished transaction is kept to absorb retransmissions.
pub(super) const LINGER: Duration = Duration::from_secs(32);

pub(super) type TxnId = u64;

/// Client side of a transaction: the request as sent to the next hop.
pub(super) struct Client {
    pub(super) branch: String,
    pub(super) dest: Peer,
    pub(super) request: Bytes,
    /// What CANCEL and ACK are built from; worked out from `request` the first
    /// time one is needed (most calls never need either).
    pub(super) hop: Option<HopRequest>,
    pub(super) provisional: bool,
    pub(super) final_code: Option<u16>,
    /// UDP retransmission (Timer A / E): next time and current interval.
    pub(super) retrans: Option<(Instant, Duration)>,
    /// Timer B / F before a provisional, Timer C after one.
    pub(super) deadline: Instant,
    pub(super) cancel_sent: bool,
    /// Sent over TCP only because it outgrew UDP: retry over UDP if TCP fails.
    pub(super) udp_fallback: bool,
    /// Timer C fired and a CANCEL went out; the next deadline answers 408.
    pub(super) timer_c_fired: bool,
}

/// What kind of request the transaction forwards, and what it needs to redo.
pub(super) enum Kind {
    /// A new outbound call: may fail over to the next carrier.
    Call {
        carrier: usize,
        queue_number: String,
        name: String,
        anonymous: bool,
        add_privacy: bool,
    },
    /// Any other forwarded request (in-dialog or plain out-of-dialog).
    Other,
    /// Answered by the gateway itself (the caller-ID reject); nothing forwarded.
    Local,
}

pub(super) struct Txn {
    pub(super) server_key: Box<[u8]>,
    pub(super) invite: bool,
    pub(super) upstream: Peer,
    /// The request as received, kept to answer it and, for calls, to fail
    /// over; dropped once a final response is sent so that lingering
    /// transactions hold only what retransmissions need.
    pub(super) request: Option<Request>,
    pub(super) kind: Kind,
    pub(super) restore_from: Option<Bytes>,
    pub(super) restore_to: Option<Bytes>,
    /// Last response sent upstream, resent on a retransmitted request.
    pub(super) last_response: Option<Bytes>,
    pub(super) final_code: Option<u16>,
    pub(super) acked: bool,
    pub(super) cancelled: bool,
    /// Timer G: retransmission of a non-2xx final over UDP until the ACK.
    pub(super) retrans_up: Option<(Instant, Duration)>,
    pub(super) expire_at: Option<Instant>,
    pub(super) client: Option<Client>,
}

impl Client {
    pub(super) fn hop(&mut self) -> Option<&HopRequest> {
        if self.hop.is_none() {
            // Our own output: it parses (the hostile-input suite checks that).
            if let Ok(Message::Request(sent)) =
                sipmod::parse(self.request.clone(), self.dest.transport)
            {
                let c = &sent.common;
                let via = &c.buf()[c.header(c.via).line.range()];
                self.hop = Some(HopRequest::from_forwarded(&sent, via));
            }
        }
        self.hop.as_ref()
    }

    pub(super) fn cancel(&mut self) -> Bytes {
        self.hop().map(HopRequest::cancel).unwrap_or_default()
    }

    pub(super) fn ack(&mut self, resp: &Response) -> Bytes {
        self.hop().map(|h| h.ack(resp)).unwrap_or_default()
    }
}

impl Txn {
    /// A transaction for a request just received from `upstream`; callers set
    /// what differs (restore values, the first response, timers).
    pub(super) fn new(
        server_key: Box<[u8]>,
        upstream: Peer,
        request: Option<Request>,
        invite: bool,
        kind: Kind,
    ) -> Txn {
        Txn {
            server_key,
            invite,
            upstream,
            request,
            kind,
            restore_from: None,
            restore_to: None,
            last_response: None,
            final_code: None,
            acked: false,
            cancelled: false,
            retrans_up: None,
            expire_at: None,
            client: None,
        }
    }

    /// After the final response only retransmission handling remains: drop
    /// the received request and the copy kept for retransmitting downstream.
    pub(super) fn shed(&mut self) {
        self.request = None;
        if let Some(cl) = self.client.as_mut() {
            cl.request = Bytes::new();
        }
    }
}
