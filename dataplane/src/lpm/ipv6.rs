//! The IPv6 longest-prefix-match table: a copy-on-write index on the first 16 bits; per
//! /16 that holds longer prefixes, a direct level on the next 8 or 14 bits, then a
//! leaf-pushed multibit trie with 6-bit strides, whose lone prefixes are records instead of
//! chains of nodes. Each /16's levels live in one compact array of 32-bit words.
//!
//! # Layout
//!
//! ```text
//! Ipv6Lpm ─► Root: [Arc<Block>; 256]        by the 1st byte (2 KiB: stays in L1 cache)
//!              └► Block: [Slot; 256]         by the 2nd byte (one per /8 in use)
//!                   Slot { sub: Option<Arc<Subtree>>, leaf: u32 }         (one per /16)
//!                                  └► Subtree { bits, words: [u32] }
//!                                      words[..2^bits]  direct level: one entry per /24
//!                                                       (narrow) or per /30 (wide)
//!                                      words[w..w+64]   a node: one entry per 6 bits
//!                                      words[w..w+7]    a record: one rule
//! ```
//!
//! An entry is a next hop, or `CHILD | w` for the node at word `w` of the same subtree, or
//! `CHILD | RECORD | w` for a record. A /16 that no prefix longer than /16 touches has no
//! subtree: its next hop is its slot's `leaf`. Otherwise its subtree holds every prefix of
//! length 17 to 128 inside it, expanded over the covering prefix (leaf-pushed): each level
//! holds, at each position, the next hop of the longest prefix that covers the position
//! and ends at or above the level, unless a longer prefix sits under the position, which
//! then points to a node one level down (or a record).
//!
//! - **Direct level.** A /16 with fewer than 1024 prefixes longer than /16 gets 256
//!   entries (1 KiB, one per /24: "narrow"); one with more gets 16,384 (64 KiB, one per
//!   /30: "wide"), so that its /32s end in the first node level and its /48s, the
//!   commonest length in real tables, in the third. In the Internet table below, 45 /16s
//!   are wide and hold 99% of the prefixes; a random table is all narrow.
//! - **Nodes** take 6 bits each (64 entries, 256 bytes). The last level takes the last 2
//!   bits of the address; the 4 bits after it count as zero.
//! - **Records.** Where a position holds exactly one longer prefix, the position points
//!   to a record (7 words: the prefix, its length, its next hop and the next hop around
//!   it) instead of the chain of nodes that would expand it: a lookup there compares the
//!   address with the prefix and is done. Most prefixes of a table that are not near
//!   others end in one: 42,066 of the Internet table's 167,903 and 971,120 of a random
//!   table's million.
//! - Nodes and records are stored breadth first (all of one depth before the next
//!   depth's), so that the upper levels, which every lookup reads, share cache lines.
//!
//! # Why this shape
//!
//! DPDK's `rte_fib6` (its trie) is a 2^24-entry first level (64 MiB with 4-byte entries)
//! and chains of 256-entry groups, one per byte after it; a change writes in place, and
//! every group it may ever use is allocated up front (with a worst-case reservation per
//! route). Here the first level is split by /16 behind a two-level index, as in the IPv4
//! table, so that publishing a change copies the root, one block and the subtrees it
//! changes; real IPv6 tables use a few dozen /16s (60 in the Internet table), so the
//! index is small and hot. Below it, the design follows where real prefixes are: /29 to
//! /48, mostly /32 and /48, a handful of /16s holding most of them.
//!
//! Measured and left out (all with the bench below, on the same machine):
//!
//! - Poptrie-style nodes (a 64-bit bitmap of child nodes and one of leaf runs per node,
//!   children and leaves counted with `POPCNT`): the smallest table (5.3 MiB for the
//!   Internet table), but each level costs two population counts on top of the load, and
//!   the workspace's x86-64 baseline has no `POPCNT` (so it needs a second copy of the
//!   lookup compiled for it, chosen at run time). Its bulk lookups took 1.2-1.3x the
//!   time of `rte_fib6`'s on the Internet table, these expanded nodes' about 1x.
//! - 8-bit strides (256-entry nodes) after a /32 direct level: one level fewer for a /48,
//!   but 37 MiB for the Internet table and 413 MiB for the random one, builds twice as
//!   slow, lookups no faster: at that size every level is a cache miss anyway.
//! - No records (a chain of nodes for every lone prefix): 2x the memory for the Internet
//!   table and 10x for the random one (809 MiB), builds 1.6-2.5x slower, lookups no
//!   faster.
//!
//! # Lookups
//!
//! [`Ipv6Lpm::lookup_u128`] walks one address down: its slot, its direct entry, then one
//! entry per node until a next hop or a record. Each level is one load and a few
//! instructions, but whether there is a next level is a branch the CPU must guess, and a wrong
//! guess throws away the work it had started on the next lookups.
//!
//! [`Ipv6Lpm::lookup_bulk`] takes a burst of up to [`BURST`] addresses through each level
//! together: first every address's slot and a prefetch of its direct entry, then every
//! direct entry, then three rounds of one node level for every lookup of the burst (the
//! node levels a /48 needs in a wide subtree; a lookup that already has its next hop or a
//! record reads the first word of its subtree instead and keeps what it has, so nothing in
//! a round depends on a guess and the misses of the whole burst overlap), then, one at a
//! time, the few lookups that go deeper, and the records.
//!
//! # Copy-on-write and publication
//!
//! [`Ipv6Lpm`] is immutable, `Send + Sync`, and clones by bumping one reference count.
//! [`Ipv6LpmBuilder`] keeps the rules and the current table. `insert` and `remove` only
//! record the rule (prefixes longer than /16 in a B-tree per /16, in the order the build
//! reads them) and mark the /16s whose lookups it may change; [`publish`] rebuilds each
//! marked /16 from its rules (so a delete restores the covering prefix by construction),
//! compares it with the current one, and writes only those that differ: it copies the
//! root, each block it writes into, and makes a new subtree for each changed /16. Every
//! other chunk is shared with the previous table, which stays valid and unchanged for as
//! long as anyone holds it.
//!
//! A change rebuilds its whole /16. That is cheap for most (a random table's /16 has a
//! hundred prefixes) and costs about a millisecond for the largest of the Internet table
//! (2001::/16, 24,683 prefixes); a change to a prefix of length <= 16 rebuilds every /16
//! it covers where it shows through, as in the IPv4 table.
//!
//! [`publish`]: Ipv6LpmBuilder::publish
//!
//! # Contracts
//!
//! - Lookups ([`Ipv6Lpm::lookup`], [`Ipv6Lpm::lookup_u128`], [`Ipv6Lpm::lookup_bulk`])
//!   never panic, allocate or lock. Addresses are host-order `u128`s
//!   (`u128::from(Ipv6Addr)`). Every index into a subtree is checked (a damaged table, which
//!   the builder never makes, reads as "no route" where it points outside).
//! - The builder's methods cannot fail: prefixes and next hops are validated when they
//!   are made. They panic only if allocation fails. `insert` and `remove` cost
//!   `O(log k)` for a prefix longer than /16, where `k` is the number of such rules in its
//!   /16, and up to `O(2^(17-l))` marking for a prefix of length `l <= 16`.
//! - `publish` costs, per marked /16, its rules plus the direct level and nodes it fills.
//!
//! # Memory and speed
//!
//! `cargo bench -p backbone-benches --bench lpm6_vs_dpdk` builds each table with ours, with
//! DPDK's `rte_fib6` (its trie, 4-byte next hops) and with `rte_lpm6`, checks that the three
//! give every address the same answer, and times them in turns on 65,536 addresses inside
//! the table's prefixes (10th percentile of 60 passes; DPDK's tables on 4 KiB pages, like
//! ours). Two runs on the 2-vCPU Intel Xeon VM this was written on (AVX-512, 2 MiB L2 per
//! core, 260 MiB L3, shared with other work: load average about 3):
//!
//! | table                         | build: ours / rte_fib6 / rte_lpm6 | lookup structure: ours / DPDK |
//! |-------------------------------|-----------------------------------|-------------------------------|
//! | Internet, 167,903 prefixes    | 19 ms / 332-334 ms / 31-36 ms     | 10.4 MiB / 102 MiB            |
//! | the same + 37,829 aggregates  | 32-35 ms / 505-513 ms / 110-133 ms| 12.1 MiB / 102 MiB            |
//! | random 1M (the Internet mix)  | 228-244 ms / 11.4-16.9 s / -      | 77.8 MiB / 2,288 MiB          |
//!
//! | ns per lookup                 | bulk of 32: ours / rte_fib6 / rte_fib6 AVX-512 | single: ours / rte_fib6 |
//! |-------------------------------|------------------------------------------------|-------------------------|
//! | Internet                      | 24.2 / 24.8 / 14.6-15.0                        | 38 / 30                 |
//! | the same + aggregates         | 25.3-25.4 / 24.1 / 13.5-14.1                   | 44 / 29-30              |
//! | random 1M                     | 62-64 / 74-94 / 53-64                          | 98-105 / 107-132        |
//!
//! So: builds 14-74x faster than `rte_fib6`'s (which also allocates and zeroes every group
//! it may use when it is made: 472 MiB for the Internet table, 2.4 GiB for the random one;
//! `rte_lpm6` cannot hold the random table at all, it needs more than its 2^21 groups), a
//! lookup structure 8-30x smaller, and bulk lookups as fast as `rte_fib6`'s scalar ones on
//! the Internet table (0.97-0.98x the time), 5% slower with the aggregates, 16-32% faster
//! on the random table. `rte_fib6`'s AVX-512 lookup (16 lookups per gather, no branches)
//! is 1.6-1.8x faster on the real tables: safe scalar Rust does not match it. One lookup
//! at a time is 1.3-1.5x slower than `rte_fib6`'s (a bulk call of one): its levels are
//! branches the CPU must guess, which the bulk lookup avoids. On this machine DPDK's
//! 100 MiB fit in the L3 cache as ours do, so every level costs both about the same;
//! where they would not (a smaller cache), the smaller table should do better, but that
//! was not measured.
//!
//! The rules beside the table take 8.4 MiB for the Internet table, 40 MiB for the random
//! one. `cargo test --release -p dataplane --no-default-features --lib
//! lpm::ipv6::tests::measure -- --ignored --nocapture` also prints the cost of changes:
//! one /48 in 2001::/16 (the Internet table's largest /16) about 0.9 ms, as it rebuilds
//! that /16; 1,000 random changes 1 ms on the Internet table, 8 ms on the random one.

