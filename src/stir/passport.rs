//! The SHAKEN PASSporT (RFC 8225, RFC 8588) with Rich Call Data (RFC 9795):
//! what is signed, in the JSON form a verifier expects.
//!
//! The JSON is written by hand rather than through a serialiser: both objects
//! are small and fixed in shape, and writing the keys in lexicographic order
//! without whitespace gives the deterministic form RFC 8225 §9 asks for, so a
//! PASSporT can be rebuilt byte for byte from its claims.

use std::fmt::{self, Write};

use crate::inventory::Region;

/// How far the signer vouches for the caller's right to the number
/// (RFC 8588 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Attest {
    /// Full: the signer knows the caller may use the number. Every number the
    /// gateway presents is one the instance has claimed.
    #[default]
    A,
    /// Partial: the caller is known, the number is not vouched for.
    B,
    /// Gateway: the call only passed through.
    C,
}

impl Attest {
    /// Reads `A`, `B` or `C` (case-insensitive, surrounding space ignored).
    pub fn parse(s: &str) -> Option<Attest> {
        match s.trim() {
            "A" | "a" => Some(Attest::A),
            "B" | "b" => Some(Attest::B),
            "C" | "c" => Some(Attest::C),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Attest::A => "A",
            Attest::B => "B",
            Attest::C => "C",
        }
    }
}

impl fmt::Display for Attest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who the call is for: a telephone number when the Request-URI names one,
/// else the URI itself (RFC 8225 §5.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// E.164 digits without `+`.
    Tn(String),
    Uri(String),
    /// A user part that is not already E.164: normalised with the queue's
    /// region when signed, which happens on a signing thread, so the slow
    /// numbering-plan parser never runs on the proxy's thread.
    Dialled {
        user: String,
        region: Region,
        /// The Request-URI, used when `user` is not a number.
        uri: String,
    },
}

impl Destination {
    /// From a Request-URI's text: `dest.tn` for an E.164 user part (checked
    /// without the slow parser), a pending normalisation for other digit
    /// strings, `dest.uri` for anything else.
    pub fn from_request_uri(uri: &str, region: Region) -> Destination {
        let Some(user) = uri_user(uri) else {
            return Destination::Uri(uri.to_string());
        };
        let dial: String = user
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
            .collect();
        if dial.starts_with('+') {
            if let Some(e) = crate::inventory::parse_e164_strict(&dial) {
                return Destination::Tn(e.digits().to_string());
            }
        }
        let numeric = dial.strip_prefix('+').unwrap_or(&dial);
        if numeric.is_empty() || !numeric.bytes().all(|b| b.is_ascii_digit()) {
            return Destination::Uri(uri.to_string());
        }
        Destination::Dialled {
            user: dial,
            region,
            uri: uri.to_string(),
        }
    }

    /// `Tn` or `Uri`: a dialled number normalised (E.164 with its region),
    /// or, when it is no valid number, the URI.
    /// Whether signing must run the numbering-plan parser first (slow, and
    /// behind a global lock): such a job is only ever signed off the core.
    pub fn needs_numbering_plan(&self) -> bool {
        matches!(self, Destination::Dialled { .. })
    }

    pub fn resolved(&self) -> Destination {
        match self {
            Destination::Dialled { user, region, uri } => {
                match crate::inventory::normalize(user, *region) {
                    Some(e) => Destination::Tn(e.digits().to_string()),
                    None => Destination::Uri(uri.clone()),
                }
            }
            other => other.clone(),
        }
    }
}

/// The user part of a `sip:`/`sips:` URI (parameters after `;` dropped) or
/// the number of a `tel:` URI.
fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    let user = if scheme.eq_ignore_ascii_case("tel") {
        rest
    } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        rest.split_once('@')?.0
    } else {
        return None;
    };
    let user = user.split(';').next().unwrap_or("");
    (!user.is_empty()).then_some(user)
}

/// A per-call identifier (RFC 8588 §5, `origid`): a random (version 4) UUID,
/// generated once per call and kept across failover so that the carrier's
/// traceback and the gateway's log name the same call.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrigId([u8; 16]);

impl OrigId {
    /// Stamps the version and variant bits onto 16 random bytes.
    pub fn from_random(mut bytes: [u8; 16]) -> OrigId {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        OrigId(bytes)
    }

    pub fn random() -> OrigId {
        OrigId::from_random(rand::random())
    }
}

impl fmt::Display for OrigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_char('-')?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OrigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrigId({self})")
    }
}

/// Everything a PASSporT asserts about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The presented (or, for an anonymous call, asserted) number's digits
    /// without `+`.
    pub orig_tn: String,
    pub dest: Destination,
    pub origid: OrigId,
    pub attest: Attest,
    /// The display name signed as Rich Call Data (`rcd.nam`); `None` when
    /// RCD is off or the call presents no name.
    pub rcd_name: Option<String>,
}

