//! Logging and metrics for core events.
//!
//! Metrics keep apart what an operator acts on differently:
//! `cidgate_calls_total{outcome}` counts caller-ID decisions, the reject
//! outcomes (`unknown_queue`, `no_queue_number`) included;
//! `cidgate_requests_refused_total{reason,code}` counts requests the gateway
//! refused for any other reason (an untrusted source, a malformed request, a
//! loop); `cidgate_dropped_total` counts input dropped without an answer.

mod log_writer;
mod untrusted;

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use log_writer::LogFlush;
pub use untrusted::{Line, UntrustedLog, INTERVAL as UNTRUSTED_LOG_INTERVAL};

use crate::proxy::Event;

/// Untrusted refusals of every gateway in the process, between log lines.
static UNTRUSTED: Mutex<UntrustedLog> = Mutex::new(UntrustedLog::new());

/// The `reason` label of a refusal, from its status: each code the core
/// answers with on its own has one cause.
fn refusal_reason(code: u16) -> &'static str {
    match code {
        400 => "bad_request",
        403 => "no_dialog",
        420 => "bad_extension",
        481 => "no_transaction",
        482 => "loop_detected",
        483 => "too_many_hops",
        503 => "unavailable",
        505 => "version_not_supported",
        _ => "other",
    }
}

/// Turns a core event into one structured log line and the matching counters.
pub fn record(ev: &Event) {
    match ev {
        Event::Decision {
            call_id,
            queue,
            outcome,
            number,
            origid,
        } => {
            tracing::info!(
                call_id = %call_id,
                queue = %queue,
                outcome = %outcome,
                number = number.as_deref().unwrap_or(""),
                origid = origid.as_deref().unwrap_or(""),
                "caller-id decision"
            );
            metrics::counter!("cidgate_calls_total", "outcome" => *outcome).increment(1);
        }
        Event::Refused { from, code, reason } => {
            tracing::debug!(%from, code, reason, "request refused");
            metrics::counter!(
                "cidgate_requests_refused_total",
                "reason" => refusal_reason(*code),
                "code" => code.to_string()
            )
            .increment(1);
        }
        Event::Untrusted { from } => {
            metrics::counter!(
                "cidgate_requests_refused_total",
                "reason" => "untrusted",
                "code" => "403"
            )
            .increment(1);
            let line = lock_untrusted().note(Instant::now(), *from);
            log_untrusted(line);
        }
        Event::Dropped { from, reason } => {
            tracing::debug!(%from, reason, "message dropped");
            metrics::counter!("cidgate_dropped_total").increment(1);
        }
        Event::CarrierState {
            carrier,
            up,
            reason,
        } => {
            let name = format!("{}:{}", carrier.transport, carrier.addr);
            if *up {
                tracing::info!(carrier = %name, reason, "carrier up");
            } else {
                tracing::warn!(carrier = %name, reason, "carrier down");
            }
            metrics::counter!("cidgate_carrier_changes_total").increment(1);
        }
    }
}

fn lock_untrusted() -> std::sync::MutexGuard<'static, UntrustedLog> {
    UNTRUSTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn log_untrusted(line: Option<Line>) {
    match line {
        None => {}
        Some(Line::First(from)) => tracing::warn!(
            source = %from,
            "request from a source not in [trust] pbx refused (403); more are summed up every {} s",
            UNTRUSTED_LOG_INTERVAL.as_secs()
        ),
        Some(Line::Summary {
            total,
            sources,
            seconds,
        }) => tracing::warn!(
            refused = total,
            sources = %sources,
            "{total} more requests from sources not in [trust] pbx refused in the last {seconds} s"
        ),
    }
}

/// Writes the summary of untrusted refusals once per interval; runs beside
/// each gateway (several in one process share the counts).
pub async fn summarise_untrusted() {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let line = lock_untrusted().flush(Instant::now());
        log_untrusted(line);
    }
}

/// Installs the tracing subscriber: human-readable or JSON lines on stderr,
/// written in batches at most `log_writer::DELAY` apart; hold the
/// returned guard until the process ends so that the last lines are written.
#[must_use = "lines still waiting are written when the guard is dropped"]
pub fn init_logging(json: bool) -> LogFlush {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(log_writer::BufferedStderr::get());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    LogFlush
}
