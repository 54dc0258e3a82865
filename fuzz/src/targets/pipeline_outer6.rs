//! The whole pipeline on one packet against a lab of tunnels with IPv6 endpoints
//! (fuzz/lab-outer6.toml): GRE over IPv6 (RFC 7676) plain and with key, sequence numbers
//! and checksum (RFC 2784, RFC 2890), IP in IPv6 (RFC 2473), and one GRE tunnel over IPv4.
//!
//! Input: one control byte (bit 0: the port, bit 7: a small headroom, as `pipeline_packet`:
//! `backbone_fuzz::decode_control`), then the frame.
//!
//! The oracle reads the lab from its own table ([`TUNNELS`], the file restated), never from
//! the snapshot, and the bytes by offset:
//!
//! - a frame sent into a tunnel with IPv6 endpoints is Ethernet type 0x86DD from the
//!   tunnel's port's MAC to its next hop's; version 6, payload length the frame less 54,
//!   next header 47 on GRE tunnels, 4 (IPv4 inside) or 41 (IPv6 inside) on IP in IPv6;
//!   from the tunnel's local to its remote; GRE flags exactly the tunnel's (C, K, S;
//!   version 0, reserved bits 0), its key, a GRE checksum that verifies (RFC 2784 2.5); the
//!   inner packet whole, its destination routed (longest prefix) into that tunnel, and the
//!   outer packet within the tunnel's MTU;
//! - a frame sent into the IPv4 tunnel is Ethernet type 0x0800 to its next hop, from its
//!   local to its remote, GRE with its key; a keepalive (RFC 2784 users' Cisco form:
//!   inner IPv4 from our end to theirs) leaves natively to the next hop;
//! - whatever is forwarded from a packet addressed to one of our addresses was terminated:
//!   it arrived on the port of a tunnel whose local it was addressed to, from that tunnel's
//!   remote, with the tunnel's protocol (GRE 47, or 4/41) and GRE key, with no extension
//!   header before it (RFC 7676 3.1 / RFC 2473 termination on the tunnel header itself), and
//!   its inner source is one of the tunnel's prefixes (BCP 38); the packet forwarded is that
//!   inner packet (same source and destination);
//! - every verdict is counted: exactly the named drop, punt or transmit, and received =
//!   transmitted + dropped + punted (`backbone_fuzz::check_burst_counters`).

use crate::{be16, be32, check_burst_counters, decode_packet, ipv4_cut, rfc1071_ok};
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::config::builder_from_config;
use dataplane::pipeline::{Action, Counters, DropReason, Pipeline};
use dataplane::tables::{PortIndex, Snapshot};
use dataplane::wire::EthernetAddress;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// The lab file.
pub const LAB_OUTER6_TOML: &str = include_str!("../../lab-outer6.toml");

/// A port of the lab, as the file gives it.
struct Port {
    mac: [u8; 6],
    addrs: &'static [&'static str],
}

const PORTS: [Port; 2] = [
    Port {
        mac: [2, 0, 0, 0, 0, 1],
        addrs: &["192.0.2.1", "2001:db8:a::1"],
    },
    Port {
        mac: [2, 0, 0, 0, 1, 1],
        addrs: &["203.0.113.1", "2001:db8:c::1"],
    },
];

/// A tunnel of the lab, as the file gives it.
struct Tunnel {
    gre: bool,
    local: &'static str,
    remote: &'static str,
    port: PortIndex,
    key: Option<u32>,
    sequence: bool,
    checksum: bool,
    mtu: usize,
    /// The next hop's MAC (the static neighbour of `remote`).
    mac: [u8; 6],
    prefixes: &'static [&'static str],
    link6: &'static str,
}

