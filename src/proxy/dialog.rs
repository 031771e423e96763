//! Dialog state carried in the gateway's own Record-Route URI.
//!
//! Every INVITE the gateway forwards is Record-Routed with a parameter that holds
//! what later in-dialog requests need (the presented identity, the PBX's original
//! From address, where the PBX is) sealed with an HMAC over the Call-ID and the
//! caller's From tag. The gateway therefore keeps no per-dialog table: a dialog
//! survives restarts with the same key, memory does not grow with call length, and
//! a request whose Route does not carry a valid seal for its own Call-ID is a fake
//! dialog and is refused (no toll fraud by making up in-dialog requests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Peer;
use crate::sip::Transport;

const VERSION: u8 = 1;
const MAC_LEN: usize = 12;

/// What the gateway remembers about a dialog, inside the Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogState {
    pub number: String,
    pub name: String,
    pub anonymous: bool,
    /// The PBX's From name-addr (without parameters), restored on the way back.
    pub pbx_from: Vec<u8>,
    /// Where the PBX sent the INVITE from: the flow for requests toward it.
    pub pbx: Peer,
}

/// HMAC key for dialog seals. Random per process unless configured, so a
/// restart without a configured key ends the ability to route old dialogs.
///
/// The HMAC state is keyed once and cloned per use (re-keying costs two SHA-256
/// blocks). Branch, tag and loop identifiers only need to be unique and hard to
/// guess, not unforgeable, so they use a keyed SipHash instead of HMAC.
#[derive(Clone)]
pub struct SealKey {
    mac: Hmac<Sha256>,
    /// SipHash state with the key already absorbed.
    ids: std::hash::DefaultHasher,
}

impl SealKey {
    pub fn random() -> SealKey {
        SealKey::from_bytes(rand::random())
    }

    /// A key derived from an operator's secret (SHA-256 of it), so gateways
    /// configured alike open each other's seals.
    pub fn from_secret(secret: &[u8]) -> SealKey {
        use sha2::Digest;
        SealKey::from_bytes(Sha256::digest(secret).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> SealKey {
        use std::hash::Hasher;
        let mut ids = std::hash::DefaultHasher::new();
        ids.write(&bytes);
        SealKey {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("any key length"),
            ids,
        }
    }

    fn mac(&self, call_id: &[u8], ftag: &[u8], payload: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(&(call_id.len() as u32).to_be_bytes());
        m.update(call_id);
        m.update(&(ftag.len() as u32).to_be_bytes());
        m.update(ftag);
        m.update(payload);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Keyed 64-bit identifier of `parts` (length-prefixed, so part
    /// boundaries matter), for branch, tag and loop-detection values.
    pub fn id(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher;
        let mut h = self.ids.clone();
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }

    /// Seals `state` for the dialog named by `call_id` and the caller's tag.
    pub fn seal(&self, call_id: &[u8], ftag: &[u8], state: &DialogState) -> String {
        let mut p =
            Vec::with_capacity(32 + state.number.len() + state.name.len() + state.pbx_from.len());
        p.push(VERSION);
        p.push(state.anonymous as u8);
        p.push(match state.pbx.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
        });
        match state.pbx.addr.ip() {
            IpAddr::V4(ip) => {
                p.push(4);
                p.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                p.push(16);
                p.extend_from_slice(&ip.octets());
            }
        }
        p.extend_from_slice(&state.pbx.addr.port().to_be_bytes());
        for field in [
            state.number.as_bytes(),
            state.name.as_bytes(),
            &state.pbx_from,
        ] {
            p.extend_from_slice(&(field.len() as u16).to_be_bytes());
            p.extend_from_slice(field);
        }
        let mac = self.mac(call_id, ftag, &p);
        p.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(p)
    }

    /// Returns the state if `token` was sealed by this key for this dialog.
    pub fn open(&self, call_id: &[u8], ftag: &[u8], token: &[u8]) -> Option<DialogState> {
        if token.len() > 4096 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < MAC_LEN + 4 {
            return None;
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        let expect = self.mac(call_id, ftag, payload);
        // Constant-time comparison: the MAC is the only secret-dependent value.
        if mac
            .iter()
            .zip(expect.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return None;
        }
        let mut r = Reader(payload);
        if r.u8()? != VERSION {
            return None;
        }
        let anonymous = r.u8()? != 0;
        let transport = match r.u8()? {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => return None,
        };
        let ip = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?)),
            _ => return None,
        };
        let port = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
        let number = String::from_utf8(r.field()?.to_vec()).ok()?;
        let name = String::from_utf8(r.field()?.to_vec()).ok()?;
        let pbx_from = r.field()?.to_vec();
        Some(DialogState {
            number,
            name,
            anonymous,
            pbx_from,
            pbx: Peer {
                transport,
                addr: SocketAddr::new(ip, port),
            },
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn field(&mut self) -> Option<&'a [u8]> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> DialogState {
        DialogState {
            number: "+14155550100".into(),
            name: "Sales \"West\"".into(),
            anonymous: false,
            pbx_from: b"\"Agent\" <sip:7001@pbx>".to_vec(),
            pbx: Peer {
                transport: Transport::Tcp,
                addr: "127.0.0.1:5090".parse().unwrap(),
            },
        }
    }

    #[test]
    fn seal_round_trips_and_binds_to_dialog() {
        let k = SealKey::random();
        let t = k.seal(b"call-1", b"tag-a", &state());
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(k.open(b"call-1", b"tag-a", t.as_bytes()), Some(state()));
        assert_eq!(k.open(b"call-2", b"tag-a", t.as_bytes()), None);
        assert_eq!(k.open(b"call-1", b"tag-b", t.as_bytes()), None);
        assert_eq!(
            SealKey::random().open(b"call-1", b"tag-a", t.as_bytes()),
            None
        );
        let mut forged = t.into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(k.open(b"call-1", b"tag-a", &forged), None);
        assert_eq!(k.open(b"call-1", b"tag-a", b"!!"), None);
    }
}
