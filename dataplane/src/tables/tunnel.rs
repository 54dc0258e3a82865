//! The tunnel table: exact match on (outer destination, outer source, protocol, GRE key).
//!
//! Tunnels are numbered densely ([`TunnelId`]) in the snapshot; per-tunnel state that must
//! outlive a snapshot swap (GRE sequence numbers) lives in an `Arc<TunnelState>` that the
//! snapshot builder carries from one snapshot to the next by tunnel name.

use super::PortIndex;
use crate::lpm::{Ipv4Prefix, Ipv6Prefix};
use crate::wire::{EthernetAddress, IpProtocol};
use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// A tunnel's index in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelId(pub u32);

impl TunnelId {
    /// The index as usize.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How the tunnel encapsulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelMode {
    /// GRE (RFC 2784/2890), IP protocol 47.
    Gre,
    /// IP in IP (RFC 2003), IP protocol 4.
    Ipip,
}

impl TunnelMode {
    /// The outer IP protocol number.
    pub fn protocol(self) -> IpProtocol {
        match self {
            TunnelMode::Gre => IpProtocol::GRE,
            TunnelMode::Ipip => IpProtocol::IPIP,
        }
    }
}

/// The outer TTL on encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlPolicy {
    /// A fixed TTL (default 64).
    Fixed(u8),
    /// The inner packet's TTL (after its decrement).
    Inherit,
}

/// The outer DSCP on encapsulation (RFC 2983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DscpPolicy {
    /// Copy the inner DSCP (default).
    Copy,
    /// A fixed value (0-63).
    Fixed(u8),
}

/// The outer DF bit on encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DfPolicy {
    /// Always set (default; RFC 2003 section 5.1).
    Set,
    /// Copy the inner DF bit.
    Copy,
}

/// A tunnel's IPv6 endpoints (GRE over IPv6, RFC 7676; IP in IPv6, RFC 2473) and its
/// underlay next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer6 {
    /// Our endpoint: one of the egress port's IPv6 addresses.
    pub local: Ipv6Addr,
    /// The client router's endpoint.
    pub remote: Ipv6Addr,
    /// The underlay next hop on the egress port (often `remote`), resolved by the port's
    /// IPv6 neighbours.
    pub next_hop: Ipv6Addr,
}

/// One client session's tunnel, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    pub mode: TunnelMode,
    /// Our endpoint (one of our addresses).
    pub local: Ipv4Addr,
    /// The client router's endpoint.
    pub remote: Ipv4Addr,
    /// GRE key; `None` for no key (always `None` for IPIP).
    pub key: Option<u32>,
    /// GRE sequence numbers: required on receipt, written on transmit.
    pub sequence: bool,
    /// GRE checksum written on transmit (verified on receipt whenever present).
    pub checksum: bool,
    pub ttl: TtlPolicy,
    pub dscp: DscpPolicy,
    pub df: DfPolicy,
    /// The port toward `remote`.
    pub egress_port: PortIndex,
    /// The underlay next hop on `egress_port` (often `remote` itself).
    pub next_hop: Ipv4Addr,
    /// IPv6 endpoints: where set, the outer header is IPv6 and `local`, `remote` and
    /// `next_hop` above are 0.0.0.0 and unused ([`Tunnel::new6`]).
    pub outer6: Option<Outer6>,
    /// The largest outer packet (IP total length) the tunnel path carries.
    pub mtu: u16,
    /// The client's prefixes: routed into this tunnel, and allowed as inner sources.
    pub prefixes: Vec<Ipv4Prefix>,
    /// Further inner source prefixes accepted from this client (not routed to it).
    pub extra_sources: Vec<Ipv4Prefix>,
    /// Our address inside the tunnel and the prefix that holds the client router's side:
    /// traffic to that address goes to the host interface `bb-<name>`.
    pub link: Option<ipnet::Ipv4Net>,
    /// The client's IPv6 prefixes: routed into this tunnel, and allowed as inner sources.
    pub prefixes6: Vec<Ipv6Prefix>,
    /// Further inner IPv6 source prefixes accepted from this client.
    pub extra_sources6: Vec<Ipv6Prefix>,
    /// Our IPv6 address inside the tunnel and the prefix that holds the client router's
    /// side: the source of the ICMPv6 errors sent into the tunnel (none are sent without
    /// it); IPv6 packets to that address are for us.
    pub link6: Option<ipnet::Ipv6Net>,
    /// Probed by the appliance itself (`pipeline::probe`): its health is theirs.
    pub probe: bool,
    /// While the tunnel is down, its prefixes are not routed into it: what covers them
    /// otherwise (a default route through the Internet port) takes them.
    pub fallback: bool,
    /// Down (by its probes): with `fallback`, its prefixes are not routed.
    pub down: bool,
    /// Its client's prefixes are routed from the client's BGP session (zebra's routes, over
    /// FPM): with `fallback`, its own `prefixes` are not routed, so that a session BFD takes
    /// down takes its routes with it.
    pub bgp: bool,
    /// The tunnel (by name) whose prefixes this one carries while that one is down, and
    /// whose source prefixes it accepts (a client-site router's backup tunnel to a second
    /// edge). A backup has no `prefixes` or `extra_sources` of its own.
    pub backup_of: Option<String>,
    /// Its probes take the form of a GRE keepalive (RFC 2784 leaves the form to the
    /// routers; Cisco's): an inner packet from `remote` to `local`, which the far end
    /// reflects natively (a backbone edge does: SPEC.md tunnel termination step 5). A
    /// client-site router probes so; an edge probes with an inner packet from `local` to
    /// `local`, which any router sends back by routing it.
    pub keepalive_probe: bool,
}

