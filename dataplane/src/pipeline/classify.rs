//! Ingress: Ethernet and outer IPv4 checks, then the split between tunnel termination,
//! the control path and native transit (SPEC.md "Ingress"); IPv6 frames: Neighbor
//! Discovery, echo requests to our port addresses, and native IPv6 transit ([`ingress6`]).

use super::action::{DropReason, PuntReason};
use super::icmp::Back;
use super::Verdict;
use crate::buffer::PacketBuf;
use crate::tables::{PortEntry, PortIndex, Snapshot};
use crate::wire::{
    ethernet, icmpv6, ipv4, ipv6, nd, EtherType, EthernetAddress, IpProtocol, Ipv4Addr, Ipv4Packet,
    Ipv6Packet,
};

/// What ingress found out about a packet that continues.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ingress {
    /// A tunnel packet for us: outer header at `eth_len`, `outer_hlen` bytes long.
    Terminate {
        outer_hlen: usize,
        /// The frame's length now: Ethernet header and outer IPv4 total length.
        frame_len: usize,
        protocol: IpProtocol,
        local: u32,
        remote: u32,
        ecn: ipv4::Ecn,
    },
    /// A tunnel packet for one of our IPv6 addresses (GRE over IPv6, RFC 7676; IP in IPv6,
    /// RFC 2473): outer IPv6 header at `eth_len`, 40 bytes, the tunnel payload right after.
    /// The addresses stay in the packet (read again by termination): two `u128` here would
    /// double the size of every classification result, IPv4's included.
    Terminate6 {
        /// The frame's length now: Ethernet, the IPv6 header and its payload length.
        frame_len: usize,
        protocol: IpProtocol,
        ecn: ipv4::Ecn,
    },
    /// Not for us, transit allowed: route the packet itself.
    Transit,
    /// An ICMP Fragmentation Needed for us, perhaps from the underlay about one of our
    /// tunnel packets ([`super::pmtu`]); the packet now starts at its IPv4 header, and
    /// `back` is the way it came.
    FragNeeded { back: Back },
}

/// Check Ethernet and the outer IPv4 header. Returns the frame's length as received (for
/// the RX counters: one look at the buffer serves both) and the verdict. On `Ok`, the
/// packet still starts at Ethernet, any padding after the IPv4 total length has been
/// trimmed, and its bytes are its own to write (a shared buffer was copied).
#[inline]
pub(crate) fn ingress<B: PacketBuf>(
    pkt: &mut B,
    port: PortIndex,
    snap: &Snapshot,
) -> (usize, Result<Ingress, Verdict>) {
    if let Some(total) = pkt.chained_len() {
        return (total, Err(Verdict::Drop(DropReason::OversizeFrame)));
    }
    // Every later stage may write to the packet: from here on its bytes are its own.
    if pkt.make_writable().is_err() {
        return (pkt.len(), Err(Verdict::Drop(DropReason::SharedBuffer)));
    }
    let data = pkt.data();
    let rx_len = data.len();
    if data.get(12..14) == Some(&EtherType::IPV6.0.to_be_bytes()) {
        return (rx_len, ingress6(pkt, port, snap));
    }
    let r = headers(data, port, snap).and_then(|h| decide(pkt, rx_len, snap, h, port));
    (rx_len, r)
}

/// What the read-only checks found in the outer headers.
#[derive(Clone, Copy)]
struct Headers {
    outer_hlen: usize,
    total: usize,
    protocol: IpProtocol,
    src: Ipv4Addr,
    dst: u32,
    frag: bool,
    ecn: ipv4::Ecn,
    transit: bool,
}

