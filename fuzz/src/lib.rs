//! Shared pieces of the fuzz targets: the fixed lab snapshot, the input encodings, and the
//! invariant checks that every pipeline verdict must pass.
//!
//! The checks read bytes on their own (offsets and an RFC 1071 sum written here), not
//! through `dataplane::wire`, so a parser bug cannot hide itself. A failed check panics:
//! libFuzzer reports it as a crash with the input that caused it.
//!
//! # Invariants of one verdict (see [`check_verdict`])
//!
//! - `Transmit(p)`: the frame is Ethernet II from port `p`'s MAC carrying IPv4 with a valid
//!   header checksum and a total length that is exactly the rest of the frame. Either we
//!   encapsulated it (outer source one of our addresses): then the outer header names a
//!   configured tunnel whose egress port is `p`, the Ethernet destination is that tunnel's
//!   next hop, GRE flags are exactly the tunnel's, the GRE checksum (if any) verifies, the
//!   outer length fits the tunnel MTU, and the LPM sends the inner destination into that
//!   tunnel. Or it left natively: the LPM sends the destination out of `p` to the next hop
//!   whose MAC is the Ethernet destination, within the port MTU. In both cases the inner
//!   packet is the input's inner packet with the TTL one less, the DSCP unchanged, ECN only
//!   changed as RFC 6040 allows, and a valid checksum; a terminated packet's inner source
//!   belongs to the tunnel it arrived through, which is not the one it leaves by.
//! - `Punt(Arp)`: an ARP frame; the ARP handler's reply, if it makes one, is a well-formed
//!   reply from the port's MAC for one of the port's addresses to the asker.
//! - `Punt(Local)` / `Punt(LocalInner)`: the data starts at an IPv4 header addressed to us.
//! - `PathMtu(report)` / `Punt(PathMtu)`: an ICMP Fragmentation Needed from the underlay
//!   that quotes exactly a header one of our tunnels sends, on its port ([`check_path_mtu`]);
//!   the report names that tunnel and the MTU RFC 1191 and the 576-byte floor give.
//! - `Drop(r)`: exactly counter `r` went up.
//!
//! IPv6 inside IPv4 tunnels (GRE protocol type 0x86DD, IP protocol 41 on IPIP tunnels):
//! forwarded only from a tunnel whose IPv6 sources hold the inner source, into the tunnel
//! the IPv6 routes name, with the hop limit one less, ECN as RFC 6040 allows and every
//! other byte (extension headers included) as it came; punted only to the ingress tunnel's
//! `link6`; answered only with an ICMPv6 error of at most 1,280 bytes from that `link6`,
//! with a good pseudo-header checksum, quoting the offending packet's addresses.
//!
//! And over each call: received = transmitted + dropped + punted, per call and in total.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod targets;

use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::config::builder_from_config;
use dataplane::control::arp::{self, ArpOutcome};
use dataplane::control::nd::{self, NdOutcome};
use dataplane::pipeline::{Action, Counters, DropReason, Host, PathMtuReport, PuntReason};
use dataplane::tables::{PortIndex, Snapshot, Target, TunnelId, TunnelKey, TunnelMode};
use dataplane::wire::EthernetAddress;
use pipeline_config::ValidatedConfig;
use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

/// The lab configuration (the appliance_e2e lab).
pub const LAB_TOML: &str = include_str!("../lab.toml");

/// The parsed lab and its ports (DPDK port `i` is the file's port `i`, with its MAC).
pub fn lab() -> &'static (ValidatedConfig, Vec<(PortIndex, EthernetAddress)>) {
    static LAB: OnceLock<(ValidatedConfig, Vec<(PortIndex, EthernetAddress)>)> = OnceLock::new();
    LAB.get_or_init(|| {
        let cfg = pipeline_config::parse(LAB_TOML, "fuzz/lab.toml").expect("the lab is valid");
        let ports = cfg
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mac = p.mac.expect("lab ports have MACs");
                (i as PortIndex, EthernetAddress(mac.0))
            })
            .collect();
        (cfg, ports)
    })
}

/// A new snapshot of the lab (a few hundred microseconds: the LPM builders zero their
/// tables).
pub fn snapshot() -> Arc<Snapshot> {
    let (cfg, ports) = lab();
    builder_from_config(cfg, ports)
        .build()
        .expect("the lab builds")
}

/// The lab snapshot for an input made of `frames`, as if new: GRE sequence state (the only
/// state a snapshot keeps that changes a verdict) never carries from one input to the
/// next, so a crash reproduces from its input alone. The snapshot is reused until an input
/// may have reached a tunnel that checks sequence numbers; the next input gets a new one.
pub fn snapshot_for<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Arc<Snapshot> {
    thread_local! {
        static CACHE: RefCell<Option<(Arc<Snapshot>, bool)>> = const { RefCell::new(None) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let snap = match c.take() {
            Some((s, false)) => s,
            _ => snapshot(),
        };
        let dirty = frames.into_iter().any(|f| touches_sequence(&snap, f));
        *c = Some((Arc::clone(&snap), dirty));
        snap
    })
}

/// Whether the pipeline might check `frame`'s GRE sequence number (and so change the
/// tunnel's receive state): it names a tunnel that requires sequence numbers. Errs on the
/// side of yes (no Ethernet destination or checksum checks).
fn touches_sequence(snap: &Snapshot, frame: &[u8]) -> bool {
    match read_input(snap, frame).ingress {
        Some(Some(id)) => snap.tunnels().get(id).is_some_and(|t| t.config.sequence),
        _ => false,
    }
}

/// Number of ports in the lab.
pub const PORTS: u8 = 2;

/// One packet of a fuzz input: the port it arrives on, the headroom in front of it, bytes.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub port: PortIndex,
    pub headroom: usize,
    pub frame: &'a [u8],
}

/// Decode the control byte in front of a frame: bit 0 the port; bit 7 set: headroom
/// `(c >> 1) & 0x3f` (0 to 63 bytes, so `no_headroom` is reachable), else the default 128.
pub fn decode_control(c: u8) -> (PortIndex, usize) {
    let port = PortIndex::from(c & 1) % PortIndex::from(PORTS);
    let headroom = if c & 0x80 != 0 {
        usize::from((c >> 1) & 0x3f)
    } else {
        dataplane::buffer::DEFAULT_HEADROOM
    };
    (port, headroom)
}

