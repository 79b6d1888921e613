//! Fuzz target `message`: the body is `inferq_shared::fuzzing::message`, shared with
//! the corpus-replay unit tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferq_shared::fuzzing::message(data));
