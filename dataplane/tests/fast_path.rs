//! The fast path against the general stages: every frame, valid or mutated, goes through
//! two workers on two snapshots of the same lab, one with the fast path (the default) and
//! one without (`Pipeline::set_fast_path(false)`); each must give the same action, leave
//! the same bytes with the same headroom, and after each burst count the same and note the
//! same unresolved neighbours.
//!
//! The frames are built by scapy: the lab's tunnels b, c, d and edge, which the fast path
//! takes, into IPv4 tunnels of every kind (plain, with a key, IP in IP, sequence numbers and
//! checksum, checksum alone, inherited TTL and copied DF, too small an MTU, no next hop),
//! the internet, and loops (from an egress tunnel's router, from our address, to a martian
//! destination a tunnel's prefixes cover); k's keepalive, which it must leave; and a,
//! which checks sequence numbers and so never is; and IPv6 inside GRE from b (into GRE and
//! IP-in-IP tunnels, into keyed k with its TTL and DSCP policies, natively, from its extra
//! sources, back into b, to and from its `link6`, to a martian destination, carrying GRE
//! to our address, over f's MTU, without a route, into a), from k (keyed) and from d,
//! which owns no IPv6 sources. Each goes in a burst between two copies of its valid
//! original, so the memo knows the tunnel and a mutant sits between packets the fast path
//! takes. Mutations: every bit and a whole-byte flip of the first 66 bytes (to the end of
//! the inner header for IPv6), each as it is and with both IPv4 header checksums made
//! right again (so that what the checksums guard is tried too); every ECN pair; the inner
//! TTLs (hop limits) 0 to 2; cuts at each header boundary; Ethernet padding; smaller
//! headroom; chained and shared buffers.

mod common;

use common::*;
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, DropReason, Pipeline};
use dataplane::tables::{DscpPolicy, PortIndex, Snapshot, TtlPolicy, Tunnel, TunnelMode};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Tunnel k's router.
const RK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
/// Tunnel g's router.
const RG: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

/// One worker and its own snapshot (its own GRE sequence state).
struct Side {
    snap: Arc<Snapshot>,
    pipe: Pipeline,
}

impl Side {
    /// The lab, and one more tunnel, k (GRE, key 9, remote 198.51.100.9), whose sources
    /// hold the router's own endpoint: its keepalive is the only packet that tells the
    /// keepalive check from the source check.
    fn new(fast: bool) -> Side {
        let mut b = lab_builder();
        let mut k = Tunnel::new("k", TunnelMode::Gre, L1, RK, CLIENT_PORT);
        k.key = Some(9);
        k.prefixes.push("10.9.0.0/16".parse().unwrap());
        k.extra_sources.push("192.0.2.1/32".parse().unwrap());
        // A martian prefix: only route() drops what it covers.
        k.prefixes.push("240.0.0.0/8".parse().unwrap());
        // IPv6 of its own (a keyed tunnel the IPv6 fast path takes), and policies its
        // IPv6 packets read: the outer TTL from the hop limit, a fixed DSCP.
        k.prefixes6.push("2001:db8:9::/48".parse().unwrap());
        k.ttl = TtlPolicy::Inherit;
        k.dscp = DscpPolicy::Fixed(46);
        b.tunnel(k).neighbor(CLIENT_PORT, RK, remote_mac(9));
        // Tunnel g: a GRE checksum without sequence numbers.
        let mut g = Tunnel::new("g", TunnelMode::Gre, L1, RG, CLIENT_PORT);
        g.checksum = true;
        g.prefixes.push("10.8.0.0/16".parse().unwrap());
        b.tunnel(g).neighbor(CLIENT_PORT, RG, remote_mac(10));
        let snap = b.build().expect("the lab is valid");
        let mut pipe = Pipeline::new(0x1000);
        pipe.set_fast_path(fast);
        Side { snap, pipe }
    }

    fn process(&mut self, port: PortIndex, bufs: &mut [TestBuf]) -> Vec<Action> {
        let mut actions = vec![Action::Drop(DropReason::Runt); bufs.len()];
        self.pipe.process(&self.snap, port, bufs, &mut actions);
        actions
    }
}

