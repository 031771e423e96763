//! Admin HTTP API (loopback by default): health, Prometheus metrics, inventory
//! look-up, upsert, delete and reload.
//!
//! Upserts and deletes change the running inventory only (atomically, checked
//! like a file load); the next reload from the files replaces them, so the files
//! stay the source of truth. With a shared store (`[inventory] redis`) they are
//! checked the same way, written to the store and reach every instance, and
//! `/healthz` also says whether the store is reachable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::Context;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

use crate::carrier_board::{CarrierBoard, CarrierHealth};
use crate::config::Config;
use crate::inventory::{
    Counts, Edit, Inventory, InventoryBuilder, InventoryError, InventoryHandle, Queue, Region, E164,
};
use crate::store::{Edited, Store};
use crate::transport::tls::TlsHandle;

#[derive(Clone)]
struct AppState {
    inventory: Arc<InventoryHandle>,
    /// Serialises edits and reloads, so that no edit is lost to a concurrent one.
    edits: Arc<tokio::sync::Mutex<()>>,
    queues: PathBuf,
    numbers: PathBuf,
    region: Region,
    prometheus: PrometheusHandle,
    /// The shared store, when the inventory comes from Redis.
    store: Option<Arc<Store>>,
    /// Reloaded with the inventory when `[tls]` is configured.
    tls: Option<Arc<TlsHandle>>,
    /// Carrier states, when the admin API runs beside a gateway.
    carriers: Option<Arc<CarrierBoard>>,
}

/// The process-wide Prometheus recorder (installed once).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Signing latency as a histogram (the default is a summary), so
            // it can be aggregated across instances: 10 µs to 100 ms.
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("cidgate_stir_sign_seconds".into()),
                    &[
                        1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 1e-1,
                    ],
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A running admin API.
pub struct AdminServer {
    /// The bound address (port 0 in the configuration resolved).
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// What the admin API works with besides the inventory files, when the
/// gateway has it.
#[derive(Default)]
pub struct Attached {
    /// The shared inventory store: edits and reloads go through it.
    pub store: Option<Arc<Store>>,
    /// The running TLS certificate and key: `/inventory/reload` reloads them
    /// too (a bad set is refused and the running one stays).
    pub tls: Option<Arc<TlsHandle>>,
    /// The running gateway's carriers: `/healthz` and `/metrics` include
    /// their states, and `/healthz` answers 503 while none is up.
    pub carriers: Option<Arc<CarrierBoard>>,
}

/// Serves the admin API on `addr` (port 0 picks one) over the inventory
/// files alone.
pub async fn start(
    addr: SocketAddr,
    config: &Config,
    inventory: Arc<InventoryHandle>,
) -> anyhow::Result<AdminServer> {
    start_with(addr, config, inventory, Attached::default()).await
}

/// [`start`] for a gateway with a store, TLS or carriers attached.
pub async fn start_with(
    addr: SocketAddr,
    config: &Config,
    inventory: Arc<InventoryHandle>,
    attached: Attached,
) -> anyhow::Result<AdminServer> {
    let Attached {
        store,
        tls,
        carriers,
    } = attached;
    let state = AppState {
        carriers,
        tls,
        inventory,
        edits: Arc::new(tokio::sync::Mutex::new(())),
        queues: config.inventory.queues.clone(),
        numbers: config.inventory.numbers.clone(),
        region: config.callerid.default_region,
        prometheus: prometheus(),
        store,
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/inventory", get(list_all))
        .route("/inventory/queues", get(list_queues))
        .route("/inventory/numbers", get(list_numbers))
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
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("admin API listener {addr} ([server] admin): cannot bind"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "admin API listening");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(AdminServer { addr: bound, task })
}

/// 200 while the gateway can place calls (a degraded store does not stop
/// them); 503 while every carrier is down.
async fn healthz(State(s): State<AppState>) -> (StatusCode, String) {
    let report = match &s.store {
        Some(store) => store.health().report(),
        None => "ok\n".into(),
    };
    let Some(board) = &s.carriers else {
        return (StatusCode::OK, report);
    };
    let CarrierHealth { any_up, lines } = board.health();
    if any_up {
        (StatusCode::OK, report + &lines)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no carrier up\n".to_string() + &lines,
        )
    }
}

async fn metrics_text(State(s): State<AppState>) -> String {
    let inv = s.inventory.snapshot();
    metrics::gauge!("cidgate_inventory_queues").set(inv.queue_count() as f64);
    metrics::gauge!("cidgate_inventory_numbers").set(inv.claimed_count() as f64);
    let mut text = s.prometheus.render();
    if let Some(board) = &s.carriers {
        text.push_str(&board.metrics_text());
    }
    text
}

/// Entries per page when `limit` is not given, and the most one page holds.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// `?offset=N&limit=M` and `?region=XX`, read by hand: axum's `Query` needs a
/// form-decoding dependency for three plain parameters.
#[derive(Debug, Default)]
struct Params {
    offset: usize,
    limit: usize,
    region: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>) -> Result<Params, Refusal> {
        let mut p = Params {
            limit: DEFAULT_LIMIT,
            ..Params::default()
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| {
                value.parse::<usize>().map_err(|_| {
                    Refusal::bad_request(format!("{what}={value:?}: expected a whole number"))
                })
            };
            match name {
                "offset" => p.offset = number("offset")?,
                "limit" => p.limit = number("limit")?.clamp(1, MAX_LIMIT),
                "region" => p.region = Some(value.to_string()),
                _ => {
                    return Err(Refusal::bad_request(format!(
                        "unknown parameter {name:?} (known: offset, limit, region)"
                    )))
                }
            }
        }
        Ok(p)
    }

