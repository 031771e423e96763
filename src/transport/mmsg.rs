//! Several datagrams per system call: `recvmmsg` to read, `sendmmsg` to
//! send (Linux).
//!
//! At 1 000 calls/s most wake-ups find one datagram waiting. Reading them
//! one `recvfrom` at a time costs a second, empty receive per wake-up just
//! to learn the socket is drained (tokio keeps a socket readable until a
//! read says `WouldBlock`). A batch that comes back short says the same
//! thing for free, so the reader tells tokio the socket is drained without
//! asking the kernel again.
//!
//! Hand-written over `libc` rather than taken from a crate: nix's batch
//! headers hold raw pointers (not `Send`, so not storable in a core that
//! awaits), and quinn-udp turns on path-MTU discovery (DF set), which would
//! stop the IP fragmentation that SIP over UDP relies on for large messages.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::transport::port::UdpPort;

use crate::sip::scan::MAX_MESSAGE;

/// Datagrams per system call, read or sent. Past a handful per wake-up the
/// saving per datagram is small; the receive buffers are `SLOTS` × 64 KiB
/// of address space, touched only as far as datagrams fill them. One where
/// there is no `recvmmsg`: every read is then "full", so the socket is read
/// until it says `WouldBlock` itself.
pub const SLOTS: usize = if cfg!(target_os = "linux") { 16 } else { 1 };

/// Receive buffers for one socket reader and what the last call put there.
pub struct RecvBatch {
    data: Vec<u8>,
    got: Vec<(SocketAddr, usize)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            data: vec![0; SLOTS * MAX_MESSAGE],
            got: Vec::with_capacity(SLOTS),
        }
    }
}

/// What one [`RecvBatch::recv`] call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Datagrams now in the batch, at least one.
    pub count: usize,
    /// The socket had no more queued when the call returned: tokio has been
    /// told so, and the next read waits for the kernel's next wake-up.
    pub drained: bool,
}

impl RecvBatch {
    /// Reads up to [`SLOTS`] datagrams already queued on `sock`, never
    /// waiting; `WouldBlock` when there was none.
    pub fn recv(&mut self, sock: &UdpPort) -> io::Result<Received> {
        self.got.clear();
        let (data, got) = (&mut self.data, &mut self.got);
        let result = sock.try_read(|sock| {
            if receive(sock, data, got)? < SLOTS {
                // Short: the queue was empty when the kernel looked. Saying
                // `WouldBlock` makes tokio wait for the next readiness event,
                // which the kernel raises for any datagram arriving later.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        let drained = match result {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.got.is_empty() => true,
            Err(e) => return Err(e),
        };
        if self.got.is_empty() {
            // A full batch of senders we cannot name (no such family is
            // served): this turn ends; the socket, still readable to tokio,
            // is read again on the next one.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Received {
            count: self.got.len(),
            drained,
        })
    }

    /// The `i`-th datagram of the last call and its sender.
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let (from, len) = self.got[i];
        let start = i * MAX_MESSAGE;
        (from, &self.data[start..start + len])
    }
}

impl RecvBatch {
    /// The datagrams queued on `sock`, handed out one at a time and read in
    /// batches, at most `bound` per turn (rounded up to a whole batch).
    pub fn queued<'a>(&'a mut self, sock: &'a UdpPort, bound: usize) -> Queued<'a> {
        Queued {
            batch: self,
            sock,
            bound,
            read: 0,
            next: 0,
            count: 0,
            drained: false,
        }
    }
}

/// One turn's reading of a socket (see [`RecvBatch::queued`]): every
/// datagram a batch took off the socket is handed out before
/// [`Queued::next_datagram`] says `None`, so none is stranded when the turn ends.
pub struct Queued<'a> {
    batch: &'a mut RecvBatch,
    sock: &'a UdpPort,
    bound: usize,
    read: usize,
    next: usize,
    count: usize,
    drained: bool,
}

