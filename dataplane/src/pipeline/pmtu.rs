//! ICMP from the underlay about our own tunnel packets (RFC 1191, RFC 4459 section 3.2): a
//! router between us and a client router that cannot forward one of our outer packets
//! answers with Fragmentation Needed (type 3, code 4) and the MTU of its next hop. The
//! tunnel's outer MTU must come down to that, so that our next packets fit and the senders
//! inside the tunnel learn the smaller inner MTU from our own Fragmentation Needed.
//!
//! Anyone can send us such a message, so it is believed only when it quotes an outer header
//! we could have sent. Checked here, against the burst's snapshot, in this order:
//!
//! 1. the quote holds an IPv4 header (else `pmtu_truncated`); a quote of a protocol other
//!    than GRE (47), IPIP (4) or IPv6-in-IPv4 (41, an IPIP tunnel's IPv6) is no tunnel's: the message goes on as any ICMP to us does
//!    (to the port's host interface, for the host's own connections), counted
//!    `pmtu_not_tunnel`;
//! 2. the ICMP checksum, and a quoted header of version 4 (`pmtu_malformed`);
//! 3. the quoted IPv4 header and the 8 bytes after it (RFC 792), and for GRE the key where
//!    the quoted flags announce one (`pmtu_truncated`: a quote of only 8 bytes past the
//!    header shows the key when there is no checksum before it);
//! 4. a header we send: no options, source = the tunnel's local (which is also where the
//!    message was sent), destination = its remote, its protocol, for GRE exactly its C, K
//!    and S flags, version 0, protocol type IPv4 or IPv6 and its key; for IPIP an IPv4
//!    packet inside (protocol 4) or an IPv6 one (protocol 41); and the message arrived on
//!    the tunnel's port (`pmtu_not_ours`);
//! 5. the next-hop MTU is smaller than the packet quoted (`pmtu_not_smaller`).
//!
//! A message that passes is consumed (punted `pmtu`, never handed to the host: the host did
//! not send the packet, and has no such tunnel). Its MTU is raised to the tunnel's floor
//! (576 bytes inside, [`Tunnel::path_mtu_floor`](crate::tables::Tunnel::path_mtu_floor)),
//! which also covers the 0 of routers older than RFC 1191; if that is below the tunnel's
//! MTU now, the worker hands a [`PathMtuReport`] to the control thread, which publishes the
//! lower MTU and lets it expire ten minutes later; otherwise it counts `pmtu_not_lower`.
//!
//! Nothing here allocates, and no input panics.

use super::action::{DropReason, Event, PuntReason};
use super::counters::Counters;
use super::icmp::Back;
use super::Verdict;
use crate::tables::{PortIndex, Snapshot, TunnelId, TunnelKey};
use crate::wire::icmp::{IcmpPacket, IcmpType};
use crate::wire::{IpProtocol, Ipv4Addr, Ipv4Packet};

/// A Fragmentation Needed message about one of our tunnels' packets, checked against the
/// tables: what the control thread needs to lower the tunnel's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathMtuReport {
    /// The tunnel whose packet it quotes.
    pub tunnel: TunnelId,
    /// That tunnel's remote endpoint when the message was checked: the control thread
    /// applies the report only while the tunnel in that slot still has it.
    pub remote: Ipv4Addr,
    /// The router that sent the message.
    pub from: Ipv4Addr,
    /// The next-hop MTU the message gives.
    pub reported: u16,
    /// The outer MTU to use: `reported`, raised to the tunnel's floor.
    pub mtu: u16,
}

/// Whether the IPv4 packet `ip` (header checked) carries an ICMP Fragmentation Needed.
#[inline]
pub(crate) fn is_frag_needed(ip: &[u8]) -> bool {
    let at = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
    ip.get(9) == Some(&IpProtocol::ICMP.0)
        && ip.get(at) == Some(&IcmpType::DEST_UNREACHABLE.0)
        && ip.get(at + 1) == Some(&4)
}

