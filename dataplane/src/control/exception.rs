//! The exception path: the host kernel's side of the appliance.
//!
//! Each tunnel with a `link` has a kernel TUN interface `bb-<tunnel>` holding our link
//! address, and its `link6` where it has one; each port with `host_interface = true` has
//! `bb-<port>` holding the port's addresses. Packets for us that the workers do not answer
//! themselves arrive here over a bounded queue ([`HostQueue`]) and are written into the
//! interface of the way they came, so the kernel's sockets (a BGP daemon, BFD, ssh, a
//! probe) see them as arriving on `bb-<tunnel>`. What the kernel sends into an interface is
//! read here, checked, and encapsulated into the tunnel (or sent natively out of the port)
//! by the same pipeline code the workers run, then sent on the port's control TX queue.
//!
//! One thread of its own runs it, polling the interfaces with a short timeout: a worker
//! never waits for it (a full queue is a counted drop), and it never holds a lock a worker
//! takes. The set of interfaces follows the tables: created when a tunnel with a link
//! appears (at start, or by `ctl tunnel-add` or a reload), removed when it goes, and all
//! removed when the appliance stops (a TUN interface lives as long as its descriptor).

pub use super::appliance::HostCounters;
use super::health::Prober;
use crate::dpdk::{Burst, Mempool, TxQueue};
use crate::pipeline::probe::{self, ProbeReply};
use crate::pipeline::{Action, Host, Pipeline};
use crate::tables::{PortIndex, Reader, Snapshot, TunnelId};
use crate::worker::HostQueue;
use ipnet::{Ipv4Net, Ipv6Net};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use pipeline_config::HOST_INTERFACE_PREFIX;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The control TX queue of each port, by port id: shared by the control thread (ARP
/// requests) and the exception path.
pub type ControlTx<'p> = Mutex<Vec<Option<TxQueue<'p>>>>;

/// One host interface the tables ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    host: Host,
    /// The first address is set with the interface; the others are added by `ip`.
    addrs: Vec<Ipv4Net>,
    /// IPv6 addresses (a tunnel's `link6`), added by `ip`. Without any, the interface has
    /// IPv6 turned off.
    addrs6: Vec<Ipv6Net>,
    mtu: u16,
}

/// A host interface that exists.
struct Iface {
    name: String,
    dev: tun::Device,
    want: Want,
    /// Edge-triggered readiness seen and not yet read to the end.
    readable: bool,
}

impl std::fmt::Debug for Iface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iface")
            .field("name", &self.name)
            .field("want", &self.want)
            .finish_non_exhaustive()
    }
}

/// How often the set of interfaces is compared with the tables.
const RECONCILE: Duration = Duration::from_millis(100);
/// How long to wait before trying again to create an interface that failed.
const RETRY: Duration = Duration::from_secs(10);
/// Packets read from one interface, or taken from the queue, before looking elsewhere.
const BATCH: usize = 64;
/// The poll's timeout when there is nothing left to do: the latency of a packet for the
/// host (the workers do not wake this thread; a system call per burst would cost them).
const IDLE_POLL: Duration = Duration::from_millis(1);
/// The largest packet read from an interface.
const READ_MAX: usize = 9216;

/// The exception path's thread state.
pub struct Exception<'a, 'p> {
    pool: &'a Mempool<'p>,
    tx: &'a ControlTx<'p>,
    queue: &'a HostQueue,
    counters: &'a HostCounters,
    /// Port names by port id, for `bb-<port>`.
    port_names: Vec<(PortIndex, String)>,
    ifaces: Vec<Option<Iface>>,
    by_name: HashMap<String, usize>,
    by_tunnel: HashMap<TunnelId, usize>,
    by_port: HashMap<PortIndex, usize>,
    failed: HashMap<String, Instant>,
    pipeline: Pipeline,
    poll: Poll,
    generation: Option<u64>,
    next_reconcile: Instant,
    pending: Vec<Burst>,
    buf: Box<[u8; READ_MAX]>,
    /// The pipeline counted something its shared copy does not show yet.
    dirty: bool,
    /// In-tunnel probes of the tunnels that ask for them.
    prober: Prober,
    /// The prober's clock: probes carry their send time from it.
    epoch: Instant,
}

/// How often probes go and how many missed make a tunnel down.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTimers {
    pub interval: Duration,
    pub misses: u32,
}

