//! The stateful relay: the table of live transactions and what the proxy
//! does with the actions of their machines (send, arm a timer, hand a
//! response to the call logic, drop a finished transaction).

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;

use super::core::Proxy;
use super::ids::ServerKey;
use super::rewrite::{self, Restore};
use super::txn::{
    Absorb, Action, Actions, Class, Client, ClientMachine, Kind, Linger, Record, ServerMachine,
    Side, State, Timer, Txn, TxnId,
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
    /// Boxed, full or compact ([`Linger`]): the map moves its values when
    /// it grows, and most records at a steady rate are the compact kind.
    records: HashMap<TxnId, Record, Seeded>,
    /// Ids by server key; the key itself is kept once, in the record.
    by_server_key: HashTable<TxnId>,
    /// Attempts by their branch; the branch is kept once, in the record.
    by_branch: HashTable<AttemptRef>,
    hasher: Seeded,
    timers: BinaryHeap<Reverse<Due>>,
    /// Queue length at which entries of finished transactions are swept out
    /// (see [`Transactions::sweep_stale_timers`]).
    sweep_at: usize,
    next_id: TxnId,
    /// The last count of [`Transactions::pending_at`] and when it was made;
    /// cleared when a transaction is added.
    pending_seen: Cell<Option<(Instant, usize)>>,
}

/// How long a count of pending transactions is reused. Counting scans every
/// record (tens of thousands linger after a busy minute), and a draining
/// core asks on every turn; a transaction only stops pending, except when
/// one is added, which clears the count, so a reused count can only make the
/// drain end this much later, never earlier.
const PENDING_RECOUNT: Duration = Duration::from_millis(10);

/// An entry of the branch index: a transaction and which of its attempts
/// (0 the current one, `n` the `n`-th abandoned, as [`Record::branch`]
/// numbers them), in one word.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AttemptRef(u64);

/// Bits of [`AttemptRef`] that number the attempt; a call has at most one
/// attempt per carrier.
const ATTEMPT_BITS: u32 = 16;

impl AttemptRef {
    fn new(id: TxnId, which: usize) -> AttemptRef {
        debug_assert!(which < 1 << ATTEMPT_BITS && id < 1 << (64 - ATTEMPT_BITS));
        AttemptRef(id << ATTEMPT_BITS | which as u64)
    }

    fn id(self) -> TxnId {
        self.0 >> ATTEMPT_BITS
    }

    fn which(self) -> usize {
        (self.0 & ((1 << ATTEMPT_BITS) - 1)) as usize
    }
}

/// The hash an index entry was filed under, worked out again from the
/// record when an index grows (every id in an index has its record).
fn key_hash(hasher: &Seeded, records: &HashMap<TxnId, Record, Seeded>, id: TxnId) -> u64 {
    records
        .get(&id)
        .map_or(0, |r| hasher.hash_one(r.server_key().as_bytes()))
}

fn branch_hash(hasher: &Seeded, records: &HashMap<TxnId, Record, Seeded>, a: AttemptRef) -> u64 {
    records
        .get(&a.id())
        .and_then(|r| r.branch(a.which()))
        .map_or(0, |b| hasher.hash_one(b.as_bytes()))
}

/// The timer queue is never swept below this many entries.
const SWEEP_MIN: usize = 4096;

impl Transactions {
    pub(super) fn insert(&mut self, txn: Txn) -> TxnId {
        self.sweep_stale_timers();
        self.pending_seen.set(None);
        self.next_id += 1;
        let id = self.next_id;
        let hash = self.hasher.hash_one(txn.server_key.as_bytes());
        self.records.insert(id, Record::Full(Box::new(txn)));
        let Transactions {
            records,
            by_server_key,
            hasher,
            ..
        } = self;
        by_server_key.insert_unique(hash, id, |id| key_hash(hasher, records, *id));
        id
    }

    pub(super) fn record(&self, id: TxnId) -> Option<&Record> {
        self.records.get(&id)
    }

    /// The full record of `id`; `None` once it only lingers.
    pub(super) fn get(&self, id: TxnId) -> Option<&Txn> {
        match self.records.get(&id)? {
            Record::Full(t) => Some(t),
            Record::Linger(_) => None,
        }
    }

