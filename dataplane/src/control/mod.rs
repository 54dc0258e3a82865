//! The control path: the control thread (ARP, tables, the control API, metrics) and the
//! exception path to the host kernel.

pub mod appliance;
pub mod arp;
pub mod audit;
#[cfg(feature = "dpdk")]
pub mod exception;
#[cfg(feature = "dpdk")]
pub mod metrics;
pub mod pacer;
pub mod progress;
pub mod server;
pub mod stall;
pub mod state;
pub mod telemetry;