use core::fmt;
use core::mem::size_of;
use core::net::Ipv6Addr;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Ipv6Prefix, NextHop, BURST};

#[cfg(test)]
mod tests;

/// Top bit of an entry: it points to a node or a record of the same subtree, whose word
/// is in the low 30 bits. Without it, the entry is a next hop.
const CHILD: u32 = 1 << 31;
/// With [`CHILD`]: the entry points to a record, not a node.
const RECORD: u32 = 1 << 30;
/// The word a [`CHILD`] entry points to.
const INDEX: u32 = RECORD - 1;
/// The raw "no route" value.
const NONE: u32 = NextHop::NONE.0;
/// Address bits before the direct level: the slot of the copy-on-write index (a /16).
const SLOT_BITS: u32 = 16;
/// Address bits the direct level of a narrow subtree takes: one entry per /24.
const NARROW_BITS: u32 = 8;
/// Address bits the direct level of a wide subtree takes: one entry per /30, so that a /32
/// ends in the first node level and a /48 in the third.
const WIDE_BITS: u32 = 14;
/// Rules (longer than /16) from which a /16 gets a wide subtree: its 64 KiB direct level
/// then costs about what its rules' nodes do.
const WIDE_MIN_RULES: usize = 1024;
/// Address bits per node.
const STRIDE: u32 = 6;
/// Entries of a node: one per value of the next 6 address bits.
const NODE_ENTRIES: usize = 1 << STRIDE;
/// Node levels below the narrowest direct level: 104 bits in strides of 6, the last node
/// taking the last 2 bits of the address (and 4 bits past its end that are always zero).
const NODE_LEVELS: usize = ((128 - SLOT_BITS - NARROW_BITS).div_ceil(STRIDE)) as usize;
/// Words of a record: the rule's address (4 words, low first), its length, its next hop,
/// and the next hop of the addresses it does not cover.
const RECORD_WORDS: usize = 7;
/// Node levels the bulk lookup takes every lookup of a burst through together, before it
/// finishes the few deeper ones one by one: enough for a /48 in a wide subtree and a /42
/// in a narrow one. The bits they take must be in the first half of the address.
const ROUNDS: usize = 3;
const _: () = assert!(SLOT_BITS + WIDE_BITS + STRIDE * ROUNDS as u32 <= 64);

