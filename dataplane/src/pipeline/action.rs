//! What the pipeline decides for each packet, and the named reasons for every drop.

use super::pmtu::PathMtuReport;
use crate::tables::{PortIndex, TunnelId};

/// The pipeline's verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the packet (rewritten, starting at its Ethernet header) out of this port.
    Transmit(PortIndex),
    /// The packet was dropped for `reason` (counted), and its buffer now holds our answer
    /// to it, an ICMP error starting at its Ethernet header: send that out of `port`.
    Reply { port: PortIndex, reason: DropReason },
    /// The packet was for us (counted as punted for `punt`), and its buffer now holds our
    /// answer to it, an echo reply starting at its Ethernet header: send that out of `port`.
    Answer { port: PortIndex, punt: PuntReason },
    /// The packet is for us (counted as punted for `punt`) and goes to the host kernel,
    /// through the host interface of `to` (the exception path). Its data starts at the
    /// (inner) IPv4 header.
    Deliver { to: Host, punt: PuntReason },
    /// Hand the packet to the control path; a packet for us that no host interface takes
    /// is punted so, and dropped by the worker.
    Punt(PuntReason),
    /// The packet was an ICMP Fragmentation Needed from the underlay about a packet one of
    /// our tunnels sent, checked against the tables (counted as punted for
    /// [`PuntReason::PathMtu`]): hand the report to the control thread, which lowers the
    /// tunnel's MTU; the packet itself is freed.
    PathMtu(PathMtuReport),
    /// Drop the packet; the reason has been counted.
    Drop(DropReason),
}

impl Action {
    /// The port every action of a burst sends its packet out of, if there is one: every
    /// action is `Transmit` to the same port (an empty burst has none).
    #[inline]
    pub fn one_port(actions: &[Action]) -> Option<PortIndex> {
        let Some(&Action::Transmit(out)) = actions.first() else {
            return None;
        };
        let same = actions
            .iter()
            .fold(true, |same, &a| same & (a == Action::Transmit(out)));
        same.then_some(out)
    }
}

/// A host interface: where the exception path hands the kernel a packet for us, and where
/// it takes what the kernel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// A port's interface (`host_interface = true`): packets to the port's own addresses
    /// that are not tunnel traffic; what the host sends leaves natively out of the port.
    Port(PortIndex),
    /// A tunnel's interface (its `link`): packets from inside the tunnel addressed to us;
    /// what the host sends is encapsulated into the tunnel.
    Tunnel(TunnelId),
    /// Not an interface: the health prober, on the exception path's thread, which takes
    /// the replies to its in-tunnel probes.
    Prober,
}

/// Why a packet goes to the control path, and where its data starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PuntReason {
    /// ARP for this port; data starts at the Ethernet header.
    Arp = 0,
    /// An IPv4 packet addressed to us that is not tunnel traffic (ICMP echo, for instance);
    /// data starts at the IPv4 header.
    Local = 1,
    /// A decapsulated inner packet addressed to us; data starts at the inner IPv4 header.
    LocalInner = 2,
    /// The reply to one of our in-tunnel health probes (see `pipeline::probe`), for the
    /// prober; data starts at the IPv4 header.
    Probe = 3,
    /// An ICMP Fragmentation Needed from the underlay about one of our tunnel packets
    /// ([`Action::PathMtu`]).
    PathMtu = 4,
    /// IPv6 Neighbor Discovery (a solicitation or advertisement) for this port; data
    /// starts at the Ethernet header.
    Nd = 5,
}

impl PuntReason {
    /// Number of punt reasons.
    pub const COUNT: usize = 6;
    /// All punt reasons, in counter order.
    pub const ALL: [PuntReason; Self::COUNT] = [
        PuntReason::Arp,
        PuntReason::Local,
        PuntReason::LocalInner,
        PuntReason::Probe,
        PuntReason::PathMtu,
        PuntReason::Nd,
    ];

