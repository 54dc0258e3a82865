//! Port faults in the virtio lab: backbone on two virtio-user NICs (server side of their
//! vhost-user sockets), each with a dpdk-testpmd peer on the vhost side, as in a VM.
//!
//! Peer A replays client traffic endlessly into the client port: acme -> initech through
//! the tunnels (back out of the client port) and initech -> the Internet (out of the
//! Internet port, to peer B). Peer B is the Internet uplink. While traffic flows, peer B
//! stops, and later a new peer B connects: the appliance keeps forwarding on the client
//! port all along, counts what the Internet port could not send, sees the link go down and
//! come back, and resumes sending there without a restart.
//!
//! Needs hugepages (vhost-user shares memory with virtio-user): scripts/setup.sh reserves
//! them. Where there are none the test fails and says so; it never skips.

use backbone_tests::{backbone_bin, repo_root, scapy, scratch_dir, wait_for, KillOnDrop};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn spawn(cmd: &mut Command, log: &Path, what: &'static str) -> KillOnDrop {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    KillOnDrop(Some(
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}")),
    ))
}

fn require_hugepages() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        free >= 400,
        "the virtio lab needs about 800 MiB of free 2 MiB hugepages (vhost-user shares \
         memory with virtio-user), {free} pages are free: run scripts/setup.sh as root"
    );
    assert!(
        Command::new("sh")
            .args(["-c", "command -v dpdk-testpmd"])
            .output()
            .is_ok_and(|o| o.status.success()),
        "the virtio lab needs dpdk-testpmd (Debian package dpdk): run scripts/setup.sh"
    );
}

/// testpmd on the vhost side: io forwarding between its two ports, a stats period so that
/// it runs without a terminal, few mbufs, its own hugepage files.
fn testpmd(dir: &Path, prefix: &str, vdevs: &[String]) -> Command {
    let mut c = Command::new("dpdk-testpmd");
    c.current_dir(dir).args([
        "-l",
        "0-1",
        "-m",
        "256",
        "--no-pci",
        "--single-file-segments",
        &format!("--file-prefix={prefix}"),
        "--log-level=lib.eal:error",
    ]);
    c.args(vdevs);
    c.args([
        "--",
        "--forward-mode=io",
        "--auto-start",
        "--stats-period=1",
        "--nb-cores=1",
        "--total-num-mbufs=8192",
    ]);
    c
}

/// RX packets of testpmd's port `port` in the statistics it prints every second while it
/// runs (`--stats-period=1`), the latest of them; none before the first.
fn testpmd_live_rx(log: &Path, port: u32) -> Option<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let at = text.rfind(&format!("NIC statistics for port {port} "))?;
    text[at..]
        .split_whitespace()
        .skip_while(|w| *w != "RX-packets:")
        .nth(1)?
        .parse()
        .ok()
}

/// RX packets of testpmd's port `port` in its final statistics.
fn testpmd_rx(log: &Path, port: u32) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let head = format!("Forward statistics for port {port}");
    let Some(at) = text.rfind(&head) else {
        panic!(
            "no final statistics for port {port} in {}:\n{text}",
            log.display()
        );
    };
    text[at..]
        .split_whitespace()
        .skip_while(|w| *w != "RX-packets:")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("RX-packets of port {port} in {}", log.display()))
}

