//! SIP over TLS through the running gateway on loopback: calls over every leg
//! combination, certificate checks on both sides, hostile handshakes, reload,
//! and the source address of outgoing connections. Certificates are made by the
//! test (rcgen) in a temporary directory.

mod common;
#[path = "common/tls.rs"]
mod kit;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use cidgate::server::Gateway;
use common::*;
use kit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    Udp,
    Tcp,
    Tls,
}

impl Leg {
    fn token(self) -> &'static str {
        match self {
            Leg::Udp => "UDP",
            Leg::Tcp => "TCP",
            Leg::Tls => "TLS",
        }
    }
}

/// Starts a gateway on 127.0.0.1 (`ip`) with UDP, TCP and TLS listeners.
async fn gateway_on(ip: &str, pki: &Pki, carriers: &[String], tls_extra: &str) -> Gateway {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("cidgate=debug")
        .try_init();
    let carriers: String = carriers
        .iter()
        .map(|c| format!("[[carrier]]\nuri = \"{c}\"\n"))
        .collect();
    let toml = format!(
        "[server]\nlisten = [\"udp://{ip}:0\", \"tcp://{ip}:0\", \"tls://{ip}:0\"]\ndomain = \"gw.example.net\"\nadmin = \"\"\n[trust]\npbx = [\"127.0.0.1/32\"]\n{carriers}[health]\nprobe_interval = 0\n{}",
        pki.section(tls_extra)
    );
    let cfg = Config::from_toml_str(&toml, Path::new("test.toml")).expect("config");
    cidgate::server::start(&cfg, Arc::new(InventoryHandle::new(inventory())), None)
        .await
        .expect("gateway starts")
}

async fn gateway(pki: &Pki, carriers: &[String]) -> Gateway {
    gateway_on("127.0.0.1", pki, carriers, "").await
}

/// One side of a call as the test sees it.
enum Side {
    Udp(UdpSocket, SocketAddr),
    Stream(SipStream),
}

impl Side {
    async fn send(&mut self, m: &[u8]) {
        match self {
            Side::Udp(s, to) => {
                s.send_to(m, *to).await.unwrap();
            }
            Side::Stream(s) => s.send(m).await,
        }
    }
    async fn recv(&mut self) -> Bytes {
        match self {
            Side::Udp(s, _) => {
                let mut buf = vec![0u8; 65536];
                let (n, _) = tokio::time::timeout(WAIT, s.recv_from(&mut buf))
                    .await
                    .expect("a datagram in time")
                    .unwrap();
                Bytes::copy_from_slice(&buf[..n])
            }
            Side::Stream(s) => s.recv().await,
        }
    }
    async fn recv_skip_100(&mut self) -> Bytes {
        loop {
            let m = self.recv().await;
            if !m.starts_with(b"SIP/2.0 100 ") {
                return m;
            }
        }
    }
    fn local(&self) -> SocketAddr {
        match self {
            Side::Udp(s, _) => s.local_addr().unwrap(),
            Side::Stream(s) => s.local,
        }
    }
}

