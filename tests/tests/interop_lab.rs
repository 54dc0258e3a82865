//! The interop lab (scripts/interop-lab.sh) as a test: backbone between client routers that
//! we did not write. Routers A and B are Open vSwitch (userspace datapath) with GRE ports,
//! keyed (100) and unkeyed; router C is a Linux namespace with an IP-in-IP tunnel (TUN and
//! raw sockets, scripts/tunnel-endpoint.py). The appliance runs on the three veths with
//! DPDK's net_af_packet, and tcpdump captures every backbone link. The sites are
//! dual-stack: the tunnels carry IPv6 too (GRE protocol type 0x86DD, RFC 7676; IPv6-in-IPv4,
//! protocol 41, RFC 4213), over the IPv4 underlay.
//!
//! Checked: ping both ways between every pair of hosts, in IPv4 and in IPv6, with the TTL
//! (hop limit) the hop count implies (64 - router - backbone - router = 61), and the
//! appliance's per-tunnel counters against the pings sent; `traceroute -n` across the
//! appliance, whose hop answers from its address facing the sender; TCP transfers (16 MiB
//! keyed GRE <- unkeyed GRE, 10 MiB GRE -> IP-in-IP) between hosts with MTU 1500, compared
//! byte for byte: the underlay carries their full-size packets (1600) but the tunnels are
//! configured for 1500 outside, so they complete by path MTU discovery on the appliance's
//! Fragmentation Needed; the same in IPv6 (512 KiB each way round the same tunnels), by
//! ICMPv6 Packet Too Big with the egress tunnel's inner MTU, which the sending host then
//! holds as its path MTU (`ip -6 route get`); Open vSwitch 3.1's wrong GRE checksum with
//! csum+seq dropped as `bad_gre_checksum`; then, after teardown, tshark's dissection of the
//! captures (right MACs, keys, modes and GRE protocol types per link, inner TTLs and hop
//! limits, the appliance's own ICMP and ICMPv6 errors, valid checksums, nothing malformed)
//! and the final per-tunnel packet and byte counters and ICMP errors of `--stats` against
//! the captures, packet for packet.
//!
//! Needs root, network namespaces, /dev/net/tun and the packages of scripts/setup.sh. Where
//! they are missing the test fails and says why: it never skips.

use backbone_tests::{backbone_bin, repo_root, scratch_dir, wait_for, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A host: its router's letter, its address.
const HOSTS: [(char, &str); 3] = [('a', "10.1.0.10"), ('b', "10.2.0.10"), ('c', "10.3.0.10")];
/// The hosts' IPv6 addresses: site X is fd00:X::/48 at the appliance, its LAN fd00:X::/64.
const HOSTS6: [(char, &str); 3] = [
    ('a', "fd00:1::10"),
    ('b', "fd00:2::10"),
    ('c', "fd00:3::10"),
];
/// The tunnels' outer MTU (`mtu` in the lab's configuration): their packets, outer IPv4
/// header included, carry at most this.
const TUNNEL_MTU: u32 = 1500;
/// IPv6 bytes of a host's transfer through Packet Too Big: a few hundred KB.
const TRANSFER6_BYTES: usize = 512 << 10;
/// Host A's second address, routed by router A into its csum+seq GRE port.
const CSUM_SOURCE: &str = "10.11.0.10";
/// Traceroute's first UDP destination port (its default).
const TRACEROUTE_PORT: u32 = 33434;
/// Pings per ordered pair of hosts.
const PINGS: u64 = 3;
/// Pings through the csum+seq port.
const CSUM_PINGS: u64 = 5;
/// What the ping replies' TTL must be: 64, less router, backbone and router.
const TTL_AT_HOST: u32 = 61;

/// One backbone link as the captures see it.
#[derive(Debug)]
struct Link {
    iface: &'static str,
    /// The appliance's side: the veth's MAC (the config leaves `mac` out) and address.
    our_mac: &'static str,
    our_ip: &'static str,
    /// The client router's side: the MAC it sends from (Open vSwitch: br-phy's) and address.
    router_mac: &'static str,
    router_ip: &'static str,
    /// The appliance's address facing this link's hosts, which its ICMP errors come from
    /// (SPEC.md ICMP errors, rule 2): the tunnel's link address where it has one, else its
    /// local endpoint.
    icmp_src: &'static str,
    /// Its ICMPv6 errors' source: the tunnel's `link6` (fd00:ff:X::1).
    icmp6_src: &'static str,
    /// The IPv6 prefix of the site behind it (the appliance's route into its tunnel).
    site6: &'static str,
    /// The outer protocol: 47 (GRE) or 4 (IP-in-IP; its IPv6 packets are protocol 41).
    proto: u32,
    /// The inner MTU of the site's tunnel (the first of `tunnels`): `TUNNEL_MTU` less the
    /// outer IPv4 header (20 bytes) and the GRE header (4, 8 with a key; RFC 2784, RFC
    /// 2890); IP-in-IP has none (RFC 2003, RFC 4213 3.2).
    inner_mtu: u32,
    /// GRE key -> tunnel name; `None`: GRE without key, or IP-in-IP.
    tunnels: &'static [(Option<u32>, &'static str)],
}

const LINKS: [Link; 3] = [
    Link {
        iface: "to-a",
        our_mac: "02:bb:00:00:00:01",
        our_ip: "172.16.1.1",
        router_mac: "02:01:00:00:01:02",
        router_ip: "172.16.1.2",
        icmp_src: "172.16.1.1",
        icmp6_src: "fd00:ff:1::1",
        site6: "fd00:1:",
        proto: 47,
        inner_mtu: TUNNEL_MTU - 20 - 8,
        tunnels: &[(Some(100), "site-a"), (Some(101), "site-a-csum")],
    },
    Link {
        iface: "to-b",
        our_mac: "02:bb:00:00:00:02",
        our_ip: "172.16.2.1",
        router_mac: "02:02:00:00:01:02",
        router_ip: "172.16.2.2",
        icmp_src: "172.16.2.1",
        icmp6_src: "fd00:ff:2::1",
        site6: "fd00:2:",
        proto: 47,
        inner_mtu: TUNNEL_MTU - 20 - 4,
        tunnels: &[(None, "site-b")],
    },
    Link {
        iface: "to-c",
        our_mac: "02:bb:00:00:00:03",
        our_ip: "172.16.3.1",
        router_mac: "02:03:00:00:01:01",
        router_ip: "172.16.3.2",
        icmp_src: "169.254.3.1",
        icmp6_src: "fd00:ff:3::1",
        site6: "fd00:3:",
        proto: 4,
        inner_mtu: TUNNEL_MTU - 20,
        tunnels: &[(None, "site-c")],
    },
];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lab, brought up by the script and torn down by it when dropped (on failure too).
#[derive(Debug)]
struct Lab {
    dir: PathBuf,
    prefix: String,
    backbone: PathBuf,
    is_down: bool,
}

impl Lab {
    fn script(&self, cmd: &str) -> Output {
        Command::new(repo_root().join("scripts/interop-lab.sh"))
            .arg(cmd)
            .env("LAB_DIR", &self.dir)
            .env("LAB_PREFIX", &self.prefix)
            .env("BACKBONE", &self.backbone)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/interop-lab.sh")
    }

