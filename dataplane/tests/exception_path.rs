//! The exception path's pipeline side: which packets for us go to a host interface (and in
//! what shape), and what the host sends through one (`Pipeline::inject`), byte for byte
//! against scapy.
//!
//! The lab is `common::lab_builder` with tunnel b given a link (169.254.2.1/31: ours is .1,
//! the client router's .0) and port 1 a host interface.

mod common;

use common::*;
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, DropReason, Host, Pipeline, PuntReason};
use dataplane::tables::{TunnelId, TunnelMode};

const ETH: usize = 14;

fn lab() -> Lab {
    let mut builder = lab_builder();
    let mut b = builder
        .tunnels()
        .iter()
        .find(|t| t.name == "b")
        .cloned()
        .expect("tunnel b");
    b.link = Some("169.254.2.1/31".parse().expect("link"));
    assert!(builder.remove_tunnel("b"));
    builder.tunnel(b);
    let snap = builder.build().expect("lab");
    let mut core = snap.port(CORE_PORT).expect("port 1").clone();
    core.host_interface = true;
    builder.port(CORE_PORT, core);
    let snap = builder.build().expect("lab with host interfaces");
    Lab {
        builder,
        snap,
        pipe: Pipeline::new(0x1000),
    }
}

fn tunnel(lab: &Lab, name: &str) -> TunnelId {
    lab.snap.tunnels().by_name(name).expect("tunnel")
}

/// The inner packet, as scapy builds it, of each case below.
const TCP_TO_LINK: &str =
    "IP(src='169.254.2.0', dst='169.254.2.1', ttl=64)/TCP(sport=179, dport=40000, flags='S')";

#[test]
fn packets_for_a_tunnels_link_go_to_its_host_interface_as_the_inner_packet() {
    let mut lab = lab();
    let b = tunnel(&lab, "b");
    let f = pkts(&[
        format!("from_b({TCP_TO_LINK})"),
        TCP_TO_LINK.to_owned(),
        // The tunnel's endpoint (ours) inside the tunnel, not a tunnel protocol.
        "from_b(IP(src='10.2.0.5', dst=L1)/TCP(sport=40000, dport=22, flags='S'))".to_owned(),
        "IP(src='10.2.0.5', dst=L1)/TCP(sport=40000, dport=22, flags='S')".to_owned(),
    ]);
    for (frame, inner, case) in [
        (&f[0], &f[1], "TCP to the link address"),
        (&f[2], &f[3], "TCP to the tunnel's local endpoint"),
    ] {
        let before = lab.counters().punt_count(PuntReason::LocalInner);
        let (a, out) = lab.send(CLIENT_PORT, frame);
        assert_eq!(
            a,
            Action::Deliver {
                to: Host::Tunnel(b),
                punt: PuntReason::LocalInner
            },
            "{case}"
        );
        // The host gets the inner packet as it was sent: TTL and all (it is for us, not
        // forwarded).
        assert_eq!(&out, inner, "{case}: the inner packet, unchanged");
        assert_eq!(
            lab.counters().punt_count(PuntReason::LocalInner),
            before + 1,
            "{case}: counted as punted"
        );
    }
    // An echo request to the link address is still answered by the workers.
    let ping = pkt("from_b(IP(src='169.254.2.0', dst='169.254.2.1')/ICMP(type=8, id=7, seq=1))");
    let (a, _) = lab.send(CLIENT_PORT, &ping);
    assert!(matches!(a, Action::Answer { .. }), "echo: {a:?}");
}

