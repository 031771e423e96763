//! Tokio shells around the proxy core: sockets, connections and timers.

mod tcp;
pub mod udp;

pub use tcp::{spawn_connection, TcpEvent, OUTBOX};
