//! Signed caller identity: STIR/SHAKEN (RFC 8224, RFC 8225, RFC 8588) with
//! the display name as Rich Call Data (RFC 9795).
//!
//! `passport` (what is signed) and `pem_key`/`der` (reading the key) are plain
//! functions; `signer` turns claims into an `Identity` header value; `pool`
//! runs signatures on their own threads so the proxy core, which only asks
//! for a signature and carries on, never waits for one.

mod der;
pub mod passport;
mod pem_key;
pub mod pool;
pub mod signer;

pub use passport::{Attest, Claims, Destination, OrigId};
pub use pool::{Overloaded, SignJob, Signed, SigningPool};
pub use signer::{check_x5u, KeyError, SignError, Signer};

/// Seconds since the Unix epoch, for `iat`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