/// The prefixes longer than /16 of one /16: a direct level of `2^bits` entries (for the
/// address bits after the /16), then the nodes and records, all in one array of words.
///
/// An entry is a next hop, or a [`CHILD`] that points to
/// - a node: [`NODE_ENTRIES`] entries, one per value of the next 6 address bits;
/// - or ([`RECORD`]) a record: the one rule under the entry, for a part of the trie that
///   holds only one rule (so that a lone long prefix costs one small record, not a chain
///   of nodes): a lookup there matches the rule or gets the covering next hop.
#[derive(PartialEq, Eq)]
struct Subtree {
    /// 8 or 14.
    bits: u32,
    /// The direct level, then the nodes and records in breadth-first order: every node
    /// of one depth before the next depth's, so that the upper levels, which every lookup
    /// reads, share cache lines.
    words: Box<[u32]>,
}

impl Subtree {
    /// The word of the direct entry for `addr`, which is inside this subtree's /16.
    #[inline(always)]
    fn entry_at(&self, addr: u128) -> usize {
        // The direct level ends at bit 30 at most: its bits are in the top 64, whose
        // shifts are one instruction each (a 128-bit shift by a variable is a dozen).
        let top = (addr >> 64) as u64;
        ((top >> (64 - SLOT_BITS - self.bits)) as usize) & ((1 << self.bits) - 1)
    }

    /// The address bits after the direct level, at the top.
    #[inline(always)]
    fn rest(&self, addr: u128) -> u128 {
        // A shift by 24 or 30 bits (below 64), made of 64-bit shifts, as in `entry_at`.
        let s = SLOT_BITS + self.bits;
        let (top, low) = ((addr >> 64) as u64, addr as u64);
        let top = top << s | low >> (64 - s);
        u128::from(top) << 64 | u128::from(low << s)
    }

    /// The raw next hop of `addr`, which is inside this subtree's /16.
    #[inline(always)]
    fn lookup(&self, addr: u128) -> u32 {
        let mut e = self.words.get(self.entry_at(addr)).copied().unwrap_or(NONE);
        let mut rest = self.rest(addr);
        for _ in 0..NODE_LEVELS {
            if e & (CHILD | RECORD) != CHILD {
                break;
            }
            e = next(&self.words, e, rest);
            rest <<= STRIDE;
        }
        finish(&self.words, e, addr)
    }

    /// The nodes and the records, counted by walking the trie from the direct level (no
    /// deeper than the last level, as lookups do).
    fn shape(&self) -> (usize, usize) {
        fn walk(words: &[u32], e: u32, levels: usize, shape: &mut (usize, usize)) {
            if e & CHILD == 0 || levels == 0 {
                return;
            }
            if e & RECORD != 0 {
                shape.1 += 1;
                return;
            }
            shape.0 += 1;
            let at = (e & INDEX) as usize;
            for &child in words.get(at..at + NODE_ENTRIES).unwrap_or_default() {
                walk(words, child, levels - 1, shape);
            }
        }
        let mut shape = (0, 0);
        for &e in self.words.get(..1 << self.bits).unwrap_or_default() {
            walk(&self.words, e, NODE_LEVELS, &mut shape);
        }
        shape
    }
}

/// The entry of the node that `e` (a [`CHILD`] entry without [`RECORD`]) points to, for the
/// top 6 bits of `rest`. A damaged table (never one the builder made) reads as "no route"
/// where it points outside.
#[inline(always)]
fn next(words: &[u32], e: u32, rest: u128) -> u32 {
    let at = (e & INDEX) as usize + (rest >> (128 - STRIDE)) as usize;
    words.get(at).copied().unwrap_or(NONE)
}

/// The next hop of a lookup of `addr` that stopped at entry `e`: `e` itself, or what its
/// record says, or (still a node below the last level: only in a damaged table) none.
#[inline(always)]
fn finish(words: &[u32], e: u32, addr: u128) -> u32 {
    match (e & CHILD != 0, e & RECORD != 0) {
        (false, _) => e,
        (true, true) => record(words, e, addr),
        (true, false) => NONE,
    }
}

