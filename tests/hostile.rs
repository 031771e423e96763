//! Hostile input: seeded mutations of the RFC 4475 messages (tests/data/rfc4475)
//! and of a real call, fed to the proxy core as datagrams and as byte streams cut
//! up by the TCP framer, on virtual time and without sockets (tests/rfc4475.rs
//! sends the unmutated messages over real sockets). Nothing may panic, and
//! everything the core sends must itself be a well-formed SIP message.

mod common;

use bytes::Bytes;
use cidgate::sip::framing::{Frame, Framer};
use cidgate::sip::{parse, Transport};
use common::*;

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n ",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b":",
    b"\\",
    b"\0",
    b"%00",
    b"Content-Length: 99999999999\r\n",
    b"l: 5\r\n",
    b"Via: SIP/2.0/UDP x\r\n",
    b"To: <sip:a@b>;tag=x\r\n",
    b"Route: <sip:gw.example.net;lr;cg=AAAA>\r\n",
    b"X-Queue-Id: sales\r\n",
    b"X-Caller-Id: +14155550101\r\n",
    b"Max-Forwards: 0\r\n",
    b"SIP/2.0 200 OK\r\n",
    b"\xff\xfe",
    b" ",
    b"\t",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(m.len() + 1);
        match rng.below(5) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            1 if !m.is_empty() => {
                let end = (at + rng.below(16)).min(m.len());
                m.drain(at.min(end)..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                m.splice(at..at, t.iter().copied());
            }
            3 if m.len() > 4 => {
                // Duplicate a slice (repeated headers, doubled separators).
                let s = rng.below(m.len());
                let e = (s + rng.below(40)).min(m.len());
                let piece = m[s..e].to_vec();
                m.splice(at..at, piece);
            }
            _ => m.truncate(at),
        }
    }
    m
}

fn corpus() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(rfc4475_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? == "dat" {
                std::fs::read(p).ok()
            } else {
                None
            }
        })
        .collect();
    out.push(invite("fz", "X-Queue-Id: sales\r\nX-Caller-Id: +14155550101\r\n").into_bytes());
    out.sort();
    out
}

/// Requests the gateway sends must be fully valid SIP; responses it writes to
/// broken input copy the sender's own (possibly broken) dialog headers, as RFC
/// 3261 §8.2.6 asks, so for those the structure must be sound.
fn assert_sane(out: &[cidgate::proxy::Transmit], input: &[u8]) {
    for t in out {
        let ok = if t.data.starts_with(b"SIP/2.0 ") {
            cidgate::sip::scan::scan(t.data.clone()).is_ok()
        } else {
            parse(t.data.clone(), Transport::Udp).is_ok()
        };
        assert!(
            ok,
            "gateway sent a malformed message:\n{}\nfor input {:?}",
            text(&t.data),
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn mutated_datagrams_through_the_core_never_panic_or_emit_garbage() {
    let mut s = settings();
    s.trust = cidgate::proxy::TrustList::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let mut rng = Rng(0x00C1_D6A7_E5EE_D001);
    let corpus = corpus();
    let mut h = Harness::with(s);
    for round in 0..20_000 {
        let base = &corpus[round % corpus.len()];
        let m = mutate(&mut rng, base);
        cidgate::fuzzing::roundtrip(&m);
        let out = h.input(udp(PBX), &m);
        assert_sane(&out, &m);
        // Also answer as the carrier would, with mutated responses.
        for t in out.iter().filter(|t| t.to == udp(CARRIER)) {
            let resp = respond_lenient(&t.data);
            let bad = mutate(&mut rng, &resp);
            let back = h.input(udp(CARRIER), &bad);
            assert_sane(&back, &bad);
        }
    }
}

fn respond_lenient(req: &Bytes) -> Vec<u8> {
    match parse(req.clone(), Transport::Udp) {
        Ok(cidgate::sip::Message::Request(_)) => respond(req, 200, "OK", Some("z"), "").to_vec(),
        _ => b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
    }
}

#[test]
fn mutated_streams_through_the_tcp_framer_and_core_never_panic() {
    let mut s = settings();
    s.trust = cidgate::proxy::TrustList::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let mut rng = Rng(0x7C9_51DE_0BAD_F00D);
    let corpus = corpus();
    for _ in 0..2_000 {
        let mut h = Harness::with(s.clone());
        let mut stream = Vec::new();
        for _ in 0..3 {
            let pick = rng.below(corpus.len());
            stream.extend(mutate(&mut rng, &corpus[pick]));
        }
        let mut f = Framer::new(65536);
        let mut pos = 0;
        'feed: while pos < stream.len() {
            let n = 1 + rng.below(200);
            let end = (pos + n).min(stream.len());
            f.push(&stream[pos..end]);
            pos = end;
            loop {
                match f.next_frame() {
                    Ok(Some(Frame::Message(m))) => {
                        let out = h.input(tcp(PBX), &m);
                        assert_sane(&out, &m);
                    }
                    Ok(Some(Frame::Ping)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed, // the connection would be closed
                }
            }
        }
    }
}

#[test]
fn fuzz_properties_hold_on_the_corpus_and_its_mutations() {
    let mut rng = Rng(0xF022_5EED);
    for base in corpus() {
        cidgate::fuzzing::roundtrip(&base);
        cidgate::fuzzing::through_proxy(&base);
        for _ in 0..50 {
            let m = mutate(&mut rng, &base);
            cidgate::fuzzing::through_proxy(&m);
        }
    }
}
