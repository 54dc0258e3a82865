//! Our IPv4 LPM against DPDK's `rte_lpm` and `rte_fib` (DIR-24-8, 4-byte next hops), in one
//! process under one EAL, on the same tables and the same lookup addresses:
//!
//! - `real`: the real table (564,580 prefixes that never nest), next hops by origin ASN
//!   spread over 1,000 tunnels;
//! - `real_agg`: the same plus covering aggregates, so that prefixes nest: for every prefix,
//!   its supernets of length /8, /12, /16 and /20 (those shorter than it), each distinct one
//!   added once with a next hop of its own (a random tunnel), after the more-specifics;
//! - `random_1m`: 1,000,000 distinct random prefixes with the real table's length mix.
//!
//! Addresses: 65,536 drawn uniformly from the address space (`random`), and 65,536 drawn
//! from the table (`in_table`: a prefix drawn uniformly, then an address inside it). Before
//! any timing, every address is looked up in all three tables and the answers must agree:
//! `rte_lpm` is an independent oracle for ours.
//!
//! Measured, as ns per lookup: `single` (one lookup at a time in a loop; independent
//! lookups, so the CPU may overlap them) and `bulk32` (the bulk call on bursts of 32).
//! `rte_lpm`'s single lookup is a `static inline` C function reached through dpdk-sys's C
//! wrapper, so it pays a call that C code (l3fwd) inlines; `rte_fib` has no single lookup
//! (a bulk call of one is used). `rte_fib` bulk is measured with the scalar lookup (what a
//! stock EAL selects: its SIMD width defaults to 256 bits) and with the AVX-512 one (EAL is
//! started with `--force-max-simd-bitwidth=512`; skipped where the CPU lacks AVX-512).
//! Build time: inserts (and our publish) from an empty table, best of 3 (`rte_lpm`: one
//! build, see [`BUILDS`]). Memory: the
//! lookup structure in use (for DIR-24-8: its 2^24-entry first level and the groups that
//! hold prefixes longer than /24; ours: its flat form, or its trie where it has none);
//! DPDK's allocation (every configured group) and the control side (our trie beside the
//! flat form and our rule store, `rte_lpm`'s rules, `rte_fib`'s RIB) are printed apart.
//! Our builder keeps up to two more flat tables for publishing (see `lpm::ipv4`), not
//! counted here.
//!
//! EAL runs with `--no-huge`: DPDK's tables sit on 4 KiB pages, like ours. With
//! `LPM_BENCH_PAGES=huge` both sit on 2 MiB pages instead: EAL takes DPDK's from hugetlbfs
//! (`--in-memory`; scripts/setup.sh reserves them), and the benchmark runs itself again
//! with glibc's `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, under which malloc asks for
//! transparent huge pages (the machine's THP mode must be `madvise` or `always`) for the
//! heap that holds our table. Every pass over
//! the addresses (65,536 lookups, a fraction of a millisecond) is timed on its own; the
//! summary takes the 10th percentile of them, so that passes another process interrupted
//! on a shared machine do not count (criterion's own report is the mean).
//!
//! At the end, prints a summary with the ratios to `rte_fib`'s bulk lookup. `cargo bench -p backbone-benches --bench lpm_vs_dpdk`
//!
//! `LPM_BENCH_SMOKE=1` (what CI runs; criterion owns the command line) takes 20,000 of the
//! real table's prefixes (every 28th: the same spread over the address space) and skips
//! `real_agg` and `random_1m`: the same checks and measurements, in seconds.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use backbone_benches::compare::{best_of, mib, with_aggregates};
use backbone_benches::{
    addrs_in, build_lpm, random_prefixes, real_table, rng, uniform_addrs, with_next_hops,
};
use criterion::{BenchmarkGroup, Criterion, Throughput};
use dataplane::dpdk::{Eal, FibLookup, FibNextHop, RteFib, RteLpm, RTE_LPM_LOOKUP_SUCCESS};
use dataplane::lpm::{Ipv4Lpm, Ipv4Prefix, NextHop, BURST};
use rand::Rng;

