//! ARP (RFC 826) for our addresses: answered in place, so a neighbour can resolve us
//! without a trip to another thread.

use crate::buffer::PacketBuf;
use crate::tables::PortEntry;
use crate::wire::{arp, ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress};
use core::net::Ipv4Addr;

/// What an ARP packet told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// A request for one of our addresses: rewritten into the reply, send it back out.
    Replied {
        learned: (Ipv4Addr, EthernetAddress),
    },
    /// A reply to us, or a request for another address: nothing to send.
    Learned {
        learned: (Ipv4Addr, EthernetAddress),
    },
    /// Not for us or malformed: drop it.
    Ignored,
}

/// Handle an ARP frame (starting at Ethernet) received on `port`. A request for one of the
/// port's addresses becomes, in the same buffer, the reply to send back on that port.
pub fn handle<B: PacketBuf>(pkt: &mut B, port: &PortEntry) -> ArpOutcome {
    let data = pkt.data();
    let Some(body) = data.get(ethernet::HEADER_LEN..) else {
        return ArpOutcome::Ignored;
    };
    let Ok(view) = ArpPacket::new_checked(body) else {
        return ArpOutcome::Ignored;
    };
    let Ok(repr) = ArpRepr::parse(&view) else {
        return ArpOutcome::Ignored;
    };
    let sender = repr.source_protocol_addr;
    let sender_mac = repr.source_hardware_addr;
    if !sender_mac.is_unicast() || sender.is_unspecified() {
        return ArpOutcome::Ignored;
    }
    let ours = port.addrs.contains(&repr.target_protocol_addr);
    let learned = (sender, sender_mac);
    match repr.operation {
        ArpOperation::REQUEST if ours => {
            let reply = ArpRepr {
                operation: ArpOperation::REPLY,
                source_hardware_addr: port.mac,
                source_protocol_addr: repr.target_protocol_addr,
                target_hardware_addr: sender_mac,
                target_protocol_addr: sender,
            };
            // Frame: Ethernet + 28-byte ARP; shorter trailers (padding) are dropped.
            let excess = pkt.len() - ethernet::HEADER_LEN - arp::PACKET_LEN;
            if pkt.trim_back(excess).is_err() {
                return ArpOutcome::Ignored;
            }
            let d = pkt.data_mut();
            d[0..6].copy_from_slice(&sender_mac.0);
            d[6..12].copy_from_slice(&port.mac.0);
            d[12..14].copy_from_slice(&EtherType::ARP.0.to_be_bytes());
            reply.emit(&mut ArpPacket::new_unchecked(
                &mut d[ethernet::HEADER_LEN..],
            ));
            ArpOutcome::Replied { learned }
        }
        ArpOperation::REPLY if ours => ArpOutcome::Learned { learned },
        _ => ArpOutcome::Ignored,
    }
}

/// Build an ARP request from `port` for `target` into an empty buffer.
pub fn request<B: PacketBuf>(
    buf: &mut B,
    port: &PortEntry,
    sender: Ipv4Addr,
    target: Ipv4Addr,
) -> bool {
    let Ok(d) = buf.prepend(ethernet::HEADER_LEN + arp::PACKET_LEN) else {
        return false;
    };
    d[0..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
    d[6..12].copy_from_slice(&port.mac.0);
    d[12..14].copy_from_slice(&EtherType::ARP.0.to_be_bytes());
    ArpRepr {
        operation: ArpOperation::REQUEST,
        source_hardware_addr: port.mac,
        source_protocol_addr: sender,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(
        &mut d[ethernet::HEADER_LEN..],
    ));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::TestBuf;
    use crate::tables::PortRoles;

    fn port() -> PortEntry {
        PortEntry {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            addrs: vec![Ipv4Addr::new(192, 0, 2, 1)],
            mtu: 1500,
            roles: PortRoles::default(),
            transit: false,
        }
    }

    fn request_for(target: Ipv4Addr) -> TestBuf {
        let peer = PortEntry {
            mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
            ..port()
        };
        let mut b = TestBuf::with_headroom(&[], 64);
        assert!(request(&mut b, &peer, Ipv4Addr::new(192, 0, 2, 9), target));
        b
    }

    #[test]
    fn a_request_for_our_address_becomes_the_reply() {
        let mut b = request_for(Ipv4Addr::new(192, 0, 2, 1));
        let out = handle(&mut b, &port());
        assert_eq!(
            out,
            ArpOutcome::Replied {
                learned: (
                    Ipv4Addr::new(192, 0, 2, 9),
                    EthernetAddress([2, 0, 0, 0, 0, 9])
                )
            }
        );
        let d = b.data();
        assert_eq!(&d[0..6], &[2, 0, 0, 0, 0, 9], "to the asker");
        assert_eq!(&d[6..12], &[2, 0, 0, 0, 0, 1], "from our port MAC");
        let r = ArpRepr::parse(&ArpPacket::new_checked(&d[14..]).unwrap()).unwrap();
        assert_eq!(r.operation, ArpOperation::REPLY);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(r.source_hardware_addr, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(192, 0, 2, 9));
    }

    #[test]
    fn a_request_for_another_address_is_ignored() {
        let mut b = request_for(Ipv4Addr::new(192, 0, 2, 77));
        assert_eq!(handle(&mut b, &port()), ArpOutcome::Ignored);
    }

    #[test]
    fn garbage_is_ignored() {
        for len in 0..60 {
            let mut b = TestBuf::new(&vec![0xffu8; len]);
            assert_eq!(handle(&mut b, &port()), ArpOutcome::Ignored);
        }
    }
}
