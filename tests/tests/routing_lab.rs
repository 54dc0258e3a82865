//! The routing lab (scripts/routing-lab.sh) as a test: real routing daemons at the client
//! sites talk BGP and BFD with the edge's FRR inside their tunnels, through the appliance's
//! exception path; the edge's FRR runs the configuration `backbone frr-config` writes.
//!
//! Checked, each from the daemons themselves (`birdc`, `vtysh ... json`) or the kernel's
//! tables, never from the appliance's word alone:
//! - every BGP session over a tunnel is Established, with BFD up;
//! - route distribution: each BGP site's router holds every other site's prefix through its
//!   tunnel (the edge announces the probed site C itself), though no site's configuration
//!   names another site;
//! - hosts ping each other and move 1 MiB by TCP between every pair, through the tunnels
//!   (the appliance's per-tunnel counters grow by at least what was sent);
//! - a hijack: site A announces one of B's prefixes and 8.8.8.0/24; the edge receives them
//!   (soft reconfiguration keeps what was received) and refuses them, so no other site hears
//!   them, and B's traffic is unaffected;
//! - the probed tunnel to site C is up;
//! - zebra's routes reach the appliance over FPM: the prefixes A and B announce, into their
//!   tunnels, shadowed by the tunnels' own prefixes (which win by distance), nothing refused;
//! - a new client: `ctl tunnel-add` of site D (its router ready and waiting) reaches every
//!   other BGP site's router (the appliance rewrites FRR's configuration and reloads it),
//!   hosts reach D, and zebra's route for D's prefix reaches the appliance; `ctl tunnel-del`
//!   withdraws it everywhere (and zebra's route with the tunnel).
//!
//! Needs root, network namespaces, /dev/net/tun, FRR and BIRD (scripts/setup.sh). Where they
//! are missing the test fails and says why: it never skips.

use backbone_tests::{backbone_bin, repo_root, scratch_dir, wait_for};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The sites: letter, host address, the prefix it owns.
const SITES: [(char, &str, &str); 3] = [
    ('a', "10.1.0.10", "10.1.0.0/16"),
    ('b', "10.2.0.10", "10.2.0.0/16"),
    ('c', "10.3.0.10", "10.3.0.0/16"),
];

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
    is_down: bool,
}

impl Lab {
    fn script(&self, cmd: &str) -> Output {
        Command::new(repo_root().join("scripts/routing-lab.sh"))
            .arg(cmd)
            .env("LAB_DIR", &self.dir)
            .env("LAB_PREFIX", &self.prefix)
            .env("BACKBONE", &self.backbone)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/routing-lab.sh")
    }

