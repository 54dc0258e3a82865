//! The metrics endpoint: `GET /metrics` in the Prometheus text format (version 0.0.4),
//! or OpenMetrics 1.0 for a client that asks for it (`Accept:
//! application/openmetrics-text`, as Prometheus does). Written with `prometheus-client`.
//!
//! Every scrape reads what the control API reads (the workers' latest copies of their
//! counters, the ports' device counters and links as the control thread last read them,
//! the control thread's own counters) and reports the counters since start: `ctl counters
//! clear` does not touch them, so they only ever grow, as Prometheus expects. The names
//! and their meaning are listed in docs/COUNTERS.md.
//!
//! The server is deliberately small: HTTP/1.0-style, one request per connection, answered
//! from the thread that accepts it (a scrape is a few microseconds of work per tunnel), a
//! request head of at most 8 KiB read within 5 s. Bind it to a loopback or management
//! address: it has no authentication.

use super::server::{self, Live};
use super::state::ControlState;
use crate::pipeline::{DropReason, Event, IcmpKind, PuntReason};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One metric family: name (without `_total`), help, type, and its series.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    series: Vec<(Vec<(&'static str, String)>, u64)>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    /// A counter of seconds, its series' values in microseconds.
    MicrosAsSeconds,
    Gauge,
    Info,
}

/// What one scrape found, ready to encode.
#[derive(Debug, Default)]
struct Sample {
    families: Vec<Family>,
}

impl Sample {
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        self.families.push(Family {
            name,
            help,
            kind,
            series: Vec::new(),
        });
        let last = self.families.len() - 1;
        &mut self.families[last]
    }
}

impl Family {
    fn add(&mut self, labels: Vec<(&'static str, String)>, v: u64) -> &mut Self {
        self.series.push((labels, v));
        self
    }
}

impl Collector for Sample {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter | Kind::MicrosAsSeconds => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Info => MetricType::Info,
            };
            let mut family = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (labels, v) in &f.series {
                let metric = family.encode_family(labels)?;
                match f.kind {
                    Kind::Counter => ConstCounter::new(*v).encode(metric)?,
                    Kind::MicrosAsSeconds => ConstCounter::new(*v as f64 / 1e6).encode(metric)?,
                    Kind::Gauge => {
                        ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX)).encode(metric)?
                    }
                    Kind::Info => {
                        let mut metric = metric;
                        metric.encode_info(&Vec::<(&str, &str)>::new())?
                    }
                }
            }
        }
        Ok(())
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_bool().map(u64::from))
        .unwrap_or(0)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// What the appliance reports now.
