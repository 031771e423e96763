//! Checked SIP messages.
//!
//! [`parse`] turns a received buffer into a [`Request`] or [`Response`] whose
//! existence proves the headers the proxy relies on were present and well formed
//! (RFC 3261 §8.1.1, §16.3 and the RFC 4475 torture cases). Problems that can be
//! answered come back as [`ParseFailure::Reject`] with the raw scan, so the caller
//! can build the error response from the headers that were there.

use bytes::Bytes;

use super::content_length;
use super::header::HeaderName;
use super::scan::{self, HeaderField, RawMessage, ScanError, Span, StartLine, StartLineDefect};
use super::syntax::{self, parse_name_addr, parse_via};
use super::Transport;

/// Methods the proxy treats specially; everything else is `Other` and routed
/// like any non-INVITE request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Bye,
    Options,
    Other,
}

impl Method {
    fn classify(m: &[u8]) -> Method {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"CANCEL" => Method::Cancel,
            b"BYE" => Method::Bye,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// What every checked message has besides its start line: the header table,
/// the fields the proxy relies on (located once at parse time) and the body
/// as framed.
/// Fields are private: the only way to get one is [`parse`], so holding one
/// proves the checks ran.
#[derive(Debug, Clone)]
pub struct MessageFields {
    raw: RawMessage,
    at: Located,
}

/// Where the checks found what the proxy relies on, in the buffer of the
/// message they checked.
#[derive(Debug, Clone)]
struct Located {
    /// End of the body as framed by Content-Length (bytes after it are ignored).
    body_end: u32,
    content_length: Option<usize>,
    call_id: Span,
    cseq_num: u32,
    cseq_method: Span,
    from: usize,
    to: usize,
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    /// Index of the first Via header field.
    via: usize,
    top_via: TopVia,
}

/// What the proxy needs from the topmost Via value.
#[derive(Debug, Clone)]
pub struct TopVia {
    /// The first Via value within the first Via header field.
    pub value: Span,
    pub transport: Span,
    pub host: Span,
    pub port: Option<u16>,
    pub branch: Option<Span>,
    /// The `rport` parameter's value; an empty span (just past the name) when
    /// it is the bare flag asking for the port to be filled in (RFC 3581).
    pub rport: Option<Span>,
    /// Whether this value is the only one in its header field.
    pub alone: bool,
}

impl MessageFields {
    /// The scan underneath: every header field as written.
    pub fn raw(&self) -> &RawMessage {
        &self.raw
    }
    pub fn headers(&self) -> &[HeaderField] {
        &self.raw.headers
    }
    pub fn buf(&self) -> &Bytes {
        &self.raw.buf
    }
    pub fn bytes(&self, s: Span) -> &[u8] {
        self.raw.bytes(s)
    }
    pub fn value(&self, h: &HeaderField) -> &[u8] {
        self.raw.value(h)
    }
    pub fn header(&self, i: usize) -> &HeaderField {
        &self.raw.headers[i]
    }
    /// Offset of the empty line ending the header section: where header
    /// fields are appended.
    pub fn headers_end(&self) -> usize {
        self.raw.headers_end as usize
    }
    /// End of the message as framed by Content-Length; bytes after it are
    /// not part of it.
    pub fn body_end(&self) -> usize {
        self.at.body_end as usize
    }
    pub fn body(&self) -> &[u8] {
        &self.raw.buf[self.raw.body_start as usize..self.body_end()]
    }
    /// The Content-Length as written; `None` when the field is absent.
    pub fn content_length(&self) -> Option<usize> {
        self.at.content_length
    }
    pub fn call_id(&self) -> &[u8] {
        self.bytes(self.at.call_id)
    }
    pub fn cseq(&self) -> u32 {
        self.at.cseq_num
    }
    pub fn cseq_method(&self) -> &[u8] {
        self.bytes(self.at.cseq_method)
    }
    pub fn from_header(&self) -> &HeaderField {
        &self.raw.headers[self.at.from]
    }
    pub fn to_header(&self) -> &HeaderField {
        &self.raw.headers[self.at.to]
    }
    pub fn from_tag(&self) -> &[u8] {
        self.at.from_tag.map(|s| self.bytes(s)).unwrap_or(b"")
    }
    pub fn to_tag(&self) -> Option<&[u8]> {
        self.at.to_tag.map(|s| self.bytes(s))
    }
    /// The first Via header field (it holds the top Via value).
    pub fn via_header(&self) -> &HeaderField {
        &self.raw.headers[self.at.via]
    }
    pub fn top_via(&self) -> &TopVia {
        &self.at.top_via
    }
    pub fn branch(&self) -> Option<&[u8]> {
        self.at.top_via.branch.map(|s| self.bytes(s))
    }
}

/// The Max-Forwards field of a request: where it is and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxForwards {
    /// Index of the header field.
    pub header: usize,
    pub value: u32,
}

/// A checked request; only [`parse`] makes one.
#[derive(Debug, Clone)]
pub struct Request {
    fields: MessageFields,
    method: Method,
    method_span: Span,
    uri: Span,
    max_forwards: Option<MaxForwards>,
}

impl Request {
    pub fn fields(&self) -> &MessageFields {
        &self.fields
    }
    pub fn method(&self) -> Method {
        self.method
    }
    pub fn method_bytes(&self) -> &[u8] {
        self.fields.bytes(self.method_span)
    }
    pub fn uri(&self) -> &[u8] {
        self.fields.bytes(self.uri)
    }
    pub fn uri_span(&self) -> Span {
        self.uri
    }
    pub fn max_forwards(&self) -> Option<MaxForwards> {
        self.max_forwards
    }
}

/// A checked response; only [`parse`] makes one.
#[derive(Debug, Clone)]
pub struct Response {
    fields: MessageFields,
    code: u16,
}

impl Response {
    pub fn fields(&self) -> &MessageFields {
        &self.fields
    }
    pub fn code(&self) -> u16 {
        self.code
    }
}

#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn fields(&self) -> &MessageFields {
        match self {
            Message::Request(r) => &r.fields,
            Message::Response(r) => &r.fields,
        }
    }
}

