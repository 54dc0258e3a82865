//! Shared pieces of the pipeline tests: the scapy oracle, the lab topology, and a harness
//! that runs frames through a [`Pipeline`] and checks counters as it goes.
//!
//! # The scapy oracle
//!
//! Packets are built and dissected by scapy, an implementation independent of ours. One
//! `/usr/bin/python3` process (Debian's python, where `scripts/setup.sh` installs scapy)
//! is started per test binary and answers one request per line over a pipe, so the scapy
//! import is paid once. Requests:
//!
//! - `B <expr>`: evaluate a scapy expression, answer `OK <hex of bytes(pkt)>`;
//! - `D <hex>\t<expr>\t...`: dissect the frame as `p = Ether(f)` and evaluate each
//!   expression with `p` and `f` (the raw bytes) bound, answer `OK <str>\t<str>...`.
//!
//! Failures answer `ERR <message>` and fail the calling test with that message.

#![allow(dead_code)] // Not every test binary uses every helper.

use dataplane::buffer::{PacketBuf, TestBuf};
use dataplane::pipeline::{Action, Counters, DropReason, IcmpKind, Pipeline, PuntReason};
use dataplane::tables::{
    DfPolicy, DscpPolicy, PortEntry, PortIndex, PortRoles, RouteTarget, Snapshot, SnapshotBuilder,
    TtlPolicy, Tunnel, TunnelMode,
};
use dataplane::wire::EthernetAddress;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

// ---------------------------------------------------------------------------------------
// The scapy oracle.

/// Debian's python, which has scapy (the `python3` on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// The oracle process. The names defined here mirror the Rust constants below.
const PRELUDE: &str = r#"
import sys
try:
    from scapy.all import (Ether, ARP, Dot1Q, IP, IPOption, IPv6, GRE, ICMP, TCP, UDP, Raw,
                           Padding, checksum, ICMPv6TimeExceeded, ICMPv6DestUnreach,
                           ICMPv6PacketTooBig, ICMPv6EchoRequest, ICMPv6EchoReply,
                           IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrFragment,
                           IPv6ExtHdrDestOpt, ICMPv6ND_NS, ICMPv6ND_NA,
                           ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr)
    from scapy.config import conf
except Exception as e:
    print("NOSCAPY " + repr(e), flush=True)
    sys.exit(0)
conf.verb = 0

P0 = '02:00:00:00:00:01'      # client port 0
P1 = '02:00:00:00:01:01'      # core/internet port 1
PEER = '02:00:00:00:ee:ee'    # whoever sends to us
L1 = '192.0.2.1'              # our endpoint on port 0
L2 = '192.0.2.2'              # our second address on port 0
LC = '203.0.113.1'            # our address on port 1
RA = '198.51.100.1'           # tunnel a: GRE, key 100, sequence, checksum
RB = '198.51.100.2'           # tunnel b: plain GRE
RC = '198.51.100.3'           # tunnel c: IPIP
RD = '198.51.100.4'           # tunnel d: GRE key 400, TTL inherit, DSCP 46, DF copy
RN = '198.51.100.5'           # tunnel nn: GRE, next hop unresolved
RS = '198.51.100.6'           # tunnel small: GRE, MTU 200
RE = '198.51.100.7'           # tunnel e: plain GRE
RX = '203.0.113.50'           # tunnel edge: another edge router across the core, key 7
RF = '198.51.100.8'           # tunnel f: plain GRE, MTU 1400, IPv6 only
LC6 = '2001:db8:100::1'       # our IPv6 address on port 1
UP6 = '2001:db8:100::fe'      # the upstream router on port 1, in IPv6

def e0():
    return Ether(dst=P0, src=PEER)

def e1():
    return Ether(dst=P1, src=PEER)

def data(n=16):
    return UDP(sport=40000, dport=40001) / Raw(bytes((i * 7 + 1) % 256 for i in range(n)))

def from_b(inner, **gre):
    return e0() / IP(src=RB, dst=L1) / GRE(**gre) / inner

ROUTER = '192.0.2.254'        # an underlay router between us and the client routers

