//! Fuzz target `jwt`: the body is `inferq_api::fuzzing::jwt`, shared with
//! the corpus-replay unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferq_api::fuzzing::jwt(data);
});
