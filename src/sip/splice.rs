//! Building an outgoing message from a received one by replacing, removing and
//! inserting byte ranges. Everything not named in an edit is copied as received,
//! which is how the gateway keeps the headers it does not own byte for byte.

use bytes::{Bytes, BytesMut};

use super::scan::Span;

/// An edit list over one source buffer. Edits may be given in any order but must
/// not overlap; insertions at the same position keep the order they were added.
pub struct Splice<'a> {
    src: &'a [u8],
    edits: Vec<Edit>,
    added: usize,
    /// Bytes the edits take out: the output is allocated at its exact size,
    /// since some outputs are kept (a final response lingers 32 s for
    /// retransmissions).
    removed: usize,
}

struct Edit {
    start: u32,
    end: u32,
    seq: u32,
    with: Bytes,
}

impl<'a> Splice<'a> {
    pub fn new(src: &'a [u8]) -> Splice<'a> {
        Splice {
            src,
            edits: Vec::with_capacity(8),
            added: 0,
            removed: 0,
        }
    }

    fn push(&mut self, start: u32, end: u32, with: Bytes) {
        self.added += with.len();
        self.removed += end.saturating_sub(start) as usize;
        let seq = self.edits.len() as u32;
        self.edits.push(Edit {
            start,
            end,
            seq,
            with,
        });
    }

    pub fn replace(&mut self, span: Span, with: impl Into<Bytes>) {
        self.push(span.start, span.end, with.into());
    }

    pub fn remove(&mut self, span: Span) {
        self.push(span.start, span.end, Bytes::new());
    }

    pub fn insert(&mut self, at: usize, with: impl Into<Bytes>) {
        self.push(at as u32, at as u32, with.into());
    }

    /// Writes the source from 0 to `end` with the edits applied; bytes after
    /// `end` (for example a second message in the same datagram) are left out.
    pub fn finish(mut self, end: usize) -> Bytes {
        self.edits.sort_by_key(|e| (e.start, e.end, e.seq));
        let size = (end + self.added).saturating_sub(self.removed);
        let mut out = BytesMut::with_capacity(size);
        let mut pos = 0usize;
        for e in &self.edits {
            let (s, t) = (e.start as usize, e.end as usize);
            debug_assert!(s >= pos, "overlapping edits");
            let s = s.max(pos);
            out.extend_from_slice(&self.src[pos..s]);
            out.extend_from_slice(&e.with);
            pos = t.max(s);
        }
        out.extend_from_slice(&self.src[pos..end]);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_in_position_order() {
        let src = b"0123456789";
        let mut s = Splice::new(src);
        s.replace(Span::new(7, 9), "X");
        s.insert(0, "<");
        s.remove(Span::new(2, 4));
        s.insert(0, "<<");
        assert_eq!(&s.finish(10)[..], b"<<<01456X9");
    }

    #[test]
    fn finish_cuts_trailing_bytes() {
        let mut s = Splice::new(b"abcdefTRAILER");
        s.replace(Span::new(1, 2), "B");
        assert_eq!(&s.finish(6)[..], b"aBcdef");
    }
}