#[derive(Debug)]
pub enum ParseFailure {
    /// Not answerable: not SIP, a bad response, or a request too broken to route.
    Drop(&'static str),
    /// A request with a defect that deserves this status code.
    Reject {
        raw: Box<RawMessage>,
        code: u16,
        reason: &'static str,
    },
}

/// The span of `part`, which must be a sub-slice of `buf`; anything else
/// (never expected) maps to an empty span instead of a wrong one.
fn span_of(buf: &[u8], part: &[u8]) -> Span {
    let base = buf.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p < base || p + part.len() > base + buf.len() {
        debug_assert!(part.is_empty(), "span_of: slice outside the buffer");
        return Span::default();
    }
    Span::new(p - base, p - base + part.len())
}

fn parse_u32_digits(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digits = {
        let nz = v.iter().position(|&b| b != b'0').unwrap_or(v.len());
        &v[nz..]
    };
    if digits.len() > 10 {
        return None;
    }
    let n: u64 = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + (d - b'0') as u64);
    u32::try_from(n).ok()
}

/// Parses one message. `transport` decides the Content-Length rules: on UDP a
/// missing Content-Length means "the rest of the datagram" and a too large one is
/// an error; on TCP the framer has already cut the message to size.
pub fn parse(buf: Bytes, transport: Transport) -> Result<Message, ParseFailure> {
    let raw = match scan::scan(buf) {
        Ok(r) => r,
        Err(ScanError::Empty) => return Err(ParseFailure::Drop("empty")),
        Err(_) => return Err(ParseFailure::Drop("not a SIP message")),
    };
    let is_request = raw.is_request();
    match check(&raw, transport) {
        Ok(checked) => build(raw, checked),
        Err(Defect { code, reason }) if is_request => Err(ParseFailure::Reject {
            raw: Box::new(raw),
            code,
            reason,
        }),
        Err(defect) => Err(ParseFailure::Drop(defect.reason)),
    }
}

