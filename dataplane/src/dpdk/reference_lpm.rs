//! DPDK's own IPv4 longest-prefix-match tables, `rte_lpm` and `rte_fib` (DIR-24-8), behind a
//! small safe API: the reference our [`crate::lpm::Ipv4Lpm`] is measured (and checked)
//! against. Nothing in the dataplane uses them.
//!
//! Both tables live in EAL memory (`rte_zmalloc`), so they borrow the running [`Eal`] and are
//! freed on drop. Give EAL enough memory (`-m`) for them: DIR-24-8 allocates its whole
//! first level up front (2^24 entries: 64 MiB for `rte_lpm` and for `rte_fib` with 4-byte
//! next hops, 128 MiB with 8-byte ones) plus every second-level group it may use.
//!
//! Addresses are host-order `u32`s, as everywhere in the dataplane. A table is not `Sync`
//! (DPDK's lookups are safe to run concurrently with each other, but this wrapper does not
//! need it and keeps `&mut` for changes); it is `Send`.

use super::eal::Eal;
use super::error::{errno_message, rte_errno, DpdkError, Result};
use std::ffi::CString;
use std::ptr::NonNull;

/// The flag `rte_lpm`'s bulk lookup sets in an output entry when a prefix matched; the low
/// 24 bits are then the next hop.
pub const RTE_LPM_LOOKUP_SUCCESS: u32 = dpdk_sys::RTE_LPM_LOOKUP_SUCCESS;

/// The largest next hop `rte_lpm` stores (24 bits).
pub const RTE_LPM_MAX_NEXT_HOP: u32 = (1 << 24) - 1;

pub(super) fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| DpdkError::NulInArgument(name.into()))
}

/// A failed `rte_lpm_*`/`rte_fib_*` call. `DpdkError` has no variant for lookup tables (its
/// file belongs to the core DPDK layer), so the table, the call and the errno go in the text.
pub(super) fn table_error(table: &str, op: &'static str, errno: i32) -> DpdkError {
    DpdkError::Unsupported(format!(
        "{table}: {op} failed: {} (rte_errno {errno})",
        errno_message(errno)
    ))
}

/// Refuse a prefix length over `max` (32 or 128) before DPDK sees it.
pub(super) fn check_depth(table: &str, depth: u8, max: u8) -> Result<()> {
    if depth > max {
        return Err(DpdkError::Unsupported(format!(
            "{table}: prefix length {depth} is longer than {max}"
        )));
    }
    Ok(())
}

/// An `rte_lpm` table (DIR-24-8 with 24-bit next hops).
#[derive(Debug)]
pub struct RteLpm<'eal> {
    ptr: NonNull<dpdk_sys::rte_lpm>,
    name: String,
    max_rules: u32,
    number_tbl8s: u32,
    _eal: &'eal Eal,
}

// SAFETY: the table is plain memory in EAL's heap; nothing in it is tied to the creating
// thread, and this wrapper hands out no shared mutable access.
unsafe impl Send for RteLpm<'_> {}

impl<'eal> RteLpm<'eal> {
    /// Create an empty table named `name` (unique among the process's LPM tables) that holds
    /// up to `max_rules` prefixes and `number_tbl8s` second-level groups of 256 entries (one
    /// per /24 that holds a longer prefix).
    pub fn new(eal: &'eal Eal, name: &str, max_rules: u32, number_tbl8s: u32) -> Result<Self> {
        let cname = c_name(name)?;
        let config = dpdk_sys::rte_lpm_config {
            max_rules,
            number_tbl8s,
            flags: 0,
        };
        // SAFETY: EAL is running (borrowed); the name and config are valid for the call,
        // and rte_lpm_create copies what it keeps.
        let raw = unsafe {
            dpdk_sys::rte_lpm_create(cname.as_ptr(), dpdk_sys::rte_socket_id() as i32, &config)
        };
        let ptr = NonNull::new(raw).ok_or_else(|| table_error(name, "create", rte_errno()))?;
        Ok(RteLpm {
            ptr,
            name: name.into(),
            max_rules,
            number_tbl8s,
            _eal: eal,
        })
    }

