//! IPv4 (RFC 791) headers.
//!
//! `new_checked` validates the structure (RFC 1812 section 5.2.2 minus the checksum):
//! at least 20 bytes (`Truncated`), version 4 (`BadVersion`), IHL at least 5 and the
//! header inside the buffer, total length at least the header length and inside the buffer
//! (`BadLength`). Bytes past the total length (Ethernet padding) are allowed and ignored by
//! [`Ipv4Packet::payload`]. The checksum is a separate call, [`Ipv4Packet::verify_checksum`],
//! because a NIC may have verified it already.

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, Error, IpProtocol, Ipv4Addr, Result};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// Longest IPv4 header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
    pub const OPTIONS: usize = 20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1FFF;

/// The ECN field (RFC 3168). All four values are meaningful, so this is a plain enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Ecn {
    /// Not ECN-capable transport.
    #[default]
    NotEct = 0,
    /// ECN-capable transport, ECT(1).
    Ect1 = 1,
    /// ECN-capable transport, ECT(0).
    Ect0 = 2,
    /// Congestion experienced.
    Ce = 3,
}

impl Ecn {
    /// The ECN value of the two low bits of `bits` (higher bits are ignored).
    #[inline]
    pub const fn from_bits(bits: u8) -> Ecn {
        match bits & 0b11 {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// The two-bit wire value.
    #[inline]
    pub const fn bits(self) -> u8 {
        self as u8
    }

    /// Whether this is ECT(0) or ECT(1).
    #[inline]
    pub const fn is_ect(self) -> bool {
        matches!(self, Ecn::Ect0 | Ecn::Ect1)
    }
}

/// Whether `addr` may never appear as a source (RFC 1812 section 5.3.7): 0.0.0.0/8,
/// 127.0.0.0/8, and 224.0.0.0/4 and above (multicast, reserved, limited broadcast).
#[inline]
pub const fn is_martian_source(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    first == 0 || first == 127 || first >= 224
}

/// Whether a router must never forward a packet to `addr` as unicast (RFC 1812 sections
/// 5.3.7 and 4.2.2.11): 0.0.0.0/8, 127.0.0.0/8, multicast (no multicast routing here),
/// 240.0.0.0/4 and the limited broadcast address. The same set as the martian sources.
#[inline]
pub const fn is_martian_destination(addr: Ipv4Addr) -> bool {
    is_martian_source(addr)
}

/// A view of an IPv4 packet: header, options and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks; accessors panic if the lengths are not consistent.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len); then no accessor panics.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the structure; does not look at the checksum.
    ///
    /// `Truncated` under 20 bytes; `BadVersion` unless version 4; `BadLength` if IHL < 5,
    /// the header overruns the buffer, or the total length is shorter than the header or
    /// longer than the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::BadLength);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// ECN field.
    #[inline]
    pub fn ecn(&self) -> Ecn {
        Ecn::from_bits(self.buffer.as_ref()[field::DSCP_ECN])
    }

    /// Total length: header plus payload, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Same as [`ttl`](Self::ttl), by its IPv6 name.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.ttl()
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Same as [`protocol`](Self::protocol), by its IPv6 name.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        self.protocol()
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The whole header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The options: bytes 20 to the header length (empty for IHL 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The payload: header length to total length (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }

    /// Whether the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version (low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let byte = &mut self.buffer.as_mut()[field::VER_IHL];
        *byte = (*byte & 0x0F) | (value << 4);
    }

    /// Sets the header length in bytes; must be a multiple of 4 from 20 to 60.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        let byte = &mut self.buffer.as_mut()[field::VER_IHL];
        *byte = (*byte & 0xF0) | ((len / 4) as u8 & 0x0F);
    }