impl Tunnel {
    /// A GRE or IPIP tunnel with the defaults: TTL 64, DSCP copied, DF set, MTU 1500,
    /// no key, no sequence numbers, no checksum, next hop = remote.
    pub fn new(
        name: &str,
        mode: TunnelMode,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        egress_port: PortIndex,
    ) -> Self {
        Tunnel {
            name: name.to_owned(),
            mode,
            local,
            remote,
            key: None,
            sequence: false,
            checksum: false,
            ttl: TtlPolicy::Fixed(64),
            dscp: DscpPolicy::Copy,
            df: DfPolicy::Set,
            egress_port,
            next_hop: remote,
            outer6: None,
            mtu: 1500,
            prefixes: Vec::new(),
            extra_sources: Vec::new(),
            link: None,
            prefixes6: Vec::new(),
            extra_sources6: Vec::new(),
            link6: None,
            probe: false,
            fallback: false,
            down: false,
            bgp: false,
            backup_of: None,
            keepalive_probe: false,
        }
    }

    /// A tunnel between IPv6 endpoints, with [`Tunnel::new`]'s defaults (next hop =
    /// remote).
    pub fn new6(
        name: &str,
        mode: TunnelMode,
        local: Ipv6Addr,
        remote: Ipv6Addr,
        egress_port: PortIndex,
    ) -> Self {
        let mut t = Tunnel::new(
            name,
            mode,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            egress_port,
        );
        t.outer6 = Some(Outer6 {
            local,
            remote,
            next_hop: remote,
        });
        t
    }

    /// Its outer endpoints and underlay next hop, `(local, remote, next_hop)`, of the
    /// family its outer header is.
    pub fn endpoints(&self) -> (core::net::IpAddr, core::net::IpAddr, core::net::IpAddr) {
        match self.outer6 {
            Some(o) => (o.local.into(), o.remote.into(), o.next_hop.into()),
            None => (self.local.into(), self.remote.into(), self.next_hop.into()),
        }
    }

    /// The outer IP header's length: 20 (IPv4) or 40 (IPv6).
    pub fn outer_ip_len(&self) -> usize {
        if self.outer6.is_some() {
            40
        } else {
            20
        }
    }

    /// The receive-side key of a tunnel with IPv6 endpoints.
    pub fn key6(&self) -> Option<TunnelKey6> {
        self.outer6.map(|o| TunnelKey6 {
            local: u128::from(o.local),
            remote: u128::from(o.remote),
            protocol: self.mode.protocol().0,
            gre_key: self.key,
        })
    }

    /// Whether its `prefixes` are routed into it now: always, unless it falls back (then
    /// not while it is down, and never when BGP routes its client's prefixes).
    pub fn routes_its_prefixes(&self) -> bool {
        !(self.fallback && (self.down || self.bgp))
    }

    /// Whether its IPv6 `prefixes6` are routed into it now: unless it falls back and is
    /// down (IPv6 has no native fallback yet: the packets meet no route, and their senders
    /// hear so). A client with a session keeps its IPv6 prefixes routed: the IPv6 routes
    /// its session brings (through zebra and FPM) lead into the same tunnel, and there is
    /// no other way for IPv6 to take (no native IPv6, and iBGP across the core carries
    /// IPv4 only), so they sit behind the tunnel's own.
    pub fn routes_its_prefixes6(&self) -> bool {
        !(self.fallback && self.down)
    }

    /// Every inner IPv6 source prefix the tunnel accepts: `prefixes6`, `extra_sources6`
    /// and its `link6` prefix.
    pub fn source_prefixes6(&self) -> impl Iterator<Item = Ipv6Prefix> + '_ {
        self.prefixes6
            .iter()
            .chain(&self.extra_sources6)
            .copied()
            .chain(
                self.link6
                    .and_then(|l| Ipv6Prefix::truncating(l.addr(), l.prefix_len()).ok()),
            )
    }

    /// The lookup key packets of this tunnel arrive with.
    pub fn key(&self) -> TunnelKey {
        TunnelKey {
            local: u32::from(self.local),
            remote: u32::from(self.remote),
            protocol: self.mode.protocol().0,
            gre_key: self.key,
        }
    }

    /// The GRE header length this tunnel writes (0 for IPIP).
    pub fn encap_gre_len(&self) -> usize {
        match self.mode {
            TunnelMode::Ipip => 0,
            TunnelMode::Gre => {
                4 + 4 * usize::from(self.checksum)
                    + 4 * usize::from(self.key.is_some())
                    + 4 * usize::from(self.sequence)
            }
        }
    }
}

/// The smallest inner MTU a tunnel's path MTU may bring it down to, whatever the underlay
/// says (RFC 4459 section 3.2): the minimum datagram every IPv4 host must accept (RFC 791),
/// so that a forged or mistaken "fragmentation needed" cannot shrink a tunnel to nothing.
pub const PATH_MTU_MIN_INNER: u16 = 576;

impl Tunnel {
    /// The lowest outer MTU a path MTU report may set: [`PATH_MTU_MIN_INNER`] and the
    /// tunnel's headers (IPv4 and GRE).
    pub fn path_mtu_floor(&self) -> u16 {
        PATH_MTU_MIN_INNER + 20 + self.encap_gre_len() as u16
    }
}