    /// Add (or replace) the prefix `ip/depth` (host bits are ignored) with `next_hop`
    /// (at most [`RTE_LPM_MAX_NEXT_HOP`]).
    pub fn add(&mut self, ip: u32, depth: u8, next_hop: u32) -> Result<()> {
        check_depth(&self.name, depth, 32)?;
        if next_hop > RTE_LPM_MAX_NEXT_HOP {
            return Err(DpdkError::Unsupported(format!(
                "{}: next hop {next_hop} does not fit in 24 bits",
                self.name
            )));
        }
        // SAFETY: the table is valid until drop and `&mut self` excludes concurrent use.
        let ret = unsafe { dpdk_sys::rte_lpm_add(self.ptr.as_ptr(), ip, depth, next_hop) };
        if ret < 0 {
            return Err(table_error(&self.name, "add", ret.saturating_neg()));
        }
        Ok(())
    }

    /// The next hop of the longest prefix that contains `ip`.
    #[inline]
    pub fn lookup(&self, ip: u32) -> Option<u32> {
        let mut hop = 0u32;
        // SAFETY: the table is valid until drop; `hop` is a valid place for one u32.
        let ret = unsafe { dpdk_sys::rte_lpm_lookup(self.ptr.as_ptr(), ip, &mut hop) };
        (ret == 0).then_some(hop)
    }

    /// Look up each address of `ips` into the same position of `out`: the entry has
    /// [`RTE_LPM_LOOKUP_SUCCESS`] set and the next hop in its low 24 bits when a prefix
    /// matched (DPDK's raw format: no pass over the results). Only the first
    /// `min(ips.len(), out.len())` addresses are looked up.
    #[inline]
    pub fn lookup_bulk(&self, ips: &[u32], out: &mut [u32]) {
        let n = ips.len().min(out.len());
        let Ok(count) = u32::try_from(n) else {
            // More than 4 billion addresses: do it in pieces.
            for (i, o) in ips.chunks(1 << 30).zip(out.chunks_mut(1 << 30)) {
                self.lookup_bulk(i, o);
            }
            return;
        };
        // SAFETY: the table is valid until drop; `ips` and `out` hold at least `n` entries
        // and do not overlap (one is shared, one exclusive). With valid arguments the call
        // cannot fail.
        unsafe {
            dpdk_sys::rte_lpm_lookup_bulk_func(
                self.ptr.as_ptr(),
                ips.as_ptr(),
                out.as_mut_ptr(),
                count,
            )
        };
    }

    /// Second-level groups in use: /24s that hold a prefix longer than /24.
    pub fn tbl8_groups_used(&self) -> usize {
        // SAFETY: the table is valid until drop and only read here; `tbl24` is the public,
        // fixed-size first level of `struct rte_lpm`.
        let tbl24 = unsafe { &(*self.ptr.as_ptr()).tbl24 };
        tbl24
            .iter()
            .filter(|e| e.valid() != 0 && e.valid_group() != 0)
            .count()
    }

    /// Bytes DPDK allocated for the table: the first level (2^24 entries of 4 bytes), every
    /// configured group, and the rule store (8 bytes per rule).
    pub fn allocated_bytes(&self) -> usize {
        (1usize << 24) * 4 + self.number_tbl8s as usize * 256 * 4 + self.max_rules as usize * 8
    }

    /// Bytes of the lookup structure in use: the first level and the groups in use.
    pub fn used_bytes(&self) -> usize {
        (1usize << 24) * 4 + self.tbl8_groups_used() * 256 * 4
    }
}

