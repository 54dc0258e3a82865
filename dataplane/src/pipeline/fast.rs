//! The fast path: stages 1 and 2 ([`super::classify`], [`super::terminate`]) in one pass,
//! and then stages 4 and 5 ([`super::route`], [`super::encap`]), for the packet a tunnel
//! router sees most, and only for it.
//!
//! That packet: an untagged IPv4 frame of 62 bytes or more to the port's MAC, a 20-byte
//! outer header with a good checksum to one of our addresses, not a fragment, from a sane
//! source, no Ethernet padding; IP in IP, or GRE version 0 with no flag but K (and no bit
//! the receiver ignores), carrying IPv4 (0x0800); a tunnel the memo already knows that receives it on this port
//! and wants no sequence numbers; inside, a 20-byte IPv4 header with a good checksum,
//! exactly as long as what the tunnel carried, to an address not ours, from the tunnel's
//! own sources, not the router's keepalive, with a TTL above 1, and an outer and inner ECN
//! pair that RFC 6040 leaves as it is and that no event counts; besides, what route checks
//! on the inner addresses alone: a destination that is neither the tunnel's router nor
//! martian, a source that is not ours.
//!
//! Or the same outer headers around IPv6 in GRE (protocol type 0x86DD, RFC 7676; frames of
//! 82 bytes or more with a key, 78 without), and inside a 40-byte IPv6 header exactly as
//! long as what the tunnel carried, not carrying another tunnel's packet, from the
//! tunnel's own IPv6 sources and not from an invalid or link-local address or its
//! `link6`, to an address
//! that is neither martian, the tunnel's `link6` nor its IPv6 endpoint, with a hop limit
//! above 1 and an ECN pair as above ([`terminate6`]).
//!
//! For such a packet the general stages reach `Ok` with nothing but the tunnel's receive
//! counter moved: the fast path gets there with one read of the frame, fixed offsets
//! within its first 62 bytes (82 for IPv6 inside) and no intermediate results in memory,
//! and does what they do (TTL and its checksum or the hop limit, the counter, the
//! [`Inner`] they fill), all but the strip itself: the outer headers stay in front until
//! [`forward`] replaces them with the egress tunnel's in one move of the buffer's start,
//! or the burst loop trims them for the
//! general stages 4 and 5. Any other packet it leaves untouched
//! (it reads only; making the buffer writable is the first thing the general stages do as
//! well) and the general stages take it from the start, so that every drop, punt, event
//! and counter stays theirs. `dataplane/tests/fast_path.rs` and `fuzz`'s `pipeline_fast`
//! target check the two ways against each other packet by packet; the tests below check
//! what [`terminate`] takes and what it leaves.
//!
//! After the burst's route lookup, [`forward`] does stages 4 and 5 for such a packet when
//! its route leads into another tunnel whose router is neither end of the packet, and that
//! tunnel is the plain kind ([`super::encap::plain4`]: IPv4 endpoints, a known next hop, no
//! sequence numbers, no GRE checksum, room for the packet), writing what the general
//! [`super::encap::encapsulate`] writes with the same helpers and making route's own checks
//! ([`super::route::into_tunnel`], [`super::route::into_tunnel6`] for IPv6 inside); any
//! other packet it leaves as it is, for the general stages 4 and 5 (the same tests compare
//! the two).
//!
//! Both IPv4 header checksums are summed here, in software, even where the NIC could verify
//! received ones (`RTE_ETH_RX_OFFLOAD_IPV4_CKSUM`, which would save the outer sum: 16
//! instructions per packet). What the NIC's verdict (`RTE_MBUF_F_RX_IP_CKSUM_GOOD`) is about
//! depends on the NIC for exactly this traffic: one that parses GRE and IP in IP as tunnels
//! (i40e, ice, mlx5) reports the inner header there, and the outer one only as
//! `RTE_MBUF_F_RX_OUTER_IP_CKSUM_BAD`, without a "good" of its own; one that does not parse
//! them reports the outer header. Trusting the flag would let a corrupt outer header through
//! on the first kind.

