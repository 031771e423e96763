//! URIs (RFC 3261 §19.1): the scheme of any URI, and the parts of a sip: or
//! sips: URI the router reads (host, port, parameters).

use super::params::find_param;

/// The scheme of a URI (`scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`).
pub(crate) fn uri_scheme(uri: &[u8]) -> Result<&[u8], &'static str> {
    let colon = memchr::memchr(b':', uri).ok_or("URI without scheme")?;
    let scheme = &uri[..colon];
    let ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if ok {
        Ok(scheme)
    } else {
        Err("bad URI scheme")
    }
}

/// A URI needs a scheme and no whitespace; sip/sips URIs are not read further here.
pub(super) fn check_uri(uri: &[u8]) -> Result<(), &'static str> {
    uri_scheme(uri)?;
    // LWS is SP or a control byte: one branch-free pass the compiler
    // vectorises (every URI of every message goes through here).
    if uri
        .iter()
        .fold(false, |bad, &b| bad | (b <= b' ') | (b == 0x7f))
    {
        return Err("whitespace in URI");
    }
    Ok(())
}

/// Splits `host[:port]`, with IPv6 references in brackets.
pub fn split_host_port(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    let (host, port_part) = if s[0] == b'[' {
        let close = memchr::memchr(b']', s)?;
        (&s[..=close], &s[close + 1..])
    } else {
        match memchr::memchr(b':', s) {
            Some(c) => (&s[..c], &s[c..]),
            None => (s, &b""[..]),
        }
    };
    if host.is_empty()
        || !host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':'))
    {
        return None;
    }
    let port = if port_part.is_empty() {
        None
    } else {
        let digits = port_part.strip_prefix(b":")?;
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let p: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        Some(u16::try_from(p).ok()?)
    };
    Some((host, port))
}

/// The parts of a sip:/sips: URI the router needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub user: Option<&'a [u8]>,
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: &'a [u8],
    /// Whether a `?headers` part is present.
    pub has_headers: bool,
}

impl<'a> SipUri<'a> {
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_param(self.params, name)
    }
}

/// Parses `sip:` / `sips:` URIs; other schemes give `None`.
pub fn parse_sip_uri(uri: &[u8]) -> Option<SipUri<'_>> {
    let rest = if uri.len() > 4 && uri[..4].eq_ignore_ascii_case(b"sip:") {
        &uri[4..]
    } else if uri.len() > 5 && uri[..5].eq_ignore_ascii_case(b"sips:") {
        &uri[5..]
    } else {
        return None;
    };
    // userinfo ends at the last '@' ('@' is not legal unescaped in host, params
    // or headers); a '?' in the user part is legal, one after the host starts
    // the headers component.
    let (user, hostpart) = match memchr::memrchr(b'@', rest) {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (hostpart, has_headers) = match memchr::memchr(b'?', hostpart) {
        Some(q) => (&hostpart[..q], true),
        None => (hostpart, false),
    };
    let end = memchr::memchr(b';', hostpart).unwrap_or(hostpart.len());
    let (host, port) = split_host_port(&hostpart[..end])?;
    Some(SipUri {
        user,
        host,
        port,
        params: &hostpart[end..],
        has_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris() {
        let u = parse_sip_uri(b"sip:user@example.com:5070;lr;transport=tcp").unwrap();
        assert_eq!(u.host, b"example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param(b"transport"), Some(&b"tcp"[..]));
        assert!(
            parse_sip_uri(b"sip:user@example.com?Route=x")
                .unwrap()
                .has_headers
        );
        assert!(parse_sip_uri(b"tel:+1").is_none());
        let u = parse_sip_uri(b"sip:we?ird@example.com").unwrap();
        assert!(!u.has_headers);
        assert_eq!(u.user, Some(&b"we?ird"[..]));
    }
}
