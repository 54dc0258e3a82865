//! Scoped lcore launches never leave a worker running behind them: a launch that fails
//! part-way stops and waits for the lcores it did start (and returns, instead of waiting
//! forever for workers nobody told to stop), and a panic on the main lcore waits for the
//! workers before it unwinds past what they borrow. Launches onto lcores that are not
//! workers are refused up front.
//!
//! One EAL per process: one test, run on a thread of its own so that a hang fails the test
//! at a deadline instead of stalling the suite. The flags the workers touch are statics, so
//! that even a broken launch (one that leaves workers running) never has them read freed
//! memory.

use backbone_tests::file_prefix;
use dataplane::dpdk::{launch_on_workers_with_main, DpdkError, Eal};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the whole test may take before it counts as hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Wait until `cond` holds, or fail after `limit` saying what did not happen.
fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::yield_now();
    }
}

/// Spin (politely: the lcores may share a CPU) until `flag` is set.
fn spin_until(flag: &AtomicBool) {
    while !flag.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
}

#[test]
fn failed_launches_and_panicking_main_stop_and_wait_for_workers() {
    let (done_tx, done_rx) = mpsc::channel();
    let body = std::thread::spawn(move || {
        body();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(DEADLINE) {
        Ok(()) => body.join().expect("the test thread"),
        // The body panicked (a failed assertion): show its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = body.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("hung: a launch did not return within {DEADLINE:?}")
        }
    }
}

fn body() {
    let mut args = pipeline_config::eal_args_no_nic(&file_prefix("lcores"));
    // Two workers, on a CPU of their own where there is one.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let w = usize::from(cpus > 1);
    args.push(format!("--lcores=0@0,1@{w},2@{w}"));
    let eal = Eal::init(&args).expect("EAL starts");
    assert_eq!(eal.worker_lcores(), vec![1, 2]);

    refused_up_front(&eal);
    failed_launch_stops_the_launched(&eal);
    panicking_main_waits_for_workers(&eal);
}

/// The main lcore, an lcore EAL does not have, and an lcore named twice: refused, and
/// nothing runs.
fn refused_up_front(eal: &Eal) {
    static RAN: AtomicU32 = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    for lcores in [&[0][..], &[1, 7], &[1, 1]] {
        let r = launch_on_workers_with_main(
            eal,
            lcores,
            &stop,
            |_| {
                RAN.fetch_add(1, Ordering::SeqCst);
                0
            },
            || panic!("on_main runs only after a launch"),
        );
        assert!(
            matches!(r, Err(DpdkError::Launch { errno: 0, .. })),
            "{lcores:?}: {r:?}"
        );
    }
    assert_eq!(RAN.load(Ordering::SeqCst), 0);
}

/// Lcore 2 is busy with another launch; a launch onto lcores 1 and 2 starts lcore 1, fails
/// on lcore 2, and must stop lcore 1 (whose job runs until told to stop) and wait for it.
fn failed_launch_stops_the_launched(eal: &Eal) {
    static OUTER_STOP: AtomicBool = AtomicBool::new(false);
    static OUTER_RUNNING: AtomicBool = AtomicBool::new(false);
    static INNER_STOP: AtomicBool = AtomicBool::new(false);
    static INNER_STARTED: AtomicU32 = AtomicU32::new(0);
    static INNER_STOPPED: AtomicU32 = AtomicU32::new(0);
    let mut inner_result = None;
    let mut inner_main_ran = false;
    let outer = launch_on_workers_with_main(
        eal,
        &[2],
        &OUTER_STOP,
        |_| {
            OUTER_RUNNING.store(true, Ordering::Release);
            spin_until(&OUTER_STOP);
            0
        },
        || {
            // Lcore 2 is running the outer job from here on: launching onto it is refused.
            wait_until("the outer job runs", Duration::from_secs(10), || {
                OUTER_RUNNING.load(Ordering::Acquire)
            });
            inner_result = Some(launch_on_workers_with_main(
                eal,
                &[1, 2],
                &INNER_STOP,
                |_| {
                    INNER_STARTED.fetch_add(1, Ordering::SeqCst);
                    spin_until(&INNER_STOP);
                    INNER_STOPPED.fetch_add(1, Ordering::SeqCst);
                    5
                },
                || inner_main_ran = true,
            ));
        },
    );
    assert_eq!(outer, Ok(vec![(2, 0)]), "the outer launch ends normally");
    match inner_result.expect("the outer on_main ran") {
        Err(DpdkError::Launch { errno, message }) => {
            assert_eq!(errno, 16, "EBUSY: {message}");
            assert!(
                message.contains("lcore 2"),
                "the busy lcore is named: {message}"
            );
        }
        other => panic!("expected a launch error, got {other:?}"),
    }
    assert!(
        !inner_main_ran,
        "on_main does not run after a failed launch"
    );
    assert!(
        INNER_STOP.load(Ordering::SeqCst),
        "the launch set its stop flag"
    );
    // Lcore 1 ran the job, saw the stop flag and returned before the launch returned.
    assert_eq!(INNER_STARTED.load(Ordering::SeqCst), 1);
    assert_eq!(INNER_STOPPED.load(Ordering::SeqCst), 1);
}

/// `on_main` panics while both workers run: the launch stops them and waits for them
/// before the panic leaves it.
fn panicking_main_waits_for_workers(eal: &Eal) {
    static STOP: AtomicBool = AtomicBool::new(false);
    static STARTED: AtomicU32 = AtomicU32::new(0);
    static FINISHED: AtomicU32 = AtomicU32::new(0);
    let r = catch_unwind(AssertUnwindSafe(|| {
        launch_on_workers_with_main(
            eal,
            &[1, 2],
            &STOP,
            |_| {
                STARTED.fetch_add(1, Ordering::SeqCst);
                spin_until(&STOP);
                FINISHED.fetch_add(1, Ordering::SeqCst);
                0
            },
            || {
                wait_until("both workers run", Duration::from_secs(10), || {
                    STARTED.load(Ordering::SeqCst) == 2
                });
                panic!("the supervisor fails");
            },
        )
    }));
    let panic = r.expect_err("the panic goes on after the workers stop");
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"the supervisor fails"),
        "the panic is the supervisor's own"
    );
    assert_eq!(
        FINISHED.load(Ordering::SeqCst),
        2,
        "both workers returned before the launch unwound"
    );
    // The lcores are free again: a new launch works.
    let again = AtomicBool::new(false);
    let r = launch_on_workers_with_main(eal, &[1, 2], &again, |l| l as i32, || {});
    assert_eq!(r, Ok(vec![(1, 1), (2, 2)]));
}
