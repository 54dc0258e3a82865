//! The control path: the control thread (ARP, tables, the control API, metrics) and the
//! exception path to the host kernel.

pub mod appliance;
pub mod arp;
pub mod audit;
#[cfg(feature = "dpdk")]
pub mod exception;
#[cfg(not(loom))]
pub mod fpm;
pub mod frr;
pub mod health;
#[cfg(feature = "dpdk")]
pub mod metrics;
pub mod nd;
pub mod ndcache;
pub mod ondemand;
pub mod pacer;
#[cfg(not(loom))]
pub mod pmtu;
pub mod progress;
// Under `--cfg loom` the publisher's `Arc` is loom's, which the snapshot builder's is not:
// only the publication protocol itself is built for the model checker.
#[cfg(not(loom))]
pub mod server;
pub mod stall;
#[cfg(not(loom))]
pub mod state;
#[cfg(not(loom))]
pub mod telemetry;
#[cfg(not(loom))]
pub mod trace;
