//! Benchmarks only: see benches/sign.rs.