#[test]
fn without_a_link_or_host_interface_packets_for_us_are_punted_as_before() {
    // Tunnel c has no link: the same TCP to its endpoint inside it goes nowhere.
    let mut lab = lab();
    let f = pkt(&format!(
        "e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='{}')/TCP(dport=22, flags='S')",
        "192.0.2.1"
    ));
    lab.expect_punt(
        CLIENT_PORT,
        &f,
        PuntReason::LocalInner,
        "no link on tunnel c",
    );
    // Port 0 has no host interface: TCP to its address is punted.
    let f = pkt("e0()/IP(src='198.51.100.99', dst=L1)/TCP(dport=22, flags='S')");
    lab.expect_punt(
        CLIENT_PORT,
        &f,
        PuntReason::Local,
        "no host interface on port 0",
    );
    // The link address of another tunnel, from inside tunnel c: not ours as c sees it, and
    // not c's source: the source check drops it.
    let f = pkt("e0()/IP(src=RC, dst=L1)/IP(src='10.3.0.5', dst='169.254.2.1')/data()");
    let (a, _) = lab.send(CLIENT_PORT, &f);
    assert_ne!(
        a,
        Action::Deliver {
            to: Host::Tunnel(tunnel(&lab, "b")),
            punt: PuntReason::LocalInner
        },
        "b's link is only b's"
    );
}

#[test]
fn packets_for_a_ports_addresses_go_to_its_host_interface_without_ethernet() {
    let mut lab = lab();
    let f = pkts(&[
        "e1()/IP(src='198.51.100.99', dst=LC)/TCP(sport=40000, dport=22, flags='S')",
        "IP(src='198.51.100.99', dst=LC)/TCP(sport=40000, dport=22, flags='S')",
        "e1()/IP(src='198.51.100.99', dst=LC)/UDP(sport=3784, dport=3784)/Raw(b'bfd')",
        "IP(src='198.51.100.99', dst=LC)/UDP(sport=3784, dport=3784)/Raw(b'bfd')",
    ]);
    for (frame, ip, case) in [(&f[0], &f[1], "TCP"), (&f[2], &f[3], "UDP")] {
        let (a, out) = lab.send(CORE_PORT, frame);
        assert_eq!(
            a,
            Action::Deliver {
                to: Host::Port(CORE_PORT),
                punt: PuntReason::Local
            },
            "{case}"
        );
        assert_eq!(&out, ip, "{case}: the IPv4 packet, as received");
    }
    // GRE to the port's address is still tunnel traffic (tunnel edge's local).
    let gre = pkt("e1()/IP(src=RX, dst=LC)/GRE(key_present=1, key=7)/IP(src='10.99.0.5', dst='10.1.0.5')/data()");
    let (a, _) = lab.send(CORE_PORT, &gre);
    assert!(matches!(a, Action::Transmit(_)), "GRE is terminated: {a:?}");
}

#[test]
fn what_the_host_sends_into_a_tunnels_interface_is_encapsulated_as_the_tunnel_says() {
    let lab = lab();
    // Into tunnel a (key 100, sequence numbers, checksum; DSCP copied, DF set, TTL 64): the
    // exception path of one worker writes outer identification 1 (its class of two).
    let a = tunnel(&lab, "a");
    let inner = "IP(src='169.254.2.1', dst='10.1.0.9', ttl=64, tos=0xb8, flags='DF')/TCP(sport=179, dport=40000, flags='SA')";
    let f = pkts(&[
        inner.to_owned(),
        format!(
            "Ether(dst='{}', src=P0)/IP(src=L1, dst=RA, id=1, ttl=64, tos=0xb8, flags='DF', \
             proto=47)/GRE(key_present=1, key=100, seqnum_present=1, sequence_number=0, \
             chksum_present=1)/{inner}",
            remote_mac(1)
        ),
    ]);
    let mut pipe = Pipeline::for_host(1);
    let mut buf = TestBuf::with_headroom(&f[0], 128);
    assert_eq!(
        pipe.inject(&mut buf, &lab.snap, Host::Tunnel(a)),
        Action::Transmit(CLIENT_PORT)
    );
    assert_eq!(buf.data(), &f[1][..], "the frame, as scapy builds it");
    assert_eq!(pipe.counters().tunnels[a.index()].tx.packets, 1);
    assert_eq!(
        pipe.counters().ports[usize::from(CLIENT_PORT)].tx.packets,
        1
    );
    // The next one takes the next sequence number: the tunnel's one counter.
    let mut buf = TestBuf::with_headroom(&f[0], 128);
    pipe.inject(&mut buf, &lab.snap, Host::Tunnel(a));
    assert_eq!(
        &buf.data()[ETH + 20 + 12..ETH + 20 + 16],
        &1u32.to_be_bytes()
    );

    // IP-in-IP (tunnel c).
    let c = tunnel(&lab, "c");
    assert_eq!(
        lab.snap.tunnels().get(c).map(|e| e.config.mode),
        Some(TunnelMode::Ipip)
    );
    let f = pkts(&[
        "IP(src='169.254.2.1', dst='10.3.0.9')/data()".to_owned(),
        format!(
            "Ether(dst='{}', src=P0)/IP(src=L1, dst=RC, id=1, ttl=64, flags='DF', proto=4)/\
             IP(src='169.254.2.1', dst='10.3.0.9')/data()",
            remote_mac(3)
        ),
    ]);
    let mut pipe = Pipeline::for_host(1);
    let mut buf = TestBuf::with_headroom(&f[0], 128);
    assert_eq!(
        pipe.inject(&mut buf, &lab.snap, Host::Tunnel(c)),
        Action::Transmit(CLIENT_PORT)
    );
    assert_eq!(buf.data(), &f[1][..]);
}

