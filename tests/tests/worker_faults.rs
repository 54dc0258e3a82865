//! Resource faults under a real worker loop on real mbufs: the mempool runs dry (the PMD
//! counts `rx_no_mbuf`, the worker keeps polling, and forwarding resumes by itself once
//! buffers return), and a TX queue nobody drains fills up (TX refusals are counted and
//! freed, nothing leaks, the other port keeps forwarding). One EAL per process: one test.
//!
//! Port 0 (`net_pcap0`) is the client port: its RX replays initech's IP-in-IP packets from a
//! pcap file (the PMD allocates an mbuf per packet from our pool). Port 1 (`net_ring0`) is
//! the Internet port; its ring has 1,023 slots and nothing reads it until the test does.

use backbone_tests::{file_prefix, pcap, scratch_dir, wait_for, wait_until};
use dataplane::buffer::PacketBuf;
use dataplane::config::builder_from_config;
use dataplane::dpdk::{launch_on_workers_with_main, Burst, Eal, Mempool, Port, PortConfig};
use dataplane::tables::Publisher;
use dataplane::wire::EthernetAddress;
use dataplane::worker::{
    self, HostQueue, LearnQueue, PathMtuQueue, ResolveQueue, WorkerProgress, WorkerQueues,
};
use std::sync::atomic::{AtomicBool, Ordering};
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

[[route]]
prefix = "0.0.0.0/0"
port = "internet0"
next_hop = "203.0.113.254"
"#;

/// Packets in the pcap file. While the pool is dry, each poll reads one packet that then
/// has no mbuf (as a NIC drops what arrives with no buffer to put it in): the file is long
/// enough that most of it is left when buffers return.
const PACKETS: usize = 300_000;
/// mbufs in the pool: fewer than the packets, more than the ring holds.
const POOL: u32 = 2047;
/// What `net_ring0`'s ring holds.
const RING: usize = 1023;