/// The checks that only read the frame: port, Ethernet, the outer IPv4 header.
#[inline]
fn headers(data: &[u8], port: PortIndex, snap: &Snapshot) -> Result<Headers, Verdict> {
    let Some(port_entry) = snap.port(port) else {
        return Err(Verdict::Drop(DropReason::NotForUs));
    };
    if data.len() < ethernet::HEADER_LEN {
        return Err(Verdict::Drop(DropReason::Runt));
    }
    let dst = EthernetAddress([data[0], data[1], data[2], data[3], data[4], data[5]]);
    let ethertype = EtherType(u16::from_be_bytes([data[12], data[13]]));
    if ethertype == EtherType::ARP {
        return if dst == port_entry.mac || dst.is_broadcast() {
            Err(Verdict::Punt(PuntReason::Arp))
        } else {
            Err(Verdict::Drop(DropReason::NotForUs))
        };
    }
    if dst != port_entry.mac {
        return Err(Verdict::Drop(DropReason::NotForUs));
    }
    if ethertype != EtherType::IPV4 {
        return Err(Verdict::Drop(DropReason::UnsupportedEthertype));
    }
    let Ok(ip) = Ipv4Packet::new_checked(&data[ethernet::HEADER_LEN..]) else {
        return Err(Verdict::Drop(DropReason::BadIpv4));
    };
    if !ip.verify_checksum() {
        return Err(Verdict::Drop(DropReason::BadIpv4));
    }
    Ok(Headers {
        outer_hlen: ip.header_len(),
        total: usize::from(ip.total_len()),
        protocol: ip.protocol(),
        src: ip.src_addr(),
        dst: u32::from(ip.dst_addr()),
        frag: ip.is_fragment(),
        ecn: ip.ecn(),
        transit: port_entry.transit,
    })
}

/// An IPv6 frame (EtherType 0x86DD): see [`ipv6`]; a packet for us is cut to its IPv6
/// header ([`to_us6`]), one in transit has its padding trimmed and continues (the
/// pipeline's [`super::terminate::transit`]).
///
/// Inlined: out of line, its result comes back through memory, and the IPv4 path's result
/// was merged into the same stack slot, to be read back with one wide load over narrow
/// stores (a store-forwarding stall on every IPv4 packet).
#[inline(always)]
fn ingress6<B: PacketBuf>(
    pkt: &mut B,
    port: PortIndex,
    snap: &Snapshot,
) -> Result<Ingress, Verdict> {
    let Some(entry) = snap.port(port) else {
        return Err(Verdict::Drop(DropReason::NotForUs));
    };
    let data = pkt.data();
    let dst = EthernetAddress([data[0], data[1], data[2], data[3], data[4], data[5]]);
    if dst == entry.mac {
        if let Some(r) = tunnel6(pkt, entry) {
            return r;
        }
    }
    let data = pkt.data();
    match ipv6(data, dst, entry) {
        v @ Verdict::ToUs { .. } => Err(to_us6(pkt, port, v)),
        Verdict::Drop(DropReason::NotForUs) if dst == entry.mac && entry.transit => {
            let Ok(ip) = Ipv6Packet::new_checked(&data[ethernet::HEADER_LEN..]) else {
                return Err(Verdict::Drop(DropReason::BadInnerIpv6));
            };
            if ipv6::is_invalid_source(ip.src_bits()) {
                return Err(Verdict::Drop(DropReason::Martian));
            }
            let padding = data.len() - ethernet::HEADER_LEN - ip.total_len();
            if padding > 0 && pkt.trim_back(padding).is_err() {
                return Err(Verdict::Drop(DropReason::BadInnerIpv6));
            }
            Ok(Ingress::Transit)
        }
        v => Err(v),
    }
}

