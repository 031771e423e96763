//! Reading the Route set of a request (RFC 3261 §16.4, §16.12): which value
//! is on top, and where the request goes once that one is removed.

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
    /// The first value of the first Route field, if it is a name-addr.
    pub fn top_route(&self) -> Option<RouteEntry<'_>> {
        let c = self.fields();
        let header = c
            .headers()
            .iter()
            .position(|h| h.name == HeaderName::Route)?;
        let h = c.header(header);
        let value = c.bytes(h.value);
        let item = syntax::split_list(value).ok()?.first()?.clone();
        let s = item.start;
        let first = &value[item];
        let uri = syntax::parse_name_addr(first).ok()?.uri;
        let trimmed = syntax::trim_lws(first);
        let start =
            h.value.start as usize + s + (trimmed.as_ptr() as usize - first.as_ptr() as usize);
        Some(RouteEntry {
            value: ListValue {
                header,
                span: Span::new(start, start + trimmed.len()),
            },
            uri,
        })
    }

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

    /// The URI of the first Route value other than `skip` (ours, being
    /// removed): where a loose-routed request goes next. `None` when no other
    /// Route remains, and the Request-URI decides.
    pub fn next_route_uri(&self, skip: ListValue) -> Option<&[u8]> {
        let c = self.fields();
        for (i, h) in c.headers().iter().enumerate() {
            if h.name != HeaderName::Route {
                continue;
            }
            let value = c.bytes(h.value);
            for item in syntax::split_list(value).unwrap_or_default() {
                let start = h.value.start as usize + item.start;
                let end = h.value.start as usize + item.end;
                let own = skip.span.start as usize;
                if i == skip.header && start <= own && own <= end {
                    continue;
                }
                if let Ok(na) = syntax::parse_name_addr(&value[item]) {
                    return Some(na.uri);
                }
            }
        }
        None
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
    fn top_and_next_in_one_field_and_across_fields() {
        let r = request("Route: <sip:gw;lr>,  <sip:next;lr>\r\n");
        let top = r.top_route().unwrap();
        assert_eq!(top.uri, b"sip:gw;lr");
        assert_eq!(r.fields().bytes(top.value.span), b"<sip:gw;lr>");
        assert_eq!(r.next_route_uri(top.value), Some(&b"sip:next;lr"[..]));
        let r = request("Route: <sip:gw;lr>\r\nRoute: <sip:other;lr>\r\n");
        let top = r.top_route().unwrap();
        assert_eq!(r.next_route_uri(top.value), Some(&b"sip:other;lr"[..]));
        let r = request("Route: <sip:gw;lr>\r\n");
        assert_eq!(r.next_route_uri(r.top_route().unwrap().value), None);
        assert!(request("").top_route().is_none());
    }
}
