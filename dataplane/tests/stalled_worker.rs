//! TESTPLAN C6 on the real worker loop: two workers run `worker::run_with_hooks` on EAL lcores
//! with real queues, a test hook stops one of them inside a burst while it holds its
//! snapshot, and the control side publishes on, as `backbone run`'s supervisor does (reclaim,
//! then the stall watch, on every tick).
//!
//! Checked: the stall alarm fires at the first check after the worker has been stuck for the
//! threshold (100 ms), and not before; reclamation waits (the stuck snapshot stays alive and
//! unchanged, every other old one is freed, never more than 2 × workers old snapshots at once);
//! the other worker forwards everything sent to it meanwhile. Once released, the stuck burst
//! goes out, the worker takes the newest snapshot, its old one is freed by the control side's
//! reclamation (the worker letting go does not free it), every old generation is reclaimed
//! exactly once, and no mbuf leaks. One EAL per process: one test.
//!
//! Port A (`net_ring0`, the client port) and port B (`net_ring1`, the Internet port) loop each
//! TX queue back to the RX queue of the same number. Worker w polls A's RX queue w and sends on
//! B's TX queue w; the test sends to worker w on A's TX queue w and collects what it forwarded
//! from B's RX queue w.

#![cfg(feature = "dpdk")]

use dataplane::buffer::PacketBuf;
use dataplane::control::stall::{StallEvent, StallWatch};
use dataplane::control::state::ControlState;
use dataplane::dpdk::{
    launch_on_workers_with_main, Burst, Eal, Mempool, Port, PortConfig, RxQueue, TxQueue, BURST_MAX,
};
use dataplane::tables::{Snapshot, Target};
use dataplane::wire::EthernetAddress;
use dataplane::worker::{
    self, HostQueue, LearnQueue, PathMtuQueue, ResolveQueue, WorkerHooks, WorkerProgress,
    WorkerQueues, WorkerReport,
};
use pipeline_config::ConfigDocument;
use serde_json::json;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[port]]
name = "client0"
device = "0"
roles = ["client"]
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1"]
  [[port.neighbor]]
  ip = "198.51.100.30"
  mac = "02:00:00:00:0c:0c"
  [[port.neighbor]]
  ip = "198.51.100.31"
  mac = "02:00:00:00:0c:0d"

[[port]]
name = "internet0"
device = "1"
roles = ["internet"]
mac = "02:00:00:00:01:01"
addresses = ["203.0.113.1"]
  [[port.neighbor]]
  ip = "203.0.113.254"
  mac = "02:00:00:00:fe:fe"

[[tunnel]]
name = "initech"
mode = "ipip"
local = "192.0.2.1"
remote = "198.51.100.30"
port = "client0"
prefixes = ["10.3.0.0/16"]

[[tunnel]]
name = "umbrella"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.31"
port = "client0"
prefixes = ["10.4.0.0/16"]

[[route]]
prefix = "0.0.0.0/0"
port = "internet0"
next_hop = "203.0.113.254"

[[route]]
prefix = "10.100.0.0/16"
tunnel = "initech"
"#;

const WORKERS: usize = 2;
/// The worker the hook stops.
const STALLED: usize = 1;
/// The Internet gateway's MAC: where forwarded packets go.
const GATEWAY: [u8; 6] = [2, 0, 0, 0, 0xfe, 0xfe];

/// initech's IP-in-IP packet number `i`, to 20.0.x.y: decapsulated and forwarded natively to
/// internet0.
fn packet(i: usize) -> Vec<u8> {
    let inner_len = 20 + 8 + 18;
    let outer_len = 20 + inner_len;
    let mut f = Vec::with_capacity(14 + outer_len);
    // Ethernet: to client0, from initech's router, IPv4.
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0x0c, 0x0c, 0x08, 0x00]);
    let ipv4 = |len: usize, proto: u8, src: [u8; 4], dst: [u8; 4]| {
        // Version 4, IHL 5; total length; no fragmentation; TTL 64; the protocol; checksum
        // below; the addresses.
        let mut h = vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0,
            0,
            64,
            proto,
            0,
            0,
        ];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let mut sum = 0u32;
        for c in h.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        h
    };
    f.extend(ipv4(outer_len, 4, [198, 51, 100, 30], [192, 0, 2, 1]));
    f.extend(ipv4(
        inner_len,
        17,
        [10, 3, 0, 1],
        [20, 0, (i >> 8) as u8, i as u8],
    ));
    // UDP without checksum, then a payload.
    f.extend_from_slice(&[0x13, 0x89, 0x13, 0x89, 0, 26, 0, 0]);
    f.extend((0..18).map(|j| (i + j) as u8));
    f
}

