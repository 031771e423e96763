//! The proxy core and its dispatch: every input (a message, a timer, an
//! unreachable peer) is routed here to the part that handles it. One
//! instance owns all transaction state; the shell serialises input into it,
//! which keeps the hot path free of locks.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::carrier_health::{CarrierHealth, ProbeIds};
use super::ids::ServerKey;
use super::in_dialog::InDialogRoute;
use super::new_call::CallerIdStage;
use super::outbox::Outbox;
use super::relay::{Relay, Transactions};
use super::rewrite::{self, Restore};
use super::settings::Settings;
use super::via::OwnVia;
use super::{Event, Peer, Transmit};
use crate::inventory::InventoryHandle;
use crate::sip::{self as sipmod, Message, Method, ParseFailure, Request};
use crate::stir::SignJob;

/// How long a failed TCP connect keeps a next hop on UDP.
const TCP_DOWN_FOR: Duration = Duration::from_secs(30);
/// Next hops remembered at most (only addresses the gateway connects to).
const MAX_TCP_DOWN: usize = 1024;

pub struct Proxy {
    pub(super) settings: Arc<Settings>,
    pub(super) caller_id: CallerIdStage,
    pub(super) txns: Transactions,
    pub(super) out: Outbox,
    pub(super) via: OwnVia,
    /// Signatures asked for and not yet taken by the shell.
    pub(super) signs: VecDeque<SignJob>,
    /// Next hops whose TCP connect failed, until when: an INVITE that
    /// outgrows UDP goes to them over UDP at once instead of trying TCP
    /// (and failing) for every call.
    pub(super) tcp_down: HashMap<SocketAddr, Instant>,
    pub(super) health: CarrierHealth,
    draining: bool,
    /// When the last final response went upstream: a drain ends only a
    /// while after it, so ACKs and retransmissions still get through.
    pub(super) last_final: Option<Instant>,
    /// The latest time the core was told.
    clock: Option<Instant>,
}

/// How long a draining gateway keeps serving after the last final response
/// it relayed: long enough for the ACK to cross, and for a carrier's first
/// 2xx retransmissions (T1, 2·T1, 4·T1) to be forwarded if the ACK was lost.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(4);

