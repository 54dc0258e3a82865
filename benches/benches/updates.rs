//! Runtime updates, library side: what one route change costs the control thread at a full
//! table, and how long a full table from zebra takes to arrive.
//!
//! `cargo bench -p backbone-benches --bench updates` (or `-- --smoke`: 20,000 routes, a few
//! hundred samples, a few seconds; it fails if it measures nothing). It prints:
//!
//! - zebra's full table through the FPM path (`control::fpm`: frames cut from the stream,
//!   decoded, translated, applied and published in reads of 256 KiB as the listener does)
//!   into a table that has only the tunnels' prefixes: the time to converge (wall and the
//!   thread's CPU), publications, memory; then one route moved by an update frame (a removal
//!   and an addition); the same for the real IPv6 table (167,903 prefixes) on top;
//! - loading the real-world table (565k routes) from a configuration file: parse and
//!   validate, the first snapshot, memory;
//! - one route change through `ControlState::apply` (the control API's path: checked on its
//!   own, installed, published), replacing a route's target and adding then removing a
//!   prefix, and a batch of 1,000 changes;
//! - a tunnel added and removed at the full table (the whole document validated again).
//!
//! Each change is timed twice: the control thread's own CPU time (what this shared machine
//! gave other processes meanwhile is not in it) and the wall clock; the median, the 99th
//! percentile and the worst are printed.
//!
//! The API's side through the binary (over the socket, with workers forwarding meanwhile,
//! and the FPM feed over TCP) is `scripts/bench-updates.sh`.

use backbone_benches::ipv6::real_table_v6;
use backbone_benches::real_table;
use dataplane::control::fpm::netlink::{encode, Nexthop, RouteKind, RTM_DELROUTE, RTM_NEWROUTE};
use dataplane::control::fpm::{self, FpmCounters, Framer};
use dataplane::control::state::ControlState;
use dataplane::lpm::{Ipv4Prefix, Ipv6Prefix};
use dataplane::wire::EthernetAddress;
use pipeline_config::ConfigDocument;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TUNNELS: usize = 64;
/// Interface index of tunnel `t`'s host interface in the FPM feed.
const IFINDEX_BASE: u32 = 100;

/// The configuration text: one port, 64 tunnels, and `routes` routed to them.
fn config_text(routes: &[Ipv4Prefix]) -> String {
    let mut s = String::from(
        "[[port]]\nname = \"p0\"\ndevice = \"0\"\nroles = [\"client\"]\naddresses = [\"192.0.2.1\"]\n",
    );
    for t in 0..TUNNELS {
        let _ = write!(
            s,
            "[[tunnel]]\nname = \"t{t}\"\nmode = \"gre\"\nlocal = \"192.0.2.1\"\nremote = \"198.18.{}.{}\"\nkey = {t}\nport = \"p0\"\n",
            t / 250,
            1 + t % 250
        );
    }
    for (i, p) in routes.iter().enumerate() {
        let _ = write!(
            s,
            "[[route]]\nprefix = \"{p}\"\ntunnel = \"t{}\"\n",
            i % TUNNELS
        );
    }
    s
}

fn state(text: &str) -> ControlState {
    let (doc, cfg) = ConfigDocument::parse(text, "bench.toml").expect("valid");
    ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).expect("builds")
}

/// The process's resident memory, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One sample: the wall-clock time and the control thread's own CPU time (what another
/// process or thread on this shared machine took of the core in between is not in it).
#[derive(Debug, Clone, Copy, Default)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Time `f`.
fn took<T>(f: impl FnOnce() -> T) -> (T, Took) {
    let (w, c) = (Instant::now(), thread_cpu());
    let v = f();
    let t = Took {
        wall: w.elapsed(),
        cpu: thread_cpu().saturating_sub(c),
    };
    (v, t)
}

