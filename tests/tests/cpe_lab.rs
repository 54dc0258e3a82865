//! The client-site lab (scripts/cpe-lab.sh) as a test: backbone as a client site's router
//! (CPE) with a primary and a backup tunnel to the carrier, and the Internet beside them.
//!
//! Checked, from the hosts' own pings and the CPE's counters and route lookups:
//! - both tunnels come up by their probes (keepalive-form probes that the carrier's side
//!   sends straight back);
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

use backbone_tests::{backbone_bin, repo_root, scratch_dir, wait_for, wait_until};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[derive(Debug)]
struct Lab {
    dir: PathBuf,
    prefix: String,
    backbone: PathBuf,
    bgp: bool,
    /// One lab at a time: the failover times mean something only on a machine the other
    /// lab is not loading.
    _one: std::sync::MutexGuard<'static, ()>,
}

static ONE_LAB: Mutex<()> = Mutex::new(());

impl Lab {
    fn script(&self, cmd: &str) -> Output {
        Command::new(repo_root().join("scripts/cpe-lab.sh"))
            .args(cmd.split(' '))
            .env("LAB_DIR", &self.dir)
            .env("LAB_PREFIX", &self.prefix)
            .env("BACKBONE", &self.backbone)
            .env("LAB_BGP", if self.bgp { "1" } else { "0" })
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cpe-lab.sh")
    }