/// fuzz/lab-outer6.toml restated.
const TUNNELS: [Tunnel; 4] = [
    Tunnel {
        gre: true,
        local: "2001:db8:a::1",
        remote: "2001:db8:b::10",
        port: 0,
        key: None,
        sequence: false,
        checksum: false,
        mtu: 1500,
        mac: [2, 0, 0, 0, 0xbb, 0x10],
        prefixes: &["10.1.0.0/16", "2001:db8:1::/48"],
        link6: "fd00:1::1/127",
    },
    Tunnel {
        gre: true,
        local: "2001:db8:a::1",
        remote: "2001:db8:b::20",
        port: 0,
        key: Some(600),
        sequence: true,
        checksum: true,
        mtu: 1400,
        mac: [2, 0, 0, 0, 0xbb, 0x20],
        prefixes: &["10.2.0.0/16", "2001:db8:2::/48"],
        link6: "fd00:2::1/127",
    },
    Tunnel {
        gre: false,
        local: "2001:db8:a::1",
        remote: "2001:db8:b::30",
        port: 0,
        key: None,
        sequence: false,
        checksum: false,
        mtu: 1500,
        mac: [2, 0, 0, 0, 0xbb, 0x30],
        prefixes: &["10.3.0.0/16", "2001:db8:3::/48"],
        link6: "fd00:3::1/127",
    },
    Tunnel {
        gre: true,
        local: "203.0.113.1",
        remote: "203.0.113.4",
        port: 1,
        key: Some(4),
        sequence: false,
        checksum: false,
        mtu: 1500,
        mac: [2, 0, 0, 0, 0xcc, 0x04],
        prefixes: &["10.4.0.0/16", "2001:db8:4::/48"],
        link6: "fd00:4::1/127",
    },
];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a lab address")
}

/// An address as bytes (4 or 16).
fn octets(s: &str) -> Vec<u8> {
    match ip(s) {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Whether `addr` (4 or 16 bytes) is in the prefix `p` ("a/len"); `Some(len)` if so.
fn prefix_len_of(p: &str, addr: &[u8]) -> Option<u8> {
    let (net, len) = p.split_once('/').expect("a lab prefix");
    let net = octets(net);
    let len: u8 = len.parse().expect("a prefix length");
    if net.len() != addr.len() {
        return None;
    }
    let (whole, bits) = (usize::from(len / 8), len % 8);
    let mask = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    let inside =
        net[..whole] == addr[..whole] && (bits == 0 || (net[whole] ^ addr[whole]) & mask == 0);
    inside.then_some(len)
}

/// The tunnel the longest prefix holding `dst` routes into (the lab has no other routes).
fn lpm(dst: &[u8]) -> Option<usize> {
    TUNNELS
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.prefixes.iter().map(move |p| (i, *p)))
        .filter_map(|(i, p)| prefix_len_of(p, dst).map(|l| (l, i)))
        .max()
        .map(|(_, i)| i)
}

/// Whether `src` is an accepted inner source of tunnel `t`: its prefixes and its `link6`
/// prefix (CONFIG.md `link6`).
fn source_of(t: &Tunnel, src: &[u8]) -> bool {
    t.prefixes
        .iter()
        .chain(std::iter::once(&t.link6))
        .any(|p| prefix_len_of(p, src).is_some())
}

/// Whether `dst` is one of our addresses (a port's, a tunnel's `link6`).
fn ours(dst: &[u8]) -> bool {
    PORTS
        .iter()
        .flat_map(|p| p.addrs.iter())
        .any(|a| octets(a) == dst)
        || TUNNELS
            .iter()
            .any(|t| octets(t.link6.split_once('/').unwrap().0) == dst)
}

/// The inner packet's source and destination (IPv4 or IPv6 by its version), if it has a
/// whole fixed header.
fn inner_ends(inner: &[u8]) -> Option<(&[u8], &[u8])> {
    match inner.first()? >> 4 {
        4 if inner.len() >= 20 => Some((&inner[12..16], &inner[16..20])),
        6 if inner.len() >= 40 => Some((&inner[8..24], &inner[24..40])),
        _ => None,
    }
}

/// The outer IP header of a frame.
struct Outer<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    /// The protocol (IPv4) or the first next header (IPv6).
    proto: u8,
    /// What follows the fixed header (IPv6: no extension header taken), within its length.
    payload: &'a [u8],
}

