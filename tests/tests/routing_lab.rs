//! The routing lab (scripts/routing-lab.sh) as a test: real routing daemons at the client
//! sites talk BGP and BFD with the edge's FRR inside their tunnels, through the appliance's
//! exception path; the edge's FRR runs the configuration `backbone frr-config` writes.
//!
//! Checked, each from the daemons themselves (`birdc`, `vtysh ... json`) or the kernel's
//! tables, never from the appliance's word alone:
//! - every BGP session over a tunnel is Established, with BFD up;
//! - route distribution: each BGP site's router holds every other site's prefix through its
//!   tunnel (the edge announces the probed site C itself), though no site's configuration
//!   names another site; in IPv6 too, over the same sessions, with the tunnels' IPv6 link
//!   addresses as next hops (the edge's `link6` on its host interface `bb-site-X`);
//! - hosts ping each other in IPv6 (GRE 0x86DD, protocol 41), and the routers the edge's
//!   link6, which its kernel answers through the exception path;
//! - hosts ping each other and move 1 MiB by TCP between every pair, through the tunnels
//!   (the appliance's per-tunnel counters grow by at least what was sent);
//! - a hijack: site A announces one of B's prefixes and 8.8.8.0/24; the edge receives them
//!   (soft reconfiguration keeps what was received) and refuses them, so no other site hears
//!   them, and B's traffic is unaffected;
//! - the probed tunnel to site C is up;
//! - zebra's routes reach the appliance over FPM: the prefixes A and B announce, into their
//!   tunnels, and they route them (the tunnels fall back, so their own prefixes only bound
//!   what the clients may announce), nothing refused;
//! - fallback: site B's tunnel endpoint frozen (SIGSTOP) while host A pings host B 20 times a
//!   second: BFD takes the session down, FRR withdraws B's prefix, and the appliance routes
//!   it natively through the Internet port; pings keep being answered through the Internet;
//!   thawed, the route comes back into the tunnel. Site C's tunnel frozen: its probes miss,
//!   the appliance takes C's prefix out of the tunnel (A's packets leave through the
//!   Internet port), and puts it back once the probes return. The times are reported;
//!   the deadlines leave room for a loaded machine;
//! - a new client: `ctl tunnel-add` of site D (its router ready and waiting) reaches every
//!   other BGP site's router (the appliance rewrites FRR's configuration and reloads it),
//!   hosts reach D, and zebra's route for D's prefix reaches the appliance; `ctl tunnel-del`
//!   withdraws it everywhere (and zebra's route with the tunnel).
//!
//! Needs root, network namespaces, /dev/net/tun, FRR and BIRD (scripts/setup.sh). Where they
//! are missing the test fails and says why: it never skips.

use backbone_tests::lab::{
    self, ping_replies, port_counter, signal, text, tunnel_counter, unix_now, Lab,
};
use backbone_tests::{wait_for, wait_until};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The sites: letter, host address, the prefix it owns.
const SITES: [(char, &str, &str); 3] = [
    ('a', "10.1.0.10", "10.1.0.0/16"),
    ('b', "10.2.0.10", "10.2.0.0/16"),
    ('c', "10.3.0.10", "10.3.0.0/16"),
];

/// The sites in IPv6: letter, host address, the prefix it owns. Tunnel X's IPv6 link is
/// fd00:ff:X::/127: the edge's link6 ::1 (on bb-site-X), the router's ::0 (on tun0).
const SITES6: [(char, &str, &str); 3] = [
    ('a', "fd00:1::10", "fd00:1::/48"),
    ('b', "fd00:2::10", "fd00:2::/48"),
    ('c', "fd00:3::10", "fd00:3::/48"),
];

/// The routing lab's own words for the shared lab: its one appliance, site A's BIRD, a
/// site's router by its letter.
trait RoutingLab {
    fn ctl(&self, args: &[&str]) -> Value;
    fn birdc(&self, args: &[&str]) -> String;
    fn route(&self, site: char, prefix: &str) -> String;
}

