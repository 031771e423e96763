//! Responses that find no transaction (RFC 3261 §16.7) and the drain's
//! grace time, on the proxy core with virtual time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cidgate::proxy::dialog::SealKey;
use cidgate::proxy::DRAIN_GRACE;
use common::*;

fn keyed(secret: &[u8]) -> Harness {
    let mut s = settings();
    s.key = SealKey::from_secret(secret);
    Harness::with(s)
}

const SECRET: &[u8] = b"a long shared dialog secret";

/// A call answered by the carrier on `h`: (PBX INVITE, forwarded INVITE,
/// the carrier's 200).
fn answered(h: &mut Harness, id: &str) -> (Bytes, Bytes, Bytes) {
    let inv = Bytes::from(invite(id, "X-Queue-Id: sales\r\n"));
    let out = h.input(udp(PBX), &inv);
    let fwd = to(&out, udp(CARRIER))[0].data.clone();
    let ok = answer(&fwd, "callee1");
    let out = h.input(udp(CARRIER), &ok);
    assert_eq!(status(&to(&out, udp(PBX))[0].data), 200);
    (inv, fwd, ok)
}

#[test]
fn a_2xx_retransmission_reaches_the_pbx_after_a_restart() {
    let mut before = keyed(SECRET);
    let (inv, _, ok) = answered(&mut before, "st");
    let mut after = keyed(SECRET);
    let out = after.input(udp(CARRIER), &ok);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, udp(PBX), "to the PBX the route state names");
    let up = &out[0].data;
    assert_eq!(status(up), 200);
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
    assert_eq!(
        header_lines(up, "Record-Route"),
        header_lines(&ok, "Record-Route")
    );
}

#[test]
fn responses_the_gateway_cannot_prove_it_caused_are_dropped() {
    let mut before = keyed(SECRET);
    let (_, _, ok) = answered(&mut before, "fg");
    let ok = text(&ok);
    // Another key: neither the branch nor the seal is ours.
    assert!(keyed(b"a different dialog secret!!")
        .input(udp(CARRIER), &ok)
        .is_empty());
    // One hex digit of the branch check changed, same length.
    let via = header_lines(&Bytes::from(ok.clone()), "Via")[0].clone();
    let at = via.find(";rport").unwrap() - 1;
    let mut forged_via = via.clone().into_bytes();
    forged_via[at] = if forged_via[at] == b'0' { b'1' } else { b'0' };
    let forged = ok.replace(&via, std::str::from_utf8(&forged_via).unwrap());
    assert!(keyed(SECRET).input(udp(CARRIER), &forged).is_empty());
    // Our branch, but the route seal tampered with.
    let rr = header_value(&Bytes::from(ok.clone()), "Record-Route").unwrap();
    let tampered = ok.replace(&rr, &rr.replace(";cg=", ";cg=A"));
    assert!(keyed(SECRET).input(udp(CARRIER), &tampered).is_empty());
    // Our branch, and no route of ours at all.
    let no_rr = ok.replace(&format!("Record-Route: {rr}\r\n"), "");
    let mut h = keyed(SECRET);
    assert!(h.input(udp(CARRIER), &no_rr).is_empty());
    assert!(h.events.iter().any(|e| matches!(
        e,
        cidgate::proxy::Event::Dropped { reason, .. } if reason.contains("no route of ours")
    )));
}

#[test]
fn a_drain_ends_only_a_grace_time_after_the_last_final_response() {
    let mut h = keyed(SECRET);
    let inv = Bytes::from(invite("dg", "X-Queue-Id: sales\r\n"));
    let out = h.input(udp(PBX), &inv);
    let fwd = to(&out, udp(CARRIER))[0].data.clone();
    h.proxy.start_draining();
    h.advance(Duration::from_millis(100));
    assert!(!h.proxy.drained(h.now), "a call is still waiting");
    let ok = answer(&fwd, "c");
    h.input(udp(CARRIER), &ok);
    assert_eq!(h.proxy.pending_transactions(), 0);
    assert!(!h.proxy.drained(h.now), "the ACK has yet to cross");
    assert!(h
        .proxy
        .poll_timeout()
        .is_some_and(|t| t <= h.now + DRAIN_GRACE));
    h.advance(DRAIN_GRACE - Duration::from_millis(1));
    // A retransmitted 2xx is relayed and restarts the grace time.
    let out = h.input(udp(CARRIER), &ok);
    assert_eq!(status(&to(&out, udp(PBX))[0].data), 200);
    h.advance(Duration::from_millis(1));
    assert!(!h.proxy.drained(h.now));
    h.advance(DRAIN_GRACE);
    assert!(h.proxy.drained(h.now));
}

#[test]
fn an_idle_gateway_drains_at_once() {
    let mut h = Harness::new();
    h.advance(Duration::ZERO);
    h.proxy.start_draining();
    assert!(h.proxy.drained(h.now));
}
