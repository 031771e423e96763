//! Inventory reload without restart: on SIGHUP and when the CSV files change.
//! A reload with any bad line is refused and the running inventory stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::inventory::{InventoryHandle, Region};

/// How often the files' modification times are compared.
const POLL: Duration = Duration::from_secs(2);

/// Reloads and logs the verdict; returns whether the new inventory is live.
pub fn reload_now(handle: &InventoryHandle, queues: &Path, numbers: &Path, region: Region) -> bool {
    match handle.reload(queues, numbers, region) {
        Ok(counts) => {
            tracing::info!(
                queues = counts.queues,
                numbers = counts.numbers,
                "inventory reloaded"
            );
            for w in handle.current().warnings() {
                tracing::warn!("inventory: {w}");
            }
            metrics::counter!("cidgate_inventory_reloads_total", "result" => "ok").increment(1);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "inventory reload refused; the previous inventory stays in force");
            metrics::counter!("cidgate_inventory_reloads_total", "result" => "refused")
                .increment(1);
            false
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Reloads the TLS certificate and key on SIGHUP (with the inventory); a set
/// that does not load is refused and the running one stays.
pub fn spawn_tls_reload(tls: Arc<crate::transport::tls::TlsHandle>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let tls = tls.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_logged()).await;
        }
    });
}

pub fn spawn_watchers(config: &Config, handle: Arc<InventoryHandle>) {
    let queues: PathBuf = config.inventory.queues.clone();
    let numbers: PathBuf = config.inventory.numbers.clone();
    let region = config.callerid.default_region;
    {
        let (handle, queues, numbers) = (handle.clone(), queues.clone(), numbers.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let (h, q, n) = (handle.clone(), queues.clone(), numbers.clone());
                let _ = tokio::task::spawn_blocking(move || reload_now(&h, &q, &n, region)).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut seen = (mtime(&queues), mtime(&numbers));
        loop {
            tokio::time::sleep(POLL).await;
            let now = (mtime(&queues), mtime(&numbers));
            if now != seen {
                seen = now;
                let (h, q, n) = (handle.clone(), queues.clone(), numbers.clone());
                let _ = tokio::task::spawn_blocking(move || reload_now(&h, &q, &n, region)).await;
            }
        }
    });
}