    fn up() -> Lab {
        require_lab_support();
        let lab = Lab {
            dir: scratch_dir("interop-lab"),
            // Namespaces of our own: a lab a user has up (prefix bbl) is left alone.
            prefix: format!("bbt{}", std::process::id()),
            backbone: backbone_bin(),
            is_down: false,
        };
        let t = Instant::now();
        let out = lab.script("up");
        assert!(
            out.status.success(),
            "scripts/interop-lab.sh up failed:\n{}\nappliance log:\n{}",
            text(&out),
            std::fs::read_to_string(lab.dir.join("backbone.log")).unwrap_or_default()
        );
        println!("lab up in {:.1} s", t.elapsed().as_secs_f64());
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Run a command in a namespace of the lab.
    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// Start a command in a namespace of the lab (`ip netns exec` execs it: the child is
    /// the command itself).
    fn spawn(&self, ns: &str, args: &[&str]) -> Spawned {
        Spawned(Some(
            Command::new("ip")
                .args(["netns", "exec", &self.ns(ns)])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ip netns exec"),
        ))
    }

    /// The appliance's live counters (`backbone ctl --json counters`) as they are now: the
    /// workers publish a copy of theirs every few thousand polls, so this waits for a copy
    /// every worker made after the call began.
    fn counters(&self) -> Value {
        let sock = self.dir.join("ctl/control.sock");
        let read = || {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns("bb")])
                .arg(&self.backbone)
                .arg("ctl")
                .arg(format!("--socket={}", sock.display()))
                .args(["--json", "counters"])
                .output()
                .expect("backbone ctl");
            assert!(
                out.status.success(),
                "backbone ctl counters: {}",
                text(&out)
            );
            serde_json::from_slice::<Value>(&out.stdout).expect("counters JSON")
        };
        let copies = |v: &Value| -> Vec<u64> {
            v["workers"]
                .as_array()
                .map(|w| {
                    w.iter()
                        .map(|c| c["copies"].as_u64().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default()
        };
        let seen = copies(&read());
        let mut v = wait_for(
            Duration::from_secs(10),
            "a copy of every worker's counters",
            || {
                let v = read();
                let now = copies(&v);
                if now.len() == seen.len() && now.iter().zip(&seen).all(|(n, s)| n > s) {
                    Ok(v)
                } else {
                    Err(format!("copies {now:?}, before {seen:?}"))
                }
            },
        );
        // What moves without traffic (the tables' generation, which copy of the workers'
        // counters this is, the API's own counts) is left out: callers compare the rest.
        if let Some(m) = v.as_object_mut() {
            for volatile in ["generation", "workers", "api"] {
                m.remove(volatile);
            }
        }
        v
    }

    fn down(&mut self) -> Output {
        let out = self.script("down");
        self.is_down = true;
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.is_down {
            let out = self.down();
            eprintln!("lab torn down after a failure:\n{}", text(&out));
            eprintln!("state, logs and captures kept in {}", self.dir.display());
        }
    }
}

/// Fail (never skip) with what is missing.
fn require_lab_support() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the interop lab needs root (network namespaces, veths, TUN, Open vSwitch): run the \
         tests as root, as CI does (.ci/run -> scripts/test.sh)"
    );
    for (tool, package) in [
        ("ovs-vswitchd", "openvswitch-switch"),
        ("ovsdb-server", "openvswitch-switch"),
        ("tcpdump", "tcpdump"),
        ("socat", "socat"),
        ("ping", "iputils-ping"),
        ("ethtool", "ethtool"),
        ("tshark", "tshark"),
        ("traceroute", "traceroute"),
        ("sha256sum", "coreutils"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the interop lab needs {tool} (Debian package {package}): run scripts/setup.sh"
        );
    }
    assert!(
        Path::new("/dev/net/tun").exists(),
        "the interop lab needs /dev/net/tun (Open vSwitch's internal ports, router C's tunnel)"
    );
}

fn tunnel_counter(v: &Value, tunnel: &str, field: &str) -> u64 {
    v["tunnels"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == tunnel))
        .and_then(|t| t[field].as_u64())
        .unwrap_or_else(|| panic!("no counter {field} for tunnel {tunnel} in {v}"))
}

fn drop_counter(v: &Value, reason: &str) -> u64 {
    v["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop counter {reason} in {v}"))
}

/// Per-tunnel packet counts and drops between two counter readings.
/// A probed tunnel sent `forwarded` packets plus the appliance's own probes: those are
/// counted as sent from the host a moment before the tunnel's count takes them, so one
/// may fall on either side of each snapshot.
fn assert_probed_tx(d: &BTreeMap<String, u64>, tunnel: &str, forwarded: u64) {
    let n = d[&format!("{tunnel}.tx_packets")];
    let probes = d["host.from_host_sent"];
    assert!(
        n >= forwarded && n <= forwarded + probes + 1,
        "{tunnel}.tx_packets {n}: expected {forwarded} forwarded and at most {probes} + 1 \
         probes: {d:?}"
    );
}

fn delta(before: &Value, after: &Value) -> BTreeMap<String, u64> {
    let mut d = BTreeMap::new();
    for l in &LINKS {
        for (_, t) in l.tunnels {
            for f in ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"] {
                d.insert(
                    format!("{t}.{f}"),
                    tunnel_counter(after, t, f) - tunnel_counter(before, t, f),
                );
            }
        }
    }
    for (k, v) in after["drops"].as_object().expect("drops") {
        let n = v.as_u64().unwrap_or(0) - before["drops"][k].as_u64().unwrap_or(0);
        d.insert(format!("drop.{k}"), n);
    }
    for (k, v) in after["icmp_sent"].as_object().expect("icmp_sent") {
        let n = v.as_u64().unwrap_or(0) - before["icmp_sent"][k].as_u64().unwrap_or(0);
        d.insert(format!("icmp.{k}"), n);
    }
    d.insert(
        "icmp.rate_limited".into(),
        after["icmp_rate_limited"].as_u64().unwrap_or(0)
            - before["icmp_rate_limited"].as_u64().unwrap_or(0),
    );
    for (k, v) in after["host"].as_object().expect("host") {
        if let Some(n) = v.as_u64() {
            d.insert(
                format!("host.{k}"),
                n.saturating_sub(before["host"][k].as_u64().unwrap_or(0)),
            );
        }
    }
    d
}

fn assert_no_drops_but(d: &BTreeMap<String, u64>, allowed: &str, during: &str) {
    for (k, v) in d {
        if k.starts_with("drop.") && k != allowed {
            assert_eq!(
                *v, 0,
                "{during}: the appliance dropped packets as {k}: {d:?}"
            );
        }
    }
}

/// One ping run: (replies, their TTLs, round-trip times in ms).
fn ping(lab: &Lab, from: char, args: &[&str]) -> (u64, Vec<u32>, Vec<f64>, String) {
    let mut cmd = vec!["ping", "-n"];
    cmd.extend_from_slice(args);
    let out = lab.exec(&format!("h{from}"), &cmd);
    let s = text(&out);
    let (mut ttls, mut rtts) = (Vec::new(), Vec::new());
    for line in s.lines().filter(|l| l.contains("bytes from")) {
        for word in line.split_whitespace() {
            if let Some(t) = word.strip_prefix("ttl=") {
                ttls.push(t.parse().expect("ttl"));
            }
            if let Some(t) = word.strip_prefix("time=") {
                rtts.push(t.parse().expect("time"));
            }
        }
    }
    (ttls.len() as u64, ttls, rtts, s)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A process the test started: killed (by its PID) if the test fails before it ends.
#[derive(Debug)]
struct Spawned(Option<Child>);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_child(mut spawned: Spawned, what: &str, limit: Duration) -> Output {
    let mut child = spawned.0.take().expect("a running child");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what}: still running after {} s (killed):\n{}",
                limit.as_secs(),
                text(&out)
            );
        }
        // Polling for the exit, bounded by `limit`.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send `bytes` random bytes over TCP from one host to another, to its address in `hosts`
/// (socat at both ends), and compare what arrived with what was sent, byte for byte.
/// Returns a line for the summary.
fn transfer(
    lab: &Lab,
    from: char,
    to: char,
    hosts: &[(char, &str)],
    bytes: usize,
    port: u16,
) -> String {
    let to_ip = hosts.iter().find(|h| h.0 == to).expect("host").1;
    tcp_copy(
        lab,
        &format!(
            "host {} -> host {}",
            from.to_ascii_uppercase(),
            to.to_ascii_uppercase()
        ),
        &format!("h{from}"),
        &format!("h{to}"),
        to_ip,
        bytes,
        port,
    )
}

