//! The pipeline's output, dissected by an independent implementation.
//!
//! scapy builds the input frames (GRE with key, sequence number and checksum; GRE with a key
//! only; GRE without options; IP-in-IP), `Pipeline::process` forwards them on `TestBuf`s,
//! and tshark dissects what would be transmitted. The test asserts that tshark finds no
//! malformed packet and no expert warning or error (IPv4, GRE and inner UDP checksums all
//! verified), and that every field it reports (Ethernet addresses, outer and inner IPv4
//! addresses, protocol, TTL, DSCP, ECN, DF, checksum status, GRE flags, key, sequence number
//! and checksum status) is what SPEC.md's "Tunnel termination" and "Encapsulation" say for
//! that packet. The expected values are computed here from the tunnel configuration, not by
//! the dataplane's code.
//!
//! Needs tshark and scapy for `/usr/bin/python3` (`scripts/setup.sh` installs both).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use backbone_tests::{pcap, scratch_dir};
use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, Event, Pipeline, PuntReason};
use dataplane::tables::{
    DfPolicy, DscpPolicy, PortEntry, PortIndex, SnapshotBuilder, TtlPolicy, Tunnel, TunnelMode,
};
use dataplane::wire::EthernetAddress;

/// The Python with scapy that `scripts/setup.sh` checks for.
const PYTHON: &str = "/usr/bin/python3";
/// The MAC of the peer router that sends us every input frame.
const PEER_MAC: &str = "02:00:00:00:aa:01";
/// Expert severity values (epan/proto.h): PI_WARN and above are failures.
const PI_WARN: u32 = 0x0060_0000;
/// Preferences that make tshark verify the checksums it does not verify by default (GRE
/// checksums are always verified: the dissector has no preference for it).
const CHECK_PREFS: [&str; 4] = [
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
];

struct PortSpec {
    index: PortIndex,
    mac: &'static str,
    addr: &'static str,
}

const PORTS: [PortSpec; 2] = [
    PortSpec {
        index: 0,
        mac: "02:00:00:00:00:01",
        addr: "192.0.2.1",
    },
    PortSpec {
        index: 1,
        mac: "02:00:00:00:01:01",
        addr: "203.0.113.1",
    },
];

#[derive(Clone, Copy)]
enum Mode {
    Gre {
        key: Option<u32>,
        seq: bool,
        csum: bool,
    },
    Ipip,
}

struct TunnelSpec {
    name: &'static str,
    mode: Mode,
    local: &'static str,
    remote: &'static str,
    egress: PortIndex,
    /// The underlay next hop (and its MAC); `None` means the remote itself.
    next_hop: Option<&'static str>,
    next_hop_mac: &'static str,
    prefixes: &'static [&'static str],
    /// IPv6 prefixes inside the tunnel, and our IPv6 address in it (`link6`).
    prefixes6: &'static [&'static str],
    link6: &'static str,
    ttl: TtlPolicy,
    dscp: DscpPolicy,
    df: DfPolicy,
}

const TUNNELS: [TunnelSpec; 5] = [
    // GRE with every option, the defaults otherwise (TTL 64, DSCP copied, DF set), through
    // a router that is not the remote.
    TunnelSpec {
        name: "gre-kcs",
        mode: Mode::Gre {
            key: Some(0x00c0_ffee),
            seq: true,
            csum: true,
        },
        local: "192.0.2.1",
        remote: "198.51.100.1",
        egress: 0,
        next_hop: Some("192.0.2.254"),
        next_hop_mac: "02:00:00:00:fe:01",
        prefixes: &["10.1.0.0/16"],
        prefixes6: &["2001:db8:1::/48"],
        link6: "fd00:1::1/127",
        ttl: TtlPolicy::Fixed(64),
        dscp: DscpPolicy::Copy,
        df: DfPolicy::Set,
    },
    // GRE with a key only, and every non-default policy.
    TunnelSpec {
        name: "gre-k",
        mode: Mode::Gre {
            key: Some(42),
            seq: false,
            csum: false,
        },
        local: "192.0.2.1",
        remote: "198.51.100.2",
        egress: 1,
        next_hop: None,
        next_hop_mac: "02:00:00:00:fe:02",
        prefixes: &["10.2.0.0/16"],
        prefixes6: &["2001:db8:2::/48"],
        link6: "fd00:2::1/127",
        ttl: TtlPolicy::Inherit,
        dscp: DscpPolicy::Fixed(10),
        df: DfPolicy::Copy,
    },
    // GRE without options, on the second port's address.
    TunnelSpec {
        name: "gre-plain",
        mode: Mode::Gre {
            key: None,
            seq: false,
            csum: false,
        },
        local: "203.0.113.1",
        remote: "198.51.100.3",
        egress: 1,
        next_hop: None,
        next_hop_mac: "02:00:00:00:fe:03",
        prefixes: &["10.3.0.0/16"],
        prefixes6: &["2001:db8:3::/48"],
        link6: "fd00:3::1/127",
        ttl: TtlPolicy::Fixed(255),
        dscp: DscpPolicy::Copy,
        df: DfPolicy::Set,
    },
    TunnelSpec {
        name: "ipip-a",
        mode: Mode::Ipip,
        local: "192.0.2.1",
        remote: "198.51.100.4",
        egress: 0,
        next_hop: None,
        next_hop_mac: "02:00:00:00:fe:04",
        prefixes: &["10.4.0.0/16"],
        prefixes6: &["2001:db8:4::/48"],
        link6: "fd00:4::1/127",
        ttl: TtlPolicy::Fixed(64),
        dscp: DscpPolicy::Copy,
        df: DfPolicy::Set,
    },
    TunnelSpec {
        name: "ipip-b",
        mode: Mode::Ipip,
        local: "203.0.113.1",
        remote: "198.51.100.5",
        egress: 1,
        next_hop: None,
        next_hop_mac: "02:00:00:00:fe:05",
        prefixes: &["10.5.0.0/16", "172.16.5.0/24"],
        prefixes6: &["2001:db8:5::/48"],
        link6: "fd00:5::1/127",
        ttl: TtlPolicy::Fixed(100),
        dscp: DscpPolicy::Fixed(46),
        df: DfPolicy::Copy,
    },
];

