//! Fast validity check for numbers already written in E.164.
//!
//! This answers the question `phonenumber::parse(None, "+…")` followed by
//! `is_valid` answers, from the same metadata, without its per-match costs:
//! `phonenumber` looks every pattern up by its full source text in a
//! mutex-guarded LRU and runs it unanchored, which is ~4 µs per number even
//! when nothing is recompiled. Here each region's patterns are compiled once,
//! anchored at the start (the crate accepts a match only when it starts at
//! offset 0, which is exactly what an anchored match means), and kept
//! lock-free; a US number is checked in well under a microsecond.
//!
//! Whenever the parser might have rewritten the input (a leading zero in the
//! national number, or a national prefix it could strip) the answer is
//! [`Verdict::Undecided`] and the caller asks `phonenumber` itself; the test
//! `fast_rules_agree_with_phonenumber` in tests/inventory.rs holds the two
//! paths to the same verdicts.

use std::collections::HashMap;
use std::sync::OnceLock;

use phonenumber::metadata::{Descriptor, Metadata, DATABASE};

/// What [`check`] concluded about a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Invalid,
    /// The fast path cannot be sure; ask `phonenumber`.
    Undecided,
}

type Matcher = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// One number-type description: the allowed national lengths and the pattern.
struct Pattern {
    lengths: Box<[u16]>,
    matcher: Matcher,
}

impl Pattern {
    fn compile(desc: &Descriptor) -> Option<Pattern> {
        Some(Pattern {
            lengths: desc.possible_length().into(),
            matcher: anchored(desc.national_number().as_str())?,
        })
    }

    /// Mirrors `Descriptor::is_match`: an empty length list means "any".
    fn matches(&self, nsn: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(nsn.len() as u16)))
            && (self.matcher)(nsn)
    }
}

/// The number types a region describes (fixed line, mobile, toll free, …):
/// a number is valid when it matches the region's general pattern and one of
/// these. Every type `phonenumber` classifies, in its order.
pub fn number_types(meta: &Metadata) -> impl Iterator<Item = &Descriptor> {
    let d = meta.descriptors();
    [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.voip(),
        d.personal_number(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
}

/// A region's compiled metadata, as far as validation needs it.
struct RegionRules {
    leading_digits: Option<Matcher>,
    general: Pattern,
    /// Every type `phonenumber` classifies (fixed line, mobile, toll free, …);
    /// a number is valid when it matches the general pattern and any of them.
    types: Vec<Pattern>,
    national_prefix: Option<Box<str>>,
    prefix_for_parsing: Option<Matcher>,
}

impl RegionRules {
    fn compile(meta: &Metadata) -> Option<RegionRules> {
        let d = meta.descriptors();
        Some(RegionRules {
            leading_digits: match meta.leading_digits() {
                Some(re) => Some(anchored(re.as_str())?),
                None => None,
            },
            general: Pattern::compile(d.general())?,
            types: number_types(meta)
                .map(Pattern::compile)
                .collect::<Option<_>>()?,
            national_prefix: meta.national_prefix().map(Box::from),
            prefix_for_parsing: match meta.national_prefix_for_parsing() {
                Some(re) => Some(anchored(re.as_str())?),
                None => None,
            },
        })
    }

    /// `phonenumber`'s "number type is not Unknown".
    fn is_valid_nsn(&self, nsn: &str) -> bool {
        self.general.matches(nsn) && self.types.iter().any(|t| t.matches(nsn))
    }

    /// Whether `phonenumber::parse` might strip a national or carrier prefix
    /// from this national number, in which case the input was not canonical
    /// and only the reference parser can tell what it meant.
    fn parser_may_rewrite(&self, nsn: &str) -> bool {
        self.national_prefix
            .as_deref()
            .is_some_and(|p| nsn.starts_with(p))
            || self.prefix_for_parsing.as_ref().is_some_and(|m| m(nsn))
    }
}

/// A region of a country code, compiled on first use: most deployments touch
/// a few countries, and compiling all of them costs seconds in a debug build.
struct Slot {
    meta: Option<&'static Metadata>,
    rules: OnceLock<Option<RegionRules>>,
}

impl Slot {
    fn rules(&self) -> Option<&RegionRules> {
        self.rules
            .get_or_init(|| RegionRules::compile(self.meta?))
            .as_ref()
    }
}

/// Country code → its regions, in the order `phonenumber` tries them.
fn plan() -> &'static HashMap<u16, Vec<Slot>> {
    static PLAN: OnceLock<HashMap<u16, Vec<Slot>>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let db: &'static phonenumber::metadata::Database = &DATABASE;
        // Country codes are enumerated rather than read from `db.iter()`,
        // which walks metadata by region id and so yields only one of the
        // non-geographic entities that all share the id "001".
        let mut plan = HashMap::new();
        for code in 1..=999u16 {
            let Some(ids) = db.region(&code) else {
                continue;
            };
            let slots = ids
                .iter()
                .map(|id| Slot {
                    // Non-geographic entities ("001") are found by code.
                    meta: if *id == "001" {
                        db.by_code(&code).and_then(|m| m.into_iter().next())
                    } else {
                        db.by_id(*id)
                    },
                    rules: OnceLock::new(),
                })
                .collect();
            plan.insert(code, slots);
        }
        plan
    })
}

