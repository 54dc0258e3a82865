//! What a port is, for operators: its driver's name. Read by port id, without a [`Port`]
//! handle, so the control side can describe ports it does not own.
//!
//! [`Port`]: super::Port

use super::eal::Eal;
use super::error::{port_error, Result};
use super::port::PortId;
use std::ffi::CStr;

/// The name of the driver behind port `id` (`net_pcap`, `net_virtio_user`, `net_ice`).
pub fn driver_name(_eal: &Eal, id: PortId) -> Result<String> {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: info is a writable struct the call fills; DPDK checks the port id.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
    if ret != 0 {
        return Err(port_error(id, "rte_eth_dev_info_get", ret));
    }
    if info.driver_name.is_null() {
        return Ok(String::from("unknown"));
    }
    // SAFETY: non-null: the driver's static NUL-terminated name.
    Ok(unsafe { CStr::from_ptr(info.driver_name) }
        .to_string_lossy()
        .into_owned())
}