/// Median, 99th percentile and worst of `samples`.
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn spread(mut samples: Vec<Duration>) -> Spread {
    assert!(
        !samples.is_empty(),
        "no sample: the benchmark measured nothing"
    );
    samples.sort_unstable();
    let n = samples.len();
    Spread {
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        max: samples[n - 1],
        n,
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(what: &str, samples: &[Took]) {
    let cpu = spread(samples.iter().map(|t| t.cpu).collect());
    let wall = spread(samples.iter().map(|t| t.wall).collect());
    println!(
        "{what:<52} CPU median {:>7.1} us p99 {:>7.1} us max {:>8.1} us; wall median {:>7.1} us p99 {:>7.1} us ({} samples)",
        us(cpu.p50),
        us(cpu.p99),
        us(cpu.max),
        us(wall.p50),
        us(wall.p99),
        cpu.n
    );
    assert!(wall.max > Duration::ZERO, "{what}: nothing measured");
}

fn route_kind(t: usize) -> RouteKind {
    RouteKind::Unicast(vec![Nexthop {
        ifindex: Some(IFINDEX_BASE + t as u32),
        gateway: None,
    }])
}

/// zebra's side of the FPM connection, as the listener applies it: frames cut from the
/// stream, applied to the state and published, the retired snapshots reclaimed.
struct Zebra<'a> {
    st: &'a Mutex<ControlState>,
    framer: Framer,
    ifaces: HashMap<u32, String>,
    counters: FpmCounters,
}

impl Zebra<'_> {
    /// A feed of frames in reads of [`fpm::READ_BUFFER`], as the listener reads them.
    fn stream(&mut self, feed: &[u8]) {
        for chunk in feed.chunks(fpm::READ_BUFFER) {
            self.framer.push(chunk);
            let mut frames = Vec::new();
            while let Some(f) = self.framer.next_frame().expect("a well-framed feed") {
                frames.push(f);
            }
            fpm::apply(self.st, frames, &mut self.ifaces, &self.counters);
            self.st.lock().unwrap().reclaim();
        }
    }

    /// One frame, timed to its publication; fails unless it published.
    fn one(&mut self, frame: &[u8]) -> Took {
        let (g, t) = took(|| {
            self.framer.push(frame);
            let f = self
                .framer
                .next_frame()
                .expect("a well-framed frame")
                .expect("a whole frame");
            fpm::apply(self.st, vec![f], &mut self.ifaces, &self.counters)
        });
        assert!(g.is_some(), "the frame published");
        self.st.lock().unwrap().reclaim();
        t
    }

    fn publications(&self) -> u64 {
        self.counters
            .publications
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (routes_wanted, samples) = if smoke {
        (20_000, 300)
    } else {
        (usize::MAX, 3000)
    };
    // The real table, less what overlaps the tunnels' own remotes (198.18.0.0/15) and
    // their prefixes; each prefix once.
    let table: Vec<Ipv4Prefix> = real_table()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            !(p.contains(Ipv4Addr::new(198, 18, 0, 1)) || p.contains(Ipv4Addr::new(198, 19, 0, 1)))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(routes_wanted)
        .collect();
    let n = table.len();
    println!(
        "{} table: {n} routes over {TUNNELS} tunnels{}",
        if smoke {
            "part of the real"
        } else {
            "the real"
        },
        if smoke { " (--smoke)" } else { "" }
    );

    // zebra's full table over FPM into a table of tunnels only.
    let feed: Vec<u8> = table
        .iter()
        .enumerate()
        .flat_map(|(i, &p)| {
            encode::frame(&[encode::route(
                RTM_NEWROUTE,
                p,
                186,
                &route_kind(i % TUNNELS),
            )])
        })
        .collect();
    let rss0 = rss_mib();
    let st = Mutex::new(state(&config_text(&[])));
    st.lock().unwrap().begin_dynamic_epoch();
    let mut zebra = Zebra {
        st: &st,
        framer: Framer::default(),
        ifaces: (0..TUNNELS)
            .map(|t| (IFINDEX_BASE + t as u32, format!("bb-t{t}")))
            .collect(),
        counters: FpmCounters::default(),
    };
    let (t, cpu) = (Instant::now(), thread_cpu());
    zebra.stream(&feed);
    let converged = t.elapsed();
    let converged_cpu = thread_cpu().saturating_sub(cpu);
    let rss3 = rss_mib();
    let (installed, _) = st.lock().unwrap().dynamic_counts();
    assert_eq!(installed, n, "every route of the feed installed");
    let publications = zebra.publications();
    let probe = table[n / 2];
    let snap = std::sync::Arc::clone(st.lock().unwrap().snapshots().current());
    assert!(
        snap.routes().lookup(probe.addr()).is_some(),
        "the feed's routes are in the published table"
    );
    println!(
        "FPM: full table of {n} routes ({} MiB of frames) converged in {:.2} s ({:.2} s of CPU), \
         {publications} publications, {:.0} routes/s; memory +{:.0} MiB with the frames ({:.0} \
         MiB resident)",
        feed.len() >> 20,
        converged.as_secs_f64(),
        converged_cpu.as_secs_f64(),
        n as f64 / converged.as_secs_f64(),
        rss3 - rss0,
        rss3
    );
    assert!(
        converged > Duration::ZERO && publications > 0,
        "nothing measured"
    );

    // One route moved by zebra: a removal and an addition in one frame.
    let mut moved = Vec::with_capacity(samples);
    for i in 0..samples {
        let p = table[(i * 7919) % n];
        moved.push(zebra.one(&encode::frame(&[
            encode::route(RTM_DELROUTE, p, 186, &RouteKind::Unicast(vec![])),
            encode::route(RTM_NEWROUTE, p, 186, &route_kind((i + 7) % TUNNELS)),
        ])));
    }
    report(
        "FPM: one route moved (an update frame), to published",
        &moved,
    );

    // zebra's IPv6 table over FPM into the same state, then one IPv6 route moved: the
    // IPv6 table takes the changed prefixes (copy-on-write), as the IPv4 one does.
    let table6: Vec<Ipv6Prefix> = real_table_v6()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            let first = p.addr().segments()[0];
            first & 0xffc0 != 0xfe80 && first >> 8 != 0xff
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(routes_wanted)
        .collect();
    let n6 = table6.len();
    let route_kind6 = |t: usize| {
        RouteKind::<Ipv6Addr>::Unicast(vec![Nexthop {
            ifindex: Some(IFINDEX_BASE + t as u32),
            gateway: None,
        }])
    };
    let feed6: Vec<u8> = table6
        .iter()
        .enumerate()
        .flat_map(|(i, &p)| {
            encode::frame(&[encode::route6(
                RTM_NEWROUTE,
                p,
                186,
                &route_kind6(i % TUNNELS),
            )])
        })
        .collect();
    let before6 = zebra.publications();
    let t = Instant::now();
    zebra.stream(&feed6);
    let converged6 = t.elapsed();
    let publications6 = zebra.publications() - before6;
    let probe6 = table6[n6 / 2];
    let snap = std::sync::Arc::clone(st.lock().unwrap().snapshots().current());
    assert!(
        snap.routes6().lookup(probe6.addr()).is_some(),
        "the IPv6 feed's routes are in the published table"
    );
    println!(
        "FPM: IPv6 table of {n6} routes converged in {:.2} s, {publications6} publications, \
         {:.0} routes/s",
        converged6.as_secs_f64(),
        n6 as f64 / converged6.as_secs_f64()
    );
    assert!(publications6 > 0, "nothing measured");
    let mut moved6 = Vec::with_capacity(samples);
    for i in 0..samples {
        let p = table6[(i * 7919) % n6];
        moved6.push(zebra.one(&encode::frame(&[
            encode::route6(RTM_DELROUTE, p, 186, &RouteKind::Unicast(vec![])),
            encode::route6(RTM_NEWROUTE, p, 186, &route_kind6((i + 7) % TUNNELS)),
        ])));
    }
    report(
        "FPM: one IPv6 route moved (an update frame), to published",
        &moved6,
    );
    drop(zebra);
    drop(st);
    drop(feed);
    drop(feed6);

    // The table as a configuration file (the memory the FPM part freed is reused: the
    // growth shown is the least the table takes).
    let rss0 = rss_mib();
    let text = config_text(&table);
    let t = Instant::now();
    let (doc, cfg) = ConfigDocument::parse(&text, "bench.toml").expect("valid");
    let parsed = t.elapsed();
    let t = Instant::now();
    let mut st = ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))])
        .expect("builds");
    let built = t.elapsed();
    drop(text);
    let rss1 = rss_mib();
    println!(
        "load from a file: parse + validate {:.2} s, first snapshot {:.2} s, memory +{:.0} MiB \
         ({:.0} MiB resident)",
        parsed.as_secs_f64(),
        built.as_secs_f64(),
        rss1 - rss0,
        rss1
    );

    // One change at a time through the API's path.
    let mut replace = Vec::with_capacity(samples);
    for i in 0..samples {
        let p = table[(i * 7919) % n];
        let op = json!({"op": "set_route", "route": {"prefix": p.to_string(), "tunnel": format!("t{}", (i + 1) % TUNNELS)}});
        let (r, t) = took(|| st.apply(std::slice::from_ref(&op)));
        r.expect("a valid change");
        replace.push(t);
        st.reclaim();
    }
    report("API: one route's target replaced (set_route)", &replace);
    let mut add_remove = Vec::with_capacity(samples);
    for i in 0..samples {
        // 100.64/10 (shared address space) holds no route of the table.
        let p = format!("100.{}.{}.0/24", 64 + (i >> 8) % 64, i & 255);
        let add = json!({"op": "set_route", "route": {"prefix": p, "tunnel": format!("t{}", i % TUNNELS)}});
        let (r, t) = took(|| st.apply(std::slice::from_ref(&add)));
        r.expect("a valid change");
        add_remove.push(t);
        let remove = json!({"op": "remove_route", "prefix": p});
        let (r, t) = took(|| st.apply(std::slice::from_ref(&remove)));
        r.expect("a valid change");
        add_remove.push(t);
        st.reclaim();
    }
    report("API: a new prefix added, then removed", &add_remove);
    let mut batches = Vec::new();
    for b in 0..(samples / 100).max(3) {
        let ops: Vec<_> = (0..1000)
            .map(|i| {
                let p = table[(b * 1000 + i) * 31 % n];
                json!({"op": "set_route", "route": {"prefix": p.to_string(), "tunnel": format!("t{}", (b + i) % TUNNELS)}})
            })
            .collect();
        let (r, t) = took(|| st.apply(&ops));
        r.expect("valid changes");
        batches.push(t);
        st.reclaim();
    }
    report("API: a batch of 1,000 changes", &batches);

    // A tunnel added and removed: the whole document validated and the tables rebuilt.
    let mut tunnel = Vec::new();
    for i in 0..3 {
        let add = json!({"op": "add_tunnel", "tunnel": {"name": "new", "mode": "gre",
            "local": "192.0.2.1", "remote": "198.19.0.1", "key": 1000 + i, "port": "p0",
            "prefixes": ["100.127.0.0/16"]}});
        let t = Instant::now();
        st.apply(&[add]).expect("a valid tunnel");
        tunnel.push(t.elapsed());
        let t = Instant::now();
        st.apply(&[json!({"op": "remove_tunnel", "name": "new"})])
            .expect("a valid removal");
        tunnel.push(t.elapsed());
        st.reclaim();
    }
    let s = spread(tunnel);
    println!(
        "{:<52} median {:>8.1} ms  worst {:>8.1} ms",
        "API: a tunnel added or removed (whole validation)",
        s.p50.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3
    );
    drop(st);
}
