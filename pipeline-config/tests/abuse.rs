//! Configuration abuse, systematically: every field of the annotated example
//! (`examples/lab.toml`, the example that uses the most fields) is given a wrong type, an
//! out-of-range or malformed value, a duplicate; every array-of-tables entry is duplicated;
//! every table gets a field it does not know. Each mutated document must be refused by
//! [`pipeline_config::parse`], and the error must point at the mutated field:
//!
//! - a validation error (`ConfigError::Invalid`) must name exactly the field's path in the
//!   crate's form (`tunnel[1] "client-b".mtu`, `workers.lcores[0]`, arrays counted from 0)
//!   and quote the value where one is written;
//! - a schema error from the TOML parser (`ConfigError::Syntax`: wrong type, unknown field)
//!   must carry the line that holds the field, and quote that line, key included. The test
//!   writes the mutated document itself, one key per line, so that the line pins the field.
//!
//! The few mutations that are legitimately valid (`ttl = 7` where `"inherit"` was written:
//! ttl takes an integer or a word) are listed with the reason, and checked to be accepted,
//! so the list cannot hide a rejection either. The test prints how many mutations it
//! checked and fails below a floor, so it cannot silently check nothing; it also fails if
//! the example leaves out a field of the schema, or holds one this test does not know.

use pipeline_config::{parse, ConfigError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use toml::Value;

const ORIGIN: &str = "abuse.toml";

/// Below this many refused mutations the test has lost its reach (it checks about 1,000).
const FLOOR: usize = 900;

/// One step of a path in the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Key(String),
    Index(usize),
}

type FieldPath = Vec<Seg>;

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

/// `port[0].neighbor[1].ip`: the path as this test writes it.
fn plain(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// The path as the crate names it: ports and tunnels carry their name after the index
/// (`port[0] "client0".mtu`), except in the path of the name field itself (`port[0].name`).
fn crate_field(doc: &Value, path: &[Seg]) -> String {
    let mut s = String::new();
    for (i, seg) in path.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(n) => {
                let _ = write!(s, "[{n}]");
                let named_kind =
                    i == 1 && matches!(&path[0], Seg::Key(k) if k == "port" || k == "tunnel");
                let names_itself = matches!(path.get(i + 1), Some(Seg::Key(k)) if k == "name");
                if named_kind && !names_itself {
                    if let Some(name) = get(doc, &path[..=i]).get("name").and_then(Value::as_str) {
                        let _ = write!(s, " {name:?}");
                    }
                }
            }
        }
    }
    s
}

fn get<'a>(v: &'a Value, path: &[Seg]) -> &'a Value {
    path.iter().fold(v, |v, seg| match seg {
        Seg::Key(k) => &v[k.as_str()],
        Seg::Index(i) => &v[*i],
    })
}

fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, seg| match seg {
        Seg::Key(k) => v
            .get_mut(k.as_str())
            .unwrap_or_else(|| panic!("no {k} on the path")),
        Seg::Index(i) => v.get_mut(*i).expect("index on the path"),
    })
}

/// The document with the value at `path` replaced.
fn with(doc: &Value, path: &[Seg], value: Value) -> Value {
    let mut d = doc.clone();
    *get_mut(&mut d, path) = value;
    d
}

/// The document with `value` appended to the array at `path`.
fn appended(doc: &Value, path: &[Seg], value: Value) -> Value {
    let mut d = doc.clone();
    get_mut(&mut d, path)
        .as_array_mut()
        .expect("an array")
        .push(value);
    d
}

fn is_table_array(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_table))
}

// ---------------------------------------------------------------- writing the document

/// A document written one key per line, and the line each field's key is on.
struct Written {
    text: String,
    lines: BTreeMap<FieldPath, usize>,
    /// The field written inline even if it holds a table or tables: a table given for a
    /// scalar stays on its key's line.
    inline_at: FieldPath,
}

impl Written {
    fn new(doc: &Value, inline_at: &[Seg]) -> Written {
        let mut w = Written {
            text: String::new(),
            lines: BTreeMap::new(),
            inline_at: inline_at.to_vec(),
        };
        w.table(doc.as_table().expect("a table"), &[], &mut Vec::new());
        w
    }