/// The outer IP header of a frame of Ethernet type 0x0800 or 0x86DD.
fn outer(frame: &[u8]) -> Option<Outer<'_>> {
    if frame.len() < 14 {
        return None;
    }
    let l3 = &frame[14..];
    match be16(frame, 12) {
        0x0800 => {
            let ip = ipv4_cut(l3)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            Some(Outer {
                src: &ip[12..16],
                dst: &ip[16..20],
                proto: ip[9],
                payload: &ip[ihl..],
            })
        }
        0x86DD if l3.len() >= 40 && l3[0] >> 4 == 6 => {
            let end = (40 + usize::from(be16(l3, 4))).min(l3.len());
            Some(Outer {
                src: &l3[8..24],
                dst: &l3[24..40],
                proto: l3[6],
                payload: &l3[40..end],
            })
        }
        _ => None,
    }
}

/// The tunnel a packet to us arriving on `port` terminates in, by the RFCs' demultiplexing
/// (outer addresses, protocol, GRE key), and the inner packet.
fn ingress(port: PortIndex, frame: &[u8]) -> Option<(usize, &[u8])> {
    let Outer {
        src,
        dst,
        proto,
        payload,
    } = outer(frame)?;
    let (key, inner) = match proto {
        47 => {
            if payload.len() < 4 {
                return None;
            }
            let flags = be16(payload, 0);
            let (c, k, s) = (
                flags & 0x8000 != 0,
                flags & 0x2000 != 0,
                flags & 0x1000 != 0,
            );
            let hlen = 4 + 4 * (usize::from(c) + usize::from(k) + usize::from(s));
            if payload.len() < hlen {
                return None;
            }
            (
                k.then(|| be32(payload, 4 + 4 * usize::from(c))),
                &payload[hlen..],
            )
        }
        4 | 41 => (None, payload),
        _ => return None,
    };
    TUNNELS
        .iter()
        .position(|t| {
            t.port == port
                && octets(t.local) == dst
                && octets(t.remote) == src
                && t.gre == (proto == 47)
                && t.key == key
        })
        .map(|i| (i, inner))
}

/// A new snapshot of the lab (fuzz/lab-outer6.toml), ports with the file's MACs.
pub fn snapshot() -> Arc<Snapshot> {
    static LAB: OnceLock<pipeline_config::ValidatedConfig> = OnceLock::new();
    let cfg = LAB.get_or_init(|| {
        pipeline_config::parse(LAB_OUTER6_TOML, "fuzz/lab-outer6.toml").expect("the lab is valid")
    });
    let ports: Vec<_> = PORTS
        .iter()
        .enumerate()
        .map(|(i, p)| (i as PortIndex, EthernetAddress(p.mac)))
        .collect();
    builder_from_config(cfg, &ports)
        .build()
        .expect("the lab builds")
}

/// The snapshot for `frame` arriving on `port`, as if new: it is rebuilt after any input
/// that may have moved a tunnel's GRE sequence state (one that names a tunnel with
/// `sequence`, as `backbone_fuzz::snapshot_for` judges it), so that every input's verdict
/// depends on it alone.
fn snapshot_for(port: PortIndex, frame: &[u8]) -> Arc<Snapshot> {
    thread_local! {
        static CACHE: RefCell<Option<(Arc<Snapshot>, bool)>> = const { RefCell::new(None) };
    }
    let dirty = ingress(port, frame).is_some_and(|(i, _)| TUNNELS[i].sequence);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let snap = match c.take() {
            Some((s, false)) => s,
            _ => snapshot(),
        };
        *c = Some((Arc::clone(&snap), dirty));
        snap
    })
}

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    let Some(pkt) = decode_packet(data) else {
        return;
    };
    let snap = snapshot_for(pkt.port, pkt.frame);
    let mut pipe = Pipeline::new(0x1000);
    let mut bufs = [TestBuf::with_headroom(pkt.frame, pkt.headroom)];
    let mut actions = [Action::Drop(DropReason::Runt)];
    let before = pipe.counters().clone();
    pipe.process(&snap, pkt.port, &mut bufs, &mut actions);
    let after = pipe.counters();
    check_burst_counters(pkt.port, &actions, &before, after);
    match actions[0] {
        Action::Drop(r) => check_one_drop(r, &before, after),
        Action::Transmit(p) => check_transmit(pkt.port, pkt.frame, p, bufs[0].data()),
        Action::Reply { port: p, .. } => check_reply(pkt.port, pkt.frame, p, bufs[0].data()),
        // Punts, answers and ICMP errors: counted above; their contents are
        // pipeline_packet's to check.
        _ => {}
    }
}

