//! What the IPv4 and IPv6 table tests share: the two references (a linear scan,
//! [`Naive`], and one hash map per prefix length, [`ByLen`]), the lookup check, the
//! random-batch and operation-sequence drivers, and the loader of real tables. A family
//! plugs in through [`Family`]; the tests themselves, with their addresses, stay with
//! each table.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::io::BufRead;
use std::net::IpAddr;
use std::ops::BitAnd;
use std::str::FromStr;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::Rng;

use super::{Ipv4Lpm, Ipv4LpmBuilder, Ipv4Prefix, Ipv6Lpm, Ipv6LpmBuilder, Ipv6Prefix, NextHop};

pub(super) fn nh(i: u32) -> NextHop {
    NextHop::new(i).unwrap()
}

/// One address family's table, builder and prefix, as the shared tests use them.
pub(super) trait Family {
    /// An address as an integer, in host order.
    type Bits: Copy + Eq + Hash + Debug + BitAnd<Output = Self::Bits>;
    type Prefix: Copy + Ord + Hash + Debug;
    type Table;
    type Builder: Default;
    /// The longest prefix length.
    const MAX_LEN: u8;

    fn prefix_len(p: Self::Prefix) -> u8;
    fn bits(p: Self::Prefix) -> Self::Bits;
    fn mask(len: u8) -> Self::Bits;
    fn addr(bits: Self::Bits) -> IpAddr;

    fn lookup_bits(table: &Self::Table, addr: Self::Bits) -> NextHop;
    fn lookup_addr(table: &Self::Table, addr: Self::Bits) -> Option<NextHop>;
    fn lookup_bulk(table: &Self::Table, addrs: &[Self::Bits], out: &mut [NextHop]);
    fn table_len(table: &Self::Table) -> usize;

    fn insert(rib: &mut Self::Builder, p: Self::Prefix, nh: NextHop) -> Option<NextHop>;
    fn remove(rib: &mut Self::Builder, p: Self::Prefix) -> Option<NextHop>;
    fn publish(rib: &mut Self::Builder) -> Self::Table;
    fn builder_len(rib: &Self::Builder) -> usize;
    /// Checks a table published while readers held at most two older ones.
    fn check_unheld(_table: &Self::Table) {}
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct V4;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct V6;

impl Family for V4 {
    type Bits = u32;
    type Prefix = Ipv4Prefix;
    type Table = Ipv4Lpm;
    type Builder = Ipv4LpmBuilder;
    const MAX_LEN: u8 = 32;

    fn prefix_len(p: Ipv4Prefix) -> u8 {
        p.prefix_len()
    }
    fn bits(p: Ipv4Prefix) -> u32 {
        p.bits()
    }
    fn mask(len: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }
    fn addr(bits: u32) -> IpAddr {
        std::net::Ipv4Addr::from_bits(bits).into()
    }
    fn lookup_bits(table: &Ipv4Lpm, addr: u32) -> NextHop {
        table.lookup_u32(addr)
    }
    fn lookup_addr(table: &Ipv4Lpm, addr: u32) -> Option<NextHop> {
        table.lookup(std::net::Ipv4Addr::from_bits(addr))
    }
    fn lookup_bulk(table: &Ipv4Lpm, addrs: &[u32], out: &mut [NextHop]) {
        table.lookup_bulk(addrs, out);
    }
    fn table_len(table: &Ipv4Lpm) -> usize {
        table.len()
    }
    fn insert(rib: &mut Ipv4LpmBuilder, p: Ipv4Prefix, nh: NextHop) -> Option<NextHop> {
        rib.insert(p, nh)
    }
    fn remove(rib: &mut Ipv4LpmBuilder, p: Ipv4Prefix) -> Option<NextHop> {
        rib.remove(p)
    }
    fn publish(rib: &mut Ipv4LpmBuilder) -> Ipv4Lpm {
        rib.publish()
    }
    fn builder_len(rib: &Ipv4LpmBuilder) -> usize {
        rib.len()
    }
}

/// IPv4 with the flat form from the first rule on (the default keeps small tables in
/// the trie alone). Where readers hold every flat table the builder keeps, as the tests
/// that keep all their tables do, lookups read the trie.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct V4Flat;

/// A builder whose tables always have the flat form.
pub(super) struct FlatBuilder(Ipv4LpmBuilder);

impl Default for FlatBuilder {
    fn default() -> Self {
        let mut b = Ipv4LpmBuilder::new();
        b.set_flat_min_prefixes(0);
        FlatBuilder(b)
    }
}

impl Family for V4Flat {
    type Bits = u32;
    type Prefix = Ipv4Prefix;
    type Table = Ipv4Lpm;
    type Builder = FlatBuilder;
    const MAX_LEN: u8 = 32;

