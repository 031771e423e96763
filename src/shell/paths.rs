//! Which UDP socket a message leaves from when the gateway listens on
//! several (`[server] listen` with more than one `udp://` address).
//!
//! The first UDP listener of an address family is the one the gateway names
//! in its Via and Record-Route, so requests toward carriers and the PBX, and
//! everything sent to a peer that writes to that socket, leave from it. A
//! peer that wrote to another socket (a public one, say) is answered from
//! that socket: RFC 3581 wants a response to come from where its request
//! went, and a stranger flooding the public socket must not learn the
//! address the PBX and the carriers use from the answers it gets.
//!
//! Peers of other sockets are remembered in a fixed table indexed by a
//! seeded hash of the address, so its memory never grows with the number
//! of sources; a peer whose slot another one took is answered from the first
//! socket. Peers of the first socket are never in the table, so what the PBX
//! and the carriers get never depends on it.

use std::hash::BuildHasher;
use std::net::SocketAddr;

/// Peers of the non-first sockets remembered at once (per core).
const SLOTS: usize = 4096;

/// Where messages to each peer leave from; see the module documentation.
pub(crate) struct UdpPaths {
    /// The first socket of each family, by [`family`].
    first: [usize; 2],
    slots: Box<[Option<(SocketAddr, usize)>]>,
    seed: foldhash::fast::RandomState,
}

/// 0 for IPv4, 1 for IPv6.
fn family(addr: SocketAddr) -> usize {
    usize::from(addr.is_ipv6())
}

impl UdpPaths {
    /// Paths over sockets whose families are `v4` (true: IPv4), in listen
    /// order; `None` with fewer than two sockets, where there is no choice.
    pub(crate) fn new(v4: &[bool]) -> Option<UdpPaths> {
        if v4.len() < 2 {
            return None;
        }
        let first_of = |want_v4: bool| v4.iter().position(|&is| is == want_v4).unwrap_or(0);
        Some(UdpPaths {
            first: [first_of(true), first_of(false)],
            slots: vec![None; SLOTS].into_boxed_slice(),
            seed: foldhash::fast::RandomState::default(),
        })
    }

    fn slot(&self, addr: SocketAddr) -> usize {
        (self.seed.hash_one(addr) as usize) & (SLOTS - 1)
    }

    /// `from`'s datagram arrived on socket `socket`.
    pub(crate) fn note(&mut self, from: SocketAddr, socket: usize) {
        let i = self.slot(from);
        if socket != self.first[family(from)] {
            self.slots[i] = Some((from, socket));
        } else if self.slots[i].is_some_and(|(peer, _)| peer == from) {
            self.slots[i] = None;
        }
    }

    /// The socket a message to `to` leaves from.
    pub(crate) fn toward(&self, to: SocketAddr) -> usize {
        match self.slots[self.slot(to)] {
            Some((peer, socket)) if peer == to => socket,
            _ => self.first[family(to)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_socket_needs_no_paths() {
        assert!(UdpPaths::new(&[true]).is_none());
        assert!(UdpPaths::new(&[]).is_none());
    }

    #[test]
    fn everyone_leaves_from_the_first_socket_of_their_family_until_they_write_elsewhere() {
        // IPv6 first, then two IPv4 sockets: the first IPv4 one is index 1.
        let mut p = UdpPaths::new(&[false, true, true]).unwrap();
        let carrier = addr("192.0.2.10:5060");
        let stranger = addr("198.51.100.9:40000");
        assert_eq!(p.toward(carrier), 1);
        assert_eq!(p.toward(addr("[2001:db8::1]:5060")), 0);
        p.note(stranger, 2);
        assert_eq!(
            p.toward(stranger),
            2,
            "answered from the socket it wrote to"
        );
        assert_eq!(
            p.toward(addr("198.51.100.9:40001")),
            1,
            "another port is another peer"
        );
        p.note(carrier, 1);
        assert_eq!(p.toward(carrier), 1);
        p.note(stranger, 1);
        assert_eq!(p.toward(stranger), 1, "the last socket it wrote to counts");
    }

    #[test]
    fn a_full_table_only_ever_falls_back_to_the_first_socket() {
        let mut p = UdpPaths::new(&[true, true]).unwrap();
        for port in 1..=(4 * SLOTS as u16) {
            p.note(SocketAddr::from(([198, 51, 100, 9], port)), 1);
        }
        let answered_from_first = (1..=(4 * SLOTS as u16))
            .filter(|&port| p.toward(SocketAddr::from(([198, 51, 100, 9], port))) == 0)
            .count();
        assert!(answered_from_first >= 3 * SLOTS, "{answered_from_first}");
        assert_eq!(p.slots.len(), SLOTS, "fixed memory");
    }
}
