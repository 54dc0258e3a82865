//! Validated IP prefixes.
//!
//! [`Ipv4Prefix`] and [`Ipv6Prefix`] are an address and a length whose host bits are zero.
//! The checked constructors are `new` and [`FromStr`] (`"10.0.0.0/8"`, `"2001:db8::/32"`);
//! `truncating` clears the host bits instead of rejecting them. Nothing here panics.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use super::LpmError;

/// An IPv4 prefix: a network address and a length `0..=32`, with every bit past the
/// length zero.
///
/// Ordered by address, then length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    bits: u32,
    len: u8,
}

impl Ipv4Prefix {
    /// The longest prefix length.
    pub const MAX_LEN: u8 = 32;

    /// The prefix `addr/len`.
    ///
    /// # Errors
    ///
    /// [`LpmError::PrefixTooLong`] if `len > 32`, [`LpmError::HostBitsSet`] if `addr` has
    /// bits set past `len`.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, LpmError> {
        let prefix = Self::truncating(addr, len)?;
        if prefix.bits != u32::from(addr) {
            return Err(LpmError::HostBitsSet {
                addr: IpAddr::V4(addr),
                len,
                network: IpAddr::V4(prefix.addr()),
            });
        }
        Ok(prefix)
    }

    /// The prefix of length `len` that contains `addr` (host bits cleared).
    ///
    /// # Errors
    ///
    /// [`LpmError::PrefixTooLong`] if `len > 32`.
    pub fn truncating(addr: Ipv4Addr, len: u8) -> Result<Self, LpmError> {
        if len > Self::MAX_LEN {
            return Err(LpmError::PrefixTooLong {
                len,
                max: Self::MAX_LEN,
            });
        }
        Ok(Ipv4Prefix {
            bits: u32::from(addr) & mask(len),
            len,
        })
    }

    /// The host route `addr/32`.
    pub const fn host(addr: Ipv4Addr) -> Self {
        Ipv4Prefix {
            bits: addr.to_bits(),
            len: 32,
        }
    }

    /// The network address.
    pub const fn addr(self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.bits)
    }

    /// The network address as a host-order `u32`.
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// The prefix length, `0..=32`.
    pub const fn prefix_len(self) -> u8 {
        self.len
    }

    /// The netmask as a host-order `u32` (`0xff00_0000` for a /8).
    pub const fn mask(self) -> u32 {
        mask(self.len)
    }

    /// The last address of the prefix, as a host-order `u32`.
    pub const fn last_bits(self) -> u32 {
        self.bits | !mask(self.len)
    }

    /// Whether `addr` is inside this prefix.
    pub const fn contains(self, addr: Ipv4Addr) -> bool {
        self.contains_bits(addr.to_bits())
    }

    /// Whether the host-order address `addr` is inside this prefix.
    pub const fn contains_bits(self, addr: u32) -> bool {
        addr & mask(self.len) == self.bits
    }
}

/// The netmask of a length `0..=32` as a host-order `u32`.
const fn mask(len: u8) -> u32 {
    match u32::MAX.checked_shl(32 - len as u32) {
        Some(m) => m,
        None => 0,
    }
}

impl From<Ipv4Addr> for Ipv4Prefix {
    /// The host route `addr/32`.
    fn from(addr: Ipv4Addr) -> Self {
        Self::host(addr)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = LpmError;

    /// Parses `ADDRESS/LENGTH`, such as `10.0.0.0/8`; the length is decimal digits.
    fn from_str(s: &str) -> Result<Self, LpmError> {
        let syntax = || LpmError::Syntax {
            input: s.to_owned(),
        };
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Self::new(addr, len)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ipv4Prefix({self})")
    }
}

/// An IPv6 prefix: a network address and a length `0..=128`, with every bit past the
/// length zero.
///
/// Ordered by address, then length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Prefix {
    bits: u128,
    len: u8,
}

impl Ipv6Prefix {
    /// The longest prefix length.
    pub const MAX_LEN: u8 = 128;

