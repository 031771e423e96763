//! STIR/SHAKEN in the proxy core, with virtual time: a call waits for its
//! signature without holding anything else up, never goes out unsigned, keeps
//! its Identity on retransmission and its origid across failover. Signatures
//! are made with a real key and checked by secsipidx.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cidgate::proxy::{Event, Settings, StirSigning, Transmit};
use cidgate::stir::{Attest, SignJob, Signer};
use common::stir::{decode_identity, p256_key, secsipidx_verify, TestKey};
use common::*;

const X5U: &str = "https://certs.example.net/cidgate.pem";

fn stir_settings() -> Settings {
    let mut s = settings();
    s.stir = Some(StirSigning {
        attest: Attest::A,
        rcd: true,
    });
    s
}

struct Rig {
    h: Harness,
    key: TestKey,
    signer: Signer,
}

impl Rig {
    fn new(s: Settings) -> Rig {
        let key = p256_key();
        let signer = Signer::from_pem_file(&key.key, X5U).unwrap();
        Rig {
            h: Harness::with(s),
            key,
            signer,
        }
    }

    fn jobs(&mut self) -> Vec<SignJob> {
        std::iter::from_fn(|| self.h.proxy.poll_sign()).collect()
    }

    /// Signs `job` as the shell's pool would and hands it back.
    fn sign(&mut self, job: &SignJob) -> Vec<Transmit> {
        let identity = self
            .signer
            .identity(&job.claims, cidgate::stir::unix_now())
            .unwrap();
        self.h
            .proxy
            .handle_signature(self.h.now, job.token, Some(identity));
        self.h.advance(Duration::ZERO)
    }
}

/// The one message to `peer`'s address, over whichever transport: a signed
/// INVITE outgrows the UDP limit and goes over TCP (RFC 3261 §18.1.1).
fn one(out: &[Transmit], peer: cidgate::proxy::Peer) -> &Bytes {
    let v: Vec<_> = out.iter().filter(|t| t.to.addr == peer.addr).collect();
    assert_eq!(v.len(), 1, "one message to {peer:?}, got {}", v.len());
    &v[0].data
}

fn sent_to(out: &[Transmit], peer: cidgate::proxy::Peer) -> Vec<&Transmit> {
    out.iter().filter(|t| t.to.addr == peer.addr).collect()
}

fn options() -> String {
    "OPTIONS sip:gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.10:5070;branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:pbx@pbx.example.com>;tag=o1\r\nTo: <sip:gw.example.net>\r\nCall-ID: opt1@pbx\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".into()
}