    /// The line of the field at `path`, or of the nearest field that holds it (an array
    /// element is on its array's line).
    fn line_of(&self, path: &[Seg]) -> usize {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&path[..n]).copied())
            .unwrap_or_else(|| panic!("{} was not written", plain(path)))
    }

    fn push_line(&mut self, line: &str) -> usize {
        self.text.push_str(line);
        self.text.push('\n');
        self.text.matches('\n').count()
    }

    fn table(&mut self, t: &toml::Table, header: &[String], path: &mut FieldPath) {
        let inline_at = self.inline_at.clone();
        let section = |path: &mut FieldPath, k: &str, v: &Value| {
            path.push(key(k));
            let inline = *path == inline_at;
            path.pop();
            !inline && (v.is_table() || is_table_array(v))
        };
        for (k, v) in t {
            if !section(path, k, v) {
                path.push(key(k));
                let line = self.push_line(&format!("{} = {}", bare(k), inline(v)));
                self.lines.insert(path.clone(), line);
                path.pop();
            }
        }
        for (k, v) in t {
            if !section(path, k, v) {
                continue;
            }
            let mut header = header.to_vec();
            header.push(bare(k));
            if let Some(sub) = v.as_table() {
                path.push(key(k));
                let line = self.push_line(&format!("[{}]", header.join(".")));
                self.lines.insert(path.clone(), line);
                self.table(sub, &header, path);
                path.pop();
            } else if is_table_array(v) {
                for (i, entry) in v.as_array().into_iter().flatten().enumerate() {
                    path.push(key(k));
                    path.push(Seg::Index(i));
                    let line = self.push_line(&format!("[[{}]]", header.join(".")));
                    self.lines.insert(path.clone(), line);
                    self.table(entry.as_table().expect("a table"), &header, path);
                    path.truncate(path.len() - 2);
                }
            }
        }
    }
}

/// A key, bare where TOML allows it.
fn bare(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        Value::String(k.to_owned()).to_string()
    }
}

/// A value on one line: inline arrays and inline tables.
fn inline(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", bare(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => scalar.to_string(),
    }
}

// ---------------------------------------------------------------- what each field is

/// What a field holds, and so which values are out of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `[eal] args`: handed to EAL as written; only EAL can judge them.
    EalArgs,
    /// One EAL argument.
    EalArg,
    /// `[workers] lcores`: not empty.
    Lcores,
    Lcore,
    /// `[workers] poll`: "adaptive" or "busy".
    Poll,
    /// `[workers] idle_sleep_max_us`: 1 to 10,000.
    IdleSleep,
    /// A port or tunnel name: not empty, unique.
    Name,
    /// A port's device: not empty, unique.
    Device,
    /// A port's roles: at least one.
    Roles,
    Role,
    Mac,
    /// An array of addresses, prefixes: any length is fine.
    List,
    /// An address of ours: unicast.
    Unicast,
    /// A unicast address that is not ours (a neighbour's, a next hop).
    Foreign,
    /// A port address: IPv4 or IPv6 unicast (IPv6 neither link-local nor IPv4-mapped).
    Unicast46,
    /// A static neighbour's address: IPv4 or IPv6 unicast, not ours.
    Foreign46,
    /// A tunnel's local end: one of our addresses.
    Local,
    PortMtu,
    Queues,
    /// A plain bool: every value is valid.
    Flag,
    Key,
    Mode,
    Ttl,
    Dscp,
    Df,
    /// A reference to a port by name.
    PortName,
    /// A reference to a tunnel by name.
    TunnelName,
    TunnelMtu,
    Prefix,
    /// `blackhole`, `unreachable`, `prohibit`: only `true` is a target.
    Blackhole,
    /// `[icmp] rate` and `burst`: 0 to 10,000,000.
    IcmpLimit,
    /// A tunnel's `link`: our address with the prefix of the client router's side.
    Link,
    /// `[fpm] listen`: an address and a port.
    SocketAddr,
    /// `[fpm] grace`: 1 to 3600 seconds.
    FpmGrace,
    /// An AS number: 1 to 4,294,967,294, not AS_TRANS; a client's differs from ours.
    Asn,
    /// `[bgp] max_prefix_len`: 8 to 32.
    MaxPrefixLen,
    /// `[bgp] bfd_interval_ms`: 10 to 60,000.
    BfdInterval,
    /// `[bgp] bfd_multiplier`: 2 to 255.
    BfdMultiplier,
    /// `[health] probe_interval_ms`: 10 to 60,000.
    ProbeInterval,
    /// `[health] probe_misses`: 1 to 100.
    ProbeMisses,
    /// A file path: not empty.
    Path,
    /// A command: not empty, no empty word.
    Command,
    CommandWord,
}

