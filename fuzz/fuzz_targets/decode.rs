//! Fuzz target `decode`: the body is `inferq_shared::fuzzing::decode`, shared with
//! the corpus-replay unit tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| inferq_shared::fuzzing::decode(data));
