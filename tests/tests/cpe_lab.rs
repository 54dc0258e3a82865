//! The client-site lab (scripts/cpe-lab.sh) as a test: backbone as a client site's router
//! (CPE) with a primary and a backup tunnel to the carrier, and the Internet beside them.
//!
//! Checked, from the hosts' own pings and the CPE's counters and route lookups:
//! - both tunnels come up by their probes (keepalive-form probes that the carrier's side
//!   sends straight back);
//! - the site's host sits on the LAN's connected subnet (no route per host): traffic from
//!   the Internet to it, before it has said anything, finds no MAC, is dropped as
//!   `no_neighbor`, and the CPE asks for it by ARP on demand; the host's answer is learned
//!   (an `on-demand` neighbour), the time from the first packet to the resolved neighbour
//!   is reported, and the pings after it are answered;
//! - the site's host reaches another site's host through the primary tunnel, both ways
//!   (the primary's tx and rx counters grow by at least the pings);
//! - the site's host reaches a host of the Internet natively (the CPE's route is the WAN
//!   port, and the pings are answered);
//! - a host of the site sending from another site's address is dropped at the CPE and
//!   counted as `lan_spoofed`; nothing of it is answered;
//! - edge 1's tunnel side frozen (SIGSTOP of its endpoint) while the host pings the other
//!   site 20 times a second: the CPE moves the carrier's prefix to the backup tunnel within
//!   1 s (probes 200 ms x 3), the pings go on through it, and come back to the primary when
//!   it thaws; both edges frozen: to the Internet natively, and back. The replies come
//!   back natively in this lab (the carrier routes 10.5.1.0/24 through the Internet), so
//!   the pings show where the CPE sends the requests whatever the tunnels' state. The
//!   times are reported; the deadlines leave room for a loaded machine.
//! - a new WAN address given through `ctl wan-address`: every tunnel's local end moves to
//!   it; once the carrier's side follows (the lab's `wan` step), both tunnels come up again
//!   by their probes and the pings go through the primary, both ways, from the new address;
//! - the same with BGP instead of probes (LAB_BGP=1): FRR on the CPE, configured by
//!   `backbone frr-config`, holds eBGP with BFD with both edges inside the tunnels; both
//!   sessions come up, zebra's route reaches the appliance over FPM into the primary, the
//!   backup's path has local preference 50, the carrier hears only the site's prefix and
//!   prefers the primary; BFD moves the traffic to the backup, then to the Internet, and
//!   back.
//!
//! Needs root, network namespaces, /dev/net/tun and FRR (scripts/setup.sh). Where they are
//! missing the test fails and says why: it never skips.

use backbone_tests::lab::{
    fresh_counters as fresh_copy, ping_replies, signal, text, tunnel_counter, unix_now, Lab,
};
use backbone_tests::{wait_for, wait_until};
use serde_json::Value;
use std::ops::Deref;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lab of scripts/cpe-lab.sh, one at a time: the failover times mean something only on
/// a machine the other lab is not loading.
#[derive(Debug)]
struct CpeLab {
    lab: Lab,
    _one: std::sync::MutexGuard<'static, ()>,
}

static ONE_LAB: Mutex<()> = Mutex::new(());

impl CpeLab {
    fn up(bgp: bool) -> CpeLab {
        let one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let (tag, prefix) = if bgp {
            ("cpe-lab-bgp", "bbg")
        } else {
            ("cpe-lab", "bbc")
        };
        let env = [("LAB_BGP", if bgp { "1" } else { "0" }.to_owned())];
        CpeLab {
            lab: Lab::up("cpe-lab.sh", tag, prefix, &env, "backbone.log"),
            _one: one,
        }
    }

    /// `backbone ctl --json ARGS` of the CPE.
    fn ctl(&self, args: &[&str]) -> Value {
        self.lab
            .ctl_in("cpe", &self.lab.dir.join("ctl/control.sock"), args)
    }
}

impl Deref for CpeLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

