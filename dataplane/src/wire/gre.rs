//! GRE (RFC 2784) with the key and sequence number extensions (RFC 2890).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C|R|K|S|s|Recur|  Reserved0  | Ver |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! |                         Key (optional)                        |
//! |                 Sequence Number (optional)                    |
//! ```
//!
//! Bit numbers below count from the most significant bit, as the RFCs do. R, s and the
//! recursion control are RFC 1701 fields that RFC 2784 folded into Reserved0.
//!
//! `new_checked` checks only that the header its C, K and S flags describe is in the
//! buffer (`Truncated`). It accepts any version and reserved bits, so the caller can
//! count those drops by name: [`GrePacket::check_rfc2784`] rejects version != 0 and bits
//! 1, 4 and 5 (R, s, first recursion bit); bits 6-12 are to be ignored on receipt, and
//! [`GrePacket::reserved_ignored_bits`] shows them for counting. A packet with R set is
//! laid out as RFC 2784 says (no routing fields); `check_rfc2784` rejects it anyway.
//!
//! The checksum covers the GRE header and its payload: build the view over exactly those
//! bytes (the outer IPv4 payload, Ethernet padding excluded).

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, Error, EtherType, Result};

/// Length of the GRE header without optional fields.
pub const BASE_HEADER_LEN: usize = field::OPTIONAL;

/// Length of the GRE header with checksum, key and sequence number.
pub const MAX_HEADER_LEN: usize = 16;

mod field {
    pub const FLAGS: usize = 0;
    pub const PROTOCOL: usize = 2;
    pub const OPTIONAL: usize = 4;
}

const FLAG_C: u16 = 0x8000;
const FLAG_R: u16 = 0x4000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
const FLAG_STRICT_ROUTE: u16 = 0x0800;
const RECURSION_MASK: u16 = 0x0700;
/// Bits 1, 4 and 5: routing present, strict source route, first recursion bit.
const FORBIDDEN_MASK: u16 = FLAG_R | FLAG_STRICT_ROUTE | 0x0400;
/// Bits 6-12: the rest of Reserved0, ignored on receipt.
const RESERVED_IGNORED_MASK: u16 = 0x03F8;
const VERSION_MASK: u16 = 0x0007;

