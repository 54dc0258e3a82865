//! The snapshot: every table a worker reads for one burst, immutable once built.
//!
//! A [`SnapshotBuilder`] holds the configuration (ports, tunnels, routes, neighbours) and
//! validates it as a whole in [`SnapshotBuilder::build`]: nothing half-valid reaches a
//! worker, and every error names the offending item. Per-tunnel state that must survive a
//! rebuild (GRE sequence numbers) is carried from one snapshot to the next by tunnel name.

use super::tunnel::{
    Tunnel, TunnelEntry, TunnelId, TunnelKey, TunnelMode, TunnelState, TunnelTable,
};
use super::PortIndex;
use crate::lpm::{
    Ipv4Lpm, Ipv4LpmBuilder, Ipv4Prefix, Ipv6Lpm, Ipv6LpmBuilder, Ipv6Prefix, NextHop,
};
use crate::wire::EthernetAddress;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use thiserror::Error;

/// What a port faces. One port may have several roles in a small lab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRoles {
    /// Client routers: tunnels arrive here.
    pub client: bool,
    /// Other edge routers of the backbone.
    pub core: bool,
    /// Best-effort native transit (a client-site router's WAN).
    pub internet: bool,
    /// A client site's hosts (on a client-site router): native packets arriving here must
    /// come from the site's own prefixes ([`SnapshotBuilder::site`]).
    pub lan: bool,
}

/// A port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    pub mac: EthernetAddress,
    /// Our addresses on this port (tunnel endpoints among them).
    pub addrs: Vec<Ipv4Addr>,
    /// Our global IPv6 addresses on this port (the link-local one is
    /// [`PortEntry::link_local`]): Neighbor Solicitations for them are answered.
    pub addrs6: Vec<Ipv6Addr>,
    /// Largest IP packet the port sends.
    pub mtu: u16,
    pub roles: PortRoles,
    /// Whether packets arriving here that are not for us may be forwarded natively.
    pub transit: bool,
    /// Whether the port has a host interface (`bb-<port>`): packets for our addresses here
    /// that are not tunnel traffic go to the host kernel through it.
    pub host_interface: bool,
}

impl PortEntry {
    /// A client port (MTU 1500, no IPv6 addresses, not transit, no host interface) with
    /// this MAC and these addresses: what tests and benchmarks build their labs from,
    /// changing what they need with struct update syntax.
    pub fn client(mac: EthernetAddress, addrs: Vec<Ipv4Addr>) -> PortEntry {
        PortEntry {
            mac,
            addrs,
            addrs6: Vec::new(),
            mtu: 1500,
            roles: PortRoles {
                client: true,
                ..PortRoles::default()
            },
            transit: false,
            host_interface: false,
        }
    }
}

impl PortEntry {
    /// The port's IPv6 link-local address, from its MAC (modified EUI-64).
    #[inline]
    pub fn link_local(&self) -> Ipv6Addr {
        crate::wire::nd::link_local(self.mac)
    }

    /// Whether `addr` is one of the port's IPv6 addresses, its link-local one included.
    #[inline]
    pub fn has_addr6(&self, addr: Ipv6Addr) -> bool {
        addr == self.link_local() || self.addrs6.contains(&addr)
    }

    /// Our address to solicit the IPv6 next hop `next_hop` from: the port's first global
    /// address, or its link-local one when the next hop is link-local or the port has no
    /// global address. A link-local next hop (what routers announce themselves by, RFC
    /// 4861 6.1.2, and what FRR's routes name) may hold no address in our global prefixes;
    /// asked from our link-local address it answers within the link's own scope (RFC 4291
    /// 2.5.6), as it would any router on the link. A global next hop is asked from a global
    /// address, the one it is likely to hear from us again.
    #[inline]
    pub fn solicit_from(&self, next_hop: Ipv6Addr) -> Ipv6Addr {
        match self.addrs6.first() {
            // fe80::/10 (RFC 4291 2.5.6).
            Some(&global) if next_hop.segments()[0] & 0xffc0 != 0xfe80 => global,
            _ => self.link_local(),
        }
    }
}

/// Where a route sends packets (as configured, by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Into a tunnel, by name.
    Tunnel(String),
    /// Natively out of a port toward a next hop.
    Native { port: PortIndex, next_hop: Ipv4Addr },
    /// Natively out of a port, each destination its own next hop (a connected subnet),
    /// resolved by ARP on demand, asked from `source` (one of the port's addresses).
    Connected { port: PortIndex, source: Ipv4Addr },
    /// An IPv6 route's: natively out of a port toward an IPv6 next hop, whose MAC comes
    /// from the IPv6 neighbours ([`SnapshotBuilder::neighbor6`]).
    Native6 { port: PortIndex, next_hop: Ipv6Addr },
    /// Dropped as `no_route`, silently.
    Blackhole,
    /// Dropped as `no_route`, answered with ICMP net unreachable.
    Unreachable,
    /// Dropped as `no_route`, answered with ICMP administratively prohibited.
    Prohibit,
}

/// Where a route sends packets (resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Tunnel(TunnelId),
    Native {
        port: PortIndex,
        src_mac: EthernetAddress,
        dst_mac: Option<EthernetAddress>,
        mtu: u16,
    },
    /// Natively out of `port` to the packet's own destination, whose MAC is looked up per
    /// packet in the neighbours ([`Snapshot::neighbor`]); unknown: dropped as
    /// `no_neighbor` and handed to the control thread to resolve, asked from `source`.
    Connected {
        port: PortIndex,
        src_mac: EthernetAddress,
        mtu: u16,
        source: Ipv4Addr,
    },
    Blackhole,
    Unreachable,
    Prohibit,
}

/// Why a configuration cannot become a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("tunnel {0:?} is defined twice")]
    DuplicateTunnel(String),
    #[error("tunnel {tunnel:?}: local {local} is not one of our port addresses")]
    LocalNotOurs { tunnel: String, local: Ipv4Addr },
    #[error("tunnel {tunnel:?}: egress port {port} is not configured")]
    UnknownTunnelPort { tunnel: String, port: PortIndex },
    #[error("tunnels {first:?} and {second:?} have the same local, remote, mode and key")]
    DuplicateTunnelKey { first: String, second: String },
    #[error("tunnel {tunnel:?}: {field} is for GRE tunnels only")]
    GreOnly { tunnel: String, field: &'static str },
    #[error("tunnel {tunnel:?}: mtu {mtu} leaves no room for a 68-byte inner packet")]
    MtuTooSmall { tunnel: String, mtu: u16 },
    #[error("tunnel {tunnel:?}: remote {remote} is not a unicast address")]
    BadRemote { tunnel: String, remote: Ipv4Addr },
    #[error("tunnel {tunnel:?}: local {local} is not one of its port's IPv6 addresses")]
    Local6NotOnPort { tunnel: String, local: Ipv6Addr },
    #[error("tunnel {tunnel:?}: remote {remote} is not a global unicast address")]
    BadRemote6 { tunnel: String, remote: Ipv6Addr },
    #[error("route {prefix}: tunnel {tunnel:?} does not exist")]
    RouteToUnknownTunnel { prefix: Ipv4Prefix, tunnel: String },
    #[error("route {prefix}: port {port} is not configured")]
    RouteToUnknownPort { prefix: Ipv4Prefix, port: PortIndex },
    #[error("prefix {prefix} is claimed by both {first} and {second}")]
    DuplicatePrefix {
        prefix: Ipv4Prefix,
        first: String,
        second: String,
    },
    #[error("source prefix {prefix} is claimed by both tunnel {first:?} and tunnel {second:?}")]
    DuplicateSource {
        prefix: Ipv4Prefix,
        first: String,
        second: String,
    },
    #[error("address {addr} is configured on ports {first} and {second}")]
    DuplicateAddress {
        addr: Ipv4Addr,
        first: PortIndex,
        second: PortIndex,
    },
    #[error(
        "route {prefix} into tunnel {into:?} would carry tunnel {tunnel:?}'s own remote \
         {remote}; a tunnel's remote must not be reached through a tunnel"
    )]
    RemoteThroughTunnel {
        prefix: Ipv4Prefix,
        tunnel: String,
        remote: Ipv4Addr,
        into: String,
    },
    #[error(
        "tunnel {tunnel:?}: backup of {primary:?}, which is no tunnel of its own (missing, or \
         itself a backup), or the backup has prefixes of its own"
    )]
    BadBackup { tunnel: String, primary: String },
    #[error("too many tunnels and routes for the next-hop space")]
    TooMany,
    #[error("route {prefix}: tunnel {tunnel:?} does not exist")]
    Route6ToUnknownTunnel { prefix: Ipv6Prefix, tunnel: String },
    #[error("route {prefix}: native IPv6 forwarding (a port, with or without next hop) does not exist yet")]
    Route6Native { prefix: Ipv6Prefix },
    #[error("prefix {prefix} is claimed by both {first} and {second}")]
    DuplicatePrefix6 {
        prefix: Ipv6Prefix,
        first: String,
        second: String,
    },
    #[error("source prefix {prefix} is claimed by both tunnel {first:?} and tunnel {second:?}")]
    DuplicateSource6 {
        prefix: Ipv6Prefix,
        first: String,
        second: String,
    },
}

/// The next hops of IPv6 routes that are not tunnels (tunnels use their slot, below
/// `OTHER_BASE`; native IPv6 targets do not exist).
const V6_BLACKHOLE: u32 = NextHop::MAX.index();
const V6_UNREACHABLE: u32 = NextHop::MAX.index() - 1;
const V6_PROHIBIT: u32 = NextHop::MAX.index() - 2;

/// Every table a worker reads for one burst. Immutable; shared through `Arc`.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    ports: Vec<Option<PortEntry>>,
    /// Our addresses, sorted (host order).
    local: Vec<u32>,
    /// The same when there are 1 to 8 of them, padded with copies of the first: a
    /// fixed-size array the compiler compares in a few vector instructions.
    local_few: Option<[u32; 8]>,
    /// The tunnels (shared with the snapshots before and after while no tunnel or
    /// neighbour changes, as are the parts below that route changes leave alone).
    tunnels: Arc<TunnelTable>,
    routes: Ipv4Lpm,
    /// Route targets other than tunnels, at next-hop index `OTHER_BASE + i`.
    others: Arc<[Target]>,
    /// Inner source prefix -> owning tunnel id (longest match). Each of our addresses
    /// that a tunnel's or the site's prefixes hold is a /32 of its own, its owner's value
    /// with [`LOCAL_SOURCE`] set: see [`Snapshot::source_owned_by`].
    sources: Ipv4Lpm,
    /// The IPv6 route table (next hops index [`Snapshot::target6`]).
    routes6: Ipv6Lpm,
    /// IPv6 native targets, at next-hop index `OTHER_BASE + i` of the IPv6 table.
    others6: Arc<[Target]>,
    /// Inner IPv6 source prefix -> owning tunnel id (longest match).
    sources6: Ipv6Lpm,
    /// Every neighbour known (static or learned).
    neighbors: Arc<HashMap<(PortIndex, Ipv4Addr), EthernetAddress>>,
    /// The next hops routes and tunnels need, each with the port address to ask from.
    wanted: Arc<[(PortIndex, Ipv4Addr, Ipv4Addr)]>,
    /// Every IPv6 neighbour known (static or learned).
    neighbors6: Arc<HashMap<(PortIndex, Ipv6Addr), EthernetAddress>>,
    /// The IPv6 next hops routes need, each with the port address to solicit from.
    wanted6: Arc<[(PortIndex, Ipv6Addr, Ipv6Addr)]>,
    /// How many ICMP errors the router sends.
    icmp: IcmpLimit,
}

/// The ICMP error rate limit: a token bucket over all workers (SPEC.md "ICMP errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpLimit {
    /// Messages a second, all workers together; 0: none.
    pub rate: u32,
    /// Most messages at once after a quiet spell, all workers together.
    pub burst: u32,
}

impl Default for IcmpLimit {
    /// Linux's icmp_msgs_per_sec and icmp_msgs_burst.
    fn default() -> Self {
        IcmpLimit {
            rate: 1000,
            burst: 50,
        }
    }
}

impl Snapshot {
    /// The generation number the builder gave this snapshot.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A port's entry.
    #[inline]
    pub fn port(&self, port: PortIndex) -> Option<&PortEntry> {
        self.ports.get(usize::from(port)).and_then(Option::as_ref)
    }

    /// Number of port slots (highest configured index + 1).
    pub fn port_slots(&self) -> usize {
        self.ports.len()
    }

    /// Whether `addr` (host order) is one of our addresses.
    #[inline(always)]
    pub fn is_local(&self, addr: u32) -> bool {
        // A handful of addresses: compared all at once, no branch per address.
        match &self.local_few {
            Some(few) => few.iter().fold(false, |found, &a| found | (a == addr)),
            None => self.local.binary_search(&addr).is_ok(),
        }
    }

    /// The tunnels.
    #[inline]
    pub fn tunnels(&self) -> &TunnelTable {
        &self.tunnels
    }

    /// The route table (next hops index [`Snapshot::target`]).
    #[inline]
    pub fn routes(&self) -> &Ipv4Lpm {
        &self.routes
    }

    /// The tunnel a route's next hop leads into, if it is one (IPv4 and IPv6 routes
    /// number tunnels alike).
    #[inline(always)]
    pub fn tunnel_of(nh: NextHop) -> Option<TunnelId> {
        let i = nh.index();
        (i < OTHER_BASE).then_some(TunnelId(i))
    }

    /// What a route's next hop means.
    #[inline]
    pub fn target(&self, nh: NextHop) -> Target {
        let i = nh.index();
        if i < OTHER_BASE {
            Target::Tunnel(TunnelId(i))
        } else {
            self.others
                .get((i - OTHER_BASE) as usize)
                .copied()
                .unwrap_or(Target::Blackhole)
        }
    }

    /// The IPv6 route table (next hops index [`Snapshot::target6`]).
    #[inline]
    pub fn routes6(&self) -> &Ipv6Lpm {
        &self.routes6
    }

