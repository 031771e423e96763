//! Admin HTTP API (loopback by default): health, Prometheus metrics, inventory
//! look-up, upsert, delete and reload.
//!
//! Upserts and deletes change the running inventory only (atomically, checked
//! like a file load); the next reload from the files replaces them, so the files
//! stay the source of truth.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::inventory::{InventoryHandle, Region};

#[derive(Clone)]
struct AppState {
    inventory: Arc<InventoryHandle>,
    /// Serialises edits and reloads, so that no edit is lost to a concurrent one.
    edits: Arc<tokio::sync::Mutex<()>>,
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
        edits: Arc::new(tokio::sync::Mutex::new(())),
        queues: config.inventory.queues.clone(),
        numbers: config.inventory.numbers.clone(),
        region: config.callerid.default_region,
        prometheus: prometheus(),
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/inventory", get(summary))
        .route(
            "/inventory/queues/{id}",
            get(queue).put(upsert_queue).delete(delete_queue),
        )
        .route(
            "/inventory/numbers/{number}",
            put(claim_number).delete(release_number),
        )
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

/// Applies one edit to a copy of the running inventory and swaps it in when the
/// result checks out; the edit runs on the blocking pool (it copies the sets).
async fn apply_edit(
    s: AppState,
    edit: impl FnOnce(&mut crate::inventory::InventoryBuilder) -> Result<bool, String> + Send + 'static,
) -> (StatusCode, String) {
    let _turn = s.edits.lock().await;
    let handle = s.inventory.clone();
    let region = s.region;
    let r = tokio::task::spawn_blocking(move || {
        let mut b = handle.snapshot().edit(region);
        match edit(&mut b) {
            Err(reason) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{reason}\n")),
            Ok(false) => (StatusCode::NOT_FOUND, "not in the inventory\n".into()),
            Ok(true) => match b.build() {
                Ok(inv) => {
                    let summary = format!(
                        "ok: {} queues, {} numbers\n",
                        inv.queue_count(),
                        inv.claimed_count()
                    );
                    handle.replace(inv);
                    (StatusCode::OK, summary)
                }
                Err(e) => (StatusCode::CONFLICT, format!("{e}\n")),
            },
        }
    })
    .await;
    r.unwrap_or((
        StatusCode::INTERNAL_SERVER_ERROR,
        "edit task failed\n".into(),
    ))
}

/// `PUT /inventory/queues/{id}` with one CSV row as body:
/// `caller_id_number,caller_id_name,region,anonymous` (as in queues.csv, without
/// the id; trailing fields may be left out).
async fn upsert_queue(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: String,
) -> (StatusCode, String) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.as_bytes());
    let row = match reader.records().next() {
        Some(Ok(r)) => r,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "body: one CSV row `caller_id_number,caller_id_name,region,anonymous`\n".into(),
            )
        }
    };
    let number = row.get(0).unwrap_or("").to_string();
    let name = row.get(1).unwrap_or("").to_string();
    let region = match row.get(2).unwrap_or("") {
        "" => None,
        r => match Region::parse(r) {
            Some(r) => Some(r),
            None => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("region {r:?} is not known\n"),
                )
            }
        },
    };
    let anonymous = match row.get(3).unwrap_or("").to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => false,
        "true" | "yes" | "1" => true,
        other => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("anonymous {other:?}: expected true or false\n"),
            )
        }
    };
    apply_edit(s, move |b| {
        b.remove_queue(&id);
        let number = (!number.is_empty()).then_some(number.as_str());
        b.add_queue(&id, number, &name, region, anonymous)
            .map(|_| true)
            .map_err(|e| e.to_string())
    })
    .await
}

async fn delete_queue(State(s): State<AppState>, Path(id): Path<String>) -> (StatusCode, String) {
    apply_edit(s, move |b| Ok(b.remove_queue(&id))).await
}

/// `PUT /inventory/numbers/{number}`: claims a number (E.164, or national form
/// in the default region).
async fn claim_number(
    State(s): State<AppState>,
    Path(number): Path<String>,
) -> (StatusCode, String) {
    apply_edit(s, move |b| {
        b.add_number(&number)
            .map(|_| true)
            .map_err(|e| e.to_string())
    })
    .await
}

/// `DELETE /inventory/numbers/{number}`: refused (409) while a queue uses it.
async fn release_number(
    State(s): State<AppState>,
    Path(number): Path<String>,
) -> (StatusCode, String) {
    apply_edit(s, move |b| {
        b.remove_number(&number).map_err(|e| e.to_string())
    })
    .await
}

async fn reload(State(s): State<AppState>) -> (StatusCode, String) {
    let _turn = s.edits.clone().lock_owned().await;
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
