//! Validation: from the file as written ([`RawConfig`]) to a [`ValidatedConfig`], or the
//! first error in file order (workers, then ports, tunnels, routes, then the checks that
//! need the whole table).
//!
//! Beyond each field's own parse and range, the rules that span fields:
//! - port names, port devices and tunnel names are unique; an address sits on one port
//!   once; a port's neighbours have unique IPs, none of them ours;
//! - a tunnel's `local` is one of our addresses, its `remote` and `next_hop` are unicast
//!   and not ours, its `port` exists, `key`/`sequence`/`checksum` appear on GRE tunnels
//!   only, `(local, remote, mode, key)` is unique (it is the receive lookup key), its `mtu`
//!   fits the port and leaves 68 bytes for the inner packet;
//! - a prefix is claimed for routing once: by one tunnel's `prefixes` or by one route;
//! - the inner source prefixes (`prefixes` and `extra_sources`) of two tunnels never
//!   overlap: one client must never be able to send as another (SPEC, BCP 38);
//! - a route has exactly one target, and it exists; `next_hop` comes with `port` only (a
//!   `port` without it is a connected subnet, and the port needs an address to ask ARP from);
//! - no tunnel's `remote` is routed into a tunnel (RFC 2784 section 3.1, RFC 2003
//!   section 3.2: the tunnel's own traffic, probes and ICMP included, would recurse);
//! - IPv6 (inside IPv4 tunnels): a tunnel's `prefixes` and `extra_sources` may be IPv6
//!   prefixes, under the same rules as IPv4 ones in their own family; a tunnel that
//!   accepts IPv6 sources has a `link6` (the source of its ICMPv6 errors); a `[[route]]`
//!   with an IPv6 prefix has any target but `port` (no native IPv6 forwarding yet).

use crate::error::ConfigError;
use crate::model::{
    header_len, BgpConfig, FpmConfig, HealthConfig, IcmpConfig, Neighbor6Config, NeighborConfig,
    Outer6, PollConfig, PortConfig, PortRef, Route6Config, RouteConfig, RouteTarget, SiteConfig,
    TunnelBgp, TunnelConfig, TunnelRef, ValidatedConfig, HOST_INTERFACE_PREFIX, MAX_INTERFACE_NAME,
    OUTER6_EXTRA,
};
use crate::schema::{
    IntOrWord, RawBgp, RawConfig, RawFpm, RawPort, RawRoute, RawTunnel, RawWorkers,
    DEFAULT_IDLE_SLEEP_MAX_US, FPM_GRACE_RANGE, ICMP_LIMIT_RANGE, IDLE_SLEEP_MAX_US_RANGE,
    MIN_INNER_MTU, PORT_MTU_RANGE, QUEUES_RANGE,
};
use crate::types::{quoted_list, Df, Dscp, MacAddr, PollMode, Role, Ttl, TunnelMode};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

/// Check `raw` and build the validated configuration; `origin` names the file in errors.
pub(crate) fn validate(raw: &RawConfig, origin: &str) -> Result<ValidatedConfig, ConfigError> {
    let mut v = Validator {
        origin,
        ours: Cow::Owned(HashMap::new()),
        claims: HashMap::new(),
        sources: BTreeMap::new(),
        claims6: HashMap::new(),
        sources6: BTreeMap::new(),
        ours6: HashMap::new(),
        interfaces: HashMap::new(),
        links: Vec::new(),
        bgp: None,
        fpm: raw.fpm.is_some(),
    };
    let worker_lcores = v.workers(raw.workers.lcores.as_deref())?;
    let poll = v.poll(&raw.workers)?;
    let ports = v.ports(&raw.ports)?;
    v.bgp = match &raw.bgp {
        Some(b) => Some(v.bgp(b, &ports)?),
        None => None,
    };
    let tunnels = v.tunnels(&raw.tunnels, &ports)?;
    let site = v.site(raw.site.as_ref(), &ports)?;
    let (routes, routes6) = v.routes(&raw.routes, &ports, &tunnels)?;
    v.no_tunnel_through_a_tunnel(&tunnels)?;
    let icmp = IcmpConfig {
        rate: v.ranged(
            "icmp.rate".into(),
            raw.icmp.rate,
            &ICMP_LIMIT_RANGE,
            "a message rate",
        )?,
        burst: v.ranged(
            "icmp.burst".into(),
            raw.icmp.burst,
            &ICMP_LIMIT_RANGE,
            "a burst size",
        )?,
    };
    let fpm = match &raw.fpm {
        Some(f) => Some(v.fpm(f)?),
        None => None,
    };
    Ok(ValidatedConfig {
        eal_args: raw.eal.args.clone(),
        worker_lcores,
        poll,
        ports,
        tunnels,
        routes,
        routes6,
        icmp,
        fpm,
        bgp: v.bgp.clone(),
        site,
        health: HealthConfig {
            probe_interval_ms: v.ranged(
                "health.probe_interval_ms".into(),
                raw.health.probe_interval_ms,
                &(10..=60_000),
                "an interval in milliseconds",
            )?,
            probe_misses: v.ranged(
                "health.probe_misses".into(),
                raw.health.probe_misses,
                &(1..=100),
                "a number of probes",
            )?,
        },
    })
}

/// Who claimed a prefix for routing.
struct Claim {
    /// The claiming field's path.
    field: String,
    /// The tunnel the prefix routes into, if it does.
    tunnel: Option<usize>,
}

/// An inner source prefix, and who accepts it.
struct Source {
    net: Ipv4Net,
    tunnel: usize,
    field: String,
}

/// An inner IPv6 source prefix, and who accepts it.
struct Source6 {
    net: Ipv6Net,
    tunnel: usize,
    field: String,
}

pub(crate) struct Validator<'a> {
    origin: &'a str,
    /// Our addresses, each with the field that configures it (borrowed where a route
    /// change is checked against a configuration validated before).
    ours: Cow<'a, HashMap<Ipv4Addr, String>>,
    /// Routing claims: tunnel prefixes and routes.
    claims: HashMap<Ipv4Net, Claim>,
    /// Inner source prefixes keyed by (network, length), for the overlap search.
    sources: BTreeMap<(u32, u8), Source>,
    /// IPv6 routing claims: tunnel prefixes and routes.
    claims6: HashMap<Ipv6Net, Claim>,
    /// Inner IPv6 source prefixes keyed by (network, length).
    sources6: BTreeMap<(u128, u8), Source6>,
    /// Our IPv6 addresses (the tunnels' `link6`), each with its field.
    ours6: HashMap<Ipv6Addr, String>,
    /// Host interface names, each with the field that asks for it.
    interfaces: HashMap<String, String>,
    /// Tunnel links, each with its field.
    links: Vec<(Ipv4Net, String)>,
    /// `[bgp]`, checked before the tunnels (their `asn` needs it).
    bgp: Option<BgpConfig>,
    /// Whether there is an `[fpm]` section: only then do BGP sessions move routes.
    fpm: bool,
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

pub(crate) fn port_path(i: usize, name: &str) -> String {
    format!("port[{i}] {name:?}")
}

pub(crate) fn tunnel_path(i: usize, name: &str) -> String {
    format!("tunnel[{i}] {name:?}")
}

/// Why an IPv4 address cannot be a unicast host address here (SPEC's martians).
fn not_unicast(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("is the unspecified address, not a unicast address")
    } else if a.octets()[0] == 0 {
        Some("is in 0.0.0.0/8 (this network), not a unicast address")
    } else if a.is_loopback() {
        Some("is a loopback address, not a unicast address")
    } else if a.is_broadcast() {
        Some("is the broadcast address, not a unicast address")
    } else if a.is_multicast() {
        Some("is a multicast address, not a unicast address")
    } else if a.octets()[0] >= 240 {
        Some("is in the reserved 240.0.0.0/4, not a unicast address")
    } else {
        None
    }
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The smallest MTU every IPv6 link carries (RFC 8200 section 5).
const MIN_IPV6_MTU: u16 = 1280;

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// Whether a `[[port.neighbor]]`'s `ip` is written as an IPv6 address.
fn is_ipv6_text(text: &str) -> bool {
    matches!(text.parse::<IpAddr>(), Ok(IpAddr::V6(_)))
}

/// The position in the file's `neighbor` list of the port's `k`-th IPv4 neighbour (the two
/// families are kept apart, the errors name the file's position).
fn neighbor4_index(p: &RawPort, k: usize) -> usize {
    nth_position(p, k, false)
}

/// The position in the file's `neighbor` list of the port's `k`-th IPv6 neighbour.
fn neighbor6_index(p: &RawPort, k: usize) -> usize {
    nth_position(p, k, true)
}

