//! A UDP socket the runtime watches for reading only.
//!
//! tokio's `UdpSocket` asks epoll for both directions. For a datagram
//! socket the "writable" half costs on every send and buys nothing: the
//! kernel gives a sent datagram's buffer space back while `sendto` is still
//! running (at once on loopback, at transmit completion on a NIC) and wakes
//! every watcher of the socket to say it is writable again. The gateway's
//! own epoll then has an event nobody waits for, and its next `epoll_wait`
//! returns at once just to report it: one extra system call, and the work
//! of queueing the event, per turn that sent anything.
//!
//! [`UdpPort`] is watched for reading only and sends straight on the
//! socket. A send that finds the send buffer full (`WouldBlock`, which a
//! datagram socket reports only when its buffer space is all in flight)
//! waits for room through a second descriptor of the same socket that is
//! watched for writing until that one datagram is out, then dropped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A bound, non-blocking UDP socket registered with the current tokio
/// runtime for readability only.
#[derive(Debug)]
pub struct UdpPort {
    fd: AsyncFd<UdpSocket>,
}

impl UdpPort {
    /// Takes over a bound socket; must be called inside a tokio runtime,
    /// whose reactor then wakes the port's readers.
    pub fn from_std(sock: UdpSocket) -> io::Result<UdpPort> {
        sock.set_nonblocking(true)?;
        Ok(UdpPort {
            fd: watch(sock, Interest::READABLE)?,
        })
    }

    /// Binds `addr` (the unit tests' sockets).
    #[cfg(test)]
    pub fn bind(addr: SocketAddr) -> io::Result<UdpPort> {
        UdpPort::from_std(UdpSocket::bind(addr)?)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Runs one receive operation `read` if the runtime believes the socket
    /// readable; `WouldBlock` from `read` tells the runtime it is drained,
    /// so the next [`UdpPort::poll_recv_ready`] waits for the kernel.
    pub fn try_read<R>(&self, read: impl FnOnce(&UdpSocket) -> io::Result<R>) -> io::Result<R> {
        self.fd.try_io(Interest::READABLE, read)
    }

    /// Ready once the socket may hold a datagram; registers `cx` to be
    /// woken otherwise.
    pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.fd.poll_read_ready(cx).map_ok(|_ready| ())
    }

    /// Waits until the socket may hold a datagram (the cores wait through
    /// [`UdpPort::poll_recv_ready`] on every socket at once).
    #[cfg(test)]
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_recv_ready(cx)).await
    }

    /// Receives one datagram, waiting for it (the unit tests; the cores read
    /// in batches through [`crate::transport::mmsg`]).
    #[cfg(test)]
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            self.readable().await?;
            match self.try_read(|s| s.recv_from(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return done,
            }
        }
    }

    /// Sends datagrams now, in order, as many as one system call takes
    /// (see [`crate::transport::mmsg::send_batch`]).
    pub fn try_send_batch(&self, msgs: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
        crate::transport::mmsg::send_batch(self.fd.get_ref(), msgs)
    }

    /// Sends one datagram now; `WouldBlock` when the send buffer is full.
    pub fn try_send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(data, to)
    }

    /// Sends one datagram, waiting for room in the send buffer when it is
    /// full.
    pub async fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self.try_send_to(data, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.send_when_room(data, to).await,
            sent => sent,
        }
    }

    /// The slow path of [`UdpPort::send_to`]: a duplicate descriptor of the
    /// socket, watched for writing while this datagram waits (epoll tells
    /// descriptors apart, so the reading registration is untouched).
    async fn send_when_room(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        let twin = watch(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?;
        loop {
            let mut room = twin.writable().await?;
            match room.try_io(|s| s.get_ref().send_to(data, to)) {
                Ok(sent) => return sent,
                Err(_still_full) => continue,
            }
        }
    }
}

/// Registers `sock` with the current runtime's reactor for `interest`.
fn watch(sock: UdpSocket, interest: Interest) -> io::Result<AsyncFd<UdpSocket>> {
    // SAFETY: `sock` owns its descriptor and the `AsyncFd` owns `sock`, so
    // the descriptor stays open and names the same socket until the
    // `AsyncFd` is dropped; nothing here takes `sock` back out of it.
    unsafe { AsyncFd::register_with_interest(sock, interest) }.map_err(|e| e.into_parts().1)
}

impl AsRawFd for UdpPort {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn a_datagram_sent_wakes_a_waiting_reader() {
        let rx = UdpPort::bind(loopback()).unwrap();
        let tx = UdpPort::bind(loopback()).unwrap();
        let to = rx.local_addr().unwrap();
        let reader = async {
            let mut buf = [0u8; 64];
            let (n, from) = rx.recv_from(&mut buf).await.unwrap();
            (buf[..n].to_vec(), from)
        };
        let writer = async {
            tokio::task::yield_now().await;
            tx.send_to(b"OPTIONS", to).await.unwrap()
        };
        let ((got, from), sent) = tokio::join!(reader, writer);
        assert_eq!(sent, 7);
        assert_eq!(got, b"OPTIONS");
        assert_eq!(from, tx.local_addr().unwrap());
    }

    #[tokio::test]
    async fn the_slow_send_path_delivers_and_leaves_reading_alone() {
        let rx = UdpPort::bind(loopback()).unwrap();
        let port = UdpPort::bind(loopback()).unwrap();
        let to = rx.local_addr().unwrap();
        // The path a full send buffer takes, driven directly: loopback frees
        // send buffer space inside `sendto`, so it never fills here.
        for round in 0..3u8 {
            assert_eq!(port.send_when_room(&[round; 5], to).await.unwrap(), 5);
            let mut buf = [0u8; 16];
            let (n, _) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &[round; 5]);
        }
        // The port still reads after its twin registrations came and went.
        let back = port.local_addr().unwrap();
        rx.send_to(b"reply", back).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = port.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"reply");
    }
}