    fn prefix_len(p: Ipv4Prefix) -> u8 {
        V4::prefix_len(p)
    }
    fn bits(p: Ipv4Prefix) -> u32 {
        V4::bits(p)
    }
    fn mask(len: u8) -> u32 {
        V4::mask(len)
    }
    fn addr(bits: u32) -> IpAddr {
        V4::addr(bits)
    }
    fn lookup_bits(table: &Ipv4Lpm, addr: u32) -> NextHop {
        V4::lookup_bits(table, addr)
    }
    fn lookup_addr(table: &Ipv4Lpm, addr: u32) -> Option<NextHop> {
        V4::lookup_addr(table, addr)
    }
    fn lookup_bulk(table: &Ipv4Lpm, addrs: &[u32], out: &mut [NextHop]) {
        V4::lookup_bulk(table, addrs, out)
    }
    fn table_len(table: &Ipv4Lpm) -> usize {
        V4::table_len(table)
    }
    fn insert(rib: &mut FlatBuilder, p: Ipv4Prefix, nh: NextHop) -> Option<NextHop> {
        rib.0.insert(p, nh)
    }
    fn remove(rib: &mut FlatBuilder, p: Ipv4Prefix) -> Option<NextHop> {
        rib.0.remove(p)
    }
    fn publish(rib: &mut FlatBuilder) -> Ipv4Lpm {
        rib.0.publish()
    }
    fn builder_len(rib: &FlatBuilder) -> usize {
        rib.0.len()
    }
    fn check_unheld(table: &Ipv4Lpm) {
        assert!(
            table.is_flat(),
            "with a kept flat table free, lookups read the flat form"
        );
        // One flat group per /24 with prefixes longer than /24, none leaked: the trie's
        // groups are those /24s' and one per subtree.
        let stats = table.stats();
        assert_eq!(
            stats.flat_groups,
            stats.groups - stats.subtrees,
            "{stats:?}"
        );
    }
}

impl Family for V6 {
    type Bits = u128;
    type Prefix = Ipv6Prefix;
    type Table = Ipv6Lpm;
    type Builder = Ipv6LpmBuilder;
    const MAX_LEN: u8 = 128;

    fn prefix_len(p: Ipv6Prefix) -> u8 {
        p.prefix_len()
    }
    fn bits(p: Ipv6Prefix) -> u128 {
        p.bits()
    }
    fn mask(len: u8) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
    fn addr(bits: u128) -> IpAddr {
        std::net::Ipv6Addr::from_bits(bits).into()
    }
    fn lookup_bits(table: &Ipv6Lpm, addr: u128) -> NextHop {
        table.lookup_u128(addr)
    }
    fn lookup_addr(table: &Ipv6Lpm, addr: u128) -> Option<NextHop> {
        table.lookup(std::net::Ipv6Addr::from_bits(addr))
    }
    fn lookup_bulk(table: &Ipv6Lpm, addrs: &[u128], out: &mut [NextHop]) {
        table.lookup_bulk(addrs, out);
    }
    fn table_len(table: &Ipv6Lpm) -> usize {
        table.len()
    }
    fn insert(rib: &mut Ipv6LpmBuilder, p: Ipv6Prefix, nh: NextHop) -> Option<NextHop> {
        rib.insert(p, nh)
    }
    fn remove(rib: &mut Ipv6LpmBuilder, p: Ipv6Prefix) -> Option<NextHop> {
        rib.remove(p)
    }
    fn publish(rib: &mut Ipv6LpmBuilder) -> Ipv6Lpm {
        rib.publish()
    }
    fn builder_len(rib: &Ipv6LpmBuilder) -> usize {
        rib.len()
    }
}

/// Longest match by scanning every rule.
#[derive(Clone, Debug)]
pub(super) struct Naive<F: Family>(pub(super) BTreeMap<F::Prefix, NextHop>);

impl<F: Family> Default for Naive<F> {
    fn default() -> Self {
        Naive(BTreeMap::new())
    }
}

impl<F: Family> Naive<F> {
    pub(super) fn lookup(&self, addr: F::Bits) -> NextHop {
        self.0
            .iter()
            .filter(|(&p, _)| addr & F::mask(F::prefix_len(p)) == F::bits(p))
            .max_by_key(|(&p, _)| F::prefix_len(p))
            .map_or(NextHop::NONE, |(_, &nh)| nh)
    }
}

/// Longest match by probing one hash map per length, longest first.
pub(super) struct ByLen<F: Family>(Vec<HashMap<F::Bits, NextHop>>);

impl<F: Family> ByLen<F> {
    pub(super) fn new() -> Self {
        ByLen(vec![HashMap::new(); usize::from(F::MAX_LEN) + 1])
    }