/// A base frame: what it is, its port, its bytes, where its inner IP header starts,
/// and whether it is forwarded (else the lab drops or answers it on the way out).
struct Base {
    name: &'static str,
    port: PortIndex,
    frame: Vec<u8>,
    inner: usize,
    forwarded: bool,
    /// IPv6 inside (an IPv6 header at `inner`).
    v6: bool,
}

fn bases() -> Vec<Base> {
    let inner = "UDP(sport=1234,dport=5678)/Raw(b'x'*26)";
    let client = |remote: &str, last: u8| {
        format!(
            "Ether(dst='{MAC_P0}',src='{}')/IP(src='{remote}',dst='{L1}')",
            remote_mac(last)
        )
    };
    let big = "UDP(sport=1234,dport=5678)/Raw(b'x'*300)";
    let specs: [(&str, PortIndex, String, usize, bool); 15] = [
        (
            "b keyless GRE",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='10.7.0.9',ttl=64,tos=0x2a)/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            true,
        ),
        (
            "b to the internet",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='8.8.8.8',ttl=64,flags='DF')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            true,
        ),
        (
            "k's keepalive, back to its router",
            CLIENT_PORT,
            format!(
                "{}/GRE(key_present=1,key=9)/IP(src='{L1}',dst='{RK}')/GRE()",
                client("198.51.100.9", 9)
            ),
            42,
            true,
        ),
        (
            "c IP in IP",
            CLIENT_PORT,
            format!(
                "{}/IP(src='10.3.0.5',dst='10.2.0.9',ttl=9,tos=0x01)/{inner}",
                client("198.51.100.3", 3)
            ),
            34,
            true,
        ),
        (
            "d GRE key 400 into a",
            CLIENT_PORT,
            format!(
                "{}/GRE(key_present=1,key=400)/IP(src='10.4.0.5',dst='10.1.0.9',ttl=2)/{inner}",
                client("198.51.100.4", 4)
            ),
            42,
            true,
        ),
        (
            "edge, the other edge router",
            CORE_PORT,
            format!(
                "Ether(dst='{MAC_P1}',src='{MAC_UPSTREAM}')/IP(src='{RX}',dst='{LC}',tos=0x02)\
                 /GRE(key_present=1,key=7)/IP(src='10.99.0.1',dst='10.3.0.1',tos=0x02)/{inner}"
            ),
            42,
            true,
        ),
        (
            "a sequence and checksum",
            CLIENT_PORT,
            format!(
                "{}/GRE(chksum_present=1,key_present=1,seqnum_present=1,key=100,\
                 sequence_number=1)/IP(src='10.1.0.5',dst='10.2.0.9')/{inner}",
                client("198.51.100.1", 1)
            ),
            50,
            true,
        ),
        (
            "b into d (TTL inherited, fixed DSCP, DF copied)",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='10.4.0.9',ttl=30,tos=0x2a,flags='DF')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            true,
        ),
        (
            "b to the other edge (GRE key 7 out of the core port)",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='10.99.0.1',tos=0x03)/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            true,
        ),
        (
            "b, 328 bytes with DF, into small (MTU 200)",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='10.6.0.9',flags='DF')/{big}",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
        (
            "b into g (GRE checksum)",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='10.8.0.9')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            true,
        ),
        (
            "b from e's router (one of b's sources) into e: a loop",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='{RE}',dst='10.7.0.9')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
        (
            "b from our own address (one of b's sources) into e: a loop",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='{L2}',dst='10.7.0.9')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
        (
            "b to a martian destination that k's prefixes cover",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='240.0.0.9')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
        (
            "b into nn, whose next hop is unresolved",
            CLIENT_PORT,
            format!(
                "{}/GRE()/IP(src='10.2.0.5',dst='10.5.0.9')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
    ];
    // IPv6 inside GRE (0x86DD), from b (2001:db8:2::/48 and 2001:db8:b2::/48, link6
    // fd00:b::1) and d (key 400, no IPv6 sources of its own).
    let inner6 = "UDP(sport=1234,dport=5678)/Raw(b'x'*26)";
    let b6 = |ip6: &str| {
        format!(
            "{}/GRE(proto=0x86dd)/IPv6({ip6})/{inner6}",
            client("198.51.100.2", 2)
        )
    };
    let specs6: [(&str, PortIndex, String, usize, bool); 15] = [
        (
            "b IPv6 into f",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='2001:db8:f::9',hlim=64,tc=0x2a"),
            38,
            true,
        ),
        (
            "b IPv6 from its extra source into e",
            CLIENT_PORT,
            b6("src='2001:db8:b2::5',dst='2001:db8:e0::9',tc=0x01"),
            38,
            true,
        ),
        (
            "b IPv6 into c (IP in IP, protocol 41)",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='2001:db8:3::9',hlim=2"),
            38,
            true,
        ),
        (
            "b IPv6 back into b: a hairpin",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='2001:db8:2::9'"),
            38,
            false,
        ),
        (
            "b IPv6 to its link6 address",
            CLIENT_PORT,
            b6("src='fd00:b::', dst='fd00:b::1'"),
            38,
            false,
        ),
        (
            "b IPv6 from our own link6 address into f: a loop",
            CLIENT_PORT,
            b6("src='fd00:b::1',dst='2001:db8:f::9'"),
            38,
            false,
        ),
        (
            "b IPv6 to a martian destination e's routes cover",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='fe80::9'"),
            38,
            false,
        ),
        (
            "b IPv6 carrying GRE to our core port's address",
            CLIENT_PORT,
            format!(
                "{}/GRE(proto=0x86dd)/IPv6(src='2001:db8:2::5',dst='{LC6}',nh=47)\
                 /GRE()/IP(src='10.2.0.5',dst='10.7.0.9')/{inner}",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
        (
            "b IPv6 into k (key 9, TTL inherited, fixed DSCP)",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='2001:db8:9::9',hlim=30,tc=0x2b"),
            38,
            true,
        ),
        (
            "k IPv6 (key 9) into f",
            CLIENT_PORT,
            format!(
                "{}/GRE(key_present=1,key=9,proto=0x86dd)/IPv6(src='2001:db8:9::5',\
                 dst='2001:db8:f::9',tc=0x01)/{inner6}",
                client("198.51.100.9", 9)
            ),
            42,
            true,
        ),
        (
            "b IPv6 to a native IPv6 route",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='2001:db8:200::9'"),
            38,
            true,
        ),
        (
            "b IPv6, 1448 bytes, over f's MTU",
            CLIENT_PORT,
            format!(
                "{}/GRE(proto=0x86dd)/IPv6(src='2001:db8:2::5',dst='2001:db8:f::9')\
                 /UDP(sport=1234,dport=5678)/Raw(b'x'*1400)",
                client("198.51.100.2", 2)
            ),
            38,
            false,
        ),
        (
            "b IPv6 with no route",
            CLIENT_PORT,
            b6("src='2001:db8:2::5',dst='2001:db8:99::1'"),
            38,
            false,
        ),
        (
            "b IPv6, 300 bytes, into a (sequence numbers and checksum)",
            CLIENT_PORT,
            format!(
                "{}/GRE(proto=0x86dd)/IPv6(src='2001:db8:2::5',dst='2001:db8:1::9')/{big}",
                client("198.51.100.2", 2)
            ),
            38,
            true,
        ),
        (
            "d IPv6 (key 400) from a source it does not own",
            CLIENT_PORT,
            format!(
                "{}/GRE(key_present=1,key=400,proto=0x86dd)/IPv6(src='2001:db8:2::5',\
                 dst='2001:db8:f::9')/{inner6}",
                client("198.51.100.4", 4)
            ),
            42,
            false,
        ),
    ];
    let all: Vec<_> = specs
        .into_iter()
        .map(|s| (s, false))
        .chain(specs6.into_iter().map(|s| (s, true)))
        .collect();
    let frames = pkts(&all.iter().map(|(s, _)| s.2.clone()).collect::<Vec<_>>());
    all.into_iter()
        .zip(frames)
        .map(|(((name, port, _, inner, forwarded), v6), frame)| Base {
            name,
            port,
            frame,
            inner,
            forwarded,
            v6,
        })
        .collect()
}

/// Make the IPv4 header checksum at `at` right again, if a whole header is there.
fn fix_ipv4(f: &mut [u8], at: usize) {
    let Some(&v) = f.get(at) else { return };
    let hlen = usize::from(v & 0x0f) * 4;
    if v >> 4 != 4 || hlen < 20 || f.len() < at + hlen {
        return;
    }
    f[at + 10] = 0;
    f[at + 11] = 0;
    let mut sum: u32 = f[at..at + hlen]
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(c[1]))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[at + 10..at + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Both checksums right again.
fn fixed(mut f: Vec<u8>, inner: usize) -> Vec<u8> {
    fix_ipv4(&mut f, 14);
    fix_ipv4(&mut f, inner);
    f
}

/// The mutants of one base frame, each with what it is.
fn mutants(b: &Base) -> Vec<(String, TestBuf)> {
    let f = &b.frame;
    let mut out: Vec<(String, TestBuf)> = Vec::new();
    let mut add = |what: String, bytes: Vec<u8>| out.push((what, TestBuf::new(&bytes)));
    // Every byte the fast path reads: up to the end of the inner header.
    let read = if b.v6 { b.inner + 40 } else { 66 };
    for at in 0..f.len().min(read) {
        for x in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff] {
            let mut g = f.clone();
            g[at] ^= x;
            add(format!("byte {at} ^ {x:#04x}"), g.clone());
            add(
                format!("byte {at} ^ {x:#04x}, checksums fixed"),
                fixed(g, b.inner),
            );
        }
    }
    for outer in 0..4u8 {
        for inner in 0..4u8 {
            let mut g = f.clone();
            g[15] = (g[15] & !3) | outer;
            if b.v6 {
                // The traffic class's low bits: bits 4 and 5 of the second byte.
                g[b.inner + 1] = (g[b.inner + 1] & !0x30) | (inner << 4);
            } else {
                g[b.inner + 1] = (g[b.inner + 1] & !3) | inner;
            }
            add(
                format!("ECN outer {outer} inner {inner}"),
                fixed(g, b.inner),
            );
        }
    }
    for ttl in 0..3u8 {
        let mut g = f.clone();
        g[b.inner + if b.v6 { 7 } else { 8 }] = ttl;
        add(format!("inner TTL {ttl}"), fixed(g, b.inner));
    }
    for cut in [
        0,
        13,
        14,
        33,
        34,
        37,
        38,
        41,
        42,
        49,
        50,
        53,
        54,
        61,
        62,
        77,
        78,
        81,
        82,
        f.len() - 1,
    ] {
        if cut < f.len() {
            add(format!("cut to {cut} bytes"), f[..cut].to_vec());
        }
    }
    for pad in [1, 2, 6, 30] {
        let mut g = f.clone();
        g.resize(f.len() + pad, 0);
        add(format!("{pad} bytes of padding"), g);
    }
    for headroom in [0, 8, 20, 24, 42] {
        out.push((
            format!("headroom {headroom}"),
            TestBuf::with_headroom(f, headroom),
        ));
    }
    out.push(("chained".into(), TestBuf::new(f).chained(f.len() + 100)));
    out.push(("shared".into(), TestBuf::new(f).shared()));
    out
}

/// Process one burst on both sides and compare everything either leaves.
fn compare(fast: &mut Side, general: &mut Side, port: PortIndex, burst: &[TestBuf], what: &str) {
    let mut fb = burst.to_vec();
    let mut gb = burst.to_vec();
    let fa = fast.process(port, &mut fb);
    let ga = general.process(port, &mut gb);
    for i in 0..burst.len() {
        assert_eq!(fa[i], ga[i], "{what}: packet {i}'s action");
        assert_eq!(fb[i].data(), gb[i].data(), "{what}: packet {i}'s bytes");
        assert_eq!(
            fb[i].headroom(),
            gb[i].headroom(),
            "{what}: packet {i}'s headroom"
        );
    }
    assert_eq!(
        fast.pipe.counters(),
        general.pipe.counters(),
        "{what}: counters"
    );
    assert_eq!(
        fast.pipe.unresolved().collect::<Vec<_>>(),
        general.pipe.unresolved().collect::<Vec<_>>(),
        "{what}: unresolved neighbours"
    );
}

/// Every base frame and every mutant of it: the same outcome both ways.
#[test]
fn fast_path_and_general_stages_agree_on_every_mutant() {
    let mut fast = Side::new(true);
    let mut general = Side::new(false);
    let mut compared = 0;
    let bases = bases();
    let frames = bases.len();
    for b in bases {
        // The originals first, alone: those the lab forwards are (but for a's, whose
        // sequence number repeats from its second copy on), so that the mutants below sit
        // next to packets that go all the way; the others are not.
        let mut fb = [TestBuf::new(&b.frame)];
        let a = fast.process(b.port, &mut fb)[0];
        assert_eq!(
            matches!(a, Action::Transmit(_)),
            b.forwarded,
            "{}: the original's action ({a:?})",
            b.name
        );
        let mut gb = [TestBuf::new(&b.frame)];
        assert_eq!(general.process(b.port, &mut gb)[0], a, "{}", b.name);
        assert_eq!(fb[0].data(), gb[0].data(), "{}", b.name);
        for (what, m) in mutants(&b) {
            let burst = [TestBuf::new(&b.frame), m, TestBuf::new(&b.frame)];
            let what = format!("{}: {what}", b.name);
            compare(&mut fast, &mut general, b.port, &burst, &what);
            compared += 1;
        }
    }
    // Every mutant of every frame: well over a thousand each.
    assert!(compared > frames * 1000, "{compared} bursts compared");
    // The counters saw traffic of every kind: forwarded and dropped.
    let c = fast.pipe.counters();
    assert!(c.tunnels.iter().map(|t| t.rx.packets).sum::<u64>() > 10_000);
    assert!(c.drops.iter().sum::<u64>() > 1_000);
}

/// A packet in the place of one a tunnel's packet had in the burst before starts afresh:
/// a transit packet that runs out of TTL before any tunnel is known is counted against
/// its port (SPEC.md: per-tunnel drops are those after the tunnel lookup), not against
/// the tunnel whose packet the fast path, or the general stages, took there last.
#[test]
fn a_drop_counts_against_no_tunnel_after_a_tunnels_packet_in_its_place() {
    let b_frame = pkt(&format!(
        "Ether(dst='{MAC_P0}',src='{}')/IP(src='{RB}',dst='{L1}')/GRE()/\
         IP(src='10.2.0.5',dst='10.7.0.9',ttl=64)/UDP(sport=1234,dport=5678)/Raw(b'x'*26)",
        remote_mac(2)
    ));
    let expired = pkt(&format!(
        "Ether(dst='{MAC_P1}',src='{MAC_UPSTREAM}')/IP(src='8.8.8.8',dst='10.2.0.9',ttl=1)/\
         UDP(sport=1234,dport=5678)/Raw(b'x'*26)"
    ));
    for fast in [true, false] {
        let mut side = Side::new(fast);
        let b = side.snap.tunnels().by_name("b").unwrap();
        let first = side.process(CLIENT_PORT, &mut [TestBuf::new(&b_frame)]);
        assert!(
            matches!(first[0], Action::Transmit(_)),
            "fast path {fast}: b's packet {:?}",
            first[0]
        );
        let c = side.pipe.counters();
        assert_eq!(c.tunnels[b.index()].rx.packets, 1, "fast path {fast}");
        let second = side.process(CORE_PORT, &mut [TestBuf::new(&expired)]);
        assert!(
            !matches!(second[0], Action::Transmit(_)),
            "fast path {fast}: TTL 1 {:?}",
            second[0]
        );
        let c = side.pipe.counters();
        assert_eq!(
            c.drops[DropReason::TtlExceeded as usize],
            1,
            "fast path {fast}"
        );
        assert_eq!(
            c.ports[usize::from(CORE_PORT)].drops[DropReason::TtlExceeded as usize],
            1,
            "fast path {fast}: counted against the port"
        );
        assert_eq!(
            c.tunnel_drops[b.index()].get(DropReason::TtlExceeded),
            0,
            "fast path {fast}: not against tunnel b"
        );
    }
}
