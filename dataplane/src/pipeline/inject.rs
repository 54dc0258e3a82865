//! What the host kernel sends through a host interface (the exception path's other way):
//! an IPv4 or IPv6 packet the kernel wrote into `bb-<tunnel>` is encapsulated into that
//! tunnel with the tunnel's own header (key, sequence number, checksum, DSCP, ECN and DF
//! policy; IPv6 as GRE protocol type 0x86DD or protocol 41); an IPv4 packet written into
//! `bb-<port>` leaves natively out of that port, its next hop resolved as a native route
//! through that port says, else the destination itself, and its MAC by the neighbour
//! table. IPv6 out of a port is dropped (`no_route`): there is no native IPv6 forwarding.
//!
//! The host is trusted to source what it likes (it is the appliance's own kernel), but its
//! packets are still checked as the wire's are: a malformed one is dropped and counted,
//! never sent. The TTL is the host's: the packet is ours, not forwarded.

use super::action::{Action, DropReason, Host};
use super::{encap, Inner, Pipeline, Verdict};
use crate::buffer::PacketBuf;
use crate::tables::{Snapshot, Target};
use crate::wire::{ipv6, Ipv4Packet, Ipv6Packet};
use core::net::Ipv4Addr;

impl Pipeline {
    /// Send a packet the host wrote into the interface of `from`: on return the buffer holds
    /// the frame to transmit (`Action::Transmit`), or the drop was counted. `pkt` starts at
    /// the IP header (IPv4 or IPv6, by its version).
    pub fn inject<B: PacketBuf>(&mut self, pkt: &mut B, snap: &Snapshot, from: Host) -> Action {
        self.counters.fit(snap.port_slots(), snap.tunnels().slots());
        let r = self.inject_inner(pkt, snap, from);
        let action = match r {
            Ok((out, len)) => {
                if let Some(c) = self.counters.ports.get_mut(usize::from(out)) {
                    c.tx.add(len);
                }
                Action::Transmit(out)
            }
            // No ICMP error to our own kernel: the interface's MTU is the path's, so a
            // packet too long for it is the kernel's mistake, counted as a drop.
            Err(Verdict::Icmp(e)) => Action::Drop(e.reason),
            Err(Verdict::Drop(r)) => Action::Drop(r),
            Err(Verdict::Punt(_) | Verdict::ToUs { .. } | Verdict::Probe) => {
                Action::Drop(DropReason::NotForUs)
            }
        };
        if let Action::Drop(r) = action {
            self.counters.drops[r as usize] += 1;
        }
        action
    }

    fn inject_inner<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        snap: &Snapshot,
        from: Host,
    ) -> Result<encap::Sent, Verdict> {
        if pkt.data().first().map(|b| b >> 4) == Some(6) {
            return self.inject6(pkt, snap, from);
        }
        let bad = Verdict::Drop(DropReason::BadIpv4);
        let inner = {
            let data = pkt.data();
            let ip = Ipv4Packet::new_checked(data).map_err(|_| bad)?;
            if !ip.verify_checksum() {
                return Err(bad);
            }
            Inner {
                src: u32::from(ip.src_addr()),
                dst: u32::from(ip.dst_addr()),
                len: usize::from(ip.total_len()),
                tos: (ip.dscp() << 2) | ip.ecn().bits(),
                ttl: ip.ttl(),
                dont_frag: ip.dont_frag(),
                ..Inner::default()
            }
        };
        let excess = pkt.len() - inner.len;
        if excess > 0 && pkt.trim_back(excess).is_err() {
            return Err(bad);
        }
        match from {
            Host::Tunnel(id) => {
                encap::encapsulate(pkt, &inner, snap, id, &mut self.ident, &mut self.counters)
            }
            Host::Port(port) => {
                let Some(entry) = snap.port(port) else {
                    return Err(Verdict::Drop(DropReason::NoRoute));
                };
                // A native route through this port names the next hop; anything else is
                // taken to be on the port's link.
                let dst_mac = match snap.routes().lookup(Ipv4Addr::from(inner.dst)) {
                    Some(nh) => match snap.target(nh) {
                        Target::Native {
                            port: p, dst_mac, ..
                        } if p == port => dst_mac,
                        _ => snap.neighbor(port, Ipv4Addr::from(inner.dst)),
                    },
                    None => snap.neighbor(port, Ipv4Addr::from(inner.dst)),
                };
                encap::native(pkt, &inner, port, entry.mac, dst_mac, entry.mtu)
            }
            // The prober is no interface: nothing is sent from it this way.
            Host::Prober => Err(Verdict::Drop(DropReason::NotForUs)),
        }
    }

    /// [`Pipeline::inject_inner`] for an IPv6 packet: its fixed header checked as the wire's
    /// are (`bad_inner_ipv6`: too short, a payload length past the end, a source no node
    /// may send from), trimmed to its payload length, and encapsulated into the tunnel.
    fn inject6<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        snap: &Snapshot,
        from: Host,
    ) -> Result<encap::Sent, Verdict> {
        let bad = Verdict::Drop(DropReason::BadInnerIpv6);
        let inner = {
            let ip = Ipv6Packet::new_checked(pkt.data()).map_err(|_| bad)?;
            if ipv6::is_invalid_source(ip.src_bits()) {
                return Err(bad);
            }
            Inner {
                len: ip.total_len(),
                tos: ip.traffic_class(),
                ttl: ip.hop_limit(),
                // IPv6 is never fragmented on the way: the outer header says so too.
                dont_frag: true,
                v6: true,
                src6: ip.src_bits(),
                dst6: ip.dst_bits(),
                ..Inner::default()
            }
        };
        let excess = pkt.len() - inner.len;
        if excess > 0 && pkt.trim_back(excess).is_err() {
            return Err(bad);
        }
        match from {
            Host::Tunnel(id) => {
                encap::encapsulate(pkt, &inner, snap, id, &mut self.ident, &mut self.counters)
            }
            // No native IPv6 forwarding out of a port; the prober sends no IPv6.
            Host::Port(_) | Host::Prober => Err(Verdict::Drop(DropReason::NoRoute)),
        }
    }
}
