//! Ethernet ports: setup, queues, bursts, link status and counters.

use super::eal::Eal;
use super::error::{errno_message, port_error, DpdkError, Result};
use super::mbuf::Burst;
use super::mempool::Mempool;
use crate::wire::ethernet::EthernetAddress;
use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An ethdev port index.
pub type PortId = u16;

/// How to set a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// RX queues (one per worker that polls this port).
    pub rx_queues: u16,
    /// TX queues (one per worker that may send on this port).
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// MTU to set; `None` keeps the device's.
    pub mtu: Option<u16>,
    /// Spread RX over the queues by RSS when the device offers it.
    pub rss: bool,
    /// Learn link changes from the device's link-status interrupt where it has one, instead
    /// of asking the driver from another thread.
    pub lsc_interrupt: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            rss: true,
            lsc_interrupt: true,
        }
    }
}

/// Link state as the PMD reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    /// Mbit/s, 0 when unknown.
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// Basic per-port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the hardware: RX queues full.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// RX failed for lack of mbufs.
    pub rx_no_mbuf: u64,
}

/// A started port. Stopped and closed on drop (a closed port cannot be started again in
/// this process).
///
/// One thread owns it: DPDK's ethdev control functions (`set_mac`, `mtu`, `stats`,
/// `xstats`, `link`, ...) are not thread-safe, and two calls on one port must never
/// overlap. So `Port` is `Send` (its owner may move it to another thread) but not `Sync`:
/// a `&Port` cannot reach a second thread, and every control call comes from the owner.
/// The data path goes through the queue handles from [`Port::take_queues`], which hold no
/// reference to the `Port` and go to the workers.
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<dataplane::dpdk::Port<'static>>();
/// ```
/// ```
/// fn moved_to_a_thread<T: Send>() {}
/// moved_to_a_thread::<dataplane::dpdk::Port<'static>>();
/// moved_to_a_thread::<dataplane::dpdk::RxQueue<'static>>();
/// moved_to_a_thread::<dataplane::dpdk::TxQueue<'static>>();
/// ```
#[derive(Debug)]
pub struct Port<'eal> {
    id: PortId,
    config: PortConfig,
    rss_enabled: bool,
    queues_taken: Cell<bool>,
    /// Set when the port reports link changes by interrupt: the link state its callback
    /// last read (boxed: DPDK holds its address until the callback is unregistered).
    link_events: Option<Box<LinkCell>>,
    _eal: &'eal Eal,
    /// Not `Sync`: control calls come from the owning thread only (see above).
    _owner: PhantomData<Cell<()>>,
}

/// `RTE_ETH_DEV_INTR_LSC` (rte_ethdev.h; a macro bindgen does not see).
const DEV_INTR_LSC: u32 = 1 << 1;

/// A link state written by the link-status interrupt callback (EAL's interrupt thread) and
/// read by anyone: 0 until known, else bit 63 | up << 33 | full duplex << 32 | speed.
#[derive(Debug, Default)]
struct LinkCell(AtomicU64);

impl LinkCell {
    fn store(&self, l: LinkStatus) {
        let v = 1 << 63
            | u64::from(l.up) << 33
            | u64::from(l.full_duplex) << 32
            | u64::from(l.speed_mbps);
        self.0.store(v, Ordering::Release);
    }

    fn load(&self) -> Option<LinkStatus> {
        let v = self.0.load(Ordering::Acquire);
        (v >> 63 == 1).then_some(LinkStatus {
            up: v >> 33 & 1 == 1,
            full_duplex: v >> 32 & 1 == 1,
            speed_mbps: v as u32,
        })
    }
}

/// Read a port's link state from the driver, without waiting.
fn read_link(id: PortId) -> Result<LinkStatus> {
    let mut link = dpdk_sys::rte_eth_link::default();
    // SAFETY: link is writable; DPDK checks the port id.
    let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(id, &mut link) };
    if ret != 0 {
        return Err(port_error(id, "rte_eth_link_get_nowait", ret));
    }
    Ok(LinkStatus {
        up: link.link_status() != 0,
        speed_mbps: link.link_speed,
        full_duplex: link.link_duplex() != 0,
    })
}

/// The link-status interrupt callback: runs on EAL's interrupt thread, the thread that
/// drives the device's link handling, and records what the link is now.
unsafe extern "C" fn on_link_change(
    port_id: u16,
    _event: dpdk_sys::rte_eth_event_type,
    cb_arg: *mut c_void,
    _ret_param: *mut c_void,
) -> c_int {
    // SAFETY: cb_arg is the LinkCell registered with this callback; the Port that owns it
    // unregisters the callback before freeing it.
    let cell = unsafe { &*cb_arg.cast::<LinkCell>() };
    if let Ok(l) = read_link(port_id) {
        cell.store(l);
    }
    0
}

