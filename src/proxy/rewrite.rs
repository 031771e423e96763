//! Building the messages the proxy forwards, as splices of the received bytes.

use bytes::Bytes;

use super::settings::Settings;
use crate::callerid::render::{self, Presented};
use crate::sip::header::same_header;
use crate::sip::scan::{HeaderField, Span};
use crate::sip::splice::Splice;
use crate::sip::syntax;
use crate::sip::{HeaderName, ListValue, MessageFields, Request, Response};

/// Edits every forwarded request gets (RFC 3261 §16.6): our Via on top, the
/// Max-Forwards decrement, a Content-Length that is always present and right.
fn forwarding_edits(sp: &mut Splice<'_>, req: &Request, via_line: &[u8]) {
    let c = req.fields();
    sp.insert(
        c.via_header().line.start as usize,
        Bytes::copy_from_slice(via_line),
    );
    match req.max_forwards() {
        Some(mf) => sp.replace(
            c.header(mf.header).value,
            mf.value.saturating_sub(1).to_string(),
        ),
        None => sp.insert(c.headers_end(), &b"Max-Forwards: 70\r\n"[..]),
    }
    if c.content_length().is_none() {
        let len = c.body().len();
        sp.insert(c.headers_end(), format!("Content-Length: {len}\r\n"));
    }
}

fn is_stripped(s: &Settings, c: &MessageFields, idx: usize) -> bool {
    let h = c.header(idx);
    match h.name {
        HeaderName::PAssertedIdentity => true,
        HeaderName::Other | HeaderName::PPreferredIdentity | HeaderName::RemotePartyId => {
            let name = c.bytes(h.name_span);
            s.strip.iter().any(|n| same_header(name, n.as_bytes()))
        }
        _ => false,
    }
}

/// Replaces the address part of a From/To value, keeping its parameters (tag
/// included) exactly as written.
fn replace_addr(sp: &mut Splice<'_>, c: &MessageFields, h: &HeaderField, new_addr: &[u8]) {
    // Nothing kept (a route state that had to stay short): leave it as it is.
    if new_addr.is_empty() {
        return;
    }
    let value = c.bytes(h.value);
    // Checked at parse time, so this cannot fail for From/To.
    if let Ok(na) = syntax::parse_name_addr(value) {
        // The scanner trims values, so the address starts at the value start.
        let start = h.value.start as usize;
        sp.replace(
            Span::new(start, start + na.addr_len),
            Bytes::copy_from_slice(new_addr),
        );
    }
}

/// The rewritten out-of-dialog INVITE toward the carrier.
pub struct InitialInvite<'a> {
    pub id: Presented<'a>,
    /// The queue asked for anonymity and the PBX did not: add `Privacy: id`.
    pub add_privacy: bool,
    /// Our `Identity` header value (STIR/SHAKEN), when calls are signed.
    pub identity: Option<&'a str>,
    pub via_line: &'a [u8],
    pub record_route: &'a [u8],
}

pub fn initial_invite(req: &Request, s: &Settings, plan: &InitialInvite<'_>) -> Bytes {
    let c = req.fields();
    let mut sp = Splice::new(c.buf());
    forwarding_edits(&mut sp, req, plan.via_line);
    // Record-Route: ours first (before any existing), else at the end.
    let rr_at = c
        .raw()
        .first(HeaderName::RecordRoute)
        .map(|h| h.line.start as usize)
        .unwrap_or(c.headers_end());
    sp.insert(rr_at, Bytes::copy_from_slice(plan.record_route));

    let from_addr = render::from_name_addr(&plan.id, &s.domain);
    replace_addr(&mut sp, c, c.from_header(), from_addr.as_bytes());
    let mut after_from = render::pai_line(&plan.id, &s.domain, s.pai);
    if plan.add_privacy {
        after_from.push_str("Privacy: id\r\n");
    }
    if let Some(identity) = plan.identity {
        after_from.push_str("Identity: ");
        after_from.push_str(identity);
        after_from.push_str("\r\n");
    }
    sp.insert(c.from_header().line.end as usize, after_from);
    for i in 0..c.headers().len() {
        // An Identity from the PBX signs an identity the gateway does not
        // present; a verifier would fail it, so it never goes out.
        if is_stripped(s, c, i) || c.header(i).name == HeaderName::Identity {
            sp.remove(c.header(i).line);
        }
    }
    sp.finish(c.body_end())
}

