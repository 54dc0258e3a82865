//! DPDK's own IPv6 longest-prefix-match tables, `rte_lpm6` and `rte_fib6` (its trie type),
//! behind a small safe API: the references our [`crate::lpm::Ipv6Lpm`] is measured (and
//! checked) against. Nothing in the dataplane uses them.
//!
//! Both are DIR-24-8 style tables stretched to 128 bits: a first level of 2^24 entries (for
//! the first three bytes of the address) allocated up front, then chains of 256-entry
//! groups, one byte of the address each, taken from a pool whose size is fixed when the
//! table is made (`number_tbl8s` / `num_tbl8`). Both live in EAL memory (`rte_zmalloc`), so
//! they borrow the running [`Eal`] and are freed on drop; give EAL enough memory (`-m`): the
//! first level alone is 64 MiB with 4-byte entries, and every group 1 KiB.
//!
//! Addresses are the 16 network-order bytes of the address (what DPDK takes). A table is
//! `Send`, not `Sync` (as for the IPv4 ones: `&mut` for changes, `&` for lookups).

use super::eal::Eal;
use super::error::{rte_errno, DpdkError, Result};
use super::reference_lpm::{c_name, check_depth, table_error};
use std::ptr::NonNull;

/// The largest next hop `rte_lpm6` stores (its table entries keep 21 bits of it).
pub const RTE_LPM6_MAX_NEXT_HOP: u32 = (1 << 21) - 1;

/// An `rte_lpm6` table.
#[derive(Debug)]
pub struct RteLpm6<'eal> {
    ptr: NonNull<dpdk_sys::rte_lpm6>,
    name: String,
    max_rules: u32,
    number_tbl8s: u32,
    _eal: &'eal Eal,
}

// SAFETY: the table is plain memory in EAL's heap (its rule hash included); nothing in it
// is tied to the creating thread, and this wrapper hands out no shared mutable access.
unsafe impl Send for RteLpm6<'_> {}

impl<'eal> RteLpm6<'eal> {
    /// Create an empty table named `name` (unique among the process's LPM6 tables) that
    /// holds up to `max_rules` prefixes and `number_tbl8s` groups of 256 entries.
    pub fn new(eal: &'eal Eal, name: &str, max_rules: u32, number_tbl8s: u32) -> Result<Self> {
        let cname = c_name(name)?;
        let config = dpdk_sys::rte_lpm6_config {
            max_rules,
            number_tbl8s,
            flags: 0,
        };
        // SAFETY: EAL is running (borrowed); the name and config are valid for the call,
        // and rte_lpm6_create copies what it keeps.
        let raw = unsafe {
            dpdk_sys::rte_lpm6_create(cname.as_ptr(), dpdk_sys::rte_socket_id() as i32, &config)
        };
        let ptr = NonNull::new(raw).ok_or_else(|| table_error(name, "create", rte_errno()))?;
        Ok(RteLpm6 {
            ptr,
            name: name.into(),
            max_rules,
            number_tbl8s,
            _eal: eal,
        })
    }

    /// Add (or replace) the prefix `ip/depth` (host bits are ignored) with `next_hop` (at
    /// most [`RTE_LPM6_MAX_NEXT_HOP`]).
    pub fn add(&mut self, ip: &[u8; 16], depth: u8, next_hop: u32) -> Result<()> {
        check_depth(&self.name, depth, 128)?;
        if next_hop > RTE_LPM6_MAX_NEXT_HOP {
            return Err(DpdkError::Unsupported(format!(
                "{}: next hop {next_hop} does not fit in 21 bits",
                self.name
            )));
        }
        // SAFETY: the table is valid until drop and `&mut self` excludes concurrent use;
        // `ip` points to the 16 bytes the call reads.
        let ret =
            unsafe { dpdk_sys::rte_lpm6_add(self.ptr.as_ptr(), ip.as_ptr(), depth, next_hop) };
        if ret < 0 {
            return Err(table_error(&self.name, "add", ret.saturating_neg()));
        }
        Ok(())
    }