/// One RX queue of a port, owned by one worker. `Send`, not `Sync`.
#[derive(Debug)]
pub struct RxQueue<'p> {
    port: PortId,
    queue: u16,
    /// Lives no longer than the borrow of its `Port` ('p), without a `&Port`: the port is
    /// not `Sync`, and the handle goes to a worker. The pointer makes it not `Sync`.
    _port: PhantomData<(&'p (), *const ())>,
}

/// One TX queue of a port, owned by one worker. `Send`, not `Sync`.
#[derive(Debug)]
pub struct TxQueue<'p> {
    port: PortId,
    queue: u16,
    /// Lives no longer than the borrow of its `Port` ('p), without a `&Port`: the port is
    /// not `Sync`, and the handle goes to a worker. The pointer makes it not `Sync`.
    _port: PhantomData<(&'p (), *const ())>,
}

// SAFETY: a queue handle is the only handle to that queue (handed out once per port);
// DPDK allows a queue to be used from any single thread at a time.
unsafe impl Send for RxQueue<'_> {}
// SAFETY: as for RxQueue.
unsafe impl Send for TxQueue<'_> {}

fn port_count() -> u16 {
    // SAFETY: reads the ethdev table; EAL is running whenever a Port function is called.
    unsafe { dpdk_sys::rte_eth_dev_count_avail() }
}