    /// What an IPv6 route's next hop means: a tunnel, or a drop of one kind.
    #[inline]
    pub fn target6(&self, nh: NextHop) -> Target {
        match nh.index() {
            i if i < OTHER_BASE => Target::Tunnel(TunnelId(i)),
            V6_UNREACHABLE => Target::Unreachable,
            V6_PROHIBIT => Target::Prohibit,
            V6_BLACKHOLE => Target::Blackhole,
            i => self
                .others6
                .get((i - OTHER_BASE) as usize)
                .copied()
                .unwrap_or(Target::Blackhole),
        }
    }

    /// The tunnel whose IPv6 source prefixes hold `src` (host order), by longest match.
    #[inline]
    pub fn source_owner6(&self, src: u128) -> Option<TunnelId> {
        self.sources6
            .lookup_u128(src)
            .to_option()
            .map(|nh| TunnelId(nh.index()))
    }

    /// Whether `addr` is one of our ports' global IPv6 addresses.
    #[inline]
    pub fn is_local6(&self, addr: Ipv6Addr) -> bool {
        self.ports
            .iter()
            .flatten()
            .any(|p| p.addrs6.contains(&addr))
    }

    /// The MAC of a neighbour, if known.
    #[inline]
    pub fn neighbor(&self, port: PortIndex, ip: Ipv4Addr) -> Option<EthernetAddress> {
        self.neighbors.get(&(port, ip)).copied()
    }

    /// Whether `ip` lies on a connected subnet of `port` (the route that holds it is a
    /// connected route out of `port`), and if so our address to ask ARP for it from.
    pub fn on_link(&self, port: PortIndex, ip: Ipv4Addr) -> Option<Ipv4Addr> {
        match self.routes.lookup(ip).map(|nh| self.target(nh)) {
            Some(Target::Connected {
                port: p, source, ..
            }) if p == port => Some(source),
            _ => None,
        }
    }

    /// Whether some tunnel or route forwards through `ip` on `port`. A worker asks this for
    /// every ARP packet it sees: a binary search, so a table of 100,000 next hops does not
    /// turn an ARP storm into a CPU storm.
    pub fn wants_neighbor(&self, port: PortIndex, ip: Ipv4Addr) -> bool {
        self.wanted
            .binary_search_by(|&(p, a, _)| (p, a).cmp(&(port, ip)))
            .is_ok()
    }

    /// The next hops routes and tunnels need, sorted by (port, next hop), each once, with
    /// the port address to ask from; resolved or not.
    pub fn wanted(&self) -> &[(PortIndex, Ipv4Addr, Ipv4Addr)] {
        &self.wanted
    }

    /// The MAC of an IPv6 neighbour, if known.
    #[inline]
    pub fn neighbor6(&self, port: PortIndex, ip: Ipv6Addr) -> Option<EthernetAddress> {
        self.neighbors6.get(&(port, ip)).copied()
    }

    /// Whether some route forwards through the IPv6 next hop `ip` on `port`: asked for
    /// every Neighbor Discovery message a worker hears (a binary search, as
    /// [`Self::wants_neighbor`]).
    pub fn wants_neighbor6(&self, port: PortIndex, ip: Ipv6Addr) -> bool {
        self.wanted6
            .binary_search_by(|&(p, a, _)| (p, a).cmp(&(port, ip)))
            .is_ok()
    }

    /// The IPv6 next hops routes need, sorted by (port, next hop), each once, with the
    /// port address to solicit from ([`SnapshotBuilder`]'s rule: the port's first global
    /// address, or its link-local one for a link-local next hop); resolved or not. With
    /// [`Self::wanted`], every next hop the control thread resolves.
    pub fn wanted6(&self) -> &[(PortIndex, Ipv6Addr, Ipv6Addr)] {
        &self.wanted6
    }

    /// Next hops that are needed and unknown: (port, next hop, our address to ask from).
    pub fn unresolved(&self) -> impl Iterator<Item = (PortIndex, Ipv4Addr, Ipv4Addr)> + '_ {
        self.wanted
            .iter()
            .copied()
            .filter(|&(p, ip, _)| !self.neighbors.contains_key(&(p, ip)))
    }

    /// The ICMP error rate limit.
    #[inline]
    pub fn icmp(&self) -> IcmpLimit {
        self.icmp
    }

    /// The tunnel whose source prefixes hold `src` (host order), by longest match; `None`
    /// when no tunnel's do, or when the site's own prefixes hold it more specifically.
    #[inline]
    pub fn source_owner(&self, src: u32) -> Option<TunnelId> {
        self.source_value(src)
            .filter(|&v| v != SITE_SOURCE)
            .map(TunnelId)
    }

    /// The source table's value for `src`: a tunnel's slot, [`SITE_SOURCE`], or `None`;
    /// for one of our addresses, its owner's, without [`LOCAL_SOURCE`].
    #[inline]
    fn source_value(&self, src: u32) -> Option<u32> {
        let nh = self.sources.lookup_u32(src).to_option()?;
        Some(nh.index() & !LOCAL_SOURCE)
    }

    /// Whether tunnel `id`'s source prefixes hold `src` (host order) **and `src` is not
    /// one of our addresses**: whether [`Snapshot::source_owner`] is `id` and
    /// [`Snapshot::is_local`] is false, in one compare, for the `id` of a tunnel. The fast
    /// path's one test for both; a packet from our address is a loop, which the general
    /// stages drop. (No assertion here: its dead code in a release build costs the fast
    /// path seven instructions a packet.)
    #[inline(always)]
    pub fn source_owned_by(&self, src: u32, id: TunnelId) -> bool {
        // No tunnel has the site's next hop as its slot (the build numbers none that
        // high), no slot is NONE's, and none has LOCAL_SOURCE set: our addresses' /32s
        // match no tunnel's id.
        self.sources.lookup_u32(src).index() == id.0
    }

    /// Whether `src` (host order) is the site's own (a client-site router's `[site]
    /// prefixes`, by longest match over them and the tunnels' source prefixes).
    #[inline]
    pub fn site_source(&self, src: u32) -> bool {
        self.source_value(src) == Some(SITE_SOURCE)
    }
}

/// Which layer of routes a route belongs to. A prefix routed by more than one layer is
/// routed by the one of least [distance](RouteLayer::distance), as zebra chooses among its
/// protocols by administrative distance; the others stay, shadowed, and take over when it
/// goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteLayer {
    /// A tunnel's own `prefixes` (connected).
    Tunnel,
    /// The configuration's routes: the file's and those set through the control API.
    Static,
    /// Routes from a routing daemon: zebra's, over FPM.
    Dynamic,
}

impl RouteLayer {
    /// The administrative distance: 0 for a tunnel's prefixes, 1 for the configuration's
    /// routes (zebra's distance for static routes), 20 for zebra's (eBGP's).
    pub const fn distance(self) -> u8 {
        match self {
            RouteLayer::Tunnel => 0,
            RouteLayer::Static => 1,
            RouteLayer::Dynamic => 20,
        }
    }

    /// `tunnel`, `static`, `dynamic`.
    pub const fn name(self) -> &'static str {
        match self {
            RouteLayer::Tunnel => "tunnel",
            RouteLayer::Static => "static",
            RouteLayer::Dynamic => "dynamic",
        }
    }
}

/// Collects and validates the configuration, then builds snapshots from it.
///
/// A build after changes to routes alone (static or dynamic) costs what those changes
/// touch: each changed prefix is checked and brought up to date in the route table, and
/// everything else (tunnels, sources, neighbours, the next hops to resolve) is shared with
/// the previous snapshot. A change to ports or tunnels rebuilds and revalidates everything;
/// a change to neighbours rebuilds what holds MACs (the tunnel table, the native targets).
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    ports: BTreeMap<PortIndex, PortEntry>,
    tunnels: Vec<Tunnel>,
    routes: BTreeMap<Ipv4Prefix, RouteTarget>,
    /// The configuration's IPv6 routes (no native targets).
    routes6: BTreeMap<Ipv6Prefix, RouteTarget>,
    /// Routes of the dynamic layer (a routing daemon's).
    dynamic: BTreeMap<Ipv4Prefix, RouteTarget>,
    /// IPv6 routes of the dynamic layer (into tunnels or drops).
    dynamic6: BTreeMap<Ipv6Prefix, RouteTarget>,
    neighbors: HashMap<(PortIndex, Ipv4Addr), EthernetAddress>,
    /// IPv6 neighbours (static ones from the configuration).
    neighbors6: HashMap<(PortIndex, Ipv6Addr), EthernetAddress>,
    /// The IPv6 native targets' keys, numbered in order of first use (never renumbered,
    /// so that an incremental IPv6 table build keeps meaning what it did).
    native6: Vec<(PortIndex, Ipv6Addr)>,
    icmp: IcmpLimit,
    /// The site's own prefixes (a client-site router's): the sources its LAN ports accept.
    site: Vec<Ipv4Prefix>,
    /// What changed since the last build that succeeded.
    dirty: Dirty,
    /// Path MTUs the underlay reported, by tunnel name, with the receive key of the tunnel
    /// they were reported for.
    path_mtus: HashMap<String, (TunnelKey, u16)>,
    /// What survives from one build to the next: slots, tables, tunnel state.
    kept: Kept,
}

/// What changed since the last successful build.
#[derive(Debug, Default)]
struct Dirty {
    /// Ports or tunnels: everything is rebuilt and revalidated.
    structure: bool,
    /// Neighbours: the tunnel table and native targets are rebuilt.
    neighbors: bool,
    /// Path MTUs: the tunnel table is rebuilt.
    path_mtus: bool,
    /// Prefixes whose static or dynamic route changed.
    prefixes: HashSet<Ipv4Prefix>,
    /// IPv6 routes changed (`prefixes6` says which).
    v6: bool,
    /// IPv6 prefixes whose static or dynamic route changed: only these are checked and
    /// installed again, unless the structure changed too.
    prefixes6: HashSet<Ipv6Prefix>,
}

/// What the next snapshot does to the IPv6 tables (already checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V6Build {
    /// Both tables from the tunnels and every route (a structure change, or the first).
    Whole,
    /// The route table's changed prefixes only (`Dirty::prefixes6`).
    Changed,
}

/// Route next hops at or above this index are not tunnels (tunnels use their slot).
const OTHER_BASE: u32 = 1 << 24;
/// The source table's next hop for the site's own prefixes: no tunnel's slot (slots stay
/// below it).
const SITE_SOURCE: u32 = OTHER_BASE - 1;
/// Set in the source table's value for one of our addresses (a /32 beside its owner's
/// prefix, the owner's value with this bit): no tunnel's slot, so
/// [`Snapshot::source_owned_by`] is false for it, while every other reader masks it off.
const LOCAL_SOURCE: u32 = OTHER_BASE << 1;

/// A non-tunnel route target, as the builder numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OtherKey {
    Native(PortIndex, Ipv4Addr),
    Connected(PortIndex, Ipv4Addr),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// Builder state kept across builds so that each build changes only what changed.
#[derive(Debug, Default)]
struct Kept {
    generation: u64,
    /// Tunnel name -> slot.
    slots: HashMap<String, u32>,
    next_slot: u32,
    states: HashMap<String, Arc<TunnelState>>,
    /// Non-tunnel targets, numbered from [`OTHER_BASE`] in the order of `other_keys`.
    others: HashMap<OtherKey, u32>,
    other_keys: Vec<OtherKey>,
    /// The route table's rules are the routes installed (the LPM builder holds them).
    routes: Ipv4LpmBuilder,
    sources: Ipv4LpmBuilder,
    sources_installed: HashMap<Ipv4Prefix, NextHop>,
    /// The tunnels' own prefixes, each with its tunnel's slot and position in `tunnels`.
    tunnel_routes: HashMap<Ipv4Prefix, (u32, usize)>,
    /// The tunnels' remotes (host order) with the tunnel's position, sorted.
    remotes: Vec<(u32, usize)>,
    /// How many installed routes send natively to each (port, next hop).
    hops: HashMap<(PortIndex, Ipv4Addr), u32>,
    // What the last snapshot shares with the next when nothing it depends on changed.
    tunnel_table: Arc<TunnelTable>,
    other_targets: Arc<[Target]>,
    sources_table: Ipv4Lpm,
    neighbors: Arc<HashMap<(PortIndex, Ipv4Addr), EthernetAddress>>,
    wanted: Arc<[(PortIndex, Ipv4Addr, Ipv4Addr)]>,
    neighbors6: Arc<HashMap<(PortIndex, Ipv6Addr), EthernetAddress>>,
    wanted6: Arc<[(PortIndex, Ipv6Addr, Ipv6Addr)]>,
    /// The IPv6 tables: rebuilt whole when tunnels or ports change; when only IPv6 routes
    /// change (the configuration's or a routing daemon's), the route table's builder takes
    /// the changed prefixes and publishes copy-on-write, so a publication of IPv6 routes
    /// from zebra costs what it changes, as IPv4's does. `None` until the first build.
    routes6: Option<Ipv6LpmBuilder>,
    routes6_table: Ipv6Lpm,
    sources6_table: Ipv6Lpm,
    /// What the next snapshot must do to the IPv6 tables (checked already).
    v6_stale: Option<V6Build>,
}

/// Non-tunnel targets numbered during a build: the kept numbering, and what this build adds.
struct OtherAlloc<'a> {
    kept: &'a HashMap<OtherKey, u32>,
    added: Vec<OtherKey>,
}

impl OtherAlloc<'_> {
    fn hop(&mut self, key: OtherKey) -> Result<NextHop, BuildError> {
        let i = match self.kept.get(&key) {
            Some(&i) => i,
            None => {
                let pos = match self.added.iter().position(|k| *k == key) {
                    Some(p) => p,
                    None => {
                        self.added.push(key);
                        self.added.len() - 1
                    }
                };
                OTHER_BASE + (self.kept.len() + pos) as u32
            }
        };
        NextHop::new(i).ok_or(BuildError::TooMany)
    }
}

