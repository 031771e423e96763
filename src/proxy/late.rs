//! Responses that find no attempt waiting for them: late answers from a
//! carrier attempt given up for lack of a provisional, and answers whose
//! transaction is gone (a restart, or after the linger time), which a proxy
//! forwards statelessly (RFC 3261 §16.7, §16.11).

use std::time::Instant;

use super::core::Proxy;
use super::dialog::DialogState;
use super::rewrite;
use super::txn::{Class, Kind, State, TxnId};
use super::Peer;
use crate::sip::{syntax, HeaderName, Response};

impl Proxy {
    /// The no-provisional time of the current attempt of `id` ran out. An
    /// attempt that has heard nothing yet (not even a 100) counts against
    /// its carrier and is given up for the next carrier that is up; with
    /// none left it keeps waiting for Timer B.
    pub(super) fn on_no_provisional(&mut self, now: Instant, id: TxnId) {
        let Some(txn) = self.txns.get_mut(id) else {
            return;
        };
        let Some(cl) = txn.client.as_mut() else {
            return;
        };
        // A stale entry: the attempt it was armed for is gone or answered.
        let due = cl.no_provisional.is_some_and(|t| t <= now);
        if !due || cl.machine.state() != State::Calling {
            return;
        }
        cl.no_provisional = None;
        let cancelled = txn.cancelled;
        let Kind::Call(plan) = &mut txn.kind else {
            return;
        };
        self.health.call_failed(plan.carrier, &mut self.out);
        if plan.fail_over(408, cancelled, &self.health) {
            self.txns.abandon_client(id);
            self.start_call_attempt(now, id, true);
        }
    }

    /// A response to an attempt abandoned for the next carrier: a failure is
    /// ACKed (the carrier stops retransmitting it), a provisional gets a
    /// CANCEL (the attempt is no longer wanted), a 2xx is dropped (unACKed,
    /// the carrier ends that session itself, RFC 3261 §13.3.1.4). None of it
    /// reaches the PBX, whose call goes on with the next carrier.
    /// `which` numbers the attempt as [`super::txn::Record::branch`] does.
    pub(super) fn on_abandoned_response(&mut self, id: TxnId, which: usize, resp: &Response) {
        let code = resp.code();
        let Some(cl) = self.txns.abandoned_mut(id, which) else {
            return;
        };
        let dest = cl.dest;
        match Class::of(code) {
            Class::Provisional if !cl.cancel_sent => {
                cl.cancel_sent = true;
                let data = cl.cancel();
                self.out.send(dest, data);
            }
            Class::Provisional => {}
            Class::Failure => {
                let ack = cl.ack(resp);
                self.out.send(dest, ack);
            }
            Class::Success => self
                .out
                .dropped(dest.addr, "2xx from a carrier attempt given up on"),
        }
    }

    /// A response matching no transaction. Forwarded only when the gateway
    /// provably sent the request: the top Via branch carries our keyed check,
    /// and our Record-Route carries a dialog seal valid for this Call-ID and
    /// From tag. The seal, not the message, says where the PBX is, so a
    /// forged or replayed response cannot be bounced anywhere else.
    pub(super) fn forward_stateless(&mut self, now: Instant, from: Peer, resp: &Response) {
        let c = resp.fields();
        let ours = c.branch().is_some_and(|b| self.settings.key.made_branch(b));
        if !ours {
            return self
                .out
                .dropped(from.addr, "response matches no transaction");
        }
        let Some(state) = self.sealed_route(resp) else {
            return self.out.dropped(
                from.addr,
                "response matches no transaction and carries no route of ours",
            );
        };
        let code = resp.code();
        let data = rewrite::stateless_response(resp, &state.pbx_from);
        if (200..300).contains(&code) && c.cseq_method() == b"INVITE" {
            // A 2xx retransmission the PBX must ACK: the drain waits for it.
            self.last_final = Some(now);
        }
        self.out.send(state.pbx, data);
    }

    /// The dialog state in our own Record-Route entry of `resp`, opened with
    /// the caller's From tag (the PBX's side, where the response goes).
    fn sealed_route(&self, resp: &Response) -> Option<DialogState> {
        let c = resp.fields();
        for h in c.raw().all(HeaderName::RecordRoute) {
            let value = c.value(h);
            for item in syntax::split_list(value).unwrap_or_default() {
                let Ok(na) = syntax::parse_name_addr(&value[item]) else {
                    continue;
                };
                let Some(uri) = syntax::parse_sip_uri(na.uri) else {
                    continue;
                };
                if !self.settings.is_own_host(uri.host) {
                    continue;
                }
                if let Some(token) = uri.param(b"cg") {
                    return self.settings.key.open(c.call_id(), c.from_tag(), token);
                }
            }
        }
        None
    }
}