/// The next hop of `addr` from the record that `e` points to.
#[inline(always)]
fn record(words: &[u32], e: u32, addr: u128) -> u32 {
    let at = (e & INDEX) as usize;
    let Some(r) = words.get(at..at + RECORD_WORDS) else {
        return NONE;
    };
    let key =
        u128::from(r[0]) | u128::from(r[1]) << 32 | u128::from(r[2]) << 64 | u128::from(r[3]) << 96;
    // The rule is 17 to 128 bits long: the shift is 0 to 111.
    let covered = (addr ^ key).checked_shr(128 - r[4].min(128)).unwrap_or(0) == 0;
    if covered {
        r[5]
    } else {
        r[6]
    }
}

/// The /16s that share a first byte.
#[derive(Clone)]
struct Block {
    slots: [Slot; 256],
}

/// One /16. Both fields share a cache line, so the lookup pays one miss for either.
#[derive(Clone)]
struct Slot {
    /// The subtree of a /16 that holds prefixes longer than /16.
    sub: Option<Arc<Subtree>>,
    /// The value of a /16 without a subtree. With a subtree, the /16's covering
    /// (length <= 16) next hop, which the builder uses to skip unchanged /16s.
    leaf: u32,
}

impl Block {
    fn empty() -> Self {
        Block {
            slots: core::array::from_fn(|_| Slot {
                sub: None,
                leaf: NONE,
            }),
        }
    }
}

#[derive(Clone)]
struct Root {
    blocks: [Arc<Block>; 256],
    prefixes: usize,
}

/// An immutable IPv6 longest-prefix-match table. See the [module docs](self).
///
/// Cloning is one reference-count increment. Tables made by one [`Ipv6LpmBuilder`] share
/// the chunks that did not change between them.
#[derive(Clone)]
pub struct Ipv6Lpm {
    root: Arc<Root>,
}

/// The size of a table's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv6LpmStats {
    /// Prefixes in the table.
    pub prefixes: usize,
    /// Distinct blocks (at most 256; an empty table shares one).
    pub blocks: usize,
    /// Subtrees: /16s that hold prefixes longer than /16.
    pub subtrees: usize,
    /// Subtrees with the wide direct level (one entry per /30).
    pub wide: usize,
    /// Nodes in all subtrees (256 bytes each).
    pub nodes: usize,
    /// Records in all subtrees (28 bytes each).
    pub records: usize,
    /// Chunks that copy-on-write shares between tables: root, blocks and subtrees.
    pub chunks: usize,
    /// Approximate heap bytes of the table, counting each shared chunk once.
    pub memory_bytes: usize,
}

/// Heap bytes of an `Arc` allocation beside its value: the two counts.
const ARC_HEADER: usize = 2 * size_of::<usize>();

impl Ipv6Lpm {
    /// An empty table: every lookup misses.
    pub fn new() -> Self {
        let empty = Arc::new(Block::empty());
        Ipv6Lpm {
            root: Arc::new(Root {
                blocks: core::array::from_fn(|_| Arc::clone(&empty)),
                prefixes: 0,
            }),
        }
    }

    #[inline(always)]
    fn slot(&self, addr: u128) -> &Slot {
        let x = (addr >> (128 - SLOT_BITS)) as usize;
        &self.root.blocks[(x >> 8) & 0xff].slots[x & 0xff]
    }