    /// Remove the prefix `ip/depth` (host bits are ignored).
    pub fn delete(&mut self, ip: &[u8; 16], depth: u8) -> Result<()> {
        check_depth(&self.name, depth, 128)?;
        // SAFETY: as for `add`.
        let ret = unsafe { dpdk_sys::rte_lpm6_delete(self.ptr.as_ptr(), ip.as_ptr(), depth) };
        if ret < 0 {
            return Err(table_error(&self.name, "delete", ret.saturating_neg()));
        }
        Ok(())
    }

    /// The next hop of the longest prefix that contains `ip`.
    #[inline]
    pub fn lookup(&self, ip: &[u8; 16]) -> Option<u32> {
        let mut hop = 0u32;
        // SAFETY: the table is valid until drop; `ip` holds the 16 bytes read and `hop` is
        // a valid place for one u32.
        let ret = unsafe { dpdk_sys::rte_lpm6_lookup(self.ptr.as_ptr(), ip.as_ptr(), &mut hop) };
        (ret == 0).then_some(hop)
    }

    /// Look up each address of `ips` into the same position of `out`: the next hop, or -1
    /// where no prefix matched (DPDK's raw format). Only the first
    /// `min(ips.len(), out.len())` addresses are looked up.
    #[inline]
    pub fn lookup_bulk(&self, ips: &[[u8; 16]], out: &mut [i32]) {
        let n = ips.len().min(out.len());
        let Ok(count) = u32::try_from(n) else {
            for (i, o) in ips.chunks(1 << 30).zip(out.chunks_mut(1 << 30)) {
                self.lookup_bulk(i, o);
            }
            return;
        };
        // SAFETY: the table is valid until drop; `ips` and `out` hold at least `n` entries
        // and do not overlap. DPDK declares `ips` mutable but only reads it. With valid
        // arguments the call cannot fail.
        unsafe {
            dpdk_sys::rte_lpm6_lookup_bulk_func(
                self.ptr.as_ptr(),
                ips.as_ptr().cast_mut(),
                out.as_mut_ptr(),
                count,
            )
        };
    }

    /// Bytes DPDK allocated for the lookup structure: the first level (2^24 entries of 4
    /// bytes) and every configured group. The rules (a hash table of `max_rules` entries)
    /// and the groups' bookkeeping are not counted.
    pub fn allocated_bytes(&self) -> usize {
        ((1usize << 24) + self.number_tbl8s as usize * 256) * 4
    }

    /// The rules the table was sized for.
    pub fn max_rules(&self) -> u32 {
        self.max_rules
    }
}

impl Drop for RteLpm6<'_> {
    fn drop(&mut self) {
        // SAFETY: the table was created by rte_lpm6_create and is freed once, here; no
        // borrow of it outlives `self`.
        unsafe { dpdk_sys::rte_lpm6_free(self.ptr.as_ptr()) };
    }
}

/// The size of an `rte_fib6` trie next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fib6NextHop {
    /// 2-byte entries: next hops up to 2^15 - 1; 32 MiB first level.
    Bytes2,
    /// 4-byte entries: next hops up to 2^31 - 1; 64 MiB first level.
    Bytes4,
    /// 8-byte entries: next hops up to 2^63 - 1; 128 MiB first level.
    Bytes8,
}

impl Fib6NextHop {
    fn raw(self) -> dpdk_sys::rte_fib_trie_nh_sz {
        match self {
            Fib6NextHop::Bytes2 => dpdk_sys::RTE_FIB6_TRIE_2B,
            Fib6NextHop::Bytes4 => dpdk_sys::RTE_FIB6_TRIE_4B,
            Fib6NextHop::Bytes8 => dpdk_sys::RTE_FIB6_TRIE_8B,
        }
    }

    /// Bytes per entry.
    pub fn bytes(self) -> usize {
        match self {
            Fib6NextHop::Bytes2 => 2,
            Fib6NextHop::Bytes4 => 4,
            Fib6NextHop::Bytes8 => 8,
        }
    }

