//! Heap the numbering-plan warm-up keeps: every validation pattern of every
//! region is compiled before the gateway serves (see the `warm` module), and
//! that working set is most of the gateway's resident memory before the
//! first call. Counted by a global allocator that tracks live heap bytes;
//! prints the figure for BENCHMARKS.md and bounds it. Runs alone in its
//! process so that nothing else is counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use cidgate::inventory::{compiled_patterns, warm_numbering_plans};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_compiled_numbering_plans_fit_in_a_bounded_heap() {
    let before = LIVE.load(Ordering::Relaxed);
    warm_numbering_plans();
    let after = LIVE.load(Ordering::Relaxed);
    let mib = (after - before) as f64 / (1024.0 * 1024.0);
    let patterns = compiled_patterns();
    println!("numbering-plan warm-up: {mib:.1} MiB of heap for {patterns} compiled patterns");
    assert!(patterns > 1500, "only {patterns} patterns compiled");
    assert!(mib < 1000.0, "{mib:.1} MiB of heap after the warm-up");
}
