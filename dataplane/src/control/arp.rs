//! ARP (RFC 826) for our addresses: answered in place, so a neighbour can resolve us
//! without a trip to another thread. Every frame we send is padded to Ethernet's 60-byte
//! minimum (a NIC that does not pad would send runts).
//!
//! What a worker may learn from: a request addressed to us (its sender, when it is a next
//! hop we need or a host on a connected subnet of the port: RFC 826's merge), or a reply
//! addressed to us. The worker cannot know whether we asked: the control thread takes a
//! reply only if it asked for that address within the retry time
//! ([`crate::control::pacer::ArpPacer::take_solicited`], and for hosts on connected
//! subnets [`crate::control::ondemand::OnDemand`]); an unsolicited reply changes nothing,
//! and a learned entry never replaces a static one.

use crate::buffer::PacketBuf;
use crate::tables::PortEntry;
use crate::wire::{arp, ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress};
use core::net::Ipv4Addr;

/// The smallest Ethernet frame, without the FCS: frames we send are padded to it.
pub const MIN_FRAME: usize = 60;

/// What an ARP packet told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// A request for one of our addresses: rewritten into the reply, send it back out. Its
    /// sender may be learned if it is a next hop we need.
    Replied {
        learned: (Ipv4Addr, EthernetAddress),
    },
    /// A reply to one of our addresses: nothing to send. Its sender may be learned only if
    /// we asked for it.
    Learned {
        learned: (Ipv4Addr, EthernetAddress),
    },
    /// Not for us or malformed: drop it.
    Ignored,
}

/// How a neighbour was heard, for the control thread's decision to learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It asked us (a request for one of our addresses).
    Request,
    /// It answered (a reply to one of our addresses): learned only if we asked.
    Reply,
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
            // Frame: Ethernet + 28-byte ARP, padded with zeros to the minimum; whatever
            // trailer the request had is not ours to send back.
            let excess = pkt.len().saturating_sub(MIN_FRAME);
            if pkt.trim_back(excess).is_err() || pkt.pad_to(MIN_FRAME).is_err() {
                return ArpOutcome::Ignored;
            }
            let d = pkt.data_mut();
            d[0..6].copy_from_slice(&sender_mac.0);
            d[6..12].copy_from_slice(&port.mac.0);
            d[12..14].copy_from_slice(&EtherType::ARP.0.to_be_bytes());
            let (body, padding) = d[ethernet::HEADER_LEN..].split_at_mut(arp::PACKET_LEN);
            reply.emit(&mut ArpPacket::new_unchecked(body));
            padding.fill(0);
            ArpOutcome::Replied { learned }
        }
        ArpOperation::REPLY if ours => ArpOutcome::Learned { learned },
        _ => ArpOutcome::Ignored,
    }
}

/// Build an ARP request from `port` for `target` into an empty buffer (60 bytes).
pub fn request<B: PacketBuf>(
    buf: &mut B,
    port: &PortEntry,
    sender: Ipv4Addr,
    target: Ipv4Addr,
) -> bool {
    request_to(buf, port, sender, target, EthernetAddress::BROADCAST)
}

/// [`request`], sent to `to`: broadcast to find a neighbour, or unicast to the MAC we know
/// to confirm it is still there (RFC 1122 2.3.2.1), sparing every other host on the link.
pub fn request_to<B: PacketBuf>(
    buf: &mut B,
    port: &PortEntry,
    sender: Ipv4Addr,
    target: Ipv4Addr,
    to: EthernetAddress,
) -> bool {
    if buf
        .pad_to(MIN_FRAME - ethernet::HEADER_LEN - arp::PACKET_LEN)
        .is_err()
    {
        return false;
    }
    let Ok(d) = buf.prepend(ethernet::HEADER_LEN + arp::PACKET_LEN) else {
        return false;
    };
    d[0..6].copy_from_slice(&to.0);
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
            addrs6: Vec::new(),
            mtu: 1500,
            roles: PortRoles::default(),
            transit: false,
            host_interface: false,
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
    fn requests_we_send_are_padded_to_60_bytes() {
        let b = request_for(Ipv4Addr::new(192, 0, 2, 77));
        assert_eq!(b.len(), 60);
        assert_eq!(&b.data()[12..14], &[0x08, 0x06]);
        assert!(b.data()[42..].iter().all(|&x| x == 0), "zero padding");
    }

    #[test]
    fn replies_are_60_bytes_whatever_the_request_was() {
        // A request without padding (42 bytes, as a software peer sends it), one padded
        // with garbage, and one with a long trailer.
        let unpadded = {
            let mut b = request_for(Ipv4Addr::new(192, 0, 2, 1));
            b.trim_back(18).unwrap();
            assert_eq!(b.len(), 42);
            b
        };
        let garbage = {
            let mut d = request_for(Ipv4Addr::new(192, 0, 2, 1)).data().to_vec();
            d[42..].fill(0xa5);
            TestBuf::new(&d)
        };
        let long = {
            let mut d = request_for(Ipv4Addr::new(192, 0, 2, 1)).data().to_vec();
            d.extend_from_slice(&[0x5a; 100]);
            TestBuf::new(&d)
        };
        for (mut b, case) in [(unpadded, "unpadded"), (garbage, "garbage"), (long, "long")] {
            assert!(
                matches!(handle(&mut b, &port()), ArpOutcome::Replied { .. }),
                "{case}"
            );
            assert_eq!(b.len(), 60, "{case}: a 60-byte reply");
            assert!(
                b.data()[42..].iter().all(|&x| x == 0),
                "{case}: zero padding"
            );
            let r = ArpRepr::parse(&ArpPacket::new_checked(&b.data()[14..]).unwrap()).unwrap();
            assert_eq!(r.operation, ArpOperation::REPLY, "{case}");
        }
    }

    #[test]
    fn replies_to_us_are_heard_and_replies_to_others_ignored() {
        let from = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let reply = |target: Ipv4Addr| {
            let mut d = vec![0u8; 60];
            d[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            d[6..12].copy_from_slice(&from.0);
            d[12..14].copy_from_slice(&[0x08, 0x06]);
            ArpRepr {
                operation: ArpOperation::REPLY,
                source_hardware_addr: from,
                source_protocol_addr: Ipv4Addr::new(192, 0, 2, 9),
                target_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
                target_protocol_addr: target,
            }
            .emit(&mut ArpPacket::new_unchecked(&mut d[14..42]));
            TestBuf::new(&d)
        };
        assert_eq!(
            handle(&mut reply(Ipv4Addr::new(192, 0, 2, 1)), &port()),
            ArpOutcome::Learned {
                learned: (Ipv4Addr::new(192, 0, 2, 9), from)
            }
        );
        assert_eq!(
            handle(&mut reply(Ipv4Addr::new(192, 0, 2, 2)), &port()),
            ArpOutcome::Ignored
        );
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
