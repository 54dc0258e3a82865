//! Our IPv6 LPM against DPDK's `rte_fib6` (its trie: `RTE_FIB6_TRIE`, 4-byte next hops) and
//! `rte_lpm6`, in one process under one EAL, on the same tables and the same lookup
//! addresses:
//!
//! - `real`: the real table (167,903 prefixes that never nest), next hops by origin ASN
//!   spread over 1,000 tunnels;
//! - `real_agg`: the same plus covering aggregates, so that prefixes nest: for every prefix,
//!   its supernets of length /20, /24, /32 and /40 (those shorter than it), each distinct one
//!   added once with a next hop of its own (a random tunnel), after the more-specifics;
//! - `random_1m`: 1,000,000 distinct random prefixes in 2000::/3 with the real table's
//!   length mix (mostly /29 to /48, 1% /64, 1% longer, a few /128).
//!
//! Addresses: 65,536 drawn from the table (a prefix drawn uniformly, then a random address
//! inside it), so that every lookup hits a prefix and walks as deep as its prefix is long.
//! Before any timing, every address is looked up in all three tables, one at a time and in
//! bursts, and the answers must agree: `rte_fib6` and `rte_lpm6` are independent oracles for
//! ours.
//!
//! Measured, as ns per lookup: `single` (one lookup at a time in a loop; independent
//! lookups, so the CPU may overlap them) and `bulk32` (the bulk call on bursts of 32).
//! `rte_fib6` has no single lookup (a bulk call of one is used); `rte_lpm6_lookup` is a real
//! function in DPDK, not an inline one. `rte_fib6` bulk is measured with the scalar lookup
//! (what a stock EAL selects: its SIMD width defaults to 256 bits) and with the AVX-512 one
//! (EAL is started with `--force-max-simd-bitwidth=512`; skipped where the CPU lacks
//! AVX-512). DPDK takes addresses as 16-byte arrays and we take `u128`s: each gets its own
//! form, made before the timing.
//!
//! Timing: the machine this runs on is shared, so the implementations are timed in turns:
//! each round runs one pass over the addresses (65,536 lookups) of every implementation and
//! mode, and the summary takes the 10th percentile of each one's passes (passes another
//! process interrupted land in the upper tail) and the median. Build time: from an empty
//! table to one that answers (ours: inserts and one publish; DPDK: create, which allocates
//! and zeroes the whole table, then the adds), the best of 3 (of 1 where one build takes
//! over 5 s). Memory: the lookup structure (ours: the table; DPDK: its 2^24-entry first
//! level and the 256-entry groups the table uses) and, apart, what each keeps beside it
//! (our rules; DPDK's allocation of every configured group, and its RIB or rules).
//!
//! DPDK's tables are sized for each table, as they must be when they are made: `rte_fib6`'s
//! group pool for what its trie reserves (per route, a group for each byte beyond its
//! covering route's), `rte_lpm6`'s for the groups it uses and a tenth more. `rte_lpm6` is
//! left out where a table needs more than its 2^21 groups (the random million does). EAL
//! runs with `--no-huge`: DPDK's tables sit on 4 KiB pages, like ours.
//!
//! `cargo bench -p backbone-benches --bench lpm6_vs_dpdk`; `-- --smoke` (what CI runs) takes
//! 20,000 prefixes of each table (every eighth of the real one), 4,096 addresses and 20
//! rounds, a few seconds, and fails if it measured nothing.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use backbone_benches::compare::{best_of, mib, with_aggregates};
use backbone_benches::ipv6::{
    addrs_in_v6, build_lpm6, length_mix, random_prefixes_v6, real_table_v6, with_next_hops_v6,
};
use backbone_benches::rng;
use dataplane::dpdk::{Eal, Fib6Lookup, Fib6NextHop, RteFib6, RteLpm6};
use dataplane::lpm::{Ipv6Lpm, Ipv6LpmBuilder, Ipv6Prefix, NextHop, BURST};
use rand::Rng;