/// What identifies a tunnel on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    /// Outer destination (our endpoint), host order.
    pub local: u32,
    /// Outer source (the client's endpoint), host order.
    pub remote: u32,
    /// 47 or 4.
    pub protocol: u8,
    /// The GRE key when K is set.
    pub gre_key: Option<u32>,
}

/// What identifies a tunnel with IPv6 endpoints on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelKey6 {
    /// Outer destination (our endpoint), host order.
    pub local: u128,
    /// Outer source (the client's endpoint), host order.
    pub remote: u128,
    /// 47 or 4 (an IP in IPv6 tunnel carries IPv6 as 41 under the same key).
    pub protocol: u8,
    /// The GRE key when K is set.
    pub gre_key: Option<u32>,
}

/// What the packet path reads of a tunnel with IPv6 endpoints, beside its [`TunnelHot`]
/// (which holds its flags, key, policies and inner MTU; its IPv4 fields are unused, and
/// its [`TunnelHot::NEIGHBOR`] flag is never set, so that the IPv4 encapsulation leaves
/// such a tunnel at the check it makes anyway).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct TunnelHot6 {
    /// Our endpoint, host order (0 for a slot without IPv6 endpoints).
    pub local: u128,
    /// The client's endpoint, host order.
    pub remote: u128,
    /// The next hop's MAC is known (the header holds it).
    pub neighbor: bool,
    /// Bytes of `header`: Ethernet, IPv6, GRE.
    pub header_len: u8,
    /// Ethernet (to the next hop, from the port, EtherType 0x86DD), IPv6 (version, next
    /// header, addresses; traffic class, payload length and hop limit filled per packet;
    /// flow label 0) and GRE (as [`TunnelHot::header`]'s).
    pub header: [u8; Self::MAX_HEADER],
}

impl TunnelHot6 {
    /// Ethernet (14) + IPv6 (40) + GRE with checksum, key and sequence number (16).
    pub const MAX_HEADER: usize = 70;

    /// A slot without IPv6 endpoints.
    pub const EMPTY: TunnelHot6 = TunnelHot6 {
        local: 0,
        remote: 0,
        neighbor: false,
        header_len: 0,
        header: [0; Self::MAX_HEADER],
    };

    /// The IPv6 view of tunnel `t` (which has IPv6 endpoints), as [`TunnelHot::new`].
    pub fn new(t: &Tunnel, src_mac: EthernetAddress, dst_mac: Option<EthernetAddress>) -> Self {
        let Some(o) = t.outer6 else {
            return Self::EMPTY;
        };
        let header_len = 14 + 40 + t.encap_gre_len();
        let mut header = [0u8; Self::MAX_HEADER];
        header[0..6].copy_from_slice(&dst_mac.unwrap_or(EthernetAddress([0; 6])).0);
        header[6..12].copy_from_slice(&src_mac.0);
        header[12..14].copy_from_slice(&[0x86, 0xdd]);
        header[14] = 0x60;
        header[20] = t.mode.protocol().0;
        header[22..38].copy_from_slice(&o.local.octets());
        header[38..54].copy_from_slice(&o.remote.octets());
        if t.mode == TunnelMode::Gre {
            gre_template(t, &mut header[54..]);
        }
        TunnelHot6 {
            local: u128::from(o.local),
            remote: u128::from(o.remote),
            neighbor: dst_mac.is_some(),
            header_len: header_len as u8,
            header,
        }
    }
}

/// The GRE header a tunnel writes (RFC 2784, RFC 2890) into `g`: flags, protocol type
/// 0x0800, and its key; the sequence number and checksum are filled per packet.
fn gre_template(t: &Tunnel, g: &mut [u8]) {
    let mut gre_flags = 0u16;
    let mut at = 4;
    if t.checksum {
        gre_flags |= 0x8000;
        at += 4;
    }
    if let Some(k) = t.key {
        gre_flags |= 0x2000;
        g[at..at + 4].copy_from_slice(&k.to_be_bytes());
    }
    if t.sequence {
        gre_flags |= 0x1000;
    }
    g[0..2].copy_from_slice(&gre_flags.to_be_bytes());
    g[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
}

/// Per-tunnel state shared by every worker and kept across snapshots.
#[derive(Debug, Default)]
pub struct TunnelState {
    /// The next GRE sequence number to send.
    pub tx_sequence: AtomicU32,
    /// Last accepted GRE sequence number, with bit 32 set once one was accepted.
    rx_sequence: AtomicU64,
    /// The last number refused for lying beyond the window, with bit 32 set: the number
    /// right after it confirms the jump.
    rx_jump: AtomicU64,
}

const SEQ_SEEN: u64 = 1 << 32;

/// How far from the last accepted sequence number a packet may land and be judged on its
/// own: up to this many ahead is accepted, up to this many behind (or equal) is a replay.
/// Anywhere else in the number space is accepted only when the next packet confirms it.
///
/// This bounds what one forged packet (outer source and key are spoofable) can cost the
/// real sender: at most this many of its packets (the forged number was accepted up to the
/// window ahead, and the sender's next numbers look old until they pass it). A forged number
/// further away is refused and changes nothing the sender needs. A sender that really
/// skipped ahead, lost more than the window in a row, or restarted from another number
/// (a client router that rebooted) is followed from its second packet.
pub const SEQUENCE_WINDOW: u32 = 1024;

/// What a received sequence number is, against the tunnel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Later than the last accepted one, within the window; or the first one; or the number
    /// right after an unconfirmed jump.
    Accept,
    /// Beyond the window, ahead or behind: accepted only if the next number follows it.
    Unconfirmed,
    /// A replay, or older than the last accepted one within the window.
    Old,
}

