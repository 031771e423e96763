//! Numbering-plan warm-up: everything a per-call number can make the
//! validators compile is compiled before the gateway serves.
//!
//! Both validators compile regular expressions lazily: `phonenumber` one
//! pattern at a time under its global lock, the `rules` module one region at a
//! time. Left lazy, the first per-call number of a country not seen before
//! pays for that country's patterns (for +1, those of every NANP region) on
//! the single core thread, and every message queued behind it waits: 0.1 s
//! with the regex crates optimised, 0.6 to 1.5 s in a plain debug build.
//! Compiling every region once at start-up (about 1700 `phonenumber` patterns
//! and as many anchored ones) turns every later validation into lookups.

use std::sync::Once;
use std::time::Instant;

use phonenumber::metadata::{Metadata, DATABASE};

use super::number::{enlarge_regex_cache, normalize, parse_e164_strict, Region};
use super::rules::{self, number_types};

/// Compiles every pattern validation can use, for every region; the first
/// call does the work, later calls return at once. Blocking: run it before
/// serving, or on a thread that may wait.
pub fn warm_numbering_plans() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let start = Instant::now();
        enlarge_regex_cache();
        // The parser's own fixed patterns, compiled on its first use.
        let _ = normalize("(415) 555-0100", Region::US);
        let _ = parse_e164_strict("+14155550100");
        let parser = start.elapsed();
        numbering_plans().for_each(compile_validation_patterns);
        let reference = start.elapsed() - parser;
        rules::compile_all();
        tracing::info!(
            ?parser,
            ?reference,
            rules = ?(start.elapsed() - parser - reference),
            patterns = compiled_patterns(),
            "numbering plans compiled"
        );
    });
}

/// How many validation patterns are compiled so far: `phonenumber`'s cache
/// plus the regions the fast rules have compiled. Constant once warm; the
/// test suite checks that resolving numbers of every country leaves it so.
pub fn compiled_patterns() -> usize {
    let cached = DATABASE.cache().lock().map(|c| c.len()).unwrap_or(0);
    cached + rules::compiled_regions()
}

/// Every numbering plan, by country code: `DATABASE.iter()` yields one entry
/// per region id, and the non-geographic entities (+800, +881, ...) all share
/// the id "001".
pub fn numbering_plans() -> impl Iterator<Item = &'static Metadata> {
    (1..=999u16)
        .filter_map(|code| DATABASE.by_code(&code))
        .flatten()
}

/// Compiles the patterns `phonenumber::parse` and `is_valid` consult: the
/// number-type descriptors, leading digits, and the international and
/// national prefixes (a match against "" compiles without matching much).
fn compile_validation_patterns(meta: &Metadata) {
    let general = meta.descriptors().general();
    for desc in std::iter::once(general).chain(number_types(meta)) {
        let pattern = desc.national_number();
        compile_ascii(pattern.as_str());
        pattern.is_match("");
    }
    let prefixes = [
        meta.leading_digits(),
        meta.international_prefix(),
        meta.national_prefix_for_parsing(),
    ];
    for prefix in prefixes.into_iter().flatten() {
        compile_ascii(prefix.as_str());
        prefix.is_match("");
    }
}

/// Puts the pattern `source` into `phonenumber`'s cache compiled for ASCII only, under
/// the key the crate looks it up by, so the crate uses that build instead of
/// compiling its own. The patterns only ever see ASCII digits (the parser
/// normalises digits first), where `\d` means `[0-9]` either way; compiled
/// with Unicode classes, every `\d` becomes a UTF-8 automaton, and the
/// warmed plans took 166 MiB of heap instead of a few. A pattern that does
/// not build for ASCII (none in the current metadata) is left to the crate.
fn compile_ascii(source: &str) {
    if let Ok(mut cache) = DATABASE.cache().lock() {
        let _ = cache.configure(source, |b| b.ignore_whitespace(true).unicode(false));
    }
}
