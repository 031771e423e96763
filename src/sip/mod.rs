//! I/O-free SIP message handling: scanning, splicing and locally generated responses.

mod transport;
pub use transport::Transport;