impl Drop for RteLpm<'_> {
    fn drop(&mut self) {
        // SAFETY: the table was created by rte_lpm_create and is freed once, here; no
        // borrow of it outlives `self`.
        unsafe { dpdk_sys::rte_lpm_free(self.ptr.as_ptr()) };
    }
}

/// The size of an `rte_fib` DIR-24-8 next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FibNextHop {
    /// 4-byte entries: next hops up to 2^31 - 1; 64 MiB first level.
    Bytes4,
    /// 8-byte entries: next hops up to 2^63 - 1; 128 MiB first level.
    Bytes8,
}

impl FibNextHop {
    fn raw(self) -> dpdk_sys::rte_fib_dir24_8_nh_sz {
        match self {
            FibNextHop::Bytes4 => dpdk_sys::RTE_FIB_DIR24_8_4B,
            FibNextHop::Bytes8 => dpdk_sys::RTE_FIB_DIR24_8_8B,
        }
    }

    /// Bytes per entry.
    pub fn bytes(self) -> usize {
        match self {
            FibNextHop::Bytes4 => 4,
            FibNextHop::Bytes8 => 8,
        }
    }

    /// The largest next hop (and default) the table stores (one bit flags a group).
    pub fn max(self) -> u64 {
        (1u64 << (self.bytes() * 8 - 1)) - 1
    }
}

/// Which `rte_fib` DIR-24-8 bulk lookup to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FibLookup {
    /// DPDK's choice: AVX-512 where the CPU has it and EAL allows 512-bit SIMD
    /// (`--force-max-simd-bitwidth=512`), else the scalar macro version.
    Default,
    /// The scalar lookup specialised for the next-hop size.
    ScalarMacro,
    /// The scalar lookup with the size as a run-time parameter.
    ScalarInline,
    /// The generic scalar lookup.
    ScalarUni,
    /// The AVX-512 vector lookup.
    Avx512,
}

impl FibLookup {
    fn raw(self) -> dpdk_sys::rte_fib_lookup_type {
        match self {
            FibLookup::Default => dpdk_sys::RTE_FIB_LOOKUP_DEFAULT,
            FibLookup::ScalarMacro => dpdk_sys::RTE_FIB_LOOKUP_DIR24_8_SCALAR_MACRO,
            FibLookup::ScalarInline => dpdk_sys::RTE_FIB_LOOKUP_DIR24_8_SCALAR_INLINE,
            FibLookup::ScalarUni => dpdk_sys::RTE_FIB_LOOKUP_DIR24_8_SCALAR_UNI,
            FibLookup::Avx512 => dpdk_sys::RTE_FIB_LOOKUP_DIR24_8_VECTOR_AVX512,
        }
    }
}

/// An `rte_fib` table of type DIR-24-8. Lookups that match no prefix return the table's
/// default next hop.
#[derive(Debug)]
pub struct RteFib<'eal> {
    ptr: NonNull<dpdk_sys::rte_fib>,
    name: String,
    nh: FibNextHop,
    max_routes: u32,
    num_tbl8: u32,
    _eal: &'eal Eal,
}

// SAFETY: as for `RteLpm`: EAL heap memory, no thread affinity, no shared mutable access.
unsafe impl Send for RteFib<'_> {}

