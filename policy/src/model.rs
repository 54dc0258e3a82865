//! The policy document: its TOML schema, and the one validation pass that turns it into a
//! [`Policy`] or an error naming the field.
//!
//! Every table refuses fields it does not know; a table written where an array of tables
//! belongs (or the reverse) is refused before serde reads it field by field. Validation
//! stops at the first error, checking in this order: `[backbone]`, `[preferences]`, the
//! edges in document order, the clients in document order (each one's own fields, then its
//! placements), then the rules across clients (sources owned by one client, endpoints per
//! edge), then each edge's part against the appliance's own validation.

use crate::error::PolicyError;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Default BGP local preference of a client's routes at its primary edge.
pub const DEFAULT_PRIMARY_LOCAL_PREF: u32 = 200;
/// Default BGP local preference of a client's routes at its backup edge.
pub const DEFAULT_BACKUP_LOCAL_PREF: u32 = 100;
/// Default longest wait, seconds, for every other edge to route a new client before its
/// tunnel comes up at its edge.
pub const DEFAULT_MAKE_BEFORE_ANNOUNCE_S: u32 = 30;
/// Default longest wait, seconds, for every other edge to stop routing to a removed
/// client before its tunnel (announcements withdrawn already) is removed at its edge.
pub const DEFAULT_WITHDRAW_BEFORE_REMOVE_S: u32 = 30;
/// Where an appliance serves its control API unless the edge says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/backbone/control.sock";
/// Longest client name: the tunnel is named after the client, and its host interface
/// `bb-<name>` must fit Linux's 15 characters.
pub const MAX_CLIENT_NAME: usize = 12;
/// Longest edge name (it names etcd keys and log lines).
pub const MAX_EDGE_NAME: usize = 63;
/// Most edges that may host one client: a primary and a backup.
pub const MAX_PLACEMENTS: usize = 2;

// ---- the schema, as written ----

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    backbone: RawBackbone,
    #[serde(default)]
    preferences: RawPreferences,
    #[serde(default, rename = "edge")]
    edges: Vec<RawEdge>,
    #[serde(default, rename = "client")]
    clients: Vec<RawClient>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawBackbone {
    asn: i64,
    #[serde(default)]
    core_routing: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPreferences {
    #[serde(default = "default_primary")]
    primary_local_pref: i64,
    #[serde(default = "default_backup")]
    backup_local_pref: i64,
    #[serde(default = "default_make_before_announce")]
    make_before_announce_s: i64,
    #[serde(default = "default_withdraw_before_remove")]
    withdraw_before_remove_s: i64,
}

fn default_primary() -> i64 {
    DEFAULT_PRIMARY_LOCAL_PREF.into()
}

fn default_backup() -> i64 {
    DEFAULT_BACKUP_LOCAL_PREF.into()
}

fn default_make_before_announce() -> i64 {
    DEFAULT_MAKE_BEFORE_ANNOUNCE_S.into()
}

fn default_withdraw_before_remove() -> i64 {
    DEFAULT_WITHDRAW_BEFORE_REMOVE_S.into()
}

impl Default for RawPreferences {
    fn default() -> Self {
        RawPreferences {
            primary_local_pref: default_primary(),
            backup_local_pref: default_backup(),
            make_before_announce_s: default_make_before_announce(),
            withdraw_before_remove_s: default_withdraw_before_remove(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    name: String,
    core_address: String,
    core_port: String,
    tunnel_endpoint: String,
    client_port: String,
    #[serde(default)]
    control_socket: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    mode: String,
    remote: String,
    #[serde(default)]
    key: Option<i64>,
    #[serde(default)]
    sequence: Option<bool>,
    #[serde(default)]
    checksum: Option<bool>,
    #[serde(default)]
    mtu: Option<i64>,
    #[serde(default)]
    asn: Option<i64>,
    #[serde(default)]
    bfd: Option<bool>,
    #[serde(default)]
    probe: Option<bool>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    extra_sources: Vec<String>,
    #[serde(default)]
    placement: Vec<RawPlacement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    edge: String,
    role: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    remote: Option<String>,
}

// ---- the validated policy ----

/// A validated policy: the only form the commands and the agent act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The backbone's AS number (every edge's `[bgp] asn`).
    pub asn: u32,
    /// How the edges learn where the clients hosted elsewhere are.
    pub core_routing: CoreRouting,
    pub preferences: Preferences,
    pub edges: Vec<Edge>,
    pub clients: Vec<Client>,
}

/// `[backbone] core_routing`: how an edge routes the clients hosted at other edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CoreRouting {
    /// Routes from the policy: each client's prefixes across the core to its primary.
    Static,
    /// iBGP between the edges' FRR (through route reflectors): each edge announces the
    /// clients it hosts, with local preferences from the placements' roles.
    Bgp,
}

/// `[preferences]`: which edge a client's traffic goes through when two host it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preferences {
    pub primary_local_pref: u32,
    pub backup_local_pref: u32,
    /// How long an edge holds a new client's tunnel back until every other edge routes
    /// the client (0: it does not wait).
    pub make_before_announce_s: u32,
    /// How long an edge keeps a removed client's tunnel, its announcements withdrawn,
    /// until every other edge stops routing to it (0: removed at once).
    pub withdraw_before_remove_s: u32,
}

/// `[[edge]]`: one edge router (an appliance and its agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub name: String,
    /// The edge's address on the core: where the other edges send traffic for the
    /// clients it hosts.
    pub core_address: Ipv4Addr,
    /// The appliance's port facing the core, by its name in the appliance's file.
    pub core_port: String,
    /// Our end of the client tunnels at this edge (each tunnel's `local`).
    pub tunnel_endpoint: Ipv4Addr,
    /// The appliance's port facing the client routers.
    pub client_port: String,
    /// The appliance's control socket.
    pub control_socket: PathBuf,
}

