//! Routing decisions after the longest-prefix match: hairpin and loop checks
//! (SPEC.md "Routing", RFC 2784 section 3.1, RFC 2003 section 3.2).

use super::action::DropReason;
use super::icmp::IcmpError;
use super::{Inner, Verdict};
use crate::lpm::NextHop;
use crate::tables::tunnel::TunnelHot;
use crate::tables::{Snapshot, Target, TunnelId};
use crate::wire::ipv4::is_martian_destination;
use crate::wire::EthernetAddress;
use crate::wire::IcmpErrorRepr;
use core::net::Ipv4Addr;

/// No usable route: ICMP destination unreachable with `code` (0, net unreachable; 13,
/// administratively prohibited) back the way the packet came, counted as `no_route`.
#[inline(always)]
fn unreachable(inner: &Inner, code: u8) -> Result<Target, Verdict> {
    Err(Verdict::Icmp(IcmpError {
        repr: IcmpErrorRepr::Unreachable(code),
        reason: DropReason::NoRoute,
        back: inner.back,
    }))
}

/// Resolve the LPM result for one packet into a target, or the drop that applies.
#[inline]
pub(crate) fn route(snap: &Snapshot, inner: &Inner, nh: NextHop) -> Result<Target, Verdict> {
    // Whatever the routes say (a default route covers these too).
    if is_martian_destination(Ipv4Addr::from(inner.dst)) {
        return Err(Verdict::Drop(DropReason::MartianDestination));
    }
    if nh.is_none() {
        return unreachable(inner, 0);
    }
    let target = snap.target(nh);
    if snap.is_local(inner.src) {
        return Err(Verdict::Drop(DropReason::TunnelLoop));
    }
    if let Some(ingress) = inner.ingress_tunnel.and_then(|id| snap.tunnels().hot(id)) {
        if ingress.remote == inner.dst {
            return Err(Verdict::Drop(DropReason::TunnelLoop));
        }
    }
    match target {
        // Silent, as Linux's blackhole routes are.
        Target::Blackhole => Err(Verdict::Drop(DropReason::NoRoute)),
        Target::Unreachable => unreachable(inner, 0),
        Target::Prohibit => unreachable(inner, 13),
        Target::Tunnel(egress) => into_tunnel(snap, inner, egress).map(|_| target),
        Target::Native { .. } | Target::Connected { .. } => Ok(target),
    }
}

/// The checks [`route`] makes on an IPv4 packet whose route leads into tunnel `egress`:
/// not back into the tunnel it came from (hairpin), and not to or from that tunnel's own
/// router (a loop). On `Ok`, the egress tunnel's entry. The fast path
/// ([`super::fast::forward`]) makes them through here too.
#[inline(always)]
pub(crate) fn into_tunnel<'s>(
    snap: &'s Snapshot,
    inner: &Inner,
    egress: TunnelId,
) -> Result<&'s TunnelHot, Verdict> {
    if inner.ingress_tunnel == Some(egress) {
        return Err(Verdict::Drop(DropReason::Hairpin));
    }
    let Some(e) = snap.tunnels().hot(egress) else {
        return Err(Verdict::Drop(DropReason::NoRoute));
    };
    if inner.dst == e.remote || inner.src == e.remote {
        return Err(Verdict::Drop(DropReason::TunnelLoop));
    }
    Ok(e)
}

