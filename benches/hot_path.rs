//! The gateway's per-call hot path through the real, I/O-free proxy core.
//!
//! `Proxy::handle` on a new outbound INVITE does everything the gateway does
//! per call except socket I/O: parse, transaction lookup, the caller-ID
//! decision, the rewrite and the `100 Trying`. Measuring the core alone tells
//! how much of the per-call CPU budget (see `scripts/load.sh`'s "us per call")
//! is the gateway's own logic rather than the kernel and tokio.
//!
//! Every timed iteration is a new call: the messages are generated up front
//! (distinct Call-ID, branch and From tag) and cycled. To keep the transaction
//! table from growing without bound, each `Proxy` lives for one batch of
//! [`BATCH`] calls and is then replaced; building and dropping it is outside
//! the timed region. A batch of 1 024 live transactions is what a gateway
//! holds at about 1 000 calls/s with a one-second setup time, so lookups and
//! inserts see a realistically sized table (its growth within the batch is
//! part of the measurement, as it would be after a restart). Advancing
//! virtual time instead would have put Timer A retransmissions and Timer B
//! expiries, which are not per-call work, into the loop.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cidgate::callerid::policy::{DynamicFormat, Resolver};
use cidgate::inventory::{Inventory, InventoryHandle};
use cidgate::proxy::{Event, Peer, Proxy};
use cidgate::sip::Transport;

/// The allocator the `cidgate` binary runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod support;
use support::calls::{numbered_queue, peer, settings, typical_invite, NUMBERS, PBX, QUEUES, SDP};
use support::{claimed_number, queue_id, unclaimed_number, Rng};

/// Distinct pre-generated messages per kind.
const MESSAGES: usize = 4_096;
/// Calls handled by one `Proxy` before it is replaced (see the module docs).
const BATCH: u64 = 1_024;