/// Every Record-Route entry, top first.
fn record_routes(m: &Bytes) -> Vec<String> {
    header_lines(m, "Record-Route")
        .iter()
        .flat_map(|l| {
            let v = l.split_once(':').unwrap().1.trim().to_string();
            v.split(">,")
                .map(|p| {
                    let p = p.trim();
                    if p.ends_with('>') {
                        p.to_string()
                    } else {
                        format!("{p}>")
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An in-dialog request.
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    method: &str,
    target: &str,
    leg: Leg,
    me: SocketAddr,
    route: &[String],
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
) -> String {
    let routes: String = route.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{} {me};branch=z9hG4bK{method}{cseq}{};rport\r\n{routes}Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        leg.token(),
        me.port()
    )
}

/// Places one call PBX leg → carrier leg through the gateway: INVITE, 200,
/// ACK, then BYE from the PBX (`pbx_hangs_up`) or from the carrier, and checks
/// identity on each hop.
async fn call(pbx_leg: Leg, carrier_leg: Leg, pki: &Pki, pbx_hangs_up: bool) {
    let call = format!("{pbx_leg:?}-{carrier_leg:?}-{pbx_hangs_up}");
    // The carrier.
    let (mut carrier_udp, carrier_stream, carrier_addr) = match carrier_leg {
        Leg::Udp => {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let a = s.local_addr().unwrap();
            (Some(s), None, a)
        }
        Leg::Tcp => {
            let c = StreamCarrier::bind("127.0.0.1", None).await;
            let a = c.addr();
            (None, Some(c), a)
        }
        Leg::Tls => {
            let c = StreamCarrier::bind("127.0.0.1", Some(&pki.carrier)).await;
            let a = c.addr();
            (None, Some(c), a)
        }
    };
    let uri = format!(
        "sip:{carrier_addr};transport={}",
        carrier_leg.token().to_lowercase()
    );
    let gw = gateway(pki, &[uri]).await;
    let mut pbx = match pbx_leg {
        Leg::Udp => Side::Udp(
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            gw.udp_addr().unwrap(),
        ),
        Leg::Tcp => Side::Stream(SipStream::tcp_to(gw.tcp_addr().unwrap()).await),
        Leg::Tls => Side::Stream(SipStream::tls_to(gw.tls_addr().unwrap(), &pki.ca, None).await),
    };
    let me = pbx.local();
    let pbx_contact = format!(
        "sip:agent7@{me};transport={}",
        pbx_leg.token().to_lowercase()
    );
    let inv = invite_via(
        me,
        pbx_leg.token(),
        &call,
        "X-Queue-Id: sales\r\nPrivacy: id\r\n",
    )
    .replace("<sip:agent7@127.0.0.10:5070>", &format!("<{pbx_contact}>"));
    let pbx_from = header_value(&Bytes::from(inv.clone()), "From").unwrap();
    pbx.send(inv.as_bytes()).await;
    assert_eq!(status(&pbx.recv().await), 100);

    let mut carrier = match (carrier_udp.take(), &carrier_stream) {
        (Some(s), _) => {
            let gw_udp = gw.udp_addr().unwrap();
            Side::Udp(s, gw_udp)
        }
        (None, Some(c)) => Side::Stream(c.accept().await),
        _ => unreachable!(),
    };
    let fwd = carrier.recv().await;
    assert!(is_request(&fwd, "INVITE"), "{}", text(&fwd));
    let top_via = header_lines(&fwd, "Via")[0].clone();
    assert!(
        top_via.contains(&format!("SIP/2.0/{} ", carrier_leg.token())),
        "our Via names the carrier leg's transport: {top_via}"
    );
    let presented = header_value(&fwd, "From").unwrap();
    assert!(
        presented.contains("sip:anonymous@anonymous.invalid"),
        "{presented}"
    );
    let callee = format!(
        "sip:callee@{carrier_addr};transport={}",
        carrier_leg.token().to_lowercase()
    );
    let callee_contact = format!("Contact: <{callee}>\r\n");
    let ok = respond(&fwd, 200, "OK", Some("callee"), &callee_contact);
    carrier.send(&ok).await;
    let up = pbx.recv_skip_100().await;
    assert_eq!(status(&up), 200, "{}", text(&up));
    assert_eq!(
        header_value(&up, "From").unwrap(),
        pbx_from,
        "the PBX gets its own From back"
    );
    let rr = record_routes(&up);
    assert!(!rr.is_empty());
    let pbx_route: Vec<String> = rr.iter().rev().cloned().collect();
    let carrier_route = record_routes(&fwd);
    // RFC 5658: two routes when the legs differ, each naming its side.
    let expected = if pbx_leg == carrier_leg { 1 } else { 2 };
    assert_eq!(carrier_route.len(), expected, "{carrier_route:?}");
    let names = |r: &str, leg: Leg| match leg {
        Leg::Udp => !r.contains("transport="),
        _ => r.contains(&format!("transport={}", leg.token().to_lowercase())),
    };
    assert!(names(&carrier_route[0], carrier_leg), "{carrier_route:?}");
    assert!(
        names(&carrier_route[expected - 1], pbx_leg),
        "{carrier_route:?}"
    );
    let to_tagged = format!("{};tag=callee", header_value(&fwd, "To").unwrap());
    let call_id = format!("{call}@pbx.example.com");

    let ack = in_dialog(
        "ACK", &callee, pbx_leg, me, &pbx_route, &pbx_from, &to_tagged, &call_id, 10,
    );
    pbx.send(ack.as_bytes()).await;
    let got = carrier.recv().await;
    assert!(is_request(&got, "ACK"), "{}", text(&got));
    assert_eq!(header_value(&got, "From").unwrap(), presented);

    if pbx_hangs_up {
        let bye = in_dialog(
            "BYE", &callee, pbx_leg, me, &pbx_route, &pbx_from, &to_tagged, &call_id, 11,
        );
        pbx.send(bye.as_bytes()).await;
        let got = carrier.recv().await;
        assert!(is_request(&got, "BYE"), "{}", text(&got));
        assert_eq!(header_value(&got, "From").unwrap(), presented);
        carrier.send(&respond(&got, 200, "OK", None, "")).await;
        let done = pbx.recv().await;
        assert_eq!(status(&done), 200);
        assert_eq!(header_value(&done, "From").unwrap(), pbx_from);
    } else {
        let cme = carrier.local();
        let bye = in_dialog(
            "BYE",
            &pbx_contact,
            carrier_leg,
            cme,
            &carrier_route,
            &to_tagged,
            &presented,
            &call_id,
            1,
        );
        carrier.send(bye.as_bytes()).await;
        let got = pbx.recv().await;
        assert!(is_request(&got, "BYE"), "{}", text(&got));
        assert_eq!(
            header_value(&got, "To").unwrap(),
            pbx_from,
            "the PBX sees its own From as To"
        );
        pbx.send(&respond(&got, 200, "OK", None, "")).await;
        let done = carrier.recv().await;
        assert_eq!(status(&done), 200);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn calls_over_every_leg_combination_with_bye_from_both_sides() {
    let pki = Pki::new();
    for (pbx, carrier) in [
        (Leg::Udp, Leg::Tls),
        (Leg::Tls, Leg::Tls),
        (Leg::Tcp, Leg::Udp),
        (Leg::Tls, Leg::Udp),
    ] {
        for pbx_hangs_up in [true, false] {
            call(pbx, carrier, &pki, pbx_hangs_up).await;
        }
    }
}

/// An INVITE from a UDP PBX, returning the PBX socket and the first final
/// response it gets.
async fn udp_call_final(gw: &Gateway, call: &str) -> Bytes {
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let inv = invite_via(me, "UDP", call, "X-Queue-Id: sales\r\n");
    pbx.send_to(inv.as_bytes(), gw.udp_addr().unwrap())
        .await
        .unwrap();
    let mut side = Side::Udp(pbx, gw.udp_addr().unwrap());
    side.recv_skip_100().await
}

#[tokio::test]
async fn a_carrier_whose_certificate_fails_gets_the_next_one_or_503() {
    let pki = Pki::new();
    // Issued by a CA the gateway does not trust.
    let rogue = StreamCarrier::bind("127.0.0.1", Some(&pki.rogue)).await;
    // Trusted CA, but the certificate names another host than the URI.
    let wrong_name = leaf(pki.dir.path(), "elsewhere", &["elsewhere.test"], &pki.root);
    let misnamed = StreamCarrier::bind("127.0.0.1", Some(&wrong_name)).await;
    let good = StreamCarrier::bind("127.0.0.1", Some(&pki.carrier)).await;
    let uris = [&rogue, &misnamed, &good]
        .map(|c| format!("sip:{};transport=tls", c.addr()))
        .to_vec();
    let gw = gateway(&pki, &uris).await;
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let inv = invite_via(me, "UDP", "failover", "X-Queue-Id: sales\r\n");
    pbx.send_to(inv.as_bytes(), gw.udp_addr().unwrap())
        .await
        .unwrap();
    // The two bad carriers see a handshake that the gateway aborts; nothing
    // in the clear follows.
    for bad in [&rogue, &misnamed] {
        let (tcp, _) = tokio::time::timeout(WAIT, bad.listener.accept())
            .await
            .unwrap()
            .unwrap();
        let acceptor = server(if std::ptr::eq(bad, &rogue) {
            &pki.rogue
        } else {
            &wrong_name
        });
        let mut first = [0u8; 1];
        tcp.peek(&mut first).await.unwrap();
        assert_eq!(
            first[0], 0x16,
            "a TLS handshake record, never plaintext SIP"
        );
        assert!(
            acceptor.accept(tcp).await.is_err(),
            "the gateway aborts the handshake"
        );
    }
    let mut carrier = good.accept().await;
    let fwd = carrier.recv().await;
    assert!(is_request(&fwd, "INVITE"));
    gw.shutdown().await;

    // Only a bad carrier: 503 to the PBX at once, not a timeout.
    let rogue = StreamCarrier::bind("127.0.0.1", Some(&pki.rogue)).await;
    let gw = gateway(&pki, &[format!("sip:{};transport=tls", rogue.addr())]).await;
    let acceptor = server(&pki.rogue);
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = rogue.listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let fin = udp_call_final(&gw, "all-bad").await;
    assert_eq!(status(&fin), 503, "{}", text(&fin));
    task.abort();
    gw.shutdown().await;
}

/// A call over UDP that must complete while something hostile goes on.
async fn a_call_still_works(gw: &Gateway, carrier: &UdpSocket, call: &str) {
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    let inv = invite_via(me, "UDP", call, "X-Queue-Id: sales\r\n");
    pbx.send_to(inv.as_bytes(), gw.udp_addr().unwrap())
        .await
        .unwrap();
    let mut c = Side::Udp(
        UdpSocket::from_std(carrier_clone(carrier)).unwrap(),
        gw.udp_addr().unwrap(),
    );
    // Skip what is left of earlier calls (their ACKs).
    let fwd = loop {
        let m = c.recv().await;
        if is_request(&m, "INVITE") && text(&m).contains(&format!("Call-ID: {call}@")) {
            break m;
        }
    };
    c.send(&respond(&fwd, 486, "Busy Here", Some("b"), ""))
        .await;
    let mut p = Side::Udp(pbx, gw.udp_addr().unwrap());
    assert_eq!(status(&p.recv_skip_100().await), 486);
}

fn carrier_clone(s: &UdpSocket) -> std::net::UdpSocket {
    let fd = socket2::SockRef::from(s).try_clone().unwrap();
    let std: std::net::UdpSocket = fd.into();
    std.set_nonblocking(true).unwrap();
    std
}

/// Whether the gateway closed `tcp` (EOF or reset) within `within`, having
/// sent nothing that looks like SIP.
async fn closed_without_sip(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut got = Vec::new();
    let r = tokio::time::timeout(within, tcp.read_to_end(&mut got)).await;
    let closed = matches!(r, Ok(Ok(_)) | Ok(Err(_)));
    closed && !got.windows(7).any(|w| w == b"SIP/2.0")
}

#[tokio::test]
async fn hostile_handshakes_are_closed_and_other_calls_go_on() {
    let pki = Pki::new();
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("sip:{};transport=udp", carrier.local_addr().unwrap());
    // Trust only 127.0.0.1: a TLS client from 127.0.0.3 is a stranger.
    let gw = gateway_on("127.0.0.1", &pki, &[uri], "require_client_cert = true\n").await;
    let tls_addr = gw.tls_addr().unwrap();

    // A stranger: closed before any handshake.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut stranger = sock.connect(tls_addr).await.unwrap();
    let _ = stranger.write_all(b"\x16\x03\x01\x00\x05hello").await;
    assert!(closed_without_sip(&mut stranger, WAIT).await);

    // Garbage instead of a ClientHello.
    let mut garbage = TcpStream::connect(tls_addr).await.unwrap();
    garbage
        .write_all(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_without_sip(&mut garbage, WAIT).await);

    // A client that stalls mid-handshake: the first bytes of a ClientHello,
    // then silence. A call goes through meanwhile; the stalled socket is closed.
    let mut stalled = TcpStream::connect(tls_addr).await.unwrap();
    stalled
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00")
        .await
        .unwrap();
    a_call_still_works(&gw, &carrier, "during-stall").await;
    assert!(closed_without_sip(&mut stalled, Duration::from_secs(10)).await);

    // A PBX without a client certificate while one is required.
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("gw.example.net").unwrap();
    let mut no_cert = client(&pki.ca, None)
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    no_cert
        .write_all(invite("nocert", "X-Queue-Id: sales\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, no_cert.read_to_end(&mut got)).await;
    assert!(!got.windows(7).any(|w| w == b"SIP/2.0"), "nothing answered");

    // A PBX certificate from another CA: the handshake fails.
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let r = client(&pki.ca, Some(&pki.rogue))
        .connect(name.clone(), tcp)
        .await;
    if let Ok(mut s) = r {
        // TLS 1.3: the client learns of the refusal on its first read.
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "refused");
    }

    // With a certificate from the CA, the PBX gets through.
    let mut ok = SipStream::tls_to(tls_addr, &pki.ca, Some(&pki.pbx)).await;
    let me = ok.local;
    ok.send(invite_via(me, "TLS", "withcert", "X-Queue-Id: sales\r\n").as_bytes())
        .await;
    assert_eq!(status(&ok.recv().await), 100);
    a_call_still_works(&gw, &carrier, "after-all").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn outgoing_tcp_and_tls_connections_come_from_the_listen_address() {
    let pki = Pki::new();
    let tcp_carrier = StreamCarrier::bind("127.0.0.1", None).await;
    let tls_carrier = StreamCarrier::bind("127.0.0.1", Some(&pki.carrier)).await;
    for (carrier, transport) in [(&tcp_carrier, "tcp"), (&tls_carrier, "tls")] {
        let uri = format!("sip:{};transport={transport}", carrier.addr());
        let gw = gateway_on("127.0.0.2", &pki, &[uri], "").await;
        let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = pbx.local_addr().unwrap();
        let inv = invite_via(
            me,
            "UDP",
            &format!("src-{transport}"),
            "X-Queue-Id: sales\r\n",
        );
        pbx.send_to(inv.as_bytes(), gw.udp_addr().unwrap())
            .await
            .unwrap();
        let mut conn = carrier.accept().await;
        assert_eq!(
            conn.peer.ip().to_string(),
            "127.0.0.2",
            "{transport}: the carrier sees the listen address as the source"
        );
        let fwd = conn.recv().await;
        let via = header_lines(&fwd, "Via")[0].clone();
        assert!(via.contains("127.0.0.2:"), "{via}");
        gw.shutdown().await;
    }
}

#[test]
fn tls_configuration_is_checked_and_errors_name_file_line_and_key() {
    let pki = Pki::new();
    let parse = |toml: &str| Config::from_toml_str(toml, Path::new("gw.toml"));
    let ok = parse(&format!(
        "[server]\nlisten = [\"tls://127.0.0.1:5061\"]\n[[carrier]]\nuri = \"sips:127.0.0.1:5071\"\n[[carrier]]\nuri = \"sip:127.0.0.1:5072;transport=TLS\"\n{}",
        pki.section("verify_carrier = true\nrequire_client_cert = true\n")
    ))
    .expect("valid");
    assert_eq!(ok.server.listen[0].transport, cidgate::sip::Transport::Tls);
    assert!(ok
        .carrier
        .iter()
        .all(|c| c.transport == cidgate::sip::Transport::Tls));
    assert_eq!(ok.carrier[0].addr.port(), 5071);
    assert!(ok.tls.require_client_cert);

    let err = |toml: &str| parse(toml).unwrap_err().to_string();
    let e = err(&pki.section("verify_carier = true\n"));
    assert!(
        e.contains("gw.toml:5") && e.contains("unknown key `verify_carier` in [tls]"),
        "{e}"
    );
    let e = err("[server]\nlisten = [\"tls://127.0.0.1:5061\"]\n");
    assert!(e.contains("[tls] cert and key"), "{e}");
    let e = err("[[carrier]]\nuri = \"sips:127.0.0.1;transport=udp\"\n");
    assert!(
        e.contains("gw.toml:2") && e.contains("sips: means TLS"),
        "{e}"
    );
    let e = err("[[carrier]]\nuri = \"sip:127.0.0.1;transport=tls\"\n");
    assert!(e.contains("[tls] ca: needed to verify"), "{e}");
    // A key that is not the certificate's, named at its line.
    let toml = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.gateway.cert.display(),
        pki.carrier.key.display()
    );
    let e = err(&toml);
    assert!(e.contains("gw.toml:3") && e.contains("[tls] key"), "{e}");
    // A CA file with no certificate in it.
    let toml = format!("[tls]\nca = \"{}\"\n", pki.gateway.key.display());
    let e = err(&toml);
    assert!(e.contains("gw.toml:2") && e.contains("[tls] ca"), "{e}");
    let e = err("[server]\ndialog_secret_previous = \"0123456789abcdef0\"\n");
    assert!(e.contains("dialog_secret_previous"), "{e}");
}

/// Runs the real binary with TLS, replaces the certificate files and sends
/// SIGHUP: a bad set is refused (the old certificate stays), a good one is
/// served to new connections, and an established connection is not dropped.
#[test]
fn sighup_reloads_the_certificate_and_refuses_a_bad_one() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    std::fs::write(
        dir.join("queues.csv"),
        "queue_id,caller_id_number,caller_id_name,region\nsales,+14155550100,Sales,US\n",
    )
    .unwrap();
    std::fs::write(dir.join("numbers.csv"), "number\n+14155550100\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let live = Identity {
        cert: dir.join("live.pem"),
        key: dir.join("live.key"),
    };
    std::fs::copy(&pki.gateway.cert, &live.cert).unwrap();
    std::fs::copy(&pki.gateway.key, &live.key).unwrap();
    let cfg = dir.join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp://127.0.0.1:0\", \"tls://127.0.0.1:{port}\"]\nadmin = \"\"\n[tls]\ncert = \"live.pem\"\nkey = \"live.key\"\nca = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let mut first = None;
            for _ in 0..300 {
                first = presented_cert(addr, &pki.ca).await;
                if first.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let first = first.expect("the gateway serves TLS");
            let mut established = SipStream::tls_to(addr, &pki.ca, None).await;
            let hup = || signal("-HUP");
            // A bad pair: the new certificate with the old key.
            let next = leaf(dir, "next", &["gw.example.net", "127.0.0.1"], &pki.root);
            std::fs::copy(&next.cert, &live.cert).unwrap();
            hup();
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(presented_cert(addr, &pki.ca).await.as_deref(), Some(&first[..]));
            // The matching key: the new certificate is served.
            std::fs::copy(&next.key, &live.key).unwrap();
            hup();
            let mut now = None;
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                now = presented_cert(addr, &pki.ca).await;
                if now.as_deref() != Some(&first[..]) {
                    break;
                }
            }
            assert!(now.is_some() && now.as_deref() != Some(&first[..]), "new certificate served");
            // The connection made before both reloads still works.
            let me = established.local;
            established
                .send(
                    format!("OPTIONS sip:gw.example.net SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:pbx@pbx.example.com>;tag=o1\r\nTo: <sip:gw.example.net>\r\nCall-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            assert_eq!(status(&established.recv().await), 200);
        })
    }));
    // A stop the gateway sees (SIGTERM), not SIGKILL: log lines leave in
    // batches up to 100 ms late, and only a stop it sees writes what waits.
    signal("-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Err(e) = result {
        panic!("{e:?}\n{log}");
    }
    assert!(log.contains("stopped"), "a clean stop: {log}");
    assert!(log.contains("tls reload refused"), "{log}");
    assert!(log.contains("tls certificate and key reloaded"), "{log}");
}

/// Reads `child`'s standard output until `needle` shows up (or time runs out).
async fn read_until(out: &mut tokio::process::ChildStdout, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match tokio::time::timeout_at(deadline, out.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// OpenSSL on both sides, a TLS stack the project did not write: `s_client`
/// as the PBX (verifying the gateway against the CA) and `s_server` as the
/// carrier (its certificate verified by the gateway).
#[tokio::test]
async fn openssl_pbx_and_openssl_carrier_talk_sip_over_tls_with_the_gateway() {
    use std::process::Stdio;
    let pki = Pki::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&pki.carrier.cert)
        .arg("-key")
        .arg(&pki.carrier.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed (scripts/test.sh installs it)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gw = gateway(&pki, &[format!("sip:127.0.0.1:{port};transport=tls")]).await;
    let tls_addr = gw.tls_addr().unwrap();
    let mut client = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(tls_addr.to_string())
        .args([
            "-servername",
            "gw.example.net",
            "-verify_hostname",
            "gw.example.net",
            "-CAfile",
        ])
        .arg(&pki.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let inv = invite("openssl", "X-Queue-Id: sales\r\n").replace(
        "Via: SIP/2.0/UDP 127.0.0.10:5070",
        "Via: SIP/2.0/TLS 127.0.0.1:5999",
    );
    let mut cin = client.stdin.take().unwrap();
    let mut cout = client.stdout.take().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cin.write_all(inv.as_bytes()).await.unwrap();
    cin.flush().await.unwrap();
    let got = read_until(&mut cout, "SIP/2.0 100 Trying").await;
    assert!(got.contains("SIP/2.0 100 Trying"), "s_client got: {got}");
    let mut sout = server.stdout.take().unwrap();
    let fwd = read_until(&mut sout, "Content-Length").await;
    assert!(fwd.starts_with("INVITE "), "s_server got: {fwd}");
    assert!(fwd.contains("Via: SIP/2.0/TLS "), "{fwd}");
    assert!(
        fwd.contains("\"Acme Sales\" <sip:+14155550100@gw.example.net"),
        "{fwd}"
    );
    let _ = client.kill().await;
    let _ = server.kill().await;
    gw.shutdown().await;
}
