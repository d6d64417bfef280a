//! libFuzzer entry point; the body is `harness::rules` (fuzz/harness.rs), which
//! tests/fuzz_corpus.rs replays on stable.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::rules(data));
