//! The control path: what the workers punt (ARP now; ICMP and tunnel probes later).

pub mod arp;
pub mod pacer;
pub mod progress;
pub mod server;
pub mod stall;
pub mod state;
