//! The inventory packed into buckets (see `keys`) and read back out of them.
//!
//! Writing groups the lines by bucket; reading splits each bucket at its
//! line ends and hands the entries to [`Inventory::from_records`], which
//! checks them like a load. What only the packed form can get wrong (a line
//! in another bucket than its entry's, which an edit would never find, or a
//! line that is not UTF-8) refuses the version too, named like a bad line.

use std::borrow::Cow;

use super::keys::{number_bucket, queue_bucket, queue_line_key};
use super::ops::Whole;
use crate::inventory::{queue_row, Inventory, InventoryError, LineError, Region};

/// One hash field and its value: a bucket name and its lines.
pub type Bucket = (String, String);

/// The claimed numbers of `inventory` as `number,attest` lines by bucket,
/// each bucket in the order numbers sort (easier to read in `redis-cli`).
pub fn number_buckets(inventory: &Inventory) -> Vec<Bucket> {
    let mut buckets: Vec<String> = vec![String::new(); 1000];
    for n in inventory.numbers_sorted() {
        let text = n.as_str();
        let Some(b) = number_bucket(text) else {
            continue;
        };
        let index = b.iter().fold(0, |acc, d| acc * 10 + usize::from(d - b'0'));
        let attest = inventory.attest_of(&n).map_or("", |a| a.as_str());
        let lines = &mut buckets[index];
        lines.push_str(text);
        lines.push(',');
        lines.push_str(attest);
        lines.push('\n');
    }
    named(buckets, |i| format!("{i:03}"))
}

/// The queues of `inventory` as queues.csv lines (without header) by
/// bucket, each bucket in the order of the queue ids.
pub fn queue_buckets(inventory: &Inventory) -> Vec<Bucket> {
    let mut queues: Vec<_> = inventory.queues().collect();
    queues.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let mut buckets: Vec<String> = vec![String::new(); 256];
    for q in queues {
        let b = queue_bucket(&q.id);
        let index = usize::from(hex_value(b[0]) * 16 + hex_value(b[1]));
        let lines = &mut buckets[index];
        lines.push_str(&queue_line_key(&q.id));
        lines.push(',');
        lines.push_str(&queue_row(q));
        lines.push('\n');
    }
    named(buckets, |i| format!("{i:02x}"))
}

/// The buckets that hold lines, each under the field `name` gives its index.
fn named(buckets: Vec<String>, name: impl Fn(usize) -> String) -> Vec<Bucket> {
    buckets
        .into_iter()
        .enumerate()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(i, lines)| (name(i), lines))
        .collect()
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// Reads a version whole into an inventory checked like a load; errors
/// name `numbers_at`/`queues_at` (the keys) and the entry.
pub fn read_inventory(
    whole: &Whole,
    numbers_at: &str,
    queues_at: &str,
    region: Region,
) -> Result<Inventory, InventoryError> {
    if let Some(field) = unbucketed_field(whole) {
        return Err(InventoryError {
            lines: vec![LineError {
                file: numbers_at.to_string(),
                line: 0,
                reason: format!(
                    "field {field:?} is a whole number, not a bucket: this store was written \
                     by a cidgate from before numbers were packed into buckets; write it \
                     again with `cidgate inventory push`"
                ),
            }],
            warnings: Vec::new(),
        });
    }
    let mut misplaced = not_utf8(whole, numbers_at, queues_at);
    let queues = queue_records(whole.queues.pairs(), queues_at, &mut misplaced);
    let mut numbers = NumberLines::new(whole.numbers.pairs(), numbers_at);
    let loaded = Inventory::from_records(
        &mut numbers,
        numbers_at,
        queues.iter().map(|(id, row)| (id.as_ref(), *row)),
        queues_at,
        region,
    );
    misplaced.append(&mut numbers.misplaced);
    match loaded {
        Ok(inventory) if misplaced.is_empty() => Ok(inventory),
        Ok(_) => Err(InventoryError {
            lines: misplaced,
            warnings: Vec::new(),
        }),
        Err(mut e) => {
            e.lines.append(&mut misplaced);
            Err(e)
        }
    }
}

/// A numbers field of the model before buckets (one field per number, the
/// number itself), so that an upgraded instance says what to do instead of
/// listing a million misplaced lines.
fn unbucketed_field(whole: &Whole) -> Option<&str> {
    whole
        .numbers
        .pairs()
        .map(|(field, _)| field)
        .find(|field| field.starts_with('+'))
}

/// The lines that are not UTF-8 (their bucket reads as empty), shown lossily.
fn not_utf8(whole: &Whole, numbers_at: &str, queues_at: &str) -> Vec<LineError> {
    [(&whole.numbers, numbers_at), (&whole.queues, queues_at)]
        .into_iter()
        .flat_map(|(hash, at)| {
            hash.not_utf8().iter().map(move |(bucket, line)| LineError {
                file: at.to_string(),
                line: 0,
                reason: if line.is_empty() {
                    format!("bucket name {bucket:?} is not UTF-8")
                } else {
                    format!("bucket {bucket:?}: line {line:?} is not UTF-8")
                },
            })
        })
        .collect()
}

