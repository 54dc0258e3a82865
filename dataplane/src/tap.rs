//! The tap: how `ctl trace` and `ctl capture` see packets on a running worker.
//!
//! Each worker has one [`Tap`], shared with the control side. Off (the session number is
//! 0), it costs the worker one load and one predictable branch per poll. The control side
//! arms it for a session: a filter, a budget of packets, and a pool of records it
//! allocated for the session ([`Tap::arm`]). While armed, the worker runs each burst
//! through the traced pipeline: before it, it takes a record from the pool per packet and
//! copies the frame as received; after it, it keeps the records of the packets that match
//! the filter (with what each stage decided, and the frame as sent) and hands them over
//! on a bounded queue; the others go back to the pool. It never allocates, frees, locks or
//! waits: when the pool runs dry (the control side fell behind) a matching packet goes
//! unrecorded and is counted in [`Tap::lost`]. The control side drains the queue, gives the
//! records back, disarms, and frees the pool.

use crate::pipeline::PacketTrace;
use crate::tables::{PortIndex, TunnelId};
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes of a frame a record keeps (a frame in one default mbuf fits, encapsulation
/// included; longer ones are cut, their length kept).
pub const SNAP: usize = 2048;
/// Records the control side gives each worker for a session.
pub const POOL: usize = 128;
/// Room in each queue: the pool, and records still in a worker's hands from an earlier
/// session, always fit.
const QUEUE: usize = 4 * POOL;
/// "Any" in a filter's atomics.
const ANY: u32 = u32::MAX;

/// A frame as a record keeps it.
#[derive(Clone)]
pub struct Frame {
    /// The frame's whole length (0: no frame).
    pub len: u32,
    data: [u8; SNAP],
}

impl Frame {
    /// No frame.
    pub const EMPTY: Frame = Frame {
        len: 0,
        data: [0; SNAP],
    };

    /// Keep `bytes` (at most [`SNAP`] of them).
    #[inline]
    pub fn set(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(SNAP);
        self.data[..n].copy_from_slice(&bytes[..n]);
        self.len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    }

    /// The bytes kept.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.len as usize).min(SNAP)]
    }
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Frame({} bytes)", self.len)
    }
}

/// One packet seen by a worker while its tap was armed.
#[derive(Debug, Clone)]
pub struct TapRecord {
    /// The session that armed the tap.
    pub session: u64,
    pub worker: u16,
    /// When its burst was processed: nanoseconds on the worker's monotonic clock
    /// ([`monotonic_ns`]), one reading per burst.
    pub time_ns: u64,
    /// The snapshot generation it was processed under.
    pub generation: u64,
    /// What each stage decided.
    pub trace: PacketTrace,
    /// The frame as received.
    pub rx: Frame,
    /// The frame as sent (`len` 0: not sent by the pipeline).
    pub tx: Frame,
}

impl TapRecord {
    fn boxed() -> Box<TapRecord> {
        Box::new(TapRecord {
            session: 0,
            worker: 0,
            time_ns: 0,
            generation: 0,
            trace: PacketTrace::default(),
            rx: Frame::EMPTY,
            tx: Frame::EMPTY,
        })
    }
}

/// Which packets a session wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Received on this port or sent out of it.
    pub port: Option<PortIndex>,
    /// Came through this tunnel (once the tunnel lookup found it), or was sent into it.
    pub tunnel: Option<TunnelId>,
}

impl Filter {
    /// Whether the packet `t` describes, sent out of `tx_port` if at all, matches.
    #[inline]
    pub fn matches(&self, t: &PacketTrace, tx_port: Option<PortIndex>) -> bool {
        self.port
            .map_or(true, |p| t.rx_port == p || tx_port == Some(p))
            && self.tunnel.map_or(true, |id| {
                t.tunnel == Some(id) || t.egress_tunnel == Some(id)
            })
    }
}

