//! Zero-copy header views, one file per protocol.
//!
//! Each protocol has two types, in the smoltcp style:
//!
//! - a **view** (`EthernetFrame<T>`, `Ipv4Packet<T>`, ...), a thin wrapper over a byte
//!   buffer `T: AsRef<[u8]>` that reads fields in place, with setters when `T: AsMut<[u8]>`;
//! - a **`Repr`** (`EthernetRepr`, `Ipv4Repr`, ...), the header as plain values, with
//!   `parse` (view to values, validating), `emit` (values to view) and `buffer_len`.
//!
//! # Contract
//!
//! - `new_checked` is for untrusted input. It validates every length the accessors rely
//!   on; once it returns `Ok`, no accessor of that view can panic. It checks structure
//!   only: checksums and semantic rules are separate calls (`verify_checksum`,
//!   [`gre::GrePacket::check_rfc2784`]) so the caller can count each failure by name.
//! - `new_unchecked` is for buffers we build ourselves (emit into headroom). Accessors on
//!   a buffer shorter than the header panic. Setters never re-validate: a view changed
//!   through setters is only as trusted as `new_unchecked`.
//! - `Repr::parse` calls the same checks as `new_checked` plus the checksum, so it also
//!   accepts views made with `new_unchecked`.
//! - Byte order lives inside the views: every value that leaves a view is in host order,
//!   and every setter takes host order.
//! - Nothing here allocates, and nothing formats on the packet path.
//! - The views assume `AsRef`/`AsMut` return the same slice on every call, as every
//!   buffer type in this crate does.
//!
//! # Protocols
//!
//! Ethernet II ([`ethernet`]), ARP for Ethernet/IPv4 ([`arp`]), IPv4 ([`ipv4`]), GRE
//! with RFC 2890 key and sequence number ([`gre`]), ICMP's error messages ([`icmp`]), the
//! IPv6 fixed header ([`ipv6`]) and ICMPv6's error messages ([`icmpv6`]). IP-in-IP (RFC 2003) has no header of
//! its own: the inner IPv4 header follows the outer one directly, and the outer protocol
//! is [`IpProtocol::IPIP`] (4). [`checksum`] holds the Internet checksum (RFC 1071) and
//! its incremental update (RFC 1624).
//!
//! Room for IPv6 and 802.1Q: wire numbers are newtypes that represent unknown values
//! ([`EtherType::IPV6`], [`EtherType::VLAN`], [`IpProtocol::IPV6`] exist already), the
//! address types are `core::net`'s so [`IpAddr`] covers both families, [`IpVersion`]
//! dispatches on the first nibble, and IPv4 accessors that have an IPv6 counterpart also
//! go by the IPv6 names (`hop_limit`, `next_header`).

use thiserror::Error;