/// Addresses per iteration: 256 KiB of them, more than L1 and L2 hold with the tables.
const ADDRS: usize = 1 << 16;
/// Next hops: tunnel indices.
const TUNNELS: u32 = 1000;
/// What `rte_fib` answers where no prefix matches: our "no route" value.
const FIB_NONE: u64 = NextHop::NONE.index() as u64;
/// Builds per table; the best is reported. `rte_lpm` is built once: its `add` searches the
/// rules of the same length linearly, so a large table takes it minutes (DPDK's cost, and
/// what l3fwd pays at start-up), and the difference is far beyond run-to-run noise.
const BUILDS: usize = 3;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// ns per lookup of every pass, by (table, implementation, mode, addresses).
type Samples = RefCell<BTreeMap<(String, String, String, String), Vec<f64>>>;

/// One table in the three implementations, and what building them cost.
struct Tables<'eal> {
    ours: Ipv4Lpm,
    ours_rules_bytes: usize,
    lpm: RteLpm<'eal>,
    fib: RteFib<'eal>,
    avx512: bool,
    build: [Duration; 3],
}

/// Distinct /24s that hold a prefix longer than /24: the groups DIR-24-8 needs.
fn groups_needed(rules: &[(Ipv4Prefix, NextHop)]) -> u32 {
    let set: HashSet<u32> = rules
        .iter()
        .filter(|(p, _)| p.prefix_len() > 24)
        .map(|(p, _)| p.bits() >> 8)
        .collect();
    set.len() as u32
}

fn build_all<'eal>(eal: &'eal Eal, name: &str, rules: &[(Ipv4Prefix, NextHop)]) -> Tables<'eal> {
    let (ours, t_ours, _) = best_of(BUILDS, Duration::MAX, |_| build_lpm(rules));
    let ours_rules_bytes = {
        let mut b = dataplane::lpm::Ipv4LpmBuilder::new();
        b.extend(rules.iter().copied());
        b.memory_bytes()
    };
    // Groups: what the table needs, with a quarter to spare (DPDK allocates them all).
    let needed = groups_needed(rules);
    let tbl8s = (needed + needed / 4).max(256);
    let n = rules.len() as u32;
    let (lpm, t_lpm, _) = best_of(1, Duration::MAX, |i| {
        let start = Instant::now();
        let mut lpm = RteLpm::new(eal, &format!("{name}_lpm{i}"), n + n / 8, tbl8s)
            .unwrap_or_else(|e| panic!("rte_lpm {name}: {e}"));
        for &(p, nh) in rules {
            lpm.add(p.bits(), p.prefix_len(), nh.index())
                .unwrap_or_else(|e| panic!("rte_lpm {name}: add {p:?}: {e}"));
        }
        (lpm, start.elapsed())
    });
    let (mut fib, t_fib, _) = best_of(BUILDS, Duration::MAX, |i| {
        let start = Instant::now();
        // The RIB takes a node per prefix and per branching point: up to two per prefix.
        let mut fib = RteFib::new(
            eal,
            &format!("{name}_fib{i}"),
            FibNextHop::Bytes4,
            2 * n + 1024,
            tbl8s,
            FIB_NONE,
        )
        .unwrap_or_else(|e| panic!("rte_fib {name}: {e}"));
        for &(p, nh) in rules {
            fib.add(p.bits(), p.prefix_len(), u64::from(nh.index()))
                .unwrap_or_else(|e| panic!("rte_fib {name}: add {p:?}: {e}"));
        }
        (fib, start.elapsed())
    });
    let avx512 = fib.select_lookup(FibLookup::Avx512).is_ok();
    fib.select_lookup(FibLookup::ScalarMacro)
        .unwrap_or_else(|e| panic!("rte_fib {name}: {e}"));
    Tables {
        ours,
        ours_rules_bytes,
        lpm,
        fib,
        avx512,
        build: [t_ours, t_lpm, t_fib],
    }
}

