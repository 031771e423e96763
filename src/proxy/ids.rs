//! Identifiers the proxy writes and matches: branch values (with the loop
//! detection part), local To tags and server transaction keys. The written
//! ones are keyed by the seal key, so they are its methods.

use std::net::IpAddr;

use super::dialog::SealKey;
use super::Peer;
use crate::sip::{HeaderName, MessageFields, Method, Request};

/// The branch prefix of every Via the gateway writes; the magic cookie keeps it
/// RFC 3261 compliant, the rest marks it as ours for loop detection.
pub(super) const BRANCH_PREFIX: &str = "z9hG4bKcg";

/// Appends the low `digits` hex digits of `v`.
fn push_hex(out: &mut String, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// Server transaction key: RFC 3261 §17.2.3 (branch, sent-by, method), plus
/// the source address, so that two senders reusing a branch value (as the
/// RFC 4475 messages do) never collide. ACK and CANCEL get the INVITE's key,
/// so they find the transaction they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ServerKey(Box<[u8]>);

impl ServerKey {
    pub(super) fn of(req: &Request, from: Peer) -> ServerKey {
        let c = req.fields();
        let method = match req.method() {
            Method::Invite | Method::Ack | Method::Cancel => b"INVITE",
            _ => req.method_bytes(),
        };
        let ip_octets;
        let ip: &[u8] = match from.addr.ip() {
            IpAddr::V4(ip) => {
                ip_octets = ip.to_ipv6_mapped().octets();
                &ip_octets[12..]
            }
            IpAddr::V6(ip) => {
                ip_octets = ip.octets();
                &ip_octets
            }
        };
        let port = from.addr.port().to_be_bytes();
        let transport = [from.transport as u8, 0];
        let (via_port, cseq);
        let rest: [&[u8]; 6] = match c.branch() {
            Some(b) if b.starts_with(b"z9hG4bK") => {
                via_port = c.top_via().port.unwrap_or(0).to_be_bytes();
                [b, b"\0", c.bytes(c.top_via().host), &via_port, b"", b""]
            }
            _ => {
                // RFC 2543 matching: no usable branch.
                cseq = c.cseq().to_be_bytes();
                let via = c.bytes(c.top_via().value);
                [c.call_id(), b"\0", &cseq, c.from_tag(), b"\0", via]
            }
        };
        let parts = [method, b"\0", ip, &port, &transport];
        // Sized exactly, so the boxed key is the one allocation.
        let len = parts.iter().chain(&rest).map(|p| p.len()).sum();
        let mut k = Vec::with_capacity(len);
        for part in parts.iter().chain(&rest) {
            k.extend_from_slice(part);
        }
        ServerKey(k.into_boxed_slice())
    }

    /// A key matching no request, left behind when a record's key moves to
    /// its compact form (no allocation).
    pub(super) fn empty() -> ServerKey {
        ServerKey(Box::default())
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl SealKey {
    /// A To tag for responses the gateway generates, stable across
    /// retransmissions of the same request.
    pub(super) fn local_tag(&self, c: &MessageFields) -> String {
        let id = self.id(&[b"tag", c.call_id(), c.from_tag(), c.branch().unwrap_or(b"")]);
        let mut tag = String::with_capacity(14);
        tag.push_str("cg");
        push_hex(&mut tag, id, 12);
        tag
    }

    /// Loop detection (RFC 3261 §16.3 step 4): our Via is already in the
    /// message with the loop hash this request would get again.
    pub(super) fn is_loop(&self, req: &Request) -> bool {
        let c = req.fields();
        let has = |needle: &[u8]| {
            c.raw()
                .all(HeaderName::Via)
                .any(|h| memchr::memmem::find(c.value(h), needle).is_some())
        };
        // Cheap pre-check: only a message carrying one of our branches can loop.
        if !has(BRANCH_PREFIX.as_bytes()) {
            return false;
        }
        let mut needle = String::with_capacity(BRANCH_PREFIX.len() + 8);
        needle.push_str(BRANCH_PREFIX);
        push_hex(&mut needle, self.loop_hash(req), 8);
        has(needle.as_bytes())
    }

    /// The part of our branch that depends only on what identifies the request
    /// (RFC 3261 §16.6 step 8), so the same request coming back is recognised.
    fn loop_hash(&self, req: &Request) -> u64 {
        let c = req.fields();
        self.id(&[
            b"loop",
            req.uri(),
            c.call_id(),
            c.from_tag(),
            &c.cseq().to_be_bytes(),
        ])
    }

    /// The branch of our Via for `attempt` of the transaction `key`: the loop
    /// hash, then a part unique to the attempt.
    pub(super) fn branch(&self, req: &Request, key: &ServerKey, attempt: usize) -> String {
        let uniq = self.id(&[b"branch", key.as_bytes(), &(attempt as u64).to_be_bytes()]);
        self.own_branch(self.loop_hash(req), uniq)
    }

    /// The branch of OPTIONS probe number `seq`.
    pub(super) fn probe_branch(&self, seq: u64) -> String {
        let seq = seq.to_be_bytes();
        self.own_branch(self.id(&[b"probe-loop", &seq]), self.id(&[b"probe", &seq]))
    }

    /// Prefix, loop part, unique part, then a keyed check over all of them:
    /// the check lets a gateway with the same key recognise the branch as
    /// one it wrote without any state (a restarted process included).
    fn own_branch(&self, loop_part: u64, uniq: u64) -> String {
        let mut b = String::with_capacity(BRANCH_LEN);
        b.push_str(BRANCH_PREFIX);
        push_hex(&mut b, loop_part, 8);
        push_hex(&mut b, uniq, 16);
        let check = self.id(&[b"own-branch", b.as_bytes()]);
        push_hex(&mut b, check, CHECK_DIGITS);
        b
    }

    /// Whether `branch` is one this key wrote (a response's top Via must
    /// carry one to be forwarded without a transaction; anything else would
    /// let a stranger bounce messages off the gateway).
    pub(super) fn made_branch(&self, branch: &[u8]) -> bool {
        if branch.len() != BRANCH_LEN || !branch.starts_with(BRANCH_PREFIX.as_bytes()) {
            return false;
        }
        let (body, check) = branch.split_at(BRANCH_LEN - CHECK_DIGITS as usize);
        let mut expect = String::with_capacity(CHECK_DIGITS as usize);
        push_hex(&mut expect, self.id(&[b"own-branch", body]), CHECK_DIGITS);
        // Constant time: the check is the only secret-dependent part.
        check
            .iter()
            .zip(expect.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Hex digits of the keyed check at the end of our branches (48 bits).
const CHECK_DIGITS: u32 = 12;
/// Length of every branch the gateway writes.
const BRANCH_LEN: usize = BRANCH_PREFIX.len() + 8 + 16 + CHECK_DIGITS as usize;
