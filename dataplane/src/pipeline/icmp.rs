//! ICMP errors: the router's own voice (SPEC.md "ICMP errors", RFC 792, RFC 1812 section
//! 4.3.2, RFC 1191).
//!
//! A stage that drops a packet for TTL expiry, for no route (or an unreachable or prohibit
//! route), or for a size over the path MTU with DF set, names the ICMP error it deserves
//! ([`IcmpError`]). This stage decides whether to send it (the never-rules, then the rate
//! limit) and builds it in the offending packet's own buffer: the quote stays where it is,
//! cut to fit 576 bytes (and the path back), and the new IPv4 and ICMP headers are
//! prepended. The error goes back the way the packet came: into the ingress tunnel (with
//! that tunnel's key, sequence number and checksum), or natively out of the ingress port
//! to the frame's sender.
//!
//! The offending packet is counted under its drop reason whether or not an error is sent.
//!
//! Echo requests to our addresses are answered here too ([`echo`]), in the request's own
//! buffer, the same way back: natively to the frame's sender, or into the tunnel the
//! request came through (SPEC.md ICMP errors, rule 5).

use super::action::{Action, DropReason};
use super::counters::Counters;
use super::{encap, Ident, Inner, Verdict};
use crate::buffer::PacketBuf;
use crate::tables::{PortIndex, Snapshot, TunnelId};
use crate::wire::icmp::{self, IcmpErrorRepr, IcmpType};
use crate::wire::ipv4::{is_martian_source, Ecn};
use crate::wire::{checksum, EthernetAddress, IpProtocol, Ipv4Addr, Ipv4Packet, Ipv4Repr};
use crate::wire::{icmpv6, ipv6, Icmpv6ErrorRepr, Ipv6Addr, Ipv6Packet, Ipv6Repr};

/// The DSCP of our ICMP errors: CS6, network control (Linux's IPTOS_PREC_INTERNETCONTROL).
const DSCP_NETWORK_CONTROL: u8 = 48;
/// The TTL of our ICMP errors.
const TTL: u8 = 64;
/// IPv4 and ICMP headers of an error.
const HEADERS: usize = 20 + icmp::HEADER_LEN;

/// The way a packet came, which its ICMP error takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Back {
    /// Into the tunnel it arrived through.
    Tunnel(TunnelId),
    /// Natively out of the port it arrived on, to the frame's sender.
    Native {
        port: PortIndex,
        mac: EthernetAddress,
    },
    /// Nowhere (not yet known).
    #[default]
    None,
}

/// The ICMP error a drop deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError {
    pub repr: IcmpErrorRepr,
    pub reason: DropReason,
    pub back: Back,
}

/// What counts as one ICMP error sent, by kind (the counters' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IcmpKind {
    /// Time Exceeded, TTL exceeded in transit (type 11, code 0).
    TimeExceeded = 0,
    /// Destination Unreachable, net (type 3, code 0).
    UnreachableNet = 1,
    /// Destination Unreachable, communication administratively prohibited (type 3, code 13).
    UnreachableProhibited = 2,
    /// Destination Unreachable, fragmentation needed and DF set (type 3, code 4).
    FragmentationNeeded = 3,
    /// ICMPv6 Time Exceeded, hop limit exceeded in transit (type 3, code 0).
    Icmpv6TimeExceeded = 4,
    /// ICMPv6 Destination Unreachable, no route to destination (type 1, code 0).
    Icmpv6NoRoute = 5,
    /// ICMPv6 Destination Unreachable, administratively prohibited (type 1, code 1).
    Icmpv6Prohibited = 6,
    /// ICMPv6 Packet Too Big (type 2, code 0).
    Icmpv6PacketTooBig = 7,
}

impl IcmpKind {
    /// Number of kinds.
    pub const COUNT: usize = 8;
    /// All kinds, in counter order.
    pub const ALL: [IcmpKind; Self::COUNT] = [
        IcmpKind::TimeExceeded,
        IcmpKind::UnreachableNet,
        IcmpKind::UnreachableProhibited,
        IcmpKind::FragmentationNeeded,
        IcmpKind::Icmpv6TimeExceeded,
        IcmpKind::Icmpv6NoRoute,
        IcmpKind::Icmpv6Prohibited,
        IcmpKind::Icmpv6PacketTooBig,
    ];