    /// The region national forms are read in: `?region=`, else the default.
    fn region(&self, default: Region) -> Result<Region, Refusal> {
        match self.region.as_deref() {
            None | Some("") => Ok(default),
            Some(r) => parse_region(r),
        }
    }
}

fn parse_region(r: &str) -> Result<Region, Refusal> {
    Region::parse(r).ok_or_else(|| {
        Refusal::invalid(format!(
            "region {r:?} is not an ISO 3166 alpha-2 code with numbering-plan data (like US or GB)"
        ))
    })
}

/// An answer the operator reads: a status and one or more plain-text lines,
/// in the words of the inventory files, never code-level names.
struct Refusal {
    status: StatusCode,
    text: String,
}

impl Refusal {
    fn bad_request(text: String) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            text,
        }
    }
    fn invalid(text: String) -> Refusal {
        Refusal {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            text,
        }
    }
    fn conflict(text: String) -> Refusal {
        Refusal {
            status: StatusCode::CONFLICT,
            text,
        }
    }
    fn not_found(text: String) -> Refusal {
        Refusal {
            status: StatusCode::NOT_FOUND,
            text,
        }
    }
    /// The reasons of a refused edit without the file and line of the
    /// code-built inventory they were found in.
    fn from_inventory(status: StatusCode, e: &InventoryError) -> Refusal {
        let text = e
            .lines
            .iter()
            .map(|l| l.reason.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        Refusal { status, text }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.text)).into_response()
    }
}

fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value}\n"),
    )
        .into_response()
}

fn queue_json(q: &Queue) -> serde_json::Value {
    serde_json::json!({
        "queue_id": &*q.id,
        "caller_id_number": q.number.as_ref().map(E164::as_str),
        "caller_id_name": &*q.name,
        "region": q.region.as_str(),
        "anonymous": q.anonymous,
    })
}

/// One page of a list: `{"total", "offset", "limit", "items"}`.
fn page<T>(items: &[T], p: &Params, show: impl Fn(&T) -> serde_json::Value) -> serde_json::Value {
    let shown: Vec<_> = items
        .iter()
        .skip(p.offset)
        .take(p.limit)
        .map(show)
        .collect();
    serde_json::json!({
        "total": items.len(),
        "offset": p.offset,
        "limit": p.limit,
        "items": shown,
    })
}

/// Queues by id and numbers in E.164 order: sorting a million numbers takes
/// a moment, so it runs off the core thread.
async fn sorted_lists(s: &AppState) -> (Vec<Queue>, Vec<E164>) {
    let inv = s.inventory.snapshot();
    tokio::task::spawn_blocking(move || {
        let mut queues: Vec<Queue> = inv.queues().cloned().collect();
        queues.sort_by(|a, b| a.id.cmp(&b.id));
        (queues, inv.numbers_sorted())
    })
    .await
    .unwrap_or_default()
}

