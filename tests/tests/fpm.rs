//! Routes from zebra through the real binary, in a network namespace of their own (the
//! appliance makes its host interfaces `bb-<name>` there, and zebra sees them there).
//!
//! - `fpm_frames_move_routes_without_loss`: an FPM client (socat, fed frames this test
//!   writes) installs routes into tunnels and out of a port, moves one back and forth while
//!   traffic flows to it and to a prefix that never changes (nothing dropped, nothing sent
//!   by the default route meanwhile),
//!   sends frames that must be refused whole (an interface that is not ours, a next-hop
//!   group, a bad length), cuts a frame in half, reconnects and sends back only part of its
//!   routes: after the grace period the rest are gone, the part stayed all along.
//! - `zebra_routes_reach_the_tables`: FRR's zebra (with `dplane_fpm_nl`) and staticd in the
//!   same namespace: static routes configured with vtysh arrive with their protocol, a
//!   change of the preferred route arrives as one update, zebra killed and started again
//!   leaves forwarding on what was learned and reconnects.
//!
//! Both need root (namespaces, TUN), socat, and for the second FRR (`apt-get install frr`,
//! which scripts/setup.sh does); they fail, never skip, and say what is missing. A few
//! seconds each.

use backbone_tests::KillOnDrop;
use backbone_tests::{backbone_bin, file_prefix, repo_root, scapy, scratch_dir, wait_until};
use dataplane::control::fpm::netlink::{encode, Nexthop, RouteKind, RTM_DELROUTE, RTM_NEWROUTE};
use dataplane::lpm::Ipv4Prefix;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Fail (never skip) with what is missing.
fn require(tools: &[(&str, &str)]) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the FPM tests need root (a network namespace, TUN interfaces): run the tests as \
         root, as CI does (.ci/run -> scripts/test.sh)"
    );
    for (path, package) in tools {
        assert!(
            Path::new(path).exists() || which(path),
            "{path} is missing: install {package} (scripts/setup.sh does)"
        );
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A network namespace that is removed when the test ends, whatever happens.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("bbt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("ip netns exec");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The interface index of `name` in the namespace.
    fn ifindex(&self, name: &str) -> u32 {
        self.run(&["cat", &format!("/sys/class/net/{name}/ifindex")])
            .trim()
            .parse()
            .expect("an ifindex")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The demo lab with tunnel links (host interfaces bb-acme, bb-globex), a host interface on
/// the Internet port (bb-internet0), an FPM listener, FRR's configuration kept written to
/// `frr-written.conf`, and initech sending to `dsts` without end (its hosts' packets,
/// through its IP-in-IP tunnel).
fn lab(dir: &Path, tag: &str, grace: u32, dsts: &[&str]) -> PathBuf {
    let list: Vec<String> = dsts.iter().map(|d| format!("'{d}'")).collect();
    scapy(&format!(
        "from scapy.all import *\n\
         wrpcap('{}',[Ether(src='02:00:00:00:0c:0c',dst='02:00:00:00:00:01')/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.1',dst=d)/UDP(dport=5001) for d in [{}]])\n\
         wrpcap('{}',[])",
        dir.join("clients-in.pcap").display(),
        list.join(","),
        dir.join("internet-in.pcap").display(),
    ));
    let toml = std::fs::read_to_string(repo_root().join("demo/lab.toml"))
        .unwrap()
        .replace(
            "rx_pcap=clients-in.pcap,tx_pcap=clients-out.pcap",
            "rx_pcap=clients-in.pcap,infinite_rx=1,tx_pcap=/dev/null",
        )
        .replace("tx_pcap=internet-out.pcap", "tx_pcap=/dev/null")
        .replace(
            "--file-prefix=backbone-demo",
            &format!("--file-prefix={}", file_prefix(tag)),
        )
        .replace(
            "prefixes = [\"10.1.0.0/16\"]",
            "prefixes = [\"10.1.0.0/16\"]\nlink = \"169.254.10.1/31\"",
        )
        .replace(
            "prefixes = [\"10.2.0.0/16\"]",
            "prefixes = [\"10.2.0.0/16\"]\nlink = \"169.254.20.1/31\"",
        )
        .replace(
            "roles = [\"internet\"]",
            "roles = [\"internet\"]\nhost_interface = true",
        )
        + &format!(
            "\n[fpm]\nlisten = \"127.0.0.1:2620\"\ngrace = {grace}\n\
             \n[bgp]\nasn = 65000\nfrr_config = \"{}\"\n",
            dir.join("frr-written.conf").display()
        );
    let path = dir.join("lab.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The appliance, started in `ns` from `dir`.
fn appliance(ns: &Netns, dir: &Path, sock: &Path) -> KillOnDrop {
    let bin = backbone_bin();
    let mut c = ns.cmd(&[bin.to_str().unwrap()]);
    c.current_dir(dir)
        .args([
            "run",
            "--config",
            "lab.toml",
            "--stats",
            "stats.json",
            "--control-socket",
        ])
        .arg(sock)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("backbone.log")).unwrap());
    let guard = KillOnDrop(Some(c.spawn().expect("start backbone")));
    wait_until(
        Duration::from_secs(60),
        "the appliance's first tables",
        || ctl(sock, &["status"]).is_ok_and(|s| s["fpm"] == "127.0.0.1:2620"),
    );
    guard
}

fn ctl(sock: &Path, args: &[&str]) -> Result<Value, String> {
    backbone_tests::ctl(sock, args)
}

fn fpm(sock: &Path) -> Value {
    ctl(sock, &["counters"]).expect("counters")["fpm"].clone()
}

/// Where the appliance sends `dst`, in `ctl lookup`'s words: a tunnel's name, `port P`,
/// `blackhole`, or `none`.
fn goes(sock: &Path, dst: &str) -> String {
    let v = &ctl(sock, &["lookup", dst]).expect("lookup")["via"];
    if let Some(t) = v["tunnel"].as_str() {
        t.to_owned()
    } else if let Some(p) = v["port"].as_str() {
        format!("port {p} via {}", v["next_hop"].as_str().unwrap_or("?"))
    } else if v["blackhole"] == true {
        "blackhole".into()
    } else {
        "none".into()
    }
}

/// An FPM connection into the namespace: socat forwards what this test writes.
struct Client(KillOnDrop);

impl Client {
    fn connect(ns: &Netns) -> Client {
        let child = ns
            .cmd(&["socat", "-u", "STDIN", "TCP:127.0.0.1:2620"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("socat");
        Client(KillOnDrop(Some(child)))
    }

    fn send(&mut self, bytes: &[u8]) {
        let child = self.0 .0.as_mut().expect("socat runs");
        let stdin = child.stdin.as_mut().expect("socat's stdin");
        stdin.write_all(bytes).expect("write to socat");
        stdin.flush().expect("flush");
    }

    /// Close the connection as zebra does when it stops (socat sends the rest, then FIN).
    fn close(mut self) {
        let mut child = self.0 .0.take().expect("socat runs");
        drop(child.stdin.take());
        let _ = child.wait();
    }
}

fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn via(ifindex: u32, gateway: Option<&str>) -> RouteKind {
    RouteKind::Unicast(vec![Nexthop {
        ifindex: Some(ifindex),
        gateway: gateway.map(|g| g.parse().unwrap()),
    }])
}

fn add(prefix: &str, kind: &RouteKind) -> Vec<u8> {
    encode::route(RTM_NEWROUTE, p(prefix), 186, kind)
}

fn del(prefix: &str) -> Vec<u8> {
    encode::route(RTM_DELROUTE, p(prefix), 186, &RouteKind::Unicast(vec![]))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The counters (since start) once every worker's copy of them was made at `generation`
/// or later: whatever they did not count yet, they processed under that generation or a
/// newer one.
fn counters_from(sock: &Path, generation: u64) -> Value {
    backbone_tests::wait_for(
        Duration::from_secs(30),
        "the workers' counters of that generation",
        || {
            let c = ctl(sock, &["counters"])?;
            let caught_up = c["workers"]
                .as_array()
                .is_some_and(|w| w.iter().all(|w| n(&w["generation"]) >= generation));
            if caught_up {
                Ok(c)
            } else {
                Err(format!("a worker's copy is older: {}", c["workers"]))
            }
        },
    )
}

#[test]
fn fpm_frames_move_routes_without_loss() {
    require(&[("socat", "socat")]);
    let dir = scratch_dir("fpm-frames");
    lab(&dir, "fpm-frames", 1, &["10.1.0.5", "10.9.0.5"]);
    let ns = Netns::new("fpm");
    let sock = dir.join("api.sock");
    let mut bb = appliance(&ns, &dir, &sock);
    let (acme, globex, inet) = (
        ns.ifindex("bb-acme"),
        ns.ifindex("bb-globex"),
        ns.ifindex("bb-internet0"),
    );

    // FRR's configuration, as the appliance keeps it written: zebra is told where the
    // listener is, and the text is what `backbone frr-config` writes from the same file.
    let written = backbone_tests::wait_for(
        Duration::from_secs(10),
        "FRR's configuration written",
        || std::fs::read_to_string(dir.join("frr-written.conf")),
    );
    assert!(
        written.lines().any(|l| l == "fpm address 127.0.0.1"),
        "{written}"
    );
    let out = Command::new(backbone_bin())
        .current_dir(&dir)
        .args(["frr-config", "--config", "lab.toml"])
        .output()
        .expect("backbone frr-config");
    assert!(
        out.status.success(),
        "frr-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), written);

    // Routes into two tunnels, out of the Internet port, and a blackhole.
    let mut zebra = Client::connect(&ns);
    zebra.send(
        &[
            encode::frame(&[add("10.9.0.0/16", &via(acme, Some("169.254.10.0")))]),
            encode::frame(&[add("10.10.0.0/16", &via(globex, None))]),
            encode::frame(&[add("8.8.8.0/24", &via(inet, Some("203.0.113.254")))]),
            encode::frame(&[add("10.66.0.0/16", &RouteKind::Blackhole)]),
        ]
        .concat(),
    );
    wait_until(Duration::from_secs(10), "four routes from zebra", || {
        n(&fpm(&sock)["routes"]) == 4
    });
    assert_eq!(goes(&sock, "10.9.1.1"), "acme");
    assert_eq!(goes(&sock, "10.10.1.1"), "globex");
    assert_eq!(goes(&sock, "8.8.8.8"), "port internet0 via 203.0.113.254");
    assert_eq!(goes(&sock, "10.66.1.1"), "blackhole");
    let routes = ctl(&sock, &["routes"]).unwrap()["routes"].clone();
    let frr: Vec<&Value> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "frr")
        .collect();
    assert_eq!(frr.len(), 4, "{routes}");
    assert!(frr
        .iter()
        .all(|r| r["protocol"] == "bgp" && r["distance"] == 20));
    let f = fpm(&sock);
    assert_eq!(f["connected"], 1);
    assert_eq!(n(&f["frames"]), 4);
    assert_eq!(n(&f["routes_added"]), 4);

    // Move 10.9/16 between acme and globex, each move one frame (a removal and an
    // addition) and one publication, while initech sends to 10.9.0.5 and to acme's
    // 10.1.0.5. The counters compared hold, first, nothing processed without the route
    // (a worker's copy made at the generation that installed it or later) and, last,
    // everything processed during the moves (a copy made at the last generation or later).
    let installed = ctl(&sock, &["generations"]).unwrap()["generation"]
        .as_u64()
        .unwrap();
    let before = counters_from(&sock, installed);
    let start = n(&f["publications"]);
    for i in 0..20u64 {
        let to = if i % 2 == 0 { globex } else { acme };
        zebra.send(&encode::frame(&[
            del("10.9.0.0/16"),
            add("10.9.0.0/16", &via(to, None)),
        ]));
        wait_until(Duration::from_secs(10), "the move", || {
            n(&fpm(&sock)["publications"]) == start + i + 1
        });
    }
    assert_eq!(goes(&sock, "10.9.1.1"), "acme");
    let last = ctl(&sock, &["generations"]).unwrap()["generation"]
        .as_u64()
        .unwrap();
    let after = counters_from(&sock, last);
    let sent = |c: &Value, list: &str, name: &str| {
        c[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .map_or(0, |x| n(&x["tx_packets"]))
    };
    let moved = |list: &str, name: &str| sent(&after, list, name) - sent(&before, list, name);
    // A window without the route would send 10.9.0.5 by the default route (natively out
    // of internet0) or drop it (no_route).
    assert_eq!(
        n(&after["drops"]["no_route"]),
        n(&before["drops"]["no_route"]),
        "a move left a window without a route"
    );
    assert_eq!(
        moved("ports", "internet0"),
        0,
        "a move left a window without the route: before {before}, after {after}"
    );
    assert!(
        moved("tunnels", "acme") > 0 && moved("tunnels", "globex") > 0,
        "before {before}, after {after}"
    );
    let f = fpm(&sock);
    assert_eq!(n(&f["routes_removed"]), 20);
    assert_eq!(n(&f["frames_refused"]), 0);

    // Frames that are refused whole: nothing of them applies, each counted by kind.
    let g = ctl(&sock, &["generations"]).unwrap()["generation"].clone();
    let mut bad_length =
        encode::frame(&[del("10.9.0.0/16"), add("10.9.0.0/16", &via(globex, None))]);
    bad_length[4] = 17; // the first message's nlmsg_len: 17 bytes, less than it holds
    let mut nexthop_group = encode::frame(&[add("10.11.0.0/16", &via(acme, None))]);
    nexthop_group[8] = 104; // RTM_NEWNEXTHOP: zebra was not told `no fpm use-next-hop-groups`
    zebra.send(
        &[
            encode::frame(&[del("10.9.0.0/16"), add("10.9.0.0/16", &via(1, None))]), // lo
            encode::frame(&[add("10.12.0.0/16", &via(9999, None))]), // no such interface
            bad_length,
            nexthop_group,
        ]
        .concat(),
    );
    wait_until(Duration::from_secs(10), "four refusals", || {
        n(&fpm(&sock)["frames_refused"]) == 4
    });
    let f = fpm(&sock);
    assert_eq!(n(&f["errors"]["unknown_interface"]), 2);
    assert_eq!(n(&f["errors"]["bad_length"]), 1);
    assert_eq!(n(&f["errors"]["unknown_message"]), 1);
    assert_eq!(ctl(&sock, &["generations"]).unwrap()["generation"], g);
    assert_eq!(goes(&sock, "10.9.1.1"), "acme");

    // A frame cut in half by the end of the connection: nothing of it applies.
    let whole = encode::frame(&[add("10.13.0.0/16", &via(acme, None))]);
    let cut = encode::frame(&[add("10.14.0.0/16", &via(acme, None))]);
    zebra.send(&[whole.as_slice(), &cut[..cut.len() / 2]].concat());
    wait_until(Duration::from_secs(10), "the whole frame", || {
        goes(&sock, "10.13.0.1") == "acme"
    });
    drop(zebra); // killed: the connection ends in the middle of the second frame
    wait_until(Duration::from_secs(10), "the disconnection", || {
        fpm(&sock)["connected"] == 0
    });
    assert_eq!(goes(&sock, "10.14.0.1"), "port internet0 via 203.0.113.254");
    assert_eq!(n(&fpm(&sock)["frames_cut"]), 1);

    // zebra away: forwarding goes on. It comes back and sends only 10.9/16 again: that one
    // stays throughout, the others go after the grace period (1 s).
    assert_eq!(goes(&sock, "10.10.1.1"), "globex");
    let mut zebra = Client::connect(&ns);
    zebra.send(&encode::frame(&[add("10.9.0.0/16", &via(globex, None))]));
    wait_until(Duration::from_secs(10), "the replay", || {
        fpm(&sock)["stale"] == 4
    });
    assert_eq!(
        goes(&sock, "10.10.1.1"),
        "globex",
        "stale, still forwarding"
    );
    wait_until(Duration::from_secs(10), "the stale routes to go", || {
        n(&fpm(&sock)["stale_removed"]) == 4
    });
    assert_eq!(goes(&sock, "10.9.1.1"), "globex");
    assert_eq!(goes(&sock, "10.10.1.1"), "port internet0 via 203.0.113.254");
    assert_eq!(goes(&sock, "10.66.1.1"), "port internet0 via 203.0.113.254");
    let f = fpm(&sock);
    assert_eq!(n(&f["routes"]), 1);
    assert_eq!(n(&f["connections"]), 2);
    zebra.close();
    wait_until(Duration::from_secs(10), "the close", || {
        fpm(&sock)["connected"] == 0
    });
    let out = bb.stop("TERM", Duration::from_secs(30));
    assert!(out.status.success(), "backbone exited with {}", out.status);

    // The final counters (--stats) carry the listener's, as ctl counters showed them.
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).unwrap())
            .expect("stats JSON");
    let s = &stats["fpm"];
    assert_eq!(n(&s["routes"]), 1, "{s}");
    assert_eq!(n(&s["stale"]), 0, "{s}");
    assert_eq!(n(&s["connections"]), 2, "{s}");
    assert_eq!(n(&s["connected"]), 0, "{s}");
    assert_eq!(n(&s["frames_refused"]), 4, "{s}");
    assert_eq!(n(&s["frames_cut"]), 1, "{s}");
    assert_eq!(n(&s["stale_removed"]), 4, "{s}");
    assert_eq!(n(&s["errors"]["unknown_interface"]), 2, "{s}");
    assert_eq!(n(&s["errors"]["bad_length"]), 1, "{s}");
    assert_eq!(n(&s["errors"]["unknown_message"]), 1, "{s}");
    for k in ["frames", "publications", "routes_added", "routes_removed"] {
        assert_eq!(
            s[k], f[k],
            "{k}: the final counters are the last ones shown"
        );
    }
}

/// zebra and staticd in `ns`, their sockets and files in `dir` (owned by the frr user,
/// which the daemons run as).
struct Frr {
    ns: String,
    dir: PathBuf,
    daemons: Vec<KillOnDrop>,
}

impl Frr {
    fn start(ns: &Netns, dir: &Path, port: u16) -> Frr {
        let dir = dir.join("frr");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("zebra.conf"),
            format!(
                "hostname edge\nlog file {}/zebra.log\n\
                 fpm address 127.0.0.1 port {port}\nno fpm use-next-hop-groups\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("staticd.conf"), "hostname edge\n").unwrap();
        let ok = Command::new("chown")
            .args(["-R", "frr:frr"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown frr:frr {}", dir.display());
        let mut frr = Frr {
            ns: ns.0.clone(),
            dir,
            daemons: Vec::new(),
        };
        frr.daemon("zebra", &["-M", "dplane_fpm_nl"]);
        frr.daemon("staticd", &[]);
        frr
    }

    /// Start a daemon in the foreground (no -d), so that this test holds its process.
    fn daemon(&mut self, name: &str, extra: &[&str]) {
        let d = self.dir.display().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(format!("/usr/lib/frr/{name}"))
            .args(extra)
            .args(["-f", &format!("{d}/{name}.conf")])
            .args(["-i", &format!("{d}/{name}.pid")])
            .args(["-z", &format!("{d}/zserv.api")])
            .args(["--vty_socket", &d])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .expect("start an FRR daemon");
        self.daemons.push(KillOnDrop(Some(child)));
        wait_until(Duration::from_secs(20), &format!("{name}'s vty"), || {
            self.dir.join(format!("{name}.vty")).exists()
        });
    }

    fn vtysh(&self, commands: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "vtysh", "--vty_socket"])
            .arg(&self.dir);
        for cmd in commands {
            c.args(["-c", cmd]);
        }
        let out = c.output().expect("vtysh");
        assert!(
            out.status.success(),
            "vtysh {commands:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn zebra_routes_reach_the_tables() {
    require(&[
        ("/usr/lib/frr/zebra", "frr"),
        ("/usr/lib/frr/staticd", "frr"),
        ("vtysh", "frr"),
    ]);
    let dir = scratch_dir("fpm-zebra");
    lab(&dir, "fpm-zebra", 60, &["10.1.0.5"]);
    let ns = Netns::new("zebra");
    let sock = dir.join("api.sock");
    let mut bb = appliance(&ns, &dir, &sock);
    let mut frr = Frr::start(&ns, &dir, 2620);
    wait_until(Duration::from_secs(30), "zebra's FPM connection", || {
        fpm(&sock)["connected"] == 1
    });
    // The links' connected routes go into their tunnels; the Internet port's own address
    // is the host's, left alone.
    wait_until(Duration::from_secs(10), "the connected routes", || {
        goes(&sock, "169.254.10.0") == "acme"
    });
    frr.vtysh(&[
        "configure terminal",
        "ip route 10.9.0.0/16 bb-acme",
        "ip route 10.67.0.0/16 169.254.20.0",
        "ip route 8.8.8.0/24 203.0.113.254 bb-internet0 onlink",
        "ip route 10.66.0.0/16 blackhole",
    ]);
    wait_until(Duration::from_secs(10), "zebra's static routes", || {
        goes(&sock, "8.8.8.8") == "port internet0 via 203.0.113.254"
            && goes(&sock, "10.66.0.1") == "blackhole"
    });
    assert_eq!(goes(&sock, "10.9.0.1"), "acme");
    assert_eq!(goes(&sock, "10.67.0.1"), "globex");
    let l = ctl(&sock, &["lookup", "10.9.0.1"]).unwrap();
    assert_eq!(l["route"]["source"], "frr");
    assert_eq!(l["route"]["protocol"], "static");
    let f = fpm(&sock);
    assert_eq!(n(&f["frames_refused"]), 0, "{f}");

    // A preferred route replaced by a backup: zebra sends one update (a removal and an
    // addition in one frame).
    frr.vtysh(&["configure terminal", "ip route 10.9.0.0/16 bb-globex 10"]);
    let frames = n(&fpm(&sock)["frames"]);
    frr.vtysh(&["configure terminal", "no ip route 10.9.0.0/16 bb-acme"]);
    wait_until(Duration::from_secs(10), "the update", || {
        goes(&sock, "10.9.0.1") == "globex"
    });
    let f = fpm(&sock);
    assert_eq!(n(&f["frames"]), frames + 1, "one frame: {f}");

    // zebra killed: the routes stay and forward; started again, it connects again.
    let zebra = frr.daemons.remove(0);
    drop(zebra);
    wait_until(Duration::from_secs(10), "the disconnection", || {
        fpm(&sock)["connected"] == 0
    });
    assert_eq!(goes(&sock, "10.9.0.1"), "globex");
    assert_eq!(goes(&sock, "8.8.8.8"), "port internet0 via 203.0.113.254");
    frr.daemon("zebra", &["-M", "dplane_fpm_nl"]);
    wait_until(Duration::from_secs(30), "zebra's second connection", || {
        let f = fpm(&sock);
        f["connected"] == 1 && n(&f["connections"]) == 2
    });
    // staticd gives the new zebra its routes again, which replays them: none stale.
    wait_until(Duration::from_secs(30), "the replay", || {
        fpm(&sock)["stale"] == 0
    });
    assert_eq!(goes(&sock, "10.9.0.1"), "globex");
    assert_eq!(goes(&sock, "10.67.0.1"), "globex");
    drop(frr);
    let out = bb.stop("TERM", Duration::from_secs(30));
    assert!(out.status.success(), "backbone exited with {}", out.status);
}