fn port_name(id: PortId) -> Option<String> {
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: buf is a writable array of RTE_ETH_NAME_MAX_LEN (64) bytes.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    if ret != 0 {
        return None;
    }
    // SAFETY: on success DPDK wrote a NUL-terminated name into buf.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

impl<'eal> Port<'eal> {
    /// The port id of the ethdev called `name` (e.g. "net_ring0" or "0000:01:00.0").
    pub fn id_by_name(_eal: &'eal Eal, name: &str) -> Result<PortId> {
        let cname = CString::new(name).map_err(|_| DpdkError::NulInArgument(name.into()))?;
        let mut id: u16 = 0;
        // SAFETY: cname is a valid C string; id is a valid place for the result.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            let available = (0..u16::MAX)
                .take(usize::from(port_count()))
                .filter_map(port_name)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(DpdkError::PortNotFound {
                name: name.into(),
                available: if available.is_empty() {
                    "none".into()
                } else {
                    available
                },
            });
        }
        Ok(id)
    }

    /// The most RX and TX queues port `id` offers.
    pub fn queue_limits(_eal: &'eal Eal, id: PortId) -> Result<(u16, u16)> {
        // SAFETY: pure validity check of a port id.
        if unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError::PortIdInvalid {
                port: id,
                count: port_count(),
            });
        }
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port; info is a writable struct the call fills.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(port_error(id, "rte_eth_dev_info_get", ret));
        }
        Ok((info.max_rx_queues, info.max_tx_queues))
    }

    /// Configure and start port `id` with RX buffers from `pool`.
    pub fn start(
        eal: &'eal Eal,
        id: PortId,
        config: &PortConfig,
        pool: &Mempool<'eal>,
    ) -> Result<Self> {
        // SAFETY: pure validity check of a port id.
        if unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(DpdkError::PortIdInvalid {
                port: id,
                count: port_count(),
            });
        }
        if config.rx_queues == 0 || config.tx_queues == 0 {
            return Err(DpdkError::Unsupported(format!(
                "port {id}: needs at least one RX and one TX queue"
            )));
        }
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port; info is a writable struct the call fills.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if ret != 0 {
            return Err(port_error(id, "rte_eth_dev_info_get", ret));
        }
        if config.rx_queues > info.max_rx_queues || config.tx_queues > info.max_tx_queues {
            return Err(DpdkError::Unsupported(format!(
                "port {id}: {} RX / {} TX queues asked, device offers {} / {}",
                config.rx_queues, config.tx_queues, info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: dev_flags points into the port's ethdev data, valid while the port exists.
        let dev_flags = unsafe { info.dev_flags.as_ref() }.copied().unwrap_or(0);
        let lsc = config.lsc_interrupt && dev_flags & DEV_INTR_LSC != 0;
        if lsc {
            conf.intr_conf.set_lsc(1);
        }
        // SAFETY: returns a constant.
        let rss_hf = unsafe { dpdk_sys::backbone_eth_rss_ip() } & info.flow_type_rss_offloads;
        let rss_enabled = config.rss && config.rx_queues > 1 && rss_hf != 0;
        if rss_enabled {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: valid port, stopped (never started, or stopped by a previous Port's drop);
        // conf is a fully initialised configuration.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(id, config.rx_queues, config.tx_queues, &conf)
        };
        if ret != 0 {
            return Err(port_error(id, "rte_eth_dev_configure", ret));
        }
        if let Some(mtu) = config.mtu {
            // SAFETY: valid configured port.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
            if ret == -95 {
                // Virtual devices (pcap, ring) have no MTU to set: expected, not a fault.
                log::debug!("port {id}: the device cannot set MTU {mtu}; keeping its own");
            } else if ret != 0 {
                return Err(port_error(id, "rte_eth_dev_set_mtu", ret));
            }
        }
        let (mut rx_desc, mut tx_desc) = (config.rx_desc, config.tx_desc);
        // SAFETY: valid port; both counts are writable and the call only adjusts them.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) };
        if ret != 0 {
            return Err(port_error(id, "rte_eth_dev_adjust_nb_rx_tx_desc", ret));
        }
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        // A negative socket (unknown, as for virtual devices) becomes SOCKET_ID_ANY (-1).
        let socket = u32::try_from(socket).unwrap_or(u32::MAX);
        for q in 0..config.rx_queues {
            // SAFETY: configured port, queue index below the configured count, pool valid
            // for as long as EAL runs; null rx_conf means the device defaults.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if ret != 0 {
                return Err(port_error(id, "rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..config.tx_queues {
            // SAFETY: configured port, queue index below the configured count.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null())
            };
            if ret != 0 {
                return Err(port_error(id, "rte_eth_tx_queue_setup", ret));
            }
        }
        let link_events = if lsc {
            let cell = Box::new(LinkCell::default());
            let arg = (&*cell as *const LinkCell).cast_mut().cast::<c_void>();
            // SAFETY: configured port; the callback has the signature DPDK expects and
            // cell lives in a Box that the Port keeps until it unregisters the callback.
            let ret = unsafe {
                dpdk_sys::rte_eth_dev_callback_register(
                    id,
                    dpdk_sys::RTE_ETH_EVENT_INTR_LSC,
                    Some(on_link_change),
                    arg,
                )
            };
            if ret != 0 {
                return Err(port_error(id, "rte_eth_dev_callback_register", ret));
            }
            Some(cell)
        } else {
            None
        };
        // SAFETY: configured port with all queues set up.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if ret != 0 {
            if let Some(cell) = link_events {
                unregister_link_events(id, cell);
            }
            return Err(port_error(id, "rte_eth_dev_start", ret));
        }
        if let Some(cell) = &link_events {
            // The state at start; the callback keeps it from now on. A change between this
            // read and an event is followed by that event.
            if cell.load().is_none() {
                if let Ok(l) = read_link(id) {
                    cell.store(l);
                }
            }
        }
        // SAFETY: started port.
        let ret = unsafe { dpdk_sys::rte_eth_promiscuous_disable(id) };
        if ret != 0 && ret != -95 {
            log::warn!("port {id}: cannot turn promiscuous mode off (error {ret})");
        }
        Ok(Port {
            id,
            config: config.clone(),
            rss_enabled,
            queues_taken: Cell::new(false),
            link_events,
            _eal: eal,
            _owner: PhantomData,
        })
    }

    /// The port index.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The ethdev name.
    pub fn name(&self) -> String {
        port_name(self.id).unwrap_or_else(|| format!("port{}", self.id))
    }

    /// Whether RX is spread over the queues by RSS.
    pub fn rss_enabled(&self) -> bool {
        self.rss_enabled
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<EthernetAddress> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port; addr is writable.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr) };
        if ret != 0 {
            return Err(port_error(self.id, "rte_eth_macaddr_get", ret));
        }
        Ok(EthernetAddress(addr.addr_bytes))
    }

    /// Give the port another MAC address (the device filters on it with promiscuous mode
    /// off). Virtual devices may refuse: the error says so.
    pub fn set_mac(&self, mac: EthernetAddress) -> Result<()> {
        let mut addr = dpdk_sys::rte_ether_addr { addr_bytes: mac.0 };
        // SAFETY: valid started port; addr is a valid address the call only reads.
        let ret = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr) };
        if ret != 0 {
            return Err(port_error(self.id, "rte_eth_dev_default_mac_addr_set", ret));
        }
        Ok(())
    }

    /// The MTU the device uses now.
    pub fn mtu(&self) -> Result<u16> {
        let mut mtu = 0u16;
        // SAFETY: valid port; mtu is writable.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.id, &mut mtu) };
        if ret != 0 {
            return Err(port_error(self.id, "rte_eth_dev_get_mtu", ret));
        }
        Ok(mtu)
    }

    /// Link state, without waiting. A port with a link-status interrupt answers from what
    /// its interrupt callback last read: calling into such a driver from another thread
    /// races with its own link handling (virtio-user in server mode takes a returning
    /// vhost-user peer back in that handling, and two threads doing it at once corrupt its
    /// interrupt registration).
    pub fn link(&self) -> Result<LinkStatus> {
        if let Some(l) = self.link_events.as_ref().and_then(|c| c.load()) {
            return Ok(l);
        }
        read_link(self.id)
    }

    /// Whether link changes come from the device's interrupt.
    pub fn link_interrupt(&self) -> bool {
        self.link_events.is_some()
    }

    /// The port's basic counters.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port; s is writable.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        if ret != 0 {
            return Err(port_error(self.id, "rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        })
    }

    /// The device's extended counters, by name.
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        // SAFETY: valid port; a null array asks only for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        let Ok(count) = usize::try_from(n) else {
            return Err(port_error(self.id, "rte_eth_xstats_get_names", n));
        };
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); count];
        let mut values = vec![dpdk_sys::rte_eth_xstat::default(); count];
        let cap = u32::try_from(count).unwrap_or(u32::MAX);
        // SAFETY: names has room for `count` entries.
        let got = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), cap) };
        if got < 0 {
            return Err(port_error(self.id, "rte_eth_xstats_get_names", got));
        }
        // SAFETY: values has room for `count` entries.
        let got_v = unsafe { dpdk_sys::rte_eth_xstats_get(self.id, values.as_mut_ptr(), cap) };
        if got_v < 0 {
            return Err(port_error(self.id, "rte_eth_xstats_get", got_v));
        }
        let n = usize::try_from(got.min(got_v)).unwrap_or(0).min(count);
        Ok(values[..n]
            .iter()
            .filter_map(|v| {
                let name = names.get(usize::try_from(v.id).ok()?)?;
                // SAFETY: DPDK NUL-terminates every name within its fixed-size array.
                let s = unsafe { CStr::from_ptr(name.name.as_ptr()) };
                Some((s.to_string_lossy().into_owned(), v.value))
            })
            .collect())
    }

    /// Hand out the port's queues, once: one handle per configured RX and TX queue.
    pub fn take_queues(&self) -> Result<(Vec<RxQueue<'_>>, Vec<TxQueue<'_>>)> {
        if self.queues_taken.replace(true) {
            return Err(DpdkError::QueuesTaken { port: self.id });
        }
        let rx = (0..self.config.rx_queues)
            .map(|queue| RxQueue {
                port: self.id,
                queue,
                _port: PhantomData,
            })
            .collect();
        let tx = (0..self.config.tx_queues)
            .map(|queue| TxQueue {
                port: self.id,
                queue,
                _port: PhantomData,
            })
            .collect();
        Ok((rx, tx))
    }
}

