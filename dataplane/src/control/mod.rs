//! The control path: what the workers punt (ARP now; ICMP and tunnel probes later).

pub mod arp;
pub mod pacer;
pub mod progress;
// Under `--cfg loom` the publisher's `Arc` is loom's, which the snapshot builder's is not:
// only the publication protocol itself is built for the model checker.
#[cfg(not(loom))]
pub mod server;
pub mod stall;
#[cfg(not(loom))]
pub mod state;
