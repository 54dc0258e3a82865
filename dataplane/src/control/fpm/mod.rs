//! Routes from zebra: the FPM listener (`dplane_fpm_nl`, zebra's forwarding plane manager
//! module, connects to it) and the translation of zebra's routes into the dynamic layer of
//! the tables.
//!
//! One connection at a time: a new one replaces the old (zebra reconnects and sends its
//! whole table again). Frames are cut from the stream ([`Framer`]) and decoded
//! ([`netlink`]); the frames of one read (those that arrived together, up to
//! [`READ_BUFFER`] bytes) become one publication, each frame applied whole or refused
//! whole ([`ControlState::apply_dynamic`]): a route moved by a removal and an addition in
//! one frame is never missing in between.
//!
//! Translation: a route out of `bb-<tunnel>` goes into that tunnel (its gateway, the client
//! router's side of the tunnel link, is not needed); a route out of a port's host interface
//! `bb-<port>` goes natively out of that port to its gateway; blackhole, unreachable and
//! prohibit routes are routes of those kinds. Interfaces are named by index in netlink:
//! the kernel's names are read from `/sys/class/net/*/ifindex` ([`KernelInterfaces`]),
//! again when an index is not known yet. A next hop out of any other interface, without
//! an interface, or via one of our own addresses refuses the frame. The host's own routes
//! (protocol `kernel`: zebra's connected routes for the host's interfaces, the kernel's
//! routes) out of another interface, or without a gateway out of a port's, are left alone
//! (counted as ignored): they are the host's subnets, not routes for the dataplane. Any
//! other route without a gateway out of a port's host interface refuses the frame: the
//! dataplane's connected subnets (resolved by ARP on demand) come from the configuration. Of
//! several next hops (ECMP), the first is taken (the dataplane has one per route) and the
//! reduction counted.
//!
//! IPv6 routes (`AF_INET6`) translate the same way into the IPv6 routes of the dynamic
//! layer, with two differences: a next hop out of a port's host interface refuses the
//! frame (there is no native IPv6 forwarding), and prefixes in the link-local or multicast
//! ranges (`fe80::/10`, `ff00::/8`) are left alone when they are the host's own and refuse
//! the frame otherwise.
//!
//! When zebra goes away the routes stay and forwarding goes on. When it connects again
//! every route it sends is current again; those it has not sent within the grace period
//! (`[fpm] grace`, 120 s by default) are removed in one publication. A connection that ends
//! before then removes nothing (its replay was cut short).
//!
//! Errors are counted by kind ([`ERROR_KINDS`]), logged (at most [`LOG_BURST`] lines per
//! 10 seconds), and never stop the stream, except a header that loses it (a version other
//! than 1, a length shorter than the header): the connection is closed and zebra connects
//! again.

pub mod netlink;

use super::state::{ControlState, DynamicChange, DynamicRoute, HostInterface, RoutePrefix};
use crate::lpm::Ipv6Prefix;
use crate::tables::{PortIndex, RouteTarget};
use core::net::{Ipv4Addr, Ipv6Addr};
pub use netlink::protocol_name;
use netlink::{DecodeError, FrameHeader, HeaderError, Nexthop, RouteKind, RouteMessage};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Most bytes read at once: the frames in them are applied as one publication.
pub const READ_BUFFER: usize = 256 << 10;
/// How long a read waits before the listener looks for a new connection and the grace
/// period's end.
const POLL: Duration = Duration::from_millis(20);
/// Log lines about refused frames per 10 seconds; the rest are counted in one line.
pub const LOG_BURST: u32 = 20;

/// The kinds of error counted, each a counter of its own.
pub const ERROR_KINDS: [&str; 12] = [
    // The stream: a header that loses it, a frame that is not netlink.
    "bad_header",
    "unknown_frame_type",
    // The netlink messages (see `netlink::DecodeError::kind`).
    "bad_length",
    "unknown_message",
    "bad_attribute",
    "bad_prefix",
    "unsupported",
    "next_hop_group",
    "no_next_hop",
    // The translation: an interface that is no tunnel's or port's, a bad gateway.
    "unknown_interface",
    "bad_next_hop",
    // The tables' own checks (a tunnel's remote carried into a tunnel, say).
    "refused",
];