#[test]
fn the_core_keeps_serving_while_signatures_are_pending() {
    let mut r = Rig::new(stir_settings());
    // Call A: 100 Trying at once, nothing forwarded until it is signed.
    let a = invite("sa", "X-Queue-Id: sales\r\n");
    let out = r.h.input(udp(PBX), &a);
    assert_eq!(status(one(&out, udp(PBX))), 100);
    assert!(
        sent_to(&out, udp(CARRIER)).is_empty(),
        "not forwarded unsigned"
    );
    let job_a = r.jobs();
    assert_eq!(job_a.len(), 1);

    // Meanwhile: a reject, an OPTIONS probe and another call are served.
    let out = r.h.input(udp(PBX), invite("sr", "X-Queue-Id: nope\r\n"));
    let reject = one(&out, udp(PBX));
    assert_eq!(status(reject), 403);
    assert!(header_value(reject, "Identity").is_none());
    assert!(r.jobs().is_empty(), "a reject is never signed");
    let out = r.h.input(udp(PBX), options());
    assert_eq!(status(one(&out, udp(PBX))), 200);
    let out = r.h.input(udp(PBX), invite("sb", "X-Queue-Id: quoted\r\n"));
    assert_eq!(status(one(&out, udp(PBX))), 100);
    let job_b = r.jobs();
    assert_eq!(job_b.len(), 1);

    // A retransmitted INVITE while waiting: the same 100, still nothing out.
    let out = r.h.input(udp(PBX), &a);
    assert_eq!(status(one(&out, udp(PBX))), 100);
    assert!(sent_to(&out, udp(CARRIER)).is_empty());
    assert!(r.jobs().is_empty(), "one signature per attempt");

    // B's signature comes back first: B goes out first, signed.
    let out = r.sign(&job_b[0]);
    let fwd_b = one(&out, udp(CARRIER)).clone();
    assert!(header_value(&fwd_b, "Call-ID").unwrap().starts_with("sb@"));
    let id_b = header_value(&fwd_b, "Identity").unwrap();
    secsipidx_verify(&id_b, &r.key.public).unwrap();
    let (_, claims, _) = decode_identity(&id_b);
    assert_eq!(claims["rcd"]["nam"], "Say \"hi\" \\ bye");

    let out = r.sign(&job_a[0]);
    let fwd_a = one(&out, udp(CARRIER)).clone();
    let id_a = header_value(&fwd_a, "Identity").unwrap();
    secsipidx_verify(&id_a, &r.key.public).unwrap();
    let (_, claims, _) = decode_identity(&id_a);
    assert_eq!(claims["orig"]["tn"], "14155550100");
    assert_eq!(claims["dest"]["tn"][0], "12125550123");
    assert_eq!(claims["attest"], "A");
    assert_eq!(claims["rcd"]["nam"], "Acme Sales");
    // The decision event names the same origid.
    let origid = r.h.events.iter().find_map(|e| match e {
        Event::Decision {
            call_id, origid, ..
        } if call_id.starts_with("sa@") => origid.clone(),
        _ => None,
    });
    assert_eq!(origid.as_deref(), claims["origid"].as_str());

    // Both outgrew UDP and went over TCP. When TCP cannot reach the carrier
    // the same signed INVITEs go over UDP (no new signature), and their
    // retransmissions (Timer A) carry the same Identity.
    assert!(r.jobs().is_empty());
    r.h.proxy.handle_unreachable(r.h.now, tcp(CARRIER));
    let out = r.h.advance(Duration::ZERO);
    assert!(
        r.jobs().is_empty(),
        "the same carrier needs no new signature"
    );
    let mut ids: Vec<String> = to(&out, udp(CARRIER))
        .iter()
        .map(|t| header_value(&t.data, "Identity").unwrap())
        .collect();
    let out = r.h.advance(Duration::from_millis(500));
    ids.extend(
        to(&out, udp(CARRIER))
            .iter()
            .map(|t| header_value(&t.data, "Identity").unwrap()),
    );
    ids.sort();
    let mut expected = vec![id_a.clone(), id_a, id_b.clone(), id_b];
    expected.sort();
    assert_eq!(ids, expected);
}

#[test]
fn a_full_signing_queue_gets_503_with_retry_after_never_an_unsigned_call() {
    let mut r = Rig::new(stir_settings());
    r.h.input(udp(PBX), invite("ov", "X-Queue-Id: sales\r\n"));
    let job = r.jobs().remove(0);
    r.h.proxy.handle_signature(r.h.now, job.token, None);
    let out = r.h.advance(Duration::ZERO);
    assert!(sent_to(&out, udp(CARRIER)).is_empty());
    let refused = one(&out, udp(PBX));
    assert_eq!(status(refused), 503);
    assert_eq!(header_value(refused, "Retry-After").as_deref(), Some("1"));
    // A late signature for it changes nothing.
    let out = r.sign(&job);
    assert!(sent_to(&out, udp(CARRIER)).is_empty());
}

#[test]
fn the_pbx_identity_is_replaced_by_exactly_one_of_ours() {
    let mut r = Rig::new(stir_settings());
    r.h.input(
        udp(PBX),
        invite(
            "pi",
            "X-Queue-Id: sales\r\nIdentity: forged.jws.sig;info=<https://evil.example/x.pem>\r\ny: compact.form.sig\r\n",
        ),
    );
    let job = r.jobs().remove(0);
    let out = r.sign(&job);
    let fwd = one(&out, udp(CARRIER));
    assert_eq!(header_lines(fwd, "Identity").len(), 1);
    assert!(
        !text(fwd).contains("\r\ny:"),
        "compact-form Identity removed"
    );
    assert!(!text(fwd).contains("forged") && !text(fwd).contains("compact.form"));
}

