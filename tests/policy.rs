//! The caller-ID decision (docs/behaviour.md §4) in both per-call formats.

use cidgate::callerid::policy::{Decision, DynamicFormat, Outcome, RejectReason, Resolver};
use cidgate::inventory::{parse_e164_strict, syntactic_e164, Inventory, Region, E164};

const US_QUEUE: &str = "+14155550100";
const GB_QUEUE: &str = "+442079460000";

/// us: a US queue; gb: a GB queue (anonymous, empty name); bare: no number.
/// Claimed besides the queue numbers: +14155550123 and +442071838750.
fn inventory() -> Inventory {
    let mut b = Inventory::builder(Region::US);
    for n in [US_QUEUE, GB_QUEUE, "+14155550123", "+442071838750"] {
        b.add_number(n).unwrap();
    }
    b.add_queue("us", Some(US_QUEUE), "Sales \"US\"", None, false)
        .unwrap();
    b.add_queue("gb", Some(GB_QUEUE), "", Some(Region::GB), true)
        .unwrap();
    b.add_queue("bare", None, "Nobody", None, false).unwrap();
    b.build().unwrap()
}

fn e(s: &str) -> E164 {
    syntactic_e164(s).unwrap()
}

/// Outcome and number of one decision.
fn decide(
    mode: DynamicFormat,
    queue: &str,
    per_call: Option<&str>,
) -> Result<(Outcome, String), RejectReason> {
    Resolver::new(mode)
        .resolve(&inventory(), queue, per_call)
        .map(|d| (d.outcome, d.number.to_string()))
}

fn both_modes() -> [DynamicFormat; 2] {
    [DynamicFormat::Strict, DynamicFormat::Normalize]
}

#[test]
fn unknown_queue_and_queue_without_number_are_rejected() {
    for mode in both_modes() {
        assert_eq!(decide(mode, "nope", None), Err(RejectReason::UnknownQueue));
        assert_eq!(
            decide(mode, "", Some("+14155550123")),
            Err(RejectReason::UnknownQueue)
        );
        // Even a claimed per-call number does not rescue a queue without one.
        assert_eq!(
            decide(mode, "bare", Some("+14155550123")),
            Err(RejectReason::NoQueueNumber)
        );
        assert_eq!(decide(mode, "bare", None), Err(RejectReason::NoQueueNumber));
    }
}

#[test]
fn no_per_call_number_uses_the_queue_number() {
    for mode in both_modes() {
        for absent in [None, Some(""), Some("   ")] {
            assert_eq!(
                decide(mode, "us", absent),
                Ok((Outcome::Queue, US_QUEUE.into())),
                "{absent:?}"
            );
        }
    }
}

#[test]
fn decision_carries_queue_name_and_anonymity() {
    let inv = inventory();
    let mut r = Resolver::new(DynamicFormat::Strict);
    let d = r.resolve(&inv, "us", Some("+14155550123")).unwrap();
    assert_eq!(
        d,
        Decision {
            outcome: Outcome::Dynamic,
            number: e("+14155550123"),
            name: "Sales \"US\"".into(),
            anonymous: false,
        }
    );
    let d = r.resolve(&inv, "gb", None).unwrap();
    assert_eq!((&*d.name, d.anonymous, d.number), ("", true, e(GB_QUEUE)));
}

#[test]
fn claimed_e164_per_call_number_is_used_in_both_modes() {
    for mode in both_modes() {
        assert_eq!(
            decide(mode, "us", Some("+14155550123")),
            Ok((Outcome::Dynamic, "+14155550123".into()))
        );
        // Any queue may present any claimed number, whatever its region.
        assert_eq!(
            decide(mode, "us", Some("+442071838750")),
            Ok((Outcome::Dynamic, "+442071838750".into()))
        );
        // Surrounding whitespace is not part of the value.
        assert_eq!(
            decide(mode, "us", Some(" \t+14155550123 ")),
            Ok((Outcome::Dynamic, "+14155550123".into()))
        );
        // The queue id is trimmed the same way.
        assert_eq!(
            decide(mode, " us ", None),
            Ok((Outcome::Queue, US_QUEUE.into()))
        );
    }
}

#[test]
fn strict_mode_falls_back_on_anything_not_already_e164() {
    let strict = DynamicFormat::Strict;
    for input in [
        "(415) 555-0123",
        "415 555 0123",
        "+1 415 555 0123",
        "14155550123",
        "020 7183 8750",
        "0044 20 7183 8750",
        // E.164-shaped but not valid for its country.
        "+1555",
        "+10005550123",
        "sip:+14155550123@example.com",
        "anonymous",
    ] {
        assert_eq!(
            decide(strict, "us", Some(input)),
            Ok((Outcome::FallbackNotE164, US_QUEUE.into())),
            "{input:?}"
        );
    }
}

#[test]
fn valid_but_unclaimed_e164_falls_back_to_the_queue_number() {
    for mode in both_modes() {
        for input in ["+14155550199", "+12125550199", "+442071838751"] {
            assert_eq!(
                decide(mode, "us", Some(input)),
                Ok((Outcome::FallbackUnclaimed, US_QUEUE.into())),
                "{input:?}"
            );
        }
    }
}

