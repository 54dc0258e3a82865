//! The per-lcore loop: receive a burst, load the snapshot once, run the pipeline, answer
//! ARP in place, buffer transmissions per port, send in bursts, free what TX refused.
//!
//! Nothing here is shared for writing with another worker: each worker owns its queues,
//! its TX buffers and its counters. The snapshot is read through the worker's own
//! [`Reader`]: at the top of every poll (the worker's quiescent point) one atomic load says
//! whether a newer snapshot was published; only then does the worker take it and report the
//! generation it reached. It never frees a snapshot: the control thread does.
//!
//! Polling ([`Poll`]): a busy worker polls without pause; an adaptive one (the default)
//! counts the polls in a row that found every queue empty and, past
//! [`Poll::IDLE_POLLS`], sleeps between polls (1 us, doubling up to the configured
//! maximum) until a poll receives again. While traffic flows the only cost is a counter
//! reset per poll: nothing is slept, and the clock (the time of the last receive, for the
//! idle stop) is read once every 64 polls that receive and at the first that does not.

use crate::buffer::PacketBuf;
use crate::control::arp::{self, ArpOutcome, Heard};
use crate::control::nd::{self, NdOutcome};
use crate::control::ndcache::NdHeard;
pub use crate::control::progress::{Poll, WorkerProgress};
use crate::dpdk::{Burst, Mbuf, RxQueue, TxQueue, BURST_MAX};
use crate::pipeline::{Action, Counters, Host, PacketTrace, PathMtuReport, Pipeline, PuntReason};
use crate::tables::{PortIndex, Reader, Snapshot};
use crate::tap::{monotonic_ns, Filter, Tap, TapRecord};
use crate::wire::EthernetAddress;
use core::net::{Ipv4Addr, Ipv6Addr};
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
    /// IPv6 Neighbor Solicitations for our addresses answered (RFC 4861).
    pub nd_replies: u64,
    /// Neighbor Discovery messages that failed RFC 4861's validity checks (hop limit not
    /// 255, bad checksum, code, length or option, a multicast target), freed.
    pub nd_invalid: u64,
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
    /// Neighbor Discovery messages about IPv6 next hops the snapshot wants (an
    /// advertisement of one, or a solicitation from one giving a new MAC) handed to the
    /// control thread, and those its queue was too full to take.
    pub nd_heard: u64,
    pub nd_heard_dropped: u64,
    /// Destinations on connected subnets with no known MAC handed to the control thread
    /// to resolve (their packets dropped as `no_neighbor`), and those its queue was too
    /// full to take.
    pub resolve_queued: u64,
    pub resolve_queue_full: u64,
    /// Bursts processed (non-empty receives).
    pub bursts: u64,
    /// Polls (rounds over every RX queue), and those that received a packet.
    pub polls: u64,
    pub busy_polls: u64,
    /// Sleeps of an idle adaptive worker, and the microseconds asked for.
    pub idle_sleeps: u64,
    pub idle_sleep_us: u64,
    /// Snapshot generation seen on the last burst.
    pub generation: u64,
}

/// A neighbour a worker heard about, for the control thread to learn or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeardNeighbor {
    /// By ARP: its address and MAC, and how.
    Arp(PortIndex, Ipv4Addr, EthernetAddress, Heard),
    /// By Neighbor Discovery: an IPv6 next hop, and what it said.
    Nd(PortIndex, Ipv6Addr, NdHeard),
}

/// Neighbours heard by ARP that the snapshot wants and does not know (or knows
/// differently), and IPv6 next hops heard by Neighbor Discovery: the control thread
/// decides whether to learn them (an answer only if it asked; never over a static entry).
/// Bounded: an ARP or ND storm cannot grow it.
pub type LearnQueue = ArrayQueue<HeardNeighbor>;

