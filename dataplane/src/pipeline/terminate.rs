//! Tunnel termination: find the tunnel, check GRE, strip the outer headers, check the inner
//! packet, the source (BCP 38), ECN (RFC 6040) and TTL (SPEC.md "Tunnel termination").

use super::action::{DropReason, Event, PuntReason};
use super::counters::Counters;
use super::icmp::{Back, IcmpError};
use super::{Inner, Verdict};
use crate::buffer::PacketBuf;
use crate::tables::tunnel::TunnelHot;
use crate::tables::{PortIndex, SequenceCheck, Snapshot, TunnelId, TunnelKey, TunnelKey6};
use crate::wire::{
    ethernet, gre, ipv4::Ecn, ipv6, EtherType, EthernetAddress, IcmpErrorRepr, IpProtocol,
    Ipv4Packet, Ipv6Packet,
};

/// Sets of a [`TunnelMemo`] (a power of two), of two ways each: 16 KiB of `u16` ids.
const MEMO_SETS: usize = 4096;
/// An unused way. It is checked like any guess (it can only match a tunnel in slot 65535,
/// which is then the right one); tunnels past 65535 always take the hash lookup.
const MEMO_EMPTY: u16 = u16::MAX;

/// One worker's memo of tunnel lookups, kept across bursts and snapshots: a two-way
/// set-associative array from a hash of the receive-side key to the tunnel's id.
///
/// A way is only a guess: it is used after the snapshot's tunnel at that id turns out to
/// have exactly the packet's key (local, remote, protocol, GRE key). Keys are unique within
/// a snapshot (the builder refuses duplicates), so a confirmed guess is the tunnel the
/// snapshot's hash index would return, and a stale way (tunnel removed or renumbered by a
/// new snapshot, or another key of the set) costs the hash lookup it would have cost
/// anyway. The tunnel's entry is loaded by the packet path in any case; the memo saves the
/// hash and the probe of the index (the largest single cost of a GRE packet with a
/// thousand tunnels).
#[derive(Clone)]
pub(crate) struct TunnelMemo {
    sets: Box<[[u16; 2]; MEMO_SETS]>,
}

impl Default for TunnelMemo {
    fn default() -> Self {
        TunnelMemo {
            sets: Box::new([[MEMO_EMPTY; 2]; MEMO_SETS]),
        }
    }
}

impl core::fmt::Debug for TunnelMemo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let used = self
            .sets
            .iter()
            .flatten()
            .filter(|&&s| s != MEMO_EMPTY)
            .count();
        f.debug_struct("TunnelMemo").field("used", &used).finish()
    }
}

impl TunnelMemo {
    /// The set a receive-side key falls in.
    #[inline(always)]
    fn set_of(local: u32, remote: u32, gre_key: Option<u32>) -> usize {
        let h = remote ^ gre_key.unwrap_or(0).rotate_left(16) ^ local.rotate_left(8);
        (h.wrapping_mul(0x9e37_79b1) >> (32 - MEMO_SETS.trailing_zeros())) as usize % MEMO_SETS
    }

