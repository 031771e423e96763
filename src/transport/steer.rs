//! One UDP listener as two sockets on the same address and port, the kernel
//! steering each datagram by its source address: the PBX's (`[trust]`) and
//! the carriers' into the first, everyone else's into the second
//! (`[limits] udp_trusted_socket`).
//!
//! A flood and the trusted traffic on one socket share its receive buffer:
//! when the gateway falls behind, the kernel drops whatever arrives next, a
//! carrier's `200` as much as the flood. With the split, a flood fills only
//! the second socket's buffer; the gateway reads the first one in every turn
//! (BENCHMARKS.md, "Flood"). The steering is a classic BPF program attached
//! to the `SO_REUSEPORT` group (`SO_ATTACH_REUSEPORT_CBPF`, Linux 4.5+): it
//! reads the source address from the IP header and returns the index of the
//! socket in the group, which is the order the sockets were bound in.

use std::net::IpAddr;

use ipnet::IpNet;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// linux/bpf_common.h and linux/filter.h.
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const LD_B_ABS: u16 = 0x10 | 0x20; // BPF_LD (0) | BPF_B | BPF_ABS
const ALU_AND_K: u16 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
const ALU_RSH_K: u16 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
const JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA (0)
const RET_K: u16 = 0x06; // BPF_RET | BPF_K (0)
/// Loads relative to the network (IP) header: the program runs with the
/// packet's data at the UDP payload.
const NET: u32 = (-0x10_0000i32) as u32; // SKF_NET_OFF
/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// The socket of the group that gets trusted sources' datagrams.
pub const TRUSTED: u32 = 0;
/// The socket that gets everyone else's.
pub const OTHERS: u32 = 1;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The steering program for sources in `trusted` (PBX networks and carrier
/// addresses, IPv4 and IPv6 alike; the IP version is read from the header,
/// so a dual-stack socket steers its IPv4 peers by the IPv4 list). `None`
/// when it would exceed the kernel's limit.
pub fn program(trusted: &[IpNet]) -> Option<Vec<Insn>> {
    let v4: Vec<Vec<Insn>> = trusted
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(words_match(
                &[n.network().to_bits()],
                &[n.netmask().to_bits()],
                12,
            )),
            IpNet::V6(_) => None,
        })
        .collect();
    let v6: Vec<Vec<Insn>> = trusted
        .iter()
        .filter_map(|n| match n {
            IpNet::V6(n) => {
                let (addr, mask) = (n.network().to_bits(), n.netmask().to_bits());
                let words = |x: u128| [0, 1, 2, 3].map(|i| (x >> (96 - 32 * i)) as u32);
                Some(words_match(&words(addr), &words(mask), 8))
            }
            IpNet::V4(_) => None,
        })
        .collect();
    let v4_len = v4.iter().map(Vec::len).sum::<usize>() + 1;
    let mut p = vec![
        insn(LD_B_ABS, 0, 0, NET),
        insn(ALU_RSH_K, 0, 0, 4),
        // IPv6 takes the jump over the IPv4 block; anything else falls
        // into it.
        insn(JMP_JEQ_K, 0, 1, 6),
        insn(JMP_JA, 0, 0, v4_len as u32),
    ];
    p.extend(v4.into_iter().flatten());
    p.push(insn(RET_K, 0, 0, OTHERS));
    p.extend(v6.into_iter().flatten());
    p.push(insn(RET_K, 0, 0, OTHERS));
    (p.len() <= MAX_INSNS).then_some(p)
}

/// Instructions that return [`TRUSTED`] when the source address's words at
/// `offset` (from the IP header), masked by `mask`, equal `addr`, and fall
/// through to the next entry otherwise.
fn words_match(addr: &[u32], mask: &[u32], offset: u32) -> Vec<Insn> {
    let checked: Vec<usize> = (0..addr.len()).filter(|&i| mask[i] != 0).collect();
    let len = checked.len() * 3 + 1;
    let mut out = Vec::with_capacity(len);
    for (n, &i) in checked.iter().enumerate() {
        out.push(insn(
            LD_W_ABS,
            0,
            0,
            NET.wrapping_add(offset + 4 * i as u32),
        ));
        out.push(insn(ALU_AND_K, 0, 0, mask[i]));
        // On a mismatch, jump past this entry's return.
        let after = len - (3 * n + 3);
        out.push(insn(JMP_JEQ_K, 0, after as u8, addr[i] & mask[i]));
    }
    out.push(insn(RET_K, 0, 0, TRUSTED));
    out
}