    pub(super) fn insert(&mut self, p: F::Prefix, nh: NextHop) -> Option<NextHop> {
        self.0[usize::from(F::prefix_len(p))].insert(F::bits(p), nh)
    }

    pub(super) fn remove(&mut self, p: F::Prefix) -> Option<NextHop> {
        self.0[usize::from(F::prefix_len(p))].remove(&F::bits(p))
    }

    pub(super) fn len(&self) -> usize {
        self.0.iter().map(HashMap::len).sum()
    }

    pub(super) fn lookup(&self, addr: F::Bits) -> NextHop {
        (0..=F::MAX_LEN)
            .rev()
            .filter(|&len| !self.0[usize::from(len)].is_empty())
            .find_map(|len| {
                self.0[usize::from(len)]
                    .get(&(addr & F::mask(len)))
                    .copied()
            })
            .unwrap_or(NextHop::NONE)
    }
}

/// Checks single and bulk lookups of `table` against `reference` on `addrs`.
pub(super) fn check<F: Family>(
    table: &F::Table,
    addrs: &[F::Bits],
    reference: impl Fn(F::Bits) -> NextHop,
) {
    let mut bulk = vec![NextHop(12345); addrs.len()];
    F::lookup_bulk(table, addrs, &mut bulk);
    for (&addr, &got_bulk) in addrs.iter().zip(&bulk) {
        let want = reference(addr);
        let got = F::lookup_bits(table, addr);
        assert_eq!(got, want, "lookup of {}", F::addr(addr));
        assert_eq!(got_bulk, want, "bulk lookup of {}", F::addr(addr));
        assert_eq!(F::lookup_addr(table, addr), want.to_option());
    }
}

/// Checks `table` against `reference` on the addresses `probe` picks around its rules.
pub(super) fn check_naive<F: Family>(
    table: &F::Table,
    reference: &Naive<F>,
    rng: &mut SmallRng,
    probe: impl Fn(&[F::Prefix], usize, &mut SmallRng) -> Vec<F::Bits>,
) {
    let rules: Vec<F::Prefix> = reference.0.keys().copied().collect();
    let addrs = probe(&rules, 64, rng);
    check::<F>(table, &addrs, |addr| reference.lookup(addr));
    assert_eq!(F::table_len(table), reference.0.len());
}

/// Batches of random inserts and removes (up to `max_ops` each), a table published
/// after each: every table, old or new, must keep answering as the reference did when
/// it was published.
pub(super) fn random_batches<F: Family + Clone>(
    rng: &mut SmallRng,
    max_ops: u32,
    random_prefix: impl Fn(&mut SmallRng, &[F::Prefix]) -> F::Prefix,
    probe: impl Fn(&[F::Prefix], usize, &mut SmallRng) -> Vec<F::Bits> + Copy,
) {
    let mut rib = F::Builder::default();
    let mut reference = Naive::<F>::default();
    let mut published: Vec<(F::Table, Naive<F>)> = Vec::new();
    for batch in 0..12 {
        for _ in 0..rng.gen_range(1..max_ops) {
            let rules: Vec<F::Prefix> = reference.0.keys().copied().collect();
            if rng.gen_bool(0.3) && !rules.is_empty() {
                let victim = rules[rng.gen_range(0..rules.len())];
                assert_eq!(F::remove(&mut rib, victim), reference.0.remove(&victim));
            } else if rng.gen_bool(0.05) {
                let absent = random_prefix(rng, &rules);
                assert_eq!(F::remove(&mut rib, absent), reference.0.remove(&absent));
            } else {
                let prefix = random_prefix(rng, &rules);
                let next = nh(rng.gen_range(0..6));
                assert_eq!(
                    F::insert(&mut rib, prefix, next),
                    reference.0.insert(prefix, next)
                );
            }
        }
        let table = F::publish(&mut rib);
        check_naive::<F>(&table, &reference, rng, probe);
        published.push((table, reference.clone()));
        if batch % 4 == 3 {
            for (old, old_reference) in &published {
                check_naive::<F>(old, old_reference, rng, probe);
            }
        }
    }
}

/// One step of a proptest sequence.
#[derive(Debug, Clone)]
pub(super) enum Op<P> {
    Insert(P, u32),
    Remove(P),
    Publish,
}

/// Inserts, removes and publications, of prefixes from `prefixes()`.
pub(super) fn op_strategy<S>(prefixes: impl Fn() -> S) -> impl Strategy<Value = Op<S::Value>>
where
    S: Strategy + 'static,
    S::Value: Clone,
{
    prop_oneof![
        5 => (prefixes(), 0..4u32).prop_map(|(p, i)| Op::Insert(p, i)),
        3 => prefixes().prop_map(Op::Remove),
        1 => Just(Op::Publish),
    ]
}

/// Applies `ops` to a builder and to the reference alike, publishing at each
/// `Op::Publish` and at the end, then checks every published table against its
/// reference on its rules' neighbourhood and on `uniform`. With `hold` `None`, every
/// table is kept to the end; with `Some(h)`, only the last `h` are (the readers of a
/// running system): each older one is checked and dropped as the next is published, so
/// that the builder may reuse what it held, and each new table is checked with
/// [`Family::check_unheld`] (`h` at most 2).
pub(super) fn run_ops<F: Family + Clone>(
    ops: &[Op<F::Prefix>],
    uniform: &[F::Bits],
    rng: &mut SmallRng,
    probe: impl Fn(&[F::Prefix], usize, &mut SmallRng) -> Vec<F::Bits> + Copy,
    hold: Option<usize>,
) -> Result<(), TestCaseError> {
    let mut rib = F::Builder::default();
    let mut reference = Naive::<F>::default();
    let mut published = Vec::new();
    for op in ops.iter().cloned().chain([Op::Publish]) {
        match op {
            Op::Insert(p, i) => {
                prop_assert_eq!(F::insert(&mut rib, p, nh(i)), reference.0.insert(p, nh(i)));
            }
            Op::Remove(p) => prop_assert_eq!(F::remove(&mut rib, p), reference.0.remove(&p)),
            Op::Publish => {
                let table = F::publish(&mut rib);
                if let Some(hold) = hold {
                    F::check_unheld(&table);
                    published.push((table, reference.clone()));
                    let old = published.len().saturating_sub(hold);
                    for (table, reference) in published.drain(..old) {
                        check_naive::<F>(&table, &reference, rng, probe);
                        check::<F>(&table, uniform, |addr| reference.lookup(addr));
                    }
                } else {
                    published.push((table, reference.clone()));
                }
            }
        }
        prop_assert_eq!(F::builder_len(&rib), reference.0.len());
    }
    for (table, reference) in &published {
        check_naive::<F>(table, reference, rng, probe);
        check::<F>(table, uniform, |addr| reference.lookup(addr));
    }
    Ok(())
}

/// Loads a `PREFIX ASN` table; `None` if the file is absent.
pub(super) fn load_table<P: FromStr>(path: &str) -> Option<Vec<(P, u32)>>
where
    P::Err: Debug,
{
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            println!("skipping: cannot open {path}: {e}");
            return None;
        }
    };
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut rules = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        let (prefix, asn) = line.split_once(' ').unwrap();
        rules.push((prefix.parse().unwrap(), asn.trim().parse().unwrap()));
    }
    Some(rules)
}

