//! `backbone run` and `backbone smoke`: EAL, ports, workers, the supervisor loop, the
//! final counters.

use crate::lifecycle::{self, Lock, Service, SocketClaim};
use dataplane::buffer::PacketBuf;
use dataplane::control::appliance::{About, Appliance, ControlCounters, PortInfo};
use dataplane::control::arp;
use dataplane::control::exception::{ControlTx, Exception, ProbeTimers};
use dataplane::control::nd;
use dataplane::control::ndcache::{self, NdCache};
use dataplane::control::ondemand::{OnDemand, Verdict as OnDemandVerdict};
use dataplane::control::pacer::ArpPacer;
use dataplane::control::pmtu::{self, Outcome as PathMtuOutcome};
use dataplane::control::progress::{PortHealth, PortsHealth};
use dataplane::control::server;
use dataplane::control::stall::{StallEvent, StallWatch};
use dataplane::control::state::ControlState;
use dataplane::dpdk::TxQueue;
use dataplane::dpdk::{
    launch_on_workers_with_main, Burst, Eal, Mempool, Port, PortConfig, PortId, BURST_MAX,
};
use dataplane::pipeline::{Counters, DropReason, Event, IcmpKind, PuntReason};
use dataplane::tables::{Reader, Snapshot};
use dataplane::wire::EthernetAddress;
use dataplane::worker::{
    self, HeardNeighbor, HostQueue, LearnQueue, PathMtuQueue, ResolveQueue, WorkerProgress,
    WorkerQueues, WorkerReport,
};
use serde_json::{json, Map, Value};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

/// Packets waiting for the host interfaces, all workers together.
const HOST_QUEUE: usize = 4096;

fn eal_argv(file_args: Vec<String>, over: Option<Vec<String>>) -> Vec<String> {
    std::iter::once("backbone".to_owned())
        .chain(over.unwrap_or(file_args))
        .collect()
}

/// What `run` serves besides the control API.
#[derive(Debug, Clone, Copy)]
pub struct Extras {
    /// The metrics endpoint's address.
    pub metrics: Option<std::net::SocketAddr>,
    /// The FPM listener's address, in place of the file's `[fpm] listen`.
    pub fpm: Option<std::net::SocketAddr>,
    /// `backbone --version`.
    pub version: &'static str,
}

