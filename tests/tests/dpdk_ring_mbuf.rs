//! The safe DPDK layer on a `net_ring` loopback port: a burst comes back unchanged, mbuf
//! prepend/trim round-trip on real mbufs, writes to shared (indirect) mbufs never reach
//! the other holders, the port's counters and extended counters count what went through,
//! TX hands back what it did not take, workers run on every lcore, and no mbuf leaks. One
//! EAL per process: one test, in order.

use backbone_tests::file_prefix;
use dataplane::buffer::{PacketBuf, SharedBuffer};
use dataplane::dpdk::{launch_on_workers, Burst, Eal, Mempool, Port, PortConfig, BURST_MAX};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| i.wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

/// Indirect mbufs (made with `rte_pktmbuf_attach`) share their bytes with the original:
/// writing through either copies first, and the other keeps its bytes; without an mbuf
/// for the copy, nothing is written.
fn shared_buffers_are_copied_before_writing(eal: &Eal, pool: &Mempool<'_>) {
    let bytes = frame(7, 64);

    // data_mut through a clone.
    let original = pool.alloc_with(&bytes).expect("mbuf");
    assert!(!original.is_shared());
    let mut clone = original.clone_indirect(pool).expect("clone");
    assert!(clone.is_shared() && original.is_shared());
    assert_eq!(clone.data(), original.data());
    clone.data_mut()[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&clone.data()[..4], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&clone.data()[4..], &bytes[4..]);
    assert_eq!(
        original.data(),
        &bytes[..],
        "the original's bytes are unchanged"
    );
    assert!(
        !clone.is_shared() && !original.is_shared(),
        "each has its own now"
    );
    drop(clone);

    // prepend through a clone: the original's headroom holds known bytes that must stay.
    let mut original = original;
    original.prepend(4).unwrap().copy_from_slice(&[9, 9, 9, 9]);
    original.trim_front(4).unwrap();
    let mut clone = original.clone_indirect(pool).expect("clone");
    clone.prepend(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(&clone.data()[..4], &[1, 2, 3, 4]);
    assert_eq!(&clone.data()[4..], &bytes[..]);
    assert_eq!(
        original.prepend(4).unwrap(),
        &[9, 9, 9, 9],
        "headroom unchanged"
    );
    original.trim_front(4).unwrap();
    drop(clone);

    // Writing through the original while a clone exists: the clone keeps the old bytes.
    let clone = original.clone_indirect(pool).expect("clone");
    original.data_mut()[0] = 0x55;
    assert_eq!(original.data()[0], 0x55);
    assert_eq!(clone.data(), &bytes[..], "the clone's bytes are unchanged");
    drop((original, clone));
    assert_eq!(pool.in_use(), 0);

    // No mbuf left for the copy: every write is refused and nothing changes.
    let small = Mempool::new(eal, "ring_small", 3, 0, Mempool::default_data_room()).expect("pool");
    let original = small.alloc_with(&bytes).expect("mbuf");
    let mut clone = original.clone_indirect(&small).expect("clone");
    let mut held = Vec::new();
    while let Some(m) = small.alloc() {
        held.push(m);
    }
    assert_eq!(clone.make_writable(), Err(SharedBuffer));
    assert!(clone.data_mut().is_empty(), "no bytes to write");
    assert!(clone.prepend(4).is_err());
    assert!(clone.append(&[1]).is_err());
    assert_eq!(clone.data(), &bytes[..]);
    assert_eq!(original.data(), &bytes[..]);
    // A buffer back in the pool: the copy is made.
    held.pop();
    assert_eq!(clone.make_writable(), Ok(()));
    clone.data_mut()[0] = 0;
    assert_eq!(original.data(), &bytes[..]);
    drop((original, clone, held));
    assert_eq!(small.in_use(), 0);
}

#[test]
fn ring_loopback_mbuf_ops_and_lcores() {
    let mut args = pipeline_config::eal_args_no_nic(&file_prefix("ring"));
    // Two lcores, both on CPU 0, so the test runs on a one-core machine too.
    args.push("--lcores=0@0,1@0".into());
    args.push("--vdev=net_ring0".into());
    let eal = Eal::init(&args).expect("EAL starts");
    assert_eq!(eal.lcore_count(), 2);
    let pool =
        Mempool::new(&eal, "ring_pool", 4095, 0, Mempool::default_data_room()).expect("pool");

    // -- prepend and trim on a real mbuf
    let mut m = pool.alloc_with(&[1, 2, 3, 4]).expect("mbuf");
    let headroom = m.headroom();
    assert_eq!(headroom, 128, "DPDK's default headroom");
    m.prepend(4).unwrap().copy_from_slice(&[9, 9, 9, 9]);
    assert_eq!(m.data(), &[9, 9, 9, 9, 1, 2, 3, 4]);
    assert_eq!(m.pkt_len(), 8);
    m.trim_front(4).unwrap();
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    assert_eq!(m.headroom(), headroom);
    m.trim_back(1).unwrap();
    assert_eq!(m.data(), &[1, 2, 3]);
    assert!(
        m.prepend(headroom + 1).is_err(),
        "beyond the headroom is refused"
    );
    assert!(m.trim_front(4).is_err(), "beyond the length is refused");
    assert_eq!(m.data(), &[1, 2, 3], "refused operations change nothing");
    drop(m);
    assert_eq!(pool.in_use(), 0, "drop frees the mbuf");

    shared_buffers_are_copied_before_writing(&eal, &pool);
    assert_eq!(pool.in_use(), 0, "shared buffers are freed exactly once");

    // -- a burst through the loopback ring comes back unchanged
    let port_id = Port::id_by_name(&eal, "net_ring0").expect("net_ring0 exists");
    let port = Port::start(&eal, port_id, &PortConfig::default(), &pool).expect("port starts");
    assert!(port.link().expect("link").up);
    let (mut rxq, mut txq) = port.take_queues().expect("queues");
    assert!(port.take_queues().is_err(), "queues are handed out once");
    let sent: Vec<Vec<u8>> = (0..BURST_MAX as u8)
        .map(|i| frame(i, 60 + usize::from(i) * 40))
        .collect();
    let mut burst = Burst::new();
    for p in &sent {
        burst
            .push(pool.alloc_with(p).expect("alloc"))
            .expect("room");
    }
    assert!(
        burst.push(pool.alloc().expect("alloc")).is_err(),
        "a full burst hands the mbuf back"
    );
    assert_eq!(txq[0].tx_burst(&mut burst), BURST_MAX);
    assert!(burst.is_empty());
    let mut got = Burst::new();
    let n = rxq[0].rx_burst(&mut got);
    assert_eq!(n, BURST_MAX);
    let received: Vec<Vec<u8>> = got.iter().map(|m| m.data().to_vec()).collect();
    assert_eq!(received, sent);
    drop(got);
    let stats = port.stats().expect("stats");
    assert_eq!(stats.tx_packets, BURST_MAX as u64);
    assert_eq!(stats.rx_packets, BURST_MAX as u64);
    // The extended counters, by name: net_ring has none of its own, so these are ethdev's
    // generic ones from the same counters (it counts no bytes).
    let xstats: HashMap<String, u64> = port.xstats().expect("xstats").into_iter().collect();
    for (name, want) in [
        ("rx_good_packets", BURST_MAX as u64),
        ("tx_good_packets", BURST_MAX as u64),
        ("rx_q0_packets", BURST_MAX as u64),
        ("tx_q0_packets", BURST_MAX as u64),
        ("rx_good_bytes", stats.rx_bytes),
        ("tx_good_bytes", stats.tx_bytes),
        ("rx_errors", 0),
        ("tx_errors", 0),
        ("rx_mbuf_allocation_errors", 0),
    ] {
        assert_eq!(xstats.get(name), Some(&want), "{name}: {xstats:?}");
    }

    // -- an indirect mbuf through the ring comes back indirect, and the pipeline's first
    // step copies it before anything writes
    let original = pool.alloc_with(&sent[0]).expect("alloc");
    let mut burst = Burst::new();
    burst
        .push(original.clone_indirect(&pool).expect("clone"))
        .expect("room");
    assert_eq!(txq[0].tx_burst(&mut burst), 1);
    let mut got = Burst::new();
    assert_eq!(rxq[0].rx_burst(&mut got), 1);
    assert!(
        got[0].is_shared(),
        "the PMD hands the indirect mbuf back as it is"
    );
    got[0].make_writable().expect("a copy");
    assert!(!got[0].is_shared() && !original.is_shared());
    got[0].data_mut().fill(0xee);
    assert_eq!(original.data(), &sent[0][..], "the original is unchanged");
    drop((got, original));
    assert_eq!(pool.in_use(), 0);

    // -- TX that takes only part of a burst hands the rest back: fill the ring (1023 slots).
    let mut pushed = 0usize;
    loop {
        let mut b = Burst::new();
        while let Some(m) = pool.alloc_with(&[0u8; 60]) {
            if b.push(m).is_err() || b.is_full() {
                break;
            }
        }
        let before = b.len();
        assert!(before > 0, "the pool (4095) outlasts the ring (1023 slots)");
        let took = txq[0].tx_burst(&mut b);
        pushed += took;
        assert_eq!(
            b.len(),
            before - took,
            "what TX did not take stays in the burst"
        );
        if took < before {
            break; // `b` drops here and frees the rest
        }
    }
    assert!(pushed > 0);
    // Drain the ring: everything comes back and is freed.
    let mut drained = 0;
    loop {
        let mut b = Burst::new();
        let n = rxq[0].rx_burst(&mut b);
        if n == 0 {
            break;
        }
        drained += n;
    }
    assert_eq!(drained, pushed);
    assert_eq!(pool.in_use(), 0, "no mbuf leaked");

    // -- a function runs on every worker lcore and its results come back
    let ran = AtomicU32::new(0);
    let results = launch_on_workers(&eal, |lcore| {
        ran.fetch_add(1, Ordering::SeqCst);
        i32::try_from(lcore).unwrap_or(-1) + 100
    })
    .expect("launch");
    assert_eq!(results, vec![(1, 101)]);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    drop((rxq, txq));
    drop(port);
    assert_eq!(eal.mbufs_in_use(), 0);
}
