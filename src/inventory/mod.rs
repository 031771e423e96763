//! Numbers and queues.
//!
//! An [`Inventory`] is immutable once built; a reload builds a whole new one
//! and swaps it into the [`InventoryHandle`], so every call sees one
//! consistent inventory and readers never take a lock (docs/behaviour.md §6).

mod edit;
mod load;
pub mod number;
mod records;
mod rules;
pub mod snapshot;
mod warm;

use std::collections::{HashMap, HashSet};

/// The hasher of the number-keyed sets: randomly seeded per process and
/// several times cheaper than SipHash on a `u64`; indexing a million numbers
/// (a load from files or from the shared store) hashes each once, and every
/// call hashes the number it looks up.
type NumberHasher = foldhash::fast::RandomState;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::stir::Attest;

pub use edit::{Edit, EditError, EncodedEdit};
pub use number::{normalize, parse_e164_strict, syntactic_e164, Region, E164};
pub use records::queue_row;
pub use rules::number_types;
pub use warm::{compiled_patterns, numbering_plans, warm_numbering_plans};

/// How much an inventory holds: what a reload or an edit reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub queues: usize,
    /// Claimed numbers.
    pub numbers: usize,
}

/// A queue as the caller-ID policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub id: Arc<str>,
    /// `None` for a queue without a caller-ID number: its calls are rejected.
    pub number: Option<E164>,
    /// Caller-ID display name; empty means "no display name".
    pub name: Arc<str>,
    /// Region used to normalise per-call numbers written in national form.
    pub region: Region,
    pub anonymous: bool,
}

/// The claimed numbers and the queues, validated as a whole.
#[derive(Debug, Clone)]
pub struct Inventory {
    queues: HashMap<Arc<str>, Queue>,
    /// Digits of each claimed number as an integer ([`E164`]'s key): 8 bytes a
    /// number instead of a string, so a million numbers stay near 16 MB.
    claimed: HashSet<u64, NumberHasher>,
    /// What the load accepted but an operator should fix (a number listed
    /// twice); never a reason to refuse a load.
    warnings: Vec<LineError>,
    /// STIR attestation of the claimed numbers whose numbers.csv row names one
    /// (keyed like `claimed`); the others use the configured default.
    attest: HashMap<u64, Attest, NumberHasher>,
}

impl Inventory {
    /// No queues and no numbers: every call is rejected.
    pub fn empty() -> Inventory {
        Inventory {
            queues: HashMap::new(),
            claimed: HashSet::default(),
            warnings: Vec::new(),
            attest: HashMap::default(),
        }
    }

    /// Lines the load accepted with a warning, in file order.
    pub fn warnings(&self) -> &[LineError] {
        &self.warnings
    }

    pub fn queue(&self, id: &str) -> Option<&Queue> {
        self.queues.get(id)
    }

    /// Whether the instance owns `number`. Needs no `phonenumber` call: the
    /// claimed numbers were validated when they were claimed (file load, push, edit).
    pub fn is_claimed(&self, number: &E164) -> bool {
        self.claimed.contains(&number.key())
    }

    /// The attestation numbers.csv gives `number`, if any (an empty
    /// cell means the `[stir] attest` default).
    pub fn attest_of(&self, number: &E164) -> Option<Attest> {
        if self.attest.is_empty() {
            return None;
        }
        self.attest.get(&number.key()).copied()
    }

