//! The Redis data model, so that an operator can read it with `redis-cli`
//! (README, "Shared inventory (Redis)"). With the default prefix `cidgate:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `cidgate:current` | hash | `version`, `revision` (edits since that version was pushed), `updated_at` (unix s) |
//! | `cidgate:next_version` | string | counter handing out version numbers |
//! | `cidgate:v<N>:queues` | hash | queue id → `caller_id_number,caller_id_name,region,anonymous` |
//! | `cidgate:v<N>:numbers` | hash | claimed number (E.164) → STIR attestation `A`/`B`/`C`, empty for the `[stir] attest` default |
//! | `cidgate:v<N>:log` | list | last edits of version N: `revision<TAB>operation<TAB>key<TAB>row` |
//! | `cidgate:changes` | pub/sub channel | `N:R` after every switch and edit |
//!
//! A push writes a new version's keys (with a one-hour TTL while they are
//! being written, so an abandoned push cleans itself up), then switches
//! `current` to it in one script, which also deletes the previous version.

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn current(&self) -> String {
        format!("{}current", self.prefix)
    }

    pub fn next_version(&self) -> String {
        format!("{}next_version", self.prefix)
    }

    pub fn queues(&self, version: u64) -> String {
        format!("{}v{version}:queues", self.prefix)
    }

    pub fn numbers(&self, version: u64) -> String {
        format!("{}v{version}:numbers", self.prefix)
    }

    pub fn log(&self, version: u64) -> String {
        format!("{}v{version}:log", self.prefix)
    }

    pub fn changes(&self) -> String {
        format!("{}changes", self.prefix)
    }
}
