//! The answer to a new call refused because its core is overloaded:
//! `503 Service Unavailable` with `Retry-After` (RFC 3261 §21.5.4), sent
//! statelessly by the shell so that shedding costs one parse and no
//! transaction.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::sip::reply::{reply, ReplySpec};
use crate::sip::{parse, Message, Transport};

/// Builds the 503 for the INVITE in `data`, or `None` when it does not parse
/// (a core would have answered it with its own error; dropping it under
/// overload is fine).
pub fn overload_reply(
    data: &Bytes,
    transport: Transport,
    from: SocketAddr,
    retry_after: u32,
) -> Option<Bytes> {
    let Ok(Message::Request(req)) = parse(data.clone(), transport) else {
        return None;
    };
    let extra = format!("Retry-After: {retry_after}\r\n");
    // A final response needs a To tag (RFC 3261 §8.2.6.2); one tag for every
    // shed call is enough since none of them becomes a dialog.
    Some(reply(
        &req,
        from,
        &ReplySpec {
            code: 503,
            phrase: "Service Unavailable",
            to_tag: Some("cgshed"),
            extra: extra.as_bytes(),
        },
    ))
}
