//! Tunnels with IPv6 endpoints: GRE over IPv6 (RFC 7676, next header 47) and IP in IPv6
//! (RFC 2473: next header 4 for IPv4 inside, 41 for IPv6 inside), terminated and
//! encapsulated by the pipeline without DPDK. Every frame we expect is built by scapy from
//! the RFCs' fields (scapy computes lengths and checksums on its own), compared byte for
//! byte, and the produced frames are dissected by tshark from a pcap file.
//!
//! The lab (its own, beside `common`'s):
//!
//! | port | MAC               | IPv4        | IPv6          | MTU  |
//! |------|-------------------|-------------|---------------|------|
//! | 0    | 02:00:00:00:00:01 | 192.0.2.1   | 2001:db8:a::1 | 1500 |
//!
//! | tunnel | mode | remote          | clients                     | special                       |
//! |--------|------|-----------------|-----------------------------|-------------------------------|
//! | g6     | GRE  | 2001:db8:b::10  | 10.1.0.0/16, 2001:db8:1::/48 | link6 fd00:1::1/127          |
//! | k6     | GRE  | 2001:db8:b::20  | 10.2.0.0/16, 2001:db8:2::/48 | key 600, sequence, checksum, TTL 50, DSCP 10 |
//! | i6     | IPIP | 2001:db8:b::30  | 10.3.0.0/16, 2001:db8:3::/48 | TTL inherit                  |
//! | v4     | GRE  | 198.51.100.4    | 10.4.0.0/16, 2001:db8:4::/48 | IPv4 endpoints, link6 fd00:4::1/127 |
//! | nn6    | GRE  | 2001:db8:b::50  | 10.5.0.0/16                 | next hop unresolved           |
//!
//! All on port 0, local 2001:db8:a::1 (v4: 192.0.2.1). The client routers' MACs are
//! 02:00:00:00:bb:<last byte of the address>, static neighbours.

mod common;

use common::{dissect, hex, pkts};
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, DropReason, Pipeline};
use dataplane::tables::{
    DscpPolicy, PortEntry, PortRoles, Snapshot, SnapshotBuilder, TtlPolicy, Tunnel, TunnelMode,
};
use dataplane::wire::EthernetAddress;
use std::net::{Ipv4Addr, Ipv6Addr};

const PORT: u16 = 0;
const MAC_P0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const L4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const R4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 4);

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn router_mac(last: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0xbb, last])
}

/// The scapy names for the lab, prepended to each expression.
const NAMES: &str = "P0='02:00:00:00:00:01'; PEER='02:00:00:00:ee:ee'; L6='2001:db8:a::1'; \
                     G6='2001:db8:b::10'; K6='2001:db8:b::20'; I6='2001:db8:b::30'; \
                     N6='2001:db8:b::50'; L4='192.0.2.1'; R4='198.51.100.4'";

fn frames<S: AsRef<str>>(exprs: &[S]) -> Vec<Vec<u8>> {
    pkts(
        &exprs
            .iter()
            .map(|e| lab_expr(e.as_ref()))
            .collect::<Vec<_>>(),
    )
}

/// `expr` with the lab's names bound (the oracle evaluates one expression: they are a
/// lambda's defaults).
fn lab_expr(expr: &str) -> String {
    let names: Vec<&str> = NAMES.split("; ").collect();
    format!("(lambda {}: {expr})()", names.join(", "))
}

fn snapshot() -> std::sync::Arc<Snapshot> {
    builder().build().expect("the lab builds")
}

/// The lab's snapshot builder.
fn builder() -> SnapshotBuilder {
    let mut b = SnapshotBuilder::new();
    b.port(
        PORT,
        PortEntry {
            addrs6: vec![v6("2001:db8:a::1")],
            ..PortEntry::client(MAC_P0, vec![L4])
        },
    );
    let t6 = |name: &str, mode, remote: &str, p4: &str, p6: Option<&str>| {
        let mut t = Tunnel::new6(name, mode, v6("2001:db8:a::1"), v6(remote), PORT);
        t.prefixes.push(p4.parse().unwrap());
        if let Some(p6) = p6 {
            t.prefixes6.push(p6.parse().unwrap());
        }
        t
    };
    let mut g6 = t6(
        "g6",
        TunnelMode::Gre,
        "2001:db8:b::10",
        "10.1.0.0/16",
        Some("2001:db8:1::/48"),
    );
    g6.link6 = Some("fd00:1::1/127".parse().unwrap());
    b.tunnel(g6);
    let mut k6 = t6(
        "k6",
        TunnelMode::Gre,
        "2001:db8:b::20",
        "10.2.0.0/16",
        Some("2001:db8:2::/48"),
    );
    k6.key = Some(600);
    k6.sequence = true;
    k6.checksum = true;
    k6.ttl = TtlPolicy::Fixed(50);
    k6.dscp = DscpPolicy::Fixed(10);
    b.tunnel(k6);
    let mut i6 = t6(
        "i6",
        TunnelMode::Ipip,
        "2001:db8:b::30",
        "10.3.0.0/16",
        Some("2001:db8:3::/48"),
    );
    i6.ttl = TtlPolicy::Inherit;
    b.tunnel(i6);
    let mut v4 = Tunnel::new("v4", TunnelMode::Gre, L4, R4, PORT);
    v4.prefixes.push("10.4.0.0/16".parse().unwrap());
    v4.prefixes6.push("2001:db8:4::/48".parse().unwrap());
    v4.link6 = Some("fd00:4::1/127".parse().unwrap());
    b.tunnel(v4);
    b.tunnel(t6(
        "nn6",
        TunnelMode::Gre,
        "2001:db8:b::50",
        "10.5.0.0/16",
        None,
    ));
    for (a, last) in [
        ("2001:db8:b::10", 0x10),
        ("2001:db8:b::20", 0x20),
        ("2001:db8:b::30", 0x30),
    ] {
        b.neighbor6(PORT, v6(a), router_mac(last));
    }
    b.neighbor(PORT, R4, router_mac(4));
    b
}

