//! Running a function on worker lcores, scoped: the call returns (or unwinds) only after
//! every lcore it launched has finished.
//!
//! The launched function borrows from the caller's stack, so no path out of a launch may
//! leave a worker running: not a launch that fails part-way, not a panic on the main lcore.
//! Both tell the workers to stop through the caller's stop flag, then wait for them.

use super::eal::Eal;
use super::error::{errno_message, DpdkError, Result};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

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
    // SAFETY: arg is the &Job passed by launch_on_workers_with_main, whose `Launched` guard
    // waits for every lcore it launched before the Job goes out of scope (on return and on
    // unwind alike), so the reference is live for this whole call.
    let job = unsafe { &*(arg as *const Job<'_>) };
    let id = current_lcore().unwrap_or(u32::MAX);
    // A panic must not unwind into C.
    catch_unwind(AssertUnwindSafe(|| (job.f)(id))).unwrap_or(-1)
}

/// Run `f(lcore_id)` on every worker lcore (not the main one) and wait for all of them.
/// Returns each worker's (lcore, return value). Must be called from the thread that
/// started EAL. A panicking worker returns -1. `f` must return by itself: nothing tells
/// it to stop.
pub fn launch_on_workers<F>(eal: &Eal, f: F) -> Result<Vec<(LcoreId, i32)>>
where
    F: Fn(LcoreId) -> i32 + Sync,
{
    let unused = AtomicBool::new(false);
    launch_on_workers_with_main(eal, &eal.worker_lcores(), &unused, f, || {})
}

/// Run `f(lcore)` on each of `lcores` (worker lcores, each at most once) and `on_main` on
/// the calling (main) lcore meanwhile: the place for a supervisor loop. Returns each
/// worker's (lcore, return value), in the order of `lcores`, once all have returned.
///
/// `f` must return soon after `stop` is set. The launch sets `stop` itself, then waits for
/// every lcore it launched, whichever way the call ends:
/// - when `on_main` returns;
/// - when `on_main` panics (the panic goes on once the workers have returned);
/// - when launching on one of the lcores fails: `on_main` is not run, the lcores already
///   launched are stopped and waited for, and the error names the lcore that refused.
///
/// Must be called from the thread that started EAL; an lcore that is not a worker lcore,
/// or one named twice, is refused before anything is launched. A panicking worker
/// returns -1.
pub fn launch_on_workers_with_main<F, M>(
    eal: &Eal,
    lcores: &[LcoreId],
    stop: &AtomicBool,
    f: F,
    on_main: M,
) -> Result<Vec<(LcoreId, i32)>>
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
    let workers = eal.worker_lcores();
    for (i, l) in lcores.iter().enumerate() {
        if !workers.contains(l) {
            return Err(DpdkError::Launch {
                errno: 0,
                message: format!("lcore {l} is not a worker lcore (EAL's are {workers:?})"),
            });
        }
        if lcores[..i].contains(l) {
            return Err(DpdkError::Launch {
                errno: 0,
                message: format!("lcore {l} is named twice"),
            });
        }
    }
    // Declared before the guard, so dropped after it: the job outlives every wait.
    let job = Job { f: &f };
    let arg = (&job as *const Job<'_>).cast_mut().cast::<c_void>();
    let mut launched = Launched {
        lcores: Vec::with_capacity(lcores.len()),
        stop,
    };
    for &l in lcores {
        // SAFETY: l is a worker lcore; the trampoline only uses `arg` until `launched`
        // has waited for l, which happens before `job` goes out of scope.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, l) };
        if ret != 0 {
            // Stops and waits for the lcores already launched.
            drop(launched);
            let errno = ret.saturating_neg();
            return Err(DpdkError::Launch {
                errno,
                message: format!("lcore {l}: {}", errno_message(errno)),
            });
        }
        launched.lcores.push(l);
    }
    // A panic here unwinds through `launched`, whose drop stops and waits for the workers.
    on_main();
    Ok(launched.finish())
}

/// The lcores a launch started: on drop, told to stop and waited for.
struct Launched<'s> {
    lcores: Vec<LcoreId>,
    stop: &'s AtomicBool,
}

impl Launched<'_> {
    /// Stop the workers, wait for each, and return what each returned.
    fn finish(mut self) -> Vec<(LcoreId, i32)> {
        self.stop.store(true, Ordering::Release);
        std::mem::take(&mut self.lcores)
            .into_iter()
            // SAFETY: waits for a worker this launch started; afterwards it no longer
            // uses the job.
            .map(|l| (l, unsafe { dpdk_sys::rte_eal_wait_lcore(l) }))
            .collect()
    }
}

impl Drop for Launched<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for &l in &self.lcores {
            // SAFETY: as in `finish`; the return value is lost with the launch.
            unsafe { dpdk_sys::rte_eal_wait_lcore(l) };
        }
    }
}
