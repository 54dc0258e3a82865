//! Neighbor Discovery (RFC 4861): Neighbor Solicitation and Advertisement messages, their
//! link-layer address options, and the addresses ND is sent to: a port's link-local
//! address (modified EUI-64 from its MAC, RFC 4291 appendix A), solicited-node multicast
//! addresses (RFC 4291 section 2.7.1) and their Ethernet MACs (RFC 2464 section 7).
//!
//! [`NdRepr::parse`] applies RFC 4861's validity checks (sections 7.1.1 and 7.1.2) that the
//! message itself carries: after it returns `Ok`, the message may be acted on. The hop limit
//! and the IPv6 addresses are the caller's to give. Byte order stays inside: every value
//! that leaves is in host order.

use super::{icmpv6, Error, EthernetAddress, Ipv6Addr, Result};

/// ICMPv6 type of a Neighbor Solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
/// The hop limit every ND message is sent with and must arrive with (RFC 4861 7.1): a
/// message from off-link has lost at least one.
pub const HOP_LIMIT: u8 = 255;
/// Type, code, checksum, flags or reserved word, and the target address.
pub const HEADER_LEN: usize = 24;
/// A link-layer address option for Ethernet: type, length (in 8 bytes), the MAC.
pub const LLA_OPTION_LEN: usize = 8;
/// The advertisements we send: the header and a target link-layer address option.
pub const ADVERT_LEN: usize = HEADER_LEN + LLA_OPTION_LEN;
/// The solicitations we send: the header and a source link-layer address option.
pub const SOLICIT_LEN: usize = HEADER_LEN + LLA_OPTION_LEN;

/// Option type: source link-layer address.
const OPT_SOURCE_LLA: u8 = 1;
/// Option type: target link-layer address.
const OPT_TARGET_LLA: u8 = 2;