/// A large INVITE (about 5 KB, 50 header fields): compact forms (`v`, `f`,
/// `t`, `i`, `m`, `k`, `c`, `l`), folded continuation lines, repeated Vias,
/// History-Info and Diversion chains, identity headers to strip and a long
/// SDP with video.
fn large_invite(n: usize, queue: &str, caller: &str) -> Bytes {
    let mut sdp = String::from(SDP);
    sdp.push_str("m=video 40002 RTP/AVP 96 97\r\n");
    for pt in 96..=97 {
        sdp.push_str(&format!("a=rtpmap:{pt} H264/90000\r\n"));
        sdp.push_str(&format!(
            "a=fmtp:{pt} profile-level-id=42e01f;packetization-mode=1;max-mbps=108000;max-fs=3600\r\n"
        ));
        sdp.push_str(&format!(
            "a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n"
        ));
    }
    for i in 1..=6 {
        sdp.push_str(&format!(
            "a=candidate:{i} 1 UDP {} 127.0.0.10 {} typ host\r\n",
            2_130_706_431 - i,
            40_000 + 2 * i
        ));
    }
    let mut h = String::with_capacity(6_000);
    h.push_str("INVITE sip:+12025550143@gw.example.net;user=phone SIP/2.0\r\n");
    h.push_str(&format!(
        "v: SIP/2.0/TCP 127.0.0.10:5070;branch=z9hG4bK-{n:06}-big;rport\r\n"
    ));
    h.push_str("Via: SIP/2.0/TCP 10.1.2.3:5060;branch=z9hG4bK-inner-77a1;received=10.1.2.3\r\n");
    h.push_str("Via: SIP/2.0/UDP 10.9.8.7:5060\r\n ;branch=z9hG4bK-edge-19fe\r\n");
    h.push_str("Max-Forwards: 68\r\n");
    h.push_str(&format!(
        "f: \"Agent 7 (Outbound)\" <sip:agent7@pbx.example.com;user=phone>;tag=pbx-{n:06}-big;x-keep=1\r\n"
    ));
    h.push_str("t: <sip:+12025550143@carrier.example.com;user=phone>\r\n");
    h.push_str(&format!("i: {n:06}-big-77aa@pbx.example.com\r\n"));
    h.push_str("CSeq: 4711 INVITE\r\n");
    h.push_str("m: \"Agent 7\" <sip:agent7@127.0.0.10:5070;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0001020304aa>\";expires=3600\r\n");
    h.push_str(&format!("X-Queue-Id: {queue}\r\n"));
    h.push_str(&format!("X-Caller-Id:\r\n {caller}\r\n"));
    h.push_str("P-Asserted-Identity: \"Agent 7\" <sip:agent7@pbx.example.com>\r\n");
    h.push_str("P-Asserted-Identity: <tel:+14155550100>\r\n");
    h.push_str("P-Preferred-Identity: <sip:agent7@pbx.example.com>\r\n");
    h.push_str("Remote-Party-ID: \"Agent 7\" <sip:agent7@pbx.example.com>;party=calling;screen=no;privacy=off\r\n");
    h.push_str("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER,\r\n NOTIFY, INFO, PRACK, SUBSCRIBE, MESSAGE\r\n");
    h.push_str("k: timer, replaces, 100rel, norefersub, histinfo\r\n");
    h.push_str("Require: timer\r\n");
    h.push_str("Session-Expires: 1800;refresher=uac\r\n");
    h.push_str("Min-SE: 90\r\n");
    h.push_str("Accept: application/sdp, application/dtmf-relay,\r\n\tmultipart/mixed\r\n");
    h.push_str("Accept-Language: en-US, en;q=0.8, fr;q=0.5\r\n");
    h.push_str(
        "Allow-Events: talk, hold, conference, refer, dialog, presence, message-summary\r\n",
    );
    h.push_str("User-Agent: Acme PBX 12.4.1 (build 20240501; cluster node 3 of 5)\r\n");
    h.push_str("Organization: Acme Contact Center\r\n");
    h.push_str("Subject: Outbound campaign callback\r\n");
    h.push_str("Priority: normal\r\n");
    h.push_str("Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n");
    h.push_str("Timestamp: 54.3\r\n");
    h.push_str("Call-Info: <http://www.example.com/agents/7/photo.jpg>;purpose=icon,\r\n <http://www.example.com/agents/7/card.vcf>;purpose=card\r\n");
    h.push_str("Alert-Info: <http://www.example.com/sounds/campaign.wav>\r\n");
    for (i, reason) in ["unconditional", "user-busy", "no-answer"]
        .iter()
        .enumerate()
    {
        h.push_str(&format!(
            "Diversion: <sip:+1415555{:04}@pbx.example.com>;reason={reason};counter={};privacy=off\r\n",
            100 + i,
            i + 1
        ));
    }
    for i in 1..=4 {
        h.push_str(&format!(
            "History-Info: <sip:+1415555{:04}@pbx.example.com?Reason=SIP%3Bcause%3D302>;index=1.{i};mp=1\r\n",
            200 + i
        ));
    }
    h.push_str("P-Charging-Vector: icid-value=AyretyU0dm+6O2IrT5tAFrbHLso=;icid-generated-at=127.0.0.10;orig-ioi=pbx.example.com\r\n");
    h.push_str("P-Access-Network-Info: IEEE-802.11; i-wlan-node-id=ffffffffffff\r\n");
    h.push_str("P-Early-Media: supported\r\n");
    h.push_str("Reason: SIP;cause=302;text=\"Moved Temporarily\"\r\n");
    h.push_str("Privacy: none\r\n");
    for i in 0..8 {
        h.push_str(&format!(
            "X-Acme-Attr-{i}: campaign=spring-{i};segment=gold;agent-skill=es,en,fr;score={}\r\n",
            97 - i
        ));
    }
    h.push_str("X-Acme-Trace: 6e1f4c2a-9b7d-4f3e-8a21-0c5d7e9f1b23;hop=1;\r\n\tnode=pbx-3;\r\n\tts=1700000000123\r\n");
    h.push_str("c: application/sdp\r\n");
    h.push_str(&format!("l: {}\r\n\r\n", sdp.len()));
    h.push_str(&sdp);
    Bytes::from(h)
}

/// Pre-generated distinct calls, each from a random numbered queue with a
/// random claimed per-call number.
fn messages(seed: u64, make: fn(usize, &str, &str) -> Bytes) -> Vec<Bytes> {
    let mut rng = Rng::new(seed);
    (0..MESSAGES)
        .map(|n| {
            let q = queue_id(numbered_queue(&mut rng));
            let caller = claimed_number(rng.below(NUMBERS)).0;
            make(n, &q, &caller)
        })
        .collect()
}

