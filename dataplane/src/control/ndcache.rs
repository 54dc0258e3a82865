//! The IPv6 next hops' neighbours: what the control thread learns from Neighbor Discovery
//! (RFC 4861 7.2 and 7.3) as a router that keeps only what its routes need, and when it
//! solicits.
//!
//! Which next hops: those the snapshot wants ([`crate::tables::Snapshot::wanted6`]); a
//! worker hands over only what it hears about them, and the control thread checks again
//! against the current snapshot before asking this module.
//!
//! What is learned:
//! - a Neighbor Advertisement only as the answer to a solicitation we sent for that address
//!   within the retry time (its Solicited flag set, and
//!   [`crate::control::pacer::Pacer::take_solicited`]): anything else is `unsolicited` and
//!   changes nothing, so a forger on the link cannot redirect a next hop by advertising it
//!   (the same rule as ARP replies). For an entry we hold (RFC 4861 7.2.5): an answer with
//!   the Override flag, or with the MAC we hold, or with no target link-layer address
//!   option, confirms it (and an Override with another MAC replaces it); one without
//!   Override that gives another MAC is refused (`not_override`). An answer without a MAC
//!   for an address we do not hold is no answer (`no_lla`).
//! - a Neighbor Solicitation's source link-layer address, when its sender is a next hop we
//!   want (RFC 4861 7.2.3, as RFC 826's merge is for ARP): added, or replaced when it
//!   changed. It does not confirm reachability (RFC 4861 7.3.1); only an answer does.
//! - never over a static entry (`static_kept`): the caller says which entries are static.
//!
//! When it solicits ([`NdCache::due`], paced by an [`NdPacer`]: at most one solicitation a
//! second per address, [`NdPacer::DEFAULT_RATE`] a second in all, as ARP): an unresolved
//! next hop to its solicited-node multicast address, once a second for as long as a route
//! needs it (as ARP asks for its next hops); after [`NdCache::UNANSWERED`] without an answer
//! it is counted `unanswered` once, and logged, while the asking goes on. A learned next
//! hop not confirmed for [`NdCache::REACHABLE`] (RFC 4861's REACHABLE_TIME) is solicited
//! again, unicast to the MAC held (RFC 4861 7.3.3's probe); unanswered for
//! [`NdCache::UNANSWERED`] more (three probes, MAX_UNICAST_SOLICIT) it is forgotten
//! (`unreachable`): removed from the tables, so that the next hop is resolved afresh by
//! multicast and, meanwhile, its packets are dropped as `no_neighbor` rather than sent to a
//! MAC that no longer answers. A next hop no route needs any more is forgotten at once.
//!
//! Memory: entries only for wanted next hops, so bounded by the routes.
//!
//! Pure logic over a clock the caller passes in, as the pacer is: tests call it with
//! made-up instants.

use super::nd::Advert;
use super::pacer::{Ask, NdPacer};
use crate::tables::PortIndex;
use crate::wire::EthernetAddress;
use core::net::Ipv6Addr;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a worker heard about an IPv6 next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdHeard {
    /// It solicited one of our addresses, giving its MAC.
    Solicit(EthernetAddress),
    /// It advertised itself to us.
    Advert(Advert),
}

/// What [`NdCache::heard`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Install this MAC for the next hop (new, or changed).
    Learn(EthernetAddress),
    /// Confirmed reachable, or heard again as it is: nothing to install.
    Unchanged,
    /// Ignored, and counted for it.
    Ignored(Ignored),
}

/// Why a message about a next hop changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// An advertisement we had not asked for within the retry time (or not marked
    /// Solicited).
    Unsolicited,
    /// The next hop is a static neighbour.
    Static,
    /// An answer giving another MAC for an entry we hold, without the Override flag.
    NotOverride,
    /// An answer without a target link-layer address for an address we do not hold.
    NoLla,
}

/// What the module counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NdCounters {
    /// Next hops learned, or changed to another MAC.
    pub learned: u64,
    /// Advertisements nobody asked for: ignored.
    pub unsolicited: u64,
    /// Messages that would have changed a static neighbour: ignored.
    pub static_kept: u64,
    /// Answers with another MAC and no Override flag: ignored (RFC 4861 7.2.5).
    pub not_override: u64,
    /// Answers with no MAC for an address we do not hold: ignored.
    pub no_lla: u64,
    /// Next hops solicited for [`NdCache::UNANSWERED`] without an answer (once each time).
    pub unanswered: u64,
    /// Learned next hops forgotten for not answering their probes.
    pub unreachable: u64,
}

