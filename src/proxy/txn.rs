//! Transaction state: what the proxy remembers per forwarded request until
//! retransmissions can no longer arrive, the table that finds it again, and
//! the RFC 3261 timer values.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::core::Proxy;
use super::ids::ServerKey;
use super::new_call::CallPlan;
use super::rewrite::{self, HopRequest, Restore};
use super::Peer;
use crate::sip::{self as sipmod, Message, Method, Request, Response, Transport};

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
    Call(CallPlan),
    /// Any other forwarded request (in-dialog or plain out-of-dialog).
    Relay,
    /// Answered by the gateway itself (the caller-ID reject); nothing forwarded.
    Local,
}

pub(super) struct Txn {
    pub(super) server_key: ServerKey,
    pub(super) invite: bool,
    pub(super) upstream: Peer,
    /// The request as received, kept to answer it and, for calls, to fail
    /// over; dropped once a final response is sent so that lingering
    /// transactions hold only what retransmissions need.
    pub(super) request: Option<Request>,
    pub(super) kind: Kind,
    pub(super) restore: Restore,
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

/// Where a relayed request goes, what its responses restore, and how it is
/// written given our Via line.
pub(super) struct Relay<F> {
    pub(super) dest: Peer,
    pub(super) restore: Restore,
    pub(super) build: F,
}

impl Client {
    pub(super) fn hop(&mut self) -> Option<&HopRequest> {
        if self.hop.is_none() {
            // Our own output: it parses (the hostile-input suite checks that).
            if let Ok(Message::Request(sent)) =
                sipmod::parse(self.request.clone(), self.dest.transport)
            {
                let c = sent.common();
                let via = &c.buf()[c.via_header().line.range()];
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
        server_key: ServerKey,
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
            restore: Restore::default(),
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
    pub(super) fn keep_only_retransmission_state(&mut self) {
        self.request = None;
        if let Some(cl) = self.client.as_mut() {
            cl.request = Bytes::new();
        }
    }
}

/// Every live transaction, found by id, by server key (requests from
/// upstream) and by our branch (responses from downstream), plus the timer
/// queue.
#[derive(Default)]
pub(super) struct Transactions {
    /// Boxed: a transaction is a few hundred bytes, and the map moves its
    /// values when it grows.
    txns: HashMap<TxnId, Box<Txn>>,
    by_server_key: HashMap<ServerKey, TxnId>,
    by_branch: HashMap<String, TxnId>,
    timers: BinaryHeap<Reverse<(Instant, TxnId)>>,
    next_id: TxnId,
}

impl Transactions {
    pub(super) fn insert(&mut self, txn: Txn) -> TxnId {
        self.next_id += 1;
        let id = self.next_id;
        self.by_server_key.insert(txn.server_key.clone(), id);
        self.txns.insert(id, Box::new(txn));
        id
    }

    pub(super) fn get(&self, id: TxnId) -> Option<&Txn> {
        self.txns.get(&id).map(|t| &**t)
    }

    pub(super) fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        self.txns.get_mut(&id).map(|t| &mut **t)
    }

    pub(super) fn by_key(&self, key: &ServerKey) -> Option<TxnId> {
        self.by_server_key.get(key).copied()
    }

    pub(super) fn by_branch(&self, branch: &str) -> Option<TxnId> {
        self.by_branch.get(branch).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.txns.len()
    }

    /// Transactions still waiting for a final response.
    pub(super) fn pending(&self) -> usize {
        self.txns
            .values()
            .filter(|t| t.final_code.is_none())
            .count()
    }

    pub(super) fn schedule(&mut self, at: Instant, id: TxnId) {
        self.timers.push(Reverse((at, id)));
    }

    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// The next transaction with a timer due at `now`, taken off the queue.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TxnId> {
        let Reverse((t, id)) = *self.timers.peek()?;
        if t > now {
            return None;
        }
        self.timers.pop();
        Some(id)
    }

    /// Puts a (new) client transaction on `id`, replacing the previous
    /// attempt's.
    fn set_client(&mut self, id: TxnId, client: Client) {
        let branch = client.branch.clone();
        if let Some(txn) = self.txns.get_mut(&id) {
            if let Some(old) = txn.client.replace(client) {
                self.by_branch.remove(&old.branch);
            }
        }
        self.by_branch.insert(branch, id);
    }

    fn remove(&mut self, id: TxnId) {
        if let Some(txn) = self.txns.remove(&id) {
            self.by_server_key.remove(&txn.server_key);
            if let Some(cl) = txn.client {
                self.by_branch.remove(&cl.branch);
            }
        }
    }

    /// Records a final response sent upstream and starts its retransmission
    /// (Timer G, UDP INVITE non-2xx) and the linger timer.
    pub(super) fn finish(&mut self, now: Instant, id: TxnId, code: u16, data: Bytes) {
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        txn.final_code = Some(code);
        txn.last_response = Some(data);
        txn.keep_only_retransmission_state();
        txn.expire_at = Some(now + LINGER);
        let retransmit =
            txn.invite && code >= 300 && txn.upstream.transport == Transport::Udp && !txn.acked;
        if retransmit {
            txn.retrans_up = Some((now + T1, T1));
        }
        self.schedule(now + LINGER, id);
        if retransmit {
            self.schedule(now + T1, id);
        }
    }

    /// Calls waiting on `peer` without any answer yet: (id, whether the
    /// attempt should go back to UDP rather than fail).
    fn waiting_on(&self, peer: Peer) -> Vec<(TxnId, bool)> {
        let mut hit: Vec<(TxnId, bool)> = self
            .txns
            .iter()
            .filter_map(|(id, txn)| {
                let cl = txn.client.as_ref()?;
                (cl.dest == peer && !cl.provisional && cl.final_code.is_none())
                    .then_some((*id, cl.udp_fallback))
            })
            .collect();
        hit.sort_unstable();
        hit
    }
}

impl Proxy {
    pub(super) fn start_client(
        &mut self,
        now: Instant,
        id: TxnId,
        dest: Peer,
        branch: String,
        data: Bytes,
    ) {
        let retrans = (dest.transport == Transport::Udp).then_some((now + T1, T1));
        let client = Client {
            branch,
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
        self.txns.set_client(id, client);
        if let Some((t, _)) = retrans {
            self.txns.schedule(t, id);
        }
        self.txns.schedule(now + TIMEOUT, id);
        self.out.send(dest, data);
    }

    /// Forwards a request that is not a new call: a transaction with one
    /// client, whose responses go back with the relay's restore applied.
    pub(super) fn forward<F>(
        &mut self,
        now: Instant,
        from: Peer,
        req: Request,
        key: ServerKey,
        relay: Relay<F>,
    ) where
        F: FnOnce(&Request, &[u8]) -> Bytes,
    {
        let Relay {
            dest,
            restore,
            build,
        } = relay;
        let branch = self.settings.key.branch(&req, &key, 0);
        let via = self.via.line(dest.transport, &branch);
        let data = build(&req, via.as_bytes());
        let invite = req.method() == Method::Invite;
        let trying = invite.then(|| {
            self.out
                .respond(&self.settings.key, from, &req, 100, "Trying", b"")
        });
        let mut txn = Txn::new(key, from, Some(req), invite, Kind::Relay);
        txn.restore = restore;
        txn.last_response = trying;
        let id = self.txns.insert(txn);
        self.start_client(now, id, dest, branch, data);
    }

    /// An ACK for a non-2xx we sent is absorbed (RFC 3261 §17.2.1); returns
    /// false when `key` names no such transaction.
    pub(super) fn absorb_ack(&mut self, now: Instant, key: &ServerKey) -> bool {
        let Some(id) = self.txns.by_key(key) else {
            return false;
        };
        let Some(txn) = self.txns.get_mut(id) else {
            return false;
        };
        if !txn.final_code.is_some_and(|c| c >= 300) {
            return false;
        }
        // The transaction only waits out Timer I for ACK copies.
        txn.acked = true;
        txn.retrans_up = None;
        let until = now + TIMER_I;
        if txn.expire_at.map_or(true, |t| t > until) {
            txn.expire_at = Some(until);
            self.txns.schedule(until, id);
        }
        true
    }

    pub(super) fn on_cancel(&mut self, from: Peer, req: Request, key: ServerKey) {
        let key_ = &self.settings.key;
        let Some(id) = self.txns.by_key(&key) else {
            return self.out.refuse(
                key_,
                from,
                &req,
                481,
                "Call/Transaction Does Not Exist",
                b"",
            );
        };
        self.out.respond(key_, from, &req, 200, "OK", b"");
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        if txn.final_code.is_some() {
            return;
        }
        txn.cancelled = true;
        if let Some(cl) = txn.client.as_mut() {
            if cl.provisional && cl.final_code.is_none() && !cl.cancel_sent {
                cl.cancel_sent = true;
                let data = cl.cancel();
                self.out.send(cl.dest, data);
            }
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, from: Peer, resp: Response) {
        let c = resp.common();
        let Some(branch) = c.branch().and_then(|b| std::str::from_utf8(b).ok()) else {
            return self.out.dropped(from.addr, "response without branch");
        };
        let Some(id) = self.txns.by_branch(branch) else {
            return self
                .out
                .dropped(from.addr, "response matches no transaction");
        };
        if c.cseq_method() == b"CANCEL" {
            return; // The answer to our CANCEL; the INVITE's own final follows.
        }
        let code = resp.code();
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        let Some(cl) = txn.client.as_mut() else {
            return;
        };
        if code < 200 {
            if cl.final_code.is_some() {
                return;
            }
            let mut timer_c = false;
            if !cl.provisional {
                cl.provisional = true;
                if txn.invite {
                    cl.retrans = None;
                    cl.deadline = now + TIMER_C;
                    timer_c = true;
                    if txn.cancelled && !cl.cancel_sent {
                        cl.cancel_sent = true;
                        let data = cl.cancel();
                        self.out.send(cl.dest, data);
                    }
                }
            }
            if code > 100 {
                let data = rewrite::upstream_response(&resp, &txn.restore);
                txn.last_response = Some(data.clone());
                self.out.send(txn.upstream, data);
            }
            if timer_c {
                self.txns.schedule(now + TIMER_C, id);
            }
        } else if code < 300 {
            cl.final_code.get_or_insert(code);
            cl.retrans = None;
            let data = rewrite::upstream_response(&resp, &txn.restore);
            txn.final_code = Some(code);
            // RFC 6026 Accepted state: the UAS retransmits an INVITE's 2xx itself
            // and a retransmitted INVITE is absorbed, so that 2xx need not be
            // kept. A non-INVITE retransmission must get the final response again.
            txn.last_response = if txn.invite { None } else { Some(data.clone()) };
            txn.keep_only_retransmission_state();
            let upstream = txn.upstream;
            if txn.expire_at.is_none() {
                txn.expire_at = Some(now + LINGER);
                self.txns.schedule(now + LINGER, id);
            }
            self.out.send(upstream, data);
        } else {
            if txn.invite {
                let ack = cl.ack(&resp);
                self.out.send(cl.dest, ack);
            }
            if cl.final_code.is_some() {
                return; // A retransmitted final: re-ACKed above, not relayed again.
            }
            cl.final_code = Some(code);
            cl.retrans = None;
            let carriers = self.settings.carriers.len();
            let cancelled = txn.cancelled;
            if let Kind::Call(plan) = &mut txn.kind {
                if plan.fail_over(code, cancelled, carriers) {
                    return self.start_call_attempt(now, id, true);
                }
            }
            let data = rewrite::upstream_response(&resp, &txn.restore);
            self.out.send(txn.upstream, data.clone());
            self.txns.finish(now, id, code, data);
        }
    }

    /// Answers upstream with a response of our own (timeouts, no carrier left).
    pub(super) fn final_upstream_local(
        &mut self,
        now: Instant,
        id: TxnId,
        code: u16,
        phrase: &str,
    ) {
        let Some(txn) = self.txns.get(id) else {
            return;
        };
        if txn.final_code.is_some() {
            return;
        }
        let upstream = txn.upstream;
        let Some(req) = txn.request.as_ref() else {
            return;
        };
        let data = self
            .out
            .respond(&self.settings.key, upstream, req, code, phrase, b"");
        self.txns.finish(now, id, code, data);
    }

    /// The shell could not reach `peer`: every call waiting on it without an
    /// answer fails over now instead of at Timer B (or goes back to UDP).
    pub(super) fn fail_unreachable(&mut self, now: Instant, peer: Peer) {
        let hit = self.txns.waiting_on(peer);
        for &(id, back_to_udp) in &hit {
            if !back_to_udp {
                if let Some(cl) = self.txns.get_mut(id).and_then(|t| t.client.as_mut()) {
                    cl.deadline = now;
                }
                self.on_timer(now, id);
            }
        }
        for &(id, back_to_udp) in &hit {
            if back_to_udp {
                self.start_call_attempt(now, id, false);
            }
        }
    }

    pub(super) fn on_timer(&mut self, now: Instant, id: TxnId) {
        let carriers = self.settings.carriers.len();
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        if txn.expire_at.is_some_and(|t| t <= now) {
            return self.txns.remove(id);
        }
        let mut reschedule: Vec<Instant> = Vec::new();
        if let Some((t, iv)) = txn.retrans_up {
            if t <= now {
                if let Some(d) = &txn.last_response {
                    self.out.send(txn.upstream, d.clone());
                }
                let next = (iv * 2).min(T2);
                txn.retrans_up = Some((now + next, next));
                reschedule.push(now + next);
            }
        }
        let mut timeout: Option<(u16, &'static str)> = None;
        let mut failover = false;
        if let Some(cl) = txn.client.as_mut().filter(|cl| cl.final_code.is_none()) {
            if let Some((t, iv)) = cl.retrans {
                if t <= now {
                    self.out.send(cl.dest, cl.request.clone());
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
                        let data = cl.cancel();
                        self.out.send(cl.dest, data);
                    }
                    cl.deadline = now + TIMEOUT;
                    reschedule.push(cl.deadline);
                } else {
                    cl.final_code = Some(408);
                    cl.retrans = None;
                    failover = match &mut txn.kind {
                        Kind::Call(plan) => plan.fail_over(408, txn.cancelled, carriers),
                        _ => false,
                    };
                    if !failover {
                        timeout = Some(if txn.cancelled {
                            (487, "Request Terminated")
                        } else {
                            (408, "Request Timeout")
                        });
                    }
                }
            }
        }
        for t in reschedule {
            self.txns.schedule(t, id);
        }
        if failover {
            self.start_call_attempt(now, id, true);
        } else if let Some((code, phrase)) = timeout {
            self.final_upstream_local(now, id, code, phrase);
        }
    }
}
