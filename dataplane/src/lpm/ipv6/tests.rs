//! Tests of the IPv6 table against two independent references: a linear scan over the
//! rules ([`Naive`], for small tables) and one hash map per prefix length ([`ByLen`], for
//! big ones), both shared with the IPv4 tests.

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::lpm::test_support::{self, nh, V6};

type Naive = test_support::Naive<V6>;
type ByLen = test_support::ByLen<V6>;

fn p(s: &str) -> Ipv6Prefix {
    s.parse().unwrap()
}

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Addresses that probe every rule: its first and last address, their neighbours
/// outside it, and one random address inside; plus `uniform` random ones, half of them
/// in 2000::/3 (where real tables are).
fn probe_addrs(rules: &[Ipv6Prefix], uniform: usize, rng: &mut SmallRng) -> Vec<u128> {
    let mut addrs = vec![0, 1, u128::MAX, u128::MAX - 1, 1 << 127, (1 << 127) - 1];
    for r in rules {
        let (first, last) = (r.bits(), r.last_bits());
        addrs.extend([first, last, first.wrapping_sub(1), last.wrapping_add(1)]);
        addrs.push(first | (rng.gen::<u128>() & !r.mask()));
    }
    addrs.extend((0..uniform).map(|i| {
        let x = rng.gen::<u128>();
        if i % 2 == 0 {
            x
        } else {
            (x >> 3) | (1 << 125)
        }
    }));
    addrs
}

fn check(table: &Ipv6Lpm, addrs: &[u128], reference: impl Fn(u128) -> NextHop) {
    test_support::check::<V6>(table, addrs, reference);
}

fn build(rules: &[(&str, u32)]) -> Ipv6Lpm {
    rules
        .iter()
        .map(|&(s, i)| (p(s), nh(i)))
        .collect::<Ipv6LpmBuilder>()
        .publish()
}

#[test]
fn tables_are_send_sync_and_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Ipv6Lpm>();
    let builder_is_send = |b: Ipv6LpmBuilder| std::thread::spawn(move || b.len());
    assert_eq!(builder_is_send(Ipv6LpmBuilder::new()).join().unwrap(), 0);
}

#[test]
fn empty_table_misses_everywhere() {
    let table = Ipv6Lpm::new();
    for addr in [
        "::",
        "2001:db8::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert_eq!(table.lookup(a(addr)), None);
    }
    assert!(table.is_empty());
    let stats = table.stats();
    assert_eq!((stats.blocks, stats.subtrees, stats.chunks), (1, 0, 2));
    assert_eq!(
        Ipv6LpmBuilder::new().publish().lookup(a("2001:db8::1")),
        None
    );
    let mut out = [NextHop(7); 3];
    table.lookup_bulk(&[0, 1, u128::MAX], &mut out);
    assert_eq!(out, [NextHop::NONE; 3]);
}

#[test]
fn default_route_and_host_routes() {
    let table = build(&[
        ("::/0", 1),
        ("2001:db8::1/128", 2),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 3),
        ("::/128", 4),
    ]);
    assert_eq!(table.lookup(a("::")), Some(nh(4)));
    assert_eq!(table.lookup(a("::1")), Some(nh(1)));
    assert_eq!(table.lookup(a("2001:db8::")), Some(nh(1)));
    assert_eq!(table.lookup(a("2001:db8::1")), Some(nh(2)));
    assert_eq!(table.lookup(a("2001:db8::2")), Some(nh(1)));
    assert_eq!(table.lookup(a("2001:db8:0:0:8000::1")), Some(nh(1)));
    assert_eq!(
        table.lookup(a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")),
        Some(nh(1))
    );
    assert_eq!(
        table.lookup(a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
        Some(nh(3))
    );
    assert_eq!(table.len(), 4);
    let only_hosts = build(&[
        ("::/128", 4),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 5),
    ]);
    assert_eq!(only_hosts.lookup(a("::")), Some(nh(4)));
    assert_eq!(only_hosts.lookup(a("::1")), None);
    assert_eq!(
        only_hosts.lookup(Ipv6Addr::from_bits(u128::MAX)),
        Some(nh(5))
    );
    assert_eq!(only_hosts.lookup(Ipv6Addr::from_bits(u128::MAX - 1)), None);
}

#[test]
fn prefixes_that_differ_only_in_the_last_bit() {
    // Two host routes side by side under a /126, and a /127 beside them; /63 and /64,
    // /47 and /48 pairs at stride boundaries in the middle of the address.
    let table = build(&[
        ("2001:db8::/126", 1),
        ("2001:db8::/128", 2),
        ("2001:db8::1/128", 3),
        ("2001:db8::2/127", 4),
        ("2001:db8:0:2::/63", 5),
        ("2001:db8:0:3::/64", 6),
        ("2001:db8::/64", 7),
        ("2001:db8:2::/47", 8),
        ("2001:db8::/48", 9),
        ("2001:db8:3::/48", 10),
    ]);
    for (addr, want) in [
        ("2001:db8::", 2),
        ("2001:db8::1", 3),
        ("2001:db8::2", 4),
        ("2001:db8::3", 4),
        ("2001:db8::4", 7),
        ("2001:db8:0:0:ffff::", 7),
        ("2001:db8:0:2::", 5),
        ("2001:db8:0:2:ffff:ffff:ffff:ffff", 5),
        ("2001:db8:0:3::", 6),
        ("2001:db8:0:3:ffff:ffff:ffff:ffff", 6),
        ("2001:db8:0:4::", 9),
        ("2001:db8:0:ffff::", 9),
        ("2001:db8:2::", 8),
        ("2001:db8:2:ffff::", 8),
        ("2001:db8:3::", 10),
    ] {
        assert_eq!(table.lookup(a(addr)), Some(nh(want)), "{addr}");
    }
    assert_eq!(table.lookup(a("2001:db8:1::")), None);
    assert_eq!(table.lookup(a("2001:db8:4::")), None);
}

