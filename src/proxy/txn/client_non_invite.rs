//! The non-INVITE client transaction (RFC 3261 §17.1.2, figure 6).

use std::time::Instant;

use super::timer::{Backoff, Timer, T2, T4, TIMEOUT};
use super::{Action, Actions, Class, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Timer E (unreliable transports only) and Timer F run.
    Trying {
        e: Option<Backoff>,
        f: Instant,
    },
    /// As Trying, but Timer E fires every T2.
    Proceeding {
        e: Option<Backoff>,
        f: Instant,
    },
    /// Timer K runs; final retransmissions are absorbed.
    Completed {
        k: Instant,
    },
    Terminated,
}

#[derive(Debug, Clone)]
pub(in crate::proxy) struct ClientNonInvite {
    phase: Phase,
    reliable: bool,
}

impl ClientNonInvite {
    /// The request has just been sent: Trying.
    pub(in crate::proxy) fn start(now: Instant, reliable: bool) -> (ClientNonInvite, Actions) {
        let e = (!reliable).then(|| Backoff::first(now));
        let f = now + TIMEOUT;
        let mut actions = Actions::none();
        if let Some(e) = e {
            actions.push(Action::Arm(Timer::E, e.at));
        }
        actions.push(Action::Arm(Timer::F, f));
        let machine = ClientNonInvite {
            phase: Phase::Trying { e, f },
            reliable,
        };
        (machine, actions)
    }

    pub(in crate::proxy) fn state(&self) -> State {
        match self.phase {
            Phase::Trying { .. } => State::Trying,
            Phase::Proceeding { .. } => State::Proceeding,
            Phase::Completed { .. } => State::Completed,
            Phase::Terminated => State::Terminated,
        }
    }

    pub(in crate::proxy) fn on_response(&mut self, class: Class, now: Instant) -> Actions {
        match (self.phase, class) {
            (Phase::Trying { e, f }, Class::Provisional) => {
                self.phase = Phase::Proceeding { e, f };
                Actions::from([Action::Deliver])
            }
            (Phase::Proceeding { .. }, Class::Provisional) => Actions::from([Action::Deliver]),
            (Phase::Trying { .. } | Phase::Proceeding { .. }, Class::Success | Class::Failure) => {
                if self.reliable {
                    // Timer K is zero on a reliable transport.
                    self.phase = Phase::Terminated;
                    return Actions::from([Action::Deliver, Action::Terminated]);
                }
                let k = now + T4;
                self.phase = Phase::Completed { k };
                Actions::from([Action::Deliver, Action::Arm(Timer::K, k)])
            }
            // Retransmitted finals and anything late are absorbed.
            _ => Actions::none(),
        }
    }

    /// The next hop cannot be reached: only an attempt that has heard
    /// nothing yet gives up.
    pub(in crate::proxy) fn on_transport_error(&mut self) -> Actions {
        match self.phase {
            Phase::Trying { .. } => {
                self.phase = Phase::Terminated;
                Actions::from([Action::Terminated, Action::Timeout])
            }
            _ => Actions::none(),
        }
    }

