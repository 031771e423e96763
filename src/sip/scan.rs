//! Structural scan of one SIP message: start line, header fields, body.
//!
//! The scan never copies: every piece is a [`Span`] into the received buffer, so a
//! proxy can forward the bytes it does not own exactly as they arrived and splice
//! only the few header fields it changes. Scanning is deliberately lenient about
//! header *values* (those are checked later, and only for the headers the gateway
//! must understand); it is strict about framing, which decides where a message ends.

use bytes::Bytes;

use super::header::HeaderName;

/// A byte range into the message buffer. `u32` keeps header tables small; the
/// scanner refuses messages larger than `u32::MAX` long before that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// One header field as it appears on the wire.
#[derive(Debug, Clone, Copy)]
pub struct HeaderField {
    pub name: HeaderName,
    /// The name as written (case and compact form kept).
    pub name_span: Span,
    /// The value with leading and trailing whitespace removed; folded
    /// continuation lines are included as they came.
    pub value: Span,
    /// The whole field: from the first byte of the name to the end of its last
    /// line terminator. Removing this span removes the field cleanly.
    pub line: Span,
}

#[derive(Debug, Clone, Copy)]
pub enum StartLine {
    Request {
        method: Span,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        code: u16,
        reason: Span,
    },
}

/// Why a buffer could not be scanned as a SIP message at all. Such input cannot
/// be answered (we do not even know it is a request), so it is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("empty message")]
    Empty,
    #[error("start line is not a SIP request or response")]
    BadStartLine,
    #[error("header section is not terminated by an empty line")]
    Unterminated,
    #[error("header line without a name and colon")]
    BadHeaderLine,
    #[error("message larger than the scanner supports")]
    TooLarge,
}

/// A request line or status line problem that is still answerable: the request
/// was recognisably a request, so the sender can get an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLineDefect {
    /// Not exactly `Method SP Request-URI SP SIP-Version`.
    Malformed,
    /// Version other than SIP/2.0: answered with 505.
    Version,
}

/// The result of a structural scan.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub buf: Bytes,
    pub start: StartLine,
    /// Problem found in a request line, if any; the header table is still valid.
    pub start_defect: Option<StartLineDefect>,
    pub headers: Vec<HeaderField>,
    /// Offset of the empty line that ends the header section.
    pub headers_end: u32,
    /// Offset of the first body byte (after the empty line).
    pub body_start: u32,
}