/// A tunnel's encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Gre,
    Ipip,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Gre => "gre",
            Mode::Ipip => "ipip",
        })
    }
}

/// Whether an edge is a client's primary or its backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Backup,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        })
    }
}

/// `[[client]]`: one client, its tunnel and where it is hosted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub name: String,
    pub mode: Mode,
    /// The client router's tunnel address (a placement may name another).
    pub remote: Ipv4Addr,
    pub key: Option<u32>,
    pub sequence: bool,
    pub checksum: bool,
    pub mtu: Option<u32>,
    /// The client router's AS number: an eBGP session inside each of its tunnels.
    pub asn: Option<u32>,
    pub bfd: Option<bool>,
    pub probe: bool,
    pub prefixes: Vec<Ipv4Net>,
    pub extra_sources: Vec<Ipv4Net>,
    pub placement: Vec<Placement>,
}

impl Client {
    /// The primary placement (validation guarantees exactly one).
    pub fn primary(&self) -> &Placement {
        self.placement
            .iter()
            .find(|p| p.role == Role::Primary)
            .unwrap_or(&self.placement[0])
    }
}

/// `[[client.placement]]`: an edge that hosts the client's tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The edge, by its index in [`Policy::edges`].
    pub edge: usize,
    pub role: Role,
    /// Our address inside the tunnel at this edge, with its prefix.
    pub link: Option<Ipv4Net>,
    /// The client router's address toward this edge, where it is not the client's.
    pub remote: Option<Ipv4Addr>,
}

