//! CSV reading for the inventory files (SPEC §6).
//!
//! Errors are collected per line instead of stopping at the first, so an
//! operator sees every problem of a refused reload at once.

use std::io::Read;
use std::sync::Arc;

use csv::{ReaderBuilder, StringRecord, Trim};

use super::{parse_number, InventoryBuilder, Origin, Region};

const NUMBERS_HEADER: &[&str] = &["number", "region"];
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
                .trim(Trim::All)
                .from_reader(input),
            record: StringRecord::new(),
            file: file.into(),
            columns: 0,
            required,
            replay: false,
        };
        let shape = if required == expected.len() {
            expected.join(",")
        } else {
            format!(
                "{}[,{}]",
                expected[..required].join(","),
                expected[required..].join(",")
            )
        };
        let found = match rows.reader.read_record(&mut rows.record) {
            Ok(true) => rows
                .record
                .iter()
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>(),
            Ok(false) => {
                builder.error(
                    &rows.file,
                    1,
                    format!("empty file: expected the header row `{shape}`"),
                );
                return None;
            }
            Err(e) => {
                builder.error(&rows.file, 1, format!("unreadable header row: {e}"));
                return None;
            }
        };
        let ok = (required..=expected.len()).contains(&found.len())
            && found
                .iter()
                .zip(expected)
                .all(|(f, e)| f.trim_start_matches('\u{feff}') == *e);
        // numbers.csv may come without a header (a plain list of numbers is
        // what people export); a first row that is a number is data.
        let first = rows.record.get(0).unwrap_or("");
        let looks_like_number = first
            .trim_start_matches('\u{feff}')
            .starts_with(|c: char| c == '+' || c == '(' || c.is_ascii_digit());
        if !ok && expected == NUMBERS_HEADER && looks_like_number {
            rows.columns = expected.len();
            rows.replay = true;
            return Some(rows);
        }
        if !ok {
            builder.error(
                &rows.file,
                1,
                format!(
                    "header row is `{}`, expected `{shape}`",
                    rows.record.iter().collect::<Vec<_>>().join(",")
                ),
            );
            return None;
        }
        rows.columns = found.len();
        Some(rows)
    }

    /// Advances to the next row with the header's column count; returns its
    /// line, or `None` at the end of the file.
    fn next(&mut self, builder: &mut InventoryBuilder) -> Option<u64> {
        loop {
            let replayed = std::mem::take(&mut self.replay);
            match if replayed {
                Ok(true)
            } else {
                self.reader.read_record(&mut self.record)
            } {
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

    fn field(&self, i: usize) -> &str {
        self.record.get(i).unwrap_or("")
    }
}

/// Reads `number[,region]` rows into the claimed set.
pub(super) fn read_numbers(builder: &mut InventoryBuilder, input: impl Read, file: &str) {
    let Some(mut rows) = Rows::open(builder, input, file, NUMBERS_HEADER, NUMBERS_REQUIRED) else {
        return;
    };
    while let Some(line) = rows.next(builder) {
        let parsed = region_field(rows.field(1))
            .map(|r| r.unwrap_or(builder.default_region))
            .and_then(|region| parse_number(rows.field(0), region));
        match parsed {
            Ok(number) => {
                builder.claimed.insert(number.key());
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
fn region_field(s: &str) -> Result<Option<Region>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Region::parse(s).map(Some).ok_or_else(|| {
        format!("region {s:?} is not an ISO 3166 alpha-2 code with numbering-plan data")
    })
}

fn anonymous_field(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => Ok(false),
        "true" | "yes" | "1" => Ok(true),
        _ => Err(format!(
            "anonymous {s:?} is not one of true/false/yes/no/1/0"
        )),
    }
}