    /// The counter name.
    pub const fn name(self) -> &'static str {
        match self {
            IcmpKind::TimeExceeded => "time_exceeded",
            IcmpKind::UnreachableNet => "unreachable_net",
            IcmpKind::UnreachableProhibited => "unreachable_prohibited",
            IcmpKind::FragmentationNeeded => "fragmentation_needed",
            IcmpKind::Icmpv6TimeExceeded => "icmpv6_time_exceeded",
            IcmpKind::Icmpv6NoRoute => "icmpv6_no_route",
            IcmpKind::Icmpv6Prohibited => "icmpv6_prohibited",
            IcmpKind::Icmpv6PacketTooBig => "icmpv6_packet_too_big",
        }
    }

    /// The ICMPv6 kind that stands for this ICMP kind (itself if it is ICMPv6's).
    pub fn ipv6(self) -> IcmpKind {
        match self {
            IcmpKind::TimeExceeded => IcmpKind::Icmpv6TimeExceeded,
            IcmpKind::UnreachableNet => IcmpKind::Icmpv6NoRoute,
            IcmpKind::UnreachableProhibited => IcmpKind::Icmpv6Prohibited,
            IcmpKind::FragmentationNeeded => IcmpKind::Icmpv6PacketTooBig,
            k => k,
        }
    }

    /// The kind of an error, ICMP or (`v6`) ICMPv6.
    pub(crate) fn of_family(repr: IcmpErrorRepr, v6: bool) -> IcmpKind {
        if !v6 {
            return Self::of(repr);
        }
        match repr {
            IcmpErrorRepr::TimeExceeded => IcmpKind::Icmpv6TimeExceeded,
            IcmpErrorRepr::FragmentationNeeded { .. } => IcmpKind::Icmpv6PacketTooBig,
            IcmpErrorRepr::Unreachable(13) => IcmpKind::Icmpv6Prohibited,
            IcmpErrorRepr::Unreachable(_) => IcmpKind::Icmpv6NoRoute,
        }
    }

    fn of(repr: IcmpErrorRepr) -> IcmpKind {
        match repr {
            IcmpErrorRepr::TimeExceeded => IcmpKind::TimeExceeded,
            IcmpErrorRepr::FragmentationNeeded { .. } => IcmpKind::FragmentationNeeded,
            IcmpErrorRepr::Unreachable(13) => IcmpKind::UnreachableProhibited,
            IcmpErrorRepr::Unreachable(_) => IcmpKind::UnreachableNet,
        }
    }
}

/// One worker's share of the ICMP rate limit: a token bucket in nanotokens (a message costs
/// 10^9), refilled from the clock the worker gives the pipeline once per burst.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limiter {
    /// Nanotokens available; `None` until the first message is asked for (the bucket
    /// starts full).
    tokens: Option<u64>,
    /// When the bucket was last refilled (nanoseconds, the worker's clock).
    last_ns: u64,
}

const NANO: u64 = 1_000_000_000;

impl Limiter {
    /// Take a token for one message at `now_ns`, with `rate`/s and `burst` for this worker.
    pub(crate) fn take(&mut self, now_ns: u64, rate: u64, burst: u64) -> bool {
        let cap = burst.saturating_mul(NANO);
        let elapsed = now_ns.saturating_sub(self.last_ns).min(1_000 * NANO);
        self.last_ns = self.last_ns.max(now_ns);
        let tokens = match self.tokens {
            None => cap,
            Some(t) => t.saturating_add(elapsed.saturating_mul(rate)).min(cap),
        };
        if tokens >= NANO {
            self.tokens = Some(tokens - NANO);
            true
        } else {
            self.tokens = Some(tokens);
            false
        }
    }
}

/// Whether the offending packet (an IPv4 packet, header checked) may be answered with an
/// ICMP error at all (SPEC.md ICMP errors, rule 1; RFC 1812 section 4.3.2.7): not about an
/// ICMP error, a non-first fragment, a packet to a broadcast or multicast address, or a
/// packet whose source is martian, ours, or not a unicast address.
fn may_answer(snap: &Snapshot, packet: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.frag_offset() != 0
        || dst.is_multicast()
        || dst.is_broadcast()
        || is_martian_source(src)
        || snap.is_local(u32::from(src))
    {
        return false;
    }
    if ip.protocol() == IpProtocol::ICMP {
        // Its type decides; a packet too short to show one is no packet to answer.
        return match ip.payload().first() {
            Some(&t) => !IcmpType(t).is_error(),
            None => false,
        };
    }
    true
}