impl Policy {
    /// Read and validate the policy at `path`; errors name it as given.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Parse and validate policy `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let policy = Policy::parse_document(text, origin)?;
        crate::part::check_parts(&policy, origin, None)?;
        Ok(policy)
    }

    /// Parse and validate policy `text` as [`Policy::parse`] does, but hold only edge
    /// `edge`'s part (where the policy has that edge) to the appliance's rules: what an
    /// agent needs of a document that `apply` has validated whole.
    pub fn parse_for(text: &str, origin: &str, edge: &str) -> Result<Policy, PolicyError> {
        let policy = Policy::parse_document(text, origin)?;
        crate::part::check_parts(&policy, origin, Some(edge))?;
        Ok(policy)
    }

    fn parse_document(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let syntax = |message: String| PolicyError::Syntax {
            origin: origin.to_owned(),
            message,
        };
        let value: toml::Table = toml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        shape(&value).map_err(syntax)?;
        let raw: RawPolicy = toml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        Validator { origin }.policy(&raw)
    }

    /// The edge named `name`, with its index.
    pub fn edge(&self, name: &str) -> Option<(usize, &Edge)> {
        self.edges.iter().enumerate().find(|(_, e)| e.name == name)
    }
}

/// Tables where tables belong and arrays of tables where those do: serde's derived
/// structs would otherwise take an array for a table, field by field.
fn shape(doc: &toml::Table) -> Result<(), String> {
    let table = |v: &toml::Value, at: &str| match v {
        toml::Value::Table(_) => Ok(()),
        other => Err(format!(
            "{at}: expected a table, found {}",
            other.type_str()
        )),
    };
    let tables = |v: &toml::Value, at: &str| match v {
        toml::Value::Array(a) if a.iter().all(toml::Value::is_table) => Ok(()),
        other => Err(format!(
            "{at}: expected an array of tables ([[{at}]]), found {}",
            other.type_str()
        )),
    };
    for key in ["backbone", "preferences"] {
        if let Some(v) = doc.get(key) {
            table(v, key)?;
        }
    }
    if let Some(v) = doc.get("edge") {
        tables(v, "edge")?;
    }
    if let Some(v) = doc.get("client") {
        tables(v, "client")?;
        for c in v.as_array().into_iter().flatten() {
            if let Some(p) = c.get("placement") {
                tables(p, "client.placement")?;
            }
        }
    }
    Ok(())
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// Why an address cannot be a station's own, or `None` when it can.
fn not_unicast(a: Ipv4Addr) -> Option<&'static str> {
    let o = a.octets();
    if o[0] == 0 {
        Some("is in 0.0.0.0/8, not a unicast address")
    } else if a.is_loopback() {
        Some("is a loopback address")
    } else if a.is_multicast() {
        Some("is a multicast address")
    } else if a.is_broadcast() {
        Some("is the broadcast address")
    } else if o[0] >= 240 {
        Some("is in the reserved 240.0.0.0/4")
    } else {
        None
    }
}

struct Validator<'a> {
    origin: &'a str,
}

/// Who owns an address or a source prefix, for messages.
type Owner = String;

