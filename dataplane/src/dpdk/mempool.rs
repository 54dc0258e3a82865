//! Packet-buffer pools.

use super::eal::Eal;
use super::error::{errno_message, rte_errno, DpdkError, Result};
use super::mbuf::Mbuf;
use std::ffi::{CStr, CString};
use std::ptr::NonNull;

/// A pool of packet buffers, borrowed from the running [`Eal`].
///
/// Pools are never freed before EAL itself: mbufs and RX queues refer to them.
#[derive(Debug, Clone, Copy)]
pub struct Mempool<'eal> {
    ptr: PoolPtr,
    _eal: &'eal Eal,
}

/// A pool pointer that EAL keeps to count outstanding mbufs at shutdown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolPtr(NonNull<dpdk_sys::rte_mempool>);

// SAFETY: a mempool is a DPDK object made for use from many threads at once: `Mempool::new`
// refuses ops that are single-producer or single-consumer, so gets and puts may come from
// any threads together; the pointer stays valid until EAL cleanup.
unsafe impl Send for PoolPtr {}
// SAFETY: as above; all operations through it are thread-safe DPDK calls.
unsafe impl Sync for PoolPtr {}

impl PoolPtr {
    pub(crate) fn in_use(self) -> u32 {
        // SAFETY: the pool is valid until EAL cleanup, which only happens after this check.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.0.as_ptr()) }
    }
}

/// Mempool ops that let only one thread put (free) or get (allocate) at a time. Workers,
/// the control thread and EAL's own threads all allocate and free mbufs, and an [`Mbuf`]
/// may be freed on a thread other than the one that allocated it: such pools are refused.
const SINGLE_THREAD_OPS: [&str; 3] = ["ring_sp_sc", "ring_sp_mc", "ring_mp_sc"];

/// The name of the mempool ops (the driver behind gets and puts) `pool` uses.
fn ops_name(pool: NonNull<dpdk_sys::rte_mempool>) -> String {
    // SAFETY: pool is a valid pool; its ops_index selects an entry of DPDK's ops table,
    // which lives as long as the process.
    let ops = unsafe { dpdk_sys::rte_mempool_get_ops((*pool.as_ptr()).ops_index) };
    // SAFETY: null or an entry of the ops table, valid for the process's life.
    let Some(ops) = (unsafe { ops.as_ref() }) else {
        return String::from("(unknown)");
    };
    // SAFETY: DPDK NUL-terminates every ops name within its fixed-size array.
    unsafe { CStr::from_ptr(ops.name.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl<'eal> Mempool<'eal> {
    /// Create a pool of `count` mbufs with `data_room` bytes each (headroom included) and a
    /// per-lcore cache of `cache` mbufs, on the caller's NUMA socket.
    ///
    /// The pool uses the mempool ops EAL chooses (`ring_mp_mc` unless
    /// `--mbuf-pool-ops-name` or a hardware pool says otherwise); ops that are
    /// single-producer or single-consumer are refused with [`DpdkError::PoolOps`].
    pub fn new(eal: &'eal Eal, name: &str, count: u32, cache: u32, data_room: u16) -> Result<Self> {
        let cname = CString::new(name).map_err(|_| DpdkError::NulInArgument(name.into()))?;
        // SAFETY: EAL is running (borrowed); cname is a valid C string for the call's duration.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                count,
                cache,
                0,
                data_room,
                dpdk_sys::rte_socket_id() as i32,
            )
        };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            let errno = rte_errno();
            DpdkError::Mempool {
                name: name.into(),
                errno,
                message: errno_message(errno),
            }
        })?;
        let ops = ops_name(ptr);
        if SINGLE_THREAD_OPS.contains(&ops.as_str()) {
            // SAFETY: the pool was created just now, has no mbufs out and is known to
            // nothing else (not registered with the Eal): freeing it leaves no pointer.
            unsafe { dpdk_sys::rte_mempool_free(ptr.as_ptr()) };
            return Err(DpdkError::PoolOps {
                name: name.into(),
                ops,
            });
        }
        let ptr = PoolPtr(ptr);
        eal.register_pool(ptr);
        Ok(Mempool { ptr, _eal: eal })
    }

    /// The default data room: 2048 bytes of packet plus DPDK's headroom.
    pub fn default_data_room() -> u16 {
        // SAFETY: returns a compile-time constant.
        unsafe { dpdk_sys::backbone_mbuf_default_buf_size() }
    }

    /// Take one mbuf from the pool (empty, default headroom), or `None` when it is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid while EAL runs; a non-null result is a fresh mbuf that we own.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.ptr.0.as_ptr()) };
        // SAFETY: raw is either null or an mbuf just allocated for us and referenced nowhere else.
        NonNull::new(raw).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    /// An mbuf holding a copy of `bytes`, or `None` when the pool is empty or `bytes` do not fit.
    pub fn alloc_with(&self, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        m.append(bytes).ok()?;
        Some(m)
    }

    /// Mbufs currently free in the pool.
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool; the count is a read of its ring and caches.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.0.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool.
    pub fn in_use(&self) -> u32 {
        self.ptr.in_use()
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.0.as_ptr()
    }
}
