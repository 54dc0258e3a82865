//! Cache hints for the packet path: the one piece of the safe low-level layer that needs no
//! DPDK (the pure pipeline uses it with or without the `dpdk` feature).
//!
//! A prefetch only asks the CPU to bring a cache line closer: it reads nothing the program
//! sees, cannot fault, and is safe for any address. Taking a reference keeps the address a
//! valid one anyway.

/// Ask for the cache line holding `*p` in every cache level (as the next access to it will
/// be a read soon). A no-op where the architecture has no such hint here.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults and changes no architectural state;
    // `p` is a valid reference, so the address is a mapped one in any case.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