/// Send `bytes` random bytes over TCP from namespace `from` to `to_ip:port` in namespace
/// `to` (socat at both ends, the listener bound to `to_ip`), and compare what arrived with
/// what was sent, byte for byte. Returns a line for the summary.
fn tcp_copy(
    lab: &Lab,
    what: &str,
    from: &str,
    to: &str,
    to_ip: &str,
    bytes: usize,
    port: u16,
) -> String {
    let src = lab.dir.join(format!("tcp-{port}-sent.bin"));
    let dst = lab.dir.join(format!("tcp-{port}-received.bin"));
    let mut data = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut data,
    )
    .expect("random bytes");
    std::fs::write(&src, &data).expect("write the source file");
    // socat's addresses: TCP6 and brackets for an IPv6 destination.
    let (tcp, host) = if to_ip.contains(':') {
        ("TCP6", format!("[{to_ip}]"))
    } else {
        ("TCP", to_ip.to_owned())
    };
    let listen = format!("{tcp}-LISTEN:{port},bind={host},reuseaddr");
    let sink = format!("OPEN:{},creat,trunc", dst.display());
    let receiver = lab.spawn(to, &["socat", "-u", &listen, &sink]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ss = lab.exec(to, &["ss", "-Hltn"]);
        if text(&ss).contains(&format!(":{port} ")) {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: socat never listened");
        // Polling for the listening socket, bounded by `deadline`.
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    let source = format!("OPEN:{}", src.display());
    let connect = format!("{tcp}:{host}:{port}");
    let sender = lab.spawn(from, &["socat", "-u", &source, &connect]);
    let sent = wait_child(sender, "the TCP sender", Duration::from_secs(60));
    assert!(
        sent.status.success(),
        "{what}: socat sender: {}",
        text(&sent)
    );
    let received = wait_child(receiver, "the TCP receiver", Duration::from_secs(30));
    let secs = t.elapsed().as_secs_f64();
    assert!(
        received.status.success(),
        "{what}: socat receiver: {}",
        text(&received)
    );
    let got = std::fs::read(&dst).expect("read the received file");
    assert_eq!(
        got.len(),
        data.len(),
        "TCP {what}: {} bytes arrived of {}",
        got.len(),
        data.len()
    );
    if let Some(i) = got.iter().zip(&data).position(|(a, b)| a != b) {
        panic!("TCP {what}: the bytes differ from offset {i}");
    }
    let (hs, hd) = (sha256(&src), sha256(&dst));
    assert_eq!(hs, hd, "sha256 of what was sent and what arrived");
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    format!(
        "TCP {what}: {} bytes in {secs:.2} s ({:.0} Mbit/s), byte for byte identical, \
         sha256 {hd}",
        got.len(),
        got.len() as f64 * 8.0 / secs / 1e6
    )
}

/// The exception path: router C's kernel and the appliance's namespace talk TCP through
/// tunnel site-c (its link: `bb-site-c` holds 169.254.3.1, router C's ipip0 169.254.3.0),
/// both ways, and natively through port to-c's host interface (`bb-to-c`, 172.16.3.1); a
/// tunnel added at run time with a link gets its interface, which goes when the tunnel is
/// removed. Returns lines for the summary.
fn exception_path(lab: &Lab) -> Vec<String> {
    let mut summary = Vec::new();
    let has = |name: &str, addr: &str| {
        let out = lab.exec("bb", &["ip", "-o", "-4", "addr", "show", "dev", name]);
        out.status.success() && text(&out).contains(addr)
    };
    wait_until(
        Duration::from_secs(10),
        "bb-site-c with 169.254.3.1/31",
        || has("bb-site-c", "169.254.3.1/31"),
    );
    wait_until(
        Duration::from_secs(10),
        "bb-to-c with 172.16.3.1/32",
        || has("bb-to-c", "172.16.3.1/32"),
    );
    let link = lab.exec("bb", &["ip", "-o", "link", "show", "dev", "bb-site-c"]);
    assert!(
        text(&link).contains("mtu 1480"),
        "bb-site-c's MTU is the tunnel's inner MTU (1500 less the IPv4 header): {}",
        text(&link)
    );
    // IPv6: bb-site-c holds the tunnel's link6 too, and nothing else (no link-local
    // address); router C's ping6 of it goes through the tunnel (protocol 41) to the
    // appliance's kernel, whose replies go back the same way.
    let v6 = text(&lab.exec(
        "bb",
        &["ip", "-o", "-6", "addr", "show", "dev", "bb-site-c"],
    ));
    assert!(
        v6.contains("fd00:ff:3::1/127") && !v6.contains("fe80:"),
        "bb-site-c's IPv6 addresses: {v6}"
    );
    let before = lab.counters();
    let out = lab.exec(
        "rc",
        &[
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "fd00:ff:3::1",
        ],
    );
    let s = text(&out);
    let answered = s.lines().filter(|l| l.contains("bytes from")).count() as u64;
    assert!(answered >= 2, "router C pings the appliance's link6:\n{s}");
    let d = delta(&before, &lab.counters());
    assert!(
        d["host.to_host"] >= answered && d["host.from_host_sent"] >= answered,
        "the echo requests up to the kernel and its replies into the tunnel: {d:?}"
    );
    assert_no_drops_but(&d, "", "router C's ping6 of the link6");
    assert_eq!(d["host.from_host_dropped"], 0, "{d:?}");
    summary.push(format!(
        "ping6 of the appliance's link6 fd00:ff:3::1 from router C, inside tunnel site-c: \
         {answered} of 3 answered by its kernel through bb-site-c"
    ));

    const MIB: usize = 1 << 20;
    let before = lab.counters();
    summary.push(tcp_copy(
        lab,
        "router C -> the appliance's kernel, inside tunnel site-c",
        "rc",
        "bb",
        "169.254.3.1",
        MIB,
        6001,
    ));
    summary.push(tcp_copy(
        lab,
        "the appliance's kernel -> router C, inside tunnel site-c",
        "bb",
        "rc",
        "169.254.3.0",
        MIB,
        6002,
    ));
    let d = delta(&before, &lab.counters());
    // At least a MiB each way in full-size segments (1480 less 40 bytes of headers), and
    // their acknowledgements.
    let segments = (MIB / 1440) as u64;
    assert!(
        d["host.to_host"] >= segments && d["host.from_host_sent"] >= segments,
        "the exception path carried too little: {d:?}"
    );
    assert!(
        d["site-c.rx_packets"] >= segments && d["site-c.tx_packets"] >= segments,
        "through tunnel site-c: {d:?}"
    );
    for k in [
        "host.queue_full",
        "host.to_host_failed",
        "host.from_host_dropped",
        "host.from_host_tx_failed",
    ] {
        assert_eq!(d[k], 0, "{k}: {d:?}");
    }
    assert_no_drops_but(&d, "", "the exception path's transfers");
    summary.push(format!(
        "exception path through site-c: {} packets to the host, {} from it",
        d["host.to_host"], d["host.from_host_sent"]
    ));

    let before = lab.counters();
    summary.push(tcp_copy(
        lab,
        "router C -> the appliance's kernel, natively through bb-to-c",
        "rc",
        "bb",
        "172.16.3.1",
        MIB,
        6003,
    ));
    let d = delta(&before, &lab.counters());
    assert!(d["host.to_host"] >= segments, "{d:?}");
    assert_eq!(
        d["site-c.rx_packets"], 0,
        "native, not through the tunnel: {d:?}"
    );

    // A tunnel added at run time with a link: its interface comes, and goes with it.
    let file = lab.dir.join("site-d.toml");
    std::fs::write(
        &file,
        "[[tunnel]]\nname = \"site-d\"\nmode = \"gre\"\nlocal = \"172.16.3.1\"\n\
         remote = \"172.16.3.9\"\nkey = 9\nport = \"to-c\"\nprefixes = [\"10.4.0.0/16\"]\n\
         link = \"169.254.4.1/30\"\n",
    )
    .expect("write site-d.toml");
    let sock = lab.dir.join("ctl/control.sock");
    let ctl = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns("bb")])
            .arg(&lab.backbone)
            .arg("ctl")
            .arg(format!("--socket={}", sock.display()))
            .args(args)
            .output()
            .expect("backbone ctl");
        assert!(out.status.success(), "ctl {args:?}: {}", text(&out));
    };
    assert!(!has("bb-site-d", "169.254.4.1"), "no bb-site-d before");
    let t = Instant::now();
    ctl(&["tunnel-add", &file.display().to_string()]);
    wait_until(Duration::from_secs(5), "bb-site-d after tunnel-add", || {
        has("bb-site-d", "169.254.4.1/30")
    });
    let added = t.elapsed();
    ctl(&["tunnel-del", "site-d"]);
    wait_until(
        Duration::from_secs(5),
        "bb-site-d gone after tunnel-del",
        || {
            !lab.exec("bb", &["ip", "link", "show", "dev", "bb-site-d"])
                .status
                .success()
        },
    );
    summary.push(format!(
        "host interface bb-site-d: up {:.0} ms after tunnel-add, gone {:.0} ms after \
         tunnel-del",
        added.as_secs_f64() * 1e3,
        (t.elapsed() - added).as_secs_f64() * 1e3
    ));
    summary
}

