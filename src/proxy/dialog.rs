//! Dialog state carried in the gateway's own Record-Route URI ("route
//! state").
//!
//! Every INVITE the gateway forwards is Record-Routed with a parameter that holds
//! what later in-dialog requests need (the presented identity, the PBX's original
//! From address, where the PBX is). It is encrypted and authenticated with
//! AES-256-GCM-SIV under a key derived (HKDF-SHA256) from `dialog_secret`, with
//! the Call-ID and the caller's From tag as associated data: the carrier and the
//! far end, who receive the Record-Route, learn nothing from it, and state
//! altered, forged or copied into another dialog does not open. The gateway
//! keeps no per-dialog table: a dialog survives restarts with the same secret
//! and memory does not grow with call length.
//!
//! GCM-SIV resists nonce reuse, so the nonce is not sent: it is derived from
//! the dialog's identifiers with a keyed hash. The same state sealed twice for
//! one dialog gives the same token (which says nothing new); anything else is
//! indistinguishable from random. The token is the ciphertext and its 16-byte
//! tag, in unpadded base64url.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;

use super::Peer;
use crate::sip::Transport;

/// Format of the sealed state; part of the associated data, so a token of
/// another format never opens.
const FORMAT: &[u8] = b"cidgate route state v2";
const TAG_LEN: usize = 16;

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

/// One key generation: the AEAD and the keyed hash that derives nonces.
#[derive(Clone)]
struct Generation {
    aead: Aes256GcmSiv,
    /// SipHash state with a derived key absorbed: nonces, branch, tag and loop
    /// identifiers (these need to be unique and hard to guess, not secret).
    ids: std::hash::DefaultHasher,
}

impl Generation {
    /// Keys derived from `ikm` with HKDF-SHA256, one per purpose, so the
    /// AEAD key never serves as anything else.
    fn derive(ikm: &[u8]) -> Generation {
        use std::hash::Hasher;
        let hk = Hkdf::<Sha256>::new(Some(b"cidgate"), ikm);
        let mut aead_key = [0u8; 32];
        let mut ids_key = [0u8; 16];
        hk.expand(b"route state aes-256-gcm-siv", &mut aead_key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        hk.expand(b"identifiers siphash", &mut ids_key)
            .expect("16 bytes is a valid HKDF-SHA256 length");
        let mut ids = std::hash::DefaultHasher::new();
        ids.write(&ids_key);
        Generation {
            aead: Aes256GcmSiv::new(&aead_key.into()),
            ids,
        }
    }

    fn id(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher;
        let mut h = self.ids.clone();
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }

    fn nonce(&self, aad: &[u8]) -> [u8; 12] {
        let a = self.id(&[b"nonce", aad]).to_be_bytes();
        let b = self.id(&[b"nonce2", aad]).to_be_bytes();
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&a);
        n[8..].copy_from_slice(&b[..4]);
        n
    }
}

/// Keys for route state. Random per process unless configured, so a restart
/// without a configured secret ends the ability to route old dialogs. An
/// optional previous generation opens state sealed before a rotation (never
/// seals), so a secret can change without cutting calls.
#[derive(Clone)]
pub struct SealKey {
    current: Generation,
    previous: Option<Generation>,
}