/// Everything `check` located, minus the buffer itself (moved in by `build`).
struct Checked {
    at: Located,
    /// Requests only.
    max_forwards: Option<MaxForwards>,
}

/// Why a message failed its checks: the status a request gets, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Defect {
    code: u16,
    reason: &'static str,
}

/// The usual defect: 400 Bad Request for `reason`.
const fn bad(reason: &'static str) -> Defect {
    Defect { code: 400, reason }
}

/// Runs every check in a fixed order (the first defect found is the one
/// answered, so the order is part of the behaviour).
fn check(raw: &RawMessage, transport: Transport) -> Result<Checked, Defect> {
    let request_method = check_start_line(raw)?;
    let once = Singletons::locate(raw)?;
    let call_id = check_call_id(raw, once.call_id)?;
    let cseq = check_cseq(raw, once.cseq, request_method)?;
    let max_forwards = check_max_forwards(raw, once.max_forwards)?;
    check_expires(raw)?;
    let from_tag = tag_of(raw, once.from, "Bad From")?;
    let to_tag = tag_of(raw, once.to, "Bad To")?;
    let top_via = check_vias(raw)?;
    let body = frame_body(raw, once.content_length, transport)?;
    let at = Located {
        body_end: body.end,
        content_length: body.content_length,
        call_id,
        cseq_num: cseq.number,
        cseq_method: cseq.method,
        from: once.from,
        to: once.to,
        from_tag,
        to_tag,
        via: once.via,
        top_via,
    };
    Ok(Checked { at, max_forwards })
}

/// A request line's defects and Request-URI; the method when it is a request.
fn check_start_line(raw: &RawMessage) -> Result<Option<&[u8]>, Defect> {
    let StartLine::Request { method, uri, .. } = raw.start else {
        return Ok(None);
    };
    match raw.start_defect {
        Some(StartLineDefect::Version) => {
            return Err(Defect {
                code: 505,
                reason: "SIP Version Not Supported",
            })
        }
        Some(StartLineDefect::Malformed) => return Err(bad("Malformed Request-Line")),
        None => {}
    }
    check_request_uri(raw.bytes(uri))?;
    Ok(Some(raw.bytes(method)))
}

/// Indexes of the header fields that must appear once (Via: the first of
/// those that may repeat).
struct Singletons {
    call_id: usize,
    cseq: usize,
    from: usize,
    to: usize,
    max_forwards: Option<usize>,
    content_length: Option<usize>,
    via: usize,
}

impl Singletons {
    /// One pass over the header table.
    fn locate(raw: &RawMessage) -> Result<Singletons, Defect> {
        let (mut call_id, mut cseq, mut from, mut to, mut mf, mut cl, mut via) =
            (None, None, None, None, None, None, None);
        for (i, h) in raw.headers.iter().enumerate() {
            let (slot, what) = match h.name {
                HeaderName::CallId => (&mut call_id, "Duplicate Call-ID"),
                HeaderName::CSeq => (&mut cseq, "Duplicate CSeq"),
                HeaderName::From => (&mut from, "Duplicate From"),
                HeaderName::To => (&mut to, "Duplicate To"),
                HeaderName::MaxForwards => (&mut mf, "Duplicate Max-Forwards"),
                HeaderName::ContentLength => (&mut cl, "Duplicate Content-Length"),
                HeaderName::Via => {
                    via.get_or_insert(i);
                    continue;
                }
                _ => continue,
            };
            if slot.replace(i).is_some() {
                return Err(bad(what));
            }
        }
        Ok(Singletons {
            call_id: call_id.ok_or(bad("Missing Call-ID"))?,
            cseq: cseq.ok_or(bad("Missing CSeq"))?,
            from: from.ok_or(bad("Missing From"))?,
            to: to.ok_or(bad("Missing To"))?,
            max_forwards: mf,
            content_length: cl,
            via: via.ok_or(bad("Missing Via"))?,
        })
    }
}

