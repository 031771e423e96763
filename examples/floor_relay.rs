//! The floor for CPU per call: a UDP relay that does nothing a proxy could
//! skip. It forwards every datagram from the UAS to the last other sender
//! (the UAC) and everything else to the UAS, with one blocking receive and
//! one send per datagram, no parsing and no allocation. `scripts/compare.sh`
//! runs the same SIPp load through it as through cidgate and Kamailio: what
//! it costs is what moving those datagrams through a user-space hop costs
//! on this machine.
//!
//! usage: floor_relay LISTEN_ADDR UAS_ADDR   (e.g. 127.0.0.1:5064 127.0.0.1:5080)

use std::net::{SocketAddr, UdpSocket};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, uas] = &args[..] else {
        eprintln!("usage: floor_relay LISTEN_ADDR UAS_ADDR");
        std::process::exit(2);
    };
    let uas: SocketAddr = uas.parse().expect("UAS_ADDR is IP:PORT");
    let sock = UdpSocket::bind(listen.as_str())?;
    let mut uac: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let to = if from == uas {
            match uac {
                Some(a) => a,
                None => continue,
            }
        } else {
            uac = Some(from);
            uas
        };
        // UDP: a datagram the kernel will not take is lost, as on the wire.
        let _ = sock.send_to(&buf[..n], to);
    }
}
