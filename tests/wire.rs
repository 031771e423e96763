//! The running gateway over real loopback sockets: a test PBX and carrier
//! exchange UDP and TCP messages with it and the bytes on the wire are checked.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;
use cidgate::server::Gateway;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(5);

async fn gateway(carrier_uri: &str) -> Gateway {
    gateway_with(carrier_uri, "").await
}

/// [`gateway`] with `extra` appended to its configuration.
async fn gateway_with(carrier_uri: &str, extra: &str) -> Gateway {
    let toml = format!(
        "[server]\nlisten = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\ndomain = \"gw.example.net\"\nadmin = \"\"\n{}[trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"{carrier_uri}\"\n[health]\nprobe_interval = 0\n{extra}",
        workers_line()
    );
    let cfg = Config::from_toml_str(&toml, Path::new("test.toml")).expect("config");
    cidgate::server::start(&cfg, Arc::new(InventoryHandle::new(inventory())), None)
        .await
        .expect("gateway starts")
}

async fn recv(sock: &UdpSocket) -> (Bytes, SocketAddr) {
    recv_datagram(sock, WAIT).await
}

/// Receives until a message that is not a 100 Trying.
async fn recv_skip_100(sock: &UdpSocket) -> Bytes {
    loop {
        let (m, _) = recv(sock).await;
        if !m.starts_with(b"SIP/2.0 100 ") {
            return m;
        }
    }
}

