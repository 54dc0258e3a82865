//! ICMP for IPv4 (RFC 792), as far as a router writes and reads it: the error messages
//! (Destination Unreachable, Time Exceeded, with the next-hop MTU of RFC 1191) and the
//! type of a message it must never answer with an error (RFC 1812 section 4.3.2.7).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     Type      |     Code      |          Checksum             |
//! |   (unused, or for type 3 code 4: unused | Next-Hop MTU)       |
//! |      Internet Header + leading octets of the original datagram |
//! ```
//!
//! The checksum covers the whole ICMP message: header and quote.

use super::checksum;
use super::{read_u16, write_u16, Error, Result};

/// The ICMP header: type, code, checksum, and the 4-byte rest of header.
pub const HEADER_LEN: usize = 8;

/// The largest ICMP error datagram, IP header included (RFC 1812 section 4.3.2.3).
pub const MAX_ERROR_DATAGRAM: usize = 576;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const MTU: usize = 6;
}

wire_number! {
    /// The ICMP message type.
    pub struct IcmpType(u8) {
        ECHO_REPLY = 0,
        DEST_UNREACHABLE = 3,
        SOURCE_QUENCH = 4,
        REDIRECT = 5,
        ECHO_REQUEST = 8,
        TIME_EXCEEDED = 11,
        PARAMETER_PROBLEM = 12,
    }
}

impl IcmpType {
    /// Whether messages of this type are errors, which no ICMP error may answer (RFC 1812
    /// section 4.3.2.7; RFC 792's error types, Source Quench and Redirect included).
    pub const fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

/// A view of an ICMP message: header and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than the header.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> IcmpPacket<T> {
        IcmpPacket { buffer }
    }

    /// Wraps `buffer` after checking that it holds the header; then no accessor panics.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<IcmpPacket<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(IcmpPacket { buffer })
    }

    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> IcmpType {
        IcmpType(self.buffer.as_ref()[field::TYPE])
    }

    /// The code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The next-hop MTU of a Fragmentation Needed message (type 3, code 4; RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MTU)
    }

    /// What follows the header: for an error, the quoted datagram.
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

/// An ICMP error message as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpErrorRepr {
    /// Destination Unreachable (type 3) with this code: 0 net, 1 host, 13 communication
    /// administratively prohibited; code 4 is [`IcmpErrorRepr::FragmentationNeeded`].
    Unreachable(u8),
    /// Destination Unreachable, code 4: fragmentation needed and DF set, with the MTU of
    /// the next hop (RFC 1191).
    FragmentationNeeded { mtu: u16 },
    /// Time Exceeded (type 11), code 0: TTL exceeded in transit.
    TimeExceeded,
}

impl IcmpErrorRepr {
    /// Type and code on the wire.
    pub const fn type_code(self) -> (IcmpType, u8) {
        match self {
            IcmpErrorRepr::Unreachable(code) => (IcmpType::DEST_UNREACHABLE, code),
            IcmpErrorRepr::FragmentationNeeded { .. } => (IcmpType::DEST_UNREACHABLE, 4),
            IcmpErrorRepr::TimeExceeded => (IcmpType::TIME_EXCEEDED, 0),
        }
    }

    /// Write the header into the first [`HEADER_LEN`] bytes of `message`, whose rest is the
    /// quote already in place, and the checksum over the whole of it.
    pub fn emit(self, message: &mut [u8]) {
        let (t, code) = self.type_code();
        let h = &mut message[..HEADER_LEN];
        h[field::TYPE] = t.0;
        h[field::CODE] = code;
        h[field::REST..HEADER_LEN].fill(0);
        if let IcmpErrorRepr::FragmentationNeeded { mtu } = self {
            write_u16(h, field::MTU, mtu);
        }
        write_u16(h, field::CHECKSUM, 0);
        let sum = checksum::checksum(message);
        write_u16(message, field::CHECKSUM, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time Exceeded quoting an 8-byte payload, checksum by hand (RFC 1071).
    #[test]
    fn deconstruct_and_construct_time_exceeded() {
        let quote = [0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00];
        let mut m = [0u8; 16];
        m[8..].copy_from_slice(&quote);
        IcmpErrorRepr::TimeExceeded.emit(&mut m);
        // Words: 0x0b00, 0x0000 (checksum), 0, 0, 0x4500, 0x001c, 0x1234, 0x0000.
        let sum: u32 = 0x0b00 + 0x4500 + 0x001c + 0x1234;
        let want = !(sum as u16);
        assert_eq!(
            &m[..8],
            &[
                11, // type: Time Exceeded
                0,  // code: TTL exceeded in transit
                (want >> 8) as u8,
                want as u8, // checksum
                0,
                0,
                0,
                0, // unused
            ]
        );
        let p = IcmpPacket::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), IcmpType::TIME_EXCEEDED);
        assert_eq!(p.code(), 0);
        assert!(p.verify_checksum());
        assert_eq!(p.body(), &quote);
    }

    #[test]
    fn fragmentation_needed_carries_the_next_hop_mtu() {
        let mut m = [0xffu8; 28];
        IcmpErrorRepr::FragmentationNeeded { mtu: 1476 }.emit(&mut m);
        assert_eq!(&m[..2], &[3, 4]);
        assert_eq!(&m[4..8], &[0, 0, 0x05, 0xc4], "unused, then 1476");
        let p = IcmpPacket::new_checked(&m[..]).unwrap();
        assert_eq!(p.next_hop_mtu(), 1476);
        assert!(p.verify_checksum());
        let mut u = [0u8; 8];
        IcmpErrorRepr::Unreachable(13).emit(&mut u);
        assert_eq!(&u[..2], &[3, 13]);
        assert!(IcmpPacket::new_checked(&u[..]).unwrap().verify_checksum());
    }

    #[test]
    fn reject_too_short() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                IcmpPacket::new_checked(&[0u8; 8][..len]),
                Err(Error::Truncated)
            );
        }
    }

    #[test]
    fn error_types_are_the_ones_rfc_1812_names() {
        let errors: Vec<u8> = (0..=255).filter(|&t| IcmpType(t).is_error()).collect();
        assert_eq!(errors, [3, 4, 5, 11, 12]);
        assert!(!IcmpType::ECHO_REQUEST.is_error());
        assert!(!IcmpType::ECHO_REPLY.is_error());
    }
}
