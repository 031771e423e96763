//! The stateful relay: the table of live transactions and what the proxy
//! does with the actions of their machines (send, arm a timer, hand a
//! response to the call logic, drop a finished transaction).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use bytes::Bytes;

use super::core::Proxy;
use super::ids::ServerKey;
use super::rewrite::{self, Restore};
use super::txn::{
    Action, Actions, Class, Client, ClientMachine, Kind, ServerMachine, Side, State, Timer, Txn,
    TxnId,
};
use super::Peer;
use crate::sip::{Method, Request, Response, Transport};

/// The tables' hasher: randomly seeded per process (server keys come from
/// the network), cheaper than the standard SipHash.
type Seeded = foldhash::fast::RandomState;

/// Every live transaction, found by id, by server key (requests from
/// upstream) and by our branch (responses from downstream), plus the timer
/// queue, whose entries name the timer that is due.
#[derive(Default)]
pub(super) struct Transactions {
    /// Boxed: a transaction is a few hundred bytes, and the map moves its
    /// values when it grows.
    records: HashMap<TxnId, Box<Txn>, Seeded>,
    by_server_key: HashMap<ServerKey, TxnId, Seeded>,
    by_branch: HashMap<String, TxnId, Seeded>,
    timers: BinaryHeap<Reverse<Due>>,
    /// Queue length at which entries of finished transactions are swept out
    /// (see [`Transactions::sweep_stale_timers`]).
    sweep_at: usize,
    next_id: TxnId,
}

/// The timer queue is never swept below this many entries.
const SWEEP_MIN: usize = 4096;

impl Transactions {
    pub(super) fn insert(&mut self, txn: Txn) -> TxnId {
        self.sweep_stale_timers();
        self.next_id += 1;
        let id = self.next_id;
        self.by_server_key.insert(txn.server_key.clone(), id);
        self.records.insert(id, Box::new(txn));
        id
    }

    pub(super) fn get(&self, id: TxnId) -> Option<&Txn> {
        self.records.get(&id).map(|t| &**t)
    }

    pub(super) fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        self.records.get_mut(&id).map(|t| &mut **t)
    }

    pub(super) fn by_key(&self, key: &ServerKey) -> Option<TxnId> {
        self.by_server_key.get(key).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Transactions still waiting for a final response.
    pub(super) fn pending(&self) -> usize {
        self.records
            .values()
            .filter(|t| t.server.awaits_final())
            .count()
    }

    pub(super) fn queued_timers(&self) -> usize {
        self.timers.len()
    }

    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(due)| due.at)
    }

    /// The next timer due at `now`, taken off the queue.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let Reverse(due) = *self.timers.peek()?;
        if due.at > now {
            return None;
        }
        self.timers.pop();
        Some(due)
    }

    /// Drops the queue entries of transactions that no longer exist. Entries
    /// are never taken out when a machine moves on, only when they come due,
    /// and some outlive their transaction by far: every forwarded INVITE
    /// leaves a Timer C entry due three minutes later, while the answered
    /// call lingers 32 s. Unswept, the queue grows for three minutes at any
    /// steady call rate. Swept whenever it has grown by half since the last
    /// sweep, which keeps the work per queued entry constant on average.
    fn sweep_stale_timers(&mut self) {
        if self.timers.len() < self.sweep_at.max(SWEEP_MIN) {
            return;
        }
        let records = &self.records;
        self.timers
            .retain(|Reverse(due)| records.contains_key(&due.id));
        self.sweep_at = self.timers.len() + self.timers.len() / 2;
    }

    /// Puts `timer` of `id` in the queue for `at`.
    pub(super) fn arm(&mut self, at: Instant, id: TxnId, timer: Timer) {
        self.timers.push(Reverse(Due { at, id, timer }));
    }

    /// Gives up on the current attempt of `id` without an answer from it:
    /// it stays findable by its branch so that late responses are handled,
    /// holding only what an ACK or CANCEL needs.
    pub(super) fn abandon_client(&mut self, id: TxnId) {
        if let Some(txn) = self.records.get_mut(&id) {
            if let Some(mut cl) = txn.client.take() {
                cl.abandon();
                txn.abandoned.push(cl);
            }
        }
    }

    /// Puts a (new) client transaction on `id`, replacing the previous
    /// attempt's.
    fn set_client(&mut self, id: TxnId, client: Client) {
        let branch = client.branch.clone();
        if let Some(txn) = self.records.get_mut(&id) {
            if let Some(old) = txn.client.replace(client) {
                self.by_branch.remove(&old.branch);
            }
        }
        self.by_branch.insert(branch, id);
    }

    fn remove(&mut self, id: TxnId) {
        if let Some(txn) = self.records.remove(&id) {
            self.by_server_key.remove(&txn.server_key);
            for cl in txn.client.iter().chain(&txn.abandoned) {
                self.by_branch.remove(&cl.branch);
            }
        }
    }

    /// Attempts to `peer` that have heard nothing yet.
    fn waiting_on(&self, peer: Peer) -> Vec<Waiting> {
        let mut hit: Vec<Waiting> = self
            .records
            .iter()
            .filter_map(|(id, txn)| {
                let cl = txn.client.as_ref()?;
                let silent = matches!(cl.machine.state(), State::Calling | State::Trying);
                (cl.dest == peer && silent).then_some(Waiting {
                    id: *id,
                    back_to_udp: cl.udp_fallback,
                })
            })
            .collect();
        hit.sort_unstable_by_key(|w| w.id);
        hit
    }
}