#[test]
fn what_the_host_sends_into_a_ports_interface_leaves_natively_ttl_untouched() {
    let lab = lab();
    // 8.8.8.8 is routed natively via the upstream on port 1: its MAC; the packet as the
    // host wrote it (the host set its TTL; we forward nothing).
    let f = pkts(&[
        "IP(src=LC, dst='8.8.8.8', ttl=64)/UDP(sport=1, dport=53)".to_owned(),
        "Ether(dst='02:00:00:00:bb:01', src=P1)/IP(src=LC, dst='8.8.8.8', ttl=64)/UDP(sport=1, dport=53)".to_owned(),
        // The upstream itself: on the port's link, resolved by the neighbour table.
        "IP(src=LC, dst='203.0.113.254')/TCP(dport=179)".to_owned(),
        "Ether(dst='02:00:00:00:bb:01', src=P1)/IP(src=LC, dst='203.0.113.254')/TCP(dport=179)".to_owned(),
    ]);
    let mut pipe = Pipeline::for_host(1);
    for (host, wire) in [(&f[0], &f[1]), (&f[2], &f[3])] {
        let mut buf = TestBuf::with_headroom(host, 128);
        assert_eq!(
            pipe.inject(&mut buf, &lab.snap, Host::Port(CORE_PORT)),
            Action::Transmit(CORE_PORT)
        );
        assert_eq!(buf.data(), &wire[..]);
    }
    // A destination whose MAC nobody knows: dropped, counted.
    let f = pkt("IP(src=LC, dst='203.0.113.77')/TCP(dport=179)");
    let mut buf = TestBuf::with_headroom(&f, 128);
    assert_eq!(
        pipe.inject(&mut buf, &lab.snap, Host::Port(CORE_PORT)),
        Action::Drop(DropReason::NoNeighbor)
    );
    assert_eq!(pipe.counters().drop_count(DropReason::NoNeighbor), 1);
}

#[test]
fn what_the_host_sends_is_checked_like_anything_from_the_wire() {
    let lab = lab();
    let a = tunnel(&lab, "a");
    let good = pkt("IP(src='169.254.2.1', dst='10.1.0.9')/data()");
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 0xff;
    let mut long = good.clone();
    long[2..4].copy_from_slice(&((good.len() + 1) as u16).to_be_bytes());
    let big = pkt("IP(src='169.254.2.1', dst='10.6.0.9', flags='DF')/data(400)");
    let small = tunnel(&lab, "small");
    let mut pipe = Pipeline::for_host(1);
    for (bytes, to, reason, case) in [
        (
            &good[..10],
            Host::Tunnel(a),
            DropReason::BadIpv4,
            "truncated",
        ),
        (
            &bad_sum[..],
            Host::Tunnel(a),
            DropReason::BadIpv4,
            "bad checksum",
        ),
        (
            &long[..],
            Host::Tunnel(a),
            DropReason::BadIpv4,
            "length past the end",
        ),
        (&[][..], Host::Tunnel(a), DropReason::BadIpv4, "empty"),
        (
            &big[..],
            Host::Tunnel(small),
            DropReason::MtuExceeded,
            "over the tunnel's MTU",
        ),
    ] {
        let before = pipe.counters().drop_count(reason);
        let mut buf = TestBuf::with_headroom(bytes, 128);
        assert_eq!(
            pipe.inject(&mut buf, &lab.snap, to),
            Action::Drop(reason),
            "{case}"
        );
        assert_eq!(
            pipe.counters().drop_count(reason),
            before + 1,
            "{case}: counted"
        );
    }
    // A tunnel that is gone (its slot empty): dropped, not sent anywhere.
    let gone = TunnelId(u32::MAX);
    let mut buf = TestBuf::with_headroom(&good, 128);
    assert!(matches!(
        pipe.inject(&mut buf, &lab.snap, Host::Tunnel(gone)),
        Action::Drop(_)
    ));
}

