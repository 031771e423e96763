//! A new outbound call from the PBX: the caller-ID decision, the rewritten
//! INVITE for each carrier attempt, and the failover decision between them.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::carrier_health::CarrierHealth;
use super::core::Proxy;
use super::dialog::DialogState;
use super::ids::ServerKey;
use super::rewrite::{self, InitialInvite, Restore};
use super::settings::Settings;
use super::signing::{StirPlan, StirSigning};
use super::txn::{Class, Kind, Timer, Txn, TxnId};
use super::via::OwnVia;
use super::{Event, Peer};
use crate::callerid::policy::Resolver;
use crate::callerid::render::Presented;
use crate::callerid::Decision;
use crate::inventory::{Inventory, InventoryHandle, Region};
use crate::sip::{syntax, Request, Transport};
use crate::stir::{Claims, Destination, OrigId};

/// RFC 3261 §18.1.1: a request within 200 bytes of a 1500-byte path MTU goes
/// over a congestion-controlled transport.
const UDP_MTU_LIMIT: usize = 1300;

/// The caller-ID decision: the inventory in force and the resolver with its
/// verdict cache.
pub(super) struct CallerIdStage {
    inventory: Arc<InventoryHandle>,
    resolver: Resolver,
}

/// What every attempt of one call presents, and which carrier it is on.
#[derive(Debug)]
pub(super) struct CallPlan {
    /// Index into the carriers of the one being tried.
    pub(super) carrier: usize,
    pub(super) number: String,
    pub(super) name: String,
    pub(super) anonymous: bool,
    /// The queue asked for anonymity and the PBX did not: add `Privacy: id`.
    pub(super) add_privacy: bool,
    /// What the call is signed with, when signing is configured.
    pub(super) stir: Option<Box<StirPlan>>,
}

impl CallPlan {
    /// The failover decision, the only one: after a failure `code` from the
    /// current carrier (408 also stands for no answer at all, or none in the
    /// no-provisional time), move on to the next carrier that is up when
    /// there is one, the failure is the carrier's (408, 503) and the caller
    /// has not cancelled. Returns whether it moved.
    pub(super) fn fail_over(&mut self, code: u16, cancelled: bool, health: &CarrierHealth) -> bool {
        if !matches!(code, 408 | 503) || cancelled {
            return false;
        }
        match health.first_up_from(self.carrier + 1) {
            Some(next) => {
                self.carrier = next;
                true
            }
            None => false,
        }
    }
}

/// One attempt of a call: the INVITE as sent to one carrier.
pub(super) struct Attempt {
    pub(super) dest: Peer,
    pub(super) branch: String,
    pub(super) data: Bytes,
    /// Sent over TCP only because it outgrew UDP: retry over UDP if TCP fails.
    pub(super) udp_fallback: bool,
}

impl CallerIdStage {
    pub(super) fn new(inventory: Arc<InventoryHandle>, settings: &Settings) -> CallerIdStage {
        CallerIdStage {
            inventory,
            resolver: Resolver::new(settings.dynamic_format).with_cnam_names(settings.cnam_names),
        }
    }

    /// Decides the caller ID of a new call: the event to report and, unless
    /// the call must be refused, what its attempts present.
    pub(super) fn decide(
        &mut self,
        req: &Request,
        settings: &Settings,
    ) -> (Event, Option<CallPlan>) {
        let c = req.fields();
        let inputs = c.caller_id_inputs(&settings.queue_header, &settings.dynamic_header);
        let queue = inputs
            .queue
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let per_call = inputs.per_call.map(String::from_utf8_lossy);
        // A guard, not an Arc clone: no reference-count traffic per INVITE.
        let inventory = self.inventory.current();
        let decision = self
            .resolver
            .resolve(&inventory, &queue, per_call.as_deref());
        let call_id = String::from_utf8_lossy(c.call_id()).into_owned();
        match decision {
            Err(reason) => (
                Event::Decision {
                    call_id,
                    queue,
                    outcome: reason.as_str(),
                    number: None,
                    origid: None,
                },
                None,
            ),
            Ok(d) => {
                let number = d.number.as_str().to_string();
                let stir = settings
                    .stir
                    .map(|signing| stir_plan(signing, &inventory, &queue, &d, req));
                let event = Event::Decision {
                    call_id,
                    queue,
                    outcome: d.outcome.as_str(),
                    number: Some(number.clone()),
                    origid: stir.as_ref().map(|s| s.claims.origid.to_string()),
                };
                let plan = CallPlan {
                    carrier: 0,
                    number,
                    name: d.name.to_string(),
                    anonymous: d.anonymous || inputs.privacy_id,
                    add_privacy: d.anonymous && !inputs.privacy_id,
                    stir,
                };
                (event, Some(plan))
            }
        }
    }
}