/// A prefix of every length 0..=128 at one address, each with its length as next hop:
/// the address that leaves them at bit `l` (flips it) matches exactly the prefixes of
/// length <= `l`, so the answer is `l`. Run at addresses whose bits are all ones, all
/// zeros and mixed, so that every stride boundary sees both.
#[test]
fn every_length_at_one_address() {
    for base in [
        0u128,
        u128::MAX,
        0x2001_0db8_85a3_0000_0000_8a2e_0370_7334,
        0xa5a5_5a5a_a5a5_5a5a_a5a5_5a5a_a5a5_5a5a,
    ] {
        let mut rib = Ipv6LpmBuilder::new();
        for len in 0..=128u8 {
            rib.insert(
                Ipv6Prefix::from_bits(base, len).unwrap(),
                nh(u32::from(len)),
            );
        }
        let table = rib.publish();
        assert_eq!(table.len(), 129);
        assert_eq!(table.lookup_u128(base), nh(128));
        let mut addrs = vec![base];
        let mut want = vec![nh(128)];
        for l in 0..128u32 {
            let flipped = base ^ (1u128 << (127 - l));
            addrs.push(flipped);
            want.push(nh(l));
            assert_eq!(table.lookup_u128(flipped), nh(l), "{base:x} bit {l}");
        }
        let mut out = vec![NextHop::NONE; addrs.len()];
        table.lookup_bulk(&addrs, &mut out);
        assert_eq!(out, want);

        // Without the even lengths, an address that leaves at bit l matches the longest
        // odd length <= l, or nothing below length 1.
        for len in (0..=128u8).step_by(2) {
            rib.remove(Ipv6Prefix::from_bits(base, len).unwrap());
        }
        let odd = rib.publish();
        assert_eq!(odd.len(), 64);
        assert_eq!(odd.lookup_u128(base), nh(127));
        for l in 0..128u32 {
            let flipped = base ^ (1u128 << (127 - l));
            let want = if l == 0 {
                NextHop::NONE
            } else if l % 2 == 1 {
                nh(l)
            } else {
                nh(l - 1)
            };
            assert_eq!(odd.lookup_u128(flipped), want, "{base:x} bit {l}");
        }
        // The first table is untouched.
        assert_eq!(table.lookup_u128(base ^ 1), nh(127));
        assert_eq!(table.lookup_u128(base ^ (1 << 127)), nh(0));
    }
}

#[test]
fn nested_prefixes_at_every_level() {
    let table = build(&[
        ("2000::/3", 3),
        ("2001::/16", 16),
        ("2001:db8::/32", 32),
        ("2001:db8:8000::/33", 33),
        ("2001:db8:1::/48", 48),
        ("2001:db8:1:1::/64", 64),
        ("2001:db8:1:1::100/120", 120),
        ("2001:db8:1:1::180/121", 121),
        ("2001:db8:1:1::1a5/128", 128),
        ("2001:db8:1:8000::/49", 49),
        ("2001:db8:100::/40", 40),
        ("2001:dc0::/29", 29),
    ]);
    for (addr, want) in [
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2000::", Some(3)),
        ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(3)),
        ("4000::", None),
        ("2001::", Some(16)),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Some(16)),
        ("2001:db8::", Some(32)),
        ("2001:db8:7fff:ffff:ffff:ffff:ffff:ffff", Some(32)),
        ("2001:db8:8000::", Some(33)),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Some(33)),
        ("2001:db8:1::", Some(48)),
        ("2001:db8:1:0:ffff:ffff:ffff:ffff", Some(48)),
        ("2001:db8:1:1::", Some(64)),
        ("2001:db8:1:1::ff", Some(64)),
        ("2001:db8:1:1::100", Some(120)),
        ("2001:db8:1:1::17f", Some(120)),
        ("2001:db8:1:1::180", Some(121)),
        ("2001:db8:1:1::1a4", Some(121)),
        ("2001:db8:1:1::1a5", Some(128)),
        ("2001:db8:1:1::1a6", Some(121)),
        ("2001:db8:1:1::1ff", Some(121)),
        ("2001:db8:1:1::200", Some(64)),
        ("2001:db8:1:2::", Some(48)),
        ("2001:db8:1:7fff:ffff:ffff:ffff:ffff", Some(48)),
        ("2001:db8:1:8000::", Some(49)),
        ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", Some(49)),
        ("2001:db8:2::", Some(32)),
        ("2001:db8:100::", Some(40)),
        ("2001:db8:1ff:ffff::", Some(40)),
        ("2001:db8:200::", Some(32)),
        ("2001:dc0::", Some(29)),
        ("2001:dc7:ffff::", Some(29)),
        ("2001:dc8::", Some(16)),
        ("2002::", Some(3)),
    ] {
        assert_eq!(table.lookup(a(addr)), want.map(nh), "{addr}");
    }
}

