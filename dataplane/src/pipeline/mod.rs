//! The tunnel pipeline over a burst: classify, terminate, route, encapsulate, rewrite
//! (SPEC.md), as pure Rust over [`PacketBuf`].
//!
//! [`Pipeline::process`] takes one burst received on one port and the snapshot loaded for
//! that burst, and writes one [`Action`] per packet. It never allocates (except to grow the
//! per-tunnel counters when a snapshot brings more tunnels than any before), locks, formats
//! or panics, whatever the packet bytes. Stages, one file each:
//!
//! 1. [`classify`]: Ethernet, outer IPv4, "is it for us";
//! 2. [`terminate`]: tunnel lookup, GRE, strip, inner checks, BCP 38, ECN, TTL;
//! 3. a bulk longest-prefix match over the burst's inner destinations;
//! 4. [`route`]: hairpin and loop checks;
//! 5. [`encap`]: outer headers and the Ethernet rewrite;
//! 6. [`icmp`]: for a drop that deserves one, the ICMP error, built in the packet's buffer.
//!
//! [`Pipeline::process_traced`] runs the same stages and also records, per packet, what
//! each decided ([`trace`]); the untraced body is compiled without any of it.
//! Beside them, [`pmtu`] reads what the underlay says about our own tunnel packets (ICMP
//! Fragmentation Needed) for the control thread.

pub mod action;
mod classify;
pub mod counters;
mod encap;
mod fast;
pub mod icmp;
mod inject;
pub mod pmtu;
pub mod probe;
mod route;
mod terminate;
pub mod trace;

pub use action::{Action, DropReason, Event, Host, PuntReason};
pub use counters::{
    Counters, PacketBytes, PortCounters, TunnelCounters, TunnelDrops, TUNNEL_DROP_REASONS,
};
pub use icmp::IcmpKind;
pub use pmtu::PathMtuReport;
pub use trace::PacketTrace;

use crate::buffer::PacketBuf;
use crate::lpm::{NextHop, BURST};
use crate::tables::{PortIndex, Snapshot, Target, TunnelId};

/// How many packets ahead of the one it works on the burst loop prefetches table entries.
const PREFETCH_AHEAD: usize = 4;

/// A stage's early verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Drop(DropReason),
    Punt(PuntReason),
    /// Drop, and answer with this ICMP error (if the rules and the rate limit allow).
    Icmp(icmp::IcmpError),
    /// For us: answered if it is an echo request (the reply goes `back`), else punted.
    ToUs {
        punt: PuntReason,
        back: icmp::Back,
    },
    /// The reply to one of our in-tunnel probes: for the prober.
    Probe,
}

/// A packet ready for routing: it starts at its (inner) IPv4 header, TTL decremented.
///
/// Besides the addresses, it keeps what encapsulation needs from that header and the
/// packet's length, so that later stages need not ask the buffer again (for an mbuf each
/// `data()` or `len()` is a call into DPDK's C wrappers).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Inner {
    pub ingress_tunnel: Option<TunnelId>,
    /// The way the packet came, for an ICMP error about it.
    pub back: icmp::Back,
    /// The ingress tunnel's client router probing it (inner source our endpoint, inner
    /// destination its own): sent back to the router natively, whatever the routes say.
    pub keepalive: bool,
    /// Host order.
    pub src: u32,
    /// Host order.
    pub dst: u32,
    /// The packet's length: its IPv4 total length (padding was trimmed).
    pub len: usize,
    /// The DSCP and ECN byte as the packet now carries it (ECN after RFC 6040).
    pub tos: u8,
    /// The TTL as the packet now carries it (decremented).
    pub ttl: u8,
    /// Whether DF is set (always for IPv6: routers never fragment it).
    pub dont_frag: bool,
    /// An IPv6 packet (inside an IPv4 tunnel): its addresses are `src6` and `dst6`, `tos`
    /// is its traffic class and `ttl` its hop limit; `src` and `dst` are 0.
    pub v6: bool,
    /// Host order (IPv6 only).
    pub src6: u128,
    /// Host order (IPv6 only).
    pub dst6: u128,
}