/// Every field of the schema, by section and key (CONFIG.md's field reference).
const FIELDS: &[(&str, &str, Kind)] = &[
    ("eal", "args", Kind::EalArgs),
    ("workers", "lcores", Kind::Lcores),
    ("workers", "poll", Kind::Poll),
    ("workers", "idle_sleep_max_us", Kind::IdleSleep),
    ("port", "name", Kind::Name),
    ("port", "device", Kind::Device),
    ("port", "roles", Kind::Roles),
    ("port", "mac", Kind::Mac),
    ("port", "addresses", Kind::List),
    ("port", "mtu", Kind::PortMtu),
    ("port", "transit", Kind::Flag),
    ("port", "rx_queues", Kind::Queues),
    ("port", "tx_queues", Kind::Queues),
    ("port", "host_interface", Kind::Flag),
    ("port.neighbor", "ip", Kind::Foreign46),
    ("port.neighbor", "mac", Kind::Mac),
    ("tunnel", "name", Kind::Name),
    ("tunnel", "mode", Kind::Mode),
    ("tunnel", "local", Kind::Local),
    ("tunnel", "remote", Kind::Foreign),
    ("tunnel", "key", Kind::Key),
    ("tunnel", "sequence", Kind::Flag),
    ("tunnel", "checksum", Kind::Flag),
    ("tunnel", "ttl", Kind::Ttl),
    ("tunnel", "dscp", Kind::Dscp),
    ("tunnel", "df", Kind::Df),
    ("tunnel", "port", Kind::PortName),
    ("tunnel", "next_hop", Kind::Foreign),
    ("tunnel", "mtu", Kind::TunnelMtu),
    ("tunnel", "prefixes", Kind::List),
    ("tunnel", "extra_sources", Kind::List),
    ("tunnel", "link", Kind::Link),
    ("route", "prefix", Kind::Prefix),
    ("route", "tunnel", Kind::TunnelName),
    ("route", "port", Kind::PortName),
    ("route", "next_hop", Kind::Foreign),
    ("route", "blackhole", Kind::Blackhole),
    ("route", "unreachable", Kind::Blackhole),
    ("route", "prohibit", Kind::Blackhole),
    ("icmp", "rate", Kind::IcmpLimit),
    ("icmp", "burst", Kind::IcmpLimit),
    ("fpm", "listen", Kind::SocketAddr),
    ("fpm", "grace", Kind::FpmGrace),
    ("tunnel", "asn", Kind::Asn),
    ("tunnel", "bfd", Kind::Flag),
    ("bgp", "asn", Kind::Asn),
    ("bgp", "router_id", Kind::Unicast),
    ("bgp", "max_prefix_len", Kind::MaxPrefixLen),
    ("bgp", "bfd_interval_ms", Kind::BfdInterval),
    ("bgp", "bfd_multiplier", Kind::BfdMultiplier),
    ("tunnel", "probe", Kind::Flag),
    ("tunnel", "fallback", Kind::Flag),
    ("health", "probe_interval_ms", Kind::ProbeInterval),
    ("health", "probe_misses", Kind::ProbeMisses),
    ("bgp", "frr_config", Kind::Path),
    ("bgp", "frr_reload", Kind::Command),
];

/// The section (`port.neighbor`) and key of a field; its kind; for an element of an
/// array of scalars, the element's kind.
fn kind_of(path: &[Seg]) -> (String, String, Kind) {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let (field, section) = keys.split_last().expect("a field");
    let section = section.join(".");
    let kind = FIELDS
        .iter()
        .find(|(s, k, _)| *s == section && k == field)
        .map(|&(_, _, kind)| kind)
        .unwrap_or_else(|| {
            panic!(
                "{} is not in this test's FIELDS: add it with its kind",
                plain(path)
            )
        });
    let element = matches!(path.last(), Some(Seg::Index(_)));
    let kind = match (kind, element) {
        (Kind::EalArgs, true) => Kind::EalArg,
        (Kind::Command, true) => Kind::CommandWord,
        (Kind::Lcores, true) => Kind::Lcore,
        (Kind::Roles, true) => Kind::Role,
        (Kind::List, true) if *field == "addresses" => Kind::Unicast46,
        (Kind::List, true) => Kind::Prefix,
        (kind, _) => kind,
    };
    (section, (*field).to_owned(), kind)
}

// ---------------------------------------------------------------- mutations

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    WrongType,
    OutOfRange,
    Duplicate,
    UnknownField,
}

struct Mutation {
    category: Category,
    /// What was done, for failure messages.
    what: String,
    doc: Value,
    /// The field the error must point at.
    field: FieldPath,
    /// Text the error must quote, where practical.
    value: Option<String>,
    /// `Some(why)`: a mutation that is valid after all, and must be accepted.
    valid_because: Option<&'static str>,
}

fn mutation(
    category: Category,
    what: String,
    doc: Value,
    field: FieldPath,
    value: Option<String>,
) -> Mutation {
    Mutation {
        category,
        what,
        doc,
        field,
        value,
        valid_because: None,
    }
}