fn check_call_id(raw: &RawMessage, idx: usize) -> Result<Span, Defect> {
    let span = raw.headers[idx].value;
    if span.is_empty() || raw.bytes(span).iter().any(|&b| syntax::is_lws(b)) {
        return Err(bad("Bad Call-ID"));
    }
    Ok(span)
}

/// A checked CSeq: the number and where the method is.
struct CSeq {
    number: u32,
    method: Span,
}

/// `1*DIGIT LWS Method`, the number below 2^31, the method equal to the
/// request's.
fn check_cseq(raw: &RawMessage, idx: usize, request_method: Option<&[u8]>) -> Result<CSeq, Defect> {
    let v = raw.value(&raw.headers[idx]);
    let num_len = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let number = parse_u32_digits(&v[..num_len])
        .filter(|&n| n < 1 << 31)
        .ok_or(bad("Bad CSeq number"))?;
    let method = syntax::trim_lws(&v[num_len..]);
    if num_len == v.len()
        || !syntax::is_lws(v[num_len])
        || method.is_empty()
        || !method.iter().all(|&b| scan::is_token_char(b))
    {
        return Err(bad("Bad CSeq"));
    }
    if request_method.is_some_and(|m| m != method) {
        return Err(bad("CSeq method does not match Request-Line"));
    }
    Ok(CSeq {
        number,
        method: span_of(&raw.buf, method),
    })
}

fn check_max_forwards(raw: &RawMessage, idx: Option<usize>) -> Result<Option<MaxForwards>, Defect> {
    let Some(header) = idx else {
        return Ok(None);
    };
    let value = parse_u32_digits(raw.value(&raw.headers[header]))
        .filter(|&n| n <= 255)
        .ok_or(bad("Bad Max-Forwards"))?;
    Ok(Some(MaxForwards { header, value }))
}

/// An all-digit Expires must fit in 32 bits (RFC 4475 "scalar02").
fn check_expires(raw: &RawMessage) -> Result<(), Defect> {
    if let Some(h) = raw.first(HeaderName::Expires) {
        let v = raw.value(h);
        if v.iter().all(u8::is_ascii_digit) && parse_u32_digits(v).is_none() {
            return Err(bad("Bad Expires"));
        }
    }
    Ok(())
}

/// The From or To value must be a name-addr; its non-empty tag, if any.
fn tag_of(raw: &RawMessage, idx: usize, defect: &'static str) -> Result<Option<Span>, Defect> {
    let na = parse_name_addr(raw.value(&raw.headers[idx])).map_err(|_| bad(defect))?;
    Ok(na
        .param(b"tag")
        .filter(|t| !t.is_empty())
        .map(|t| span_of(&raw.buf, t)))
}

/// Every Via value must parse; the top one is kept.
fn check_vias(raw: &RawMessage) -> Result<TopVia, Defect> {
    let buf = &raw.buf[..];
    let mut top_via = None;
    for h in raw.headers.iter().filter(|h| h.name == HeaderName::Via) {
        let value = raw.value(h);
        let items = syntax::split_list(value).map_err(|_| bad("Bad Via"))?;
        let alone = items.len() == 1;
        for item in items {
            let part = &value[item];
            let v = parse_via(part).map_err(|_| bad("Bad Via"))?;
            if top_via.is_none() {
                top_via = Some(TopVia {
                    value: span_of(buf, syntax::trim_lws(part)),
                    transport: span_of(buf, v.transport),
                    host: span_of(buf, v.host),
                    port: v.port,
                    branch: v.branch().map(|b| span_of(buf, b)),
                    rport: syntax::find_param(v.params, b"rport").map(|r| span_of(buf, r)),
                    alone,
                });
            }
        }
    }
    top_via.ok_or(bad("Missing Via"))
}