    pub fn claimed_count(&self) -> usize {
        self.claimed.len()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            queues: self.queue_count(),
            numbers: self.claimed_count(),
        }
    }

    /// All queues, in no particular order (for the admin API and `resolve`).
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    /// The claimed numbers in the order their E.164 texts sort (`+1…` before
    /// `+44…`), for listing; sorts them all, so callers page over one result.
    pub fn numbers_sorted(&self) -> Vec<E164> {
        let mut keys: Vec<u64> = self.claimed.iter().copied().collect();
        // Digit strings compare like their values scaled to 15 digits, with
        // the shorter first on a tie (a prefix sorts before its extensions).
        keys.sort_unstable_by_key(|&k| {
            let digits = k.checked_ilog10().unwrap_or(0) + 1;
            (k * 10u64.pow(number::MAX_DIGITS as u32 - digits), digits)
        });
        keys.into_iter().map(E164::from_key).collect()
    }

    /// Every claimed number, in no particular order (to write the inventory
    /// out: to the shared store, to a snapshot).
    pub fn numbers(&self) -> impl Iterator<Item = E164> + '_ {
        self.claimed.iter().map(|&key| E164::from_key(key))
    }

    /// A builder holding this inventory, for edits (admin upsert/delete) that
    /// are checked exactly like a load: `build` refuses a queue whose number is
    /// not claimed, so removing a number still in use fails as a whole.
    pub fn edit(&self, default_region: Region) -> InventoryBuilder {
        let mut b = InventoryBuilder::new(default_region);
        b.claimed = self.claimed.clone();
        b.attest = self.attest.clone();
        let origin: Arc<str> = "<current inventory>".into();
        b.queues = self
            .queues
            .iter()
            .map(|(k, q)| {
                let o = Origin {
                    file: origin.clone(),
                    line: 0,
                };
                (k.clone(), (q.clone(), o))
            })
            .collect();
        b
    }

    /// Starts an inventory built in code rather than from files.
    pub fn builder(default_region: Region) -> InventoryBuilder {
        InventoryBuilder::new(default_region)
    }

    /// Reads `queues.csv` and `numbers.csv` (docs/behaviour.md §6). The names
    /// are only used in error messages. Every bad line of both files is reported.
    pub fn from_csv_readers(
        queues: impl Read,
        queues_name: &str,
        numbers: impl Read,
        numbers_name: &str,
        default_region: Region,
    ) -> Result<Inventory, InventoryError> {
        let mut builder = InventoryBuilder::new(default_region);
        load::read_numbers(&mut builder, numbers, numbers_name);
        load::read_queues(&mut builder, queues, queues_name);
        builder.build()
    }

    /// Loads both files from disk.
    pub fn load(
        queues: &Path,
        numbers: &Path,
        default_region: Region,
    ) -> Result<Inventory, InventoryError> {
        let open = |path: &Path| {
            std::fs::File::open(path)
                .map(std::io::BufReader::new)
                .map_err(|e| {
                    InventoryError::single(
                        path.display().to_string(),
                        0,
                        format!("cannot open: {e}"),
                    )
                })
        };
        let (q, n) = match (open(queues), open(numbers)) {
            (Ok(q), Ok(n)) => (q, n),
            (q, n) => {
                let errors = [q.err(), n.err()]
                    .into_iter()
                    .flatten()
                    .flat_map(|e| e.lines);
                return Err(InventoryError {
                    lines: errors.collect(),
                    warnings: Vec::new(),
                });
            }
        };
        Inventory::from_csv_readers(
            q,
            &queues.display().to_string(),
            n,
            &numbers.display().to_string(),
            default_region,
        )
    }
}

/// Where an entry came from, for error messages.
#[derive(Debug, Clone)]
struct Origin {
    file: Arc<str>,
    line: u64,
}

/// Collects numbers and queues, then checks what can only be checked on the
/// whole (a queue's number must be claimed, wherever in the files it appears).
#[derive(Debug)]
pub struct InventoryBuilder {
    default_region: Region,
    claimed: HashSet<u64, NumberHasher>,
    attest: HashMap<u64, Attest, NumberHasher>,
    queues: HashMap<Arc<str>, (Queue, Origin)>,
    errors: Vec<LineError>,
    warnings: Vec<LineError>,
    /// Counts the builder's own calls, used as their "line" in errors.
    calls: u64,
}

/// File name used in errors from builder calls made in code.
const BUILDER_FILE: &str = "<builder>";

impl InventoryBuilder {
    fn new(default_region: Region) -> InventoryBuilder {
        InventoryBuilder {
            default_region,
            claimed: HashSet::default(),
            attest: HashMap::default(),
            queues: HashMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            calls: 0,
        }
    }

    /// Claims a number (E.164 or national form in the default region).
    pub fn add_number(&mut self, number: &str) -> Result<&mut Self, InventoryError> {
        self.calls += 1;
        let line = self.calls;
        let e = parse_number(number, self.default_region)
            .map_err(|reason| InventoryError::single(BUILDER_FILE.into(), line, reason))?;
        self.claimed.insert(e.key());
        Ok(self)
    }