/// The text an error must quote for `v`, where that is practical (not for tables, arrays
/// with elements and datetimes, which toml describes by their type).
fn quotable(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() => Some("\"\"".to_owned()),
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Array(a) if a.is_empty() => Some("[]".to_owned()),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a bool",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// One value of every TOML type.
fn every_type() -> Vec<Value> {
    let mut table = toml::Table::new();
    table.insert("abuse".into(), Value::Integer(1));
    vec![
        Value::String("abuse".into()),
        Value::Integer(7),
        Value::Float(1.5),
        Value::Boolean(true),
        Value::Datetime("1979-05-27T07:32:00Z".parse().expect("a datetime")),
        Value::Array(vec![Value::String("abuse".into())]),
        Value::Table(table),
    ]
}

const TWO_40: i64 = 1 << 40;

fn strings(words: &[&str]) -> Vec<Value> {
    words
        .iter()
        .map(|w| Value::String((*w).to_owned()))
        .collect()
}

fn ints(ns: &[i64]) -> Vec<Value> {
    ns.iter().map(|&n| Value::Integer(n)).collect()
}

/// Text that is not an IPv4 address at all.
const NOT_ADDRESSES: &[&str] = &[
    "300.1.2.3",
    "10.0.0.1/33",
    "10.0.0",
    "zz",
    "",
    " 192.0.2.1",
    "2001:db8::1",
];

/// IPv4 addresses that are no unicast host's.
const NOT_UNICAST: &[&str] = &[
    "0.0.0.0",
    "0.1.2.3",
    "127.0.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
];

/// IPv6 addresses that cannot be a port's or a neighbour's (RFC 4291).
const NOT_UNICAST6: &[&str] = &["::", "::1", "ff02::1", "fe80::1", "::ffff:192.0.2.9"];

/// Values out of the field's range or malformed for it (the field's original value helps
/// build some: a prefix with host bits).
fn out_of_range(kind: Kind, original: &Value) -> Vec<Value> {
    let mut v = match kind {
        // Free text for EAL, bools, lists of any length: nothing is out of range.
        Kind::EalArgs | Kind::EalArg | Kind::Flag | Kind::List => vec![],
        Kind::Lcores | Kind::Roles => vec![Value::Array(vec![])],
        Kind::Lcore => ints(&[1 << 32]),
        Kind::Name | Kind::Device => strings(&[""]),
        Kind::Role => strings(&["bogus", "Client", ""]),
        Kind::Mac => strings(&[
            "zz:00:00:00:00:01",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02-00-00-00-00-01",
            "2:00:00:00:00:01",
            "",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ]),
        Kind::Unicast => {
            let mut v = strings(NOT_ADDRESSES);
            v.extend(strings(NOT_UNICAST));
            v
        }
        Kind::Foreign => {
            let mut v = strings(NOT_ADDRESSES);
            v.extend(strings(NOT_UNICAST));
            // Our own addresses (ports client0 and inet0).
            v.extend(strings(&["192.0.2.1", "203.0.113.1"]));
            v
        }
        Kind::Unicast46 | Kind::Foreign46 => {
            let mut v = strings(NOT_ADDRESSES);
            v.retain(|a| a.as_str() != Some("2001:db8::1"));
            v.extend(strings(NOT_UNICAST));
            v.extend(strings(NOT_UNICAST6));
            if kind == Kind::Foreign46 {
                v.extend(strings(&["192.0.2.1", "203.0.113.1"]));
            }
            v
        }
        Kind::Local => {
            let mut v = strings(NOT_ADDRESSES);
            // Well-formed, but not one of our addresses.
            v.extend(strings(&["198.51.100.77", "127.0.0.1"]));
            v
        }
        Kind::PortMtu => ints(&[0, 67, 9001]),
        Kind::Queues => ints(&[0, 65]),
        Kind::Key => ints(&[1 << 32]),
        Kind::Mode => strings(&["bogus", "GRE", ""]),
        Kind::Ttl => {
            let mut v = ints(&[0, 256]);
            v.extend(strings(&["bogus", "Inherit", ""]));
            v
        }
        Kind::Dscp => {
            let mut v = ints(&[64]);
            v.extend(strings(&["bogus", "COPY", ""]));
            v
        }
        Kind::Df => strings(&["bogus", "SET", ""]),
        Kind::Poll => strings(&["bogus", "ADAPTIVE", "interrupt", ""]),
        Kind::IdleSleep => ints(&[0, 10_001]),
        Kind::PortName | Kind::TunnelName => strings(&["bogus", ""]),
        // Above every port's MTU (1500 in the example), below 68 + headers.
        Kind::TunnelMtu => ints(&[0, 67, 1501, 9000]),
        Kind::Prefix => {
            let mut v = strings(&[
                "10.0.0.1/33",
                "300.1.2.3/8",
                "10.1.0.0",
                "10.1.0.0/",
                "10.1.0.0/-1",
                "2001:db8::1/32",
                "2001:db8::/129",
                "bogus",
                "",
            ]);
            // The original prefix with its lowest host bit set.
            let net: ipnet_free::Net = original.as_str().expect("a prefix").parse().unwrap();
            v.push(Value::String(net.with_host_bit()));
            v
        }
        Kind::Blackhole => vec![Value::Boolean(false)],
        Kind::IcmpLimit => ints(&[10_000_001]),
        Kind::SocketAddr => strings(&[
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:65536",
            ":2620",
            "localhost:2620",
            "300.0.0.1:2620",
            "",
        ]),
        Kind::FpmGrace => ints(&[0, 3601]),
        Kind::Link => strings(&[
            "bogus",
            "",
            "169.254.10.1",    // no prefix length
            "169.254.10.1/32", // no room for the client router's side
            "169.254.10.0/30", // the network address
            "169.254.10.3/30", // the broadcast address
            "192.0.2.1/31",    // one of our port addresses
            "224.0.0.1/31",    // not unicast
            "2001:db8::1/64",
        ]),
        Kind::Asn => {
            // Zero, AS_TRANS (RFC 6793), past 32 bits less one (reserved); and for a client
            // (client A's 65001), our own 65000: eBGP only.
            let mut v = ints(&[0, 23_456, 4_294_967_295]);
            if original.as_integer() == Some(65_001) {
                v.extend(ints(&[65_000]));
            }
            v
        }
        Kind::MaxPrefixLen => ints(&[7, 33]),
        Kind::BfdInterval => ints(&[9, 60_001]),
        Kind::BfdMultiplier => ints(&[1, 256]),
        Kind::ProbeInterval => ints(&[9, 60_001]),
        Kind::ProbeMisses => ints(&[0, 101]),
        Kind::Path | Kind::CommandWord => strings(&[""]),
        Kind::Command => vec![Value::Array(vec![])],
    };
    if matches!(
        kind,
        Kind::Lcore
            | Kind::PortMtu
            | Kind::Queues
            | Kind::Key
            | Kind::Ttl
            | Kind::Dscp
            | Kind::TunnelMtu
            | Kind::IcmpLimit
            | Kind::FpmGrace
            | Kind::IdleSleep
            | Kind::Asn
            | Kind::MaxPrefixLen
            | Kind::BfdInterval
            | Kind::BfdMultiplier
            | Kind::ProbeInterval
            | Kind::ProbeMisses
    ) {
        v.extend(ints(&[-1, TWO_40]));
    }
    v
}

/// Enough of IPv4 prefixes to set a host bit, without the crate's own parser.
mod ipnet_free {
    use std::net::Ipv4Addr;

    pub struct Net {
        addr: u32,
        len: u32,
    }

    impl std::str::FromStr for Net {
        type Err = String;

        fn from_str(s: &str) -> Result<Net, String> {
            let (a, l) = s.split_once('/').ok_or("no length")?;
            let addr: Ipv4Addr = a.parse().map_err(|e| format!("{e}"))?;
            let len: u32 = l.parse().map_err(|e| format!("{e}"))?;
            Ok(Net {
                addr: addr.into(),
                len,
            })
        }
    }

    impl Net {
        /// The same prefix written with its lowest host bit set (`10.1.0.1/16`); a /32
        /// has no host bits, so it gets a length it cannot have (`/33`).
        pub fn with_host_bit(&self) -> String {
            if self.len >= 32 {
                return format!("{}/33", Ipv4Addr::from(self.addr));
            }
            format!("{}/{}", Ipv4Addr::from(self.addr | 1), self.len)
        }
    }
}

/// A wrong-type mutation that is valid after all, and why.
fn valid_anyway(kind: Kind, substitute: &Value) -> Option<&'static str> {
    match (kind, substitute) {
        (Kind::Ttl, Value::Integer(7)) => {
            Some("ttl takes an integer or \"inherit\"; 7 is a valid TTL")
        }
        (Kind::Dscp, Value::Integer(7)) => {
            Some("dscp takes an integer or \"copy\"; 7 is a valid DSCP")
        }
        _ => None,
    }
}

