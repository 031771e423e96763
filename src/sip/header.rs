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
    Other,
}

impl HeaderName {
    /// Classifies a header name case-insensitively, mapping RFC 3261 §7.3.3
    /// compact forms (`v`, `f`, `t`, `i`, `l`) to their long names.
    pub fn classify(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'l' => HeaderName::ContentLength,
                _ => HeaderName::Other,
            };
        }
        const TABLE: &[(&[u8], HeaderName)] = &[
            (b"via", HeaderName::Via),
            (b"from", HeaderName::From),
            (b"to", HeaderName::To),
            (b"call-id", HeaderName::CallId),
            (b"cseq", HeaderName::CSeq),
            (b"max-forwards", HeaderName::MaxForwards),
            (b"content-length", HeaderName::ContentLength),
            (b"route", HeaderName::Route),
            (b"record-route", HeaderName::RecordRoute),
            (b"proxy-require", HeaderName::ProxyRequire),
            (b"p-asserted-identity", HeaderName::PAssertedIdentity),
            (b"p-preferred-identity", HeaderName::PPreferredIdentity),
            (b"remote-party-id", HeaderName::RemotePartyId),
            (b"privacy", HeaderName::Privacy),
            (b"expires", HeaderName::Expires),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map(|&(_, h)| h)
            .unwrap_or(HeaderName::Other)
    }
}

/// Compares a header name as written with a configured name, honouring the
/// compact forms on both sides (`i` matches `Call-ID`).
pub fn same_header(written: &[u8], configured: &[u8]) -> bool {
    if written.eq_ignore_ascii_case(configured) {
        return true;
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
