//! Shared inputs for the benches: the real IPv4 table, random tables and addresses (seeded,
//! so every run measures the same thing), tunnel frames, and a forwarding snapshot with a
//! million routes over a thousand tunnels; the IPv6 ones in [`ipv6`].
//!
//! Everything here runs before any measurement and panics on bad input.

pub mod compare;
pub mod ipv6;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::buffer::TestBuf;
use dataplane::lpm::{Ipv4Lpm, Ipv4LpmBuilder, Ipv4Prefix, NextHop};
use dataplane::tables::{
    PortEntry, PortIndex, PortRoles, RouteTarget, Snapshot, SnapshotBuilder, Tunnel, TunnelMode,
};
use dataplane::wire::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, GrePacket, GreRepr, IpProtocol,
    Ipv4Packet, Ipv4Repr,
};
use flate2::read::GzDecoder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The real IPv4 table: 564,580 lines `PREFIX ASN` (see `shared/data/README.md`).
pub const PREFIXES_V4: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/prefixes-v4.txt.gz"
);

/// A seeded generator: the same inputs on every run.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// The real table's lines as (prefix, origin ASN).
pub fn real_table() -> Vec<(Ipv4Prefix, u32)> {
    read_table(PREFIXES_V4, 600_000)
}

/// A gzipped `PREFIX ASN` table's lines as (prefix, origin ASN); `capacity`: about how
/// many there are.
fn read_table<P: std::str::FromStr>(path: &str, capacity: usize) -> Vec<(P, u32)>
where
    P::Err: std::fmt::Display,
{
    let file = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::with_capacity(capacity);
    for (n, line) in BufReader::new(GzDecoder::new(file)).lines().enumerate() {
        let line = line.unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut words = line.split_whitespace();
        let (Some(prefix), Some(asn), None) = (words.next(), words.next(), words.next()) else {
            panic!("{path}:{}: expected `PREFIX ASN`: {line:?}", n + 1);
        };
        let prefix: P = prefix
            .parse()
            .unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1));
        let asn: u32 = asn
            .parse()
            .unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1));
        out.push((prefix, asn));
    }
    out
}

/// Spread the real table over `next_hops` next hops (by origin ASN, so one origin's
/// prefixes share a next hop, as they tend to in a real FIB).
pub fn with_next_hops<P: Copy>(table: &[(P, u32)], next_hops: u32) -> Vec<(P, NextHop)> {
    table
        .iter()
        .map(|&(p, asn)| (p, NextHop::new(asn % next_hops).expect("small index")))
        .collect()
}

/// Build a table from `rules` (inserts and one publish) and say how long it took.
pub fn build_lpm(rules: &[(Ipv4Prefix, NextHop)]) -> (Ipv4Lpm, Duration) {
    let start = Instant::now();
    let mut b = Ipv4LpmBuilder::new();
    for &(p, nh) in rules {
        b.insert(p, nh);
    }
    let table = b.publish();
    let took = start.elapsed();
    (table, took)
}

/// Prefix-length counts of the real table (/8 to /32), used as weights for random tables.
const REAL_LENGTHS: [(u8, u32); 25] = [
    (8, 8),
    (9, 6),
    (10, 31),
    (11, 95),
    (12, 257),
    (13, 493),
    (14, 1120),
    (15, 2455),
    (16, 9332),
    (17, 6735),
    (18, 11825),
    (19, 22075),
    (20, 33264),
    (21, 46064),
    (22, 103676),
    (23, 103717),
    (24, 218667),
    (25, 1350),
    (26, 1447),
    (27, 1595),
    (28, 141),
    (29, 164),
    (30, 53),
    (31, 3),
    (32, 7),
];

/// A random prefix length with the real table's mix.
fn random_len(rng: &mut SmallRng) -> u8 {
    let total: u32 = REAL_LENGTHS.iter().map(|&(_, n)| n).sum();
    let mut pick = rng.gen_range(0..total);
    for &(len, n) in &REAL_LENGTHS {
        if pick < n {
            return len;
        }
        pick -= n;
    }
    24
}

/// `n` distinct random unicast prefixes (first byte 1 to 223) with the real table's length
/// mix. Unlike the real table (whose prefixes never nest), these nest by chance.
pub fn random_prefixes(rng: &mut SmallRng, n: usize) -> Vec<Ipv4Prefix> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = random_len(rng);
        let addr = Ipv4Addr::from(rng.gen_range(0x0100_0000..0xe000_0000u32));
        let p = Ipv4Prefix::truncating(addr, len).expect("len <= 32");
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// `n` addresses drawn uniformly from the whole address space.
pub fn uniform_addrs(rng: &mut SmallRng, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.gen()).collect()
}

