//! Transaction-stateful proxy logic (RFC 3261 §16, §17) around the caller-ID
//! rewrite. One instance owns all transaction state; the shell serialises input
//! into it, which keeps the hot path free of locks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::dialog::DialogState;
use super::rewrite::{self, Direction, InDialog, InitialInvite};
use super::settings::Settings;
use super::txn::{Client, Kind, Txn, TxnId, LINGER, T1, T2, TIMEOUT, TIMER_C, TIMER_I};
use super::{Event, Peer, Transmit};
use crate::callerid::policy::Resolver;
use crate::callerid::render::Presented;
use crate::inventory::InventoryHandle;
use crate::sip::message::{Common, ParseFailure};
use crate::sip::reply::{self, ReplySpec};
use crate::sip::syntax;
use crate::sip::{self as sipmod, HeaderName, Message, Method, Request, Response, Transport};

/// RFC 3261 §18.1.1: a request within 200 bytes of a 1500-byte path MTU goes
/// over a congestion-controlled transport.
const UDP_MTU_LIMIT: usize = 1300;

pub struct Proxy {
    pub(super) settings: Arc<Settings>,
    pub(super) inventory: Arc<InventoryHandle>,
    pub(super) resolver: Resolver,
    /// Boxed: a transaction is a few hundred bytes, and the map moves its
    /// values when it grows.
    pub(super) txns: HashMap<TxnId, Box<Txn>>,
    pub(super) by_server_key: HashMap<Box<[u8]>, TxnId>,
    pub(super) by_branch: HashMap<String, TxnId>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, TxnId)>>,
    pub(super) next_id: TxnId,
    pub(super) out: VecDeque<Transmit>,
    pub(super) events: VecDeque<Event>,
    pub(super) draining: bool,
    /// Our Via sent-by per transport, formatted once.
    pub(super) sent_by: [String; 2],
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Proxy {
    pub fn new(settings: Settings, inventory: Arc<InventoryHandle>) -> Proxy {
        let resolver = Resolver::new(settings.dynamic_format);
        let sent_by = Proxy::sent_by_for(&settings);
        Proxy {
            settings: Arc::new(settings),
            inventory,
            resolver,
            txns: HashMap::new(),
            by_server_key: HashMap::new(),
            by_branch: HashMap::new(),
            timers: BinaryHeap::new(),
            next_id: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            draining: false,
            sent_by,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Earliest time `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Number of live transactions (for metrics and graceful shutdown).
    pub fn transactions(&self) -> usize {
        self.txns.len()
    }

    fn send(&mut self, to: Peer, data: Bytes) {
        if data.is_empty() {
            return;
        }
        // Never toward addresses no peer can have (RFC 4475 bcast).
        let ip = to.addr.ip();
        let unroutable = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
            || to.addr.port() == 0;
        if unroutable {
            self.events.push_back(Event::Dropped {
                from: to.addr,
                reason: "refusing to send to an unroutable address",
            });
            return;
        }
        self.out.push_back(Transmit { to, data });
    }

    fn schedule(&mut self, at: Instant, id: TxnId) {
        self.timers.push(Reverse((at, id)));
    }

    /// Feeds one received message (a UDP datagram or a framed TCP message).
    pub fn handle(&mut self, now: Instant, from: Peer, data: Bytes) {
        match sipmod::parse(data, from.transport) {
            Ok(Message::Request(r)) => self.on_request(now, from, r),
            Ok(Message::Response(r)) => self.on_response(now, from, r),
            Err(ParseFailure::Reject { raw, code, reason }) => {
                let is_ack = match raw.start {
                    crate::sip::scan::StartLine::Request { method, .. } => {
                        raw.bytes(method) == b"ACK"
                    }
                    _ => true,
                };
                if !is_ack {
                    let phrase = if code == 505 {
                        "Version Not Supported"
                    } else {
                        reason
                    };
                    let data = reply::reply_raw(
                        &raw,
                        &ReplySpec {
                            code,
                            phrase,
                            to_tag: Some("cgerr"),
                            extra: b"",
                        },
                    );
                    self.send(from, data);
                }
                self.events.push_back(Event::Refused {
                    from: from.addr,
                    code,
                    reason,
                });
            }
            Err(ParseFailure::Drop(reason)) => self.events.push_back(Event::Dropped {
                from: from.addr,
                reason,
            }),
        }
    }

    fn respond(
        &mut self,
        from: Peer,
        req: &Request,
        code: u16,
        phrase: &str,
        extra: &[u8],
    ) -> Bytes {
        // A 100 carries no To tag (RFC 3261 §8.2.6.2), so none is computed.
        let tag = (code > 100).then(|| self.local_tag(&req.common));
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

    fn refuse(&mut self, from: Peer, req: &Request, code: u16, phrase: &'static str, extra: &[u8]) {
        if req.method != Method::Ack {
            self.respond(from, req, code, phrase, extra);
        }
        self.events.push_back(Event::Refused {
            from: from.addr,
            code,
            reason: phrase,
        });
    }

    fn on_request(&mut self, now: Instant, from: Peer, req: Request) {
        let key = Self::server_key(&req.common, &Self::class_of(&req), from);
        match req.method {
            Method::Ack => return self.on_ack(now, from, req, key),
            Method::Cancel => return self.on_cancel(from, req, key),
            _ => {}
        }
        if let Some(&id) = self.by_server_key.get(&key) {
            // A retransmission: answer with what we answered last.
            if let Some(resp) = self.txns.get(&id).and_then(|t| t.last_response.clone()) {
                let to = self.txns[&id].upstream;
                self.send(to, resp);
            }
            return;
        }
        if req.max_forwards.map(|m| m.1) == Some(0) {
            return self.refuse(from, &req, 483, "Too Many Hops", b"");
        }
        if req.common.to_tag.is_some() {
            return self.on_in_dialog(now, from, req, key);
        }
        // Keep-alive probes: the PBX and the configured carriers may ask the
        // gateway itself whether it is up (carriers take a trunk out of service
        // when their OPTIONS pings fail).
        let from_carrier = self
            .settings
            .carriers
            .iter()
            .any(|c| c.addr.ip() == from.addr.ip());
        if req.method == Method::Options && from_carrier && self.addressed_to_us(&req) {
            self.answer_options(from, &req);
            return;
        }
        if !self.settings.is_trusted(from.addr.ip()) {
            return self.refuse(from, &req, 403, "Forbidden", b"");
        }
        if self.is_loop(&req) {
            return self.refuse(from, &req, 482, "Loop Detected", b"");
        }
        if let Some(unsupported) = proxy_require(&req.common) {
            let extra = format!("Unsupported: {unsupported}\r\n");
            return self.refuse(from, &req, 420, "Bad Extension", extra.as_bytes());
        }
        match req.method {
            Method::Invite if self.draining => self.refuse(
                from,
                &req,
                503,
                "Service Unavailable",
                b"Retry-After: 5\r\n",
            ),
            Method::Invite => self.on_new_call(now, from, req, key),
            Method::Options if self.addressed_to_us(&req) => self.answer_options(from, &req),
            _ => {
                // Other out-of-dialog requests from the PBX go to the first carrier
                // unchanged apart from the proxy's own edits.
                let Some(&dest) = self.settings.carriers.first() else {
                    return self.refuse(from, &req, 503, "Service Unavailable", b"");
                };
                self.forward_other(now, from, req, key, dest, None, None, |req, via| {
                    rewrite::plain(req, via)
                });
            }
        }
    }

    fn answer_options(&mut self, from: Peer, req: &Request) {
        self.respond(
            from,
            req,
            200,
            "OK",
            b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nAccept: application/sdp\r\n",
        );
    }

    fn new_id(&mut self) -> TxnId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Out-of-dialog INVITE from the PBX: the caller-ID pipeline (SPEC §4).
    fn on_new_call(&mut self, now: Instant, from: Peer, req: Request, key: Box<[u8]>) {
        let c = &req.common;
        let (queue, per_call) = rewrite::caller_id_inputs(
            c,
            &self.settings.queue_header,
            &self.settings.dynamic_header,
        );
        let queue = queue
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let per_call = per_call.map(String::from_utf8_lossy);
        // A guard, not an Arc clone: no reference-count traffic per INVITE.
        let inventory = self.inventory.current();
        let decision = self
            .resolver
            .resolve(&inventory, &queue, per_call.as_deref());
        let call_id = lossy(c.call_id());
        let id = self.new_id();
        match decision {
            Err(reason) => {
                self.events.push_back(Event::Decision {
                    call_id,
                    queue,
                    outcome: reason.as_str(),
                    number: None,
                });
                let s = self.settings.clone();
                let data = self.respond(
                    from,
                    &req,
                    s.reject_code,
                    &s.reject_phrase,
                    s.reject_headers.as_bytes(),
                );
                let mut txn = Txn::new(key.clone(), from, None, true, Kind::Local);
                txn.last_response = Some(data);
                txn.final_code = Some(s.reject_code);
                txn.expire_at = Some(now + LINGER);
                if from.transport == Transport::Udp {
                    txn.retrans_up = Some((now + T1, T1));
                    self.schedule(now + T1, id);
                }
                self.schedule(now + LINGER, id);
                self.by_server_key.insert(key, id);
                self.txns.insert(id, Box::new(txn));
            }
            Ok(d) => {
                let privacy = rewrite::privacy_id(c);
                self.events.push_back(Event::Decision {
                    call_id,
                    queue,
                    outcome: d.outcome.as_str(),
                    number: Some(d.number.as_str().to_string()),
                });
                let trying = self.respond(from, &req, 100, "Trying", b"");
                let restore_from = Some(Bytes::copy_from_slice(c.value(c.header(c.from))));
                let kind = Kind::Call {
                    carrier: 0,
                    queue_number: d.number.as_str().to_string(),
                    name: d.name.to_string(),
                    anonymous: d.anonymous || privacy,
                    add_privacy: d.anonymous && !privacy,
                };
                let mut txn = Txn::new(key.clone(), from, Some(req), true, kind);
                txn.restore_from = restore_from;
                txn.last_response = Some(trying);
                self.by_server_key.insert(key, id);
                self.txns.insert(id, Box::new(txn));
                self.start_call_attempt(now, id);
            }
        }
    }

    /// Sends the call to the carrier its `Kind::Call` points at, or answers
    /// upstream when there is none left.
    fn start_call_attempt(&mut self, now: Instant, id: TxnId) {
        self.start_call_attempt_with(now, id, true)
    }

    /// `allow_tcp`: a request that outgrows the path MTU over UDP goes over TCP
    /// to the same next hop instead (RFC 3261 §18.1.1); false when that TCP
    /// attempt already failed and the request falls back to UDP.
    fn start_call_attempt_with(&mut self, now: Instant, id: TxnId, allow_tcp: bool) {
        let Some(txn) = self.txns.get(&id) else {
            return;
        };
        let Kind::Call {
            carrier,
            ref queue_number,
            ref name,
            anonymous,
            add_privacy,
        } = txn.kind
        else {
            return;
        };
        let Some(&dest) = self.settings.carriers.get(carrier) else {
            return self.final_upstream_local(now, id, 503, "Service Unavailable");
        };
        let Some(req) = txn.request.as_ref() else {
            return;
        };
        let c = &req.common;
        let branch = self.branch_for(req, &txn.server_key, carrier);
        let state = DialogState {
            number: queue_number.clone(),
            name: name.clone(),
            anonymous,
            pbx_from: {
                let v = c.bytes(c.header(c.from).value);
                let na = syntax::parse_name_addr(v).expect("From checked at parse");
                v[..na.addr_len].to_vec()
            },
            pbx: txn.upstream,
        };
        let token = self.settings.key.seal(c.call_id(), c.from_tag(), &state);
        let rr = self.record_route(txn.upstream.transport, &token);
        let build = |transport: Transport| {
            let via = self.via_line(transport, &branch);
            let data = rewrite::initial_invite(
                req,
                &self.settings,
                &InitialInvite {
                    id: Presented {
                        number: queue_number,
                        name,
                        anonymous,
                    },
                    add_privacy,
                    via_line: via.as_bytes(),
                    record_route: rr.as_bytes(),
                },
            );
            data
        };
        let (mut dest, mut upgraded) = (dest, false);
        let mut data = build(dest.transport);
        if dest.transport == Transport::Udp && allow_tcp && data.len() > UDP_MTU_LIMIT {
            dest.transport = Transport::Tcp;
            upgraded = true;
            data = build(Transport::Tcp);
        }
        self.start_client(now, id, dest, branch, data);
        if let Some(cl) = self.txns.get_mut(&id).and_then(|t| t.client.as_mut()) {
            cl.udp_fallback = upgraded;
        }
    }

    fn start_client(&mut self, now: Instant, id: TxnId, dest: Peer, branch: String, data: Bytes) {
        let retrans = (dest.transport == Transport::Udp).then_some((now + T1, T1));
        let client = Client {
            branch: branch.clone(),
            dest,
            request: data.clone(),
            hop: None,
            provisional: false,
            final_code: None,
            retrans,
            deadline: now + TIMEOUT,
            cancel_sent: false,
            udp_fallback: false,
            timer_c_fired: false,
        };
        if let Some(txn) = self.txns.get_mut(&id) {
            if let Some(old) = txn.client.take() {
                self.by_branch.remove(&old.branch);
            }
            txn.client = Some(client);
        }
        self.by_branch.insert(branch, id);
        if let Some((t, _)) = retrans {
            self.schedule(t, id);
        }
        self.schedule(now + TIMEOUT, id);
        self.send(dest, data);
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_other(
        &mut self,
        now: Instant,
        from: Peer,
        req: Request,
        key: Box<[u8]>,
        dest: Peer,
        restore_from: Option<Bytes>,
        restore_to: Option<Bytes>,
        build: impl FnOnce(&Request, &[u8]) -> Bytes,
    ) {
        let id = self.new_id();
        let branch = self.branch_for(&req, &key, 0);
        let via = self.via_line(dest.transport, &branch);
        let data = build(&req, via.as_bytes());
        let invite = req.method == Method::Invite;
        let trying = if invite {
            Some(self.respond(from, &req, 100, "Trying", b""))
        } else {
            None
        };
        let mut txn = Txn::new(key.clone(), from, Some(req), invite, Kind::Other);
        txn.restore_from = restore_from;
        txn.restore_to = restore_to;
        txn.last_response = trying;
        self.by_server_key.insert(key, id);
        self.txns.insert(id, Box::new(txn));
        self.start_client(now, id, dest, branch, data);
    }

    fn on_in_dialog(&mut self, now: Instant, from: Peer, req: Request, key: Box<[u8]>) {
        if let Some(unsupported) = proxy_require(&req.common) {
            let extra = format!("Unsupported: {unsupported}\r\n");
            return self.refuse(from, &req, 420, "Bad Extension", extra.as_bytes());
        }
        let Some((route_idx, route_span, state, direction)) = self.own_route(&req.common) else {
            // No route through a dialog we created: never relay (toll fraud).
            return self.refuse(from, &req, 403, "Forbidden", b"");
        };
        let fallback = match direction {
            Direction::Caller => self.settings.carriers.first().copied().unwrap_or(state.pbx),
            Direction::Callee => state.pbx,
        };
        let mut dest = self.next_hop(&req, route_idx, route_span, fallback);
        if dest.addr == state.pbx.addr {
            dest = state.pbx;
        }
        let c = &req.common;
        let (restore_from, restore_to) = match direction {
            Direction::Caller => (
                Some(Bytes::copy_from_slice(c.value(c.header(c.from)))),
                None,
            ),
            Direction::Callee => (None, Some(Bytes::copy_from_slice(c.value(c.header(c.to))))),
        };
        let settings = self.settings.clone();
        let build = move |req: &Request, via: &[u8]| {
            rewrite::in_dialog(
                req,
                &settings,
                &InDialog {
                    direction,
                    id: Presented {
                        number: &state.number,
                        name: &state.name,
                        anonymous: state.anonymous,
                    },
                    pbx_from: &state.pbx_from,
                    own_route: (route_idx, route_span),
                    via_line: via,
                },
            )
        };
        if req.method == Method::Ack {
            // ACK for a 2xx: stateless, with a branch that is stable across its
            // retransmissions.
            let branch = self.branch_for(&req, &key, 0);
            let via = self.via_line(dest.transport, &branch);
            let data = build(&req, via.as_bytes());
            self.send(dest, data);
            return;
        }
        self.forward_other(now, from, req, key, dest, restore_from, restore_to, build);
    }

    fn on_ack(&mut self, now: Instant, from: Peer, req: Request, key: Box<[u8]>) {
        if let Some(&id) = self.by_server_key.get(&key) {
            if let Some(txn) = self.txns.get_mut(&id) {
                if txn.final_code.is_some_and(|c| c >= 300) {
                    // ACK for a non-2xx we sent: absorbed (RFC 3261 §17.2.1);
                    // the transaction only waits out Timer I for ACK copies.
                    txn.acked = true;
                    txn.retrans_up = None;
                    let until = now + TIMER_I;
                    if txn.expire_at.map_or(true, |t| t > until) {
                        txn.expire_at = Some(until);
                        self.timers.push(Reverse((until, id)));
                    }
                    return;
                }
            }
        }
        if req.common.to_tag.is_some() {
            return self.on_in_dialog(now, from, req, key);
        }
        self.events.push_back(Event::Dropped {
            from: from.addr,
            reason: "ACK matches no transaction",
        });
    }

    fn on_cancel(&mut self, from: Peer, req: Request, key: Box<[u8]>) {
        let Some(&id) = self.by_server_key.get(&key) else {
            return self.refuse(from, &req, 481, "Call/Transaction Does Not Exist", b"");
        };
        self.respond(from, &req, 200, "OK", b"");
        let mut cancel = None;
        if let Some(txn) = self.txns.get_mut(&id) {
            if txn.final_code.is_some() {
                return;
            }
            txn.cancelled = true;
            if let Some(cl) = txn.client.as_mut() {
                if cl.provisional && cl.final_code.is_none() && !cl.cancel_sent {
                    cl.cancel_sent = true;
                    cancel = Some((cl.dest, cl.cancel()));
                }
            }
        }
        if let Some((dest, data)) = cancel {
            self.send(dest, data);
        }
    }

    fn on_response(&mut self, now: Instant, from: Peer, resp: Response) {
        let c = &resp.common;
        let Some(branch) = c.branch().and_then(|b| std::str::from_utf8(b).ok()) else {
            return self.events.push_back(Event::Dropped {
                from: from.addr,
                reason: "response without branch",
            });
        };
        let Some(&id) = self.by_branch.get(branch) else {
            return self.events.push_back(Event::Dropped {
                from: from.addr,
                reason: "response matches no transaction",
            });
        };
        if c.bytes(c.cseq_method) == b"CANCEL" {
            return; // The answer to our CANCEL; the INVITE's own final follows.
        }
        let code = resp.code;
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let Some(cl) = txn.client.as_mut() else {
            return;
        };
        let mut to_send: Vec<(Peer, Bytes)> = Vec::new();
        if code < 200 {
            if cl.final_code.is_some() {
                return;
            }
            if !cl.provisional {
                cl.provisional = true;
                if txn.invite {
                    cl.retrans = None;
                    cl.deadline = now + TIMER_C;
                    self.timers.push(Reverse((now + TIMER_C, id)));
                    if txn.cancelled && !cl.cancel_sent {
                        cl.cancel_sent = true;
                        to_send.push((cl.dest, cl.cancel()));
                    }
                }
            }
            if code > 100 {
                let data = rewrite::upstream_response(
                    &resp,
                    txn.restore_from.as_deref(),
                    txn.restore_to.as_deref(),
                );
                txn.last_response = Some(data.clone());
                to_send.push((txn.upstream, data));
            }
        } else if code < 300 {
            cl.final_code.get_or_insert(code);
            cl.retrans = None;
            let data = rewrite::upstream_response(
                &resp,
                txn.restore_from.as_deref(),
                txn.restore_to.as_deref(),
            );
            txn.final_code = Some(code);
            // RFC 6026 Accepted state: the UAS retransmits an INVITE's 2xx itself
            // and a retransmitted INVITE is absorbed, so that 2xx need not be
            // kept. A non-INVITE retransmission must get the final response again.
            txn.last_response = if txn.invite { None } else { Some(data.clone()) };
            txn.shed();
            if txn.expire_at.is_none() {
                txn.expire_at = Some(now + LINGER);
                self.timers.push(Reverse((now + LINGER, id)));
            }
            to_send.push((txn.upstream, data));
        } else {
            if txn.invite {
                to_send.push((cl.dest, cl.ack(&resp)));
            }
            if cl.final_code.is_some() {
                // A retransmitted final: re-ACKed above, not relayed again.
                for (to, d) in to_send {
                    self.send(to, d);
                }
                return;
            }
            cl.final_code = Some(code);
            cl.retrans = None;
            let failover = matches!(code, 408 | 503)
                && !txn.cancelled
                && matches!(txn.kind, Kind::Call { carrier, .. } if carrier + 1 < self.settings.carriers.len());
            if failover {
                if let Kind::Call { carrier, .. } = &mut txn.kind {
                    *carrier += 1;
                }
                for (to, d) in to_send {
                    self.send(to, d);
                }
                return self.start_call_attempt(now, id);
            }
            let data = rewrite::upstream_response(
                &resp,
                txn.restore_from.as_deref(),
                txn.restore_to.as_deref(),
            );
            to_send.push((txn.upstream, data.clone()));
            self.finish_with(now, id, code, data);
        }
        for (to, d) in to_send {
            self.send(to, d);
        }
    }

    /// Records a final response sent upstream and starts its retransmission
    /// (Timer G, UDP INVITE non-2xx) and the linger timer.
    fn finish_with(&mut self, now: Instant, id: TxnId, code: u16, data: Bytes) {
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        txn.final_code = Some(code);
        txn.last_response = Some(data);
        txn.shed();
        let mut wake = vec![now + LINGER];
        txn.expire_at = Some(now + LINGER);
        if txn.invite && code >= 300 && txn.upstream.transport == Transport::Udp && !txn.acked {
            txn.retrans_up = Some((now + T1, T1));
            wake.push(now + T1);
        }
        for t in wake {
            self.timers.push(Reverse((t, id)));
        }
    }

    /// Answers upstream with a response of our own (timeouts, no carrier left).
    fn final_upstream_local(&mut self, now: Instant, id: TxnId, code: u16, phrase: &str) {
        let Some(txn) = self.txns.get(&id) else {
            return;
        };
        if txn.final_code.is_some() {
            return;
        }
        let upstream = txn.upstream;
        let Some(req) = txn.request.clone() else {
            return;
        };
        let data = self.respond(upstream, &req, code, phrase, b"");
        self.finish_with(now, id, code, data);
    }

    /// The shell could not reach `peer` (TCP connect failed): every call
    /// waiting on it without an answer fails over now instead of at Timer B.
    pub fn handle_unreachable(&mut self, now: Instant, peer: Peer) {
        let mut hit = Vec::new();
        let mut back_to_udp = Vec::new();
        for (id, txn) in self.txns.iter_mut() {
            if let Some(cl) = txn.client.as_mut() {
                if cl.dest == peer && !cl.provisional && cl.final_code.is_none() {
                    if cl.udp_fallback {
                        back_to_udp.push(*id);
                    } else {
                        cl.deadline = now;
                        hit.push(*id);
                    }
                }
            }
        }
        for id in hit {
            self.on_timer(now, id);
        }
        for id in back_to_udp {
            self.start_call_attempt_with(now, id, false);
        }
    }

    /// Stops taking new calls (they get 503 so the PBX can go elsewhere) while
    /// transactions in progress finish; used for graceful shutdown.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Transactions still waiting for a final response.
    pub fn pending_transactions(&self) -> usize {
        self.txns
            .values()
            .filter(|t| t.final_code.is_none())
            .count()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.on_timer(now, id);
        }
    }

    fn on_timer(&mut self, now: Instant, id: TxnId) {
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let mut sends: Vec<(Peer, Bytes)> = Vec::new();
        let mut reschedule: Vec<Instant> = Vec::new();
        if txn.expire_at.is_some_and(|t| t <= now) {
            let txn = self.txns.remove(&id).expect("present");
            self.by_server_key.remove(&txn.server_key);
            if let Some(cl) = txn.client {
                self.by_branch.remove(&cl.branch);
            }
            return;
        }
        if let Some((t, iv)) = txn.retrans_up {
            if t <= now {
                if let Some(d) = &txn.last_response {
                    sends.push((txn.upstream, d.clone()));
                }
                let next = (iv * 2).min(T2);
                txn.retrans_up = Some((now + next, next));
                reschedule.push(now + next);
            }
        }
        let mut timeout: Option<(u16, &'static str)> = None;
        let mut failover = false;
        if let Some(cl) = txn.client.as_mut() {
            if cl.final_code.is_none() {
                if let Some((t, iv)) = cl.retrans {
                    if t <= now {
                        sends.push((cl.dest, cl.request.clone()));
                        let next = if txn.invite { iv * 2 } else { (iv * 2).min(T2) };
                        cl.retrans = Some((now + next, next));
                        reschedule.push(now + next);
                    }
                }
                if cl.deadline <= now {
                    if txn.invite && cl.provisional && !cl.timer_c_fired {
                        // Timer C: give up on the ringing branch.
                        cl.timer_c_fired = true;
                        if !cl.cancel_sent {
                            cl.cancel_sent = true;
                            sends.push((cl.dest, cl.cancel()));
                        }
                        cl.deadline = now + TIMEOUT;
                        reschedule.push(cl.deadline);
                    } else {
                        cl.final_code = Some(408);
                        cl.retrans = None;
                        if txn.cancelled {
                            timeout = Some((487, "Request Terminated"));
                        } else {
                            let more = matches!(txn.kind, Kind::Call { carrier, .. } if carrier + 1 < self.settings.carriers.len());
                            if more {
                                failover = true;
                            } else {
                                timeout = Some((408, "Request Timeout"));
                            }
                        }
                    }
                }
            }
        }
        if failover {
            if let Kind::Call { carrier, .. } = &mut txn.kind {
                *carrier += 1;
            }
        }
        for (to, d) in sends {
            self.send(to, d);
        }
        for t in reschedule {
            self.schedule(t, id);
        }
        if failover {
            self.start_call_attempt(now, id);
        } else if let Some((code, phrase)) = timeout {
            self.final_upstream_local(now, id, code, phrase);
        }
    }
}

/// The Proxy-Require options we do not support (all of them), comma-joined.
fn proxy_require(c: &Common) -> Option<String> {
    let mut opts: Vec<String> = Vec::new();
    for h in c.raw.all(HeaderName::ProxyRequire) {
        for part in c.value(h).split(|&b| b == b',') {
            let t = syntax::trim_lws(part);
            if !t.is_empty() {
                opts.push(lossy(t));
            }
        }
    }
    (!opts.is_empty()).then(|| opts.join(", "))
}
