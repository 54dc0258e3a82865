//! The control path: what the workers punt (ARP now; ICMP and tunnel probes later).

pub mod appliance;
pub mod arp;
pub mod audit;
#[cfg(feature = "dpdk")]
pub mod metrics;
pub mod pacer;
pub mod progress;
pub mod server;
pub mod stall;
pub mod state;
pub mod telemetry;