/// The tunnels as a build sees them: slots by name, the tunnels' own prefixes.
struct Structure<'a> {
    slots: &'a HashMap<String, u32>,
    tunnel_routes: &'a HashMap<Ipv4Prefix, (u32, usize)>,
    remotes: &'a [(u32, usize)],
}

/// Bring `lpm` from `installed` to `wanted`, touching only the prefixes that differ.
fn sync_lpm(
    lpm: &mut Ipv4LpmBuilder,
    installed: &mut HashMap<Ipv4Prefix, NextHop>,
    wanted: HashMap<Ipv4Prefix, NextHop>,
) {
    installed.retain(|p, _| {
        let keep = wanted.contains_key(p);
        if !keep {
            lpm.remove(*p);
        }
        keep
    });
    for (p, nh) in wanted {
        if installed.insert(p, nh) != Some(nh) {
            lpm.insert(p, nh);
        }
    }
}

impl SnapshotBuilder {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a port.
    pub fn port(&mut self, index: PortIndex, entry: PortEntry) -> &mut Self {
        self.ports.insert(index, entry);
        self.dirty.structure = true;
        self
    }

    /// Add a tunnel (checked in `build`).
    pub fn tunnel(&mut self, tunnel: Tunnel) -> &mut Self {
        self.tunnels.push(tunnel);
        self.dirty.structure = true;
        self
    }

    /// Remove a tunnel by name; returns whether it existed.
    pub fn remove_tunnel(&mut self, name: &str) -> bool {
        let before = self.tunnels.len();
        self.tunnels.retain(|t| t.name != name);
        self.dirty.structure = true;
        before != self.tunnels.len()
    }

    /// Mark a tunnel down or up (its health); returns whether that changed anything. A
    /// tunnel that falls back stops or starts routing its prefixes with the next build.
    pub fn set_tunnel_down(&mut self, name: &str, down: bool) -> bool {
        match self.tunnels.iter_mut().find(|t| t.name == name) {
            Some(t) if t.down != down => {
                t.down = down;
                // Its prefixes move between the tunnel layer and what else covers them:
                // the structure's build brings the routes up to date.
                self.dirty.structure = true;
                true
            }
            _ => false,
        }
    }

    /// The site's own prefixes (a client-site router's `[site] prefixes`): the only sources
    /// accepted from LAN ports, and never accepted from a tunnel (where a tunnel's source
    /// prefix covers them, the longer match is the site's).
    pub fn site(&mut self, prefixes: Vec<Ipv4Prefix>) -> &mut Self {
        if self.site != prefixes {
            self.site = prefixes;
            self.dirty.structure = true;
        }
        self
    }

    /// The site's own prefixes.
    pub fn site_prefixes(&self) -> &[Ipv4Prefix] {
        &self.site
    }

    /// Add or replace a route of the configuration (the static layer).
    pub fn route(&mut self, prefix: Ipv4Prefix, target: RouteTarget) -> &mut Self {
        if self.routes.get(&prefix) != Some(&target) {
            self.routes.insert(prefix, target);
            self.dirty.prefixes.insert(prefix);
        }
        self
    }

    /// Add or replace an IPv6 route of the configuration (a tunnel or a drop; a native
    /// target is refused by `build`).
    pub fn route6(&mut self, prefix: Ipv6Prefix, target: RouteTarget) -> &mut Self {
        if let RouteTarget::Native6 { port, next_hop } = target {
            if !self.native6.contains(&(port, next_hop)) {
                self.native6.push((port, next_hop));
            }
        }
        if self.routes6.get(&prefix) != Some(&target) {
            self.routes6.insert(prefix, target);
            self.dirty.v6 = true;
            self.dirty.prefixes6.insert(prefix);
        }
        self
    }

    /// Remove an IPv6 route of the configuration; returns whether it existed.
    pub fn remove_route6(&mut self, prefix: Ipv6Prefix) -> bool {
        let had = self.routes6.remove(&prefix).is_some();
        if had {
            self.dirty.v6 = true;
            self.dirty.prefixes6.insert(prefix);
        }
        had
    }

    /// The configuration's IPv6 routes.
    pub fn routes6(&self) -> &BTreeMap<Ipv6Prefix, RouteTarget> {
        &self.routes6
    }

    /// Remove a route of the configuration; returns whether it existed.
    pub fn remove_route(&mut self, prefix: Ipv4Prefix) -> bool {
        let had = self.routes.remove(&prefix).is_some();
        if had {
            self.dirty.prefixes.insert(prefix);
        }
        had
    }

    /// Add or replace a route of the dynamic layer (a routing daemon's); returns the one
    /// it replaces.
    pub fn dynamic_route(
        &mut self,
        prefix: Ipv4Prefix,
        target: RouteTarget,
    ) -> Option<RouteTarget> {
        let old = self.dynamic.insert(prefix, target);
        if old.as_ref() != self.dynamic.get(&prefix) {
            self.dirty.prefixes.insert(prefix);
        }
        old
    }

    /// Remove a route of the dynamic layer; returns it.
    pub fn remove_dynamic_route(&mut self, prefix: Ipv4Prefix) -> Option<RouteTarget> {
        let old = self.dynamic.remove(&prefix);
        if old.is_some() {
            self.dirty.prefixes.insert(prefix);
        }
        old
    }

    /// Add or replace an IPv6 route of the dynamic layer (a routing daemon's); returns the
    /// one it replaces. A native target is refused by `check6` and `build`.
    pub fn dynamic_route6(
        &mut self,
        prefix: Ipv6Prefix,
        target: RouteTarget,
    ) -> Option<RouteTarget> {
        let old = self.dynamic6.insert(prefix, target);
        if old.as_ref() != self.dynamic6.get(&prefix) {
            self.dirty.v6 = true;
            self.dirty.prefixes6.insert(prefix);
        }
        old
    }

    /// Remove an IPv6 route of the dynamic layer; returns it.
    pub fn remove_dynamic_route6(&mut self, prefix: Ipv6Prefix) -> Option<RouteTarget> {
        let old = self.dynamic6.remove(&prefix);
        if old.is_some() {
            self.dirty.v6 = true;
            self.dirty.prefixes6.insert(prefix);
        }
        old
    }

    /// The IPv6 routes of the dynamic layer.
    pub fn dynamic_routes6(&self) -> &BTreeMap<Ipv6Prefix, RouteTarget> {
        &self.dynamic6
    }

    /// [`Self::installed_layer`] for an IPv6 prefix: the layer whose route for exactly
    /// `prefix` the tables hold.
    pub fn installed_layer6(&self, prefix: Ipv6Prefix) -> Option<RouteLayer> {
        if self
            .tunnels
            .iter()
            .any(|t| t.routes_its_prefixes6() && t.prefixes6.contains(&prefix))
        {
            Some(RouteLayer::Tunnel)
        } else if self.routes6.contains_key(&prefix) {
            Some(RouteLayer::Static)
        } else if self.dynamic6.contains_key(&prefix) {
            Some(RouteLayer::Dynamic)
        } else {
            None
        }
    }

    /// Check the IPv6 dynamic routes for `prefixes` as the next build will (the tunnel
    /// each goes into exists; no native target), without building.
    pub fn check6(&self, prefixes: &[Ipv6Prefix]) -> Result<(), BuildError> {
        let names = self.tunnel_names();
        for &p in prefixes {
            if let Some(t) = self.dynamic6.get(&p) {
                Self::check_target6(&names, p, t)?;
            }
        }
        Ok(())
    }

    /// The tunnels' names, for [`Self::check_target6`].
    fn tunnel_names(&self) -> HashSet<&str> {
        self.tunnels.iter().map(|t| t.name.as_str()).collect()
    }

    fn check_target6(
        names: &HashSet<&str>,
        prefix: Ipv6Prefix,
        target: &RouteTarget,
    ) -> Result<(), BuildError> {
        match target {
            RouteTarget::Tunnel(name) if !names.contains(name.as_str()) => {
                Err(BuildError::Route6ToUnknownTunnel {
                    prefix,
                    tunnel: name.clone(),
                })
            }
            RouteTarget::Native { .. } | RouteTarget::Connected { .. } => {
                Err(BuildError::Route6Native { prefix })
            }
            _ => Ok(()),
        }
    }

    /// Add or replace an IPv6 neighbour (IP to MAC on a port).
    pub fn neighbor6(&mut self, port: PortIndex, ip: Ipv6Addr, mac: EthernetAddress) -> &mut Self {
        if self.neighbors6.insert((port, ip), mac) != Some(mac) {
            self.dirty.neighbors = true;
        }
        self
    }

    /// Add or replace a neighbour (IP to MAC on a port).
    pub fn neighbor(&mut self, port: PortIndex, ip: Ipv4Addr, mac: EthernetAddress) -> &mut Self {
        if self.neighbors.insert((port, ip), mac) != Some(mac) {
            self.dirty.neighbors = true;
        }
        self
    }

    /// Remove an IPv6 neighbour; returns whether it was there.
    pub fn remove_neighbor6(&mut self, port: PortIndex, ip: Ipv6Addr) -> bool {
        let had = self.neighbors6.remove(&(port, ip)).is_some();
        self.dirty.neighbors |= had;
        had
    }

    /// Remove a neighbour; returns whether it was there.
    pub fn remove_neighbor(&mut self, port: PortIndex, ip: Ipv4Addr) -> bool {
        let had = self.neighbors.remove(&(port, ip)).is_some();
        self.dirty.neighbors |= had;
        had
    }

    /// Set the ICMP error rate limit (default: [`IcmpLimit::default`]).
    pub fn icmp(&mut self, limit: IcmpLimit) -> &mut Self {
        self.icmp = limit;
        self
    }

    /// Bound tunnel `name`'s outer MTU by a path MTU the underlay reported (ICMP
    /// fragmentation needed), as long as the tunnel is still the one with receive key `key`
    /// (a tunnel reconfigured to other addresses or another key ignores it). The tunnel's
    /// MTU becomes the lowest of its own, its port's and this one.
    pub fn path_mtu(&mut self, name: &str, key: TunnelKey, mtu: u16) -> &mut Self {
        if self.path_mtus.insert(name.to_owned(), (key, mtu)) != Some((key, mtu)) {
            self.dirty.path_mtus = true;
        }
        self
    }

    /// Forget the path MTU reported for tunnel `name`: its MTU is its own and its port's
    /// again.
    pub fn forget_path_mtu(&mut self, name: &str) -> &mut Self {
        if self.path_mtus.remove(name).is_some() {
            self.dirty.path_mtus = true;
        }
        self
    }

    /// Take another builder's configuration (ports, tunnels, routes, neighbours, ICMP
    /// limit, path MTUs) while keeping this one's state and its dynamic routes, so the next
    /// build changes only what differs.
    pub fn adopt(&mut self, other: SnapshotBuilder) {
        self.ports = other.ports;
        self.tunnels = other.tunnels;
        self.routes = other.routes;
        self.routes6 = other.routes6;
        self.neighbors = other.neighbors;
        self.neighbors6 = other.neighbors6;
        for k in other.native6 {
            if !self.native6.contains(&k) {
                self.native6.push(k);
            }
        }
        self.icmp = other.icmp;
        self.site = other.site;
        self.dirty.structure = true;
        self.dirty.neighbors = true;
        self.path_mtus = other.path_mtus;
    }

    /// The tunnels as configured.
    pub fn tunnels(&self) -> &[Tunnel] {
        &self.tunnels
    }

    /// The explicit routes as configured (the static layer).
    pub fn routes(&self) -> &BTreeMap<Ipv4Prefix, RouteTarget> {
        &self.routes
    }

    /// The routes of the dynamic layer.
    pub fn dynamic_routes(&self) -> &BTreeMap<Ipv4Prefix, RouteTarget> {
        &self.dynamic
    }

    /// The neighbours (static and learned).
    pub fn neighbors(&self) -> &HashMap<(PortIndex, Ipv4Addr), EthernetAddress> {
        &self.neighbors
    }

    /// The IPv6 neighbours (static and learned).
    pub fn neighbors6(&self) -> &HashMap<(PortIndex, Ipv6Addr), EthernetAddress> {
        &self.neighbors6
    }

    /// The tunnel that the last build routes `prefix` into as a tunnel's own prefix: the
    /// tunnel that claims it, or its backup while it is down (`None`: not routed as a
    /// tunnel's prefix now).
    pub fn tunnel_route(&self, prefix: Ipv4Prefix) -> Option<&Tunnel> {
        let &(_, i) = self.kept.tunnel_routes.get(&prefix)?;
        self.tunnels.get(i)
    }

    /// The layer whose route for `prefix` the last build installed (`None`: no route for
    /// exactly this prefix). A tunnel's prefix, a static route and a dynamic route for one
    /// prefix: the least distance wins.
    pub fn installed_layer(&self, prefix: Ipv4Prefix) -> Option<RouteLayer> {
        if self.kept.tunnel_routes.contains_key(&prefix) {
            Some(RouteLayer::Tunnel)
        } else if self.routes.contains_key(&prefix) {
            Some(RouteLayer::Static)
        } else if self.dynamic.contains_key(&prefix) {
            Some(RouteLayer::Dynamic)
        } else {
            None
        }
    }

    /// Check the routes for `prefixes` as the next build will (each target exists, no
    /// dynamic route carries a tunnel's remote into a tunnel) without building: a change
    /// can be refused on its own before it joins others in one build. Changes to ports or
    /// tunnels not built yet are not looked at (the build checks everything then).
    pub fn check(&self, prefixes: &[Ipv4Prefix]) -> Result<(), BuildError> {
        if self.dirty.structure {
            return Ok(());
        }
        let structure = Structure {
            slots: &self.kept.slots,
            tunnel_routes: &self.kept.tunnel_routes,
            remotes: &self.kept.remotes,
        };
        let mut others = OtherAlloc {
            kept: &self.kept.others,
            added: Vec::new(),
        };
        for &p in prefixes {
            self.wanted_hop(p, &structure, &mut others)?;
        }
        self.remotes_not_through_dynamic_tunnels(&structure, Some(prefixes))
    }