impl RoutingLab for Lab {
    fn ctl(&self, args: &[&str]) -> Value {
        self.ctl_in("edge", &self.dir.join("ctl/control.sock"), args)
    }

    fn birdc(&self, args: &[&str]) -> String {
        self.birdc_in("ra", "bird-a.ctl", args)
    }

    fn route(&self, site: char, prefix: &str) -> String {
        self.kernel_route(&format!("r{site}"), prefix)
    }
}

/// Three pings from namespace `ns` to `ip`, again until two are answered (30 s at most);
/// the output of the run that was.
fn pings(lab: &Lab, ns: &str, ip: &str) -> String {
    wait_for(Duration::from_secs(30), &format!("{ns} pings {ip}"), || {
        let s = text(&lab.exec(ns, &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", ip]));
        if s.lines().filter(|l| l.contains("bytes from")).count() >= 2 {
            Ok(s)
        } else {
            Err(s)
        }
    })
}

/// Router `site`'s kernel route for an IPv6 `prefix`.
fn route6(lab: &Lab, site: char, prefix: &str) -> String {
    text(&lab.exec(&format!("r{site}"), &["ip", "-6", "route", "show", prefix]))
}

/// Wait until router `site` (tunnel X) routes the IPv6 `prefix` into its tunnel, to the
/// edge's link6.
fn learns6(lab: &Lab, site: char, x: u32, prefix: &str) {
    wait_for(
        Duration::from_secs(30),
        &format!("router {site} learns {prefix}"),
        || {
            let r = route6(lab, site, prefix);
            if r.contains(&format!("via fd00:ff:{x}::1 dev tun0")) {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
}

fn up() -> Lab {
    Lab::up("routing-lab.sh", "routing-lab", "bbq", &[], "backbone.log")
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

/// What the appliance's tables do with `dst`: `"tunnel NAME"` or `"port NAME"`.
fn lookup(lab: &Lab, dst: &str) -> String {
    let v = lab.ctl(&["lookup", dst]);
    match (v["via"]["tunnel"].as_str(), v["via"]["port"].as_str()) {
        (Some(t), _) => format!("tunnel {t}"),
        (None, Some(p)) => format!("port {p}"),
        _ => format!("no route ({v})"),
    }
}

/// The counters from a copy every worker made after this call.
fn fresh_counters(lab: &Lab) -> Value {
    lab::fresh_counters(|args| lab.ctl(args))
}

/// 1 MiB of random bytes by TCP from host `from` to host `to` (`to_ip`), with socat; the
/// bytes received must be the bytes sent.
fn transfer(lab: &Lab, from: char, to: char, to_ip: &str, port: u16) -> String {
    let sent = lab.dir.join(format!("tcp-{from}{to}.tx"));
    let got = lab.dir.join(format!("tcp-{from}{to}.rx"));
    let mut data = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(port);
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&sent, &data).expect("write the data to send");
    let ns = |h: char| format!("{}-h{h}", lab.prefix);
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &ns(to), "socat", "-u"])
        .arg(format!("TCP-LISTEN:{port},reuseaddr"))
        .arg(format!("OPEN:{},creat,trunc", got.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat listener");
    wait_until(
        Duration::from_secs(10),
        &format!("socat listening in host {to}"),
        || {
            let ss = text(&lab.exec(&format!("h{to}"), &["ss", "-ltnH"]));
            ss.contains(&format!(":{port} "))
        },
    );
    let t = std::time::Instant::now();
    let out = lab.exec(
        &format!("h{from}"),
        &[
            "timeout",
            "60",
            "socat",
            "-u",
            &format!("OPEN:{}", sent.display()),
            &format!("TCP:{to_ip}:{port}"),
        ],
    );
    assert!(out.status.success(), "socat {from} -> {to}: {}", text(&out));
    let status = wait_for(
        Duration::from_secs(30),
        "the listener's end",
        || match listener.try_wait() {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("still receiving".to_owned()),
            Err(e) => Err(e.to_string()),
        },
    );
    assert!(status.success(), "socat listener in host {to}: {status}");
    let received = std::fs::read(&got).expect("the bytes received");
    assert!(
        received == data,
        "TCP host {from} -> host {to}: {} bytes received of {}, or different bytes",
        received.len(),
        data.len()
    );
    format!(
        "TCP host {} -> host {}: 1 MiB in {:.2} s, byte for byte",
        from.to_ascii_uppercase(),
        to.to_ascii_uppercase(),
        t.elapsed().as_secs_f64()
    )
}

#[test]
fn routing_lab_bgp_and_bfd_inside_the_tunnels() {
    let mut lab = up();
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
        || lab.frr_sessions_up("edge", &["169.254.1.0", "169.254.2.0"]),
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

    // IPv6 unicast over the same (IPv4) sessions: the edge's FRR takes its next hop toward
    // site X from bb-site-X's IPv6 address (the tunnel's link6, fd00:ff:X::1), the routers
    // theirs from tun0 (fd00:ff:X::). Each BGP site's router holds every other site's IPv6
    // prefix through its tunnel, as its kernel and its routing daemon have it; the edge
    // holds A's and B's from them, and announces probed C's (no BGP) itself.
    for (site, x) in [('a', 1), ('b', 2)] {
        for (other, _, prefix) in SITES6 {
            if other != site {
                learns6(&lab, site, x, prefix);
            }
        }
    }
    let bird = lab.birdc(&["show", "route", "table", "master6", "protocol", "edge"]);
    for prefix in ["fd00:2::/48", "fd00:3::/48"] {
        let entry: Vec<&str> = bird
            .lines()
            .skip_while(|l| !l.starts_with(prefix))
            .take(2)
            .collect();
        assert!(
            entry.len() == 2 && entry[1].contains("via fd00:ff:1::1 on tun0"),
            "site A's BIRD: {prefix} from the edge via its link6:\n{bird}"
        );
    }
    let next_hop = |ns: &str, prefix: &str| -> Result<String, String> {
        let v = lab.vtysh_json(ns, "show bgp ipv6 unicast json")?;
        v["routes"][prefix][0]["nexthops"][0]["ip"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{prefix}: {}", v["routes"]))
    };
    for (ns, prefix, via) in [
        ("rb", "fd00:1::/48", "fd00:ff:2::1"),
        ("rb", "fd00:3::/48", "fd00:ff:2::1"),
        ("edge", "fd00:1::/48", "fd00:ff:1::"),
        ("edge", "fd00:2::/48", "fd00:ff:2::"),
    ] {
        let got = wait_for(
            Duration::from_secs(10),
            &format!("{ns}'s FRR: {prefix}"),
            || next_hop(ns, prefix),
        );
        assert_eq!(got, via, "{ns}'s FRR: the next hop of {prefix}");
    }
    summary.push(
        "IPv6 unicast over the IPv4 sessions: routers A (BIRD) and B (FRR) hold every other \
         site's IPv6 prefix via the edge's link6 on their tunnel; the edge holds A's and B's \
         via the routers' side of the links"
            .into(),
    );

    // zebra hands what BGP selected to the appliance over FPM: A's and B's prefixes, into
    // their tunnels. Those route them: the tunnels fall back (the lab has an Internet
    // port), so their own prefixes only bound what the clients may announce.
    for (tunnel, prefix) in [("site-a", "10.1.0.0/16"), ("site-b", "10.2.0.0/16")] {
        let r = wait_for(
            Duration::from_secs(30),
            &format!("zebra's route for {prefix} in the appliance"),
            || zebra_route(&lab, prefix).ok_or_else(|| lab.ctl(&["counters"])["fpm"].clone()),
        );
        assert_eq!(r["protocol"], "bgp", "{r}");
        assert_eq!(r["tunnel"], tunnel, "{r}");
        assert!(r["shadowed_by"].is_null(), "{r}");
        assert_eq!(
            lookup(&lab, &prefix.replace(".0.0/16", ".0.10")),
            format!("tunnel {tunnel}"),
            "{r}"
        );
    }
    // zebra's IPv6 routes over FPM, into the tunnels (the tunnels' own IPv6 prefixes are
    // routed beside them).
    for (tunnel, prefix) in [("site-a", "fd00:1::/48"), ("site-b", "fd00:2::/48")] {
        let r = wait_for(
            Duration::from_secs(30),
            &format!("zebra's route for {prefix} in the appliance"),
            || zebra_route(&lab, prefix).ok_or_else(|| lab.ctl(&["counters"])["fpm"].clone()),
        );
        assert_eq!(r["protocol"], "bgp", "{r}");
        assert_eq!(r["tunnel"], tunnel, "{r}");
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
    let after = fresh_counters(&lab);
    for t in ["site-a", "site-b", "site-c"] {
        // Each site sends 2 x 3 requests and answers 2 x 3: at least 2 x 2 x 2 each way.
        for f in ["rx_packets", "tx_packets"] {
            let d = tunnel_counter(&after, t, f) - tunnel_counter(&before, t, f);
            assert!(d >= 8, "{t} {f} grew by {d} only: the pings went around it");
        }
    }
    summary.push("pings between every pair of hosts, through the tunnels".into());

    // The same in IPv6: GRE protocol type 0x86DD to A and B, protocol 41 to C. On a loaded
    // machine BFD (100 ms x 3) can take a session down for a moment, and its routes with it:
    // a pair gets until its deadline to answer two of three.
    let before = lab.ctl(&["counters"]);
    for (from, _, _) in SITES6 {
        for (to, ip, _) in SITES6 {
            if from != to {
                let s = pings(&lab, &format!("h{from}"), ip);
                // Host, router, edge, router: the reply's hop limit is 64 less three.
                assert!(s.contains("ttl=61"), "ping {from} -> {to}: hop limit:\n{s}");
            }
        }
    }
    let after = fresh_counters(&lab);
    for t in ["site-a", "site-b", "site-c"] {
        for f in ["rx_packets", "tx_packets"] {
            let d = tunnel_counter(&after, t, f) - tunnel_counter(&before, t, f);
            assert!(
                d >= 8,
                "{t} {f} grew by {d} only: the IPv6 pings went around it"
            );
        }
    }
    // Routers A and B ping the edge's link6: the workers deliver the requests to the edge's
    // kernel through bb-site-X (the exception path) and send its replies into the tunnel.
    let host = |c: &Value, k: &str| c["host"][k].as_u64().unwrap_or(0);
    let before = fresh_counters(&lab);
    for (site, x) in [('a', 1), ('b', 2)] {
        pings(&lab, &format!("r{site}"), &format!("fd00:ff:{x}::1"));
    }
    let after = fresh_counters(&lab);
    for k in ["to_host", "from_host_sent"] {
        let d = host(&after, k) - host(&before, k);
        assert!(d >= 4, "{k} grew by {d} only: {}", after["host"]);
    }
    for k in ["from_host_dropped", "to_host_failed", "queue_full"] {
        assert_eq!(host(&after, k), host(&before, k), "{k}: {}", after["host"]);
    }
    summary.push(
        "IPv6: pings between every pair of hosts (hop limit 61), and from routers A and B to \
         the edge's link6, answered by the edge's kernel through the exception path"
            .into(),
    );

    // 1 MiB by TCP between every pair, through the tunnels.
    let before = fresh_counters(&lab);
    let mut port = 7000;
    for (from, _, _) in SITES {
        for (to, ip, _) in SITES {
            if from == to {
                continue;
            }
            port += 1;
            summary.push(transfer(&lab, from, to, ip, port));
        }
    }
    let after = fresh_counters(&lab);
    for t in ["site-a", "site-b", "site-c"] {
        // Each site sends 2 MiB and receives 2 MiB, in segments of at most 1,460 bytes.
        for f in ["rx_bytes", "tx_bytes"] {
            let d = tunnel_counter(&after, t, f) - tunnel_counter(&before, t, f);
            assert!(
                d >= 2 << 20,
                "{t} {f} grew by {d} only: the transfers went around it"
            );
        }
    }

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

    // Fallback, BGP and BFD: site B's tunnel freezes (its endpoint stopped) while host A
    // pings host B 20 times a second. BFD (100 ms x 3) takes B's session down at the edge,
    // FRR withdraws B's prefix, zebra tells the appliance over FPM: the appliance routes
    // 10.2.0.0/16 by what else covers it, the default route out of the Internet port; A
    // hears the withdrawal too and uses its own default route. B's router, its session down
    // as well, answers through the Internet. When the tunnel thaws, the session and the
    // routes come back.
    assert_eq!(lookup(&lab, "10.2.0.10"), "tunnel site-b");
    let mut ping = Command::new("ip")
        .args(["netns", "exec", &format!("{}-ha", lab.prefix)])
        .args(["ping", "-n", "-D", "-i", "0.05", "-W", "1", "10.2.0.10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    let pinger = ping.id().to_string();
    // Its output as it comes.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = ping.stdout.take().expect("ping's stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        })
    };
    let replies_now = || ping_replies(&lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n"));
    let before = lab.ctl(&["counters"]);
    wait_until(Duration::from_secs(10), "A's pings through site-b", || {
        let c = lab.ctl(&["counters"]);
        tunnel_counter(&c, "site-b", "tx_packets")
            >= tunnel_counter(&before, "site-b", "tx_packets") + 5
    });
    let endpoint_b = lab.pid("tunnel-b");
    signal(&endpoint_b, "STOP");
    let t = std::time::Instant::now();
    wait_until(
        Duration::from_secs(10),
        "10.2.0.0/16 native at the edge",
        || lookup(&lab, "10.2.0.10") == "port inet0",
    );
    let fallback_b = t.elapsed();
    // Answered while the tunnel is frozen, through the Internet.
    let fell_back = unix_now();
    wait_until(
        Duration::from_secs(10),
        "A's pings answered while B's tunnel is frozen",
        || replies_now().iter().filter(|(t, _)| *t > fell_back).count() >= 10,
    );
    signal(&endpoint_b, "CONT");
    let (resumed, t) = (unix_now(), std::time::Instant::now());
    wait_until(
        Duration::from_secs(30),
        "10.2.0.0/16 into site-b again",
        || lookup(&lab, "10.2.0.10") == "tunnel site-b",
    );
    let recovery_b = t.elapsed();
    let back = lab.ctl(&["counters"]);
    wait_until(
        Duration::from_secs(10),
        "A's pings through site-b again",
        || {
            let c = lab.ctl(&["counters"]);
            tunnel_counter(&c, "site-b", "tx_packets")
                >= tunnel_counter(&back, "site-b", "tx_packets") + 5
        },
    );
    signal(&pinger, "INT");
    let _ = ping.wait();
    let _ = reader.join();
    let out = lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
    let replies = ping_replies(&out);
    let sent = replies.iter().map(|r| r.1).max().unwrap_or(0);
    let during = replies
        .iter()
        .filter(|(t, _)| *t > fell_back && *t < resumed)
        .count();
    assert!(
        during >= 10,
        "host A's pings to B while site-b was frozen and the edge had fallen back: {during} \
         answered (20 a second):\n{out}"
    );
    // Sequence numbers start at 1: the last one is how many were sent before the end.
    let lost = sent.saturating_sub(replies.len() as u64);
    summary.push(format!(
        "fallback, site B (BGP, BFD 100 ms x 3): native at the edge {:.2} s after its tunnel \
         froze, back into the tunnel {:.2} s after it thawed; host A's pings (20/s): {} \
         answered, {lost} lost, {during} answered through the Internet while frozen",
        fallback_b.as_secs_f64(),
        recovery_b.as_secs_f64(),
        replies.len(),
    ));

    // Fallback, probes: site C's tunnel freezes. Three probes missed (300 ms apart) and the
    // edge takes 10.3.0.0/16 out of the tunnel: what A sends to C leaves through the
    // Internet port. (Router C keeps routing 10.0.0.0/8 into its frozen tunnel, so nothing
    // comes back: the edge's side is what is measured.) When it thaws, the next probe's
    // reply brings the route back.
    assert_eq!(lookup(&lab, "10.3.0.10"), "tunnel site-c");
    let health = |c: &Value| {
        (
            c["control"]["tunnels_down"].as_u64().unwrap_or(0),
            c["control"]["tunnels_up"].as_u64().unwrap_or(0),
        )
    };
    let (down0, up0) = health(&lab.ctl(&["counters"]));
    let endpoint_c = lab.pid("tunnel-c");
    signal(&endpoint_c, "STOP");
    let t = std::time::Instant::now();
    wait_until(
        Duration::from_secs(10),
        "10.3.0.0/16 native at the edge",
        || lookup(&lab, "10.3.0.10") == "port inet0",
    );
    let fallback_c = t.elapsed();
    let tunnels = lab.ctl(&["tunnels"]);
    let c = tunnels["tunnels"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "site-c").cloned())
        .unwrap_or_default();
    assert_eq!(c["probe"]["health"], "down", "{c}");
    let before = fresh_counters(&lab);
    let out = lab.exec(
        "ha",
        &[
            "ping",
            "-n",
            "-c",
            "10",
            "-i",
            "0.05",
            "-W",
            "1",
            "10.3.0.10",
        ],
    );
    let after = fresh_counters(&lab);
    let native =
        port_counter(&after, "inet0", "tx_packets") - port_counter(&before, "inet0", "tx_packets");
    assert!(
        native >= 10,
        "A's 10 pings to C left through the Internet port: {native} packets ({})",
        text(&out)
    );
    signal(&endpoint_c, "CONT");
    let t = std::time::Instant::now();
    wait_until(
        Duration::from_secs(10),
        "10.3.0.0/16 into site-c again",
        || lookup(&lab, "10.3.0.10") == "tunnel site-c",
    );
    let recovery_c = t.elapsed();
    let out = lab.exec(
        "ha",
        &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "10.3.0.10"],
    );
    assert!(
        out.status.success(),
        "A -> C through site-c again: {}",
        text(&out)
    );
    let counters = lab.ctl(&["counters"]);
    let (down1, up1) = health(&counters);
    assert!(
        down1 > down0 && up1 > up0,
        "the probed tunnel's fall and return counted ({down0}, {up0} before): {}",
        counters["control"]
    );
    summary.push(format!(
        "fallback, site C (probes 300 ms x 3): native at the edge {:.2} s after its tunnel \
         froze, back into the tunnel {:.2} s after it thawed",
        fallback_c.as_secs_f64(),
        recovery_c.as_secs_f64()
    ));

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
    for (site, x) in [('a', 1), ('b', 2)] {
        learns6(&lab, site, x, "fd00:4::/48");
    }
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
        let out = lab.exec(
            &format!("h{from}"),
            &["ping", "-n", "-c", "2", "-W", "2", "fd00:4::10"],
        );
        assert!(out.status.success(), "{from} -> D in IPv6: {}", text(&out));
    }
    // Removed: withdrawn everywhere.
    let t = std::time::Instant::now();
    lab.ctl(&["tunnel-del", "site-d"]);
    for site in ['a', 'b'] {
        wait_for(
            Duration::from_secs(20),
            &format!("router {site} forgets 10.4.0.0/16 and fd00:4::/48"),
            || {
                let r = lab.route(site, "10.4.0.0/16") + &route6(&lab, site, "fd00:4::/48");
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

    lab.down();
    println!("\n== routing lab");
    for l in &summary {
        println!("{l}");
    }
    let _ = std::fs::remove_dir_all(&lab.dir);
}
