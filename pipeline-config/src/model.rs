//! The validated configuration: what the dataplane takes.
//!
//! Every value here has passed [`validate`](crate::validate): names are unique, every
//! reference resolves (and carries the index of what it names, so that consumers need not
//! look names up), addresses are IPv4 unicast, prefixes have no host bits, ranges hold.

use crate::types::{Df, Dscp, MacAddr, PollMode, Role, Ttl, TunnelMode};
use ipnet::{Ipv4Net, Ipv6Net};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A configuration that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedConfig {
    /// `[eal] args`, as written, without the program name (see [`Self::eal_argv`]).
    pub eal_args: Vec<String>,
    /// `[workers] lcores`: unique lcore ids; `None` means every EAL worker lcore.
    pub worker_lcores: Option<Vec<u32>>,
    /// `[workers] poll` and `idle_sleep_max_us`: how the workers poll their queues.
    pub poll: PollConfig,
    /// The ports, in file order; [`PortRef::index`] indexes this.
    pub ports: Vec<PortConfig>,
    /// The tunnels, in file order; [`TunnelRef::index`] indexes this.
    pub tunnels: Vec<TunnelConfig>,
    /// The explicit routes, in file order. A tunnel's `prefixes` are routes too, but they
    /// stay on the tunnel.
    pub routes: Vec<RouteConfig>,
    /// The explicit routes with IPv6 prefixes, in file order (they sit among the others in
    /// the file's `[[route]]`). Their target is never [`RouteTarget::Port`] nor
    /// [`RouteTarget::Connected`]; [`RouteTarget::Port6`] is theirs only.
    pub routes6: Vec<Route6Config>,
    /// `[icmp]`: how many ICMP errors the router sends.
    pub icmp: IcmpConfig,
    /// `[fpm]`: routes from zebra's forwarding plane manager; `None`: no listener.
    pub fpm: Option<FpmConfig>,
    /// `[bgp]`: BGP with the client routers, where there is one.
    pub bgp: Option<BgpConfig>,
    /// `[health]`: the in-tunnel probes' timers.
    pub health: HealthConfig,
    /// `[site]`: the client site this router serves, on a client-site router.
    pub site: Option<SiteConfig>,
}

/// `[site]`: the client site a client-site router (CPE) serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// The site's own networks: the only sources accepted from its LAN ports, and what its
    /// BGP sessions with the carrier announce. None equal to a tunnel's source prefix.
    pub prefixes: Vec<Ipv4Net>,
}

/// `[fpm]`: where zebra's FPM connection is accepted, and how long routes learned over an
/// earlier connection wait to be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpmConfig {
    /// The TCP address to listen on.
    pub listen: std::net::SocketAddr,
    /// After zebra connects again, routes it sent before and has not sent again within this
    /// time are removed. Within [`FPM_GRACE_RANGE`](crate::FPM_GRACE_RANGE) seconds.
    pub grace: std::time::Duration,
}

/// `[health]`: how often the appliance probes a tunnel, and how many missed probes make it
/// down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    pub probe_interval_ms: u32,
    pub probe_misses: u32,
}

/// `[bgp]`: the edge's BGP with the client routers, run by FRR beside the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// Our AS number.
    pub asn: u32,
    /// The BGP router ID.
    pub router_id: Ipv4Addr,
    /// Longest prefix accepted from a client inside its own prefixes.
    pub max_prefix_len: u8,
    /// BFD transmit and receive interval, ms.
    pub bfd_interval_ms: u32,
    /// BFD detection multiplier.
    pub bfd_multiplier: u8,
    /// Where the appliance keeps FRR's configuration written, if it does.
    pub frr_config: Option<std::path::PathBuf>,
    /// How a running FRR takes a new file (`{file}`: `frr_config`), if it is told.
    pub frr_reload: Option<Vec<String>>,
    /// iBGP across the core: the route reflectors' (or other edges') addresses; empty:
    /// none.
    pub ibgp_peers: Vec<Ipv4Addr>,
    /// Our core address the iBGP sessions start from, and the next hop we announce;
    /// `Some` exactly when `ibgp_peers` is not empty.
    pub ibgp_source: Option<Ipv4Addr>,
    /// BFD on the iBGP sessions, with `bfd_interval_ms` and `bfd_multiplier`: a frozen
    /// or cut edge is found down in a second, not at the hold timer. Only with
    /// `ibgp_peers`.
    pub ibgp_bfd: bool,
}

