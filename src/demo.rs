//! `cidgate demo`: the gateway on built-in example data, with a PBX and a
//! carrier played in-process over loopback UDP, one call per outcome. It prints,
//! for every call, the identity headers the PBX sent, what the carrier received,
//! and what came back, so a newcomer sees the whole job in one command.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::inventory::{Inventory, InventoryHandle, Region};
use crate::proxy::Event;
use crate::sip::reply::{reply, ReplySpec};
use crate::sip::{parse, HeaderName, Message, Method, Transport};

/// Built-in example inventory: US and GB queues covering every outcome.
pub fn example_inventory() -> anyhow::Result<Inventory> {
    let us = Region::parse("US").context("region US")?;
    let gb = Region::parse("GB").context("region GB")?;
    let mut b = Inventory::builder(us);
    for n in ["+14155550100", "+14155550101", "+442071838750"] {
        b.add_number(n).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    b.add_queue("sales", Some("+14155550100"), "Acme Sales", None, false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    b.add_queue(
        "support-uk",
        Some("+442071838750"),
        "Acme \"UK\" Support",
        Some(gb),
        false,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    b.add_queue(
        "collections",
        Some("+14155550101"),
        "Acme Billing",
        None,
        true,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    b.add_queue("callbacks", None, "Callbacks", None, false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    b.build().map_err(|e| anyhow::anyhow!("{e}"))
}

struct Case {
    title: &'static str,
    queue: &'static str,
    caller_id: Option<&'static str>,
    privacy: bool,
}

const CASES: &[Case] = &[
    Case {
        title: "queue number (no per-call number)",
        queue: "sales",
        caller_id: None,
        privacy: false,
    },
    Case {
        title: "per-call number, E.164 and claimed",
        queue: "sales",
        caller_id: Some("+14155550101"),
        privacy: false,
    },
    Case {
        title: "per-call number not E.164",
        queue: "sales",
        caller_id: Some("555-CALL-NOW"),
        privacy: false,
    },
    Case {
        title: "per-call number E.164 but not claimed",
        queue: "support-uk",
        caller_id: Some("+442079460000"),
        privacy: false,
    },
    Case {
        title: "anonymous queue",
        queue: "collections",
        caller_id: None,
        privacy: false,
    },
    Case {
        title: "PBX asks for privacy",
        queue: "sales",
        caller_id: None,
        privacy: true,
    },
    Case {
        title: "unknown queue",
        queue: "no-such-queue",
        caller_id: None,
        privacy: false,
    },
    Case {
        title: "queue without a number",
        queue: "callbacks",
        caller_id: None,
        privacy: false,
    },
];

pub fn run_blocking() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

pub async fn run() -> anyhow::Result<()> {
    let carrier = UdpSocket::bind("127.0.0.1:0").await?;
    let carrier_addr = carrier.local_addr()?;
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\ndomain = \"gw.example.net\"\nadmin = \"\"\n\n[[carrier]]\nuri = \"sip:{carrier_addr};transport=udp\"\n\n[health]\nprobe_interval = 0\n"
    );
    let config = Config::from_toml_str(&toml, Path::new("(built-in demo config)"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let inventory = Arc::new(InventoryHandle::new(example_inventory()?));
    let (tap_tx, tap) = mpsc::unbounded_channel();
    let gw = crate::server::start(&config, inventory, Some(tap_tx)).await?;
    let gw_addr = gw.udp_addr().context("no UDP listener")?;

    let (seen_tx, seen) = mpsc::unbounded_channel::<Bytes>();
    let carrier_task = tokio::spawn(play_carrier(carrier, seen_tx));
    let mut pbx = Pbx {
        socket: UdpSocket::bind("127.0.0.1:0").await?,
        gw: gw_addr,
        tap,
        seen,
    };

    println!("cidgate demo: gateway on udp://{gw_addr}, carrier on udp://{carrier_addr}");
    println!("inventory: sales +14155550100 \"Acme Sales\"; support-uk +442071838750 (GB);");
    println!("           collections +14155550101 (anonymous); callbacks (no number)\n");
    let mut failures = 0;
    for (i, case) in CASES.iter().enumerate() {
        println!("── call {}: {}", i + 1, case.title);
        if !pbx.call(case, i).await? {
            failures += 1;
        }
        println!();
    }
    carrier_task.abort();
    gw.shutdown().await;
    if failures > 0 {
        bail!("{failures} demo call(s) got no usable response");
    }
    println!("done: every outcome shown; run `cidgate resolve` against your own inventory next.");
    Ok(())
}

/// The demo's PBX side, and what it observes of the gateway and carrier.
struct Pbx {
    socket: UdpSocket,
    gw: SocketAddr,
    /// The gateway's events (its decisions).
    tap: mpsc::UnboundedReceiver<Event>,
    /// What the carrier received.
    seen: mpsc::UnboundedReceiver<Bytes>,
}

impl Pbx {
    /// Places one call and prints what each side saw; false when the PBX
    /// got no usable final response.
    async fn call(&mut self, case: &Case, i: usize) -> anyhow::Result<bool> {
        let (pbx, gw_addr) = (&self.socket, self.gw);
        let invite = pbx_invite(case, i, gw_addr, pbx.local_addr()?);
        print_identity("   PBX sent     ", &invite);
        pbx.send_to(&invite, gw_addr).await?;
        let (outcome, number) = next_decision(&mut self.tap).await?;
        let shown = number.map(|n| format!(" → {n}")).unwrap_or_default();
        println!("   outcome       {outcome}{shown}");
        let final_resp = await_final(pbx).await?;
        let Ok(Message::Response(r)) = parse(final_resp.clone(), Transport::Udp) else {
            return Ok(false);
        };
        if r.code() < 300 {
            let fwd = tokio::time::timeout(Duration::from_secs(1), self.seen.recv())
                .await
                .ok()
                .flatten()
                .context("carrier saw nothing")?;
            print_identity("   carrier got  ", &fwd);
            print_status("   PBX got      ", &final_resp, &[HeaderName::From]);
            finish_call(pbx, gw_addr, &final_resp, i).await?;
        } else {
            print_status("   PBX got      ", &final_resp, &[]);
            let ack = ack_for(&invite, &final_resp);
            pbx.send_to(&ack, gw_addr).await?;
        }
        Ok(true)
    }
}

/// The gateway's caller-ID decision on the call just placed: the outcome and
/// the number shown.
async fn next_decision(
    tap: &mut mpsc::UnboundedReceiver<Event>,
) -> anyhow::Result<(&'static str, Option<String>)> {
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(Event::Decision {
                outcome, number, ..
            }) = tap.recv().await
            {
                return (outcome, number);
            }
        }
    })
    .await
    .context("no decision from the gateway")
}

fn pbx_invite(case: &Case, i: usize, gw: SocketAddr, me: SocketAddr) -> Bytes {
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    let mut m = format!(
        "INVITE sip:+12125550123@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdemo{i};rport\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx{i}\r\nTo: <sip:+12125550123@carrier.example.com>\r\nCall-ID: demo-{i}@pbx.example.com\r\nCSeq: 1 INVITE\r\nContact: <sip:agent7@{me}>\r\nP-Asserted-Identity: <sip:agent7@pbx.example.com>\r\nX-Queue-Id: {}\r\n",
        case.queue
    );
    if let Some(n) = case.caller_id {
        m.push_str(&format!("X-Caller-Id: {n}\r\n"));
    }
    if case.privacy {
        m.push_str("Privacy: id\r\n");
    }
    m.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    Bytes::from(m)
}

fn print_identity(label: &str, msg: &Bytes) {
    let Ok(m) = parse(msg.clone(), Transport::Udp) else {
        return;
    };
    let c = m.fields();
    let mut first = true;
    for h in c.headers() {
        let name = c.bytes(h.name_span);
        let interesting = matches!(
            h.name,
            HeaderName::From | HeaderName::PAssertedIdentity | HeaderName::Privacy
        ) || name.eq_ignore_ascii_case(b"X-Queue-Id")
            || name.eq_ignore_ascii_case(b"X-Caller-Id");
        if interesting {
            let lead = if first {
                label.to_string()
            } else {
                " ".repeat(label.len())
            };
            println!(
                "{lead}{}",
                String::from_utf8_lossy(&c.buf()[h.line.range()]).trim_end()
            );
            first = false;
        }
    }
}

fn print_status(label: &str, msg: &Bytes, show: &[HeaderName]) {
    let text = String::from_utf8_lossy(msg);
    let mut lines = text.split("\r\n");
    println!("{label}{}", lines.next().unwrap_or(""));
    let pad = " ".repeat(label.len());
    for l in lines {
        let name = l.split(':').next().unwrap_or("").trim();
        let hn = HeaderName::classify(name.as_bytes());
        if name.eq_ignore_ascii_case("Reason")
            || name.eq_ignore_ascii_case("Warning")
            || show.contains(&hn)
        {
            println!("{pad}{l}");
        }
    }
}

async fn await_final(pbx: &UdpSocket) -> anyhow::Result<Bytes> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), pbx.recv_from(&mut buf))
            .await
            .context("no final response")??;
        let data = Bytes::copy_from_slice(&buf[..n]);
        if let Ok(Message::Response(r)) = parse(data.clone(), Transport::Udp) {
            if r.code() >= 200 {
                return Ok(data);
            }
        }
    }
}

