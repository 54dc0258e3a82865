//! The per-lcore loop: receive a burst, load the snapshot once, run the pipeline, answer
//! ARP in place, buffer transmissions per port, send in bursts, free what TX refused.
//!
//! Nothing here is shared for writing with another worker: each worker owns its queues,
//! its TX buffers and its counters. The snapshot is read through the worker's own
//! [`Reader`]: at the top of every poll (the worker's quiescent point) one atomic load says
//! whether a newer snapshot was published; only then does the worker take it and report the
//! generation it reached. It never frees a snapshot: the control thread does.

use crate::control::arp::{self, ArpOutcome};
pub use crate::control::progress::WorkerProgress;
use crate::dpdk::{Burst, RxQueue, TxQueue, BURST_MAX};
use crate::pipeline::{Action, Counters, Pipeline, PuntReason};
use crate::tables::{PortIndex, Reader, Snapshot};
use crate::wire::EthernetAddress;
use core::net::Ipv4Addr;
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The queues one worker owns.
#[derive(Debug, Default)]
pub struct WorkerQueues<'p> {
    /// RX queues to poll, with their port.
    pub rx: Vec<(PortIndex, RxQueue<'p>)>,
    /// One TX queue per port this worker may send on, indexed by port.
    pub tx: Vec<Option<TxQueue<'p>>>,
}

/// What a worker counted, handed back when it stops.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub counters: Counters,
    /// Per port: packets handed to TX.
    pub tx_sent: Vec<u64>,
    /// Per port: packets TX refused (queue full), freed.
    pub tx_dropped: Vec<u64>,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Punted packets the control path could not take (freed).
    pub punt_dropped: u64,
    /// Neighbours learned and handed to the control thread.
    pub arp_learned: u64,
    /// Learned neighbours dropped because the control thread's queue was full.
    pub arp_learn_dropped: u64,
    /// Bursts processed (non-empty receives).
    pub bursts: u64,
    /// Snapshot generation seen on the last burst.
    pub generation: u64,
}

/// Neighbours learned from ARP that the snapshot wants and does not know (or knows
/// differently): the control thread installs them. Bounded: an ARP storm cannot grow it.
pub type LearnQueue = ArrayQueue<(PortIndex, Ipv4Addr, EthernetAddress)>;

/// Where tests reach into the worker loop. Every method does nothing by default, and
/// [`run`] uses [`NoHooks`]: the calls compile to nothing there.
pub trait WorkerHooks {
    /// Inside a burst: the pipeline has run on `snapshot`, nothing is sent yet. A test may
    /// block here to stall the worker while it holds `snapshot`.
    #[inline(always)]
    fn in_burst(&self, _worker: usize, _snapshot: &Snapshot) {}
}

/// The hooks of production: none.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl WorkerHooks for NoHooks {}

/// Run the worker loop until `stop` is set, then flush and report.
pub fn run(
    index: usize,
    queues: WorkerQueues<'_>,
    snapshots: Reader<Snapshot>,
    learned: &LearnQueue,
    stop: &AtomicBool,
    progress: &WorkerProgress,
    epoch: Instant,
) -> WorkerReport {
    run_with_hooks(
        index, queues, snapshots, learned, stop, progress, epoch, &NoHooks,
    )
}