/// `pipeline_packet` input: one control byte, then the frame.
pub fn decode_packet(data: &[u8]) -> Option<Packet<'_>> {
    let (&c, frame) = data.split_first()?;
    let (port, headroom) = decode_control(c);
    Some(Packet {
        port,
        headroom,
        frame,
    })
}

/// `pipeline_burst` input: records of a control byte, a big-endian 16-bit length and that
/// many bytes (a short last record takes what is left). Control bit 6 ends the burst after
/// this packet; a burst also ends at a change of port and at 32 packets.
pub fn decode_bursts(mut data: &[u8]) -> Vec<Vec<Packet<'_>>> {
    let mut bursts: Vec<Vec<Packet<'_>>> = Vec::new();
    let mut current: Vec<Packet<'_>> = Vec::new();
    let mut packets = 0;
    while data.len() >= 3 && packets < 1024 {
        let c = data[0];
        let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
        let rest = &data[3..];
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        data = tail;
        let (port, headroom) = decode_control(c);
        if current.first().is_some_and(|p| p.port != port)
            || current.len() == dataplane::pipeline::MAX_BURST
        {
            bursts.push(std::mem::take(&mut current));
        }
        current.push(Packet {
            port,
            headroom,
            frame,
        });
        packets += 1;
        if c & 0x40 != 0 {
            bursts.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        bursts.push(current);
    }
    bursts
}

/// Encode packets in the `pipeline_burst` format (for seeds and tests).
pub fn encode_burst(packets: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (c, f) in packets {
        out.push(*c);
        out.extend_from_slice(&(f.len().min(0xFFFF) as u16).to_be_bytes());
        out.extend_from_slice(&f[..f.len().min(0xFFFF)]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Independent byte reading.

/// RFC 1071: whether `data` (which holds its checksum) sums to 0xFFFF. Written here,
/// independently of `dataplane::wire::checksum`.
pub fn rfc1071_ok(data: &[u8]) -> bool {
    rfc1071_sum(data) == 0xFFFF
}

/// The folded ones' complement sum of `data` (odd length padded with zero).
pub fn rfc1071_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for c in data.chunks(2) {
        let hi = u64::from(c[0]) << 8;
        let lo = c.get(1).copied().map_or(0, u64::from);
        sum += hi | lo;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A structurally valid IPv4 packet cut to its total length, or `None`.
fn ipv4_cut(ip: &[u8]) -> Option<&[u8]> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    Some(&ip[..total])
}

/// The IPv6 packet at the start of `ip` (fixed header checked: version 6, payload length
/// within), cut to its payload length.
fn ipv6_cut(ip: &[u8]) -> Option<&[u8]> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let total = 40 + usize::from(be16(ip, 4));
    (total <= ip.len()).then(|| &ip[..total])
}

fn be128(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

/// The ICMPv6 checksum over the pseudo-header (RFC 8200 section 8.1) and `message`
/// verifies for a message from `src` to `dst` (written here, as `rfc1071_sum`).
fn icmpv6_ok(message: &[u8], src: &[u8], dst: &[u8]) -> bool {
    let mut pseudo = Vec::with_capacity(40 + message.len());
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(message);
    rfc1071_ok(&pseudo)
}

/// What the input frame holds, read the way SPEC.md describes it.
#[derive(Debug)]
struct Input<'a> {
    /// The tunnel it arrives through: `Some` when the outer destination is ours and the
    /// protocol GRE or IPIP (the inner `Option` is the tunnel lookup).
    ingress: Option<Option<TunnelId>>,
    /// The packet to route: the inner IPv4 packet (terminated) or the packet itself.
    inner: Option<&'a [u8]>,
}

fn read_input<'a>(snap: &Snapshot, frame: &'a [u8]) -> Input<'a> {
    let none = Input {
        ingress: None,
        inner: None,
    };
    if frame.len() < 14 || be16(frame, 12) != 0x0800 {
        return none;
    }
    let Some(ip) = ipv4_cut(&frame[14..]) else {
        return none;
    };
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    let (proto, src, dst) = (ip[9], be32(ip, 12), be32(ip, 16));
    if !(snap.is_local(dst) && (proto == 4 || proto == 47 || proto == 41)) {
        return Input {
            ingress: None,
            inner: Some(ip),
        };
    }
    let payload = &ip[ihl..];
    let (gre_key, hlen) = if proto == 47 {
        if payload.len() < 4 {
            return Input {
                ingress: Some(None),
                inner: None,
            };
        }
        let flags = be16(payload, 0);
        let (c, k, s) = (
            flags & 0x8000 != 0,
            flags & 0x2000 != 0,
            flags & 0x1000 != 0,
        );
        let hlen = 4 + 4 * (usize::from(c) + usize::from(k) + usize::from(s));
        if payload.len() < hlen {
            return Input {
                ingress: Some(None),
                inner: None,
            };
        }
        (k.then(|| be32(payload, 4 + 4 * usize::from(c))), hlen)
    } else {
        (None, 0)
    };
    let id = snap.tunnels().lookup(&TunnelKey {
        local: dst,
        remote: src,
        // IPv6 in IPv4 (41) arrives on an IPIP tunnel.
        protocol: if proto == 41 { 4 } else { proto },
        gre_key,
    });
    let v6 = proto == 41 || (proto == 47 && be16(payload, 2) == 0x86DD);
    Input {
        ingress: Some(id),
        inner: if v6 {
            ipv6_cut(&payload[hlen..])
        } else {
            ipv4_cut(&payload[hlen..])
        },
    }
}

