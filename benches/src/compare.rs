//! What the comparisons with DPDK's tables (`lpm_vs_dpdk`, `lpm6_vs_dpdk`) share: the
//! best-of-several build timing, the covering aggregates added to the real table, and the
//! unit the summaries print sizes in.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::Duration;

use dataplane::lpm::NextHop;
use rand::rngs::SmallRng;
use rand::Rng;

/// `bytes` in MiB.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The best of up to `builds` builds (stopping after one that takes over `long`), each
/// dropping the previous table first: DPDK's live in EAL memory. Returns the last table,
/// the best time and how many builds ran.
pub fn best_of<T>(
    builds: usize,
    long: Duration,
    mut build: impl FnMut(usize) -> (T, Duration),
) -> (T, Duration, usize) {
    let mut best = Duration::MAX;
    let mut last = None;
    let mut done = 0;
    for i in 0..builds {
        drop(last.take());
        let (t, took) = build(i);
        best = best.min(took);
        last = Some(t);
        done += 1;
        if took > long {
            break;
        }
    }
    (last.expect("builds > 0"), best, done)
}

/// Covering aggregates: each prefix's supernets at `lens` (ascending; only those shorter
/// than the prefix), each distinct one once, with a random next hop below `next_hops`;
/// appended after `rules`. `supernet(p, len)` is `p` cut to `len` bits, `prefix_len(p)` its
/// length.
pub fn with_aggregates<P: Copy + Eq + Hash>(
    rules: &[(P, NextHop)],
    lens: &[u8],
    next_hops: u32,
    r: &mut SmallRng,
    prefix_len: impl Fn(P) -> u8,
    supernet: impl Fn(P, u8) -> P,
) -> Vec<(P, NextHop)> {
    let mut seen: HashSet<P> = rules.iter().map(|&(p, _)| p).collect();
    let mut out = rules.to_vec();
    for &(p, _) in rules {
        for &len in lens {
            if len >= prefix_len(p) {
                break;
            }
            let agg = supernet(p, len);
            if seen.insert(agg) {
                let nh = NextHop::new(r.gen_range(0..next_hops)).expect("small");
                out.push((agg, nh));
            }
        }
    }
    out
}