impl Inner {
    /// An IPv6 packet from tunnel `id` that passed termination: `len` its length, `tc` its
    /// traffic class and `hop_limit` its hop limit as it now carries them.
    #[inline(always)]
    pub(crate) fn set_tunnel6(
        &mut self,
        id: TunnelId,
        src: u128,
        dst: u128,
        len: usize,
        tc: u8,
        hop_limit: u8,
    ) {
        self.ingress_tunnel = Some(id);
        self.back = icmp::Back::Tunnel(id);
        self.keepalive = false;
        self.src = 0;
        self.dst = 0;
        self.len = len;
        self.tos = tc;
        self.ttl = hop_limit;
        self.dont_frag = true;
        self.v6 = true;
        self.src6 = src;
        self.dst6 = dst;
    }
}

/// The host interface a packet for us goes to, if the way it came has one: the ingress
/// tunnel's (when it has a `link`), or the arrival port's (when it has `host_interface`).
#[inline]
fn host_for(snap: &Snapshot, back: icmp::Back) -> Option<Host> {
    match back {
        icmp::Back::Tunnel(id) => snap
            .tunnels()
            .hot(id)
            .filter(|t| t.link != 0)
            .map(|_| Host::Tunnel(id)),
        icmp::Back::Native { port, .. } => snap
            .port(port)
            .filter(|p| p.host_interface)
            .map(|_| Host::Port(port)),
        icmp::Back::None => None,
    }
}

/// The most packets [`Pipeline::process`] takes at once.
pub const MAX_BURST: usize = BURST;

/// One worker's pipeline: its counters and its per-worker state.
#[derive(Debug, Default)]
pub struct Pipeline {
    counters: Counters,
    /// IPv4 identification for the outer headers we write.
    ident: Ident,
    /// Recent tunnel lookups (checked against each burst's snapshot before use).
    tunnel_memo: terminate::TunnelMemo,
    /// This worker's share of the ICMP error rate limit.
    icmp_limiter: icmp::Limiter,
    /// The workers sharing the ICMP rate limit.
    workers: usize,
    /// Where the ICMP rate limit reads the time (see [`Pipeline::set_clock`]).
    clock: Clock,
    /// Destinations on connected subnets whose MAC the last call of [`Pipeline::process`]
    /// found unknown: (port, address), for the control thread to resolve.
    unresolved: Unresolved,
    /// The fast path ([`fast`]) turned off ([`Pipeline::set_fast_path`]): every packet
    /// takes the general stages.
    general_only: bool,
    /// Each burst's [`Inner`]s, kept from one burst to the next.
    inner: InnerScratch,
}

/// The [`Inner`] of each packet of a burst, allocated once with the pipeline and not
/// initialised again per burst (80 bytes a packet: 9 instructions each, 1% of a forwarded
/// packet's). Its entries hold the last burst's values until a stage writes them: the
/// fast path's `terminate` writes every field a later stage reads of the packets it takes
/// (all but an IPv4 packet's IPv6 addresses, which nothing reads), and every packet the
/// general stages take starts from [`Inner::default`].
#[derive(Debug)]
struct InnerScratch(Option<Box<[Inner; MAX_BURST]>>);

impl InnerScratch {
    fn new_array() -> Box<[Inner; MAX_BURST]> {
        Box::new([Inner::default(); MAX_BURST])
    }
}

impl Default for InnerScratch {
    fn default() -> Self {
        InnerScratch(Some(Self::new_array()))
    }
}

/// The addresses on connected subnets one call of [`Pipeline::process`] found no
/// neighbour for, each burst's packets to one address noted once in a row: a fixed array,
/// so noting one allocates nothing.
#[derive(Debug, Clone, Copy)]
struct Unresolved {
    hops: [(PortIndex, u32); MAX_BURST],
    len: usize,
}

impl Default for Unresolved {
    fn default() -> Self {
        Unresolved {
            hops: [(0, 0); MAX_BURST],
            len: 0,
        }
    }
}

impl Unresolved {
    #[inline]
    fn note(&mut self, port: PortIndex, dst: u32) {
        let last = self.len.checked_sub(1).map(|i| self.hops[i]);
        if last != Some((port, dst)) && self.len < MAX_BURST {
            self.hops[self.len] = (port, dst);
            self.len += 1;
        }
    }
}

/// Where the pipeline reads the time, nanoseconds on a monotonic clock: only when an ICMP
/// error is about to be sent (a rare event), never per packet or per burst.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// A fixed time, as tests set it.
    Fixed(u64),
    /// A function the worker gave ([`Pipeline::set_clock_source`]).
    Source(fn() -> u64),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::Fixed(0)
    }
}