/// An IPv6 packet to one of the port's IPv6 addresses carrying a tunnel (next header 47,
/// 4 or 41): its fixed header checked (version 6, payload length within the frame, else
/// `bad_ipv6`; a source no node sends from, or link-local, is `martian`), trimmed to its
/// payload length (Ethernet padding), for termination.
/// To one of them, a fragment is `outer_fragment` (no reassembly) and an extension header
/// (hop-by-hop 0, routing 43, destination options 60) is `outer_extension_header`: the
/// chain is not walked, whatever follows it. `None`: not ours, or another next header
/// (ICMPv6, which [`ipv6`] decides on).
#[inline(never)]
fn tunnel6<B: PacketBuf>(pkt: &mut B, entry: &PortEntry) -> Option<Result<Ingress, Verdict>> {
    let data = pkt.data();
    let rx_len = data.len();
    let l3 = data.get(ethernet::HEADER_LEN..)?;
    let Ok(ip) = Ipv6Packet::new_checked(l3) else {
        // Malformed, yet to one of our addresses (where the frame shows one).
        let dst = l3.get(24..40)?;
        let dst = core::net::Ipv6Addr::from(<[u8; 16]>::try_from(dst).ok()?);
        return entry
            .has_addr6(dst)
            .then_some(Err(Verdict::Drop(DropReason::BadIpv6)));
    };
    if !entry.has_addr6(ip.dst_addr()) {
        return None;
    }
    let protocol = ip.next_header();
    match protocol.0 {
        47 | 4 | 41 => {}
        44 => return Some(Err(Verdict::Drop(DropReason::OuterFragment))),
        0 | 43 | 60 => return Some(Err(Verdict::Drop(DropReason::OuterExtensionHeader))),
        _ => return None,
    }
    let (src, total, tc) = (ip.src_bits(), ip.total_len(), ip.traffic_class());
    if ipv6::is_invalid_source(src) || ipv6::is_link_local(src) {
        return Some(Err(Verdict::Drop(DropReason::Martian)));
    }
    let frame_len = ethernet::HEADER_LEN + total;
    if rx_len > frame_len && pkt.trim_back(rx_len - frame_len).is_err() {
        return Some(Err(Verdict::Drop(DropReason::BadIpv6)));
    }
    Some(Ok(Ingress::Terminate6 {
        frame_len,
        protocol,
        ecn: ipv4::Ecn::from_bits(tc),
    }))
}

/// An IPv6 frame: Neighbor Discovery to the port's MAC or to the solicited-node multicast
/// MAC of one of its IPv6 addresses (RFC 4861, RFC 2464 section 7) goes to the ND handler,
/// which checks the rest; an echo request to one of the port's addresses is for us; other
/// IPv6 to the port's MAC is `not_for_us` here (transit, where the port allows it, is
/// [`ingress6`]'s to decide).
#[cold]
fn ipv6(data: &[u8], dst: EthernetAddress, port: &PortEntry) -> Verdict {
    let for_us = dst == port.mac
        || (dst.is_multicast()
            && (nd::is_solicited_node_mac(dst, port.link_local())
                || port
                    .addrs6
                    .iter()
                    .any(|&a| nd::is_solicited_node_mac(dst, a))));
    if !for_us {
        return Verdict::Drop(DropReason::NotForUs);
    }
    // Next header ICMPv6 straight after the fixed header, type 135 or 136: ND never
    // carries extension headers we would have to walk (RFC 4861 has no use for them).
    let next = data.get(ethernet::HEADER_LEN + 6).copied();
    let icmp_type = data.get(ethernet::HEADER_LEN + ipv6::HEADER_LEN).copied();
    if next == Some(IpProtocol::ICMPV6.0)
        && matches!(icmp_type, Some(nd::NEIGHBOR_SOLICIT | nd::NEIGHBOR_ADVERT))
    {
        return Verdict::Punt(PuntReason::Nd);
    }
    if dst != port.mac {
        return Verdict::Drop(DropReason::NotForUs);
    }
    // An echo request to one of the port's IPv6 addresses: for us, answered by the echo
    // code (one it does not answer, a bad checksum say, is punted). [`ingress`] cuts it to
    // its IPv6 header. Other IPv6 to us has nowhere to go yet: the host interfaces of
    // ports carry IPv4 only.
    match Ipv6Packet::new_checked(&data[ethernet::HEADER_LEN..]) {
        Ok(ip)
            if port.has_addr6(ip.dst_addr())
                && ip.next_header() == IpProtocol::ICMPV6
                && ip.payload().first() == Some(&icmpv6::ECHO_REQUEST) =>
        {
            Verdict::ToUs {
                punt: PuntReason::Local,
                back: Back::Native {
                    port: PortIndex::MAX,
                    mac: EthernetAddress([data[6], data[7], data[8], data[9], data[10], data[11]]),
                },
            }
        }
        // Other IPv6 to us has nowhere to go (the host interfaces of ports carry IPv4).
        Ok(ip) if port.has_addr6(ip.dst_addr()) => Verdict::Drop(DropReason::UnsupportedEthertype),
        // Not ours: transit, where the port allows it.
        _ => Verdict::Drop(DropReason::NotForUs),
    }
}

