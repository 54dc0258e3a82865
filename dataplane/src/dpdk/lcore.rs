//! Running a function on every worker lcore, scoped: the call returns after all have finished.

use super::eal::Eal;
use super::error::{errno_message, DpdkError, Result};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An EAL logical core index.
pub type LcoreId = u32;

/// The calling thread's lcore id, or `None` for a thread EAL did not start.
pub fn current_lcore() -> Option<LcoreId> {
    // SAFETY: reads the calling thread's per-lcore id; always valid.
    let id = unsafe { dpdk_sys::rte_lcore_id() };
    // LCORE_ID_ANY is UINT32_MAX.
    (id != u32::MAX).then_some(id)
}

struct Job<'f> {
    f: &'f (dyn Fn(LcoreId) -> i32 + Sync),
}

unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: arg is the &Job passed by launch_on_workers, which waits for every lcore
    // before returning, so the reference is live for this whole call.
    let job = unsafe { &*(arg as *const Job<'_>) };
    let id = current_lcore().unwrap_or(u32::MAX);
    // A panic must not unwind into C.
    catch_unwind(AssertUnwindSafe(|| (job.f)(id))).unwrap_or(-1)
}

/// Run `f(lcore_id)` on every worker lcore (not the main one) and wait for all of them.
/// Returns each worker's (lcore, return value). Must be called from the thread that
/// started EAL. A panicking worker returns -1.
pub fn launch_on_workers<F>(eal: &Eal, f: F) -> Result<Vec<(LcoreId, i32)>>
where
    F: Fn(LcoreId) -> i32 + Sync,
{
    launch_on_workers_with_main(eal, f, || {})
}

/// Like [`launch_on_workers`], and runs `on_main` on the calling (main) lcore while the
/// workers run, before waiting for them: the place for a supervisor loop that tells the
/// workers when to stop. Workers are waited for even if launching some of them failed.
pub fn launch_on_workers_with_main<F, M>(eal: &Eal, f: F, on_main: M) -> Result<Vec<(LcoreId, i32)>>
where
    F: Fn(LcoreId) -> i32 + Sync,
    M: FnOnce(),
{
    if !eal.is_main_thread() {
        return Err(DpdkError::Launch {
            errno: 0,
            message: "workers can only be launched from the thread that started EAL".into(),
        });
    }
    let job = Job { f: &f };
    let arg = (&job as *const Job<'_>).cast_mut().cast::<c_void>();
    let mut launched = Vec::new();
    let mut failure = None;
    // SAFETY: iterating lcore ids is a read of EAL configuration.
    let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while id < dpdk_sys::RTE_MAX_LCORE {
        // SAFETY: id is a worker lcore; the trampoline only uses `arg` while we wait below.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, id) };
        if ret != 0 {
            failure = Some((id, ret));
            break;
        }
        launched.push(id);
        // SAFETY: as above.
        id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
    }
    if failure.is_none() {
        on_main();
    }
    // Wait for every launched worker even on failure: `job` must outlive them all.
    let results = launched
        .iter()
        // SAFETY: waits for a worker we launched; afterwards it no longer uses `arg`.
        .map(|&l| (l, unsafe { dpdk_sys::rte_eal_wait_lcore(l) }))
        .collect();
    if let Some((lcore, ret)) = failure {
        let errno = ret.saturating_neg();
        return Err(DpdkError::Launch {
            errno,
            message: format!("lcore {lcore}: {}", errno_message(errno)),
        });
    }
    Ok(results)
}
