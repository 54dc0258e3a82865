//! SPEC.md, rule by rule, against [`Pipeline::process`] over [`TestBuf`].
//!
//! Packets are built by scapy (the independent oracle, see `common`), and positive paths
//! are checked by dissecting our output bytes with scapy again. Next to its bad packets,
//! each drop test sends a control packet that differs only in the field under test and
//! must be forwarded, so the test fails if its rule is broken in either direction. Drops
//! also check that exactly their own counter moved. The lab topology (ports, tunnels,
//! routes) is described on [`common::lab_builder`].

mod common;

use common::*;
use dataplane::buffer::{PacketBuf, TestBuf, DEFAULT_HEADROOM};
use dataplane::control::pmtu::{Outcome, PathMtus};
use dataplane::pipeline::{
    Action, Counters, DropReason, Event, Host, IcmpKind, PathMtuReport, Pipeline, PuntReason,
    MAX_BURST,
};
use dataplane::tables::{PortIndex, Snapshot, TunnelId};
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Offsets in a frame that arrives from a tunnel peer.
const ETH: usize = 14;
const OUTER: usize = ETH + 20;

/// GRE from tunnel a's peer: key 100 and sequence number `seq` (none: no S bit).
fn from_a(seq: Option<u32>, inner: &str) -> String {
    match seq {
        Some(s) => format!(
            "e0()/IP(src=RA, dst=L1)/GRE(key_present=1, key=100, seqnum_present=1, \
             sequence_number={s})/{inner}"
        ),
        None => format!("e0()/IP(src=RA, dst=L1)/GRE(key_present=1, key=100)/{inner}"),
    }
}

/// The inner header of a forwarded packet must equal the one sent, except the TTL (one
/// less) and the checksum; the payload must be byte for byte the same.
fn assert_inner_forwarded(sent: &[u8], got: &[u8], case: &str) {
    assert_eq!(got.len(), sent.len(), "{case}: inner length");
    assert_eq!(got[8], sent[8] - 1, "{case}: inner TTL decremented");
    assert!(rfc1071_ok(&got[..20]), "{case}: inner checksum valid");
    for i in (0..20).filter(|i| ![8, 10, 11].contains(i)) {
        assert_eq!(got[i], sent[i], "{case}: inner header byte {i} unchanged");
    }
    assert_eq!(&got[20..], &sent[20..], "{case}: payload unchanged");
}

fn tunnel_id(snap: &Snapshot, name: &str) -> usize {
    snap.tunnels().by_name(name).expect("lab tunnel").index()
}

// =======================================================================================
// Ingress (SPEC.md "Ingress")

#[test]
fn runt_frames_shorter_than_an_ethernet_header_are_dropped() {
    let mut lab = Lab::new();
    lab.expect_drop(CLIENT_PORT, &[], DropReason::Runt, "empty frame");
    let thirteen = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination: port 0's MAC
        0x02, 0x00, 0x00, 0x00, 0xee, 0xee, // source: the peer
        0x08, // EtherType, first byte only: the frame ends here
    ];
    lab.expect_drop(CLIENT_PORT, &thirteen, DropReason::Runt, "13 bytes");
    // A whole Ethernet header is no runt: with no IPv4 header behind it, it is bad_ipv4.
    let fourteen = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination: port 0's MAC
        0x02, 0x00, 0x00, 0x00, 0xee, 0xee, // source: the peer
        0x08, 0x00, // EtherType: IPv4, and no IPv4 header follows
    ];
    lab.expect_drop(CLIENT_PORT, &fourteen, DropReason::BadIpv4, "14 bytes");
}

#[test]
fn frames_longer_than_one_receive_buffer_are_oversize() {
    // A frame that arrived as a chain of mbufs: the pipeline sees the first segment only,
    // so it must not decide on it (its IPv4 length would not fit, or worse, the tail would
    // be sent on without being looked at).
    let f = pkts(&["from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data(1400))"]);
    let mut lab = Lab::new();
    let mut bufs = vec![TestBuf::new(&f[0][..1000]).chained(f[0].len())];
    assert_eq!(
        lab.process(CLIENT_PORT, &mut bufs),
        vec![Action::Drop(DropReason::OversizeFrame)]
    );
    let c = lab.counters();
    assert_eq!(c.drop_count(DropReason::OversizeFrame), 1);
    assert_eq!(
        c.ports[0].rx.bytes,
        f[0].len() as u64,
        "the whole frame counted"
    );
    lab.expect_transmit(CLIENT_PORT, &f[0], "control: the same frame in one buffer");
}

#[test]
fn shared_buffers_that_cannot_be_copied_are_dropped_untouched() {
    // A buffer that shares its bytes with other packets (an indirect mbuf) and cannot be
    // copied (its pool is empty): forwarding writes to it (TTL, headers), so it is dropped
    // before any stage looks at it, and its bytes stay as they were.
    let f = pkts(&["from_b(IP(src='10.2.0.5', dst='8.8.8.8'))"]);
    let mut lab = Lab::new();
    let mut bufs = vec![TestBuf::new(&f[0]).shared()];
    assert_eq!(
        lab.process(CLIENT_PORT, &mut bufs),
        vec![Action::Drop(DropReason::SharedBuffer)]
    );
    assert_eq!(bufs[0].data(), &f[0][..], "nothing written");
    let c = lab.counters();
    assert_eq!(c.drop_count(DropReason::SharedBuffer), 1);
    assert_eq!(
        c.ports[0].rx.bytes,
        f[0].len() as u64,
        "received and counted"
    );
    lab.expect_transmit(
        CLIENT_PORT,
        &f[0],
        "control: the same frame in its own buffer",
    );
}

#[test]
fn frames_for_another_mac_are_not_for_us() {
    let inner = "IP(src=RB, dst=L1)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let f = pkts(&[
        format!("Ether(dst='02:00:00:00:00:99', src=PEER)/{inner}"),
        format!("Ether(dst='ff:ff:ff:ff:ff:ff', src=PEER)/{inner}"),
        format!("Ether(dst='01:00:5e:00:00:01', src=PEER)/{inner}"),
        format!("Ether(dst=P1, src=PEER)/{inner}"),
        "Ether(dst='02:00:00:00:00:99', src=PEER)/ARP(op=1, hwsrc=PEER, psrc=RB, pdst=L1)".into(),
        format!("e0()/{inner}"),
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "another unicast MAC",
        "IPv4 to the broadcast MAC",
        "multicast MAC",
        "port 1's MAC arriving on port 0",
        "ARP to another MAC",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::NotForUs, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[5], "control: port 0's MAC");
}

#[test]
fn packets_not_for_us_need_transit_on_the_port() {
    let f = pkts(&[
        "e0()/IP(src='8.8.4.4', dst='8.8.8.8')/data()",
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8')/data()",
    ]);
    let mut lab = Lab::new();
    lab.expect_drop(
        CLIENT_PORT,
        &f[0],
        DropReason::NotForUs,
        "not ours, port 0 has no transit",
    );
    let (port, _) = lab.expect_transmit(CORE_PORT, &f[1], "control: port 1 allows transit");
    assert_eq!(port, CORE_PORT);
}

#[test]
fn ethertypes_other_than_ipv4_ipv6_and_arp_are_unsupported() {
    let f = pkts(&[
        "e0()/Dot1Q(vlan=10)/IP(src=RB, dst=L1)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data()",
        "Ether(dst=P0, src=PEER, type=0x88cc)/Raw(bytes(46))",
        "e0()/IP(src=RB, dst=L1)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data()",
        "e0()/IPv6(src='2001:db8::1', dst='2001:db8::2')/UDP()",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip(["802.1Q tag", "LLDP"]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::UnsupportedEthertype, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[2], "control: the tagged packet, untagged");
    // IPv6 is handled: not ours, and port 0 allows no transit (ipv6_ports.rs has the rest).
    lab.expect_drop(CLIENT_PORT, &f[3], DropReason::NotForUs, "IPv6");
}

#[test]
fn invalid_outer_ipv4_headers_are_bad_ipv4() {
    let rest = "GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let f = pkts(&[
        format!("e0()/IP(src=RB, dst=L1)/{rest}"),
        format!("e0()/IP(version=6, src=RB, dst=L1)/{rest}"),
        format!("e0()/IP(ihl=4, src=RB, dst=L1)/{rest}"),
        format!("e0()/IP(len=19, src=RB, dst=L1)/{rest}"),
        format!("e0()/IP(len=200, src=RB, dst=L1)/{rest}"),
        format!("e0()/IP(chksum=0x0bad, src=RB, dst=L1)/{rest}"),
    ]);
    assert!(
        !rfc1071_ok(&f[5][ETH..OUTER]),
        "the test's bad checksum must be bad"
    );
    let mut lab = Lab::new();
    lab.expect_transmit(CLIENT_PORT, &f[0], "control: valid header");
    for (frame, case) in f[1..].iter().zip([
        "version 6",
        "IHL 4",
        "total length 19, shorter than the header",
        "total length 200, beyond the frame",
        "bad header checksum",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::BadIpv4, case);
    }
    lab.expect_drop(
        CLIENT_PORT,
        &f[0][..ETH + 19],
        DropReason::BadIpv4,
        "19 bytes of IPv4 header",
    );
}

#[test]
fn martian_outer_sources_are_dropped() {
    let srcs = [
        ("0.1.2.3", "0/8"),
        ("127.0.0.1", "127/8"),
        ("224.0.0.5", "multicast 224/4"),
        ("239.255.255.250", "multicast 224/4, top"),
        ("240.0.0.1", "reserved 240/4"),
        ("255.255.255.255", "limited broadcast"),
    ];
    let mut exprs: Vec<String> = srcs
        .iter()
        .map(|(s, _)| {
            format!("e0()/IP(src='{s}', dst=L1)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data()")
        })
        .collect();
    exprs.push("from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data())".into());
    let f = pkts(&exprs);
    let mut lab = Lab::new();
    for (frame, (_, case)) in f.iter().zip(srcs) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::Martian, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[6], "control: a unicast source");
}

#[test]
fn outer_fragments_addressed_to_us_are_dropped() {
    let rest = "GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let f = pkts(&[
        format!("e0()/IP(src=RB, dst=L1, flags='MF')/{rest}"),
        format!("e0()/IP(src=RB, dst=L1, frag=100)/{rest}"),
        format!("e0()/IP(src=RB, dst=L1, flags='MF', frag=1)/{rest}"),
        "e0()/IP(src=RB, dst=L2, flags='MF')/ICMP()/Raw(bytes(8))".into(),
        format!("e0()/IP(src=RB, dst=L1, flags='DF')/{rest}"),
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "MF set",
        "offset 800",
        "MF and offset 8",
        "an ICMP fragment to us",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::OuterFragment, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[4], "control: DF is not a fragment");
}

#[test]
fn non_tunnel_packets_to_us_are_punted_local_from_the_ipv4_header() {
    let f = pkts(&[
        "e0()/IP(src=RB, dst=L1)/TCP(sport=40000, dport=22, flags='S')/Raw(b'ssh')",
        "e0()/IP(src=RB, dst=L2)/UDP(sport=5000, dport=179)/Raw(b'bgp')",
        "e1()/IP(src='8.8.4.4', dst=LC)/ICMP(type=13)",
    ]);
    let mut lab = Lab::new();
    for (port, frame, case) in [
        (CLIENT_PORT, &f[0], "TCP to our tunnel endpoint"),
        (CLIENT_PORT, &f[1], "UDP to our second address"),
        (
            CORE_PORT,
            &f[2],
            "ICMP timestamp to our core address (transit port)",
        ),
    ] {
        let out = lab.expect_punt(port, frame, PuntReason::Local, case);
        // PuntReason::Local: "data starts at the IPv4 header".
        assert_eq!(
            out,
            frame[ETH..],
            "{case}: the punted data is the IPv4 packet"
        );
    }
    assert_conserved(lab.counters());
}

#[test]
fn arp_for_the_port_is_punted_from_the_ethernet_header() {
    let f = pkts(&[
        "Ether(dst='ff:ff:ff:ff:ff:ff', src=PEER)/ARP(op=1, hwsrc=PEER, psrc=RB, pdst=L1)",
        "Ether(dst=P0, src=PEER)/ARP(op=2, hwsrc=PEER, psrc=RB, hwdst=P0, pdst=L1)",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip(["broadcast request", "unicast reply to us"]) {
        let out = lab.expect_punt(CLIENT_PORT, frame, PuntReason::Arp, case);
        assert_eq!(&out, frame, "{case}: ARP punts start at Ethernet");
    }
}

// =======================================================================================
// Tunnel termination (SPEC.md "Tunnel termination")

#[test]
fn only_configured_tunnels_are_decapsulated() {
    let inner_a = "IP(src='10.1.0.5', dst='8.8.8.8')/data()";
    let inner_b = "IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let f = pkts(&[
        format!("e0()/IP(src='198.51.100.99', dst=L1)/GRE()/{inner_b}"),
        format!("e0()/IP(src=RB, dst=L2)/GRE()/{inner_b}"),
        format!(
            "e0()/IP(src=RA, dst=L1)/GRE(key_present=1, key=101, seqnum_present=1, \
             sequence_number=1)/{inner_a}"
        ),
        format!("e0()/IP(src=RA, dst=L1)/GRE(seqnum_present=1, sequence_number=1)/{inner_a}"),
        format!("e0()/IP(src=RB, dst=L1)/GRE(key_present=1, key=0)/{inner_b}"),
        format!("e0()/IP(src=RB, dst=L1)/{inner_b}"),
        "e0()/IP(src=RC, dst=L1)/GRE()/IP(src='10.3.0.5', dst='8.8.8.8')/data()".into(),
        from_a(Some(1), inner_a),
        format!("e0()/IP(src=RB, dst=L1)/GRE()/{inner_b}"),
        // Tunnel b's packet, right in every field, on the core port instead of b's port.
        format!("e1()/IP(src=RB, dst=L1)/GRE()/{inner_b}"),
        // The edge tunnel's packet on its own (core) port: the control.
        "e1()/IP(src=RX, dst=LC)/GRE(key_present=1, key=7)/IP(src='10.99.0.5', dst='8.8.8.8')/data()".into(),
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "unknown source",
        "known source to our other address",
        "wrong key",
        "missing key on a keyed tunnel",
        "key (0) on a keyless tunnel",
        "IPIP from a GRE-only peer",
        "GRE from an IPIP-only peer",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::NoTunnel, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[7], "control: right key");
    lab.expect_transmit(CLIENT_PORT, &f[8], "control: keyless");
    lab.expect_drop(
        CORE_PORT,
        &f[9],
        DropReason::NoTunnel,
        "a tunnel's packet on another port",
    );
    lab.expect_transmit(
        CORE_PORT,
        &f[10],
        "control: the edge tunnel on the core port",
    );
}

#[test]
fn gre_version_forbidden_bits_and_truncation_are_bad_gre() {
    let inner = "IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let mut exprs: Vec<(String, String)> = (1..=7)
        .map(|v| {
            (
                format!("from_b({inner}, version={v})"),
                format!("version {v}"),
            )
        })
        .collect();
    for (kw, case) in [
        ("routing_present=1", "bit 1: routing present"),
        ("strict_route_source=1", "bit 4: strict source route"),
        ("recursion_control=4", "bit 5: recursion control high bit"),
    ] {
        exprs.push((format!("from_b({inner}, {kw})"), case.into()));
    }
    for (payload, case) in [
        ("Raw(bytes(0))", "no GRE header at all"),
        ("Raw(bytes(2))", "2 bytes of GRE header"),
        ("Raw(bytes.fromhex('20000800'))", "K set, key missing"),
        ("Raw(bytes.fromhex('80000800'))", "C set, checksum missing"),
        (
            "Raw(bytes.fromhex('b0000800') + bytes(8))",
            "C, K and S set, sequence missing",
        ),
    ] {
        exprs.push((
            format!("e0()/IP(src=RB, dst=L1, proto=47)/{payload}"),
            format!("truncated: {case}"),
        ));
    }
    exprs.push((format!("from_b({inner})"), "control".into()));
    let f = pkts(&exprs.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>());
    let mut lab = Lab::new();
    let n = f.len() - 1;
    for (frame, (_, case)) in f[..n].iter().zip(&exprs) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::BadGre, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[n], "control: version 0, no forbidden bits");
    assert_eq!(lab.counters().event_count(Event::GreReservedIgnored), 0);
}

/// SPEC.md tunnel termination step 2: the header is checked before the tunnel lookup, so
/// a bad header on a keyed tunnel is `bad_gre` (or `bad_gre_checksum`), never `no_tunnel`
/// because its layout put the key somewhere else.
#[test]
fn gre_header_checks_come_before_the_keyed_tunnel_lookup() {
    // Tunnel d: GRE, key 400, no sequence numbers, no checksum.
    let inner = "IP(src='10.4.0.5', dst='8.8.8.8')/data()";
    let from_d = |gre: &str| format!("e0()/IP(src=RD, dst=L1)/GRE(key_present=1, {gre})/{inner}");
    let mut exprs: Vec<(String, String)> = vec![
        // RFC 1701 puts the checksum and offset words before the key when R is set.
        (
            from_d("key=400, routing_present=1"),
            "bit 1 (R): the key moves".into(),
        ),
        (from_d("key=400, strict_route_source=1"), "bit 4 (s)".into()),
        (
            from_d("key=400, recursion_control=4"),
            "bit 5 (recursion)".into(),
        ),
        (
            from_d("key=400, routing_present=1, strict_route_source=1, recursion_control=7"),
            "bits 1, 4 and 5".into(),
        ),
    ];
    for v in 1..=7 {
        exprs.push((
            from_d(&format!("key=400, version={v}")),
            format!("version {v}"),
        ));
    }
    // PPTP (RFC 2637): version 1, K set, the key field holds payload length and call id.
    exprs.push((
        "e0()/IP(src=RD, dst=L1)/GRE(key_present=1, version=1, proto=0x880b, \
         key=0x00100005)/Raw(b'ppp-payload.....')"
            .to_string(),
        "PPTP enhanced GRE".into(),
    ));
    let n = exprs.len();
    exprs.push((from_d("key=400"), "control: tunnel d".into()));
    // Tunnel a: key 100, sequence numbers and checksums.
    exprs.push((
        "e0()/IP(src=RA, dst=L1)/GRE(chksum_present=1, key_present=1, key=100, \
         seqnum_present=1, sequence_number=1)/IP(src='10.1.0.5', dst='8.8.8.8')/data()"
            .to_string(),
        "control: tunnel a".into(),
    ));
    let f = pkts(&exprs.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>());
    let mut lab = Lab::new();
    for (frame, (_, case)) in f[..n].iter().zip(&exprs) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::BadGre, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[n], "control: a good header on tunnel d");
    // A key corrupted on the way, with the checksum that covers it: the checksum says so.
    let mut corrupted = f[n + 1].clone();
    assert!(rfc1071_ok(&corrupted[OUTER..]), "scapy's checksum is good");
    corrupted[OUTER + 8 + 3] ^= 0x01; // key 100 -> 101: no tunnel has it
    lab.expect_drop(
        CLIENT_PORT,
        &corrupted,
        DropReason::BadGreChecksum,
        "corrupted key, C set",
    );
    lab.expect_transmit(CLIENT_PORT, &f[n + 1], "control: tunnel a, intact");
}

