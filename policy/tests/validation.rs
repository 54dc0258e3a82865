//! Every rule of the policy document, broken one at a time on the example policy: each is
//! refused, naming the field by its path; and the example's parts are what the rules in
//! POLICY.md say they are.

use backbone_policy::part::{changes, part};
use backbone_policy::{Policy, PolicyError};
use serde_json::json;
use toml::Value;

const EXAMPLE: &str = include_str!("../examples/backbone.toml");

fn example() -> toml::Table {
    toml::from_str(EXAMPLE).unwrap()
}

/// The example with `change` made to it, as text.
fn changed(change: impl FnOnce(&mut toml::Table)) -> String {
    let mut doc = example();
    change(&mut doc);
    toml::to_string(&doc).unwrap()
}

fn at<'a>(doc: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    let mut t = doc;
    for step in path {
        let (key, index) = match step.split_once('#') {
            Some((k, i)) => (k, Some(i.parse::<usize>().unwrap())),
            None => (*step, None),
        };
        let v = t.get_mut(key).unwrap_or_else(|| panic!("no {key}"));
        t = match index {
            Some(i) => v.as_array_mut().unwrap()[i].as_table_mut().unwrap(),
            None => v.as_table_mut().unwrap(),
        };
    }
    t
}

fn set(path: &[&str], key: &str, value: Value) -> String {
    changed(|doc| {
        at(doc, path).insert(key.into(), value);
    })
}

fn remove(path: &[&str], key: &str) -> String {
    changed(|doc| {
        at(doc, path).remove(key);
    })
}

/// `text` is refused, naming `field`, with `problem` in the message.
#[track_caller]
fn refused(text: &str, field: &str, problem: &str) {
    match Policy::parse(text, "p.toml") {
        Ok(_) => panic!("accepted, expected {field}: {problem}"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(e.field(), Some(field), "{msg}");
            assert!(msg.starts_with(&format!("p.toml: {field}: ")), "{msg}");
            assert!(msg.contains(problem), "expected {problem:?} in {msg}");
        }
    }
}

#[track_caller]
fn syntax(text: &str, problem: &str) {
    match Policy::parse(text, "p.toml") {
        Err(e @ PolicyError::Syntax { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(problem), "expected {problem:?} in {msg}");
        }
        other => panic!("expected a syntax error with {problem:?}, got {other:?}"),
    }
}

#[test]
fn the_example_is_valid() {
    let p = Policy::parse(EXAMPLE, "example").unwrap();
    assert_eq!(p.edges.len(), 2);
    assert_eq!(p.clients.len(), 4);
    assert_eq!(p.asn, 65000);
}

#[test]
fn schema_errors_are_syntax_errors() {
    syntax(
        &set(&["edge#0"], "speed", 10.into()),
        "unknown field `speed`",
    );
    syntax(
        &set(&["client#0"], "colour", "red".into()),
        "unknown field `colour`",
    );
    syntax(
        &set(&["client#3", "placement#1"], "weight", 2.into()),
        "unknown field `weight`",
    );
    syntax(&set(&["backbone"], "asn", "65000".into()), "invalid type");
    syntax(
        &remove(&["edge#0"], "core_address"),
        "missing field `core_address`",
    );
    syntax(&remove(&[], "backbone"), "missing field `backbone`");
    syntax("[backbone\nasn = 1", "");
    // A table written where an array of tables belongs, and the reverse.
    syntax(
        &set(&[], "edge", Value::Table(toml::Table::new())),
        "expected an array of tables ([[edge]])",
    );
    syntax(
        &set(&[], "backbone", Value::Array(vec![65000.into()])),
        "backbone: expected a table",
    );
    syntax(
        &set(
            &["client#0"],
            "placement",
            Value::Array(vec!["edge-1".into()]),
        ),
        "expected an array of tables ([[client.placement]])",
    );
}