    /// Sets the DSCP (low 6 bits of `value`); leaves the checksum alone.
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let byte = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *byte = (*byte & 0b11) | (value << 2);
    }

    /// Sets the ECN field; leaves the checksum alone.
    #[inline]
    pub fn set_ecn(&mut self, value: Ecn) {
        let byte = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *byte = (*byte & !0b11) | value.bits();
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    #[inline]
    fn set_flg_off_bits(&mut self, mask: u16, bits: u16) {
        let data = self.buffer.as_mut();
        let old = read_u16(data, field::FLG_OFF);
        write_u16(data, field::FLG_OFF, (old & !mask) | (bits & mask));
    }

    /// Clears the whole flags and fragment offset word (reserved bit included).
    #[inline]
    pub fn clear_flags(&mut self) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, 0);
    }

    /// Sets the Don't Fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    /// Sets the More Fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in bytes; must be a multiple of 8.
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        debug_assert!(bytes % 8 == 0);
        self.set_flg_off_bits(OFFSET_MASK, bytes >> 3);
    }

    /// Sets the time to live; leaves the checksum alone.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Same as [`set_ttl`](Self::set_ttl), by its IPv6 name.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.set_ttl(value);
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.0;
    }

    /// Same as [`set_protocol`](Self::set_protocol), by its IPv6 name.
    #[inline]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.set_protocol(value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SRC_ADDR, addr.into());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::DST_ADDR, addr.into());
    }

    /// Computes the header checksum (over the header length, options included) and
    /// stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::checksum(self.header());
        self.set_checksum(sum);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// The payload (header length to total length), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }

    /// Decrements the TTL and patches the checksum (RFC 1624), returning the new TTL.
    ///
    /// A TTL of 0 is left as it is and 0 returned: check for TTL <= 1 and drop first.
    #[inline]
    pub fn decrement_ttl_incremental(&mut self) -> u8 {
        let data = self.buffer.as_mut();
        let ttl = data[field::TTL];
        if ttl == 0 {
            return 0;
        }
        // TTL shares its 16-bit word with the protocol.
        let old_word = read_u16(data, field::TTL);
        let new_word = old_word - 0x0100;
        let old_sum = read_u16(data, field::CHECKSUM);
        data[field::TTL] = ttl - 1;
        write_u16(
            data,
            field::CHECKSUM,
            checksum::update_u16(old_sum, old_word, new_word),
        );
        ttl - 1
    }

    /// Sets the ECN field and patches the checksum (RFC 1624).
    #[inline]
    pub fn set_ecn_incremental(&mut self, value: Ecn) {
        let data = self.buffer.as_mut();
        // ECN shares its 16-bit word with version, IHL and DSCP.
        let old_word = read_u16(data, field::VER_IHL);
        let new_word = (old_word & !0b11) | u16::from(value.bits());
        if new_word == old_word {
            return;
        }
        let old_sum = read_u16(data, field::CHECKSUM);
        write_u16(data, field::VER_IHL, new_word);
        write_u16(
            data,
            field::CHECKSUM,
            checksum::update_u16(old_sum, old_word, new_word),
        );
    }
}

/// An IPv4 header as values: what the pipeline reads from and writes into an unfragmented
/// packet. `emit` always writes a 20-byte header; `parse` accepts options and drops them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub next_header: IpProtocol,
    /// Payload length in bytes (total length minus header length); at most 65515.
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN field.
    pub ecn: Ecn,
    /// Don't Fragment flag.
    pub dont_frag: bool,
    /// Identification.
    pub ident: u16,
}