def ours(remote, gre=None, total=1500, **ip):
    """An outer packet as we send it into a tunnel, `total` bytes long: from L1 to `remote`,
    DF set, then `gre` (a GRE header) or nothing (IPIP), then an inner UDP packet."""
    head = IP(**dict(dict(src=L1, dst=remote, flags='DF'), **ip))
    if gre is not None:
        head = head / gre
    body = IP(src='10.9.0.1', dst='10.2.0.5', flags='DF') / UDP(sport=40000, dport=40001)
    return head / body / Raw(b'\x00' * (total - len(head / body)))

def frag_needed(quote, mtu, cut=548, src=ROUTER, dst=L1, eth=e0, **icmp):
    """ICMP Fragmentation Needed from an underlay router about `quote` (a packet, cut to
    `cut` bytes, as a router quotes what fits in 576)."""
    return (eth() / IP(src=src, dst=dst) / ICMP(type=3, code=4, nexthopmtu=mtu, **icmp)
            / Raw(bytes(quote)[:cut]))

def ip_ok(layer, f):
    """The IPv4 header checksum of `layer` is valid: scapy's checksum over the raw header
    is zero, and deleting the field and rebuilding gives the value we wrote."""
    raw = bytes(layer)[: layer.ihl * 4]
    hdr = IP(raw)
    hdr.chksum = None
    return checksum(raw) == 0 and IP(bytes(hdr)).chksum == layer.chksum

def gre_ok(p, f):
    """The GRE checksum (RFC 2784) over GRE header and payload, from the raw bytes."""
    start = 14 + p[IP].ihl * 4
    g = f[start : 14 + p[IP].len]
    return checksum(g) == 0

for line in sys.stdin:
    line = line.rstrip("\n")
    cmd, _, arg = line.partition(" ")
    try:
        if cmd == "B":
            out = bytes(eval(arg)).hex()
        elif cmd == "D":
            parts = arg.split("\t")
            f = bytes.fromhex(parts[0])
            env = dict(globals())
            env["f"] = f
            env["p"] = Ether(f)
            out = "\t".join(
                str(eval(e, env)).replace("\t", " ").replace("\n", " ") for e in parts[1:]
            )
        else:
            raise ValueError("unknown request " + cmd)
        print("OK " + out, flush=True)
    except Exception as e:
        print("ERR " + repr(e).replace("\n", " "), flush=True)
"#;

