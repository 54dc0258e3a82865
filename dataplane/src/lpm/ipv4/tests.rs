//! Tests of the IPv4 table against two independent references: a linear scan over the
//! rules ([`test_support::Naive`], for small tables) and one hash map per prefix length
//! ([`test_support::ByLen`], for big ones), both shared with the IPv6 tests.

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::lpm::test_support::{self, nh, V4Flat, V4};

fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Addresses that probe every rule: its first and last address, their neighbours
/// outside it, and one random address inside; plus `uniform` random ones.
fn probe_addrs(rules: &[Ipv4Prefix], uniform: usize, rng: &mut SmallRng) -> Vec<u32> {
    let mut addrs = vec![0, u32::MAX, 0x7fff_ffff, 0x8000_0000];
    for r in rules {
        let (first, last) = (r.bits(), r.last_bits());
        addrs.extend([first, last, first.wrapping_sub(1), last.wrapping_add(1)]);
        addrs.push(first | (rng.gen::<u32>() & !r.mask()));
    }
    addrs.extend((0..uniform).map(|_| rng.gen::<u32>()));
    addrs
}

fn build(rules: &[(&str, u32)]) -> Ipv4Lpm {
    rules
        .iter()
        .map(|&(s, i)| (p(s), nh(i)))
        .collect::<Ipv4LpmBuilder>()
        .publish()
}

#[test]
fn tables_are_send_sync_and_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Ipv4Lpm>();
    let builder_is_send = |b: Ipv4LpmBuilder| std::thread::spawn(move || b.len());
    assert_eq!(builder_is_send(Ipv4LpmBuilder::new()).join().unwrap(), 0);
}

#[test]
fn empty_table_misses_everywhere() {
    let table = Ipv4Lpm::new();
    for addr in ["0.0.0.0", "10.1.2.3", "255.255.255.255"] {
        assert_eq!(table.lookup(a(addr)), None);
    }
    assert!(table.is_empty());
    let stats = table.stats();
    assert_eq!((stats.blocks, stats.subtrees, stats.chunks), (1, 0, 2));
    assert_eq!(Ipv4LpmBuilder::new().publish().lookup(a("1.2.3.4")), None);
}

#[test]
fn default_route_and_host_routes() {
    let table = build(&[
        ("0.0.0.0/0", 1),
        ("10.1.2.3/32", 2),
        ("255.255.255.255/32", 3),
    ]);
    assert_eq!(table.lookup(a("0.0.0.0")), Some(nh(1)));
    assert_eq!(table.lookup(a("10.1.2.2")), Some(nh(1)));
    assert_eq!(table.lookup(a("10.1.2.3")), Some(nh(2)));
    assert_eq!(table.lookup(a("10.1.2.4")), Some(nh(1)));
    assert_eq!(table.lookup(a("255.255.255.254")), Some(nh(1)));
    assert_eq!(table.lookup(a("255.255.255.255")), Some(nh(3)));
    assert_eq!(table.len(), 3);
    let only_hosts = build(&[("0.0.0.0/32", 4), ("255.255.255.255/32", 5)]);
    assert_eq!(only_hosts.lookup(a("0.0.0.0")), Some(nh(4)));
    assert_eq!(only_hosts.lookup(a("0.0.0.1")), None);
    assert_eq!(only_hosts.lookup(a("255.255.255.255")), Some(nh(5)));
    assert_eq!(only_hosts.lookup(a("255.255.255.254")), None);
}

#[test]
fn nested_prefixes_at_every_level() {
    let table = build(&[
        ("10.0.0.0/8", 8),
        ("10.1.0.0/16", 16),
        ("10.1.2.0/24", 24),
        ("10.1.2.128/25", 25),
        ("10.1.2.200/32", 32),
        ("10.1.128.0/17", 17),
        ("10.64.0.0/10", 10),
    ]);
    for (addr, want) in [
        ("9.255.255.255", None),
        ("10.0.0.0", Some(8)),
        ("10.255.255.255", Some(8)),
        ("10.64.0.0", Some(10)),
        ("10.127.255.255", Some(10)),
        ("10.128.0.0", Some(8)),
        ("10.1.0.0", Some(16)),
        ("10.1.1.255", Some(16)),
        ("10.1.2.0", Some(24)),
        ("10.1.2.127", Some(24)),
        ("10.1.2.128", Some(25)),
        ("10.1.2.199", Some(25)),
        ("10.1.2.200", Some(32)),
        ("10.1.2.201", Some(25)),
        ("10.1.2.255", Some(25)),
        ("10.1.3.0", Some(16)),
        ("10.1.127.255", Some(16)),
        ("10.1.128.0", Some(17)),
        ("10.1.255.255", Some(17)),
        ("10.2.0.0", Some(8)),
        ("11.0.0.0", None),
    ] {
        assert_eq!(table.lookup(a(addr)), want.map(nh), "{addr}");
    }
}

