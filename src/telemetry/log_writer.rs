//! Log lines to stderr in a few writes instead of one per line.
//!
//! The gateway writes a line per call; unbuffered, that is a `write` system
//! call per call on the core's thread (about 2 % of the CPU a call costs at
//! 1 000 calls/s). Lines here go into a buffer that a flusher thread writes
//! out [`DELAY`] after the first line waiting in it, so a busy gateway makes
//! a write every few milliseconds and an idle one none at all. Warnings and
//! errors are written at once (with everything before them, in order), and
//! so is what is waiting when the process ends normally ([`LogFlush`]) or
//! panics.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait for company before it is written.
pub const DELAY: Duration = Duration::from_millis(10);

/// Buffered bytes that are written at once, without waiting for the flusher.
const HIGH_WATER: usize = 64 * 1024;

/// The buffer shared by every thread that logs, and the flusher's signal.
struct Shared {
    pending: Mutex<Vec<u8>>,
    waiting: Condvar,
    /// A flusher thread runs; without one every line is written at once.
    flusher: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A thread that panicked while holding the lock left whole lines or
        // nothing (extend is the only mutation): keep logging.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes what is waiting; the lock is held across the write so that lines
/// reach stderr in the order they were logged, whoever writes them.
fn write_out(pending: &mut Vec<u8>) {
    if !pending.is_empty() {
        let _ = std::io::stderr().lock().write_all(pending);
        pending.clear();
    }
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The writer `tracing_subscriber::fmt` gets: one per event.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

impl BufferedStderr {
    /// The process's buffered stderr; the first call starts the flusher
    /// thread and makes a panic write out what is waiting first.
    pub fn get() -> BufferedStderr {
        let shared = SHARED.get_or_init(|| {
            let shared = |flusher| {
                Arc::new(Shared {
                    pending: Mutex::new(Vec::with_capacity(HIGH_WATER)),
                    waiting: Condvar::new(),
                    flusher,
                })
            };
            let buffered = shared(true);
            let flusher = buffered.clone();
            let spawned = std::thread::Builder::new()
                .name("cidgate-log".into())
                .spawn(move || flush_forever(&flusher));
            if spawned.is_err() {
                return shared(false);
            }
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // try_lock: the panicking thread may hold the lock itself.
                if let Some(shared) = SHARED.get() {
                    if let Ok(mut pending) = shared.pending.try_lock() {
                        write_out(&mut pending);
                    }
                }
                previous(info);
            }));
            buffered
        });
        BufferedStderr {
            shared: shared.clone(),
        }
    }
}

/// Waits for a first line, gives it [`DELAY`] to gather others, writes.
fn flush_forever(shared: &Shared) {
    loop {
        let mut pending = shared.lock();
        while pending.is_empty() {
            pending = shared
                .waiting
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(pending);
        std::thread::sleep(DELAY);
        write_out(&mut shared.lock());
    }
}

/// Writes out every line still waiting (at exit, before a panic message).
pub(crate) fn flush() {
    if let Some(shared) = SHARED.get() {
        write_out(&mut shared.lock());
    }
}

/// Writes out what is waiting when dropped: held by `main` for the
/// gateway's lifetime.
pub struct LogFlush;

impl Drop for LogFlush {
    fn drop(&mut self) {
        flush();
    }
}

/// One event's writer: appends, and writes out at once when the event is
/// urgent or the buffer is full.
pub struct EventWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        let was_empty = pending.is_empty();
        pending.extend_from_slice(buf);
        if self.urgent || pending.len() >= HIGH_WATER || !self.shared.flusher {
            write_out(&mut pending);
        } else if was_empty {
            self.shared.waiting.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            shared: &self.shared,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EventWriter {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}
