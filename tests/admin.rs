//! Admin HTTP API and inventory hot reload over real loopback sockets.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cidgate::admin::AdminServer;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use common::http::request;

const QUEUES: &str = "queue_id,caller_id_number,caller_id_name,region,anonymous\nsales,+14155550100,Acme Sales,US,false\n";
const NUMBERS: &str = "number,region\n+14155550100\n+14155550101\n";

/// A request without a body: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    request(addr, method, path, "").await
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
    let AdminServer { addr, task } =
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
    assert_eq!(
        q,
        "{\"anonymous\":false,\"caller_id_name\":\"Acme Sales\",\"caller_id_number\":\"+14155550100\",\"queue_id\":\"sales\",\"region\":\"US\"}\n"
    );
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
    let AdminServer { addr, task } =
        cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &config, handle.clone())
            .await
            .unwrap();

    // A queue whose number is not claimed is refused; nothing changes.
    let (code, body) = request(
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
    let (code, body) = request(
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
        request(addr, "PUT", "/inventory/queues/new", "+14155550101,Renamed")
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
        request(addr, "PUT", "/inventory/queues/bad", "+14155550100,X,ZZ")
            .await
            .0,
        422
    );
    task.abort();
}

/// Starts the admin API on the standard test inventory.
async fn serve(
    dir: &Path,
) -> (
    SocketAddr,
    Arc<InventoryHandle>,
    tokio::task::JoinHandle<()>,
) {
    let config = setup(dir);
    let handle = Arc::new(InventoryHandle::new(config.load_inventory().unwrap()));
    let AdminServer { addr, task } =
        cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &config, handle.clone())
            .await
            .unwrap();
    (addr, handle, task)
}

#[tokio::test]
async fn refusals_speak_the_operators_language() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _, task) = serve(dir.path()).await;

    // A number still presented by a queue: which queue, and what to do.
    let (code, body) = http(addr, "DELETE", "/inventory/numbers/+14155550100").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body,
        "+14155550100 is the caller_id_number of queue `sales`; give it another number or delete it first\n"
    );
    request(addr, "PUT", "/inventory/queues/sales2", "+14155550100,Two").await;
    let (_, body) = http(addr, "DELETE", "/inventory/numbers/+14155550100").await;
    assert!(
        body.starts_with("+14155550100 is the caller_id_number of queues `sales`, `sales2`;"),
        "{body}"
    );

    // A queue whose number is not claimed: how to claim it.
    let (code, body) = request(addr, "PUT", "/inventory/queues/new", "+14155550199,New").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body,
        "queue `new`: caller_id_number +14155550199 is not a claimed number; claim it first (PUT /inventory/numbers/+14155550199)\n"
    );
    // Bad values, unknown entries: the reason alone.
    let (code, body) = request(addr, "PUT", "/inventory/queues/bad", "12345,Bad").await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body,
        "\"12345\" is not a valid phone number for region US\n"
    );
    let (code, body) = http(addr, "PUT", "/inventory/numbers/+1555").await;
    assert_eq!(
        (code, body.as_str()),
        (422, "\"+1555\" is not a valid E.164 number\n")
    );
    let (code, body) = http(addr, "DELETE", "/inventory/numbers/+14155550188").await;
    assert_eq!(
        (code, body.as_str()),
        (404, "+14155550188 is not a claimed number\n")
    );
    let (code, body) = http(addr, "DELETE", "/inventory/queues/nope").await;
    assert_eq!(
        (code, body.as_str()),
        (404, "no queue `nope` in the inventory\n")
    );
    for (method, path, body) in [
        ("DELETE", "/inventory/numbers/+14155550100", ""),
        ("PUT", "/inventory/queues/new", "+14155550199,New"),
        ("PUT", "/inventory/queues/bad", "12345,Bad"),
        ("PUT", "/inventory/numbers/+1555", ""),
    ] {
        let (_, text) = request(addr, method, path, body).await;
        assert!(
            !text.contains('<') && !text.contains(":1:") && !text.contains(":0:"),
            "{text}"
        );
    }
    task.abort();
}

