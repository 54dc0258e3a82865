//! End to end through the real binary and real DPDK `net_pcap` ports: scapy writes what
//! client routers, another edge router and the internet send (tests/data/e2e_traffic.py,
//! which also says what must become of each packet), `backbone run` forwards it until the
//! input is idle, and scapy reads every packet it sent back (tests/data/e2e_dissect.py).
//!
//! Every input packet carries a flow id (`flow=NNNNNN;` in its innermost payload) and has
//! one expected outcome: forwarded into a named tunnel or natively, punted, or dropped under
//! a named SPEC.md reason. The tests check every output packet field by field against the
//! tunnel's policy and the input it came from (so a missing, duplicated or altered packet
//! fails), and the JSON counters reason by reason (so a packet forwarded that should have
//! been dropped, or dropped that should have been forwarded, fails).
//!
//! Drop reasons covered from the wire: all of SPEC.md's but `no_headroom`, which the wire
//! cannot reach: every mbuf has 128 bytes of headroom, and the largest encapsulation
//! prepends 14 + 20 + 16 bytes. Its counter is asserted to stay 0. One `tunnel_loop` case
//! cannot be configured either: an inner destination equal to the egress tunnel's remote
//! (validation refuses a remote routed into a tunnel); the other three are sent.
//!
//! Where SPEC.md and an RFC differ, the RFC wins (SPEC.md says so): on decapsulation, outer
//! ECT(1) over inner ECT(0) gives ECT(1) (RFC 6040 section 4.2, Figure 4), although SPEC.md
//! lists only the CE cases as changing the inner field.
//!
//! Per-tunnel rx counts a packet once its outer headers are stripped (after the GRE checks):
//! `backbone_tests::e2e::AFTER_STRIP` lists the drops that come later.
//!
//! The lab, the runner and the checks live in `backbone_tests::e2e`, shared with
//! tests/tests/hostile_corpus.rs.

use backbone_tests::e2e::{
    check_run, count, generate, lab_toml, run_backbone, Output, LAB_OUTPUTS, TUNNELS,
};
use backbone_tests::scratch_dir;

// ---------------------------------------------------------------------------------------
// The tests.

