//! Throughput of one proxy core against several behind the dispatcher,
//! sockets excluded: what `[server] workers = 2` buys an operator on the
//! machine the bench runs on.
//!
//! Every round pushes the same pre-built datagrams of [`CALLS`] new calls
//! (the PBX's INVITE, then the carrier's `180 Ringing` and `200 OK`, each
//! call's answers [`LAG`] calls behind its INVITE, as on a busy trunk)
//! through fresh proxies, and ends when every message has been handled and
//! everything the cores send has been collected (a sink counts it):
//!
//! - `inline`: what the server runs with `workers = 1`: the core reads the
//!   datagrams itself, glances at each for the flood guard, copies it out of
//!   the receive buffer, handles it, and sends after each batch.
//! - `pool/N`: what it runs with `workers = N`: the pool's own
//!   [`Router`] (glance, flood guard, hash of Call-ID, bounded queue) on
//!   this thread with core 0 beside it (a batch of its queue after each
//!   batch routed, as the two share the server's main runtime), and N - 1
//!   threads each running a proxy core on a current-thread runtime, taking
//!   batches from its queue as `Core::on_inputs` does and sending after
//!   each batch.
//!
//! When a queue is too full to take a message (the server would shed the
//! new call with a 503, or drop a response), the feeder lets core 0 take a
//! turn, or, when another core's queue is the full one, sleeps and offers
//! it again: a saturated dispatcher waits for the sockets, it does not spin.
//! So the figure is the cores' capacity, not a shedding rate.

use std::hint::black_box;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cidgate::config::LimitsConfig;
use cidgate::inventory::InventoryHandle;
use cidgate::proxy::{Peer, Proxy};
use cidgate::shell::glance::glance;
use cidgate::shell::guard::Guard;
use cidgate::shell::pool::{Routed, Router, READ_BATCH};
use cidgate::shell::Input;
use cidgate::sip::Transport;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::mpsc;

/// The allocator the `cidgate` binary runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod support;
use support::calls::{
    carrier_answer, numbered_queue, peer, settings, typical_invite, CARRIER, NUMBERS, PBX, QUEUES,
};
use support::{claimed_number, queue_id, Rng};

/// New calls per round: also the most transactions a core holds.
const CALLS: usize = 4_096;
/// How many INVITEs later a call's answers arrive.
const LAG: usize = 64;
/// Messages a core handles before it sends (`transport::udp::BATCH`).
const BATCH: usize = cidgate::transport::udp::BATCH;
/// What the core sends per call: 100 Trying and the INVITE, the 180 and the
/// 200 relayed.
const SENT_PER_CALL: usize = 4;

/// A round's datagrams, in arrival order, with their sources.
type Round = Vec<(Peer, Bytes)>;

/// Builds a round: each INVITE goes through a scratch proxy with the same
/// seal key once, so the answers carry the branch the bench's proxies will
/// write (it is derived from the request and the key, not random).
fn round(inv: &Arc<InventoryHandle>) -> Round {
    let (pbx, carrier) = (peer(Transport::Udp, PBX), peer(Transport::Udp, CARRIER));
    let mut rng = Rng::new(7);
    let mut scratch = Proxy::new(settings(), inv.clone());
    let mut calls = Vec::with_capacity(CALLS);
    for n in 0..CALLS {
        let q = queue_id(numbered_queue(&mut rng));
        let caller = claimed_number(rng.below(NUMBERS)).0;
        let invite = typical_invite(n, &q, &caller);
        scratch.handle(Instant::now(), pbx, invite.clone());
        let fwd = std::iter::from_fn(|| scratch.poll_transmit())
            .find(|t| t.to == carrier)
            .expect("the INVITE is forwarded to the carrier")
            .data;
        while scratch.poll_event().is_some() {}
        calls.push((
            invite,
            carrier_answer(&fwd, 180, n),
            carrier_answer(&fwd, 200, n),
        ));
    }
    let mut msgs = Vec::with_capacity(3 * CALLS);
    for i in 0..CALLS + LAG {
        if let Some((invite, _, _)) = calls.get(i) {
            msgs.push((pbx, invite.clone()));
        }
        if let Some((_, ringing, ok)) = i.checked_sub(LAG).and_then(|j| calls.get(j)) {
            msgs.push((carrier, ringing.clone()));
            msgs.push((carrier, ok.clone()));
        }
    }
    msgs
}

