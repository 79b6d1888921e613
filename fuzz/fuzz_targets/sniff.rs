//! Fuzz target `sniff`: the body is `inferq_vision::fuzzing::sniff`, shared with
//! the corpus-replay unit tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferq_vision::fuzzing::sniff(data));