/// Every address gets the same answer from all three tables (and from both lookups of each).
fn check_agree(name: &str, t: &Tables<'_>, addrs: &[u32]) -> f64 {
    let mut hits = 0usize;
    let mut ours_bulk = [NextHop::NONE; BURST];
    let mut lpm_bulk = [0u32; BURST];
    let mut fib_bulk = [0u64; BURST];
    for chunk in addrs.chunks(BURST) {
        let n = chunk.len();
        t.ours.lookup_bulk(chunk, &mut ours_bulk[..n]);
        t.lpm.lookup_bulk(chunk, &mut lpm_bulk[..n]);
        t.fib.lookup_bulk(chunk, &mut fib_bulk[..n]);
        for (i, &a) in chunk.iter().enumerate() {
            let ours = t.ours.lookup_u32(a).to_option().map(|h| h.index());
            let lpm = t.lpm.lookup(a);
            let fib = Some(t.fib.lookup(a))
                .filter(|&h| h != FIB_NONE)
                .map(|h| h as u32);
            let lpm_b =
                (lpm_bulk[i] & RTE_LPM_LOOKUP_SUCCESS != 0).then_some(lpm_bulk[i] & 0xff_ffff);
            let fib_b = Some(fib_bulk[i])
                .filter(|&h| h != FIB_NONE)
                .map(|h| h as u32);
            let ours_b = ours_bulk[i].to_option().map(|h| h.index());
            assert!(
                ours == lpm && lpm == fib && ours == ours_b && lpm == lpm_b && fib == fib_b,
                "{name}: {} -> ours {ours:?}/{ours_b:?}, rte_lpm {lpm:?}/{lpm_b:?}, rte_fib {fib:?}/{fib_b:?}",
                std::net::Ipv4Addr::from(a)
            );
            hits += usize::from(ours.is_some());
        }
    }
    100.0 * hits as f64 / addrs.len() as f64
}

/// Time `kernel` (one pass over the addresses) as criterion asks, and keep every pass's
/// ns per lookup for the summary.
fn bench(
    g: &mut Group<'_>,
    samples: &Samples,
    key: (&str, &str, &str, &str),
    mut kernel: impl FnMut() -> u32,
) {
    let (table, imp, mode, addrs) = key;
    g.bench_function(format!("{imp}/{mode}/{addrs}"), |b| {
        b.iter_custom(|iters| {
            let mut samples = samples.borrow_mut();
            let passes = samples
                .entry((table.into(), imp.into(), mode.into(), addrs.into()))
                .or_default();
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                black_box(kernel());
                let pass = start.elapsed();
                took += pass;
                passes.push(pass.as_nanos() as f64 / ADDRS as f64);
            }
            took
        })
    });
}