/// A view of a GRE header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than the header the
    /// flags describe.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> GrePacket<T> {
        GrePacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); then no accessor panics.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<GrePacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 4 bytes or than [`header_len`](Self::header_len).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < BASE_HEADER_LEN || len < self.header_len() {
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

    #[inline]
    fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// C (bit 0): the checksum and Reserved1 fields are present.
    #[inline]
    pub fn checksum_present(&self) -> bool {
        self.flags() & FLAG_C != 0
    }

    /// R (bit 1, RFC 1701 routing present). Must be 0.
    #[inline]
    pub fn routing_present(&self) -> bool {
        self.flags() & FLAG_R != 0
    }

    /// K (bit 2, RFC 2890): the key field is present.
    #[inline]
    pub fn key_present(&self) -> bool {
        self.flags() & FLAG_K != 0
    }

    /// S (bit 3, RFC 2890): the sequence number field is present.
    #[inline]
    pub fn seq_present(&self) -> bool {
        self.flags() & FLAG_S != 0
    }

    /// s (bit 4, RFC 1701 strict source route). Must be 0.
    #[inline]
    pub fn strict_source_route(&self) -> bool {
        self.flags() & FLAG_STRICT_ROUTE != 0
    }

    /// RFC 1701 recursion control (bits 5-7). Bit 5, the high bit, must be 0; bits 6-7
    /// are among those ignored.
    #[inline]
    pub fn recursion_control(&self) -> u8 {
        ((self.flags() & RECURSION_MASK) >> 8) as u8
    }

    /// Whether any of bits 1, 4 and 5 is set (drop: RFC 2784 section 2.3, RFC 2890).
    #[inline]
    pub fn forbidden_bits_set(&self) -> bool {
        self.flags() & FORBIDDEN_MASK != 0
    }

    /// Bits 6-12, in place (mask `0x03F8`): must be ignored on receipt; non-zero means
    /// count it.
    #[inline]
    pub fn reserved_ignored_bits(&self) -> u16 {
        self.flags() & RESERVED_IGNORED_MASK
    }

    /// Version (bits 13-15); 0 for RFC 2784.
    #[inline]
    pub fn version(&self) -> u8 {
        (self.flags() & VERSION_MASK) as u8
    }

    /// Protocol type of the payload.
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::PROTOCOL))
    }

    #[inline]
    fn key_offset(&self) -> usize {
        field::OPTIONAL + if self.checksum_present() { 4 } else { 0 }
    }

    #[inline]
    fn seq_offset(&self) -> usize {
        self.key_offset() + if self.key_present() { 4 } else { 0 }
    }

    /// Header length from the C, K and S flags: 4, plus 4 for each that is set.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.seq_offset() + if self.seq_present() { 4 } else { 0 }
    }

    /// The checksum field, if C is set.
    #[inline]
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present()
            .then(|| read_u16(self.buffer.as_ref(), field::OPTIONAL))
    }

    /// The Reserved1 field after the checksum, if C is set.
    #[inline]
    pub fn reserved1(&self) -> Option<u16> {
        self.checksum_present()
            .then(|| read_u16(self.buffer.as_ref(), field::OPTIONAL + 2))
    }

    /// The key, if K is set.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        self.key_present()
            .then(|| read_u32(self.buffer.as_ref(), self.key_offset()))
    }

    /// The sequence number, if S is set.
    #[inline]
    pub fn sequence(&self) -> Option<u32> {
        self.seq_present()
            .then(|| read_u32(self.buffer.as_ref(), self.seq_offset()))
    }

    /// The bytes after the header, to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// `BadVersion` unless version 0; `Malformed` if bits 1, 4 or 5 are set. Bits 6-12
    /// pass (see [`reserved_ignored_bits`](Self::reserved_ignored_bits)).
    #[inline]
    pub fn check_rfc2784(&self) -> Result<()> {
        let flags = self.flags();
        if flags & VERSION_MASK != 0 {
            Err(Error::BadVersion)
        } else if flags & FORBIDDEN_MASK != 0 {
            Err(Error::Malformed)
        } else {
            Ok(())
        }
    }

    /// Whether the checksum over the whole buffer (header and payload) verifies; `true`
    /// when C is clear, as there is nothing to verify.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    #[inline]
    fn set_flag(&mut self, flag: u16, value: bool) {
        let data = self.buffer.as_mut();
        let flags = read_u16(data, field::FLAGS);
        let flags = if value { flags | flag } else { flags & !flag };
        write_u16(data, field::FLAGS, flags);
    }

    /// Zeroes the whole first word: flags, Reserved0 and version.
    #[inline]
    pub fn clear_flags(&mut self) {
        write_u16(self.buffer.as_mut(), field::FLAGS, 0);
    }

    /// Sets C. This moves the key and sequence number fields: set flags before fields.
    #[inline]
    pub fn set_checksum_present(&mut self, value: bool) {
        self.set_flag(FLAG_C, value);
    }

    /// Sets K. This moves the sequence number field: set flags before fields.
    #[inline]
    pub fn set_key_present(&mut self, value: bool) {
        self.set_flag(FLAG_K, value);
    }

    /// Sets S.
    #[inline]
    pub fn set_seq_present(&mut self, value: bool) {
        self.set_flag(FLAG_S, value);
    }

    /// Sets the version (low 3 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let data = self.buffer.as_mut();
        let flags = read_u16(data, field::FLAGS) & !VERSION_MASK;
        write_u16(
            data,
            field::FLAGS,
            flags | (u16::from(value) & VERSION_MASK),
        );
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::PROTOCOL, value.0);
    }

    /// Sets the checksum field; C must be set.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        debug_assert!(self.checksum_present());
        write_u16(self.buffer.as_mut(), field::OPTIONAL, value);
    }

    /// Sets the Reserved1 field; C must be set.
    #[inline]
    pub fn set_reserved1(&mut self, value: u16) {
        debug_assert!(self.checksum_present());
        write_u16(self.buffer.as_mut(), field::OPTIONAL + 2, value);
    }

    /// Sets the key; K must be set.
    #[inline]
    pub fn set_key(&mut self, value: u32) {
        debug_assert!(self.key_present());
        let at = self.key_offset();
        write_u32(self.buffer.as_mut(), at, value);
    }

    /// Sets the sequence number; S must be set.
    #[inline]
    pub fn set_sequence(&mut self, value: u32) {
        debug_assert!(self.seq_present());
        let at = self.seq_offset();
        write_u32(self.buffer.as_mut(), at, value);
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }

    /// If C is set, computes the checksum over the whole buffer (header and payload, the
    /// checksum field taken as zero) and stores it. Call it once the payload is in place.
    #[inline]
    pub fn fill_checksum(&mut self) {
        if self.checksum_present() {
            self.set_checksum(0);
            let sum = checksum::checksum(self.buffer.as_ref());
            self.set_checksum(sum);
        }
    }
}

