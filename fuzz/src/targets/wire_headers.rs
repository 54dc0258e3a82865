//! Every header parser on arbitrary bytes: Ethernet, ARP, IPv4 and GRE views and their
//! `Repr`s, the Internet checksum and its incremental updates.
//!
//! Invariants: `new_checked` accepting a buffer means no accessor panics; a parsed `Repr`
//! emits bytes that parse back to the same `Repr` (and, where the header has no ignored
//! fields, to the same bytes); checksums agree with an independent RFC 1071 sum; the
//! incremental TTL and ECN updates (RFC 1624) leave a valid checksum valid.

use crate::{rfc1071_ok, rfc1071_sum};
use dataplane::wire::{
    arp, checksum, ethernet, ipv4, ArpPacket, ArpRepr, Ecn, EthernetFrame, EthernetRepr, GrePacket,
    GreRepr, IpVersion, Ipv4Packet, Ipv4Repr,
};

fn ethernet(data: &[u8]) {
    let Ok(f) = EthernetFrame::new_checked(data) else {
        assert!(data.len() < ethernet::HEADER_LEN);
        return;
    };
    let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
    let repr = EthernetRepr::parse(&f).expect("checked frame parses");
    let mut buf = [0u8; ethernet::HEADER_LEN];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    assert_eq!(
        &buf[..],
        &data[..ethernet::HEADER_LEN],
        "Ethernet emit = input"
    );
}

fn arp(data: &[u8]) {
    let Ok(p) = ArpPacket::new_checked(data) else {
        assert!(data.len() < arp::PACKET_LEN);
        return;
    };
    let _ = (
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
        p.operation(),
        p.source_hardware_addr(),
        p.source_protocol_addr(),
        p.target_hardware_addr(),
        p.target_protocol_addr(),
        p.is_ethernet_ipv4(),
    );
    let Ok(repr) = ArpRepr::parse(&p) else {
        assert!(!p.is_ethernet_ipv4());
        return;
    };
    let mut buf = [0u8; arp::PACKET_LEN];
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    assert_eq!(&buf[..], &data[..arp::PACKET_LEN], "ARP emit = input");
    assert_eq!(
        ArpRepr::parse(&ArpPacket::new_unchecked(&buf[..])),
        Ok(repr)
    );
}

fn ipv4(data: &[u8]) {
    let _ = IpVersion::of_packet(data);
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.version(),
        p.dscp(),
        p.ecn(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.hop_limit(),
        p.next_header(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.options().len(),
    );
    let hlen = p.header_len();
    let total = usize::from(p.total_len());
    assert!(hlen >= ipv4::HEADER_LEN && hlen <= total && total <= data.len());
    assert_eq!(p.header().len(), hlen);
    assert_eq!(p.payload().len(), total - hlen);
    let valid = rfc1071_ok(&data[..hlen]);
    assert_eq!(p.verify_checksum(), valid, "IPv4 checksum verdict");

    // RFC 1624 updates on a copy of the header.
    if valid {
        let mut copy = data[..total].to_vec();
        let mut q = Ipv4Packet::new_unchecked(&mut copy[..]);
        let ttl = q.ttl();
        let new_ttl = q.decrement_ttl_incremental();
        assert_eq!(new_ttl, ttl.saturating_sub(1));
        assert!(q.verify_checksum(), "checksum valid after the TTL update");
        for bits in 0..4 {
            q.set_ecn_incremental(Ecn::from_bits(bits));
            assert_eq!(q.ecn().bits(), bits);
            assert!(q.verify_checksum(), "checksum valid after the ECN update");
        }
        assert!(rfc1071_ok(&copy[..hlen]));
    }

    match Ipv4Repr::parse(&p) {
        Ok(repr) => {
            assert!(valid && !p.is_fragment());
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            assert!(rfc1071_ok(&buf[..ipv4::HEADER_LEN]), "emitted checksum");
            let again = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&buf[..]))
                .expect("an emitted header parses");
            assert_eq!(again, repr, "IPv4 emit then parse");
        }
        Err(_) => assert!(!valid || p.is_fragment()),
    }
}

