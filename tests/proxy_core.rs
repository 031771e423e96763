//! The proxy core driven directly with virtual time: no sockets, every rule of
//! docs/behaviour.md §3–§5 checked on the bytes the core asks to send.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

fn one(out: &[cidgate::proxy::Transmit], peer: cidgate::proxy::Peer) -> &Bytes {
    let v = to(out, peer);
    assert_eq!(
        v.len(),
        1,
        "expected exactly one message to {peer:?}, got {}",
        v.len()
    );
    &v[0].data
}

fn call(h: &mut Harness, id: &str, extra: &str) -> (Bytes, Bytes) {
    let inv = Bytes::from(invite(id, extra));
    let out = h.input(udp(PBX), &inv);
    assert_eq!(out.len(), 2, "100 to the PBX and the INVITE to the carrier");
    assert_eq!(status(one(&out, udp(PBX))), 100);
    (inv, one(&out, udp(CARRIER)).clone())
}

#[test]
fn queue_outcome_rewrites_identity_and_keeps_everything_else() {
    let mut h = Harness::new();
    let extra = "P-Asserted-Identity: <sip:agent7@pbx.example.com>\r\nP-Asserted-Identity: <tel:+15555550000>\r\nP-Preferred-Identity: <sip:pp@pbx>\r\nRemote-Party-ID: <sip:rpid@pbx>;party=calling\r\nX-Queue-Id: sales\r\nX-Custom:   odd   spacing  \r\nSubject: folded\r\n  continuation\r\n";
    let (inv, fwd) = call(&mut h, "c1", extra);
    assert_eq!(h.last_outcome(), Some("queue"));
    assert_eq!(
        header_value(&fwd, "From").unwrap(),
        "\"Acme Sales\" <sip:+14155550100@gw.example.net;user=phone>;tag=pbx-c1;x-keep=1"
    );
    assert_eq!(
        header_lines(&fwd, "P-Asserted-Identity"),
        vec![
            "P-Asserted-Identity: \"Acme Sales\" <sip:+14155550100@gw.example.net;user=phone>\r\n"
        ]
    );
    for gone in [
        "P-Preferred-Identity",
        "Remote-Party-ID",
        "X-Queue-Id",
        "X-Caller-Id",
    ] {
        assert!(
            header_lines(&fwd, gone).is_empty(),
            "{gone} must be stripped"
        );
    }
    // Our Via on top with a magic-cookie branch, the PBX's below it.
    let vias = header_lines(&fwd, "Via");
    assert!(
        vias[0].starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcg"),
        "{vias:?}"
    );
    assert_eq!(
        vias[1],
        "Via: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bKc1;rport\r\n"
    );
    assert_eq!(header_value(&fwd, "Max-Forwards").unwrap(), "69");
    let rr = header_value(&fwd, "Record-Route").unwrap();
    assert!(rr.starts_with("<sip:gw.example.net;lr;cg="), "{rr}");
    assert_eq!(
        header_value(&fwd, "Content-Length").unwrap(),
        SDP.len().to_string()
    );
    // Byte for byte: every header we do not own, in order, and the body.
    assert_eq!(
        unowned(&fwd, &["X-Queue-Id", "X-Caller-Id"]),
        unowned(&inv, &["X-Queue-Id", "X-Caller-Id"])
    );
    assert!(text(&fwd).contains("X-Custom:   odd   spacing  \r\n"));
    assert!(text(&fwd).contains("Subject: folded\r\n  continuation\r\n"));
    // To is not ours to change on the initial INVITE.
    assert_eq!(header_lines(&fwd, "To"), header_lines(&inv, "To"));
}

#[test]
fn every_outcome_in_strict_mode() {
    let cases = [
        ("sales", Some("+14155550101"), "dynamic", "+14155550101"),
        ("sales", Some("  +14155550101 "), "dynamic", "+14155550101"),
        ("sales", Some("12345"), "fallback_not_e164", "+14155550100"),
        ("sales", Some("+1555"), "fallback_not_e164", "+14155550100"),
        (
            "sales",
            Some("(415) 555-0101"),
            "fallback_not_e164",
            "+14155550100",
        ),
        (
            "sales",
            Some("+14155550199"),
            "fallback_unclaimed",
            "+14155550100",
        ),
        ("sales", Some(""), "queue", "+14155550100"),
    ];
    for (i, (queue, per_call, outcome, number)) in cases.iter().enumerate() {
        let mut h = Harness::new();
        let mut extra = format!("X-Queue-Id: {queue}\r\n");
        if let Some(p) = per_call {
            extra.push_str(&format!("X-Caller-Id: {p}\r\n"));
        }
        let (_, fwd) = call(&mut h, &format!("s{i}"), &extra);
        assert_eq!(h.last_outcome(), Some(*outcome), "case {per_call:?}");
        let from = header_value(&fwd, "From").unwrap();
        assert!(
            from.contains(&format!("<sip:{number}@gw.example.net;user=phone>")),
            "{from}"
        );
    }
}

