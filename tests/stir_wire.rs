//! Signed calls through the running gateway over loopback sockets: every
//! forwarded INVITE carries an Identity that Debian's secsipidx verifies, and
//! whose claims match the call (number presented, called party, attestation,
//! name, origid of the log event).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cidgate::config::Config;
use cidgate::inventory::{Inventory, InventoryHandle, Region};
use cidgate::proxy::Event;
use cidgate::stir::Attest;
use common::stir::{decode_identity, p256_key, secsipidx_verify, TestKey};
use common::*;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const X5U: &str = "https://certs.example.net/cidgate.pem";
const WAIT: Duration = Duration::from_secs(10);

/// The common test inventory, with +14155550101 attested B in the numbers
/// file (the others take the `[stir]` default, A).
fn attested_inventory() -> Inventory {
    let mut b = Inventory::builder(Region::US);
    for n in ["+14155550100", "+14155550102", "+442071838750"] {
        b.add_number(n).unwrap();
    }
    b.add_number_attested("+14155550101", Attest::B).unwrap();
    let gb = Region::parse("GB");
    b.add_queue("sales", Some("+14155550100"), "Acme Sales", None, false)
        .unwrap()
        .add_queue(
            "quoted",
            Some("+14155550102"),
            "Say \"hi\" \\ bye",
            None,
            false,
        )
        .unwrap()
        .add_queue("uk", Some("+442071838750"), "UK Desk", gb, false)
        .unwrap()
        .add_queue("anon", Some("+14155550101"), "Hidden", None, true)
        .unwrap();
    b.build().unwrap()
}

struct Rig {
    gw: cidgate::server::Gateway,
    gw_addr: SocketAddr,
    pbx: UdpSocket,
    carrier: UdpSocket,
    events: mpsc::UnboundedReceiver<Event>,
    key: TestKey,
}

async fn rig() -> Rig {
    // The process-wide metrics recorder, before anything is counted.
    let _ = cidgate::admin::prometheus();
    let key = p256_key();
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\nadmin = \"\"\n\
         [trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{};transport=udp\"\n\
         [health]\nprobe_interval = 0\n[stir]\nkey = \"{}\"\nx5u = \"{X5U}\"\nattest = \"A\"\nrcd = true\n",
        carrier.local_addr().unwrap(),
        key.key.display()
    );
    let cfg = Config::from_toml_str(&toml, Path::new("stir.toml")).expect("config");
    let (tx, events) = mpsc::unbounded_channel();
    let inv = Arc::new(InventoryHandle::new(attested_inventory()));
    let gw = tokio::time::timeout(
        Duration::from_secs(60),
        cidgate::server::start(&cfg, inv, Some(tx)),
    )
    .await
    .expect("gateway starts in time")
    .expect("gateway starts");
    let gw_addr = gw.udp_addr().unwrap();
    Rig {
        gw,
        gw_addr,
        pbx: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        carrier,
        events,
        key,
    }
}

async fn recv(sock: &UdpSocket) -> Bytes {
    recv_datagram(sock, WAIT).await.0
}

/// Receives the next INVITE (skipping retransmissions of others).
async fn next_invite(sock: &UdpSocket, call: &str) -> Bytes {
    loop {
        let m = recv(sock).await;
        if is_request(&m, "INVITE") && text(&m).contains(&format!("Call-ID: {call}@")) {
            return m;
        }
    }
}