    /// The prefix `addr/len`.
    ///
    /// # Errors
    ///
    /// [`LpmError::PrefixTooLong`] if `len > 128`, [`LpmError::HostBitsSet`] if `addr` has
    /// bits set past `len`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, LpmError> {
        let prefix = Self::truncating(addr, len)?;
        if prefix.bits != u128::from(addr) {
            return Err(LpmError::HostBitsSet {
                addr: IpAddr::V6(addr),
                len,
                network: IpAddr::V6(prefix.addr()),
            });
        }
        Ok(prefix)
    }

    /// The prefix of length `len` that contains `addr` (host bits cleared).
    ///
    /// # Errors
    ///
    /// [`LpmError::PrefixTooLong`] if `len > 128`.
    pub fn truncating(addr: Ipv6Addr, len: u8) -> Result<Self, LpmError> {
        Self::from_bits(u128::from(addr), len)
    }

    /// The prefix of length `len` that contains the host-order address `bits` (host bits
    /// cleared).
    ///
    /// # Errors
    ///
    /// [`LpmError::PrefixTooLong`] if `len > 128`.
    pub const fn from_bits(bits: u128, len: u8) -> Result<Self, LpmError> {
        if len > Self::MAX_LEN {
            return Err(LpmError::PrefixTooLong {
                len,
                max: Self::MAX_LEN,
            });
        }
        Ok(Ipv6Prefix {
            bits: bits & mask128(len),
            len,
        })
    }

    /// The host route `addr/128`.
    pub const fn host(addr: Ipv6Addr) -> Self {
        Ipv6Prefix {
            bits: addr.to_bits(),
            len: 128,
        }
    }

    /// The network address.
    pub const fn addr(self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.bits)
    }

    /// The network address as a host-order `u128` (`u128::from(Ipv6Addr)`).
    pub const fn bits(self) -> u128 {
        self.bits
    }

    /// The prefix length, `0..=128`.
    pub const fn prefix_len(self) -> u8 {
        self.len
    }

    /// The netmask as a host-order `u128`.
    pub const fn mask(self) -> u128 {
        mask128(self.len)
    }

    /// The last address of the prefix, as a host-order `u128`.
    pub const fn last_bits(self) -> u128 {
        self.bits | !mask128(self.len)
    }

    /// Whether `addr` is inside this prefix.
    pub const fn contains(self, addr: Ipv6Addr) -> bool {
        self.contains_bits(addr.to_bits())
    }

    /// Whether the host-order address `addr` is inside this prefix.
    pub const fn contains_bits(self, addr: u128) -> bool {
        addr & mask128(self.len) == self.bits
    }
}

/// The netmask of a length `0..=128` as a host-order `u128`.
const fn mask128(len: u8) -> u128 {
    match u128::MAX.checked_shl(128 - len as u32) {
        Some(m) => m,
        None => 0,
    }
}

impl From<Ipv6Addr> for Ipv6Prefix {
    /// The host route `addr/128`.
    fn from(addr: Ipv6Addr) -> Self {
        Self::host(addr)
    }
}

impl FromStr for Ipv6Prefix {
    type Err = LpmError;