/// The forwarded inner packet against the one that came in: same bytes but the TTL one
/// less, ECN as RFC 6040 decapsulation may set it, and the header checksum.
fn check_routed_inner(input: &[u8], out: &[u8], what: &str) {
    assert_eq!(
        input.len(),
        out.len(),
        "{what}: inner length changed\n in  {}\n out {}",
        hex(input),
        hex(out)
    );
    let ihl = usize::from(out[0] & 0x0F) * 4;
    assert!(rfc1071_ok(&out[..ihl]), "{what}: inner checksum");
    assert!(input[8] >= 2, "{what}: TTL {} forwarded", input[8]);
    assert_eq!(out[8], input[8] - 1, "{what}: TTL decremented by one");
    assert_eq!(
        out[1] >> 2,
        input[1] >> 2,
        "{what}: DSCP unchanged (pipe model)"
    );
    let (ecn_in, ecn_out) = (input[1] & 3, out[1] & 3);
    // RFC 6040 Figure 4: Not-ECT stays Not-ECT; ECT may become CE or ECT(1); CE stays CE.
    let allowed =
        ecn_in == ecn_out || (ecn_in == 2 && ecn_out == 1) || (ecn_in != 0 && ecn_out == 3);
    assert!(allowed, "{what}: ECN {ecn_in} became {ecn_out}");
    for (i, (a, b)) in input.iter().zip(out).enumerate() {
        if !matches!(i, 1 | 8 | 10 | 11) {
            assert_eq!(a, b, "{what}: inner byte {i} changed");
        }
    }
}

/// The forwarded inner IPv6 packet against the one that came in: the same bytes (the
/// extension headers too) but the hop limit one less and ECN as RFC 6040 may set it.
fn check_routed_inner6(input: &[u8], out: &[u8], what: &str) {
    assert_eq!(input.len(), out.len(), "{what}: inner IPv6 length changed");
    assert!(input[7] >= 2, "{what}: hop limit {} forwarded", input[7]);
    assert_eq!(out[7], input[7] - 1, "{what}: hop limit decremented by one");
    let (ecn_in, ecn_out) = ((input[1] >> 4) & 3, (out[1] >> 4) & 3);
    let allowed =
        ecn_in == ecn_out || (ecn_in == 2 && ecn_out == 1) || (ecn_in != 0 && ecn_out == 3);
    assert!(allowed, "{what}: ECN {ecn_in} became {ecn_out}");
    assert_eq!(out[0], input[0], "{what}: version and DSCP");
    assert_eq!(
        out[1] & 0xcf,
        input[1] & 0xcf,
        "{what}: DSCP and flow label"
    );
    assert_eq!(
        &out[2..7],
        &input[2..7],
        "{what}: flow label, length, next header"
    );
    assert_eq!(
        &out[8..],
        &input[8..],
        "{what}: addresses and all that follows"
    );
}

/// An ICMP Fragmentation Needed from the underlay taken as being about one of our tunnels'
/// packets (`report`: what it lowers the tunnel to; `None`: nothing to lower). It arrived
/// on that tunnel's port, to the tunnel's local address, with a good ICMP checksum; it
/// quotes, past an IPv4 header without options, exactly the outer header the tunnel sends
/// (addresses, protocol, GRE flags, version and protocol type, key) and 8 bytes past it at
/// least; its next-hop MTU is smaller than the quoted packet; and the MTU to take is that,
/// raised to 576 bytes inside, below the tunnel's MTU exactly when there is a report.
fn check_path_mtu(snap: &Snapshot, port: PortIndex, input: &[u8], report: Option<PathMtuReport>) {
    assert!(
        input.len() >= 34 && be16(input, 12) == 0x0800,
        "path MTU of non-IPv4"
    );
    let ip = ipv4_cut(&input[14..]).expect("path MTU message: a valid IPv4 header");
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    assert_eq!(ip[9], 1, "path MTU message is ICMP");
    assert!(
        be16(ip, 6) & 0x3FFF == 0,
        "path MTU message is not a fragment"
    );
    let icmp = &ip[ihl..];
    assert!(
        icmp.len() >= 8 + 28,
        "a path MTU message too short to check"
    );
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert!(rfc1071_ok(icmp), "path MTU message's ICMP checksum");
    let q = &icmp[8..];
    assert_eq!(q[0], 0x45, "quotes IPv4 without options");
    let (local, remote, proto) = (be32(q, 12), be32(q, 16), q[9]);
    assert_eq!(be32(ip, 16), local, "sent to the quoted source");
    let after = &q[20..];
    let (flags, key) = match proto {
        47 => {
            let flags = be16(after, 0);
            let at = if flags & 0x8000 != 0 { 8 } else { 4 };
            let key = (flags & 0x2000 != 0).then(|| {
                assert!(after.len() >= at + 4, "GRE key beyond the quote");
                be32(after, at)
            });
            (flags, key)
        }
        4 => {
            assert_eq!(after[0] >> 4, 4, "IPIP of IPv4");
            (0, None)
        }
        41 => {
            assert_eq!(after[0] >> 4, 6, "IPv6 in IPv4 of IPv6");
            (0, None)
        }
        p => panic!("path MTU message about protocol {p}"),
    };
    let (id, t) = snap
        .tunnels()
        .iter()
        .find(|(_, t)| {
            let c = &t.config;
            u32::from(c.local) == local
                && u32::from(c.remote) == remote
                && c.mode
                    == if proto == 47 {
                        TunnelMode::Gre
                    } else {
                        TunnelMode::Ipip
                    }
                && c.key == key
        })
        .expect("quotes a configured tunnel's header");
    let c = &t.config;
    assert_eq!(c.egress_port, port, "arrived on the tunnel's port");
    if proto == 47 {
        let want = 0x8000 * u16::from(c.checksum)
            + 0x2000 * u16::from(c.key.is_some())
            + 0x1000 * u16::from(c.sequence);
        assert_eq!(
            flags, want,
            "GRE flags and version as the tunnel sends them"
        );
        assert!(
            matches!(be16(after, 2), 0x0800 | 0x86DD),
            "GRE carrying IPv4 or IPv6"
        );
    }
    let reported = be16(icmp, 6);
    assert!(
        reported < be16(q, 2),
        "next-hop MTU below the quoted length"
    );
    let headers = 20
        + if proto == 47 {
            4 * (1 + u16::from(c.checksum) + u16::from(c.key.is_some()) + u16::from(c.sequence))
        } else {
            0
        };
    let mtu = reported.max(576 + headers);
    match report {
        Some(r) => {
            assert_eq!(
                r,
                PathMtuReport {
                    tunnel: id,
                    remote: Ipv4Addr::from(remote),
                    from: Ipv4Addr::from(be32(ip, 12)),
                    reported,
                    mtu,
                },
                "the report"
            );
            assert!(mtu < t.mtu, "a report that lowers nothing");
        }
        None => assert!(mtu >= t.mtu, "a lower path MTU left unreported"),
    }
}