/// What the FPM listener counted; read by the control API and the metrics.
#[derive(Debug, Default)]
pub struct FpmCounters {
    /// Where it listens (`None`: no FPM listener).
    pub listen: Mutex<Option<SocketAddr>>,
    /// 1 while zebra is connected.
    pub connected: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Frames received, and of those refused (nothing of them applied).
    pub frames: AtomicU64,
    pub frames_refused: AtomicU64,
    /// Connections that ended (or were replaced) in the middle of a frame: its part was
    /// dropped, nothing of it applied.
    pub frames_cut: AtomicU64,
    /// New snapshots published for zebra's routes.
    pub publications: AtomicU64,
    /// Routes added or replaced, removed, and removals of routes that were not there.
    pub routes_added: AtomicU64,
    pub routes_removed: AtomicU64,
    pub removals_unknown: AtomicU64,
    /// Route messages of another family (neither IPv4 nor IPv6) or table, and the host's
    /// own routes: left alone.
    pub routes_ignored: AtomicU64,
    /// Routes with several next hops, of which the first was taken.
    pub multipath_reduced: AtomicU64,
    /// Routes removed because zebra did not send them again within the grace period.
    pub stale_removed: AtomicU64,
    /// Errors by kind, as [`ERROR_KINDS`].
    pub errors: [AtomicU64; ERROR_KINDS.len()],
}

impl FpmCounters {
    fn error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every counter by name (errors as `errors` below).
    pub fn named(&self) -> [(&'static str, u64); 12] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("connected", n(&self.connected)),
            ("connections", n(&self.connections)),
            ("frames", n(&self.frames)),
            ("frames_refused", n(&self.frames_refused)),
            ("frames_cut", n(&self.frames_cut)),
            ("publications", n(&self.publications)),
            ("routes_added", n(&self.routes_added)),
            ("routes_removed", n(&self.routes_removed)),
            ("removals_unknown", n(&self.removals_unknown)),
            ("routes_ignored", n(&self.routes_ignored)),
            ("multipath_reduced", n(&self.multipath_reduced)),
            ("stale_removed", n(&self.stale_removed)),
        ]
    }

    /// The errors by kind.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_KINDS
            .iter()
            .zip(&self.errors)
            .map(|(k, c)| (*k, c.load(Ordering::Relaxed)))
    }
}

/// Frames cut from the byte stream, each decoded as it completes.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
}

/// One frame, decoded, or why it is refused.
pub type Frame = Result<Vec<RouteMessage>, FrameError>;

/// Why a frame is refused (the stream goes on).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("FPM frame type {0} is not netlink (1)")]
    Type(u8),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Translate(#[from] TranslateError),
}

impl FrameError {
    /// The counter it counts in.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Type(_) => "unknown_frame_type",
            FrameError::Decode(e) => e.kind(),
            FrameError::Translate(e) => e.kind(),
        }
    }
}

impl Framer {
    /// Bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, decoded; `Ok(None)`: it has not all arrived yet; an error:
    /// the stream cannot be followed any further.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, HeaderError> {
        let rest = &self.buf[self.start..];
        let Some(head) = rest.first_chunk::<{ netlink::HEADER_LEN }>() else {
            self.compact();
            return Ok(None);
        };
        let h = FrameHeader::parse(*head)?;
        let Some(frame) = rest.get(..usize::from(h.len)) else {
            self.compact();
            return Ok(None);
        };
        let payload = &frame[netlink::HEADER_LEN..];
        let decoded = if h.kind == netlink::TYPE_NETLINK {
            netlink::decode(payload).map_err(FrameError::from)
        } else {
            Err(FrameError::Type(h.kind))
        };
        self.start += usize::from(h.len);
        Ok(Some(decoded))
    }

    /// Bytes of a frame that has not all arrived.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Interface names by index.
pub trait Interfaces {
    /// The name of interface `ifindex`, if there is one.
    fn name(&mut self, ifindex: u32) -> Option<String>;
}