/// `n` addresses each inside a prefix drawn uniformly from `prefixes`.
pub fn addrs_in(rng: &mut SmallRng, prefixes: &[Ipv4Prefix], n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let p = prefixes[rng.gen_range(0..prefixes.len())];
            p.bits() | (rng.gen::<u32>() & !p.mask())
        })
        .collect()
}

/// Address ranges the backbone snapshot uses for itself, or that are never forwarded; no
/// route may overlap them.
const RESERVED: [&str; 5] = [
    "100.64.0.0/10", // IP-in-IP client prefixes
    "172.16.0.0/12", // GRE client prefixes
    "198.18.0.0/15", // tunnel remotes
    "192.0.2.0/24",  // our address and the underlay router
    "127.0.0.0/8",   // loopback: a martian destination
];

fn overlaps(a: Ipv4Prefix, b: Ipv4Prefix) -> bool {
    a.contains_bits(b.bits()) || b.contains_bits(a.bits())
}

/// A GRE or IP-in-IP tunnel of the [`Backbone`] snapshot, as its packets arrive.
#[derive(Debug, Clone)]
pub struct BenchTunnel {
    pub name: String,
    /// The client router's endpoint (outer source of arriving packets).
    pub remote: Ipv4Addr,
    /// The GRE key (`None` for IP-in-IP).
    pub key: Option<u32>,
    /// One of the client's prefixes (inner sources come from it).
    pub client: Ipv4Prefix,
}

/// A snapshot shaped like a busy edge router, and what the benches need to make traffic for it.
#[derive(Debug)]
pub struct Backbone {
    pub snapshot: Arc<Snapshot>,
    /// The client port: every tunnel arrives and leaves here.
    pub port: PortIndex,
    pub port_mac: EthernetAddress,
    /// Our tunnel endpoint.
    pub local: Ipv4Addr,
    /// GRE tunnels (key only); every route leads into one of them.
    pub gre: Vec<BenchTunnel>,
    /// IP-in-IP tunnels: sources of traffic only (no routes beyond their client prefixes).
    pub ipip: Vec<BenchTunnel>,
    /// Every prefix routed into a GRE tunnel by an explicit route.
    pub routes: Vec<Ipv4Prefix>,
    /// How long `SnapshotBuilder::build` took (it builds both LPM tables).
    pub build_time: Duration,
}

