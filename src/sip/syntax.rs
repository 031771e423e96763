//! Small grammar pieces of RFC 3261 §25 used to read the few header values the
//! proxy must understand: name-addr / addr-spec, generic parameters, Via values and
//! comma-separated header lists. All functions work on raw bytes that may contain
//! folded whitespace (CRLF followed by SP/HT), which counts as linear whitespace.

use super::scan::is_token_char;

pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim_lws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_lws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_lws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Walks a header value yielding the bytes that are outside quoted strings
/// (with their offsets), skipping quoted-pairs inside them. `in_quote` after the
/// walk tells whether a quoted string was left open.
pub(crate) struct Unquoted<'a> {
    v: &'a [u8],
    i: usize,
    pub(crate) in_quote: bool,
}

pub(crate) fn unquoted(v: &[u8]) -> Unquoted<'_> {
    Unquoted {
        v,
        i: 0,
        in_quote: false,
    }
}

impl Iterator for Unquoted<'_> {
    type Item = (usize, u8);

    fn next(&mut self) -> Option<(usize, u8)> {
        while self.i < self.v.len() {
            let (i, b) = (self.i, self.v[self.i]);
            self.i += 1;
            if self.in_quote {
                match b {
                    b'\\' => self.i += 1,
                    b'"' => self.in_quote = false,
                    _ => {}
                }
            } else if b == b'"' {
                self.in_quote = true;
            } else {
                return Some((i, b));
            }
        }
        None
    }
}

/// Splits a header value at top-level commas (outside quotes and `<>`), giving the
/// byte offset range of each element relative to `value`. Used for Via, Route and
/// Record-Route, which may carry several values in one field.
pub fn split_list(value: &[u8]) -> Result<Vec<(usize, usize)>, &'static str> {
    let mut out = Vec::with_capacity(2);
    let mut start = 0;
    let mut in_angle = false;
    let mut walk = unquoted(value);
    for (i, b) in walk.by_ref() {
        match b {
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                out.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    if walk.in_quote || in_angle {
        return Err("unbalanced quote or angle bracket in list");
    }
    out.push((start, value.len()));
    Ok(out)
}

/// A parsed `name-addr` or `addr-spec` with its header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quotes included), if any.
    pub display: Option<&'a [u8]>,
    pub uri: &'a [u8],
    /// Everything after the address: `;tag=x;foo` (leading whitespace trimmed).
    pub params: &'a [u8],
    /// Byte length of the address part (display name and URI, angle brackets
    /// included) within the trimmed value; `params` follow it.
    pub addr_len: usize,
}

impl<'a> NameAddr<'a> {
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_param(self.params, name)
    }
}

/// Parses the value of From, To, Route, Record-Route, PAI style headers.
pub fn parse_name_addr(value: &[u8]) -> Result<NameAddr<'_>, &'static str> {
    let v = trim_lws(value);
    if v.is_empty() {
        return Err("empty address");
    }
    let lt = find_unquoted(v, b'<')?;
    match lt {
        Some(lt) => {
            let display_raw = trim_lws(&v[..lt]);
            let display = if display_raw.is_empty() {
                None
            } else {
                check_display_name(display_raw)?;
                Some(display_raw)
            };
            let gt = memchr::memchr(b'>', &v[lt + 1..])
                .map(|i| i + lt + 1)
                .ok_or("unterminated <")?;
            let uri = &v[lt + 1..gt];
            if uri.is_empty() || uri.iter().any(|&b| is_lws(b)) {
                return Err("whitespace inside <addr-spec>");
            }
            check_uri(uri)?;
            let params = trim_lws(&v[gt + 1..]);
            check_params(params)?;
            Ok(NameAddr {
                display,
                uri,
                params,
                addr_len: gt + 1,
            })
        }
        None => {
            // addr-spec: the URI ends at the first ';' (header params follow) or LWS.
            if v[0] == b'"' {
                return Err("quoted display name without <addr-spec>");
            }
            let end = v
                .iter()
                .position(|&b| b == b';' || is_lws(b))
                .unwrap_or(v.len());
            let uri = &v[..end];
            check_uri(uri)?;
            let params = trim_lws(&v[end..]);
            if !params.is_empty() && params[0] != b';' {
                return Err("text after addr-spec");
            }
            check_params(params)?;
            Ok(NameAddr {
                display: None,
                uri,
                params,
                addr_len: end,
            })
        }
    }
}

