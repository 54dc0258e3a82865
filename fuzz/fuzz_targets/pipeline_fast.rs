//! cargo-fuzz entry point: the target itself is `backbone_fuzz::targets::pipeline_fast`, so that
//! `cargo test` can replay seeds and regressions through the same code (fuzz/tests/replay.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backbone_fuzz::targets::pipeline_fast::run(data));