#[test]
fn backbone_and_preferences() {
    refused(
        &set(&["backbone"], "asn", 0.into()),
        "backbone.asn",
        "is not an AS number",
    );
    refused(
        &set(&["backbone"], "asn", 4_294_967_295i64.into()),
        "backbone.asn",
        "is not an AS number",
    );
    refused(
        &set(&["backbone"], "asn", 23456.into()),
        "backbone.asn",
        "AS_TRANS",
    );
    refused(
        &set(&["preferences"], "primary_local_pref", 100.into()),
        "preferences.primary_local_pref",
        "must be above backup_local_pref (100)",
    );
    refused(
        &set(&["preferences"], "backup_local_pref", (-1).into()),
        "preferences.backup_local_pref",
        "is not a BGP local preference",
    );
    refused(
        &set(&["preferences"], "make_before_announce_s", (-1).into()),
        "preferences.make_before_announce_s",
        "is not a number of seconds (0 to 3600)",
    );
    refused(
        &set(&["preferences"], "make_before_announce_s", 3601.into()),
        "preferences.make_before_announce_s",
        "is not a number of seconds (0 to 3600)",
    );
    let p = Policy::parse(
        &remove(&["preferences"], "make_before_announce_s"),
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.preferences.make_before_announce_s, 30, "the default");
    refused(
        &set(&["preferences"], "withdraw_before_remove_s", (-1).into()),
        "preferences.withdraw_before_remove_s",
        "is not a number of seconds (0 to 3600)",
    );
    refused(
        &set(&["preferences"], "withdraw_before_remove_s", 3601.into()),
        "preferences.withdraw_before_remove_s",
        "is not a number of seconds (0 to 3600)",
    );
    let p = Policy::parse(
        &set(&["preferences"], "withdraw_before_remove_s", 0.into()),
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.preferences.withdraw_before_remove_s, 0);
    let p = Policy::parse(
        &remove(&["preferences"], "withdraw_before_remove_s"),
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.preferences.withdraw_before_remove_s, 30, "the default");
}

#[test]
fn edges() {
    refused(
        &set(&[], "edge", Value::Array(vec![])),
        "edge",
        "at least one [[edge]] is required",
    );
    refused(
        &set(&["edge#1"], "name", "edge-1".into()),
        "edge[1] \"edge-1\".name",
        "is also the name of edge[0] \"edge-1\"",
    );
    refused(
        &set(&["edge#0"], "name", "".into()),
        "edge[0] \"\".name",
        "is empty",
    );
    refused(
        &set(&["edge#0"], "name", "edge/1".into()),
        "edge[0] \"edge/1\".name",
        "may hold only letters, digits",
    );
    refused(
        &set(&["edge#0"], "name", "e".repeat(64).into()),
        &format!("edge[0] \"{}\".name", "e".repeat(64)),
        "is longer than 63",
    );
    refused(
        &set(&["edge#0"], "core_address", "10.255.0.300".into()),
        "edge[0] \"edge-1\".core_address",
        "is not an IPv4 address",
    );
    refused(
        &set(&["edge#0"], "core_address", "2001:db8::1".into()),
        "edge[0] \"edge-1\".core_address",
        "IPv6",
    );
    refused(
        &set(&["edge#0"], "core_address", "127.0.0.1".into()),
        "edge[0] \"edge-1\".core_address",
        "loopback",
    );
    refused(
        &set(&["edge#0"], "tunnel_endpoint", "224.0.0.5".into()),
        "edge[0] \"edge-1\".tunnel_endpoint",
        "multicast",
    );
    refused(
        &set(&["edge#0"], "tunnel_endpoint", "0.1.2.3".into()),
        "edge[0] \"edge-1\".tunnel_endpoint",
        "0.0.0.0/8",
    );
    refused(
        &set(&["edge#0"], "tunnel_endpoint", "255.255.255.255".into()),
        "edge[0] \"edge-1\".tunnel_endpoint",
        "broadcast",
    );
    refused(
        &set(&["edge#0"], "tunnel_endpoint", "250.0.0.1".into()),
        "edge[0] \"edge-1\".tunnel_endpoint",
        "240.0.0.0/4",
    );
    // Two edges never share an address; one edge may use one for both.
    refused(
        &set(&["edge#1"], "core_address", "10.255.0.1".into()),
        "edge[1] \"edge-2\".core_address",
        "is also edge[0] \"edge-1\".core_address",
    );
    refused(
        &set(&["edge#1"], "tunnel_endpoint", "10.255.0.1".into()),
        "edge[1] \"edge-2\".tunnel_endpoint",
        "is also edge[0] \"edge-1\".core_address",
    );
    Policy::parse(
        &set(&["edge#0"], "tunnel_endpoint", "10.255.0.1".into()),
        "p",
    )
    .unwrap();
    refused(
        &set(&["edge#0"], "core_port", "".into()),
        "edge[0] \"edge-1\".core_port",
        "is empty",
    );
    refused(
        &set(&["edge#1"], "client_port", "".into()),
        "edge[1] \"edge-2\".client_port",
        "is empty",
    );
    refused(
        &set(&["edge#0"], "control_socket", "run/control.sock".into()),
        "edge[0] \"edge-1\".control_socket",
        "is not an absolute path",
    );
}

