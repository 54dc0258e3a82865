//! `ctl trace` and `ctl capture` on the control side: arm the workers' taps for one
//! session ([`crate::tap`]), collect the records, and turn them into what the client
//! shows: for a trace, each packet's way through the stages, with the fields each stage
//! read (decoded again from the frame as received and as sent) and the decision it made;
//! for a capture, the frames (outer and inner, for a tunnel), marked with where they were
//! seen, for the client to write as pcapng.
//!
//! One session at a time; a session ends when it has its packets or its time is up, and
//! the workers' taps are off again before the answer leaves.

use super::progress::WorkerProgress;
use super::state::ControlState;
use crate::lpm::NextHop;
use crate::pipeline::trace::{Classified, Stage, Stop};
use crate::pipeline::{Action, PacketTrace, PuntReason};
use crate::tables::{PortIndex, Snapshot, Target, TunnelId};
use crate::tap::{monotonic_ns, Filter, Frame, TapRecord};
use crate::wire::{ethernet, EthernetAddress, GrePacket, IpProtocol, Ipv4Packet};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Most packets one session takes.
pub const MAX_COUNT: u64 = 10_000;
/// Longest a session waits for its packets.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a session waits when the request does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sessions: one at a time, numbered from 1.
#[derive(Debug, Default)]
pub struct Sessions {
    running: Mutex<()>,
    last: AtomicU64,
}

/// What a session asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub filter: Filter,
    pub count: u32,
    pub timeout: Duration,
}

/// What a session got.
#[derive(Debug)]
pub struct Got {
    /// In the order the workers processed them (by burst time, then worker).
    pub records: Vec<Box<TapRecord>>,
    /// Matching packets the workers could not record (the control side fell behind).
    pub lost: u64,
    /// Whether the time ran out before `count` packets matched.
    pub timed_out: bool,
    /// The wall clock at [`monotonic_ns`] 0, in nanoseconds since the Unix epoch.
    pub epoch_unix_ns: u128,
}

impl Sessions {
    /// Arm every worker's tap, collect what they record, disarm. `Err` when another
    /// session runs.
    pub fn run(&self, workers: &[WorkerProgress], ask: Ask) -> Result<Got, String> {
        let Ok(_one) = self.running.try_lock() else {
            return Err("another trace or capture is running; try again when it ends".into());
        };
        let session = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        for w in workers {
            w.tap.arm(session, ask.filter, ask.count);
        }
        let deadline = Instant::now() + ask.timeout;
        let want = ask.count as usize;
        let mut records: Vec<Box<TapRecord>> = Vec::new();
        let timed_out = loop {
            for w in workers {
                while let Some(r) = w.tap.take() {
                    if r.session == session && records.len() < want {
                        records.push(r);
                    } else {
                        w.tap.give_back(r);
                    }
                }
            }
            if records.len() >= want {
                break false;
            }
            if Instant::now() >= deadline {
                break true;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut lost = 0;
        for w in workers {
            w.tap.disarm();
            lost += w.tap.lost();
            w.tap.release();
        }
        records.sort_by_key(|r| (r.time_ns, r.worker));
        let now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Got {
            records,
            lost,
            timed_out,
            epoch_unix_ns: now_unix.saturating_sub(u128::from(monotonic_ns())),
        })
    }
}

/// Names and tables to describe records with.
#[allow(missing_debug_implementations)]
pub struct Names<'a> {
    st: &'a ControlState,
    snap: &'a Snapshot,
}

impl<'a> Names<'a> {
    pub fn new(st: &'a ControlState, snap: &'a Snapshot) -> Self {
        Names { st, snap }
    }

    pub fn port(&self, id: PortIndex) -> String {
        self.st
            .ports()
            .iter()
            .position(|&(p, _)| p == id)
            .and_then(|i| self.st.config().ports.get(i))
            .map_or_else(|| format!("port {id}"), |p| p.name.clone())
    }

    pub fn port_id(&self, name: &str) -> Option<PortIndex> {
        let i = self.st.config().ports.iter().position(|p| p.name == name)?;
        self.st.ports().get(i).map(|&(id, _)| id)
    }

    pub fn tunnel(&self, id: TunnelId) -> String {
        self.snap
            .tunnels()
            .get(id)
            .map_or_else(|| format!("tunnel #{}", id.0), |t| t.config.name.clone())
    }

