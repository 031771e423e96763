//! Content-Length (RFC 3261 §20.14), read one way for every transport: the
//! datagram parser and the stream framer both decide where a body ends from
//! it, so they must agree on what a valid value is.

use super::header::HeaderName;

/// `1*DIGIT` (leading zeros allowed) that fits in 32 bits: larger bodies are
/// far beyond any message the gateway accepts.
pub fn parse_value(v: &[u8]) -> Option<usize> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let nz = v.iter().position(|&b| b != b'0').unwrap_or(v.len());
    let digits = &v[nz..];
    if digits.len() > 10 {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(n).ok().map(|n| n as usize)
}

/// Why a header block has no usable Content-Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentLengthError {
    /// A value that is not a number.
    Malformed,
    /// Several values that disagree.
    Conflicting,
}

/// The Content-Length of a header block not yet scanned (the stream framer's
/// view: everything up to the empty line, start line included); `None` when
/// absent. Repeated fields must agree.
pub fn in_header_block(headers: &[u8]) -> Result<Option<usize>, ContentLengthError> {
    let mut found: Option<usize> = None;
    for line in headers.split(|&b| b == b'\n').skip(1) {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue; // A folded continuation line.
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if HeaderName::classify(line[..colon].trim_ascii()) != HeaderName::ContentLength {
            continue;
        }
        let n = parse_value(line[colon + 1..].trim_ascii()).ok_or(ContentLengthError::Malformed)?;
        if found.is_some_and(|f| f != n) {
            return Err(ContentLengthError::Conflicting);
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_value(b"0"), Some(0));
        assert_eq!(parse_value(b"00000000000000005"), Some(5));
        assert_eq!(parse_value(b"4294967295"), Some(u32::MAX as usize));
        assert_eq!(parse_value(b"4294967296"), None);
        assert_eq!(parse_value(b"-5"), None);
        assert_eq!(parse_value(b""), None);
        assert_eq!(parse_value(b"5 "), None);
    }

    #[test]
    fn header_blocks() {
        let block = |s: &str| in_header_block(s.as_bytes());
        assert_eq!(block("INVITE x SIP/2.0\r\nl: 5\r\n"), Ok(Some(5)));
        assert_eq!(block("INVITE x SIP/2.0\r\nX: 1\r\n"), Ok(None));
        assert_eq!(
            block("INVITE x SIP/2.0\r\nContent-Length: 5\r\ncontent-length: 6\r\n"),
            Err(ContentLengthError::Conflicting)
        );
        assert_eq!(
            block("INVITE x SIP/2.0\r\nContent-Length: x\r\n"),
            Err(ContentLengthError::Malformed)
        );
    }
}
