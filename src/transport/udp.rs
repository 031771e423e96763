//! Handing received datagrams to the core, each with its own time.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::proxy::{Peer, Proxy};
use crate::sip::Transport;

/// Datagrams handled per wake-up at most, so that timers and TCP are not
/// starved while a UDP socket stays busy.
pub const BATCH: usize = 256;

/// Feeds up to [`BATCH`] datagrams from `recv` to `proxy`, reading `clock`
/// again for each one; returns how many there were.
///
/// One reading for the whole batch goes stale when a message is slow to
/// handle or the batch is long: every transaction started later in the batch
/// would count its timers from before it was handled, find its first
/// retransmission already due, and send its INVITE to the carrier twice in a
/// row (a carrier may take the copy for a new call and drop the dialog).
pub fn feed(
    proxy: &mut Proxy,
    mut clock: impl FnMut() -> Instant,
    mut recv: impl FnMut() -> Option<(SocketAddr, Bytes)>,
) -> usize {
    for handled in 0..BATCH {
        let Some((from, data)) = recv() else {
            return handled;
        };
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
        };
        proxy.handle(clock(), peer, data);
    }
    BATCH
}