#[test]
fn normalize_mode_accepts_national_forms_with_the_queue_region() {
    let mut s = settings();
    s.dynamic_format = cidgate::callerid::policy::DynamicFormat::Normalize;
    let cases = [
        ("sales", "(415) 555-0101", "dynamic", "+14155550101"),
        ("uk", "020 7183 8750", "dynamic", "+442071838750"),
        ("uk", "0044 20 7183 8750", "dynamic", "+442071838750"),
        ("sales", "011 44 20 7183 8750", "dynamic", "+442071838750"),
        ("sales", "not a number", "fallback_not_e164", "+14155550100"),
        (
            "sales",
            "(415) 555-0199",
            "fallback_unclaimed",
            "+14155550100",
        ),
    ];
    for (i, (queue, per_call, outcome, number)) in cases.iter().enumerate() {
        let mut h = Harness::with(s.clone());
        let (_, fwd) = call(
            &mut h,
            &format!("n{i}"),
            &format!("X-Queue-Id: {queue}\r\nX-Caller-Id: {per_call}\r\n"),
        );
        assert_eq!(h.last_outcome(), Some(*outcome), "case {per_call}");
        assert!(header_value(&fwd, "From").unwrap().contains(number));
    }
}

#[test]
fn reject_is_the_acw_signal_and_is_stable() {
    for (queue, reason) in [("nope", "unknown_queue"), ("nonum", "no_queue_number")] {
        let mut h = Harness::new();
        let inv = invite("r1", &format!("X-Queue-Id: {queue}\r\n"));
        let out = h.input(udp(PBX), &inv);
        assert_eq!(out.len(), 1, "only the reject, nothing to the carrier");
        let rej = &out[0].data;
        assert_eq!(out[0].to, udp(PBX));
        assert_eq!(h.last_outcome(), Some(reason));
        let t = text(rej);
        assert!(t.starts_with("SIP/2.0 403 Forbidden\r\n"), "{t}");
        assert!(
            t.contains("\r\nReason: Q.850;cause=21;text=\"no outbound caller ID\"\r\n"),
            "{t}"
        );
        assert!(
            t.contains("\r\nWarning: 399 gw.example.net \"no outbound caller ID\"\r\n"),
            "{t}"
        );
        assert!(
            header_value(rej, "To").unwrap().contains(";tag="),
            "reject needs a To tag"
        );
        // The PBX's own From comes back unchanged.
        assert_eq!(
            header_lines(rej, "From"),
            header_lines(&Bytes::from(inv.clone()), "From")
        );
        // Retransmission: the very same response.
        let again = h.input(udp(PBX), &inv);
        assert_eq!(again.len(), 1);
        assert_eq!(&again[0].data, rej);
        // Timer G retransmits until the ACK, which is absorbed.
        let g = h.advance(Duration::from_millis(500));
        assert_eq!(g.len(), 1);
        assert_eq!(&g[0].data, rej);
        let to_tag = header_value(rej, "To").unwrap();
        let ack = inv
            .replacen("INVITE sip", "ACK sip", 1)
            .replace("CSeq: 10 INVITE", "CSeq: 10 ACK")
            .replace(
                "To: <sip:+12125550123@carrier.example.com>",
                &format!("To: {to_tag}"),
            );
        assert!(h.input(udp(PBX), &ack).is_empty(), "ACK absorbed");
        assert!(
            h.advance(Duration::from_secs(5)).is_empty(),
            "no retransmission after ACK"
        );
    }
}