#[test]
fn insert_replaces_the_next_hop() {
    let mut rib = Ipv4LpmBuilder::new();
    assert_eq!(rib.insert(p("10.0.0.0/8"), nh(1)), None);
    assert_eq!(rib.insert(p("10.1.2.0/24"), nh(1)), None);
    let v1 = rib.publish();
    assert_eq!(rib.insert(p("10.0.0.0/8"), nh(2)), Some(nh(1)));
    assert_eq!(rib.insert(p("10.1.2.0/24"), nh(3)), Some(nh(1)));
    assert_eq!(rib.get(p("10.0.0.0/8")), Some(nh(2)));
    assert_eq!(rib.len(), 2);
    let v2 = rib.publish();
    assert_eq!(v2.lookup(a("10.9.9.9")), Some(nh(2)));
    assert_eq!(v2.lookup(a("10.1.2.3")), Some(nh(3)));
    assert_eq!(v2.len(), 2);
    // The old table answers as it did.
    assert_eq!(v1.lookup(a("10.9.9.9")), Some(nh(1)));
    assert_eq!(v1.lookup(a("10.1.2.3")), Some(nh(1)));
}

#[test]
fn remove_restores_the_covering_prefix() {
    let mut rib = Ipv4LpmBuilder::new();
    for (s, i) in [
        ("0.0.0.0/0", 0),
        ("10.0.0.0/8", 8),
        ("10.1.0.0/16", 16),
        ("10.1.2.0/24", 24),
        ("10.1.2.3/32", 32),
    ] {
        rib.insert(p(s), nh(i));
    }
    let full = rib.publish();
    let addr = a("10.1.2.3");
    assert_eq!(full.lookup(addr), Some(nh(32)));
    for (s, want) in [
        ("10.1.2.3/32", 24),
        ("10.1.2.0/24", 16),
        ("10.1.0.0/16", 8),
        ("10.0.0.0/8", 0),
    ] {
        assert!(rib.remove(p(s)).is_some());
        assert_eq!(
            rib.publish().lookup(addr),
            Some(nh(want)),
            "after removing {s}"
        );
    }
    assert_eq!(rib.remove(p("0.0.0.0/0")), Some(nh(0)));
    let empty = rib.publish();
    assert_eq!(empty.lookup(addr), None);
    assert!(empty.is_empty() && rib.is_empty());
    assert_eq!(empty.stats().subtrees, 0);
    assert_eq!(full.lookup(addr), Some(nh(32)));
}

#[test]
fn removing_an_absent_prefix_changes_nothing() {
    let mut rib = Ipv4LpmBuilder::new();
    rib.insert(p("10.0.0.0/8"), nh(1));
    rib.insert(p("10.1.2.0/24"), nh(2));
    let v1 = rib.publish();
    for s in [
        "10.0.0.0/9",
        "10.0.0.0/7",
        "10.1.2.0/25",
        "10.1.3.0/24",
        "0.0.0.0/0",
    ] {
        assert_eq!(rib.remove(p(s)), None, "{s}");
    }
    assert!(!rib.has_pending());
    assert_eq!(rib.len(), 2);
    let v2 = rib.publish();
    assert!(Arc::ptr_eq(&v1.root, &v2.root));
}

#[test]
fn prefix_count_follows_changes_that_change_no_lookup() {
    // Found by proptest: the /0 is hidden by the two /1s, so removing it changes no
    // /16, but the table's prefix count must still follow.
    let mut rib = Ipv4LpmBuilder::new();
    rib.insert(p("128.0.0.0/1"), nh(0));
    rib.insert(p("0.0.0.0/1"), nh(0));
    rib.insert(p("0.0.0.0/0"), nh(0));
    let v1 = rib.publish();
    assert_eq!(v1.len(), 3);
    assert_eq!(rib.remove(p("0.0.0.0/0")), Some(nh(0)));
    assert_eq!(rib.remove(p("0.0.0.0/0")), None);
    assert!(rib.has_pending());
    let v2 = rib.publish();
    assert_eq!(v2.len(), 2);
    assert_eq!(v2.lookup(a("1.2.3.4")), Some(nh(0)));
    assert_eq!(v2.shared_chunks(&v1), v1.stats().chunks - 1);
}

#[test]
fn insert_none_removes() {
    let mut rib = Ipv4LpmBuilder::new();
    rib.insert(p("10.1.2.0/24"), nh(2));
    assert_eq!(rib.insert(p("10.1.2.0/24"), NextHop::NONE), Some(nh(2)));
    assert!(rib.is_empty());
    assert_eq!(rib.publish().lookup(a("10.1.2.3")), None);
}

#[test]
fn publish_without_changes_returns_the_same_table() {
    let mut rib = Ipv4LpmBuilder::new();
    rib.insert(p("10.1.2.0/24"), nh(2));
    let v1 = rib.publish();
    assert!(!rib.has_pending());
    let v2 = rib.publish();
    assert!(Arc::ptr_eq(&v1.root, &v2.root));
    // Setting the same next hop again is no change either.
    rib.insert(p("10.1.2.0/24"), nh(2));
    assert!(Arc::ptr_eq(&v1.root, &rib.publish().root));
    // A batch that cancels out rebuilds, finds no difference, and copies nothing but
    // the root.
    rib.insert(p("10.1.3.0/24"), nh(3));
    rib.remove(p("10.1.3.0/24"));
    let v3 = rib.publish();
    assert_eq!(v3.shared_chunks(&v1), v1.stats().chunks - 1);
}

