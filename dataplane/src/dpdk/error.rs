//! Typed errors for failing `rte_*` calls, carrying `rte_errno` and DPDK's message for it.

use std::ffi::CStr;
use thiserror::Error;

/// What a failing DPDK call returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DpdkError {
    /// `rte_eal_init` refused the arguments or could not start.
    #[error("EAL init failed: {message} (rte_errno {errno}); arguments: {args}")]
    EalInit {
        errno: i32,
        message: String,
        args: String,
    },
    /// EAL is already running in this process (it starts once per process).
    #[error("EAL is already initialised in this process")]
    EalAlreadyRunning,
    /// An argument cannot be passed to C (it holds a NUL byte).
    #[error("argument {0:?} contains a NUL byte")]
    NulInArgument(String),
    /// Creating a mempool failed.
    #[error("mempool {name:?}: creation failed: {message} (rte_errno {errno})")]
    Mempool {
        name: String,
        errno: i32,
        message: String,
    },
    /// The pool would use mempool ops that are single-producer or single-consumer (EAL's
    /// `--mbuf-pool-ops-name` chose them), but mbufs are allocated and freed on several
    /// threads at once.
    #[error(
        "mempool {name:?}: ops {ops:?} allow only one thread to allocate or to free at a \
         time, and mbufs are allocated and freed on several (drop --mbuf-pool-ops-name, or \
         give ring_mp_mc)"
    )]
    PoolOps { name: String, ops: String },
    /// No ethdev has that name.
    #[error("port {name:?} does not exist (available: {available})")]
    PortNotFound { name: String, available: String },
    /// No ethdev has that index.
    #[error("port {port} does not exist ({count} ports available)")]
    PortIdInvalid { port: u16, count: u16 },
    /// A port operation failed.
    #[error("port {port}: {op} failed: {message} (errno {errno})")]
    Port {
        port: u16,
        op: &'static str,
        errno: i32,
        message: String,
    },
    /// The port's queues were already handed out.
    #[error("port {port}: queues already taken")]
    QueuesTaken { port: u16 },
    /// Launching work on the lcores failed.
    #[error("lcore launch failed: {message} (errno {errno})")]
    Launch { errno: i32, message: String },
    /// A request outside what the device or DPDK supports.
    #[error("{0}")]
    Unsupported(String),
}

/// Result of a DPDK operation.
pub type Result<T> = std::result::Result<T, DpdkError>;

/// The calling thread's `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads the calling thread's per-lcore errno variable; no arguments.
    unsafe { dpdk_sys::backbone_rte_errno() }
}

/// DPDK's text for an errno value (it covers both libc and DPDK's own codes).
pub(crate) fn errno_message(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that is static or
    // per-thread and stays valid until the next call on this thread; we copy it at once.
    let ptr = unsafe { dpdk_sys::rte_strerror(errno) };
    if ptr.is_null() {
        return format!("errno {errno}");
    }
    // SAFETY: non-null and NUL-terminated, as above.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// A port error from a negative return code (`-errno`, as ethdev calls return).
pub(crate) fn port_error(port: u16, op: &'static str, ret: i32) -> DpdkError {
    let errno = ret.saturating_neg();
    DpdkError::Port {
        port,
        op,
        errno,
        message: errno_message(errno),
    }
}