struct Scapy {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn no_scapy(why: &str) -> ! {
    panic!(
        "the scapy oracle is not available ({why}): these tests need scapy for \
         {PYTHON}; run scripts/setup.sh"
    )
}

fn scapy() -> MutexGuard<'static, Scapy> {
    static ORACLE: OnceLock<Mutex<Scapy>> = OnceLock::new();
    let m = ORACLE.get_or_init(|| {
        let mut child = Command::new(PYTHON)
            .arg("-c")
            .arg(PRELUDE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| no_scapy(&format!("cannot run {PYTHON}: {e}")));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Mutex::new(Scapy {
            _child: child,
            stdin,
            stdout,
        })
    });
    // A test that failed while holding the lock left the protocol in step (it fails only
    // after reading the whole answer), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Send request lines, return one answer payload per line.
fn ask(lines: &[String]) -> Vec<String> {
    let mut s = scapy();
    let mut batch = String::new();
    for l in lines {
        assert!(!l.contains('\n'), "one request per line: {l:?}");
        batch.push_str(l);
        batch.push('\n');
    }
    if let Err(e) = s
        .stdin
        .write_all(batch.as_bytes())
        .and_then(|_| s.stdin.flush())
    {
        no_scapy(&format!("{PYTHON} exited: {e}"));
    }
    let mut answers = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    for l in lines {
        let mut a = String::new();
        match s.stdout.read_line(&mut a) {
            Ok(0) | Err(_) => no_scapy(&format!("{PYTHON} closed its output")),
            Ok(_) => {}
        }
        let a = a.trim_end_matches('\n');
        if let Some(rest) = a.strip_prefix("NOSCAPY ") {
            no_scapy(rest);
        } else if let Some(rest) = a.strip_prefix("OK ") {
            answers.push(rest.to_owned());
        } else if a == "OK" {
            answers.push(String::new());
        } else {
            errors.push(format!("{l}: {a}"));
            answers.push(String::new());
        }
    }
    drop(s);
    assert!(errors.is_empty(), "scapy refused: {errors:#?}");
    answers
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex from scapy: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from scapy"))
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `bytes(expr)` for one scapy expression.
pub fn pkt(expr: &str) -> Vec<u8> {
    pkts(&[expr]).pop().unwrap()
}

/// `bytes(expr)` for several scapy expressions, in one round trip.
pub fn pkts<S: AsRef<str>>(exprs: &[S]) -> Vec<Vec<u8>> {
    let lines: Vec<String> = exprs.iter().map(|e| format!("B {}", e.as_ref())).collect();
    ask(&lines).iter().map(|h| unhex(h)).collect()
}

/// Dissect `frame` with scapy (`p = Ether(f)`) and evaluate each expression, as `str()`.
pub fn dissect(frame: &[u8], exprs: &[&str]) -> Vec<String> {
    let mut line = format!("D {}", hex(frame));
    for e in exprs {
        assert!(!e.contains('\t'), "no tabs in expressions: {e:?}");
        line.push('\t');
        line.push_str(e);
    }
    let a = ask(&[line]).pop().unwrap();
    let v: Vec<String> = a.split('\t').map(str::to_owned).collect();
    assert_eq!(v.len(), exprs.len(), "one answer per expression: {a:?}");
    v
}

/// Dissect `frame` and compare each `(expression, expected str())` pair; all mismatches
/// are reported together.
pub fn check_fields(what: &str, frame: &[u8], fields: &[(&str, &str)]) {
    let exprs: Vec<&str> = fields.iter().map(|(e, _)| *e).collect();
    let got = dissect(frame, &exprs);
    let bad: Vec<String> = fields
        .iter()
        .zip(&got)
        .filter(|((_, want), got)| want != got)
        .map(|((e, want), got)| format!("{e}: want {want}, got {got}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: scapy disagrees on {} field(s):\n  {}\nframe {}",
        bad.len(),
        bad.join("\n  "),
        hex(frame)
    );
}

// ---------------------------------------------------------------------------------------
// Independent checks that need no python (for the property tests).

/// RFC 1071 Internet checksum verification, written here independently of `wire`.
pub fn rfc1071_ok(header: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for c in header.chunks(2) {
        let w = if c.len() == 2 {
            u32::from(c[0]) << 8 | u32::from(c[1])
        } else {
            u32::from(c[0]) << 8
        };
        sum += w;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

/// What every transmitted frame must be: Ethernet II from `src_mac`, IPv4 version 4, a
/// header and total length that fit the frame exactly, and a valid header checksum.
pub fn assert_sane_output(frame: &[u8], src_mac: EthernetAddress) {
    assert!(frame.len() >= 34, "output too short: {}", hex(frame));
    assert_eq!(
        &frame[6..12],
        &src_mac.0,
        "Ethernet source = egress port MAC"
    );
    assert_eq!(&frame[12..14], &[0x08, 0x00], "EtherType IPv4");
    let ip = &frame[14..];
    assert_eq!(ip[0] >> 4, 4, "IPv4 version");
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    assert!(ihl >= 20 && ihl <= ip.len(), "IHL {ihl}");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len(), "IPv4 total length = frame - 14");
    assert!(
        rfc1071_ok(&ip[..ihl]),
        "IPv4 header checksum: {}",
        hex(frame)
    );
}

// ---------------------------------------------------------------------------------------
// The lab.

pub const CLIENT_PORT: PortIndex = 0;
pub const CORE_PORT: PortIndex = 1;

pub const MAC_P0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
pub const MAC_P1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 1, 1]);
/// Neighbour MACs: tunnel remotes on port 0 are 02:00:00:00:aa:<last octet>.
pub fn remote_mac(last_octet: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0xaa, last_octet])
}
/// The upstream router on port 1 (203.0.113.254).
pub const MAC_UPSTREAM: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0xbb, 1]);

pub const L1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const L2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const LC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const RA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const RB: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const RC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
pub const RD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 4);
pub const RN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
pub const RS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 6);
pub const RE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const RX: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
pub const RF: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
pub const UPSTREAM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
pub const UPSTREAM_UNRESOLVED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 253);
/// Our IPv6 address on port 1.
pub const LC6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The upstream router on port 1, in IPv6 (a static neighbour at [`MAC_UPSTREAM`]).
pub const UP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0xfe);