/// Addresses per pass: 1 MiB of them, more than L1 and L2 hold with the tables.
const ADDRS: usize = 1 << 16;
/// Next hops: tunnel indices.
const TUNNELS: u32 = 1000;
/// What `rte_fib6` answers where no prefix matches: our "no route" value.
const FIB_NONE: u64 = NextHop::NONE.index() as u64;
/// Builds per table; the best is reported (one where a build takes longer than
/// [`LONG_BUILD`]).
const BUILDS: usize = 3;
const LONG_BUILD: Duration = Duration::from_secs(5);

/// How big a run is: the full benchmark or CI's smoke run.
struct Scale {
    smoke: bool,
    /// Prefixes taken from each table (all of them unless smoke).
    prefixes: usize,
    /// Rounds timed, after `warm_up` untimed ones.
    rounds: usize,
    warm_up: usize,
    /// Addresses per pass.
    addrs: usize,
}

/// One implementation's passes, in ns per lookup.
struct Kernel<'a> {
    name: &'static str,
    mode: &'static str,
    run: Box<dyn FnMut() -> u64 + 'a>,
    passes: Vec<f64>,
}

/// The row of the summary for one implementation and mode.
struct Row {
    table: String,
    name: &'static str,
    mode: &'static str,
    p10: f64,
    median: f64,
}

