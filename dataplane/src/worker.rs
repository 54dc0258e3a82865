//! The per-lcore loop: receive a burst, load the snapshot once, run the pipeline, answer
//! ARP in place, buffer transmissions per port, send in bursts, free what TX refused.
//!
//! Nothing here is shared for writing with another worker: each worker owns its queues,
//! its TX buffers and its counters. The snapshot is read through the worker's own
//! [`Reader`]: at the top of every poll (the worker's quiescent point) one atomic load says
//! whether a newer snapshot was published; only then does the worker take it and report the
//! generation it reached. It never frees a snapshot: the control thread does.

use crate::control::arp::{self, ArpOutcome, Heard};
pub use crate::control::progress::WorkerProgress;
use crate::dpdk::{Burst, Mbuf, RxQueue, TxQueue, BURST_MAX};
use crate::pipeline::{Action, Counters, Host, PathMtuReport, Pipeline, PuntReason};
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
    /// Packets for a port this worker has no TX queue on, freed. The pipeline counted them
    /// as the port's TX (it decided to send them): with `tx_sent` and `tx_dropped` they add
    /// up to the pipeline's TX plus the ARP replies.
    pub tx_no_queue: u64,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Packets for us handed to the exception path (a host interface's queue).
    pub host_queued: u64,
    /// Packets for us that went nowhere (freed), by punt reason: no host interface takes
    /// them, or the exception path's queue was full (also in `host_queue_full`).
    pub punt_dropped: [u64; PuntReason::COUNT],
    /// Packets for a host interface dropped because the exception path's queue was full:
    /// the host is slower than what arrives for it.
    pub host_queue_full: u64,
    /// Neighbours heard (wanted, and new or changed) and handed to the control thread,
    /// which decides whether to learn them.
    pub arp_learned: u64,
    /// Learned neighbours dropped because the control thread's queue was full.
    pub arp_learn_dropped: u64,
    /// Bursts processed (non-empty receives).
    pub bursts: u64,
    /// Snapshot generation seen on the last burst.
    pub generation: u64,
}

/// Neighbours heard by ARP that the snapshot wants and does not know (or knows
/// differently): the control thread decides whether to learn them (a reply only if it
/// asked; never over a static entry). Bounded: an ARP storm cannot grow it.
pub type LearnQueue = ArrayQueue<(PortIndex, Ipv4Addr, EthernetAddress, Heard)>;

/// Packets for us on their way to a host interface (the exception path): bounded, so a
/// host that does not keep up costs drops (`host_queue_full`), never a worker's time.
pub type HostQueue = ArrayQueue<(Mbuf, Host)>;

/// What the underlay said about our tunnels' packets (ICMP Fragmentation Needed, checked
/// against the tables), for the control thread to lower their MTUs. Bounded, and apart from
/// [`LearnQueue`]: a flood of these never keeps a neighbour from being learned. A report
/// that finds it full is counted in `punt_dropped` (`pmtu`).
pub type PathMtuQueue = ArrayQueue<PathMtuReport>;

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

/// Run worker `index` of `workers` until `stop` is set, then flush and report.
#[allow(clippy::too_many_arguments)]
pub fn run(
    index: usize,
    workers: usize,
    queues: WorkerQueues<'_>,
    snapshots: Reader<Snapshot>,
    learned: &LearnQueue,
    host: &HostQueue,
    path_mtu: &PathMtuQueue,
    stop: &AtomicBool,
    progress: &WorkerProgress,
    epoch: Instant,
) -> WorkerReport {
    run_with_hooks(
        index, workers, queues, snapshots, learned, host, path_mtu, stop, progress, epoch, &NoHooks,
    )
}

/// [`run`], with test hooks.
#[allow(clippy::too_many_arguments)]
pub fn run_with_hooks<H: WorkerHooks>(
    index: usize,
    workers: usize,
    mut queues: WorkerQueues<'_>,
    mut snapshots: Reader<Snapshot>,
    learned: &LearnQueue,
    host: &HostQueue,
    path_mtu: &PathMtuQueue,
    stop: &AtomicBool,
    progress: &WorkerProgress,
    epoch: Instant,
    hooks: &H,
) -> WorkerReport {
    let mut pipeline = Pipeline::for_worker(index, workers);
    // Read only when an ICMP error is about to be sent.
    pipeline.set_clock_source(monotonic_ns);
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
                progress.copy_counters(&mut c, pipeline.counters());
            }
            if let Ok(mut t) = progress.tx.try_lock() {
                t.sent.clone_from(&report.tx_sent);
                t.dropped.clone_from(&report.tx_dropped);
            }
            progress.publish_host(&report);
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
                    Action::Transmit(out)
                    | Action::Reply { port: out, .. }
                    | Action::Answer { port: out, .. } => Some(out),
                    Action::Punt(PuntReason::Arp) => match snap.port(*port) {
                        Some(entry) => {
                            let outcome = arp::handle(&mut m, entry);
                            let heard = match outcome {
                                ArpOutcome::Replied { learned } => Some((learned, Heard::Request)),
                                ArpOutcome::Learned { learned } => Some((learned, Heard::Reply)),
                                ArpOutcome::Ignored => None,
                            };
                            if let Some(((ip, mac), how)) = heard {
                                if snap.wants_neighbor(*port, ip)
                                    && snap.neighbor(*port, ip) != Some(mac)
                                {
                                    if learned.push((*port, ip, mac, how)).is_ok() {
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
                    Action::Deliver { to, punt } => {
                        match host.push((m, to)) {
                            Ok(()) => report.host_queued += 1,
                            Err(_) => {
                                report.host_queue_full += 1;
                                report.punt_dropped[punt as usize] += 1;
                            }
                        }
                        continue;
                    }
                    // A path MTU message with nothing to lower (counted `pmtu_not_lower`):
                    // consumed.
                    Action::Punt(PuntReason::PathMtu) => None,
                    Action::Punt(r) => {
                        // No host interface for it.
                        report.punt_dropped[r as usize] += 1;
                        None
                    }
                    Action::PathMtu(r) => {
                        if path_mtu.push(r).is_err() {
                            report.punt_dropped[PuntReason::PathMtu as usize] += 1;
                        }
                        None
                    }
                    Action::Drop(_) => None,
                };
                let Some(out) = out else { continue };
                let slot = usize::from(out);
                let Some(buf) = pending.get_mut(slot) else {
                    report.tx_no_queue += 1;
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
        progress.copy_counters(&mut c, &report.counters);
    }
    if let Ok(mut t) = progress.tx.lock() {
        t.sent.clone_from(&report.tx_sent);
        t.dropped.clone_from(&report.tx_dropped);
    }
    progress.publish_host(&report);
    report
}

/// Send what `buf` holds on port `slot`'s TX queue; free and count what it refuses.
#[inline]
fn flush(tx: &mut [Option<TxQueue<'_>>], buf: &mut Burst, slot: usize, report: &mut WorkerReport) {
    if buf.is_empty() {
        return;
    }
    let Some(Some(q)) = tx.get_mut(slot) else {
        report.tx_no_queue += buf.len() as u64;
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

/// Nanoseconds since the first call: the clock the ICMP rate limit reads.
fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl WorkerProgress {
    /// Copy the exception-path counters of `report` where the control API reads them.
    fn publish_host(&self, report: &WorkerReport) {
        self.host_queued
            .store(report.host_queued, Ordering::Relaxed);
        self.host_queue_full
            .store(report.host_queue_full, Ordering::Relaxed);
        for (to, &v) in self.punt_dropped.iter().zip(&report.punt_dropped) {
            to.store(v, Ordering::Relaxed);
        }
    }
}
