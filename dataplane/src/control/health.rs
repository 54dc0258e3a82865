//! Tunnel health from the appliance's own in-tunnel probes (`pipeline::probe`), for
//! tunnels whose client runs no BGP (whose health BFD gives otherwise).
//!
//! Every `interval` the prober sends one probe into each probed tunnel and waits for its
//! reply until the next one is due. A reply to the outstanding probe (its nonce) makes the
//! tunnel `up`; a probe left unanswered is a miss: one or more misses make an `up` tunnel
//! `degraded`, `misses` in a row make it `down`. A tunnel starts `down` (nothing proves it
//! works yet) and comes up with its first reply. Replies to older probes (late, or
//! replayed) and replies naming no probe of ours prove nothing and change nothing.
//!
//! This is the state machine only, on a clock it is given: the exception path's thread
//! sends the probes and hands over the replies; the control side turns a tunnel that is
//! down into its fallback.

use crate::pipeline::probe::ProbeReply;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A tunnel's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Health {
    /// Its probes come back.
    Up,
    /// Some recent probes did not come back, fewer than the misses that make it down.
    Degraded,
    /// No reply to the last `misses` probes (or none yet).
    Down,
}

impl Health {
    pub const fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// One probed tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Its slot in the tables (probes carry it; a reply for another slot is not its).
    pub slot: u32,
    pub health: Health,
    /// When `health` last changed.
    pub since: Instant,
    /// Consecutive probes unanswered.
    pub misses: u32,
    /// The last round trip measured.
    pub rtt: Option<Duration>,
    pub sent: u64,
    pub replies: u64,
    pub lost: u64,
    /// Replies that named no outstanding probe of this tunnel (late, replayed, forged).
    pub stale: u64,
    /// The probe waiting for its reply: nonce, sequence number, when it was sent.
    outstanding: Option<(u32, u32, Instant)>,
    seq: u32,
    next: Instant,
}

/// A change of health, to log, count and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub tunnel: String,
    pub from: Health,
    pub to: Health,
}

/// What the prober shows the rest of the appliance: every probed tunnel as it last was, and
/// the changes the control thread has not taken yet.
#[derive(Debug, Default)]
pub struct ProbeBoard {
    pub tunnels: BTreeMap<String, Probed>,
    pub changes: Vec<Change>,
}

/// The prober's state machine for every probed tunnel.
#[derive(Debug)]
pub struct Prober {
    interval: Duration,
    misses: u32,
    tunnels: BTreeMap<String, Probed>,
    /// xorshift64* state for the nonces.
    rng: u64,
}