/// A client's BGP session, inside its tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelBgp {
    /// The client router's AS number (not ours: eBGP).
    pub asn: u32,
    /// The client router's address on the tunnel's link (the session's neighbour).
    pub peer: Ipv4Addr,
    /// BFD on the session.
    pub bfd: bool,
}

/// How the workers poll (`[workers] poll`, `idle_sleep_max_us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    pub mode: PollMode,
    /// The longest sleep of an idle adaptive worker, in microseconds (within
    /// [`IDLE_SLEEP_MAX_US_RANGE`](crate::IDLE_SLEEP_MAX_US_RANGE); meaningless for busy
    /// polling).
    pub idle_sleep_max_us: u32,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            mode: PollMode::Adaptive,
            idle_sleep_max_us: crate::schema::DEFAULT_IDLE_SLEEP_MAX_US,
        }
    }
}

/// `[icmp]`: the ICMP error rate limit, a token bucket (SPEC.md "ICMP errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpConfig {
    /// Messages a second, all workers together; 0: none are sent.
    pub rate: u32,
    /// Most messages at once after a quiet spell.
    pub burst: u32,
}

impl Default for IcmpConfig {
    fn default() -> Self {
        IcmpConfig {
            rate: crate::schema::DEFAULT_ICMP_RATE,
            burst: crate::schema::DEFAULT_ICMP_BURST,
        }
    }
}

/// A port by index into [`ValidatedConfig::ports`], with its name for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortRef {
    pub index: usize,
    pub name: String,
}

/// A tunnel by index into [`ValidatedConfig::tunnels`], with its name for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelRef {
    pub index: usize,
    pub name: String,
}

/// `[[port]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Our name for the port (unique).
    pub name: String,
    /// DPDK device name, or an ethdev index written as a decimal string (unique).
    pub device: String,
    /// At least one, no repeats, in file order.
    pub roles: Vec<Role>,
    /// The MAC we use; `None`: the device's own. Unicast when set.
    pub mac: Option<MacAddr>,
    /// Our IPv4 addresses on this port (unique across all ports).
    pub addresses: Vec<Ipv4Addr>,
    /// Our IPv6 addresses on this port: global unicast (not link-local, whose address the
    /// port derives from its MAC), unique across all ports and tunnels' `link6`. Written
    /// in the same `addresses` field as the IPv4 ones.
    pub addresses6: Vec<Ipv6Addr>,
    /// Largest IP packet sent on the port, within [`PORT_MTU_RANGE`](crate::PORT_MTU_RANGE).
    pub mtu: u16,
    /// Whether packets arriving here that are not for us may be forwarded natively.
    pub transit: bool,
    /// Whether the port's own traffic (not tunnel traffic) goes to a host interface,
    /// [`PortConfig::host_interface_name`].
    pub host_interface: bool,
    /// Within [`QUEUES_RANGE`](crate::QUEUES_RANGE).
    pub rx_queues: u16,
    /// Within [`QUEUES_RANGE`](crate::QUEUES_RANGE).
    pub tx_queues: u16,
    /// Static neighbours (unique IPs, none of them ours).
    pub neighbors: Vec<NeighborConfig>,
    /// Static IPv6 neighbours (`[[port.neighbor]]` with an IPv6 `ip`; unique, not ours).
    pub neighbors6: Vec<Neighbor6Config>,
}

impl PortConfig {
    /// Whether the port carries `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// `[[port.neighbor]]`: a static ARP entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborConfig {
    pub ip: Ipv4Addr,
    /// Unicast.
    pub mac: MacAddr,
}

/// `[[port.neighbor]]` with an IPv6 `ip`: a static neighbour-cache entry (RFC 4861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor6Config {
    /// Global unicast.
    pub ip: Ipv6Addr,
    /// Unicast.
    pub mac: MacAddr,
}

