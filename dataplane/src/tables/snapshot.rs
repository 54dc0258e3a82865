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
use crate::lpm::{Ipv4Lpm, Ipv4LpmBuilder, Ipv4Prefix, NextHop};
use crate::wire::EthernetAddress;
use core::net::Ipv4Addr;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use thiserror::Error;

/// What a port faces. One port may have several roles in a small lab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRoles {
    /// Client routers: tunnels arrive here.
    pub client: bool,
    /// Other edge routers of the backbone.
    pub core: bool,
    /// Best-effort native transit.
    pub internet: bool,
}

/// A port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    pub mac: EthernetAddress,
    /// Our addresses on this port (tunnel endpoints among them).
    pub addrs: Vec<Ipv4Addr>,
    /// Largest IP packet the port sends.
    pub mtu: u16,
    pub roles: PortRoles,
    /// Whether packets arriving here that are not for us may be forwarded natively.
    pub transit: bool,
    /// Whether the port has a host interface (`bb-<port>`): packets for our addresses here
    /// that are not tunnel traffic go to the host kernel through it.
    pub host_interface: bool,
}

/// Where a route sends packets (as configured, by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Into a tunnel, by name.
    Tunnel(String),
    /// Natively out of a port toward a next hop.
    Native { port: PortIndex, next_hop: Ipv4Addr },
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
    #[error("too many tunnels and routes for the next-hop space")]
    TooMany,
}