/// Runs `program` on a packet whose IP header is `header` (for tests): the
/// socket index it returns.
pub fn run(program: &[Insn], header: &[u8]) -> u32 {
    let load = |k: u32, width: usize| -> u32 {
        let at = k.wrapping_sub(NET) as usize;
        header[at..at + width]
            .iter()
            .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
    };
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = program[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => a = load(i.k, 4),
            LD_B_ABS => a = load(i.k, 1),
            ALU_AND_K => a &= i.k,
            ALU_RSH_K => a >>= i.k,
            JMP_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            JMP_JA => pc += i.k as usize,
            RET_K => return i.k,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

/// The networks whose datagrams go to the trusted socket: the `[trust]` list
/// and each carrier's address.
pub fn trusted_sources(trust: &[IpNet], carriers: impl Iterator<Item = IpAddr>) -> Vec<IpNet> {
    let mut nets = trust.to_vec();
    nets.extend(carriers.map(|ip| IpNet::from(ip.to_canonical())));
    nets
}

/// Attaches `program` to the `SO_REUSEPORT` group of `sock`.
#[cfg(target_os = "linux")]
pub fn attach(sock: &socket2::Socket, program: &[Insn]) -> std::io::Result<()> {
    let mut filter: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: libc::c_ushort::try_from(filter.len())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?,
        filter: filter.as_mut_ptr(),
    };
    // libc's constant is the one of the target architecture (51 on most).
    super::sockopt::set_socket_option(sock, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

#[cfg(not(target_os = "linux"))]
pub fn attach(_: &socket2::Socket, _: &[Insn]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_header(src: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45u8; 20];
        h[12..16].copy_from_slice(&src);
        h
    }

    fn v6_header(src: std::net::Ipv6Addr) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[8..24].copy_from_slice(&src.octets());
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn trusted_networks_and_carriers_go_to_the_first_socket() {
        let trusted = trusted_sources(
            &nets(&["10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"]),
            [
                "198.51.100.20".parse().unwrap(),
                "2001:db8:ffff::1".parse().unwrap(),
            ]
            .into_iter(),
        );
        let p = program(&trusted).unwrap();
        for (src, want) in [
            ([10, 1, 2, 3], TRUSTED),
            ([10, 2, 0, 1], OTHERS),
            ([192, 0, 2, 7], TRUSTED),
            ([192, 0, 2, 8], OTHERS),
            ([198, 51, 100, 20], TRUSTED),
            ([127, 0, 0, 9], OTHERS),
        ] {
            assert_eq!(run(&p, &v4_header(src)), want, "{src:?}");
        }
        for (src, want) in [
            ("2001:db8:1::5", TRUSTED),
            ("2001:db9::5", OTHERS),
            ("::1", OTHERS),
            ("fe80::1", OTHERS),
        ] {
            assert_eq!(run(&p, &v6_header(src.parse().unwrap())), want, "{src}");
        }
    }

    #[test]
    fn an_empty_list_trusts_nobody_and_a_default_route_everybody() {
        let none = program(&[]).unwrap();
        assert_eq!(run(&none, &v4_header([10, 0, 0, 1])), OTHERS);
        assert_eq!(
            run(&none, &v6_header("2001:db8::1".parse().unwrap())),
            OTHERS
        );
        let all = program(&nets(&["0.0.0.0/0", "::/0"])).unwrap();
        assert_eq!(run(&all, &v4_header([203, 0, 113, 9])), TRUSTED);
        assert_eq!(
            run(&all, &v6_header("2001:db8::1".parse().unwrap())),
            TRUSTED
        );
    }

    /// The program on a real `SO_REUSEPORT` pair: every datagram from the
    /// trusted address reaches the first socket, every other the second.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_steers_each_datagram_by_its_source() {
        use socket2::{Domain, Socket, Type};
        use std::net::{SocketAddr, UdpSocket};
        let bind = |addr: SocketAddr| -> UdpSocket {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
            s.set_reuse_port(true).unwrap();
            s.bind(&addr.into()).unwrap();
            s.into()
        };
        let trusted = bind("127.0.0.1:0".parse().unwrap());
        let at = trusted.local_addr().unwrap();
        let others = bind(at);
        let program = program(&nets(&["127.0.0.1/32"])).unwrap();
        attach(&Socket::from(trusted.try_clone().unwrap()), &program).unwrap();
        for _ in 0..8 {
            // A new source port each time: the group's hash would spread them.
            let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let stranger = UdpSocket::bind("127.0.0.9:0").unwrap();
            pbx.send_to(b"pbx", at).unwrap();
            stranger.send_to(b"stranger", at).unwrap();
        }
        let read_all = |s: &UdpSocket| {
            s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(n) = s.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            got
        };
        assert_eq!(read_all(&trusted), vec!["pbx"; 8]);
        assert_eq!(read_all(&others), vec!["stranger"; 8]);
    }

    #[test]
    fn a_list_past_the_kernel_limit_gets_no_program() {
        let many: Vec<IpNet> = (0..2000u32)
            .map(|i| IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))))
            .collect();
        assert!(program(&many).is_none());
        assert!(program(&many[..1000]).is_some());
    }
}