impl Proxy {
    pub fn new(settings: Settings, inventory: Arc<InventoryHandle>) -> Proxy {
        Proxy {
            caller_id: CallerIdStage::new(inventory, &settings),
            via: OwnVia::new(&settings),
            health: CarrierHealth::new(&settings.carriers, settings.health.clone()),
            settings: Arc::new(settings),
            txns: Transactions::default(),
            out: Outbox::default(),
            signs: VecDeque::new(),
            tcp_down: HashMap::new(),
            draining: false,
            last_final: None,
            clock: None,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// Earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let health = (!self.draining)
            .then(|| self.health.next_timeout())
            .flatten();
        let drained = self.drain_ends_at();
        let recount = self.draining.then(|| self.txns.recount_due()).flatten();
        [self.txns.next_timeout(), health, drained, recount]
            .into_iter()
            .flatten()
            .min()
    }

    /// Every carrier in failover order and whether it is up.
    pub fn carrier_states(&self) -> Vec<(Peer, bool)> {
        self.health.states().collect()
    }

    /// Draining and nothing left to do at `now`: every transaction has its
    /// final response and the grace time after the last one has passed.
    pub fn drained(&self, now: Instant) -> bool {
        self.drain_ends_at().is_some_and(|t| t <= now)
    }

    fn drain_ends_at(&self) -> Option<Instant> {
        if !self.draining || self.txns.pending_at(self.clock?) > 0 {
            return None;
        }
        Some(match self.last_final {
            Some(t) => t + DRAIN_GRACE,
            // Nothing was ever answered: the drain may end at once.
            None => self.clock?,
        })
    }

    /// Number of live transactions (for metrics and graceful shutdown).
    pub fn transactions(&self) -> usize {
        self.txns.len()
    }

    /// Entries in the timer queue, due or stale (for tests: the queue must
    /// not outgrow the transactions it serves).
    pub fn queued_timers(&self) -> usize {
        self.txns.queued_timers()
    }

    /// Transactions still waiting for a final response.
    pub fn pending_transactions(&self) -> usize {
        self.txns.pending()
    }

    /// Stops taking new calls (they get 503 so the PBX can go elsewhere) while
    /// transactions in progress finish; used for graceful shutdown.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Feeds one received message (a UDP datagram or a framed TCP message).
    pub fn handle(&mut self, now: Instant, from: Peer, data: Bytes) {
        self.tick(now);
        match sipmod::parse(data, from.transport) {
            Ok(Message::Request(r)) => self.on_request(now, from, r),
            Ok(Message::Response(r)) => self.on_response(now, from, r),
            Err(ParseFailure::Reject { raw, code, reason }) => {
                self.out.refuse_unchecked(from, &raw, code, reason)
            }
            Err(ParseFailure::Drop(reason)) => self.out.dropped(from.addr, reason),
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(due) = self.txns.pop_due(now) {
            self.on_timer(now, due.id, due.timer);
        }
        if !self.draining {
            let ids = ProbeIds {
                via: &self.via,
                key: &self.settings.key,
                domain: &self.settings.domain,
            };
            self.health.on_timeout(now, &ids, &mut self.out);
        }
    }

    /// Notes the time; carrier probing starts the first time it is told.
    fn tick(&mut self, now: Instant) {
        self.clock = Some(self.clock.map_or(now, |c| c.max(now)));
        self.health.start(now);
    }

    /// The shell could not reach `peer` (TCP connect failed): every call
    /// waiting on it without an answer fails over now instead of at Timer B.
    pub fn handle_unreachable(&mut self, now: Instant, peer: Peer) {
        if peer.transport == crate::sip::Transport::Tcp {
            if self.tcp_down.len() >= MAX_TCP_DOWN {
                self.tcp_down.retain(|_, until| *until > now);
            }
            if self.tcp_down.len() < MAX_TCP_DOWN {
                self.tcp_down.insert(peer.addr, now + TCP_DOWN_FOR);
            }
        }
        self.fail_unreachable(now, peer);
    }

    /// Whether a TCP connect to `addr` failed recently.
    pub(super) fn tcp_is_down(&self, now: Instant, addr: SocketAddr) -> bool {
        self.tcp_down.get(&addr).is_some_and(|until| *until > now)
    }

    fn refuse(&mut self, from: Peer, req: &Request, code: u16, phrase: &'static str, extra: &[u8]) {
        self.out
            .refuse(&self.settings.key, from, req, code, phrase, extra);
    }

    /// A 403 for the source alone, reported apart from other refusals: it is
    /// what a scan or a PBX missing from the trust list looks like.
    fn refuse_untrusted(&mut self, from: Peer, req: &Request) {
        if req.method() != Method::Ack {
            let key = &self.settings.key;
            self.out.respond(key, from, req, 403, "Forbidden", b"");
        }
        self.out.event(Event::Untrusted { from: from.addr });
    }

    /// The checks every request goes through, in order, then the handler
    /// for what it is.
    fn on_request(&mut self, now: Instant, from: Peer, req: Request) {
        let key = ServerKey::of(&req, from);
        match req.method() {
            Method::Ack => return self.on_ack(now, from, req, key),
            Method::Cancel => return self.on_cancel(now, from, req, key),
            _ => {}
        }
        if let Some(id) = self.txns.by_key(&key) {
            return self.on_retransmission(now, id);
        }
        if req.max_forwards().is_some_and(|m| m.value == 0) {
            return self.refuse(from, &req, 483, "Too Many Hops", b"");
        }
        if req.fields().to_tag().is_some() {
            return self.on_in_dialog(now, from, req, key);
        }
        // Keep-alive probes: the PBX and the configured carriers may ask the
        // gateway itself whether it is up.
        let probe = req.method() == Method::Options && self.settings.is_addressed_to_gateway(&req);
        if probe && self.settings.is_carrier_source(from.addr.ip()) {
            return self.answer_options(from, &req);
        }
        if !self.settings.is_trusted(from.addr.ip()) {
            return self.refuse_untrusted(from, &req);
        }
        if self.settings.key.is_loop(&req) {
            return self.refuse(from, &req, 482, "Loop Detected", b"");
        }
        if let Some(unsupported) = req.fields().proxy_require_tags() {
            let extra = format!("Unsupported: {unsupported}\r\n");
            return self.refuse(from, &req, 420, "Bad Extension", extra.as_bytes());
        }
        match req.method() {
            Method::Invite if self.draining => self.refuse(
                from,
                &req,
                503,
                "Service Unavailable",
                b"Retry-After: 5\r\n",
            ),
            Method::Invite => self.on_new_call(now, from, req, key),
            Method::Options if probe => self.answer_options(from, &req),
            _ => {
                // Other out-of-dialog requests from the PBX go to the first carrier
                // unchanged apart from the proxy's own edits.
                let first_up = self.health.first_up_from(0);
                let Some(&dest) = first_up.and_then(|i| self.settings.carriers.get(i)) else {
                    return self.refuse(from, &req, 503, "Service Unavailable", b"");
                };
                let relay = Relay {
                    dest,
                    restore: Restore::default(),
                    build: rewrite::plain,
                };
                self.forward(now, from, req, key, relay);
            }
        }
    }

    fn answer_options(&mut self, from: Peer, req: &Request) {
        self.out.respond(
            &self.settings.key,
            from,
            req,
            200,
            "OK",
            b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nAccept: application/sdp\r\n",
        );
    }

    fn on_ack(&mut self, now: Instant, from: Peer, req: Request, key: ServerKey) {
        if self.absorb_ack(now, &key) {
            return;
        }
        if req.fields().to_tag().is_some() {
            return self.on_in_dialog(now, from, req, key);
        }
        self.out.dropped(from.addr, "ACK matches no transaction");
    }

    fn on_in_dialog(&mut self, now: Instant, from: Peer, req: Request, key: ServerKey) {
        if let Some(unsupported) = req.fields().proxy_require_tags() {
            let extra = format!("Unsupported: {unsupported}\r\n");
            return self.refuse(from, &req, 420, "Bad Extension", extra.as_bytes());
        }
        let Some(route) = InDialogRoute::open(&req, &self.settings) else {
            // No route through a dialog we created: never relay (toll fraud).
            return self.refuse(from, &req, 403, "Forbidden", b"");
        };
        let dest = route.dest;
        if req.method() == Method::Ack {
            // ACK for a 2xx: stateless, with a branch that is stable across its
            // retransmissions.
            let branch = self.settings.key.branch(&req, &key, 0);
            let via = self.via.line(dest.transport, &branch);
            let data = route.build(&req, &self.settings, via.as_bytes());
            return self.out.send(dest, data);
        }
        let settings = self.settings.clone();
        let relay = Relay {
            dest,
            restore: route.restore(&req),
            build: move |req: &Request, via: &[u8]| route.build(req, &settings, via),
        };
        self.forward(now, from, req, key, relay);
    }
}