/// One frame through a fresh pipeline (outer IPv4 identifications from 0x1234): its action
/// and bytes after.
fn send(snap: &Snapshot, f: &[u8]) -> (Action, Vec<u8>, Pipeline) {
    let mut p = Pipeline::new(0x1234);
    let mut bufs = [TestBuf::new(f)];
    let mut actions = [Action::Drop(DropReason::NoRoute)];
    p.process(snap, PORT, &mut bufs, &mut actions);
    let out = bufs[0].data().to_vec();
    (actions[0], out, p)
}

#[track_caller]
fn forwarded(snap: &Snapshot, input: &[u8], want: &[u8], case: &str) -> Vec<u8> {
    let (a, out, p) = send(snap, input);
    assert_eq!(a, Action::Transmit(PORT), "{case}: {a:?}");
    assert_eq!(hex(&out), hex(want), "{case}: byte for byte");
    assert_eq!(p.counters().drops.iter().sum::<u64>(), 0, "{case}");
    out
}

#[track_caller]
fn dropped(snap: &Snapshot, input: &[u8], reason: DropReason, case: &str) {
    let (a, _, p) = send(snap, input);
    assert_eq!(a, Action::Drop(reason), "{case}");
    assert_eq!(p.counters().drops[reason as usize], 1, "{case}: counted");
    assert_eq!(
        p.counters().drops.iter().sum::<u64>(),
        1,
        "{case}: counted once, under {}",
        reason.name()
    );
}

/// An inner UDP payload of `n` bytes.
const DATA: &str = "UDP(sport=40000, dport=40001)/Raw(bytes((i * 7 + 1) % 256 for i in range(16)))";

/// GRE over IPv6 carrying IPv4 (RFC 7676 section 3, RFC 2784): terminated from g6 and
/// sent on in the IPv4 tunnel v4; and back, an IPv4 packet from v4 into g6.
#[test]
fn gre_over_ipv6_carries_ipv4_both_ways() {
    let snap = snapshot();
    let f = frames(&[
        // From g6's router: outer hop limit 1 (we are the endpoint: not checked), outer
        // traffic class ECT(0), inner ECT(0) with DSCP 46.
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6, hlim=1, tc=0x02)/GRE()/\
             IP(src='10.1.0.5', dst='10.4.0.7', ttl=64, tos=0xba, flags='DF')/{DATA}"
        ),
        // Out of v4 (RFC 2784, SPEC.md encapsulation): TTL 64, DSCP copied, ECN copied
        // (RFC 6040 normal mode), DF set, identification 0x1234; inner TTL 63.
        format!(
            "Ether(dst='02:00:00:00:bb:04', src=P0)/IP(src=L4, dst=R4, ttl=64, tos=0xba, \
             flags='DF', id=0x1234)/GRE()/\
             IP(src='10.1.0.5', dst='10.4.0.7', ttl=63, tos=0xba, flags='DF')/{DATA}"
        ),
        // From v4's router into g6.
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE()/\
             IP(src='10.4.0.7', dst='10.1.0.5', ttl=20, tos=0x01)/{DATA}"
        ),
        // RFC 7676 / RFC 8200: version 6, traffic class = DSCP 0 copied + ECT(1) copied,
        // flow label 0, next header 47, hop limit 64 (the tunnel's TTL), from L6 to G6.
        format!(
            "Ether(dst='02:00:00:00:bb:10', src=P0)/IPv6(src=L6, dst=G6, hlim=64, tc=0x01, \
             fl=0, nh=47)/GRE(proto=0x0800)/\
             IP(src='10.4.0.7', dst='10.1.0.5', ttl=19, tos=0x01)/{DATA}"
        ),
    ]);
    forwarded(&snap, &f[0], &f[1], "g6 -> v4");
    forwarded(&snap, &f[2], &f[3], "v4 -> g6");
}