/// Every field path (tables' values, scalar arrays' elements), and every entry of an
/// array of tables, in document order.
fn fields(v: &Value, path: &mut FieldPath, out: &mut Vec<FieldPath>, entries: &mut Vec<FieldPath>) {
    match v {
        Value::Table(t) => {
            for (k, v) in t {
                path.push(key(k));
                if !v.is_table() && !is_table_array(v) {
                    out.push(path.clone());
                }
                fields(v, path, out, entries);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                if v.is_table() {
                    entries.push(path.clone());
                } else {
                    out.push(path.clone());
                }
                fields(v, path, out, entries);
                path.pop();
            }
        }
        _ => {}
    }
}

fn mutations(doc: &Value) -> (Vec<Mutation>, BTreeSet<(String, String)>) {
    let (mut leaves, mut entries) = (Vec::new(), Vec::new());
    fields(doc, &mut Vec::new(), &mut leaves, &mut entries);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();

    for path in &leaves {
        let original = get(doc, path);
        let (section, field, kind) = kind_of(path);
        seen.insert((section, field));

        // (a) every value of another type.
        for substitute in every_type() {
            if type_name(&substitute) == type_name(original) {
                continue; // the same type: not a wrong type (out_of_range covers values)
            }
            let mut m = mutation(
                Category::WrongType,
                format!(
                    "{} = {} ({}, not {})",
                    plain(path),
                    inline(&substitute),
                    type_name(&substitute),
                    type_name(original)
                ),
                with(doc, path, substitute.clone()),
                path.clone(),
                quotable(&substitute),
            );
            m.valid_because = valid_anyway(kind, &substitute);
            out.push(m);
        }

        // (b) out of range, malformed.
        for bad in out_of_range(kind, original) {
            out.push(mutation(
                Category::OutOfRange,
                format!("{} = {}", plain(path), inline(&bad)),
                with(doc, path, bad.clone()),
                path.clone(),
                quotable(&bad),
            ));
        }

        // (c) an element of a list written twice. EAL arguments may repeat (two --vdev),
        // and so may a command's words.
        let may_repeat = matches!(kind, Kind::EalArg | Kind::CommandWord);
        if let (Some(Seg::Index(_)), false) = (path.last(), may_repeat) {
            let list = &path[..path.len() - 1];
            let n = get(doc, list).as_array().expect("a list").len();
            let mut field = list.to_vec();
            field.push(Seg::Index(n));
            out.push(mutation(
                Category::Duplicate,
                format!("{} appended to {}", inline(original), plain(list)),
                appended(doc, list, original.clone()),
                field,
                quotable(original),
            ));
        }
    }

    // Whole tables and array-of-tables entries of another type.
    for path in entries.iter().chain(
        ["eal", "workers", "icmp", "fpm"]
            .iter()
            .map(|k| vec![key(k)])
            .collect::<Vec<_>>()
            .iter(),
    ) {
        for substitute in every_type() {
            if substitute.is_table() {
                continue;
            }
            out.push(mutation(
                Category::WrongType,
                format!("{} = {}", plain(path), inline(&substitute)),
                with(doc, path, substitute.clone()),
                path.clone(),
                quotable(&substitute),
            ));
        }
    }

    // (c) every array-of-tables entry twice, and again under a fresh name: whatever makes
    // it unique must be found.
    for path in &entries {
        let list = &path[..path.len() - 1];
        let n = get(doc, list).as_array().expect("a list").len();
        let entry = get(doc, path).clone();
        let mut copy_at = list.to_vec();
        copy_at.push(Seg::Index(n));
        let section: Vec<&str> = list
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Index(_) => None,
            })
            .collect();
        let (field, value): (FieldPath, Option<String>) = match section.join(".").as_str() {
            // Ports and tunnels are found by name first.
            "port" | "tunnel" => (
                [copy_at.clone(), vec![key("name")]].concat(),
                entry.get("name").and_then(quotable),
            ),
            // Neighbours by IP, routes by prefix.
            "port.neighbor" => (
                [copy_at.clone(), vec![key("ip")]].concat(),
                entry.get("ip").and_then(quotable),
            ),
            "route" => (
                [copy_at.clone(), vec![key("prefix")]].concat(),
                entry.get("prefix").and_then(quotable),
            ),
            other => panic!("no duplicate rule for [[{other}]]"),
        };
        out.push(mutation(
            Category::Duplicate,
            format!("{} written twice", plain(path)),
            appended(doc, list, entry.clone()),
            field,
            value,
        ));

        if let Some(name) = entry.get("name").and_then(Value::as_str) {
            let mut renamed = entry.clone();
            renamed["name"] = Value::String(format!("{name}-twin"));
            let doc2 = appended(doc, list, renamed.clone());
            // A port is then found by its device; a tunnel by its receive identity
            // (local, remote, mode, key), which the error names the tunnel for.
            let (field, value) = if path[0] == key("port") {
                (
                    [copy_at.clone(), vec![key("device")]].concat(),
                    entry.get("device").and_then(quotable),
                )
            } else {
                (copy_at.clone(), entry.get("remote").and_then(quotable))
            };
            out.push(mutation(
                Category::Duplicate,
                format!("{} copied as {name}-twin", plain(path)),
                doc2,
                field,
                value,
            ));
        }
    }

    // (c) keys claimed twice across entries.
    let cross: [(&str, &str, &str); 4] = [
        // An address on two ports.
        ("port[0].addresses[0]", "port[1].addresses[0]", "192.0.2.1"),
        // A prefix claimed by a tunnel and by a route.
        ("tunnel[0].prefixes[0]", "route[1].prefix", "10.1.0.0/16"),
        // A prefix claimed by two tunnels.
        (
            "tunnel[0].prefixes[0]",
            "tunnel[2].prefixes[0]",
            "10.1.0.0/16",
        ),
        // An inner source of one tunnel inside another's prefix (BCP 38).
        (
            "tunnel[0].prefixes[0]",
            "tunnel[1].extra_sources[0]",
            "10.1.0.0/16",
        ),
    ];
    for (from, to, value) in cross {
        let from = parse_path(from);
        let to = parse_path(to);
        assert_eq!(get(doc, &from).as_str(), Some(value), "the example changed");
        out.push(mutation(
            Category::Duplicate,
            format!("{} = {} (the value of {})", plain(&to), value, plain(&from)),
            with(doc, &to, get(doc, &from).clone()),
            to,
            Some(value.to_owned()),
        ));
    }

    // A field no table knows, in every table.
    let tables: Vec<FieldPath> = std::iter::once(vec![])
        .chain(entries.iter().cloned())
        .chain([vec![key("eal")], vec![key("workers")]])
        .collect();
    for path in tables {
        let mut d = doc.clone();
        get_mut(&mut d, &path)
            .as_table_mut()
            .expect("a table")
            .insert("abuse".into(), Value::Integer(1));
        out.push(mutation(
            Category::UnknownField,
            format!(
                "{} gets abuse = 1",
                if path.is_empty() {
                    "the file".into()
                } else {
                    plain(&path)
                }
            ),
            d,
            [path, vec![key("abuse")]].concat(),
            Some("abuse".into()),
        ));
    }

    (out, seen)
}