/// Which way an in-dialog request travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the PBX (the caller) toward the carrier.
    Caller,
    /// From the carrier (the callee) toward the PBX.
    Callee,
}

/// Our Route values on an in-dialog request, to be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnRoutes {
    pub top: ListValue,
    /// The other value of a double Record-Route (RFC 5658), right after `top`.
    pub pair: Option<ListValue>,
}

pub struct InDialog<'a> {
    pub direction: Direction,
    pub id: Presented<'a>,
    pub pbx_from: &'a [u8],
    pub own_routes: OwnRoutes,
    pub via_line: &'a [u8],
}

/// An in-dialog request, with our Route popped and the identity mapped for the
/// side it goes to.
pub fn in_dialog(req: &Request, s: &Settings, plan: &InDialog<'_>) -> Bytes {
    let c = req.fields();
    let mut sp = Splice::new(c.buf());
    forwarding_edits(&mut sp, req, plan.via_line);
    remove_own_routes(&mut sp, c, plan.own_routes);
    match plan.direction {
        Direction::Caller => {
            let from_addr = render::from_name_addr(&plan.id, &s.domain);
            replace_addr(&mut sp, c, c.from_header(), from_addr.as_bytes());
            sp.insert(
                c.from_header().line.end as usize,
                render::pai_line(&plan.id, &s.domain, s.pai),
            );
            for i in 0..c.headers().len() {
                if is_stripped(s, c, i) {
                    sp.remove(c.header(i).line);
                }
            }
        }
        Direction::Callee => replace_addr(&mut sp, c, c.to_header(), plan.pbx_from),
    }
    sp.finish(c.body_end())
}

/// Any other request forwarded as is, apart from the proxy's own edits.
pub fn plain(req: &Request, via_line: &[u8]) -> Bytes {
    let c = req.fields();
    let mut sp = Splice::new(c.buf());
    forwarding_edits(&mut sp, req, via_line);
    sp.finish(c.body_end())
}

/// Removes our Route value(s). Two in one field are the first two of it
/// (they are on top): the field goes when they are all of it, else everything
/// up to the third value.
fn remove_own_routes(sp: &mut Splice<'_>, c: &MessageFields, own: OwnRoutes) {
    match own {
        OwnRoutes {
            top,
            pair: Some(pair),
        } if top.header == pair.header => {
            let h = c.header(top.header);
            let mut items = syntax::split_list(c.bytes(h.value)).unwrap_or_default();
            match items.nth(2) {
                None => sp.remove(h.line),
                Some(range) => {
                    let s = range.start;
                    let third = &c.bytes(h.value)[range];
                    let lead = third.len() - third.trim_ascii_start().len();
                    let end = h.value.start as usize + s + lead;
                    sp.remove(Span::new(top.span.start as usize, end));
                }
            }
        }
        OwnRoutes { top, pair } => {
            for v in std::iter::once(top).chain(pair) {
                remove_list_value(sp, c, c.header(v.header), v.span);
            }
        }
    }
}

/// Removes one value of a comma-separated header (the whole field when it is the
/// only value).
fn remove_list_value(sp: &mut Splice<'_>, c: &MessageFields, h: &HeaderField, value: Span) {
    let field = c.bytes(h.value);
    let items = syntax::split_list(field).unwrap_or_default();
    if items.len() <= 1 {
        sp.remove(h.line);
        return;
    }
    // Remove from the value start through the following comma and whitespace, or
    // for the last value from the preceding comma.
    let buf = c.buf();
    let mut end = value.end as usize;
    let field_end = h.value.end as usize;
    while end < field_end && syntax::is_lws(buf[end]) {
        end += 1;
    }
    if end < field_end && buf[end] == b',' {
        end += 1;
        while end < field_end && syntax::is_lws(buf[end]) {
            end += 1;
        }
        sp.remove(Span::new(value.start as usize, end));
    } else {
        let mut start = value.start as usize;
        while start > h.value.start as usize && buf[start - 1] != b',' {
            start -= 1;
        }
        sp.remove(Span::new(start.saturating_sub(1), value.end as usize));
    }
}