#[test]
fn a_clients_own_fields() {
    let c = |i: usize| format!("client#{i}");
    refused(
        &set(&[&c(1)], "name", "acme".into()),
        "client[1] \"acme\".name",
        "is also the name of client[0] \"acme\"",
    );
    refused(
        &set(&[&c(0)], "name", "".into()),
        "client[0] \"\".name",
        "is empty",
    );
    // bb-<name> must fit Linux's 15 characters.
    refused(
        &set(&[&c(0)], "name", "abcdefghijklm".into()),
        "client[0] \"abcdefghijklm\".name",
        "longer than 12",
    );
    refused(
        &set(&[&c(0)], "name", "a b".into()),
        "client[0] \"a b\".name",
        "may hold only letters",
    );
    refused(
        &set(&[&c(0)], "mode", "vxlan".into()),
        "client[0] \"acme\".mode",
        "is not a tunnel mode",
    );
    refused(
        &set(&[&c(0)], "remote", "198.51.100".into()),
        "client[0] \"acme\".remote",
        "is not an IPv4 address",
    );
    refused(
        &set(&[&c(0)], "remote", "10.255.0.2".into()),
        "client[0] \"acme\".remote",
        "is an edge's own address (edge[1] \"edge-2\".core_address)",
    );
    refused(
        &set(&[&c(0)], "remote", "192.0.2.1".into()),
        "client[0] \"acme\".remote",
        "is an edge's own address",
    );
    refused(
        &set(&[&c(0)], "key", 4_294_967_296i64.into()),
        "client[0] \"acme\".key",
        "is not a 32-bit key",
    );
    refused(
        &set(&[&c(0)], "key", (-1).into()),
        "client[0] \"acme\".key",
        "is not a 32-bit key",
    );
    // GRE's fields on an IPIP client, even written as false.
    refused(
        &set(&[&c(2)], "key", 5.into()),
        "client[2] \"initech\".key",
        "is for GRE tunnels only",
    );
    refused(
        &set(&[&c(2)], "sequence", false.into()),
        "client[2] \"initech\".sequence",
        "is for GRE tunnels only",
    );
    refused(
        &set(&[&c(2)], "checksum", true.into()),
        "client[2] \"initech\".checksum",
        "is for GRE tunnels only",
    );
    refused(
        &set(&[&c(0)], "mtu", 67.into()),
        "client[0] \"acme\".mtu",
        "is not a tunnel MTU",
    );
    refused(
        &set(&[&c(0)], "mtu", 9001.into()),
        "client[0] \"acme\".mtu",
        "is not a tunnel MTU",
    );
    refused(
        &set(&[&c(0)], "asn", 65000.into()),
        "client[0] \"acme\".asn",
        "the backbone's own AS number",
    );
    refused(
        &set(&[&c(0)], "asn", 23456.into()),
        "client[0] \"acme\".asn",
        "AS_TRANS",
    );
    refused(
        &set(&[&c(2)], "bfd", true.into()),
        "client[2] \"initech\".bfd",
        "is for a BGP session",
    );
    refused(
        &set(&[&c(0)], "prefixes", Value::Array(vec![])),
        "client[0] \"acme\".prefixes",
        "is empty",
    );
    refused(
        &set(
            &[&c(0)],
            "prefixes",
            Value::Array(vec!["10.1.0.1/16".into()]),
        ),
        "client[0] \"acme\".prefixes[0]",
        "has host bits set (the prefix is 10.1.0.0/16)",
    );
    refused(
        &set(
            &[&c(0)],
            "prefixes",
            Value::Array(vec!["10.1.0.0/16".into(), "10.1.0.0/16".into()]),
        ),
        "client[0] \"acme\".prefixes[1]",
        "is listed twice",
    );
    refused(
        &set(&[&c(0)], "prefixes", Value::Array(vec!["10.1.0.0".into()])),
        "client[0] \"acme\".prefixes[0]",
        "is not an IPv4 prefix",
    );
    refused(
        &set(
            &[&c(0)],
            "extra_sources",
            Value::Array(vec!["10.1.0.0/16".into()]),
        ),
        "client[0] \"acme\".extra_sources[0]",
        "is one of the client's prefixes already",
    );
    // A mis-shaped value inside a too-short list; the MTU of the appliance's own rules.
    refused(
        &set(&[&c(2)], "mtu", 80.into()),
        "edge[0] \"edge-1\"",
        "refused by the appliance's rules: tunnel[",
    );
}