    /// The tunnel whose receive-side key this is, arriving on `port`, and its hot entry.
    /// The key comes as fields (in registers): a `TunnelKey` built on the stack and
    /// compared whole is read back with wider loads than the stores that wrote it, and
    /// such loads wait.
    #[inline]
    pub(crate) fn lookup<'s>(
        &mut self,
        snap: &'s Snapshot,
        local: u32,
        remote: u32,
        protocol: IpProtocol,
        gre_key: Option<u32>,
        port: PortIndex,
    ) -> Option<(TunnelId, &'s TunnelHot)> {
        if let Some(found) = self.hit(snap, local, remote, protocol.0, gre_key, port) {
            return Some(found);
        }
        let set = Self::set_of(local, remote, gre_key);
        self.miss(snap, set, local, remote, protocol, gre_key, port)
    }

    /// [`TunnelMemo::lookup`] without the miss: the tunnel when one the memo holds
    /// receives the key, else `None` (and the memo unchanged).
    #[inline(always)]
    pub(crate) fn hit<'s>(
        &self,
        snap: &'s Snapshot,
        local: u32,
        remote: u32,
        protocol: u8,
        gre_key: Option<u32>,
        port: PortIndex,
    ) -> Option<(TunnelId, &'s TunnelHot)> {
        let ways = self.sets[Self::set_of(local, remote, gre_key)];
        for guess in ways {
            let id = TunnelId(u32::from(guess));
            if let Some(t) = snap.tunnels().hot(id) {
                if t.receives(local, remote, protocol, gre_key, port) {
                    return Some((id, t));
                }
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn miss<'s>(
        &mut self,
        snap: &'s Snapshot,
        set: usize,
        local: u32,
        remote: u32,
        protocol: IpProtocol,
        gre_key: Option<u32>,
        port: PortIndex,
    ) -> Option<(TunnelId, &'s TunnelHot)> {
        let key = TunnelKey {
            local,
            remote,
            protocol: protocol.0,
            gre_key,
        };
        let id = snap.tunnels().lookup(&key)?;
        let t = snap.tunnels().hot(id)?;
        if let Ok(short) = u16::try_from(id.0) {
            // Most recent first; the older way goes.
            let ways = &mut self.sets[set % MEMO_SETS];
            *ways = [short, ways[0]];
        }
        // A tunnel's packets come from its client router, on the port that faces it: the
        // same endpoints and key arriving on another port are somebody else's.
        (t.port == port).then_some((id, t))
    }
}

/// What ingress found out about the outer headers of a tunnel packet for us.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outer {
    /// The outer IPv4 header's length (it follows Ethernet).
    pub hlen: usize,
    /// The frame's length: Ethernet plus the outer IPv4 total length.
    pub frame_len: usize,
    pub protocol: IpProtocol,
    /// Our endpoint (outer destination), host order.
    pub local: u32,
    /// The client's endpoint (outer source), host order.
    pub remote: u32,
    pub ecn: Ecn,
    /// The port the packet arrived on.
    pub port: PortIndex,
}

/// Terminate a tunnel packet whose outer headers ingress checked. On `Ok` the packet starts
/// at the inner IPv4 header, TTL decremented.
///
/// The GRE header is checked before the tunnel lookup (SPEC.md, tunnel termination step 2):
/// a malformed header is named for what it is, not for a key its layout misplaces. A GRE
/// sequence number only moves the tunnel's state once the packet has passed every check of
/// termination (a punt to us counts as passing; a drop never moves it).
#[inline]
pub(crate) fn terminate<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    counters: &mut Counters,
    memo: &mut TunnelMemo,
    outer: Outer,
    out: &mut Inner,
) -> Result<(), Verdict> {
    let Outer {
        hlen: outer_hlen,
        frame_len,
        protocol,
        local,
        remote,
        ecn: outer_ecn,
        port,
    } = outer;
    // A tunnel's packets come from its client router, on the port that faces it (the
    // tunnel's egress port): the same endpoints and key arriving on another port are
    // somebody else's, `no_tunnel` (TESTPLAN AUTH-6).
    let l3 = ethernet::HEADER_LEN + outer_hlen;
    terminate_via(
        pkt,
        snap,
        counters,
        l3,
        frame_len,
        protocol,
        outer_ecn,
        out,
        |protocol, key| memo.lookup(snap, local, remote, protocol, key, port),
    )
}

/// What ingress found out about the outer IPv6 header of a tunnel packet for us.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outer6 {
    /// The frame's length: Ethernet, the IPv6 header and its payload.
    pub frame_len: usize,
    /// The fixed header's next header: 47, 4 or 41.
    pub protocol: IpProtocol,
    /// From the traffic class.
    pub ecn: Ecn,
    /// The port the packet arrived on.
    pub port: PortIndex,
}