#[test]
fn a_probe_goes_into_its_tunnel_and_its_reply_comes_back_for_the_prober() {
    use dataplane::pipeline::probe::{parse_reply, probe_packet, ProbeReply};
    let mut lab = lab();
    let c = tunnel(&lab, "c");
    let p = ProbeReply {
        slot: c.0,
        nonce: 0x1234_5678,
        seq: 9,
        sent_ns: 42,
    };
    let inner = probe_packet(L1, L1, &p);
    // The probe: the inner packet an echo reply from our endpoint to itself, as scapy
    // reads it, encapsulated into tunnel c (IP in IP) to its router.
    check_fields(
        "the probe's inner packet",
        &[&[0u8; 12][..], &[8, 0], &inner[..]].concat(),
        &[
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "192.0.2.1"),
            ("p[IP].ttl", "64"),
            ("p[ICMP].type", "0"),
            ("p[ICMP].id", "47873"),
            ("p[ICMP].seq", "9"),
            ("ip_ok(p[IP], f)", "True"),
            ("checksum(bytes(p[ICMP]))", "0"),
        ],
    );
    let mut pipe = Pipeline::for_host(1);
    let mut buf = TestBuf::with_headroom(&inner, 128);
    assert_eq!(
        pipe.inject(&mut buf, &lab.snap, Host::Tunnel(c)),
        Action::Transmit(CLIENT_PORT)
    );
    let sent = buf.data().to_vec();
    check_fields(
        "the probe on the wire",
        &sent,
        &[
            ("p[IP].src", "192.0.2.1"),
            ("p[IP].dst", "198.51.100.3"),
            ("p[IP].proto", "4"),
            ("ip_ok(p[IP], f)", "True"),
        ],
    );
    assert_eq!(&sent[14 + 20..], &inner[..], "the inner packet, unchanged");
    // The router decapsulates and routes the inner packet: it comes back natively, to us.
    let back = [&sent[..14], &sent[14 + 20..]].concat();
    let mut back = back;
    back[0..6].copy_from_slice(&MAC_P0.0);
    back[6..12].copy_from_slice(&remote_mac(3).0);
    let (a, out) = lab.send(CLIENT_PORT, &back);
    assert_eq!(
        a,
        Action::Deliver {
            to: Host::Prober,
            punt: PuntReason::Probe
        }
    );
    assert_eq!(
        parse_reply(&out),
        Some(p),
        "the prober reads its probe back"
    );
    assert_eq!(lab.counters().punt_count(PuntReason::Probe), 1);
    // Someone's echo reply to us without our magic is no probe reply.
    let f = pkt("e0()/IP(src=RC, dst=L1)/ICMP(type=0, id=0xbb01, seq=9)/Raw(b'x' * 28)");
    let (a, _) = lab.send(CLIENT_PORT, &f);
    assert_ne!(
        a,
        Action::Deliver {
            to: Host::Prober,
            punt: PuntReason::Probe
        }
    );
}

