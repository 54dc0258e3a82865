//! When to ask for unresolved next hops: at most once a second each, and at most a fixed
//! number of requests a second in all (ARP requests for IPv4 next hops, Neighbor
//! Solicitations for IPv6 ones: one [`Pacer`] of each, [`ArpPacer`] and [`NdPacer`], with
//! the same limits), round robin, so that a table with 100,000
//! unresolved next hops neither floods the links with requests nor starves the last of them,
//! and the control thread's memory stays bounded by what it asked for in the last second.
//!
//! Pure logic over a clock the caller passes in: the control thread calls [`ArpPacer::due`]
//! on its tick, tests call it with made-up instants.

use crate::tables::PortIndex;
use core::hash::Hash;
use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A next hop to ask for: (port, next hop, our address to ask from).
pub type Ask<A = Ipv4Addr> = (PortIndex, A, A);

/// Paces ARP requests for unresolved IPv4 next hops.
pub type ArpPacer = Pacer<Ipv4Addr>;

/// Paces Neighbor Solicitations for unresolved IPv6 next hops (RFC 4861 7.2.2's
/// RetransTimer of one second per address, and a rate for all of them together).
pub type NdPacer = Pacer<Ipv6Addr>;

/// Paces requests for unresolved next hops whose addresses are `A`s.
#[derive(Debug)]
pub struct Pacer<A> {
    /// Least time between two requests for one next hop.
    retry: Duration,
    /// Requests a second, all next hops together.
    rate: u32,
    /// Most requests at once after a quiet spell.
    burst: u32,
    /// Requests that may be sent now (fractional: the bucket refills continuously).
    tokens: f64,
    last_refill: Instant,
    /// Where the next scan of the wanted list starts (round robin).
    cursor: usize,
    /// When each next hop was last asked for, within the last `retry`: older entries are
    /// forgotten, so this holds at most `rate * retry + burst` entries.
    asked: HashMap<(PortIndex, A), Instant>,
    /// Next hops that were due but waited for the budget (summed over scans).
    deferred: u64,
}