/// RFC 1982 serial arithmetic (RFC 2890 section 2.2) around the last accepted number.
fn classify(last: u64, jump: u64, seq: u32) -> SequenceCheck {
    if last & SEQ_SEEN == 0 {
        return SequenceCheck::Accept;
    }
    let ahead = seq.wrapping_sub(last as u32);
    if ahead == 0 || ahead.wrapping_neg() <= SEQUENCE_WINDOW {
        SequenceCheck::Old
    } else if ahead <= SEQUENCE_WINDOW
        || (jump & SEQ_SEEN != 0 && (jump as u32).wrapping_add(1) == seq)
    {
        SequenceCheck::Accept
    } else {
        SequenceCheck::Unconfirmed
    }
}

impl TunnelState {
    /// Judge `seq` without changing anything: the pipeline asks this in the GRE checks,
    /// and calls [`TunnelState::accept_sequence`] once the packet has passed every other
    /// check, so that a packet dropped later never moves the state.
    #[inline]
    pub fn check_sequence(&self, seq: u32) -> SequenceCheck {
        classify(
            self.rx_sequence.load(Ordering::Acquire),
            self.rx_jump.load(Ordering::Acquire),
            seq,
        )
    }

    /// Take `seq` from a packet that passed every other check: accept it when
    /// [`TunnelState::check_sequence`] says `Accept` against the state now (another worker
    /// may have moved it since), else refuse it; an unconfirmed number is remembered, so
    /// that the next one can confirm it.
    pub fn accept_sequence(&self, seq: u32) -> bool {
        let jump = self.rx_jump.load(Ordering::Acquire);
        let r = self
            .rx_sequence
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (classify(cur, jump, seq) == SequenceCheck::Accept)
                    .then_some(SEQ_SEEN | u64::from(seq))
            });
        match r {
            Ok(_) => true,
            Err(cur) => {
                if classify(cur, jump, seq) == SequenceCheck::Unconfirmed {
                    self.rx_jump
                        .store(SEQ_SEEN | u64::from(seq), Ordering::Release);
                }
                false
            }
        }
    }

    /// The next sequence number to send (increasing per tunnel across workers).
    #[inline]
    pub fn next_tx_sequence(&self) -> u32 {
        self.tx_sequence.fetch_add(1, Ordering::Relaxed)
    }
}

/// What the packet path reads of a tunnel, precomputed when the snapshot is built, in two
/// cache lines of its own in a dense array by slot ([`TunnelTable::hot`]): the first
/// recognises the tunnel's packets and holds its policies, the second is the header it
/// writes. The configuration, the names and the shared state stay in [`TunnelEntry`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct TunnelHot {
    /// Our endpoint (the outer destination of its packets), host order.
    pub local: u32,
    /// The client's endpoint (their outer source), host order.
    pub remote: u32,
    /// The GRE key when [`TunnelHot::KEY`] is set, else 0 ([`TunnelHot::receives`] counts
    /// on it).
    pub key: u32,
    /// The port the tunnel faces: its packets arrive there, and leave there.
    pub port: PortIndex,
    /// The outer IP protocol: 47 or 4.
    pub protocol: u8,
    /// [`TunnelHot::VALID`] and the others.
    pub flags: u8,
    /// The largest outer packet (IP total length) the tunnel carries.
    pub mtu: u16,
    /// Bytes of `header`: Ethernet, IPv4, GRE.
    pub header_len: u8,
    /// The outer TOS (or traffic class) is `inner & tos_keep | tos_set`: with
    /// [`DscpPolicy::Copy`] 0xFF and 0 (the inner byte), else 0x03 and the fixed DSCP
    /// shifted into place (over the inner ECN field either way).
    pub tos_keep: u8,
    /// See `tos_keep`.
    pub tos_set: u8,
    /// The outer TTL (or hop limit) is `inner & ttl_keep | ttl_set`: with
    /// [`TtlPolicy::Inherit`] 0xFF and 0 (the inner one), else 0 and the fixed TTL.
    pub ttl_keep: u8,
    /// See `ttl_keep`.
    pub ttl_set: u8,
    /// 1 when the outer DF bit is always set, 0 when it is copied from the inner packet
    /// ([`DfPolicy::Copy`]): the bit is `inner DF | df_set`.
    pub df_set: u8,
    /// The one's complement sum of the outer IPv4 header's constant words: the addresses
    /// and the protocol (the rest is added per packet).
    pub partial: u32,
    /// The slot of this entry's shared state in [`TunnelTable::get`] (sequence numbers).
    pub slot: u32,
    /// Our address inside the tunnel (its `link`), host order; 0 for none.
    pub link: u32,
    /// The slot whose source prefixes this tunnel accepts as inner sources: its own, or
    /// its primary's for a backup tunnel.
    pub sources: u32,
    /// Our IPv6 address inside the tunnel (its `link6`), host order; 0 for none.
    pub link6: u128,
    /// Ethernet (to the next hop, from the port), IPv4 (version and header length,
    /// protocol, addresses; TOS, length, identification, flags, TTL and checksum zero:
    /// filled per packet) and GRE (flags, protocol type, key; sequence number and checksum
    /// filled per packet), as the tunnel sends them.
    pub header: [u8; Self::MAX_HEADER],
}

