//! Per-worker counters. Each worker owns one `Counters`; nothing here is shared for writing.
//!
//! Every drop is counted once by reason, and once more where it belongs: under the tunnel
//! the packet came through when the tunnel was known ([`Counters::tunnel_drops`]: which
//! client sends what), else under the port it arrived on ([`PortCounters::drops`]: native
//! traffic, and what no tunnel claimed). So for each reason, the tunnels' and the ports'
//! counts add up to the reason's total.

use super::action::{DropReason, Event, PuntReason};
use super::icmp::IcmpKind;
use crate::tables::{PortIndex, TunnelId};

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketBytes {
    pub packets: u64,
    pub bytes: u64,
}

impl PacketBytes {
    #[inline]
    pub(crate) fn add(&mut self, bytes: usize) {
        self.packets += 1;
        // A compiler-only barrier (no instruction): without it LLVM pairs the two adds into
        // vector instructions, 6 where these 2 do, and each packet updates two such
        // counters (7 instructions a packet, scripts/bench-instructions.sh).
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Release);
        self.bytes += bytes as u64;
    }

    #[inline]
    fn merge(&mut self, o: &PacketBytes) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// Per-port counters as the pipeline sees them (decisions, not hardware counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    pub rx: PacketBytes,
    pub tx: PacketBytes,
    /// Packets received here and dropped, by reason, that no tunnel claimed (native
    /// traffic, and tunnel packets dropped before their tunnel was found).
    pub drops: [u64; DropReason::COUNT],
}

// By hand: arrays of more than 32 elements have no derived `Default`.
impl Default for PortCounters {
    fn default() -> Self {
        PortCounters {
            rx: PacketBytes::default(),
            tx: PacketBytes::default(),
            drops: [0; DropReason::COUNT],
        }
    }
}

/// The drop reasons that can befall a packet after its tunnel is known (the tunnel
/// lookup, SPEC.md tunnel termination step 1, and everything after it): the ones
/// [`TunnelDrops`] counts.
pub const TUNNEL_DROP_REASONS: [DropReason; 15] = [
    DropReason::UnsupportedInner,
    DropReason::GreSequence,
    DropReason::BadInnerIpv4,
    DropReason::BadInnerIpv6,
    DropReason::NestedTunnel,
    DropReason::InnerSpoofed,
    DropReason::EcnCeNotEct,
    DropReason::TtlExceeded,
    DropReason::MartianDestination,
    DropReason::NoRoute,
    DropReason::Hairpin,
    DropReason::TunnelLoop,
    DropReason::NoHeadroom,
    DropReason::MtuExceeded,
    DropReason::NoNeighbor,
];

/// Where each reason sits in a [`TunnelDrops`] (`NOT_PER_TUNNEL` for the others).
const TUNNEL_SLOT: [u8; DropReason::COUNT] = {
    let mut slots = [NOT_PER_TUNNEL; DropReason::COUNT];
    let mut i = 0;
    while i < TUNNEL_DROP_REASONS.len() {
        slots[TUNNEL_DROP_REASONS[i] as usize] = i as u8;
        i += 1;
    }
    slots
};
const NOT_PER_TUNNEL: u8 = u8::MAX;

/// One tunnel's drops, by reason, in [`TUNNEL_DROP_REASONS`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelDrops(pub [u64; TUNNEL_DROP_REASONS.len()]);

impl TunnelDrops {
    /// Packets dropped for `reason` (0 for a reason never counted per tunnel).
    pub fn get(&self, reason: DropReason) -> u64 {
        match TUNNEL_SLOT[reason as usize] {
            NOT_PER_TUNNEL => 0,
            slot => self.0[usize::from(slot)],
        }
    }

    /// `(reason, packets)` for every reason counted here.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        TUNNEL_DROP_REASONS
            .iter()
            .copied()
            .zip(self.0.iter().copied())
    }
}

