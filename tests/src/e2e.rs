//! The end-to-end lab and harness shared by the tests that run the real binary on
//! `net_pcap` ports (tests/tests/appliance_e2e.rs, tests/tests/hostile_corpus.rs).
//!
//! - The lab: two ports, six tunnels, a few routes ([`PORTS`], [`TUNNELS`], [`ROUTES`]);
//!   [`lab_toml`] writes the configuration, [`lab_json`] what a scapy generator needs.
//! - Running: a generator in tests/data writes the input captures and prints one expected
//!   outcome per packet ([`generate`]); [`run_backbone`] forwards them until idle and
//!   returns the JSON counters (and fails on a crash, a non-zero exit, or mbufs still in use
//!   at exit); [`dissect`] reads what it sent with scapy.
//! - Checking: [`check_outputs`] compares every output packet with the flow it came from
//!   and the egress tunnel's policy (and ARP replies with the requests they answer);
//!   [`check_counters`] compares the counters, drop reason by drop reason.
//!
//! # The generator's manifest
//!
//! One JSON object per input packet, in capture order: `id` (the flow id written into the
//! packet as `flow=NNNNNN;`, or null), `capture`, `expect` (`fwd`, `drop:<reason>`,
//! `punt:<reason>`), `ingress` (the tunnel the packet arrives through, if it gets that
//! far), `egress` and `inner_hex` for `fwd`, `events`, and for ARP (`punt:arp`) an `arp`
//! object: `reply` (whether we answer), `learned` (whether the worker hands the sender to
//! the control thread), `port`, `mac` and `ip` (the sender), `target` (the address asked
//! for).

use crate::{backbone_bin, file_prefix, repo_root, PYTHON};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

// ---------------------------------------------------------------------------------------
// The lab: one source of truth for the configuration, the generator and the checks.

#[derive(Debug)]
pub struct PortDef {
    pub name: &'static str,
    pub device: &'static str,
    pub roles: &'static [&'static str],
    pub mac: &'static str,
    pub addr: &'static str,
    pub mtu: u16,
    pub neighbors: &'static [(&'static str, &'static str)],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ttl {
    /// Not written in the file: the default, 64.
    Default,
    Fixed(u8),
    Inherit,
}

#[derive(Debug)]
pub struct TunnelDef {
    pub name: &'static str,
    pub gre: bool,
    pub local: &'static str,
    pub remote: &'static str,
    pub port: &'static str,
    pub key: Option<u32>,
    pub sequence: bool,
    pub checksum: bool,
    pub ttl: Ttl,
    /// `None`: not written (the default, copy); `Some(None)`: "copy"; `Some(Some(d))`: fixed.
    pub dscp: Option<Option<u8>>,
    pub df_copy: bool,
    pub mtu: Option<u16>,
    pub next_hop: Option<&'static str>,
    pub prefixes: &'static [&'static str],
    pub extra_sources: &'static [&'static str],
}

pub const UPSTREAM: &str = "203.0.113.254";

pub const PORTS: &[PortDef] = &[
    PortDef {
        name: "client0",
        device: "net_pcap0",
        roles: &["client"],
        mac: "02:00:00:00:00:01",
        addr: "192.0.2.1",
        mtu: 1500,
        neighbors: &[
            ("198.51.100.10", "02:00:00:00:0a:0a"),
            ("198.51.100.20", "02:00:00:00:0b:0b"),
            ("198.51.100.30", "02:00:00:00:0c:0c"),
            ("198.51.100.40", "02:00:00:00:0d:0d"),
        ],
    },
    PortDef {
        name: "internet0",
        device: "net_pcap1",
        roles: &["core", "internet"],
        mac: "02:00:00:00:01:01",
        addr: "203.0.113.1",
        mtu: 1400,
        neighbors: &[
            (UPSTREAM, "02:00:00:00:fe:fe"),
            ("203.0.113.50", "02:00:00:00:e2:e2"),
        ],
    },
];

pub const TUNNELS: &[TunnelDef] = &[
    // GRE with a key, every policy left at its default.
    TunnelDef {
        name: "acme",
        gre: true,
        local: "192.0.2.1",
        remote: "198.51.100.10",
        port: "client0",
        key: Some(100),
        sequence: false,
        checksum: false,
        ttl: Ttl::Default,
        dscp: None,
        df_copy: false,
        mtu: None,
        next_hop: None,
        prefixes: &["10.1.0.0/16"],
        // The second holds bravo's router: a source that would loop into bravo's tunnel.
        extra_sources: &["192.168.10.0/24", "198.51.100.16/28"],
    },
    // GRE without a key: outer TTL from the inner packet, fixed DSCP, DF copied.
    TunnelDef {
        name: "bravo",
        gre: true,
        local: "192.0.2.1",
        remote: "198.51.100.20",
        port: "client0",
        key: None,
        sequence: false,
        checksum: false,
        ttl: Ttl::Inherit,
        dscp: Some(Some(46)),
        df_copy: true,
        mtu: None,
        next_hop: None,
        prefixes: &["10.2.0.0/16"],
        extra_sources: &[],
    },
    // GRE with key, sequence numbers and checksum.
    TunnelDef {
        name: "globex",
        gre: true,
        local: "192.0.2.1",
        remote: "198.51.100.30",
        port: "client0",
        key: Some(300),
        sequence: true,
        checksum: true,
        ttl: Ttl::Fixed(200),
        dscp: Some(None),
        df_copy: false,
        mtu: None,
        next_hop: None,
        prefixes: &["10.3.0.0/16"],
        extra_sources: &[],
    },
    // IP in IP with a smaller MTU than its port's.
    TunnelDef {
        name: "initech",
        gre: false,
        local: "192.0.2.1",
        remote: "198.51.100.40",
        port: "client0",
        key: None,
        sequence: false,
        checksum: false,
        ttl: Ttl::Default,
        dscp: Some(Some(10)),
        df_copy: true,
        mtu: Some(1000),
        next_hop: None,
        prefixes: &["10.4.0.0/16"],
        extra_sources: &[],
    },
    // A next hop without a static neighbour: nobody answers ARP in a pcap lab.
    TunnelDef {
        name: "nonbr",
        gre: true,
        local: "192.0.2.1",
        remote: "198.51.100.50",
        port: "client0",
        key: Some(500),
        sequence: false,
        checksum: false,
        ttl: Ttl::Default,
        dscp: None,
        df_copy: false,
        mtu: None,
        next_hop: Some("198.51.100.99"),
        prefixes: &["10.5.0.0/16"],
        extra_sources: &[],
    },
    // Another edge router across the core, from our core/internet port's address.
    TunnelDef {
        name: "edge2",
        gre: true,
        local: "203.0.113.1",
        remote: "203.0.113.50",
        port: "internet0",
        key: Some(900),
        sequence: false,
        checksum: true,
        ttl: Ttl::Fixed(255),
        dscp: None,
        df_copy: false,
        mtu: None,
        next_hop: None,
        prefixes: &["10.9.0.0/16"],
        extra_sources: &[],
    },
];