/// A fixed table of interfaces (tests, fuzzing).
impl Interfaces for HashMap<u32, String> {
    fn name(&mut self, ifindex: u32) -> Option<String> {
        self.get(&ifindex).cloned()
    }
}

/// The kernel's interfaces, read from `/sys/class/net/*/ifindex`: again whenever an
/// index is not known, at most every [`KernelInterfaces::RESCAN`] (a stream of unknown
/// indexes must not turn into a stream of directory scans).
#[derive(Debug)]
pub struct KernelInterfaces {
    root: PathBuf,
    names: HashMap<u32, String>,
    scanned: Option<Instant>,
}

impl Default for KernelInterfaces {
    fn default() -> Self {
        KernelInterfaces {
            root: PathBuf::from("/sys/class/net"),
            names: HashMap::new(),
            scanned: None,
        }
    }
}

impl KernelInterfaces {
    /// The least time between two scans.
    pub const RESCAN: Duration = Duration::from_millis(50);

    fn scan(&mut self) {
        self.scanned = Some(Instant::now());
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return;
        };
        self.names = dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                let index = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
                Some((
                    index.trim().parse().ok()?,
                    e.file_name().into_string().ok()?,
                ))
            })
            .collect();
    }
}

impl Interfaces for KernelInterfaces {
    fn name(&mut self, ifindex: u32) -> Option<String> {
        if let Some(n) = self.names.get(&ifindex) {
            return Some(n.clone());
        }
        if self.scanned.map_or(true, |t| t.elapsed() >= Self::RESCAN) {
            self.scan();
        }
        self.names.get(&ifindex).cloned()
    }
}

/// Why a route cannot be translated into the tables.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TranslateError {
    #[error("route {0}: next hop interface {1} does not exist on this host")]
    NoSuchInterface(String, u32),
    #[error(
        "route {0}: next hop interface {1:?} is no tunnel's or port's host interface \
         (bb-<tunnel>, bb-<port> with host_interface)"
    )]
    NotOurs(String, String),
    #[error("route {0}: a next hop without an interface")]
    NoInterface(String),
    #[error(
        "route {0}: out of {1:?}, a port's host interface, it needs a gateway (a connected \
         subnet is a [[route]] with port and no next_hop, in the file or the control API)"
    )]
    NoGateway(String, String),
    #[error("route {0}: gateway {1} is not a unicast address")]
    BadGateway(String, Ipv4Addr),
    #[error(
        "route {0}: out of {1:?}, a port's host interface: zebra's IPv6 routes do not go \
         natively out of ports yet (they go into tunnels, bb-<tunnel>, or are drops; a \
         native IPv6 route is a [[route]] with port and next_hop in the file)"
    )]
    Native6(String, String),
    #[error(
        "route {0}: a link-local or multicast prefix is never routed by the dataplane (only \
         the host's own routes for them are left alone)"
    )]
    Prefix6(String),
}

impl TranslateError {
    /// The counter it counts in.
    pub fn kind(&self) -> &'static str {
        match self {
            TranslateError::NoSuchInterface(..)
            | TranslateError::NotOurs(..)
            | TranslateError::NoInterface(_) => "unknown_interface",
            TranslateError::NoGateway(..) | TranslateError::BadGateway(..) => "bad_next_hop",
            TranslateError::Native6(..) => "unsupported",
            TranslateError::Prefix6(_) => "bad_prefix",
        }
    }
}

/// A frame's routes as changes to the dynamic layer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translated {
    pub changes: Vec<DynamicChange>,
    /// Messages of another family or table.
    pub ignored: u64,
    /// Routes with several next hops, of which the first was taken.
    pub reduced: u64,
}

fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.octets()[0] == 0
        || a.is_loopback()
        || a.is_broadcast()
        || a.is_multicast()
        || a.octets()[0] >= 240)
}

/// Whether an IPv6 prefix lies in the link-local (fe80::/10) or multicast (ff00::/8)
/// ranges: the host's interfaces have such routes; the dataplane routes none.
fn link_local_or_multicast(p: Ipv6Prefix) -> bool {
    let a = p.addr().segments()[0];
    (p.prefix_len() >= 10 && a & 0xffc0 == 0xfe80) || (p.prefix_len() >= 8 && a >> 8 == 0xff)
}

