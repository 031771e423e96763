//! What the proxy core is told by its owner: the gateway's names and
//! addresses, who may call, where calls go and how identities are written.
//! The configuration converts into this (`Config::proxy_settings`); the core
//! never reads the configuration itself.

use std::net::IpAddr;

use super::dialog::SealKey;
use super::trust::TrustList;
use super::Peer;
use crate::callerid::{DynamicFormat, PaiForm};
use crate::sip::Transport;

#[derive(Clone)]
pub struct Settings {
    pub domain: String,
    /// Local listeners: used for our Via sent-by and to recognise our own URIs.
    pub listen: Vec<Peer>,
    /// Who may place outbound calls (the config's `[trust]`).
    pub trust: TrustList,
    /// Next hops for new calls, tried in order.
    pub carriers: Vec<Peer>,
    pub queue_header: String,
    pub dynamic_header: String,
    pub dynamic_format: DynamicFormat,
    pub pai: PaiForm,
    pub strip: Vec<String>,
    pub reject_code: u16,
    pub reject_phrase: String,
    /// Reject header lines, each with CRLF (Reason, Warning, extras).
    pub reject_headers: String,
    pub key: SealKey,
}

impl Settings {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trust.is_trusted(ip)
    }

    /// The listener used as the source for a transport (first of its kind).
    pub fn local(&self, transport: Transport) -> Option<Peer> {
        self.listen
            .iter()
            .copied()
            .find(|p| p.transport == transport)
    }

    /// Whether a URI host names this gateway.
    pub fn is_own_host(&self, host: &[u8]) -> bool {
        if host.eq_ignore_ascii_case(self.domain.as_bytes()) {
            return true;
        }
        let h = std::str::from_utf8(host)
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        match h.parse::<IpAddr>() {
            Ok(ip) => self.listen.iter().any(|p| p.addr.ip() == ip),
            Err(_) => false,
        }
    }
}
