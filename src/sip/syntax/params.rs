//! Generic parameters (`*( SEMI generic-param )`, RFC 3261 §25.1) as they
//! follow URIs, name-addrs and Via values.

use super::lws::{find_outside_quotes, quoted_end, trim_lws};
use crate::sip::scan::is_token_char;

/// `*( SEMI generic-param )` with LWS allowed around separators.
pub(super) fn check_params(p: &[u8]) -> Result<(), &'static str> {
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
        let j = match find_outside_quotes(p, 0, b';', b';') {
            Ok(Some(j)) => j,
            Ok(None) => p.len(),
            Err(_) => return Some(Err("unterminated quoted parameter")),
        };
        let item = trim_lws(&p[..j]);
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
