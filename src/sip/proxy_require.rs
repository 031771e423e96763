//! Proxy-Require (RFC 3261 §20.29): extensions a proxy must understand.

use super::header::HeaderName;
use super::message::MessageFields;
use super::syntax;

impl MessageFields {
    /// Every option tag in Proxy-Require fields, comma-joined for an
    /// Unsupported header; `None` when there are none. The gateway supports
    /// no proxy extension, so any tag is unsupported.
    pub fn proxy_require_tags(&self) -> Option<String> {
        let mut tags: Vec<String> = Vec::new();
        for h in self.raw().all(HeaderName::ProxyRequire) {
            for part in self.value(h).split(|&b| b == b',') {
                let tag = syntax::trim_lws(part);
                if !tag.is_empty() {
                    tags.push(String::from_utf8_lossy(tag).into_owned());
                }
            }
        }
        (!tags.is_empty()).then(|| tags.join(", "))
    }
}
