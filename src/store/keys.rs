//! The Redis data model, so that an operator can read it with `redis-cli`
//! (README, "Several instances, one inventory (Redis)"). With the default
//! prefix `cidgate:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `cidgate:current` | hash | `version`, `revision` (edits since that version was pushed), `updated_at` (unix s) |
//! | `cidgate:next_version` | string | counter handing out version numbers |
//! | `cidgate:v<N>:numbers` | hash | bucket → lines `number,attest` (E.164; attest `A`/`B`/`C`, empty for the `[stir] attest` default) |
//! | `cidgate:v<N>:queues` | hash | bucket → lines `queue_id,caller_id_number,caller_id_name,region,anonymous` |
//! | `cidgate:v<N>:log` | list | last edits of version N: `revision<TAB>operation<TAB>key<TAB>row` |
//! | `cidgate:changes` | pub/sub channel | `N:R` after every switch and edit |
//!
//! Entries are packed into buckets so that reading a version whole moves
//! about 1 300 large strings instead of 2.2 million small ones (a million
//! numbers, 100 000 queues): building, sending and parsing one bulk string
//! per entry was most of a load's time. A bucket's value is lines in the
//! form of numbers.csv and queues.csv (no header), each ending in `\n`:
//!
//! - a number's bucket is its last three digits (`000`…`999`), so
//!   `HGET cidgate:v7:numbers 100` lists every claimed number ending in 100;
//!   numbers are bought in blocks, whose last digits spread evenly;
//! - a queue's bucket is the first two hex digits of the SHA-1 of its id
//!   (`00`…`ff`), which Redis computes too:
//!   `redis-cli EVAL "return redis.sha1hex(ARGV[1]):sub(1,2)" 0 sales-us`.
//!   A queue id holding a comma or a quote is written CSV-quoted.
//!
//! A push writes a new version's keys (with a one-hour TTL while they are
//! being written, so an abandoned push cleans itself up), then switches
//! `current` to it in one script, which also deletes the previous version.
//! An edit rewrites the one line of its bucket in one script.

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

/// Digits in a number's bucket name.
const NUMBER_BUCKET_DIGITS: usize = 3;

/// The bucket of a number written as E.164 text: its last three digits
/// (zero-padded for a number of fewer digits); `None` for text that is not
/// `+` and digits.
pub fn number_bucket(number: &str) -> Option<[u8; NUMBER_BUCKET_DIGITS]> {
    let digits = number.strip_prefix('+')?.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut bucket = [b'0'; NUMBER_BUCKET_DIGITS];
    let tail = &digits[digits.len().saturating_sub(NUMBER_BUCKET_DIGITS)..];
    bucket[NUMBER_BUCKET_DIGITS - tail.len()..].copy_from_slice(tail);
    Some(bucket)
}

/// The bucket of a queue id: the first two hex digits of its SHA-1, as
/// `redis.sha1hex` writes them (lower case).
pub fn queue_bucket(id: &str) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let sha = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, id.as_bytes());
    let first = sha.as_ref()[0];
    [HEX[usize::from(first >> 4)], HEX[usize::from(first & 15)]]
}

/// A queue id as the first field of its line: CSV-quoted when it holds a
/// comma or a quote (ids hold no whitespace or control characters), so the
/// line starts with it followed by a comma and with nothing else.
pub fn queue_line_key(id: &str) -> std::borrow::Cow<'_, str> {
    if id.contains([',', '"']) {
        format!("\"{}\"", id.replace('"', "\"\"")).into()
    } else {
        id.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_buckets_are_the_last_three_digits() {
        assert_eq!(number_bucket("+14155550100"), Some(*b"100"));
        assert_eq!(number_bucket("+12"), Some(*b"012"));
        assert_eq!(number_bucket("4155550100"), None);
        assert_eq!(number_bucket("+1415555x100"), None);
        assert_eq!(number_bucket("+"), None);
    }

    #[test]
    fn queue_buckets_match_redis_sha1hex() {
        // sha1("") = da39a3ee…, sha1("abc") = a9993e36…
        assert_eq!(&queue_bucket(""), b"da");
        let hex = |b: [u8; 2]| String::from_utf8(b.to_vec()).unwrap();
        assert_eq!(hex(queue_bucket("abc")), "a9");
    }

    #[test]
    fn queue_ids_with_commas_or_quotes_are_quoted() {
        assert_eq!(queue_line_key("sales-us"), "sales-us");
        assert_eq!(queue_line_key("a,b"), "\"a,b\"");
        assert_eq!(queue_line_key("a\"b"), "\"a\"\"b\"");
    }
}