#[test]
fn insert_replaces_the_next_hop() {
    let mut rib = Ipv6LpmBuilder::new();
    assert_eq!(rib.insert(p("2001:db8::/32"), nh(1)), None);
    assert_eq!(rib.insert(p("2001:db8:1::/48"), nh(1)), None);
    assert_eq!(rib.insert(p("::/0"), nh(1)), None);
    let v1 = rib.publish();
    assert_eq!(rib.insert(p("2001:db8::/32"), nh(2)), Some(nh(1)));
    assert_eq!(rib.insert(p("2001:db8:1::/48"), nh(3)), Some(nh(1)));
    assert_eq!(rib.insert(p("::/0"), nh(4)), Some(nh(1)));
    assert_eq!(rib.get(p("2001:db8::/32")), Some(nh(2)));
    assert_eq!(rib.get(p("::/0")), Some(nh(4)));
    assert_eq!(rib.get(p("2001:db8::/33")), None);
    assert_eq!(rib.len(), 3);
    let v2 = rib.publish();
    assert_eq!(v2.lookup(a("2001:db8:9::9")), Some(nh(2)));
    assert_eq!(v2.lookup(a("2001:db8:1::3")), Some(nh(3)));
    assert_eq!(v2.lookup(a("3001::")), Some(nh(4)));
    assert_eq!(v2.len(), 3);
    // The old table answers as it did.
    assert_eq!(v1.lookup(a("2001:db8:9::9")), Some(nh(1)));
    assert_eq!(v1.lookup(a("2001:db8:1::3")), Some(nh(1)));
    assert_eq!(v1.lookup(a("3001::")), Some(nh(1)));
}

#[test]
fn remove_restores_the_covering_prefix() {
    let mut rib = Ipv6LpmBuilder::new();
    for (s, i) in [
        ("::/0", 0),
        ("2000::/3", 3),
        ("2001::/16", 16),
        ("2001:db8::/32", 32),
        ("2001:db8:1::/48", 48),
        ("2001:db8:1:2::/64", 64),
        ("2001:db8:1:2::3/128", 128),
    ] {
        rib.insert(p(s), nh(i));
    }
    let full = rib.publish();
    let addr = a("2001:db8:1:2::3");
    assert_eq!(full.lookup(addr), Some(nh(128)));
    for (s, want) in [
        ("2001:db8:1:2::3/128", 64),
        ("2001:db8:1:2::/64", 48),
        ("2001:db8:1::/48", 32),
        ("2001:db8::/32", 16),
        ("2001::/16", 3),
        ("2000::/3", 0),
    ] {
        assert!(rib.remove(p(s)).is_some());
        assert_eq!(
            rib.publish().lookup(addr),
            Some(nh(want)),
            "after removing {s}"
        );
    }
    assert_eq!(rib.remove(p("::/0")), Some(nh(0)));
    let empty = rib.publish();
    assert_eq!(empty.lookup(addr), None);
    assert!(empty.is_empty() && rib.is_empty());
    assert_eq!(empty.stats().subtrees, 0);
    assert_eq!(full.lookup(addr), Some(nh(128)));
}