impl Ipv4Repr {
    /// Reads the header: the errors of [`Ipv4Packet::check_len`], then `BadChecksum`, then
    /// `Unsupported` for a fragment (a `Repr` cannot describe one).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            hop_limit: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            dont_frag: packet.dont_frag(),
            ident: packet.ident(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: [`HEADER_LEN`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum; the payload is not touched. Panics if the
    /// buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        {
            let data = packet.buffer.as_mut();
            data[field::VER_IHL] = 0x45;
            data[field::DSCP_ECN] = (self.dscp << 2) | self.ecn.bits();
            write_u16(data, field::LENGTH, (HEADER_LEN + self.payload_len) as u16);
            write_u16(data, field::IDENT, self.ident);
            write_u16(
                data,
                field::FLG_OFF,
                if self.dont_frag { FLAG_DF } else { 0 },
            );
            data[field::TTL] = self.hop_limit;
            data[field::PROTOCOL] = self.next_header.0;
        }
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The classic example header (checksum confirmed by scapy), for a 115-byte packet.
    static HEADER_BYTES: [u8; 20] = [
        0x45, // version 4, IHL 5
        0x00, // DSCP 0, ECN Not-ECT
        0x00, 0x73, // total length 115
        0x00, 0x00, // identification 0
        0x40, 0x00, // flags DF, fragment offset 0
        0x40, // TTL 64
        0x11, // protocol UDP
        0xb8, 0x61, // header checksum
        0xc0, 0xa8, 0x00, 0x01, // source 192.168.0.1
        0xc0, 0xa8, 0x00, 0xc7, // destination 192.168.0.199
    ];

    // Produced by scapy: raw(IP(src="192.0.2.1", dst="198.51.100.2", ttl=1, id=0xabcd,
    // tos=0xb9, proto=17, flags="MF", frag=185, options=[IPOption_Router_Alert()])
    // / Raw(b"\x01\x02\x03\x04")).
    static OPTIONS_PACKET: [u8; 28] = [
        0x46, // version 4, IHL 6
        0xb9, // DSCP 46 (EF), ECN ECT(1)
        0x00, 0x1c, // total length 28
        0xab, 0xcd, // identification
        0x20, 0xb9, // flags MF, fragment offset 185 (1480 bytes)
        0x01, // TTL 1
        0x11, // protocol UDP
        0x6b, 0x56, // header checksum
        0xc0, 0x00, 0x02, 0x01, // source 192.0.2.1
        0xc6, 0x33, 0x64, 0x02, // destination 198.51.100.2
        0x94, 0x04, 0x00, 0x00, // option: router alert
        0x01, 0x02, 0x03, 0x04, // payload
    ];

    const PAYLOAD_LEN: usize = 115 - 20;

    fn packet_bytes() -> Vec<u8> {
        let mut bytes = vec![0u8; 115];
        bytes[..20].copy_from_slice(&HEADER_BYTES);
        for (i, b) in bytes[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        bytes
    }

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            next_header: IpProtocol::UDP,
            payload_len: PAYLOAD_LEN,
            hop_limit: 64,
            dscp: 0,
            ecn: Ecn::NotEct,
            dont_frag: true,
            ident: 0,
        }
    }