/// Where the body ends, and the Content-Length it was framed by.
struct Body {
    end: u32,
    content_length: Option<usize>,
}

/// On UDP a missing Content-Length means "the rest of the datagram" and a
/// too large one is an error; on TCP the framer has cut the message already.
fn frame_body(raw: &RawMessage, idx: Option<usize>, transport: Transport) -> Result<Body, Defect> {
    let available = raw.buf.len() - raw.body_start as usize;
    let content_length = match idx {
        Some(i) => {
            let v = raw.value(&raw.headers[i]);
            Some(content_length::parse_value(v).ok_or(bad("Bad Content-Length"))?)
        }
        None => None,
    };
    let body_len = match content_length {
        Some(n) if n > available => return Err(bad("Content-Length larger than message")),
        Some(n) => n,
        None if transport.is_stream() => 0,
        None => available,
    };
    Ok(Body {
        end: raw.body_start + body_len as u32,
        content_length,
    })
}

fn check_request_uri(uri: &[u8]) -> Result<(), Defect> {
    if uri.first() == Some(&b'<') {
        return Err(bad("Request-URI in angle brackets"));
    }
    let scheme = syntax::uri_scheme(uri).map_err(|_| bad("Bad Request-URI scheme"))?;
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        let parsed = syntax::parse_sip_uri(uri).ok_or(bad("Bad Request-URI"))?;
        if parsed.has_headers {
            return Err(bad("Headers in Request-URI"));
        }
    }
    Ok(())
}

fn build(raw: RawMessage, checked: Checked) -> Result<Message, ParseFailure> {
    let Checked { at, max_forwards } = checked;
    let fields = MessageFields { raw, at };
    match fields.raw.start {
        StartLine::Request { method, uri, .. } => {
            let m = Method::classify(fields.bytes(method));
            Ok(Message::Request(Request {
                method: m,
                method_span: method,
                uri,
                max_forwards,
                fields,
            }))
        }
        StartLine::Response { code, .. } => Ok(Message::Response(Response { code, fields })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Message, ParseFailure> {
        parse(Bytes::copy_from_slice(s.as_bytes()), Transport::Udp)
    }

    const OK: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nbodyEXTRA";

    #[test]
    fn good_request_is_framed_by_content_length() {
        let Ok(Message::Request(r)) = req(OK) else {
            panic!("expected request")
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.fields.body(), b"body");
        assert_eq!(r.fields.from_tag(), b"1");
        assert_eq!(r.fields.branch(), Some(&b"z9hG4bK1"[..]));
        assert_eq!(r.max_forwards().map(|m| m.value), Some(70));
    }

    fn reject_code(s: &str) -> u16 {
        match req(s) {
            Err(ParseFailure::Reject { code, .. }) => code,
            other => panic!("expected reject, got {other:?}"),
        }
    }

    #[test]
    fn defects_map_to_codes() {
        let cases = [
            ("CSeq: 1 INVITE", "CSeq: 1 ACK", 400),
            ("Max-Forwards: 70", "Max-Forwards: 300", 400),
            ("Content-Length: 4", "Content-Length: 400", 400),
            ("Content-Length: 4", "Content-Length: -4", 400),
            ("SIP/2.0\r\nVia", "SIP/3.0\r\nVia", 505),
            ("Call-ID: x@y\r\n", "", 400),
            (
                "To: <sip:bob@example.com>",
                "To: <sip:bob@example.com>\r\nTo: <sip:c@d>",
                400,
            ),
        ];
        for (from, to, code) in cases {
            assert_eq!(reject_code(&OK.replace(from, to)), code, "{to:?}");
        }
    }

    #[test]
    fn bad_responses_are_dropped() {
        let r = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 99999999999999999 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(req(r), Err(ParseFailure::Drop(_))));
    }
}