impl RawMessage {
    pub fn bytes(&self, span: Span) -> &[u8] {
        &self.buf[span.range()]
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// First header field of the given kind.
    pub fn first(&self, name: HeaderName) -> Option<&HeaderField> {
        self.headers.iter().find(|h| h.name == name)
    }

    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &HeaderField> {
        self.headers.iter().filter(move |h| h.name == name)
    }

    pub fn value(&self, h: &HeaderField) -> &[u8] {
        self.bytes(h.value)
    }
}

/// Upper bound for anything we scan; also bounds TCP framing.
pub const MAX_MESSAGE: usize = 64 * 1024;

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Finds the end of the line starting at `pos`: returns (end of content, start of
/// next line). Accepts CRLF and, leniently, a bare LF.
fn line_end(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = memchr::memchr(b'\n', &buf[pos..])? + pos;
    let content_end = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((content_end, nl + 1))
}

/// RFC 3261 `token` characters, as a table: this test runs for every byte of
/// every header name and method.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[b as usize]
}

/// Scans the start line and the header section. The body is whatever follows the
/// empty line; how much of it belongs to the message is decided by Content-Length
/// in [`super::message`], not here.
pub fn scan(buf: Bytes) -> Result<RawMessage, ScanError> {
    if buf.len() > MAX_MESSAGE.max(u32::MAX as usize / 2) {
        return Err(ScanError::TooLarge);
    }
    // RFC 3261 §7.5: tolerate CRLFs before the start line (keep-alive residue).
    let mut pos = 0;
    while pos < buf.len() && (buf[pos] == b'\r' || buf[pos] == b'\n') {
        pos += 1;
    }
    if pos == buf.len() {
        return Err(ScanError::Empty);
    }
    let (sl_end, mut next) = line_end(&buf, pos).ok_or(ScanError::Unterminated)?;
    let (start, start_defect) = scan_start_line(&buf, pos, sl_end)?;

    let mut headers = Vec::with_capacity(24);
    loop {
        if next >= buf.len() {
            return Err(ScanError::Unterminated);
        }
        let line_start = next;
        let (content_end, after) = line_end(&buf, line_start).ok_or(ScanError::Unterminated)?;
        if content_end == line_start {
            // Empty line: end of the header section.
            return Ok(RawMessage {
                buf,
                start,
                start_defect,
                headers,
                headers_end: line_start as u32,
                body_start: after as u32,
            });
        }
        let (field, field_end) = scan_header_field(&buf, line_start, content_end, after)?;
        headers.push(field);
        next = field_end;
    }
}

/// One header field starting at `line_start`, whose first line ends at
/// `content_end` (line terminator at `after`); folded continuation lines are
/// part of it. Returns the field and where the next one starts.
fn scan_header_field(
    buf: &[u8],
    line_start: usize,
    content_end: usize,
    after: usize,
) -> Result<(HeaderField, usize), ScanError> {
    if is_ws(buf[line_start]) {
        // A continuation line with no header before it.
        return Err(ScanError::BadHeaderLine);
    }
    // Gather folded continuation lines.
    let mut value_end = content_end;
    let mut field_end = after;
    while field_end < buf.len() && is_ws(buf[field_end]) {
        let (ce, af) = line_end(buf, field_end).ok_or(ScanError::Unterminated)?;
        value_end = ce;
        field_end = af;
    }
    let colon = memchr::memchr(b':', &buf[line_start..content_end])
        .map(|i| i + line_start)
        .ok_or(ScanError::BadHeaderLine)?;
    let mut name_end = colon;
    while name_end > line_start && is_ws(buf[name_end - 1]) {
        name_end -= 1;
    }
    let name_bytes = &buf[line_start..name_end];
    if name_bytes.is_empty() || !name_bytes.iter().all(|&b| is_token_char(b)) {
        return Err(ScanError::BadHeaderLine);
    }
    let mut vs = colon + 1;
    while vs < value_end && matches!(buf[vs], b' ' | b'\t' | b'\r' | b'\n') {
        vs += 1;
    }
    let mut ve = value_end;
    while ve > vs && matches!(buf[ve - 1], b' ' | b'\t' | b'\r' | b'\n') {
        ve -= 1;
    }
    let field = HeaderField {
        name: HeaderName::classify(name_bytes),
        name_span: Span::new(line_start, name_end),
        value: Span::new(vs, ve),
        line: Span::new(line_start, field_end),
    };
    Ok((field, field_end))
}

type ScannedStartLine = (StartLine, Option<StartLineDefect>);

fn scan_start_line(buf: &[u8], pos: usize, end: usize) -> Result<ScannedStartLine, ScanError> {
    if buf[pos..end].starts_with(b"SIP/") {
        status_line(buf, pos, end)
    } else {
        request_line(buf, pos, end)
    }
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`: anything else is not a
/// response we can use.
fn status_line(buf: &[u8], pos: usize, end: usize) -> Result<ScannedStartLine, ScanError> {
    let line = &buf[pos..end];
    let sp1 = memchr::memchr(b' ', line).ok_or(ScanError::BadStartLine)?;
    let version = Span::new(pos, pos + sp1);
    if &line[..sp1] != b"SIP/2.0" {
        return Err(ScanError::BadStartLine);
    }
    let code_bytes = &line[sp1 + 1..];
    let code_len = code_bytes
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(code_bytes.len());
    if code_len != 3 || !code_bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(ScanError::BadStartLine);
    }
    let code = (code_bytes[0] - b'0') as u16 * 100
        + (code_bytes[1] - b'0') as u16 * 10
        + (code_bytes[2] - b'0') as u16;
    if !(100..=699).contains(&code) {
        return Err(ScanError::BadStartLine);
    }
    let reason_start = (pos + sp1 + 1 + 3 + 1).min(end);
    Ok((
        StartLine::Response {
            version,
            code,
            reason: Span::new(reason_start, end),
        },
        None,
    ))
}

/// A request line; defects a request can be answered for are kept beside it.
fn request_line(buf: &[u8], pos: usize, end: usize) -> Result<ScannedStartLine, ScanError> {
    let line = &buf[pos..end];
    // The method must be a token; anything else is not SIP.
    let m_len = line
        .iter()
        .position(|&b| !is_token_char(b))
        .unwrap_or(line.len());
    if m_len == 0 || m_len == line.len() || line[m_len] != b' ' {
        // `lwsstart` style input still starts with a token and a space; a line that
        // does not is not a request at all.
        return Err(ScanError::BadStartLine);
    }
    let method = Span::new(pos, pos + m_len);
    let rest = &line[m_len + 1..];
    let mut parts = rest.split(|&b| b == b' ');
    let (uri_part, version_part) = match (parts.next(), parts.next(), parts.next()) {
        (Some(u), Some(v), None) if !u.is_empty() && !v.is_empty() => (u, v),
        _ => (&b""[..], &b""[..]),
    };
    if uri_part.is_empty() {
        // Extra or missing spaces, trailing space, whitespace inside the URI.
        let version_guess = rest.rsplit(|&b| b == b' ').next().unwrap_or(b"");
        let uri = Span::new(pos + m_len + 1, pos + m_len + 1);
        let version = Span::new(end - version_guess.len(), end);
        return Ok((
            StartLine::Request {
                method,
                uri,
                version,
            },
            Some(StartLineDefect::Malformed),
        ));
    }
    let uri_start = pos + m_len + 1;
    let uri = Span::new(uri_start, uri_start + uri_part.len());
    let version = Span::new(uri.end as usize + 1, end);
    let defect = if version_part != b"SIP/2.0" {
        if version_part.starts_with(b"SIP/") {
            Some(StartLineDefect::Version)
        } else {
            Some(StartLineDefect::Malformed)
        }
    } else {
        None
    };
    Ok((
        StartLine::Request {
            method,
            uri,
            version,
        },
        defect,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_str(s: &str) -> RawMessage {
        scan(Bytes::copy_from_slice(s.as_bytes())).expect("scan")
    }

    #[test]
    fn folded_values_keep_their_bytes() {
        let m = scan_str("OPTIONS sip:a@b SIP/2.0\r\nX-A:  one\r\n  two \r\nv: x\r\n\r\nbody");
        assert_eq!(m.headers.len(), 2);
        assert_eq!(m.value(&m.headers[0]), b"one\r\n  two");
        assert_eq!(m.headers[1].name, HeaderName::Via);
        assert_eq!(&m.buf[m.body_start as usize..], b"body");
    }

    #[test]
    fn request_line_defects_are_classified() {
        let m = scan_str("INVITE  sip:a@b SIP/2.0\r\n\r\n");
        assert_eq!(m.start_defect, Some(StartLineDefect::Malformed));
        let m = scan_str("INVITE sip:a@b SIP/2.0 \r\n\r\n");
        assert_eq!(m.start_defect, Some(StartLineDefect::Malformed));
        let m = scan_str("INVITE sip:a@b SIP/7.0\r\n\r\n");
        assert_eq!(m.start_defect, Some(StartLineDefect::Version));
    }

    #[test]
    fn bad_status_codes_are_not_scanned() {
        for s in [
            "SIP/2.0 4294967301 Bad\r\n\r\n",
            "SIP/2.0 99 Low\r\n\r\n",
            "SIP/2.0 7000 x\r\n\r\n",
        ] {
            assert!(scan(Bytes::copy_from_slice(s.as_bytes())).is_err(), "{s}");
        }
    }

    #[test]
    fn unterminated_header_section_is_an_error() {
        assert_eq!(
            scan(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nTo: x\r\n")).unwrap_err(),
            ScanError::Unterminated
        );
    }
}
