//! Inventory at contact-center scale: 1 000 000 claimed numbers and 100 000
//! queues.
//!
//! Two questions: is a per-call lookup still cheap when the tables no longer
//! fit in cache, and how long does a cold load (startup, or a reload that
//! builds a whole new inventory next to the running one) take and how much
//! memory does it keep. The CSV files are generated into a temporary
//! directory before anything is timed; the load is timed end to end through
//! `Inventory::load` (open, CSV parse, E.164 validation, queue checks).

use std::hint::black_box;
use std::time::{Duration, Instant};

use cidgate::inventory::{syntactic_e164, Inventory, Region};
use criterion::{criterion_group, criterion_main, Criterion};

mod support;
use support::{
    claimed_number, queue_id, rss_kib, unclaimed_number, write_inventory, NumberForm, Rng,
};

const QUEUES: u64 = 100_000;
const NUMBERS: u64 = 1_000_000;
/// Distinct lookup inputs, cycled (more than fit in L1/L2 with their keys).
const INPUTS: usize = 65_536;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Loads once outside criterion and prints what the targets are
/// about: wall time and resident memory. Done first, in a fresh process,
/// so the high-water mark is the load's own and not a criterion sample's.
fn report_memory(dir: &std::path::Path, us: Region) {
    let (q, n) = (dir.join("queues.csv"), dir.join("numbers.csv"));
    let before = rss_kib();
    let t = Instant::now();
    let inv = Inventory::load(&q, &n, us).expect("generated inventory loads");
    let took = t.elapsed();
    let after = rss_kib();
    assert_eq!(inv.claimed_count(), NUMBERS as usize);
    assert_eq!(inv.queue_count(), QUEUES as usize);
    if let (Some((rss0, _)), Some((rss1, hwm1))) = (before, after) {
        eprintln!(
            "inventory: one cold load of {NUMBERS} numbers + {QUEUES} queues: {:.2} s; \
             VmRSS before {:.1} MiB, after {:.1} MiB (inventory holds {:.1} MiB); VmHWM {:.1} MiB",
            took.as_secs_f64(),
            mib(rss0),
            mib(rss1),
            mib(rss1.saturating_sub(rss0)),
            mib(hwm1)
        );
    }
    black_box(inv);
}

fn inventory(c: &mut Criterion) {
    let us = Region::parse("US").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    let e164 = tmp.path().join("e164");
    std::fs::create_dir_all(&lab).unwrap();
    std::fs::create_dir_all(&e164).unwrap();
    let t = Instant::now();
    write_inventory(&lab, QUEUES, NUMBERS, NumberForm::LabMix);
    write_inventory(&e164, QUEUES, NUMBERS, NumberForm::E164);
    eprintln!(
        "inventory: generated CSVs in {:.1} s ({} MB numbers.csv)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(lab.join("numbers.csv")).unwrap().len() / 1_000_000
    );
    report_memory(&lab, us);

    let mut g = c.benchmark_group("inventory_load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.warm_up_time(Duration::from_secs(1));
    // The lab data's mix: every 20th number in national form, which only the
    // libphonenumber parser can read.
    g.bench_function("1M_numbers_100k_queues/lab_mix", |b| {
        b.iter(|| Inventory::load(&lab.join("queues.csv"), &lab.join("numbers.csv"), us).unwrap())
    });
    // All E.164: the loader's fast path only.
    g.bench_function("1M_numbers_100k_queues/all_e164", |b| {
        b.iter(|| Inventory::load(&e164.join("queues.csv"), &e164.join("numbers.csv"), us).unwrap())
    });
    g.finish();

    let inv = Inventory::load(&lab.join("queues.csv"), &lab.join("numbers.csv"), us).unwrap();
    let mut rng = Rng::new(11);
    let present: Vec<String> = (0..INPUTS).map(|_| queue_id(rng.below(QUEUES))).collect();
    let absent: Vec<String> = (0..INPUTS).map(|i| format!("missing-{i}")).collect();
    let claimed: Vec<String> = (0..INPUTS)
        .map(|_| claimed_number(rng.below(NUMBERS)).0)
        .collect();
    let unclaimed: Vec<String> = (0..INPUTS).map(|i| unclaimed_number(i as u64)).collect();
    assert!(present.iter().all(|q| inv.queue(q).is_some()));
    assert!(claimed
        .iter()
        .all(|n| inv.is_claimed(&syntactic_e164(n).unwrap())));
    assert!(!unclaimed
        .iter()
        .any(|n| inv.is_claimed(&syntactic_e164(n).unwrap())));

    let mut g = c.benchmark_group("inventory_lookup");
    let mut i = 0;
    g.bench_function("queue/hit", |b| {
        b.iter(|| {
            i += 1;
            black_box(inv.queue(black_box(&present[i % INPUTS])).is_some())
        })
    });
    g.bench_function("queue/miss", |b| {
        b.iter(|| {
            i += 1;
            black_box(inv.queue(black_box(&absent[i % INPUTS])).is_some())
        })
    });
    // What the resolver does for a per-call number: shape check, then the
    // claimed set (no phonenumber call on either path).
    g.bench_function("is_claimed/hit", |b| {
        b.iter(|| {
            i += 1;
            let e = syntactic_e164(black_box(&claimed[i % INPUTS]));
            black_box(e.is_some_and(|e| inv.is_claimed(&e)))
        })
    });
    g.bench_function("is_claimed/miss", |b| {
        b.iter(|| {
            i += 1;
            let e = syntactic_e164(black_box(&unclaimed[i % INPUTS]));
            black_box(e.is_some_and(|e| inv.is_claimed(&e)))
        })
    });
    g.finish();
}

criterion_group!(benches, inventory);
criterion_main!(benches);
