//! Encapsulation and the Ethernet rewrite (SPEC.md "Encapsulation"). The packet starts at
//! the inner IPv4 header; new headers are prepended into headroom, the payload never moves.

use super::action::DropReason;
use super::counters::Counters;
use super::icmp::IcmpError;
use super::{Inner, Verdict};
use crate::buffer::PacketBuf;
use crate::tables::tunnel::{TunnelHot, TunnelState};
use crate::tables::{PortIndex, Snapshot, TunnelId};
use crate::wire::{checksum, ethernet, gre, EtherType, EthernetAddress, IcmpErrorRepr, IpProtocol};

/// The drop for a packet over the path MTU: with DF set, answered with Fragmentation
/// Needed carrying the MTU the sender must fit (RFC 1191); without DF we would fragment
/// the inner packet (RFC 4459 section 3.4), which does not exist yet: a plain drop.
#[inline]
fn too_big(inner: &Inner, mtu: usize) -> Verdict {
    if inner.dont_frag {
        Verdict::Icmp(IcmpError {
            repr: IcmpErrorRepr::FragmentationNeeded {
                mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
            },
            reason: DropReason::MtuExceeded,
            back: inner.back,
        })
    } else {
        Verdict::Drop(DropReason::MtuExceeded)
    }
}

/// Write an Ethernet header into `h` (14 bytes).
#[inline]
fn write_ethernet(h: &mut [u8], src: EthernetAddress, dst: EthernetAddress, t: EtherType) {
    h[0..6].copy_from_slice(&dst.0);
    h[6..12].copy_from_slice(&src.0);
    h[12..14].copy_from_slice(&t.0.to_be_bytes());
}

/// What an encapsulation sent: the port the frame leaves by and the frame's length. A
/// pair of plain integers, returned in registers: an `Action` here made every forwarded
/// packet pay a store-forwarding stall where the caller read it back.
pub(crate) type Sent = (PortIndex, usize);

/// Send the inner packet natively out of `port`. On `Ok`, also the frame's length.
#[inline]
pub(crate) fn native<B: PacketBuf>(
    pkt: &mut B,
    inner: &Inner,
    port: PortIndex,
    src_mac: EthernetAddress,
    dst_mac: Option<EthernetAddress>,
    mtu: u16,
) -> Result<Sent, Verdict> {
    if inner.len > usize::from(mtu) {
        return Err(too_big(inner, usize::from(mtu)));
    }
    let Some(dst) = dst_mac else {
        return Err(Verdict::Drop(DropReason::NoNeighbor));
    };
    let Ok(h) = pkt.prepend(ethernet::HEADER_LEN) else {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    };
    // Native IPv6: transit by an IPv6 port route, our echo replies and ICMPv6 errors.
    let ethertype = if inner.v6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    write_ethernet(h, src_mac, dst, ethertype);
    Ok((port, inner.len + ethernet::HEADER_LEN))
}

/// Encapsulate the inner packet into tunnel `id` and rewrite Ethernet. On `Ok`, also the
/// frame's length.
///
/// The tunnel's header, precomputed when the snapshot was built ([`TunnelHot`]), is copied
/// into the headroom at once; then the outer IPv4 fields that follow the packet (TOS,
/// length, identification, DF, TTL when inherited) and its checksum, folded from the
/// header's precomputed partial sum, and the GRE sequence number and checksum where the
/// tunnel has them.
///
/// A tunnel with IPv6 endpoints never has [`TunnelHot::NEIGHBOR`] set: the IPv4 body stops
/// at that check with `no_neighbor`, and only then is the IPv6 encapsulation tried, so that
/// the IPv4 body is the same code as it was before IPv6 endpoints existed.
#[inline]
pub(crate) fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    inner: &Inner,
    snap: &Snapshot,
    id: TunnelId,
    ident: &mut super::Ident,
    counters: &mut Counters,
) -> Result<Sent, Verdict> {
    match encapsulate4(pkt, inner, snap, id, ident, counters) {
        Err(Verdict::Drop(DropReason::NoNeighbor)) => encapsulate6(pkt, inner, snap, id, counters),
        r => r,
    }
}