/// The target of a unicast route through `hops` (the first next hop's; the decoder never
/// yields none), or `None` when the route is the host's own (left alone). `native` makes
/// the target of a hop out of a port's host interface (with its gateway, if any).
fn unicast_target<A: Copy>(
    p: &str,
    hops: &[Nexthop<A>],
    host_own: bool,
    st: &ControlState,
    ifaces: &mut impl Interfaces,
    native: impl Fn(PortIndex, Option<A>, &str) -> Result<RouteTarget, TranslateError>,
) -> Result<Option<RouteTarget>, TranslateError> {
    let mut first = None;
    let mut ignore = false;
    for h in hops {
        let index = h
            .ifindex
            .ok_or_else(|| TranslateError::NoInterface(p.to_owned()))?;
        let name = ifaces
            .name(index)
            .ok_or_else(|| TranslateError::NoSuchInterface(p.to_owned(), index))?;
        let target = match (st.host_interface(&name), h.gateway) {
            (Some(HostInterface::Tunnel(t)), _) => RouteTarget::Tunnel(t.clone()),
            // The host's own routes (its interfaces' subnets, the kernel's routes) out of
            // interfaces that are not the dataplane's, or a port's own subnet: not for the
            // dataplane to carry.
            (Some(HostInterface::Port(_)), None) | (None, _) if host_own => {
                ignore = true;
                continue;
            }
            (Some(HostInterface::Port(port)), gw) => native(*port, gw, &name)?,
            (None, _) => return Err(TranslateError::NotOurs(p.to_owned(), name)),
        };
        first.get_or_insert(target);
    }
    if ignore {
        return Ok(None);
    }
    first
        .map(Some)
        .ok_or_else(|| TranslateError::NoInterface(p.to_owned()))
}

/// Translate one frame's messages against the running configuration's host interfaces.
///
/// IPv6 routes translate as IPv4 ones do, except that a next hop out of a port's host
/// interface refuses the frame (no native IPv6 forwarding), and link-local or multicast
/// prefixes are the host's (ignored) when the kernel's, refused otherwise.
pub fn translate(
    messages: Vec<RouteMessage>,
    st: &ControlState,
    ifaces: &mut impl Interfaces,
) -> Result<Translated, TranslateError> {
    let mut out = Translated::default();
    for m in messages {
        let (prefix, protocol, target) = match m {
            RouteMessage::Ignored(_) => {
                out.ignored += 1;
                continue;
            }
            RouteMessage::Delete(prefix) => {
                out.changes.push(DynamicChange {
                    prefix: prefix.into(),
                    route: None,
                });
                continue;
            }
            RouteMessage::Delete6(prefix) => {
                // The host's own link-local and multicast routes are never added: their
                // removals are theirs too.
                if link_local_or_multicast(prefix) {
                    out.ignored += 1;
                } else {
                    out.changes.push(DynamicChange {
                        prefix: prefix.into(),
                        route: None,
                    });
                }
                continue;
            }
            RouteMessage::Add(route) => {
                let p = route.prefix.to_string();
                let target = match route.kind {
                    RouteKind::Blackhole => Some(RouteTarget::Blackhole),
                    RouteKind::Unreachable => Some(RouteTarget::Unreachable),
                    RouteKind::Prohibit => Some(RouteTarget::Prohibit),
                    RouteKind::Unicast(hops) => {
                        let t = unicast_target(
                            &p,
                            &hops,
                            route.protocol == netlink::RTPROT_KERNEL,
                            st,
                            ifaces,
                            |port, gw: Option<Ipv4Addr>, name| {
                                let Some(gw) = gw else {
                                    return Err(TranslateError::NoGateway(
                                        p.clone(),
                                        name.to_owned(),
                                    ));
                                };
                                if !unicast(gw) {
                                    return Err(TranslateError::BadGateway(p.clone(), gw));
                                }
                                Ok(RouteTarget::Native { port, next_hop: gw })
                            },
                        )?;
                        if t.is_some() && hops.len() > 1 {
                            out.reduced += 1;
                        }
                        t
                    }
                };
                (RoutePrefix::from(route.prefix), route.protocol, target)
            }
            RouteMessage::Add6(route) => {
                let p = route.prefix.to_string();
                let host_own = route.protocol == netlink::RTPROT_KERNEL;
                if link_local_or_multicast(route.prefix) {
                    if host_own {
                        out.ignored += 1;
                        continue;
                    }
                    return Err(TranslateError::Prefix6(p));
                }
                let target = match route.kind {
                    RouteKind::Blackhole => Some(RouteTarget::Blackhole),
                    RouteKind::Unreachable => Some(RouteTarget::Unreachable),
                    RouteKind::Prohibit => Some(RouteTarget::Prohibit),
                    RouteKind::Unicast(hops) => {
                        let t = unicast_target(
                            &p,
                            &hops,
                            host_own,
                            st,
                            ifaces,
                            |_, _: Option<Ipv6Addr>, name| {
                                Err(TranslateError::Native6(p.clone(), name.to_owned()))
                            },
                        )?;
                        if t.is_some() && hops.len() > 1 {
                            out.reduced += 1;
                        }
                        t
                    }
                };
                (RoutePrefix::from(route.prefix), route.protocol, target)
            }
        };
        let Some(target) = target else {
            out.ignored += 1;
            continue;
        };
        out.changes.push(DynamicChange {
            prefix,
            route: Some(DynamicRoute { target, protocol }),
        });
    }
    Ok(out)
}

