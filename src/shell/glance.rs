//! A look at a message before it is parsed: what kind it is, its Call-ID and
//! whether its To has a tag. Enough to pick the proxy core that owns the
//! call, to drop what strangers should not send and to tell a new call from
//! one in progress when shedding load, for a fraction of a full parse.
//!
//! Nothing here decides what the gateway answers: a message that does not
//! look like SIP still goes to a core, which parses and answers it properly.

use memchr::memchr;

/// What the start line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Response,
    Invite,
    Ack,
    Cancel,
    /// Any other request method.
    Request,
    /// No start line a core would accept (garbage, keep-alive noise).
    Unknown,
}

/// The result of [`glance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glance<'a> {
    pub kind: Kind,
    /// The Call-ID value without surrounding whitespace; empty when missing.
    pub call_id: &'a [u8],
    /// The To header carries a `tag` parameter (in-dialog or a response).
    pub to_tag: bool,
}

impl Glance<'_> {
    /// A request that would start a new call: INVITE outside a dialog.
    pub fn is_new_call(&self) -> bool {
        self.kind == Kind::Invite && !self.to_tag
    }

    /// An answer to one of the gateway's own OPTIONS probes: every core
    /// probes the carriers itself, so every core must see the answers.
    pub fn is_probe_answer(&self) -> bool {
        self.kind == Kind::Response
            && self
                .call_id
                .starts_with(crate::proxy::PROBE_CALL_ID_PREFIX.as_bytes())
    }

    /// The index of the core that owns this message's call among `n`.
    /// Messages without a Call-ID all go to the first core.
    ///
    /// Core 0 shares its thread with the dispatcher (see
    /// [`pool`](super::pool)), so it owns a smaller share of the calls
    /// ([`first_share`]); the others split the rest evenly.
    pub fn shard(&self, n: usize) -> usize {
        if n <= 1 || self.call_id.is_empty() {
            return 0;
        }
        let h = fnv1a(self.call_id);
        let first = first_share(n);
        if h < first {
            return 0;
        }
        // The rest of the hash range, spread evenly over cores 1..n.
        let rest = u128::from(u64::MAX - first) + 1;
        1 + (u128::from(h - first) * (n as u128 - 1) / rest) as usize
    }
}

/// The part of the hash range (out of 2^64) whose calls core 0 owns among
/// `n` cores. Dispatching costs about a fifth of a core's own work per
/// message (BENCHMARKS.md, "Proxy cores"), so core 0 keeps an even share
/// less a fifth for each other core it dispatches for, `(1 - (n - 1)/5) / n`
/// = `(6 - n) / 5n`, and none from six cores up, where dispatching alone
/// fills its thread.
fn first_share(n: usize) -> u64 {
    let n = n as u64;
    (u64::MAX / (5 * n)).saturating_mul(6u64.saturating_sub(n))
}

/// FNV-1a: tiny, no state, good enough spread for Call-IDs, which are long
/// random strings chosen by the peers.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Scans the start line and the header names of `buf`, stopping at the
/// blank line. Linear in the header section, no allocation.
pub fn glance(buf: &[u8]) -> Glance<'_> {
    let mut g = Glance {
        kind: Kind::Unknown,
        call_id: &[],
        to_tag: false,
    };
    let Some((first, mut pos)) = next_line(buf, 0) else {
        return g;
    };
    g.kind = start_kind(first);
    let (mut seen_call_id, mut seen_to) = (false, false);
    while let Some((line, next)) = next_line(buf, pos) {
        let start = pos;
        pos = next;
        if line.is_empty() {
            break;
        }
        // Only a line that starts like `Call-ID`, `i`, `To` or `t` can be one
        // of the two headers: the others (and folded continuation lines,
        // which start with whitespace) cost one byte test each.
        if !matches!(line[0], b'c' | b'C' | b'i' | b'I' | b't' | b'T') {
            continue;
        }
        let Some(colon) = memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        let is_call_id = !seen_call_id
            && (name.eq_ignore_ascii_case(b"call-id") || name == b"i" || name == b"I");
        let is_to = !seen_to && (name.eq_ignore_ascii_case(b"to") || name == b"t" || name == b"T");
        if !is_call_id && !is_to {
            continue;
        }
        // The value runs on over folded lines (RFC 3261 7.3.1), so that a
        // folded Call-ID shards like the unfolded one.
        let mut end = start + line.len();
        while let (Some(b' ' | b'\t'), Some((more, after))) = (buf.get(pos), next_line(buf, pos)) {
            end = pos + more.len();
            pos = after;
        }
        let value = trim(&buf[start + colon + 1..end]);
        if is_call_id {
            g.call_id = value;
            seen_call_id = true;
        } else {
            g.to_tag = has_tag(value);
            seen_to = true;
        }
        if seen_call_id && seen_to {
            break;
        }
    }
    g
}

fn start_kind(line: &[u8]) -> Kind {
    if line.starts_with(b"SIP/2.0 ") {
        return Kind::Response;
    }
    let method = &line[..memchr(b' ', line).unwrap_or(line.len())];
    match method {
        b"INVITE" => Kind::Invite,
        b"ACK" => Kind::Ack,
        b"CANCEL" => Kind::Cancel,
        m if !m.is_empty() && line.ends_with(b" SIP/2.0") => Kind::Request,
        _ => Kind::Unknown,
    }
}