// Two cache lines, as its documentation says: the policies and addresses, then the header.
const _: () = assert!(
    core::mem::size_of::<TunnelHot>() == 128 && core::mem::offset_of!(TunnelHot, header) == 64
);

impl TunnelHot {
    /// Ethernet (14) + IPv4 (20) + GRE with checksum, key and sequence number (16).
    pub const MAX_HEADER: usize = 50;
    /// A tunnel lives in this slot.
    pub const VALID: u8 = 1;
    /// GRE with a key.
    pub const KEY: u8 = 1 << 1;
    /// GRE sequence numbers: required on receipt, written on transmit.
    pub const SEQUENCE: u8 = 1 << 2;
    /// GRE checksum written on transmit.
    pub const CHECKSUM: u8 = 1 << 3;
    /// The next hop's MAC is known (the header holds it).
    pub const NEIGHBOR: u8 = 1 << 4;
    /// IPv4 endpoints: the tunnel receives IPv4 packets ([`TunnelHot::receives`]), and its
    /// `local` is one of our addresses (the snapshot build refuses a tunnel whose is not).
    /// A tunnel with IPv6 endpoints receives nothing through its IPv4 fields.
    pub const OUTER4: u8 = 1 << 5;

    /// An empty slot: matches no packet.
    pub const EMPTY: TunnelHot = TunnelHot {
        local: 0,
        remote: 0,
        key: 0,
        port: 0,
        protocol: 0,
        flags: 0,
        mtu: 0,
        header_len: 0,
        tos_keep: 0,
        tos_set: 0,
        ttl_keep: 0,
        ttl_set: 0,
        df_set: 0,
        partial: 0,
        slot: 0,
        link: 0,
        sources: u32::MAX,
        link6: 0,
        header: [0; Self::MAX_HEADER],
    };

    /// The hot view of tunnel `t` in `slot`, sending from `src_mac` to `dst_mac` (when the
    /// neighbour table knows it) with an outer MTU of `mtu`.
    pub fn new(
        t: &Tunnel,
        slot: u32,
        src_mac: EthernetAddress,
        dst_mac: Option<EthernetAddress>,
        mtu: u16,
    ) -> TunnelHot {
        let mut flags = Self::VALID;
        for (on, flag) in [
            (t.key.is_some(), Self::KEY),
            (t.sequence, Self::SEQUENCE),
            (t.checksum, Self::CHECKSUM),
            // A tunnel with IPv6 endpoints: never, so that the IPv4 encapsulation leaves it
            // at this check (its MAC is its `TunnelHot6`'s).
            (dst_mac.is_some() && t.outer6.is_none(), Self::NEIGHBOR),
            (t.outer6.is_none(), Self::OUTER4),
        ] {
            if on {
                flags |= flag;
            }
        }
        let gre_len = t.encap_gre_len();
        let header_len = 14 + 20 + gre_len;
        let mut header = [0u8; Self::MAX_HEADER];
        header[0..6].copy_from_slice(&dst_mac.unwrap_or(EthernetAddress([0; 6])).0);
        header[6..12].copy_from_slice(&src_mac.0);
        header[12..14].copy_from_slice(&[0x08, 0x00]);
        header[14] = 0x45;
        let protocol = t.mode.protocol().0;
        header[23] = protocol;
        header[26..30].copy_from_slice(&t.local.octets());
        header[30..34].copy_from_slice(&t.remote.octets());
        if t.mode == TunnelMode::Gre {
            gre_template(t, &mut header[34..]);
        }
        let (l, r) = (u32::from(t.local), u32::from(t.remote));
        let partial = (l >> 16) + (l & 0xffff) + (r >> 16) + (r & 0xffff);
        // With IPv6 endpoints the outer header is 20 bytes longer: the IPv4 accounting of
        // the MTU (inner + 20 + GRE) then holds against 20 bytes less, so that the MTU
        // check and `inner_mtu` serve both families.
        let mtu = if t.outer6.is_some() {
            mtu.saturating_sub(20)
        } else {
            mtu
        };
        let (tos_keep, tos_set) = match t.dscp {
            DscpPolicy::Fixed(d) => (0b11, d << 2),
            DscpPolicy::Copy => (0xff, 0),
        };
        let (ttl_keep, ttl_set) = match t.ttl {
            TtlPolicy::Fixed(ttl) => (0, ttl),
            TtlPolicy::Inherit => (0xff, 0),
        };
        TunnelHot {
            local: l,
            remote: r,
            key: t.key.unwrap_or(0),
            port: t.egress_port,
            protocol,
            flags,
            mtu,
            header_len: header_len as u8,
            tos_keep,
            tos_set,
            ttl_keep,
            ttl_set,
            df_set: u8::from(t.df != DfPolicy::Copy),
            partial,
            slot,
            link: t.link.map_or(0, |l| u32::from(l.addr())),
            sources: slot,
            link6: t.link6.map_or(0, |l| u128::from(l.addr())),
            header,
        }
    }

    /// Whether the flag is set.
    #[inline(always)]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether a packet from `remote` to `local` with `protocol` and `gre_key`, arriving
    /// on `port`, is this tunnel's.
    #[inline(always)]
    pub fn receives(
        &self,
        local: u32,
        remote: u32,
        protocol: u8,
        gre_key: Option<u32>,
        port: PortIndex,
    ) -> bool {
        // IPv4 endpoints; keyed or not as the packet is, and the same key: a tunnel without
        // one holds 0.
        let flags = if gre_key.is_some() {
            Self::OUTER4 | Self::KEY
        } else {
            Self::OUTER4
        };
        self.remote == remote
            && self.key == gre_key.unwrap_or(0)
            && self.flags & (Self::OUTER4 | Self::KEY) == flags
            && self.local == local
            && self.protocol == protocol
            && self.port == port
    }

