//! Tokio shells around the proxy core: sockets, connections and timers.

pub mod mmsg;
pub mod port;
mod sockopt;
pub mod steer;
mod tcp;
pub mod tls;
pub mod udp;

pub use tcp::{spawn_connection, Origin, TcpEvent, TlsDial, OUTBOX};