#[test]
fn placement() {
    let p = |i: usize, j: usize| vec![format!("client#{i}"), format!("placement#{j}")];
    let on = |v: Vec<String>, key: &str, value: Value| {
        let path: Vec<&str> = v.iter().map(String::as_str).collect();
        set(&path, key, value)
    };
    refused(
        &on(p(2, 0), "edge", "x".into()),
        "client[2] \"initech\".placement[0].edge",
        "\"x\" is not a defined [[edge]]",
    );
    refused(
        &set(&["client#0"], "placement", Value::Array(vec![])),
        "client[0] \"acme\".placement",
        "is empty",
    );
    refused(
        &on(p(3, 1), "edge", "edge-2".into()),
        "client[3] \"hooli\".placement[1].edge",
        "hosts this client twice",
    );
    refused(
        &on(p(3, 1), "role", "primary".into()),
        "client[3] \"hooli\".placement[1].role",
        "is taken: a client has one primary edge",
    );
    refused(
        &on(p(3, 1), "role", "standby".into()),
        "client[3] \"hooli\".placement[1].role",
        "is not a role",
    );
    refused(
        &on(p(2, 0), "role", "backup".into()),
        "client[2] \"initech\".placement",
        "has no primary edge",
    );
    let three = changed(|doc| {
        let t = at(doc, &["client#3"]);
        let mut list = t["placement"].as_array().unwrap().clone();
        let mut third = list[0].as_table().unwrap().clone();
        third.insert("edge".into(), "edge-3".into());
        list.push(Value::Table(third));
        t.insert("placement".into(), Value::Array(list));
    });
    refused(&three, "client[3] \"hooli\".placement", "has 3 entries");
    // Links: required with BGP, /30 or /31 with BGP, a usable address.
    refused(
        &remove(&["client#0", "placement#0"], "link"),
        "client[0] \"acme\".placement[0].link",
        "is required for a client with an asn",
    );
    refused(
        &on(p(0, 0), "link", "169.254.1.1/29".into()),
        "client[0] \"acme\".placement[0].link",
        "must be a /31 or a /30",
    );
    refused(
        &on(p(0, 0), "link", "169.254.1.1".into()),
        "client[0] \"acme\".placement[0].link",
        "is not an IPv4 address with a prefix length",
    );
    refused(
        &on(p(0, 0), "link", "169.254.1.1/32".into()),
        "client[0] \"acme\".placement[0].link",
        "prefix length of 8 to 31",
    );
    refused(
        &on(p(0, 0), "link", "169.254.1.0/30".into()),
        "client[0] \"acme\".placement[0].link",
        "network or broadcast",
    );
    refused(
        &on(p(0, 0), "link", "127.0.0.1/31".into()),
        "client[0] \"acme\".placement[0].link",
        "loopback",
    );
    refused(
        &on(p(0, 0), "remote", "10.255.0.1".into()),
        "client[0] \"acme\".placement[0].remote",
        "is an edge's own address",
    );
}