/// What a decided call is signed with: the presented (for an anonymous call,
/// the asserted) number, the called party from the Request-URI (normalised
/// with the queue's region), the attestation the numbers file or `[stir]`
/// gives, a fresh origid and, with RCD, the name as presented.
fn stir_plan(
    signing: StirSigning,
    inventory: &Inventory,
    queue: &str,
    d: &Decision,
    req: &Request,
) -> Box<StirPlan> {
    // The queue exists: the decision was made from it.
    let region = inventory
        .queue(queue.trim())
        .map_or(Region::US, |q| q.region);
    let uri = String::from_utf8_lossy(req.uri());
    Box::new(StirPlan {
        claims: Claims {
            orig_tn: d.number.digits().to_string(),
            dest: Destination::from_request_uri(&uri, region),
            origid: OrigId::random(),
            attest: inventory.attest_of(&d.number).unwrap_or(signing.attest),
            rcd_name: signing
                .rcd
                .then(|| presented_name(&d.name))
                .filter(|n| !n.is_empty()),
        },
        signed: None,
    })
}

/// The display name as P-Asserted-Identity carries it (control characters are
/// never written), which is what `rcd.nam` must equal.
fn presented_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).collect()
}

/// Everything an attempt is built from.
pub(super) struct AttemptInputs<'a> {
    pub(super) req: &'a Request,
    pub(super) plan: &'a CallPlan,
    pub(super) upstream: Peer,
    pub(super) key: &'a ServerKey,
    pub(super) settings: &'a Settings,
    pub(super) via: &'a OwnVia,
}

impl AttemptInputs<'_> {
    /// The INVITE for the plan's current carrier; `None` when none is left.
    /// `allow_tcp`: a request that outgrows the path MTU over UDP goes over
    /// TCP to the same next hop instead (RFC 3261 §18.1.1); false when that
    /// TCP attempt already failed and the request falls back to UDP.
    pub(super) fn build(&self, allow_tcp: bool) -> Option<Attempt> {
        let (req, plan, settings) = (self.req, self.plan, self.settings);
        let mut dest = *settings.carriers.get(plan.carrier)?;
        let c = req.fields();
        let branch = settings.key.branch(req, self.key, plan.carrier);
        let from = c.bytes(c.from_header().value);
        let state = DialogState {
            number: plan.number.clone(),
            name: plan.name.clone(),
            anonymous: plan.anonymous,
            pbx_from: {
                let na = syntax::parse_name_addr(from).expect("From checked at parse");
                from[..na.addr_len].to_vec()
            },
            pbx: self.upstream,
        };
        let token = settings.key.seal_within(
            c.call_id(),
            c.from_tag(),
            &state,
            settings.route_token_budget(),
        );
        let build = |transport: Transport| {
            let via = self.via.line(transport, &branch);
            let record_route = settings.record_route(self.upstream.transport, transport, &token);
            let rewrite = InitialInvite {
                id: Presented {
                    number: &plan.number,
                    name: &plan.name,
                    anonymous: plan.anonymous,
                },
                add_privacy: plan.add_privacy,
                identity: plan
                    .stir
                    .as_ref()
                    .and_then(|s| s.signed.as_ref())
                    .map(|(_, identity)| &**identity),
                via_line: via.as_bytes(),
                record_route: record_route.as_bytes(),
            };
            rewrite::initial_invite(req, settings, &rewrite)
        };
        let mut data = build(dest.transport);
        let mut udp_fallback = false;
        if dest.transport == Transport::Udp && allow_tcp && data.len() > UDP_MTU_LIMIT {
            dest.transport = Transport::Tcp;
            udp_fallback = true;
            data = build(Transport::Tcp);
        }
        Some(Attempt {
            dest,
            branch,
            data,
            udp_fallback,
        })
    }
}