/// Exactly the named drop reason went up, by one.
fn check_one_drop(r: DropReason, before: &Counters, after: &Counters) {
    for x in DropReason::ALL {
        let want = before.drop_count(*x) + u64::from(*x == r);
        assert_eq!(after.drop_count(*x), want, "drop {r:?}: counter {x:?}");
    }
}

fn check_transmit(port_in: PortIndex, input: &[u8], p: PortIndex, out: &[u8]) {
    let port = PORTS.get(usize::from(p)).expect("sent out of a lab port");
    assert!(out.len() >= 14, "a frame of {} bytes", out.len());
    assert_eq!(out[6..12], port.mac, "from the port's MAC");
    // What was terminated, and what it carried.
    let in_dst = outer(input)
        .expect("a forwarded frame held an IP packet")
        .dst;
    let from_tunnel = ingress(port_in, input);
    let forwarded_inner = if ours(in_dst) {
        let (i, inner) = from_tunnel.expect("forwarded from an address of ours: terminated");
        let t = &TUNNELS[i];
        assert!(
            PORTS[usize::from(port_in)]
                .addrs
                .iter()
                .any(|a| octets(a) == in_dst),
            "terminated from an address of the arrival port"
        );
        let (src, dst) = inner_ends(inner).expect("a terminated inner packet has a header");
        if octets(t.local).len() == 4 && src == octets(t.local) && dst == octets(t.remote) {
            // A keepalive: back to the router natively (CONFIG.md "Keepalives").
            assert_eq!(p, t.port, "a keepalive leaves by its tunnel's port");
            assert_eq!(
                out[0..6],
                t.mac,
                "a keepalive goes to the tunnel's next hop"
            );
            assert_eq!(be16(out, 12), 0x0800, "a keepalive is IPv4");
            assert_eq!(
                inner_ends(&out[14..]),
                Some((src, dst)),
                "a keepalive goes back as it came"
            );
            return;
        }
        assert!(
            source_of(t, src),
            "inner source outside the tunnel's (BCP 38)"
        );
        inner
    } else {
        // Native: what is forwarded is the packet itself.
        &input[14..]
    };
    let (t, inner_out) = check_outer(p, out);
    let (want_src, want_dst) =
        inner_ends(forwarded_inner).expect("a forwarded packet has a header");
    let (src, dst) = inner_ends(inner_out).expect("the packet sent has a header");
    assert_eq!(
        (src, dst),
        (want_src, want_dst),
        "the packet forwarded is the one received"
    );
    assert_eq!(lpm(dst), Some(t), "the destination routes into the tunnel");
    if let Some((i, _)) = from_tunnel {
        assert_ne!(i, t, "never back into the tunnel it came through");
    }
}

/// An ICMP or ICMPv6 error about a packet that came through a tunnel goes back into that
/// tunnel (its outer headers as any other frame into it), to an accepted source of it.
fn check_reply(port_in: PortIndex, input: &[u8], p: PortIndex, out: &[u8]) {
    let Some((i, _)) = ingress(port_in, input) else {
        // About a packet that came natively: not a frame into a tunnel.
        return;
    };
    assert!(out.len() >= 14, "an error of {} bytes", out.len());
    assert_eq!(out[6..12], PORTS[usize::from(p)].mac, "from the port's MAC");
    let (t, inner) = check_outer(p, out);
    assert_eq!(
        t, i,
        "an error goes back into the tunnel the packet came through"
    );
    let (_, dst) = inner_ends(inner).expect("an error has a header");
    assert!(
        source_of(&TUNNELS[t], dst),
        "an error to a source of the tunnel"
    );
}

