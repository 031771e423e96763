//! Carrier health and the no-provisional timer, and responses that find no
//! transaction: the proxy core driven with virtual time, asserting on the
//! bytes it asks to send.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cidgate::proxy::{Event, HealthSettings, Transmit};
use common::*;

fn only(out: &[Transmit], peer: cidgate::proxy::Peer) -> &Bytes {
    let v = to(out, peer);
    assert_eq!(
        v.len(),
        1,
        "expected one message to {peer:?}, got {}",
        v.len()
    );
    &v[0].data
}

fn two_carriers(health: HealthSettings) -> Harness {
    let mut s = settings();
    s.carriers = vec![udp(CARRIER), udp(CARRIER2)];
    s.health = health;
    Harness::with(s)
}

fn probing(down_after: u32, up_after: u32) -> HealthSettings {
    HealthSettings {
        probe_interval: Some(Duration::from_secs(10)),
        probe_timeout: Duration::from_secs(2),
        down_after,
        up_after,
        no_provisional: Duration::from_secs(3),
    }
}

fn no_probing() -> HealthSettings {
    HealthSettings {
        probe_interval: None,
        ..HealthSettings::default()
    }
}

/// Sends a new call from the PBX; returns the INVITE and what went out.
fn place(h: &mut Harness, id: &str) -> (String, Vec<Transmit>) {
    let inv = invite(id, "X-Queue-Id: sales\r\n");
    let out = h.input(udp(PBX), &inv);
    (inv, out)
}

fn carrier_events(h: &Harness) -> Vec<(cidgate::proxy::Peer, bool)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::CarrierState { carrier, up, .. } => Some((*carrier, *up)),
            _ => None,
        })
        .collect()
}

#[test]
fn default_no_provisional_time_keeps_a_dead_carrier_under_five_seconds() {
    let d = HealthSettings::default();
    assert!(d.no_provisional <= Duration::from_secs(3), "{d:?}");
    assert!(d.probe_interval.is_some(), "probing is on by default");
}

#[test]
fn silent_first_carrier_is_left_after_the_no_provisional_time() {
    let mut h = two_carriers(no_probing());
    let (inv, out) = place(&mut h, "np");
    let first = only(&out, udp(CARRIER)).clone();
    // Timer A retransmissions to the first carrier, nothing to the second.
    let mut early = Vec::new();
    for _ in 0..29 {
        early.extend(h.advance(Duration::from_millis(100)));
    }
    assert!(
        to(&early, udp(CARRIER2)).is_empty(),
        "still waiting at 2.9 s"
    );
    assert!(!to(&early, udp(CARRIER)).is_empty(), "Timer A kept going");
    let out = h.advance(Duration::from_millis(100));
    let second = only(&out, udp(CARRIER2)).clone();
    assert!(is_request(&second, "INVITE"));
    assert!(to(&out, udp(PBX)).is_empty(), "the PBX sees nothing of it");
    // No more retransmissions to the abandoned carrier.
    let later = h.advance(Duration::from_secs(4));
    assert!(to(&later, udp(CARRIER)).is_empty());

    // The first carrier wakes up late: its ringing is CANCELled and its
    // failure ACKed, and the PBX hears of neither.
    let out = h.input(
        udp(CARRIER),
        respond(&first, 180, "Ringing", Some("late"), ""),
    );
    assert!(is_request(only(&out, udp(CARRIER)), "CANCEL"));
    assert!(to(&out, udp(PBX)).is_empty());
    let out = h.input(
        udp(CARRIER),
        respond(&first, 487, "Request Terminated", Some("late"), ""),
    );
    assert!(is_request(only(&out, udp(CARRIER)), "ACK"));
    assert!(to(&out, udp(PBX)).is_empty());

    // The second carrier completes the call, with the PBX's identity back.
    let ok = respond(&second, 200, "OK", Some("c2"), "");
    let out = h.input(udp(CARRIER2), &ok);
    let up = only(&out, udp(PBX)).clone();
    assert_eq!(status(&up), 200);
    assert_eq!(
        header_lines(&up, "From"),
        header_lines(&Bytes::from(inv.clone()), "From")
    );

    // Answered, the call lingers (RFC 6026 Accepted) in its compact record
    // and still handles all of it: the abandoned attempt's late failure is
    // ACKed, the 2xx retransmission reaches the PBX as before, an INVITE
    // copy is absorbed; all of it gone after Timer L.
    let out = h.input(
        udp(CARRIER),
        respond(&first, 487, "Request Terminated", Some("late"), ""),
    );
    assert!(is_request(only(&out, udp(CARRIER)), "ACK"));
    assert_eq!(only(&h.input(udp(CARRIER2), &ok), udp(PBX)), &up);
    assert!(h.input(udp(PBX), &inv).is_empty(), "INVITE copy absorbed");
    h.advance(Duration::from_secs(40));
    assert_eq!(h.proxy.transactions(), 0);
}

#[test]
fn a_100_trying_stops_the_no_provisional_timer() {
    let mut h = two_carriers(no_probing());
    let (_, out) = place(&mut h, "tr");
    let first = only(&out, udp(CARRIER)).clone();
    let out = h.input(udp(CARRIER), respond(&first, 100, "Trying", None, ""));
    assert!(out.is_empty(), "a 100 is not relayed");
    let mut later = Vec::new();
    for _ in 0..20 {
        later.extend(h.advance(Duration::from_secs(1)));
    }
    assert!(
        to(&later, udp(CARRIER2)).is_empty(),
        "the first carrier answered"
    );
}

