//! Bytes the core keeps per lingering transaction: answered calls held for
//! retransmission handling (RFC 6026 Accepted, 32 s) in the compact linger
//! record, counted by a global allocator that tracks live heap bytes. Prints
//! the figure for BENCHMARKS.md and bounds it.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use counting_alloc::{live_bytes, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator counts every thread: the tests of this file take turns so
/// that one's allocations never land in another's figure.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn an_answered_call_lingers_in_a_bounded_number_of_bytes() {
    let _turn = my_turn();
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
    let before = live_bytes();
    for i in 0..CALLS {
        warm(&mut h, &format!("m{i}"));
    }
    h.events.clear();
    h.events.shrink_to_fit();
    let after = live_bytes();
    assert_eq!(h.proxy.transactions(), CALLS);
    let per_txn = (after - before) as usize / CALLS;
    println!("lingering answered call: {per_txn} bytes per transaction ({CALLS} calls)");
    // 273 B measured; the full record kept until Timer L before the compact
    // one (750 B) must not pass.
    assert!(per_txn < 400, "{per_txn} bytes per lingering transaction");
    h.advance(Duration::from_secs(40));
    assert_eq!(h.proxy.transactions(), 0);
}

/// The timer queue holds entries for live transactions (of a lingering one,
/// only the timer that ends it), not for every call of the last three minutes: each forwarded INVITE arms Timer C (181 s)
/// while its answered call lingers only 32 s, and queue entries are only
/// taken out when due unless the queue is swept. Rounds of ringing and
/// answered calls, each lingering out (40 s) before the next: unswept, a
/// round's queue also holds the Timer C entries of the four rounds before.
#[test]
fn the_timer_queue_does_not_keep_entries_of_finished_calls() {
    let _turn = my_turn();
    const CALLS: usize = 2_000;
    const ROUNDS: usize = 10;
    let mut h = Harness::new();
    let (mut first, mut most) = (0, 0);
    for round in 0..ROUNDS {
        for i in 0..CALLS {
            let inv = invite(&format!("r{round}c{i}"), "X-Queue-Id: sales\r\n");
            let out = h.input(udp(PBX), &inv);
            let fwd: Bytes = to(&out, udp(CARRIER))[0].data.clone();
            // Ringing first: Timer C is armed on the first provisional.
            h.input(udp(CARRIER), respond(&fwd, 180, "Ringing", Some("c"), ""));
            h.input(udp(CARRIER), answer(&fwd, "c"));
        }
        h.events.clear();
        if round == 0 {
            first = h.proxy.queued_timers();
        }
        most = most.max(h.proxy.queued_timers());
        // This round's calls finish lingering; their Timer C entries are
        // still minutes from due.
        h.advance(Duration::from_secs(40));
        assert_eq!(h.proxy.transactions(), 0);
    }
    println!(
        "timer queue: {first} entries for {CALLS} live calls, at most {most} over {ROUNDS} rounds"
    );
    // Swept when it has grown by half (and never below 4096 entries);
    // unswept, four rounds of Timer C entries pile up on the live ones.
    let unswept = first + 4 * CALLS;
    assert!(
        most <= first + first / 2 + 4096 && most < unswept,
        "{most} queued timers for {CALLS} live calls ({first} in the first round)"
    );
    // A lingering call keeps only the entry of the timer that ends it (L):
    // 3 370 entries measured for 2 000 calls; the sweep that kept every
    // entry of a live transaction (A, B, C, M, L: 12 000) must not pass.
    assert!(
        first < 2 * CALLS,
        "{first} queued timers for {CALLS} lingering calls"
    );
}

/// A whole call as the soak places it (INVITE, 180, 200, ACK, BYE, 200):
/// the INVITE and the BYE transaction both linger (RFC 6026 Accepted, and
/// Timer J for the BYE over UDP, 32 s each). Prints the bytes per call the
/// core keeps for BENCHMARKS.md and bounds them.
#[test]
fn a_whole_call_lingers_in_a_bounded_number_of_bytes() {
    let _turn = my_turn();
    const CALLS: usize = 5_000;
    let whole_call = |h: &mut Harness, id: &str| {
        let inv = invite(id, "X-Queue-Id: sales\r\n");
        let out = h.input(udp(PBX), &inv);
        let fwd: Bytes = to(&out, udp(CARRIER))[0].data.clone();
        h.input(udp(CARRIER), respond(&fwd, 180, "Ringing", Some("c"), ""));
        let out = h.input(udp(CARRIER), answer(&fwd, "c"));
        let ok = to(&out, udp(PBX))[0].data.clone();
        let rr = header_value(&ok, "Record-Route").expect("Record-Route");
        let in_dialog = |method: &str, cseq: u32| {
            format!(
                "{method} sip:callee@127.0.0.20:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK{method}{id};rport\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-{id};x-keep=1\r\nTo: <sip:+12125550123@carrier.example.com>;tag=c\r\nCall-ID: {id}@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        h.input(udp(PBX), in_dialog("ACK", 10));
        let out = h.input(udp(PBX), in_dialog("BYE", 11));
        let bye: Bytes = to(&out, udp(CARRIER))[0].data.clone();
        h.input(udp(CARRIER), respond(&bye, 200, "OK", None, ""));
    };
    let mut h = Harness::new();
    for i in 0..CALLS {
        whole_call(&mut h, &format!("w{i}"));
    }
    h.advance(Duration::from_secs(200));
    h.events.clear();
    h.events.shrink_to_fit();
    assert_eq!(h.proxy.transactions(), 0);
    let before = live_bytes();
    for i in 0..CALLS {
        whole_call(&mut h, &format!("m{i}"));
    }
    h.events.clear();
    h.events.shrink_to_fit();
    let after = live_bytes();
    assert_eq!(h.proxy.transactions(), 2 * CALLS);
    let per_call = (after - before) as usize / CALLS;
    println!("lingering whole call (INVITE + BYE): {per_call} bytes per call ({CALLS} calls)");
    // 774 B measured; the full records kept until Timers L and J before the
    // compact ones (1 960 B) must not pass.
    assert!(per_call < 1024, "{per_call} bytes per lingering call");
    h.advance(Duration::from_secs(40));
    assert_eq!(h.proxy.transactions(), 0);
}