/// Check one verdict. `input` is the frame as received, `out` the buffer's bytes after
/// processing, `before`/`after` the counters around a call that processed this packet
/// alone (`None` inside a burst: [`check_burst_counters`] covers those).
pub fn check_verdict(
    snap: &Snapshot,
    port: PortIndex,
    input: &[u8],
    action: Action,
    out: &[u8],
    counters: Option<(&Counters, &Counters)>,
) {
    match action {
        Action::Transmit(p) => check_transmit(snap, port, input, p, out),
        Action::Punt(PuntReason::Arp) => {
            assert_eq!(out, input, "ARP punt hands over the frame as it came");
            assert!(
                out.len() >= 14 && be16(out, 12) == 0x0806,
                "ARP punt of non-ARP"
            );
            let entry = snap.port(port).expect("punted from a lab port");
            let dst = &out[0..6];
            assert!(
                dst == entry.mac.0 || dst == [0xff; 6],
                "ARP to another MAC punted"
            );
            check_arp(snap, port, out);
        }
        Action::Punt(PuntReason::Nd) => {
            assert_eq!(out, input, "ND punt hands over the frame as it came");
            assert!(
                out.len() >= 14 && be16(out, 12) == 0x86dd,
                "ND punt of non-IPv6"
            );
            check_nd(snap, port, out);
        }
        Action::Punt(PuntReason::Local) => {
            let ip = ipv4_cut(out).expect("local punt starts at a valid IPv4 header");
            assert_eq!(ip.len(), out.len(), "local punt cut to its total length");
            assert!(
                snap.is_local(be32(out, 16)),
                "local punt is addressed to us"
            );
        }
        Action::Punt(PuntReason::LocalInner) if out.first().is_some_and(|b| b >> 4 == 6) => {
            let ip = ipv6_cut(out).expect("inner punt starts at a valid IPv6 header");
            assert_eq!(ip.len(), out.len(), "inner punt cut to its payload length");
            let Some(Some(id)) = read_input(snap, input).ingress else {
                panic!("inner IPv6 punt from no configured tunnel");
            };
            let link6 = snap.tunnels().hot(id).map_or(0, |t| t.link6);
            assert!(
                link6 != 0 && be128(out, 24) == link6,
                "inner IPv6 punt is addressed to the tunnel's link6"
            );
        }
        Action::Punt(PuntReason::LocalInner) => {
            let ip = ipv4_cut(out).expect("inner punt starts at a valid IPv4 header");
            assert_eq!(ip.len(), out.len(), "inner punt cut to its total length");
            assert!(
                snap.is_local(be32(out, 16)),
                "inner punt is addressed to us"
            );
            let i = read_input(snap, input);
            assert!(
                matches!(i.ingress, Some(Some(_))),
                "inner punt from a configured tunnel"
            );
        }
        Action::Deliver { to, punt } => {
            // To a host interface: the (inner) packet for us, cut to its length, and the
            // interface exists for the way it came.
            let ip = ipv4_cut(out).expect("a delivery starts at a valid IPv4 header");
            assert_eq!(ip.len(), out.len(), "a delivery cut to its total length");
            match (to, punt) {
                (Host::Tunnel(id), PuntReason::LocalInner) => {
                    let link = snap.tunnels().hot(id).map_or(0, |t| t.link);
                    assert_ne!(link, 0, "delivered to a tunnel without a link");
                    let dst = be32(out, 16);
                    assert!(
                        snap.is_local(dst) || dst == link,
                        "delivered inner packet is for us"
                    );
                }
                (Host::Port(p), PuntReason::Local) => {
                    assert_eq!(p, port, "delivered to the arrival port's interface");
                    assert!(
                        snap.port(p).is_some_and(|e| e.host_interface),
                        "delivered to a port without a host interface"
                    );
                    assert!(snap.is_local(be32(out, 16)), "delivered packet is for us");
                }
                (Host::Prober, PuntReason::Probe) => {
                    // A reply to one of our in-tunnel probes: ICMP to us (the prober checks
                    // the rest: magic, slot, nonce).
                    assert_eq!(out[9], 1, "a probe reply is ICMP");
                    assert!(snap.is_local(be32(out, 16)), "a probe reply is for us");
                }
                other => panic!("delivery {other:?}"),
            }
        }
        Action::Drop(r) => {
            if let Some((before, after)) = counters {
                for x in DropReason::ALL {
                    let want = before.drop_count(*x) + u64::from(*x == r);
                    assert_eq!(after.drop_count(*x), want, "drop {r:?}: counter {x:?}");
                }
            }
            if r == DropReason::Runt {
                assert!(input.len() < 14, "runt of {} bytes", input.len());
            }
        }
        Action::Answer { port: p, punt } => {
            assert!(
                matches!(punt, PuntReason::Local | PuntReason::LocalInner),
                "an echo reply for {punt:?}"
            );
            check_echo_reply(snap, port, input, p, out);
        }
        Action::PathMtu(report) => check_path_mtu(snap, port, input, Some(report)),
        Action::Punt(PuntReason::PathMtu) => check_path_mtu(snap, port, input, None),
        Action::Punt(PuntReason::Probe) => {
            panic!("a probe reply punted: the prober's go to it (Deliver)")
        }
        Action::Reply { port: p, reason: r } => {
            if let Some((before, after)) = counters {
                for x in DropReason::ALL {
                    let want = before.drop_count(*x) + u64::from(*x == r);
                    assert_eq!(after.drop_count(*x), want, "reply {r:?}: counter {x:?}");
                }
                let sent: u64 =
                    after.icmp_sent.iter().sum::<u64>() - before.icmp_sent.iter().sum::<u64>();
                assert_eq!(sent, 1, "one ICMP error counted");
            }
            assert!(
                matches!(
                    r,
                    DropReason::TtlExceeded | DropReason::NoRoute | DropReason::MtuExceeded
                ),
                "an ICMP error for {r:?}"
            );
            let v6 = read_input(snap, input)
                .inner
                .is_some_and(|i| i[0] >> 4 == 6);
            if v6 {
                check_icmpv6_error(snap, input, p, out);
            } else {
                check_icmp_error(snap, port, input, p, out);
            }
        }
    }
}

