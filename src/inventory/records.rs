//! The inventory as records: claimed numbers as E.164 text and each queue as
//! one canonical CSV row keyed by its id. This is the form the shared store
//! (Redis) and the admin API exchange, so the same row an operator sends in a
//! `PUT` is what `redis-cli HGET` shows.
//!
//! A canonical row is `caller_id_number,caller_id_name,region,anonymous` with
//! the number in E.164 (empty for a queue without one), the region always
//! written and `anonymous` as `true`/`false`: nothing in it depends on the
//! reader's default region, so every instance reads it the same way.

use super::load::{anonymous_field, attest_field, region_field};
use super::{parse_number, Inventory, InventoryBuilder, InventoryError, LineError, Origin};
use super::{Queue, Region, E164};

/// The canonical row of `queue` (without its id).
pub fn queue_row(queue: &Queue) -> String {
    let number = queue.number.as_ref().map_or("", |n| n.as_str());
    let anonymous = if queue.anonymous { "true" } else { "false" };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(64));
    // Writing to a Vec cannot fail.
    let _ = w.write_record([number, &queue.name, queue.region.as_str(), anonymous]);
    let mut bytes = w.into_inner().unwrap_or_default();
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// Reads one row `caller_id_number,caller_id_name,region,anonymous` (trailing
/// fields may be left out) for queue `id`, checked like a line of queues.csv.
pub(super) fn parse_queue_row(
    id: &str,
    row: &str,
    default_region: Region,
) -> Result<Queue, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .buffer_capacity(256)
        .from_reader(row.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) if record.len() <= 4 => {}
        Ok(true) => {
            return Err(format!(
                "{} fields, expected caller_id_number,caller_id_name,region,anonymous",
                record.len()
            ))
        }
        Ok(false) => return Err("empty row".into()),
        Err(e) => return Err(format!("unreadable row: {e}")),
    }
    let field = |i: usize| record.get(i).unwrap_or("");
    let region = region_field(field(2))?;
    let anonymous = anonymous_field(field(3))?;
    InventoryBuilder::new(default_region).make_queue(id, field(0), field(1), region, anonymous)
}

impl Inventory {
    /// Builds an inventory from records (numbers as `(number, attest)` with
    /// an empty attest for the configured default, queues as `(id, row)`),
    /// with every check of a file load; errors name `numbers_at` or
    /// `queues_at` (where the records came from) and the offending member.
    pub fn from_records<'a>(
        numbers: impl IntoIterator<Item = (&'a str, &'a str)>,
        numbers_at: &str,
        queues: impl IntoIterator<Item = (&'a str, &'a str)>,
        queues_at: &str,
        default_region: Region,
    ) -> Result<Inventory, InventoryError> {
        let mut b = InventoryBuilder::new(default_region);
        let numbers_at: std::sync::Arc<str> = numbers_at.into();
        let queues_at: std::sync::Arc<str> = queues_at.into();
        for (n, attest) in numbers {
            match parse_number(n, default_region).and_then(|e| Ok((e, attest_field(attest)?))) {
                Ok((e, attest)) => {
                    b.claimed.insert(e.key());
                    if let Some(a) = attest {
                        b.attest.insert(e.key(), a);
                    }
                }
                Err(reason) => b.error(&numbers_at, 0, format!("number {n:?}: {reason}")),
            }
        }
        for (id, row) in queues {
            let origin = Origin {
                file: queues_at.clone(),
                line: 0,
            };
            let checked =
                parse_queue_row(id, row, default_region).and_then(|q| b.insert_queue(q, origin));
            if let Err(reason) = checked {
                b.error(&queues_at, 0, format!("queue {id:?} ({row:?}): {reason}"));
            }
        }
        b.build()
    }
}

impl From<LineError> for InventoryError {
    fn from(line: LineError) -> InventoryError {
        InventoryError {
            lines: vec![line],
            warnings: Vec::new(),
        }
    }
}

impl Inventory {
    /// Every claimed number with its attestation (`""` for the configured
    /// default), as the shared store and the snapshot hold them.
    pub fn number_records(&self) -> impl Iterator<Item = (E164, &'static str)> + '_ {
        self.numbers()
            .map(|n| (n, self.attest_of(&n).map_or("", |a| a.as_str())))
    }
}
