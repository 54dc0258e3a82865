//! Ethernet II frames.
//!
//! The view covers the 14-byte header (destination, source, EtherType) and the payload
//! after it; no FCS (NICs strip it). An 802.1Q tag shows up as [`EtherType::VLAN`] with the
//! tag at the start of the payload, for a VLAN view to read.

use core::fmt;
use core::str::FromStr;

use super::{read_u16, write_u16, Error, EtherType, Result};

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

mod field {
    use core::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xFF; 6]);
    /// `00:00:00:00:00:00`, the unknown target of an ARP request.
    pub const UNSPECIFIED: EthernetAddress = EthernetAddress([0; 6]);

    /// The address from its first six bytes; `None` if `bytes` is not six bytes long.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<EthernetAddress> {
        bytes.try_into().ok().map(EthernetAddress)
    }

    /// The six bytes, in wire order.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (broadcast included).
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether the group bit is clear.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the locally-administered bit is set.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `FromStr` input that is not six colon-separated pairs of hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ethernet address: expected six colon-separated hex pairs like aa:bb:cc:dd:ee:ff")]
pub struct ParseEthernetAddressError;

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    /// Parses `aa:bb:cc:dd:ee:ff` (either case, exactly two digits per byte).
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or(ParseEthernetAddressError)?;
            // from_str_radix alone would accept "+f" and single digits.
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseEthernetAddressError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseEthernetAddressError)?;
        }
        if parts.next().is_some() {
            return Err(ParseEthernetAddressError);
        }
        Ok(EthernetAddress(bytes))
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than [`HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); then no accessor panics.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Truncated` if the buffer is shorter than the header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
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

    /// The header length, [`HEADER_LEN`].
    #[inline]
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        EthernetAddress(addr)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        let mut addr = [0; 6];
        addr.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        EthernetAddress(addr)
    }

    /// EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The bytes after the header (up to the end of the buffer, padding included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// An Ethernet II header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header; `Truncated` if the frame is shorter than it.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: [`HEADER_LEN`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; panics if the frame is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Produced by scapy: raw(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01")/ARP())[:14]
    // plus a 4-byte payload.
    static FRAME_BYTES: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source: 02:00:00:00:00:01
        0x08, 0x06, // EtherType: ARP
        0xaa, 0xbb, 0xcc, 0xdd, // payload
    ];

    const SRC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);

    fn repr() -> EthernetRepr {
        EthernetRepr {
            src_addr: SRC,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EtherType::ARP,
        }
    }

    #[test]
    fn deconstruct() {
        let frame = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.src_addr(), SRC);
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 18];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(EthernetAddress::BROADCAST);
        frame.set_src_addr(SRC);
        frame.set_ethertype(EtherType::ARP);
        frame
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME_BYTES);
    }

    #[test]
    fn reject_too_short() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME_BYTES[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        let header_only = EthernetFrame::new_checked(&FRAME_BYTES[..HEADER_LEN]).unwrap();
        assert!(header_only.payload().is_empty());
    }

    #[test]
    fn parse() {
        let frame = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame), Ok(repr()));
        let short = EthernetFrame::new_unchecked(&FRAME_BYTES[..3]);
        assert_eq!(EthernetRepr::parse(&short), Err(Error::Truncated));
    }

    #[test]
    fn emit() {
        let mut bytes = FRAME_BYTES;
        bytes[..HEADER_LEN].fill(0);
        let repr = repr();
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        repr.emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, FRAME_BYTES);
    }

    #[test]
    fn address_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(!EthernetAddress::BROADCAST.is_unicast());
        let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast());
        assert!(SRC.is_unicast() && SRC.is_local());
        assert_eq!(
            EthernetAddress::from_bytes(&[1, 2, 3, 4, 5, 6]),
            Some(EthernetAddress([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(EthernetAddress::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn display_and_from_str() {
        let addr = EthernetAddress([0xaa, 0xbb, 0xcc, 0x0d, 0xe0, 0xff]);
        assert_eq!(addr.to_string(), "aa:bb:cc:0d:e0:ff");
        assert_eq!(format!("{addr:?}"), "aa:bb:cc:0d:e0:ff");
        assert_eq!("aa:bb:cc:0d:e0:ff".parse(), Ok(addr));
        assert_eq!("AA:BB:CC:0D:E0:FF".parse(), Ok(addr));
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:f",
            "aa:bb:cc:dd:ee:+f",
            "aa-bb-cc-dd-ee-ff",
            "aa:bb:cc:dd:ee:fg",
            "aa:bb:cc:dd:ee:ff:",
            "aabbccddeeff",
        ] {
            assert_eq!(
                bad.parse::<EthernetAddress>(),
                Err(ParseEthernetAddressError),
                "{bad}"
            );
        }
    }

    fn any_addr() -> impl Strategy<Value = EthernetAddress> {
        any::<[u8; 6]>().prop_map(EthernetAddress)
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_identity(
            src_addr in any_addr(),
            dst_addr in any_addr(),
            ethertype in any::<u16>(),
        ) {
            let repr = EthernetRepr { src_addr, dst_addr, ethertype: EtherType(ethertype) };
            let mut bytes = vec![0u8; repr.buffer_len()];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
            let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
        }

        #[test]
        fn display_then_parse_is_identity(addr in any_addr()) {
            prop_assert_eq!(addr.to_string().parse::<EthernetAddress>(), Ok(addr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload());
                let _ = EthernetRepr::parse(&frame);
            }
        }

        #[test]
        fn arbitrary_strings_never_panic_from_str(s in "\\PC{0,24}") {
            let _ = s.parse::<EthernetAddress>();
        }
    }
}
