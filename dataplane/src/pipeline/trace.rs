//! What each stage decided for one packet, recorded while a trace is armed
//! ([`Pipeline::process_traced`](super::Pipeline::process_traced)).
//!
//! The pipeline has one body for both cases, compiled twice: without tracing every
//! record is compiled away, so that an untraced burst costs what it did before (the
//! worker's one branch per burst chooses). A trace records decisions only; the fields a
//! stage read are the packet's own bytes, which the worker copies before the pipeline
//! runs, and which the control side decodes again to show them.

use super::action::{Action, DropReason, PuntReason};
use super::icmp::{Back, IcmpKind};
use super::Verdict;
use crate::lpm::NextHop;
use crate::tables::{PortIndex, Target, TunnelId};
use crate::wire::IcmpErrorRepr;

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Ethernet, the outer IPv4 header, "is it for us" (SPEC.md ingress).
    Classify,
    /// Tunnel lookup, GRE checks, strip, inner checks, BCP 38, ECN, TTL.
    Terminate,
    /// A packet not for us on a port that allows transit: source check and TTL.
    Transit,
    /// The routing decision after the lookup: hairpin, loops, route types.
    Route,
    /// Outer headers (or native Ethernet), MTU, neighbour.
    Encapsulate,
}

impl Stage {
    /// The stage's name in a trace.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Classify => "classify",
            Stage::Terminate => "terminate",
            Stage::Transit => "transit",
            Stage::Route => "route",
            Stage::Encapsulate => "encapsulate",
        }
    }
}

/// Why a stage took a packet off the forwarding path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Dropped.
    Drop(DropReason),
    /// Handed to the control path.
    Punt(PuntReason),
    /// Dropped, and an ICMP error of this kind is due (sent if the rules and the rate
    /// limit allow: the packet's action tells), back into `back` when it came through a
    /// tunnel.
    Icmp {
        kind: IcmpKind,
        reason: DropReason,
        back: Option<TunnelId>,
    },
    /// For us: answered if an echo request, else delivered to the host or punted.
    ToUs {
        punt: PuntReason,
        back: Option<TunnelId>,
    },
}

impl From<Verdict> for Stop {
    fn from(v: Verdict) -> Stop {
        let tunnel = |b: Back| match b {
            Back::Tunnel(id) => Some(id),
            _ => None,
        };
        match v {
            Verdict::Drop(r) => Stop::Drop(r),
            Verdict::Punt(p) => Stop::Punt(p),
            Verdict::Icmp(e) => Stop::Icmp {
                kind: match e.repr {
                    IcmpErrorRepr::TimeExceeded => IcmpKind::TimeExceeded,
                    IcmpErrorRepr::FragmentationNeeded { .. } => IcmpKind::FragmentationNeeded,
                    IcmpErrorRepr::Unreachable(13) => IcmpKind::UnreachableProhibited,
                    IcmpErrorRepr::Unreachable(_) => IcmpKind::UnreachableNet,
                },
                reason: e.reason,
                back: tunnel(e.back),
            },
            Verdict::ToUs { punt, back } => Stop::ToUs {
                punt,
                back: tunnel(back),
            },
            Verdict::Probe => Stop::Punt(PuntReason::Probe),
        }
    }
}

/// What stage 1 made of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Classified {
    /// Not traced.
    #[default]
    None,
    /// A tunnel packet for us, of this IP protocol (47 GRE, 4 IP in IP).
    Terminate(u8),
    /// Not for us, transit allowed here.
    Transit,
    /// An ICMP Fragmentation Needed to us from the underlay.
    FragNeeded,
    /// Stopped in stage 1 (see [`PacketTrace::stopped`]).
    Stopped,
}

/// The inner packet as routing saw it (after termination or transit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InnerSeen {
    /// Host order (0 for IPv6).
    pub src: u32,
    /// Host order (0 for IPv6).
    pub dst: u32,
    /// An IPv6 packet: its addresses, host order.
    pub v6: Option<(u128, u128)>,
    /// After the decrement.
    pub ttl: u8,
    /// A client router's keepalive, sent back to it natively.
    pub keepalive: bool,
}

/// One packet's way through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTrace {
    /// The port it arrived on.
    pub rx_port: PortIndex,
    pub classified: Classified,
    /// The tunnel it came through, once the tunnel lookup found it.
    pub tunnel: Option<TunnelId>,
    /// Routing's view of the inner packet, when it got that far.
    pub inner: Option<InnerSeen>,
    /// The longest-prefix match's result for `inner.dst`.
    pub hop: Option<NextHop>,
    /// Where routing sent it.
    pub target: Option<Target>,
    /// Where and why it left the forwarding path.
    pub stopped: Option<(Stage, Stop)>,
    /// The tunnel it was sent into (forwarded, or an ICMP error or echo reply back into
    /// the tunnel it came through).
    pub egress_tunnel: Option<TunnelId>,
    /// The verdict.
    pub action: Action,
    /// The frame's length as sent (0 when not sent).
    pub tx_len: u32,
}

impl Default for PacketTrace {
    fn default() -> Self {
        PacketTrace {
            rx_port: 0,
            classified: Classified::None,
            tunnel: None,
            inner: None,
            hop: None,
            target: None,
            stopped: None,
            egress_tunnel: None,
            action: Action::Drop(DropReason::NoRoute),
            tx_len: 0,
        }
    }
}

impl PacketTrace {
    /// Note that `stage` stopped the packet for `v`, unless an earlier stage did.
    #[inline]
    pub(crate) fn stop(&mut self, stage: Stage, v: Verdict) {
        if self.stopped.is_none() {
            self.stopped = Some((stage, v.into()));
        }
    }

    /// The packet is IPv6 inside: an ICMP error due is ICMPv6's.
    #[inline]
    pub(crate) fn ipv6(&mut self) {
        if let Some((_, Stop::Icmp { kind, .. })) = &mut self.stopped {
            *kind = kind.ipv6();
        }
    }

    /// Note the verdict, and for an answer back into a tunnel, that tunnel.
    #[inline]
    pub(crate) fn finish(&mut self, action: Action, tx_len: usize) {
        self.action = action;
        self.tx_len = u32::try_from(tx_len).unwrap_or(u32::MAX);
        if let (Action::Transmit(_), Some(Target::Tunnel(id))) = (action, self.target) {
            self.egress_tunnel = Some(id);
        }
        if let (
            Action::Reply { .. } | Action::Answer { .. },
            Some((_, Stop::Icmp { back, .. } | Stop::ToUs { back, .. })),
        ) = (action, self.stopped)
        {
            self.egress_tunnel = back;
        }
    }
}