    /// The next hop of the longest prefix that contains `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: Ipv6Addr) -> Option<NextHop> {
        self.lookup_u128(addr.to_bits()).to_option()
    }

    /// The next hop of the longest prefix that contains the host-order address `addr`
    /// (`u128::from(Ipv6Addr)`), or [`NextHop::NONE`].
    #[inline]
    pub fn lookup_u128(&self, addr: u128) -> NextHop {
        let slot = self.slot(addr);
        NextHop(match &slot.sub {
            None => slot.leaf,
            Some(sub) => sub.lookup(addr),
        })
    }

    /// Looks up each host-order address of `addrs` and writes its next hop (or
    /// [`NextHop::NONE`]) at the same position of `out`, [`BURST`] addresses at a time (see
    /// the [module docs](self#lookups)).
    ///
    /// Only the first `min(addrs.len(), out.len())` addresses are looked up; the rest of
    /// `out` is left as it was. Never panics.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u128], out: &mut [NextHop]) {
        for (addrs, out) in addrs.chunks(BURST).zip(out.chunks_mut(BURST)) {
            self.lookup_burst(addrs, out);
        }
    }

    /// The lookups of up to [`BURST`] addresses, in step (see the
    /// [module docs](self#lookups)).
    #[inline(always)]
    fn lookup_burst(&self, addrs: &[u128], out: &mut [NextHop]) {
        let n = addrs.len().min(out.len()).min(BURST);
        let (addrs, out) = (&addrs[..n], &mut out[..n]);
        // Per lookup: its subtree's words (none if its /16 has no subtree), the word of its
        // direct entry, and the address bits after it (at the top).
        let mut words: [&[u32]; BURST] = [&[]; BURST];
        let mut at = [0usize; BURST];
        let mut rest = [0u128; BURST];
        // The slots, and a prefetch of each direct entry, so that their misses overlap.
        for ((((&addr, out), words), at), rest) in addrs
            .iter()
            .zip(out.iter_mut())
            .zip(words.iter_mut())
            .zip(at.iter_mut())
            .zip(rest.iter_mut())
        {
            let slot = self.slot(addr);
            *out = NextHop(slot.leaf);
            if let Some(sub) = &slot.sub {
                *at = sub.entry_at(addr);
                *rest = sub.rest(addr);
                *words = &sub.words;
                if let Some(w) = words.get(*at) {
                    crate::prefetch::prefetch(w);
                }
            }
        }
        // `out` holds each lookup's entry until it is a next hop. A lookup without a
        // subtree keeps its slot's value.
        for ((out, words), &at) in out.iter_mut().zip(&words).zip(&at) {
            if let Some(&e) = words.get(at) {
                *out = NextHop(e);
            }
        }
        // The first node levels, for every lookup of the burst at once: a lookup that has
        // its next hop (or a record) reads the first word of its subtree instead of a
        // node's entry and keeps what it has, so there is no branch to guess.
        // The bits these levels take are all in the first half of the address (a direct
        // level ends at bit 30 at most, and 30 + 3 * 6 <= 64).
        let mut top = [0u64; BURST];
        for (top, &rest) in top.iter_mut().zip(&rest) {
            *top = (rest >> 64) as u64;
        }
        for _ in 0..ROUNDS {
            for ((out, words), top) in out.iter_mut().zip(&words).zip(top.iter_mut()) {
                let e = out.0;
                let down = e & (CHILD | RECORD) == CHILD;
                let at = (e & INDEX) as usize + (*top >> (64 - STRIDE)) as usize;
                let next = words
                    .get(if down { at } else { 0 })
                    .copied()
                    .unwrap_or(NONE);
                out.0 = if down { next } else { e };
                *top <<= STRIDE;
            }
        }
        // The deeper levels, one lookup at a time (few get there), then the records.
        for (((out, words), &rest), &addr) in out.iter_mut().zip(words).zip(&rest).zip(addrs) {
            let (mut e, mut rest) = (out.0, rest << (STRIDE * ROUNDS as u32));
            for _ in ROUNDS..NODE_LEVELS {
                if e & (CHILD | RECORD) != CHILD {
                    break;
                }
                e = next(words, e, rest);
                rest <<= STRIDE;
            }
            *out = NextHop(finish(words, e, addr));
        }
    }

    /// Size of the table's parts.
    pub fn stats(&self) -> Ipv6LpmStats {
        let mut blocks: Vec<*const Block> = self.root.blocks.iter().map(Arc::as_ptr).collect();
        blocks.sort_unstable();
        blocks.dedup();
        let mut stats = Ipv6LpmStats {
            prefixes: self.root.prefixes,
            blocks: blocks.len(),
            memory_bytes: size_of::<Root>()
                + ARC_HEADER
                + blocks.len() * (size_of::<Block>() + ARC_HEADER),
            ..Ipv6LpmStats::default()
        };
        for sub in self.subtrees() {
            let (nodes, records) = sub.shape();
            stats.subtrees += 1;
            stats.wide += usize::from(sub.bits == WIDE_BITS);
            stats.nodes += nodes;
            stats.records += records;
            stats.memory_bytes +=
                size_of::<Subtree>() + ARC_HEADER + sub.words.len() * size_of::<u32>();
        }
        stats.chunks = 1 + stats.blocks + stats.subtrees;
        stats
    }

    /// Approximate heap bytes of the table (see [`Ipv6LpmStats::memory_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        self.stats().memory_bytes
    }

    /// Number of prefixes in the table.
    pub fn len(&self) -> usize {
        self.root.prefixes
    }

    /// Whether the table has no prefixes.
    pub fn is_empty(&self) -> bool {
        self.root.prefixes == 0
    }

    /// How many of this table's chunks (root, blocks, subtrees; see
    /// [`Ipv6LpmStats::chunks`]) are the very same allocation in `other`: the chunks
    /// copy-on-write did not copy between the two.
    pub fn shared_chunks(&self, other: &Ipv6Lpm) -> usize {
        if Arc::ptr_eq(&self.root, &other.root) {
            return self.stats().chunks;
        }
        let mut shared = 0;
        let mut seen: Vec<*const Block> = Vec::new();
        for (mine, theirs) in self.root.blocks.iter().zip(other.root.blocks.iter()) {
            let ptr = Arc::as_ptr(mine);
            // An empty table shares one block among all 256 slots: count it once.
            if seen.contains(&ptr) {
                continue;
            }
            seen.push(ptr);
            if Arc::ptr_eq(mine, theirs) {
                shared += 1;
            }
            for (a, b) in mine.slots.iter().zip(theirs.slots.iter()) {
                if let (Some(a), Some(b)) = (&a.sub, &b.sub) {
                    shared += usize::from(Arc::ptr_eq(a, b));
                }
            }
        }
        shared
    }

    fn subtrees(&self) -> impl Iterator<Item = &Arc<Subtree>> + '_ {
        let mut seen: Vec<*const Block> = Vec::new();
        self.root
            .blocks
            .iter()
            .filter(move |b| {
                let ptr = Arc::as_ptr(b);
                let new = !seen.contains(&ptr);
                seen.push(ptr);
                new
            })
            .flat_map(|b| b.slots.iter().filter_map(|s| s.sub.as_ref()))
    }
}

impl Default for Ipv6Lpm {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Ipv6Lpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv6Lpm")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Slots for prefixes of length 0..=16: `2^l - 1 + (addr >> (128 - l))`.
const SHORT_SLOTS: usize = (1 << 17) - 1;

fn short_slot(bits: u128, len: u8) -> usize {
    let prefix = bits.checked_shr(128 - u32::from(len)).unwrap_or(0);
    (1usize << len) - 1 + prefix as usize
}

/// A set of 2^16 flags, one per /16.
struct Bitmap(Box<[u64; 1024]>);

impl Bitmap {
    fn new() -> Self {
        Bitmap(Box::new([0; 1024]))
    }

    fn set(&mut self, i: u16) {
        self.0[usize::from(i >> 6)] |= 1u64 << (i & 63);
    }

    /// Clears flag `i`; returns whether it was set.
    fn take(&mut self, i: u16) -> bool {
        let (w, b) = (usize::from(i >> 6), 1u64 << (i & 63));
        let was_set = self.0[w] & b != 0;
        self.0[w] &= !b;
        was_set
    }