    /// The counter name.
    pub const fn name(self) -> &'static str {
        match self {
            PuntReason::Arp => "arp",
            PuntReason::Local => "local",
            PuntReason::LocalInner => "local_inner",
            PuntReason::Probe => "probe",
            PuntReason::PathMtu => "pmtu",
            PuntReason::Nd => "nd",
        }
    }
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Why a packet was dropped. Every reason has a per-worker counter, named as in SPEC.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// All reasons, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The counter name (snake case, as SPEC.md writes it).
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }

            /// The reason with this counter name.
            pub fn from_name(name: &str) -> Option<DropReason> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    Runt = "runt",
    /// Longer than one receive buffer: it arrived as a chain of segments, and the pipeline
    /// reads one (a NIC without scatter drops such frames itself).
    OversizeFrame = "oversize_frame",
    /// The buffer shares its bytes with other packets (an indirect or external mbuf, as
    /// some NICs hand out) and no copy of its own could be made (the pool was empty): the
    /// pipeline writes to every packet it forwards, and never into shared memory.
    SharedBuffer = "shared_buffer",
    /// Not addressed to the port's MAC (or broadcast ARP), or not ours and no transit here.
    NotForUs = "not_for_us",
    /// Neither IPv4 nor ARP.
    UnsupportedEthertype = "unsupported_ethertype",
    /// Outer IPv4 header invalid (version, IHL, lengths, checksum).
    BadIpv4 = "bad_ipv4",
    /// Martian outer source address.
    Martian = "martian",
    /// An outer fragment addressed to us.
    OuterFragment = "outer_fragment",
    /// No configured tunnel for (destination, source, protocol, key).
    NoTunnel = "no_tunnel",
    /// GRE version or forbidden bits, or a truncated GRE header.
    BadGre = "bad_gre",
    /// GRE protocol type other than IPv4 and IPv6.
    UnsupportedInner = "unsupported_inner",
    /// GRE checksum present and wrong.
    BadGreChecksum = "bad_gre_checksum",
    /// Sequence number missing, replayed or out of order.
    GreSequence = "gre_sequence",
    /// Inner IPv4 header invalid.
    BadInnerIpv4 = "bad_inner_ipv4",
    /// Inner IPv6 header invalid: shorter than 40 bytes, version not 6, payload length past
    /// what the tunnel packet holds, or a source no IPv6 node may send from (unspecified,
    /// loopback, multicast).
    BadInnerIpv6 = "bad_inner_ipv6",
    /// A tunnel packet inside a tunnel, addressed to one of our endpoints.
    NestedTunnel = "nested_tunnel",
    /// Inner source outside the ingress tunnel's prefixes (BCP 38).
    InnerSpoofed = "inner_spoofed",
    /// Outer CE over inner Not-ECT (RFC 6040).
    EcnCeNotEct = "ecn_ce_not_ect",
    /// TTL would reach zero.
    TtlExceeded = "ttl_exceeded",
    /// Inner (or transit) destination a router never forwards: 0/8, 127/8, multicast,
    /// 240/4, limited broadcast (RFC 1812 section 5.3.7); for IPv6 the unspecified
    /// address, loopback, IPv4-mapped, link-local and multicast (RFC 4291).
    MartianDestination = "martian_destination",
    /// No route, or a blackhole route.
    NoRoute = "no_route",
    /// Would leave through the tunnel it arrived on.
    Hairpin = "hairpin",
    /// Would loop between tunnel endpoints.
    TunnelLoop = "tunnel_loop",
    /// Not enough headroom to prepend the new headers.
    NoHeadroom = "no_headroom",
    /// Longer than the egress MTU.
    MtuExceeded = "mtu_exceeded",
    /// The next hop's MAC is unknown.
    NoNeighbor = "no_neighbor",
    /// An ICMP Fragmentation Needed to us about a GRE or IPIP packet (by the protocol it
    /// quotes) with a wrong ICMP checksum, or quoting no IPv4 header.
    PmtuMalformed = "pmtu_malformed",
    /// An ICMP Fragmentation Needed to us whose quote ends before what must be checked: the
    /// quoted IPv4 header and the 8 bytes after it, and the GRE key where there is one.
    PmtuTruncated = "pmtu_truncated",
    /// An ICMP Fragmentation Needed to us quoting a GRE or IPIP header that none of our
    /// tunnels sends (its addresses, protocol, GRE flags and key), or arriving on another
    /// port than that tunnel's: forged, or not about us.
    PmtuNotOurs = "pmtu_not_ours",
    /// An ICMP Fragmentation Needed to us whose next-hop MTU is not smaller than the
    /// packet it quotes: that packet would have fitted.
    PmtuNotSmaller = "pmtu_not_smaller",
    /// A native packet on a LAN port (a client-site router's) whose source is not one of
    /// the site's own prefixes: a host of the site sending as another site or anyone else
    /// (BCP 38 at the customer edge).
    LanSpoofed = "lan_spoofed",
    /// An IPv6 packet to one of our addresses whose fixed header is followed by an
    /// extension header (hop-by-hop options, routing, destination options: RFC 2473's
    /// Tunnel Encapsulation Limit among them) rather than the tunnel payload: not walked.
    OuterExtensionHeader = "outer_extension_header",
    /// An outer IPv6 header to one of our addresses that is invalid: version not 6, or a
    /// payload length past what the frame holds.
    BadIpv6 = "bad_ipv6",
}

