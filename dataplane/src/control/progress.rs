//! What each worker tells the control thread: how far it got, and its counters.

use crate::pipeline::{Counters, PuntReason};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shared between a worker and whoever watches it; written only by the worker.
#[derive(Debug, Default)]
pub struct WorkerProgress {
    /// Milliseconds since `epoch` when the worker last received a packet.
    pub last_rx_ms: AtomicU64,
    /// Snapshot generation of the last burst.
    pub generation: AtomicU64,
    /// Total packets received.
    pub rx_packets: AtomicU64,
    /// A recent copy of the worker's counters, for reading while it runs (see
    /// [`WorkerProgress::copy_counters`]).
    pub counters: Mutex<Counters>,
    /// How many copies of `counters` the worker has made. Written with `counters` locked:
    /// read it so too, to know which copy `counters` holds.
    pub counters_copies: AtomicU64,
    /// The generation the worker had reached when it made the copy in `counters`: every
    /// packet it counted after that copy was processed under this generation or a newer
    /// one. Written with `counters` locked, like `counters_copies`.
    pub counters_generation: AtomicU64,
    /// A recent copy of what the worker handed to each port's TX queue, and what TX
    /// refused (by port id).
    pub tx: Mutex<PortTx>,
    /// A recent copy of what the worker handed to the exception path, and what it could
    /// not hand over (see the worker's report).
    pub host_queued: AtomicU64,
    pub host_queue_full: AtomicU64,
    pub punt_dropped: [AtomicU64; PuntReason::COUNT],
}

impl WorkerProgress {
    /// Copy the worker's `counters` into `slot` (this `counters`, locked by the worker),
    /// number the copy, and note the generation the worker has reached: stored at the top
    /// of this poll, before any of its bursts, so every packet counted later is processed
    /// under that generation or a newer one.
    pub fn copy_counters(&self, slot: &mut Counters, counters: &Counters) {
        slot.clone_from(counters);
        // One writer (the worker): plain loads and stores, no read-modify-write.
        self.counters_generation
            .store(self.generation.load(Ordering::Relaxed), Ordering::Relaxed);
        self.counters_copies.store(
            self.counters_copies.load(Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
    }
}

/// Per port id: packets a worker handed to TX, and packets TX refused (freed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortTx {
    pub sent: Vec<u64>,
    pub dropped: Vec<u64>,
}

/// What the control thread last read of one port (configuration order): the device's
/// counters and its link. For reading while the appliance runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortHealth {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_errors: u64,
    /// Dropped by the device: its RX queues were full.
    pub rx_missed: u64,
    /// The device had no mbuf to receive into.
    pub rx_no_mbuf: u64,
    pub tx_errors: u64,
    pub link_up: bool,
    /// Mbit/s as the driver reports it (0: unknown, as virtual devices say).
    pub link_speed_mbps: u32,
    pub link_full_duplex: bool,
    /// Link changes seen since start.
    pub link_changes: u64,
}

/// Every port's [`PortHealth`], written by the control thread a few times a second.
pub type PortsHealth = Mutex<Vec<PortHealth>>;