impl Validator<'_> {
    fn err(
        &self,
        field: impl Into<String>,
        value: Option<String>,
        problem: impl Into<String>,
    ) -> PolicyError {
        PolicyError::Invalid {
            origin: self.origin.to_owned(),
            field: field.into(),
            value,
            problem: problem.into(),
        }
    }

    fn ranged(
        &self,
        field: &str,
        v: i64,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> Result<i64, PolicyError> {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(
                field,
                Some(v.to_string()),
                format!("is not {what} ({lo} to {hi})"),
            ))
        }
    }

    fn asn(&self, field: &str, v: i64) -> Result<u32, PolicyError> {
        let asn = self.ranged(field, v, 1, 4_294_967_294, "an AS number")? as u32;
        if asn == 23_456 {
            return Err(self.err(
                field,
                Some(v.to_string()),
                "is AS_TRANS (RFC 6793), not an AS number of its own",
            ));
        }
        Ok(asn)
    }

    fn unicast(&self, field: &str, text: &str) -> Result<Ipv4Addr, PolicyError> {
        let a: Ipv4Addr = match text.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => a,
            Ok(std::net::IpAddr::V6(_)) => {
                return Err(self.err(
                    field,
                    Some(quote(text)),
                    "is an IPv6 address; only IPv4 is supported for now",
                ))
            }
            Err(_) => return Err(self.err(field, Some(quote(text)), "is not an IPv4 address")),
        };
        match not_unicast(a) {
            Some(why) => Err(self.err(field, Some(quote(text)), why)),
            None => Ok(a),
        }
    }

    fn prefix(&self, field: &str, text: &str) -> Result<Ipv4Net, PolicyError> {
        let net: Ipv4Net = text.parse().map_err(|_| {
            self.err(
                field,
                Some(quote(text)),
                "is not an IPv4 prefix (address/length, like 10.1.0.0/16)",
            )
        })?;
        if net.addr() != net.network() {
            return Err(self.err(
                field,
                Some(quote(text)),
                format!("has host bits set (the prefix is {})", net.trunc()),
            ));
        }
        Ok(net)
    }

    fn name(&self, field: &str, name: &str, max: usize, allowed: &str) -> Result<(), PolicyError> {
        if name.is_empty() {
            return Err(self.err(field, Some(quote(name)), "is empty"));
        }
        if name.len() > max {
            return Err(self.err(
                field,
                Some(quote(name)),
                format!("is longer than {max} characters"),
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || allowed.contains(c))
        {
            return Err(self.err(
                field,
                Some(quote(name)),
                format!("may hold only letters, digits and {allowed:?}"),
            ));
        }
        Ok(())
    }

    fn policy(&self, raw: &RawPolicy) -> Result<Policy, PolicyError> {
        let asn = self.asn("backbone.asn", raw.backbone.asn)?;
        let core_routing = match raw.backbone.core_routing.as_deref() {
            None | Some("static") => CoreRouting::Static,
            Some("bgp") => CoreRouting::Bgp,
            Some(other) => {
                return Err(self.err(
                    "backbone.core_routing",
                    Some(quote(other)),
                    "is not \"static\" or \"bgp\"",
                ))
            }
        };
        let preferences = self.preferences(&raw.preferences)?;
        if raw.edges.is_empty() {
            return Err(self.err("edge", None, "at least one [[edge]] is required"));
        }
        let mut edges = Vec::with_capacity(raw.edges.len());
        // Every edge address, with the field that holds it.
        let mut addresses: HashMap<Ipv4Addr, Owner> = HashMap::new();
        let mut names: HashMap<&str, Owner> = HashMap::new();
        for (i, e) in raw.edges.iter().enumerate() {
            let at = format!("edge[{i}] {}", quote(&e.name));
            self.name(&format!("{at}.name"), &e.name, MAX_EDGE_NAME, "-_.")?;
            if let Some(first) = names.insert(&e.name, at.clone()) {
                return Err(self.err(
                    format!("{at}.name"),
                    Some(quote(&e.name)),
                    format!("is also the name of {first}"),
                ));
            }
            let core_address = self.unicast(&format!("{at}.core_address"), &e.core_address)?;
            let tunnel_endpoint =
                self.unicast(&format!("{at}.tunnel_endpoint"), &e.tunnel_endpoint)?;
            for (field, a) in [
                ("core_address", core_address),
                ("tunnel_endpoint", tunnel_endpoint),
            ] {
                let here = format!("{at}.{field}");
                match addresses.get(&a) {
                    // One edge may use one address for both (a small lab's single port).
                    Some(owner) if !owner.starts_with(&format!("{at}.")) => {
                        return Err(self.err(
                            here,
                            Some(quote(&a.to_string())),
                            format!("is also {owner}"),
                        ))
                    }
                    _ => {
                        addresses.entry(a).or_insert(here);
                    }
                }
            }
            for (field, port) in [("core_port", &e.core_port), ("client_port", &e.client_port)] {
                if port.is_empty() {
                    return Err(self.err(
                        format!("{at}.{field}"),
                        Some(quote(port)),
                        "is empty: name the appliance's port",
                    ));
                }
            }
            let control_socket = match &e.control_socket {
                None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
                Some(s) if Path::new(s).is_absolute() => PathBuf::from(s),
                Some(s) => {
                    return Err(self.err(
                        format!("{at}.control_socket"),
                        Some(quote(s)),
                        "is not an absolute path",
                    ))
                }
            };
            edges.push(Edge {
                name: e.name.clone(),
                core_address,
                core_port: e.core_port.clone(),
                tunnel_endpoint,
                client_port: e.client_port.clone(),
                control_socket,
            });
        }
        let edge_index: HashMap<&str, usize> = edges
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.as_str(), i))
            .collect();

        let mut clients = Vec::with_capacity(raw.clients.len());
        let mut client_names: HashMap<&str, Owner> = HashMap::new();
        for (i, c) in raw.clients.iter().enumerate() {
            let at = format!("client[{i}] {}", quote(&c.name));
            self.name(&format!("{at}.name"), &c.name, MAX_CLIENT_NAME, "-_")?;
            if let Some(first) = client_names.insert(&c.name, at.clone()) {
                return Err(self.err(
                    format!("{at}.name"),
                    Some(quote(&c.name)),
                    format!("is also the name of {first}"),
                ));
            }
            clients.push(self.client(&at, c, asn, &edge_index, &addresses)?);
        }
        self.across_clients(&clients, &raw.clients, &edges)?;
        Ok(Policy {
            asn,
            core_routing,
            preferences,
            edges,
            clients,
        })
    }

    fn preferences(&self, p: &RawPreferences) -> Result<Preferences, PolicyError> {
        let primary = self.ranged(
            "preferences.primary_local_pref",
            p.primary_local_pref,
            0,
            u32::MAX.into(),
            "a BGP local preference",
        )? as u32;
        let backup = self.ranged(
            "preferences.backup_local_pref",
            p.backup_local_pref,
            0,
            u32::MAX.into(),
            "a BGP local preference",
        )? as u32;
        if primary <= backup {
            return Err(self.err(
                "preferences.primary_local_pref",
                Some(primary.to_string()),
                format!("must be above backup_local_pref ({backup}): a client's primary edge is the one preferred"),
            ));
        }
        let make_before_announce_s = self.ranged(
            "preferences.make_before_announce_s",
            p.make_before_announce_s,
            0,
            3600,
            "a number of seconds",
        )? as u32;
        let withdraw_before_remove_s = self.ranged(
            "preferences.withdraw_before_remove_s",
            p.withdraw_before_remove_s,
            0,
            3600,
            "a number of seconds",
        )? as u32;
        Ok(Preferences {
            primary_local_pref: primary,
            backup_local_pref: backup,
            make_before_announce_s,
            withdraw_before_remove_s,
        })
    }

    fn client(
        &self,
        at: &str,
        c: &RawClient,
        backbone_asn: u32,
        edge_index: &HashMap<&str, usize>,
        edge_addresses: &HashMap<Ipv4Addr, Owner>,
    ) -> Result<Client, PolicyError> {
        let mode = match c.mode.as_str() {
            "gre" => Mode::Gre,
            "ipip" => Mode::Ipip,
            other => {
                return Err(self.err(
                    format!("{at}.mode"),
                    Some(quote(other)),
                    "is not a tunnel mode (expected \"gre\" or \"ipip\")",
                ))
            }
        };
        let remote = self.remote(&format!("{at}.remote"), &c.remote, edge_addresses)?;
        let key = match c.key {
            Some(k) => {
                Some(
                    self.ranged(&format!("{at}.key"), k, 0, u32::MAX.into(), "a 32-bit key")?
                        as u32,
                )
            }
            None => None,
        };
        if mode == Mode::Ipip {
            for (field, set) in [
                ("key", c.key.is_some()),
                ("sequence", c.sequence.is_some()),
                ("checksum", c.checksum.is_some()),
            ] {
                if set {
                    return Err(self.err(
                        format!("{at}.{field}"),
                        None,
                        "is for GRE tunnels only; this client's mode is \"ipip\"",
                    ));
                }
            }
        }
        let mtu = match c.mtu {
            Some(m) => Some(self.ranged(&format!("{at}.mtu"), m, 68, 9000, "a tunnel MTU")? as u32),
            None => None,
        };
        let asn = match c.asn {
            Some(a) => {
                let field = format!("{at}.asn");
                let asn = self.asn(&field, a)?;
                if asn == backbone_asn {
                    return Err(self.err(field, Some(a.to_string()), "is the backbone's own AS number ([backbone] asn): the session with a client is eBGP"));
                }
                Some(asn)
            }
            None => None,
        };
        if c.bfd.is_some() && asn.is_none() {
            return Err(self.err(
                format!("{at}.bfd"),
                None,
                "is for a BGP session: give the client an asn, or leave bfd out",
            ));
        }
        if c.prefixes.is_empty() {
            return Err(self.err(
                format!("{at}.prefixes"),
                None,
                "is empty: a client has at least one prefix",
            ));
        }
        let prefixes = self.prefix_list(&format!("{at}.prefixes"), &c.prefixes, &[])?;
        let extra_sources =
            self.prefix_list(&format!("{at}.extra_sources"), &c.extra_sources, &prefixes)?;

        if c.placement.is_empty() {
            return Err(self.err(
                format!("{at}.placement"),
                None,
                "is empty: name the edge that hosts the client (role = \"primary\")",
            ));
        }
        if c.placement.len() > MAX_PLACEMENTS {
            return Err(self.err(
                format!("{at}.placement"),
                None,
                format!(
                    "has {} entries: a client has one primary edge and at most one backup",
                    c.placement.len()
                ),
            ));
        }
        let mut placement: Vec<Placement> = Vec::with_capacity(c.placement.len());
        for (j, p) in c.placement.iter().enumerate() {
            let pat = format!("{at}.placement[{j}]");
            let Some(&edge) = edge_index.get(p.edge.as_str()) else {
                return Err(self.err(
                    format!("{pat}.edge"),
                    Some(quote(&p.edge)),
                    "is not a defined [[edge]]",
                ));
            };
            if placement.iter().any(|q| q.edge == edge) {
                return Err(self.err(
                    format!("{pat}.edge"),
                    Some(quote(&p.edge)),
                    "hosts this client twice",
                ));
            }
            let role = match p.role.as_str() {
                "primary" => Role::Primary,
                "backup" => Role::Backup,
                other => {
                    return Err(self.err(
                        format!("{pat}.role"),
                        Some(quote(other)),
                        "is not a role (expected \"primary\" or \"backup\")",
                    ))
                }
            };
            if placement.iter().any(|q| q.role == role) {
                return Err(self.err(
                    format!("{pat}.role"),
                    Some(quote(&p.role)),
                    format!("is taken: a client has one {role} edge"),
                ));
            }
            let link = match &p.link {
                Some(text) => Some(self.link(&format!("{pat}.link"), text, asn.is_some())?),
                None if asn.is_some() => {
                    return Err(self.err(format!("{pat}.link"), None, "is required for a client with an asn: the BGP session runs between the link's two addresses"))
                }
                None => None,
            };
            let remote = match &p.remote {
                Some(text) => Some(self.remote(&format!("{pat}.remote"), text, edge_addresses)?),
                None => None,
            };
            placement.push(Placement {
                edge,
                role,
                link,
                remote,
            });
        }
        if !placement.iter().any(|p| p.role == Role::Primary) {
            return Err(self.err(
                format!("{at}.placement"),
                None,
                "has no primary edge (role = \"primary\")",
            ));
        }
        Ok(Client {
            name: c.name.clone(),
            mode,
            remote,
            key,
            sequence: c.sequence.unwrap_or(false),
            checksum: c.checksum.unwrap_or(false),
            mtu,
            asn,
            bfd: c.bfd,
            probe: c.probe.unwrap_or(false),
            prefixes,
            extra_sources,
            placement,
        })
    }

    fn remote(
        &self,
        field: &str,
        text: &str,
        edge_addresses: &HashMap<Ipv4Addr, Owner>,
    ) -> Result<Ipv4Addr, PolicyError> {
        let a = self.unicast(field, text)?;
        if let Some(owner) = edge_addresses.get(&a) {
            return Err(self.err(
                field,
                Some(quote(text)),
                format!("is an edge's own address ({owner})"),
            ));
        }
        Ok(a)
    }

    fn prefix_list(
        &self,
        field: &str,
        list: &[String],
        not_in: &[Ipv4Net],
    ) -> Result<Vec<Ipv4Net>, PolicyError> {
        let mut out: Vec<Ipv4Net> = Vec::with_capacity(list.len());
        for (k, text) in list.iter().enumerate() {
            let f = format!("{field}[{k}]");
            let net = self.prefix(&f, text)?;
            if out.contains(&net) {
                return Err(self.err(f, Some(quote(text)), "is listed twice"));
            }
            if not_in.contains(&net) {
                return Err(self.err(
                    f,
                    Some(quote(text)),
                    "is one of the client's prefixes already",
                ));
            }
            out.push(net);
        }
        Ok(out)
    }

    fn link(&self, field: &str, text: &str, bgp: bool) -> Result<Ipv4Net, PolicyError> {
        let net: Ipv4Net = text.parse().map_err(|_| {
            self.err(field, Some(quote(text)), "is not an IPv4 address with a prefix length (ours inside the tunnel, like 169.254.10.1/31)")
        })?;
        if !(8..=31).contains(&net.prefix_len()) {
            return Err(self.err(field, Some(quote(text)), "needs a prefix length of 8 to 31: the prefix must also hold the client router's side"));
        }
        if let Some(why) = not_unicast(net.addr()) {
            return Err(self.err(field, Some(quote(text)), why));
        }
        if net.prefix_len() < 31 && (net.addr() == net.network() || net.addr() == net.broadcast()) {
            return Err(self.err(
                field,
                Some(quote(text)),
                "is the prefix's network or broadcast address, not one for us",
            ));
        }
        if bgp && net.prefix_len() < 30 {
            return Err(self.err(field, Some(quote(text)), "must be a /31 or a /30 for a BGP session: the client router's side is the link's other address"));
        }
        Ok(net)
    }

    /// Rules across clients: an inner source belongs to one client; a client router is
    /// never inside a client's prefixes; at each edge, every tunnel has endpoints and a
    /// key of its own and a link no other tunnel there overlaps.
    fn across_clients(
        &self,
        clients: &[Client],
        raw: &[RawClient],
        edges: &[Edge],
    ) -> Result<(), PolicyError> {
        // Every source prefix, sorted, with its owner: an overlap is between neighbours
        // in address order (or a covering prefix seen earlier).
        let mut sources: Vec<(Ipv4Net, usize, String)> = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let at = format!("client[{i}] {}", quote(&c.name));
            for (k, p) in c.prefixes.iter().enumerate() {
                sources.push((*p, i, format!("{at}.prefixes[{k}]")));
            }
            for (k, p) in c.extra_sources.iter().enumerate() {
                sources.push((*p, i, format!("{at}.extra_sources[{k}]")));
            }
        }
        // Sort by network, then widest first: a prefix that covers others precedes them.
        sources.sort_by_key(|(p, i, _)| (p.network(), p.prefix_len(), *i));
        let mut open: Vec<&(Ipv4Net, usize, String)> = Vec::new();
        for s in &sources {
            open.retain(|o| o.0.contains(&s.0.network()));
            if let Some(o) = open.iter().find(|o| o.1 != s.1) {
                let (later, earlier) = if (s.1, &s.2) > (o.1, &o.2) {
                    (s, *o)
                } else {
                    (*o, s)
                };
                return Err(self.err(
                    later.2.clone(),
                    Some(later.0.to_string()),
                    format!(
                        "overlaps {} of {}; an inner source must belong to one client only",
                        earlier.0, earlier.2
                    ),
                ));
            }
            open.push(s);
        }
        // A client router inside a client's prefixes would be routed into a tunnel (or
        // across the core): its own tunnel's packets would be encapsulated again.
        let mut routed: Vec<(Ipv4Net, String)> = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            for (k, p) in c.prefixes.iter().enumerate() {
                routed.push((*p, format!("client[{i}] {}.prefixes[{k}]", quote(&c.name))));
            }
        }
        for (i, c) in clients.iter().enumerate() {
            let at = format!("client[{i}] {}", quote(&c.name));
            let mut remotes = vec![(format!("{at}.remote"), c.remote)];
            for (j, p) in c.placement.iter().enumerate() {
                if let Some(r) = p.remote {
                    remotes.push((format!("{at}.placement[{j}].remote"), r));
                }
            }
            for (field, r) in remotes {
                if let Some((p, owner)) = routed.iter().find(|(p, _)| p.contains(&r)) {
                    return Err(self.err(field, Some(quote(&r.to_string())), format!("is inside {p} ({owner}): the tunnel's own packets would be routed into a tunnel")));
                }
            }
        }
        // Per edge: tunnels told apart by (local, remote, mode, key); links apart.
        for (e, edge) in edges.iter().enumerate() {
            let mut endpoints: HashMap<(Ipv4Addr, Mode, Option<u32>), String> = HashMap::new();
            let mut links: Vec<(Ipv4Net, String)> = Vec::new();
            for (i, c) in clients.iter().enumerate() {
                for (j, p) in c.placement.iter().enumerate().filter(|(_, p)| p.edge == e) {
                    let at = format!("client[{i}] {}.placement[{j}]", quote(&raw[i].name));
                    let remote = p.remote.unwrap_or(c.remote);
                    if let Some(first) = endpoints.insert((remote, c.mode, c.key), at.clone()) {
                        return Err(self.err(
                            at,
                            None,
                            format!(
                                "gives edge {:?} a second {} tunnel from {remote}{} ({first} has one): the edge could not tell them apart; give one a key of its own",
                                edge.name,
                                c.mode,
                                c.key.map(|k| format!(" with key {k}")).unwrap_or_default()
                            ),
                        ));
                    }
                    if let Some(link) = p.link {
                        let field = format!("{at}.link");
                        if let Some((other, owner)) = links.iter().find(|(l, _)| {
                            l.contains(&link.network()) || link.contains(&l.network())
                        }) {
                            return Err(self.err(
                                field,
                                Some(quote(&link.to_string())),
                                format!(
                                    "overlaps {other} of {owner}: links at edge {:?} never overlap",
                                    edge.name
                                ),
                            ));
                        }
                        if let Some((p, _, owner)) = sources.iter().find(|(p, _, _)| {
                            p.contains(&link.network()) || link.contains(&p.network())
                        }) {
                            return Err(self.err(field, Some(quote(&link.to_string())), format!("overlaps {p} of {owner}: the link is an accepted inner source of the tunnel")));
                        }
                        links.push((link, field));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The clients each edge hosts, by edge index: `(client index, placement index)`.
pub fn hosted(policy: &Policy) -> BTreeMap<usize, Vec<(usize, usize)>> {
    let mut out: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, c) in policy.clients.iter().enumerate() {
        for (j, p) in c.placement.iter().enumerate() {
            out.entry(p.edge).or_default().push((i, j));
        }
    }
    out
}
