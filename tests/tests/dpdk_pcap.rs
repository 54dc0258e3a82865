//! A pcap file read by `net_pcap` and transmitted by `net_pcap` comes out byte-identical.

use backbone_tests::{file_prefix, pcap, scratch_dir};
use dataplane::dpdk::{Burst, Eal, Mempool, Port, PortConfig};

#[test]
fn pcap_rx_to_pcap_tx_is_byte_identical() {
    let dir = scratch_dir("pcap-pass");
    let input = dir.join("in.pcap");
    let output = dir.join("out.pcap");
    // Frames of many sizes, the minimum to a full 1514-byte frame, with varied bytes.
    let packets: Vec<Vec<u8>> = (0..200usize)
        .map(|i| {
            let len = 60 + (i * 37) % 1455;
            (0..len).map(|j| (i * 7 + j * 13) as u8).collect()
        })
        .collect();
    pcap::write(&input, &packets).unwrap();

    let mut args = pipeline_config::eal_args_no_nic(&file_prefix("pcap"));
    args.push(format!(
        "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
        input.display(),
        output.display()
    ));
    let eal = Eal::init(&args).expect("EAL starts");
    let pool =
        Mempool::new(&eal, "pcap_pool", 1023, 0, Mempool::default_data_room()).expect("pool");
    let id = Port::id_by_name(&eal, "net_pcap0").expect("net_pcap0");
    let port = Port::start(&eal, id, &PortConfig::default(), &pool).expect("start");
    {
        let (mut rx, mut tx) = port.take_queues().expect("queues");
        let mut forwarded = 0;
        let mut idle = 0;
        while idle < 100 {
            let mut b = Burst::new();
            if rx[0].rx_burst(&mut b) == 0 {
                idle += 1;
                continue;
            }
            idle = 0;
            let n = b.len();
            while !b.is_empty() {
                tx[0].tx_burst(&mut b);
            }
            forwarded += n;
        }
        assert_eq!(forwarded, packets.len());
    }
    drop(port); // stopping the port closes the capture file
    assert_eq!(pool.in_use(), 0);
    let out = pcap::read(&output).expect("output pcap");
    assert_eq!(out.len(), packets.len());
    assert!(out == packets, "output differs from input");
}
