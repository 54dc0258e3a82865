//! Every packet a real worker loop receives is counted exactly once: forwarded, dropped under
//! one reason, or punted; and everything it forwards (or answers, for ARP) is taken by TX,
//! refused by it, or counted as having found no TX queue. A mixed burst through
//! `worker::run` on real mbufs, with a worker that has no TX queue on one port the tables
//! route to. One EAL per process: one test.
//!
//! Port 0 (`net_pcap0`) replays the mixed traffic and writes what the worker sends back on it;
//! port 1 (`net_ring0`) is the Internet port, on which this worker has no TX queue.

use backbone_tests::{file_prefix, scapy, scratch_dir, wait_until};
use dataplane::config::builder_from_config;
use dataplane::dpdk::{launch_on_workers_with_main, Eal, Mempool, Port, PortConfig};
use dataplane::pipeline::{DropReason, PuntReason};
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
  [[port.neighbor]]
  ip = "198.51.100.10"
  mac = "02:00:00:00:0a:0a"

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
name = "acme"
mode = "ipip"
local = "192.0.2.1"
remote = "198.51.100.10"
port = "client0"
prefixes = ["10.1.0.0/16"]

[[route]]
prefix = "0.0.0.0/0"
port = "internet0"
next_hop = "203.0.113.254"
"#;

/// Rounds of the mixed burst in the capture.
const ROUNDS: u64 = 10;
/// Packets per round (see the scapy script).
const PER_ROUND: u64 = 9;