#[test]
fn the_last_carrier_gets_the_full_timer_b() {
    let mut h = Harness::with({
        let mut s = settings();
        s.health = no_probing();
        s
    });
    place(&mut h, "lc");
    let out = h.advance(Duration::from_secs(5));
    assert!(
        to(&out, udp(PBX)).is_empty(),
        "no one else to try: keep waiting"
    );
    let mut rest = Vec::new();
    for _ in 0..30 {
        rest.extend(h.advance(Duration::from_secs(1)));
    }
    let up = to(&rest, udp(PBX));
    assert_eq!(
        status(&up[0].data),
        408,
        "Timer B, not the no-provisional time"
    );
}

#[test]
fn probes_mark_a_carrier_down_and_up_and_calls_skip_it() {
    let mut h = two_carriers(probing(2, 2));
    let out = h.advance(Duration::ZERO);
    let p1 = only(&out, udp(CARRIER)).clone();
    let p2 = only(&out, udp(CARRIER2)).clone();
    assert!(is_request(&p1, "OPTIONS"), "{}", text(&p1));
    assert!(text(&p1).starts_with("OPTIONS sip:127.0.0.20:5080 SIP/2.0\r\n"));
    assert!(header_lines(&p1, "Via")[0].contains(";branch=z9hG4bKcg"));
    // The second carrier answers; the first stays silent.
    assert!(h
        .input(udp(CARRIER2), respond(&p2, 200, "OK", Some("c2"), ""))
        .is_empty());
    let out = h.advance(Duration::from_millis(500));
    assert!(
        is_request(only(&out, udp(CARRIER)), "OPTIONS"),
        "UDP retransmission"
    );
    h.advance(Duration::from_millis(1500));
    assert!(carrier_events(&h).is_empty(), "one failure is not enough");
    let out = h.advance(Duration::from_secs(8));
    let p2 = only(&out, udp(CARRIER2)).clone();
    h.input(udp(CARRIER2), respond(&p2, 200, "OK", Some("c2"), ""));
    h.advance(Duration::from_secs(2));
    assert_eq!(carrier_events(&h), vec![(udp(CARRIER), false)]);
    assert_eq!(
        h.proxy.carrier_states(),
        vec![(udp(CARRIER), false), (udp(CARRIER2), true)]
    );

    // A new call goes straight to the second carrier.
    let (_, out) = place(&mut h, "sk");
    assert!(to(&out, udp(CARRIER)).is_empty());
    let sent = only(&out, udp(CARRIER2)).clone();
    assert!(is_request(&sent, "INVITE"));
    h.input(udp(CARRIER2), respond(&sent, 100, "Trying", None, ""));

    // The first carrier answers two probes in a row (any answer from its SIP
    // stack but 408 and 5xx counts, here a 404): up again.
    for round in 0..2 {
        let out = h.advance(Duration::from_secs(8));
        let probe = to(&out, udp(CARRIER))
            .into_iter()
            .find(|t| is_request(&t.data, "OPTIONS"))
            .unwrap_or_else(|| panic!("probe in round {round}"))
            .data
            .clone();
        h.input(
            udp(CARRIER),
            respond(&probe, 404, "Not Found", Some("x"), ""),
        );
        let p2 = only(&out, udp(CARRIER2)).clone();
        h.input(udp(CARRIER2), respond(&p2, 200, "OK", Some("c2"), ""));
        h.advance(Duration::from_secs(2));
    }
    assert_eq!(
        carrier_events(&h),
        vec![(udp(CARRIER), false), (udp(CARRIER), true)]
    );
    let (_, out) = place(&mut h, "bk");
    assert!(is_request(only(&out, udp(CARRIER)), "INVITE"));
}

#[test]
fn all_carriers_down_is_an_immediate_503_with_retry_after() {
    let mut h = two_carriers(probing(1, 2));
    h.advance(Duration::ZERO);
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.proxy.carrier_states(),
        vec![(udp(CARRIER), false), (udp(CARRIER2), false)]
    );
    let (inv, out) = place(&mut h, "ad");
    assert_eq!(out.len(), 1, "nothing to any carrier, no 100 first");
    let refusal = only(&out, udp(PBX)).clone();
    assert_eq!(status(&refusal), 503);
    assert_eq!(header_value(&refusal, "Retry-After").unwrap(), "20");
    // A retransmission gets the same answer.
    let out = h.input(udp(PBX), &inv);
    assert_eq!(only(&out, udp(PBX)), &refusal);
}

#[test]
fn unanswered_calls_take_a_carrier_down_between_probes() {
    let mut h = two_carriers(probing(1, 1));
    let out = h.advance(Duration::ZERO);
    for peer in [udp(CARRIER), udp(CARRIER2)] {
        let p = only(&out, peer).clone();
        h.input(peer, respond(&p, 200, "OK", Some("p"), ""));
    }
    let (_, out) = place(&mut h, "u1");
    assert_eq!(to(&out, udp(CARRIER)).len(), 1);
    h.advance(Duration::from_secs(3));
    assert_eq!(carrier_events(&h), vec![(udp(CARRIER), false)]);
    let (_, out) = place(&mut h, "u2");
    assert!(to(&out, udp(CARRIER)).is_empty(), "skipped");
    assert_eq!(to(&out, udp(CARRIER2)).len(), 1);
}

#[test]
fn a_draining_core_stops_probing() {
    let mut h = two_carriers(probing(2, 2));
    h.advance(Duration::ZERO);
    h.proxy.start_draining();
    let out = h.advance(Duration::from_secs(30));
    assert!(out.iter().all(|t| !is_request(&t.data, "OPTIONS")));
}