#[tokio::test]
async fn udp_call_end_to_end() {
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let gw = gateway(&format!(
        "sip:{};transport=udp",
        carrier.local_addr().unwrap()
    ))
    .await;
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inv = Bytes::from(invite_via(
        pbx.local_addr().unwrap(),
        "UDP",
        "w1",
        "P-Asserted-Identity: <sip:agent@pbx>\r\nX-Queue-Id: sales\r\nX-Caller-Id: +14155550101\r\nX-Other: kept\r\n",
    ));
    pbx.send_to(&inv, gw_addr).await.unwrap();
    let (trying, _) = recv(&pbx).await;
    assert_eq!(status(&trying), 100);
    let (fwd, from) = recv(&carrier).await;
    assert_eq!(from, gw_addr, "sent from the listening socket");
    assert_eq!(
        header_value(&fwd, "From").unwrap(),
        "\"Acme Sales\" <sip:+14155550101@gw.example.net;user=phone>;tag=pbx-w1;x-keep=1"
    );
    assert_eq!(header_lines(&fwd, "P-Asserted-Identity").len(), 1);
    assert_eq!(
        unowned(&fwd, &["X-Queue-Id", "X-Caller-Id"]),
        unowned(&inv, &["X-Queue-Id", "X-Caller-Id"])
    );
    let ok = respond(
        &fwd,
        200,
        "OK",
        Some("c1"),
        &format!(
            "Contact: <sip:callee@{}>\r\n",
            carrier.local_addr().unwrap()
        ),
    );
    carrier.send_to(&ok, from).await.unwrap();
    let up = recv_skip_100(&pbx).await;
    assert_eq!(status(&up), 200);
    assert_eq!(header_lines(&up, "From"), header_lines(&inv, "From"));
    assert_eq!(header_lines(&up, "Via"), header_lines(&inv, "Via"));

    // ACK and BYE through the Record-Route.
    let rr = header_value(&up, "Record-Route").unwrap();
    let me = pbx.local_addr().unwrap();
    let callee = carrier.local_addr().unwrap();
    for (method, cseq) in [("ACK", 10), ("BYE", 11)] {
        let m = format!(
            "{method} sip:callee@{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}w1;rport\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-w1;x-keep=1\r\nTo: <sip:+12125550123@carrier.example.com>;tag=c1\r\nCall-ID: w1@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        pbx.send_to(m.as_bytes(), gw_addr).await.unwrap();
        let (got, _) = recv(&carrier).await;
        assert!(is_request(&got, method), "{}", text(&got));
        assert_eq!(header_value(&got, "From"), header_value(&fwd, "From"));
        if method == "BYE" {
            carrier
                .send_to(&respond(&got, 200, "OK", None, ""), gw_addr)
                .await
                .unwrap();
            let (bye_ok, _) = recv(&pbx).await;
            assert_eq!(status(&bye_ok), 200);
            assert!(header_value(&bye_ok, "From")
                .unwrap()
                .contains("agent7@pbx.example.com"));
        }
    }
    gw.shutdown().await;
}

/// INVITEs trickling in a millisecond apart keep the batch window open
/// (each turn reads one or two datagrams); every one must still be answered
/// with 100 Trying and forwarded, and a request over TCP sent in the middle
/// must get its turn. The same with the window off.
#[tokio::test]
async fn a_trickle_that_keeps_the_batch_window_open_is_all_handled() {
    const CALLS: usize = 40;
    for limits in ["", "[limits]\nbatch_window_us = 0\n"] {
        let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("sip:{};transport=udp", carrier.local_addr().unwrap());
        let gw = gateway_with(&uri, limits).await;
        let gw_addr = gw.udp_addr().unwrap();
        let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = pbx.local_addr().unwrap();
        let mut tcp_pbx = TcpStream::connect(gw.tcp_addr().unwrap()).await.unwrap();
        let tcp_me = tcp_pbx.local_addr().unwrap();
        for n in 0..CALLS {
            let call = format!("trickle{n}");
            let inv = invite_via(me, "UDP", &call, "X-Queue-Id: sales\r\n");
            pbx.send_to(inv.as_bytes(), gw_addr).await.unwrap();
            if n == CALLS / 2 {
                let inv = invite_via(tcp_me, "TCP", "trickle-tcp", "X-Queue-Id: sales\r\n");
                tcp_pbx.write_all(inv.as_bytes()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut pending = Vec::new();
        let trying = read_message(&mut tcp_pbx, &mut pending).await;
        assert_eq!(status(&trying), 100, "{limits:?}: {}", text(&trying));
        let mut tried = std::collections::HashSet::new();
        while tried.len() < CALLS {
            let (m, _) = recv(&pbx).await;
            assert_eq!(status(&m), 100, "{limits:?}: {}", text(&m));
            tried.insert(header_value(&m, "Call-ID").unwrap());
        }
        let mut forwarded = std::collections::HashSet::new();
        while forwarded.len() < CALLS + 1 {
            let (m, _) = recv(&carrier).await;
            assert!(is_request(&m, "INVITE"), "{limits:?}: {}", text(&m));
            forwarded.insert(header_value(&m, "Call-ID").unwrap());
        }
        assert!(forwarded.contains("trickle-tcp@pbx.example.com"));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn udp_reject_and_strangers() {
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let gw = gateway(&format!("sip:{}", carrier.local_addr().unwrap())).await;
    let gw_addr = gw.udp_addr().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inv = invite_via(
        pbx.local_addr().unwrap(),
        "UDP",
        "rj",
        "X-Queue-Id: nonum\r\n",
    );
    pbx.send_to(inv.as_bytes(), gw_addr).await.unwrap();
    let (rej, _) = recv(&pbx).await;
    let t = text(&rej);
    assert!(t.starts_with("SIP/2.0 403 Forbidden\r\n"));
    assert!(t.contains("Reason: Q.850;cause=21;text=\"no outbound caller ID\"\r\n"));
    assert!(t.contains("Warning: 399 gw.example.net \"no outbound caller ID\"\r\n"));

    // A source outside the trust list (127.0.0.2 is loopback, but not trusted).
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let inv = invite_via(
        stranger.local_addr().unwrap(),
        "UDP",
        "st",
        "X-Queue-Id: sales\r\n",
    );
    stranger.send_to(inv.as_bytes(), gw_addr).await.unwrap();
    let (resp, _) = recv(&stranger).await;
    assert_eq!(status(&resp), 403);
    // Nothing reached the carrier.
    let mut buf = [0u8; 100];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), carrier.recv_from(&mut buf))
            .await
            .is_err()
    );
    gw.shutdown().await;
}

async fn read_message(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Bytes {
    let mut framer = cidgate::sip::framing::Framer::new(65536);
    framer.push(pending);
    pending.clear();
    loop {
        if let Some(cidgate::sip::framing::Frame::Message(m)) = framer.next_frame().unwrap() {
            pending.extend_from_slice(&framer.buffer_mut()[..]);
            return m;
        }
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("timed out reading TCP")
            .unwrap();
        assert!(n > 0, "connection closed");
        framer.push(&buf[..n]);
    }
}

#[tokio::test]
async fn tcp_split_pipelined_keepalive_and_carrier_reuse() {
    let carrier = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let carrier_addr = carrier.local_addr().unwrap();
    let gw = gateway(&format!("sip:{carrier_addr};transport=tcp")).await;
    let gw_tcp = gw.tcp_addr().unwrap();
    assert_eq!(
        gw_tcp.port(),
        gw.udp_addr().unwrap().port(),
        "one port for both"
    );
    let mut pbx = TcpStream::connect(gw_tcp).await.unwrap();
    let me = pbx.local_addr().unwrap();

    // Keep-alive ping gets a pong.
    pbx.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(WAIT, pbx.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");

    // Two INVITEs: the first split at awkward offsets, the second pipelined
    // right behind it in the same write as the first one's tail.
    let a = invite_via(me, "TCP", "t1", "X-Queue-Id: sales\r\n");
    let b = invite_via(me, "TCP", "t2", "X-Queue-Id: uk\r\n");
    let mut all = a.clone().into_bytes();
    all.extend_from_slice(b.as_bytes());
    for chunk in [
        &all[..7],
        &all[7..120],
        &all[120..a.len() + 3],
        &all[a.len() + 3..],
    ] {
        pbx.write_all(chunk).await.unwrap();
        pbx.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut c1, _) = tokio::time::timeout(WAIT, carrier.accept())
        .await
        .unwrap()
        .unwrap();
    let mut pend = Vec::new();
    let f1 = read_message(&mut c1, &mut pend).await;
    let f2 = read_message(&mut c1, &mut pend).await;
    let mut seen = [
        header_value(&f1, "Call-ID").unwrap(),
        header_value(&f2, "Call-ID").unwrap(),
    ];
    seen.sort();
    assert_eq!(
        seen,
        [
            "t1@pbx.example.com".to_string(),
            "t2@pbx.example.com".to_string()
        ]
    );
    assert!(header_lines(&f1, "Via")[0].starts_with("Via: SIP/2.0/TCP "));
    // Both calls went over the one carrier connection: no second accept.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), carrier.accept())
            .await
            .is_err()
    );

    // Responses come back over the PBX's connection, From restored.
    for f in [&f1, &f2] {
        c1.write_all(&respond(f, 486, "Busy Here", Some("bz"), ""))
            .await
            .unwrap();
    }
    let mut pend_pbx = Vec::new();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let m = read_message(&mut pbx, &mut pend_pbx).await;
        codes.push(status(&m));
        if status(&m) == 486 {
            assert!(header_value(&m, "From")
                .unwrap()
                .contains("agent7@pbx.example.com"));
        }
    }
    codes.sort();
    assert_eq!(codes, vec![100, 100, 486, 486]);
    gw.shutdown().await;
}

#[tokio::test]
async fn tcp_reject_and_oversized_message_closes_connection() {
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let gw = gateway(&format!("sip:{}", carrier.local_addr().unwrap())).await;
    let mut pbx = TcpStream::connect(gw.tcp_addr().unwrap()).await.unwrap();
    let me = pbx.local_addr().unwrap();
    pbx.write_all(invite_via(me, "TCP", "tr", "X-Queue-Id: nope\r\n").as_bytes())
        .await
        .unwrap();
    let mut pend = Vec::new();
    let m = read_message(&mut pbx, &mut pend).await;
    assert_eq!(status(&m), 403);
    assert!(text(&m).contains("Reason: Q.850;cause=21;text=\"no outbound caller ID\""));

    // A header section that never ends and exceeds the bound: connection closed.
    let mut big = b"INVITE sip:x@y SIP/2.0\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    let _ = pbx.write_all(&big).await;
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(WAIT, pbx.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(r, Ok(0) | Err(_)), "connection must be closed");
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_invite_moves_to_tcp_toward_the_carrier() {
    // The carrier listens on UDP and TCP on the same port. The port UDP got
    // may already be taken for TCP by another test: then try another one.
    let (_carrier_udp, carrier_tcp, port) = {
        let mut tries = 0;
        loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = udp.local_addr().unwrap().port();
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(tcp) => break (udp, tcp, port),
                Err(_) if tries < 64 => tries += 1,
                Err(e) => panic!("no port free for both UDP and TCP: {e}"),
            }
        }
    };
    let gw = gateway(&format!("sip:127.0.0.1:{port};transport=udp")).await;
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let pad: String = (0..12)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(60)))
        .collect();
    let inv = invite_via(
        pbx.local_addr().unwrap(),
        "UDP",
        "mtu",
        &format!("X-Queue-Id: sales\r\n{pad}"),
    );
    pbx.send_to(inv.as_bytes(), gw.udp_addr().unwrap())
        .await
        .unwrap();
    let (mut conn, _) = tokio::time::timeout(WAIT, carrier_tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let mut pend = Vec::new();
    let fwd = read_message(&mut conn, &mut pend).await;
    assert!(fwd.len() > 1300);
    assert!(header_lines(&fwd, "Via")[0].starts_with("Via: SIP/2.0/TCP "));
    conn.write_all(&respond(&fwd, 200, "OK", Some("m"), ""))
        .await
        .unwrap();
    let up = recv_skip_100(&pbx).await;
    assert_eq!(status(&up), 200);
    gw.shutdown().await;
}

/// SIGTERM on the real binary: new calls get 503, the call in progress
/// finishes, then the process exits cleanly.
#[tokio::test]
async fn sigterm_drains_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let carrier = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = dir.path().join("gw.toml");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"\"\n{}[[carrier]]\nuri = \"sip:{}\"\n[health]\nprobe_interval = 0\n{}",
            workers_line(),
            carrier.local_addr().unwrap(),
            binary::example_inventory_section()
        ),
    )
    .unwrap();
    let mut gw = binary::RunningBinary::start(&cfg).await;
    let gw_addr = gw.udp;
    let queue = std::fs::read_to_string(data.join("queues.csv")).unwrap();
    let queue_id = queue
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = pbx.local_addr().unwrap();
    pbx.send_to(
        invite_via(me, "UDP", "g1", &format!("X-Queue-Id: {queue_id}\r\n")).as_bytes(),
        gw_addr,
    )
    .await
    .unwrap();
    let (fwd, from) = recv(&carrier).await;
    // The call's log line is written while the gateway runs (lines are
    // batched for at most 100 ms, not held until exit).
    gw.read_log_until("g1@", WAIT).await;
    gw.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    pbx.send_to(
        invite_via(me, "UDP", "g2", &format!("X-Queue-Id: {queue_id}\r\n")).as_bytes(),
        gw_addr,
    )
    .await
    .unwrap();
    let refused = recv_skip_100(&pbx).await;
    assert_eq!(status(&refused), 503, "{}", text(&refused));
    carrier
        .send_to(&respond(&fwd, 200, "OK", Some("g"), ""), from)
        .await
        .unwrap();
    let ok = recv_skip_100(&pbx).await;
    assert_eq!(status(&ok), 200);
    // The lines still waiting when the process ends are written, the last
    // one included.
    let rest = gw.exits_cleanly(WAIT).await;
    assert!(
        rest.last().is_some_and(|l| l.ends_with("stopped")),
        "{}",
        rest.join("\n")
    );
}

/// Port 0 in the config: UDP and TCP must end up on one port every time, even
/// when the port the kernel picks for UDP is busy for TCP (the start then binds
/// again on a new port instead of failing with `Address already in use`).
#[tokio::test]
async fn port_zero_start_binds_udp_and_tcp_on_one_port_every_time() {
    for start in 0..50 {
        let gw = gateway("sip:127.0.0.1:9;transport=udp").await;
        let (udp, tcp) = (gw.udp_addr().unwrap(), gw.tcp_addr().unwrap());
        assert_ne!(udp.port(), 0, "start {start}");
        assert_eq!(udp, tcp, "start {start}: one port for both transports");
        // Both really listen: a TCP connect succeeds on that port.
        TcpStream::connect(tcp).await.expect("TCP listener accepts");
        gw.shutdown().await;
    }
}