/// Unregister the link callback of `id` whose argument is `cell`, then free the cell.
/// While the callback runs (EAGAIN) this waits, up to a second; a callback that stays
/// registered keeps its cell: it is leaked, never freed under C.
fn unregister_link_events(id: PortId, cell: Box<LinkCell>) {
    let arg = (&*cell as *const LinkCell).cast_mut().cast::<c_void>();
    let unregister = || {
        // SAFETY: the same callback and argument that were registered for this port; the
        // cell behind `arg` is alive (the helper frees it only after this returned 0).
        unsafe {
            dpdk_sys::rte_eth_dev_callback_unregister(
                id,
                dpdk_sys::RTE_ETH_EVENT_INTR_LSC,
                Some(on_link_change),
                arg,
            )
        }
    };
    if let Err(ret) = free_once_unregistered(cell, 1000, Duration::from_millis(1), unregister) {
        log::warn!(
            "port {id}: the link callback could not be unregistered ({}); its state is \
             leaked, as the callback may still run",
            errno_message(ret.saturating_neg())
        );
    }
}

/// Free `value`, which C holds a pointer to, once `unregister` returns 0 (C let go of it).
/// While it returns -EAGAIN (the callback is running), try again, `attempts` times in all
/// with `pause` in between. Any other answer, or EAGAIN to the end, and `value` is leaked:
/// C may still call into it. `Err` carries the last answer.
fn free_once_unregistered<T>(
    value: Box<T>,
    attempts: u32,
    pause: Duration,
    mut unregister: impl FnMut() -> c_int,
) -> std::result::Result<(), c_int> {
    let mut ret = -libc_eagain();
    for i in 0..attempts {
        if i > 0 {
            std::thread::sleep(pause);
        }
        ret = unregister();
        if ret != -libc_eagain() {
            break;
        }
    }
    if ret == 0 {
        drop(value);
        Ok(())
    } else {
        Box::leak(value);
        Err(ret)
    }
}

