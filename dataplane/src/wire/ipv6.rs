//! IPv6 fixed header (RFC 8200 section 3).
//!
//! Only the fixed 40 bytes: a router forwards on them and passes extension headers as they
//! are (RFC 8200 section 4, RFC 7045), so nothing here walks the chain of next headers.
//! `new_checked` checks the length the accessors need (40 bytes), the version, and that
//! the payload length fits in the buffer; after it returns `Ok`, no accessor can panic.
//! Addresses leave the view as `Ipv6Addr` or as host-order `u128`.

use super::ipv4::Ecn;
use super::{read_u16, Error, IpProtocol, Ipv6Addr, Result};

/// The fixed header's length.
pub const HEADER_LEN: usize = 40;

/// The smallest MTU every IPv6 link carries (RFC 8200 section 5).
pub const MIN_MTU: usize = 1280;

mod field {
    /// Version (4 bits), traffic class (8), flow label (20).
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: usize = 8;
    pub const DST_ADDR: usize = 24;
}

/// Whether a router must never forward a packet to `addr` (RFC 4291, RFC 6890's IPv6
/// special-purpose registry, "Forwardable: False" where the protocol itself forbids it):
/// the unspecified address, loopback, IPv4-mapped addresses (::ffff:0:0/96, never on the
/// wire), link-local (fe80::/10, one link only: RFC 4291 section 2.5.6) and multicast
/// (ff00::/8: no multicast routing here). Documentation (2001:db8::/32) and the other
/// registry entries are forwarded: filtering them is routing policy (a blackhole route),
/// as for IPv4's TEST-NETs.
#[inline]
pub const fn is_martian_destination(addr: u128) -> bool {
    addr == 0 || addr == 1 || addr >> 32 == 0xffff || addr >> 118 == 0x3fa || addr >> 120 == 0xff
}

/// Whether no IPv6 node may send from `addr` (RFC 4291 sections 2.5.2, 2.5.3 and 2.7): the
/// unspecified address (only before a node has one, never routed), loopback, and multicast.
#[inline]
pub const fn is_invalid_source(addr: u128) -> bool {
    addr == 0 || addr == 1 || addr >> 120 == 0xff
}

/// Whether `addr` is link-local (fe80::/10): a router never forwards from it to another link.
#[inline]
pub const fn is_link_local(addr: u128) -> bool {
    addr >> 118 == 0x3fa
}

/// A view of an IPv6 fixed header (and what follows) in a byte buffer.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks, for buffers we fill ourselves.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// A view of untrusted bytes: at least the fixed header, version 6, and the payload
    /// length within the buffer (bytes past it are the link's padding, or worse).
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let p = Ipv6Packet { buffer };
        let data = p.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if data[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        if HEADER_LEN + usize::from(p.payload_len()) > data.len() {
            return Err(Error::BadLength);
        }
        Ok(p)
    }

    /// The version field (6 once checked).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// The traffic class: DSCP in the top six bits, ECN in the bottom two (RFC 2474,
    /// RFC 3168), as IPv4's second byte.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let d = self.buffer.as_ref();
        (d[0] << 4) | (d[1] >> 4)
    }

    /// The ECN field of the traffic class.
    #[inline]
    pub fn ecn(&self) -> Ecn {
        Ecn::from_bits(self.traffic_class())
    }

    /// The flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        let d = self.buffer.as_ref();
        (u32::from(d[1] & 0x0f) << 16) | u32::from(read_u16(d, 2))
    }

    /// Bytes after the fixed header (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The header and its payload: what the packet's length is.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The header after the fixed one: an extension header or the upper layer.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address, host order.
    #[inline]
    pub fn src_bits(&self) -> u128 {
        addr_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// The destination address, host order.
    #[inline]
    pub fn dst_bits(&self) -> u128 {
        addr_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_bits())
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_bits())
    }

    /// The payload, as the payload length says.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(d.len());
        &d[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set the ECN field; the rest of the traffic class stays.
    #[inline]
    pub fn set_ecn(&mut self, ecn: Ecn) {
        let d = self.buffer.as_mut();
        d[1] = (d[1] & !0x30) | (ecn.bits() << 4);
    }

    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Decrement the hop limit (no checksum covers it); it must be above zero.
    #[inline]
    pub fn decrement_hop_limit(&mut self) {
        let d = self.buffer.as_mut();
        d[field::HOP_LIMIT] = d[field::HOP_LIMIT].saturating_sub(1);
    }
}