/// `tunnel[1].extra_sources[0]` as a path.
fn parse_path(s: &str) -> FieldPath {
    let mut path = Vec::new();
    for part in s.split('.') {
        let (k, rest) = part.split_once('[').unwrap_or((part, ""));
        path.push(key(k));
        if !rest.is_empty() {
            path.push(Seg::Index(rest.trim_end_matches(']').parse().unwrap()));
        }
    }
    path
}

/// Why the error for `m` is not what it must be, if it is not.
fn wrong(m: &Mutation) -> Option<String> {
    // A wrong type stays on its key's line; in an array, the whole array does.
    let inline_at = match (m.category, m.field.split_last()) {
        (Category::WrongType, Some((Seg::Index(_), list))) => list,
        (Category::WrongType, _) => &m.field[..],
        _ => &[],
    };
    let written = Written::new(&m.doc, inline_at);
    let err = match (parse(&written.text, ORIGIN), m.valid_because) {
        (Ok(_), Some(_)) => return None,
        (Err(e), Some(why)) => {
            return Some(format!(
                "listed as valid ({why}) but refused: {e}\n--- remove it from valid_anyway"
            ))
        }
        (Ok(_), None) => return Some("ACCEPTED".into()),
        (Err(e), None) => e,
    };
    let message = err.to_string();
    if !message.starts_with(&format!("{ORIGIN}: ")) {
        return Some(format!("the error does not name the file: {message}"));
    }
    match &err {
        ConfigError::Invalid { field, .. } => {
            let want = crate_field(&m.doc, &m.field);
            if *field != want {
                return Some(format!("names {field:?}, not {want:?}: {message}"));
            }
        }
        ConfigError::Syntax { line, .. } => {
            let want = written.line_of(&m.field);
            if *line != Some(want) {
                return Some(format!(
                    "points at line {line:?}, not line {want} that holds {}: {message}",
                    plain(&m.field)
                ));
            }
            // The quoted line shows the key (the nearest one on the path).
            let k = m
                .field
                .iter()
                .rev()
                .find_map(|s| match s {
                    Seg::Key(k) => Some(k.as_str()),
                    Seg::Index(_) => None,
                })
                .expect("a key");
            if !message.contains(&format!("{} = ", bare(k))) {
                return Some(format!("does not quote the line of `{k}`: {message}"));
            }
        }
        other => return Some(format!("unexpected error {other:?}")),
    }
    if let Some(value) = &m.value {
        if !message.contains(value.as_str()) {
            return Some(format!("does not quote the value {value}: {message}"));
        }
    }
    None
}

