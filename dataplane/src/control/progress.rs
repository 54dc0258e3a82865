//! What each worker tells the control thread: how far it got, and its counters.

use crate::pipeline::{Counters, PuntReason};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shared between a worker and whoever watches it: what the worker reports (written only
/// by the worker), and how it polls (set before it starts).
#[derive(Debug, Default)]
pub struct WorkerProgress {
    /// How the worker polls its queues; read once when it starts.
    pub poll: Poll,
    /// What the worker's polling did: polls, polls that received, sleeps (copied now
    /// and then, and before every sleep).
    pub polling: PollCounters,
    /// Where `ctl trace` and `ctl capture` see the worker's packets (armed by the control
    /// side, off otherwise).
    pub tap: crate::tap::Tap,
    /// Milliseconds since `epoch` when the worker last received a packet. The worker reads
    /// the clock every 64 polls while it receives (this may lag by that much then), and
    /// at its first poll that receives nothing (exact to within that poll once it stops).
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
    /// A recent copy of what the worker did with ARP and Neighbor Discovery.
    pub neighbors: NeighborCounters,
}

/// What a worker did with ARP and Neighbor Discovery (copied with the host counters): the
/// requests and solicitations it answered, the ND messages it found invalid, and the
/// neighbours it handed to the control thread (or could not: its queue was full).
#[derive(Debug, Default)]
pub struct NeighborCounters {
    pub arp_replies: AtomicU64,
    pub arp_learned: AtomicU64,
    pub arp_learn_dropped: AtomicU64,
    pub nd_replies: AtomicU64,
    pub nd_invalid: AtomicU64,
    pub nd_heard: AtomicU64,
    pub nd_heard_dropped: AtomicU64,
}

impl NeighborCounters {
    /// Every counter, by name (the names of `backbone run --stats`).
    pub fn named(&self) -> [(&'static str, u64); 7] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("arp_replies", n(&self.arp_replies)),
            ("arp_learned", n(&self.arp_learned)),
            ("arp_learn_dropped", n(&self.arp_learn_dropped)),
            ("nd_replies", n(&self.nd_replies)),
            ("nd_invalid", n(&self.nd_invalid)),
            ("nd_heard", n(&self.nd_heard)),
            ("nd_heard_dropped", n(&self.nd_heard_dropped)),
        ]
    }

    /// Store the worker's counts, in the order of [`Self::named`] (one writer: plain
    /// stores).
    pub fn store_all(&self, values: [u64; 7]) {
        for (to, v) in [
            &self.arp_replies,
            &self.arp_learned,
            &self.arp_learn_dropped,
            &self.nd_replies,
            &self.nd_invalid,
            &self.nd_heard,
            &self.nd_heard_dropped,
        ]
        .into_iter()
        .zip(values)
        {
            to.store(v, Ordering::Relaxed);
        }
    }
}

impl WorkerProgress {
    /// Copy the worker's `counters` into `slot` (this `counters`, locked by the worker),
    /// number the copy, and note the generation the worker has reached: stored at the top
    /// of this poll, before any of its bursts, so every packet counted later is processed
    /// under that generation or a newer one.
    pub fn copy_counters(&self, slot: &mut Counters, counters: &mut Counters) {
        counters.publish_into(slot);
        // One writer (the worker): plain loads and stores, no read-modify-write.
        self.counters_generation
            .store(self.generation.load(Ordering::Relaxed), Ordering::Relaxed);
        self.counters_copies.store(
            self.counters_copies.load(Ordering::Relaxed) + 1,
            Ordering::Relaxed,
        );
    }
}

/// How a worker polls its RX queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Poll without pause, whatever arrives: the worker's core is always busy (for
    /// benchmarks, and the lowest latency when traffic is sparse).
    Busy,
    /// Poll without pause while packets come; after [`Poll::IDLE_POLLS`] polls in a row
    /// that found every queue empty, sleep between polls, 1 us at first, doubling up to
    /// `idle_sleep_max_us`, until a poll receives again. No clock is read: an idle
    /// spell is counted in empty polls.
    Adaptive { idle_sleep_max_us: u32 },
}

impl Poll {
    /// Empty polls in a row before an adaptive worker starts to sleep (a few tens of
    /// microseconds of polling on most devices: a gap between bursts never reaches it).
    pub const IDLE_POLLS: u32 = 1024;

    /// The worker setting of a validated configuration.
    pub fn of(c: &pipeline_config::PollConfig) -> Poll {
        match c.mode {
            pipeline_config::PollMode::Busy => Poll::Busy,
            pipeline_config::PollMode::Adaptive => Poll::Adaptive {
                idle_sleep_max_us: c.idle_sleep_max_us,
            },
        }
    }
}

impl Default for Poll {
    fn default() -> Self {
        Poll::of(&pipeline_config::PollConfig::default())
    }
}

/// What a worker's polling did, since it started.
#[derive(Debug, Default)]
pub struct PollCounters {
    /// Polls: rounds over all of the worker's RX queues.
    pub polls: AtomicU64,
    /// Polls that received at least one packet. `busy_polls / polls` is the worker's busy
    /// share by polls.
    pub busy_polls: AtomicU64,
    /// Sleeps of an idle adaptive worker.
    pub idle_sleeps: AtomicU64,
    /// Microseconds of sleep asked for (Linux's timer slack adds up to 50 us to each).
    pub idle_sleep_us: AtomicU64,
}

impl PollCounters {
    /// Store a worker's counts (one writer: plain stores).
    pub fn store(&self, polls: u64, busy_polls: u64, idle_sleeps: u64, idle_sleep_us: u64) {
        self.polls.store(polls, Ordering::Relaxed);
        self.busy_polls.store(busy_polls, Ordering::Relaxed);
        self.idle_sleeps.store(idle_sleeps, Ordering::Relaxed);
        self.idle_sleep_us.store(idle_sleep_us, Ordering::Relaxed);
    }

    /// `(polls, busy_polls, idle_sleeps, idle_sleep_us)`.
    pub fn load(&self) -> (u64, u64, u64, u64) {
        (
            self.polls.load(Ordering::Relaxed),
            self.busy_polls.load(Ordering::Relaxed),
            self.idle_sleeps.load(Ordering::Relaxed),
            self.idle_sleep_us.load(Ordering::Relaxed),
        )
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