/// Per-tunnel counters: rx counts packets terminated, tx packets encapsulated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    pub rx: PacketBytes,
    pub tx: PacketBytes,
}

/// One worker's counters, on cache lines of their own.
#[derive(Debug, Clone)]
#[repr(align(64))]
pub struct Counters {
    pub drops: [u64; DropReason::COUNT],
    pub events: [u64; Event::COUNT],
    pub punts: [u64; PuntReason::COUNT],
    /// ICMP errors sent, by kind.
    pub icmp_sent: [u64; IcmpKind::COUNT],
    /// ICMP errors the rate limit kept from being sent.
    pub icmp_rate_limited: u64,
    /// Echo requests to our addresses answered.
    pub echo_replies: u64,
    pub ports: Vec<PortCounters>,
    pub tunnels: Vec<TunnelCounters>,
    /// Per tunnel (by id): drops of the packets that came through it.
    pub tunnel_drops: Vec<TunnelDrops>,
    /// One bit per tunnel whose `tunnel_drops` changed since the last
    /// [`Counters::publish_into`]: publishing copies those entries only.
    dirty: Vec<u64>,
}

// By hand: arrays of more than 32 elements have no derived `Default`.
impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::COUNT],
            events: [0; Event::COUNT],
            punts: [0; PuntReason::COUNT],
            icmp_sent: [0; IcmpKind::COUNT],
            icmp_rate_limited: 0,
            echo_replies: 0,
            ports: Vec::new(),
            tunnels: Vec::new(),
            tunnel_drops: Vec::new(),
            dirty: Vec::new(),
        }
    }
}

/// Equal when they count the same (whatever is left to publish).
impl PartialEq for Counters {
    fn eq(&self, o: &Counters) -> bool {
        self.drops == o.drops
            && self.events == o.events
            && self.punts == o.punts
            && self.icmp_sent == o.icmp_sent
            && self.icmp_rate_limited == o.icmp_rate_limited
            && self.echo_replies == o.echo_replies
            && self.ports == o.ports
            && self.tunnels == o.tunnels
            && self.tunnel_drops == o.tunnel_drops
    }
}

impl Eq for Counters {}

impl Counters {
    /// Grow the per-port and per-tunnel arrays to the snapshot's sizes (once per burst;
    /// allocates only when a snapshot has more ports or tunnels than any before).
    #[inline]
    pub fn fit(&mut self, ports: usize, tunnels: usize) {
        if self.ports.len() < ports {
            self.ports.resize(ports, PortCounters::default());
        }
        if self.tunnels.len() < tunnels {
            self.tunnels.resize(tunnels, TunnelCounters::default());
            self.tunnel_drops.resize(tunnels, TunnelDrops::default());
            self.dirty.resize(tunnels.div_ceil(64), 0);
        }
    }

    /// Count `packets` sent out of `port`, `bytes` in all (nothing for a port the
    /// counters do not have).
    #[inline]
    pub(crate) fn port_sent(&mut self, port: PortIndex, packets: u64, bytes: u64) {
        if let Some(c) = self.ports.get_mut(usize::from(port)) {
            c.tx.merge(&PacketBytes { packets, bytes });
        }
    }

    /// Count a drop for `reason` of a packet received on `port`, through `tunnel` if its
    /// tunnel was known: under the tunnel then, else under the port.
    #[inline]
    pub fn count_drop(&mut self, port: PortIndex, tunnel: Option<TunnelId>, reason: DropReason) {
        self.drops[reason as usize] += 1;
        let slot = TUNNEL_SLOT[reason as usize];
        if let Some(t) = tunnel.filter(|_| slot != NOT_PER_TUNNEL) {
            let i = t.index();
            if let (Some(d), Some(bits)) =
                (self.tunnel_drops.get_mut(i), self.dirty.get_mut(i / 64))
            {
                d.0[usize::from(slot)] += 1;
                *bits |= 1 << (i % 64);
                return;
            }
        }
        if let Some(p) = self.ports.get_mut(usize::from(port)) {
            p.drops[reason as usize] += 1;
        }
    }

