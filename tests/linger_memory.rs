//! Bytes the core keeps per lingering transaction: answered calls held for
//! retransmission handling (RFC 6026 Accepted, 32 s), counted by a global
//! allocator that tracks live heap bytes. Prints the figure for
//! BENCHMARKS.md and bounds it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;

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
fn an_answered_call_lingers_in_a_bounded_number_of_bytes() {
    const CALLS: usize = 5_000;
    let mut h = Harness::new();
    // Warm up: the resolver cache and table capacities grow once.
    let warm = |h: &mut Harness, id: &str| {
        let inv = invite(id, "X-Queue-Id: sales\r\n");
        let out = h.input(udp(PBX), &inv);
        let fwd: Bytes = to(&out, udp(CARRIER))[0].data.clone();
        let ok = answer(&fwd, "c");
        h.input(udp(CARRIER), &ok);
    };
    for i in 0..CALLS {
        warm(&mut h, &format!("w{i}"));
    }
    h.advance(Duration::from_secs(40));
    h.events.clear();
    h.events.shrink_to_fit();
    assert_eq!(h.proxy.transactions(), 0);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..CALLS {
        warm(&mut h, &format!("m{i}"));
    }
    h.events.clear();
    h.events.shrink_to_fit();
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(h.proxy.transactions(), CALLS);
    let per_txn = (after - before) as usize / CALLS;
    println!("lingering answered call: {per_txn} bytes per transaction ({CALLS} calls)");
    assert!(per_txn < 2048, "{per_txn} bytes per lingering transaction");
    h.advance(Duration::from_secs(40));
    assert_eq!(h.proxy.transactions(), 0);
}
