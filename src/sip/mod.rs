//! I/O-free SIP: stream framing, scanning, the grammar, checked messages,
//! the header readers the proxy uses, splicing and locally generated responses.

pub mod caller_id;
pub mod content_length;
pub mod framing;
pub mod header;
pub mod message;
mod proxy_require;
pub mod reply;
mod route;
pub mod scan;
pub mod splice;
pub mod syntax;
mod transport;

pub use header::HeaderName;
pub use message::{
    parse, MaxForwards, Message, MessageFields, Method, ParseFailure, Request, Response,
};
pub use route::{ListValue, RouteEntry};
pub use scan::Span;
pub use transport::Transport;
