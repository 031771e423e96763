//! Tokio shells around the proxy core: sockets, connections and timers.

pub mod framing;
mod tcp;

pub use tcp::{spawn_connection, TcpEvent, OUTBOX};