impl Backbone {
    /// `gre_tunnels` GRE tunnels with 4 client /24s each, `ipip_tunnels` IP-in-IP tunnels
    /// with one, the real table (less the prefixes that overlap the ranges the snapshot uses
    /// for itself), and random /24s up to `total_routes` routes in the LPM, each explicit route
    /// into a random GRE tunnel.
    pub fn new(
        gre_tunnels: usize,
        ipip_tunnels: usize,
        total_routes: usize,
        rng: &mut SmallRng,
    ) -> Backbone {
        assert!(gre_tunnels <= 1000 && ipip_tunnels <= 256);
        let port: PortIndex = 0;
        let port_mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let underlay = Ipv4Addr::new(192, 0, 2, 254);
        let reserved: Vec<Ipv4Prefix> = RESERVED.iter().map(|s| s.parse().unwrap()).collect();

        let mut b = SnapshotBuilder::new();
        b.port(
            port,
            PortEntry {
                mac: port_mac,
                addrs: vec![local],
                addrs6: Vec::new(),
                mtu: 1500,
                roles: PortRoles {
                    client: true,
                    core: true,
                    internet: false,
                    lan: false,
                },
                transit: false,
                host_interface: false,
            },
        );
        // Every tunnel leaves through one underlay router.
        b.neighbor(port, underlay, EthernetAddress([0x02, 0, 0, 0, 0xfe, 0x01]));

        let base_172 = u32::from(Ipv4Addr::new(172, 16, 0, 0));
        let mut gre = Vec::with_capacity(gre_tunnels);
        for i in 0..gre_tunnels as u32 {
            let remote = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i);
            let name = format!("gre-{i:04}");
            let mut t = Tunnel::new(&name, TunnelMode::Gre, local, remote, port);
            t.key = Some(1000 + i);
            t.next_hop = underlay;
            t.prefixes = (0..4)
                .map(|k| Ipv4Prefix::new(Ipv4Addr::from(base_172 + ((i * 4 + k) << 8)), 24))
                .collect::<Result<_, _>>()
                .unwrap();
            gre.push(BenchTunnel {
                name: name.clone(),
                remote,
                key: t.key,
                client: t.prefixes[0],
            });
            b.tunnel(t);
        }
        let mut ipip = Vec::with_capacity(ipip_tunnels);
        for i in 0..ipip_tunnels as u32 {
            let remote = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 1)) + i);
            let name = format!("ipip-{i:03}");
            let mut t = Tunnel::new(&name, TunnelMode::Ipip, local, remote, port);
            t.next_hop = underlay;
            let client = Ipv4Prefix::new(Ipv4Addr::new(100, 64, i as u8, 0), 24).unwrap();
            t.prefixes = vec![client];
            ipip.push(BenchTunnel {
                name: name.clone(),
                remote,
                key: None,
                client,
            });
            b.tunnel(t);
        }

        let mut routes: Vec<Ipv4Prefix> = real_table()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| !reserved.iter().any(|&r| overlaps(p, r)))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        routes.sort_unstable();
        let client_prefixes = gre_tunnels * 4 + ipip_tunnels;
        let mut seen: HashSet<Ipv4Prefix> = routes.iter().copied().collect();
        while routes.len() + client_prefixes < total_routes {
            let addr = Ipv4Addr::from(rng.gen_range(0x0100_0000..0xe000_0000u32));
            let p = Ipv4Prefix::truncating(addr, 24).unwrap();
            if !reserved.iter().any(|&r| overlaps(p, r)) && seen.insert(p) {
                routes.push(p);
            }
        }
        for &p in &routes {
            let t = &gre[rng.gen_range(0..gre.len())];
            b.route(p, RouteTarget::Tunnel(t.name.clone()));
        }

        let start = Instant::now();
        let snapshot = b.build().expect("the bench configuration is valid");
        let build_time = start.elapsed();
        Backbone {
            snapshot,
            port,
            port_mac,
            local,
            gre,
            ipip,
            routes,
            build_time,
        }
    }

    /// A frame arriving from `from`: Ethernet to our port, outer IPv4 to our endpoint (GRE
    /// with the tunnel's key, or IP-in-IP), inner IPv4 `src` -> `dst` with TTL 64, and a UDP
    /// header and `payload` bytes behind it. All checksums valid except UDP's (zero: none).
    pub fn frame(
        &self,
        from: &BenchTunnel,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: usize,
    ) -> Vec<u8> {
        tunnel_frame(
            self.port_mac,
            from.remote,
            self.local,
            from.key.map(|k| GreRepr {
                protocol_type: EtherType::IPV4,
                key: Some(k),
                sequence: None,
                checksum: false,
            }),
            src,
            dst,
            payload,
        )
    }
}

/// An Ethernet + IPv4 + (GRE or nothing) + IPv4 + UDP frame. `gre: None` makes IP-in-IP.
pub fn tunnel_frame(
    dst_mac: EthernetAddress,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    gre: Option<GreRepr>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: usize,
) -> Vec<u8> {
    let inner_len = 20 + 8 + payload;
    let gre_len = gre.map_or(0, |g| g.buffer_len());
    let mut f = vec![0u8; 14 + 20 + gre_len + inner_len];
    EthernetRepr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, 0xaa, 0x01]),
        dst_addr: dst_mac,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut f[..14]));
    Ipv4Repr {
        src_addr: outer_src,
        dst_addr: outer_dst,
        next_header: if gre.is_some() {
            IpProtocol::GRE
        } else {
            IpProtocol::IPIP
        },
        payload_len: gre_len + inner_len,
        hop_limit: 60,
        dscp: 0,
        ecn: Default::default(),
        dont_frag: true,
        ident: 1,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut f[14..34]));
    let inner_at = 34 + gre_len;
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::UDP,
        payload_len: 8 + payload,
        hop_limit: 64,
        dscp: 0,
        ecn: Default::default(),
        dont_frag: true,
        ident: 2,
    }
    .emit(&mut Ipv4Packet::new_unchecked(
        &mut f[inner_at..inner_at + 20],
    ));
    let udp = inner_at + 20;
    f[udp..udp + 2].copy_from_slice(&40000u16.to_be_bytes());
    f[udp + 2..udp + 4].copy_from_slice(&9u16.to_be_bytes());
    f[udp + 4..udp + 6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    for (j, b) in f[udp + 8..].iter_mut().enumerate() {
        *b = j as u8;
    }
    if let Some(g) = gre {
        g.emit(&mut GrePacket::new_unchecked(&mut f[34..34 + gre_len]));
        GrePacket::new_unchecked(&mut f[34..]).fill_checksum();
    }
    f
}

/// `TestBuf`s holding `frames`, with the default (DPDK's) headroom.
pub fn bufs(frames: &[Vec<u8>]) -> Vec<TestBuf> {
    frames.iter().map(|f| TestBuf::new(f)).collect()
}
