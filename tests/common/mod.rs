//! Shared test helpers: an inventory, settings, a virtual-time harness around
//! the I/O-free proxy core, and message inspection.
#![allow(dead_code)]

pub mod binary;
pub mod http;
pub mod readme;
pub mod stir;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cidgate::callerid::policy::DynamicFormat;
use cidgate::callerid::PaiForm;
use cidgate::inventory::{Inventory, InventoryHandle, Region};
use cidgate::proxy::dialog::SealKey;
use cidgate::proxy::{Event, HealthSettings, Peer, Proxy, Settings, Transmit, TrustList};
use cidgate::sip::{parse, HeaderName, Message, Transport};

/// The RFC 4475 torture messages, one `.dat` file each (see the README there).
pub fn rfc4475_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

pub const PBX: &str = "127.0.0.10:5070";
pub const CARRIER: &str = "127.0.0.20:5080";
pub const CARRIER2: &str = "127.0.0.21:5080";
pub const STRANGER: &str = "127.0.0.99:5060";
pub const GW: &str = "127.0.0.1:5060";

/// `workers = N` for the `[server]` section of a test gateway: the suites
/// that run the gateway run with one core by default and with as many as
/// `CIDGATE_TEST_WORKERS` says when it is set (`scripts/test.sh` runs them
/// again with 2), since behaviour must not depend on the number of cores.
pub fn workers_line() -> String {
    let n: usize = std::env::var("CIDGATE_TEST_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    format!("workers = {n}\n")
}

pub fn udp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
    }
}

pub fn tcp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: addr.parse().unwrap(),
    }
}

/// US queues and numbers used throughout the tests.
pub fn inventory() -> Inventory {
    let us = Region::parse("US").unwrap();
    let gb = Region::parse("GB").unwrap();
    let mut b = Inventory::builder(us);
    for n in [
        "+14155550100",
        "+14155550101",
        "+14155550102",
        "+442071838750",
    ] {
        b.add_number(n).unwrap();
    }
    b.add_queue("sales", Some("+14155550100"), "Acme Sales", None, false)
        .unwrap();
    b.add_queue(
        "quoted",
        Some("+14155550102"),
        "Say \"hi\" \\ bye",
        None,
        false,
    )
    .unwrap();
    b.add_queue("uk", Some("+442071838750"), "UK Desk", Some(gb), false)
        .unwrap();
    b.add_queue("anon", Some("+14155550101"), "Hidden", None, true)
        .unwrap();
    b.add_queue("noname", Some("+14155550101"), "", None, false)
        .unwrap();
    b.add_queue("nonum", None, "No Number", None, false)
        .unwrap();
    b.build().unwrap()
}

pub fn settings() -> Settings {
    Settings {
        domain: "gw.example.net".into(),
        listen: vec![udp(GW), tcp(GW)],
        trust: TrustList::new(vec!["127.0.0.10/32".parse().unwrap()]),
        carriers: vec![udp(CARRIER)],
        // Probing off unless a test turns it on: it would add OPTIONS to
        // every exchange the other tests count.
        health: HealthSettings {
            probe_interval: None,
            ..HealthSettings::default()
        },
        queue_header: "X-Queue-Id".into(),
        dynamic_header: "X-Caller-Id".into(),
        dynamic_format: DynamicFormat::Strict,
        pai: PaiForm::Sip,
        strip: vec![
            "X-Queue-Id".into(),
            "X-Caller-Id".into(),
            "P-Preferred-Identity".into(),
            "Remote-Party-ID".into(),
        ],
        reject_code: 403,
        reject_phrase: "Forbidden".into(),
        reject_headers: "Reason: Q.850;cause=21;text=\"no outbound caller ID\"\r\nWarning: 399 gw.example.net \"no outbound caller ID\"\r\n".into(),
        key: SealKey::from_bytes([7; 32]),
        cnam_names: false,
        stir: None,
    }
}

/// Drives a `Proxy` with virtual time.
pub struct Harness {
    pub proxy: Proxy,
    pub now: Instant,
    pub events: Vec<Event>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(settings())
    }

    pub fn with(s: Settings) -> Harness {
        Harness {
            proxy: Proxy::new(s, Arc::new(InventoryHandle::new(inventory()))),
            now: Instant::now(),
            events: Vec::new(),
        }
    }

    /// Delivers a message and returns everything the proxy wants to send.
    pub fn input(&mut self, from: Peer, msg: impl AsRef<[u8]>) -> Vec<Transmit> {
        self.proxy
            .handle(self.now, from, Bytes::copy_from_slice(msg.as_ref()));
        self.drain()
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        self.now += d;
        self.proxy.handle_timeout(self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = self.proxy.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = self.proxy.poll_event() {
            self.events.push(e);
        }
        out
    }

    pub fn last_outcome(&self) -> Option<&'static str> {
        self.events.iter().rev().find_map(|e| match e {
            Event::Decision { outcome, .. } => Some(*outcome),
            _ => None,
        })
    }
}

pub fn to(out: &[Transmit], peer: Peer) -> Vec<&Transmit> {
    out.iter().filter(|t| t.to == peer).collect()
}

pub fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn status(b: &Bytes) -> u16 {
    match parse(b.clone(), Transport::Udp) {
        Ok(Message::Response(r)) => r.code(),
        other => panic!("not a response: {other:?}\n{}", text(b)),
    }
}

