//! Raw bindings to the system DPDK, generated at build time. No safe API lives here: the
//! dataplane's `dpdk` module is the one safe layer over these functions.
//!
//! DPDK's `static inline` functions (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, ...) are
//! reached through generated C wrappers (linked as `NAME__extern`, called by their own names).
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]
#![allow(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    improper_ctypes,
    missing_debug_implementations
)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