/// What the CPE's tables do with `dst`: `"tunnel NAME"` or `"port NAME"`.
fn lookup(lab: &CpeLab, dst: &str) -> String {
    let v = lab.ctl(&["lookup", dst]);
    match (v["via"]["tunnel"].as_str(), v["via"]["port"].as_str()) {
        (Some(t), _) => format!("tunnel {t}"),
        (None, Some(p)) => format!("port {p}"),
        _ => format!("no route ({v})"),
    }
}

fn health(lab: &CpeLab, tunnel: &str) -> String {
    lab.ctl(&["tunnels"])["tunnels"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == tunnel).cloned())
        .map(|t| t["probe"]["health"].as_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "missing".into())
}

/// The CPE's counters from a copy every worker made after this call.
fn fresh_counters(lab: &CpeLab) -> Value {
    fresh_copy(|args| lab.ctl(args))
}

/// Pings answered, of `count` sent from the site's host `from` to `to`.
fn pings(lab: &CpeLab, from: &str, to: &str, count: u32) -> (usize, String) {
    let n = count.to_string();
    let out = lab.exec(
        "hs",
        &[
            "ping", "-n", "-c", &n, "-i", "0.2", "-W", "2", "-I", from, to,
        ],
    );
    let s = text(&out);
    (s.lines().filter(|l| l.contains("bytes from")).count(), s)
}

/// A `ping -D` running in the background, its replies read as they come.
struct Pinger {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pinger {
    fn start(lab: &CpeLab, from: &str, to: &str) -> Pinger {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-hs", lab.prefix)])
            .args(["ping", "-n", "-D", "-i", "0.05", "-W", "1", "-I", from, to])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("ping's stdout");
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        });
        Pinger {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The replies so far, as (unix time, sequence number).
    fn replies(&self) -> Vec<(f64, u64)> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        ping_replies(&lines.join("\n"))
    }