#[test]
fn every_packet_is_counted_once_through_the_real_worker_loop() {
    let dir = scratch_dir("worker-accounting");
    let input = dir.join("in.pcap");
    scapy(&format!(
        r#"
from scapy.all import ARP, ICMP, IP, UDP, Ether, Raw, wrpcap
me, initech = "02:00:00:00:00:01", "02:00:00:00:0c:0c"
def from_initech(inner):
    return Ether(src=initech, dst=me) / IP(src="198.51.100.30", dst="192.0.2.1") / inner
def udp(src, dst, **kw):
    return IP(src=src, dst=dst, **kw) / UDP(sport=1, dport=2) / Raw(b"x" * 18)
frames = []
for i in range({ROUNDS}):
    frames += [
        from_initech(udp("10.3.0.1", "10.1.0.%d" % (i + 1))),     # into acme: port 0
        from_initech(udp("10.3.0.1", "20.0.0.%d" % (i + 1))),     # natively: port 1
        from_initech(udp("10.3.0.1", "10.3.0.9")),                # hairpin
        from_initech(udp("10.3.0.1", "10.1.0.9", ttl=1)),         # ttl_exceeded
        from_initech(udp("10.1.0.5", "10.1.0.9")),                # inner_spoofed
        Ether(src=initech, dst="ff:ff:ff:ff:ff:ff") /
            ARP(op=1, hwsrc=initech, psrc="198.51.100.30", pdst="192.0.2.1"),  # answered
        Ether(src=initech, dst=me) / IP(src="198.51.100.30", dst="192.0.2.1") / UDP(dport=179),  # local
        Ether(src=initech, dst=me) / IP(src="198.51.100.30", dst="192.0.2.1") / ICMP(),  # answered
        Raw(b"\x02\x00\x00\x00\x00\x01\x02"),                     # runt
    ]
assert len(frames) == {ROUNDS} * {PER_ROUND}
wrpcap("{input}", frames)
"#,
        input = input.display()
    ));

    let mut args = pipeline_config::eal_args_no_nic(&file_prefix("accounting"));
    args.push("--lcores=0@0,1@0".into());
    args.push(format!(
        "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
        input.display(),
        dir.join("out.pcap").display()
    ));
    args.push("--vdev=net_ring0".into());
    args.push("--log-level=lib.eal:error".into());
    let eal = Eal::init(&args).expect("EAL starts");
    let pool =
        Mempool::new(&eal, "accounting", 1023, 0, Mempool::default_data_room()).expect("pool");
    let ids = [
        Port::id_by_name(&eal, "net_pcap0").expect("net_pcap0"),
        Port::id_by_name(&eal, "net_ring0").expect("net_ring0"),
    ];
    assert_eq!(ids, [0, 1]);
    let ports: Vec<Port<'_>> = ids
        .iter()
        .map(|&id| Port::start(&eal, id, &PortConfig::default(), &pool).expect("port starts"))
        .collect();
    let cfg = pipeline_config::parse(CONFIG, "accounting.toml").expect("config");
    let macs: Vec<(u16, EthernetAddress)> = cfg
        .ports
        .iter()
        .zip(ids)
        .map(|(p, id)| (id, EthernetAddress(p.mac.expect("mac").0)))
        .collect();
    let mut snapshots = Publisher::new(builder_from_config(&cfg, &macs).build().expect("tables"));
    let reader = std::sync::Mutex::new(Some(snapshots.reader()));

    // A TX queue on port 0 only: what the tables route to port 1 finds none.
    let (mut rx0, mut tx0) = ports[0].take_queues().expect("queues");
    let queues = WorkerQueues {
        rx: vec![(ids[0], rx0.remove(0))],
        tx: vec![Some(tx0.remove(0))],
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
            wait_until(
                Duration::from_secs(20),
                "the whole capture received",
                || progress.rx_packets.load(Ordering::Relaxed) >= ROUNDS * PER_ROUND,
            );
            stop.store(true, Ordering::Relaxed);
        },
    )
    .expect("launch");
    let r = report
        .into_inner()
        .expect("report")
        .expect("the worker reported");
    let c = &r.counters;

    let received: u64 = c.ports.iter().map(|p| p.rx.packets).sum();
    let forwarded: u64 = c.ports.iter().map(|p| p.tx.packets).sum();
    let punted: u64 = c.punts.iter().sum();
    assert_eq!(received, ROUNDS * PER_ROUND, "{r:?}");
    assert_eq!(
        received,
        forwarded + c.total_drops() + punted,
        "received = forwarded + dropped + punted: {r:?}"
    );
    // What the pipeline decided, reason by reason.
    assert_eq!(c.ports[0].tx.packets, ROUNDS, "into acme");
    assert_eq!(c.ports[1].tx.packets, ROUNDS, "natively, as the route says");
    for (reason, n) in [
        (DropReason::Hairpin, ROUNDS),
        (DropReason::TtlExceeded, ROUNDS),
        (DropReason::InnerSpoofed, ROUNDS),
        (DropReason::Runt, ROUNDS),
    ] {
        assert_eq!(c.drop_count(reason), n, "{}", reason.name());
    }
    assert_eq!(
        c.total_drops(),
        4 * ROUNDS,
        "no other drop: {:?}",
        c.nonzero_drops()
    );
    assert_eq!(c.punt_count(PuntReason::Arp), ROUNDS);
    assert_eq!(
        c.punt_count(PuntReason::Local),
        2 * ROUNDS,
        "the UDP and the echo"
    );
    assert_eq!(c.echo_replies, ROUNDS);
    // What the worker did with it: each forwarded packet and ARP reply once to TX, or
    // counted as having no TX queue; the other punts freed and counted.
    assert_eq!(r.arp_replies, ROUNDS);
    assert_eq!(
        r.punt_dropped[PuntReason::Local as usize],
        ROUNDS,
        "the UDP packets: no host interface on this port"
    );
    assert_eq!(r.punt_dropped.iter().sum::<u64>(), ROUNDS);
    assert_eq!(r.host_queued, 0);
    assert_eq!(r.tx_no_queue, ROUNDS, "port 1's packets found no TX queue");
    // The expired TTLs were answered, into initech's tunnel.
    let icmp: u64 = c.icmp_sent.iter().sum();
    assert_eq!(icmp, ROUNDS, "ICMP Time Exceeded for each TTL 1");
    let handed: u64 = r.tx_sent.iter().sum::<u64>() + r.tx_dropped.iter().sum::<u64>();
    assert_eq!(
        forwarded + r.arp_replies + icmp + c.echo_replies,
        handed + r.tx_no_queue,
        "forwarded and answered = TX taken, refused, or no queue: {r:?}"
    );
    assert_eq!(
        r.tx_sent[0],
        4 * ROUNDS,
        "acme's packets, the ARP replies, the ICMP errors, the echo replies"
    );
    drop(ports);
    // What port 0 sent: the packets into acme, the ARP replies, the ICMP errors and the
    // echo replies.
    let out = backbone_tests::pcap::read(&dir.join("out.pcap")).expect("read out.pcap");
    assert_eq!(out.len() as u64, 4 * ROUNDS);
    assert_eq!(
        out.iter().filter(|f| f[12..14] == [0x08, 0x06]).count() as u64,
        ROUNDS,
        "ARP replies"
    );
}
