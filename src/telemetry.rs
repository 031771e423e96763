//! Logging and metrics for core events.

use crate::proxy::Event;

/// Turns a core event into one structured log line and the matching counters.
pub fn record(ev: &Event) {
    match ev {
        Event::Decision {
            call_id,
            queue,
            outcome,
            number,
        } => {
            tracing::info!(
                call_id = %call_id,
                queue = %queue,
                outcome = %outcome,
                number = number.as_deref().unwrap_or(""),
                "caller-id decision"
            );
            metrics::counter!("cidgate_calls_total", "outcome" => *outcome).increment(1);
        }
        Event::Refused { from, code, reason } => {
            tracing::debug!(%from, code, reason, "request refused");
            metrics::counter!("cidgate_refused_total", "code" => code.to_string()).increment(1);
        }
        Event::Dropped { from, reason } => {
            tracing::debug!(%from, reason, "message dropped");
            metrics::counter!("cidgate_dropped_total").increment(1);
        }
    }
}

/// Installs the tracing subscriber: human-readable or JSON lines on stderr.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
