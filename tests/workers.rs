//! Several proxy cores (`[server] workers = 2`) over real loopback sockets:
//! many calls at once, each with its responses, CANCEL, ACK and in-dialog
//! requests, must behave exactly as with one core, and both cores must have
//! served some of them.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use cidgate::server::Gateway;
use common::*;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(5);
const CALLS: usize = 40;

async fn gateway(workers: usize, carrier: SocketAddr) -> Gateway {
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\ndomain = \"gw.example.net\"\nadmin = \"127.0.0.1:0\"\nworkers = {workers}\n[trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{carrier};transport=udp\"\n[health]\nprobe_interval = 0\n"
    );
    let cfg = Config::from_toml_str(&toml, Path::new("test.toml")).expect("config");
    cidgate::server::start(&cfg, Arc::new(InventoryHandle::new(inventory())), None)
        .await
        .expect("gateway starts")
}

/// Receives datagrams until `n` have arrived that `keep` accepts (others,
/// such as 100 Trying, are skipped).
async fn collect(sock: &UdpSocket, n: usize, keep: impl Fn(&Bytes) -> bool) -> Vec<Bytes> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    // One deadline for the whole collection: retransmissions must not keep
    // a broken run waiting forever.
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < n {
        let (len, _) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} messages", got.len()))
            .unwrap();
        let m = Bytes::copy_from_slice(&buf[..len]);
        if keep(&m) {
            got.push(m);
        }
    }
    got
}

fn call_id(m: &Bytes) -> String {
    header_value(m, "Call-ID").unwrap()
}

fn by_call(ms: Vec<Bytes>) -> HashMap<String, Bytes> {
    ms.into_iter().map(|m| (call_id(&m), m)).collect()
}

fn not_trying(m: &Bytes) -> bool {
    !m.starts_with(b"SIP/2.0 100 ")
}

