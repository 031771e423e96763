//! After the numbering-plan warm-up, no per-call number compiles anything.
//!
//! The gateway handles every message on one core thread; a pattern compiled
//! while a call waits stalls every other message queued behind it (a first
//! number of a new country used to cost 0.1–1.5 s). This file runs alone in
//! its process so that the count below sees only what it does itself.

use cidgate::callerid::policy::{DynamicFormat, Resolver};
use cidgate::inventory::{
    compiled_patterns, normalize, number_types, numbering_plans, parse_e164_strict,
    warm_numbering_plans, Inventory, Region,
};

/// Per-call inputs for every numbering plan: each type's example number in
/// E.164, with a stray trunk zero, in national form and dialled from the US,
/// plus near misses (one digit more or less).
fn inputs_of_every_plan() -> Vec<(String, Region)> {
    let mut inputs = Vec::new();
    for meta in numbering_plans() {
        let region = Region::parse(meta.id()).unwrap_or(Region::US);
        let cc = meta.country_code();
        for example in number_types(meta).filter_map(|t| t.example()) {
            let national = format!("{}{example}", meta.national_prefix().unwrap_or(""));
            let shorter = national[..national.len() - 1].to_string();
            inputs.extend([
                (format!("+{cc}{example}"), region),
                (format!("+{cc}{example}1"), region),
                (format!("+{cc}0{example}"), region),
                (national, region),
                (shorter, region),
                (format!("011 {cc} {example}"), Region::US),
            ]);
        }
    }
    inputs
}

#[test]
fn no_pattern_is_compiled_for_a_per_call_number_after_warm_up() {
    warm_numbering_plans();
    let warm = compiled_patterns();
    let inputs = inputs_of_every_plan();
    assert!(inputs.len() > 3000, "only {} inputs", inputs.len());
    let (mut valid, mut strict_valid) = (0, 0);
    for (input, region) in &inputs {
        valid += usize::from(normalize(input, *region).is_some());
        strict_valid += usize::from(parse_e164_strict(input).is_some());
    }
    // The inputs reach both validators' accepting paths, not only refusals.
    assert!(
        valid > 1000 && strict_valid > 1000,
        "{valid} {strict_valid}"
    );
    // And through the resolver, as the core calls it, in both modes.
    let mut builder = Inventory::builder(Region::US);
    builder.add_number("+14155550100").unwrap();
    builder
        .add_queue("q", Some("+14155550100"), "Q", Some(Region::GB), false)
        .unwrap();
    let inventory = builder.build().unwrap();
    for mode in [DynamicFormat::Strict, DynamicFormat::Normalize] {
        let mut resolver = Resolver::new(mode);
        for (input, _) in &inputs {
            resolver.resolve(&inventory, "q", Some(input)).unwrap();
        }
    }
    assert_eq!(
        compiled_patterns(),
        warm,
        "a per-call number compiled a pattern after the warm-up: the core \
         thread would stall on it"
    );
}