/// A solicitation to send: (port, target, our address to send it from, the MAC to send it
/// to: `None` for the target's solicited-node multicast group).
pub type Solicit = (PortIndex, Ipv6Addr, Ipv6Addr, Option<EthernetAddress>);

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: EthernetAddress,
    /// When it last answered us (or was first learned).
    confirmed: Instant,
}

/// What [`NdCache::expire`] let go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Learned next hops to remove from the tables: they stopped answering (or no route
    /// needs them any more).
    pub forgotten: Vec<(PortIndex, Ipv6Addr)>,
    /// Of those, the ones that stopped answering.
    pub unreachable: Vec<(PortIndex, Ipv6Addr)>,
    /// Next hops that just passed [`NdCache::UNANSWERED`] unresolved.
    pub unanswered: Vec<(PortIndex, Ipv6Addr)>,
}

/// The IPv6 next hops' learned neighbours, and when to solicit them.
#[derive(Debug)]
pub struct NdCache {
    pacer: NdPacer,
    learned: HashMap<(PortIndex, Ipv6Addr), Entry>,
    /// Unresolved next hops asked for: when first asked, and whether counted unanswered.
    pending: HashMap<(PortIndex, Ipv6Addr), (Instant, bool)>,
    counters: NdCounters,
}

impl NdCache {
    /// A learned next hop not confirmed for this long is probed (RFC 4861's
    /// REACHABLE_TIME, 30 s, as the on-demand ARP neighbours are).
    pub const REACHABLE: Duration = Duration::from_secs(30);
    /// Three solicitations, one a second (MAX_MULTICAST_SOLICIT, MAX_UNICAST_SOLICIT and
    /// RETRANS_TIMER of RFC 4861 10): unresolved so long, a next hop is counted
    /// unanswered; probed so long without an answer, it is forgotten.
    pub const UNANSWERED: Duration = Duration::from_secs(3);

    /// An empty cache with ARP's pacing ([`NdPacer::DEFAULT_RATE`],
    /// [`NdPacer::DEFAULT_RETRY`]).
    pub fn new(now: Instant) -> NdCache {
        NdCache {
            pacer: NdPacer::new(NdPacer::DEFAULT_RATE, NdPacer::DEFAULT_RETRY, now),
            learned: HashMap::new(),
            pending: HashMap::new(),
            counters: NdCounters::default(),
        }
    }

    /// A worker heard `how` about `ip` on `port`, a next hop the snapshot wants;
    /// `is_static`: whether it is a static neighbour.
    pub fn heard(
        &mut self,
        port: PortIndex,
        ip: Ipv6Addr,
        how: NdHeard,
        is_static: bool,
        now: Instant,
    ) -> Decision {
        if is_static {
            self.drop_entry(port, ip);
            self.counters.static_kept += 1;
            return Decision::Ignored(Ignored::Static);
        }
        let key = (port, ip);
        let advert = match how {
            NdHeard::Solicit(mac) => {
                return match self.learned.get_mut(&key) {
                    Some(e) if e.mac == mac => Decision::Unchanged,
                    Some(e) => {
                        e.mac = mac;
                        self.counters.learned += 1;
                        Decision::Learn(mac)
                    }
                    None => self.learn(key, mac, now),
                };
            }
            NdHeard::Advert(a) => a,
        };
        if !advert.solicited || !self.pacer.take_solicited(port, ip, now) {
            self.counters.unsolicited += 1;
            return Decision::Ignored(Ignored::Unsolicited);
        }
        match (self.learned.get_mut(&key), advert.mac) {
            (None, Some(mac)) => self.learn(key, mac, now),
            (None, None) => {
                self.counters.no_lla += 1;
                Decision::Ignored(Ignored::NoLla)
            }
            (Some(e), mac) if mac.is_none() || mac == Some(e.mac) => {
                e.confirmed = now;
                Decision::Unchanged
            }
            (Some(e), Some(mac)) if advert.override_ => {
                e.mac = mac;
                e.confirmed = now;
                self.counters.learned += 1;
                Decision::Learn(mac)
            }
            (Some(_), _) => {
                self.counters.not_override += 1;
                Decision::Ignored(Ignored::NotOverride)
            }
        }
    }