#[test]
fn fully_covered_slash16_needs_no_subtree() {
    let table = build(&[("10.0.0.0/8", 1), ("10.1.0.0/17", 2), ("10.1.128.0/17", 2)]);
    assert_eq!(table.stats().subtrees, 0);
    assert_eq!(table.lookup(a("10.1.0.0")), Some(nh(2)));
    assert_eq!(table.lookup(a("10.1.255.255")), Some(nh(2)));
    assert_eq!(table.lookup(a("10.2.0.0")), Some(nh(1)));
    let split = build(&[("10.0.0.0/8", 1), ("10.1.0.0/17", 2), ("10.1.128.0/17", 3)]);
    assert_eq!(split.stats().subtrees, 1);
    assert_eq!(split.lookup(a("10.1.255.255")), Some(nh(3)));
}

#[test]
fn stats_count_groups() {
    let table = build(&[
        ("10.1.2.0/25", 1),
        ("10.1.3.0/26", 1),
        ("10.1.4.0/24", 1),
        ("10.2.0.0/17", 1),
        ("11.0.0.0/8", 1),
    ]);
    let stats = table.stats();
    assert_eq!(stats.prefixes, 5);
    assert_eq!(stats.subtrees, 2);
    assert_eq!(stats.groups, 1 + 2 + 1);
    assert_eq!(stats.blocks, 3); // 10, 11, and the empty one the others still share
    assert_eq!(stats.chunks, 1 + 3 + 2);
    assert!(stats.memory_bytes >= 4 * size_of::<Group>() + 3 * size_of::<Block>());
    assert_eq!(table.memory_bytes(), stats.memory_bytes);
    assert!(format!("{table:?}").contains("subtrees: 2"));
}

#[test]
fn builder_iterates_its_rules() {
    let rules = [
        ("0.0.0.0/0", 0),
        ("128.0.0.0/1", 1),
        ("10.0.0.0/8", 8),
        ("10.1.0.0/16", 16),
        ("255.255.0.0/16", 17),
        ("10.1.2.0/24", 24),
        ("255.255.255.255/32", 32),
    ];
    let rib: Ipv4LpmBuilder = rules.iter().map(|&(s, i)| (p(s), nh(i))).collect();
    let got: Vec<(String, u32)> = rib
        .iter()
        .map(|(p, n)| (p.to_string(), n.index()))
        .collect();
    let want: Vec<(String, u32)> = rules.iter().map(|&(s, i)| (s.to_owned(), i)).collect();
    assert_eq!(got, want);
    assert!(rib.memory_bytes() > 0);
    assert!(format!("{rib:?}").contains("prefixes: 7"));
}

#[test]
fn bulk_lookup_handles_any_length() {
    let table = build(&[("0.0.0.0/0", 1), ("10.0.0.0/8", 2), ("10.1.2.128/25", 3)]);
    let addrs: Vec<u32> = (0..100u32).map(|i| 0x0a01_0200 + i * 3).collect();
    for n in [0, 1, 31, 32, 33, 64, 100] {
        let mut out = vec![NextHop::MAX; n];
        table.lookup_bulk(&addrs[..n], &mut out);
        let single: Vec<NextHop> = addrs[..n].iter().map(|&x| table.lookup_u32(x)).collect();
        assert_eq!(out, single);
    }
    // Mismatched lengths: only the common part is looked up, nothing panics.
    let mut short = [NextHop::MAX; 5];
    table.lookup_bulk(&addrs, &mut short);
    assert_eq!(short[4], table.lookup_u32(addrs[4]));
    let mut long = [NextHop::MAX; 40];
    table.lookup_bulk(&addrs[..3], &mut long);
    assert_eq!(long[2], table.lookup_u32(addrs[2]));
    assert_eq!(long[3], NextHop::MAX);
}

/// Random prefixes with nesting and overlap: a new prefix is either uniform, or a
/// shorter or longer prefix around an existing one.
fn random_prefix(rng: &mut SmallRng, existing: &[Ipv4Prefix]) -> Ipv4Prefix {
    let len = match rng.gen_range(0..20) {
        0 => 0,
        1 => 32,
        2..=4 => rng.gen_range(1..=16),
        5..=13 => rng.gen_range(17..=24),
        _ => rng.gen_range(25..=32),
    };
    let addr = if existing.is_empty() || rng.gen_bool(0.3) {
        rng.gen::<u32>()
    } else {
        let base = existing[rng.gen_range(0..existing.len())];
        base.bits() | (rng.gen::<u32>() & !base.mask())
    };
    Ipv4Prefix::truncating(Ipv4Addr::from_bits(addr), len).unwrap()
}

/// Batches of random inserts and removes, a table published after each: every table,
/// old or new, must keep answering as the reference did when it was published.
#[test]
fn random_batches_match_the_reference_and_old_tables_stay_valid() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0001);
    test_support::random_batches::<V4>(&mut rng, 80, random_prefix, probe_addrs);
}