/// One input packet: the tunnel it arrives on, its outer TOS and TTL, its inner header and
/// payload, and the tunnel it must leave through.
struct Flow {
    from: &'static str,
    to: &'static str,
    outer_ttl: u8,
    outer_dscp: u8,
    outer_ecn: u8,
    src: &'static str,
    dst: &'static str,
    ttl: u8,
    dscp: u8,
    ecn: u8,
    df: bool,
    /// UDP payload bytes.
    payload: usize,
}

const NOT_ECT: u8 = 0;
const ECT1: u8 = 1;
const ECT0: u8 = 2;
const CE: u8 = 3;

#[rustfmt::skip]
const FLOWS: &[Flow] = &[
    // GRE to GRE.
    Flow { from: "gre-kcs", to: "gre-k", outer_ttl: 60, outer_dscp: 0, outer_ecn: ECT0,
           src: "10.1.0.5", dst: "10.2.7.9", ttl: 30, dscp: 46, ecn: ECT0, df: true, payload: 64 },
    Flow { from: "gre-kcs", to: "gre-k", outer_ttl: 60, outer_dscp: 8, outer_ecn: NOT_ECT,
           src: "10.1.0.6", dst: "10.2.0.1", ttl: 2, dscp: 0, ecn: NOT_ECT, df: false, payload: 1 },
    Flow { from: "gre-k", to: "gre-kcs", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.2.0.7", dst: "10.1.3.3", ttl: 64, dscp: 26, ecn: NOT_ECT, df: false, payload: 333 },
    // Outer CE over inner ECT(1): the inner packet leaves marked CE (RFC 6040).
    Flow { from: "gre-kcs", to: "gre-plain", outer_ttl: 33, outer_dscp: 0, outer_ecn: CE,
           src: "10.1.9.9", dst: "10.3.0.2", ttl: 128, dscp: 34, ecn: ECT1, df: true, payload: 1400 },
    Flow { from: "gre-plain", to: "gre-kcs", outer_ttl: 9, outer_dscp: 46, outer_ecn: ECT0,
           src: "10.3.0.1", dst: "10.1.0.9", ttl: 255, dscp: 0, ecn: ECT0, df: true, payload: 100 },
    // IP-in-IP to GRE.
    Flow { from: "ipip-a", to: "gre-kcs", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.4.0.1", dst: "10.1.200.1", ttl: 17, dscp: 10, ecn: NOT_ECT, df: true, payload: 22 },
    Flow { from: "ipip-a", to: "gre-k", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.4.0.2", dst: "10.2.200.1", ttl: 99, dscp: 18, ecn: ECT1, df: false, payload: 513 },
    Flow { from: "ipip-b", to: "gre-plain", outer_ttl: 200, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "172.16.5.9", dst: "10.3.1.1", ttl: 64, dscp: 0, ecn: NOT_ECT, df: true, payload: 0 },
    Flow { from: "ipip-b", to: "gre-kcs", outer_ttl: 200, outer_dscp: 0, outer_ecn: CE,
           src: "10.5.3.4", dst: "10.1.77.1", ttl: 40, dscp: 12, ecn: ECT0, df: true, payload: 900 },
    // GRE to IP-in-IP.
    Flow { from: "gre-k", to: "ipip-a", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.2.0.8", dst: "10.4.9.9", ttl: 64, dscp: 40, ecn: NOT_ECT, df: false, payload: 50 },
    Flow { from: "gre-kcs", to: "ipip-b", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.1.0.7", dst: "10.5.0.77", ttl: 10, dscp: 0, ecn: ECT0, df: false, payload: 77 },
    Flow { from: "gre-plain", to: "ipip-a", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.3.2.2", dst: "10.4.0.200", ttl: 3, dscp: 46, ecn: NOT_ECT, df: true, payload: 1 },
    // IP-in-IP to IP-in-IP.
    Flow { from: "ipip-a", to: "ipip-b", outer_ttl: 64, outer_dscp: 0, outer_ecn: NOT_ECT,
           src: "10.4.1.1", dst: "172.16.5.1", ttl: 64, dscp: 0, ecn: NOT_ECT, df: true, payload: 8 },
];

fn tunnel(name: &str) -> &'static TunnelSpec {
    TUNNELS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tunnel {name} in TUNNELS"))
}

/// The port a tunnel's packets arrive on: the one that faces its client router (its egress
/// port), whichever port holds its local address; the pipeline accepts them there only.
fn ingress_of(t: &TunnelSpec) -> &'static PortSpec {
    port(t.egress)
}

fn port(index: PortIndex) -> &'static PortSpec {
    PORTS.iter().find(|p| p.index == index).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn mac(s: &str) -> EthernetAddress {
    s.parse().unwrap()
}

fn snapshot() -> std::sync::Arc<dataplane::tables::Snapshot> {
    let mut b = SnapshotBuilder::new();
    for p in &PORTS {
        b.port(p.index, PortEntry::client(mac(p.mac), vec![ip(p.addr)]));
    }
    for t in &TUNNELS {
        let mode = match t.mode {
            Mode::Gre { .. } => TunnelMode::Gre,
            Mode::Ipip => TunnelMode::Ipip,
        };
        let mut tun = Tunnel::new(t.name, mode, ip(t.local), ip(t.remote), t.egress);
        if let Mode::Gre { key, seq, csum } = t.mode {
            tun.key = key;
            tun.sequence = seq;
            tun.checksum = csum;
        }
        if let Some(nh) = t.next_hop {
            tun.next_hop = ip(nh);
        }
        tun.ttl = t.ttl;
        tun.dscp = t.dscp;
        tun.df = t.df;
        tun.prefixes = t.prefixes.iter().map(|p| p.parse().unwrap()).collect();
        tun.prefixes6 = t.prefixes6.iter().map(|p| p.parse().unwrap()).collect();
        tun.link6 = Some(t.link6.parse().unwrap());
        b.neighbor(t.egress, tun.next_hop, mac(t.next_hop_mac));
        b.tunnel(tun);
    }
    b.build().expect("the test configuration is valid")
}

/// The scapy expression of a flow's input frame. `seq` is the GRE sequence number to send
/// (tunnels that require them).
fn scapy_frame(i: usize, f: &Flow, seq: Option<u32>) -> String {
    let t = tunnel(f.from);
    let p = ingress_of(t);
    let tos = |dscp: u8, ecn: u8| u32::from(dscp) << 2 | u32::from(ecn);
    let outer = format!(
        "IP(src='{}', dst='{}', ttl={}, tos={}, flags='DF', id={})",
        t.remote,
        t.local,
        f.outer_ttl,
        tos(f.outer_dscp, f.outer_ecn),
        1000 + i
    );
    let gre = match t.mode {
        // scapy computes the checksum when chksum_present is set and chksum left unset.
        Mode::Gre { key, seq: _, csum } => format!(
            "/GRE(key_present={}, key={}, seqnum_present={}, sequence_number={}, \
             chksum_present={})",
            u8::from(key.is_some()),
            key.unwrap_or(0),
            u8::from(seq.is_some()),
            seq.unwrap_or(0),
            u8::from(csum)
        ),
        Mode::Ipip => String::new(),
    };
    let inner = format!(
        "IP(src='{}', dst='{}', ttl={}, tos={}, flags={}, id={})",
        f.src,
        f.dst,
        f.ttl,
        tos(f.dscp, f.ecn),
        if f.df { "'DF'" } else { "0" },
        2000 + i
    );
    format!(
        "Ether(dst='{}', src='{PEER_MAC}')/{outer}{gre}/{inner}\
         /UDP(sport={}, dport=9)/Raw(bytes((j * 7 + {i}) % 256 for j in range({})))",
        p.mac,
        40000 + i,
        f.payload
    )
}

/// Write the input frames with scapy.
fn build_input(path: &Path, frames: &[String]) {
    let mut script = String::from(
        "import sys\nfrom scapy.all import Ether, IP, IPv6, IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, \
         GRE, UDP, Raw, wrpcap\npkts = []\n",
    );
    for f in frames {
        writeln!(script, "pkts.append({f})").unwrap();
    }
    script.push_str("wrpcap(sys.argv[1], pkts)\n");
    let script_path = path.with_extension("py");
    std::fs::write(&script_path, script).unwrap();
    let out = Command::new(PYTHON)
        .arg(&script_path)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON} ({e}): run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "scapy failed (is it installed for {PYTHON}? run scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// scapy's `frames` written to DIR/in.pcap and read back; tshark must flag none of them.
fn scapy_input(dir: &Path, frames: &[String]) -> Vec<Vec<u8>> {
    let input_path = dir.join("in.pcap");
    build_input(&input_path, frames);
    let input = pcap::read(&input_path).unwrap();
    assert_eq!(input.len(), frames.len());
    let bad = flagged(&input_path);
    assert!(
        bad.is_empty(),
        "tshark flags scapy's input:\n{}",
        bad.join("\n")
    );
    input
}

/// Every input frame through `pipeline`, one burst per ingress port, in `order` within it;
/// frame i is flow `flows[i]` (from, to) and must be transmitted by the egress tunnel's
/// port. The frames out, each with its flow's index.
fn forward_all(
    pipeline: &mut Pipeline,
    snap: &dataplane::tables::Snapshot,
    flows: &[(&str, &str)],
    order: &[usize],
    input: &[Vec<u8>],
) -> Vec<(usize, Vec<u8>)> {
    let mut output = Vec::new();
    for p in &PORTS {
        let idx: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| ingress_of(tunnel(flows[i].0)).index == p.index)
            .collect();
        let mut bufs: Vec<TestBuf> = idx.iter().map(|&i| TestBuf::new(&input[i])).collect();
        let mut actions = vec![Action::Punt(PuntReason::Arp); bufs.len()];
        pipeline.process(snap, p.index, &mut bufs, &mut actions);
        for ((&i, buf), action) in idx.iter().zip(&bufs).zip(&actions) {
            let (from, to) = flows[i];
            assert_eq!(
                *action,
                Action::Transmit(tunnel(to).egress),
                "flow {i} ({from} -> {to})"
            );
            output.push((i, buf.data().to_vec()));
        }
    }
    output
}

fn require_tshark() {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("tshark is not installed: run scripts/setup.sh"),
    }
}

/// Run tshark on `pcap` with the checksum preferences and `args`; stdout lines.
fn tshark(pcap: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(CHECK_PREFS)
        .args(args)
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The frames of `pcap` that tshark finds malformed or with an expert warning or error.
fn flagged(pcap: &Path) -> Vec<String> {
    tshark(
        pcap,
        &["-Y", "_ws.malformed || _ws.expert.severity >= \"Warning\""],
    )
}

/// The fields read from each output frame, in this order.
const FIELDS: &[&str] = &[
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.dsfield.dscp",
    "ip.dsfield.ecn",
    "ip.flags.df",
    "ip.checksum.status",
    "gre.flags.checksum",
    "gre.flags.key",
    "gre.flags.sequence_number",
    "gre.flags.version",
    "gre.proto",
    "gre.key",
    "gre.sequence_number",
    "gre.checksum.status",
    "udp.srcport",
    "udp.length",
    "udp.checksum.status",
    "frame.len",
];

/// The GRE header length a tunnel writes (0 for IP-in-IP).
fn gre_len(mode: Mode) -> usize {
    match mode {
        Mode::Gre { key, seq, csum } => {
            4 + 4 * usize::from(key.is_some()) + 4 * usize::from(seq) + 4 * usize::from(csum)
        }
        Mode::Ipip => 0,
    }
}

/// What tshark must report for a flow's output frame, field by field (as FIELDS).
/// `seq` is the GRE sequence number the egress tunnel must have written.
fn expected(i: usize, f: &Flow, seq: Option<u32>) -> Vec<String> {
    let t = tunnel(f.to);
    let e = port(t.egress);
    // Decapsulation (RFC 6040 section 4.2): outer CE over inner ECT marks the inner CE.
    let ecn = if f.outer_ecn == CE && (f.ecn == ECT0 || f.ecn == ECT1) {
        CE
    } else {
        f.ecn
    };
    let ttl = f.ttl - 1;
    let outer_ttl = match t.ttl {
        TtlPolicy::Fixed(v) => v,
        TtlPolicy::Inherit => ttl,
    };
    let outer_dscp = match t.dscp {
        DscpPolicy::Copy => f.dscp,
        DscpPolicy::Fixed(v) => v,
    };
    let outer_df = match t.df {
        DfPolicy::Set => true,
        DfPolicy::Copy => f.df,
    };
    let (proto, gre) = match t.mode {
        Mode::Gre { key, seq: _, csum } => (
            47,
            [
                u8::from(csum).to_string(),
                u8::from(key.is_some()).to_string(),
                u8::from(seq.is_some()).to_string(),
                "0".to_owned(),
                "0x0800".to_owned(),
                key.map(|k| format!("0x{k:08x}")).unwrap_or_default(),
                seq.map(|s| s.to_string()).unwrap_or_default(),
                // 1: PROTO_CHECKSUM_E_GOOD.
                if csum { "1".to_owned() } else { String::new() },
            ],
        ),
        Mode::Ipip => (4, Default::default()),
    };
    let inner_len = 20 + 8 + f.payload;
    let mut v = vec![
        e.mac.to_owned(),
        t.next_hop_mac.to_owned(),
        format!("{},{}", t.local, f.src),
        format!("{},{}", t.remote, f.dst),
        format!("{proto},17"),
        format!("{outer_ttl},{ttl}"),
        format!("{outer_dscp},{}", f.dscp),
        // RFC 6040 normal mode: the outer ECN is a copy of the inner one.
        format!("{ecn},{ecn}"),
        format!("{},{}", u8::from(outer_df), u8::from(f.df)),
        "1,1".to_owned(),
    ];
    v.extend(gre);
    v.extend([
        (40000 + i).to_string(),
        (8 + f.payload).to_string(),
        "1".to_owned(),
        (14 + 20 + gre_len(t.mode) + inner_len).to_string(),
    ]);
    v
}

#[test]
fn pipeline_output_dissects_cleanly_with_the_expected_fields() {
    require_tshark();
    let dir = scratch_dir("pipeline-tshark");
    let snap = snapshot();

    // Processing order: one burst per ingress port, flows in list order within a burst. GRE
    // sequence numbers, sent and expected, follow it.
    let mut order: Vec<usize> = Vec::new();
    for p in &PORTS {
        order.extend(
            (0..FLOWS.len()).filter(|&i| ingress_of(tunnel(FLOWS[i].from)).index == p.index),
        );
    }
    assert_eq!(order.len(), FLOWS.len());
    let mut rx_seq: HashMap<&str, u32> = HashMap::new();
    let mut tx_seq: HashMap<&str, u32> = HashMap::new();
    let mut in_seq = vec![None; FLOWS.len()];
    let mut out_seq = vec![None; FLOWS.len()];
    for &i in &order {
        let f = &FLOWS[i];
        if let Mode::Gre { seq: true, .. } = tunnel(f.from).mode {
            // Start near the top to cross the wrap-around of serial arithmetic.
            let s = rx_seq.entry(f.from).or_insert(u32::MAX - 2);
            in_seq[i] = Some(*s);
            *s = s.wrapping_add(1);
        }
        if let Mode::Gre { seq: true, .. } = tunnel(f.to).mode {
            // A fresh tunnel state sends 0 first.
            let s = tx_seq.entry(f.to).or_insert(0);
            out_seq[i] = Some(*s);
            *s += 1;
        }
    }
    assert!(
        in_seq.iter().flatten().any(|&s| s == 0),
        "the input sequence numbers wrap"
    );

    // Input frames, built by scapy.
    let frames: Vec<String> = FLOWS
        .iter()
        .enumerate()
        .map(|(i, f)| scapy_frame(i, f, in_seq[i]))
        .collect();
    let input = scapy_input(&dir, &frames);

    // Through the pipeline, one burst per ingress port.
    let mut pipeline = Pipeline::new(0x4000);
    let flows: Vec<(&str, &str)> = FLOWS.iter().map(|f| (f.from, f.to)).collect();
    let output = forward_all(&mut pipeline, &snap, &flows, &order, &input);
    let counters = pipeline.counters();
    assert_eq!(
        counters.total_drops(),
        0,
        "drops: {:?}",
        counters.nonzero_drops()
    );
    let ce_marked = FLOWS
        .iter()
        .filter(|f| f.outer_ecn == CE && f.ecn != NOT_ECT)
        .count() as u64;
    assert_eq!(counters.event_count(Event::EcnCePropagated), ce_marked);
    for t in &TUNNELS {
        let id = snap.tunnels().by_name(t.name).unwrap();
        let c = &counters.tunnels[id.index()];
        let rx = FLOWS.iter().filter(|f| f.from == t.name).count() as u64;
        let tx = FLOWS.iter().filter(|f| f.to == t.name).count() as u64;
        assert_eq!(
            (c.rx.packets, c.tx.packets),
            (rx, tx),
            "tunnel {} rx/tx",
            t.name
        );
    }

    let out_path = dir.join("out.pcap");
    let frames_out: Vec<Vec<u8>> = output.iter().map(|(_, b)| b.clone()).collect();
    pcap::write(&out_path, &frames_out).unwrap();

    // 1. Nothing malformed, no expert warning or error (bad IPv4, GRE or UDP checksum
    //    among them).
    let bad = flagged(&out_path);
    assert!(
        bad.is_empty(),
        "tshark flags output frames:\n{}",
        bad.join("\n")
    );
    let experts = tshark(&out_path, &["-q", "-z", "expert,warn"]);
    assert!(
        !experts
            .iter()
            .any(|l| l.starts_with("Errors") || l.starts_with("Warns")),
        "tshark expert summary:\n{}",
        experts.join("\n")
    );

    // 2. Every field, frame by frame.
    let mut args = vec!["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"];
    for f in FIELDS
        .iter()
        .chain(&["_ws.expert.severity", "_ws.expert.message"])
    {
        args.extend(["-e", f]);
    }
    let lines = tshark(&out_path, &args);
    assert_eq!(lines.len(), output.len(), "one line per frame");
    for ((i, _), line) in output.iter().zip(&lines) {
        let f = &FLOWS[*i];
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), FIELDS.len() + 2, "frame of flow {i}: {line}");
        let want = expected(*i, f, out_seq[*i]);
        for ((name, got), want) in FIELDS.iter().zip(&cols).zip(&want) {
            assert_eq!(
                got, want,
                "flow {i} ({} -> {}): field {name}\nline: {line}",
                f.from, f.to
            );
        }
        // Any expert item left must be below warning (the -Y check above says so too).
        let severities = cols[FIELDS.len()];
        for s in severities.split(',').filter(|s| !s.is_empty()) {
            let s: u32 = s.parse().unwrap();
            assert!(s < PI_WARN, "flow {i}: expert {}", cols[FIELDS.len() + 1]);
        }
    }
    // RFC 6864: with DF clear the identification must not repeat (one worker, one burst
    // each, so none may repeat at all).
    let idents: HashSet<String> = tshark_ident(&out_path, lines.len()).into_iter().collect();
    assert_eq!(idents.len(), output.len(), "outer identifications repeat");

    // 3. The oracle can fail: corrupt one byte of one frame's inner payload and one outer
    //    IPv4 header, and tshark must flag both.
    let mut corrupt = frames_out.clone();
    let last = corrupt[0].len() - 1;
    corrupt[0][last] ^= 0xff; // inner UDP payload: UDP checksum (and GRE's, if present)
    corrupt[1][14 + 8] ^= 0x01; // outer TTL: IPv4 header checksum
    let corrupt_path = dir.join("corrupt.pcap");
    pcap::write(&corrupt_path, &corrupt).unwrap();
    assert_eq!(flagged(&corrupt_path).len(), 2, "tshark misses corruption");

    // Kept on failure for inspection (the panic skips this).
    let _ = std::fs::remove_dir_all(&dir);
}

/// The outer IPv4 identification of every frame.
fn tshark_ident(pcap: &Path, n: usize) -> Vec<String> {
    let lines = tshark(pcap, &["-T", "fields", "-E", "occurrence=f", "-e", "ip.id"]);
    assert_eq!(lines.len(), n);
    lines
}

/// One IPv6 flow: IPv6 inside, GRE protocol type 0x86DD (RFC 7676) or IP protocol 41 (RFC
/// 4213) on the way in and on the way out; `ext`: a hop-by-hop and a destination options
/// header before UDP (passed as they are, RFC 8200 section 4).
struct Flow6 {
    from: &'static str,
    to: &'static str,
    outer_ecn: u8,
    src: &'static str,
    dst: &'static str,
    hlim: u8,
    dscp: u8,
    ecn: u8,
    ext: bool,
    payload: usize,
}

#[rustfmt::skip]
const FLOWS6: &[Flow6] = &[
    // GRE (key, sequence, checksum) to protocol 41.
    Flow6 { from: "gre-kcs", to: "ipip-a", outer_ecn: NOT_ECT, src: "2001:db8:1::5",
            dst: "2001:db8:4::9", hlim: 64, dscp: 46, ecn: ECT0, ext: false, payload: 64 },
    // Protocol 41 to GRE with every option; outer CE over inner ECT(1): CE (RFC 6040).
    Flow6 { from: "ipip-a", to: "gre-kcs", outer_ecn: CE, src: "2001:db8:4::1",
            dst: "2001:db8:1:ff::1", hlim: 2, dscp: 10, ecn: ECT1, ext: false, payload: 1000 },
    // Keyed GRE (TTL inherit, DSCP 10, DF copy) to keyless GRE, with extension headers.
    Flow6 { from: "gre-k", to: "gre-plain", outer_ecn: NOT_ECT, src: "2001:db8:2::7",
            dst: "2001:db8:3::3", hlim: 30, dscp: 0, ecn: NOT_ECT, ext: true, payload: 9 },
    Flow6 { from: "gre-plain", to: "gre-k", outer_ecn: ECT0, src: "2001:db8:3::7",
            dst: "2001:db8:2::3", hlim: 255, dscp: 26, ecn: ECT0, ext: false, payload: 0 },
    // Protocol 41 to protocol 41 (DSCP fixed 46, TTL 100), with extension headers.
    Flow6 { from: "ipip-a", to: "ipip-b", outer_ecn: NOT_ECT, src: "2001:db8:4::2",
            dst: "2001:db8:5::2", hlim: 9, dscp: 8, ecn: NOT_ECT, ext: true, payload: 300 },
];

/// The extension headers of an `ext` flow: hop-by-hop and destination options, 8 bytes each.
const EXT_LEN: usize = 16;

fn scapy_frame6(i: usize, f: &Flow6, seq: Option<u32>) -> String {
    let t = tunnel(f.from);
    let p = ingress_of(t);
    let (proto, gre) = match t.mode {
        Mode::Gre { key, seq: _, csum } => (
            47,
            format!(
                "/GRE(key_present={}, key={}, seqnum_present={}, sequence_number={}, \
                 chksum_present={}, proto=0x86dd)",
                u8::from(key.is_some()),
                key.unwrap_or(0),
                u8::from(seq.is_some()),
                seq.unwrap_or(0),
                u8::from(csum)
            ),
        ),
        Mode::Ipip => (41, String::new()),
    };
    format!(
        "Ether(dst='{}', src='{PEER_MAC}')/IP(src='{}', dst='{}', tos={}, proto={proto}, \
         flags='DF', id={})\
         {gre}/IPv6(src='{}', dst='{}', hlim={}, tc={}){}/UDP(sport={}, dport=9)\
         /Raw(bytes((j * 5 + {i}) % 256 for j in range({})))",
        p.mac,
        t.remote,
        t.local,
        f.outer_ecn,
        3000 + i,
        f.src,
        f.dst,
        f.hlim,
        u32::from(f.dscp) << 2 | u32::from(f.ecn),
        if f.ext {
            "/IPv6ExtHdrHopByHop()/IPv6ExtHdrDestOpt()"
        } else {
            ""
        },
        50000 + i,
        f.payload
    )
}

const FIELDS6: &[&str] = &[
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.dsfield.dscp",
    "ip.dsfield.ecn",
    "ip.flags.df",
    "ip.checksum.status",
    "gre.proto",
    "gre.key",
    "gre.sequence_number",
    "gre.checksum.status",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hlim",
    "ipv6.tclass.dscp",
    "ipv6.tclass.ecn",
    "ipv6.plen",
    "ipv6.nxt",
    "udp.srcport",
    "udp.checksum.status",
    "frame.len",
];

/// What tshark must report for an IPv6 flow's output, from SPEC.md's encapsulation rules
/// and RFC 6040, 7676 and 4213 (computed here, not by the dataplane).
fn expected6(i: usize, f: &Flow6, seq: Option<u32>) -> Vec<String> {
    let t = tunnel(f.to);
    let e = port(t.egress);
    let ecn = if f.outer_ecn == CE && (f.ecn == ECT0 || f.ecn == ECT1) {
        CE
    } else {
        f.ecn
    };
    let hlim = f.hlim - 1;
    let outer_ttl = match t.ttl {
        TtlPolicy::Fixed(v) => v,
        TtlPolicy::Inherit => hlim,
    };
    let outer_dscp = match t.dscp {
        DscpPolicy::Copy => f.dscp,
        DscpPolicy::Fixed(v) => v,
    };
    let (proto, gre) = match t.mode {
        Mode::Gre { key, seq: _, csum } => (
            47,
            [
                "0x86dd".to_owned(),
                key.map(|k| format!("0x{k:08x}")).unwrap_or_default(),
                seq.map(|s| s.to_string()).unwrap_or_default(),
                if csum { "1".to_owned() } else { String::new() },
            ],
        ),
        Mode::Ipip => (41, Default::default()),
    };
    let plen = 8 + f.payload + if f.ext { EXT_LEN } else { 0 };
    let mut v = vec![
        e.mac.to_owned(),
        t.next_hop_mac.to_owned(),
        t.local.to_owned(),
        t.remote.to_owned(),
        proto.to_string(),
        outer_ttl.to_string(),
        outer_dscp.to_string(),
        ecn.to_string(),
        // An IPv6 packet is never fragmented: DF whatever the policy.
        "1".to_owned(),
        "1".to_owned(),
    ];
    v.extend(gre);
    v.extend([
        f.src.to_owned(),
        f.dst.to_owned(),
        hlim.to_string(),
        f.dscp.to_string(),
        ecn.to_string(),
        plen.to_string(),
        // Hop-by-hop options (0) first, or UDP.
        if f.ext { "0" } else { "17" }.to_owned(),
        (50000 + i).to_string(),
        "1".to_owned(),
        (14 + 20 + gre_len(t.mode) + 40 + plen).to_string(),
    ]);
    v
}

#[test]
fn ipv6_in_gre_and_in_ipv4_dissect_cleanly_with_the_expected_fields() {
    require_tshark();
    let dir = scratch_dir("pipeline-tshark-v6");
    let snap = snapshot();
    let mut order: Vec<usize> = Vec::new();
    for p in &PORTS {
        order.extend(
            (0..FLOWS6.len()).filter(|&i| ingress_of(tunnel(FLOWS6[i].from)).index == p.index),
        );
    }
    let (mut rx_seq, mut tx_seq): (HashMap<&str, u32>, HashMap<&str, u32>) = Default::default();
    let mut in_seq = vec![None; FLOWS6.len()];
    let mut out_seq = vec![None; FLOWS6.len()];
    for &i in &order {
        let f = &FLOWS6[i];
        if let Mode::Gre { seq: true, .. } = tunnel(f.from).mode {
            let s = rx_seq.entry(f.from).or_insert(1);
            in_seq[i] = Some(*s);
            *s += 1;
        }
        if let Mode::Gre { seq: true, .. } = tunnel(f.to).mode {
            let s = tx_seq.entry(f.to).or_insert(0);
            out_seq[i] = Some(*s);
            *s += 1;
        }
    }
    let frames: Vec<String> = FLOWS6
        .iter()
        .enumerate()
        .map(|(i, f)| scapy_frame6(i, f, in_seq[i]))
        .collect();
    let input = scapy_input(&dir, &frames);

    let mut pipeline = Pipeline::new(0x6000);
    let flows: Vec<(&str, &str)> = FLOWS6.iter().map(|f| (f.from, f.to)).collect();
    let output = forward_all(&mut pipeline, &snap, &flows, &order, &input);
    assert_eq!(pipeline.counters().total_drops(), 0);

    let out_path = dir.join("out.pcap");
    let frames_out: Vec<Vec<u8>> = output.iter().map(|(_, b)| b.clone()).collect();
    pcap::write(&out_path, &frames_out).unwrap();
    let bad = flagged(&out_path);
    assert!(
        bad.is_empty(),
        "tshark flags output frames:\n{}",
        bad.join("\n")
    );

    let mut args = vec!["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"];
    for f in FIELDS6 {
        args.extend(["-e", f]);
    }
    let lines = tshark(&out_path, &args);
    assert_eq!(lines.len(), output.len(), "one line per frame");
    for ((i, _), line) in output.iter().zip(&lines) {
        let f = &FLOWS6[*i];
        let cols: Vec<&str> = line.split('\t').collect();
        let want = expected6(*i, f, out_seq[*i]);
        assert_eq!(cols.len(), FIELDS6.len(), "IPv6 flow {i}: {line}");
        assert_eq!(want.len(), FIELDS6.len(), "IPv6 flow {i}: expected fields");
        for ((name, got), want) in FIELDS6.iter().zip(&cols).zip(&want) {
            assert_eq!(
                got, want,
                "IPv6 flow {i} ({} -> {}): field {name}\nline: {line}",
                f.from, f.to
            );
        }
    }
    // Past the outer headers the inner packet is the one sent, byte for byte, but for the
    // hop limit and the ECN field (RFC 6040), which the fields above checked.
    for (i, out) in &output {
        let f = &FLOWS6[*i];
        let sent = &input[*i][14 + 20 + gre_len(tunnel(f.from).mode)..];
        let got = &out[14 + 20 + gre_len(tunnel(f.to).mode)..];
        assert_eq!(got.len(), sent.len(), "IPv6 flow {i}: inner length");
        assert_eq!(got[0], sent[0], "IPv6 flow {i}: version and DSCP");
        assert_eq!(got[1] & 0xcf, sent[1] & 0xcf, "IPv6 flow {i}: flow label");
        assert_eq!(
            &got[2..7],
            &sent[2..7],
            "IPv6 flow {i}: flow label and length"
        );
        assert_eq!(
            &got[8..],
            &sent[8..],
            "IPv6 flow {i}: addresses and payload"
        );
    }
    // The oracle can fail: a corrupted inner UDP payload is flagged.
    let mut corrupt = frames_out.clone();
    let last = corrupt[0].len() - 1;
    corrupt[0][last] ^= 0xff;
    let corrupt_path = dir.join("corrupt.pcap");
    pcap::write(&corrupt_path, &corrupt).unwrap();
    assert_eq!(flagged(&corrupt_path).len(), 1, "tshark misses corruption");
    let _ = std::fs::remove_dir_all(&dir);
}