    fn learn(
        &mut self,
        key: (PortIndex, Ipv6Addr),
        mac: EthernetAddress,
        now: Instant,
    ) -> Decision {
        self.learned.insert(
            key,
            Entry {
                mac,
                confirmed: now,
            },
        );
        self.pending.remove(&key);
        self.counters.learned += 1;
        Decision::Learn(mac)
    }

    /// The solicitations due now, appended to `out`: for the next hops of `wanted` (the
    /// snapshot's [`crate::tables::Snapshot::wanted6`]) that `known` says are unknown, to
    /// their solicited-node group; for those learned here and not confirmed for
    /// [`Self::REACHABLE`], to the MAC held. Static neighbours are never solicited. Paced.
    pub fn due(
        &mut self,
        now: Instant,
        wanted: &[Ask<Ipv6Addr>],
        known: impl Fn(PortIndex, Ipv6Addr) -> bool,
        out: &mut Vec<Solicit>,
    ) {
        let (learned, pending) = (&self.learned, &mut self.pending);
        let ask: Vec<Ask<Ipv6Addr>> = wanted
            .iter()
            .copied()
            .filter(|&(port, ip, _)| match learned.get(&(port, ip)) {
                Some(e) => now.saturating_duration_since(e.confirmed) >= Self::REACHABLE,
                None if known(port, ip) => {
                    // Static (or resolved elsewhere): nothing to ask, nothing pending.
                    pending.remove(&(port, ip));
                    false
                }
                None => true,
            })
            .collect();
        let mut asked = Vec::new();
        self.pacer.due(now, &ask, |_, _| false, &mut asked);
        for (port, ip, from) in asked {
            let to = self.learned.get(&(port, ip)).map(|e| e.mac);
            if to.is_none() {
                self.pending.entry((port, ip)).or_insert((now, false));
            }
            out.push((port, ip, from, to));
        }
    }

    /// Forget the learned next hops that stopped answering (probed for
    /// [`Self::UNANSWERED`] after [`Self::REACHABLE`]) or that `wanted` says no route needs
    /// any more, and count the unresolved ones that passed [`Self::UNANSWERED`].
    pub fn expire(
        &mut self,
        now: Instant,
        wanted: impl Fn(PortIndex, Ipv6Addr) -> bool,
    ) -> Expired {
        let mut out = Expired::default();
        let counters = &mut self.counters;
        self.learned.retain(|&(port, ip), e| {
            let needed = wanted(port, ip);
            let answering =
                now.saturating_duration_since(e.confirmed) < Self::REACHABLE + Self::UNANSWERED;
            if !needed || !answering {
                out.forgotten.push((port, ip));
                if needed {
                    counters.unreachable += 1;
                    out.unreachable.push((port, ip));
                }
            }
            needed && answering
        });
        self.pending.retain(|&(port, ip), (since, counted)| {
            if !wanted(port, ip) {
                return false;
            }
            if !*counted && now.saturating_duration_since(*since) >= Self::UNANSWERED {
                *counted = true;
                counters.unanswered += 1;
                out.unanswered.push((port, ip));
            }
            true
        });
        out.forgotten.sort_unstable();
        out.unreachable.sort_unstable();
        out.unanswered.sort_unstable();
        out
    }

    /// Forget what is held of a next hop (it became static).
    fn drop_entry(&mut self, port: PortIndex, ip: Ipv6Addr) {
        self.learned.remove(&(port, ip));
        self.pending.remove(&(port, ip));
    }

    /// The MAC learned for a next hop, if any.
    pub fn learned(&self, port: PortIndex, ip: Ipv6Addr) -> Option<EthernetAddress> {
        self.learned.get(&(port, ip)).map(|e| e.mac)
    }

    /// Next hops held: (learned, asked for and unresolved).
    pub fn held(&self) -> (usize, usize) {
        (self.learned.len(), self.pending.len())
    }

    /// Scans that found a due solicitation but no budget left.
    pub fn deferred(&self) -> u64 {
        self.pacer.deferred()
    }

    /// What it counted.
    pub fn counters(&self) -> NdCounters {
        self.counters
    }
}