/// The lab example, with the one schema field it leaves at its default written out.
fn example() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/lab.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: Value = toml::from_str(&text).unwrap();
    doc["port"][0]
        .as_table_mut()
        .unwrap()
        .insert("transit".into(), Value::Boolean(false));
    doc
}

#[test]
fn the_written_example_is_the_example() {
    let doc = example();
    let written = Written::new(&doc, &[]);
    let again: Value = toml::from_str(&written.text).unwrap();
    assert_eq!(again, doc, "{}", written.text);
    parse(&written.text, ORIGIN).unwrap_or_else(|e| panic!("{e}\n{}", written.text));
    assert_eq!(
        written.line_of(&parse_path("tunnel[1].key")),
        written.text.lines().position(|l| l == "key = 200").unwrap() + 1
    );
    assert_eq!(
        crate_field(&doc, &parse_path("port[0].neighbor[2].mac")),
        "port[0] \"client0\".neighbor[2].mac"
    );
    assert_eq!(
        crate_field(&doc, &parse_path("tunnel[1].name")),
        "tunnel[1].name"
    );
    assert_eq!(
        crate_field(&doc, &parse_path("route[0].prefix")),
        "route[0].prefix"
    );
}

#[test]
fn every_field_abused_is_refused_and_named() {
    let doc = example();
    let (mutations, seen) = mutations(&doc);

    // Every field of the schema was in the example, and mutated.
    let all: BTreeSet<(String, String)> = FIELDS
        .iter()
        .map(|(s, k, _)| ((*s).to_owned(), (*k).to_owned()))
        .collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "the example leaves out {missing:?}");

    let mut failures = Vec::new();
    let mut refused: BTreeMap<Category, usize> = BTreeMap::new();
    let mut valid = Vec::new();
    for m in &mutations {
        if let Some(why) = wrong(m) {
            failures.push(format!("{:?} {}: {why}", m.category, m.what));
        } else if let Some(why) = m.valid_because {
            valid.push(format!("{} ({why})", m.what));
        } else {
            *refused.entry(m.category).or_default() += 1;
        }
    }
    let total: usize = refused.values().sum();
    println!(
        "{} mutations: {total} refused with the field named ({refused:?}), {} valid by design:",
        mutations.len(),
        valid.len()
    );
    for v in &valid {
        println!("  {v}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} mutations were not refused as they must be:\n{}",
        failures.len(),
        mutations.len(),
        failures.join("\n")
    );
    assert!(
        total >= FLOOR,
        "only {total} mutations refused; the floor is {FLOOR}"
    );
    for c in [
        Category::WrongType,
        Category::OutOfRange,
        Category::Duplicate,
        Category::UnknownField,
    ] {
        assert!(
            refused.get(&c).copied().unwrap_or(0) > 0,
            "no {c:?} mutation checked"
        );
    }
}