#[test]
fn ipv6_for_a_tunnels_link6_goes_to_its_host_interface_and_comes_back_encapsulated() {
    let mut lab = lab();
    let b = tunnel(&lab, "b");
    // From b's router (fd00:b::, its side of b's link6 prefix) to our link6 fd00:b::1: b has
    // a host interface (its link), which holds link6: the inner IPv6 packet as sent, hop
    // limit and all (it is for us, not forwarded).
    let echo = "IPv6(src='fd00:b::', dst='fd00:b::1', hlim=64)/ICMPv6EchoRequest(id=7, seq=1)";
    let f = pkts(&[
        format!("e0()/IP(src=RB, dst=L1)/GRE(proto=0x86dd)/{echo}"),
        echo.to_owned(),
    ]);
    let before = lab.counters().punt_count(PuntReason::LocalInner);
    let (a, out) = lab.send(CLIENT_PORT, &f[0]);
    assert_eq!(
        a,
        Action::Deliver {
            to: Host::Tunnel(b),
            punt: PuntReason::LocalInner
        }
    );
    assert_eq!(out, f[1], "the inner IPv6 packet, unchanged");
    assert_eq!(
        lab.counters().punt_count(PuntReason::LocalInner),
        before + 1
    );

    // The host's answer goes into b with b's header: GRE protocol type 0x86DD (RFC 7676),
    // from our endpoint to b's router, DF set (IPv6 is never fragmented on the way), TTL 64,
    // the exception path's first identification; into IP-in-IP tunnel c as protocol 41
    // (RFC 4213). Byte for byte as scapy builds them.
    let reply = "IPv6(src='fd00:b::1', dst='fd00:b::', hlim=64)/ICMPv6EchoReply(id=7, seq=1)";
    let to_c = "IPv6(src='fd00:c::1', dst='fd00:c::', hlim=64)/ICMPv6EchoReply(id=8, seq=1)";
    let c = tunnel(&lab, "c");
    let f = pkts(&[
        reply.to_owned(),
        format!(
            "Ether(dst='{}', src=P0)/IP(src=L1, dst=RB, id=1, ttl=64, flags='DF', proto=47)/\
             GRE(proto=0x86dd)/{reply}",
            remote_mac(2)
        ),
        to_c.to_owned(),
        format!(
            "Ether(dst='{}', src=P0)/IP(src=L1, dst=RC, id=1, ttl=64, flags='DF', proto=41)/\
             {to_c}",
            remote_mac(3)
        ),
    ]);
    for (host, wire, to, case) in [
        (&f[0], &f[1], b, "GRE 0x86DD"),
        (&f[2], &f[3], c, "protocol 41"),
    ] {
        let mut pipe = Pipeline::for_host(1);
        let mut buf = TestBuf::with_headroom(host, 128);
        assert_eq!(
            pipe.inject(&mut buf, &lab.snap, Host::Tunnel(to)),
            Action::Transmit(CLIENT_PORT),
            "{case}"
        );
        assert_eq!(
            buf.data(),
            &wire[..],
            "{case}: the frame, as scapy builds it"
        );
        assert_eq!(pipe.counters().tunnels[to.index()].tx.packets, 1, "{case}");
    }

    // What no IPv6 node may send, and IPv6 out of a port's interface (no native IPv6
    // forwarding): dropped, counted.
    let unspecified = pkt("IPv6(src='::', dst='ff02::16')/ICMPv6EchoReply()");
    let mut long = f[0].clone();
    long[4..6].copy_from_slice(&((f[0].len() - 40 + 1) as u16).to_be_bytes());
    let mut pipe = Pipeline::for_host(1);
    for (bytes, to, reason, case) in [
        (
            &unspecified[..],
            Host::Tunnel(b),
            DropReason::BadInnerIpv6,
            "source ::",
        ),
        (
            &f[0][..39],
            Host::Tunnel(b),
            DropReason::BadInnerIpv6,
            "shorter than the fixed header",
        ),
        (
            &long[..],
            Host::Tunnel(b),
            DropReason::BadInnerIpv6,
            "payload length past the end",
        ),
        (
            &f[0][..],
            Host::Port(CORE_PORT),
            DropReason::NoRoute,
            "IPv6 out of a port",
        ),
    ] {
        let before = pipe.counters().drop_count(reason);
        let mut buf = TestBuf::with_headroom(bytes, 128);
        assert_eq!(
            pipe.inject(&mut buf, &lab.snap, to),
            Action::Drop(reason),
            "{case}"
        );
        assert_eq!(
            pipe.counters().drop_count(reason),
            before + 1,
            "{case}: counted"
        );
    }
}
