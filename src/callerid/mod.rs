//! Caller-ID decision and identity rendering.

pub mod policy;

pub use policy::{Decision, DynamicFormat, Outcome, RejectReason, Resolver};