/// GRE over IPv6 carrying IPv6 (protocol type 0x86DD), with key, sequence number and
/// checksum (RFC 2890, RFC 2784 section 2.5), a fixed DSCP and a fixed hop limit.
#[test]
fn gre_over_ipv6_carries_ipv6_with_key_sequence_and_checksum() {
    let snap = snapshot();
    let f = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::5', dst='2001:db8:2::9', hlim=30, tc=0xb9)/{DATA}"
        ),
        // DSCP 10 (fixed), ECT(1) copied; hop limit 50; GRE C, K 600, S 0 (the tunnel's
        // first number); scapy computes the GRE checksum.
        format!(
            "Ether(dst='02:00:00:00:bb:20', src=P0)/IPv6(src=L6, dst=K6, hlim=50, \
             tc=(10 << 2) | 1, fl=0, nh=47)/\
             GRE(chksum_present=1, key_present=1, seqnum_present=1, key=600, sequence_number=0, \
             proto=0x86dd)/IPv6(src='2001:db8:4::5', dst='2001:db8:2::9', hlim=29, tc=0xb9)/\
             {DATA}"
        ),
        // And back from k6: key, sequence 7, checksum; into v4.
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=K6, dst=L6, hlim=9)/\
             GRE(chksum_present=1, key_present=1, seqnum_present=1, key=600, sequence_number=7, \
             proto=0x86dd)/IPv6(src='2001:db8:2::9', dst='2001:db8:4::5', hlim=64)/{DATA}"
        ),
        format!(
            "Ether(dst='02:00:00:00:bb:04', src=P0)/IP(src=L4, dst=R4, ttl=64, tos=0, \
             flags='DF', id=0x1234)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:2::9', dst='2001:db8:4::5', hlim=63)/{DATA}"
        ),
    ]);
    forwarded(&snap, &f[0], &f[1], "v4 -> k6");
    forwarded(&snap, &f[2], &f[3], "k6 -> v4");
    // The same sequence number again is a replay (RFC 2890 section 2.2).
    let (a, _, _) = send(&snap, &f[2]);
    assert_eq!(
        a,
        Action::Drop(DropReason::GreSequence),
        "replayed sequence 7"
    );
    // Without the key, or with another, the packet is no tunnel's.
    let g = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=K6, dst=L6)/GRE(seqnum_present=1, sequence_number=8, \
             chksum_present=1, proto=0x86dd)/IPv6(src='2001:db8:2::9', dst='2001:db8:4::5')/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=K6, dst=L6)/GRE(key_present=1, key=601, \
             seqnum_present=1, sequence_number=8, chksum_present=1, proto=0x86dd)/\
             IPv6(src='2001:db8:2::9', dst='2001:db8:4::5')/{DATA}"
        ),
        // A wrong GRE checksum is named for what it is.
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=K6, dst=L6)/GRE(key_present=1, key=600, \
             seqnum_present=1, sequence_number=8, chksum_present=1, chksum=0x1234, proto=0x86dd)/\
             IPv6(src='2001:db8:2::9', dst='2001:db8:4::5')/{DATA}"
        ),
    ]);
    dropped(&snap, &g[0], DropReason::NoTunnel, "no key");
    dropped(&snap, &g[1], DropReason::NoTunnel, "key 601");
    dropped(&snap, &g[2], DropReason::BadGreChecksum, "bad GRE checksum");
}

/// IP in IPv6 (RFC 2473): next header 4 carries IPv4, 41 carries IPv6; the tunnel's TTL
/// policy `inherit` takes the inner hop limit (after its decrement).
#[test]
fn ip_in_ipv6_carries_ipv4_and_ipv6() {
    let snap = snapshot();
    let f = frames(&[
        // IPv4 in IPv6 from i6's router, into v4.
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=I6, dst=L6, nh=4)/\
             IP(src='10.3.0.5', dst='10.4.0.7', ttl=40)/{DATA}"
        ),
        format!(
            "Ether(dst='02:00:00:00:bb:04', src=P0)/IP(src=L4, dst=R4, ttl=64, tos=0, \
             flags='DF', id=0x1234)/GRE()/IP(src='10.3.0.5', dst='10.4.0.7', ttl=39)/{DATA}"
        ),
        // IPv6 in IPv6 from i6's router, into v4.
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=I6, dst=L6, nh=41)/\
             IPv6(src='2001:db8:3::5', dst='2001:db8:4::7', hlim=40)/{DATA}"
        ),
        format!(
            "Ether(dst='02:00:00:00:bb:04', src=P0)/IP(src=L4, dst=R4, ttl=64, tos=0, \
             flags='DF', id=0x1234)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:3::5', dst='2001:db8:4::7', hlim=39)/{DATA}"
        ),
        // From v4 into i6: IPv4 (next header 4), hop limit = inner TTL 29.
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE()/\
             IP(src='10.4.0.7', dst='10.3.0.5', ttl=30, tos=0x03)/{DATA}"
        ),
        format!(
            "Ether(dst='02:00:00:00:bb:30', src=P0)/IPv6(src=L6, dst=I6, hlim=29, tc=0x03, \
             fl=0, nh=4)/IP(src='10.4.0.7', dst='10.3.0.5', ttl=29, tos=0x03)/{DATA}"
        ),
        // From v4 into i6: IPv6 (next header 41), hop limit = inner 9.
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::7', dst='2001:db8:3::5', hlim=10)/{DATA}"
        ),
        format!(
            "Ether(dst='02:00:00:00:bb:30', src=P0)/IPv6(src=L6, dst=I6, hlim=9, tc=0, \
             fl=0, nh=41)/IPv6(src='2001:db8:4::7', dst='2001:db8:3::5', hlim=9)/{DATA}"
        ),
    ]);
    forwarded(&snap, &f[0], &f[1], "IPv4 in IPv6 -> v4");
    forwarded(&snap, &f[2], &f[3], "IPv6 in IPv6 -> v4");
    let a = forwarded(&snap, &f[4], &f[5], "v4 -> IPv4 in IPv6");
    let b = forwarded(&snap, &f[6], &f[7], "v4 -> IPv6 in IPv6");
    // What scapy reads back: the fields RFC 2473 and RFC 8200 name.
    assert_eq!(
        dissect(
            &a,
            &["p[IPv6].nh", "p[IPv6].plen", "p[IPv6].hlim", "p[IPv6].tc"]
        ),
        ["4", &(20 + 8 + 16).to_string(), "29", "3"]
    );
    assert_eq!(
        dissect(&b, &["p[IPv6].nh", "p[IPv6].plen"]),
        ["41", &(40 + 8 + 16).to_string()]
    );
}

