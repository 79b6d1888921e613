//! Fuzz target `jpeg_reduced`: the body is `inferq_vision::fuzzing::jpeg_reduced`,
//! shared with the corpus-replay unit test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    inferq_vision::fuzzing::jpeg_reduced(data);
});