fn bench_table(
    c: &mut Criterion,
    samples: &Samples,
    name: &str,
    t: &mut Tables<'_>,
    addr_sets: &[(&str, Vec<u32>)],
) {
    let mut g = c.benchmark_group(format!("lpm_vs_dpdk/{name}"));
    g.throughput(Throughput::Elements(ADDRS as u64));
    for (set, addrs) in addr_sets {
        let addrs = addrs.as_slice();
        let k = |imp, mode| (name, imp, mode, *set);
        let ours = &t.ours;
        bench(&mut g, samples, k("ours", "single"), || {
            let mut acc = 0u32;
            for &a in black_box(addrs) {
                acc ^= ours.lookup_u32(a).index();
            }
            acc
        });
        bench(&mut g, samples, k("ours", "bulk32"), || {
            let mut out = [NextHop::NONE; BURST];
            let mut acc = 0u32;
            for chunk in black_box(addrs).chunks_exact(BURST) {
                ours.lookup_bulk(chunk, &mut out);
                acc ^= out[0].index() ^ out[BURST - 1].index();
            }
            acc
        });
        let lpm = &t.lpm;
        bench(&mut g, samples, k("rte_lpm", "single"), || {
            let mut acc = 0u32;
            for &a in black_box(addrs) {
                acc ^= lpm.lookup(a).unwrap_or(u32::MAX);
            }
            acc
        });
        bench(&mut g, samples, k("rte_lpm", "bulk32"), || {
            let mut out = [0u32; BURST];
            let mut acc = 0u32;
            for chunk in black_box(addrs).chunks_exact(BURST) {
                lpm.lookup_bulk(chunk, &mut out);
                acc ^= out[0] ^ out[BURST - 1];
            }
            acc
        });
        let fib = &t.fib;
        bench(&mut g, samples, k("rte_fib", "single"), || {
            let mut acc = 0u32;
            for &a in black_box(addrs) {
                acc ^= fib.lookup(a) as u32;
            }
            acc
        });
        let fib_bulk = |fib: &RteFib<'_>| {
            let mut out = [0u64; BURST];
            let mut acc = 0u64;
            for chunk in black_box(addrs).chunks_exact(BURST) {
                fib.lookup_bulk(chunk, &mut out);
                acc ^= out[0] ^ out[BURST - 1];
            }
            acc as u32
        };
        bench(&mut g, samples, k("rte_fib", "bulk32"), || fib_bulk(fib));
        if t.avx512 {
            t.fib
                .select_lookup(FibLookup::Avx512)
                .expect("worked at build time");
            let fib = &t.fib;
            bench(&mut g, samples, k("rte_fib_avx512", "bulk32"), || {
                fib_bulk(fib)
            });
            t.fib
                .select_lookup(FibLookup::ScalarMacro)
                .expect("worked at build time");
        }
    }
    g.finish();
}

/// What the whole run shares.
struct Run<'e> {
    c: Criterion,
    eal: &'e Eal,
    samples: Samples,
    summary: Vec<String>,
}

/// Build and report one table, check the three agree, bench them.
fn run_table(run: &mut Run<'_>, name: &str, rules: &[(Ipv4Prefix, NextHop)], seed: u64) {
    let (eal, summary) = (run.eal, &mut run.summary);
    let addr_rng = &mut rng(seed);
    let prefixes: Vec<Ipv4Prefix> = rules.iter().map(|&(p, _)| p).collect();
    let mut t = build_all(eal, name, rules);
    let addr_sets = [
        ("random", uniform_addrs(addr_rng, ADDRS)),
        ("in_table", addrs_in(addr_rng, &prefixes, ADDRS)),
    ];
    let mut coverage = Vec::new();
    for (set, addrs) in &addr_sets {
        coverage.push(format!("{set} {:.1}%", check_agree(name, &t, addrs)));
    }
    let groups = t.lpm.tbl8_groups_used();
    let fib_used = (1usize << 24) * 4 + groups * 256 * 4;
    summary.push(format!(
        "{name}: {} prefixes, {} groups over /24; addresses with a route: {}; all three agree; \
         THP in this process: {} kB",
        t.ours.len(),
        groups,
        coverage.join(", "),
        thp_kb()
    ));
    summary.push(format!(
        "  {:<16} {:>10} {:>14} {:>16}",
        "", "build ms", "lookup MiB", "allocated MiB"
    ));
    // Lookups read the flat form where the table has one; the trie beside it is kept
    // up to date for publishing (and answers while no flat table is free).
    let stats = t.ours.stats();
    let (lookup_bytes, trie_bytes) = if t.ours.is_flat() {
        (stats.flat_bytes, stats.memory_bytes - stats.flat_bytes)
    } else {
        (stats.memory_bytes, 0)
    };
    summary.push(format!(
        "  {:<16} {:>10.1} {:>14.1} {:>16}",
        if t.ours.is_flat() {
            "ours (flat)"
        } else {
            "ours (trie)"
        },
        t.build[0].as_secs_f64() * 1e3,
        mib(lookup_bytes),
        format!(
            "+{:.1} trie +{:.1} rules",
            mib(trie_bytes),
            mib(t.ours_rules_bytes)
        ),
    ));
    summary.push(format!(
        "  {:<16} {:>10.1} {:>14.1} {:>16.1}",
        "rte_lpm",
        t.build[1].as_secs_f64() * 1e3,
        mib(t.lpm.used_bytes()),
        mib(t.lpm.allocated_bytes()),
    ));
    summary.push(format!(
        "  {:<16} {:>10.1} {:>14.1} {:>16}",
        "rte_fib (4B nh)",
        t.build[2].as_secs_f64() * 1e3,
        mib(fib_used),
        format!(
            "{:.1} +RIB {}",
            mib(t.fib.allocated_bytes()),
            t.fib.max_routes()
        ),
    ));
    if !t.avx512 {
        summary.push("  (rte_fib AVX-512 lookup unavailable here: not measured)".into());
    }
    bench_table(&mut run.c, &run.samples, name, &mut t, &addr_sets);
}

