//! What the core has to say: messages to transmit and events to log, queued
//! until the shell drains them, and the responses the gateway writes itself.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::dialog::SealKey;
use super::{Event, Peer, Transmit};
use crate::sip::reply::{self, ReplySpec};
use crate::sip::scan::{RawMessage, StartLine};
use crate::sip::{Method, Request};

#[derive(Default)]
pub(super) struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Outbox {
    pub(super) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(super) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(super) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    pub(super) fn dropped(&mut self, from: SocketAddr, reason: &'static str) {
        self.event(Event::Dropped { from, reason });
    }

    /// Queues `data` for `to`; nothing for an empty message, and never toward
    /// addresses no peer can have (RFC 4475 bcast).
    pub(super) fn send(&mut self, to: Peer, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let ip = to.addr.ip();
        let unroutable = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
            || to.addr.port() == 0;
        if unroutable {
            return self.dropped(to.addr, "refusing to send to an unroutable address");
        }
        self.transmits.push_back(Transmit { to, data });
    }

    /// Answers `req` (from `from`) and returns the answer for retransmission.
    pub(super) fn respond(
        &mut self,
        key: &SealKey,
        from: Peer,
        req: &Request,
        code: u16,
        phrase: &str,
        extra: &[u8],
    ) -> Bytes {
        // A 100 carries no To tag (RFC 3261 §8.2.6.2), so none is computed.
        let tag = (code > 100).then(|| key.local_tag(req.fields()));
        let data = reply::reply(
            req,
            from.addr,
            &ReplySpec {
                code,
                phrase,
                to_tag: tag.as_deref(),
                extra,
            },
        );
        self.send(from, data.clone());
        data
    }

    /// Refuses `req` with an error (an ACK gets none) and reports it.
    pub(super) fn refuse(
        &mut self,
        key: &SealKey,
        from: Peer,
        req: &Request,
        code: u16,
        phrase: &'static str,
        extra: &[u8],
    ) {
        if req.method() != Method::Ack {
            self.respond(key, from, req, code, phrase, extra);
        }
        self.event(Event::Refused {
            from: from.addr,
            code,
            reason: phrase,
        });
    }

    /// Refuses a request that failed its checks, from the headers that were
    /// there (an ACK gets no answer).
    pub(super) fn refuse_unchecked(
        &mut self,
        from: Peer,
        raw: &RawMessage,
        code: u16,
        reason: &'static str,
    ) {
        let is_ack = match raw.start {
            StartLine::Request { method, .. } => raw.bytes(method) == b"ACK",
            StartLine::Response { .. } => true,
        };
        if !is_ack {
            let phrase = if code == 505 {
                "Version Not Supported"
            } else {
                reason
            };
            let spec = ReplySpec {
                code,
                phrase,
                to_tag: Some("cgerr"),
                extra: b"",
            };
            self.send(from, reply::reply_raw(raw, &spec));
        }
        self.event(Event::Refused {
            from: from.addr,
            code,
            reason,
        });
    }
}
