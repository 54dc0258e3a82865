//! zebra's FPM stream, decoded: the frame header and the rtnetlink route messages inside.
//!
//! The stream is a sequence of frames. A frame is a 4-byte header (version 1, type 1 for
//! netlink, the frame's total length, header included, as a big-endian `u16`) and then
//! rtnetlink messages (`linux/netlink.h`, `linux/rtnetlink.h`): a 16-byte `nlmsghdr`
//! (length, type, flags, sequence, port id), a 12-byte `rtmsg` (family, destination
//! length, source length, TOS, table, protocol, scope, type, flags) and attributes
//! (`rtattr`: length, type, value, each padded to 4 bytes). zebra writes the netlink parts
//! in the host's byte order, as the kernel reads them: they are decoded in this host's
//! order. One frame is one change to zebra's forwarding table: an update is a
//! `RTM_DELROUTE` and an `RTM_NEWROUTE` in one frame.
//!
//! What is decoded: `RTM_NEWROUTE` and `RTM_DELROUTE` of IPv4 (`AF_INET`) and IPv6
//! (`AF_INET6`) in the main table (254, or `RTA_TABLE`), with `RTA_DST` and the destination
//! length, `RTA_OIF`, `RTA_GATEWAY`, `RTA_MULTIPATH` (`rtnexthop`s with their own
//! `RTA_GATEWAY`), the route type (unicast, blackhole, unreachable, prohibit) and the
//! protocol. Addresses are as long as the family's (4 or 16 bytes), the destination length
//! at most 32 or 128. Routes of another family or table are
//! [ignored](RouteMessage::Ignored) (counted, not refused). Anything
//! that cannot be a route this dataplane can carry is an error that refuses the whole
//! frame: a length that does not fit, another message type (a next-hop group: zebra must
//! be told `no fpm use-next-hop-groups`), a prefix with host bits, a source prefix, an
//! encapsulation, a next hop of another family, a unicast route without a next hop.
//!
//! Nothing here panics, allocates beyond the messages' own size, or loops longer than the
//! input: every length is checked against what remains before it is used. The
//! [`encode`] half writes the same format, for tests, benchmarks and fuzzing seeds.

use crate::lpm::{Ipv4Prefix, Ipv6Prefix};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// The FPM header's length.
pub const HEADER_LEN: usize = 4;
/// The only FPM protocol version.
pub const VERSION: u8 = 1;
/// FPM frame type: netlink messages (type 2 is protobuf, which zebra's `dplane_fpm_nl`
/// does not send).
pub const TYPE_NETLINK: u8 = 1;

/// rtnetlink message types (`linux/rtnetlink.h`).
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
/// Address families (`linux/socket.h`).
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
/// The main routing table (`RT_TABLE_MAIN`).
pub const RT_TABLE_MAIN: u32 = 254;

/// Route protocol of the host's own routes: the kernel's, and zebra's connected routes.
pub const RTPROT_KERNEL: u8 = 2;

/// Route types (`enum rtm_type`).
pub const RTN_UNICAST: u8 = 1;
pub const RTN_BLACKHOLE: u8 = 6;
pub const RTN_UNREACHABLE: u8 = 7;
pub const RTN_PROHIBIT: u8 = 8;

/// Route attributes (`enum rtattr_type_t`).
pub const RTA_DST: u16 = 1;
pub const RTA_SRC: u16 = 2;
pub const RTA_OIF: u16 = 4;
pub const RTA_GATEWAY: u16 = 5;
pub const RTA_PRIORITY: u16 = 6;
pub const RTA_MULTIPATH: u16 = 9;
pub const RTA_TABLE: u16 = 15;
pub const RTA_VIA: u16 = 18;
pub const RTA_NEWDST: u16 = 19;
pub const RTA_ENCAP_TYPE: u16 = 21;
pub const RTA_ENCAP: u16 = 22;
pub const RTA_NH_ID: u16 = 30;

/// `nlmsghdr`, `rtmsg`, `rtattr` and `rtnexthop` sizes.
const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;
const RTA_HDR: usize = 4;
const RTNH: usize = 8;
/// The attribute type without the nested and byte-order flags (`NLA_TYPE_MASK`).
const NLA_TYPE_MASK: u16 = 0x3fff;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// An FPM frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u8,
    pub kind: u8,
    /// The whole frame's length, header included.
    pub len: u16,
}

/// Why the stream cannot go on: the next frame cannot be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("FPM version {0} (only version 1 exists)")]
    Version(u8),
    #[error("FPM frame length {0} is shorter than its own 4-byte header")]
    Length(u16),
}

impl FrameHeader {
    /// The header at the start of a frame. A version other than 1 or a length shorter
    /// than the header leaves the stream without a next frame to find.
    pub fn parse(b: [u8; HEADER_LEN]) -> Result<FrameHeader, HeaderError> {
        let h = FrameHeader {
            version: b[0],
            kind: b[1],
            len: u16::from_be_bytes([b[2], b[3]]),
        };
        if h.version != VERSION {
            return Err(HeaderError::Version(h.version));
        }
        if usize::from(h.len) < HEADER_LEN {
            return Err(HeaderError::Length(h.len));
        }
        Ok(h)
    }

    /// The bytes after the header.
    pub fn payload_len(&self) -> usize {
        usize::from(self.len) - HEADER_LEN
    }
}