/// [`encapsulate`] over IPv4.
#[inline]
fn encapsulate4<B: PacketBuf>(
    pkt: &mut B,
    inner: &Inner,
    snap: &Snapshot,
    id: TunnelId,
    ident: &mut super::Ident,
    counters: &mut Counters,
) -> Result<Sent, Verdict> {
    let Some(t) = snap.tunnels().hot(id).filter(|t| t.has(TunnelHot::VALID)) else {
        return Err(Verdict::Drop(DropReason::NoRoute));
    };
    let inner_len = inner.len;
    let headers = usize::from(t.header_len);
    let gre_len = headers - ethernet::HEADER_LEN - IPV4_LEN;
    let outer_len = inner_len + IPV4_LEN + gre_len;
    if outer_len > usize::from(t.mtu) {
        // The sender must fit the tunnel's inner MTU.
        return Err(too_big(inner, t.inner_mtu()));
    }
    if !t.has(TunnelHot::NEIGHBOR) {
        return Err(Verdict::Drop(DropReason::NoNeighbor));
    }
    let state = tx_state(t, snap, id)?;
    let Ok(h) = pkt.prepend(headers) else {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    };
    // Taken only for a packet that leaves: the numbers the peer sees have no gaps.
    let seq = state.map_or(0, |s| s.next_tx_sequence());
    copy_header(h, &t.header);

    let protocol = inner_protocol(h, t, inner);
    outer4(h, t, inner, outer_len, protocol, ident);
    if t.has(TunnelHot::SEQUENCE) {
        h[headers - 4..headers].copy_from_slice(&seq.to_be_bytes());
    }
    if t.has(TunnelHot::CHECKSUM) {
        // Over the GRE header and the payload.
        let data = pkt.data_mut();
        gre::GrePacket::new_unchecked(&mut data[ethernet::HEADER_LEN + IPV4_LEN..]).fill_checksum();
    }
    let frame_len = ethernet::HEADER_LEN + outer_len;
    if let Some(c) = counters.tunnels.get_mut(id.index()) {
        c.tx.add(frame_len);
    }
    Ok((t.port, frame_len))
}

/// The outer IPv4 header's protocol for `inner` in tunnel `t`, whose header template `h`
/// holds (Ethernet first): the template's for IPv4 inside; for IPv6 inside protocol 41 on
/// an IPIP tunnel (RFC 4213), and on a GRE tunnel the template's 47 with the GRE protocol
/// type in `h` set to 0x86DD (RFC 7676).
#[inline(always)]
fn inner_protocol(h: &mut [u8], t: &TunnelHot, inner: &Inner) -> u8 {
    let protocol = t.header[23];
    if !inner.v6 {
        return protocol;
    }
    if protocol == IpProtocol::IPIP.0 {
        return IpProtocol::IPV6.0;
    }
    // Always there: a GRE tunnel's header has 4 bytes of GRE at least.
    let at = ethernet::HEADER_LEN + IPV4_LEN + 2;
    if let Some(p) = h.get_mut(at..at + 2) {
        p.copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
    }
    protocol
}