/// The From or To value the upstream side wrote, put back into responses
/// after the gateway rewrote it on the way downstream.
#[derive(Debug, Clone, Default)]
pub struct Restore {
    pub from: Option<Bytes>,
    pub to: Option<Bytes>,
}

/// A response going back upstream: our Via removed, From/To restored to what
/// the upstream side sent.
pub fn upstream_response(resp: &Response, restore: &Restore) -> Bytes {
    let c = resp.fields();
    let mut sp = Splice::new(c.buf());
    remove_list_value(&mut sp, c, c.via_header(), c.top_via().value);
    if let Some(v) = &restore.from {
        sp.replace(c.from_header().value, v.clone());
    }
    if let Some(v) = &restore.to {
        sp.replace(c.to_header().value, v.clone());
    }
    if c.content_length().is_none() {
        sp.insert(
            c.headers_end(),
            format!("Content-Length: {}\r\n", c.body().len()),
        );
    }
    sp.finish(c.body_end())
}

/// A response forwarded without a transaction: our Via removed and the
/// From address the PBX wrote put back (its parameters, tag included, are
/// the same on both sides).
pub fn stateless_response(resp: &Response, pbx_from: &[u8]) -> Bytes {
    let c = resp.fields();
    let mut sp = Splice::new(c.buf());
    remove_list_value(&mut sp, c, c.via_header(), c.top_via().value);
    replace_addr(&mut sp, c, c.from_header(), pbx_from);
    if c.content_length().is_none() {
        sp.insert(
            c.headers_end(),
            format!("Content-Length: {}\r\n", c.body().len()),
        );
    }
    sp.finish(c.body_end())
}

/// Pieces of a forwarded INVITE needed to build its ACK (for a non-2xx) and its
/// CANCEL (RFC 3261 §9.1, §17.1.1.3): both reuse the request's branch.
#[derive(Debug, Clone)]
pub struct HopRequest {
    pub uri: Bytes,
    pub via_line: Bytes,
    pub from: Bytes,
    pub to: Bytes,
    pub call_id: Bytes,
    pub cseq: u32,
    pub routes: Bytes,
}

impl HopRequest {
    /// Takes the dialog identifiers from the forwarded bytes, which are a
    /// checked message we built ourselves.
    pub fn from_forwarded(sent: &Request, via_line: &[u8]) -> HopRequest {
        let c = sent.fields();
        let buf = c.buf();
        let mut routes = Vec::new();
        for h in c.raw().all(HeaderName::Route) {
            routes.extend_from_slice(&buf[h.line.range()]);
        }
        // Copies, not slices: the transaction outlives the forwarded message
        // and should not keep the whole buffer alive for these few bytes.
        HopRequest {
            uri: Bytes::copy_from_slice(&buf[sent.uri_span().range()]),
            via_line: Bytes::copy_from_slice(via_line),
            from: Bytes::copy_from_slice(c.value(c.from_header())),
            to: Bytes::copy_from_slice(c.value(c.to_header())),
            call_id: Bytes::copy_from_slice(c.call_id()),
            cseq: c.cseq(),
            routes: Bytes::from(routes),
        }
    }

    fn build(&self, method: &str, to: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(256 + self.uri.len() + self.from.len() + to.len());
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        out.extend_from_slice(&self.via_line);
        out.extend_from_slice(&self.routes);
        out.extend_from_slice(b"Max-Forwards: 70\r\nFrom: ");
        out.extend_from_slice(&self.from);
        out.extend_from_slice(b"\r\nTo: ");
        out.extend_from_slice(to);
        out.extend_from_slice(b"\r\nCall-ID: ");
        out.extend_from_slice(&self.call_id);
        out.extend_from_slice(format!("\r\nCSeq: {} {}\r\n", self.cseq, method).as_bytes());
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        Bytes::from(out)
    }

    pub fn cancel(&self) -> Bytes {
        self.build("CANCEL", &self.to)
    }

    /// ACK for a non-2xx final response, with the To (and tag) of that response.
    pub fn ack(&self, resp: &Response) -> Bytes {
        let c = resp.fields();
        self.build("ACK", c.bytes(c.to_header().value))
    }
}