/// The protected header: `{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":…}`.
pub fn header_json(x5u: &str) -> String {
    let mut out = String::with_capacity(64 + x5u.len());
    out.push_str(r#"{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"#);
    json_string(&mut out, x5u);
    out.push('}');
    out
}

/// The claims object, keys in lexicographic order, no whitespace; `iat` is
/// the signing time (seconds since the Unix epoch), supplied by whoever signs.
pub fn claims_json(c: &Claims, iat: u64) -> String {
    let mut out = String::with_capacity(192);
    out.push_str(r#"{"attest":"#);
    json_string(&mut out, c.attest.as_str());
    out.push_str(r#","dest":{"#);
    match &c.dest.resolved() {
        Destination::Tn(tn) => {
            out.push_str(r#""tn":["#);
            json_string(&mut out, tn);
        }
        Destination::Uri(uri) | Destination::Dialled { uri, .. } => {
            out.push_str(r#""uri":["#);
            json_string(&mut out, uri);
        }
    }
    let _ = write!(out, r#"]}},"iat":{iat},"orig":{{"tn":"#);
    json_string(&mut out, &c.orig_tn);
    out.push_str(r#"},"origid":"#);
    let _ = write!(out, "\"{}\"", c.origid);
    if let Some(name) = &c.rcd_name {
        out.push_str(r#","rcd":{"nam":"#);
        json_string(&mut out, name);
        out.push('}');
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string (RFC 8259 §7): quotes, backslashes and
/// control characters escaped, everything else (UTF-8 included) as is.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            orig_tn: "14155550100".into(),
            dest: Destination::Tn("14155550199".into()),
            origid: OrigId::from_random([0xab; 16]),
            attest: Attest::A,
            rcd_name: Some("Acme \"Support\"".into()),
        }
    }

    #[test]
    fn claims_are_sorted_compact_and_escaped() {
        assert_eq!(
            claims_json(&claims(), 1_764_691_200),
            r#"{"attest":"A","dest":{"tn":["14155550199"]},"iat":1764691200,"orig":{"tn":"14155550100"},"origid":"abababab-abab-4bab-abab-abababababab","rcd":{"nam":"Acme \"Support\""}}"#
        );
    }

    #[test]
    fn uri_destination_and_no_rcd() {
        let c = Claims {
            dest: Destination::Uri("sip:support@example.com".into()),
            rcd_name: None,
            attest: Attest::B,
            ..claims()
        };
        let json = claims_json(&c, 1);
        assert!(json.contains(r#""dest":{"uri":["sip:support@example.com"]}"#));
        assert!(json.contains(r#""attest":"B""#));
        assert!(!json.contains("rcd"));
    }

    #[test]
    fn destination_from_the_request_uri() {
        let us = Region::US;
        let d = |u: &str| Destination::from_request_uri(u, us).resolved();
        let tn = |s: &str| Destination::Tn(s.into());
        assert_eq!(
            d("sip:+14155550199@carrier.example;user=phone"),
            tn("14155550199")
        );
        assert_eq!(d("tel:+1-415-555-0199"), tn("14155550199"));
        assert_eq!(d("sip:4155550199@carrier.example"), tn("14155550199"));
        assert_eq!(
            d("sip:(415)%20555-0199@c"),
            Destination::Uri("sip:(415)%20555-0199@c".into())
        );
        assert_eq!(
            d("sip:support@example.com"),
            Destination::Uri("sip:support@example.com".into())
        );
        assert_eq!(
            d("sip:example.com"),
            Destination::Uri("sip:example.com".into())
        );
        assert_eq!(d("sip:123@pbx"), Destination::Uri("sip:123@pbx".into()));
        let gb = Destination::from_request_uri("sip:020 7183 8750@c", Region::GB);
        assert!(matches!(gb, Destination::Dialled { .. }));
        assert_eq!(gb.resolved(), tn("442071838750"));
    }

    #[test]
    fn header_names_the_certificate() {
        assert_eq!(
            header_json("https://c.example/a.pem"),
            r#"{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://c.example/a.pem"}"#
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\u{1}b\\é");
        assert_eq!(s, r#""a\u0001b\\é""#);
    }

    #[test]
    fn origid_is_a_version_4_uuid() {
        let id = OrigId::from_random([0xff; 16]).to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(OrigId::random(), OrigId::random());
    }

    #[test]
    fn attest_parses_letters_only() {
        assert_eq!(Attest::parse(" b "), Some(Attest::B));
        assert_eq!(Attest::parse("D"), None);
        assert_eq!(Attest::parse(""), None);
    }
}