impl std::fmt::Debug for Exception<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exception")
            .field("ifaces", &self.by_name.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a, 'p> Exception<'a, 'p> {
    /// The exception path for `workers` workers (its outer IPv4 identifications are a class
    /// of their own, see [`Pipeline::for_host`]).
    pub fn new(
        pool: &'a Mempool<'p>,
        tx: &'a ControlTx<'p>,
        queue: &'a HostQueue,
        counters: &'a HostCounters,
        port_names: Vec<(PortIndex, String)>,
        workers: usize,
        timers: ProbeTimers,
    ) -> std::io::Result<Self> {
        let nports = port_names
            .iter()
            .map(|(p, _)| usize::from(*p) + 1)
            .max()
            .unwrap_or(0);
        Ok(Exception {
            pool,
            tx,
            queue,
            counters,
            port_names,
            ifaces: Vec::new(),
            by_name: HashMap::new(),
            by_tunnel: HashMap::new(),
            by_port: HashMap::new(),
            failed: HashMap::new(),
            pipeline: Pipeline::for_host(workers),
            poll: Poll::new()?,
            generation: None,
            next_reconcile: Instant::now(),
            pending: (0..nports).map(|_| Burst::new()).collect(),
            buf: Box::new([0; READ_MAX]),
            dirty: false,
            prober: Prober::new(
                timers.interval,
                timers.misses,
                // Nonces differ from run to run: the time and the process.
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()) << 32,
            ),
            epoch: Instant::now(),
        })
    }

    /// Run until `stop` is set; then remove every interface and free what waits.
    pub fn run(mut self, mut snapshots: Reader<Snapshot>, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            // Between two loops it holds one snapshot, as a worker does between two polls.
            snapshots.refresh();
            let snap = snapshots.get();
            let now = Instant::now();
            if now >= self.next_reconcile || self.generation != Some(snap.generation()) {
                self.reconcile(snap, now);
                self.next_reconcile = now + RECONCILE;
            }
            self.probe(snap, now);
            let busy = self.read_host(snap) | self.write_host();
            let timeout = if busy {
                Duration::ZERO
            } else if self.by_name.is_empty() && self.prober.next_due().is_none() {
                // No interface to read or write, no tunnel to probe (whose replies come
                // through the queue): nothing to wake up for before the next
                // reconciliation (an idle appliance's wakeups cost CPU).
                self.next_reconcile.saturating_duration_since(now)
            } else {
                IDLE_POLL
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("exception path: poll: {e}");
                    std::thread::sleep(IDLE_POLL);
                }
                continue;
            }
            for ev in events.iter() {
                if let Some(Some(i)) = self.ifaces.get_mut(ev.token().0) {
                    i.readable = true;
                }
            }
        }
        if let Ok(mut c) = self.counters.pipeline.lock() {
            c.clone_from(self.pipeline.counters());
        }
        // Interfaces go with their descriptors.
        let names: Vec<String> = self.by_name.keys().cloned().collect();
        for name in names {
            self.remove(&name);
        }
        while self.queue.pop().is_some() {}
    }

    /// Read what the kernel sent into the interfaces (a batch from each), send it.
    /// Whether some interface still has more to read.
    fn read_host(&mut self, snap: &Snapshot) -> bool {
        let mut more = false;
        let mut read = 0;
        for slot in 0..self.ifaces.len() {
            let Some(iface) = self.ifaces[slot].as_mut() else {
                continue;
            };
            if !iface.readable {
                continue;
            }
            let host = iface.want.host;
            let mut n = 0;
            while n < BATCH {
                match iface.dev.read(&mut self.buf[..]) {
                    Ok(len) => {
                        n += 1;
                        self.counters.from_host.fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .from_host_bytes
                            .fetch_add(len as u64, Ordering::Relaxed);
                        let Some(mut m) = self.pool.alloc_with(&self.buf[..len]) else {
                            self.counters
                                .from_host_no_mbuf
                                .fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        match self.pipeline.inject(&mut m, snap, host) {
                            Action::Transmit(out) => {
                                let slot = usize::from(out);
                                match self.pending.get_mut(slot) {
                                    Some(b) => {
                                        if b.is_full() {
                                            Self::flush(self.tx, self.counters, b, slot);
                                        }
                                        if b.push(m).is_err() {
                                            self.counters
                                                .from_host_tx_failed
                                                .fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                    None => {
                                        self.counters
                                            .from_host_tx_failed
                                            .fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            _ => {
                                self.counters
                                    .from_host_dropped
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        iface.readable = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::warn!("exception path: reading {}: {e}", iface.name);
                        iface.readable = false;
                        break;
                    }
                }
            }
            more |= iface.readable;
            read += n;
        }
        for (slot, b) in self.pending.iter_mut().enumerate() {
            Self::flush(self.tx, self.counters, b, slot);
        }
        if read > 0 {
            self.dirty = true;
        }
        if self.dirty {
            // Never wait for a reader of the copy: next time.
            if let Ok(mut c) = self.counters.pipeline.try_lock() {
                c.clone_from(self.pipeline.counters());
                self.dirty = false;
            }
        }
        more
    }

    fn flush(tx: &ControlTx<'_>, counters: &HostCounters, b: &mut Burst, slot: usize) {
        if b.is_empty() {
            return;
        }
        let n = b.len() as u64;
        let sent = match tx.lock() {
            Ok(mut queues) => match queues.get_mut(slot) {
                Some(Some(q)) => q.tx_burst(b) as u64,
                _ => 0,
            },
            Err(_) => 0,
        };
        b.clear();
        counters.from_host_sent.fetch_add(sent, Ordering::Relaxed);
        counters
            .from_host_tx_failed
            .fetch_add(n - sent, Ordering::Relaxed);
    }

    /// Write a batch of what the workers queued into the host interfaces. Whether the
    /// queue may hold more.
    fn write_host(&mut self) -> bool {
        for _ in 0..BATCH * 4 {
            let Some((m, host)) = self.queue.pop() else {
                return false;
            };
            let slot = match host {
                Host::Tunnel(id) => self.by_tunnel.get(&id),
                Host::Port(p) => self.by_port.get(&p),
                Host::Prober => {
                    let reply = probe::parse_reply(crate::buffer::PacketBuf::data(&m));
                    if let Some(r) = reply {
                        self.probe_reply(&r);
                    }
                    continue;
                }
            };
            let iface = slot
                .and_then(|&s| self.ifaces.get_mut(s))
                .and_then(Option::as_mut);
            let written = match (iface, m.segments()) {
                (Some(iface), 1) => {
                    let data = crate::buffer::PacketBuf::data(&m);
                    match iface.dev.write(data) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            log::debug!("exception path: writing {}: {e}", iface.name);
                            None
                        }
                    }
                }
                _ => None,
            };
            match written {
                Some(n) => {
                    self.counters.to_host.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .to_host_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                None => {
                    self.counters.to_host_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        true
    }

    /// The interfaces the tables ask for, by name.
    fn wanted(&self, snap: &Snapshot) -> HashMap<String, Want> {
        let mut want = HashMap::new();
        for (id, e) in snap.tunnels().iter() {
            let Some(link) = e.config.link else { continue };
            let mtu = snap.tunnels().hot(id).map_or(576, |h| h.inner_mtu() as u16);
            want.insert(
                format!("{HOST_INTERFACE_PREFIX}{}", e.config.name),
                Want {
                    host: Host::Tunnel(id),
                    addrs: vec![link],
                    addrs6: e.config.link6.into_iter().collect(),
                    mtu,
                },
            );
        }
        for (port, name) in &self.port_names {
            let Some(p) = snap.port(*port).filter(|p| p.host_interface) else {
                continue;
            };
            want.insert(
                format!("{HOST_INTERFACE_PREFIX}{name}"),
                Want {
                    host: Host::Port(*port),
                    addrs: p
                        .addrs
                        .iter()
                        .filter_map(|a| Ipv4Net::new(*a, 32).ok())
                        .collect(),
                    addrs6: Vec::new(),
                    mtu: p.mtu,
                },
            );
        }
        want
    }

    /// Make the interfaces and the probed tunnels what the tables ask for.
    fn reconcile(&mut self, snap: &Snapshot, now: Instant) {
        self.generation = Some(snap.generation());
        let probed: Vec<(String, u32)> = snap
            .tunnels()
            .iter()
            .filter(|(_, e)| e.config.probe)
            .map(|(id, e)| (e.config.name.clone(), id.0))
            .collect();
        self.prober.set_tunnels(&probed, now);
        self.publish_probes(Vec::new());
        let want = self.wanted(snap);
        // Gone, or changed in what the kernel holds (addresses, MTU): removed (and made
        // again below).
        let stale: Vec<String> = self
            .by_name
            .iter()
            .filter(|(name, &slot)| {
                let have = self.ifaces[slot].as_ref().map(|i| &i.want);
                match (want.get(*name), have) {
                    (Some(w), Some(h)) => {
                        w.addrs != h.addrs || w.addrs6 != h.addrs6 || w.mtu != h.mtu
                    }
                    _ => true,
                }
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            self.remove(&name);
        }
        self.failed
            .retain(|n, at| want.contains_key(n) && now < *at + RETRY);
        self.by_tunnel.clear();
        self.by_port.clear();
        let mut names: Vec<&String> = want.keys().collect();
        names.sort();
        for name in names {
            let w = &want[name];
            let slot = match self.by_name.get(name) {
                Some(&slot) => slot,
                None => {
                    if self.failed.contains_key(name) {
                        continue;
                    }
                    match self.create(name, w) {
                        Ok(slot) => slot,
                        Err(e) => {
                            log::error!(
                                "exception path: cannot create host interface {name}: {e} \
                                 (trying again in {} s)",
                                RETRY.as_secs()
                            );
                            self.counters
                                .interface_errors
                                .fetch_add(1, Ordering::Relaxed);
                            self.failed.insert(name.clone(), now);
                            continue;
                        }
                    }
                }
            };
            if let Some(i) = self.ifaces[slot].as_mut() {
                // The same interface may serve a tunnel whose slot moved.
                i.want.host = w.host;
            }
            match w.host {
                Host::Tunnel(id) => self.by_tunnel.insert(id, slot),
                Host::Port(p) => self.by_port.insert(p, slot),
                Host::Prober => None,
            };
        }
        self.counters
            .interfaces
            .store(self.by_name.len() as u64, Ordering::Relaxed);
    }

    /// Send the probes due now, each into its tunnel with the tunnel's own header.
    fn probe(&mut self, snap: &Snapshot, now: Instant) {
        if !self.prober.next_due().is_some_and(|t| t <= now) {
            return;
        }
        let mut due = Vec::new();
        let changes = self.prober.due(now, &mut due);
        let sent_ns = u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(0);
        for (name, mut p) in due {
            p.sent_ns = sent_ns;
            let id = crate::tables::TunnelId(p.slot);
            let Some(t) = snap.tunnels().get(id).filter(|e| e.config.name == name) else {
                continue;
            };
            let c = &t.config;
            let src = if c.keepalive_probe { c.remote } else { c.local };
            let Some(mut m) = self.pool.alloc_with(&probe::probe_packet(src, c.local, &p)) else {
                self.counters
                    .from_host_no_mbuf
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if let Action::Transmit(out) = self.pipeline.inject(&mut m, snap, Host::Tunnel(id)) {
                let slot = usize::from(out);
                if let Some(b) = self.pending.get_mut(slot) {
                    if b.is_full() {
                        Self::flush(self.tx, self.counters, b, slot);
                    }
                    let _ = b.push(m);
                }
            }
        }
        for (slot, b) in self.pending.iter_mut().enumerate() {
            Self::flush(self.tx, self.counters, b, slot);
        }
        self.dirty = true;
        self.publish_probes(changes);
    }

    fn probe_reply(&mut self, r: &ProbeReply) {
        let change = self.prober.reply(r, Instant::now());
        self.publish_probes(change.into_iter().collect());
    }

    /// Log the changes and show the prober's state to the control side.
    fn publish_probes(&mut self, changes: Vec<super::health::Change>) {
        for c in &changes {
            let rtt = self.prober.tunnels().get(&c.tunnel).and_then(|p| p.rtt);
            match c.to {
                super::health::Health::Up => log::info!(
                    "tunnel {}: {} -> up (its probe came back{})",
                    c.tunnel,
                    c.from.name(),
                    rtt.map(|r| format!(" in {:.2} ms", r.as_secs_f64() * 1e3))
                        .unwrap_or_default()
                ),
                to => log::warn!(
                    "tunnel {}: {} -> {} (probes unanswered)",
                    c.tunnel,
                    c.from.name(),
                    to.name()
                ),
            }
        }
        if let Ok(mut board) = self.counters.probes.lock() {
            board.tunnels.clone_from(self.prober.tunnels());
            board.changes.extend(changes);
        }
    }

    /// Create `name` with its first address, MTU, up; add the other addresses.
    fn create(&mut self, name: &str, w: &Want) -> Result<usize, String> {
        let mut config = tun::Configuration::default();
        config.tun_name(name).mtu(w.mtu);
        if let Some(first) = w.addrs.first() {
            config.address(first.addr()).netmask(first.netmask());
        }
        let mut dev = tun::create(&config).map_err(|e| e.to_string())?;
        dev.set_nonblock().map_err(|e| e.to_string())?;
        ipv6_settings(name, !w.addrs6.is_empty())?;
        tun::AbstractDevice::enabled(&mut dev, true).map_err(|e| e.to_string())?;
        for extra in w.addrs.iter().skip(1) {
            add_address(name, &extra.to_string(), "-4")?;
        }
        for a in &w.addrs6 {
            add_address(name, &a.to_string(), "-6")?;
        }
        let slot = match self.ifaces.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.ifaces.push(None);
                self.ifaces.len() - 1
            }
        };
        let fd = dev.as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(slot), Interest::READABLE)
            .map_err(|e| format!("cannot watch it: {e}"))?;
        log::info!(
            "exception path: host interface {name} up ({}, mtu {})",
            w.addrs
                .iter()
                .map(|a| a.to_string())
                .chain(w.addrs6.iter().map(|a| a.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            w.mtu
        );
        self.ifaces[slot] = Some(Iface {
            name: name.to_owned(),
            dev,
            want: w.clone(),
            // Whatever arrived before the registration is read at once.
            readable: true,
        });
        self.by_name.insert(name.to_owned(), slot);
        Ok(slot)
    }

    fn remove(&mut self, name: &str) {
        let Some(slot) = self.by_name.remove(name) else {
            return;
        };
        if let Some(iface) = self.ifaces[slot].take() {
            let fd = iface.dev.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            drop(iface);
            log::info!("exception path: host interface {name} removed");
        }
        self.counters
            .interfaces
            .store(self.by_name.len() as u64, Ordering::Relaxed);
    }
}

/// IPv6 on a new interface, before it is up. Without IPv6 addresses it is off: no
/// link-local address, router solicitations or neighbour discovery from the host into a
/// tunnel (where the kernel has no IPv6 there is nothing to turn off). With them it is on,
/// as a host on a point-to-point link that holds only the addresses it is given: no
/// link-local address (`addr_gen_mode` 1: none), no duplicate address detection, router
/// advertisements or router behaviour (`forwarding` 0: the kernel never forwards here),
/// and no multicast. On a host that forwards IPv6 (zebra turns it on, before or after the
/// interface comes) the kernel joins the all-routers group on every multicast interface and
/// reports it by MLD, from `::` without a link-local address, into the tunnel, where the
/// appliance drops it (`bad_inner_ipv6`): without the multicast flag it joins none. The
/// group a new interface joined already is left in MLDv1 (`force_mld_version` 1), where a
/// group never reported is left silently; and on a NOARP interface the kernel joins no
/// solicited-node group. Nothing but what the host's sockets send goes into the tunnel.
/// Fails only where IPv6 is wanted: the error names the setting.
fn ipv6_settings(name: &str, on: bool) -> Result<(), String> {
    let conf = format!("/proc/sys/net/ipv6/conf/{name}");
    if !on {
        let v6 = format!("{conf}/disable_ipv6");
        if std::path::Path::new(&v6).exists() {
            if let Err(e) = std::fs::write(&v6, "1") {
                log::debug!("exception path: {v6}: {e}");
            }
        }
        return Ok(());
    }
    let set = |setting: &str, value: &str| {
        let path = format!("{conf}/{setting}");
        std::fs::write(&path, value)
            .map_err(|e| format!("IPv6 for its link6: cannot write {value} to {path}: {e}"))
    };
    set("addr_gen_mode", "1")?;
    set("accept_dad", "0")?;
    set("accept_ra", "0")?;
    set("force_mld_version", "1")?;
    // Leaves the all-routers group: only while the interface still has the multicast flag.
    set("forwarding", "0")?;
    ip(&["link", "set", "dev", name, "multicast", "off"])?;
    set("disable_ipv6", "0")
}

/// Add a further address to an interface (the TUN set-up gives one): with iproute2, and
/// `family` (`-4` or `-6`).
fn add_address(name: &str, net: &str, family: &str) -> Result<(), String> {
    ip(&[family, "addr", "add", net, "dev", name])
}

/// `ip ARGS`; the error names the command and says what iproute2 said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