/// A GRE header as values. Parsed headers passed [`GrePacket::check_rfc2784`]; the ignored
/// Reserved0 bits and Reserved1 are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GreRepr {
    /// Protocol type of the payload.
    pub protocol_type: EtherType,
    /// The key (K set) or none.
    pub key: Option<u32>,
    /// The sequence number (S set) or none.
    pub sequence: Option<u32>,
    /// Whether the checksum is present (C set).
    pub checksum: bool,
}

impl GreRepr {
    /// Reads the header: `Truncated` from the length check, then the errors of
    /// [`GrePacket::check_rfc2784`], then `BadChecksum` if C is set and the checksum over
    /// the whole buffer fails.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &GrePacket<T>) -> Result<GreRepr> {
        packet.check_len()?;
        packet.check_rfc2784()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(GreRepr {
            protocol_type: packet.protocol_type(),
            key: packet.key(),
            sequence: packet.sequence(),
            checksum: packet.checksum_present(),
        })
    }

    /// Header length [`emit`](Self::emit) writes: 4, plus 4 each for checksum, key and
    /// sequence number.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        BASE_HEADER_LEN
            + if self.checksum { 4 } else { 0 }
            + if self.key.is_some() { 4 } else { 0 }
            + if self.sequence.is_some() { 4 } else { 0 }
    }

    /// Writes the header, every reserved bit zero and the checksum field zero. When
    /// `checksum` is set, call [`GrePacket::fill_checksum`] once the payload is in place.
    /// Panics if the buffer is shorter than [`buffer_len`](Self::buffer_len).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut GrePacket<T>) {
        let mut flags = 0;
        if self.checksum {
            flags |= FLAG_C;
        }
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.sequence.is_some() {
            flags |= FLAG_S;
        }
        let data = packet.buffer.as_mut();
        write_u16(data, field::FLAGS, flags);
        write_u16(data, field::PROTOCOL, self.protocol_type.0);
        let mut at = field::OPTIONAL;
        if self.checksum {
            // Checksum and Reserved1.
            write_u32(data, at, 0);
            at += 4;
        }
        if let Some(key) = self.key {
            write_u32(data, at, key);
            at += 4;
        }
        if let Some(sequence) = self.sequence {
            write_u32(data, at, sequence);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The inner packet of the scapy vectors below:
    // raw(IP(src="10.1.2.3", dst="198.51.100.7", ttl=64, id=0x1234, flags="DF")
    //     / UDP(sport=1234, dport=5678) / b"hi"), 30 bytes.
    static INNER: [u8; 30] = [
        0x45, 0x00, 0x00, 0x1e, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0xf2, 0x5c, 0x0a, 0x01, 0x02,
        0x03, 0xc6, 0x33, 0x64, 0x07, 0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0a, 0x46, 0x32, 0x68, 0x69,
    ];

    // Produced by scapy: raw(GRE(chksum_present=1, key_present=1, seqnum_present=1,
    // key=0xdeadbeef, seqence_number=7, proto=0x0800) / inner); scapy fills the checksum.
    static HEADER_CKS: [u8; 16] = [
        0xb0, 0x00, // C, K, S set; reserved0 0; version 0
        0x08, 0x00, // protocol type IPv4
        0xe0, 0xb4, // checksum over header and payload
        0x00, 0x00, // reserved1
        0xde, 0xad, 0xbe, 0xef, // key
        0x00, 0x00, 0x00, 0x07, // sequence number 7
    ];

    // Produced by scapy: raw(GRE(chksum_present=1, proto=0x0800) / inner).
    static HEADER_C: [u8; 8] = [
        0x80, 0x00, // C set
        0x08, 0x00, // protocol type IPv4
        0xae, 0x59, // checksum
        0x00, 0x00, // reserved1
    ];

    // Produced by scapy: raw(GRE(key_present=1, key=42, proto=0x0800) / inner).
    static HEADER_K: [u8; 8] = [
        0x20, 0x00, // K set
        0x08, 0x00, // protocol type IPv4
        0x00, 0x00, 0x00, 0x2a, // key 42
    ];

    // Produced by scapy: raw(GRE(chksum_present=1, seqnum_present=1,
    // seqence_number=0xfffffffe, proto=0x86dd) / Raw(b"\x01\x02\x03")): odd-length payload.
    static PACKET_CS_ODD: [u8; 15] = [
        0x90, 0x00, // C, S set
        0x86, 0xdd, // protocol type IPv6
        0xe5, 0x20, // checksum (payload padded with a zero byte)
        0x00, 0x00, // reserved1
        0xff, 0xff, 0xff, 0xfe, // sequence number
        0x01, 0x02, 0x03, // payload
    ];

    fn with_inner(header: &[u8]) -> Vec<u8> {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&INNER);
        bytes
    }

    fn repr_cks() -> GreRepr {
        GreRepr {
            protocol_type: EtherType::IPV4,
            key: Some(0xdeadbeef),
            sequence: Some(7),
            checksum: true,
        }
    }

    #[test]
    fn deconstruct() {
        let bytes = with_inner(&HEADER_CKS);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.checksum_present());
        assert!(!packet.routing_present());
        assert!(packet.key_present());
        assert!(packet.seq_present());
        assert!(!packet.strict_source_route());
        assert_eq!(packet.recursion_control(), 0);
        assert!(!packet.forbidden_bits_set());
        assert_eq!(packet.reserved_ignored_bits(), 0);
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.protocol_type(), EtherType::IPV4);
        assert_eq!(packet.checksum(), Some(0xe0b4));
        assert_eq!(packet.reserved1(), Some(0));
        assert_eq!(packet.key(), Some(0xdeadbeef));
        assert_eq!(packet.sequence(), Some(7));
        assert_eq!(packet.header_len(), 16);
        assert_eq!(packet.payload(), &INNER);
        assert_eq!(packet.check_rfc2784(), Ok(()));
        assert!(packet.verify_checksum());
    }

    #[test]
    fn deconstruct_scapy_variants() {
        let bytes = with_inner(&HEADER_C);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 8);
        assert_eq!((packet.key(), packet.sequence()), (None, None));
        assert_eq!(packet.checksum(), Some(0xae59));
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &INNER);

        let bytes = with_inner(&HEADER_K);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 8);
        assert_eq!((packet.checksum(), packet.reserved1()), (None, None));
        assert_eq!((packet.key(), packet.sequence()), (Some(42), None));
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &INNER);

        let packet = GrePacket::new_checked(&PACKET_CS_ODD[..]).unwrap();
        assert_eq!(packet.header_len(), 12);
        assert_eq!(packet.protocol_type(), EtherType::IPV6);
        assert_eq!((packet.key(), packet.sequence()), (None, Some(0xfffffffe)));
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload(), &[1, 2, 3]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5u8; 16 + INNER.len()];
        let mut packet = GrePacket::new_unchecked(&mut bytes[..]);
        packet.clear_flags();
        packet.set_checksum_present(true);
        packet.set_key_present(true);
        packet.set_seq_present(true);
        packet.set_version(0);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_reserved1(0);
        packet.set_key(0xdeadbeef);
        packet.set_sequence(7);
        packet.payload_mut().copy_from_slice(&INNER);
        packet.fill_checksum();
        assert_eq!(bytes, with_inner(&HEADER_CKS));
    }

    #[test]
    fn reject_too_short() {
        for header in [&HEADER_CKS[..], &HEADER_C[..], &HEADER_K[..]] {
            for len in 0..header.len() {
                assert_eq!(
                    GrePacket::new_checked(&header[..len]).unwrap_err(),
                    Error::Truncated,
                    "{header:x?} cut to {len}"
                );
            }
            // A header with an empty payload is fine.
            assert!(GrePacket::new_checked(header).is_ok());
        }
        let short = GrePacket::new_unchecked(&HEADER_CKS[..15]);
        assert_eq!(GreRepr::parse(&short), Err(Error::Truncated));
    }

    #[test]
    fn reject_bad_version() {
        for version in 1..8u16 {
            let mut bytes = with_inner(&HEADER_K);
            bytes[1] |= version as u8;
            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.version(), version as u8);
            assert_eq!(packet.check_rfc2784(), Err(Error::BadVersion));
            assert_eq!(GreRepr::parse(&packet), Err(Error::BadVersion));
        }
    }

    #[test]
    fn reject_forbidden_bits_and_ignore_reserved_ones() {
        for bit in 0..16u16 {
            let mask = 0x8000u16 >> bit;
            let mut bytes = HEADER_K.to_vec();
            bytes[..2].copy_from_slice(&(0x2000 | mask).to_be_bytes());
            bytes.extend_from_slice(&[0; 12]);
            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            let expected = match bit {
                1 | 4 | 5 => Err(Error::Malformed),
                13..=15 => Err(Error::BadVersion),
                _ => Ok(()),
            };
            assert_eq!(packet.check_rfc2784(), expected, "bit {bit}");
            assert_eq!(packet.forbidden_bits_set(), matches!(bit, 1 | 4 | 5));
            assert_eq!(
                packet.reserved_ignored_bits() != 0,
                (6..=12).contains(&bit),
                "bit {bit}"
            );
        }
        let packet = GrePacket::new_unchecked([0x07u8, 0x00, 0x08, 0x00]);
        assert_eq!(packet.recursion_control(), 7);
        let packet = GrePacket::new_unchecked([0x48u8, 0x00, 0x08, 0x00]);
        assert!(packet.routing_present() && packet.strict_source_route());
        // Ignored bits do not stop a parse.
        let mut bytes = with_inner(&HEADER_K);
        bytes[0] |= 0x03;
        bytes[1] |= 0xf8;
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.reserved_ignored_bits(), 0x03f8);
        assert_eq!(GreRepr::parse(&packet).unwrap().key, Some(42));
    }

    #[test]
    fn reject_bad_checksum() {
        for at in [4, 7, 20, 45] {
            let mut bytes = with_inner(&HEADER_CKS);
            bytes[at] ^= 0x10;
            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            assert!(!packet.verify_checksum(), "byte {at}");
            assert_eq!(GreRepr::parse(&packet), Err(Error::BadChecksum));
        }
        // Trailing bytes (Ethernet padding left in the view) are covered too.
        let mut bytes = with_inner(&HEADER_CKS);
        bytes.push(0x01);
        assert!(!GrePacket::new_checked(&bytes[..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn parse() {
        let bytes = with_inner(&HEADER_CKS);
        let packet = GrePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(GreRepr::parse(&packet), Ok(repr_cks()));
        let packet = GrePacket::new_checked(&PACKET_CS_ODD[..]).unwrap();
        assert_eq!(
            GreRepr::parse(&packet),
            Ok(GreRepr {
                protocol_type: EtherType::IPV6,
                key: None,
                sequence: Some(0xfffffffe),
                checksum: true,
            })
        );
    }

    #[test]
    fn emit() {
        let repr = repr_cks();
        assert_eq!(repr.buffer_len(), 16);
        let mut bytes = vec![0xffu8; 16 + INNER.len()];
        let mut packet = GrePacket::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(&INNER);
        packet.fill_checksum();
        assert_eq!(bytes, with_inner(&HEADER_CKS));

        let mut bytes = vec![0xffu8; 12 + 3];
        let mut packet = GrePacket::new_unchecked(&mut bytes[..]);
        GreRepr {
            protocol_type: EtherType::IPV6,
            key: None,
            sequence: Some(0xfffffffe),
            checksum: true,
        }
        .emit(&mut packet);
        packet.payload_mut().copy_from_slice(&[1, 2, 3]);
        packet.fill_checksum();
        assert_eq!(bytes, PACKET_CS_ODD);
    }

    #[test]
    fn every_flag_combination() {
        for bits in 0..8u8 {
            let repr = GreRepr {
                protocol_type: EtherType::IPV4,
                checksum: bits & 1 != 0,
                key: (bits & 2 != 0).then_some(0x0102_0304),
                sequence: (bits & 4 != 0).then_some(0x0506_0708),
            };
            let header_len = 4 + 4 * bits.count_ones() as usize;
            assert_eq!(repr.buffer_len(), header_len);
            let mut bytes = vec![0xa5u8; header_len + INNER.len()];
            let mut packet = GrePacket::new_unchecked(&mut bytes[..]);
            repr.emit(&mut packet);
            packet.payload_mut().copy_from_slice(&INNER);
            packet.fill_checksum();

            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.header_len(), header_len);
            assert_eq!(packet.payload(), &INNER);
            assert_eq!(packet.checksum_present(), repr.checksum);
            assert_eq!(packet.reserved1(), repr.checksum.then_some(0));
            assert_eq!(packet.key(), repr.key);
            assert_eq!(packet.sequence(), repr.sequence);
            assert!(packet.verify_checksum());
            assert_eq!(GreRepr::parse(&packet), Ok(repr));
            // Fields sit in RFC 2890 order: checksum, key, sequence.
            let mut at = 4;
            if repr.checksum {
                at += 4;
            }
            if repr.key.is_some() {
                assert_eq!(bytes[at..at + 4], [1, 2, 3, 4]);
                at += 4;
            }
            if repr.sequence.is_some() {
                assert_eq!(bytes[at..at + 4], [5, 6, 7, 8]);
            }
            for len in 0..header_len {
                assert_eq!(
                    GrePacket::new_checked(&bytes[..len]).unwrap_err(),
                    Error::Truncated
                );
            }
        }
    }

    fn any_repr() -> impl Strategy<Value = GreRepr> {
        (
            any::<u16>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
        )
            .prop_map(|(protocol_type, key, sequence, checksum)| GreRepr {
                protocol_type: EtherType(protocol_type),
                key,
                sequence,
                checksum,
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_identity(
            repr in any_repr(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = vec![0u8; repr.buffer_len() + payload.len()];
            let mut packet = GrePacket::new_unchecked(&mut bytes[..]);
            repr.emit(&mut packet);
            packet.payload_mut().copy_from_slice(&payload);
            packet.fill_checksum();
            let packet = GrePacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(packet.payload(), &payload[..]);
            prop_assert_eq!(GreRepr::parse(&packet), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            if let Ok(p) = GrePacket::new_checked(&bytes[..]) {
                let _ = (p.checksum_present(), p.routing_present(), p.key_present());
                let _ = (p.seq_present(), p.strict_source_route(), p.recursion_control());
                let _ = (p.forbidden_bits_set(), p.reserved_ignored_bits(), p.version());
                let _ = (p.protocol_type(), p.checksum(), p.reserved1(), p.key());
                let _ = (p.sequence(), p.header_len(), p.payload(), p.check_rfc2784());
                let _ = (p.verify_checksum(), GreRepr::parse(&p));
                let mut owned = bytes.clone();
                let mut p = GrePacket::new_checked(&mut owned[..]).unwrap();
                let _ = p.payload_mut().len();
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
            }
        }
    }
}