/// `GET /inventory?offset=&limit=`: both lists, each paged with the same
/// offset and limit and giving its own total.
async fn list_all(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match Params::parse(q.as_deref()) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (queues, numbers) = sorted_lists(&s).await;
    json(serde_json::json!({
        "queues": page(&queues, &p, queue_json),
        "numbers": page(&numbers, &p, |n| n.as_str().into()),
    }))
}

/// `GET /inventory/queues?offset=&limit=`: the queues only, by id.
async fn list_queues(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match Params::parse(q.as_deref()) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (queues, _) = sorted_lists(&s).await;
    json(page(&queues, &p, queue_json))
}

/// `GET /inventory/numbers?offset=&limit=`: the claimed numbers only.
async fn list_numbers(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = match Params::parse(q.as_deref()) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (_, numbers) = sorted_lists(&s).await;
    json(page(&numbers, &p, |n| n.as_str().into()))
}

async fn queue(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let inv = s.inventory.snapshot();
    match inv.queue(&id) {
        Some(q) => json(queue_json(q)),
        None => Refusal::not_found(format!("no queue `{id}` in the inventory")).into_response(),
    }
}

/// Applies one edit: `edit` changes a copy of the running inventory (or
/// refuses) and says what it did; the result must check out like a load.
/// With a shared store the edit is written there and reaches every instance;
/// without, the copy is swapped in here. The work runs off the core thread
/// (it copies the sets).
async fn apply_edit(
    s: AppState,
    edit: impl Fn(&mut InventoryBuilder) -> Result<Edit, Refusal> + Send + Sync + 'static,
) -> Response {
    let region = s.region;
    let apply = move |inv: &Inventory| {
        let mut b = inv.edit(region);
        let done = edit(&mut b)?;
        let next = b
            .build()
            .map_err(|e| Refusal::from_inventory(StatusCode::CONFLICT, &e))?;
        Ok::<_, Refusal>((next, done))
    };
    let edited = match &s.store {
        Some(store) => store.edit(apply).await,
        None => {
            let _turn = s.edits.lock().await;
            let handle = s.inventory.clone();
            tokio::task::spawn_blocking(move || match apply(&handle.snapshot()) {
                Ok((next, _)) => {
                    let counts = next.counts();
                    handle.replace(next);
                    Edited::Done(counts)
                }
                Err(refusal) => Edited::Refused(refusal),
            })
            .await
            .unwrap_or(Edited::Busy)
        }
    };
    match edited {
        Edited::Done(Counts { queues, numbers }) => (
            StatusCode::OK,
            format!("ok: {queues} queues, {numbers} numbers\n"),
        )
            .into_response(),
        Edited::Refused(refusal) => refusal.into_response(),
        Edited::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("inventory store unreachable, nothing changed: {why}\n"),
        )
            .into_response(),
        Edited::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the inventory kept changing under this edit; nothing changed, try again\n".to_string(),
        )
            .into_response(),
    }
}

/// `PUT /inventory/queues/{id}` with one CSV row as body:
/// `caller_id_number,caller_id_name,region,anonymous` (as in queues.csv, without
/// the id; trailing fields may be left out).
async fn upsert_queue(State(s): State<AppState>, Path(id): Path<String>, body: String) -> Response {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.as_bytes());
    let row = match reader.records().next() {
        Some(Ok(r)) => r,
        _ => {
            return Refusal::bad_request(
                "body: one CSV row `caller_id_number,caller_id_name,region,anonymous`".into(),
            )
            .into_response()
        }
    };
    let number = row.get(0).unwrap_or("").to_string();
    let name = row.get(1).unwrap_or("").to_string();
    let region = match row.get(2).unwrap_or("") {
        "" => None,
        r => match parse_region(r) {
            Ok(r) => Some(r),
            Err(refusal) => return refusal.into_response(),
        },
    };
    let anonymous = match row.get(3).unwrap_or("").to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => false,
        "true" | "yes" | "1" => true,
        other => {
            return Refusal::invalid(format!(
                "anonymous {other:?}: expected true/false, yes/no or 1/0"
            ))
            .into_response()
        }
    };
    apply_edit(s, move |b| {
        b.remove_queue(&id);
        let number = (!number.is_empty()).then_some(number.as_str());
        b.add_queue(&id, number, &name, region, anonymous)
            .map_err(|e| Refusal::from_inventory(StatusCode::UNPROCESSABLE_ENTITY, &e))?;
        match b.unclaimed_number_of(&id) {
            Some(n) => Err(Refusal::conflict(format!(
                "queue `{id}`: caller_id_number {n} is not a claimed number; claim it first (PUT /inventory/numbers/{n})"
            ))),
            None => Ok(Edit::PutQueue(
                b.queue(&id).cloned().expect("the queue was just added"),
            )),
        }
    })
    .await
}

