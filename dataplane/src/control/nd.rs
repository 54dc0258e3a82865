//! IPv6 Neighbor Discovery (RFC 4861) for our addresses, answered in place as ARP is
//! ([`super::arp`]): a Neighbor Solicitation for one of the port's IPv6 addresses (its
//! global ones and its link-local one) becomes, in the same buffer, the Neighbor
//! Advertisement sent back out of the port.
//!
//! What is checked (RFC 4861 7.1.1 and 7.1.2, [`crate::wire::nd::NdRepr::parse`]): hop
//! limit 255, the ICMPv6 checksum, code 0, a non-multicast target, well-formed options, and
//! for Duplicate Address Detection (unspecified source) a solicited-node destination and no
//! source link-layer address option. A message that fails is [`NdOutcome::Invalid`]
//! (counted `nd_invalid`); a valid one about an address that is not ours is
//! [`NdOutcome::Ignored`].
//!
//! The advertisement (RFC 4861 7.2.4): from the solicited address to the solicitation's
//! source, Router, Solicited and Override flags set, with our MAC as the target link-layer
//! address option, hop limit 255, to the MAC the solicitation gave (its source link-layer
//! address option, else the frame's source). A DAD probe for our address (from `::`) is
//! answered to all-nodes (ff02::1, 33:33:00:00:00:01) with the Solicited flag clear, so
//! that the prober sees the address is taken.
//!
//! What a worker may learn from: the sender of a solicitation with a source link-layer
//! address option ([`NdOutcome::Replied`]'s `learned`), and the target of an advertisement
//! addressed to us ([`NdOutcome::Heard`], with its flags). A worker hands those about next
//! hops the snapshot wants to the control thread, which decides
//! ([`crate::control::ndcache::NdCache`]): an advertisement is taken only as the answer to
//! a solicitation we sent within the retry time, a solicitation's sender is merged, and
//! neither ever replaces a static entry.

use crate::buffer::PacketBuf;
use crate::tables::PortEntry;
use crate::wire::{ethernet, icmpv6, ipv6, nd, EtherType, EthernetAddress, Ipv6Addr, Ipv6Packet};
use crate::wire::{nd::NdRepr, IpProtocol, Ipv6Repr};

/// What a Neighbor Discovery message told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOutcome {
    /// A solicitation for one of our addresses: rewritten into the advertisement, send it
    /// back out. Its sender, when it gave its MAC, may be learned.
    Replied {
        learned: Option<(Ipv6Addr, EthernetAddress)>,
    },
    /// A valid advertisement addressed to us (or to all nodes): its target, the MAC its
    /// target link-layer address option gave (if any, and unicast), and its Solicited and
    /// Override flags; learned only if we asked.
    Heard { target: Ipv6Addr, advert: Advert },
    /// Valid, but not for one of our addresses (or a message we do not act on): drop it.
    Ignored,
    /// Fails RFC 4861's validity checks (hop limit other than 255, bad checksum, code,
    /// length or option, multicast target, a malformed DAD probe): drop it, counted.
    Invalid,
}

/// What a Neighbor Advertisement said of its target (RFC 4861 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// The target link-layer address option's MAC (absent, or not unicast: `None`).
    pub mac: Option<EthernetAddress>,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: the MAC should replace one already held.
    pub override_: bool,
}