/// [`terminate`] for a tunnel with IPv6 endpoints (GRE over IPv6, RFC 7676; IP in IPv6,
/// RFC 2473): the same checks, in the same order, with the tunnel found by its IPv6
/// endpoints (the snapshot's IPv6 index; no memo) and the payload right after the 40-byte
/// IPv6 header (classify refused extension headers). The outer hop limit is not looked at:
/// we are the endpoint.
#[inline(never)]
pub(crate) fn terminate6<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    counters: &mut Counters,
    outer: Outer6,
    out: &mut Inner,
) -> Result<(), Verdict> {
    let Outer6 {
        frame_len,
        protocol,
        ecn,
        port,
    } = outer;
    // The addresses, from the outer header classify checked (the packet still starts at
    // Ethernet).
    let (local, remote) = match pkt.data().get(ethernet::HEADER_LEN..) {
        Some(l3) if l3.len() >= ipv6::HEADER_LEN => {
            let ip = Ipv6Packet::new_unchecked(l3);
            (ip.dst_bits(), ip.src_bits())
        }
        _ => return Err(Verdict::Drop(DropReason::BadIpv6)),
    };
    terminate_via(
        pkt,
        snap,
        counters,
        ethernet::HEADER_LEN + ipv6::HEADER_LEN,
        frame_len,
        protocol,
        ecn,
        out,
        |protocol, gre_key| {
            let key = TunnelKey6 {
                local,
                remote,
                protocol: protocol.0,
                gre_key,
            };
            let id = snap.tunnels().lookup6(&key)?;
            let t = snap.tunnels().hot(id)?;
            (t.port == port && t.has(TunnelHot::VALID)).then_some((id, t))
        },
    )
}

/// The body of [`terminate`] and [`terminate6`]: the outer header ends at `l3`, and
/// `lookup` finds the tunnel by protocol and GRE key (its endpoints it knows).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn terminate_via<'s, B: PacketBuf>(
    pkt: &mut B,
    snap: &'s Snapshot,
    counters: &mut Counters,
    l3: usize,
    frame_len: usize,
    protocol: IpProtocol,
    outer_ecn: Ecn,
    out: &mut Inner,
    mut lookup: impl FnMut(IpProtocol, Option<u32>) -> Option<(TunnelId, &'s TunnelHot)>,
) -> Result<(), Verdict> {
    let mut strip = l3;
    let mut sequence = None;
    // IPv6 inside: GRE protocol type 0x86DD, or IP protocol 41 on an IPIP tunnel.
    let mut v6 = protocol == IpProtocol::IPV6;
    let (tunnel, t) = if protocol == IpProtocol::GRE {
        let payload = &pkt.data()[l3..];
        let Ok(g) = gre::GrePacket::new_checked(payload) else {
            return Err(Verdict::Drop(DropReason::BadGre));
        };
        if g.version() != 0 || g.forbidden_bits_set() {
            return Err(Verdict::Drop(DropReason::BadGre));
        }
        if g.reserved_ignored_bits() != 0 {
            counters.events[Event::GreReservedIgnored as usize] += 1;
        }
        if g.checksum_present() && !g.verify_checksum() {
            return Err(Verdict::Drop(DropReason::BadGreChecksum));
        }
        let (id, t) = lookup(protocol, g.key()).ok_or(Verdict::Drop(DropReason::NoTunnel))?;
        // From here on the packet is the tunnel's: its drops are counted under it.
        out.ingress_tunnel = Some(id);
        // RFC 7676: IPv6 in GRE is protocol type 0x86DD.
        v6 = match g.protocol_type() {
            EtherType::IPV4 => false,
            EtherType::IPV6 => true,
            _ => return Err(Verdict::Drop(DropReason::UnsupportedInner)),
        };
        if t.has(TunnelHot::SEQUENCE) {
            let Some(seq) = g.sequence() else {
                return Err(Verdict::Drop(DropReason::GreSequence));
            };
            let state = &snap
                .tunnels()
                .get(id)
                .ok_or(Verdict::Drop(DropReason::NoTunnel))?
                .state;
            match state.check_sequence(seq) {
                SequenceCheck::Old => return Err(Verdict::Drop(DropReason::GreSequence)),
                check => sequence = Some((seq, check)),
            }
        }
        strip += g.header_len();
        (id, t)
    } else {
        // An IPIP tunnel carries IPv6 too (RFC 4213, protocol 41), between the same
        // endpoints: the tunnel is found by its own protocol, 4.
        let found = lookup(IpProtocol::IPIP, None).ok_or(Verdict::Drop(DropReason::NoTunnel))?;
        out.ingress_tunnel = Some(found.0);
        found
    };
    let stripped = Stripped {
        tunnel,
        entry: t,
        strip,
        frame_len,
        outer_ecn,
        v6,
    };
    let Some((seq, check)) = sequence else {
        return inner(pkt, snap, counters, stripped, true, out);
    };
    // An unconfirmed jump is refused whatever follows (`gre_sequence`, in the order of the
    // checks, and counted nowhere else), and remembered only if the rest of the packet
    // passes.
    let confirmed = check == SequenceCheck::Accept;
    let r = inner(pkt, snap, counters, stripped, confirmed, out);
    let passed = matches!(r, Ok(_) | Err(Verdict::Punt(_) | Verdict::ToUs { .. }));
    let accepted = passed
        && snap
            .tunnels()
            .get(tunnel)
            .is_some_and(|e| e.state.accept_sequence(seq));
    if accepted {
        r
    } else if passed || !confirmed {
        Err(Verdict::Drop(DropReason::GreSequence))
    } else {
        r
    }
}
/// A tunnel packet whose outer headers passed: what the inner checks need.
#[derive(Clone, Copy)]
struct Stripped<'s> {
    tunnel: TunnelId,
    entry: &'s TunnelHot,
    /// Bytes to strip: Ethernet, outer IPv4, GRE.
    strip: usize,
    frame_len: usize,
    outer_ecn: Ecn,
    /// The inner packet is IPv6.
    v6: bool,
}