    /// Clears all flags; returns the ones that were set, in increasing order.
    fn drain(&mut self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter_mut().enumerate().flat_map(|(w, word)| {
            let mut bits = core::mem::take(word);
            core::iter::from_fn(move || {
                let b = bits.trailing_zeros();
                bits &= bits.wrapping_sub(1);
                (b < 64).then(|| (w as u32 * 64 + b) as u16)
            })
        })
    }

    fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

/// A rule longer than /16, as the subtree build reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    /// The network address.
    bits: u128,
    /// 17..=128.
    len: u8,
    /// Raw next hop.
    nh: u32,
}

/// The key of a rule longer than /16 in its /16's map: the address bits after the /16 at
/// the top, the length in the low bits (which a prefix longer than /16 leaves clear), so
/// that keys sort by address, then length.
fn key(bits: u128, len: u8) -> u128 {
    (bits << SLOT_BITS) | u128::from(len)
}

/// The rule of `key` in /16 `x`.
fn unkey(x: u16, key: u128, nh: u32) -> Rule {
    Rule {
        bits: (u128::from(x) << (128 - SLOT_BITS)) | (key >> SLOT_BITS),
        len: key as u8,
        nh,
    }
}

/// The control-side owner of an IPv6 table: the rules, the current table and the changes
/// not yet published. See the [module docs](self).
///
/// ```
/// use dataplane::lpm::{Ipv6LpmBuilder, NextHop};
///
/// let mut rib = Ipv6LpmBuilder::new();
/// rib.insert("2001:db8::/32".parse().unwrap(), NextHop::new(1).unwrap());
/// rib.insert("2001:db8:1::/48".parse().unwrap(), NextHop::new(2).unwrap());
/// let v1 = rib.publish();
/// rib.remove("2001:db8:1::/48".parse().unwrap());
/// let v2 = rib.publish();
/// let addr = "2001:db8:1::1".parse().unwrap();
/// assert_eq!(v1.lookup(addr), NextHop::new(2));
/// assert_eq!(v2.lookup(addr), NextHop::new(1));
/// ```
pub struct Ipv6LpmBuilder {
    /// Next hops of the prefixes of length 0..=16, by [`short_slot`]; `NONE` if absent.
    short: Vec<u32>,
    /// Per /16, its rules of length 17..=128 by [`key`]: in the order the subtree build
    /// reads them (address, then length).
    long: Vec<BTreeMap<u128, u32>>,
    prefixes: usize,
    /// The table as of the last publish.
    table: Ipv6Lpm,
    /// Whether the rules changed since the last publish (even where no /16 did).
    changed: bool,
    /// /16s to look at in the next publish: those whose rules changed, or whose
    /// covering prefix (length <= 16) may have.
    dirty: Bitmap,
    /// /16s whose rules longer than /16 changed (to rebuild even if the covering
    /// prefix is the same).
    dirty_long: Bitmap,
    /// Where subtrees are built (reused from one /16 to the next).
    build: Build,
}

impl Ipv6LpmBuilder {
    /// An empty rule set, whose table is empty.
    pub fn new() -> Self {
        Ipv6LpmBuilder {
            short: vec![NONE; SHORT_SLOTS],
            long: (0..1 << SLOT_BITS).map(|_| BTreeMap::new()).collect(),
            prefixes: 0,
            table: Ipv6Lpm::new(),
            changed: false,
            dirty: Bitmap::new(),
            dirty_long: Bitmap::new(),
            build: Build::default(),
        }
    }

    /// Adds `prefix` with next hop `nh`, or changes its next hop; returns the previous
    /// next hop. Takes effect at the next [`publish`](Self::publish). Inserting
    /// [`NextHop::NONE`] is the same as [`remove`](Self::remove).
    pub fn insert(&mut self, prefix: Ipv6Prefix, nh: NextHop) -> Option<NextHop> {
        self.set(prefix, nh.0)
    }

    /// Removes `prefix`; returns its next hop, or `None` (and changes nothing) if it was
    /// not there. Takes effect at the next [`publish`](Self::publish); addresses it
    /// covered then match the next shorter prefix that contains them.
    pub fn remove(&mut self, prefix: Ipv6Prefix) -> Option<NextHop> {
        self.set(prefix, NONE)
    }

    /// Sets the raw value of `prefix` (`NONE` removes it); returns the old one.
    fn set(&mut self, prefix: Ipv6Prefix, nh: u32) -> Option<NextHop> {
        let (bits, len) = (prefix.bits(), prefix.prefix_len());
        let old = if u32::from(len) <= SLOT_BITS {
            let old = core::mem::replace(&mut self.short[short_slot(bits, len)], nh);
            if old != nh {
                self.mark_covered(bits, len, len);
            }
            old
        } else {
            let x = (bits >> (128 - SLOT_BITS)) as u16;
            let rules = &mut self.long[usize::from(x)];
            let old = if nh == NONE {
                rules.remove(&key(bits, len))
            } else {
                rules.insert(key(bits, len), nh)
            };
            let old = old.unwrap_or(NONE);
            if old != nh {
                self.dirty_long.set(x);
                self.dirty.set(x);
            }
            old
        };
        self.changed |= old != nh;
        match (old == NONE, nh == NONE) {
            (true, false) => self.prefixes += 1,
            (false, true) => self.prefixes -= 1,
            _ => {}
        }
        NextHop(old).to_option()
    }

