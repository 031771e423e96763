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