impl Clock {
    #[inline]
    fn now(self) -> u64 {
        match self {
            Clock::Fixed(t) => t,
            Clock::Source(f) => f(),
        }
    }
}

/// The outer IPv4 identifications one worker writes: its own residue class modulo the
/// number of workers, so that no two workers ever write the same value (RFC 6864: unique
/// per source, destination and protocol while a datagram may live), for any worker count.
#[derive(Debug, Clone, Copy)]
pub struct Ident {
    next: u16,
    first: u16,
    /// The distance between two of them: the number of workers (1 to 65,536).
    stride: u32,
}

/// A single worker's: every value in turn from 0.
impl Default for Ident {
    fn default() -> Self {
        Ident::for_worker(0, 1)
    }
}

impl Ident {
    /// Worker `index` of `workers` (at most 65,536 workers).
    pub fn for_worker(index: usize, workers: usize) -> Ident {
        let workers = workers.clamp(1, 1 << 16);
        let first = (index % workers) as u16;
        Ident {
            next: first,
            first,
            stride: workers as u32,
        }
    }

    /// The next identification; `stride` apart, wrapping back to the first value.
    #[inline]
    pub fn next_ident(&mut self) -> u16 {
        let id = self.next;
        self.next = u16::try_from(u32::from(id) + self.stride).unwrap_or(self.first);
        id
    }
}

impl Pipeline {
    /// A pipeline with zeroed counters, for a single worker: outer IPv4 identifications
    /// start at `ident_seed` and take every value in turn.
    pub fn new(ident_seed: u16) -> Self {
        Pipeline {
            counters: Counters::default(),
            ident: Ident {
                next: ident_seed,
                first: 0,
                stride: 1,
            },
            tunnel_memo: terminate::TunnelMemo::default(),
            icmp_limiter: icmp::Limiter::default(),
            workers: 1,
            clock: Clock::default(),
            unresolved: Unresolved::default(),
            general_only: false,
            inner: InnerScratch::default(),
        }
    }

    /// The pipeline of worker `index` of `workers`: its outer IPv4 identifications never
    /// meet another worker's nor the exception path's ([`Ident::for_worker`]), and it sends its share (1/`workers`)
    /// of the snapshot's ICMP rate limit.
    pub fn for_worker(index: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        Pipeline {
            // One class more than there are workers: the last is the exception path's.
            ident: Ident::for_worker(index, workers + 1),
            workers,
            ..Pipeline::new(0)
        }
    }

    /// The exception path's pipeline beside `workers` workers (what the host sends through
    /// a host interface, [`Pipeline::inject`]): its outer IPv4 identifications are the
    /// class no worker writes. It sends no ICMP errors.
    pub fn for_host(workers: usize) -> Self {
        let workers = workers.max(1);
        Pipeline {
            ident: Ident::for_worker(workers, workers + 1),
            workers,
            ..Pipeline::new(0)
        }
    }

    /// Set the time the ICMP rate limit sees (nanoseconds on any monotonic clock) to a
    /// fixed value: tests move it by hand.
    #[inline]
    pub fn set_clock(&mut self, now_ns: u64) {
        self.clock = Clock::Fixed(now_ns);
    }

    /// Where to read the time (nanoseconds on a monotonic clock) when an ICMP error is
    /// about to be sent and the rate limit needs it; the pipeline reads no clock otherwise.
    pub fn set_clock_source(&mut self, now_ns: fn() -> u64) {
        self.clock = Clock::Source(now_ns);
    }

    /// Turn the fast path off (`false`) or back on (`true`, the default). Every packet
    /// gets the same action, bytes and counters either way; off, each takes the general
    /// stages, as tests and benchmarks compare.
    pub fn set_fast_path(&mut self, on: bool) {
        self.general_only = !on;
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters, to publish them ([`Counters::publish_into`] notes what it copied).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// The destinations on connected subnets that the last burst processed dropped as
    /// `no_neighbor` (their MAC unknown): (port, address), for the control thread to
    /// resolve by ARP. Consecutive packets to one address are noted once; at most one
    /// entry per packet of the burst.
    pub fn unresolved(&self) -> impl Iterator<Item = (PortIndex, core::net::Ipv4Addr)> + '_ {
        self.unresolved.hops[..self.unresolved.len]
            .iter()
            .map(|&(p, a)| (p, core::net::Ipv4Addr::from(a)))
    }

