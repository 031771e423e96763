//! SIP over a byte stream (RFC 3261 §18.3): messages are delimited by the empty
//! line after the headers plus Content-Length bytes of body. CRLF keep-alives
//! (RFC 5626 §3.5.1) are recognised between messages. I/O-free: the connection
//! task pushes bytes in and pulls frames out. The body length is read by
//! the same Content-Length reader the parser uses.

use bytes::{Buf, Bytes, BytesMut};

use super::content_length;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Bytes),
    /// A double-CRLF ping: answer with a single CRLF pong.
    Ping,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("bad Content-Length")]
    BadContentLength,
}

pub struct Framer {
    buf: BytesMut,
    max: usize,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: BytesMut::with_capacity(8192),
            max,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Room to read into directly, avoiding a copy.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next complete frame, `None` when more bytes are needed. An error means
    /// the stream can no longer be framed and the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        // Keep-alives and stray line ends between messages.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf[..]) {
                    // Could be the start of a ping: wait for more, unless it is a
                    // lone pong (RFC 5626 allows CRLF as a pong); treat a lone
                    // CRLF as a pong once anything else follows.
                    return Ok(None);
                }
                self.buf.advance(2);
                continue;
            }
            if self.buf.first() == Some(&b'\n') {
                self.buf.advance(1);
                continue;
            }
            break;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some(hdr_end) = memchr::memmem::find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > self.max {
                return Err(FrameError::TooLarge(self.max));
            }
            return Ok(None);
        };
        let body_len = content_length::in_header_block(&self.buf[..hdr_end + 2])
            .map_err(|_| FrameError::BadContentLength)?
            .unwrap_or(0);
        let total = hdr_end + 4 + body_len;
        if total > self.max {
            return Err(FrameError::TooLarge(self.max));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn split_and_pipelined() {
        let mut all = Vec::new();
        all.extend_from_slice(b"\r\n\r\n");
        all.extend_from_slice(MSG);
        all.extend_from_slice(MSG);
        for cut in 0..all.len() {
            let mut f = Framer::new(65536);
            let mut frames = Vec::new();
            f.push(&all[..cut]);
            while let Some(fr) = f.next_frame().unwrap() {
                frames.push(fr);
            }
            f.push(&all[cut..]);
            while let Some(fr) = f.next_frame().unwrap() {
                frames.push(fr);
            }
            assert_eq!(
                frames,
                vec![
                    Frame::Ping,
                    Frame::Message(Bytes::from_static(MSG)),
                    Frame::Message(Bytes::from_static(MSG))
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn limits() {
        let mut f = Framer::new(64);
        f.push(MSG);
        f.push(&[b'x'; 100]);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge(64)));
        let mut f = Framer::new(1000);
        f.push(b"INVITE x SIP/2.0\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::BadContentLength));
        let mut f = Framer::new(1000);
        f.push(b"INVITE x SIP/2.0\r\nContent-Length: -5\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::BadContentLength));
    }

    /// Defect fixed: the framer refused a Content-Length of ten or more
    /// digits (leading zeros) that the parser accepts, so the same message
    /// was answered over UDP and closed the connection over TCP.
    #[test]
    fn leading_zeros_frame_like_the_parser_reads_them() {
        let mut f = Framer::new(1000);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0000000005\r\n\r\nhelloX");
        assert_eq!(
            f.next_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0000000005\r\n\r\nhello"
            ))))
        );
    }
}
