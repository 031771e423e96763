//! Signing off the proxy's thread: a few threads behind one bounded queue.
//!
//! An ES256 signature costs tens of microseconds, as much as the rest of a
//! call's handling; done on the core's thread it would delay every other
//! message queued behind it. The core instead asks for a signature (see
//! `proxy`), the shell submits it here and hands the result back when a
//! worker is done, and the core keeps serving meanwhile.
//!
//! The queue is bounded: when signing cannot keep up, [`SigningPool::try_submit`]
//! refuses at once instead of letting latency grow without limit, and the
//! call is answered `503` with `Retry-After` (never sent unsigned).
//!
//! Handing a job over costs more than the signature itself at low rates: the
//! signing thread must be woken and scheduled, and the result wakes the core
//! again (two thread wake-ups, ~28 µs here against ~18 µs of signing). When
//! the pool has nothing queued or in hand and the core has nothing else
//! waiting, [`SigningPool::sign_if_idle`] lets the core sign on its own
//! thread instead: no other message is delayed then, and under load, when
//! something does wait, jobs go to the threads as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::passport::Claims;
use super::signer::SignError;

/// What the core asked to be signed, with its token for the answer.
#[derive(Debug, Clone)]
pub struct SignJob {
    pub token: u64,
    pub claims: Claims,
}

/// A finished job: the Identity header value, or why there is none.
#[derive(Debug, Clone)]
pub struct Signed {
    pub token: u64,
    pub result: Result<String, SignError>,
}

/// The queue was full: the caller must refuse the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signing queue full")]
pub struct Overloaded;

/// Default pending-signature bound per signing thread: at about 25 µs a
/// signature, 256 queued is under 10 ms of work, far below any SIP timer.
pub const QUEUE_PER_THREAD: usize = 256;

struct Queued {
    job: SignJob,
    queued_at: Instant,
}

/// How a job is signed, shared by the threads and the owner's idle path.
type SignFn = dyn Fn(&Claims) -> Result<String, SignError> + Send + Sync;

/// Threads that sign, fed by one bounded queue. Dropping the pool closes
/// the queue; the threads finish what is queued and exit.
pub struct SigningPool {
    queue: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
    meters: Meters,
    sign: Arc<SignFn>,
}

/// The jobs waiting for a thread. Idle threads wait on `ready`; a job wakes
/// exactly one of them (a channel receiver shared behind a mutex would also
/// wake the next waiter on every hand-over, two thread wake-ups per job).
struct Queue {
    jobs: Mutex<Waiting>,
    ready: Condvar,
    capacity: usize,
    /// Jobs a thread has taken and not yet answered.
    in_hand: AtomicUsize,
}

struct Waiting {
    jobs: VecDeque<Queued>,
    closed: bool,
}

/// The pool's metric handles, looked up once instead of per signature.
#[derive(Clone)]
struct Meters {
    depth: metrics::Gauge,
    refused: metrics::Counter,
    signed: metrics::Counter,
    failed: metrics::Counter,
    latency: metrics::Histogram,
    inline: metrics::Counter,
}

impl Meters {
    fn new() -> Meters {
        Meters {
            depth: metrics::gauge!("cidgate_stir_queue_depth"),
            refused: metrics::counter!("cidgate_stir_refused_total"),
            signed: metrics::counter!("cidgate_stir_signatures_total"),
            failed: metrics::counter!("cidgate_stir_failures_total"),
            latency: metrics::histogram!("cidgate_stir_sign_seconds"),
            inline: metrics::counter!("cidgate_stir_signed_inline_total"),
        }
    }

    /// Counts a signature made (with its latency since `queued_at`) or failed.
    fn record(&self, result: &Result<String, SignError>, queued_at: Instant) {
        match result {
            Ok(_) => {
                self.signed.increment(1);
                self.latency.record(queued_at.elapsed().as_secs_f64());
            }
            Err(_) => self.failed.increment(1),
        }
    }
}