/// Our address facing the sender, the path's MTU back, and the way back.
fn path_back(snap: &Snapshot, back: Back) -> Option<(Ipv4Addr, usize)> {
    match back {
        Back::Tunnel(id) => {
            // Our address inside the tunnel where it has one, else its endpoint; for a
            // tunnel with IPv6 endpoints (no IPv4 one), its port's first IPv4 address.
            let t = snap.tunnels().hot(id)?;
            let ours = if t.link != 0 {
                Ipv4Addr::from(t.link)
            } else if t.local != 0 {
                Ipv4Addr::from(t.local)
            } else {
                *snap.port(t.port)?.addrs.first()?
            };
            Some((ours, t.inner_mtu()))
        }
        Back::Native { port, .. } => {
            let p = snap.port(port)?;
            Some((*p.addrs.first()?, usize::from(p.mtu)))
        }
        Back::None => None,
    }
}

/// Answer a dropped packet with its ICMP error, if the rules and the rate limit allow. The
/// packet starts at the offending IPv4 packet. Returns the action for the buffer: a reply
/// to send, or the drop.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) fn answer<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    err: IcmpError,
    ident: &mut Ident,
    counters: &mut Counters,
    limiter: &mut Limiter,
    clock: super::Clock,
    workers: usize,
) -> (Action, usize) {
    let dropped = (Action::Drop(err.reason), 0);
    if pkt.data().first().is_some_and(|b| b >> 4 == 6) {
        return answer6(pkt, snap, err, ident, counters, limiter, clock, workers);
    }
    if !may_answer(snap, pkt.data()) {
        return dropped;
    }
    let Some((source, path_mtu)) = path_back(snap, err.back) else {
        return dropped;
    };
    let limit = snap.icmp();
    let workers = workers.max(1) as u64;
    let rate = u64::from(limit.rate) / workers;
    let burst = u64::from(limit.burst).div_ceil(workers);
    if limit.rate == 0 || limit.burst == 0 || !limiter.take(clock.now(), rate, burst) {
        counters.icmp_rate_limited += 1;
        return dropped;
    }

    // The quote: as much of the packet as fits in 576 bytes and in the path back, as it
    // arrived (RFC 1812 4.3.2.3): a drop after routing undoes the TTL decrement.
    if err.reason != DropReason::TtlExceeded {
        let d = pkt.data_mut();
        let old = u16::from_be_bytes([d[8], d[9]]);
        let sum = u16::from_be_bytes([d[10], d[11]]);
        let new = old.wrapping_add(0x0100);
        d[8..10].copy_from_slice(&new.to_be_bytes());
        d[10..12].copy_from_slice(&checksum::update_u16(sum, old, new).to_be_bytes());
    }
    let (sender, len) = {
        let d = pkt.data();
        (
            Ipv4Addr::new(d[12], d[13], d[14], d[15]),
            usize::from(u16::from_be_bytes([d[2], d[3]])).min(d.len()),
        )
    };
    let datagram = icmp::MAX_ERROR_DATAGRAM.min(path_mtu);
    let quote = len.min(datagram - HEADERS);
    if pkt.trim_back(pkt.len() - quote).is_err() {
        return dropped;
    }
    let Ok(h) = pkt.prepend(HEADERS) else {
        return dropped;
    };
    let repr = Ipv4Repr {
        src_addr: source,
        dst_addr: sender,
        next_header: IpProtocol::ICMP,
        payload_len: icmp::HEADER_LEN + quote,
        hop_limit: TTL,
        dscp: DSCP_NETWORK_CONTROL,
        ecn: Ecn::NotEct,
        dont_frag: false,
        ident: ident.next_ident(),
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut h[..20]));
    let message = &mut pkt.data_mut()[20..];
    err.repr.emit(message);

    let inner = Inner {
        src: u32::from(source),
        dst: u32::from(sender),
        len: HEADERS + quote,
        tos: DSCP_NETWORK_CONTROL << 2,
        ttl: TTL,
        ..Inner::default()
    };
    let sent = match err.back {
        Back::Tunnel(id) => encap::encapsulate(pkt, &inner, snap, id, ident, counters),
        Back::Native { port, mac } => match snap.port(port) {
            Some(p) => encap::native(pkt, &inner, port, p.mac, Some(mac), p.mtu),
            None => Err(Verdict::Drop(err.reason)),
        },
        Back::None => Err(Verdict::Drop(err.reason)),
    };
    match sent {
        Ok((port, frame_len)) => {
            counters.icmp_sent[IcmpKind::of(err.repr) as usize] += 1;
            (
                Action::Reply {
                    port,
                    reason: err.reason,
                },
                frame_len,
            )
        }
        _ => dropped,
    }
}

