//! Encapsulation and the Ethernet rewrite (SPEC.md "Encapsulation"). The packet starts at
//! the inner IPv4 header; new headers are prepended into headroom, the payload never moves.

use super::action::{Action, DropReason};
use super::counters::Counters;
use super::Verdict;
use crate::buffer::PacketBuf;
use crate::tables::{DfPolicy, DscpPolicy, PortIndex, Snapshot, TtlPolicy, TunnelId, TunnelMode};
use crate::wire::{ethernet, gre, EtherType, EthernetAddress, Ipv4Packet, Ipv4Repr};

/// Write the Ethernet header in front of an IPv4 packet.
#[inline]
fn push_ethernet<B: PacketBuf>(
    pkt: &mut B,
    src: EthernetAddress,
    dst: EthernetAddress,
) -> Result<(), Verdict> {
    let Ok(h) = pkt.prepend(ethernet::HEADER_LEN) else {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    };
    h[0..6].copy_from_slice(&dst.0);
    h[6..12].copy_from_slice(&src.0);
    h[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    Ok(())
}

/// Send the inner packet natively out of `port`.
#[inline]
pub(crate) fn native<B: PacketBuf>(
    pkt: &mut B,
    port: PortIndex,
    src_mac: EthernetAddress,
    dst_mac: Option<EthernetAddress>,
    mtu: u16,
) -> Result<Action, Verdict> {
    if pkt.len() > usize::from(mtu) {
        return Err(Verdict::Drop(DropReason::MtuExceeded));
    }
    let Some(dst) = dst_mac else {
        return Err(Verdict::Drop(DropReason::NoNeighbor));
    };
    push_ethernet(pkt, src_mac, dst)?;
    Ok(Action::Transmit(port))
}

/// Encapsulate the inner packet into tunnel `id` and rewrite Ethernet.
#[inline]
pub(crate) fn encapsulate<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    id: TunnelId,
    ident: &mut u16,
    counters: &mut Counters,
) -> Result<Action, Verdict> {
    let Some(t) = snap.tunnels().get(id) else {
        return Err(Verdict::Drop(DropReason::NoRoute));
    };
    let cfg = &t.config;
    let gre_len = cfg.encap_gre_len();
    let inner_len = pkt.len();
    let outer_len = inner_len + 20 + gre_len;
    if outer_len > usize::from(t.mtu) {
        // DF set: the sender must learn the tunnel MTU; DF clear: we would fragment the inner
        // packet (RFC 4459 section 3.4), which does not exist yet. Both drop for now.
        return Err(Verdict::Drop(DropReason::MtuExceeded));
    }
    let Some(dst_mac) = t.next_hop_mac else {
        return Err(Verdict::Drop(DropReason::NoNeighbor));
    };
    let (inner_dscp, inner_ecn, inner_ttl, inner_df) = {
        let ip = Ipv4Packet::new_unchecked(pkt.data());
        (ip.dscp(), ip.ecn(), ip.ttl(), ip.dont_frag())
    };
    if pkt.headroom() < ethernet::HEADER_LEN + 20 + gre_len {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    }
    if cfg.mode == TunnelMode::Gre {
        let seq = cfg.sequence.then(|| t.state.next_tx_sequence());
        let repr = gre::GreRepr {
            protocol_type: EtherType::IPV4,
            key: cfg.key,
            sequence: seq,
            checksum: cfg.checksum,
        };
        let Ok(h) = pkt.prepend(gre_len) else {
            return Err(Verdict::Drop(DropReason::NoHeadroom));
        };
        let mut g = gre::GrePacket::new_unchecked(h);
        repr.emit(&mut g);
        if cfg.checksum {
            let mut g = gre::GrePacket::new_unchecked(pkt.data_mut());
            g.fill_checksum();
        }
    }
    *ident = ident.wrapping_add(1);
    let repr = Ipv4Repr {
        src_addr: cfg.local,
        dst_addr: cfg.remote,
        next_header: cfg.mode.protocol(),
        payload_len: inner_len + gre_len,
        hop_limit: match cfg.ttl {
            TtlPolicy::Fixed(ttl) => ttl,
            TtlPolicy::Inherit => inner_ttl,
        },
        dscp: match cfg.dscp {
            DscpPolicy::Copy => inner_dscp,
            DscpPolicy::Fixed(d) => d,
        },
        // RFC 6040 normal mode: copy the inner ECN field.
        ecn: inner_ecn,
        dont_frag: match cfg.df {
            DfPolicy::Set => true,
            DfPolicy::Copy => inner_df,
        },
        ident: *ident,
    };
    let Ok(h) = pkt.prepend(20) else {
        return Err(Verdict::Drop(DropReason::NoHeadroom));
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(h));
    push_ethernet(pkt, t.src_mac, dst_mac)?;
    if let Some(c) = counters.tunnels.get_mut(id.index()) {
        c.tx.add(pkt.len());
    }
    Ok(Action::Transmit(cfg.egress_port))
}