/// What a snapshot says about the route the publications move, with its generation.
fn observe(s: &Snapshot) -> (u64, Option<String>) {
    let via = s
        .routes()
        .lookup(Ipv4Addr::new(10, 100, 0, 1))
        .and_then(|nh| match s.target(nh) {
            Target::Tunnel(id) => s.tunnels().get(id).map(|t| t.config.name.clone()),
            _ => None,
        });
    (s.generation(), via)
}

/// Stops worker [`STALLED`] inside its next burst once armed, until released.
#[derive(Default)]
struct Stall {
    armed: AtomicBool,
    /// The generation the worker is stuck on; 0 while it is not stuck.
    holding: AtomicU64,
    released: Mutex<bool>,
    wake: Condvar,
}

impl WorkerHooks for Stall {
    fn in_burst(&self, worker: usize, snapshot: &Snapshot) {
        if worker != STALLED || !self.armed.swap(false, Ordering::AcqRel) {
            return;
        }
        self.holding.store(snapshot.generation(), Ordering::Release);
        let released = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded, so that a failing test cannot hang here: its checks fail long before.
        drop(
            self.wake
                .wait_timeout_while(released, Duration::from_secs(60), |r| !*r),
        );
        self.holding.store(0, Ordering::Release);
    }
}

impl Stall {
    fn release(&self) {
        *self.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// Wait until `cond` holds, or fail after `limit` saying what did not happen.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::yield_now();
    }
}

/// Send `n` packets on `txq`, numbered from `*seq` on.
fn send(pool: &Mempool<'_>, txq: &mut TxQueue<'_>, n: usize, seq: &mut usize) {
    let mut b = Burst::new();
    for _ in 0..n {
        b.push(pool.alloc_with(&packet(*seq)).expect("an mbuf"))
            .expect("room in the burst");
        *seq += 1;
    }
    assert_eq!(txq.tx_burst(&mut b), n, "the ring takes the burst");
}

/// Receive and free what the workers forwarded on `rxq`; each must be for the gateway.
fn collect(rxq: &mut RxQueue<'_>) -> usize {
    let mut total = 0;
    loop {
        let mut b = Burst::new();
        if rxq.rx_burst(&mut b) == 0 {
            return total;
        }
        for m in b.drain() {
            assert_eq!(&m.data()[..6], &GATEWAY, "forwarded to the gateway");
            total += 1;
        }
    }
}

