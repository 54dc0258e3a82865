//! The one safe layer over DPDK: EAL, mempools, ports and queues, `Mbuf`, lcores, and what
//! lets other processes look in: packet capture ([`Capture`]) and telemetry commands.
//!
//! Every `unsafe` block of the project outside the `dpdk-sys` crate lives in this module,
//! and each carries a `// SAFETY:` comment. Everything above it (wire views, tables, the
//! pipeline) is pure Rust over [`crate::buffer::PacketBuf`], which [`Mbuf`] implements.
//!
//! Ownership rules the types enforce:
//! - [`Eal`] is started once per process; pools, ports and queues borrow it, so none of them
//!   outlives EAL. EAL is cleaned up when the `Eal` drops, unless an mbuf is still out, in
//!   which case the memory is left mapped (a leak, never a use-after-free).
//! - An [`Mbuf`] owns one packet: it frees it on drop, is `Send` but not `Sync`, not `Clone`.
//!   Its bytes may be shared with other mbufs (indirect or external buffers); they are never
//!   written in place then: writes copy the packet into a fresh mbuf first.
//! - A [`Mempool`]'s ops are multi-producer/multi-consumer (single-producer or
//!   single-consumer ops are refused): mbufs are allocated and freed on any thread.
//! - A [`Burst`] owns up to [`BURST_MAX`] mbufs; `tx_burst` removes from it exactly what the
//!   NIC accepted and leaves the rest in it (retry or drop them: drop frees).
//! - A [`Port`] is `Send` but not `Sync`: its control calls come from the thread that owns
//!   it. Its queue handles go to the workers.
//! - [`launch_on_workers_with_main`] returns or unwinds only after every lcore it launched
//!   has returned: it sets the caller's stop flag and waits, on success, on a panic of the
//!   main lcore's function and on a launch that fails part-way.

mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
mod pdump;
mod port;
mod port_info;
mod reference_lpm;
mod reference_lpm6;
pub mod telemetry;

pub use eal::Eal;
pub use error::{DpdkError, Result};
pub use lcore::{current_lcore, launch_on_workers, launch_on_workers_with_main, LcoreId};
pub use mbuf::{Burst, Drain, Mbuf, BURST_MAX};
pub use mempool::Mempool;
pub use pdump::Capture;
pub use port::{LinkStatus, Port, PortConfig, PortId, PortStats, RxQueue, TxQueue};
pub use port_info::driver_name;
pub use reference_lpm::{
    FibLookup, FibNextHop, RteFib, RteLpm, RTE_LPM_LOOKUP_SUCCESS, RTE_LPM_MAX_NEXT_HOP,
};
pub use reference_lpm6::{Fib6Lookup, Fib6NextHop, RteFib6, RteLpm6, RTE_LPM6_MAX_NEXT_HOP};
