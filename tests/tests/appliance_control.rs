//! The real binary's control path: ARP answered and learned, next hops without a static
//! neighbour resolved by ARP requests, and SIGTERM stopping a run cleanly with counters.

use backbone_tests::{
    backbone_bin, ctl, file_prefix, pcap, repo_root, scapy, scratch_dir, wait_for, KillOnDrop,
};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The demo lab's configuration with an EAL file prefix of this test's own (`tag`): the
/// tests of this file run at the same time, and one file prefix is one instance's.
fn demo_lab(tag: &str) -> String {
    let lab = std::fs::read_to_string(repo_root().join("demo/lab.toml")).unwrap();
    let own = lab.replace(
        "--file-prefix=backbone-demo",
        &format!("--file-prefix={}", file_prefix(tag)),
    );
    assert_ne!(own, lab, "demo/lab.toml changed: update this test");
    own
}

/// The demo lab with acme's static neighbour removed and a second TX capture on the client
/// port (net_pcap gives one TX queue per tx_pcap: the second is the control thread's).
fn lab_without_acme_neighbor(dir: &std::path::Path, tag: &str, rx: &str) -> std::path::PathBuf {
    let lab = demo_lab(tag);
    let without = lab.replace(
        "  [[port.neighbor]]\n  ip = \"198.51.100.10\"           # acme's router\n  mac = \"02:00:00:00:0a:0a\"\n",
        "",
    );
    assert_ne!(without, lab, "demo/lab.toml changed: update this test");
    let cfg = without.replace(
        "net_pcap0,rx_pcap=clients-in.pcap,tx_pcap=clients-out.pcap",
        &format!("net_pcap0,{rx},tx_pcap=clients-out.pcap,tx_pcap=control-out.pcap"),
    );
    let path = dir.join("lab.toml");
    std::fs::write(&path, cfg).unwrap();
    pcap::write(&dir.join("internet-in.pcap"), &[]).unwrap();
    path
}