/// What becomes of an ICMP Fragmentation Needed addressed to us that arrived natively on
/// `port` (`packet`: its IPv4 packet, header checked, padding trimmed): a report for the
/// control thread, a drop, or a packet for us like any other (`back`: the way it came).
#[inline(never)]
pub(crate) fn underlay(
    packet: &[u8],
    snap: &Snapshot,
    port: PortIndex,
    counters: &mut Counters,
    back: Back,
) -> Result<PathMtuReport, Verdict> {
    let drop = |r| Err(Verdict::Drop(r));
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return drop(DropReason::PmtuMalformed);
    };
    let Ok(message) = IcmpPacket::new_checked(ip.payload()) else {
        return drop(DropReason::PmtuTruncated);
    };
    let quote = message.body();
    if quote.len() < 20 {
        return drop(DropReason::PmtuTruncated);
    }
    let protocol = IpProtocol(quote[9]);
    if protocol != IpProtocol::GRE && protocol != IpProtocol::IPIP && protocol != IpProtocol::IPV6 {
        counters.events[Event::PmtuNotTunnel as usize] += 1;
        return Err(Verdict::ToUs {
            punt: PuntReason::Local,
            back,
        });
    }
    if !message.verify_checksum() || quote[0] >> 4 != 4 {
        return drop(DropReason::PmtuMalformed);
    }
    let quoted = Ipv4Packet::new_unchecked(quote);
    let hlen = quoted.header_len();
    if hlen < 20 {
        return drop(DropReason::PmtuMalformed);
    }
    if quote.len() < hlen + 8 {
        return drop(DropReason::PmtuTruncated);
    }
    // We never send options: a quote with them is no packet of ours.
    if hlen != 20 {
        return drop(DropReason::PmtuNotOurs);
    }
    let after = &quote[20..];
    let (local, remote) = (quoted.src_addr(), quoted.dst_addr());
    let gre = match protocol {
        IpProtocol::GRE => Some(u16::from_be_bytes([after[0], after[1]])),
        _ => None,
    };
    let gre_key = match gre {
        Some(flags) if flags & GRE_K != 0 => {
            let at = if flags & GRE_C != 0 { 8 } else { 4 };
            let Some(k) = after.get(at..at + 4) else {
                return drop(DropReason::PmtuTruncated);
            };
            Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
        }
        _ => None,
    };
    let key = TunnelKey {
        local: u32::from(local),
        remote: u32::from(remote),
        // An IPIP tunnel sends IPv6 as protocol 41 (RFC 4213).
        protocol: match protocol {
            IpProtocol::IPV6 => IpProtocol::IPIP.0,
            p => p.0,
        },
        gre_key,
    };
    let Some((id, t)) = snap
        .tunnels()
        .lookup(&key)
        .and_then(|id| Some((id, snap.tunnels().hot(id)?)))
    else {
        return drop(DropReason::PmtuNotOurs);
    };
    let sent_by_us = match gre {
        // Flags and version as the tunnel's header template has them, and the protocol
        // type of IPv4 (the template's) or IPv6.
        Some(_) => {
            after[..2] == t.header[34..36]
                && (after[2..4] == t.header[36..38] || after[2..4] == [0x86, 0xdd])
        }
        // IPIP: an IPv4 packet inside, or an IPv6 one with protocol 41, as we only send.
        None if protocol == IpProtocol::IPV6 => after[0] >> 4 == 6,
        None => after[0] >> 4 == 4,
    };
    if !sent_by_us || t.port != port || ip.dst_addr() != local {
        return drop(DropReason::PmtuNotOurs);
    }
    let reported = message.next_hop_mtu();
    if reported >= quoted.total_len() {
        return drop(DropReason::PmtuNotSmaller);
    }
    let mtu = reported.max(t.path_mtu_floor());
    if mtu >= t.mtu {
        counters.events[Event::PmtuNotLower as usize] += 1;
        return Err(Verdict::Punt(PuntReason::PathMtu));
    }
    Ok(PathMtuReport {
        tunnel: id,
        remote,
        from: ip.src_addr(),
        reported,
        mtu,
    })
}

const GRE_C: u16 = 0x8000;
const GRE_K: u16 = 0x2000;
