//! What the control side knows of the running appliance besides its tables and the
//! workers' counters: what it is (version, DPDK, file prefix), what its ports are (driver,
//! queues), what the control thread counted, and the baseline `ctl counters clear` set.
//!
//! The control thread fills it; the control API, the metrics endpoint and the telemetry
//! commands read it. Nothing here is touched by a worker.

use super::progress::{PortHealth, PortTx};
use crate::pipeline::Counters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The appliance as a whole.
#[derive(Debug, Default)]
pub struct Appliance {
    pub about: About,
    /// Per port, configuration order.
    pub ports: Vec<PortInfo>,
    /// The control thread's counters, as it last published them.
    pub control: ControlCounters,
    /// The exception path's counters (the host interfaces).
    pub host: HostCounters,
    /// What the counters were at the last `clear_counters`: the control API answers the
    /// difference (the workers' own counters are never written).
    pub baseline: Mutex<Option<Baseline>>,
    /// What the FPM listener (routes from zebra) counted.
    #[cfg(not(loom))]
    pub fpm: super::fpm::FpmCounters,
    /// `ctl trace` and `ctl capture` sessions (one at a time).
    #[cfg(not(loom))]
    pub taps: super::trace::Sessions,
}

/// What runs.
#[derive(Debug, Clone, Default)]
pub struct About {
    /// `backbone` version and git commit.
    pub version: String,
    /// The DPDK library's version (`rte_version`).
    pub dpdk: String,
    /// EAL's `--file-prefix`: `dpdk-telemetry.py -f` and `dpdk-dumpcap --file-prefix`
    /// take it.
    pub file_prefix: String,
    /// EAL's runtime directory for that prefix (the telemetry socket lives there).
    pub runtime_dir: String,
    /// Whether `dpdk-dumpcap` can attach (EAL runs with its shared configuration).
    pub capture: bool,
    /// The configuration file.
    pub config: String,
    /// The control socket, where there is one.
    pub control_socket: Option<String>,
    /// The metrics endpoint, where there is one.
    pub metrics: Option<String>,
    pub started: Option<Instant>,
}

/// What a port is, read once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// The ethdev name (`net_pcap0`, `0000:01:00.0`).
    pub device: String,
    pub port_id: u16,
    /// The PMD (`net_pcap`, `net_ice`).
    pub driver: String,
    pub rx_queues: u16,
    /// TX queues configured: one per worker, and one more for the control thread where
    /// `control_queue`.
    pub tx_queues: u16,
    pub control_queue: bool,
    pub rss: bool,
    /// The MAC the tables use (the configured one, or the device's).
    pub mac: String,
    /// The MTU the device reports (a virtual device may keep its own).
    pub device_mtu: Option<u16>,
    /// Whether link changes come from the device's interrupt.
    pub link_interrupt: bool,
}

/// The control thread's counters (see `backbone run --stats` for each).
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub arp_requests: AtomicU64,
    pub arp_request_failed: AtomicU64,
    pub arp_requests_deferred: AtomicU64,
    pub neighbors_learned: AtomicU64,
    pub arp_unsolicited: AtomicU64,
    pub arp_static_kept: AtomicU64,
    /// The neighbours of connected subnets, resolved on demand (control/ondemand.rs): taken
    /// for resolution, refused for want of room, resolved, given up, forgotten; and how
    /// many are resolved, and being asked for, now.
    pub arp_on_demand_requested: AtomicU64,
    pub arp_on_demand_full: AtomicU64,
    pub arp_on_demand_resolved: AtomicU64,
    pub arp_on_demand_unanswered: AtomicU64,
    pub arp_on_demand_expired: AtomicU64,
    pub neighbors_on_demand: AtomicU64,
    pub neighbors_on_demand_pending: AtomicU64,
    /// Neighbor Discovery for the IPv6 next hops (control/ndcache.rs): solicitations sent,
    /// not sent, deferred by the budget; next hops learned; advertisements ignored as
    /// unsolicited, over a static entry, without Override, without a MAC; next hops
    /// unanswered, forgotten as unreachable; and how many are learned, and asked for, now.
    pub nd_solicitations: AtomicU64,
    pub nd_solicitation_failed: AtomicU64,
    pub nd_solicitations_deferred: AtomicU64,
    pub nd_learned: AtomicU64,
    pub nd_unsolicited: AtomicU64,
    pub nd_static_kept: AtomicU64,
    pub nd_not_override: AtomicU64,
    pub nd_no_lla: AtomicU64,
    pub nd_unanswered: AtomicU64,
    pub nd_unreachable: AtomicU64,
    pub nd_next_hops: AtomicU64,
    pub nd_next_hops_pending: AtomicU64,
    pub worker_stalls: AtomicU64,
    /// Path MTU reports from the underlay that lowered a tunnel's MTU, that changed nothing,
    /// and path MTUs expired (control/pmtu.rs).
    pub pmtu_lowered: AtomicU64,
    pub pmtu_ignored: AtomicU64,
    pub pmtu_expired: AtomicU64,
    /// Probed tunnels that went down, and came back up.
    pub tunnels_down: AtomicU64,
    pub tunnels_up: AtomicU64,
    /// Configuration reloads (SIGHUP, `ctl reload`) applied, and refused.
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// FRR's configuration written (`[bgp] frr_config`), and reloaded by `[bgp]
    /// frr_reload`, or not (tried again).
    pub frr_writes: AtomicU64,
    pub frr_reloads: AtomicU64,
    pub frr_reload_failures: AtomicU64,
}

