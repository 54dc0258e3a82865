//! Neighbours on connected subnets, resolved by ARP on demand (CONFIG.md `[[route]]`, a
//! `port` without `next_hop`).
//!
//! A worker that finds a destination on a connected subnet without a MAC drops the packet
//! (`no_neighbor`) and notes the destination; the control thread hands it to [`OnDemand`]
//! ([`OnDemand::want`]), which asks for it by ARP, paced as the configured next hops are
//! (an [`ArpPacer`] of its own: at most one request a second per address, at most
//! [`ArpPacer::DEFAULT_RATE`] a second in all). What it learns:
//!
//! - a reply only if it asked for that address within the retry time
//!   ([`ArpPacer::take_solicited`]);
//! - a request addressed to us from a host on a connected subnet of the port (RFC 826's
//!   merge rule: the sender of a request for us is added or refreshed).
//!
//! The control thread never lets a learned entry replace a static one (it checks before
//! asking this module).
//!
//! Aging: an address asked for and not answered within [`OnDemand::UNANSWERED`] (three
//! requests) is given up. A resolved neighbour not heard from for [`OnDemand::REACHABLE`]
//! is asked for again (the control thread sends that request to the MAC it knows); one
//! that does not answer within [`OnDemand::UNANSWERED`] more is
//! forgotten (removed from the tables: a host that left is not kept). A neighbour whose
//! address no longer lies on a connected subnet of its port is forgotten at once.
//!
//! Bound: at most `limit` addresses (resolved and asked for together,
//! [`OnDemand::DEFAULT_LIMIT`] by default); past it new ones are refused and counted
//! (`arp_on_demand_full`), so a scan of a /16 costs counted drops, never memory.
//!
//! Pure logic over a clock the caller passes in, as the pacer is: tests call it with
//! made-up instants.

use super::arp::Heard;
use super::pacer::{ArpPacer, Ask};
use crate::tables::PortIndex;
use core::net::Ipv4Addr;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the module counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDemandCounters {
    /// Addresses taken for resolution.
    pub requested: u64,
    /// Addresses refused because `limit` addresses were held already.
    pub full: u64,
    /// Addresses resolved (a solicited reply, or a request from the host).
    pub resolved: u64,
    /// Addresses given up: asked for and never answered.
    pub unanswered: u64,
    /// Resolved neighbours forgotten: not answering any more, or no longer on a connected
    /// subnet.
    pub expired: u64,
    /// Replies for addresses it had not asked for (ignored).
    pub unsolicited: u64,
}

/// What [`OnDemand::heard`] decided about a neighbour heard by ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Learn it (new, or confirmed again); `waited`: how long since it was first asked
    /// for, when it was.
    Learn { waited: Option<Duration> },
    /// A reply nobody asked for: ignored.
    Unsolicited,
    /// No room: `limit` addresses are held already.
    Full,
}

/// An address held: asked for (pending) or resolved.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Our address to ask from.
    source: Ipv4Addr,
    /// Resolved: when last heard from; pending: when first asked for.
    since: Instant,
    resolved: bool,
}

/// The on-demand neighbours of the connected subnets.
#[derive(Debug)]
pub struct OnDemand {
    limit: usize,
    pacer: ArpPacer,
    entries: HashMap<(PortIndex, Ipv4Addr), Entry>,
    counters: OnDemandCounters,
}

impl OnDemand {
    /// Addresses held at most, resolved and pending together.
    pub const DEFAULT_LIMIT: usize = 4096;
    /// A resolved neighbour not heard from for this long is asked for again.
    pub const REACHABLE: Duration = Duration::from_secs(30);
    /// How long an address may go unanswered (three requests, one a second) before it is
    /// given up, or, resolved, forgotten.
    pub const UNANSWERED: Duration = Duration::from_secs(3);

    /// An empty table holding at most `limit` addresses.
    pub fn new(limit: usize, now: Instant) -> OnDemand {
        OnDemand {
            limit,
            pacer: ArpPacer::new(ArpPacer::DEFAULT_RATE, ArpPacer::DEFAULT_RETRY, now),
            entries: HashMap::new(),
            counters: OnDemandCounters::default(),
        }
    }