#[test]
fn removing_an_absent_prefix_changes_nothing() {
    let mut rib = Ipv6LpmBuilder::new();
    rib.insert(p("2001:db8::/32"), nh(1));
    rib.insert(p("2001:db8:1::/48"), nh(2));
    let v1 = rib.publish();
    for s in [
        "2001:db8::/33",
        "2001:db8::/31",
        "2001:db8:1::/49",
        "2001:db8:2::/48",
        "2001:db8:1::/128",
        "::/0",
        "2001::/16",
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
    // The /0 is hidden by the two /1s, so removing it changes no /16, but the table's
    // prefix count must still follow.
    let mut rib = Ipv6LpmBuilder::new();
    rib.insert(p("8000::/1"), nh(0));
    rib.insert(p("::/1"), nh(0));
    rib.insert(p("::/0"), nh(0));
    let v1 = rib.publish();
    assert_eq!(v1.len(), 3);
    assert_eq!(rib.remove(p("::/0")), Some(nh(0)));
    assert_eq!(rib.remove(p("::/0")), None);
    assert!(rib.has_pending());
    let v2 = rib.publish();
    assert_eq!(v2.len(), 2);
    assert_eq!(v2.lookup(a("2001:db8::")), Some(nh(0)));
    assert_eq!(v2.shared_chunks(&v1), v1.stats().chunks - 1);
}

#[test]
fn insert_none_removes() {
    let mut rib = Ipv6LpmBuilder::new();
    rib.insert(p("2001:db8:1::/48"), nh(2));
    assert_eq!(rib.insert(p("2001:db8:1::/48"), NextHop::NONE), Some(nh(2)));
    assert!(rib.is_empty());
    assert_eq!(rib.publish().lookup(a("2001:db8:1::1")), None);
}

#[test]
fn publish_without_changes_returns_the_same_table() {
    let mut rib = Ipv6LpmBuilder::new();
    rib.insert(p("2001:db8:1::/48"), nh(2));
    let v1 = rib.publish();
    assert!(!rib.has_pending());
    let v2 = rib.publish();
    assert!(Arc::ptr_eq(&v1.root, &v2.root));
    // Setting the same next hop again is no change either.
    rib.insert(p("2001:db8:1::/48"), nh(2));
    assert!(Arc::ptr_eq(&v1.root, &rib.publish().root));
    // A batch that cancels out rebuilds, finds no difference, and copies nothing but
    // the root.
    rib.insert(p("2001:db8:2::/48"), nh(3));
    rib.remove(p("2001:db8:2::/48"));
    let v3 = rib.publish();
    assert_eq!(v3.shared_chunks(&v1), v1.stats().chunks - 1);
}

#[test]
fn fully_covered_slash16_needs_no_subtree() {
    let table = build(&[("2000::/8", 1), ("2001::/17", 2), ("2001:8000::/17", 2)]);
    assert_eq!(table.stats().subtrees, 0);
    assert_eq!(table.lookup(a("2001::")), Some(nh(2)));
    assert_eq!(table.lookup(a("2001:ffff::")), Some(nh(2)));
    assert_eq!(table.lookup(a("2002::")), Some(nh(1)));
    let split = build(&[("2000::/8", 1), ("2001::/17", 2), ("2001:8000::/17", 3)]);
    assert_eq!(split.stats().subtrees, 1);
    assert_eq!(split.stats().nodes, 0);
    assert_eq!(split.lookup(a("2001:ffff::")), Some(nh(3)));
}

#[test]
fn stats_count_nodes_and_records() {
    let table = build(&[
        // 2001::/16: a /24 in the direct level only.
        ("2001:100::/24", 1),
        // 2002::/16: two rules under 2002::/24, both under 2002::/30: a node for bits
        // 24..30 and one for bits 30..36, where both end.
        ("2002:1::/32", 2),
        ("2002:1:8000::/33", 3),
        // The only rule under 2002:200::/24: a record.
        ("2002:200::/40", 4),
        ("3000::/8", 5),
    ]);
    let stats = table.stats();
    assert_eq!(stats.prefixes, 5);
    assert_eq!(stats.subtrees, 2);
    assert_eq!(stats.wide, 0);
    assert_eq!((stats.nodes, stats.records), (2, 1));
    assert_eq!(stats.blocks, 3); // 0x20, 0x30, and the empty one the others still share
    assert_eq!(stats.chunks, 1 + 3 + 2);
    // Two direct levels of 256 entries, two nodes of 64, a record of 7 words.
    let words = 2 * 256 + 2 * 64 + 7;
    assert!(stats.memory_bytes >= words * 4 + 3 * size_of::<Block>());
    assert_eq!(table.memory_bytes(), stats.memory_bytes);
    assert!(format!("{table:?}").contains("subtrees: 2"));
    for (addr, want) in [
        ("2002:1::", Some(2)),
        ("2002:1:7fff::", Some(2)),
        ("2002:1:8000::", Some(3)),
        ("2002:2::", None),
        ("2002:200::", Some(4)),
        ("2002:200:ff::", Some(4)),
        ("2002:201::", None),
        ("2002:2ff::", None),
    ] {
        assert_eq!(table.lookup(a(addr)), want.map(nh), "{addr}");
    }
}

#[test]
fn builder_iterates_its_rules() {
    let rules = [
        ("::/0", 0),
        ("8000::/1", 1),
        ("2000::/3", 3),
        ("2001::/16", 16),
        ("ffff::/16", 17),
        ("2001:db8::/32", 32),
        ("2001:db8:1::/48", 48),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 128),
    ];
    let rib: Ipv6LpmBuilder = rules.iter().map(|&(s, i)| (p(s), nh(i))).collect();
    let got: Vec<(String, u32)> = rib
        .iter()
        .map(|(p, n)| (p.to_string(), n.index()))
        .collect();
    let want: Vec<(String, u32)> = rules.iter().map(|&(s, i)| (s.to_owned(), i)).collect();
    assert_eq!(got, want);
    assert!(rib.memory_bytes() > 0);
    assert!(format!("{rib:?}").contains("prefixes: 8"));
}

#[test]
fn bulk_lookup_handles_any_length() {
    let table = build(&[
        ("::/0", 1),
        ("2001:db8::/32", 2),
        ("2001:db8:1::/48", 3),
        ("2001:db8:1::80/121", 4),
    ]);
    let base = a("2001:db8:1::").to_bits();
    // Addresses that stop at each level: the slot, the direct level, the nodes.
    let addrs: Vec<u128> = (0..100u128)
        .map(|i| match i % 4 {
            0 => base + i * 3,
            1 => base + (i << 64),
            2 => base ^ (i << 100),
            _ => i << 120,
        })
        .collect();
    for n in [0, 1, 31, 32, 33, 64, 100] {
        let mut out = vec![NextHop::MAX; n];
        table.lookup_bulk(&addrs[..n], &mut out);
        let single: Vec<NextHop> = addrs[..n].iter().map(|&x| table.lookup_u128(x)).collect();
        assert_eq!(out, single);
    }
    // Mismatched lengths: only the common part is looked up, nothing panics.
    let mut short = [NextHop::MAX; 5];
    table.lookup_bulk(&addrs, &mut short);
    assert_eq!(short[4], table.lookup_u128(addrs[4]));
    let mut long = [NextHop::MAX; 40];
    table.lookup_bulk(&addrs[..3], &mut long);
    assert_eq!(long[2], table.lookup_u128(addrs[2]));
    assert_eq!(long[3], NextHop::MAX);
}

