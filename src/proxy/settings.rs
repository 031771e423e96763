//! What the proxy core needs from the configuration, in ready-to-use form.

use std::net::IpAddr;

use super::dialog::SealKey;
use super::Peer;
use crate::callerid::policy::DynamicFormat;
use crate::config::{Config, PaiForm, TrustConfig};
use crate::sip::Transport;

#[derive(Clone)]
pub struct Settings {
    pub domain: String,
    /// Local listeners: used for our Via sent-by and to recognise our own URIs.
    pub listen: Vec<Peer>,
    /// Who may place outbound calls (the config's `[trust]`).
    pub trust: TrustConfig,
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
    pub fn from_config(cfg: &Config) -> Settings {
        let mut reject_headers = String::new();
        if !cfg.reject.reason.is_empty() {
            reject_headers.push_str(&format!("Reason: {}\r\n", cfg.reject.reason));
        }
        if !cfg.reject.warning.is_empty() {
            reject_headers.push_str(&format!("Warning: {}\r\n", cfg.reject.warning));
        }
        for h in &cfg.reject.headers {
            reject_headers.push_str(h);
            reject_headers.push_str("\r\n");
        }
        Settings {
            domain: cfg.server.domain.clone(),
            listen: cfg
                .server
                .listen
                .iter()
                .map(|l| Peer {
                    transport: l.transport,
                    addr: l.addr,
                })
                .collect(),
            trust: cfg.trust.clone(),
            carriers: cfg
                .carrier
                .iter()
                .map(|c| Peer {
                    transport: c.transport,
                    addr: c.addr,
                })
                .collect(),
            queue_header: cfg.callerid.queue_header.clone(),
            dynamic_header: cfg.callerid.dynamic_header.clone(),
            dynamic_format: cfg.callerid.dynamic_format,
            pai: cfg.callerid.pai,
            strip: cfg.callerid.strip.clone(),
            reject_code: cfg.reject.code,
            reject_phrase: cfg.reject.phrase.clone(),
            reject_headers,
            key: match &cfg.server.dialog_secret {
                Some(secret) => SealKey::from_secret(secret.as_bytes()),
                None => SealKey::random(),
            },
        }
    }

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