    #[test]
    fn deconstruct() {
        let bytes = packet_bytes();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.dscp(), 0);
        assert_eq!(packet.ecn(), Ecn::NotEct);
        assert_eq!(packet.total_len(), 115);
        assert_eq!(packet.ident(), 0);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.hop_limit(), 64);
        assert_eq!(packet.protocol(), IpProtocol::UDP);
        assert_eq!(packet.next_header(), IpProtocol::UDP);
        assert_eq!(packet.checksum(), 0xb861);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(packet.options().is_empty());
        assert_eq!(packet.header(), &HEADER_BYTES);
        assert_eq!(packet.payload(), &bytes[20..]);
        assert!(packet.verify_checksum());
    }

    #[test]
    fn deconstruct_options_and_fragment() {
        let packet = Ipv4Packet::new_checked(&OPTIONS_PACKET[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.ecn(), Ecn::Ect1);
        assert_eq!(packet.ident(), 0xabcd);
        assert!(!packet.dont_frag());
        assert!(packet.more_frags());
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.is_fragment());
        assert_eq!(packet.ttl(), 1);
        assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(packet.payload(), &[1, 2, 3, 4]);
        assert!(packet.verify_checksum());
        // A fragment is a valid packet but not something a Repr describes.
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Unsupported));
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5u8; 115];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_dscp(0);
        packet.set_ecn(Ecn::NotEct);
        packet.set_total_len(115);
        packet.set_ident(0);
        packet.clear_flags();
        packet.set_dont_frag(true);
        packet.set_more_frags(false);
        packet.set_frag_offset(0);
        packet.set_ttl(64);
        packet.set_protocol(IpProtocol::UDP);
        packet.set_src_addr(Ipv4Addr::new(192, 168, 0, 1));
        packet.set_dst_addr(Ipv4Addr::new(192, 168, 0, 199));
        packet.fill_checksum();
        for (i, b) in packet.payload_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(bytes, packet_bytes());
    }

    #[test]
    fn construct_options_and_fragment() {
        let mut bytes = [0u8; 28];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(4);
        packet.set_header_len(24);
        packet.set_dscp(46);
        packet.set_ecn(Ecn::Ect1);
        packet.set_total_len(28);
        packet.set_ident(0xabcd);
        packet.set_more_frags(true);
        packet.set_frag_offset(1480);
        packet.set_hop_limit(1);
        packet.set_next_header(IpProtocol::UDP);
        packet.set_src_addr(Ipv4Addr::new(192, 0, 2, 1));
        packet.set_dst_addr(Ipv4Addr::new(198, 51, 100, 2));
        packet
            .options_mut()
            .copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        packet.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        packet.fill_checksum();
        assert_eq!(bytes, OPTIONS_PACKET);
    }

    #[test]
    fn reject_too_short() {
        let bytes = packet_bytes();
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        // Total length 115 does not fit in what the buffer holds.
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..114]).unwrap_err(),
            Error::BadLength
        );
    }

    #[test]
    fn reject_bad_version() {
        for version in [0u8, 5, 6, 15] {
            let mut bytes = packet_bytes();
            bytes[0] = (version << 4) | 5;
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
                Error::BadVersion
            );
        }
    }

    #[test]
    fn reject_bad_lengths() {
        // IHL below 5.
        for ihl in 0..5u8 {
            let mut bytes = packet_bytes();
            bytes[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
                Error::BadLength
            );
        }
        // IHL past the end of the buffer.
        let mut bytes = HEADER_BYTES;
        bytes[0] = 0x46;
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
        // Total length shorter than the header.
        let mut bytes = packet_bytes();
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
        // Total length longer than the buffer.
        let mut bytes = packet_bytes();
        bytes[2..4].copy_from_slice(&116u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
    }

    #[test]
    fn padding_is_not_payload() {
        let mut bytes = packet_bytes();
        bytes.extend_from_slice(&[0xee; 7]);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload().len(), PAYLOAD_LEN);
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn parse() {
        let bytes = packet_bytes();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn parse_rejects_bad_checksum() {
        let mut bytes = packet_bytes();
        bytes[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::BadChecksum));
    }

    #[test]
    fn parse_accepts_options() {
        let mut bytes = OPTIONS_PACKET;
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_more_frags(false);
        packet.set_frag_offset(0);
        packet.fill_checksum();
        let repr = Ipv4Repr::parse(&packet).unwrap();
        assert_eq!(repr.payload_len, 4);
        assert_eq!(repr.dscp, 46);
        assert_eq!(repr.ecn, Ecn::Ect1);
    }

    #[test]
    fn parse_checks_unchecked_views() {
        let bytes = packet_bytes();
        let packet = Ipv4Packet::new_unchecked(&bytes[..10]);
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Truncated));
    }

    #[test]
    fn emit() {
        let mut bytes = packet_bytes();
        bytes[..20].fill(0xff);
        let repr = repr();
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, packet_bytes());
    }

    #[test]
    fn decrement_ttl_incremental_keeps_checksum_valid() {
        let mut bytes = packet_bytes();
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(packet.decrement_ttl_incremental(), 63);
        assert_eq!(packet.ttl(), 63);
        assert!(packet.verify_checksum());
        let incremental = packet.checksum();
        packet.fill_checksum();
        assert_eq!(packet.checksum(), incremental);

        packet.set_ttl(0);
        packet.fill_checksum();
        let before = packet.checksum();
        assert_eq!(packet.decrement_ttl_incremental(), 0);
        assert_eq!((packet.ttl(), packet.checksum()), (0, before));
    }

    #[test]
    fn set_ecn_incremental_keeps_checksum_valid() {
        let mut bytes = OPTIONS_PACKET;
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_ecn_incremental(Ecn::Ce);
        assert_eq!(packet.ecn(), Ecn::Ce);
        assert_eq!(packet.dscp(), 46);
        assert_eq!(packet.header_len(), 24);
        assert!(packet.verify_checksum());
        let incremental = packet.checksum();
        packet.fill_checksum();
        assert_eq!(packet.checksum(), incremental);
    }

    #[test]
    fn martian_sources() {
        for addr in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(0, 1, 2, 3),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(239, 255, 255, 255),
            Ipv4Addr::new(240, 0, 0, 1),
            Ipv4Addr::BROADCAST,
        ] {
            assert!(is_martian_source(addr), "{addr}");
        }
        for addr in [
            Ipv4Addr::new(1, 0, 0, 0),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(126, 255, 255, 255),
            Ipv4Addr::new(128, 0, 0, 0),
            Ipv4Addr::new(223, 255, 255, 255),
        ] {
            assert!(!is_martian_source(addr), "{addr}");
        }
    }

    #[test]
    fn ecn_bits() {
        for bits in 0..4u8 {
            assert_eq!(Ecn::from_bits(bits).bits(), bits);
        }
        assert_eq!(Ecn::from_bits(0xfe), Ecn::Ect0);
        assert!(Ecn::Ect0.is_ect() && Ecn::Ect1.is_ect());
        assert!(!Ecn::NotEct.is_ect() && !Ecn::Ce.is_ect());
    }

    fn any_ecn() -> impl Strategy<Value = Ecn> {
        (0u8..4).prop_map(Ecn::from_bits)
    }

    fn any_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..=usize::from(u16::MAX) - HEADER_LEN,
            any::<u8>(),
            0u8..64,
            any_ecn(),
            any::<bool>(),
            any::<u16>(),
        )
            .prop_map(
                |(src, dst, proto, payload_len, hop_limit, dscp, ecn, dont_frag, ident)| Ipv4Repr {
                    src_addr: Ipv4Addr::from(src),
                    dst_addr: Ipv4Addr::from(dst),
                    next_header: IpProtocol(proto),
                    payload_len,
                    hop_limit,
                    dscp,
                    ecn,
                    dont_frag,
                    ident,
                },
            )
    }

    proptest! {
        #[test]
        fn emit_then_parse_is_identity(repr in any_repr()) {
            let mut bytes = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
        }

        #[test]
        fn incremental_updates_equal_recompute(repr in any_repr(), ecn in any_ecn()) {
            let mut bytes = [0u8; HEADER_LEN];
            Ipv4Repr { payload_len: 0, ..repr }
                .emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
            let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            packet.decrement_ttl_incremental();
            packet.set_ecn_incremental(ecn);
            let incremental = packet.checksum();
            packet.fill_checksum();
            prop_assert_eq!(incremental, packet.checksum());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(p) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len());
                let _ = (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset());
                let _ = (p.is_fragment(), p.ttl(), p.hop_limit(), p.protocol());
                let _ = (p.next_header(), p.checksum(), p.src_addr(), p.dst_addr());
                let _ = (p.header(), p.options(), p.payload(), p.verify_checksum());
                let _ = Ipv4Repr::parse(&p);
                let mut owned = bytes.clone();
                let mut p = Ipv4Packet::new_checked(&mut owned[..]).unwrap();
                let _ = (p.options_mut().len(), p.payload_mut().len());
                p.decrement_ttl_incremental();
                p.set_ecn_incremental(Ecn::Ce);
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
            }
        }

        #[test]
        fn arbitrary_valid_headers_parse(
            mut bytes in proptest::collection::vec(any::<u8>(), 20..96),
            ihl in 5u8..16,
        ) {
            // Steer random bytes into the accepted shape so parse's success path runs too.
            let len = bytes.len();
            let ihl = ihl.min((len / 4) as u8);
            let header_len = usize::from(ihl) * 4;
            bytes[0] = 0x40 | ihl;
            bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            bytes[6] = 0x40;
            bytes[7] = 0;
            let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
            packet.fill_checksum();
            let repr = Ipv4Repr::parse(&packet).unwrap();
            prop_assert_eq!(repr.payload_len, len - header_len);
        }
    }
}
