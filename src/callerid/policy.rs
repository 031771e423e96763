//! The caller-ID decision of docs/behaviour.md §4: which number and name a
//! call presents, or why it must be refused.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::inventory::{normalize, parse_e164_strict, syntactic_e164, Inventory, Region, E164};

/// How a per-call number must be written to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DynamicFormat {
    /// Already E.164 (Amazon Connect's rule).
    #[default]
    Strict,
    /// National and international dialling forms are normalised with the
    /// queue's region first.
    Normalize,
}

/// Which number a call ended up with, and why (the metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// No per-call number: the queue's.
    Queue,
    /// The per-call number.
    Dynamic,
    /// The per-call number was not E.164: the queue's.
    FallbackNotE164,
    /// The per-call number is E.164 but not claimed: the queue's.
    FallbackUnclaimed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queue => "queue",
            Outcome::Dynamic => "dynamic",
            Outcome::FallbackNotE164 => "fallback_not_e164",
            Outcome::FallbackUnclaimed => "fallback_unclaimed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no caller ID may be shown; the call is refused (docs/behaviour.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    UnknownQueue,
    NoQueueNumber,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownQueue => "unknown_queue",
            RejectReason::NoQueueNumber => "no_queue_number",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity a call presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub number: E164,
    /// Display name; empty means none.
    pub name: Arc<str>,
    pub anonymous: bool,
}

/// Verdicts kept before the cache is emptied: bounds memory however many
/// distinct numbers callers send, while a busy queue's repeats stay cheap.
const CACHE_CAPACITY: usize = 65_536;

/// Longer per-call values are not numbers; they are refused without parsing.
const MAX_PER_CALL_LEN: usize = 64;

/// Decides caller IDs. One per worker: it owns a cache of number verdicts so
/// that the slow `phonenumber` parser runs at most once per distinct input.
#[derive(Debug)]
pub struct Resolver {
    mode: DynamicFormat,
    /// Region (`None` in strict mode, where the region plays no part) →
    /// trimmed input → E.164 if valid. Nested so a lookup needs no allocation.
    cache: HashMap<Option<Region>, HashMap<Box<str>, Option<E164>>>,
    cached: usize,
    /// `[callerid] cnam_names`: present the CNAM-shaped name for eligible
    /// numbers.
    cnam_names: bool,
    /// Number key → CNAM eligibility (libphonenumber's region lookup runs
    /// once per number).
    cnam_eligible: HashMap<u64, bool>,
    /// Queue name → its CNAM shape, shared so a call costs no allocation.
    cnam_shaped: HashMap<Arc<str>, Arc<str>>,
}

impl Resolver {
    pub fn new(mode: DynamicFormat) -> Resolver {
        Resolver {
            mode,
            cache: HashMap::new(),
            cached: 0,
            cnam_names: false,
            cnam_eligible: HashMap::new(),
            cnam_shaped: HashMap::new(),
        }
    }

    /// Turns `[callerid] cnam_names` on or off.
    pub fn with_cnam_names(mut self, on: bool) -> Resolver {
        self.cnam_names = on;
        self
    }

    pub fn mode(&self) -> DynamicFormat {
        self.mode
    }

    /// Steps 1-4 of docs/behaviour.md §4 for one call. `per_call` is the raw
    /// header value; surrounding whitespace is ignored and an empty value
    /// counts as absent.
    pub fn resolve(
        &mut self,
        inv: &Inventory,
        queue_id: &str,
        per_call: Option<&str>,
    ) -> Result<Decision, RejectReason> {
        let mut d = self.decide(inv, queue_id, per_call)?;
        if self.cnam_names && !d.name.is_empty() && self.cnam_eligible(&d.number) {
            d.name = self.cnam_shape(&d.name);
        }
        Ok(d)
    }

    fn cnam_eligible(&mut self, number: &E164) -> bool {
        if self.cnam_eligible.len() >= CACHE_CAPACITY {
            self.cnam_eligible.clear();
        }
        *self
            .cnam_eligible
            .entry(number.key())
            .or_insert_with(|| crate::cnam::eligibility(number).is_eligible())
    }

    fn cnam_shape(&mut self, name: &Arc<str>) -> Arc<str> {
        if let Some(s) = self.cnam_shaped.get(&**name) {
            return s.clone();
        }
        if self.cnam_shaped.len() >= CACHE_CAPACITY {
            self.cnam_shaped.clear();
        }
        let shaped: Arc<str> = crate::cnam::shape(name).into();
        self.cnam_shaped.insert(name.clone(), shaped.clone());
        shaped
    }

    fn decide(
        &mut self,
        inv: &Inventory,
        queue_id: &str,
        per_call: Option<&str>,
    ) -> Result<Decision, RejectReason> {
        let queue = inv
            .queue(queue_id.trim())
            .ok_or(RejectReason::UnknownQueue)?;
        let queue_number = queue.number.ok_or(RejectReason::NoQueueNumber)?;
        let decide = |outcome, number| Decision {
            outcome,
            number,
            name: queue.name.clone(),
            anonymous: queue.anonymous,
        };
        let per_call = per_call.map(str::trim).filter(|s| !s.is_empty());
        let Some(input) = per_call else {
            return Ok(decide(Outcome::Queue, queue_number));
        };
        // Claimed numbers were validated when they were claimed (a file load,
        // a push, an admin edit): a canonical claimed number needs no
        // parsing, whatever the mode.
        if let Some(e) = syntactic_e164(input).filter(|e| inv.is_claimed(e)) {
            return Ok(decide(Outcome::Dynamic, e));
        }
        let region = match self.mode {
            DynamicFormat::Strict => None,
            DynamicFormat::Normalize => Some(queue.region),
        };
        Ok(match self.verdict(region, input) {
            None => decide(Outcome::FallbackNotE164, queue_number),
            Some(e) if inv.is_claimed(&e) => decide(Outcome::Dynamic, e),
            Some(_) => decide(Outcome::FallbackUnclaimed, queue_number),
        })
    }

    /// The E.164 form of `input` if it is a valid number (as written, or
    /// after normalisation with `region`), remembered per input.
    fn verdict(&mut self, region: Option<Region>, input: &str) -> Option<E164> {
        if input.len() > MAX_PER_CALL_LEN {
            return None;
        }
        if let Some(v) = self.cache.get(&region).and_then(|m| m.get(input)) {
            return *v;
        }
        let v = match region {
            None => parse_e164_strict(input),
            Some(r) => normalize(input, r),
        };
        if self.cached >= CACHE_CAPACITY {
            self.cache.clear();
            self.cached = 0;
        }
        self.cache
            .entry(region)
            .or_default()
            .insert(input.into(), v);
        self.cached += 1;
        v
    }
}
