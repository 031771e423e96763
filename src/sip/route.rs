//! Reading the Route set of a request (RFC 3261 §16.4, §16.12): every value
//! in order and where it sits, so that the proxy can pop its own and find
//! the next hop.

use super::header::HeaderName;
use super::message::Request;
use super::scan::Span;
use super::syntax;

/// Where one value of a comma-separated header field sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListValue {
    /// Index of the header field holding it.
    pub header: usize,
    /// The value (whitespace trimmed) within the buffer.
    pub span: Span,
}

/// One value of a Route header field, located in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry<'a> {
    pub value: ListValue,
    /// The URI inside the name-addr.
    pub uri: &'a [u8],
}

impl Request {
    /// Every Route value that is a name-addr, in order (across fields).
    pub fn routes(&self) -> Vec<RouteEntry<'_>> {
        let c = self.fields();
        let mut out = Vec::new();
        for (header, h) in c.headers().iter().enumerate() {
            if h.name != HeaderName::Route {
                continue;
            }
            let value = c.bytes(h.value);
            for range in syntax::split_list(value).unwrap_or_default() {
                let s = range.start;
                let item = &value[range];
                let Ok(na) = syntax::parse_name_addr(item) else {
                    continue;
                };
                let trimmed = syntax::trim_lws(item);
                let start = h.value.start as usize
                    + s
                    + (trimmed.as_ptr() as usize - item.as_ptr() as usize);
                out.push(RouteEntry {
                    value: ListValue {
                        header,
                        span: Span::new(start, start + trimmed.len()),
                    },
                    uri: na.uri,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::sip::{parse, Message, Transport};

    fn request(routes: &str) -> crate::sip::Request {
        let text = format!(
            "BYE sip:b@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{routes}From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        match parse(Bytes::from(text), Transport::Udp) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_value_in_order_within_and_across_fields() {
        let r = request("Route: <sip:gw;lr>,  <sip:next;lr>\r\nRoute: <sip:other;lr>\r\n");
        let routes = r.routes();
        let uris: Vec<&[u8]> = routes.iter().map(|e| e.uri).collect();
        assert_eq!(uris, [&b"sip:gw;lr"[..], b"sip:next;lr", b"sip:other;lr"]);
        assert_eq!(r.fields().bytes(routes[0].value.span), b"<sip:gw;lr>");
        assert_eq!(r.fields().bytes(routes[1].value.span), b"<sip:next;lr>");
        assert_eq!(routes[0].value.header, routes[1].value.header);
        assert_ne!(routes[1].value.header, routes[2].value.header);
        assert!(request("").routes().is_empty());
    }
}
