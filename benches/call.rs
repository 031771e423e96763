//! One whole call through the proxy core, sockets excluded: the six
//! datagrams of an answered and hung-up outbound call (the PBX's INVITE, the
//! carrier's `180` and `200`, the PBX's ACK and BYE, the carrier's `200` to
//! the BYE), each handled and everything the core sends collected.
//!
//! The CPU per call the rig measures (`scripts/compare.sh`) is mostly the
//! kernel's (BENCHMARKS.md); this is the part that is the core's own, the
//! part an optimisation of parsing, routing or allocation can move, measured
//! without the host's noise. It also prints how many heap allocations a call
//! costs, as a cheaper proxy for the allocator's share of the profile.
//!
//! The datagrams are built once, by passing every call through a scratch
//! proxy with the same seal key (branches and route state are derived from
//! the request and the key), so that each pass of the measured proxies sees
//! exactly what a carrier and a PBX would send. Each pass over the calls
//! uses a fresh proxy: a call's messages replayed to the same proxy would be
//! retransmissions.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cidgate::inventory::InventoryHandle;
use cidgate::proxy::{Peer, Proxy};
use cidgate::sip::{HeaderName, Transport};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;
use support::calls::{
    carrier_answer, fields, lines, numbered_queue, peer, settings, typical_invite, values, CALLEE,
    CARRIER, NUMBERS, PBX, QUEUES,
};
use support::{claimed_number, queue_id, Rng};

/// The allocator the `cidgate` binary runs with, counting what it is asked for.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to mimalloc unchanged; the counter is a
// relaxed atomic that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Calls per pass (and the most a measured proxy holds).
const CALLS: usize = 2_048;
/// Datagrams the core sends per call: 100 Trying and the INVITE, the 180
/// and the 200 relayed, the ACK and the BYE forwarded, the BYE's 200 relayed.
const SENT_PER_CALL: usize = 7;

/// A call's six datagrams in the order they arrive, with their sources.
type Call = [(Peer, Bytes); 6];

/// The PBX's ACK or BYE in the dialog the relayed `200` set up: to the
/// callee's Contact, through the `200`'s Record-Route.
fn pbx_in_dialog(ok: &Bytes, method: &str, cseq: u32, n: usize) -> Bytes {
    let f = fields(ok);
    let route = values(&f, HeaderName::RecordRoute);
    Bytes::from(format!(
        "{method} {CALLEE} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK-{n:06}-{method};rport\r\n\
Max-Forwards: 70\r\n\
Route: {route}\r\n\
{}To: {}\r\n\
{}CSeq: {cseq} {method}\r\n\
Content-Length: 0\r\n\r\n",
        lines(&f, &[HeaderName::From]),
        values(&f, HeaderName::To),
        lines(&f, &[HeaderName::CallId]),
    ))
}

/// Hands `data` to `proxy` and returns what it sent to `to`.
fn pass(proxy: &mut Proxy, now: Instant, from: Peer, data: &Bytes, to: Peer) -> Bytes {
    proxy.handle(now, from, data.clone());
    let sent: Vec<_> = std::iter::from_fn(|| proxy.poll_transmit()).collect();
    while proxy.poll_event().is_some() {}
    sent.into_iter()
        .find(|t| t.to == to)
        .unwrap_or_else(|| panic!("nothing was sent to {}", to.addr))
        .data
}

/// Builds the calls: each goes through a scratch proxy once.
fn calls(inv: &Arc<InventoryHandle>) -> Vec<Call> {
    let (pbx, carrier) = (peer(Transport::Udp, PBX), peer(Transport::Udp, CARRIER));
    let mut rng = Rng::new(11);
    let mut scratch = Proxy::new(settings(), inv.clone());
    let now = Instant::now();
    (0..CALLS)
        .map(|n| {
            let q = queue_id(numbered_queue(&mut rng));
            let invite = typical_invite(n, &q, &claimed_number(rng.below(NUMBERS)).0);
            let fwd = pass(&mut scratch, now, pbx, &invite, carrier);
            let ringing = carrier_answer(&fwd, 180, n);
            pass(&mut scratch, now, carrier, &ringing, pbx);
            let ok = carrier_answer(&fwd, 200, n);
            let relayed = pass(&mut scratch, now, carrier, &ok, pbx);
            let ack = pbx_in_dialog(&relayed, "ACK", 1, n);
            pass(&mut scratch, now, pbx, &ack, carrier);
            let bye = pbx_in_dialog(&relayed, "BYE", 2, n);
            let bye_fwd = pass(&mut scratch, now, pbx, &bye, carrier);
            let bye_ok = carrier_answer(&bye_fwd, 200, n);
            pass(&mut scratch, now, carrier, &bye_ok, pbx);
            [
                (pbx, invite),
                (carrier, ringing),
                (carrier, ok),
                (pbx, ack),
                (pbx, bye),
                (carrier, bye_ok),
            ]
        })
        .collect()
}

/// Handles `iters` calls, `CALLS` per fresh proxy, and returns the time
/// spent handling them; virtual time moves 1 ms per call.
fn run(iters: u64, inv: &Arc<InventoryHandle>, calls: &[Call]) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CALLS as u64) as usize;
        let mut proxy = Proxy::new(settings(), inv.clone());
        let mut now = Instant::now();
        let start = Instant::now();
        let mut sent = 0;
        for call in &calls[..n] {
            now += Duration::from_millis(1);
            for (from, data) in call {
                proxy.handle(now, *from, data.clone());
                while let Some(t) = proxy.poll_transmit() {
                    black_box(&t);
                    sent += 1;
                }
                while let Some(ev) = proxy.poll_event() {
                    black_box(&ev);
                }
            }
        }
        total += start.elapsed();
        assert_eq!(sent, SENT_PER_CALL * n, "every call went through");
        drop(proxy);
        done += n as u64;
    }
    total
}

fn whole_call(c: &mut Criterion) {
    let inv = Arc::new(InventoryHandle::new(support::build_inventory(
        QUEUES, NUMBERS,
    )));
    let calls = calls(&inv);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    run(CALLS as u64, &inv, &calls);
    let per_call = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / CALLS as f64;
    eprintln!("call/whole: {per_call:.1} heap allocations per call (proxy creation included)");
    // `CALL_BENCH_PASSES=n`: handle n passes of the calls and exit, for
    // counting instructions under `valgrind --tool=callgrind` (this VM
    // gives `perf stat` no hardware counters): two values of n, subtracted,
    // give instructions per call without the host's timing noise.
    if let Some(passes) = std::env::var("CALL_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        run(passes * CALLS as u64, &inv, &calls);
        return;
    }
    let mut g = c.benchmark_group("call");
    g.throughput(Throughput::Elements(1));
    g.bench_function("whole", |b| b.iter_custom(|iters| run(iters, &inv, &calls)));
    g.finish();
}

criterion_group!(benches, whole_call);
criterion_main!(benches);