fn prefix_strategy() -> impl Strategy<Value = Ipv4Prefix> {
    // Addresses near a few bases, so prefixes nest and overlap.
    let bases = vec![
        0,
        0x0a00_0000u32,
        0x0a01_0203,
        0x0a01_0280,
        0xc0a8_00ff,
        u32::MAX,
    ];
    let lens = prop_oneof![
        Just(0u8),
        Just(32u8),
        0..=32u8,
        prop::sample::select(vec![1u8, 8, 15, 16, 17, 23, 24, 25, 31]),
    ];
    (prop::sample::select(bases), any::<u32>(), 0..=32u32, lens).prop_map(
        |(base, noise, spread, len)| {
            let addr = base ^ noise.checked_shr(spread).unwrap_or(0);
            Ipv4Prefix::truncating(Ipv4Addr::from_bits(addr), len).unwrap()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        // Keep regressions beside this file (`tests.proptest-regressions`).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_naive_reference(
        ops in prop::collection::vec(test_support::op_strategy(prefix_strategy), 1..120),
        uniform in prop::collection::vec(any::<u32>(), 16),
        seed in any::<u64>(),
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        test_support::run_ops::<V4>(&ops, &uniform, &mut rng, probe_addrs, None)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    /// The same with the flat form from the first rule on (`V4Flat` checks that lookups
    /// read it): every publish writes into the spare table or, where an older table is
    /// still held, builds a new one.
    #[test]
    fn flat_form_matches_naive_reference(
        ops in prop::collection::vec(test_support::op_strategy(prefix_strategy), 1..120),
        uniform in prop::collection::vec(any::<u32>(), 16),
        seed in any::<u64>(),
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        test_support::run_ops::<V4Flat>(&ops, &uniform, &mut rng, probe_addrs, None)?;
    }

    /// The same, readers holding only the last 0, 1 or 2 tables: publishes write into
    /// kept tables, each brought up to date with every publish since it was written.
    #[test]
    fn flat_form_reusing_kept_tables_matches_naive_reference(
        ops in prop::collection::vec(test_support::op_strategy(prefix_strategy), 1..120),
        uniform in prop::collection::vec(any::<u32>(), 16),
        seed in any::<u64>(),
        hold in 0usize..FLATS_KEPT,
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        test_support::run_ops::<V4Flat>(&ops, &uniform, &mut rng, probe_addrs, Some(hold))?;
    }
}

#[test]
fn flat_form_random_batches_match_the_reference_and_old_tables_stay_valid() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0002);
    test_support::random_batches::<V4Flat>(&mut rng, 40, random_prefix, probe_addrs);
}

fn flat_builder() -> Ipv4LpmBuilder {
    let mut rib = Ipv4LpmBuilder::new();
    rib.set_flat_min_prefixes(0);
    rib
}

fn flat_ptr(t: &Ipv4Lpm) -> *const Flat {
    Arc::as_ptr(t.flat.as_ref().expect("the table has the flat form"))
}

/// Publishing writes into a kept flat table once no reader holds it, bringing it up to
/// date with every publish since it was written; while readers hold all of them, lookups
/// read the trie, and held tables keep answering as they did.
#[test]
fn flat_tables_are_reused_once_no_reader_holds_them() {
    let mut rib = flat_builder();
    rib.insert(p("10.0.0.0/8"), nh(1));
    let t1 = rib.publish();
    rib.insert(p("10.1.2.0/24"), nh(2));
    let t2 = rib.publish();
    rib.insert(p("10.9.3.128/25"), nh(3));
    let t3 = rib.publish();
    let kept = [flat_ptr(&t1), flat_ptr(&t2), flat_ptr(&t3)];
    assert!(kept[0] != kept[1] && kept[1] != kept[2] && kept[0] != kept[2]);

    // All three are held: the trie answers.
    rib.insert(p("10.1.4.0/24"), nh(4));
    let t4 = rib.publish();
    assert!(!t4.is_flat());
    assert_eq!(t4.lookup(a("10.1.4.1")), Some(nh(4)));
    assert_eq!(t4.lookup(a("10.9.3.129")), Some(nh(3)));
    assert_eq!(t1.lookup(a("10.1.2.1")), Some(nh(1)));
    assert_eq!(t1.lookup(a("10.9.3.129")), Some(nh(1)));
    assert_eq!(t2.lookup(a("10.9.3.129")), Some(nh(1)));
    assert_eq!(t3.lookup(a("10.1.4.1")), Some(nh(1)));

    // t1's table is free: the next publish writes into it every change since t1, in
    // three /16s (10.1 twice, 10.9, 10.7).
    drop(t1);
    rib.remove(p("10.1.2.0/24"));
    rib.insert(p("10.7.0.0/16"), nh(7));
    let t5 = rib.publish();
    assert_eq!(flat_ptr(&t5), kept[0]);
    for (addr, want) in [
        ("10.1.2.1", Some(1)),
        ("10.9.3.1", Some(1)),
        ("10.9.3.129", Some(3)),
        ("10.1.4.200", Some(4)),
        ("10.7.7.7", Some(7)),
        ("10.200.0.1", Some(1)),
        ("11.0.0.1", None),
    ] {
        assert_eq!(t5.lookup(a(addr)), want.map(nh), "{addr}");
    }
    assert_eq!(t3.lookup(a("10.1.2.1")), Some(nh(2)));
    assert_eq!(t2.lookup(a("10.7.7.7")), Some(nh(1)));

    // And t3's, once free, catches up with t4's and t5's changes (t5 still holds t1's).
    drop((t3, t4));
    rib.insert(p("10.8.0.0/16"), nh(8));
    let t6 = rib.publish();
    assert_eq!(flat_ptr(&t6), kept[2]);
    assert_eq!(t6.lookup(a("10.1.4.1")), Some(nh(4)));
    assert_eq!(t6.lookup(a("10.1.2.1")), Some(nh(1)));
    assert_eq!(t6.lookup(a("10.7.7.7")), Some(nh(7)));
    assert_eq!(t6.lookup(a("10.8.8.8")), Some(nh(8)));
    assert_eq!(t5.lookup(a("10.8.8.8")), Some(nh(1)));
    drop(t2);
}