/// A /16 with more than [`WIDE_MIN_RULES`] rules gets the wide direct level (one entry per
/// /30); removing rules until it has fewer makes it narrow again. Both answer as the
/// reference does, old tables included.
#[test]
fn wide_subtrees_match_the_reference() {
    let mut rng = SmallRng::seed_from_u64(0x51de);
    let mut rib = Ipv6LpmBuilder::new();
    let mut reference = ByLen::new();
    let base = a("2a02::").to_bits();
    let mut rules = vec![p("2a00::/12"), p("2a02:1::/32")];
    while rules.len() < WIDE_MIN_RULES + 500 {
        // Nested by construction: a random prefix in 2a02::/16, or one inside a rule.
        let len = match rng.gen_range(0..10) {
            0..=1 => rng.gen_range(17..=32),
            2..=6 => rng.gen_range(33..=48),
            7..=8 => rng.gen_range(49..=64),
            _ => rng.gen_range(65..=128),
        };
        let addr = if rng.gen_bool(0.5) {
            base | (rng.gen::<u128>() >> 16)
        } else {
            let r = rules[rng.gen_range(0..rules.len())];
            r.bits() | (rng.gen::<u128>() & !r.mask())
        };
        rules.push(Ipv6Prefix::from_bits(addr, len).unwrap());
    }
    for (i, &r) in rules.iter().enumerate() {
        let next = nh(i as u32 % 97);
        assert_eq!(rib.insert(r, next), reference.insert(r, next));
    }
    let wide = rib.publish();
    assert_eq!(wide.stats().wide, 1, "{:?}", wide.stats());
    assert!(wide.stats().nodes > 0 && wide.stats().records > 0);
    let addrs = probe_addrs(&rules, 2000, &mut rng);
    check(&wide, &addrs, |x| reference.lookup(x));
    let mut before = vec![NextHop::NONE; addrs.len()];
    wide.lookup_bulk(&addrs, &mut before);

    let mut narrow_reference = ByLen::new();
    for (i, &r) in rules.iter().enumerate() {
        narrow_reference.insert(r, nh(i as u32 % 97));
    }
    for &r in &rules[2..1002] {
        rib.remove(r);
        narrow_reference.remove(r);
    }
    let narrow = rib.publish();
    assert_eq!(narrow.stats().wide, 0, "{:?}", narrow.stats());
    check(&narrow, &addrs, |x| narrow_reference.lookup(x));
    // The wide table still answers as it did.
    let mut after = vec![NextHop::NONE; addrs.len()];
    wide.lookup_bulk(&addrs, &mut after);
    assert_eq!(before, after);
}

