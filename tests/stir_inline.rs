//! Where signatures are made, seen from the wire and `/metrics`: a call that
//! arrives alone is signed on the core's own thread (no hand-off), a burst
//! goes to the signing threads, and every INVITE of both carries an
//! Identity that secsipidx verifies. Its own test binary, because the
//! counters it reads are process-wide.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use common::stir::{p256_key, secsipidx_verify};
use common::*;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(20);
const BURST: usize = 64;

/// A counter's value in the Prometheus text, 0 when not yet written.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn counters() -> (u64, u64) {
    let text = cidgate::admin::prometheus().render();
    (
        counter(&text, "cidgate_stir_signatures_total"),
        counter(&text, "cidgate_stir_signed_inline_total"),
    )
}

/// Forwarded INVITEs on `carrier` until `n` distinct calls were seen; each
/// is answered 486 so nothing lingers.
async fn forwarded(carrier: &UdpSocket, gw: std::net::SocketAddr, n: usize) -> Vec<Bytes> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while seen.len() < n {
        let (m, _) = recv_datagram(carrier, WAIT).await;
        if !is_request(&m, "INVITE") {
            continue;
        }
        let busy = respond(&m, 486, "Busy Here", Some("c"), "");
        carrier.send_to(&busy, gw).await.unwrap();
        if seen.insert(header_value(&m, "Call-ID").unwrap()) {
            out.push(m);
        }
    }
    out
}

#[tokio::test]
async fn a_lone_call_is_signed_inline_and_a_burst_by_the_signing_threads() {
    let _ = cidgate::admin::prometheus();
    let key = p256_key();
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\nadmin = \"\"\n{}\
         [trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{};transport=udp\"\n\
         [health]\nprobe_interval = 0\n[stir]\nkey = \"{}\"\n\
         x5u = \"https://certs.example.net/cidgate.pem\"\nattest = \"A\"\n",
        workers_line(),
        carrier.local_addr().unwrap(),
        key.key.display()
    );
    let cfg = Config::from_toml_str(&toml, Path::new("stir.toml")).expect("config");
    let inv = Arc::new(InventoryHandle::new(inventory()));
    let gw = tokio::time::timeout(WAIT, cidgate::server::start(&cfg, inv, None))
        .await
        .expect("gateway starts in time")
        .expect("gateway starts");
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let (signed0, inline0) = counters();

    // One call, nothing else in flight: the core signs it itself.
    let inv = invite_via(me, "UDP", "lone", "X-Queue-Id: sales\r\n");
    pbx.send_to(inv.as_bytes(), gw_addr).await.unwrap();
    let lone = forwarded(&carrier, gw_addr, 1).await;
    let (signed1, inline1) = counters();
    assert_eq!(
        (signed1 - signed0, inline1 - inline0),
        (1, 1),
        "a call arriving alone is signed on the core's thread"
    );

    // A burst, sent without waiting: the core has more input queued than
    // the first INVITE, so the rest wait for the signing threads.
    let burst: Vec<String> = (0..BURST)
        .map(|i| invite_via(me, "UDP", &format!("burst{i}"), "X-Queue-Id: sales\r\n"))
        .collect();
    for inv in &burst {
        pbx.send_to(inv.as_bytes(), gw_addr).await.unwrap();
    }
    let calls = forwarded(&carrier, gw_addr, BURST).await;
    let (signed2, inline2) = counters();
    assert_eq!(
        signed2 - signed1,
        BURST as u64,
        "every call of the burst signed once"
    );
    assert!(
        inline2 - inline1 < BURST as u64,
        "a burst must not be signed on the core's thread alone ({} of {BURST} were)",
        inline2 - inline1
    );
    for fwd in lone.iter().chain(&calls) {
        let identity = header_value(fwd, "Identity").expect("every forwarded INVITE is signed");
        secsipidx_verify(&identity, &key.public).expect("secsipidx accepts the signature");
    }
    gw.shutdown().await;
}