/// Lookups of every rule's first and last address, against the rules themselves (the
/// rules of these tests do not nest).
fn check_disjoint(t: &Ipv4Lpm, rules: &[(Ipv4Prefix, NextHop)]) {
    for &(prefix, hop) in rules {
        assert_eq!(t.lookup_u32(prefix.bits()), hop, "{prefix:?}");
        assert_eq!(t.lookup_u32(prefix.last_bits()), hop, "{prefix:?}");
    }
}

/// Publishes until the table has the flat form again, which after an overflow comes back
/// within a few publishes (the backoff waits 1, then 2 publishes): each one after the first
/// changes a rule far from the rest, so that it has something to publish.
fn publish_until_flat(rib: &mut Ipv4LpmBuilder) -> Ipv4Lpm {
    let mut t = rib.publish();
    for round in 0..4 {
        if t.is_flat() {
            break;
        }
        rib.insert(p("200.0.0.0/8"), nh(round));
        t = rib.publish();
    }
    assert!(t.is_flat(), "no flat form after 4 publishes");
    t
}

/// /24 number `i` (of the address space's 2^24).
fn slash24(i: u32) -> Ipv4Prefix {
    Ipv4Prefix::truncating(Ipv4Addr::from_bits(i << 8), 24).unwrap()
}

/// `n` /24s from 0.0.0.0 on, each with a next hop of its own.
fn distinct_slash24s(n: u32) -> Vec<(Ipv4Prefix, NextHop)> {
    (0..n).map(|i| (slash24(i), nh(i))).collect()
}

/// More distinct next hops than 2-byte entries can number: lookups read the trie, and
/// the flat form comes back when the table fits again.
#[test]
fn too_many_next_hops_for_the_flat_form_fall_back_to_the_trie() {
    let mut rib = flat_builder();
    let rules = distinct_slash24s(FLAT_MAX as u32 + 100);
    rib.extend(rules.iter().copied());
    let full = rib.publish();
    assert!(!full.is_flat());
    check_disjoint(&full, &rules);

    // Half of them go: the flat form is tried again after a publish or two.
    for &(prefix, _) in &rules[FLAT_MAX / 2..] {
        rib.remove(prefix);
    }
    let kept = &rules[..FLAT_MAX / 2];
    let t = publish_until_flat(&mut rib);
    check_disjoint(&t, kept);
    assert_eq!(t.lookup_u32(rules[FLAT_MAX / 2].0.bits()), NextHop::NONE);
}

/// `n` /25s, one in each /24 from `first` on, next hops cycling through 7.
fn slash25s(first: u32, n: u32) -> Vec<(Ipv4Prefix, NextHop)> {
    (first..first + n)
        .map(|i| {
            (
                Ipv4Prefix::truncating(Ipv4Addr::from_bits(i << 8), 25).unwrap(),
                nh(i % 7),
            )
        })
        .collect()
}

/// More /24s with longer prefixes than there are groups: the publish that fills them,
/// writing into the kept flat table, throws it away, and lookups read the trie until
/// the table fits again.
#[test]
fn too_many_groups_for_the_flat_form_fall_back_to_the_trie() {
    let mut rib = flat_builder();
    let rules = slash25s(0, FLAT_MAX as u32 + 1);
    rib.extend(rules[..FLAT_MAX].iter().copied());
    let fits = rib.publish();
    assert!(fits.is_flat());
    assert_eq!(fits.stats().flat_groups, FLAT_MAX);
    check_disjoint(&fits, &rules[..FLAT_MAX]);
    drop(fits);
    rib.insert(rules[FLAT_MAX].0, rules[FLAT_MAX].1);
    let full = rib.publish();
    assert!(!full.is_flat());
    check_disjoint(&full, &rules);

    // Two go: the flat form is tried again after a publish or two.
    rib.remove(rules[0].0);
    rib.remove(rules[1].0);
    let t = publish_until_flat(&mut rib);
    assert_eq!(t.stats().flat_groups, FLAT_MAX - 1);
    check_disjoint(&t, &rules[2..]);
    assert_eq!(t.lookup_u32(rules[0].0.bits()), NextHop::NONE);
}

/// With every group in use, one publish moves a group from a higher /16 to a lower one:
/// the kept table frees the stale /16s' groups before writing any, so the change fits it.
#[test]
fn a_full_flat_table_takes_a_change_that_moves_a_group() {
    let mut rib = flat_builder();
    // /16s 1 to 128 full of /25s: every group is in use.
    let rules = slash25s(1 << 8, FLAT_MAX as u32);
    rib.extend(rules.iter().copied());
    let t1 = rib.publish();
    assert_eq!(t1.stats().flat_groups, FLAT_MAX);
    let kept = flat_ptr(&t1);
    drop(t1);
    let last = rules[FLAT_MAX - 1].0;
    rib.remove(last);
    rib.insert(p("0.0.0.0/25"), nh(9));
    let t2 = rib.publish();
    assert_eq!(flat_ptr(&t2), kept, "written into the kept table");
    // Written in place, not built again (which could reuse the freed memory): /16 0's
    // group is the one /16 128 gave back, the last; a new table would number it 0.
    let flat = t2.flat.as_ref().unwrap();
    assert_eq!(flat.tbl24[0], FLAT_GROUP | (FLAT_MAX - 1) as u16);
    assert_eq!(t2.stats().flat_groups, FLAT_MAX);
    assert_eq!(t2.lookup(a("0.0.0.1")), Some(nh(9)));
    assert_eq!(t2.lookup(a("0.0.0.129")), None);
    assert_eq!(t2.lookup_u32(last.bits()), NextHop::NONE);
    check_disjoint(&t2, &rules[..FLAT_MAX - 1]);
}

