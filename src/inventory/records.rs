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
use super::{syntactic_e164, Queue, Region, E164};
use super::{Inventory, InventoryBuilder, InventoryError, LineError, Origin};

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
    let mut fields = [""; 4];
    // Without quotes or line breaks a row splits at its commas exactly as the
    // CSV reader reads it, and every canonical row whose name holds no comma
    // or quote is such a row. Building a CSV reader costs more than all the
    // checks of a row (it builds its state machine), which a load of 100 000
    // queues from the shared store would pay 100 000 times.
    if !row.contains(['"', '\r', '\n']) {
        let count = row.split(',').count();
        if row.is_empty() {
            return Err("empty row".into());
        }
        if count > fields.len() {
            return Err(too_many_fields(count));
        }
        for (slot, f) in fields.iter_mut().zip(row.split(',')) {
            *slot = f.trim();
        }
        return queue_from_fields(id, fields, default_region);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .buffer_capacity(256)
        .from_reader(row.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) if record.len() <= fields.len() => {}
        Ok(true) => return Err(too_many_fields(record.len())),
        Ok(false) => return Err("empty row".into()),
        Err(e) => return Err(format!("unreadable row: {e}")),
    }
    for (slot, f) in fields.iter_mut().zip(record.iter()) {
        *slot = f;
    }
    queue_from_fields(id, fields, default_region)
}

fn too_many_fields(count: usize) -> String {
    format!("{count} fields, expected caller_id_number,caller_id_name,region,anonymous")
}

fn queue_from_fields(id: &str, fields: [&str; 4], default_region: Region) -> Result<Queue, String> {
    let region = region_field(fields[2])?;
    let anonymous = anonymous_field(fields[3])?;
    InventoryBuilder::new(default_region).make_queue(id, fields[0], fields[1], region, anonymous)
}

impl Inventory {
    /// Builds an inventory from records (numbers as `(number, attest)` with
    /// an empty attest for the configured default, queues as `(id, row)`),
    /// with the checks of a file load, except that numbers must already be in
    /// E.164 and only their shape is checked (see `stored_number`); errors
    /// name `numbers_at` or `queues_at` (where the records came from) and the
    /// offending member.
    pub fn from_records<'a>(
        numbers: impl IntoIterator<Item = (&'a str, &'a str)>,
        numbers_at: &str,
        queues: impl IntoIterator<Item = (&'a str, &'a str)>,
        queues_at: &str,
        default_region: Region,
    ) -> Result<Inventory, InventoryError> {
        let mut b = InventoryBuilder::new(default_region);
        let (numbers, queues) = (numbers.into_iter(), queues.into_iter());
        b.claimed.reserve(numbers.size_hint().0);
        b.queues.reserve(queues.size_hint().0);
        let numbers_at: std::sync::Arc<str> = numbers_at.into();
        let queues_at: std::sync::Arc<str> = queues_at.into();
        for (n, attest) in numbers {
            match stored_number(n).and_then(|e| Ok((e, attest_field(attest)?))) {
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

/// A claimed number as the shared store holds it: canonical E.164, written by
/// a push or an edit that checked it against its numbering plan first. Only
/// the shape is checked again when the store is read: the numbering-plan check
/// takes about half a microsecond a number, which was most of a load of a
/// million. A number in any other form (a national one, text) is refused.
fn stored_number(n: &str) -> Result<E164, String> {
    syntactic_e164(n).ok_or_else(|| {
        format!("{n:?} is not in E.164 form (`+` and at most 15 digits, as a push writes it)")
    })
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
