//! Fuzz target `multipart`: the body is `inferq_api::fuzzing::multipart`, shared with
//! the corpus-replay unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferq_api::fuzzing::multipart(data);
});
