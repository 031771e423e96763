//! The route state the gateway writes toward the carrier (its Record-Route
//! and Via) reveals nothing, refuses tampering, survives a secret rotation,
//! and the double Record-Route of calls whose legs differ in transport.

mod common;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use cidgate::proxy::dialog::SealKey;
use cidgate::proxy::Peer;
use cidgate::sip::Transport;
use common::*;

fn one(out: &[cidgate::proxy::Transmit], peer: Peer) -> &Bytes {
    let hits = to(out, peer);
    assert_eq!(hits.len(), 1, "one message to {peer:?}: {out:?}");
    &hits[0].data
}

fn tls(addr: &str) -> Peer {
    Peer {
        transport: Transport::Tls,
        addr: addr.parse().unwrap(),
    }
}

/// Every way a parameter value might carry data: as written, base64 in both
/// alphabets (padded or not), hex.
fn decodings(v: &str) -> Vec<Vec<u8>> {
    let mut out = vec![v.as_bytes().to_vec()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(d) = engine.decode(v) {
            out.push(d);
        }
    }
    if v.len().is_multiple_of(2) && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        out.push(
            (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap())
                .collect(),
        );
    }
    out
}

/// Every parameter value (and URI part) of a header value.
fn parts(value: &str) -> Vec<String> {
    value
        .split(|c: char| ";,<>= ".contains(c))
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() >= 3)
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[test]
fn record_route_and_via_reveal_nothing_about_the_pbx_or_the_identity() {
    let mut h = Harness::new();
    for (call, extra) in [
        ("p1", "X-Queue-Id: sales\r\n"),
        ("p2", "X-Queue-Id: sales\r\nPrivacy: id\r\n"),
        ("p3", "X-Queue-Id: quoted\r\nX-Caller-Id: +14155550101\r\n"),
    ] {
        let inv = invite(call, extra).replace("\"Agent 7\"", "\"Agent 4\"");
        let out = h.input(udp(PBX), &inv);
        let fwd = one(&out, udp(CARRIER)).clone();
        let presented = header_value(&fwd, "P-Asserted-Identity").unwrap();
        let number = presented
            .split("sip:")
            .nth(1)
            .and_then(|s| s.split('@').next())
            .unwrap()
            .to_string();
        let digits = number.trim_start_matches('+').to_string();
        let bcd: Vec<u8> = digits
            .as_bytes()
            .chunks(2)
            .map(|p| (p[0] - b'0') << 4 | p.get(1).map_or(0, |b| b - b'0'))
            .collect();
        let mut pbx_addr = vec![127, 0, 0, 10];
        pbx_addr.extend_from_slice(&5070u16.to_be_bytes());
        let text_needles: Vec<&[u8]> = vec![
            b"127.0.0.10",
            b"5070",
            b"agent4",
            b"Agent 4",
            b"pbx.example.com",
            number.as_bytes(),
            digits.as_bytes(),
            b"Acme",
            b"Sales",
        ];
        let binary_needles: Vec<&[u8]> = vec![&pbx_addr, &bcd[..bcd.len().min(5)]];
        let mut checked = 0;
        for name in ["Record-Route", "Via"] {
            // Only what the gateway wrote: its Record-Route, its (top) Via.
            let value = header_value(&fwd, name).unwrap();
            for part in parts(&value) {
                for decoded in decodings(&part) {
                    checked += 1;
                    for n in text_needles.iter().chain(&binary_needles) {
                        assert!(
                            !contains(&decoded, n),
                            "{name} part {part:?} reveals {:?}",
                            String::from_utf8_lossy(n)
                        );
                    }
                }
            }
        }
        assert!(checked >= 6, "the headers were examined: {checked}");
        let rr = header_value(&fwd, "Record-Route").unwrap();
        assert!(rr.len() < 200, "Record-Route URI under 200 bytes: {rr}");
    }
}