pub use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Defines a newtype over a wire number with named constants for the known values.
///
/// Unknown values stay representable (a received field can hold anything); `Debug` and
/// `Display` print the constant's name when there is one.
macro_rules! wire_number {
    (
        $(#[$attr:meta])*
        pub struct $name:ident($ty:ty) {
            $( $(#[$cattr:meta])* $konst:ident = $value:literal, )*
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);

        impl $name {
            $( $(#[$cattr])* pub const $konst: Self = Self($value); )*

            /// The name of the constant for this value, if it is a known one.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                Self(value)
            }
        }

        impl From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{}::{}", stringify!($name), name),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{:#x}", self.0),
                }
            }
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gre;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod nd;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EthernetAddress, EthernetFrame, EthernetRepr};
pub use gre::{GrePacket, GreRepr};
pub use icmp::{IcmpErrorRepr, IcmpPacket, IcmpType};
pub use icmpv6::Icmpv6ErrorRepr;
pub use ipv4::{Ecn, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};

/// Why a header was rejected. Small and `Copy`: the packet path counts it, never formats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than the header its flags describe).
    #[error("buffer shorter than the header")]
    Truncated,
    /// A length field is out of range or disagrees with the buffer.
    #[error("length field out of range")]
    BadLength,
    /// The version field holds a value other than the one expected.
    #[error("bad version")]
    BadVersion,
    /// The checksum does not verify.
    #[error("bad checksum")]
    BadChecksum,
    /// A field holds a value its standard forbids (a reserved bit that must be zero).
    #[error("malformed header")]
    Malformed,
    /// A well-formed header that this code does not handle (for example ARP for another
    /// hardware type, or an IPv4 fragment handed to `Ipv4Repr::parse`).
    #[error("unsupported header")]
    Unsupported,
}

/// Result of a wire operation.
pub type Result<T> = core::result::Result<T, Error>;

wire_number! {
    /// EtherType (IEEE 802.3), also the GRE protocol type.
    pub struct EtherType(u16) {
        /// IPv4.
        IPV4 = 0x0800,
        /// ARP.
        ARP = 0x0806,
        /// 802.1Q VLAN tag.
        VLAN = 0x8100,
        /// 802.1ad service VLAN tag (QinQ).
        QINQ = 0x88A8,
        /// IPv6.
        IPV6 = 0x86DD,
    }
}

wire_number! {
    /// IP protocol number (IPv4 protocol field, IPv6 next header).
    pub struct IpProtocol(u8) {
        /// ICMP.
        ICMP = 1,
        /// IPv4 in IP (RFC 2003).
        IPIP = 4,
        /// TCP.
        TCP = 6,
        /// UDP.
        UDP = 17,
        /// IPv6 in IP (RFC 4213).
        IPV6 = 41,
        /// GRE (RFC 2784).
        GRE = 47,
        /// ICMPv6.
        ICMPV6 = 58,
    }
}

/// IP version, read from the first nibble of an IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl IpVersion {
    /// The version of the IP packet starting at `packet[0]`.
    ///
    /// `Truncated` on an empty buffer, `BadVersion` for a nibble other than 4 or 6. Checks
    /// nothing else: hand the buffer to that version's `new_checked` next.
    #[inline]
    pub fn of_packet(packet: &[u8]) -> Result<IpVersion> {
        match packet.first().map(|b| b >> 4) {
            None => Err(Error::Truncated),
            Some(4) => Ok(IpVersion::Ipv4),
            Some(6) => Ok(IpVersion::Ipv6),
            Some(_) => Err(Error::BadVersion),
        }
    }

    /// The version of an address.
    #[inline]
    pub const fn of_addr(addr: &IpAddr) -> IpVersion {
        match addr {
            IpAddr::V4(_) => IpVersion::Ipv4,
            IpAddr::V6(_) => IpVersion::Ipv6,
        }
    }
}

// Big-endian field access. `at` is a constant or a length that `new_checked` validated;
// slicing first lets the compiler drop the per-byte bounds checks.

#[inline]
fn read_u16(data: &[u8], at: usize) -> u16 {
    let b = &data[at..at + 2];
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn read_u32(data: &[u8], at: usize) -> u32 {
    let b = &data[at..at + 4];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline]
fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn write_u32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_name_known_values_and_keep_unknown_ones() {
        assert_eq!(format!("{:?}", EtherType::IPV4), "EtherType::IPV4");
        assert_eq!(format!("{}", IpProtocol::GRE), "GRE");
        assert_eq!(format!("{:?}", IpProtocol(200)), "IpProtocol(0xc8)");
        assert_eq!(format!("{}", EtherType(0x1234)), "0x1234");
        assert_eq!(u16::from(EtherType::from(0x86DD)), 0x86DD);
        assert_eq!(EtherType(0x86DD), EtherType::IPV6);
    }

    #[test]
    fn ip_version_from_first_nibble() {
        assert_eq!(IpVersion::of_packet(&[]), Err(Error::Truncated));
        assert_eq!(IpVersion::of_packet(&[0x45]), Ok(IpVersion::Ipv4));
        assert_eq!(IpVersion::of_packet(&[0x60, 0]), Ok(IpVersion::Ipv6));
        assert_eq!(IpVersion::of_packet(&[0x55]), Err(Error::BadVersion));
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert_eq!(IpVersion::of_addr(&v6), IpVersion::Ipv6);
    }
}