/// A publish that changes no /16 (the rules changed and changed back) while readers hold
/// every kept table shares the current flat table; one that changes a /16 reads the trie.
#[test]
fn a_publish_that_changes_no_slash16_shares_the_flat_table() {
    let mut rib = flat_builder();
    let mut held = Vec::new();
    for i in 0..FLATS_KEPT as u32 {
        let bits = (10 << 24) | (i << 16);
        rib.insert(
            Ipv4Prefix::truncating(Ipv4Addr::from_bits(bits), 16).unwrap(),
            nh(i),
        );
        held.push(rib.publish());
    }
    let last = flat_ptr(&held[FLATS_KEPT - 1]);
    rib.insert(p("10.0.1.0/24"), nh(9));
    rib.remove(p("10.0.1.0/24"));
    assert!(rib.has_pending());
    let same = rib.publish();
    assert_eq!(flat_ptr(&same), last);
    assert_eq!(same.lookup(a("10.0.1.1")), Some(nh(0)));
    rib.insert(p("10.0.1.0/24"), nh(9));
    let changed = rib.publish();
    assert!(!changed.is_flat());
    assert_eq!(changed.lookup(a("10.0.1.1")), Some(nh(9)));
    assert_eq!(same.lookup(a("10.0.1.1")), Some(nh(0)));
}

/// Next hops that no rule uses any more still hold their numbers until the numbering
/// is full; then it starts again from the rules, and older tables keep their own.
#[test]
fn flat_numbering_starts_again_when_full() {
    let mut rib = flat_builder();
    let n = FLAT_MAX as u32 * 2 / 3;
    let first = distinct_slash24s(n);
    let second: Vec<_> = (0..n).map(|i| (slash24(i), nh(n + i))).collect();
    rib.extend(first.iter().copied());
    let t1 = rib.publish();
    rib.extend(second.iter().copied());
    let t2 = rib.publish();
    assert!(t1.is_flat() && t2.is_flat());
    check_disjoint(&t1, &first);
    check_disjoint(&t2, &second);
    // And the next publish, which has no spare of the new numbering, builds again.
    rib.insert(slash24(0), nh(7));
    drop(t1);
    let t3 = rib.publish();
    assert!(t3.is_flat());
    check_disjoint(&t3, &[(slash24(0), nh(7))]);
    check_disjoint(&t3, &second[1..]);
}

/// Small tables stay tries; the flat form comes at `FLAT_MIN_PREFIXES` rules and goes
/// below half of it.
#[test]
fn the_flat_form_comes_with_size() {
    let mut rib = Ipv4LpmBuilder::new();
    rib.extend((0..FLAT_MIN_PREFIXES as u32 - 1).map(|i| (slash24(i), nh(i % 5))));
    assert!(!rib.publish().is_flat());
    rib.insert(slash24(FLAT_MIN_PREFIXES as u32), nh(1));
    let t = rib.publish();
    assert!(t.is_flat());
    assert_eq!(t.lookup_u32((FLAT_MIN_PREFIXES as u32) << 8), nh(1));
    for i in FLAT_MIN_PREFIXES as u32 / 2..FLAT_MIN_PREFIXES as u32 {
        rib.remove(slash24(i));
    }
    // Half of FLAT_MIN_PREFIXES and one: still flat.
    assert_eq!(rib.len(), FLAT_MIN_PREFIXES / 2 + 1);
    assert!(rib.publish().is_flat());
    rib.remove(slash24(0));
    rib.remove(slash24(1));
    let small = rib.publish();
    assert!(!small.is_flat());
    assert_eq!(small.lookup_u32(2 << 8), nh(2));
    assert_eq!(small.lookup_u32(1 << 8), NextHop::NONE);
}

/// Changes made while the table was too small for the flat form are in it when it
/// comes back (the kept tables, which did not see them, were let go).
#[test]
fn changes_while_the_flat_form_is_off_reach_it_when_it_comes_back() {
    let mut rib = Ipv4LpmBuilder::new();
    rib.set_flat_min_prefixes(4);
    let slash16 = |i: u32| Ipv4Prefix::truncating(Ipv4Addr::from_bits(i << 16), 16).unwrap();
    rib.extend((1..=4).map(|i| (slash16(i), nh(i))));
    let t1 = rib.publish();
    assert!(t1.is_flat());
    drop(t1);
    for i in 2..=4 {
        rib.remove(slash16(i));
    }
    let t2 = rib.publish();
    assert!(!t2.is_flat());
    rib.insert(slash16(1), nh(11));
    let t3 = rib.publish();
    assert!(!t3.is_flat());
    assert_eq!(t3.lookup_u32(1 << 16), nh(11));
    drop((t2, t3));
    rib.extend((5..=7).map(|i| (slash16(i), nh(i))));
    let t4 = rib.publish();
    assert!(t4.is_flat());
    for (i, want) in [
        (1, Some(11)),
        (2, None),
        (3, None),
        (4, None),
        (5, Some(5)),
        (7, Some(7)),
    ] {
        assert_eq!(t4.lookup_u32(i << 16).to_option(), want.map(nh), "/16 {i}");
    }
}

