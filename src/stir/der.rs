//! Just enough DER (X.690) to find the parts of an EC private key: a reader
//! of tag-length-value items over a borrowed slice. It only locates bytes;
//! the crypto library checks the key material itself (scalar range, point on
//! the curve, public and private halves matching).

/// A DER item: its tag byte and contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub body: &'a [u8],
}

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OID: u8 = 0x06;
/// `[0]` and `[1]` EXPLICIT, constructed.
pub(super) const CONTEXT_0: u8 = 0xa0;
pub(super) const CONTEXT_1: u8 = 0xa1;

/// Walks consecutive items of one level.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Reader<'a> {
        Reader { rest: input }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next item, or why the bytes are not DER.
    pub fn next(&mut self) -> Result<Tlv<'a>, &'static str> {
        let (&tag, after_tag) = self.rest.split_first().ok_or("truncated DER")?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not used in keys");
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or("truncated DER")?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 3 || after_len.len() < n {
                return Err("bad DER length");
            }
            let (len_bytes, rest) = after_len.split_at(n);
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return Err("truncated DER");
        }
        let (body, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(Tlv { tag, body })
    }

    /// The next item, which must carry `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], &'static str> {
        let item = self.next()?;
        if item.tag == tag {
            Ok(item.body)
        } else {
            Err(what)
        }
    }

    /// The next item if it carries `tag`; nothing consumed otherwise.
    pub fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, &'static str> {
        if self.rest.first() != Some(&tag) {
            return Ok(None);
        }
        self.next().map(|t| Some(t.body))
    }
}

/// The single item `input` must consist of.
pub(super) fn single<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<&'a [u8], &'static str> {
    let mut r = Reader::new(input);
    let body = r.expect(tag, what)?;
    if !r.is_empty() {
        return Err("trailing bytes after the DER structure");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![OCTET_STRING, 0x81, 200];
        long.extend(std::iter::repeat_n(7, 200));
        let mut r = Reader::new(&long);
        assert_eq!(r.next().unwrap().body.len(), 200);
        assert!(r.is_empty());
        assert_eq!(single(&[INTEGER, 1, 5], INTEGER, "int").unwrap(), &[5]);
    }

    #[test]
    fn refuses_truncation_and_wrong_tags() {
        assert!(Reader::new(&[SEQUENCE, 5, 1]).next().is_err());
        assert!(Reader::new(&[SEQUENCE]).next().is_err());
        assert!(Reader::new(&[SEQUENCE, 0x85, 0, 0, 0, 0, 1])
            .next()
            .is_err());
        assert_eq!(single(&[OID, 0], SEQUENCE, "want seq"), Err("want seq"));
        assert!(single(&[INTEGER, 0, 0], INTEGER, "x").is_err());
    }
}