/// The flood guard as the server builds it: the PBX trusted, the carrier
/// known, default limits.
fn guard() -> Guard {
    let s = settings();
    let carriers: Vec<_> = s.carriers.iter().map(|p| p.addr).collect();
    Guard::new(&s.trust, &carriers, &LimitsConfig::default())
}

/// Everything the core has to send and report, as the shell's flush takes
/// it; the sends go to a sink. Returns how many there were.
fn flush(proxy: &mut Proxy) -> usize {
    let mut sent = 0;
    while let Some(t) = proxy.poll_transmit() {
        black_box(&t);
        sent += 1;
    }
    while let Some(ev) = proxy.poll_event() {
        cidgate::telemetry::record(&ev);
    }
    sent
}

/// One core reading the datagrams itself (`workers = 1`).
fn inline_round(inv: &Arc<InventoryHandle>, msgs: &Round) -> Duration {
    let mut proxy = Proxy::new(settings(), inv.clone());
    let mut guard = guard();
    let start = Instant::now();
    let mut sent = 0;
    for batch in msgs.chunks(BATCH) {
        for (from, data) in batch {
            if guard
                .admit(Instant::now(), from.addr, &glance(data))
                .is_none()
            {
                continue;
            }
            proxy.handle(Instant::now(), *from, Bytes::copy_from_slice(data));
        }
        sent += flush(&mut proxy);
    }
    let took = start.elapsed();
    assert_eq!(sent, SENT_PER_CALL * CALLS, "every call went through");
    took
}

/// A worker thread: a proxy core on its own current-thread runtime, taking
/// what the router queued in batches. It lives across rounds, as a
/// server's workers live across calls: each round hands it a fresh queue
/// (and it makes a fresh proxy), and it reports how much it sent once the
/// round's queue is closed and empty.
struct Worker {
    rounds: std_mpsc::Sender<mpsc::Receiver<Input>>,
    sent: std_mpsc::Receiver<usize>,
}

impl Worker {
    fn spawn(inv: Arc<InventoryHandle>) -> Worker {
        let (rounds, round_rx) = std_mpsc::channel::<mpsc::Receiver<Input>>();
        let (sent_tx, sent) = std_mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut proxy = Proxy::new(settings(), inv.clone());
            for inbox in round_rx {
                if sent_tx.send(rt.block_on(serve(&mut proxy, inbox))).is_err() {
                    return;
                }
                // Dropped and made anew after the report, outside the
                // round's time, as inline_round's proxy is.
                proxy = Proxy::new(settings(), inv.clone());
            }
        });
        Worker { rounds, sent }
    }
}

/// One round of a worker: batches from its queue until it is closed, as
/// `Core::on_inputs` takes them; returns how much the core sent.
async fn serve(proxy: &mut Proxy, mut inbox: mpsc::Receiver<Input>) -> usize {
    let mut sent = 0;
    while let Some(first) = inbox.recv().await {
        take_batch(proxy, Some(first), &mut inbox, &mut sent);
    }
    sent
}

/// The cores of `pool/N`: core 0 on the feeding thread, as the server runs
/// it on its main runtime beside the dispatcher, the other N - 1 on threads
/// of their own.
struct Pool {
    cores: usize,
    threads: Vec<Worker>,
}

impl Pool {
    fn new(inv: &Arc<InventoryHandle>, cores: usize) -> Pool {
        let threads = (1..cores).map(|_| Worker::spawn(inv.clone())).collect();
        Pool { cores, threads }
    }
}