    /// The GRE header length it writes (0 for IP in IP).
    #[inline(always)]
    pub fn gre_len(&self) -> usize {
        usize::from(self.header_len) - 34
    }

    /// The largest inner packet it carries.
    #[inline(always)]
    pub fn inner_mtu(&self) -> usize {
        usize::from(self.mtu) - 20 - self.gre_len()
    }

    /// The lowest outer MTU a path MTU report may set ([`Tunnel::path_mtu_floor`]).
    #[inline]
    pub fn path_mtu_floor(&self) -> u16 {
        PATH_MTU_MIN_INNER + 20 + self.gre_len() as u16
    }
}

impl std::fmt::Debug for TunnelHot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelHot")
            .field("local", &Ipv4Addr::from(self.local))
            .field("remote", &Ipv4Addr::from(self.remote))
            .field("flags", &self.flags)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TunnelHot6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelHot6")
            .field("local", &Ipv6Addr::from(self.local))
            .field("remote", &Ipv6Addr::from(self.remote))
            .field("neighbor", &self.neighbor)
            .finish_non_exhaustive()
    }
}

/// One tunnel as a worker sees it: configuration plus what the snapshot resolved.
#[derive(Debug)]
pub struct TunnelEntry {
    pub config: Tunnel,
    /// The next hop's MAC, when the neighbour table knows it.
    pub next_hop_mac: Option<EthernetAddress>,
    /// The egress port's MAC.
    pub src_mac: EthernetAddress,
    /// The outer MTU it sends with: the egress port's MTU bounded by the tunnel's, and by
    /// its path MTU where the underlay said less.
    pub mtu: u16,
    /// The path MTU the underlay reported for it (ICMP fragmentation needed, raised to
    /// [`Tunnel::path_mtu_floor`]), while it holds; `mtu` is at most this.
    pub path_mtu: Option<u16>,
    pub state: Arc<TunnelState>,
    /// The slot whose source prefixes it accepts (its own; its primary's for a backup).
    pub sources: u32,
}

/// FNV-1a over the key's words: the keys are small and not attacker-chosen in bulk (only
/// configured tunnels are in the table), so a simple fast hash is enough.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        let h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        self.0 = (h ^ u64::from(v))
            .wrapping_mul(0x0100_0000_01b3)
            .rotate_left(29);
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
    }
}

/// The tunnels of a snapshot, by slot, and their receive-side index.
///
/// A tunnel keeps its slot ([`TunnelId`]) from one snapshot to the next while it exists, so
/// route next hops and per-worker counters stay valid across updates; a removed tunnel's
/// slot stays empty.
#[derive(Debug, Default)]
pub struct TunnelTable {
    entries: Vec<Option<TunnelEntry>>,
    /// What the packet path reads, by slot (empty slots match nothing).
    hot: Vec<TunnelHot>,
    index: HashMap<TunnelKey, TunnelId, BuildHasherDefault<KeyHasher>>,
    /// The IPv6 views by slot: empty (no tunnel has IPv6 endpoints) or one per slot.
    hot6: Vec<TunnelHot6>,
    /// The receive-side index of tunnels with IPv6 endpoints.
    index6: HashMap<TunnelKey6, TunnelId, BuildHasherDefault<KeyHasher>>,
    count: usize,
}