fn nth_position(p: &RawPort, k: usize, v6: bool) -> usize {
    p.neighbors
        .iter()
        .enumerate()
        .filter(|(_, n)| is_ipv6_text(&n.ip) == v6)
        .nth(k)
        .map_or(k, |(i, _)| i)
}

/// Why an IPv6 address cannot be one of ours (RFC 4291, RFC 6890).
fn not_unicast6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    if a.is_unspecified() {
        Some("is the unspecified address, not a unicast address")
    } else if a.is_loopback() {
        Some("is the loopback address, not a unicast address")
    } else if s[0] >> 8 == 0xff {
        Some("is a multicast address (ff00::/8), not a unicast address")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("is a link-local address (fe80::/10); give one the client can route to")
    } else if a.to_ipv4_mapped().is_some() {
        Some("is an IPv4-mapped address (::ffff:0:0/96), not an IPv6 unicast address")
    } else {
        None
    }
}

impl Validator<'_> {
    fn err(
        &self,
        field: impl Into<String>,
        value: impl Display,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            field: field.into(),
            value: Some(value.to_string()),
            problem: problem.into(),
        }
    }

    fn err_bare(&self, field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            field: field.into(),
            value: None,
            problem: problem.into(),
        }
    }

    fn ranged<T>(
        &self,
        field: String,
        value: i64,
        range: &RangeInclusive<T>,
        what: &str,
    ) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd + Display,
    {
        T::try_from(value)
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                self.err(
                    field,
                    value,
                    format!("is not {what} ({}..={})", range.start(), range.end()),
                )
            })
    }

    fn name(
        &self,
        field: String,
        name: &str,
        taken: Option<usize>,
        kind: &str,
    ) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(self.err(field, quote(name), "is empty"));
        }
        if let Some(first) = taken {
            return Err(self.err(
                field,
                quote(name),
                format!("is already the name of {kind}[{first}]"),
            ));
        }
        Ok(())
    }

    fn ipv4(&self, field: &str, text: &str) -> Result<Ipv4Addr, ConfigError> {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ok(a),
            Ok(IpAddr::V6(_)) => Err(self.err(
                field,
                quote(text),
                "is an IPv6 address; only IPv4 is supported for now",
            )),
            Err(_) => Err(self.err(field, quote(text), "is not an IPv4 address")),
        }
    }

    fn unicast(&self, field: &str, text: &str) -> Result<Ipv4Addr, ConfigError> {
        let a = self.ipv4(field, text)?;
        match not_unicast(a) {
            Some(why) => Err(self.err(field, a, why)),
            None => Ok(a),
        }
    }

    /// A unicast address that is not one of ours.
    fn foreign(&self, field: &str, text: &str) -> Result<Ipv4Addr, ConfigError> {
        let a = self.unicast(field, text)?;
        match self.ours.get(&a) {
            Some(owner) => Err(self.err(field, a, format!("is our own address ({owner})"))),
            None => Ok(a),
        }
    }

    /// `[bgp]`: our AS number, the router ID, the accepted prefix lengths, BFD's timers.
    fn bgp(&self, b: &RawBgp, ports: &[PortConfig]) -> Result<BgpConfig, ConfigError> {
        let asn = self.asn("bgp.asn", b.asn)?;
        let (ibgp_peers, ibgp_source) = self.ibgp(b, ports)?;
        let router_id = match &b.router_id {
            Some(text) => self.unicast("bgp.router_id", text)?,
            None => match ports.iter().flat_map(|p| p.addresses.iter()).next() {
                Some(a) => *a,
                None => {
                    return Err(self.err(
                        "bgp.router_id",
                        "(absent)",
                        "is needed: no port has an address to take it from",
                    ))
                }
            },
        };
        Ok(BgpConfig {
            asn,
            router_id,
            max_prefix_len: self.ranged(
                "bgp.max_prefix_len".into(),
                b.max_prefix_len,
                &(8..=32),
                "a prefix length",
            )?,
            bfd_interval_ms: self.ranged(
                "bgp.bfd_interval_ms".into(),
                b.bfd_interval_ms,
                &(10..=60_000),
                "an interval in milliseconds",
            )?,
            bfd_multiplier: self.ranged(
                "bgp.bfd_multiplier".into(),
                b.bfd_multiplier,
                &(2..=255),
                "a detection multiplier",
            )?,
            frr_config: match &b.frr_config {
                Some(p) if p.is_empty() => {
                    return Err(self.err("bgp.frr_config", quote(p), "is empty: a file path"))
                }
                Some(p) => Some(p.into()),
                None => None,
            },
            frr_reload: match &b.frr_reload {
                Some(_) if b.frr_config.is_none() => {
                    return Err(self.err(
                        "bgp.frr_reload",
                        "[...]",
                        "needs frr_config: the file it makes FRR take",
                    ))
                }
                Some(cmd) if cmd.is_empty() => {
                    return Err(self.err("bgp.frr_reload", "[]", "is empty: a command"))
                }
                Some(cmd) => {
                    if let Some(i) = cmd.iter().position(String::is_empty) {
                        return Err(self.err(
                            format!("bgp.frr_reload[{i}]"),
                            "\"\"",
                            "is empty: a command's word",
                        ));
                    }
                    Some(cmd.clone())
                }
                None => None,
            },
            ibgp_bfd: match (b.ibgp_bfd, ibgp_peers.is_empty()) {
                (true, true) => {
                    return Err(self.err(
                        "bgp.ibgp_bfd",
                        "true",
                        "is for iBGP sessions: give bgp.ibgp_peers, or leave it out",
                    ))
                }
                (on, _) => on,
            },
            ibgp_peers,
            ibgp_source,
        })
    }

    /// `[bgp] ibgp_peers` and `ibgp_source`: iBGP across the core, from our address on a
    /// core port whose host interface the sessions run through.
    fn ibgp(
        &self,
        b: &RawBgp,
        ports: &[PortConfig],
    ) -> Result<(Vec<Ipv4Addr>, Option<Ipv4Addr>), ConfigError> {
        let mut peers: Vec<Ipv4Addr> = Vec::with_capacity(b.ibgp_peers.len());
        for (k, text) in b.ibgp_peers.iter().enumerate() {
            let field = format!("bgp.ibgp_peers[{k}]");
            let a = self.foreign(&field, text)?;
            if let Some(first) = peers.iter().position(|&p| p == a) {
                return Err(self.err(field, a, format!("is already bgp.ibgp_peers[{first}]")));
            }
            peers.push(a);
        }
        let source = match (&b.ibgp_source, peers.is_empty()) {
            (None, true) => return Ok((peers, None)),
            (None, false) => {
                return Err(self.err(
                    "bgp.ibgp_source",
                    "(absent)",
                    "is needed with ibgp_peers: our core address, the sessions' source and \
                     the next hop the other edges route our clients to",
                ))
            }
            (Some(text), true) => {
                return Err(self.err(
                    "bgp.ibgp_source",
                    quote(text),
                    "is for iBGP sessions: give bgp.ibgp_peers, or leave it out",
                ))
            }
            (Some(text), false) => self.unicast("bgp.ibgp_source", text)?,
        };
        let port = ports.iter().find(|p| p.addresses.contains(&source));
        match port {
            None => Err(self.err(
                "bgp.ibgp_source",
                source,
                "is not one of our ports' addresses: the iBGP sessions start from it",
            )),
            Some(p) if !p.roles.contains(&Role::Core) => Err(self.err(
                "bgp.ibgp_source",
                source,
                format!(
                    "is an address of port {:?}, which has no \"core\" role: the sessions and \
                     the routes they bring run across the core",
                    p.name
                ),
            )),
            Some(p) if !p.host_interface => Err(self.err(
                "bgp.ibgp_source",
                source,
                format!(
                    "is an address of port {:?}, which has no host interface: FRR's sessions \
                     need one (host_interface = true)",
                    p.name
                ),
            )),
            Some(_) => Ok((peers, Some(source))),
        }
    }

    /// An AS number: 1 to 4,294,967,294, and not AS_TRANS (23456, RFC 6793).
    fn asn(&self, field: &str, value: i64) -> Result<u32, ConfigError> {
        let asn: u32 = self.ranged(field.into(), value, &(1..=4_294_967_294), "an AS number")?;
        if asn == 23_456 {
            return Err(self.err(
                field,
                asn,
                "is AS_TRANS (RFC 6793), which no router may use as its own",
            ));
        }
        Ok(asn)
    }

    /// A tunnel's `asn` and `bfd`: an eBGP session with the client router, to its side of
    /// the tunnel's link.
    fn tunnel_bgp(
        &self,
        i: usize,
        t: &RawTunnel,
        tunnel: &TunnelConfig,
    ) -> Result<Option<TunnelBgp>, ConfigError> {
        let path = tunnel_path(i, &t.name);
        let Some(raw_asn) = t.asn else {
            if let Some(bfd) = t.bfd {
                return Err(self.err(
                    format!("{path}.bfd"),
                    bfd,
                    "is for a BGP session: give the tunnel an asn, or leave bfd out",
                ));
            }
            return Ok(None);
        };
        let field = format!("{path}.asn");
        let asn = self.asn(&field, raw_asn)?;
        let Some(bgp) = &self.bgp else {
            return Err(self.err(
                &field,
                asn,
                "needs a [bgp] section (our own AS number and the session defaults)",
            ));
        };
        if asn == bgp.asn {
            return Err(self.err(
                &field,
                asn,
                "is our own AS number ([bgp] asn): the session with a client is eBGP, its AS \
                 must differ",
            ));
        }
        let Some(link) = tunnel.link else {
            return Err(self.err(
                &field,
                asn,
                "needs the tunnel's link: the session runs inside the tunnel, between the two \
                 sides of the link",
            ));
        };
        let ours = u32::from(link.addr());
        let peer =
            match link.prefix_len() {
                31 => ours ^ 1,
                30 => {
                    let net = u32::from(link.network());
                    // The two usable addresses: network + 1 and + 2.
                    if ours == net + 1 {
                        net + 2
                    } else {
                        net + 1
                    }
                }
                _ => return Err(self.err(
                    format!("{path}.link"),
                    link,
                    "must be a /31 or a /30 for a BGP session: the client router's side is then \
                     the link's other address",
                )),
            };
        Ok(Some(TunnelBgp {
            asn,
            peer: Ipv4Addr::from(peer),
            bfd: t.bfd.unwrap_or(true),
        }))
    }

    /// A host interface `bb-<name>` must fit Linux's 15 characters, and be one of a kind.
    fn interface_name(&mut self, field: &str, name: &str) -> Result<(), ConfigError> {
        let ifname = format!("{HOST_INTERFACE_PREFIX}{name}");
        if ifname.len() > MAX_INTERFACE_NAME {
            return Err(self.err(
                field,
                quote(name),
                format!(
                    "names a host interface {ifname:?} longer than Linux's {MAX_INTERFACE_NAME} \
                     characters: give this port or tunnel a name of at most {} characters",
                    MAX_INTERFACE_NAME - HOST_INTERFACE_PREFIX.len()
                ),
            ));
        }
        if let Some(first) = self.interfaces.get(&ifname) {
            return Err(self.err(
                field,
                quote(name),
                format!("names the host interface {ifname:?} that {first} names too"),
            ));
        }
        self.interfaces.insert(ifname, field.to_owned());
        Ok(())
    }

    /// A tunnel's `link`: our address inside the tunnel with the prefix that holds the
    /// client router's side (`169.254.10.1/31`).
    fn link(&mut self, field: &str, text: &str, tunnel: &str) -> Result<Ipv4Net, ConfigError> {
        let net = match text.parse::<Ipv4Net>() {
            Ok(n) => n,
            Err(_) => {
                return Err(self.err(
                    field,
                    quote(text),
                    "is not an IPv4 address with a prefix length (ours inside the tunnel, \
                     like 169.254.10.1/31)",
                ))
            }
        };
        if !(8..=31).contains(&net.prefix_len()) {
            return Err(self.err(
                field,
                quote(text),
                "needs a prefix length of 8 to 31: the prefix must also hold the client \
                 router's side of the link",
            ));
        }
        let addr = net.addr();
        if let Some(problem) = not_unicast(addr) {
            return Err(self.err(field, quote(text), problem));
        }
        if net.prefix_len() < 31 && (addr == net.network() || addr == net.broadcast()) {
            return Err(self.err(
                field,
                quote(text),
                "is the prefix's network or broadcast address, not one for us",
            ));
        }
        if let Some(owner) = self.ours.get(&addr) {
            return Err(self.err(
                field,
                quote(text),
                format!("is already configured as {owner}"),
            ));
        }
        if let Some((other, first)) = self
            .links
            .iter()
            .find(|(other, _)| other.contains(&net.network()) || net.contains(&other.network()))
        {
            return Err(self.err(
                field,
                quote(text),
                format!("overlaps {first}'s link {other}: each tunnel's link is its own"),
            ));
        }
        self.interface_name(field, tunnel)?;
        self.ours.to_mut().insert(addr, field.to_owned());
        self.links.push((net, field.to_owned()));
        Ok(net)
    }

    /// An IPv4 or IPv6 prefix without host bits.
    fn any_prefix(&self, field: &str, text: &str) -> Result<IpNet, ConfigError> {
        let Ok(net) = text.parse::<IpNet>() else {
            return Err(self.err(
                field,
                quote(text),
                "is not an IPv4 or IPv6 prefix (address/length, like 10.1.0.0/16 or \
                 2001:db8:1::/48)",
            ));
        };
        if net.trunc() != net {
            return Err(self.err(
                field,
                quote(text),
                format!("has host bits set (the prefix is {})", net.trunc()),
            ));
        }
        Ok(net)
    }

    /// A tunnel's `link6`: our IPv6 address inside the tunnel with the prefix that holds
    /// the client router's side (`fd00:10::1/127`).
    fn link6(&mut self, field: &str, text: &str) -> Result<Ipv6Net, ConfigError> {
        let Ok(net) = text.parse::<Ipv6Net>() else {
            return Err(self.err(
                field,
                quote(text),
                "is not an IPv6 address with a prefix length (ours inside the tunnel, \
                 like fd00:10::1/127)",
            ));
        };
        if !(16..=127).contains(&net.prefix_len()) {
            return Err(self.err(
                field,
                quote(text),
                "needs a prefix length of 16 to 127: the prefix must also hold the client \
                 router's side of the link",
            ));
        }
        let addr = net.addr();
        if let Some(problem) = not_unicast6(addr) {
            return Err(self.err(field, quote(text), problem));
        }
        if net.prefix_len() < 127 && addr == net.network() {
            return Err(self.err(
                field,
                quote(text),
                "is the prefix's Subnet-Router anycast address (RFC 4291 2.6.1), not one for us",
            ));
        }
        if let Some(owner) = self.ours6.get(&addr) {
            return Err(self.err(
                field,
                quote(text),
                format!("is already configured as {owner}"),
            ));
        }
        self.ours6.insert(addr, field.to_owned());
        Ok(net)
    }

    fn prefix(&self, field: &str, text: &str) -> Result<Ipv4Net, ConfigError> {
        let net = match text.parse::<IpNet>() {
            Ok(IpNet::V4(net)) => net,
            Ok(IpNet::V6(_)) => {
                return Err(self.err(
                    field,
                    quote(text),
                    "is an IPv6 prefix; IPv6 routes are changed with the whole \
                     configuration (apply_config, or the file), not one by one",
                ))
            }
            Err(_) => {
                return Err(self.err(
                    field,
                    quote(text),
                    "is not an IPv4 prefix (address/length, like 10.1.0.0/16)",
                ))
            }
        };
        if net.trunc() != net {
            return Err(self.err(
                field,
                quote(text),
                format!("has host bits set (the prefix is {})", net.trunc()),
            ));
        }
        Ok(net)
    }

    fn mac(&self, field: &str, text: &str) -> Result<MacAddr, ConfigError> {
        let mac: MacAddr = text
            .parse()
            .map_err(|e| self.err(field, quote(text), format!("is {e}")))?;
        if !mac.is_unicast() {
            return Err(self.err(field, quote(text), "is not a unicast MAC address"));
        }
        Ok(mac)
    }

    fn workers(&self, lcores: Option<&[i64]>) -> Result<Option<Vec<u32>>, ConfigError> {
        let Some(lcores) = lcores else {
            return Ok(None);
        };
        if lcores.is_empty() {
            return Err(self.err(
                "workers.lcores",
                "[]",
                "names no lcore; leave the field out to use every EAL worker lcore",
            ));
        }
        let mut out: Vec<u32> = Vec::with_capacity(lcores.len());
        for (i, &lcore) in lcores.iter().enumerate() {
            let field = format!("workers.lcores[{i}]");
            let id =
                u32::try_from(lcore).map_err(|_| self.err(&field, lcore, "is not an lcore id"))?;
            if let Some(first) = out.iter().position(|&x| x == id) {
                return Err(self.err(
                    field,
                    lcore,
                    format!("is already listed as workers.lcores[{first}]"),
                ));
            }
            out.push(id);
        }
        Ok(Some(out))
    }

    fn poll(&self, w: &RawWorkers) -> Result<PollConfig, ConfigError> {
        let mode = match &w.poll {
            None => PollMode::Adaptive,
            Some(word) => word.parse().map_err(|e| {
                self.err(
                    "workers.poll",
                    quote(word),
                    format!("is not a polling mode ({e})"),
                )
            })?,
        };
        let idle_sleep_max_us = match w.idle_sleep_max_us {
            None => DEFAULT_IDLE_SLEEP_MAX_US,
            Some(_) if mode == PollMode::Busy => {
                return Err(self.err_bare(
                    "workers.idle_sleep_max_us",
                    "is for poll = \"adaptive\" only: busy workers never sleep (leave it out, \
                     or poll adaptively)",
                ))
            }
            Some(us) => self.ranged(
                "workers.idle_sleep_max_us".into(),
                us,
                &IDLE_SLEEP_MAX_US_RANGE,
                "a sleep in microseconds",
            )?,
        };
        Ok(PollConfig {
            mode,
            idle_sleep_max_us,
        })
    }

    fn ports(&mut self, raw: &[RawPort]) -> Result<Vec<PortConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err_bare("port", "at least one [[port]] is required"));
        }
        let mut ports: Vec<PortConfig> = Vec::with_capacity(raw.len());
        for (i, p) in raw.iter().enumerate() {
            let port = self.port(i, p, &ports)?;
            ports.push(port);
        }
        // Neighbours may not be our own addresses, on any port (known only now).
        for (i, (p, raw_port)) in ports.iter().zip(raw).enumerate() {
            for (k, n) in p.neighbors.iter().enumerate() {
                if let Some(owner) = self.ours.get(&n.ip) {
                    return Err(self.err(
                        format!(
                            "{}.neighbor[{}].ip",
                            port_path(i, &p.name),
                            neighbor4_index(raw_port, k)
                        ),
                        n.ip,
                        format!("is our own address ({owner})"),
                    ));
                }
            }
            for (k, n) in p.neighbors6.iter().enumerate() {
                if let Some(owner) = self.ours6.get(&n.ip) {
                    return Err(self.err(
                        format!(
                            "{}.neighbor[{}].ip",
                            port_path(i, &p.name),
                            neighbor6_index(raw_port, k)
                        ),
                        n.ip,
                        format!("is our own address ({owner})"),
                    ));
                }
            }
        }
        Ok(ports)
    }

    fn port(
        &mut self,
        i: usize,
        p: &RawPort,
        before: &[PortConfig],
    ) -> Result<PortConfig, ConfigError> {
        let path = port_path(i, &p.name);
        self.name(
            format!("port[{i}].name"),
            &p.name,
            before.iter().position(|x| x.name == p.name),
            "port",
        )?;
        if p.device.is_empty() {
            return Err(self.err(format!("{path}.device"), quote(&p.device), "is empty"));
        }
        if let Some(j) = before.iter().position(|x| x.device == p.device) {
            return Err(self.err(
                format!("{path}.device"),
                quote(&p.device),
                format!("is already the device of {}", port_path(j, &before[j].name)),
            ));
        }

        if p.roles.is_empty() {
            return Err(self.err(
                format!("{path}.roles"),
                "[]",
                format!(
                    "names no role; give at least one of {}",
                    quoted_list(Role::WORDS)
                ),
            ));
        }
        let mut roles = Vec::with_capacity(p.roles.len());
        for (k, r) in p.roles.iter().enumerate() {
            let field = format!("{path}.roles[{k}]");
            let role: Role = r
                .parse()
                .map_err(|e| self.err(&field, quote(r), format!("is not a role ({e})")))?;
            if roles.contains(&role) {
                return Err(self.err(field, quote(r), "is listed twice"));
            }
            roles.push(role);
        }

        let mac = match &p.mac {
            Some(m) => Some(self.mac(&format!("{path}.mac"), m)?),
            None => None,
        };

        let mut addresses = Vec::with_capacity(p.addresses.len());
        let mut addresses6 = Vec::new();
        for (k, a) in p.addresses.iter().enumerate() {
            let field = format!("{path}.addresses[{k}]");
            if let Ok(IpAddr::V6(addr)) = a.parse::<IpAddr>() {
                let addr = self.port_address6(&field, addr)?;
                addresses6.push(addr);
                continue;
            }
            let addr = self.unicast(&field, a)?;
            if let Some(owner) = self.ours.get(&addr) {
                return Err(self.err(field, addr, format!("is already configured as {owner}")));
            }
            self.ours.to_mut().insert(addr, field);
            addresses.push(addr);
        }

        let mtu = self.ranged(format!("{path}.mtu"), p.mtu, &PORT_MTU_RANGE, "a port MTU")?;
        let rx_queues = self.ranged(
            format!("{path}.rx_queues"),
            p.rx_queues,
            &QUEUES_RANGE,
            "a queue count",
        )?;
        let tx_queues = self.ranged(
            format!("{path}.tx_queues"),
            p.tx_queues,
            &QUEUES_RANGE,
            "a queue count",
        )?;

        let mut neighbors: Vec<NeighborConfig> = Vec::with_capacity(p.neighbors.len());
        let mut neighbors6: Vec<Neighbor6Config> = Vec::new();
        for (k, n) in p.neighbors.iter().enumerate() {
            let field = format!("{path}.neighbor[{k}]");
            if let Ok(IpAddr::V6(ip)) = n.ip.parse::<IpAddr>() {
                if let Some(problem) = not_unicast6(ip) {
                    return Err(self.err(format!("{field}.ip"), ip, problem));
                }
                if let Some(first) = neighbors6.iter().position(|x| x.ip == ip) {
                    return Err(self.err(
                        format!("{field}.ip"),
                        ip,
                        format!("is already {path}.neighbor[{}]", neighbor6_index(p, first)),
                    ));
                }
                let mac = self.mac(&format!("{field}.mac"), &n.mac)?;
                neighbors6.push(Neighbor6Config { ip, mac });
                continue;
            }
            let ip = self.unicast(&format!("{field}.ip"), &n.ip)?;
            if let Some(first) = neighbors.iter().position(|x| x.ip == ip) {
                return Err(self.err(
                    format!("{field}.ip"),
                    ip,
                    format!("is already {path}.neighbor[{}]", neighbor4_index(p, first)),
                ));
            }
            let mac = self.mac(&format!("{field}.mac"), &n.mac)?;
            neighbors.push(NeighborConfig { ip, mac });
        }

        let host_interface = p.host_interface.unwrap_or(false);
        if host_interface {
            self.interface_name(&format!("{path}.host_interface"), &p.name)?;
        }

        Ok(PortConfig {
            name: p.name.clone(),
            device: p.device.clone(),
            host_interface,
            transit: p
                .transit
                .unwrap_or(roles.contains(&Role::Internet) || roles.contains(&Role::Lan)),
            roles,
            mac,
            addresses,
            addresses6,
            mtu,
            rx_queues,
            tx_queues,
            neighbors,
            neighbors6,
        })
    }

    /// One of a port's IPv6 addresses: global unicast, not configured elsewhere.
    fn port_address6(&mut self, field: &str, addr: Ipv6Addr) -> Result<Ipv6Addr, ConfigError> {
        if addr.segments()[0] & 0xffc0 == 0xfe80 {
            return Err(self.err(
                field,
                addr,
                "is a link-local address (fe80::/10): each port has its own already, \
                 derived from its MAC (modified EUI-64); give a global address here",
            ));
        }
        if let Some(problem) = not_unicast6(addr) {
            return Err(self.err(field, addr, problem));
        }
        if let Some(owner) = self.ours6.get(&addr) {
            return Err(self.err(field, addr, format!("is already configured as {owner}")));
        }
        self.ours6.insert(addr, field.to_owned());
        Ok(addr)
    }

    fn tunnels(
        &mut self,
        raw: &[RawTunnel],
        ports: &[PortConfig],
    ) -> Result<Vec<TunnelConfig>, ConfigError> {
        let mut tunnels: Vec<TunnelConfig> = Vec::with_capacity(raw.len());
        let mut identities: HashMap<(IpAddr, IpAddr, TunnelMode, Option<u32>), usize> =
            HashMap::new();
        let port_index = index_by_name(ports.iter().map(|p| p.name.as_str()));
        let mut names: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
        for (i, t) in raw.iter().enumerate() {
            let tunnel = self.tunnel(i, t, ports, &port_index, &names)?;
            names.insert(&t.name, i);
            let (local, remote, _) = tunnel.endpoints();
            let identity = (local, remote, tunnel.mode, tunnel.key);
            if let Some(&first) = identities.get(&identity) {
                let mut value = format!("(local {local}, remote {remote}, mode {}", tunnel.mode);
                match tunnel.key {
                    Some(key) => value.push_str(&format!(", key {key})")),
                    None => value.push_str(", no key)"),
                }
                return Err(self.err(
                    tunnel_path(i, &t.name),
                    value,
                    format!(
                        "is already the endpoint of {}; received packets could not tell them apart",
                        tunnel_path(first, &tunnels[first].name)
                    ),
                ));
            }
            identities.insert(identity, i);
            let mut tunnel = tunnel;
            if let Some(text) = &t.link {
                let field = format!("{}.link", tunnel_path(i, &t.name));
                tunnel.link = Some(self.link(&field, text, &t.name)?);
            }
            let field = format!("{}.link6", tunnel_path(i, &t.name));
            // IPv6 is never fragmented by routers, and the appliance does not fragment the
            // outer packet (RFC 4213 3.2): the tunnel must carry IPv6's minimum MTU.
            if (t.link6.is_some() || tunnel.source_prefixes6().next().is_some())
                && tunnel.inner_mtu() < MIN_IPV6_MTU
            {
                let (value, what) = match t.mtu {
                    Some(m) => (m.to_string(), String::new()),
                    None => (
                        tunnel.mtu.to_string(),
                        format!(" (the default, port {:?}'s mtu)", tunnel.port.name),
                    ),
                };
                return Err(self.err(
                    format!("{}.mtu", tunnel_path(i, &t.name)),
                    value,
                    format!(
                        "{what} leaves {} bytes for the inner packet; a tunnel that carries \
                         IPv6 needs at least {MIN_IPV6_MTU} (RFC 8200 section 5): at least {} \
                         here",
                        tunnel.inner_mtu(),
                        MIN_IPV6_MTU + tunnel.header_len()
                    ),
                ));
            }
            match &t.link6 {
                Some(text) => tunnel.link6 = Some(self.link6(&field, text)?),
                None if tunnel.source_prefixes6().next().is_some() => {
                    return Err(self.err_bare(
                        field,
                        "is missing; a tunnel with IPv6 prefixes or extra_sources needs our \
                         IPv6 address inside it (like \"fd00:10::1/127\"): the source of the \
                         ICMPv6 errors (Packet Too Big among them) sent into the tunnel",
                    ))
                }
                None => {}
            }
            tunnel.bgp = self.tunnel_bgp(i, t, &tunnel)?;
            tunnel.backup = self.backup(i, t, &tunnel, &tunnels)?;
            self.tunnel_prefixes(i, &tunnel, t)?;
            self.tunnel_prefixes6(i, &tunnel, t)?;
            tunnels.push(tunnel);
        }
        Ok(tunnels)
    }

    fn tunnel(
        &self,
        i: usize,
        t: &RawTunnel,
        ports: &[PortConfig],
        port_index: &HashMap<&str, usize>,
        names: &HashMap<&str, usize>,
    ) -> Result<TunnelConfig, ConfigError> {
        let path = tunnel_path(i, &t.name);
        self.name(
            format!("tunnel[{i}].name"),
            &t.name,
            names.get(t.name.as_str()).copied(),
            "tunnel",
        )?;
        let mode: TunnelMode = t.mode.parse().map_err(|e| {
            self.err(
                format!("{path}.mode"),
                quote(&t.mode),
                format!("is not a tunnel mode ({e})"),
            )
        })?;

        let index = port_index.get(t.port.as_str()).copied().ok_or_else(|| {
            self.err(
                format!("{path}.port"),
                quote(&t.port),
                "is not a configured port",
            )
        })?;
        let port = &ports[index];

        // IPv6 endpoints (GRE over IPv6, RFC 7676; IP in IPv6, RFC 2473): `local` says
        // which family the tunnel's outer header is; `remote` and `next_hop` follow it.
        let outer6 = if is_ipv6_text(&t.local) {
            Some(self.outer6(&path, t, port)?)
        } else {
            None
        };
        let (local, remote) = match outer6 {
            Some(_) => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED),
            None => {
                let field = format!("{path}.local");
                let local = self.ipv4(&field, &t.local)?;
                if !self.ours.contains_key(&local) {
                    return Err(self.err(field, local, "is not one of our port addresses"));
                }
                let field = format!("{path}.remote");
                if is_ipv6_text(&t.remote) {
                    return Err(self.err(
                        field,
                        quote(&t.remote),
                        format!(
                            "is an IPv6 address but local {} is IPv4; a tunnel's endpoints \
                             are of one family",
                            t.local
                        ),
                    ));
                }
                (local, self.foreign(&field, &t.remote)?)
            }
        };

        if mode == TunnelMode::Ipip {
            for (name, value) in [
                ("key", t.key.map(|v| v.to_string())),
                ("sequence", t.sequence.map(|v| v.to_string())),
                ("checksum", t.checksum.map(|v| v.to_string())),
            ] {
                if let Some(value) = value {
                    return Err(self.err(
                        format!("{path}.{name}"),
                        value,
                        "is set on an ipip tunnel; key, sequence and checksum are for GRE only",
                    ));
                }
            }
        }
        let key = match t.key {
            Some(k) => Some(
                u32::try_from(k)
                    .map_err(|_| self.err(format!("{path}.key"), k, "is not a 32-bit key"))?,
            ),
            None => None,
        };
        let sequence = t.sequence.unwrap_or(false);
        let checksum = t.checksum.unwrap_or(false);

        let ttl = match &t.ttl {
            IntOrWord::Int(n) => u8::try_from(*n).ok().filter(|&n| n >= 1).map(Ttl::Fixed),
            IntOrWord::Word(w) if w == "inherit" => Some(Ttl::Inherit),
            IntOrWord::Word(_) => None,
        }
        .ok_or_else(|| {
            self.err(
                format!("{path}.ttl"),
                int_or_word(&t.ttl),
                "is not a TTL (1..=255 or \"inherit\")",
            )
        })?;
        let dscp = match &t.dscp {
            IntOrWord::Int(n) => u8::try_from(*n).ok().filter(|&n| n <= 63).map(Dscp::Fixed),
            IntOrWord::Word(w) if w == "copy" => Some(Dscp::Copy),
            IntOrWord::Word(_) => None,
        }
        .ok_or_else(|| {
            self.err(
                format!("{path}.dscp"),
                int_or_word(&t.dscp),
                "is not a DSCP (0..=63 or \"copy\")",
            )
        })?;
        let df: Df = t.df.parse().map_err(|e| {
            self.err(
                format!("{path}.df"),
                quote(&t.df),
                format!("is not a DF policy ({e})"),
            )
        })?;

        let next_hop = match (&t.next_hop, outer6) {
            (_, Some(_)) => Ipv4Addr::UNSPECIFIED,
            (Some(nh), None) => self.foreign(&format!("{path}.next_hop"), nh)?,
            (None, None) => remote,
        };

        let headers = header_len(mode, key.is_some(), sequence, checksum)
            + if outer6.is_some() { OUTER6_EXTRA } else { 0 };
        let least = MIN_INNER_MTU + headers;
        let mtu = match t.mtu {
            Some(m) => {
                let field = format!("{path}.mtu");
                if m > i64::from(port.mtu) {
                    return Err(self.err(
                        field,
                        m,
                        format!("is above the mtu of port {:?} ({})", port.name, port.mtu),
                    ));
                }
                if m < i64::from(least) {
                    return Err(self.err(
                        field,
                        m,
                        format!(
                            "leaves less than {MIN_INNER_MTU} bytes for the inner packet after \
                             {headers} bytes of headers (at least {least})"
                        ),
                    ));
                }
                // In range: least <= m <= port.mtu <= u16::MAX.
                port.mtu.min(u16::try_from(m).unwrap_or(u16::MAX))
            }
            None if port.mtu < least => {
                return Err(self.err(
                    format!("{path}.mtu"),
                    port.mtu,
                    format!(
                        "(the default, port {:?}'s mtu) leaves less than {MIN_INNER_MTU} bytes \
                         for the inner packet after {headers} bytes of headers (at least {least})",
                        port.name
                    ),
                ));
            }
            None => port.mtu,
        };

        let mut prefixes = Vec::with_capacity(t.prefixes.len());
        let mut extra_sources = Vec::with_capacity(t.extra_sources.len());
        let mut prefixes6 = Vec::new();
        let mut extra_sources6 = Vec::new();
        let mut seen: HashMap<IpNet, String> = HashMap::new();
        for (list, name, out, out6) in [
            (&t.prefixes, "prefixes", &mut prefixes, &mut prefixes6),
            (
                &t.extra_sources,
                "extra_sources",
                &mut extra_sources,
                &mut extra_sources6,
            ),
        ] {
            for (k, text) in list.iter().enumerate() {
                let field = format!("{path}.{name}[{k}]");
                let net = self.any_prefix(&field, text)?;
                if let Some(first) = seen.get(&net) {
                    return Err(self.err(field, net, format!("is already listed as {first}")));
                }
                seen.insert(net, field);
                match net {
                    IpNet::V4(n) => out.push(n),
                    IpNet::V6(n) => out6.push(n),
                }
            }
        }

        if outer6.is_some() && t.probe == Some(true) {
            return Err(self.err(
                format!("{path}.probe"),
                true,
                "is not available on a tunnel with IPv6 endpoints yet (its probes are IPv4 \
                 packets from local)",
            ));
        }

        Ok(TunnelConfig {
            name: t.name.clone(),
            // Checked in `tunnels`, after the receive identity.
            link: None,
            bgp: None,
            backup: None,
            probe: t.probe.unwrap_or(false),
            local_pref: match t.local_pref {
                None => None,
                Some(_) if self.bgp.is_none() => {
                    return Err(self.err(
                        format!("{path}.local_pref"),
                        t.local_pref.unwrap_or_default(),
                        "needs a [bgp] section: it is the BGP local preference of the client's \
                         routes",
                    ))
                }
                Some(v) => Some(self.ranged(
                    format!("{path}.local_pref"),
                    v,
                    &(0..=u32::MAX),
                    "a local preference",
                )?),
            },
            fallback: t
                .fallback
                .unwrap_or_else(|| ports.iter().any(|p| p.roles.contains(&Role::Internet))),
            mode,
            local,
            remote,
            key,
            sequence,
            checksum,
            ttl,
            dscp,
            df,
            port: PortRef {
                index,
                name: port.name.clone(),
            },
            next_hop,
            outer6,
            mtu,
            prefixes,
            extra_sources,
            prefixes6,
            extra_sources6,
            // Checked in `tunnels`, with `link`.
            link6: None,
        })
    }

    /// A tunnel's IPv6 endpoints (its `local` is IPv6): `local` one of the egress port's
    /// IPv6 addresses (packets to it are terminated only there), `remote` and `next_hop`
    /// IPv6 global unicast and not ours.
    fn outer6(&self, path: &str, t: &RawTunnel, port: &PortConfig) -> Result<Outer6, ConfigError> {
        let v6 = |name: &str, text: &str| -> Result<Ipv6Addr, ConfigError> {
            let field = format!("{path}.{name}");
            match text.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) => Ok(a),
                Ok(IpAddr::V4(_)) => Err(self.err(
                    field,
                    quote(text),
                    format!(
                        "is an IPv4 address but local {} is IPv6; a tunnel's endpoints are of \
                         one family",
                        t.local
                    ),
                )),
                Err(_) => Err(self.err(field, quote(text), "is not an IP address")),
            }
        };
        let local = v6("local", &t.local)?;
        if !port.addresses6.contains(&local) {
            return Err(self.err(
                format!("{path}.local"),
                local,
                format!(
                    "is not one of port {:?}'s IPv6 addresses (the tunnel's port: its packets \
                     arrive there)",
                    port.name
                ),
            ));
        }
        let foreign = |name: &str, text: &str| -> Result<Ipv6Addr, ConfigError> {
            let a = v6(name, text)?;
            let field = format!("{path}.{name}");
            if let Some(why) = not_unicast6(a) {
                return Err(self.err(field, a, why));
            }
            if let Some(owner) = self.ours6.get(&a) {
                return Err(self.err(field, a, format!("is our own address ({owner})")));
            }
            Ok(a)
        };
        let remote = foreign("remote", &t.remote)?;
        let next_hop = match &t.next_hop {
            Some(nh) => foreign("next_hop", nh)?,
            None => remote,
        };
        Ok(Outer6 {
            local,
            remote,
            next_hop,
        })
    }

    /// The primary a backup tunnel stands in for: an earlier tunnel, itself no backup, that
    /// can go down (probed, or with a BGP session) and falls back while down; the backup
    /// has no prefixes or extra sources of its own (it carries and accepts its primary's).
    fn backup(
        &self,
        i: usize,
        t: &RawTunnel,
        tunnel: &TunnelConfig,
        before: &[TunnelConfig],
    ) -> Result<Option<TunnelRef>, ConfigError> {
        let Some(name) = &t.backup else {
            return Ok(None);
        };
        let path = tunnel_path(i, &t.name);
        let field = format!("{path}.backup");
        let Some(index) = before.iter().position(|p| &p.name == name) else {
            return Err(self.err(
                field,
                quote(name),
                "is not a tunnel defined earlier in the file (a backup names its primary)",
            ));
        };
        let primary = &before[index];
        if let Some(first) = &primary.backup {
            return Err(self.err(
                field,
                quote(name),
                format!(
                    "is itself a backup (of {:?}); name the primary instead",
                    first.name
                ),
            ));
        }
        if !primary.fallback {
            return Err(self.err(
                field,
                quote(name),
                "has fallback = false: its prefixes never leave it, so a backup would never \
                 carry them",
            ));
        }
        let found_down_by_bgp = primary.bgp.is_some() && self.fpm;
        if !(primary.probe || found_down_by_bgp) {
            return Err(self.err(
                field,
                quote(name),
                "is neither probed (probe = true) nor has a BGP session (asn) whose routes \
                 reach the appliance ([fpm]): nothing would ever find it down, so a backup \
                 would never carry its prefixes",
            ));
        }
        let lists: [(Option<String>, &str); 2] = [
            (
                tunnel
                    .prefixes
                    .first()
                    .map(ToString::to_string)
                    .or_else(|| tunnel.prefixes6.first().map(ToString::to_string)),
                "prefixes",
            ),
            (
                tunnel
                    .extra_sources
                    .first()
                    .map(ToString::to_string)
                    .or_else(|| tunnel.extra_sources6.first().map(ToString::to_string)),
                "extra_sources",
            ),
        ];
        for (first, what) in lists {
            if let Some(net) = first {
                return Err(self.err(
                    format!("{path}.{what}[0]"),
                    net,
                    format!(
                        "is set on a backup tunnel; a backup carries and accepts the {what} of \
                         its primary {name:?}"
                    ),
                ));
            }
        }
        Ok(Some(TunnelRef {
            index,
            name: name.clone(),
        }))
    }

    /// `[site]`: the site's own prefixes, with the LAN ports they are for. Every LAN port
    /// needs the section and the section a LAN port; no site prefix is exactly a tunnel's
    /// source prefix (nested ones are what longest match is for: a carrier's aggregate
    /// around the site's own space).
    fn site(
        &self,
        raw: Option<&crate::schema::RawSite>,
        ports: &[PortConfig],
    ) -> Result<Option<SiteConfig>, ConfigError> {
        let lan = ports.iter().position(|p| p.has_role(Role::Lan));
        let Some(raw) = raw else {
            if let Some(i) = lan {
                return Err(self.err(
                    format!("{}.roles", port_path(i, &ports[i].name)),
                    "\"lan\"",
                    "needs a [site] section: its prefixes are the only sources accepted from a \
                     LAN port",
                ));
            }
            return Ok(None);
        };
        if lan.is_none() {
            return Err(self.err_bare(
                "site",
                "is for a client site's router: give a port the \"lan\" role, or leave [site] out",
            ));
        }
        if raw.prefixes.is_empty() {
            return Err(self.err("site.prefixes", "[]", "names no prefix; give at least one"));
        }
        let mut prefixes: Vec<Ipv4Net> = Vec::with_capacity(raw.prefixes.len());
        for (k, text) in raw.prefixes.iter().enumerate() {
            let field = format!("site.prefixes[{k}]");
            let net = self.prefix(&field, text)?;
            if let Some(first) = prefixes.iter().position(|p| *p == net) {
                return Err(self.err(field, net, format!("is already site.prefixes[{first}]")));
            }
            let key = (u32::from(net.network()), net.prefix_len());
            if let Some(s) = self.sources.get(&key) {
                return Err(self.err(
                    field,
                    net,
                    format!(
                        "is also {}: a source address is the site's own or a tunnel's, not both",
                        s.field
                    ),
                ));
            }
            prefixes.push(net);
        }
        Ok(Some(SiteConfig { prefixes }))
    }

    /// Claim a tunnel's prefixes for routing, and its source prefixes for it alone.
    fn tunnel_prefixes(
        &mut self,
        i: usize,
        t: &TunnelConfig,
        raw: &RawTunnel,
    ) -> Result<(), ConfigError> {
        let path = tunnel_path(i, &t.name);
        let (prefixes, _) = family_fields(&path, "prefixes", &raw.prefixes);
        let (extra, _) = family_fields(&path, "extra_sources", &raw.extra_sources);
        for (&net, field) in t.prefixes.iter().zip(&prefixes) {
            self.claim(net, field.clone(), Some(i))?;
        }
        let fields = prefixes
            .into_iter()
            .chain(extra)
            .chain(t.link.map(|_| format!("{path}.link")));
        let sources: Vec<(Ipv4Net, String)> = t.source_prefixes().zip(fields).collect();
        for (net, field) in &sources {
            if let Some(other) = self.overlapping_source(*net, i) {
                return Err(self.source_overlap(field, net, other.net, &other.field));
            }
        }
        for (net, field) in sources {
            let key = (u32::from(net.network()), net.prefix_len());
            self.sources.insert(
                key,
                Source {
                    net,
                    tunnel: i,
                    field,
                },
            );
        }
        Ok(())
    }

    /// Claim a tunnel's IPv6 prefixes for routing, and its IPv6 source prefixes for it
    /// alone (the IPv4 rules, in IPv6).
    fn tunnel_prefixes6(
        &mut self,
        i: usize,
        t: &TunnelConfig,
        raw: &RawTunnel,
    ) -> Result<(), ConfigError> {
        let path = tunnel_path(i, &t.name);
        let (_, prefixes) = family_fields(&path, "prefixes", &raw.prefixes);
        let (_, extra) = family_fields(&path, "extra_sources", &raw.extra_sources);
        for (&net, field) in t.prefixes6.iter().zip(&prefixes) {
            if let Some(first) = self.claims6.get(&net) {
                return Err(self.err(field, net, format!("is already claimed by {}", first.field)));
            }
            self.claims6.insert(
                net,
                Claim {
                    field: field.clone(),
                    tunnel: Some(i),
                },
            );
        }
        let sources: Vec<(Ipv6Net, String)> = t
            .prefixes6
            .iter()
            .copied()
            .zip(prefixes)
            .chain(t.extra_sources6.iter().copied().zip(extra))
            .chain(t.link6.map(|l| (l.trunc(), format!("{path}.link6"))))
            .collect();
        for (net, field) in &sources {
            if let Some(other) = self.overlapping_source6(*net, i) {
                return Err(self.source_overlap(field, net, other.net, &other.field));
            }
        }
        for (net, field) in sources {
            let key = (u128::from(net.network()), net.prefix_len());
            self.sources6.insert(
                key,
                Source6 {
                    net,
                    tunnel: i,
                    field,
                },
            );
        }
        Ok(())
    }

    /// The error for an inner source prefix that another tunnel already accepts.
    fn source_overlap(
        &self,
        field: &str,
        net: impl Display,
        other: impl Display,
        other_field: &str,
    ) -> ConfigError {
        self.err(
            field,
            net,
            format!(
                "overlaps {other} of {other_field}; an inner source must belong to one tunnel only"
            ),
        )
    }

    /// [`Self::overlapping_source`] for IPv6.
    fn overlapping_source6(&self, net: Ipv6Net, me: usize) -> Option<&Source6> {
        let start = u128::from(net.network());
        for len in 0..=net.prefix_len() {
            if let Some(s) = self.sources6.get(&(start & mask6(len), len)) {
                if s.tunnel != me {
                    return Some(s);
                }
            }
        }
        let end = u128::from(net.broadcast());
        self.sources6
            .range((start, net.prefix_len())..=(end, 128))
            .map(|(_, s)| s)
            .find(|s| s.tunnel != me)
    }

    /// A source prefix of another tunnel than `me` that overlaps `net`: one that contains
    /// it or one it contains (prefixes either nest or are disjoint).
    fn overlapping_source(&self, net: Ipv4Net, me: usize) -> Option<&Source> {
        let start = u32::from(net.network());
        for len in 0..=net.prefix_len() {
            if let Some(s) = self.sources.get(&(start & mask(len), len)) {
                if s.tunnel != me {
                    return Some(s);
                }
            }
        }
        let end = u32::from(net.broadcast());
        self.sources
            .range((start, net.prefix_len())..=(end, 32))
            .map(|(_, s)| s)
            .find(|s| s.tunnel != me)
    }

    fn claim(
        &mut self,
        net: Ipv4Net,
        field: String,
        tunnel: Option<usize>,
    ) -> Result<(), ConfigError> {
        if let Some(first) = self.claims.get(&net) {
            return Err(self.err(field, net, format!("is already claimed by {}", first.field)));
        }
        self.claims.insert(net, Claim { field, tunnel });
        Ok(())
    }

    fn routes(
        &mut self,
        raw: &[RawRoute],
        ports: &[PortConfig],
        tunnels: &[TunnelConfig],
    ) -> Result<(Vec<RouteConfig>, Vec<Route6Config>), ConfigError> {
        let port_index = index_by_name(ports.iter().map(|p| p.name.as_str()));
        let tunnel_index = index_by_name(tunnels.iter().map(|t| t.name.as_str()));
        let addrs: Vec<Vec<Ipv4Addr>> = ports.iter().map(|p| p.addresses.clone()).collect();
        let mut routes = Vec::with_capacity(raw.len());
        let mut routes6 = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            if let Ok(IpNet::V6(_)) = r.prefix.parse::<IpNet>() {
                let route = self.route6(i, r, &port_index, &tunnel_index, &addrs)?;
                let field = format!("route[{i}].prefix");
                if let Some(first) = self.claims6.get(&route.prefix) {
                    return Err(self.err(
                        field,
                        route.prefix,
                        format!("is already claimed by {}", first.field),
                    ));
                }
                let into = match &route.target {
                    RouteTarget::Tunnel(t) => Some(t.index),
                    _ => None,
                };
                self.claims6.insert(
                    route.prefix,
                    Claim {
                        field,
                        tunnel: into,
                    },
                );
                routes6.push(route);
                continue;
            }
            let route = self.route(i, r, &port_index, &tunnel_index, &addrs)?;
            let into = match &route.target {
                RouteTarget::Tunnel(t) => Some(t.index),
                _ => None,
            };
            self.claim(route.prefix, format!("route[{i}].prefix"), into)?;
            routes.push(route);
        }
        Ok((routes, routes6))
    }

    /// Route `i` with an IPv6 prefix: as [`Self::route`], without the `port` target.
    fn route6(
        &self,
        i: usize,
        r: &RawRoute,
        port_index: &impl NameIndex,
        tunnel_index: &impl NameIndex,
        addrs: &[Vec<Ipv4Addr>],
    ) -> Result<Route6Config, ConfigError> {
        let path = format!("route[{i}]");
        let IpNet::V6(prefix) = self.any_prefix(&format!("{path}.prefix"), &r.prefix)? else {
            return Err(self.err(
                format!("{path}.prefix"),
                quote(&r.prefix),
                "is not an IPv6 prefix",
            ));
        };
        if let Some(name) = &r.port {
            let others = [
                r.tunnel.is_some(),
                r.blackhole.is_some(),
                r.unreachable.is_some(),
                r.prohibit.is_some(),
            ];
            if others.iter().any(|&x| x) {
                return Err(self.err(
                    format!("{path}.port"),
                    quote(name),
                    "is one target too many: a route has exactly one of tunnel, port, \
                     blackhole, unreachable, prohibit",
                ));
            }
            let index = port_index.index_of(name).ok_or_else(|| {
                self.err(
                    format!("{path}.port"),
                    quote(name),
                    "is not a configured port",
                )
            })?;
            let Some(nh) = &r.next_hop else {
                return Err(self.err(
                    format!("{path}.port"),
                    quote(name),
                    "needs next_hop for an IPv6 prefix: connected IPv6 subnets (a port \
                     without next_hop) do not exist yet",
                ));
            };
            let field = format!("{path}.next_hop");
            let next_hop = match nh.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) => a,
                _ => {
                    return Err(self.err(
                        field,
                        quote(nh),
                        "is not an IPv6 address (the next hop of an IPv6 prefix)",
                    ))
                }
            };
            if let Some(problem) = not_unicast6(next_hop) {
                return Err(self.err(field, next_hop, problem));
            }
            if let Some(owner) = self.ours6.get(&next_hop) {
                return Err(self.err(field, next_hop, format!("is our own address ({owner})")));
            }
            let port = PortRef {
                index,
                name: name.clone(),
            };
            return Ok(Route6Config {
                prefix,
                target: RouteTarget::Port6 { port, next_hop },
            });
        }
        let target = self.route_target(&path, r, port_index, tunnel_index, addrs, None)?;
        Ok(Route6Config { prefix, target })
    }

    /// Route `i` on its own: its prefix, its one target, and that the target exists (the
    /// claim on its prefix is the caller's). `addrs`: each port's addresses, by index.
    pub(crate) fn route(
        &self,
        i: usize,
        r: &RawRoute,
        port_index: &impl NameIndex,
        tunnel_index: &impl NameIndex,
        addrs: &[Vec<Ipv4Addr>],
    ) -> Result<RouteConfig, ConfigError> {
        let path = format!("route[{i}]");
        let prefix = self.prefix(&format!("{path}.prefix"), &r.prefix)?;
        let target = self.route_target(&path, r, port_index, tunnel_index, addrs, Some(prefix))?;
        Ok(RouteConfig { prefix, target })
    }

    /// A route's one target, checked to exist. A `port` without `next_hop` is a connected
    /// route over `prefix` (IPv4 routes only): the port needs an address to ask ARP from.
    fn route_target(
        &self,
        path: &str,
        r: &RawRoute,
        port_index: &impl NameIndex,
        tunnel_index: &impl NameIndex,
        addrs: &[Vec<Ipv4Addr>],
        prefix: Option<Ipv4Net>,
    ) -> Result<RouteTarget, ConfigError> {
        for (name, flag) in [
            ("blackhole", r.blackhole),
            ("unreachable", r.unreachable),
            ("prohibit", r.prohibit),
        ] {
            if flag == Some(false) {
                return Err(self.err(
                    format!("{path}.{name}"),
                    false,
                    format!("is not a target; write {name} = true, or give another target"),
                ));
            }
        }
        let given: Vec<&str> = [
            ("tunnel", r.tunnel.is_some()),
            ("port", r.port.is_some()),
            ("blackhole", r.blackhole.is_some()),
            ("unreachable", r.unreachable.is_some()),
            ("prohibit", r.prohibit.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            let problem = if given.is_empty() {
                "has no target".to_owned()
            } else {
                format!("has {} targets ({})", given.len(), given.join(", "))
            };
            return Err(self.err_bare(
                path,
                format!(
                    "{problem}; give exactly one of tunnel = NAME, port = NAME (with \
                     next_hop = IP, or without for a connected subnet), blackhole = true, \
                     unreachable = true or prohibit = true"
                ),
            ));
        }
        if let (Some(nh), None) = (&r.next_hop, &r.port) {
            return Err(self.err(
                format!("{path}.next_hop"),
                quote(nh),
                "is only for routes with port",
            ));
        }

        let target = if let Some(name) = &r.tunnel {
            let index = tunnel_index.index_of(name).ok_or_else(|| {
                self.err(
                    format!("{path}.tunnel"),
                    quote(name),
                    "is not a configured tunnel",
                )
            })?;
            RouteTarget::Tunnel(TunnelRef {
                index,
                name: name.clone(),
            })
        } else if let Some(name) = &r.port {
            let index = port_index.index_of(name).ok_or_else(|| {
                self.err(
                    format!("{path}.port"),
                    quote(name),
                    "is not a configured port",
                )
            })?;
            let port = PortRef {
                index,
                name: name.clone(),
            };
            match (&r.next_hop, prefix) {
                (Some(nh), _) => {
                    let next_hop = self.foreign(&format!("{path}.next_hop"), nh)?;
                    RouteTarget::Port { port, next_hop }
                }
                (None, Some(prefix)) => {
                    let own = addrs.get(index).map(Vec::as_slice).unwrap_or_default();
                    let Some(source) = own
                        .iter()
                        .copied()
                        .find(|a| prefix.contains(a))
                        .or_else(|| own.first().copied())
                    else {
                        return Err(self.err(
                            format!("{path}.port"),
                            quote(name),
                            "has no addresses: a connected route (port without next_hop) \
                             asks ARP from the port's address; give the port one (inside \
                             the prefix), or give next_hop",
                        ));
                    };
                    RouteTarget::Connected { port, source }
                }
                (None, None) => {
                    return Err(self.err_bare(
                        format!("{path}.next_hop"),
                        format!("is missing; a route with port = {name:?} needs one"),
                    ))
                }
            }
        } else if r.unreachable.is_some() {
            RouteTarget::Unreachable
        } else if r.prohibit.is_some() {
            RouteTarget::Prohibit
        } else {
            RouteTarget::Blackhole
        };
        Ok(target)
    }

    /// No tunnel's remote may be routed (by longest match) into a tunnel.
    fn no_tunnel_through_a_tunnel(&self, tunnels: &[TunnelConfig]) -> Result<(), ConfigError> {
        // IPv6 endpoints are not routed by the IPv4 routes (and the IPv6 routes' targets
        // are checked on their own).
        for (i, t) in tunnels
            .iter()
            .enumerate()
            .filter(|(_, t)| t.outer6.is_none())
        {
            let matched = (0..=32u8).rev().find_map(|len| {
                let net = Ipv4Net::new(t.remote, len).ok()?.trunc();
                self.claims.get(&net).map(|c| (net, c))
            });
            if let Some((
                net,
                Claim {
                    field,
                    tunnel: Some(into),
                },
            )) = matched
            {
                return Err(self.remote_through_tunnel(i, t, net, field, &tunnels[*into].name));
            }
        }
        Ok(())
    }

    /// Tunnel `i`'s remote is routed into tunnel `into` by `net`, which `field` claims.
    pub(crate) fn remote_through_tunnel(
        &self,
        i: usize,
        t: &TunnelConfig,
        net: Ipv4Net,
        field: &str,
        into: &str,
    ) -> ConfigError {
        self.err(
            format!("{}.remote", tunnel_path(i, &t.name)),
            t.remote,
            format!(
                "is routed into tunnel {into:?} by {net} ({field}); a tunnel's remote must \
                 not be reached through a tunnel"
            ),
        )
    }

    /// `[fpm]`: the listening address and the grace period.
    fn fpm(&self, f: &RawFpm) -> Result<FpmConfig, ConfigError> {
        let listen = f.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            self.err(
                "fpm.listen",
                quote(&f.listen),
                "is not an address and port (like 127.0.0.1:2620)",
            )
        })?;
        let grace: u32 = self.ranged(
            "fpm.grace".into(),
            f.grace,
            &FPM_GRACE_RANGE,
            "a grace period in seconds",
        )?;
        Ok(FpmConfig {
            listen,
            grace: std::time::Duration::from_secs(grace.into()),
        })
    }
}