/// `traceroute -n` from host `from` to `to_ip`, one probe a hop; its output, once the hops
/// answer as `want` says, in order (`Some`: from that address; `None`: silent). A busy
/// machine can lose a probe inside Open vSwitch: up to three rounds.
fn traceroute(lab: &Lab, from: char, to_ip: &str, want: &[Option<&str>]) -> String {
    let mut outs = String::new();
    for _round in 0..3 {
        let out = lab.exec(
            &format!("h{from}"),
            &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "6", to_ip],
        );
        let s = text(&out);
        outs.push_str(&s);
        let hops: Vec<Option<String>> = s
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.next()?.parse::<u32>().ok()?;
                Some(w.next().filter(|a| *a != "*").map(str::to_owned))
            })
            .collect();
        let got: Vec<Option<&str>> = hops.iter().map(Option::as_deref).collect();
        if got.get(..want.len()) == Some(want) {
            return s;
        }
    }
    panic!("traceroute host {from} -> {to_ip}: want hops {want:?}, three rounds:\n{outs}");
}

/// One captured frame, as tshark dissects it.
#[derive(Debug, Default)]
struct Frame {
    number: String,
    eth_src: String,
    eth_dst: String,
    /// Per IPv4 header, outer first.
    ip_src: Vec<String>,
    ip_dst: Vec<String>,
    ip_proto: Vec<u32>,
    ip_ttl: Vec<u32>,
    gre_key: Option<u32>,
    gre_checksum_status: Option<u32>,
    /// Every checksum tshark verified: 0 is bad.
    checksum_status: Vec<u32>,
    icmp_type: Vec<u32>,
    icmp_code: Vec<u32>,
    expert_severity: Vec<u64>,
    protocols: String,
    len: u64,
    /// Every UDP destination port, the quoted one of an ICMP error included.
    udp_dstport: Vec<u32>,
    /// The group of each of tshark's expert items (beside `expert_severity`).
    expert_group: Vec<u64>,
    /// It carries an ICMP or ICMPv6 error, which quotes a packet cut short.
    quotes: bool,
    /// Per IPv6 header (inside the tunnel), outer first.
    ipv6_src: Vec<String>,
    ipv6_dst: Vec<String>,
    ipv6_hlim: Vec<u32>,
    ipv6_nxt: Vec<u32>,
    icmpv6_type: Vec<u32>,
    icmpv6_code: Vec<u32>,
    /// A Packet Too Big's MTU.
    icmpv6_mtu: Vec<u32>,
    /// The GRE protocol type.
    gre_proto: Option<u32>,
}

const TSHARK_FIELDS: &[&str] = &[
    "frame.number",
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "gre.key",
    "gre.checksum.status",
    "ip.checksum.status",
    "tcp.checksum.status",
    "icmp.checksum.status",
    "icmp.type",
    "icmp.code",
    "_ws.expert.severity",
    "frame.protocols",
    "frame.len",
    "tcp.checksum",
    "tcp.checksum_calculated",
    "udp.dstport",
    "_ws.expert.group",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hlim",
    "ipv6.nxt",
    "icmpv6.type",
    "icmpv6.code",
    "icmpv6.mtu",
    "icmpv6.checksum.status",
    "gre.proto",
];

fn dissect(file: &Path) -> Vec<Frame> {
    let mut cmd = Command::new("tshark");
    // The transfers' random bytes are data: no heuristic dissector (thrift, say) may claim
    // them and then report them malformed.
    cmd.arg("-r").arg(file).args([
        "-n",
        "-d",
        "tcp.port==5001,data",
        "-d",
        "tcp.port==5002,data",
        "-d",
        "tcp.port==5003,data",
        "-d",
        "tcp.port==5004,data",
        // The exception path's transfers use X11's ports.
        "-d",
        "tcp.port==6001,data",
        "-d",
        "tcp.port==6002,data",
        "-d",
        "tcp.port==6003,data",
        // Traceroute's probes: junk to ports 33434 and up, from a port the kernel picks in
        // its ephemeral range (32768-60999), which may be one a dissector is registered on
        // (34980, EtherCAT, once: it then reported the junk as an error).
        "-d",
        "udp.port==32768-60999,data",
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        // Each frame is checked on its own: reassembling the host's TCP streams only makes
        // tshark report a retransmission that overlaps what it kept as an error.
        "-o",
        "tcp.desegment_tcp_streams:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in TSHARK_FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        file.display(),
        text(&out)
    );
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let nums = |s: &str| -> Vec<u64> {
        list(s)
            .iter()
            .map(|x| {
                let x = x.trim_start_matches("0x");
                u64::from_str_radix(x, if s.contains("0x") { 16 } else { 10 })
                    .unwrap_or_else(|_| panic!("tshark number {x:?}"))
            })
            .collect()
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let c: Vec<&str> = line.split('|').collect();
            assert_eq!(c.len(), TSHARK_FIELDS.len(), "tshark line {line:?}");
            let small = |s: &str| nums(s).into_iter().map(|x| x as u32).collect::<Vec<u32>>();
            let mut checksum_status = small(c[9]);
            // TCP 0xffff where the sum gives 0x0000: the same number in one's complement
            // (RFC 1624), which Linux writes when it computes a checksum in software
            // (CSUM_MANGLED_0); tshark calls it bad. Once in 65,536 segments.
            let tcp_negative_zero = nums(c[17]) == [0xffff] && nums(c[18]) == [0];
            // An ICMP error quotes a TCP segment cut short: tshark checks its checksum
            // anyway, over what is there, and calls it bad. Only a whole segment's counts.
            let quotes = small(c[12]).iter().any(|t| matches!(t, 3 | 11))
                || small(c[25]).iter().any(|t| (1..=4).contains(t));
            if !quotes {
                checksum_status.extend(small(c[10]).into_iter().map(|s| {
                    if s == 0 && tcp_negative_zero {
                        2
                    } else {
                        s
                    }
                }));
            }
            checksum_status.extend(small(c[11]));
            checksum_status.extend(small(c[28]));
            Frame {
                number: c[0].to_owned(),
                eth_src: c[1].to_owned(),
                eth_dst: c[2].to_owned(),
                ip_src: list(c[3]),
                ip_dst: list(c[4]),
                ip_proto: small(c[5]),
                ip_ttl: small(c[6]),
                gre_key: small(c[7]).first().copied(),
                gre_checksum_status: small(c[8]).first().copied(),
                checksum_status,
                icmp_type: small(c[12]),
                icmp_code: small(c[13]),
                expert_severity: nums(c[14]),
                protocols: c[15].to_owned(),
                len: nums(c[16]).first().copied().unwrap_or(0),
                udp_dstport: small(c[19]),
                expert_group: nums(c[20]),
                quotes,
                ipv6_src: list(c[21]),
                ipv6_dst: list(c[22]),
                ipv6_hlim: small(c[23]),
                ipv6_nxt: small(c[24]),
                icmpv6_type: small(c[25]),
                icmpv6_code: small(c[26]),
                icmpv6_mtu: small(c[27]),
                gre_proto: small(c[29]).first().copied(),
            }
        })
        .collect()
}

/// What the captures say each tunnel received and sent.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    bad_gre_checksum: u64,
    /// The appliance's own ICMP errors sent into the tunnel.
    frag_needed: u64,
    time_exceeded: u64,
    packet_too_big: u64,
}

