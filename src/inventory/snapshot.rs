//! The last-good snapshot: a local copy of the shared inventory that lets an
//! instance start, and say so, while the shared store is unreachable.
//!
//! One text file an operator can read: a header line with the version it
//! holds, then the claimed numbers and the queues as the two CSV files would
//! have them, each section introduced by `[numbers]` / `[queues]`. Reading it
//! goes through the file loader, so a damaged snapshot is refused line by line
//! like a bad queues.csv.

use std::io::Write;
use std::path::Path;

use super::{queue_row, Inventory, InventoryError, LineError, Region};

const MAGIC: &str = "cidgate-snapshot";

/// Where in the shared store's history a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub version: u64,
    pub revision: u64,
}

/// Writes `inventory` to `path` atomically (a temporary file renamed over it),
/// so a crash mid-write leaves the previous snapshot intact.
pub fn write(path: &Path, inventory: &Inventory, stamp: Stamp) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(
        out,
        "{MAGIC} version={} revision={}",
        stamp.version, stamp.revision
    )?;
    writeln!(out, "[numbers]\nnumber,region,attest")?;
    for (n, attest) in inventory.number_records() {
        writeln!(out, "{n},,{attest}")?;
    }
    writeln!(
        out,
        "[queues]\nqueue_id,caller_id_number,caller_id_name,region,anonymous"
    )?;
    let mut queues: Vec<_> = inventory.queues().collect();
    queues.sort_by(|a, b| a.id.cmp(&b.id));
    for q in queues {
        // Queue ids hold no commas, quotes or spaces: they need no quoting.
        writeln!(out, "{},{}", q.id, queue_row(q))?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a snapshot with every check of a file load.
pub fn read(path: &Path, default_region: Region) -> Result<(Inventory, Stamp), InventoryError> {
    let name = path.display().to_string();
    let fail = |reason: String| {
        InventoryError::from(LineError {
            file: name.clone(),
            line: 0,
            reason,
        })
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let (header, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let stamp = parse_header(header)
        .ok_or_else(|| fail(format!("first line is not `{MAGIC} version=N revision=N`")))?;
    let rest = rest
        .strip_prefix("[numbers]\n")
        .ok_or_else(|| fail("second line is not `[numbers]`".into()))?;
    let (numbers, queues) = rest
        .split_once("\n[queues]\n")
        .ok_or_else(|| fail("no `[queues]` section".into()))?;
    let inventory = Inventory::from_csv_readers(
        queues.as_bytes(),
        &format!("{name} [queues]"),
        numbers.as_bytes(),
        &format!("{name} [numbers]"),
        default_region,
    )?;
    Ok((inventory, stamp))
}

fn parse_header(line: &str) -> Option<Stamp> {
    let mut words = line.split_whitespace();
    if words.next()? != MAGIC {
        return None;
    }
    let version = words.next()?.strip_prefix("version=")?.parse().ok()?;
    let revision = words.next()?.strip_prefix("revision=")?.parse().ok()?;
    Some(Stamp { version, revision })
}