/// RFC 6040 section 4.2 on decapsulation, from the outer traffic class: CE over ECT(0)
/// marks the inner CE; CE over Not-ECT is dropped; ECT over Not-ECT passes unchanged.
#[test]
fn ecn_on_decapsulation_follows_rfc_6040_from_the_traffic_class() {
    let snap = snapshot();
    let f = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6, tc=0x03)/GRE()/\
             IP(src='10.1.0.5', dst='10.4.0.7', ttl=64, tos=0x02)/{DATA}"
        ),
        format!(
            "Ether(dst='02:00:00:00:bb:04', src=P0)/IP(src=L4, dst=R4, ttl=64, tos=0x03, \
             flags='DF', id=0x1234)/GRE()/IP(src='10.1.0.5', dst='10.4.0.7', ttl=63, tos=0x03)/\
             {DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6, tc=0x03)/GRE()/\
             IP(src='10.1.0.5', dst='10.4.0.7', ttl=64, tos=0x00)/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6, tc=0xff)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:1::5', dst='2001:db8:4::7', tc=0xb9)/{DATA}"
        ),
    ]);
    forwarded(&snap, &f[0], &f[1], "CE over ECT(0)");
    dropped(&snap, &f[2], DropReason::EcnCeNotEct, "CE over Not-ECT");
    // Outer CE (tc 0xff: DSCP 63, CE) over inner ECT(1): inner CE; the inner DSCP is kept
    // (pipe model).
    let (a, out, _) = send(&snap, &f[3]);
    assert_eq!(a, Action::Transmit(PORT));
    assert_eq!(dissect(&out, &["p[IPv6].tc"]), ["187"], "0xb8 | CE");
}

/// What is refused, each under its own counter: a spoofed outer source, no such tunnel,
/// an outer fragment, an extension header before the payload, truncated and malformed
/// headers, an inner source outside the tunnel's prefixes.
#[test]
fn refused_packets_are_counted_by_reason() {
    let snap = snapshot();
    let cases: &[(&str, DropReason, &str)] = &[
        (
            "IPv6(src='2001:db8:b::99', dst=L6)/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::NoTunnel,
            "an outer source that is no tunnel's remote",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE(key_present=1, key=5)/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::NoTunnel,
            "g6 has no key",
        ),
        (
            "IPv6(src=G6, dst=L6, nh=4)/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::NoTunnel,
            "IP in IPv6 to a GRE-only pair",
        ),
        (
            "IPv6(src=I6, dst=L6)/GRE()/IP(src='10.3.0.5', dst='10.4.0.7')",
            DropReason::NoTunnel,
            "GRE to an IP-in-IPv6-only pair",
        ),
        (
            "IPv6(src=G6, dst=L6)/IPv6ExtHdrFragment(m=1, id=7)/GRE()/\
             IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::OuterFragment,
            "a first fragment",
        ),
        (
            "IPv6(src=G6, dst=L6)/IPv6ExtHdrFragment(offset=10, id=7)/Raw(b'x' * 24)",
            DropReason::OuterFragment,
            "a later fragment",
        ),
        (
            "IPv6(src=I6, dst=L6)/IPv6ExtHdrDestOpt(options=[\
             __import__('scapy.all').all.HBHOptUnknown(otype=4, optdata=b'\\x04')])/\
             IP(src='10.3.0.5', dst='10.4.0.7')",
            DropReason::OuterExtensionHeader,
            "RFC 2473's Tunnel Encapsulation Limit option",
        ),
        (
            "IPv6(src=G6, dst=L6)/IPv6ExtHdrHopByHop()/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::OuterExtensionHeader,
            "hop-by-hop options",
        ),
        (
            "IPv6(src=G6, dst=L6)/IPv6ExtHdrRouting()/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::OuterExtensionHeader,
            "a routing header",
        ),
        (
            "IPv6(src=G6, dst=L6, nh=47)/Raw(b'\\x00\\x00')",
            DropReason::BadGre,
            "a GRE header cut short",
        ),
        (
            "IPv6(src=K6, dst=L6, nh=47)/Raw(b'\\x30\\x00\\x86\\xdd\\x00\\x00\\x02')",
            DropReason::BadGre,
            "a keyed GRE header cut inside its key",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE(proto=0x0800)/Raw(bytes(IP(src='10.1.0.5', dst='10.4.0.7'))[:12])",
            DropReason::BadInnerIpv4,
            "an inner IPv4 header cut short",
        ),
        (
            "IPv6(src=I6, dst=L6, nh=41)/Raw(bytes(IPv6(src='2001:db8:3::5', dst='2001:db8:4::7'))[:30])",
            DropReason::BadInnerIpv6,
            "an inner IPv6 header cut short",
        ),
        (
            "IPv6(src=G6, dst=L6, plen=400)/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::BadIpv6,
            "a payload length past the frame",
        ),
        (
            "IPv6(version=4, src=G6, dst=L6)/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::BadIpv6,
            "version 4 in an IPv6 frame",
        ),
        (
            "IPv6(src='::1', dst=L6)/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')",
            DropReason::Martian,
            "an outer source no node sends from",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE()/IP(src='10.3.0.5', dst='10.4.0.7')",
            DropReason::InnerSpoofed,
            "g6 sending as i6's client",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE(proto=0x86dd)/IPv6(src='2001:db8:3::5', dst='2001:db8:4::7')",
            DropReason::InnerSpoofed,
            "g6 sending IPv6 as i6's client",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE()/IP(src='0.0.0.0', dst='0.0.0.0')",
            DropReason::InnerSpoofed,
            "no IPv4 keepalive between IPv6 endpoints",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE(proto=0x6558)/Raw(b'x' * 40)",
            DropReason::UnsupportedInner,
            "Ethernet inside GRE",
        ),
        (
            "IPv6(src=G6, dst=L6)/GRE()/IP(src='10.1.0.5', dst='10.5.0.7')",
            DropReason::NoNeighbor,
            "into nn6, whose next hop is unresolved",
        ),
    ];
    let f = frames(
        &cases
            .iter()
            // A payload of its own (a truncation) or the usual data.
            .map(|(e, _, _)| match e.contains("Raw(") {
                true => format!("Ether(dst=P0, src=PEER)/{e}"),
                false => format!("Ether(dst=P0, src=PEER)/{e}/{DATA}"),
            })
            .collect::<Vec<_>>(),
    );
    for ((_, reason, case), f) in cases.iter().zip(&f) {
        dropped(&snap, f, *reason, case);
    }
}

