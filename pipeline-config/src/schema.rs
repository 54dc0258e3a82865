//! The file as written: the serde schema, before validation.
//!
//! Every table rejects unknown fields. Values whose meaning is checked by
//! [`validate`](crate::validate) (addresses, prefixes, MACs, keywords, ranged integers) are
//! kept here as the strings and wide integers the file holds, so that validation can name
//! the field and quote the value when it rejects one. Every default is written on its
//! field; a default that depends on another field is an `Option` resolved in validation.
//! CONFIG.md is the user's reference for the same schema: keep the two in step.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::RangeInclusive;

/// Default port MTU (bytes of IP packet, without the Ethernet header).
pub const DEFAULT_PORT_MTU: u16 = 1500;
/// Port MTUs we accept: the IPv4 minimum (RFC 791) up to jumbo frames.
pub const PORT_MTU_RANGE: RangeInclusive<u16> = 68..=9000;
/// Default number of RX and of TX queues per port.
pub const DEFAULT_QUEUES: u16 = 1;
/// RX and TX queue counts we accept.
pub const QUEUES_RANGE: RangeInclusive<u16> = 1..=64;
/// Default outer TTL.
pub const DEFAULT_TTL: u8 = 64;
/// The smallest packet every IPv4 link must carry (RFC 791): a tunnel's MTU must leave
/// this much room for the inner packet.
pub const MIN_INNER_MTU: u16 = 68;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// `[eal]`; default: no EAL arguments.
    #[serde(default)]
    pub eal: RawEal,
    /// `[workers]`; default: a worker on every EAL worker lcore.
    #[serde(default, skip_serializing_if = "RawWorkers::is_default")]
    pub workers: RawWorkers,
    /// `[[port]]`; default none (validation requires at least one).
    #[serde(default, rename = "port")]
    pub ports: Vec<RawPort>,
    /// `[[tunnel]]`; default none.
    #[serde(default, rename = "tunnel", skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<RawTunnel>,
    /// `[[route]]`; default none.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RawRoute>,
    /// `[icmp]`; default: Linux's limits.
    #[serde(default, skip_serializing_if = "RawIcmp::is_default")]
    pub icmp: RawIcmp,
    /// `[fpm]`; default (absent): no FPM listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpm: Option<RawFpm>,
    /// `[bgp]`; default (absent): no BGP with the client routers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<RawBgp>,
    /// `[health]`; default: probes every 300 ms, down after 3 missed.
    #[serde(default, skip_serializing_if = "RawHealth::is_default")]
    pub health: RawHealth,
    /// `[site]`; default (absent): not a client site's router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<RawSite>,
}

/// `[site]`: the client site this router serves (the client-site role: LAN ports, tunnels
/// to the carrier's edges).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawSite {
    /// The site's own networks; required, at least one.
    pub prefixes: Vec<String>,
}

/// Where zebra's FPM module connects by default (FRR's `fpm address 127.0.0.1`, port 2620).
pub const DEFAULT_FPM_LISTEN: &str = "127.0.0.1:2620";
/// Default seconds after zebra connects again within which the routes it learned before
/// must be sent again, or be removed.
pub const DEFAULT_FPM_GRACE: u32 = 120;
/// Grace periods we accept, in seconds.
pub const FPM_GRACE_RANGE: RangeInclusive<u32> = 1..=3600;

/// `[fpm]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawFpm {
    /// The TCP address zebra connects to; default [`DEFAULT_FPM_LISTEN`].
    #[serde(default = "default_fpm_listen")]
    pub listen: String,
    /// Seconds; default [`DEFAULT_FPM_GRACE`].
    #[serde(default = "default_fpm_grace")]
    pub grace: i64,
}

fn default_fpm_listen() -> String {
    DEFAULT_FPM_LISTEN.to_owned()
}

fn default_fpm_grace() -> i64 {
    DEFAULT_FPM_GRACE.into()
}

/// Default interval between two in-tunnel probes, ms.
pub const DEFAULT_PROBE_INTERVAL_MS: u32 = 300;
/// Default probes missed in a row that make a tunnel down.
pub const DEFAULT_PROBE_MISSES: u32 = 3;

/// `[health]`: the in-tunnel probes' timers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawHealth {
    /// Interval between probes, ms; default [`DEFAULT_PROBE_INTERVAL_MS`].
    #[serde(default = "default_probe_interval")]
    pub probe_interval_ms: i64,
    /// Probes missed in a row that make a tunnel down; default [`DEFAULT_PROBE_MISSES`].
    #[serde(default = "default_probe_misses")]
    pub probe_misses: i64,
}

