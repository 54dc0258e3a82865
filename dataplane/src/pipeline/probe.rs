//! In-tunnel health probes: a tunnel whose client runs no BGP (so no BFD) is probed by the
//! appliance itself. A probe goes into the tunnel, encapsulated like any packet of it; its
//! inner packet is already the answer, an ICMP echo reply from our tunnel endpoint to our
//! tunnel endpoint, so the client router only has to decapsulate it and route it: it comes
//! back to us natively (or by any path that reaches our endpoint). A reply proves that the
//! router receives and decapsulates what we send into the tunnel.
//!
//! The reply carries a magic word, the tunnel's slot and a nonce the prober drew for that
//! probe: a reply that does not name an outstanding probe's nonce proves nothing (anyone on
//! the Internet can send an echo reply to our address) and is ignored by the prober.

use crate::wire::checksum;
use core::net::Ipv4Addr;

/// The ICMP identifier of our probes.
pub const PROBE_ID: u16 = 0xbb01;
/// The first bytes of a probe's payload.
pub const PROBE_MAGIC: [u8; 8] = *b"bbprobe1";
/// A probe's inner packet: IPv4 (20), ICMP (8), magic (8), slot (4), nonce (4), sequence
/// (4), send time in nanoseconds (8).
pub const PROBE_LEN: usize = 20 + 8 + 8 + 4 + 4 + 4 + 8;

/// What a probe's reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    /// The tunnel's slot when the probe was sent.
    pub slot: u32,
    pub nonce: u32,
    pub seq: u32,
    /// When the probe was sent (the prober's clock).
    pub sent_ns: u64,
}

/// The inner packet of a probe: an echo reply from `src` to `dst`, TTL 64, carrying the
/// probe's identity. An edge probes from its tunnel endpoint to itself; a client-site
/// router from the edge's endpoint to its own (the form of a GRE keepalive, which the edge
/// reflects natively). Either way `dst` is ours: the reply comes back to us.
pub fn probe_packet(src: Ipv4Addr, dst: Ipv4Addr, p: &ProbeReply) -> [u8; PROBE_LEN] {
    let mut b = [0u8; PROBE_LEN];
    // IPv4: version 4, IHL 5, total length, DF clear, TTL 64, protocol ICMP.
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(PROBE_LEN as u16).to_be_bytes());
    b[8] = 64;
    b[9] = 1;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&dst.octets());
    let sum = checksum::checksum(&b[..20]);
    b[10..12].copy_from_slice(&sum.to_be_bytes());
    // ICMP echo reply (type 0, code 0), our identifier, the low 16 bits of the sequence.
    b[24..26].copy_from_slice(&PROBE_ID.to_be_bytes());
    b[26..28].copy_from_slice(&(p.seq as u16).to_be_bytes());
    b[28..36].copy_from_slice(&PROBE_MAGIC);
    b[36..40].copy_from_slice(&p.slot.to_be_bytes());
    b[40..44].copy_from_slice(&p.nonce.to_be_bytes());
    b[44..48].copy_from_slice(&p.seq.to_be_bytes());
    b[48..56].copy_from_slice(&p.sent_ns.to_be_bytes());
    let sum = checksum::checksum(&b[20..]);
    b[22..24].copy_from_slice(&sum.to_be_bytes());
    b
}

/// Whether an ICMP message (from its type on) is one of our probes: an echo reply with our
/// identifier and magic word. The cheap test the pipeline makes on ICMP for us.
#[inline]
pub fn is_probe(icmp: &[u8]) -> bool {
    icmp.len() >= PROBE_LEN - 20
        && icmp[0] == 0
        && icmp[1] == 0
        && icmp[4..6] == PROBE_ID.to_be_bytes()
        && icmp[8..16] == PROBE_MAGIC
}

/// The probe a reply names, from its IPv4 header on; `None` unless it is one of ours, whole,
/// with a valid ICMP checksum.
pub fn parse_reply(ip: &[u8]) -> Option<ProbeReply> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || ip.len() < ihl || ip.get(9) != Some(&1) {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let icmp = ip.get(ihl..total.min(ip.len()))?;
    if !is_probe(icmp) || !checksum::verify(icmp) {
        return None;
    }
    let u32_at =
        |at: usize| u32::from_be_bytes([icmp[at], icmp[at + 1], icmp[at + 2], icmp[at + 3]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&icmp[28..36]);
    Some(ProbeReply {
        slot: u32_at(16),
        nonce: u32_at(20),
        seq: u32_at(24),
        sent_ns: u64::from_be_bytes(t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_its_own_reply_and_parses_back() {
        let p = ProbeReply {
            slot: 7,
            nonce: 0xdead_beef,
            seq: 70_000,
            sent_ns: 123_456_789,
        };
        let ours = Ipv4Addr::new(192, 0, 2, 1);
        let b = probe_packet(ours, ours, &p);
        // RFC 1071: both checksums verify to all ones.
        assert!(checksum::verify(&b[..20]));
        assert!(checksum::verify(&b[20..]));
        assert_eq!(parse_reply(&b), Some(p));
        // Any byte of the ICMP part changed: not ours any more (checksum or magic).
        for i in 20..PROBE_LEN {
            let mut c = b;
            c[i] ^= 0x40;
            assert_eq!(parse_reply(&c), None, "byte {i}");
        }
        // Cut short: not a probe.
        assert_eq!(parse_reply(&b[..PROBE_LEN - 1]), None);
        // An echo request with the same payload is someone's ping, not our probe.
        let mut req = b;
        req[20] = 8;
        assert!(!is_probe(&req[20..]));
    }
}
