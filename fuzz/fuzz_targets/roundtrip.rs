//! parse → write → parse must be stable for every input that parses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cidgate::fuzzing::roundtrip(data));