    /// Parses `ADDRESS/LENGTH`, such as `2001:db8::/32`; the length is decimal digits.
    fn from_str(s: &str) -> Result<Self, LpmError> {
        let syntax = || LpmError::Syntax {
            input: s.to_owned(),
        };
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Self::new(addr, len)
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

impl fmt::Debug for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ipv6Prefix({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "192.168.1.0/24",
            "1.2.3.4/32",
            "128.0.0.0/1",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(p("10.0.0.0/8").bits(), 0x0a00_0000);
        assert_eq!(p("10.0.0.0/8").prefix_len(), 8);
        assert_eq!(p("10.0.0.0/8").mask(), 0xff00_0000);
        assert_eq!(p("0.0.0.0/0").mask(), 0);
        assert_eq!(p("1.2.3.4/32").mask(), u32::MAX);
        assert_eq!(p("10.0.0.0/8").last_bits(), 0x0aff_ffff);
        assert_eq!(p("0.0.0.0/0").last_bits(), u32::MAX);
        assert_eq!(format!("{:?}", p("10.0.0.0/8")), "Ipv4Prefix(10.0.0.0/8)");
    }

    #[test]
    fn parse_rejects_bad_text() {
        for s in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "/8",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/-8",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "10.0.0.0/256",
            "::/0",
        ] {
            assert_eq!(
                s.parse::<Ipv4Prefix>(),
                Err(LpmError::Syntax { input: s.into() }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn rejects_long_lengths() {
        assert_eq!(
            "10.0.0.0/33".parse::<Ipv4Prefix>(),
            Err(LpmError::PrefixTooLong { len: 33, max: 32 })
        );
        assert!(Ipv4Prefix::truncating(Ipv4Addr::UNSPECIFIED, 33).is_err());
        assert!(Ipv4Prefix::new(Ipv4Addr::UNSPECIFIED, 255).is_err());
    }

    #[test]
    fn rejects_host_bits_and_names_the_prefix() {
        let err = "10.1.0.0/8".parse::<Ipv4Prefix>().unwrap_err();
        assert_eq!(
            err,
            LpmError::HostBitsSet {
                addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0)),
                len: 8,
                network: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
            }
        );
        assert_eq!(
            err.to_string(),
            "prefix 10.1.0.0/8 has host bits set (the network is 10.0.0.0/8)"
        );
        assert!("0.0.0.1/0".parse::<Ipv4Prefix>().is_err());
        assert!("1.2.3.5/31".parse::<Ipv4Prefix>().is_err());
    }

    #[test]
    fn truncating_clears_host_bits() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(Ipv4Prefix::truncating(a, 8).unwrap(), p("10.0.0.0/8"));
        assert_eq!(Ipv4Prefix::truncating(a, 0).unwrap(), p("0.0.0.0/0"));
        assert_eq!(Ipv4Prefix::truncating(a, 32).unwrap(), p("10.1.2.3/32"));
        assert_eq!(Ipv4Prefix::from(a), p("10.1.2.3/32"));
    }

    #[test]
    fn contains() {
        let net = p("10.0.0.0/8");
        assert!(net.contains(Ipv4Addr::new(10, 0, 0, 0)));
        assert!(net.contains(Ipv4Addr::new(10, 255, 255, 255)));
        assert!(!net.contains(Ipv4Addr::new(11, 0, 0, 0)));
        assert!(!net.contains(Ipv4Addr::new(9, 255, 255, 255)));
        assert!(p("0.0.0.0/0").contains(Ipv4Addr::BROADCAST));
        assert!(p("1.2.3.4/32").contains_bits(0x0102_0304));
        assert!(!p("1.2.3.4/32").contains_bits(0x0102_0305));
    }
}

#[cfg(test)]
mod tests_v6 {
    use super::*;

    fn p(s: &str) -> Ipv6Prefix {
        s.parse().unwrap()
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "::/0",
            "2000::/3",
            "2001:db8::/32",
            "2001:db8:1:2::/64",
            "2001:db8::1/128",
            "8000::/1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
            "::1/128",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        let doc = p("2001:db8::/32");
        assert_eq!(doc.bits(), 0x2001_0db8 << 96);
        assert_eq!(doc.prefix_len(), 32);
        assert_eq!(doc.mask(), 0xffff_ffff << 96);
        assert_eq!(doc.last_bits(), (0x2001_0db8 << 96) | ((1 << 96) - 1));
        assert_eq!(p("::/0").mask(), 0);
        assert_eq!(p("::/0").last_bits(), u128::MAX);
        assert_eq!(p("::1/128").mask(), u128::MAX);
        assert_eq!(p("8000::/1").mask(), 1 << 127);
        assert_eq!(format!("{doc:?}"), "Ipv6Prefix(2001:db8::/32)");
        // Any spelling of the address parses; the display is RFC 5952's.
        assert_eq!(p("2001:0DB8:0000::/48").to_string(), "2001:db8::/48");
    }

    #[test]
    fn parse_rejects_bad_text() {
        for s in [
            "",
            "2001:db8::",
            "2001:db8::/",
            "/32",
            "2001:db8:::/32",
            "2001:db8::/+32",
            "2001:db8::/-32",
            "2001:db8::/32/32",
            "2001:db8::/ 32",
            "2001:db8::/0032",
            "2001:db8::/256",
            "10.0.0.0/8",
        ] {
            assert_eq!(
                s.parse::<Ipv6Prefix>(),
                Err(LpmError::Syntax { input: s.into() }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn rejects_long_lengths() {
        assert_eq!(
            "::/129".parse::<Ipv6Prefix>(),
            Err(LpmError::PrefixTooLong { len: 129, max: 128 })
        );
        assert!(Ipv6Prefix::truncating(Ipv6Addr::UNSPECIFIED, 129).is_err());
        assert!(Ipv6Prefix::new(Ipv6Addr::UNSPECIFIED, 255).is_err());
        assert!(Ipv6Prefix::from_bits(0, 129).is_err());
    }

    #[test]
    fn rejects_host_bits_and_names_the_prefix() {
        let err = "2001:db8:1::/32".parse::<Ipv6Prefix>().unwrap_err();
        assert_eq!(
            err,
            LpmError::HostBitsSet {
                addr: IpAddr::V6(a("2001:db8:1::")),
                len: 32,
                network: IpAddr::V6(a("2001:db8::")),
            }
        );
        assert_eq!(
            err.to_string(),
            "prefix 2001:db8:1::/32 has host bits set (the network is 2001:db8::/32)"
        );
        assert!("::1/0".parse::<Ipv6Prefix>().is_err());
        assert!("::1/127".parse::<Ipv6Prefix>().is_err());
        assert!("::2/127".parse::<Ipv6Prefix>().is_ok());
    }

    #[test]
    fn truncating_clears_host_bits() {
        let x = a("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff");
        assert_eq!(Ipv6Prefix::truncating(x, 32).unwrap(), p("2001:db8::/32"));
        assert_eq!(Ipv6Prefix::truncating(x, 0).unwrap(), p("::/0"));
        assert_eq!(
            Ipv6Prefix::truncating(x, 127).unwrap(),
            p("2001:db8:aaaa:bbbb:cccc:dddd:eeee:fffe/127")
        );
        assert_eq!(Ipv6Prefix::truncating(x, 128).unwrap(), Ipv6Prefix::from(x));
        assert_eq!(Ipv6Prefix::from_bits(u128::MAX, 1).unwrap(), p("8000::/1"));
    }

    #[test]
    fn contains() {
        let net = p("2001:db8::/32");
        assert!(net.contains(a("2001:db8::")));
        assert!(net.contains(a("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!net.contains(a("2001:db9::")));
        assert!(!net.contains(a("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(p("::/0").contains(a("ffff::1")));
        assert!(p("::1/128").contains_bits(1));
        assert!(!p("::1/128").contains_bits(0));
        // Prefixes that differ only in their last bit.
        assert!(!p("::/128").contains_bits(1));
        assert!(p("::/127").contains_bits(1));
    }
}