fn gre(data: &[u8]) {
    let Ok(p) = GrePacket::new_checked(data) else {
        return;
    };
    let _ = (
        p.checksum_present(),
        p.routing_present(),
        p.key_present(),
        p.seq_present(),
        p.strict_source_route(),
        p.recursion_control(),
        p.forbidden_bits_set(),
        p.reserved_ignored_bits(),
        p.version(),
        p.protocol_type(),
        p.checksum(),
        p.reserved1(),
        p.key(),
        p.sequence(),
        p.check_rfc2784(),
    );
    let hlen = p.header_len();
    assert!(hlen <= data.len());
    assert_eq!(p.payload().len(), data.len() - hlen);
    if p.checksum_present() {
        assert_eq!(
            p.verify_checksum(),
            rfc1071_ok(data),
            "GRE checksum verdict"
        );
    }
    let Ok(repr) = GreRepr::parse(&p) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len() + p.payload().len()];
    buf[repr.buffer_len()..].copy_from_slice(p.payload());
    let mut q = GrePacket::new_unchecked(&mut buf[..]);
    repr.emit(&mut q);
    q.fill_checksum();
    let again = GreRepr::parse(&GrePacket::new_unchecked(&buf[..])).expect("emitted GRE parses");
    assert_eq!(again, repr, "GRE emit then parse");
    if repr.checksum {
        assert!(rfc1071_ok(&buf), "emitted GRE checksum");
    }
}

fn sums(data: &[u8]) {
    assert_eq!(checksum::sum(data), rfc1071_sum(data), "RFC 1071 sum");
    assert_eq!(checksum::verify(data), rfc1071_ok(data));
    if data.len() >= 8 {
        let old = u16::from_be_bytes([data[0], data[1]]);
        let new = u16::from_be_bytes([data[2], data[3]]);
        let sum = u16::from_be_bytes([data[4], data[5]]);
        // Patching a header that verifies leaves it verifying (RFC 1624 eqn 3).
        let mut hdr = data[..8].to_vec();
        hdr[0..2].copy_from_slice(&old.to_be_bytes());
        hdr[2..4].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&hdr);
        hdr[2..4].copy_from_slice(&c.to_be_bytes());
        assert!(rfc1071_ok(&hdr));
        let patched = checksum::update_u16(c, old, new);
        hdr[0..2].copy_from_slice(&new.to_be_bytes());
        hdr[2..4].copy_from_slice(&patched.to_be_bytes());
        // RFC 1624 section 3: over data that is now all zero the update gives -0 (0x0000),
        // which an RFC 1071 check rejects; IPv4 headers (version 4) are never all zero.
        if hdr[..2] != [0, 0] || hdr[4..] != [0; 4] {
            assert!(rfc1071_ok(&hdr), "update_u16 keeps the checksum valid");
        }
        let _ = checksum::combine(&[sum, old, new]);
        let a = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let b = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let mut h = [0u8; 8];
        h[0..4].copy_from_slice(&a.to_be_bytes());
        let c = checksum::checksum(&h);
        h[4..6].copy_from_slice(&c.to_be_bytes());
        assert!(rfc1071_ok(&h));
        let patched = checksum::update_u32(c, a, b);
        h[0..4].copy_from_slice(&b.to_be_bytes());
        h[4..6].copy_from_slice(&patched.to_be_bytes());
        if b != 0 {
            assert!(rfc1071_ok(&h), "update_u32 keeps the checksum valid");
        }
    }
}

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    // Each parser at the start of the input, and where it would sit in a frame.
    ethernet(data);
    arp(data);
    ipv4(data);
    gre(data);
    sums(data);
    if let Some(body) = data.get(ethernet::HEADER_LEN..) {
        arp(body);
        ipv4(body);
        if let Ok(ip) = Ipv4Packet::new_checked(body) {
            gre(ip.payload());
            ipv4(ip.payload());
        }
    }
}