/// Every drop reason reachable from the wire, every forwarding path (tunnel to tunnel,
/// across the core, to and from the internet), every tunnel policy, one worker.
#[test]
fn every_packet_is_forwarded_exactly_or_dropped_by_name() {
    let dir = scratch_dir("e2e-full");
    let captures = [("client-in.pcap", "client0"), ("inet-in.pcap", "internet0")];
    let expected = generate("e2e_traffic.py", &dir, &captures, "full");
    let config = lab_toml(
        "e2e-full",
        "-l0-1",
        &[1],
        1,
        &[
            "rx_pcap=client-in.pcap,tx_pcap=client-out.pcap,tx_pcap=client-ctl.pcap",
            "rx_pcap=inet-in.pcap,tx_pcap=inet-out.pcap,tx_pcap=inet-ctl.pcap",
        ],
    );
    let stats = run_backbone(&dir, &config);

    let packets = check_run(&dir, &stats, &expected, &LAB_OUTPUTS, &captures);

    // The lab really covers what it says: every SPEC.md drop reason but no_headroom,
    // forwarding into every tunnel with a neighbour, the punts and the events.
    let reasons: Vec<&str> = stats["drops"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for r in &reasons {
        let n = count(&expected, |e| e.expect == format!("drop:{r}"));
        // No headroom and shared buffers come from the buffers, not the bytes: net_pcap's
        // mbufs all have DPDK's headroom and are their own.
        // lan_spoofed needs a LAN port, a client site's router's: tests/cpe_lab.rs and
        // dataplane/tests/cpe.rs reach it. outer_extension_header and bad_ipv6 need a tunnel
        // with IPv6 endpoints: dataplane/tests/ipv6_outer.rs reaches them.
        if *r == "no_headroom"
            || *r == "shared_buffer"
            || *r == "lan_spoofed"
            || *r == "outer_extension_header"
            || *r == "bad_ipv6"
        {
            assert_eq!(n, 0);
        } else {
            assert!(n > 0, "no packet for drop reason {r}");
        }
    }
    assert_eq!(
        reasons.len(),
        33,
        "SPEC.md names 22 drop reasons, and martian_destination, oversize_frame, \
         shared_buffer, the four for the underlay's path MTU messages, bad_inner_ipv6 (IPv6 \
         inside tunnels), a client site's lan_spoofed, and outer_extension_header \
         and bad_ipv6 (IPv6 tunnel endpoints): {reasons:?}"
    );
    for t in TUNNELS.iter().filter(|t| t.name != "nonbr") {
        assert!(
            count(&expected, |e| e.egress.as_deref() == Some(t.name)) > 0,
            "nothing forwarded into {}",
            t.name
        );
    }
    assert!(stats["events"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v.as_u64().unwrap() > 0));
    // The control thread asked for nonbr's next hop (and only on client0).
    let asks = packets
        .iter()
        .filter(|p| p["file"] == "client-ctl.pcap")
        .count();
    assert!(asks >= 1, "an ARP request for 198.51.100.99");
    assert!(!packets.iter().any(|p| p["file"] == "inet-ctl.pcap"));
}

/// Two workers, one RX queue each (net_pcap: one queue per rx_pcap, one TX queue per
/// tx_pcap; the third TX queue is the control thread's): nothing lost or duplicated, both
/// workers busy, sequence numbers of one tunnel unique across the workers.
#[test]
fn two_workers_lose_and_duplicate_nothing() {
    const PER_CAPTURE: usize = 300;
    let dir = scratch_dir("e2e-multi");
    let captures = [
        ("client-a.pcap", "client0"),
        ("client-b.pcap", "client0"),
        ("inet-in.pcap", "internet0"),
    ];
    let expected = generate(
        "e2e_traffic.py",
        &dir,
        &captures,
        &format!("multi:{PER_CAPTURE}"),
    );
    assert_eq!(expected.len(), 2 * PER_CAPTURE);
    // Three lcores on however many CPUs the machine has (two, say): the main lcore and
    // both workers may share one.
    let config = lab_toml(
        "e2e-multi",
        "--lcores=0@0,1@0,2@0",
        &[1, 2],
        2,
        &[
            "rx_pcap=client-a.pcap,rx_pcap=client-b.pcap,tx_pcap=client-out0.pcap,tx_pcap=client-out1.pcap,tx_pcap=client-ctl.pcap",
            "rx_pcap=inet-in.pcap,tx_pcap=inet-out0.pcap,tx_pcap=inet-out1.pcap,tx_pcap=inet-ctl.pcap",
        ],
    );
    let stats = run_backbone(&dir, &config);

    let outputs = [
        Output {
            file: "client-out0.pcap",
            port: "client0",
            worker: true,
        },
        Output {
            file: "client-out1.pcap",
            port: "client0",
            worker: true,
        },
        Output {
            file: "client-ctl.pcap",
            port: "client0",
            worker: false,
        },
        Output {
            file: "inet-out0.pcap",
            port: "internet0",
            worker: true,
        },
        Output {
            file: "inet-out1.pcap",
            port: "internet0",
            worker: true,
        },
        Output {
            file: "inet-ctl.pcap",
            port: "internet0",
            worker: false,
        },
    ];
    let packets = check_run(&dir, &stats, &expected, &outputs, &captures);

    // RX queue q goes to worker q: each worker received exactly its capture, and both sent.
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for (w, cap) in workers.iter().zip(["client-a.pcap", "client-b.pcap"]) {
        let n = count(&expected, |e| e.capture == cap);
        assert_eq!(w["rx_packets"], n, "worker {w}");
        assert!(w["tx_packets"].as_u64().unwrap() > 0, "worker {w}");
    }
    for f in ["client-out0.pcap", "client-out1.pcap"] {
        assert!(
            packets.iter().any(|p| p["file"] == f),
            "worker queue {f} sent nothing"
        );
    }
    // globex's sequence numbers came from both workers.
    for f in ["client-out0.pcap", "client-out1.pcap"] {
        assert!(
            packets.iter().any(|p| p["file"] == f && p["gre"]["s"] == 1),
            "{f}: globex packets"
        );
    }
}
