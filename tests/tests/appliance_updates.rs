//! Hitless updates through the real binary: an endless pcap source sends to many prefixes
//! while this test applies thousands of route and tunnel changes through the control API.
//! Afterwards: no packet dropped (every move is atomic, no route ever missing), no packet
//! misrouted (each left through a tunnel its prefix was routed to at some moment, and the
//! prefixes that never moved never left anywhere else), and the final state is the one
//! requested. A bad change is refused with a clear error and changes nothing.

use backbone_tests::{
    backbone_bin, pcap, repo_root, scapy, scratch_dir, wait_for, wait_until, KillOnDrop,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const GROUP_A: u8 = 32; // 10.50.x.0/24: moved between acme and globex
const GROUP_B: u8 = 16; // 10.60.x.0/24: moved between globex and short-lived tunnels
const BATCHES: usize = 240;

struct Api {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Api {
    fn connect(path: &Path) -> Api {
        let s = wait_for(Duration::from_secs(30), "the control socket", || {
            UnixStream::connect(path)
        });
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Api {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    fn call(&mut self, req: &Value) -> Value {
        self.writer
            .write_all(format!("{req}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

fn tunnel_of_remote(outer_dst: [u8; 4]) -> String {
    match outer_dst {
        [198, 51, 100, 10] => "acme".into(),
        [198, 51, 100, 20] => "globex".into(),
        [198, 51, 100, 30] => "initech".into(),
        [198, 51, 100, k] if k >= 100 => format!("extra{}", k - 100),
        other => panic!("output to unexpected remote {other:?}"),
    }
}

#[test]
fn thousands_of_changes_while_forwarding_lose_and_misroute_nothing() {
    let dir = scratch_dir("appliance-updates");
    let root = repo_root();
    // Initech's hosts send to every prefix of the three groups, endlessly.
    let script = format!(
        "from scapy.all import *\n\
         dsts=['10.50.%d.5'%x for x in range({GROUP_A})]+['10.60.%d.5'%x for x in range({GROUP_B})]+['10.70.0.5']\n\
         wrpcap('{}',[Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.1',dst=d)/UDP(dport=5001) for d in dsts])",
        dir.join("updates-in.pcap").display()
    );
    scapy(&script);
    pcap::write(&dir.join("internet-in.pcap"), &[]).unwrap();

    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    let mut toml = std::fs::read_to_string(root.join("demo/lab.toml"))
        .unwrap()
        .replace(
            "rx_pcap=clients-in.pcap",
            "rx_pcap=updates-in.pcap,infinite_rx=1",
        )
        .replace(
            "--file-prefix=backbone-demo",
            "--file-prefix=backbone-updates",
        );
    for x in 0..GROUP_A {
        routes.insert(format!("10.50.{x}.0/24"), "acme".into());
    }
    for x in 0..GROUP_B {
        routes.insert(format!("10.60.{x}.0/24"), "globex".into());
    }
    routes.insert("10.70.0.0/24".into(), "acme".into());
    for (p, t) in &routes {
        toml.push_str(&format!(
            "\n[[route]]\nprefix = \"{p}\"\ntunnel = \"{t}\"\n"
        ));
    }
    std::fs::write(dir.join("lab.toml"), toml).unwrap();
    let mut ever: BTreeMap<String, BTreeSet<String>> = routes
        .iter()
        .map(|(p, t)| (p.clone(), BTreeSet::from([t.clone()])))
        .collect();

    let sock = dir.join("ctl/api.sock");
    let mut guard = KillOnDrop(Some(
        Command::new(backbone_bin())
            .current_dir(&dir)
            .args([
                "run",
                "--config",
                "lab.toml",
                "--stats",
                "stats.json",
                "--control-socket",
            ])
            .arg(&sock)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut api = Api::connect(&sock);

    // A bad change first: refused, named, nothing changes.
    let g0 = api.call(&json!({"op": "generations"}))["generation"]
        .as_u64()
        .unwrap();
    for (bad, named) in [
        (
            json!({"op": "set_route", "route": {"prefix": "10.50.0.0/24", "tunnel": "nope"}}),
            "nope",
        ),
        (
            json!({"op": "set_route", "route": {"prefix": "10.50.0.9/24", "tunnel": "acme"}}),
            "10.50.0.9/24",
        ),
        (
            json!({"op": "add_tunnel", "tunnel": {"name": "twin", "mode": "gre", "local": "192.0.2.1",
                   "remote": "198.51.100.10", "key": 100, "port": "client0"}}),
            "twin",
        ),
    ] {
        let r = api.call(&bad);
        assert_eq!(r["ok"], false, "{bad} must be refused");
        assert!(r["error"].as_str().unwrap().contains(named), "{r}");
    }
    assert_eq!(
        api.call(&json!({"op": "generations"}))["generation"],
        g0,
        "refusals publish nothing"
    );

    // Thousands of changes in batches while traffic flows.
    let mut changes = 0;
    let mut extra: Option<u8> = None;
    let mut last_gen = g0;
    for n in 0..BATCHES {
        let mut ops = Vec::new();
        for i in 0..8u8 {
            let x = ((n * 8) as u8).wrapping_add(i) % GROUP_A;
            let p = format!("10.50.{x}.0/24");
            let to = if routes[&p] == "acme" {
                "globex"
            } else {
                "acme"
            };
            ops.push(json!({"op": "set_route", "route": {"prefix": p, "tunnel": to}}));
            routes.insert(p.clone(), to.into());
            ever.get_mut(&p).unwrap().insert(to.into());
        }
        if n % 20 == 0 {
            if let Some(k) = extra.take() {
                // Move group B back to globex, then drop the short-lived tunnel.
                for x in 0..GROUP_B {
                    let p = format!("10.60.{x}.0/24");
                    ops.push(
                        json!({"op": "set_route", "route": {"prefix": p, "tunnel": "globex"}}),
                    );
                    routes.insert(p.clone(), "globex".into());
                    ever.get_mut(&p).unwrap().insert("globex".into());
                }
                ops.push(json!({"op": "remove_tunnel", "name": format!("extra{k}")}));
                ops.push(json!({"op": "remove_neighbor", "port": "client0", "ip": format!("198.51.100.{}", 100 + k)}));
            } else {
                let k = (n / 20) as u8;
                let name = format!("extra{k}");
                ops.push(json!({"op": "set_neighbor", "port": "client0",
                                "ip": format!("198.51.100.{}", 100 + k), "mac": format!("02:00:00:00:ee:{k:02x}")}));
                ops.push(json!({"op": "add_tunnel", "tunnel": {"name": name, "mode": "gre", "local": "192.0.2.1",
                                "remote": format!("198.51.100.{}", 100 + k), "key": 1000 + u32::from(k),
                                "port": "client0", "prefixes": [format!("10.{}.0.0/16", 80 + k)]}}));
                for x in 0..GROUP_B {
                    let p = format!("10.60.{x}.0/24");
                    ops.push(json!({"op": "set_route", "route": {"prefix": p, "tunnel": name}}));
                    routes.insert(p.clone(), name.clone());
                    ever.get_mut(&p).unwrap().insert(name.clone());
                }
                extra = Some(k);
            }
        }
        changes += ops.len();
        let r = api.call(&json!({"op": "batch", "ops": ops}));
        assert_eq!(r["ok"], true, "batch {n}: {r}");
        let g = r["generation"].as_u64().unwrap();
        assert_eq!(g, last_gen + 1, "one publication per batch");
        last_gen = g;
    }
    assert!(changes >= 2000, "{changes} changes");

    // Every worker reaches the last generation.
    wait_for(
        Duration::from_secs(10),
        &format!("every worker at generation {last_gen}"),
        || {
            let gens = api.call(&json!({"op": "generations"}));
            let all = gens["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w.as_u64() == Some(last_gen));
            if all {
                Ok(())
            } else {
                Err(format!("workers stuck: {gens}"))
            }
        },
    );
    // And traffic flows under it: packets sent after the workers' counters were copied
    // under the last generation. Then we stop.
    let sent_under_last = |api: &mut Api| -> Option<u64> {
        let c = api.call(&json!({"op": "counters"}));
        let copies = c["workers"].as_array().unwrap();
        copies
            .iter()
            .all(|w| w["generation"].as_u64() == Some(last_gen))
            .then(|| c["ports"][0]["tx_packets"].as_u64().unwrap())
    };
    let sent_then = wait_for(
        Duration::from_secs(10),
        "counters copied under the last generation",
        || sent_under_last(&mut api).ok_or("not yet"),
    );
    wait_until(
        Duration::from_secs(10),
        "packets sent under the last generation",
        || sent_under_last(&mut api).is_some_and(|n| n > sent_then),
    );

    // The final state, through the CLI as an operator would read it.
    let listed = Command::new(backbone_bin())
        .args(["ctl", "--json", "--socket"])
        .arg(&sock)
        .arg("routes")
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    // `ctl routes` lists every route: the tunnels' own prefixes are not the changes'.
    let got: BTreeMap<String, String> = listed["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] != "tunnel")
        .filter_map(|r| {
            Some((
                r["prefix"].as_str()?.to_owned(),
                r["tunnel"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(got, routes, "the final routes are the requested ones");
    for (p, t) in &routes {
        let dst = p.replace(".0/24", ".5");
        let r = api.call(&json!({"op": "lookup", "dst": dst}));
        assert_eq!(
            r["via"]["tunnel"].as_str(),
            Some(t.as_str()),
            "the workers' snapshot routes {p}"
        );
    }
    drop(api);

    let out = guard.stop("TERM", Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    let drops: u64 = stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(drops, 0, "no packet dropped: {}", stats["drops"]);

    // Every output packet: outer destination = a tunnel its prefix was routed to at some moment.
    let packets = pcap::read(&dir.join("clients-out.pcap")).unwrap();
    assert!(
        packets.len() > 10 * 49,
        "traffic flowed during the changes: {} packets",
        packets.len()
    );
    let mut per_tunnel: BTreeMap<String, usize> = BTreeMap::new();
    for (i, p) in packets.iter().enumerate() {
        // Ethernet 14, outer IPv4 (IHL from the packet), GRE (4 + key 4) or none, inner IPv4.
        assert!(
            p.len() > 34 && p[12..14] == [0x08, 0x00],
            "packet {i} is IPv4"
        );
        let ihl = usize::from(p[14] & 0x0f) * 4;
        let outer_dst = [p[30], p[31], p[32], p[33]];
        let gre_len = |flags: u8| {
            4 + 4
                * (usize::from(flags & 0x80 != 0)
                    + usize::from(flags & 0x20 != 0)
                    + usize::from(flags & 0x10 != 0))
        };
        let inner_at = 14 + ihl + if p[23] == 47 { gre_len(p[14 + ihl]) } else { 0 };
        let inner_dst = &p[inner_at + 16..inner_at + 20];
        let prefix = format!("{}.{}.{}.0/24", inner_dst[0], inner_dst[1], inner_dst[2]);
        let tunnel = tunnel_of_remote(outer_dst);
        let allowed = ever
            .get(&prefix)
            .unwrap_or_else(|| panic!("packet {i} to unexpected {prefix}"));
        assert!(
            allowed.contains(&tunnel),
            "packet {i} to {prefix} left via {tunnel}; it was only ever routed to {allowed:?}"
        );
        *per_tunnel.entry(tunnel).or_default() += 1;
    }
    assert!(
        per_tunnel.len() >= 3,
        "packets left through the moving tunnels: {per_tunnel:?}"
    );
    // (Per-tunnel counters cover the tunnels that exist at the end; the port counts all.)
    let sent = stats["ports"][0]["tx_packets"].as_u64().unwrap();
    assert_eq!(
        sent as usize,
        packets.len(),
        "the capture holds every packet sent"
    );
}