impl Proxy {
    /// Out-of-dialog INVITE from the PBX: decide the caller ID, then either
    /// refuse (remembering the answer for retransmissions) or try the first
    /// carrier.
    pub(super) fn on_new_call(&mut self, now: Instant, from: Peer, req: Request, key: ServerKey) {
        let (event, plan) = self.caller_id.decide(&req, &self.settings);
        self.out.event(event);
        let s = &self.settings;
        let Some(plan) = plan else {
            let data = self.out.respond(
                &s.key,
                from,
                &req,
                s.reject_code,
                &s.reject_phrase,
                s.reject_headers.as_bytes(),
            );
            let txn = Txn::new(key, from, None, true, Kind::Local);
            let id = self.txns.insert(txn);
            return self.finish(now, id, Class::Failure, data);
        };
        let mut plan = plan;
        let Some(first) = self.health.first_up_from(0) else {
            // Every carrier is down: say so at once, with when to retry.
            let retry = format!("Retry-After: {}\r\n", self.health.retry_after());
            let data = self.out.respond(
                &s.key,
                from,
                &req,
                503,
                "Service Unavailable",
                retry.as_bytes(),
            );
            let id = self
                .txns
                .insert(Txn::new(key, from, None, true, Kind::Local));
            return self.finish(now, id, Class::Failure, data);
        };
        plan.carrier = first;
        let trying = self.out.respond(&s.key, from, &req, 100, "Trying", b"");
        let c = req.fields();
        let restore = Restore {
            from: Some(Bytes::copy_from_slice(c.value(c.from_header()))),
            to: None,
        };
        let mut txn = Txn::new(key, from, Some(req), true, Kind::Call(plan));
        txn.restore = restore;
        txn.last_response = Some(trying);
        let id = self.txns.insert(txn);
        self.start_call_attempt(now, id, true);
    }

    /// Sends the call to the carrier its plan points at, or answers upstream
    /// when there is none left.
    pub(super) fn start_call_attempt(&mut self, now: Instant, id: TxnId, allow_tcp: bool) {
        if self.needs_signature(id) {
            return; // Resumed by `handle_signature`.
        }
        let Some(txn) = self.txns.get(id) else {
            return;
        };
        let (Kind::Call(plan), Some(req)) = (&txn.kind, txn.request.as_ref()) else {
            return;
        };
        let allow_tcp = allow_tcp
            && self
                .settings
                .carriers
                .get(plan.carrier)
                .is_none_or(|c| !self.tcp_is_down(now, c.addr));
        let inputs = AttemptInputs {
            req,
            plan,
            upstream: txn.upstream,
            key: &txn.server_key,
            settings: &self.settings,
            via: &self.via,
        };
        match inputs.build(allow_tcp) {
            Some(a) => {
                self.start_client(now, id, a.dest, a.branch, a.data);
                let wait = now + self.health.settings().no_provisional;
                if let Some(cl) = self.txns.get_mut(id).and_then(|t| t.client.as_mut()) {
                    cl.udp_fallback = a.udp_fallback;
                    cl.no_provisional = Some(wait);
                }
                self.txns.arm(wait, id, Timer::NoProvisional);
            }
            None => self.final_upstream_local(now, id, 503, "Service Unavailable"),
        }
    }
}