#[test]
fn gre_bits_6_to_12_are_ignored_but_counted() {
    let inner = "IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let variants = [
        "recursion_control=2", // bit 6
        "recursion_control=1", // bit 7
        "flags=16",            // bit 8
        "flags=8",             // bit 9
        "flags=4",             // bit 10
        "flags=2",             // bit 11
        "flags=1",             // bit 12
        "recursion_control=3, flags=31",
    ];
    let mut exprs: Vec<String> = variants
        .iter()
        .map(|kw| format!("from_b({inner}, {kw})"))
        .collect();
    exprs.push(format!("from_b({inner})"));
    let f = pkts(&exprs);
    let mut lab = Lab::new();
    let (_, clean) = lab.expect_transmit(CLIENT_PORT, &f[8], "no reserved bits");
    assert_eq!(lab.counters().event_count(Event::GreReservedIgnored), 0);
    for (frame, kw) in f.iter().zip(variants) {
        assert_ne!(&frame[OUTER..OUTER + 2], &[0, 0], "{kw}: a bit is set");
        let (port, out) = lab.expect_transmit(CLIENT_PORT, frame, kw);
        assert_eq!(port, CORE_PORT);
        assert_eq!(out, clean, "{kw}: forwarded exactly as without the bits");
    }
    assert_eq!(
        lab.counters().event_count(Event::GreReservedIgnored),
        variants.len() as u64
    );
}

#[test]
fn gre_payloads_other_than_ipv4_and_ipv6_are_unsupported_inner() {
    let f = pkts(&[
        "from_b(IPv6(src='2001:db8:2::1', dst='2001:db8:3::2')/UDP(), proto=0x88be)",
        "from_b(Ether(dst=P0, src=PEER)/IP(src='10.2.0.5', dst='8.8.8.8'), proto=0x6558)",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data(), proto=0)",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data(), proto=0x0800)",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "ERSPAN (0x88BE) over an IPv6 packet",
        "transparent Ethernet bridging (0x6558)",
        "protocol type 0 over an IPv4 packet",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::UnsupportedInner, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[3], "control: 0x0800");
}

#[test]
fn gre_checksums_are_verified_when_present() {
    let inner = "IP(src='10.2.0.5', dst='8.8.8.8')/data()";
    let f = pkts(&[
        format!("from_b({inner}, chksum_present=1)"),
        format!("from_b({inner}, chksum_present=1, chksum=0xdead)"),
    ]);
    assert!(rfc1071_ok(&f[0][OUTER..]), "scapy's checksum is good");
    assert!(
        !rfc1071_ok(&f[1][OUTER..]),
        "the test's bad checksum is bad"
    );
    let mut corrupted = f[0].clone();
    // Last payload byte: the inner IPv4 checksum does not cover it, the GRE one does.
    *corrupted.last_mut().unwrap() ^= 0xff;
    let mut lab = Lab::new();
    lab.expect_transmit(CLIENT_PORT, &f[0], "control: good checksum");
    lab.expect_drop(
        CLIENT_PORT,
        &f[1],
        DropReason::BadGreChecksum,
        "wrong checksum",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &corrupted,
        DropReason::BadGreChecksum,
        "corrupted payload",
    );
}

#[test]
fn gre_sequence_numbers_are_required_and_must_advance() {
    let inner = "IP(src='10.1.0.5', dst='8.8.8.8')/data()";
    const W: u32 = dataplane::tables::tunnel::SEQUENCE_WINDOW;
    // SPEC.md: later than the last accepted (serial arithmetic). Beyond a small window
    // (CONFIG.md), a number is followed only when the next one confirms it, so that one
    // forged packet costs the real sender at most the window.
    let far = 7 + W + 5000;
    let seqs: [(Option<u32>, Option<DropReason>, &str); 12] = [
        (Some(5), None, "first number"),
        (Some(5), Some(DropReason::GreSequence), "replay"),
        (Some(4), Some(DropReason::GreSequence), "older"),
        (None, Some(DropReason::GreSequence), "S missing"),
        (Some(6), None, "next"),
        (
            Some(6 + (1 << 31) - 1),
            Some(DropReason::GreSequence),
            "one number 2^31 - 1 ahead",
        ),
        (Some(7), None, "the sender goes on"),
        (Some(7 + W), None, "a gap of the whole window"),
        (Some(7 + W + 2), None, "and a little more"),
        (Some(far), Some(DropReason::GreSequence), "far ahead"),
        (Some(far + 1), None, "and the next one: followed"),
        (Some(7 + W + 3), Some(DropReason::GreSequence), "now behind"),
    ];
    let mut exprs: Vec<String> = seqs.iter().map(|(s, _, _)| from_a(*s, inner)).collect();
    // Packets dropped after the GRE checks must not move the window: a bad GRE checksum,
    // a bad inner header, a spoofed inner source, an inner TTL of 1. Each carries the next
    // number, which a good packet then still gets.
    let n = seqs.len();
    exprs.push(format!(
        "e0()/IP(src=RA, dst=L1)/GRE(chksum_present=1, chksum=0xdead, key_present=1, \
         key=100, seqnum_present=1, sequence_number={})/{inner}",
        far + 2
    ));
    exprs.push(from_a(
        Some(far + 2),
        "IP(src='10.1.0.5', dst='8.8.8.8', chksum=0x1234)/data()",
    ));
    exprs.push(from_a(
        Some(far + 2),
        "IP(src='10.2.0.5', dst='8.8.8.8')/data()",
    ));
    exprs.push(from_a(
        Some(far + 2),
        "IP(src='10.1.0.5', dst='8.8.8.8', ttl=1)/data()",
    ));
    exprs.push(from_a(Some(far + 2), inner));
    // An unconfirmed jump is remembered only from a packet that passes every other check:
    // a spoofed one far ahead, then its successor, which is then not a confirmation.
    let jump = far + 1_000_000;
    exprs.push(from_a(
        Some(jump),
        "IP(src='10.2.0.5', dst='8.8.8.8')/data()",
    ));
    exprs.push(from_a(Some(jump + 1), inner));
    exprs.push(from_a(Some(far + 3), inner));
    // Wrap-around, on a fresh tunnel state.
    exprs.push(from_a(Some(u32::MAX), inner));
    exprs.push(from_a(Some(0), inner));
    exprs.push(from_a(Some(u32::MAX), inner));
    let f = pkts(&exprs);
    assert!(
        !rfc1071_ok(&f[n][OUTER..]),
        "the test's bad GRE checksum is bad"
    );
    let mut lab = Lab::new();
    for (frame, (_, want, case)) in f.iter().zip(seqs) {
        match want {
            None => {
                lab.expect_transmit(CLIENT_PORT, frame, case);
            }
            Some(r) => lab.expect_drop(CLIENT_PORT, frame, r, case),
        }
    }
    for (i, (reason, case)) in [
        (DropReason::BadGreChecksum, "bad GRE checksum"),
        (DropReason::BadInnerIpv4, "bad inner checksum"),
        (DropReason::InnerSpoofed, "spoofed inner source"),
        (DropReason::TtlExceeded, "inner TTL 1"),
    ]
    .into_iter()
    .enumerate()
    {
        if reason == DropReason::TtlExceeded {
            let k = IcmpKind::TimeExceeded;
            lab.expect_icmp(CLIENT_PORT, &f[n + i], reason, k, case);
        } else {
            lab.expect_drop(CLIENT_PORT, &f[n + i], reason, case);
        }
    }
    lab.expect_transmit(
        CLIENT_PORT,
        &f[n + 4],
        "the dropped packets did not advance the window",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[n + 5],
        DropReason::GreSequence,
        "a spoofed packet far ahead: the sequence is named first",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[n + 6],
        DropReason::GreSequence,
        "its successor confirms nothing",
    );
    lab.expect_transmit(CLIENT_PORT, &f[n + 7], "the real sender goes on");

    let mut lab = Lab::new();
    lab.expect_transmit(CLIENT_PORT, &f[n + 8], "2^32 - 1 first");
    lab.expect_transmit(CLIENT_PORT, &f[n + 9], "0 after 2^32 - 1 (wrap-around)");
    lab.expect_drop(
        CLIENT_PORT,
        &f[n + 10],
        DropReason::GreSequence,
        "2^32 - 1 after 0",
    );
}

#[test]
fn invalid_inner_ipv4_headers_are_bad_inner_ipv4() {
    let d = "data()";
    let exprs = [
        format!("from_b(IP(version=6, src='10.2.0.5', dst='8.8.8.8')/{d}, proto=0x0800)"),
        format!("from_b(IP(ihl=4, src='10.2.0.5', dst='8.8.8.8')/{d})"),
        format!("from_b(IP(len=19, src='10.2.0.5', dst='8.8.8.8')/{d})"),
        format!("from_b(IP(len=200, src='10.2.0.5', dst='8.8.8.8')/{d})"),
        format!("from_b(IP(chksum=0x0bad, src='10.2.0.5', dst='8.8.8.8')/{d})"),
        "from_b(Raw(bytes.fromhex('4500')), proto=0x0800)".into(),
        "e0()/IP(src=RB, dst=L1)/GRE(proto=0x0800)".into(),
        format!("e0()/IP(src=RC, dst=L1)/IP(chksum=0x0bad, src='10.3.0.5', dst='8.8.8.8')/{d}"),
        format!("from_b(IP(src='10.2.0.5', dst='8.8.8.8')/{d})"),
    ];
    let f = pkts(&exprs);
    assert!(
        !rfc1071_ok(&f[4][OUTER + 4..OUTER + 24]),
        "bad checksum is bad"
    );
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "version 6",
        "IHL 4",
        "total length shorter than the header",
        "total length beyond what remains",
        "bad header checksum",
        "2 bytes of inner header",
        "no inner packet",
        "bad checksum inside IPIP",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::BadInnerIpv4, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[8], "control");
}

#[test]
fn tunnel_packets_inside_tunnels_to_us_are_nested_tunnel() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst=L1)/IP(src='10.2.0.5', dst='8.8.8.8')/data())",
        "from_b(IP(src='10.2.0.5', dst=L2)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')/data())",
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst=L1)/GRE()/\
         IP(src='10.3.0.5', dst='8.8.8.8')/data()",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/IP(src='10.2.0.5', dst='8.8.4.4')/data())",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "IPIP in GRE to our endpoint",
        "GRE in GRE to our other address",
        "GRE in IPIP to our endpoint",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::NestedTunnel, case);
    }
    // To a third party, a tunnel packet is the client's traffic: forwarded, not opened.
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[3], "IPIP in GRE to a third party");
    check_fields(
        "nested, third party",
        &out,
        &[
            ("p[IP].dst", "8.8.8.8"),
            ("p[IP].proto", "4"),
            ("p[IP:2].dst", "8.8.4.4"),
        ],
    );
}

#[test]
fn inner_packets_to_us_are_punted_local_inner_from_the_inner_header() {
    let inners = [
        "IP(src='10.2.0.5', dst=L1)/TCP(sport=179, dport=40000, flags='S')/Raw(b'bgp')",
        "IP(src='10.2.0.5', dst=L2)/UDP(sport=5000, dport=179)/Raw(b'bgp')",
    ];
    let mut exprs: Vec<String> = inners.iter().map(|i| format!("from_b({i})")).collect();
    exprs.extend(inners.iter().map(|i| i.to_string()));
    let f = pkts(&exprs);
    let mut lab = Lab::new();
    for i in 0..2 {
        let out = lab.expect_punt(CLIENT_PORT, &f[i], PuntReason::LocalInner, inners[i]);
        assert_eq!(
            out,
            f[2 + i],
            "the control path gets the inner packet as sent"
        );
    }
    assert_conserved(lab.counters());
}

#[test]
fn inner_sources_outside_the_tunnels_prefixes_are_spoofed() {
    let f = pkts(&[
        "from_b(IP(src='10.1.0.5', dst='8.8.8.8')/data())",
        "from_b(IP(src='10.3.0.5', dst='8.8.8.8')/data())",
        "from_b(IP(src='203.0.113.99', dst='8.8.8.8')/data())",
        "from_b(IP(src='172.16.3.1', dst='8.8.8.8')/data())",
        "e0()/IP(src=RC, dst=L1)/IP(src='10.2.0.5', dst='8.8.8.8')/data()",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data())",
        "from_b(IP(src='172.16.2.9', dst='8.8.8.8')/data())",
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='8.8.8.8')/data()",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "b sends as a's client",
        "b sends as c's client",
        "b sends as nobody's address",
        "b sends just outside its extra sources",
        "c (IPIP) sends as b's client",
    ]) {
        lab.expect_drop(CLIENT_PORT, frame, DropReason::InnerSpoofed, case);
    }
    lab.expect_transmit(CLIENT_PORT, &f[5], "control: b's own prefix");
    lab.expect_transmit(CLIENT_PORT, &f[6], "control: b's extra source prefix");
    lab.expect_transmit(CLIENT_PORT, &f[7], "control: c's own prefix");
}

/// SPEC.md tunnel termination step 5: a Cisco GRE keepalive (`keepalive 10 3` on the
/// router's tunnel) is a GRE packet whose inner IPv4 packet goes from our endpoint back to
/// the router, carrying a GRE header with protocol type 0. We send that inner packet back
/// natively, toward the router's underlay next hop, whatever the routes say about the
/// router's address; the source check and the loop rules do not apply to it.
#[test]
fn client_keepalives_are_reflected_natively_to_the_router() {
    let keepalive = |remote: &str, gre: &str| {
        format!("IP(src=L1, dst={remote}, ttl=255, id=0, flags=0)/GRE({gre}proto=0)")
    };
    let inner_b = keepalive("RB", "");
    let inner_a = keepalive("RA", "key_present=1, key=100, ");
    let inner_e = keepalive("RE", "");
    let f = pkts(&[
        format!("from_b({inner_b})"),
        inner_b.clone(),
        from_a(Some(9), &inner_a),
        inner_a.clone(),
        format!("e0()/IP(src=RE, dst=L1)/GRE()/{inner_e}"),
        // Not keepalives: from our endpoint to another router, or from b's router to
        // itself through b.
        format!("from_b({})", keepalive("RA", "")),
        "from_b(IP(src=RB, dst=RB)/GRE(proto=0))".into(),
    ]);
    let mut lab = Lab::new();
    let cases = [
        (
            0,
            1,
            RB,
            "tunnel b (plain GRE); 198.51.100.0/24 is routed to port 1",
        ),
        (2, 3, RA, "tunnel a (key, sequence, checksum)"),
    ];
    for (sent, inner, remote, case) in cases {
        let (port, out) = lab.expect_transmit(CLIENT_PORT, &f[sent], case);
        assert_eq!(port, CLIENT_PORT, "{case}: back out of the tunnel's port");
        assert_eq!(
            &out[..6],
            &remote_mac(remote.octets()[3]).0,
            "{case}: to the router"
        );
        assert_inner_forwarded(&f[inner], &out[ETH..], case);
        check_fields(
            case,
            &out,
            &[
                ("p[IP].src", "192.0.2.1"),
                ("p[IP].dst", &remote.to_string()),
                ("p[IP].proto", "47"),
                ("p[GRE].proto", "0"),
            ],
        );
    }
    // Tunnel e's endpoint is routed into tunnel e itself (a loop for anything else).
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &f[4], "tunnel e, routed into itself");
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(&out[..6], &remote_mac(RE.octets()[3]).0);
    assert_eq!(
        lab.counters().event_count(Event::KeepalivesReflected),
        3,
        "counted"
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[5],
        DropReason::InnerSpoofed,
        "from our endpoint to another router",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[6],
        DropReason::InnerSpoofed,
        "from the router to itself",
    );
    assert_eq!(lab.counters().event_count(Event::KeepalivesReflected), 3);
    assert_conserved(lab.counters());
}

/// SPEC.md tunnel termination step 6: native packets arriving on a client-role port get
/// the tunnels' source check against the clients whose tunnels use that port.
#[test]
fn native_packets_on_client_ports_get_the_source_check() {
    let transit_on_port0 = |internet: bool| {
        let mut lab = Lab::new();
        let mut p0 = lab.snap.port(CLIENT_PORT).unwrap().clone();
        p0.transit = true;
        p0.roles.internet = internet;
        lab.builder.port(CLIENT_PORT, p0);
        lab.snap = lab.builder.build().unwrap();
        lab
    };
    let f = pkts(&[
        "e0()/IP(src='10.2.0.5', dst='8.8.8.8')/data()",
        "e0()/IP(src='10.3.0.5', dst='8.8.8.8')/data()",
        "e0()/IP(src='10.99.0.5', dst='8.8.8.8')/data()",
        "e0()/IP(src='8.8.4.4', dst='8.8.8.8')/data()",
        "e1()/IP(src='10.2.0.5', dst='8.8.8.8')/data()",
    ]);
    let mut lab = transit_on_port0(false);
    lab.expect_transmit(CLIENT_PORT, &f[0], "b's client, b's tunnel is on this port");
    lab.expect_transmit(CLIENT_PORT, &f[1], "c's client (IPIP), also on this port");
    lab.expect_drop(
        CLIENT_PORT,
        &f[2],
        DropReason::InnerSpoofed,
        "the edge tunnel's prefix: that tunnel is on port 1",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[3],
        DropReason::InnerSpoofed,
        "nobody's address on a client-only port",
    );
    let mut lab = transit_on_port0(true);
    lab.expect_transmit(
        CLIENT_PORT,
        &f[3],
        "nobody's address, port 0 is also internet",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[2],
        DropReason::InnerSpoofed,
        "another port's client, even on an internet port",
    );
    lab.expect_transmit(CORE_PORT, &f[4], "port 1 is no client port: no check");
    assert_conserved(lab.counters());
}

/// SPEC.md encapsulation step 1, RFC 6864: no two workers, nor a worker and the exception
/// path (what the host sends into a tunnel), ever write the same outer identification, for
/// any worker count.
#[test]
fn workers_write_disjoint_outer_identifications() {
    // Tunnel d copies DF: clear here, so the identification matters.
    let frame = pkt(
        "e0()/IP(src=RA, dst=L1)/GRE(key_present=1, key=100, seqnum_present=1, \
                     sequence_number=1)/IP(src='10.1.0.5', dst='10.4.0.9', flags=0)/data()",
    );
    let mut lab = Lab::new();
    for workers in [2usize, 3, 16] {
        let per_worker = 6000;
        let mut seen: std::collections::HashMap<u16, usize> = Default::default();
        // The last writer is the exception path, sending the inner packet into tunnel d.
        let d = lab.snap.tunnels().by_name("d").expect("tunnel d");
        for w in 0..=workers {
            let host = w == workers;
            let mut pipe = match host {
                false => Pipeline::for_worker(w, workers),
                true => Pipeline::for_host(workers),
            };
            let mut ids = std::collections::HashSet::new();
            for i in 0..per_worker {
                let mut f = frame.clone();
                // A fresh sequence number each time: tunnel a wants them.
                let seq = (w * per_worker + i + 2) as u32 + (workers as u32) * 1_000_000;
                f[OUTER + 8..OUTER + 12].copy_from_slice(&seq.to_be_bytes());
                let mut bufs = [TestBuf::new(&f)];
                let mut actions = [Action::Drop(DropReason::Runt)];
                if host {
                    let mut b = TestBuf::with_headroom(&f[OUTER + 12..], 128);
                    actions[0] = pipe.inject(&mut b, &lab.snap, Host::Tunnel(d));
                    bufs[0] = b;
                } else {
                    pipe.process(&lab.snap, CLIENT_PORT, &mut bufs, &mut actions);
                }
                assert_eq!(
                    actions[0],
                    Action::Transmit(CLIENT_PORT),
                    "worker {w} packet {i}"
                );
                let out = bufs[0].data();
                assert_eq!(out[ETH + 6] & 0x40, 0, "DF copied clear");
                let id = u16::from_be_bytes([out[ETH + 4], out[ETH + 5]]);
                if ids.len() < (1 << 16) / (workers + 1) {
                    assert!(
                        ids.insert(id),
                        "worker {w} of {workers} repeated {id} early"
                    );
                }
                if let Some(other) = seen.insert(id, w) {
                    assert_eq!(
                        other, w,
                        "workers {other} and {w} of {workers} both wrote {id}"
                    );
                }
            }
        }
        lab = Lab::new();
    }
}