/// A table that overflowed the flat form gets it back once it fits, as long as it has
/// half the threshold: the overflow does not reset the hysteresis.
#[test]
fn the_flat_form_keeps_its_threshold_through_an_overflow() {
    let mut rib = Ipv4LpmBuilder::new();
    let n = FLAT_MAX as u32 + 100;
    rib.set_flat_min_prefixes(n as usize);
    let rules = distinct_slash24s(n);
    rib.extend(rules.iter().copied());
    assert!(!rib.publish().is_flat(), "too many next hops");
    let keep = FLAT_MAX - 1000;
    for &(prefix, _) in &rules[keep..] {
        rib.remove(prefix);
    }
    assert!(rib.len() < n as usize && rib.len() >= n as usize / 2);
    let t = publish_until_flat(&mut rib);
    check_disjoint(&t, &rules[..keep]);
    assert_eq!(t.lookup_u32(rules[keep].0.bits()), NextHop::NONE);
}

/// `count` random prefixes with the real-world length mix (mostly /19 to /24), random
/// next hops below 1000.
fn random_table(count: usize, rng: &mut SmallRng) -> Vec<(Ipv4Prefix, NextHop)> {
    // Per mille of each length in the real table (see prefixes-v4.txt.gz).
    const MIX: [(u8, u32); 12] = [
        (8, 1),
        (14, 3),
        (16, 17),
        (17, 12),
        (18, 21),
        (19, 39),
        (20, 59),
        (21, 82),
        (22, 184),
        (23, 184),
        (24, 388),
        (28, 10),
    ];
    let total: u32 = MIX.iter().map(|&(_, w)| w).sum();
    (0..count)
        .map(|_| {
            let mut pick = rng.gen_range(0..total);
            let mut len = 32;
            for &(l, w) in &MIX {
                if pick < w {
                    len = l;
                    break;
                }
                pick -= w;
            }
            if len == 28 {
                len = rng.gen_range(25..=32);
            }
            let prefix = Ipv4Prefix::truncating(Ipv4Addr::from_bits(rng.gen()), len).unwrap();
            (prefix, nh(rng.gen_range(0..1000)))
        })
        .collect()
}

/// After one change in a big table, the new table shares all but a few chunks with the
/// old one: the copy-on-write copies the root, one block and one subtree.
#[test]
fn one_update_copies_only_a_few_chunks() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut rib: Ipv4LpmBuilder = random_table(50_000, &mut rng).into_iter().collect();
    let old = rib.publish();
    let chunks = old.stats().chunks;
    assert!(chunks > 10_000, "{:?}", old.stats());
    let mut probes: Vec<Ipv4Prefix> = rib.iter().map(|(p, _)| p).step_by(10).collect();
    probes.extend([p("10.0.0.0/8"), p("10.1.2.0/24")]);
    let addrs = probe_addrs(&probes, 2000, &mut rng);
    let mut before = vec![NextHop::NONE; addrs.len()];
    old.lookup_bulk(&addrs, &mut before);

    // A /24 inside an existing subtree: root, one block, one subtree copied.
    let prefix = p("10.1.2.0/24");
    rib.insert(prefix, nh(4242));
    let new = rib.publish();
    assert_eq!(new.lookup(a("10.1.2.3")), Some(nh(4242)));
    assert_ne!(old.lookup(a("10.1.2.3")), Some(nh(4242)));
    let shared = new.shared_chunks(&old);
    assert!(shared >= chunks - 3, "{shared} of {chunks} shared");

    // Removing it again: the same.
    rib.remove(prefix);
    let newer = rib.publish();
    assert!(newer.shared_chunks(&new) >= new.stats().chunks - 3);

    // A /32 in a /16 without a subtree makes one new subtree.
    let x = (0..=u16::MAX)
        .find(|&x| {
            newer.root.blocks[usize::from(x >> 8)].slots[usize::from(x & 0xff)]
                .sub
                .is_none()
        })
        .unwrap();
    rib.insert(
        Ipv4Prefix::host(Ipv4Addr::from_bits(u32::from(x) << 16)),
        nh(1),
    );
    let with_host = rib.publish();
    assert_eq!(with_host.shared_chunks(&newer), newer.stats().chunks - 2);
    assert_eq!(with_host.stats().subtrees, newer.stats().subtrees + 1);

    // A /8 copies at most the root, its block and the subtrees under it.
    rib.insert(p("10.0.0.0/8"), nh(4343));
    let with_8 = rib.publish();
    let under_8 = newer.root.blocks[10]
        .slots
        .iter()
        .filter(|s| s.sub.is_some())
        .count();
    assert!(with_8.shared_chunks(&with_host) >= with_host.stats().chunks - 2 - under_8);

    // The first table still answers as it did, and so does the one with the same rules.
    for (&addr, &want) in addrs.iter().zip(&before) {
        assert_eq!(old.lookup_u32(addr), want);
        assert_eq!(newer.lookup_u32(addr), want);
        if prefix.contains_bits(addr) {
            assert_eq!(new.lookup_u32(addr), nh(4242));
        }
    }
}

const REAL_TABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/prefixes-v4.txt.gz"
);

