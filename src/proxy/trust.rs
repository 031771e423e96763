//! Who may place outbound calls through the gateway.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks the PBXs call from; every other source is refused before
/// any caller-ID work is done.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustList {
    nets: Vec<IpNet>,
}

impl TrustList {
    pub fn new(nets: Vec<IpNet>) -> TrustList {
        TrustList { nets }
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` may place outbound calls. IPv4-mapped IPv6 sources (as a
    /// dual-stack socket reports IPv4 peers) are matched as IPv4.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}