use super::counters::Counters;
use super::encap::{self, Sent};
use super::icmp::Back;
use super::terminate::TunnelMemo;
use super::{Ident, Inner};
use crate::buffer::PacketBuf;
use crate::lpm::NextHop;
use crate::tables::tunnel::TunnelHot;
use crate::tables::{PortIndex, Snapshot, Target, TunnelId};
use crate::wire::{checksum, ipv4, ipv6};
use core::net::Ipv4Addr;

/// Ethernet (14) and a 20-byte outer IPv4 header.
const L3: usize = 14;
const L4: usize = L3 + 20;
/// The bytes the fast path reads and writes, at fixed offsets: up to a 20-byte inner header
/// after GRE with a key (8 bytes). A shorter frame goes the general way: IP in IP around
/// fewer than 8 bytes of inner payload, or GRE without a key around fewer than 4.
const WINDOW: usize = L4 + 8 + 20;
/// GRE's K (key present) bit in its first word (RFC 2890).
const GRE_K: u32 = 0x2000_0000;

/// What stays the same over a burst: the port's MAC, as the frame carries it.
#[derive(Clone, Copy)]
pub(crate) struct Port {
    pub index: PortIndex,
    pub mac: [u8; 6],
}

impl Port {
    /// The port's fast-path view, `None` for a port the snapshot does not have (its
    /// packets all go the general way, which drops them).
    #[inline]
    pub(crate) fn of(snap: &Snapshot, index: PortIndex) -> Option<Port> {
        snap.port(index).map(|p| Port {
            index,
            mac: p.mac.0,
        })
    }
}

/// Whether `h` (20 bytes) holds a valid IPv4 header checksum: its ones' complement sum is
/// 0xFFFF (RFC 1071), five 32-bit words summed with end-around carry.
#[inline(always)]
fn header_ok(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    checksum::fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xFFFF
}

/// The IPv4 header checksum after the TTL, above 1, went down by one: RFC 1624's equation
/// 3, `HC' = ~(~HC + ~m + m')`, for the word `m` the TTL shares with the protocol, as the
/// general stages compute it. With `m' = m - 0x0100` (no borrow: the TTL is at least 2),
/// `~m + m'` is 0xFEFF whatever the protocol byte.
#[inline(always)]
fn ttl_decremented(old_checksum: u16) -> u16 {
    !checksum::fold(u64::from(!old_checksum) + 0xFEFF)
}

/// Whether RFC 6040's decapsulation (section 4.2, Figure 4) keeps the inner ECN field as
/// it is, without an event, for these outer and inner fields (the two low bits): outer
/// Not-ECT, inner CE, both the same, or outer ECT(0) over inner ECT(1). Every other pair
/// is a drop, a change or a counted event: the general way.
#[inline(always)]
fn ecn_kept(outer: u8, inner: u8) -> bool {
    outer == 0 || inner == 3 || outer == inner || (outer == 2 && inner == 1)
}

