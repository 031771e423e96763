//! What an operator sees of refused traffic: metric names scraped from
//! `/metrics` over HTTP, and the rate-limited log of untrusted sources from
//! the real binary, with requests sent over loopback UDP.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use common::{inventory, invite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(10);

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
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

/// The INVITE of `common::invite`, sent by `from` (Via names the real source).
fn invite_from(from: SocketAddr, call: &str, extra: &str) -> String {
    invite(call, extra).replace(
        "Via: SIP/2.0/UDP 127.0.0.10:5070",
        &format!("Via: SIP/2.0/UDP {from}"),
    )
}

#[tokio::test]
async fn metrics_keep_the_caller_id_reject_apart_from_refusals() {
    let toml = "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\
                [trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:127.0.0.1:9\"\n";
    let cfg = Config::from_toml_str(toml, Path::new("test.toml")).unwrap();
    let handle = Arc::new(InventoryHandle::new(inventory()));
    let (admin, admin_task) =
        cidgate::admin::start("127.0.0.1:0".parse().unwrap(), &cfg, handle.clone())
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
            invite_from(p, "c1", "X-Queue-Id: nope\r\n"),
            "SIP/2.0 403 ",
        ),
        (
            &stranger,
            invite_from(s, "c2", "X-Queue-Id: sales\r\n"),
            "SIP/2.0 403 ",
        ),
        (
            &pbx,
            invite_from(p, "c3", "X-Queue-Id: sales\r\n")
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
            "SIP/2.0 483 ",
        ),
        (
            &pbx,
            invite_from(p, "c4", "X-Queue-Id: sales\r\n")
                .replace("Call-ID: c4@pbx.example.com\r\n", ""),
            "SIP/2.0 400 ",
        ),
        (
            &pbx,
            invite_from(p, "c5", "X-Queue-Id: sales\r\nProxy-Require: x-magic\r\n"),
            "SIP/2.0 420 ",
        ),
        (
            &pbx,
            invite_from(p, "c6", "")
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

/// Reads the child's stderr until a line contains `needle`; all lines read.
async fn read_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
    wait: Duration,
) -> Vec<String> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + wait;
    loop {
        let line = tokio::time::timeout_at(end, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in:\n{}", seen.join("\n")))
            .unwrap()
            .expect("stderr open");
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn untrusted_refusals_are_logged_with_their_source_once_per_interval() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"\"\n[trust]\npbx = [\"127.0.0.1/32\"]\n\
             [[carrier]]\nuri = \"sip:127.0.0.1:9\"\n[inventory]\nqueues = \"{}\"\nnumbers = \"{}\"\n",
            data.join("queues.csv").display(),
            data.join("numbers.csv").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let started = read_until(&mut lines, "listen=udp://", Duration::from_secs(60)).await;
    let gw: SocketAddr = started
        .last()
        .unwrap()
        .split("udp://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('"')
        .parse()
        .unwrap();

    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let from = stranger.local_addr().unwrap();
    for i in 0..20 {
        let answer = exchange(&stranger, gw, &invite_from(from, &format!("u{i}"), "")).await;
        assert!(answer.starts_with("SIP/2.0 403 Forbidden"), "{answer}");
    }
    // The first at once, with its source address and port.
    let first = read_until(&mut lines, "not in [trust] pbx refused (403)", WAIT).await;
    assert!(
        first.last().unwrap().contains(&format!("source={from}")),
        "{first:?}"
    );
    // The other 19 in one summary line, once the interval has passed.
    let interval = cidgate::telemetry::UNTRUSTED_LOG_INTERVAL;
    let rest = read_until(
        &mut lines,
        "more requests from sources not in [trust] pbx",
        interval + WAIT,
    )
    .await;
    let summary = rest.last().unwrap();
    assert!(summary.contains("19 more requests"), "{summary}");
    assert!(summary.contains(&format!("{} ×19", from.ip())), "{summary}");
    let single_lines = rest.iter().filter(|l| l.contains("refused (403)")).count();
    assert_eq!(single_lines, 0, "{rest:?}");
    child.kill().await.unwrap();
}