/// At most [`LOG_BURST`] lines per 10 seconds, then one line that counts the rest.
#[derive(Debug, Default)]
struct LogLimit {
    window: Option<Instant>,
    lines: u32,
    held: u64,
}

impl LogLimit {
    fn refused(&mut self, e: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self
            .window
            .map_or(true, |w| now.duration_since(w) >= Duration::from_secs(10))
        {
            if self.held > 0 {
                log::warn!(
                    "FPM: {} more frame(s) refused in the last 10 s (not logged one by one)",
                    self.held
                );
            }
            self.window = Some(now);
            self.lines = 0;
            self.held = 0;
        }
        if self.lines < LOG_BURST {
            self.lines += 1;
            log::warn!("FPM: frame refused, nothing of it applied: {e}");
        } else {
            self.held += 1;
        }
    }
}

/// Apply frames as one publication: each translated and applied whole, or refused whole
/// (counted and logged). Returns the generation that holds them, if any changed.
pub fn apply(
    state: &Mutex<ControlState>,
    frames: Vec<Frame>,
    ifaces: &mut impl Interfaces,
    counters: &FpmCounters,
) -> Option<u64> {
    let mut log = LogLimit::default();
    apply_logged(state, frames, ifaces, counters, &mut log)
}

fn apply_logged(
    state: &Mutex<ControlState>,
    frames: Vec<Frame>,
    ifaces: &mut impl Interfaces,
    counters: &FpmCounters,
    log: &mut LogLimit,
) -> Option<u64> {
    let Ok(mut st) = state.lock() else {
        return None;
    };
    let mut changes = Vec::with_capacity(frames.len());
    let mut refuse = |e: &FrameError| {
        counters.frames_refused.fetch_add(1, Ordering::Relaxed);
        counters.error(e.kind());
        log.refused(e);
    };
    counters
        .frames
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    for f in frames {
        match f.and_then(|msgs| translate(msgs, &st, ifaces).map_err(FrameError::from)) {
            Ok(t) => {
                counters
                    .routes_ignored
                    .fetch_add(t.ignored, Ordering::Relaxed);
                counters
                    .multipath_reduced
                    .fetch_add(t.reduced, Ordering::Relaxed);
                changes.push(t.changes);
            }
            Err(e) => refuse(&e),
        }
    }
    let done = st.apply_dynamic(&changes);
    for r in &done.frames {
        match r {
            Ok(c) => {
                counters.routes_added.fetch_add(c.added, Ordering::Relaxed);
                counters
                    .routes_removed
                    .fetch_add(c.removed, Ordering::Relaxed);
                counters
                    .removals_unknown
                    .fetch_add(c.unknown_removals, Ordering::Relaxed);
            }
            Err(e) => {
                counters.frames_refused.fetch_add(1, Ordering::Relaxed);
                counters.error("refused");
                log.refused(e);
            }
        }
    }
    if let Some(g) = done.generation {
        counters.publications.fetch_add(1, Ordering::Relaxed);
        log::debug!(
            target: super::audit::TARGET,
            "generation {g}: zebra: {} frame(s) applied",
            done.frames.iter().filter(|f| f.is_ok()).count()
        );
    }
    done.generation
}

