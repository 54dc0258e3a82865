//! ICMPv6 error messages (RFC 4443): Destination Unreachable, Packet Too Big and Time
//! Exceeded, with the checksum over the IPv6 pseudo-header (RFC 8200 section 8.1).

use super::{checksum, IpProtocol, Ipv6Addr};

/// Type, code, checksum and the 32-bit field (unused, or the MTU).
pub const HEADER_LEN: usize = 8;

/// "Every ICMPv6 error message ... must not exceed the minimum IPv6 MTU" (RFC 4443 section
/// 2.4 (c)): the IPv6 header, the ICMPv6 header and the quote together.
pub const MAX_ERROR_PACKET: usize = super::ipv6::MIN_MTU;

/// Destination Unreachable.
pub const DEST_UNREACHABLE: u8 = 1;
/// Packet Too Big.
pub const PACKET_TOO_BIG: u8 = 2;
/// Time Exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Echo Request (RFC 4443 4.1).
pub const ECHO_REQUEST: u8 = 128;
/// Echo Reply (RFC 4443 4.2).
pub const ECHO_REPLY: u8 = 129;

/// Whether an ICMPv6 type is an error message: types 0 to 127 (RFC 4443 section 2.1).
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

/// An ICMPv6 error message as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6ErrorRepr {
    /// Destination Unreachable (type 1) with this code: 0 no route to destination, 1
    /// communication with destination administratively prohibited.
    Unreachable(u8),
    /// Packet Too Big (type 2, code 0) with the MTU of the next hop.
    PacketTooBig { mtu: u32 },
    /// Time Exceeded (type 3), code 0: hop limit exceeded in transit.
    TimeExceeded,
}

impl Icmpv6ErrorRepr {
    /// Type and code on the wire.
    pub const fn type_code(self) -> (u8, u8) {
        match self {
            Icmpv6ErrorRepr::Unreachable(code) => (DEST_UNREACHABLE, code),
            Icmpv6ErrorRepr::PacketTooBig { .. } => (PACKET_TOO_BIG, 0),
            Icmpv6ErrorRepr::TimeExceeded => (TIME_EXCEEDED, 0),
        }
    }

    /// Write the header into the first [`HEADER_LEN`] bytes of `message`, whose rest is the
    /// quote already in place, and the checksum over the pseudo-header of `src` and `dst`
    /// and the whole message.
    pub fn emit(self, message: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        let (t, code) = self.type_code();
        let h = &mut message[..HEADER_LEN];
        h[0] = t;
        h[1] = code;
        h[2..4].fill(0);
        let rest = match self {
            Icmpv6ErrorRepr::PacketTooBig { mtu } => mtu,
            _ => 0,
        };
        h[4..8].copy_from_slice(&rest.to_be_bytes());
        let sum = !checksum_with_pseudo_header(message, src, dst);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The one's complement sum (not yet complemented) of the IPv6 pseudo-header for an
/// ICMPv6 message of `message.len()` bytes from `src` to `dst`, and of the message.
pub fn checksum_with_pseudo_header(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
    let mut acc: u64 = 0;
    for a in [src, dst] {
        for w in a.segments() {
            acc += u64::from(w);
        }
    }
    let len = message.len() as u32;
    acc += u64::from(len >> 16) + u64::from(len & 0xffff);
    acc += u64::from(IpProtocol::ICMPV6.0);
    acc += u64::from(checksum::sum(message));
    checksum::fold(acc)
}

/// Whether an ICMPv6 message from `src` to `dst` has a good checksum.
pub fn verify_checksum(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> bool {
    checksum_with_pseudo_header(message, src, dst) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packet Too Big quoting 8 bytes, the checksum summed by hand over the pseudo-header
    /// (RFC 8200 section 8.1: source, destination, 32-bit length, 24 zero bits, 58).
    #[test]
    fn packet_too_big_by_hand() {
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut m = [0u8; 16];
        m[8..].copy_from_slice(&[0x60, 0, 0, 0, 0x05, 0xdc, 0x3a, 0x40]);
        Icmpv6ErrorRepr::PacketTooBig { mtu: 1476 }.emit(&mut m, src, dst);
        assert_eq!(&m[..2], &[2, 0]);
        assert_eq!(&m[4..8], &[0, 0, 0x05, 0xc4], "MTU 1476");
        // Pseudo-header words: fd00 + 1, 2001 + 0db8 + 2, length 16, next header 58;
        // message words: 0x0200, 0x0000, 0x05c4, 0x6000, 0, 0x05dc, 0x3a40.
        let words: u32 =
            0xfd00 + 1 + 0x2001 + 0x0db8 + 2 + 16 + 58 + 0x0200 + 0x05c4 + 0x6000 + 0x05dc + 0x3a40;
        let folded = (words & 0xffff) + (words >> 16);
        let want = !(folded as u16);
        assert_eq!(u16::from_be_bytes([m[2], m[3]]), want);
        assert!(verify_checksum(&m, src, dst));
        // Another destination: the pseudo-header differs.
        assert!(!verify_checksum(&m, src, "2001:db8::3".parse().unwrap()));
    }

    #[test]
    fn types_and_codes() {
        assert_eq!(Icmpv6ErrorRepr::TimeExceeded.type_code(), (3, 0));
        assert_eq!(Icmpv6ErrorRepr::Unreachable(0).type_code(), (1, 0));
        assert_eq!(Icmpv6ErrorRepr::Unreachable(1).type_code(), (1, 1));
        assert!(is_error(1) && is_error(127) && !is_error(128) && !is_error(135));
    }
}
