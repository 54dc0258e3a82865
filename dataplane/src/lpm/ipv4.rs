//! The IPv4 longest-prefix-match table: a copy-on-write multibit trie with strides
//! 8-8-8-8, whose last two levels are expanded (leaf-pushed, as in DIR-24-8) per /16;
//! and, for tables of [`FLAT_MIN_PREFIXES`] rules or more, the same table flattened to
//! DIR-24-8 with 2-byte entries, which lookups read instead ([the flat
//! form](#the-flat-form)).
//!
//! # Layout
//!
//! ```text
//! Ipv4Lpm ─► Root: [Arc<Block>; 256]        by the 1st byte (2 KiB: stays in L1 cache)
//!              └► Block: [Slot; 256]         by the 2nd byte (4 KiB; 1 MiB for all 256)
//!                   Slot { leaf: u32, sub: Option<Arc<Subtree>> }      (one per /16)
//!                                  └► Subtree { l2: [u32; 256],        by the 3rd byte
//!                                               l3: Box<[[u32; 256]]> } by the 4th byte
//! ```
//!
//! A /16 that no prefix longer than /16 touches has no subtree: its next hop is its
//! slot's `leaf`. Otherwise its **subtree** holds every prefix of length 17 to 32 inside
//! it, expanded over the covering prefix: `l2` has one entry per /24, and `l3` one
//! 256-entry group per /24 that holds prefixes longer than /24. An entry is a `u32`: a
//! next hop, or `CHILD | k` (top bit set) for "group `k` of `l3`".
//!
//! A lookup is `root[a] → slot[b] → l2[c]`, and `→ l3[k][d]` for the few /24s that
//! hold longer prefixes: three dependent loads, the first always an L1 hit, so in
//! practice the block (L2) and one line of the subtree (L3 or memory). Every index is a
//! masked address byte into a fixed-size array, so the compiler drops the bounds checks;
//! the one check left is `l3.get(k)` (a predictable compare, and never a panic).
//!
//! # Why this shape
//!
//! DPDK's DIR-24-8 is one 64 MiB array of 2^24 entries plus groups of 256 for the longer
//! prefixes: one load for most lookups, but a change must either write in place (no
//! immutable snapshot) or copy 64 MiB. Here the 2^24 level is cut into one chunk per /16
//! (the subtree), found through a two-level index (root and block) so that publishing a
//! change copies the 2 KiB root, the 4 KiB blocks it writes into, and the subtrees it
//! changes, and nothing else. The extra level costs one L1-hit load per lookup. A flat
//! 2^16-slot index (one load fewer) would make every publish copy 1 MiB and bump 65536
//! reference counts.
//!
//! Expanding per /16 also keeps the table small for real routing tables: a /16 without
//! longer prefixes costs one 16-byte slot, not 1 KiB. The Internet table below needs 18k
//! subtrees (20.6 MiB) where DIR-24-8 needs 64 MiB plus its groups.
//!
//! # Copy-on-write and publication
//!
//! [`Ipv4Lpm`] is immutable, `Send + Sync`, and clones by bumping one reference count.
//! [`Ipv4LpmBuilder`] keeps the rules and the current table. `insert` and `remove` only
//! record the rule and mark the /16s whose lookups it may change; [`publish`] rebuilds
//! each marked /16 from the rules (so a delete restores the covering prefix by
//! construction), compares it with the current one, and writes only those that differ:
//! it copies the root, each block it writes into (256 reference-count increments each),
//! and allocates a new subtree for each changed /16. Every other chunk is shared with the
//! previous table, which stays valid and unchanged for as long as anyone holds it.
//!
//! A prefix of length `l <= 16` covers `2^(16-l)` /16s and changes those where it is the
//! longest prefix of length <= 16; a longer prefix changes one /16. So a /24 change
//! copies three chunks (root, block, subtree), but a change to a default route that
//! shows through everywhere rebuilds every /16. That is inherent to expanded tables
//! (DIR-24-8 rewrites the same entries).
//!
//! [`publish`]: Ipv4LpmBuilder::publish
//!
//! # The flat form
//!
//! The trie's lookup is three dependent loads, the first two of them cache hits; in a bulk
//! lookup of independent addresses that index in front of the /24 entry is what keeps it
//! behind `rte_fib` (see the table below). A large table therefore also has a flat form
//! that lookups read instead: DIR-24-8 with **2-byte entries**, one per /24 (32 MiB),
//! each the index of a next hop in a 32,768-entry array of raw next hops (128 KiB, of
//! which the next hops in use stay in L1), or `FLAT_GROUP | k` for group `k` of 256
//! entries for a /24 that holds longer prefixes. A lookup is one load from the first
//! level, one from the small next-hop array, and one from a group for the few /24s that
//! have one. Half the size of `rte_fib`'s 4-byte entries, the first level takes half the
//! cache and TLB reach; that, not the instruction count, is where it gains.
//!
//! Publishing stays copy-on-write in effect, without copying 32 MiB per change:
//!
//! - the builder keeps the flat tables it published last ([`FLATS_KEPT`], the current one
//!   included), each with the set of /16s that changed since it was written;
//! - `publish` updates the trie as above, then writes the /16s that changed into a kept
//!   flat table that **no reader holds any more** (`Arc::get_mut` proves it: the
//!   snapshot's grace period has passed), rebuilding each from the trie's slot, and
//!   publishes it. Every other table, the one in use included, is untouched;
//! - while fewer than `FLATS_KEPT` are kept, it builds a new one from the whole trie
//!   (tens of milliseconds at the Internet table);
//! - when readers still hold every kept table (a burst of publishes faster than a reader
//!   lets go), the new table has no flat form: its lookups read the trie, which is always
//!   current, until a later publish finds a flat table free. No publish waits or copies.
//!   (A publish that changed no /16 shares the current flat table, held or not.);
//! - next hops are numbered by the builder, and both the numbering and the groups are
//!   bounded (32,767 distinct next hops, 32,768 groups). A table that does not fit reads
//!   the trie, and the flat form is tried again after 1, 2, 4 ... 256 publishes; the
//!   numbering starts again (the kept tables are dropped, later publishes build new ones)
//!   when numbers of next hops no rule uses any more are what filled it. A kept table
//!   frees the groups of every /16 it is to write before writing any, so a change that
//!   moves groups between /16s fits a full one.
//!
//! Tables below [`FLAT_MIN_PREFIXES`] rules (and those that fall below half of it since,
//! whether or not the flat form fitted meanwhile) have no flat form: a trie that small
//! stays in cache, and two or three 32 MiB tables per small table (a lab's, a test's)
//! would be waste. The kept tables are dropped then, since they no longer follow the
//! changes. A zeroed first level costs no memory until
//! written, so a table with few routes in the flat form holds only the pages its /16s
//! touch.
//!
//! # Contracts
//!
//! - Lookups ([`Ipv4Lpm::lookup`], [`Ipv4Lpm::lookup_u32`], [`Ipv4Lpm::lookup_bulk`]) never
//!   panic, allocate or lock. Addresses are host-order `u32`s (`u32::from(Ipv4Addr)`).
//! - The builder's methods cannot fail: prefixes and next hops are validated when they
//!   are made. They panic only if allocation fails. `insert` and `remove` cost
//!   `O(log k + k)` for a prefix longer than /16, where `k` is the number of such rules in
//!   its /16 (kept sorted), and up to `O(2^(17-l))` marking for a prefix of length
//!   `l <= 16`.
//! - `publish` costs, per marked /16, its rules plus the 1 KiB groups it fills; with the
//!   flat form, 512 bytes more per /16 changed since the kept table it writes into.
//!
//! # Memory and speed
//!
//! `cargo test --release -p dataplane --no-default-features --lib
//! lpm::ipv4::tests::measure -- --ignored --nocapture`, on the 2-core AMD EPYC VM this
//! was written on (1 MiB L2 per core, 32 MiB L3, 4 KiB pages: no hugepages), best of 5;
//! "uniform" addresses are uniformly random, "in-prefix" ones are random inside a
//! random rule. These numbers vary by ±20% from run to run on that machine.
//!
//! | table                           | build      | table    | per prefix | lookup: uniform / in-prefix |
//! |---------------------------------|------------|----------|------------|-----------------------------|
//! | Internet, 564,579 prefixes      | 26–31 ms   | 20.6 MiB | 38 B       | 9–10 ns / 7.5–10.5 ns       |
//! | random 1M (Internet length mix) | 190–310 ms | 76.9 MiB | 81 B       | 11.5–13 ns / 13–16 ns       |
//!
//! Lookup times are for a loop of single lookups and for [`Ipv4Lpm::lookup_bulk`] on
//! bursts of 32 (the bulk lookup is 5–10% faster). On the same machine, one load per
//! address from a flat 2^24-entry array (DIR-24-8's first level alone, without
//! hugepages) takes 6.5 ns uniform / 4.4–7.7 ns in-prefix: the price of the
//! copy-on-write index is one more dependent miss, about 1.5–2× on this machine. The
//! rules in the builder take 8–12.5 MiB more. Publishing one /24 change takes 20–50 µs
//! and copies 3 chunks; a batch of 1000 random changes 2.5–3.3 ms (about 1200 chunks).
//!
//! Alternatives measured and left out:
//!
//! - Packed groups (per group, 256 one-byte indices into its distinct values): 3×
//!   smaller (7.2 MiB for the Internet table, 24.7 MiB for random 1M), as fast on the
//!   Internet table, but 2× slower on random 1M (24–33 ns): the index and the value are
//!   two dependent misses.
//! - A bulk lookup that runs each level for the whole burst before the next (all slot
//!   loads, then all /24 loads, then the /32 ones): 5–15% slower than the plain loop
//!   here. The out-of-order core already overlaps the misses of 15–20 independent
//!   lookups, and the page walks of 4 KiB pages, not the misses in flight, are the limit.
//!
//! Measured again on a 2-core Intel Xeon VM at 2.6 GHz (48 KiB L1d, 2 MiB L2 per core)
//! with `LPM_BENCH_TABLES=real,random_1m cargo bench -p backbone-benches --bench
//! lpm_vs_dpdk`, as bulk-of-32 time over `rte_fib`'s bulk time in the same run (real
//! table uniform / in-table, random 1M uniform / in-table; below 1 is faster):
//!
//! | variant                                           | 4 KiB pages            | 2 MiB pages            |
//! |---------------------------------------------------|------------------------|------------------------|
//! | plain loop (this code)                            | 0.73 / 1.23 / 0.99 / 1.22 | 1.02 / 1.42 / 1.20 / 1.30 |
//! | prefetch the /24 entry of the address 8 ahead     | 1.25 / 1.43 / 1.26 / 1.48 | 1.92 / 1.72 / 1.51 / 1.61 |
//! | the same, 4 ahead                                 |                        | 1.71 / 1.94 / 1.64 / 1.76 |
//! | prefetch the slot only, 8 ahead (16: the same)    |                        | 1.24 / 1.87 / 1.42 / 1.60 |
//! | slot 12 ahead and /24 entry 6 ahead               |                        | 1.87 / 1.90 / 1.51 / 1.66 |
//! | level by level (all slots, then all /24 entries)  |                        | 1.21 / 2.15 / 1.64 / 1.84 |
//! | the same, the /24 level without a branch          |                        | 1.13 / 2.28 / 1.66 / 1.88 |
//! | lookups without a branch on "has a subtree"       | 0.86 / 1.49 / 1.25 / 1.38 |                        |
//!
//! (The plain loop on 2 MiB pages: 1.07 / 1.51 / 1.14 / 1.25 in the level-by-level run.)
//! Every variant is slower, on both page sizes: the predicted branch on "has a subtree"
//! lets the core start the next lookups' loads before the slot arrives, and what a
//! prefetch or a staged loop adds costs more than the overlap it buys. The plain loop
//! beats `rte_fib` on uniform addresses and trails it on in-table ones, most on 2 MiB
//! pages: with the last level mostly cached and no page walks, the slot load that the
//! copy-on-write index puts in front of it is what remains.
//!
//! Hence the flat form (the rows above are the trie's). The same command, 4 KiB pages,
//! one run each:
//!
//! | lookups read                                                   | bulk / `rte_fib` bulk     |
//! |----------------------------------------------------------------|---------------------------|
//! | the trie                                                       | 0.97 / 1.44 / 1.08 / 1.22 |
//! | a flat copy with 4-byte entries (`rte_fib`'s layout, prototype) | 1.17 / 1.02 / 1.09 / 1.10 |
//! | a flat copy with 2-byte next hops, no next-hop array (prototype) | 0.80 / 0.72 / 0.77 / 0.80 |
//! | the flat form (2-byte indices into the next-hop array)         | 0.93 / 0.83 / 0.77 / 0.79 |
//!
//! (The first three rows come from one run, the last from another: 4.39 / 2.65 / 3.59 /
//! 3.71 ns against `rte_fib`'s 4.73 / 3.18 / 4.69 / 4.70.) With `rte_fib`'s own layout a
//! flat table only matches it: the gain is the halved entry. The next-hop array costs
//! what separates the last two rows on the real table, and buys next hops of any value.

