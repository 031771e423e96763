//! The INVITE server transaction (RFC 3261 §17.2.1, figure 7) with the
//! RFC 6026 Accepted state: after a 2xx the proxy absorbs INVITE copies and
//! passes further 2xx (the UAS's own retransmissions) through.

use std::time::Instant;

use super::timer::{Backoff, Timer, T2, T4, TIMEOUT};
use super::{Action, Actions, Class, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Proceeding,
    /// Timer G (unreliable transports only) and Timer H run.
    Completed {
        g: Option<Backoff>,
        h: Instant,
    },
    /// Timer I runs; ACK copies are absorbed.
    Confirmed {
        i: Instant,
    },
    /// Timer L runs.
    Accepted {
        l: Instant,
    },
    Terminated,
}

#[derive(Debug, Clone)]
pub(in crate::proxy) struct ServerInvite {
    phase: Phase,
    reliable: bool,
}

impl ServerInvite {
    /// An INVITE has arrived: Proceeding (the proxy answers 100 Trying).
    pub(in crate::proxy) fn new(reliable: bool) -> ServerInvite {
        ServerInvite {
            phase: Phase::Proceeding,
            reliable,
        }
    }

    pub(in crate::proxy) fn state(&self) -> State {
        match self.phase {
            Phase::Proceeding => State::Proceeding,
            Phase::Completed { .. } => State::Completed,
            Phase::Confirmed { .. } => State::Confirmed,
            Phase::Accepted { .. } => State::Accepted,
            Phase::Terminated => State::Terminated,
        }
    }

    /// The INVITE arrived again: answer with the last response, except in
    /// Accepted where the UAS's 2xx retransmissions do that.
    pub(in crate::proxy) fn on_request(&self) -> Actions {
        match self.phase {
            Phase::Proceeding | Phase::Completed { .. } | Phase::Confirmed { .. } => {
                Actions::from([Action::Resend])
            }
            Phase::Accepted { .. } | Phase::Terminated => Actions::none(),
        }
    }

    /// The proxy sends a response of `class` upstream.
    pub(in crate::proxy) fn on_send(&mut self, class: Class, now: Instant) -> Actions {
        match (self.phase, class) {
            (Phase::Proceeding, Class::Provisional) => Actions::none(),
            (Phase::Proceeding, Class::Success) => {
                let l = now + TIMEOUT;
                self.phase = Phase::Accepted { l };
                Actions::from([Action::Arm(Timer::L, l)])
            }
            (Phase::Proceeding, Class::Failure) => {
                let g = (!self.reliable).then(|| Backoff::first(now));
                let h = now + TIMEOUT;
                self.phase = Phase::Completed { g, h };
                let mut actions = Actions::none();
                if let Some(g) = g {
                    actions.push(Action::Arm(Timer::G, g.at));
                }
                actions.with(Action::Arm(Timer::H, h))
            }
            _ => Actions::none(),
        }
    }

    /// An ACK matching the transaction arrived. It is absorbed here (`Some`)
    /// when it acknowledges our failure response; an ACK for a 2xx is end to
    /// end and not the transaction's (`None`).
    pub(in crate::proxy) fn on_ack(&mut self, now: Instant) -> Option<Actions> {
        match self.phase {
            Phase::Completed { .. } => {
                let i = now + T4;
                self.phase = Phase::Confirmed { i };
                Some(Actions::from([Action::Arm(Timer::I, i)]))
            }
            Phase::Confirmed { .. } => Some(Actions::none()),
            _ => None,
        }
    }

    pub(in crate::proxy) fn on_timer(&mut self, timer: Timer, now: Instant) -> Actions {
        match (timer, &mut self.phase) {
            (Timer::G, Phase::Completed { g: Some(g), .. }) if g.at <= now => {
                *g = g.next(now, Some(T2));
                Actions::from([Action::Resend, Action::Arm(Timer::G, g.at)])
            }
            (Timer::H, Phase::Completed { h, .. }) if *h <= now => self.terminate(),
            (Timer::I, Phase::Confirmed { i }) if *i <= now => self.terminate(),
            (Timer::L, Phase::Accepted { l }) if *l <= now => self.terminate(),
            _ => Actions::none(),
        }
    }