impl<'a> Validator<'a> {
    /// A validator that checks routes alone against a configuration validated before:
    /// `ours` is that configuration's addresses, each with its field.
    pub(crate) fn for_routes(origin: &'a str, ours: &'a HashMap<Ipv4Addr, String>) -> Self {
        Validator {
            origin,
            ours: Cow::Borrowed(ours),
            claims: HashMap::new(),
            sources: BTreeMap::new(),
            claims6: HashMap::new(),
            sources6: BTreeMap::new(),
            ours6: HashMap::new(),
            interfaces: HashMap::new(),
            links: Vec::new(),
            // Route checks never look at BGP or FPM (only tunnels do).
            bgp: None,
            fpm: false,
        }
    }

    /// An error about `field`'s `value`, as validation words it.
    pub(crate) fn error(
        &self,
        field: impl Into<String>,
        value: impl Display,
        problem: impl Into<String>,
    ) -> ConfigError {
        self.err(field, value, problem)
    }
}

/// The fields of a list that mixes IPv4 and IPv6 prefixes (`prefixes`, `extra_sources`),
/// IPv4 ones first, then IPv6 ones, each in file order: `tunnel[0] "a".prefixes[2]`.
fn family_fields(path: &str, name: &str, texts: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (k, text) in texts.iter().enumerate() {
        let field = format!("{path}.{name}[{k}]");
        match text.parse::<IpNet>() {
            Ok(IpNet::V6(_)) => v6.push(field),
            _ => v4.push(field),
        }
    }
    (v4, v6)
}

/// Position by name.
pub(crate) trait NameIndex {
    fn index_of(&self, name: &str) -> Option<usize>;
}

impl NameIndex for HashMap<&str, usize> {
    fn index_of(&self, name: &str) -> Option<usize> {
        self.get(name).copied()
    }
}

/// Name to index; names are unique once validated.
pub(crate) fn index_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    names.enumerate().map(|(i, name)| (name, i)).collect()
}

fn int_or_word(v: &IntOrWord) -> String {
    match v {
        IntOrWord::Int(n) => n.to_string(),
        IntOrWord::Word(w) => quote(w),
    }
}