fn sample(st: &ControlState, live: Live<'_>) -> Sample {
    let mut out = Sample::default();
    let status = server::status(st, live);
    out.family(
        "backbone_build",
        "The running backbone and DPDK versions, and EAL's file prefix.",
        Kind::Info,
    )
    .add(
        vec![
            ("version", s(&status["version"])),
            ("dpdk", s(&status["dpdk"])),
            ("file_prefix", s(&status["file_prefix"])),
        ],
        1,
    );
    out.family(
        "backbone_uptime_seconds",
        "Seconds since the appliance started.",
        Kind::Gauge,
    )
    .add(vec![], u(&status["uptime_s"]));

    // Generations: the newest snapshot, and where each worker is.
    out.family(
        "backbone_generation",
        "The newest table snapshot generation published.",
        Kind::Gauge,
    )
    .add(vec![], u(&status["generation"]));
    let f = out.family(
        "backbone_worker_generation",
        "The snapshot generation each worker has reached.",
        Kind::Gauge,
    );
    for (i, w) in live.workers.iter().enumerate() {
        f.add(
            vec![("worker", i.to_string())],
            w.generation.load(Ordering::Relaxed),
        );
    }
    let f = out.family(
        "backbone_worker_rx_packets",
        "Packets each worker received.",
        Kind::Counter,
    );
    for (i, w) in live.workers.iter().enumerate() {
        f.add(
            vec![("worker", i.to_string())],
            w.rx_packets.load(Ordering::Relaxed),
        );
    }
    for (name, help, field, kind) in [
        (
            "backbone_worker_polls",
            "Polls (rounds over every RX queue) each worker made.",
            0,
            Kind::Counter,
        ),
        (
            "backbone_worker_busy_polls",
            "Polls that received at least one packet: busy_polls / polls is the worker's busy share.",
            1,
            Kind::Counter,
        ),
        (
            "backbone_worker_idle_sleeps",
            "Sleeps of an idle adaptive worker ([workers] poll = \"adaptive\").",
            2,
            Kind::Counter,
        ),
        (
            "backbone_worker_idle_sleep_seconds",
            "Sleep an idle adaptive worker asked for (the kernel's timer slack comes on top).",
            3,
            Kind::MicrosAsSeconds,
        ),
    ] {
        let f = out.family(name, help, kind);
        for (i, w) in live.workers.iter().enumerate() {
            let (polls, busy, sleeps, slept) = w.polling.load();
            let v = [polls, busy, sleeps, slept][field];
            f.add(vec![("worker", i.to_string())], v);
        }
    }
    let f = out.family(
        "backbone_worker_copies_published",
        "Copies of its counters each worker published (one every 4,096 polls when the lock is free).",
        Kind::Counter,
    );
    for (i, w) in live.workers.iter().enumerate() {
        f.add(
            vec![("worker", i.to_string())],
            w.counters_copies.load(Ordering::Relaxed),
        );
    }

    // Ports.
    let ports = server::interfaces(st, live, true);
    let port_counters: [(&str, &str, &str, Kind); 15] = [
        (
            "rx_packets",
            "backbone_port_rx_packets",
            "Packets the workers received on the port.",
            Kind::Counter,
        ),
        (
            "rx_bytes",
            "backbone_port_rx_bytes",
            "Bytes the workers received on the port.",
            Kind::Counter,
        ),
        (
            "tx_packets",
            "backbone_port_tx_packets",
            "Packets the pipeline decided to send on the port.",
            Kind::Counter,
        ),
        (
            "tx_bytes",
            "backbone_port_tx_bytes",
            "Bytes the pipeline decided to send on the port.",
            Kind::Counter,
        ),
        (
            "tx_sent",
            "backbone_port_tx_sent_packets",
            "Packets the port's TX queues accepted.",
            Kind::Counter,
        ),
        (
            "tx_dropped",
            "backbone_port_tx_dropped_packets",
            "Packets the port's TX queues refused (freed).",
            Kind::Counter,
        ),
        (
            "hw_rx_packets",
            "backbone_port_device_rx_packets",
            "Packets the device received (rte_eth_stats).",
            Kind::Counter,
        ),
        (
            "hw_rx_bytes",
            "backbone_port_device_rx_bytes",
            "Bytes the device received.",
            Kind::Counter,
        ),
        (
            "hw_tx_packets",
            "backbone_port_device_tx_packets",
            "Packets the device sent.",
            Kind::Counter,
        ),
        (
            "hw_tx_bytes",
            "backbone_port_device_tx_bytes",
            "Bytes the device sent.",
            Kind::Counter,
        ),
        (
            "rx_errors",
            "backbone_port_rx_errors",
            "Erroneous packets the device received.",
            Kind::Counter,
        ),
        (
            "rx_missed",
            "backbone_port_rx_missed_packets",
            "Packets the device dropped: RX queues full.",
            Kind::Counter,
        ),
        (
            "rx_no_mbuf",
            "backbone_port_rx_no_mbuf_packets",
            "Packets lost for want of an mbuf.",
            Kind::Counter,
        ),
        (
            "tx_errors",
            "backbone_port_tx_errors",
            "Packets the device failed to send.",
            Kind::Counter,
        ),
        (
            "link_changes",
            "backbone_port_link_changes",
            "Link state changes seen.",
            Kind::Counter,
        ),
    ];
    for (key, name, help, kind) in port_counters {
        let f = out.family(name, help, kind);
        for p in &ports {
            f.add(vec![("port", s(&p["name"]))], u(&p["counters"][key]));
        }
    }
    let f = out.family(
        "backbone_port_link_up",
        "1 while the port's link is up.",
        Kind::Gauge,
    );
    for p in &ports {
        f.add(vec![("port", s(&p["name"]))], u(&p["link"]["up"]));
    }
    let f = out.family(
        "backbone_port_link_speed_bytes_per_second",
        "The link speed the driver reports (0: unknown).",
        Kind::Gauge,
    );
    for p in &ports {
        f.add(
            vec![("port", s(&p["name"]))],
            u(&p["link"]["speed_mbps"]) * 125_000,
        );
    }
    let f = out.family(
        "backbone_port_info",
        "What each port is: device, driver, MAC.",
        Kind::Gauge,
    );
    for p in &ports {
        f.add(
            vec![
                ("port", s(&p["name"])),
                ("device", s(&p["ethdev"])),
                ("driver", s(&p["driver"])),
                ("mac", s(&p["mac"])),
            ],
            1,
        );
    }

    // Tunnels.
    let tunnels = server::tunnels(st, live);
    let tunnels = tunnels.as_array().cloned().unwrap_or_default();
    let counters = server::counters(st, live, true);
    let by_name = |name: &str, key: &str| -> u64 {
        counters["tunnels"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == name)
            .map_or(0, |t| u(&t[key]))
    };
    for (key, name, help) in [
        (
            "rx_packets",
            "backbone_tunnel_rx_packets",
            "Packets received through the tunnel (terminated).",
        ),
        (
            "rx_bytes",
            "backbone_tunnel_rx_bytes",
            "Bytes received through the tunnel.",
        ),
        (
            "tx_packets",
            "backbone_tunnel_tx_packets",
            "Packets sent into the tunnel (encapsulated).",
        ),
        (
            "tx_bytes",
            "backbone_tunnel_tx_bytes",
            "Bytes sent into the tunnel.",
        ),
    ] {
        let f = out.family(name, help, Kind::Counter);
        for t in &tunnels {
            let n = s(&t["name"]);
            let v = by_name(&n, key);
            f.add(vec![("tunnel", n)], v);
        }
    }
    let f = out.family(
        "backbone_tunnel_state",
        "1 for the tunnel's state: up, unresolved (next hop's MAC unknown), link-down.",
        Kind::Gauge,
    );
    for t in &tunnels {
        for state in ["up", "unresolved", "link-down"] {
            f.add(
                vec![("tunnel", s(&t["name"])), ("state", state.to_owned())],
                u64::from(t["state"] == state),
            );
        }
    }
    let f = out.family(
        "backbone_tunnel_mtu_bytes",
        "Largest outer packet sent into the tunnel.",
        Kind::Gauge,
    );
    for t in &tunnels {
        f.add(vec![("tunnel", s(&t["name"]))], u(&t["mtu"]));
    }
    let f = out.family(
        "backbone_tunnel_path_mtu_bytes",
        "Path MTU the underlay reported for the tunnel (ICMP fragmentation needed), while it \
         holds (10 minutes): the tunnel's MTU is at most this. Absent for tunnels without one.",
        Kind::Gauge,
    );
    for t in tunnels.iter().filter(|t| t["path_mtu"].is_object()) {
        f.add(vec![("tunnel", s(&t["name"]))], u(&t["path_mtu"]["mtu"]));
    }

    // Drops per tunnel (the packets that came through it) and per port (native traffic,
    // and what no tunnel claimed): only the series that counted something, so that a
    // table of many tunnels does not make a scrape of many zeros.
    let f = out.family(
        "backbone_tunnel_dropped_packets",
        "Packets that came through the tunnel and were dropped, by reason (series appear at the first drop).",
        Kind::Counter,
    );
    for t in counters["tunnels"].as_array().into_iter().flatten() {
        for (reason, n) in t["drops"].as_object().into_iter().flatten() {
            f.add(
                vec![("tunnel", s(&t["name"])), ("reason", reason.clone())],
                u(n),
            );
        }
    }
    let f = out.family(
        "backbone_port_dropped_packets",
        "Packets received on the port and dropped that no tunnel claimed (native traffic, tunnel packets dropped before their tunnel was found), by reason (series appear at the first drop).",
        Kind::Counter,
    );
    for p in &ports {
        for (reason, n) in p["counters"]["drops"].as_object().into_iter().flatten() {
            f.add(
                vec![("port", s(&p["name"])), ("reason", reason.clone())],
                u(n),
            );
        }
    }

    // Drops, events, punts.
    let f = out.family(
        "backbone_dropped_packets",
        "Packets dropped, by reason (docs/COUNTERS.md).",
        Kind::Counter,
    );
    for r in DropReason::ALL {
        f.add(
            vec![("reason", r.name().to_owned())],
            u(&counters["drops"][r.name()]),
        );
    }
    let f = out.family(
        "backbone_pipeline_events",
        "Things the pipeline counted without dropping the packet.",
        Kind::Counter,
    );
    for e in Event::ALL {
        f.add(
            vec![("event", e.name().to_owned())],
            u(&counters["events"][e.name()]),
        );
    }
    let f = out.family(
        "backbone_punted_packets",
        "Packets for the router itself, by reason (ARP; local and local_inner: traffic for our addresses, echo requests included, which are answered; pmtu: the underlay's fragmentation needed about our tunnel packets).",
        Kind::Counter,
    );
    for p in PuntReason::ALL {
        f.add(
            vec![("reason", p.name().to_owned())],
            u(&counters["punts"][p.name()]),
        );
    }

    // The router's own ICMP.
    let f = out.family(
        "backbone_icmp_sent",
        "ICMP errors sent, by kind (SPEC.md ICMP errors).",
        Kind::Counter,
    );
    for k in IcmpKind::ALL {
        f.add(
            vec![("kind", k.name().to_owned())],
            u(&counters["icmp_sent"][k.name()]),
        );
    }
    out.family(
        "backbone_icmp_rate_limited",
        "ICMP errors the rate limit kept from being sent.",
        Kind::Counter,
    )
    .add(vec![], u(&counters["icmp_rate_limited"]));
    out.family(
        "backbone_echo_replies",
        "Echo requests to our addresses answered.",
        Kind::Counter,
    )
    .add(vec![], u(&counters["echo_replies"]));

    // ARP and the rest of the control plane.
    let c = &counters["control"];
    for (key, name, help) in [
        (
            "arp_requests",
            "backbone_arp_requests",
            "ARP requests sent for unresolved next hops.",
        ),
        (
            "arp_request_failed",
            "backbone_arp_request_failures",
            "ARP requests due that could not be sent (no mbuf, TX queue full).",
        ),
        (
            "arp_requests_deferred",
            "backbone_arp_request_deferrals",
            "Scans that left ARP requests for later: the ARP budget was spent.",
        ),
        (
            "neighbors_learned",
            "backbone_arp_neighbors_learned",
            "Neighbours learned by ARP and installed.",
        ),
        (
            "arp_unsolicited",
            "backbone_arp_unsolicited_replies",
            "ARP replies nobody asked for (ignored).",
        ),
        (
            "arp_static_kept",
            "backbone_arp_static_kept",
            "ARP packets that would have replaced a static neighbour (ignored).",
        ),
        (
            "arp_on_demand_requested",
            "backbone_arp_on_demand_requested",
            "Destinations on connected subnets taken for resolution by ARP on demand.",
        ),
        (
            "arp_on_demand_full",
            "backbone_arp_on_demand_full",
            "Destinations on connected subnets refused: the on-demand neighbour limit was reached.",
        ),
        (
            "arp_on_demand_resolved",
            "backbone_arp_on_demand_resolved",
            "Neighbours of connected subnets resolved on demand.",
        ),
        (
            "arp_on_demand_unanswered",
            "backbone_arp_on_demand_unanswered",
            "Destinations on connected subnets given up: asked for 3 s and never answered.",
        ),
        (
            "arp_on_demand_expired",
            "backbone_arp_on_demand_expired",
            "On-demand neighbours forgotten: they stopped answering, or left their connected subnet.",
        ),
        (
            "nd_solicitations",
            "backbone_nd_solicitations",
            "Neighbor Solicitations sent for IPv6 next hops (to resolve them, or to confirm them).",
        ),
        (
            "nd_solicitation_failed",
            "backbone_nd_solicitation_failures",
            "Neighbor Solicitations due that could not be sent (no mbuf, TX queue full).",
        ),
        (
            "nd_solicitations_deferred",
            "backbone_nd_solicitation_deferrals",
            "Scans that left Neighbor Solicitations for later: the budget was spent.",
        ),
        (
            "nd_learned",
            "backbone_nd_next_hops_learned",
            "IPv6 next hops learned by Neighbor Discovery (or changed to another MAC) and installed.",
        ),
        (
            "nd_unsolicited",
            "backbone_nd_unsolicited_advertisements",
            "Neighbor Advertisements for next hops nobody asked for (ignored).",
        ),
        (
            "nd_static_kept",
            "backbone_nd_static_kept",
            "Neighbor Discovery messages that would have replaced a static neighbour (ignored).",
        ),
        (
            "nd_not_override",
            "backbone_nd_not_override",
            "Answers giving another MAC for a next hop held, without the Override flag (ignored).",
        ),
        (
            "nd_no_lla",
            "backbone_nd_no_lla",
            "Answers without a target link-layer address for a next hop not held (ignored).",
        ),
        (
            "nd_unanswered",
            "backbone_nd_unanswered",
            "IPv6 next hops solicited for 3 s without an answer (still asked for).",
        ),
        (
            "nd_unreachable",
            "backbone_nd_unreachable",
            "Learned IPv6 next hops forgotten: they stopped answering their probes.",
        ),
        (
            "worker_stalls",
            "backbone_worker_stalls",
            "Alarms for a worker stuck on an old snapshot.",
        ),
        (
            "pmtu_lowered",
            "backbone_path_mtu_lowered",
            "Path MTU reports from the underlay that lowered a tunnel's MTU.",
        ),
        (
            "pmtu_ignored",
            "backbone_path_mtu_ignored",
            "Path MTU reports that changed nothing by the time the control thread took them.",
        ),
        (
            "pmtu_expired",
            "backbone_path_mtu_expired",
            "Path MTUs expired: the tunnel is back to its configured MTU.",
        ),
        (
            "tunnels_down",
            "backbone_tunnels_down",
            "Probed tunnels found down by their probes (their prefixes fall back where the tunnel says so).",
        ),
        (
            "tunnels_up",
            "backbone_tunnels_up",
            "Probed tunnels found up again by their probes.",
        ),
        (
            "reloads",
            "backbone_config_reloads",
            "Configuration reloads applied (SIGHUP, ctl reload).",
        ),
        (
            "reload_failures",
            "backbone_config_reload_failures",
            "Configuration reloads refused (the file did not validate).",
        ),
        (
            "frr_writes",
            "backbone_frr_config_writes",
            "FRR configurations written ([bgp] frr_config) after a change of the tunnels.",
        ),
        (
            "frr_reloads",
            "backbone_frr_reloads",
            "FRR configurations taken by a running FRR ([bgp] frr_reload).",
        ),
        (
            "frr_reload_failures",
            "backbone_frr_reload_failures",
            "FRR reloads that failed (tried again every 5 s).",
        ),
    ] {
        out.family(name, help, Kind::Counter)
            .add(vec![], u(&c[key]));
    }
    out.family(
        "backbone_arp_neighbors_on_demand",
        "Neighbours of connected subnets resolved on demand (state=\"resolved\") and being \
         asked for (state=\"pending\"), now.",
        Kind::Gauge,
    )
    .add(
        vec![("state", "resolved".into())],
        u(&c["neighbors_on_demand"]),
    )
    .add(
        vec![("state", "pending".into())],
        u(&c["neighbors_on_demand_pending"]),
    );
    // Routes from zebra (FPM).
    let f = &counters["fpm"];
    out.family(
        "backbone_fpm_connected",
        "1 while zebra's FPM connection is up.",
        Kind::Gauge,
    )
    .add(vec![], u(&f["connected"]));
    out.family(
        "backbone_fpm_routes",
        "Routes from zebra in the tables (active or shadowed); stale: sent over an earlier \
         connection and not yet again.",
        Kind::Gauge,
    )
    .add(vec![("state", "all".into())], u(&f["routes"]))
    .add(vec![("state", "stale".into())], u(&f["stale"]));
    for (key, name, help) in [
        (
            "connections",
            "backbone_fpm_connections",
            "FPM connections accepted from zebra.",
        ),
        (
            "frames",
            "backbone_fpm_frames",
            "FPM frames received (each one change of zebra's).",
        ),
        (
            "frames_refused",
            "backbone_fpm_frames_refused",
            "FPM frames refused whole (by kind in backbone_fpm_errors).",
        ),
        (
            "frames_cut",
            "backbone_fpm_frames_cut",
            "FPM connections that ended in the middle of a frame (nothing of it applied).",
        ),
        (
            "publications",
            "backbone_fpm_publications",
            "Table snapshots published for zebra's routes.",
        ),
        (
            "routes_added",
            "backbone_fpm_routes_added",
            "Routes from zebra added or replaced.",
        ),
        (
            "routes_removed",
            "backbone_fpm_routes_removed",
            "Routes from zebra removed.",
        ),
        (
            "removals_unknown",
            "backbone_fpm_removals_unknown",
            "Removals from zebra of routes the tables did not have.",
        ),
        (
            "routes_ignored",
            "backbone_fpm_routes_ignored",
            "Route messages of another family (IPv6) or table, left alone.",
        ),
        (
            "multipath_reduced",
            "backbone_fpm_multipath_reduced",
            "Routes with several next hops of which the first was taken.",
        ),
        (
            "stale_removed",
            "backbone_fpm_stale_removed",
            "Routes removed because zebra did not send them again within the grace period.",
        ),
    ] {
        out.family(name, help, Kind::Counter)
            .add(vec![], u(&f[key]));
    }
    let e = out.family(
        "backbone_fpm_errors",
        "FPM frames refused, and streams lost, by kind.",
        Kind::Counter,
    );
    for (kind, v) in f["errors"].as_object().into_iter().flatten() {
        e.add(vec![("kind", kind.clone())], u(v));
    }

    out.family(
        "backbone_nd_next_hops",
        "IPv6 next hops learned by Neighbor Discovery (state=\"resolved\") and being \
         asked for (state=\"pending\"), now.",
        Kind::Gauge,
    )
    .add(vec![("state", "resolved".into())], u(&c["nd_next_hops"]))
    .add(
        vec![("state", "pending".into())],
        u(&c["nd_next_hops_pending"]),
    );

    // What the workers did with ARP and Neighbor Discovery.
    let n = &counters["neighbors"];
    for (key, name, help) in [
        (
            "arp_replies",
            "backbone_arp_replies",
            "ARP requests for our addresses answered by the workers.",
        ),
        (
            "arp_learned",
            "backbone_arp_heard",
            "Neighbours heard by ARP that the workers handed to the control thread.",
        ),
        (
            "arp_learn_dropped",
            "backbone_arp_heard_dropped",
            "Neighbours heard by ARP dropped: the control thread's queue was full.",
        ),
        (
            "nd_replies",
            "backbone_nd_replies",
            "Neighbor Solicitations for our IPv6 addresses answered by the workers.",
        ),
        (
            "nd_invalid",
            "backbone_nd_invalid",
            "Neighbor Discovery messages that failed RFC 4861's validity checks (freed).",
        ),
        (
            "nd_heard",
            "backbone_nd_heard",
            "Neighbor Discovery messages about IPv6 next hops handed to the control thread.",
        ),
        (
            "nd_heard_dropped",
            "backbone_nd_heard_dropped",
            "Neighbor Discovery messages about next hops dropped: the control thread's queue was full.",
        ),
    ] {
        out.family(name, help, Kind::Counter).add(vec![], u(&n[key]));
    }

    // The exception path (host interfaces).
    let h = &counters["host"];
    for (key, name, help) in [
        (
            "queued",
            "backbone_host_queued",
            "Packets for us the workers handed to the exception path.",
        ),
        (
            "queue_full",
            "backbone_host_queue_full",
            "Packets for a host interface dropped: the exception path's queue was full.",
        ),
        (
            "to_host",
            "backbone_host_delivered",
            "Packets written into a host interface.",
        ),
        (
            "to_host_bytes",
            "backbone_host_delivered_bytes",
            "Bytes written into a host interface.",
        ),
        (
            "to_host_failed",
            "backbone_host_delivery_failures",
            "Packets for a host interface that could not be written (gone, or refused).",
        ),
        (
            "from_host",
            "backbone_host_received",
            "Packets the host sent into a host interface.",
        ),
        (
            "from_host_bytes",
            "backbone_host_received_bytes",
            "Bytes the host sent into a host interface.",
        ),
        (
            "from_host_sent",
            "backbone_host_sent",
            "Packets from the host sent on a port.",
        ),
        (
            "from_host_dropped",
            "backbone_host_dropped",
            "Packets from the host dropped by the pipeline's checks.",
        ),
        (
            "from_host_tx_failed",
            "backbone_host_tx_failures",
            "Packets from the host a TX queue refused (or no control TX queue).",
        ),
        (
            "from_host_no_mbuf",
            "backbone_host_no_mbuf",
            "Packets from the host with no mbuf to hold them.",
        ),
        (
            "interface_errors",
            "backbone_host_interface_errors",
            "Host interfaces that could not be created or configured.",
        ),
    ] {
        out.family(name, help, Kind::Counter)
            .add(vec![], u(&h[key]));
    }
    out.family(
        "backbone_host_interfaces",
        "Host interfaces (kernel TUN devices) present.",
        Kind::Gauge,
    )
    .add(vec![], u(&h["interfaces"]));
    let fam = out.family(
        "backbone_punt_dropped",
        "Packets for us that went nowhere (no host interface, or its queue full), by reason.",
        Kind::Counter,
    );
    for (reason, v) in h["punt_dropped"].as_object().into_iter().flatten() {
        fam.add(vec![("reason", reason.clone())], u(v));
    }
    let neighbors = st.list_neighbors();
    let list = neighbors.as_array().cloned().unwrap_or_default();
    let statics = list.iter().filter(|n| n["static"] == true).count() as u64;
    out.family(
        "backbone_neighbors",
        "Neighbours in the tables, static or learned by ARP.",
        Kind::Gauge,
    )
    .add(vec![("kind", "static".into())], statics)
    .add(
        vec![("kind", "learned".into())],
        list.len() as u64 - statics,
    );
    let api = &counters["api"];
    for (key, name, help) in [
        (
            "connections",
            "backbone_api_connections",
            "Control API clients accepted.",
        ),
        (
            "requests",
            "backbone_api_requests",
            "Control API requests answered.",
        ),
        (
            "errors",
            "backbone_api_errors",
            "Control API requests answered with an error (refused changes among them).",
        ),
    ] {
        out.family(name, help, Kind::Counter)
            .add(vec![], u(&api[key]));
    }
    let f = out.family(
        "backbone_api_refused_requests",
        "Control API requests refused and their connection closed.",
        Kind::Counter,
    );
    for why in ["too_long", "cut", "stalled"] {
        f.add(vec![("why", why.to_owned())], u(&api[why]));
    }
    out
}