/// `backbone run`.
pub fn run(
    path: &Path,
    stop_when_idle: Option<u64>,
    stats_path: Option<&Path>,
    eal_over: Option<Vec<String>>,
    control_socket: Option<&Path>,
    extras: Extras,
) -> Res<()> {
    let (doc, cfg) = pipeline_config::ConfigDocument::load(path).map_err(|e| e.to_string())?;
    let argv = eal_argv(cfg.eal_args.clone(), eal_over);
    // One instance per file prefix and per control socket, refused before EAL starts.
    let prefix = lifecycle::file_prefix(&argv);
    let runtime_dir = lifecycle::runtime_dir(&prefix);
    let _prefix_lock = Lock::take(
        &runtime_dir.join("backbone.lock"),
        &format!("file prefix {prefix:?}"),
    )?;
    let socket_claim = control_socket.map(SocketClaim::take).transpose()?;
    let metrics_listener = match extras.metrics {
        Some(addr) => {
            let l = TcpListener::bind(addr).map_err(|e| format!("metrics {addr}: {e}"))?;
            l.set_nonblocking(true)
                .map_err(|e| format!("metrics {addr}: {e}"))?;
            Some(l)
        }
        None => None,
    };
    // zebra's FPM connection: the flag's address, else the file's; bound before EAL starts.
    let fpm_grace = cfg.fpm.map_or(
        Duration::from_secs(pipeline_config::DEFAULT_FPM_GRACE.into()),
        |f| f.grace,
    );
    let fpm_listener = match extras.fpm.or(cfg.fpm.map(|f| f.listen)) {
        Some(addr) => Some(
            dataplane::control::fpm::bind(addr).map_err(|e| format!("FPM listener {addr}: {e}"))?,
        ),
        None => None,
    };
    let mut service = Service::new()?;
    let eal = Eal::init(&argv).map_err(|e| e.to_string())?;
    log::info!(
        "file prefix {prefix:?} (runtime directory {}): dpdk-telemetry.py -f {prefix}, \
         dpdk-dumpcap --file-prefix={prefix}",
        runtime_dir.display()
    );
    let capture = match dataplane::dpdk::Capture::enable(&eal) {
        Ok(c) => Some(c),
        Err(e) => {
            log::info!("dpdk-dumpcap cannot attach: {e}");
            None
        }
    };
    crate::observe::register_telemetry(&eal);
    if let Some(l) = &metrics_listener {
        if let Ok(a) = l.local_addr() {
            log::info!("metrics at http://{a}/metrics");
        }
    }
    let available = eal.worker_lcores();
    let lcores: Vec<u32> = match &cfg.worker_lcores {
        Some(l) => {
            if let Some(bad) = l.iter().find(|x| !available.contains(x)) {
                return Err(format!(
                    "{}: workers.lcores: lcore {bad} is not an EAL worker lcore (EAL has {:?}; give EAL more with -l)",
                    path.display(),
                    available
                ));
            }
            l.clone()
        }
        None => available.clone(),
    };
    if lcores.is_empty() {
        return Err("no worker lcores: give EAL at least two lcores (for instance -l 0-1)".into());
    }
    let nworkers = lcores.len();
    log::info!(
        "{nworkers} worker(s) on lcore(s) {lcores:?}, {}",
        match cfg.poll.mode {
            pipeline_config::PollMode::Busy => "busy polling".to_owned(),
            pipeline_config::PollMode::Adaptive => format!(
                "adaptive polling (idle sleeps up to {} us)",
                cfg.poll.idle_sleep_max_us
            ),
        }
    );

    // Ports.
    let mut ids: Vec<PortId> = Vec::new();
    for p in &cfg.ports {
        let id = match p.device.parse::<u16>() {
            Ok(i) => i,
            Err(_) => {
                Port::id_by_name(&eal, &p.device).map_err(|e| format!("port {:?}: {e}", p.name))?
            }
        };
        ids.push(id);
    }
    let descs: u32 = cfg
        .ports
        .iter()
        .map(|p| {
            u32::from(p.rx_queues) * 1024 + nworkers.max(usize::from(p.tx_queues)) as u32 * 1024
        })
        .sum();
    let pool_size = (descs
        + (nworkers as u32 + 1) * (256 + 2 * BURST_MAX as u32 * cfg.ports.len() as u32)
        + 4096)
        .next_power_of_two()
        - 1;
    let pool = Mempool::new(
        &eal,
        "backbone_rx",
        pool_size,
        256,
        Mempool::default_data_room(),
    )
    .map_err(|e| e.to_string())?;
    let mut ports = Vec::new();
    let mut macs = Vec::new();
    let mut infos = Vec::new();
    let mut no_control_queue = Vec::new();
    for (p, &id) in cfg.ports.iter().zip(&ids) {
        // One TX queue per worker, and one for the control thread (ARP requests) when the
        // device has one to spare.
        let (_, max_tx) =
            Port::queue_limits(&eal, id).map_err(|e| format!("port {:?}: {e}", p.name))?;
        let mut tx_queues = p.tx_queues.max(nworkers as u16);
        let control_queue = tx_queues < max_tx;
        if control_queue {
            tx_queues += 1;
        } else {
            // A warning only where a next hop needs ARP (below).
            no_control_queue.push(id);
        }
        let pc = PortConfig {
            rx_queues: p.rx_queues,
            tx_queues,
            mtu: Some(p.mtu),
            ..PortConfig::default()
        };
        let port =
            Port::start(&eal, id, &pc, &pool).map_err(|e| format!("port {:?}: {e}", p.name))?;
        let mac = match p.mac {
            Some(m) => {
                let m = EthernetAddress(m.0);
                match port.set_mac(m) {
                    Ok(()) => {}
                    // A virtual device (pcap, ring) has no MAC filter to set: expected.
                    Err(dataplane::dpdk::DpdkError::Port { errno: 95, .. }) => log::debug!(
                        "port {:?}: the device cannot change its MAC; using {m} in the tables",
                        p.name
                    ),
                    Err(e) => {
                        log::warn!("port {:?}: {e}; using {m} in the tables anyway", p.name)
                    }
                }
                m
            }
            None => port.mac().map_err(|e| e.to_string())?,
        };
        log::info!(
            "port {:?}: {} (id {id}) mac {mac} mtu {} rx queues {} tx queues {} rss {}",
            p.name,
            port.name(),
            p.mtu,
            pc.rx_queues,
            pc.tx_queues,
            port.rss_enabled()
        );
        infos.push(PortInfo {
            device: port.name(),
            port_id: id,
            driver: dataplane::dpdk::driver_name(&eal, id).unwrap_or_else(|e| e.to_string()),
            rx_queues: pc.rx_queues,
            tx_queues: pc.tx_queues,
            control_queue,
            rss: port.rss_enabled(),
            mac: mac.to_string(),
            device_mtu: port.mtu().ok(),
            link_interrupt: port.link_interrupt(),
        });
        macs.push((id, mac));
        ports.push(port);
    }
    let mut state = ControlState::new(doc, cfg.clone(), macs.clone())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    state.set_file(&std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
    warn_arp_without_queue(&state, &no_control_queue);
    let appliance = Appliance {
        about: About {
            version: extras.version.to_owned(),
            dpdk: Eal::version(),
            file_prefix: prefix.clone(),
            runtime_dir: runtime_dir.display().to_string(),
            capture: capture.is_some(),
            config: path.display().to_string(),
            control_socket: control_socket.map(|p| p.display().to_string()),
            // The address bound (a port 0 asked for becomes the one the kernel chose).
            metrics: metrics_listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.to_string()),
            started: Some(Instant::now()),
        },
        ports: infos,
        ..Appliance::default()
    };
    if let Some(l) = &fpm_listener {
        if let (Ok(a), Ok(mut shown)) = (l.local_addr(), appliance.fpm.listen.lock()) {
            log::info!("FPM: accepting zebra's connection on {a}");
            *shown = Some(a);
        }
    }
    let readers: Mutex<Vec<Option<Reader<Snapshot>>>> =
        Mutex::new((0..nworkers).map(|_| Some(state.reader())).collect());
    // The exception path reads the tables as a worker does.
    let host_reader = state.reader();
    let state = Mutex::new(state);
    let listener = match control_socket {
        Some(p) => {
            Some(server::bind(p).map_err(|e| format!("control socket {}: {e}", p.display()))?)
        }
        None => None,
    };

    // Queues: RX queue q of each port goes to worker q % workers; worker w sends on TX queue w.
    let max_port = ids.iter().copied().max().map_or(0, |m| usize::from(m) + 1);
    let mut per_worker: Vec<WorkerQueues<'_>> = (0..nworkers)
        .map(|_| WorkerQueues {
            rx: Vec::new(),
            tx: (0..max_port).map(|_| None).collect(),
        })
        .collect();
    let mut control_tx: Vec<Option<TxQueue<'_>>> = (0..max_port).map(|_| None).collect();
    for (port, &id) in ports.iter().zip(&ids) {
        let (rx, tx) = port.take_queues().map_err(|e| e.to_string())?;
        for (q, rxq) in rx.into_iter().enumerate() {
            per_worker[q % nworkers].rx.push((id, rxq));
        }
        for (w, txq) in tx.into_iter().enumerate() {
            match per_worker.get_mut(w) {
                Some(worker) => worker.tx[usize::from(id)] = Some(txq),
                None if control_tx[usize::from(id)].is_none() => {
                    control_tx[usize::from(id)] = Some(txq)
                }
                None => {}
            }
        }
    }
    let control_tx: ControlTx<'_> = Mutex::new(control_tx);
    let learned = LearnQueue::new(1024);
    let path_mtu = PathMtuQueue::new(1024);
    let resolve = ResolveQueue::new(1024);
    // Packets for the host interfaces: a few milliseconds of a busy exception path.
    let host_queue = HostQueue::new(HOST_QUEUE);
    let host_stop = AtomicBool::new(false);
    let port_names: Vec<(PortId, String)> = ids
        .iter()
        .zip(&cfg.ports)
        .map(|(&id, p)| (id, p.name.clone()))
        .collect();
    let health: PortsHealth = Mutex::new(vec![PortHealth::default(); ports.len()]);
    let control = Control {
        state: &state,
        health: &health,
        tx: &control_tx,
        pacer: ArpPacer::new(
            ArpPacer::DEFAULT_RATE,
            ArpPacer::DEFAULT_RETRY,
            Instant::now(),
        ),
        next_scan: Instant::now(),
        on_demand: OnDemand::new(OnDemand::DEFAULT_LIMIT, Instant::now()),
        nd: NdCache::new(Instant::now()),
        stalls: StallWatch::new(nworkers, StallWatch::DEFAULT_THRESHOLD),
        links: vec![None; ports.len()],
        next_link_check: Instant::now(),
        report: ControlReport {
            link_changes: vec![0; ports.len()],
            ..ControlReport::default()
        },
    };
    let slots: Mutex<Vec<Option<WorkerQueues<'_>>>> =
        Mutex::new(per_worker.into_iter().map(Some).collect());
    let reports: Mutex<Vec<Option<WorkerReport>>> = Mutex::new(vec![None; nworkers]);
    let poll = worker::Poll::of(&cfg.poll);
    let progress: Vec<WorkerProgress> = (0..nworkers)
        .map(|_| WorkerProgress {
            poll,
            ..WorkerProgress::default()
        })
        .collect();
    let stop = AtomicBool::new(false);
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let epoch = Instant::now();
    println!(
        "backbone: {} ports, {} tunnels, {} workers on lcores {:?}; forwarding{}",
        cfg.ports.len(),
        cfg.tunnels.len(),
        nworkers,
        lcores,
        stop_when_idle.map_or(" (Ctrl-C stops)".into(), |ms| format!(
            " until idle for {ms} ms"
        ))
    );

    let mut control_report = ControlReport::default();
    // The launch sets `stop` itself once `supervise` returns or panics, or when an lcore
    // cannot be launched, and waits for every worker it started in all three cases.
    let launched = launch_on_workers_with_main(
        &eal,
        &lcores,
        &stop,
        |lcore| {
            let Some(w) = lcores.iter().position(|&l| l == lcore) else {
                return 0;
            };
            let Some(queues) = slots.lock().ok().and_then(|mut s| s[w].take()) else {
                return -1;
            };
            let Some(reader) = readers.lock().ok().and_then(|mut r| r[w].take()) else {
                return -1;
            };
            let report = worker::run(
                w,
                nworkers,
                queues,
                reader,
                &learned,
                &host_queue,
                &path_mtu,
                &resolve,
                &stop,
                &progress[w],
                epoch,
            );
            if let Ok(mut r) = reports.lock() {
                r[w] = Some(report);
            }
            0
        },
        || {
            std::thread::scope(|scope| {
                match Exception::new(
                    &pool,
                    &control_tx,
                    &host_queue,
                    &appliance.host,
                    port_names,
                    nworkers,
                    ProbeTimers {
                        interval: Duration::from_millis(cfg.health.probe_interval_ms.into()),
                        misses: cfg.health.probe_misses,
                    },
                ) {
                    Ok(exception) => {
                        let host_stop = &host_stop;
                        std::thread::Builder::new()
                            .name("backbone-host".into())
                            .spawn_scoped(scope, move || exception.run(host_reader, host_stop))
                            .map_err(|e| log::error!("cannot start the exception path: {e}"))
                            .ok();
                    }
                    Err(e) => log::error!("cannot start the exception path: {e}"),
                }
                control_report = supervise(
                    &stop,
                    &term,
                    stop_when_idle,
                    &progress,
                    epoch,
                    control,
                    Heard {
                        neighbors: &learned,
                        path_mtu: &path_mtu,
                        resolve: &resolve,
                    },
                    &pool,
                    listener.as_ref(),
                    &ports,
                    Outside {
                        service: &mut service,
                        appliance: &appliance,
                        metrics: metrics_listener.as_ref(),
                        fpm: fpm_listener.as_ref().map(|l| (l, fpm_grace)),
                    },
                );
                // The host interfaces go now, before the workers stop.
                host_stop.store(true, Ordering::Relaxed);
            });
        },
    )
    .map_err(|e| e.to_string())?;
    if let Some((l, rc)) = launched.iter().find(|(_, rc)| *rc != 0) {
        return Err(format!("worker on lcore {l} failed ({rc})"));
    }

    let reports: Vec<WorkerReport> = reports
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    // What the workers reported last about the underlay's MTUs is in the final tables too.
    path_mtus(&state, &path_mtu, &mut control_report, Instant::now());
    // The workers are gone, and their readers with them: everything old goes, here.
    let (snap, reclaimed, zebra_routes) = match state.lock() {
        Ok(mut st) => {
            st.reclaim();
            (
                std::sync::Arc::clone(st.snapshots().current()),
                st.snapshots().reclaimed(),
                st.dynamic_counts(),
            )
        }
        Err(_) => return Err("the control state was poisoned".into()),
    };
    control_report.snapshots_reclaimed = reclaimed;
    let mut stats = final_stats(
        &cfg,
        &ids,
        &ports,
        &snap,
        &reports,
        &lcores,
        &control_report,
        &appliance.host,
        epoch.elapsed(),
    );
    if fpm_listener.is_some() {
        // As `ctl counters` has them: zebra's routes held at the end, and how many stale.
        let f = &appliance.fpm;
        let mut m = named(f.named().into_iter());
        m.insert("routes".into(), Value::from(zebra_routes.0));
        m.insert("stale".into(), Value::from(zebra_routes.1));
        m.insert("errors".into(), Value::Object(named(f.errors())));
        stats["fpm"] = Value::Object(m);
    }
    print_summary(&stats);
    if let Some(p) = stats_path {
        let text = serde_json::to_string_pretty(&stats).map_err(|e| e.to_string())?;
        std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
        println!("counters written to {}", p.display());
    }
    drop(ports); // stops the ports: capture files are closed here
    drop(capture);
    drop(listener);
    drop(socket_claim); // the socket and its lock go
    Ok(())
}

