//! Header names the gateway has to recognise, compact forms included.

/// Headers the proxy reads or owns. Everything else is `Other` and is forwarded
/// untouched, so this list stays short on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    Route,
    RecordRoute,
    ProxyRequire,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
    Privacy,
    Expires,
    /// RFC 8224 (compact form `y`).
    Identity,
    Other,
}

impl HeaderName {
    /// Classifies a header name case-insensitively, mapping RFC 3261 §7.3.3
    /// compact forms (`v`, `f`, `t`, `i`, `l`) to their long names.
    pub fn classify(name: &[u8]) -> HeaderName {
        if name.is_empty() {
            return HeaderName::Other;
        }
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'l' => HeaderName::ContentLength,
                b'y' => HeaderName::Identity,
                _ => HeaderName::Other,
            };
        }
        // Dispatch on length and first letter: every message pays this for every
        // header, so one comparison at most instead of a table scan.
        let first = name[0].to_ascii_lowercase();
        let candidate: Option<(&[u8], HeaderName)> = match (name.len(), first) {
            (3, b'v') => Some((b"via", HeaderName::Via)),
            (4, b'f') => Some((b"from", HeaderName::From)),
            (2, b't') => Some((b"to", HeaderName::To)),
            (7, b'c') => Some((b"call-id", HeaderName::CallId)),
            (4, b'c') => Some((b"cseq", HeaderName::CSeq)),
            (12, b'm') => Some((b"max-forwards", HeaderName::MaxForwards)),
            (14, b'c') => Some((b"content-length", HeaderName::ContentLength)),
            (5, b'r') => Some((b"route", HeaderName::Route)),
            (12, b'r') => Some((b"record-route", HeaderName::RecordRoute)),
            (13, b'p') => Some((b"proxy-require", HeaderName::ProxyRequire)),
            (19, b'p') => Some((b"p-asserted-identity", HeaderName::PAssertedIdentity)),
            (20, b'p') => Some((b"p-preferred-identity", HeaderName::PPreferredIdentity)),
            (15, b'r') => Some((b"remote-party-id", HeaderName::RemotePartyId)),
            (7, b'p') => Some((b"privacy", HeaderName::Privacy)),
            (7, b'e') => Some((b"expires", HeaderName::Expires)),
            (8, b'i') => Some((b"identity", HeaderName::Identity)),
            _ => None,
        };
        match candidate {
            Some((n, h)) if n.eq_ignore_ascii_case(name) => h,
            _ => HeaderName::Other,
        }
    }
}

/// Compares a header name as written with a configured name, honouring the
/// compact forms on both sides (`i` matches `Call-ID`).
pub fn same_header(written: &[u8], configured: &[u8]) -> bool {
    if written.eq_ignore_ascii_case(configured) {
        return true;
    }
    // Only a compact form (one letter) can equal a differently written name.
    if written.len() != 1 && configured.len() != 1 {
        return false;
    }
    let a = HeaderName::classify(written);
    a != HeaderName::Other && a == HeaderName::classify(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        assert_eq!(HeaderName::classify(b"v"), HeaderName::Via);
        assert_eq!(
            HeaderName::classify(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::classify(b"I"), HeaderName::CallId);
        assert_eq!(HeaderName::classify(b"s"), HeaderName::Other);
        assert!(same_header(b"l", b"Content-Length"));
        assert!(same_header(b"x-queue-id", b"X-Queue-Id"));
        assert!(!same_header(b"x-queue", b"X-Queue-Id"));
    }
}
