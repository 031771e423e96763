//! One change to the running inventory (an admin upsert or delete) as a
//! value: checked when it is made, applied like a load, and written to the
//! shared store's log in a form every instance reads back identically.

use std::sync::Arc;

use super::records::parse_queue_row;
use super::{parse_number, queue_row, Inventory, InventoryBuilder, InventoryError};
use super::{Queue, Region, E164};

/// A checked edit: numbers are E.164 and a queue carries its region, so
/// applying it does not depend on the applying instance's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Adds the queue or replaces the one with the same id.
    PutQueue(Queue),
    DeleteQueue(Arc<str>),
    ClaimNumber(E164),
    ReleaseNumber(E164),
}

/// Why an edit was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Deleting or releasing something that is not there.
    #[error("not in the inventory")]
    NotFound,
    /// The result would not load (a queue whose number is not claimed).
    #[error("{0}")]
    Conflict(InventoryError),
}

/// An edit as the fields of a log entry in the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEdit {
    /// Which kind of edit (`put_queue`, `claim_number`, ...).
    pub op: &'static str,
    /// The queue id or the number.
    pub key: String,
    /// A queue's CSV row; empty for the others.
    pub row: String,
}

impl Edit {
    /// `PUT /inventory/queues/{id}`: `row` is
    /// `caller_id_number,caller_id_name,region,anonymous` as in queues.csv.
    pub fn put_queue(id: &str, row: &str, default_region: Region) -> Result<Edit, String> {
        parse_queue_row(id, row, default_region).map(Edit::PutQueue)
    }

    pub fn delete_queue(id: &str) -> Edit {
        Edit::DeleteQueue(id.trim().into())
    }

    /// A number in E.164 or national form in `default_region`.
    pub fn claim_number(number: &str, default_region: Region) -> Result<Edit, String> {
        parse_number(number, default_region).map(Edit::ClaimNumber)
    }

    pub fn release_number(number: &str, default_region: Region) -> Result<Edit, String> {
        parse_number(number, default_region).map(Edit::ReleaseNumber)
    }

    /// Applies the edit to a builder; false when it deletes or releases
    /// something absent (nothing changed).
    pub(crate) fn apply_to(&self, b: &mut InventoryBuilder) -> bool {
        match self {
            Edit::PutQueue(q) => {
                b.put_queue(q.clone());
                true
            }
            Edit::DeleteQueue(id) => b.remove_queue(id),
            Edit::ClaimNumber(n) => {
                b.claim(*n);
                true
            }
            Edit::ReleaseNumber(n) => b.release(*n),
        }
    }

    /// The inventory with this edit, checked as a whole like a load (so
    /// releasing a number a queue still uses is a conflict).
    pub fn apply(&self, inventory: &Inventory) -> Result<Inventory, EditError> {
        // The region only matters for text input; edits carry checked values.
        let mut b = inventory.edit(Region::US);
        if !self.apply_to(&mut b) {
            return Err(EditError::NotFound);
        }
        b.build().map_err(EditError::Conflict)
    }

    /// Applies edits in order and checks the result once: how an instance
    /// replays edits another instance already checked.
    pub fn apply_all<'a>(
        edits: impl IntoIterator<Item = &'a Edit>,
        inventory: &Inventory,
    ) -> Result<Inventory, InventoryError> {
        let mut b = inventory.edit(Region::US);
        for e in edits {
            e.apply_to(&mut b);
        }
        b.build()
    }

    /// The edit as the fields of a log entry.
    pub fn encode(&self) -> EncodedEdit {
        let (op, key, row) = match self {
            Edit::PutQueue(q) => ("put_queue", q.id.to_string(), queue_row(q)),
            Edit::DeleteQueue(id) => ("delete_queue", id.to_string(), String::new()),
            // A claim keeps an attestation the number already has; a new
            // number gets the configured default (the empty row).
            Edit::ClaimNumber(n) => ("claim_number", n.to_string(), String::new()),
            Edit::ReleaseNumber(n) => ("release_number", n.to_string(), String::new()),
        };
        EncodedEdit { op, key, row }
    }

    /// Reads back what [`encode`](Self::encode) wrote, checking it again (the
    /// store is shared, so its content is input like any other). The region
    /// is only used for hand-written rows that leave theirs out, as in a load.
    pub fn decode(op: &str, key: &str, row: &str, region: Region) -> Result<Edit, String> {
        match op {
            "put_queue" => Edit::put_queue(key, row, region),
            "delete_queue" => Ok(Edit::delete_queue(key)),
            "claim_number" => Edit::claim_number(key, region),
            "release_number" => Edit::release_number(key, region),
            other => Err(format!("unknown edit operation {other:?}")),
        }
    }

    /// Short description for logs and the log entry's readers.
    pub fn describe(&self) -> String {
        let EncodedEdit { op, key, .. } = self.encode();
        format!("{op} {key}")
    }
}