    /// Validate what changed and build the next snapshot. On error nothing changes: the
    /// changes stay pending, to be fixed (or undone) before the next build.
    ///
    /// Tunnels keep their slot while they exist; the route and source tables are brought
    /// up to date prefix by prefix and published copy-on-write, so the cost of a build
    /// follows the size of the change, not of the tables.
    pub fn build(&mut self) -> Result<Arc<Snapshot>, BuildError> {
        if self.dirty.structure || (self.dirty.v6 && self.kept.routes6.is_none()) {
            self.check_v6()?;
            self.kept.v6_stale = Some(V6Build::Whole);
        } else if self.dirty.v6 {
            self.check_v6_changed()?;
            self.kept.v6_stale = Some(V6Build::Changed);
        }
        let r = if self.dirty.structure {
            self.build_structure()
        } else {
            self.build_routes()
        };
        if r.is_ok() {
            self.dirty.v6 = false;
            self.dirty.prefixes6.clear();
        } else {
            self.kept.v6_stale = None;
        }
        r
    }

    /// [`Self::check_v6`] for the changed IPv6 prefixes only: tunnels and their sources
    /// did not change, so neither did what they claim.
    fn check_v6_changed(&self) -> Result<(), BuildError> {
        let names = self.tunnel_names();
        for &prefix in &self.dirty.prefixes6 {
            if let Some(target) = self.routes6.get(&prefix) {
                if let Some(t) = self.tunnels.iter().find(|t| t.prefixes6.contains(&prefix)) {
                    return Err(BuildError::DuplicatePrefix6 {
                        prefix,
                        first: format!("tunnel {:?}", t.name),
                        second: format!("route {prefix}"),
                    });
                }
                Self::check_target6(&names, prefix, target)?;
            }
            if let Some(target) = self.dynamic6.get(&prefix) {
                Self::check_target6(&names, prefix, target)?;
            }
        }
        Ok(())
    }

    /// The IPv6 side of a build, checked before anything changes: every route's tunnel
    /// exists, no prefix is claimed twice, no source prefix belongs to two tunnels.
    fn check_v6(&self) -> Result<(), BuildError> {
        let mut claimed: HashMap<Ipv6Prefix, String> = HashMap::new();
        let mut sources: HashMap<Ipv6Prefix, usize> = HashMap::new();
        for (i, t) in self.tunnels.iter().enumerate() {
            for &p in &t.prefixes6 {
                let who = format!("tunnel {:?}", t.name);
                if let Some(first) = claimed.insert(p, who.clone()) {
                    return Err(BuildError::DuplicatePrefix6 {
                        prefix: p,
                        first,
                        second: who,
                    });
                }
            }
            for p in t.source_prefixes6() {
                if let Some(first) = sources.insert(p, i) {
                    if first != i {
                        return Err(BuildError::DuplicateSource6 {
                            prefix: p,
                            first: self.tunnels[first].name.clone(),
                            second: t.name.clone(),
                        });
                    }
                }
            }
        }
        let names = self.tunnel_names();
        for (&prefix, target) in &self.routes6 {
            if let Some(first) = claimed.get(&prefix) {
                return Err(BuildError::DuplicatePrefix6 {
                    prefix,
                    first: first.clone(),
                    second: format!("route {prefix}"),
                });
            }
            Self::check_target6(&names, prefix, target)?;
        }
        // Dynamic routes are shadowed by a tunnel's prefix or a configured route for the
        // same prefix (no conflict), but must have a target.
        for (&prefix, target) in &self.dynamic6 {
            Self::check_target6(&names, prefix, target)?;
        }
        Ok(())
    }

    /// The next hop of an IPv6 route's target in the IPv6 route table (tunnels by the
    /// slots just given); `None`: no entry (a native target, refused by the checks).
    fn hop6(&self, target: &RouteTarget) -> Option<NextHop> {
        match target {
            RouteTarget::Tunnel(name) => self.kept.slots.get(name).copied(),
            RouteTarget::Unreachable => Some(V6_UNREACHABLE),
            RouteTarget::Prohibit => Some(V6_PROHIBIT),
            RouteTarget::Blackhole => Some(V6_BLACKHOLE),
            RouteTarget::Native6 { port, next_hop } => self
                .native6
                .iter()
                .position(|k| *k == (*port, *next_hop))
                .and_then(|i| u32::try_from(i).ok())
                .map(|i| OTHER_BASE + i),
            RouteTarget::Native { .. } | RouteTarget::Connected { .. } => None,
        }
        .and_then(NextHop::new)
    }