impl Prober {
    /// Probes every `interval`; down after `misses` in a row (at least 1). `seed` starts
    /// the nonces (any value; give one that differs between runs).
    pub fn new(interval: Duration, misses: u32, seed: u64) -> Self {
        Prober {
            interval,
            misses: misses.max(1),
            tunnels: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    fn nonce(&mut self) -> u32 {
        // xorshift64* (Vigna): good enough that a nonce cannot be guessed from the last
        // one seen on the wire without the state, which never leaves this process.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Probe exactly these tunnels (name, slot) from now on: new ones start `down`, gone
    /// ones are forgotten, a tunnel whose slot changed starts again.
    pub fn set_tunnels(&mut self, wanted: &[(String, u32)], now: Instant) {
        self.tunnels
            .retain(|name, p| wanted.iter().any(|(n, s)| n == name && *s == p.slot));
        for (name, slot) in wanted {
            self.tunnels.entry(name.clone()).or_insert(Probed {
                slot: *slot,
                health: Health::Down,
                since: now,
                misses: 0,
                rtt: None,
                sent: 0,
                replies: 0,
                lost: 0,
                stale: 0,
                outstanding: None,
                seq: 0,
                next: now,
            });
        }
    }

    /// The probes due at `now` (tunnel name and the probe to send), and the changes that
    /// the unanswered ones made. Call it often (every few milliseconds): a probe is due
    /// once per interval.
    pub fn due(&mut self, now: Instant, probes: &mut Vec<(String, ProbeReply)>) -> Vec<Change> {
        let mut changes = Vec::new();
        let names: Vec<String> = self
            .tunnels
            .iter()
            .filter(|(_, p)| now >= p.next)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let nonce = self.nonce();
            let (interval, max) = (self.interval, self.misses);
            let Some(p) = self.tunnels.get_mut(&name) else {
                continue;
            };
            if p.outstanding.take().is_some() {
                p.lost += 1;
                p.misses += 1;
                let to = if p.misses >= max {
                    Health::Down
                } else if p.health == Health::Up {
                    Health::Degraded
                } else {
                    p.health
                };
                if to != p.health {
                    changes.push(Change {
                        tunnel: name.clone(),
                        from: p.health,
                        to,
                    });
                    p.health = to;
                    p.since = now;
                }
            }
            p.seq = p.seq.wrapping_add(1);
            p.outstanding = Some((nonce, p.seq, now));
            p.sent += 1;
            // On the interval's grid: a late call does not shift every later probe.
            p.next = (p.next + interval).max(now);
            probes.push((
                name,
                ProbeReply {
                    slot: p.slot,
                    nonce,
                    seq: p.seq,
                    sent_ns: 0,
                },
            ));
        }
        changes
    }

    /// A reply arrived at `now`: the change it makes, if any.
    pub fn reply(&mut self, r: &ProbeReply, now: Instant) -> Option<Change> {
        let (name, p) = self.tunnels.iter_mut().find(|(_, p)| p.slot == r.slot)?;
        match p.outstanding {
            Some((nonce, seq, sent)) if nonce == r.nonce && seq == r.seq => {
                p.outstanding = None;
                p.replies += 1;
                p.misses = 0;
                p.rtt = Some(now.saturating_duration_since(sent));
                if p.health == Health::Up {
                    return None;
                }
                let c = Change {
                    tunnel: name.clone(),
                    from: p.health,
                    to: Health::Up,
                };
                p.health = Health::Up;
                p.since = now;
                Some(c)
            }
            _ => {
                p.stale += 1;
                None
            }
        }
    }

    /// Every probed tunnel, by name.
    pub fn tunnels(&self) -> &BTreeMap<String, Probed> {
        &self.tunnels
    }

    /// When the next probe is due (for the caller's sleep), if any tunnel is probed.
    pub fn next_due(&self) -> Option<Instant> {
        self.tunnels.values().map(|p| p.next).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn prober(now: Instant) -> Prober {
        let mut p = Prober::new(300 * MS, 3, 42);
        p.set_tunnels(&[("c".into(), 5)], now);
        p
    }

    /// Send what is due at `t` and return the probe for tunnel c.
    fn send(p: &mut Prober, t: Instant, changes: &mut Vec<Change>) -> Option<ProbeReply> {
        let mut out = Vec::new();
        changes.extend(p.due(t, &mut out));
        out.into_iter().find(|(n, _)| n == "c").map(|(_, r)| r)
    }

    #[test]
    fn down_until_the_first_reply_then_degraded_then_down_after_three_misses() {
        let t0 = Instant::now();
        let mut p = prober(t0);
        let mut ch = Vec::new();
        assert_eq!(p.tunnels()["c"].health, Health::Down);
        let probe = send(&mut p, t0, &mut ch).expect("due at once");
        assert_eq!(probe.slot, 5);
        // Not due again before the interval.
        assert!(send(&mut p, t0 + 299 * MS, &mut ch).is_none());
        let c = p.reply(&probe, t0 + 2 * MS).expect("up");
        assert_eq!((c.from, c.to), (Health::Down, Health::Up));
        assert_eq!(p.tunnels()["c"].rtt, Some(2 * MS));
        // Three probes go unanswered: degraded after the first miss, down at the third.
        for k in 1..=3u32 {
            let _ = send(&mut p, t0 + k * 300 * MS, &mut ch).expect("due");
        }
        let _ = send(&mut p, t0 + 1200 * MS, &mut ch).expect("due");
        let seen: Vec<(Health, Health)> = ch.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(
            seen,
            [
                (Health::Up, Health::Degraded),
                (Health::Degraded, Health::Down)
            ]
        );
        assert_eq!(p.tunnels()["c"].lost, 3);
        assert_eq!(p.tunnels()["c"].misses, 3);
        // The next reply brings it back.
        let probe = send(&mut p, t0 + 1500 * MS, &mut ch).expect("due");
        assert_eq!(
            p.reply(&probe, t0 + 1501 * MS).map(|c| c.to),
            Some(Health::Up)
        );
    }

    #[test]
    fn replies_that_name_no_outstanding_probe_change_nothing() {
        let t0 = Instant::now();
        let mut p = prober(t0);
        let mut ch = Vec::new();
        let first = send(&mut p, t0, &mut ch).expect("due");
        // A guessed nonce, another slot, an old sequence number: nothing.
        for forged in [
            ProbeReply {
                nonce: first.nonce ^ 1,
                ..first
            },
            ProbeReply { slot: 6, ..first },
            ProbeReply {
                seq: first.seq.wrapping_sub(1),
                ..first
            },
        ] {
            assert_eq!(p.reply(&forged, t0 + MS), None, "{forged:?}");
        }
        assert_eq!(p.tunnels()["c"].health, Health::Down);
        assert_eq!(p.tunnels()["c"].stale, 2, "slot 6 is no tunnel's");
        // The first probe's reply after the second was sent: late, no use.
        let _second = send(&mut p, t0 + 300 * MS, &mut ch).expect("due");
        assert_eq!(p.reply(&first, t0 + 301 * MS), None);
        assert_eq!(p.tunnels()["c"].health, Health::Down);
        // Nonces differ from probe to probe.
        let third = send(&mut p, t0 + 600 * MS, &mut ch).expect("due");
        assert_ne!(third.nonce, first.nonce);
    }

    #[test]
    fn tunnels_come_and_go_with_the_tables() {
        let t0 = Instant::now();
        let mut p = prober(t0);
        let mut ch = Vec::new();
        let probe = send(&mut p, t0, &mut ch).expect("due");
        p.reply(&probe, t0 + MS);
        // Same name and slot: kept as it is.
        p.set_tunnels(&[("c".into(), 5), ("d".into(), 9)], t0 + 10 * MS);
        assert_eq!(p.tunnels()["c"].health, Health::Up);
        assert_eq!(p.tunnels()["d"].health, Health::Down);
        // Slot changed (removed and added again): starts over.
        p.set_tunnels(&[("c".into(), 6)], t0 + 20 * MS);
        assert_eq!(p.tunnels()["c"].health, Health::Down);
        assert!(!p.tunnels().contains_key("d"));
    }
}