/// An IPv6 packet for one of our addresses: cut to its IPv6 header and payload length
/// (checked by [`ipv6`]), with the way back through `port`.
#[cold]
fn to_us6<B: PacketBuf>(pkt: &mut B, port: PortIndex, v: Verdict) -> Verdict {
    let Verdict::ToUs {
        punt,
        back: Back::Native { mac, .. },
    } = v
    else {
        return v;
    };
    let Ok(total) =
        Ipv6Packet::new_checked(&pkt.data()[ethernet::HEADER_LEN..]).map(|ip| ip.total_len())
    else {
        return Verdict::Drop(DropReason::UnsupportedEthertype);
    };
    let excess = pkt.len() - ethernet::HEADER_LEN - total;
    if pkt.trim_back(excess).is_err() || pkt.trim_front(ethernet::HEADER_LEN).is_err() {
        return Verdict::Drop(DropReason::UnsupportedEthertype);
    }
    Verdict::ToUs {
        punt,
        back: Back::Native { port, mac },
    }
}

/// Trim the padding, then split between termination, the control path and transit.
#[inline]
fn decide<B: PacketBuf>(
    pkt: &mut B,
    rx_len: usize,
    snap: &Snapshot,
    h: Headers,
    port: PortIndex,
) -> Result<Ingress, Verdict> {
    let padding = rx_len - ethernet::HEADER_LEN - h.total;
    if padding > 0 && pkt.trim_back(padding).is_err() {
        return Err(Verdict::Drop(DropReason::BadIpv4));
    }
    if ipv4::is_martian_source(h.src) {
        return Err(Verdict::Drop(DropReason::Martian));
    }
    if snap.is_local(h.dst) {
        if h.frag {
            return Err(Verdict::Drop(DropReason::OuterFragment));
        }
        if h.protocol == IpProtocol::GRE
            || h.protocol == IpProtocol::IPIP
            || h.protocol == IpProtocol::IPV6
        {
            return Ok(Ingress::Terminate {
                outer_hlen: h.outer_hlen,
                frame_len: rx_len - padding,
                protocol: h.protocol,
                local: h.dst,
                remote: u32::from(h.src),
                ecn: h.ecn,
            });
        }
        // The reply to one of our in-tunnel probes: for the prober.
        if h.protocol == IpProtocol::ICMP {
            let icmp = pkt.data().get(ethernet::HEADER_LEN + h.outer_hlen..);
            if icmp.is_some_and(super::probe::is_probe) {
                if pkt.trim_front(ethernet::HEADER_LEN).is_err() {
                    return Err(Verdict::Drop(DropReason::BadIpv4));
                }
                return Err(Verdict::Probe);
            }
        }
        // `PuntReason::Local` hands over the IPv4 packet, without Ethernet; an echo request
        // is answered to the frame's sender.
        let d = pkt.data();
        let mac = EthernetAddress([d[6], d[7], d[8], d[9], d[10], d[11]]);
        if pkt.trim_front(ethernet::HEADER_LEN).is_err() {
            return Err(Verdict::Drop(DropReason::BadIpv4));
        }
        let back = Back::Native { port, mac };
        if h.protocol == IpProtocol::ICMP && super::pmtu::is_frag_needed(pkt.data()) {
            return Ok(Ingress::FragNeeded { back });
        }
        return Err(Verdict::ToUs {
            punt: PuntReason::Local,
            back,
        });
    }
    if h.transit {
        Ok(Ingress::Transit)
    } else {
        Err(Verdict::Drop(DropReason::NotForUs))
    }
}
