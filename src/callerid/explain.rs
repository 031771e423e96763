//! Human-readable reasons for a decision, for `cidgate resolve` and the demo.

use super::policy::{Decision, Outcome, RejectReason};

pub fn explain(d: &Decision, queue: &str, per_call: Option<&str>) -> String {
    let per_call = per_call.unwrap_or("").trim();
    match d.outcome {
        Outcome::Queue => format!("no per-call number given: queue {queue}'s number is used"),
        Outcome::Dynamic => format!("per-call number {per_call:?} is E.164 and claimed by the instance"),
        Outcome::FallbackNotE164 => format!(
            "per-call number {per_call:?} is not a valid E.164 number: queue {queue}'s number is used"
        ),
        Outcome::FallbackUnclaimed => format!(
            "per-call number {per_call:?} is E.164 but not claimed by the instance: queue {queue}'s number is used"
        ),
    }
}

pub fn explain_reject(r: RejectReason, queue: &str) -> String {
    match r {
        RejectReason::UnknownQueue => format!(
            "queue {queue:?} is not in the inventory: the call is refused (agent goes to ACW)"
        ),
        RejectReason::NoQueueNumber => format!(
            "queue {queue:?} has no caller-ID number: the call is refused (agent goes to ACW)"
        ),
    }
}
