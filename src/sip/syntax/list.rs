//! Comma-separated header values (RFC 3261 §7.3.1): Via, Route and
//! Record-Route may carry several values in one field.

use std::ops::Range;

use super::lws::unquoted;

/// Splits a header value at top-level commas (outside quotes and `<>`), giving the
/// byte offset range of each element relative to `value`. Used for Via, Route and
/// Record-Route, which may carry several values in one field.
pub fn split_list(value: &[u8]) -> Result<Vec<Range<usize>>, &'static str> {
    let mut out = Vec::with_capacity(2);
    let mut start = 0;
    let mut in_angle = false;
    let mut walk = unquoted(value);
    for (i, b) in walk.by_ref() {
        match b {
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                out.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    if walk.in_quote || in_angle {
        return Err("unbalanced quote or angle bracket in list");
    }
    out.push(start..value.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_inside_quotes_and_angles_do_not_split() {
        assert_eq!(
            split_list(b"<sip:a,b>, \"x,y\" <sip:c>").unwrap(),
            vec![0..9, 10..24]
        );
        assert!(split_list(b"<sip:a").is_err());
    }
}