/// ECN codepoints as scapy writes them in the TOS low bits.
const NOT_ECT: u8 = 0;
const ECT1: u8 = 1;
const ECT0: u8 = 2;
const CE: u8 = 3;

#[test]
fn ecn_decapsulation_follows_rfc6040_figure_4() {
    // (outer, inner) -> Some(resulting inner) or None for a drop. RFC 6040 section 4.2
    // Figure 4, which SPEC.md's step 6 defers to where they differ (outer ECT(1) over
    // inner ECT(0) gives ECT(1)).
    let name = |e: u8| ["Not-ECT", "ECT(1)", "ECT(0)", "CE"][usize::from(e)];
    let table: [(u8, u8, Option<u8>); 16] = [
        (NOT_ECT, NOT_ECT, Some(NOT_ECT)),
        (NOT_ECT, ECT0, Some(ECT0)),
        (NOT_ECT, ECT1, Some(ECT1)),
        (NOT_ECT, CE, Some(CE)),
        (ECT0, NOT_ECT, Some(NOT_ECT)), // (!!!) counted as ecn_suspicious
        (ECT0, ECT0, Some(ECT0)),
        (ECT0, ECT1, Some(ECT1)),
        (ECT0, CE, Some(CE)),
        (ECT1, NOT_ECT, Some(NOT_ECT)), // (!!!) counted as ecn_suspicious
        (ECT1, ECT0, Some(ECT1)),
        (ECT1, ECT1, Some(ECT1)),
        (ECT1, CE, Some(CE)),
        (CE, NOT_ECT, None), // drop ecn_ce_not_ect
        (CE, ECT0, Some(CE)),
        (CE, ECT1, Some(CE)),
        (CE, CE, Some(CE)),
    ];
    let dscp = 10u8 << 2;
    let exprs: Vec<String> = table
        .iter()
        .map(|(o, i, _)| {
            format!(
                "e0()/IP(src=RB, dst=L1, tos={o})/GRE()/IP(src='10.2.0.5', dst='8.8.8.8', \
                 tos={})/data()",
                dscp | i
            )
        })
        .collect();
    let f = pkts(&exprs);
    let mut lab = Lab::new();
    for (frame, (o, i, want)) in f.iter().zip(table) {
        let case = format!("outer {} over inner {}", name(o), name(i));
        match want {
            None => lab.expect_drop(CLIENT_PORT, frame, DropReason::EcnCeNotEct, &case),
            Some(w) => {
                let (_, out) = lab.expect_transmit(CLIENT_PORT, frame, &case);
                assert_inner_forwarded_ecn(&frame[OUTER + 4..], &out[ETH..], w, &case);
                check_fields(
                    &case,
                    &out,
                    &[
                        ("p[IP].tos & 3", &w.to_string()),
                        ("p[IP].tos >> 2", "10"),
                        ("ip_ok(p[IP], f)", "True"),
                    ],
                );
            }
        }
    }
    let c = lab.counters();
    assert_eq!(
        c.event_count(Event::EcnSuspicious),
        2,
        "outer ECT over Not-ECT"
    );
    assert_eq!(
        c.event_count(Event::EcnCePropagated),
        2,
        "CE onto ECT(0), ECT(1)"
    );
    assert_eq!(c.drop_count(DropReason::EcnCeNotEct), 1);
}

/// Like [`assert_inner_forwarded`], but the ECN field must have become `ecn` (and the
/// DSCP must not have changed).
fn assert_inner_forwarded_ecn(sent: &[u8], got: &[u8], ecn: u8, case: &str) {
    let mut expect = sent.to_vec();
    expect[1] = (expect[1] & !3) | ecn;
    assert_inner_forwarded(&expect, got, case);
}

#[test]
fn decapsulation_keeps_the_inner_dscp() {
    let f = pkt(
        "e0()/IP(src=RB, dst=L1, tos=46<<2)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8', \
         tos=10<<2)/data()",
    );
    let mut lab = Lab::new();
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "outer EF over inner AF11");
    check_fields("pipe model", &out, &[("p[IP].tos", "40")]);
    assert_inner_forwarded(&f[OUTER + 4..], &out[ETH..], "pipe model");
}

#[test]
fn inner_ttl_of_one_or_less_is_ttl_exceeded() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=0)/data())",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=1)/data())",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=2)/data())",
        "e0()/IP(src=RB, dst=L1, ttl=0)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8', ttl=9)/data()",
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8', ttl=1)/data()",
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8', ttl=2)/data()",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in [(&f[0], "inner TTL 0"), (&f[1], "inner TTL 1")] {
        lab.expect_icmp(
            CLIENT_PORT,
            frame,
            DropReason::TtlExceeded,
            IcmpKind::TimeExceeded,
            case,
        );
    }
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[2], "inner TTL 2");
    check_fields(
        "TTL 2",
        &out,
        &[("p[IP].ttl", "1"), ("ip_ok(p[IP], f)", "True")],
    );
    assert_inner_forwarded(&f[2][OUTER + 4..], &out[ETH..], "TTL 2");
    // The outer TTL is the client path's business, not ours (TESTPLAN BAD-O 11).
    lab.expect_transmit(CLIENT_PORT, &f[3], "outer TTL 0 is accepted");
    // Native transit follows RFC 1812 too.
    lab.expect_icmp(
        CORE_PORT,
        &f[4],
        DropReason::TtlExceeded,
        IcmpKind::TimeExceeded,
        "transit TTL 1",
    );
    let (_, out) = lab.expect_transmit(CORE_PORT, &f[5], "transit TTL 2");
    assert_inner_forwarded(&f[5][ETH..], &out[ETH..], "transit TTL 2");
}

// =======================================================================================
// Routing (SPEC.md "Routing")

#[test]
fn unroutable_and_blackholed_destinations_are_no_route() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='9.9.9.9')/data())",
        "from_b(IP(src='10.2.0.5', dst='192.168.66.1')/data())",
        "e1()/IP(src='8.8.4.4', dst='9.9.9.9')/data()",
        "from_b(IP(src='10.2.0.5', dst='192.168.67.1')/data())",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.9')/data())",
        "e1()/IP(src='8.8.4.4', dst='8.8.8.9')/data()",
    ]);
    let mut lab = Lab::new();
    let net = IcmpKind::UnreachableNet;
    lab.expect_icmp(CLIENT_PORT, &f[0], DropReason::NoRoute, net, "no match");
    lab.expect_drop(CLIENT_PORT, &f[1], DropReason::NoRoute, "blackhole: silent");
    lab.expect_icmp(
        CORE_PORT,
        &f[2],
        DropReason::NoRoute,
        net,
        "transit, no match",
    );
    lab.expect_icmp(
        CLIENT_PORT,
        &f[3],
        DropReason::NoRoute,
        net,
        "next to the blackhole",
    );
    lab.expect_transmit(CLIENT_PORT, &f[4], "control: routed");
    lab.expect_transmit(CORE_PORT, &f[5], "control: transit, routed");
}

#[test]
fn martian_destinations_are_never_forwarded() {
    // RFC 1812 section 5.3.7: this, loopback, multicast (no multicast routing), class E and
    // the limited broadcast, from a tunnel and in transit; whatever the routes (the lab's
    // core routes cover 224.0.0.0/3 too).
    let dsts = [
        "0.1.2.3",
        "127.0.0.1",
        "224.0.0.5",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ];
    let mut exprs: Vec<String> = Vec::new();
    for d in dsts {
        exprs.push(format!("from_b(IP(src='10.2.0.5', dst='{d}')/data())"));
        exprs.push(format!("e1()/IP(src='8.8.4.4', dst='{d}')/data()"));
    }
    exprs.push("from_b(IP(src='10.2.0.5', dst='223.255.255.254')/data())".into());
    let refs: Vec<&str> = exprs.iter().map(String::as_str).collect();
    let f = pkts(&refs);
    let mut lab = Lab::new();
    for (i, d) in dsts.iter().enumerate() {
        lab.expect_drop(
            CLIENT_PORT,
            &f[2 * i],
            DropReason::MartianDestination,
            &format!("from a tunnel to {d}"),
        );
        lab.expect_drop(
            CORE_PORT,
            &f[2 * i + 1],
            DropReason::MartianDestination,
            &format!("transit to {d}"),
        );
    }
    lab.expect_transmit(
        CLIENT_PORT,
        &f[2 * dsts.len()],
        "control: the last unicast /3",
    );
}

#[test]
fn packets_back_into_their_own_tunnel_are_hairpin() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.2.0.9')/data())",
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.3.0.9')/data()",
        "from_b(IP(src='10.2.0.5', dst='10.3.0.9')/data())",
    ]);
    let mut lab = Lab::new();
    lab.expect_drop(CLIENT_PORT, &f[0], DropReason::Hairpin, "GRE b back into b");
    lab.expect_drop(
        CLIENT_PORT,
        &f[1],
        DropReason::Hairpin,
        "IPIP c back into c",
    );
    lab.expect_transmit(CLIENT_PORT, &f[2], "control: b into c");
}

#[test]
fn the_four_tunnel_loop_conditions_are_dropped() {
    // b's extra sources include 192.0.2.2 (ours) and 198.51.100.7 (e's remote), so these
    // pass BCP 38 and only the loop rules stop them.
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst=RB)/data())",
        "from_b(IP(src='10.2.0.5', dst='198.51.100.99')/data())",
        "from_b(IP(src='10.2.0.5', dst=RE)/data())",
        "from_b(IP(src='10.2.0.5', dst='10.7.0.9')/data())",
        "from_b(IP(src=L2, dst='8.8.8.8')/data())",
        "from_b(IP(src='172.16.2.9', dst='8.8.8.8')/data())",
        "from_b(IP(src=RE, dst='10.7.0.9')/data())",
        "from_b(IP(src=RE, dst='8.8.8.8')/data())",
        "e1()/IP(src=LC, dst='8.8.8.8')/data()",
    ]);
    let mut lab = Lab::new();
    let cases = [
        "destination = the ingress tunnel's remote (RFC 2784 3.1)",
        "destination = the egress tunnel's remote",
        "source = one of our addresses (RFC 2003 3.2)",
        "source = the egress tunnel's remote",
    ];
    lab.expect_drop(CLIENT_PORT, &f[0], DropReason::TunnelLoop, cases[0]);
    lab.expect_transmit(CLIENT_PORT, &f[1], "control: same route, another address");
    lab.expect_drop(CLIENT_PORT, &f[2], DropReason::TunnelLoop, cases[1]);
    lab.expect_transmit(CLIENT_PORT, &f[3], "control: into e, not to its remote");
    lab.expect_drop(CLIENT_PORT, &f[4], DropReason::TunnelLoop, cases[2]);
    lab.expect_transmit(CLIENT_PORT, &f[5], "control: another extra source");
    lab.expect_drop(CLIENT_PORT, &f[6], DropReason::TunnelLoop, cases[3]);
    lab.expect_transmit(
        CLIENT_PORT,
        &f[7],
        "control: e's remote as source, not into e",
    );
    lab.expect_drop(
        CORE_PORT,
        &f[8],
        DropReason::TunnelLoop,
        "transit with our own source",
    );
}

// =======================================================================================
// Encapsulation (SPEC.md "Encapsulation")

#[test]
fn encapsulation_without_headroom_is_no_headroom() {
    // IPIP from c (34 bytes stripped) into tunnel a (14 + 20 + 16 bytes to prepend).
    let f = pkt("e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.1.0.9')/data()");
    let mut lab = Lab::new();
    for headroom in [0, 15] {
        lab.expect_drop_buf(
            CLIENT_PORT,
            TestBuf::with_headroom(&f, headroom),
            DropReason::NoHeadroom,
            &format!("headroom {headroom} + 34 stripped < 50"),
        );
    }
    let (_, out) =
        lab.expect_transmit_buf(CLIENT_PORT, TestBuf::with_headroom(&f, 16), "exactly 50");
    check_fields(
        "headroom 16",
        &out,
        &[
            ("p[GRE].sequence_number", "0"),
            ("p[IP].dst", "198.51.100.1"),
        ],
    );
}

#[test]
fn packets_over_the_egress_mtu_are_mtu_exceeded() {
    // Tunnel small: MTU 200, 24 bytes of outer IPv4 + GRE: inner packets up to 176 fit.
    // Tunnel a: MTU 1500, 36 bytes of overhead. Port 1 (native): MTU 1500.
    let inner = |dst: &str, n: usize, df: &str| {
        format!("from_b(IP(src='10.2.0.5', dst='{dst}', flags='{df}')/data({n}))")
    };
    let f = pkts(&[
        inner("10.6.0.9", 176 - 28, "DF"),
        inner("10.6.0.9", 177 - 28, "DF"),
        inner("10.6.0.9", 177 - 28, ""),
        inner("10.1.0.9", 1464 - 28, "DF"),
        inner("10.1.0.9", 1465 - 28, "DF"),
        inner("8.8.8.8", 1500 - 28, "DF"),
        inner("8.8.8.8", 1501 - 28, "DF"),
    ]);
    let mut lab = Lab::new();
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[0], "small: 200 = MTU");
    assert_eq!(out.len(), ETH + 200);
    let big = IcmpKind::FragmentationNeeded;
    lab.expect_icmp(
        CLIENT_PORT,
        &f[1],
        DropReason::MtuExceeded,
        big,
        "small: 201, DF",
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[2],
        DropReason::MtuExceeded,
        "small: 201, no DF (no fragmentation yet)",
    );
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[3], "a: 1500 = MTU");
    assert_eq!(out.len(), ETH + 1500);
    lab.expect_icmp(CLIENT_PORT, &f[4], DropReason::MtuExceeded, big, "a: 1501");
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[5], "native: 1500 = MTU");
    assert_eq!(out.len(), ETH + 1500);
    lab.expect_icmp(
        CLIENT_PORT,
        &f[6],
        DropReason::MtuExceeded,
        big,
        "native: 1501",
    );
}

#[test]
fn unresolved_next_hops_are_no_neighbor() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.5.0.9')/data())",
        "from_b(IP(src='10.2.0.5', dst='100.64.0.1')/data())",
        "from_b(IP(src='10.2.0.5', dst='10.6.0.9')/data())",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data())",
    ]);
    let mut lab = Lab::new();
    lab.expect_drop(CLIENT_PORT, &f[0], DropReason::NoNeighbor, "tunnel nn");
    lab.expect_drop(
        CLIENT_PORT,
        &f[1],
        DropReason::NoNeighbor,
        "native, unresolved",
    );
    lab.expect_transmit(CLIENT_PORT, &f[2], "control: a tunnel with a neighbour");
    lab.expect_transmit(CLIENT_PORT, &f[3], "control: native, resolved");
}

#[test]
fn ethernet_padding_and_inner_excess_are_not_forwarded() {
    let f = pkts(&[
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='8.8.8.8')/Raw(b'hi')",
        "IP(src='10.3.0.5', dst='8.8.8.8')/Raw(b'hi')",
        "from_b(Raw(bytes(IP(src='10.2.0.5', dst='8.8.8.8')/data()) + bytes.fromhex('dd' * 8)), \
         proto=0x0800)",
        "IP(src='10.2.0.5', dst='8.8.8.8')/data()",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/Raw(b'hi'), chksum_present=1)",
        "IP(src='10.2.0.5', dst='8.8.8.8')/Raw(b'hi')",
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8')/Raw(b'hi')",
    ]);
    let mut padded = f[0].clone();
    assert_eq!(padded.len(), ETH + 20 + 22, "a 56-byte frame");
    padded.extend_from_slice(&[0xee; 20]); // Ethernet padding after the IPv4 total length
    let mut lab = Lab::new();
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &padded, "padded IPIP");
    assert_eq!(out.len(), ETH + 22, "only the inner packet leaves");
    assert_inner_forwarded(&f[1], &out[ETH..], "padded IPIP");
    check_fields(
        "padded IPIP",
        &out,
        &[("p[IP].len", "22"), ("Padding in p", "False")],
    );
    // Padding after a GRE packet with a checksum: the checksum covers the IPv4 payload
    // only (RFC 2784), so the padding must be gone before it is verified.
    let mut padded_csum = f[4].clone();
    padded_csum.extend_from_slice(&[0xee; 20]); // Ethernet padding after the IPv4 total length
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &padded_csum, "padded GRE with checksum");
    assert_inner_forwarded(&f[5], &out[ETH..], "padded GRE with checksum");
    // Native transit has no inner header to trim by: only the outer trim removes padding.
    let mut padded_transit = f[6].clone();
    padded_transit.extend_from_slice(&[0xee; 20]); // Ethernet padding after the IPv4 total length
    let (_, out) = lab.expect_transmit(CORE_PORT, &padded_transit, "padded transit");
    assert_inner_forwarded(&f[6][ETH..], &out[ETH..], "padded transit");
    // Bytes after the inner total length inside the tunnel payload are trimmed too.
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[2], "inner excess");
    assert_eq!(out.len(), ETH + f[3].len());
    assert_inner_forwarded(&f[3], &out[ETH..], "inner excess");
    // The port counts frames as received, padding included.
    assert_eq!(
        lab.counters().ports[usize::from(CLIENT_PORT)].rx.bytes,
        (padded.len() + padded_csum.len() + f[2].len()) as u64
    );
}

// =======================================================================================
// Positive paths, checked on the output bytes

#[test]
fn gre_to_gre_with_key_sequence_and_checksum() {
    let frames = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9', ttl=30, tos=(10<<2)|2, id=777)/data(64))",
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9', ttl=30, tos=(10<<2)|2, id=778)/data(64))",
    ]);
    let sent = &frames[0][OUTER + 4..];
    let mut lab = Lab::new();
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &frames[0], "b -> a");
    assert_eq!(port, CLIENT_PORT, "tunnel a leaves by port 0");
    assert_eq!(out.len(), ETH + 20 + 16 + sent.len());
    check_fields(
        "GRE -> GRE",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:00:01"),
            ("p[Ether].dst", "02:00:00:00:aa:01"),
            ("p[Ether].type", "2048"),
            ("p[IP].version", "4"),
            ("p[IP].ihl", "5"),
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.1"),
            ("p[IP].proto", "47"),
            ("p[IP].ttl", "64"),
            ("p[IP].tos >> 2", "10"),
            ("p[IP].tos & 3", "2"),
            ("int(p[IP].flags)", "2"),
            ("p[IP].frag", "0"),
            ("p[IP].len == len(f) - 14", "True"),
            ("ip_ok(p[IP], f)", "True"),
            ("p[GRE].chksum_present", "1"),
            ("p[GRE].routing_present", "0"),
            ("p[GRE].key_present", "1"),
            ("p[GRE].seqnum_present", "1"),
            ("p[GRE].strict_route_source", "0"),
            ("p[GRE].recursion_control", "0"),
            ("p[GRE].flags", "0"),
            ("p[GRE].version", "0"),
            ("p[GRE].proto", "2048"),
            ("p[GRE].offset", "0"),
            ("p[GRE].key", "100"),
            ("p[GRE].sequence_number", "0"),
            ("gre_ok(p, f)", "True"),
            ("p[IP:2].src", "10.2.0.5"),
            ("p[IP:2].dst", "10.1.0.9"),
            ("p[IP:2].ttl", "29"),
            ("p[IP:2].tos", "42"),
            ("p[IP:2].id", "777"),
            ("ip_ok(p[IP:2], f)", "True"),
            ("p[Raw].load == data(64)[Raw].load", "True"),
        ],
    );
    assert_inner_forwarded(sent, &out[ETH + 36..], "b -> a");
    let (_, out2) = lab.expect_transmit(CLIENT_PORT, &frames[1], "b -> a, second");
    let id = |o: &[u8]| u16::from_be_bytes([o[ETH + 4], o[ETH + 5]]);
    check_fields(
        "second packet",
        &out2,
        &[
            ("p[GRE].sequence_number", "1"),
            ("gre_ok(p, f)", "True"),
            ("ip_ok(p[IP], f)", "True"),
        ],
    );
    assert_eq!(
        id(&out2),
        id(&out).wrapping_add(1),
        "outer identification from the worker's counter"
    );
}