/// Strip the outer headers and check the inner packet (SPEC.md, tunnel termination steps
/// 3 to 8). `count`: whether the tunnel's counters and the events see this packet (not for
/// a packet that will be refused for its sequence number whatever else it is).
#[inline]
fn inner<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    counters: &mut Counters,
    outer: Stripped<'_>,
    count: bool,
    out: &mut Inner,
) -> Result<(), Verdict> {
    if outer.v6 {
        return inner6(pkt, snap, counters, outer, count, out);
    }
    let Stripped {
        tunnel,
        entry: t,
        strip,
        frame_len,
        outer_ecn,
        v6: _,
    } = outer;
    if pkt.trim_front(strip).is_err() {
        return Err(Verdict::Drop(DropReason::BadInnerIpv4));
    }
    if count {
        if let Some(c) = counters.tunnels.get_mut(tunnel.index()) {
            c.rx.add(frame_len);
        }
    }

    // The inner header: nobody has checked it, not even a NIC.
    let (len, total, src, dst, inner_proto, tos, ttl, dont_frag) = {
        let data = pkt.data();
        let Ok(ip) = Ipv4Packet::new_checked(data) else {
            return Err(Verdict::Drop(DropReason::BadInnerIpv4));
        };
        if !ip.verify_checksum() {
            return Err(Verdict::Drop(DropReason::BadInnerIpv4));
        }
        (
            data.len(),
            usize::from(ip.total_len()),
            u32::from(ip.src_addr()),
            u32::from(ip.dst_addr()),
            ip.protocol(),
            (ip.dscp() << 2) | ip.ecn().bits(),
            ip.ttl(),
            ip.dont_frag(),
        )
    };
    let inner_ecn = Ecn::from_bits(tos);
    let excess = len - total;
    if excess > 0 && pkt.trim_back(excess).is_err() {
        return Err(Verdict::Drop(DropReason::BadInnerIpv4));
    }
    // For us: one of our addresses, or ours inside this tunnel (its link address).
    if snap.is_local(dst) || (t.link != 0 && dst == t.link) {
        // Every protocol we terminate: GRE, IP in IP, IPv6 in IPv4.
        if inner_proto == IpProtocol::GRE
            || inner_proto == IpProtocol::IPIP
            || inner_proto == IpProtocol::IPV6
        {
            return Err(Verdict::Drop(DropReason::NestedTunnel));
        }
        return Err(Verdict::ToUs {
            punt: PuntReason::LocalInner,
            back: Back::Tunnel(tunnel),
        });
    }
    // The client router probing its own tunnel (a Cisco GRE keepalive): it goes back to the
    // router natively; the source check and the loop rules are not for it.
    let keepalive = src == t.local && dst == t.remote;
    // A backup tunnel accepts its primary's sources (`t.sources`: the slot whose they are).
    if !keepalive && snap.source_owner(src) != Some(TunnelId(t.sources)) {
        return Err(Verdict::Drop(DropReason::InnerSpoofed));
    }
    // RFC 6040 section 4.2, decapsulation (Figure 4).
    let mut new_ecn = None;
    let mut suspicious = false;
    match (outer_ecn, inner_ecn) {
        (Ecn::Ce, Ecn::NotEct) => return Err(Verdict::Drop(DropReason::EcnCeNotEct)),
        (Ecn::Ce, Ecn::Ect0 | Ecn::Ect1) => new_ecn = Some(Ecn::Ce),
        // Figure 4: outer ECT(1) over inner ECT(0) gives ECT(1).
        (Ecn::Ect1, Ecn::Ect0) => new_ecn = Some(Ecn::Ect1),
        (Ecn::Ect0 | Ecn::Ect1, Ecn::NotEct) => suspicious = true,
        _ => {}
    }
    count_event(counters, count && suspicious, Event::EcnSuspicious);
    if ttl <= 1 {
        return Err(time_exceeded(Back::Tunnel(tunnel)));
    }
    out.v6 = false;
    let mut ip = Ipv4Packet::new_unchecked(pkt.data_mut());
    let mut tos = tos;
    if let Some(ecn) = new_ecn {
        ip.set_ecn_incremental(ecn);
        tos = (tos & !0b11) | ecn.bits();
        count_event(counters, count && ecn == Ecn::Ce, Event::EcnCePropagated);
    }
    ip.decrement_ttl_incremental();
    // Written in place, field by field: a whole `Inner` built on the stack and copied
    // into the burst's array is read back with wider loads than the stores that wrote it.
    out.ingress_tunnel = Some(tunnel);
    out.back = Back::Tunnel(tunnel);
    out.keepalive = keepalive;
    out.src = src;
    out.dst = dst;
    out.len = total;
    out.tos = tos;
    out.ttl = ttl - 1;
    out.dont_frag = dont_frag;
    Ok(())
}