#[tokio::test]
async fn numbers_are_claimed_in_any_region() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, handle, task) = serve(dir.path()).await;
    let claimed = |n: &str| {
        let e = cidgate::inventory::syntactic_e164(n).unwrap();
        handle.snapshot().is_claimed(&e)
    };

    // National form of another region: the body names the region.
    let (code, body) = request(addr, "PUT", "/inventory/numbers/020%207946%200001", "GB").await;
    assert_eq!(code, 200, "{body}");
    assert!(claimed("+442079460001"));
    // Or the query does; with neither, the default region (US) reads it.
    let (code, body) = http(
        addr,
        "PUT",
        "/inventory/numbers/020%207946%200002?region=gb",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(claimed("+442079460002"));
    let (code, body) = http(addr, "PUT", "/inventory/numbers/(415)%20555-0177").await;
    assert_eq!(code, 200, "{body}");
    assert!(claimed("+14155550177"));
    let (code, body) = http(addr, "PUT", "/inventory/numbers/020%207946%200003").await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("not a valid phone number for region US"),
        "{body}"
    );

    // A queue may now present the GB number; released in its national form.
    let (code, body) = request(addr, "PUT", "/inventory/queues/uk", "+442079460001,UK,GB").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(http(addr, "DELETE", "/inventory/queues/uk").await.0, 200);
    let (code, body) = http(
        addr,
        "DELETE",
        "/inventory/numbers/020%207946%200001?region=GB",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(!claimed("+442079460001"));

    // Malformed region bodies and parameters.
    let (code, body) = request(addr, "PUT", "/inventory/numbers/020%207946%200004", "ZZ").await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.starts_with("region \"ZZ\" is not an ISO 3166"),
        "{body}"
    );
    let (code, _) = request(addr, "PUT", "/inventory/numbers/+14155550100", "US,extra").await;
    assert_eq!(code, 400);
    let (code, body) = http(addr, "PUT", "/inventory/numbers/+14155550100?regoin=US").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown parameter \"regoin\""), "{body}");
    task.abort();
}

#[tokio::test]
async fn inventory_lists_queues_and_numbers_as_json_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _, task) = serve(dir.path()).await;
    for n in ["+442071838750", "+14155550102", "+33123456789"] {
        assert_eq!(
            http(addr, "PUT", &format!("/inventory/numbers/{n}"))
                .await
                .0,
            200
        );
    }
    request(addr, "PUT", "/inventory/queues/anon", ",Nobody,GB,yes").await;

    let (code, body) = http(addr, "GET", "/inventory").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        concat!(
            "{\"numbers\":{\"items\":[\"+14155550100\",\"+14155550101\",\"+14155550102\",\"+33123456789\",\"+442071838750\"],",
            "\"limit\":100,\"offset\":0,\"total\":5},",
            "\"queues\":{\"items\":[",
            "{\"anonymous\":true,\"caller_id_name\":\"Nobody\",\"caller_id_number\":null,\"queue_id\":\"anon\",\"region\":\"GB\"},",
            "{\"anonymous\":false,\"caller_id_name\":\"Acme Sales\",\"caller_id_number\":\"+14155550100\",\"queue_id\":\"sales\",\"region\":\"US\"}",
            "],\"limit\":100,\"offset\":0,\"total\":2}}\n"
        )
    );

    // Paging one list: offset and limit, the total stays.
    let (code, body) = http(addr, "GET", "/inventory/numbers?offset=1&limit=2").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        "{\"items\":[\"+14155550101\",\"+14155550102\"],\"limit\":2,\"offset\":1,\"total\":5}\n"
    );
    let (_, body) = http(addr, "GET", "/inventory/queues?offset=1").await;
    assert!(
        body.starts_with("{\"items\":[{\"anonymous\":false,"),
        "{body}"
    );
    assert!(
        body.ends_with("\"limit\":100,\"offset\":1,\"total\":2}\n"),
        "{body}"
    );
    let (_, body) = http(addr, "GET", "/inventory/numbers?offset=9").await;
    assert_eq!(
        body,
        "{\"items\":[],\"limit\":100,\"offset\":9,\"total\":5}\n"
    );
    let (code, body) = http(addr, "GET", "/inventory?limit=many").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body, "limit=\"many\": expected a whole number\n");
    task.abort();
}

#[tokio::test]
async fn readme_admin_examples_answer_as_written() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let config = Config::from_file(&examples.join("cidgate.toml")).unwrap();
    let handle = Arc::new(InventoryHandle::new(config.load_inventory().unwrap()));
    let AdminServer { addr, task } =
        cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &config, handle.clone())
            .await
            .unwrap();
    let admin = config
        .server
        .admin
        .unwrap()
        .to_string()
        .replace("127.0.0.1", "localhost");
    for ex in common::readme::examples("admin-examples", "curl") {
        let words = &ex.words;
        let flag = |name: &str| {
            words
                .iter()
                .position(|w| w == name)
                .map(|i| words[i + 1].as_str())
        };
        let method = flag("-X").unwrap_or("GET");
        let body = flag("--data").unwrap_or("");
        let url = words
            .iter()
            .find(|w| w.starts_with(&admin))
            .unwrap_or_else(|| panic!("no {admin} URL in {}", ex.line));
        let path = &url[admin.len()..];
        let expected: u16 = ex
            .expect
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (code, answer) = request(addr, method, path, body).await;
        assert_eq!(code, expected, "{}\n{answer}", ex.line);
        if method == "GET" && path.starts_with("/inventory") {
            let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert!(json.is_object(), "{answer}");
        }
    }
    // The edits above went through; the reload put the files back.
    assert!(handle.snapshot().queue("sales-eu").is_none());
    task.abort();
}
