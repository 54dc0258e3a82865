//! Tunnel termination: find the tunnel, check GRE, strip the outer headers, check the inner
//! packet, the source (BCP 38), ECN (RFC 6040) and TTL (SPEC.md "Tunnel termination").

use super::action::{DropReason, Event, PuntReason};
use super::counters::Counters;
use super::{Inner, Verdict};
use crate::buffer::PacketBuf;
use crate::tables::{Snapshot, TunnelId, TunnelKey};
use crate::wire::{ethernet, gre, ipv4::Ecn, EtherType, IpProtocol, Ipv4Packet};

/// The last tunnel lookup of this burst: consecutive packets of one tunnel skip the hash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LookupCache {
    last: Option<(TunnelKey, TunnelId)>,
}

impl LookupCache {
    #[inline]
    fn lookup(&mut self, snap: &Snapshot, key: &TunnelKey) -> Option<TunnelId> {
        if let Some((k, id)) = self.last {
            if k == *key {
                return Some(id);
            }
        }
        let id = snap.tunnels().lookup(key)?;
        self.last = Some((*key, id));
        Some(id)
    }
}

/// Terminate a tunnel packet whose outer IPv4 header (`outer_hlen` bytes, after Ethernet) was
/// checked by ingress. On `Ok` the packet starts at the inner IPv4 header, TTL decremented.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn terminate<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    counters: &mut Counters,
    cache: &mut LookupCache,
    outer_hlen: usize,
    protocol: IpProtocol,
    local: u32,
    remote: u32,
    outer_ecn: Ecn,
) -> Result<Inner, Verdict> {
    let l3 = ethernet::HEADER_LEN + outer_hlen;
    let mut strip = l3;
    let tunnel = if protocol == IpProtocol::GRE {
        let payload = &pkt.data()[l3..];
        let Ok(g) = gre::GrePacket::new_checked(payload) else {
            return Err(Verdict::Drop(DropReason::BadGre));
        };
        let key = TunnelKey {
            local,
            remote,
            protocol: protocol.0,
            gre_key: g.key(),
        };
        let id = cache
            .lookup(snap, &key)
            .ok_or(Verdict::Drop(DropReason::NoTunnel))?;
        let t = snap
            .tunnels()
            .get(id)
            .ok_or(Verdict::Drop(DropReason::NoTunnel))?;
        if g.version() != 0 || g.forbidden_bits_set() {
            return Err(Verdict::Drop(DropReason::BadGre));
        }
        if g.reserved_ignored_bits() != 0 {
            counters.events[Event::GreReservedIgnored as usize] += 1;
        }
        if g.protocol_type() != EtherType::IPV4 {
            return Err(Verdict::Drop(DropReason::UnsupportedInner));
        }
        if g.checksum_present() && !g.verify_checksum() {
            return Err(Verdict::Drop(DropReason::BadGreChecksum));
        }
        if t.config.sequence {
            match g.sequence() {
                Some(seq) if t.state.accept_sequence(seq) => {}
                _ => return Err(Verdict::Drop(DropReason::GreSequence)),
            }
        }
        strip += g.header_len();
        id
    } else {
        let key = TunnelKey {
            local,
            remote,
            protocol: protocol.0,
            gre_key: None,
        };
        cache
            .lookup(snap, &key)
            .ok_or(Verdict::Drop(DropReason::NoTunnel))?
    };
    let frame_len = pkt.len();
    if pkt.trim_front(strip).is_err() {
        return Err(Verdict::Drop(DropReason::BadInnerIpv4));
    }
    if let Some(c) = counters.tunnels.get_mut(tunnel.index()) {
        c.rx.add(frame_len);
    }

    // The inner header: nobody has checked it, not even a NIC.
    let (total, src, dst, inner_proto, inner_ecn, ttl) = {
        let Ok(ip) = Ipv4Packet::new_checked(pkt.data()) else {
            return Err(Verdict::Drop(DropReason::BadInnerIpv4));
        };
        if !ip.verify_checksum() {
            return Err(Verdict::Drop(DropReason::BadInnerIpv4));
        }
        (
            usize::from(ip.total_len()),
            u32::from(ip.src_addr()),
            u32::from(ip.dst_addr()),
            ip.protocol(),
            ip.ecn(),
            ip.ttl(),
        )
    };
    let excess = pkt.len() - total;
    if excess > 0 && pkt.trim_back(excess).is_err() {
        return Err(Verdict::Drop(DropReason::BadInnerIpv4));
    }
    if snap.is_local(dst) {
        if inner_proto == IpProtocol::GRE || inner_proto == IpProtocol::IPIP {
            return Err(Verdict::Drop(DropReason::NestedTunnel));
        }
        return Err(Verdict::Punt(PuntReason::LocalInner));
    }
    if snap.source_owner(src) != Some(tunnel) {
        return Err(Verdict::Drop(DropReason::InnerSpoofed));
    }
    // RFC 6040 section 4.2, decapsulation (Figure 4).
    let mut new_ecn = None;
    match (outer_ecn, inner_ecn) {
        (Ecn::Ce, Ecn::NotEct) => return Err(Verdict::Drop(DropReason::EcnCeNotEct)),
        (Ecn::Ce, Ecn::Ect0 | Ecn::Ect1) => new_ecn = Some(Ecn::Ce),
        // Figure 4: outer ECT(1) over inner ECT(0) gives ECT(1).
        (Ecn::Ect1, Ecn::Ect0) => new_ecn = Some(Ecn::Ect1),
        (Ecn::Ect0 | Ecn::Ect1, Ecn::NotEct) => counters.events[Event::EcnSuspicious as usize] += 1,
        _ => {}
    }
    if ttl <= 1 {
        return Err(Verdict::Drop(DropReason::TtlExceeded));
    }
    let mut ip = Ipv4Packet::new_unchecked(pkt.data_mut());
    if let Some(ecn) = new_ecn {
        ip.set_ecn_incremental(ecn);
        if ecn == Ecn::Ce {
            counters.events[Event::EcnCePropagated as usize] += 1;
        }
    }
    ip.decrement_ttl_incremental();
    Ok(Inner {
        ingress_tunnel: Some(tunnel),
        src,
        dst,
    })
}

/// Prepare a transit packet (not for us, transit allowed): strip Ethernet, check TTL.
#[inline]
pub(crate) fn transit<B: PacketBuf>(pkt: &mut B) -> Result<Inner, Verdict> {
    if pkt.trim_front(ethernet::HEADER_LEN).is_err() {
        return Err(Verdict::Drop(DropReason::BadIpv4));
    }
    let mut ip = Ipv4Packet::new_unchecked(pkt.data_mut());
    if ip.ttl() <= 1 {
        return Err(Verdict::Drop(DropReason::TtlExceeded));
    }
    ip.decrement_ttl_incremental();
    Ok(Inner {
        ingress_tunnel: None,
        src: u32::from(ip.src_addr()),
        dst: u32::from(ip.dst_addr()),
    })
}