/// An address family's addresses and prefixes, as the route messages carry them.
pub trait Family: Copy + Into<IpAddr> {
    /// `AF_INET` or `AF_INET6`.
    const AF: u8;
    /// The family's prefix.
    type Prefix: Copy;
    /// The address whose bytes `v` holds (exactly as many as the family's addresses have).
    fn from_bytes(v: &[u8]) -> Option<Self>;
    /// The address's bytes.
    fn bytes(&self) -> Vec<u8>;
    /// The unspecified address (a default route's, which has no `RTA_DST`).
    fn unspecified() -> Self;
    /// The longest prefix length.
    const MAX_LEN: u8;
    /// The prefix `self/len`, if no bit past `len` is set (`len` is checked already).
    fn prefix(self, len: u8) -> Option<Self::Prefix>;
    /// A prefix's address and length.
    fn parts(p: Self::Prefix) -> (Self, u8);
}

impl Family for Ipv4Addr {
    const AF: u8 = AF_INET;
    type Prefix = Ipv4Prefix;
    fn from_bytes(v: &[u8]) -> Option<Self> {
        <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
    }
    fn bytes(&self) -> Vec<u8> {
        self.octets().to_vec()
    }
    fn unspecified() -> Self {
        Ipv4Addr::UNSPECIFIED
    }
    const MAX_LEN: u8 = 32;
    fn prefix(self, len: u8) -> Option<Ipv4Prefix> {
        Ipv4Prefix::new(self, len).ok()
    }
    fn parts(p: Ipv4Prefix) -> (Self, u8) {
        (p.addr(), p.prefix_len())
    }
}

impl Family for Ipv6Addr {
    const AF: u8 = AF_INET6;
    type Prefix = Ipv6Prefix;
    fn from_bytes(v: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(v).ok().map(Ipv6Addr::from)
    }
    fn bytes(&self) -> Vec<u8> {
        self.octets().to_vec()
    }
    fn unspecified() -> Self {
        Ipv6Addr::UNSPECIFIED
    }
    const MAX_LEN: u8 = 128;
    fn prefix(self, len: u8) -> Option<Ipv6Prefix> {
        Ipv6Prefix::new(self, len).ok()
    }
    fn parts(p: Ipv6Prefix) -> (Self, u8) {
        (p.addr(), p.prefix_len())
    }
}

/// A next hop of a unicast route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nexthop<A = Ipv4Addr> {
    /// The output interface (`RTA_OIF`, `rtnh_ifindex`); `None` where zero or absent.
    pub ifindex: Option<u32>,
    /// The gateway (`RTA_GATEWAY`); `None`: directly connected.
    pub gateway: Option<A>,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKind<A = Ipv4Addr> {
    /// Forward through one of these next hops (at least one).
    Unicast(Vec<Nexthop<A>>),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// A route as zebra installs it (IPv4 unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<P = Ipv4Prefix, A = Ipv4Addr> {
    pub prefix: P,
    /// Which of zebra's protocols chose it (`rtm_protocol`: 186 BGP, 196 FRR's static).
    pub protocol: u8,
    pub kind: RouteKind<A>,
}

/// An IPv6 route.
pub type Route6 = Route<Ipv6Prefix, Ipv6Addr>;

/// Why a route message is not for this dataplane, and left alone (not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Another address family (neither IPv4 nor IPv6: MPLS is 28).
    Family(u8),
    /// Another routing table (a VRF's).
    Table(u32),
}

/// One decoded rtnetlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMessage {
    /// `RTM_NEWROUTE`: install or replace the route for its prefix.
    Add(Route),
    /// `RTM_DELROUTE`: no route for this prefix any more.
    Delete(Ipv4Prefix),
    /// The same for IPv6 routes.
    Add6(Route6),
    Delete6(Ipv6Prefix),
    Ignored(Ignored),
}

/// Why a frame's messages are refused (nothing of the frame applies).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("the frame holds no netlink message")]
    Empty,
    #[error("netlink message at byte {at}: length {len} does not fit the {left} bytes left")]
    MessageLength { at: usize, len: usize, left: usize },
    #[error("netlink message type {0} is not a route (RTM_NEWROUTE 24, RTM_DELROUTE 25){hint}", hint = next_hop_hint(*.0))]
    UnknownMessage(u16),
    #[error("route attribute {attr} at byte {at}: length {len} does not fit")]
    AttributeLength { attr: u16, at: usize, len: usize },
    #[error("route attribute {attr}: {len} bytes where {want} are expected")]
    AttributeSize { attr: u16, len: usize, want: usize },
    #[error("destination length {len} is longer than {max}")]
    PrefixLength { len: u8, max: u8 },
    #[error("destination {addr}/{len} has host bits set")]
    HostBits { addr: IpAddr, len: u8 },
    #[error("route to {0}/{1} without RTA_DST")]
    NoDestination(IpAddr, u8),
    #[error("route type {0} is not unicast, blackhole, unreachable or prohibit")]
    RouteType(u8),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error(
        "the route names next-hop group {0}: configure zebra with `no fpm use-next-hop-groups`"
    )]
    NexthopGroup(u32),
    #[error("unicast route without a next hop")]
    NoNexthop,
}