impl Queued<'_> {
    /// The next datagram and its sender; `None` when the socket is drained
    /// or the turn's bound is reached.
    pub fn next_datagram(&mut self) -> Option<(SocketAddr, &[u8])> {
        while self.next >= self.count {
            if self.drained || self.read >= self.bound {
                return None;
            }
            self.next = 0;
            match self.batch.recv(self.sock) {
                Ok(got) => {
                    self.count = got.count;
                    self.read += got.count;
                    self.drained = got.drained;
                }
                Err(e) => {
                    // ICMP errors surface here on some systems: the turn
                    // ends, and the socket, still readable, is served on the
                    // next one.
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!(error = %e, "udp receive error");
                    }
                    self.count = 0;
                    self.drained = true;
                }
            }
        }
        self.next += 1;
        Some(self.batch.get(self.next - 1))
    }

    /// Datagrams taken off the socket this turn.
    pub fn read(&self) -> usize {
        self.read
    }

    /// The turn stopped at its bound: more may be queued on the socket.
    pub fn more_waiting(&self) -> bool {
        !self.drained
    }
}

/// One `recvmmsg` into `data` (slots of [`MAX_MESSAGE`] bytes); fills `got`
/// with each datagram's sender and length and returns how many the kernel
/// handed over. `WouldBlock` when none.
#[cfg(target_os = "linux")]
fn receive(
    sock: &std::net::UdpSocket,
    data: &mut [u8],
    got: &mut Vec<(SocketAddr, usize)>,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY (both zeroed calls): plain C structs for which all-zero bytes
    // are a valid value.
    let mut names: [libc::sockaddr_storage; SLOTS] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SLOTS];
    for (k, slot) in data.chunks_exact_mut(MAX_MESSAGE).take(SLOTS).enumerate() {
        aim(
            &mut headers[k],
            &mut iovs[k],
            (slot.as_mut_ptr().cast(), slot.len()),
            (
                std::ptr::from_mut(&mut names[k]).cast(),
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            ),
        );
    }
    // SAFETY: the descriptor belongs to `sock`, open for the call; every
    // header points at its own name and iovec, each iovec at its own slot of
    // `data`, all alive and exclusively borrowed until the call returns, and
    // the kernel writes no more than the lengths given.
    let n = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            headers.as_mut_ptr(),
            SLOTS as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // A slot holds MAX_MESSAGE bytes, more than any UDP datagram carries.
    for (h, name) in headers.iter().zip(&names).take(n) {
        if let Some(from) = socket_addr(name) {
            got.push((from, h.msg_len as usize));
        }
    }
    Ok(n)
}

#[cfg(not(target_os = "linux"))]
fn receive(
    sock: &std::net::UdpSocket,
    data: &mut [u8],
    got: &mut Vec<(SocketAddr, usize)>,
) -> io::Result<usize> {
    let (len, from) = sock.recv_from(&mut data[..MAX_MESSAGE])?;
    got.push((from, len));
    Ok(1)
}

/// Sends `msgs` in order from `sock`, as many as the kernel takes in one
/// `sendmmsg` (at most [`SLOTS`]), never waiting; returns how many it took,
/// at least one. At 1 000 calls/s a turn sends between two and three
/// datagrams on average (a forwarded request or response, a 100 Trying,
/// another call's message): one system call for them instead of one each. The error of the
/// first datagram not taken is reported only when it is the first of
/// `msgs` (`WouldBlock` when the send buffer is full): the caller retries
/// from there.
#[cfg(target_os = "linux")]
pub fn send_batch(sock: &std::net::UdpSocket, msgs: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = msgs.len().min(SLOTS);
    if n == 0 {
        return Ok(0);
    }
    // Slots past `n` hold a name the kernel is never shown.
    let names: [socket2::SockAddr; SLOTS] =
        std::array::from_fn(|k| msgs.get(k).map_or(UNUSED, |(to, _)| *to).into());
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SLOTS];
    // SAFETY: a plain C struct for which all-zero bytes are a valid value.
    let mut headers: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
    for (k, (_, data)) in msgs.iter().take(n).enumerate() {
        // The kernel only reads through these pointers (`sendmmsg`).
        let name = &names[k];
        aim(
            &mut headers[k],
            &mut iovs[k],
            (data.as_ptr().cast_mut().cast(), data.len()),
            (name.as_ptr().cast_mut().cast(), name.len()),
        );
    }
    // SAFETY: the descriptor belongs to `sock`, open for the call; the first
    // `n` headers point at their own name and iovec, each iovec at a
    // datagram of `msgs`, all alive until the call returns; the kernel reads
    // them and writes only each header's `msg_len`.
    let sent = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            headers.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// One datagram per call where there is no `sendmmsg`.