/// Check every frame of one link's capture and count its tunnel packets. Returns how many
/// ICMP protocol-unreachable messages router C sent back (see below).
fn check_capture(link: &Link, frames: &[Frame], seen: &mut BTreeMap<&'static str, Seen>) -> u64 {
    const PI_ERROR: u64 = 0x0080_0000;
    let iface = link.iface;
    let mut unreachable = 0;
    for f in frames {
        let at = format!("capture {iface}, frame {}", f.number);
        assert!(
            !f.protocols.contains("_ws.malformed") && !f.protocols.contains("_ws.short"),
            "{at}: tshark finds it malformed or cut short ({})",
            f.protocols
        );
        let ours = [link.our_mac, link.router_mac];
        assert!(
            ours.contains(&f.eth_src.as_str()),
            "{at}: from {}, neither the appliance nor the router",
            f.eth_src
        );
        let Some(&outer) = f.ip_proto.first() else {
            assert!(f.protocols.contains("arp"), "{at}: neither IPv4 nor ARP");
            continue;
        };
        if outer == 1 && f.icmp_type == [3] && f.icmp_code == [2] && link.proto == 4 {
            // Router C's kernel answers an IP-in-IP packet with "protocol unreachable" when
            // the bridge's raw socket buffer is full (Linux 6.x then counts no receiver):
            // the packet is lost and TCP resends it. It quotes the first 548 bytes of the
            // packet, which tshark reports as an error; it is not the appliance's doing.
            unreachable += 1;
            continue;
        }
        // The checksum of a TCP segment an ICMP error quotes, cut short, is no error (the
        // IPv4 and ICMP checksums are checked below).
        const PI_CHECKSUM: u64 = 0x0100_0000;
        let quoted_checksum = |i: usize| f.quotes && f.expert_group.get(i) == Some(&PI_CHECKSUM);
        assert!(
            f.expert_severity
                .iter()
                .enumerate()
                .all(|(i, &s)| s < PI_ERROR || quoted_checksum(i)),
            "{at}: tshark reports an error ({:?}, {})",
            f.expert_severity,
            f.protocols
        );
        assert!(
            f.checksum_status.iter().all(|&s| s != 0),
            "{at}: a bad IPv4, TCP or ICMP checksum ({})",
            f.protocols
        );
        // An IPv6 packet inside the tunnel (tshark dissects GRE 0x86DD and protocol 41).
        let v6 = !f.ipv6_src.is_empty();
        if ![4, 41, 47].contains(&outer) {
            // The routers' underlay pings to the appliance, when the lab came up, and the
            // appliance's echo replies.
            let ping = f.ip_dst[0] == link.our_ip && f.ip_src[0] == link.router_ip;
            let pong =
                f.ip_src[0] == link.our_ip && f.ip_dst[0] == link.router_ip && f.icmp_type == [0];
            // Router C's TCP with the appliance's kernel, through port to-c's host
            // interface (the exception path).
            let between = (f.ip_src[0] == link.our_ip && f.ip_dst[0] == link.router_ip)
                || (f.ip_dst[0] == link.our_ip && f.ip_src[0] == link.router_ip);
            let host_tcp = outer == 6 && link.iface == "to-c" && between;
            // The appliance's probe of site-c's tunnel, back from router C natively once it
            // took the tunnel header off: an echo reply from our endpoint to itself.
            let probe = outer == 1
                && link.iface == "to-c"
                && f.eth_src == link.router_mac
                && f.ip_src[0] == link.our_ip
                && f.ip_dst[0] == link.our_ip
                && f.icmp_type == [0];
            assert!(
                (outer == 1 && (ping || pong)) || host_tcp || probe,
                "{at}: unexpected underlay packet ({})",
                f.protocols
            );
            continue;
        }
        // IP-in-IP carries IPv6 as protocol 41 (RFC 4213); GRE names the inner packet's
        // family in its protocol type (RFC 7676).
        let mode = if v6 && link.proto == 4 {
            41
        } else {
            link.proto
        };
        assert_eq!(outer, mode, "{at}: the wrong tunnel mode");
        if link.proto == 47 {
            let ptype = if v6 { 0x86DD } else { 0x0800 };
            assert_eq!(f.gre_proto, Some(ptype), "{at}: GRE protocol type");
        }
        let inbound = f.eth_src == link.router_mac;
        let (src_mac, dst_mac, src_ip, dst_ip) = if inbound {
            (link.router_mac, link.our_mac, link.router_ip, link.our_ip)
        } else {
            (link.our_mac, link.router_mac, link.our_ip, link.router_ip)
        };
        assert_eq!(
            (f.eth_src.as_str(), f.eth_dst.as_str()),
            (src_mac, dst_mac),
            "{at}: MACs"
        );
        assert_eq!(
            (f.ip_src[0].as_str(), f.ip_dst[0].as_str()),
            (src_ip, dst_ip),
            "{at}: outer addresses"
        );
        let Some(&(_, tunnel)) = link.tunnels.iter().find(|(k, _)| *k == f.gre_key) else {
            panic!(
                "{at}: GRE key {:?} belongs to no tunnel of this link",
                f.gre_key
            );
        };
        let s = seen.entry(tunnel).or_default();
        if v6 {
            // The appliance's own ICMPv6 errors, into the tunnel the offending packet came
            // through: Packet Too Big (path MTU discovery), from the tunnel's link6, hop
            // limit 64, to the quoted packet's source, carrying the inner MTU of the tunnel
            // toward the quoted packet's destination (RFC 4443 3.2), and as much of the
            // packet as fits in 1,280 bytes (RFC 4443 2.4 (c)): the offending packets are
            // larger than any tunnel's inner MTU, so the error is 1,280 bytes exactly.
            // (The appliance's kernel answers echo requests to link6 too: those are no
            // errors, types 128 and up.)
            let error = f.ipv6_nxt[0] == 58 && f.icmpv6_type.first().is_some_and(|t| *t < 128);
            if !inbound && f.ipv6_src[0] == link.icmp6_src && error {
                assert_eq!(
                    (f.ipv6_nxt[0], f.icmpv6_type.first(), f.icmpv6_code.first()),
                    (58, Some(&2), Some(&0)),
                    "{at}: ICMPv6 from the appliance, not Packet Too Big"
                );
                assert_eq!(f.ipv6_hlim[0], 64, "{at}: its hop limit");
                assert_eq!(
                    f.ipv6_src.len(),
                    2,
                    "{at}: a Packet Too Big quoting a packet"
                );
                assert_eq!(f.ipv6_dst[0], f.ipv6_src[1], "{at}: to the quoted source");
                let egress = LINKS
                    .iter()
                    .find(|l| f.ipv6_dst[1].starts_with(l.site6))
                    .unwrap_or_else(|| panic!("{at}: quotes a packet to {}", f.ipv6_dst[1]));
                assert_eq!(
                    f.icmpv6_mtu,
                    [egress.inner_mtu],
                    "{at}: the MTU of a Packet Too Big toward {}",
                    f.ipv6_dst[1]
                );
                let gre = match (link.proto, f.gre_key) {
                    (47, Some(_)) => 8,
                    (47, None) => 4,
                    _ => 0,
                };
                assert_eq!(
                    f.len - 14 - 20 - gre,
                    1280,
                    "{at}: the Packet Too Big's length"
                );
                s.packet_too_big += 1;
                s.tx_packets += 1;
                s.tx_bytes += f.len;
                continue;
            }
            assert_eq!(f.ipv6_src.len(), 1, "{at}: not one inner IPv6 packet");
            // The host's 64 less its router on the way in, and less the appliance on the
            // way out. Between router C's kernel and the appliance's, inside the tunnel
            // (its IPv6 link fd00:ff:3::/127), nobody forwards: 64.
            let on_link = |a: &str| a == "fd00:ff:3::" || a == "fd00:ff:3::1";
            let local = on_link(&f.ipv6_src[0]) && on_link(&f.ipv6_dst[0]);
            assert_eq!(
                f.ipv6_hlim[0],
                if local {
                    64
                } else if inbound {
                    63
                } else {
                    62
                },
                "{at}: inner hop limit ({} {})",
                if inbound { "from" } else { "to" },
                link.iface
            );
        } else {
            // The appliance's own ICMP errors, into the tunnel the offending packet came
            // through: Time Exceeded (traceroute) and Fragmentation Needed (path MTU
            // discovery), from its address facing the sender, TTL 64, quoting the packet.
            if !inbound && f.ip_src[1] == link.icmp_src && f.ip_proto[1] == 1 {
                let kind = (f.icmp_type[0], f.icmp_code[0]);
                assert!(
                    kind == (11, 0) || kind == (3, 4),
                    "{at}: ICMP {kind:?} from the appliance"
                );
                assert_eq!(f.ip_ttl[1], 64, "{at}: the appliance's ICMP error's TTL");
                assert_eq!(f.ip_proto.len(), 3, "{at}: an ICMP error quoting a packet");
                if kind == (3, 4) {
                    s.frag_needed += 1;
                } else {
                    s.time_exceeded += 1;
                }
                s.tx_packets += 1;
                s.tx_bytes += f.len;
                continue;
            }
            // An ICMP error a host sends back through the tunnels (port unreachable, for
            // traceroute) quotes the packet it is about: a third IPv4 header.
            let error = f.ip_proto[1] == 1 && matches!(f.icmp_type.first(), Some(3 | 11));
            assert_eq!(
                f.ip_proto.len(),
                if error { 3 } else { 2 },
                "{at}: not one inner IPv4 packet"
            );
            // Inner TTL: the host's 64 less its router on the way in, and less the appliance
            // on the way out. Between router C's kernel and the appliance's, inside the tunnel
            // (the link 169.254.3.0/31, the exception path), nobody forwards: 64.
            let inner_ttl = f.ip_ttl[1];
            let on_link = |a: &str| a == "169.254.3.0" || a == "169.254.3.1";
            // The appliance's probes of a tunnel: from its endpoint to itself, nobody forwards
            // them before they leave either.
            let own_probe = !inbound && f.ip_src[1] == link.our_ip && f.ip_dst[1] == link.our_ip;
            let local = own_probe || (on_link(&f.ip_src[1]) && on_link(&f.ip_dst[1]));
            // Traceroute's probes (UDP to port 33434 + the probe's index; with one probe a hop,
            // that is its TTL - 1) come with the TTL the host gave them less the router's hop,
            // and leave with one less.
            let probe = (f.ip_proto[1] == 17)
                .then(|| f.udp_dstport.first().copied())
                .flatten()
                .filter(|p| (TRACEROUTE_PORT..TRACEROUTE_PORT + 64).contains(p))
                .map(|p| p - TRACEROUTE_PORT);
            assert_eq!(
                inner_ttl,
                if local {
                    64
                } else if let Some(hops) = probe {
                    if inbound {
                        hops
                    } else {
                        hops - 1
                    }
                } else if inbound {
                    63
                } else {
                    62
                },
                "{at}: inner TTL ({} {})",
                if inbound { "from" } else { "to" },
                link.iface
            );
        }
        let bad_gre = f.gre_checksum_status == Some(0);
        if bad_gre {
            assert!(
                inbound && tunnel == "site-a-csum",
                "{at}: a bad GRE checksum where Open vSwitch's csum+seq bug cannot be"
            );
            s.bad_gre_checksum += 1;
        } else if inbound {
            s.rx_packets += 1;
            s.rx_bytes += f.len;
        } else {
            s.tx_packets += 1;
            s.tx_bytes += f.len;
        }
    }
    unreachable
}