use core::fmt;
use core::mem::{replace, size_of};
use core::net::Ipv4Addr;
use std::sync::Arc;

use super::{Ipv4Prefix, NextHop};

#[cfg(test)]
mod tests;

/// The burst size the bulk lookup is measured with, and the pipeline's burst size.
/// [`Ipv4Lpm::lookup_bulk`] takes any length.
pub const BURST: usize = 32;

/// Top bit of an entry: the rest is the index of a group in the same subtree.
const CHILD: u32 = 1 << 31;
/// The raw "no route" value.
const NONE: u32 = NextHop::NONE.0;

/// 256 entries indexed by one address byte.
type Group = [u32; 256];

/// The prefixes longer than /16 of one /16, expanded.
#[derive(PartialEq, Eq)]
struct Subtree {
    /// One entry per /24: a next hop, or `CHILD | k` for group `k` of `l3`.
    l2: Group,
    /// One group per /24 that holds prefixes longer than /24: one entry per address.
    l3: Box<[Group]>,
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

impl Root {
    /// The slot of /16 `x`.
    #[inline(always)]
    fn slot(&self, x: u16) -> &Slot {
        &self.blocks[usize::from(x >> 8)].slots[usize::from(x & 0xff)]
    }

    /// The slot of /16 `x` to write, its block copied first if another table shares it.
    fn slot_mut(&mut self, x: u16) -> &mut Slot {
        &mut Arc::make_mut(&mut self.blocks[usize::from(x >> 8)]).slots[usize::from(x & 0xff)]
    }
}

/// An immutable IPv4 longest-prefix-match table. See the [module docs](self).
///
/// Cloning is one reference-count increment. Tables made by one
/// [`Ipv4LpmBuilder`] share the chunks that did not change between them.
#[derive(Clone)]
pub struct Ipv4Lpm {
    root: Arc<Root>,
    /// The same table flattened, which lookups read when it is there: see
    /// [the module docs](self#the-flat-form).
    flat: Option<Arc<Flat>>,
}

/// Top bit of a flat entry: the rest is the index of a group of [`Flat::groups`].
const FLAT_GROUP: u16 = 1 << 15;
/// What the flat form holds at most: distinct next hops (its value 0 is "no route"),
/// and groups.
const FLAT_MAX: usize = 1 << 15;
/// /24s in the address space.
const SLASH24S: usize = 1 << 24;

/// The flat (DIR-24-8) form of a table, with 2-byte entries: an entry is the index of a
/// next hop in `values`, or `FLAT_GROUP | k` for group `k` (one entry per address of a
/// /24 that holds prefixes longer than /24). Index 0 of `values` is "no route", so
/// a zeroed table (the pages the kernel has not handed out yet) misses everywhere.
struct Flat {
    tbl24: Box<[u16; SLASH24S]>,
    groups: Vec<[u16; 256]>,
    /// Groups no entry points to, for reuse.
    free: Vec<u16>,
    /// The /16s with an entry that points to a group.
    grouped: Bitmap,
    /// Raw next hops by index; the builder's interning keeps the indices of all of its
    /// flat tables the same.
    values: Box<[u32; FLAT_MAX]>,
    /// How many of `values` are in use.
    used_values: usize,
}

/// The flat form has no room for one more distinct next hop or group.
#[derive(Debug)]
struct FlatFull;

impl Flat {
    /// An empty flat table: zeroed memory, which costs nothing until it is written.
    fn new() -> Self {
        let tbl24: Box<[u16]> = vec![0u16; SLASH24S].into_boxed_slice();
        let values: Box<[u32]> = vec![NONE; FLAT_MAX].into_boxed_slice();
        Flat {
            tbl24: match tbl24.try_into() {
                Ok(t) => t,
                Err(_) => unreachable!("the slice has SLASH24S entries"),
            },
            groups: Vec::new(),
            free: Vec::new(),
            grouped: Bitmap::new(),
            values: match values.try_into() {
                Ok(v) => v,
                Err(_) => unreachable!("the slice has FLAT_MAX entries"),
            },
            used_values: 1,
        }
    }