/// Fill the outer IPv4 header in `h` (Ethernet first, the template copied) with the
/// words that follow the packet, and its checksum folded from the header's precomputed
/// partial sum: 0 version, IHL and TOS (RFC 2983 DSCP, RFC 6040 normal mode: the inner
/// ECN), 1 total length, 2 identification, 3 flags (DF), 4 TTL and `protocol`.
#[inline(always)]
fn outer4(
    h: &mut [u8],
    t: &TunnelHot,
    inner: &Inner,
    outer_len: usize,
    protocol: u8,
    ident: &mut super::Ident,
) {
    let tos = outer_tos(t, inner);
    // DF (0x4000): the inner packet's, or always (`df_set`).
    let df = u16::from(u8::from(inner.dont_frag) | t.df_set) << 14;
    let ttl = outer_ttl(t, inner);
    let words = [
        0x4500 | u16::from(tos),
        outer_len as u16,
        ident.next_ident(),
        df,
        (u16::from(ttl) << 8) | u16::from(protocol),
    ];
    let mut sum = u64::from(t.partial);
    for w in words {
        sum += u64::from(w);
    }
    let csum = !checksum::fold(sum);
    // As a fixed-size array, so that the writes below need no bounds checks. `h` always
    // holds it: every IPv4 tunnel's header has Ethernet and IPv4 at least (34 bytes).
    debug_assert!(
        h.len() >= ethernet::HEADER_LEN + IPV4_LEN,
        "{} bytes",
        h.len()
    );
    let Some(ip) = h
        .get_mut(ethernet::HEADER_LEN..ethernet::HEADER_LEN + IPV4_LEN)
        .and_then(|ip| <&mut [u8; IPV4_LEN]>::try_from(ip).ok())
    else {
        return;
    };
    for (i, w) in words.iter().enumerate() {
        ip[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
}

/// [`encapsulate`] for the tunnel most packets leave by: IPv4 endpoints with a known next
/// hop, no sequence numbers, no GRE checksum, a packet inside that fits (IPv4, or IPv6
/// as protocol type 0x86DD in GRE and protocol 41 in IP in IP). `t` is tunnel `id`'s
/// entry; the packet's first `strip` bytes are headers in front of the inner packet, which
/// the tunnel's headers replace. For such a packet it writes exactly what
/// [`encapsulate`] writes (the same helpers) without the branches the other tunnels need;
/// for any other it returns `None` having changed nothing, and the caller encapsulates
/// the general way.
#[inline(always)]
pub(crate) fn plain4<B: PacketBuf>(
    pkt: &mut B,
    strip: usize,
    inner: &Inner,
    t: &TunnelHot,
    id: TunnelId,
    ident: &mut super::Ident,
    counters: &mut Counters,
) -> Option<Sent> {
    const WANT: u8 = TunnelHot::VALID | TunnelHot::NEIGHBOR;
    const MASK: u8 = WANT | TunnelHot::SEQUENCE | TunnelHot::CHECKSUM;
    if t.flags & MASK != WANT {
        return None;
    }
    // A valid tunnel's header holds Ethernet at least.
    let headers = usize::from(t.header_len);
    let outer_len = inner.len + headers - ethernet::HEADER_LEN;
    if outer_len > usize::from(t.mtu) {
        return None;
    }
    let h = pkt.replace_front(strip, headers)?;
    copy_header(h, &t.header);
    let protocol = inner_protocol(h, t, inner);
    outer4(h, t, inner, outer_len, protocol, ident);
    let frame_len = ethernet::HEADER_LEN + outer_len;
    if let Some(c) = counters.tunnels.get_mut(id.index()) {
        c.tx.add(frame_len);
    }
    Some((t.port, frame_len))
}

/// The shared state of tunnel `id` when it numbers its packets (RFC 2890), else `None`.
#[inline(always)]
fn tx_state<'s>(
    t: &TunnelHot,
    snap: &'s Snapshot,
    id: TunnelId,
) -> Result<Option<&'s TunnelState>, Verdict> {
    if !t.has(TunnelHot::SEQUENCE) {
        return Ok(None);
    }
    match snap.tunnels().get(id) {
        Some(e) => Ok(Some(&e.state)),
        None => Err(Verdict::Drop(DropReason::NoRoute)),
    }
}

/// The outer TOS or traffic class: the tunnel's DSCP (the inner packet's, or fixed; RFC
/// 2983) over the inner ECN field (RFC 6040 normal mode).
#[inline(always)]
fn outer_tos(t: &TunnelHot, inner: &Inner) -> u8 {
    // Precomputed per tunnel: no branch on its policy.
    inner.tos & t.tos_keep | t.tos_set
}

/// The outer TTL or hop limit: the inner packet's (after its decrement), or the tunnel's.
#[inline(always)]
fn outer_ttl(t: &TunnelHot, inner: &Inner) -> u8 {
    inner.ttl & t.ttl_keep | t.ttl_set
}

/// The outer IPv4 header (no options).
const IPV4_LEN: usize = 20;
/// The outer IPv6 header (no extension headers).
const IPV6_LEN: usize = 40;

