//! cidgate: an outbound caller-ID gateway.
//!
//! The crate is split the way quinn-proto splits QUIC: everything that decides
//! what to send (`sip`, `callerid`, `inventory`, `proxy`) is plain code that takes
//! bytes, time and an inventory snapshot and returns messages to transmit. The
//! tokio shells in `transport` and `server` only move bytes and fire timers, so the
//! protocol logic can be tested with virtual time and no sockets.
//!
//! Around them: `config` (TOML, checked), `admin` (HTTP API), `reload` (SIGHUP
//! and file-change inventory reload), `telemetry` (logs and metrics), `demo`
//! (the self-contained demonstration) and `fuzzing` (properties shared by the
//! fuzz targets and the test suite).

#![warn(clippy::too_many_lines)]

pub mod admin;
pub mod callerid;
pub mod carrier_board;
pub mod cnam;
pub mod config;
pub mod demo;
pub mod fuzzing;
pub mod inventory;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod shell;
pub mod sip;
pub mod stir;
pub mod store;
pub mod telemetry;
pub mod transport;
