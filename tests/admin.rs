//! Admin HTTP API and inventory hot reload over real loopback sockets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const QUEUES: &str = "queue_id,caller_id_number,caller_id_name,region,anonymous\nsales,+14155550100,Acme Sales,US,false\n";
const NUMBERS: &str = "number,region\n+14155550100\n+14155550101\n";

/// Minimal HTTP/1.1 exchange: returns (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, "").await
}

async fn http_with(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn setup(dir: &Path) -> Config {
    std::fs::write(dir.join("queues.csv"), QUEUES).unwrap();
    std::fs::write(dir.join("numbers.csv"), NUMBERS).unwrap();
    let cfg = dir.join("gw.toml");
    std::fs::write(&cfg, "[server]\nadmin = \"127.0.0.1:0\"\n").unwrap();
    Config::from_file(&cfg).unwrap()
}

#[tokio::test]
async fn health_metrics_lookup_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let handle = Arc::new(InventoryHandle::new(config.load_inventory().unwrap()));
    let (addr, task) =
        cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &config, handle.clone())
            .await
            .unwrap();

    assert_eq!(
        http(addr, "GET", "/healthz").await,
        (200, "ok\n".to_string())
    );
    let (code, metrics) = http(addr, "GET", "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("cidgate_inventory_queues 1"), "{metrics}");
    let (code, q) = http(addr, "GET", "/inventory/queues/sales").await;
    assert_eq!(code, 200);
    assert!(q.contains("caller_id_number +14155550100"), "{q}");
    assert_eq!(http(addr, "GET", "/inventory/queues/nope").await.0, 404);

    // A reload with a bad line is refused, naming file and line; the old
    // inventory stays in force.
    std::fs::write(
        dir.path().join("queues.csv"),
        format!("{QUEUES}support,+14155550101,Support,US,false\nbroken,not-a-number,X,US,false\n"),
    )
    .unwrap();
    let (code, body) = http(addr, "POST", "/inventory/reload").await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("queues.csv:4"), "{body}");
    assert!(handle.snapshot().queue("support").is_none());
    assert_eq!(http(addr, "GET", "/inventory/queues/sales").await.0, 200);

    // Fixed: the reload goes through atomically.
    std::fs::write(
        dir.path().join("queues.csv"),
        format!("{QUEUES}support,+14155550101,Support,US,false\n"),
    )
    .unwrap();
    let (code, body) = http(addr, "POST", "/inventory/reload").await;
    assert_eq!(code, 200, "{body}");
    assert!(handle.snapshot().queue("support").is_some());
    task.abort();
}

#[tokio::test]
async fn file_changes_are_picked_up_and_bad_files_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let handle = Arc::new(InventoryHandle::new(config.load_inventory().unwrap()));
    cidgate::reload::spawn_watchers(&config, handle.clone());
    tokio::time::sleep(Duration::from_millis(50)).await;

    // A bad file is not loaded.
    std::fs::write(dir.path().join("numbers.csv"), "number,region\nnope\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(handle.snapshot().claimed_count(), 2);

    // A good one is, within a few poll periods.
    std::fs::write(
        dir.path().join("numbers.csv"),
        format!("{NUMBERS}+14155550102\n"),
    )
    .unwrap();
    let mut waited = 0;
    while handle.snapshot().claimed_count() != 3 {
        assert!(waited < 80, "reload did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
}

#[tokio::test]
async fn upsert_and_delete_are_checked_like_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let handle = Arc::new(InventoryHandle::new(config.load_inventory().unwrap()));
    let (addr, task) =
        cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &config, handle.clone())
            .await
            .unwrap();

    // A queue whose number is not claimed is refused; nothing changes.
    let (code, body) = http_with(
        addr,
        "PUT",
        "/inventory/queues/new",
        "+14155550199,New Desk,US,false",
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("not a claimed number"), "{body}");
    assert!(handle.snapshot().queue("new").is_none());

    // Claim it, then the queue goes in (with a quoted name).
    assert_eq!(
        http(addr, "PUT", "/inventory/numbers/+14155550199").await.0,
        200
    );
    let (code, body) = http_with(
        addr,
        "PUT",
        "/inventory/queues/new",
        "+14155550199,\"New, \"\"Desk\"\"\",US,true",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let snap = handle.snapshot();
    let q = snap.queue("new").unwrap();
    assert_eq!(&*q.name, "New, \"Desk\"");
    assert!(q.anonymous);

    // Upsert replaces; a number still used by a queue cannot be released.
    assert_eq!(
        http_with(addr, "PUT", "/inventory/queues/new", "+14155550101,Renamed")
            .await
            .0,
        200
    );
    assert_eq!(&*handle.snapshot().queue("new").unwrap().name, "Renamed");
    let (code, body) = http(addr, "DELETE", "/inventory/numbers/+14155550101").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        http(addr, "DELETE", "/inventory/numbers/+14155550199")
            .await
            .0,
        200
    );

    // Delete, and deleting what is not there.
    assert_eq!(http(addr, "DELETE", "/inventory/queues/new").await.0, 200);
    assert!(handle.snapshot().queue("new").is_none());
    assert_eq!(http(addr, "DELETE", "/inventory/queues/new").await.0, 404);
    assert_eq!(
        http_with(addr, "PUT", "/inventory/queues/bad", "+14155550100,X,ZZ")
            .await
            .0,
        422
    );
    task.abort();
}