impl<'eal> RteFib<'eal> {
    /// Create an empty DIR-24-8 table named `name` (unique among the process's FIBs) with
    /// room for `max_routes` prefixes (its RIB) and `num_tbl8` second-level groups;
    /// addresses no prefix covers look up as `default_nh` (at most `nh.max()`).
    pub fn new(
        eal: &'eal Eal,
        name: &str,
        nh: FibNextHop,
        max_routes: u32,
        num_tbl8: u32,
        default_nh: u64,
    ) -> Result<Self> {
        let cname = c_name(name)?;
        let max_routes_c = i32::try_from(max_routes).map_err(|_| {
            DpdkError::Unsupported(format!("{name}: max_routes {max_routes} is too large"))
        })?;
        let mut conf = dpdk_sys::rte_fib_conf {
            type_: dpdk_sys::RTE_FIB_DIR24_8,
            default_nh,
            max_routes: max_routes_c,
            rib_ext_sz: 0,
            __bindgen_anon_1: dpdk_sys::rte_fib_conf__bindgen_ty_1 {
                dir24_8: dpdk_sys::rte_fib_conf__bindgen_ty_1__bindgen_ty_1 {
                    nh_sz: nh.raw(),
                    num_tbl8,
                },
            },
        };
        // SAFETY: EAL is running (borrowed); the name and configuration are valid for the
        // call, and rte_fib_create copies what it keeps.
        let raw = unsafe {
            dpdk_sys::rte_fib_create(cname.as_ptr(), dpdk_sys::rte_socket_id() as i32, &mut conf)
        };
        let ptr = NonNull::new(raw).ok_or_else(|| table_error(name, "create", rte_errno()))?;
        Ok(RteFib {
            ptr,
            name: name.into(),
            nh,
            max_routes,
            num_tbl8,
            _eal: eal,
        })
    }

    /// Add (or replace) the prefix `ip/depth` (host bits are ignored) with `next_hop`
    /// (at most `nh.max()`).
    pub fn add(&mut self, ip: u32, depth: u8, next_hop: u64) -> Result<()> {
        check_depth(&self.name, depth, 32)?;
        if next_hop > self.nh.max() {
            return Err(DpdkError::Unsupported(format!(
                "{}: next hop {next_hop} is larger than {}",
                self.name,
                self.nh.max()
            )));
        }
        // SAFETY: the table is valid until drop and `&mut self` excludes concurrent use.
        let ret = unsafe { dpdk_sys::rte_fib_add(self.ptr.as_ptr(), ip, depth, next_hop) };
        if ret < 0 {
            return Err(table_error(&self.name, "add", ret.saturating_neg()));
        }
        Ok(())
    }

    /// Choose the bulk lookup implementation (fails where the CPU or EAL does not allow it).
    pub fn select_lookup(&mut self, lookup: FibLookup) -> Result<()> {
        // SAFETY: the table is valid until drop; `&mut self` excludes concurrent lookups
        // while the function pointer changes.
        let ret = unsafe { dpdk_sys::rte_fib_select_lookup(self.ptr.as_ptr(), lookup.raw()) };
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
    pub fn lookup_bulk(&self, ips: &[u32], out: &mut [u64]) {
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
            dpdk_sys::rte_fib_lookup_bulk(
                self.ptr.as_ptr(),
                ips.as_ptr().cast_mut(),
                out.as_mut_ptr(),
                count,
            )
        };
    }

    /// The next hop of `ip` (a bulk lookup of one: `rte_fib` has no single lookup).
    #[inline]
    pub fn lookup(&self, ip: u32) -> u64 {
        let mut out = [0u64; 1];
        self.lookup_bulk(&[ip], &mut out);
        out[0]
    }

    /// Bytes DPDK allocated for the lookup structure: the first level (2^24 entries) and
    /// every configured group (plus DPDK's one spare). The RIB beside it (one node per
    /// prefix and per branching point, up to `max_routes`) is not counted.
    pub fn allocated_bytes(&self) -> usize {
        let e = self.nh.bytes();
        (1usize << 24) * e + (self.num_tbl8 as usize + 1) * 256 * e
    }

    /// The routes the RIB was sized for.
    pub fn max_routes(&self) -> u32 {
        self.max_routes
    }

    /// The next-hop size.
    pub fn next_hop_size(&self) -> FibNextHop {
        self.nh
    }
}

impl Drop for RteFib<'_> {
    fn drop(&mut self) {
        // SAFETY: the table was created by rte_fib_create and is freed once, here; no
        // borrow of it outlives `self`.
        unsafe { dpdk_sys::rte_fib_free(self.ptr.as_ptr()) };
    }
}