/// Compiles every region's rules now instead of on first use, so that no
/// later [`check`] compiles anything (see the `warm` module).
pub(crate) fn compile_all() {
    for slot in plan().values().flatten() {
        slot.rules();
    }
}

/// Regions whose rules are compiled so far (for the warm-up's tests).
pub(crate) fn compiled_regions() -> usize {
    plan()
        .values()
        .flatten()
        .filter(|slot| slot.rules.get().is_some())
        .count()
}

/// Compiles `source` anchored at the start, with the options `phonenumber`
/// uses (verbose mode), for ASCII input. The crate exposes no way to build a regex other than
/// through its own cache, so the pattern is built there, cloned out (a cheap
/// handle) and removed again so the crate's working set is not disturbed.
/// The newline ends a `#` comment should a pattern ever contain one.
fn anchored(source: &str) -> Option<Matcher> {
    let pattern = format!("^(?:{source}\n)");
    let cache = DATABASE.cache();
    let mut cache = cache.lock().ok()?;
    // ASCII classes first (the input is ASCII digits; see
    // `warm::compile_ascii`), Unicode should a pattern need it.
    let regex = match cache.configure(&pattern, |b| b.ignore_whitespace(true).unicode(false)) {
        Ok(regex) => regex.clone(),
        Err(_) => cache
            .configure(&pattern, |b| b.ignore_whitespace(true))
            .ok()?
            .clone(),
    };
    cache.remove(pattern.as_str());
    Some(Box::new(move |s: &str| regex.is_match(s)))
}

/// Judges the digits of a `+`-number (1..=15 ASCII digits, first not 0).
pub(crate) fn check(digits: &str) -> Verdict {
    // The parser treats very short input specially; leave it to the parser.
    if digits.len() < 3 {
        return Verdict::Undecided;
    }
    let plan = plan();
    // Country codes are prefix-free, so the first known 1-3 digit prefix is it.
    let found = (1..=3).find_map(|n| {
        let code: u16 = digits[..n].parse().ok()?;
        plan.get(&code).map(|slots| (n, slots))
    });
    let Some((code_len, slots)) = found else {
        return Verdict::Invalid;
    };
    let nsn = &digits[code_len..];
    if nsn.len() < 2 || nsn.starts_with('0') {
        return Verdict::Undecided;
    }
    let (rules, already_valid) = if let [only] = slots.as_slice() {
        match only.rules() {
            Some(r) => (r, false),
            None => return Verdict::Undecided,
        }
    } else {
        let mut chosen = None;
        for slot in slots {
            let Some(r) = slot.rules() else {
                return Verdict::Undecided;
            };
            match &r.leading_digits {
                Some(leading) if leading(nsn) => {
                    chosen = Some((r, false));
                    break;
                }
                Some(_) => {}
                None if r.is_valid_nsn(nsn) => {
                    chosen = Some((r, true));
                    break;
                }
                None => {}
            }
        }
        match chosen {
            Some(c) => c,
            None => return Verdict::Invalid,
        }
    };
    if rules.parser_may_rewrite(nsn) {
        return Verdict::Undecided;
    }
    if already_valid || rules.is_valid_nsn(nsn) {
        Verdict::Valid
    } else {
        Verdict::Invalid
    }
}