/// The appliance's live per-port pipeline counters: name -> (rx, tx).
fn port_counters(sock: &Path) -> Vec<(String, u64, u64)> {
    let out = Command::new(backbone_bin())
        .arg("ctl")
        .arg(format!("--socket={}", sock.display()))
        .args(["--json", "counters"])
        .output()
        .expect("backbone ctl");
    assert!(
        out.status.success(),
        "backbone ctl counters: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("counters JSON");
    v["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["rx_packets"].as_u64().unwrap_or(0),
                p["tx_packets"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// One port's live counters as the control API shows them.
fn live_port(sock: &Path, port: &str) -> Value {
    let out = Command::new(backbone_bin())
        .arg("ctl")
        .arg(format!("--socket={}", sock.display()))
        .args(["--json", "counters"])
        .output()
        .expect("backbone ctl");
    let v: Value = serde_json::from_slice(&out.stdout).expect("counters JSON");
    v["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == port))
        .cloned()
        .unwrap_or_else(|| panic!("no port {port} in {v}"))
}

/// Poll `port`'s live counters until `cond` holds (at most 10 s); returns them.
fn live_until(sock: &Path, port: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(10), what, || {
        let p = live_port(sock, port);
        if cond(&p) {
            Ok(p)
        } else {
            Err(format!("{port} live counters {p}"))
        }
    })
}

fn tx_of(c: &[(String, u64, u64)], port: &str) -> u64 {
    c.iter()
        .find(|p| p.0 == port)
        .map(|p| p.2)
        .unwrap_or_else(|| panic!("no port {port} in {c:?}"))
}

/// Wait until `port`'s pipeline TX count passes `above`, or fail saying `what`.
fn wait_tx(sock: &Path, port: &str, above: u64, what: &str, log: &Path) -> u64 {
    wait_for(
        Duration::from_secs(30),
        &format!("{what}: {port} sending more than {above}"),
        || {
            let n = tx_of(&port_counters(sock), port);
            if n > above {
                Ok(n)
            } else {
                Err(format!(
                    "{n}; appliance log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ))
            }
        },
    )
}

fn traffic(path: &Path) {
    let script = format!(
        "from scapy.all import *\n\
         E='02:00:00:00:00:01'\n\
         p=[]\n\
         for i in range(64):\n\
         \x20   p.append(Ether(src='02:00:00:00:0a:0a',dst=E)/IP(src='198.51.100.10',dst='192.0.2.1')/GRE(key_present=1,key=100)/IP(src='10.1.0.%d'%(i+1),dst='10.3.0.%d'%(i+1))/UDP(sport=1000+i,dport=5001)/Raw(b'x'*32))\n\
         \x20   p.append(Ether(src='02:00:00:00:0c:0c',dst=E)/IP(src='198.51.100.30',dst='192.0.2.1')/IP(src='10.3.0.%d'%(i+1),dst='8.8.%d.1'%i)/UDP(sport=2000+i,dport=53)/Raw(b'y'*32))\n\
         wrpcap('{}',p)\n",
        path.display()
    );
    scapy(&script);
}

/// Remove this test's hugepage files (single-file segments outlive their process).
fn remove_hugepage_files(prefixes: &[String]) {
    let Ok(entries) = std::fs::read_dir("/dev/hugepages") else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

struct HugepageFiles(Vec<String>);

impl Drop for HugepageFiles {
    fn drop(&mut self) {
        remove_hugepage_files(&self.0);
    }
}

#[test]
fn a_peer_that_stops_and_returns_costs_only_its_own_port() {
    require_hugepages();
    let dir = scratch_dir("port-faults");
    let pid = std::process::id();
    let prefixes: Vec<String> = ["bb", "pa", "pb1", "pb2"]
        .iter()
        .map(|p| format!("bbt-pf{p}-{pid}"))
        .collect();
    let _files = HugepageFiles(prefixes.clone());
    let input = dir.join("clients-in.pcap");
    traffic(&input);
    let (s0, s1, ctl) = (dir.join("s0"), dir.join("s1"), dir.join("ctl.sock"));
    let bb_log = dir.join("backbone.log");

    let mut bb = spawn(
        Command::new(backbone_bin())
            .current_dir(&dir)
            .env("RUST_LOG", "info")
            .arg("run")
            .arg("--config")
            .arg(repo_root().join("demo/lab.toml"))
            .args(["--stats", "stats.json", "--control-socket"])
            .arg(&ctl)
            .args([
                "--",
                "-l",
                "0-1",
                "-m",
                "256",
                "--no-pci",
                "--single-file-segments",
                &format!("--file-prefix={}", prefixes[0]),
                "--log-level=lib.eal:error",
                &format!(
                    "--vdev=net_virtio_user0,path={},server=1,queues=1",
                    s0.display()
                ),
                &format!(
                    "--vdev=net_virtio_user1,path={},server=1,queues=1",
                    s1.display()
                ),
            ]),
        &bb_log,
        "backbone",
    );
    // A virtio-user port in server mode waits for its peer before the next port is set up:
    // socket 0, peer A, socket 1, peer B, then the control socket once forwarding starts.
    let created = |path: &Path| {
        wait_for(
            Duration::from_secs(30),
            &format!("backbone to create {}", path.display()),
            || {
                if path.exists() {
                    Ok(())
                } else {
                    Err(std::fs::read_to_string(&bb_log).unwrap_or_default())
                }
            },
        );
    };
    created(&s0);

    let peer_a_log = dir.join("peer-a.log");
    let mut peer_a = spawn(
        &mut testpmd(
            &dir,
            &prefixes[1],
            &[
                format!(
                    "--vdev=net_pcap0,rx_pcap={},tx_pcap=/dev/null,infinite_rx=1",
                    input.display()
                ),
                format!("--vdev=net_vhost0,iface={},client=1,queues=1", s0.display()),
            ],
        ),
        &peer_a_log,
        "peer A (testpmd)",
    );
    created(&s1);
    let peer_b = |n: usize| -> (KillOnDrop, PathBuf) {
        let log = dir.join(format!("peer-b{n}.log"));
        let p = spawn(
            &mut testpmd(
                &dir,
                &prefixes[1 + n],
                &[
                    format!("--vdev=net_vhost1,iface={},client=1,queues=1", s1.display()),
                    "--vdev=net_null1,no-rx=1".to_owned(),
                ],
            ),
            &log,
            "peer B (testpmd)",
        );
        (p, log)
    };
    let (mut b1, b1_log) = peer_b(1);
    created(&ctl);

    // Both peers up: traffic flows out of both ports.
    wait_tx(&ctl, "client0", 1000, "both peers up", &bb_log);
    wait_tx(&ctl, "internet0", 1000, "both peers up", &bb_log);

    // Peer B stops, and the appliance sees its link go down (live).
    let stopped = Duration::from_secs(20);
    assert!(
        b1.stop("INT", stopped).status.success(),
        "peer B exited with an error"
    );
    let down = live_until(&ctl, "internet0", "link down, live", |p| {
        p["link_up"] == false && p["link_changes"].as_u64() >= Some(1)
    });
    let refused = down["tx_dropped"].as_u64().expect("live tx_dropped");
    // The client port keeps forwarding while the Internet port's link is down, and the
    // live counters show the Internet port's TX refusals growing.
    let c0 = tx_of(&port_counters(&ctl), "client0");
    let c1 = wait_tx(&ctl, "client0", c0 + 1000, "peer B away", &bb_log);
    let during = c1 - c0;
    live_until(&ctl, "internet0", "TX refusals growing, live", |p| {
        p["tx_dropped"].as_u64() > Some(refused)
    });

    // A new peer B connects: the appliance resumes sending there, without a restart.
    let (mut b2, b2_log) = peer_b(2);
    let up = live_until(&ctl, "internet0", "link up again, live", |p| {
        p["link_up"] == true && p["link_changes"].as_u64() >= Some(2)
    });
    let sent = up["tx_sent"].as_u64().expect("live tx_sent");
    live_until(&ctl, "internet0", "sending again, live", |p| {
        p["tx_sent"].as_u64() > Some(sent)
    });
    // ... and the new peer B receives it (its statistics, printed every second).
    wait_for(
        Duration::from_secs(30),
        "the new peer B to receive packets",
        || match testpmd_live_rx(&b2_log, 0) {
            Some(n) if n > 0 => Ok(()),
            n => Err(format!("RX-packets {n:?} in {}", b2_log.display())),
        },
    );

    // The appliance first (its peers still there, so its ports close cleanly), then A, B.
    assert!(
        bb.stop("TERM", stopped).status.success(),
        "backbone exited with an error:\n{}",
        std::fs::read_to_string(&bb_log).unwrap_or_default()
    );
    peer_a.stop("INT", stopped);
    b2.stop("INT", stopped);
    let log = std::fs::read_to_string(&bb_log).unwrap_or_default();
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stats.json")).expect("stats.json"))
            .expect("stats JSON");
    let port = |name: &str| -> Value {
        stats["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no port {name} in {stats}"))
    };
    let (client, internet) = (port("client0"), port("internet0"));
    let n = |p: &Value, f: &str| p[f].as_u64().unwrap_or_else(|| panic!("{f} in {p}"));
    let b1_rx = testpmd_rx(&b1_log, 0);
    let b2_rx = testpmd_rx(&b2_log, 0);
    println!(
        "client0 sent {} ({during} while peer B was away), dropped {}; internet0 sent {}, \
         dropped {} (TX refused while peer B was away), link changes {}; peer B received \
         {b1_rx} before it stopped and {b2_rx} after it came back",
        n(&client, "tx_sent"),
        n(&client, "tx_dropped"),
        n(&internet, "tx_sent"),
        n(&internet, "tx_dropped"),
        n(&internet, "link_changes"),
    );
    // The healthy port: forwarded all along, refused nothing.
    assert!(during > 1000, "client0 while peer B was away: {during}");
    assert_eq!(n(&client, "tx_dropped"), 0, "{client}");
    assert_eq!(n(&client, "link_changes"), 0, "{client}");
    // The faulty port: every packet routed there was sent or counted as refused.
    for p in [&client, &internet] {
        assert_eq!(
            n(p, "pipeline_tx_packets"),
            n(p, "tx_sent") + n(p, "tx_dropped"),
            "routed out = sent + refused: {p}"
        );
    }
    assert!(n(&internet, "tx_dropped") > 0, "{internet}");
    assert!(
        n(&internet, "link_changes") >= 2,
        "down and up again: {internet}"
    );
    assert!(log.contains("link down"), "the link loss is logged:\n{log}");
    // Both peers B received traffic: the port came back by itself.
    assert!(b1_rx > 0, "peer B before it stopped");
    assert!(
        b2_rx > 0,
        "peer B after it came back: the port did not resume"
    );
    // The pipeline itself dropped nothing.
    for (reason, v) in stats["drops"].as_object().expect("drops") {
        assert_eq!(v.as_u64(), Some(0), "drops {reason}: {}", stats["drops"]);
    }
    assert!(
        !log.contains("still in use"),
        "mbufs left out at exit:\n{log}"
    );
}