#[test]
fn sequence_numbers_increase_per_tunnel_across_workers() {
    let frame = pkt("from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data())");
    let mut lab = Lab::new();
    let snap = Arc::clone(&lab.snap);
    // GRE header of tunnel a: flags, protocol, checksum, reserved1, key, then sequence.
    let seq_of = |out: &[u8]| {
        let at = OUTER + 12;
        u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]])
    };
    let send = |w: &mut Pipeline, snap: &Snapshot| {
        let mut bufs = [TestBuf::new(&frame)];
        let mut actions = [Action::Drop(DropReason::Runt)];
        w.process(snap, CLIENT_PORT, &mut bufs, &mut actions);
        assert_eq!(actions[0], Action::Transmit(CLIENT_PORT));
        bufs[0].data().to_vec()
    };

    // Two workers, interleaved, on one snapshot.
    let mut w1 = Pipeline::new(1);
    let mut w2 = Pipeline::new(0x8000);
    let mut seen = Vec::new();
    for i in 0..6 {
        let w = if i % 2 == 0 { &mut w1 } else { &mut w2 };
        seen.push(seq_of(&send(w, &snap)));
    }
    assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
    let out = send(&mut w1, &snap);
    check_fields(
        "worker 1",
        &out,
        &[("p[GRE].sequence_number", "6"), ("gre_ok(p, f)", "True")],
    );

    // Two workers on two threads: every number once, increasing within each worker.
    let per_thread = 200;
    let lists: Vec<Vec<u32>> = std::thread::scope(|s| {
        let hs: Vec<_> = [10u16, 20]
            .into_iter()
            .map(|seed| {
                let snap = &snap;
                let send = &send;
                s.spawn(move || {
                    let mut w = Pipeline::new(seed);
                    (0..per_thread)
                        .map(|_| seq_of(&send(&mut w, snap)))
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for l in &lists {
        assert!(l.windows(2).all(|w| w[0] < w[1]), "increasing per worker");
    }
    let mut all: Vec<u32> = lists.concat();
    all.sort_unstable();
    assert_eq!(all, (7..7 + 2 * per_thread).collect::<Vec<u32>>());

    // A new snapshot from the same configuration carries the tunnel's state.
    lab.snap = lab.builder.build().unwrap();
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &frame, "after a snapshot swap");
    assert_eq!(seq_of(&out), 7 + 2 * per_thread);
}

#[test]
fn outer_ttl_dscp_ecn_and_df_follow_the_tunnel_policy() {
    let f = pkts(&[
        // Tunnel d: TTL inherit, DSCP fixed 46, DF copied.
        "from_b(IP(src='10.2.0.5', dst='10.4.0.9', ttl=30, tos=(10<<2)|1, flags='DF')/data())",
        "from_b(IP(src='10.2.0.5', dst='10.4.0.9', ttl=7, tos=(12<<2)|2, flags=0)/data())",
        // Tunnel a: defaults (TTL 64, DSCP copied, DF set).
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9', ttl=5, tos=(34<<2), flags=0)/data())",
    ]);
    let mut lab = Lab::new();
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[0], "d, inner DF");
    check_fields(
        "d, inner DF",
        &out,
        &[
            ("p[Ether].dst", "02:00:00:00:aa:04"),
            ("p[IP].dst", "198.51.100.4"),
            ("p[IP].ttl", "29"),
            ("p[IP].tos >> 2", "46"),
            ("p[IP].tos & 3", "1"),
            ("int(p[IP].flags)", "2"),
            ("ip_ok(p[IP], f)", "True"),
            ("p[GRE].key_present", "1"),
            ("p[GRE].key", "400"),
            ("p[GRE].seqnum_present", "0"),
            ("p[GRE].chksum_present", "0"),
            ("len(p[GRE]) - len(p[GRE].payload)", "8"),
            ("p[IP:2].ttl", "29"),
            ("ip_ok(p[IP:2], f)", "True"),
        ],
    );
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[1], "d, inner no DF");
    check_fields(
        "d, inner no DF",
        &out,
        &[
            ("p[IP].ttl", "6"),
            ("p[IP].tos >> 2", "46"),
            ("p[IP].tos & 3", "2"),
            ("int(p[IP].flags)", "0"),
            ("ip_ok(p[IP], f)", "True"),
        ],
    );
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[2], "a, defaults");
    check_fields(
        "a, defaults",
        &out,
        &[
            ("p[IP].ttl", "64"),
            ("p[IP].tos >> 2", "34"),
            ("p[IP].tos & 3", "0"),
            ("int(p[IP].flags)", "2"),
            ("ip_ok(p[IP], f)", "True"),
            ("p[IP:2].ttl", "4"),
        ],
    );

    // RFC 6040 normal mode: the outer ECN field is a copy of the inner one.
    let ecn: Vec<String> = [NOT_ECT, ECT1, ECT0, CE]
        .iter()
        .map(|e| format!("from_b(IP(src='10.2.0.5', dst='10.7.0.9', tos={e})/data())"))
        .collect();
    for (frame, e) in pkts(&ecn).iter().zip([NOT_ECT, ECT1, ECT0, CE]) {
        let (_, out) = lab.expect_transmit(CLIENT_PORT, frame, "ECN copy");
        check_fields(
            &format!("inner ECN {e}"),
            &out,
            &[
                ("p[IP].dst", "198.51.100.7"),
                ("p[IP].tos & 3", &e.to_string()),
                ("p[IP:2].tos & 3", &e.to_string()),
                ("ip_ok(p[IP], f)", "True"),
            ],
        );
    }
}

#[test]
fn ipip_to_gre() {
    let f = pkts(&[
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.2.0.9', ttl=9)/data(40)",
        "IP(src='10.3.0.5', dst='10.2.0.9', ttl=9)/data(40)",
    ]);
    let mut lab = Lab::new();
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &f[0], "c -> b");
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(out.len(), ETH + 20 + 4 + f[1].len());
    // Decapsulation advances the start, encapsulation prepends into headroom: the inner
    // packet stays where it arrived (34 bytes stripped, 38 prepended).
    let mut bufs = [TestBuf::new(&f[0])];
    assert_eq!(
        lab.process(CLIENT_PORT, &mut bufs)[0],
        Action::Transmit(CLIENT_PORT)
    );
    assert_eq!(bufs[0].headroom(), DEFAULT_HEADROOM + 34 - 38);
    check_fields(
        "IPIP -> GRE",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:00:01"),
            ("p[Ether].dst", "02:00:00:00:aa:02"),
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.2"),
            ("p[IP].proto", "47"),
            ("p[IP].ttl", "64"),
            ("ip_ok(p[IP], f)", "True"),
            ("bytes(p[GRE])[:4].hex()", "00000800"),
            ("p[IP:2].ttl", "8"),
            ("ip_ok(p[IP:2], f)", "True"),
        ],
    );
    assert_inner_forwarded(&f[1], &out[ETH + 24..], "IPIP -> GRE");
}

#[test]
fn gre_to_ipip() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.3.0.9', ttl=9)/data(40))",
        "IP(src='10.2.0.5', dst='10.3.0.9', ttl=9)/data(40)",
    ]);
    let mut lab = Lab::new();
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &f[0], "b -> c");
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(out.len(), ETH + 20 + f[1].len());
    check_fields(
        "GRE -> IPIP",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:00:01"),
            ("p[Ether].dst", "02:00:00:00:aa:03"),
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.3"),
            ("p[IP].proto", "4"),
            ("p[IP].len", &(20 + f[1].len()).to_string()),
            ("ip_ok(p[IP], f)", "True"),
            ("GRE in p", "False"),
            ("p[IP:2].src", "10.2.0.5"),
            ("p[IP:2].ttl", "8"),
            ("ip_ok(p[IP:2], f)", "True"),
        ],
    );
    assert_inner_forwarded(&f[1], &out[ETH + 20..], "GRE -> IPIP");
}

#[test]
fn native_transit_is_routed_natively_and_into_tunnels() {
    let f = pkts(&[
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8', ttl=10)/data()",
        "IP(src='8.8.4.4', dst='8.8.8.8', ttl=10)/data()",
        "e1()/IP(src='8.8.4.4', dst='10.2.0.9', ttl=10)/data()",
        "IP(src='8.8.4.4', dst='10.2.0.9', ttl=10)/data()",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=10)/data())",
    ]);
    let mut lab = Lab::new();
    let (port, out) = lab.expect_transmit(CORE_PORT, &f[0], "transit to a native route");
    assert_eq!(port, CORE_PORT);
    check_fields(
        "native",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:01:01"),
            ("p[Ether].dst", "02:00:00:00:bb:01"),
            ("p[IP].ttl", "9"),
            ("ip_ok(p[IP], f)", "True"),
        ],
    );
    assert_inner_forwarded(&f[1], &out[ETH..], "native");

    let (port, out) = lab.expect_transmit(CORE_PORT, &f[2], "transit into tunnel b");
    assert_eq!(port, CLIENT_PORT);
    check_fields(
        "transit into b",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:00:01"),
            ("p[Ether].dst", "02:00:00:00:aa:02"),
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.2"),
            ("p[IP].proto", "47"),
            ("ip_ok(p[IP], f)", "True"),
            ("p[IP:2].ttl", "9"),
        ],
    );
    assert_inner_forwarded(&f[3], &out[ETH + 24..], "transit into b");

    // Decapsulated traffic to a native route leaves by the internet port the same way.
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &f[4], "decapsulated, native");
    assert_eq!(port, CORE_PORT);
    assert_eq!(&out[..6], &MAC_UPSTREAM.0);
    assert_eq!(&out[6..12], &MAC_P1.0);
}

#[test]
fn core_routes_encapsulate_toward_another_edge_router() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.99.0.9', ttl=20)/data())",
        "e1()/IP(src=RX, dst=LC)/GRE(key_present=1, key=7)/\
         IP(src='10.99.0.5', dst='10.2.0.9')/data()",
        "IP(src='10.99.0.5', dst='10.2.0.9')/data()",
    ]);
    let mut lab = Lab::new();
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &f[0], "client b -> edge router");
    assert_eq!(port, CORE_PORT, "toward the edge router by the core port");
    check_fields(
        "to the edge router",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:01:01"),
            ("p[Ether].dst", "02:00:00:00:bb:01"),
            ("p[IP].src", "203.0.113.1"),
            ("p[IP].dst", "203.0.113.50"),
            ("p[IP].proto", "47"),
            ("ip_ok(p[IP], f)", "True"),
            ("p[GRE].key", "7"),
            ("p[IP:2].ttl", "19"),
        ],
    );
    // And back: the edge router's tunnel terminates on the core port, then into b.
    let (port, out) = lab.expect_transmit(CORE_PORT, &f[1], "edge router -> client b");
    assert_eq!(port, CLIENT_PORT);
    check_fields(
        "from the edge router",
        &out,
        &[
            ("p[Ether].src", "02:00:00:00:00:01"),
            ("p[Ether].dst", "02:00:00:00:aa:02"),
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.2"),
        ],
    );
    assert_inner_forwarded(&f[2], &out[ETH + 24..], "edge router -> client b");
}

#[test]
fn bursts_longer_than_max_burst_are_processed_whole() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data())",
        "e0()/IP(src='198.51.100.99', dst=L1)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')",
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data())",
    ]);
    let n = 2 * MAX_BURST + 5;
    let mut bufs: Vec<TestBuf> = (0..n).map(|i| TestBuf::new(&f[i % 3])).collect();
    let mut lab = Lab::new();
    let actions = lab.process(CLIENT_PORT, &mut bufs);
    for (i, a) in actions.iter().enumerate() {
        let want = [
            Action::Transmit(CORE_PORT),
            Action::Drop(DropReason::NoTunnel),
            Action::Transmit(CLIENT_PORT),
        ][i % 3];
        assert_eq!(*a, want, "packet {i}");
    }
    // Tunnel a's sequence numbers follow packet order across the slices.
    let seqs: Vec<u32> = bufs
        .iter()
        .skip(2)
        .step_by(3)
        .map(|b| {
            let d = &b.data()[OUTER + 12..OUTER + 16];
            u32::from_be_bytes([d[0], d[1], d[2], d[3]])
        })
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
    let c = lab.counters();
    assert_eq!(c.ports[0].rx.packets, n as u64);
    let dropped = (0..n).filter(|i| i % 3 == 1).count() as u64;
    assert_eq!(c.drop_count(DropReason::NoTunnel), dropped);
    assert_conserved(c);
}

// =======================================================================================
// Counters (SPEC.md "Counters")

#[test]
fn counters_per_port_per_tunnel_and_per_reason() {
    let f = pkts(&[
        // Port 0.
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data())", // b -> native, port 1
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data(30))", // b -> a, port 0
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='8.8.8.8')/data(7)", // c -> native
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=1)/data())", // b, ttl_exceeded
        "e0()/IP(src='198.51.100.99', dst=L1)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')",
        "e0()/IP(src=RB, dst=L1)/UDP(dport=179)", // punt local
        "Ether(dst='ff:ff:ff:ff:ff:ff', src=PEER)/ARP(psrc=RB, pdst=L1)", // punt arp
        // Port 1.
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8')/data(3)", // native, port 1
        "e1()/IP(src='8.8.4.4', dst='10.2.0.9')/data(5)", // into b, port 0
    ]);
    let lab = Lab::new();
    let snap = Arc::clone(&lab.snap);
    let run = |w: &mut Pipeline| -> (Vec<Action>, Vec<Vec<u8>>) {
        let mut p0: Vec<TestBuf> = f[..7].iter().map(|b| TestBuf::new(b)).collect();
        let mut p1: Vec<TestBuf> = f[7..].iter().map(|b| TestBuf::new(b)).collect();
        let mut a = vec![Action::Drop(DropReason::Runt); 9];
        w.process(&snap, CLIENT_PORT, &mut p0, &mut a[..7]);
        w.process(&snap, CORE_PORT, &mut p1, &mut a[7..]);
        let outs = p0.iter().chain(&p1).map(|b| b.data().to_vec()).collect();
        (a, outs)
    };
    let mut w = Pipeline::new(0);
    let (actions, outs) = run(&mut w);
    assert_eq!(
        actions,
        [
            Action::Transmit(CORE_PORT),
            Action::Transmit(CLIENT_PORT),
            Action::Transmit(CORE_PORT),
            Action::Reply {
                port: CLIENT_PORT,
                reason: DropReason::TtlExceeded
            },
            Action::Drop(DropReason::NoTunnel),
            Action::Punt(PuntReason::Local),
            Action::Punt(PuntReason::Arp),
            Action::Transmit(CORE_PORT),
            Action::Transmit(CLIENT_PORT),
        ]
    );
    let len = |i: usize| f[i].len() as u64;
    let out_len = |i: usize| outs[i].len() as u64;
    let c = w.counters();
    let (p0, p1) = (c.ports[0], c.ports[1]);
    assert_eq!(p0.rx.packets, 7);
    assert_eq!(p0.rx.bytes, (0..7).map(len).sum::<u64>());
    assert_eq!(p1.rx.packets, 2);
    assert_eq!(p1.rx.bytes, len(7) + len(8));
    assert_eq!(p0.tx.packets, 2);
    assert_eq!(p0.tx.bytes, out_len(1) + out_len(8));
    assert_eq!(p1.tx.packets, 3);
    assert_eq!(p1.tx.bytes, out_len(0) + out_len(2) + out_len(7));

    let (a, b, cc) = (
        tunnel_id(&snap, "a"),
        tunnel_id(&snap, "b"),
        tunnel_id(&snap, "c"),
    );
    assert_eq!(
        c.tunnels[b].rx.packets, 3,
        "b terminated 3 (one then dropped)"
    );
    assert_eq!(c.tunnels[b].rx.bytes, len(0) + len(1) + len(3));
    assert_eq!(c.tunnels[cc].rx.packets, 1);
    assert_eq!(c.tunnels[cc].rx.bytes, len(2));
    assert_eq!(c.tunnels[a].tx.packets, 1);
    assert_eq!(c.tunnels[a].tx.bytes, out_len(1));
    // Into b: the transit packet, and the ICMP error about the packet whose TTL expired
    // (counted as the tunnel's, not as the port's: the port counts what it forwarded).
    assert_eq!(c.tunnels[b].tx.packets, 2);
    assert_eq!(c.tunnels[b].tx.bytes, out_len(8) + out_len(3));
    assert_eq!(c.icmp_count(IcmpKind::TimeExceeded), 1);
    for (i, t) in c.tunnels.iter().enumerate() {
        let rx = 3 * u64::from(i == b) + u64::from(i == cc);
        let tx = u64::from(i == a) + 2 * u64::from(i == b);
        assert_eq!((t.rx.packets, t.tx.packets), (rx, tx), "tunnel {i}");
    }
    assert_eq!(c.drop_count(DropReason::TtlExceeded), 1);
    assert_eq!(c.drop_count(DropReason::NoTunnel), 1);
    assert_eq!(c.total_drops(), 2);
    assert_eq!(c.punt_count(PuntReason::Local), 1);
    assert_eq!(c.punt_count(PuntReason::Arp), 1);
    assert_eq!(c.punt_count(PuntReason::LocalInner), 0);
    assert_eq!(c.nonzero_drops(), [("no_tunnel", 1), ("ttl_exceeded", 1)]);
    assert_conserved(c);

    // Per worker: a second worker counts its own, and merging adds them up.
    let mut w2 = Pipeline::new(9);
    run(&mut w2);
    assert_eq!(w2.counters().ports[0].rx.packets, 7);
    let mut total = Counters::default();
    total.merge(w.counters());
    total.merge(w2.counters());
    assert_eq!(total.ports[1].tx.packets, 6);
    assert_eq!(total.tunnels[b].rx.packets, 6);
    assert_eq!(total.drop_count(DropReason::NoTunnel), 2);
    assert_conserved(&total);
}