    /// The tunnels' IPv6 prefixes, each with the tunnel that carries it: its own, or
    /// while it is down its first backup that routes (as for IPv4); none while neither
    /// does.
    fn tunnel_prefixes6(&self) -> impl Iterator<Item = (Ipv6Prefix, NextHop)> + '_ {
        self.tunnels.iter().flat_map(move |t| {
            let own = self.kept.slots.get(&t.name).and_then(|&s| NextHop::new(s));
            let carrier = own.and_then(|nh| {
                if t.routes_its_prefixes6() {
                    Some(nh)
                } else {
                    self.tunnels
                        .iter()
                        .filter(|b| b.backup_of.as_deref() == Some(t.name.as_str()))
                        .find(|b| b.routes_its_prefixes6())
                        .and_then(|b| self.kept.slots.get(&b.name))
                        .and_then(|&s| NextHop::new(s))
                }
            });
            t.prefixes6
                .iter()
                .filter_map(move |&p| carrier.map(|c| (p, c)))
        })
    }

    /// The IPv6 route table's builder and the source table from the tunnels (by the slots
    /// just given) and the IPv6 routes, as [`Self::check_v6`] accepted them.
    fn build_v6(&self) -> (Ipv6LpmBuilder, Ipv6Lpm) {
        let mut routes = Ipv6LpmBuilder::new();
        let mut sources = Ipv6LpmBuilder::new();
        // The layers from the greatest distance to the least: each replaces what the one
        // before put at the same prefix (a tunnel's prefix and a configured route never
        // share one, `check_v6` refuses that). [`Self::route6_hop`] is the same order.
        for (&prefix, target) in &self.dynamic6 {
            if let Some(nh) = self.hop6(target) {
                routes.insert(prefix, nh);
            }
        }
        for (p, carrier) in self.tunnel_prefixes6() {
            routes.insert(p, carrier);
        }
        for t in &self.tunnels {
            let Some(nh) = self.kept.slots.get(&t.name).and_then(|&s| NextHop::new(s)) else {
                continue;
            };
            // A backup's sources are filed under its primary, whose it accepts.
            let owner = t
                .backup_of
                .as_ref()
                .and_then(|p| self.kept.slots.get(p))
                .and_then(|&s| NextHop::new(s))
                .unwrap_or(nh);
            for p in t.source_prefixes6() {
                sources.insert(p, owner);
            }
        }
        for (&prefix, target) in &self.routes6 {
            if let Some(nh) = self.hop6(target) {
                routes.insert(prefix, nh);
            }
        }
        (routes, sources.publish())
    }

    /// What the IPv6 route table holds for exactly `prefix`, by the layers of
    /// [`Self::build_v6`]: the configuration's route, else the tunnel prefix's carrier,
    /// else the routing daemon's route. `tunnels`: [`Self::tunnel_prefixes6`].
    fn route6_hop(
        &self,
        prefix: Ipv6Prefix,
        tunnels: &HashMap<Ipv6Prefix, NextHop>,
    ) -> Option<NextHop> {
        self.routes6
            .get(&prefix)
            .and_then(|t| self.hop6(t))
            .or_else(|| tunnels.get(&prefix).copied())
            .or_else(|| self.dynamic6.get(&prefix).and_then(|t| self.hop6(t)))
    }

    /// Bring the IPv6 tables up to date for the next snapshot, as `v6_stale` says.
    fn publish_v6(&mut self) {
        match self.kept.v6_stale.take() {
            None => {}
            Some(V6Build::Whole) => {
                let (mut routes, sources) = self.build_v6();
                self.kept.routes6_table = routes.publish();
                self.kept.sources6_table = sources;
                self.kept.routes6 = Some(routes);
            }
            Some(V6Build::Changed) => {
                let tunnels: HashMap<Ipv6Prefix, NextHop> = if self.dirty.prefixes6.is_empty() {
                    HashMap::new()
                } else {
                    self.tunnel_prefixes6().collect()
                };
                let hops: Vec<(Ipv6Prefix, Option<NextHop>)> = self
                    .dirty
                    .prefixes6
                    .iter()
                    .map(|&p| (p, self.route6_hop(p, &tunnels)))
                    .collect();
                let Some(routes) = self.kept.routes6.as_mut() else {
                    // `build` asks for a whole build while there is no builder yet.
                    return;
                };
                for (p, hop) in hops {
                    match hop {
                        Some(nh) => {
                            routes.insert(p, nh);
                        }
                        None => {
                            routes.remove(p);
                        }
                    }
                }
                self.kept.routes6_table = routes.publish();
            }
        }
    }

    /// A build after changes to routes or neighbours only: the changed prefixes are checked
    /// and installed; tunnels and sources are the last build's.
    fn build_routes(&mut self) -> Result<Arc<Snapshot>, BuildError> {
        let structure = Structure {
            slots: &self.kept.slots,
            tunnel_routes: &self.kept.tunnel_routes,
            remotes: &self.kept.remotes,
        };
        let mut others = OtherAlloc {
            kept: &self.kept.others,
            added: Vec::new(),
        };
        let prefixes: Vec<Ipv4Prefix> = self.dirty.prefixes.iter().copied().collect();
        let changes = self.route_changes(&structure, &mut others, prefixes.iter().copied())?;
        self.remotes_not_through_dynamic_tunnels(&structure, Some(&prefixes))?;
        let added = others.added;
        self.commit_routes(changes, added);
        let neighbors_changed = std::mem::take(&mut self.dirty.neighbors);
        let mtus_changed = std::mem::take(&mut self.dirty.path_mtus);
        if neighbors_changed {
            self.kept.neighbors = Arc::new(self.neighbors.clone());
            self.kept.neighbors6 = Arc::new(self.neighbors6.clone());
        }
        if neighbors_changed || mtus_changed {
            self.kept.tunnel_table = Arc::new(self.tunnel_table(&self.tunnel_slots()));
        }
        Ok(self.snapshot(neighbors_changed))
    }

    /// The slot of each tunnel, in configuration order, as the last build gave them.
    fn tunnel_slots(&self) -> Vec<u32> {
        self.tunnels
            .iter()
            .map(|t| self.kept.slots.get(&t.name).copied().unwrap_or(u32::MAX))
            .collect()
    }

    /// The next hop the route table should hold for `prefix`, from the layer of least
    /// distance that routes it; checked.
    fn wanted_hop(
        &self,
        prefix: Ipv4Prefix,
        structure: &Structure<'_>,
        others: &mut OtherAlloc<'_>,
    ) -> Result<Option<NextHop>, BuildError> {
        if let Some(&(slot, i)) = structure.tunnel_routes.get(&prefix) {
            if self.routes.contains_key(&prefix) {
                return Err(BuildError::DuplicatePrefix {
                    prefix,
                    first: format!("tunnel {:?}", self.tunnels[i].name),
                    second: format!("route {prefix}"),
                });
            }
            return NextHop::new(slot).ok_or(BuildError::TooMany).map(Some);
        }
        let target = match self.routes.get(&prefix) {
            Some(t) => t,
            None => match self.dynamic.get(&prefix) {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        let nh = match target {
            RouteTarget::Tunnel(name) => {
                let slot = *structure.slots.get(name.as_str()).ok_or_else(|| {
                    BuildError::RouteToUnknownTunnel {
                        prefix,
                        tunnel: name.clone(),
                    }
                })?;
                NextHop::new(slot).ok_or(BuildError::TooMany)?
            }
            RouteTarget::Native { port, next_hop } => {
                if !self.ports.contains_key(port) {
                    return Err(BuildError::RouteToUnknownPort {
                        prefix,
                        port: *port,
                    });
                }
                others.hop(OtherKey::Native(*port, *next_hop))?
            }
            RouteTarget::Connected { port, source } => {
                if !self.ports.contains_key(port) {
                    return Err(BuildError::RouteToUnknownPort {
                        prefix,
                        port: *port,
                    });
                }
                others.hop(OtherKey::Connected(*port, *source))?
            }
            // An IPv6 target in the IPv4 table: no route.
            RouteTarget::Native6 { .. } | RouteTarget::Blackhole => {
                others.hop(OtherKey::Blackhole)?
            }
            RouteTarget::Unreachable => others.hop(OtherKey::Unreachable)?,
            RouteTarget::Prohibit => others.hop(OtherKey::Prohibit)?,
        };
        Ok(Some(nh))
    }

    /// For each prefix, the next hop to install where it differs from the installed one
    /// (`None`: remove the prefix).
    fn route_changes(
        &self,
        structure: &Structure<'_>,
        others: &mut OtherAlloc<'_>,
        prefixes: impl Iterator<Item = Ipv4Prefix>,
    ) -> Result<Vec<(Ipv4Prefix, Option<NextHop>)>, BuildError> {
        let mut changes = Vec::new();
        for p in prefixes {
            let want = self.wanted_hop(p, structure, others)?;
            if self.kept.routes.get(p) != want {
                changes.push((p, want));
            }
        }
        Ok(changes)
    }

    /// No tunnel's remote may be routed into a tunnel by a dynamic route (a routing daemon
    /// must not pull the tunnels' own traffic into a tunnel; the configuration's routes are
    /// checked for the same by its validation). Only the remotes inside `touched` can have
    /// changed route; `None`: look at every remote.
    fn remotes_not_through_dynamic_tunnels(
        &self,
        structure: &Structure<'_>,
        touched: Option<&[Ipv4Prefix]>,
    ) -> Result<(), BuildError> {
        if self.dynamic.is_empty() {
            return Ok(());
        }
        let check = |remote: u32, i: usize| -> Result<(), BuildError> {
            let addr = Ipv4Addr::from(remote);
            for len in (0..=32u8).rev() {
                let Ok(p) = Ipv4Prefix::truncating(addr, len) else {
                    continue;
                };
                if structure.tunnel_routes.contains_key(&p) || self.routes.contains_key(&p) {
                    return Ok(());
                }
                match self.dynamic.get(&p) {
                    Some(RouteTarget::Tunnel(into)) => {
                        return Err(BuildError::RemoteThroughTunnel {
                            prefix: p,
                            tunnel: self.tunnels[i].name.clone(),
                            remote: addr,
                            into: into.clone(),
                        })
                    }
                    Some(_) => return Ok(()),
                    None => {}
                }
            }
            Ok(())
        };
        match touched {
            None => {
                for &(remote, i) in structure.remotes {
                    check(remote, i)?;
                }
            }
            Some(prefixes) => {
                for p in prefixes {
                    let lo = p.bits();
                    let hi = lo | (u32::MAX.checked_shr(u32::from(p.prefix_len())).unwrap_or(0));
                    let from = structure.remotes.partition_point(|&(r, _)| r < lo);
                    for &(remote, i) in &structure.remotes[from..] {
                        if remote > hi {
                            break;
                        }
                        check(remote, i)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Install checked route changes and the non-tunnel targets they added; keep count of
    /// the native next hops the installed routes need.
    fn commit_routes(&mut self, changes: Vec<(Ipv4Prefix, Option<NextHop>)>, added: Vec<OtherKey>) {
        let kept = &mut self.kept;
        for key in added {
            let i = OTHER_BASE + kept.other_keys.len() as u32;
            kept.others.insert(key, i);
            kept.other_keys.push(key);
        }
        let mut hops_changed = false;
        for (p, want) in changes {
            let old = match want {
                Some(nh) => kept.routes.insert(p, nh),
                None => kept.routes.remove(p),
            };
            for (nh, up) in [(old, false), (want, true)] {
                let Some(nh) = nh else { continue };
                let Some(OtherKey::Native(port, ip)) = nh
                    .index()
                    .checked_sub(OTHER_BASE)
                    .and_then(|i| kept.other_keys.get(i as usize))
                else {
                    continue;
                };
                let n = kept.hops.entry((*port, *ip)).or_insert(0);
                if up {
                    *n += 1;
                    hops_changed |= *n == 1;
                } else {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        kept.hops.remove(&(*port, *ip));
                        hops_changed = true;
                    }
                }
            }
        }
        self.dirty.prefixes.clear();
        if hops_changed {
            self.kept.wanted = self.wanted_hops();
        }
    }

    /// The next hops tunnels and installed routes need, sorted, each once, with the port
    /// address to ask from.
    fn wanted_hops(&self) -> Arc<[(PortIndex, Ipv4Addr, Ipv4Addr)]> {
        let ask_from = |port: PortIndex| {
            self.ports
                .get(&port)
                .and_then(|p| p.addrs.first().copied())
                .unwrap_or(Ipv4Addr::UNSPECIFIED)
        };
        let mut wanted: Vec<(PortIndex, Ipv4Addr, Ipv4Addr)> = self
            .tunnels
            .iter()
            // IPv6 next hops: `wanted_hops6`.
            .filter(|t| t.outer6.is_none())
            .map(|t| (t.egress_port, t.next_hop, t.local))
            .chain(
                self.kept
                    .hops
                    .keys()
                    .map(|&(port, ip)| (port, ip, ask_from(port))),
            )
            .collect();
        wanted.sort_unstable();
        wanted.dedup_by_key(|w| (w.0, w.1));
        wanted.into()
    }

    /// The IPv6 next hops the installed IPv6 routes need, sorted, each once, with the port
    /// address to solicit from. Every native IPv6 target of the configuration's routes, and
    /// of the routing daemon's where no configured route or tunnel prefix shadows them.
    /// And the underlay next hop of every tunnel with IPv6 endpoints, solicited from the
    /// tunnel's `local` (as ARP asks for an IPv4 tunnel's from its `local`).
    ///
    /// Cost: a pass over the IPv6 routes, on builds that change them (or the tunnels);
    /// nothing at all while no route has ever had a native IPv6 target and no tunnel has
    /// IPv6 endpoints.
    fn wanted_hops6(&self) -> Arc<[(PortIndex, Ipv6Addr, Ipv6Addr)]> {
        let tunnel_hops = self
            .tunnels
            .iter()
            .filter_map(|t| t.outer6.map(|o| (t.egress_port, o.next_hop, o.local)));
        if self.native6.is_empty() {
            let mut wanted: Vec<_> = tunnel_hops.collect();
            wanted.sort_unstable();
            wanted.dedup_by_key(|w| (w.0, w.1));
            return wanted.into();
        }
        let tunnel_prefixes: HashSet<Ipv6Prefix> = self
            .tunnels
            .iter()
            .flat_map(|t| t.prefixes6.iter().copied())
            .collect();
        let mut wanted: Vec<(PortIndex, Ipv6Addr, Ipv6Addr)> = self
            .routes6
            .values()
            .chain(
                self.dynamic6
                    .iter()
                    .filter(|(p, _)| !self.routes6.contains_key(p) && !tunnel_prefixes.contains(p))
                    .map(|(_, t)| t),
            )
            .filter_map(|t| match *t {
                RouteTarget::Native6 { port, next_hop } => {
                    let from = self.ports.get(&port).map(|p| p.solicit_from(next_hop))?;
                    Some((port, next_hop, from))
                }
                _ => None,
            })
            .chain(tunnel_hops)
            .collect();
        wanted.sort_unstable();
        wanted.dedup_by_key(|w| (w.0, w.1));
        wanted.into()
    }

    /// The tunnel table for tunnels in `slot_of` (configuration order), with MACs from the
    /// neighbours and state carried over by name.
    fn tunnel_table(&self, slot_of: &[u32]) -> TunnelTable {
        let mut entries: Vec<Option<TunnelEntry>> =
            (0..self.kept.next_slot).map(|_| None).collect();
        for (t, &slot) in self.tunnels.iter().zip(slot_of) {
            let (Some(port), Some(entry)) = (
                self.ports.get(&t.egress_port),
                entries.get_mut(slot as usize),
            ) else {
                continue;
            };
            let state = self.kept.states.get(&t.name).cloned().unwrap_or_default();
            let path_mtu = self
                .path_mtus
                .get(&t.name)
                .filter(|(key, _)| *key == t.key())
                .map(|&(_, mtu)| mtu);
            let sources = t
                .backup_of
                .as_deref()
                .and_then(|p| self.kept.slots.get(p).copied())
                .unwrap_or(slot);
            *entry = Some(TunnelEntry {
                sources,
                next_hop_mac: match t.outer6 {
                    Some(o) => self.neighbors6.get(&(t.egress_port, o.next_hop)).copied(),
                    None => self.neighbors.get(&(t.egress_port, t.next_hop)).copied(),
                },
                src_mac: port.mac,
                mtu: t.mtu.min(port.mtu).min(path_mtu.unwrap_or(u16::MAX)),
                path_mtu,
                state,
                config: t.clone(),
            });
        }
        TunnelTable::from_slots(entries)
    }

    /// The non-tunnel targets, resolved against the ports and neighbours.
    fn other_targets(&self) -> Arc<[Target]> {
        self.kept
            .other_keys
            .iter()
            .map(|key| match *key {
                OtherKey::Blackhole => Target::Blackhole,
                OtherKey::Unreachable => Target::Unreachable,
                OtherKey::Prohibit => Target::Prohibit,
                OtherKey::Native(port, next_hop) => match self.ports.get(&port) {
                    Some(p) => Target::Native {
                        port,
                        src_mac: p.mac,
                        dst_mac: self.neighbors.get(&(port, next_hop)).copied(),
                        mtu: p.mtu,
                    },
                    None => Target::Blackhole,
                },
                OtherKey::Connected(port, source) => match self.ports.get(&port) {
                    Some(p) => Target::Connected {
                        port,
                        src_mac: p.mac,
                        mtu: p.mtu,
                        source,
                    },
                    None => Target::Blackhole,
                },
            })
            .collect()
    }

    /// The next snapshot from what is kept; `targets_changed`: the native targets' MACs may
    /// have changed (or new targets were numbered).
    fn snapshot(&mut self, targets_changed: bool) -> Arc<Snapshot> {
        if targets_changed || self.kept.other_targets.len() != self.kept.other_keys.len() {
            self.kept.other_targets = self.other_targets();
        }
        let max_port = self
            .ports
            .keys()
            .next_back()
            .map_or(0, |&p| usize::from(p) + 1);
        let mut ports = vec![None; max_port];
        for (&i, p) in &self.ports {
            ports[usize::from(i)] = Some(p.clone());
        }
        let mut local: Vec<u32> = self
            .ports
            .values()
            .flat_map(|p| p.addrs.iter().map(|&a| u32::from(a)))
            .collect();
        local.sort_unstable();
        local.dedup();
        let local_few = (1..=8).contains(&local.len()).then(|| {
            let mut few = [local[0]; 8];
            few[..local.len()].copy_from_slice(&local);
            few
        });
        // The IPv6 routes (or the ports) changed: so may the next hops they need.
        if self.kept.v6_stale.is_some() {
            self.kept.wanted6 = self.wanted_hops6();
        }
        self.publish_v6();
        let others6: Arc<[Target]> = self
            .native6
            .iter()
            .map(|&(port, next_hop)| match self.ports.get(&port) {
                Some(p) => Target::Native {
                    port,
                    src_mac: p.mac,
                    dst_mac: self.neighbors6.get(&(port, next_hop)).copied(),
                    mtu: p.mtu,
                },
                None => Target::Blackhole,
            })
            .collect();
        let kept = &mut self.kept;
        kept.generation += 1;
        Arc::new(Snapshot {
            generation: kept.generation,
            ports,
            local,
            local_few,
            tunnels: Arc::clone(&kept.tunnel_table),
            routes: kept.routes.publish(),
            others: Arc::clone(&kept.other_targets),
            sources: kept.sources_table.clone(),
            routes6: kept.routes6_table.clone(),
            others6,
            sources6: kept.sources6_table.clone(),
            neighbors: Arc::clone(&kept.neighbors),
            wanted: Arc::clone(&kept.wanted),
            neighbors6: Arc::clone(&kept.neighbors6),
            wanted6: Arc::clone(&kept.wanted6),
            icmp: self.icmp,
        })
    }

    /// A build after changes to ports or tunnels: everything validated again, every route
    /// brought up to date.
    fn build_structure(&mut self) -> Result<Arc<Snapshot>, BuildError> {
        let mut local_owner: HashMap<Ipv4Addr, PortIndex> = HashMap::new();
        for (&idx, p) in &self.ports {
            for &a in &p.addrs {
                if let Some(&first) = local_owner.get(&a) {
                    return Err(BuildError::DuplicateAddress {
                        addr: a,
                        first,
                        second: idx,
                    });
                }
                local_owner.insert(a, idx);
            }
        }

        // Tunnels: validate, then give each a slot (existing ones keep theirs).
        let mut keys = HashMap::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.tunnels.iter().enumerate() {
            if names.insert(t.name.as_str(), i).is_some() {
                return Err(BuildError::DuplicateTunnel(t.name.clone()));
            }
            if let Some(o) = t.outer6 {
                let on_port = self
                    .ports
                    .get(&t.egress_port)
                    .is_some_and(|p| p.addrs6.contains(&o.local));
                if !on_port {
                    return Err(BuildError::Local6NotOnPort {
                        tunnel: t.name.clone(),
                        local: o.local,
                    });
                }
                if crate::wire::ipv6::is_invalid_source(u128::from(o.remote))
                    || crate::wire::ipv6::is_link_local(u128::from(o.remote))
                    || o.remote.is_multicast()
                {
                    return Err(BuildError::BadRemote6 {
                        tunnel: t.name.clone(),
                        remote: o.remote,
                    });
                }
            } else if !local_owner.contains_key(&t.local) {
                return Err(BuildError::LocalNotOurs {
                    tunnel: t.name.clone(),
                    local: t.local,
                });
            }
            // An IPv4 remote the router takes as a source (RFC 1812 section 5.3.7: not in
            // 0.0.0.0/8, 127.0.0.0/8 nor 224.0.0.0/3, which hold the broadcast, multicast
            // and loopback addresses): else every packet of the tunnel would be dropped as
            // martian. The fast path counts on it. With IPv6 endpoints the IPv4 field is
            // unused, and only those three are refused in it.
            let bad_remote = if t.outer6.is_none() {
                crate::wire::ipv4::is_martian_source(t.remote)
            } else {
                t.remote.is_broadcast() || t.remote.is_multicast() || t.remote.is_loopback()
            };
            if bad_remote {
                return Err(BuildError::BadRemote {
                    tunnel: t.name.clone(),
                    remote: t.remote,
                });
            }
            let Some(port) = self.ports.get(&t.egress_port) else {
                return Err(BuildError::UnknownTunnelPort {
                    tunnel: t.name.clone(),
                    port: t.egress_port,
                });
            };
            if t.mode == TunnelMode::Ipip {
                for (set, field) in [
                    (t.key.is_some(), "key"),
                    (t.sequence, "sequence"),
                    (t.checksum, "checksum"),
                ] {
                    if set {
                        return Err(BuildError::GreOnly {
                            tunnel: t.name.clone(),
                            field,
                        });
                    }
                }
            }
            let mtu = t.mtu.min(port.mtu);
            if usize::from(mtu) < 68 + t.outer_ip_len() + t.encap_gre_len() {
                return Err(BuildError::MtuTooSmall {
                    tunnel: t.name.clone(),
                    mtu,
                });
            }
            let key = match t.key6() {
                Some(k) => Err(k),
                None => Ok(t.key()),
            };
            if let Some(first) = keys.insert(key, t.name.clone()) {
                return Err(BuildError::DuplicateTunnelKey {
                    first,
                    second: t.name.clone(),
                });
            }
        }
        // Slots: kept for existing tunnels, fresh ones for new tunnels. A removed tunnel's
        // slot is never handed to another, so per-worker counters by slot are never credited
        // to the wrong tunnel (the cost: one empty slot per tunnel ever removed).
        let mut next_slot = self.kept.next_slot;
        let mut slot_of: Vec<u32> = Vec::with_capacity(self.tunnels.len());
        for t in &self.tunnels {
            let slot = match self.kept.slots.get(&t.name) {
                Some(&s) => s,
                None => {
                    next_slot += 1;
                    next_slot - 1
                }
            };
            if slot >= SITE_SOURCE {
                return Err(BuildError::TooMany);
            }
            slot_of.push(slot);
        }

        // The tunnels' prefixes and sources; every conflict found before anything changes.
        let mut tunnel_routes: HashMap<Ipv4Prefix, (u32, usize)> = HashMap::new();
        let mut claimed: HashMap<Ipv4Prefix, usize> = HashMap::new();
        let mut sources_wanted: HashMap<Ipv4Prefix, NextHop> = HashMap::new();
        let mut source_owner: HashMap<Ipv4Prefix, usize> = HashMap::new();
        // A backup's primary by position (validated to exist before routes are built).
        let primary_of: Vec<Option<usize>> = self
            .tunnels
            .iter()
            .map(|t| {
                let name = t.backup_of.as_deref()?;
                self.tunnels.iter().position(|p| p.name == name)
            })
            .collect();
        for (i, t) in self.tunnels.iter().enumerate() {
            if let Some(name) = &t.backup_of {
                let primary = primary_of[i].map(|p| &self.tunnels[p]);
                let primary_ok = primary.is_some_and(|p| p.backup_of.is_none());
                if !primary_ok || !t.prefixes.is_empty() {
                    return Err(BuildError::BadBackup {
                        tunnel: t.name.clone(),
                        primary: name.clone(),
                    });
                }
            }
        }
        let backups_of = |i: usize| {
            primary_of
                .iter()
                .enumerate()
                .filter(move |&(_, p)| *p == Some(i))
                .map(|(b, _)| b)
        };
        for (i, t) in self.tunnels.iter().enumerate() {
            let nh = NextHop::new(slot_of[i]).ok_or(BuildError::TooMany)?;
            for &p in &t.prefixes {
                if let Some(first) = claimed.insert(p, i) {
                    return Err(BuildError::DuplicatePrefix {
                        prefix: p,
                        first: format!("tunnel {:?}", self.tunnels[first].name),
                        second: format!("tunnel {:?}", t.name),
                    });
                }
                // A tunnel that falls back while it is down (or whose client's routes come
                // from BGP) claims its prefixes without routing them: its first backup that
                // routes takes them, else what else covers them takes their traffic.
                if t.routes_its_prefixes() {
                    tunnel_routes.insert(p, (slot_of[i], i));
                } else if let Some(b) =
                    backups_of(i).find(|&b| self.tunnels[b].routes_its_prefixes())
                {
                    tunnel_routes.insert(p, (slot_of[b], b));
                }
            }
            // The client router's side of the link is the client's too.
            let link = t
                .link
                .and_then(|l| Ipv4Prefix::truncating(l.addr(), l.prefix_len()).ok());
            for &p in t.prefixes.iter().chain(&t.extra_sources).chain(&link) {
                if let Some(first) = source_owner.insert(p, i) {
                    if first != i {
                        return Err(BuildError::DuplicateSource {
                            prefix: p,
                            first: self.tunnels[first].name.clone(),
                            second: t.name.clone(),
                        });
                    }
                }
                // A backup accepts its primary's sources (TunnelHot::sources names the
                // primary): its own link's are filed under the primary too.
                let owner = primary_of[i].map_or(nh, |p| NextHop::new(slot_of[p]).unwrap_or(nh));
                sources_wanted.insert(p, owner);
            }
        }
        // The site's own sources: never a tunnel's exact source prefix.
        let site_nh = NextHop::new(SITE_SOURCE).ok_or(BuildError::TooMany)?;
        for &p in &self.site {
            if let Some(&owner) = source_owner.get(&p) {
                return Err(BuildError::DuplicateSource {
                    prefix: p,
                    first: self.tunnels[owner].name.clone(),
                    second: "the site".to_owned(),
                });
            }
            sources_wanted.insert(p, site_nh);
        }
        // Our addresses that a tunnel's or the site's prefixes hold: each a /32 of its own
        // with its owner's value and LOCAL_SOURCE, so that the fast path's one ownership
        // test also refuses a packet from our address (a loop) and no other test is needed.
        let mut ours: Vec<Ipv4Addr> = self
            .ports
            .values()
            .flat_map(|p| p.addrs.iter().copied())
            .collect();
        ours.sort_unstable();
        ours.dedup();
        let owned: Vec<(Ipv4Prefix, NextHop)> = ours
            .into_iter()
            .filter_map(|a| {
                let owner = (0..=32).rev().find_map(|len| {
                    let p = Ipv4Prefix::truncating(a, len).ok()?;
                    sources_wanted.get(&p).copied()
                })?;
                let value = NextHop::new(owner.index() | LOCAL_SOURCE)?;
                Some((Ipv4Prefix::truncating(a, 32).ok()?, value))
            })
            .collect();
        sources_wanted.extend(owned);
        let slots: HashMap<String, u32> = self
            .tunnels
            .iter()
            .zip(&slot_of)
            .map(|(t, &s)| (t.name.clone(), s))
            .collect();
        let mut remotes: Vec<(u32, usize)> = self
            .tunnels
            .iter()
            .enumerate()
            // IPv6 endpoints are not routed by the IPv4 routes.
            .filter(|(_, t)| t.outer6.is_none())
            .map(|(i, t)| (u32::from(t.remote), i))
            .collect();
        remotes.sort_unstable();

        // Every prefix that is or may be routed: installed, configured, dynamic, a tunnel's.
        let structure = Structure {
            slots: &slots,
            tunnel_routes: &tunnel_routes,
            remotes: &remotes,
        };
        let mut others = OtherAlloc {
            kept: &self.kept.others,
            added: Vec::new(),
        };
        let mut all: HashSet<Ipv4Prefix> = self.kept.routes.iter().map(|(p, _)| p).collect();
        all.extend(self.routes.keys());
        all.extend(self.dynamic.keys());
        all.extend(tunnel_routes.keys());
        let changes = self.route_changes(&structure, &mut others, all.into_iter())?;
        self.remotes_not_through_dynamic_tunnels(&structure, None)?;
        let added = others.added;

        // Valid: commit the slots and bring the tables up to date.
        self.kept.slots = slots;
        self.kept.next_slot = next_slot;
        self.kept.tunnel_routes = tunnel_routes;
        self.kept.remotes = remotes;
        let states = self
            .tunnels
            .iter()
            .map(|t| {
                let state = self.kept.states.get(&t.name).cloned().unwrap_or_default();
                (t.name.clone(), state)
            })
            .collect();
        self.kept.states = states;
        self.commit_routes(changes, added);
        sync_lpm(
            &mut self.kept.sources,
            &mut self.kept.sources_installed,
            sources_wanted,
        );
        self.kept.sources_table = self.kept.sources.publish();
        self.kept.tunnel_table = Arc::new(self.tunnel_table(&slot_of));
        self.kept.neighbors = Arc::new(self.neighbors.clone());
        self.kept.neighbors6 = Arc::new(self.neighbors6.clone());
        self.kept.wanted = self.wanted_hops();
        self.dirty.structure = false;
        self.dirty.neighbors = false;
        self.dirty.path_mtus = false;
        Ok(self.snapshot(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A client port with MAC 02:00:00:00:00:`mac` and these addresses.
    fn client_port(mac: u8, addrs: Vec<Ipv4Addr>) -> PortEntry {
        PortEntry::client(EthernetAddress([2, 0, 0, 0, 0, mac]), addrs)
    }

    fn base() -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new();
        b.port(0, client_port(1, vec![addr("192.0.2.1")]));
        let mut t = Tunnel::new(
            "a",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.1"),
            0,
        );
        t.prefixes.push("10.1.0.0/16".parse().unwrap());
        b.tunnel(t);
        b
    }

    /// `base()` with IPv6 prefixes on tunnel a and a second tunnel b.
    fn base6() -> SnapshotBuilder {
        let mut b = base();
        b.tunnels[0]
            .prefixes6
            .push("2001:db8:a::/48".parse().unwrap());
        let mut t = Tunnel::new(
            "b",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.2"),
            0,
        );
        t.prefixes.push("10.2.0.0/16".parse().unwrap());
        t.prefixes6.push("2001:db8:b::/48".parse().unwrap());
        b.tunnel(t);
        b
    }

    #[test]
    fn ipv6_route_changes_install_what_changed_as_a_whole_build_would() {
        let pool: Vec<Ipv6Prefix> = [
            "::/0",
            "2001:db8::/32",
            "2001:db8::/40",
            "2001:db8:a::/48",
            "2001:db8:a:1::/64",
            "2001:db8:b::/48",
            "2001:db8:c::/48",
            "2001:db8:c:8000::/49",
            "2001:db8:c:1::/64",
            "2001:db8:c:1::1/128",
            "2001:db9::/32",
            "2400::/12",
            "2400:cb00::/32",
            "2400:cb00:1::/48",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        let tunnel_prefix = |p: &Ipv6Prefix| {
            *p == "2001:db8:a::/48".parse().unwrap() || *p == "2001:db8:b::/48".parse().unwrap()
        };
        let targets = [
            RouteTarget::Tunnel("a".into()),
            RouteTarget::Tunnel("b".into()),
            RouteTarget::Blackhole,
            RouteTarget::Unreachable,
            RouteTarget::Prohibit,
        ];
        // Addresses at each prefix's first, middle and last, and just outside it.
        let probes: Vec<u128> = pool
            .iter()
            .flat_map(|p| {
                let first = p.bits();
                let size = !p.mask();
                [
                    first,
                    first + size / 2,
                    first + size,
                    first.wrapping_sub(1),
                    (first + size).wrapping_add(1),
                ]
            })
            .collect();
        let mut b = base6();
        // Routes elsewhere, which no change below touches: a change must leave their
        // parts of the table shared with the last snapshot.
        for i in 0..200u128 {
            let p = Ipv6Prefix::from_bits((0x2a00u128 << 112) | (i << 88), 40).unwrap();
            b.dynamic_route6(p, RouteTarget::Tunnel("b".into()));
        }
        let mut last = b.build().expect("first build");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for round in 0..120 {
            // One to three changes a build.
            let mut wide = false;
            for _ in 0..1 + next(3) {
                let p = pool[next(pool.len())];
                // A prefix shorter than /16 covers many of the table's chunks.
                wide |= p.prefix_len() < 16;
                let t = targets[next(targets.len())].clone();
                match next(4) {
                    0 => {
                        b.dynamic_route6(p, t);
                    }
                    1 => {
                        b.remove_dynamic_route6(p);
                    }
                    2 if !tunnel_prefix(&p) => {
                        b.route6(p, t);
                    }
                    _ => {
                        b.remove_route6(p);
                    }
                }
            }
            let snap = b.build().expect("a valid change");
            // The reference: the same routes built whole by a new builder.
            let mut w = base6();
            for (&p, t) in b.routes6() {
                w.route6(p, t.clone());
            }
            for (&p, t) in b.dynamic_routes6() {
                w.dynamic_route6(p, t.clone());
            }
            let whole = w.build().expect("the whole build");
            for &a in &probes {
                assert_eq!(
                    snap.routes6().lookup_u128(a),
                    whole.routes6().lookup_u128(a),
                    "round {round}: {}",
                    core::net::Ipv6Addr::from(a)
                );
            }
            // Copy-on-write: a change does not rebuild the whole table (the routes of
            // 2a00::/16, which no change here covers, stay shared).
            assert!(
                wide || snap.routes6().shared_chunks(last.routes6()) > 0,
                "round {round}: nothing shared with the last table"
            );
            last = snap;
        }
        // A configured route on a tunnel's prefix is refused, naming both; nothing changes.
        let p: Ipv6Prefix = "2001:db8:a::/48".parse().unwrap();
        b.route6(p, RouteTarget::Blackhole);
        assert_eq!(
            b.build().unwrap_err(),
            BuildError::DuplicatePrefix6 {
                prefix: p,
                first: "tunnel \"a\"".into(),
                second: "route 2001:db8:a::/48".into(),
            }
        );
        b.remove_route6(p);
        let snap = b.build().expect("undone");
        assert_eq!(
            snap.routes6().lookup_u128(p.bits()),
            last.routes6().lookup_u128(p.bits())
        );
    }

    #[test]
    fn a_route_to_a_missing_tunnel_names_both() {
        let mut b = base();
        let p: Ipv4Prefix = "10.9.0.0/16".parse().unwrap();
        b.route(p, RouteTarget::Tunnel("nope".into()));
        let e = b.build().unwrap_err();
        assert_eq!(
            e,
            BuildError::RouteToUnknownTunnel {
                prefix: p,
                tunnel: "nope".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "route 10.9.0.0/16: tunnel \"nope\" does not exist"
        );
    }

    #[test]
    fn invalid_tunnels_are_refused_by_name() {
        let mut b = base();
        b.tunnel(Tunnel::new(
            "a",
            TunnelMode::Ipip,
            addr("192.0.2.1"),
            addr("198.51.100.2"),
            0,
        ));
        assert_eq!(
            b.build().unwrap_err(),
            BuildError::DuplicateTunnel("a".into())
        );

        let mut b = base();
        b.tunnel(Tunnel::new(
            "b",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.1"),
            0,
        ));
        assert!(matches!(
            b.build(),
            Err(BuildError::DuplicateTunnelKey { .. })
        ));

        let mut b = base();
        b.tunnel(Tunnel::new(
            "c",
            TunnelMode::Gre,
            addr("192.0.2.9"),
            addr("198.51.100.3"),
            0,
        ));
        assert!(matches!(b.build(), Err(BuildError::LocalNotOurs { .. })));

        let mut b = base();
        b.tunnel(Tunnel::new(
            "d",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.4"),
            5,
        ));
        assert!(matches!(
            b.build(),
            Err(BuildError::UnknownTunnelPort { port: 5, .. })
        ));

        let mut b = base();
        let mut t = Tunnel::new(
            "e",
            TunnelMode::Ipip,
            addr("192.0.2.1"),
            addr("198.51.100.5"),
            0,
        );
        t.key = Some(1);
        b.tunnel(t);
        assert!(matches!(
            b.build(),
            Err(BuildError::GreOnly { field: "key", .. })
        ));

        let mut b = base();
        let mut t = Tunnel::new(
            "f",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.6"),
            0,
        );
        t.prefixes.push("10.1.0.0/16".parse().unwrap());
        b.tunnel(t);
        assert!(matches!(b.build(), Err(BuildError::DuplicatePrefix { .. })));

        // A remote that is no unicast source (RFC 1812 section 5.3.7), at each edge of the
        // martian ranges; the unicast addresses beside them are taken.
        for (remote, refused) in [
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("0.255.255.255", true),
            ("1.0.0.0", false),
            ("126.255.255.255", false),
            ("127.0.0.1", true),
            ("127.255.255.255", true),
            ("128.0.0.0", false),
            ("223.255.255.255", false),
            ("224.0.0.1", true),
            ("239.255.255.255", true),
            ("240.0.0.1", true),
            ("255.255.255.254", true),
            ("255.255.255.255", true),
        ] {
            let mut b = base();
            b.tunnel(Tunnel::new(
                "g",
                TunnelMode::Gre,
                addr("192.0.2.1"),
                addr(remote),
                0,
            ));
            let r = b.build();
            assert_eq!(
                matches!(r, Err(BuildError::BadRemote { .. })),
                refused,
                "remote {remote}: {:?}",
                r.err()
            );
        }
    }

    /// `source_owned_by(src, id)` is `source_owner(src) == Some(id)`: the tunnel whose
    /// source prefixes hold `src` by longest match, none where the site's own hold it
    /// more specifically or where nothing does.
    #[test]
    fn source_owned_by_names_the_owner_alone() {
        let mut b = two_tunnels();
        b.site(vec!["10.1.128.0/17".parse().unwrap()]);
        let s = b.build().unwrap();
        let a = s.tunnels().by_name("a").unwrap();
        let bb = s.tunnels().by_name("b").unwrap();
        let unused = TunnelId(a.0.max(bb.0) + 1);
        for (src, owner) in [
            ("10.1.0.0", Some(a)),
            ("10.1.127.255", Some(a)),
            ("10.1.128.0", None),
            ("10.1.200.1", None),
            ("10.2.0.1", Some(bb)),
            ("10.2.255.255", Some(bb)),
            ("10.3.0.0", None),
            ("8.8.8.8", None),
        ] {
            let src = u32::from(addr(src));
            assert_eq!(s.source_owner(src), owner, "{src:#x}");
            for id in [a, bb, unused] {
                assert_eq!(
                    s.source_owned_by(src, id),
                    owner == Some(id),
                    "{src:#x} by {id:?}"
                );
            }
        }
    }

    /// Our own addresses are no tunnel's sources to `source_owned_by` (the fast path's one
    /// test for "owned, and not from us"), whoever's prefixes hold them; to every other
    /// reader they keep their owner, and their neighbours are untouched. Taking the
    /// address off the port gives it back to its owner.
    #[test]
    fn our_addresses_are_owned_by_no_tunnel_on_the_fast_path() {
        let mut b = two_tunnels();
        b.site(vec!["10.1.128.0/17".parse().unwrap()]);
        let ours = ["10.1.0.7", "10.1.200.9", "10.2.0.0", "10.3.0.1"];
        b.port(1, client_port(2, ours.iter().map(|a| addr(a)).collect()));
        let s = b.build().unwrap();
        let a = s.tunnels().by_name("a").unwrap();
        let bb = s.tunnels().by_name("b").unwrap();
        // (address, ours, owner by the configuration, the site's)
        for (src, local, owner, site) in [
            ("10.1.0.7", true, Some(a), false),
            ("10.1.0.6", false, Some(a), false),
            ("10.1.0.8", false, Some(a), false),
            ("10.1.200.9", true, None, true),
            ("10.1.200.8", false, None, true),
            ("10.2.0.0", true, Some(bb), false),
            ("10.2.0.1", false, Some(bb), false),
            ("10.3.0.1", true, None, false),
            ("192.0.2.1", true, None, false),
        ] {
            let src = u32::from(addr(src));
            assert_eq!(s.is_local(src), local, "{src:#x}");
            assert_eq!(s.source_owner(src), owner, "{src:#x}");
            assert_eq!(s.site_source(src), site, "{src:#x}");
            for id in [a, bb] {
                assert_eq!(
                    s.source_owned_by(src, id),
                    !local && owner == Some(id),
                    "{src:#x} by {id:?}"
                );
            }
        }
        b.port(1, client_port(2, vec![addr("10.3.0.1")]));
        let s = b.build().unwrap();
        let src = u32::from(addr("10.1.0.7"));
        assert!(!s.is_local(src));
        assert!(s.source_owned_by(src, a));
        assert!(s.source_owned_by(u32::from(addr("10.2.0.0")), bb));
    }

    #[test]
    fn a_valid_configuration_resolves_routes_sources_and_neighbours() {
        let mut b = base();
        b.neighbor(0, addr("198.51.100.1"), EthernetAddress([2, 0, 0, 0, 0, 9]));
        b.route("0.0.0.0/0".parse().unwrap(), RouteTarget::Blackhole);
        let s = b.build().unwrap();
        assert_eq!(s.generation(), 1);
        let nh = s.routes().lookup(addr("10.1.2.3")).unwrap();
        let Target::Tunnel(id) = s.target(nh) else {
            panic!("expected a tunnel")
        };
        assert_eq!(s.tunnels().get(id).unwrap().config.name, "a");
        assert_eq!(
            s.tunnels().get(id).unwrap().next_hop_mac,
            Some(EthernetAddress([2, 0, 0, 0, 0, 9]))
        );
        assert_eq!(
            s.target(s.routes().lookup(addr("8.8.8.8")).unwrap()),
            Target::Blackhole
        );
        assert_eq!(s.source_owner(u32::from(addr("10.1.200.1"))), Some(id));
        assert_eq!(s.source_owner(u32::from(addr("10.2.0.1"))), None);
        assert!(s.is_local(u32::from(addr("192.0.2.1"))));
        // Tunnel state survives a rebuild.
        s.tunnels().get(id).unwrap().state.next_tx_sequence();
        let s2 = b.build().unwrap();
        assert_eq!(s2.generation(), 2);
        assert_eq!(s2.tunnels().get(id).unwrap().state.next_tx_sequence(), 1);
    }

    /// `is_local` on 0 to 12 addresses (the few it compares at once, padded, and the
    /// many it searches), spread over two ports: each is ours, nothing else is (not the
    /// addresses next to them, not 0 nor 255.255.255.255).
    #[test]
    fn is_local_knows_each_address_and_no_other() {
        let ours = |i: u32| 0xC000_0200 + 7 * i + 3; // 192.0.2.3, .10, .17, ...
        for n in 0..=12u32 {
            let mut b = SnapshotBuilder::new();
            for port in 0..2u16 {
                let addrs = (0..n)
                    .filter(|i| i % 2 == u32::from(port))
                    .map(|i| Ipv4Addr::from(ours(i)))
                    .collect();
                b.port(port, client_port(port as u8 + 1, addrs));
            }
            let s = b.build().unwrap();
            for i in 0..n {
                assert!(s.is_local(ours(i)), "{n} addresses: {i} is ours");
                assert!(!s.is_local(ours(i) - 1), "{n} addresses: below {i}");
                assert!(!s.is_local(ours(i) + 1), "{n} addresses: above {i}");
            }
            for other in [0, u32::MAX, ours(n), ours(0) - 7] {
                assert!(!s.is_local(other), "{n} addresses: {other:#x} is not ours");
            }
        }
    }

    #[test]
    fn tunnels_keep_their_slots_and_updates_copy_only_what_changed() {
        let mut b = base();
        for i in 0..200u8 {
            let mut t = Tunnel::new(
                &format!("t{i}"),
                TunnelMode::Gre,
                addr("192.0.2.1"),
                Ipv4Addr::new(198, 51, 101, i),
                0,
            );
            t.prefixes
                .push(Ipv4Prefix::new(Ipv4Addr::new(20, i, 0, 0), 16).unwrap());
            b.tunnel(t);
        }
        for i in 0..5000u32 {
            let p = Ipv4Prefix::new(Ipv4Addr::from(0x1e00_0000 + (i << 8)), 24).unwrap();
            b.route(p, RouteTarget::Tunnel(format!("t{}", i % 200)));
        }
        let s1 = b.build().unwrap();
        let id_t7 = s1.tunnels().by_name("t7").unwrap();
        let id_t9 = s1.tunnels().by_name("t9").unwrap();

        // Remove t7 (and its routes): t9 keeps its slot, t7's slot is empty.
        assert!(b.remove_tunnel("t7"));
        let routes: Vec<_> = b
            .routes()
            .iter()
            .filter(|(_, t)| **t == RouteTarget::Tunnel("t7".into()))
            .map(|(p, _)| *p)
            .collect();
        for p in routes {
            b.remove_route(p);
        }
        let s2 = b.build().unwrap();
        assert_eq!(s2.tunnels().by_name("t9"), Some(id_t9));
        assert!(s2.tunnels().get(id_t7).is_none());
        assert!(
            s1.tunnels().get(id_t7).is_some(),
            "the old snapshot is unchanged"
        );
        let shared = s2.routes().shared_chunks(s1.routes());
        assert!(shared > 0, "the new route table shares chunks with the old");

        // One route moved: nearly everything is shared.
        let p = Ipv4Prefix::new(Ipv4Addr::from(0x1e00_0100), 24).unwrap();
        b.route(p, RouteTarget::Tunnel("t9".into()));
        let s3 = b.build().unwrap();
        let total = s3.routes().stats().chunks;
        let shared = s3.routes().shared_chunks(s2.routes());
        assert!(
            total - shared <= 3,
            "{} of {total} chunks copied",
            total - shared
        );
        assert_eq!(
            s3.target(s3.routes().lookup(Ipv4Addr::from(0x1e00_0105)).unwrap()),
            Target::Tunnel(id_t9)
        );

        // A failing build changes nothing: the next good build is as if it never happened.
        b.route(
            "10.200.0.0/16".parse().unwrap(),
            RouteTarget::Tunnel("nope".into()),
        );
        assert!(b.build().is_err());
        b.remove_route("10.200.0.0/16".parse().unwrap());
        let s4 = b.build().unwrap();
        assert_eq!(s4.generation(), s3.generation() + 1);
        assert_eq!(
            s4.routes().shared_chunks(s3.routes()),
            s3.routes().stats().chunks
        );
        // A new tunnel gets a fresh slot, never a removed tunnel's.
        b.tunnel(Tunnel::new(
            "new",
            TunnelMode::Ipip,
            addr("192.0.2.1"),
            addr("198.51.100.77"),
            0,
        ));
        let s5 = b.build().unwrap();
        let new = s5.tunnels().by_name("new").unwrap();
        assert!(new.0 >= 200, "fresh slot {new:?}");
        assert!(s5.tunnels().get(id_t7).is_none());
    }

    fn two_tunnels() -> SnapshotBuilder {
        let mut b = base();
        let mut t = Tunnel::new(
            "b",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.2"),
            0,
        );
        t.prefixes.push("10.2.0.0/16".parse().unwrap());
        b.tunnel(t);
        b
    }

    fn target_name(s: &Snapshot, a: &str) -> String {
        match s.routes().lookup(addr(a)).map(|nh| s.target(nh)) {
            None => "none".into(),
            Some(Target::Tunnel(id)) => s.tunnels().get(id).unwrap().config.name.clone(),
            Some(Target::Native { port, dst_mac, .. }) => format!("port {port} {dst_mac:?}"),
            Some(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn a_tunnel_that_falls_back_routes_its_prefixes_only_while_up() {
        let mut b = base();
        // "a" falls back, "b" does not; 10.0.0.0/8 into "b" is what else covers 10.1/16.
        let mut a = b.tunnels()[0].clone();
        assert_eq!(a.name, "a");
        a.fallback = true;
        b.remove_tunnel("a");
        b.tunnel(a.clone());
        let mut t = Tunnel::new(
            "b",
            TunnelMode::Gre,
            addr("192.0.2.1"),
            addr("198.51.100.2"),
            0,
        );
        t.prefixes.push("10.2.0.0/16".parse().unwrap());
        b.tunnel(t);
        b.route(
            "10.0.0.0/8".parse().unwrap(),
            RouteTarget::Tunnel("b".into()),
        );
        let s = b.build().unwrap();
        let id_a = s.tunnels().by_name("a").unwrap();
        assert_eq!(target_name(&s, "10.1.1.1"), "a");

        assert!(b.set_tunnel_down("a", true));
        assert!(!b.set_tunnel_down("a", true), "already down: no change");
        assert!(!b.set_tunnel_down("nope", true), "no such tunnel");
        let s = b.build().unwrap();
        assert_eq!(
            target_name(&s, "10.1.1.1"),
            "b",
            "the covering route takes it"
        );
        assert_eq!(b.installed_layer("10.1.0.0/16".parse().unwrap()), None);
        // Still a's own: what a sends from 10.1/16 passes the source check.
        assert_eq!(s.source_owner(u32::from(addr("10.1.1.1"))), Some(id_a));
        assert!(b.set_tunnel_down("a", false));
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.1.1.1"), "a", "back into the tunnel");

        // Without fallback, down routes as before.
        assert!(b.set_tunnel_down("b", true));
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.2.1.1"), "b");

        // A client whose prefixes come from BGP: only zebra's routes route them.
        a.bgp = true;
        b.remove_tunnel("a");
        b.tunnel(a);
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.1.1.1"), "b");
        b.dynamic_route(
            "10.1.0.0/16".parse().unwrap(),
            RouteTarget::Tunnel("a".into()),
        );
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.1.1.1"), "a");
        assert_eq!(
            b.installed_layer("10.1.0.0/16".parse().unwrap()),
            Some(RouteLayer::Dynamic)
        );
        b.remove_dynamic_route("10.1.0.0/16".parse().unwrap());
        let s = b.build().unwrap();
        assert_eq!(
            target_name(&s, "10.1.1.1"),
            "b",
            "withdrawn: what else covers it"
        );
    }

    #[test]
    fn a_prefix_is_routed_by_the_layer_of_least_distance() {
        let mut b = two_tunnels();
        let p9: Ipv4Prefix = "10.9.0.0/16".parse().unwrap();
        b.dynamic_route(p9, RouteTarget::Tunnel("b".into()));
        // A dynamic route for a tunnel's own prefix is shadowed by it.
        b.dynamic_route(
            "10.1.0.0/16".parse().unwrap(),
            RouteTarget::Tunnel("b".into()),
        );
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.9.1.1"), "b");
        assert_eq!(target_name(&s, "10.1.1.1"), "a");
        assert_eq!(
            b.installed_layer("10.1.0.0/16".parse().unwrap()),
            Some(RouteLayer::Tunnel)
        );
        // The configuration's route shadows the dynamic one, which takes over when it goes.
        b.route(p9, RouteTarget::Blackhole);
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.9.1.1"), "Blackhole");
        assert_eq!(b.installed_layer(p9), Some(RouteLayer::Static));
        b.remove_route(p9);
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.9.1.1"), "b");
        assert_eq!(b.installed_layer(p9), Some(RouteLayer::Dynamic));
        b.remove_dynamic_route(p9);
        let s = b.build().unwrap();
        assert_eq!(target_name(&s, "10.9.1.1"), "none");
        assert_eq!(b.installed_layer(p9), None);
        assert!(
            RouteLayer::Tunnel.distance() < RouteLayer::Static.distance()
                && RouteLayer::Static.distance() < RouteLayer::Dynamic.distance()
        );
    }

    #[test]
    fn a_dynamic_route_never_carries_a_tunnels_remote_into_a_tunnel() {
        let mut b = two_tunnels();
        b.build().unwrap();
        let cover: Ipv4Prefix = "198.51.100.0/24".parse().unwrap();
        b.dynamic_route(cover, RouteTarget::Tunnel("b".into()));
        assert_eq!(
            b.build().unwrap_err(),
            BuildError::RemoteThroughTunnel {
                prefix: cover,
                tunnel: "a".into(),
                remote: addr("198.51.100.1"),
                into: "b".into()
            }
        );
        // Not into a tunnel: fine. A configured route that holds the remotes: fine too,
        // and it decides, so the dynamic route into a tunnel may stay beside it.
        b.dynamic_route(cover, RouteTarget::Blackhole);
        b.build().unwrap();
        b.route(
            "198.51.100.0/25".parse().unwrap(),
            RouteTarget::Native {
                port: 0,
                next_hop: addr("198.51.100.200"),
            },
        );
        b.dynamic_route(cover, RouteTarget::Tunnel("b".into()));
        b.build().unwrap();
        // ... but not once that route goes.
        b.remove_route("198.51.100.0/25".parse().unwrap());
        assert!(matches!(
            b.build(),
            Err(BuildError::RemoteThroughTunnel { .. })
        ));
    }

    #[test]
    fn a_route_change_shares_everything_else_with_the_last_snapshot() {
        let mut b = two_tunnels();
        b.neighbor(0, addr("198.51.100.1"), EthernetAddress([2, 0, 0, 0, 0, 9]));
        let s1 = b.build().unwrap();
        b.route(
            "10.9.0.0/16".parse().unwrap(),
            RouteTarget::Tunnel("a".into()),
        );
        let s2 = b.build().unwrap();
        assert!(Arc::ptr_eq(&s1.tunnels, &s2.tunnels));
        assert!(Arc::ptr_eq(&s1.neighbors, &s2.neighbors));
        assert!(Arc::ptr_eq(&s1.wanted, &s2.wanted));
        assert_eq!(
            s2.sources.shared_chunks(&s1.sources),
            s1.sources.stats().chunks
        );
        // A native route adds its next hop to what ARP must resolve, and takes it away.
        let native: Ipv4Prefix = "10.8.0.0/16".parse().unwrap();
        b.route(
            native,
            RouteTarget::Native {
                port: 0,
                next_hop: addr("198.51.100.99"),
            },
        );
        let s3 = b.build().unwrap();
        assert!(s3.wants_neighbor(0, addr("198.51.100.99")));
        b.remove_route(native);
        let s4 = b.build().unwrap();
        assert!(!s4.wants_neighbor(0, addr("198.51.100.99")));
        assert!(
            s4.wants_neighbor(0, addr("198.51.100.1")),
            "the tunnels' stay"
        );
        // A neighbour learned: the tunnel table follows, the routes are shared.
        b.neighbor(0, addr("198.51.100.2"), EthernetAddress([2, 0, 0, 0, 0, 8]));
        let s5 = b.build().unwrap();
        let id = s5.tunnels().by_name("b").unwrap();
        assert_eq!(
            s5.tunnels().get(id).unwrap().next_hop_mac,
            Some(EthernetAddress([2, 0, 0, 0, 0, 8]))
        );
        assert_eq!(
            s5.routes().shared_chunks(s4.routes()),
            s4.routes().stats().chunks
        );
    }

    #[test]
    fn a_path_mtu_changes_the_tunnel_table_alone() {
        let mut b = two_tunnels();
        let s1 = b.build().unwrap();
        let id = s1.tunnels().by_name("b").unwrap();
        let mtu = s1.tunnels().get(id).unwrap().mtu;
        let key = b.tunnels()[1].key();
        b.path_mtu("b", key, 1200);
        let s2 = b.build().unwrap();
        let t = s2.tunnels().get(id).unwrap();
        assert_eq!((t.mtu, t.path_mtu), (1200, Some(1200)));
        assert_eq!(
            s2.routes().shared_chunks(s1.routes()),
            s1.routes().stats().chunks,
            "the routes are shared"
        );
        // The same again changes nothing; one for another key is ignored.
        b.path_mtu("b", key, 1200);
        let s3 = b.build().unwrap();
        assert!(Arc::ptr_eq(&s2.tunnels, &s3.tunnels));
        b.path_mtu("b", b.tunnels()[0].key(), 1000);
        let s4 = b.build().unwrap();
        assert_eq!(s4.tunnels().get(id).unwrap().path_mtu, None);
        // Forgotten: back to its own MTU.
        b.path_mtu("b", key, 1100);
        b.build().unwrap();
        b.forget_path_mtu("b");
        let s5 = b.build().unwrap();
        let t = s5.tunnels().get(id).unwrap();
        assert_eq!((t.mtu, t.path_mtu), (mtu, None));
    }

    /// One step of the property test below.
    #[derive(Debug, Clone)]
    enum Step {
        Static(usize, Option<usize>),
        Dynamic(usize, Option<usize>),
        Neighbor(u8),
        /// A path MTU for tunnel a or b (reported for the other tunnel's key when the flag
        /// is set: one the builder must ignore), or forgotten.
        PathMtu(usize, Option<(bool, u16)>),
    }

    // No prefix shorter than /12: a short prefix rebuilds every /16 it covers at each
    // build, which is slow in a debug build and tests nothing a /12 does not.
    const PREFIXES: &[&str] = &[
        "10.0.0.0/12",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "10.2.0.0/16",
        "10.9.0.0/16",
        "10.9.0.0/17",
        "10.9.0.128/25",
        "198.48.0.0/12",
        "198.51.100.0/24",
        "198.51.100.1/32",
    ];

    fn targets() -> Vec<RouteTarget> {
        vec![
            RouteTarget::Tunnel("a".into()),
            RouteTarget::Tunnel("b".into()),
            RouteTarget::Native {
                port: 0,
                next_hop: addr("198.51.100.8"),
            },
            RouteTarget::Native {
                port: 0,
                next_hop: addr("198.51.100.9"),
            },
            RouteTarget::Blackhole,
            RouteTarget::Unreachable,
            RouteTarget::Tunnel("gone".into()),
        ]
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let p = 0..PREFIXES.len();
        let t = proptest::option::of(0..targets().len());
        prop_oneof![
            (p.clone(), t.clone()).prop_map(|(p, t)| Step::Static(p, t)),
            (p, t).prop_map(|(p, t)| Step::Dynamic(p, t)),
            (0u8..3).prop_map(Step::Neighbor),
            (
                0..2usize,
                proptest::option::of((any::<bool>(), 576u16..1500))
            )
                .prop_map(|(t, m)| Step::PathMtu(t, m)),
        ]
    }

    /// Where a snapshot sends each probe address, described by names and MACs (slot
    /// numbers differ between builders), and the next hops it wants resolved.
    fn behaviour(s: &Snapshot) -> (Vec<String>, Vec<(PortIndex, Ipv4Addr, Ipv4Addr)>) {
        let mut probes = vec!["8.8.8.8", "198.51.100.1", "198.51.100.2", "198.51.100.3"];
        let more = [
            "10.0.0.1",
            "10.1.0.1",
            "10.1.2.3",
            "10.1.3.1",
            "10.2.0.1",
            "10.9.0.1",
            "10.9.0.200",
            "10.9.200.1",
            "198.51.7.1",
        ];
        probes.extend(more);
        let mac = |a: &str| match s.routes().lookup(addr(a)).map(|nh| s.target(nh)) {
            Some(Target::Tunnel(id)) => {
                let t = s.tunnels().get(id).unwrap();
                format!("{:?} mtu {} path {:?}", t.next_hop_mac, t.mtu, t.path_mtu)
            }
            _ => String::new(),
        };
        (
            probes
                .iter()
                .map(|a| format!("{} {}", target_name(s, a), mac(a)))
                .collect(),
            s.wanted().to_vec(),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

        /// Builds after route and neighbour changes alone send every probe exactly where a
        /// builder given the same configuration from scratch sends it, refuse exactly what
        /// it refuses, and are as if a refused change never happened once it is undone.
        #[test]
        fn incremental_builds_equal_builds_from_scratch(steps in proptest::collection::vec(step(), 1..32)) {
            let prefixes: Vec<Ipv4Prefix> = PREFIXES.iter().map(|p| p.parse().unwrap()).collect();
            let targets = targets();
            let mut b = two_tunnels();
            b.neighbor(0, addr("198.51.100.8"), EthernetAddress([2, 0, 0, 0, 0, 8]));
            b.build().unwrap();
            let keys: Vec<TunnelKey> = b.tunnels().iter().map(Tunnel::key).collect();
            let mut mtus: HashMap<String, (TunnelKey, u16)> = HashMap::new();
            for st in steps {
                let undo: Box<dyn Fn(&mut SnapshotBuilder)> = match st {
                    Step::Static(p, t) => {
                        let p = prefixes[p];
                        let old = b.routes().get(&p).cloned();
                        match t {
                            Some(t) => { b.route(p, targets[t].clone()); }
                            None => { b.remove_route(p); }
                        }
                        Box::new(move |b| match &old {
                            Some(o) => { b.route(p, o.clone()); }
                            None => { b.remove_route(p); }
                        })
                    }
                    Step::Dynamic(p, t) => {
                        let p = prefixes[p];
                        let old = b.dynamic_routes().get(&p).cloned();
                        match t {
                            Some(t) => { b.dynamic_route(p, targets[t].clone()); }
                            None => { b.remove_dynamic_route(p); }
                        }
                        Box::new(move |b| match &old {
                            Some(o) => { b.dynamic_route(p, o.clone()); }
                            None => { b.remove_dynamic_route(p); }
                        })
                    }
                    Step::Neighbor(m) => {
                        b.neighbor(0, addr("198.51.100.9"), EthernetAddress([2, 0, 0, 0, 1, m]));
                        b.neighbor(0, addr("198.51.100.2"), EthernetAddress([2, 0, 0, 0, 2, m]));
                        Box::new(|_| {})
                    }
                    Step::PathMtu(t, m) => {
                        let name = b.tunnels()[t].name.clone();
                        match m {
                            Some((other, mtu)) => {
                                let key = keys[if other { 1 - t } else { t }];
                                b.path_mtu(&name, key, mtu);
                                mtus.insert(name, (key, mtu));
                            }
                            None => {
                                b.forget_path_mtu(&name);
                                mtus.remove(&name);
                            }
                        }
                        Box::new(|_| {})
                    }
                };
                let mut fresh = two_tunnels();
                for (name, &(key, mtu)) in &mtus { fresh.path_mtu(name, key, mtu); }
                for (&p, t) in b.routes() { fresh.route(p, t.clone()); }
                for (&p, t) in b.dynamic_routes() { fresh.dynamic_route(p, t.clone()); }
                for (&(port, ip), &mac) in b.neighbors() { fresh.neighbor(port, ip, mac); }
                match (b.build(), fresh.build()) {
                    (Ok(s), Ok(f)) => proptest::prop_assert_eq!(behaviour(&s), behaviour(&f)),
                    (Err(_), Err(_)) => {
                        undo(&mut b);
                        b.build().unwrap();
                    }
                    (s, f) => proptest::prop_assert!(false, "incremental {:?}, from scratch {:?}", s.err(), f.err()),
                }
            }
        }
    }
}