/// Take a token of the rate limit for one message; counts `icmp_rate_limited` when there is
/// none.
fn allowed(
    snap: &Snapshot,
    counters: &mut Counters,
    limiter: &mut Limiter,
    clock: super::Clock,
    workers: usize,
) -> bool {
    let limit = snap.icmp();
    let workers = workers.max(1) as u64;
    let rate = u64::from(limit.rate) / workers;
    let burst = u64::from(limit.burst).div_ceil(workers);
    if limit.rate == 0 || limit.burst == 0 || !limiter.take(clock.now(), rate, burst) {
        counters.icmp_rate_limited += 1;
        return false;
    }
    true
}

/// The ICMPv6 error for an IPv6 packet (RFC 4443), the same way as [`answer`]: the packet
/// starts at the offending IPv6 header (inside a tunnel: IPv6 arrives no other way). Never
/// about an ICMPv6 error (RFC 4443 section 2.4 (e)) as far as the fixed header shows, nor
/// to a source that is not a unicast address of somebody else; sent from the ingress
/// tunnel's `link6` (none without it), hop limit 64, at most 1,280 bytes and the way back's
/// MTU, quoting the packet as it arrived.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn answer6<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    err: IcmpError,
    ident: &mut Ident,
    counters: &mut Counters,
    limiter: &mut Limiter,
    clock: super::Clock,
    workers: usize,
) -> (Action, usize) {
    let dropped = (Action::Drop(err.reason), 0);
    // Our address facing the sender, and the largest packet the way back takes: the
    // tunnel's `link6` and inner MTU, or the arrival port's first global IPv6 address (its
    // link-local one for a link-local sender) and MTU.
    let (ours, path_mtu) = match err.back {
        Back::Tunnel(id) => match snap.tunnels().hot(id).filter(|t| t.link6 != 0) {
            Some(t) => (Ipv6Addr::from(t.link6), t.inner_mtu()),
            None => return dropped,
        },
        Back::Native { port, .. } => {
            let Some(p) = snap.port(port) else {
                return dropped;
            };
            let sender_link_local = Ipv6Packet::new_checked(pkt.data())
                .is_ok_and(|ip| ipv6::is_link_local(ip.src_bits()));
            let ours = if sender_link_local {
                Some(p.link_local())
            } else {
                p.addrs6.first().copied()
            };
            match ours {
                Some(a) => (a, usize::from(p.mtu)),
                None => return dropped,
            }
        }
        Back::None => return dropped,
    };
    let ours_bits = u128::from(ours);
    let (sender, len) = {
        let Ok(ip) = Ipv6Packet::new_checked(pkt.data()) else {
            return dropped;
        };
        let src = ip.src_bits();
        let about_an_error = ip.next_header() == IpProtocol::ICMPV6
            && ip.payload().first().map_or(true, |&t| icmpv6::is_error(t));
        if about_an_error
            || ipv6::is_invalid_source(src)
            || ipv6::is_martian_destination(src)
            || ipv6::is_martian_destination(ip.dst_bits())
            || src == ours_bits
        {
            return dropped;
        }
        (ip.src_addr(), ip.total_len().min(pkt.len()))
    };
    if !allowed(snap, counters, limiter, clock, workers) {
        return dropped;
    }
    // The quote as the packet arrived: a drop after routing undoes the hop limit's
    // decrement (no checksum covers it).
    if err.reason != DropReason::TtlExceeded {
        let d = pkt.data_mut();
        d[7] = d[7].wrapping_add(1);
    }
    let packet = icmpv6::MAX_ERROR_PACKET.min(path_mtu);
    let quote = len.min(packet - HEADERS6);
    if pkt.trim_back(pkt.len() - quote).is_err() {
        return dropped;
    }
    let Ok(h) = pkt.prepend(HEADERS6) else {
        return dropped;
    };
    let message_len = icmpv6::HEADER_LEN + quote;
    Ipv6Repr {
        src_addr: ours,
        dst_addr: sender,
        next_header: IpProtocol::ICMPV6,
        payload_len: message_len,
        hop_limit: TTL,
        traffic_class: DSCP_NETWORK_CONTROL << 2,
    }
    .emit(h);
    let repr = match err.repr {
        IcmpErrorRepr::TimeExceeded => Icmpv6ErrorRepr::TimeExceeded,
        IcmpErrorRepr::FragmentationNeeded { mtu } => Icmpv6ErrorRepr::PacketTooBig {
            mtu: u32::from(mtu),
        },
        IcmpErrorRepr::Unreachable(13) => Icmpv6ErrorRepr::Unreachable(1),
        IcmpErrorRepr::Unreachable(_) => Icmpv6ErrorRepr::Unreachable(0),
    };
    repr.emit(&mut pkt.data_mut()[ipv6::HEADER_LEN..], ours, sender);

    let inner = Inner {
        len: HEADERS6 + quote,
        tos: DSCP_NETWORK_CONTROL << 2,
        ttl: TTL,
        dont_frag: true,
        v6: true,
        src6: ours_bits,
        dst6: u128::from(sender),
        ..Inner::default()
    };
    let sent = match err.back {
        Back::Tunnel(id) => encap::encapsulate(pkt, &inner, snap, id, ident, counters),
        Back::Native { port, mac } => match snap.port(port) {
            Some(p) => encap::native(pkt, &inner, port, p.mac, Some(mac), p.mtu),
            None => return dropped,
        },
        Back::None => return dropped,
    };
    match sent {
        Ok((port, frame_len)) => {
            counters.icmp_sent[IcmpKind::of_family(err.repr, true) as usize] += 1;
            (
                Action::Reply {
                    port,
                    reason: err.reason,
                },
                frame_len,
            )
        }
        _ => dropped,
    }
}

