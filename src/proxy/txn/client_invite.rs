//! The INVITE client transaction (RFC 3261 §17.1.1, figure 5) as a proxy
//! runs it: Timer C while ringing (§16.6 step 11, §16.8), CANCEL only once a
//! provisional response has arrived (§9.1), and the RFC 6026 Accepted state
//! in which 2xx retransmissions are still forwarded.

use std::time::Instant;

use super::timer::{Backoff, Timer, TIMEOUT, TIMER_C};
use super::{Action, Actions, Class, State};

/// Whether the caller cancelled, and whether our CANCEL went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    NotAsked,
    /// Asked before any provisional response: sent when one arrives.
    Pending,
    Sent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Timer A (unreliable transports only) and Timer B run.
    Calling {
        a: Option<Backoff>,
        b: Instant,
    },
    /// Timer C runs; `c_fired` once it has fired and CANCELled.
    Proceeding {
        c: Instant,
        c_fired: bool,
    },
    /// Timer D runs; failure retransmissions are re-ACKed.
    Completed {
        d: Instant,
    },
    /// Timer M runs; 2xx retransmissions are forwarded.
    Accepted {
        m: Instant,
    },
    Terminated,
}

#[derive(Debug, Clone)]
pub(in crate::proxy) struct ClientInvite {
    phase: Phase,
    reliable: bool,
    cancel: Cancel,
}

impl ClientInvite {
    /// The INVITE has just been sent: Calling.
    pub(in crate::proxy) fn start(now: Instant, reliable: bool) -> (ClientInvite, Actions) {
        let a = (!reliable).then(|| Backoff::first(now));
        let b = now + TIMEOUT;
        let mut actions = Actions::none();
        if let Some(a) = a {
            actions.push(Action::Arm(Timer::A, a.at));
        }
        actions.push(Action::Arm(Timer::B, b));
        let machine = ClientInvite {
            phase: Phase::Calling { a, b },
            reliable,
            cancel: Cancel::NotAsked,
        };
        (machine, actions)
    }

    pub(in crate::proxy) fn state(&self) -> State {
        match self.phase {
            Phase::Calling { .. } => State::Calling,
            Phase::Proceeding { .. } => State::Proceeding,
            Phase::Completed { .. } => State::Completed,
            Phase::Accepted { .. } => State::Accepted,
            Phase::Terminated => State::Terminated,
        }
    }

    /// A response to the INVITE (not to our CANCEL) arrived.
    pub(in crate::proxy) fn on_response(&mut self, class: Class, now: Instant) -> Actions {
        match (self.phase, class) {
            (Phase::Calling { .. }, Class::Provisional) => {
                let c = now + TIMER_C;
                self.phase = Phase::Proceeding { c, c_fired: false };
                let mut actions = Actions::from([Action::Arm(Timer::C, c)]);
                if self.cancel == Cancel::Pending {
                    self.cancel = Cancel::Sent;
                    actions.push(Action::Cancel);
                }
                actions.with(Action::Deliver)
            }
            (Phase::Proceeding { .. }, Class::Provisional) => Actions::from([Action::Deliver]),
            (Phase::Calling { .. } | Phase::Proceeding { .. }, Class::Success) => {
                let m = now + TIMEOUT;
                self.phase = Phase::Accepted { m };
                Actions::from([Action::Arm(Timer::M, m), Action::Deliver])
            }
            (Phase::Accepted { .. }, Class::Success) => Actions::from([Action::Deliver]),
            (Phase::Calling { .. } | Phase::Proceeding { .. }, Class::Failure) => {
                let actions = Actions::from([Action::Ack, Action::Deliver]);
                if self.reliable {
                    // Timer D is zero on a reliable transport.
                    self.phase = Phase::Terminated;
                    return actions.with(Action::Terminated);
                }
                let d = now + TIMEOUT;
                self.phase = Phase::Completed { d };
                actions.with(Action::Arm(Timer::D, d))
            }
            // A retransmitted failure: ACKed again, not delivered again.
            (Phase::Completed { .. }, Class::Failure) => Actions::from([Action::Ack]),
            // Anything else is late or out of order and is absorbed.
            _ => Actions::none(),
        }
    }

    /// The caller cancelled. A CANCEL may only follow a provisional
    /// response, so before one it waits.
    pub(in crate::proxy) fn cancel(&mut self) -> Actions {
        match (self.phase, self.cancel) {
            (Phase::Calling { .. }, Cancel::NotAsked) => {
                self.cancel = Cancel::Pending;
                Actions::none()
            }
            (Phase::Proceeding { .. }, Cancel::NotAsked | Cancel::Pending) => {
                self.cancel = Cancel::Sent;
                Actions::from([Action::Cancel])
            }
            _ => Actions::none(),
        }
    }