/// [`encapsulate`] into a tunnel with IPv6 endpoints (GRE over IPv6, RFC 7676; IP in
/// IPv6, RFC 2473) that the IPv4 body left as `no_neighbor`; `no_neighbor` for a tunnel
/// without IPv6 endpoints, or whose next hop's MAC is unknown. The IPv4 body's MTU check
/// held already: such a tunnel's `mtu` is its outer MTU less 20, so that the IPv4
/// accounting there holds for the 40-byte IPv6 header.
///
/// The outer IPv6 header: version 6; traffic class = the DSCP policy's (copied from the
/// inner packet or fixed, RFC 2983) with the inner ECN field (RFC 6040 normal mode); flow
/// label 0 (RFC 6438's flow hash is not written); payload length; next header 47, or for IP
/// in IPv6 4 (IPv4 inside) or 41 (IPv6 inside); hop limit from the TTL policy; source our
/// endpoint, destination the client's. Never fragmented (IPv6 routers do not): a packet
/// over the MTU got its ICMP error before.
#[cold]
#[inline(never)]
fn encapsulate6<B: PacketBuf>(
    pkt: &mut B,
    inner: &Inner,
    snap: &Snapshot,
    id: TunnelId,
    counters: &mut Counters,
) -> Result<Sent, Verdict> {
    let (Some(t), Some(t6)) = (
        snap.tunnels().hot(id),
        snap.tunnels().hot6(id).filter(|h| h.neighbor),
    ) else {
        return Err(Verdict::Drop(DropReason::NoNeighbor));
    };
    let headers = usize::from(t6.header_len);
    let gre_len = headers - ethernet::HEADER_LEN - IPV6_LEN;
    let payload_len = inner.len + gre_len;
    let Ok(payload_len16) = u16::try_from(payload_len) else {
        return Err(Verdict::Drop(DropReason::MtuExceeded));
    };
    let state = tx_state(t, snap, id)?;
    let Ok(h) = pkt.prepend(headers) else {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    };
    let seq = state.map_or(0, |s| s.next_tx_sequence());
    h.copy_from_slice(&t6.header[..headers]);
    let tc = outer_tos(t, inner);
    let hop_limit = outer_ttl(t, inner);
    let ip = &mut h[ethernet::HEADER_LEN..ethernet::HEADER_LEN + IPV6_LEN];
    // Version 6, traffic class, flow label 0.
    ip[0..4].copy_from_slice(&((6u32 << 28) | (u32::from(tc) << 20)).to_be_bytes());
    ip[4..6].copy_from_slice(&payload_len16.to_be_bytes());
    if inner.v6 {
        if ip[6] == IpProtocol::IPIP.0 {
            ip[6] = IpProtocol::IPV6.0;
        } else {
            let at = ethernet::HEADER_LEN + IPV6_LEN + 2;
            h[at..at + 2].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
        }
    }
    h[ethernet::HEADER_LEN + 7] = hop_limit;
    if t.has(TunnelHot::SEQUENCE) {
        h[headers - 4..headers].copy_from_slice(&seq.to_be_bytes());
    }
    if t.has(TunnelHot::CHECKSUM) {
        let data = pkt.data_mut();
        gre::GrePacket::new_unchecked(&mut data[ethernet::HEADER_LEN + IPV6_LEN..]).fill_checksum();
    }
    let frame_len = ethernet::HEADER_LEN + IPV6_LEN + payload_len;
    if let Some(c) = counters.tunnels.get_mut(id.index()) {
        c.tx.add(frame_len);
    }
    Ok((t.port, frame_len))
}