#[test]
fn every_drop_reason_is_reachable_and_counted_once() {
    let cases: &[(DropReason, &str)] = &[
        (
            DropReason::NotForUs,
            "Ether(dst='02:00:00:00:00:99', src=PEER)/IP(src=RB, dst=L1)",
        ),
        (
            DropReason::OversizeFrame,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8'))",
        ),
        (
            DropReason::SharedBuffer,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8'))",
        ),
        (
            DropReason::UnsupportedEthertype,
            "Ether(dst=P0, src=PEER, type=0x88cc)/Raw(bytes(46))",
        ),
        (
            DropReason::BadIpv4,
            "e0()/IP(src=RB, dst=L1, chksum=0x0bad)/GRE()",
        ),
        (
            DropReason::Martian,
            "e0()/IP(src='127.0.0.1', dst=L1)/GRE()",
        ),
        (
            DropReason::OuterFragment,
            "e0()/IP(src=RB, dst=L1, flags='MF')/GRE()",
        ),
        (
            DropReason::NoTunnel,
            "e0()/IP(src='198.51.100.99', dst=L1)/GRE()",
        ),
        (
            DropReason::BadGre,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8'), version=1)",
        ),
        (DropReason::UnsupportedInner, "from_b(IPv6(), proto=0x6558)"),
        (
            DropReason::BadGreChecksum,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8'), chksum_present=1, chksum=0xdead)",
        ),
        (
            DropReason::GreSequence,
            "e0()/IP(src=RA, dst=L1)/GRE(key_present=1, key=100)/IP(src='10.1.0.5', dst='8.8.8.8')",
        ),
        (
            DropReason::BadInnerIpv4,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8', chksum=0x0bad))",
        ),
        (
            DropReason::BadInnerIpv6,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8'), proto=0x86dd)",
        ),
        (
            DropReason::NestedTunnel,
            "from_b(IP(src='10.2.0.5', dst=L1)/IP(src='10.2.0.5', dst='8.8.8.8'))",
        ),
        (
            DropReason::InnerSpoofed,
            "from_b(IP(src='10.1.0.5', dst='8.8.8.8'))",
        ),
        (
            DropReason::EcnCeNotEct,
            "e0()/IP(src=RB, dst=L1, tos=3)/GRE()/IP(src='10.2.0.5', dst='8.8.8.8')",
        ),
        (
            DropReason::TtlExceeded,
            "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=1))",
        ),
        (
            DropReason::MartianDestination,
            "from_b(IP(src='10.2.0.5', dst='224.0.0.5'))",
        ),
        (
            DropReason::NoRoute,
            "from_b(IP(src='10.2.0.5', dst='9.9.9.9'))",
        ),
        (
            DropReason::Hairpin,
            "from_b(IP(src='10.2.0.5', dst='10.2.0.9'))",
        ),
        (DropReason::TunnelLoop, "from_b(IP(src=L2, dst='8.8.8.8'))"),
        (
            DropReason::NoHeadroom,
            "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.1.0.9')",
        ),
        (
            DropReason::MtuExceeded,
            "from_b(IP(src='10.2.0.5', dst='10.6.0.9')/data(400))",
        ),
        (
            DropReason::NoNeighbor,
            "from_b(IP(src='10.2.0.5', dst='10.5.0.9'))",
        ),
        (
            DropReason::PmtuMalformed,
            "frag_needed(ours(RB, GRE()), 1400, chksum=0x1234)",
        ),
        (
            DropReason::PmtuTruncated,
            "frag_needed(ours(RB, GRE()), 1400, cut=20)",
        ),
        (DropReason::PmtuNotOurs, "frag_needed(ours(RB), 1400)"),
        (
            DropReason::PmtuNotSmaller,
            "frag_needed(ours(RB, GRE()), 1500)",
        ),
    ];
    let mut exprs: Vec<&str> = cases.iter().map(|(_, e)| *e).collect();
    exprs.push("from_b(IP(src='10.2.0.5', dst='8.8.8.8'))"); // forwarded
    exprs.push("e0()/IP(src=RB, dst=L1)/UDP(dport=179)"); // punted
    let f = pkts(&exprs);
    let mut bufs: Vec<TestBuf> = vec![TestBuf::new(&[])]; // runt
    let mut want = vec![Action::Drop(DropReason::Runt)];
    for ((reason, _), frame) in cases.iter().zip(&f) {
        let headroom = if *reason == DropReason::NoHeadroom {
            0
        } else {
            128
        };
        let buf = TestBuf::with_headroom(frame, headroom);
        bufs.push(match *reason {
            DropReason::OversizeFrame => buf.chained(frame.len() + 2048),
            DropReason::SharedBuffer => buf.shared(),
            _ => buf,
        });
        // The ones that deserve an ICMP error get it, back into tunnel b.
        want.push(match *reason {
            DropReason::TtlExceeded | DropReason::NoRoute => Action::Reply {
                port: CLIENT_PORT,
                reason: *reason,
            },
            r => Action::Drop(r),
        });
    }
    bufs.push(TestBuf::new(&f[cases.len()]));
    want.push(Action::Transmit(CORE_PORT));
    bufs.push(TestBuf::new(&f[cases.len() + 1]));
    want.push(Action::Punt(PuntReason::Local));

    let mut lab = Lab::new();
    let got = lab.process(CLIENT_PORT, &mut bufs);
    assert_eq!(got, want);
    let c = lab.counters();
    for r in DropReason::ALL {
        // A LAN port is a client site's router's: tests/cpe.rs reaches lan_spoofed. The
        // outer IPv6 reasons need a tunnel with IPv6 endpoints: tests/ipv6_outer.rs.
        let want = u64::from(!matches!(
            *r,
            DropReason::LanSpoofed | DropReason::OuterExtensionHeader | DropReason::BadIpv6
        ));
        assert_eq!(c.drop_count(*r), want, "{} counted once", r.name());
        assert_eq!(DropReason::from_name(r.name()), Some(*r));
    }
    assert_eq!(c.ports[0].rx.packets, bufs.len() as u64);
    assert_eq!(c.ports[1].tx.packets, 1);
    assert_conserved(c);
}

// =======================================================================================
// ICMP errors (SPEC.md "ICMP errors", RFC 792, RFC 1812 section 4.3.2, RFC 1191)

/// The inner IPv4 packet of a frame from a GRE tunnel without options (`gre_len` bytes of
/// GRE header), as the sender wrote it.
fn inner_of(frame: &[u8], gre_len: usize) -> &[u8] {
    &frame[OUTER + gre_len..]
}

#[test]
fn ttl_expiry_is_answered_with_time_exceeded_into_the_ingress_tunnel() {
    let inner = "IP(src='10.2.0.5', dst='8.8.8.8', ttl=1, id=77)/data(40)";
    let f = pkts(&[format!("from_b({inner})")]);
    let mut lab = Lab::new();
    let (port, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f[0],
        DropReason::TtlExceeded,
        IcmpKind::TimeExceeded,
        "TTL 1 from b",
    );
    assert_eq!(port, CLIENT_PORT, "back out of b's port");
    // Into b: plain GRE from our endpoint to b's router, to its MAC.
    check_fields(
        "outer",
        &out,
        &[
            ("p[Ether].dst", "02:00:00:00:aa:02"),
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.2"),
            ("p[IP].proto", "47"),
            ("p[GRE].proto", "2048"),
            ("ip_ok(p[IP], f)", "True"),
        ],
    );
    // The error: from b's local endpoint to the sender, quoting the whole packet as it
    // arrived (it is shorter than 548 bytes).
    check_icmp_error(
        "time exceeded",
        &out,
        OUTER + 4,
        ("192.0.2.1", "10.2.0.5"),
        (11, 0, 0),
        inner_of(&f[0], 4),
    );
}

#[test]
fn icmp_errors_take_the_ingress_tunnels_key_sequence_and_checksum() {
    let inner = "IP(src='10.1.0.5', dst='9.9.9.9')/data(20)";
    let f = pkts(&[from_a(Some(1), inner)]);
    let mut lab = Lab::new();
    let (_, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f[0],
        DropReason::NoRoute,
        IcmpKind::UnreachableNet,
        "no route, from a",
    );
    check_fields(
        "outer",
        &out,
        &[
            ("p[Ether].dst", "02:00:00:00:aa:01"),
            ("p[IP].dst", "198.51.100.1"),
            ("p[GRE].key_present", "1"),
            ("p[GRE].key", "100"),
            ("p[GRE].seqnum_present", "1"),
            ("p[GRE].chksum_present", "1"),
            ("gre_ok(p, f)", "True"),
        ],
    );
    // Tunnel a's header: flags, checksum, key, sequence: 16 bytes.
    check_icmp_error(
        "net unreachable",
        &out,
        OUTER + 16,
        ("192.0.2.1", "10.1.0.5"),
        (3, 0, 0),
        inner_of(&f[0], 12),
    );
}

#[test]
fn packets_too_big_with_df_get_fragmentation_needed_with_the_inner_mtu() {
    // Tunnel small: MTU 200, plain GRE: 176 bytes for the inner packet.
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.6.0.9', flags='DF')/data(149))",
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9', flags='DF')/data(1437))",
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', flags='DF')/data(1473))",
    ]);
    let mut lab = Lab::new();
    let big = IcmpKind::FragmentationNeeded;
    let drop = DropReason::MtuExceeded;
    for (frame, mtu, case) in [
        (&f[0], 176u16, "into small: 177 over 176"),
        (&f[1], 1464, "into a: 1465 over 1500 - 36"),
        (&f[2], 1500, "natively: 1501 over port 1's 1500"),
    ] {
        let (port, out) = lab.expect_icmp(CLIENT_PORT, frame, drop, big, case);
        assert_eq!(port, CLIENT_PORT, "{case}: back into b");
        // 576 bytes at most: 28 of headers and 548 of the packet.
        check_icmp_error(
            case,
            &out,
            OUTER + 4,
            ("192.0.2.1", "10.2.0.5"),
            (3, 4, mtu),
            &inner_of(frame, 4)[..548.min(frame.len() - OUTER - 4)],
        );
        assert!(out.len() - OUTER - 4 <= 576, "{case}: at most 576 bytes");
    }
}

#[test]
fn native_packets_are_answered_natively_to_the_frames_sender() {
    let f = pkts(&[
        "e1()/IP(src='8.8.4.4', dst='8.8.8.8', ttl=1)/data(10)",
        "e1()/IP(src='8.8.4.4', dst='9.9.9.9')/data(10)",
    ]);
    let mut lab = Lab::new();
    for (frame, kind, reason, (t, c), case) in [
        (
            &f[0],
            IcmpKind::TimeExceeded,
            DropReason::TtlExceeded,
            (11, 0),
            "transit TTL 1",
        ),
        (
            &f[1],
            IcmpKind::UnreachableNet,
            DropReason::NoRoute,
            (3, 0),
            "transit, no route",
        ),
    ] {
        let (port, out) = lab.expect_icmp(CORE_PORT, frame, reason, kind, case);
        assert_eq!(port, CORE_PORT, "{case}: out of the port it came in on");
        assert_eq!(
            &out[..6],
            &[2, 0, 0, 0, 0xee, 0xee],
            "{case}: to the frame's sender"
        );
        assert_eq!(&out[6..12], &MAC_P1.0, "{case}: from the port's MAC");
        // From the port's address, quoting the packet as it arrived (RFC 1812 4.3.2.3).
        let quote = &frame[ETH..];
        check_icmp_error(
            case,
            &out,
            ETH,
            ("203.0.113.1", "8.8.4.4"),
            (t, c, 0),
            quote,
        );
    }
}

#[test]
fn unreachable_and_prohibit_routes_answer_blackholes_stay_silent() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='192.168.70.1')/data())",
        "from_b(IP(src='10.2.0.5', dst='192.168.71.1')/data())",
        "from_b(IP(src='10.2.0.5', dst='192.168.66.1')/data())",
    ]);
    let mut lab = Lab::new();
    let drop = DropReason::NoRoute;
    let (_, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f[0],
        drop,
        IcmpKind::UnreachableNet,
        "unreachable",
    );
    assert_eq!(&out[OUTER + 4 + 20..OUTER + 4 + 22], &[3, 0]);
    let (_, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f[1],
        drop,
        IcmpKind::UnreachableProhibited,
        "prohibit",
    );
    check_icmp_error(
        "prohibit",
        &out,
        OUTER + 4,
        ("192.0.2.1", "10.2.0.5"),
        (3, 13, 0),
        inner_of(&f[1], 4),
    );
    lab.expect_drop(CLIENT_PORT, &f[2], drop, "blackhole: silent");
}

/// SPEC.md ICMP errors rule 1: never about another ICMP error, a non-first fragment, a
/// packet to a broadcast or multicast address, a packet from a martian source, one of our
/// addresses, or a packet dropped for being malformed or spoofed. Each case is paired with
/// one that differs only in the field under test and is answered.
#[test]
fn icmp_errors_are_never_sent_about_what_the_rules_exclude() {
    let ttl1 = |body: &str| format!("from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=1{body})");
    let f = pkts(&[
        // About an ICMP error (Destination Unreachable, Time Exceeded, Redirect, ...).
        ttl1(")/ICMP(type=3, code=1)/Raw(b'x' * 28)"),
        ttl1(")/ICMP(type=11)/Raw(b'x' * 28)"),
        ttl1(")/ICMP(type=5)/Raw(b'x' * 28)"),
        ttl1(")/ICMP(type=12)/Raw(b'x' * 28)"),
        ttl1(")/ICMP(type=4)/Raw(b'x' * 28)"),
        ttl1(", proto=1)"), // ICMP without a header: no type to tell
        // A non-first fragment.
        ttl1(", frag=10)/Raw(b'x' * 16)"),
        // To multicast and broadcast (the TTL check comes before the route's).
        "from_b(IP(src='10.2.0.5', dst='224.0.0.5', ttl=1)/data())".into(),
        "from_b(IP(src='10.2.0.5', dst='255.255.255.255', ttl=1)/data())".into(),
        // From one of our addresses (b may send as 192.0.2.2: an extra source).
        "from_b(IP(src=L2, dst='8.8.8.8', ttl=1)/data())".into(),
        // Answered: an echo request, a first fragment, a unicast packet.
        ttl1(")/ICMP(type=8)/Raw(b'x' * 28)"),
        ttl1(", flags='MF')/Raw(b'x' * 16)"),
        ttl1(")/data()"),
        // Transit from martian sources, and from ours.
        "e1()/IP(src='0.1.2.3', dst='9.9.9.9')/data()".into(),
        "e1()/IP(src=LC, dst='9.9.9.9')/data()".into(),
    ]);
    let mut lab = Lab::new();
    let ttl = DropReason::TtlExceeded;
    let cases = [
        "about Destination Unreachable",
        "about Time Exceeded",
        "about a Redirect",
        "about a Parameter Problem",
        "about a Source Quench",
        "about a truncated ICMP packet",
        "about a non-first fragment",
        "to multicast",
        "to the broadcast address",
        "from our address",
    ];
    for (frame, case) in f.iter().zip(cases) {
        lab.expect_drop(CLIENT_PORT, frame, ttl, case);
    }
    let k = IcmpKind::TimeExceeded;
    lab.expect_icmp(CLIENT_PORT, &f[10], ttl, k, "control: an echo request");
    lab.expect_icmp(CLIENT_PORT, &f[11], ttl, k, "control: a first fragment");
    lab.expect_icmp(CLIENT_PORT, &f[12], ttl, k, "control: unicast");
    // A martian source is dropped at ingress as martian; one of ours routes to no route.
    lab.expect_drop(
        CORE_PORT,
        &f[13],
        DropReason::Martian,
        "transit from 0.1.2.3",
    );
    lab.expect_drop(
        CORE_PORT,
        &f[14],
        DropReason::NoRoute,
        "transit from our address",
    );
    assert_eq!(
        lab.counters().icmp_rate_limited,
        0,
        "nothing was rate-limited"
    );
    assert_conserved(lab.counters());
}

/// SPEC.md ICMP errors rule 5: echo requests to our addresses are answered, from the
/// address asked, back the way they came.
#[test]
fn echo_requests_to_our_addresses_are_answered() {
    let through_a = from_a(
        Some(5),
        "IP(src='10.1.0.5', dst=L1)/ICMP(type=8, id=1, seq=1)",
    );
    let f = pkts(&[
        "e0()/IP(src=RB, dst=L1, ttl=9, tos=0x10)/ICMP(type=8, id=7, seq=1)/Raw(b'ping')",
        "e1()/IP(src='8.8.4.4', dst=LC)/ICMP(type=8, id=9, seq=2)/Raw(b'x' * 56)",
        "from_b(IP(src='10.2.0.5', dst=L2)/ICMP(type=8, id=3, seq=4)/Raw(b'in the tunnel'))",
        through_a.as_str(),
        // With IP options: answered without them.
        "e0()/IP(src=RB, dst=L1, options=[IPOption(b'\\x01\\x01\\x01\\x00')])/\
         ICMP(type=8, id=5, seq=5)/Raw(b'opts')",
    ]);
    let mut lab = Lab::new();
    let answer = |lab: &mut Lab, port, frame: &[u8], case: &str| {
        let before = lab.counters().clone();
        let (a, out) = lab.send(port, frame);
        let Action::Answer { port: egress, punt } = a else {
            panic!("{case}: expected an echo reply, got {a:?}");
        };
        assert_eq!(
            lab.counters().echo_replies,
            before.echo_replies + 1,
            "{case}"
        );
        assert_eq!(
            lab.counters().punt_count(punt),
            before.punt_count(punt) + 1,
            "{case}"
        );
        assert_eq!(lab.counters().total_drops(), before.total_drops(), "{case}");
        (egress, punt, out)
    };
    // Natively: to the frame's sender, from the address asked, the request's data back.
    for (port, frame, (ours, sender), case) in [
        (
            CLIENT_PORT,
            &f[0],
            ("192.0.2.1", "198.51.100.2"),
            "to our endpoint",
        ),
        (
            CORE_PORT,
            &f[1],
            ("203.0.113.1", "8.8.4.4"),
            "to our core address",
        ),
    ] {
        let (egress, punt, out) = answer(&mut lab, port, frame, case);
        assert_eq!((egress, punt), (port, PuntReason::Local), "{case}");
        assert_eq!(
            &out[..6],
            &[2, 0, 0, 0, 0xee, 0xee],
            "{case}: to the sender"
        );
        check_fields(
            case,
            &out,
            &[
                ("p[IP].src", ours),
                ("p[IP].dst", sender),
                ("p[IP].ttl", "64"),
                ("ip_ok(p[IP], f)", "True"),
                ("p[ICMP].type", "0"),
                ("checksum(bytes(p[ICMP])) == 0", "True"),
            ],
        );
        // The echo: the same identifier, sequence and data (RFC 792).
        assert_eq!(
            &out[ETH + 24..],
            &frame[ETH + 24..],
            "{case}: id, seq and data"
        );
    }
    // Inside a tunnel: the reply goes back into it (b: plain GRE; a: key, sequence,
    // checksum), from the address asked.
    let (egress, punt, out) = answer(&mut lab, CLIENT_PORT, &f[2], "through b, to L2");
    assert_eq!((egress, punt), (CLIENT_PORT, PuntReason::LocalInner));
    check_fields(
        "through b",
        &out,
        &[
            ("p[IP].dst", "198.51.100.2"),
            ("p[IP:2].src", "192.0.2.2"),
            ("p[IP:2].dst", "10.2.0.5"),
            ("ip_ok(p[IP:2], f)", "True"),
            ("p[ICMP].type", "0"),
            ("p[ICMP].id", "3"),
            ("p[ICMP].seq", "4"),
            ("bytes(p[ICMP].payload)", "b'in the tunnel'"),
        ],
    );
    let (_, _, out) = answer(&mut lab, CLIENT_PORT, &f[3], "through a");
    check_fields(
        "through a",
        &out,
        &[
            ("p[GRE].key", "100"),
            ("p[GRE].seqnum_present", "1"),
            ("gre_ok(p, f)", "True"),
            ("p[IP:2].dst", "10.1.0.5"),
            ("p[ICMP].type", "0"),
        ],
    );
    let (_, _, out) = answer(&mut lab, CLIENT_PORT, &f[4], "with IP options");
    check_fields(
        "with IP options",
        &out,
        &[
            ("p[IP].ihl", "5"),
            ("ip_ok(p[IP], f)", "True"),
            ("p[ICMP].type", "0"),
            ("p[ICMP].id", "5"),
            ("bytes(p[ICMP].payload)", "b'opts'"),
        ],
    );
    assert_conserved(lab.counters());
}

