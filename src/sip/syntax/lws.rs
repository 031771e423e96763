//! Linear whitespace and quoted strings (RFC 3261 §25.1): the pieces every
//! other grammar file skips over. Folded lines (CRLF then SP/HT) count as LWS.

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

/// A quoted string was opened and never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenQuote;

/// The first `a` or `b` in `v` at or after `from` that is outside quoted
/// strings (quoted-pairs inside them skipped). Jumps from candidate to
/// candidate with `memchr`: this runs over every Via, From, To and
/// parameter list of every message, and those are long runs of bytes that
/// are none of these. `a` and `b` may be the same byte; neither is `"`.
pub(crate) fn find_outside_quotes(
    v: &[u8],
    from: usize,
    a: u8,
    b: u8,
) -> Result<Option<usize>, OpenQuote> {
    let mut i = from;
    while let Some(k) = memchr::memchr3(a, b, b'"', &v[i..]) {
        let at = i + k;
        if v[at] != b'"' {
            return Ok(Some(at));
        }
        i = quoted_end(v, at).ok_or(OpenQuote)?;
    }
    Ok(None)
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
