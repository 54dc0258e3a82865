//! Shared inputs for the IPv6 benches: the real IPv6 table, random tables with its length
//! mix, and addresses inside a table's prefixes (seeded, so every run measures the same
//! thing).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use dataplane::lpm::{Ipv6Lpm, Ipv6LpmBuilder, Ipv6Prefix, NextHop};
use rand::rngs::SmallRng;
use rand::Rng;

/// The real IPv6 table: 167,903 lines `PREFIX ASN` (see `shared/data/README.md`).
pub const PREFIXES_V6: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/prefixes-v6.txt.gz"
);

/// The real IPv6 table's lines as (prefix, origin ASN).
pub fn real_table_v6() -> Vec<(Ipv6Prefix, u32)> {
    crate::read_table(PREFIXES_V6, 170_000)
}

/// Spread the real table over `next_hops` next hops (by origin ASN, so one origin's
/// prefixes share a next hop, as they tend to in a real FIB).
pub fn with_next_hops_v6(
    table: &[(Ipv6Prefix, u32)],
    next_hops: u32,
) -> Vec<(Ipv6Prefix, NextHop)> {
    crate::with_next_hops(table, next_hops)
}

/// Build a table from `rules` (inserts and one publish) and say how long it took.
pub fn build_lpm6(rules: &[(Ipv6Prefix, NextHop)]) -> (Ipv6Lpm, Duration) {
    let start = Instant::now();
    let mut b = Ipv6LpmBuilder::new();
    for &(p, nh) in rules {
        b.insert(p, nh);
    }
    let table = b.publish();
    let took = start.elapsed();
    (table, took)
}

/// How many prefixes of each length (index 0..=128) `table` has: the weights of
/// [`random_prefixes_v6`].
pub fn length_mix(table: &[Ipv6Prefix]) -> Vec<u32> {
    let mut counts = vec![0u32; 129];
    for p in table {
        counts[usize::from(p.prefix_len())] += 1;
    }
    counts
}

/// `n` distinct random prefixes in 2000::/3 (global unicast, where real tables are)
/// whose lengths are drawn with the weights `mix` (see [`length_mix`]; for the real table:
/// 30% /29 to /32, 25% /48, 1% /64, 1% longer, the rest in between). Unlike the real
/// table (whose prefixes never nest), these nest by chance, and unlike it they share
/// almost no bits below the first 24: the worst case for every trie.
pub fn random_prefixes_v6(rng: &mut SmallRng, mix: &[u32], n: usize) -> Vec<Ipv6Prefix> {
    let total: u32 = mix.iter().sum();
    assert!(total > 0, "an empty length mix");
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut pick = rng.gen_range(0..total);
        let mut len = 0;
        for (l, &w) in mix.iter().enumerate() {
            if pick < w {
                len = l as u8;
                break;
            }
            pick -= w;
        }
        let addr = (rng.gen::<u128>() >> 3) | (1 << 125);
        let p = Ipv6Prefix::from_bits(addr, len).expect("len <= 128");
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// `n` addresses each inside a prefix drawn uniformly from `prefixes`.
pub fn addrs_in_v6(rng: &mut SmallRng, prefixes: &[Ipv6Prefix], n: usize) -> Vec<u128> {
    (0..n)
        .map(|_| {
            let p = prefixes[rng.gen_range(0..prefixes.len())];
            p.bits() | (rng.gen::<u128>() & !p.mask())
        })
        .collect()
}