    pub fn tunnel_id(&self, name: &str) -> Option<TunnelId> {
        self.snap.tunnels().by_name(name)
    }

    fn target(&self, t: Target) -> String {
        match t {
            Target::Tunnel(id) => format!("tunnel {}", self.tunnel(id)),
            Target::Native {
                port,
                dst_mac: Some(m),
                ..
            } => format!("port {} to {m}", self.port(port)),
            Target::Native { port, .. } => {
                format!("port {} (next hop's MAC unknown)", self.port(port))
            }
            Target::Connected { port, .. } => {
                format!(
                    "port {}, connected (the destination is the next hop)",
                    self.port(port)
                )
            }
            Target::Blackhole => "blackhole".into(),
            Target::Unreachable => "unreachable".into(),
            Target::Prohibit => "prohibit".into(),
        }
    }
}

// ------------------------------------------------------------------ reading frames

/// An IPv4 header, as a stage reads it.
fn ipv4_fields(b: &[u8]) -> Option<(String, IpProtocol, usize)> {
    let ip = Ipv4Packet::new_checked(b).ok()?;
    let proto = ip.protocol();
    let text = format!(
        "{} > {} proto {} ttl {} len {} id {}{}{}{}",
        ip.src_addr(),
        ip.dst_addr(),
        proto_name(proto),
        ip.ttl(),
        ip.total_len(),
        ip.ident(),
        if ip.dont_frag() { " DF" } else { "" },
        if ip.is_fragment() { " fragment" } else { "" },
        if ip.verify_checksum() {
            ""
        } else {
            " bad-checksum"
        },
    );
    Some((text, proto, ip.header_len()))
}

/// An inner IPv6 fixed header, as the trace shows it (extension headers are not read).
fn ipv6_fields(b: &[u8]) -> Option<String> {
    let ip = crate::wire::Ipv6Packet::new_checked(b).ok()?;
    Some(format!(
        "ipv6 {} > {} next header {} hop limit {} payload {}",
        ip.src_addr(),
        ip.dst_addr(),
        proto_name(ip.next_header()),
        ip.hop_limit(),
        ip.payload_len()
    ))
}

fn proto_name(p: IpProtocol) -> String {
    match p.0 {
        1 => "icmp".into(),
        4 => "ipip".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        n => n.to_string(),
    }
}

/// Ethernet and the IPv4 header after it.
fn outer_fields(frame: &[u8]) -> (String, Option<(String, IpProtocol, usize)>) {
    if frame.len() < ethernet::HEADER_LEN {
        return (
            format!("{} bytes: shorter than Ethernet", frame.len()),
            None,
        );
    }
    let mac = |at: usize| {
        let m = &frame[at..at + 6];
        EthernetAddress([m[0], m[1], m[2], m[3], m[4], m[5]])
    };
    let ty = u16::from_be_bytes([frame[12], frame[13]]);
    let eth = format!("eth {} > {} type 0x{ty:04x}", mac(6), mac(0));
    let ip = (ty == 0x0800)
        .then(|| ipv4_fields(&frame[ethernet::HEADER_LEN..]))
        .flatten();
    (eth, ip)
}

/// The GRE header at the start of `b`.
fn gre_fields(b: &[u8]) -> Option<(String, usize)> {
    let g = GrePacket::new_checked(b).ok()?;
    let mut flags = String::new();
    for (on, c) in [
        (g.checksum_present(), 'C'),
        (g.key_present(), 'K'),
        (g.seq_present(), 'S'),
    ] {
        if on {
            flags.push(c);
        }
    }
    let mut text = format!(
        "gre flags {} version {} proto 0x{:04x}",
        if flags.is_empty() { "-" } else { &flags },
        g.version(),
        g.protocol_type().0
    );
    if let Some(k) = g.key() {
        text.push_str(&format!(" key {k}"));
    }
    if let Some(s) = g.sequence() {
        text.push_str(&format!(" seq {s}"));
    }
    if g.checksum_present() {
        text.push_str(if g.verify_checksum() {
            " checksum ok"
        } else {
            " checksum bad"
        });
    }
    Some((text, g.header_len()))
}