/// What is not an echo request we answer is punted untouched: replies, bad checksums,
/// truncated messages, fragments, and requests from our own addresses.
#[test]
fn what_is_no_echo_request_is_punted_untouched() {
    let f = pkts(&[
        "e0()/IP(src=RB, dst=L1)/ICMP(type=0)/Raw(b'reply')",
        "e0()/IP(src=RB, dst=L1)/ICMP(type=8, chksum=0x1234)/Raw(b'bad')",
        "e0()/IP(src=RB, dst=L1, proto=1)/Raw(b'\\x08\\x00')",
        "e0()/IP(src=RB, dst=L1, flags='MF')/ICMP(type=8)/Raw(b'frag')",
        "from_b(IP(src=L2, dst=L1)/ICMP(type=8))",
        "e0()/IP(src=RB, dst=L1)/ICMP(type=8)/Raw(b'control')",
    ]);
    let mut lab = Lab::new();
    for (frame, case) in f.iter().zip([
        "an echo reply",
        "a bad ICMP checksum",
        "a truncated ICMP header",
    ]) {
        let out = lab.expect_punt(CLIENT_PORT, frame, PuntReason::Local, case);
        assert_eq!(out, frame[ETH..], "{case}: untouched");
    }
    lab.expect_drop(
        CLIENT_PORT,
        &f[3],
        DropReason::OuterFragment,
        "a fragment to us",
    );
    let out = lab.expect_punt(
        CLIENT_PORT,
        &f[4],
        PuntReason::LocalInner,
        "from our address",
    );
    assert_eq!(out, f[4][OUTER + 4..], "from our address: untouched");
    assert_eq!(lab.counters().echo_replies, 0);
    assert!(
        matches!(lab.send(CLIENT_PORT, &f[5]).0, Action::Answer { .. }),
        "control"
    );
}

/// Our answers take their tunnel's sequence numbers in the burst's order, like the packets
/// forwarded into that tunnel around them: a receiver would drop a number that goes back.
#[test]
fn answers_take_sequence_numbers_in_burst_order() {
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data())".to_string(),
        from_a(Some(1), "IP(src='10.1.0.5', dst='8.8.8.8', ttl=1)/data()"),
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data())".to_string(),
        from_a(Some(2), "IP(src='10.1.0.5', dst=L1)/ICMP(type=8)"),
        "from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data())".to_string(),
    ]);
    let mut lab = Lab::new();
    let mut bufs: Vec<TestBuf> = f.iter().map(|b| TestBuf::new(b)).collect();
    let actions = lab.process(CLIENT_PORT, &mut bufs);
    assert!(matches!(actions[1], Action::Reply { .. }), "{actions:?}");
    assert!(matches!(actions[3], Action::Answer { .. }), "{actions:?}");
    // Tunnel a's header: flags, checksum, key, then the sequence number.
    let seqs: Vec<u32> = bufs
        .iter()
        .map(|b| {
            let d = &b.data()[OUTER + 12..OUTER + 16];
            u32::from_be_bytes([d[0], d[1], d[2], d[3]])
        })
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4], "into a, in the burst's order");
}

#[test]
fn the_rate_limit_is_a_token_bucket_on_the_pipelines_clock() {
    let frame = pkt("from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=1)/data())");
    let mut lab = Lab::new();
    lab.builder.icmp(dataplane::tables::IcmpLimit {
        rate: 100,
        burst: 5,
    });
    lab.snap = lab.builder.build().unwrap();
    let send = |lab: &mut Lab, t_ms: u64, n: usize| -> usize {
        lab.pipe.set_clock(t_ms * 1_000_000);
        (0..n)
            .filter(|_| matches!(lab.send(CLIENT_PORT, &frame).0, Action::Reply { .. }))
            .count()
    };
    assert_eq!(send(&mut lab, 1000, 20), 5, "the burst");
    assert_eq!(lab.counters().icmp_rate_limited, 15);
    assert_eq!(send(&mut lab, 1005, 5), 0, "half a token in 5 ms");
    assert_eq!(send(&mut lab, 1010, 5), 1, "one token in 10 ms");
    assert_eq!(send(&mut lab, 1060, 10), 5, "five in 50 ms");
    assert_eq!(
        send(&mut lab, 9000, 20),
        5,
        "a long pause refills the burst, no more"
    );
    // Every packet dropped and counted once, answered or not.
    assert_eq!(lab.counters().drop_count(DropReason::TtlExceeded), 60);
    assert_eq!(lab.counters().icmp_count(IcmpKind::TimeExceeded), 16);
    assert_eq!(lab.counters().icmp_rate_limited, 44);
    // Two workers share the limit: each sends half.
    let mut w = Pipeline::for_worker(1, 2);
    w.set_clock(1_000_000_000);
    let mut sent = 0;
    for _ in 0..10 {
        let mut b = [TestBuf::new(&frame)];
        let mut a = [Action::Drop(DropReason::Runt)];
        w.process(&lab.snap, CLIENT_PORT, &mut b, &mut a);
        sent += usize::from(matches!(a[0], Action::Reply { .. }));
    }
    assert_eq!(sent, 3, "half of a burst of 5, rounded up");
    // Rate 0: never.
    lab.builder
        .icmp(dataplane::tables::IcmpLimit { rate: 0, burst: 5 });
    lab.snap = lab.builder.build().unwrap();
    assert_eq!(send(&mut lab, 20_000, 5), 0, "rate 0 sends nothing");
}

#[test]
fn the_quote_fits_576_bytes_and_the_tunnel_back() {
    // A 1400-byte packet whose TTL expires, from b (plain GRE, MTU 1500) and from small's
    // router (MTU 200: 176 bytes of room for the whole error).
    let f = pkts(&[
        "from_b(IP(src='10.2.0.5', dst='8.8.8.8', ttl=1)/data(1372))",
        "e0()/IP(src=RS, dst=L1)/GRE()/IP(src='10.6.0.5', dst='8.8.8.8', ttl=1)/data(1372)",
    ]);
    let mut lab = Lab::new();
    let k = IcmpKind::TimeExceeded;
    let ttl = DropReason::TtlExceeded;
    let (_, out) = lab.expect_icmp(CLIENT_PORT, &f[0], ttl, k, "from b");
    assert_eq!(out.len(), OUTER + 4 + 576, "576 bytes, as RFC 1812 allows");
    check_icmp_error(
        "from b",
        &out,
        OUTER + 4,
        ("192.0.2.1", "10.2.0.5"),
        (11, 0, 0),
        &inner_of(&f[0], 4)[..548],
    );
    let (_, out) = lab.expect_icmp(CLIENT_PORT, &f[1], ttl, k, "from small");
    assert_eq!(out.len(), OUTER + 4 + 176, "what small's MTU leaves");
    assert_eq!(&out[..6], &remote_mac(6).0);
    check_icmp_error(
        "from small",
        &out,
        OUTER + 4,
        ("192.0.2.1", "10.6.0.5"),
        (11, 0, 0),
        &inner_of(&f[1], 4)[..148],
    );
}

// =======================================================================================
// Path MTU from the underlay (RFC 1191, RFC 4459 section 3.2): ICMP Fragmentation Needed
// about a packet one of our tunnels sent, from a router between us and the client router.

/// The underlay router of the frames `frag_needed` builds.
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

/// Send a frame that must be taken as a path MTU report: checks the action, that the
/// `pmtu` punt counter and nothing else moved, and returns the report.
fn expect_report(lab: &mut Lab, frame: &[u8], case: &str) -> PathMtuReport {
    let before = lab.counters().clone();
    let (a, _) = lab.send(CLIENT_PORT, frame);
    let Action::PathMtu(r) = a else {
        panic!("{case}: expected a path MTU report, got {a:?}");
    };
    let after = lab.counters();
    assert_eq!(
        after.punt_count(PuntReason::PathMtu),
        before.punt_count(PuntReason::PathMtu) + 1,
        "{case}: punted pmtu"
    );
    assert_eq!(after.drops, before.drops, "{case}: no drop");
    assert_eq!(after.events, before.events, "{case}: no event");
    r
}

/// Take a report on the control side and publish the result into the lab's tables, as the
/// control thread does.
fn take_report(lab: &mut Lab, mtus: &mut PathMtus, r: &PathMtuReport) -> Outcome {
    let o = mtus.report(&lab.snap, r, Instant::now());
    mtus.apply(&mut lab.builder);
    lab.snap = lab.builder.build().unwrap();
    o
}

fn id_of(lab: &Lab, name: &str) -> TunnelId {
    lab.snap.tunnels().by_name(name).expect("lab tunnel")
}

#[test]
fn underlay_fragmentation_needed_lowers_the_tunnels_mtu_to_the_next_hop_mtu() {
    // Tunnel b (plain GRE, MTU 1500) sent a 1500-byte packet; a router on the way says its
    // next hop carries 1400. RFC 1191: packets to that path must now be at most 1400 bytes,
    // so b's outer MTU is 1400 and its inner MTU 1400 - 20 - 4 = 1376.
    let f = pkts(&[
        "frag_needed(ours(RB, GRE()), 1400)",
        // Then from c's clients into b: 1377 bytes inside (too big, DF), and 1376.
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.2.0.9', flags='DF')/data(1349)",
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.2.0.9', flags='DF')/data(1348)",
    ]);
    let mut lab = Lab::new();
    let b = id_of(&lab, "b");
    // Before: 1377 bytes fit (1401 outside, under 1500).
    lab.expect_transmit(CLIENT_PORT, &f[1], "before the report: 1377 fits");

    let r = expect_report(&mut lab, &f[0], "b's packet, next hop 1400");
    assert_eq!(
        r,
        PathMtuReport {
            tunnel: b,
            remote: RB,
            from: ROUTER,
            reported: 1400,
            mtu: 1400,
        }
    );
    let mut mtus = PathMtus::default();
    assert_eq!(
        take_report(&mut lab, &mut mtus, &r),
        Outcome::Lowered {
            tunnel: "b".into(),
            was: 1500,
            mtu: 1400,
            reported: 1400,
            from: ROUTER,
        }
    );
    let e = lab.snap.tunnels().get(b).unwrap();
    assert_eq!((e.mtu, e.path_mtu, e.config.mtu), (1400, Some(1400), 1500));

    // 1377 bytes no longer fit: Fragmentation Needed back into c with b's new inner MTU.
    let (_, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f[1],
        DropReason::MtuExceeded,
        IcmpKind::FragmentationNeeded,
        "after: 1377 over 1376",
    );
    check_icmp_error(
        "after: 1377 over 1376",
        &out,
        OUTER,
        ("192.0.2.1", "10.3.0.5"),
        (3, 4, 1376),
        &inner_of(&f[1], 0)[..548],
    );
    // 1376 bytes go, in a 1400-byte outer packet: what the router's next hop carries.
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f[2], "after: 1376 fits");
    check_fields(
        "after: 1376 fits",
        &out,
        &[("p[IP].dst", "198.51.100.2"), ("p[IP].len", "1400")],
    );
    // Nothing else changed: a's MTU is its own.
    assert_eq!(lab.snap.tunnels().get(id_of(&lab, "a")).unwrap().mtu, 1500);
    assert_conserved(lab.counters());
}

#[test]
fn underlay_reports_are_raised_to_the_floor_and_read_from_short_quotes() {
    let f = pkts(&[
        // b: next hop 300 and 0 (a router older than RFC 1191): 576 inside at least.
        "frag_needed(ours(RB, GRE()), 300)",
        "frag_needed(ours(RB, GRE()), 0)",
        // c (IPIP): 20 bytes of headers, floor 596.
        "frag_needed(ours(RC), 500)",
        // d: key 400, no checksum: 8 bytes past the IP header show flags, protocol and key.
        "frag_needed(ours(RD, GRE(key_present=1, key=400)), 1300, cut=28)",
        // a: checksum, key, sequence: the key is 8 bytes into GRE; a whole quote shows it.
        "frag_needed(ours(RA, GRE(chksum_present=1, key_present=1, key=100, \
         seqnum_present=1, sequence_number=9)), 1200)",
        // ... and a quote of 8 bytes past the IP header does not: the key is not seen.
        "frag_needed(ours(RA, GRE(chksum_present=1, key_present=1, key=100, \
         seqnum_present=1, sequence_number=9)), 1200, cut=28)",
    ]);
    let mut lab = Lab::new();
    let report = |tunnel, remote, reported, mtu| PathMtuReport {
        tunnel,
        remote,
        from: ROUTER,
        reported,
        mtu,
    };
    let (b, c, d, a) = (
        id_of(&lab, "b"),
        id_of(&lab, "c"),
        id_of(&lab, "d"),
        id_of(&lab, "a"),
    );
    assert_eq!(
        expect_report(&mut lab, &f[0], "b, 300"),
        report(b, RB, 300, 600)
    );
    assert_eq!(
        expect_report(&mut lab, &f[1], "b, 0"),
        report(b, RB, 0, 600)
    );
    assert_eq!(
        expect_report(&mut lab, &f[2], "c, 500"),
        report(c, RC, 500, 596)
    );
    assert_eq!(
        expect_report(&mut lab, &f[3], "d, 8 bytes of GRE"),
        report(d, RD, 1300, 1300)
    );
    assert_eq!(
        expect_report(&mut lab, &f[4], "a, whole quote"),
        report(a, RA, 1200, 1200)
    );
    lab.expect_drop(
        CLIENT_PORT,
        &f[5],
        DropReason::PmtuTruncated,
        "a, the key beyond the quote",
    );
    // Published: b's inner MTU is 576, c's too.
    let mut mtus = PathMtus::default();
    for r in [report(b, RB, 0, 600), report(c, RC, 500, 596)] {
        take_report(&mut lab, &mut mtus, &r);
    }
    for t in [b, c] {
        let hot = lab.snap.tunnels().hot(t).unwrap();
        assert_eq!(hot.inner_mtu(), 576, "{t:?}");
    }
}

/// The test plan's ICMP-in and FI-7 cases: a message that does not quote a header one of
/// our tunnels sends, on the port it faces, changes nothing and is counted by name; one
/// about a packet that is no tunnel's goes where any ICMP to us goes.
#[test]
fn forged_or_foreign_fragmentation_needed_changes_nothing() {
    let cases: &[(&str, Option<DropReason>, &str)] = &[
        // The quote: wrong local, wrong remote, wrong protocol, wrong key.
        (
            "frag_needed(ours(RB, GRE(), src=L2), 1400)",
            Some(DropReason::PmtuNotOurs),
            "from our other address: no tunnel",
        ),
        (
            "frag_needed(ours(RB, GRE(), src=LC), 1400, dst=LC)",
            Some(DropReason::PmtuNotOurs),
            "from our core address: no tunnel",
        ),
        (
            "frag_needed(ours('198.51.100.99', GRE()), 1400)",
            Some(DropReason::PmtuNotOurs),
            "to a remote that is no tunnel's",
        ),
        (
            "frag_needed(ours(RB), 1400)",
            Some(DropReason::PmtuNotOurs),
            "IPIP to b, a GRE tunnel",
        ),
        (
            "frag_needed(ours(RC, GRE()), 1400)",
            Some(DropReason::PmtuNotOurs),
            "GRE to c, an IPIP tunnel",
        ),
        (
            "frag_needed(ours(RD, GRE(key_present=1, key=401)), 1400)",
            Some(DropReason::PmtuNotOurs),
            "d with the wrong key",
        ),
        (
            "frag_needed(ours(RD, GRE()), 1400)",
            Some(DropReason::PmtuNotOurs),
            "d without its key",
        ),
        (
            "frag_needed(ours(RB, GRE(key_present=1, key=0)), 1400)",
            Some(DropReason::PmtuNotOurs),
            "b with a key it does not have",
        ),
        (
            "frag_needed(ours(RA, GRE(key_present=1, key=100)), 1400)",
            Some(DropReason::PmtuNotOurs),
            "a's key without the checksum and sequence a sends",
        ),
        (
            "frag_needed(ours(RB, GRE(seqnum_present=1)), 1400)",
            Some(DropReason::PmtuNotOurs),
            "b with a sequence number it does not send",
        ),
        (
            "frag_needed(ours(RB, GRE(version=1)), 1400)",
            Some(DropReason::PmtuNotOurs),
            "GRE version 1",
        ),
        (
            "frag_needed(ours(RB, GRE(proto=0x6558)), 1400)",
            Some(DropReason::PmtuNotOurs),
            "GRE carrying Ethernet (IPv6 is ours: underlay_reports_about_our_ipv6_packets_are_believed)",
        ),
        (
            "frag_needed(ours(RB, GRE(), options=[IPOption(b'\\x01\\x01\\x01\\x00')]), 1400)",
            Some(DropReason::PmtuNotOurs),
            "IP options, which we never send",
        ),
        (
            "frag_needed(ours(RB, GRE()), 1400, dst=L2)",
            Some(DropReason::PmtuNotOurs),
            "sent to another of our addresses than the quoted source",
        ),
        (
            "frag_needed(ours(RX, GRE(key_present=1, key=7), src=LC), 1400, dst=LC)",
            Some(DropReason::PmtuNotOurs),
            "edge's packet, arriving on the client port",
        ),
        // Truncated quotes.
        (
            "frag_needed(ours(RB, GRE()), 1400, cut=19)",
            Some(DropReason::PmtuTruncated),
            "19 bytes: no whole IPv4 header",
        ),
        (
            "frag_needed(ours(RB, GRE()), 1400, cut=20)",
            Some(DropReason::PmtuTruncated),
            "the IPv4 header alone",
        ),
        (
            "frag_needed(ours(RB, GRE()), 1400, cut=27)",
            Some(DropReason::PmtuTruncated),
            "7 bytes past the IPv4 header",
        ),
        (
            "frag_needed(ours(RB, GRE()), 1400, cut=0)",
            Some(DropReason::PmtuTruncated),
            "no quote at all",
        ),
        // Malformed.
        (
            "frag_needed(ours(RB, GRE()), 1400, chksum=0x1234)",
            Some(DropReason::PmtuMalformed),
            "a wrong ICMP checksum",
        ),
        (
            "frag_needed(ours(RB, GRE(), version=6), 1400)",
            Some(DropReason::PmtuMalformed),
            "a quoted header of version 6",
        ),
        (
            "frag_needed(ours(RB, GRE(), ihl=4), 1400)",
            Some(DropReason::PmtuMalformed),
            "a quoted IHL of 4",
        ),
        // An MTU that the quoted packet would have fitted.
        (
            "frag_needed(ours(RB, GRE()), 1500)",
            Some(DropReason::PmtuNotSmaller),
            "next hop 1500 for a 1500-byte packet",
        ),
        (
            "frag_needed(ours(RB, GRE(), total=1000), 1400)",
            Some(DropReason::PmtuNotSmaller),
            "next hop 1400 for a 1000-byte packet",
        ),
        // About a packet that is no tunnel's (the host's own, say): any ICMP to us.
        (
            "frag_needed(IP(src=L1, dst='198.51.100.2', flags='DF')/UDP()/Raw(b'x' * 1472), \
             1400)",
            None,
            "about a UDP packet",
        ),
    ];
    let exprs: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let f = pkts(&exprs);
    let mut lab = Lab::new();
    let generation = lab.snap.generation();
    for ((_, want, case), frame) in cases.iter().zip(&f) {
        match want {
            Some(reason) => lab.expect_drop(CLIENT_PORT, frame, *reason, case),
            None => {
                let before = lab.counters().event_count(Event::PmtuNotTunnel);
                let out = lab.expect_punt(CLIENT_PORT, frame, PuntReason::Local, case);
                assert_eq!(out, frame[ETH..], "{case}: handed on untouched");
                assert_eq!(
                    lab.counters().event_count(Event::PmtuNotTunnel),
                    before + 1,
                    "{case}: counted pmtu_not_tunnel"
                );
            }
        }
    }
    // The same message as the first, inside tunnel c (from a client, not the underlay):
    // an ICMP error for us like any other.
    let inside = pkt(
        "e0()/IP(src=RC, dst=L1)/IP(bytes(frag_needed(ours(RB, GRE()), \
                      1400))[14:])",
    );
    lab.expect_punt(
        CLIENT_PORT,
        &inside,
        PuntReason::LocalInner,
        "inside a tunnel",
    );
    // A genuine one on the wrong port (the core port, to our endpoint): not b's port.
    let on_core = pkt("frag_needed(ours(RB, GRE()), 1400, eth=e1)");
    lab.expect_drop(
        CORE_PORT,
        &on_core,
        DropReason::PmtuNotOurs,
        "on the core port",
    );
    assert_eq!(lab.counters().punt_count(PuntReason::PathMtu), 0);
    assert_eq!(lab.snap.generation(), generation);
    // Nothing changed: b still carries 1476 inside, and says so.
    let big = pkt(
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.2.0.9', \
                   flags='DF')/data(1449)",
    );
    let (_, out) = lab.expect_icmp(
        CLIENT_PORT,
        &big,
        DropReason::MtuExceeded,
        IcmpKind::FragmentationNeeded,
        "still 1476",
    );
    check_icmp_error(
        "still 1476",
        &out,
        OUTER,
        ("192.0.2.1", "10.3.0.5"),
        (3, 4, 1476),
        &inner_of(&big, 0)[..548],
    );
    // And the genuine message is taken: the checks above are not what refuses them all.
    expect_report(
        &mut lab,
        &pkt("frag_needed(ours(RB, GRE()), 1400)"),
        "control: b's own packet",
    );
    assert_conserved(lab.counters());
}