/// Terminate `pkt` on the fast path, as [`super::classify::ingress`] and
/// [`super::terminate::terminate`] would: on `Some((rx_len, at))` (the frame's length as
/// received, and where its inner IP header starts) it is done and `out` filled, but the
/// headers in front of the inner packet are still there: [`forward`] replaces them with the
/// egress tunnel's in one step, and a packet it does not take is trimmed by `at` before the
/// general stages 4 and 5. On `None` nothing was changed and the packet goes the general
/// way.
#[inline(always)]
pub(crate) fn terminate<B: PacketBuf>(
    pkt: &mut B,
    port: Port,
    snap: &Snapshot,
    memo: &TunnelMemo,
    counters: &mut Counters,
    out: &mut Inner,
) -> Option<(usize, usize)> {
    if pkt.chained_len().is_some() {
        return None;
    }
    // Empty for a shared buffer that cannot be copied: too short below.
    let d = pkt.data_mut();
    let rx_len = d.len();
    // One length check: every offset below is a constant within it (no bounds checks).
    let w: &mut [u8; WINDOW] = d.get_mut(..WINDOW)?.try_into().ok()?;
    let outer: &[u8; 20] = w[L3..L4].try_into().ok()?;
    // Ethernet: to us, IPv4. Outer IPv4: version 4, IHL 5, exactly the frame (no padding).
    if w[..6] != port.mac || w[12..14] != [0x08, 0x00] || outer[0] != 0x45 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([outer[2], outer[3]]));
    // Not a fragment: MF clear and offset 0 (DF may be set).
    if total != rx_len - L3 || outer[6] & 0x3f != 0 || outer[7] != 0 || !header_ok(outer) {
        return None;
    }
    let remote = u32::from_be_bytes([outer[12], outer[13], outer[14], outer[15]]);
    let local = u32::from_be_bytes([outer[16], outer[17], outer[18], outer[19]]);
    let outer_ecn = outer[1] & 0b11;
    let protocol = outer[9];
    // GRE's protocol type: IPv4 (0x0800) or IPv6 (0x86DD, RFC 7676).
    let (l3, key, v6) = match protocol {
        4 => (L4, None, false),
        47 => {
            // Flags and version, protocol type: one word. No flag but K, version 0.
            let gre = u32::from_be_bytes([w[L4], w[L4 + 1], w[L4 + 2], w[L4 + 3]]);
            let v6 = match gre & !GRE_K {
                0x0800 => false,
                0x86dd => true,
                _ => return None,
            };
            if gre & GRE_K != 0 {
                let key = [w[L4 + 4], w[L4 + 5], w[L4 + 6], w[L4 + 7]];
                (L4 + 8, Some(u32::from_be_bytes(key)), v6)
            } else {
                (L4 + 4, None, v6)
            }
        }
        _ => return None,
    };
    // What the general stages check first, the tunnel match proves: the destination is
    // ours and the source no martian (only a tunnel with IPv4 endpoints receives, and the
    // snapshot's build refuses one whose `local` is not ours or whose `remote` is martian).
    let (id, t) = memo.hit(snap, local, remote, protocol, key, port.index)?;
    debug_assert!(snap.is_local(local), "{local:#x}: a tunnel's, not ours");
    debug_assert!(!ipv4::is_martian_source(Ipv4Addr::from(remote)));
    if t.has(TunnelHot::SEQUENCE) {
        return None;
    }
    if v6 {
        return terminate6(d, rx_len, l3, outer_ecn, id, t, snap, counters, out);
    }

    // The inner header: 20 bytes, the whole rest of the frame.
    let ip: &[u8; 20] = w.get(l3..l3 + 20)?.try_into().ok()?;
    let inner_total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] != 0x45 || inner_total != rx_len - l3 || !header_ok(ip) {
        return None;
    }
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let ttl = ip[8];
    let tos = ip[1];
    if ttl <= 1
        || !ecn_kept(outer_ecn, tos & 0b11)
        || snap.is_local(dst)
        // The tunnel's link address (0 for none: 0.0.0.0 is martian below anyway).
        || dst == t.link
        // To the tunnel's own router: its keepalive (from our endpoint), or a loop.
        || dst == t.remote
        // What route() then checks on the inner addresses alone, so that forward() need
        // not: a martian destination, and a packet from one of our addresses (a loop),
        // which the ownership test refuses too (the source table marks our addresses).
        || ipv4::is_martian_destination(Ipv4Addr::from(dst))
        || !snap.source_owned_by(src, TunnelId(t.sources))
    {
        return None;
    }
    debug_assert!(!snap.is_local(src));
    let dont_frag = ip[6] & 0x40 != 0;

    // Accepted: what the general stages write. The TTL with its checksum.
    let sum = ttl_decremented(u16::from_be_bytes([ip[10], ip[11]]));
    let ip = w.get_mut(l3..l3 + 20)?;
    ip[8] = ttl - 1;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    if let Some(c) = counters.tunnels.get_mut(id.index()) {
        c.rx.add(rx_len);
    }
    out.ingress_tunnel = Some(id);
    out.back = Back::Tunnel(id);
    out.keepalive = false;
    out.src = src;
    out.dst = dst;
    out.len = inner_total;
    out.tos = tos;
    out.ttl = ttl - 1;
    out.dont_frag = dont_frag;
    out.v6 = false;
    Some((rx_len, l3))
}