impl<A: Copy + Eq + Hash> Pacer<A> {
    /// Requests a second the control thread sends by default, all ports together.
    pub const DEFAULT_RATE: u32 = 1000;
    /// Requests for one next hop: at most one a second.
    pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);

    /// A pacer with a full bucket at `now`.
    pub fn new(rate: u32, retry: Duration, now: Instant) -> Pacer<A> {
        let rate = rate.max(1);
        let burst = (rate / 10).max(1);
        Pacer {
            retry,
            rate,
            burst,
            tokens: f64::from(burst),
            last_refill: now,
            cursor: 0,
            asked: HashMap::new(),
            deferred: 0,
        }
    }

    /// Next hops due now, appended to `out`: those of `wanted` (sorted, each once, as
    /// [`crate::tables::Snapshot::wanted`] gives them) that `resolved` says are unknown and
    /// that were not asked for within the retry time, as many as the budget allows, starting
    /// where the last call stopped. Each one returned counts as asked.
    pub fn due(
        &mut self,
        now: Instant,
        wanted: &[Ask<A>],
        resolved: impl Fn(PortIndex, A) -> bool,
        out: &mut Vec<Ask<A>>,
    ) {
        let elapsed = now.saturating_duration_since(self.last_refill);
        self.last_refill = now;
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * f64::from(self.rate)).min(f64::from(self.burst));
        let retry = self.retry;
        self.asked
            .retain(|_, t| now.saturating_duration_since(*t) < retry);
        if wanted.is_empty() {
            self.cursor = 0;
            return;
        }
        let start = self.cursor % wanted.len();
        for i in 0..wanted.len() {
            let at = (start + i) % wanted.len();
            let (port, ip, from) = wanted[at];
            if resolved(port, ip) || self.asked.contains_key(&(port, ip)) {
                continue;
            }
            if self.tokens < 1.0 {
                // Out of budget: the rest waits, and the next scan starts here.
                self.cursor = at;
                self.deferred += 1;
                return;
            }
            self.tokens -= 1.0;
            self.asked.insert((port, ip), now);
            out.push((port, ip, from));
        }
        self.cursor = start;
    }

    /// Whether we asked for `ip` on `port` within the retry time, and if so forget it: a
    /// reply is taken once per request, so a second answer (a forger racing the real
    /// neighbour) changes nothing until we ask again.
    pub fn take_solicited(&mut self, port: PortIndex, ip: A, now: Instant) -> bool {
        match self.asked.get(&(port, ip)) {
            Some(&t) if now.saturating_duration_since(t) < self.retry => {
                self.asked.remove(&(port, ip));
                true
            }
            _ => false,
        }
    }

    /// How many next hops it remembers asking for (bounded by the rate and retry time).
    pub fn remembered(&self) -> usize {
        self.asked.len()
    }

    /// Scans that found a due next hop but no budget left.
    pub fn deferred(&self) -> u64 {
        self.deferred
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_replies_to_what_we_asked_for_are_solicited() {
        let t0 = Instant::now();
        let mut p = ArpPacer::new(1000, Duration::from_secs(1), t0);
        let a = hop(1);
        assert!(!p.take_solicited(a.0, a.1, t0), "nothing asked yet");
        let mut out = Vec::new();
        p.due(t0, &[a], |_, _| false, &mut out);
        assert_eq!(out, vec![a]);
        assert!(!p.take_solicited(a.0, hop(2).1, t0), "another address");
        assert!(!p.take_solicited(1, a.1, t0), "another port");
        let later = t0 + Duration::from_millis(300);
        assert!(p.take_solicited(a.0, a.1, later), "the answer");
        assert!(!p.take_solicited(a.0, a.1, later), "a second answer");
        // Asked again after the retry time; an answer after another retry time is late.
        let t1 = t0 + Duration::from_millis(1500);
        out.clear();
        p.due(t1, &[a], |_, _| false, &mut out);
        assert_eq!(out, vec![a]);
        assert!(
            !p.take_solicited(a.0, a.1, t1 + Duration::from_secs(1)),
            "too late"
        );
    }

    use super::*;
    use std::collections::HashSet;

    fn hop(i: u32) -> Ask {
        (
            PortIndex::from(0u16),
            Ipv4Addr::from(0x0a00_0000 + i),
            Ipv4Addr::new(192, 0, 2, 1),
        )
    }

    #[test]
    fn one_next_hop_is_asked_for_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut p = ArpPacer::new(1000, Duration::from_secs(1), t0);
        let wanted = [hop(1)];
        let mut asks = 0;
        // A tick every 5 ms for 10.5 s.
        for ms in (0..10_500).step_by(5) {
            let mut out = Vec::new();
            p.due(
                t0 + Duration::from_millis(ms),
                &wanted,
                |_, _| false,
                &mut out,
            );
            asks += out.len();
        }
        assert_eq!(asks, 11, "at 0, 1, ..., 10 s");
    }

    #[test]
    fn resolved_next_hops_are_never_asked_for() {
        let t0 = Instant::now();
        let mut p = ArpPacer::new(1000, Duration::from_secs(1), t0);
        let wanted: Vec<Ask> = (0..100).map(hop).collect();
        let mut out = Vec::new();
        for ms in (0..3000).step_by(5) {
            p.due(
                t0 + Duration::from_millis(ms),
                &wanted,
                |_, ip| u32::from(ip) % 2 == 0,
                &mut out,
            );
        }
        assert!(!out.is_empty());
        assert!(out.iter().all(|a| u32::from(a.1) % 2 == 1), "{out:?}");
    }

    #[test]
    fn a_hundred_thousand_unresolved_next_hops_are_asked_for_at_the_budget_and_all_in_turn() {
        let t0 = Instant::now();
        let rate = 1000;
        let mut p = ArpPacer::new(rate, Duration::from_secs(1), t0);
        let wanted: Vec<Ask> = (0..100_000).map(hop).collect();
        let mut per_second = vec![0u32; 101];
        let mut first_ask: HashSet<Ipv4Addr> = HashSet::new();
        let mut last: HashMap<Ipv4Addr, Duration> = HashMap::new();
        let mut max_remembered = 0;
        // 100.5 s of 5 ms ticks.
        for ms in (0..100_500u64).step_by(5) {
            let now = Duration::from_millis(ms);
            let mut out = Vec::new();
            p.due(t0 + now, &wanted, |_, _| false, &mut out);
            per_second[(ms / 1000) as usize] += out.len() as u32;
            for (_, ip, _) in out {
                if let Some(prev) = last.insert(ip, now) {
                    assert!(
                        now - prev >= Duration::from_secs(1),
                        "{ip} asked twice in 1 s"
                    );
                }
                first_ask.insert(ip);
            }
            max_remembered = max_remembered.max(p.remembered());
        }
        // Never more than the rate (plus the first burst) in any second.
        let burst = rate / 10;
        assert!(per_second[0] <= rate + burst, "{:?}", &per_second[..3]);
        assert!(
            per_second[1..100]
                .iter()
                .all(|&n| n <= rate && n >= rate - 10),
            "requests per second: {per_second:?}"
        );
        // Round robin: in 100 s at 1000/s, every one of the 100,000 was asked for.
        assert_eq!(first_ask.len(), 100_000, "next hops never asked for");
        // Memory: what was asked for in the last second, not what is unresolved.
        assert!(
            max_remembered <= (rate + burst) as usize,
            "remembered {max_remembered}"
        );
        assert!(p.deferred() > 0);
    }

    #[test]
    fn a_shrinking_table_moves_the_cursor_safely() {
        let t0 = Instant::now();
        let mut p = ArpPacer::new(10, Duration::from_secs(1), t0);
        let big: Vec<Ask> = (0..1000).map(hop).collect();
        let mut out = Vec::new();
        for ms in (0..2000).step_by(5) {
            p.due(t0 + Duration::from_millis(ms), &big, |_, _| false, &mut out);
        }
        let small: Vec<Ask> = (0..3).map(hop).collect();
        out.clear();
        for ms in (2000..4000).step_by(5) {
            p.due(
                t0 + Duration::from_millis(ms),
                &small,
                |_, _| false,
                &mut out,
            );
        }
        assert!(out.iter().all(|a| small.contains(a)));
        assert!(out.len() >= 3, "{out:?}");
        p.due(t0 + Duration::from_secs(5), &[], |_, _| false, &mut out);
    }
}