/// Routes besides the tunnels' prefixes. No default route: "no route at all" must be
/// reachable.
pub const ROUTES: &str = r#"
[[route]]                       # the other edge router's clients
prefix = "10.8.0.0/16"
tunnel = "edge2"

[[route]]
prefix = "172.16.0.0/12"
port = "internet0"
next_hop = "203.0.113.254"

[[route]]                       # the client routers' addresses, natively
prefix = "198.51.100.0/24"
port = "internet0"
next_hop = "203.0.113.254"

[[route]]
prefix = "10.66.0.0/16"
blackhole = true
"#;

impl TunnelDef {
    /// The outer headers this tunnel writes: IPv4, and GRE with its options.
    pub fn headers(&self) -> u16 {
        let opts =
            u16::from(self.key.is_some()) + u16::from(self.sequence) + u16::from(self.checksum);
        20 + if self.gre { 4 + 4 * opts } else { 0 }
    }

    /// The largest inner packet the tunnel carries.
    pub fn inner_mtu(&self) -> u16 {
        self.mtu.unwrap_or(port(self.port).mtu) - self.headers()
    }
}

/// The lab port named `name`.
pub fn port(name: &str) -> &'static PortDef {
    PORTS.iter().find(|p| p.name == name).expect("a lab port")
}

/// The lab tunnel named `name`.
pub fn tunnel(name: &str) -> &'static TunnelDef {
    TUNNELS
        .iter()
        .find(|t| t.name == name)
        .expect("a lab tunnel")
}

/// The static neighbour MAC of `ip` on port `port_name`, if the lab has one.
pub fn neighbor_mac(port_name: &str, ip: &str) -> Option<&'static str> {
    port(port_name)
        .neighbors
        .iter()
        .find(|(n, _)| *n == ip)
        .map(|(_, m)| *m)
}

/// `items` as a TOML array body: `"a", "b"`.
pub fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The configuration file. `vdevs[i]` are the net_pcap arguments of PORTS[i].
pub fn lab_toml(
    tag: &str,
    lcores: &str,
    workers: &[u32],
    rx_queues: u16,
    vdevs: &[&str],
) -> String {
    let mut eal = vec![
        "--no-huge".to_owned(),
        "--no-pci".into(),
        "--no-shconf".into(),
        "-m".into(),
        "256".into(),
        lcores.into(),
        format!("--file-prefix={}", file_prefix(tag)),
        "--log-level=lib.eal:error".into(),
    ];
    for (p, v) in PORTS.iter().zip(vdevs) {
        eal.push(format!("--vdev={},{v}", p.device));
    }
    let eal: Vec<&str> = eal.iter().map(String::as_str).collect();
    let mut s = format!(
        "[eal]\nargs = [{}]\n\n[workers]\nlcores = {workers:?}\n",
        quoted(&eal)
    );
    for p in PORTS {
        s += &format!(
            "\n[[port]]\nname = {:?}\ndevice = {:?}\nroles = [{}]\nmac = {:?}\naddresses = [{:?}]\nmtu = {}\n",
            p.name,
            p.device,
            quoted(p.roles),
            p.mac,
            p.addr,
            p.mtu
        );
        if p.name == "client0" {
            s += &format!("rx_queues = {rx_queues}\n");
        }
        for (ip, mac) in p.neighbors {
            s += &format!("  [[port.neighbor]]\n  ip = {ip:?}\n  mac = {mac:?}\n");
        }
    }
    for t in TUNNELS {
        s += &format!(
            "\n[[tunnel]]\nname = {:?}\nmode = {:?}\nlocal = {:?}\nremote = {:?}\nport = {:?}\nprefixes = [{}]\n",
            t.name,
            if t.gre { "gre" } else { "ipip" },
            t.local,
            t.remote,
            t.port,
            quoted(t.prefixes)
        );
        if !t.extra_sources.is_empty() {
            s += &format!("extra_sources = [{}]\n", quoted(t.extra_sources));
        }
        if let Some(k) = t.key {
            s += &format!("key = {k}\n");
        }
        if t.sequence {
            s += "sequence = true\n";
        }
        if t.checksum {
            s += "checksum = true\n";
        }
        match t.ttl {
            Ttl::Default => {}
            Ttl::Fixed(v) => s += &format!("ttl = {v}\n"),
            Ttl::Inherit => s += "ttl = \"inherit\"\n",
        }
        match t.dscp {
            None => {}
            Some(None) => s += "dscp = \"copy\"\n",
            Some(Some(d)) => s += &format!("dscp = {d}\n"),
        }
        if t.df_copy {
            s += "df = \"copy\"\n";
        }
        if let Some(m) = t.mtu {
            s += &format!("mtu = {m}\n");
        }
        if let Some(nh) = t.next_hop {
            s += &format!("next_hop = {nh:?}\n");
        }
    }
    // Every ICMP error the rules allow is sent: a rate limit would make what the captures
    // hold depend on timing (the pipeline tests check the limit on a simulated clock).
    s + ROUTES + "\n[icmp]\nrate = 10000000\nburst = 10000000\n"
}