/// Where a client router's keepalive goes: natively back toward the router, out of the
/// tunnel's port to its underlay next hop (SPEC.md tunnel termination step 5). Never into a
/// tunnel, whatever the routes say about the router's address.
#[inline]
pub(crate) fn reflect(snap: &Snapshot, inner: &Inner) -> Result<Target, Verdict> {
    let id = inner
        .ingress_tunnel
        .ok_or(Verdict::Drop(DropReason::NoRoute))?;
    let t = snap
        .tunnels()
        .hot(id)
        .ok_or(Verdict::Drop(DropReason::NoRoute))?;
    // A tunnel with IPv6 endpoints has no IPv4 endpoints for an IPv4 keepalive to be
    // between (its unused IPv4 fields are 0.0.0.0): such a packet is spoofed.
    if snap.tunnels().hot6(id).is_some() {
        return Err(Verdict::Drop(DropReason::InnerSpoofed));
    }
    let port = snap
        .port(t.port)
        .ok_or(Verdict::Drop(DropReason::NoRoute))?;
    let mac = |at: usize| {
        let h = &t.header[at..at + 6];
        EthernetAddress([h[0], h[1], h[2], h[3], h[4], h[5]])
    };
    Ok(Target::Native {
        port: t.port,
        src_mac: mac(6),
        dst_mac: t.has(TunnelHot::NEIGHBOR).then(|| mac(0)),
        mtu: port.mtu,
    })
}

/// [`route`] for an IPv6 packet: martian destinations (RFC 4291), the LPM result from the
/// IPv6 table, hairpin, and the loop rules (a packet from our own address inside its
/// tunnel). IPv6 routes lead into tunnels, natively out of a port, or to drops.
#[inline]
pub(crate) fn route6(snap: &Snapshot, inner: &Inner, nh: NextHop) -> Result<Target, Verdict> {
    if crate::wire::ipv6::is_martian_destination(inner.dst6) {
        return Err(Verdict::Drop(DropReason::MartianDestination));
    }
    if nh.is_none() {
        return unreachable(inner, 0);
    }
    if let Some(id) = inner.ingress_tunnel {
        if let Some(ingress) = snap.tunnels().hot(id) {
            if ingress.link6 != 0 && ingress.link6 == inner.src6 {
                return Err(Verdict::Drop(DropReason::TunnelLoop));
            }
        }
        // RFC 2473 section 4.1: to the ingress tunnel's own IPv6 endpoint.
        if snap
            .tunnels()
            .hot6(id)
            .is_some_and(|t| t.remote == inner.dst6)
        {
            return Err(Verdict::Drop(DropReason::TunnelLoop));
        }
    }
    let target = snap.target6(nh);
    match target {
        Target::Tunnel(egress) => into_tunnel6(snap, inner, egress).map(|_| target),
        // Natively out of a port (an IPv6 `[[route]]` with a port and next hop).
        Target::Native { .. } => Ok(target),
        Target::Blackhole | Target::Connected { .. } => Err(Verdict::Drop(DropReason::NoRoute)),
        // RFC 4443 codes travel as ICMP's here, and `icmp::answer6` maps them: 0 no route,
        // 13 (administratively prohibited) to ICMPv6's 1.
        Target::Unreachable => unreachable(inner, 0),
        Target::Prohibit => unreachable(inner, 13),
    }
}

/// The checks [`route6`] makes on an IPv6 packet whose route leads into tunnel `egress`:
/// not back into the tunnel it came from (hairpin), not to or from the egress tunnel's own
/// IPv6 endpoint, and not from its `link6` address (loops). On `Ok`, the egress tunnel's
/// entry. The fast path ([`super::fast::forward`]) makes them through here too.
#[inline(always)]
pub(crate) fn into_tunnel6<'s>(
    snap: &'s Snapshot,
    inner: &Inner,
    egress: TunnelId,
) -> Result<&'s TunnelHot, Verdict> {
    if inner.ingress_tunnel == Some(egress) {
        return Err(Verdict::Drop(DropReason::Hairpin));
    }
    // To or from the egress tunnel's own IPv6 endpoint: it would loop.
    if snap
        .tunnels()
        .hot6(egress)
        .is_some_and(|t| t.remote == inner.dst6 || t.remote == inner.src6)
    {
        return Err(Verdict::Drop(DropReason::TunnelLoop));
    }
    match snap.tunnels().hot(egress) {
        Some(e) if e.link6 == 0 || e.link6 != inner.src6 => Ok(e),
        Some(_) => Err(Verdict::Drop(DropReason::TunnelLoop)),
        None => Err(Verdict::Drop(DropReason::NoRoute)),
    }
}