/// [`run`], with test hooks.
#[allow(clippy::too_many_arguments)]
pub fn run_with_hooks<H: WorkerHooks>(
    index: usize,
    mut queues: WorkerQueues<'_>,
    mut snapshots: Reader<Snapshot>,
    learned: &LearnQueue,
    stop: &AtomicBool,
    progress: &WorkerProgress,
    epoch: Instant,
    hooks: &H,
) -> WorkerReport {
    let mut pipeline = Pipeline::new((index as u16).wrapping_mul(0x1000));
    let nports = queues.tx.len();
    let mut report = WorkerReport {
        tx_sent: vec![0; nports],
        tx_dropped: vec![0; nports],
        ..WorkerReport::default()
    };
    let mut pending: Vec<Burst> = (0..nports).map(|_| Burst::new()).collect();
    let mut actions = [Action::Drop(crate::pipeline::DropReason::NoRoute); BURST_MAX];
    let mut rx_total = 0u64;

    progress
        .generation
        .store(snapshots.generation(), Ordering::Relaxed);
    let mut iterations = 0u64;
    while !stop.load(Ordering::Relaxed) {
        iterations += 1;
        // The quiescent point, on every loop, so that an idle worker moves to (and reports)
        // the newest snapshot too.
        if snapshots.refresh() {
            progress
                .generation
                .store(snapshots.generation(), Ordering::Relaxed);
        }
        if iterations % 4096 == 0 {
            // Never wait for a reader: skip this round if one holds the lock.
            if let Ok(mut c) = progress.counters.try_lock() {
                c.clone_from(pipeline.counters());
            }
            if let Ok(mut t) = progress.tx.try_lock() {
                t.sent.clone_from(&report.tx_sent);
                t.dropped.clone_from(&report.tx_dropped);
            }
        }
        let mut received = false;
        for (port, rxq) in queues.rx.iter_mut() {
            let mut burst = Burst::new();
            let n = rxq.rx_burst(&mut burst);
            if n == 0 {
                continue;
            }
            received = true;
            rx_total += n as u64;
            report.bursts += 1;
            let snap = snapshots.get();
            pipeline.process(snap, *port, &mut burst[..], &mut actions[..n]);
            hooks.in_burst(index, snap);
            for (m, action) in burst.drain().zip(actions.iter()) {
                let mut m = m;
                let out = match *action {
                    Action::Transmit(out) => Some(out),
                    Action::Punt(PuntReason::Arp) => match snap.port(*port) {
                        Some(entry) => {
                            let outcome = arp::handle(&mut m, entry);
                            if let ArpOutcome::Replied { learned: (ip, mac) }
                            | ArpOutcome::Learned { learned: (ip, mac) } = outcome
                            {
                                if snap.wants_neighbor(*port, ip)
                                    && snap.neighbor(*port, ip) != Some(mac)
                                {
                                    if learned.push((*port, ip, mac)).is_ok() {
                                        report.arp_learned += 1;
                                    } else {
                                        report.arp_learn_dropped += 1;
                                    }
                                }
                            }
                            match outcome {
                                ArpOutcome::Replied { .. } => {
                                    report.arp_replies += 1;
                                    Some(*port)
                                }
                                _ => None,
                            }
                        }
                        None => None,
                    },
                    Action::Punt(_) => {
                        // No control path for local traffic yet.
                        report.punt_dropped += 1;
                        None
                    }
                    Action::Drop(_) => None,
                };
                let Some(out) = out else { continue };
                let slot = usize::from(out);
                let Some(buf) = pending.get_mut(slot) else {
                    report.counters.drops[crate::pipeline::DropReason::NoRoute as usize] += 1;
                    continue;
                };
                if buf.is_full() {
                    flush(&mut queues.tx, buf, slot, &mut report);
                }
                if let Err(m) = buf.push(m) {
                    drop(m);
                    if let Some(d) = report.tx_dropped.get_mut(slot) {
                        *d += 1;
                    }
                }
            }
            report.generation = snap.generation();
        }
        for (slot, buf) in pending.iter_mut().enumerate() {
            flush(&mut queues.tx, buf, slot, &mut report);
        }
        if received {
            progress
                .last_rx_ms
                .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            progress.rx_packets.store(rx_total, Ordering::Relaxed);
        }
    }
    for (slot, buf) in pending.iter_mut().enumerate() {
        flush(&mut queues.tx, buf, slot, &mut report);
    }
    report.counters = pipeline.counters().clone();
    if let Ok(mut c) = progress.counters.lock() {
        c.clone_from(&report.counters);
    }
    if let Ok(mut t) = progress.tx.lock() {
        t.sent.clone_from(&report.tx_sent);
        t.dropped.clone_from(&report.tx_dropped);
    }
    report
}

/// Send what `buf` holds on port `slot`'s TX queue; free and count what it refuses.
#[inline]
fn flush(tx: &mut [Option<TxQueue<'_>>], buf: &mut Burst, slot: usize, report: &mut WorkerReport) {
    if buf.is_empty() {
        return;
    }
    let Some(Some(q)) = tx.get_mut(slot) else {
        report.tx_dropped[slot] += buf.len() as u64;
        buf.clear();
        return;
    };
    let sent = q.tx_burst(buf);
    report.tx_sent[slot] += sent as u64;
    if !buf.is_empty() {
        report.tx_dropped[slot] += buf.len() as u64;
        buf.clear();
    }
}
