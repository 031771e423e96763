//! I/O-free SIP: stream framing, scanning, the grammar, checked messages,
//! the header readers the proxy uses, splicing and locally generated responses.

pub mod content_length;
pub mod framing;
pub mod header;
pub mod message;
pub mod reply;
pub mod scan;
pub mod splice;
pub mod syntax;
mod transport;

pub use header::HeaderName;
pub use message::{parse, Message, Method, ParseFailure, Request, Response};
pub use scan::Span;
pub use transport::Transport;
