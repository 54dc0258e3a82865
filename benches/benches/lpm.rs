//! The IPv4 LPM table on the real Internet table (564,580 prefixes, next hops by origin ASN
//! over 1024 values) and on a random million-prefix table with the same length mix.
//!
//! Before benching, prints each table's build time (inserts + publish, best of 3) and
//! memory to stderr. Then single lookups (`lookup_u32`, one at a time in a loop, so the
//! CPU may overlap independent lookups as it would in a real loop) and bulk lookups
//! (`lookup_bulk`, 32 at a time) over 65,536 addresses per iteration, drawn (a) uniformly
//! from the address space and (b) from inside the table's prefixes (a prefix drawn uniformly,
//! then an address inside it). Throughput is in lookups, so criterion shows time per lookup.
//!
//! `cargo bench -p backbone-benches --bench lpm`

use std::hint::black_box;
use std::time::Duration;

use backbone_benches::{
    addrs_in, build_lpm, random_prefixes, real_table, rng, uniform_addrs, with_next_hops,
};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use dataplane::lpm::{Ipv4Lpm, Ipv4Prefix, NextHop, BURST};
use rand::Rng;

/// Addresses per iteration: 256 KiB of them, more than L1 and L2 hold with the table.
const ADDRS: usize = 1 << 16;

/// Build `rules` three times, print the best time and the table's size, return the table.
fn build_and_report(name: &str, rules: &[(Ipv4Prefix, NextHop)]) -> Ipv4Lpm {
    let mut best = None;
    let mut table = None;
    for _ in 0..3 {
        let (t, took) = build_lpm(rules);
        best = Some(best.map_or(took, |b: Duration| b.min(took)));
        table = Some(t);
    }
    let table = table.unwrap();
    let best = best.unwrap();
    let stats = table.stats();
    eprintln!(
        "lpm/{name}: {} prefixes ({} rules given), build (insert + publish, best of 3) {:.1} ms \
         = {:.0} ns/prefix; memory {} bytes = {:.1} MiB = {:.1} bytes/prefix \
         ({} subtrees, {} groups of 1 KiB)",
        table.len(),
        rules.len(),
        best.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e9 / table.len() as f64,
        table.memory_bytes(),
        table.memory_bytes() as f64 / (1024.0 * 1024.0),
        table.memory_bytes() as f64 / table.len() as f64,
        stats.subtrees,
        stats.groups,
    );
    table
}

fn bench_lookups(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    table: &Ipv4Lpm,
    addrs: &[(&str, Vec<u32>)],
    single: bool,
) {
    g.throughput(Throughput::Elements(ADDRS as u64));
    for (kind, addrs) in addrs {
        let hits = addrs
            .iter()
            .filter(|&&a| !table.lookup_u32(a).is_none())
            .count();
        eprintln!(
            "  {kind} addresses: {:.1}% have a route",
            100.0 * hits as f64 / addrs.len() as f64
        );
        if single {
            g.bench_function(format!("single/{kind}"), |b| {
                b.iter(|| {
                    let mut acc = 0u32;
                    for &a in black_box(addrs.as_slice()) {
                        acc ^= table.lookup_u32(a).index();
                    }
                    acc
                })
            });
        }
        g.bench_function(format!("bulk{BURST}/{kind}"), |b| {
            let mut out = [NextHop::NONE; BURST];
            b.iter(|| {
                let mut acc = 0u32;
                for chunk in black_box(addrs.as_slice()).chunks_exact(BURST) {
                    table.lookup_bulk(chunk, &mut out);
                    acc ^= out[0].index() ^ out[BURST - 1].index();
                }
                acc
            })
        });
    }
}

fn lpm(c: &mut Criterion) {
    let real = real_table();
    let rules = with_next_hops(&real, 1024);
    let table = build_and_report("real", &rules);
    let prefixes: Vec<Ipv4Prefix> = real.iter().map(|&(p, _)| p).collect();
    let addrs = [
        ("random", uniform_addrs(&mut rng(1), ADDRS)),
        ("in_table", addrs_in(&mut rng(2), &prefixes, ADDRS)),
    ];
    let mut g = c.benchmark_group("lpm/real_564k");
    bench_lookups(&mut g, &table, &addrs, true);
    g.finish();
    drop(table);

    let mut r = rng(3);
    let random = random_prefixes(&mut r, 1_000_000);
    let rules: Vec<(Ipv4Prefix, NextHop)> = random
        .iter()
        .map(|&p| (p, NextHop::new(r.gen_range(0..1024)).unwrap()))
        .collect();
    let table = build_and_report("random_1m", &rules);
    let addrs = [
        ("random", uniform_addrs(&mut rng(4), ADDRS)),
        ("in_table", addrs_in(&mut rng(5), &random, ADDRS)),
    ];
    let mut g = c.benchmark_group("lpm/random_1m");
    bench_lookups(&mut g, &table, &addrs, false);
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = lpm
}
criterion_main!(benches);