    /// The largest next hop (and default) the table stores (one bit flags a group).
    pub fn max(self) -> u64 {
        (1u64 << (self.bytes() * 8 - 1)) - 1
    }
}

/// Which `rte_fib6` trie bulk lookup to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fib6Lookup {
    /// DPDK's choice: AVX-512 where the CPU has it and EAL allows 512-bit SIMD
    /// (`--force-max-simd-bitwidth=512`), else the scalar one.
    Default,
    /// The scalar lookup.
    Scalar,
    /// The AVX-512 vector lookup.
    Avx512,
}

impl Fib6Lookup {
    fn raw(self) -> dpdk_sys::rte_fib6_lookup_type {
        match self {
            Fib6Lookup::Default => dpdk_sys::RTE_FIB6_LOOKUP_DEFAULT,
            Fib6Lookup::Scalar => dpdk_sys::RTE_FIB6_LOOKUP_TRIE_SCALAR,
            Fib6Lookup::Avx512 => dpdk_sys::RTE_FIB6_LOOKUP_TRIE_VECTOR_AVX512,
        }
    }
}

/// An `rte_fib6` table of type trie (`RTE_FIB6_TRIE`). Lookups that match no prefix return
/// the table's default next hop.
#[derive(Debug)]
pub struct RteFib6<'eal> {
    ptr: NonNull<dpdk_sys::rte_fib6>,
    name: String,
    nh: Fib6NextHop,
    max_routes: u32,
    num_tbl8: u32,
    _eal: &'eal Eal,
}

// SAFETY: as for `RteLpm6`: EAL heap memory, no thread affinity, no shared mutable access.
unsafe impl Send for RteFib6<'_> {}

impl<'eal> RteFib6<'eal> {
    /// Create an empty trie named `name` (unique among the process's FIB6s) with room for
    /// `max_routes` prefixes (its RIB) and `num_tbl8` groups; addresses no prefix covers
    /// look up as `default_nh` (at most `nh.max()`).
    pub fn new(
        eal: &'eal Eal,
        name: &str,
        nh: Fib6NextHop,
        max_routes: u32,
        num_tbl8: u32,
        default_nh: u64,
    ) -> Result<Self> {
        let cname = c_name(name)?;
        let max_routes_c = i32::try_from(max_routes).map_err(|_| {
            DpdkError::Unsupported(format!("{name}: max_routes {max_routes} is too large"))
        })?;
        let mut conf = dpdk_sys::rte_fib6_conf {
            type_: dpdk_sys::RTE_FIB6_TRIE,
            default_nh,
            max_routes: max_routes_c,
            rib_ext_sz: 0,
            __bindgen_anon_1: dpdk_sys::rte_fib6_conf__bindgen_ty_1 {
                trie: dpdk_sys::rte_fib6_conf__bindgen_ty_1__bindgen_ty_1 {
                    nh_sz: nh.raw(),
                    num_tbl8,
                },
            },
        };
        // SAFETY: EAL is running (borrowed); the name and configuration are valid for the
        // call, and rte_fib6_create copies what it keeps.
        let raw = unsafe {
            dpdk_sys::rte_fib6_create(cname.as_ptr(), dpdk_sys::rte_socket_id() as i32, &mut conf)
        };
        let ptr = NonNull::new(raw).ok_or_else(|| table_error(name, "create", rte_errno()))?;
        Ok(RteFib6 {
            ptr,
            name: name.into(),
            nh,
            max_routes,
            num_tbl8,
            _eal: eal,
        })
    }