/// `[[tunnel]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Unique among tunnels.
    pub name: String,
    pub mode: TunnelMode,
    /// One of our port addresses (0.0.0.0 when the endpoints are IPv6: [`Self::outer6`]).
    pub local: Ipv4Addr,
    /// Unicast, not ours. `(local, remote, mode, key)` is unique among tunnels (0.0.0.0
    /// when the endpoints are IPv6).
    pub remote: Ipv4Addr,
    /// GRE key; always `None` for IPIP.
    pub key: Option<u32>,
    /// GRE sequence numbers; always false for IPIP.
    pub sequence: bool,
    /// GRE checksum; always false for IPIP.
    pub checksum: bool,
    pub ttl: Ttl,
    pub dscp: Dscp,
    pub df: Df,
    /// Egress port.
    pub port: PortRef,
    /// Underlay next hop on the egress port (`remote` unless configured; 0.0.0.0 when the
    /// endpoints are IPv6).
    pub next_hop: Ipv4Addr,
    /// IPv6 endpoints (GRE over IPv6, RFC 7676; IP in IPv6, RFC 2473), where `local` and
    /// `remote` are IPv6 addresses: then they and the next hop live here, and the IPv4
    /// fields above are 0.0.0.0.
    pub outer6: Option<Outer6>,
    /// Largest outer packet: at most the port's MTU, at least
    /// [`MIN_INNER_MTU`](crate::MIN_INNER_MTU) plus [`Self::header_len`].
    pub mtu: u16,
    /// The client's prefixes: routed into the tunnel and accepted as inner sources.
    /// No two tunnels' source prefixes overlap.
    pub prefixes: Vec<Ipv4Net>,
    /// Further accepted inner source prefixes.
    pub extra_sources: Vec<Ipv4Net>,
    /// The client's IPv6 prefixes: routed into the tunnel and accepted as inner IPv6
    /// sources. No two tunnels' IPv6 source prefixes overlap.
    pub prefixes6: Vec<Ipv6Net>,
    /// Further accepted inner IPv6 source prefixes.
    pub extra_sources6: Vec<Ipv6Net>,
    /// Our IPv6 address inside the tunnel ([`Ipv6Net::addr`]) and the prefix that holds
    /// the client router's side: the source of ICMPv6 errors sent into the tunnel. Present
    /// whenever the tunnel accepts IPv6 sources.
    pub link6: Option<Ipv6Net>,
    /// Our address inside the tunnel ([`Ipv4Net::addr`]) and the prefix that holds the
    /// client router's side: traffic with it goes through the host interface
    /// [`TunnelConfig::host_interface_name`].
    pub link: Option<Ipv4Net>,
    /// An eBGP session with the client router inside the tunnel, where there is one.
    pub bgp: Option<TunnelBgp>,
    /// Probed by the appliance (in-tunnel probes).
    pub probe: bool,
    /// While the tunnel is down, its prefixes fall back to native forwarding.
    pub fallback: bool,
    /// The tunnel whose prefixes this one carries while that one is down (its primary,
    /// earlier in the file, itself no backup). A backup has no `prefixes` or
    /// `extra_sources` of its own: it accepts its primary's as inner sources.
    pub backup: Option<TunnelRef>,
    /// The BGP local preference of the client's routes at this edge, where set.
    pub local_pref: Option<u32>,
}

/// A tunnel's IPv6 endpoints and underlay next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outer6 {
    /// One of the egress port's IPv6 addresses.
    pub local: Ipv6Addr,
    /// Global unicast, not ours.
    pub remote: Ipv6Addr,
    /// Global unicast on the egress port's link (`remote` unless configured); resolved by
    /// the port's static IPv6 neighbours.
    pub next_hop: Ipv6Addr,
}

/// The prefix of every host interface's name: `bb-<port or tunnel name>`.
pub const HOST_INTERFACE_PREFIX: &str = "bb-";
/// The longest name a Linux interface may have (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME: usize = 15;

impl PortConfig {
    /// The host interface's name, `bb-<name>`.
    pub fn host_interface_name(&self) -> String {
        format!("{HOST_INTERFACE_PREFIX}{}", self.name)
    }
}

impl TunnelConfig {
    /// The host interface's name, `bb-<name>`.
    pub fn host_interface_name(&self) -> String {
        format!("{HOST_INTERFACE_PREFIX}{}", self.name)
    }

    /// Bytes the encapsulation adds: the outer IPv4 header (IPv6 header, 40 bytes, for
    /// IPv6 endpoints) and, for GRE, the GRE header with its optional checksum, key and
    /// sequence words.
    pub fn header_len(&self) -> u16 {
        header_len(self.mode, self.key.is_some(), self.sequence, self.checksum)
            + if self.outer6.is_some() {
                OUTER6_EXTRA
            } else {
                0
            }
    }

    /// The outer endpoints and next hop as text-ready addresses: `(local, remote,
    /// next_hop)`, IPv6 where the tunnel's endpoints are.
    pub fn endpoints(&self) -> (IpAddr, IpAddr, IpAddr) {
        match self.outer6 {
            Some(o) => (o.local.into(), o.remote.into(), o.next_hop.into()),
            None => (self.local.into(), self.remote.into(), self.next_hop.into()),
        }
    }

    /// The largest inner packet that fits: what ICMP "fragmentation needed" reports.
    pub fn inner_mtu(&self) -> u16 {
        self.mtu - self.header_len()
    }