/// The TTL (hop limit) would reach zero here: ICMP time exceeded, sent back by `back`.
#[inline(always)]
fn time_exceeded(back: Back) -> Verdict {
    Verdict::Icmp(IcmpError {
        repr: IcmpErrorRepr::TimeExceeded,
        reason: DropReason::TtlExceeded,
        back,
    })
}

/// Counts `event` if `happened` (and the packet is one the events see).
#[inline(always)]
fn count_event(counters: &mut Counters, happened: bool, event: Event) {
    if happened {
        counters.events[event as usize] += 1;
    }
}

/// RFC 6040 section 4.2, decapsulation (Figure 4): the inner ECN field to write (if it
/// changes), whether the combination is suspicious (outer ECT over inner Not-ECT), or the
/// drop (outer CE over inner Not-ECT).
#[inline]
fn decap_ecn(outer: Ecn, inner: Ecn) -> Result<(Option<Ecn>, bool), Verdict> {
    match (outer, inner) {
        (Ecn::Ce, Ecn::NotEct) => Err(Verdict::Drop(DropReason::EcnCeNotEct)),
        (Ecn::Ce, Ecn::Ect0 | Ecn::Ect1) => Ok((Some(Ecn::Ce), false)),
        // Figure 4: outer ECT(1) over inner ECT(0) gives ECT(1).
        (Ecn::Ect1, Ecn::Ect0) => Ok((Some(Ecn::Ect1), false)),
        (Ecn::Ect0 | Ecn::Ect1, Ecn::NotEct) => Ok((None, true)),
        _ => Ok((None, false)),
    }
}