fn pfx(s: &str) -> dataplane::lpm::Ipv4Prefix {
    s.parse().unwrap()
}

fn pfx6(s: &str) -> dataplane::lpm::Ipv6Prefix {
    s.parse().unwrap()
}

/// The lab configuration:
///
/// | port | MAC               | addresses            | transit |
/// |------|-------------------|----------------------|---------|
/// | 0    | 02:00:00:00:00:01 | 192.0.2.1, 192.0.2.2 | no      |
/// | 1    | 02:00:00:00:01:01 | 203.0.113.1          | yes     |
///
/// Port 1 also has the IPv6 address 2001:db8:100::1 (and its link-local one); IPv6 routes
/// 2001:db8:200::/48 and 2001:db8:201::/48 go natively out of it (below).
///
/// | tunnel | mode | remote         | clients      | special                          |
/// |--------|------|----------------|--------------|----------------------------------|
/// | a      | GRE  | 198.51.100.1   | 10.1.0.0/16  | key 100, sequence, checksum      |
/// | b      | GRE  | 198.51.100.2   | 10.2.0.0/16  | extra sources (1)                |
/// | c      | IPIP | 198.51.100.3   | 10.3.0.0/16  |                                  |
/// | d      | GRE  | 198.51.100.4   | 10.4.0.0/16  | key 400, TTL inherit, DSCP 46, DF copy |
/// | nn     | GRE  | 198.51.100.5   | 10.5.0.0/16  | next hop not in the neighbour table |
/// | small  | GRE  | 198.51.100.6   | 10.6.0.0/16  | MTU 200                          |
/// | e      | GRE  | 198.51.100.7   | 10.7.0.0/16  |                                  |
/// | edge   | GRE  | 203.0.113.50   | 10.99.0.0/16 | another edge router (2), key 7   |
///
/// (1) 172.16.2.0/24, 192.0.2.2/32 (ours) and 198.51.100.7/32 (e's remote), for the loop
/// tests. (2) Local 203.0.113.1, egress port 1, next hop 203.0.113.254.
///
/// | f      | GRE  | 198.51.100.8   | (IPv6 only)  | MTU 1400 (inner 1376)            |
///
/// IPv6 inside: tunnel a routes 2001:db8:1::/48 (link6 fd00:a::1/127), b 2001:db8:2::/48
/// (link6 fd00:b::1/127, extra source 2001:db8:b2::/48), c 2001:db8:3::/48 (link6
/// fd00:c::1/127), f 2001:db8:f::/48 (link6 fd00:f::1/127). IPv6 routes: 2001:db8:e0::/48
/// into tunnel e (which has no IPv6 of its own), 2001:db8:66::/48 blackhole,
/// 2001:db8:70::/48 unreachable, 2001:db8:71::/48 prohibit, and routes into e that cover
/// the martian destinations (::/126, ::ffff:0:0/96, fe80::/10, ff00::/8). Nothing else
/// (2001:db8:99::1 has no route).
///
/// Tunnels other than edge use local 192.0.2.1 and egress port 0. Routes: 8.0.0.0/8 and
/// 198.51.100.0/24 natively via 203.0.113.254 on port 1 (resolved), so are 0.0.0.0/8,
/// 127.0.0.0/8, 223.255.255.0/24 and 224.0.0.0/3 (martian destinations), 100.64.0.0/10 via
/// 203.0.113.253 (unresolved), 198.51.100.7/32 into tunnel e (a route to e's own
/// endpoint through e), 192.168.66.0/24 blackhole, 192.168.70.0/24 unreachable,
/// 192.168.71.0/24 prohibit. Nothing else is routed (9.9.9.9 has no route).
pub fn lab_builder() -> SnapshotBuilder {
    let mut b = SnapshotBuilder::new();
    b.port(CLIENT_PORT, PortEntry::client(MAC_P0, vec![L1, L2]));
    b.port(
        CORE_PORT,
        PortEntry {
            mac: MAC_P1,
            addrs: vec![LC],
            addrs6: vec![LC6],
            mtu: 1500,
            roles: PortRoles {
                core: true,
                internet: true,
                ..PortRoles::default()
            },
            transit: true,
            host_interface: false,
        },
    );
    let tunnel = |name: &str, mode, remote: Ipv4Addr, clients: &str| {
        let mut t = Tunnel::new(name, mode, L1, remote, CLIENT_PORT);
        t.prefixes.push(pfx(clients));
        t
    };
    let link6 = |s: &str| Some(s.parse::<ipnet::Ipv6Net>().unwrap());
    let mut a = tunnel("a", TunnelMode::Gre, RA, "10.1.0.0/16");
    a.prefixes6.push(pfx6("2001:db8:1::/48"));
    a.link6 = link6("fd00:a::1/127");
    a.key = Some(100);
    a.sequence = true;
    a.checksum = true;
    b.tunnel(a);
    let mut tb = tunnel("b", TunnelMode::Gre, RB, "10.2.0.0/16");
    tb.extra_sources = vec![
        pfx("172.16.2.0/24"),
        pfx("192.0.2.2/32"),
        pfx("198.51.100.7/32"),
    ];
    tb.prefixes6.push(pfx6("2001:db8:2::/48"));
    tb.extra_sources6.push(pfx6("2001:db8:b2::/48"));
    tb.link6 = link6("fd00:b::1/127");
    b.tunnel(tb);
    let mut c = tunnel("c", TunnelMode::Ipip, RC, "10.3.0.0/16");
    c.prefixes6.push(pfx6("2001:db8:3::/48"));
    c.link6 = link6("fd00:c::1/127");
    b.tunnel(c);
    let mut f = Tunnel::new("f", TunnelMode::Gre, L1, RF, CLIENT_PORT);
    f.mtu = 1400;
    f.prefixes6.push(pfx6("2001:db8:f::/48"));
    f.link6 = link6("fd00:f::1/127");
    b.tunnel(f);
    let mut d = tunnel("d", TunnelMode::Gre, RD, "10.4.0.0/16");
    d.key = Some(400);
    d.ttl = TtlPolicy::Inherit;
    d.dscp = DscpPolicy::Fixed(46);
    d.df = DfPolicy::Copy;
    b.tunnel(d);
    b.tunnel(tunnel("nn", TunnelMode::Gre, RN, "10.5.0.0/16"));
    let mut small = tunnel("small", TunnelMode::Gre, RS, "10.6.0.0/16");
    small.mtu = 200;
    b.tunnel(small);
    b.tunnel(tunnel("e", TunnelMode::Gre, RE, "10.7.0.0/16"));
    let mut edge = Tunnel::new("edge", TunnelMode::Gre, LC, RX, CORE_PORT);
    edge.key = Some(7);
    edge.next_hop = UPSTREAM;
    edge.prefixes.push(pfx("10.99.0.0/16"));
    b.tunnel(edge);

    for r in [RA, RB, RC, RD, RS, RE, RF] {
        b.neighbor(CLIENT_PORT, r, remote_mac(r.octets()[3]));
    }
    b.neighbor(CORE_PORT, UPSTREAM, MAC_UPSTREAM);
    // Native IPv6 out of port 1: 2001:db8:200::/48 via 2001:db8:100::fe (a static
    // neighbour, the upstream router's MAC), 2001:db8:201::/48 via 2001:db8:100::fd
    // (unresolved).
    b.neighbor6(CORE_PORT, UP6, MAC_UPSTREAM);
    b.route6(
        pfx6("2001:db8:200::/48"),
        RouteTarget::Native6 {
            port: CORE_PORT,
            next_hop: UP6,
        },
    );
    b.route6(
        pfx6("2001:db8:201::/48"),
        RouteTarget::Native6 {
            port: CORE_PORT,
            next_hop: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0xfd),
        },
    );
    let upstream = RouteTarget::Native {
        port: CORE_PORT,
        next_hop: UPSTREAM,
    };
    b.route(pfx("8.0.0.0/8"), upstream.clone());
    b.route(pfx("198.51.100.0/24"), upstream.clone());
    // Routes that cover martian destinations (which are dropped whatever the routes say),
    // and the last unicast /24 next to them.
    for p in [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "223.255.255.0/24",
        "224.0.0.0/3",
    ] {
        b.route(pfx(p), upstream.clone());
    }
    b.route(
        pfx("100.64.0.0/10"),
        RouteTarget::Native {
            port: CORE_PORT,
            next_hop: UPSTREAM_UNRESOLVED,
        },
    );
    b.route(pfx("198.51.100.7/32"), RouteTarget::Tunnel("e".into()));
    b.route(pfx("192.168.66.0/24"), RouteTarget::Blackhole);
    b.route(pfx("192.168.70.0/24"), RouteTarget::Unreachable);
    b.route(pfx("192.168.71.0/24"), RouteTarget::Prohibit);
    b.route6(pfx6("2001:db8:e0::/48"), RouteTarget::Tunnel("e".into()));
    b.route6(pfx6("2001:db8:66::/48"), RouteTarget::Blackhole);
    b.route6(pfx6("2001:db8:70::/48"), RouteTarget::Unreachable);
    b.route6(pfx6("2001:db8:71::/48"), RouteTarget::Prohibit);
    for p in ["::/126", "::ffff:0:0/96", "fe80::/10", "ff00::/8"] {
        b.route6(pfx6(p), RouteTarget::Tunnel("e".into()));
    }
    b
}