#[test]
fn configurable_reject() {
    let mut s = settings();
    s.reject_code = 480;
    s.reject_phrase = "Temporarily Unavailable".into();
    s.reject_headers = "Reason: Q.850;cause=21\r\nX-ACW: yes\r\n".into();
    let mut h = Harness::with(s);
    let out = h.input(udp(PBX), invite("rc", "X-Queue-Id: nope\r\n"));
    let t = text(&out[0].data);
    assert!(t.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"));
    assert!(t.contains("\r\nX-ACW: yes\r\n"));
}

#[test]
fn invite_retransmissions_are_absorbed_and_answered() {
    let mut h = Harness::new();
    let (inv, _) = call(&mut h, "rt", "X-Queue-Id: sales\r\n");
    let out = h.input(udp(PBX), &inv);
    assert_eq!(out.len(), 1, "only a 100 again; nothing new to the carrier");
    assert_eq!(status(&out[0].data), 100);
    // Timer A: the core retransmits to the carrier itself until a provisional.
    let a = h.advance(Duration::from_millis(500));
    assert_eq!(to(&a, udp(CARRIER)).len(), 1);
    let a2 = h.advance(Duration::from_millis(999));
    assert!(a2.is_empty(), "second retransmission waits 1 s");
    let a3 = h.advance(Duration::from_millis(1));
    assert_eq!(to(&a3, udp(CARRIER)).len(), 1);
}

#[test]
fn responses_flow_back_with_the_pbx_identity() {
    let mut h = Harness::new();
    let (inv, fwd) = call(&mut h, "ok", "X-Queue-Id: sales\r\n");
    let ringing = respond(&fwd, 180, "Ringing", Some("callee1"), "");
    let out = h.input(udp(CARRIER), &ringing);
    let up = one(&out, udp(PBX));
    assert_eq!(status(up), 180);
    assert_eq!(
        header_lines(up, "From"),
        header_lines(&inv, "From"),
        "From restored"
    );
    assert_eq!(
        header_lines(up, "Via"),
        header_lines(&inv, "Via"),
        "our Via removed"
    );
    // No Timer A after a provisional.
    assert!(to(&h.advance(Duration::from_secs(2)), udp(CARRIER)).is_empty());
    let ok = answer(&fwd, "callee1");
    let out = h.input(udp(CARRIER), &ok);
    let up = one(&out, udp(PBX));
    assert_eq!(status(up), 200);
    assert_eq!(header_lines(up, "From"), header_lines(&inv, "From"));
    assert_eq!(
        header_lines(up, "Record-Route"),
        header_lines(&fwd, "Record-Route")
    );
    // A 2xx retransmission from the carrier is relayed again (RFC 6026).
    let out = h.input(udp(CARRIER), &ok);
    assert_eq!(status(one(&out, udp(PBX))), 200);
}

fn established(h: &mut Harness, id: &str) -> (Bytes, Bytes, Bytes) {
    let (inv, fwd) = call(h, id, "X-Queue-Id: sales\r\n");
    let ok = answer(&fwd, "callee1");
    let out = h.input(udp(CARRIER), &ok);
    let up = one(&out, udp(PBX)).clone();
    (inv, fwd, up)
}

fn in_dialog_from_pbx(method: &str, id: &str, route: &str, cseq: u32) -> String {
    format!(
        "{method} sip:callee@127.0.0.20:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bK{method}{id};rport\r\nRoute: {route}\r\nMax-Forwards: 70\r\nFrom: \"Agent 7\" <sip:agent7@pbx.example.com>;tag=pbx-{id};x-keep=1\r\nTo: <sip:+12125550123@carrier.example.com>;tag=callee1\r\nCall-ID: {id}@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn in_dialog_requests_follow_the_record_route_and_keep_identity() {
    let mut h = Harness::new();
    let (_, fwd, ok) = established(&mut h, "dlg");
    let rr = header_value(&ok, "Record-Route").unwrap();
    // ACK for the 2xx goes to the callee's Contact, our Route popped.
    let ack = in_dialog_from_pbx("ACK", "dlg", &rr, 10);
    let out = h.input(udp(PBX), &ack);
    let a = one(&out, udp(CARRIER));
    assert!(is_request(a, "ACK"));
    assert!(header_lines(a, "Route").is_empty(), "our Route is removed");
    assert_eq!(
        header_value(a, "From"),
        header_value(&fwd, "From"),
        "same identity as the INVITE"
    );
    // BYE from the PBX: forwarded, answered, From restored on the way back.
    let bye = Bytes::from(in_dialog_from_pbx("BYE", "dlg", &rr, 11));
    let out = h.input(udp(PBX), &bye);
    let b = one(&out, udp(CARRIER)).clone();
    assert!(is_request(&b, "BYE"));
    assert_eq!(header_value(&b, "From"), header_value(&fwd, "From"));
    assert_eq!(
        header_lines(&b, "P-Asserted-Identity"),
        header_lines(&fwd, "P-Asserted-Identity")
    );
    let out = h.input(udp(CARRIER), respond(&b, 200, "OK", None, ""));
    let up = one(&out, udp(PBX));
    assert_eq!(status(up), 200);
    assert_eq!(header_lines(up, "From"), header_lines(&bye, "From"));
}

#[test]
fn bye_from_the_carrier_reaches_the_pbx_with_its_own_identity() {
    let mut h = Harness::new();
    let (inv, fwd, ok) = established(&mut h, "cb");
    let rr = header_value(&ok, "Record-Route").unwrap();
    let from_gw = header_value(&fwd, "From").unwrap();
    let bye = Bytes::from(format!(
        "BYE sip:agent7@127.0.0.10:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.20:5080;branch=z9hG4bKcarrierbye\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: <sip:+12125550123@carrier.example.com>;tag=callee1\r\nTo: {from_gw}\r\nCall-ID: cb@pbx.example.com\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    ));
    let out = h.input(udp(CARRIER), &bye);
    let b = one(&out, udp(PBX)).clone();
    let orig_from = header_value(&inv, "From").unwrap();
    assert_eq!(
        header_value(&b, "To").unwrap(),
        orig_from,
        "PBX sees its own From as To"
    );
    let out = h.input(udp(PBX), respond(&b, 200, "OK", None, ""));
    let down = one(&out, udp(CARRIER));
    assert_eq!(status(down), 200);
    assert_eq!(
        header_value(down, "To").unwrap(),
        from_gw,
        "carrier sees its dialog identity"
    );
}

#[test]
fn forged_or_missing_dialog_routes_are_refused() {
    let mut h = Harness::new();
    let (_, _, ok) = established(&mut h, "fg");
    let rr = header_value(&ok, "Record-Route").unwrap();
    let forged = rr.replacen("cg=", "cg=AAAA", 1);
    let cases = [
        in_dialog_from_pbx("BYE", "fg", &forged, 11),
        in_dialog_from_pbx("BYE", "fg", "<sip:gw.example.net;lr>", 11),
        in_dialog_from_pbx("BYE", "other-call", &rr, 11),
        in_dialog_from_pbx("INVITE", "fg", "<sip:elsewhere.example.com;lr>", 12),
    ];
    for c in cases {
        let out = h.input(udp(STRANGER), &c);
        assert_eq!(out.len(), 1, "{c}");
        assert_eq!(out[0].to, udp(STRANGER));
        assert_eq!(status(&out[0].data), 403);
    }
}

#[test]
fn cancel_reaches_the_carrier_and_487_flows_back() {
    let mut h = Harness::new();
    let (inv, fwd) = call(&mut h, "cx", "X-Queue-Id: sales\r\n");
    h.input(udp(CARRIER), respond(&fwd, 180, "Ringing", Some("t9"), ""));
    let cancel = text(&inv)
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 10 INVITE", "CSeq: 10 CANCEL");
    let cancel =
        cancel.split("Content-Type").next().unwrap().to_string() + "Content-Length: 0\r\n\r\n";
    let out = h.input(udp(PBX), &cancel);
    assert_eq!(status(one(&out, udp(PBX))), 200);
    let c = one(&out, udp(CARRIER));
    assert!(is_request(c, "CANCEL"));
    let fwd_via = &header_lines(&fwd, "Via")[0];
    assert_eq!(
        &header_lines(c, "Via")[0],
        fwd_via,
        "CANCEL uses the INVITE's branch"
    );
    // The carrier answers the CANCEL and terminates the INVITE.
    assert!(h
        .input(udp(CARRIER), respond(c, 200, "OK", None, ""))
        .is_empty());
    let out = h.input(
        udp(CARRIER),
        respond(&fwd, 487, "Request Terminated", Some("t9"), ""),
    );
    assert_eq!(status(one(&out, udp(PBX))), 487);
    assert!(
        is_request(one(&out, udp(CARRIER)), "ACK"),
        "the 487 is ACKed hop by hop"
    );
}

#[test]
fn cancel_before_any_provisional_is_sent_when_one_arrives() {
    let mut h = Harness::new();
    let (inv, fwd) = call(&mut h, "cy", "X-Queue-Id: sales\r\n");
    let cancel = text(&inv)
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 10 INVITE", "CSeq: 10 CANCEL");
    let out = h.input(udp(PBX), &cancel);
    assert_eq!(out.len(), 1, "only the 200 for the CANCEL");
    let out = h.input(udp(CARRIER), respond(&fwd, 100, "Trying", None, ""));
    assert!(is_request(one(&out, udp(CARRIER)), "CANCEL"));
}

#[test]
fn unknown_cancel_gets_481() {
    let mut h = Harness::new();
    let cancel = invite("nothing", "")
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 10 INVITE", "CSeq: 10 CANCEL");
    let out = h.input(udp(PBX), &cancel);
    assert_eq!(status(&out[0].data), 481);
}

#[test]
fn strangers_options_max_forwards_and_extensions() {
    let mut h = Harness::new();
    let out = h.input(udp(STRANGER), invite("x1", "X-Queue-Id: sales\r\n"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].data), 403);
    assert!(
        h.last_outcome().is_none(),
        "no caller-ID work for strangers"
    );

    let options = "OPTIONS sip:gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bKopt\r\nMax-Forwards: 70\r\nFrom: <sip:pbx@pbx.example.com>;tag=o1\r\nTo: <sip:gw.example.net>\r\nCall-ID: opt@pbx\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let out = h.input(udp(PBX), options);
    assert_eq!(status(&out[0].data), 200);
    assert_eq!(out.len(), 1);

    let zero = invite("mf", "X-Queue-Id: sales\r\n").replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.input(udp(PBX), zero);
    assert_eq!(status(&out[0].data), 483);

    let pr = invite("pr", "X-Queue-Id: sales\r\nProxy-Require: foo, bar\r\n");
    let out = h.input(udp(PBX), pr);
    assert_eq!(status(&out[0].data), 420);
    assert_eq!(
        header_value(&out[0].data, "Unsupported").unwrap(),
        "foo, bar"
    );
}

#[test]
fn failover_on_503_and_on_timeout() {
    let mut s = settings();
    s.carriers = vec![udp(CARRIER), udp(CARRIER2)];
    let mut h = Harness::with(s.clone());
    let (_, fwd) = call(&mut h, "fo", "X-Queue-Id: sales\r\n");
    let out = h.input(
        udp(CARRIER),
        respond(&fwd, 503, "Service Unavailable", Some("x"), ""),
    );
    assert!(is_request(one(&out, udp(CARRIER)), "ACK"));
    let second = one(&out, udp(CARRIER2));
    assert!(is_request(second, "INVITE"));
    assert_ne!(
        header_lines(second, "Via")[0],
        header_lines(&fwd, "Via")[0],
        "new branch"
    );
    assert!(
        to(&out, udp(PBX)).is_empty(),
        "the PBX does not see the 503"
    );

    let mut h = Harness::with(s);
    call(&mut h, "fo2", "X-Queue-Id: sales\r\n");
    let out = h.advance(Duration::from_secs(32));
    assert_eq!(
        to(&out, udp(CARRIER2)).len(),
        1,
        "Timer B moves to the next carrier"
    );
    let mut last = Vec::new();
    for _ in 0..40 {
        last.extend(h.advance(Duration::from_secs(1)));
    }
    let up: Vec<_> = to(&last, udp(PBX));
    assert!(!up.is_empty());
    assert_eq!(status(&up[0].data), 408, "no carrier answered");
    // Anything after it is Timer G resending the same 408 until the PBX ACKs.
    assert!(up.iter().all(|t| t.data == up[0].data));
}

#[test]
fn privacy_and_anonymous_queues() {
    let mut h = Harness::new();
    let (_, fwd) = call(&mut h, "pv", "X-Queue-Id: sales\r\nPrivacy: ID\r\n");
    assert_eq!(
        header_value(&fwd, "From").unwrap(),
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=pbx-pv;x-keep=1"
    );
    assert!(header_value(&fwd, "P-Asserted-Identity")
        .unwrap()
        .contains("+14155550100"));
    assert_eq!(header_lines(&fwd, "Privacy"), vec!["Privacy: ID\r\n"]);

    let (_, fwd) = call(&mut h, "an", "X-Queue-Id: anon\r\n");
    assert!(header_value(&fwd, "From")
        .unwrap()
        .starts_with("\"Anonymous\""));
    assert_eq!(header_lines(&fwd, "Privacy"), vec!["Privacy: id\r\n"]);
    assert!(header_value(&fwd, "P-Asserted-Identity")
        .unwrap()
        .contains("\"Hidden\""));
}

#[test]
fn display_names_are_quoted_or_omitted() {
    let mut h = Harness::new();
    let (_, fwd) = call(&mut h, "q1", "X-Queue-Id: quoted\r\n");
    assert!(header_value(&fwd, "From")
        .unwrap()
        .starts_with(r#""Say \"hi\" \\ bye" <sip:+14155550102@"#));
    let (_, fwd) = call(&mut h, "q2", "X-Queue-Id: noname\r\n");
    assert!(header_value(&fwd, "From")
        .unwrap()
        .starts_with("<sip:+14155550101@gw.example.net;user=phone>;tag="));
}

#[test]
fn pai_forms_are_configurable() {
    for (form, expect) in [
        (cidgate::callerid::PaiForm::Tel, vec!["P-Asserted-Identity: \"Acme Sales\" <tel:+14155550100>\r\n"]),
        (
            cidgate::callerid::PaiForm::Both,
            vec!["P-Asserted-Identity: \"Acme Sales\" <sip:+14155550100@gw.example.net;user=phone>, \"Acme Sales\" <tel:+14155550100>\r\n"],
        ),
    ] {
        let mut s = settings();
        s.pai = form;
        let mut h = Harness::with(s);
        let (_, fwd) = call(&mut h, "pf", "X-Queue-Id: sales\r\n");
        assert_eq!(header_lines(&fwd, "P-Asserted-Identity"), expect);
    }
}

#[test]
fn compact_forms_and_missing_content_length_on_udp() {
    let mut h = Harness::new();
    let msg = format!(
        "INVITE sip:+12125550123@gw.example.net SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bKcf\r\nf: <sip:agent@pbx>;tag=cf\r\nt: <sip:+12125550123@c>\r\ni: cf@pbx\r\nCSeq: 1 INVITE\r\nx-queue-id: sales\r\nc: application/sdp\r\n\r\n{SDP}"
    );
    let out = h.input(udp(PBX), &msg);
    let fwd = one(&out, udp(CARRIER));
    assert_eq!(
        header_value(fwd, "Content-Length").unwrap(),
        SDP.len().to_string()
    );
    assert_eq!(
        header_value(fwd, "Max-Forwards").unwrap(),
        "70",
        "added when missing"
    );
    assert!(text(fwd)
        .contains("\r\nf: \"Acme Sales\" <sip:+14155550100@gw.example.net;user=phone>;tag=cf\r\n"));
    assert!(text(fwd).contains("\r\nt: <sip:+12125550123@c>\r\ni: cf@pbx\r\n"));
    assert!(text(fwd).ends_with(SDP));
}

#[test]
fn loops_are_detected() {
    let mut h = Harness::new();
    let (_, fwd) = call(&mut h, "lp", "X-Queue-Id: sales\r\n");
    // The carrier sends our own INVITE straight back to us.
    let out = h.input(udp(PBX), &fwd);
    assert_eq!(status(&out[0].data), 482);
}

#[test]
fn binary_bodies_pass_untouched() {
    let mut h = Harness::new();
    let body: Vec<u8> = (0u8..=255).collect();
    let mut msg = format!(
        "INVITE sip:+12125550123@gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bKbin\r\nMax-Forwards: 70\r\nFrom: <sip:agent@pbx>;tag=bin\r\nTo: <sip:+12125550123@c>\r\nCall-ID: bin@pbx\r\nCSeq: 1 INVITE\r\nX-Queue-Id: sales\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    msg.extend_from_slice(&body);
    let out = h.input(udp(PBX), &msg);
    let fwd = one(&out, udp(CARRIER));
    assert!(fwd.ends_with(&body));
}

#[test]
fn unmatched_responses_are_dropped() {
    let mut h = Harness::new();
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcgdeadbeef\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(h.input(udp(CARRIER), stray).is_empty());
}

#[test]
fn oversized_udp_requests_go_over_tcp_and_fall_back_to_udp() {
    let mut h = Harness::new();
    let pad: String = (0..12)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "p".repeat(60)))
        .collect();
    let inv = invite("big", &format!("X-Queue-Id: sales\r\n{pad}"));
    let out = h.input(udp(PBX), &inv);
    let fwd = one(&out, tcp(CARRIER));
    assert!(fwd.len() > 1300);
    assert!(header_lines(fwd, "Via")[0].starts_with("Via: SIP/2.0/TCP "));
    assert!(to(&out, udp(CARRIER)).is_empty());
    // The carrier does not take TCP: the same request goes over UDP instead.
    h.proxy.handle_unreachable(h.now, tcp(CARRIER));
    let mut retry = Vec::new();
    while let Some(t) = h.proxy.poll_transmit() {
        retry.push(t);
    }
    let again = one(&retry, udp(CARRIER));
    assert!(header_lines(again, "Via")[0].starts_with("Via: SIP/2.0/UDP "));
    // A small INVITE stays on UDP.
    let (_, small) = call(&mut h, "small", "X-Queue-Id: sales\r\n");
    assert!(small.len() < 1300);
}

#[test]
fn draining_refuses_new_calls_but_finishes_running_ones() {
    let mut h = Harness::new();
    let (inv, fwd) = call(&mut h, "d1", "X-Queue-Id: sales\r\n");
    h.proxy.start_draining();
    assert_eq!(h.proxy.pending_transactions(), 1);
    let out = h.input(udp(PBX), invite("d2", "X-Queue-Id: sales\r\n"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].data), 503);
    assert_eq!(header_value(&out[0].data, "Retry-After").unwrap(), "5");
    // The running call still completes.
    let out = h.input(udp(CARRIER), respond(&fwd, 200, "OK", Some("t"), ""));
    let up = one(&out, udp(PBX));
    assert_eq!(status(up), 200);
    assert_eq!(header_lines(up, "From"), header_lines(&inv, "From"));
    assert_eq!(h.proxy.pending_transactions(), 0);
}

#[test]
fn a_drain_waits_for_a_request_that_arrives_after_the_last_answer() {
    use cidgate::proxy::DRAIN_GRACE;
    let mut h = Harness::new();
    let (_, _, ok) = established(&mut h, "dr");
    h.proxy.start_draining();
    // Nothing pending: the drain may end the grace time after the 200.
    assert!(h.proxy.drained(h.now + DRAIN_GRACE));
    // A BYE in the same instant: forwarded, and the drain waits for it.
    let rr = header_value(&ok, "Record-Route").unwrap();
    let out = h.input(udp(PBX), in_dialog_from_pbx("BYE", "dr", &rr, 11));
    let fwd = one(&out, udp(CARRIER)).clone();
    assert_eq!(h.proxy.pending_transactions(), 1);
    assert!(!h.proxy.drained(h.now + DRAIN_GRACE * 2));
    // Its 200, still in the same instant; then only timers wake the core.
    let answered = h.now;
    h.input(udp(CARRIER), respond(&fwd, 200, "OK", None, ""));
    // The core's next wake-up: at once for the drain's end, not at whatever
    // timer of the lingering transactions comes next.
    let first = h.proxy.poll_timeout().unwrap() - answered;
    assert!(
        first <= Duration::from_millis(20) || first == DRAIN_GRACE,
        "the drain's end is looked for again {first:?} after the last answer"
    );
    while !h.proxy.drained(h.now) {
        let wake = h
            .proxy
            .poll_timeout()
            .expect("a draining core has a deadline");
        assert!(
            wake <= answered + DRAIN_GRACE + Duration::from_millis(20),
            "the drain's end is seen without other input ({:?} after the 200)",
            wake - answered
        );
        h.advance(wake.saturating_duration_since(h.now));
    }
    assert!(h.now <= answered + DRAIN_GRACE + Duration::from_millis(20));
}

#[test]
fn retransmitted_bye_after_its_200_gets_the_200_again() {
    let mut h = Harness::new();
    let (_, _, ok) = established(&mut h, "rb");
    let rr = header_value(&ok, "Record-Route").unwrap();
    let bye = in_dialog_from_pbx("BYE", "rb", &rr, 11);
    let out = h.input(udp(PBX), &bye);
    let fwd = one(&out, udp(CARRIER)).clone();
    let out = h.input(udp(CARRIER), respond(&fwd, 200, "OK", None, ""));
    let first = one(&out, udp(PBX)).clone();
    // The 200 was lost; the PBX retransmits its BYE.
    let out = h.input(udp(PBX), &bye);
    assert_eq!(one(&out, udp(PBX)), &first);
    assert!(to(&out, udp(CARRIER)).is_empty());
}

#[test]
fn carriers_may_ping_the_gateway_but_strangers_may_not() {
    let options = |from: &str| {
        format!("OPTIONS sip:gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKping\r\nMax-Forwards: 70\r\nFrom: <sip:ping@carrier>;tag=p\r\nTo: <sip:gw.example.net>\r\nCall-ID: ping@{from}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    };
    let mut h = Harness::new();
    let out = h.input(udp(CARRIER), options(CARRIER));
    assert_eq!(status(&out[0].data), 200);
    let out = h.input(udp(STRANGER), options(STRANGER));
    assert_eq!(status(&out[0].data), 403);
    // A carrier's INVITE is still an inbound call: refused.
    let out = h.input(udp(CARRIER), invite("in", "X-Queue-Id: sales\r\n"));
    assert_eq!(status(&out[0].data), 403);
}

#[test]
fn dialogs_survive_a_restart_with_the_same_dialog_secret() {
    let keyed = |secret: &[u8]| {
        let mut s = settings();
        s.key = cidgate::proxy::dialog::SealKey::from_secret(secret);
        Harness::with(s)
    };
    let mut before = keyed(b"a long shared dialog secret");
    let (_, _, ok) = established(&mut before, "rs");
    let rr = header_value(&ok, "Record-Route").unwrap();
    let bye = in_dialog_from_pbx("BYE", "rs", &rr, 11);
    // A restarted gateway with the same secret routes the BYE...
    let mut after = keyed(b"a long shared dialog secret");
    let out = after.input(udp(PBX), &bye);
    assert!(is_request(one(&out, udp(CARRIER)), "BYE"));
    // ...one with another secret cannot tell it from a forgery.
    let mut other = keyed(b"a different dialog secret!!");
    let out = other.input(udp(PBX), &bye);
    assert_eq!(status(one(&out, udp(PBX))), 403);
}

/// Datagrams that queued while the core was busy (here: 700 ms on the first
/// one) must count their timers from when they are handled. Stamped with the
/// time the batch began, the second INVITE would find its first retransmission
/// already due and reach the carrier twice at once.
#[test]
fn datagrams_queued_behind_a_slow_one_count_timers_from_when_they_are_handled() {
    let mut h = Harness::new();
    let start = h.now;
    let stall = Duration::from_millis(700);
    let sales = "X-Queue-Id: sales\r\n";
    let mut queued = vec![invite("late-b", sales), invite("late-a", sales)];
    let mut clock_reads = vec![start + stall, start];
    cidgate::transport::udp::feed(
        &mut h.proxy,
        || clock_reads.pop().expect("one clock reading per datagram"),
        || queued.pop().map(|m| (addr(PBX), Bytes::from(m))),
    );
    let invites_of = |out: &[cidgate::proxy::Transmit], call: &str| {
        to(out, udp(CARRIER))
            .iter()
            .filter(|t| is_request(&t.data, "INVITE") && text(&t.data).contains(call))
            .count()
    };
    h.now = start + stall;
    let out = h.advance(Duration::ZERO);
    assert_eq!(
        invites_of(&out, "late-b@"),
        1,
        "sent once, not retransmitted"
    );
    // late-a was handled 700 ms ago in virtual time: its retransmission is due.
    assert_eq!(invites_of(&out, "late-a@"), 2);
    let out = h.advance(Duration::from_millis(499));
    assert_eq!(invites_of(&out, "late-b@"), 0, "T1 counts from handling");
    let out = h.advance(Duration::from_millis(1));
    assert_eq!(invites_of(&out, "late-b@"), 1, "retransmitted at T1");
}

/// Defect fixed: a non-INVITE client transaction absorbs retransmissions of
/// its final response (RFC 3261 §17.1.2.2, Completed); a second 200 to a BYE
/// from the carrier was relayed to the PBX again.
#[test]
fn retransmitted_200_to_a_bye_reaches_the_pbx_once() {
    let mut h = Harness::new();
    let (_, _, ok) = established(&mut h, "b2");
    let rr = header_value(&ok, "Record-Route").unwrap();
    let bye = in_dialog_from_pbx("BYE", "b2", &rr, 11);
    let out = h.input(udp(PBX), &bye);
    let fwd = one(&out, udp(CARRIER)).clone();
    let ok = respond(&fwd, 200, "OK", None, "");
    assert_eq!(to(&h.input(udp(CARRIER), &ok), udp(PBX)).len(), 1);
    assert!(
        h.input(udp(CARRIER), &ok).is_empty(),
        "the copy is absorbed"
    );
    // The PBX's own BYE copy still gets the 200 again (server Completed).
    assert_eq!(to(&h.input(udp(PBX), &bye), udp(PBX)).len(), 1);
}