/// The only rule under a direct entry or a node becomes a record: the rule's addresses get
/// its next hop, the others the covering one, on both sides of it and at its edges.
#[test]
fn lone_long_prefixes_are_records() {
    let table = build(&[
        ("2001:db8::/32", 1),
        ("2001:db8:aaaa:bbbb:cccc::/80", 2),
        ("2001:db8:aaaa:bbbb:cccc::1/128", 3),
        ("2001:db8:1234::/48", 4),
        ("2001:dc0::/64", 5),
    ]);
    let stats = table.stats();
    // 2001:db8:aaaa:bbbb:cccc:: holds two rules (a node at the direct level's position,
    // then more below); 2001:db8:1234::/48 and 2001:dc0::/64 are alone under theirs.
    assert!(stats.records >= 2, "{stats:?}");
    for (addr, want) in [
        ("2001:db8:aaaa:bbbb:cccc::", Some(2)),
        ("2001:db8:aaaa:bbbb:cccc::1", Some(3)),
        ("2001:db8:aaaa:bbbb:cccc::2", Some(2)),
        ("2001:db8:aaaa:bbbb:cccc:ffff:ffff:ffff", Some(2)),
        ("2001:db8:aaaa:bbbb:cccb:ffff:ffff:ffff", Some(1)),
        ("2001:db8:aaaa:bbbb:cccd::", Some(1)),
        ("2001:db8:1234::", Some(4)),
        ("2001:db8:1234:ffff:ffff:ffff:ffff:ffff", Some(4)),
        ("2001:db8:1233:ffff:ffff:ffff:ffff:ffff", Some(1)),
        ("2001:db8:1235::", Some(1)),
        ("2001:dc0::", Some(5)),
        ("2001:dc0::ffff:ffff:ffff:ffff", Some(5)),
        ("2001:dc0:0:1::", None),
        ("2001:dbf:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ] {
        assert_eq!(table.lookup(a(addr)), want.map(nh), "{addr}");
    }
    // The same through the bulk lookup, in one burst with lookups that stop earlier.
    let addrs: Vec<u128> = [
        "2001:db8:aaaa:bbbb:cccc::1",
        "2001:db8::",
        "3000::",
        "2001:dc0::",
        "2001:db8:1235::",
        "2001:db8:aaaa:bbbb:cccc::2",
    ]
    .iter()
    .map(|s| a(s).to_bits())
    .collect();
    let mut out = vec![NextHop::MAX; addrs.len()];
    table.lookup_bulk(&addrs, &mut out);
    let want: Vec<NextHop> = [3, 1, u32::MAX, 5, 1, 2]
        .iter()
        .map(|&i| NextHop::new(i).unwrap_or(NextHop::NONE))
        .collect();
    assert_eq!(out, want);
}

/// A random prefix length: every length can come up, the boundaries of the table's
/// levels (16, 24, then every 6 bits) and real tables' favourites more often.
fn random_len(rng: &mut SmallRng) -> u8 {
    match rng.gen_range(0..24) {
        0 => 0,
        1 => 128,
        2 => rng.gen_range(1..=16),
        3..=5 => *[15u8, 16, 17, 23, 24, 25, 29, 30, 31, 35, 36, 37, 127]
            .get(rng.gen_range(0..13))
            .unwrap(),
        6..=15 => rng.gen_range(17..=48),
        16..=19 => rng.gen_range(49..=64),
        _ => rng.gen_range(65..=128),
    }
}

/// Random prefixes with nesting and overlap: a new prefix is either random (in 2000::/3,
/// or anywhere), or a shorter or longer prefix around an existing one.
fn random_prefix(rng: &mut SmallRng, existing: &[Ipv6Prefix]) -> Ipv6Prefix {
    let len = random_len(rng);
    let addr = if existing.is_empty() || rng.gen_bool(0.3) {
        let x = rng.gen::<u128>();
        if rng.gen_bool(0.5) {
            x
        } else {
            (x >> 3) | (1 << 125)
        }
    } else {
        let base = existing[rng.gen_range(0..existing.len())];
        base.bits() | (rng.gen::<u128>() & !base.mask())
    };
    Ipv6Prefix::from_bits(addr, len).unwrap()
}

/// Batches of random inserts and removes, a table published after each: every table,
/// old or new, must keep answering as the reference did when it was published.
#[test]
fn random_batches_match_the_reference_and_old_tables_stay_valid() {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0006);
    test_support::random_batches::<V6>(&mut rng, 100, random_prefix, probe_addrs);
}

/// An old table stays as it was while its builder empties and refills the rule set.
#[test]
fn snapshot_is_isolated_from_later_updates() {
    let mut rng = SmallRng::seed_from_u64(61);
    let mut rib = Ipv6LpmBuilder::new();
    let mut reference = Naive::default();
    let mut rules = Vec::new();
    for _ in 0..300 {
        let prefix = random_prefix(&mut rng, &rules);
        let next = nh(rng.gen_range(0..50));
        rib.insert(prefix, next);
        reference.0.insert(prefix, next);
        rules.push(prefix);
    }
    let old = rib.publish();
    let addrs = probe_addrs(&rules, 500, &mut rng);
    let mut before = vec![NextHop::NONE; addrs.len()];
    old.lookup_bulk(&addrs, &mut before);
    check(&old, &addrs, |x| reference.lookup(x));

    // Remove everything, publish, then insert other next hops for the same prefixes and
    // more, publishing on the way.
    for &prefix in &rules {
        rib.remove(prefix);
    }
    let empty = rib.publish();
    assert!(empty.is_empty());
    check(&empty, &addrs, |_| NextHop::NONE);
    for &prefix in &rules {
        rib.insert(prefix, nh(1000));
    }
    let _mid = rib.publish();
    for _ in 0..300 {
        let prefix = random_prefix(&mut rng, &rules);
        rib.insert(prefix, nh(2000));
    }
    let _new = rib.publish();

    let mut after = vec![NextHop::NONE; addrs.len()];
    old.lookup_bulk(&addrs, &mut after);
    assert_eq!(before, after);
    check(&old, &addrs, |x| reference.lookup(x));
}

