//! The control path: what the workers punt (ARP now; ICMP and tunnel probes later).

pub mod arp;
