//! STIR/SHAKEN in the core: a new call waits for its `Identity` without
//! holding anything else up.
//!
//! Signing costs tens of microseconds, so the core does not sign. When a call
//! needs an Identity it queues a [`SignJob`] (drained by the shell with
//! [`Proxy::poll_sign`]) and leaves the call's transaction waiting: the PBX
//! already has its `100 Trying`, retransmitted INVITEs are absorbed as usual,
//! and every other message is served meanwhile. The shell hands the result
//! back with [`Proxy::handle_signature`] and the call goes out. A call whose
//! signature cannot be made (the signing queue is full) is refused with
//! `503` and `Retry-After`: with signing configured, nothing goes out
//! unsigned.

use std::sync::Arc;
use std::time::Instant;

use super::core::Proxy;
use super::txn::{Class, Kind, TxnId};
use crate::stir::{Attest, Claims, SignJob};

/// How calls are signed, from `[stir]`; the key itself stays with the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StirSigning {
    /// Attestation for numbers the inventory gives none.
    pub attest: Attest,
    /// Sign the display name as Rich Call Data.
    pub rcd: bool,
}

/// A call's PASSporT claims and the Identity signed for its current attempt.
#[derive(Debug)]
pub(super) struct StirPlan {
    /// Fixed for the whole call: `origid` stays the same across failover.
    pub(super) claims: Claims,
    /// The carrier index the Identity was signed for, and the header value.
    pub(super) signed: Option<(usize, Arc<str>)>,
}

/// `Retry-After` on a call refused because signing is saturated: a second
/// is plenty for a queue that drains in milliseconds.
const OVERLOADED: &[u8] = b"Retry-After: 1\r\n";

impl Proxy {
    /// The next signature the shell should have made; answer each with
    /// [`Proxy::handle_signature`] and the job's token.
    pub fn poll_sign(&mut self) -> Option<SignJob> {
        self.signs.pop_front()
    }

    /// The Identity header value for job `token`, or `None` when it could
    /// not be made (queue full, signing failed): the call is then refused
    /// with `503` and `Retry-After`.
    pub fn handle_signature(&mut self, now: Instant, token: u64, identity: Option<String>) {
        let id: TxnId = token;
        let Some(txn) = self.txns.get_mut(id) else {
            return; // The call ended meanwhile.
        };
        if !txn.server.awaits_final() {
            return;
        }
        let Kind::Call(plan) = &mut txn.kind else {
            return;
        };
        let (Some(stir), Some(identity)) = (plan.stir.as_mut(), identity) else {
            return self.refuse_unsigned(now, id);
        };
        stir.signed = Some((plan.carrier, identity.into()));
        if txn.cancelled {
            return self.final_upstream_local(now, id, 487, "Request Terminated");
        }
        self.start_call_attempt(now, id, true);
    }

    /// Whether the call's current attempt still needs its Identity; if so the
    /// job is queued and the attempt waits for [`Proxy::handle_signature`].
    pub(super) fn needs_signature(&mut self, id: TxnId) -> bool {
        let Some(Kind::Call(plan)) = self.txns.get(id).map(|t| &t.kind) else {
            return false;
        };
        let Some(stir) = plan.stir.as_ref() else {
            return false;
        };
        if stir
            .signed
            .as_ref()
            .is_some_and(|(c, _)| *c == plan.carrier)
        {
            return false;
        }
        self.signs.push_back(SignJob {
            token: id,
            claims: stir.claims.clone(),
        });
        true
    }

    fn refuse_unsigned(&mut self, now: Instant, id: TxnId) {
        let Some(txn) = self.txns.get(id) else {
            return;
        };
        let (upstream, Some(req)) = (txn.upstream, txn.request.as_ref()) else {
            return;
        };
        let data = self.out.respond(
            &self.settings.key,
            upstream,
            req,
            503,
            "Service Unavailable",
            OVERLOADED,
        );
        self.out.event(super::Event::Refused {
            from: upstream.addr,
            code: 503,
            reason: "signing overloaded",
        });
        self.finish(now, id, Class::Failure, data);
    }
}
