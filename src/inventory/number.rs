//! E.164 numbers, regions, and the two ways a written number becomes one.
//!
//! The `phonenumber` crate is the reference for what "valid for its country"
//! means, but it is slow (a global mutex around a 100-entry regex LRU, and an
//! unanchored search per pattern): about 12 µs per number for one country and
//! milliseconds per number once several countries alternate. Numbers that are
//! already written in E.164 are therefore checked by the `rules` module, which
//! applies the same metadata with anchored, pre-compiled patterns; only the
//! rare cases it cannot decide, and national forms, go through `phonenumber`.

use std::fmt;
use std::str::FromStr;
use std::sync::Once;

use phonenumber::country;
use phonenumber::metadata::DATABASE;

use super::rules::{self, Verdict};

/// Longest per-call or file input handed to `phonenumber`; nothing a person
/// writes as a phone number is longer, and the parser's cost grows with input.
const MAX_INPUT_LEN: usize = 64;

/// Most digits an E.164 number may have (ITU-T E.164 §6.1).
pub const MAX_DIGITS: usize = 15;

/// An ISO 3166 alpha-2 region that `phonenumber` has a numbering plan for.
///
/// Wrapped rather than re-exported so that a region without metadata (which
/// could never normalise anything) cannot be configured by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(country::Id);

impl Region {
    /// United States, the default region of the example configuration.
    pub const US: Region = Region(country::Id::US);
    /// United Kingdom.
    pub const GB: Region = Region(country::Id::GB);

    /// Parses a two-letter region code, case-insensitively, surrounding
    /// whitespace ignored. `None` when the code is unknown or has no
    /// numbering-plan data.
    pub fn parse(s: &str) -> Option<Region> {
        let s = s.trim();
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
            return None;
        }
        let upper = s.to_ascii_uppercase();
        let id = country::Id::from_str(&upper).ok()?;
        DATABASE.by_id(id.as_ref())?;
        Some(Region(id))
    }

    /// The upper-case two-letter code.
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The `phonenumber` identifier, for callers that format numbers.
    pub fn id(self) -> country::Id {
        self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Region {
    type Err = String;

    fn from_str(s: &str) -> Result<Region, String> {
        Region::parse(s)
            .ok_or_else(|| format!("`{s}` is not an ISO 3166 region code with numbering-plan data"))
    }
}

impl<'de> serde::Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Region, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A number in E.164 form (`+` and at most 15 digits).
///
/// Held inline (17 bytes, `Copy`) because one is produced for every call and
/// stored in every queue; an allocation per number would cost more than the
/// lookup it serves. Whether the number is *valid* depends on how it was made:
/// [`parse_e164_strict`] and [`normalize`] validate, [`syntactic_e164`] does not.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct E164 {
    /// `+` followed by the digits; bytes past `len` are zero.
    buf: [u8; MAX_DIGITS + 1],
    len: u8,
}

impl E164 {
    /// Builds from a digit string already checked to be 1..=15 ASCII digits
    /// with a non-zero first digit.
    fn from_checked_digits(digits: &str) -> E164 {
        let mut buf = [0u8; MAX_DIGITS + 1];
        buf[0] = b'+';
        buf[1..=digits.len()].copy_from_slice(digits.as_bytes());
        E164 {
            buf,
            len: (digits.len() + 1) as u8,
        }
    }

    /// The number as written in SIP URIs: `+14155550100`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).expect("E164 holds ASCII digits only")
    }

    /// The digits without the `+`.
    pub fn digits(&self) -> &str {
        &self.as_str()[1..]
    }

    /// The digits as an integer: unique per number because an E.164 digit
    /// string never starts with 0, so no two numbers differ only in leading
    /// zeros. Used as the compact key of the claimed set.
    pub(crate) fn key(&self) -> u64 {
        self.buf[1..self.len as usize]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'))
    }

    /// The number whose [`key`](Self::key) is `key` (a key is only ever made
    /// from an E.164 number, so it has 1..=15 digits and no leading zero).
    pub(crate) fn from_key(key: u64) -> E164 {
        let mut digits = [0u8; MAX_DIGITS];
        let mut n = key;
        let mut len = 0;
        loop {
            digits[MAX_DIGITS - 1 - len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 || len == MAX_DIGITS {
                break;
            }
        }
        let text = std::str::from_utf8(&digits[MAX_DIGITS - len..]).expect("ASCII digits");
        E164::from_checked_digits(text)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.as_str())
    }
}

/// Accepts exactly `+` followed by 1..=15 ASCII digits, the first not 0.
///
/// No numbering-plan check: this is the shape test that lets a caller look a
/// number up in the claimed set (whose members were validated when claimed) without
/// touching `phonenumber`.
pub fn syntactic_e164(s: &str) -> Option<E164> {
    let digits = s.strip_prefix('+')?;
    let ok = !digits.is_empty()
        && digits.len() <= MAX_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then(|| E164::from_checked_digits(digits))
}

/// Accepts a number only if it is already canonical E.164 and valid for its
/// country: `+14155550100` yes; `+1 415 555 0100`, `+440207183 8750` or
/// `+1555` no.
pub fn parse_e164_strict(s: &str) -> Option<E164> {
    let e = syntactic_e164(s)?;
    let valid = match rules::check(e.digits()) {
        Verdict::Valid => true,
        Verdict::Invalid => false,
        Verdict::Undecided => reference_strict(e.as_str()),
    };
    valid.then_some(e)
}

/// Turns a number written in E.164, international (`0044 …`, `+44 …`) or
/// national (`020 7183 8750`, `(415) 555-0100`) form into E.164, reading
/// national and international-prefix forms as dialled from `region`.
/// `None` when the result is not a valid number or carries an extension.
pub fn normalize(s: &str, region: Region) -> Option<E164> {
    let s = s.trim();
    if syntactic_e164(s).is_some() {
        return parse_e164_strict(s);
    }
    if s.is_empty() || s.len() > MAX_INPUT_LEN {
        return None;
    }
    let number = reference_parse(Some(region), s)?;
    if number.extension().is_some() || !phonenumber::is_valid(&number) {
        return None;
    }
    canonical(&number)
}

/// The E.164 text of a parsed number, if it fits E.164's 15 digits.
fn canonical(number: &phonenumber::PhoneNumber) -> Option<E164> {
    let text = format!("+{}{}", number.code().value(), number.national());
    syntactic_e164(&text)
}

/// `phonenumber`'s own verdict on a canonical E.164 string: it must parse,
/// be valid, and print back unchanged (otherwise the parser stripped or
/// rewrote something, so the input was not already E.164).
fn reference_strict(s: &str) -> bool {
    reference_parse(None, s).is_some_and(|n| {
        n.extension().is_none()
            && phonenumber::is_valid(&n)
            && canonical(&n).is_some_and(|e| e.as_str() == s)
    })
}

fn reference_parse(region: Option<Region>, s: &str) -> Option<phonenumber::PhoneNumber> {
    enlarge_regex_cache();
    phonenumber::parse(region.map(Region::id), s).ok()
}

/// `phonenumber` keeps its compiled patterns in a process-wide LRU of 100
/// entries; numbers from a handful of countries already overflow it and every
/// parse then recompiles regexes under its global lock (measured: ~3 ms per
/// number instead of ~20 µs). Its whole metadata needs a few thousand
/// patterns, so the cache is made large enough once, before first use.
pub(super) fn enlarge_regex_cache() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(mut cache) = DATABASE.cache().lock() {
            cache.set_capacity(8192);
        }
    });
}
