//! The backbone edge-router dataplane.
//!
//! Everything here is pure Rust over the [`buffer::PacketBuf`] trait, except the [`dpdk`]
//! module: the one safe layer over DPDK, and the only place in the crate with `unsafe`.

pub mod buffer;
pub mod config;
pub mod control;
#[cfg(feature = "dpdk")]
#[allow(unsafe_code)]
pub mod dpdk;
pub mod lpm;
pub mod pipeline;
pub mod tables;
pub mod wire;
#[cfg(feature = "dpdk")]
pub mod worker;
