//! Small value types of the configuration: each parses from the text the file holds
//! (`FromStr`) and prints back to it (`Display`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address, written `02:00:00:00:00:01` (six pairs of hex digits,
/// either case, separated by colons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the group bit (least significant bit of the first octet) is set:
    /// multicast and broadcast addresses, never a station's own.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether every octet is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// A station address: neither multicast (nor broadcast) nor all zeros.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }
}

/// Why a string is not a [`MacAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected six hex pairs separated by colons, like 02:00:00:00:00:01)")]
pub struct ParseMacError;

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(ParseMacError)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse()
            .map_err(|e: ParseMacError| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

/// Defines a keyword enum with its `FromStr`, `Display` and the list of accepted words.
macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word the configuration file uses.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { expected: Self::WORDS }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A word that is not one of a keyword's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of {}", quoted_list(expected))]
pub struct UnknownWord {
    pub expected: &'static [&'static str],
}

/// `"a", "b" or "c"`.
pub(crate) fn quoted_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

keyword_enum! {
    /// What a port faces (SPEC "Terms"). One port may carry several roles in a small lab.
    Role {
        /// Client routers: their tunnels arrive here.
        Client = "client",
        /// The other edge routers of the backbone.
        Core = "core",
        /// Best-effort native transit (on a client-site router: the WAN).
        Internet = "internet",
        /// The hosts of a client site (on a client-site router): native packets arriving
        /// here may carry only the site's own sources (`[site] prefixes`).
        Lan = "lan",
    }
}

keyword_enum! {
    /// How a tunnel encapsulates.
    TunnelMode {
        /// GRE (RFC 2784, RFC 2890), IP protocol 47.
        Gre = "gre",
        /// IP in IP (RFC 2003), IP protocol 4.
        Ipip = "ipip",
    }
}

keyword_enum! {
    /// The outer DF bit on encapsulation.
    Df {
        /// Always set (the default; RFC 2003 section 5.1, path MTU discovery).
        Set = "set",
        /// Copied from the inner header.
        Copy = "copy",
    }
}

keyword_enum! {
    /// How a worker polls its queues (`[workers] poll`).
    PollMode {
        /// Poll without pause while traffic comes; after a run of empty polls, sleep
        /// between polls (growing to `idle_sleep_max_us`) until a packet arrives (the
        /// default).
        Adaptive = "adaptive",
        /// Poll without pause whatever arrives: a whole core per worker, always (for
        /// benchmarks and the lowest latency at low load).
        Busy = "busy",
    }
}

/// The outer TTL on encapsulation: `ttl = 64` or `ttl = "inherit"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// This value, 1 to 255 (default 64).
    Fixed(u8),
    /// The inner packet's TTL (after its decrement).
    Inherit,
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ttl::Fixed(ttl) => write!(f, "{ttl}"),
            Ttl::Inherit => f.write_str("inherit"),
        }
    }
}

/// The outer DSCP on encapsulation (RFC 2983): `dscp = "copy"` or `dscp = 46`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dscp {
    /// Copied from the inner header (the default).
    Copy,
    /// This value, 0 to 63.
    Fixed(u8),
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dscp::Copy => f.write_str("copy"),
            Dscp::Fixed(dscp) => write!(f, "{dscp}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints() {
        let mac: MacAddr = "02:00:0A:bc:00:01".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0x0a, 0xbc, 0, 1]));
        assert_eq!(mac.to_string(), "02:00:0a:bc:00:01");
        assert!(mac.is_unicast());
    }

    #[test]
    fn mac_rejects_malformed() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "02-00-00-00-00-01",
            "2:00:00:00:00:01",
            "002:00:00:00:00:01",
            "02:00:00:00:00:0g",
            "+2:00:00:00:00:01",
            "02:00:00:00:00:01:",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(ParseMacError), "{bad:?}");
        }
    }

    #[test]
    fn mac_kinds() {
        assert!(MacAddr([0xff; 6]).is_multicast());
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr::default().is_zero());
        assert!(!MacAddr::default().is_unicast());
    }

    #[test]
    fn mac_serde_goes_through_the_string() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct T {
            mac: MacAddr,
        }
        let t: T = toml::from_str("mac = \"02:00:00:00:00:01\"").unwrap();
        assert_eq!(t.mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            toml::to_string(&t).unwrap().trim(),
            "mac = \"02:00:00:00:00:01\""
        );
        let err = toml::from_str::<T>("mac = \"nope\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nope\": not a MAC address"), "{err}");
    }

    #[test]
    fn keywords_round_trip() {
        for word in Role::WORDS {
            assert_eq!(word.parse::<Role>().unwrap().as_str(), *word);
        }
        assert_eq!("gre".parse::<TunnelMode>(), Ok(TunnelMode::Gre));
        assert_eq!("ipip".parse::<TunnelMode>(), Ok(TunnelMode::Ipip));
        assert_eq!("copy".parse::<Df>(), Ok(Df::Copy));
        assert_eq!(
            "GRE".parse::<TunnelMode>().unwrap_err().to_string(),
            "expected one of \"gre\" or \"ipip\""
        );
        assert_eq!(
            quoted_list(Role::WORDS),
            "\"client\", \"core\", \"internet\" or \"lan\""
        );
    }

    #[test]
    fn policies_print_as_written() {
        assert_eq!(Ttl::Fixed(64).to_string(), "64");
        assert_eq!(Ttl::Inherit.to_string(), "inherit");
        assert_eq!(Dscp::Copy.to_string(), "copy");
        assert_eq!(Dscp::Fixed(46).to_string(), "46");
    }
}
