//! What the proxy keeps per transaction around the machines: the upstream
//! side (server machine, the request as received, the last response), the
//! downstream side (client machine, the request as sent) and what the call
//! needs to fail over.

use std::time::Instant;

use bytes::Bytes;

use super::{
    Actions, Class, ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, State, Timer,
};
use crate::proxy::ids::ServerKey;
use crate::proxy::new_call::CallPlan;
use crate::proxy::rewrite::{HopRequest, Restore};
use crate::proxy::Peer;
use crate::sip::{self as sipmod, Message, Request, Response};

pub(in crate::proxy) type TxnId = u64;

/// What kind of request the transaction forwards, and what it needs to redo.
pub(in crate::proxy) enum Kind {
    /// A new outbound call: may fail over to the next carrier.
    Call(CallPlan),
    /// Any other forwarded request (in-dialog or plain out-of-dialog), and a
    /// call once its final response is sent (the plan is dropped then).
    Relay,
    /// Answered by the gateway itself (the caller-ID reject); nothing forwarded.
    Local,
}

/// The server machine for the request's method.
pub(in crate::proxy) enum ServerMachine {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

/// The client machine for the request's method.
pub(in crate::proxy) enum ClientMachine {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ServerMachine {
    pub(in crate::proxy) fn for_request(invite: bool, reliable: bool) -> ServerMachine {
        if invite {
            ServerMachine::Invite(ServerInvite::new(reliable))
        } else {
            ServerMachine::NonInvite(ServerNonInvite::new())
        }
    }

    pub(in crate::proxy) fn state(&self) -> State {
        match self {
            ServerMachine::Invite(m) => m.state(),
            ServerMachine::NonInvite(m) => m.state(),
        }
    }

    /// No final response has been sent upstream yet.
    pub(in crate::proxy) fn awaits_final(&self) -> bool {
        matches!(self.state(), State::Trying | State::Proceeding)
    }

    pub(in crate::proxy) fn on_request(&self) -> Actions {
        match self {
            ServerMachine::Invite(m) => m.on_request(),
            ServerMachine::NonInvite(m) => m.on_request(),
        }
    }

    pub(in crate::proxy) fn on_send(&mut self, class: Class, now: Instant) -> Actions {
        match self {
            ServerMachine::Invite(m) => m.on_send(class, now),
            ServerMachine::NonInvite(m) => m.on_send(class, now),
        }
    }

    pub(in crate::proxy) fn on_timer(&mut self, timer: Timer, now: Instant) -> Actions {
        match self {
            ServerMachine::Invite(m) => m.on_timer(timer, now),
            ServerMachine::NonInvite(m) => m.on_timer(timer, now),
        }
    }
}

impl ClientMachine {
    pub(in crate::proxy) fn start(
        invite: bool,
        reliable: bool,
        now: Instant,
    ) -> (ClientMachine, Actions) {
        if invite {
            let (m, a) = ClientInvite::start(now, reliable);
            (ClientMachine::Invite(m), a)
        } else {
            let (m, a) = ClientNonInvite::start(now, reliable);
            (ClientMachine::NonInvite(m), a)
        }
    }

    pub(in crate::proxy) fn state(&self) -> State {
        match self {
            ClientMachine::Invite(m) => m.state(),
            ClientMachine::NonInvite(m) => m.state(),
        }
    }

    pub(in crate::proxy) fn on_response(&mut self, class: Class, now: Instant) -> Actions {
        match self {
            ClientMachine::Invite(m) => m.on_response(class, now),
            ClientMachine::NonInvite(m) => m.on_response(class, now),
        }
    }

    pub(in crate::proxy) fn on_timer(&mut self, timer: Timer, now: Instant) -> Actions {
        match self {
            ClientMachine::Invite(m) => m.on_timer(timer, now),
            ClientMachine::NonInvite(m) => m.on_timer(timer, now),
        }
    }

    pub(in crate::proxy) fn on_transport_error(&mut self) -> Actions {
        match self {
            ClientMachine::Invite(m) => m.on_transport_error(),
            ClientMachine::NonInvite(m) => m.on_transport_error(),
        }
    }

