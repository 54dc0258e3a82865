//! From a validated configuration to the snapshot builder: the one place that maps the
//! configuration's types onto the dataplane's tables.

use crate::lpm::{Ipv4Prefix, Ipv6Prefix};
use crate::tables::{
    DfPolicy, DscpPolicy, PortEntry, PortIndex, PortRoles, RouteTarget, SnapshotBuilder, TtlPolicy,
    Tunnel, TunnelMode,
};
use crate::wire::EthernetAddress;
use pipeline_config::{
    Df, Dscp, Role, RouteTarget as CfgTarget, Ttl, TunnelMode as CfgMode, ValidatedConfig,
};

/// A validated prefix as the tables take it.
pub fn prefix(net: &ipnet::Ipv4Net) -> Ipv4Prefix {
    // Validation rejected host bits; truncating only restates that.
    Ipv4Prefix::truncating(net.network(), net.prefix_len())
        .unwrap_or_else(|_| Ipv4Prefix::from(net.network()))
}

/// A validated IPv6 prefix as the tables take it.
pub fn prefix6(net: &ipnet::Ipv6Net) -> Ipv6Prefix {
    // Validation rejected host bits; truncating only restates that.
    Ipv6Prefix::truncating(net.network(), net.prefix_len())
        .unwrap_or_else(|_| Ipv6Prefix::host(net.network()))
}

/// Fill a snapshot builder from `cfg`. `ports[i]` is the DPDK port id and MAC of the
/// configuration's port `i` (the MAC the device really uses, or the configured one).
pub fn builder_from_config(
    cfg: &ValidatedConfig,
    ports: &[(PortIndex, EthernetAddress)],
) -> SnapshotBuilder {
    let mut b = SnapshotBuilder::new();
    for (p, &(id, mac)) in cfg.ports.iter().zip(ports) {
        b.port(
            id,
            PortEntry {
                mac,
                addrs: p.addresses.clone(),
                addrs6: p.addresses6.clone(),
                mtu: p.mtu,
                roles: PortRoles {
                    client: p.has_role(Role::Client),
                    core: p.has_role(Role::Core),
                    internet: p.has_role(Role::Internet),
                    lan: p.has_role(Role::Lan),
                },
                transit: p.transit,
                host_interface: p.host_interface,
            },
        );
        for n in &p.neighbors {
            b.neighbor(id, n.ip, EthernetAddress(n.mac.0));
        }
        for n in &p.neighbors6 {
            b.neighbor6(id, n.ip, EthernetAddress(n.mac.0));
        }
    }
    let port_id = |index: usize| ports.get(index).map_or(PortIndex::MAX, |p| p.0);
    for t in &cfg.tunnels {
        let mut tunnel = Tunnel::new(
            &t.name,
            match t.mode {
                CfgMode::Gre => TunnelMode::Gre,
                CfgMode::Ipip => TunnelMode::Ipip,
            },
            t.local,
            t.remote,
            port_id(t.port.index),
        );
        tunnel.key = t.key;
        tunnel.sequence = t.sequence;
        tunnel.checksum = t.checksum;
        tunnel.ttl = match t.ttl {
            Ttl::Fixed(v) => TtlPolicy::Fixed(v),
            Ttl::Inherit => TtlPolicy::Inherit,
        };
        tunnel.dscp = match t.dscp {
            Dscp::Copy => DscpPolicy::Copy,
            Dscp::Fixed(v) => DscpPolicy::Fixed(v),
        };
        tunnel.df = match t.df {
            Df::Set => DfPolicy::Set,
            Df::Copy => DfPolicy::Copy,
        };
        tunnel.next_hop = t.next_hop;
        tunnel.outer6 = t.outer6.map(|o| crate::tables::Outer6 {
            local: o.local,
            remote: o.remote,
            next_hop: o.next_hop,
        });
        tunnel.mtu = t.mtu;
        tunnel.prefixes = t.prefixes.iter().map(prefix).collect();
        tunnel.extra_sources = t.extra_sources.iter().map(prefix).collect();
        tunnel.link = t.link;
        tunnel.prefixes6 = t.prefixes6.iter().map(prefix6).collect();
        tunnel.extra_sources6 = t.extra_sources6.iter().map(prefix6).collect();
        tunnel.link6 = t.link6;
        tunnel.probe = t.probe;
        tunnel.fallback = t.fallback;
        // BGP routes the client's prefixes only where its routes reach us (FPM).
        tunnel.bgp = t.bgp.is_some() && cfg.fpm.is_some();
        tunnel.backup_of = t.backup.as_ref().map(|p| p.name.clone());
        // A client-site router probes its edges as a GRE keepalive, which an edge reflects.
        tunnel.keepalive_probe = cfg.site.is_some();
        b.tunnel(tunnel);
    }
    if let Some(site) = &cfg.site {
        b.site(site.prefixes.iter().map(prefix).collect());
    }
    for r in &cfg.routes {
        b.route(prefix(&r.prefix), route_target(&r.target, ports));
    }
    for r in &cfg.routes6 {
        b.route6(prefix6(&r.prefix), route_target(&r.target, ports));
    }
    b.icmp(crate::tables::IcmpLimit {
        rate: cfg.icmp.rate,
        burst: cfg.icmp.burst,
    });
    b
}

/// A validated route's target as the tables take it; `ports` as for [`builder_from_config`].
pub fn route_target(target: &CfgTarget, ports: &[(PortIndex, EthernetAddress)]) -> RouteTarget {
    match target {
        CfgTarget::Tunnel(t) => RouteTarget::Tunnel(t.name.clone()),
        CfgTarget::Port { port, next_hop } => RouteTarget::Native {
            port: ports.get(port.index).map_or(PortIndex::MAX, |p| p.0),
            next_hop: *next_hop,
        },
        CfgTarget::Port6 { port, next_hop } => RouteTarget::Native6 {
            port: ports.get(port.index).map_or(PortIndex::MAX, |p| p.0),
            next_hop: *next_hop,
        },
        CfgTarget::Connected { port, source } => RouteTarget::Connected {
            port: ports.get(port.index).map_or(PortIndex::MAX, |p| p.0),
            source: *source,
        },
        CfgTarget::Blackhole => RouteTarget::Blackhole,
        CfgTarget::Unreachable => RouteTarget::Unreachable,
        CfgTarget::Prohibit => RouteTarget::Prohibit,
    }
}