/// The 10th percentile: passes that another process interrupted (or whose caches it
/// emptied) land in the upper tail, so a low percentile is what the code itself does.
fn low_percentile(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 10])
}

/// This process's memory on transparent huge pages, in kB, as the kernel reports it.
fn thp_kb() -> String {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// What pages the tables sit on.
fn pages_line() -> &'static str {
    match std::env::var("LPM_BENCH_PAGES").as_deref() {
        Ok("huge") => {
            "pages: 2 MiB for both (DPDK: hugetlbfs; ours: transparent huge pages, see \
             \"THP\" per table)"
        }
        _ => {
            "pages: 4 KiB for DPDK (EAL --no-huge), ours as malloc gives them (see \"THP\" per \
             table); LPM_BENCH_PAGES=huge for 2 MiB pages for both"
        }
    }
}

fn print_summary(samples: &Samples, tables: &[&str], summary: &[String]) {
    let s = samples.borrow();
    let get = |t: &str, imp: &str, mode: &str, set: &str| {
        s.get(&(t.into(), imp.into(), mode.into(), set.into()))
            .and_then(|v| low_percentile(v))
    };
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    println!(
        "\n=== LPM: ours vs rte_lpm vs rte_fib (ns per lookup: 10th percentile of the passes) ==="
    );
    println!("{}", dataplane::dpdk::Eal::version());
    println!("{}", pages_line());
    for line in summary {
        println!("{line}");
    }
    println!(
        "\n{:<10} {:<9} {:<15} {:>9} {:>9} {:>14} {:>15}",
        "table", "addrs", "impl", "single", "bulk32", "/ fib bulk", "/ fib avx512"
    );
    for t in tables {
        for set in ["random", "in_table"] {
            let fib = get(t, "rte_fib", "bulk32", set);
            let avx = get(t, "rte_fib_avx512", "bulk32", set);
            for imp in ["ours", "rte_lpm", "rte_fib", "rte_fib_avx512"] {
                let single = get(t, imp, "single", set);
                let bulk = get(t, imp, "bulk32", set);
                if single.is_none() && bulk.is_none() {
                    continue;
                }
                println!(
                    "{:<10} {:<9} {:<15} {:>9} {:>9} {:>14} {:>15}",
                    t,
                    set,
                    imp,
                    cell(single),
                    cell(bulk),
                    ratio(bulk, fib),
                    ratio(bulk, avx)
                );
            }
        }
    }
    println!(
        "ratios: bulk32 time / rte_fib bulk32 time (below 1: faster than rte_fib). \
         cargo bench -p backbone-benches --bench lpm_vs_dpdk"
    );
}

/// glibc's setting that has malloc ask for transparent huge pages.
const GLIBC_HUGE: &str = "glibc.malloc.hugetlb=1";

/// Whether `LPM_BENCH_PAGES=huge` asks for huge pages. glibc reads its tunables when the
/// process starts, so without them in the environment this runs the benchmark again with
/// them (and does not return); an unknown value is refused.
fn huge_pages() -> bool {
    match std::env::var("LPM_BENCH_PAGES").as_deref() {
        Err(_) | Ok("4k") => false,
        Ok("huge") => {
            let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
            if !tunables.split(':').any(|t| t == GLIBC_HUGE) {
                use std::os::unix::process::CommandExt;
                let both = if tunables.is_empty() {
                    GLIBC_HUGE.to_string()
                } else {
                    format!("{tunables}:{GLIBC_HUGE}")
                };
                let exe = std::env::current_exe().expect("the benchmark's own path");
                let err = std::process::Command::new(exe)
                    .args(std::env::args_os().skip(1))
                    .env("GLIBC_TUNABLES", both)
                    .exec();
                panic!("LPM_BENCH_PAGES=huge: cannot run again with GLIBC_TUNABLES: {err}");
            }
            true
        }
        Ok(other) => panic!("LPM_BENCH_PAGES is {other:?}: expected \"4k\" or \"huge\""),
    }
}