    #[inline(always)]
    fn lookup(&self, addr: u32) -> u32 {
        let e = self.tbl24[(addr >> 8) as usize];
        let v = if e & FLAT_GROUP == 0 {
            e
        } else {
            match self.groups.get(usize::from(e & !FLAT_GROUP)) {
                Some(g) => g[(addr & 0xff) as usize],
                None => 0,
            }
        };
        // Masked, so the compiler drops the bounds check; group entries are values.
        self.values[usize::from(v & !FLAT_GROUP)]
    }

    /// Frees the groups of /16 `x`, its entries that pointed to them left as "no route".
    fn release(&mut self, x: u16) {
        if self.grouped.take(x) {
            let base = usize::from(x) << 8;
            for e in self.tbl24[base..base + 256].iter_mut() {
                if *e & FLAT_GROUP != 0 {
                    self.free.push(*e & !FLAT_GROUP);
                    *e = 0;
                }
            }
        }
    }

    /// Writes /16 `x` as `slot` has it; `FlatFull` leaves the table half-written (the
    /// caller then throws it away).
    fn write(&mut self, x: u16, slot: &Slot, values: &mut Interner) -> Result<(), FlatFull> {
        self.release(x);
        let base = usize::from(x) << 8;
        let part = &mut self.tbl24[base..base + 256];
        match &slot.sub {
            None => {
                let all = [values.index(slot.leaf)?; 256];
                // Leave untouched what is already right, so an empty /16 of a new table
                // stays on the zero page. (Whole-array compare and copy: memcmp and
                // memcpy, fast in unoptimised test builds too.)
                if *part != all {
                    part.copy_from_slice(&all);
                }
            }
            Some(sub) => {
                for (c, &e) in sub.l2.iter().enumerate() {
                    self.tbl24[base + c] = if e & CHILD == 0 {
                        values.index(e)?
                    } else {
                        let src = sub.l3.get((e & !CHILD) as usize).ok_or(FlatFull)?;
                        let mut group = [0u16; 256];
                        for (d, &v) in group.iter_mut().zip(src.iter()) {
                            *d = values.index(v)?;
                        }
                        let k = match self.free.pop() {
                            Some(k) => {
                                self.groups[usize::from(k)] = group;
                                k
                            }
                            None if self.groups.len() < FLAT_MAX => {
                                self.groups.push(group);
                                (self.groups.len() - 1) as u16
                            }
                            None => return Err(FlatFull),
                        };
                        self.grouped.set(x);
                        FLAT_GROUP | k
                    };
                }
            }
        }
        Ok(())
    }