/// A snapshot of the lab, a worker, and helpers that send frames through it.
pub struct Lab {
    pub builder: SnapshotBuilder,
    pub snap: Arc<Snapshot>,
    pub pipe: Pipeline,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        let mut builder = lab_builder();
        let snap = builder.build().expect("the lab configuration is valid");
        Lab {
            builder,
            snap,
            pipe: Pipeline::new(0x1000),
        }
    }

    /// Process a burst of buffers received on `port`.
    pub fn process(&mut self, port: PortIndex, bufs: &mut [TestBuf]) -> Vec<Action> {
        let mut actions = vec![Action::Drop(DropReason::Runt); bufs.len()];
        self.pipe.process(&self.snap, port, bufs, &mut actions);
        actions
    }

    /// Process one buffer; return the action and the bytes it ends with.
    pub fn send_buf(&mut self, port: PortIndex, buf: TestBuf) -> (Action, Vec<u8>) {
        let mut bufs = [buf];
        let a = self.process(port, &mut bufs)[0];
        (a, bufs[0].data().to_vec())
    }

    /// Process one frame with the default headroom.
    pub fn send(&mut self, port: PortIndex, frame: &[u8]) -> (Action, Vec<u8>) {
        self.send_buf(port, TestBuf::new(frame))
    }

    /// Send a frame that must be dropped for `reason`: checks the action, that exactly
    /// that counter went up by one, and that nothing else was counted as a drop or punt.
    pub fn expect_drop(&mut self, port: PortIndex, frame: &[u8], reason: DropReason, case: &str) {
        self.expect_drop_buf(port, TestBuf::new(frame), reason, case);
    }

    pub fn expect_drop_buf(
        &mut self,
        port: PortIndex,
        buf: TestBuf,
        reason: DropReason,
        case: &str,
    ) {
        let before = self.pipe.counters().clone();
        let (a, _) = self.send_buf(port, buf);
        assert_eq!(a, Action::Drop(reason), "{case}");
        let after = self.pipe.counters();
        for r in DropReason::ALL {
            let want = before.drop_count(*r) + u64::from(*r == reason);
            assert_eq!(after.drop_count(*r), want, "{case}: counter {}", r.name());
        }
        assert_eq!(after.punts, before.punts, "{case}: punts unchanged");
    }

    /// Send a frame that must be transmitted; returns the egress port and the output.
    pub fn expect_transmit(
        &mut self,
        port: PortIndex,
        frame: &[u8],
        case: &str,
    ) -> (PortIndex, Vec<u8>) {
        self.expect_transmit_buf(port, TestBuf::new(frame), case)
    }

    pub fn expect_transmit_buf(
        &mut self,
        port: PortIndex,
        buf: TestBuf,
        case: &str,
    ) -> (PortIndex, Vec<u8>) {
        let drops = self.pipe.counters().total_drops();
        let (a, out) = self.send_buf(port, buf);
        let Action::Transmit(egress) = a else {
            panic!("{case}: expected a transmit, got {a:?}");
        };
        assert_eq!(
            self.pipe.counters().total_drops(),
            drops,
            "{case}: no drop counted"
        );
        let mac = self.snap.port(egress).expect("egress port exists").mac;
        assert_sane_output(&out, mac);
        (egress, out)
    }

    /// Send a frame that must be dropped for `reason` and answered with an ICMP error of
    /// `kind`: checks the action, that exactly that drop counter and that ICMP counter went
    /// up by one, and the output's Ethernet and IPv4 sanity. Returns the egress port and
    /// the frame sent.
    pub fn expect_icmp(
        &mut self,
        port: PortIndex,
        frame: &[u8],
        reason: DropReason,
        kind: IcmpKind,
        case: &str,
    ) -> (PortIndex, Vec<u8>) {
        let before = self.pipe.counters().clone();
        let (a, out) = self.send(port, frame);
        let Action::Reply {
            port: egress,
            reason: r,
        } = a
        else {
            panic!("{case}: expected an ICMP error for {reason:?}, got {a:?}");
        };
        assert_eq!(r, reason, "{case}: the drop reason");
        let after = self.pipe.counters();
        for x in DropReason::ALL {
            let want = before.drop_count(*x) + u64::from(*x == reason);
            assert_eq!(after.drop_count(*x), want, "{case}: counter {}", x.name());
        }
        for k in IcmpKind::ALL {
            let want = before.icmp_count(k) + u64::from(k == kind);
            assert_eq!(
                after.icmp_count(k),
                want,
                "{case}: ICMP counter {}",
                k.name()
            );
        }
        assert_eq!(after.punts, before.punts, "{case}: punts unchanged");
        let mac = self.snap.port(egress).expect("egress port exists").mac;
        assert_sane_output(&out, mac);
        (egress, out)
    }

    /// Send a frame that must be punted for `reason`; returns what the control path gets.
    pub fn expect_punt(
        &mut self,
        port: PortIndex,
        frame: &[u8],
        reason: PuntReason,
        case: &str,
    ) -> Vec<u8> {
        let before = self.pipe.counters().punt_count(reason);
        let (a, out) = self.send(port, frame);
        assert_eq!(a, Action::Punt(reason), "{case}");
        assert_eq!(
            self.pipe.counters().punt_count(reason),
            before + 1,
            "{case}: punt counted"
        );
        out
    }

    pub fn counters(&self) -> &Counters {
        self.pipe.counters()
    }
}

