//! What an operator sees of refused traffic: metric names scraped from
//! `/metrics` over HTTP, and the rate-limited log of untrusted sources from
//! the real binary, with requests sent over loopback UDP.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cidgate::admin::AdminServer;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use common::binary::{example_inventory_section, RunningBinary};
use common::http::request;
use common::{inventory, invite_via};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(10);

/// The body of a GET.
async fn get(addr: SocketAddr, path: &str) -> String {
    request(addr, "GET", path, "").await.1
}

/// The value of the sample of `name` carrying every label in `labels`
/// (0 when there is none yet).
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

async fn exchange(sock: &UdpSocket, gw: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), gw).await.unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100 ") {
            return text;
        }
    }
}

#[tokio::test]
async fn metrics_keep_the_caller_id_reject_apart_from_refusals() {
    let toml = "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
                [trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:127.0.0.1:9\"\n";
    let cfg = Config::from_toml_str(toml, Path::new("test.toml")).unwrap();
    let handle = Arc::new(InventoryHandle::new(inventory()));
    let AdminServer {
        addr: admin,
        task: admin_task,
    } = cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &cfg, handle.clone())
        .await
        .unwrap();
    let gw = cidgate::server::start(&cfg, handle, None).await.unwrap();
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let (p, s) = (pbx.local_addr().unwrap(), stranger.local_addr().unwrap());
    let before = get(admin, "/metrics").await;

    let cases: [(&UdpSocket, String, &str); 6] = [
        // The caller-ID reject: a decision about a call, not a refusal.
        (
            &pbx,
            invite_via(p, "UDP", "c1", "X-Queue-Id: nope\r\n"),
            "SIP/2.0 403 ",
        ),
        (
            &stranger,
            invite_via(s, "UDP", "c2", "X-Queue-Id: sales\r\n"),
            "SIP/2.0 403 ",
        ),
        (
            &pbx,
            invite_via(p, "UDP", "c3", "X-Queue-Id: sales\r\n")
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
            "SIP/2.0 483 ",
        ),
        (
            &pbx,
            invite_via(p, "UDP", "c4", "X-Queue-Id: sales\r\n")
                .replace("Call-ID: c4@pbx.example.com\r\n", ""),
            "SIP/2.0 400 ",
        ),
        (
            &pbx,
            invite_via(
                p,
                "UDP",
                "c5",
                "X-Queue-Id: sales\r\nProxy-Require: x-magic\r\n",
            ),
            "SIP/2.0 420 ",
        ),
        (
            &pbx,
            invite_via(p, "UDP", "c6", "")
                .replace("INVITE sip:", "BYE sip:")
                .replace("CSeq: 10 INVITE", "CSeq: 11 BYE")
                .replace("carrier.example.com>", "carrier.example.com>;tag=callee"),
            "SIP/2.0 403 ",
        ),
    ];
    for (sock, msg, expected) in &cases {
        let answer = exchange(sock, gw_addr, msg).await;
        assert!(
            answer.starts_with(expected),
            "{expected} expected:\n{answer}"
        );
    }

    let after = get(admin, "/metrics").await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(
        delta("cidgate_calls_total", &[("outcome", "unknown_queue")]),
        1,
        "{after}"
    );
    let refused = "cidgate_requests_refused_total";
    for (reason, code) in [
        ("untrusted", "403"),
        ("too_many_hops", "483"),
        ("bad_request", "400"),
        ("bad_extension", "420"),
        ("no_dialog", "403"),
    ] {
        assert_eq!(
            delta(refused, &[("reason", reason), ("code", code)]),
            1,
            "{reason}:\n{after}"
        );
    }
    // Each request counted once: the reject is no refusal, and no refusal
    // is a call.
    assert_eq!(delta(refused, &[]), 5, "{after}");
    assert_eq!(delta("cidgate_calls_total", &[]), 1, "{after}");
    assert!(!after.contains("cidgate_refused_total"), "{after}");
    gw.shutdown().await;
    admin_task.abort();
}

#[tokio::test]
async fn untrusted_refusals_are_logged_with_their_source_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"\"\n[trust]\npbx = [\"127.0.0.1/32\"]\n\
             [[carrier]]\nuri = \"sip:127.0.0.1:9\"\n{}",
            example_inventory_section()
        ),
    )
    .unwrap();
    let mut gateway = RunningBinary::start(&cfg).await;
    let gw = gateway.udp;

    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let from = stranger.local_addr().unwrap();
    for i in 0..20 {
        let answer = exchange(
            &stranger,
            gw,
            &invite_via(from, "UDP", &format!("u{i}"), ""),
        )
        .await;
        assert!(answer.starts_with("SIP/2.0 403 Forbidden"), "{answer}");
    }
    // The first at once, with its source address and port.
    let first = gateway
        .read_log_until("not in [trust] pbx refused (403)", WAIT)
        .await;
    assert!(
        first.last().unwrap().contains(&format!("source={from}")),
        "{first:?}"
    );
    // The other 19 in one summary line, once the interval has passed.
    let interval = cidgate::telemetry::UNTRUSTED_LOG_INTERVAL;
    let rest = gateway
        .read_log_until(
            "more requests from sources not in [trust] pbx",
            interval + WAIT,
        )
        .await;
    let summary = rest.last().unwrap();
    assert!(summary.contains("19 more requests"), "{summary}");
    assert!(summary.contains(&format!("{} ×19", from.ip())), "{summary}");
    let single_lines = rest.iter().filter(|l| l.contains("refused (403)")).count();
    assert_eq!(single_lines, 0, "{rest:?}");
    gateway.child.kill().await.unwrap();
}