impl ControlCounters {
    /// Every counter, by name.
    pub fn named(&self) -> [(&'static str, u64); 36] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("arp_requests", n(&self.arp_requests)),
            ("arp_request_failed", n(&self.arp_request_failed)),
            ("arp_requests_deferred", n(&self.arp_requests_deferred)),
            ("neighbors_learned", n(&self.neighbors_learned)),
            ("arp_unsolicited", n(&self.arp_unsolicited)),
            ("arp_static_kept", n(&self.arp_static_kept)),
            ("arp_on_demand_requested", n(&self.arp_on_demand_requested)),
            ("arp_on_demand_full", n(&self.arp_on_demand_full)),
            ("arp_on_demand_resolved", n(&self.arp_on_demand_resolved)),
            (
                "arp_on_demand_unanswered",
                n(&self.arp_on_demand_unanswered),
            ),
            ("arp_on_demand_expired", n(&self.arp_on_demand_expired)),
            ("neighbors_on_demand", n(&self.neighbors_on_demand)),
            (
                "neighbors_on_demand_pending",
                n(&self.neighbors_on_demand_pending),
            ),
            ("nd_solicitations", n(&self.nd_solicitations)),
            ("nd_solicitation_failed", n(&self.nd_solicitation_failed)),
            (
                "nd_solicitations_deferred",
                n(&self.nd_solicitations_deferred),
            ),
            ("nd_learned", n(&self.nd_learned)),
            ("nd_unsolicited", n(&self.nd_unsolicited)),
            ("nd_static_kept", n(&self.nd_static_kept)),
            ("nd_not_override", n(&self.nd_not_override)),
            ("nd_no_lla", n(&self.nd_no_lla)),
            ("nd_unanswered", n(&self.nd_unanswered)),
            ("nd_unreachable", n(&self.nd_unreachable)),
            ("nd_next_hops", n(&self.nd_next_hops)),
            ("nd_next_hops_pending", n(&self.nd_next_hops_pending)),
            ("worker_stalls", n(&self.worker_stalls)),
            ("pmtu_lowered", n(&self.pmtu_lowered)),
            ("pmtu_ignored", n(&self.pmtu_ignored)),
            ("pmtu_expired", n(&self.pmtu_expired)),
            ("tunnels_down", n(&self.tunnels_down)),
            ("tunnels_up", n(&self.tunnels_up)),
            ("reloads", n(&self.reloads)),
            ("reload_failures", n(&self.reload_failures)),
            ("frr_writes", n(&self.frr_writes)),
            ("frr_reloads", n(&self.frr_reloads)),
            ("frr_reload_failures", n(&self.frr_reload_failures)),
        ]
    }
}

/// What the exception path counted; read by the control API and the metrics while it runs.
#[derive(Debug, Default)]
pub struct HostCounters {
    /// Packets written into a host interface (the kernel took them).
    pub to_host: AtomicU64,
    pub to_host_bytes: AtomicU64,
    /// Packets for a host interface that could not be written: the interface is gone (its
    /// tunnel was removed while the packet waited) or the kernel refused the write.
    pub to_host_failed: AtomicU64,
    /// Packets the kernel sent into a host interface.
    pub from_host: AtomicU64,
    pub from_host_bytes: AtomicU64,
    /// Of those, handed to a port's TX queue.
    pub from_host_sent: AtomicU64,
    /// Dropped by the pipeline's checks (by reason in [`HostCounters::drops`]).
    pub from_host_dropped: AtomicU64,
    /// Refused by the TX queue (full), or for a port without a control TX queue.
    pub from_host_tx_failed: AtomicU64,
    /// No mbuf to copy the kernel's packet into (the pool is exhausted), or the packet was
    /// longer than an mbuf holds.
    pub from_host_no_mbuf: AtomicU64,
    /// Host interfaces present now.
    pub interfaces: AtomicU64,
    /// Host interfaces that could not be created or configured (retried every 10 s).
    pub interface_errors: AtomicU64,
    /// A recent copy of the exception path's pipeline counters (drops by reason, and what
    /// it sent per port and tunnel).
    pub pipeline: Mutex<Counters>,
    /// The in-tunnel probes: each probed tunnel's health, and the changes not yet acted on.
    pub probes: Mutex<super::health::ProbeBoard>,
}

impl HostCounters {
    /// Every counter but the pipeline's, by name.
    pub fn named(&self) -> [(&'static str, u64); 11] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("to_host", n(&self.to_host)),
            ("to_host_bytes", n(&self.to_host_bytes)),
            ("to_host_failed", n(&self.to_host_failed)),
            ("from_host", n(&self.from_host)),
            ("from_host_bytes", n(&self.from_host_bytes)),
            ("from_host_sent", n(&self.from_host_sent)),
            ("from_host_dropped", n(&self.from_host_dropped)),
            ("from_host_tx_failed", n(&self.from_host_tx_failed)),
            ("from_host_no_mbuf", n(&self.from_host_no_mbuf)),
            ("interfaces", n(&self.interfaces)),
            ("interface_errors", n(&self.interface_errors)),
        ]
    }
}