/// The value of the first header of a kind; `HeaderName::Other` means Contact,
/// which the core has no use for and so no name of its own.
fn header_line(msg: &Bytes, name: HeaderName) -> Option<String> {
    let Ok(m) = parse(msg.clone(), Transport::Udp) else {
        return None;
    };
    let c = m.fields();
    c.headers()
        .iter()
        .find(|h| {
            if name == HeaderName::Other {
                let n = c.bytes(h.name_span);
                n.eq_ignore_ascii_case(b"contact") || n.eq_ignore_ascii_case(b"m")
            } else {
                h.name == name
            }
        })
        .map(|h| String::from_utf8_lossy(c.value(h)).into_owned())
}

fn ack_for(invite: &Bytes, resp: &Bytes) -> Bytes {
    // ACK for a non-2xx: same branch as the INVITE, To from the response.
    let text = String::from_utf8_lossy(invite);
    let head: Vec<&str> = text.split("\r\n").take_while(|l| !l.is_empty()).collect();
    let to = header_line(resp, HeaderName::To).unwrap_or_default();
    let mut out = head[0].replacen("INVITE", "ACK", 1) + "\r\n";
    for l in &head[1..] {
        let name = l.split(':').next().unwrap_or("");
        match name {
            "Via" | "From" | "Call-ID" | "Max-Forwards" => out.push_str(&format!("{l}\r\n")),
            "To" => out.push_str(&format!("To: {to}\r\n")),
            "CSeq" => out.push_str("CSeq: 1 ACK\r\n"),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

/// ACK the 2xx and hang up, both through the gateway's Record-Route.
async fn finish_call(pbx: &UdpSocket, gw: SocketAddr, ok: &Bytes, i: usize) -> anyhow::Result<()> {
    let rr = header_line(ok, HeaderName::RecordRoute).context("no Record-Route in 200")?;
    let to = header_line(ok, HeaderName::To).unwrap_or_default();
    let from = header_line(ok, HeaderName::From).unwrap_or_default();
    let contact = header_line(ok, HeaderName::Other).unwrap_or_default();
    let target = contact
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    let me = pbx.local_addr()?;
    for (method, cseq, branch) in [
        ("ACK", 1, format!("z9hG4bKdemoack{i}")),
        ("BYE", 2, format!("z9hG4bKdemobye{i}")),
    ] {
        let m = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: demo-{i}@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        pbx.send_to(m.as_bytes(), gw).await?;
    }
    let bye_ok = await_final(pbx).await?;
    print_status("   hang-up      ", &bye_ok, &[]);
    Ok(())
}

/// Answers INVITE with 200 and BYE with 200; reports each INVITE it receives.
async fn play_carrier(sock: UdpSocket, seen: mpsc::UnboundedSender<Bytes>) {
    let mut buf = vec![0u8; 65536];
    let me = sock.local_addr().ok();
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        let Ok(Message::Request(req)) = parse(data.clone(), Transport::Udp) else {
            continue;
        };
        let mut contact = me
            .map(|a| format!("Contact: <sip:carrier@{a}>\r\n"))
            .unwrap_or_default();
        // A UAS copies Record-Route into its 2xx (RFC 3261 §12.1.1).
        for h in req.fields().raw().all(HeaderName::RecordRoute) {
            contact.push_str(&String::from_utf8_lossy(
                &req.fields().buf()[h.line.range()],
            ));
        }
        let answer = match req.method() {
            Method::Invite => {
                let _ = seen.send(data);
                Some(reply(
                    &req,
                    from,
                    &ReplySpec {
                        code: 200,
                        phrase: "OK",
                        to_tag: Some("carrier1"),
                        extra: contact.as_bytes(),
                    },
                ))
            }
            Method::Bye => Some(reply(
                &req,
                from,
                &ReplySpec {
                    code: 200,
                    phrase: "OK",
                    to_tag: None,
                    extra: b"",
                },
            )),
            _ => None,
        };
        if let Some(a) = answer {
            let _ = sock.send_to(&a, from).await;
        }
    }
}