#[test]
fn rules_across_clients() {
    // One source, one client (BCP 38): equal, covering, covered, and through extra_sources.
    refused(
        &set(
            &["client#1"],
            "prefixes",
            Value::Array(vec!["10.1.0.0/16".into()]),
        ),
        "client[1] \"globex\".prefixes[0]",
        "overlaps 10.1.0.0/16 of client[0] \"acme\".prefixes[0]",
    );
    refused(
        &set(
            &["client#1"],
            "prefixes",
            Value::Array(vec!["10.1.5.0/24".into()]),
        ),
        "client[1] \"globex\".prefixes[0]",
        "overlaps 10.1.0.0/16 of client[0] \"acme\".prefixes[0]",
    );
    refused(
        &set(
            &["client#1"],
            "prefixes",
            Value::Array(vec!["10.0.0.0/8".into()]),
        ),
        "client[1] \"globex\".prefixes[0]",
        "overlaps 10.1.0.0/16 of client[0] \"acme\".prefixes[0]",
    );
    refused(
        &set(
            &["client#2"],
            "extra_sources",
            Value::Array(vec!["10.44.1.0/24".into()]),
        ),
        "client[3] \"hooli\".prefixes[1]",
        "overlaps 10.44.1.0/24 of client[2] \"initech\".extra_sources[0]",
    );
    // Within one client, nesting is fine.
    Policy::parse(
        &set(
            &["client#0"],
            "prefixes",
            Value::Array(vec!["10.1.0.0/16".into(), "10.1.7.0/24".into()]),
        ),
        "p",
    )
    .unwrap();
    // A client router inside a client's prefixes.
    refused(
        &set(&["client#0"], "remote", "10.2.3.4".into()),
        "client[0] \"acme\".remote",
        "is inside 10.2.0.0/16 (client[1] \"globex\".prefixes[0])",
    );
    // The same key toward another router is fine.
    Policy::parse(&set(&["client#3"], "key", 100.into()), "p").unwrap();
}

#[test]
fn endpoints_and_links_per_edge() {
    let same_router = changed(|doc| {
        at(doc, &["client#3"]).insert("remote".into(), "198.51.100.10".into());
        at(doc, &["client#3"]).insert("key".into(), 100.into());
    });
    refused(
        &same_router,
        "client[3] \"hooli\".placement[1]",
        "gives edge \"edge-1\" a second gre tunnel from 198.51.100.10 with key 100 (client[0] \"acme\".placement[0] has one)",
    );
    // At another edge the same endpoints are fine (other local address).
    let other_edge = changed(|doc| {
        at(doc, &["client#1"]).insert("remote".into(), "198.51.100.10".into());
        at(doc, &["client#1"]).insert("key".into(), 100.into());
        at(doc, &["client#1"]).remove("sequence");
    });
    Policy::parse(&other_edge, "p").unwrap();
    refused(
        &set(
            &["client#3", "placement#1"],
            "link",
            "169.254.1.0/31".into(),
        ),
        "client[3] \"hooli\".placement[1].link",
        "overlaps 169.254.1.1/31 of client[0] \"acme\".placement[0].link",
    );
    // The same link at two edges is fine: each edge's links are its own.
    Policy::parse(
        &set(
            &["client#3", "placement#0"],
            "link",
            "169.254.1.1/31".into(),
        ),
        "p",
    )
    .unwrap();
    refused(
        &set(&["client#0", "placement#0"], "link", "10.3.0.1/31".into()),
        "client[0] \"acme\".placement[0].link",
        "overlaps 10.3.0.0/16 of client[2] \"initech\".prefixes[0]",
    );
}