/// A table written as an array of its values, in the schema's field order, is a wrong
/// type: serde would otherwise take the values by position, and `route =
/// [["10.9.0.0/16", "client-a"]]` would be a route (a gap this test found).
#[test]
fn tables_written_as_arrays_are_refused() {
    let strs = |v: &[&str]| Value::Array(strings(v));
    let mut tunnel = strings(&["d", "gre", "192.0.2.1", "198.51.100.9"]);
    tunnel.extend([
        Value::Integer(9),
        Value::Boolean(false),
        Value::Boolean(false),
    ]);
    tunnel.extend([Value::Integer(64)]);
    tunnel.extend(strings(&["copy", "set", "client0"]));
    let cases = [
        (
            "route",
            "a [[route]] table",
            Value::Array(vec![strs(&["10.9.0.0/16", "client-a"])]),
        ),
        (
            "tunnel",
            "a [[tunnel]] table",
            Value::Array(vec![Value::Array(tunnel)]),
        ),
        (
            "port[0].neighbor",
            "a [[port.neighbor]] table",
            Value::Array(vec![strs(&["198.51.100.1", "02:00:00:00:01:01"])]),
        ),
        (
            "eal",
            "the [eal] table",
            Value::Array(vec![strs(&["-l", "0-1"])]),
        ),
        (
            "workers",
            "the [workers] table",
            Value::Array(vec![Value::Array(ints(&[1]))]),
        ),
    ];
    for (at, table, value) in cases {
        let path = parse_path(at);
        let doc = with(&example(), &path, value);
        let written = Written::new(&doc, &[]);
        match parse(&written.text, ORIGIN) {
            Err(ConfigError::Syntax { line, message, .. }) => {
                assert_eq!(line, Some(written.line_of(&path)), "{message}");
                assert!(message.contains(&format!("expected {table}")), "{message}");
            }
            other => panic!("{at} written as an array: {other:?}\n{}", written.text),
        }
    }
}
