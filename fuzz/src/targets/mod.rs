//! One module per fuzz target, each with `run(data)`; fuzz_targets/<name>.rs calls it.

pub mod config_parse;
pub mod control_request;
pub mod fpm_frames;
pub mod pipeline_burst;
pub mod pipeline_fast;
pub mod pipeline_outer6;
pub mod pipeline_packet;
pub mod wire_headers;

/// A target's entry point: panics on a broken invariant.
pub type Run = fn(&[u8]);

/// Every target by name, for the replay test.
pub const ALL: &[(&str, Run)] = &[
    ("wire_headers", wire_headers::run),
    ("pipeline_packet", pipeline_packet::run),
    ("pipeline_burst", pipeline_burst::run),
    ("pipeline_fast", pipeline_fast::run),
    ("pipeline_outer6", pipeline_outer6::run),
    ("config_parse", config_parse::run),
    ("control_request", control_request::run),
    ("fpm_frames", fpm_frames::run),
];