fn prefix_strategy() -> impl Strategy<Value = Ipv6Prefix> {
    // Addresses near a few bases, so prefixes nest and overlap.
    let bases = vec![
        0,
        0x2001_0db8_0000_0000_0000_0000_0000_0000u128,
        0x2001_0db8_0001_0002_0000_0000_0000_0003,
        0x2001_0db8_0001_0002_8000_0000_0000_0000,
        0x2a02_0000_ffff_0000_0000_0000_0000_00ff,
        u128::MAX,
    ];
    // A change to a short prefix (the default route above all) touches every /16 under
    // it: the costliest case, so kept to a fifth of the prefixes.
    let lens = prop_oneof![
        1 => Just(0u8),
        1 => Just(128u8),
        3 => 0..=128u8,
        3 => prop::sample::select(vec![
            1u8, 15, 16, 17, 23, 24, 25, 29, 30, 31, 32, 35, 36, 37, 47, 48, 49, 63, 64, 65, 119,
            120, 121, 125, 126, 127
        ]),
    ];
    (prop::sample::select(bases), any::<u128>(), 0..=128u32, lens).prop_map(
        |(base, noise, spread, len)| {
            let addr = base ^ noise.checked_shr(spread).unwrap_or(0);
            Ipv6Prefix::from_bits(addr, len).unwrap()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Keep regressions beside this file (`tests.proptest-regressions`).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_naive_reference(
        ops in prop::collection::vec(test_support::op_strategy(prefix_strategy), 1..120),
        uniform in prop::collection::vec(any::<u128>(), 16),
        seed in any::<u64>(),
    ) {
        let mut rng = SmallRng::seed_from_u64(seed);
        test_support::run_ops::<V6>(&ops, &uniform, &mut rng, probe_addrs, None)?;
    }
}

/// Per mille of each prefix length in the real table (prefixes-v6.txt.gz), lengths with
/// fewer than 0.5 per mille folded into their neighbours; what is left over goes to
/// lengths 65..=128, drawn uniformly.
const MIX: [(u8, u32); 27] = [
    (24, 1),
    (28, 1),
    (29, 62),
    (30, 6),
    (31, 9),
    (32, 169),
    (33, 11),
    (34, 13),
    (35, 15),
    (36, 29),
    (37, 16),
    (38, 20),
    (39, 22),
    (40, 48),
    (41, 22),
    (42, 26),
    (43, 30),
    (44, 59),
    (45, 30),
    (46, 38),
    (47, 57),
    (48, 246),
    (52, 13),
    (56, 14),
    (60, 21),
    (64, 10),
    (128, 13),
];

/// `count` random prefixes in 2000::/3 with the real-world length mix (mostly /29 to
/// /48), random next hops below 1000.
fn random_table(count: usize, rng: &mut SmallRng) -> Vec<(Ipv6Prefix, NextHop)> {
    let total: u32 = MIX.iter().map(|&(_, w)| w).sum();
    (0..count)
        .map(|_| {
            let mut pick = rng.gen_range(0..total);
            let mut len = 48;
            for &(l, w) in &MIX {
                if pick < w {
                    len = l;
                    break;
                }
                pick -= w;
            }
            if len == 128 {
                len = rng.gen_range(65..=128);
            }
            let addr = (rng.gen::<u128>() >> 3) | (1 << 125);
            let prefix = Ipv6Prefix::from_bits(addr, len).unwrap();
            (prefix, nh(rng.gen_range(0..1000)))
        })
        .collect()
}

/// After one change in a big table, the new table shares all but a few chunks with the
/// old one: the copy-on-write copies the root, one block and one subtree.
#[test]
fn one_update_copies_only_a_few_chunks() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut rib: Ipv6LpmBuilder = random_table(20_000, &mut rng).into_iter().collect();
    let old = rib.publish();
    let chunks = old.stats().chunks;
    assert!(chunks > 5_000, "{:?}", old.stats());
    let mut probes: Vec<Ipv6Prefix> = rib.iter().map(|(p, _)| p).step_by(10).collect();
    probes.extend([p("2001:db8::/32"), p("2001:db8:1::/48")]);
    let addrs = probe_addrs(&probes, 2000, &mut rng);
    let mut before = vec![NextHop::NONE; addrs.len()];
    old.lookup_bulk(&addrs, &mut before);

    // A /48 inside an existing subtree: root, one block, one subtree copied.
    let prefix = p("2001:db8:1::/48");
    rib.insert(prefix, nh(4242));
    let new = rib.publish();
    assert_eq!(new.lookup(a("2001:db8:1::3")), Some(nh(4242)));
    assert_ne!(old.lookup(a("2001:db8:1::3")), Some(nh(4242)));
    let shared = new.shared_chunks(&old);
    assert!(shared >= chunks - 3, "{shared} of {chunks} shared");

    // Removing it again: the same.
    rib.remove(prefix);
    let newer = rib.publish();
    assert!(newer.shared_chunks(&new) >= new.stats().chunks - 3);

    // A /128 in a /16 without a subtree (in a block that has some) makes one new subtree.
    let x = (0x2000..=0x3fffu16)
        .find(|&x| {
            newer.root.blocks[usize::from(x >> 8)].slots[usize::from(x & 0xff)]
                .sub
                .is_none()
        })
        .unwrap();
    rib.insert(
        Ipv6Prefix::host(Ipv6Addr::from_bits(u128::from(x) << 112)),
        nh(1),
    );
    let with_host = rib.publish();
    assert_eq!(with_host.shared_chunks(&newer), newer.stats().chunks - 2);
    assert_eq!(with_host.stats().subtrees, newer.stats().subtrees + 1);

    // A /8 copies at most the root, its block and the subtrees under it.
    rib.insert(p("2000::/8"), nh(4343));
    let with_8 = rib.publish();
    let under_8 = with_host.root.blocks[0x20]
        .slots
        .iter()
        .filter(|s| s.sub.is_some())
        .count();
    assert!(with_8.shared_chunks(&with_host) >= with_host.stats().chunks - 2 - under_8);

    // The first table still answers as it did, and so does the one with the same rules.
    for (&addr, &want) in addrs.iter().zip(&before) {
        assert_eq!(old.lookup_u128(addr), want);
        assert_eq!(newer.lookup_u128(addr), want);
        if prefix.contains_bits(addr) {
            assert_eq!(new.lookup_u128(addr), nh(4242));
        }
    }
}

const REAL_TABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/prefixes-v6.txt.gz"
);