    /// Every inner source prefix the tunnel accepts: `prefixes`, `extra_sources`, then its
    /// link's prefix (the client router's side of the link is the client's).
    pub fn source_prefixes(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.prefixes
            .iter()
            .chain(&self.extra_sources)
            .copied()
            .chain(self.link.map(|l| l.trunc()))
    }
}

impl TunnelConfig {
    /// Every inner IPv6 source prefix the tunnel accepts: `prefixes6`, `extra_sources6`,
    /// then its `link6` prefix.
    pub fn source_prefixes6(&self) -> impl Iterator<Item = Ipv6Net> + '_ {
        self.prefixes6
            .iter()
            .chain(&self.extra_sources6)
            .copied()
            .chain(self.link6.map(|l| l.trunc()))
    }
}

/// What an IPv6 outer header (40 bytes) adds over an IPv4 one (20).
pub(crate) const OUTER6_EXTRA: u16 = 20;

pub(crate) fn header_len(mode: TunnelMode, key: bool, sequence: bool, checksum: bool) -> u16 {
    const IPV4: u16 = 20;
    match mode {
        TunnelMode::Ipip => IPV4,
        TunnelMode::Gre => {
            IPV4 + 4 + 4 * (u16::from(key) + u16::from(sequence) + u16::from(checksum))
        }
    }
}

/// `[[route]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// No host bits; claimed by no other route and no tunnel's `prefixes`.
    pub prefix: Ipv4Net,
    pub target: RouteTarget,
}

/// `[[route]]` with an IPv6 prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6Config {
    /// No host bits; claimed by no other route and no tunnel's `prefixes`.
    pub prefix: Ipv6Net,
    /// Any target but [`RouteTarget::Port`] and [`RouteTarget::Connected`]: natively out
    /// of a port is [`RouteTarget::Port6`], with an IPv6 next hop.
    pub target: RouteTarget,
}

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Into a tunnel.
    Tunnel(TunnelRef),
    /// Natively out of a port toward a next hop on it.
    Port { port: PortRef, next_hop: Ipv4Addr },
    /// An IPv6 route's: natively out of a port toward an IPv6 next hop on it (global
    /// unicast, not ours), resolved by a static `[[port.neighbor]]`.
    Port6 { port: PortRef, next_hop: Ipv6Addr },
    /// Natively out of a port, each destination its own next hop (an on-link, or
    /// connected, subnet: a `port` without `next_hop`), resolved by ARP on demand and
    /// asked from `source`, the port's address inside the prefix if it has one, else its
    /// first.
    Connected { port: PortRef, source: Ipv4Addr },
    /// Dropped (`no_route`), silently.
    Blackhole,
    /// Dropped (`no_route`), answered with ICMP net unreachable (code 0).
    Unreachable,
    /// Dropped (`no_route`), answered with ICMP administratively prohibited (code 13).
    Prohibit,
}

impl ValidatedConfig {
    /// The EAL argument vector: `program` followed by [`Self::eal_args`].
    pub fn eal_argv(&self, program: &str) -> Vec<String> {
        std::iter::once(program.to_owned())
            .chain(self.eal_args.iter().cloned())
            .collect()
    }

    /// The port a reference names.
    pub fn port(&self, port: &PortRef) -> &PortConfig {
        &self.ports[port.index]
    }

    /// The tunnel a reference names.
    pub fn tunnel(&self, tunnel: &TunnelRef) -> &TunnelConfig {
        &self.tunnels[tunnel.index]
    }