/// [`inner`] for an IPv6 packet (GRE 0x86DD, RFC 7676; protocol 41, RFC 4213): the fixed
/// header is checked (`bad_inner_ipv6`) and the packet trimmed to its payload length; the
/// source must be the tunnel's (BCP 38; never link-local); ECN on the traffic class (RFC
/// 6040) and the hop limit as for IPv4's TTL. Extension headers are neither read nor
/// changed: a router forwards on the fixed header (RFC 8200 section 4, RFC 7045).
#[inline(never)]
fn inner6<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    counters: &mut Counters,
    outer: Stripped<'_>,
    count: bool,
    out: &mut Inner,
) -> Result<(), Verdict> {
    let Stripped {
        tunnel,
        entry: t,
        strip,
        frame_len,
        outer_ecn,
        v6: _,
    } = outer;
    // IPv6 from here on, whatever the verdict (the trace names its ICMP errors so).
    out.v6 = true;
    if pkt.trim_front(strip).is_err() {
        return Err(Verdict::Drop(DropReason::BadInnerIpv6));
    }
    if count {
        if let Some(c) = counters.tunnels.get_mut(tunnel.index()) {
            c.rx.add(frame_len);
        }
    }
    let (len, total, src, dst, next, tc, hop) = {
        let data = pkt.data();
        let Ok(ip) = Ipv6Packet::new_checked(data) else {
            return Err(Verdict::Drop(DropReason::BadInnerIpv6));
        };
        (
            data.len(),
            ip.total_len(),
            ip.src_bits(),
            ip.dst_bits(),
            ip.next_header(),
            ip.traffic_class(),
            ip.hop_limit(),
        )
    };
    if ipv6::is_invalid_source(src) {
        return Err(Verdict::Drop(DropReason::BadInnerIpv6));
    }
    let excess = len - total;
    if excess > 0 && pkt.trim_back(excess).is_err() {
        return Err(Verdict::Drop(DropReason::BadInnerIpv6));
    }
    // For us: our address inside this tunnel. Only the fixed header's next header is
    // looked at: a tunnel packet behind extension headers is punted like any other. It goes
    // to the tunnel's host interface (`bb-<tunnel>`, which holds `link6`) where the tunnel
    // has one; the host's kernel answers what it is (an echo request included).
    if t.link6 != 0 && dst == t.link6 {
        if next == IpProtocol::GRE || next == IpProtocol::IPIP || next == IpProtocol::IPV6 {
            return Err(Verdict::Drop(DropReason::NestedTunnel));
        }
        return Err(Verdict::ToUs {
            punt: PuntReason::LocalInner,
            back: Back::Tunnel(tunnel),
        });
    }
    // A tunnel packet to one of our IPv6 tunnel endpoints (a port's IPv6 address) inside a
    // tunnel: never decapsulated again (no recursion, no loops), as for IPv4.
    if (next == IpProtocol::GRE || next == IpProtocol::IPIP || next == IpProtocol::IPV6)
        && snap.is_local6(core::net::Ipv6Addr::from(dst))
    {
        return Err(Verdict::Drop(DropReason::NestedTunnel));
    }
    // A backup tunnel accepts its primary's sources (`t.sources`).
    if ipv6::is_link_local(src) || snap.source_owner6(src) != Some(TunnelId(t.sources)) {
        return Err(Verdict::Drop(DropReason::InnerSpoofed));
    }
    let (new_ecn, suspicious) = decap_ecn(outer_ecn, Ecn::from_bits(tc))?;
    count_event(counters, count && suspicious, Event::EcnSuspicious);
    if hop <= 1 {
        return Err(time_exceeded(Back::Tunnel(tunnel)));
    }
    let mut ip = Ipv6Packet::new_unchecked(pkt.data_mut());
    let mut tc = tc;
    if let Some(ecn) = new_ecn {
        ip.set_ecn(ecn);
        tc = (tc & !0b11) | ecn.bits();
        count_event(counters, count && ecn == Ecn::Ce, Event::EcnCePropagated);
    }
    ip.decrement_hop_limit();
    out.set_tunnel6(tunnel, src, dst, total, tc, hop - 1);
    Ok(())
}

