//! Longest-prefix match tables.
//!
//! A table maps destination prefixes to a [`NextHop`], a small index that the forwarding
//! snapshot turns into an action (a tunnel, a port). Each address family has two types:
//!
//! - an immutable **table** ([`Ipv4Lpm`], [`Ipv6Lpm`]): `Send + Sync`, cheap to clone,
//!   answers lookups one address at a time or a burst at a time. Lookups never allocate,
//!   never lock and never panic;
//! - a mutable **builder** ([`Ipv4LpmBuilder`], [`Ipv6LpmBuilder`]) on the control side: it
//!   owns the rule set (prefix to next hop, needed to find the covering prefix when one is
//!   removed) and the current table. Any number of `insert`/`remove` calls form a batch;
//!   `publish` applies the batch and returns a new table that shares every chunk the batch
//!   did not change with the previous one (copy-on-write, see [`ipv4`] and [`ipv6`] for the
//!   layouts and the costs).
//!
//! Prefixes are validated where they are made ([`Ipv4Prefix::new`] rejects host bits,
//! [`Ipv4Prefix::from_str`](core::str::FromStr) parses `10.0.0.0/8`; [`Ipv6Prefix`] the
//! same for `2001:db8::/32`), so the builders' `insert` and `remove` cannot fail. Addresses
//! handed to lookups are host-order integers (`u32::from(Ipv4Addr)`, the value the wire
//! views return, and `u128::from(Ipv6Addr)`) or [`Ipv4Addr`]s and [`Ipv6Addr`]s.
//!
//! IPv4 lives in [`ipv4`], IPv6 in [`ipv6`], their prefixes in [`prefix`]; the
//! family-independent types ([`NextHop`], [`LpmError`]) live here.
//!
//! [`Ipv4Addr`]: core::net::Ipv4Addr
//! [`Ipv6Addr`]: core::net::Ipv6Addr

use core::fmt;
use core::net::IpAddr;

pub mod ipv4;
pub mod ipv6;
pub mod prefix;
#[cfg(test)]
mod test_support;

pub use ipv4::{Ipv4Lpm, Ipv4LpmBuilder, Ipv4LpmStats, BURST, FLATS_KEPT, FLAT_MIN_PREFIXES};
pub use ipv6::{Ipv6Lpm, Ipv6LpmBuilder, Ipv6LpmStats};
pub use prefix::{Ipv4Prefix, Ipv6Prefix};

/// The result of a lookup: an index the forwarding snapshot maps to an action.
///
/// Valid indices are `0..=NextHop::MAX.index()` (31 bits less one value); the top bit of
/// a table entry is kept for "points to a child chunk", and [`NextHop::NONE`] is the
/// reserved "no route" value that the bulk lookup writes for addresses no prefix covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct NextHop(u32);

impl NextHop {
    /// The largest next-hop index a table can store.
    pub const MAX: NextHop = NextHop((1 << 31) - 2);
    /// "No route": what [`Ipv4Lpm::lookup_bulk`] and [`Ipv6Lpm::lookup_bulk`] write where
    /// no prefix matches.
    pub const NONE: NextHop = NextHop((1 << 31) - 1);

    /// A next hop with this index, or `None` if `index > NextHop::MAX.index()`.
    pub const fn new(index: u32) -> Option<NextHop> {
        if index <= Self::MAX.0 {
            Some(NextHop(index))
        } else {
            None
        }
    }

    /// The index (for [`NextHop::NONE`], `NextHop::MAX.index() + 1`).
    pub const fn index(self) -> u32 {
        self.0
    }

    /// Whether this is [`NextHop::NONE`].
    pub const fn is_none(self) -> bool {
        self.0 == Self::NONE.0
    }

    /// `None` for [`NextHop::NONE`], `Some(self)` otherwise.
    pub const fn to_option(self) -> Option<NextHop> {
        if self.is_none() {
            None
        } else {
            Some(self)
        }
    }
}

impl TryFrom<u32> for NextHop {
    type Error = LpmError;

    fn try_from(index: u32) -> Result<Self, LpmError> {
        NextHop::new(index).ok_or(LpmError::NextHopOutOfRange {
            value: index,
            max: NextHop::MAX.0,
        })
    }
}

impl fmt::Debug for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            f.write_str("NextHop::NONE")
        } else {
            write!(f, "NextHop({})", self.0)
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            f.write_str("none")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Errors from building prefixes and next hops. Table updates themselves cannot fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// The prefix length is longer than the address.
    #[error("prefix length {len} is longer than {max} bits")]
    PrefixTooLong {
        /// The length given.
        len: u8,
        /// The address width (32 for IPv4, 128 for IPv6).
        max: u8,
    },
    /// Bits beyond the prefix length are set, as in `10.1.0.0/8`.
    #[error("prefix {addr}/{len} has host bits set (the network is {network}/{len})")]
    HostBitsSet {
        /// The address given.
        addr: IpAddr,
        /// The prefix length given.
        len: u8,
        /// The address with the host bits cleared.
        network: IpAddr,
    },
    /// The text is not `ADDRESS/LENGTH`.
    #[error("cannot parse {input:?} as a prefix: expected ADDRESS/LENGTH, such as 10.0.0.0/8")]
    Syntax {
        /// The text given.
        input: String,
    },
    /// The next-hop index does not fit in a table entry.
    #[error("next hop {value} is out of range (the largest is {max})")]
    NextHopOutOfRange {
        /// The index given.
        value: u32,
        /// [`NextHop::MAX`]'s index.
        max: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hop_range() {
        assert_eq!(NextHop::new(0).map(NextHop::index), Some(0));
        assert_eq!(NextHop::new(NextHop::MAX.index()), Some(NextHop::MAX));
        assert_eq!(NextHop::new(NextHop::NONE.index()), None);
        assert_eq!(NextHop::new(u32::MAX), None);
        assert_eq!(
            NextHop::try_from(u32::MAX),
            Err(LpmError::NextHopOutOfRange {
                value: u32::MAX,
                max: NextHop::MAX.index()
            })
        );
        assert!(NextHop::NONE.is_none());
        assert_eq!(NextHop::NONE.to_option(), None);
        assert_eq!(NextHop::MAX.to_option(), Some(NextHop::MAX));
        // The flag bit for child chunks must stay clear in every storable value.
        assert_eq!(NextHop::NONE.index() & (1 << 31), 0);
    }

    #[test]
    fn next_hop_formats() {
        assert_eq!(NextHop(7).to_string(), "7");
        assert_eq!(NextHop::NONE.to_string(), "none");
        assert_eq!(format!("{:?}", NextHop(7)), "NextHop(7)");
        assert_eq!(format!("{:?}", NextHop::NONE), "NextHop::NONE");
    }
}