    fn terminate(&mut self) -> Actions {
        self.phase = Phase::Terminated;
        Actions::from([Action::Terminated])
    }
}

#[cfg(test)]
mod tests {
    use super::super::timer::T1;
    use super::*;

    fn completed(reliable: bool) -> (ServerInvite, Instant) {
        let now = Instant::now();
        let mut m = ServerInvite::new(reliable);
        assert_eq!(m.state(), State::Proceeding);
        let actions = m.on_send(Class::Failure, now);
        let h = Action::Arm(Timer::H, now + TIMEOUT);
        if reliable {
            assert_eq!(actions, Actions::from([h]));
        } else {
            assert_eq!(actions, Actions::from([Action::Arm(Timer::G, now + T1), h]));
        }
        assert_eq!(m.state(), State::Completed);
        (m, now)
    }

    #[test]
    fn proceeding_resends_the_provisional_and_stays() {
        let mut m = ServerInvite::new(false);
        let now = Instant::now();
        assert_eq!(m.on_request(), Actions::from([Action::Resend]));
        assert_eq!(m.on_send(Class::Provisional, now), Actions::none());
        assert_eq!(m.state(), State::Proceeding);
        assert_eq!(m.on_ack(now), None, "not ours to absorb");
    }

    #[test]
    fn timer_g_doubles_up_to_t2_until_the_ack() {
        let (mut m, t0) = completed(false);
        let mut at = t0 + T1;
        let mut intervals = Vec::new();
        for _ in 0..5 {
            let actions = m.on_timer(Timer::G, at);
            let Some(Action::Arm(Timer::G, next)) = actions.iter().nth(1) else {
                panic!("{actions:?}")
            };
            assert!(actions.contains(Action::Resend));
            intervals.push((next - at).as_millis());
            at = next;
        }
        assert_eq!(intervals, [1000, 2000, 4000, 4000, 4000]);
        assert_eq!(
            m.on_request(),
            Actions::from([Action::Resend]),
            "INVITE copy"
        );
        assert_eq!(
            m.on_ack(at),
            Some(Actions::from([Action::Arm(Timer::I, at + T4)]))
        );
        assert_eq!(m.state(), State::Confirmed);
        assert_eq!(m.on_timer(Timer::G, at + T2), Actions::none(), "G stops");
    }

    #[test]
    fn timer_h_ends_a_completed_transaction_without_ack() {
        let (mut m, t0) = completed(true);
        assert_eq!(
            m.on_timer(Timer::G, t0 + T1),
            Actions::none(),
            "no G on TCP"
        );
        assert_eq!(
            m.on_timer(Timer::H, t0 + TIMEOUT),
            Actions::from([Action::Terminated])
        );
        assert_eq!(m.state(), State::Terminated);
    }

    #[test]
    fn confirmed_absorbs_acks_until_timer_i() {
        let (mut m, t0) = completed(false);
        assert!(m.on_ack(t0).is_some());
        assert_eq!(m.on_ack(t0), Some(Actions::none()), "ACK copy absorbed");
        assert_eq!(
            m.on_timer(Timer::H, t0 + TIMEOUT),
            Actions::none(),
            "H is over"
        );
        assert_eq!(
            m.on_timer(Timer::I, t0 + T4),
            Actions::from([Action::Terminated])
        );
        assert_eq!(m.state(), State::Terminated);
    }

    #[test]
    fn success_goes_to_accepted_until_timer_l() {
        let mut m = ServerInvite::new(false);
        let t0 = Instant::now();
        assert_eq!(
            m.on_send(Class::Success, t0),
            Actions::from([Action::Arm(Timer::L, t0 + TIMEOUT)])
        );
        assert_eq!(m.state(), State::Accepted);
        assert_eq!(m.on_request(), Actions::none(), "INVITE copies absorbed");
        assert_eq!(
            m.on_send(Class::Success, t0),
            Actions::none(),
            "2xx passes, no re-arm"
        );
        assert_eq!(m.on_ack(t0), None, "2xx ACK is end to end");
        assert_eq!(
            m.on_timer(Timer::L, t0 + TIMEOUT),
            Actions::from([Action::Terminated])
        );
        assert_eq!(m.state(), State::Terminated);
        assert_eq!(m.on_request(), Actions::none());
    }
}