/// Things worth counting that do not drop the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Event {
    /// GRE bits 6-12 set on receipt (ignored, RFC 2784).
    GreReservedIgnored = 0,
    /// Outer ECT over inner Not-ECT (RFC 6040 section 4.2).
    EcnSuspicious = 1,
    /// Outer CE copied onto an ECT inner packet.
    EcnCePropagated = 2,
    /// A client router's keepalive (inner packet from our endpoint to its own) sent back
    /// to it natively (SPEC.md tunnel termination step 5).
    KeepalivesReflected = 3,
    /// An ICMP Fragmentation Needed to us about a packet that is not a tunnel's (the host's
    /// own, through a port's host interface): handled as any ICMP to us, tunnels untouched.
    PmtuNotTunnel = 4,
    /// A genuine ICMP Fragmentation Needed about a tunnel's packet whose MTU (raised to the
    /// floor) is not below the tunnel's MTU now: nothing to lower.
    PmtuNotLower = 5,
}

impl Event {
    /// Number of events.
    pub const COUNT: usize = 6;
    /// All events, in counter order.
    pub const ALL: [Event; Self::COUNT] = [
        Event::GreReservedIgnored,
        Event::EcnSuspicious,
        Event::EcnCePropagated,
        Event::KeepalivesReflected,
        Event::PmtuNotTunnel,
        Event::PmtuNotLower,
    ];

    /// The counter name.
    pub const fn name(self) -> &'static str {
        match self {
            Event::GreReservedIgnored => "gre_reserved_ignored",
            Event::EcnSuspicious => "ecn_suspicious",
            Event::EcnCePropagated => "ecn_ce_propagated",
            Event::KeepalivesReflected => "keepalives_reflected",
            Event::PmtuNotTunnel => "pmtu_not_tunnel",
            Event::PmtuNotLower => "pmtu_not_lower",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Action, DropReason, PuntReason};

    #[test]
    fn one_port_only_when_every_packet_leaves_by_the_same_port() {
        let tx = Action::Transmit;
        let one_port = Action::one_port;
        assert_eq!(one_port(&[tx(2)]), Some(2));
        assert_eq!(one_port(&[tx(2); 32]), Some(2));
        assert_eq!(one_port(&[]), None);
        // Another port anywhere in the burst, first or last.
        assert_eq!(one_port(&[tx(2), tx(2), tx(3)]), None);
        assert_eq!(one_port(&[tx(3), tx(2), tx(2)]), None);
        // Any packet that is not sent as it is: dropped, punted, answered.
        assert_eq!(one_port(&[tx(2), Action::Drop(DropReason::NoRoute)]), None);
        assert_eq!(one_port(&[Action::Drop(DropReason::NoRoute), tx(2)]), None);
        assert_eq!(
            one_port(&[tx(0), Action::Punt(PuntReason::Arp), tx(0)]),
            None
        );
        let reply = Action::Reply {
            port: 2,
            reason: DropReason::NoRoute,
        };
        assert_eq!(one_port(&[tx(2), reply]), None);
    }
}
