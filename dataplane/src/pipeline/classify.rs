//! Ingress: Ethernet and outer IPv4 checks, then the split between tunnel termination,
//! the control path and native transit (SPEC.md "Ingress").

use super::action::{DropReason, PuntReason};
use super::Verdict;
use crate::buffer::PacketBuf;
use crate::tables::{PortIndex, Snapshot};
use crate::wire::{ethernet, ipv4, EtherType, EthernetAddress, IpProtocol, Ipv4Packet};

/// What ingress found out about a packet that continues.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ingress {
    /// A tunnel packet for us: outer header at `eth_len`, `outer_hlen` bytes long.
    Terminate {
        outer_hlen: usize,
        protocol: IpProtocol,
        local: u32,
        remote: u32,
        ecn: ipv4::Ecn,
    },
    /// Not for us, transit allowed: route the packet itself.
    Transit,
}

/// Check Ethernet and the outer IPv4 header. On `Ok`, the packet still starts at Ethernet
/// and any padding after the IPv4 total length has been trimmed.
#[inline]
pub(crate) fn ingress<B: PacketBuf>(
    pkt: &mut B,
    port: PortIndex,
    snap: &Snapshot,
) -> Result<Ingress, Verdict> {
    let Some(port_entry) = snap.port(port) else {
        return Err(Verdict::Drop(DropReason::NotForUs));
    };
    let data = pkt.data();
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
    let (outer_hlen, total, protocol, src, dst_ip, frag, ecn) = {
        let Ok(ip) = Ipv4Packet::new_checked(&data[ethernet::HEADER_LEN..]) else {
            return Err(Verdict::Drop(DropReason::BadIpv4));
        };
        if !ip.verify_checksum() {
            return Err(Verdict::Drop(DropReason::BadIpv4));
        }
        (
            ip.header_len(),
            usize::from(ip.total_len()),
            ip.protocol(),
            ip.src_addr(),
            u32::from(ip.dst_addr()),
            ip.is_fragment(),
            ip.ecn(),
        )
    };
    let padding = data.len() - ethernet::HEADER_LEN - total;
    if padding > 0 && pkt.trim_back(padding).is_err() {
        return Err(Verdict::Drop(DropReason::BadIpv4));
    }
    if ipv4::is_martian_source(src) {
        return Err(Verdict::Drop(DropReason::Martian));
    }
    if snap.is_local(dst_ip) {
        if frag {
            return Err(Verdict::Drop(DropReason::OuterFragment));
        }
        if protocol == IpProtocol::GRE || protocol == IpProtocol::IPIP {
            return Ok(Ingress::Terminate {
                outer_hlen,
                protocol,
                local: dst_ip,
                remote: u32::from(src),
                ecn,
            });
        }
        // `PuntReason::Local` hands over the IPv4 packet, without Ethernet.
        if pkt.trim_front(ethernet::HEADER_LEN).is_err() {
            return Err(Verdict::Drop(DropReason::BadIpv4));
        }
        return Err(Verdict::Punt(PuntReason::Local));
    }
    if port_entry.transit {
        Ok(Ingress::Transit)
    } else {
        Err(Verdict::Drop(DropReason::NotForUs))
    }
}
