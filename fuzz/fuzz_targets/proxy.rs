//! Any input through the proxy core: no panic, and every request it sends
//! parses as SIP.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cidgate::fuzzing::through_proxy(data));