    /// The next hop cannot be reached: only an attempt that has heard
    /// nothing yet gives up (RFC 3261 §8.1.3.1).
    pub(in crate::proxy) fn on_transport_error(&mut self) -> Actions {
        match self.phase {
            Phase::Calling { .. } => {
                self.phase = Phase::Terminated;
                Actions::from([Action::Terminated, Action::Timeout])
            }
            _ => Actions::none(),
        }
    }

    /// `timer` expired at `now`; a timer this state does not run, or one
    /// re-armed since (a stale queue entry), does nothing.
    pub(in crate::proxy) fn on_timer(&mut self, timer: Timer, now: Instant) -> Actions {
        match (timer, &mut self.phase) {
            (Timer::A, Phase::Calling { a: Some(a), .. }) if a.at <= now => {
                *a = a.next(now, None);
                Actions::from([Action::Resend, Action::Arm(Timer::A, a.at)])
            }
            (Timer::B, Phase::Calling { b, .. }) if *b <= now => {
                self.phase = Phase::Terminated;
                Actions::from([Action::Terminated, Action::Timeout])
            }
            (Timer::C, Phase::Proceeding { c, c_fired: false }) if *c <= now => {
                let again = now + TIMEOUT;
                self.phase = Phase::Proceeding {
                    c: again,
                    c_fired: true,
                };
                let mut actions = Actions::none();
                if self.cancel != Cancel::Sent {
                    self.cancel = Cancel::Sent;
                    actions.push(Action::Cancel);
                }
                actions.with(Action::Arm(Timer::C, again))
            }
            (Timer::C, Phase::Proceeding { c, c_fired: true }) if *c <= now => {
                self.phase = Phase::Terminated;
                Actions::from([Action::Terminated, Action::Timeout])
            }
            (Timer::D, Phase::Completed { d }) if *d <= now => self.terminate(),
            (Timer::M, Phase::Accepted { m }) if *m <= now => self.terminate(),
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
    use std::time::Duration;

    use super::super::timer::{T1, T2};
    use super::*;

    fn calling(reliable: bool) -> (ClientInvite, Instant) {
        let now = Instant::now();
        let (m, actions) = ClientInvite::start(now, reliable);
        assert_eq!(m.state(), State::Calling);
        if reliable {
            assert_eq!(
                actions,
                Actions::from([Action::Arm(Timer::B, now + TIMEOUT)])
            );
        } else {
            assert_eq!(
                actions,
                Actions::from([
                    Action::Arm(Timer::A, now + T1),
                    Action::Arm(Timer::B, now + TIMEOUT)
                ])
            );
        }
        (m, now)
    }

    fn proceeding() -> (ClientInvite, Instant) {
        let (mut m, now) = calling(false);
        let actions = m.on_response(Class::Provisional, now);
        assert_eq!(
            actions,
            Actions::from([Action::Arm(Timer::C, now + TIMER_C), Action::Deliver])
        );
        assert_eq!(m.state(), State::Proceeding);
        (m, now)
    }

    #[test]
    fn timer_a_doubles_without_cap_until_a_response() {
        let (mut m, t0) = calling(false);
        let mut at = t0 + T1;
        let mut interval = T1;
        for _ in 0..6 {
            assert_eq!(
                m.on_timer(Timer::A, at - Duration::from_millis(1)),
                Actions::none()
            );
            interval *= 2;
            let actions = m.on_timer(Timer::A, at);
            assert_eq!(
                actions,
                Actions::from([Action::Resend, Action::Arm(Timer::A, at + interval)])
            );
            at += interval;
        }
        assert!(interval > T2, "INVITE retransmissions are not capped");
        m.on_response(Class::Provisional, at);
        assert_eq!(
            m.on_timer(Timer::A, at),
            Actions::none(),
            "no Timer A in Proceeding"
        );
    }

    #[test]
    fn reliable_transports_run_no_timer_a() {
        let (mut m, t0) = calling(true);
        assert_eq!(m.on_timer(Timer::A, t0 + T1), Actions::none());
    }

    #[test]
    fn timer_b_times_out_calling() {
        let (mut m, t0) = calling(false);
        assert_eq!(
            m.on_timer(Timer::B, t0 + TIMEOUT - Duration::from_millis(1)),
            Actions::none()
        );
        assert_eq!(
            m.on_timer(Timer::B, t0 + TIMEOUT),
            Actions::from([Action::Terminated, Action::Timeout])
        );
        assert_eq!(m.state(), State::Terminated);
        assert_eq!(m.on_response(Class::Success, t0 + TIMEOUT), Actions::none());
    }

    #[test]
    fn proceeding_delivers_more_provisionals_and_ignores_b() {
        let (mut m, t0) = proceeding();
        assert_eq!(
            m.on_response(Class::Provisional, t0),
            Actions::from([Action::Deliver])
        );
        assert_eq!(m.on_timer(Timer::B, t0 + TIMEOUT), Actions::none());
        assert_eq!(m.state(), State::Proceeding);
    }

    #[test]
    fn timer_c_cancels_then_gives_up() {
        let (mut m, t0) = proceeding();
        let c = t0 + TIMER_C;
        assert_eq!(
            m.on_timer(Timer::C, c),
            Actions::from([Action::Cancel, Action::Arm(Timer::C, c + TIMEOUT)])
        );
        assert_eq!(m.state(), State::Proceeding);
        assert_eq!(
            m.on_timer(Timer::C, c + TIMEOUT),
            Actions::from([Action::Terminated, Action::Timeout])
        );
        assert_eq!(m.state(), State::Terminated);
    }

    #[test]
    fn timer_c_does_not_cancel_twice() {
        let (mut m, t0) = proceeding();
        assert_eq!(m.cancel(), Actions::from([Action::Cancel]));
        let c = t0 + TIMER_C;
        assert_eq!(
            m.on_timer(Timer::C, c),
            Actions::from([Action::Arm(Timer::C, c + TIMEOUT)])
        );
    }

    #[test]
    fn cancel_waits_for_a_provisional() {
        let (mut m, t0) = calling(false);
        assert_eq!(m.cancel(), Actions::none());
        assert_eq!(
            m.on_response(Class::Provisional, t0),
            Actions::from([
                Action::Arm(Timer::C, t0 + TIMER_C),
                Action::Cancel,
                Action::Deliver
            ])
        );
        assert_eq!(m.cancel(), Actions::none(), "one CANCEL");
    }

    #[test]
    fn success_goes_to_accepted_and_forwards_retransmissions() {
        for from_proceeding in [false, true] {
            let (mut m, t0) = if from_proceeding {
                proceeding()
            } else {
                calling(false)
            };
            let m_at = t0 + TIMEOUT;
            assert_eq!(
                m.on_response(Class::Success, t0),
                Actions::from([Action::Arm(Timer::M, m_at), Action::Deliver])
            );
            assert_eq!(m.state(), State::Accepted);
            assert_eq!(
                m.on_response(Class::Success, t0),
                Actions::from([Action::Deliver])
            );
            assert_eq!(m.on_response(Class::Failure, t0), Actions::none());
            assert_eq!(m.on_response(Class::Provisional, t0), Actions::none());
            assert_eq!(
                m.on_timer(Timer::M, m_at),
                Actions::from([Action::Terminated])
            );
            assert_eq!(m.state(), State::Terminated);
        }
    }

    #[test]
    fn failure_is_acked_and_completed_absorbs_retransmissions() {
        for from_proceeding in [false, true] {
            let (mut m, t0) = if from_proceeding {
                proceeding()
            } else {
                calling(false)
            };
            let d = t0 + TIMEOUT;
            assert_eq!(
                m.on_response(Class::Failure, t0),
                Actions::from([Action::Ack, Action::Deliver, Action::Arm(Timer::D, d)])
            );
            assert_eq!(m.state(), State::Completed);
            assert_eq!(
                m.on_response(Class::Failure, t0),
                Actions::from([Action::Ack])
            );
            assert_eq!(m.on_response(Class::Success, t0), Actions::none());
            assert_eq!(m.on_timer(Timer::D, d), Actions::from([Action::Terminated]));
            assert_eq!(m.state(), State::Terminated);
            assert_eq!(m.on_response(Class::Failure, d), Actions::none());
        }
    }

    #[test]
    fn reliable_failure_terminates_at_once() {
        let (mut m, t0) = calling(true);
        assert_eq!(
            m.on_response(Class::Failure, t0),
            Actions::from([Action::Ack, Action::Deliver, Action::Terminated])
        );
        assert_eq!(m.state(), State::Terminated);
    }

    #[test]
    fn transport_errors_end_only_a_silent_attempt() {
        let (mut m, _) = proceeding();
        assert_eq!(m.on_transport_error(), Actions::none());
        let (mut m, _) = calling(true);
        assert_eq!(
            m.on_transport_error(),
            Actions::from([Action::Terminated, Action::Timeout])
        );
        assert_eq!(m.state(), State::Terminated);
    }
}