/// Feeds one message and drains everything the shell would (transmits and
/// events); returns how many transmits there were.
fn one_call(proxy: &mut Proxy, now: Instant, from: Peer, msg: Bytes) -> usize {
    proxy.handle(now, from, msg);
    let mut sent = 0;
    while let Some(t) = proxy.poll_transmit() {
        black_box(&t);
        sent += 1;
    }
    while let Some(e) = proxy.poll_event() {
        black_box(&e);
    }
    sent
}

/// Runs one message through a fresh proxy and checks the call went where the
/// bench claims it goes, so a behaviour change cannot silently turn the hot
/// path into a reject or a 400.
fn check(inv: &Arc<InventoryHandle>, from: Peer, msg: &Bytes, outcome: &str, transmits: usize) {
    let mut proxy = Proxy::new(settings(), inv.clone());
    proxy.handle(Instant::now(), from, msg.clone());
    let mut out = Vec::new();
    while let Some(t) = proxy.poll_transmit() {
        out.push(t);
    }
    let events: Vec<Event> = std::iter::from_fn(|| proxy.poll_event()).collect();
    let got = events.iter().find_map(|e| match e {
        Event::Decision { outcome, .. } => Some(*outcome),
        _ => None,
    });
    assert_eq!(got, Some(outcome), "events: {events:?}");
    assert_eq!(out.len(), transmits, "transmits: {out:?}");
}

/// Times `handle` + drain over `iters` new calls, a fresh `Proxy` every
/// [`BATCH`] calls (construction and drop untimed).
fn run_calls(
    iters: u64,
    inv: &Arc<InventoryHandle>,
    from: Peer,
    msgs: &[Bytes],
    cursor: &mut usize,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    let mut now = Instant::now();
    while done < iters {
        let n = BATCH.min(iters - done);
        let mut proxy = Proxy::new(settings(), inv.clone());
        let start = Instant::now();
        for _ in 0..n {
            let msg = msgs[*cursor % msgs.len()].clone();
            *cursor += 1;
            // virtual time moves on (1 ms per call) but no timer is run
            now += Duration::from_millis(1);
            black_box(one_call(&mut proxy, now, from, msg));
        }
        total += start.elapsed();
        black_box(proxy.transactions());
        drop(proxy);
        done += n;
    }
    total
}

