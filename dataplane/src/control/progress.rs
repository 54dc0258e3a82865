//! What each worker tells the control thread: how far it got, and its counters.

use crate::pipeline::Counters;
use std::sync::atomic::AtomicU64;
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
    /// A recent copy of the worker's counters, for reading while it runs.
    pub counters: Mutex<Counters>,
}
