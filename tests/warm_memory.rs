//! Heap the numbering-plan warm-up keeps: every validation pattern of every
//! region is compiled before the gateway serves (see the `warm` module), and
//! that working set is most of the gateway's resident memory before the
//! first call. Counted by a global allocator that tracks live heap bytes;
//! prints the figure for BENCHMARKS.md and bounds it. Runs alone in its
//! process so that nothing else is counted.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use cidgate::inventory::{compiled_patterns, warm_numbering_plans};
use counting_alloc::{live_bytes, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_compiled_numbering_plans_fit_in_a_bounded_heap() {
    let before = live_bytes();
    warm_numbering_plans();
    let after = live_bytes();
    let mib = (after - before) as f64 / (1024.0 * 1024.0);
    let patterns = compiled_patterns();
    println!("numbering-plan warm-up: {mib:.1} MiB of heap for {patterns} compiled patterns");
    assert!(patterns > 1500, "only {patterns} patterns compiled");
    // 34.4 MiB measured; patterns compiled for Unicode (166 MiB) must not pass.
    assert!(mib < 64.0, "{mib:.1} MiB of heap after the warm-up");
}
