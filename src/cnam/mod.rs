//! CNAM (the US calling-name database): which numbers can be enrolled, and
//! the name as it will be stored.
//!
//! Only numbers of the 50 US states, Puerto Rico and the US Virgin Islands
//! can be enrolled. They share country code 1 with Canada and the Caribbean,
//! so eligibility needs the number's region from libphonenumber's metadata
//! (by area code), not just its country code.

pub mod export;
mod shape;

use std::fmt;

use phonenumber::country;

use crate::inventory::E164;

pub use shape::{is_shaped, shape, MAX_LEN};

/// Regions whose numbers CNAM providers accept.
pub const ELIGIBLE_REGIONS: &[&str] = &["US", "PR", "VI"];

/// Whether a number can be enrolled, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    Eligible,
    NotEligible(String),
}

impl Eligibility {
    pub fn is_eligible(&self) -> bool {
        matches!(self, Eligibility::Eligible)
    }

    /// Empty when eligible.
    pub fn reason(&self) -> &str {
        match self {
            Eligibility::Eligible => "",
            Eligibility::NotEligible(r) => r,
        }
    }
}

impl fmt::Display for Eligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eligibility::Eligible => f.write_str("eligible"),
            Eligibility::NotEligible(r) => write!(f, "not eligible: {r}"),
        }
    }
}

/// The region libphonenumber assigns `number` to, if any.
pub fn region_of(number: &E164) -> Option<country::Id> {
    phonenumber::parse(None, number.as_str())
        .ok()
        .and_then(|n| n.country().id())
}

/// Eligibility from the number's region. Numbers outside country code 1 are
/// decided without parsing.
pub fn eligibility(number: &E164) -> Eligibility {
    if !number.digits().starts_with('1') {
        let region = region_of(number)
            .map(|r| format!(" ({})", r.as_ref()))
            .unwrap_or_default();
        return Eligibility::NotEligible(format!(
            "{number}{region} is outside the North American Numbering Plan; CNAM covers only US, PR and VI numbers"
        ));
    }
    match region_of(number) {
        Some(r) if ELIGIBLE_REGIONS.contains(&r.as_ref()) => Eligibility::Eligible,
        Some(r) => Eligibility::NotEligible(format!(
            "{number} is a number of region {}; CNAM covers only US, PR and VI numbers",
            r.as_ref()
        )),
        None => Eligibility::NotEligible(format!(
            "{number}: libphonenumber assigns no region to it; CNAM covers only US, PR and VI numbers"
        )),
    }
}