    fn answered_after(&self, t: f64) -> usize {
        self.replies().iter().filter(|r| r.0 > t).count()
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Freeze the named endpoints, wait for the CPE to send `dst` by `want`, run `check`;
/// thaw them, wait for it to come back to `back`. Pings go on meanwhile and must be
/// answered while frozen. Returns (failover, recovery) times.
fn fault(
    lab: &CpeLab,
    pinger: &Pinger,
    endpoints: &[&str],
    (dst, want, back): (&str, &str, &str),
    check: impl Fn(&CpeLab),
) -> (Duration, Duration) {
    let pids: Vec<String> = endpoints.iter().map(|e| lab.pid(e)).collect();
    for p in &pids {
        signal(p, "STOP");
    }
    let t = Instant::now();
    wait_until(
        Duration::from_secs(10),
        &format!("{dst} by {want} with {endpoints:?} frozen"),
        || lookup(lab, dst) == want,
    );
    let failover = t.elapsed();
    let moved = unix_now();
    wait_until(
        Duration::from_secs(10),
        &format!("pings answered by {want}"),
        || pinger.answered_after(moved) >= 10,
    );
    check(lab);
    for p in &pids {
        signal(p, "CONT");
    }
    let t = Instant::now();
    wait_until(
        Duration::from_secs(10),
        &format!("{dst} by {back} again"),
        || lookup(lab, dst) == back,
    );
    (failover, t.elapsed())
}

/// Both edges frozen: `other` natively out of wan0, then back into edge1 once they thaw.
/// Returns the failover time; the summary gets both.
fn both_frozen(lab: &CpeLab, pinger: &Pinger, other: &str, summary: &mut Vec<String>) -> Duration {
    let (to_native, from_native) = fault(
        lab,
        pinger,
        &["edge1", "edge2"],
        (other, "port wan0", "tunnel edge1"),
        |lab| assert_eq!(lab.ctl(&["lookup", other])["route"]["prefix"], "0.0.0.0/0"),
    );
    summary.push(format!(
        "both edges frozen: native through wan0 {:.2} s after, back into edge1 {:.2} s after \
         they thawed",
        to_native.as_secs_f64(),
        from_native.as_secs_f64()
    ));
    to_native
}

/// Within the second asked for (probes find a tunnel down in 0.6 s, BFD in 0.3 s); a loaded
/// machine gets a little more.
fn assert_failovers(to_backup: Duration, to_native: Duration) {
    for (what, t) in [("to the backup", to_backup), ("to native", to_native)] {
        assert!(
            t < Duration::from_millis(1500),
            "failover {what} took {:.2} s",
            t.as_secs_f64()
        );
    }
}

#[test]
fn cpe_lab_site_router_with_backup_tunnel_and_native_fallback() {
    let lab = CpeLab::up(false);
    let mut summary = Vec::new();
    const OTHER: &str = "10.1.0.10";
    const WWW: &str = "192.0.2.80";

    wait_until(
        Duration::from_secs(20),
        "both tunnels up by their probes",
        || health(&lab, "edge1") == "up" && health(&lab, "edge2") == "up",
    );
    assert_eq!(lookup(&lab, OTHER), "tunnel edge1");
    assert_eq!(lookup(&lab, WWW), "port wan0");
    let tunnels = lab.ctl(&["tunnels"]);
    let backup_of = |name: &str| {
        tunnels["tunnels"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == name).cloned())
            .map(|t| t["backup_of"].clone())
    };
    assert_eq!(backup_of("edge2"), Some(Value::from("edge1")), "{tunnels}");
    assert_eq!(backup_of("edge1"), Some(Value::Null), "{tunnels}");

    // The LAN is a connected subnet: the host is its own next hop, unknown until asked.
    const LAN_HOST: &str = "10.5.1.10";
    let via = lab.ctl(&["lookup", LAN_HOST])["via"].clone();
    assert_eq!(
        (&via["port"], &via["connected"], &via["next_hop"]),
        (
            &Value::from("lan0"),
            &Value::Bool(true),
            &Value::from(LAN_HOST)
        ),
        "{via}"
    );
    assert_eq!(via["next_hop_mac"], Value::Null, "nobody asked yet: {via}");
    let before = fresh_counters(&lab);
    // The first packet finds no MAC (its answer is lost): the time from sending it to
    // the resolved neighbour, read while the ping still waits (an upper bound: it counts
    // the start of `ip netns exec` and a `ctl` round trip).
    let t = Instant::now();
    let mut first = Command::new("ip")
        .args(["netns", "exec", &format!("{}-inet", lab.prefix)])
        .args(["ping", "-n", "-c", "1", "-W", "1", "-I", WWW, LAN_HOST])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    let mac = wait_for(
        Duration::from_secs(10),
        "the LAN host resolved on demand",
        || match lab.ctl(&["lookup", LAN_HOST])["via"]["next_hop_mac"].as_str() {
            Some(m) => Ok(m.to_owned()),
            None => Err(lab.ctl(&["counters"])["control"].to_string()),
        },
    );
    let resolved = t.elapsed();
    first.wait().expect("the first ping ends");
    let after = fresh_counters(&lab);
    let grew = |v: &Value, w: &Value| v.as_u64().unwrap_or(0) - w.as_u64().unwrap_or(0);
    let (c, b) = (&after["control"], &before["control"]);
    assert!(
        grew(
            &after["drops"]["no_neighbor"],
            &before["drops"]["no_neighbor"]
        ) >= 1
            && grew(&c["arp_on_demand_requested"], &b["arp_on_demand_requested"]) >= 1
            && grew(&c["arp_on_demand_resolved"], &b["arp_on_demand_resolved"]) >= 1,
        "the first packet dropped as no_neighbor, the host asked for and resolved:\n{}\n{c}",
        after["drops"]
    );
    let neighbors = lab.ctl(&["neighbors"]);
    assert!(
        neighbors["neighbors"].as_array().is_some_and(|a| a
            .iter()
            .any(|n| n["ip"] == LAN_HOST && n["on_demand"] == Value::Bool(true))),
        "{neighbors}"
    );
    let out = lab.exec(
        "inet",
        &[
            "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", WWW, LAN_HOST,
        ],
    );
    let got = text(&out)
        .lines()
        .filter(|l| l.contains("bytes from"))
        .count();
    assert!(
        got >= 2,
        "Internet host -> LAN host on the connected subnet:\n{}",
        text(&out)
    );
    summary.push(format!(
        "LAN host {LAN_HOST} on the connected subnet (no route of its own): resolved by ARP on \
         demand at {mac} {:.0} ms after the first packet, then {got} of 3 pings from the \
         Internet answered",
        resolved.as_secs_f64() * 1000.0
    ));

    // Through the primary, both ways: replies to 10.5.0.0/24 come back through edge 1.
    let before = fresh_counters(&lab);
    let (got, out) = pings(&lab, "10.5.0.10", OTHER, 5);
    assert!(
        got >= 4,
        "site host -> other site through the tunnel:\n{out}"
    );
    let after = fresh_counters(&lab);
    for f in ["tx_packets", "rx_packets"] {
        let d = tunnel_counter(&after, "edge1", f) - tunnel_counter(&before, "edge1", f);
        assert!(
            d >= got as u64,
            "edge1 {f} grew by {d} for {got} pings answered"
        );
    }
    summary.push(format!(
        "site host -> other site through edge1: {got} of 5 pings answered, edge1 tx +{} rx +{}",
        tunnel_counter(&after, "edge1", "tx_packets")
            - tunnel_counter(&before, "edge1", "tx_packets"),
        tunnel_counter(&after, "edge1", "rx_packets")
            - tunnel_counter(&before, "edge1", "rx_packets")
    ));

    // The Internet, natively.
    let (got, out) = pings(&lab, "10.5.0.10", WWW, 3);
    assert!(got >= 2, "site host -> Internet host natively:\n{out}");
    summary.push(format!(
        "site host -> Internet host natively (route: port wan0): {got} of 3 answered"
    ));

    // A host of the site sending as another site: dropped at the CPE, counted.
    let out = lab.exec("hs", &["ip", "addr", "add", "10.1.0.99/32", "dev", "lo"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = fresh_counters(&lab);
    let (got, out) = pings(&lab, "10.1.0.99", OTHER, 3);
    assert_eq!(got, 0, "a spoofed source was answered:\n{out}");
    let after = wait_for(Duration::from_secs(10), "lan_spoofed counted", || {
        let c = fresh_counters(&lab);
        let d = c["drops"]["lan_spoofed"].as_u64().unwrap_or(0)
            - before["drops"]["lan_spoofed"].as_u64().unwrap_or(0);
        if d >= 3 {
            Ok(d)
        } else {
            Err(format!("lan_spoofed +{d}: {}", c["drops"]))
        }
    });
    summary.push(format!(
        "site host sending as 10.1.0.99 (another site's): 3 pings, lan_spoofed +{after}"
    ));

    // Faults while the host pings the other site 20 times a second from 10.5.1.10.
    let pinger = Pinger::start(&lab, "10.5.1.10", OTHER);
    wait_until(Duration::from_secs(10), "the pings answered", || {
        pinger.answered_after(0.0) >= 5
    });
    let before = fresh_counters(&lab);
    let (to_backup, from_backup) = fault(
        &lab,
        &pinger,
        &["edge1"],
        (OTHER, "tunnel edge2", "tunnel edge1"),
        |lab| {
            // The operator's view: the primary down, its prefix carried by the backup.
            assert_eq!(health(lab, "edge1"), "down");
            let route = &lab.ctl(&["lookup", OTHER])["route"];
            assert_eq!(route["tunnel"], "edge2", "{route}");
            let routes = lab.ctl(&["routes"]);
            let rows = routes["routes"].as_array().cloned().unwrap_or_default();
            assert!(
                rows.iter().any(|r| r["prefix"] == "10.1.0.0/16"
                    && r["tunnel"] == "edge2"
                    && r["source"] == "tunnel (backup of edge1)"),
                "{routes}"
            );
        },
    );
    let after = fresh_counters(&lab);
    let via_backup = tunnel_counter(&after, "edge2", "tx_packets")
        - tunnel_counter(&before, "edge2", "tx_packets");
    assert!(via_backup >= 10, "edge2 carried only {via_backup} packets");
    summary.push(format!(
        "edge 1 frozen: into the backup edge2 {:.2} s after, back into edge1 {:.2} s after \
         it thawed (edge2 tx +{via_backup})",
        to_backup.as_secs_f64(),
        from_backup.as_secs_f64()
    ));
    let to_native = both_frozen(&lab, &pinger, OTHER, &mut summary);
    let replies = pinger.replies();
    let sent = replies.iter().map(|r| r.1).max().unwrap_or(0);
    let lost = sent.saturating_sub(replies.len() as u64);
    // A request sent into a frozen endpoint waits in its socket and goes on when it thaws:
    // answered, but late. Late: more than half a second after its turn (one every 50 ms
    // from the first reply's).
    let late = replies
        .first()
        .map(|&(t0, s0)| {
            replies
                .iter()
                .filter(|&&(t, s)| t - (t0 + s.saturating_sub(s0) as f64 * 0.05) > 0.5)
                .count()
        })
        .unwrap_or(0);
    summary.push(format!(
        "pings at 20/s through both faults: {} answered ({late} of them late, held in a \
         frozen endpoint), {lost} lost",
        replies.len()
    ));
    drop(pinger);

    // A new WAN address (a new lease), given through ctl: the tunnels re-source from it.
    let g = lab.ctl(&[
        "wan-address",
        "--port",
        "wan0",
        "203.0.113.5",
        "203.0.113.77",
    ]);
    assert!(g["generation"].as_u64().is_some(), "{g}");
    let tunnels = lab.ctl(&["tunnels"]);
    for t in tunnels["tunnels"].as_array().expect("tunnels") {
        assert_eq!(t["local"], "203.0.113.77", "{t}");
    }
    let t = Instant::now();
    let out = lab.script("wan 203.0.113.77");
    assert!(out.status.success(), "cpe-lab.sh wan: {}", text(&out));
    wait_until(
        Duration::from_secs(10),
        "both tunnels up again from the new address",
        || health(&lab, "edge1") == "up" && health(&lab, "edge2") == "up",
    );
    let rewan = t.elapsed();
    let before = fresh_counters(&lab);
    let (got, out) = pings(&lab, "10.5.0.10", OTHER, 3);
    assert!(got >= 2, "through edge1 from the new address:\n{out}");
    let after = fresh_counters(&lab);
    let d = tunnel_counter(&after, "edge1", "rx_packets")
        - tunnel_counter(&before, "edge1", "rx_packets");
    assert!(
        d >= got as u64,
        "edge1 rx grew by {d} for {got} pings answered"
    );
    summary.push(format!(
        "WAN address 203.0.113.5 -> 203.0.113.77 by ctl wan-address: both tunnels up again \
         {:.2} s after the carrier followed, {got} of 3 pings through edge1",
        rewan.as_secs_f64()
    ));

    assert_failovers(to_backup, to_native);
    eprintln!("== client-site lab\n{}", summary.join("\n"));
}

/// The same site with BGP instead of probes: FRR on the CPE runs what `backbone frr-config`
/// writes for a client site (eBGP with BFD with each edge inside its tunnel, the backup's
/// routes at local preference 50), zebra hands its choice to the appliance over FPM; BFD
/// (100 ms x 3) finds an edge's tunnel side frozen.
#[test]
fn cpe_lab_bgp_with_both_edges_and_the_backup_by_preference() {
    let lab = CpeLab::up(true);
    let mut summary = Vec::new();
    const OTHER: &str = "10.1.0.10";
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(60),
        "the CPE's sessions Established and BFD up",
        || lab.frr_sessions_up("cpe", &["169.254.5.1", "169.254.6.1"]),
    );
    summary.push(format!(
        "both sessions Established with BFD up {:.1} s after the lab came up",
        t0.elapsed().as_secs_f64()
    ));
    // zebra's choice reaches the appliance: the carrier's prefix into the primary.
    let route = wait_for(Duration::from_secs(30), "10.1.0.0/16 from zebra", || {
        let v = lab.ctl(&["lookup", OTHER]);
        if v["route"]["source"] == "frr" && v["via"]["tunnel"] == "edge1" {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(route["route"]["prefix"], "10.1.0.0/16", "{route}");
    // Both edges' paths at the CPE; the backup's at local preference 50. The backup
    // session's first update may come after the primary's: wait (30 s at most) until the
    // CPE has a path from each edge, then check them.
    let paths = wait_for(
        Duration::from_secs(30),
        "the CPE's paths to 10.1.0.0/16 from both edges",
        || {
            let v = lab
                .vtysh_json("cpe", "show bgp ipv4 unicast 10.1.0.0/16 json")
                .expect("the CPE's paths");
            let hops: Vec<&Value> = v["paths"]
                .as_array()
                .map(|a| a.iter().map(|p| &p["nexthops"][0]["ip"]).collect())
                .unwrap_or_default();
            if ["169.254.5.1", "169.254.6.1"]
                .iter()
                .all(|h| hops.iter().any(|x| *x == h))
            {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    );
    let by_hop = |hop: &str| {
        paths["paths"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["nexthops"][0]["ip"] == hop).cloned())
            .unwrap_or_else(|| panic!("no path via {hop}: {paths}"))
    };
    assert_eq!(by_hop("169.254.6.1")["locPrf"], 50, "{paths}");
    assert!(
        by_hop("169.254.5.1")["bestpath"]["overall"] == true,
        "the primary's path is the best: {paths}"
    );
    // The carrier hears the site's prefix, and only it, from each session, and prefers the
    // primary's (the backup's is prepended).
    // An established session's first update may still be on its way: wait until the
    // carrier has routes from the peer, then they must be exactly the site's prefix.
    for peer in ["169.254.5.0", "169.254.6.0"] {
        let (got, v) = wait_for(
            Duration::from_secs(30),
            &format!("the carrier's routes from {peer}"),
            || {
                let v = lab
                    .vtysh_json(
                        "carrier",
                        &format!("show bgp ipv4 unicast neighbors {peer} routes json"),
                    )
                    .expect("the carrier's routes");
                let got: Vec<String> = v["routes"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                if got.is_empty() {
                    Err(v.to_string())
                } else {
                    Ok((got, v))
                }
            },
        );
        assert_eq!(got, ["10.5.0.0/16"], "from {peer}: {v}");
    }
    let best = text(&lab.exec("carrier", &["ip", "route", "show", "10.5.0.0/16"]));
    assert!(
        best.contains("via 169.254.5.0 dev tun1"),
        "carrier's route: {best}"
    );
    let (got, out) = pings(&lab, "10.5.0.10", OTHER, 3);
    assert!(got >= 2, "site host -> other site through edge1:\n{out}");
    summary.push(
        "zebra's route to the other site into edge1 over FPM; the carrier hears 10.5.0.0/16 \
         only, preferring edge 1"
            .into(),
    );

    let pinger = Pinger::start(&lab, "10.5.1.10", OTHER);
    wait_until(Duration::from_secs(10), "the pings answered", || {
        pinger.answered_after(0.0) >= 5
    });
    let (to_backup, from_backup) = fault(
        &lab,
        &pinger,
        &["edge1"],
        (OTHER, "tunnel edge2", "tunnel edge1"),
        |lab| {
            let r = &lab.ctl(&["lookup", OTHER])["route"];
            assert_eq!(r["source"], "frr", "the backup's session's route: {r}");
        },
    );
    summary.push(format!(
        "edge 1 frozen: into the backup edge2 {:.2} s after, back into edge1 {:.2} s after it \
         thawed",
        to_backup.as_secs_f64(),
        from_backup.as_secs_f64()
    ));
    let to_native = both_frozen(&lab, &pinger, OTHER, &mut summary);
    let replies = pinger.replies();
    let sent = replies.iter().map(|r| r.1).max().unwrap_or(0);
    summary.push(format!(
        "pings at 20/s through both faults: {} answered, {} lost",
        replies.len(),
        sent.saturating_sub(replies.len() as u64)
    ));
    drop(pinger);
    assert_failovers(to_backup, to_native);
    eprintln!("== client-site lab, BGP\n{}", summary.join("\n"));
}