#[test]
fn genuine_messages_with_nothing_to_lower_are_consumed_and_counted() {
    let f = pkts(&[
        // small: MTU 200, below its floor of 600: nothing a report can lower.
        "frag_needed(ours(RS, GRE(), total=200), 150)",
        // b: next hop 1450, then 1400, then 1450 again.
        "frag_needed(ours(RB, GRE()), 1450)",
        "frag_needed(ours(RB, GRE()), 1400)",
    ]);
    let mut lab = Lab::new();
    let not_lower = |lab: &mut Lab, frame: &[u8], case: &str| {
        let before = lab.counters().clone();
        let (a, _) = lab.send(CLIENT_PORT, frame);
        assert_eq!(a, Action::Punt(PuntReason::PathMtu), "{case}");
        let after = lab.counters();
        assert_eq!(
            after.event_count(Event::PmtuNotLower),
            before.event_count(Event::PmtuNotLower) + 1,
            "{case}"
        );
        assert_eq!(after.drops, before.drops, "{case}");
    };
    not_lower(&mut lab, &f[0], "small");
    let mut mtus = PathMtus::default();
    let r = expect_report(&mut lab, &f[1], "b to 1450");
    take_report(&mut lab, &mut mtus, &r);
    let r = expect_report(&mut lab, &f[2], "b to 1400");
    take_report(&mut lab, &mut mtus, &r);
    not_lower(&mut lab, &f[1], "b back up to 1450: never from a message");
    not_lower(&mut lab, &f[2], "b at 1400 again");
    assert_eq!(lab.snap.tunnels().get(id_of(&lab, "b")).unwrap().mtu, 1400);
    assert_conserved(lab.counters());
}

// =======================================================================================
// Property tests: hostile input never panics, counters add up, outputs are valid.

/// A snapshot shared by the property tests (sequence state accumulates; harmless here).
fn shared_snapshot() -> &'static Arc<Snapshot> {
    static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();
    SNAP.get_or_init(|| Lab::new().snap)
}

/// Valid frames to mutate: (port, frame).
fn seeds() -> &'static [(PortIndex, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(PortIndex, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let exprs = [
            (
                CLIENT_PORT,
                "from_b(IP(src='10.2.0.5', dst='8.8.8.8')/data())",
            ),
            (
                CLIENT_PORT,
                "from_b(IP(src='10.2.0.5', dst='10.1.0.9')/data(30))",
            ),
            (
                CLIENT_PORT,
                "from_b(IP(src='10.2.0.5', dst='10.4.0.9', flags='DF')/data(), chksum_present=1)",
            ),
            (
                CLIENT_PORT,
                "e0()/IP(src=RA, dst=L1)/GRE(chksum_present=1, key_present=1, key=100, \
                 seqnum_present=1, sequence_number=77)/IP(src='10.1.0.5', dst='10.3.0.9')/data()",
            ),
            (
                CLIENT_PORT,
                "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='10.2.0.9', tos=2)/data()",
            ),
            (CLIENT_PORT, "e0()/IP(src=RB, dst=L1)/ICMP()"), // an echo request: answered
            (CORE_PORT, "e1()/IP(src='8.8.4.4', dst='10.2.0.9')/data()"),
            (CORE_PORT, "e1()/IP(src='8.8.4.4', dst='8.8.8.8')/data()"),
        ];
        let f = pkts(&exprs.iter().map(|(_, e)| *e).collect::<Vec<_>>());
        exprs.iter().map(|(p, _)| *p).zip(f).collect()
    })
}

/// Run one burst through a fresh worker and check everything that must always hold.
fn check_burst(port: PortIndex, bufs: &mut [TestBuf]) {
    check_traced_decides_the_same(port, bufs);
    let snap = shared_snapshot();
    let mut w = Pipeline::new(0);
    let mut actions = vec![Action::Drop(DropReason::Runt); bufs.len()];
    w.process(snap, port, bufs, &mut actions);
    let c = w.counters();
    assert_eq!(c.ports[usize::from(port)].rx.packets, bufs.len() as u64);
    assert_conserved(c);
    let mut tx = [0u64; 2];
    for (b, a) in bufs.iter().zip(&actions) {
        let (Action::Transmit(out)
        | Action::Reply { port: out, .. }
        | Action::Answer { port: out, .. }) = a
        else {
            continue;
        };
        let mac = snap.port(*out).expect("transmit to a configured port").mac;
        assert_sane_output(b.data(), mac);
        let mtu = snap.port(*out).unwrap().mtu;
        assert!(b.len() - 14 <= usize::from(mtu), "within the port MTU");
        if let Action::Transmit(_) = a {
            tx[usize::from(*out)] += 1;
        }
    }
    assert_eq!([c.ports[0].tx.packets, c.ports[1].tx.packets], tx);
}

/// The traced build of the pipeline (`ctl trace`, `ctl capture`) decides exactly as the
/// untraced one: the same actions, bytes and counters, on tables of their own (GRE
/// sequence state lives in the tables). Its records agree with the actions; every drop is
/// counted once more under a tunnel or a port, and those add up to the reason's total.
fn check_traced_decides_the_same(port: PortIndex, bufs: &[TestBuf]) {
    use dataplane::pipeline::trace::Stop;
    use dataplane::pipeline::PacketTrace;
    let (plain_snap, traced_snap) = (Lab::new().snap, Lab::new().snap);
    let (mut plain, mut traced) = (bufs.to_vec(), bufs.to_vec());
    let (mut p, mut t) = (Pipeline::new(0), Pipeline::new(0));
    let mut pa = vec![Action::Drop(DropReason::Runt); bufs.len()];
    let mut ta = pa.clone();
    let mut traces = vec![PacketTrace::default(); bufs.len()];
    p.process(&plain_snap, port, &mut plain, &mut pa);
    t.process_traced(&traced_snap, port, &mut traced, &mut ta, &mut traces);
    assert_eq!(pa, ta, "actions");
    assert_eq!(plain, traced, "bytes");
    assert_eq!(p.counters(), t.counters(), "counters");
    for (tr, a) in traces.iter().zip(&ta) {
        assert_eq!(tr.action, *a);
        assert_eq!(tr.rx_port, port);
        match (a, tr.stopped) {
            (Action::Drop(r), Some((_, Stop::Drop(s) | Stop::Icmp { reason: s, .. }))) => {
                assert_eq!(*r, s, "{tr:?}")
            }
            (Action::Drop(_), other) => panic!("a drop stopped by {other:?}: {tr:?}"),
            (Action::Transmit(_), stopped) => assert_eq!(stopped, None, "{tr:?}"),
            _ => {}
        }
    }
    let c = t.counters();
    for r in DropReason::ALL {
        let tunnels: u64 = c.tunnel_drops.iter().map(|d| d.get(*r)).sum();
        let ports: u64 = c.ports.iter().map(|p| p.drops[*r as usize]).sum();
        assert_eq!(
            tunnels + ports,
            c.drop_count(*r),
            "{} by tunnel and port",
            r.name()
        );
    }
}

/// An IPv4 header to us from tunnel b's peer with a correct checksum, then `rest`.
fn outer_to_us(rest: &[u8], proto: u8) -> Vec<u8> {
    let total = (20 + rest.len()) as u16;
    let mut ip = vec![
        0x45,
        0x00, // version 4, IHL 5; DSCP 0, ECN Not-ECT
        (total >> 8) as u8,
        total as u8, // total length
        0x00,
        0x01, // identification
        0x00,
        0x00, // flags and fragment offset: none
        64,
        proto, // TTL 64; protocol
        0x00,
        0x00, // checksum, filled below
        198,
        51,
        100,
        2, // source: tunnel b's remote
        192,
        0,
        2,
        1, // destination: our endpoint
    ];
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(w[1]))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    let mut frame = vec![
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination: port 0's MAC
        0x02, 0x00, 0x00, 0x00, 0xee, 0xee, // source: the peer
        0x08, 0x00, // EtherType: IPv4
    ];
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(rest);
    frame
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_and_counters_add_up(
        port in 0u16..2,
        frames in prop::collection::vec(
            (0u8..4, prop::collection::vec(any::<u8>(), 0..200), 0usize..160),
            1..12,
        ),
    ) {
        let mut bufs: Vec<TestBuf> = frames
            .iter()
            .map(|(shape, bytes, headroom)| {
                let frame = match shape {
                    // Raw bytes.
                    0 => bytes.clone(),
                    // Our MAC and IPv4, then anything.
                    1 => {
                        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0xee, 0xee, 0x08, 0x00];
                        f.extend_from_slice(bytes);
                        f
                    }
                    // A valid outer header to us: random GRE.
                    2 => outer_to_us(bytes, 47),
                    // A valid outer header to us: random IPIP.
                    _ => outer_to_us(bytes, 4),
                };
                TestBuf::with_headroom(&frame, *headroom)
            })
            .collect();
        check_burst(port, &mut bufs);
    }

    #[test]
    fn mutated_valid_packets_never_panic_and_outputs_stay_valid(
        burst in prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
                prop::option::of(any::<prop::sample::Index>()),
                0usize..160,
            ),
            1..10,
        ),
        port in 0u16..2,
    ) {
        let seeds: Vec<&Vec<u8>> =
            seeds().iter().filter(|(p, _)| *p == port).map(|(_, f)| f).collect();
        let mut bufs: Vec<TestBuf> = burst
            .iter()
            .map(|(which, flips, cut, headroom)| {
                let mut f = which.get(&seeds).to_vec();
                for (at, x) in flips {
                    let i = at.index(f.len());
                    f[i] ^= x;
                }
                if let Some(cut) = cut {
                    let keep = cut.index(f.len() + 1);
                    f.truncate(keep);
                }
                TestBuf::with_headroom(&f, *headroom)
            })
            .collect();
        check_burst(port, &mut bufs);
    }
}

#[test]
fn the_unmutated_seeds_are_forwarded_or_punted() {
    // The mutation property only means something if its seeds reach deep: check them.
    // A fresh lab: the shared snapshot's sequence window may have moved past the seed's.
    let mut lab = Lab::new();
    let mut forwarded = 0;
    for (port, frame) in seeds() {
        match lab.send(*port, frame).0 {
            Action::Transmit(_) => forwarded += 1,
            Action::Answer {
                punt: PuntReason::Local,
                ..
            } => {}
            other => panic!("seed {frame:02x?} gave {other:?}"),
        }
    }
    assert_eq!(forwarded, seeds().len() - 1);
}

// =======================================================================================
// IPv6 inside IPv4 tunnels (RFC 7676 GRE 0x86DD, RFC 4213 protocol 41; the SPEC rules in
// IPv6: RFC 8200, RFC 4291, RFC 6040 on the traffic class, RFC 4443 for the errors).

/// GRE from tunnel b's peer carrying IPv6 (protocol type 0x86DD, RFC 7676).
fn from_b6(inner: &str) -> String {
    format!("e0()/IP(src=RB, dst=L1)/GRE(proto=0x86dd)/{inner}")
}

/// IPv6-in-IPv4 (protocol 41, RFC 4213) from tunnel c's peer (an IPIP tunnel).
fn from_c6(inner: &str) -> String {
    format!("e0()/IP(src=RC, dst=L1, proto=41)/{inner}")
}

/// An inner IPv6 packet from `src` to `dst` with hop limit `hlim` and traffic class `tc`.
fn v6(src: &str, dst: &str, hlim: u8, tc: u8) -> String {
    format!("IPv6(src='{src}', dst='{dst}', hlim={hlim}, tc={tc})/data()")
}

/// What we must send into a tunnel with the default policy (TTL 64, DSCP and ECN copied
/// from the inner traffic class, DF set, RFC 2983 / RFC 6040 / RFC 4213 3.2), built by
/// scapy: `outer` is the outer IPv4's own fields and what follows it (GRE, or nothing for
/// protocol 41), `inner` the inner packet as it must leave. The identification is ours to
/// choose: taken from `got`.
fn expect_v6_out(got: &[u8], mac_last: u8, outer: &str, inner: &str, case: &str) {
    let id = u16::from_be_bytes([got[18], got[19]]);
    let want = pkt(&format!(
        "Ether(dst='02:00:00:00:aa:{mac_last:02x}', src=P0)/IP(src=L1, ttl=64, flags='DF', \
         id={id}, {outer}/{inner}"
    ));
    assert_eq!(hex(got), hex(&want), "{case}: byte for byte against scapy");
}

#[test]
fn ipv6_in_gre_is_forwarded_into_an_ipv6_in_ipv4_tunnel_and_back() {
    let mut lab = Lab::new();
    // GRE 0x86DD from b to c's prefix: out as protocol 41 to c, hop limit one less, the
    // traffic class (DSCP 10, ECT(0)) copied to the outer TOS.
    let f = pkt(&from_b6(&v6("2001:db8:2::5", "2001:db8:3::9", 64, 0x2a)));
    let (port, out) = lab.expect_transmit(CLIENT_PORT, &f, "b to c");
    assert_eq!(port, CLIENT_PORT);
    expect_v6_out(
        &out,
        3,
        "dst=RC, tos=0x2a, proto=41)",
        &v6("2001:db8:2::5", "2001:db8:3::9", 63, 0x2a),
        "b to c",
    );
    // Protocol 41 from c to b's prefix: out in GRE with protocol type 0x86DD.
    let f = pkt(&from_c6(&v6("2001:db8:3::9", "2001:db8:2::5", 7, 0)));
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "c to b");
    expect_v6_out(
        &out,
        2,
        "dst=RB, tos=0)/GRE(proto=0x86dd)",
        &v6("2001:db8:3::9", "2001:db8:2::5", 6, 0),
        "c to b",
    );
    // Into tunnel a (key, sequence numbers, checksum), and b's extra source accepted.
    let f = pkt(&from_b6(&v6("2001:db8:b2::1", "2001:db8:1::1", 9, 0)));
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "b to a");
    expect_v6_out(
        &out,
        1,
        "dst=RA, tos=0)/GRE(chksum_present=1, key_present=1, key=100, seqnum_present=1, \
         sequence_number=0, proto=0x86dd)",
        &v6("2001:db8:b2::1", "2001:db8:1::1", 8, 0),
        "b to a",
    );
    // A tunnel with no IPv6 of its own takes an IPv6 route (2001:db8:e0::/48 into e).
    let f = pkt(&from_b6(&v6("2001:db8:2::5", "2001:db8:e0::1", 64, 0)));
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "b to e by an IPv6 route");
    expect_v6_out(
        &out,
        7,
        "dst=RE, tos=0)/GRE(proto=0x86dd)",
        &v6("2001:db8:2::5", "2001:db8:e0::1", 63, 0),
        "b to e",
    );
    let c = lab.counters();
    assert_eq!(c.tunnels[tunnel_id(&lab.snap, "c")].rx.packets, 1);
    assert_eq!(c.tunnels[tunnel_id(&lab.snap, "c")].tx.packets, 1);
    assert_conserved(c);
}

#[test]
fn ipv6_padding_after_the_payload_length_is_trimmed() {
    let mut lab = Lab::new();
    // Eight bytes after the packet its payload length describes: not forwarded.
    let f = pkt(&from_b6(&format!(
        "Raw(bytes({}) + b'PADPADPA')",
        v6("2001:db8:2::5", "2001:db8:3::9", 64, 0)
    )));
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "padded");
    expect_v6_out(
        &out,
        3,
        "dst=RC, tos=0, proto=41)",
        &v6("2001:db8:2::5", "2001:db8:3::9", 63, 0),
        "padded",
    );
}

#[test]
fn bad_inner_ipv6_headers_are_dropped() {
    let mut lab = Lab::new();
    let good = v6("2001:db8:2::5", "2001:db8:3::9", 64, 0);
    lab.expect_transmit(CLIENT_PORT, &pkt(&from_b6(&good)), "control");
    let cases = [
        // An IPv4 packet labelled IPv6 (version 4).
        (
            from_b6("IP(src='10.2.0.5', dst='10.3.0.9')/data()"),
            "version 4 under 0x86DD",
        ),
        // Version 5 in an otherwise good header.
        (
            from_b6(&good.replace("IPv6(", "IPv6(version=5, ")),
            "version 5",
        ),
        // The payload length one past what arrived.
        (
            from_b6(&good.replace("IPv6(", "IPv6(plen=25, ")),
            "payload length",
        ),
        // Shorter than the fixed header.
        (
            from_b6("Raw(bytes(IPv6(src='2001:db8:2::5', dst='2001:db8:3::9'))[:39])"),
            "39 bytes",
        ),
        (from_b6("Raw(b'')"), "nothing inside"),
        // Sources no IPv6 node may send from (RFC 4291 2.5.2, 2.5.3, 2.7).
        (
            from_b6(&v6("::", "2001:db8:3::9", 64, 0)),
            "unspecified source",
        ),
        (
            from_b6(&v6("::1", "2001:db8:3::9", 64, 0)),
            "loopback source",
        ),
        (
            from_b6(&v6("ff02::1", "2001:db8:3::9", 64, 0)),
            "multicast source",
        ),
        (
            from_c6(&good.replace("IPv6(", "IPv6(version=4, ")),
            "protocol 41, version 4",
        ),
    ];
    for (expr, case) in cases {
        let f = pkt(&expr);
        lab.expect_drop(CLIENT_PORT, &f, DropReason::BadInnerIpv6, case);
    }
    let b = tunnel_id(&lab.snap, "b");
    assert_eq!(
        lab.counters().tunnel_drops[b].get(DropReason::BadInnerIpv6),
        8,
        "counted under tunnel b"
    );
    assert_conserved(lab.counters());
}