/// EAGAIN, as DPDK returns it (negated).
const fn libc_eagain() -> c_int {
    11
}

impl Drop for Port<'_> {
    fn drop(&mut self) {
        // SAFETY: the port was started by us and every queue handle borrows self, so no
        // worker polls it any more.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        if ret != 0 {
            log::warn!("port {}: stop failed ({ret})", self.id);
        }
        if let Some(cell) = self.link_events.take() {
            unregister_link_events(self.id, cell);
        }
        // Closing releases the queues and the mbufs still posted in the RX rings.
        // SAFETY: the port is stopped and nothing refers to its queues any more.
        let ret = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        if ret != 0 {
            log::warn!("port {}: close failed ({ret})", self.id);
        }
    }
}

impl RxQueue<'_> {
    /// Port and queue index.
    pub fn id(&self) -> (PortId, u16) {
        (self.port, self.queue)
    }

    /// Receive into the free slots of `burst`; returns how many packets arrived.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        let (ptr, spare) = burst.spare_ptr();
        let spare16 = u16::try_from(spare).unwrap_or(u16::MAX);
        // SAFETY: this handle is the queue's only user; ptr points to `spare` writable slots.
        let n =
            usize::from(unsafe { dpdk_sys::rte_eth_rx_burst(self.port, self.queue, ptr, spare16) });
        // SAFETY: rx_burst wrote n valid mbuf pointers, now owned by us, into those slots.
        unsafe { burst.commit(n.min(spare)) };
        n
    }
}

impl TxQueue<'_> {
    /// Port and queue index.
    pub fn id(&self) -> (PortId, u16) {
        (self.port, self.queue)
    }

    /// Transmit from the front of `burst`. The packets the device took leave the burst;
    /// those it did not take stay in it, in order. Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        if burst.is_empty() {
            return 0;
        }
        let len = u16::try_from(burst.len()).unwrap_or(u16::MAX);
        // SAFETY: this handle is the queue's only user; the burst's first len slots are valid
        // owned mbufs. The device takes ownership of the first `sent` of them.
        let sent = usize::from(unsafe {
            dpdk_sys::rte_eth_tx_burst(self.port, self.queue, burst.as_mut_ptr(), len)
        });
        // SAFETY: the first `sent` mbufs now belong to the device.
        unsafe { burst.consume_front(sent) };
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Counts its drops.
    struct Tracked(Rc<std::cell::Cell<u32>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// Runs `free_once_unregistered` on a tracked value with `answers` as what successive
    /// unregister calls return; gives its result, the calls made and the drops seen.
    fn run(answers: &[c_int], attempts: u32) -> (std::result::Result<(), c_int>, usize, u32) {
        let drops = Rc::new(std::cell::Cell::new(0));
        let mut calls = 0;
        let r = free_once_unregistered(
            Box::new(Tracked(Rc::clone(&drops))),
            attempts,
            Duration::ZERO,
            || {
                calls += 1;
                answers[(calls - 1).min(answers.len() - 1)]
            },
        );
        (r, calls, drops.get())
    }

    #[test]
    fn a_callback_that_stays_busy_keeps_its_memory() {
        let (r, calls, drops) = run(&[-11], 1000);
        assert_eq!(r, Err(-11));
        assert_eq!(calls, 1000, "EAGAIN is retried");
        assert_eq!(drops, 0, "still registered: leaked, not freed");
    }

    #[test]
    fn a_refused_unregister_keeps_its_memory() {
        // ENODEV: the port is gone from under us; whether C still holds the pointer is
        // unknown, so the memory stays.
        let (r, calls, drops) = run(&[-19], 1000);
        assert_eq!((r, calls, drops), (Err(-19), 1, 0));
    }

    #[test]
    fn unregistered_after_the_callback_finished_frees() {
        let (r, calls, drops) = run(&[-11, -11, 0], 1000);
        assert_eq!((r, calls, drops), (Ok(()), 3, 1));
    }
}
