//! Fuzz target `decode`: the body is `inferq_vision::fuzzing::decode`, shared with
//! the corpus-replay unit tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferq_vision::fuzzing::decode(data));