/// IPv6 and ICMPv6 headers of an error.
const HEADERS6: usize = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;

/// Whether `packet` (an IPv4 packet to one of our addresses, header checked) is an echo
/// request we answer: not a fragment, a whole ICMP message of type 8 with a good checksum,
/// from a unicast address that is not ours.
fn is_echo_request(snap: &Snapshot, packet: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    let src = ip.src_addr();
    if ip.protocol() != IpProtocol::ICMP
        || ip.is_fragment()
        || is_martian_source(src)
        || snap.is_local(u32::from(src))
    {
        return false;
    }
    let Ok(icmp) = icmp::IcmpPacket::new_checked(ip.payload()) else {
        return false;
    };
    icmp.msg_type() == IcmpType::ECHO_REQUEST && icmp.verify_checksum()
}

/// Answer an echo request to one of our addresses (the packet starts at its IPv4 header)
/// with the echo reply, built in its buffer and sent `back`. `None`: not an echo request we
/// answer, or no way back; the caller punts it as before, untouched.
#[inline(never)]
pub(crate) fn echo<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    back: Back,
    ident: &mut Ident,
    counters: &mut Counters,
) -> Option<(PortIndex, usize)> {
    if matches!(back, Back::Native { .. }) && pkt.data().first().is_some_and(|b| b >> 4 == 6) {
        return echo6(pkt, snap, back, counters);
    }
    if !is_echo_request(snap, pkt.data()) || matches!(back, Back::None) {
        return None;
    }
    let (ihl, total, tos, ours, sender) = {
        let ip = Ipv4Packet::new_unchecked(pkt.data());
        (
            ip.header_len(),
            usize::from(ip.total_len()),
            (ip.dscp() << 2) | ip.ecn().bits(),
            ip.dst_addr(),
            ip.src_addr(),
        )
    };
    // The reply's header takes the last 20 bytes of the request's (options are not
    // echoed); the message stays where it is.
    if pkt.trim_back(pkt.len() - total).is_err() || pkt.trim_front(ihl - 20).is_err() {
        return None;
    }
    let message_len = total - ihl;
    let d = pkt.data_mut();
    Ipv4Repr {
        src_addr: ours,
        dst_addr: sender,
        next_header: IpProtocol::ICMP,
        payload_len: message_len,
        hop_limit: TTL,
        dscp: tos >> 2,
        ecn: Ecn::from_bits(tos),
        dont_frag: false,
        ident: ident.next_ident(),
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut d[..20]));
    // Type 8 becomes 0: the checksum follows (RFC 1624).
    let sum = u16::from_be_bytes([d[22], d[23]]);
    d[20] = IcmpType::ECHO_REPLY.0;
    d[22..24].copy_from_slice(&checksum::update_u16(sum, 0x0800, 0x0000).to_be_bytes());

    let inner = Inner {
        src: u32::from(ours),
        dst: u32::from(sender),
        len: 20 + message_len,
        tos,
        ttl: TTL,
        ..Inner::default()
    };
    let sent = match back {
        Back::Tunnel(id) => encap::encapsulate(pkt, &inner, snap, id, ident, counters),
        Back::Native { port, mac } => {
            let p = snap.port(port)?;
            encap::native(pkt, &inner, port, p.mac, Some(mac), p.mtu)
        }
        Back::None => return None,
    };
    match sent {
        Ok((port, len)) => {
            counters.echo_replies += 1;
            Some((port, len))
        }
        // Too big for the way back, or no neighbour: the request is punted as it would
        // have been (its buffer no longer holds it, and nobody reads a punted packet's
        // bytes yet).
        _ => None,
    }
}