    /// Process a burst received on `port`: one action per packet in `actions`. Bursts
    /// longer than [`MAX_BURST`] are processed in slices of it; `actions` must be at
    /// least as long as `pkts` (extra packets are left untouched and get no action).
    #[inline]
    pub fn process<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        port: PortIndex,
        pkts: &mut [B],
        actions: &mut [Action],
    ) {
        self.counters.fit(snap.port_slots(), snap.tunnels().slots());
        self.unresolved.len = 0;
        let n = pkts.len().min(actions.len());
        for (p, a) in pkts[..n]
            .chunks_mut(MAX_BURST)
            .zip(actions[..n].chunks_mut(MAX_BURST))
        {
            self.process_burst::<B, false>(snap, port, p, a, &mut []);
        }
    }

    /// [`Pipeline::process`], recording in `traces` what each stage decided for each
    /// packet: `traces` must be at least as long as `pkts` (extra packets are left
    /// untouched, as for `actions`).
    pub fn process_traced<B: PacketBuf>(
        &mut self,
        snap: &Snapshot,
        port: PortIndex,
        pkts: &mut [B],
        actions: &mut [Action],
        traces: &mut [PacketTrace],
    ) {
        self.counters.fit(snap.port_slots(), snap.tunnels().slots());
        self.unresolved.len = 0;
        let n = pkts.len().min(actions.len()).min(traces.len());
        for ((p, a), t) in pkts[..n]
            .chunks_mut(MAX_BURST)
            .zip(actions[..n].chunks_mut(MAX_BURST))
            .zip(traces[..n].chunks_mut(MAX_BURST))
        {
            t.fill(PacketTrace::default());
            self.process_burst::<B, true>(snap, port, p, a, t);
        }
    }

    /// One burst; with `TRACE`, `traces` is as long as `pkts` and gets each packet's
    /// decisions (without, it is empty and never touched).
    fn process_burst<B: PacketBuf, const TRACE: bool>(
        &mut self,
        snap: &Snapshot,
        port: PortIndex,
        pkts: &mut [B],
        actions: &mut [Action],
        traces: &mut [PacketTrace],
    ) {
        // What the callers hold to, stated so that the compiler knows every index below
        // the burst's length is within the arrays of MAX_BURST (no bounds checks).
        let n = pkts.len().min(actions.len()).min(MAX_BURST);
        let (pkts, actions) = (&mut pkts[..n], &mut actions[..n]);
        // Taken out of `self` for the burst (so that `self.verdict` can borrow the rest),
        // and put back at the end. Only a burst that panicked leaves none to take.
        let mut inner = self.inner.0.take().unwrap_or_else(InnerScratch::new_array);
        let mut pending = [false; MAX_BURST];
        // Terminated by the fast path: where its inner header starts (the headers in front
        // are still there), else 0. Routed and encapsulated by the fast path too where it
        // can, else trimmed for the general stages 4 and 5.
        let mut fast = [0u8; MAX_BURST];
        // Verdicts whose answer (an ICMP error, an echo reply) is built in stage 5, in
        // packet order with the rest: a tunnel's sequence numbers follow the burst's order.
        let mut deferred: [Option<Verdict>; MAX_BURST] = [None; MAX_BURST];
        let mut dsts = [0u32; MAX_BURST];
        // Frame length of each transmitted packet, for the port counters.
        let mut tx_len = [0usize; MAX_BURST];

        // Stages 1 and 2, packet by packet: the fast path where it applies (not when
        // tracing: it records no stages), else the general stages.
        let mut rx_bytes = 0;
        let mut any_v6 = false;
        let fast_port = if TRACE || self.general_only {
            None
        } else {
            fast::Port::of(snap, port)
        };
        for (i, pkt) in pkts.iter_mut().enumerate() {
            if let Some(fp) = fast_port {
                if let Some((rx_len, at)) = fast::terminate(
                    pkt,
                    fp,
                    snap,
                    &self.tunnel_memo,
                    &mut self.counters,
                    &mut inner[i],
                ) {
                    rx_bytes += rx_len as u64;
                    dsts[i] = inner[i].dst;
                    any_v6 |= inner[i].v6;
                    pending[i] = true;
                    // Its action is written in stages 4 and 5, whichever way it goes.
                    // (`at` is 34 to 42: Ethernet, IPv4, and GRE with its key.)
                    fast[i] = at as u8;
                    continue;
                }
            }
            // What the last burst left here: a packet the general stages take starts from
            // nothing (a drop before the tunnel is known counts against no tunnel).
            inner[i] = Inner::default();
            let (rx_len, ingress) = classify::ingress(pkt, port, snap);
            rx_bytes += rx_len as u64;
            let stage = match ingress {
                Ok(classify::Ingress::Transit) => trace::Stage::Transit,
                _ => trace::Stage::Terminate,
            };
            if TRACE {
                let t = &mut traces[i];
                t.rx_port = port;
                t.classified = match ingress {
                    Ok(classify::Ingress::Terminate { protocol, .. })
                    | Ok(classify::Ingress::Terminate6 { protocol, .. }) => {
                        trace::Classified::Terminate(protocol.0)
                    }
                    Ok(classify::Ingress::Transit) => trace::Classified::Transit,
                    Ok(classify::Ingress::FragNeeded { .. }) => trace::Classified::FragNeeded,
                    Err(v) => {
                        t.stop(trace::Stage::Classify, v);
                        trace::Classified::Stopped
                    }
                };
            }
            let r = match ingress {
                Ok(classify::Ingress::Terminate {
                    outer_hlen,
                    frame_len,
                    protocol,
                    local,
                    remote,
                    ecn,
                }) => terminate::terminate(
                    pkt,
                    snap,
                    &mut self.counters,
                    &mut self.tunnel_memo,
                    terminate::Outer {
                        hlen: outer_hlen,
                        frame_len,
                        protocol,
                        local,
                        remote,
                        ecn,
                        port,
                    },
                    &mut inner[i],
                ),
                Ok(classify::Ingress::Terminate6 {
                    frame_len,
                    protocol,
                    ecn,
                }) => terminate::terminate6(
                    pkt,
                    snap,
                    &mut self.counters,
                    terminate::Outer6 {
                        frame_len,
                        protocol,
                        ecn,
                        port,
                    },
                    &mut inner[i],
                ),
                Ok(classify::Ingress::Transit) => {
                    terminate::transit(pkt, snap, port, &mut inner[i])
                }
                Ok(classify::Ingress::FragNeeded { back }) => {
                    match pmtu::underlay(pkt.data(), snap, port, &mut self.counters, back) {
                        Ok(report) => {
                            actions[i] = Action::PathMtu(report);
                            continue;
                        }
                        Err(v) => Err(v),
                    }
                }
                Err(v) => Err(v),
            };
            if TRACE {
                let t = &mut traces[i];
                t.tunnel = inner[i].ingress_tunnel;
                match r {
                    Ok(()) => {
                        t.inner = Some(trace::InnerSeen {
                            src: inner[i].src,
                            dst: inner[i].dst,
                            v6: inner[i].v6.then_some((inner[i].src6, inner[i].dst6)),
                            ttl: inner[i].ttl,
                            keepalive: inner[i].keepalive,
                        })
                    }
                    Err(v) => t.stop(stage, v),
                }
            }
            match r {
                Ok(()) => {
                    dsts[i] = inner[i].dst;
                    any_v6 |= inner[i].v6;
                    pending[i] = true;
                    actions[i] = Action::Drop(DropReason::NoRoute); // until routed
                }
                Err(Verdict::Drop(r)) => actions[i] = Action::Drop(r),
                Err(Verdict::Punt(r)) => actions[i] = Action::Punt(r),
                Err(v) => deferred[i] = Some(v),
            }
        }

        if let Some(c) = self.counters.ports.get_mut(usize::from(port)) {
            c.rx.packets += pkts.len() as u64;
            c.rx.bytes += rx_bytes;
        }

        // Stage 3: one bulk lookup for the burst.
        let mut hops = [NextHop::NONE; MAX_BURST];
        snap.routes().lookup_bulk(&dsts[..n], &mut hops[..n]);
        // IPv6 packets (inside IPv4 tunnels) look up their own table, in one bulk lookup of
        // their own; the IPv4 lookup of their placeholder destination is overwritten.
        if any_v6 {
            let mut at = [0u8; MAX_BURST];
            let mut dsts6 = [0u128; MAX_BURST];
            let mut hops6 = [NextHop::NONE; MAX_BURST];
            let mut m = 0;
            for (i, inner) in inner[..n].iter().enumerate() {
                if pending[i] && inner.v6 {
                    at[m] = i as u8;
                    dsts6[m] = inner.dst6;
                    m += 1;
                }
            }
            snap.routes6().lookup_bulk(&dsts6[..m], &mut hops6[..m]);
            for (&i, &h) in at[..m].iter().zip(&hops6[..m]) {
                hops[usize::from(i)] = h;
            }
        }
        if TRACE {
            for (i, t) in traces[..n].iter_mut().enumerate() {
                if pending[i] {
                    t.hop = Some(hops[i]);
                }
            }
        }

        // Stages 4 and 5.
        for (i, pkt) in pkts.iter_mut().enumerate() {
            // The egress tunnel of the packet a few places on: its entry (both lines) and
            // counters, which a burst over many tunnels finds in no cache closer than L2.
            if let Some(id) = hops
                .get(i + PREFETCH_AHEAD)
                .and_then(|&h| Snapshot::tunnel_of(h))
            {
                if let Some(hot) = snap.tunnels().hot(id) {
                    crate::prefetch::prefetch(hot);
                    crate::prefetch::prefetch(&hot.header);
                }
                if let Some(c) = self.counters.tunnels.get(id.index()) {
                    crate::prefetch::prefetch(c);
                }
            }
            if fast[i] != 0 {
                let at = usize::from(fast[i]);
                if let Some((out, len)) = fast::forward(
                    pkt,
                    &inner[i],
                    at,
                    snap,
                    hops[i],
                    &mut self.ident,
                    &mut self.counters,
                ) {
                    tx_len[i] = len;
                    actions[i] = Action::Transmit(out);
                    continue;
                }
                // Where the general stages 4 and 5 take a packet: at its inner header. Never
                // refused: the frame holds its inner header after those `at` bytes
                // (fast::terminate read it).
                if pkt.trim_front(at).is_err() {
                    debug_assert!(false, "a {}-byte frame trimmed by {at}", pkt.len());
                    actions[i] = Action::Drop(DropReason::BadInnerIpv4);
                    continue;
                }
            }
            if let Some(v) = deferred[i] {
                actions[i] = self.verdict(pkt, snap, v, &mut tx_len[i]);
                continue;
            }
            if !pending[i] {
                continue;
            }
            let inner = &inner[i];
            let target = if inner.keepalive {
                route::reflect(snap, inner)
            } else if inner.v6 {
                route::route6(snap, inner, hops[i])
            } else {
                route::route(snap, inner, hops[i])
            };
            if TRACE {
                match target {
                    Ok(tg) => traces[i].target = Some(tg),
                    Err(v) => traces[i].stop(trace::Stage::Route, v),
                }
            }
            // A plain `match`, not `target.and_then(..)`: the closure took the target
            // through a stack copy, 3–7% of the forwarding rate.
            let r = match target {
                Err(v) => Err(v),
                Ok(Target::Tunnel(id)) => {
                    encap::encapsulate(pkt, inner, snap, id, &mut self.ident, &mut self.counters)
                }
                Ok(Target::Native {
                    port,
                    src_mac,
                    dst_mac,
                    mtu,
                }) => encap::native(pkt, inner, port, src_mac, dst_mac, mtu),
                // The destination is the next hop: its MAC from the neighbours, or a drop
                // (`no_neighbor`) noted for the control thread to resolve.
                Ok(Target::Connected {
                    port, src_mac, mtu, ..
                }) => {
                    let dst_mac = snap.neighbor(port, core::net::Ipv4Addr::from(inner.dst));
                    let r = encap::native(pkt, inner, port, src_mac, dst_mac, mtu);
                    if matches!(r, Err(Verdict::Drop(DropReason::NoNeighbor))) {
                        self.unresolved.note(port, inner.dst);
                    }
                    r
                }
                // Routes of these types give their verdict in `route`.
                Ok(Target::Blackhole | Target::Unreachable | Target::Prohibit) => {
                    Err(Verdict::Drop(DropReason::NoRoute))
                }
            };
            if TRACE {
                if let Err(v) = r {
                    traces[i].stop(trace::Stage::Encapsulate, v);
                }
            }
            // Each arm stores its own action: an action chosen by a `match` and stored once
            // after it goes through a stack copy that the CPU cannot forward (its narrow
            // stores, then a 16-byte load), a stall on every forwarded packet.
            match r {
                Ok((out, len)) => {
                    tx_len[i] = len;
                    if inner.keepalive {
                        self.counters.events[Event::KeepalivesReflected as usize] += 1;
                    }
                    actions[i] = Action::Transmit(out);
                }
                Err(v) => actions[i] = self.verdict(pkt, snap, v, &mut tx_len[i]),
            }
        }

        if TRACE {
            for (((t, a), &len), inner) in traces
                .iter_mut()
                .zip(actions.iter())
                .zip(tx_len.iter())
                .zip(inner.iter())
            {
                if inner.v6 {
                    t.ipv6();
                }
                t.finish(*a, len);
            }
        }
        // What goes out is counted run by run (a burst mostly leaves by one port): the port
        // of the current run, its packets and bytes.
        let mut run = (0, 0, 0);
        for ((a, &len), inner) in actions.iter().zip(tx_len.iter()).zip(inner.iter()) {
            match *a {
                Action::Transmit(out) => {
                    if out != run.0 {
                        self.counters.port_sent(run.0, run.1, run.2);
                        run = (out, 0, 0);
                    }
                    run.1 += 1;
                    run.2 += len as u64;
                }
                Action::Drop(r) | Action::Reply { reason: r, .. } => {
                    self.counters.count_drop(port, inner.ingress_tunnel, r)
                }
                Action::Punt(r)
                | Action::Answer { punt: r, .. }
                | Action::Deliver { punt: r, .. } => self.counters.punts[r as usize] += 1,
                Action::PathMtu(_) => self.counters.punts[PuntReason::PathMtu as usize] += 1,
            }
        }
        self.counters.port_sent(run.0, run.1, run.2);
        self.inner.0 = Some(inner);
    }

    /// The action for a packet a stage stopped: its drop or punt, or for a drop that
    /// deserves an ICMP error, the error built in its buffer (`len`: its frame length).
    #[inline]
    fn verdict<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        snap: &Snapshot,
        v: Verdict,
        len: &mut usize,
    ) -> Action {
        match v {
            Verdict::Drop(r) => Action::Drop(r),
            Verdict::Punt(r) => Action::Punt(r),
            Verdict::Probe => Action::Deliver {
                to: Host::Prober,
                punt: PuntReason::Probe,
            },
            Verdict::ToUs { punt, back } => {
                match icmp::echo(pkt, snap, back, &mut self.ident, &mut self.counters) {
                    Some((port, l)) => {
                        *len = l;
                        Action::Answer { port, punt }
                    }
                    None => match host_for(snap, back) {
                        Some(to) => Action::Deliver { to, punt },
                        None => Action::Punt(punt),
                    },
                }
            }
            Verdict::Icmp(err) => {
                let (a, l) = icmp::answer(
                    pkt,
                    snap,
                    err,
                    &mut self.ident,
                    &mut self.counters,
                    &mut self.icmp_limiter,
                    self.clock,
                    self.workers,
                );
                *len = l;
                a
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ident;

    /// Every worker count: each worker's whole cycle of identifications is its own, and
    /// no value repeats within a worker before its cycle ends.
    #[test]
    fn identifications_are_disjoint_between_workers() {
        for workers in [1usize, 2, 3, 5, 7, 16, 24, 100, 128, 65_535, 65_536] {
            let mut owner = vec![usize::MAX; 1 << 16];
            for w in 0..workers.min(300) {
                let mut id = Ident::for_worker(w, workers);
                let first = id.next_ident();
                let mut n = 1;
                let mut v = first;
                loop {
                    assert!(
                        owner[usize::from(v)] == usize::MAX || owner[usize::from(v)] == w,
                        "{workers} workers: {v} written by {} and {w}",
                        owner[usize::from(v)]
                    );
                    owner[usize::from(v)] = w;
                    v = id.next_ident();
                    if v == first {
                        break;
                    }
                    n += 1;
                }
                assert_eq!(
                    n,
                    (65_536 - w).div_ceil(workers),
                    "{workers} workers: cycle of {w}"
                );
            }
        }
    }
}
