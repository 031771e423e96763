//! Caller-ID decision and identity rendering.

mod explain;
pub mod policy;
pub mod render;

pub use explain::{explain, explain_reject};
pub use policy::{Decision, DynamicFormat, Outcome, RejectReason, Resolver};
pub use render::PaiForm;