    /// A worker found no MAC for `ip` on `port`, which lies on a connected subnet whose
    /// ARP requests go from `source`: ask for it (unless it is held already). Returns
    /// false when it was refused for want of room.
    pub fn want(&mut self, port: PortIndex, ip: Ipv4Addr, source: Ipv4Addr, now: Instant) -> bool {
        if self.entries.contains_key(&(port, ip)) {
            return true;
        }
        if self.entries.len() >= self.limit {
            self.counters.full += 1;
            return false;
        }
        self.entries.insert(
            (port, ip),
            Entry {
                source,
                since: now,
                resolved: false,
            },
        );
        self.counters.requested += 1;
        true
    }

    /// `ip` on `port` (on a connected subnet, asked from `source`) was heard by ARP, as a
    /// reply to us or a request for one of our addresses.
    pub fn heard(
        &mut self,
        port: PortIndex,
        ip: Ipv4Addr,
        source: Ipv4Addr,
        how: Heard,
        now: Instant,
    ) -> Verdict {
        if how == Heard::Reply && !self.pacer.take_solicited(port, ip, now) {
            self.counters.unsolicited += 1;
            return Verdict::Unsolicited;
        }
        let full = self.entries.len() >= self.limit;
        let waited = match self.entries.get_mut(&(port, ip)) {
            Some(e) => {
                let waited = (!e.resolved).then(|| now.saturating_duration_since(e.since));
                e.resolved = true;
                e.since = now;
                waited
            }
            None if full => {
                self.counters.full += 1;
                return Verdict::Full;
            }
            None => {
                self.entries.insert(
                    (port, ip),
                    Entry {
                        source,
                        since: now,
                        resolved: true,
                    },
                );
                self.counters.resolved += 1;
                return Verdict::Learn { waited: None };
            }
        };
        if waited.is_some() {
            self.counters.resolved += 1;
        }
        Verdict::Learn { waited }
    }

    /// The ARP requests due now, appended to `out`: pending addresses, and resolved ones
    /// not heard from for [`Self::REACHABLE`], paced.
    pub fn due(&mut self, now: Instant, out: &mut Vec<Ask>) {
        let mut ask: Vec<Ask> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                !e.resolved || now.saturating_duration_since(e.since) >= Self::REACHABLE
            })
            .map(|(&(port, ip), e)| (port, ip, e.source))
            .collect();
        ask.sort_unstable();
        self.pacer.due(now, &ask, |_, _| false, out);
    }

    /// Give up what went unanswered and forget what left: pending addresses asked for
    /// [`Self::UNANSWERED`] ago, resolved ones not heard from for [`Self::REACHABLE`] plus
    /// [`Self::UNANSWERED`], and those `on_link` says are no longer on a connected subnet
    /// of their port. Returns the resolved ones forgotten (to remove from the tables).
    pub fn expire(
        &mut self,
        now: Instant,
        on_link: impl Fn(PortIndex, Ipv4Addr) -> bool,
    ) -> Vec<(PortIndex, Ipv4Addr)> {
        let mut gone = Vec::new();
        let counters = &mut self.counters;
        self.entries.retain(|&(port, ip), e| {
            let age = now.saturating_duration_since(e.since);
            let keep = on_link(port, ip)
                && if e.resolved {
                    age < Self::REACHABLE + Self::UNANSWERED
                } else {
                    age < Self::UNANSWERED
                };
            if !keep {
                if e.resolved {
                    counters.expired += 1;
                    gone.push((port, ip));
                } else {
                    counters.unanswered += 1;
                }
            }
            keep
        });
        gone.sort_unstable();
        gone
    }

    /// Whether `ip` on `port` is a resolved on-demand neighbour.
    pub fn is_resolved(&self, port: PortIndex, ip: Ipv4Addr) -> bool {
        self.entries.get(&(port, ip)).is_some_and(|e| e.resolved)
    }

    /// Addresses held: (resolved, pending).
    pub fn held(&self) -> (usize, usize) {
        let resolved = self.entries.values().filter(|e| e.resolved).count();
        (resolved, self.entries.len() - resolved)
    }

    /// The resolved neighbours, sorted, each with how long since it was last heard from.
    pub fn resolved(&self, now: Instant) -> Vec<(PortIndex, Ipv4Addr, Duration)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.resolved)
            .map(|(&(p, ip), e)| (p, ip, now.saturating_duration_since(e.since)))
            .collect();
        v.sort_unstable();
        v
    }

    /// What it counted.
    pub fn counters(&self) -> OnDemandCounters {
        self.counters
    }
}