fn tshark_lines(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark (scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Run the appliance in `dir` on `cfg` until its RX has been idle for `idle_ms`; its
/// final counters.
fn run_until_idle(dir: &std::path::Path, cfg: &std::path::Path, idle_ms: u32) -> serde_json::Value {
    let out = Command::new(backbone_bin())
        .current_dir(dir)
        .args(["run", "--config"])
        .arg(cfg)
        .args([
            "--no-control-socket",
            "--stop-when-idle",
            &idle_ms.to_string(),
            "--stats",
            "stats.json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap()
}

#[test]
fn arp_is_answered_learned_and_asked_for() {
    let dir = scratch_dir("appliance-arp");
    // acme's router asks who has 192.0.2.1 (our endpoint), then initech's hosts send to acme.
    scapy(&format!(
        "from scapy.all import *\n\
         p=[Ether(src='02:00:00:00:0a:0a',dst='ff:ff:ff:ff:ff:ff')/ARP(op=1,hwsrc='02:00:00:00:0a:0a',psrc='198.51.100.10',pdst='192.0.2.1'),\n\
            Ether(src='02:00:00:00:0a:0a',dst='ff:ff:ff:ff:ff:ff')/ARP(op=1,hwsrc='02:00:00:00:0a:0a',psrc='198.51.100.10',pdst='192.0.2.99')]\n\
         p+=[Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.%d'%(i%250+1),dst='10.1.0.1')/UDP(dport=5001) for i in range(300)]\n\
         wrpcap('{}', p)",
        dir.join("clients-in.pcap").display()
    ));
    let cfg = lab_without_acme_neighbor(&dir, "appliance-arp", "rx_pcap=clients-in.pcap");
    let stats = run_until_idle(&dir, &cfg, 500);
    assert_eq!(
        stats["arp_replies"], 1,
        "only the request for our address is answered"
    );
    assert_eq!(
        stats["arp_learned"], 1,
        "acme's router is a wanted next hop: learned"
    );
    let forwarded = stats["tunnels"][0]["tx_packets"].as_u64().unwrap();
    let no_neighbor = stats["drops"]["no_neighbor"].as_u64().unwrap();
    assert_eq!(
        forwarded + no_neighbor,
        300,
        "every packet to acme is either sent or counted"
    );

    // The reply, as tshark reads it: from our MAC, 192.0.2.1 is-at 02:00:00:00:00:01.
    let replies = tshark_lines(
        &dir.join("clients-out.pcap"),
        "arp.opcode == 2",
        &[
            "eth.src",
            "eth.dst",
            "arp.src.proto_ipv4",
            "arp.src.hw_mac",
            "arp.dst.proto_ipv4",
        ],
    );
    assert_eq!(
        replies,
        vec![
            "02:00:00:00:00:01|02:00:00:00:0a:0a|192.0.2.1|02:00:00:00:00:01|198.51.100.10"
                .to_owned()
        ]
    );
}

/// A learned entry never replaces a static one: acme's router is configured at
/// 02:00:00:00:0a:0a; an ARP request from its address claiming another MAC is answered (it
/// asks for our address) but teaches nothing, and acme's traffic still goes to the
/// configured MAC.
#[test]
fn a_static_neighbor_is_never_replaced_by_what_arp_says() {
    let dir = scratch_dir("appliance-arp-static");
    scapy(&format!(
        "from scapy.all import *\n\
         p=[Ether(src='02:00:00:00:66:66',dst='ff:ff:ff:ff:ff:ff')/ARP(op=1,hwsrc='02:00:00:00:66:66',psrc='198.51.100.10',pdst='192.0.2.1')]\n\
         p+=[Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.%d'%(i%250+1),dst='10.1.0.1')/UDP(dport=5001) for i in range(100)]\n\
         wrpcap('{}', p)",
        dir.join("clients-in.pcap").display()
    ));
    let lab = demo_lab("appliance-arp-static");
    let cfg = lab.replace(
        "net_pcap0,rx_pcap=clients-in.pcap,tx_pcap=clients-out.pcap",
        "net_pcap0,rx_pcap=clients-in.pcap,tx_pcap=clients-out.pcap,tx_pcap=control-out.pcap",
    );
    assert_ne!(cfg, lab, "demo/lab.toml changed: update this test");
    let path = dir.join("lab.toml");
    std::fs::write(&path, cfg).unwrap();
    pcap::write(&dir.join("internet-in.pcap"), &[]).unwrap();
    let stats = run_until_idle(&dir, &path, 500);
    // Read, and refused by the control thread: the request reached it.
    assert_eq!(
        stats["arp_replies"], 1,
        "the request for our address is answered"
    );
    assert_eq!(
        stats["arp_learned"], 1,
        "the worker handed the claim over: {stats}"
    );
    assert_eq!(
        stats["arp_static_kept"], 1,
        "the static entry kept: {stats}"
    );
    assert_eq!(stats["neighbors_learned"], 0, "{stats}");
    assert_eq!(
        stats["tunnels"][0]["tx_packets"], 100,
        "{}",
        stats["tunnels"]
    );
    let to = tshark_lines(
        &dir.join("clients-out.pcap"),
        "ip.proto == 47",
        &["eth.dst"],
    );
    assert_eq!(to.len(), 100, "acme's packets captured: {to:?}");
    assert!(
        to.iter().all(|m| m == "02:00:00:00:0a:0a"),
        "acme's packets to the configured MAC only: {to:?}"
    );
}

#[test]
fn unresolved_next_hops_are_asked_for_by_the_control_thread() {
    let dir = scratch_dir("appliance-arp-ask");
    // Only traffic toward acme, whose router's MAC nobody configured or announced.
    scapy(&format!(
        "from scapy.all import *\n\
         wrpcap('{}', [Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.1',dst='10.1.0.1')/UDP(dport=5001) for i in range(50)])",
        dir.join("clients-in.pcap").display()
    ));
    let cfg = lab_without_acme_neighbor(&dir, "appliance-arp-ask", "rx_pcap=clients-in.pcap");
    let stats = run_until_idle(&dir, &cfg, 500);
    assert_eq!(stats["drops"]["no_neighbor"], 50);
    // The control thread asked for acme's router, from our endpoint, on its own TX queue,
    // and no more than once a second.
    let asks = tshark_lines(
        &dir.join("control-out.pcap"),
        "arp.opcode == 1",
        &[
            "eth.src",
            "eth.dst",
            "arp.src.proto_ipv4",
            "arp.dst.proto_ipv4",
        ],
    );
    assert!(
        !asks.is_empty(),
        "an ARP request for the unresolved next hop was sent"
    );
    assert!(asks.len() <= 2, "rate-limited: {asks:?}");
    assert!(
        asks.iter()
            .all(|a| a == "02:00:00:00:00:01|ff:ff:ff:ff:ff:ff|192.0.2.1|198.51.100.10"),
        "{asks:?}"
    );
}

#[test]
fn sigterm_stops_a_run_cleanly_and_writes_counters() {
    let dir = scratch_dir("appliance-sigterm");
    scapy(&format!(
        "from scapy.all import *\n\
         wrpcap('{}', [Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.1',dst='10.2.0.1')/UDP(dport=5001)])",
        dir.join("clients-in.pcap").display()
    ));
    // An endless source: the same packet again and again until we are told to stop.
    let cfg = lab_without_acme_neighbor(
        &dir,
        "appliance-sigterm",
        "rx_pcap=clients-in.pcap,infinite_rx=1",
    );
    let sock = dir.join("ctl/api.sock");
    let mut guard = KillOnDrop(Some(
        Command::new(backbone_bin())
            .current_dir(&dir)
            .args(["run", "--config"])
            .arg(&cfg)
            .args(["--stats", "stats.json", "--control-socket"])
            .arg(&sock)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // The signal once the live counters show more than 1,000 packets into globex.
    let live = wait_for(
        Duration::from_secs(60),
        "more than 1,000 packets into globex, live",
        || {
            if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
                let out = guard.0.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "backbone exited ({status}) before the signal:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let c = ctl(&sock, &["counters"])?;
            let tx = c["tunnels"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["name"] == "globex"))
                .and_then(|t| t["tx_packets"].as_u64())
                .ok_or_else(|| format!("no globex tx_packets in {c}"))?;
            if tx > 1000 {
                Ok(tx)
            } else {
                Err(format!("globex tx_packets {tx}"))
            }
        },
    );
    let out = guard.stop("TERM", Duration::from_secs(20));
    assert!(
        out.status.success(),
        "exit status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    let globex_tx = stats["tunnels"][1]["tx_packets"].as_u64().unwrap();
    assert!(
        globex_tx > 1000,
        "forwarded from the endless source: {globex_tx}"
    );
    assert!(
        globex_tx >= live,
        "the final count {globex_tx} is below the live one {live}"
    );
    let total_drops: u64 = stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total_drops, 0, "{}", stats["drops"]);
}

/// 100,000 native routes, each through its own next hop that never answers ARP, and
/// traffic to 5,000 of them: every packet is dropped as `no_neighbor`, and the control
/// thread asks for the next hops within its global ARP budget (1,000 requests a second),
/// never for one next hop twice within a second, and counts what it could not ask for yet.
#[test]
fn a_hundred_thousand_unresolved_next_hops_stay_within_the_arp_budget() {
    const ROUTES: u32 = 100_000;
    const PACKETS: u32 = 5_000;
    let dir = scratch_dir("appliance-arp-budget");
    let lab = demo_lab("appliance-arp-budget");
    let mut cfg = lab.replace(
        "net_pcap1,rx_pcap=internet-in.pcap,tx_pcap=internet-out.pcap",
        "net_pcap1,rx_pcap=internet-in.pcap,tx_pcap=internet-out.pcap,tx_pcap=control-out.pcap",
    );
    assert_ne!(cfg, lab, "demo/lab.toml changed: update this test");
    // Route i: 20.0.0.0 + i /32 natively out of internet0 to 100.64.0.0 + i.
    for i in 0..ROUTES {
        let dst = std::net::Ipv4Addr::from(0x1400_0000 + i);
        let nh = std::net::Ipv4Addr::from(0x6440_0000 + i);
        cfg.push_str(&format!(
            "\n[[route]]\nprefix = \"{dst}/32\"\nport = \"internet0\"\nnext_hop = \"{nh}\"\n"
        ));
    }
    let cfg_path = dir.join("lab.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    pcap::write(&dir.join("internet-in.pcap"), &[]).unwrap();
    // initech's traffic to 5,000 of those destinations, one packet each.
    scapy(&format!(
        "from scapy.all import *\n\
         import ipaddress\n\
         wrpcap('{}', [Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.1',dst=str(ipaddress.IPv4Address(0x14000000 + i * 20)))/UDP(dport=5001) for i in range({PACKETS})])",
        dir.join("clients-in.pcap").display()
    ));
    // Idle for 3 s after the last packet: the control thread keeps asking meanwhile.
    let stats = run_until_idle(&dir, &cfg_path, 3000);
    assert_eq!(stats["drops"]["no_neighbor"], PACKETS, "{}", stats["drops"]);
    let elapsed = stats["elapsed_s"].as_f64().unwrap();
    // Every request the control thread sent, with its time and target.
    let asks = tshark_lines(
        &dir.join("control-out.pcap"),
        "arp.opcode == 1",
        &[
            "frame.time_epoch",
            "arp.dst.proto_ipv4",
            "arp.src.proto_ipv4",
        ],
    );
    let sent = stats["arp_requests"].as_u64().unwrap();
    assert_eq!(asks.len() as u64, sent, "requests captured = arp_requests");
    assert!(
        stats["arp_requests_deferred"].as_u64().unwrap() > 0,
        "100,000 next hops cannot all be asked for at once: {stats}"
    );
    // The budget: 1,000 a second and a burst of 100, over the run.
    const RATE: f64 = 1000.0;
    const BURST: f64 = 100.0;
    assert!(
        sent as f64 <= RATE * elapsed + BURST,
        "{sent} ARP requests in {elapsed:.1} s"
    );
    assert!(
        sent as f64 >= RATE,
        "{sent} ARP requests in {elapsed:.1} s: too few"
    );
    // The pacer counts on its own clock; the capture stamps each request when the port
    // writes it, a little later, and the first batch (cold mbufs, first write) later than
    // the rest. Both checks below allow that much between the two clocks.
    const CLOCK_SLACK_S: f64 = 0.02;
    let mut last: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    let mut per_second: std::collections::BTreeMap<i64, u64> = Default::default();
    let t0: f64 = asks[0].split('|').next().unwrap().parse().unwrap();
    for a in &asks {
        let f: Vec<&str> = a.split('|').collect();
        let t: f64 = f[0].parse().unwrap();
        assert_eq!(f[2], "203.0.113.1", "asked from internet0's address: {a}");
        let target: std::net::Ipv4Addr = f[1].parse().unwrap();
        let i = u32::from(target).wrapping_sub(0x6440_0000);
        assert!(i < ROUTES, "a request for {target}, no next hop of ours");
        if let Some(prev) = last.insert(f[1].to_owned(), t) {
            assert!(
                t - prev >= 1.0 - CLOCK_SLACK_S,
                "{target} asked for twice in {:.3} s",
                t - prev
            );
        }
        *per_second.entry((t - t0) as i64).or_default() += 1;
    }
    // Any one second of the capture (pcap time, so a busy machine's pauses do not count
    // against it): within the rate and the burst, over a second and the slack of the pacer's.
    let most = (RATE * (1.0 + CLOCK_SLACK_S) + BURST) as u64;
    for (s, n) in &per_second {
        assert!(
            *n <= most,
            "{n} ARP requests in second {s} (at most {most}): {per_second:?}"
        );
    }
}

/// The demo lab with IPv6 on internet0 (2001:db8:100::1; link-local fe80::ff:fe00:101 from
/// its MAC), a native IPv6 route through a next hop without a static neighbour
/// (2001:db8:201::/48 via 2001:db8:100::fd), one through a static neighbour
/// (2001:db8:200::/48 via 2001:db8:100::fe at 02:00:00:00:fe:fe), and a second TX capture
/// on internet0 for the control thread's queue.
fn lab_with_ipv6(dir: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let lab = demo_lab(tag);
    let cfg = lab
        .replace(
            "net_pcap1,rx_pcap=internet-in.pcap,tx_pcap=internet-out.pcap",
            "net_pcap1,rx_pcap=internet-in.pcap,tx_pcap=internet-out.pcap,tx_pcap=control-out.pcap",
        )
        .replace(
            "addresses = [\"203.0.113.1\"]",
            "addresses = [\"203.0.113.1\", \"2001:db8:100::1\"]\n  [[port.neighbor]]\n  ip = \"2001:db8:100::fe\"\n  mac = \"02:00:00:00:fe:fe\"",
        );
    assert_eq!(
        cfg.matches("2001:db8:100::").count(),
        2,
        "demo/lab.toml changed: update this test"
    );
    let cfg = format!(
        "{cfg}\n[[route]]\nprefix = \"2001:db8:201::/48\"\nport = \"internet0\"\n\
         next_hop = \"2001:db8:100::fd\"\n\
         [[route]]\nprefix = \"2001:db8:200::/48\"\nport = \"internet0\"\n\
         next_hop = \"2001:db8:100::fe\"\n"
    );
    let path = dir.join("lab.toml");
    std::fs::write(&path, cfg).unwrap();
    pcap::write(&dir.join("clients-in.pcap"), &[]).unwrap();
    path
}

/// An IPv6 next hop without a static neighbour is solicited by the control thread (RFC
/// 4861 7.2.2: to its solicited-node group, hop limit 255, our MAC in the source
/// link-layer address option), at most once a second, while its packets drop as
/// `no_neighbor`; an advertisement that would replace a static neighbour is read, handed
/// to the control thread and refused, and the static next hop's traffic keeps its MAC.
#[test]
fn ipv6_next_hops_are_solicited_and_a_static_one_is_never_replaced() {
    let dir = scratch_dir("appliance-nd");
    scapy(&format!(
        "from scapy.all import *\n\
         p=[Ether(src='02:00:00:00:66:66',dst='02:00:00:00:01:01')/IPv6(src='2001:db8:100::fe',dst='2001:db8:100::1',hlim=255)/ICMPv6ND_NA(R=1,S=0,O=1,tgt='2001:db8:100::fe')/ICMPv6NDOptDstLLAddr(lladdr='02:00:00:00:66:66')]\n\
         p+=[Ether(src='02:00:00:00:fe:fe',dst='02:00:00:00:01:01')/IPv6(src='2001:db8:aaaa::1',dst='2001:db8:201::5',hlim=64)/UDP(dport=5001) for i in range(20)]\n\
         p+=[Ether(src='02:00:00:00:fe:fe',dst='02:00:00:00:01:01')/IPv6(src='2001:db8:aaaa::1',dst='2001:db8:200::5',hlim=64)/UDP(dport=5001) for i in range(10)]\n\
         wrpcap('{}', p)",
        dir.join("internet-in.pcap").display()
    ));
    let cfg = lab_with_ipv6(&dir, "appliance-nd");
    let stats = run_until_idle(&dir, &cfg, 500);
    assert_eq!(stats["drops"]["no_neighbor"], 20, "{}", stats["drops"]);
    assert_eq!(
        stats["nd_heard"], 1,
        "the advertisement was handed over: {stats}"
    );
    assert_eq!(stats["nd_static_kept"], 1, "and refused: {stats}");
    assert_eq!(stats["nd_learned"], 0, "{stats}");
    let to_static = tshark_lines(
        &dir.join("internet-out.pcap"),
        "ipv6.dst == 2001:db8:200::5",
        &["eth.dst", "ipv6.hlim"],
    );
    assert_eq!(
        to_static,
        vec!["02:00:00:00:fe:fe|63".to_owned(); 10],
        "the static next hop's MAC, one hop less"
    );
    let asks = tshark_lines(
        &dir.join("control-out.pcap"),
        "icmpv6.type == 135",
        &[
            "eth.src",
            "eth.dst",
            "ipv6.src",
            "ipv6.dst",
            "ipv6.hlim",
            "icmpv6.nd.ns.target_address",
            "icmpv6.opt.linkaddr",
        ],
    );
    assert!(
        !asks.is_empty(),
        "a solicitation for the unresolved next hop"
    );
    let elapsed = stats["elapsed_s"].as_f64().unwrap();
    assert!(
        asks.len() as f64 <= elapsed.ceil() + 1.0,
        "at most one a second in {elapsed} s: {asks:?}"
    );
    assert!(
        asks.iter().all(|a| a
            == "02:00:00:00:01:01|33:33:ff:00:00:fd|2001:db8:100::1|ff02::1:ff00:fd|255|\
                2001:db8:100::fd|02:00:00:00:01:01"),
        "never for the static next hop, always to the group: {asks:?}"
    );
    assert_eq!(stats["nd_solicitations"], asks.len(), "{stats}");
}
