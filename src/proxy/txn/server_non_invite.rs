//! The non-INVITE server transaction (RFC 3261 §17.2.2, figure 8).

use std::time::Instant;

use super::timer::{Timer, TIMEOUT};
use super::{Action, Actions, Class, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Trying,
    Proceeding,
    /// Timer J runs; request copies get the final response again.
    Completed {
        j: Instant,
    },
    Terminated,
}

#[derive(Debug, Clone)]
pub(in crate::proxy) struct ServerNonInvite {
    phase: Phase,
}

impl ServerNonInvite {
    /// A request has arrived: Trying.
    pub(in crate::proxy) fn new() -> ServerNonInvite {
        ServerNonInvite {
            phase: Phase::Trying,
        }
    }

    pub(in crate::proxy) fn state(&self) -> State {
        match self.phase {
            Phase::Trying => State::Trying,
            Phase::Proceeding => State::Proceeding,
            Phase::Completed { .. } => State::Completed,
            Phase::Terminated => State::Terminated,
        }
    }

    /// The request arrived again: absorbed while Trying, else answered with
    /// the last response.
    pub(in crate::proxy) fn on_request(&self) -> Actions {
        match self.phase {
            Phase::Proceeding | Phase::Completed { .. } => Actions::from([Action::Resend]),
            Phase::Trying | Phase::Terminated => Actions::none(),
        }
    }

    /// The proxy sends a response of `class` upstream. Timer J is 64·T1 on
    /// every transport: the gateway keeps the answer for late copies either way.
    pub(in crate::proxy) fn on_send(&mut self, class: Class, now: Instant) -> Actions {
        match (self.phase, class) {
            (Phase::Trying | Phase::Proceeding, Class::Provisional) => {
                self.phase = Phase::Proceeding;
                Actions::none()
            }
            (Phase::Trying | Phase::Proceeding, Class::Success | Class::Failure) => {
                let j = now + TIMEOUT;
                self.phase = Phase::Completed { j };
                Actions::from([Action::Arm(Timer::J, j)])
            }
            _ => Actions::none(),
        }
    }

    pub(in crate::proxy) fn on_timer(&mut self, timer: Timer, now: Instant) -> Actions {
        match (timer, self.phase) {
            (Timer::J, Phase::Completed { j }) if j <= now => {
                self.phase = Phase::Terminated;
                Actions::from([Action::Terminated])
            }
            _ => Actions::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn trying_absorbs_copies_and_proceeding_resends() {
        let mut m = ServerNonInvite::new();
        let now = Instant::now();
        assert_eq!(m.state(), State::Trying);
        assert_eq!(m.on_request(), Actions::none());
        assert_eq!(m.on_send(Class::Provisional, now), Actions::none());
        assert_eq!(m.state(), State::Proceeding);
        assert_eq!(m.on_request(), Actions::from([Action::Resend]));
        assert_eq!(m.on_send(Class::Provisional, now), Actions::none());
        assert_eq!(m.state(), State::Proceeding);
    }

    #[test]
    fn finals_complete_from_trying_and_proceeding_until_timer_j() {
        for (class, provisional) in [
            (Class::Success, false),
            (Class::Failure, false),
            (Class::Success, true),
            (Class::Failure, true),
        ] {
            let mut m = ServerNonInvite::new();
            let t0 = Instant::now();
            if provisional {
                m.on_send(Class::Provisional, t0);
            }
            let j = t0 + TIMEOUT;
            assert_eq!(
                m.on_send(class, t0),
                Actions::from([Action::Arm(Timer::J, j)])
            );
            assert_eq!(m.state(), State::Completed);
            assert_eq!(m.on_request(), Actions::from([Action::Resend]));
            assert_eq!(m.on_send(Class::Success, t0), Actions::none(), "one final");
            assert_eq!(
                m.on_timer(Timer::J, j - Duration::from_millis(1)),
                Actions::none()
            );
            assert_eq!(m.on_timer(Timer::J, j), Actions::from([Action::Terminated]));
            assert_eq!(m.state(), State::Terminated);
            assert_eq!(m.on_request(), Actions::none());
        }
    }
}
