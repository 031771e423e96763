//! Carrier failure and gateway restarts over real loopback sockets: a
//! silent carrier, probes seen through the admin API, a SIGTERM drain and a
//! restart of the real binary in the middle of a call.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use common::binary::{example_inventory_section, RunningBinary};
use common::http::request;
use common::*;
use tokio::net::UdpSocket;

/// How long a test waits for a message before it fails. Generous: this is
/// a bound against hanging, not a timing claim.
const WAIT: Duration = Duration::from_secs(15);
/// How long a drained gateway may take to exit.
const EXIT: Duration = Duration::from_secs(30);

async fn recv(sock: &UdpSocket) -> (Bytes, SocketAddr) {
    recv_datagram(sock, WAIT).await
}

/// The next message on `sock` that `want` accepts; OPTIONS probes are
/// answered 200 on the way, everything else skipped.
async fn recv_where(sock: &UdpSocket, want: impl Fn(&Bytes) -> bool) -> (Bytes, SocketAddr) {
    loop {
        let (m, from) = recv(sock).await;
        if want(&m) {
            return (m, from);
        }
        if is_request(&m, "OPTIONS") {
            let ok = respond(&m, 200, "OK", Some("probe"), "");
            sock.send_to(&ok, from).await.unwrap();
        }
    }
}

fn is_status(code: u16) -> impl Fn(&Bytes) -> bool {
    move |m| m.starts_with(format!("SIP/2.0 {code} ").as_bytes())
}

fn pbx_invite(pbx: SocketAddr, call: &str, queue: &str) -> String {
    invite_via(pbx, "UDP", call, &format!("X-Queue-Id: {queue}\r\n"))
}

/// The PBX's ACK for a 2xx: to the callee's Contact through our Record-Route.
fn ack_for(ok: &Bytes, pbx: SocketAddr, call: &str, callee: SocketAddr) -> String {
    let rr = header_value(ok, "Record-Route").expect("Record-Route in the 2xx");
    let to = header_value(ok, "To").unwrap();
    format!(
        "ACK sip:callee@{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bKack{call};rport\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-{call};x-keep=1\r\nTo: {to}\r\nCall-ID: {call}@pbx.example.com\r\nCSeq: 10 ACK\r\nContent-Length: 0\r\n\r\n"
    )
}

fn contact(callee: SocketAddr) -> String {
    format!("Contact: <sip:callee@{callee}>\r\n")
}

#[tokio::test]
async fn a_silent_first_carrier_hands_the_call_to_the_second() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\"]\ndomain = \"gw.example.net\"\nadmin = \"\"\n[trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{}\"\n[[carrier]]\nuri = \"sip:{}\"\n",
        silent.local_addr().unwrap(),
        carrier2.local_addr().unwrap()
    );
    let cfg = Config::from_toml_str(&toml, Path::new("test.toml")).unwrap();
    // The gateway's own timer decides how long a dead carrier holds a call.
    assert!(cfg.health.no_provisional <= Duration::from_secs(5));
    let gw = cidgate::server::start(&cfg, Arc::new(InventoryHandle::new(inventory())), None)
        .await
        .unwrap();
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let inv = Bytes::from(pbx_invite(me, "sf", "sales"));
    pbx.send_to(&inv, gw_addr).await.unwrap();
    let (first, _) = recv_where(&silent, |m| is_request(m, "INVITE")).await;
    let (second, from) = recv_where(&carrier2, |m| is_request(m, "INVITE")).await;
    assert_eq!(
        header_value(&second, "Call-ID"),
        header_value(&first, "Call-ID")
    );
    assert_ne!(
        header_lines(&second, "Via")[0],
        header_lines(&first, "Via")[0]
    );
    let callee = carrier2.local_addr().unwrap();
    let ok = respond(&second, 200, "OK", Some("c2"), &contact(callee));
    carrier2.send_to(&ok, from).await.unwrap();
    let (up, _) = recv_where(&pbx, is_status(200)).await;
    assert_eq!(header_lines(&up, "From"), header_lines(&inv, "From"));
    pbx.send_to(ack_for(&up, me, "sf", callee).as_bytes(), gw_addr)
        .await
        .unwrap();
    let (ack, _) = recv_where(&carrier2, |m| is_request(m, "ACK")).await;
    assert_eq!(header_value(&ack, "Call-ID").unwrap(), "sf@pbx.example.com");
    gw.shutdown().await;
}