/// Every table a worker reads for one burst. Immutable; shared through `Arc`.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    ports: Vec<Option<PortEntry>>,
    /// Our addresses, sorted (host order).
    local: Vec<u32>,
    tunnels: TunnelTable,
    routes: Ipv4Lpm,
    /// Route targets other than tunnels, at next-hop index `OTHER_BASE + i`.
    others: Vec<Target>,
    /// Inner source prefix -> owning tunnel id (longest match).
    sources: Ipv4Lpm,
    /// Every neighbour known (static or learned).
    neighbors: HashMap<(PortIndex, Ipv4Addr), EthernetAddress>,
    /// The next hops routes and tunnels need, each with the port address to ask from.
    wanted: Vec<(PortIndex, Ipv4Addr, Ipv4Addr)>,
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
    #[inline]
    pub fn is_local(&self, addr: u32) -> bool {
        // A handful of addresses: a linear scan beats a hash.
        if self.local.len() <= 8 {
            self.local.contains(&addr)
        } else {
            self.local.binary_search(&addr).is_ok()
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

    /// The MAC of a neighbour, if known.
    pub fn neighbor(&self, port: PortIndex, ip: Ipv4Addr) -> Option<EthernetAddress> {
        self.neighbors.get(&(port, ip)).copied()
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

    /// The tunnel whose source prefixes hold `src` (host order), by longest match.
    #[inline]
    pub fn source_owner(&self, src: u32) -> Option<TunnelId> {
        self.sources
            .lookup_u32(src)
            .to_option()
            .map(|nh| TunnelId(nh.index()))
    }
}

/// Collects and validates the configuration, then builds snapshots from it.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    ports: BTreeMap<PortIndex, PortEntry>,
    tunnels: Vec<Tunnel>,
    routes: BTreeMap<Ipv4Prefix, RouteTarget>,
    neighbors: HashMap<(PortIndex, Ipv4Addr), EthernetAddress>,
    icmp: IcmpLimit,
    /// Path MTUs the underlay reported, by tunnel name, with the receive key of the tunnel
    /// they were reported for.
    path_mtus: HashMap<String, (TunnelKey, u16)>,
    /// What survives from one build to the next: slots, tables, tunnel state.
    kept: Kept,
}

/// Route next hops at or above this index are not tunnels (tunnels use their slot).
const OTHER_BASE: u32 = 1 << 24;

/// A non-tunnel route target, as the builder numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OtherKey {
    Native(PortIndex, Ipv4Addr),
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
    others: HashMap<OtherKey, u32>,
    routes: Ipv4LpmBuilder,
    routes_installed: HashMap<Ipv4Prefix, NextHop>,
    sources: Ipv4LpmBuilder,
    sources_installed: HashMap<Ipv4Prefix, NextHop>,
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
        self
    }

    /// Add a tunnel (checked in `build`).
    pub fn tunnel(&mut self, tunnel: Tunnel) -> &mut Self {
        self.tunnels.push(tunnel);
        self
    }

    /// Remove a tunnel by name; returns whether it existed.
    pub fn remove_tunnel(&mut self, name: &str) -> bool {
        let before = self.tunnels.len();
        self.tunnels.retain(|t| t.name != name);
        before != self.tunnels.len()
    }

    /// Add or replace a route.
    pub fn route(&mut self, prefix: Ipv4Prefix, target: RouteTarget) -> &mut Self {
        self.routes.insert(prefix, target);
        self
    }

    /// Remove a route; returns whether it existed.
    pub fn remove_route(&mut self, prefix: Ipv4Prefix) -> bool {
        self.routes.remove(&prefix).is_some()
    }

    /// Add or replace a neighbour (IP to MAC on a port).
    pub fn neighbor(&mut self, port: PortIndex, ip: Ipv4Addr, mac: EthernetAddress) -> &mut Self {
        self.neighbors.insert((port, ip), mac);
        self
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
        self.path_mtus.insert(name.to_owned(), (key, mtu));
        self
    }

    /// Take another builder's configuration (ports, tunnels, routes, neighbours, ICMP
    /// limit, path MTUs) while keeping this one's state, so the next build changes only
    /// what differs.
    pub fn adopt(&mut self, other: SnapshotBuilder) {
        self.ports = other.ports;
        self.tunnels = other.tunnels;
        self.routes = other.routes;
        self.neighbors = other.neighbors;
        self.icmp = other.icmp;
        self.path_mtus = other.path_mtus;
    }

    /// The tunnels as configured.
    pub fn tunnels(&self) -> &[Tunnel] {
        &self.tunnels
    }

    /// The explicit routes as configured.
    pub fn routes(&self) -> &BTreeMap<Ipv4Prefix, RouteTarget> {
        &self.routes
    }

    /// The neighbours (static and learned).
    pub fn neighbors(&self) -> &HashMap<(PortIndex, Ipv4Addr), EthernetAddress> {
        &self.neighbors
    }

    /// Validate everything and build the next snapshot. On error nothing changes.
    ///
    /// Tunnels keep their slot while they exist; the route and source tables are brought
    /// up to date prefix by prefix and published copy-on-write, so the cost of a build
    /// beyond validation follows the size of the change, not of the tables.
    pub fn build(&mut self) -> Result<Arc<Snapshot>, BuildError> {
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
            if !local_owner.contains_key(&t.local) {
                return Err(BuildError::LocalNotOurs {
                    tunnel: t.name.clone(),
                    local: t.local,
                });
            }
            if t.remote.is_unspecified()
                || t.remote.is_broadcast()
                || t.remote.is_multicast()
                || t.remote.is_loopback()
            {
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
            if usize::from(mtu) < 68 + 20 + t.encap_gre_len() {
                return Err(BuildError::MtuTooSmall {
                    tunnel: t.name.clone(),
                    mtu,
                });
            }
            if let Some(first) = keys.insert(t.key(), t.name.clone()) {
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
            if slot >= OTHER_BASE {
                return Err(BuildError::TooMany);
            }
            slot_of.push(slot);
        }

        // Routes and sources as they should be; every conflict found before anything changes.
        let mut routes_wanted: HashMap<Ipv4Prefix, NextHop> = HashMap::new();
        let mut owner: HashMap<Ipv4Prefix, usize> = HashMap::new();
        let mut sources_wanted: HashMap<Ipv4Prefix, NextHop> = HashMap::new();
        let mut source_owner: HashMap<Ipv4Prefix, usize> = HashMap::new();
        for (i, t) in self.tunnels.iter().enumerate() {
            let nh = NextHop::new(slot_of[i]).ok_or(BuildError::TooMany)?;
            for &p in &t.prefixes {
                if let Some(first) = owner.insert(p, i) {
                    return Err(BuildError::DuplicatePrefix {
                        prefix: p,
                        first: format!("tunnel {:?}", self.tunnels[first].name),
                        second: format!("tunnel {:?}", t.name),
                    });
                }
                routes_wanted.insert(p, nh);
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
                sources_wanted.insert(p, nh);
            }
        }
        let mut others = self.kept.others.clone();
        for (&prefix, target) in &self.routes {
            let nh = match target {
                RouteTarget::Tunnel(name) => {
                    let i = *names.get(name.as_str()).ok_or_else(|| {
                        BuildError::RouteToUnknownTunnel {
                            prefix,
                            tunnel: name.clone(),
                        }
                    })?;
                    NextHop::new(slot_of[i]).ok_or(BuildError::TooMany)?
                }
                RouteTarget::Native { port, next_hop } => {
                    if !self.ports.contains_key(port) {
                        return Err(BuildError::RouteToUnknownPort {
                            prefix,
                            port: *port,
                        });
                    }
                    other_hop(&mut others, OtherKey::Native(*port, *next_hop))?
                }
                RouteTarget::Blackhole => other_hop(&mut others, OtherKey::Blackhole)?,
                RouteTarget::Unreachable => other_hop(&mut others, OtherKey::Unreachable)?,
                RouteTarget::Prohibit => other_hop(&mut others, OtherKey::Prohibit)?,
            };
            if let Some(&first) = owner.get(&prefix) {
                return Err(BuildError::DuplicatePrefix {
                    prefix,
                    first: format!("tunnel {:?}", self.tunnels[first].name),
                    second: format!("route {prefix}"),
                });
            }
            routes_wanted.insert(prefix, nh);
        }

        // Valid: commit the slots and bring the tables up to date.
        let kept = &mut self.kept;
        kept.slots = self
            .tunnels
            .iter()
            .zip(&slot_of)
            .map(|(t, &s)| (t.name.clone(), s))
            .collect();
        kept.next_slot = next_slot;
        kept.others = others;
        sync_lpm(&mut kept.routes, &mut kept.routes_installed, routes_wanted);
        sync_lpm(
            &mut kept.sources,
            &mut kept.sources_installed,
            sources_wanted,
        );

        let mut entries: Vec<Option<TunnelEntry>> = (0..kept.next_slot).map(|_| None).collect();
        let mut states = HashMap::with_capacity(self.tunnels.len());
        for (t, &slot) in self.tunnels.iter().zip(&slot_of) {
            let port = &self.ports[&t.egress_port];
            let state = kept.states.get(&t.name).cloned().unwrap_or_default();
            states.insert(t.name.clone(), Arc::clone(&state));
            let path_mtu = self
                .path_mtus
                .get(&t.name)
                .filter(|(key, _)| *key == t.key())
                .map(|&(_, mtu)| mtu);
            entries[slot as usize] = Some(TunnelEntry {
                next_hop_mac: self.neighbors.get(&(t.egress_port, t.next_hop)).copied(),
                src_mac: port.mac,
                mtu: t.mtu.min(port.mtu).min(path_mtu.unwrap_or(u16::MAX)),
                path_mtu,
                state,
                config: t.clone(),
            });
        }
        kept.states = states;
        let mut other_targets = vec![Target::Blackhole; kept.others.len()];
        for (key, &i) in &kept.others {
            other_targets[(i - OTHER_BASE) as usize] = match *key {
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
            };
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
        let mut local: Vec<u32> = local_owner.keys().map(|&a| u32::from(a)).collect();
        local.sort_unstable();
        let ask_from = |port: PortIndex| {
            self.ports
                .get(&port)
                .and_then(|p| p.addrs.first().copied())
                .unwrap_or(Ipv4Addr::UNSPECIFIED)
        };
        let mut wanted: Vec<(PortIndex, Ipv4Addr, Ipv4Addr)> = self
            .tunnels
            .iter()
            .map(|t| (t.egress_port, t.next_hop, t.local))
            .chain(self.routes.values().filter_map(|r| match r {
                RouteTarget::Native { port, next_hop } => Some((*port, *next_hop, ask_from(*port))),
                _ => None,
            }))
            .collect();
        wanted.sort_unstable();
        wanted.dedup_by_key(|w| (w.0, w.1));

        kept.generation += 1;
        Ok(Arc::new(Snapshot {
            generation: kept.generation,
            ports,
            local,
            tunnels: TunnelTable::from_slots(entries),
            routes: kept.routes.publish(),
            others: other_targets,
            sources: kept.sources.publish(),
            neighbors: self.neighbors.clone(),
            wanted,
            icmp: self.icmp,
        }))
    }
}

/// The next hop for a non-tunnel target, numbering it the first time it is seen.
fn other_hop(others: &mut HashMap<OtherKey, u32>, key: OtherKey) -> Result<NextHop, BuildError> {
    let n = others.len() as u32;
    let i = *others.entry(key).or_insert(OTHER_BASE + n);
    NextHop::new(i).ok_or(BuildError::TooMany)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn base() -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new();
        b.port(
            0,
            PortEntry {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                addrs: vec![addr("192.0.2.1")],
                mtu: 1500,
                roles: PortRoles {
                    client: true,
                    ..PortRoles::default()
                },
                transit: false,
                host_interface: false,
            },
        );
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
}