    fn up() -> Lab {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
            "the routing lab needs root (namespaces, TUN, routing daemons)"
        );
        let lab = Lab {
            dir: scratch_dir("routing-lab"),
            prefix: format!("bbq{}", std::process::id() % 100_000),
            backbone: backbone_bin(),
            is_down: false,
        };
        let out = lab.script("up");
        assert!(
            out.status.success(),
            "scripts/routing-lab.sh up failed:\n{}\nappliance log:\n{}",
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

    fn vtysh_json(&self, ns: &str, cmd: &str) -> Result<Value, String> {
        let inst = format!("{}-{ns}", self.prefix);
        let out = self.exec(ns, &["vtysh", "-N", &inst, "-c", cmd]);
        if !out.status.success() {
            return Err(format!("vtysh {cmd}: {}", text(&out)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("vtysh {cmd}: {e}: {}", text(&out)))
    }

    fn birdc(&self, args: &[&str]) -> String {
        let ctl = self.dir.join("bird-a.ctl");
        let ctl = ctl.to_string_lossy();
        let mut all = vec!["birdc", "-s", &ctl];
        all.extend_from_slice(args);
        text(&self.exec("ra", &all))
    }

    fn ctl(&self, args: &[&str]) -> Value {
        let sock = self.dir.join("ctl/control.sock");
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-edge", self.prefix)])
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

    /// The kernel routes of a site's router for `prefix`.
    fn route(&self, site: char, prefix: &str) -> String {
        text(&self.exec(&format!("r{site}"), &["ip", "route", "show", prefix]))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.is_down {
            let out = self.script("down");
            eprintln!("lab torn down:\n{}", text(&out));
            eprintln!("state and logs kept in {}", self.dir.display());
        }
    }
}

/// zebra's route for `prefix` in the appliance's tables, as `ctl routes` lists it (source
/// `frr`).
fn zebra_route(lab: &Lab, prefix: &str) -> Option<Value> {
    lab.ctl(&["routes"])["routes"]
        .as_array()?
        .iter()
        .find(|r| r["prefix"] == prefix && r["source"] == "frr")
        .cloned()
}

fn tunnel_counter(counters: &Value, name: &str, field: &str) -> u64 {
    counters["tunnels"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .and_then(|t| t[field].as_u64())
        .unwrap_or(0)
}

#[test]
fn routing_lab_bgp_and_bfd_inside_the_tunnels() {
    let mut lab = Lab::up();
    let mut summary = Vec::new();
    let t0 = std::time::Instant::now();

    // Sessions: Established over each tunnel, as each side sees it, with BFD up.
    wait_for(
        Duration::from_secs(60),
        "site A's BIRD session Established",
        || {
            let s = lab.birdc(&["show", "protocols", "edge"]);
            if s.contains("Established") {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    wait_for(
        Duration::from_secs(60),
        "site B's FRR session Established",
        || {
            let v = lab.vtysh_json("rb", "show bgp summary json")?;
            match v["ipv4Unicast"]["peers"]["169.254.2.1"]["state"].as_str() {
                Some("Established") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    wait_for(
        Duration::from_secs(60),
        "the edge's sessions and BFD up",
        || {
            let v = lab.vtysh_json("edge", "show bgp summary json")?;
            for peer in ["169.254.1.0", "169.254.2.0"] {
                let state = v["ipv4Unicast"]["peers"][peer]["state"].as_str();
                if state != Some("Established") {
                    return Err(format!("{peer}: {state:?}"));
                }
            }
            let bfd = lab.vtysh_json("edge", "show bfd peers json")?;
            let peers = bfd.as_array().cloned().unwrap_or_default();
            for peer in ["169.254.1.0", "169.254.2.0"] {
                let up = peers
                    .iter()
                    .any(|p| p["peer"] == peer && p["status"] == "up");
                if !up {
                    return Err(format!("BFD with {peer}: {bfd}"));
                }
            }
            Ok(())
        },
    );
    summary.push(format!(
        "sessions Established with BFD up {:.1} s after the lab came up",
        t0.elapsed().as_secs_f64()
    ));

    // Route distribution: every other site's prefix through the tunnel (tun0), from the
    // edge (169.254.X.1); site C's announced by the edge for it.
    for (site, x) in [('a', 1), ('b', 2)] {
        for (other, _, prefix) in SITES {
            if other == site {
                continue;
            }
            wait_for(
                Duration::from_secs(30),
                &format!("router {site} learns {prefix}"),
                || {
                    let r = lab.route(site, prefix);
                    if r.contains(&format!("via 169.254.{x}.1 dev tun0")) {
                        Ok(())
                    } else {
                        Err(r)
                    }
                },
            );
        }
    }
    summary.push("routers A and B hold every other site's prefix through their tunnel".into());

    // zebra hands what BGP selected to the appliance over FPM: A's and B's prefixes, into
    // their tunnels (the tunnels' own prefixes win by distance and keep forwarding).
    for (tunnel, prefix) in [("site-a", "10.1.0.0/16"), ("site-b", "10.2.0.0/16")] {
        let r = wait_for(
            Duration::from_secs(30),
            &format!("zebra's route for {prefix} in the appliance"),
            || zebra_route(&lab, prefix).ok_or_else(|| lab.ctl(&["counters"])["fpm"].clone()),
        );
        assert_eq!(r["protocol"], "bgp", "{r}");
        assert_eq!(r["tunnel"], tunnel, "{r}");
        assert_eq!(r["shadowed_by"], "tunnel", "{r}");
    }
    let fpm = &lab.ctl(&["counters"])["fpm"];
    assert_eq!(fpm["connected"], 1, "{fpm}");
    assert_eq!(fpm["frames_refused"], 0, "{fpm}");
    summary.push(format!(
        "zebra's routes in the appliance over FPM: {} routes, {} frames, none refused",
        fpm["routes"], fpm["frames"]
    ));

    // The probed tunnel to site C comes up.
    wait_for(Duration::from_secs(10), "site-c up by its probes", || {
        let t = lab.ctl(&["tunnels"]);
        let c = t["tunnels"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == "site-c").cloned())
            .unwrap_or_default();
        if c["probe"]["health"] == "up" {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });

    // Hosts ping each other through the tunnels.
    let before = lab.ctl(&["counters"]);
    for (from, _, _) in SITES {
        for (to, ip, _) in SITES {
            if from == to {
                continue;
            }
            let out = lab.exec(
                &format!("h{from}"),
                &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", ip],
            );
            let s = text(&out);
            let got = s.lines().filter(|l| l.contains("bytes from")).count();
            assert!(got >= 2, "ping host {from} -> host {to}:\n{s}");
        }
    }
    // The workers publish a copy of their counters every few thousand polls: take one
    // they made after the last ping.
    let copies = |c: &Value| c["workers"][0]["copies"].as_u64().unwrap_or(0);
    let seen = copies(&lab.ctl(&["counters"]));
    let after = wait_for(Duration::from_secs(10), "a copy of the counters", || {
        let c = lab.ctl(&["counters"]);
        if copies(&c) > seen {
            Ok(c)
        } else {
            Err("not yet")
        }
    });
    for t in ["site-a", "site-b", "site-c"] {
        // Each site sends 2 x 3 requests and answers 2 x 3: at least 2 x 2 x 2 each way.
        for f in ["rx_packets", "tx_packets"] {
            let d = tunnel_counter(&after, t, f) - tunnel_counter(&before, t, f);
            assert!(d >= 8, "{t} {f} grew by {d} only: the pings went around it");
        }
    }
    summary.push("pings between every pair of hosts, through the tunnels".into());

    // The hijack: site A announces one of B's prefixes and 8.8.8.0/24.
    let conf = lab.dir.join("bird-a.conf");
    let c = std::fs::read_to_string(&conf).expect("bird-a.conf");
    let hijack = c.replace(
        "route 10.1.0.0/16 unreachable;",
        "route 10.1.0.0/16 unreachable; route 10.2.5.0/24 unreachable; route 8.8.8.0/24 unreachable;",
    );
    assert_ne!(c, hijack, "the hijack is written into A's configuration");
    std::fs::write(&conf, hijack).expect("write bird-a.conf");
    let r = lab.birdc(&["configure"]);
    assert!(r.contains("Reconfigured"), "birdc configure: {r}");
    // A sends them (the request was read) ...
    wait_for(
        Duration::from_secs(20),
        "the edge receives A's hijack",
        || {
            let v = lab.vtysh_json(
                "edge",
                "show bgp ipv4 unicast neighbors 169.254.1.0 received-routes json",
            )?;
            let got = v["receivedRoutes"].as_object().cloned().unwrap_or_default();
            if got.contains_key("8.8.8.0/24") && got.contains_key("10.2.5.0/24") {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    );
    // ... and the edge keeps them out of its table: nobody hears them.
    let accepted = lab
        .vtysh_json(
            "edge",
            "show bgp ipv4 unicast neighbors 169.254.1.0 routes json",
        )
        .expect("accepted routes");
    let accepted: Vec<String> = accepted["routes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(accepted, ["10.1.0.0/16"], "only A's own prefix is accepted");
    for p in ["8.8.8.0/24", "10.2.5.0/24"] {
        let r = lab.route('b', p);
        assert!(!r.contains("tun0"), "router B heard the hijacked {p}: {r}");
    }
    let out = lab.exec("ha", &["ping", "-n", "-c", "2", "-W", "2", "10.2.0.10"]);
    assert!(
        out.status.success(),
        "A -> B after the hijack: {}",
        text(&out)
    );
    summary.push(
        "hijack: A's announcements of 10.2.5.0/24 and 8.8.8.0/24 received and refused by the \
         edge; B unaffected"
            .into(),
    );

    // A new client: site D's router is ready; the edge gets its tunnel at run time. Its
    // prefix must reach every other BGP site, and its traffic flow.
    let file = lab.dir.join("site-d.toml");
    let t = std::time::Instant::now();
    lab.ctl(&["tunnel-add", &file.to_string_lossy()]);
    for (site, x) in [('a', 1), ('b', 2)] {
        wait_for(
            Duration::from_secs(20),
            &format!("router {site} learns site D's 10.4.0.0/16"),
            || {
                let r = lab.route(site, "10.4.0.0/16");
                if r.contains(&format!("via 169.254.{x}.1 dev tun0")) {
                    Ok(())
                } else {
                    Err(r)
                }
            },
        );
    }
    let announced = t.elapsed();
    let r = wait_for(
        Duration::from_secs(20),
        "zebra's route for 10.4.0.0/16 in the appliance",
        || zebra_route(&lab, "10.4.0.0/16").ok_or("not yet"),
    );
    assert_eq!(r["tunnel"], "site-d", "{r}");
    for from in ['a', 'b'] {
        let out = lab.exec(
            &format!("h{from}"),
            &["ping", "-n", "-c", "2", "-W", "2", "10.4.0.10"],
        );
        assert!(out.status.success(), "{from} -> D: {}", text(&out));
    }
    // Removed: withdrawn everywhere.
    let t = std::time::Instant::now();
    lab.ctl(&["tunnel-del", "site-d"]);
    for site in ['a', 'b'] {
        wait_for(
            Duration::from_secs(20),
            &format!("router {site} forgets 10.4.0.0/16"),
            || {
                let r = lab.route(site, "10.4.0.0/16");
                if r.trim().is_empty() {
                    Ok(())
                } else {
                    Err(r)
                }
            },
        );
    }
    assert_eq!(
        zebra_route(&lab, "10.4.0.0/16"),
        None,
        "zebra's route into site-d went with the tunnel"
    );
    summary.push(format!(
        "new client D: at every other site {:.1} s after ctl tunnel-add; withdrawn everywhere \
         {:.1} s after ctl tunnel-del",
        announced.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));

    let out = lab.script("down");
    lab.is_down = true;
    assert!(out.status.success(), "down: {}", text(&out));
    println!("\n== routing lab");
    for l in &summary {
        println!("{l}");
    }
    let _ = std::fs::remove_dir_all(&lab.dir);
}