/// initech's IP-in-IP packet number `i`, to 20.0.x.y: forwarded natively to internet0.
fn packet(i: usize) -> Vec<u8> {
    let inner_len = 20 + 8 + 18;
    let outer_len = 20 + inner_len;
    let mut f = Vec::with_capacity(14 + outer_len);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0x0c, 0x0c, 0x08, 0x00]);
    let ipv4 = |len: usize, proto: u8, src: [u8; 4], dst: [u8; 4]| {
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
        let ck = !(sum as u16);
        h[10..12].copy_from_slice(&ck.to_be_bytes());
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

#[test]
fn pool_exhaustion_and_a_full_tx_queue_are_counted_survived_and_leak_nothing() {
    let dir = scratch_dir("worker-faults");
    let input = dir.join("in.pcap");
    let frames: Vec<Vec<u8>> = (0..PACKETS).map(packet).collect();
    pcap::write(&input, &frames).expect("write the pcap");
    let mut args = pipeline_config::eal_args_no_nic(&file_prefix("faults"));
    // The worker on a CPU of its own where there is one, so that the main thread, which
    // watches the counters and gives the buffers back, is not waiting for it.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    args.push(format!("--lcores=0@0,1@{}", usize::from(cpus > 1)));
    args.push(format!(
        "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
        input.display(),
        dir.join("client-out.pcap").display()
    ));
    args.push("--vdev=net_ring0".into());
    args.push("--log-level=lib.eal:error".into());
    let eal = Eal::init(&args).expect("EAL starts");
    let pool = Mempool::new(&eal, "faults", POOL, 0, Mempool::default_data_room()).expect("pool");
    let ids = [
        Port::id_by_name(&eal, "net_pcap0").expect("net_pcap0"),
        Port::id_by_name(&eal, "net_ring0").expect("net_ring0"),
    ];

    // The mempool runs dry before the worker starts: the test holds every mbuf.
    let mut held = Vec::new();
    while let Some(m) = pool.alloc() {
        held.push(m);
    }
    assert_eq!(held.len(), POOL as usize);
    assert_eq!(pool.available(), 0);

    let ports: Vec<Port<'_>> = ids
        .iter()
        .map(|&id| Port::start(&eal, id, &PortConfig::default(), &pool).expect("port starts"))
        .collect();
    let cfg = pipeline_config::parse(CONFIG, "faults.toml").expect("config");
    let macs: Vec<(u16, EthernetAddress)> = cfg
        .ports
        .iter()
        .zip(ids)
        .map(|(p, id)| (id, EthernetAddress(p.mac.expect("mac").0)))
        .collect();
    let mut snapshots = Publisher::new(builder_from_config(&cfg, &macs).build().expect("tables"));
    let reader = std::sync::Mutex::new(Some(snapshots.reader()));

    let (mut rx0, mut tx0) = ports[0].take_queues().expect("queues");
    let (mut ring_rx, mut tx1) = ports[1].take_queues().expect("queues");
    let queues = WorkerQueues {
        rx: vec![(ids[0], rx0.remove(0))],
        tx: {
            let mut tx = vec![None, None];
            tx[usize::from(ids[0])] = Some(tx0.remove(0));
            tx[usize::from(ids[1])] = Some(tx1.remove(0));
            tx
        },
    };
    let queues = std::sync::Mutex::new(Some(queues));
    let learned = LearnQueue::new(16);
    let host = HostQueue::new(16);
    let path_mtu = PathMtuQueue::new(16);
    let resolve = ResolveQueue::new(16);
    let stop = AtomicBool::new(false);
    let progress = WorkerProgress::default();
    let report = std::sync::Mutex::new(None);
    let epoch = Instant::now();

    let mut nombuf_while_dry = 0;
    launch_on_workers_with_main(
        &eal,
        &eal.worker_lcores(),
        &stop,
        |_| {
            let Some(q) = queues.lock().ok().and_then(|mut q| q.take()) else {
                return -1;
            };
            let Some(snapshots) = reader.lock().ok().and_then(|mut r| r.take()) else {
                return -1;
            };
            let r = worker::run(
                0, 1, q, snapshots, &learned, &host, &path_mtu, &resolve, &stop, &progress, epoch,
            );
            *report.lock().expect("report") = Some(r);
            0
        },
        || {
            // Dry: the PMD cannot allocate, counts it, and the worker receives nothing.
            let start = Instant::now();
            // A hundred polls in a row find no buffer; the worker keeps polling.
            while ports[0].stats().expect("stats").rx_no_mbuf < 100 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "no rx_no_mbuf counted while the pool is dry"
                );
                std::hint::spin_loop();
            }
            assert_eq!(progress.rx_packets.load(Ordering::Relaxed), 0);
            nombuf_while_dry = ports[0].stats().expect("stats").rx_no_mbuf;
            // Buffers return: forwarding resumes without anyone restarting anything, until
            // the Internet port's ring is full; from then on TX refuses and the worker
            // frees what it refused.
            held.clear();
            wait_until(
                Duration::from_secs(20),
                "the rest of the file received",
                || {
                    let rx = progress.rx_packets.load(Ordering::Relaxed);
                    let lost = ports[0].stats().expect("stats").rx_no_mbuf;
                    rx as usize + lost as usize >= PACKETS
                },
            );
            // Every packet received went to the ring or was refused and freed: what is
            // out is what the ring holds (its count read while the worker still runs).
            wait_for(
                Duration::from_secs(10),
                "mbufs out = what the ring holds",
                || match pool.in_use() {
                    n if n as usize == RING => Ok(()),
                    n => Err(format!("{n} mbufs out")),
                },
            );
            stop.store(true, Ordering::Relaxed);
        },
    )
    .expect("launch");
    // The worker has stopped: nothing takes or returns mbufs any more.
    let in_ring_at_stop = pool.in_use();
    let report = report
        .into_inner()
        .expect("report")
        .expect("the worker reported");

    let hw = ports[0].stats().expect("stats");
    let rx = hw.rx_packets;
    let sent = report.tx_sent[usize::from(ids[1])];
    let refused = report.tx_dropped[usize::from(ids[1])];
    println!(
        "pool dry: rx_no_mbuf {nombuf_while_dry}; total rx {rx}, rx_no_mbuf {}, sent to the \
         ring {sent}, refused by the full ring {refused}",
        hw.rx_no_mbuf
    );
    assert!(nombuf_while_dry > 0);
    assert!(
        rx as usize > 2 * RING,
        "forwarding resumed once buffers returned: {rx} received"
    );
    // Every packet of the file: received, or lost for want of an mbuf (counted).
    assert_eq!(rx + hw.rx_no_mbuf, PACKETS as u64, "{hw:?}");
    // Every received packet forwarded to internet0 (nothing dropped by the pipeline), and
    // every one either taken by the ring or refused (counted).
    assert_eq!(report.counters.drops.iter().sum::<u64>(), 0, "{report:?}");
    assert_eq!(sent + refused, rx, "{report:?}");
    assert_eq!(sent as usize, RING, "the ring took what it holds");
    assert!(refused > 0, "the full ring refused packets");
    // Nothing leaked: what is still out is exactly what sits in the ring; draining it
    // returns the pool to where it started.
    assert_eq!(
        in_ring_at_stop as usize, RING,
        "mbufs out once the worker has stopped"
    );
    let mut drained = 0;
    let mut burst = Burst::new();
    loop {
        let n = ring_rx[0].rx_burst(&mut burst);
        if n == 0 {
            break;
        }
        for m in burst.drain() {
            // The packet as forwarded: Ethernet to the gateway, the inner packet, TTL 63.
            assert_eq!(&m.data()[..6], &[2, 0, 0, 0, 0xfe, 0xfe]);
            assert_eq!(m.data()[14 + 8], 63);
            drained += 1;
        }
    }
    assert_eq!(drained, RING);
    assert_eq!(pool.in_use(), 0, "every mbuf back in the pool");
}
