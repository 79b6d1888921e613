//! Fuzz target `events`: the body is `inferq_api::fuzzing::events`, shared with
//! the corpus-replay unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferq_api::fuzzing::events(data);
});