#[test]
fn real_world_table_matches_the_reference() {
    let Some(rules) = test_support::load_table(REAL_TABLE) else {
        return;
    };
    assert_eq!(rules.len(), 564_580);
    let mut rules = test_support::number_by_asn(&rules);
    // The table has no nesting; add covering aggregates and a default route.
    rules.push((p("0.0.0.0/0"), nh(900_000)));
    for i in 0..256u32 {
        if i % 3 == 0 {
            let p8 = Ipv4Prefix::truncating(Ipv4Addr::from_bits(i << 24), 8).unwrap();
            rules.push((p8, nh(900_001 + i)));
        }
    }
    let mut rng = SmallRng::seed_from_u64(42);
    test_support::check_big_table::<V4>(&rules, 20_000, 2000, &mut rng, probe_addrs);
}

/// Prints build time, memory and lookup speed for the real-world table and for 1M random
/// prefixes. Run in release:
/// `cargo test --release -p dataplane --no-default-features --lib lpm::ipv4::tests::measure -- --ignored --nocapture`
#[test]
#[ignore = "prints measurements; run in release"]
fn measure() {
    use std::hint::black_box;
    use std::time::Instant;

    let mut rng = SmallRng::seed_from_u64(1);
    let mut tables: Vec<(&str, Vec<(Ipv4Prefix, NextHop)>)> = Vec::new();
    if let Some(rules) = test_support::load_table(REAL_TABLE) {
        tables.push(("real-world 564,580", test_support::number_by_asn(&rules)));
    }
    let mut seen = std::collections::HashSet::new();
    let mut random = random_table(1_050_000, &mut rng);
    random.retain(|(p, _)| seen.insert(*p));
    random.truncate(1_000_000);
    tables.push(("random 1M", random));
    for (name, rules) in &tables {
        let start = Instant::now();
        let mut rib: Ipv4LpmBuilder = rules.iter().copied().collect();
        let inserted = start.elapsed();
        let table = rib.publish();
        let built = start.elapsed();
        let stats = table.stats();
        println!("== {name}: {} distinct prefixes", table.len());
        println!(
            "build: {:.0} ms (insert {:.0} ms, publish {:.0} ms)",
            built.as_secs_f64() * 1e3,
            inserted.as_secs_f64() * 1e3,
            (built - inserted).as_secs_f64() * 1e3
        );
        println!(
            "table: {:.1} MiB ({:.1} bytes/prefix), {stats:?}; rules: {:.1} MiB",
            stats.memory_bytes as f64 / (1 << 20) as f64,
            stats.memory_bytes as f64 / table.len() as f64,
            rib.memory_bytes() as f64 / (1 << 20) as f64,
        );

        // Update costs.
        let start = Instant::now();
        rib.insert(p("10.1.2.0/24"), nh(7));
        let one = rib.publish();
        let one_t = start.elapsed();
        let batch = random_table(1000, &mut rng);
        let start = Instant::now();
        rib.extend(batch.iter().copied());
        let thousand = rib.publish();
        let batch_t = start.elapsed();
        println!(
            "update: one /24 {:.1} us ({} chunks copied), 1000 random {:.2} ms ({} chunks copied)",
            one_t.as_secs_f64() * 1e6,
            one.stats().chunks - one.shared_chunks(&table),
            batch_t.as_secs_f64() * 1e3,
            thousand.stats().chunks - thousand.shared_chunks(&one),
        );
        drop((one, thousand));

        const N: usize = 1 << 22;
        let uniform: Vec<u32> = (0..N).map(|_| rng.gen()).collect();
        let inside: Vec<u32> = (0..N)
            .map(|_| {
                let (p, _) = rules[rng.gen_range(0..rules.len())];
                p.bits() | (rng.gen::<u32>() & !p.mask())
            })
            .collect();
        // The floor for a DIR-24-8 on the same machine and allocator (no hugepages):
        // one load per address from a flat 2^24-entry array.
        let flat: Vec<u32> = (0..1u32 << 24)
            .map(|i| table.lookup_u32(i << 8).index())
            .collect();
        for (kind, addrs) in [("uniform", &uniform), ("in-prefix", &inside)] {
            let mut best = [f64::MAX; 3];
            for _ in 0..5 {
                let mut out = [NextHop::NONE; BURST];
                let runs: [&mut dyn FnMut(); 3] = [
                    &mut || {
                        let mut sum = 0u32;
                        for &addr in addrs.iter() {
                            sum = sum.wrapping_add(table.lookup_u32(black_box(addr)).index());
                        }
                        black_box(sum);
                    },
                    &mut || {
                        for burst in addrs.chunks_exact(BURST) {
                            table.lookup_bulk(black_box(burst), &mut out);
                            black_box(&out);
                        }
                    },
                    &mut || {
                        let mut sum = 0u32;
                        for &addr in addrs.iter() {
                            sum = sum.wrapping_add(flat[(black_box(addr) >> 8) as usize]);
                        }
                        black_box(sum);
                    },
                ];
                for (run, best) in runs.into_iter().zip(best.iter_mut()) {
                    let start = Instant::now();
                    run();
                    *best = best.min(start.elapsed().as_secs_f64() * 1e9 / N as f64);
                }
            }
            let [single, bulk, flat] = best;
            println!(
                "lookup {kind}: single {single:.2} ns, bulk of {BURST} {bulk:.2} ns; \
                 flat 2^24 array (DIR-24-8's first level alone) {flat:.2} ns"
            );
        }
    }
}