/// The connection being served.
struct Session {
    stream: TcpStream,
    peer: SocketAddr,
    framer: Framer,
}

/// Bind the FPM listener.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve zebra's connections until `stop` is set (the thread `backbone run` starts).
pub fn serve(
    listener: &TcpListener,
    state: &Mutex<ControlState>,
    counters: &FpmCounters,
    grace: Duration,
    stop: &AtomicBool,
) {
    let mut ifaces = KernelInterfaces::default();
    let mut log = LogLimit::default();
    let mut session: Option<Session> = None;
    let mut stale_at: Option<Instant> = None;
    let mut buf = vec![0u8; READ_BUFFER];
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(POLL)))
                {
                    log::warn!("FPM: connection from {peer}: {e}");
                    continue;
                }
                if let Some(old) = session.take() {
                    if old.framer.pending() > 0 {
                        counters.frames_cut.fetch_add(1, Ordering::Relaxed);
                    }
                    log::warn!(
                        "FPM: zebra connected again from {peer}; the connection from {} is \
                         closed",
                        old.peer
                    );
                }
                let epoch = state.lock().map_or(0, |mut st| st.begin_dynamic_epoch());
                counters.connections.fetch_add(1, Ordering::Relaxed);
                counters.connected.store(1, Ordering::Relaxed);
                stale_at = Some(Instant::now() + grace);
                log::info!(
                    "FPM: zebra connected from {peer} (connection {epoch}); routes from earlier \
                     connections it does not send again within {} s are removed",
                    grace.as_secs()
                );
                session = Some(Session {
                    stream,
                    peer,
                    framer: Framer::default(),
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => log::warn!("FPM: accept: {e}"),
        }
        let Some(s) = session.as_mut() else {
            std::thread::sleep(POLL);
            continue;
        };
        let mut lost = match s.stream.read(&mut buf) {
            Ok(0) => Some(match s.framer.pending() {
                0 => "zebra closed the connection".to_owned(),
                n => {
                    counters.frames_cut.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "zebra closed the connection in the middle of a frame ({n} bytes of it \
                     dropped, nothing of it applied)"
                    )
                }
            }),
            Ok(n) => {
                s.framer.push(&buf[..n]);
                let mut frames = Vec::new();
                let mut lost = None;
                loop {
                    match s.framer.next_frame() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(e) => {
                            counters.error("bad_header");
                            lost = Some(format!("{e}: the stream is lost; closing it"));
                            break;
                        }
                    }
                }
                if !frames.is_empty() {
                    apply_logged(state, frames, &mut ifaces, counters, &mut log);
                }
                lost
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => {
                if s.framer.pending() > 0 {
                    counters.frames_cut.fetch_add(1, Ordering::Relaxed);
                }
                Some(format!("{e}"))
            }
        };
        if let Some(why) = lost.take() {
            log::warn!(
                "FPM: connection from {} ended: {why}; forwarding goes on with the routes \
                 learned until zebra connects again",
                s.peer
            );
            session = None;
            stale_at = None;
            counters.connected.store(0, Ordering::Relaxed);
        }
        if stale_at.is_some_and(|t| Instant::now() >= t) {
            stale_at = None;
            if let Ok(mut st) = state.lock() {
                let (n, generation) = st.remove_stale_dynamic();
                if n > 0 {
                    counters
                        .stale_removed
                        .fetch_add(n as u64, Ordering::Relaxed);
                    counters.publications.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "FPM: generation {}: {n} route(s) zebra did not send again within {} s \
                         removed",
                        generation.unwrap_or(0),
                        grace.as_secs()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