/// The inner MTU of an IPv6-outer tunnel is the port's MTU less 40 and the GRE header:
/// too big with DF (or IPv6) is answered with ICMP Fragmentation Needed / Packet Too Big
/// carrying it (RFC 1191, RFC 8201), back into the ingress tunnel; never fragmented.
#[test]
fn too_big_for_an_ipv6_outer_reports_its_inner_mtu() {
    let snap = snapshot();
    // k6: 1500 - 40 - 16 (GRE with checksum, key, sequence) = 1444; g6: 1500 - 44 = 1456.
    let f = frames(&[
        "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE()/\
             IP(src='10.4.0.7', dst='10.1.0.5', flags='DF')/UDP()/Raw(b'x' * (1457 - 28))"
            .to_owned(),
        "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE()/\
             IP(src='10.4.0.7', dst='10.1.0.5', flags='DF')/UDP()/Raw(b'x' * (1456 - 28))"
            .to_owned(),
        "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::7', dst='2001:db8:2::5')/UDP()/Raw(b'x' * (1445 - 48))"
            .to_owned(),
    ]);
    let (a, out, _) = send(&snap, &f[0]);
    assert_eq!(
        a,
        Action::Reply {
            port: PORT,
            reason: DropReason::MtuExceeded
        }
    );
    assert_eq!(
        dissect(
            &out,
            &[
                "p[IP].dst",
                "p[GRE][IP].dst",
                "p[ICMP].type",
                "p[ICMP].code",
                "p[ICMP].nexthopmtu"
            ]
        ),
        ["198.51.100.4", "10.4.0.7", "3", "4", "1456"]
    );
    let (a, out, _) = send(&snap, &f[1]);
    assert_eq!(a, Action::Transmit(PORT), "exactly the inner MTU fits");
    assert_eq!(out.len(), 14 + 1500);
    let (a, out, _) = send(&snap, &f[2]);
    assert!(matches!(a, Action::Reply { .. }), "{a:?}");
    assert_eq!(
        dissect(&out, &["p[GRE][IPv6].dst", "p[ICMPv6PacketTooBig].mtu"]),
        ["2001:db8:4::7", "1444"]
    );
}