fn main() {
    let smoke = match std::env::var("LPM_BENCH_SMOKE").as_deref() {
        Err(_) | Ok("0") => false,
        Ok("1") => true,
        Ok(other) => panic!("LPM_BENCH_SMOKE is {other:?}: expected \"0\" or \"1\""),
    };
    let (measure, warm_up) = if smoke { (200, 50) } else { (1500, 300) };
    let c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_millis(measure))
        .warm_up_time(Duration::from_millis(warm_up))
        .configure_from_args();
    let huge = huge_pages();
    let prefix = format!("--file-prefix=lpm_vs_dpdk_{}", std::process::id());
    let memory: &[&str] = if huge {
        &["--in-memory"]
    } else {
        &["--no-huge", "-m", "2048"]
    };
    let args = [
        &["lpm_vs_dpdk", "--no-pci", "--no-shconf"],
        memory,
        &[
            "-l",
            "0",
            "--log-level=lib.eal:error",
            "--force-max-simd-bitwidth=512",
            &prefix,
        ],
    ]
    .concat();
    let eal = Eal::init(&args).unwrap_or_else(|e| panic!("EAL: {e}"));
    let mut run = Run {
        c,
        eal: &eal,
        samples: Samples::default(),
        summary: Vec::new(),
    };

    // LPM_BENCH_TABLES=real,random_1m: only those tables (all three by default).
    const TABLES: [&str; 3] = ["real", "real_agg", "random_1m"];
    let only: Option<Vec<String>> = std::env::var("LPM_BENCH_TABLES")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    if let Some(bad) = only
        .iter()
        .flatten()
        .find(|t| !TABLES.contains(&t.as_str()))
    {
        panic!("LPM_BENCH_TABLES names {bad:?}: expected a comma-separated list of {TABLES:?}");
    }
    let wanted = |t: &str| only.as_ref().map_or(true, |o| o.iter().any(|w| w == t));
    let mut real = with_next_hops(&real_table(), TUNNELS);
    if smoke {
        real = real.into_iter().step_by(28).take(20_000).collect();
        run_table(&mut run, "real", &real, 11);
        run.c.final_summary();
        print_summary(&run.samples, &["real"], &run.summary);
        return;
    }
    if wanted("real") {
        run_table(&mut run, "real", &real, 11);
    }
    if wanted("real_agg") {
        let agg = with_aggregates(
            &real,
            &[8, 12, 16, 20],
            TUNNELS,
            &mut rng(12),
            Ipv4Prefix::prefix_len,
            |p, len| Ipv4Prefix::truncating(p.addr(), len).expect("len <= 32"),
        );
        run.summary.push(format!(
            "real_agg: the real table plus {} covering aggregates (distinct /8, /12, /16, /20 \
             supernets of its prefixes)",
            agg.len() - real.len()
        ));
        drop(real);
        run_table(&mut run, "real_agg", &agg, 13);
    }
    if wanted("random_1m") {
        let mut r = rng(14);
        let random: Vec<(Ipv4Prefix, NextHop)> = random_prefixes(&mut r, 1_000_000)
            .into_iter()
            .map(|p| (p, NextHop::new(r.gen_range(0..TUNNELS)).expect("small")))
            .collect();
        run_table(&mut run, "random_1m", &random, 15);
    }

    run.c.final_summary();
    let tables: Vec<&str> = TABLES.into_iter().filter(|t| wanted(t)).collect();
    print_summary(&run.samples, &tables, &run.summary);
}
