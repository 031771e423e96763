//! The calls the proxy benches push through the core: the test harness's
//! settings, a typical outbound INVITE from a PBX, and the carrier's
//! answers to what the gateway forwards.

use bytes::Bytes;
use cidgate::callerid::policy::DynamicFormat;
use cidgate::callerid::PaiForm;
use cidgate::proxy::dialog::SealKey;
use cidgate::proxy::{Peer, Settings, TrustList};
use cidgate::sip::{parse, HeaderName, Message, MessageFields, Transport};

use super::Rng;

/// Inventory size for the proxy benches: the lab data's (scripts/gen_lab.py).
pub const QUEUES: u64 = 10_000;
pub const NUMBERS: u64 = 100_000;

pub const PBX: &str = "127.0.0.10:5070";
pub const CARRIER: &str = "127.0.0.20:5080";
pub const GW: &str = "127.0.0.1:5060";

pub fn peer(transport: Transport, addr: &str) -> Peer {
    Peer {
        transport,
        addr: addr.parse().unwrap(),
    }
}

/// The settings of the test harness (tests/common), fixed seal key so runs
/// are comparable.
pub fn settings() -> Settings {
    Settings {
        domain: "gw.example.net".into(),
        listen: vec![peer(Transport::Udp, GW), peer(Transport::Tcp, GW)],
        trust: TrustList::new(vec!["127.0.0.10/32".parse().unwrap()]),
        carriers: vec![peer(Transport::Udp, CARRIER)],
        health: cidgate::proxy::HealthSettings {
            probe_interval: None,
            ..Default::default()
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

/// A queue that has a number (every 20th queue has none, see support).
pub fn numbered_queue(rng: &mut Rng) -> u64 {
    loop {
        let q = rng.below(QUEUES);
        if q % 20 != 13 {
            return q;
        }
    }
}

pub const SDP: &str = "v=0\r\n\
o=pbx 53655765 2353687637 IN IP4 127.0.0.10\r\n\
s=-\r\n\
c=IN IP4 127.0.0.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// A typical outbound INVITE from a PBX (about 900 bytes): SDP, the queue
/// header, a claimed per-call number (outcome `dynamic`) and a PAI the
/// gateway must replace.
pub fn typical_invite(n: usize, queue: &str, caller: &str) -> Bytes {
    let msg = format!(
        "INVITE sip:+12025550143@gw.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK-{n:06}-5f1c;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-{n:06}-a81\r\n\
To: <sip:+12025550143@carrier.example.com>\r\n\
Call-ID: {n:06}-3f9c1e7a@pbx.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:agent7@127.0.0.10:5070;transport=udp>\r\n\
X-Queue-Id: {queue}\r\n\
X-Caller-Id: {caller}\r\n\
P-Asserted-Identity: \"Agent 7\" <sip:agent7@pbx.example.com>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY\r\n\
Supported: timer, replaces, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
User-Agent: Acme PBX 12.4.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\
\r\n\
{SDP}",
        SDP.len()
    );
    Bytes::from(msg)
}

/// The callee's Contact in the carrier's `200` ([`carrier_answer`]).
pub const CALLEE: &str = "sip:callee@127.0.0.20:5080";

/// The header lines of `f` with these names, as received.
pub fn lines(f: &MessageFields, names: &[HeaderName]) -> String {
    f.headers()
        .iter()
        .filter(|h| names.contains(&h.name))
        .map(|h| String::from_utf8_lossy(&f.buf()[h.line.range()]).into_owned())
        .collect()
}

/// The values of every header `name` of `f`, comma-joined.
pub fn values(f: &MessageFields, name: HeaderName) -> String {
    f.headers()
        .iter()
        .filter(|h| h.name == name)
        .map(|h| String::from_utf8_lossy(f.bytes(h.value)).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The header fields of a request or response, which must parse.
pub fn fields(data: &Bytes) -> MessageFields {
    match parse(data.clone(), Transport::Udp) {
        Ok(Message::Request(r)) => r.fields().clone(),
        Ok(Message::Response(r)) => r.fields().clone(),
        Err(e) => panic!("a message the gateway sent does not parse: {e:?}"),
    }
}

/// The carrier's answer to a request the gateway forwarded to it: Via,
/// From, Call-ID and CSeq copied, To with the callee's tag; a `200` to the
/// INVITE also carries a Contact, the Record-Route and an SDP answer.
pub fn carrier_answer(fwd: &Bytes, code: u16, n: usize) -> Bytes {
    let f = fields(fwd);
    let invite = f
        .headers()
        .iter()
        .any(|h| h.name == HeaderName::CSeq && f.bytes(h.value).ends_with(b"INVITE"));
    let phrase = if code == 200 { "OK" } else { "Ringing" };
    let mut out = format!("SIP/2.0 {code} {phrase}\r\n");
    out += &lines(
        &f,
        &[
            HeaderName::Via,
            HeaderName::From,
            HeaderName::CallId,
            HeaderName::CSeq,
        ],
    );
    let to = values(&f, HeaderName::To);
    if to.contains("tag=") {
        out += &format!("To: {to}\r\n");
    } else {
        out += &format!("To: {to};tag=callee-{n:06}\r\n");
    }
    let sdp = if code == 200 && invite {
        out += &lines(&f, &[HeaderName::RecordRoute]);
        out += &format!("Contact: <{CALLEE}>\r\nContent-Type: application/sdp\r\n");
        "v=0\r\no=callee 1 1 IN IP4 127.0.0.20\r\ns=-\r\nc=IN IP4 127.0.0.20\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\n"
    } else {
        ""
    };
    out += &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len());
    Bytes::from(out)
}