/// What the traffic generator needs to know about the lab.
pub fn lab_json(captures: &[(&str, &str)]) -> String {
    let ports: serde_json::Map<String, Value> = PORTS
        .iter()
        .map(|p| {
            (
                p.name.to_owned(),
                json!({"mac": p.mac, "addr": p.addr, "mtu": p.mtu,
                       "upstream_mac": neighbor_mac(p.name, UPSTREAM)}),
            )
        })
        .collect();
    let tunnels: serde_json::Map<String, Value> = TUNNELS
        .iter()
        .map(|t| {
            let net = t.prefixes[0]
                .split('.')
                .take(2)
                .collect::<Vec<_>>()
                .join(".");
            (
                t.name.to_owned(),
                json!({
                    "mode": if t.gre { "gre" } else { "ipip" },
                    "local": t.local, "remote": t.remote, "port": t.port,
                    "key": t.key, "sequence": t.sequence, "checksum": t.checksum,
                    "mac": neighbor_mac(t.port, t.remote).unwrap_or("02:00:00:00:99:99"),
                    "net": net,
                    "inner_mtu": t.inner_mtu(),
                }),
            )
        })
        .collect();
    let captures: serde_json::Map<String, Value> = captures
        .iter()
        .map(|(f, p)| ((*f).to_owned(), json!(p)))
        .collect();
    json!({"ports": ports, "tunnels": tunnels, "captures": captures}).to_string()
}

// ---------------------------------------------------------------------------------------
// Running the generator, the binary and the dissector.

/// Run `tests/data/<script>` with Debian's python (scapy); its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg(repo_root().join("tests/data").join(script))
        .args(args)
        .output()
        .expect("run /usr/bin/python3 with scapy (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// One expected outcome per input packet, from the generator.
#[derive(Debug)]
pub struct Expected {
    pub id: Option<u64>,
    pub capture: String,
    pub expect: String,
    pub ingress: Option<String>,
    pub egress: Option<String>,
    pub inner_hex: Option<String>,
    pub events: Vec<String>,
    /// For ARP packets handed to the ARP handler (`punt:arp`).
    pub arp: Option<ArpExpect>,
    /// For drops SPEC.md answers with an ICMP error: what it must be.
    pub icmp: Option<IcmpExpect>,
    /// For echo requests to our addresses: the reply (`quote_hex` holds the identifier,
    /// sequence number and data it echoes; type, code and MTU are unused).
    pub echo: Option<IcmpExpect>,
    /// For a genuine ICMP Fragmentation Needed from the underlay (`punt:pmtu`) that lowers
    /// a tunnel's MTU: the tunnel, and the MTU it must have at most from then on.
    pub pmtu: Option<(String, u16)>,
}

/// The ICMP error a dropped packet must get (tests/data/spec_icmp.py writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpExpect {
    pub icmp_type: u8,
    pub code: u8,
    /// The next-hop MTU of a Fragmentation Needed; 0 otherwise.
    pub mtu: u16,
    /// The ingress tunnel's name, or `native:<port>`.
    pub via: String,
    /// For `native:`, the frame's sender, to which the error goes.
    pub mac: Option<String>,
    /// Our address facing the sender.
    pub src: String,
    /// The offending packet's source.
    pub dst: String,
    /// What the error quotes.
    pub quote_hex: String,
}

/// What must become of an ARP packet that reaches the ARP handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpExpect {
    /// Answered: a reply leaves on the port it came in on.
    pub reply: bool,
    /// The sender is a next hop the tables want, at another MAC than the one they have:
    /// the worker queues it for the control thread (static neighbours still win there).
    pub learned: bool,
    pub port: String,
    /// Sender MAC and IPv4 address.
    pub mac: String,
    pub ip: String,
    /// The address asked for.
    pub target: String,
}

/// Run `tests/data/<script> DIR LAB_JSON SCENARIO`: it writes the input captures into
/// `dir` and prints the manifest (see the module documentation).
pub fn generate(
    script: &str,
    dir: &Path,
    captures: &[(&str, &str)],
    scenario: &str,
) -> Vec<Expected> {
    let text = python(
        script,
        &[
            dir.to_str().expect("UTF-8 path"),
            &lab_json(captures),
            scenario,
        ],
    );
    let v: Value = serde_json::from_str(&text).expect("generator JSON");
    let s = |p: &Value, k: &str| p[k].as_str().map(str::to_owned);
    v["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| Expected {
            id: p["id"].as_u64(),
            capture: s(p, "capture").expect("capture"),
            expect: s(p, "expect").expect("expect"),
            ingress: s(p, "ingress"),
            egress: s(p, "egress"),
            inner_hex: s(p, "inner_hex"),
            events: p["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e.as_str().expect("event name").to_owned())
                .collect(),
            arp: p.get("arp").filter(|a| a.is_object()).map(|a| ArpExpect {
                reply: a["reply"].as_bool().expect("arp.reply"),
                learned: a["learned"].as_bool().expect("arp.learned"),
                port: s(a, "port").expect("arp.port"),
                mac: s(a, "mac").expect("arp.mac"),
                ip: s(a, "ip").expect("arp.ip"),
                target: s(a, "target").expect("arp.target"),
            }),
            icmp: p.get("icmp").filter(|i| i.is_object()).map(|i| {
                let n = |k: &str| i[k].as_u64().unwrap_or_else(|| panic!("icmp.{k}"));
                IcmpExpect {
                    icmp_type: n("type") as u8,
                    code: n("code") as u8,
                    mtu: n("mtu") as u16,
                    via: s(i, "via").expect("icmp.via"),
                    mac: s(i, "mac"),
                    src: s(i, "src").expect("icmp.src"),
                    dst: s(i, "dst").expect("icmp.dst"),
                    quote_hex: s(i, "quote_hex").expect("icmp.quote_hex"),
                }
            }),
            echo: p.get("echo").filter(|i| i.is_object()).map(|i| IcmpExpect {
                icmp_type: 0,
                code: 0,
                mtu: 0,
                via: s(i, "via").expect("echo.via"),
                mac: s(i, "mac"),
                src: s(i, "src").expect("echo.src"),
                dst: s(i, "dst").expect("echo.dst"),
                quote_hex: s(i, "data_hex").expect("echo.data_hex"),
            }),
            pmtu: p.get("pmtu").filter(|m| m.is_object()).map(|m| {
                (
                    s(m, "tunnel").expect("pmtu.tunnel"),
                    m["mtu"].as_u64().expect("pmtu.mtu") as u16,
                )
            }),
        })
        .collect()
}