/// One table's build and memory figures, for the summary.
struct Built {
    table: String,
    lines: Vec<String>,
}

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Groups of 256 entries that a DIR-24 table with 8-bit strides below (DPDK's trie and
/// lpm6) holds: one under each distinct /24, /32, ..., /120 that contains a longer prefix.
fn groups_needed(rules: &[(Ipv6Prefix, NextHop)]) -> usize {
    let mut set: HashSet<(u8, u128)> = HashSet::new();
    for (p, _) in rules {
        let mut d = 24u8;
        while d < p.prefix_len() {
            set.insert((d, p.bits() >> (128 - u32::from(d))));
            d += 8;
        }
    }
    set.len()
}

/// Groups `rte_fib6`'s trie reserves for `rules`, an upper bound: it refuses a route
/// unless a group is left for each byte the route reaches beyond its covering route's (or
/// /24), so a table needs that many more than it uses (`trie_modify` in DPDK's trie.c).
fn groups_reserved(rules: &[(Ipv6Prefix, NextHop)]) -> usize {
    rules
        .iter()
        .map(|(p, _)| usize::from(p.prefix_len().div_ceil(8)).saturating_sub(3))
        .sum()
}

fn bytes_of(addr: u128) -> [u8; 16] {
    addr.to_be_bytes()
}

/// Checks that every address gets the same answer from all three tables, one at a time
/// and in bursts; returns the share of addresses with a route.
fn check_agree(
    name: &str,
    ours: &Ipv6Lpm,
    fib: &RteFib6<'_>,
    lpm: Option<&RteLpm6<'_>>,
    addrs: &[u128],
    ips: &[[u8; 16]],
) -> f64 {
    let mut hits = 0usize;
    let mut ours_bulk = [NextHop::NONE; BURST];
    let mut fib_bulk = [0u64; BURST];
    let mut lpm_bulk = [0i32; BURST];
    for (chunk, ip_chunk) in addrs.chunks(BURST).zip(ips.chunks(BURST)) {
        let n = chunk.len();
        ours.lookup_bulk(chunk, &mut ours_bulk[..n]);
        fib.lookup_bulk(ip_chunk, &mut fib_bulk[..n]);
        if let Some(lpm) = lpm {
            lpm.lookup_bulk(ip_chunk, &mut lpm_bulk[..n]);
        }
        for (i, (&a, ip)) in chunk.iter().zip(ip_chunk).enumerate() {
            let single = ours.lookup_u128(a).to_option().map(|h| h.index());
            let bulk = ours_bulk[i].to_option().map(|h| h.index());
            let fib_single = Some(fib.lookup(ip))
                .filter(|&h| h != FIB_NONE)
                .map(|h| h as u32);
            let fib_b = Some(fib_bulk[i])
                .filter(|&h| h != FIB_NONE)
                .map(|h| h as u32);
            let (lpm_single, lpm_b) = match lpm {
                Some(lpm) => (lpm.lookup(ip), u32::try_from(lpm_bulk[i]).ok()),
                None => (single, single),
            };
            assert!(
                single == bulk
                    && single == fib_single
                    && single == fib_b
                    && single == lpm_single
                    && single == lpm_b,
                "{name}: {} -> ours {single:?}/{bulk:?}, rte_fib6 {fib_single:?}/{fib_b:?}, \
                 rte_lpm6 {lpm_single:?}/{lpm_b:?}",
                std::net::Ipv6Addr::from(a)
            );
            hits += usize::from(single.is_some());
        }
    }
    100.0 * hits as f64 / addrs.len() as f64
}

/// Build the three tables, check they agree, time them in turns.
fn run_table(
    eal: &Eal,
    scale: &Scale,
    name: &str,
    rules: &[(Ipv6Prefix, NextHop)],
    seed: u64,
    rows: &mut Vec<Row>,
    built: &mut Vec<Built>,
) {
    let n = rules.len();
    let (ours, t_ours, b_ours) = best_of(BUILDS, LONG_BUILD, |_| build_lpm6(rules));
    let ours_rules_bytes = {
        let mut b = Ipv6LpmBuilder::new();
        b.extend(rules.iter().copied());
        b.memory_bytes()
    };
    let groups = groups_needed(rules);
    // What the tables need (rte_lpm6: what it uses, a tenth to spare; rte_fib6: what it
    // reserves): DPDK allocates (and zeroes) them all when the table is made.
    let lpm_tbl8s = (groups + groups / 10 + 1024) as u32;
    let fib_tbl8s = (groups_reserved(rules).max(groups) + 1024) as u32;
    let n32 = n as u32;
    let mut fib_create = Duration::ZERO;
    let (fib, t_fib, b_fib) = best_of(BUILDS, LONG_BUILD, |i| {
        let start = Instant::now();
        // The RIB takes a node per prefix and per branching point: up to two per prefix.
        let mut fib = RteFib6::new(
            eal,
            &format!("{name}_fib6_{i}"),
            Fib6NextHop::Bytes4,
            2 * n32 + 1024,
            fib_tbl8s,
            FIB_NONE,
        )
        .unwrap_or_else(|e| panic!("rte_fib6 {name}: {e}"));
        fib_create = start.elapsed();
        for &(p, nh) in rules {
            fib.add(&bytes_of(p.bits()), p.prefix_len(), u64::from(nh.index()))
                .unwrap_or_else(|e| panic!("rte_fib6 {name}: add {p:?}: {e}"));
        }
        (fib, start.elapsed())
    });
    let mut lpm_create = Duration::ZERO;
    // rte_lpm6 takes at most 2^21 groups (RTE_LPM6_TBL8_MAX_NUM_GROUPS).
    let lpm_fits = lpm_tbl8s <= 1 << 21;
    let (lpm, t_lpm, b_lpm) = if lpm_fits {
        let (lpm, t, b) = best_of(BUILDS, LONG_BUILD, |i| {
            let start = Instant::now();
            let mut lpm = RteLpm6::new(eal, &format!("{name}_lpm6_{i}"), n32 + n32 / 8, lpm_tbl8s)
                .unwrap_or_else(|e| panic!("rte_lpm6 {name}: {e}"));
            lpm_create = start.elapsed();
            for &(p, nh) in rules {
                lpm.add(&bytes_of(p.bits()), p.prefix_len(), nh.index())
                    .unwrap_or_else(|e| panic!("rte_lpm6 {name}: add {p:?}: {e}"));
            }
            (lpm, start.elapsed())
        });
        (Some(lpm), t, b)
    } else {
        (None, Duration::ZERO, 0)
    };
    let fib = RefCell::new(fib);
    let avx512 = fib.borrow_mut().select_lookup(Fib6Lookup::Avx512).is_ok();
    fib.borrow_mut()
        .select_lookup(Fib6Lookup::Scalar)
        .unwrap_or_else(|e| panic!("rte_fib6 {name}: {e}"));

    let prefixes: Vec<Ipv6Prefix> = rules.iter().map(|&(p, _)| p).collect();
    let addrs = addrs_in_v6(&mut rng(seed), &prefixes, scale.addrs);
    let ips: Vec<[u8; 16]> = addrs.iter().map(|&a| bytes_of(a)).collect();
    let coverage = check_agree(name, &ours, &fib.borrow(), lpm.as_ref(), &addrs, &ips);

    let dir24 = ((1usize << 24) + groups * 256) * 4;
    let mut lines = vec![
        format!(
            "{name}: {} prefixes ({n} given), {groups} groups of 256 in DPDK's tables; \
             addresses with a route: {coverage:.1}%; all three agree",
            ours.len()
        ),
        format!(
            "  {:<16} {:>10} {:>12} {:>11}  {}",
            "", "build ms", "per prefix", "lookup MiB", "beside it"
        ),
        format!(
            "  {:<16} {:>10.1} {:>9.0} ns {:>11.1}  rules {:.1} MiB (best of {b_ours})",
            "ours",
            t_ours.as_secs_f64() * 1e3,
            t_ours.as_secs_f64() * 1e9 / n as f64,
            mib(ours.memory_bytes()),
            mib(ours_rules_bytes),
        ),
        format!(
            "  {:<16} {:>10.1} {:>9.0} ns {:>11.1}  allocated {:.1} MiB, RIB for {} routes; \
             create {:.1} ms (best of {b_fib})",
            "rte_fib6 (4B nh)",
            t_fib.as_secs_f64() * 1e3,
            t_fib.as_secs_f64() * 1e9 / n as f64,
            mib(dir24),
            mib(fib.borrow().allocated_bytes()),
            fib.borrow().max_routes(),
            fib_create.as_secs_f64() * 1e3,
        ),
        match &lpm {
            Some(lpm) => format!(
                "  {:<16} {:>10.1} {:>9.0} ns {:>11.1}  allocated {:.1} MiB, rules for {}; \
                 create {:.1} ms (best of {b_lpm})",
                "rte_lpm6",
                t_lpm.as_secs_f64() * 1e3,
                t_lpm.as_secs_f64() * 1e9 / n as f64,
                mib(dir24),
                mib(lpm.allocated_bytes()),
                lpm.max_rules(),
                lpm_create.as_secs_f64() * 1e3,
            ),
            None => format!(
                "  {:<16} cannot hold this table: it needs {lpm_tbl8s} groups, rte_lpm6 takes \
                 at most 2^21",
                "rte_lpm6"
            ),
        },
        format!(
            "  build: rte_fib6 / ours {:.1}x{}",
            t_fib.as_secs_f64() / t_ours.as_secs_f64(),
            if lpm.is_some() {
                format!(
                    ", rte_lpm6 / ours {:.1}x",
                    t_lpm.as_secs_f64() / t_ours.as_secs_f64()
                )
            } else {
                String::new()
            }
        ),
    ];
    if !avx512 {
        lines.push("  (rte_fib6 AVX-512 lookup unavailable here: not measured)".into());
    }
    built.push(Built {
        table: name.into(),
        lines,
    });

    // The kernels, each one pass over the addresses.
    let (a, ip) = (addrs.as_slice(), ips.as_slice());
    let ours = &ours;
    let lpm = lpm.as_ref();
    let fib = &fib;
    let mut kernels: Vec<Kernel<'_>> = vec![
        Kernel {
            name: "ours",
            mode: "single",
            run: Box::new(move || {
                let mut acc = 0u64;
                for &x in black_box(a) {
                    acc ^= u64::from(ours.lookup_u128(x).index());
                }
                acc
            }),
            passes: Vec::new(),
        },
        Kernel {
            name: "ours",
            mode: "bulk32",
            run: Box::new(move || {
                let mut out = [NextHop::NONE; BURST];
                let mut acc = 0u64;
                for chunk in black_box(a).chunks_exact(BURST) {
                    ours.lookup_bulk(chunk, &mut out);
                    acc ^= u64::from(out[0].index() ^ out[BURST - 1].index());
                }
                acc
            }),
            passes: Vec::new(),
        },
        Kernel {
            name: "rte_fib6",
            mode: "single",
            run: Box::new(move || {
                let fib = fib.borrow();
                let mut acc = 0u64;
                for x in black_box(ip) {
                    acc ^= fib.lookup(x);
                }
                acc
            }),
            passes: Vec::new(),
        },
        Kernel {
            name: "rte_fib6",
            mode: "bulk32",
            run: Box::new(move || {
                let fib = fib.borrow();
                let mut out = [0u64; BURST];
                let mut acc = 0u64;
                for chunk in black_box(ip).chunks_exact(BURST) {
                    fib.lookup_bulk(chunk, &mut out);
                    acc ^= out[0] ^ out[BURST - 1];
                }
                acc
            }),
            passes: Vec::new(),
        },
    ];
    if let Some(lpm) = lpm {
        kernels.extend([
            Kernel {
                name: "rte_lpm6",
                mode: "single",
                run: Box::new(move || {
                    let mut acc = 0u64;
                    for x in black_box(ip) {
                        acc ^= u64::from(lpm.lookup(x).unwrap_or(u32::MAX));
                    }
                    acc
                }),
                passes: Vec::new(),
            },
            Kernel {
                name: "rte_lpm6",
                mode: "bulk32",
                run: Box::new(move || {
                    let mut out = [0i32; BURST];
                    let mut acc = 0u64;
                    for chunk in black_box(ip).chunks_exact(BURST) {
                        lpm.lookup_bulk(chunk, &mut out);
                        acc ^= (out[0] ^ out[BURST - 1]) as u64;
                    }
                    acc
                }),
                passes: Vec::new(),
            },
        ]);
    }
    if avx512 {
        kernels.push(Kernel {
            name: "rte_fib6_avx512",
            mode: "bulk32",
            run: Box::new(move || {
                let mut fib = fib.borrow_mut();
                fib.select_lookup(Fib6Lookup::Avx512)
                    .expect("worked at build time");
                let mut out = [0u64; BURST];
                let mut acc = 0u64;
                for chunk in black_box(ip).chunks_exact(BURST) {
                    fib.lookup_bulk(chunk, &mut out);
                    acc ^= out[0] ^ out[BURST - 1];
                }
                fib.select_lookup(Fib6Lookup::Scalar)
                    .expect("worked at build time");
                acc
            }),
            passes: Vec::new(),
        });
    }
    let mut sink = 0u64;
    for round in 0..scale.warm_up + scale.rounds {
        for k in &mut kernels {
            let start = Instant::now();
            sink ^= (k.run)();
            let took = start.elapsed();
            if round >= scale.warm_up {
                k.passes.push(took.as_nanos() as f64 / a.len() as f64);
            }
        }
    }
    black_box(sink);
    for k in &kernels {
        let (p10, median) = (percentile(&k.passes, 0.1), percentile(&k.passes, 0.5));
        assert!(
            p10.is_finite() && p10 > 0.0,
            "{name}: {} {}: nothing measured ({:?})",
            k.name,
            k.mode,
            k.passes
        );
        rows.push(Row {
            table: name.into(),
            name: k.name,
            mode: k.mode,
            p10,
            median,
        });
    }
}