    /// Marks the /16s inside `bits/len` where the changed prefix of length `changed`
    /// (<= `len` <= 16) is the longest match of length <= 16; the rest are covered by a
    /// longer prefix that the change does not affect.
    fn mark_covered(&mut self, bits: u128, len: u8, changed: u8) {
        if len > changed && self.short[short_slot(bits, len)] != NONE {
            return;
        }
        if u32::from(len) == SLOT_BITS {
            self.dirty.set((bits >> (128 - SLOT_BITS)) as u16);
        } else {
            self.mark_covered(bits, len + 1, changed);
            self.mark_covered(bits | (1 << (127 - len)), len + 1, changed);
        }
    }

    /// The next hop of exactly `prefix`, if it is in the rule set (published or not).
    pub fn get(&self, prefix: Ipv6Prefix) -> Option<NextHop> {
        let (bits, len) = (prefix.bits(), prefix.prefix_len());
        let raw = if u32::from(len) <= SLOT_BITS {
            self.short[short_slot(bits, len)]
        } else {
            let x = (bits >> (128 - SLOT_BITS)) as usize;
            self.long[x].get(&key(bits, len)).copied().unwrap_or(NONE)
        };
        NextHop(raw).to_option()
    }

    /// Number of prefixes in the rule set (published or not).
    pub fn len(&self) -> usize {
        self.prefixes
    }

    /// Whether the rule set is empty.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Whether there are changes that [`publish`](Self::publish) has not applied yet.
    pub fn has_pending(&self) -> bool {
        self.changed
    }

    /// The rules, shortest prefixes first, then by address.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv6Prefix, NextHop)> + '_ {
        let short = self.short.iter().enumerate().filter(|(_, &nh)| nh != NONE);
        let short = short.map(|(slot, &nh)| {
            let len = (slot + 1).ilog2() as u8;
            let index = (slot + 1 - (1 << len)) as u128;
            let bits = index.checked_shl(128 - u32::from(len)).unwrap_or(0);
            (prefix(bits, len), NextHop(nh))
        });
        let mut long: Vec<(Ipv6Prefix, NextHop)> = self
            .long
            .iter()
            .enumerate()
            .flat_map(|(x, rules)| {
                rules.iter().map(move |(&k, &nh)| {
                    let r = unkey(x as u16, k, nh);
                    (prefix(r.bits, r.len), NextHop(nh))
                })
            })
            .collect();
        long.sort_unstable_by_key(|(p, _)| (p.prefix_len(), p.bits()));
        short.chain(long)
    }

    /// The table as of the last [`publish`](Self::publish).
    pub fn table(&self) -> &Ipv6Lpm {
        &self.table
    }

    /// Applies the changes since the last publish and returns the new table, which
    /// shares every chunk they did not change with the previous one. Without changes,
    /// returns (a clone of) the same table.
    pub fn publish(&mut self) -> Ipv6Lpm {
        if !self.changed {
            return self.table.clone();
        }
        self.changed = false;
        let root = Arc::make_mut(&mut self.table.root);
        root.prefixes = self.prefixes;
        for x in self.dirty.drain() {
            let long_changed = self.dirty_long.take(x);
            let default = covering(&self.short, x);
            let (b1, b2) = (usize::from(x >> 8), usize::from(x & 0xff));
            let slot = &root.blocks[b1].slots[b2];
            if !long_changed && slot.leaf == default {
                continue;
            }
            let rules = &self.long[usize::from(x)];
            self.build.rules.clear();
            self.build
                .rules
                .extend(rules.iter().map(|(&k, &nh)| unkey(x, k, nh)));
            let (leaf, sub) = match self.build.subtree(default) {
                Built::Leaf(nh) => (nh, None),
                Built::Subtree(sub) => (default, Some(sub)),
            };
            let unchanged = slot.leaf == leaf
                && match (&slot.sub, &sub) {
                    (None, None) => true,
                    (Some(old), Some(new)) => **old == **new,
                    _ => false,
                };
            if unchanged {
                continue;
            }
            Arc::make_mut(&mut root.blocks[b1]).slots[b2] = Slot { sub, leaf };
        }
        self.table.clone()
    }

    /// Approximate heap bytes of the rule set (not counting the table): the rules longer
    /// than /16 at about 40 bytes each in their B-trees.
    pub fn memory_bytes(&self) -> usize {
        const PER_RULE: usize = 40;
        self.short.capacity() * size_of::<u32>()
            + self.long.capacity() * size_of::<BTreeMap<u128, u32>>()
            + self.long.iter().map(BTreeMap::len).sum::<usize>() * PER_RULE
            + self.build.memory_bytes()
            + 2 * size_of::<[u64; 1024]>()
    }
}

fn prefix(bits: u128, len: u8) -> Ipv6Prefix {
    // `bits` has no host bits and `len <= 128` by construction of the rule store.
    match Ipv6Prefix::from_bits(bits, len) {
        Ok(p) => p,
        Err(_) => unreachable!("rule lengths are at most 128"),
    }
}

/// The raw next hop of the longest prefix of length <= 16 that contains /16 `x`.
fn covering(short: &[u32], x: u16) -> u32 {
    // `short_slot` of the /16's address for each length from 16 down to 0: the slots of a
    // length start at `2^len - 1`, and the /16's index among them is `x >> (16 - len)`.
    let (mut first, mut index) = ((1usize << 16) - 1, usize::from(x));
    loop {
        match short.get(first + index) {
            Some(&nh) if nh != NONE => return nh,
            _ if first == 0 => return NONE,
            _ => {}
        }
        first >>= 1;
        index >>= 1;
    }
}

enum Built {
    /// The whole /16 has this value.
    Leaf(u32),
    Subtree(Arc<Subtree>),
}

/// A node or record to build: the word where it starts, the first address bit its level
/// takes, the value it inherits, and its rules (a range of [`Build::rules`]).
#[derive(Clone, Copy)]
struct Pending {
    at: usize,
    depth: u32,
    default: u32,
    rules: (usize, usize),
}