    /// A human-readable account of the configuration, several lines, for `backbone check`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_summary(&mut s);
        s
    }

    fn write_summary(&self, s: &mut String) -> std::fmt::Result {
        if self.eal_args.is_empty() {
            writeln!(s, "eal: no arguments")?;
        } else {
            writeln!(s, "eal: {}", self.eal_args.join(" "))?;
        }
        match &self.worker_lcores {
            None => write!(s, "workers: every EAL worker lcore")?,
            Some(lcores) => write!(s, "workers: lcores {}", join(lcores))?,
        }
        match self.poll.mode {
            PollMode::Adaptive => writeln!(
                s,
                ", adaptive polling (idle sleeps up to {} us)",
                self.poll.idle_sleep_max_us
            )?,
            PollMode::Busy => writeln!(s, ", busy polling")?,
        }

        writeln!(s, "ports: {}", self.ports.len())?;
        for (i, p) in self.ports.iter().enumerate() {
            let mac = p
                .mac
                .map_or_else(|| "from the device".to_owned(), |m| m.to_string());
            writeln!(
                s,
                "  [{i}] {:?} device {:?}, roles {}, mac {mac}, mtu {}, transit {}, queues rx {} tx {}",
                p.name,
                p.device,
                join(&p.roles),
                p.mtu,
                if p.transit { "on" } else { "off" },
                p.rx_queues,
                p.tx_queues,
            )?;
            if !p.addresses.is_empty() {
                writeln!(s, "      addresses {}", join(&p.addresses))?;
            }
            if !p.addresses6.is_empty() {
                writeln!(s, "      IPv6 addresses {}", join(&p.addresses6))?;
            }
            for n in &p.neighbors {
                writeln!(s, "      neighbour {} at {}", n.ip, n.mac)?;
            }
            for n in &p.neighbors6 {
                writeln!(s, "      neighbour {} at {}", n.ip, n.mac)?;
            }
        }

        if let Some(site) = &self.site {
            writeln!(
                s,
                "site: a client site's router for {} (the only sources its LAN ports accept)",
                join(&site.prefixes)
            )?;
        }
        writeln!(s, "tunnels: {}", self.tunnels.len())?;
        for (i, t) in self.tunnels.iter().enumerate() {
            let mut mode = t.mode.to_string();
            if let Some(key) = t.key {
                let _ = write!(mode, " key {key}");
            }
            if t.sequence {
                mode.push_str(" sequence");
            }
            if t.checksum {
                mode.push_str(" checksum");
            }
            writeln!(
                s,
                "  [{i}] {:?} {mode}, {} -> {}, via {:?} next hop {}, mtu {} (inner {}), ttl {}, dscp {}, df {}",
                t.name,
                t.endpoints().0,
                t.endpoints().1,
                t.port.name,
                t.endpoints().2,
                t.mtu,
                t.inner_mtu(),
                t.ttl,
                t.dscp,
                t.df,
            )?;
            if !t.prefixes.is_empty() {
                writeln!(s, "      prefixes {}", join(&t.prefixes))?;
            }
            if !t.extra_sources.is_empty() {
                writeln!(s, "      extra sources {}", join(&t.extra_sources))?;
            }
            if let Some(p) = &t.backup {
                writeln!(
                    s,
                    "      backup of {:?}: carries its prefixes while it is down",
                    p.name
                )?;
            }
            if !t.prefixes6.is_empty() {
                writeln!(s, "      prefixes {}", join(&t.prefixes6))?;
            }
            if !t.extra_sources6.is_empty() {
                writeln!(s, "      extra sources {}", join(&t.extra_sources6))?;
            }
            if let Some(l) = t.link6 {
                writeln!(s, "      link6 {l}")?;
            }
        }

        let (mut tunnel, mut port, mut blackhole, mut refused) = (0, 0, 0, 0);
        for r in &self.routes {
            match r.target {
                RouteTarget::Tunnel(_) => tunnel += 1,
                RouteTarget::Port { .. }
                | RouteTarget::Port6 { .. }
                | RouteTarget::Connected { .. } => port += 1,
                RouteTarget::Blackhole => blackhole += 1,
                RouteTarget::Unreachable | RouteTarget::Prohibit => refused += 1,
            }
        }
        for r in &self.routes6 {
            match r.target {
                RouteTarget::Tunnel(_) => tunnel += 1,
                RouteTarget::Port { .. }
                | RouteTarget::Port6 { .. }
                | RouteTarget::Connected { .. } => port += 1,
                RouteTarget::Blackhole => blackhole += 1,
                RouteTarget::Unreachable | RouteTarget::Prohibit => refused += 1,
            }
        }
        let client: usize = self
            .tunnels
            .iter()
            .map(|t| t.prefixes.len() + t.prefixes6.len())
            .sum();
        let refused = if refused > 0 {
            format!(", {refused} unreachable or prohibit")
        } else {
            String::new()
        };
        writeln!(
            s,
            "routes: {} ({tunnel} to tunnels, {port} to ports, {blackhole} blackhole{refused}) and {client} tunnel prefixes",
            self.routes.len() + self.routes6.len()
        )?;
        writeln!(
            s,
            "icmp: errors at most {} a second, bursts of {}",
            self.icmp.rate, self.icmp.burst
        )?;
        match &self.fpm {
            Some(f) => writeln!(
                s,
                "fpm: zebra's routes accepted on {}, grace {} s",
                f.listen,
                f.grace.as_secs()
            ),
            None => writeln!(s, "fpm: off"),
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