#[test]
fn a_worker_stalled_inside_a_burst_holds_only_its_snapshot_and_raises_the_alarm() {
    let mut args = pipeline_config::eal_args_no_nic(&format!("stall{}", std::process::id()));
    // The main lcore (the control side here) and two workers, free to move over two CPUs
    // where there are two.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let set = if cpus > 1 { "(0-1)" } else { "0" };
    args.push(format!("--lcores=0@{set},1@{set},2@{set}"));
    args.push("--vdev=net_ring0".into());
    args.push("--vdev=net_ring1".into());
    let eal = Eal::init(&args).expect("EAL starts");
    assert_eq!(eal.worker_lcores(), vec![1, 2]);
    let pool = Mempool::new(&eal, "stall", 4095, 0, Mempool::default_data_room()).expect("pool");
    let ids = [
        Port::id_by_name(&eal, "net_ring0").expect("net_ring0"),
        Port::id_by_name(&eal, "net_ring1").expect("net_ring1"),
    ];
    let pc = PortConfig {
        rx_queues: WORKERS as u16,
        tx_queues: WORKERS as u16,
        ..PortConfig::default()
    };
    let ports: Vec<Port<'_>> = ids
        .iter()
        .map(|&id| Port::start(&eal, id, &pc, &pool).expect("port starts"))
        .collect();

    let (doc, cfg) = ConfigDocument::parse(CONFIG, "stall.toml").expect("config");
    let macs: Vec<(u16, EthernetAddress)> = cfg
        .ports
        .iter()
        .zip(ids)
        .map(|(p, id)| (id, EthernetAddress(p.mac.expect("mac").0)))
        .collect();
    let mut state = ControlState::new(doc, cfg, macs).expect("tables");
    let readers: Vec<_> = (0..WORKERS).map(|_| Some(state.reader())).collect();
    let readers = Mutex::new(readers);

    let (a_rx, mut a_tx) = ports[0].take_queues().expect("queues");
    let (mut b_rx, b_tx) = ports[1].take_queues().expect("queues");
    let slots = ids.iter().map(|&i| usize::from(i)).max().unwrap_or(0) + 1;
    let queues: Vec<Option<WorkerQueues<'_>>> = a_rx
        .into_iter()
        .zip(b_tx)
        .map(|(rx, tx)| {
            let mut out: Vec<Option<TxQueue<'_>>> = (0..slots).map(|_| None).collect();
            out[usize::from(ids[1])] = Some(tx);
            Some(WorkerQueues {
                rx: vec![(ids[0], rx)],
                tx: out,
            })
        })
        .collect();
    let queues = Mutex::new(queues);
    let learned = LearnQueue::new(16);
    let host = HostQueue::new(16);
    let path_mtu = PathMtuQueue::new(16);
    let resolve = ResolveQueue::new(16);
    let stop = AtomicBool::new(false);
    let progress: Vec<WorkerProgress> = (0..WORKERS).map(|_| WorkerProgress::default()).collect();
    let reports: Mutex<Vec<Option<WorkerReport>>> = Mutex::new(vec![None; WORKERS]);
    let stall = Stall::default();
    let epoch = Instant::now();

    let mut outcome = Ok(());
    let mut summary = String::new();
    let lcores = eal.worker_lcores();
    launch_on_workers_with_main(
        &eal,
        &lcores,
        &stop,
        |lcore| {
            let w = lcore as usize - 1;
            let Some(q) = queues.lock().ok().and_then(|mut q| q[w].take()) else {
                return -1;
            };
            let Some(r) = readers.lock().ok().and_then(|mut r| r[w].take()) else {
                return -1;
            };
            let report = worker::run_with_hooks(
                w,
                WORKERS,
                q,
                r,
                &learned,
                &host,
                &path_mtu,
                &resolve,
                &stop,
                &progress[w],
                epoch,
                &stall,
            );
            reports.lock().expect("reports")[w] = Some(report);
            0
        },
        || {
            // A failed check must not unwind past the workers (they borrow this frame):
            // catch it, let them go, and fail once they are done.
            outcome = catch_unwind(AssertUnwindSafe(|| {
                summary = control(&mut state, &pool, &mut a_tx, &mut b_rx, &progress, &stall);
            }));
            stall.release();
            stop.store(true, Ordering::Release);
        },
    )
    .expect("launch");
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
    println!("{summary}");

    let reports: Vec<WorkerReport> = reports
        .into_inner()
        .expect("reports")
        .into_iter()
        .map(|r| r.expect("every worker reported"))
        .collect();
    for (w, r) in reports.iter().enumerate() {
        assert_eq!(r.counters.total_drops(), 0, "worker {w}: {r:?}");
        assert_eq!(r.tx_dropped.iter().sum::<u64>(), 0, "worker {w}: {r:?}");
    }
    // Their readers went with the workers: nothing old is left.
    state.reclaim();
    assert_eq!(state.snapshots().readers(), 0);
    assert_eq!(state.snapshots().retired(), 0);
    drop((a_tx, b_rx));
    assert_eq!(pool.in_use(), 0, "every mbuf back in the pool");
}