/// `"display name" <uri>` → the display name, unescaped.
fn display_name(name_addr: &str) -> Option<String> {
    let rest = name_addr.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

impl Rig {
    /// Places a call and returns the INVITE the carrier received, after
    /// answering it so nothing lingers.
    async fn call(&mut self, call: &str, ruri: &str, extra: &str) -> Bytes {
        let me = self.pbx.local_addr().unwrap();
        let inv = invite_via(me, "UDP", call, extra).replacen(
            "INVITE sip:+12125550123@gw.example.net",
            &format!("INVITE {ruri}"),
            1,
        );
        self.pbx
            .send_to(inv.as_bytes(), self.gw_addr)
            .await
            .unwrap();
        let fwd = next_invite(&self.carrier, call).await;
        let busy = respond(&fwd, 486, "Busy Here", Some("c"), "");
        self.carrier.send_to(&busy, self.gw_addr).await.unwrap();
        fwd
    }

    async fn origid_of(&mut self, call: &str) -> String {
        loop {
            let ev = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("a decision event")
                .unwrap();
            if let Event::Decision {
                call_id, origid, ..
            } = ev
            {
                if call_id.starts_with(&format!("{call}@")) {
                    return origid.expect("signed calls log their origid");
                }
            }
        }
    }

    /// Verifies the Identity of `fwd` with secsipidx and checks every claim
    /// against what the INVITE presents.
    async fn check(&mut self, call: &str, fwd: &Bytes, dest: (&str, &str), attest: &str) {
        let identities = header_lines(fwd, "Identity");
        assert_eq!(identities.len(), 1, "exactly one Identity:\n{}", text(fwd));
        let identity = header_value(fwd, "Identity").unwrap();
        secsipidx_verify(&identity, &self.key.public)
            .unwrap_or_else(|e| panic!("secsipidx refused {call}: {e}\n{identity}"));
        let (header, claims, params) = decode_identity(&identity);
        assert_eq!(params, format!("info=<{X5U}>;alg=ES256;ppt=shaken"));
        assert_eq!(
            (header["alg"].as_str(), header["ppt"].as_str()),
            (Some("ES256"), Some("shaken"))
        );
        assert_eq!(
            (header["typ"].as_str(), header["x5u"].as_str()),
            (Some("passport"), Some(X5U))
        );
        let pai = header_value(fwd, "P-Asserted-Identity").unwrap();
        let number = pai
            .split("sip:+")
            .nth(1)
            .unwrap()
            .split('@')
            .next()
            .unwrap();
        assert_eq!(
            claims["orig"]["tn"], number,
            "{call}: orig.tn is the asserted number"
        );
        assert_eq!(claims["dest"][dest.0][0], dest.1, "{call}: {claims}");
        assert_eq!(claims["attest"], attest, "{call}");
        let now = cidgate::stir::unix_now() as i64;
        let iat = claims["iat"].as_i64().unwrap();
        assert!(
            (now - iat).abs() <= 10,
            "iat {iat} is the signing time ({now})"
        );
        assert_eq!(
            claims["rcd"]["nam"].as_str().map(String::from),
            display_name(&pai),
            "{call}: rcd.nam is the name PAI presents"
        );
        assert_eq!(
            claims["origid"],
            self.origid_of(call).await,
            "{call}: origid in the log event"
        );
    }
}

const RURI: &str = "sip:+12125550123@gw.example.net";

#[tokio::test]
async fn every_outcome_is_signed_and_verified_by_secsipidx() {
    let mut r = rig().await;
    let cases: &[(&str, &str, &str)] = &[
        ("queue", "X-Queue-Id: sales\r\n", "A"),
        (
            "dynamic",
            "X-Queue-Id: sales\r\nX-Caller-Id: +14155550101\r\n",
            "B",
        ),
        (
            "notE164",
            "X-Queue-Id: sales\r\nX-Caller-Id: 415 555 0101\r\n",
            "A",
        ),
        (
            "unclaimed",
            "X-Queue-Id: sales\r\nX-Caller-Id: +14155550199\r\n",
            "A",
        ),
        ("quoted", "X-Queue-Id: quoted\r\n", "A"),
        (
            "pbxid",
            "X-Queue-Id: sales\r\nIdentity: x.y.z;info=<https://pbx.example/c.pem>\r\n",
            "A",
        ),
    ];
    for (call, extra, attest) in cases {
        let fwd = r.call(call, RURI, extra).await;
        r.check(call, &fwd, ("tn", "12125550123"), attest).await;
    }
    // Anonymous: From hides the caller, the PASSporT signs the PAI number.
    let fwd = r.call("anon", RURI, "X-Queue-Id: anon\r\n").await;
    assert!(header_value(&fwd, "From")
        .unwrap()
        .contains("anonymous.invalid"));
    r.check("anon", &fwd, ("tn", "12125550123"), "B").await;
    assert_eq!(
        decode_identity(&header_value(&fwd, "Identity").unwrap()).1["orig"]["tn"],
        "14155550101"
    );
    r.gw.shutdown().await;

    // Signatures are counted and their latency is a histogram.
    let text = cidgate::admin::prometheus().render();
    let signed: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cidgate_stir_signatures_total "))
        .expect("signature counter")
        .trim()
        .parse()
        .unwrap();
    assert!(signed >= 7.0, "{signed}");
    assert!(
        text.contains("cidgate_stir_sign_seconds_bucket{le=\"0.001\"}"),
        "{text}"
    );
    assert!(text.contains("cidgate_stir_queue_depth"), "{text}");
}

#[tokio::test]
async fn called_numbers_are_normalised_with_the_queue_region_or_signed_as_uri() {
    let mut r = rig().await;
    let fwd = r
        .call(
            "natus",
            "sip:(212)555-0123@gw.example.net",
            "X-Queue-Id: sales\r\n",
        )
        .await;
    r.check("natus", &fwd, ("tn", "12125550123"), "A").await;
    let fwd = r
        .call(
            "natgb",
            "sip:02071838750@gw.example.net",
            "X-Queue-Id: uk\r\n",
        )
        .await;
    r.check("natgb", &fwd, ("tn", "442071838750"), "A").await;
    let fwd = r
        .call("tel", "tel:+1-212-555-0123", "X-Queue-Id: sales\r\n")
        .await;
    r.check("tel", &fwd, ("tn", "12125550123"), "A").await;
    let fwd = r
        .call("uri", "sip:support@example.com", "X-Queue-Id: sales\r\n")
        .await;
    r.check("uri", &fwd, ("uri", "sip:support@example.com"), "A")
        .await;
    r.gw.shutdown().await;
}

#[tokio::test]
async fn rejects_carry_no_signature_and_retransmissions_keep_the_identity() {
    let r = rig().await;
    let me = r.pbx.local_addr().unwrap();
    let reject = invite_via(me, "UDP", "rj", "X-Queue-Id: nope\r\n");
    r.pbx.send_to(reject.as_bytes(), r.gw_addr).await.unwrap();
    let answer = recv(&r.pbx).await;
    assert_eq!(status(&answer), 403);
    assert!(header_value(&answer, "Identity").is_none());

    // Not answered: the gateway retransmits (Timer A) the same signed INVITE.
    let inv = invite_via(me, "UDP", "rt", "X-Queue-Id: sales\r\n");
    r.pbx.send_to(inv.as_bytes(), r.gw_addr).await.unwrap();
    let first = next_invite(&r.carrier, "rt").await;
    // The PBX retransmits too: absorbed, not signed again.
    r.pbx.send_to(inv.as_bytes(), r.gw_addr).await.unwrap();
    let again = next_invite(&r.carrier, "rt").await;
    assert_eq!(
        header_value(&again, "Identity"),
        header_value(&first, "Identity"),
        "a retransmission carries the same Identity"
    );
    assert_eq!(again, first);
    // Nothing reached the carrier for the rejected call.
    let mut buf = [0u8; 65536];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), r.carrier.recv_from(&mut buf)).await
    {
        assert!(!String::from_utf8_lossy(&buf[..n]).contains("Call-ID: rj@"));
    }
    r.gw.shutdown().await;
}
