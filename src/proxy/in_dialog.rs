//! Routing a request inside a dialog the gateway set up: open the dialog
//! seal in our Route, pick the next hop, and map the identity for the side
//! the request goes to.

use bytes::Bytes;

use super::dialog::DialogState;
use super::rewrite::{self, Direction, InDialog, OwnRoutes, Restore};
use super::settings::Settings;
use super::Peer;
use crate::callerid::render::Presented;
use crate::sip::{syntax, Request};

/// Our Route on an in-dialog request, opened: which value it is, the dialog
/// state sealed in it, and the way the request travels.
pub(super) struct InDialogRoute {
    /// Our Route values on top: one, or the pair of a double Record-Route.
    own: OwnRoutes,
    state: DialogState,
    direction: Direction,
    /// The next hop once our Route is popped.
    pub(super) dest: Peer,
}

impl InDialogRoute {
    /// `None` when the top Route is not ours or carries no seal valid for
    /// this dialog: such a request is never relayed (toll fraud).
    pub(super) fn open(req: &Request, settings: &Settings) -> Option<InDialogRoute> {
        let c = req.fields();
        let routes = req.routes();
        let top = routes.first()?;
        let uri = syntax::parse_sip_uri(top.uri)?;
        if !settings.is_own_host(uri.host) {
            return None;
        }
        // RFC 5658: with two Record-Routes the other one of the pair follows
        // at once; the state is in the one marked `cg`, the other is `cgp`.
        let pair = routes.get(1).and_then(|r| {
            let u = syntax::parse_sip_uri(r.uri)?;
            let ours = settings.is_own_host(u.host);
            let marked = u.param(b"cg").is_some() || u.param(b"cgp").is_some();
            (ours && marked).then_some((r, u))
        });
        let token = match (uri.param(b"cg"), &pair) {
            (Some(token), _) => token,
            (None, Some((_, u))) if uri.param(b"cgp").is_some() => u.param(b"cg")?,
            _ => return None,
        };
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
        let skip = if pair.is_some() { 2 } else { 1 };
        let uri = routes.get(skip).map_or_else(|| req.uri(), |r| r.uri);
        let mut dest = settings.resolve_uri(uri).unwrap_or(fallback);
        if dest.addr == state.pbx.addr {
            dest = state.pbx;
        }
        Some(InDialogRoute {
            own: OwnRoutes {
                top: top.value,
                pair: pair.map(|(r, _)| r.value),
            },
            state,
            direction,
            dest,
        })
    }

    /// What responses must get back: the From the PBX wrote (requests from
    /// the caller) or the To the carrier wrote (requests from the callee).
    pub(super) fn restore(&self, req: &Request) -> Restore {
        let c = req.fields();
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
            own_routes: self.own,
            via_line,
        };
        rewrite::in_dialog(req, settings, &plan)
    }
}