    /// Takes the next hops the interner added since this table last did.
    fn sync_values(&mut self, values: &Interner) {
        let new = &values.list[self.used_values..];
        self.values[self.used_values..values.list.len()].copy_from_slice(new);
        self.used_values = values.list.len();
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + size_of::<[u16; SLASH24S]>()
            + size_of::<[u32; FLAT_MAX]>()
            + self.groups.capacity() * size_of::<[u16; 256]>()
            + self.free.capacity() * size_of::<u16>()
    }
}

/// The builder's numbering of distinct next hops for the flat form: index 0 is
/// "no route"; indices are never reused (a full table starts a new numbering).
struct Interner {
    list: Vec<u32>,
    index: std::collections::HashMap<u32, u16>,
    /// The last value asked for and its index: neighbouring entries mostly repeat.
    last: (u32, u16),
}

impl Interner {
    fn new() -> Self {
        Interner {
            list: vec![NONE],
            index: std::collections::HashMap::from([(NONE, 0)]),
            last: (NONE, 0),
        }
    }

    fn index(&mut self, raw: u32) -> Result<u16, FlatFull> {
        if self.last.0 == raw {
            return Ok(self.last.1);
        }
        if let Some(&i) = self.index.get(&raw) {
            self.last = (raw, i);
            return Ok(i);
        }
        if self.list.len() >= FLAT_MAX {
            return Err(FlatFull);
        }
        let i = self.list.len() as u16;
        self.list.push(raw);
        self.index.insert(raw, i);
        self.last = (raw, i);
        Ok(i)
    }
}

/// The size of a table's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv4LpmStats {
    /// Prefixes in the table.
    pub prefixes: usize,
    /// Distinct blocks (at most 256; an empty table shares one).
    pub blocks: usize,
    /// Subtrees: /16s that hold prefixes longer than /16.
    pub subtrees: usize,
    /// 1 KiB groups in all subtrees (at least one per subtree).
    pub groups: usize,
    /// Chunks that copy-on-write shares between tables: root, blocks and subtrees.
    pub chunks: usize,
    /// Groups of 256 two-byte entries in the flat form (0 without it).
    pub flat_groups: usize,
    /// Heap bytes of the flat form (0 without it): its 32 MiB first level (of which the
    /// kernel backs only the pages written), its groups and its next hops.
    pub flat_bytes: usize,
    /// Approximate heap bytes of the table, counting each shared chunk once: the
    /// copy-on-write trie and the flat form.
    pub memory_bytes: usize,
}

/// Heap bytes of an `Arc` allocation beside its value: the two counts.
const ARC_HEADER: usize = 2 * size_of::<usize>();