#[test]
fn a_bad_document_is_refused_whole_wherever_the_error_is() {
    // The last client is broken: nothing of the document is usable.
    let text = set(&["client#3", "placement#1"], "edge", "nowhere".into());
    refused(
        &text,
        "client[3] \"hooli\".placement[1].edge",
        "\"nowhere\" is not a defined [[edge]]",
    );
}

#[test]
fn each_edges_part() {
    let p = Policy::parse(EXAMPLE, "example").unwrap();
    let e1 = part(&p, 0);
    let e2 = part(&p, 1);
    // edge-1 hosts acme and initech (primary) and hooli (backup).
    assert_eq!(
        e1.tunnels.keys().collect::<Vec<_>>(),
        ["acme", "hooli", "initech"]
    );
    assert_eq!(
        e1.tunnels["acme"],
        json!({"name": "acme", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.10",
               "key": 100, "port": "client0", "prefixes": ["10.1.0.0/16"],
               "link": "169.254.1.1/31", "asn": 65001})
    );
    // The backup accepts hooli's sources but routes its prefixes to the primary.
    assert_eq!(
        e1.tunnels["hooli"],
        json!({"name": "hooli", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.40",
               "key": 400, "port": "client0", "extra_sources": ["10.4.0.0/16", "10.44.0.0/16"],
               "link": "169.254.4.3/31", "asn": 65004})
    );
    assert_eq!(
        e1.tunnels["initech"],
        json!({"name": "initech", "mode": "ipip", "local": "192.0.2.1", "remote": "198.51.100.30",
               "port": "client0", "prefixes": ["10.3.0.0/16"], "probe": true})
    );
    let via2 = |prefix: &str| json!({"prefix": prefix, "port": "core0", "next_hop": "10.255.0.2"});
    let via1 = |prefix: &str| json!({"prefix": prefix, "port": "core0", "next_hop": "10.255.0.1"});
    assert_eq!(e1.routes.len(), 3);
    for prefix in ["10.2.0.0/16", "10.4.0.0/16", "10.44.0.0/16"] {
        assert_eq!(e1.routes[prefix], via2(prefix));
    }
    // edge-2: globex and hooli (primary); acme and initech across the core to edge-1.
    assert_eq!(e2.tunnels.keys().collect::<Vec<_>>(), ["globex", "hooli"]);
    assert_eq!(
        e2.tunnels["hooli"]["prefixes"],
        json!(["10.4.0.0/16", "10.44.0.0/16"])
    );
    assert_eq!(e2.tunnels["hooli"]["local"], "192.0.2.2");
    assert_eq!(e2.tunnels["globex"]["sequence"], true);
    assert_eq!(e2.routes.len(), 2);
    assert_eq!(e2.routes["10.1.0.0/16"], via1("10.1.0.0/16"));
    assert_eq!(e2.routes["10.3.0.0/16"], via1("10.3.0.0/16"));
}