/// Next hops: a dense index per ASN, as a snapshot would number its actions.
pub(super) fn number_by_asn<P: Copy>(rules: &[(P, u32)]) -> Vec<(P, NextHop)> {
    let mut index: HashMap<u32, u32> = HashMap::new();
    rules
        .iter()
        .map(|&(p, asn)| {
            let next = index.len() as u32;
            (p, nh(*index.entry(asn).or_insert(next)))
        })
        .collect()
}

/// Loads `rules` into a builder and a [`ByLen`] reference, checks the table on the
/// neighbourhood of `samples` random rules, withdraws the first `withdraw` of them, and
/// checks the new table and that the old one still holds them.
pub(super) fn check_big_table<F: Family>(
    rules: &[(F::Prefix, NextHop)],
    samples: usize,
    withdraw: usize,
    rng: &mut SmallRng,
    probe: impl Fn(&[F::Prefix], usize, &mut SmallRng) -> Vec<F::Bits>,
) {
    let mut rib = F::Builder::default();
    let mut reference = ByLen::<F>::new();
    for &(p, n) in rules {
        F::insert(&mut rib, p, n);
        reference.insert(p, n);
    }
    let table = F::publish(&mut rib);
    assert_eq!(F::table_len(&table), reference.len());

    let sample: Vec<F::Prefix> = (0..samples)
        .map(|_| rules[rng.gen_range(0..rules.len())].0)
        .collect();
    let addrs = probe(&sample, samples, rng);
    check::<F>(&table, &addrs, |addr| reference.lookup(addr));

    // Withdraw a batch, and check old and new.
    for &victim in &sample[..withdraw] {
        assert_eq!(F::remove(&mut rib, victim), reference.remove(victim));
    }
    let after = F::publish(&mut rib);
    check::<F>(&after, &addrs, |addr| reference.lookup(addr));
    for &victim in &sample[..withdraw] {
        assert!(!F::lookup_bits(&table, F::bits(victim)).is_none());
    }
}