/// Copy the first `h.len()` bytes of a tunnel's header template into `h`. Every IPv4
/// header (34 to 50 bytes) is two fixed-size copies: its first 32 bytes, and the 32 bytes
/// that end it (overlapping the first); a copy of a variable length would be a call to
/// `memmove`, and one fixed copy per length a jump.
#[inline(always)]
fn copy_header(h: &mut [u8], template: &[u8; TunnelHot::MAX_HEADER]) {
    let n = h.len();
    if (32..=TunnelHot::MAX_HEADER).contains(&n) {
        if let (Some(dst), Some(src)) = (h.first_chunk_mut::<32>(), template.first_chunk::<32>()) {
            *dst = *src;
        }
        let tail = n - 32;
        if let (Some(dst), Some(src)) = (
            h[tail..].first_chunk_mut::<32>(),
            template[tail..].first_chunk::<32>(),
        ) {
            *dst = *src;
        }
    } else {
        h.copy_from_slice(&template[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{PacketBuf, TestBuf};
    use crate::tables::{
        DfPolicy, DscpPolicy, PortEntry, PortRoles, SnapshotBuilder, TtlPolicy, Tunnel, TunnelMode,
    };
    use crate::wire::{Ecn, GrePacket, GreRepr, IpProtocol, Ipv4Packet, Ipv4Repr};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    /// `copy_header` copies exactly the first `h.len()` bytes of the template, whatever
    /// that length: the two fixed copies of 34 to 50 bytes, and the general copy around
    /// them; nothing past `h`'s end is touched.
    #[test]
    fn copy_header_copies_each_length_exactly() {
        let template: [u8; TunnelHot::MAX_HEADER] = core::array::from_fn(|i| i as u8 + 1);
        for n in 0..=TunnelHot::MAX_HEADER {
            let mut buf = [0xEE_u8; TunnelHot::MAX_HEADER + 8];
            copy_header(&mut buf[..n], &template);
            assert_eq!(&buf[..n], &template[..n], "{n} bytes");
            assert!(
                buf[n..].iter().all(|&b| b == 0xEE),
                "{n} bytes: wrote past the end"
            );
        }
    }

    proptest! {
        /// The header written from the tunnel's template is, byte for byte, what the wire
        /// views emit from the tunnel's policy and the inner packet's fields.
        #[test]
        fn template_headers_match_the_wire_views(
            gre in any::<bool>(), key in proptest::option::of(any::<u32>()),
            sequence in any::<bool>(), csum in any::<bool>(),
            ttl in proptest::option::of(1u8..=255), dscp in proptest::option::of(0u8..64),
            df_copy in any::<bool>(), remote in 0x0b00_0000u32..0x7f00_0000,
            inner_len in 20usize..1400, inner_tos in any::<u8>(), inner_ttl in any::<u8>(),
            inner_df in any::<bool>(), ident in any::<u16>(),
        ) {
            let local = Ipv4Addr::new(192, 0, 2, 1);
            let mut b = SnapshotBuilder::new();
            b.port(0, PortEntry {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                addrs: vec![local],
                addrs6: Vec::new(),
                mtu: 9000,
                roles: PortRoles { client: true, ..PortRoles::default() },
                transit: false,
                host_interface: false,
            });
            let mode = if gre { TunnelMode::Gre } else { TunnelMode::Ipip };
            let remote = Ipv4Addr::from(remote);
            let mut t = Tunnel::new("t", mode, local, remote, 0);
            if gre {
                t.key = key;
                t.sequence = sequence;
                t.checksum = csum;
            }
            t.ttl = ttl.map_or(TtlPolicy::Inherit, TtlPolicy::Fixed);
            t.dscp = dscp.map_or(DscpPolicy::Copy, DscpPolicy::Fixed);
            t.df = if df_copy { DfPolicy::Copy } else { DfPolicy::Set };
            t.mtu = 9000;
            b.tunnel(t.clone());
            let next_hop = EthernetAddress([2, 0, 0, 0, 0xaa, 1]);
            b.neighbor(0, remote, next_hop);
            let snap = b.build().unwrap();
            let id = snap.tunnels().by_name("t").unwrap();

            let payload: Vec<u8> = (0..inner_len).map(|i| i as u8).collect();
            let mut pkt = TestBuf::new(&payload);
            let inner = Inner {
                len: inner_len,
                tos: inner_tos,
                ttl: inner_ttl,
                dont_frag: inner_df,
                ..Inner::default()
            };
            let mut id_gen = super::super::Ident::for_worker(usize::from(ident), 1 << 16);
            let mut counters = Counters::default();
            counters.fit(1, snap.tunnels().slots());
            let r = encapsulate(&mut pkt, &inner, &snap, id, &mut id_gen, &mut counters);
            prop_assert!(matches!(r, Ok((0, _))), "{:?}", r);

            // The same with the views.
            let gre_len = t.encap_gre_len();
            let mut want = vec![0u8; 14 + 20 + gre_len + inner_len];
            want[0..6].copy_from_slice(&next_hop.0);
            want[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            want[12..14].copy_from_slice(&[0x08, 0x00]);
            Ipv4Repr {
                src_addr: local,
                dst_addr: remote,
                next_header: if gre { IpProtocol::GRE } else { IpProtocol::IPIP },
                payload_len: gre_len + inner_len,
                hop_limit: ttl.unwrap_or(inner_ttl),
                dscp: dscp.unwrap_or(inner_tos >> 2),
                ecn: Ecn::from_bits(inner_tos),
                dont_frag: !df_copy || inner_df,
                ident,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut want[14..34]));
            want[34 + gre_len..].copy_from_slice(&payload);
            if gre {
                GreRepr {
                    protocol_type: EtherType::IPV4,
                    key: t.key,
                    sequence: sequence.then_some(0),
                    checksum: csum,
                }
                .emit(&mut GrePacket::new_unchecked(&mut want[34..]));
                if csum {
                    GrePacket::new_unchecked(&mut want[34..]).fill_checksum();
                }
            }
            prop_assert_eq!(pkt.data(), &want[..]);
        }
    }
}
