//! EAL start-up and shutdown.

use super::error::{errno_message, rte_errno, DpdkError, Result};
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set while an `Eal` value exists (or after a start whose cleanup had to be skipped).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The running Environment Abstraction Layer. One per process; dropping it shuts EAL down.
#[derive(Debug)]
pub struct Eal {
    /// Pools created through this EAL, checked for outstanding mbufs before cleanup.
    pools: Mutex<Vec<super::mempool::PoolPtr>>,
    /// The main lcore's thread: lcore launches must come from it.
    main_thread: std::thread::ThreadId,
}

impl Eal {
    /// Start EAL with `args` (the first is the program name, as in `argv`).
    ///
    /// Bad arguments give [`DpdkError::EalInit`] with `rte_errno`; a second start in the same
    /// process gives [`DpdkError::EalAlreadyRunning`]. The calling thread becomes the main lcore.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal> {
        let owned: Vec<CString> = args
            .iter()
            .map(|a| {
                CString::new(a.as_ref()).map_err(|_| DpdkError::NulInArgument(a.as_ref().into()))
            })
            .collect::<Result<_>>()?;
        if RUNNING.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyRunning);
        }
        // rte_eal_init may permute argv; give it a scratch array of pointers into `owned`.
        let mut argv: Vec<*mut c_char> = owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len())
            .map_err(|_| DpdkError::Unsupported("too many EAL arguments".into()))?;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the call
        // (`owned`); EAL only reorders the pointer array, which is ours to lose.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = rte_errno();
            if errno != libc_ealready() {
                // EAL allows another try after a failed start, except once it has run.
                RUNNING.store(false, Ordering::SeqCst);
            }
            return Err(if errno == libc_ealready() {
                DpdkError::EalAlreadyRunning
            } else {
                DpdkError::EalInit {
                    errno,
                    message: errno_message(errno),
                    args: args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "),
                }
            });
        }
        log::info!(
            "EAL started: {}",
            args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
        );
        Ok(Eal {
            pools: Mutex::new(Vec::new()),
            main_thread: std::thread::current().id(),
        })
    }

    /// The DPDK version string, e.g. "DPDK 22.11.11".
    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
        let ptr = unsafe { dpdk_sys::rte_version() };
        if ptr.is_null() {
            return String::from("DPDK (unknown version)");
        }
        // SAFETY: non-null static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }

    /// Number of lcores EAL was given.
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised (self exists); the call only reads its configuration.
        unsafe { dpdk_sys::rte_lcore_count() }
    }

    /// The worker lcores (every EAL lcore but the main one), in id order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: iterating lcore ids only reads EAL's configuration.
        let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < dpdk_sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// Number of ethdev ports available.
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised; the call reads the ethdev table.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    pub(crate) fn register_pool(&self, pool: super::mempool::PoolPtr) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pool);
    }

    pub(crate) fn is_main_thread(&self) -> bool {
        std::thread::current().id() == self.main_thread
    }

    /// Mbufs still out of their pools (allocated and not yet freed), across all pools.
    pub fn mbufs_in_use(&self) -> u64 {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.iter().map(|p| u64::from(p.in_use())).sum()
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        let out = self.mbufs_in_use();
        if out > 0 {
            // Freeing the memory would leave those mbufs dangling: keep it mapped.
            log::warn!("EAL cleanup skipped: {out} mbufs are still in use");
            return;
        }
        // SAFETY: no pool has mbufs out, and every pool, port and queue handle borrows this
        // Eal, so none is alive now; nothing refers to EAL memory after this call.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            log::warn!(
                "EAL cleanup failed: {}",
                errno_message(ret.saturating_neg())
            );
        }
        // EAL cannot be started twice in one process, so RUNNING stays set.
    }
}

fn libc_ealready() -> i32 {
    // EALREADY on Linux.
    114
}