/// The ICMP error at `at` in `frame` (its IPv4 header onwards, to the end) must be, byte for
/// byte, what scapy builds from the fields SPEC.md prescribes: from `src` to `dst`, TTL 64,
/// DSCP CS6 (TOS 0xc0), no fragmentation flags, protocol ICMP, the given type, code and
/// (for code 4) next-hop MTU, and `quote` as its body, with both checksums as scapy computes
/// them. The identification is ours to choose and is taken from the frame.
pub fn check_icmp_error(
    what: &str,
    frame: &[u8],
    at: usize,
    (src, dst): (&str, &str),
    (icmp_type, code, mtu): (u8, u8, u16),
    quote: &[u8],
) {
    let ip = &frame[at..];
    assert!(ip.len() >= 28, "{what}: an ICMP error is at least 28 bytes");
    let id = u16::from_be_bytes([ip[4], ip[5]]);
    let icmp = if icmp_type == 3 && code == 4 {
        format!("ICMP(type={icmp_type}, code={code}, nexthopmtu={mtu})")
    } else {
        format!("ICMP(type={icmp_type}, code={code})")
    };
    let want = pkt(&format!(
        "IP(src='{src}', dst='{dst}', ttl=64, tos=0xc0, id={id}, flags=0)/{icmp}/\
         Raw(bytes.fromhex('{}'))",
        hex(quote)
    ));
    assert_eq!(
        hex(ip),
        hex(&want),
        "{what}: the ICMP error, byte for byte against scapy"
    );
}

/// received = transmitted + dropped + punted, over the per-port counters.
pub fn assert_conserved(c: &Counters) {
    let rx: u64 = c.ports.iter().map(|p| p.rx.packets).sum();
    let tx: u64 = c.ports.iter().map(|p| p.tx.packets).sum();
    let punts: u64 = c.punts.iter().sum();
    assert_eq!(
        rx,
        tx + c.total_drops() + punts,
        "received = transmitted + dropped + punted (drops {:?})",
        c.nonzero_drops()
    );
}