/// A minimal pcap file (libpcap format, Ethernet) of `frames`.
fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [i as u32, 0, f.len() as u32, f.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

/// tshark, another dissector than scapy, reads what we send into IPv6-outer tunnels.
#[test]
fn tshark_dissects_what_we_send() {
    let snap = snapshot();
    let f = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE()/\
             IP(src='10.4.0.7', dst='10.1.0.5', tos=0xb8)/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::7', dst='2001:db8:2::5', tc=0x02)/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE()/\
             IP(src='10.4.0.7', dst='10.3.0.5', ttl=77)/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::7', dst='2001:db8:3::5')/{DATA}"
        ),
    ]);
    let mut out = Vec::new();
    for (i, f) in f.iter().enumerate() {
        let (a, o, _) = send(&snap, f);
        assert_eq!(a, Action::Transmit(PORT), "frame {i}");
        out.push(o);
    }
    let dir = std::env::temp_dir().join(format!("ipv6-outer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sent.pcap");
    write_pcap(&file, &out);
    let fields = [
        "ipv6.src",
        "ipv6.dst",
        "ipv6.nxt",
        "ipv6.hlim",
        "ipv6.tclass",
        "ipv6.plen",
        "gre.proto",
        "gre.key",
        "gre.sequence_number",
        "gre.checksum.status",
        "ip.dst",
    ];
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r")
        .arg(&file)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let r = cmd
        .output()
        .expect("run tshark (scripts/setup.sh installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&r.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "{text}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // tshark writes the traffic class as a 32-bit hex field.
    // Inner IPv4 10.4.0.7 -> 10.1.0.5 into g6: GRE 0x0800, no key, hop limit 64, traffic
    // class 0xb8 (DSCP 46 copied, Not-ECT); payload = GRE 4 + IPv4 20 + UDP 8 + 16.
    let plen = 4 + 20 + 8 + 16;
    assert_eq!(
        lines[0],
        format!("2001:db8:a::1|2001:db8:b::10|47|64|0x000000b8|{plen}|0x0800||||10.1.0.5")
    );
    // Inner IPv6 into k6: key 600 (tshark writes it in 32-bit hex), sequence 0, checksum good (tshark: 1), DSCP 10 fixed
    // with ECT(0) copied = 0x2a, hop limit 50; IPv6 ipv6.* fields list outer then inner.
    let plen = 16 + 40 + 8 + 16;
    let want = format!(
        "2001:db8:a::1,2001:db8:4::7|2001:db8:b::20,2001:db8:2::5|47,17|50,63|0x0000002a,0x00000002|\
         {plen},{}|0x86dd|{:#010x}|0|1|",
        8 + 16,
        600
    );
    assert_eq!(lines[1], want);
    // IPv4 in IPv6 into i6: next header 4, hop limit inherited (76).
    assert_eq!(
        lines[2],
        format!(
            "2001:db8:a::1|2001:db8:b::30|4|76|0x00000000|{}|||||10.3.0.5",
            20 + 8 + 16
        )
    );
    // IPv6 in IPv6 into i6: next header 41, hop limit inherited (63).
    assert_eq!(
        lines[3],
        format!(
            "2001:db8:a::1,2001:db8:4::7|2001:db8:b::30,2001:db8:3::5|41,17|63,63|0x00000000,0x00000000|{},{}|||||",
            40 + 8 + 16,
            8 + 16
        )
    );
}

/// The snapshot lists the IPv6 next hops the tunnels want resolved, and the IPv4 list
/// (ARP's) holds none of them.
#[test]
fn the_snapshot_lists_the_ipv6_next_hops_tunnels_want() {
    let snap = snapshot();
    let hops = snap.tunnels().next_hops6();
    let local = v6("2001:db8:a::1");
    assert_eq!(
        hops,
        [
            (PORT, v6("2001:db8:b::10"), local),
            (PORT, v6("2001:db8:b::20"), local),
            (PORT, v6("2001:db8:b::30"), local),
            (PORT, v6("2001:db8:b::50"), local),
        ]
    );
    assert!(
        snap.wanted().iter().all(|&(_, ip, _)| ip == R4),
        "{:?}",
        snap.wanted()
    );
    // What Neighbor Discovery resolves: the same, solicited from the tunnels' local (the
    // lab has no native IPv6 route). The workers accept advertisements from them.
    assert_eq!(snap.wanted6(), &hops[..]);
    assert!(snap.wants_neighbor6(PORT, v6("2001:db8:b::50")));
    // Two IPv6 tunnels with the same (local, remote, mode, key) cannot be told apart.
    let mut b = SnapshotBuilder::new();
    b.port(
        PORT,
        PortEntry {
            mac: MAC_P0,
            addrs: vec![L4],
            addrs6: vec![local],
            mtu: 1500,
            roles: PortRoles::default(),
            transit: false,
            host_interface: false,
        },
    );
    for name in ["x", "y"] {
        b.tunnel(Tunnel::new6(
            name,
            TunnelMode::Gre,
            local,
            v6("2001:db8:b::10"),
            PORT,
        ));
    }
    assert!(b.build().is_err(), "a duplicate IPv6 receive key");
    // An IPv6 local that is not the port's is refused.
    let mut b = SnapshotBuilder::new();
    b.port(
        PORT,
        PortEntry {
            mac: MAC_P0,
            addrs: vec![L4],
            addrs6: vec![local],
            mtu: 1500,
            roles: PortRoles::default(),
            transit: false,
            host_interface: false,
        },
    );
    b.tunnel(Tunnel::new6(
        "x",
        TunnelMode::Gre,
        v6("2001:db8:a::2"),
        v6("2001:db8:b::10"),
        PORT,
    ));
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("2001:db8:a::2"), "{e}");
}

/// Tunnel recursion over IPv6: a tunnel packet inside a tunnel, to our IPv6 endpoint, is
/// never decapsulated again (SPEC.md termination step 4), whatever the inner protocol.
#[test]
fn a_tunnel_packet_to_our_ipv6_endpoint_inside_a_tunnel_is_nested() {
    let snap = snapshot();
    let f = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:1::5', dst=L6)/GRE()/IP(src='10.1.0.5', dst='10.4.0.7')/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=I6, dst=L6, nh=41)/\
             IPv6(src='2001:db8:3::5', dst=L6, nh=4)/IP(src='10.3.0.5', dst='10.4.0.7')/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=I6, dst=L6, nh=41)/\
             IPv6(src='2001:db8:3::5', dst=L6)/IPv6(src='2001:db8:3::5', dst='2001:db8:4::7')/\
             {DATA}"
        ),
    ]);
    dropped(
        &snap,
        &f[0],
        DropReason::NestedTunnel,
        "GRE in GRE over IPv6",
    );
    dropped(
        &snap,
        &f[1],
        DropReason::NestedTunnel,
        "IPv4 in IPv6 in IPv6",
    );
    dropped(
        &snap,
        &f[2],
        DropReason::NestedTunnel,
        "IPv6 in IPv6 in IPv6",
    );
}

