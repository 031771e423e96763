//! What a request says about its caller ID: the queue and per-call number
//! headers (names chosen by the operator) and RFC 3323 privacy.

use super::header::{same_header, HeaderName};
use super::message::MessageFields;
use super::syntax;

/// The caller-ID inputs of a new call, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerIdInputs<'a> {
    /// The first queue header's value.
    pub queue: Option<&'a [u8]>,
    /// The first per-call number header's value.
    pub per_call: Option<&'a [u8]>,
    /// A Privacy header asks for `id` (RFC 3323/3325).
    pub privacy_id: bool,
}

impl MessageFields {
    /// The caller-ID inputs, with the two configured header names compared
    /// as header names (case, compact forms); one pass over the header table.
    pub fn caller_id_inputs(
        &self,
        queue_header: &str,
        per_call_header: &str,
    ) -> CallerIdInputs<'_> {
        let mut inputs = CallerIdInputs {
            queue: None,
            per_call: None,
            privacy_id: false,
        };
        for h in self.headers() {
            if h.name == HeaderName::Privacy {
                inputs.privacy_id |= asks_for_id(self.value(h));
            }
            let name = self.bytes(h.name_span);
            if inputs.queue.is_none() && same_header(name, queue_header.as_bytes()) {
                inputs.queue = Some(self.bytes(h.value));
            } else if inputs.per_call.is_none() && same_header(name, per_call_header.as_bytes()) {
                inputs.per_call = Some(self.bytes(h.value));
            }
        }
        inputs
    }
}

/// Whether a Privacy value lists `id`, case-insensitively.
fn asks_for_id(value: &[u8]) -> bool {
    value
        .split(|&b| b == b';' || b == b',')
        .any(|t| syntax::trim_lws(t).eq_ignore_ascii_case(b"id"))
}
