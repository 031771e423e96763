//! Routing a request inside a dialog the gateway set up: open the dialog
//! seal in our Route, pick the next hop, and map the identity for the side
//! the request goes to.

use bytes::Bytes;

use super::dialog::DialogState;
use super::rewrite::{self, Direction, InDialog, Restore};
use super::settings::Settings;
use super::Peer;
use crate::callerid::render::Presented;
use crate::sip::{syntax, ListValue, Request};

/// Our Route on an in-dialog request, opened: which value it is, the dialog
/// state sealed in it, and the way the request travels.
pub(super) struct InDialogRoute {
    own: ListValue,
    state: DialogState,
    direction: Direction,
    /// The next hop once our Route is popped.
    pub(super) dest: Peer,
}

impl InDialogRoute {
    /// `None` when the top Route is not ours or carries no seal valid for
    /// this dialog: such a request is never relayed (toll fraud).
    pub(super) fn open(req: &Request, settings: &Settings) -> Option<InDialogRoute> {
        let c = req.common();
        let top = req.top_route()?;
        let uri = syntax::parse_sip_uri(top.uri)?;
        if !settings.is_own_host(uri.host) {
            return None;
        }
        let token = uri.param(b"cg")?;
        let key = &settings.key;
        let (state, direction) = match key.open(c.call_id(), c.from_tag(), token) {
            Some(st) => (st, Direction::Caller),
            None => (
                key.open(c.call_id(), c.to_tag()?, token)?,
                Direction::Callee,
            ),
        };
        // Where the request goes after our Route is popped: the next Route,
        // else the Request-URI. Non-IP hosts fall back to the known peer of
        // that side.
        let fallback = match direction {
            Direction::Caller => settings.carriers.first().copied().unwrap_or(state.pbx),
            Direction::Callee => state.pbx,
        };
        let uri = req.next_route_uri(top.value).unwrap_or_else(|| req.uri());
        let mut dest = settings.resolve_uri(uri).unwrap_or(fallback);
        if dest.addr == state.pbx.addr {
            dest = state.pbx;
        }
        Some(InDialogRoute {
            own: top.value,
            state,
            direction,
            dest,
        })
    }

    /// What responses must get back: the From the PBX wrote (requests from
    /// the caller) or the To the carrier wrote (requests from the callee).
    pub(super) fn restore(&self, req: &Request) -> Restore {
        let c = req.common();
        match self.direction {
            Direction::Caller => Restore {
                from: Some(Bytes::copy_from_slice(c.value(c.from_header()))),
                to: None,
            },
            Direction::Callee => Restore {
                from: None,
                to: Some(Bytes::copy_from_slice(c.value(c.to_header()))),
            },
        }
    }

    /// The request as forwarded, with `via_line` on top.
    pub(super) fn build(&self, req: &Request, settings: &Settings, via_line: &[u8]) -> Bytes {
        let plan = InDialog {
            direction: self.direction,
            id: Presented {
                number: &self.state.number,
                name: &self.state.name,
                anonymous: self.state.anonymous,
            },
            pbx_from: &self.state.pbx_from,
            own_route: self.own,
            via_line,
        };
        rewrite::in_dialog(req, settings, &plan)
    }
}
