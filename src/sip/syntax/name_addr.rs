//! `name-addr` / `addr-spec` with header parameters (RFC 3261 §20.10): the
//! values of From, To, Route, Record-Route and P-Asserted-Identity.

use super::lws::{find_outside_quotes, is_lws, quoted_end, trim_lws};
use super::params::{check_params, find_param};
use super::uri::check_uri;
use crate::sip::scan::is_token_char;

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
    find_outside_quotes(v, 0, needle, needle).map_err(|_| "unterminated quoted string")
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
}