/// The dispatcher's router on this thread with core 0 beside it, the other
/// cores behind it.
fn pool_round(inv: &Arc<InventoryHandle>, msgs: &Round, pool: &Pool) -> Duration {
    let queue = LimitsConfig::default().worker_queue;
    let (mut router, inboxes) = Router::new(pool.cores, guard(), queue);
    let mut inboxes = inboxes.into_iter();
    let mut own = inboxes.next().expect("core 0's queue");
    for (w, inbox) in pool.threads.iter().zip(inboxes) {
        w.rounds.send(inbox).expect("the worker thread runs");
    }
    let mut core0 = Proxy::new(settings(), inv.clone());
    let start = Instant::now();
    let mut sent = 0;
    // The dispatcher routes up to a read batch per turn before core 0, on
    // the same thread, gets its turn.
    for turn in msgs.chunks(READ_BATCH) {
        for (from, data) in turn {
            let mut waited = 0;
            while router.route(Instant::now(), *from, 0, data) != Routed::Queued {
                // A full queue: core 0's own is emptied here; another
                // core's is waited for, as a dispatcher waits for the
                // sockets (bounded, so a routing bug cannot hang the bench).
                if take_turn(&mut core0, &mut own, &mut sent) == 0 {
                    waited += 1;
                    assert!(waited < 20_000, "a message was refused for 4 s");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        take_turn(&mut core0, &mut own, &mut sent);
    }
    // Closing the queues lets each core finish what it has and report.
    drop(router);
    while take_turn(&mut core0, &mut own, &mut sent) > 0 {}
    sent += pool
        .threads
        .iter()
        .map(|w| w.sent.recv().unwrap())
        .sum::<usize>();
    let took = start.elapsed();
    assert_eq!(sent, SENT_PER_CALL * CALLS, "every call went through");
    took
}

/// Core 0's turn on the dispatcher's thread: what its queue holds, in one
/// batch; returns how many messages it handled.
fn take_turn(proxy: &mut Proxy, inbox: &mut mpsc::Receiver<Input>, sent: &mut usize) -> usize {
    take_batch(proxy, None, inbox, sent)
}

/// One batch as `Core::on_inputs` takes it: `first` (when the caller
/// already waited for it) and what else is queued, up to [`BATCH`]
/// messages, then the core's sends; returns how many messages it handled.
fn take_batch(
    proxy: &mut Proxy,
    first: Option<Input>,
    inbox: &mut mpsc::Receiver<Input>,
    sent: &mut usize,
) -> usize {
    let mut next = first.or_else(|| inbox.try_recv().ok());
    let mut handled = 0;
    while let Some(input) = next.take() {
        if let Input::Message { from, data, .. } = input {
            handled += 1;
            proxy.handle(Instant::now(), from, data);
        }
        if handled < BATCH {
            next = inbox.try_recv().ok();
        }
    }
    if handled > 0 {
        *sent += flush(proxy);
    }
    handled
}

fn workers(c: &mut Criterion) {
    let inv = Arc::new(InventoryHandle::new(support::build_inventory(
        QUEUES, NUMBERS,
    )));
    let msgs = round(&inv);
    eprintln!(
        "workers: {} messages per round ({CALLS} calls), {} cores available",
        msgs.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut g = c.benchmark_group("workers");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("inline", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| inline_round(&inv, &msgs)).sum())
    });
    let pools: Vec<Pool> = [1, 2].iter().map(|&n| Pool::new(&inv, n)).collect();
    for pool in &pools {
        g.bench_function(format!("pool/{}", pool.cores), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| pool_round(&inv, &msgs, pool)).sum())
        });
    }
    g.finish();
    interleaved(&inv, &msgs, &pools);
}

/// Rounds of every case taken in turn (inline, pool/1, pool/2, inline, ...),
/// so that the ratios compare rounds run under the same conditions: on a
/// shared virtual machine the speed of the host drifts by ±15 % between
/// one criterion group and the next, which moves a ratio of two groups
/// more than the design does. Prints each case's median round and the
/// ratios of the medians.
fn interleaved(inv: &Arc<InventoryHandle>, msgs: &Round, pools: &[Pool]) {
    let mut inline = Vec::with_capacity(INTERLEAVED_ROUNDS);
    let mut pooled: Vec<Vec<Duration>> = vec![Vec::with_capacity(INTERLEAVED_ROUNDS); pools.len()];
    for _ in 0..INTERLEAVED_ROUNDS {
        inline.push(inline_round(inv, msgs));
        for (times, pool) in pooled.iter_mut().zip(pools) {
            times.push(pool_round(inv, msgs, pool));
        }
    }
    let inline = median(inline);
    eprintln!("interleaved, {INTERLEAVED_ROUNDS} rounds each, median per round:");
    eprintln!("  inline   {:>7.2} ms", inline.as_secs_f64() * 1e3);
    for (times, pool) in pooled.into_iter().zip(pools) {
        let m = median(times);
        eprintln!(
            "  pool/{}   {:>7.2} ms   inline / pool/{} = {:.2} x",
            pool.cores,
            m.as_secs_f64() * 1e3,
            pool.cores,
            inline.as_secs_f64() / m.as_secs_f64()
        );
    }
}

/// Rounds per case in [`interleaved`].
const INTERLEAVED_ROUNDS: usize = 61;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

criterion_group!(benches, workers);
criterion_main!(benches);