    /// Copy these counters into `slot`, a copy made by an earlier call (or empty): the
    /// per-tunnel drops only where they changed since, so that a worker with many tunnels
    /// and few drops publishes at the cost of its other counters.
    pub fn publish_into(&mut self, slot: &mut Counters) {
        slot.drops = self.drops;
        slot.events = self.events;
        slot.punts = self.punts;
        slot.icmp_sent = self.icmp_sent;
        slot.icmp_rate_limited = self.icmp_rate_limited;
        slot.echo_replies = self.echo_replies;
        slot.ports.clone_from(&self.ports);
        slot.tunnels.clone_from(&self.tunnels);
        if slot.tunnel_drops.len() != self.tunnel_drops.len() {
            slot.tunnel_drops.clone_from(&self.tunnel_drops);
        } else {
            for (w, bits) in self.dirty.iter().enumerate() {
                let mut bits = *bits;
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if let (Some(to), Some(from)) =
                        (slot.tunnel_drops.get_mut(i), self.tunnel_drops.get(i))
                    {
                        *to = *from;
                    }
                }
            }
        }
        self.dirty.iter_mut().for_each(|b| *b = 0);
    }

    /// Packets dropped for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Times `event` happened.
    pub fn event_count(&self, event: Event) -> u64 {
        self.events[event as usize]
    }

    /// ICMP errors of `kind` sent.
    pub fn icmp_count(&self, kind: IcmpKind) -> u64 {
        self.icmp_sent[kind as usize]
    }

    /// Packets punted for `reason`.
    pub fn punt_count(&self, reason: PuntReason) -> u64 {
        self.punts[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Add another worker's counters to these.
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.drops.iter_mut().zip(&other.drops) {
            *a += b;
        }
        for (a, b) in self.events.iter_mut().zip(&other.events) {
            *a += b;
        }
        for (a, b) in self.punts.iter_mut().zip(&other.punts) {
            *a += b;
        }
        for (a, b) in self.icmp_sent.iter_mut().zip(&other.icmp_sent) {
            *a += b;
        }
        self.icmp_rate_limited += other.icmp_rate_limited;
        self.echo_replies += other.echo_replies;
        self.fit(other.ports.len(), other.tunnels.len());
        for (a, b) in self.ports.iter_mut().zip(&other.ports) {
            a.rx.merge(&b.rx);
            a.tx.merge(&b.tx);
            for (x, y) in a.drops.iter_mut().zip(&b.drops) {
                *x += y;
            }
        }
        for (a, b) in self.tunnels.iter_mut().zip(&other.tunnels) {
            a.rx.merge(&b.rx);
            a.tx.merge(&b.tx);
        }
        for (a, b) in self.tunnel_drops.iter_mut().zip(&other.tunnel_drops) {
            for (x, y) in a.0.iter_mut().zip(&b.0) {
                *x += y;
            }
        }
    }

    /// Add only what `other` sent (port and tunnel TX): the exception path's counters
    /// join the workers' so, as what the host sends leaves through the same ports and
    /// tunnels; its drops stay its own (they are not of packets received).
    pub fn merge_tx(&mut self, other: &Counters) {
        self.fit(other.ports.len(), other.tunnels.len());
        for (a, b) in self.ports.iter_mut().zip(&other.ports) {
            a.tx.merge(&b.tx);
        }
        for (a, b) in self.tunnels.iter_mut().zip(&other.tunnels) {
            a.tx.merge(&b.tx);
        }
    }

    /// Non-zero drop counters by name.
    pub fn nonzero_drops(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .filter(|r| self.drops[**r as usize] > 0)
            .map(|r| (r.name(), self.drops[*r as usize]))
            .collect()
    }
}