#[test]
fn normalize_mode_reads_national_forms_with_the_queue_region() {
    let norm = DynamicFormat::Normalize;
    // docs/behaviour.md §4 examples.
    assert_eq!(
        decide(norm, "us", Some("(415) 555-0123")),
        Ok((Outcome::Dynamic, "+14155550123".into()))
    );
    assert_eq!(
        decide(norm, "gb", Some("020 7183 8750")),
        Ok((Outcome::Dynamic, "+442071838750".into()))
    );
    assert_eq!(
        decide(norm, "gb", Some("0044 20 7183 8750")),
        Ok((Outcome::Dynamic, "+442071838750".into()))
    );
    assert_eq!(
        decide(norm, "us", Some("+1 415 555 0123")),
        Ok((Outcome::Dynamic, "+14155550123".into()))
    );
    assert_eq!(
        decide(norm, "us", Some("011 44 20 7183 8750")),
        Ok((Outcome::Dynamic, "+442071838750".into()))
    );

    // The queue's region decides: a GB national form means nothing for a US queue.
    assert_eq!(
        decide(norm, "us", Some("020 7183 8750")),
        Ok((Outcome::FallbackNotE164, US_QUEUE.into()))
    );
    assert_eq!(
        decide(norm, "us", Some("0044 20 7183 8750")),
        Ok((Outcome::FallbackNotE164, US_QUEUE.into()))
    );
    // Normalised, valid, but not claimed.
    assert_eq!(
        decide(norm, "us", Some("(415) 555-0199")),
        Ok((Outcome::FallbackUnclaimed, US_QUEUE.into()))
    );
    assert_eq!(
        decide(norm, "gb", Some("020 7183 8751")),
        Ok((Outcome::FallbackUnclaimed, GB_QUEUE.into()))
    );
    // Still not a number.
    for input in ["+1555", "555", "call me", "415 555 0123 ext 7"] {
        assert_eq!(
            decide(norm, "us", Some(input)),
            Ok((Outcome::FallbackNotE164, US_QUEUE.into())),
            "{input:?}"
        );
    }
}

#[test]
fn overlong_per_call_values_are_not_numbers() {
    let long = format!("+1415555012{}", "3".repeat(100));
    for mode in both_modes() {
        assert_eq!(
            decide(mode, "us", Some(&long)),
            Ok((Outcome::FallbackNotE164, US_QUEUE.into()))
        );
    }
}

#[test]
fn cached_verdicts_do_not_leak_between_inventories_or_regions() {
    // The cache remembers what an input *is*, never whether it is claimed.
    let mut r = Resolver::new(DynamicFormat::Normalize);
    let empty_claims = {
        let mut b = Inventory::builder(Region::US);
        b.add_number(US_QUEUE).unwrap();
        b.add_queue("us", Some(US_QUEUE), "", None, false).unwrap();
        b.build().unwrap()
    };
    let d = r
        .resolve(&empty_claims, "us", Some("(415) 555-0123"))
        .unwrap();
    assert_eq!(d.outcome, Outcome::FallbackUnclaimed);
    let d = r
        .resolve(&inventory(), "us", Some("(415) 555-0123"))
        .unwrap();
    assert_eq!(d.outcome, Outcome::Dynamic);

    // Same text, different queue region, different meaning.
    let inv = inventory();
    assert_eq!(
        r.resolve(&inv, "gb", Some("020 7183 8750"))
            .unwrap()
            .outcome,
        Outcome::Dynamic
    );
    assert_eq!(
        r.resolve(&inv, "us", Some("020 7183 8750"))
            .unwrap()
            .outcome,
        Outcome::FallbackNotE164
    );
    assert_eq!(
        r.resolve(&inv, "gb", Some("020 7183 8750"))
            .unwrap()
            .outcome,
        Outcome::Dynamic
    );
}

#[test]
fn many_distinct_inputs_keep_answering_correctly() {
    // Past the cache capacity the cache is emptied; answers must not change.
    let inv = inventory();
    let mut r = Resolver::new(DynamicFormat::Strict);
    for round in 0..2 {
        for i in 0..70_000u32 {
            let input = format!("+1415{:07}", 5_550_000 + i);
            let expect = match parse_e164_strict(&input) {
                Some(n) if inv.is_claimed(&n) => Outcome::Dynamic,
                Some(_) => Outcome::FallbackUnclaimed,
                None => Outcome::FallbackNotE164,
            };
            let got = r.resolve(&inv, "us", Some(&input)).unwrap().outcome;
            assert_eq!(got, expect, "{input} (round {round})");
        }
    }
    for i in 0..70_000u32 {
        let input = format!("x{i}");
        assert_eq!(
            r.resolve(&inv, "us", Some(&input)).unwrap().outcome,
            Outcome::FallbackNotE164
        );
    }
}

#[test]
fn labels() {
    let outcomes = [
        (Outcome::Queue, "queue"),
        (Outcome::Dynamic, "dynamic"),
        (Outcome::FallbackNotE164, "fallback_not_e164"),
        (Outcome::FallbackUnclaimed, "fallback_unclaimed"),
    ];
    for (o, s) in outcomes {
        assert_eq!((o.as_str(), o.to_string()), (s, s.to_string()));
    }
    assert_eq!(RejectReason::UnknownQueue.to_string(), "unknown_queue");
    assert_eq!(RejectReason::NoQueueNumber.as_str(), "no_queue_number");
    assert_eq!(DynamicFormat::default(), DynamicFormat::Strict);
    assert_eq!(
        Resolver::new(DynamicFormat::Normalize).mode(),
        DynamicFormat::Normalize
    );
}