/// Prepare a transit packet (not for us, transit allowed on `port`): strip Ethernet, check
/// the source and the TTL.
///
/// On a client-role port the source gets the tunnels' check (BCP 38, SPEC.md tunnel
/// termination step 6): an address of a client's prefixes may arrive natively only on the
/// port that client's tunnel uses, and an address no client owns only on a port that also
/// has the internet role. A client can thus not send as another by leaving its tunnel.
///
/// On a LAN port (a client-site router's) only the site's own sources are accepted: a host
/// of the site sending as someone else (another site, the Internet) is dropped as
/// `lan_spoofed`, whatever it is sent to.
#[inline]
pub(crate) fn transit<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    port: PortIndex,
    out: &mut Inner,
) -> Result<(), Verdict> {
    let mac = match pkt.data().get(6..12) {
        Some(m) => EthernetAddress([m[0], m[1], m[2], m[3], m[4], m[5]]),
        None => return Err(Verdict::Drop(DropReason::BadIpv4)),
    };
    let back = Back::Native { port, mac };
    let v6 = pkt.data().get(12..14) == Some(&EtherType::IPV6.0.to_be_bytes()[..]);
    if pkt.trim_front(ethernet::HEADER_LEN).is_err() {
        return Err(Verdict::Drop(DropReason::BadIpv4));
    }
    if v6 {
        return transit6(pkt, snap, port, back, out);
    }
    let data = pkt.data_mut();
    let len = data.len();
    let mut ip = Ipv4Packet::new_unchecked(data);
    let src = u32::from(ip.src_addr());
    let roles = snap.port(port).map(|p| p.roles).unwrap_or_default();
    if roles.lan && !snap.site_source(src) {
        return Err(Verdict::Drop(DropReason::LanSpoofed));
    }
    if roles.client {
        let allowed = match snap.source_owner(src) {
            Some(owner) => snap
                .tunnels()
                .hot(owner)
                .is_some_and(|t| t.has(TunnelHot::VALID) && t.port == port),
            None => roles.internet,
        };
        if !allowed {
            return Err(Verdict::Drop(DropReason::InnerSpoofed));
        }
    }
    if ip.ttl() <= 1 {
        return Err(time_exceeded(back));
    }
    ip.decrement_ttl_incremental();
    out.v6 = false;
    out.ingress_tunnel = None;
    out.back = back;
    out.keepalive = false;
    out.src = src;
    out.dst = u32::from(ip.dst_addr());
    out.len = len;
    out.tos = (ip.dscp() << 2) | ip.ecn().bits();
    out.ttl = ip.ttl();
    out.dont_frag = ip.dont_frag();
    Ok(())
}

