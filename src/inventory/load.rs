//! CSV reading for the inventory files (docs/behaviour.md §6).
//!
//! Errors are collected per line instead of stopping at the first, so an
//! operator sees every problem of a refused reload at once.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use csv::{ReaderBuilder, StringRecord, Trim};

use super::{parse_number, InventoryBuilder, Origin, Region};
use crate::stir::Attest;

const NUMBERS_HEADER: &[&str] = &["number", "region", "attest"];
const NUMBERS_REQUIRED: usize = 1;
const QUEUES_HEADER: &[&str] = &[
    "queue_id",
    "caller_id_number",
    "caller_id_name",
    "region",
    "anonymous",
];
const QUEUES_REQUIRED: usize = 4;

/// Walks the data rows of one file, reporting the line of each; stops at an
/// I/O error (nothing after it can be trusted), continues after bad UTF-8.
struct Rows<R: Read> {
    reader: csv::Reader<R>,
    record: StringRecord,
    file: Arc<str>,
    /// Number of columns the header declared.
    columns: usize,
    /// Columns every row must have.
    required: usize,
    /// The file had no header row: the first record read is data and is
    /// returned by the first `next`.
    replay: bool,
    /// A row read ahead (to learn whether a quote ran to the end of the
    /// file), returned by the next `next`.
    pending: Option<csv::Result<StringRecord>>,
}

/// The header a file should have, for messages: optional columns nest,
/// as in `number[,region[,attest]]`.
fn header_shape(expected: &[&str], required: usize) -> String {
    let optional = &expected[required..];
    let nested: String = optional.iter().map(|c| format!("[,{c}")).collect();
    let closing = "]".repeat(optional.len());
    format!("{}{nested}{closing}", expected[..required].join(","))
}

/// Whether `found` is the expected header: the required columns and any
/// prefix of the optional ones, in order (a byte-order mark is allowed).
fn header_matches(found: &[String], expected: &[&str], required: usize) -> bool {
    (required..=expected.len()).contains(&found.len())
        && found
            .iter()
            .zip(expected)
            .all(|(f, e)| f.trim_start_matches('\u{feff}') == *e)
}

impl<R: Read> Rows<R> {
    /// Reads and checks the header row; `None` (after reporting why) if the
    /// file cannot be interpreted at all.
    fn open(
        builder: &mut InventoryBuilder,
        input: R,
        file: &str,
        expected: &[&str],
        required: usize,
    ) -> Option<Rows<R>> {
        let mut rows = Rows {
            reader: ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                // Fields are trimmed when read (`field`): a quote left open
                // is told by the line break it swallowed, which trimming
                // would remove.
                .trim(Trim::None)
                .from_reader(input),
            record: StringRecord::new(),
            file: file.into(),
            columns: 0,
            required,
            replay: false,
            pending: None,
        };
        let shape = header_shape(expected, required);
        let found = match rows.read_header() {
            Ok(Some(found)) => found,
            Ok(None) => {
                let why = format!("empty file: expected the header row `{shape}`");
                builder.error(&rows.file, 1, why);
                return None;
            }
            Err(e) => {
                builder.error(&rows.file, 1, format!("unreadable header row: {e}"));
                return None;
            }
        };
        if header_matches(&found, expected, required) {
            rows.columns = found.len();
            return Some(rows);
        }
        // numbers.csv may come without a header (a plain list of numbers is
        // what people export); a first row that is a number is data.
        if expected == NUMBERS_HEADER && rows.first_field_is_number() {
            rows.columns = expected.len();
            rows.replay = true;
            return Some(rows);
        }
        let header = rows.record.iter().collect::<Vec<_>>().join(",");
        let why = format!("header row is `{header}`, expected `{shape}`");
        builder.error(&rows.file, 1, why);
        None
    }

    /// The first row's fields, trimmed and in lower case; `None` for an
    /// empty file.
    fn read_header(&mut self) -> csv::Result<Option<Vec<String>>> {
        if !self.reader.read_record(&mut self.record)? {
            return Ok(None);
        }
        let fields = self.record.iter();
        Ok(Some(
            fields.map(|f| f.trim().to_ascii_lowercase()).collect(),
        ))
    }

    /// Whether the row just read starts with something shaped like a number.
    fn first_field_is_number(&self) -> bool {
        let first = self.record.get(0).unwrap_or("").trim();
        first
            .trim_start_matches('\u{feff}')
            .starts_with(|c: char| c == '+' || c == '(' || c.is_ascii_digit())
    }

