//! The backbone edge-router dataplane.
//!
//! Everything here is pure Rust over the [`buffer::PacketBuf`] trait, except the [`dpdk`]
//! module: the one safe layer over DPDK, and with its cache hints ([`prefetch`], kept in
//! the same folder) the only place in the crate with `unsafe`.

pub mod buffer;
pub mod config;
pub mod control;
pub mod cpu;
#[cfg(feature = "dpdk")]
#[allow(unsafe_code)]
pub mod dpdk;
pub mod lpm;
pub mod pipeline;
/// Cache hints for the packet path ([`prefetch::prefetch`]): it lives with the DPDK layer,
/// the home of the crate's `unsafe`, but needs no DPDK.
#[path = "dpdk/prefetch.rs"]
#[allow(unsafe_code)]
pub mod prefetch;
pub mod tables;
pub mod tap;
pub mod wire;
#[cfg(feature = "dpdk")]
pub mod worker;
