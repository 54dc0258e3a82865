//! The malformed and hostile packet corpus, end to end through the real binary and real
//! DPDK `net_pcap` ports: tests/data/hostile_corpus.py (scapy, a fixed random seed) writes
//! what the client routers and the internet send, and one expected outcome per packet;
//! `backbone run` forwards it until idle; scapy reads back everything it sent.
//!
//! Categories (the generator's docstring has the details): truncation at every header
//! boundary; bad IHL, version and total length, outer and inner; bad outer, inner and GRE
//! checksums; outer and inner fragments; each forbidden GRE bit and version, the ignored
//! reserved bits, other protocol types; wrong, missing and unexpected keys; sequence
//! replays, old numbers, the half-window edge and wrap-around; IPIP in GRE in IPIP (and
//! deeper) addressed to us; martian, unknown and misdirected outer sources; inner sources
//! of other clients; TTL 0, 1 and 2, inner, outer and in transit; CE over Not-ECT; frames
//! above the MTUs and above the mbuf data room (chained by net_pcap); ARP storms, ARP for
//! addresses that are not ours, malformed and spoofed ARP; broadcast and multicast
//! destinations; drops about ICMP errors, non-first fragments and broadcast that get no
//! ICMP error; ICMP Fragmentation Needed from the underlay, forged (a header we never
//! sent), about a non-tunnel packet, and genuine (the tunnels' final MTUs are checked);
//! other EtherTypes.
//!
//! The test fails on any difference: a packet forwarded that should not be, or forwarded
//! differently (every output packet is checked field by field against its input and the
//! egress tunnel's policy), a missing output, any drop counter off by one (every reason is
//! compared), an ARP reply too many or too few, a crash, a non-zero exit, or mbufs still
//! out of the mempool when the binary exits (`backbone_tests::e2e::run_backbone`), or if
//! the binary logs more than its start-up lines (bad packets are counted, not logged).
//!
//! `HOSTILE_VARIANTS` (default 3) sets how many random variants of each randomised case
//! the generator draws; release runs use more (the test plan's 10,000 per category).

use backbone_tests::e2e::{
    check_run, count, generate, lab_toml, port, run_backbone_logged, tunnel, Expected, LAB_OUTPUTS,
};
use backbone_tests::scratch_dir;
use std::collections::BTreeMap;

fn variants() -> u32 {
    std::env::var("HOSTILE_VARIANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[test]
fn every_hostile_packet_gets_its_expected_outcome() {
    let dir = scratch_dir("hostile");
    let captures = [("client-in.pcap", "client0"), ("inet-in.pcap", "internet0")];
    let expected = generate(
        "hostile_corpus.py",
        &dir,
        &captures,
        &format!("corpus:{}", variants()),
    );
    let config = lab_toml(
        "hostile",
        "-l0-1",
        &[1],
        1,
        &[
            "rx_pcap=client-in.pcap,tx_pcap=client-out.pcap,tx_pcap=client-ctl.pcap",
            "rx_pcap=inet-in.pcap,tx_pcap=inet-out.pcap,tx_pcap=inet-ctl.pcap",
        ],
    );
    let (stats, log) = run_backbone_logged(&dir, &config);
    // Hostile packets are counted, never logged: what the binary says at warn level is
    // its few start-up lines, however many packets it refused.
    let lines = log.lines().count();
    assert!(lines <= 20, "{lines} log lines for the corpus:\n{log}");

    check_run(&dir, &stats, &expected, &LAB_OUTPUTS, &captures);

    // The underlay's path MTU messages: each tunnel with a genuine one now sends with that
    // MTU (raised to 576 inside); the forged ones changed no tunnel at all.
    for t in stats["tunnels"].as_array().expect("tunnels") {
        let name = t["name"].as_str().expect("tunnel name");
        let configured = t["configured_mtu"].as_u64().expect("configured_mtu");
        let port_mtu = u64::from(port(tunnel(name).port).mtu);
        let learned = expected
            .iter()
            .filter_map(|e| e.pmtu.as_ref())
            .filter(|(n, _)| n == name)
            .map(|&(_, m)| u64::from(m))
            .min();
        let want = learned.map_or(configured.min(port_mtu), |m| m.min(configured));
        assert_eq!(t["mtu"], want, "tunnel {name}'s MTU: {t}");
        assert_eq!(
            t["path_mtu"],
            serde_json::json!(learned),
            "tunnel {name}: {t}"
        );
    }

    // Nothing arrived broken on the way in: every frame of the captures was received
    // (none lost to rx errors or missing mbufs, the chained jumbo frames included).
    for p in stats["ports"].as_array().expect("ports") {
        assert_eq!(p["rx_errors"], 0, "{p}");
        assert_eq!(p["rx_no_mbuf"], 0, "{p}");
    }

    // The corpus covers what it claims: every category, and in each the outcomes below.
    let mut by_outcome: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &expected {
        *by_outcome.entry(e.expect.as_str()).or_default() += 1;
    }
    for must in [
        "fwd",
        "punt:arp",
        "drop:runt",
        "drop:bad_ipv4",
        "drop:bad_inner_ipv4",
        "drop:bad_gre",
        "drop:bad_gre_checksum",
        "drop:outer_fragment",
        "drop:no_tunnel",
        "drop:gre_sequence",
        "drop:nested_tunnel",
        "drop:martian",
        "drop:inner_spoofed",
        "drop:ttl_exceeded",
        "drop:ecn_ce_not_ect",
        "drop:mtu_exceeded",
        "drop:not_for_us",
        "drop:no_route",
        "drop:martian_destination",
        "drop:oversize_frame",
        "drop:unsupported_inner",
        "drop:unsupported_ethertype",
        "drop:pmtu_not_ours",
        "drop:pmtu_truncated",
        "drop:pmtu_malformed",
        "drop:pmtu_not_smaller",
        "punt:pmtu",
        "punt:local",
    ] {
        assert!(
            by_outcome.get(must).copied().unwrap_or(0) > 0,
            "the corpus has no {must} packet"
        );
    }
    let arp = |pred: fn(&Expected) -> bool| count(&expected, pred);
    assert!(
        arp(|e| e.arp.as_ref().is_some_and(|a| a.reply)) >= 200,
        "an ARP storm"
    );
    assert!(arp(|e| e.arp.as_ref().is_some_and(|a| !a.reply && !a.learned)) > 0);
    assert!(arp(|e| e.arp.as_ref().is_some_and(|a| a.learned)) > 0);
    eprintln!(
        "hostile corpus: {} packets, {} forwarded, {} ARP handled, {} dropped by reason: {:?}",
        expected.len(),
        by_outcome.get("fwd").unwrap_or(&0),
        by_outcome.get("punt:arp").unwrap_or(&0),
        expected
            .iter()
            .filter(|e| e.expect.starts_with("drop:"))
            .count(),
        by_outcome
            .iter()
            .filter(|(k, _)| k.starts_with("drop:"))
            .map(|(k, v)| (&k[5..], *v))
            .collect::<BTreeMap<_, _>>()
    );
}