#[cfg(not(target_os = "linux"))]
pub fn send_batch(sock: &std::net::UdpSocket, msgs: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    match msgs.first() {
        Some((to, data)) => sock.send_to(data, *to).map(|_| 1),
        None => Ok(0),
    }
}

/// The address in the unused slots of a send batch (never sent to).
pub const UNUSED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Points one message header at one buffer (`iov`, set to `buf`) and one
/// socket address (`name`): the layout both `recvmmsg` and `sendmmsg` use.
/// Only stores the pointers; the caller keeps what they point at alive
/// until the system call returns.
#[cfg(target_os = "linux")]
fn aim(
    header: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    buf: (*mut libc::c_void, usize),
    name: (*mut libc::c_void, libc::socklen_t),
) {
    *iov = libc::iovec {
        iov_base: buf.0,
        iov_len: buf.1,
    };
    let h = &mut header.msg_hdr;
    h.msg_name = name.0;
    h.msg_namelen = name.1;
    h.msg_iov = std::ptr::from_mut(iov);
    h.msg_iovlen = 1;
}

/// The sender's address as the kernel wrote it.
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let v4: &libc::sockaddr_in = unsafe { &*std::ptr::from_ref(name).cast() };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6: &libc::sockaddr_in6 = unsafe { &*std::ptr::from_ref(name).cast() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UdpPort, UdpPort) {
        let rx = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tx = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        (rx, tx)
    }

    /// Sends `n` numbered datagrams from `tx` to `rx`; returns their texts
    /// in order.
    async fn burst(tx: &UdpPort, rx: &UdpPort, n: usize) -> Vec<String> {
        let texts: Vec<String> = (0..n).map(|i| format!("datagram {i}")).collect();
        for t in &texts {
            tx.send_to(t.as_bytes(), rx.local_addr().unwrap())
                .await
                .unwrap();
        }
        texts
    }

    /// Waits until `sock` is readable, then reads one batch.
    async fn read(batch: &mut RecvBatch, sock: &UdpPort) -> io::Result<Received> {
        sock.readable().await.unwrap();
        batch.recv(sock)
    }

    #[tokio::test]
    async fn a_burst_comes_back_in_full_batches_then_a_short_one_in_order() {
        let (rx, tx) = pair().await;
        let expected = burst(&tx, &rx, SLOTS + 3).await;
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        loop {
            let got = read(&mut batch, &rx).await.unwrap();
            for i in 0..got.count {
                let (from, data) = batch.get(i);
                assert_eq!(from, tx.local_addr().unwrap());
                seen.push(String::from_utf8(data.to_vec()).unwrap());
            }
            if got.drained {
                break;
            }
        }
        assert_eq!(seen, expected);
        // Drained: the next read finds nothing and says so.
        let again = batch.recv(&rx).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::WouldBlock);
    }

    #[tokio::test]
    async fn a_datagram_after_a_short_batch_wakes_the_reader_again() {
        let (rx, tx) = pair().await;
        let mut batch = RecvBatch::default();
        tx.send_to(b"first", rx.local_addr().unwrap())
            .await
            .unwrap();
        let got = read(&mut batch, &rx).await.unwrap();
        assert_eq!((got.count, got.drained), (1, true));
        // tokio was told the socket is drained; a later datagram must still
        // make it readable (a lost wake-up would hang here).
        tx.send_to(b"second", rx.local_addr().unwrap())
            .await
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), read(&mut batch, &rx))
            .await
            .expect("the second datagram wakes the reader")
            .unwrap();
        assert_eq!(got.count, 1);
        assert_eq!(batch.get(0).1, b"second");
    }

    #[tokio::test]
    async fn a_turn_stops_at_its_bound_after_a_whole_batch_and_the_next_goes_on() {
        let (rx, tx) = pair().await;
        let expected = burst(&tx, &rx, 2 * SLOTS + 5).await;
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        rx.readable().await.unwrap();
        // A bound inside the first batch still hands out the whole batch.
        let mut first = batch.queued(&rx, 1);
        while let Some((_, data)) = first.next_datagram() {
            seen.push(String::from_utf8(data.to_vec()).unwrap());
        }
        assert_eq!((first.read(), first.more_waiting()), (SLOTS, true));
        let mut rest = batch.queued(&rx, usize::MAX);
        while let Some((_, data)) = rest.next_datagram() {
            seen.push(String::from_utf8(data.to_vec()).unwrap());
        }
        assert!(!rest.more_waiting());
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn ipv6_senders_are_read_with_their_address() {
        let Ok(rx) = UdpPort::bind("[::1]:0".parse().unwrap()) else {
            return; // no IPv6 loopback on this machine
        };
        let tx = UdpPort::bind("[::1]:0".parse().unwrap()).unwrap();
        tx.send_to(b"v6", rx.local_addr().unwrap()).await.unwrap();
        let mut batch = RecvBatch::default();
        let got = read(&mut batch, &rx).await.unwrap();
        assert_eq!(got.count, 1);
        assert_eq!(batch.get(0), (tx.local_addr().unwrap(), &b"v6"[..]));
    }

    /// Reads every datagram queued on `rx` now and then, until `n` came.
    async fn take(rx: &UdpPort, n: usize) -> Vec<(SocketAddr, String)> {
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < n {
            let got = read(&mut batch, rx).await.unwrap();
            for i in 0..got.count {
                let (from, data) = batch.get(i);
                seen.push((from, String::from_utf8(data.to_vec()).unwrap()));
            }
        }
        seen
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn one_send_batch_reaches_several_receivers_in_order() {
        let (a, tx) = pair().await;
        let b = UdpPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let msgs: Vec<(SocketAddr, Vec<u8>)> = (0..5)
            .map(|i| {
                (
                    if i % 2 == 0 { to_a } else { to_b },
                    format!("m{i}").into_bytes(),
                )
            })
            .collect();
        let refs: Vec<(SocketAddr, &[u8])> = msgs.iter().map(|(to, d)| (*to, &d[..])).collect();
        assert_eq!(
            tx.try_send_batch(&refs).unwrap(),
            5,
            "one call took all five"
        );
        let from = tx.local_addr().unwrap();
        let texts = |v: Vec<(SocketAddr, String)>| -> Vec<String> {
            assert!(
                v.iter().all(|(f, _)| *f == from),
                "every datagram from the sending socket"
            );
            v.into_iter().map(|(_, t)| t).collect()
        };
        assert_eq!(texts(take(&a, 3).await), ["m0", "m2", "m4"]);
        assert_eq!(texts(take(&b, 2).await), ["m1", "m3"]);
        assert_eq!(tx.try_send_batch(&[]).unwrap(), 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_send_batch_takes_at_most_a_batch_and_the_rest_goes_next() {
        let (rx, tx) = pair().await;
        let to = rx.local_addr().unwrap();
        let msgs: Vec<Vec<u8>> = (0..SLOTS + 2)
            .map(|i| format!("d{i}").into_bytes())
            .collect();
        let refs: Vec<(SocketAddr, &[u8])> = msgs.iter().map(|d| (to, &d[..])).collect();
        let first = tx.try_send_batch(&refs).unwrap();
        assert_eq!(first, SLOTS);
        assert_eq!(tx.try_send_batch(&refs[first..]).unwrap(), 2);
        let got: Vec<String> = take(&rx, SLOTS + 2)
            .await
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let expected: Vec<String> = (0..SLOTS + 2).map(|i| format!("d{i}")).collect();
        assert_eq!(got, expected);
    }
}