pub fn is_request(b: &Bytes, method: &str) -> bool {
    b.starts_with(format!("{method} ").as_bytes())
}

/// (whole line, value) of every header whose name matches, compact forms
/// included, as written.
fn headers_named(b: &Bytes, name: &str) -> Vec<(String, String)> {
    let m = parse(b.clone(), Transport::Udp).expect("parses");
    let c = m.fields();
    c.headers()
        .iter()
        .filter(|h| cidgate::sip::header::same_header(c.bytes(h.name_span), name.as_bytes()))
        .map(|h| {
            (
                String::from_utf8_lossy(&c.buf()[h.line.range()]).into_owned(),
                String::from_utf8_lossy(c.bytes(h.value)).into_owned(),
            )
        })
        .collect()
}

/// Every header line whose name matches, as written.
pub fn header_lines(b: &Bytes, name: &str) -> Vec<String> {
    headers_named(b, name)
        .into_iter()
        .map(|(line, _)| line)
        .collect()
}

/// The value of the first header whose name matches.
pub fn header_value(b: &Bytes, name: &str) -> Option<String> {
    headers_named(b, name)
        .into_iter()
        .next()
        .map(|(_, value)| value)
}

/// The header lines a proxy must not touch, in order, plus the body: used to
/// assert byte-for-byte forwarding of everything the gateway does not own.
pub fn unowned(b: &Bytes, extra_owned: &[&str]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let m = parse(b.clone(), Transport::Udp).expect("parses");
    let c = m.fields();
    let mut lines = Vec::new();
    let mut first_via = true;
    for h in c.headers() {
        let name = c.bytes(h.name_span);
        let owned = match h.name {
            HeaderName::From
            | HeaderName::To
            | HeaderName::MaxForwards
            | HeaderName::ContentLength
            | HeaderName::PAssertedIdentity
            | HeaderName::PPreferredIdentity
            | HeaderName::RemotePartyId
            | HeaderName::Route
            | HeaderName::RecordRoute => true,
            HeaderName::Via => {
                let own = c.value(h).windows(9).any(|w| w == b"z9hG4bKcg");
                let skip = first_via && own;
                first_via = false;
                skip
            }
            _ => extra_owned
                .iter()
                .any(|n| cidgate::sip::header::same_header(name, n.as_bytes())),
        };
        if !owned {
            lines.push(c.buf()[h.line.range()].to_vec());
        }
    }
    (lines, c.body().to_vec())
}

pub const SDP: &str = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.10\r\ns=-\r\nc=IN IP4 127.0.0.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

/// An INVITE from the PBX; `extra` header lines are inserted before Content-Type.
pub fn invite(call: &str, extra: &str) -> String {
    format!(
        "INVITE sip:+12125550123@gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK{call};rport\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-{call};x-keep=1\r\nTo: <sip:+12125550123@carrier.example.com>\r\nCall-ID: {call}@pbx.example.com\r\nCSeq: 10 INVITE\r\nContact: <sip:agent7@127.0.0.10:5070>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// [`invite`] as a PBX at `from` sends it over `transport` (`UDP`, `TCP`,
/// `TLS`): its Via names that address, so answers come back to the socket.
pub fn invite_via(from: SocketAddr, transport: &str, call: &str, extra: &str) -> String {
    invite(call, extra).replace(
        "Via: SIP/2.0/UDP 127.0.0.10:5070",
        &format!("Via: SIP/2.0/{transport} {from}"),
    )
}

/// The next datagram on `sock`; fails the test when none comes within `wait`
/// (a bound against hanging, not a timing claim).
pub async fn recv_datagram(sock: &tokio::net::UdpSocket, wait: Duration) -> (Bytes, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .expect("timed out waiting for a datagram")
        .unwrap();
    (Bytes::copy_from_slice(&buf[..n]), from)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The callee's 200 OK to `req` (with a Contact at the carrier): a call
/// answered.
pub fn answer(req: &Bytes, to_tag: &str) -> Bytes {
    let contact = "Contact: <sip:callee@127.0.0.20:5080>\r\n";
    respond(req, 200, "OK", Some(to_tag), contact)
}

/// Builds a response to `req` as a UAS would (Via, From, To+tag, Call-ID, CSeq
/// copied), with extra header lines.
pub fn respond(req: &Bytes, code: u16, phrase: &str, to_tag: Option<&str>, extra: &str) -> Bytes {
    let m = parse(req.clone(), Transport::Udp).expect("request parses");
    let Message::Request(r) = m else {
        panic!("not a request")
    };
    let c = r.fields();
    let mut out = format!("SIP/2.0 {code} {phrase}\r\n");
    for h in c.headers() {
        let line = String::from_utf8_lossy(&c.buf()[h.line.range()]).into_owned();
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.push_str(&line)
            }
            HeaderName::RecordRoute if (200..300).contains(&code) => out.push_str(&line),
            HeaderName::To => match to_tag {
                Some(t) if c.to_tag().is_none() => out.push_str(&format!(
                    "To: {};tag={t}\r\n",
                    String::from_utf8_lossy(c.bytes(h.value))
                )),
                _ => out.push_str(&line),
            },
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}