async fn delete_queue(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    apply_edit(s, move |b| {
        if b.remove_queue(&id) {
            Ok(Edit::delete_queue(&id))
        } else {
            Err(Refusal::not_found(format!(
                "no queue `{id}` in the inventory"
            )))
        }
    })
    .await
}

/// `PUT /inventory/numbers/{number}`: claims a number written in E.164 or in
/// national form. The body, if any, is the region national forms are read in,
/// as in numbers.csv's second column (`GB`); `?region=GB` does the same;
/// neither means `[callerid] default_region`.
async fn claim_number(
    State(s): State<AppState>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
    body: String,
) -> Response {
    let region = match region_of(&s, q.as_deref(), &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    apply_edit(s, move |b| {
        b.claim_number(&number, region)
            .map(Edit::ClaimNumber)
            .map_err(Refusal::invalid)
    })
    .await
}

/// The region of a number edit: the body (one CSV field) or `?region=`.
fn region_of(s: &AppState, query: Option<&str>, body: &str) -> Result<Region, Refusal> {
    let params = Params::parse(query)?;
    let body = body.trim();
    if body.contains([',', '\n']) {
        return Err(Refusal::bad_request(
            "body: the region alone (like `GB`), or nothing for the default region".into(),
        ));
    }
    match (body, params.region.as_deref()) {
        ("", _) => params.region(s.region),
        (b, Some(q)) if !q.is_empty() && !q.eq_ignore_ascii_case(b) => Err(Refusal::bad_request(
            format!("region {b:?} in the body and {q:?} in the query differ"),
        )),
        (b, _) => parse_region(b),
    }
}

/// `DELETE /inventory/numbers/{number}[?region=GB]`: refused (409) while a
/// queue presents it, naming the queues.
async fn release_number(
    State(s): State<AppState>,
    Path(number): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let region = match region_of(&s, q.as_deref(), "") {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    apply_edit(s, move |b| {
        let (e, was_claimed) = b.release_number(&number, region).map_err(Refusal::invalid)?;
        let users = b.queues_using(e);
        if !users.is_empty() {
            let names = users
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let (queue_word, it) = if users.len() == 1 {
                ("queue", "it")
            } else {
                ("queues", "them")
            };
            return Err(Refusal::conflict(format!(
                "{e} is the caller_id_number of {queue_word} {names}; give {it} another number or delete {it} first"
            )));
        }
        if was_claimed {
            Ok(Edit::ReleaseNumber(e))
        } else {
            Err(Refusal::not_found(format!("{e} is not a claimed number")))
        }
    })
    .await
}

async fn reload(State(s): State<AppState>) -> Response {
    if let Some(tls) = s.tls.clone() {
        let r = tokio::task::spawn_blocking(move || tls.reload()).await;
        if let Ok(Err(e)) = r {
            tracing::error!(key = e.key(), error = %e, "tls reload refused; the running certificate stays");
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "[tls] {}: {e} (the running certificate stays; inventory not reloaded)\n",
                    e.key()
                ),
            )
                .into_response();
        }
    }
    if let Some(store) = &s.store {
        return match store.reload().await {
            Ok(Counts { queues, numbers }) => (
                StatusCode::OK,
                format!("reloaded from the store: {queues} queues, {numbers} numbers\n"),
            )
                .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
        };
    }
    let _turn = s.edits.clone().lock_owned().await;
    let handle = s.inventory.clone();
    let r =
        tokio::task::spawn_blocking(move || s.inventory.reload(&s.queues, &s.numbers, s.region))
            .await;
    match r {
        Ok(Ok(Counts { queues, numbers })) => {
            let mut text = format!("reloaded: {queues} queues, {numbers} numbers\n");
            for w in handle.current().warnings() {
                text.push_str(&format!("warning: {w}\n"));
            }
            (StatusCode::OK, text).into_response()
        }
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload task failed\n".to_string(),
        )
            .into_response(),
    }
}
