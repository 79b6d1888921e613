//! Fuzz target `manifest`: the body is `inferq_vision::fuzzing::manifest`, shared with
//! the corpus-replay unit tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferq_vision::fuzzing::manifest(data));