/// An outer IPv4 header `ip` of a packet into the tunnel `t`: from its local address, to
/// its remote.
fn check_tunnel_ends(ip: &[u8], t: &dataplane::tables::tunnel::TunnelEntry) {
    assert_eq!(
        be32(ip, 12),
        u32::from(t.config.local),
        "from the tunnel's local"
    );
    assert_eq!(
        be32(ip, 16),
        u32::from(t.config.remote),
        "to the tunnel's remote"
    );
}

/// An ICMPv6 error we sent about `input`, an IPv6 packet that came through a tunnel: back
/// into that tunnel (its endpoints; GRE 0x86DD or protocol 41), from its `link6` to the
/// offending packet's source, hop limit 64, at most 1,280 bytes, a type and code RFC 4443
/// gives for our drops, the pseudo-header checksum good, quoting the offending addresses.
fn check_icmpv6_error(snap: &Snapshot, input: &[u8], p: PortIndex, out: &[u8]) {
    let offending = read_input(snap, input)
        .inner
        .expect("an ICMPv6 error about a valid IPv6 packet");
    let Some(Some(id)) = read_input(snap, input).ingress else {
        panic!("an ICMPv6 error about a packet of no tunnel");
    };
    let t = snap.tunnels().get(id).expect("the ingress tunnel");
    let link6 = snap.tunnels().hot(id).map_or(0, |h| h.link6);
    assert_ne!(link6, 0, "an ICMPv6 error from a tunnel without link6");
    assert_eq!(p, t.config.egress_port, "into the ingress tunnel's port");
    assert_eq!(be16(out, 12), 0x0800, "over IPv4");
    let ip = ipv4_cut(&out[14..]).expect("a valid outer IPv4 header");
    assert_eq!(ip.len(), out.len() - 14, "total length = frame - 14");
    assert!(rfc1071_ok(&ip[..20]), "outer IPv4 checksum");
    check_tunnel_ends(ip, t);
    let payload = &ip[20..];
    let d = match ip[9] {
        47 => {
            let f = be16(payload, 0);
            assert_eq!(be16(payload, 2), 0x86DD, "GRE protocol type IPv6");
            let hlen = 4 + 4
                * (usize::from(f & 0x8000 != 0)
                    + usize::from(f & 0x2000 != 0)
                    + usize::from(f & 0x1000 != 0));
            &payload[hlen..]
        }
        41 => payload,
        other => panic!("an ICMPv6 error in protocol {other}"),
    };
    let d = ipv6_cut(d).expect("the error's IPv6 header");
    assert!(d.len() <= 1280, "at most 1,280 bytes");
    assert_eq!(d[6], 58, "ICMPv6");
    assert_eq!(d[7], 64, "hop limit 64");
    assert_eq!(be128(d, 8), link6, "from the tunnel's link6");
    assert_eq!(
        &d[24..40],
        &offending[8..24],
        "to the offending packet's source"
    );
    let icmp = &d[40..];
    assert!(
        matches!((icmp[0], icmp[1]), (3, 0) | (1, 0) | (1, 1) | (2, 0)),
        "type and code"
    );
    assert!(icmpv6_ok(icmp, &d[8..24], &d[24..40]), "ICMPv6 checksum");
    let quote = &icmp[8..];
    assert!(quote.len() >= 40, "the quote holds the offending header");
    assert_eq!(&quote[8..40], &offending[8..40], "the quote's addresses");
}

/// An echo reply we sent to `input` (an echo request to one of our addresses, received on
/// `port_in`) out of `p`: the way back as for an ICMP error, from the address asked to the
/// asker, type 0 with a valid checksum, the identifier, sequence number and data echoed.
fn check_echo_reply(snap: &Snapshot, port_in: PortIndex, input: &[u8], p: PortIndex, out: &[u8]) {
    let d = reply_datagram(snap, port_in, input, p, out);
    let i = read_input(snap, input);
    let request = i.inner.expect("an echo request");
    let ihl = usize::from(request[0] & 0x0F) * 4;
    assert_eq!(be32(d, 12), be32(request, 16), "from the address asked");
    assert_eq!(be32(d, 16), be32(request, 12), "to the asker");
    assert!(snap.is_local(be32(d, 12)), "from one of our addresses");
    assert_eq!(request[ihl], 8, "answered an echo request");
    assert!(
        rfc1071_ok(&request[ihl..]),
        "answered a request with a good checksum"
    );
    let icmp = &d[20..];
    assert_eq!((icmp[0], icmp[1]), (0, request[ihl + 1]), "an echo reply");
    assert!(rfc1071_ok(icmp), "the reply's ICMP checksum");
    assert_eq!(
        &icmp[4..],
        &request[ihl + 4..],
        "identifier, sequence number and data"
    );
}

/// The IPv4 datagram of an answer (an ICMP error or an echo reply) sent about `input` out
/// of `p`, after checking the way back: into the ingress tunnel, or natively out of the
/// ingress port to the frame's sender.
fn reply_datagram<'o>(
    snap: &Snapshot,
    port_in: PortIndex,
    input: &[u8],
    p: PortIndex,
    out: &'o [u8],
) -> &'o [u8] {
    let entry = snap.port(p).expect("reply on a lab port");
    assert_eq!(
        &out[6..12],
        &entry.mac.0,
        "Ethernet source is the port's MAC"
    );
    assert_eq!(be16(out, 12), 0x0800, "an answer over IPv4");
    let ip = ipv4_cut(&out[14..]).expect("a valid IPv4 header");
    assert_eq!(ip.len(), out.len() - 14, "total length = frame - 14");
    assert!(rfc1071_ok(&ip[..20]), "IPv4 checksum: {}", hex(out));
    let i = read_input(snap, input);
    let datagram = match i.ingress {
        Some(Some(id)) => {
            let t = snap.tunnels().get(id).expect("the ingress tunnel");
            assert_eq!(p, t.config.egress_port, "into the ingress tunnel's port");
            check_tunnel_ends(ip, t);
            let payload = &ip[20..];
            if ip[9] == 47 {
                let f = be16(payload, 0);
                let hlen = 4 + 4
                    * (usize::from(f & 0x8000 != 0)
                        + usize::from(f & 0x2000 != 0)
                        + usize::from(f & 0x1000 != 0));
                &payload[hlen..]
            } else {
                assert_eq!(ip[9], 4, "IP in IP or GRE");
                payload
            }
        }
        Some(None) => panic!("an answer to a packet of no tunnel"),
        None => {
            assert_eq!(p, port_in, "natively back out of the ingress port");
            assert_eq!(&out[0..6], &input[6..12], "to the frame's sender");
            ip
        }
    };
    let d = ipv4_cut(datagram).expect("the answer's IPv4 header");
    assert!(rfc1071_ok(&d[..20]), "the answer's IPv4 checksum");
    assert_eq!(d[9], 1, "ICMP");
    d
}