/// Pings both ways between every pair of `hosts`, each reply with the TTL (IPv6: hop limit)
/// the hops imply, a line each in `summary`. A busy machine can lose a ping inside Open
/// vSwitch's userspace datapath or a veth before it ever reaches the appliance: a pair gets
/// up to three rounds to answer PINGS times; the appliance's own count is checked exactly
/// against the captures after teardown. Whether no ping was lost.
fn ping_every_pair(lab: &Lab, hosts: &[(char, &str)], summary: &mut Vec<String>) -> bool {
    let mut lossless = true;
    for &(from, _) in hosts {
        for &(to, to_ip) in hosts {
            if from == to {
                continue;
            }
            let n = PINGS.to_string();
            let (mut got, mut ttls, mut rtts, mut outs) =
                (0, Vec::new(), Vec::new(), String::new());
            for _round in 0..3 {
                let (g, t, r, out) = ping(lab, from, &["-c", &n, "-i", "0.2", "-W", "2", to_ip]);
                got += g;
                ttls.extend(t);
                rtts.extend(r);
                outs.push_str(&out);
                if got >= PINGS {
                    break;
                }
                lossless = false;
            }
            assert!(
                got >= PINGS,
                "ping host {from} -> host {to}, three rounds:\n{outs}"
            );
            assert!(
                ttls.iter().all(|&t| t == TTL_AT_HOST),
                "ping host {from} -> host {to}: TTLs {ttls:?}, expected {TTL_AT_HOST} \
                 (router, backbone, router each decrement it)"
            );
            summary.push(format!(
                "ping host {} -> host {} ({to_ip}): {got} replies, ttl={TTL_AT_HOST}, rtt {} ms",
                from.to_ascii_uppercase(),
                to.to_ascii_uppercase(),
                rtts.iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
    }
    lossless
}

#[test]
fn interop_lab_with_open_vswitch_and_ipip_client_routers() {
    let started = Instant::now();
    let mut lab = Lab::up();
    let mut summary = Vec::new();

    // Pings both ways between every pair of hosts, IPv4 then IPv6.
    for (family, hosts) in [("IPv4", HOSTS), ("IPv6", HOSTS6)] {
        let before = lab.counters();
        let t = Instant::now();
        let all = ping_every_pair(&lab, &hosts, &mut summary);
        summary.push(format!(
            "{family} pings between every pair of hosts: {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        // Each ordered pair: the request in through the source's tunnel and out through
        // the destination's, the reply the other way: every tunnel 2 * 2 * PINGS each way
        // when no ping was lost, at least that otherwise. Both families alike: a GRE
        // tunnel carries IPv6 with protocol type 0x86DD, the IP-in-IP one as protocol 41.
        // site-c is probed: the appliance's own echo probes also leave through its tunnel
        // (and come back natively, not through it).
        let d = delta(&before, &lab.counters());
        for t in ["site-a", "site-b", "site-c"] {
            for f in ["rx_packets", "tx_packets"] {
                let n = d[&format!("{t}.{f}")];
                if t == "site-c" && f == "tx_packets" && all {
                    assert_probed_tx(&d, t, 4 * PINGS);
                } else if all {
                    assert_eq!(n, 4 * PINGS, "{family}: {t}.{f} after the pings: {d:?}");
                } else {
                    assert!(n >= 4 * PINGS, "{family}: {t}.{f} after the pings: {d:?}");
                }
            }
        }
        assert_eq!(d["site-a-csum.rx_packets"] + d["site-a-csum.tx_packets"], 0);
        assert_no_drops_but(&d, "", &format!("the {family} pings"));
    }
    // Each router pings the appliance's address on its link: the workers answer (SPEC.md
    // ICMP errors, rule 5), and count it.
    let before = lab.counters()["echo_replies"]
        .as_u64()
        .expect("echo_replies");
    for (r, x) in [('a', 1), ('b', 2), ('c', 3)] {
        let target = format!("172.16.{x}.1");
        let out = lab.exec(
            &format!("r{r}"),
            &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", &target],
        );
        let s = text(&out);
        let got = s.lines().filter(|l| l.contains("bytes from")).count();
        assert!(got >= 2, "router {r} pings the appliance at {target}:\n{s}");
        summary.push(format!(
            "ping the appliance from router {} ({target}): {got} of 3 answered",
            r.to_ascii_uppercase()
        ));
    }
    let echoed = lab.counters()["echo_replies"]
        .as_u64()
        .expect("echo_replies")
        - before;
    assert!(echoed >= 6, "the appliance counted {echoed} echo replies");

    // traceroute: the appliance's hop answers Time Exceeded from its address facing the
    // sender (SPEC.md ICMP errors, rule 2): site-a's endpoint (its tunnel has no link) for
    // host A, site-c's link address for host C. Open vSwitch's hops stay silent (its
    // dec_ttl drops what expires: no controller), router C's kernel answers.
    let before = lab.counters();
    for (from, to_ip, want) in [
        (
            'a',
            "10.2.0.10",
            [None, Some("172.16.1.1"), None, Some("10.2.0.10")],
        ),
        (
            'c',
            "10.1.0.10",
            [
                Some("10.3.0.1"),
                Some("169.254.3.1"),
                None,
                Some("10.1.0.10"),
            ],
        ),
    ] {
        let out = traceroute(&lab, from, to_ip, &want);
        summary.push(format!(
            "traceroute -n from host {}:\n  {}",
            from.to_ascii_uppercase(),
            out.trim_end().replace('\n', "\n  ")
        ));
    }
    let d = delta(&before, &lab.counters());
    assert!(d["icmp.time_exceeded"] >= 2, "{d:?}");
    assert_eq!(
        d["drop.ttl_exceeded"],
        d["icmp.time_exceeded"] + d["icmp.rate_limited"],
        "every probe that expired at the appliance was answered: {d:?}"
    );
    assert_no_drops_but(&d, "drop.ttl_exceeded", "the traceroutes");

    // TCP: unkeyed GRE -> keyed GRE, then keyed GRE -> IP-in-IP, between hosts with MTU
    // 1500. Their full-size segments reach the appliance (the underlay carries them) but do
    // not fit the egress tunnel (mtu 1500 outside): dropped as mtu_exceeded and answered
    // with Fragmentation Needed and the tunnel's inner MTU, into the tunnel they came
    // through; the sender's path MTU discovery takes it from there.
    for (from, to, mib, port, ingress, egress, inner_mtu) in [
        ('b', 'a', 16, 5001, "site-b", "site-a", 1500 - 20 - 8),
        ('a', 'c', 10, 5002, "site-a", "site-c", 1500 - 20),
    ] {
        let before = lab.counters();
        let line = transfer(&lab, from, to, &HOSTS, mib << 20, port);
        let d = delta(&before, &lab.counters());
        let (too_big, answered) = (d["drop.mtu_exceeded"], d["icmp.fragmentation_needed"]);
        assert!(
            answered >= 1,
            "no Fragmentation Needed: no path MTU discovery through {egress}: {d:?}"
        );
        assert_eq!(too_big, answered + d["icmp.rate_limited"], "{d:?}");
        let rx = |t: &str| d[&format!("{t}.rx_packets")];
        let tx = |t: &str| d[&format!("{t}.tx_packets")];
        if egress == "site-c" {
            assert_probed_tx(&d, egress, rx(ingress) - too_big);
        } else {
            assert_eq!(rx(ingress), tx(egress) + too_big, "{d:?}");
        }
        assert_eq!(tx(ingress), rx(egress) + answered, "{d:?}");
        assert!(
            d[&format!("{ingress}.rx_bytes")] > (mib as u64) << 20,
            "{d:?}"
        );
        assert!(
            rx(ingress) >= ((mib as u64) << 20) / (inner_mtu - 40),
            "fewer packets than {mib} MiB needs: {d:?}"
        );
        assert_no_drops_but(&d, "drop.mtu_exceeded", "the transfer");
        summary.push(format!(
            "{line}; path MTU discovery: {answered} Fragmentation Needed (next-hop MTU \
             {inner_mtu}, {egress}'s inner MTU) for {too_big} segments too big"
        ));
    }

    // TCP over IPv6: unkeyed GRE -> keyed GRE, then keyed GRE -> IPv6-in-IPv4 (protocol
    // 41), between hosts with MTU 1500. IPv6 routers never fragment (RFC 8200 section 5):
    // the appliance drops each segment too big for the egress tunnel (mtu_exceeded) and
    // answers it with ICMPv6 Packet Too Big carrying that tunnel's inner MTU (RFC 4443
    // 3.2), into the tunnel it came through. The sender takes that MTU as its path MTU
    // (RFC 8201 section 4: it is at least 1,280), which `ip -6 route get` shows, and sends
    // smaller segments: the transfer completes.
    let host6 = |h: char| HOSTS6.iter().find(|x| x.0 == h).expect("host").1;
    let path_mtu = |from: char, to: char| -> Option<u32> {
        let out = lab.exec(
            &format!("h{from}"),
            &["ip", "-6", "route", "get", host6(to)],
        );
        assert!(out.status.success(), "ip -6 route get: {}", text(&out));
        let s = text(&out);
        let mut words = s.split_whitespace().skip_while(|w| *w != "mtu");
        words.nth(1).map(|m| m.parse().expect("an MTU"))
    };
    let ipv6_transfers = Instant::now();
    for (from, to, port, ingress, egress) in [
        ('b', 'a', 5003, "site-b", "site-a"),
        ('a', 'c', 5004, "site-a", "site-c"),
    ] {
        let inner_mtu = LINKS
            .iter()
            .find(|l| l.tunnels[0].1 == egress)
            .expect("egress link")
            .inner_mtu;
        assert_eq!(
            path_mtu(from, to),
            None,
            "host {from} knows a path MTU to host {to} before its first large packet"
        );
        let before = lab.counters();
        let line = transfer(&lab, from, to, &HOSTS6, TRANSFER6_BYTES, port);
        let d = delta(&before, &lab.counters());
        let (too_big, answered) = (d["drop.mtu_exceeded"], d["icmp.icmpv6_packet_too_big"]);
        assert!(
            answered >= 1,
            "no Packet Too Big: no IPv6 path MTU discovery through {egress}: {d:?}"
        );
        assert_eq!(too_big, answered + d["icmp.rate_limited"], "{d:?}");
        assert_eq!(
            d["icmp.fragmentation_needed"], 0,
            "an IPv6 packet is answered in ICMPv6: {d:?}"
        );
        let learned = path_mtu(from, to);
        assert_eq!(
            learned,
            Some(inner_mtu),
            "host {from}'s path MTU to host {to}: {egress}'s inner MTU, from the Packet Too Big"
        );
        let rx = |t: &str| d[&format!("{t}.rx_packets")];
        let tx = |t: &str| d[&format!("{t}.tx_packets")];
        if egress == "site-c" {
            assert_probed_tx(&d, egress, rx(ingress) - too_big);
        } else {
            assert_eq!(rx(ingress), tx(egress) + too_big, "{d:?}");
        }
        assert_eq!(tx(ingress), rx(egress) + answered, "{d:?}");
        // No segment carries more than the inner MTU less the IPv6 and TCP headers.
        assert!(
            rx(ingress) >= TRANSFER6_BYTES as u64 / u64::from(inner_mtu - 60),
            "fewer packets than {TRANSFER6_BYTES} bytes need: {d:?}"
        );
        assert_no_drops_but(&d, "drop.mtu_exceeded", "the IPv6 transfer");
        summary.push(format!(
            "IPv6 {line}; path MTU discovery: {answered} Packet Too Big (MTU {inner_mtu}, \
             {egress}'s inner MTU) for {too_big} segments too big; host {}'s path MTU to \
             {}: {inner_mtu}",
            from.to_ascii_uppercase(),
            host6(to)
        ));
    }

    summary.push(format!(
        "IPv6 transfers with their checks: {:.1} s",
        ipv6_transfers.elapsed().as_secs_f64()
    ));

    // Open vSwitch 3.1 with csum=true and seq=true computes the GRE checksum before it
    // writes the sequence number: only the packet with sequence number 0 (whose field was
    // 0 when summed) is right. The appliance must drop the others as bad_gre_checksum.
    let before = lab.counters();
    let n = CSUM_PINGS.to_string();
    let (replies, _, _, out) = ping(
        &lab,
        'a',
        &[
            "-c",
            &n,
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            CSUM_SOURCE,
            HOSTS[1].1,
        ],
    );
    let d = delta(&before, &lab.counters());
    let (bad, accepted) = (d["drop.bad_gre_checksum"], d["site-a-csum.rx_packets"]);
    // A request lost before the appliance (see the pings above) is neither; the captures
    // account for every one that arrived, after teardown.
    assert!(
        bad + accepted <= CSUM_PINGS,
        "more csum+seq packets than pings sent: {d:?}"
    );
    assert!(
        accepted <= 1,
        "only Open vSwitch's first csum+seq packet (sequence 0) has a right checksum: {d:?}"
    );
    assert!(
        bad >= 1 && bad + accepted >= CSUM_PINGS - 1,
        "Open vSwitch's csum+seq packets after the first must be dropped as bad_gre_checksum \
         (fixed in this Open vSwitch? then update this test and the README): {d:?}\n{out}"
    );
    assert_eq!(d["site-a-csum.tx_packets"], accepted, "{d:?}");
    assert!(
        replies <= accepted,
        "replies to the accepted requests only:\n{out}"
    );
    assert_no_drops_but(&d, "drop.bad_gre_checksum", "the csum+seq pings");
    summary.push(format!(
        "csum+seq GRE (Open vSwitch 3.1): {CSUM_PINGS} pings, {accepted} accepted, {bad} \
         dropped as bad_gre_checksum"
    ));

    summary.extend(exception_path(&lab));

    // Teardown: the appliance stops on SIGTERM and writes its counters, tcpdump flushes,
    // every process the script started is gone, so are the namespaces.
    let pids: Vec<(String, String)> = std::fs::read_dir(lab.dir.join("pids"))
        .expect("the lab's pid files")
        .filter_map(Result::ok)
        .map(|e| {
            let s = std::fs::read_to_string(e.path()).unwrap_or_default();
            let mut l = s.lines();
            (
                l.next().unwrap_or_default().to_owned(),
                l.next().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(pids.len(), 9, "pid files: {pids:?}");
    let out = lab.down();
    assert!(
        out.status.success(),
        "scripts/interop-lab.sh down: {}",
        text(&out)
    );
    for (pid, cmd) in &pids {
        let running = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let running = String::from_utf8_lossy(&running).replace('\0', " ");
        assert!(
            !running.contains(cmd.as_str()),
            "pid {pid} ({cmd}) still runs after down"
        );
    }
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !text(&netns).contains(&format!("{}-", lab.prefix)),
        "namespaces left after down:\n{}",
        text(&netns)
    );
    let log = std::fs::read_to_string(lab.dir.join("backbone.log")).unwrap_or_default();
    let stats: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.dir.join("stats.json")).expect("the appliance's stats.json"),
    )
    .expect("stats JSON");

    // The captures, dissected: and the final counters against them, packet for packet.
    let mut seen: BTreeMap<&'static str, Seen> = BTreeMap::new();
    let mut unreachable = 0;
    // Links whose capture lost packets (tcpdump's kernel buffer overflowed on a busy
    // machine): there the appliance's counts can only be at least the capture's.
    let mut lossy: Vec<&str> = Vec::new();
    for link in &LINKS {
        let tcpdump = std::fs::read_to_string(lab.dir.join(format!("tcpdump-{}.log", link.iface)))
            .unwrap_or_default();
        let stat = |suffix: &str| {
            tcpdump
                .lines()
                .find_map(|l| l.strip_suffix(suffix))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "tcpdump on {} did not report{suffix}:\n{tcpdump}",
                        link.iface
                    )
                })
        };
        // What the kernel dropped, or passed to tcpdump and tcpdump never wrote.
        let dropped = stat(" packets dropped by kernel")
            .max(stat(" packets received by filter").saturating_sub(stat(" packets captured")));
        if dropped > 0 {
            lossy.push(link.iface);
            summary.push(format!(
                "capture on {}: tcpdump lost {dropped} packets, counters checked as at least \
                 the capture's",
                link.iface
            ));
        } else {
            summary.push(format!(
                "capture on {}: {} frames, none lost",
                link.iface,
                stat(" packets captured")
            ));
        }
        let frames = dissect(&lab.dir.join(format!("capture-{}.pcap", link.iface)));
        assert!(!frames.is_empty(), "nothing captured on {}", link.iface);
        unreachable += check_capture(link, &frames, &mut seen);
    }
    let mut bad_total = 0;
    for link in &LINKS {
        let exact = !lossy.contains(&link.iface);
        for (_, t) in link.tunnels {
            let s = seen.get(t).copied().unwrap_or_default();
            bad_total += s.bad_gre_checksum;
            for (field, want) in [
                ("rx_packets", s.rx_packets),
                ("tx_packets", s.tx_packets),
                ("rx_bytes", s.rx_bytes),
                ("tx_bytes", s.tx_bytes),
            ] {
                let got = tunnel_counter(&stats, t, field);
                assert!(
                    got == want || (!exact && got > want),
                    "tunnel {t} {field}: the appliance counts {got}, the capture {want} \
                     ({s:?}); ports: {}",
                    stats["ports"]
                );
            }
            summary.push(format!(
                "tunnel {t:<12} rx {:>6} packets {:>9} bytes, tx {:>6} packets {:>9} bytes \
                 ({} capture)",
                s.rx_packets,
                s.rx_bytes,
                s.tx_packets,
                s.tx_bytes,
                if exact { "=" } else { "<=" }
            ));
        }
    }
    // Open vSwitch's first packet (sequence 0) has a good checksum; a busy machine may also
    // lose a ping before it reaches the tunnel, so ask only for the bug to have shown.
    assert!(bad_total >= 1, "bad GRE checksums captured: {bad_total}");
    let bad_counted = drop_counter(&stats, "bad_gre_checksum");
    assert!(
        bad_counted == bad_total || (lossy.contains(&"to-a") && bad_counted > bad_total),
        "bad_gre_checksum {bad_counted} against the {bad_total} frames tshark finds with a bad \
         GRE checksum"
    );
    // The appliance's own ICMP errors: what the captures hold, and one for each packet
    // that expired or was too big (none rate-limited away unseen).
    let icmp = |k: &str| stats["icmp_sent"][k].as_u64().expect("icmp_sent");
    let (fn_seen, te_seen, ptb_seen) = seen.values().fold((0, 0, 0), |(a, b, c), s| {
        (a + s.frag_needed, b + s.time_exceeded, c + s.packet_too_big)
    });
    let exact = lossy.is_empty();
    for (kind, captured) in [
        ("fragmentation_needed", fn_seen),
        ("time_exceeded", te_seen),
        ("icmpv6_packet_too_big", ptb_seen),
    ] {
        let sent = icmp(kind);
        assert!(
            sent == captured || (!exact && sent > captured),
            "icmp_sent {kind}: the appliance counts {sent}, the captures hold {captured}"
        );
    }
    assert!(
        fn_seen >= 1 && te_seen >= 2 && ptb_seen >= 2,
        "{}",
        stats["icmp_sent"]
    );
    assert_eq!(
        drop_counter(&stats, "mtu_exceeded") + drop_counter(&stats, "ttl_exceeded"),
        icmp("fragmentation_needed")
            + icmp("time_exceeded")
            + icmp("icmpv6_packet_too_big")
            + stats["icmp_rate_limited"].as_u64().unwrap_or(0),
        "every packet too big or expired answered: {} {}",
        stats["drops"],
        stats["icmp_sent"]
    );
    for (reason, n) in stats["drops"].as_object().expect("drops") {
        if !["bad_gre_checksum", "mtu_exceeded", "ttl_exceeded"].contains(&reason.as_str()) {
            assert_eq!(n.as_u64(), Some(0), "drops {reason}: {}", stats["drops"]);
        }
    }
    summary.push(format!(
        "drops: bad_gre_checksum {bad_total} (= frames tshark finds with a bad GRE checksum), \
         mtu_exceeded {} and ttl_exceeded {} (each answered: icmp_sent fragmentation_needed \
         {}, icmpv6_packet_too_big {}, time_exceeded {}, as captured), nothing else",
        drop_counter(&stats, "mtu_exceeded"),
        drop_counter(&stats, "ttl_exceeded"),
        icmp("fragmentation_needed"),
        icmp("icmpv6_packet_too_big"),
        icmp("time_exceeded"),
    ));

    if unreachable > 0 {
        summary.push(format!(
            "router C's raw socket overflowed: {unreachable} IP-in-IP packets answered with ICMP \
             protocol unreachable (TCP resent them)"
        ));
    }
    println!(
        "\n== interop lab ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    for line in &summary {
        println!("{line}");
    }
    println!(
        "\n{}",
        log.lines()
            .skip_while(|l| !l.starts_with("port "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = std::fs::remove_dir_all(&lab.dir);
}