/// [`terminate`] for IPv6 inside GRE (protocol type 0x86DD), once the tunnel is known
/// (`id`, `t`) and the inner header starts at `l3` of the frame `d`, as the general
/// stages' IPv6 body would take it: a 40-byte IPv6 header that is exactly what the tunnel
/// carried, not another tunnel's packet (next header 4, 41 or 47 goes the general way),
/// a source that is neither invalid, link-local nor the tunnel's own `link6` and that the
/// tunnel owns, a destination that is neither martian, the tunnel's `link6`, nor its
/// IPv6 endpoint, an ECN pair RFC 6040 leaves as it is, and a hop limit above 1. On
/// `Some` its hop limit is decremented, its tunnel's receive counter moved and `out`
/// filled; on `None` nothing was changed.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn terminate6(
    d: &mut [u8],
    rx_len: usize,
    l3: usize,
    outer_ecn: u8,
    id: TunnelId,
    t: &TunnelHot,
    snap: &Snapshot,
    counters: &mut Counters,
    out: &mut Inner,
) -> Option<(usize, usize)> {
    let ip: &mut [u8; 40] = d.get_mut(l3..l3 + 40)?.try_into().ok()?;
    let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip[0] >> 4 != 6 || total != rx_len - l3 {
        return None;
    }
    let tc = (ip[0] << 4) | (ip[1] >> 4);
    let next = ip[6];
    let hop = ip[7];
    let src = u128::from_be_bytes(ip[8..24].try_into().ok()?);
    let dst = u128::from_be_bytes(ip[24..40].try_into().ok()?);
    if hop <= 1
        || !ecn_kept(outer_ecn, tc & 0b11)
        || matches!(next, 4 | 41 | 47)
        || ipv6::is_invalid_source(src)
        || ipv6::is_link_local(src)
        || (t.link6 != 0 && (dst == t.link6 || src == t.link6))
        // What route6() checks on the inner addresses alone, so that forward() need not.
        || ipv6::is_martian_destination(dst)
        || snap.tunnels().hot6(id).is_some_and(|h| h.remote == dst)
        || snap.source_owner6(src) != Some(TunnelId(t.sources))
    {
        return None;
    }
    ip[7] = hop - 1;
    if let Some(c) = counters.tunnels.get_mut(id.index()) {
        c.rx.add(rx_len);
    }
    out.set_tunnel6(id, src, dst, total, tc, hop - 1);
    Some((rx_len, l3))
}

/// Stages 4 and 5 on the fast path, for a packet [`terminate`] took (`inner` is what it
/// filled, `at` where its inner header starts, `nh` its route): a route into a tunnel
/// that passes route's own checks on it ([`super::route::into_tunnel`]: not the ingress
/// one, its router neither end of the packet; for IPv6 inside
/// [`super::route::into_tunnel6`]: not the ingress one, neither end its IPv6 endpoint, not
/// from its `link6`), and [`encap::plain4`] into that tunnel. The checks
/// [`super::route::route`] and [`super::route::route6`] make on the inner addresses alone
/// (a martian destination; a source of ours, the ingress tunnel's router as destination;
/// for IPv6 the ingress tunnel's `link6` as source, its IPv6 endpoint as destination)
/// [`terminate`] made. On
/// `Some` the packet is sent as the general stages would send it; on `None` nothing was
/// changed (the caller trims the `at` bytes in front and gives it to the general stages 4
/// and 5).
#[inline(always)]
pub(crate) fn forward<B: PacketBuf>(
    pkt: &mut B,
    inner: &Inner,
    at: usize,
    snap: &Snapshot,
    nh: NextHop,
    ident: &mut Ident,
    counters: &mut Counters,
) -> Option<Sent> {
    // NextHop::NONE is no tunnel either.
    let e = if inner.v6 {
        let Target::Tunnel(egress) = snap.target6(nh) else {
            return None;
        };
        (
            super::route::into_tunnel6(snap, inner, egress).ok()?,
            egress,
        )
    } else {
        let Target::Tunnel(egress) = snap.target(nh) else {
            return None;
        };
        (super::route::into_tunnel(snap, inner, egress).ok()?, egress)
    };
    encap::plain4(pkt, at, inner, e.0, e.1, ident, counters)
}

#[cfg(test)]
mod tests {
    use super::{ecn_kept, header_ok, terminate, ttl_decremented, Port};
    use crate::buffer::{PacketBuf, TestBuf};
    use crate::pipeline::counters::Counters;
    use crate::pipeline::icmp::Back;
    use crate::pipeline::terminate::TunnelMemo;
    use crate::pipeline::Inner;
    use crate::tables::{PortEntry, Snapshot, SnapshotBuilder, Tunnel, TunnelMode};
    use crate::wire::{checksum, EthernetAddress, IpProtocol};
    use core::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const LOCAL: [u8; 4] = [192, 0, 2, 1];