#[tokio::test]
async fn probes_take_a_dead_carrier_out_and_the_admin_api_shows_it() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (dead, alive) = (silent.local_addr().unwrap(), carrier2.local_addr().unwrap());
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n[trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{dead}\"\n[[carrier]]\nuri = \"sip:{alive}\"\n[health]\nprobe_interval = 1\nprobe_timeout = 0.5\ndown_after = 2\nup_after = 1\n"
    );
    let cfg = Config::from_toml_str(&toml, Path::new("test.toml")).unwrap();
    let gw = cidgate::server::start(&cfg, Arc::new(InventoryHandle::new(inventory())), None)
        .await
        .unwrap();
    let attached = cidgate::admin::Attached {
        carriers: Some(gw.carriers.clone()),
        ..Default::default()
    };
    let inventory = gw.inventory.clone();
    let cidgate::admin::AdminServer { addr: admin, task } =
        cidgate::admin::start_with("127.0.0.1:0".parse().unwrap(), &cfg, inventory, attached)
            .await
            .unwrap();
    // The live carrier answers its probes in the background.
    let answering = tokio::spawn(async move {
        loop {
            recv_where(&carrier2, |_| false).await;
        }
    });
    let want = format!("carrier udp:{dead} down");
    let mut body = String::new();
    for _ in 0..100 {
        body = request(admin, "GET", "/healthz", "").await.1;
        if body.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains(&want), "{body}");
    assert!(body.starts_with("ok\n"), "one carrier is still up: {body}");
    assert!(body.contains(&format!("carrier udp:{alive} up")), "{body}");
    let (_, metrics) = request(admin, "GET", "/metrics", "").await;
    assert!(
        metrics.contains(&format!("cidgate_carrier_up{{carrier=\"udp:{dead}\"}} 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("cidgate_carrier_up{{carrier=\"udp:{alive}\"}} 1")),
        "{metrics}"
    );
    // What the silent carrier received: probes, which it never answered.
    let (probe, _) = recv(&silent).await;
    assert!(is_request(&probe, "OPTIONS"), "{}", text(&probe));
    answering.abort();
    task.abort();
    gw.shutdown().await;
}

fn write_config(dir: &Path, listen: &str, carrier: SocketAddr) -> PathBuf {
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp://{listen}\"]\nadmin = \"\"\ndialog_secret = \"restart test shared secret\"\n[[carrier]]\nuri = \"sip:{carrier}\"\n[health]\nprobe_interval = 0\n{}",
            example_inventory_section()
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test]
async fn sigterm_drain_relays_the_answer_and_then_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = carrier.local_addr().unwrap();
    let gw = RunningBinary::start(&write_config(dir.path(), "127.0.0.1:0", callee)).await;
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    pbx.send_to(pbx_invite(me, "dr", "sales-us").as_bytes(), gw.udp)
        .await
        .unwrap();
    let (fwd, from) = recv_where(&carrier, |m| is_request(m, "INVITE")).await;
    gw.sigterm();
    // A new call is refused while the old one finishes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pbx.send_to(pbx_invite(me, "dr2", "sales-us").as_bytes(), gw.udp)
        .await
        .unwrap();
    let (refused, _) = recv_where(&pbx, is_status(503)).await;
    assert_eq!(
        header_value(&refused, "Call-ID").unwrap(),
        "dr2@pbx.example.com"
    );
    // The carrier answers during the drain; the PBX's ACK still gets through.
    let ok = respond(&fwd, 200, "OK", Some("dr"), &contact(callee));
    carrier.send_to(&ok, from).await.unwrap();
    let (up, _) = recv_where(&pbx, is_status(200)).await;
    pbx.send_to(ack_for(&up, me, "dr", callee).as_bytes(), gw.udp)
        .await
        .unwrap();
    let (ack, _) = recv_where(&carrier, |m| is_request(m, "ACK")).await;
    assert_eq!(header_value(&ack, "Call-ID").unwrap(), "dr@pbx.example.com");
    gw.exits_cleanly(EXIT).await;
}

#[tokio::test]
async fn a_restarted_gateway_forwards_the_2xx_retransmission_and_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let callee = carrier.local_addr().unwrap();
    let before = RunningBinary::start(&write_config(dir.path(), "127.0.0.1:0", callee)).await;
    let gw_addr = before.udp;
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let inv = Bytes::from(pbx_invite(me, "rs", "sales-us"));
    pbx.send_to(&inv, gw_addr).await.unwrap();
    let (fwd, from) = recv_where(&carrier, |m| is_request(m, "INVITE")).await;
    let ok = respond(&fwd, 200, "OK", Some("rs"), &contact(callee));
    carrier.send_to(&ok, from).await.unwrap();
    // The PBX's ACK for this copy is lost: the gateway restarts first.
    recv_where(&pbx, is_status(200)).await;
    before.sigterm();
    before.exits_cleanly(EXIT).await;
    let after = RunningBinary::start(&write_config(dir.path(), &gw_addr.to_string(), callee)).await;
    assert_eq!(after.udp, gw_addr);
    // The carrier retransmits its 200 to the new process, which has no
    // transaction for it and forwards it from the route state alone.
    carrier.send_to(&ok, gw_addr).await.unwrap();
    let (up, _) = recv_where(&pbx, is_status(200)).await;
    assert_eq!(header_lines(&up, "From"), header_lines(&inv, "From"));
    assert_eq!(header_lines(&up, "Via"), header_lines(&inv, "Via"));
    pbx.send_to(ack_for(&up, me, "rs", callee).as_bytes(), gw_addr)
        .await
        .unwrap();
    let (ack, _) = recv_where(&carrier, |m| is_request(m, "ACK")).await;
    assert_eq!(header_value(&ack, "Call-ID").unwrap(), "rs@pbx.example.com");
    // A response whose branch the gateway did not write goes nowhere.
    let forged = String::from_utf8_lossy(&ok).replace(";branch=z9hG4bKcg", ";branch=z9hG4bKcgX");
    carrier.send_to(forged.as_bytes(), gw_addr).await.unwrap();
    let mut buf = [0u8; 4096];
    let got = tokio::time::timeout(Duration::from_millis(500), pbx.recv_from(&mut buf)).await;
    assert!(got.is_err(), "nothing reflected to the PBX");
    after.sigterm();
    after.exits_cleanly(EXIT).await;
}