fn hot_path(c: &mut Criterion) {
    let inv = Arc::new(InventoryHandle::new(support::build_inventory(
        QUEUES, NUMBERS,
    )));
    let udp_pbx = peer(Transport::Udp, PBX);
    let tcp_pbx = peer(Transport::Tcp, PBX);
    let typical = messages(1, typical_invite);
    let large = messages(2, large_invite);
    eprintln!(
        "hot_path: typical INVITE {} bytes, large INVITE {} bytes",
        typical[0].len(),
        large[0].len()
    );
    // 100 Trying to the PBX and the INVITE to the carrier.
    check(&inv, udp_pbx, &typical[0], "dynamic", 2);
    check(&inv, tcp_pbx, &large[0], "dynamic", 2);

    let mut g = c.benchmark_group("hot_path");
    g.throughput(Throughput::Elements(1));
    let mut cursor = 0;
    g.bench_function("typical_invite_dynamic", |b| {
        b.iter_custom(|iters| run_calls(iters, &inv, udp_pbx, &typical, &mut cursor))
    });
    let mut cursor = 0;
    g.bench_function("large_invite_dynamic", |b| {
        b.iter_custom(|iters| run_calls(iters, &inv, tcp_pbx, &large, &mut cursor))
    });
    // The ACW reject: same message shape, queue unknown.
    let rejects: Vec<Bytes> = (0..MESSAGES)
        .map(|n| typical_invite(n, "no-such-queue", "+14155550100"))
        .collect();
    check(&inv, udp_pbx, &rejects[0], "unknown_queue", 1);
    let mut cursor = 0;
    g.bench_function("typical_invite_reject", |b| {
        b.iter_custom(|iters| run_calls(iters, &inv, udp_pbx, &rejects, &mut cursor))
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let typical = typical_invite(1, "q000001", &claimed_number(1).0);
    let large = large_invite(1, "q000001", &claimed_number(1).0);
    assert!(cidgate::sip::parse(typical.clone(), Transport::Udp).is_ok());
    assert!(cidgate::sip::parse(large.clone(), Transport::Tcp).is_ok());
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(typical.len() as u64));
    g.bench_function("typical_invite", |b| {
        b.iter(|| cidgate::sip::parse(black_box(typical.clone()), Transport::Udp))
    });
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("large_invite", |b| {
        b.iter(|| cidgate::sip::parse(black_box(large.clone()), Transport::Tcp))
    });
    g.finish();
}

/// Cycles through `inputs` for one outcome, checking each answer.
fn bench_resolve(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    inv: &Inventory,
    inputs: Vec<(String, Option<String>)>,
    want: &str,
) {
    let mut resolver = Resolver::new(DynamicFormat::Strict);
    for (q, p) in inputs.iter().take(16) {
        let got = match resolver.resolve(inv, q, p.as_deref()) {
            Ok(d) => d.outcome.as_str(),
            Err(r) => r.as_str(),
        };
        assert_eq!(got, want, "{q} {p:?}");
    }
    let mut resolver = Resolver::new(DynamicFormat::Strict);
    let mut i = 0;
    g.bench_function(name, |b| {
        b.iter(|| {
            let (q, p) = &inputs[i % inputs.len()];
            i += 1;
            let _ = black_box(resolver.resolve(inv, black_box(q), black_box(p.as_deref())));
        })
    });
}

fn resolve(c: &mut Criterion) {
    let inv = support::build_inventory(QUEUES, NUMBERS);
    let mut rng = Rng::new(3);
    let mut g = c.benchmark_group("resolve");
    let q = |rng: &mut Rng| queue_id(numbered_queue(rng));
    let many =
        |rng: &mut Rng, n: usize, per_call: &mut dyn FnMut(&mut Rng, usize) -> Option<String>| {
            (0..n)
                .map(|i| (q(rng), per_call(rng, i)))
                .collect::<Vec<_>>()
        };
    let inputs = many(&mut rng, MESSAGES, &mut |_, _| None);
    bench_resolve(&mut g, "queue", &inv, inputs, "queue");
    let inputs = many(&mut rng, MESSAGES, &mut |r, _| {
        Some(claimed_number(r.below(NUMBERS)).0)
    });
    bench_resolve(&mut g, "dynamic", &inv, inputs, "dynamic");
    // The resolver caches verdicts per input (65 536 entries): "repeat" is a
    // number seen before (cache hit), "distinct" cycles through 200 000
    // inputs so every lookup misses and the validity check runs, with the
    // cache's periodic clearing included.
    let inputs = many(&mut rng, MESSAGES, &mut |_, _| Some("+11235550100".into()));
    bench_resolve(
        &mut g,
        "fallback_not_e164/repeat",
        &inv,
        inputs,
        "fallback_not_e164",
    );
    let inputs = many(&mut rng, 200_000, &mut |_, i| {
        // NPA 1xx: E.164-shaped but not valid for the US plan
        Some(format!("+1{}{:07}", 100 + i % 100, i))
    });
    bench_resolve(
        &mut g,
        "fallback_not_e164/distinct",
        &inv,
        inputs,
        "fallback_not_e164",
    );
    let inputs = many(&mut rng, MESSAGES, &mut |_, _| Some(unclaimed_number(0)));
    bench_resolve(
        &mut g,
        "fallback_unclaimed/repeat",
        &inv,
        inputs,
        "fallback_unclaimed",
    );
    let inputs = many(&mut rng, 200_000, &mut |_, i| {
        Some(unclaimed_number(i as u64))
    });
    bench_resolve(
        &mut g,
        "fallback_unclaimed/distinct",
        &inv,
        inputs,
        "fallback_unclaimed",
    );
    let inputs = (0..MESSAGES)
        .map(|i| (format!("missing-{i}"), None))
        .collect();
    bench_resolve(&mut g, "unknown_queue", &inv, inputs, "unknown_queue");
    let inputs = (0..MESSAGES as u64)
        .map(|i| (queue_id((i * 20 + 13) % QUEUES), None))
        .collect();
    bench_resolve(&mut g, "no_queue_number", &inv, inputs, "no_queue_number");
    g.finish();
}

criterion_group!(benches, hot_path, parse, resolve);
criterion_main!(benches);