/// The metrics now, in the Prometheus text format or (with `openmetrics`) OpenMetrics.
pub fn render(st: &ControlState, live: Live<'_>, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sample(st, live)));
    let mut text = String::new();
    let written = if openmetrics {
        prometheus_client::encoding::text::encode(&mut text, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
    };
    if written.is_err() {
        log::error!("metrics: encoding failed");
    }
    text
}

/// Largest request head read.
const MAX_HEAD: usize = 8 << 10;

/// Serve `GET /metrics` on `listener` (non-blocking) until `stop` is set.
pub fn serve(
    listener: &TcpListener,
    state: &Mutex<ControlState>,
    live: Live<'_>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, state, live) {
                    log::debug!("metrics client: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                log::warn!("metrics endpoint: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(
    mut stream: TcpStream,
    state: &Mutex<ControlState>,
    live: Live<'_>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let openmetrics = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("accept:") && l.contains("application/openmetrics-text")
    });
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET" | "HEAD", "/metrics") => {
            let body = match state.lock() {
                Ok(st) => render(&st, live, openmetrics),
                Err(_) => String::new(),
            };
            let ct = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            ("200 OK", ct, body)
        }
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">backbone metrics</a></body></html>\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n".into(),
        ),
    };
    let len = body.len();
    let body = if method == "HEAD" { "" } else { body.as_str() };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
    )?;
    stream.flush()
}