#[inline]
fn addr_at(d: &[u8], at: usize) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[at..at + 16]);
    u128::from_be_bytes(b)
}

/// An IPv6 fixed header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    pub hop_limit: u8,
    /// DSCP and ECN.
    pub traffic_class: u8,
}

impl Ipv6Repr {
    /// Parse a checked view's fixed header.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        Ipv6Packet::new_checked(p.buffer.as_ref())?;
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
        })
    }

    /// The fixed header's length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the fixed header (flow label 0) into the first 40 bytes of `buf`. The payload
    /// length is cut to 16 bits (a longer payload needs a jumbo option, never built here).
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..HEADER_LEN];
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = self.traffic_class << 4;
        h[2] = 0;
        h[3] = 0;
        h[4..6].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
        h[6] = self.next_header.0;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src_addr.octets());
        h[24..40].copy_from_slice(&self.dst_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8200 section 3, field by field.
    const PACKET: [u8; 48] = [
        0x6b, 0x85, 0x43,
        0x21, // version 6, traffic class 0xb8 (EF, ECT(0)... 0xb8), flow 0x54321
        0x00, 0x08, // payload length 8
        0x11, // next header UDP
        0x40, // hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
        0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // fd00::2
        1, 2, 3, 4, 5, 6, 7, 8, // payload
    ];

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.ecn(), Ecn::NotEct);
        assert_eq!(p.flow_label(), 0x54321);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "fd00::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.total_len(), 48);
    }

    #[test]
    fn construct() {
        let repr = Ipv6Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "fd00::2".parse().unwrap(),
            next_header: IpProtocol::UDP,
            payload_len: 8,
            hop_limit: 64,
            traffic_class: 0xb8,
        };
        let mut buf = PACKET;
        buf[..40].fill(0);
        repr.emit(&mut buf);
        // The same bytes, flow label 0.
        let mut want = PACKET;
        want[1] &= 0xf0;
        want[2] = 0;
        want[3] = 0;
        assert_eq!(buf, want);
        assert_eq!(
            Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&buf[..])),
            Ok(repr)
        );
    }

    #[test]
    fn rejects_short_bad_version_and_bad_length() {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..39]).unwrap_err(),
            Error::Truncated
        );
        for v in [0u8, 4, 5, 7, 15] {
            let mut b = PACKET;
            b[0] = (v << 4) | (b[0] & 0x0f);
            assert_eq!(
                Ipv6Packet::new_checked(&b[..]).unwrap_err(),
                Error::BadVersion,
                "{v}"
            );
        }
        // Payload length one past the buffer.
        let mut b = PACKET;
        b[5] = 9;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Error::BadLength
        );
        // Shorter than the buffer: accepted (the rest is padding to trim).
        b[5] = 7;
        assert!(Ipv6Packet::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn ecn_and_hop_limit_setters() {
        let mut b = PACKET;
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_ecn(Ecn::Ce);
        assert_eq!(p.traffic_class(), 0xbb);
        assert_eq!(p.flow_label(), 0x54321);
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 63);
    }

    #[test]
    fn special_addresses() {
        let a = |s: &str| u128::from(s.parse::<Ipv6Addr>().unwrap());
        for m in [
            "::",
            "::1",
            "::ffff:192.0.2.1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(is_martian_destination(a(m)), "{m}");
        }
        for ok in [
            "2001:db8::1",
            "fec0::1",
            "fd00::1",
            "64:ff9b::1",
            "2002::1",
            "100::1",
        ] {
            assert!(!is_martian_destination(a(ok)), "{ok}");
        }
        assert!(is_invalid_source(a("ff02::1")) && is_invalid_source(a("::")));
        assert!(!is_invalid_source(a("fe80::1")));
        assert!(is_link_local(a("fe80::1")) && !is_link_local(a("fec0::1")));
    }
}