    /// Claims a number with its own STIR attestation (the numbers.csv
    /// `attest` column).
    pub fn add_number_attested(
        &mut self,
        number: &str,
        attest: Attest,
    ) -> Result<&mut Self, InventoryError> {
        self.add_number(number)?;
        let key = parse_number(number, self.default_region)
            .expect("add_number accepted it")
            .key();
        self.attest.insert(key, attest);
        Ok(self)
    }

    /// Adds a queue. Whether its number is claimed is checked by [`build`](Self::build).
    pub fn add_queue(
        &mut self,
        id: &str,
        number: Option<&str>,
        name: &str,
        region: Option<Region>,
        anonymous: bool,
    ) -> Result<&mut Self, InventoryError> {
        self.calls += 1;
        let line = self.calls;
        let fail = |reason| InventoryError::single(BUILDER_FILE.into(), line, reason);
        let queue = self
            .make_queue(id, number.unwrap_or(""), name, region, anonymous)
            .map_err(fail)?;
        let origin = Origin {
            file: BUILDER_FILE.into(),
            line,
        };
        self.insert_queue(queue, origin).map_err(fail)?;
        Ok(self)
    }

    /// Claims a number written in E.164 or in the national form of `region`;
    /// the reason it is not a number otherwise.
    pub fn claim_number(&mut self, number: &str, region: Region) -> Result<E164, String> {
        let e = parse_number(number, region)?;
        self.claimed.insert(e.key());
        Ok(e)
    }

    /// Releases a claimed number written as for [`claim_number`](Self::claim_number):
    /// the number and whether it was claimed.
    pub fn release_number(&mut self, number: &str, region: Region) -> Result<(E164, bool), String> {
        let e = parse_number(number, region)?;
        Ok((e, self.release(e)))
    }

    /// Ids of the queues presenting `number`, sorted.
    pub fn queues_using(&self, number: E164) -> Vec<Arc<str>> {
        let mut ids: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|(q, _)| q.number == Some(number))
            .map(|(q, _)| q.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The number of queue `id` when it is not claimed (which would make
    /// [`build`](Self::build) fail).
    pub fn unclaimed_number_of(&self, id: &str) -> Option<E164> {
        let (q, _) = self.queues.get(id)?;
        q.number.filter(|n| !self.claimed.contains(&n.key()))
    }

    /// Adds or replaces a queue that is already checked (an [`Edit`]).
    pub(crate) fn put_queue(&mut self, queue: Queue) {
        let origin = Origin {
            file: BUILDER_FILE.into(),
            line: 0,
        };
        self.queues.insert(queue.id.clone(), (queue, origin));
    }

    /// Claims a number that is already checked; whether it was new.
    pub(crate) fn claim(&mut self, number: E164) -> bool {
        self.claimed.insert(number.key())
    }

    /// Releases a number (and its attestation); whether it was claimed.
    pub(crate) fn release(&mut self, number: E164) -> bool {
        self.attest.remove(&number.key());
        self.claimed.remove(&number.key())
    }

    /// The queue `id` as added so far (to describe an edit after making it).
    pub fn queue(&self, id: &str) -> Option<&Queue> {
        self.queues.get(id).map(|(q, _)| q)
    }

    /// Drops a queue; whether there was one.
    pub fn remove_queue(&mut self, id: &str) -> bool {
        self.queues.remove(id).is_some()
    }

    /// Checks queue numbers against the claimed set and returns the inventory,
    /// or every error found so far.
    pub fn build(mut self) -> Result<Inventory, InventoryError> {
        for (queue, origin) in self.queues.values() {
            if let Some(n) = &queue.number {
                if !self.claimed.contains(&n.key()) {
                    self.errors.push(LineError {
                        file: origin.file.to_string(),
                        line: origin.line,
                        reason: format!(
                            "queue `{}`: caller_id_number {n} is not a claimed number (add it to the numbers file)",
                            queue.id
                        ),
                    });
                }
            }
        }
        if !self.errors.is_empty() {
            self.errors
                .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(InventoryError {
                lines: self.errors,
                warnings: self.warnings,
            });
        }
        Ok(Inventory {
            queues: self.queues.into_iter().map(|(k, (q, _))| (k, q)).collect(),
            claimed: self.claimed,
            warnings: self.warnings,
            attest: self.attest,
        })
    }

    fn error(&mut self, file: &Arc<str>, line: u64, reason: String) {
        self.errors.push(LineError {
            file: file.to_string(),
            line,
            reason,
        });
    }

    fn warn(&mut self, file: &Arc<str>, line: u64, reason: String) {
        self.warnings.push(LineError {
            file: file.to_string(),
            line,
            reason,
        });
    }

    fn make_queue(
        &self,
        id: &str,
        number: &str,
        name: &str,
        region: Option<Region>,
        anonymous: bool,
    ) -> Result<Queue, String> {
        let id = id.trim();
        if id.is_empty() {
            return Err("empty queue_id".into());
        }
        if let Some(c) = id.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "queue_id {id:?} contains {c:?} (no spaces or control characters)"
            ));
        }
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(format!(
                "caller_id_name {name:?} contains control character {c:?} (it would corrupt the From header)"
            ));
        }
        let region = region.unwrap_or(self.default_region);
        let number = number.trim();
        let number = if number.is_empty() {
            None
        } else {
            Some(parse_number(number, region)?)
        };
        Ok(Queue {
            id: id.into(),
            number,
            name: name.into(),
            region,
            anonymous,
        })
    }

    fn insert_queue(&mut self, queue: Queue, origin: Origin) -> Result<(), String> {
        if let Some((_, first)) = self.queues.get(&queue.id) {
            return Err(format!(
                "duplicate queue_id `{}` (first defined at {}:{})",
                queue.id, first.file, first.line
            ));
        }
        self.queues.insert(queue.id.clone(), (queue, origin));
        Ok(())
    }
}