impl DecodeError {
    /// The counter this error counts in.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty | DecodeError::MessageLength { .. } => "bad_length",
            DecodeError::UnknownMessage(_) => "unknown_message",
            DecodeError::AttributeLength { .. } | DecodeError::AttributeSize { .. } => {
                "bad_attribute"
            }
            DecodeError::PrefixLength { .. }
            | DecodeError::HostBits { .. }
            | DecodeError::NoDestination(..) => "bad_prefix",
            DecodeError::RouteType(_) | DecodeError::Unsupported(_) => "unsupported",
            DecodeError::NexthopGroup(_) => "next_hop_group",
            DecodeError::NoNexthop => "no_next_hop",
        }
    }
}

/// What to do about a next-hop group message (`RTM_NEWNEXTHOP`, `RTM_DELNEXTHOP`).
fn next_hop_hint(kind: u16) -> &'static str {
    if kind == 104 || kind == 105 {
        ": configure zebra with `no fpm use-next-hop-groups`"
    } else {
        ""
    }
}

/// The bytes of `b` at `at`, `N` of them, if there are.
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    array(b, at).map(u16::from_ne_bytes)
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    array(b, at).map(u32::from_ne_bytes)
}

/// Attributes `(type, value, offset)` in `b` from `start` to its end; `base` is the offset
/// of `b` in the frame, for messages.
fn attributes(
    b: &[u8],
    start: usize,
    base: usize,
) -> impl Iterator<Item = Result<(u16, &[u8]), DecodeError>> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= b.len() {
            return None;
        }
        let left = b.len() - at;
        let (len, attr) = match (ne_u16(b, at), ne_u16(b, at + 2)) {
            (Some(l), Some(t)) if left >= RTA_HDR => (usize::from(l), t & NLA_TYPE_MASK),
            _ => {
                at = b.len();
                return Some(Err(DecodeError::AttributeLength {
                    attr: 0,
                    at: base + at,
                    len: left,
                }));
            }
        };
        if len < RTA_HDR || len > left {
            let e = DecodeError::AttributeLength {
                attr,
                at: base + at,
                len,
            };
            at = b.len();
            return Some(Err(e));
        }
        let value = &b[at + RTA_HDR..at + len];
        // The last attribute's padding may be missing.
        at = (at + align4(len)).min(b.len());
        Some(Ok((attr, value)))
    })
}

/// An address attribute of family `A`.
fn address<A: Family>(attr: u16, v: &[u8]) -> Result<A, DecodeError> {
    A::from_bytes(v).ok_or(DecodeError::AttributeSize {
        attr,
        len: v.len(),
        want: if A::AF == AF_INET6 { 16 } else { 4 },
    })
}

fn u32_attr(attr: u16, v: &[u8]) -> Result<u32, DecodeError> {
    let a: [u8; 4] = v.try_into().map_err(|_| DecodeError::AttributeSize {
        attr,
        len: v.len(),
        want: 4,
    })?;
    Ok(u32::from_ne_bytes(a))
}

/// Attributes a route's next hops may not carry here.
fn unsupported(attr: u16) -> Option<&'static str> {
    match attr {
        RTA_VIA => Some("a next hop of another address family (RTA_VIA)"),
        RTA_NEWDST => Some("a label rewrite (RTA_NEWDST)"),
        RTA_ENCAP_TYPE | RTA_ENCAP => Some("an encapsulation (RTA_ENCAP: MPLS, SRv6)"),
        _ => None,
    }
}

/// The `rtnexthop`s of an `RTA_MULTIPATH` value.
fn multipath<A: Family>(v: &[u8], base: usize) -> Result<Vec<Nexthop<A>>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < v.len() {
        let left = v.len() - at;
        let len = ne_u16(v, at).map_or(0, usize::from);
        if left < RTNH || len < RTNH || len > left {
            return Err(DecodeError::AttributeLength {
                attr: RTA_MULTIPATH,
                at: base + at,
                len: len.max(left.min(RTNH - 1)),
            });
        }
        let ifindex = ne_u32(v, at + 4).filter(|&i| i != 0);
        let mut gateway = None;
        for a in attributes(&v[at..at + len], RTNH, base + at) {
            let (attr, value) = a?;
            if let Some(what) = unsupported(attr) {
                return Err(DecodeError::Unsupported(what));
            }
            if attr == RTA_GATEWAY {
                gateway = Some(address(attr, value)?);
            }
        }
        out.push(Nexthop { ifindex, gateway });
        at = (at + align4(len)).min(v.len());
    }
    Ok(out)
}

/// One route message (`b` holds exactly it, from its `nlmsghdr`); `at` is its offset in
/// the frame.
fn route_message(kind: u16, b: &[u8], at: usize) -> Result<RouteMessage, DecodeError> {
    let Some(rtm) = array::<RTMSG>(b, NLMSG_HDR) else {
        return Err(DecodeError::MessageLength {
            at,
            len: b.len(),
            left: b.len(),
        });
    };
    Ok(match rtm[0] {
        AF_INET => match family_route::<Ipv4Addr>(kind, rtm, b, at)? {
            Parsed::Add(r) => RouteMessage::Add(r),
            Parsed::Delete(p) => RouteMessage::Delete(p),
            Parsed::Table(t) => RouteMessage::Ignored(Ignored::Table(t)),
        },
        AF_INET6 => match family_route::<Ipv6Addr>(kind, rtm, b, at)? {
            Parsed::Add(r) => RouteMessage::Add6(r),
            Parsed::Delete(p) => RouteMessage::Delete6(p),
            Parsed::Table(t) => RouteMessage::Ignored(Ignored::Table(t)),
        },
        family => RouteMessage::Ignored(Ignored::Family(family)),
    })
}

