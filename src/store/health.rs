//! Whether the shared store is reachable and what the instance serves: read
//! by `/healthz`, mirrored into `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::inventory::snapshot::Stamp;

#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    detail: Mutex<Detail>,
    /// The store's URL without password, for messages.
    url: String,
}

#[derive(Debug, Default)]
struct Detail {
    /// Since when and why the store is unreachable.
    down: Option<(Instant, String)>,
    /// What the instance serves.
    serving: Stamp,
    /// A version the store holds that this instance refused, and why.
    refused: Option<(Stamp, String)>,
    /// Served from the snapshot file, not (yet) from the store.
    from_snapshot: bool,
}

impl Health {
    /// Not contacted yet: neither up nor down.
    pub fn new(url: String) -> Health {
        Health {
            up: AtomicBool::new(false),
            detail: Mutex::new(Detail::default()),
            url,
        }
    }

    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A command succeeded. The gauges are set on every poll, so they are
    /// right from the first scrape whenever the metrics recorder came up.
    pub fn up(&self) {
        metrics::gauge!("cidgate_inventory_store_up").set(1.0);
        let serving = self.detail().serving;
        metrics::gauge!("cidgate_inventory_version").set(serving.version as f64);
        metrics::gauge!("cidgate_inventory_revision").set(serving.revision as f64);
        if self.up.swap(true, Ordering::Relaxed) {
            return;
        }
        let was = self.detail().down.take();
        if let Some((since, _)) = was {
            metrics::counter!("cidgate_inventory_store_reconnects_total").increment(1);
            tracing::info!(
                store = %self.url,
                after_s = since.elapsed().as_secs(),
                "inventory store reachable"
            );
        }
    }

    /// A command failed: the instance keeps serving what it has.
    pub fn down(&self, why: &str) {
        metrics::gauge!("cidgate_inventory_store_up").set(0.0);
        let was_up = self.up.swap(false, Ordering::Relaxed);
        let mut d = self.detail();
        match &mut d.down {
            Some((_, reason)) => *reason = why.to_string(),
            None => d.down = Some((Instant::now(), why.to_string())),
        }
        if was_up {
            tracing::warn!(
                store = %self.url,
                error = why,
                version = d.serving.version,
                revision = d.serving.revision,
                "inventory store unreachable; serving the last good inventory"
            );
        }
    }

    pub fn serving(&self, stamp: Stamp, from_snapshot: bool) {
        metrics::gauge!("cidgate_inventory_version").set(stamp.version as f64);
        metrics::gauge!("cidgate_inventory_revision").set(stamp.revision as f64);
        let mut d = self.detail();
        d.serving = stamp;
        d.from_snapshot = from_snapshot;
        if d.refused.as_ref().is_some_and(|(s, _)| *s != stamp) && !from_snapshot {
            d.refused = None;
        }
    }

    pub fn refused(&self, stamp: Stamp, why: String) {
        self.detail().refused = Some((stamp, why));
    }

    pub fn clear_refused(&self) {
        self.detail().refused = None;
    }

    /// The store's lines of `/healthz`: degraded while the store is
    /// unreachable or holds a version this instance refused (the gateway
    /// still serves calls in both cases, so `/healthz` stays 200).
    pub fn report(&self) -> String {
        let d = self.detail();
        let serving = format!(
            "serving inventory version {} revision {}{}",
            d.serving.version,
            d.serving.revision,
            if d.from_snapshot {
                " from the snapshot file"
            } else {
                ""
            }
        );
        if let Some((since, why)) = &d.down {
            return format!(
                "degraded: inventory store {} unreachable for {} s ({why}); {serving}\n",
                self.url,
                since.elapsed().as_secs()
            );
        }
        if let Some((stamp, why)) = &d.refused {
            return format!(
                "degraded: inventory store {} holds version {} revision {}, refused: {why}; {serving}\n",
                self.url, stamp.version, stamp.revision
            );
        }
        format!("ok: {serving} from {}\n", self.url)
    }
}
