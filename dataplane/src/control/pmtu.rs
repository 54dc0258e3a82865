//! Path MTUs the underlay reported for our tunnels, on the control thread (RFC 1191).
//!
//! The workers check each ICMP Fragmentation Needed about a tunnel packet against their
//! tables and hand over a [`PathMtuReport`] ([`crate::pipeline::pmtu`]). Here a report is
//! checked once more against the tables now (the tunnel may be gone or changed since), and
//! kept when it lowers the tunnel's MTU: the next snapshot bounds the tunnel by it
//! ([`SnapshotBuilder::path_mtu`]). Ten minutes later it expires and the tunnel is back to
//! its configured MTU, as Linux forgets a learned path MTU (`net.ipv4.route.mtu_expires`,
//! 600 s): if the path still cannot carry that, the underlay says so again. A tunnel that is
//! removed, or reconfigured to other addresses, mode or key, forgets its path MTU.
//!
//! Only decreases are taken: a report at or above the tunnel's MTU now changes nothing
//! (a larger path MTU is learned by expiry, never from a message anyone could forge).
//! Time is passed in, so that tests can move it.

use crate::pipeline::PathMtuReport;
use crate::tables::{Snapshot, SnapshotBuilder, TunnelKey};
use core::net::Ipv4Addr;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a reported path MTU holds (Linux's `mtu_expires` default).
pub const EXPIRY: Duration = Duration::from_secs(600);

/// A path MTU in force for one tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The tunnel's receive key when it was reported: a tunnel reconfigured to another one
    /// drops it.
    pub key: TunnelKey,
    /// The outer MTU in force (the report's, raised to the tunnel's floor).
    pub mtu: u16,
    /// The next-hop MTU the message gave.
    pub reported: u16,
    /// The router that sent it.
    pub from: Ipv4Addr,
    /// When it was reported, and when it expires.
    pub since: Instant,
    pub expires: Instant,
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tunnel's MTU comes down from `was` to `mtu` with the next snapshot.
    Lowered {
        tunnel: String,
        was: u16,
        mtu: u16,
        reported: u16,
        from: Ipv4Addr,
    },
    /// Nothing changes, for this reason.
    Ignored(&'static str),
}

/// The path MTUs in force, by tunnel name.
#[derive(Debug, Clone, Default)]
pub struct PathMtus {
    learned: HashMap<String, Learned>,
}

impl PathMtus {
    /// Take `report` against the tables now (`snap`, and the reports taken since it was
    /// built; the caller publishes them with [`PathMtus::apply`] once an outcome is
    /// `Lowered`). An `mtu` below the lowest this tunnel may take (a report checked against
    /// older tables) is raised to it.
    pub fn report(&mut self, snap: &Snapshot, report: &PathMtuReport, now: Instant) -> Outcome {
        let Some(t) = snap.tunnels().get(report.tunnel) else {
            return Outcome::Ignored("the tunnel is gone");
        };
        if t.config.remote != report.remote {
            return Outcome::Ignored("the tunnel's remote changed");
        }
        let mtu = report.mtu.max(t.config.path_mtu_floor());
        // Its MTU now: what `snap` has, or lower where a report not yet published says so.
        let key = t.config.key();
        let was = match self.learned.get(&t.config.name) {
            Some(l) if l.key == key => t.mtu.min(l.mtu),
            _ => t.mtu,
        };
        if mtu >= was {
            return Outcome::Ignored("not below the tunnel's MTU");
        }
        self.learned.insert(
            t.config.name.clone(),
            Learned {
                key,
                mtu,
                reported: report.reported,
                from: report.from,
                since: now,
                expires: now + EXPIRY,
            },
        );
        Outcome::Lowered {
            tunnel: t.config.name.clone(),
            was,
            mtu,
            reported: report.reported,
            from: report.from,
        }
    }

    /// Forget the path MTUs whose time is up; returns them, by tunnel name.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Learned)> {
        let due: Vec<String> = self
            .learned
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(n, _)| n.clone())
            .collect();
        let mut gone: Vec<(String, Learned)> = due
            .into_iter()
            .filter_map(|n| self.learned.remove_entry(&n))
            .collect();
        gone.sort_by(|a, b| a.0.cmp(&b.0));
        gone
    }

    /// Bound the tunnels of the next build by the path MTUs in force.
    pub fn apply(&self, builder: &mut SnapshotBuilder) {
        for (name, l) in &self.learned {
            builder.path_mtu(name, l.key, l.mtu);
        }
    }

    /// Forget the path MTUs of tunnels that are gone from `snap`, or are no longer the
    /// tunnel they were reported for (other addresses, mode or key).
    pub fn retain_tunnels(&mut self, snap: &Snapshot) {
        self.learned.retain(|name, l| {
            snap.tunnels()
                .by_name(name)
                .and_then(|id| snap.tunnels().get(id))
                .is_some_and(|t| t.config.key() == l.key)
        });
    }

    /// The path MTU in force for tunnel `name`.
    pub fn get(&self, name: &str) -> Option<&Learned> {
        self.learned.get(name)
    }

    /// How many tunnels have one.
    pub fn len(&self) -> usize {
        self.learned.len()
    }

    /// True when no tunnel has one.
    pub fn is_empty(&self) -> bool {
        self.learned.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{PortEntry, PortRoles, Tunnel, TunnelId, TunnelMode};
    use crate::wire::EthernetAddress;
    use std::sync::Arc;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

    fn builder(key: Option<u32>) -> SnapshotBuilder {
        let mut b = SnapshotBuilder::new();
        b.port(
            0,
            PortEntry {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                addrs: vec![LOCAL],
                addrs6: Vec::new(),
                mtu: 1600,
                roles: PortRoles {
                    client: true,
                    ..PortRoles::default()
                },
                transit: false,
                host_interface: false,
            },
        );
        let mut t = Tunnel::new("t", TunnelMode::Gre, LOCAL, REMOTE, 0);
        t.key = key;
        b.tunnel(t);
        b
    }

    fn report(mtu: u16) -> PathMtuReport {
        PathMtuReport {
            tunnel: TunnelId(0),
            remote: REMOTE,
            from: ROUTER,
            reported: mtu,
            mtu,
        }
    }

    /// Publish what `p` holds, as the control state does.
    fn rebuild(b: &mut SnapshotBuilder, p: &PathMtus) -> Arc<Snapshot> {
        let mut next = builder(None);
        p.apply(&mut next);
        b.adopt(next);
        b.build().unwrap()
    }

    #[test]
    fn a_report_lowers_once_and_expires_after_ten_minutes() {
        let mut b = builder(None);
        let snap = b.build().unwrap();
        let id = snap.tunnels().by_name("t").unwrap();
        // Configured MTU 1500 (the default), port 1600: the tunnel sends 1500.
        assert_eq!(snap.tunnels().get(id).unwrap().mtu, 1500);
        let mut p = PathMtus::default();
        let t0 = Instant::now();
        assert_eq!(
            p.report(&snap, &report(1400), t0),
            Outcome::Lowered {
                tunnel: "t".into(),
                was: 1500,
                mtu: 1400,
                reported: 1400,
                from: ROUTER
            }
        );
        let snap = rebuild(&mut b, &p);
        let e = snap.tunnels().get(id).unwrap();
        assert_eq!((e.mtu, e.path_mtu), (1400, Some(1400)));
        assert_eq!(snap.tunnels().hot(id).unwrap().inner_mtu(), 1400 - 24);
        // The same again, or more: nothing to lower.
        for m in [1400, 1450, 1500, 9000] {
            assert_eq!(
                p.report(&snap, &report(m), t0 + Duration::from_secs(1)),
                Outcome::Ignored("not below the tunnel's MTU"),
                "{m}"
            );
        }
        // Nothing expires a second early; at ten minutes it does.
        assert!(p.expire(t0 + EXPIRY - Duration::from_secs(1)).is_empty());
        assert_eq!(p.len(), 1);
        let gone = p.expire(t0 + EXPIRY);
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].0.as_str(), gone[0].1.mtu), ("t", 1400));
        assert!(p.is_empty());
        let snap = rebuild(&mut b, &p);
        let e = snap.tunnels().get(id).unwrap();
        assert_eq!(
            (e.mtu, e.path_mtu),
            (1500, None),
            "back to the configured MTU"
        );
    }

    #[test]
    fn a_lower_report_renews_the_expiry() {
        let mut b = builder(None);
        let snap = b.build().unwrap();
        let mut p = PathMtus::default();
        let t0 = Instant::now();
        p.report(&snap, &report(1400), t0);
        let snap = rebuild(&mut b, &p);
        let t1 = t0 + Duration::from_secs(300);
        assert!(matches!(
            p.report(&snap, &report(1300), t1),
            Outcome::Lowered {
                was: 1400,
                mtu: 1300,
                ..
            }
        ));
        assert!(p.expire(t0 + EXPIRY).is_empty(), "renewed at t1");
        assert_eq!(p.expire(t1 + EXPIRY).len(), 1);
    }

    #[test]
    fn reports_below_the_floor_are_raised_to_it() {
        // GRE with a key: 28 bytes of headers; 576 inside.
        let mut b = builder(Some(7));
        let snap = b.build().unwrap();
        for m in [0, 68, 500, 603] {
            assert!(
                matches!(
                    PathMtus::default().report(&snap, &report(m), Instant::now()),
                    Outcome::Lowered { mtu: 604, .. }
                ),
                "{m}"
            );
        }
        let mut p = PathMtus::default();
        p.report(&snap, &report(0), Instant::now());
        let mut next = builder(Some(7));
        p.apply(&mut next);
        b.adopt(next);
        let snap = b.build().unwrap();
        let hot = snap.tunnels().hot(TunnelId(0)).unwrap();
        assert_eq!((hot.mtu, hot.inner_mtu()), (604, 576));
    }

    #[test]
    fn a_changed_or_removed_tunnel_forgets_its_path_mtu() {
        let mut b = builder(Some(7));
        let snap = b.build().unwrap();
        let mut p = PathMtus::default();
        let now = Instant::now();
        p.report(&snap, &report(1400), now);
        // A report about another remote (the tunnel was changed after the worker's check).
        let mut other = report(1300);
        other.remote = Ipv4Addr::new(198, 51, 100, 99);
        assert_eq!(
            p.report(&snap, &other, now),
            Outcome::Ignored("the tunnel's remote changed")
        );
        let mut gone = report(1300);
        gone.tunnel = TunnelId(5);
        assert_eq!(
            p.report(&snap, &gone, now),
            Outcome::Ignored("the tunnel is gone")
        );
        // Same name, another key: the builder ignores the old path MTU, and so do we.
        let mut next = builder(Some(8));
        p.apply(&mut next);
        b.adopt(next);
        let snap = b.build().unwrap();
        let e = snap.tunnels().get(TunnelId(0)).unwrap();
        assert_eq!((e.mtu, e.path_mtu), (1500, None));
        p.retain_tunnels(&snap);
        assert!(p.get("t").is_none());
    }
}