    pub(in crate::proxy) fn on_timer(&mut self, timer: Timer, now: Instant) -> Actions {
        match (timer, &mut self.phase) {
            (Timer::E, Phase::Trying { e: Some(e), .. }) if e.at <= now => {
                *e = e.next(now, Some(T2));
                Actions::from([Action::Resend, Action::Arm(Timer::E, e.at)])
            }
            (Timer::E, Phase::Proceeding { e: Some(e), .. }) if e.at <= now => {
                *e = Backoff {
                    at: now + T2,
                    interval: T2,
                };
                Actions::from([Action::Resend, Action::Arm(Timer::E, e.at)])
            }
            (Timer::F, Phase::Trying { f, .. } | Phase::Proceeding { f, .. }) if *f <= now => {
                self.phase = Phase::Terminated;
                Actions::from([Action::Terminated, Action::Timeout])
            }
            (Timer::K, Phase::Completed { k }) if *k <= now => {
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

    use super::super::timer::T1;
    use super::*;

    fn trying(reliable: bool) -> (ClientNonInvite, Instant) {
        let now = Instant::now();
        let (m, actions) = ClientNonInvite::start(now, reliable);
        assert_eq!(m.state(), State::Trying);
        let f = Action::Arm(Timer::F, now + TIMEOUT);
        if reliable {
            assert_eq!(actions, Actions::from([f]));
        } else {
            assert_eq!(actions, Actions::from([Action::Arm(Timer::E, now + T1), f]));
        }
        (m, now)
    }

    #[test]
    fn timer_e_doubles_up_to_t2_while_trying() {
        let (mut m, t0) = trying(false);
        let mut at = t0 + T1;
        let mut expected = Vec::new();
        for _ in 0..5 {
            let actions = m.on_timer(Timer::E, at);
            let Some(Action::Arm(Timer::E, next)) = actions.iter().nth(1) else {
                panic!("{actions:?}")
            };
            assert!(actions.contains(Action::Resend));
            expected.push(next - at);
            at = next;
        }
        let secs = |ms| Duration::from_millis(ms);
        assert_eq!(
            expected,
            [secs(1000), secs(2000), secs(4000), secs(4000), secs(4000)]
        );
    }

    #[test]
    fn timer_e_runs_at_t2_once_proceeding() {
        let (mut m, t0) = trying(false);
        assert_eq!(
            m.on_response(Class::Provisional, t0),
            Actions::from([Action::Deliver])
        );
        assert_eq!(m.state(), State::Proceeding);
        let at = t0 + T1;
        assert_eq!(
            m.on_timer(Timer::E, at),
            Actions::from([Action::Resend, Action::Arm(Timer::E, at + T2)])
        );
        assert_eq!(
            m.on_response(Class::Provisional, at),
            Actions::from([Action::Deliver])
        );
    }

    #[test]
    fn timer_f_times_out_trying_and_proceeding() {
        for provisional in [false, true] {
            let (mut m, t0) = trying(true);
            if provisional {
                m.on_response(Class::Provisional, t0);
            }
            assert_eq!(
                m.on_timer(Timer::F, t0 + TIMEOUT - Duration::from_millis(1)),
                Actions::none()
            );
            assert_eq!(
                m.on_timer(Timer::F, t0 + TIMEOUT),
                Actions::from([Action::Terminated, Action::Timeout])
            );
            assert_eq!(m.state(), State::Terminated);
        }
    }

    #[test]
    fn finals_complete_and_retransmissions_are_absorbed() {
        for (class, provisional) in [
            (Class::Success, false),
            (Class::Failure, false),
            (Class::Success, true),
            (Class::Failure, true),
        ] {
            let (mut m, t0) = trying(false);
            if provisional {
                m.on_response(Class::Provisional, t0);
            }
            let k = t0 + T4;
            assert_eq!(
                m.on_response(class, t0),
                Actions::from([Action::Deliver, Action::Arm(Timer::K, k)])
            );
            assert_eq!(m.state(), State::Completed);
            assert_eq!(m.on_response(class, t0), Actions::none(), "absorbed");
            assert_eq!(m.on_timer(Timer::E, t0 + T1), Actions::none(), "no more E");
            assert_eq!(m.on_timer(Timer::F, t0 + TIMEOUT), Actions::none(), "no F");
            assert_eq!(m.on_timer(Timer::K, k), Actions::from([Action::Terminated]));
            assert_eq!(m.state(), State::Terminated);
        }
    }

    #[test]
    fn reliable_finals_terminate_at_once() {
        let (mut m, t0) = trying(true);
        assert_eq!(
            m.on_response(Class::Success, t0),
            Actions::from([Action::Deliver, Action::Terminated])
        );
    }

    #[test]
    fn transport_errors_end_only_a_silent_attempt() {
        let (mut m, t0) = trying(true);
        m.on_response(Class::Provisional, t0);
        assert_eq!(m.on_transport_error(), Actions::none());
        let (mut m, _) = trying(true);
        assert_eq!(
            m.on_transport_error(),
            Actions::from([Action::Terminated, Action::Timeout])
        );
    }
}