/// An ICMP error we sent about `input` (received on `port_in`) out of `p`: a sane frame, in
/// the ingress tunnel or natively back out of the ingress port; from one of our addresses
/// to the offending packet's source; an error type with a valid checksum; at most 576
/// bytes; quoting a packet from that source to the offending packet's destination.
fn check_icmp_error(snap: &Snapshot, port_in: PortIndex, input: &[u8], p: PortIndex, out: &[u8]) {
    let d = reply_datagram(snap, port_in, input, p, out);
    let offending = read_input(snap, input)
        .inner
        .expect("an ICMP error about a valid IPv4 packet");
    assert!(d.len() <= 576, "at most 576 bytes");
    assert!(rfc1071_ok(&d[..20]), "the error's IPv4 checksum");
    assert_eq!(d[9], 1, "ICMP");
    assert!(snap.is_local(be32(d, 12)), "from one of our addresses");
    assert_eq!(
        be32(d, 16),
        be32(offending, 12),
        "to the offending packet's source"
    );
    let icmp = &d[20..];
    assert!(
        matches!((icmp[0], icmp[1]), (11, 0) | (3, 0) | (3, 4) | (3, 13)),
        "type and code"
    );
    assert!(rfc1071_ok(icmp), "ICMP checksum");
    let quote = &icmp[8..];
    assert!(quote.len() >= 20, "the quote holds the offending header");
    assert_eq!(&quote[12..20], &offending[12..20], "the quote's addresses");
    assert!(
        offending[6] & 0x1f == 0 && offending[7] == 0,
        "never about a non-first fragment"
    );
}

fn check_transmit(snap: &Snapshot, port_in: PortIndex, input: &[u8], p: PortIndex, out: &[u8]) {
    let entry = snap
        .port(p)
        .unwrap_or_else(|| panic!("transmit on port {p}, which the snapshot does not have"));
    assert!(out.len() >= 34, "output of {} bytes", out.len());
    assert_eq!(
        &out[6..12],
        &entry.mac.0,
        "Ethernet source is the egress port's MAC"
    );
    assert_eq!(be16(out, 12), 0x0800, "output is IPv4");
    let ip = &out[14..];
    let outer = ipv4_cut(ip).expect("output IPv4 header is well-formed");
    assert_eq!(outer.len(), ip.len(), "output total length = frame - 14");
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    assert!(rfc1071_ok(&ip[..ihl]), "output IPv4 checksum: {}", hex(out));
    assert!(ip[8] >= 1, "output TTL 0");
    let src = be32(ip, 12);
    let dst_mac = EthernetAddress([out[0], out[1], out[2], out[3], out[4], out[5]]);
    let i = read_input(snap, input);
    let expected = i
        .inner
        .unwrap_or_else(|| panic!("forwarded an input with no valid packet: {}", hex(input)));
    if let Some(ingress) = i.ingress {
        let ingress = ingress.expect("terminated from a configured tunnel");
        let t = snap
            .tunnels()
            .get(ingress)
            .expect("the ingress tunnel exists");
        let (src, dst) = (be32(expected, 12), be32(expected, 16));
        if src == u32::from(t.config.local) && dst == u32::from(t.config.remote) {
            // A client router's keepalive: back to the router natively, out of the
            // tunnel's port to its next hop (SPEC.md tunnel termination step 5).
            assert_eq!(
                p, t.config.egress_port,
                "keepalive: out of the tunnel's port"
            );
            assert_eq!(Some(dst_mac), t.next_hop_mac, "keepalive: to the next hop");
            check_routed_inner(expected, ip, "keepalive");
            return;
        }
        if expected[0] >> 4 == 6 {
            assert_eq!(
                snap.source_owner6(be128(expected, 8)),
                Some(ingress),
                "inner IPv6 source belongs to the tunnel it came through (BCP 38)"
            );
            let link6 = snap.tunnels().hot(ingress).map_or(0, |h| h.link6);
            assert_ne!(
                be128(expected, 24),
                link6,
                "forwarded an IPv6 packet for us"
            );
            return check_transmit6(snap, ingress, expected, p, out);
        }
        assert_eq!(
            snap.source_owner(src),
            Some(ingress),
            "inner source belongs to the tunnel it came through (BCP 38)"
        );
        assert!(
            !snap.is_local(be32(expected, 16)),
            "forwarded an inner packet for us"
        );
    }

    let inner: &[u8];
    if snap.is_local(src) {
        // Encapsulated by us.
        assert_eq!(ihl, 20, "we write no options");
        let proto = ip[9];
        let flags_frag = be16(ip, 6);
        assert_eq!(
            flags_frag & 0xBFFF,
            0,
            "outer not a fragment, reserved bit clear"
        );
        let payload = &ip[20..];
        let (key, hlen, c, s) = match proto {
            47 => {
                assert!(payload.len() >= 4, "GRE header");
                let f = be16(payload, 0);
                assert_eq!(f & 0x4FFF, 0, "GRE: R, reserved bits and version zero");
                assert_eq!(be16(payload, 2), 0x0800, "GRE protocol IPv4 over IPv4");
                let (c, k, s) = (f & 0x8000 != 0, f & 0x2000 != 0, f & 0x1000 != 0);
                let hlen = 4 + 4 * (usize::from(c) + usize::from(k) + usize::from(s));
                assert!(payload.len() >= hlen);
                if c {
                    assert!(rfc1071_ok(payload), "GRE checksum");
                    assert_eq!(be16(payload, 6), 0, "GRE Reserved1");
                }
                (k.then(|| be32(payload, 4 + 4 * usize::from(c))), hlen, c, s)
            }
            4 => (None, 0, false, false),
            other => panic!("encapsulated with protocol {other}"),
        };
        let id = snap
            .tunnels()
            .lookup(&TunnelKey {
                local: src,
                remote: be32(ip, 16),
                protocol: proto,
                gre_key: key,
            })
            .unwrap_or_else(|| panic!("output names no configured tunnel: {}", hex(out)));
        let t = snap.tunnels().get(id).expect("looked-up tunnel exists");
        assert_eq!(
            t.config.egress_port, p,
            "{}: left by its egress port",
            t.config.name
        );
        assert_eq!(
            Some(dst_mac),
            t.next_hop_mac,
            "{}: to the next hop's MAC",
            t.config.name
        );
        assert!(
            ip.len() <= usize::from(t.mtu),
            "{}: within the MTU",
            t.config.name
        );
        if t.config.mode == TunnelMode::Gre {
            assert_eq!(c, t.config.checksum, "{}: GRE C", t.config.name);
            assert_eq!(s, t.config.sequence, "{}: GRE S", t.config.name);
        }
        inner = &payload[hlen..];
        let hop = snap
            .routes()
            .lookup(Ipv4Addr::from(be32(inner, 16)))
            .expect("a route for the inner destination");
        assert_eq!(
            snap.target(hop),
            Target::Tunnel(id),
            "the LPM sends the inner destination into this tunnel"
        );
        if let Some(Some(ingress)) = i.ingress {
            assert_ne!(ingress, id, "hairpin forwarded");
        }
    } else {
        inner = ip;
        let roles = snap.port(port_in).expect("received on a lab port").roles;
        if i.ingress.is_none() && roles.client {
            // Native on a client port: the tunnels' source check (SPEC.md step 6).
            match snap.source_owner(be32(expected, 12)) {
                Some(owner) => assert_eq!(
                    snap.tunnels().get(owner).map(|t| t.config.egress_port),
                    Some(port_in),
                    "native from a client of another port"
                ),
                None => assert!(roles.internet, "native from nobody's address"),
            }
        }
        let hop = snap
            .routes()
            .lookup(Ipv4Addr::from(be32(ip, 16)))
            .expect("a route for the destination");
        match snap.target(hop) {
            Target::Native {
                port,
                dst_mac: want,
                mtu,
                ..
            } => {
                assert_eq!(port, p, "native: out of the route's port");
                assert_eq!(want, Some(dst_mac), "native: to the next hop's MAC");
                assert!(ip.len() <= usize::from(mtu), "native: within the MTU");
            }
            // A connected subnet: the destination is the next hop.
            Target::Connected { port, mtu, .. } => {
                assert_eq!(port, p, "connected: out of the route's port");
                assert_eq!(
                    snap.neighbor(port, Ipv4Addr::from(be32(ip, 16))),
                    Some(dst_mac),
                    "connected: to the destination's own MAC"
                );
                assert!(ip.len() <= usize::from(mtu), "connected: within the MTU");
            }
            t => panic!("sent natively, but the route says {t:?}"),
        }
    }
    check_routed_inner(expected, inner, "forwarded");
}