/// The associated data: format, Call-ID and the caller's tag, length-prefixed.
/// Built on the stack when it fits (every realistic Call-ID does): sealing
/// and opening run for every call and every in-dialog request.
fn with_aad<R>(call_id: &[u8], ftag: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const ON_STACK: usize = 256;
    let len = FORMAT.len() + call_id.len() + ftag.len() + 8;
    let write = |a: &mut [u8]| {
        let mut at = 0;
        for part in [FORMAT, &(call_id.len() as u32).to_be_bytes(), call_id]
            .into_iter()
            .chain([&(ftag.len() as u32).to_be_bytes()[..], ftag])
        {
            a[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    };
    if len <= ON_STACK {
        let mut a = [0u8; ON_STACK];
        write(&mut a[..len]);
        f(&a[..len])
    } else {
        let mut a = vec![0u8; len];
        write(&mut a);
        f(&a)
    }
}

/// The longest token `open` looks at, and the most bytes it decodes to.
const MAX_TOKEN: usize = 1024;
const MAX_SEALED: usize = MAX_TOKEN * 3 / 4;

impl SealKey {
    pub fn random() -> SealKey {
        SealKey::from_bytes(rand::random())
    }

    /// A key derived from an operator's secret, so gateways configured alike
    /// open each other's state.
    pub fn from_secret(secret: &[u8]) -> SealKey {
        SealKey {
            current: Generation::derive(secret),
            previous: None,
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> SealKey {
        SealKey::from_secret(&bytes)
    }

    /// Also opens state sealed under `secret` (the one before a rotation).
    pub fn with_previous(mut self, secret: &[u8]) -> SealKey {
        self.previous = Some(Generation::derive(secret));
        self
    }

    /// Keyed 64-bit identifier of `parts` (length-prefixed, so part
    /// boundaries matter), for branch, tag and loop-detection values.
    pub fn id(&self, parts: &[&[u8]]) -> u64 {
        self.current.id(parts)
    }

    /// Seals `state` for the dialog named by `call_id` and the caller's tag.
    pub fn seal(&self, call_id: &[u8], ftag: &[u8], state: &DialogState) -> String {
        self.seal_plain(call_id, ftag, &encode(state))
    }

    fn seal_plain(&self, call_id: &[u8], ftag: &[u8], plain: &[u8]) -> String {
        let g = &self.current;
        let mut sealed = Vec::with_capacity(plain.len() + TAG_LEN);
        sealed.extend_from_slice(plain);
        let tag = with_aad(call_id, ftag, |aad| {
            g.aead
                .encrypt_in_place_detached(Nonce::from_slice(&g.nonce(aad)), aad, &mut sealed)
                .expect("AES-GCM-SIV seals any message under 64 GiB")
        });
        sealed.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// Seals `state` into a token of at most `budget` characters where that
    /// can be done by giving up what matters least: first the display name of
    /// the PBX's From, then the PBX's From altogether (the PBX then sees the
    /// presented identity in the To of the carrier's requests; dialogs match
    /// by tags, RFC 3261 §12.2.2), then the end of the presented name. The
    /// number, the PBX's address and the anonymity flag are always kept: calls
    /// would break without them.
    pub fn seal_within(
        &self,
        call_id: &[u8],
        ftag: &[u8],
        state: &DialogState,
        budget: usize,
    ) -> String {
        let plain = encode(state);
        if token_len(plain.len()) <= budget {
            return self.seal_plain(call_id, ftag, &plain);
        }
        // Rare (an unusually long From or name): encoded again per step.
        let fits = |s: &DialogState| token_len(encode(s).len()) <= budget;
        let mut smaller = state.clone();
        smaller.pbx_from = addr_only(&state.pbx_from).to_vec();
        if !fits(&smaller) {
            smaller.pbx_from.clear();
        }
        while !fits(&smaller) && !smaller.name.is_empty() {
            smaller.name.pop();
        }
        self.seal(call_id, ftag, &smaller)
    }

    /// Returns the state if `token` was sealed for this dialog by the current
    /// or the previous secret.
    pub fn open(&self, call_id: &[u8], ftag: &[u8], token: &[u8]) -> Option<DialogState> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let mut raw = [0u8; MAX_SEALED];
        let len = URL_SAFE_NO_PAD.decode_slice(token, &mut raw).ok()?;
        if len < TAG_LEN + 8 {
            return None;
        }
        let (sealed, tag) = raw[..len].split_at(len - TAG_LEN);
        let mut plain = [0u8; MAX_SEALED];
        let plain = &mut plain[..sealed.len()];
        with_aad(call_id, ftag, |aad| {
            std::iter::once(&self.current)
                .chain(self.previous.as_ref())
                .find_map(|g| {
                    plain.copy_from_slice(sealed);
                    let nonce = g.nonce(aad);
                    g.aead
                        .decrypt_in_place_detached(
                            Nonce::from_slice(&nonce),
                            aad,
                            plain,
                            tag.into(),
                        )
                        .ok()
                })
        })?;
        decode(plain)
    }
}

// Plain layout (before encryption), chosen to be small:
//   flags: bits 0-1 PBX transport (0 udp, 1 tcp, 2 tls), bit 2 anonymous,
//          bit 3 IPv6, bit 4 number packed as `+` and BCD digits
//   PBX address (4 or 16 bytes), PBX port (2 bytes)
//   number, name, PBX From: each a one-byte length (255: two more bytes
//   follow) and the bytes; a packed number is its digit count and the digits
//   two to a byte.
const ANONYMOUS: u8 = 1 << 2;
const V6: u8 = 1 << 3;
const PACKED: u8 = 1 << 4;

fn encode(state: &DialogState) -> Vec<u8> {
    let mut p =
        Vec::with_capacity(24 + state.number.len() + state.name.len() + state.pbx_from.len());
    let mut flags = match state.pbx.transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    };
    if state.anonymous {
        flags |= ANONYMOUS;
    }
    let digits = state
        .number
        .strip_prefix('+')
        .filter(|d| !d.is_empty() && d.len() < 255 && d.bytes().all(|b| b.is_ascii_digit()));
    if digits.is_some() {
        flags |= PACKED;
    }
    if state.pbx.addr.is_ipv6() {
        flags |= V6;
    }
    p.push(flags);
    match state.pbx.addr.ip() {
        IpAddr::V4(ip) => p.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => p.extend_from_slice(&ip.octets()),
    }
    p.extend_from_slice(&state.pbx.addr.port().to_be_bytes());
    match digits {
        Some(d) => {
            p.push(d.len() as u8);
            for pair in d.as_bytes().chunks(2) {
                let hi = pair[0] - b'0';
                let lo = pair.get(1).map_or(0, |b| b - b'0');
                p.push(hi << 4 | lo);
            }
        }
        None => push_field(&mut p, state.number.as_bytes()),
    }
    push_field(&mut p, state.name.as_bytes());
    push_field(&mut p, &state.pbx_from);
    p
}

/// Characters of the token for a plain state of `plain` bytes: AEAD tag
/// added, base64 without padding.
fn token_len(plain: usize) -> usize {
    (4 * (plain + TAG_LEN)).div_ceil(3)
}

/// The `<uri>` part of a name-addr (its display name dropped); an addr-spec
/// as it is.
fn addr_only(name_addr: &[u8]) -> &[u8] {
    match name_addr.iter().position(|&b| b == b'<') {
        Some(i) => &name_addr[i..],
        None => name_addr,
    }
}

fn push_field(p: &mut Vec<u8>, field: &[u8]) {
    let len = field.len().min(u16::MAX as usize);
    if len < 255 {
        p.push(len as u8);
    } else {
        p.push(255);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    }
    p.extend_from_slice(&field[..len]);
}

fn decode(plain: &[u8]) -> Option<DialogState> {
    let mut r = Reader(plain);
    let flags = r.u8()?;
    let transport = match flags & 3 {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        2 => Transport::Tls,
        _ => return None,
    };
    let ip = if flags & V6 != 0 {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.take(16)?).ok()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.take(4)?).ok()?))
    };
    let port = u16::from_be_bytes(r.take(2)?.try_into().ok()?);
    let number = if flags & PACKED != 0 {
        let n = r.u8()? as usize;
        let packed = r.take(n.div_ceil(2))?;
        let mut s = String::with_capacity(n + 1);
        s.push('+');
        for i in 0..n {
            let b = packed[i / 2];
            let d = if i % 2 == 0 { b >> 4 } else { b & 0xf };
            s.push(char::from(b'0' + d.min(9)));
        }
        s
    } else {
        String::from_utf8(r.field()?.to_vec()).ok()?
    };
    let name = String::from_utf8(r.field()?.to_vec()).ok()?;
    let pbx_from = r.field()?.to_vec();
    Some(DialogState {
        number,
        name,
        anonymous: flags & ANONYMOUS != 0,
        pbx_from,
        pbx: Peer {
            transport,
            addr: SocketAddr::new(ip, port),
        },
    })
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
        let len = match self.u8()? {
            255 => u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize,
            n => n as usize,
        };
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
    fn token_length_is_known_before_sealing() {
        let k = SealKey::random();
        for (name, from_len, number) in [
            ("", 0, "+1"),
            ("Sales", 20, "+14155550100"),
            ("Ünïcödé queue", 254, "anonymous"),
            ("x", 300, "+4930123456"),
        ] {
            let mut s = state();
            s.name = name.into();
            s.pbx_from = vec![b'a'; from_len];
            s.number = number.into();
            let token = k.seal(b"c", b"t", &s);
            assert_eq!(token.len(), token_len(encode(&s).len()), "{s:?}");
        }
    }

    #[test]
    fn seal_within_gives_up_display_name_then_from_then_name_end() {
        let k = SealKey::random();
        let open = |t: &str| k.open(b"c", b"t", t.as_bytes()).unwrap();
        let full = k.seal(b"c", b"t", &state());
        assert_eq!(k.seal_within(b"c", b"t", &state(), full.len()), full);
        let t = k.seal_within(b"c", b"t", &state(), full.len() - 1);
        assert!(t.len() < full.len());
        assert_eq!(open(&t).pbx_from, b"<sip:7001@pbx>");
        let t = k.seal_within(b"c", b"t", &state(), 60);
        let got = open(&t);
        assert!(t.len() <= 60 && got.pbx_from.is_empty(), "{got:?}");
        assert_eq!(got.name, state().name, "the name is kept while it fits");
        let t = k.seal_within(b"c", b"t", &state(), 50);
        let got = open(&t);
        assert!(
            t.len() <= 50 && state().name.starts_with(&got.name),
            "{got:?}"
        );
        assert_eq!((got.number, got.pbx), (state().number, state().pbx));
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

    #[test]
    fn previous_secret_opens_but_never_seals() {
        let old = SealKey::from_secret(b"the secret before the rotation");
        let t_old = old.seal(b"c", b"t", &state());
        let new = SealKey::from_secret(b"the secret after the rotation!")
            .with_previous(b"the secret before the rotation");
        assert_eq!(new.open(b"c", b"t", t_old.as_bytes()), Some(state()));
        let t_new = new.seal(b"c", b"t", &state());
        assert_ne!(t_new, t_old, "sealed under the current secret");
        assert_eq!(old.open(b"c", b"t", t_new.as_bytes()), None);
        let dropped = SealKey::from_secret(b"the secret after the rotation!");
        assert_eq!(dropped.open(b"c", b"t", t_old.as_bytes()), None);
    }

    #[test]
    fn every_shape_round_trips_and_is_smaller_than_the_hmac_format() {
        let k = SealKey::random();
        let mut s = state();
        for (number, addr, transport) in [
            ("+14155550100", "127.0.0.1:5090", Transport::Tls),
            ("+4420718387501", "[2001:db8::7]:5061", Transport::Udp),
            ("anonymous", "10.1.2.3:5060", Transport::Tcp),
            ("+1", "10.1.2.3:5060", Transport::Tcp),
        ] {
            s.number = number.into();
            s.pbx = Peer {
                transport,
                addr: addr.parse().unwrap(),
            };
            s.name = "x".repeat(300);
            let t = k.seal(b"c", b"t", &s);
            assert_eq!(k.open(b"c", b"t", t.as_bytes()), Some(s.clone()));
        }
        // The version-1 layout was 40 bytes plus name and From (HMAC cut to
        // 12 bytes, two-byte lengths, the number as text).
        let s = state();
        let raw = URL_SAFE_NO_PAD.decode(k.seal(b"c", b"t", &s)).unwrap();
        assert!(
            raw.len() < 40 + s.name.len() + s.pbx_from.len(),
            "{}",
            raw.len()
        );
    }
}