/// Warn about ports without a control TX queue only where a next hop on them needs ARP.
fn warn_arp_without_queue(state: &ControlState, ports: &[PortId]) {
    let snap = state.snapshots().current();
    for &id in ports {
        let unresolved = snap.unresolved().filter(|(p, _, _)| *p == id).count()
            + snap
                .wanted6()
                .iter()
                .filter(|&&(p, ip, _)| p == id && snap.neighbor6(p, ip).is_none())
                .count();
        if unresolved > 0 {
            log::warn!(
                "port {id}: no spare TX queue for ARP requests and Neighbor Solicitations, and \
                 {unresolved} next hop(s) on it without a static neighbour: they stay \
                 unresolved (give the device another TX queue, or add static neighbours)"
            );
        } else {
            log::debug!("port {id}: no spare TX queue for ARP requests (none needed)");
        }
    }
}

/// What the supervisor serves and tells besides the control API.
struct Outside<'a> {
    service: &'a mut Service,
    appliance: &'a Appliance,
    metrics: Option<&'a TcpListener>,
    /// zebra's FPM listener, and the grace period after a reconnection.
    fpm: Option<(&'a TcpListener, Duration)>,
}

/// The control thread's state: the configuration the snapshots come from, and ARP.
struct Control<'s, 'p> {
    /// The configuration and the snapshot builder, shared with the control API.
    state: &'s Mutex<ControlState>,
    /// The ports' device counters and links, as the control API shows them.
    health: &'s PortsHealth,
    /// The control TX queue of each port, by port id (shared with the exception path).
    tx: &'s ControlTx<'p>,
    /// When to ask for which unresolved next hop.
    pacer: ArpPacer,
    /// When the wanted list is next scanned (the pacer's budget refills in between).
    next_scan: Instant,
    /// The neighbours of connected subnets, resolved on demand.
    on_demand: OnDemand,
    /// The IPv6 next hops, resolved by Neighbor Discovery.
    nd: NdCache,
    /// Workers stuck on an old snapshot.
    stalls: StallWatch,
    /// Per port (configuration order): the link state last seen.
    links: Vec<Option<bool>>,
    next_link_check: Instant,
    report: ControlReport,
}

/// How often the control thread looks at every port's link state: what the port's
/// link-status interrupt last reported where it has one (virtio, most NICs; the driver's own
/// interrupt handling also takes a returning vhost-user peer back), else the driver's
/// answer now, without waiting.
const LINK_CHECK: Duration = Duration::from_millis(250);

/// What the control thread counted.
#[derive(Debug, Clone, Default)]
struct ControlReport {
    /// ARP requests sent for unresolved next hops.
    arp_requests: u64,
    /// ARP requests due that could not be sent: no mbuf, or the TX queue full.
    arp_request_failed: u64,
    /// Scans that left due requests for later: the global ARP budget was spent.
    arp_requests_deferred: u64,
    /// Neighbours learned and installed.
    neighbors_learned: u64,
    /// ARP replies for next hops we had not asked for (within the retry time): ignored.
    arp_unsolicited: u64,
    /// ARP packets that would have changed a static neighbour: ignored.
    arp_static_kept: u64,
    /// Alarms for a worker that stayed on an old snapshot too long.
    worker_stalls: u64,
    /// Most old snapshots retained at once (a worker could still hold them).
    snapshots_retired_max: usize,
    /// Old snapshots freed.
    snapshots_reclaimed: u64,
    /// Per port (configuration order): link state changes seen.
    link_changes: Vec<u64>,
    /// Path MTU reports that lowered a tunnel's MTU, that changed nothing (the tunnel gone
    /// or changed, or not lower than its MTU by then), and path MTUs expired.
    pmtu_lowered: u64,
    pmtu_ignored: u64,
    pmtu_expired: u64,
    /// Probed tunnels that went down, and came back up (each logged).
    tunnels_down: u64,
    tunnels_up: u64,
    /// The neighbours of connected subnets, resolved on demand.
    on_demand: OnDemandReport,
    /// Neighbor Solicitations sent for IPv6 next hops, those due that could not be sent
    /// (no mbuf, or the TX queue full), and scans deferred by the budget.
    nd_solicitations: u64,
    nd_solicitation_failed: u64,
    nd_solicitations_deferred: u64,
    /// What the IPv6 next hops' cache decided (control/ndcache.rs), and how many next hops
    /// it holds now: learned, and being asked for.
    nd: ndcache::NdCounters,
    nd_next_hops: usize,
    nd_next_hops_pending: usize,
}

