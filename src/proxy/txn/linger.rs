//! What the proxy keeps of a transaction whose final response is out and
//! that only absorbs retransmissions for its linger time: an INVITE answered
//! with a 2xx (RFC 6026 Accepted on both sides, Timer L) and a non-INVITE
//! request answered at all (Completed, Timer J; its client side Completed
//! or Terminated). At a steady call rate these are most of the table (every
//! answered call and its BYE linger 32 s), so they keep only what handling
//! a retransmission needs instead of the full [`Txn`] with both machines:
//! the server key, where to send, what to send again or restore, and the
//! branches whose responses must still be matched.
//!
//! Neither state needs a machine: Accepted absorbs INVITE copies and passes
//! 2xx retransmissions from downstream up (everything else from downstream
//! is absorbed), Completed answers request copies with the final response
//! and absorbs the client's late responses. Both end when their one timer
//! (L or J) comes due; the client's own timers (M, K) end nothing the proxy
//! keeps, so they are ignored.

use bytes::Bytes;

use super::record::{Client, Txn};
use super::{State, Timer};
use crate::proxy::ids::ServerKey;
use crate::proxy::rewrite::Restore;
use crate::proxy::Peer;

/// A transaction in the table: the full record while a final response is
/// still to come (or a failure is being retransmitted), the compact one once
/// only retransmissions are absorbed.
pub(in crate::proxy) enum Record {
    Full(Box<Txn>),
    Linger(Box<Linger>),
}

/// A transaction that only absorbs retransmissions (see the module doc).
pub(in crate::proxy) struct Linger {
    pub(in crate::proxy) server_key: ServerKey,
    pub(in crate::proxy) upstream: Peer,
    /// The branch of the attempt that was answered: its responses keep
    /// matching this transaction rather than going out statelessly.
    pub(in crate::proxy) branch: Option<Box<str>>,
    /// Earlier attempts given up for lack of a provisional (rare): their late
    /// responses are still ACKed or CANCELled.
    pub(in crate::proxy) abandoned: Box<[Client]>,
    pub(in crate::proxy) absorb: Absorb,
}

/// What a lingering transaction does with what arrives.
pub(in crate::proxy) enum Absorb {
    /// An INVITE answered with a 2xx: INVITE copies are absorbed, the UAS's
    /// 2xx retransmissions go upstream with the From (and To) the caller
    /// sent put back, anything else from downstream is absorbed.
    Accepted {
        from: Option<Box<[u8]>>,
        to: Option<Box<[u8]>>,
    },
    /// A non-INVITE request answered: copies get this final response again,
    /// anything from downstream is absorbed.
    Completed(Bytes),
}

/// Turns what a relay restores into the compact form, reusing the buffer
/// (no copy: the bytes were made for this record).
fn compact(b: Option<Bytes>) -> Option<Box<[u8]>> {
    b.map(|b| Vec::from(b).into_boxed_slice())
}

impl Linger {
    /// The compact form of `txn`, if it has reached a state in which it only
    /// absorbs retransmissions (what it needs is taken out of `txn`, which
    /// is then dropped); `None`, with `txn` untouched, otherwise.
    pub(in crate::proxy) fn take_from(txn: &mut Txn) -> Option<Linger> {
        let invite = txn.is_invite();
        let client_state = txn.client.as_ref().map(|cl| cl.machine.state());
        let absorb = match (invite, txn.server.state(), client_state) {
            (true, State::Accepted, Some(State::Accepted)) => Absorb::Accepted {
                from: compact(txn.restore.from.take()),
                to: compact(txn.restore.to.take()),
            },
            (false, State::Completed, None | Some(State::Completed | State::Terminated)) => {
                Absorb::Completed(txn.last_response.take()?)
            }
            _ => return None,
        };
        Some(Linger {
            server_key: std::mem::replace(&mut txn.server_key, ServerKey::empty()),
            upstream: txn.upstream,
            branch: txn.client.take().map(|cl| cl.branch.into_boxed_str()),
            abandoned: std::mem::take(&mut txn.abandoned).into_boxed_slice(),
            absorb,
        })
    }

    /// The timer that ends it: L for an answered INVITE, J otherwise.
    pub(in crate::proxy) fn ends_with(&self, timer: Timer) -> bool {
        match self.absorb {
            Absorb::Accepted { .. } => timer == Timer::L,
            Absorb::Completed(_) => timer == Timer::J,
        }
    }

    /// What a 2xx retransmission going upstream gets restored.
    pub(in crate::proxy) fn restore(&self) -> Option<Restore> {
        let Absorb::Accepted { from, to } = &self.absorb else {
            return None;
        };
        let bytes = |b: &Option<Box<[u8]>>| b.as_deref().map(Bytes::copy_from_slice);
        Some(Restore {
            from: bytes(from),
            to: bytes(to),
        })
    }
}

impl Record {
    pub(in crate::proxy) fn server_key(&self) -> &ServerKey {
        match self {
            Record::Full(t) => &t.server_key,
            Record::Linger(l) => &l.server_key,
        }
    }

    /// The branch of attempt `which`: 0 is the current (or answered)
    /// attempt, `n` the `n`-th abandoned one.
    pub(in crate::proxy) fn branch(&self, which: usize) -> Option<&str> {
        match (self, which) {
            (Record::Full(t), 0) => t.client.as_ref().map(|cl| cl.branch.as_str()),
            (Record::Full(t), n) => t.abandoned.get(n - 1).map(|cl| cl.branch.as_str()),
            (Record::Linger(l), 0) => l.branch.as_deref(),
            (Record::Linger(l), n) => l.abandoned.get(n - 1).map(|cl| cl.branch.as_str()),
        }
    }

    /// Every branch with its attempt number (see [`Record::branch`]).
    pub(in crate::proxy) fn branches(&self) -> impl Iterator<Item = (usize, &str)> {
        let (current, abandoned): (Option<&str>, &[Client]) = match self {
            Record::Full(t) => (t.client.as_ref().map(|cl| cl.branch.as_str()), &t.abandoned),
            Record::Linger(l) => (l.branch.as_deref(), &l.abandoned),
        };
        let current = current.map(|b| (0, b));
        let abandoned = abandoned
            .iter()
            .enumerate()
            .map(|(i, cl)| (i + 1, cl.branch.as_str()));
        current.into_iter().chain(abandoned)
    }

    /// The abandoned attempt `n` (1-based, see [`Record::branch`]).
    pub(in crate::proxy) fn abandoned_mut(&mut self, n: usize) -> Option<&mut Client> {
        let list: &mut [Client] = match self {
            Record::Full(t) => &mut t.abandoned,
            Record::Linger(l) => &mut l.abandoned,
        };
        n.checked_sub(1).and_then(|i| list.get_mut(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most of the table at a steady rate is compact records: they must stay
    /// a fraction of the full one.
    #[test]
    fn the_compact_record_is_a_fraction_of_the_full_one() {
        let (linger, full) = (size_of::<Linger>(), size_of::<Txn>());
        println!("Linger {linger} bytes, Txn {full} bytes");
        assert!(linger <= 128 && 3 * linger <= full, "{linger} vs {full}");
    }
}
