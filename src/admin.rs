//! Admin HTTP API (loopback by default): health, Prometheus metrics, inventory
//! look-up and reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::inventory::{InventoryHandle, Region};

#[derive(Clone)]
struct AppState {
    inventory: Arc<InventoryHandle>,
    queues: PathBuf,
    numbers: PathBuf,
    region: Region,
    prometheus: PrometheusHandle,
}

/// The process-wide Prometheus recorder (installed once).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Serves the admin API on `addr` (port 0 picks one); returns the bound
/// address and the server task.
pub async fn start(
    addr: SocketAddr,
    config: &Config,
    inventory: Arc<InventoryHandle>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let state = AppState {
        inventory,
        queues: config.inventory.queues.clone(),
        numbers: config.inventory.numbers.clone(),
        region: config.callerid.default_region,
        prometheus: prometheus(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/inventory", get(summary))
        .route("/inventory/queues/{id}", get(queue))
        .route("/inventory/reload", post(reload))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "admin API listening");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((bound, task))
}

async fn metrics_text(State(s): State<AppState>) -> String {
    let inv = s.inventory.snapshot();
    metrics::gauge!("cidgate_inventory_queues").set(inv.queue_count() as f64);
    metrics::gauge!("cidgate_inventory_numbers").set(inv.claimed_count() as f64);
    s.prometheus.render()
}

async fn summary(State(s): State<AppState>) -> String {
    let inv = s.inventory.snapshot();
    format!(
        "queues {}\nnumbers {}\n",
        inv.queue_count(),
        inv.claimed_count()
    )
}

async fn queue(State(s): State<AppState>, Path(id): Path<String>) -> (StatusCode, String) {
    let inv = s.inventory.snapshot();
    match inv.queue(&id) {
        Some(q) => (
            StatusCode::OK,
            format!(
                "queue_id {}\ncaller_id_number {}\ncaller_id_name {}\nanonymous {}\n",
                q.id,
                q.number
                    .as_ref()
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                q.name,
                q.anonymous
            ),
        ),
        None => (StatusCode::NOT_FOUND, format!("no queue {id:?}\n")),
    }
}

async fn reload(State(s): State<AppState>) -> (StatusCode, String) {
    let r =
        tokio::task::spawn_blocking(move || s.inventory.reload(&s.queues, &s.numbers, s.region))
            .await;
    match r {
        Ok(Ok((q, n))) => (
            StatusCode::OK,
            format!("reloaded: {q} queues, {n} numbers\n"),
        ),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload task failed\n".into(),
        ),
    }
}