fn default_probe_interval() -> i64 {
    DEFAULT_PROBE_INTERVAL_MS.into()
}

fn default_probe_misses() -> i64 {
    DEFAULT_PROBE_MISSES.into()
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            probe_interval_ms: default_probe_interval(),
            probe_misses: default_probe_misses(),
        }
    }
}

impl RawHealth {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Default BFD interval, milliseconds (transmit and receive).
pub const DEFAULT_BFD_INTERVAL_MS: u32 = 100;
/// Default BFD detection multiplier.
pub const DEFAULT_BFD_MULTIPLIER: u32 = 3;
/// Default longest prefix accepted from a client (more-specifics of its own prefixes).
pub const DEFAULT_MAX_PREFIX_LEN: u32 = 24;

/// `[bgp]`: the edge's BGP with the client routers (through FRR; `backbone frr-config`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawBgp {
    /// Our AS number; required.
    pub asn: i64,
    /// BGP router ID; default (absent): the first address of the first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Longest prefix accepted from a client inside its own prefixes; default
    /// [`DEFAULT_MAX_PREFIX_LEN`].
    #[serde(default = "default_max_prefix_len")]
    pub max_prefix_len: i64,
    /// BFD transmit and receive interval, ms; default [`DEFAULT_BFD_INTERVAL_MS`].
    #[serde(default = "default_bfd_interval")]
    pub bfd_interval_ms: i64,
    /// BFD detection multiplier; default [`DEFAULT_BFD_MULTIPLIER`].
    #[serde(default = "default_bfd_multiplier")]
    pub bfd_multiplier: i64,
    /// Where the appliance writes FRR's configuration whenever what it says changes;
    /// default (absent): it writes nothing (`backbone frr-config` does it by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frr_config: Option<String>,
    /// The command that makes a running FRR take the file written (`{file}` is replaced
    /// by `frr_config`); default (absent): none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frr_reload: Option<Vec<String>>,
    /// iBGP across the core: the backbone's route reflectors (or the other edges), by
    /// address; default (absent): no iBGP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ibgp_peers: Vec<String>,
    /// Our address on the core that the iBGP sessions start from and that the other edges
    /// route our clients to (the next hop we announce); required with `ibgp_peers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ibgp_source: Option<String>,
    /// BFD on the iBGP sessions (the reflectors run it too); default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ibgp_bfd: bool,
}

fn default_max_prefix_len() -> i64 {
    DEFAULT_MAX_PREFIX_LEN.into()
}

fn default_bfd_interval() -> i64 {
    DEFAULT_BFD_INTERVAL_MS.into()
}

fn default_bfd_multiplier() -> i64 {
    DEFAULT_BFD_MULTIPLIER.into()
}

/// Default ICMP error rate, messages a second over all workers (Linux's icmp_msgs_per_sec).
pub const DEFAULT_ICMP_RATE: u32 = 1000;
/// Default ICMP error burst (Linux's icmp_msgs_burst).
pub const DEFAULT_ICMP_BURST: u32 = 50;
/// ICMP rates and bursts we accept (0: none sent).
pub const ICMP_LIMIT_RANGE: RangeInclusive<u32> = 0..=10_000_000;

/// `[icmp]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawIcmp {
    /// ICMP errors a second, all workers together; default [`DEFAULT_ICMP_RATE`].
    #[serde(default = "default_icmp_rate")]
    pub rate: i64,
    /// Most ICMP errors at once after a quiet spell; default [`DEFAULT_ICMP_BURST`].
    #[serde(default = "default_icmp_burst")]
    pub burst: i64,
}

fn default_icmp_rate() -> i64 {
    DEFAULT_ICMP_RATE.into()
}

fn default_icmp_burst() -> i64 {
    DEFAULT_ICMP_BURST.into()
}

impl Default for RawIcmp {
    fn default() -> Self {
        RawIcmp {
            rate: default_icmp_rate(),
            burst: default_icmp_burst(),
        }
    }
}

impl RawIcmp {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// `[eal]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawEal {
    /// EAL arguments, without the program name; default none.
    #[serde(default)]
    pub args: Vec<String>,
}

/// `[workers]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawWorkers {
    /// Worker lcore ids; default (absent): every EAL worker lcore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lcores: Option<Vec<i64>>,
    /// "adaptive" or "busy"; default (absent): [`DEFAULT_POLL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<String>,
    /// Longest sleep of an idle adaptive worker, microseconds; default (absent):
    /// [`DEFAULT_IDLE_SLEEP_MAX_US`]. Only with `poll = "adaptive"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_sleep_max_us: Option<i64>,
}