/// The control side of the test, on the main lcore while the workers run.
fn control(
    state: &mut ControlState,
    pool: &Mempool<'_>,
    a_tx: &mut [TxQueue<'_>],
    b_rx: &mut [RxQueue<'_>],
    progress: &[WorkerProgress],
    stall: &Stall,
) -> String {
    let limit = Duration::from_secs(20);
    let gens = || -> Vec<u64> {
        progress
            .iter()
            .map(|p| p.generation.load(Ordering::Relaxed))
            .collect()
    };
    let first = state.snapshots().generation();
    wait_until("both workers started", limit, || {
        gens() == vec![first; WORKERS]
    });
    let mut seq = 0;
    // Both workers forward.
    for w in 0..WORKERS {
        send(pool, &mut a_tx[w], BURST_MAX, &mut seq);
        let mut got = 0;
        wait_until("each worker forwards a burst", limit, || {
            got += collect(&mut b_rx[w]);
            got == BURST_MAX
        });
    }

    // Worker 1 stops inside its next burst, holding the first snapshot.
    let stuck = Arc::downgrade(state.snapshots().current());
    let stuck_seen = observe(state.snapshots().current());
    stall.armed.store(true, Ordering::Release);
    send(pool, &mut a_tx[STALLED], 1, &mut seq);
    wait_until("the worker stalls in its burst", limit, || {
        stall.holding.load(Ordering::Acquire) == first
    });

    // Publish on, with a control tick after each publication, while worker 0 forwards.
    let threshold = StallWatch::DEFAULT_THRESHOLD;
    let mut watch = StallWatch::new(WORKERS, threshold);
    let mut events = Vec::new();
    let mut published: Vec<(u64, Weak<Snapshot>)> = Vec::new();
    let (mut sent, mut forwarded) = (0, 0);
    let mut retired_max = 0;
    let mut lag_start = None;
    let mut alarm = None;
    let start = Instant::now();
    while start.elapsed() < 4 * threshold || published.len() < 20 {
        assert!(start.elapsed() < limit, "{} publications", published.len());
        let to = if published.len() % 2 == 0 {
            "umbrella"
        } else {
            "initech"
        };
        let g = state
            .apply(&[
                json!({"op": "set_route", "route": {"prefix": "10.100.0.0/16", "tunnel": to}}),
            ])
            .expect("a valid change");
        published.push((g, Arc::downgrade(state.snapshots().current())));
        send(pool, &mut a_tx[0], BURST_MAX, &mut seq);
        sent += BURST_MAX;
        wait_until("worker 0 forwards during the stall", limit, || {
            forwarded += collect(&mut b_rx[0]);
            forwarded == sent
        });
        // The tick: reclaim, then the stall watch.
        state.reclaim();
        let retired = state.snapshots().retired();
        retired_max = retired_max.max(retired);
        assert!(retired <= 2 * WORKERS, "{:?}", state.snapshots());
        let now = Instant::now();
        let lag_start = *lag_start.get_or_insert(now);
        events.clear();
        watch.check(now, g, gens(), &mut events);
        let lag = now - lag_start;
        match (&events[..], alarm) {
            ([], None) => assert!(lag < threshold, "no alarm after {lag:?}"),
            ([], Some(_)) => {}
            (
                [StallEvent::Stalled {
                    worker,
                    holds,
                    for_,
                    ..
                }],
                None,
            ) => {
                assert_eq!((*worker, *holds), (STALLED, first));
                assert!(*for_ >= threshold && lag >= threshold, "{for_:?} {lag:?}");
                alarm = Some(lag);
            }
            (e, _) => panic!("unexpected stall events {e:?}"),
        }
    }
    let alarm = alarm.expect("the stall alarm");
    assert_eq!((watch.alarms(), watch.stalled()), (1, 1));

    // Reclamation waited for the stuck worker, and for nothing else.
    let current = state.snapshots().generation();
    assert_eq!(
        gens()[STALLED],
        first,
        "the stuck worker reports where it is"
    );
    assert_eq!(stall.holding.load(Ordering::Acquire), first);
    wait_until("worker 0 takes the newest snapshot", limit, || {
        gens()[0] == current
    });
    state.reclaim();
    assert_eq!(state.snapshots().retired(), 1, "{:?}", state.snapshots());
    let stuck_now = stuck
        .upgrade()
        .expect("the stuck worker's snapshot is alive");
    assert_eq!(observe(&stuck_now), stuck_seen, "and unchanged");
    drop(stuck_now);
    for (g, w) in &published {
        assert_eq!(w.upgrade().is_some(), *g == current, "generation {g}");
    }
    assert_eq!(
        collect(&mut b_rx[STALLED]),
        0,
        "nothing from the stuck worker yet"
    );

    // Released: its burst goes out, it takes the newest snapshot, and only the control
    // side's reclamation frees the old one.
    stall.release();
    wait_until("the stuck burst is forwarded", limit, || {
        collect(&mut b_rx[STALLED]) == 1
    });
    wait_until(
        "the released worker takes the newest snapshot",
        limit,
        || gens()[STALLED] == current,
    );
    assert!(
        stuck.upgrade().is_some(),
        "the worker let go; the publisher still retains its old snapshot"
    );
    assert_eq!(state.reclaim(), 1);
    assert!(stuck.upgrade().is_none(), "freed by reclamation");
    assert_eq!(state.snapshots().retired(), 0);
    assert_eq!(
        state.snapshots().reclaimed(),
        published.len() as u64,
        "every old generation reclaimed, once"
    );
    events.clear();
    watch.check(Instant::now(), current, gens(), &mut events);
    assert!(
        matches!(
            events[..],
            [StallEvent::Recovered {
                worker: STALLED,
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!((watch.alarms(), watch.stalled()), (1, 0));
    format!(
        "{} publications during the stall; alarm after {alarm:?} of lag; at most \
         {retired_max} old snapshots retained; worker 0 forwarded {forwarded} packets meanwhile",
        published.len()
    )
}