/// Where the inner packet starts in a tunnel frame, and its tunnel header's description.
fn tunnel_headers(frame: &[u8]) -> Option<(String, String, usize)> {
    let (_, ip) = outer_fields(frame);
    let (outer, proto, hlen) = ip?;
    let at = ethernet::HEADER_LEN + hlen;
    match proto.0 {
        47 => {
            let (g, glen) = gre_fields(frame.get(at..)?)?;
            Some((outer, g, at + glen))
        }
        4 => Some((outer, "ipip".into(), at)),
        41 => Some((outer, "ipv6 in ipv4".into(), at)),
        _ => None,
    }
}

// ------------------------------------------------------------------ traces

fn stop_text(stop: Stop) -> String {
    match stop {
        Stop::Drop(r) => format!("drop {}", r.name()),
        Stop::Punt(p) => format!("punt {}", p.name()),
        Stop::Icmp { kind, reason, .. } => {
            format!("drop {}, ICMP {} due", reason.name(), kind.name())
        }
        Stop::ToUs { punt, .. } => format!("for us ({})", punt.name()),
    }
}

fn line(stage: &str, read: String, decision: String) -> Value {
    json!({"stage": stage, "read": read, "decision": decision})
}

fn result_text(n: &Names<'_>, t: &PacketTrace) -> String {
    let into = |id: Option<TunnelId>| match id {
        Some(id) => format!(" into tunnel {}", n.tunnel(id)),
        None => String::new(),
    };
    match t.action {
        Action::Transmit(p) => format!(
            "transmit out of {}{} ({} bytes)",
            n.port(p),
            into(t.egress_tunnel),
            t.tx_len
        ),
        Action::Reply { port, reason } => format!(
            "drop {}; ICMP error sent out of {}{} ({} bytes)",
            reason.name(),
            n.port(port),
            into(t.egress_tunnel),
            t.tx_len
        ),
        Action::Answer { port, .. } => format!(
            "echo reply sent out of {}{} ({} bytes)",
            n.port(port),
            into(t.egress_tunnel),
            t.tx_len
        ),
        Action::Deliver { punt, .. } => format!("to the host interface ({})", punt.name()),
        Action::PathMtu(r) => format!(
            "path MTU report for tunnel {}: next-hop MTU {} from {}, outer MTU {} (to the \
             control thread)",
            n.tunnel(r.tunnel),
            r.reported,
            r.from,
            r.mtu
        ),
        Action::Punt(PuntReason::Arp) => "ARP: answered or learned by the worker".into(),
        Action::Punt(PuntReason::Nd) => "Neighbor Discovery: answered by the worker".into(),
        Action::Punt(p) => format!("punt {} (no host interface: dropped)", p.name()),
        Action::Drop(r) => match t.stopped {
            Some((_, Stop::Icmp { .. })) => format!(
                "drop {} (no ICMP error: RFC 1812 forbids one here, or the rate limit)",
                r.name()
            ),
            _ => format!("drop {}", r.name()),
        },
    }
}