/// One worker's tap, shared with the control side.
pub struct Tap {
    /// 0: off; else the armed session.
    session: AtomicU64,
    /// The session's filter and budget, written before `session` (Release) and read after
    /// it (Acquire).
    port: AtomicU32,
    tunnel: AtomicU32,
    budget: AtomicU32,
    /// Records for the control side.
    full: ArrayQueue<Box<TapRecord>>,
    /// Records back from it (the pool).
    free: ArrayQueue<Box<TapRecord>>,
    /// Matching packets left unrecorded: the pool was empty.
    lost: AtomicU64,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            session: AtomicU64::new(0),
            port: AtomicU32::new(ANY),
            tunnel: AtomicU32::new(ANY),
            budget: AtomicU32::new(0),
            full: ArrayQueue::new(QUEUE),
            free: ArrayQueue::new(QUEUE),
            lost: AtomicU64::new(0),
        }
    }
}

impl core::fmt::Debug for Tap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tap")
            .field("session", &self.session.load(Ordering::Relaxed))
            .field("full", &self.full.len())
            .field("free", &self.free.len())
            .finish()
    }
}

impl Tap {
    // The control side.

    /// Arm for `session` (not 0): at most `budget` packets matching `filter`, into a
    /// fresh pool of [`POOL`] records.
    pub fn arm(&self, session: u64, filter: Filter, budget: u32) {
        self.session.store(0, Ordering::Release);
        self.release();
        for _ in 0..POOL {
            let _ = self.free.push(TapRecord::boxed());
        }
        self.port
            .store(filter.port.map_or(ANY, u32::from), Ordering::Relaxed);
        self.tunnel
            .store(filter.tunnel.map_or(ANY, |t| t.0), Ordering::Relaxed);
        self.budget.store(budget, Ordering::Relaxed);
        self.lost.store(0, Ordering::Relaxed);
        self.session.store(session, Ordering::Release);
    }

    /// Stop recording (the worker notices at its next poll).
    pub fn disarm(&self) {
        self.session.store(0, Ordering::Release);
    }

    /// Free the records in the queues (after [`Tap::disarm`]; records a worker still
    /// holds come back later and wait for the next session's [`Tap::arm`]).
    pub fn release(&self) {
        while self.full.pop().is_some() {}
        while self.free.pop().is_some() {}
    }

    /// The next record a worker handed over.
    pub fn take(&self) -> Option<Box<TapRecord>> {
        self.full.pop()
    }

    /// Give a record back to the pool.
    pub fn give_back(&self, r: Box<TapRecord>) {
        let _ = self.free.push(r);
    }

    /// Matching packets the worker could not record this session.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    // The worker.

    /// The armed session, 0 when off.
    #[inline(always)]
    pub fn armed(&self) -> u64 {
        self.session.load(Ordering::Acquire)
    }

    /// The session's settings: filter and budget.
    pub fn settings(&self) -> (Filter, u32) {
        let port = self.port.load(Ordering::Relaxed);
        let tunnel = self.tunnel.load(Ordering::Relaxed);
        (
            Filter {
                port: (port != ANY).then(|| PortIndex::try_from(port).unwrap_or(PortIndex::MAX)),
                tunnel: (tunnel != ANY).then_some(TunnelId(tunnel)),
            },
            self.budget.load(Ordering::Relaxed),
        )
    }

    /// A record from the pool.
    #[inline]
    pub fn record(&self) -> Option<Box<TapRecord>> {
        self.free.pop()
    }

    /// Hand a filled record over (or, when `keep` is false, give it back to the pool).
    /// The queues have room for every record of a session: nothing is dropped here.
    #[inline]
    pub fn hand_over(&self, r: Box<TapRecord>, keep: bool) {
        let r = if keep {
            match self.full.push(r) {
                Ok(()) => return,
                Err(r) => r,
            }
        } else {
            r
        };
        // Never full (see `QUEUE`): were it, the record would be freed here.
        let _ = self.free.push(r);
    }

    /// Count a matching packet left unrecorded.
    #[inline]
    pub fn count_lost(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// Nanoseconds since the first call, on a monotonic clock: the time the workers stamp
/// bursts with (the ICMP rate limit's clock too), comparable across threads.
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
