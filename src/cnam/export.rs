//! `cidgate cnam export`: the list an operator hands to a CNAM provider.
//!
//! One row per claimed number that a queue presents as its caller-ID number,
//! with the queue's name and that name shaped for CNAM:
//! `number,name,cnam_name,eligible,reason`. A CNAM database holds one name
//! per number, so a number that queues present under different (shaped)
//! names is listed once per name and marked not eligible until the names
//! agree.

use std::collections::BTreeMap;
use std::io::Write;

use super::{eligibility, shape, Eligibility};
use crate::inventory::{Inventory, E164};

/// One line of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub number: E164,
    pub name: String,
    pub cnam_name: String,
    pub eligibility: Eligibility,
}

/// The rows for `inv`, sorted by number then name.
pub fn rows(inv: &Inventory) -> Vec<Row> {
    // number → name → the queues presenting it under that name.
    let mut by_number: BTreeMap<&str, (E164, BTreeMap<&str, Vec<&str>>)> = BTreeMap::new();
    for q in inv.queues() {
        if let Some(n) = &q.number {
            let entry = by_number
                .entry(n.as_str())
                .or_insert_with(|| (*n, BTreeMap::new()));
            entry.1.entry(&q.name).or_default().push(&q.id);
        }
    }
    let mut out = Vec::new();
    for (number, names) in by_number.into_values() {
        let region = eligibility(&number);
        let shaped: Vec<(String, String)> =
            names.keys().map(|n| (n.to_string(), shape(n))).collect();
        let distinct = {
            let mut s: Vec<&str> = shaped.iter().map(|(_, c)| c.as_str()).collect();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        for (name, cnam_name) in shaped {
            let eligibility = if distinct > 1 && region.is_eligible() {
                let mut queues: Vec<&str> = names.values().flatten().copied().collect();
                queues.sort_unstable();
                Eligibility::NotEligible(format!(
                    "presented under {distinct} different names (queues {}); CNAM holds one name per number",
                    queues.join(", ")
                ))
            } else {
                region.clone()
            };
            out.push(Row {
                number,
                name,
                cnam_name,
                eligibility,
            });
        }
    }
    out
}

/// Writes the CSV (header row first, RFC 4180 quoting).
pub fn write_csv(inv: &Inventory, out: impl Write) -> csv::Result<usize> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["number", "name", "cnam_name", "eligible", "reason"])?;
    let rows = rows(inv);
    for r in &rows {
        w.write_record([
            r.number.as_str(),
            &r.name,
            &r.cnam_name,
            if r.eligibility.is_eligible() {
                "true"
            } else {
                "false"
            },
            r.eligibility.reason(),
        ])?;
    }
    w.flush()?;
    Ok(rows.len())
}