#[test]
fn each_edges_part_across_the_core_by_bgp() {
    let text = set(&["backbone"], "core_routing", Value::String("bgp".into()));
    let p = Policy::parse(&text, "example").unwrap();
    let (e1, e2) = (part(&p, 0), part(&p, 1));
    // No routes across the core: BGP brings them.
    assert!(
        e1.routes.is_empty() && e2.routes.is_empty(),
        "{e1:?} {e2:?}"
    );
    // Each tunnel carries the local preference of its placement ([preferences]: 200 and
    // 100); a client with a session routes from what BGP selects (fallback), its backup
    // accepting its announcements (its prefixes).
    assert_eq!(
        e1.tunnels["acme"],
        json!({"name": "acme", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.10",
               "key": 100, "port": "client0", "prefixes": ["10.1.0.0/16"],
               "link": "169.254.1.1/31", "asn": 65001, "local_pref": 200, "fallback": true})
    );
    assert_eq!(
        e1.tunnels["hooli"],
        json!({"name": "hooli", "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.40",
               "key": 400, "port": "client0", "prefixes": ["10.4.0.0/16", "10.44.0.0/16"],
               "link": "169.254.4.3/31", "asn": 65004, "local_pref": 100, "fallback": true})
    );
    assert_eq!(e2.tunnels["hooli"]["local_pref"], 200);
    // A client without a session: announced by its edge at its preference, routed by its
    // tunnel (no fallback forced).
    assert_eq!(
        e1.tunnels["initech"],
        json!({"name": "initech", "mode": "ipip", "local": "192.0.2.1", "remote": "198.51.100.30",
               "port": "client0", "prefixes": ["10.3.0.0/16"], "probe": true, "local_pref": 200})
    );
    // Static, as before, when it says so.
    let text = set(
        &["backbone"],
        "core_routing",
        Value::String("static".into()),
    );
    assert_eq!(
        part(&Policy::parse(&text, "example").unwrap(), 0),
        part(&Policy::parse(EXAMPLE, "example").unwrap(), 0)
    );
    refused(
        &set(&["backbone"], "core_routing", Value::String("ospf".into())),
        "backbone.core_routing",
        "is not \"static\" or \"bgp\"",
    );
}

#[test]
fn changes_touch_only_what_changed() {
    let old = Policy::parse(EXAMPLE, "old").unwrap();
    // globex's key changes; a client is added on edge-2; initech goes.
    let text = changed(|doc| {
        at(doc, &["client#1"]).insert("key".into(), 201.into());
        let clients = doc["client"].as_array_mut().unwrap();
        clients.remove(2);
        let mut new = clients[0].as_table().unwrap().clone();
        new.insert("name".into(), "umbrella".into());
        new.insert("remote".into(), "198.51.100.50".into());
        new.insert("asn".into(), 65005.into());
        new.insert("prefixes".into(), Value::Array(vec!["10.5.0.0/16".into()]));
        let mut placement = toml::Table::new();
        placement.insert("edge".into(), "edge-2".into());
        placement.insert("role".into(), "primary".into());
        placement.insert("link".into(), "169.254.5.1/31".into());
        new.insert(
            "placement".into(),
            Value::Array(vec![Value::Table(placement)]),
        );
        clients.push(Value::Table(new));
    });
    let new = Policy::parse(&text, "new").unwrap();
    let ops1 = changes(&part(&old, 0), &part(&new, 0));
    // edge-1: initech's tunnel goes, umbrella's prefix is routed to edge-2; acme and hooli
    // are not touched, nor the routes that stay.
    assert_eq!(
        ops1,
        vec![
            json!({"op": "remove_tunnel", "name": "initech"}),
            json!({"op": "set_route", "route": {"prefix": "10.5.0.0/16", "port": "core0", "next_hop": "10.255.0.2"}}),
        ]
    );
    let ops2 = changes(&part(&old, 1), &part(&new, 1));
    assert_eq!(ops2.len(), 4, "{ops2:#?}");
    assert_eq!(
        ops2[0],
        json!({"op": "remove_route", "prefix": "10.3.0.0/16"})
    );
    assert_eq!(ops2[1], json!({"op": "remove_tunnel", "name": "globex"}));
    assert_eq!(ops2[2]["tunnel"]["key"], 201);
    assert_eq!(ops2[3]["tunnel"]["name"], "umbrella");
    assert!(changes(&part(&new, 1), &part(&new, 1)).is_empty());
}