/// Hostile outer IPv6 headers (TESTPLAN D1 truncation and the extension-header rule): a
/// valid keyed GRE-over-IPv6 frame cut at every length, as it arrives and with its payload
/// length fixed up so that the cut reaches the next header's check; and chains of up to
/// eight extension headers before the payload. None is forwarded, none panics, each is
/// counted once under the reason its defect names.
#[test]
fn truncations_and_extension_header_chains_are_refused_by_name() {
    let snap = snapshot();
    let whole = frames(&[format!(
        "Ether(dst=P0, src=PEER)/IPv6(src=K6, dst=L6)/GRE(chksum_present=1, key_present=1, \
         seqnum_present=1, key=600, sequence_number=1, proto=0x0800)/\
         IP(src='10.2.0.5', dst='10.4.0.7')/{DATA}"
    )])
    .remove(0);
    // Ethernet 14, IPv6 40, GRE 16 (checksum, key, sequence), inner IPv4 20, UDP 8 + 16.
    assert_eq!(whole.len(), 14 + 40 + 16 + 20 + 8 + 16);
    for cut in 0..whole.len() {
        let raw = &whole[..cut];
        // As it arrives: too short for Ethernet, too short to show an IPv6 header to us
        // (nothing tells it is ours: not for us here, a port without transit), or a
        // payload length past the frame.
        let want = match cut {
            0..14 => DropReason::Runt,
            14..54 => DropReason::NotForUs,
            _ => DropReason::BadIpv6,
        };
        dropped(&snap, raw, want, &format!("cut at {cut}"));
        if cut < 54 {
            continue;
        }
        // The payload length fixed up: the cut meets the GRE header's check (which holds
        // the GRE checksum too: a cut payload fails it), or the inner header's.
        let mut fixed = raw.to_vec();
        fixed[18..20].copy_from_slice(&((cut - 54) as u16).to_be_bytes());
        let want = if cut < 54 + 16 {
            DropReason::BadGre
        } else {
            DropReason::BadGreChecksum
        };
        dropped(&snap, &fixed, want, &format!("cut at {cut}, length fixed"));
    }
    // Without the GRE checksum the cut reaches the inner IPv4 header's checks.
    let plain = frames(&[format!(
        "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE()/\
         IP(src='10.1.0.5', dst='10.4.0.7')/{DATA}"
    )])
    .remove(0);
    for cut in 54 + 4..plain.len() {
        let mut fixed = plain[..cut].to_vec();
        fixed[18..20].copy_from_slice(&((cut - 54) as u16).to_be_bytes());
        dropped(
            &snap,
            &fixed,
            DropReason::BadInnerIpv4,
            &format!("plain GRE cut at {cut}, length fixed"),
        );
    }
    // Chains of extension headers (RFC 8200 section 4: hop-by-hop 0, routing 43, fragment
    // 44, destination options 60) before a valid payload: the first one decides.
    let kinds = [
        ("IPv6ExtHdrHopByHop()", DropReason::OuterExtensionHeader),
        ("IPv6ExtHdrRouting()", DropReason::OuterExtensionHeader),
        ("IPv6ExtHdrFragment(id=9)", DropReason::OuterFragment),
        ("IPv6ExtHdrDestOpt()", DropReason::OuterExtensionHeader),
    ];
    let mut exprs = Vec::new();
    let mut wants = Vec::new();
    for n in 1..=8usize {
        for first in 0..kinds.len() {
            let chain: Vec<&str> = (0..n).map(|i| kinds[(first + i * 3) % 4].0).collect();
            exprs.push(format!(
                "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/{}/GRE()/\
                 IP(src='10.1.0.5', dst='10.4.0.7')/{DATA}",
                chain.join("/")
            ));
            wants.push((kinds[first].1, chain.join("/")));
        }
    }
    for (f, (want, chain)) in frames(&exprs).iter().zip(&wants) {
        dropped(&snap, f, *want, chain);
    }
}

/// ICMP errors about packets that came through an IPv6-outer tunnel go back into it, over
/// IPv6: Time Exceeded for an IPv4 packet (from the port's IPv4 address: the tunnel has no
/// IPv4 endpoint nor `link`) and ICMPv6 Time Exceeded for an IPv6 one (from its `link6`).
#[test]
fn icmp_errors_go_back_into_the_ipv6_outer_tunnel() {
    let snap = snapshot();
    let f = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE()/\
             IP(src='10.1.0.5', dst='10.4.0.7', ttl=1)/{DATA}"
        ),
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:1::5', dst='2001:db8:4::7', hlim=1)/{DATA}"
        ),
    ]);
    let (a, out, _) = send(&snap, &f[0]);
    assert_eq!(
        a,
        Action::Reply {
            port: PORT,
            reason: DropReason::TtlExceeded
        }
    );
    assert_eq!(
        dissect(
            &out,
            &[
                "p.dst",
                "p[IPv6].src",
                "p[IPv6].dst",
                "p[IPv6].nh",
                "p[IPv6].plen == len(p[IPv6].payload)",
                "p[GRE].proto",
                "p[GRE][IP].src",
                "p[GRE][IP].dst",
                "p[ICMP].type",
                "p[ICMP].code",
                "ip_ok(p[GRE][IP], f)",
            ]
        ),
        [
            "02:00:00:00:bb:10",
            "2001:db8:a::1",
            "2001:db8:b::10",
            "47",
            "True",
            "2048",
            "192.0.2.1",
            "10.1.0.5",
            "11",
            "0",
            "True"
        ]
    );
    let (a, out, _) = send(&snap, &f[1]);
    assert!(matches!(a, Action::Reply { .. }), "{a:?}");
    assert_eq!(
        dissect(
            &out,
            &[
                "p[IPv6].dst",
                "p[GRE].proto",
                "p[GRE][IPv6].src",
                "p[GRE][IPv6].dst",
                "p[ICMPv6TimeExceeded].code",
            ]
        ),
        ["2001:db8:b::10", "34525", "fd00:1::1", "2001:db8:1::5", "0"]
    );
}