/// The frame `out` sent from port `p` into a tunnel: the outer headers as the RFCs and the
/// tunnel's configuration give them. Returns the tunnel and the inner packet.
fn check_outer(p: PortIndex, out: &[u8]) -> (usize, &[u8]) {
    let o = &out[14..];
    let (src, dst, proto, payload) = match be16(out, 12) {
        0x86DD => {
            assert!(o.len() >= 40, "a whole IPv6 header");
            assert_eq!(o[0] >> 4, 6, "outer version 6");
            assert_eq!(
                usize::from(be16(o, 4)),
                out.len() - 54,
                "payload length = frame - 54"
            );
            (&o[8..24], &o[24..40], o[6], &o[40..])
        }
        0x0800 => {
            let ip = ipv4_cut(o).expect("a valid outer IPv4 header");
            assert_eq!(ip.len(), o.len(), "outer total length = frame - 14");
            assert_eq!(ip[0], 0x45, "an outer IPv4 header without options");
            assert!(rfc1071_ok(&ip[..20]), "outer IPv4 header checksum");
            (&ip[12..16], &ip[16..20], ip[9], &ip[20..])
        }
        other => panic!("a frame of Ethernet type {other:#06x} sent"),
    };
    let t = TUNNELS
        .iter()
        .position(|t| octets(t.remote) == dst)
        .expect("sent only into tunnels (the lab has no native routes)");
    let tun = &TUNNELS[t];
    assert_eq!(src, octets(tun.local), "from the tunnel's local");
    assert_eq!(p, tun.port, "out of the tunnel's port");
    assert_eq!(out[0..6], tun.mac, "to the tunnel's next hop");
    assert!(out.len() - 14 <= tun.mtu, "within the tunnel's MTU");
    let (inner, version) = if tun.gre {
        assert_eq!(proto, 47, "GRE");
        assert!(payload.len() >= 4, "a whole GRE header");
        let flags = be16(payload, 0);
        let want = if tun.checksum { 0x8000 } else { 0 }
            | if tun.key.is_some() { 0x2000 } else { 0 }
            | if tun.sequence { 0x1000 } else { 0 };
        assert_eq!(flags, want, "GRE flags exactly the tunnel's, version 0");
        let c = usize::from(tun.checksum);
        let hlen = 4 + 4 * (c + usize::from(tun.key.is_some()) + usize::from(tun.sequence));
        assert!(payload.len() >= hlen, "a whole GRE header");
        if let Some(k) = tun.key {
            assert_eq!(be32(payload, 4 + 4 * c), k, "the tunnel's key");
        }
        if tun.checksum {
            assert!(rfc1071_ok(payload), "GRE checksum (RFC 2784 2.5)");
        }
        let version = match be16(payload, 2) {
            0x0800 => 4,
            0x86DD => 6,
            other => panic!("GRE protocol type {other:#06x}"),
        };
        (&payload[hlen..], version)
    } else {
        let version = match proto {
            4 => 4,
            41 => 6,
            other => panic!("IP in IPv6 with next header {other}"),
        };
        (payload, version)
    };
    assert_eq!(
        inner.first().map(|b| b >> 4),
        Some(version),
        "the inner version the outer header names"
    );
    let whole = if version == 4 {
        ipv4_cut(inner).map(<[u8]>::len)
    } else {
        (inner.len() >= 40).then(|| 40 + usize::from(be16(inner, 4)))
    };
    assert_eq!(
        whole,
        Some(inner.len()),
        "the inner packet whole, nothing after it"
    );
    (t, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipeline's action on a seed, the seed, and the frame after.
    fn act(seed: &str) -> (Action, Vec<u8>, Vec<u8>) {
        let path = format!(
            "{}/seeds/pipeline_outer6/{seed}",
            env!("CARGO_MANIFEST_DIR")
        );
        let data = std::fs::read(path).unwrap();
        let pkt = decode_packet(&data).unwrap();
        let mut bufs = [TestBuf::new(pkt.frame)];
        let mut actions = [Action::Drop(DropReason::Runt)];
        Pipeline::new(1).process(&snapshot(), pkt.port, &mut bufs, &mut actions);
        (actions[0], data, bufs[0].data().to_vec())
    }

    /// The pipeline's output for a seed that is forwarded, and the port it went out of.
    fn sent(seed: &str) -> (PortIndex, Vec<u8>, Vec<u8>) {
        let (a, data, out) = act(seed);
        let Action::Transmit(p) = a else {
            panic!("{seed}: {a:?}");
        };
        (p, data, out)
    }

    /// An ICMPv6 error back into i6: a wrong outer destination or an inner destination
    /// outside i6's sources is caught.
    #[test]
    fn the_oracle_catches_a_misdirected_error() {
        let (a, input, out) = act("reply-ttl-i6-ipv6");
        let Action::Reply { port: p, .. } = a else {
            panic!("{a:?}");
        };
        let pkt = decode_packet(&input).unwrap();
        check_reply(pkt.port, pkt.frame, p, &out);
        // (offset, XOR, what): the outer destination (i6's remote), the ICMPv6 message's
        // destination 2001:db8:3::5 made 2001:db8:2::5 (k6's).
        for (at, xor, what) in [(14 + 24 + 15, 0x10, "outer"), (54 + 24 + 5, 0x01, "inner")] {
            let mut bad = out.clone();
            bad[at] ^= xor;
            let caught = std::panic::catch_unwind(|| check_reply(pkt.port, pkt.frame, p, &bad));
            assert!(caught.is_err(), "{what} destination changed, not caught");
        }
    }

    /// Every check can fail: each one-byte change of a good frame (into k6: key, sequence,
    /// checksum; into i6: next header 4) that the RFCs forbid is caught.
    #[test]
    fn the_oracle_catches_a_wrong_byte() {
        // (seed, offset in the output frame, what to XOR there, what the change is)
        let cases: &[(&str, usize, u8, &str)] = &[
            ("fwd-v4-ipv4", 12, 0x01, "Ethernet type"),
            ("fwd-v4-ipv4", 0, 0x01, "next hop MAC"),
            ("fwd-v4-ipv4", 6, 0x01, "source MAC"),
            ("fwd-v4-ipv4", 14, 0x20, "outer version"),
            ("fwd-v4-ipv4", 19, 0x01, "payload length"),
            ("fwd-v4-ipv4", 20, 0x01, "next header 4 into IP in IPv6"),
            ("fwd-v4-ipv4", 14 + 8 + 15, 0x01, "outer source"),
            ("fwd-v4-ipv4", 14 + 24 + 15, 0x01, "outer destination"),
            ("fwd-v4-ipv4", 54 + 19, 0x01, "inner destination"),
            ("fwd-v4-ipv6", 54, 0x01, "GRE flags (reserved bit)"),
            ("fwd-v4-ipv6", 54, 0x20, "GRE flags (no key)"),
            ("fwd-v4-ipv6", 54 + 8 + 3, 0x01, "GRE key"),
            (
                "fwd-v4-ipv6",
                54 + 12,
                0x01,
                "GRE sequence (checksum then fails)",
            ),
            ("fwd-v4-ipv6", 54 + 3, 0xff, "GRE protocol type"),
            ("fwd-i6-ipv4", 0, 0x01, "next hop MAC into IPv4"),
            ("fwd-i6-ipv4", 14 + 19, 0x01, "outer IPv4 destination"),
        ];
        for (seed, at, xor, what) in cases {
            let (p, input, mut out) = sent(seed);
            let pkt = decode_packet(&input).unwrap();
            check_transmit(pkt.port, pkt.frame, p, &out);
            out[*at] ^= xor;
            let caught = std::panic::catch_unwind(|| {
                check_transmit(pkt.port, pkt.frame, p, &out);
            });
            assert!(caught.is_err(), "{seed}: {what} changed, not caught");
        }
        // And of the input, as if the pipeline had sent the same frame on from it.
        let cases: &[(&str, usize, u8, &str)] = &[
            (
                "fwd-g6-ipv4",
                14 + 40 + 4 + 13,
                0x03,
                "inner source 10.2/16 (BCP 38)",
            ),
            ("fwd-k6-ipv4", 14 + 40 + 4 + 4 + 3, 0x01, "GRE key 601"),
            ("fwd-i6-ipv4", 14 + 6, 0x0d, "next header 41"),
            (
                "fwd-i6-ipv4",
                14 + 8 + 15,
                0x01,
                "outer source: no tunnel's remote",
            ),
        ];
        for (seed, at, xor, what) in cases {
            let (p, mut input, out) = sent(seed);
            input[1 + at] ^= xor;
            let pkt = decode_packet(&input).unwrap();
            let caught = std::panic::catch_unwind(|| {
                check_transmit(pkt.port, pkt.frame, p, &out);
            });
            assert!(caught.is_err(), "{seed}: {what} in the input, not caught");
        }
    }
}