/// Every counter the control API shows, summed over the workers, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub counters: Counters,
    pub tx: PortTx,
    /// Per port, configuration order.
    pub health: Vec<PortHealth>,
}

/// The counters at the last `clear_counters`, and when.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub totals: Totals,
    /// The snapshot generation when they were cleared.
    pub generation: u64,
    pub at: std::time::SystemTime,
}

impl Totals {
    /// These counters less `base` (each counter at least 0: a tunnel that was removed and
    /// another added in its slot starts again from 0).
    pub fn since(&self, base: &Totals) -> Totals {
        let mut out = self.clone();
        let c = &mut out.counters;
        let b = &base.counters;
        for (x, y) in c.drops.iter_mut().zip(&b.drops) {
            *x = x.saturating_sub(*y);
        }
        for (x, y) in c.events.iter_mut().zip(&b.events) {
            *x = x.saturating_sub(*y);
        }
        for (x, y) in c.punts.iter_mut().zip(&b.punts) {
            *x = x.saturating_sub(*y);
        }
        for (x, y) in c.icmp_sent.iter_mut().zip(&b.icmp_sent) {
            *x = x.saturating_sub(*y);
        }
        c.icmp_rate_limited = c.icmp_rate_limited.saturating_sub(b.icmp_rate_limited);
        c.echo_replies = c.echo_replies.saturating_sub(b.echo_replies);
        for (x, y) in c.ports.iter_mut().zip(&b.ports) {
            for (v, w) in [(&mut x.rx, &y.rx), (&mut x.tx, &y.tx)] {
                v.packets = v.packets.saturating_sub(w.packets);
                v.bytes = v.bytes.saturating_sub(w.bytes);
            }
            for (v, w) in x.drops.iter_mut().zip(&y.drops) {
                *v = v.saturating_sub(*w);
            }
        }
        for (x, y) in c.tunnel_drops.iter_mut().zip(&b.tunnel_drops) {
            for (v, w) in x.0.iter_mut().zip(&y.0) {
                *v = v.saturating_sub(*w);
            }
        }
        for (x, y) in c.tunnels.iter_mut().zip(&b.tunnels) {
            for (v, w) in [(&mut x.rx, &y.rx), (&mut x.tx, &y.tx)] {
                v.packets = v.packets.saturating_sub(w.packets);
                v.bytes = v.bytes.saturating_sub(w.bytes);
            }
        }
        for (x, y) in [
            (&mut out.tx.sent, &base.tx.sent),
            (&mut out.tx.dropped, &base.tx.dropped),
        ] {
            for (v, w) in x.iter_mut().zip(y.iter()) {
                *v = v.saturating_sub(*w);
            }
        }
        for (h, b) in out.health.iter_mut().zip(&base.health) {
            for (v, w) in [
                (&mut h.rx_packets, b.rx_packets),
                (&mut h.rx_bytes, b.rx_bytes),
                (&mut h.tx_packets, b.tx_packets),
                (&mut h.tx_bytes, b.tx_bytes),
                (&mut h.rx_errors, b.rx_errors),
                (&mut h.rx_missed, b.rx_missed),
                (&mut h.rx_no_mbuf, b.rx_no_mbuf),
                (&mut h.tx_errors, b.tx_errors),
                (&mut h.link_changes, b.link_changes),
            ] {
                *v = v.saturating_sub(w);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::DropReason;

    #[test]
    fn a_baseline_is_subtracted_and_never_goes_below_zero() {
        let mut now = Totals::default();
        now.counters.fit(2, 2);
        now.counters.drops[DropReason::NoRoute as usize] = 10;
        now.counters.tunnels[1].tx.packets = 7;
        now.tx.sent = vec![5, 9];
        now.health = vec![PortHealth {
            rx_packets: 100,
            ..PortHealth::default()
        }];
        let mut base = now.clone();
        base.counters.tunnels[1].tx.packets = 9; // a tunnel replaced in that slot
        base.counters.drops[DropReason::NoRoute as usize] = 4;
        now.counters
            .count_drop(0, Some(crate::tables::TunnelId(1)), DropReason::Hairpin);
        now.counters.count_drop(1, None, DropReason::Martian);
        base.tx.sent = vec![5];
        base.health[0].rx_packets = 60;
        let d = now.since(&base);
        assert_eq!(d.counters.drop_count(DropReason::NoRoute), 6);
        assert_eq!(d.counters.tunnels[1].tx.packets, 0);
        assert_eq!(d.tx.sent, vec![0, 9]);
        assert_eq!(d.health[0].rx_packets, 40);
        // Counted after the baseline: whole.
        assert_eq!(d.counters.tunnel_drops[1].get(DropReason::Hairpin), 1);
        assert_eq!(d.counters.ports[1].drops[DropReason::Martian as usize], 1);
    }
}