impl TunnelTable {
    pub(crate) fn from_slots(entries: Vec<Option<TunnelEntry>>) -> Self {
        let index: HashMap<_, _, _> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (e, TunnelId(i as u32))))
            .filter(|(e, _)| e.config.outer6.is_none())
            .map(|(e, id)| (e.config.key(), id))
            .collect();
        let index6: HashMap<_, _, _> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((e.as_ref()?.config.key6()?, TunnelId(i as u32))))
            .collect();
        let hot6 = if index6.is_empty() {
            Vec::new()
        } else {
            entries
                .iter()
                .map(|e| match e {
                    Some(e) => TunnelHot6::new(&e.config, e.src_mac, e.next_hop_mac),
                    None => TunnelHot6::EMPTY,
                })
                .collect()
        };
        let hot = entries
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                Some(e) => {
                    let mut hot =
                        TunnelHot::new(&e.config, i as u32, e.src_mac, e.next_hop_mac, e.mtu);
                    hot.sources = e.sources;
                    hot
                }
                None => TunnelHot::EMPTY,
            })
            .collect();
        let count = index.len() + index6.len();
        TunnelTable {
            entries,
            hot,
            index,
            hot6,
            index6,
            count,
        }
    }

    /// What the packet path reads of tunnel `id` (an empty slot's matches nothing).
    #[inline(always)]
    pub fn hot(&self, id: TunnelId) -> Option<&TunnelHot> {
        self.hot.get(id.index())
    }

    /// The IPv6 view of tunnel `id`, where it has IPv6 endpoints.
    #[inline]
    pub fn hot6(&self, id: TunnelId) -> Option<&TunnelHot6> {
        self.hot6.get(id.index()).filter(|h| h.header_len != 0)
    }

    /// The tunnel with IPv6 endpoints packets with this key belong to.
    #[inline]
    pub fn lookup6(&self, key: &TunnelKey6) -> Option<TunnelId> {
        self.index6.get(key).copied()
    }

    /// The IPv6 underlay next hops the tunnels with IPv6 endpoints want resolved: (port,
    /// next hop, our endpoint to ask from), sorted, each (port, next hop) once. The
    /// snapshot's `wanted6` (what Neighbor Discovery resolves) holds them beside the IPv6
    /// routes' next hops.
    pub fn next_hops6(&self) -> Vec<(PortIndex, Ipv6Addr, Ipv6Addr)> {
        let mut hops: Vec<_> = self
            .iter()
            .filter_map(|(_, e)| {
                let o = e.config.outer6?;
                Some((e.config.egress_port, o.next_hop, o.local))
            })
            .collect();
        hops.sort_unstable();
        hops.dedup_by_key(|h| (h.0, h.1));
        hops
    }

    #[cfg(test)]
    pub(crate) fn from_entries(entries: Vec<TunnelEntry>) -> Self {
        Self::from_slots(entries.into_iter().map(Some).collect())
    }

    /// The tunnel packets with this key belong to.
    #[inline]
    pub fn lookup(&self, key: &TunnelKey) -> Option<TunnelId> {
        self.index.get(key).copied()
    }

    /// A tunnel by id (`None` for an empty slot).
    #[inline]
    pub fn get(&self, id: TunnelId) -> Option<&TunnelEntry> {
        self.entries.get(id.index()).and_then(Option::as_ref)
    }

    /// A tunnel by name.
    pub fn by_name(&self, name: &str) -> Option<TunnelId> {
        self.iter()
            .find(|(_, e)| e.config.name == name)
            .map(|(id, _)| id)
    }

    /// Number of tunnels.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Number of slots (the highest id + 1): size per-tunnel arrays by this.
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no tunnels.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// All tunnels with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (TunnelId, &TunnelEntry)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (TunnelId(i as u32), e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `receives` takes a packet only with the tunnel's own endpoints, protocol and port,
    /// and, for GRE (RFC 2890 section 2.1), a key exactly when the tunnel has one, and the
    /// same key: a keyless packet is not a keyed tunnel's, even with key 0, nor a keyed
    /// packet a keyless tunnel's. An empty slot receives nothing, not even all zeros, and
    /// a tunnel with IPv6 endpoints nothing through its IPv4 fields.
    #[test]
    fn receives_exactly_its_own_packets() {
        let (local, remote) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7));
        let (l, r) = (u32::from(local), u32::from(remote));
        let hot = |mode, key| {
            let mut t = Tunnel::new("t", mode, local, remote, 0);
            t.key = key;
            t.egress_port = 3;
            TunnelHot::new(&t, 0, EthernetAddress([2, 0, 0, 0, 0, 1]), None, 1500)
        };
        for key in [0, 5] {
            let t = hot(TunnelMode::Gre, Some(key));
            assert!(t.receives(l, r, 47, Some(key), 3), "key {key}");
            assert!(!t.receives(l, r, 47, None, 3), "key {key}: no key");
            assert!(
                !t.receives(l, r, 47, Some(key ^ 1), 3),
                "key {key}: another"
            );
            assert!(!t.receives(l, r, 4, Some(key), 3), "key {key}: IP in IP");
        }
        let t = hot(TunnelMode::Gre, None);
        assert!(t.receives(l, r, 47, None, 3));
        assert!(
            !t.receives(l, r, 47, Some(0), 3),
            "key 0 to a keyless tunnel"
        );
        assert!(!t.receives(l + 1, r, 47, None, 3), "another local address");
        assert!(!t.receives(l, r + 1, 47, None, 3), "another remote");
        assert!(!t.receives(l, r, 47, None, 2), "another port");
        let t = hot(TunnelMode::Ipip, None);
        assert!(t.receives(l, r, 4, None, 3));
        assert!(!t.receives(l, r, 47, None, 3), "GRE to an IP-in-IP tunnel");
        assert!(
            !TunnelHot::EMPTY.receives(0, 0, 0, None, 0),
            "an empty slot"
        );
        // IPv6 endpoints: its IPv4 fields (whatever the configuration left in them) are
        // not endpoints, and no IPv4 packet is its.
        let mut six = Tunnel::new("six", TunnelMode::Gre, local, remote, 0);
        six.egress_port = 3;
        six.outer6 = Some(Outer6 {
            local: "2001:db8::1".parse().unwrap(),
            remote: "2001:db8::2".parse().unwrap(),
            next_hop: "2001:db8::2".parse().unwrap(),
        });
        let t = TunnelHot::new(&six, 0, EthernetAddress([2, 0, 0, 0, 0, 1]), None, 1500);
        assert!(t.has(TunnelHot::VALID), "a live slot");
        assert!(
            !t.receives(l, r, 47, None, 3),
            "IPv4 to a tunnel with IPv6 endpoints"
        );
    }

    #[test]
    fn sequence_numbers_follow_serial_arithmetic() {
        let s = TunnelState::default();
        assert!(s.accept_sequence(10), "the first is accepted");
        assert!(!s.accept_sequence(10), "a replay is refused");
        assert!(!s.accept_sequence(9), "an older one is refused");
        assert!(s.accept_sequence(11));
        assert!(
            s.accept_sequence(11 + SEQUENCE_WINDOW),
            "a gap of the whole window"
        );
        let s = TunnelState::default();
        assert!(s.accept_sequence(u32::MAX));
        assert!(s.accept_sequence(0), "wrap-around is later");
        assert!(
            !s.accept_sequence(u32::MAX),
            "and the old one is now earlier"
        );
    }

    #[test]
    fn checking_changes_nothing() {
        let s = TunnelState::default();
        assert_eq!(s.check_sequence(7), SequenceCheck::Accept);
        assert_eq!(
            s.check_sequence(7),
            SequenceCheck::Accept,
            "still the first"
        );
        assert!(s.accept_sequence(7));
        assert_eq!(s.check_sequence(8), SequenceCheck::Accept);
        assert_eq!(s.check_sequence(8), SequenceCheck::Accept);
        assert_eq!(s.check_sequence(7), SequenceCheck::Old);
        assert_eq!(s.check_sequence(7 + 5000), SequenceCheck::Unconfirmed);
        assert_eq!(
            s.check_sequence(7 + 5001),
            SequenceCheck::Unconfirmed,
            "checking 7 + 5000 did not remember it"
        );
        assert!(s.accept_sequence(8));
    }

    /// The real sender is at `real` and sends `real + 1, real + 2, ...`; one forged
    /// packet carries `forged`. How many of the sender's next packets are refused?
    fn cost_of_one_forged_packet(real: u32, forged: u32) -> u32 {
        let s = TunnelState::default();
        assert!(s.accept_sequence(real));
        s.accept_sequence(forged);
        (1..=3 * SEQUENCE_WINDOW)
            .filter(|&i| !s.accept_sequence(real.wrapping_add(i)))
            .count() as u32
    }

    #[test]
    fn one_forged_packet_costs_the_sender_at_most_the_window() {
        let real = 3_000_000_000u32;
        let mut forged: Vec<u32> = vec![
            real,
            real.wrapping_add(1),
            real.wrapping_add(SEQUENCE_WINDOW),
            real.wrapping_add(SEQUENCE_WINDOW + 1),
            real.wrapping_add(1 << 16),
            real.wrapping_add(1 << 31),
            real.wrapping_add((1 << 31) - 1),
            real.wrapping_sub(1),
            real.wrapping_sub(SEQUENCE_WINDOW),
            real.wrapping_sub(SEQUENCE_WINDOW + 1),
            real.wrapping_add(u32::MAX / 3),
        ];
        // And anywhere in the number space, in steps that are no multiple of anything.
        forged.extend((0..4096u32).map(|i| i.wrapping_mul(1_048_573)));
        for f in forged {
            let cost = cost_of_one_forged_packet(real, f);
            assert!(
                cost <= SEQUENCE_WINDOW,
                "a forged {f} (real sender at {real}) cost {cost} packets"
            );
        }
        // Beyond the window the forged number changes nothing at all.
        assert_eq!(
            cost_of_one_forged_packet(real, real.wrapping_add(SEQUENCE_WINDOW + 1)),
            0
        );
        assert_eq!(
            cost_of_one_forged_packet(real, real.wrapping_add(1 << 31)),
            0
        );
        // The worst case is exactly the window: a number right at its far edge.
        assert_eq!(
            cost_of_one_forged_packet(real, real.wrapping_add(SEQUENCE_WINDOW)),
            SEQUENCE_WINDOW
        );
    }

    #[test]
    fn a_jump_is_followed_from_its_second_packet() {
        let s = TunnelState::default();
        assert!(s.accept_sequence(100));
        let far = 5_000_000;
        assert!(!s.accept_sequence(far), "one far ahead: refused");
        assert!(s.accept_sequence(far + 1), "the next one confirms it");
        assert!(s.accept_sequence(far + 2));
        assert!(!s.accept_sequence(101), "the old numbers are now behind");
        // Two beyond the window but not consecutive: neither is accepted.
        assert!(!s.accept_sequence(far + 1_000_000));
        assert!(!s.accept_sequence(far + 1_000_002));
        assert!(s.accept_sequence(far + 3));
        // A sender that restarted from 0 (a rebooted router) is followed from its second
        // packet, although 0 is "older".
        assert!(!s.accept_sequence(0));
        assert!(s.accept_sequence(1));
        assert!(s.accept_sequence(2));
        assert!(!s.accept_sequence(far + 4), "the old run is now far away");
    }

    #[test]
    fn keys_separate_protocol_and_gre_key() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let b = Ipv4Addr::new(198, 51, 100, 1);
        let mut t1 = Tunnel::new("g", TunnelMode::Gre, a, b, 0);
        t1.key = Some(7);
        let t2 = Tunnel::new("i", TunnelMode::Ipip, a, b, 0);
        let t3 = Tunnel::new("g0", TunnelMode::Gre, a, b, 0);
        let table = TunnelTable::from_entries(
            [t1.clone(), t2.clone(), t3.clone()]
                .into_iter()
                .enumerate()
                .map(|(i, config)| TunnelEntry {
                    sources: i as u32,
                    mtu: config.mtu,
                    path_mtu: None,
                    config,
                    next_hop_mac: None,
                    src_mac: EthernetAddress([0; 6]),
                    state: Arc::default(),
                })
                .collect(),
        );
        assert_eq!(table.lookup(&t1.key()), Some(TunnelId(0)));
        assert_eq!(table.lookup(&t2.key()), Some(TunnelId(1)));
        assert_eq!(table.lookup(&t3.key()), Some(TunnelId(2)));
        let mut wrong = t1.key();
        wrong.gre_key = Some(8);
        assert_eq!(table.lookup(&wrong), None);
        assert_eq!(table.by_name("i"), Some(TunnelId(1)));
    }
}
