//! Transactions as the RFC 3261 §17 state machines, one type per machine:
//! [`ServerInvite`] (figure 7 with the RFC 6026 Accepted state),
//! [`ServerNonInvite`] (figure 8), [`ClientInvite`] (figure 5, with the
//! proxy's Timer C and RFC 6026 Accepted) and [`ClientNonInvite`] (figure 6).
//!
//! A machine holds its state and the deadlines of the timers that state
//! runs; its methods take an event and `now` and return [`Actions`] for the
//! proxy to carry out. Machines never see a message or a socket: the proxy
//! keeps the bytes (in [`Txn`]) and decides what a delivered response means
//! for the call, so every transition is testable on virtual time alone.
//! Once a transaction only absorbs retransmissions the proxy drops the
//! machines and keeps a [`Linger`] record instead.

mod client_invite;
mod client_non_invite;
mod linger;
mod record;
mod server_invite;
mod server_non_invite;
mod timer;

use std::time::Instant;

pub(super) use client_invite::ClientInvite;
pub(super) use client_non_invite::ClientNonInvite;
pub(super) use linger::{Absorb, Linger, Record};
pub(super) use record::{Client, ClientMachine, Kind, ServerMachine, Txn, TxnId};
pub(super) use server_invite::ServerInvite;
pub(super) use server_non_invite::ServerNonInvite;
pub(super) use timer::{Side, Timer};

/// The state a machine is in, by its RFC 3261 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// A response by status class: all a machine needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// 1xx.
    Provisional,
    /// 2xx.
    Success,
    /// 3xx to 6xx.
    Failure,
}

impl Class {
    pub(super) fn of(code: u16) -> Class {
        match code {
            ..=199 => Class::Provisional,
            200..=299 => Class::Success,
            _ => Class::Failure,
        }
    }
}

/// What the proxy must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Put `Timer` in the timer queue for this deadline.
    Arm(Timer, Instant),
    /// Client: send the request again. Server: send the last response again.
    Resend,
    /// Client INVITE: send a CANCEL for the request (RFC 3261 §9.1).
    Cancel,
    /// Client INVITE: acknowledge the failure response just received.
    Ack,
    /// Client: the response just received is for the proxy core to act on.
    Deliver,
    /// Client: no final response came in time (or the next hop cannot be
    /// reached); the proxy core fails over or answers 408/487.
    Timeout,
    /// The machine reached Terminated.
    Terminated,
}

/// The actions of one event, in order; never more than four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Actions {
    items: [Option<Action>; 4],
    len: usize,
}

impl Actions {
    pub(super) fn none() -> Actions {
        Actions::default()
    }

    pub(super) fn push(&mut self, action: Action) {
        self.items[self.len] = Some(action);
        self.len += 1;
    }

    pub(super) fn with(mut self, action: Action) -> Actions {
        self.push(action);
        self
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }

    #[cfg(test)]
    pub(super) fn contains(&self, action: Action) -> bool {
        self.iter().any(|a| a == action)
    }
}

impl<const N: usize> From<[Action; N]> for Actions {
    fn from(list: [Action; N]) -> Actions {
        list.into_iter().fold(Actions::none(), Actions::with)
    }
}