/// A forwarded IPv6 packet (`expected`, terminated from tunnel `ingress`): encapsulated by
/// us into the tunnel the IPv6 routes name, never the ingress one (GRE 0x86DD, or 41 on an
/// IPIP tunnel), within its MTU, to its next hop, the inner packet as it came but for the
/// hop limit and ECN.
fn check_transmit6(snap: &Snapshot, ingress: TunnelId, expected: &[u8], p: PortIndex, out: &[u8]) {
    let ip = &out[14..];
    assert!(
        snap.is_local(be32(ip, 12)),
        "IPv6 leaves encapsulated by us"
    );
    assert_eq!(usize::from(ip[0] & 0x0F) * 4, 20, "we write no options");
    assert_ne!(be16(ip, 6) & 0x4000, 0, "DF set over an IPv6 packet");
    let payload = &ip[20..];
    let (key, hlen) = match ip[9] {
        47 => {
            let f = be16(payload, 0);
            assert_eq!(f & 0x4FFF, 0, "GRE: R, reserved bits and version zero");
            assert_eq!(be16(payload, 2), 0x86DD, "GRE protocol IPv6");
            let (c, k, s) = (f & 0x8000 != 0, f & 0x2000 != 0, f & 0x1000 != 0);
            if c {
                assert!(rfc1071_ok(payload), "GRE checksum");
            }
            let hlen = 4 + 4 * (usize::from(c) + usize::from(k) + usize::from(s));
            (k.then(|| be32(payload, 4 + 4 * usize::from(c))), hlen)
        }
        41 => (None, 0),
        other => panic!("IPv6 encapsulated with protocol {other}"),
    };
    let id = snap
        .tunnels()
        .lookup(&TunnelKey {
            local: be32(ip, 12),
            remote: be32(ip, 16),
            protocol: if ip[9] == 41 { 4 } else { 47 },
            gre_key: key,
        })
        .unwrap_or_else(|| panic!("output names no configured tunnel: {}", hex(out)));
    let t = snap.tunnels().get(id).expect("looked-up tunnel exists");
    assert_eq!(t.config.egress_port, p, "left by its egress port");
    assert!(ip.len() <= usize::from(t.mtu), "within the MTU");
    assert_ne!(id, ingress, "hairpin forwarded");
    let inner = &payload[hlen..];
    let hop = snap
        .routes6()
        .lookup(std::net::Ipv6Addr::from(be128(inner, 24)))
        .expect("an IPv6 route for the inner destination");
    assert_eq!(
        snap.target6(hop),
        Target::Tunnel(id),
        "the IPv6 LPM names this tunnel"
    );
    check_routed_inner6(expected, inner, "forwarded IPv6");
}

