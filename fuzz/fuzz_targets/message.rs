//! Fuzz target `message`: the body is `inferq_vision::fuzzing::message`, shared with
//! the corpus-replay unit tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferq_vision::fuzzing::message(data));