#[test]
fn real_world_table_matches_the_reference() {
    let Some(rules) = test_support::load_table(REAL_TABLE) else {
        return;
    };
    assert_eq!(rules.len(), 167_903);
    let mut rules = test_support::number_by_asn(&rules);
    // The table has no nesting; add covering aggregates (every /20 and /32 that holds a
    // longer prefix of the table, every third one) and a default route.
    rules.push((p("::/0"), nh(900_000)));
    let mut aggregates = std::collections::HashSet::new();
    for (i, &(prefix, _)) in rules.clone().iter().enumerate() {
        for len in [20u8, 32] {
            if prefix.prefix_len() > len && i % 3 == 0 {
                let agg = Ipv6Prefix::from_bits(prefix.bits(), len).unwrap();
                if aggregates.insert(agg) {
                    rules.push((agg, nh(900_001 + aggregates.len() as u32)));
                }
            }
        }
    }
    let mut rng = SmallRng::seed_from_u64(42);
    test_support::check_big_table::<V6>(&rules, 3000, 1000, &mut rng, probe_addrs);
}

/// Prints build time, memory and lookup speed for the real-world table and for 1M random
/// prefixes. Run in release:
/// `cargo test --release -p dataplane --no-default-features --lib lpm::ipv6::tests::measure -- --ignored --nocapture`
#[test]
#[ignore = "prints measurements; run in release"]
fn measure() {
    use std::hint::black_box;
    use std::time::Instant;

    let mut rng = SmallRng::seed_from_u64(1);
    let mut tables: Vec<(&str, Vec<(Ipv6Prefix, NextHop)>)> = Vec::new();
    if let Some(rules) = test_support::load_table(REAL_TABLE) {
        tables.push(("real-world 167,903", test_support::number_by_asn(&rules)));
    }
    let mut seen = std::collections::HashSet::new();
    let mut random = random_table(1_050_000, &mut rng);
    random.retain(|(p, _)| seen.insert(*p));
    random.truncate(1_000_000);
    tables.push(("random 1M", random));
    for (name, rules) in &tables {
        let mut best = f64::MAX;
        let mut rib = Ipv6LpmBuilder::new();
        let mut table = Ipv6Lpm::new();
        for _ in 0..3 {
            let start = Instant::now();
            rib = rules.iter().copied().collect();
            let inserted = start.elapsed();
            table = rib.publish();
            let built = start.elapsed();
            best = best.min(built.as_secs_f64());
            println!(
                "build: {:.1} ms (insert {:.1} ms, publish {:.1} ms)",
                built.as_secs_f64() * 1e3,
                inserted.as_secs_f64() * 1e3,
                (built - inserted).as_secs_f64() * 1e3
            );
        }
        let stats = table.stats();
        println!(
            "== {name}: {} distinct prefixes, best build {:.1} ms",
            table.len(),
            best * 1e3
        );
        println!(
            "table: {:.1} MiB ({:.1} bytes/prefix), {stats:?}; rules: {:.1} MiB",
            stats.memory_bytes as f64 / (1 << 20) as f64,
            stats.memory_bytes as f64 / table.len() as f64,
            rib.memory_bytes() as f64 / (1 << 20) as f64,
        );

        // Update costs.
        let start = Instant::now();
        rib.insert(p("2001:db8:1::/48"), nh(7));
        let one = rib.publish();
        let one_t = start.elapsed();
        let batch = random_table(1000, &mut rng);
        let start = Instant::now();
        rib.extend(batch.iter().copied());
        let thousand = rib.publish();
        let batch_t = start.elapsed();
        println!(
            "update: one /48 in 2001::/16 {:.1} us ({} chunks copied), 1000 random {:.2} ms ({} chunks copied)",
            one_t.as_secs_f64() * 1e6,
            one.stats().chunks - one.shared_chunks(&table),
            batch_t.as_secs_f64() * 1e3,
            thousand.stats().chunks - thousand.shared_chunks(&one),
        );
        drop((one, thousand));

        const N: usize = 1 << 22;
        let inside: Vec<u128> = (0..N)
            .map(|_| {
                let (p, _) = rules[rng.gen_range(0..rules.len())];
                p.bits() | (rng.gen::<u128>() & !p.mask())
            })
            .collect();
        let mut best = [f64::MAX; 2];
        for _ in 0..5 {
            let mut out = [NextHop::NONE; BURST];
            let runs: [&mut dyn FnMut(); 2] = [
                &mut || {
                    let mut sum = 0u32;
                    for &addr in inside.iter() {
                        sum = sum.wrapping_add(table.lookup_u128(black_box(addr)).index());
                    }
                    black_box(sum);
                },
                &mut || {
                    for burst in inside.chunks_exact(BURST) {
                        table.lookup_bulk(black_box(burst), &mut out);
                        black_box(&out);
                    }
                },
            ];
            for (run, best) in runs.into_iter().zip(best.iter_mut()) {
                let start = Instant::now();
                run();
                *best = best.min(start.elapsed().as_secs_f64() * 1e9 / N as f64);
            }
        }
        let [single, bulk] = best;
        println!("lookup in-prefix: single {single:.2} ns, bulk of {BURST} {bulk:.2} ns");
    }
}