/// One traced packet: its stages, as `show trace` prints them.
pub fn describe(n: &Names<'_>, st: &ControlState, r: &TapRecord, number: usize) -> Value {
    let t = &r.trace;
    let rx = r.rx.bytes();
    let mut stages = Vec::new();
    let stopped_at = |s: Stage| match t.stopped {
        Some((at, stop)) if at == s => Some(stop),
        _ => None,
    };
    stages.push(line(
        "rx",
        format!(
            "port {}, {} bytes{}",
            n.port(t.rx_port),
            r.rx.len,
            if r.rx.len as usize > rx.len() {
                format!(" ({} kept)", rx.len())
            } else {
                String::new()
            }
        ),
        format!("worker {}, generation {}", r.worker, r.generation),
    ));

    // Stage 1.
    let (eth, ip) = outer_fields(rx);
    let read = match &ip {
        Some((ip, _, _)) => format!("{eth}; ipv4 {ip}"),
        None => eth,
    };
    let decision = match (t.classified, stopped_at(Stage::Classify)) {
        (_, Some(stop)) => stop_text(stop),
        (Classified::Terminate(47), _) => "for us, GRE: terminate".into(),
        (Classified::Terminate(41), _) => "for us, IPv6 in IPv4: terminate".into(),
        (Classified::Terminate(_), _) => "for us, IP in IP: terminate".into(),
        (Classified::Transit, _) => "not for us, transit allowed here: route it".into(),
        (Classified::FragNeeded, _) => {
            "ICMP fragmentation needed for us: the underlay's path MTU".into()
        }
        _ => "-".into(),
    };
    stages.push(line("classify", read, decision));

    // Stage 2.
    match t.classified {
        Classified::Terminate(_) => {
            let (tunnel_read, inner_at) = match tunnel_headers(rx) {
                Some((_, hdr, at)) => (hdr, Some(at)),
                None => ("tunnel header unreadable".into(), None),
            };
            let stop = stopped_at(Stage::Terminate);
            let found = match t.tunnel {
                Some(id) => format!("tunnel {}", n.tunnel(id)),
                None => "no tunnel".into(),
            };
            // Stopped before or at the lookup: the tunnel line says so; after it, the
            // inner line does.
            let inner_read = inner_at.and_then(|at| rx.get(at..)).and_then(|b| {
                match b.first().map(|v| v >> 4) {
                    Some(6) => ipv6_fields(b),
                    _ => ipv4_fields(b).map(|(s, _, _)| s),
                }
            });
            match (t.tunnel, stop) {
                (None, Some(stop)) => {
                    stages.push(line("terminate", tunnel_read, stop_text(stop)));
                }
                (Some(_), stop) => {
                    stages.push(line("terminate", tunnel_read, found));
                    let decision = match (stop, t.inner) {
                        (Some(stop), _) => stop_text(stop),
                        (None, Some(i)) if i.keepalive => {
                            "the client router's keepalive: back to it natively".into()
                        }
                        (None, Some(i)) => format!(
                            "source ok (BCP 38), ttl now {}, {}",
                            i.ttl,
                            if i.v6.is_none() && n.snap.is_local(i.dst) {
                                "for us"
                            } else {
                                "route it"
                            }
                        ),
                        (None, None) => "-".into(),
                    };
                    stages.push(line(
                        "inner",
                        inner_read.unwrap_or_else(|| "inner header unreadable".into()),
                        decision,
                    ));
                }
                (None, None) => stages.push(line("terminate", tunnel_read, found)),
            }
        }
        Classified::Transit => {
            let decision = match (stopped_at(Stage::Transit), t.inner) {
                (Some(stop), _) => stop_text(stop),
                (None, Some(i)) => format!("source ok, ttl now {}", i.ttl),
                (None, None) => "-".into(),
            };
            stages.push(line(
                "transit",
                ip.as_ref().map_or("-".into(), |(s, _, _)| s.clone()),
                decision,
            ));
        }
        _ => {}
    }

    // Stage 3: the lookup.
    if let (Some(hop), Some(i)) = (t.hop, t.inner) {
        let (dst, route) = match i.v6 {
            Some((_, dst6)) => {
                let dst = std::net::Ipv6Addr::from(dst6);
                (dst.to_string(), st.lookup6(dst))
            }
            None => {
                let dst = std::net::Ipv4Addr::from(i.dst);
                (dst.to_string(), st.lookup(dst))
            }
        };
        let decided = if hop == NextHop::NONE {
            "no route".to_owned()
        } else {
            let target = match i.v6 {
                Some(_) => n.snap.target6(hop),
                None => n.snap.target(hop),
            };
            let prefix = route["route"]["prefix"]
                .as_str()
                .filter(|_| route["generation"].as_u64() == Some(r.generation))
                .map(|p| format!(" (route {p})"))
                .unwrap_or_default();
            format!("{}{prefix}", n.target(target))
        };
        stages.push(line("lookup", format!("dst {dst}"), decided));
    }

    // Stage 4: routing.
    if t.inner.is_some() {
        let decision = match (stopped_at(Stage::Route), t.target) {
            (Some(stop), _) => stop_text(stop),
            (None, Some(tg)) => format!("to {}: no hairpin, no loop", n.target(tg)),
            (None, None) => "-".into(),
        };
        stages.push(line("route", "-".into(), decision));
    }

    // Stage 5: the headers written.
    if let Some(stop) = stopped_at(Stage::Encapsulate) {
        stages.push(line("encapsulate", "-".into(), stop_text(stop)));
    } else if matches!(t.action, Action::Transmit(_)) {
        let tx = r.tx.bytes();
        let wrote = match (t.egress_tunnel, tunnel_headers(tx)) {
            (Some(_), Some((outer, hdr, _))) => format!("{outer}; {hdr}"),
            _ => outer_fields(tx).0,
        };
        let (eth, _) = outer_fields(tx);
        let wrote = if wrote.starts_with("eth") {
            wrote
        } else {
            format!("{eth}; ipv4 {wrote}")
        };
        stages.push(line(
            "encapsulate",
            wrote,
            match t.egress_tunnel {
                Some(id) => format!("into tunnel {}", n.tunnel(id)),
                None => "native".into(),
            },
        ));
    }

    // The router's answer, if any.
    let answer = match t.stopped {
        Some((_, Stop::Icmp { kind, back, .. })) => Some((format!("ICMP {}", kind.name()), back)),
        Some((_, Stop::ToUs { back, .. })) => Some(("for us".to_owned(), back)),
        _ => None,
    };
    if let Some((what, back)) = answer {
        let how = match (t.action, back) {
            (Action::Reply { port, .. } | Action::Answer { port, .. }, Some(id)) => {
                format!(
                    "sent back into tunnel {} out of {}",
                    n.tunnel(id),
                    n.port(port)
                )
            }
            (Action::Reply { port, .. } | Action::Answer { port, .. }, None) => {
                format!("sent back natively out of {}", n.port(port))
            }
            (Action::Drop(_), _) => "not sent".into(),
            (Action::Deliver { .. }, _) => "not an echo request: to the host".into(),
            (Action::Punt(_), _) => "not an echo request: punted".into(),
            (Action::PathMtu(_), _) => "-".into(),
            (Action::Transmit(_), _) => "-".into(),
        };
        stages.push(line("answer", what, how));
    }

    json!({
        "packet": number,
        "worker": r.worker,
        "generation": r.generation,
        "stages": stages,
        "result": result_text(n, t),
    })
}

