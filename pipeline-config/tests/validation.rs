//! Parsing and validation: defaults, unknown fields, TOML errors and every validation rule.
//! Each rejection asserts that the error names the file, the field and the value.

use pipeline_config::{
    load, parse, ConfigError, Df, Dscp, MacAddr, PollMode, Role, RouteTarget, Ttl, TunnelMode,
    ValidatedConfig,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

const ORIGIN: &str = "backbone.toml";

/// Two ports and one GRE tunnel; tests append tables or replace lines.
const BASE: &str = r#"
[[port]]
name = "client0"
device = "net_pcap0"
roles = ["client"]
addresses = ["192.0.2.1"]

[[port]]
name = "inet0"
device = "net_pcap1"
roles = ["internet"]
addresses = ["203.0.113.1"]

[[tunnel]]
name = "a"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.1"
key = 100
port = "client0"
prefixes = ["10.1.0.0/16"]
"#;

fn ok(text: &str) -> ValidatedConfig {
    parse(text, ORIGIN).unwrap_or_else(|e| panic!("{e}\n--- config:\n{text}"))
}

/// BASE with `extra` appended.
fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

/// BASE with the first occurrence of `from` replaced by `to`.
fn replaced(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

/// Asserts an `Invalid` error for `field` with `value`, whose problem contains `problem`,
/// and that the message names the file, the field and the value.
#[track_caller]
fn invalid(text: &str, field: &str, value: Option<&str>, problem: &str) {
    let err = match parse(text, ORIGIN) {
        Ok(_) => panic!("accepted, expected an error on {field}\n--- config:\n{text}"),
        Err(e) => e,
    };
    let message = err.to_string();
    match &err {
        ConfigError::Invalid {
            origin,
            field: f,
            value: v,
            problem: p,
        } => {
            assert_eq!(origin, ORIGIN, "{message}");
            assert_eq!(f, field, "{message}");
            assert_eq!(v.as_deref(), value, "{message}");
            assert!(p.contains(problem), "{message:?} lacks {problem:?}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(
        message.starts_with(&format!("{ORIGIN}: {field}: ")),
        "{message}"
    );
    if let Some(value) = value {
        assert!(message.contains(value), "{message}");
    }
}

/// Asserts a `Syntax` error at `line` whose message contains every one of `parts`.
#[track_caller]
fn syntax(text: &str, line: usize, parts: &[&str]) {
    let err = parse(text, ORIGIN).expect_err("accepted");
    let message = err.to_string();
    match &err {
        ConfigError::Syntax {
            origin, line: l, ..
        } => {
            assert_eq!(origin, ORIGIN);
            assert_eq!(*l, Some(line), "{message}");
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
    assert!(message.starts_with(&format!("{ORIGIN}: ")), "{message}");
    assert!(message.contains(&format!("line {line}")), "{message}");
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults() {
    let c = ok(BASE);
    assert!(c.eal_args.is_empty());
    assert_eq!(c.worker_lcores, None);
    let p = &c.ports[0];
    assert_eq!(p.name, "client0");
    assert_eq!(p.device, "net_pcap0");
    assert_eq!(p.roles, vec![Role::Client]);
    assert_eq!(p.mac, None);
    assert_eq!(p.addresses, vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(p.mtu, 1500);
    assert!(
        !p.transit,
        "transit defaults to false without the internet role"
    );
    assert_eq!((p.rx_queues, p.tx_queues), (1, 1));
    assert!(p.neighbors.is_empty());
    assert!(
        c.ports[1].transit,
        "transit defaults to true with the internet role"
    );

    let t = &c.tunnels[0];
    assert_eq!(t.mode, TunnelMode::Gre);
    assert_eq!(t.key, Some(100));
    assert!(!t.sequence && !t.checksum);
    assert_eq!(t.ttl, Ttl::Fixed(64));
    assert_eq!(t.dscp, Dscp::Copy);
    assert_eq!(t.df, Df::Set);
    assert_eq!((t.port.index, t.port.name.as_str()), (0, "client0"));
    assert_eq!(t.next_hop, t.remote, "next_hop defaults to remote");
    assert_eq!(t.mtu, 1500, "mtu defaults to the port's");
    assert_eq!(t.header_len(), 28);
    assert_eq!(t.inner_mtu(), 1472);
    assert!(t.extra_sources.is_empty());
    assert!(c.routes.is_empty());
}

#[test]
fn tunnel_mtu_defaults_to_its_port_mtu() {
    let c = ok(&replaced(
        "roles = [\"client\"]",
        "roles = [\"client\"]\nmtu = 9000",
    ));
    assert_eq!(c.ports[0].mtu, 9000);
    assert_eq!(c.tunnels[0].mtu, 9000);
}

#[test]
fn an_unkeyed_gre_tunnel_has_no_key_and_ipip_needs_none() {
    let c = ok(&with(
        r#"
[[tunnel]]
name = "b"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.1"
port = "client0"

[[tunnel]]
name = "c"
mode = "ipip"
local = "192.0.2.1"
remote = "198.51.100.1"
port = "client0"
"#,
    ));
    assert_eq!(c.tunnels[1].key, None);
    assert_eq!(c.tunnels[1].header_len(), 24);
    assert_eq!(c.tunnels[2].mode, TunnelMode::Ipip);
    assert_eq!(c.tunnels[2].header_len(), 20);
}

#[test]
fn every_field_written_out() {
    let c = ok(r#"
[eal]
args = ["-l", "0-2", "--no-huge"]

[workers]
lcores = [2, 1]

[[port]]
name = "p"
device = "0"
roles = ["client", "core", "internet"]
mac = "02:AA:00:00:00:01"
addresses = ["192.0.2.1", "192.0.2.2"]
mtu = 9000
transit = false
rx_queues = 4
tx_queues = 64
  [[port.neighbor]]
  ip = "192.0.2.9"
  mac = "02:00:00:00:00:09"

[[tunnel]]
name = "t"
mode = "gre"
local = "192.0.2.2"
remote = "198.51.100.1"
key = 4294967295
sequence = true
checksum = true
ttl = "inherit"
dscp = 46
df = "copy"
port = "p"
next_hop = "192.0.2.9"
mtu = 1400
prefixes = ["10.1.0.0/16", "10.2.0.0/24"]
extra_sources = ["172.16.0.0/12"]

[[route]]
prefix = "0.0.0.0/0"
port = "p"
next_hop = "192.0.2.9"

[[route]]
prefix = "10.3.0.0/16"
tunnel = "t"

[[route]]
prefix = "192.168.0.0/16"
blackhole = true
"#);
    assert_eq!(c.eal_args, ["-l", "0-2", "--no-huge"]);
    assert_eq!(c.eal_argv("backbone")[..2], ["backbone", "-l"]);
    assert_eq!(c.worker_lcores, Some(vec![2, 1]));
    let p = &c.ports[0];
    assert_eq!(p.roles, [Role::Client, Role::Core, Role::Internet]);
    assert_eq!(p.mac, Some(MacAddr([2, 0xaa, 0, 0, 0, 1])));
    assert!(
        !p.transit,
        "an explicit transit wins over the internet role"
    );
    assert_eq!((p.mtu, p.rx_queues, p.tx_queues), (9000, 4, 64));
    assert_eq!(p.neighbors[0].ip, Ipv4Addr::new(192, 0, 2, 9));
    let t = &c.tunnels[0];
    assert_eq!(t.key, Some(u32::MAX));
    assert!(t.sequence && t.checksum);
    assert_eq!(
        (t.ttl, t.dscp, t.df),
        (Ttl::Inherit, Dscp::Fixed(46), Df::Copy)
    );
    assert_eq!(t.next_hop, Ipv4Addr::new(192, 0, 2, 9));
    assert_eq!((t.mtu, t.header_len(), t.inner_mtu()), (1400, 36, 1364));
    assert_eq!(t.source_prefixes().count(), 3);
    assert_eq!(
        c.routes[0].target,
        RouteTarget::Port {
            port: pipeline_config::PortRef {
                index: 0,
                name: "p".into()
            },
            next_hop: Ipv4Addr::new(192, 0, 2, 9)
        }
    );
    match &c.routes[1].target {
        RouteTarget::Tunnel(t) => assert_eq!((t.index, c.tunnel(t).name.as_str()), (0, "t")),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.routes[2].target, RouteTarget::Blackhole);

    let summary = c.summary();
    for part in [
        "lcores 2, 1",
        "\"p\"",
        "\"t\" gre key 4294967295 sequence checksum",
        "3 (1 to tunnels, 1 to ports, 1 blackhole)",
    ] {
        assert!(summary.contains(part), "{summary}\nlacks {part:?}");
    }
}

// ---------------------------------------------------------------- TOML and schema errors

#[test]
fn toml_syntax_error_names_file_and_line() {
    syntax("[[port]]\nname = \"x\"\nmtu = = 3\n", 3, &[]);
    syntax("[[port]\n", 1, &[]);
}

#[test]
fn type_errors_name_file_and_line() {
    syntax(
        &replaced(
            "addresses = [\"192.0.2.1\"]",
            "addresses = [\"192.0.2.1\"]\nmtu = \"big\"",
        ),
        7,
        &["mtu = \"big\"", "invalid type"],
    );
    syntax(&replaced("key = 100", "key = 1.5"), 19, &["key = 1.5"]);
    syntax(
        &replaced("key = 100", "key = 100\nttl = true"),
        20,
        &["an integer or a string"],
    );
}

#[test]
fn missing_required_fields_are_schema_errors() {
    let err = parse(&replaced("device = \"net_pcap0\"\n", ""), ORIGIN).unwrap_err();
    assert!(err.to_string().contains("missing field `device`"), "{err}");
    let err = parse(&replaced("mode = \"gre\"\n", ""), ORIGIN).unwrap_err();
    assert!(err.to_string().contains("missing field `mode`"), "{err}");
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    syntax(
        &format!("colour = 1\n{BASE}"),
        1,
        &["unknown field `colour`"],
    );
    syntax(
        &format!("[eal]\nargz = []\n{BASE}"),
        2,
        &["unknown field `argz`"],
    );
    syntax(
        &format!("[workers]\ncores = [1]\n{BASE}"),
        2,
        &["unknown field `cores`"],
    );
    syntax(
        &replaced("roles = [\"client\"]", "roles = [\"client\"]\nspeed = 10"),
        6,
        &["unknown field `speed`"],
    );
    syntax(
        &replaced(
            "addresses = [\"192.0.2.1\"]",
            "addresses = [\"192.0.2.1\"]\n[[port.neighbor]]\nip = \"192.0.2.9\"\nmac = \"02:00:00:00:00:09\"\nvlan = 3",
        ),
        10,
        &["unknown field `vlan`"],
    );
    syntax(
        &replaced("key = 100", "key = 100\nflow = 1"),
        20,
        &["unknown field `flow`"],
    );
    syntax(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\nblackhole = true\nmetric = 1\n"),
        26,
        &["unknown field `metric`"],
    );
    // Singular table names only.
    syntax(
        &format!("{BASE}\n[[routes]]\nprefix = \"0.0.0.0/0\"\n"),
        23,
        &["unknown field `routes`"],
    );
}

#[test]
fn load_names_the_path() {
    let err = load(Path::new("/nonexistent/backbone.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().starts_with("/nonexistent/backbone.toml: "),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("pipeline-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[[port]\n").unwrap();
    let err = load(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

// ---------------------------------------------------------------- workers

#[test]
fn worker_lcores_must_be_unique_ids() {
    invalid(
        &format!("[workers]\nlcores = [1, 2, 1]\n{BASE}"),
        "workers.lcores[2]",
        Some("1"),
        "is already listed as workers.lcores[0]",
    );
    invalid(
        &format!("[workers]\nlcores = [-1]\n{BASE}"),
        "workers.lcores[0]",
        Some("-1"),
        "is not an lcore id",
    );
    invalid(
        &format!("[workers]\nlcores = []\n{BASE}"),
        "workers.lcores",
        Some("[]"),
        "names no lcore",
    );
}

/// Workers poll adaptively unless told otherwise, sleeping at most 1 ms when idle; busy
/// polling has no sleep to bound.
#[test]
fn workers_poll_adaptively_by_default() {
    let c = ok(BASE);
    assert_eq!(c.poll.mode, PollMode::Adaptive);
    assert_eq!(c.poll.idle_sleep_max_us, 1000);
    let c = ok(&format!("[workers]\npoll = \"busy\"\n{BASE}"));
    assert_eq!(c.poll.mode, PollMode::Busy);
    let c = ok(&format!(
        "[workers]\npoll = \"adaptive\"\nidle_sleep_max_us = 10000\n{BASE}"
    ));
    assert_eq!(
        (c.poll.mode, c.poll.idle_sleep_max_us),
        (PollMode::Adaptive, 10_000)
    );
    let c = ok(&format!("[workers]\nidle_sleep_max_us = 1\n{BASE}"));
    assert_eq!(
        (c.poll.mode, c.poll.idle_sleep_max_us),
        (PollMode::Adaptive, 1)
    );
    invalid(
        &format!("[workers]\npoll = \"interrupt\"\n{BASE}"),
        "workers.poll",
        Some("\"interrupt\""),
        "is not a polling mode (expected one of \"adaptive\" or \"busy\")",
    );
    for bad in ["0", "10001", "-5"] {
        invalid(
            &format!("[workers]\nidle_sleep_max_us = {bad}\n{BASE}"),
            "workers.idle_sleep_max_us",
            Some(bad),
            "is not a sleep in microseconds (1..=10000)",
        );
    }
    invalid(
        &format!("[workers]\npoll = \"busy\"\nidle_sleep_max_us = 50\n{BASE}"),
        "workers.idle_sleep_max_us",
        None,
        "is for poll = \"adaptive\" only",
    );
}

// ---------------------------------------------------------------- ports

#[test]
fn at_least_one_port() {
    invalid("", "port", None, "at least one [[port]] is required");
}

#[test]
fn port_names_and_devices_are_unique_and_not_empty() {
    invalid(
        &replaced("name = \"inet0\"", "name = \"client0\""),
        "port[1].name",
        Some("\"client0\""),
        "is already the name of port[0]",
    );
    invalid(
        &replaced("name = \"client0\"", "name = \"\""),
        "port[0].name",
        Some("\"\""),
        "is empty",
    );
    invalid(
        &replaced("net_pcap1", "net_pcap0"),
        "port[1] \"inet0\".device",
        Some("\"net_pcap0\""),
        "is already the device of port[0] \"client0\"",
    );
    invalid(
        &replaced("net_pcap0", ""),
        "port[0] \"client0\".device",
        Some("\"\""),
        "is empty",
    );
}

#[test]
fn port_roles() {
    invalid(
        &replaced("roles = [\"client\"]", "roles = []"),
        "port[0] \"client0\".roles",
        Some("[]"),
        "names no role",
    );
    invalid(
        &replaced("roles = [\"client\"]", "roles = [\"client\", \"peer\"]"),
        "port[0] \"client0\".roles[1]",
        Some("\"peer\""),
        "is not a role (expected one of \"client\", \"core\", \"internet\" or \"lan\")",
    );
    invalid(
        &replaced("roles = [\"client\"]", "roles = [\"client\", \"client\"]"),
        "port[0] \"client0\".roles[1]",
        Some("\"client\""),
        "is listed twice",
    );
}

#[test]
fn port_mac() {
    let with_mac = |mac: &str| {
        replaced(
            "roles = [\"client\"]",
            &format!("roles = [\"client\"]\nmac = \"{mac}\""),
        )
    };
    invalid(
        &with_mac("02:00:00:00:00"),
        "port[0] \"client0\".mac",
        Some("\"02:00:00:00:00\""),
        "is not a MAC address",
    );
    invalid(
        &with_mac("01:00:5e:00:00:01"),
        "port[0] \"client0\".mac",
        Some("\"01:00:5e:00:00:01\""),
        "is not a unicast MAC address",
    );
    invalid(
        &with_mac("00:00:00:00:00:00"),
        "port[0] \"client0\".mac",
        Some("\"00:00:00:00:00:00\""),
        "is not a unicast MAC address",
    );
}

#[test]
fn port_addresses() {
    let field = "port[0] \"client0\".addresses[1]";
    let with_address = |a: &str| {
        replaced(
            "addresses = [\"192.0.2.1\"]",
            &format!("addresses = [\"192.0.2.1\", \"{a}\"]"),
        )
    };
    invalid(
        &with_address("192.0.2.300"),
        field,
        Some("\"192.0.2.300\""),
        "is not an IPv4 address",
    );
    // IPv6 is accepted (below, `port_ipv6_addresses_and_neighbours`), but not link-local.
    invalid(
        &with_address("fe80::1"),
        field,
        Some("fe80::1"),
        "is a link-local address (fe80::/10)",
    );
    invalid(
        &with_address("127.0.0.1"),
        field,
        Some("127.0.0.1"),
        "is a loopback address",
    );
    invalid(
        &with_address("224.0.0.5"),
        field,
        Some("224.0.0.5"),
        "is a multicast address",
    );
    invalid(
        &with_address("0.0.0.0"),
        field,
        Some("0.0.0.0"),
        "is the unspecified address",
    );
    invalid(
        &with_address("0.1.2.3"),
        field,
        Some("0.1.2.3"),
        "0.0.0.0/8",
    );
    invalid(
        &with_address("255.255.255.255"),
        field,
        Some("255.255.255.255"),
        "is the broadcast address",
    );
    invalid(
        &with_address("240.0.0.1"),
        field,
        Some("240.0.0.1"),
        "240.0.0.0/4",
    );
    invalid(
        &with_address("192.0.2.1"),
        field,
        Some("192.0.2.1"),
        "is already configured as port[0] \"client0\".addresses[0]",
    );
    // An address on two ports.
    invalid(
        &replaced("\"203.0.113.1\"", "\"192.0.2.1\""),
        "port[1] \"inet0\".addresses[0]",
        Some("192.0.2.1"),
        "is already configured as port[0] \"client0\".addresses[0]",
    );
}

#[test]
fn port_ranges() {
    let set = |line: &str| {
        replaced(
            "roles = [\"client\"]",
            &format!("roles = [\"client\"]\n{line}"),
        )
    };
    invalid(
        &set("mtu = 67"),
        "port[0] \"client0\".mtu",
        Some("67"),
        "is not a port MTU (68..=9000)",
    );
    invalid(
        &set("mtu = 9001"),
        "port[0] \"client0\".mtu",
        Some("9001"),
        "is not a port MTU (68..=9000)",
    );
    invalid(
        &set("rx_queues = 0"),
        "port[0] \"client0\".rx_queues",
        Some("0"),
        "is not a queue count (1..=64)",
    );
    invalid(
        &set("tx_queues = 65"),
        "port[0] \"client0\".tx_queues",
        Some("65"),
        "is not a queue count (1..=64)",
    );
    invalid(
        &set("tx_queues = 99999999999"),
        "port[0] \"client0\".tx_queues",
        Some("99999999999"),
        "is not a queue count",
    );
    // The smallest MTU, on the port without tunnels.
    ok(&replaced(
        "roles = [\"internet\"]",
        "roles = [\"internet\"]\nmtu = 68",
    ));
    ok(&set("mtu = 9000\nrx_queues = 64\ntx_queues = 1"));
}

#[test]
fn port_neighbors() {
    let neighbor = |ip: &str, mac: &str| {
        replaced(
            "addresses = [\"192.0.2.1\"]",
            &format!(
                "addresses = [\"192.0.2.1\"]\n[[port.neighbor]]\nip = \"192.0.2.9\"\nmac = \"02:00:00:00:00:09\"\n[[port.neighbor]]\nip = \"{ip}\"\nmac = \"{mac}\""
            ),
        )
    };
    let c = ok(&neighbor("192.0.2.10", "02:00:00:00:00:0a"));
    assert_eq!(c.ports[0].neighbors[1].mac, MacAddr([2, 0, 0, 0, 0, 10]));
    invalid(
        &neighbor("192.0.2.10", "02:00:00:00:00:zz"),
        "port[0] \"client0\".neighbor[1].mac",
        Some("\"02:00:00:00:00:zz\""),
        "is not a MAC address",
    );
    invalid(
        &neighbor("192.0.2.10", "ff:ff:ff:ff:ff:ff"),
        "port[0] \"client0\".neighbor[1].mac",
        Some("\"ff:ff:ff:ff:ff:ff\""),
        "is not a unicast MAC address",
    );
    invalid(
        &neighbor("192.0.2", "02:00:00:00:00:0a"),
        "port[0] \"client0\".neighbor[1].ip",
        Some("\"192.0.2\""),
        "is not an IPv4 address",
    );
    invalid(
        &neighbor("192.0.2.9", "02:00:00:00:00:0a"),
        "port[0] \"client0\".neighbor[1].ip",
        Some("192.0.2.9"),
        "is already port[0] \"client0\".neighbor[0]",
    );
    // Ours, even when the address is on a later port.
    invalid(
        &neighbor("203.0.113.1", "02:00:00:00:00:0a"),
        "port[0] \"client0\".neighbor[1].ip",
        Some("203.0.113.1"),
        "is our own address (port[1] \"inet0\".addresses[0])",
    );
}

// ---------------------------------------------------------------- tunnels

/// A second tunnel "b" on client0 with `fields` added to a GRE base.
fn tunnel_b(fields: &str) -> String {
    with(&format!(
        "[[tunnel]]\nname = \"b\"\nlocal = \"192.0.2.1\"\nport = \"client0\"\n{fields}\n"
    ))
}

const B: &str = "tunnel[1] \"b\"";

#[test]
fn the_key_must_fit_32_bits() {
    let text = tunnel_b("mode = \"gre\"\nremote = \"198.51.100.2\"\nkey = 70000000000");
    invalid(
        &text,
        &format!("{B}.key"),
        Some("70000000000"),
        "is not a 32-bit key",
    );
    // The message, in full.
    let err = parse(&text.replace("name = \"b\"", "name = \"client-b\""), ORIGIN).unwrap_err();
    assert_eq!(
        err.to_string(),
        "backbone.toml: tunnel[1] \"client-b\".key: 70000000000 is not a 32-bit key"
    );
    invalid(
        &tunnel_b("mode = \"gre\"\nremote = \"198.51.100.2\"\nkey = -1"),
        &format!("{B}.key"),
        Some("-1"),
        "is not a 32-bit key",
    );
    ok(&tunnel_b(
        "mode = \"gre\"\nremote = \"198.51.100.2\"\nkey = 0",
    ));
}

#[test]
fn tunnel_names_are_unique_and_not_empty() {
    invalid(
        &tunnel_b("mode = \"gre\"\nremote = \"198.51.100.2\"")
            .replace("name = \"b\"", "name = \"a\""),
        "tunnel[1].name",
        Some("\"a\""),
        "is already the name of tunnel[0]",
    );
    invalid(
        &replaced("name = \"a\"", "name = \"\""),
        "tunnel[0].name",
        Some("\"\""),
        "is empty",
    );
}

#[test]
fn tunnel_mode() {
    invalid(
        &replaced("mode = \"gre\"", "mode = \"vxlan\""),
        "tunnel[0] \"a\".mode",
        Some("\"vxlan\""),
        "is not a tunnel mode (expected one of \"gre\" or \"ipip\")",
    );
}

#[test]
fn tunnel_local_is_ours() {
    invalid(
        &replaced("local = \"192.0.2.1\"", "local = \"192.0.2.7\""),
        "tunnel[0] \"a\".local",
        Some("192.0.2.7"),
        "is not one of our port addresses",
    );
    // An IPv6 local must be one of the tunnel's port's IPv6 addresses.
    invalid(
        &replaced("local = \"192.0.2.1\"", "local = \"2001:db8::1\""),
        "tunnel[0] \"a\".local",
        Some("2001:db8::1"),
        "is not one of port \"client0\"'s IPv6 addresses",
    );
    // Any port's address will do.
    ok(&replaced(
        "local = \"192.0.2.1\"",
        "local = \"203.0.113.1\"",
    ));
}

#[test]
fn tunnel_remote_is_unicast_and_not_ours() {
    invalid(
        &replaced("remote = \"198.51.100.1\"", "remote = \"203.0.113.1\""),
        "tunnel[0] \"a\".remote",
        Some("203.0.113.1"),
        "is our own address (port[1] \"inet0\".addresses[0])",
    );
    invalid(
        &replaced("remote = \"198.51.100.1\"", "remote = \"239.1.1.1\""),
        "tunnel[0] \"a\".remote",
        Some("239.1.1.1"),
        "is a multicast address",
    );
    invalid(
        &replaced("remote = \"198.51.100.1\"", "remote = \"client\""),
        "tunnel[0] \"a\".remote",
        Some("\"client\""),
        "is not an IPv4 address",
    );
}

#[test]
fn gre_only_fields_on_ipip() {
    for (line, field, value) in [
        ("key = 5", "key", "5"),
        ("sequence = true", "sequence", "true"),
        ("checksum = false", "checksum", "false"),
    ] {
        invalid(
            &tunnel_b(&format!(
                "mode = \"ipip\"\nremote = \"198.51.100.2\"\n{line}"
            )),
            &format!("{B}.{field}"),
            Some(value),
            "is set on an ipip tunnel; key, sequence and checksum are for GRE only",
        );
    }
}

#[test]
fn ttl_dscp_df() {
    let set = |line: &str| replaced("key = 100", &format!("key = 100\n{line}"));
    invalid(
        &set("ttl = 0"),
        "tunnel[0] \"a\".ttl",
        Some("0"),
        "is not a TTL (1..=255 or \"inherit\")",
    );
    invalid(
        &set("ttl = 256"),
        "tunnel[0] \"a\".ttl",
        Some("256"),
        "is not a TTL",
    );
    invalid(
        &set("ttl = \"copy\""),
        "tunnel[0] \"a\".ttl",
        Some("\"copy\""),
        "is not a TTL",
    );
    assert_eq!(ok(&set("ttl = 1")).tunnels[0].ttl, Ttl::Fixed(1));
    assert_eq!(ok(&set("ttl = 255")).tunnels[0].ttl, Ttl::Fixed(255));
    invalid(
        &set("dscp = 64"),
        "tunnel[0] \"a\".dscp",
        Some("64"),
        "is not a DSCP (0..=63 or \"copy\")",
    );
    invalid(
        &set("dscp = -1"),
        "tunnel[0] \"a\".dscp",
        Some("-1"),
        "is not a DSCP",
    );
    invalid(
        &set("dscp = \"ef\""),
        "tunnel[0] \"a\".dscp",
        Some("\"ef\""),
        "is not a DSCP",
    );
    assert_eq!(ok(&set("dscp = 0")).tunnels[0].dscp, Dscp::Fixed(0));
    assert_eq!(ok(&set("dscp = 63")).tunnels[0].dscp, Dscp::Fixed(63));
    invalid(
        &set("df = \"clear\""),
        "tunnel[0] \"a\".df",
        Some("\"clear\""),
        "is not a DF policy (expected one of \"set\" or \"copy\")",
    );
}

#[test]
fn tunnel_port_and_next_hop() {
    invalid(
        &replaced("port = \"client0\"", "port = \"client9\""),
        "tunnel[0] \"a\".port",
        Some("\"client9\""),
        "is not a configured port",
    );
    let set = |line: &str| replaced("key = 100", &format!("key = 100\n{line}"));
    invalid(
        &set("next_hop = \"192.0.2.1\""),
        "tunnel[0] \"a\".next_hop",
        Some("192.0.2.1"),
        "is our own address",
    );
    invalid(
        &set("next_hop = \"255.255.255.255\""),
        "tunnel[0] \"a\".next_hop",
        Some("255.255.255.255"),
        "is the broadcast address",
    );
    assert_eq!(
        ok(&set("next_hop = \"192.0.2.254\"")).tunnels[0].next_hop,
        Ipv4Addr::new(192, 0, 2, 254)
    );
}

#[test]
fn tunnel_mtu() {
    let set = |line: &str| replaced("key = 100", &format!("key = 100\n{line}"));
    invalid(
        &set("mtu = 1501"),
        "tunnel[0] \"a\".mtu",
        Some("1501"),
        "is above the mtu of port \"client0\" (1500)",
    );
    // GRE with key: 20 + 8 bytes of headers, so at least 96.
    invalid(
        &set("mtu = 95"),
        "tunnel[0] \"a\".mtu",
        Some("95"),
        "leaves less than 68 bytes for the inner packet after 28 bytes of headers (at least 96)",
    );
    assert_eq!(ok(&set("mtu = 96")).tunnels[0].inner_mtu(), 68);
    // Sequence and checksum add 8 more.
    invalid(
        &set("sequence = true\nchecksum = true\nmtu = 103"),
        "tunnel[0] \"a\".mtu",
        Some("103"),
        "(at least 104)",
    );
    // The default, taken from a port too small for the headers.
    invalid(
        &replaced("roles = [\"client\"]", "roles = [\"client\"]\nmtu = 90"),
        "tunnel[0] \"a\".mtu",
        Some("90"),
        "(the default, port \"client0\"'s mtu) leaves less than 68 bytes",
    );
}

#[test]
fn duplicate_tunnel_endpoints() {
    invalid(
        &tunnel_b("mode = \"gre\"\nremote = \"198.51.100.1\"\nkey = 100"),
        B,
        Some("(local 192.0.2.1, remote 198.51.100.1, mode gre, key 100)"),
        "is already the endpoint of tunnel[0] \"a\"",
    );
    // Another key, no key, or another mode tells them apart.
    ok(&tunnel_b(
        "mode = \"gre\"\nremote = \"198.51.100.1\"\nkey = 101",
    ));
    ok(&tunnel_b("mode = \"gre\"\nremote = \"198.51.100.1\""));
    ok(&tunnel_b("mode = \"ipip\"\nremote = \"198.51.100.1\""));
    invalid(
        &format!("{}\n[[tunnel]]\nname = \"c\"\nmode = \"ipip\"\nlocal = \"192.0.2.1\"\nremote = \"198.51.100.1\"\nport = \"client0\"\n", tunnel_b("mode = \"ipip\"\nremote = \"198.51.100.1\"")),
        "tunnel[2] \"c\"",
        Some("(local 192.0.2.1, remote 198.51.100.1, mode ipip, no key)"),
        "is already the endpoint of tunnel[1] \"b\"",
    );
}

#[test]
fn tunnel_prefixes_parse_without_host_bits() {
    let set = |list: &str| {
        replaced(
            "prefixes = [\"10.1.0.0/16\"]",
            &format!("prefixes = [{list}]"),
        )
    };
    invalid(
        &set("\"10.1.0.1/16\""),
        "tunnel[0] \"a\".prefixes[0]",
        Some("\"10.1.0.1/16\""),
        "has host bits set (the prefix is 10.1.0.0/16)",
    );
    invalid(
        &set("\"10.1.0.0\""),
        "tunnel[0] \"a\".prefixes[0]",
        Some("\"10.1.0.0\""),
        "is not an IPv4 or IPv6 prefix",
    );
    invalid(
        &set("\"10.1.0.0/33\""),
        "tunnel[0] \"a\".prefixes[0]",
        Some("\"10.1.0.0/33\""),
        "is not an IPv4 or IPv6 prefix",
    );
    invalid(
        &set("\"2001:db8::1/32\""),
        "tunnel[0] \"a\".prefixes[0]",
        Some("\"2001:db8::1/32\""),
        "has host bits set (the prefix is 2001:db8::/32)",
    );
    invalid(
        &set("\"10.1.0.0/16\", \"10.1.0.0/16\""),
        "tunnel[0] \"a\".prefixes[1]",
        Some("10.1.0.0/16"),
        "is already listed as tunnel[0] \"a\".prefixes[0]",
    );
    let extra = |list: &str| {
        replaced(
            "prefixes = [\"10.1.0.0/16\"]",
            &format!("prefixes = [\"10.1.0.0/16\"]\nextra_sources = [{list}]"),
        )
    };
    invalid(
        &extra("\"10.1.0.0/16\""),
        "tunnel[0] \"a\".extra_sources[0]",
        Some("10.1.0.0/16"),
        "is already listed as tunnel[0] \"a\".prefixes[0]",
    );
    invalid(
        &extra("\"172.16.0.1/12\""),
        "tunnel[0] \"a\".extra_sources[0]",
        Some("\"172.16.0.1/12\""),
        "has host bits set",
    );
    // Nesting within one tunnel is harmless.
    ok(&extra("\"10.0.0.0/8\", \"10.1.2.0/24\""));
}

#[test]
fn a_prefix_is_claimed_once() {
    invalid(
        &tunnel_b("mode = \"gre\"\nremote = \"198.51.100.2\"\nprefixes = [\"10.2.0.0/16\", \"10.1.0.0/16\"]"),
        &format!("{B}.prefixes[1]"),
        Some("10.1.0.0/16"),
        "is already claimed by tunnel[0] \"a\".prefixes[0]",
    );
    invalid(
        &with("[[route]]\nprefix = \"10.1.0.0/16\"\nblackhole = true\n"),
        "route[0].prefix",
        Some("10.1.0.0/16"),
        "is already claimed by tunnel[0] \"a\".prefixes[0]",
    );
    invalid(
        &with("[[route]]\nprefix = \"10.9.0.0/16\"\nblackhole = true\n[[route]]\nprefix = \"10.9.0.0/16\"\ntunnel = \"a\"\n"),
        "route[1].prefix",
        Some("10.9.0.0/16"),
        "is already claimed by route[0].prefix",
    );
    // Overlap is what longest match is for.
    ok(&with("[[route]]\nprefix = \"10.0.0.0/8\"\nblackhole = true\n[[route]]\nprefix = \"10.1.2.0/24\"\nblackhole = true\n"));
}

#[test]
fn source_prefixes_of_two_tunnels_never_overlap() {
    let b = |fields: &str| {
        tunnel_b(&format!(
            "mode = \"gre\"\nremote = \"198.51.100.2\"\n{fields}"
        ))
    };
    // B's client prefix inside A's.
    invalid(&b("prefixes = [\"10.1.5.0/24\"]"), &format!("{B}.prefixes[0]"), Some("10.1.5.0/24"), "overlaps 10.1.0.0/16 of tunnel[0] \"a\".prefixes[0]; an inner source must belong to one tunnel only");
    // B's extra source containing A's prefix.
    invalid(
        &b("extra_sources = [\"10.0.0.0/8\"]"),
        &format!("{B}.extra_sources[0]"),
        Some("10.0.0.0/8"),
        "overlaps 10.1.0.0/16 of tunnel[0] \"a\".prefixes[0]",
    );
    // The same extra source on two tunnels.
    invalid(
        &(replaced("prefixes = [\"10.1.0.0/16\"]", "prefixes = [\"10.1.0.0/16\"]\nextra_sources = [\"172.16.0.0/24\"]")
            + "\n[[tunnel]]\nname = \"b\"\nmode = \"gre\"\nlocal = \"192.0.2.1\"\nremote = \"198.51.100.2\"\nport = \"client0\"\nextra_sources = [\"172.16.0.0/24\"]\n"),
        &format!("{B}.extra_sources[0]"),
        Some("172.16.0.0/24"),
        "overlaps 172.16.0.0/24 of tunnel[0] \"a\".extra_sources[0]",
    );
    // Disjoint neighbours are fine, and so is the 0/0 route.
    ok(
        &(b("prefixes = [\"10.0.0.0/16\", \"10.2.0.0/15\"]\nextra_sources = [\"10.4.0.0/17\"]")
            + "\n[[route]]\nprefix = \"0.0.0.0/0\"\nblackhole = true\n"),
    );
}

// ---------------------------------------------------------------- routes

#[test]
fn route_targets_exist() {
    let routes = "[[route]]\nprefix = \"10.7.0.0/16\"\nblackhole = true\n".to_owned()
        + "[[route]]\nprefix = \"10.8.0.0/16\"\nblackhole = true\n"
        + "[[route]]\nprefix = \"10.9.0.0/16\"\ntunnel = \"a\"\n"
        + "[[route]]\nprefix = \"10.10.0.0/16\"\ntunnel = \"nope\"\n";
    let text = with(&routes);
    invalid(
        &text,
        "route[3].tunnel",
        Some("\"nope\""),
        "is not a configured tunnel",
    );
    assert_eq!(
        parse(&text, ORIGIN).unwrap_err().to_string(),
        "backbone.toml: route[3].tunnel: \"nope\" is not a configured tunnel"
    );
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"wan\"\nnext_hop = \"203.0.113.254\"\n"),
        "route[0].port",
        Some("\"wan\""),
        "is not a configured port",
    );
}

#[test]
fn route_has_exactly_one_target() {
    invalid(&with("[[route]]\nprefix = \"0.0.0.0/0\"\n"), "route[0]", None, "has no target; give exactly one of tunnel = NAME, port = NAME (with next_hop = IP, or without for a connected subnet), blackhole = true, unreachable = true or prohibit = true");
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\ntunnel = \"a\"\nblackhole = true\n"),
        "route[0]",
        None,
        "has 2 targets (tunnel, blackhole)",
    );
    invalid(&with("[[route]]\nprefix = \"0.0.0.0/0\"\ntunnel = \"a\"\nport = \"inet0\"\nnext_hop = \"203.0.113.254\"\n"), "route[0]", None, "has 2 targets (tunnel, port)");
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\nblackhole = false\n"),
        "route[0].blackhole",
        Some("false"),
        "is not a target",
    );
    for kind in ["unreachable", "prohibit"] {
        invalid(
            &with(&format!(
                "[[route]]\nprefix = \"0.0.0.0/0\"\n{kind} = false\n"
            )),
            &format!("route[0].{kind}"),
            Some("false"),
            "is not a target",
        );
        invalid(
            &with(&format!(
                "[[route]]\nprefix = \"0.0.0.0/0\"\n{kind} = true\nblackhole = true\n"
            )),
            "route[0]",
            None,
            &format!("has 2 targets (blackhole, {kind})"),
        );
    }
}

#[test]
fn unreachable_and_prohibit_routes_are_targets_of_their_own() {
    let cfg = parse(
        &with(
            "[[route]]\nprefix = \"192.168.70.0/24\"\nunreachable = true\n\
             [[route]]\nprefix = \"192.168.71.0/24\"\nprohibit = true\n",
        ),
        ORIGIN,
    )
    .unwrap();
    let targets: Vec<_> = cfg.routes.iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        targets,
        [RouteTarget::Unreachable, RouteTarget::Prohibit],
        "{cfg:?}"
    );
    assert!(
        cfg.summary().contains("2 unreachable or prohibit"),
        "{}",
        cfg.summary()
    );
}

#[test]
fn icmp_limits_default_to_linuxs_and_are_range_checked() {
    let cfg = parse(&with(""), ORIGIN).unwrap();
    assert_eq!(
        (cfg.icmp.rate, cfg.icmp.burst),
        (1000, 50),
        "icmp_msgs_per_sec and icmp_msgs_burst"
    );
    let cfg = parse(&with("[icmp]\nrate = 0\nburst = 7\n"), ORIGIN).unwrap();
    assert_eq!((cfg.icmp.rate, cfg.icmp.burst), (0, 7));
    for (field, value) in [("rate", "-1"), ("burst", "10000001"), ("rate", "\"fast\"")] {
        let text = with(&format!("[icmp]\n{field} = {value}\n"));
        let err = parse(&text, ORIGIN).unwrap_err().to_string();
        assert!(
            err.contains(&format!("icmp.{field}")) || err.contains(field),
            "{err}"
        );
    }
    let err = parse(&with("[icmp]\nrates = 5\n"), ORIGIN)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rates"), "unknown field named: {err}");
}

/// A route with `port` and no `next_hop` is a connected subnet (Linux's `ip route add
/// PREFIX dev PORT`): ARP asks from the port's address inside the prefix, else its first.
#[test]
fn a_port_without_next_hop_is_a_connected_subnet() {
    let port = |index, name: &str| pipeline_config::PortRef {
        index,
        name: name.into(),
    };
    let text = replaced(
        "addresses = [\"203.0.113.1\"]",
        "addresses = [\"203.0.113.1\", \"10.9.0.1\"]",
    );
    let cfg = ok(&format!(
        "{text}\n[[route]]\nprefix = \"10.9.0.0/24\"\nport = \"inet0\"\n\
         [[route]]\nprefix = \"172.16.0.0/24\"\nport = \"inet0\"\n"
    ));
    assert_eq!(
        cfg.routes[0].target,
        RouteTarget::Connected {
            port: port(1, "inet0"),
            source: Ipv4Addr::new(10, 9, 0, 1)
        },
        "the port's address inside the prefix"
    );
    assert_eq!(
        cfg.routes[1].target,
        RouteTarget::Connected {
            port: port(1, "inet0"),
            source: Ipv4Addr::new(203, 0, 113, 1)
        },
        "none inside: the port's first address"
    );
    // A port without addresses has nothing to ask ARP from.
    let bare = replaced("addresses = [\"203.0.113.1\"]\n", "");
    invalid(
        &format!("{bare}\n[[route]]\nprefix = \"10.9.0.0/24\"\nport = \"inet0\"\n"),
        "route[0].port",
        Some("\"inet0\""),
        "has no addresses: a connected route (port without next_hop) asks ARP from the \
         port's address",
    );
    // IPv6 has no connected subnets.
    invalid(
        &with("[[route]]\nprefix = \"2001:db8::/64\"\nport = \"inet0\"\n"),
        "route[0].port",
        Some("\"inet0\""),
        "connected IPv6 subnets (a port without next_hop) do not exist yet",
    );
}

#[test]
fn route_next_hop_comes_with_port_only() {
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\ntunnel = \"a\"\nnext_hop = \"203.0.113.254\"\n"),
        "route[0].next_hop",
        Some("\"203.0.113.254\""),
        "is only for routes with port",
    );
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"inet0\"\nnext_hop = \"203.0.113.1\"\n"),
        "route[0].next_hop",
        Some("203.0.113.1"),
        "is our own address",
    );
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.0/0\"\nport = \"inet0\"\nnext_hop = \"2001:db8::1\"\n"),
        "route[0].next_hop",
        Some("\"2001:db8::1\""),
        "IPv6",
    );
}

#[test]
fn route_prefix_parses_without_host_bits() {
    invalid(
        &with("[[route]]\nprefix = \"0.0.0.1/0\"\nblackhole = true\n"),
        "route[0].prefix",
        Some("\"0.0.0.1/0\""),
        "has host bits set (the prefix is 0.0.0.0/0)",
    );
    invalid(
        &with("[[route]]\nprefix = \"default\"\nblackhole = true\n"),
        "route[0].prefix",
        Some("\"default\""),
        "is not an IPv4 prefix",
    );
}

#[test]
fn a_tunnel_remote_is_not_routed_into_a_tunnel() {
    // Into another tunnel by a route.
    invalid(
        &with("[[route]]\nprefix = \"198.51.100.0/24\"\ntunnel = \"a\"\n"),
        "tunnel[0] \"a\".remote",
        Some("198.51.100.1"),
        "is routed into tunnel \"a\" by 198.51.100.0/24 (route[0].prefix); a tunnel's remote must not be reached through a tunnel",
    );
    // Into a tunnel by that tunnel's client prefixes.
    invalid(
        &tunnel_b("mode = \"ipip\"\nremote = \"10.1.2.3\""),
        &format!("{B}.remote"),
        Some("10.1.2.3"),
        "is routed into tunnel \"a\" by 10.1.0.0/16 (tunnel[0] \"a\".prefixes[0])",
    );
    // Longest match decides: a more specific native route makes it fine.
    ok(&with(
        "[[route]]\nprefix = \"198.51.100.0/24\"\ntunnel = \"a\"\n[[route]]\nprefix = \"198.51.100.1/32\"\nport = \"inet0\"\nnext_hop = \"203.0.113.254\"\n",
    ));
}

#[test]
fn tunnel_link_is_ours_inside_the_tunnel() {
    let cfg = ok(&replaced(
        "prefixes = [\"10.1.0.0/16\"]",
        "prefixes = [\"10.1.0.0/16\"]\nlink = \"169.254.10.1/31\"",
    ));
    let link = cfg.tunnels[0].link.expect("a link");
    assert_eq!(link.addr(), Ipv4Addr::new(169, 254, 10, 1));
    assert_eq!(link.prefix_len(), 31);
    assert_eq!(cfg.tunnels[0].host_interface_name(), "bb-a");
    // The client router's side is an accepted source of the tunnel's.
    assert!(cfg.tunnels[0]
        .source_prefixes()
        .any(|p| p == "169.254.10.0/31".parse().unwrap()));

    let link = |value: &str| {
        replaced(
            "prefixes = [\"10.1.0.0/16\"]",
            &format!("prefixes = [\"10.1.0.0/16\"]\nlink = {value:?}"),
        )
    };
    for (value, problem) in [
        (
            "169.254.10.1",
            "is not an IPv4 address with a prefix length",
        ),
        ("169.254.10.1/32", "needs a prefix length of 8 to 31"),
        ("169.254.10.0/30", "network or broadcast"),
        ("169.254.10.3/30", "network or broadcast"),
        ("192.0.2.1/31", "is already configured as port[0]"),
        ("224.0.0.1/31", "multicast"),
    ] {
        invalid(
            &link(value),
            "tunnel[0] \"a\".link",
            Some(&format!("{value:?}")),
            problem,
        );
    }
    // Two tunnels' links overlap; a link inside another tunnel's source prefixes.
    let second = |link: &str, prefixes: &str| {
        format!(
            "{}\n[[tunnel]]\nname = \"b\"\nmode = \"gre\"\nlocal = \"192.0.2.1\"\n\
             remote = \"198.51.100.2\"\nport = \"client0\"\nprefixes = [{prefixes:?}]\nlink = {link:?}\n",
            replaced(
                "prefixes = [\"10.1.0.0/16\"]",
                "prefixes = [\"10.1.0.0/16\"]\nlink = \"169.254.10.1/31\"",
            )
        )
    };
    invalid(
        &second("169.254.10.0/30", "10.2.0.0/16"),
        "tunnel[1] \"b\".link",
        Some("\"169.254.10.0/30\""),
        "network or broadcast",
    );
    invalid(
        &second("169.254.10.2/30", "10.2.0.0/16"),
        "tunnel[1] \"b\".link",
        Some("\"169.254.10.2/30\""),
        "overlaps tunnel[0] \"a\".link",
    );
    invalid(
        &second("10.1.255.1/31", "10.2.0.0/16"),
        "tunnel[1] \"b\".link",
        Some("10.1.255.0/31"),
        "overlaps 10.1.0.0/16 of tunnel[0] \"a\".prefixes[0]",
    );
    ok(&second("169.254.10.3/31", "10.2.0.0/16"));
}

#[test]
fn host_interfaces_fit_linux_names_and_are_one_of_a_kind() {
    let cfg = ok(&replaced(
        "addresses = [\"203.0.113.1\"]",
        "addresses = [\"203.0.113.1\"]\nhost_interface = true",
    ));
    assert!(cfg.ports[1].host_interface && !cfg.ports[0].host_interface);
    assert_eq!(cfg.ports[1].host_interface_name(), "bb-inet0");
    // 13 characters: bb- makes 16, one too many for Linux.
    let long = replaced("name = \"a\"", "name = \"abcdefghijklm\"").replacen(
        "prefixes = [\"10.1.0.0/16\"]",
        "prefixes = [\"10.1.0.0/16\"]\nlink = \"169.254.10.1/31\"",
        1,
    );
    invalid(
        &long,
        "tunnel[0] \"abcdefghijklm\".link",
        Some("\"abcdefghijklm\""),
        "longer than Linux's 15 characters",
    );
    ok(&long.replace("abcdefghijklm", "abcdefghijkl"));
    // A port and a tunnel of one name, both with a host interface.
    let clash = format!(
        "{}\n[[tunnel]]\nname = \"inet0\"\nmode = \"ipip\"\nlocal = \"192.0.2.1\"\n\
         remote = \"198.51.100.9\"\nport = \"client0\"\nlink = \"169.254.20.1/31\"\n",
        replaced(
            "addresses = [\"203.0.113.1\"]",
            "addresses = [\"203.0.113.1\"]\nhost_interface = true",
        )
    );
    invalid(
        &clash,
        "tunnel[1] \"inet0\".link",
        Some("\"inet0\""),
        "names the host interface \"bb-inet0\" that port[1] \"inet0\".host_interface names too",
    );
}

// ---------------------------------------------------------------------------------------
// [bgp] and a tunnel's BGP session

#[test]
fn bgp_defaults_and_the_session_peer_is_the_links_other_side() {
    let text = replaced(
        "prefixes = [\"10.1.0.0/16\"]",
        "prefixes = [\"10.1.0.0/16\"]\nlink = \"169.254.1.1/31\"\nasn = 65001",
    ) + "\n[bgp]\nasn = 65000\n";
    let c = ok(&text);
    let bgp = c.bgp.expect("[bgp]");
    assert_eq!(bgp.asn, 65000);
    // The first port's first address.
    assert_eq!(bgp.router_id, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        (bgp.max_prefix_len, bgp.bfd_interval_ms, bgp.bfd_multiplier),
        (24, 100, 3)
    );
    let s = c.tunnels[0].bgp.expect("a session");
    assert_eq!(s.asn, 65001);
    // RFC 3021: the two addresses of a /31 are the two ends.
    assert_eq!(s.peer, Ipv4Addr::new(169, 254, 1, 0));
    assert!(s.bfd, "BFD by default");
    // A /30: the two usable addresses, network + 1 and + 2.
    for (ours, peer) in [
        ("169.254.1.1/30", [169, 254, 1, 2]),
        ("169.254.1.2/30", [169, 254, 1, 1]),
    ] {
        let t = text.replace("169.254.1.1/31", ours);
        assert_eq!(
            ok(&t).tunnels[0].bgp.expect("session").peer,
            Ipv4Addr::from(peer)
        );
    }
    let t = text.replace("asn = 65001", "asn = 65001\nbfd = false");
    assert!(!ok(&t).tunnels[0].bgp.expect("session").bfd);
    // No asn: no session, whatever [bgp] says.
    assert!(ok(&(BASE.to_owned() + "\n[bgp]\nasn = 65000\n")).tunnels[0]
        .bgp
        .is_none());
}

#[test]
fn bgp_sessions_are_refused_where_they_cannot_run() {
    let t = "tunnel[0] \"a\"";
    let with_link = |extra: &str| {
        replaced(
            "prefixes = [\"10.1.0.0/16\"]",
            &format!("prefixes = [\"10.1.0.0/16\"]\nlink = \"169.254.1.1/31\"\n{extra}"),
        )
    };
    invalid(
        &with_link("asn = 65001"),
        &format!("{t}.asn"),
        Some("65001"),
        "needs a [bgp] section",
    );
    invalid(
        &(replaced(
            "prefixes = [\"10.1.0.0/16\"]",
            "prefixes = [\"10.1.0.0/16\"]\nasn = 65001",
        ) + "\n[bgp]\nasn = 65000\n"),
        &format!("{t}.asn"),
        Some("65001"),
        "needs the tunnel's link",
    );
    invalid(
        &(with_link("asn = 65000") + "\n[bgp]\nasn = 65000\n"),
        &format!("{t}.asn"),
        Some("65000"),
        "is our own AS number",
    );
    invalid(
        &(with_link("bfd = true") + "\n[bgp]\nasn = 65000\n"),
        &format!("{t}.bfd"),
        Some("true"),
        "is for a BGP session",
    );
    invalid(
        &(with_link("asn = 65001").replace("169.254.1.1/31", "169.254.1.1/29")
            + "\n[bgp]\nasn = 65000\n"),
        &format!("{t}.link"),
        Some("169.254.1.1/29"),
        "must be a /31 or a /30",
    );
    for bad in ["0", "23456", "4294967295"] {
        invalid(
            &(with_link(&format!("asn = {bad}")) + "\n[bgp]\nasn = 65000\n"),
            &format!("{t}.asn"),
            Some(bad),
            "",
        );
        invalid(
            &with(&format!("[bgp]\nasn = {bad}\n")),
            "bgp.asn",
            Some(bad),
            "",
        );
    }
    for (field, bad) in [
        ("max_prefix_len", "33"),
        ("bfd_interval_ms", "5"),
        ("bfd_multiplier", "1"),
    ] {
        invalid(
            &with(&format!("[bgp]\nasn = 65000\n{field} = {bad}\n")),
            &format!("bgp.{field}"),
            Some(bad),
            "",
        );
    }
    invalid(
        &with("[bgp]\nasn = 65000\nrouter_id = \"224.0.0.1\"\n"),
        "bgp.router_id",
        Some("224.0.0.1"),
        "",
    );
}

/// IPv6 inside IPv4 tunnels: a tunnel's prefixes and extra sources mix both families, its
/// `link6` is the source of its ICMPv6 errors, and `[[route]]` takes IPv6 prefixes into
/// tunnels or drops.
#[test]
fn ipv6_prefixes_links_and_routes() {
    let dual = replaced(
        "prefixes = [\"10.1.0.0/16\"]",
        "prefixes = [\"2001:db8:a::/48\", \"10.1.0.0/16\"]\n\
         extra_sources = [\"2001:db8:ae::/48\"]\nlink6 = \"fd00:a::1/127\"",
    );
    let cfg = ok(&format!(
        "{dual}\n[[route]]\nprefix = \"2001:db8:ff::/48\"\ntunnel = \"a\"\n\
         [[route]]\nprefix = \"10.9.0.0/16\"\nblackhole = true\n\
         [[route]]\nprefix = \"2001:db8:dead::/48\"\nprohibit = true\n"
    ));
    let t = &cfg.tunnels[0];
    assert_eq!(t.prefixes, ["10.1.0.0/16".parse().unwrap()]);
    assert_eq!(t.prefixes6, ["2001:db8:a::/48".parse().unwrap()]);
    assert_eq!(t.extra_sources6, ["2001:db8:ae::/48".parse().unwrap()]);
    assert_eq!(t.link6, Some("fd00:a::1/127".parse().unwrap()));
    let sources: Vec<String> = t.source_prefixes6().map(|n| n.to_string()).collect();
    assert_eq!(
        sources,
        ["2001:db8:a::/48", "2001:db8:ae::/48", "fd00:a::/127"]
    );
    assert_eq!(cfg.routes.len(), 1);
    assert_eq!(cfg.routes6.len(), 2);
    assert_eq!(cfg.routes6[0].prefix, "2001:db8:ff::/48".parse().unwrap());
    assert!(matches!(&cfg.routes6[0].target, RouteTarget::Tunnel(r) if r.name == "a"));
    assert_eq!(cfg.routes6[1].target, RouteTarget::Prohibit);

    // IPv6 sources without an IPv6 address of ours to answer them from.
    invalid(
        &replaced(
            "prefixes = [\"10.1.0.0/16\"]",
            "prefixes = [\"10.1.0.0/16\", \"2001:db8:a::/48\"]",
        ),
        "tunnel[0] \"a\".link6",
        None,
        "is missing",
    );
    for (bad, problem) in [
        ("fd00:a::1", "is not an IPv6 address with a prefix length"),
        ("10.0.0.1/31", "is not an IPv6 address with a prefix length"),
        ("fd00:a::1/128", "needs a prefix length of 16 to 127"),
        ("fd00:a::/64", "Subnet-Router anycast"),
        ("ff02::1/64", "multicast"),
        ("fe80::1/64", "link-local"),
        ("::1/127", "loopback"),
    ] {
        invalid(
            &dual.replace("fd00:a::1/127", bad),
            "tunnel[0] \"a\".link6",
            Some(&format!("{bad:?}")),
            problem,
        );
    }
    // IPv6 needs 1,280 bytes inside (20 of IPv4 and 8 of GRE with a key: 1,308 outside).
    invalid(
        &dual.replace("key = 100", "key = 100\nmtu = 1307"),
        "tunnel[0] \"a\".mtu",
        Some("1307"),
        "leaves 1279 bytes for the inner packet; a tunnel that carries IPv6 needs at least \
         1280 (RFC 8200 section 5): at least 1308 here",
    );
    ok(&dual.replace("key = 100", "key = 100\nmtu = 1308"));
    // The field named is the one in the file, whatever the family of the others.
    invalid(
        &dual.replace(
            "\"2001:db8:a::/48\", ",
            "\"2001:db8:a::/48\", \"2001:db8:a::/48\", ",
        ),
        "tunnel[0] \"a\".prefixes[1]",
        Some("2001:db8:a::/48"),
        "is already listed as tunnel[0] \"a\".prefixes[0]",
    );
    // Two tunnels' IPv6 sources never overlap; a prefix is routed once.
    let second = |prefixes: &str| {
        format!(
            "{dual}\n[[tunnel]]\nname = \"b\"\nmode = \"ipip\"\nlocal = \"192.0.2.1\"\n\
             remote = \"198.51.100.2\"\nport = \"client0\"\nprefixes = [{prefixes}]\n\
             link6 = \"fd00:b::1/127\"\n"
        )
    };
    ok(&second("\"2001:db8:b::/48\""));
    invalid(
        &second("\"10.2.0.0/16\", \"2001:db8:a:8000::/49\""),
        "tunnel[1] \"b\".prefixes[1]",
        Some("2001:db8:a:8000::/49"),
        "overlaps 2001:db8:a::/48 of tunnel[0] \"a\".prefixes[0]",
    );
    invalid(
        &format!("{dual}\n[[route]]\nprefix = \"2001:db8:a::/48\"\nblackhole = true\n"),
        "route[0].prefix",
        Some("2001:db8:a::/48"),
        "is already claimed by tunnel[0] \"a\".prefixes[0]",
    );
    // Natively out of a port: to an IPv6 next hop, which is unicast and not ours; no
    // connected IPv6 subnets yet. A route's tunnel exists.
    let native = |next_hop: &str| {
        format!("{dual}\n[[route]]\nprefix = \"2001:db8:ff::/48\"\nport = \"inet0\"\n{next_hop}\n")
    };
    let cfg = ok(&native("next_hop = \"2001:db8:100::fe\""));
    assert!(matches!(
        &cfg.routes6[0].target,
        RouteTarget::Port6 { port, next_hop }
            if port.index == 1 && *next_hop == "2001:db8:100::fe".parse::<Ipv6Addr>().unwrap()
    ));
    invalid(
        &native("next_hop = \"203.0.113.2\""),
        "route[0].next_hop",
        Some("\"203.0.113.2\""),
        "is not an IPv6 address",
    );
    invalid(
        &native(""),
        "route[0].port",
        Some("\"inet0\""),
        "connected IPv6 subnets (a port without next_hop) do not exist yet",
    );
    invalid(
        &native("next_hop = \"fe80::1\""),
        "route[0].next_hop",
        Some("fe80::1"),
        "link-local",
    );
    invalid(
        &native("next_hop = \"fd00:a::1\""),
        "route[0].next_hop",
        Some("fd00:a::1"),
        "is our own address",
    );
    invalid(
        &format!("{dual}\n[[route]]\nprefix = \"2001:db8:ff::/48\"\ntunnel = \"nope\"\n"),
        "route[0].tunnel",
        Some("\"nope\""),
        "is not a configured tunnel",
    );
}

/// BASE with a core port (`10.255.0.1`, its host interface as asked) and `[bgp]` with
/// `extra` lines.
fn with_core(host_interface: bool, bgp: &str) -> String {
    with(&format!(
        "[[port]]\nname = \"core0\"\ndevice = \"net_pcap2\"\nroles = [\"core\"]\n\
         addresses = [\"10.255.0.1\"]\nhost_interface = {host_interface}\ntransit = true\n\n\
         [bgp]\nasn = 65000\n{bgp}\n"
    ))
}

#[test]
fn ibgp_runs_from_a_core_address_with_a_host_interface() {
    let cfg = ok(&with_core(
        true,
        "ibgp_peers = [\"10.255.0.254\", \"10.255.0.253\"]\nibgp_source = \"10.255.0.1\"",
    ));
    let bgp = cfg.bgp.expect("[bgp]");
    assert_eq!(
        bgp.ibgp_peers,
        [
            Ipv4Addr::new(10, 255, 0, 254),
            Ipv4Addr::new(10, 255, 0, 253)
        ]
    );
    assert_eq!(bgp.ibgp_source, Some(Ipv4Addr::new(10, 255, 0, 1)));
    // BFD on the reflector sessions only when asked.
    assert!(!bgp.ibgp_bfd);
    let bgp = ok(&with_core(
        true,
        "ibgp_peers = [\"10.255.0.254\"]\nibgp_source = \"10.255.0.1\"\nibgp_bfd = true",
    ))
    .bgp
    .expect("[bgp]");
    assert!(bgp.ibgp_bfd);
    // Without them: no iBGP.
    let bgp = ok(&with_core(true, "")).bgp.expect("[bgp]");
    assert!(bgp.ibgp_peers.is_empty() && bgp.ibgp_source.is_none() && !bgp.ibgp_bfd);
}

#[test]
fn ibgp_is_refused_where_it_cannot_run() {
    let peers = "ibgp_peers = [\"10.255.0.254\"]";
    invalid(
        &with_core(true, peers),
        "bgp.ibgp_source",
        Some("(absent)"),
        "is needed with ibgp_peers",
    );
    invalid(
        &with_core(true, "ibgp_source = \"10.255.0.1\""),
        "bgp.ibgp_source",
        Some("\"10.255.0.1\""),
        "give bgp.ibgp_peers",
    );
    invalid(
        &with_core(true, &format!("{peers}\nibgp_source = \"10.255.0.9\"")),
        "bgp.ibgp_source",
        Some("10.255.0.9"),
        "is not one of our ports' addresses",
    );
    invalid(
        &with_core(true, &format!("{peers}\nibgp_source = \"192.0.2.1\"")),
        "bgp.ibgp_source",
        Some("192.0.2.1"),
        "has no \"core\" role",
    );
    invalid(
        &with_core(false, &format!("{peers}\nibgp_source = \"10.255.0.1\"")),
        "bgp.ibgp_source",
        Some("10.255.0.1"),
        "has no host interface",
    );
    invalid(
        &with_core(
            true,
            "ibgp_peers = [\"10.255.0.254\", \"10.255.0.254\"]\nibgp_source = \"10.255.0.1\"",
        ),
        "bgp.ibgp_peers[1]",
        Some("10.255.0.254"),
        "is already bgp.ibgp_peers[0]",
    );
    invalid(
        &with_core(
            true,
            "ibgp_peers = [\"10.255.0.1\"]\nibgp_source = \"10.255.0.1\"",
        ),
        "bgp.ibgp_peers[0]",
        Some("10.255.0.1"),
        "is our own address",
    );
    invalid(
        &with_core(true, "ibgp_bfd = true"),
        "bgp.ibgp_bfd",
        Some("true"),
        "give bgp.ibgp_peers",
    );
}

#[test]
fn a_tunnels_local_preference_needs_bgp_and_fits_32_bits() {
    let t = "tunnel[0] \"a\"";
    let pref = |v: &str| replaced("key = 100", &format!("key = 100\nlocal_pref = {v}"));
    invalid(
        &pref("200"),
        &format!("{t}.local_pref"),
        Some("200"),
        "needs a [bgp] section",
    );
    let bgp = "\n[bgp]\nasn = 65000\n";
    assert_eq!(ok(&(pref("200") + bgp)).tunnels[0].local_pref, Some(200));
    assert_eq!(
        ok(&(pref("4294967295") + bgp)).tunnels[0].local_pref,
        Some(u32::MAX)
    );
    assert_eq!(ok(&(BASE.to_owned() + bgp)).tunnels[0].local_pref, None);
    for bad in ["-1", "4294967296"] {
        invalid(
            &(pref(bad) + bgp),
            &format!("{t}.local_pref"),
            Some(bad),
            "",
        );
    }
}

/// A port's IPv6 addresses and static IPv6 neighbours, written beside the IPv4 ones.
#[test]
fn port_ipv6_addresses_and_neighbours() {
    let v6 = replaced(
        "addresses = [\"203.0.113.1\"]",
        "addresses = [\"203.0.113.1\", \"2001:db8:1::1\"]\n\
         [[port.neighbor]]\nip = \"203.0.113.254\"\nmac = \"02:00:00:00:00:fe\"\n\
         [[port.neighbor]]\nip = \"2001:db8:1::fe\"\nmac = \"02:00:00:00:01:fe\"",
    );
    let cfg = ok(&v6);
    let inet = &cfg.ports[1];
    assert_eq!(inet.addresses, [Ipv4Addr::new(203, 0, 113, 1)]);
    assert_eq!(
        inet.addresses6,
        ["2001:db8:1::1".parse::<Ipv6Addr>().unwrap()]
    );
    assert_eq!(inet.neighbors.len(), 1);
    assert_eq!(inet.neighbors6.len(), 1);
    assert_eq!(
        inet.neighbors6[0].ip,
        "2001:db8:1::fe".parse::<Ipv6Addr>().unwrap()
    );
    // Files without IPv6 have none.
    assert!(ok(BASE).ports.iter().all(|p| p.addresses6.is_empty()));

    // RFC 4291: a port's own address is unicast; its link-local one comes from its MAC.
    for (bad, problem) in [
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:192.0.2.9", "IPv4-mapped"),
    ] {
        invalid(
            &v6.replace("\"2001:db8:1::1\"", &format!("{bad:?}")),
            "port[1] \"inet0\".addresses[1]",
            Some(bad),
            problem,
        );
    }
    // Not on two ports.
    invalid(
        &v6.replace(
            "addresses = [\"192.0.2.1\"]",
            "addresses = [\"192.0.2.1\", \"2001:db8:1::1\"]",
        ),
        "port[1] \"inet0\".addresses[1]",
        Some("2001:db8:1::1"),
        "is already configured as port[0] \"client0\".addresses[1]",
    );
    // A neighbour is not ours, not twice, and unicast; the field is its place in the file.
    invalid(
        &v6.replace("ip = \"2001:db8:1::fe\"", "ip = \"2001:db8:1::1\""),
        "port[1] \"inet0\".neighbor[1].ip",
        Some("2001:db8:1::1"),
        "is our own address",
    );
    invalid(
        &v6.replace("ip = \"203.0.113.254\"", "ip = \"2001:db8:1::fe\""),
        "port[1] \"inet0\".neighbor[1].ip",
        Some("2001:db8:1::fe"),
        "is already port[1] \"inet0\".neighbor[0]",
    );
    invalid(
        &v6.replace("ip = \"2001:db8:1::fe\"", "ip = \"ff02::1\""),
        "port[1] \"inet0\".neighbor[1].ip",
        Some("ff02::1"),
        "multicast",
    );
}

// ------------------------------------------------------ tunnels with IPv6 endpoints

/// BASE with client0 holding 2001:db8::1 and tunnel "a" between IPv6 endpoints.
fn outer6(remote: &str, extra: &str) -> String {
    BASE.replacen(
        "addresses = [\"192.0.2.1\"]",
        "addresses = [\"192.0.2.1\", \"2001:db8::1\"]",
        1,
    )
    .replacen("local = \"192.0.2.1\"", "local = \"2001:db8::1\"", 1)
    .replacen(
        "remote = \"198.51.100.1\"",
        &format!("remote = \"{remote}\"\n{extra}"),
        1,
    )
}

#[test]
fn ipv6_endpoints_are_accepted_with_their_own_header_length() {
    let cfg = ok(&outer6("2001:db8:100::10", ""));
    let t = &cfg.tunnels[0];
    let o = t.outer6.expect("IPv6 endpoints");
    assert_eq!(o.local, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(o.remote, "2001:db8:100::10".parse::<Ipv6Addr>().unwrap());
    assert_eq!(o.next_hop, o.remote, "next_hop defaults to remote");
    assert_eq!(t.local, Ipv4Addr::UNSPECIFIED);
    // RFC 8200: 40 bytes of IPv6 header; GRE with a key: 8 (RFC 2890).
    assert_eq!(t.header_len(), 48);
    assert_eq!(t.inner_mtu(), 1500 - 48);
    let nh = ok(&outer6("2001:db8:100::10", "next_hop = \"2001:db8::fe\""));
    assert_eq!(
        nh.tunnels[0].outer6.unwrap().next_hop,
        "2001:db8::fe".parse::<Ipv6Addr>().unwrap()
    );
    // IP in IPv6 (RFC 2473) is mode "ipip" with IPv6 endpoints.
    let ipip = ok(&outer6("2001:db8:100::10", "").replacen(
        "mode = \"gre\"\nlocal = \"2001:db8::1\"\nremote = \"2001:db8:100::10\"\n\nkey = 100",
        "mode = \"ipip\"\nlocal = \"2001:db8::1\"\nremote = \"2001:db8:100::10\"\n",
        1,
    ));
    assert_eq!(ipip.tunnels[0].mode, TunnelMode::Ipip);
    assert_eq!(ipip.tunnels[0].header_len(), 40);
    // The MTU floor counts the IPv6 header: 68 + 48.
    invalid(
        &outer6("2001:db8:100::10", "mtu = 115"),
        "tunnel[0] \"a\".mtu",
        Some("115"),
        "after 48 bytes of headers (at least 116)",
    );
}

#[test]
fn ipv6_endpoints_are_of_one_family_and_unicast() {
    invalid(
        &outer6("198.51.100.1", ""),
        "tunnel[0] \"a\".remote",
        Some("\"198.51.100.1\""),
        "is an IPv4 address but local 2001:db8::1 is IPv6",
    );
    invalid(
        &replaced("remote = \"198.51.100.1\"", "remote = \"2001:db8:100::10\""),
        "tunnel[0] \"a\".remote",
        Some("\"2001:db8:100::10\""),
        "is an IPv6 address but local 192.0.2.1 is IPv4",
    );
    invalid(
        &outer6("2001:db8:100::10", "next_hop = \"192.0.2.254\""),
        "tunnel[0] \"a\".next_hop",
        Some("\"192.0.2.254\""),
        "is an IPv4 address but local 2001:db8::1 is IPv6",
    );
    for (bad, problem) in [
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:198.51.100.1", "IPv4-mapped"),
        (
            "2001:db8::1",
            "is our own address (port[0] \"client0\".addresses[1])",
        ),
    ] {
        invalid(
            &outer6(bad, ""),
            "tunnel[0] \"a\".remote",
            Some(bad),
            problem,
        );
        invalid(
            &outer6("2001:db8:100::10", &format!("next_hop = \"{bad}\"")),
            "tunnel[0] \"a\".next_hop",
            Some(bad),
            problem,
        );
    }
    // Another port's IPv6 address is not the tunnel's port's.
    invalid(
        &outer6("2001:db8:100::10", "")
            .replacen(
                "addresses = [\"203.0.113.1\"]",
                "addresses = [\"203.0.113.1\", \"2001:db8:9::1\"]",
                1,
            )
            .replacen("local = \"2001:db8::1\"", "local = \"2001:db8:9::1\"", 1),
        "tunnel[0] \"a\".local",
        Some("2001:db8:9::1"),
        "is not one of port \"client0\"'s IPv6 addresses",
    );
    invalid(
        &outer6("2001:db8:100::10", "probe = true"),
        "tunnel[0] \"a\".probe",
        Some("true"),
        "IPv6 endpoints",
    );
}

#[test]
fn ipv6_endpoints_are_unique_with_mode_and_key() {
    let b = |fields: &str| {
        format!(
            "{}\n[[tunnel]]\nname = \"b\"\nlocal = \"2001:db8::1\"\nport = \"client0\"\n{fields}\n",
            outer6("2001:db8:100::10", "")
        )
    };
    invalid(
        &b("mode = \"gre\"\nremote = \"2001:db8:100::10\"\nkey = 100"),
        B,
        Some("(local 2001:db8::1, remote 2001:db8:100::10, mode gre, key 100)"),
        "is already the endpoint of tunnel[0] \"a\"",
    );
    ok(&b(
        "mode = \"gre\"\nremote = \"2001:db8:100::10\"\nkey = 101",
    ));
    ok(&b("mode = \"ipip\"\nremote = \"2001:db8:100::10\""));
    ok(&b(
        "mode = \"gre\"\nremote = \"2001:db8:100::11\"\nkey = 100",
    ));
    // Two IPv6 tunnels do not collide on their unused IPv4 fields, nor does a default
    // route into a tunnel meet their (0.0.0.0) IPv4 remote.
    let cfg = ok(&format!(
        "{}\n[[route]]\nprefix = \"0.0.0.0/0\"\ntunnel = \"a\"\n",
        b("mode = \"gre\"\nremote = \"2001:db8:100::11\"\nprefixes = [\"10.2.0.0/16\"]")
    ));
    assert_eq!(cfg.tunnels.len(), 2);
}
