//! I/O-free SIP message handling: scanning, checking, splicing and locally
//! generated responses.

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