/// The underlay next hop of an IPv6-outer tunnel without a static neighbour (nn6's) is
/// resolved by Neighbor Discovery: solicited from the tunnel's local (RFC 4861 7.2.2, byte
/// for byte against scapy), learned from the advertisement that answers, and the tunnel's
/// packets then leave for the learned MAC.
#[test]
fn an_ipv6_underlay_next_hop_is_resolved_by_neighbor_discovery() {
    use dataplane::control::nd::{self, NdOutcome};
    use dataplane::control::ndcache::{Decision, NdCache, NdHeard};
    use std::time::{Duration, Instant};

    let mut b = builder();
    let snap = b.build().unwrap();
    let n6 = v6("2001:db8:b::50");
    let mac = EthernetAddress([2, 0, 0, 0, 0xbb, 0x50]);
    let f = frames(&[
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE()/\
             IP(src='10.1.0.5', dst='10.5.0.7', ttl=9)/{DATA}"
        ),
        // RFC 4861 4.3, 7.2.2: to the solicited-node group ff02::1:ff00:50 (RFC 4291 2.7.1)
        // at 33:33:ff:00:00:50 (RFC 2464 7), hop limit 255, from the tunnel's local, our
        // MAC as the source link-layer address.
        "Ether(dst='33:33:ff:00:00:50', src=P0)/IPv6(src=L6, dst='ff02::1:ff00:50', \
         hlim=255)/ICMPv6ND_NS(tgt=N6)/ICMPv6NDOptSrcLLAddr(lladdr=P0)"
            .to_owned(),
        // The answer: solicited, override, its MAC.
        "Ether(dst=P0, src='02:00:00:00:bb:50')/IPv6(src=N6, dst=L6, hlim=255)/\
         ICMPv6ND_NA(R=1, S=1, O=1, tgt=N6)/ICMPv6NDOptDstLLAddr(lladdr='02:00:00:00:bb:50')"
            .to_owned(),
        format!(
            "Ether(dst='02:00:00:00:bb:50', src=P0)/IPv6(src=L6, dst=N6, hlim=64, tc=0, fl=0, \
             nh=47)/GRE()/IP(src='10.1.0.5', dst='10.5.0.7', ttl=8)/{DATA}"
        ),
    ]);
    dropped(&snap, &f[0], DropReason::NoNeighbor, "unresolved");

    let t0 = Instant::now();
    let mut cache = NdCache::new(t0);
    let mut asked = Vec::new();
    cache.due(
        t0,
        snap.wanted6(),
        |p, ip| snap.neighbor6(p, ip).is_some(),
        &mut asked,
    );
    assert_eq!(asked, [(PORT, n6, v6("2001:db8:a::1"), None)], "only nn6's");
    let port = snap.port(PORT).unwrap();
    let mut ns = TestBuf::with_headroom(&[], 128);
    assert!(nd::solicit(&mut ns, port, asked[0].2, n6, None));
    assert_eq!(hex(ns.data()), hex(&f[1]), "the solicitation");

    // The advertisement reaches the ND handler, which hears it for a wanted next hop.
    let (a, _, _) = send(&snap, &f[2]);
    assert_eq!(
        a,
        Action::Punt(dataplane::pipeline::PuntReason::Nd),
        "an advertisement to us"
    );
    let mut na = TestBuf::new(&f[2]);
    let NdOutcome::Heard { target, advert } = nd::handle(&mut na, port) else {
        panic!("not heard");
    };
    assert_eq!(target, n6);
    assert!(snap.wants_neighbor6(PORT, target));
    assert_eq!(
        cache.heard(
            PORT,
            target,
            NdHeard::Advert(advert),
            false,
            t0 + Duration::from_millis(20)
        ),
        Decision::Learn(mac)
    );
    // Installed as the control thread does: the tunnel now sends to it.
    b.neighbor6(PORT, n6, mac);
    let snap = b.build().unwrap();
    forwarded(&snap, &f[0], &f[3], "into nn6, resolved");
}

/// Loops between IPv6 endpoints (RFC 2473 section 4.1, SPEC.md's loop rules): an inner
/// packet to the ingress tunnel's own remote endpoint, or routed into a tunnel whose
/// remote endpoint is its destination, is `tunnel_loop`, whatever the routes say.
#[test]
fn packets_to_an_ipv6_tunnel_endpoint_through_a_tunnel_are_loops() {
    use dataplane::tables::RouteTarget;
    let mut b = builder();
    // Routes that would carry the endpoints through tunnels (the file's validation refuses
    // a tunnel's IPv4 remote routed into a tunnel; the dataplane holds the line anyway).
    b.route6(
        "2001:db8:b::/64".parse().unwrap(),
        RouteTarget::Tunnel("v4".to_owned()),
    );
    b.route6(
        "2001:db8:b::30/128".parse().unwrap(),
        RouteTarget::Tunnel("i6".to_owned()),
    );
    let snap = b.build().unwrap();
    let f = frames(&[
        // From g6, to g6's own remote (into v4 by the /64).
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:1::5', dst=G6)/{DATA}"
        ),
        // From v4, to i6's remote, routed into i6.
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::5', dst=I6)/{DATA}"
        ),
        // From v4 to another address of the /64: back into v4, a hairpin.
        format!(
            "Ether(dst=P0, src=PEER)/IP(src=R4, dst=L4)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:4::5', dst='2001:db8:b::99')/{DATA}"
        ),
        // Control: from g6 to another address of the /64: into v4, forwarded.
        format!(
            "Ether(dst=P0, src=PEER)/IPv6(src=G6, dst=L6)/GRE(proto=0x86dd)/\
             IPv6(src='2001:db8:1::5', dst='2001:db8:b::99')/{DATA}"
        ),
    ]);
    dropped(
        &snap,
        &f[0],
        DropReason::TunnelLoop,
        "to the ingress tunnel's remote",
    );
    dropped(
        &snap,
        &f[1],
        DropReason::TunnelLoop,
        "to the egress tunnel's remote",
    );
    dropped(&snap, &f[2], DropReason::Hairpin, "back into v4");
    let (a, _, _) = send(&snap, &f[3]);
    assert_eq!(a, Action::Transmit(PORT), "another address of the /64");
}