#[test]
fn failover_signs_again_with_the_same_origid() {
    let mut s = stir_settings();
    s.carriers = vec![udp(CARRIER), udp(CARRIER2)];
    let mut r = Rig::new(s);
    r.h.input(udp(PBX), invite("fo", "X-Queue-Id: sales\r\n"));
    let first_job = r.jobs().remove(0);
    let out = r.sign(&first_job);
    let first = one(&out, udp(CARRIER)).clone();
    let out = r.h.input(
        udp(CARRIER),
        respond(&first, 503, "Service Unavailable", Some("x"), ""),
    );
    assert!(
        sent_to(&out, udp(CARRIER2)).is_empty(),
        "waits for its signature"
    );
    let second_job = r.jobs().remove(0);
    assert_eq!(second_job.claims.origid, first_job.claims.origid);
    let out = r.sign(&second_job);
    let second = one(&out, udp(CARRIER2));
    let (_, c1, _) = decode_identity(&header_value(&first, "Identity").unwrap());
    let id2 = header_value(second, "Identity").unwrap();
    secsipidx_verify(&id2, &r.key.public).unwrap();
    let (_, c2, _) = decode_identity(&id2);
    assert_eq!(c1["origid"], c2["origid"]);
}

#[test]
fn a_call_cancelled_while_waiting_is_terminated_not_sent() {
    let mut r = Rig::new(stir_settings());
    let inv = invite("cx", "X-Queue-Id: sales\r\n");
    r.h.input(udp(PBX), &inv);
    let job = r.jobs().remove(0);
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 10 INVITE", "CSeq: 10 CANCEL");
    let out = r.h.input(udp(PBX), cancel);
    assert_eq!(status(one(&out, udp(PBX))), 200);
    let out = r.sign(&job);
    assert!(sent_to(&out, udp(CARRIER)).is_empty());
    assert_eq!(status(one(&out, udp(PBX))), 487);
}

#[test]
fn anonymous_calls_sign_the_asserted_number_and_without_stir_nothing_is_signed() {
    let mut r = Rig::new(stir_settings());
    r.h.input(udp(PBX), invite("an", "X-Queue-Id: anon\r\n"));
    let job = r.jobs().remove(0);
    let out = r.sign(&job);
    let fwd = one(&out, udp(CARRIER));
    assert!(header_value(fwd, "From")
        .unwrap()
        .contains("anonymous.invalid"));
    let (_, claims, _) = decode_identity(&header_value(fwd, "Identity").unwrap());
    assert_eq!(claims["orig"]["tn"], "14155550101");

    let mut h = Harness::new();
    let out = h.input(
        udp(PBX),
        invite("ns", "X-Queue-Id: sales\r\nIdentity: pbx.jws.sig\r\n"),
    );
    let fwd = one(&out, udp(CARRIER));
    assert!(header_value(fwd, "Identity").is_none());
    assert!(h.proxy.poll_sign().is_none());
}

#[test]
fn after_a_failed_tcp_connect_large_invites_go_straight_to_udp() {
    let mut r = Rig::new(stir_settings());
    r.h.input(udp(PBX), invite("t1", "X-Queue-Id: sales\r\n"));
    let job = r.jobs().remove(0);
    let out = r.sign(&job);
    assert_eq!(
        to(&out, tcp(CARRIER)).len(),
        1,
        "a signed INVITE outgrows UDP"
    );
    r.h.proxy.handle_unreachable(r.h.now, tcp(CARRIER));
    let out = r.h.advance(Duration::ZERO);
    assert_eq!(to(&out, udp(CARRIER)).len(), 1, "falls back to UDP");

    // The next call does not try TCP again (for a while).
    r.h.input(udp(PBX), invite("t2", "X-Queue-Id: sales\r\n"));
    let job = r.jobs().remove(0);
    let out = r.sign(&job);
    assert!(to(&out, tcp(CARRIER)).is_empty());
    assert_eq!(to(&out, udp(CARRIER)).len(), 1);
    // Later it does.
    r.h.advance(Duration::from_secs(31));
    r.h.input(udp(PBX), invite("t3", "X-Queue-Id: sales\r\n"));
    let job = r.jobs().remove(0);
    let out = r.sign(&job);
    assert_eq!(to(&out, tcp(CARRIER)).len(), 1);
}
