//! Where requests go: our Via and Record-Route, recognising our own Route and
//! its dialog seal, and the next hop of an in-dialog request.

use std::net::{IpAddr, SocketAddr};

use super::core::Proxy;
use super::dialog::DialogState;
use super::rewrite::Direction;
use super::Peer;
use crate::sip::message::Common;
use crate::sip::scan::Span;
use crate::sip::syntax;
use crate::sip::{HeaderName, Request, Transport};

impl Proxy {
    /// Our Via for a request sent over `transport`, with `rport` so the next hop
    /// answers to the port we sent from.
    pub(super) fn via_line(&self, transport: Transport, branch: &str) -> String {
        let sent_by = &self.sent_by[transport as usize];
        let mut v = String::with_capacity(40 + sent_by.len() + branch.len());
        v.push_str("Via: SIP/2.0/");
        v.push_str(transport.via_token());
        v.push(' ');
        v.push_str(sent_by);
        v.push_str(";branch=");
        v.push_str(branch);
        v.push_str(";rport\r\n");
        v
    }

    /// The sent-by of our Via per transport (index: `Transport as usize`): the
    /// listener's address, or the domain when it listens on every address.
    pub(super) fn sent_by_for(settings: &super::Settings) -> [String; 2] {
        [Transport::Udp, Transport::Tcp].map(|t| match settings.local(t) {
            Some(p) if !p.addr.ip().is_unspecified() => p.addr.to_string(),
            Some(p) => format!("{}:{}", settings.domain, p.addr.port()),
            None => settings.domain.clone(),
        })
    }

    pub(super) fn record_route(&self, incoming: Transport, token: &str) -> String {
        let port = self
            .settings
            .local(incoming)
            .map(|p| p.addr.port())
            .unwrap_or(5060);
        let port = if port == 5060 {
            String::new()
        } else {
            format!(":{port}")
        };
        format!(
            "Record-Route: <sip:{}{};lr;cg={}>\r\n",
            self.settings.domain, port, token
        )
    }

    pub(super) fn addressed_to_us(&self, req: &Request) -> bool {
        syntax::parse_sip_uri(req.uri())
            .map(|u| u.user.is_none() && self.settings.is_own_host(u.host))
            .unwrap_or(false)
    }

    /// Finds our Route (the top one) and opens its dialog seal.
    pub(super) fn own_route(&self, c: &Common) -> Option<(usize, Span, DialogState, Direction)> {
        let idx = c
            .raw
            .headers
            .iter()
            .position(|h| h.name == HeaderName::Route)?;
        let h = c.header(idx);
        let value = c.bytes(h.value);
        let (s, e) = *syntax::split_list(value).ok()?.first()?;
        let first = &value[s..e];
        let na = syntax::parse_name_addr(first).ok()?;
        let uri = syntax::parse_sip_uri(na.uri)?;
        if !self.settings.is_own_host(uri.host) {
            return None;
        }
        let token = uri.param(b"cg")?;
        let trimmed = syntax::trim_lws(first);
        let off =
            h.value.start as usize + s + (trimmed.as_ptr() as usize - first.as_ptr() as usize);
        let span = Span::new(off, off + trimmed.len());
        let key = &self.settings.key;
        if let Some(st) = key.open(c.call_id(), c.from_tag(), token) {
            return Some((idx, span, st, Direction::Caller));
        }
        let to_tag = c.to_tag()?;
        key.open(c.call_id(), to_tag, token)
            .map(|st| (idx, span, st, Direction::Callee))
    }

    /// Where an in-dialog request goes after our Route is popped: the next Route,
    /// else the Request-URI. Non-IP hosts fall back to the known peer of that side.
    pub(super) fn next_hop(
        &self,
        req: &Request,
        own_idx: usize,
        own: Span,
        fallback: Peer,
    ) -> Peer {
        let c = &req.common;
        let mut next_uri: Option<&[u8]> = None;
        'outer: for (i, h) in c.raw.headers.iter().enumerate() {
            if h.name != HeaderName::Route {
                continue;
            }
            let value = c.bytes(h.value);
            for (s, e) in syntax::split_list(value).unwrap_or_default() {
                let abs = h.value.start as usize + s;
                if i == own_idx
                    && abs <= own.start as usize
                    && own.start as usize <= h.value.start as usize + e
                {
                    continue;
                }
                if let Ok(na) = syntax::parse_name_addr(&value[s..e]) {
                    next_uri = Some(na.uri);
                    break 'outer;
                }
            }
        }
        let uri = next_uri.unwrap_or_else(|| req.uri());
        self.resolve_uri(uri).unwrap_or(fallback)
    }

    pub(super) fn resolve_uri(&self, uri: &[u8]) -> Option<Peer> {
        let u = syntax::parse_sip_uri(uri)?;
        let host = std::str::from_utf8(u.host).ok()?;
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        let addr = SocketAddr::new(ip, u.port.unwrap_or(5060));
        // A known carrier keeps its configured transport.
        if let Some(c) = self.settings.carriers.iter().find(|c| c.addr == addr) {
            return Some(*c);
        }
        let transport = u
            .param(b"transport")
            .and_then(Transport::from_token)
            .unwrap_or(Transport::Udp);
        Some(Peer { transport, addr })
    }
}