    /// The caller cancelled (only INVITEs can be).
    pub(in crate::proxy) fn cancel(&mut self) -> Actions {
        match self {
            ClientMachine::Invite(m) => m.cancel(),
            ClientMachine::NonInvite(_) => Actions::none(),
        }
    }
}

/// Client side of a transaction: the request as sent to the next hop.
pub(in crate::proxy) struct Client {
    pub(in crate::proxy) branch: String,
    pub(in crate::proxy) dest: Peer,
    pub(in crate::proxy) request: Bytes,
    /// What CANCEL and ACK are built from; worked out from `request` the first
    /// time one is needed (most calls never need either).
    /// Boxed: most transactions never build one, and the record lingers.
    hop: Option<Box<HopRequest>>,
    pub(in crate::proxy) machine: ClientMachine,
    /// Sent over TCP only because it outgrew UDP: retry over UDP if TCP fails.
    pub(in crate::proxy) udp_fallback: bool,
    /// The next hop could not be reached (connection refused, TLS handshake
    /// or certificate failure): the machine's timeout stands for a 503 from
    /// that hop, not a 408 (RFC 3261 §16.7 step 6).
    pub(in crate::proxy) transport_failed: bool,
    /// When a call attempt still without a provisional response moves on to
    /// the next carrier ([`Timer::NoProvisional`]).
    pub(in crate::proxy) no_provisional: Option<Instant>,
    /// The attempt was given up for lack of a provisional response; its late
    /// responses are answered (CANCEL, ACK) but never relayed.
    pub(in crate::proxy) cancel_sent: bool,
}

impl Client {
    pub(in crate::proxy) fn new(
        branch: String,
        dest: Peer,
        request: Bytes,
        machine: ClientMachine,
    ) -> Client {
        Client {
            branch,
            dest,
            request,
            hop: None,
            machine,
            udp_fallback: false,
            transport_failed: false,
            no_provisional: None,
            cancel_sent: false,
        }
    }

    /// What an abandoned attempt keeps: the pieces its ACK and CANCEL are
    /// built from, not the request.
    pub(in crate::proxy) fn abandon(&mut self) {
        self.hop();
        self.request = Bytes::new();
        self.no_provisional = None;
    }

    fn hop(&mut self) -> Option<&HopRequest> {
        if self.hop.is_none() {
            // Our own output: it parses (the hostile-input suite checks that).
            if let Ok(Message::Request(sent)) =
                sipmod::parse(self.request.clone(), self.dest.transport)
            {
                let c = sent.fields();
                let via = &c.buf()[c.via_header().line.range()];
                self.hop = Some(Box::new(HopRequest::from_forwarded(&sent, via)));
            }
        }
        self.hop.as_deref()
    }

    pub(in crate::proxy) fn cancel(&mut self) -> Bytes {
        self.hop().map(HopRequest::cancel).unwrap_or_default()
    }

    pub(in crate::proxy) fn ack(&mut self, resp: &Response) -> Bytes {
        self.hop().map(|h| h.ack(resp)).unwrap_or_default()
    }
}

pub(in crate::proxy) struct Txn {
    pub(in crate::proxy) server_key: ServerKey,
    pub(in crate::proxy) upstream: Peer,
    pub(in crate::proxy) server: ServerMachine,
    /// The request as received, kept to answer it and, for calls, to fail
    /// over; dropped once a final response is sent so that lingering
    /// transactions hold only what retransmissions need. Boxed so that the
    /// record kept after the final response (32 s for a call) is half the size.
    pub(in crate::proxy) request: Option<Box<Request>>,
    pub(in crate::proxy) kind: Kind,
    pub(in crate::proxy) restore: Restore,
    /// Last response sent upstream, resent on a retransmitted request.
    pub(in crate::proxy) last_response: Option<Bytes>,
    /// The caller sent a CANCEL: no failover, a timeout answers 487.
    pub(in crate::proxy) cancelled: bool,
    pub(in crate::proxy) client: Option<Client>,
    /// Earlier attempts given up for lack of a provisional response: their
    /// late responses are ACKed (failures) or CANCELled (provisionals)
    /// instead of reaching the PBX.
    pub(in crate::proxy) abandoned: Vec<Client>,
}

impl Txn {
    /// A transaction for a request just received from `upstream`; callers set
    /// what differs (restore values, the first response).
    pub(in crate::proxy) fn new(
        server_key: ServerKey,
        upstream: Peer,
        request: Option<Request>,
        invite: bool,
        kind: Kind,
    ) -> Txn {
        let reliable = upstream.transport != crate::sip::Transport::Udp;
        Txn {
            server_key,
            upstream,
            server: ServerMachine::for_request(invite, reliable),
            request: request.map(Box::new),
            kind,
            restore: Restore::default(),
            last_response: None,
            cancelled: false,
            client: None,
            abandoned: Vec::new(),
        }
    }

    pub(in crate::proxy) fn is_invite(&self) -> bool {
        matches!(self.server, ServerMachine::Invite(_))
    }

    /// After the final response only retransmission handling remains: drop
    /// the received request, the copy kept for retransmitting downstream and
    /// the call plan (its number, name and signature serve failover and
    /// signing, both over once the caller has its final response).
    pub(in crate::proxy) fn keep_only_retransmission_state(&mut self) {
        self.request = None;
        if matches!(self.kind, Kind::Call(_)) {
            self.kind = Kind::Relay;
        }
        if let Some(cl) = self.client.as_mut() {
            cl.request = Bytes::new();
        }
    }
}