/// Reads a number as written in the inventory: E.164 or national form.
fn parse_number(s: &str, region: Region) -> Result<E164, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty number".into());
    }
    normalize(s, region).ok_or_else(|| {
        if s.starts_with('+') {
            format!("{s:?} is not a valid E.164 number")
        } else {
            format!("{s:?} is not a valid phone number for region {region}")
        }
    })
}

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    /// 1-based line in the file (the header is line 1); 0 when the problem is
    /// the file as a whole (cannot be opened).
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

/// A refused load: every bad line of every file, so an operator fixes them
/// all in one go instead of one per reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InventoryError {
    pub lines: Vec<LineError>,
    /// Warnings of the refused load (not part of the display), so that
    /// `check-config` shows everything at once.
    pub warnings: Vec<LineError>,
}

impl InventoryError {
    fn single(file: String, line: u64, reason: String) -> InventoryError {
        InventoryError {
            lines: vec![LineError { file, line, reason }],
            warnings: Vec::new(),
        }
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{line}")?;
        }
        Ok(())
    }
}

/// The inventory in force. Reads are lock-free (an atomic pointer load);
/// replacing it is atomic, and a call holding a snapshot keeps the old
/// inventory alive until it is done.
#[derive(Debug)]
pub struct InventoryHandle {
    current: ArcSwap<Inventory>,
}

impl InventoryHandle {
    pub fn new(inventory: Inventory) -> InventoryHandle {
        InventoryHandle {
            current: ArcSwap::from_pointee(inventory),
        }
    }

    /// An owned reference, for holding across awaits or long operations.
    pub fn snapshot(&self) -> Arc<Inventory> {
        self.current.load_full()
    }

    /// A cheaper borrowed view for one decision on the hot path (no reference
    /// count traffic in the common case).
    pub fn current(&self) -> Guard<Arc<Inventory>> {
        self.current.load()
    }

    pub fn replace(&self, inventory: Inventory) {
        self.current.store(Arc::new(inventory));
    }

    /// Loads the files and swaps the result in; on any error the inventory in
    /// force is kept. Returns what the new inventory holds.
    pub fn reload(
        &self,
        queues: &Path,
        numbers: &Path,
        default_region: Region,
    ) -> Result<Counts, InventoryError> {
        let inventory = Inventory::load(queues, numbers, default_region)?;
        let counts = inventory.counts();
        self.replace(inventory);
        Ok(counts)
    }
}