    /// The full record of `id`; `None` once it only lingers.
    pub(super) fn get_mut(&mut self, id: TxnId) -> Option<&mut Txn> {
        match self.records.get_mut(&id)? {
            Record::Full(t) => Some(t),
            Record::Linger(_) => None,
        }
    }

    pub(super) fn by_key(&self, key: &ServerKey) -> Option<TxnId> {
        let records = &self.records;
        let hash = self.hasher.hash_one(key.as_bytes());
        self.by_server_key
            .find(hash, |id| {
                records.get(id).is_some_and(|r| r.server_key() == key)
            })
            .copied()
    }

    /// The transaction and attempt (see [`Record::branch`]) whose request
    /// went out with `branch`.
    fn by_branch(&self, branch: &str) -> Option<(TxnId, usize)> {
        let records = &self.records;
        let hash = self.hasher.hash_one(branch.as_bytes());
        self.by_branch
            .find(hash, |a| {
                records.get(&a.id()).and_then(|r| r.branch(a.which())) == Some(branch)
            })
            .map(|a| (a.id(), a.which()))
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Transactions still waiting for a final response.
    pub(super) fn pending(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r, Record::Full(t) if t.server.awaits_final()))
            .count()
    }

    /// When a reused count that is not zero must be made again, so that a
    /// drain waiting on it sees the last final response within
    /// [`PENDING_RECOUNT`] even when nothing else wakes the core.
    pub(super) fn recount_due(&self) -> Option<Instant> {
        match self.pending_seen.get() {
            Some((at, n)) if n > 0 => Some(at + PENDING_RECOUNT),
            _ => None,
        }
    }

    /// [`Transactions::pending`] as of `now`, counted again at most every
    /// [`PENDING_RECOUNT`] unless a transaction was added meanwhile.
    pub(super) fn pending_at(&self, now: Instant) -> usize {
        match self.pending_seen.get() {
            Some((at, n)) if now.saturating_duration_since(at) < PENDING_RECOUNT => n,
            _ => {
                let n = self.pending();
                self.pending_seen.set(Some((now, n)));
                n
            }
        }
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

    /// Drops the queue entries that can no longer do anything: those of
    /// transactions that no longer exist, and those of lingering ones other
    /// than the timer that ends them. Entries are never taken out when a
    /// machine moves on, only when they come due, and some outlive their
    /// purpose by far: every forwarded INVITE leaves a Timer C entry due
    /// three minutes later, while the answered call lingers 32 s with
    /// Timer B and M entries that end nothing. Unswept, the queue grows for
    /// three minutes at any steady call rate. Swept whenever it has grown by
    /// half since the last sweep, which keeps the work per queued entry
    /// constant on average.
    fn sweep_stale_timers(&mut self) {
        if self.timers.len() < self.sweep_at.max(SWEEP_MIN) {
            return;
        }
        let records = &self.records;
        self.timers
            .retain(|Reverse(due)| match records.get(&due.id) {
                Some(Record::Full(_)) => true,
                Some(Record::Linger(l)) => l.ends_with(due.timer),
                None => false,
            });
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
        let Some(Record::Full(txn)) = self.records.get_mut(&id) else {
            return;
        };
        let Some(mut cl) = txn.client.take() else {
            return;
        };
        cl.abandon();
        let hash = self.hasher.hash_one(cl.branch.as_bytes());
        txn.abandoned.push(cl);
        let which = txn.abandoned.len();
        if let Ok(mut e) = self
            .by_branch
            .find_entry(hash, |a| *a == AttemptRef::new(id, 0))
        {
            *e.get_mut() = AttemptRef::new(id, which);
        }
    }

    /// Abandoned attempt `which` of `id` (see [`Record::branch`]).
    pub(super) fn abandoned_mut(&mut self, id: TxnId, which: usize) -> Option<&mut Client> {
        self.records.get_mut(&id)?.abandoned_mut(which)
    }

    /// Puts a (new) client transaction on `id`, replacing the previous
    /// attempt's.
    fn set_client(&mut self, id: TxnId, client: Client) {
        let Some(Record::Full(txn)) = self.records.get_mut(&id) else {
            return;
        };
        let hash = self.hasher.hash_one(client.branch.as_bytes());
        if let Some(old) = txn.client.replace(client) {
            let old_hash = self.hasher.hash_one(old.branch.as_bytes());
            if let Ok(e) = self
                .by_branch
                .find_entry(old_hash, |a| *a == AttemptRef::new(id, 0))
            {
                e.remove();
            }
        }
        let Transactions {
            records,
            by_branch,
            hasher,
            ..
        } = self;
        by_branch.insert_unique(hash, AttemptRef::new(id, 0), |a| {
            branch_hash(hasher, records, *a)
        });
    }

    /// Replaces the record of `id` by the compact one if it has reached a
    /// state in which it only absorbs retransmissions.
    fn linger(&mut self, id: TxnId) {
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        let Record::Full(txn) = record else {
            return;
        };
        if let Some(linger) = Linger::take_from(txn) {
            *record = Record::Linger(Box::new(linger));
        }
    }

    fn remove(&mut self, id: TxnId) {
        let Transactions {
            records,
            by_server_key,
            by_branch,
            hasher,
            ..
        } = self;
        let Some(record) = records.get(&id) else {
            return;
        };
        let hash = hasher.hash_one(record.server_key().as_bytes());
        if let Ok(e) = by_server_key.find_entry(hash, |e| *e == id) {
            e.remove();
        }
        for (which, branch) in record.branches() {
            let hash = hasher.hash_one(branch.as_bytes());
            if let Ok(e) = by_branch.find_entry(hash, |a| *a == AttemptRef::new(id, which)) {
                e.remove();
            }
        }
        records.remove(&id);
    }

    /// Attempts to `peer` that have heard nothing yet.
    fn waiting_on(&self, peer: Peer) -> Vec<Waiting> {
        let mut hit: Vec<Waiting> = self
            .records
            .iter()
            .filter_map(|(id, record)| {
                let Record::Full(txn) = record else {
                    return None;
                };
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
        match self.txns.record(id) {
            Some(Record::Full(txn)) => {
                let actions = txn.server.on_request();
                self.run_server(now, id, actions);
            }
            // Completed (RFC 3261 figure 8): the final response again.
            // Accepted (RFC 6026): absorbed, the UAS retransmits its 2xx.
            Some(Record::Linger(l)) => {
                if let Absorb::Completed(response) = &l.absorb {
                    self.out.send(l.upstream, response.clone());
                }
            }
            None => {}
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
        let Some((id, which)) = self.txns.by_branch(branch) else {
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
        if which > 0 {
            return self.on_abandoned_response(id, which, &resp);
        }
        if let Some(Record::Linger(_)) = self.txns.record(id) {
            return self.on_lingering_response(now, id, &resp);
        }
        let Some(cl) = self.txns.get_mut(id).and_then(|t| t.client.as_mut()) else {
            return;
        };
        let actions = cl.machine.on_response(Class::of(resp.code()), now);
        self.run_client(now, id, actions, Some(&resp));
    }

    /// A response for a lingering transaction. After an INVITE's 2xx
    /// (RFC 6026 Accepted) the UAS's 2xx retransmissions go upstream (the
    /// PBX's ACK may have been lost); anything else, and everything after a
    /// non-INVITE final (Completed, Timer K), is absorbed.
    fn on_lingering_response(&mut self, now: Instant, id: TxnId, resp: &Response) {
        if Class::of(resp.code()) != Class::Success {
            return;
        }
        let Some(Record::Linger(l)) = self.txns.record(id) else {
            return;
        };
        let (upstream, Some(restore)) = (l.upstream, l.restore()) else {
            return;
        };
        let data = rewrite::upstream_response(resp, &restore);
        self.last_final = Some(now);
        self.out.send(upstream, data);
    }

    /// Runs the timer `timer` of transaction `id`, due at `now`.
    pub(super) fn on_timer(&mut self, now: Instant, id: TxnId, timer: Timer) {
        if timer == Timer::NoProvisional {
            return self.on_no_provisional(now, id);
        }
        if let Some(Record::Linger(l)) = self.txns.record(id) {
            // Only its own timer (L or J) ends a lingering transaction; the
            // client's (M, K) and stale entries end nothing it keeps.
            if l.ends_with(timer) {
                self.txns.remove(id);
            }
            return;
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
            let Some(Record::Full(txn)) = records.get_mut(&id) else {
                return;
            };
            let Some(cl) = txn.client.as_mut() else {
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
        let Some(Record::Full(txn)) = records.get(&id) else {
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
                if class == Class::Success {
                    self.txns.linger(id);
                }
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
        self.txns.linger(id);
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