/// Handle an ICMPv6 Neighbor Discovery frame (starting at Ethernet) received on `port`.
pub fn handle<B: PacketBuf>(pkt: &mut B, port: &PortEntry) -> NdOutcome {
    let data = pkt.data();
    let (Some(body), Some(frame_src)) = (
        data.get(ethernet::HEADER_LEN..),
        data.get(6..12).and_then(EthernetAddress::from_bytes),
    ) else {
        return NdOutcome::Invalid;
    };
    let Ok(ip) = Ipv6Packet::new_checked(body) else {
        return NdOutcome::Invalid;
    };
    if ip.next_header() != IpProtocol::ICMPV6 {
        return NdOutcome::Ignored;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let repr = match NdRepr::parse(ip.payload(), src, dst, ip.hop_limit()) {
        Ok(r) => r,
        Err(crate::wire::Error::Unsupported) => return NdOutcome::Ignored,
        Err(_) => return NdOutcome::Invalid,
    };
    // A source that no node may send from is no neighbour (RFC 4291 2.7: never multicast).
    if src.is_multicast() {
        return NdOutcome::Invalid;
    }
    match repr {
        NdRepr::Solicit { target, source_lla } if port.has_addr6(target) => {
            let dad = src.is_unspecified();
            let (to_ip, to_mac) = if dad {
                (nd::ALL_NODES, nd::multicast_mac(nd::ALL_NODES))
            } else {
                (src, source_lla.unwrap_or(frame_src))
            };
            if !to_mac.is_unicast() && !dad {
                return NdOutcome::Invalid;
            }
            let learned = if dad {
                None
            } else {
                source_lla.map(|mac| (src, mac))
            };
            if advertise(pkt, port, target, to_ip, to_mac, !dad) {
                NdOutcome::Replied { learned }
            } else {
                NdOutcome::Ignored
            }
        }
        NdRepr::Advert {
            target,
            target_lla,
            solicited,
            override_,
            ..
        } if port.has_addr6(dst) || dst == nd::ALL_NODES => NdOutcome::Heard {
            target,
            advert: Advert {
                mac: target_lla.filter(|m| m.is_unicast()),
                solicited,
                override_,
            },
        },
        _ => NdOutcome::Ignored,
    }
}

/// Rewrite `pkt` into our advertisement of `target` (one of the port's addresses) to
/// `to_ip` at `to_mac`. Frame: Ethernet, IPv6, the 32-byte advertisement (86 bytes, above
/// Ethernet's minimum).
fn advertise<B: PacketBuf>(
    pkt: &mut B,
    port: &PortEntry,
    target: Ipv6Addr,
    to_ip: Ipv6Addr,
    to_mac: EthernetAddress,
    solicited: bool,
) -> bool {
    let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + nd::ADVERT_LEN;
    // The solicitation may be shorter (no option: 78 bytes) or longer than the advert.
    let have = pkt.len();
    if have > len {
        if pkt.trim_back(have - len).is_err() {
            return false;
        }
    } else if pkt.pad_to(len).is_err() {
        return false;
    }
    let d = pkt.data_mut();
    if d.len() != len {
        return false;
    }
    d[0..6].copy_from_slice(&to_mac.0);
    d[6..12].copy_from_slice(&port.mac.0);
    d[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
    let (ip, message) = d[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    Ipv6Repr {
        src_addr: target,
        dst_addr: to_ip,
        next_header: IpProtocol::ICMPV6,
        payload_len: nd::ADVERT_LEN,
        hop_limit: nd::HOP_LIMIT,
        traffic_class: 0,
    }
    .emit(ip);
    NdRepr::Advert {
        router: true,
        solicited,
        override_: true,
        target,
        target_lla: Some(port.mac),
    }
    .emit(message, target, to_ip);
    debug_assert!(icmpv6::verify_checksum(message, target, to_ip));
    true
}

/// Build a Neighbor Solicitation from `port` (from `sender`, one of its addresses) for
/// `target` into an empty buffer: to `target`'s solicited-node address and MAC, or, to
/// confirm a neighbour we know (RFC 4861 7.3.3), unicast to it at `to`.
pub fn solicit<B: PacketBuf>(
    buf: &mut B,
    port: &PortEntry,
    sender: Ipv6Addr,
    target: Ipv6Addr,
    to: Option<EthernetAddress>,
) -> bool {
    let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + nd::SOLICIT_LEN;
    let Ok(d) = buf.prepend(len) else {
        return false;
    };
    let (dst_ip, dst_mac) = match to {
        Some(mac) => (target, mac),
        None => {
            let group = nd::solicited_node(target);
            (group, nd::multicast_mac(group))
        }
    };
    d[0..6].copy_from_slice(&dst_mac.0);
    d[6..12].copy_from_slice(&port.mac.0);
    d[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
    let (ip, message) = d[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    Ipv6Repr {
        src_addr: sender,
        dst_addr: dst_ip,
        next_header: IpProtocol::ICMPV6,
        payload_len: nd::SOLICIT_LEN,
        hop_limit: nd::HOP_LIMIT,
        traffic_class: 0,
    }
    .emit(ip);
    NdRepr::Solicit {
        target,
        source_lla: Some(port.mac),
    }
    .emit(message, sender, dst_ip);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::TestBuf;
    use crate::tables::PortRoles;

    const OURS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    const PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);

    fn port(mac: [u8; 6]) -> PortEntry {
        PortEntry {
            mac: EthernetAddress(mac),
            addrs: Vec::new(),
            addrs6: vec![OURS],
            mtu: 1500,
            roles: PortRoles::default(),
            transit: false,
            host_interface: false,
        }
    }

    fn ns_for(target: Ipv6Addr) -> TestBuf {
        let mut b = TestBuf::with_headroom(&[], 128);
        assert!(solicit(
            &mut b,
            &port([2, 0, 0, 0, 0, 9]),
            PEER,
            target,
            None
        ));
        b
    }

    #[test]
    fn a_solicitation_for_our_address_becomes_the_advertisement() {
        let mut b = ns_for(OURS);
        let out = handle(&mut b, &port([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            out,
            NdOutcome::Replied {
                learned: Some((PEER, EthernetAddress([2, 0, 0, 0, 0, 9])))
            }
        );
        let d = b.data();
        assert_eq!(d.len(), 14 + 40 + 32);
        assert_eq!(&d[0..6], &[2, 0, 0, 0, 0, 9], "to the asker's MAC");
        assert_eq!(&d[6..12], &[2, 0, 0, 0, 0, 1], "from the port's");
        let ip = Ipv6Packet::new_checked(&d[14..]).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr(), OURS);
        assert_eq!(ip.dst_addr(), PEER);
        let r = NdRepr::parse(ip.payload(), OURS, PEER, 255).unwrap();
        assert_eq!(
            r,
            NdRepr::Advert {
                router: true,
                solicited: true,
                override_: true,
                target: OURS,
                target_lla: Some(EthernetAddress([2, 0, 0, 0, 0, 1])),
            }
        );
    }

    #[test]
    fn the_link_local_address_is_answered_too() {
        let p = port([2, 0, 0, 0, 0, 1]);
        let mut b = ns_for(p.link_local());
        assert!(matches!(handle(&mut b, &p), NdOutcome::Replied { .. }));
    }

    #[test]
    fn another_address_is_ignored_and_hop_limit_254_is_invalid() {
        let mut b = ns_for(PEER);
        assert_eq!(
            handle(&mut b, &port([2, 0, 0, 0, 0, 1])),
            NdOutcome::Ignored
        );
        let mut b = ns_for(OURS);
        b.data_mut()[14 + 7] = 254;
        assert_eq!(
            handle(&mut b, &port([2, 0, 0, 0, 0, 1])),
            NdOutcome::Invalid
        );
    }

    #[test]
    fn garbage_is_never_answered() {
        for len in 0..100 {
            let mut b = TestBuf::new(&vec![0xffu8; len.max(14)][..len.max(14)]);
            let out = handle(&mut b, &port([2, 0, 0, 0, 0, 1]));
            assert!(
                matches!(out, NdOutcome::Invalid | NdOutcome::Ignored),
                "{len}: {out:?}"
            );
        }
    }
}
