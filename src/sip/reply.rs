//! Responses the gateway generates itself (RFC 3261 §8.2.6): 100 Trying, the
//! caller-ID reject, errors for bad requests, 200 for OPTIONS to the gateway.

use std::io::Write;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::header::HeaderName;
use super::message::Request;
use super::scan::{HeaderField, RawMessage};

/// The RFC 3261 §21 reason phrase of a final error status (and the common
/// extensions), for responses configured by code alone.
pub fn standard_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        433 => "Anonymity Disallowed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        c if c < 500 => "Client Error",
        c if c < 600 => "Server Error",
        _ => "Global Failure",
    }
}

/// What to answer with.
pub struct ReplySpec<'a> {
    pub code: u16,
    pub phrase: &'a str,
    /// To tag to add when the request's To has none (never added to 100).
    pub to_tag: Option<&'a str>,
    /// Extra header lines, each terminated by CRLF.
    pub extra: &'a [u8],
}

/// Where the received/rport parameters go (RFC 3261 §18.2.1, RFC 3581 §4).
struct ViaFix {
    /// Offset just past the top Via value; `received` is appended here.
    at: usize,
    received: Option<String>,
    /// Offset just past a bare `rport` flag, where `=port` is written.
    rport_at: Option<usize>,
    port: u16,
}

/// Answers a checked request. The top Via gets `received` when the source
/// address differs from the sent-by host and `rport=` when the client asked.
pub fn reply(req: &Request, src: SocketAddr, spec: &ReplySpec<'_>) -> Bytes {
    let c = req.fields();
    let tv = c.top_via();
    let host = std::str::from_utf8(c.bytes(tv.host)).unwrap_or("");
    let sent_by_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    // Compared as addresses (no formatting unless `received` is needed).
    let received = (sent_by_ip != Some(src.ip())).then(|| src.ip().to_string());
    // Only a bare flag gets the port written in; a valued rport stays.
    let rport_at = tv.rport.filter(|r| r.is_empty()).map(|r| r.start as usize);
    let fix = ViaFix {
        at: tv.value.end as usize,
        received,
        rport_at,
        port: src.port(),
    };
    build(c.raw(), spec, Some(&fix))
}

/// Answers a request that failed checks: header lines are copied as they are,
/// since they may be the very thing that is broken.
pub fn reply_raw(raw: &RawMessage, spec: &ReplySpec<'_>) -> Bytes {
    build(raw, spec, None)
}

impl ViaFix {
    /// Writes the top Via `line` (which starts at `base` in the request)
    /// with `rport=` and `received=` filled in.
    fn write(&self, out: &mut BytesMut, line: &[u8], base: usize) {
        let mut pieces: Vec<(usize, Vec<u8>)> = Vec::new();
        if let Some(r) = self.rport_at {
            pieces.push((r - base, format!("={}", self.port).into_bytes()));
        }
        if let Some(ip) = &self.received {
            pieces.push((self.at - base, format!(";received={ip}").into_bytes()));
        }
        pieces.sort_by_key(|p| p.0);
        let mut pos = 0;
        for (at, text) in pieces {
            out.extend_from_slice(&line[pos..at]);
            out.extend_from_slice(&text);
            pos = at;
        }
        out.extend_from_slice(&line[pos..]);
    }
}

/// The To line, with our tag added when the request's has none (never to a
/// 100, RFC 3261 §8.2.6.2).
fn write_to(out: &mut BytesMut, raw: &RawMessage, h: &HeaderField, spec: &ReplySpec<'_>) {
    let line = &raw.buf[h.line.range()];
    let has_tag = super::syntax::parse_name_addr(raw.value(h))
        .ok()
        .and_then(|n| n.param(b"tag"))
        .is_some();
    match spec.to_tag {
        Some(tag) if !has_tag && spec.code > 100 => {
            let cut = h.value.end as usize - h.line.start as usize;
            out.extend_from_slice(&line[..cut]);
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag.as_bytes());
            out.extend_from_slice(&line[cut..]);
        }
        _ => out.extend_from_slice(line),
    }
}

fn build(raw: &RawMessage, spec: &ReplySpec<'_>, fix: Option<&ViaFix>) -> Bytes {
    let mut out = BytesMut::with_capacity(512 + spec.extra.len());
    let _ = write!(
        Writer(&mut out),
        "SIP/2.0 {} {}\r\n",
        spec.code,
        spec.phrase
    );
    let mut first_via = true;
    let mut seen: Vec<HeaderName> = Vec::with_capacity(4);
    for h in &raw.headers {
        match h.name {
            HeaderName::Via => {
                let line = &raw.buf[h.line.range()];
                match (first_via, fix) {
                    (true, Some(fix)) => fix.write(&mut out, line, h.line.start as usize),
                    _ => out.extend_from_slice(line),
                }
                first_via = false;
            }
            // One of each: a request that repeated them is answered with the first.
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq | HeaderName::To
                if seen.contains(&h.name) => {}
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                seen.push(h.name);
                out.extend_from_slice(&raw.buf[h.line.range()]);
            }
            HeaderName::To => {
                seen.push(h.name);
                write_to(&mut out, raw, h, spec);
            }
            _ => {}
        }
    }
    out.extend_from_slice(spec.extra);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}

/// `fmt::Write` over `BytesMut` without an intermediate `String`.
struct Writer<'a>(&'a mut BytesMut);

impl std::io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Message, Transport};

    #[test]
    fn reply_copies_dialog_headers_and_fixes_via() {
        let msg = "INVITE sip:b@example.com SIP/2.0\r\nv: SIP/2.0/UDP pbx.example.com;rport;branch=z9hG4bKa\r\nVia: SIP/2.0/UDP 10.1.1.1\r\nf: <sip:a@b>;tag=1\r\nTo: <sip:b@example.com>\r\ni: abc\r\nCSeq: 7 INVITE\r\nX-Other: y\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(r)) = parse(Bytes::from(msg), Transport::Udp) else {
            panic!()
        };
        let out = reply(
            &r,
            "127.0.0.1:4000".parse().unwrap(),
            &ReplySpec {
                code: 403,
                phrase: "Forbidden",
                to_tag: Some("t1"),
                extra: b"Reason: x\r\n",
            },
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 403 Forbidden\r\nv: SIP/2.0/UDP pbx.example.com;rport=4000;branch=z9hG4bKa;received=127.0.0.1\r\nVia: SIP/2.0/UDP 10.1.1.1\r\nf: <sip:a@b>;tag=1\r\nTo: <sip:b@example.com>;tag=t1\r\ni: abc\r\nCSeq: 7 INVITE\r\nReason: x\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