    fn up(bgp: bool) -> Lab {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
            "the client-site lab needs root (namespaces, TUN)"
        );
        let one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let tag = if bgp { "cpe-lab-bgp" } else { "cpe-lab" };
        let lab = Lab {
            dir: scratch_dir(tag),
            prefix: format!(
                "bb{}{}",
                if bgp { 'g' } else { 'c' },
                std::process::id() % 100_000
            ),
            backbone: backbone_bin(),
            bgp,
            _one: one,
        };
        let out = lab.script("up");
        assert!(
            out.status.success(),
            "scripts/cpe-lab.sh up failed:\n{}\nappliance log:\n{}",
            text(&out),
            std::fs::read_to_string(lab.dir.join("backbone.log")).unwrap_or_default()
        );
        lab
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    fn ctl(&self, args: &[&str]) -> Value {
        let sock = self.dir.join("ctl/control.sock");
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-cpe", self.prefix)])
            .arg(&self.backbone)
            .arg("ctl")
            .arg(format!("--socket={}", sock.display()))
            .arg("--json")
            .args(args)
            .output()
            .expect("backbone ctl");
        assert!(out.status.success(), "ctl {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("ctl JSON")
    }

    fn vtysh_json(&self, ns: &str, cmd: &str) -> Result<Value, String> {
        let inst = format!("{}-{ns}", self.prefix);
        let out = self.exec(ns, &["vtysh", "-N", &inst, "-c", cmd]);
        if !out.status.success() {
            return Err(format!("vtysh {cmd}: {}", text(&out)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("vtysh {cmd}: {e}: {}", text(&out)))
    }

    /// The PID the lab script recorded for one of its processes.
    fn pid(&self, name: &str) -> String {
        let f = self.dir.join(format!("pids/{name}.pid"));
        let s = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        s.lines().next().unwrap_or_default().trim().to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.script("down");
        eprintln!("lab torn down:\n{}", text(&out));
        eprintln!("state and logs kept in {}", self.dir.display());
    }
}

fn signal(pid: &str, sig: &str) {
    let out = Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .output()
        .expect("kill");
    assert!(out.status.success(), "kill -{sig} {pid}: {}", text(&out));
}

/// What the CPE's tables do with `dst`: `"tunnel NAME"` or `"port NAME"`.
fn lookup(lab: &Lab, dst: &str) -> String {
    let v = lab.ctl(&["lookup", dst]);
    match (v["via"]["tunnel"].as_str(), v["via"]["port"].as_str()) {
        (Some(t), _) => format!("tunnel {t}"),
        (None, Some(p)) => format!("port {p}"),
        _ => format!("no route ({v})"),
    }
}

fn health(lab: &Lab, tunnel: &str) -> String {
    lab.ctl(&["tunnels"])["tunnels"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == tunnel).cloned())
        .map(|t| t["probe"]["health"].as_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "missing".into())
}

fn tunnel_counter(counters: &Value, name: &str, field: &str) -> u64 {
    counters["tunnels"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .and_then(|t| t[field].as_u64())
        .unwrap_or(0)
}

/// The counters from a copy every worker made after this call.
fn fresh_counters(lab: &Lab) -> Value {
    let copies = |c: &Value| c["workers"][0]["copies"].as_u64().unwrap_or(0);
    let seen = copies(&lab.ctl(&["counters"]));
    wait_for(Duration::from_secs(10), "a copy of the counters", || {
        let c = lab.ctl(&["counters"]);
        if copies(&c) > seen {
            Ok(c)
        } else {
            Err("not yet")
        }
    })
}

/// Pings answered, of `count` sent from the site's host `from` to `to`.
fn pings(lab: &Lab, from: &str, to: &str, count: u32) -> (usize, String) {
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
    fn start(lab: &Lab, from: &str, to: &str) -> Pinger {
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
        lines
            .iter()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| {
                let t = l
                    .strip_prefix('[')?
                    .split(']')
                    .next()?
                    .parse::<f64>()
                    .ok()?;
                let seq = l
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("icmp_seq="))?
                    .parse::<u64>()
                    .ok()?;
                Some((t, seq))
            })
            .collect()
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

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Freeze the named endpoints, wait for the CPE to send `dst` by `want`, run `check`;
/// thaw them, wait for it to come back to `back`. Pings go on meanwhile and must be
/// answered while frozen. Returns (failover, recovery) times.
fn fault(
    lab: &Lab,
    pinger: &Pinger,
    endpoints: &[&str],
    (dst, want, back): (&str, &str, &str),
    check: impl Fn(&Lab),
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

#[test]
fn cpe_lab_site_router_with_backup_tunnel_and_native_fallback() {
    let lab = Lab::up(false);
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
    let (to_native, from_native) = fault(
        &lab,
        &pinger,
        &["edge1", "edge2"],
        (OTHER, "port wan0", "tunnel edge1"),
        |lab| assert_eq!(lab.ctl(&["lookup", OTHER])["route"]["prefix"], "0.0.0.0/0"),
    );
    summary.push(format!(
        "both edges frozen: native through wan0 {:.2} s after, back into edge1 {:.2} s after \
         they thawed",
        to_native.as_secs_f64(),
        from_native.as_secs_f64()
    ));
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

    // Within the second asked for (the probes find a tunnel down in 0.6 s); a loaded
    // machine gets a little more.
    for (what, t) in [("to the backup", to_backup), ("to native", to_native)] {
        assert!(
            t < Duration::from_millis(1500),
            "failover {what} took {:.2} s",
            t.as_secs_f64()
        );
    }
    eprintln!("== client-site lab\n{}", summary.join("\n"));
}

/// The same site with BGP instead of probes: FRR on the CPE runs what `backbone frr-config`
/// writes for a client site (eBGP with BFD with each edge inside its tunnel, the backup's
/// routes at local preference 50), zebra hands its choice to the appliance over FPM; BFD
/// (100 ms x 3) finds an edge's tunnel side frozen.
#[test]
fn cpe_lab_bgp_with_both_edges_and_the_backup_by_preference() {
    let lab = Lab::up(true);
    let mut summary = Vec::new();
    const OTHER: &str = "10.1.0.10";
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(60),
        "the CPE's sessions Established and BFD up",
        || {
            let v = lab.vtysh_json("cpe", "show bgp summary json")?;
            for peer in ["169.254.5.1", "169.254.6.1"] {
                let state = v["ipv4Unicast"]["peers"][peer]["state"].as_str();
                if state != Some("Established") {
                    return Err(format!("{peer}: {state:?}"));
                }
            }
            let bfd = lab.vtysh_json("cpe", "show bfd peers json")?;
            let peers = bfd.as_array().cloned().unwrap_or_default();
            for peer in ["169.254.5.1", "169.254.6.1"] {
                if !peers
                    .iter()
                    .any(|p| p["peer"] == peer && p["status"] == "up")
                {
                    return Err(format!("BFD with {peer}: {bfd}"));
                }
            }
            Ok(())
        },
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
    // Both edges' paths at the CPE; the backup's at local preference 50.
    let paths = lab
        .vtysh_json("cpe", "show bgp ipv4 unicast 10.1.0.0/16 json")
        .expect("the CPE's paths");
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
    for peer in ["169.254.5.0", "169.254.6.0"] {
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
    let (to_native, from_native) = fault(
        &lab,
        &pinger,
        &["edge1", "edge2"],
        (OTHER, "port wan0", "tunnel edge1"),
        |lab| assert_eq!(lab.ctl(&["lookup", OTHER])["route"]["prefix"], "0.0.0.0/0"),
    );
    summary.push(format!(
        "both edges frozen: native through wan0 {:.2} s after, back into edge1 {:.2} s after \
         they thawed",
        to_native.as_secs_f64(),
        from_native.as_secs_f64()
    ));
    let replies = pinger.replies();
    let sent = replies.iter().map(|r| r.1).max().unwrap_or(0);
    summary.push(format!(
        "pings at 20/s through both faults: {} answered, {} lost",
        replies.len(),
        sent.saturating_sub(replies.len() as u64)
    ));
    drop(pinger);
    for (what, t) in [("to the backup", to_backup), ("to native", to_native)] {
        assert!(
            t < Duration::from_millis(1500),
            "failover {what} took {:.2} s",
            t.as_secs_f64()
        );
    }
    eprintln!("== client-site lab, BGP\n{}", summary.join("\n"));
}
