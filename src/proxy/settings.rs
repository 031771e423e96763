//! What the proxy core is told by its owner: the gateway's names and
//! addresses, who may call, where calls go and how identities are written.
//! The configuration converts into this (`Config::proxy_settings`); the core
//! never reads the configuration itself.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::carrier_health::HealthSettings;
use super::dialog::SealKey;
use super::signing::StirSigning;
use super::trust::TrustList;
use super::Peer;
use crate::callerid::{DynamicFormat, PaiForm};
use crate::sip::{syntax, Request, Transport};

/// Our Record-Route URI stays under this many bytes (with its angle
/// brackets), so that it fits the header lines of every carrier and SBC.
pub const MAX_ROUTE_URI: usize = 200;

#[derive(Clone)]
pub struct Settings {
    pub domain: String,
    /// Local listeners: used for our Via sent-by and to recognise our own URIs.
    pub listen: Vec<Peer>,
    /// Who may place outbound calls.
    pub trust: TrustList,
    /// Next hops for new calls, tried in order.
    pub carriers: Vec<Peer>,
    /// How carriers are probed and how long a call waits for a first answer.
    pub health: HealthSettings,
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
    /// Present CNAM-shaped names for CNAM-eligible numbers.
    pub cnam_names: bool,
    /// Sign every forwarded new call (STIR/SHAKEN); `None`: no Identity.
    pub stir: Option<StirSigning>,
}

impl Settings {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trust.is_trusted(ip)
    }

    /// Whether `ip` is a configured carrier's: carriers may probe the gateway
    /// with OPTIONS (they take a trunk out of service when those fail).
    pub fn is_carrier_source(&self, ip: IpAddr) -> bool {
        self.carriers.iter().any(|c| c.addr.ip() == ip)
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
        match host_ip(host) {
            Some(ip) => self.listen.iter().any(|p| p.addr.ip() == ip),
            None => false,
        }
    }

    /// Whether the Request-URI names the gateway itself (no user part), as an
    /// OPTIONS probe does.
    pub fn is_addressed_to_gateway(&self, req: &Request) -> bool {
        syntax::parse_sip_uri(req.uri())
            .map(|u| u.user.is_none() && self.is_own_host(u.host))
            .unwrap_or(false)
    }

    /// Our Record-Route for a dialog whose caller reached us over `incoming`
    /// and that leaves toward the carrier over `outgoing`, carrying the route
    /// state `token`. Each side must reach us on its own transport, so when
    /// the two differ we record two routes (RFC 5658): first (top) the one
    /// the carrier uses, with the state, then the one the PBX uses, marked
    /// `cgp` as its pair. A route names its transport unless it is UDP.
    pub fn record_route(&self, incoming: Transport, outgoing: Transport, token: &str) -> String {
        let mut rr = String::with_capacity(64 + token.len());
        rr.push_str("Record-Route: ");
        self.push_route_uri(&mut rr, outgoing);
        rr.push_str(";cg=");
        rr.push_str(token);
        rr.push('>');
        if incoming != outgoing {
            rr.push_str(", ");
            self.push_route_uri(&mut rr, incoming);
            rr.push_str(";cgp>");
        }
        rr.push_str("\r\n");
        rr
    }

    /// The longest route token that keeps each of our Record-Route URIs
    /// (`<sip:...;lr;cg=TOKEN>`) under [`MAX_ROUTE_URI`] bytes, whichever
    /// transport the request leaves on (a large INVITE may move to TCP after
    /// the token is sealed).
    pub fn route_token_budget(&self) -> usize {
        let longest = [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .map(|transport| {
                let mut len = Counted(0);
                self.push_route_uri(&mut len, transport);
                len.0
            })
            .max()
            .unwrap_or(0);
        // ";cg=" and the closing '>' around the token; under, not up to, the cap.
        MAX_ROUTE_URI.saturating_sub(longest + ";cg=".len() + ">".len() + 1)
    }

    /// `<sip:DOMAIN[:PORT][;transport=T];lr` for the listener of `transport`.
    fn push_route_uri(&self, out: &mut impl fmt::Write, transport: Transport) {
        let default = if transport == Transport::Tls {
            5061
        } else {
            5060
        };
        let port = self
            .local(transport)
            .map(|p| p.addr.port())
            .unwrap_or(default);
        // Writing into a String or a counter cannot fail.
        let _ = write!(out, "<sip:{}", self.domain);
        if port != default {
            let _ = write!(out, ":{port}");
        }
        if transport != Transport::Udp {
            let _ = write!(out, ";transport={}", transport.uri_param());
        }
        let _ = out.write_str(";lr");
    }

    /// The transport address a sip: URI with an IP host names. A known
    /// carrier keeps its configured transport; names are never resolved
    /// (the core does no DNS).
    pub fn resolve_uri(&self, uri: &[u8]) -> Option<Peer> {
        let u = syntax::parse_sip_uri(uri)?;
        let addr = SocketAddr::new(host_ip(u.host)?, u.port.unwrap_or(5060));
        if let Some(c) = self.carriers.iter().find(|c| c.addr == addr) {
            return Some(*c);
        }
        let transport = u
            .param(b"transport")
            .and_then(Transport::from_token)
            .unwrap_or(Transport::Udp);
        Some(Peer { transport, addr })
    }
}

/// The IP address of a URI host (IPv6 references in brackets); `None` for
/// a name.
fn host_ip(host: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(host)
        .ok()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Counts what is written instead of keeping it: the length of a route URI
/// without building it (asked for on every new call).
struct Counted(usize);

impl fmt::Write for Counted {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}