/// The polling mode of workers whose `[workers] poll` is absent.
pub const DEFAULT_POLL: &str = "adaptive";
/// Longest sleep of an idle adaptive worker (microseconds) when `idle_sleep_max_us` is
/// absent: the most latency an idle worker adds to the first packet after a quiet spell.
/// Each wakeup costs CPU (some 30 us in a VM, a few on bare metal): at 1 ms an idle worker
/// wakes under a thousand times a second.
pub const DEFAULT_IDLE_SLEEP_MAX_US: u32 = 1000;
/// `idle_sleep_max_us` values we accept: a microsecond to 10 ms.
pub const IDLE_SLEEP_MAX_US_RANGE: RangeInclusive<u32> = 1..=10_000;

/// `[[port]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawPort {
    /// Our name for the port; required, unique.
    pub name: String,
    /// DPDK device name, or an ethdev index written as a string; required, unique.
    pub device: String,
    /// Some of "client", "core", "internet"; required, at least one.
    pub roles: Vec<String>,
    /// The MAC we use on this port; default (absent): the device's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Our IPv4 addresses on this port; default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Largest IP packet sent on the port; default [`DEFAULT_PORT_MTU`].
    #[serde(
        default = "default_port_mtu",
        skip_serializing_if = "is_default_port_mtu"
    )]
    pub mtu: i64,
    /// Native forwarding of packets not for us arriving here; default (absent): true iff
    /// `roles` contains "internet".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit: Option<bool>,
    /// Default [`DEFAULT_QUEUES`].
    #[serde(default = "default_queues", skip_serializing_if = "is_default_queues")]
    pub rx_queues: i64,
    /// Default [`DEFAULT_QUEUES`].
    #[serde(default = "default_queues", skip_serializing_if = "is_default_queues")]
    pub tx_queues: i64,
    /// A host interface for the port's own traffic (`bb-<name>`); default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_interface: Option<bool>,
    /// `[[port.neighbor]]`: static neighbours; default none.
    #[serde(default, rename = "neighbor", skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<RawNeighbor>,
}

/// `[[port.neighbor]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawNeighbor {
    /// Required.
    pub ip: String,
    /// Required.
    pub mac: String,
}

/// `[[tunnel]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawTunnel {
    /// Required, unique.
    pub name: String,
    /// "gre" or "ipip"; required.
    pub mode: String,
    /// One of our port addresses; required.
    pub local: String,
    /// The client router; required.
    pub remote: String,
    /// GRE key; default (absent): no key. GRE only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<i64>,
    /// GRE sequence numbers; default (absent): false. GRE only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<bool>,
    /// GRE checksum; default (absent): false. GRE only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<bool>,
    /// 1..=255 or "inherit"; default [`DEFAULT_TTL`].
    #[serde(default = "default_ttl", skip_serializing_if = "is_default_ttl")]
    pub ttl: IntOrWord,
    /// "copy" or 0..=63; default "copy".
    #[serde(default = "default_dscp", skip_serializing_if = "is_default_dscp")]
    pub dscp: IntOrWord,
    /// "set" or "copy"; default "set".
    #[serde(default = "default_df", skip_serializing_if = "is_default_df")]
    pub df: String,
    /// Egress port, by name; required.
    pub port: String,
    /// Underlay next hop; default (absent): `remote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// Largest outer packet; default (absent): the egress port's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i64>,
    /// The client's prefixes, IPv4 and IPv6; default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Further accepted inner source prefixes, IPv4 and IPv6; default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sources: Vec<String>,
    /// Our address inside the tunnel, with the prefix that holds the client router's side
    /// ("169.254.10.1/31"): a host interface `bb-<name>` for traffic with the client
    /// router. Default (absent): none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Our IPv6 address inside the tunnel, with the prefix that holds the client router's
    /// side ("fd00:10::1/127"): the source of the ICMPv6 errors sent into the tunnel.
    /// Required where the tunnel accepts IPv6 sources. Default (absent): none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link6: Option<String>,
    /// The client router's AS number: an eBGP session with it inside the tunnel (needs
    /// `[bgp]` and a `link`). Default (absent): no BGP with this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<i64>,
    /// BFD on the client's BGP session; default (absent): true where there is a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<bool>,
    /// In-tunnel health probes from the appliance; default (absent): false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<bool>,
    /// While the tunnel is down, its prefixes fall back to native forwarding; default
    /// (absent): true where a port has the internet role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,
    /// The tunnel (by name, earlier in the file) whose prefixes this one carries while that
    /// one is down; default (absent): none, a tunnel of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The BGP local preference of the client's routes at this edge (needs `[bgp]`);
    /// default (absent): BGP's own (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<i64>,
}