impl Proxy {
    /// Sends `data` to `dest` as a new client transaction of `id`.
    pub(super) fn start_client(
        &mut self,
        now: Instant,
        id: TxnId,
        dest: Peer,
        branch: String,
        data: Bytes,
    ) {
        let Some(invite) = self.txns.get(id).map(Txn::is_invite) else {
            return;
        };
        let reliable = dest.transport != Transport::Udp;
        let (machine, actions) = ClientMachine::start(invite, reliable, now);
        let client = Client::new(branch, dest, data.clone(), machine);
        self.txns.set_client(id, client);
        self.run_client(now, id, actions, None);
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

    /// A request matching a live transaction arrived again.
    pub(super) fn on_retransmission(&mut self, now: Instant, id: TxnId) {
        if let Some(txn) = self.txns.get(id) {
            let actions = txn.server.on_request();
            self.run_server(now, id, actions);
        }
    }

    /// An ACK for a failure response we sent is absorbed (RFC 3261 §17.2.1);
    /// returns false when `key` names no transaction that sent one.
    pub(super) fn absorb_ack(&mut self, now: Instant, key: &ServerKey) -> bool {
        let Some(id) = self.txns.by_key(key) else {
            return false;
        };
        let Some(ServerMachine::Invite(m)) = self.txns.get_mut(id).map(|t| &mut t.server) else {
            return false;
        };
        let Some(actions) = m.on_ack(now) else {
            return false;
        };
        self.run_server(now, id, actions);
        true
    }

    pub(super) fn on_cancel(&mut self, now: Instant, from: Peer, req: Request, key: ServerKey) {
        let seal = &self.settings.key;
        let Some(id) = self.txns.by_key(&key) else {
            let phrase = "Call/Transaction Does Not Exist";
            return self.out.refuse(seal, from, &req, 481, phrase, b"");
        };
        self.out.respond(seal, from, &req, 200, "OK", b"");
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        if !txn.server.awaits_final() {
            return;
        }
        txn.cancelled = true;
        if let Some(cl) = txn.client.as_mut() {
            let actions = cl.machine.cancel();
            self.run_client(now, id, actions, None);
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, from: Peer, resp: Response) {
        let c = resp.fields();
        let Some(branch) = c.branch().and_then(|b| std::str::from_utf8(b).ok()) else {
            return self.out.dropped(from.addr, "response without branch");
        };
        let Some(&id) = self.txns.by_branch.get(branch) else {
            let probe = self
                .health
                .on_response(branch.as_bytes(), resp.code(), &mut self.out);
            if !probe {
                self.forward_stateless(now, from, &resp);
            }
            return;
        };
        if c.cseq_method() == b"CANCEL" {
            return; // The answer to our CANCEL; the INVITE's own final follows.
        }
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        let Some(cl) = txn.client.as_mut().filter(|cl| cl.branch == branch) else {
            return self.on_abandoned_response(id, branch, &resp);
        };
        let actions = cl.machine.on_response(Class::of(resp.code()), now);
        self.run_client(now, id, actions, Some(&resp));
    }

    /// Runs the timer `timer` of transaction `id`, due at `now`.
    pub(super) fn on_timer(&mut self, now: Instant, id: TxnId, timer: Timer) {
        if timer == Timer::NoProvisional {
            return self.on_no_provisional(now, id);
        }
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        match timer.side() {
            Side::Server => {
                let actions = txn.server.on_timer(timer, now);
                self.run_server(now, id, actions);
            }
            Side::Client => {
                if let Some(cl) = txn.client.as_mut() {
                    let actions = cl.machine.on_timer(timer, now);
                    self.run_client(now, id, actions, None);
                }
            }
        }
    }

    /// The shell could not reach `peer`: every attempt waiting on it without
    /// an answer fails now instead of at Timer B / F, or goes back to UDP
    /// when TCP was only chosen for its size.
    pub(super) fn fail_unreachable(&mut self, now: Instant, peer: Peer) {
        let hit = self.txns.waiting_on(peer);
        for w in hit.iter().filter(|w| !w.back_to_udp) {
            if let Some(cl) = self.txns.get_mut(w.id).and_then(|t| t.client.as_mut()) {
                cl.transport_failed = true;
                let actions = cl.machine.on_transport_error();
                self.run_client(now, w.id, actions, None);
            }
        }
        for w in hit.iter().filter(|w| w.back_to_udp) {
            self.start_call_attempt(now, w.id, false);
        }
    }

    /// Carries out a client machine's actions; `resp` is the response that
    /// caused them, if any.
    fn run_client(&mut self, now: Instant, id: TxnId, actions: Actions, resp: Option<&Response>) {
        let mut then = None;
        {
            let Transactions {
                records, timers, ..
            } = &mut self.txns;
            let Some(cl) = records.get_mut(&id).and_then(|t| t.client.as_mut()) else {
                return;
            };
            for action in actions.iter() {
                match action {
                    Action::Arm(timer, at) => timers.push(Reverse(Due { at, id, timer })),
                    Action::Resend => self.out.send(cl.dest, cl.request.clone()),
                    Action::Cancel => {
                        let data = cl.cancel();
                        self.out.send(cl.dest, data);
                    }
                    Action::Ack => {
                        if let Some(r) = resp {
                            let data = cl.ack(r);
                            self.out.send(cl.dest, data);
                        }
                    }
                    Action::Deliver | Action::Timeout => then = Some(action),
                    Action::Terminated => {}
                }
            }
        }
        match (then, resp) {
            (Some(Action::Deliver), Some(r)) => self.deliver(now, id, r),
            (Some(Action::Timeout), _) => self.on_client_timeout(now, id),
            _ => {}
        }
    }

    /// Carries out a server machine's actions.
    fn run_server(&mut self, _now: Instant, id: TxnId, actions: Actions) {
        let Transactions {
            records, timers, ..
        } = &mut self.txns;
        let Some(txn) = records.get(&id) else {
            return;
        };
        let mut terminated = false;
        for action in actions.iter() {
            match action {
                Action::Arm(timer, at) => timers.push(Reverse(Due { at, id, timer })),
                Action::Resend => {
                    if let Some(d) = &txn.last_response {
                        self.out.send(txn.upstream, d.clone());
                    }
                }
                Action::Terminated => terminated = true,
                _ => {}
            }
        }
        if terminated {
            self.txns.remove(id);
        }
    }

    /// What a response from downstream means for the request upstream: a
    /// provisional or 2xx goes up, a failure goes up unless the call fails
    /// over to the next carrier.
    fn deliver(&mut self, now: Instant, id: TxnId, resp: &Response) {
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        if let Kind::Call(plan) = &txn.kind {
            self.health.call_answered(plan.carrier);
        }
        let code = resp.code();
        let class = Class::of(code);
        match class {
            // A 100 is hop by hop: ours went up already.
            Class::Provisional if code == 100 => {}
            Class::Provisional | Class::Success => {
                let data = rewrite::upstream_response(resp, &txn.restore);
                let actions = txn.server.on_send(class, now);
                // RFC 6026 Accepted: the UAS retransmits an INVITE's 2xx
                // itself and INVITE copies are absorbed, so that 2xx need not
                // be kept; a non-INVITE copy gets the final again.
                let keep = class == Class::Provisional || !txn.is_invite();
                txn.last_response = keep.then(|| data.clone());
                if class == Class::Success {
                    txn.keep_only_retransmission_state();
                    self.last_final = Some(now);
                }
                self.out.send(txn.upstream, data);
                self.run_server(now, id, actions);
            }
            Class::Failure => {
                let cancelled = txn.cancelled;
                if let Kind::Call(plan) = &mut txn.kind {
                    if plan.fail_over(code, cancelled, &self.health) {
                        return self.start_call_attempt(now, id, true);
                    }
                }
                let data = rewrite::upstream_response(resp, &txn.restore);
                self.out.send(txn.upstream, data.clone());
                self.finish(now, id, class, data);
            }
        }
    }

    /// No answer from downstream: the next carrier, or 408 (487 when the
    /// caller cancelled) upstream.
    fn on_client_timeout(&mut self, now: Instant, id: TxnId) {
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        let cancelled = txn.cancelled;
        let unreachable = txn.client.as_ref().is_some_and(|cl| cl.transport_failed);
        let code = if unreachable { 503 } else { 408 };
        if let Kind::Call(plan) = &mut txn.kind {
            if plan.fail_over(code, cancelled, &self.health) {
                return self.start_call_attempt(now, id, true);
            }
        }
        if cancelled {
            self.final_upstream_local(now, id, 487, "Request Terminated");
        } else if unreachable {
            self.final_upstream_local(now, id, 503, "Service Unavailable");
        } else {
            self.final_upstream_local(now, id, 408, "Request Timeout");
        }
    }

    /// Records a final response sent upstream: the server machine completes
    /// (Timer G / H or J) and only retransmission state is kept.
    pub(super) fn finish(&mut self, now: Instant, id: TxnId, class: Class, data: Bytes) {
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        let actions = txn.server.on_send(class, now);
        txn.last_response = Some(data);
        txn.keep_only_retransmission_state();
        self.last_final = Some(now);
        self.run_server(now, id, actions);
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
        let Some(req) = txn.request.as_ref().filter(|_| txn.server.awaits_final()) else {
            return;
        };
        let data = self
            .out
            .respond(&self.settings.key, txn.upstream, req, code, phrase, b"");
        self.finish(now, id, Class::of(code), data);
    }
}

/// One entry of the timer queue: which timer of which transaction is due
/// when. Ordered by deadline first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Due {
    pub(super) at: Instant,
    pub(super) id: TxnId,
    pub(super) timer: Timer,
}

/// A client attempt that has heard nothing from its next hop yet.
struct Waiting {
    id: TxnId,
    /// It went over TCP only for its size: retry over UDP instead of failing.
    back_to_udp: bool,
}

/// Where a relayed request goes, what its responses restore, and how it is
/// written given our Via line.
pub(super) struct Relay<F> {
    pub(super) dest: Peer,
    pub(super) restore: Restore,
    pub(super) build: F,
}