fn in_dialog_from_pbx(method: &str, id: &str, routes: &str, cseq: u32) -> String {
    format!(
        "{method} sip:callee@127.0.0.20:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK{method}{id}{cseq};rport\r\n{routes}Max-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-{id};x-keep=1\r\nTo: <sip:+12125550123@carrier.example.com>;tag=callee1\r\nCall-ID: {id}@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A call answered by the carrier: the 200 as the PBX got it.
fn established(h: &mut Harness, id: &str, carrier: Peer) -> (Bytes, Bytes) {
    let out = h.input(udp(PBX), invite(id, "X-Queue-Id: sales\r\n"));
    let fwd = one(&out, carrier).clone();
    let ok = answer(&fwd, "callee1");
    let out = h.input(carrier, &ok);
    (fwd, one(&out, udp(PBX)).clone())
}

#[test]
fn altered_or_replayed_state_gets_403_and_nothing_is_relayed() {
    let mut h = Harness::new();
    let (_, ok) = established(&mut h, "t1", udp(CARRIER));
    let (_, ok2) = established(&mut h, "t2", udp(CARRIER));
    let rr = header_value(&ok, "Record-Route").unwrap();
    let token = rr.split("cg=").nth(1).unwrap().trim_end_matches('>');
    let mid = token.len() / 2;
    let flipped = if &token[mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    let altered = rr.replace(
        token,
        &format!("{}{flipped}{}", &token[..mid], &token[mid + 1..]),
    );
    let truncated = rr.replace(token, &token[..token.len() - 4]);
    let rr2 = header_value(&ok2, "Record-Route").unwrap();
    for (what, msg) in [
        (
            "altered",
            in_dialog_from_pbx("BYE", "t1", &format!("Route: {altered}\r\n"), 11),
        ),
        (
            "truncated",
            in_dialog_from_pbx("BYE", "t1", &format!("Route: {truncated}\r\n"), 11),
        ),
        // Call t2's state in a request of call t1.
        (
            "replayed",
            in_dialog_from_pbx("BYE", "t1", &format!("Route: {rr2}\r\n"), 11),
        ),
    ] {
        let out = h.input(udp(PBX), &msg);
        assert_eq!(out.len(), 1, "{what}: only the answer: {out:?}");
        assert_eq!(out[0].to, udp(PBX), "{what}");
        assert_eq!(status(&out[0].data), 403, "{what}");
    }
    // The genuine state still works.
    let out = h.input(
        udp(PBX),
        in_dialog_from_pbx("BYE", "t1", &format!("Route: {rr}\r\n"), 11),
    );
    assert!(is_request(one(&out, udp(CARRIER)), "BYE"));
}

#[test]
fn a_rotated_secret_keeps_calls_set_up_before_it() {
    let keyed = |key: SealKey| {
        let mut s = settings();
        s.key = key;
        Harness::with(s)
    };
    let mut before = keyed(SealKey::from_secret(b"the first dialog secret"));
    let (_, ok) = established(&mut before, "rot", udp(CARRIER));
    let rr = header_value(&ok, "Record-Route").unwrap();
    let bye = in_dialog_from_pbx("BYE", "rot", &format!("Route: {rr}\r\n"), 11);
    let mut rotated = keyed(
        SealKey::from_secret(b"the second dialog secret").with_previous(b"the first dialog secret"),
    );
    let out = rotated.input(udp(PBX), &bye);
    assert!(is_request(one(&out, udp(CARRIER)), "BYE"), "still routed");
    // New calls are sealed under the new secret only.
    let (_, ok_new) = established(&mut rotated, "rot2", udp(CARRIER));
    let rr_new = header_value(&ok_new, "Record-Route").unwrap();
    let bye_new = in_dialog_from_pbx("BYE", "rot2", &format!("Route: {rr_new}\r\n"), 11);
    let mut old_only = keyed(SealKey::from_secret(b"the first dialog secret"));
    let out = old_only.input(udp(PBX), &bye_new);
    assert_eq!(status(one(&out, udp(PBX))), 403);
    // Once the previous secret is dropped, the old dialog is gone.
    let mut dropped = keyed(SealKey::from_secret(b"the second dialog secret"));
    let out = dropped.input(udp(PBX), &bye);
    assert_eq!(status(one(&out, udp(PBX))), 403);
}

#[test]
fn legs_of_different_transports_get_two_record_routes_each_naming_its_side() {
    let mut s = settings();
    s.listen = vec![udp(GW), tcp(GW), tls("127.0.0.1:5061")];
    s.carriers = vec![tls(CARRIER)];
    let mut h = Harness::with(s);
    let (fwd, ok) = established(&mut h, "dbl", tls(CARRIER));
    let rr = header_lines(&fwd, "Record-Route");
    assert_eq!(rr.len(), 1, "{rr:?}");
    let values: Vec<&str> = rr[0]
        .trim_start_matches("Record-Route: ")
        .trim_end()
        .split(", ")
        .collect();
    assert_eq!(values.len(), 2, "{values:?}");
    assert!(
        values[0].starts_with("<sip:gw.example.net;transport=tls;lr;cg="),
        "the carrier's side first, over TLS on 5061: {}",
        values[0]
    );
    assert_eq!(
        values[1], "<sip:gw.example.net;lr;cgp>",
        "the PBX side, UDP"
    );
    assert!(header_lines(&fwd, "Via")[0].starts_with("Via: SIP/2.0/TLS 127.0.0.1:5061;"));

    // The PBX's route set is the reverse; both our values are popped, whether
    // the PBX writes them in one Route field or two.
    let ok_rr = header_value(&ok, "Record-Route").unwrap();
    let mut pbx_side: Vec<&str> = ok_rr.split(", ").collect();
    pbx_side.reverse();
    for (n, routes) in [
        format!("Route: {}\r\n", pbx_side.join(", ")),
        format!("Route: {}\r\nRoute: {}\r\n", pbx_side[0], pbx_side[1]),
        format!(
            "Route: {}, <sip:sbc.carrier.example.com;lr>\r\n",
            pbx_side.join(", ")
        ),
    ]
    .iter()
    .enumerate()
    {
        let bye = in_dialog_from_pbx("BYE", "dbl", routes, 11 + n as u32);
        let out = h.input(udp(PBX), &bye);
        let b = one(&out, tls(CARRIER));
        assert!(is_request(b, "BYE"), "{}", text(b));
        let left = header_lines(b, "Route");
        if n == 2 {
            assert_eq!(left, vec!["Route: <sip:sbc.carrier.example.com;lr>\r\n"]);
        } else {
            assert!(left.is_empty(), "both of ours removed: {left:?}");
        }
    }
    // From the carrier: its route set is the Record-Route as it was.
    let from_gw = header_value(&fwd, "From").unwrap();
    let bye = format!(
        "BYE sip:agent7@127.0.0.10:5070 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.20:5080;branch=z9hG4bKcbye\r\nRoute: {}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550123@carrier.example.com>;tag=callee1\r\nTo: {from_gw}\r\nCall-ID: dbl@pbx.example.com\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        values.join(", ")
    );
    let out = h.input(tls(CARRIER), &bye);
    let b = one(&out, udp(PBX));
    assert!(header_lines(b, "Route").is_empty());
    assert!(header_lines(b, "Via")[0].starts_with("Via: SIP/2.0/UDP "));
}

#[test]
fn legs_of_one_transport_get_one_record_route() {
    let mut h = Harness::new();
    let (fwd, _) = established(&mut h, "single", udp(CARRIER));
    let rr = header_value(&fwd, "Record-Route").unwrap();
    assert!(rr.starts_with("<sip:gw.example.net;lr;cg="), "{rr}");
    assert!(!rr.contains(','), "{rr}");
}

/// A PBX From far longer than a route may be: the Record-Route stays under
/// 200 bytes, the call and its BYEs still work both ways, and the PBX still
/// gets its own tag (dialogs match by tags) in what the carrier sends; its
/// URI too while that fits (only the display name goes).
#[test]
fn a_long_pbx_from_keeps_the_record_route_short_and_the_dialog_working() {
    for (call, user_len, uri_kept) in [("lf1", 40, true), ("lf2", 400, false)] {
        let mut h = Harness::new();
        let display = "Agent ".to_string() + &"with a very long display name ".repeat(8);
        let user = "agent-".to_string() + &"x".repeat(user_len);
        let long_from = format!("\"{display}\" <sip:{user}@pbx.example.com>");
        let inv = invite(call, "X-Queue-Id: sales\r\n")
            .replace("\"Agent 7\" <sip:agent7@pbx.example.com>", &long_from);
        assert!(inv.contains(&user), "the long From is in the INVITE");
        let out = h.input(udp(PBX), &inv);
        let fwd = one(&out, udp(CARRIER)).clone();
        let from_gw = header_value(&fwd, "From").unwrap();
        let out = h.input(udp(CARRIER), answer(&fwd, "callee1"));
        let ok = one(&out, udp(PBX)).clone();
        let rr = header_value(&ok, "Record-Route").unwrap();
        for uri in rr.split(", ") {
            assert!(
                uri.len() < 200,
                "Record-Route URI under 200 bytes ({}): {uri}",
                uri.len()
            );
        }
        // The carrier hangs up: the PBX gets the BYE in its own dialog.
        let bye = format!(
            "BYE sip:agent7@127.0.0.10:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.20:5080;branch=z9hG4bK{call}bye\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550123@carrier.example.com>;tag=callee1\r\nTo: {from_gw}\r\nCall-ID: {call}@pbx.example.com\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let out = h.input(udp(CARRIER), &bye);
        let b = one(&out, udp(PBX)).clone();
        assert!(is_request(&b, "BYE"));
        let to = header_value(&b, "To").unwrap();
        assert!(
            to.contains(&format!(";tag=pbx-{call}")),
            "the PBX's tag: {to}"
        );
        assert_eq!(to.contains(&user), uri_kept, "the PBX's URI kept: {to}");
        assert!(!to.contains("display name"), "the display name went: {to}");
        // And the PBX's own BYE in the other direction is routed by the state.
        let out = h.input(
            udp(PBX),
            in_dialog_from_pbx("BYE", call, &format!("Route: {rr}\r\n"), 11),
        );
        assert!(is_request(one(&out, udp(CARRIER)), "BYE"));
    }
}