#[test]
fn ipv6_tunnels_are_found_by_their_endpoints_and_protocol() {
    let mut lab = Lab::new();
    let good = v6("2001:db8:2::5", "2001:db8:3::9", 64, 0);
    // Protocol 41 between b's endpoints: b is a GRE tunnel, there is no IPIP tunnel there.
    let f = pkt(&format!("e0()/IP(src=RB, dst=L1, proto=41)/{good}"));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::NoTunnel, "41 to a GRE tunnel");
    // GRE between c's endpoints: c is IPIP.
    let f = pkt(&format!(
        "e0()/IP(src=RC, dst=L1)/GRE(proto=0x86dd)/{}",
        v6("2001:db8:3::9", "2001:db8:2::5", 64, 0)
    ));
    lab.expect_drop(
        CLIENT_PORT,
        &f,
        DropReason::NoTunnel,
        "GRE to an IPIP tunnel",
    );
    // Other GRE protocol types stay unsupported (transparent Ethernet bridging).
    let f = pkt(&format!("e0()/IP(src=RB, dst=L1)/GRE(proto=0x6558)/{good}"));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::UnsupportedInner, "0x6558");
    // Keyed tunnel a: its key, sequence and checksum rules hold for IPv6 too.
    let f = pkt(&format!(
        "e0()/IP(src=RA, dst=L1)/GRE(key_present=1, key=100, proto=0x86dd)/{}",
        v6("2001:db8:1::1", "2001:db8:2::5", 64, 0)
    ));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::GreSequence, "a without S");
    let f = pkt(&from_a(
        Some(1),
        &v6("2001:db8:1::1", "2001:db8:2::5", 64, 0),
    ));
    let f = {
        // from_a writes protocol 0x0800 unless told; GRE's scapy binding sets 0x86DD for
        // an IPv6 payload: check it is what the wire holds.
        assert_eq!(&f[OUTER + 2..OUTER + 4], &[0x86, 0xdd]);
        f
    };
    lab.expect_transmit(CLIENT_PORT, &f, "a with key and sequence");
}

#[test]
fn inner_ipv6_sources_are_checked_against_the_tunnel() {
    let mut lab = Lab::new();
    // c's prefix through b; b's link6 prefix is b's; a link-local source never passes.
    for (src, case) in [
        ("2001:db8:3::1", "another client's prefix"),
        ("2001:db8:99::1", "nobody's"),
        ("fe80::1", "link-local"),
        ("fd00:c::", "c's link prefix"),
    ] {
        let f = pkt(&from_b6(&v6(src, "2001:db8:1::1", 64, 0)));
        lab.expect_drop(CLIENT_PORT, &f, DropReason::InnerSpoofed, case);
    }
    let f = pkt(&from_b6(&v6("fd00:b::", "2001:db8:1::1", 64, 0)));
    lab.expect_transmit(CLIENT_PORT, &f, "the client router's side of b's link");
}

#[test]
fn ipv6_hop_limit_is_decremented_and_expiry_answered_with_time_exceeded() {
    let mut lab = Lab::new();
    let f = pkt(&from_b6(&v6("2001:db8:2::5", "2001:db8:3::9", 2, 0)));
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "hop limit 2");
    expect_v6_out(
        &out,
        3,
        "dst=RC, tos=0, proto=41)",
        &v6("2001:db8:2::5", "2001:db8:3::9", 1, 0),
        "hop limit 2",
    );
    // Hop limit 1: dropped, answered into b from b's link6 (RFC 4443 3.3, code 0), quoting
    // the packet as it arrived.
    let inner = pkt(&v6("2001:db8:2::5", "2001:db8:3::9", 1, 0));
    let f = pkt(&from_b6(&v6("2001:db8:2::5", "2001:db8:3::9", 1, 0)));
    let (port, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f,
        DropReason::TtlExceeded,
        IcmpKind::Icmpv6TimeExceeded,
        "hop limit 1",
    );
    assert_eq!(port, CLIENT_PORT);
    expect_v6_out(
        &out,
        2,
        "dst=RB, tos=0xc0)/GRE(proto=0x86dd)",
        &format!(
            "IPv6(src='fd00:b::1', dst='2001:db8:2::5', hlim=64, tc=0xc0)/\
             ICMPv6TimeExceeded(code=0)/Raw(bytes.fromhex('{}'))",
            hex(&inner)
        ),
        "time exceeded",
    );
    assert_conserved(lab.counters());
}

#[test]
fn ipv6_ecn_follows_rfc_6040_on_decapsulation_and_encapsulation() {
    // (outer ECN, inner ECN) -> inner ECN after decapsulation (RFC 6040 Figure 4), or the
    // drop; the outer ECN written on encapsulation is the inner one (normal mode).
    let cases: [(u8, u8, Option<u8>); 8] = [
        (0, 0, Some(0)),
        (0, 2, Some(2)),
        (2, 0, Some(0)),
        (1, 2, Some(1)),
        (3, 1, Some(3)),
        (3, 2, Some(3)),
        (3, 3, Some(3)),
        (3, 0, None),
    ];
    let mut lab = Lab::new();
    for (outer, inner, want) in cases {
        let tc = 0x28 | inner; // DSCP 10
        let f = pkt(&format!(
            "e0()/IP(src=RB, dst=L1, tos={outer})/GRE(proto=0x86dd)/{}",
            v6("2001:db8:2::5", "2001:db8:3::9", 64, tc)
        ));
        let case = format!("outer {outer} inner {inner}");
        match want {
            Some(ecn) => {
                let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, &case);
                let tc = 0x28 | ecn;
                expect_v6_out(
                    &out,
                    3,
                    &format!("dst=RC, tos={tc}, proto=41)"),
                    &v6("2001:db8:2::5", "2001:db8:3::9", 63, tc),
                    &case,
                );
            }
            None => lab.expect_drop(CLIENT_PORT, &f, DropReason::EcnCeNotEct, &case),
        }
    }
    assert_eq!(lab.counters().event_count(Event::EcnSuspicious), 1);
}

#[test]
fn ipv6_martian_destinations_are_dropped_whatever_the_routes() {
    let mut lab = Lab::new();
    // Each is covered by a route into e: the drop is the address rule's, not no_route's.
    for dst in [
        "::1",
        "::",
        "::ffff:10.1.0.1",
        "fe80::1",
        "febf:ffff::1",
        "ff02::1",
        "ff0e::1",
    ] {
        let f = pkt(&from_b6(&v6("2001:db8:2::5", dst, 64, 0)));
        lab.expect_drop(CLIENT_PORT, &f, DropReason::MartianDestination, dst);
    }
    // Documentation space is forwarded like any routed prefix (it is what the lab uses).
    let f = pkt(&from_b6(&v6("2001:db8:2::5", "2001:db8:e0::1", 64, 0)));
    lab.expect_transmit(CLIENT_PORT, &f, "control");
}

#[test]
fn ipv6_without_a_route_is_answered_with_destination_unreachable() {
    let mut lab = Lab::new();
    let sent = |dst: &str| v6("2001:db8:2::5", dst, 64, 0);
    for (dst, code, kind) in [
        ("2001:db8:99::1", 0, IcmpKind::Icmpv6NoRoute),
        ("2001:db8:70::1", 0, IcmpKind::Icmpv6NoRoute),
        ("2001:db8:71::1", 1, IcmpKind::Icmpv6Prohibited),
    ] {
        let f = pkt(&from_b6(&sent(dst)));
        let (_, out) = lab.expect_icmp(CLIENT_PORT, &f, DropReason::NoRoute, kind, dst);
        // The quote is the packet as it arrived: hop limit 64 again.
        let quote = pkt(&sent(dst));
        expect_v6_out(
            &out,
            2,
            "dst=RB, tos=0xc0)/GRE(proto=0x86dd)",
            &format!(
                "IPv6(src='fd00:b::1', dst='2001:db8:2::5', hlim=64, tc=0xc0)/\
                 ICMPv6DestUnreach(code={code})/Raw(bytes.fromhex('{}'))",
                hex(&quote)
            ),
            dst,
        );
    }
    // A blackhole route drops silently.
    let f = pkt(&from_b6(&sent("2001:db8:66::1")));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::NoRoute, "blackhole");
    // Never an error about an ICMPv6 error (RFC 4443 2.4 (e.1)); an echo request is
    // answered.
    let f = pkt(&from_b6(
        "IPv6(src='2001:db8:2::5', dst='2001:db8:99::1')/ICMPv6DestUnreach()/Raw(b'x' * 8)",
    ));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::NoRoute, "about an error");
    let f = pkt(&from_b6(
        "IPv6(src='2001:db8:2::5', dst='2001:db8:99::1')/ICMPv6EchoRequest()",
    ));
    lab.expect_icmp(
        CLIENT_PORT,
        &f,
        DropReason::NoRoute,
        IcmpKind::Icmpv6NoRoute,
        "about an echo request",
    );
    assert_conserved(lab.counters());
}

#[test]
fn ipv6_too_big_for_the_egress_tunnel_is_answered_with_packet_too_big() {
    let mut lab = Lab::new();
    // Tunnel f: outer MTU 1400, inner 1376 (20 IPv4 + 4 GRE). IPv6 routers never fragment
    // (RFC 8200 section 5): one byte more is dropped and answered with Packet Too Big
    // carrying 1376, into the ingress tunnel b (RFC 4443 3.2).
    let sized = |total: usize| {
        format!(
            "IPv6(src='2001:db8:2::5', dst='2001:db8:f::1', hlim=64)/UDP(sport=1, dport=2)/\
             Raw(b'z' * {})",
            total - 48
        )
    };
    let f = pkt(&from_b6(&sized(1376)));
    let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, "exactly the inner MTU");
    assert_eq!(out.len(), 14 + 1400, "the outer packet is the tunnel's MTU");
    let f = pkt(&from_b6(&sized(1377)));
    let (_, out) = lab.expect_icmp(
        CLIENT_PORT,
        &f,
        DropReason::MtuExceeded,
        IcmpKind::Icmpv6PacketTooBig,
        "one byte over",
    );
    // As much of the packet as fits in 1,280 bytes (RFC 4443 2.4 (c)), as it arrived.
    let quote = pkt(&sized(1377));
    expect_v6_out(
        &out,
        2,
        "dst=RB, tos=0xc0)/GRE(proto=0x86dd)",
        &format!(
            "IPv6(src='fd00:b::1', dst='2001:db8:2::5', hlim=64, tc=0xc0)/\
             ICMPv6PacketTooBig(mtu=1376)/Raw(bytes.fromhex('{}'))",
            hex(&quote[..1280 - 48])
        ),
        "packet too big",
    );
    assert_eq!(out.len(), 14 + 20 + 4 + 1280);
}

#[test]
fn ipv6_hairpin_and_loops_are_dropped() {
    let mut lab = Lab::new();
    let f = pkt(&from_b6(&v6("2001:db8:2::5", "2001:db8:2::9", 64, 0)));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::Hairpin, "back into b");
    // From our own address inside b (which b's link prefix holds).
    let f = pkt(&from_b6(&v6("fd00:b::1", "2001:db8:3::9", 64, 0)));
    lab.expect_drop(CLIENT_PORT, &f, DropReason::TunnelLoop, "from our link6");
    let f = pkt(&from_b6(&v6("fd00:b::", "2001:db8:3::9", 64, 0)));
    lab.expect_transmit(CLIENT_PORT, &f, "control: the client's side");
}

#[test]
fn ipv6_to_our_link_address_is_punted_and_tunnels_inside_are_not_followed() {
    let mut lab = Lab::new();
    let f = pkt(&from_b6(
        "IPv6(src='fd00:b::', dst='fd00:b::1')/ICMPv6EchoRequest()",
    ));
    let got = lab.expect_punt(CLIENT_PORT, &f, PuntReason::LocalInner, "echo to link6");
    assert_eq!(
        got[0] >> 4,
        6,
        "the control path gets the inner IPv6 packet"
    );
    for (nh, case) in [(47, "GRE"), (4, "IPIP"), (41, "IPv6 in IPv6")] {
        let f = pkt(&from_b6(&format!(
            "IPv6(src='fd00:b::', dst='fd00:b::1', nh={nh})/Raw(b'x' * 40)"
        )));
        lab.expect_drop(CLIENT_PORT, &f, DropReason::NestedTunnel, case);
    }
}

#[test]
fn ipv6_extension_headers_are_passed_untouched() {
    let mut lab = Lab::new();
    // RFC 8200 section 4 and RFC 7045: a router forwards on the fixed header and leaves the
    // chain as it is, whatever it holds: the usual four, and a chain of 100 destination
    // options headers (800 bytes) whose end the appliance never reaches.
    let chains = [
        "IPv6ExtHdrHopByHop()/IPv6ExtHdrRouting()/IPv6ExtHdrFragment()/IPv6ExtHdrDestOpt()"
            .to_owned(),
        ["IPv6ExtHdrDestOpt()"; 100].join("/"),
        // A fragment header announcing GRE behind it, to a third party: forwarded.
        "IPv6ExtHdrFragment(nh=47)/Raw(b'\\x00\\x00\\x86\\xdd' + b'y' * 40)".to_owned(),
        // A truncated chain: a hop-by-hop header whose length runs past the packet.
        "IPv6ExtHdrHopByHop(len=200)".to_owned(),
    ];
    for (i, chain) in chains.iter().enumerate() {
        let inner = format!(
            "IPv6(src='2001:db8:2::5', dst='2001:db8:3::9', hlim=64)/{chain}{}",
            if i == 0 || i == 1 { "/data()" } else { "" }
        );
        let case = format!("chain {i}");
        let f = pkt(&from_b6(&inner));
        let (_, out) = lab.expect_transmit(CLIENT_PORT, &f, &case);
        let sent = pkt(&inner);
        let got = &out[OUTER..];
        assert_eq!(got.len(), sent.len(), "{case}: length");
        assert_eq!(got[7], 63, "{case}: hop limit");
        assert_eq!(&got[..7], &sent[..7], "{case}: fixed header");
        assert_eq!(
            &got[8..],
            &sent[8..],
            "{case}: addresses and the whole chain"
        );
    }
    assert_conserved(lab.counters());
}

#[test]
fn underlay_reports_about_our_ipv6_packets_are_believed() {
    // Our outer packets carrying IPv6: protocol 41 on IPIP tunnel c, GRE 0x86DD on b. The
    // quote must show what we send: IPv6 behind protocol 41, not IPv4.
    let inner6 = "IPv6(src='2001:db8:2::5', dst='2001:db8:3::9')/UDP()/Raw(b'x' * 1300)";
    let f = pkts(&[
        format!("frag_needed(IP(src=L1, dst=RC, proto=41, flags='DF')/{inner6}, 1300)"),
        format!("frag_needed(IP(src=L1, dst=RB, flags='DF')/GRE(proto=0x86dd)/{inner6}, 1300)"),
        // Protocol 41 with an IPv4 packet behind it: no packet of ours.
        "frag_needed(IP(src=L1, dst=RC, proto=41, flags='DF')/\
         IP(src='10.3.0.5', dst='10.2.0.9')/Raw(b'x' * 1300), 1300)"
            .to_owned(),
    ]);
    let mut lab = Lab::new();
    let (b, c) = (id_of(&lab, "b"), id_of(&lab, "c"));
    let report = |tunnel, remote| PathMtuReport {
        tunnel,
        remote,
        from: ROUTER,
        reported: 1300,
        mtu: 1300,
    };
    assert_eq!(
        expect_report(&mut lab, &f[0], "c, protocol 41"),
        report(c, RC)
    );
    assert_eq!(expect_report(&mut lab, &f[1], "b, 0x86DD"), report(b, RB));
    lab.expect_drop(
        CLIENT_PORT,
        &f[2],
        DropReason::PmtuNotOurs,
        "41 quoting IPv4",
    );
}

#[test]
fn ipv4_and_ipv6_in_one_burst_each_find_their_route() {
    // IPv6 destinations are looked up in a bulk of their own and their answers put back in
    // burst order: interleave the families and check every packet went where it must.
    let frames = pkts(&[
        from_b6(&v6("2001:db8:2::5", "2001:db8:3::9", 64, 0)),
        "from_b(IP(src='10.2.0.5', dst='10.3.0.9')/data())".to_owned(),
        from_b6(&v6("2001:db8:2::5", "2001:db8:e0::1", 64, 0)),
        from_b6(&v6("2001:db8:2::5", "2001:db8:1::1", 64, 0)),
        "from_b(IP(src='10.2.0.5', dst='10.99.0.1')/data())".to_owned(),
        from_b6(&v6("2001:db8:2::5", "2001:db8:66::1", 64, 0)),
        "from_b(IP(src='10.2.0.5', dst='10.7.0.1')/data())".to_owned(),
    ]);
    let mut lab = Lab::new();
    let mut bufs: Vec<TestBuf> = frames.iter().map(|f| TestBuf::new(f)).collect();
    let actions = lab.process(CLIENT_PORT, &mut bufs);
    assert_eq!(
        actions,
        [
            Action::Transmit(CLIENT_PORT),
            Action::Transmit(CLIENT_PORT),
            Action::Transmit(CLIENT_PORT),
            Action::Transmit(CLIENT_PORT),
            Action::Transmit(CORE_PORT),
            Action::Drop(DropReason::NoRoute),
            Action::Transmit(CLIENT_PORT),
        ]
    );
    // The outer destination of each: c, c, e, a, edge, -, e.
    let remote =
        |b: &TestBuf| Ipv4Addr::new(b.data()[30], b.data()[31], b.data()[32], b.data()[33]);
    for (i, want) in [(0, RC), (1, RC), (2, RE), (3, RA), (4, RX), (6, RE)] {
        assert_eq!(remote(&bufs[i]), want, "packet {i}");
    }
    // And the inner family each carries: protocol 41 to c for the IPv6 one, 4 for IPv4.
    assert_eq!(bufs[0].data()[ETH + 9], 41);
    assert_eq!(bufs[1].data()[ETH + 9], 4);
    assert_conserved(lab.counters());
}

#[test]
fn traces_of_ipv6_packets_show_their_addresses_and_icmpv6() {
    use dataplane::pipeline::trace::{Classified, Stop};
    use dataplane::pipeline::PacketTrace;
    let frames = pkts(&[
        from_c6(&v6("2001:db8:3::9", "2001:db8:2::5", 9, 0)),
        from_c6(&v6("2001:db8:3::9", "2001:db8:2::5", 1, 0)),
        from_c6(&v6("2001:db8:3::9", "2001:db8:71::1", 9, 0)),
    ]);
    let mut lab = Lab::new();
    let mut bufs: Vec<TestBuf> = frames.iter().map(|f| TestBuf::new(f)).collect();
    let mut actions = vec![Action::Drop(DropReason::Runt); bufs.len()];
    let mut traces = vec![PacketTrace::default(); bufs.len()];
    let snap = Arc::clone(&lab.snap);
    lab.pipe
        .process_traced(&snap, CLIENT_PORT, &mut bufs, &mut actions, &mut traces);
    let addr = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
    assert_eq!(traces[0].classified, Classified::Terminate(41));
    let seen = traces[0].inner.expect("the inner packet seen");
    assert_eq!(
        seen.v6,
        Some((addr("2001:db8:3::9"), addr("2001:db8:2::5")))
    );
    assert_eq!(seen.ttl, 8);
    // Hop limit 1: Time Exceeded, ICMPv6's; a prohibit route: ICMPv6's prohibited.
    assert!(
        matches!(
            traces[1].stopped,
            Some((
                _,
                Stop::Icmp {
                    kind: IcmpKind::Icmpv6TimeExceeded,
                    ..
                }
            ))
        ),
        "{:?}",
        traces[1].stopped
    );
    assert!(
        matches!(
            traces[2].stopped,
            Some((
                _,
                Stop::Icmp {
                    kind: IcmpKind::Icmpv6Prohibited,
                    ..
                }
            ))
        ),
        "{:?}",
        traces[2].stopped
    );
    assert_eq!(
        actions,
        vec![
            Action::Transmit(CLIENT_PORT),
            Action::Reply {
                port: CLIENT_PORT,
                reason: DropReason::TtlExceeded
            },
            Action::Reply {
                port: CLIENT_PORT,
                reason: DropReason::NoRoute
            },
        ]
    );
}
