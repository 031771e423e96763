//! Via values (RFC 3261 §20.42): sent-protocol, sent-by and parameters.

use super::lws::{is_lws, trim_lws};
use super::params::{check_params, find_param};
use super::uri::split_host_port;
use crate::sip::scan::is_token_char;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
