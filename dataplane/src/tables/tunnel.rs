//! The tunnel table: exact match on (outer destination, outer source, protocol, GRE key).
//!
//! Tunnels are numbered densely ([`TunnelId`]) in the snapshot; per-tunnel state that must
//! outlive a snapshot swap (GRE sequence numbers) lives in an `Arc<TunnelState>` that the
//! snapshot builder carries from one snapshot to the next by tunnel name.

use super::PortIndex;
use crate::lpm::Ipv4Prefix;
use crate::wire::{EthernetAddress, IpProtocol};
use core::net::Ipv4Addr;
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
    /// The largest outer packet (IP total length) the tunnel path carries.
    pub mtu: u16,
    /// The client's prefixes: routed into this tunnel, and allowed as inner sources.
    pub prefixes: Vec<Ipv4Prefix>,
    /// Further inner source prefixes accepted from this client (not routed to it).
    pub extra_sources: Vec<Ipv4Prefix>,
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
            mtu: 1500,
            prefixes: Vec::new(),
            extra_sources: Vec::new(),
        }
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

/// Per-tunnel state shared by every worker and kept across snapshots.
#[derive(Debug, Default)]
pub struct TunnelState {
    /// The next GRE sequence number to send.
    pub tx_sequence: AtomicU32,
    /// Last accepted GRE sequence number, with bit 32 set once one was accepted.
    rx_sequence: AtomicU64,
    /// The last number refused for jumping beyond the window, with bit 32 set.
    rx_jump: AtomicU64,
}

const SEQ_SEEN: u64 = 1 << 32;

/// How far ahead of the last accepted sequence number a packet may jump and still be
/// accepted on its own: 65,536 packets lost in a row.
pub const SEQUENCE_WINDOW: u32 = 1 << 16;

impl TunnelState {
    /// Accept `seq` if it is later than the last accepted one (RFC 1982 serial arithmetic,
    /// RFC 2890 section 2.2) by at most [`SEQUENCE_WINDOW`]; the first number is always
    /// accepted. A jump further ahead (but less than half the number space) is accepted
    /// only from the second of two consecutive numbers: one forged packet far ahead can
    /// then not lock the real sender out (TESTPLAN GRE-S 3), while a sender that really
    /// skipped ahead, or lost more than the window, is followed after one more packet.
    pub fn accept_sequence(&self, seq: u32) -> bool {
        let mut jumped = false;
        let accepted = self
            .rx_sequence
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                if cur & SEQ_SEEN == 0 {
                    return Some(SEQ_SEEN | u64::from(seq));
                }
                let diff = seq.wrapping_sub(cur as u32);
                jumped = false;
                if diff == 0 || diff >= 1 << 31 {
                    return None; // a replay, or older
                }
                if diff <= SEQUENCE_WINDOW {
                    return Some(SEQ_SEEN | u64::from(seq));
                }
                jumped = true;
                let prev = self.rx_jump.load(Ordering::Acquire);
                (prev & SEQ_SEEN != 0 && (prev as u32).wrapping_add(1) == seq)
                    .then_some(SEQ_SEEN | u64::from(seq))
            })
            .is_ok();
        if jumped && !accepted {
            self.rx_jump
                .store(SEQ_SEEN | u64::from(seq), Ordering::Release);
        }
        accepted
    }

    /// The next sequence number to send (increasing per tunnel across workers).
    #[inline]
    pub fn next_tx_sequence(&self) -> u32 {
        self.tx_sequence.fetch_add(1, Ordering::Relaxed)
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
    /// The egress port's MTU bounded by the tunnel's.
    pub mtu: u16,
    pub state: Arc<TunnelState>,
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
    index: HashMap<TunnelKey, TunnelId, BuildHasherDefault<KeyHasher>>,
    count: usize,
}

impl TunnelTable {
    pub(crate) fn from_slots(entries: Vec<Option<TunnelEntry>>) -> Self {
        let index: HashMap<_, _, _> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (e.config.key(), TunnelId(i as u32))))
            .collect();
        let count = index.len();
        TunnelTable {
            entries,
            index,
            count,
        }
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

    #[test]
    fn sequence_numbers_follow_serial_arithmetic() {
        let s = TunnelState::default();
        assert!(s.accept_sequence(10), "the first is accepted");
        assert!(!s.accept_sequence(10), "a replay is refused");
        assert!(!s.accept_sequence(9), "an older one is refused");
        assert!(s.accept_sequence(11));
        assert!(
            s.accept_sequence(11 + SEQUENCE_WINDOW),
            "a gap within the window"
        );
        let s = TunnelState::default();
        assert!(s.accept_sequence(u32::MAX));
        assert!(s.accept_sequence(0), "wrap-around is later");
        assert!(
            !s.accept_sequence(u32::MAX),
            "and the old one is now earlier"
        );
        let s = TunnelState::default();
        assert!(s.accept_sequence(0));
        assert!(!s.accept_sequence(1 << 31), "exactly half way is not later");
    }

    #[test]
    fn one_packet_far_ahead_cannot_lock_the_sender_out() {
        let s = TunnelState::default();
        assert!(s.accept_sequence(100));
        // A forged number 2^31 - 1 ahead: refused, and the real sender goes on.
        assert!(!s.accept_sequence(100 + (1 << 31) - 1));
        assert!(s.accept_sequence(101));
        assert!(
            !s.accept_sequence(100 + SEQUENCE_WINDOW + 2),
            "just beyond the window"
        );
        assert!(s.accept_sequence(102));
        // Two consecutive numbers beyond the window: the sender skipped ahead; follow it
        // from the second one, and refuse what is now behind.
        let far = 5_000_000;
        assert!(!s.accept_sequence(far));
        assert!(s.accept_sequence(far + 1));
        assert!(s.accept_sequence(far + 2));
        assert!(!s.accept_sequence(103), "the old numbers are now behind");
        // Two beyond the window but not consecutive: neither is accepted.
        assert!(!s.accept_sequence(far + 1_000_000));
        assert!(!s.accept_sequence(far + 1_000_002));
        assert!(s.accept_sequence(far + 3));
        // Exactly half the number space ahead is never later, consecutive or not.
        let half = (far + 3).wrapping_add(1 << 31);
        assert!(!s.accept_sequence(half.wrapping_sub(1)));
        assert!(!s.accept_sequence(half));
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
                .map(|config| TunnelEntry {
                    mtu: config.mtu,
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