/// What the binary logs at warn level when mbufs are still out of their pools at exit
/// (dataplane/src/dpdk/eal.rs): a leak.
pub const MBUF_LEAK_LOG: &str = "mbufs are still in use";

/// `backbone run` in `dir` until the input is idle; the JSON counters. Fails if the
/// process crashes or exits non-zero, or if the mempool is not back to its starting level
/// at exit (every mbuf returned: nothing leaked on any path).
pub fn run_backbone(dir: &Path, config: &str) -> Value {
    run_backbone_logged(dir, config).0
}

/// [`run_backbone`], also returning what the binary logged (stderr, `RUST_LOG=warn`).
pub fn run_backbone_logged(dir: &Path, config: &str) -> (Value, String) {
    std::fs::write(dir.join("lab.toml"), config).unwrap();
    let out = Command::new(backbone_bin())
        .current_dir(dir)
        .args(["run", "--config", "lab.toml", "--no-control-socket"])
        .args(["--stop-when-idle", "500", "--stats", "stats.json"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run backbone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "backbone run failed ({}): {}\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
    assert!(
        !stderr.contains(MBUF_LEAK_LOG),
        "mbufs leaked (the mempool did not return to its starting level): {stderr}"
    );
    assert!(!stderr.contains("panicked"), "a thread panicked: {stderr}");
    let stats = serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap())
        .expect("stats JSON");
    (stats, stderr.into_owned())
}

/// Every packet of the named captures (in `dir`), dissected.
pub fn dissect(dir: &Path, files: &[&str]) -> Vec<Value> {
    let paths: Vec<String> = files
        .iter()
        .map(|f| dir.join(f).to_str().expect("UTF-8 path").to_owned())
        .collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    python("e2e_dissect.py", &args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("dissector JSON"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The checks.

/// An output capture: the port it belongs to, and whether a worker (not the control
/// thread) sends on it.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub file: &'static str,
    pub port: &'static str,
    pub worker: bool,
}

/// The lab's four captures: each port's worker TX and control-thread TX.
pub const LAB_OUTPUTS: [Output; 4] = [
    Output {
        file: "client-out.pcap",
        port: "client0",
        worker: true,
    },
    Output {
        file: "client-ctl.pcap",
        port: "client0",
        worker: false,
    },
    Output {
        file: "inet-out.pcap",
        port: "internet0",
        worker: true,
    },
    Output {
        file: "inet-ctl.pcap",
        port: "internet0",
        worker: false,
    },
];

/// Dissect `outputs` (in `dir`), check every packet against `expected` and the counters
/// of `stats` against both; returns the dissected packets for further checks.
pub fn check_run(
    dir: &Path,
    stats: &Value,
    expected: &[Expected],
    outputs: &[Output],
    captures: &[(&str, &str)],
) -> Vec<Value> {
    let files: Vec<&str> = outputs.iter().map(|o| o.file).collect();
    let packets = dissect(dir, &files);
    let sent = check_outputs(expected, outputs, &packets);
    check_counters(stats, expected, &sent, captures);
    check_accounting(stats);
    packets
}

/// Every packet a worker received was forwarded, dropped or punted, exactly once; what
/// the workers forwarded (and the ARP replies and ICMP errors they sent) was taken by TX,
/// refused by it, or found no TX queue.
pub fn check_accounting(stats: &Value) {
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("counter {k}: {v}"));
    let workers = stats["workers"].as_array().expect("workers");
    let (mut forwarded, mut replies, mut handed) = (0, 0, 0);
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(
            n(w, "rx_packets"),
            n(w, "forwarded") + n(w, "dropped") + n(w, "punted"),
            "worker {i}: received = forwarded + dropped + punted: {w}"
        );
        forwarded += n(w, "forwarded");
        replies += n(w, "arp_replies") + n(w, "icmp_sent") + n(w, "echo_replies");
        handed += n(w, "tx_packets") + n(w, "tx_dropped") + n(w, "tx_no_queue");
    }
    assert_eq!(
        forwarded + replies,
        handed,
        "forwarded, ARP replies and ICMP errors = TX taken, refused, or no queue"
    );
    let rx: u64 = stats["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| n(p, "pipeline_rx_packets"))
        .sum();
    let wrx: u64 = workers.iter().map(|w| n(w, "rx_packets")).sum();
    assert_eq!(rx, wrx, "the ports' receive counts are the workers'");
}

/// Bytes from a hex string.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// What the outputs held, for the counter checks.
#[derive(Debug, Default)]
pub struct Sent {
    /// Forwarded packets per egress port.
    pub forwarded: HashMap<&'static str, u64>,
    /// ICMP errors per port they left by.
    pub icmp_port: HashMap<&'static str, u64>,
    /// ICMP errors per tunnel they went into.
    pub icmp_tunnel: HashMap<&'static str, u64>,
}

/// The one's complement sum of `data` folded to 16 bits (RFC 1071), written here apart
/// from the router's own.
fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(c.get(1).copied().unwrap_or(0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Check every output packet against the flow it came from and the egress policy; every
/// forwarded flow and every ICMP error the manifest expects must appear exactly once.
pub fn check_outputs(expected: &[Expected], outputs: &[Output], packets: &[Value]) -> Sent {
    let mut sent = Sent::default();
    let mut icmp_seen: HashMap<u64, String> = HashMap::new();
    let by_id: HashMap<u64, &Expected> = expected
        .iter()
        .filter_map(|e| e.id.map(|id| (id, e)))
        .collect();
    let mut seen: HashMap<u64, String> = HashMap::new();
    // tunnel -> file -> sequence numbers in output order
    let mut seqs: BTreeMap<&str, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    // file -> outer IPv4 identifications we wrote
    let mut idents: HashMap<String, HashSet<u64>> = HashMap::new();
    // ARP replies still to see: (port, asker MAC, asker IP, address asked for) -> count
    let mut replies: HashMap<(&str, &str, &str, &str), u64> = HashMap::new();
    for a in expected
        .iter()
        .filter_map(|e| e.arp.as_ref())
        .filter(|a| a.reply)
    {
        *replies
            .entry((&a.port, &a.mac, &a.ip, &a.target))
            .or_default() += 1;
    }
    for p in packets {
        let file = p["file"].as_str().unwrap();
        let out = outputs
            .iter()
            .find(|o| o.file == file)
            .expect("a known output capture");
        let at = format!("{file}#{}: {p}", p["index"]);
        if !out.worker {
            // The control thread's queue: ARP requests for unresolved next hops only.
            let pd = port(out.port);
            assert_eq!(
                p["eth_type"], 0x0806,
                "control queue sent a non-ARP packet {at}"
            );
            assert_eq!(p["eth_src"], pd.mac, "{at}");
            assert_eq!(p["eth_dst"], "ff:ff:ff:ff:ff:ff", "{at}");
            assert_eq!(p["arp"]["op"], 1, "{at}");
            assert_eq!(p["arp"]["hwsrc"], pd.mac, "{at}");
            assert_eq!(p["arp"]["psrc"], pd.addr, "{at}");
            let unresolved: Vec<&str> = TUNNELS
                .iter()
                .filter(|t| t.port == out.port)
                .map(|t| t.next_hop.unwrap_or(t.remote))
                .filter(|nh| neighbor_mac(out.port, nh).is_none())
                .collect();
            assert!(
                unresolved.iter().any(|nh| p["arp"]["pdst"] == *nh),
                "ARP request for a next hop without a neighbour ({unresolved:?}) {at}"
            );
            continue;
        }
        if p["eth_type"] == 0x0806 {
            // A worker's ARP reply, in place of the request it answers.
            let pd = port(out.port);
            let (mac, ip, target) = (
                p["eth_dst"].as_str().unwrap_or(""),
                p["arp"]["pdst"].as_str().unwrap_or(""),
                p["arp"]["psrc"].as_str().unwrap_or(""),
            );
            let left = replies
                .get_mut(&(out.port, mac, ip, target))
                .filter(|n| **n > 0)
                .unwrap_or_else(|| panic!("an ARP reply nobody asked for {at}"));
            *left -= 1;
            assert_eq!(p["eth_src"], pd.mac, "ARP reply from the port's MAC {at}");
            assert_eq!(p["arp"]["op"], 2, "{at}");
            assert_eq!(
                p["arp"]["hwsrc"], pd.mac,
                "ARP reply names the port's MAC {at}"
            );
            assert_eq!(
                p["len"], 60,
                "ARP reply padded to the Ethernet minimum {at}"
            );
            continue;
        }
        let id = p["flow"]
            .as_u64()
            .unwrap_or_else(|| panic!("output without a flow id {at}"));
        let e = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("flow {id} was never sent {at}"));
        let inner = hex(p["inner_hex"].as_str().unwrap_or(""));
        let ours = |a: &[u8]| {
            PORTS
                .iter()
                .any(|pd| pd.addr.parse::<std::net::Ipv4Addr>().unwrap().octets() == a)
        };
        if inner.len() >= 28 && inner[9] == 1 && ours(&inner[12..16]) && inner[20] == 0 {
            // Our echo reply to flow `id`.
            let want = e
                .echo
                .as_ref()
                .unwrap_or_else(|| panic!("an echo reply to flow {id} ({}) {at}", e.expect));
            if let Some(first) = icmp_seen.insert(id, at.clone()) {
                panic!("two answers to flow {id}: {first}\nand {at}");
            }
            check_icmp_output(p, out, want, &inner, &at, &mut seqs, &mut sent);
            continue;
        }
        if inner.len() >= 28 && inner[9] == 1 && ours(&inner[12..16]) {
            // Our ICMP error about flow `id`.
            let want = e
                .icmp
                .as_ref()
                .unwrap_or_else(|| panic!("an ICMP error about flow {id} ({}) {at}", e.expect));
            if let Some(first) = icmp_seen.insert(id, at.clone()) {
                panic!("two ICMP errors about flow {id}: {first}\nand {at}");
            }
            check_icmp_output(p, out, want, &inner, &at, &mut seqs, &mut sent);
            continue;
        }
        assert_eq!(
            e.expect, "fwd",
            "flow {id} (expected {}) was forwarded {at}",
            e.expect
        );
        if let Some(first) = seen.insert(id, at.clone()) {
            panic!("flow {id} sent twice: {first}\nand {at}");
        }
        let egress = e.egress.as_deref().unwrap();
        let want_hex = e.inner_hex.as_deref().unwrap();
        let want_inner = hex(want_hex);
        let outer = &p["outer"];
        assert_eq!(p["eth_type"], 0x0800, "{at}");
        assert_eq!(outer["chksum_ok"], true, "outer IPv4 checksum {at}");
        assert_eq!(p["inner_chksum_ok"], true, "inner IPv4 checksum {at}");
        assert_eq!(outer["version"], 4, "{at}");
        assert_eq!(
            p["len"].as_u64().unwrap(),
            14 + outer["len"].as_u64().unwrap(),
            "frame is Ethernet + IPv4 total length, nothing after {at}"
        );
        assert_eq!(
            p["inner_hex"].as_str().unwrap_or(""),
            want_hex,
            "inner packet: the input's, TTL - 1, ECN per RFC 6040, checksum {at}"
        );
        if let Some(native) = egress.strip_prefix("native:") {
            // Sent as it is (TTL decremented) to the upstream router.
            let pd = port(native);
            assert_eq!(out.port, native, "flow {id} left on the wrong port {at}");
            assert_eq!(p["eth_src"], pd.mac, "{at}");
            assert_eq!(
                p["eth_dst"],
                neighbor_mac(native, UPSTREAM).unwrap(),
                "{at}"
            );
            assert!(p.get("gre").is_none(), "{at}");
            *sent.forwarded.entry(pd.name).or_default() += 1;
            continue;
        }
        if let Some(name) = egress.strip_prefix("reflect:") {
            // A keepalive, sent as it is (TTL decremented) back to the tunnel's router.
            let t = tunnel(name);
            let pd = port(t.port);
            assert_eq!(out.port, t.port, "flow {id} left on the wrong port {at}");
            assert_eq!(p["eth_src"], pd.mac, "{at}");
            let nh = t.next_hop.unwrap_or(t.remote);
            assert_eq!(p["eth_dst"], neighbor_mac(t.port, nh).unwrap(), "{at}");
            assert_eq!(outer["src"], t.local, "{at}");
            assert_eq!(outer["dst"], t.remote, "{at}");
            assert_eq!(p["gre"]["proto"], 0, "{at}");
            *sent.forwarded.entry(pd.name).or_default() += 1;
            continue;
        }
        let t = tunnel(egress);
        let pd = port(t.port);
        assert_eq!(out.port, t.port, "flow {id} left on the wrong port {at}");
        assert_eq!(
            p["eth_src"], pd.mac,
            "Ethernet source: the egress port's MAC {at}"
        );
        let nh = t.next_hop.unwrap_or(t.remote);
        assert_eq!(
            p["eth_dst"],
            neighbor_mac(t.port, nh).unwrap(),
            "Ethernet destination: the next hop's MAC {at}"
        );
        // Outer IPv4, from the tunnel's policy and the inner header as sent on.
        let (in_tos, in_ttl, in_df) = (want_inner[1], want_inner[8], want_inner[6] & 0x40 != 0);
        let gre_len = if t.gre {
            4 + 4 * (u64::from(t.key.is_some()) + u64::from(t.sequence) + u64::from(t.checksum))
        } else {
            0
        };
        assert_eq!(outer["ihl"], 5, "{at}");
        assert_eq!(outer["src"], t.local, "{at}");
        assert_eq!(outer["dst"], t.remote, "{at}");
        assert_eq!(outer["proto"], if t.gre { 47 } else { 4 }, "{at}");
        assert_eq!(
            outer["len"].as_u64().unwrap(),
            20 + gre_len + want_inner.len() as u64,
            "{at}"
        );
        let want_ttl = match t.ttl {
            Ttl::Default => 64,
            Ttl::Fixed(v) => v,
            Ttl::Inherit => in_ttl,
        };
        assert_eq!(outer["ttl"], want_ttl, "outer TTL per tunnel policy {at}");
        let dscp = match t.dscp {
            None | Some(None) => in_tos >> 2,
            Some(Some(d)) => d,
        };
        assert_eq!(
            outer["tos"],
            (dscp << 2) | (in_tos & 3),
            "outer DSCP per policy, ECN copied from the inner (RFC 6040 normal mode) {at}"
        );
        assert_eq!(
            outer["df"],
            if t.df_copy { in_df } else { true },
            "DF per policy {at}"
        );
        assert_eq!(outer["mf"], false, "{at}");
        assert_eq!(outer["reserved"], false, "{at}");
        assert_eq!(outer["frag"], 0, "{at}");
        assert!(
            idents
                .entry(file.to_owned())
                .or_default()
                .insert(outer["id"].as_u64().unwrap()),
            "outer identification repeated on one TX queue {at}"
        );
        if t.gre {
            let g = &p["gre"];
            assert_eq!(g["c"], u64::from(t.checksum), "GRE C {at}");
            assert_eq!(g["k"], u64::from(t.key.is_some()), "GRE K {at}");
            assert_eq!(g["s"], u64::from(t.sequence), "GRE S {at}");
            for zero in ["r", "strict", "recursion", "flags", "version"] {
                assert_eq!(g[zero], 0, "GRE {zero} {at}");
            }
            assert_eq!(g["proto"], 0x0800, "{at}");
            assert_eq!(g["key"], json!(t.key), "GRE key {at}");
            if t.checksum {
                assert_eq!(g["chksum_ok"], true, "GRE checksum {at}");
                assert_eq!(g["reserved1"], 0, "{at}");
            }
            if t.sequence {
                seqs.entry(t.name)
                    .or_default()
                    .entry(file.to_owned())
                    .or_default()
                    .push(g["seq"].as_u64().unwrap());
            }
        } else {
            assert!(p.get("gre").is_none(), "{at}");
        }
        *sent.forwarded.entry(pd.name).or_default() += 1;
    }
    let missing: Vec<&Expected> = expected
        .iter()
        .filter(|e| e.expect == "fwd" && !seen.contains_key(&e.id.unwrap()))
        .collect();
    assert!(missing.is_empty(), "forwarded flows missing: {missing:#?}");
    let missing: Vec<&Expected> = expected
        .iter()
        .filter(|e| {
            (e.icmp.is_some() || e.echo.is_some())
                && !icmp_seen.contains_key(&e.id.expect("a flow id"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ICMP errors or echo replies missing: {missing:#?}"
    );
    replies.retain(|_, n| *n > 0);
    assert!(replies.is_empty(), "ARP replies missing: {replies:?}");
    // Sequence numbers: increasing on each TX queue, and over all of them every number
    // once, none skipped (every packet that got one was sent).
    for (name, files) in &seqs {
        let mut all = Vec::new();
        for (file, s) in files {
            assert!(
                s.windows(2).all(|w| w[1] > w[0]),
                "{name}: sequence numbers increase in {file}: {s:?}"
            );
            all.extend_from_slice(s);
        }
        all.sort_unstable();
        assert!(
            all.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: every sequence number once: {all:?}"
        );
    }
    sent
}

/// One of our ICMP errors (`inner`: its IPv4 datagram) against what it must be: SPEC.md's
/// fields, the quote, both checksums, and the way back (the ingress tunnel's policy, or the
/// frame's sender on the ingress port).
fn check_icmp_output(
    p: &Value,
    out: &Output,
    want: &IcmpExpect,
    inner: &[u8],
    at: &str,
    seqs: &mut BTreeMap<&str, BTreeMap<String, Vec<u64>>>,
    sent: &mut Sent,
) {
    let addr = |b: &[u8]| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
    // An echo reply (type 0), or an error.
    let echo = want.icmp_type == 0;
    assert_eq!(
        p["inner_chksum_ok"], true,
        "ICMP error's IPv4 checksum {at}"
    );
    assert_eq!(inner[0], 0x45, "IPv4, no options {at}");
    if !echo {
        assert_eq!(inner[1], 0xc0, "DSCP CS6 {at}");
    }
    assert_eq!(
        usize::from(u16::from_be_bytes([inner[2], inner[3]])),
        inner.len(),
        "{at}"
    );
    assert_eq!(&inner[6..8], &[0, 0], "not a fragment, DF clear {at}");
    assert_eq!(inner[8], 64, "TTL 64 {at}");
    assert_eq!(
        addr(&inner[12..16]),
        want.src,
        "from our address facing the sender {at}"
    );
    assert_eq!(
        addr(&inner[16..20]),
        want.dst,
        "to the offending packet's source {at}"
    );
    let icmp = &inner[20..];
    assert!(icmp.len() + 20 <= 576, "at most 576 bytes {at}");
    assert_eq!(
        (icmp[0], icmp[1]),
        (want.icmp_type, want.code),
        "type and code {at}"
    );
    assert_eq!(ones_sum(icmp), 0xffff, "ICMP checksum {at}");
    if echo {
        assert_eq!(
            hex_of(&icmp[4..]),
            want.quote_hex,
            "the echo: identifier, sequence number and data {at}"
        );
    } else {
        let rest: [u8; 4] = [0, 0, (want.mtu >> 8) as u8, want.mtu as u8];
        assert_eq!(&icmp[4..8], &rest, "unused, next-hop MTU {at}");
        assert_eq!(
            hex_of(&icmp[8..]),
            want.quote_hex,
            "the quote: the packet as it arrived, cut to fit {at}"
        );
    }
    let outer = &p["outer"];
    if let Some(native) = want.via.strip_prefix("native:") {
        let pd = port(native);
        assert_eq!(out.port, native, "back out of the port it came in on {at}");
        assert_eq!(p["eth_src"], pd.mac, "{at}");
        assert_eq!(
            p["eth_dst"].as_str(),
            want.mac.as_deref(),
            "to the frame's sender {at}"
        );
        assert!(p.get("gre").is_none(), "{at}");
        *sent.icmp_port.entry(pd.name).or_default() += 1;
        return;
    }
    let t = tunnel(&want.via);
    let pd = port(t.port);
    assert_eq!(out.port, t.port, "back into the ingress tunnel's port {at}");
    assert_eq!(p["eth_src"], pd.mac, "{at}");
    let nh = t.next_hop.unwrap_or(t.remote);
    assert_eq!(p["eth_dst"], neighbor_mac(t.port, nh).unwrap(), "{at}");
    assert_eq!(outer["chksum_ok"], true, "{at}");
    assert_eq!(outer["src"], t.local, "{at}");
    assert_eq!(outer["dst"], t.remote, "{at}");
    assert_eq!(outer["proto"], if t.gre { 47 } else { 4 }, "{at}");
    if t.gre {
        let g = &p["gre"];
        assert_eq!(
            g["key"].as_u64(),
            t.key.map(u64::from),
            "the tunnel's key {at}"
        );
        assert_eq!(g["s"], u64::from(t.sequence), "{at}");
        assert_eq!(g["c"], u64::from(t.checksum), "{at}");
        if t.checksum {
            assert_eq!(g["chksum_ok"], true, "GRE checksum {at}");
        }
        if t.sequence {
            let file = p["file"].as_str().unwrap().to_owned();
            seqs.entry(t.name)
                .or_default()
                .entry(file)
                .or_default()
                .push(g["seq"].as_u64().unwrap());
        }
    }
    *sent.icmp_port.entry(pd.name).or_default() += 1;
    *sent.icmp_tunnel.entry(t.name).or_default() += 1;
}

/// Lower-case hex of `b`.
pub fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How many expectations match `pred`.
pub fn count(expected: &[Expected], pred: impl Fn(&Expected) -> bool) -> u64 {
    expected.iter().filter(|e| pred(e)).count() as u64
}

/// Drops that can only happen once the ingress tunnel was found (SPEC.md tunnel
/// termination, the checks after the lookup of step 1, then routing and encapsulation).
pub const AFTER_LOOKUP: &[&str] = &[
    "unsupported_inner",
    "gre_sequence",
    "bad_inner_ipv4",
    "bad_inner_ipv6",
    "nested_tunnel",
    "inner_spoofed",
    "ecn_ce_not_ect",
    "ttl_exceeded",
    "martian_destination",
    "no_route",
    "hairpin",
    "tunnel_loop",
    "no_headroom",
    "mtu_exceeded",
    "no_neighbor",
];

/// Drops after the outer headers were stripped: the ingress tunnel counted the packet.
pub const AFTER_STRIP: &[&str] = &[
    "bad_inner_ipv4",
    "bad_inner_ipv6",
    "nested_tunnel",
    "inner_spoofed",
    "ecn_ce_not_ect",
    "ttl_exceeded",
    "martian_destination",
    "no_route",
    "hairpin",
    "tunnel_loop",
    "mtu_exceeded",
    "no_neighbor",
];

/// The counters against the expectations: drops reason by reason (all of them, so a
/// forwarded bad packet or a dropped good one shows), events, punts, ports, tunnels.
pub fn check_counters(
    stats: &Value,
    expected: &[Expected],
    outputs: &Sent,
    captures: &[(&str, &str)],
) {
    let per_port = &outputs.forwarded;
    // ICMP errors, by kind: what the manifest expects, all sent (no rate limit in the lab).
    let icmp = stats["icmp_sent"].as_object().expect("icmp_sent");
    for (kind, (t, c)) in [
        ("time_exceeded", (11, 0)),
        ("unreachable_net", (3, 0)),
        ("unreachable_prohibited", (3, 13)),
        ("fragmentation_needed", (3, 4)),
    ] {
        let want = count(expected, |e| {
            e.icmp
                .as_ref()
                .is_some_and(|i| (i.icmp_type, i.code) == (t, c))
        });
        assert_eq!(icmp[kind].as_u64(), Some(want), "ICMP {kind} sent");
    }
    assert_eq!(stats["icmp_rate_limited"], 0, "no ICMP error rate-limited");
    let drops = stats["drops"].as_object().expect("drops");
    let mut want_drops: BTreeMap<&str, u64> = BTreeMap::new();
    for e in expected {
        if let Some(r) = e.expect.strip_prefix("drop:") {
            *want_drops.entry(r).or_default() += 1;
        }
    }
    for r in want_drops.keys() {
        assert!(drops.contains_key(*r), "{r} is not a counter: {drops:?}");
    }
    let got: BTreeMap<&str, u64> = drops
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().unwrap()))
        .collect();
    let want: BTreeMap<&str, u64> = got
        .keys()
        .map(|k| (*k, want_drops.get(k).copied().unwrap_or(0)))
        .collect();
    assert_eq!(got, want, "drops by reason");
    let bad = count(expected, |e| e.expect.starts_with("drop:"));
    assert_eq!(got.values().sum::<u64>(), bad, "every bad packet dropped");

    for (k, v) in stats["events"].as_object().expect("events") {
        let want = expected
            .iter()
            .flat_map(|e| &e.events)
            .filter(|x| *x == k)
            .count() as u64;
        assert_eq!(v.as_u64(), Some(want), "event {k}");
    }
    let mut punted = 0;
    for (k, v) in stats["punts"].as_object().expect("punts") {
        let want = count(expected, |e| e.expect == format!("punt:{k}"));
        assert_eq!(v.as_u64(), Some(want), "punt {k}");
        // ARP and the underlay's path MTU messages are the workers' and the control
        // thread's own; the rest is for a host interface.
        if k != "arp" && k != "pmtu" {
            punted += want;
        }
    }
    let echoes = count(expected, |e| e.echo.is_some());
    assert_eq!(stats["echo_replies"], echoes, "echo requests answered");
    assert_eq!(
        stats["punt_dropped"],
        punted - echoes,
        "no host interface in this lab (ARP, echo and path MTU have their handlers)"
    );
    assert_eq!(
        stats["punt_dropped_by_reason"]["pmtu"], 0,
        "path MTU reports lost to a full queue"
    );
    // Each genuine path MTU message lowered its tunnel (one at a time in these corpora).
    let lowered = count(expected, |e| e.pmtu.is_some());
    assert_eq!(stats["pmtu_lowered"], lowered, "path MTUs lowered");
    assert_eq!(stats["pmtu_ignored"], 0, "path MTU reports ignored");
    let arp = |pred: fn(&ArpExpect) -> bool| count(expected, |e| e.arp.as_ref().is_some_and(pred));
    assert_eq!(
        count(expected, |e| e.expect == "punt:arp"),
        arp(|_| true),
        "every ARP punt has its ARP expectation"
    );
    assert_eq!(stats["arp_replies"], arp(|a| a.reply), "ARP replies");
    assert_eq!(
        stats["arp_learned"],
        arp(|a| a.learned),
        "ARP senders learned"
    );
    assert_eq!(stats["arp_learn_dropped"], 0, "ARP learn queue overflowed");

    for (i, pd) in PORTS.iter().enumerate() {
        let ps = &stats["ports"][i];
        assert_eq!(ps["name"], pd.name);
        let received = count(expected, |e| {
            captures
                .iter()
                .any(|(f, p)| *f == e.capture && *p == pd.name)
        });
        assert_eq!(ps["rx_packets"], received, "port {} rx", pd.name);
        assert_eq!(ps["pipeline_rx_packets"], received, "port {} rx", pd.name);
        let sent = per_port.get(pd.name).copied().unwrap_or(0);
        let replies = count(expected, |e| {
            e.arp.as_ref().is_some_and(|a| a.reply && a.port == pd.name)
        });
        let icmp = outputs.icmp_port.get(pd.name).copied().unwrap_or(0);
        assert_eq!(ps["tx_sent"], sent + replies + icmp, "port {} tx", pd.name);
        assert_eq!(ps["pipeline_tx_packets"], sent, "port {} tx", pd.name);
        assert_eq!(ps["tx_dropped"], 0, "port {} tx drops", pd.name);
    }
    for (i, t) in TUNNELS.iter().enumerate() {
        let ts = &stats["tunnels"][i];
        assert_eq!(ts["name"], t.name);
        let tx = count(expected, |e| e.egress.as_deref() == Some(t.name))
            + outputs.icmp_tunnel.get(t.name).copied().unwrap_or(0);
        assert_eq!(
            ts["tx_packets"], tx,
            "tunnel {} tx (forwarded and ICMP)",
            t.name
        );
        let rx = count(expected, |e| {
            e.ingress.as_deref() == Some(t.name)
                && (e.expect == "fwd"
                    || e.expect == "punt:local_inner"
                    || e.expect
                        .strip_prefix("drop:")
                        .is_some_and(|r| AFTER_STRIP.contains(&r)))
        });
        assert_eq!(ts["rx_packets"], rx, "tunnel {} rx", t.name);
    }
    // Drops per tunnel and per port (SPEC.md "Counters": drops by reason per tunnel): a
    // drop counts under the tunnel the packet came through once that tunnel was found
    // (tunnel termination step 1, and every step after it), else under its port.
    let drops_of = |x: &Value| -> BTreeMap<String, u64> {
        x["drops"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect()
    };
    let tunnel_known = |r: &str| AFTER_LOOKUP.contains(&r);
    for (i, t) in TUNNELS.iter().enumerate() {
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for e in expected {
            if let Some(r) = e.expect.strip_prefix("drop:") {
                if e.ingress.as_deref() == Some(t.name) && tunnel_known(r) {
                    *want.entry(r.to_owned()).or_default() += 1;
                }
            }
        }
        assert_eq!(
            drops_of(&stats["tunnels"][i]),
            want,
            "tunnel {} drops by reason",
            t.name
        );
    }
    for (i, pd) in PORTS.iter().enumerate() {
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for e in expected {
            let on_port = captures
                .iter()
                .any(|(f, p)| *f == e.capture && *p == pd.name);
            if let Some(r) = e.expect.strip_prefix("drop:") {
                if on_port && !(e.ingress.is_some() && tunnel_known(r)) {
                    *want.entry(r.to_owned()).or_default() += 1;
                }
            }
        }
        assert_eq!(
            drops_of(&stats["ports"][i]),
            want,
            "port {} drops by reason (native and unclaimed)",
            pd.name
        );
    }

    let worker_rx: u64 = stats["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["rx_packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        worker_rx,
        expected.len() as u64,
        "workers received everything"
    );
}
