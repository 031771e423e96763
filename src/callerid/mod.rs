//! Caller-ID decision and identity rendering.