/// Neighbor Advertisement flags (RFC 4861 4.4), in the first byte after the checksum.
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// The all-nodes multicast address, ff02::1: where a DAD probe is answered.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The link-local address of an interface with this MAC: fe80::/64 and the modified EUI-64
/// interface identifier, the MAC with ff:fe in its middle and the universal/local bit
/// inverted (RFC 4291 appendix A, RFC 2464 section 4).
pub const fn link_local(mac: EthernetAddress) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// The solicited-node multicast address of `addr`: ff02::1:ff00:0/104 and its low 24 bits.
pub const fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet MAC of an IPv6 multicast address: 33:33 and its low 32 bits.
pub const fn multicast_mac(addr: Ipv6Addr) -> EthernetAddress {
    let o = addr.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Whether `mac` is the solicited-node multicast MAC of `addr` (33:33:ff and its low 24
/// bits).
#[inline]
pub fn is_solicited_node_mac(mac: EthernetAddress, addr: Ipv6Addr) -> bool {
    mac == multicast_mac(solicited_node(addr))
}

/// A Neighbor Solicitation or Advertisement as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdRepr {
    /// "What is the MAC of `target`?", with the asker's MAC when it gave one.
    Solicit {
        target: Ipv6Addr,
        source_lla: Option<EthernetAddress>,
    },
    /// "`target` is at `target_lla`".
    Advert {
        router: bool,
        solicited: bool,
        override_: bool,
        target: Ipv6Addr,
        target_lla: Option<EthernetAddress>,
    },
}

impl NdRepr {
    /// Parse and validate an ICMPv6 message (`message`: from its type to the end of the
    /// IPv6 payload) sent from `src` to `dst` with `hop_limit` (RFC 4861 7.1.1 and
    /// 7.1.2): hop limit 255, a good checksum, code 0, at least 24 bytes, a target that is
    /// not multicast, options of non-zero length that fit, and for a solicitation from the
    /// unspecified address (Duplicate Address Detection) a solicited-node destination and
    /// no source link-layer address option; for an advertisement to a multicast address,
    /// the Solicited flag clear. Any other ICMPv6 type is `Unsupported`.
    pub fn parse(message: &[u8], src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8) -> Result<NdRepr> {
        if message.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let msg_type = message[0];
        if msg_type != NEIGHBOR_SOLICIT && msg_type != NEIGHBOR_ADVERT {
            return Err(Error::Unsupported);
        }
        if hop_limit != HOP_LIMIT || message[1] != 0 {
            return Err(Error::Malformed);
        }
        if !icmpv6::verify_checksum(message, src, dst) {
            return Err(Error::BadChecksum);
        }
        let mut t = [0u8; 16];
        t.copy_from_slice(&message[8..24]);
        let target = Ipv6Addr::from(t);
        if target.is_multicast() {
            return Err(Error::Malformed);
        }
        let (mut source_lla, mut target_lla) = (None, None);
        let mut options = &message[HEADER_LEN..];
        while !options.is_empty() {
            let [kind, units, ..] = *options else {
                return Err(Error::Truncated);
            };
            let len = usize::from(units) * 8;
            if len == 0 {
                return Err(Error::BadLength);
            }
            let Some(option) = options.get(..len) else {
                return Err(Error::Truncated);
            };
            // An Ethernet address option is one unit; a longer one is for another link type.
            let mac = (len == LLA_OPTION_LEN).then(|| EthernetAddress::from_bytes(&option[2..8]));
            match (kind, mac.flatten()) {
                (OPT_SOURCE_LLA, Some(m)) => source_lla = Some(m),
                (OPT_TARGET_LLA, Some(m)) => target_lla = Some(m),
                // Options we do not know are ignored (RFC 4861 4.6).
                _ => {}
            }
            options = &options[len..];
        }
        if msg_type == NEIGHBOR_SOLICIT {
            if src.is_unspecified() && (dst != solicited_node(target) || source_lla.is_some()) {
                return Err(Error::Malformed);
            }
            Ok(NdRepr::Solicit { target, source_lla })
        } else {
            let flags = message[4];
            let solicited = flags & FLAG_SOLICITED != 0;
            if dst.is_multicast() && solicited {
                return Err(Error::Malformed);
            }
            Ok(NdRepr::Advert {
                router: flags & FLAG_ROUTER != 0,
                solicited,
                override_: flags & FLAG_OVERRIDE != 0,
                target,
                target_lla,
            })
        }
    }

    /// Bytes [`NdRepr::emit`] writes: the header and the link-layer option, if any.
    pub const fn buffer_len(&self) -> usize {
        let lla = match self {
            NdRepr::Solicit { source_lla, .. } => source_lla.is_some(),
            NdRepr::Advert { target_lla, .. } => target_lla.is_some(),
        };
        if lla {
            HEADER_LEN + LLA_OPTION_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Write the message into the first [`NdRepr::buffer_len`] bytes of `message`, with the
    /// checksum over the pseudo-header of `src` and `dst`.
    pub fn emit(&self, message: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        let len = self.buffer_len();
        let m = &mut message[..len];
        m.fill(0);
        let (target, option) = match *self {
            NdRepr::Solicit { target, source_lla } => {
                m[0] = NEIGHBOR_SOLICIT;
                (target, source_lla.map(|mac| (OPT_SOURCE_LLA, mac)))
            }
            NdRepr::Advert {
                router,
                solicited,
                override_,
                target,
                target_lla,
            } => {
                m[0] = NEIGHBOR_ADVERT;
                m[4] = if router { FLAG_ROUTER } else { 0 }
                    | if solicited { FLAG_SOLICITED } else { 0 }
                    | if override_ { FLAG_OVERRIDE } else { 0 };
                (target, target_lla.map(|mac| (OPT_TARGET_LLA, mac)))
            }
        };
        m[8..24].copy_from_slice(&target.octets());
        if let Some((kind, mac)) = option {
            m[24] = kind;
            m[25] = 1;
            m[26..32].copy_from_slice(&mac.0);
        }
        let sum = !icmpv6::checksum_with_pseudo_header(m, src, dst);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01]);

    #[test]
    fn link_local_is_modified_eui64() {
        // RFC 4291 appendix A: 02:00:00 with the U/L bit (0x02) inverted is 00:00:00, then
        // ff:fe, then aa:bb:01.
        assert_eq!(
            link_local(MAC),
            "fe80::ff:feaa:bb01".parse::<Ipv6Addr>().unwrap()
        );
        let universal = EthernetAddress([0x00, 0x1b, 0x21, 0x3c, 0x4d, 0x5e]);
        assert_eq!(
            link_local(universal),
            "fe80::21b:21ff:fe3c:4d5e".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn solicited_node_address_and_mac() {
        // RFC 4291 2.7.1: ff02::1:ff and the low 24 bits; RFC 2464 7: 33:33 and the low 32.
        let a: Ipv6Addr = "2001:db8::12:3456:789a".parse().unwrap();
        assert_eq!(
            solicited_node(a),
            "ff02::1:ff56:789a".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(a)),
            EthernetAddress([0x33, 0x33, 0xff, 0x56, 0x78, 0x9a])
        );
        assert!(is_solicited_node_mac(
            EthernetAddress([0x33, 0x33, 0xff, 0x56, 0x78, 0x9a]),
            a
        ));
        assert!(!is_solicited_node_mac(
            EthernetAddress([0x33, 0x33, 0xff, 0x56, 0x78, 0x9b]),
            a
        ));
    }

    /// A solicitation for 2001:db8::1 from 2001:db8::2 (02:00:00:00:00:02) to its
    /// solicited-node address, written byte by byte from RFC 4861 4.3 and 4.6.1.
    fn solicit_bytes(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut m = vec![
            135, 0, 0, 0, // type, code, checksum (below)
            0, 0, 0, 0, // reserved
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // target
            1, 1, 2, 0, 0, 0, 0, 2, // source link-layer address option
        ];
        let sum = !icmpv6::checksum_with_pseudo_header(&m, src, dst);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_a_solicitation_and_emit_it_again() {
        let (src, dst) = (a("2001:db8::2"), a("ff02::1:ff00:1"));
        let m = solicit_bytes(src, dst);
        let r = NdRepr::parse(&m, src, dst, 255).unwrap();
        let want = NdRepr::Solicit {
            target: a("2001:db8::1"),
            source_lla: Some(EthernetAddress([2, 0, 0, 0, 0, 2])),
        };
        assert_eq!(r, want);
        assert_eq!(r.buffer_len(), m.len());
        let mut out = vec![0xa5; m.len()];
        r.emit(&mut out, src, dst);
        assert_eq!(out, m);
    }

    #[test]
    fn rfc4861_validity_checks() {
        let (src, dst) = (a("2001:db8::2"), a("ff02::1:ff00:1"));
        let m = solicit_bytes(src, dst);
        // 7.1.1: hop limit 255 only.
        assert_eq!(NdRepr::parse(&m, src, dst, 254), Err(Error::Malformed));
        // Checksum.
        let mut bad = m.clone();
        bad[23] ^= 1;
        assert_eq!(NdRepr::parse(&bad, src, dst, 255), Err(Error::BadChecksum));
        // Code 0 (checksum fixed up so that only the code is wrong).
        let mut code = m.clone();
        code[1] = 1;
        code[2..4].fill(0);
        let sum = !icmpv6::checksum_with_pseudo_header(&code, src, dst);
        code[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(NdRepr::parse(&code, src, dst, 255), Err(Error::Malformed));
        // Shorter than 24 bytes.
        assert_eq!(
            NdRepr::parse(&m[..23], src, dst, 255),
            Err(Error::Truncated)
        );
        // An option of length zero.
        let mut zero = m.clone();
        zero[25] = 0;
        zero[2..4].fill(0);
        let sum = !icmpv6::checksum_with_pseudo_header(&zero, src, dst);
        zero[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(NdRepr::parse(&zero, src, dst, 255), Err(Error::BadLength));
        // DAD (unspecified source) with a source link-layer address option.
        let dad = solicit_bytes(Ipv6Addr::UNSPECIFIED, dst);
        assert_eq!(
            NdRepr::parse(&dad, Ipv6Addr::UNSPECIFIED, dst, 255),
            Err(Error::Malformed)
        );
        // ...and without it: valid.
        let dad = &solicit_bytes(Ipv6Addr::UNSPECIFIED, dst)[..HEADER_LEN];
        let mut dad = dad.to_vec();
        dad[2..4].fill(0);
        let sum = !icmpv6::checksum_with_pseudo_header(&dad, Ipv6Addr::UNSPECIFIED, dst);
        dad[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            NdRepr::parse(&dad, Ipv6Addr::UNSPECIFIED, dst, 255),
            Ok(NdRepr::Solicit {
                target: a("2001:db8::1"),
                source_lla: None
            })
        );
        // A multicast target.
        let mut mc = m.clone();
        mc[8] = 0xff;
        mc[2..4].fill(0);
        let sum = !icmpv6::checksum_with_pseudo_header(&mc, src, dst);
        mc[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(NdRepr::parse(&mc, src, dst, 255), Err(Error::Malformed));
    }

    #[test]
    fn advertisement_bytes() {
        // RFC 4861 4.4: type 136, flags R S O in the top bits of byte 4, the target, the
        // target link-layer address option (type 2, length 1).
        let (src, dst) = (a("2001:db8::1"), a("2001:db8::2"));
        let r = NdRepr::Advert {
            router: true,
            solicited: true,
            override_: true,
            target: src,
            target_lla: Some(MAC),
        };
        let mut m = [0u8; ADVERT_LEN];
        r.emit(&mut m, src, dst);
        assert_eq!(m[0], 136);
        assert_eq!(m[1], 0);
        assert_eq!(&m[4..8], &[0xe0, 0, 0, 0]);
        assert_eq!(&m[8..24], &src.octets());
        assert_eq!(&m[24..32], &[2, 1, 0x02, 0x00, 0x00, 0xaa, 0xbb, 0x01]);
        assert!(icmpv6::verify_checksum(&m, src, dst));
        assert_eq!(NdRepr::parse(&m, src, dst, 255), Ok(r));
        // Solicited to a multicast destination is invalid (7.1.2).
        let mut mc = [0u8; ADVERT_LEN];
        r.emit(&mut mc, src, ALL_NODES);
        assert_eq!(
            NdRepr::parse(&mc, src, ALL_NODES, 255),
            Err(Error::Malformed)
        );
    }
}
