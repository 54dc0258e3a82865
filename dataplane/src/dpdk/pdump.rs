//! Packet capture from outside the process: `dpdk-dumpcap` (and `dpdk-pdump`) attach to
//! the running appliance as DPDK secondary processes and ask it, over EAL's multi-process
//! channel, to copy what its ports receive and send into their own ring.
//!
//! [`Capture::enable`] registers the primary's side of that channel (`rte_pdump_init`).
//! It needs EAL's shared configuration: with `--no-shconf` or `--in-memory` there is no
//! multi-process channel, and enabling fails with [`DpdkError::Unsupported`]. While
//! nobody captures, it costs nothing on the workers' path; during a capture each RX and
//! TX burst of the captured queues runs the capture callback (a copy of every packet into
//! the capturing process's pool).

use super::eal::Eal;
use super::error::{errno_message, rte_errno, DpdkError, Result};

/// Captures by secondary processes are allowed while this lives.
#[derive(Debug)]
pub struct Capture<'eal> {
    _eal: &'eal Eal,
}

impl<'eal> Capture<'eal> {
    /// Let `dpdk-dumpcap` attach (`rte_pdump_init`).
    pub fn enable(eal: &'eal Eal) -> Result<Capture<'eal>> {
        // SAFETY: EAL is running (we borrow it); the call registers a multi-process
        // action and reserves a memzone, nothing that refers to our memory.
        let ret = unsafe { dpdk_sys::rte_pdump_init() };
        if ret != 0 {
            let errno = rte_errno();
            return Err(DpdkError::Unsupported(format!(
                "packet capture (rte_pdump_init): {} (rte_errno {errno}); EAL needs its \
                 shared configuration: no --no-shconf, no --in-memory",
                errno_message(errno)
            )));
        }
        Ok(Capture { _eal: eal })
    }
}

impl Drop for Capture<'_> {
    fn drop(&mut self) {
        // SAFETY: undoes the registration made by `enable`; EAL still runs (borrowed).
        let ret = unsafe { dpdk_sys::rte_pdump_uninit() };
        if ret != 0 {
            log::debug!("rte_pdump_uninit: {}", errno_message(rte_errno()));
        }
    }
}