/// Finds `needle` outside quoted strings; errors on an unterminated quote.
fn find_unquoted(v: &[u8], needle: u8) -> Result<Option<usize>, &'static str> {
    let mut walk = unquoted(v);
    if let Some((i, _)) = walk.by_ref().find(|&(_, b)| b == needle) {
        return Ok(Some(i));
    }
    if walk.in_quote {
        return Err("unterminated quoted string");
    }
    Ok(None)
}

/// display-name = *(token LWS) / quoted-string
fn check_display_name(d: &[u8]) -> Result<(), &'static str> {
    if d[0] == b'"' {
        let end = quoted_end(d, 0).ok_or("unterminated quoted string")?;
        if !trim_lws(&d[end..]).is_empty() {
            return Err("text after quoted display name");
        }
        return Ok(());
    }
    if d.iter().all(|&b| is_token_char(b) || is_lws(b)) {
        Ok(())
    } else {
        Err("display name is neither token nor quoted string")
    }
}

/// Index just past the closing quote of the quoted-string starting at `start`.
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

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
fn check_uri(uri: &[u8]) -> Result<(), &'static str> {
    uri_scheme(uri)?;
    if uri.iter().any(|&b| is_lws(b) || b < 0x20 || b == 0x7f) {
        return Err("whitespace in URI");
    }
    Ok(())
}

/// `*( SEMI generic-param )` with LWS allowed around separators.
fn check_params(p: &[u8]) -> Result<(), &'static str> {
    for item in params_iter(p) {
        let (name, value) = item?;
        if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
            return Err("bad parameter name");
        }
        if let Some(v) = value {
            if v.is_empty() {
                return Err("empty parameter value");
            }
            if v[0] == b'"' {
                if quoted_end(v, 0) != Some(v.len()) {
                    return Err("bad quoted parameter value");
                }
            } else if !v
                .iter()
                .all(|&b| is_token_char(b) || matches!(b, b':' | b'[' | b']'))
            {
                return Err("bad parameter value");
            }
        }
    }
    Ok(())
}

type Param<'a> = (&'a [u8], Option<&'a [u8]>);

/// Iterates `;a=b;c` as (name, value) pairs, trimming LWS and honouring quotes,
/// without allocating (this runs for every Via, From and To of every message).
pub(crate) struct Params<'a> {
    /// What follows the last `;` seen; `None` once the list is exhausted.
    rest: Option<&'a [u8]>,
    /// The list did not start with `;`.
    bad_start: bool,
}

pub(crate) fn params_iter(p: &[u8]) -> Params<'_> {
    let p = trim_lws(p);
    match p.first() {
        None => Params {
            rest: None,
            bad_start: false,
        },
        Some(b';') => Params {
            rest: Some(&p[1..]),
            bad_start: false,
        },
        Some(_) => Params {
            rest: None,
            bad_start: true,
        },
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<Param<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if std::mem::take(&mut self.bad_start) {
            return Some(Err("parameters must start with ';'"));
        }
        let p = self.rest.take()?;
        let mut walk = unquoted(p);
        let j = match walk.by_ref().find(|&(_, b)| b == b';') {
            Some((j, _)) => j,
            None if walk.in_quote => return Some(Err("unterminated quoted parameter")),
            None => p.len(),
        };
        let item = trim_lws(&p[..j.min(p.len())]);
        if item.is_empty() {
            return Some(Err("empty parameter"));
        }
        if j < p.len() {
            self.rest = Some(&p[j + 1..]);
        }
        Some(Ok(match memchr::memchr(b'=', item) {
            Some(eq) => (trim_lws(&item[..eq]), Some(trim_lws(&item[eq + 1..]))),
            None => (item, None),
        }))
    }
}