/// [`echo`] for an IPv6 packet to one of a port's IPv6 addresses (it starts at its IPv6
/// header, cut to its payload length): an ICMPv6 Echo Request (RFC 4443 4.1: type 128,
/// code 0, a good checksum, from a unicast address that is not the port's) becomes the
/// Echo Reply (4.2: type 129, the identifier, sequence number and data as they came) from
/// the address it was sent to, hop limit 64, sent back to the frame's source.
#[inline(never)]
fn echo6<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    back: Back,
    counters: &mut Counters,
) -> Option<(PortIndex, usize)> {
    let Back::Native { port, mac } = back else {
        return None;
    };
    let p = snap.port(port)?;
    let (ours, sender, tc, len) = {
        let ip = Ipv6Packet::new_checked(pkt.data()).ok()?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let m = ip.payload();
        let request = ip.next_header() == IpProtocol::ICMPV6
            && m.len() >= icmpv6::HEADER_LEN
            && m[0] == icmpv6::ECHO_REQUEST
            && m[1] == 0
            && icmpv6::verify_checksum(m, src, dst);
        if !request
            || !p.has_addr6(dst)
            || ipv6::is_invalid_source(ip.src_bits())
            || p.has_addr6(src)
        {
            return None;
        }
        (dst, src, ip.traffic_class(), ip.total_len())
    };
    if pkt.len() != len {
        return None;
    }
    let d = pkt.data_mut();
    Ipv6Repr {
        src_addr: ours,
        dst_addr: sender,
        next_header: IpProtocol::ICMPV6,
        payload_len: len - ipv6::HEADER_LEN,
        hop_limit: TTL,
        traffic_class: tc,
    }
    .emit(d);
    // Type 128 becomes 129; the pseudo-header holds the same two addresses (RFC 1624).
    let at = ipv6::HEADER_LEN;
    let sum = u16::from_be_bytes([d[at + 2], d[at + 3]]);
    d[at] = icmpv6::ECHO_REPLY;
    let sum = checksum::update_u16(
        sum,
        u16::from(icmpv6::ECHO_REQUEST) << 8,
        u16::from(icmpv6::ECHO_REPLY) << 8,
    );
    d[at + 2..at + 4].copy_from_slice(&sum.to_be_bytes());
    let inner = Inner {
        len,
        v6: true,
        ..Inner::default()
    };
    match encap::native(pkt, &inner, port, p.mac, Some(mac), p.mtu) {
        Ok((port, len)) => {
            counters.echo_replies += 1;
            Some((port, len))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_starts_full_and_refills_at_the_rate() {
        let mut l = Limiter::default();
        // 1,000/s, bursts of 50: 50 at once, then one a millisecond.
        let t0 = 5 * NANO;
        assert_eq!((0..100).filter(|_| l.take(t0, 1000, 50)).count(), 50);
        assert!(!l.take(t0 + 999_999, 1000, 50));
        assert!(l.take(t0 + 1_000_000, 1000, 50));
        assert!(!l.take(t0 + 1_000_000, 1000, 50));
        // A quiet second refills the burst, no more.
        let t1 = t0 + 2 * NANO;
        assert_eq!((0..100).filter(|_| l.take(t1, 1000, 50)).count(), 50);
        // Over ten simulated seconds of demand every 100 µs: the rate, plus the burst.
        let mut sent = 0;
        let start = t1 + NANO;
        for i in 0..100_000u64 {
            if l.take(start + i * 100_000, 1000, 50) {
                sent += 1;
            }
        }
        assert!((10_000..=10_050).contains(&sent), "{sent} sent in 10 s");
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing() {
        let mut l = Limiter::default();
        assert!(l.take(10 * NANO, 1, 1));
        assert!(!l.take(5 * NANO, 1, 1));
        assert!(!l.take(10 * NANO, 1, 1));
        assert!(l.take(11 * NANO, 1, 1));
    }
}
