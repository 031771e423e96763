//! Handing received datagrams to the core, each with its own time, and the
//! kernel receive buffer those datagrams wait in.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::proxy::{Peer, Proxy};
use crate::sip::Transport;

/// Datagrams read per socket per wake-up, at most (rounded up to a whole
/// receive batch), so that timers and TCP are not starved while a UDP
/// socket stays busy.
pub const BATCH: usize = 256;

/// Feeds the datagrams `recv` hands out to `proxy` until it returns `None`,
/// reading `clock` again for each one. `recv`
/// bounds the turn (see [`BATCH`]): it holds the batch of datagrams already
/// taken off the socket, which must all be handled, not stranded.
///
/// One reading for the whole batch goes stale when a message is slow to
/// handle or the batch is long: every transaction started later in the batch
/// would count its timers from before it was handled, find its first
/// retransmission already due, and send its INVITE to the carrier twice in a
/// row (a carrier may take the copy for a new call and drop the dialog).
pub fn feed(
    proxy: &mut Proxy,
    mut clock: impl FnMut() -> Instant,
    mut recv: impl FnMut() -> Option<(SocketAddr, Bytes)>,
) {
    while let Some((from, data)) = recv() {
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
        };
        proxy.handle(clock(), peer, data);
    }
}

/// What Linux reports (`SO_RCVBUF`) per byte granted: it doubles the value
/// set, the other half being its bookkeeping of each datagram.
const REPORTED_PER_GRANTED: usize = if cfg!(target_os = "linux") { 2 } else { 1 };

/// What the kernel gave a UDP socket's receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveBuffer {
    /// Bytes asked for (`[limits] udp_receive_buffer`).
    pub asked: usize,
    /// What the kernel reports (`SO_RCVBUF`); see [`ReceiveBuffer::granted`].
    pub reported: usize,
    /// Whether `SO_RCVBUFFORCE` set it past `net.core.rmem_max`.
    pub forced: bool,
}

impl ReceiveBuffer {
    /// The bytes granted, in the unit they were asked in.
    pub fn granted(&self) -> usize {
        self.reported / REPORTED_PER_GRANTED
    }

    /// Whether the kernel granted less than asked (`net.core.rmem_max`, and
    /// no `CAP_NET_ADMIN` to pass it).
    pub fn capped(&self) -> bool {
        self.granted() < self.asked
    }
}

/// Asks for `asked` bytes of receive buffer on `sock`: `SO_RCVBUF`, which
/// the kernel caps at `net.core.rmem_max`, then, when that capped it,
/// `SO_RCVBUFFORCE`, which a process with `CAP_NET_ADMIN` may use past the
/// cap. Never fails: a socket with the default buffer still works, and the
/// caller logs what was obtained.
pub fn size_receive_buffer(sock: &socket2::Socket, asked: usize) -> ReceiveBuffer {
    let _ = sock.set_recv_buffer_size(asked);
    let reported = |sock: &socket2::Socket| sock.recv_buffer_size().unwrap_or(0);
    let mut forced = false;
    if reported(sock) < asked.saturating_mul(REPORTED_PER_GRANTED) {
        forced = force_receive_buffer(sock, asked).is_ok();
    }
    ReceiveBuffer {
        asked,
        reported: reported(sock),
        forced,
    }
}

/// `SO_RCVBUFFORCE` (Linux; needs `CAP_NET_ADMIN`), which socket2 does not
/// offer.
#[cfg(target_os = "linux")]
fn force_receive_buffer(sock: &socket2::Socket, size: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    super::sockopt::set_socket_option(sock, libc::SO_RCVBUFFORCE, &value)
}

#[cfg(not(target_os = "linux"))]
fn force_receive_buffer(_: &socket2::Socket, _: usize) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};

    fn udp() -> Socket {
        Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap()
    }

    #[test]
    fn a_buffer_under_the_cap_is_granted_as_asked() {
        // 64 KiB: under any net.core.rmem_max a distribution ships.
        let b = size_receive_buffer(&udp(), 64 << 10);
        assert!(!b.capped(), "{b:?}");
        assert!(!b.forced, "{b:?}");
        assert_eq!(b.granted(), 64 << 10, "{b:?}");
    }

    #[test]
    fn a_buffer_past_the_cap_is_forced_or_reported_capped() {
        let asked = 64 << 20;
        let b = size_receive_buffer(&udp(), asked);
        // Forced (CAP_NET_ADMIN) or capped, never silently less than asked.
        assert!(b.forced || b.capped() || b.granted() >= asked, "{b:?}");
        if b.forced {
            assert_eq!(b.granted(), asked, "{b:?}");
        }
    }
}