/// A route message of one family, decoded.
enum Parsed<A: Family> {
    Add(Route<A::Prefix, A>),
    Delete(A::Prefix),
    /// Another table's route.
    Table(u32),
}

/// The route message `b` (its `rtmsg` is `rtm`) of family `A`.
fn family_route<A: Family>(
    kind: u16,
    rtm: [u8; RTMSG],
    b: &[u8],
    at: usize,
) -> Result<Parsed<A>, DecodeError> {
    let [_family, dst_len, src_len, _tos, table, protocol, _scope, rtype] = [
        rtm[0], rtm[1], rtm[2], rtm[3], rtm[4], rtm[5], rtm[6], rtm[7],
    ];
    let mut table = u32::from(table);
    let mut dst = None;
    let mut oif = None;
    let mut gateway = None;
    let mut hops = None;
    for a in attributes(b, NLMSG_HDR + RTMSG, at) {
        let (attr, v) = a?;
        if let Some(what) = unsupported(attr) {
            return Err(DecodeError::Unsupported(what));
        }
        match attr {
            RTA_DST => dst = Some(address::<A>(attr, v)?),
            RTA_SRC => return Err(DecodeError::Unsupported("a source prefix (RTA_SRC)")),
            RTA_OIF => oif = Some(u32_attr(attr, v)?).filter(|&i| i != 0),
            RTA_GATEWAY => gateway = Some(address::<A>(attr, v)?),
            RTA_TABLE => table = u32_attr(attr, v)?,
            RTA_MULTIPATH => hops = Some(multipath::<A>(v, at)?),
            RTA_NH_ID => return Err(DecodeError::NexthopGroup(u32_attr(attr, v)?)),
            _ => {}
        }
    }
    if src_len != 0 {
        return Err(DecodeError::Unsupported("a source prefix (rtm_src_len)"));
    }
    if dst_len > A::MAX_LEN {
        return Err(DecodeError::PrefixLength {
            len: dst_len,
            max: A::MAX_LEN,
        });
    }
    let addr = match dst {
        Some(a) => a,
        None if dst_len == 0 => A::unspecified(),
        None => return Err(DecodeError::NoDestination(A::unspecified().into(), dst_len)),
    };
    let prefix = addr.prefix(dst_len).ok_or(DecodeError::HostBits {
        addr: addr.into(),
        len: dst_len,
    })?;
    if table != RT_TABLE_MAIN {
        return Ok(Parsed::Table(table));
    }
    if kind == RTM_DELROUTE {
        return Ok(Parsed::Delete(prefix));
    }
    let kind = match rtype {
        RTN_UNICAST => {
            let hops = match hops {
                Some(h) => h,
                None if oif.is_some() || gateway.is_some() => vec![Nexthop {
                    ifindex: oif,
                    gateway,
                }],
                None => Vec::new(),
            };
            if hops.is_empty() {
                return Err(DecodeError::NoNexthop);
            }
            RouteKind::Unicast(hops)
        }
        RTN_BLACKHOLE => RouteKind::Blackhole,
        RTN_UNREACHABLE => RouteKind::Unreachable,
        RTN_PROHIBIT => RouteKind::Prohibit,
        other => return Err(DecodeError::RouteType(other)),
    };
    Ok(Parsed::Add(Route {
        prefix,
        protocol,
        kind,
    }))
}

/// The route messages of one frame's payload (what follows its FPM header), in order.
pub fn decode(payload: &[u8]) -> Result<Vec<RouteMessage>, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let left = payload.len() - at;
        let len = ne_u32(payload, at).map_or(0, |l| l as usize);
        if left < NLMSG_HDR || len < NLMSG_HDR || len > left {
            return Err(DecodeError::MessageLength {
                at,
                len: if left < NLMSG_HDR { left } else { len },
                left,
            });
        }
        let kind = ne_u16(payload, at + 4).unwrap_or(0);
        let msg = &payload[at..at + len];
        out.push(match kind {
            RTM_NEWROUTE | RTM_DELROUTE => route_message(kind, msg, at)?,
            other => return Err(DecodeError::UnknownMessage(other)),
        });
        at = (at + align4(len)).min(payload.len());
    }
    Ok(out)
}

/// FRR's name for a route protocol number (`rtm_protocol`), as `show ip route` says it.
pub fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        2 => "kernel",
        3 => "boot",
        4 => "static",
        11 => "zebra",
        42 => "babel",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        191 => "nhrp",
        192 => "eigrp",
        193 => "ldp",
        194 => "sharp",
        195 => "pbr",
        196 => "static",
        197 => "openfabric",
        198 => "srte",
        _ => "other",
    }
}

/// The same format written: frames of route messages, as zebra writes them (for tests,
/// benchmarks and fuzzing seeds; the decoder's tests use hand-built bytes as well).
pub mod encode {
    use super::*;

    fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        let len = (RTA_HDR + value.len()) as u16;
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align4(out.len()), 0);
    }

    /// One `RTM_NEWROUTE` or `RTM_DELROUTE` message for an IPv4 route in the main table.
    pub fn route(kind: u16, prefix: Ipv4Prefix, protocol: u8, what: &RouteKind) -> Vec<u8> {
        family_route::<Ipv4Addr>(kind, prefix, protocol, what)
    }

    /// The same for an IPv6 route.
    pub fn route6(
        kind: u16,
        prefix: Ipv6Prefix,
        protocol: u8,
        what: &RouteKind<Ipv6Addr>,
    ) -> Vec<u8> {
        family_route::<Ipv6Addr>(kind, prefix, protocol, what)
    }

    fn family_route<A: Family>(
        kind: u16,
        prefix: A::Prefix,
        protocol: u8,
        what: &RouteKind<A>,
    ) -> Vec<u8> {
        let (addr, len) = A::parts(prefix);
        let mut m = vec![0u8; NLMSG_HDR];
        m.extend_from_slice(&[
            A::AF,
            len,
            0,
            0,
            RT_TABLE_MAIN as u8,
            protocol,
            0,
            match what {
                RouteKind::Unicast(_) => RTN_UNICAST,
                RouteKind::Blackhole => RTN_BLACKHOLE,
                RouteKind::Unreachable => RTN_UNREACHABLE,
                RouteKind::Prohibit => RTN_PROHIBIT,
            },
        ]);
        m.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut m, RTA_DST, &addr.bytes());
        if let RouteKind::Unicast(hops) = what {
            match hops.as_slice() {
                [one] => {
                    if let Some(i) = one.ifindex {
                        attr(&mut m, RTA_OIF, &i.to_ne_bytes());
                    }
                    if let Some(g) = one.gateway {
                        attr(&mut m, RTA_GATEWAY, &g.bytes());
                    }
                }
                many => {
                    let mut v = Vec::new();
                    for h in many {
                        let start = v.len();
                        v.extend_from_slice(&[0, 0, 0, 0]);
                        v.extend_from_slice(&h.ifindex.unwrap_or(0).to_ne_bytes());
                        if let Some(g) = h.gateway {
                            attr(&mut v, RTA_GATEWAY, &g.bytes());
                        }
                        let len = (v.len() - start) as u16;
                        v[start..start + 2].copy_from_slice(&len.to_ne_bytes());
                    }
                    attr(&mut m, RTA_MULTIPATH, &v);
                }
            }
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m
    }

    /// An FPM frame around `messages`.
    pub fn frame(messages: &[Vec<u8>]) -> Vec<u8> {
        let len: usize = HEADER_LEN + messages.iter().map(Vec::len).sum::<usize>();
        let mut f = vec![VERSION, TYPE_NETLINK];
        f.extend_from_slice(&(len as u16).to_be_bytes());
        for m in messages {
            f.extend_from_slice(m);
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    /// A frame as zebra writes a route update: bytes laid out by hand from the structures
    /// of `linux/netlink.h` and `linux/rtnetlink.h` (host order: this test runs on a
    /// little-endian host, as zebra and the appliance do), one comment per field.
    #[rustfmt::skip]
    fn update_frame() -> Vec<u8> {
        vec![
            // FPM header: version 1, type 1 (netlink), length 4 + 44 + 60 = 108 (big-endian)
            0x01, 0x01, 0x00, 108,
            // --- RTM_DELROUTE 10.9.0.0/16 ---
            // nlmsghdr: nlmsg_len 44, nlmsg_type 25 (RTM_DELROUTE), flags 0x0001, seq 7, pid 0
            44, 0, 0, 0,   25, 0,   0x01, 0x00,   7, 0, 0, 0,   0, 0, 0, 0,
            // rtmsg: family 2 (AF_INET), dst_len 16, src_len 0, tos 0, table 254 (main),
            //        protocol 186 (BGP), scope 0, type 1 (unicast), flags 0
            2, 16, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            // rtattr RTA_DST (1), length 8: 10.9.0.0
            8, 0, 1, 0,   10, 9, 0, 0,
            // rtattr RTA_PRIORITY (6), length 8: metric 20 (ignored)
            8, 0, 6, 0,   20, 0, 0, 0,
            // --- RTM_NEWROUTE 10.9.0.0/16 via 169.254.10.2 on ifindex 7 ---
            // nlmsghdr: nlmsg_len 60, type 24 (RTM_NEWROUTE), flags 0x0401 (REQUEST|CREATE)
            60, 0, 0, 0,   24, 0,   0x01, 0x04,   8, 0, 0, 0,   0, 0, 0, 0,
            // rtmsg: AF_INET, /16, no source, tos 0, table 254, BGP, scope 0, unicast
            2, 16, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            // RTA_DST 10.9.0.0
            8, 0, 1, 0,   10, 9, 0, 0,
            // RTA_GATEWAY (5): 169.254.10.2
            8, 0, 5, 0,   169, 254, 10, 2,
            // RTA_OIF (4): ifindex 7
            8, 0, 4, 0,   7, 0, 0, 0,
            // RTA_TABLE (15): 254
            8, 0, 15, 0,  254, 0, 0, 0,
        ]
    }

    #[test]
    fn an_update_is_a_delete_and_an_add_in_one_frame() {
        let f = update_frame();
        let h = FrameHeader::parse([f[0], f[1], f[2], f[3]]).unwrap();
        assert_eq!(
            h,
            FrameHeader {
                version: 1,
                kind: TYPE_NETLINK,
                len: 108
            }
        );
        assert_eq!(h.payload_len(), f.len() - 4);
        let msgs = decode(&f[4..]).unwrap();
        assert_eq!(
            msgs,
            [
                RouteMessage::Delete(p("10.9.0.0/16")),
                RouteMessage::Add(Route {
                    prefix: p("10.9.0.0/16"),
                    protocol: 186,
                    kind: RouteKind::Unicast(vec![Nexthop {
                        ifindex: Some(7),
                        gateway: Some(Ipv4Addr::new(169, 254, 10, 2)),
                    }]),
                }),
            ]
        );
        assert_eq!(protocol_name(186), "bgp");
        assert_eq!(protocol_name(196), "static");
    }

    #[test]
    fn the_encoder_writes_what_the_hand_built_bytes_hold() {
        let f = encode::frame(&[
            encode::route(
                RTM_DELROUTE,
                p("10.9.0.0/16"),
                186,
                &RouteKind::Unicast(vec![]),
            ),
            encode::route(
                RTM_NEWROUTE,
                p("10.9.0.0/16"),
                186,
                &RouteKind::Unicast(vec![Nexthop {
                    ifindex: Some(7),
                    gateway: Some(Ipv4Addr::new(169, 254, 10, 2)),
                }]),
            ),
        ]);
        assert_eq!(decode(&f[4..]), decode(&update_frame()[4..]));
        assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
    }

    #[rustfmt::skip]
    #[test]
    fn multipath_blackhole_default_and_ignored_families_and_tables() {
        let frame: Vec<u8> = vec![
            // RTM_NEWROUTE 0.0.0.0/0 (no RTA_DST), multipath over ifindex 3 via 203.0.113.1
            // and ifindex 4 via 203.0.113.2
            // nlmsghdr: length 28 + 4 + 2 * 16 = 64, RTM_NEWROUTE
            64, 0, 0, 0,   24, 0,   0, 0,   0, 0, 0, 0,   0, 0, 0, 0,
            // rtmsg: AF_INET, dst_len 0, table 254, protocol 196 (FRR static), unicast
            2, 0, 0, 0, 254, 196, 0, 1,   0, 0, 0, 0,
            // RTA_MULTIPATH (9), length 4 + 32
            36, 0, 9, 0,
            // rtnexthop: rtnh_len 16, flags 0, hops 0, ifindex 3; then RTA_GATEWAY 203.0.113.1
            16, 0, 0, 0,   3, 0, 0, 0,   8, 0, 5, 0,   203, 0, 113, 1,
            // rtnexthop: rtnh_len 16, ifindex 4, RTA_GATEWAY 203.0.113.2
            16, 0, 0, 0,   4, 0, 0, 0,   8, 0, 5, 0,   203, 0, 113, 2,
            // RTM_NEWROUTE 10.66.0.0/16 blackhole: length 36
            36, 0, 0, 0,   24, 0,   0, 0,   0, 0, 0, 0,   0, 0, 0, 0,
            // rtmsg: AF_INET, /16, table 254, static, type 6 (blackhole)
            2, 16, 0, 0, 254, 196, 0, 6,   0, 0, 0, 0,
            8, 0, 1, 0,   10, 66, 0, 0,
            // An MPLS route (family 28, AF_MPLS): ignored. nlmsghdr length 28 + 20 = 48
            48, 0, 0, 0,   24, 0,   0, 0,   0, 0, 0, 0,   0, 0, 0, 0,
            28, 64, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            // RTA_DST, 16 bytes: 2001:db8::
            20, 0, 1, 0,   0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // A VRF's route: table 10 via RTA_TABLE (rtm_table 252, RT_TABLE_COMPAT)
            44, 0, 0, 0,   25, 0,   0, 0,   0, 0, 0, 0,   0, 0, 0, 0,
            2, 8, 0, 0, 252, 186, 0, 1,   0, 0, 0, 0,
            8, 0, 1, 0,   10, 0, 0, 0,
            8, 0, 15, 0,  10, 0, 0, 0,
        ];
        let msgs = decode(&frame).unwrap();
        let hop = |i, d| Nexthop { ifindex: Some(i), gateway: Some(Ipv4Addr::new(203, 0, 113, d)) };
        assert_eq!(
            msgs,
            [
                RouteMessage::Add(Route {
                    prefix: p("0.0.0.0/0"),
                    protocol: 196,
                    kind: RouteKind::Unicast(vec![hop(3, 1), hop(4, 2)]),
                }),
                RouteMessage::Add(Route {
                    prefix: p("10.66.0.0/16"),
                    protocol: 196,
                    kind: RouteKind::Blackhole,
                }),
                RouteMessage::Ignored(Ignored::Family(28)),
                RouteMessage::Ignored(Ignored::Table(10)),
            ]
        );
    }

    /// IPv6 route messages (`AF_INET6`) laid out by hand: addresses of 16 bytes, lengths
    /// up to 128, next hops (a link-local gateway, as BGP's IPv6 next hops often are) as
    /// for IPv4.
    #[rustfmt::skip]
    fn ipv6_frame() -> Vec<u8> {
        vec![
            // --- RTM_NEWROUTE 2001:db8:9::/48 via fe80::1 on ifindex 7 ---
            // nlmsghdr: length 16 + 12 + 20 + 20 + 8 = 76, RTM_NEWROUTE, flags 0x0401
            76, 0, 0, 0,   24, 0,   0x01, 0x04,   1, 0, 0, 0,   0, 0, 0, 0,
            // rtmsg: family 10 (AF_INET6), dst_len 48, src_len 0, tos 0, table 254,
            //        protocol 186 (BGP), scope 0, type 1 (unicast), flags 0
            10, 48, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            // RTA_DST (1), length 20: 2001:db8:9::
            20, 0, 1, 0,   0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // RTA_GATEWAY (5), length 20: fe80::1
            20, 0, 5, 0,   0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            // RTA_OIF (4): 7
            8, 0, 4, 0,    7, 0, 0, 0,
            // --- RTM_DELROUTE 2001:db8:8::/47 ---
            // nlmsghdr: length 16 + 12 + 20 = 48, RTM_DELROUTE
            48, 0, 0, 0,   25, 0,   0, 0,   2, 0, 0, 0,   0, 0, 0, 0,
            10, 47, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            20, 0, 1, 0,   0x20, 0x01, 0x0d, 0xb8, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            // --- RTM_NEWROUTE ::/0 (no RTA_DST) unreachable, FRR static ---
            28, 0, 0, 0,   24, 0,   0, 0,   3, 0, 0, 0,   0, 0, 0, 0,
            10, 0, 0, 0, 254, 196, 0, 7,   0, 0, 0, 0,
            // --- RTM_NEWROUTE 2001:db8:ff::1/128, multipath: ifindex 3 via fe80::2 and
            //     ifindex 4 without a gateway ---
            // nlmsghdr: length 28 + 20 + 4 + 28 + 8 = 88
            88, 0, 0, 0,   24, 0,   0, 0,   4, 0, 0, 0,   0, 0, 0, 0,
            10, 128, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            20, 0, 1, 0,   0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            // RTA_MULTIPATH (9), length 4 + 28 + 8 = 40
            40, 0, 9, 0,
            // rtnexthop: rtnh_len 28, flags 0, hops 0, ifindex 3; RTA_GATEWAY fe80::2
            28, 0, 0, 0,   3, 0, 0, 0,
            20, 0, 5, 0,   0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
            // rtnexthop: rtnh_len 8, ifindex 4
            8, 0, 0, 0,    4, 0, 0, 0,
        ]
    }

    #[test]
    fn ipv6_routes_are_decoded_with_their_own_address_lengths() {
        let msgs = decode(&ipv6_frame()).unwrap();
        let p6 = |s: &str| -> Ipv6Prefix { s.parse().unwrap() };
        let a6 = |s: &str| -> Ipv6Addr { s.parse().unwrap() };
        assert_eq!(
            msgs,
            [
                RouteMessage::Add6(Route {
                    prefix: p6("2001:db8:9::/48"),
                    protocol: 186,
                    kind: RouteKind::Unicast(vec![Nexthop {
                        ifindex: Some(7),
                        gateway: Some(a6("fe80::1")),
                    }]),
                }),
                RouteMessage::Delete6(p6("2001:db8:8::/47")),
                RouteMessage::Add6(Route {
                    prefix: p6("::/0"),
                    protocol: 196,
                    kind: RouteKind::Unreachable,
                }),
                RouteMessage::Add6(Route {
                    prefix: p6("2001:db8:ff::1/128"),
                    protocol: 186,
                    kind: RouteKind::Unicast(vec![
                        Nexthop {
                            ifindex: Some(3),
                            gateway: Some(a6("fe80::2"))
                        },
                        Nexthop {
                            ifindex: Some(4),
                            gateway: None
                        },
                    ]),
                }),
            ]
        );
        // The encoder writes what the hand-built bytes hold.
        let again: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| match m {
                RouteMessage::Add6(r) => {
                    encode::route6(RTM_NEWROUTE, r.prefix, r.protocol, &r.kind)
                }
                RouteMessage::Delete6(p) => {
                    encode::route6(RTM_DELROUTE, *p, 186, &RouteKind::Unicast(vec![]))
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(decode(&again.concat()), Ok(msgs));
    }

    #[test]
    fn ipv6_lengths_prefixes_and_addresses_are_checked() {
        // The first message of `ipv6_frame` alone: rtmsg at 16, RTA_DST at 28 (address
        // 32..48), RTA_GATEWAY at 48 (address 52..68), RTA_OIF at 68.
        let ok = ipv6_frame()[..76].to_vec();
        assert!(decode(&ok).is_ok());
        let with = |at: usize, v: u8| {
            let mut b = ok.clone();
            b[at] = v;
            b
        };
        for (bytes, kind) in [
            (with(17, 129), "bad_prefix"),  // dst_len 129
            (with(17, 16), "bad_prefix"),   // 2001:db8:9::/16: host bits
            (with(47, 1), "bad_prefix"),    // 2001:db8:9::1/48: host bits
            (with(28, 8), "bad_attribute"), // RTA_DST of 4 bytes (an IPv4 address)
            (with(48, 8), "bad_attribute"), // RTA_GATEWAY of 4 bytes
            (with(18, 64), "unsupported"),  // a source prefix length
            (with(23, 2), "unsupported"),   // RTN_LOCAL
        ] {
            let e = decode(&bytes).unwrap_err();
            assert_eq!(e.kind(), kind, "{bytes:?}: {e}");
        }
        let e = decode(&with(17, 129)).unwrap_err().to_string();
        assert!(e.contains("129") && e.contains("128"), "{e}");
        // A destination length of 128 with the address's last bit set is a host route.
        let mut host = with(17, 128);
        host[47] = 1;
        assert!(
            matches!(&decode(&host).unwrap()[0], RouteMessage::Add6(r) if r.prefix.prefix_len() == 128)
        );
    }

    /// A valid one-message frame payload: RTM_NEWROUTE 10.9.0.0/16 out of ifindex 7.
    /// Offsets: nlmsghdr 0..16, rtmsg 16..28, RTA_DST 28..36, RTA_OIF 36..44.
    #[rustfmt::skip]
    fn one_route() -> Vec<u8> {
        vec![
            // nlmsghdr: length 44, RTM_NEWROUTE, flags 0, seq 0, pid 0
            44, 0, 0, 0,   24, 0,   0, 0,   0, 0, 0, 0,   0, 0, 0, 0,
            // rtmsg: AF_INET, /16, no source, tos 0, table 254, BGP, scope 0, unicast
            2, 16, 0, 0, 254, 186, 0, 1,   0, 0, 0, 0,
            // RTA_DST 10.9.0.0
            8, 0, 1, 0,   10, 9, 0, 0,
            // RTA_OIF 7
            8, 0, 4, 0,   7, 0, 0, 0,
        ]
    }

    #[test]
    fn wrong_lengths_types_and_attributes_are_refused() {
        let ok = one_route();
        assert!(decode(&ok).is_ok());
        let with = |at: usize, v: u8| {
            let mut b = ok.clone();
            b[at] = v;
            b
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "bad_length"),
            (ok[..15].to_vec(), "bad_length"), // shorter than an nlmsghdr
            (with(0, 45), "bad_length"),       // nlmsg_len beyond the frame
            (with(0, 15), "bad_length"),       // nlmsg_len below its header
            (with(0, 20), "bad_length"),       // holds no whole rtmsg
            ([ok.clone(), vec![1, 2, 3, 4, 5]].concat(), "bad_length"), // trailing bytes
            (with(4, 104), "unknown_message"), // RTM_NEWNEXTHOP
            (with(4, 16), "unknown_message"),  // RTM_NEWLINK
            (with(28, 9), "bad_attribute"),    // RTA_DST of 5 bytes
            (with(28, 3), "bad_attribute"),    // rtattr shorter than its header
            (with(28, 17), "bad_attribute"),   // rtattr beyond the message
            (with(28, 6), "bad_attribute"),    // RTA_DST of 2 bytes
            (with(17, 33), "bad_prefix"),      // dst_len 33
            (with(35, 1), "bad_prefix"),       // 10.9.0.1/16: host bits
            (with(23, 2), "unsupported"),      // RTN_LOCAL
            (with(18, 8), "unsupported"),      // a source prefix length
            (with(30, 22), "unsupported"),     // RTA_ENCAP
            (with(30, 18), "unsupported"),     // RTA_VIA
            (with(38, 30), "next_hop_group"),  // RTA_NH_ID
        ];
        for (bytes, kind) in cases {
            let e = decode(&bytes).unwrap_err();
            assert_eq!(e.kind(), kind, "{bytes:?}: {e}");
        }
        // No next hop at all: RTA_OIF turned into RTA_PRIORITY.
        assert_eq!(decode(&with(38, 6)), Err(DecodeError::NoNexthop));
        // A prefix length without RTA_DST: RTA_DST turned into RTA_PRIORITY.
        assert!(matches!(
            decode(&with(30, 6)),
            Err(DecodeError::NoDestination(..))
        ));
        let e = decode(&with(4, 104)).unwrap_err().to_string();
        assert!(e.contains("no fpm use-next-hop-groups"), "{e}");
    }

    #[test]
    fn headers_that_lose_the_stream() {
        assert_eq!(
            FrameHeader::parse([2, 1, 0, 8]),
            Err(HeaderError::Version(2))
        );
        assert_eq!(
            FrameHeader::parse([1, 1, 0, 3]),
            Err(HeaderError::Length(3))
        );
        // A protobuf frame (type 2) is a frame: its length still leads to the next one.
        assert_eq!(FrameHeader::parse([1, 2, 0, 4]).map(|h| h.kind), Ok(2));
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic, and what decodes re-encodes to the same routes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_routes_never_panic(flips in proptest::collection::vec((0usize..44, proptest::prelude::any::<u8>()), 1..6)) {
            let mut b = one_route();
            for (at, v) in flips {
                b[at] = v;
            }
            if let Ok(msgs) = decode(&b) {
                for m in msgs {
                    if let RouteMessage::Add(r) = m {
                        let again = encode::route(RTM_NEWROUTE, r.prefix, r.protocol, &r.kind);
                        proptest::prop_assert_eq!(decode(&again).unwrap(), vec![RouteMessage::Add(r)]);
                    }
                }
            }
        }
    }
}