impl SigningPool {
    /// Starts `threads` workers running `sign` over a queue of `capacity`
    /// jobs; each result goes to `done` (called on the worker thread).
    pub fn start<S, D>(threads: usize, capacity: usize, sign: S, done: D) -> SigningPool
    where
        S: Fn(&Claims) -> Result<String, SignError> + Send + Sync + 'static,
        D: Fn(Signed) + Send + Sync + 'static,
    {
        let capacity = capacity.max(1);
        let queue = Arc::new(Queue {
            jobs: Mutex::new(Waiting {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            in_hand: AtomicUsize::new(0),
        });
        let meters = Meters::new();
        let sign: Arc<SignFn> = Arc::new(sign);
        let done = Arc::new(done);
        let threads = (0..threads.max(1))
            .map(|i| {
                let queue = queue.clone();
                let (sign, done) = (sign.clone(), done.clone());
                let meters = meters.clone();
                std::thread::Builder::new()
                    .name(format!("cidgate-sign-{i}"))
                    .spawn(move || worker(&queue, &meters, &*sign, &*done))
                    .expect("spawning a signing thread")
            })
            .collect();
        SigningPool {
            queue,
            threads,
            meters,
            sign,
        }
    }

    /// Signs `job` on the caller's thread when no job is queued or being
    /// signed, so that it costs the signature alone and no hand-off; `None`
    /// when the pool is busy (then [`SigningPool::try_submit`] it). Only a
    /// caller with nothing else waiting should ask: the signature holds its
    /// thread for its whole duration.
    pub fn sign_if_idle(&self, job: &SignJob) -> Option<Result<String, SignError>> {
        let idle = match self.queue.jobs.lock() {
            Ok(w) => !w.closed && w.jobs.is_empty(),
            Err(_) => false,
        } && self.queue.in_hand.load(Ordering::Acquire) == 0;
        if !idle {
            return None;
        }
        let started = Instant::now();
        let result = (self.sign)(&job.claims);
        self.meters.record(&result, started);
        self.meters.inline.increment(1);
        Some(result)
    }

    /// Queues a job, or refuses at once when the queue is full.
    pub fn try_submit(&self, job: SignJob) -> Result<(), Overloaded> {
        let queued = Queued {
            job,
            queued_at: Instant::now(),
        };
        let accepted = match self.queue.jobs.lock() {
            Ok(mut w) if !w.closed && w.jobs.len() < self.queue.capacity => {
                w.jobs.push_back(queued);
                true
            }
            _ => false,
        };
        if !accepted {
            self.meters.refused.increment(1);
            return Err(Overloaded);
        }
        self.queue.ready.notify_one();
        self.meters.depth.increment(1.0);
        Ok(())
    }

    /// Jobs queued and not yet taken by a worker.
    pub fn depth(&self) -> usize {
        self.queue.jobs.lock().map_or(0, |w| w.jobs.len())
    }
}

impl Drop for SigningPool {
    fn drop(&mut self) {
        if let Ok(mut w) = self.queue.jobs.lock() {
            w.closed = true;
        }
        self.queue.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The next job, waiting for one; `None` once the pool is closed and empty.
/// The job counts as in hand from here until its answer is delivered.
fn next_job(queue: &Queue) -> Option<Queued> {
    let mut w = queue.jobs.lock().ok()?;
    loop {
        if let Some(job) = w.jobs.pop_front() {
            queue.in_hand.fetch_add(1, Ordering::AcqRel);
            return Some(job);
        }
        if w.closed {
            return None;
        }
        w = queue.ready.wait(w).ok()?;
    }
}

fn worker<S, D>(queue: &Queue, meters: &Meters, sign: &S, done: &D)
where
    S: Fn(&Claims) -> Result<String, SignError> + ?Sized,
    D: Fn(Signed),
{
    // The lock is held only to take a job, never while signing.
    while let Some(Queued { job, queued_at }) = next_job(queue) {
        meters.depth.decrement(1.0);
        let result = sign(&job.claims);
        meters.record(&result, queued_at);
        done(Signed {
            token: job.token,
            result,
        });
        queue.in_hand.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stir::passport::{Attest, Destination, OrigId};
    use std::sync::mpsc::{channel, Receiver};
    use std::sync::Barrier;

    fn job(token: u64) -> SignJob {
        SignJob {
            token,
            claims: Claims {
                orig_tn: "14155550100".into(),
                dest: Destination::Tn("14155550199".into()),
                origid: OrigId::random(),
                attest: Attest::A,
                rcd_name: None,
            },
        }
    }

    #[test]
    fn every_job_is_answered_with_its_token() {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        let pool = SigningPool::start(
            2,
            64,
            |c: &Claims| Ok(format!("signed {}", c.orig_tn)),
            move |s| tx.lock().unwrap().send(s).unwrap(),
        );
        for t in 0..50 {
            pool.try_submit(job(t)).unwrap();
        }
        let mut tokens: Vec<u64> = (0..50).map(|_| rx.recv().unwrap().token).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (0..50).collect::<Vec<_>>());
        assert_eq!(pool.depth(), 0);
    }

    /// A one-thread pool of `capacity` whose thread, given a job with
    /// `orig_tn` "1", stops inside it: `entered` waits until it is there,
    /// `gate` lets it go on. Tokens of finished jobs arrive on the receiver.
    struct HeldPool {
        pool: SigningPool,
        done: Receiver<u64>,
        entered: Arc<Barrier>,
        gate: Arc<Barrier>,
    }

    impl HeldPool {
        fn start(capacity: usize) -> HeldPool {
            let gate = Arc::new(Barrier::new(2));
            let entered = Arc::new(Barrier::new(2));
            let (g, e) = (gate.clone(), entered.clone());
            let (tx, done) = channel();
            let tx = Mutex::new(tx);
            let pool = SigningPool::start(
                1,
                capacity,
                move |c: &Claims| {
                    if c.orig_tn == "1" {
                        e.wait();
                        g.wait();
                    }
                    Ok(format!("signed {}", c.orig_tn))
                },
                move |s| tx.lock().unwrap().send(s.token).unwrap(),
            );
            HeldPool {
                pool,
                done,
                entered,
                gate,
            }
        }

        /// Submits the job that holds the thread, once the thread is in it.
        fn hold(&self, token: u64) {
            let mut slow = job(token);
            slow.claims.orig_tn = "1".into();
            self.pool.try_submit(slow).unwrap();
            self.entered.wait();
        }

        /// Lets the thread go on and collects `n` finished tokens, sorted.
        fn release(&self, n: usize) -> Vec<u64> {
            self.gate.wait();
            let mut got: Vec<u64> = (0..n).map(|_| self.done.recv().unwrap()).collect();
            got.sort_unstable();
            got
        }
    }

    #[test]
    fn a_full_queue_refuses_instead_of_waiting() {
        // The only worker is held inside its first job; the queue holds two
        // more; the fourth submission must be refused at once.
        let h = HeldPool::start(2);
        h.hold(0);
        h.pool.try_submit(job(1)).unwrap();
        h.pool.try_submit(job(2)).unwrap();
        assert_eq!(h.pool.depth(), 2);
        assert_eq!(h.pool.try_submit(job(3)), Err(Overloaded));
        assert_eq!(h.release(3), vec![0, 1, 2]);
    }

    #[test]
    fn an_idle_pool_lets_the_caller_sign_and_a_busy_one_leaves_it_to_the_threads() {
        let h = HeldPool::start(4);
        // Idle: signed here, nothing goes through the threads.
        let here = h
            .pool
            .sign_if_idle(&job(7))
            .expect("an idle pool signs inline");
        assert_eq!(here.as_deref(), Ok("signed 14155550100"));
        // A thread holds a job: the caller must not sign beside it.
        h.hold(1);
        assert!(
            h.pool.sign_if_idle(&job(8)).is_none(),
            "a busy pool leaves the job to the threads"
        );
        // Queued but not taken counts as busy too.
        h.pool.try_submit(job(8)).unwrap();
        assert!(h.pool.sign_if_idle(&job(9)).is_none());
        assert_eq!(h.release(2), vec![1, 8]);
        assert!(
            h.done.try_recv().is_err(),
            "the inline job never reached the threads"
        );
    }
}