/// A request from the PBX inside call `i`'s dialog, routed by `rr`.
fn in_dialog(
    me: SocketAddr,
    callee: SocketAddr,
    i: usize,
    method: &str,
    cseq: u32,
    rr: &str,
) -> String {
    format!(
        "{method} sip:callee@{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{i};rport\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-wk{i};x-keep=1\r\nTo: <sip:+12125550123@carrier.example.com>;tag=c{i}\r\nCall-ID: wk{i}@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// `value` of the sample `name{worker="k"}` in Prometheus text.
fn sample(text: &str, name: &str, worker: usize) -> f64 {
    let prefix = format!("{name}{{worker=\"{worker}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_serve_calls_cancels_and_dialogs_like_one() {
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = carrier.local_addr().unwrap();
    let gw = gateway(2, callee).await;
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let before = cidgate::admin::prometheus().render();

    let invites: Vec<String> = (0..CALLS)
        .map(|i| invite_via(me, "UDP", &format!("wk{i}"), "X-Queue-Id: sales\r\n"))
        .collect();
    for inv in &invites {
        pbx.send_to(inv.as_bytes(), gw_addr).await.unwrap();
    }
    let forwarded = by_call(collect(&carrier, CALLS, |m| is_request(m, "INVITE")).await);
    assert_eq!(forwarded.len(), CALLS);

    // Even calls are answered, odd ones ring and are cancelled.
    for i in 0..CALLS {
        let fwd = &forwarded[&format!("wk{i}@pbx.example.com")];
        let tag = format!("c{i}");
        let answer = if i % 2 == 0 {
            respond(
                fwd,
                200,
                "OK",
                Some(&tag),
                &format!("Contact: <sip:callee@{callee}>\r\n"),
            )
        } else {
            respond(fwd, 180, "Ringing", Some(&tag), "")
        };
        carrier.send_to(&answer, gw_addr).await.unwrap();
    }
    let upstream = by_call(collect(&pbx, CALLS, not_trying).await);
    for i in 0..CALLS {
        let m = &upstream[&format!("wk{i}@pbx.example.com")];
        assert_eq!(status(m), if i % 2 == 0 { 200 } else { 180 }, "call {i}");
        assert!(header_value(m, "From")
            .unwrap()
            .contains("agent7@pbx.example.com"));
    }
    for i in 0..CALLS {
        let m = if i % 2 == 0 {
            let rr =
                header_value(&upstream[&format!("wk{i}@pbx.example.com")], "Record-Route").unwrap();
            pbx.send_to(in_dialog(me, callee, i, "ACK", 10, &rr).as_bytes(), gw_addr)
                .await
                .unwrap();
            in_dialog(me, callee, i, "BYE", 11, &rr)
        } else {
            invites[i]
                .replacen("INVITE sip:", "CANCEL sip:", 1)
                .replace("CSeq: 10 INVITE", "CSeq: 10 CANCEL")
        };
        pbx.send_to(m.as_bytes(), gw_addr).await.unwrap();
    }
    // The carrier sees an ACK and a BYE per answered call, a CANCEL per ringing one.
    let at_carrier = collect(&carrier, CALLS + CALLS / 2, |_| true).await;
    let mut seen: HashMap<(String, &str), Bytes> = HashMap::new();
    for m in at_carrier {
        let method = ["ACK", "BYE", "CANCEL"]
            .into_iter()
            .find(|k| is_request(&m, k))
            .unwrap_or_else(|| panic!("unexpected at the carrier: {}", text(&m)));
        seen.insert((call_id(&m), method), m);
    }
    for i in 0..CALLS {
        let id = format!("wk{i}@pbx.example.com");
        let expected: &[&str] = if i % 2 == 0 {
            &["ACK", "BYE"]
        } else {
            &["CANCEL"]
        };
        for method in expected {
            let m = seen
                .get(&(id.clone(), *method))
                .unwrap_or_else(|| panic!("no {method} for call {i}"));
            if *method == "CANCEL" {
                carrier
                    .send_to(&respond(m, 200, "OK", None, ""), gw_addr)
                    .await
                    .unwrap();
                let fwd = &forwarded[&id];
                let terminated =
                    respond(fwd, 487, "Request Terminated", Some(&format!("c{i}")), "");
                carrier.send_to(&terminated, gw_addr).await.unwrap();
            } else if *method == "BYE" {
                carrier
                    .send_to(&respond(m, 200, "OK", None, ""), gw_addr)
                    .await
                    .unwrap();
            }
        }
    }
    // The PBX gets 200 for each BYE and CANCEL and a 487 for each cancelled INVITE.
    let finals = collect(&pbx, CALLS + CALLS / 2, not_trying).await;
    let mut codes: HashMap<(String, u16), usize> = HashMap::new();
    for m in &finals {
        *codes.entry((call_id(m), status(m))).or_default() += 1;
    }
    for i in 0..CALLS {
        let id = format!("wk{i}@pbx.example.com");
        if i % 2 == 0 {
            assert_eq!(codes.get(&(id, 200)), Some(&1), "BYE of call {i}");
        } else {
            assert_eq!(
                codes.get(&(id.clone(), 200)),
                Some(&1),
                "CANCEL of call {i}"
            );
            assert_eq!(codes.get(&(id, 487)), Some(&1), "487 of call {i}");
        }
    }
    // The gateway ACKs each 487 to the carrier itself (hop by hop).
    let acks = collect(&carrier, CALLS / 2, |m| is_request(m, "ACK")).await;
    assert_eq!(by_call(acks).len(), CALLS / 2);

    // Both cores took part.
    let after = cidgate::admin::prometheus().render();
    for k in 0..2 {
        let served = sample(&after, "cidgate_worker_messages_total", k)
            - sample(&before, "cidgate_worker_messages_total", k);
        assert!(
            served >= 20.0,
            "worker {k} served {served} messages:\n{after}"
        );
    }
    gw.shutdown().await;
}

/// A carrier that answers every OPTIONS and INVITE with 200.
async fn answering_carrier(sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        let m = Bytes::copy_from_slice(&buf[..n]);
        if is_request(&m, "OPTIONS") || is_request(&m, "INVITE") {
            let _ = sock
                .send_to(&respond(&m, 200, "OK", Some("cp"), ""), from)
                .await;
        }
    }
}

/// Every core probes the carriers itself; the answers must reach every core,
/// or a core that never sees them marks a healthy carrier down and refuses
/// its share of the calls with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_core_sees_the_answers_to_its_carrier_probes() {
    let carrier = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let callee = carrier.local_addr().unwrap();
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\"]\ndomain = \"gw.example.net\"\nadmin = \"\"\nworkers = 2\n[trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{callee};transport=udp\"\n[health]\nprobe_interval = 0.2\nprobe_timeout = 0.1\ndown_after = 2\nup_after = 1\n"
    );
    let cfg = Config::from_toml_str(&toml, Path::new("test.toml")).expect("config");
    let (tap, mut events) = tokio::sync::mpsc::unbounded_channel();
    let gw = cidgate::server::start(&cfg, Arc::new(InventoryHandle::new(inventory())), Some(tap))
        .await
        .expect("gateway starts");
    let answering = tokio::spawn(answering_carrier(carrier));
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    // A core starts probing with its first message: the first round of
    // calls starts both; after several probe rounds (long enough for a core
    // without answers to give up on the carrier) the second round must
    // still get through on both.
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(3000)).await;
        }
        for i in 0..CALLS {
            let inv = invite_via(
                me,
                "UDP",
                &format!("pr{round}-{i}"),
                "X-Queue-Id: sales\r\n",
            );
            pbx.send_to(inv.as_bytes(), gw_addr).await.unwrap();
        }
        let answers = collect(&pbx, CALLS, not_trying).await;
        for m in &answers {
            assert_eq!(status(m), 200, "round {round}: {}", text(m));
        }
    }
    answering.abort();
    gw.shutdown().await;
    while let Ok(ev) = events.try_recv() {
        if let cidgate::proxy::Event::CarrierState { up: false, .. } = ev {
            panic!("a core marked the answering carrier down: {ev:?}");
        }
    }
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// `workers = 3` is three busy threads: core 0 runs beside the dispatcher on
/// the runtime that started the gateway, cores 1 and 2 on threads of their
/// own (no thread for core 0, none for the dispatcher).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn core_0_shares_the_dispatchers_thread_and_the_others_have_their_own() {
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let gw = gateway(3, carrier.local_addr().unwrap()).await;
    // A new thread carries its parent's name until it sets its own: wait
    // for both (a bound against hanging, not a timing claim).
    let wanted = ["cidgate-core-1", "cidgate-core-2"].map(String::from);
    let end = tokio::time::Instant::now() + WAIT;
    let mut names = thread_names();
    while !wanted.iter().all(|w| names.contains(w)) && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        names = thread_names();
    }
    for name in &wanted {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    // Tests of this binary run side by side; none starts a thread for core 0.
    assert!(!names.iter().any(|n| n == "cidgate-core-0"), "{names:?}");
    gw.shutdown().await;
}
