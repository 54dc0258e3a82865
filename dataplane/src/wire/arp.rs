//! ARP (RFC 826) for Ethernet and IPv4.
//!
//! The view reads the fixed 28-byte layout of Ethernet/IPv4 ARP. `new_checked` checks only
//! that 28 bytes are there; [`ArpRepr::parse`] also checks the hardware and protocol types
//! and lengths and rejects any other ARP as `Unsupported`. Address accessors on a packet
//! with other types read bytes at the Ethernet/IPv4 offsets; they never panic.

use super::ethernet::EthernetAddress;
use super::{read_u16, read_u32, write_u16, write_u32, Error, EtherType, Ipv4Addr, Result};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// ARP hardware type for Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;

    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

wire_number! {
    /// ARP operation code.
    pub struct ArpOperation(u16) {
        /// Request.
        REQUEST = 1,
        /// Reply.
        REPLY = 2,
    }
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than [`PACKET_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); then no accessor panics.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than [`PACKET_LEN`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (IPv4 for us).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length (6 for Ethernet).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4 for IPv4).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation(read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// Sender hardware address.
    #[inline]
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        EthernetAddress(addr)
    }

    /// Sender protocol address.
    #[inline]
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SPA.start))
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::THA]);
        EthernetAddress(addr)
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::TPA.start))
    }

    /// Whether the types and lengths say Ethernet/IPv4.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HARDWARE_ETHERNET
            && self.protocol_type() == EtherType::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::PTYPE, value.0);
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER, value.0);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SPA.start, addr.into());
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::TPA.start, addr.into());
    }
}

/// An Ethernet/IPv4 ARP packet as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Operation (request, reply, or another code).
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Reads the packet: `Truncated` if shorter than [`PACKET_LEN`], `Unsupported` unless
    /// hardware type 1, protocol type 0x0800, lengths 6 and 4. Any operation is accepted.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if !packet.is_ethernet_ipv4() {
            return Err(Error::Unsupported);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: [`PACKET_LEN`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the whole packet; panics if the buffer is shorter than [`PACKET_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Produced by scapy: raw(ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="192.0.2.1",
    // hwdst="00:00:00:00:00:00", pdst="192.0.2.2")).
    static PACKET_BYTES: [u8; 28] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, // hardware length
        0x04, // protocol length
        0x00, 0x01, // operation: request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender hardware address
        0xc0, 0x00, 0x02, 0x01, // sender protocol address: 192.0.2.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target hardware address: unknown
        0xc0, 0x00, 0x02, 0x02, // target protocol address: 192.0.2.2
    ];

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::REQUEST,
            source_hardware_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
            source_protocol_addr: Ipv4Addr::new(192, 0, 2, 1),
            target_hardware_addr: EthernetAddress::UNSPECIFIED,
            target_protocol_addr: Ipv4Addr::new(192, 0, 2, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let packet = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.hardware_type(), HARDWARE_ETHERNET);
        assert_eq!(packet.protocol_type(), EtherType::IPV4);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert_eq!(packet.operation(), ArpOperation::REQUEST);
        assert_eq!(
            packet.source_hardware_addr(),
            EthernetAddress([0x02, 0, 0, 0, 0, 0x01])
        );
        assert_eq!(packet.source_protocol_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(packet.target_hardware_addr(), EthernetAddress::UNSPECIFIED);
        assert_eq!(packet.target_protocol_addr(), Ipv4Addr::new(192, 0, 2, 2));
        assert!(packet.is_ethernet_ipv4());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 28];
        let mut packet = ArpPacket::new_unchecked(&mut bytes[..]);
        packet.set_hardware_type(1);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(ArpOperation::REQUEST);
        packet.set_source_hardware_addr(EthernetAddress([0x02, 0, 0, 0, 0, 0x01]));
        packet.set_source_protocol_addr(Ipv4Addr::new(192, 0, 2, 1));
        packet.set_target_hardware_addr(EthernetAddress::UNSPECIFIED);
        packet.set_target_protocol_addr(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn reject_too_short() {
        for len in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&PACKET_BYTES[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        // Ethernet padding after the packet is fine.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&PACKET_BYTES);
        let packet = ArpPacket::new_checked(&padded[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn reject_other_types_and_lengths() {
        for (at, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = PACKET_BYTES;
            bytes[at] = value;
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            assert!(!packet.is_ethernet_ipv4());
            assert_eq!(
                ArpRepr::parse(&packet),
                Err(Error::Unsupported),
                "byte {at}"
            );
        }
        let short = ArpPacket::new_unchecked(&PACKET_BYTES[..27]);
        assert_eq!(ArpRepr::parse(&short), Err(Error::Truncated));
    }

    #[test]
    fn parse() {
        let packet = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet), Ok(repr()));
        // An unknown operation is still a valid Ethernet/IPv4 ARP packet.
        let mut bytes = PACKET_BYTES;
        bytes[7] = 9;
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet).unwrap().operation, ArpOperation(9));
    }

    #[test]
    fn emit() {
        let mut bytes = [0xffu8; 28];
        let repr = repr();
        assert_eq!(repr.buffer_len(), PACKET_LEN);
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET_BYTES);
    }

    fn any_repr() -> impl Strategy<Value = ArpRepr> {
        (
            any::<u16>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>(),
            any::<[u8; 6]>(),
            any::<[u8; 4]>(),
        )
            .prop_map(|(op, sha, spa, tha, tpa)| ArpRepr {
                operation: ArpOperation(op),
                source_hardware_addr: EthernetAddress(sha),
                source_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: EthernetAddress(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_identity(repr in any_repr()) {
            let mut bytes = vec![0u8; repr.buffer_len()];
            repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&packet), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len());
                let _ = (p.operation(), p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr(), p.is_ethernet_ipv4());
                let _ = ArpRepr::parse(&p);
            }
        }
    }
}