fn print_summary(scale: &Scale, built: &[Built], rows: &[Row]) {
    println!(
        "\n=== IPv6 LPM: ours vs rte_fib6 (trie) vs rte_lpm6{} ===",
        if scale.smoke { " (--smoke)" } else { "" }
    );
    println!("{}", Eal::version());
    for b in built {
        for line in &b.lines {
            println!("{line}");
        }
    }
    println!(
        "\nns per lookup, {} addresses inside the table's prefixes per pass, {} rounds: \
         10th percentile (median)",
        scale.addrs, scale.rounds
    );
    println!(
        "{:<10} {:<16} {:>16} {:>16} {:>9} {:>13} {:>12}",
        "table", "impl", "single", "bulk32", "Mlookup/s", "/ fib6 bulk", "/ fib6 avx512"
    );
    for b in built {
        let get = |name: &str, mode: &str| {
            rows.iter()
                .find(|r| r.table == b.table && r.name == name && r.mode == mode)
        };
        let fib = get("rte_fib6", "bulk32").map(|r| r.p10);
        let avx = get("rte_fib6_avx512", "bulk32").map(|r| r.p10);
        for name in ["ours", "rte_fib6", "rte_fib6_avx512", "rte_lpm6"] {
            let single = get(name, "single");
            let bulk = get(name, "bulk32");
            if single.is_none() && bulk.is_none() {
                continue;
            }
            let cell = |r: Option<&Row>| {
                r.map_or("-".to_string(), |r| {
                    format!("{:.2} ({:.2})", r.p10, r.median)
                })
            };
            let ratio = |d: Option<f64>| match (bulk, d) {
                (Some(b), Some(d)) => format!("{:.2}", b.p10 / d),
                _ => "-".into(),
            };
            println!(
                "{:<10} {:<16} {:>16} {:>16} {:>9} {:>13} {:>12}",
                b.table,
                name,
                cell(single),
                cell(bulk),
                bulk.map_or("-".into(), |r| format!("{:.1}", 1e3 / r.p10)),
                ratio(fib),
                ratio(avx),
            );
        }
    }
    println!(
        "ratios: bulk32 time / rte_fib6 bulk32 time (below 1: faster than rte_fib6). \
         cargo bench -p backbone-benches --bench lpm6_vs_dpdk{}",
        if scale.smoke { " -- --smoke" } else { "" }
    );
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let scale = if smoke {
        Scale {
            smoke,
            prefixes: 20_000,
            rounds: 20,
            warm_up: 2,
            addrs: 1 << 12,
        }
    } else {
        Scale {
            smoke,
            prefixes: usize::MAX,
            rounds: 60,
            warm_up: 5,
            addrs: ADDRS,
        }
    };
    let prefix = format!("--file-prefix=lpm6_vs_dpdk_{}", std::process::id());
    // DPDK's tables for the random million take about 2.5 GiB each (their groups).
    let memory = if smoke { "512" } else { "7168" };
    let eal = Eal::init(&[
        "lpm6_vs_dpdk",
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        memory,
        "-l",
        "0",
        "--log-level=lib.eal:error",
        "--force-max-simd-bitwidth=512",
        &prefix,
    ])
    .unwrap_or_else(|e| panic!("EAL: {e}"));
    let mut rows = Vec::new();
    let mut built = Vec::new();

    let real_table = real_table_v6();
    let mix = length_mix(&real_table.iter().map(|&(p, _)| p).collect::<Vec<_>>());
    let mut real = with_next_hops_v6(&real_table, TUNNELS);
    drop(real_table);
    if smoke {
        // Every eighth prefix: the same spread over the address space, fewer of them.
        real = real.into_iter().step_by(8).take(scale.prefixes).collect();
    }
    run_table(&eal, &scale, "real", &real, 11, &mut rows, &mut built);
    let agg = with_aggregates(
        &real,
        &[20, 24, 32, 40],
        TUNNELS,
        &mut rng(12),
        Ipv6Prefix::prefix_len,
        |p, len| Ipv6Prefix::from_bits(p.bits(), len).expect("len <= 128"),
    );
    let added = agg.len() - real.len();
    drop(real);
    run_table(&eal, &scale, "real_agg", &agg, 13, &mut rows, &mut built);
    if let Some(b) = built.last_mut() {
        b.lines.insert(
            0,
            format!(
                "real_agg: the real table plus {added} covering aggregates (distinct /20, /24, \
                 /32, /40 supernets of its prefixes)"
            ),
        );
    }
    drop(agg);
    let mut r = rng(14);
    let count = if smoke { scale.prefixes } else { 1_000_000 };
    let random: Vec<(Ipv6Prefix, NextHop)> = random_prefixes_v6(&mut r, &mix, count)
        .into_iter()
        .map(|p| (p, NextHop::new(r.gen_range(0..TUNNELS)).expect("small")))
        .collect();
    let random_name = if smoke { "random_20k" } else { "random_1m" };
    run_table(
        &eal,
        &scale,
        random_name,
        &random,
        15,
        &mut rows,
        &mut built,
    );
    drop(random);

    print_summary(&scale, &built, &rows);
}
