//! Comma-separated header values (RFC 3261 §7.3.1): Via, Route and
//! Record-Route may carry several values in one field.

use std::ops::Range;

use super::lws::find_outside_quotes;

/// Splits a header value at top-level commas (outside quotes and `<>`), giving the
/// byte offset range of each element relative to `value`. Used for Via, Route and
/// Record-Route, which may carry several values in one field.
///
/// The whole value is checked first (an unbalanced quote or `<` anywhere makes
/// the list unusable), then the elements are found again as they are taken, so
/// that nothing is allocated: this runs for every Via of every message.
pub fn split_list(value: &[u8]) -> Result<ListItems<'_>, &'static str> {
    let mut count = 0;
    let mut at = 0;
    loop {
        count += 1;
        match element_end(value, at)? {
            Some(comma) => at = comma + 1,
            None => break,
        }
    }
    Ok(ListItems {
        value,
        next_start: 0,
        left: count,
    })
}

const UNBALANCED: &str = "unbalanced quote or angle bracket in list";

/// The top-level comma that ends the element starting at `from`, or `None`
/// when it runs to the end of `value`.
fn element_end(value: &[u8], from: usize) -> Result<Option<usize>, &'static str> {
    let mut at = from;
    // Outside `<>`: a comma ends an element, `<` opens an address.
    while let Some(i) = find_outside_quotes(value, at, b',', b'<').map_err(|_| UNBALANCED)? {
        if value[i] == b',' {
            return Ok(Some(i));
        }
        // Inside `<>` commas belong to the URI; quotes still pair up.
        at = find_outside_quotes(value, i + 1, b'>', b'>')
            .map_err(|_| UNBALANCED)?
            .ok_or(UNBALANCED)?
            + 1;
    }
    Ok(None)
}

/// The elements of a list [`split_list`] found well formed, in order.
#[derive(Debug, Clone, Default)]
pub struct ListItems<'a> {
    value: &'a [u8],
    next_start: usize,
    left: usize,
}

impl Iterator for ListItems<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let start = self.next_start;
        // The value was checked whole, so no element can fail now.
        let end = match element_end(self.value, start) {
            Ok(Some(comma)) if self.left > 0 => comma,
            _ => self.value.len(),
        };
        self.next_start = end + 1;
        Some(start..end)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for ListItems<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(value: &[u8]) -> Result<Vec<Range<usize>>, &'static str> {
        split_list(value).map(Iterator::collect)
    }

    #[test]
    fn commas_inside_quotes_and_angles_do_not_split() {
        assert_eq!(
            split(b"<sip:a,b>, \"x,y\" <sip:c>").unwrap(),
            vec![0..9, 10..24]
        );
        assert!(split(b"<sip:a").is_err());
        assert!(split(b"\"a, <sip:b>").is_err());
        assert!(
            split(b"<sip:a;x=\"b>\"").is_err(),
            "the quote hides the only '>'"
        );
        assert_eq!(
            split(b"<sip:a;x=\"b>,\">, sip:c").unwrap(),
            vec![0..15, 16..22],
            "a quoted '>' and ',' inside <> neither close nor split"
        );
        assert_eq!(
            split(b"a>b, c").unwrap(),
            vec![0..3, 4..6],
            "a stray '>' is a byte like any other"
        );
        assert_eq!(split(b"").unwrap(), vec![0..0]);
    }

    /// The byte-at-a-time walk `split_list` replaced, kept as the oracle.
    fn split_list_bytewise(value: &[u8]) -> Result<Vec<Range<usize>>, &'static str> {
        let (mut out, mut start, mut in_angle, mut in_quote) = (Vec::new(), 0, false, false);
        let mut i = 0;
        while i < value.len() {
            let b = value[i];
            i += 1;
            if in_quote {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_quote = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_quote = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    out.push(start..i - 1);
                    start = i;
                }
                _ => {}
            }
        }
        if in_quote || in_angle {
            return Err("unbalanced quote or angle bracket in list");
        }
        out.push(start..value.len());
        Ok(out)
    }

    /// Every value of up to six bytes drawn from the bytes that matter.
    #[test]
    fn agrees_with_the_bytewise_walk_on_every_short_value() {
        const ALPHABET: &[u8] = b"a,<>\"\\";
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let mut v = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    v.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                assert_eq!(
                    split(&v),
                    split_list_bytewise(&v),
                    "{:?}",
                    String::from_utf8_lossy(&v)
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 55_987);
    }
}