/// Value of a parameter (case-insensitive name); `Some(b"")` for a flag parameter.
pub fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for item in params_iter(params) {
        let (n, v) = item.ok()?;
        if n.eq_ignore_ascii_case(name) {
            // A flag parameter yields an empty slice that still points into the
            // input, so callers can turn any result into a span.
            return Some(v.unwrap_or(&n[n.len()..]));
        }
    }
    None
}

/// One parsed Via value (`SIP / 2.0 / UDP host:port;params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaValue<'a> {
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub params: &'a [u8],
}

impl<'a> ViaValue<'a> {
    pub fn branch(&self) -> Option<&'a [u8]> {
        find_param(self.params, b"branch")
    }
}

pub fn parse_via(value: &[u8]) -> Result<ViaValue<'_>, &'static str> {
    let v = trim_lws(value);
    // sent-protocol: name LWS? "/" LWS? version LWS? "/" LWS? transport
    let mut parts = [&b""[..]; 3];
    let mut rest = v;
    for (k, part) in parts.iter_mut().enumerate() {
        rest = trim_lws(rest);
        let end = rest
            .iter()
            .position(|&b| !is_token_char(b))
            .unwrap_or(rest.len());
        if end == 0 {
            return Err("bad Via sent-protocol");
        }
        *part = &rest[..end];
        rest = trim_lws(&rest[end..]);
        if k < 2 {
            rest = rest.strip_prefix(b"/").ok_or("bad Via sent-protocol")?;
        }
    }
    if !parts[0].eq_ignore_ascii_case(b"SIP") || parts[1] != b"2.0" {
        return Err("bad Via protocol");
    }
    // sent-by: host [ ":" port ], then params
    let end = rest
        .iter()
        .position(|&b| b == b';' || is_lws(b))
        .unwrap_or(rest.len());
    let sent_by = &rest[..end];
    let (host, port) = split_host_port(sent_by).ok_or("bad Via sent-by")?;
    let params = trim_lws(&rest[end..]);
    check_params(params)?;
    Ok(ViaValue {
        transport: parts[2],
        host,
        port,
        params,
    })
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
    fn name_addr_forms() {
        let n = parse_name_addr(b"\"J R \\\"\"  <sip:a@b.com>\r\n  ;\r\n  tag = 98").unwrap();
        assert_eq!(n.uri, b"sip:a@b.com");
        assert_eq!(n.param(b"tag"), Some(&b"98"[..]));
        let n = parse_name_addr(b"sip:caller@example.net;tag=1341").unwrap();
        assert_eq!(n.uri, b"sip:caller@example.net");
        assert_eq!(n.param(b"tag"), Some(&b"1341"[..]));
        assert!(parse_name_addr(b"Bell, Alexander <sip:a@b>").is_err());
        assert!(parse_name_addr(b"\"Watson\" < sip:t@b >").is_err());
        assert!(parse_name_addr(b"\"unterminated <sip:a@b>").is_err());
        let n = parse_name_addr(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some(&b"caller"[..]));
    }

    #[test]
    fn via_with_lws() {
        let v = parse_via(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(parse_via(b"SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        let v = parse_via(b"SIP/2.0/TCP [2001:db8::1]:5070;rport").unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(find_param(v.params, b"rport"), Some(&b""[..]));
    }

    #[test]
    fn lists_and_uris() {
        assert_eq!(
            split_list(b"<sip:a,b>, \"x,y\" <sip:c>").unwrap(),
            vec![(0, 9), (10, 24)]
        );
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
