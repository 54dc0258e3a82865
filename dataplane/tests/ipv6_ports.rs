//! IPv6 on a port: Neighbor Discovery (RFC 4861), which frames reach the ND handler and
//! what it answers, byte for byte against the advertisement scapy builds from the fields
//! RFC 4861 section 7.2.4 prescribes (scapy computes the checksum on its own); and echo
//! requests to the port's IPv6 addresses (RFC 4443 4.1, 4.2).
//!
//! Lab port 1: MAC 02:00:00:00:01:01, IPv6 address 2001:db8:100::1; its link-local address
//! is fe80::ff:fe00:101 (RFC 4291 appendix A: the MAC with ff:fe in its middle and bit
//! 0x02 of the first byte inverted, 02 -> 00).

mod common;

use common::*;
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::control::nd::{self, NdOutcome};
use dataplane::pipeline::{DropReason, PuntReason};
use dataplane::wire::EthernetAddress;
use std::net::Ipv6Addr;

/// The peer asking: 2001:db8:100::9 at PEER (02:00:00:00:ee:ee).
const PEER6: &str = "2001:db8:100::9";

fn answer(frame: &[u8]) -> (NdOutcome, Vec<u8>) {
    answer_on(CORE_PORT, frame)
}

fn answer_on(port: u16, frame: &[u8]) -> (NdOutcome, Vec<u8>) {
    static LAB: std::sync::OnceLock<std::sync::Mutex<Lab>> = std::sync::OnceLock::new();
    let lab = LAB
        .get_or_init(|| std::sync::Mutex::new(Lab::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut b = TestBuf::new(frame);
    let out = nd::handle(&mut b, lab.snap.port(port).unwrap());
    (out, b.data().to_vec())
}

#[test]
fn a_solicitation_for_our_address_is_answered_with_an_advertisement() {
    let f = pkts(&[
        // To the solicited-node group of 2001:db8:100::1 (ff02::1:ff00:1, 33:33:ff:00:00:01).
        format!(
            "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='{PEER6}', dst='ff02::1:ff00:1', \
             hlim=255)/ICMPv6ND_NS(tgt=LC6)/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
        ),
        // RFC 4861 7.2.4: from the target to the solicitation's source, hop limit 255,
        // Router (we are one), Solicited and Override set, our MAC as the target's.
        format!(
            "Ether(dst=PEER, src=P1)/IPv6(src=LC6, dst='{PEER6}', hlim=255)/\
             ICMPv6ND_NA(R=1, S=1, O=1, tgt=LC6)/ICMPv6NDOptDstLLAddr(lladdr=P1)"
        ),
    ]);
    let mut lab = Lab::new();
    let punted = lab.expect_punt(CORE_PORT, &f[0], PuntReason::Nd, "NS to the group");
    assert_eq!(punted, f[0], "handed over as it came");
    let (out, na) = answer(&f[0]);
    assert_eq!(
        out,
        NdOutcome::Replied {
            learned: Some((
                PEER6.parse().unwrap(),
                EthernetAddress([2, 0, 0, 0, 0xee, 0xee])
            ))
        }
    );
    assert_eq!(hex(&na), hex(&f[1]), "the advertisement, byte for byte");

    // The same solicitation sent unicast to the port's MAC (RFC 4861 7.3.3 reachability
    // confirmation) is answered alike.
    let unicast = pkt(&format!(
        "Ether(dst=P1, src=PEER)/IPv6(src='{PEER6}', dst=LC6, hlim=255)/\
         ICMPv6ND_NS(tgt=LC6)/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
    ));
    lab.expect_punt(CORE_PORT, &unicast, PuntReason::Nd, "NS unicast");
    let (_, na) = answer(&unicast);
    assert_eq!(hex(&na), hex(&f[1]), "unicast NS: the same advertisement");
}

#[test]
fn the_link_local_address_is_answered() {
    let ll = "fe80::ff:fe00:101";
    assert_eq!(
        ll.parse::<Ipv6Addr>().unwrap(),
        Lab::new().snap.port(CORE_PORT).unwrap().link_local()
    );
    let f = pkts(&[
        format!(
            "Ether(dst='33:33:ff:00:01:01', src=PEER)/IPv6(src='fe80::9', dst='ff02::1:ff00:101', \
             hlim=255)/ICMPv6ND_NS(tgt='{ll}')/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
        ),
        format!(
            "Ether(dst=PEER, src=P1)/IPv6(src='{ll}', dst='fe80::9', hlim=255)/\
             ICMPv6ND_NA(R=1, S=1, O=1, tgt='{ll}')/ICMPv6NDOptDstLLAddr(lladdr=P1)"
        ),
    ]);
    Lab::new().expect_punt(CORE_PORT, &f[0], PuntReason::Nd, "NS for the link-local");
    let (out, na) = answer(&f[0]);
    assert!(matches!(out, NdOutcome::Replied { .. }), "{out:?}");
    assert_eq!(hex(&na), hex(&f[1]));
}

#[test]
fn a_duplicate_address_probe_for_our_address_is_answered_to_all_nodes() {
    let f = pkts(&[
        // RFC 4862 5.4.2: from ::, to the solicited-node group, no source link-layer option.
        "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='::', dst='ff02::1:ff00:1', \
         hlim=255)/ICMPv6ND_NS(tgt=LC6)"
            .to_owned(),
        // RFC 4861 7.2.4: to all-nodes, Solicited clear.
        "Ether(dst='33:33:00:00:00:01', src=P1)/IPv6(src=LC6, dst='ff02::1', hlim=255)/\
         ICMPv6ND_NA(R=1, S=0, O=1, tgt=LC6)/ICMPv6NDOptDstLLAddr(lladdr=P1)"
            .to_owned(),
        // A DAD probe may not carry a source link-layer option (RFC 4861 7.1.1).
        "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='::', dst='ff02::1:ff00:1', \
         hlim=255)/ICMPv6ND_NS(tgt=LC6)/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
            .to_owned(),
    ]);
    let (out, na) = answer(&f[0]);
    assert_eq!(
        out,
        NdOutcome::Replied { learned: None },
        "nothing learned from ::"
    );
    assert_eq!(hex(&na), hex(&f[1]));
    let (out, rest) = answer(&f[2]);
    assert_eq!(out, NdOutcome::Invalid);
    assert_eq!(rest, f[2], "not answered, left as it was");
}

#[test]
fn invalid_solicitations_are_not_answered() {
    let ns = |ip: &str, icmp: &str| {
        pkt(&format!(
            "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='{PEER6}', dst='ff02::1:ff00:1', \
             {ip})/ICMPv6ND_NS(tgt=LC6{icmp})/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
        ))
    };
    // RFC 4861 7.1.1: hop limit 255 (254: it crossed a router), the checksum, code 0.
    for (case, f) in [
        ("hop limit 254", ns("hlim=254", "")),
        ("bad checksum", ns("hlim=255", ", cksum=0x1234")),
        ("code 1", ns("hlim=255", ", code=1")),
    ] {
        let mut lab = Lab::new();
        lab.expect_punt(CORE_PORT, &f, PuntReason::Nd, case);
        let (out, rest) = answer(&f);
        assert_eq!(out, NdOutcome::Invalid, "{case}");
        assert_eq!(rest, f, "{case}: left as it was");
    }
    // A multicast target (7.1.1), to our group so that only the target is wrong.
    let f = pkt(&format!(
        "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='{PEER6}', dst='ff02::1:ff00:1', \
         hlim=255)/ICMPv6ND_NS(tgt='ff02::1:ff00:1')/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
    ));
    assert_eq!(answer(&f).0, NdOutcome::Invalid, "multicast target");
}

#[test]
fn only_frames_for_our_addresses_reach_the_handler() {
    let mut lab = Lab::new();
    // Another host's solicited-node group: not for us.
    let other = pkt(&format!(
        "Ether(dst='33:33:ff:00:00:02', src=PEER)/IPv6(src='{PEER6}', dst='ff02::1:ff00:2', \
         hlim=255)/ICMPv6ND_NS(tgt='2001:db8:100::2')/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
    ));
    lab.expect_drop(CORE_PORT, &other, DropReason::NotForUs, "another group");
    // A solicitation for another address that reaches us anyway (sent to our MAC) is
    // handled, and ignored.
    let foreign = pkt(&format!(
        "Ether(dst=P1, src=PEER)/IPv6(src='{PEER6}', dst='2001:db8:100::2', hlim=255)/\
         ICMPv6ND_NS(tgt='2001:db8:100::2')/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
    ));
    lab.expect_punt(CORE_PORT, &foreign, PuntReason::Nd, "NS for another");
    assert_eq!(answer(&foreign).0, NdOutcome::Ignored);
    // Port 0 has no IPv6 address but its link-local one, fe80::ff:fe00:1 (from
    // 02:00:00:00:00:01), whose group MAC is 33:33:ff:00:00:01 too: the frame reaches the
    // handler there, which does not answer for an address port 0 does not have.
    let to_port0 = pkt(&format!(
        "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='{PEER6}', dst='ff02::1:ff00:1', \
         hlim=255)/ICMPv6ND_NS(tgt=LC6)/ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
    ));
    lab.expect_punt(CLIENT_PORT, &to_port0, PuntReason::Nd, "port 0's group");
    assert_eq!(answer_on(CLIENT_PORT, &to_port0).0, NdOutcome::Ignored);
}

#[test]
fn advertisements_to_us_are_heard_with_their_target() {
    let f = pkt(&format!(
        "Ether(dst=P1, src=PEER)/IPv6(src='{PEER6}', dst=LC6, hlim=255)/\
         ICMPv6ND_NA(R=1, S=1, O=1, tgt='{PEER6}')/ICMPv6NDOptDstLLAddr(lladdr=PEER)"
    ));
    Lab::new().expect_punt(CORE_PORT, &f, PuntReason::Nd, "NA to us");
    assert_eq!(
        answer(&f).0,
        NdOutcome::Heard {
            target: PEER6.parse().unwrap(),
            advert: nd::Advert {
                mac: Some(EthernetAddress([2, 0, 0, 0, 0xee, 0xee])),
                solicited: true,
                override_: true,
            }
        }
    );
    // Solicited, to a multicast group: invalid (RFC 4861 7.1.2).
    let f = pkt(&format!(
        "Ether(dst='33:33:00:00:00:01', src=PEER)/IPv6(src='{PEER6}', dst='ff02::1', hlim=255)/\
         ICMPv6ND_NA(R=1, S=1, O=1, tgt='{PEER6}')/ICMPv6NDOptDstLLAddr(lladdr=PEER)"
    ));
    assert_eq!(answer(&f).0, NdOutcome::Invalid);
}

#[test]
fn echo_requests_to_our_ipv6_addresses_are_answered() {
    // RFC 4443 4.2: the reply from the address the request was sent to, identifier,
    // sequence number and data as they came; hop limit 64 (ours), to the frame's source.
    for (ours, to) in [("LC6", "P1"), ("'fe80::ff:fe00:101'", "P1")] {
        let peer = if ours == "LC6" { PEER6 } else { "fe80::9" };
        let f = pkts(&[
            format!(
                "Ether(dst={to}, src=PEER)/IPv6(src='{peer}', dst={ours}, hlim=3)/\
                 ICMPv6EchoRequest(id=0x1234, seq=7, data=b'ping6 payload')/Raw(b'')"
            ),
            format!(
                "Ether(dst=PEER, src=P1)/IPv6(src={ours}, dst='{peer}', hlim=64)/\
                 ICMPv6EchoReply(id=0x1234, seq=7, data=b'ping6 payload')/Raw(b'')"
            ),
        ]);
        // With Ethernet padding after the packet: not echoed.
        let mut padded = f[0].clone();
        padded.extend_from_slice(&[0xa5; 6]);
        let mut lab = Lab::new();
        let before = lab.counters().echo_replies;
        let (a, out) = lab.send(CORE_PORT, &padded);
        assert_eq!(
            a,
            dataplane::pipeline::Action::Answer {
                port: CORE_PORT,
                punt: PuntReason::Local
            },
            "{ours}"
        );
        assert_eq!(hex(&out), hex(&f[1]), "{ours}: the reply, byte for byte");
        assert_eq!(lab.counters().echo_replies, before + 1);
    }
    // A bad checksum, or another port's address: not answered (punted as for us, or
    // not for us at all).
    let mut lab = Lab::new();
    let bad = pkt(&format!(
        "e1()/IPv6(src='{PEER6}', dst=LC6)/ICMPv6EchoRequest(id=1, seq=1, cksum=0x1111)"
    ));
    let (a, _) = lab.send(CORE_PORT, &bad);
    assert_eq!(
        a,
        dataplane::pipeline::Action::Punt(PuntReason::Local),
        "bad checksum"
    );
    let p0 = pkt(&format!(
        "e0()/IPv6(src='{PEER6}', dst=LC6)/ICMPv6EchoRequest(id=1, seq=1)"
    ));
    // Port 1's address on port 0 (no transit there): not for us.
    lab.expect_drop(CLIENT_PORT, &p0, DropReason::NotForUs, "port 0");
    // Other IPv6 to us has nowhere to go yet.
    let udp = pkt(&format!("e1()/IPv6(src='{PEER6}', dst=LC6)/data()"));
    lab.expect_drop(
        CORE_PORT,
        &udp,
        DropReason::UnsupportedEthertype,
        "UDP to us",
    );
}

/// A solicitation for our address with `flips` applied (byte index, xor value): the ND
/// handler never panics, and answers only what RFC 4861 7.1.1 lets it answer.
fn mutated_solicitation(base: &[u8], flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut f = base.to_vec();
    for &(at, x) in flips {
        let at = at % f.len();
        f[at] ^= x;
    }
    f.truncate(f.len() - cut % 20);
    f
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn mutated_solicitations_never_panic_and_are_answered_only_when_valid(
        flips in proptest::collection::vec((0usize..200, 1u8..=255), 1..4),
        cut in 0usize..40,
    ) {
        static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let base = BASE.get_or_init(|| pkt(&format!(
            "Ether(dst='33:33:ff:00:00:01', src=PEER)/IPv6(src='{PEER6}', \
             dst='ff02::1:ff00:1', hlim=255)/ICMPv6ND_NS(tgt=LC6)/\
             ICMPv6NDOptSrcLLAddr(lladdr=PEER)"
        )));
        let f = mutated_solicitation(base, &flips, cut);
        let (out, reply) = answer(&f);
        if let NdOutcome::Replied { .. } = out {
            // Read independently of the parser: hop limit 255, an ICMPv6 solicitation
            // (type 135, code 0) for our address, next header 58, and the advertisement
            // from that address with hop limit 255.
            proptest::prop_assert_eq!(f[14 + 7], 255);
            proptest::prop_assert_eq!(f[14 + 6], 58);
            proptest::prop_assert_eq!(&f[54..56], &[135, 0]);
            proptest::prop_assert_eq!(&f[62..78], &LC6.octets());
            proptest::prop_assert_eq!(reply.len(), 86);
            proptest::prop_assert_eq!(reply[14 + 7], 255);
            proptest::prop_assert_eq!(&reply[22..38], &LC6.octets());
            proptest::prop_assert_eq!(reply[54], 136);
        } else {
            proptest::prop_assert_eq!(reply, f, "not answered: left as it was");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Native IPv6 transit (RFC 8200, RFC 4443), on the lab's port 1 (transit, internet):
// 2001:db8:200::/48 via 2001:db8:100::fe at 02:00:00:00:bb:01, 2001:db8:201::/48 via an
// unresolved next hop; 2001:db8:99::1 has no route.

/// From somebody on the Internet to `dst`, `hlim` hops left, `n` bytes of UDP data.
fn native6(dst: &str, hlim: u8, n: usize) -> String {
    format!("e1()/IPv6(src='2001:db8:aaaa::1', dst='{dst}', hlim={hlim})/data({n})")
}

/// The ICMPv6 error we send about `offending` (as it arrived): from our address on port 1,
/// hop limit 64, traffic class CS6 (0xc0, network control), to the sender's MAC, quoting
/// as much as fits in 1,280 bytes (RFC 4443 2.4 (c)).
fn icmpv6_error(message: &str, offending: &[u8]) -> Vec<u8> {
    let quote = &offending[14..];
    let quote = &quote[..quote.len().min(1280 - 48)];
    pkt(&format!(
        "Ether(dst=PEER, src=P1)/IPv6(src=LC6, dst='2001:db8:aaaa::1', hlim=64, tc=0xc0)/\
         {message}/Raw(bytes.fromhex('{}'))",
        hex(quote)
    ))
}

#[test]
fn native_ipv6_is_forwarded_to_the_next_hop_with_one_hop_less() {
    let f = pkts(&[
        native6("2001:db8:200::5", 64, 32),
        "Ether(dst='02:00:00:00:bb:01', src=P1)/\
         IPv6(src='2001:db8:aaaa::1', dst='2001:db8:200::5', hlim=63)/data(32)"
            .to_owned(),
    ]);
    let mut lab = Lab::new();
    // With Ethernet padding: trimmed.
    let mut padded = f[0].clone();
    padded.extend_from_slice(&[0; 8]);
    let (a, out) = lab.send(CORE_PORT, &padded);
    assert_eq!(a, dataplane::pipeline::Action::Transmit(CORE_PORT));
    assert_eq!(hex(&out), hex(&f[1]), "MACs rewritten, hop limit 63");
    // Hop limit 2 leaves with 1 (RFC 8200 3: decremented by one at each node).
    let (a, out) = lab.send(CORE_PORT, &pkt(&native6("2001:db8:200::5", 2, 8)));
    assert_eq!(a, dataplane::pipeline::Action::Transmit(CORE_PORT));
    assert_eq!(out[14 + 7], 1);
}

#[test]
fn native_ipv6_errors_are_answered_with_icmpv6_from_the_port_address() {
    use dataplane::pipeline::{Action, IcmpKind};
    // RFC 4443 3.3: hop limit 1 cannot be forwarded, Time Exceeded code 0, quoting the
    // packet as it arrived.
    let expired = pkt(&native6("2001:db8:200::5", 1, 32));
    // 3.1: no route, Destination Unreachable code 0.
    let lost = pkt(&native6("2001:db8:99::1", 64, 32));
    // 3.2: bigger than the egress port's MTU (1,500): Packet Too Big with that MTU, never
    // fragmented (RFC 8200 5). 1,501 bytes of IPv6: 40 + 8 + 1,453.
    let big = pkt(&native6("2001:db8:200::5", 64, 1453));
    assert_eq!(big.len(), 14 + 1501);
    for (case, frame, message, reason, kind) in [
        (
            "expired",
            &expired,
            "ICMPv6TimeExceeded(code=0)",
            DropReason::TtlExceeded,
            IcmpKind::Icmpv6TimeExceeded,
        ),
        (
            "no route",
            &lost,
            "ICMPv6DestUnreach(code=0)",
            DropReason::NoRoute,
            IcmpKind::Icmpv6NoRoute,
        ),
        (
            "too big",
            &big,
            "ICMPv6PacketTooBig(mtu=1500)",
            DropReason::MtuExceeded,
            IcmpKind::Icmpv6PacketTooBig,
        ),
    ] {
        let mut lab = Lab::new();
        let (a, out) = lab.send(CORE_PORT, frame);
        assert_eq!(
            a,
            Action::Reply {
                port: CORE_PORT,
                reason
            },
            "{case}"
        );
        assert_eq!(lab.counters().drop_count(reason), 1, "{case}");
        assert_eq!(lab.counters().icmp_count(kind), 1, "{case}");
        assert_eq!(
            hex(&out),
            hex(&icmpv6_error(message, frame)),
            "{case}: byte for byte"
        );
    }
}

#[test]
fn native_ipv6_drops_are_named() {
    let mut lab = Lab::new();
    lab.expect_drop(
        CORE_PORT,
        &pkt(&native6("2001:db8:201::5", 64, 8)),
        DropReason::NoNeighbor,
        "unresolved next hop",
    );
    lab.expect_drop(
        CORE_PORT,
        &pkt("e1()/IPv6(src='fe80::9', dst='2001:db8:200::5')/data()"),
        DropReason::Martian,
        "link-local source",
    );
    lab.expect_drop(
        CORE_PORT,
        &pkt("e1()/IPv6(src='ff02::1', dst='2001:db8:200::5')/data()"),
        DropReason::Martian,
        "multicast source",
    );
    lab.expect_drop(
        CORE_PORT,
        &pkt("e1()/IPv6(src=LC6, dst='2001:db8:200::5')/data()"),
        DropReason::TunnelLoop,
        "our own address as the source",
    );
    lab.expect_drop(
        CORE_PORT,
        &pkt(&native6("ff0e::1", 64, 8)),
        DropReason::MartianDestination,
        "multicast destination",
    );
    // Port 0 does not allow transit.
    lab.expect_drop(
        CLIENT_PORT,
        &pkt("e0()/IPv6(src='2001:db8:1::5', dst='2001:db8:200::5')/data()"),
        DropReason::NotForUs,
        "no transit on port 0",
    );
}

#[test]
fn native_ipv6_on_a_client_port_passes_the_tunnels_source_check() {
    // Port 0 (client role, no internet role) with transit on: a source inside tunnel a's
    // IPv6 prefix (2001:db8:1::/48, a uses port 0) passes; a source no client owns does
    // not (BCP 38, SPEC.md "Tunnel termination" 6).
    let mut lab = Lab::new();
    let mut entry = lab.snap.port(CLIENT_PORT).unwrap().clone();
    entry.transit = true;
    lab.builder.port(CLIENT_PORT, entry);
    lab.snap = lab.builder.build().unwrap();
    let (a, _) = lab.send(
        CLIENT_PORT,
        &pkt("e0()/IPv6(src='2001:db8:1::5', dst='2001:db8:200::5')/data()"),
    );
    assert_eq!(a, dataplane::pipeline::Action::Transmit(CORE_PORT));
    lab.expect_drop(
        CLIENT_PORT,
        &pkt("e0()/IPv6(src='2001:db8:aaaa::1', dst='2001:db8:200::5')/data()"),
        DropReason::InnerSpoofed,
        "a source no client owns",
    );
}