    /// Advances to the next row with the header's column count; returns its
    /// line, or `None` at the end of the file.
    fn next(&mut self, builder: &mut InventoryBuilder) -> Option<u64> {
        loop {
            let replayed = std::mem::take(&mut self.replay);
            let read = if replayed {
                Ok(true)
            } else if let Some(ahead) = self.pending.take() {
                ahead.map(|r| {
                    self.record = r;
                    true
                })
            } else {
                self.reader.read_record(&mut self.record)
            };
            match read {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let fatal = e.is_io_error();
                    builder.error(&self.file, line, format!("unreadable line: {e}"));
                    if fatal {
                        return None;
                    }
                    continue;
                }
            }
            let line = self.record.position().map_or(0, |p| p.line());
            if let Some(reason) = self.quote_left_open() {
                builder.error(&self.file, line, reason);
                continue;
            }
            // Trailing optional columns may be left out of a row.
            if !(self.required..=self.columns).contains(&self.record.len()) {
                let reason = format!(
                    "{} fields, expected {} to {} as in the header",
                    self.record.len(),
                    self.required,
                    self.columns
                );
                builder.error(&self.file, line, reason);
                continue;
            }
            return Some(line);
        }
    }

    /// A quote left open swallows what follows it into one field: up to the
    /// end of the file (the field then ends with the file's last line break),
    /// or up to the next quote (the field then holds a line break and a
    /// comma, a row that was read as text). Both are named as the quoting
    /// mistake they are rather than as a bad value. A quoted value with a line
    /// break but no comma is left to the value checks. Reads one row ahead to
    /// tell the end of the file; `next` returns that row afterwards.
    fn quote_left_open(&mut self) -> Option<String> {
        let breaks = |f: &str| f.contains(['\n', '\r']);
        let ends_open = self.record.iter().any(|f| f.ends_with(['\n', '\r']));
        let swallowed = self.record.iter().any(|f| breaks(f) && f.contains(','));
        if !ends_open && !swallowed {
            return None;
        }
        let last_line = self.reader.position().line().saturating_sub(1);
        let mut ahead = StringRecord::new();
        let at_end = match self.reader.read_record(&mut ahead) {
            Ok(false) => true,
            Ok(true) => {
                self.pending = Some(Ok(ahead));
                false
            }
            Err(e) => {
                self.pending = Some(Err(e));
                false
            }
        };
        if at_end {
            Some("unterminated quote: a `\"` opened on this line is never closed, so the rest of the file was read as one field".into())
        } else if swallowed {
            Some(format!(
                "unterminated quote: a `\"` opened on this line is only closed on line {last_line}, so the lines between were read as one field"
            ))
        } else {
            None
        }
    }

    fn field(&self, i: usize) -> &str {
        self.record.get(i).unwrap_or("").trim()
    }
}

/// Reads `number[,region[,attest]]` rows into the claimed set.
pub(super) fn read_numbers(builder: &mut InventoryBuilder, input: impl Read, file: &str) {
    let Some(mut rows) = Rows::open(builder, input, file, NUMBERS_HEADER, NUMBERS_REQUIRED) else {
        return;
    };
    // Where each number was first seen, to name both lines of a duplicate.
    let mut first_seen: HashMap<u64, u64> = HashMap::new();
    while let Some(line) = rows.next(builder) {
        let parsed = region_field(rows.field(1))
            .map(|r| r.unwrap_or(builder.default_region))
            .and_then(|region| parse_number(rows.field(0), region))
            .and_then(|number| Ok((number, attest_field(rows.field(2))?)));
        match parsed {
            Ok((number, attest)) => {
                builder.claimed.insert(number.key());
                if let Some(a) = attest {
                    builder.attest.insert(number.key(), a);
                }
                if let Some(&first) = first_seen.get(&number.key()) {
                    let reason = format!(
                        "{number} is listed again (first on line {first}); it is claimed once"
                    );
                    builder.warn(&rows.file, line, reason);
                } else {
                    first_seen.insert(number.key(), line);
                }
            }
            Err(reason) => builder.error(&rows.file, line, reason),
        }
    }
}

/// Reads `queue_id,caller_id_number,caller_id_name,region[,anonymous]` rows.
pub(super) fn read_queues(builder: &mut InventoryBuilder, input: impl Read, file: &str) {
    let Some(mut rows) = Rows::open(builder, input, file, QUEUES_HEADER, QUEUES_REQUIRED) else {
        return;
    };
    while let Some(line) = rows.next(builder) {
        let queue = region_field(rows.field(3)).and_then(|region| {
            let anonymous = anonymous_field(rows.field(4))?;
            builder.make_queue(
                rows.field(0),
                rows.field(1),
                rows.field(2),
                region,
                anonymous,
            )
        });
        let origin = Origin {
            file: rows.file.clone(),
            line,
        };
        if let Err(reason) = queue.and_then(|q| builder.insert_queue(q, origin)) {
            builder.error(&rows.file, line, reason);
        }
    }
}

/// Empty means "use the default region".
pub(super) fn region_field(s: &str) -> Result<Option<Region>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Region::parse(s).map(Some).ok_or_else(|| {
        format!("region {s:?} is not an ISO 3166 alpha-2 code with numbering-plan data")
    })
}

/// Empty means "the `[stir] attest` default".
pub(super) fn attest_field(s: &str) -> Result<Option<Attest>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Attest::parse(s)
        .map(Some)
        .ok_or_else(|| format!("attest {s:?} is not A, B or C (or empty for the default)"))
}

pub(super) fn anonymous_field(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => Ok(false),
        "true" | "yes" | "1" => Ok(true),
        _ => Err(format!(
            "anonymous {s:?} is not one of true/false/yes/no/1/0"
        )),
    }
}