impl Ipv4Lpm {
    /// An empty table: every lookup misses.
    pub fn new() -> Self {
        let empty = Arc::new(Block::empty());
        Ipv4Lpm {
            root: Arc::new(Root {
                blocks: core::array::from_fn(|_| Arc::clone(&empty)),
                prefixes: 0,
            }),
            flat: None,
        }
    }

    /// The next hop of the longest prefix that contains `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<NextHop> {
        self.lookup_u32(addr.to_bits()).to_option()
    }

    /// The next hop of the longest prefix that contains the host-order address `addr`,
    /// or [`NextHop::NONE`].
    #[inline(always)]
    pub fn lookup_u32(&self, addr: u32) -> NextHop {
        match &self.flat {
            Some(flat) => NextHop(flat.lookup(addr)),
            None => self.trie_lookup(addr),
        }
    }

    /// The lookup in the copy-on-write trie.
    #[inline(always)]
    fn trie_lookup(&self, addr: u32) -> NextHop {
        let slot = self.root.slot((addr >> 16) as u16);
        NextHop(match &slot.sub {
            None => slot.leaf,
            Some(sub) => {
                let e = sub.l2[((addr >> 8) & 0xff) as usize];
                if e & CHILD == 0 {
                    e
                } else {
                    l3_entry(sub, e, addr)
                }
            }
        })
    }

    /// Prefetch what looking `addr` up will read last: its /24 entry, when its /16 has a
    /// subtree (the index above it is small enough to stay cached). Called as soon as an
    /// address is known, it lets that miss overlap the work before the lookup.
    #[inline(always)]
    pub fn prefetch(&self, addr: u32) {
        if let Some(flat) = &self.flat {
            crate::prefetch::prefetch(&flat.tbl24[(addr >> 8) as usize]);
            return;
        }
        if let Some(sub) = &self.root.slot((addr >> 16) as u16).sub {
            crate::prefetch::prefetch(&sub.l2[((addr >> 8) & 0xff) as usize]);
        }
    }

    /// Looks up each host-order address of `addrs` and writes its next hop (or
    /// [`NextHop::NONE`]) at the same position of `out`.
    ///
    /// Only the first `min(addrs.len(), out.len())` addresses are looked up; the rest of
    /// `out` is left as it was. Never panics.
    ///
    /// The lookups are independent, so the CPU overlaps their cache misses; see the
    /// [module docs](self#memory-and-speed) for why this is a plain loop and not a
    /// level-by-level pipeline.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [NextHop]) {
        match &self.flat {
            Some(flat) => {
                for (&addr, out) in addrs.iter().zip(out.iter_mut()) {
                    *out = NextHop(flat.lookup(addr));
                }
            }
            None => {
                for (&addr, out) in addrs.iter().zip(out.iter_mut()) {
                    *out = self.trie_lookup(addr);
                }
            }
        }
    }

    /// Whether lookups read the flat form (see [the module docs](self#the-flat-form)).
    pub fn is_flat(&self) -> bool {
        self.flat.is_some()
    }

    /// Size of the table's parts.
    pub fn stats(&self) -> Ipv4LpmStats {
        let mut blocks: Vec<*const Block> = self.root.blocks.iter().map(Arc::as_ptr).collect();
        blocks.sort_unstable();
        blocks.dedup();
        let mut stats = Ipv4LpmStats {
            prefixes: self.root.prefixes,
            blocks: blocks.len(),
            memory_bytes: size_of::<Root>()
                + ARC_HEADER
                + blocks.len() * (size_of::<Block>() + ARC_HEADER),
            ..Ipv4LpmStats::default()
        };
        for sub in self.subtrees() {
            stats.subtrees += 1;
            stats.groups += 1 + sub.l3.len();
            stats.memory_bytes +=
                size_of::<Subtree>() + ARC_HEADER + sub.l3.len() * size_of::<Group>();
        }
        stats.chunks = 1 + stats.blocks + stats.subtrees;
        if let Some(flat) = &self.flat {
            stats.flat_groups = flat.groups.len() - flat.free.len();
            stats.flat_bytes = flat.memory_bytes();
            stats.memory_bytes += stats.flat_bytes;
        }
        stats
    }

    /// Approximate heap bytes of the table (see [`Ipv4LpmStats::memory_bytes`]).
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
    /// [`Ipv4LpmStats::chunks`]) are the very same allocation in `other`: the chunks
    /// copy-on-write did not copy between the two.
    pub fn shared_chunks(&self, other: &Ipv4Lpm) -> usize {
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
                    if Arc::ptr_eq(a, b) {
                        shared += 1;
                    }
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

/// The entry for `addr` in the `l3` group that the /24 entry `child` points to; a
/// missing group (never the case in a table the builder made) reads as "no route".
#[inline(always)]
fn l3_entry(sub: &Subtree, child: u32, addr: u32) -> u32 {
    match sub.l3.get((child & !CHILD) as usize) {
        Some(g) => g[(addr & 0xff) as usize],
        None => NONE,
    }
}

impl Default for Ipv4Lpm {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Ipv4Lpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv4Lpm")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A rule longer than /16, stored with the others of its /16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LongRule {
    /// Low 16 bits of the network address.
    lo: u16,
    /// 17..=32.
    len: u8,
    /// Raw next hop.
    nh: u32,
}

/// Slots for prefixes of length 0..=16: `2^(l) - 1 + (addr >> (32 - l))`.
const SHORT_SLOTS: usize = (1 << 17) - 1;

fn short_slot(bits: u32, len: u8) -> usize {
    let prefix = bits.checked_shr(32 - u32::from(len)).unwrap_or(0);
    (1usize << len) - 1 + prefix as usize
}

/// A set of 2^16 flags, one per /16.
struct Bitmap(Box<[u64; 1024]>);

impl Bitmap {
    fn new() -> Self {
        Bitmap(Box::new([0; 1024]))
    }

    /// Sets flag `i`; returns whether it was clear.
    fn set(&mut self, i: u16) -> bool {
        let (w, b) = (usize::from(i >> 6), 1u64 << (i & 63));
        let was_clear = self.0[w] & b == 0;
        self.0[w] |= b;
        was_clear
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

    fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

/// The control-side owner of an IPv4 table: the rules, the current table and the
/// changes not yet published. See the [module docs](self).
///
/// ```
/// use dataplane::lpm::{Ipv4LpmBuilder, NextHop};
///
/// let mut rib = Ipv4LpmBuilder::new();
/// rib.insert("10.0.0.0/8".parse().unwrap(), NextHop::new(1).unwrap());
/// rib.insert("10.1.0.0/16".parse().unwrap(), NextHop::new(2).unwrap());
/// let v1 = rib.publish();
/// rib.remove("10.1.0.0/16".parse().unwrap());
/// let v2 = rib.publish();
/// let addr = "10.1.2.3".parse().unwrap();
/// assert_eq!(v1.lookup(addr), NextHop::new(2));
/// assert_eq!(v2.lookup(addr), NextHop::new(1));
/// ```
pub struct Ipv4LpmBuilder {
    /// Next hops of the prefixes of length 0..=16, by [`short_slot`]; `NONE` if absent.
    short: Vec<u32>,
    /// Per /16, its rules of length 17..=32, sorted by (len, lo).
    long: Vec<Vec<LongRule>>,
    prefixes: usize,
    /// The table as of the last publish.
    table: Ipv4Lpm,
    /// Whether the rules changed since the last publish (even where no /16 did).
    changed: bool,
    /// /16s to look at in the next publish: those whose rules changed, or whose
    /// covering prefix (length <= 16) may have.
    dirty: Bitmap,
    /// /16s whose rules longer than /16 changed (to rebuild even if the covering
    /// prefix is the same).
    dirty_long: Bitmap,
    /// The numbering of next hops that all kept flat tables share.
    values: Interner,
    /// The flat tables published last (at most [`FLATS_KEPT`]), to be written into
    /// again once no reader holds them.
    flats: Vec<KeptFlat>,
    /// Publishes to let pass before trying the flat form again, after it was full.
    flat_wait: u32,
    /// What `flat_wait` is set to the next time the flat form is full (doubling).
    flat_backoff: u32,
    /// The rule count from which tables get the flat form.
    flat_min: usize,
    /// Whether the rule count calls for the flat form: it reached `flat_min` and has not
    /// fallen below half of it since.
    flat_on: bool,
}

/// A flat table the builder keeps after publishing it.
struct KeptFlat {
    flat: Arc<Flat>,
    /// /16s that changed since it was written.
    stale: Bitmap,
}

/// How many flat tables a builder keeps: the current one, the one before (which the
/// workers let go of within a poll), and one more for a reader that takes longer.
pub const FLATS_KEPT: usize = 3;

/// The rule count from which [`Ipv4LpmBuilder`] gives its tables the flat form, by
/// default: smaller tables stay in cache as tries, and do not need 32 MiB twice.
pub const FLAT_MIN_PREFIXES: usize = 4096;

impl Ipv4LpmBuilder {
    /// An empty rule set, whose table is empty.
    pub fn new() -> Self {
        Ipv4LpmBuilder {
            short: vec![NONE; SHORT_SLOTS],
            long: vec![Vec::new(); 1 << 16],
            prefixes: 0,
            table: Ipv4Lpm::new(),
            changed: false,
            dirty: Bitmap::new(),
            dirty_long: Bitmap::new(),
            values: Interner::new(),
            flats: Vec::new(),
            flat_wait: 0,
            flat_backoff: 1,
            flat_min: FLAT_MIN_PREFIXES,
            flat_on: false,
        }
    }

    /// Tables with at least `min` rules get the flat form from the next publish on, and
    /// lose it below `min / 2` (default [`FLAT_MIN_PREFIXES`]; 0: always).
    pub fn set_flat_min_prefixes(&mut self, min: usize) {
        self.flat_min = min;
        self.changed = true;
    }

    /// Adds `prefix` with next hop `nh`, or changes its next hop; returns the previous
    /// next hop. Takes effect at the next [`publish`](Self::publish). Inserting
    /// [`NextHop::NONE`] is the same as [`remove`](Self::remove).
    pub fn insert(&mut self, prefix: Ipv4Prefix, nh: NextHop) -> Option<NextHop> {
        self.set(prefix, nh.0)
    }

    /// Removes `prefix`; returns its next hop, or `None` (and changes nothing) if it was
    /// not there. Takes effect at the next [`publish`](Self::publish); addresses it
    /// covered then match the next shorter prefix that contains them.
    pub fn remove(&mut self, prefix: Ipv4Prefix) -> Option<NextHop> {
        self.set(prefix, NONE)
    }

    /// Sets the raw value of `prefix` (`NONE` removes it); returns the old one.
    fn set(&mut self, prefix: Ipv4Prefix, nh: u32) -> Option<NextHop> {
        let (bits, len) = (prefix.bits(), prefix.prefix_len());
        let old = if len <= 16 {
            let old = replace(&mut self.short[short_slot(bits, len)], nh);
            if old != nh {
                self.mark_covered(bits, len, len);
            }
            old
        } else {
            let hi = (bits >> 16) as u16;
            let rules = &mut self.long[usize::from(hi)];
            let key = (len, bits as u16);
            let old = match rules.binary_search_by_key(&key, |r| (r.len, r.lo)) {
                Ok(i) if nh == NONE => rules.remove(i).nh,
                Ok(i) => replace(&mut rules[i].nh, nh),
                Err(_) if nh == NONE => NONE,
                Err(i) => {
                    let (len, lo) = key;
                    rules.insert(i, LongRule { lo, len, nh });
                    NONE
                }
            };
            if old != nh {
                self.mark(hi, true);
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
    fn mark_covered(&mut self, bits: u32, len: u8, changed: u8) {
        if len > changed && self.short[short_slot(bits, len)] != NONE {
            return;
        }
        if len == 16 {
            self.mark((bits >> 16) as u16, false);
        } else {
            self.mark_covered(bits, len + 1, changed);
            self.mark_covered(bits | (1 << (31 - len)), len + 1, changed);
        }
    }

    fn mark(&mut self, x: u16, long: bool) {
        if long {
            self.dirty_long.set(x);
        }
        self.dirty.set(x);
    }

    /// The next hop of exactly `prefix`, if it is in the rule set (published or not).
    pub fn get(&self, prefix: Ipv4Prefix) -> Option<NextHop> {
        let (bits, len) = (prefix.bits(), prefix.prefix_len());
        let raw = if len <= 16 {
            self.short[short_slot(bits, len)]
        } else {
            let rules = &self.long[(bits >> 16) as usize];
            match rules.binary_search_by_key(&(len, bits as u16), |r| (r.len, r.lo)) {
                Ok(i) => rules[i].nh,
                Err(_) => NONE,
            }
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
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Prefix, NextHop)> + '_ {
        let short = self.short.iter().enumerate().filter(|(_, &nh)| nh != NONE);
        let short = short.map(|(slot, &nh)| {
            let len = (slot + 1).ilog2() as u8;
            let index = (slot + 1 - (1 << len)) as u32;
            let bits = index.checked_shl(32 - u32::from(len)).unwrap_or(0);
            (prefix(bits, len), NextHop(nh))
        });
        let mut long: Vec<(Ipv4Prefix, NextHop)> = Vec::new();
        for (hi, rules) in self.long.iter().enumerate() {
            for r in rules {
                let bits = ((hi as u32) << 16) | u32::from(r.lo);
                long.push((prefix(bits, r.len), NextHop(r.nh)));
            }
        }
        long.sort_unstable_by_key(|(p, _)| (p.prefix_len(), p.bits()));
        short.chain(long)
    }

    /// The table as of the last [`publish`](Self::publish).
    pub fn table(&self) -> &Ipv4Lpm {
        &self.table
    }

    /// Applies the changes since the last publish and returns the new table, which
    /// shares every chunk they did not change with the previous one. Without changes,
    /// returns (a clone of) the same table.
    pub fn publish(&mut self) -> Ipv4Lpm {
        if !self.changed {
            return self.table.clone();
        }
        self.changed = false;
        // The builder's own reference goes, so that only readers can hold it.
        self.table.flat = None;
        let mut written: Vec<u16> = Vec::new();
        let root = Arc::make_mut(&mut self.table.root);
        root.prefixes = self.prefixes;
        for x in self.dirty.drain() {
            let long_changed = self.dirty_long.take(x);
            let default = covering(&self.short, x);
            let slot = root.slot(x);
            if !long_changed && slot.leaf == default {
                continue;
            }
            let (leaf, sub) = match build_subtree(default, &self.long[usize::from(x)]) {
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
            *root.slot_mut(x) = Slot { sub, leaf };
            written.push(x);
        }
        self.table.flat = self.publish_flat(&written);
        self.table.clone()
    }

    /// The flat form of the new trie (`self.table.root`), given the /16s that changed in
    /// this publish. Writes into a kept flat table that no reader holds any more;
    /// builds a new one while fewer than [`FLATS_KEPT`] are kept; otherwise (every kept
    /// table still held) returns `None`, and lookups read the trie until a later publish
    /// finds one free. `None` too when the table is too small for the flat form or does
    /// not fit it.
    fn publish_flat(&mut self, written: &[u16]) -> Option<Arc<Flat>> {
        if self.prefixes >= self.flat_min {
            self.flat_on = true;
        } else if self.prefixes < self.flat_min / 2 {
            self.flat_on = false;
        }
        if !self.flat_on || self.flat_wait > 0 {
            self.flat_wait = self.flat_wait.saturating_sub(1);
            self.flats.clear();
            return None;
        }
        for kept in &mut self.flats {
            for &x in written {
                kept.stale.set(x);
            }
        }
        // One that nothing changed since it was written (a publish that changed no /16)
        // is the new table as it is, held or not.
        if let Some(kept) = self.flats.iter().find(|k| k.stale.is_empty()) {
            return Some(Arc::clone(&kept.flat));
        }
        let root = &self.table.root;
        let mut full = None;
        for (i, kept) in self.flats.iter_mut().enumerate() {
            // `None`: a reader still holds it (its grace period has not passed).
            if let Some(flat) = Arc::get_mut(&mut kept.flat) {
                let stale: Vec<u16> = kept.stale.drain().collect();
                // Every stale /16's groups are freed before any is written, so that a
                // /16 that needs more groups can take those of one after it.
                for &x in &stale {
                    flat.release(x);
                }
                let values = &mut self.values;
                if stale
                    .iter()
                    .try_for_each(|&x| flat.write(x, root.slot(x), values))
                    .is_ok()
                {
                    flat.sync_values(values);
                    return Some(Arc::clone(&kept.flat));
                }
                full = Some(i);
                break;
            }
        }
        if let Some(i) = full {
            // Half-written: it goes, and a new one is built (with a new numbering if
            // that is what filled up).
            self.flats.swap_remove(i);
        } else if self.flats.len() >= FLATS_KEPT {
            return None;
        }
        match self.build_flat() {
            Some((flat, kept_numbering)) => {
                self.flat_backoff = 1;
                if !kept_numbering {
                    // The other tables' entries number next hops the old way.
                    self.flats.clear();
                }
                self.flats.push(KeptFlat {
                    flat: Arc::clone(&flat),
                    stale: Bitmap::new(),
                });
                Some(flat)
            }
            None => {
                self.flats.clear();
                self.flat_wait = self.flat_backoff;
                self.flat_backoff = (self.flat_backoff * 2).min(256);
                None
            }
        }
    }

    /// A new flat table with every /16 of the trie written, and whether the numbering of
    /// next hops is the one the previous tables use (it starts again when full).
    fn build_flat(&mut self) -> Option<(Arc<Flat>, bool)> {
        let root = &self.table.root;
        let fill = |values: &mut Interner| {
            let mut flat = Flat::new();
            for x in 0..=u16::MAX {
                let slot = root.slot(x);
                if slot.sub.is_some() || slot.leaf != NONE {
                    flat.write(x, slot, values)?;
                }
            }
            flat.sync_values(values);
            Ok::<_, FlatFull>(flat)
        };
        if let Ok(flat) = fill(&mut self.values) {
            return Some((Arc::new(flat), true));
        }
        if self.values.list.len() < FLAT_MAX {
            // The groups filled up: a new numbering would not help.
            return None;
        }
        // Numbered next hops that no rule uses any more may be what filled it.
        self.values = Interner::new();
        fill(&mut self.values)
            .ok()
            .map(|flat| (Arc::new(flat), false))
    }

    /// Approximate heap bytes of the rule set (not counting the table, nor the flat
    /// tables kept for publishing: up to [`FLATS_KEPT`] of [`Ipv4LpmStats::flat_bytes`]
    /// each, the current table's included).
    pub fn memory_bytes(&self) -> usize {
        self.short.capacity() * size_of::<u32>()
            + self.long.capacity() * size_of::<Vec<LongRule>>()
            + self
                .long
                .iter()
                .map(|r| r.capacity() * size_of::<LongRule>())
                .sum::<usize>()
            + 2 * size_of::<[u64; 1024]>()
    }
}

fn prefix(bits: u32, len: u8) -> Ipv4Prefix {
    // `bits` has no host bits and `len <= 32` by construction of the rule store.
    match Ipv4Prefix::truncating(Ipv4Addr::from_bits(bits), len) {
        Ok(p) => p,
        Err(_) => unreachable!("rule lengths are at most 32"),
    }
}

/// The raw next hop of the longest prefix of length <= 16 that contains /16 `x`.
fn covering(short: &[u32], x: u16) -> u32 {
    let x = usize::from(x);
    for len in (0..=16).rev() {
        // `short_slot` for a /16's address, without the shift by 32.
        let nh = short[(1 << len) - 1 + (x >> (16 - len))];
        if nh != NONE {
            return nh;
        }
    }
    NONE
}

enum Built {
    /// The whole /16 has this value.
    Leaf(u32),
    Subtree(Arc<Subtree>),
}

/// Expands the rules longer than /16 of one /16 (sorted by length) over `default`.
fn build_subtree(default: u32, rules: &[LongRule]) -> Built {
    if rules.is_empty() {
        return Built::Leaf(default);
    }
    let mut l2: Group = [default; 256];
    let mut l3: Vec<Group> = Vec::new();
    for r in rules {
        let b3 = usize::from(r.lo >> 8);
        if r.len <= 24 {
            let n = 1 << (24 - r.len);
            l2[b3..b3 + n].fill(r.nh);
        } else {
            // Sorted by length: every rule of length <= 24 is painted already, so the
            // /24 entry is the value a new group inherits.
            let g = if l2[b3] & CHILD != 0 {
                (l2[b3] & !CHILD) as usize
            } else {
                l3.push([l2[b3]; 256]);
                l2[b3] = CHILD | (l3.len() - 1) as u32;
                l3.len() - 1
            };
            let b4 = usize::from(r.lo & 0xff);
            let n = 1 << (32 - r.len);
            l3[g][b4..b4 + n].fill(r.nh);
        }
    }
    let first = l2[0];
    if l3.is_empty() && l2.iter().all(|&e| e == first) {
        return Built::Leaf(first);
    }
    Built::Subtree(Arc::new(Subtree {
        l2,
        l3: l3.into_boxed_slice(),
    }))
}

impl Default for Ipv4LpmBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Ipv4LpmBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv4LpmBuilder")
            .field("prefixes", &self.prefixes)
            .field("pending_slash16s", &self.dirty.count())
            .field("table", &self.table)
            .finish()
    }
}

impl Extend<(Ipv4Prefix, NextHop)> for Ipv4LpmBuilder {
    fn extend<I: IntoIterator<Item = (Ipv4Prefix, NextHop)>>(&mut self, rules: I) {
        for (prefix, nh) in rules {
            self.insert(prefix, nh);
        }
    }
}

impl FromIterator<(Ipv4Prefix, NextHop)> for Ipv4LpmBuilder {
    /// A builder with these rules, not yet published.
    fn from_iter<I: IntoIterator<Item = (Ipv4Prefix, NextHop)>>(rules: I) -> Self {
        let mut builder = Self::new();
        builder.extend(rules);
        builder
    }
}