    /// RFC 1071, written here on its own: the ones' complement of the ones' complement
    /// sum of the 16-bit words.
    fn rfc1071(h: &[u8]) -> u16 {
        let mut sum: u32 = h
            .chunks(2)
            .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An IPv4 header (no options) with its checksum.
    fn ipv4(total: usize, tos: u8, ttl: u8, proto: u8, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, tos];
        h.extend_from_slice(&(total as u16).to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, ttl, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = rfc1071(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    /// A tunnel frame to us from `remote`: Ethernet, outer IPv4 (protocol 47 when `gre`
    /// is given, else 4), the GRE header, and an inner IPv4 packet from `src` to `dst`
    /// with 26 bytes of payload.
    fn frame(remote: [u8; 4], gre: Option<&[u8]>, src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
        let inner_total = 20 + 26;
        let shim = gre.map_or(0, <[u8]>::len);
        let proto = if gre.is_some() { 47 } else { 4 };
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 0x99, 0x08, 0x00]);
        f.extend(ipv4(20 + shim + inner_total, 0, 64, proto, remote, LOCAL));
        f.extend_from_slice(gre.unwrap_or(&[]));
        f.extend(ipv4(inner_total, 0x28, ttl, 17, src, dst));
        f.extend_from_slice(&[0xab; 26]);
        f
    }

    fn lab() -> Arc<Snapshot> {
        let mut b = SnapshotBuilder::new();
        b.port(
            0,
            PortEntry::client(EthernetAddress(MAC), vec![Ipv4Addr::from(LOCAL)]),
        );
        let tunnel = |name: &str, mode, remote: u8, clients: &str| {
            let mut t = Tunnel::new(
                name,
                mode,
                Ipv4Addr::from(LOCAL),
                Ipv4Addr::new(198, 51, 100, remote),
                0,
            );
            t.prefixes.push(clients.parse().unwrap());
            t
        };
        let mut plain = tunnel("plain", TunnelMode::Gre, 10, "10.1.0.0/16");
        plain.prefixes6.push("2001:db8:1::/48".parse().unwrap());
        plain.link6 = Some("fd00:1::1/127".parse().unwrap());
        b.tunnel(plain);
        let mut keyed = tunnel("keyed", TunnelMode::Gre, 20, "10.2.0.0/16");
        keyed.key = Some(5);
        keyed.prefixes6.push("2001:db8:2::/48".parse().unwrap());
        b.tunnel(keyed);
        b.tunnel(tunnel("ipip", TunnelMode::Ipip, 30, "10.3.0.0/16"));
        let mut seq = tunnel("seq", TunnelMode::Gre, 40, "10.4.0.0/16");
        seq.sequence = true;
        b.tunnel(seq);
        b.build().unwrap()
    }

    /// Run the fast path on `f` with the memo warmed (or not) for its tunnel.
    fn run(
        snap: &Snapshot,
        f: &[u8],
        warm: Option<(u8, Option<u32>)>,
    ) -> (Option<(usize, usize)>, TestBuf, Inner, Counters) {
        let mut memo = TunnelMemo::default();
        if let Some((remote, key)) = warm {
            let proto = if f[23] == 4 {
                IpProtocol::IPIP
            } else {
                IpProtocol::GRE
            };
            let found = memo.lookup(
                snap,
                u32::from_be_bytes(LOCAL),
                u32::from(Ipv4Addr::new(198, 51, 100, remote)),
                proto,
                key,
                0,
            );
            assert!(found.is_some(), "the tunnel exists");
        }
        let mut counters = Counters::default();
        counters.fit(snap.port_slots(), snap.tunnels().slots());
        let mut pkt = TestBuf::new(f);
        let mut out = Inner::default();
        let port = Port::of(snap, 0).unwrap();
        let r = terminate(&mut pkt, port, snap, &memo, &mut counters, &mut out);
        (r, pkt, out, counters)
    }

    /// Keyless GRE, GRE with a key and IP in IP, each from its tunnel's own clients: taken,
    /// and left as the general stages leave it (SPEC.md tunnel termination) once the
    /// headers in front are trimmed: the inner packet, TTL one less with a good checksum,
    /// the tunnel's receive counter.
    /// The rest: left alone, byte for byte.
    #[test]
    fn takes_the_common_packet_and_leaves_the_rest() {
        let snap = lab();
        // (remote's last byte, GRE header, key, inner source, tunnel)
        type Case<'a> = (u8, Option<&'a [u8]>, Option<u32>, [u8; 4], &'a str);
        let cases: [Case; 3] = [
            (10, Some(&[0, 0, 0x08, 0]), None, [10, 1, 0, 5], "plain"),
            (
                20,
                Some(&[0x20, 0, 0x08, 0, 0, 0, 0, 5]),
                Some(5),
                [10, 2, 0, 5],
                "keyed",
            ),
            (30, None, None, [10, 3, 0, 5], "ipip"),
        ];
        for (remote, gre, key, src, name) in cases {
            let f = frame([198, 51, 100, remote], gre, src, [10, 9, 0, 1], 64);
            let l3 = 34 + gre.map_or(0, <[u8]>::len);

            // A memo that has not met the tunnel: the general way (which fills it).
            let (r, pkt, ..) = run(&snap, &f, None);
            assert_eq!(r, None, "{name}: cold memo");
            assert_eq!(pkt.data(), &f[..], "{name}: untouched");

            let (r, pkt, out, counters) = run(&snap, &f, Some((remote, key)));
            assert_eq!(r, Some((f.len(), l3)), "{name}: taken");
            let mut want = f[l3..].to_vec();
            want[8] = 63;
            want[10..12].copy_from_slice(&[0, 0]);
            let c = rfc1071(&want[..20]);
            want[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(
                &pkt.data()[..l3],
                &f[..l3],
                "{name}: the headers, still there"
            );
            assert_eq!(
                &pkt.data()[l3..],
                &want[..],
                "{name}: the inner packet, TTL 63"
            );
            let id = snap.tunnels().by_name(name).unwrap();
            assert_eq!(out.ingress_tunnel, Some(id), "{name}");
            assert_eq!(out.back, Back::Tunnel(id), "{name}");
            assert_eq!(out.src, u32::from_be_bytes(src), "{name}");
            assert_eq!(out.dst, u32::from(Ipv4Addr::new(10, 9, 0, 1)), "{name}");
            assert_eq!((out.len, out.tos, out.ttl), (46, 0x28, 63), "{name}");
            assert!(!out.keepalive && !out.v6, "{name}");
            let rx = counters.tunnels[id.index()].rx;
            assert_eq!((rx.packets, rx.bytes), (1, f.len() as u64), "{name}");

            // Each thing the fast path does not handle: untouched, for the general way.
            let mut others: Vec<(&str, Vec<u8>)> = Vec::new();
            let mut g = f.clone();
            g.extend_from_slice(&[0; 4]);
            others.push(("Ethernet padding", g));
            others.push((
                "TTL 1",
                frame([198, 51, 100, remote], gre, src, [10, 9, 0, 1], 1),
            ));
            others.push((
                "a spoofed source",
                frame(
                    [198, 51, 100, remote],
                    gre,
                    [10, 8, 0, 5],
                    [10, 9, 0, 1],
                    64,
                ),
            ));
            others.push(("to us", frame([198, 51, 100, remote], gre, src, LOCAL, 64)));
            let mut g = f.clone();
            g[l3 + 10] ^= 1;
            others.push(("a bad inner checksum", g));
            let mut g = f.clone();
            g[15] = 0x03; // outer ECN CE over inner ECT(0): inner becomes CE
            g[24..26].copy_from_slice(&[0, 0]);
            let c = rfc1071(&g[14..34]);
            g[24..26].copy_from_slice(&c.to_be_bytes());
            others.push(("an ECN change", g));
            let mut g = f.clone();
            g[0] = 0xff;
            others.push(("another MAC", g));
            for (what, g) in others {
                let (r, pkt, ..) = run(&snap, &g, Some((remote, key)));
                assert_eq!(r, None, "{name}: {what}");
                assert_eq!(pkt.data(), &g[..], "{name}: {what} untouched");
            }
        }

        // A tunnel that checks sequence numbers: the general way, even when known.
        let f = frame(
            [198, 51, 100, 40],
            Some(&[0x10, 0, 0x08, 0, 0, 0, 0, 1]),
            [10, 4, 0, 5],
            [10, 9, 0, 1],
            64,
        );
        let (r, pkt, ..) = run(&snap, &f, Some((40, None)));
        assert_eq!((r, pkt.data()), (None, &f[..]));
    }

    /// A GRE frame to us from `remote` carrying IPv6 (protocol type 0x86DD, RFC 7676):
    /// `gre` is the GRE header's first two bytes and its key, the inner packet a 40-byte
    /// IPv6 header (traffic class 0x28, next header `next`, hop limit `hop`) and 26 bytes
    /// of payload.
    fn frame6(remote: u8, key: Option<u32>, src: &str, dst: &str, next: u8, hop: u8) -> Vec<u8> {
        let mut gre = vec![0, 0, 0x86, 0xdd];
        if let Some(k) = key {
            gre[0] = 0x20;
            gre.extend_from_slice(&k.to_be_bytes());
        }
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 0x99, 0x08, 0x00]);
        let outer_total = 20 + gre.len() + 40 + 26;
        f.extend(ipv4(outer_total, 0, 64, 47, [198, 51, 100, remote], LOCAL));
        f.extend_from_slice(&gre);
        // Version 6, traffic class 0x28, flow label 0.
        f.extend_from_slice(&[0x62, 0x80, 0, 0, 0, 26, next, hop]);
        f.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&[0xab; 26]);
        f
    }

    /// IPv6 inside GRE, keyless and keyed, from the tunnel's own IPv6 clients: taken, with
    /// the hop limit one less (SPEC.md tunnel termination; IPv6 has no header checksum),
    /// `out` as the general stages fill it and the tunnel's receive counter. The rest, each
    /// something the general stages drop, punt, answer or change otherwise: left alone.
    #[test]
    fn takes_ipv6_inside_gre_and_leaves_the_rest() {
        let snap = lab();
        let cases = [
            (10, None, "2001:db8:1::5", "plain"),
            (20, Some(5), "2001:db8:2::5", "keyed"),
        ];
        for (remote, key, src, name) in cases {
            let dst = "2001:db8:9::1";
            let f = frame6(remote, key, src, dst, 17, 64);
            let l3 = 34 + if key.is_some() { 8 } else { 4 };
            let (r, pkt, ..) = run(&snap, &f, None);
            assert_eq!((r, pkt.data()), (None, &f[..]), "{name}: cold memo");

            let (r, pkt, out, counters) = run(&snap, &f, Some((remote, key)));
            assert_eq!(r, Some((f.len(), l3)), "{name}: taken");
            let mut want = f.clone();
            want[l3 + 7] = 63;
            assert_eq!(pkt.data(), &want[..], "{name}: hop limit 63, nothing else");
            let id = snap.tunnels().by_name(name).unwrap();
            assert_eq!(out.ingress_tunnel, Some(id), "{name}");
            assert_eq!(out.back, Back::Tunnel(id), "{name}");
            assert!(out.v6 && out.dont_frag && !out.keepalive, "{name}");
            assert_eq!(out.src6, u128::from(src.parse::<Ipv6Addr>().unwrap()));
            assert_eq!(out.dst6, u128::from(dst.parse::<Ipv6Addr>().unwrap()));
            assert_eq!((out.src, out.dst), (0, 0), "{name}");
            assert_eq!((out.len, out.tos, out.ttl), (66, 0x28, 63), "{name}");
            let rx = counters.tunnels[id.index()].rx;
            assert_eq!((rx.packets, rx.bytes), (1, f.len() as u64), "{name}");

            let mut others: Vec<(&str, Vec<u8>)> = vec![
                ("hop limit 1", frame6(remote, key, src, dst, 17, 1)),
                (
                    "a tunnel inside (41)",
                    frame6(remote, key, src, dst, 41, 64),
                ),
                ("GRE inside", frame6(remote, key, src, dst, 47, 64)),
                (
                    "a source it does not own",
                    frame6(remote, key, "2001:db8:3::5", dst, 17, 64),
                ),
                (
                    "a link-local source",
                    frame6(remote, key, "fe80::5", dst, 17, 64),
                ),
                (
                    "a martian destination",
                    frame6(remote, key, src, "ff02::1", 17, 64),
                ),
            ];
            let mut g = f.clone();
            g[l3] = 0x42;
            others.push(("version 4 in the IPv6 header", g));
            let mut g = f.clone();
            g.extend_from_slice(&[0; 4]);
            let outer_total = (g.len() - 14) as u16;
            g[16..18].copy_from_slice(&outer_total.to_be_bytes());
            g[24..26].copy_from_slice(&[0, 0]);
            let c = rfc1071(&g[14..34]);
            g[24..26].copy_from_slice(&c.to_be_bytes());
            others.push(("4 bytes after the IPv6 packet", g));
            let mut g = f.clone();
            // Outer CE over inner ECT(0): the inner becomes CE.
            g[l3 + 1] = (g[l3 + 1] & !0x30) | 0x20;
            g[15] = 0x03;
            g[24..26].copy_from_slice(&[0, 0]);
            let c = rfc1071(&g[14..34]);
            g[24..26].copy_from_slice(&c.to_be_bytes());
            others.push(("an ECN pair RFC 6040 changes", g));
            if name == "plain" {
                others.push((
                    "to its link6 address",
                    frame6(remote, key, src, "fd00:1::1", 17, 64),
                ));
                others.push((
                    "from its link6 address",
                    frame6(remote, key, "fd00:1::1", dst, 17, 64),
                ));
            }
            for (what, g) in others {
                let (r, pkt, ..) = run(&snap, &g, Some((remote, key)));
                assert_eq!(r, None, "{name}: {what}");
                assert_eq!(pkt.data(), &g[..], "{name}: {what} untouched");
            }
        }
    }

    /// The ECN pairs the fast path keeps are exactly those RFC 6040's Figure 4 leaves
    /// alone with no event: derived here from the figure, not from the code.
    #[test]
    fn ecn_pairs_kept_are_figure_4s_unchanged_ones() {
        // (outer, inner) -> the figure's outcome: None = inner unchanged and not
        // suspicious. Bits: 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.
        for outer in 0u8..4 {
            for inner in 0u8..4 {
                let changed_or_flagged = match (outer, inner) {
                    (3, 0) => true,          // drop
                    (3, 1) | (3, 2) => true, // becomes CE
                    (1, 2) => true,          // becomes ECT(1)
                    (1, 0) | (2, 0) => true, // suspicious (outer ECT over Not-ECT)
                    _ => false,
                };
                assert_eq!(
                    ecn_kept(outer, inner),
                    !changed_or_flagged,
                    "{outer} {inner}"
                );
            }
        }
    }

    /// The TTL's checksum update is RFC 1624's for every checksum, every TTL above 1 and
    /// the protocols of both ends and the middle, and verifies on a real header.
    #[test]
    fn ttl_decrement_is_rfc_1624s() {
        for old in 0..=u16::MAX {
            for ttl in [2u8, 3, 64, 128, 255] {
                for proto in [0u8, 1, 4, 47, 0x80, 255] {
                    let m = u16::from_be_bytes([ttl, proto]);
                    assert_eq!(
                        ttl_decremented(old),
                        checksum::update_u16(old, m, m - 0x0100),
                        "checksum {old:#06x}, TTL {ttl}, protocol {proto}"
                    );
                }
            }
        }
        for ttl in 2..=255u8 {
            let mut h = ipv4(46, 0x28, ttl, 17, [10, 1, 0, 7], [10, 2, 0, 9]);
            let old = u16::from_be_bytes([h[10], h[11]]);
            h[8] = ttl - 1;
            h[10..12].copy_from_slice(&ttl_decremented(old).to_be_bytes());
            assert_eq!(rfc1071(&h), 0, "TTL {ttl}: the new header verifies");
        }
    }

    /// The 20-byte check agrees with RFC 1071's sum over any header, good or bad.
    #[test]
    fn header_check_agrees_with_rfc1071() {
        let mut x = 0x1234_5678u32;
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            for b in &mut h {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            if x & 1 == 0 {
                h[10] = 0;
                h[11] = 0;
                let c = checksum::checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                assert!(header_ok(&h));
            }
            assert_eq!(header_ok(&h), checksum::verify(&h), "{h:?}");
        }
    }
}