/// Destinations on connected subnets whose MAC a worker found unknown (their packets
/// dropped as `no_neighbor`): (port, address), for the control thread to resolve by ARP
/// on demand. Bounded and lock-free: a scan of a large subnet costs drops counted in
/// `resolve_queue_full`, never a worker's time or memory.
pub type ResolveQueue = ArrayQueue<(PortIndex, Ipv4Addr)>;

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
    resolve: &ResolveQueue,
    stop: &AtomicBool,
    progress: &WorkerProgress,
    epoch: Instant,
) -> WorkerReport {
    run_with_hooks(
        index, workers, queues, snapshots, learned, host, path_mtu, resolve, stop, progress, epoch,
        &NoHooks,
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
    resolve: &ResolveQueue,
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
    let poll = progress.poll;
    let mut tap_local = TapLocal::new();
    let mut iterations = 0u64;
    // Adaptive polling: empty polls in a row, and the next sleep.
    let mut idle_polls = 0u32;
    let mut sleep_us = 0u32;
    // Busy polls in a row (see where `last_rx_ms` is stored).
    let mut busy_run = 0u64;
    while !stop.load(Ordering::Relaxed) {
        iterations += 1;
        // The quiescent point, on every loop, so that an idle worker moves to (and reports)
        // the newest snapshot too.
        if snapshots.refresh() {
            progress
                .generation
                .store(snapshots.generation(), Ordering::Relaxed);
        }
        // Every few thousand polls, and every 128 sleeps of an idle worker (its polls are
        // slow then: what it counted last shows within some 100 ms).
        let idle_copy = idle_polls >= Poll::IDLE_POLLS && report.idle_sleeps % 128 == 0;
        if iterations % 4096 == 0 || idle_copy {
            // Never wait for a reader: skip this round if one holds the lock.
            if let Ok(mut c) = progress.counters.try_lock() {
                progress.copy_counters(&mut c, pipeline.counters_mut());
            }
            if let Ok(mut t) = progress.tx.try_lock() {
                t.sent.clone_from(&report.tx_sent);
                t.dropped.clone_from(&report.tx_dropped);
            }
            progress.publish_host(&report);
            report.polls = iterations;
            progress.publish_polling(&report);
        }
        let mut received = false;
        // A trace or capture armed: one load, one predictable branch per burst when not.
        let tapping = progress.tap.armed();
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
            if tapping == 0 {
                pipeline.process(snap, *port, &mut burst[..], &mut actions[..n]);
            } else {
                tapped_burst(
                    &mut pipeline,
                    snap,
                    *port,
                    &mut burst,
                    &mut actions[..n],
                    &progress.tap,
                    &mut tap_local,
                    tapping,
                    index,
                );
            }
            hooks.in_burst(index, snap);
            for hop in pipeline.unresolved() {
                if resolve.push(hop).is_ok() {
                    report.resolve_queued += 1;
                } else {
                    report.resolve_queue_full += 1;
                }
            }
            // The common burst: every packet sent out of one port, whose pending burst is
            // empty. It becomes that port's pending burst whole, as the loop below would
            // have made it packet by packet (the same packets, in the same order).
            if burst.len() == n {
                let one = Action::one_port(&actions[..n]);
                if let Some(buf) = one.and_then(|o| pending.get_mut(usize::from(o))) {
                    if buf.is_empty() {
                        core::mem::swap(buf, &mut burst);
                    }
                }
            }
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
                                // A next hop we need, or a host on a connected subnet of
                                // this port (RFC 826's merge: the control thread bounds
                                // how many of those it keeps).
                                let on_link = snap.on_link(*port, ip).is_some();
                                // A reply from a host on a connected subnet goes even when
                                // it changes nothing: it confirms the host is still there.
                                if (snap.wants_neighbor(*port, ip) || on_link)
                                    && (snap.neighbor(*port, ip) != Some(mac)
                                        || (on_link && how == Heard::Reply))
                                {
                                    if learned
                                        .push(HeardNeighbor::Arp(*port, ip, mac, how))
                                        .is_ok()
                                    {
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
                    Action::Punt(PuntReason::Nd) => match snap.port(*port) {
                        Some(entry) => {
                            let outcome = nd::handle(&mut m, entry);
                            // About a next hop we need: every advertisement (an answer
                            // confirms it even when it changes nothing), and a
                            // solicitation only when it gives a MAC we do not hold.
                            let heard = match outcome {
                                NdOutcome::Replied {
                                    learned: Some((ip, mac)),
                                } if snap.wants_neighbor6(*port, ip)
                                    && snap.neighbor6(*port, ip) != Some(mac) =>
                                {
                                    Some((ip, NdHeard::Solicit(mac)))
                                }
                                NdOutcome::Heard { target, advert }
                                    if snap.wants_neighbor6(*port, target) =>
                                {
                                    Some((target, NdHeard::Advert(advert)))
                                }
                                _ => None,
                            };
                            if let Some((ip, how)) = heard {
                                if learned.push(HeardNeighbor::Nd(*port, ip, how)).is_ok() {
                                    report.nd_heard += 1;
                                } else {
                                    report.nd_heard_dropped += 1;
                                }
                            }
                            match outcome {
                                NdOutcome::Replied { .. } => {
                                    report.nd_replies += 1;
                                    Some(*port)
                                }
                                NdOutcome::Invalid => {
                                    report.nd_invalid += 1;
                                    None
                                }
                                NdOutcome::Heard { .. } | NdOutcome::Ignored => None,
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
            report.busy_polls += 1;
            // The time of the last receive, without a clock read per poll: at the first
            // busy poll of a run and every 64th after it, then at the run's first idle poll
            // (below), so that it is exact to within one poll when traffic stops.
            if busy_run % 64 == 0 {
                progress
                    .last_rx_ms
                    .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            busy_run = busy_run.wrapping_add(1);
            idle_polls = 0;
            sleep_us = 0;
            progress.rx_packets.store(rx_total, Ordering::Relaxed);
            continue;
        }
        if busy_run != 0 {
            busy_run = 0;
            progress
                .last_rx_ms
                .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        if let Poll::Adaptive { idle_sleep_max_us } = poll {
            idle_polls = idle_polls.saturating_add(1);
            if idle_polls >= Poll::IDLE_POLLS {
                sleep_us = sleep_us
                    .saturating_mul(2)
                    .clamp(1, idle_sleep_max_us.max(1));
                report.idle_sleeps += 1;
                report.idle_sleep_us += u64::from(sleep_us);
                report.polls = iterations;
                progress.publish_polling(&report);
                std::thread::sleep(std::time::Duration::from_micros(u64::from(sleep_us)));
            }
        }
    }
    report.polls = iterations;
    for (slot, buf) in pending.iter_mut().enumerate() {
        flush(&mut queues.tx, buf, slot, &mut report);
    }
    report.counters = pipeline.counters().clone();
    if let Ok(mut c) = progress.counters.lock() {
        progress.copy_counters(&mut c, &mut report.counters);
    }
    if let Ok(mut t) = progress.tx.lock() {
        t.sent.clone_from(&report.tx_sent);
        t.dropped.clone_from(&report.tx_dropped);
    }
    progress.publish_host(&report);
    progress.publish_polling(&report);
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

/// The worker's side of its tap: the session it last saw, what is left of its budget,
/// and room for one burst.
struct TapLocal {
    session: u64,
    filter: Filter,
    remaining: u32,
    traces: [PacketTrace; BURST_MAX],
    held: [Option<Box<TapRecord>>; BURST_MAX],
}

impl TapLocal {
    fn new() -> Self {
        TapLocal {
            session: 0,
            filter: Filter::default(),
            remaining: 0,
            traces: [PacketTrace::default(); BURST_MAX],
            held: [const { None }; BURST_MAX],
        }
    }
}

/// A burst while the tap is armed for `session`: the traced pipeline, the frames as
/// received and as sent, and the records of the packets that match, handed over (see
/// [`crate::tap`]). ARP replies, which the worker writes after the pipeline, are not seen.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn tapped_burst(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    port: PortIndex,
    burst: &mut Burst,
    actions: &mut [Action],
    tap: &Tap,
    local: &mut TapLocal,
    session: u64,
    worker: usize,
) {
    if local.session != session {
        local.session = session;
        (local.filter, local.remaining) = tap.settings();
    }
    let n = burst.len().min(actions.len());
    // Traced even once the budget is spent (the session ends soon): `Pipeline::process`
    // keeps the worker loop as its one caller, where it is inlined.
    let recording = local.remaining > 0;
    let time_ns = if recording { monotonic_ns() } else { 0 };
    for (held, m) in local.held.iter_mut().zip(burst.iter()) {
        *held = if recording { tap.record() } else { None };
        if let Some(r) = held {
            r.rx.set(m.data());
        }
    }
    pipeline.process_traced(
        snap,
        port,
        &mut burst[..n],
        &mut actions[..n],
        &mut local.traces[..n],
    );
    for (i, action) in actions[..n].iter().enumerate() {
        let t = &local.traces[i];
        let tx_port = match *action {
            Action::Transmit(p)
            | Action::Reply { port: p, .. }
            | Action::Answer { port: p, .. } => Some(p),
            _ => None,
        };
        let wanted = local.remaining > 0 && local.filter.matches(t, tx_port);
        let Some(mut r) = local.held[i].take() else {
            if wanted {
                tap.count_lost();
            }
            continue;
        };
        if wanted {
            local.remaining -= 1;
            r.session = session;
            r.worker = u16::try_from(worker).unwrap_or(u16::MAX);
            r.time_ns = time_ns;
            r.generation = snap.generation();
            r.trace = *t;
            match (tx_port, burst.get(i)) {
                (Some(_), Some(m)) => r.tx.set(m.data()),
                _ => r.tx.len = 0,
            }
        }
        tap.hand_over(r, wanted);
    }
}

impl WorkerProgress {
    /// Copy the polling counters of `report` where the control API reads them.
    fn publish_polling(&self, report: &WorkerReport) {
        self.polling.store(
            report.polls,
            report.busy_polls,
            report.idle_sleeps,
            report.idle_sleep_us,
        );
    }

    /// Copy the exception-path counters of `report` where the control API reads them.
    fn publish_host(&self, report: &WorkerReport) {
        self.neighbors.store_all([
            report.arp_replies,
            report.arp_learned,
            report.arp_learn_dropped,
            report.nd_replies,
            report.nd_invalid,
            report.nd_heard,
            report.nd_heard_dropped,
        ]);
        self.host_queued
            .store(report.host_queued, Ordering::Relaxed);
        self.host_queue_full
            .store(report.host_queue_full, Ordering::Relaxed);
        for (to, &v) in self.punt_dropped.iter().zip(&report.punt_dropped) {
            to.store(v, Ordering::Relaxed);
        }
    }
}
