//! Log lines to stderr in a few writes instead of one per line.
//!
//! The gateway writes a line per call; unbuffered, that is a `write` system
//! call per call on the core's thread (about 2 % of the CPU a call costs at
//! 1 000 calls/s). Lines here go into a buffer that a flusher thread writes
//! out [`DELAY`] after the first line waiting in it, so a busy gateway makes
//! a write a few times a second and an idle one none at all. Warnings and
//! errors are written at once (with everything before them, in order), and
//! so is what is waiting when the process ends normally ([`LogFlush`]) or
//! panics.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait for company before it is written. Each batch
/// costs the core a wake-up of the flusher (a `futex` call) and the flusher
/// a sleep, a wake-up and a `write`: at 1 000 calls/s, 10 ms made that about
/// 80 times a second; 100 ms makes it under 10, and a human reading the log
/// cannot tell.
pub const DELAY: Duration = Duration::from_millis(100);

/// Buffered bytes that are written at once, without waiting for the flusher.
const HIGH_WATER: usize = 64 * 1024;

/// The lines waiting and where they go (stderr; a buffer in tests).
struct Pending {
    lines: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl Pending {
    /// Writes what is waiting. Called with the lock held, so that lines
    /// reach the output in the order they were logged, whoever writes them.
    fn write_out(&mut self) {
        if !self.lines.is_empty() {
            let _ = self.out.write_all(&self.lines);
            let _ = self.out.flush();
            self.lines.clear();
        }
    }
}

/// The buffer shared by every thread that logs, and the flusher's signal.
struct Shared {
    pending: Mutex<Pending>,
    waiting: Condvar,
    /// A flusher thread runs; without one every line is written at once.
    flusher: bool,
}

impl Shared {
    fn new(out: Box<dyn Write + Send>, flusher: bool) -> Shared {
        Shared {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(HIGH_WATER),
                out,
            }),
            waiting: Condvar::new(),
            flusher,
        }
    }

    /// A buffer into `out` with its flusher thread running (or, when no
    /// thread can be started, one that writes every line at once).
    fn start(out: impl Fn() -> Box<dyn Write + Send>) -> Arc<Shared> {
        let shared = Arc::new(Shared::new(out(), true));
        let flusher = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("cidgate-log".into())
            .spawn(move || flush_forever(&flusher));
        match spawned {
            Ok(_) => shared,
            Err(_) => Arc::new(Shared::new(out(), false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A thread that panicked while holding the lock left whole lines or
        // nothing (extend is the only mutation): keep logging.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
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
            let shared = Shared::start(|| Box::new(std::io::stderr()));
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // try_lock: the panicking thread may hold the lock itself.
                if let Some(shared) = SHARED.get() {
                    if let Ok(mut pending) = shared.pending.try_lock() {
                        pending.write_out();
                    }
                }
                previous(info);
            }));
            shared
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
        while pending.lines.is_empty() {
            pending = shared
                .waiting
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(pending);
        std::thread::sleep(DELAY);
        shared.lock().write_out();
    }
}

/// Writes out every line still waiting (at exit, before a panic message).
pub(crate) fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.lock().write_out();
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
        let was_empty = pending.lines.is_empty();
        pending.lines.extend_from_slice(buf);
        if self.urgent || pending.lines.len() >= HIGH_WATER || !self.shared.flusher {
            pending.write_out();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn log(shared: &Shared, urgent: bool, line: &str) {
        EventWriter { shared, urgent }
            .write_all(line.as_bytes())
            .unwrap();
    }

    #[test]
    fn lines_wait_until_an_urgent_one_writes_them_all_in_order() {
        // A flusher is promised but none runs: only urgency writes.
        let sink = Sink::default();
        let shared = Shared::new(Box::new(sink.clone()), true);
        log(&shared, false, "info 1\n");
        log(&shared, false, "info 2\n");
        assert_eq!(sink.text(), "");
        log(&shared, true, "warn 3\n");
        assert_eq!(sink.text(), "info 1\ninfo 2\nwarn 3\n");
    }

    #[test]
    fn a_full_buffer_or_no_flusher_writes_at_once() {
        let sink = Sink::default();
        let shared = Shared::new(Box::new(sink.clone()), true);
        let long = format!("{}\n", "x".repeat(HIGH_WATER));
        log(&shared, false, &long);
        assert_eq!(sink.text(), long);
        let alone = Sink::default();
        let shared = Shared::new(Box::new(alone.clone()), false);
        log(&shared, false, "info\n");
        assert_eq!(alone.text(), "info\n");
    }

    #[test]
    fn the_flusher_writes_a_waiting_line_by_itself() {
        let sink = Sink::default();
        let out = sink.clone();
        let shared = Shared::start(move || Box::new(out.clone()));
        log(&shared, false, "info\n");
        // A bound against hanging, not a timing claim.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while sink.text().is_empty() && std::time::Instant::now() < end {
            std::thread::sleep(DELAY);
        }
        assert_eq!(sink.text(), "info\n");
    }
}
