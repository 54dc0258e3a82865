//! Per-worker counters. Each worker owns one `Counters`; nothing here is shared for writing.

use super::action::{DropReason, Event, PuntReason};
use super::icmp::IcmpKind;

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
        self.bytes += bytes as u64;
    }

    fn merge(&mut self, o: &PacketBytes) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// Per-port counters as the pipeline sees them (decisions, not hardware counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx: PacketBytes,
    pub tx: PacketBytes,
}

/// Per-tunnel counters: rx counts packets terminated, tx packets encapsulated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    pub rx: PacketBytes,
    pub tx: PacketBytes,
}

/// One worker's counters, on cache lines of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

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
        }
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
        }
        for (a, b) in self.tunnels.iter_mut().zip(&other.tunnels) {
            a.rx.merge(&b.rx);
            a.tx.merge(&b.tx);
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