// ------------------------------------------------------------------ captures

/// The frames a capture keeps of one record: `(interface, inbound, bytes, original
/// length, comment)`. Interfaces: for a port, 0 what it received, 1 what it sent; for a
/// tunnel, 0 outer frames (Ethernet), 1 inner packets (IPv4), both ways.
pub fn frames<'r>(
    n: &Names<'_>,
    r: &'r TapRecord,
    filter: Filter,
) -> Vec<(u32, bool, &'r [u8], u32, String)> {
    let t = &r.trace;
    let verdict = result_text(n, t);
    let mut out = Vec::new();
    let tx_port = match t.action {
        Action::Transmit(p) | Action::Reply { port: p, .. } | Action::Answer { port: p, .. } => {
            Some(p)
        }
        _ => None,
    };
    if let Some(tunnel) = filter.tunnel {
        let name = n.tunnel(tunnel);
        let mut both = |frame: &'r Frame, inbound: bool| {
            let bytes = frame.bytes();
            let (way, port) = if inbound {
                ("received through", t.rx_port)
            } else {
                ("sent into", tx_port.unwrap_or(t.rx_port))
            };
            let note = format!("{way} tunnel {name} on {}: {verdict}", n.port(port));
            out.push((0, inbound, bytes, frame.len, format!("outer; {note}")));
            if let Some((_, _, at)) = tunnel_headers(bytes) {
                if let Some(inner) = bytes.get(at..) {
                    let orig = frame.len.saturating_sub(at as u32);
                    out.push((1, inbound, inner, orig, format!("inner; {note}")));
                }
            }
        };
        if t.tunnel == Some(tunnel) {
            both(&r.rx, true);
        }
        if t.egress_tunnel == Some(tunnel) && r.tx.len > 0 {
            both(&r.tx, false);
        }
    } else if let Some(port) = filter.port {
        if t.rx_port == port {
            out.push((
                0,
                true,
                r.rx.bytes(),
                r.rx.len,
                format!("received on {}: {verdict}", n.port(port)),
            ));
        }
        if tx_port == Some(port) && r.tx.len > 0 {
            out.push((
                1,
                false,
                r.tx.bytes(),
                r.tx.len,
                format!("sent out of {}", n.port(port)),
            ));
        }
    }
    out
}

/// The capture's interfaces: `(name, link type)` (1 Ethernet, 228 IPv4).
pub fn interfaces(n: &Names<'_>, filter: Filter) -> Vec<(String, u16)> {
    match (filter.tunnel, filter.port) {
        (Some(t), _) => {
            let name = n.tunnel(t);
            vec![(format!("{name} outer"), 1), (format!("{name} inner"), 228)]
        }
        (None, Some(p)) => {
            let name = n.port(p);
            vec![(format!("{name} rx"), 1), (format!("{name} tx"), 1)]
        }
        (None, None) => Vec::new(),
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s
}
