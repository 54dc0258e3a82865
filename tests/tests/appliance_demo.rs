//! The real binary on the demo lab (demo/lab.toml, demo/traffic.py): traffic from each
//! client's tunnel leaves through another client's tunnel, the refused packets are counted
//! under their SPEC names, the output dissects cleanly in tshark, and the JSON counters add up.

use backbone_tests::{backbone_bin, pcap, repo_root, scratch_dir, PYTHON};
use std::process::Command;

const FLOWS: usize = 40;

#[test]
fn demo_lab_forwards_between_tunnels_and_counts_drops() {
    let dir = scratch_dir("appliance-demo");
    let root = repo_root();
    let gen = Command::new(PYTHON)
        .arg(root.join("demo/traffic.py"))
        .arg(dir.join("clients-in.pcap"))
        .arg(FLOWS.to_string())
        .output()
        .expect("run demo/traffic.py (scapy; run scripts/setup.sh)");
    assert!(
        gen.status.success(),
        "traffic.py: {}",
        String::from_utf8_lossy(&gen.stderr)
    );
    pcap::write(&dir.join("internet-in.pcap"), &[]).unwrap();

    let out = Command::new(backbone_bin())
        .current_dir(&dir)
        .args(["run", "--config"])
        .arg(root.join("demo/lab.toml"))
        .args([
            "--no-control-socket",
            "--stop-when-idle",
            "300",
            "--stats",
            "stats.json",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run backbone");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "backbone run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Counters: every flow forwarded, the three bad packets dropped by name, and the one
    // with TTL 1 answered with an ICMP Time Exceeded back into initech's tunnel.
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap()).unwrap();
    let sent = 3 * FLOWS + 3;
    assert_eq!(stats["ports"][0]["rx_packets"], sent as u64);
    assert_eq!(stats["ports"][0]["tx_packets"], (3 * FLOWS + 1) as u64);
    assert_eq!(stats["ports"][0]["pipeline_tx_packets"], (3 * FLOWS) as u64);
    assert_eq!(stats["icmp_sent"]["time_exceeded"], 1);
    assert_eq!(stats["drops"]["inner_spoofed"], 1);
    assert_eq!(stats["drops"]["no_tunnel"], 1);
    assert_eq!(stats["drops"]["ttl_exceeded"], 1);
    let total_drops: u64 = stats["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total_drops, 3, "no other drops: {}", stats["drops"]);
    for t in stats["tunnels"].as_array().unwrap() {
        let icmp = u64::from(t["name"] == "initech");
        assert_eq!(t["tx_packets"], FLOWS as u64 + icmp, "tunnel {}", t["name"]);
    }

    // The output, dissected by tshark: each client's packets left through the next client's
    // tunnel with that tunnel's encapsulation, and nothing is malformed.
    let out_pcap = dir.join("clients-out.pcap");
    assert_eq!(pcap::read(&out_pcap).unwrap().len(), 3 * FLOWS + 1);
    let fields = Command::new("tshark")
        .arg("-r")
        .arg(&out_pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "ip.dst",
            "-e",
            "ip.proto",
            "-e",
            "gre.key",
            "-e",
            "ip.checksum.status",
            "-e",
            "icmp.type",
        ])
        .output()
        .expect("run tshark (run scripts/setup.sh)");
    assert!(fields.status.success());
    let text = String::from_utf8_lossy(&fields.stdout);
    let mut seen = [0usize; 3];
    let mut time_exceeded = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let (dst, proto, key, csum, icmp) = (f[0], f[1], f[2], f[3], f[4]);
        if icmp == "11" {
            // Our Time Exceeded, in initech's IP-in-IP tunnel, to the initech host that
            // sent the TTL-1 packet, quoting that packet (to an acme host).
            let d: Vec<&str> = dst.split(',').collect();
            assert_eq!(d[0], "198.51.100.30", "into initech's tunnel: {line}");
            assert!(d[1].starts_with("10.3."), "to the sender: {line}");
            assert!(d[2].starts_with("10.1."), "quoting its packet: {line}");
            assert!(proto.starts_with("4,1,"), "IP in IP, ICMP: {line}");
            assert!(csum.split(',').all(|c| c == "1"), "checksums good: {line}");
            time_exceeded += 1;
            continue;
        }
        assert_eq!(csum, "1,1", "outer and inner IPv4 checksums good: {line}");
        let inner_dst = dst.split(',').nth(1).unwrap_or("");
        match dst.split(',').next().unwrap() {
            // acme -> globex: GRE key 200
            "198.51.100.20" => {
                assert!(inner_dst.starts_with("10.2."), "{line}");
                assert_eq!((proto, key), ("47,17", "0x000000c8"), "{line}");
                seen[0] += 1;
            }
            // globex -> initech: IP in IP
            "198.51.100.30" => {
                assert!(inner_dst.starts_with("10.3."), "{line}");
                assert_eq!((proto, key), ("4,6", ""), "{line}");
                seen[1] += 1;
            }
            // initech -> acme: GRE key 100
            "198.51.100.10" => {
                assert!(inner_dst.starts_with("10.1."), "{line}");
                assert_eq!((proto, key), ("47,1", "0x00000064"), "{line}");
                seen[2] += 1;
            }
            other => panic!("packet to unexpected outer destination {other}: {line}"),
        }
    }
    assert_eq!(seen, [FLOWS; 3]);
    assert_eq!(time_exceeded, 1, "one ICMP Time Exceeded");
    let bad = Command::new("tshark")
        .arg("-r")
        .arg(&out_pcap)
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= warning"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&bad.stdout).trim().is_empty(),
        "tshark flags: {}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

#[test]
fn check_refuses_a_bad_configuration_naming_the_field() {
    let dir = scratch_dir("appliance-check");
    let cfg = dir.join("bad.toml");
    let good = std::fs::read_to_string(repo_root().join("demo/lab.toml")).unwrap();
    std::fs::write(
        &cfg,
        good.replace(
            "prefix = \"0.0.0.0/0\"\nport = \"internet0\"",
            "prefix = \"0.0.0.0/0\"\nport = \"nowhere\"",
        ),
    )
    .unwrap();
    let out = Command::new(backbone_bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("nowhere"),
        "error names file and value: {err}"
    );

    let ok = Command::new(backbone_bin())
        .args(["check", "--config"])
        .arg(repo_root().join("demo/lab.toml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("tunnels: 3"));
}