/// `[[route]]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
// `Deserialize` from a table only (and `Serialize` through the same inherent code): see `table_only!`.
#[serde(deny_unknown_fields, remote = "Self")]
pub(crate) struct RawRoute {
    /// Required.
    pub prefix: String,
    /// Target: into this tunnel. Default (absent): not this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// Target: natively out of this port, toward `next_hop`. Default (absent): not this
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Required with `port`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// Target: drop silently (`blackhole = true`). Default (absent): not this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blackhole: Option<bool>,
    /// Target: drop and answer ICMP net unreachable (`unreachable = true`). Default
    /// (absent): not this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<bool>,
    /// Target: drop and answer ICMP administratively prohibited (`prohibit = true`).
    /// Default (absent): not this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prohibit: Option<bool>,
}

/// A schema table deserializes from a table (a TOML table, a JSON object) and nothing else.
///
/// serde's derived `Deserialize` for a struct also accepts a sequence, its elements taken as
/// the fields in declaration order: `route = [["10.9.0.0/16", "client-a"]]` would become a
/// route into tunnel client-a, and a neighbour written `[ip, mac]` would pass unnoticed.
/// Each table type therefore derives with `#[serde(remote = "Self")]`, which makes the
/// derived code an inherent `deserialize`, and gets its `Deserialize` here: a visitor that
/// takes a map only, so anything else is a type error that names what was expected (and,
/// from a file, toml's line and column).
macro_rules! table_only {
    ($($ty:ident: $what:literal,)+) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TableVisitor;

                impl<'de> Visitor<'de> for TableVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }

                    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        // The derived, field-by-field deserializer (inherent, by `remote`).
                        $ty::deserialize(de::value::MapAccessDeserializer::new(map))
                    }
                }

                deserializer.deserialize_map(TableVisitor)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // The derived serializer (inherent, by `remote`).
                $ty::serialize(self, serializer)
            }
        }
    )+};
}

table_only! {
    RawEal: "the [eal] table",
    RawWorkers: "the [workers] table",
    RawPort: "a [[port]] table",
    RawNeighbor: "a [[port.neighbor]] table",
    RawTunnel: "a [[tunnel]] table",
    RawRoute: "a [[route]] table",
    RawIcmp: "the [icmp] table",
    RawFpm: "the [fpm] table",
    RawBgp: "the [bgp] table",
    RawHealth: "the [health] table",
    RawSite: "the [site] table",
}

fn default_port_mtu() -> i64 {
    DEFAULT_PORT_MTU.into()
}

fn default_queues() -> i64 {
    DEFAULT_QUEUES.into()
}

fn default_ttl() -> IntOrWord {
    IntOrWord::Int(DEFAULT_TTL.into())
}

fn default_dscp() -> IntOrWord {
    IntOrWord::Word("copy".to_owned())
}

fn default_df() -> String {
    "set".to_owned()
}

// Defaults are left out when a table is written back (`ctl save`), as a person would.
fn is_default_port_mtu(v: &i64) -> bool {
    *v == default_port_mtu()
}

fn is_default_queues(v: &i64) -> bool {
    *v == default_queues()
}

fn is_default_ttl(v: &IntOrWord) -> bool {
    *v == default_ttl()
}

fn is_default_dscp(v: &IntOrWord) -> bool {
    *v == default_dscp()
}

fn is_default_df(v: &str) -> bool {
    v == default_df()
}

impl RawWorkers {
    fn is_default(&self) -> bool {
        *self == RawWorkers::default()
    }
}

impl Serialize for IntOrWord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrWord::Int(v) => serializer.serialize_i64(*v),
            IntOrWord::Word(w) => serializer.serialize_str(w),
        }
    }
}

/// A field that takes a number or a keyword (`ttl = 64` or `ttl = "inherit"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrWord {
    Int(i64),
    Word(String),
}

impl<'de> Deserialize<'de> for IntOrWord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;

        impl Visitor<'_> for V {
            type Value = IntOrWord;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrWord, E> {
                Ok(IntOrWord::Int(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrWord, E> {
                i64::try_from(v)
                    .map(IntOrWord::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrWord, E> {
                Ok(IntOrWord::Word(v.to_owned()))
            }
        }

        deserializer.deserialize_any(V)
    }
}
