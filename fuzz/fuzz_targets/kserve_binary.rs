//! Fuzz target `kserve_binary`: the body is `inferq_api::fuzzing::kserve_binary`, shared with
//! the corpus-replay unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferq_api::fuzzing::kserve_binary(data);
});