/// Run the ARP handler on a punted frame and check what it answers.
fn check_arp(snap: &Snapshot, port: PortIndex, frame: &[u8]) {
    let entry = snap.port(port).expect("lab port");
    let mut buf = TestBuf::new(frame);
    match arp::handle(&mut buf, entry) {
        ArpOutcome::Replied { learned: (ip, mac) } => {
            let r = buf.data();
            assert_eq!(
                r.len(),
                60,
                "ARP reply is Ethernet + 28 bytes, padded to 60"
            );
            assert!(r[42..].iter().all(|&b| b == 0), "ARP reply padding is zero");
            // The request, read independently.
            let (sha, spa, tpa) = (&frame[22..28], be32(frame, 28), be32(frame, 38));
            assert_eq!(be16(frame, 20), 1, "replied to a request");
            assert!(
                entry.addrs.contains(&Ipv4Addr::from(tpa)),
                "replied for an address that is not ours"
            );
            assert_eq!(sha[0] & 1, 0, "replied to a multicast sender");
            assert_eq!((ip, mac.0.as_slice()), (Ipv4Addr::from(spa), sha));
            assert_eq!(&r[0..6], sha, "reply to the asker");
            assert_eq!(&r[6..12], &entry.mac.0);
            assert_eq!(be16(r, 12), 0x0806);
            assert_eq!(&r[14..22], &[0, 1, 8, 0, 6, 4, 0, 2], "ARP reply header");
            assert_eq!(&r[22..28], &entry.mac.0);
            assert_eq!(be32(r, 28), tpa);
            assert_eq!(&r[32..38], sha);
            assert_eq!(be32(r, 38), spa);
        }
        ArpOutcome::Learned { learned: (ip, _) } => {
            assert!(frame.len() >= 42);
            assert_eq!(be16(frame, 20), 2, "learned from a reply");
            assert!(!ip.is_unspecified());
            assert!(entry.addrs.contains(&Ipv4Addr::from(be32(frame, 38))));
        }
        ArpOutcome::Ignored => assert_eq!(buf.data(), frame, "ignored ARP left as it was"),
    }
}

/// What the worker's ND handler makes of a punted frame: an advertisement only for a
/// solicitation with hop limit 255 for one of the port's addresses, from that address, hop
/// limit 255, the port's MAC in its target link-layer address option.
fn check_nd(snap: &Snapshot, port: PortIndex, frame: &[u8]) {
    let entry = snap.port(port).expect("lab port");
    let mut buf = TestBuf::new(frame);
    match nd::handle(&mut buf, entry) {
        NdOutcome::Replied { .. } => {
            let r = buf.data();
            assert_eq!(
                r.len(),
                14 + 40 + 32,
                "NA: Ethernet, IPv6, 24 bytes and an option"
            );
            assert_eq!(
                frame[14 + 7],
                255,
                "answered a solicitation with hop limit 255"
            );
            assert_eq!(frame[14 + 40], 135, "answered a solicitation");
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[62..78]).unwrap());
            assert!(entry.has_addr6(target), "answered for an address not ours");
            assert_eq!(&r[6..12], &entry.mac.0);
            assert_eq!(be16(r, 12), 0x86dd);
            assert_eq!(r[14 + 7], 255, "NA hop limit");
            assert_eq!(&r[22..38], &target.octets(), "NA from the target");
            assert_eq!(r[54], 136);
            assert_eq!(&r[62..78], &target.octets());
            assert_eq!(&r[78..80], &[2, 1], "target link-layer address option");
            assert_eq!(&r[80..86], &entry.mac.0);
        }
        NdOutcome::Heard { .. } | NdOutcome::Ignored | NdOutcome::Invalid => {
            assert_eq!(buf.data(), frame, "ND not answered is left as it was")
        }
    }
}

/// received = transmitted + dropped + punted, over the per-port counters.
pub fn check_conserved(c: &Counters) {
    let rx: u64 = c.ports.iter().map(|p| p.rx.packets).sum();
    let tx: u64 = c.ports.iter().map(|p| p.tx.packets).sum();
    let punts: u64 = c.punts.iter().sum();
    assert_eq!(
        rx,
        tx + c.total_drops() + punts,
        "received = transmitted + dropped + punted ({:?})",
        c.nonzero_drops()
    );
}

/// The counters of one call against its actions: each drop reason, punt reason and
/// transmit port went up by exactly the number of actions that name it, and receive by
/// the number of packets on `port`.
pub fn check_burst_counters(
    port: PortIndex,
    actions: &[Action],
    before: &Counters,
    after: &Counters,
) {
    for r in DropReason::ALL {
        let n = actions
            .iter()
            .filter(|a| match **a {
                Action::Drop(x) | Action::Reply { reason: x, .. } => x == *r,
                _ => false,
            })
            .count() as u64;
        assert_eq!(
            after.drop_count(*r),
            before.drop_count(*r) + n,
            "drops {r:?}"
        );
    }
    let replies = actions
        .iter()
        .filter(|a| matches!(a, Action::Reply { .. }))
        .count() as u64;
    let icmp = |c: &Counters| c.icmp_sent.iter().sum::<u64>();
    assert_eq!(icmp(after), icmp(before) + replies, "ICMP errors sent");
    for r in PuntReason::ALL {
        let n = actions
            .iter()
            .filter(|a| match **a {
                Action::Punt(x)
                | Action::Answer { punt: x, .. }
                | Action::Deliver { punt: x, .. } => x == r,
                Action::PathMtu(_) => r == PuntReason::PathMtu,
                _ => false,
            })
            .count() as u64;
        assert_eq!(after.punt_count(r), before.punt_count(r) + n, "punts {r:?}");
    }
    for (i, pc) in after.ports.iter().enumerate() {
        let b = before.ports.get(i).copied().unwrap_or_default();
        let n = actions
            .iter()
            .filter(|a| **a == Action::Transmit(i as PortIndex))
            .count() as u64;
        // (ICMP errors sent out of a port are ours, not forwarded: not the port's TX.)
        assert_eq!(pc.tx.packets, b.tx.packets + n, "port {i} tx");
        let rx = if i == usize::from(port) {
            actions.len() as u64
        } else {
            0
        };
        assert_eq!(pc.rx.packets, b.rx.packets + rx, "port {i} rx");
    }
    check_conserved(after);
}
