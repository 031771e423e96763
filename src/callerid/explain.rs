//! Human-readable reasons for a decision, for `cidgate resolve` and the demo.

use super::policy::{Decision, DynamicFormat, Outcome, RejectReason};
use crate::inventory::{normalize, Queue};

/// Why `d` was decided for `queue`. In `normalize` mode the per-call number is
/// shown with the E.164 form it was read as, since that (not what the PBX
/// wrote) is what was checked against the claimed numbers.
pub fn explain(d: &Decision, queue: &Queue, per_call: Option<&str>, mode: DynamicFormat) -> String {
    let per_call = per_call.unwrap_or("").trim();
    let id = &queue.id;
    let region = queue.region;
    let normalised = match mode {
        DynamicFormat::Normalize => normalize(per_call, region).filter(|e| e.as_str() != per_call),
        DynamicFormat::Strict => None,
    };
    match (d.outcome, normalised) {
        (Outcome::Queue, _) => format!("no per-call number given: queue {id}'s number is used"),
        (Outcome::Dynamic, Some(e)) => format!(
            "per-call number {per_call:?} was normalised to {e} (read in region {region}, queue {id}'s) and is claimed by the instance"
        ),
        (Outcome::Dynamic, None) => {
            format!("per-call number {per_call:?} is E.164 and claimed by the instance")
        }
        (Outcome::FallbackNotE164, _) if mode == DynamicFormat::Normalize => format!(
            "per-call number {per_call:?} is not a valid number, in E.164 or in region {region}: queue {id}'s number is used"
        ),
        (Outcome::FallbackNotE164, _) => format!(
            "per-call number {per_call:?} is not a valid E.164 number (dynamic_format = \"strict\" takes no national forms): queue {id}'s number is used"
        ),
        (Outcome::FallbackUnclaimed, Some(e)) => format!(
            "per-call number {per_call:?} was normalised to {e} (read in region {region}), which is not claimed by the instance: queue {id}'s number is used"
        ),
        (Outcome::FallbackUnclaimed, None) => format!(
            "per-call number {per_call:?} is E.164 but not claimed by the instance: queue {id}'s number is used"
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