/// [`transit`] for a native IPv6 packet (the classifier checked its header and trimmed the
/// padding; it now starts at its IPv6 header): the same source checks against the tunnels'
/// IPv6 prefixes on a client port (BCP 38), then the hop limit (RFC 8200 section 3: at
/// most 1, Time Exceeded; else one less, no checksum to update).
fn transit6<B: PacketBuf>(
    pkt: &mut B,
    snap: &Snapshot,
    port: PortIndex,
    back: Back,
    out: &mut Inner,
) -> Result<(), Verdict> {
    let data = pkt.data_mut();
    let len = data.len();
    let Ok(mut ip) = Ipv6Packet::new_checked(data) else {
        return Err(Verdict::Drop(DropReason::BadInnerIpv6));
    };
    let src = ip.src_bits();
    // A link-local source never leaves its link (RFC 4291 2.5.6).
    if crate::wire::ipv6::is_link_local(src) {
        return Err(Verdict::Drop(DropReason::Martian));
    }
    // From one of our own addresses, yet arriving from outside (as IPv4's rule, SPEC.md
    // "Routing": a source that is ours is a loop or a forgery).
    if snap.is_local6(ip.src_addr()) {
        return Err(Verdict::Drop(DropReason::TunnelLoop));
    }
    let roles = snap.port(port).map(|p| p.roles).unwrap_or_default();
    if roles.client || roles.lan {
        let allowed = match snap.source_owner6(src) {
            Some(owner) => snap
                .tunnels()
                .hot(owner)
                .is_some_and(|t| t.has(TunnelHot::VALID) && t.port == port),
            None => roles.internet,
        };
        if !allowed {
            return Err(Verdict::Drop(DropReason::InnerSpoofed));
        }
    }
    if ip.hop_limit() <= 1 {
        return Err(time_exceeded(back));
    }
    ip.decrement_hop_limit();
    out.v6 = true;
    out.ingress_tunnel = None;
    out.back = back;
    out.keepalive = false;
    out.src = 0;
    out.dst = 0;
    out.src6 = src;
    out.dst6 = ip.dst_bits();
    out.len = len;
    out.tos = ip.traffic_class();
    out.ttl = ip.hop_limit();
    out.dont_frag = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{PortEntry, PortRoles, SnapshotBuilder, Tunnel, TunnelMode};
    use crate::wire::EthernetAddress;
    use core::net::Ipv4Addr;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn gre(name: &str, remote: u8, key: u32) -> Tunnel {
        let mut t = Tunnel::new(
            name,
            TunnelMode::Gre,
            LOCAL,
            Ipv4Addr::new(198, 51, 100, remote),
            0,
        );
        t.key = Some(key);
        t
    }

    fn builder() -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new();
        b.port(
            0,
            PortEntry {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                addrs: vec![LOCAL],
                addrs6: Vec::new(),
                mtu: 1500,
                roles: PortRoles {
                    client: true,
                    core: false,
                    internet: false,
                    lan: false,
                },
                transit: false,
                host_interface: false,
            },
        );
        b
    }

    fn find(memo: &mut TunnelMemo, snap: &Snapshot, remote: u8, key: u32) -> Option<TunnelId> {
        let remote = u32::from(Ipv4Addr::new(198, 51, 100, remote));
        memo.lookup(
            snap,
            u32::from(LOCAL),
            remote,
            IpProtocol::GRE,
            Some(key),
            0,
        )
        .map(|(id, _)| id)
    }

    /// The memo outlives snapshots: what it remembers must never beat the snapshot.
    #[test]
    fn memo_follows_the_snapshot() {
        let mut memo = TunnelMemo::default();
        let mut b = builder();
        b.tunnel(gre("a", 10, 1)).tunnel(gre("b", 20, 2));
        let s1 = b.build().unwrap();
        let a = find(&mut memo, &s1, 10, 1).unwrap();
        let bid = find(&mut memo, &s1, 20, 2).unwrap();
        assert_ne!(a, bid);
        // Remembered: same answers, and the same as the snapshot's own index.
        assert_eq!(find(&mut memo, &s1, 10, 1), Some(a));
        assert_eq!(s1.tunnels().lookup(&gre("a", 10, 1).key()), Some(a));
        assert_eq!(find(&mut memo, &s1, 10, 2), None);

        // "a" goes away and "c" comes with another key (in a's slot or a fresh one,
        // whatever the builder's policy): a's key is gone, whatever the memo remembers.
        b.remove_tunnel("a");
        b.tunnel(gre("c", 30, 3));
        let s2 = b.build().unwrap();
        let c = find(&mut memo, &s2, 30, 3).unwrap();
        assert_eq!(s2.tunnels().lookup(&gre("c", 30, 3).key()), Some(c));
        assert_eq!(find(&mut memo, &s2, 10, 1), None);
        assert_eq!(find(&mut memo, &s2, 20, 2), Some(bid));

        // a's key comes back on a new tunnel: found, whatever its slot.
        b.tunnel(gre("a2", 10, 1));
        let s3 = b.build().unwrap();
        let a2 = find(&mut memo, &s3, 10, 1).unwrap();
        assert_eq!(s3.tunnels().lookup(&gre("a2", 10, 1).key()), Some(a2));
        assert_eq!(find(&mut memo, &s3, 30, 3), Some(c));
    }

    /// More keys than one set holds: every lookup still answers as the index does.
    #[test]
    fn memo_under_collisions_answers_as_the_index() {
        let mut memo = TunnelMemo::default();
        let mut b = builder();
        for i in 0..200u32 {
            b.tunnel(gre(&format!("t{i}"), 10, i));
        }
        let s = b.build().unwrap();
        for round in 0..3 {
            for i in (0..200u32).rev().step_by(1 + round) {
                let want = s.tunnels().lookup(&gre("x", 10, i).key());
                assert!(want.is_some());
                assert_eq!(find(&mut memo, &s, 10, i), want);
            }
            assert_eq!(find(&mut memo, &s, 10, 1000), None);
        }
    }
}