/// The line starting at `pos` without its terminator (CRLF or a bare LF),
/// and where the next one starts.
fn next_line(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..).filter(|r| !r.is_empty())?;
    let end = memchr(b'\n', rest).unwrap_or(rest.len());
    let line = &rest[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, pos + end + 1))
}

/// Without the whitespace around it, line breaks of folding included.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// A `tag` parameter after the URI (a `;tag=` inside `<...>` belongs to the
/// URI, not to the header).
fn has_tag(value: &[u8]) -> bool {
    let params = match memchr(b'>', value) {
        Some(close) => &value[close + 1..],
        None => value,
    };
    params.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag=")) || {
        // `;tag =x` with whitespace is legal; rare enough to check slowly.
        params.split(|&b| b == b';').skip(1).any(|p| {
            let name = trim(p.split(|&b| b == b'=').next().unwrap_or(b""));
            name.eq_ignore_ascii_case(b"tag")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID:  abc@host \r\nCSeq: 1 INVITE\r\n\r\nv=0\r\nCall-ID: body\r\n";

    #[test]
    fn reads_kind_call_id_and_to_tag() {
        let g = glance(INVITE);
        assert_eq!(g.kind, Kind::Invite);
        assert_eq!(g.call_id, b"abc@host");
        assert!(!g.to_tag);
        assert!(g.is_new_call());
    }

    #[test]
    fn compact_forms_and_case_give_the_same_call_id() {
        let compact = b"SIP/2.0 200 OK\nv: SIP/2.0/UDP h\nt: <sip:a@b>;TAG=9\ni:abc@host\n\n";
        let g = glance(compact);
        assert_eq!(g.kind, Kind::Response);
        assert_eq!(g.call_id, b"abc@host");
        assert!(g.to_tag);
        let lower = b"BYE sip:a@b SIP/2.0\r\ncall-id: abc@host\r\nto: <sip:a@b> ; tag = x\r\n\r\n";
        let l = glance(lower);
        assert_eq!(l.kind, Kind::Request);
        assert!(l.to_tag);
        for n in 1..8 {
            assert_eq!(g.shard(n), glance(INVITE).shard(n));
            assert_eq!(l.shard(n), glance(INVITE).shard(n));
        }
    }

    #[test]
    fn folded_values_read_like_unfolded_ones() {
        let folded = b"BYE sip:a@b SIP/2.0\r\n  Call-ID: not-a-header\r\nCall-ID:\r\n  abc@host\r\nTo: <sip:a@b>\r\n\t;tag=x\r\nVia: v\r\n\r\n";
        let g = glance(folded);
        assert_eq!(g.call_id, b"abc@host");
        assert!(g.to_tag);
        assert_eq!(g.shard(4), glance(INVITE).shard(4));
    }

    #[test]
    fn probe_answers_are_recognised() {
        let answer = b"SIP/2.0 200 OK\r\nCall-ID: cgprobe-1f@gw.example.net\r\n\r\n";
        assert!(glance(answer).is_probe_answer());
        let request = b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: cgprobe-1f@gw.example.net\r\n\r\n";
        assert!(!glance(request).is_probe_answer());
        assert!(!glance(INVITE).is_probe_answer());
    }

    #[test]
    fn a_tag_inside_the_uri_is_not_the_to_tag() {
        let g = glance(b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b;tag=u>\r\n\r\n");
        assert!(!g.to_tag);
    }

    #[test]
    fn the_body_is_not_scanned_and_garbage_is_unknown() {
        let g = glance(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n");
        assert_eq!(g.call_id, b"");
        assert_eq!(g.shard(4), 0);
        assert_eq!(glance(b"\x00\x01garbage").kind, Kind::Unknown);
        assert_eq!(glance(b"").kind, Kind::Unknown);
        assert_eq!(glance(b"\r\n\r\n").kind, Kind::Unknown);
    }

    fn spread(n: usize) -> Vec<usize> {
        let mut counts = vec![0usize; n];
        for i in 0..20_000 {
            let msg = format!("BYE sip:a SIP/2.0\r\nCall-ID: {i:08x}-call@pbx\r\n\r\n");
            counts[glance(msg.as_bytes()).shard(n)] += 1;
        }
        counts
    }

    #[test]
    fn call_ids_spread_over_the_cores_core_0_keeping_room_to_dispatch() {
        // Two cores: core 0 owns 40 %, core 1 60 %.
        let two = spread(2);
        assert!((7_400..8_600).contains(&two[0]), "{two:?}");
        // Four: core 0 owns 10 %, the others 30 % each.
        let four = spread(4);
        assert!((1_600..2_400).contains(&four[0]), "{four:?}");
        assert!(
            four[1..].iter().all(|&c| (5_500..6_500).contains(&c)),
            "{four:?}"
        );
        // Eight: dispatching fills core 0's thread; the others split all.
        let eight = spread(8);
        assert_eq!(eight[0], 0, "{eight:?}");
        assert!(
            eight[1..].iter().all(|&c| (2_500..3_200).contains(&c)),
            "{eight:?}"
        );
    }
}