/// What the on-demand neighbours counted, and how many there are now.
#[derive(Debug, Clone, Copy, Default)]
struct OnDemandReport {
    counters: dataplane::control::ondemand::OnDemandCounters,
    /// Resolved, and asked for, now.
    held: usize,
    pending: usize,
}

/// What the workers hand the control thread: neighbours heard by ARP, and what the underlay
/// said about our tunnels' MTUs.
#[derive(Clone, Copy)]
struct Heard<'q> {
    neighbors: &'q LearnQueue,
    path_mtu: &'q PathMtuQueue,
    /// Destinations on connected subnets whose MAC a worker found unknown.
    resolve: &'q ResolveQueue,
}

/// How often the wanted list is scanned for next hops to ask for: a full scan of a table
/// with 100,000 next hops is a few milliseconds, not to be done on every 5 ms tick.
const ARP_SCAN: Duration = Duration::from_millis(20);

impl Control<'_, '_> {
    /// Install learned neighbours (one new snapshot for all of them), then ask for the
    /// next hops still unresolved.
    fn tick(&mut self, heard_queues: Heard<'_>, pool: &Mempool<'_>) {
        let learned = heard_queues.neighbors;
        let mut heard = Vec::new();
        while let Some(e) = learned.pop() {
            heard.push(e);
        }
        let mut unresolved = Vec::new();
        while let Some(e) = heard_queues.resolve.pop() {
            unresolved.push(e);
        }
        if !heard.is_empty() || !unresolved.is_empty() {
            if let Ok(mut st) = self.state.lock() {
                let now = Instant::now();
                let snap = std::sync::Arc::clone(st.snapshots().current());
                for (port, ip) in unresolved {
                    // Still on a connected subnet and still unknown (a worker may have
                    // seen an older snapshot).
                    if let (Some(source), None) = (snap.on_link(port, ip), snap.neighbor(port, ip))
                    {
                        if !st.is_static_neighbor(port, ip)
                            && !self.on_demand.want(port, ip, source, now)
                        {
                            log::debug!("{ip} on port {port}: no room to resolve it on demand");
                        }
                    }
                }
                let mut entries = Vec::with_capacity(heard.len());
                let mut entries6 = Vec::new();
                for h in heard {
                    let (port, ip, mac, how) = match h {
                        HeardNeighbor::Arp(port, ip, mac, how) => (port, ip, mac, how),
                        HeardNeighbor::Nd(port, ip, how) => {
                            // Still a next hop we need (a worker may have seen an older
                            // snapshot).
                            if !snap.wants_neighbor6(port, ip) {
                                continue;
                            }
                            let fixed = st.is_static_neighbor6(port, ip);
                            match self.nd.heard(port, ip, how, fixed, now) {
                                ndcache::Decision::Learn(mac) => {
                                    log::info!("neighbour {ip} on port {port} is at {mac}");
                                    entries6.push((port, ip, mac));
                                }
                                ndcache::Decision::Unchanged => {}
                                ndcache::Decision::Ignored(why) => log::debug!(
                                    "Neighbor Discovery about {ip} on port {port} ignored: \
                                     {why:?}"
                                ),
                            }
                            continue;
                        }
                    };
                    let on_link = if snap.wants_neighbor(port, ip) {
                        None
                    } else {
                        snap.on_link(port, ip)
                    };
                    if st.is_static_neighbor(port, ip) {
                        // A learned entry never replaces a static one.
                        self.report.arp_static_kept += 1;
                    } else if let Some(source) = on_link {
                        match self.on_demand.heard(port, ip, source, how, now) {
                            OnDemandVerdict::Learn { waited } => {
                                if let Some(w) = waited {
                                    log::info!(
                                        "neighbour {ip} on port {port} is at {mac}: resolved \
                                         on demand in {} ms",
                                        w.as_millis()
                                    );
                                }
                                if snap.neighbor(port, ip) != Some(mac) {
                                    entries.push((port, ip, mac));
                                }
                            }
                            OnDemandVerdict::Unsolicited => {
                                log::debug!(
                                    "unsolicited ARP reply: {ip} is at {mac} on port {port}; \
                                     ignored"
                                );
                                self.report.arp_unsolicited += 1;
                            }
                            OnDemandVerdict::Full => {}
                        }
                    } else if how == arp::Heard::Reply && !self.pacer.take_solicited(port, ip, now)
                    {
                        log::debug!(
                            "unsolicited ARP reply: {ip} is at {mac} on port {port}; ignored"
                        );
                        self.report.arp_unsolicited += 1;
                    } else {
                        log::info!("neighbour {ip} on port {port} is at {mac}");
                        entries.push((port, ip, mac));
                    }
                }
                if !entries6.is_empty() {
                    match st.learn6(&entries6) {
                        Ok(g) => log::info!(
                            target: dataplane::control::audit::TARGET,
                            "generation {g}: ND: {} IPv6 next hop(s) learned",
                            entries6.len()
                        ),
                        Err(e) => log::error!(
                            "cannot rebuild the tables after learning IPv6 next hops: {e}"
                        ),
                    }
                }
                if !entries.is_empty() {
                    self.report.neighbors_learned += entries.len() as u64;
                    match st.learn(&entries) {
                        Ok(g) => log::info!(
                            target: dataplane::control::audit::TARGET,
                            "generation {g}: ARP: {} neighbour(s) learned",
                            entries.len()
                        ),
                        Err(e) => {
                            log::error!("cannot rebuild the tables after learning neighbours: {e}")
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + ARP_SCAN;
        let Some(snap) = self
            .state
            .lock()
            .ok()
            .map(|st| std::sync::Arc::clone(st.snapshots().current()))
        else {
            return;
        };
        let mut due = Vec::new();
        self.pacer.due(
            now,
            snap.wanted(),
            |port, ip| snap.neighbor(port, ip).is_some(),
            &mut due,
        );
        self.report.arp_requests_deferred = self.pacer.deferred();
        // On demand: give up on and forget what stopped answering, then ask for the rest.
        let gone = self
            .on_demand
            .expire(now, |port, ip| snap.on_link(port, ip).is_some());
        if !gone.is_empty() {
            if let Ok(mut st) = self.state.lock() {
                match st.forget(&gone) {
                    Ok(Some(g)) => log::info!(
                        target: dataplane::control::audit::TARGET,
                        "generation {g}: ARP: {} on-demand neighbour(s) forgotten (no answer, \
                         or off their connected subnet)",
                        gone.len()
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        log::error!("cannot rebuild the tables after forgetting neighbours: {e}")
                    }
                }
            }
        }
        self.on_demand.due(now, &mut due);
        self.solicit(&snap, pool, now);
        let c = self.on_demand.counters();
        let (held, pending) = self.on_demand.held();
        self.report.on_demand = OnDemandReport {
            counters: c,
            held,
            pending,
        };
        for (port, ip, from) in due {
            let Ok(mut queues) = self.tx.lock() else {
                self.report.arp_request_failed += 1;
                continue;
            };
            let (Some(entry), Some(Some(q))) = (snap.port(port), queues.get_mut(usize::from(port)))
            else {
                self.report.arp_request_failed += 1;
                continue;
            };
            // No mbuf (the pool is exhausted) or the queue is full: counted, and asked
            // again after the retry time.
            let Some(mut m) = pool.alloc() else {
                self.report.arp_request_failed += 1;
                continue;
            };
            // A neighbour we know (an on-demand one asked again) is asked directly.
            let to = snap
                .neighbor(port, ip)
                .unwrap_or(EthernetAddress::BROADCAST);
            if !arp::request_to(&mut m, entry, from, ip, to) {
                self.report.arp_request_failed += 1;
                continue;
            }
            let mut b = Burst::new();
            if b.push(m).is_ok() && q.tx_burst(&mut b) == 1 {
                self.report.arp_requests += 1;
            } else {
                self.report.arp_request_failed += 1;
            }
        }
    }
}

impl Control<'_, '_> {
    /// IPv6 next hops: forget the learned ones that stopped answering or that no route
    /// needs, then send the Neighbor Solicitations due (paced as ARP requests are).
    fn solicit(&mut self, snap: &Snapshot, pool: &Mempool<'_>, now: Instant) {
        let expired = self
            .nd
            .expire(now, |port, ip| snap.wants_neighbor6(port, ip));
        for (port, ip) in &expired.unanswered {
            log::warn!(
                "IPv6 next hop {ip} on port {port}: no answer to {} s of Neighbor \
                 Solicitations; its packets drop as no_neighbor while it is asked for",
                NdCache::UNANSWERED.as_secs()
            );
        }
        for (port, ip) in &expired.unreachable {
            log::warn!(
                "IPv6 next hop {ip} on port {port}: stopped answering its probes; forgotten, \
                 resolved afresh"
            );
        }
        if !expired.forgotten.is_empty() {
            if let Ok(mut st) = self.state.lock() {
                match st.forget6(&expired.forgotten) {
                    Ok(Some(g)) => log::info!(
                        target: dataplane::control::audit::TARGET,
                        "generation {g}: ND: {} IPv6 next hop(s) forgotten (no answer, or no \
                         route needs them)",
                        expired.forgotten.len()
                    ),
                    Ok(None) => {}
                    Err(e) => log::error!(
                        "cannot rebuild the tables after forgetting IPv6 next hops: {e}"
                    ),
                }
            }
        }
        let mut due = Vec::new();
        self.nd.due(
            now,
            snap.wanted6(),
            |port, ip| snap.neighbor6(port, ip).is_some(),
            &mut due,
        );
        self.report.nd_solicitations_deferred = self.nd.deferred();
        for (port, target, from, to) in due {
            let Ok(mut queues) = self.tx.lock() else {
                self.report.nd_solicitation_failed += 1;
                continue;
            };
            let (Some(entry), Some(Some(q))) = (snap.port(port), queues.get_mut(usize::from(port)))
            else {
                self.report.nd_solicitation_failed += 1;
                continue;
            };
            let Some(mut m) = pool.alloc() else {
                self.report.nd_solicitation_failed += 1;
                continue;
            };
            if !nd::solicit(&mut m, entry, from, target, to) {
                self.report.nd_solicitation_failed += 1;
                continue;
            }
            let mut b = Burst::new();
            if b.push(m).is_ok() && q.tx_burst(&mut b) == 1 {
                self.report.nd_solicitations += 1;
            } else {
                self.report.nd_solicitation_failed += 1;
            }
        }
        self.report.nd = self.nd.counters();
        (self.report.nd_next_hops, self.report.nd_next_hops_pending) = self.nd.held();
    }
}

/// Act on the probed tunnels' health: a tunnel its probes find down leaves the routes when
/// it falls back, and rejoins them when they find it up (one publication for all that
/// changed). Each change is logged and counted.
fn tunnel_health(state: &Mutex<ControlState>, appliance: &Appliance, counted: &mut ControlReport) {
    let down: std::collections::BTreeSet<String> = match appliance.host.probes.lock() {
        Ok(mut board) => {
            // The prober logs each change itself; what counts here is the state now.
            board.changes.clear();
            board
                .tunnels
                .iter()
                .filter(|(_, p)| p.health == dataplane::control::health::Health::Down)
                .map(|(n, _)| n.clone())
                .collect()
        }
        Err(_) => return,
    };
    let Ok(mut st) = state.lock() else {
        return;
    };
    if st.tunnels_down() == &down {
        return;
    }
    match st.tunnel_health(&down) {
        Ok((changes, generation)) => {
            for (name, is_down) in changes {
                let falls_back = st
                    .config()
                    .tunnels
                    .iter()
                    .any(|t| t.name == name && t.fallback);
                if is_down {
                    counted.tunnels_down += 1;
                } else {
                    counted.tunnels_up += 1;
                }
                let what = match (is_down, falls_back) {
                    (true, true) => "down: its prefixes fall back to what else covers them",
                    (true, false) => "down (no fallback: its prefixes stay routed into it)",
                    (false, true) => "up: its prefixes are routed into it again",
                    (false, false) => "up",
                };
                match generation {
                    Some(g) => log::warn!(
                        target: dataplane::control::audit::TARGET,
                        "generation {g}: tunnel {name:?} {what}"
                    ),
                    None => log::warn!("tunnel {name:?} {what}"),
                }
            }
        }
        Err(e) => log::error!("cannot act on the tunnels' health: {e}"),
    }
}

/// Take the workers' path MTU reports (one publication for those that lower a tunnel's
/// MTU), and let the path MTUs whose time is up expire. Each change is logged and counted.
fn path_mtus(
    state: &Mutex<ControlState>,
    queue: &PathMtuQueue,
    counted: &mut ControlReport,
    now: Instant,
) {
    let mut reports = Vec::new();
    while let Some(r) = queue.pop() {
        reports.push(r);
    }
    let Ok(mut st) = state.lock() else {
        return;
    };
    if !reports.is_empty() {
        match st.path_mtu_reports(&reports, now) {
            Ok((outcomes, generation)) => {
                for o in outcomes {
                    match o {
                        PathMtuOutcome::Lowered {
                            tunnel,
                            was,
                            mtu,
                            reported,
                            from,
                        } => {
                            counted.pmtu_lowered += 1;
                            let raised = if mtu > reported {
                                ", raised to the floor: 576 inside"
                            } else {
                                ""
                            };
                            log::info!(
                                target: dataplane::control::audit::TARGET,
                                "generation {}: path MTU: tunnel {tunnel:?} from {was} to {mtu} \
                                 ({from} said fragmentation needed, next-hop MTU \
                                 {reported}{raised}) for {} minutes",
                                generation.unwrap_or(0),
                                pmtu::EXPIRY.as_secs() / 60
                            );
                        }
                        PathMtuOutcome::Ignored(why) => {
                            counted.pmtu_ignored += 1;
                            log::debug!("path MTU report ignored: {why}");
                        }
                    }
                }
            }
            Err(e) => log::error!("cannot rebuild the tables for a path MTU: {e}"),
        }
    }
    match st.expire_path_mtus(now) {
        Ok((gone, Some(g))) => {
            for (tunnel, path, mtu) in gone {
                counted.pmtu_expired += 1;
                log::info!(
                    target: dataplane::control::audit::TARGET,
                    "generation {g}: path MTU: tunnel {tunnel:?} from {path} back to {mtu} \
                     (the underlay's report expired)"
                );
            }
        }
        Ok(_) => {}
        Err(e) => log::error!("cannot rebuild the tables for an expired path MTU: {e}"),
    }
}

impl Control<'_, '_> {
    /// Read every port's link state now and then; log and count changes. A port whose
    /// link is down stays in the tables: what the workers send there and the PMD refuses is
    /// counted as the port's TX drops, and forwarding resumes by itself when the link
    /// comes back.
    fn watch_links(&mut self, ports: &[Port<'_>]) {
        let now = Instant::now();
        if now < self.next_link_check {
            return;
        }
        self.next_link_check = now + LINK_CHECK;
        let mut health = Vec::with_capacity(ports.len());
        for (i, port) in ports.iter().enumerate() {
            let hw = port.stats().unwrap_or_default();
            let link = port.link();
            health.push(PortHealth {
                rx_packets: hw.rx_packets,
                rx_bytes: hw.rx_bytes,
                tx_packets: hw.tx_packets,
                tx_bytes: hw.tx_bytes,
                rx_errors: hw.rx_errors,
                rx_missed: hw.rx_missed,
                rx_no_mbuf: hw.rx_no_mbuf,
                tx_errors: hw.tx_errors,
                link_up: link.as_ref().is_ok_and(|l| l.up),
                link_speed_mbps: link.as_ref().map_or(0, |l| l.speed_mbps),
                link_full_duplex: link.as_ref().is_ok_and(|l| l.full_duplex),
                link_changes: 0,
            });
            let Ok(link) = link else { continue };
            let Some(seen) = self.links.get_mut(i) else {
                continue;
            };
            match *seen {
                Some(up) if up == link.up => {}
                Some(_) => {
                    if let Some(c) = self.report.link_changes.get_mut(i) {
                        *c += 1;
                    }
                    if link.up {
                        log::info!("port {} ({}): link up", port.id(), port.name());
                    } else {
                        log::warn!(
                            "port {} ({}): link down; packets routed there are counted as TX \
                             drops until it comes back",
                            port.id(),
                            port.name()
                        );
                    }
                }
                None => log::info!(
                    "port {} ({}): link {}",
                    port.id(),
                    port.name(),
                    if link.up { "up" } else { "down" }
                ),
            }
            *seen = Some(link.up);
        }
        for (h, &c) in health.iter_mut().zip(&self.report.link_changes) {
            h.link_changes = c;
        }
        if let Ok(mut shared) = self.health.lock() {
            *shared = health;
        }
    }

    /// Free the old snapshots no worker holds any more, then raise (log and count) an alarm
    /// for a worker stuck on an old snapshot, and say when it moves on. Its old tables stay
    /// valid meanwhile: they are freed after it lets go.
    fn watch_workers(&mut self, progress: &[WorkerProgress], events: &mut Vec<StallEvent>) {
        let Some(current) = self.state.lock().ok().map(|mut st| {
            st.reclaim();
            let p = st.snapshots();
            self.report.snapshots_retired_max = self.report.snapshots_retired_max.max(p.retired());
            p.generation()
        }) else {
            return;
        };
        events.clear();
        self.stalls.check(
            Instant::now(),
            current,
            progress
                .iter()
                .map(|p| p.generation.load(Ordering::Relaxed)),
            events,
        );
        for e in events.iter() {
            match *e {
                StallEvent::Stalled {
                    worker,
                    holds,
                    current,
                    for_,
                } => log::error!(
                    "worker {worker} stalled: still on table generation {holds} after {} ms, \
                     generation {current} is current; its old tables stay in memory until it \
                     moves on",
                    for_.as_millis()
                ),
                StallEvent::Recovered { worker, for_ } => log::warn!(
                    "worker {worker} reached the current tables again after {} ms",
                    for_.as_millis()
                ),
            }
        }
        self.report.worker_stalls = self.stalls.alarms();
    }
}

/// The main lcore's loop: the control thread's work, and stopping on a signal or once every
/// worker has been idle long enough.
#[allow(clippy::too_many_arguments)]
fn supervise(
    stop: &AtomicBool,
    term: &AtomicBool,
    idle_ms: Option<u64>,
    progress: &[WorkerProgress],
    epoch: Instant,
    mut control: Control<'_, '_>,
    heard: Heard<'_>,
    pool: &Mempool<'_>,
    listener: Option<&UnixListener>,
    ports: &[Port<'_>],
    outside: Outside<'_>,
) -> ControlReport {
    let api_stop = AtomicBool::new(false);
    let api_counters = server::ApiCounters::default();
    let Outside {
        service,
        appliance,
        metrics,
        fpm,
    } = outside;
    std::thread::scope(|scope| {
        crate::observe::serve(
            scope,
            metrics,
            control.state,
            server::Live {
                workers: progress,
                ports: control.health,
                api: &api_counters,
                appliance,
            },
            &api_stop,
        );
        if let Some((l, grace)) = fpm {
            let state = control.state;
            let api_stop = &api_stop;
            let counters = &appliance.fpm;
            std::thread::Builder::new()
                .name("backbone-fpm".into())
                .spawn_scoped(scope, move || {
                    dataplane::control::fpm::serve(l, state, counters, grace, api_stop)
                })
                .map_err(|e| log::error!("cannot start the FPM listener: {e}"))
                .ok();
        }
        if let Some(l) = listener {
            let state = control.state;
            let health = control.health;
            let api_stop = &api_stop;
            let api = &api_counters;
            std::thread::Builder::new()
                .name("backbone-api".into())
                .spawn_scoped(scope, move || {
                    server::serve(
                        l,
                        state,
                        server::Live {
                            workers: progress,
                            ports: health,
                            api,
                            appliance,
                        },
                        api_stop,
                    )
                })
                .map_err(|e| log::error!("cannot start the control API thread: {e}"))
                .ok();
        }
        supervise_loop(
            stop,
            term,
            idle_ms,
            progress,
            epoch,
            &mut control,
            heard,
            pool,
            ports,
            service,
            appliance,
        );
        api_stop.store(true, Ordering::Relaxed);
    });
    let r = control.report.clone();
    log::info!(
        "control: {} ARP requests sent ({} could not be sent, {} scans deferred by the ARP \
         budget), {} neighbours learned; {} Neighbor Solicitations sent ({} could not be \
         sent), {} IPv6 next hops learned",
        r.arp_requests,
        r.arp_request_failed,
        r.arp_requests_deferred,
        r.neighbors_learned,
        r.nd_solicitations,
        r.nd_solicitation_failed,
        r.nd.learned
    );
    r
}

#[allow(clippy::too_many_arguments)]
fn supervise_loop(
    stop: &AtomicBool,
    term: &AtomicBool,
    idle_ms: Option<u64>,
    progress: &[WorkerProgress],
    epoch: Instant,
    control: &mut Control<'_, '_>,
    heard: Heard<'_>,
    pool: &Mempool<'_>,
    ports: &[Port<'_>],
    service: &mut Service,
    appliance: &Appliance,
) {
    let mut stall_events = Vec::new();
    let mut frr = dataplane::control::frr::FrrSync::start()
        .map_err(|e| log::error!("cannot start the FRR configuration writer: {e}"))
        .ok();
    // zebra is told to connect where the FPM listener is (the file's [fpm] listen, or
    // --fpm), or nowhere when there is none: as `backbone frr-config` writes it.
    let fpm = appliance.fpm.listen.lock().ok().and_then(|l| *l);
    loop {
        // Ten milliseconds: what ARP learning and a stop may wait, and few enough wakeups
        // that an idle appliance costs little CPU.
        std::thread::sleep(Duration::from_millis(10));
        control.tick(heard, pool);
        path_mtus(
            control.state,
            heard.path_mtu,
            &mut control.report,
            Instant::now(),
        );
        tunnel_health(control.state, appliance, &mut control.report);
        if let (Some(f), Ok(st)) = (frr.as_mut(), control.state.try_lock()) {
            let generation = st.snapshots().current().generation();
            f.tick(st.config(), &appliance.about.config, generation, fpm);
            for (to, from) in [
                (&appliance.control.frr_writes, &f.counters.writes),
                (&appliance.control.frr_reloads, &f.counters.reloads),
                (
                    &appliance.control.frr_reload_failures,
                    &f.counters.reload_failures,
                ),
            ] {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        control.watch_workers(progress, &mut stall_events);
        control.watch_links(ports);
        control.report.publish(&appliance.control);
        service.tick(control.state, progress, appliance);
        if term.load(Ordering::Relaxed) {
            log::info!("signal received: stopping the workers");
            break;
        }
        if let Some(ms) = idle_ms {
            let now = epoch.elapsed().as_millis() as u64;
            let idle = progress
                .iter()
                .all(|p| now.saturating_sub(p.last_rx_ms.load(Ordering::Relaxed)) >= ms);
            if idle {
                log::info!("every RX queue idle for {ms} ms: stopping");
                break;
            }
        }
    }
    service.stopping();
    stop.store(true, Ordering::Relaxed);
}

impl ControlReport {
    /// Copy the counters where the control API and the metrics read them.
    fn publish(&self, to: &ControlCounters) {
        for (shared, v) in [
            (&to.arp_requests, self.arp_requests),
            (&to.arp_request_failed, self.arp_request_failed),
            (&to.arp_requests_deferred, self.arp_requests_deferred),
            (&to.neighbors_learned, self.neighbors_learned),
            (&to.arp_unsolicited, self.arp_unsolicited),
            (&to.arp_static_kept, self.arp_static_kept),
            (&to.worker_stalls, self.worker_stalls),
            (&to.pmtu_lowered, self.pmtu_lowered),
            (&to.pmtu_ignored, self.pmtu_ignored),
            (&to.pmtu_expired, self.pmtu_expired),
            (&to.tunnels_down, self.tunnels_down),
            (&to.tunnels_up, self.tunnels_up),
            (
                &to.arp_on_demand_requested,
                self.on_demand.counters.requested,
            ),
            (&to.arp_on_demand_full, self.on_demand.counters.full),
            (&to.arp_on_demand_resolved, self.on_demand.counters.resolved),
            (
                &to.arp_on_demand_unanswered,
                self.on_demand.counters.unanswered,
            ),
            (&to.arp_on_demand_expired, self.on_demand.counters.expired),
            (&to.neighbors_on_demand, self.on_demand.held as u64),
            (
                &to.neighbors_on_demand_pending,
                self.on_demand.pending as u64,
            ),
            (&to.nd_solicitations, self.nd_solicitations),
            (&to.nd_solicitation_failed, self.nd_solicitation_failed),
            (
                &to.nd_solicitations_deferred,
                self.nd_solicitations_deferred,
            ),
            (&to.nd_learned, self.nd.learned),
            (&to.nd_unsolicited, self.nd.unsolicited),
            (&to.nd_static_kept, self.nd.static_kept),
            (&to.nd_not_override, self.nd.not_override),
            (&to.nd_no_lla, self.nd.no_lla),
            (&to.nd_unanswered, self.nd.unanswered),
            (&to.nd_unreachable, self.nd.unreachable),
            (&to.nd_next_hops, self.nd_next_hops as u64),
            (&to.nd_next_hops_pending, self.nd_next_hops_pending as u64),
        ] {
            shared.store(v, Ordering::Relaxed);
        }
    }
}

fn named<T: Copy>(items: impl Iterator<Item = (&'static str, T)>) -> Map<String, Value>
where
    Value: From<T>,
{
    items.map(|(k, v)| (k.to_owned(), Value::from(v))).collect()
}

#[allow(clippy::too_many_arguments)]
fn final_stats(
    cfg: &pipeline_config::ValidatedConfig,
    ids: &[PortId],
    ports: &[Port<'_>],
    snap: &Snapshot,
    reports: &[WorkerReport],
    lcores: &[u32],
    control: &ControlReport,
    host: &dataplane::control::exception::HostCounters,
    elapsed: Duration,
) -> Value {
    let mut total = Counters::default();
    for r in reports {
        total.merge(&r.counters);
    }
    if let Ok(c) = host.pipeline.lock() {
        total.merge_tx(&c);
    }
    let port_values: Vec<Value> = cfg
        .ports
        .iter()
        .zip(ids)
        .zip(ports)
        .enumerate()
        .map(|(i, ((p, &id), port))| {
            let hw = port.stats().unwrap_or_default();
            let link_up = port.link().is_ok_and(|l| l.up);
            let link_changes = control.link_changes.get(i).copied().unwrap_or(0);
            let slot = usize::from(id);
            let pc = total.ports.get(slot).copied().unwrap_or_default();
            let tx_sent: u64 = reports
                .iter()
                .map(|r| r.tx_sent.get(slot).copied().unwrap_or(0))
                .sum();
            let tx_dropped: u64 = reports
                .iter()
                .map(|r| r.tx_dropped.get(slot).copied().unwrap_or(0))
                .sum();
            json!({
                "name": p.name, "device": p.device, "port_id": id,
                "rx_packets": hw.rx_packets, "rx_bytes": hw.rx_bytes,
                "tx_packets": hw.tx_packets, "tx_bytes": hw.tx_bytes,
                "rx_errors": hw.rx_errors, "rx_missed": hw.rx_missed, "rx_no_mbuf": hw.rx_no_mbuf,
                "tx_errors": hw.tx_errors,
                "tx_sent": tx_sent, "tx_dropped": tx_dropped,
                "link_up": link_up, "link_changes": link_changes,
                "pipeline_rx_packets": pc.rx.packets, "pipeline_rx_bytes": pc.rx.bytes,
                "pipeline_tx_packets": pc.tx.packets, "pipeline_tx_bytes": pc.tx.bytes,
                "drops": named(DropReason::ALL.iter()
                    .map(|r| (r.name(), pc.drops[*r as usize])).filter(|(_, n)| *n > 0)),
            })
        })
        .collect();
    let tunnels: Vec<Value> = snap
        .tunnels()
        .iter()
        .map(|(id, t)| {
            let c = total.tunnels.get(id.index()).copied().unwrap_or_default();
            let d = total
                .tunnel_drops
                .get(id.index())
                .copied()
                .unwrap_or_default();
            json!({
                "name": t.config.name,
                "rx_packets": c.rx.packets, "rx_bytes": c.rx.bytes,
                "tx_packets": c.tx.packets, "tx_bytes": c.tx.bytes,
                "drops": named(d.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.name(), n))),
                "mtu": t.mtu, "configured_mtu": t.config.mtu, "path_mtu": t.path_mtu,
            })
        })
        .collect();
    let workers: Vec<Value> = reports
        .iter()
        .zip(lcores)
        .map(|(r, l)| {
            // Every packet received is forwarded, dropped or punted, exactly once.
            json!({
                "lcore": l, "bursts": r.bursts, "generation": r.generation,
                "polls": r.polls, "busy_polls": r.busy_polls,
                "idle_sleeps": r.idle_sleeps, "idle_sleep_us": r.idle_sleep_us,
                "rx_packets": r.counters.ports.iter().map(|p| p.rx.packets).sum::<u64>(),
                "forwarded": r.counters.ports.iter().map(|p| p.tx.packets).sum::<u64>(),
                "dropped": r.counters.total_drops(),
                "punted": r.counters.punts.iter().sum::<u64>(),
                "icmp_sent": r.counters.icmp_sent.iter().sum::<u64>(),
                "echo_replies": r.counters.echo_replies,
                "tx_packets": r.tx_sent.iter().sum::<u64>(),
                "tx_dropped": r.tx_dropped.iter().sum::<u64>(),
                "tx_no_queue": r.tx_no_queue,
                "arp_replies": r.arp_replies,
                "nd_replies": r.nd_replies,
            })
        })
        .collect();
    let on_demand = json!({
        "requested": control.on_demand.counters.requested,
        "full": control.on_demand.counters.full,
        "resolved": control.on_demand.counters.resolved,
        "unanswered": control.on_demand.counters.unanswered,
        "expired": control.on_demand.counters.expired,
        "neighbors": control.on_demand.held,
        "resolve_queued": reports.iter().map(|r| r.resolve_queued).sum::<u64>(),
        "resolve_queue_full": reports.iter().map(|r| r.resolve_queue_full).sum::<u64>(),
    });
    let mut stats = json!({
        "elapsed_s": elapsed.as_secs_f64(),
        "generation": snap.generation(),
        "ports": port_values,
        "tunnels": tunnels,
        "drops": named(DropReason::ALL.iter().map(|r| (r.name(), total.drop_count(*r)))),
        "events": named(Event::ALL.iter().map(|e| (e.name(), total.event_count(*e)))),
        "punts": named(PuntReason::ALL.iter().map(|p| (p.name(), total.punt_count(*p)))),
        "icmp_sent": named(IcmpKind::ALL.iter().map(|k| (k.name(), total.icmp_count(*k)))),
        "icmp_rate_limited": total.icmp_rate_limited,
        "echo_replies": total.echo_replies,
        "arp_replies": reports.iter().map(|r| r.arp_replies).sum::<u64>(),
        "nd_replies": reports.iter().map(|r| r.nd_replies).sum::<u64>(),
        "nd_invalid": reports.iter().map(|r| r.nd_invalid).sum::<u64>(),
        "arp_learned": reports.iter().map(|r| r.arp_learned).sum::<u64>(),
        "arp_learn_dropped": reports.iter().map(|r| r.arp_learn_dropped).sum::<u64>(),
        "arp_requests": control.arp_requests,
        "arp_request_failed": control.arp_request_failed,
        "arp_requests_deferred": control.arp_requests_deferred,
        "neighbors_learned": control.neighbors_learned,
        "arp_unsolicited": control.arp_unsolicited,
        "arp_static_kept": control.arp_static_kept,
        "on_demand": on_demand,
        "worker_stalls": control.worker_stalls,
        "pmtu_lowered": control.pmtu_lowered,
        "pmtu_ignored": control.pmtu_ignored,
        "pmtu_expired": control.pmtu_expired,
        "tunnels_down": control.tunnels_down,
        "tunnels_up": control.tunnels_up,
        "snapshots_retired_max": control.snapshots_retired_max,
        "snapshots_reclaimed": control.snapshots_reclaimed,
        "punt_dropped": reports.iter().map(|r| r.punt_dropped.iter().sum::<u64>()).sum::<u64>(),
        "punt_dropped_by_reason": named(PuntReason::ALL.iter().map(|&r| {
            (r.name(), reports.iter().map(|x| x.punt_dropped[r as usize]).sum::<u64>())
        })),
        "host_queued": reports.iter().map(|r| r.host_queued).sum::<u64>(),
        "host_queue_full": reports.iter().map(|r| r.host_queue_full).sum::<u64>(),
        "host": named(host.named().into_iter()),
        "tx_no_queue": reports.iter().map(|r| r.tx_no_queue).sum::<u64>(),
        "workers": workers,
    });
    // Neighbor Discovery (beside ARP's, at the top level too).
    for (k, v) in [
        ("nd_heard", reports.iter().map(|r| r.nd_heard).sum::<u64>()),
        (
            "nd_heard_dropped",
            reports.iter().map(|r| r.nd_heard_dropped).sum::<u64>(),
        ),
        ("nd_solicitations", control.nd_solicitations),
        ("nd_solicitation_failed", control.nd_solicitation_failed),
        (
            "nd_solicitations_deferred",
            control.nd_solicitations_deferred,
        ),
        ("nd_learned", control.nd.learned),
        ("nd_unsolicited", control.nd.unsolicited),
        ("nd_static_kept", control.nd.static_kept),
        ("nd_not_override", control.nd.not_override),
        ("nd_no_lla", control.nd.no_lla),
        ("nd_unanswered", control.nd.unanswered),
        ("nd_unreachable", control.nd.unreachable),
    ] {
        stats[k] = Value::from(v);
    }
    stats
}

fn print_summary(stats: &Value) {
    println!(
        "\n{:<16} {:>10} {:>10} {:>10}",
        "port", "rx", "tx", "tx drop"
    );
    for p in stats["ports"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>10} {:>10} {:>10}",
            p["name"].as_str().unwrap_or("?"),
            p["rx_packets"].as_u64().unwrap_or(0),
            p["tx_packets"].as_u64().unwrap_or(0),
            p["tx_dropped"].as_u64().unwrap_or(0)
        );
    }
    println!("\n{:<16} {:>10} {:>10}", "tunnel", "rx", "tx");
    for t in stats["tunnels"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>10} {:>10}",
            t["name"].as_str().unwrap_or("?"),
            t["rx_packets"].as_u64().unwrap_or(0),
            t["tx_packets"].as_u64().unwrap_or(0)
        );
    }
    println!("\ndrops:");
    let mut any = false;
    for (k, v) in stats["drops"].as_object().into_iter().flatten() {
        if v.as_u64().unwrap_or(0) > 0 {
            println!("  {k:<24} {v}");
            any = true;
        }
    }
    if !any {
        println!("  none");
    }
}

/// `backbone smoke`.
pub fn smoke(bursts: u32, eal_over: Option<Vec<String>>) -> Res<()> {
    let mut eal_args = eal_argv(Vec::new(), eal_over.clone());
    if eal_over.is_none() {
        eal_args = pipeline_config::eal_args_no_nic(&format!("smoke{}", std::process::id()));
        eal_args.push("--vdev=net_ring0".into());
    }
    let eal = Eal::init(&eal_args).map_err(|e| e.to_string())?;
    println!(
        "{} with {} lcore(s), {} port(s)",
        Eal::version(),
        eal.lcore_count(),
        eal.port_count()
    );
    let pool = Mempool::new(&eal, "smoke_pool", 4095, 256, Mempool::default_data_room())
        .map_err(|e| e.to_string())?;
    let port = Port::start(&eal, 0, &PortConfig::default(), &pool).map_err(|e| e.to_string())?;
    let (mut rx, mut tx) = port.take_queues().map_err(|e| e.to_string())?;
    let frame: Vec<u8> = (0..64u8).collect();
    let (mut sent, mut received, mut intact) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    for _ in 0..bursts {
        let mut b = Burst::new();
        while !b.is_full() {
            let Some(m) = pool.alloc_with(&frame) else {
                break;
            };
            if b.push(m).is_err() {
                break;
            }
        }
        sent += tx[0].tx_burst(&mut b) as u64;
        drop(b);
        let mut got = Burst::new();
        received += rx[0].rx_burst(&mut got) as u64;
        intact += got.iter().filter(|m| m.data() == frame.as_slice()).count() as u64;
    }
    let elapsed = start.elapsed();
    drop((rx, tx));
    println!(
        "sent {sent}, received {received} ({intact} intact) in {bursts} bursts, {:.2} Mpps round trip",
        received as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "port counters: {:?}",
        port.stats().map_err(|e| e.to_string())?
    );
    drop(port);
    if received != sent || intact != received || eal.mbufs_in_use() != 0 {
        return Err("smoke run lost, changed or leaked packets".into());
    }
    println!("smoke run OK");
    Ok(())
}