/// The `(number, attest)` entries of the number buckets, one line each,
/// with the lines that sit in the wrong bucket set aside as errors.
struct NumberLines<'a, B> {
    buckets: B,
    bucket: &'a str,
    /// What is left of the bucket being read.
    rest: &'a str,
    /// Lines left, for the claimed set's reservation (counted up front).
    left: usize,
    at: &'a str,
    misplaced: Vec<LineError>,
}

impl<'a, B: Iterator<Item = (&'a str, &'a str)> + Clone> NumberLines<'a, B> {
    fn new(buckets: B, at: &'a str) -> Self {
        let left = buckets
            .clone()
            .map(|(_, text)| memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1)
            .sum();
        NumberLines {
            buckets,
            bucket: "",
            rest: "",
            left,
            at,
            misplaced: Vec::new(),
        }
    }
}

impl<'a, B: Iterator<Item = (&'a str, &'a str)>> Iterator for NumberLines<'a, B> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        loop {
            if self.rest.is_empty() {
                let (bucket, text) = self.buckets.next()?;
                self.bucket = bucket;
                self.rest = text;
                continue;
            }
            let line;
            (line, self.rest) = split_at_byte(self.rest, b'\n');
            self.left = self.left.saturating_sub(1);
            if line.is_empty() {
                continue;
            }
            let (number, attest) = split_at_byte(line, b',');
            // A number that is not `+` and digits is named by the load.
            match number_bucket(number) {
                Some(b) if b != self.bucket.as_bytes() => self.misplaced.push(LineError {
                    file: self.at.to_string(),
                    line: 0,
                    reason: format!(
                        "number {number:?} is in bucket {:?}; its bucket is {:?} (its last three digits)",
                        self.bucket,
                        String::from_utf8_lossy(&b)
                    ),
                }),
                _ => return Some((number, attest)),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, None)
    }
}

/// `text` split at the first `byte` (an ASCII character, so both sides are
/// text), without it; all of `text` and `""` when it holds none. A byte
/// search: the lines are short and a million of them are split.
fn split_at_byte(text: &str, byte: u8) -> (&str, &str) {
    match memchr::memchr(byte, text.as_bytes()) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    }
}

/// The `(id, row)` entries of the queue buckets; lines in the wrong bucket
/// or with an unreadable id go to `errors`.
fn queue_records<'a>(
    buckets: impl Iterator<Item = (&'a str, &'a str)>,
    at: &str,
    errors: &mut Vec<LineError>,
) -> Vec<(Cow<'a, str>, &'a str)> {
    let mut records = Vec::new();
    for (bucket, text) in buckets {
        let mut rest = text;
        while !rest.is_empty() {
            let line;
            (line, rest) = split_at_byte(rest, b'\n');
            if line.is_empty() {
                continue;
            }
            let Some((id, row)) = split_queue_line(line) else {
                errors.push(LineError {
                    file: at.to_string(),
                    line: 0,
                    reason: format!("bucket {bucket:?}: line {line:?} has no readable queue id"),
                });
                continue;
            };
            let home = queue_bucket(&id);
            if home != bucket.as_bytes() {
                errors.push(LineError {
                    file: at.to_string(),
                    line: 0,
                    reason: format!(
                        "queue {id:?} is in bucket {bucket:?}; its bucket is {:?} (the first two hex digits of the SHA-1 of its id)",
                        String::from_utf8_lossy(&home)
                    ),
                });
                continue;
            }
            records.push((id, row));
        }
    }
    records
}

/// Splits a queue line into its id (unquoted) and the row after it.
fn split_queue_line(line: &str) -> Option<(Cow<'_, str>, &str)> {
    let Some(quoted) = line.strip_prefix('"') else {
        let (id, row) = split_at_byte(line, b',');
        return Some((id.into(), row));
    };
    let mut id = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            id.push(c);
            continue;
        }
        if quoted[i + 1..].starts_with('"') {
            chars.next();
            id.push('"');
            continue;
        }
        let rest = &quoted[i + 1..];
        let row = if rest.is_empty() {
            rest
        } else {
            rest.strip_prefix(',')?
        };
        return Some((id.into(), row));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lines_split_at_the_id() {
        let split = |l| split_queue_line(l).map(|(id, row)| (id.into_owned(), row));
        assert_eq!(
            split("sales,+14155550100,Sales,US,false"),
            Some(("sales".into(), "+14155550100,Sales,US,false"))
        );
        assert_eq!(
            split("\"a,\"\"b\",+14155550100,X,US,false"),
            Some(("a,\"b".into(), "+14155550100,X,US,false"))
        );
        assert_eq!(split("\"a,b\"x,1"), None);
        assert_eq!(split("\"open"), None);
        assert_eq!(split("lonely"), Some(("lonely".into(), "")));
    }
}