    /// Add (or replace) the prefix `ip/depth` (host bits are ignored) with `next_hop` (at
    /// most `nh.max()`).
    pub fn add(&mut self, ip: &[u8; 16], depth: u8, next_hop: u64) -> Result<()> {
        check_depth(&self.name, depth, 128)?;
        if next_hop > self.nh.max() {
            return Err(DpdkError::Unsupported(format!(
                "{}: next hop {next_hop} is larger than {}",
                self.name,
                self.nh.max()
            )));
        }
        // SAFETY: the table is valid until drop and `&mut self` excludes concurrent use;
        // `ip` points to the 16 bytes the call reads.
        let ret =
            unsafe { dpdk_sys::rte_fib6_add(self.ptr.as_ptr(), ip.as_ptr(), depth, next_hop) };
        if ret < 0 {
            return Err(table_error(&self.name, "add", ret.saturating_neg()));
        }
        Ok(())
    }

    /// Remove the prefix `ip/depth` (host bits are ignored).
    pub fn delete(&mut self, ip: &[u8; 16], depth: u8) -> Result<()> {
        check_depth(&self.name, depth, 128)?;
        // SAFETY: as for `add`.
        let ret = unsafe { dpdk_sys::rte_fib6_delete(self.ptr.as_ptr(), ip.as_ptr(), depth) };
        if ret < 0 {
            return Err(table_error(&self.name, "delete", ret.saturating_neg()));
        }
        Ok(())
    }

    /// Choose the bulk lookup implementation (fails where the CPU or EAL does not allow it).
    pub fn select_lookup(&mut self, lookup: Fib6Lookup) -> Result<()> {
        // SAFETY: the table is valid until drop; `&mut self` excludes concurrent lookups
        // while the function pointer changes.
        let ret = unsafe { dpdk_sys::rte_fib6_select_lookup(self.ptr.as_ptr(), lookup.raw()) };
        if ret < 0 {
            return Err(table_error(
                &self.name,
                "select lookup",
                ret.saturating_neg(),
            ));
        }
        Ok(())
    }

    /// Look up each address of `ips` into the same position of `out` (the default next hop
    /// where no prefix matches). Only the first `min(ips.len(), out.len())` addresses are
    /// looked up.
    #[inline]
    pub fn lookup_bulk(&self, ips: &[[u8; 16]], out: &mut [u64]) {
        let n = ips.len().min(out.len());
        let Ok(count) = i32::try_from(n) else {
            for (i, o) in ips.chunks(1 << 30).zip(out.chunks_mut(1 << 30)) {
                self.lookup_bulk(i, o);
            }
            return;
        };
        // SAFETY: the table is valid until drop; `ips` and `out` hold at least `n` entries
        // and do not overlap. DPDK declares `ips` mutable but only reads it. The lookup
        // does not change the table, so `&self` is enough. With a valid table and n >= 0
        // the call cannot fail.
        unsafe {
            dpdk_sys::rte_fib6_lookup_bulk(
                self.ptr.as_ptr(),
                ips.as_ptr().cast_mut(),
                out.as_mut_ptr(),
                count,
            )
        };
    }

    /// The next hop of `ip` (a bulk lookup of one: `rte_fib6` has no single lookup).
    #[inline]
    pub fn lookup(&self, ip: &[u8; 16]) -> u64 {
        let mut out = [0u64; 1];
        self.lookup_bulk(core::slice::from_ref(ip), &mut out);
        out[0]
    }

    /// Bytes DPDK allocated for the lookup structure: the first level (2^24 entries) and
    /// every configured group. The RIB beside it (one node per prefix and per branching
    /// point, up to `max_routes`) and the groups' index pool are not counted.
    pub fn allocated_bytes(&self) -> usize {
        ((1usize << 24) + self.num_tbl8 as usize * 256) * self.nh.bytes()
    }

    /// The routes the RIB was sized for.
    pub fn max_routes(&self) -> u32 {
        self.max_routes
    }

    /// The next-hop size.
    pub fn next_hop_size(&self) -> Fib6NextHop {
        self.nh
    }
}

impl Drop for RteFib6<'_> {
    fn drop(&mut self) {
        // SAFETY: the table was created by rte_fib6_create and is freed once, here; no
        // borrow of it outlives `self`.
        unsafe { dpdk_sys::rte_fib6_free(self.ptr.as_ptr()) };
    }
}
