//! The Via the gateway puts on every request it forwards.

use super::settings::Settings;
use crate::sip::Transport;

/// Our Via sent-by per transport, formatted once (index: `Transport as
/// usize`): the listener's address, or the domain when it listens on every
/// address.
pub(super) struct OwnVia {
    sent_by: [String; 3],
}

impl OwnVia {
    pub(super) fn new(settings: &Settings) -> OwnVia {
        let sent_by =
            [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| match settings.local(t) {
                Some(p) if !p.addr.ip().is_unspecified() => p.addr.to_string(),
                Some(p) => format!("{}:{}", settings.domain, p.addr.port()),
                None => settings.domain.clone(),
            });
        OwnVia { sent_by }
    }

    /// Our Via line for a request sent over `transport`, with `rport` so the
    /// next hop answers to the port we sent from (RFC 3581).
    pub(super) fn line(&self, transport: Transport, branch: &str) -> String {
        let sent_by = &self.sent_by[transport as usize];
        let mut v = String::with_capacity(40 + sent_by.len() + branch.len());
        v.push_str("Via: SIP/2.0/");
        v.push_str(transport.via_token());
        v.push(' ');
        v.push_str(sent_by);
        v.push_str(";branch=");
        v.push_str(branch);
        v.push_str(";rport\r\n");
        v
    }
}