/// Where one /16's subtree is built; the buffers are reused from one /16 to the next.
#[derive(Default)]
struct Build {
    /// The /16's rules, sorted by address and then length.
    rules: Vec<Rule>,
    /// The subtree's words.
    words: Vec<u32>,
    /// Nodes allocated and not yet built, in the order they were allocated.
    queue: Vec<Pending>,
    /// The children found in the level being painted: (position, rules).
    children: Vec<(usize, (usize, usize))>,
}

impl Build {
    fn memory_bytes(&self) -> usize {
        self.rules.capacity() * size_of::<Rule>()
            + self.words.capacity() * size_of::<u32>()
            + self.queue.capacity() * size_of::<Pending>()
            + self.children.capacity() * size_of::<(usize, (usize, usize))>()
    }

    /// Paints `values` (the `2^width` positions of the level that takes address bits
    /// `depth..depth + width`, filled with the value inherited from above) with the rules
    /// `from..to` (all inside one prefix of length `depth`, all longer than it, sorted by
    /// address and then length) that end in the level, and lists in `self.children` each
    /// position that holds longer rules, with the range of those rules.
    ///
    /// Rules that end in the level are painted in the order given: a prefix comes before
    /// every prefix inside it, so the longest match wins.
    fn level(&mut self, depth: u32, width: u32, (from, to): (usize, usize), values: &mut [u32]) {
        self.children.clear();
        let end = depth + width;
        let rules = self.rules.get(from..to).unwrap_or_default();
        let pos_of = |r: &Rule| ((r.bits << depth) >> (128 - width)) as usize;
        let mut i = 0;
        while let Some(r) = rules.get(i) {
            let pos = pos_of(r);
            let len = u32::from(r.len);
            if len <= end {
                let span = 1usize << (end - len);
                if let Some(values) = values.get_mut(pos..pos + span) {
                    values.fill(r.nh);
                }
                i += 1;
            } else {
                // The rules longer than this level at `pos` follow each other: those that
                // end here at `pos` sort before them, and every other rule at `pos` is
                // longer.
                let start = i;
                while rules.get(i).is_some_and(|r| pos_of(r) == pos) {
                    i += 1;
                }
                self.children.push((pos, (from + start, from + i)));
            }
        }
    }

    /// Expands [`Self::rules`] (the rules longer than /16 of one /16) over `default`.
    fn subtree(&mut self, default: u32) -> Built {
        if self.rules.is_empty() {
            return Built::Leaf(default);
        }
        let bits = if self.rules.len() >= WIDE_MIN_RULES {
            WIDE_BITS
        } else {
            NARROW_BITS
        };
        // The direct level is the first 2^bits words.
        let mut words = core::mem::take(&mut self.words);
        words.clear();
        words.resize(1 << bits, default);
        self.level(SLOT_BITS, bits, (0, self.rules.len()), &mut words);
        let first = words[0];
        if self.children.is_empty() && words.iter().all(|&e| e == first) {
            self.words = words;
            return Built::Leaf(first);
        }
        self.queue.clear();
        self.words = words;
        self.allocate(SLOT_BITS + bits, 0);
        // Breadth first: the queue holds the nodes in the order they were allocated.
        let mut next = 0;
        while let Some(&job) = self.queue.get(next) {
            next += 1;
            let mut values = [job.default; NODE_ENTRIES];
            self.level(job.depth, STRIDE, job.rules, &mut values);
            if let Some(node) = self.words.get_mut(job.at..job.at + NODE_ENTRIES) {
                node.copy_from_slice(&values);
            }
            self.allocate(job.depth + STRIDE, job.at);
        }
        Built::Subtree(Arc::new(Subtree {
            bits,
            words: self.words.as_slice().into(),
        }))
    }

    /// Points each position in `self.children` (found in the level whose entries start at
    /// word `at`, and whose children take address bits from `depth`) at a new record, if
    /// it holds one rule, or at a new node, queued to be built.
    fn allocate(&mut self, depth: u32, at: usize) {
        for k in 0..self.children.len() {
            let (pos, (from, to)) = self.children[k];
            let child = self.words.len();
            let Some(entry) = self.words.get_mut(at + pos) else {
                continue;
            };
            if to - from == 1 {
                let default = core::mem::replace(entry, CHILD | RECORD | child as u32);
                let r = self.rules[from];
                self.words.extend([
                    r.bits as u32,
                    (r.bits >> 32) as u32,
                    (r.bits >> 64) as u32,
                    (r.bits >> 96) as u32,
                    u32::from(r.len),
                    r.nh,
                    default,
                ]);
            } else {
                let default = core::mem::replace(entry, CHILD | child as u32);
                self.words.resize(child + NODE_ENTRIES, NONE);
                self.queue.push(Pending {
                    at: child,
                    depth,
                    default,
                    rules: (from, to),
                });
            }
        }
    }
}

impl Default for Ipv6LpmBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Ipv6LpmBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv6LpmBuilder")
            .field("prefixes", &self.prefixes)
            .field("pending_slash16s", &self.dirty.count())
            .field("table", &self.table)
            .finish()
    }
}

impl Extend<(Ipv6Prefix, NextHop)> for Ipv6LpmBuilder {
    fn extend<I: IntoIterator<Item = (Ipv6Prefix, NextHop)>>(&mut self, rules: I) {
        for (prefix, nh) in rules {
            self.insert(prefix, nh);
        }
    }
}

impl FromIterator<(Ipv6Prefix, NextHop)> for Ipv6LpmBuilder {
    /// A builder with these rules, not yet published.
    fn from_iter<I: IntoIterator<Item = (Ipv6Prefix, NextHop)>>(rules: I) -> Self {
        let mut builder = Self::new();
        builder.extend(rules);
        builder
    }
}
