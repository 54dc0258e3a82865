//! The edges lab (scripts/edges-lab.sh) as a test: one policy in etcd, two edges whose
//! FRR exchange the clients they host by iBGP through a route reflector, client sites
//! with real routing daemons, site C hosted by both edges (e2 primary, e1 backup) with a
//! backbone appliance as its router (a CPE: LAN, WAN with the Internet, a tunnel to each
//! edge, FRR beside it as `backbone frr-config` writes it for a client site). Three
//! appliances share the machine's two cores by adaptive polling.
//!
//! Checked, each from the daemons, the kernels or the appliances' counters, and the
//! expectations from the policy (where each client is placed), never from what the lab
//! happens to do:
//! - every session is Established: the route reflector's with both edges, each edge's
//!   with its clients, the CPE's two;
//! - each router holds every other site's prefix through its tunnel (the CPE's tables,
//!   from zebra over FPM, through its primary, e2), and each edge routes a client hosted
//!   elsewhere across the core to the edge of its primary placement, one hosted here into
//!   its tunnel;
//! - every pair of hosts reaches every other, and the per-edge, per-tunnel counters show
//!   which edges each pair's requests and replies crossed: the same both ways, those the
//!   placement says; the CPE's tunnel counters show C's traffic in its primary tunnel
//!   both ways; `backbone-policy audit paths` says the same;
//! - site C's host reaches a host of the Internet natively: the CPE routes it out of its
//!   WAN port, whose counters carry the pings both ways while no tunnel's (the CPE's or
//!   the edges') do;
//! - the dual-homed site's primary tunnel cut (the underlay's bridge ports of the CPE and
//!   of e2 isolated from each other: nothing between them passes, everything else does):
//!   BFD takes the session down, e2 withdraws C's prefix, e1 routes it into its own
//!   tunnel to C and announces it, e2 routes it across the core to e1, the CPE sends
//!   through its backup tunnel: both directions move to e1 (counters, the CPE's too, and
//!   the audit agree), and back when the cut heals. The times and the pings lost are
//!   reported;
//! - the dual-homed site's primary edge stops (e2's appliance frozen): the reflector finds
//!   it down by BFD and withdraws its routes, e1 routes C into its own tunnel, the CPE
//!   sends through its backup; host A's pings to C are answered again within 1 s, and
//!   e1's counters show both directions through e1 alone; back when it thaws;
//! - a bad policy document (a key that does not fit 32 bits) is refused whole, naming the
//!   field; etcd's revision does not move and the client it would add is nowhere;
//! - etcd stopped and started again: both agents say so and resume from their revision;
//!   meanwhile pings across the core lose nothing and no appliance's tables change;
//! - a new client (site D at e1) applied to the policy: hosts A, B and C each start
//!   pinging D the moment their router learns D's prefix; none of those pings is lost
//!   (make before announce, across the core too); removed again, its prefix is withdrawn
//!   from every router and its tunnel goes;
//! - the CPE's WAN address changes (`backbone ctl wan-address`), then the policy's remote
//!   for site C (`backbone-policy set-remote`): the edges' tunnels to C follow, and pings from
//!   A to C go through the tunnels again (the counters of every pair with C, the CPE's too); the time
//!   from the address change to the first answered ping, and the pings lost, are
//!   reported. Before it, set-remote with an address inside another client's prefixes
//!   is refused, naming the field, and writes nothing.
//!
//! Needs root, network namespaces, /dev/net/tun, FRR, BIRD and etcd (scripts/setup.sh).
//! Where they are missing the test fails and says why: it never skips.

use backbone_tests::lab::{self, ping_replies, port_counter, signal, text, tunnel_counter, Lab};
use backbone_tests::{policy_bin, wait_for, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sites that are in the policy from the start: letter, host address, prefix, the
/// edge (1 or 2) of its primary placement.
const SITES: [(char, &str, &str, u8); 3] = [
    ('a', "10.1.0.10", "10.1.0.0/16", 1),
    ('b', "10.2.0.10", "10.2.0.0/16", 2),
    ('c', "10.3.0.10", "10.3.0.0/16", 2),
];

/// Echo requests a pair's check sends, and their ICMP payload: each is 1,028 bytes of
/// IPv4, far above what the sessions' BGP and BFD packets add meanwhile.
const PINGS: u64 = 20;
const PAYLOAD: u64 = 1000;
const PACKET: u64 = PAYLOAD + 8 + 20;

const ETCD: &str = "http://127.0.0.1:2379";

/// A host of the Internet, beside the underlay (scripts/edges-lab.sh).
const WWW: &str = "192.0.2.80";

fn ctl(lab: &Lab, e: u8, args: &[&str]) -> Value {
    lab.ctl_in(
        &format!("e{e}"),
        &lab.dir.join(format!("e{e}/control.sock")),
        args,
    )
}

/// What edge `e`'s tables do with `dst`: `"tunnel NAME"`, `"core NEXT-HOP"` or why not.
fn lookup(lab: &Lab, e: u8, dst: &str) -> String {
    let v = ctl(lab, e, &["lookup", dst]);
    match (
        v["via"]["tunnel"].as_str(),
        v["via"]["port"].as_str(),
        v["via"]["next_hop"].as_str(),
    ) {
        (Some(t), _, _) => format!("tunnel {t}"),
        (None, Some("core0"), Some(nh)) => format!("core {nh}"),
        _ => format!("{v}"),
    }
}

/// The tunnel a site's traffic uses at edge `e`.
fn tunnel(site: char) -> String {
    format!("site-{site}")
}

/// `backbone ctl --json ARGS` of site C's router, the CPE.
fn cpe(lab: &Lab, args: &[&str]) -> Value {
    lab.ctl_in("rc", &lab.dir.join("c/control.sock"), args)
}

/// What the CPE's tables do with `dst`: `"tunnel NAME"`, `"port NAME"` or why neither;
/// and the prefix of the route that decided it.
fn cpe_lookup(lab: &Lab, dst: &str) -> (String, String) {
    let v = cpe(lab, &["lookup", dst]);
    let via = match (v["via"]["tunnel"].as_str(), v["via"]["port"].as_str()) {
        (Some(t), _) => format!("tunnel {t}"),
        (None, Some(p)) => format!("port {p}"),
        _ => format!("{v}"),
    };
    (via, v["route"]["prefix"].as_str().unwrap_or("").to_owned())
}

/// `Ok` when the CPE routes `host` by `prefix` (a route zebra gave it) into its tunnel to
/// edge `e`.
fn cpe_routes(lab: &Lab, host: &str, prefix: &str, e: u8) -> Result<(), String> {
    let v = cpe(lab, &["lookup", host]);
    let want = cpe_tunnel(e);
    if v["via"]["tunnel"] == want.as_str()
        && v["route"]["prefix"] == prefix
        && v["route"]["source"] == "frr"
    {
        Ok(())
    } else {
        Err(format!("the CPE's lookup {host}: {v}"))
    }
}

/// Cut (or heal) the underlay between the CPE and e2 only: their bridge ports isolated
/// from each other (an isolated port forwards to no other isolated port), so that nothing
/// of C's primary tunnel passes while every other path does.
fn cut(lab: &Lab, on: bool) {
    for port in ["rc", "e2"] {
        let o = lab.exec(
            "ul",
            &[
                "bridge",
                "link",
                "set",
                "dev",
                port,
                "isolated",
                if on { "on" } else { "off" },
            ],
        );
        assert!(o.status.success(), "isolate {port}: {}", text(&o));
    }
}

/// The CPE's tunnel to edge `e`.
fn cpe_tunnel(e: u8) -> String {
    format!("to-e{e}")
}

/// The CPE's counters, from a copy its workers made after this call.
fn cpe_counters(lab: &Lab) -> Value {
    lab::fresh_counters(|args| cpe(lab, args))
}

/// How much a counter grew between two copies of the CPE's counters: a tunnel's, or a
/// port's (`port:NAME`).
fn cpe_grew(before: &Value, after: &Value, what: &str, field: &str) -> u64 {
    match what.strip_prefix("port:") {
        Some(p) => port_counter(after, p, field).saturating_sub(port_counter(before, p, field)),
        None => {
            tunnel_counter(after, what, field).saturating_sub(tunnel_counter(before, what, field))
        }
    }
}

/// What shows that site C is served through edge `e` (2: its primary, 1: its backup), each
/// with the condition to wait for: e`e` routes C into its own tunnel, the other edge routes
/// C across the core to e`e`, and the CPE sends the other sites' traffic into its tunnel
/// to e`e`.
fn c_through(lab: &Lab, e: u8) -> Vec<(String, Box<dyn Fn() -> bool + '_>)> {
    let other = 3 - e;
    vec![
        (
            format!("e{e} routes C into its own tunnel"),
            Box::new(move || lookup(lab, e, "10.3.0.10") == "tunnel site-c"),
        ),
        (
            format!("e{other} routes C across the core to e{e}"),
            Box::new(move || lookup(lab, other, "10.3.0.10") == format!("core 10.255.0.{e}")),
        ),
        (
            format!("the CPE sends through its tunnel to e{e}"),
            Box::new(move || {
                cpe_routes(lab, "10.1.0.10", "10.1.0.0/16", e).is_ok()
                    && cpe_routes(lab, "10.2.0.10", "10.2.0.0/16", e).is_ok()
            }),
        ),
    ]
}

/// Both edges' counters, each from a copy its workers made after this call.
fn counters(lab: &Lab) -> [Value; 2] {
    [1, 2].map(|e| lab::fresh_counters(|args| ctl(lab, e, args)))
}

/// The edges a pair's echo requests (forward) and replies (return) crossed, by the
/// counters: where `from`'s tunnel received and where `to`'s tunnel sent (forward), where
/// `to`'s tunnel received and `from`'s sent (return). Each must be one edge; any other
/// tunnel that carried a pair's worth of bytes fails the test.
fn crossed(before: &[Value; 2], after: &[Value; 2], from: char, to: char) -> (Vec<u8>, Vec<u8>) {
    let grew = |e: u8, t: &str, f: &str| {
        let i = usize::from(e - 1);
        tunnel_counter(&after[i], t, f).saturating_sub(tunnel_counter(&before[i], t, f))
    };
    let enough = PINGS * PACKET;
    let at = |t: &str, f: &str| -> u8 {
        let edges: Vec<u8> = [1, 2]
            .into_iter()
            .filter(|&e| grew(e, t, f) >= enough)
            .collect();
        assert_eq!(
            edges.len(),
            1,
            "{from} -> {to}: {t} {f} grew by a pair's worth ({enough} bytes) at edges {edges:?} \
             (e1 {}, e2 {})",
            grew(1, t, f),
            grew(2, t, f)
        );
        edges[0]
    };
    let (tf, tt) = (tunnel(from), tunnel(to));
    // Nothing else carried the pair's traffic.
    for e in [1u8, 2] {
        for (site, _, _, _) in SITES {
            for f in ["rx_bytes", "tx_bytes"] {
                let t = tunnel(site);
                if t == tf || t == tt {
                    continue;
                }
                let g = grew(e, &t, f);
                assert!(g < enough / 2, "{from} -> {to}: e{e} {t} {f} grew by {g}");
            }
        }
    }
    let path = |first: u8, last: u8| {
        if first == last {
            vec![first]
        } else {
            vec![first, last]
        }
    };
    let forward = path(at(&tf, "rx_bytes"), at(&tt, "tx_bytes"));
    let back = path(at(&tt, "rx_bytes"), at(&tf, "tx_bytes"));
    // Across the core exactly when two edges are crossed, both ways.
    for e in [1u8, 2] {
        let i = usize::from(e - 1);
        for f in ["rx_bytes", "tx_bytes"] {
            let g = port_counter(&after[i], "core0", f) - port_counter(&before[i], "core0", f);
            if forward.len() == 2 {
                assert!(
                    g >= enough,
                    "{from} -> {to}: e{e} core0 {f} grew by {g} only"
                );
            } else {
                assert!(g < enough / 2, "{from} -> {to}: e{e} core0 {f} grew by {g}");
            }
        }
    }
    (forward, back)
}

/// For each ordered pair of sites, the edges its forward and its return traffic crossed.
type Crossings = BTreeMap<(char, char), (Vec<u8>, Vec<u8>)>;

/// `PINGS` pings of `PAYLOAD` bytes from namespace `host` to `dst`, 10 ms apart: whether
/// every one was answered, and ping's output.
fn pings_answered(lab: &Lab, host: &str, dst: &str) -> (bool, String) {
    let (count, size) = (PINGS.to_string(), PAYLOAD.to_string());
    let o = lab.exec(
        host,
        &[
            "ping", "-n", "-q", "-c", &count, "-i", "0.01", "-W", "2", "-s", &size, dst,
        ],
    );
    let out = text(&o);
    (out.contains(&format!("{PINGS} received")), out)
}

/// [`pings_answered`], every one required (`what` names the pair in the failure).
fn ping_all(lab: &Lab, host: &str, dst: &str, what: &str) {
    let (all, out) = pings_answered(lab, host, dst);
    assert!(all, "{what}: {out}");
}

/// Every ordered pair of hosts pings the other (`PINGS` requests of `PAYLOAD` bytes), one
/// pair at a time; the edges each pair crossed, both ways, by the counters. A pair with
/// site C must have crossed the CPE's tunnel to edge `c_edge` both ways, and not its
/// other tunnel.
fn pairs(lab: &Lab, sites: &[char], c_edge: u8) -> Crossings {
    let mut out = BTreeMap::new();
    let mut before = counters(lab);
    let mut cpe_before = cpe_counters(lab);
    for &from in sites {
        for &to in sites {
            if from == to {
                continue;
            }
            let ip = format!("10.{}.0.10", u32::from(to) - u32::from('a') + 1);
            // A pair that lost a ping is sent once more on fresh counters: the check is
            // of the paths the network has settled on, and a route still moving (a late
            // update after a failover, on a loaded machine) may lose one in flight.
            let (all, said) = pings_answered(lab, &format!("h{from}"), &ip);
            if !all {
                eprintln!("host {from} -> host {to} lost a ping, sent again: {said}");
                before = counters(lab);
                cpe_before = cpe_counters(lab);
                ping_all(
                    lab,
                    &format!("h{from}"),
                    &ip,
                    &format!("host {from} -> host {to}, sent again"),
                );
            }
            let after = counters(lab);
            out.insert((from, to), crossed(&before, &after, from, to));
            before = after;
            if from == 'c' || to == 'c' {
                let cpe_after = cpe_counters(lab);
                let enough = PINGS * PACKET;
                for e in [1u8, 2] {
                    let t = cpe_tunnel(e);
                    for f in ["tx_bytes", "rx_bytes"] {
                        let g = cpe_grew(&cpe_before, &cpe_after, &t, f);
                        if e == c_edge {
                            assert!(g >= enough, "{from} -> {to}: the CPE's {t} {f} grew by {g}");
                        } else {
                            assert!(
                                g < enough / 2,
                                "{from} -> {to}: the CPE's {t} {f} grew by {g}"
                            );
                        }
                    }
                }
                cpe_before = cpe_after;
            }
        }
    }
    out
}

fn edge_names(edges: &[u8]) -> Vec<String> {
    edges.iter().map(|e| format!("e{e}")).collect()
}

/// `backbone-policy audit paths --json`: each ordered pair's verdict and edges.
fn audit(lab: &Lab) -> Vec<Value> {
    let bin = policy_bin();
    let out = lab.exec(
        "mgmt",
        &[
            &bin.to_string_lossy(),
            "audit",
            "paths",
            "--json",
            "--etcd",
            ETCD,
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Wait until the audit sees every pair of `seen` as the counters did (the agents
/// publish what their edges forward when the tables change).
fn audit_agrees(lab: &Lab, seen: &Crossings) -> usize {
    wait_for(
        Duration::from_secs(20),
        "the audit to agree with the counters",
        || {
            let a = audit(lab);
            for ((from, to), (forward, back)) in seen {
                let p = a
                    .iter()
                    .find(|p| p["from"] == tunnel(*from) && p["to"] == tunnel(*to))
                    .ok_or_else(|| format!("no pair {from} -> {to} in {a:?}"))?;
                let want = serde_json::json!({
                    "forward": edge_names(forward),
                    "return": edge_names(back),
                    "verdict": "symmetric",
                });
                for k in ["forward", "return", "verdict"] {
                    if p[k] != want[k] {
                        return Err(format!("{from} -> {to}: audit {p}, counters {want}"));
                    }
                }
            }
            Ok(a.len())
        },
    )
}

/// etcd's current revision (every write raises it).
fn etcd_revision(lab: &Lab) -> u64 {
    let out = lab.exec(
        "mgmt",
        &[
            "etcdctl",
            "--endpoints",
            ETCD,
            "endpoint",
            "status",
            "-w",
            "json",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("etcdctl endpoint status: {e}: {}", text(&out)));
    v[0]["Status"]["header"]["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no revision in {v}"))
}

/// The names of edge `e`'s tunnels.
fn tunnel_names(lab: &Lab, e: u8) -> Vec<String> {
    let v = ctl(lab, e, &["tunnels"]);
    v["tunnels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// What edge `e`'s agent logged so far.
fn agent_log(lab: &Lab, e: u8) -> String {
    std::fs::read_to_string(lab.dir.join(format!("agent-e{e}.log"))).unwrap_or_default()
}

/// Assert each pair crossed, both ways, the edges of the sites' entry points `at`.
fn assert_paths(seen: &Crossings, at: impl Fn(char) -> u8) {
    for ((from, to), (forward, back)) in seen {
        let (f, t) = (at(*from), at(*to));
        let want = if f == t { vec![f] } else { vec![f, t] };
        assert_eq!(forward, &want, "{from} -> {to} forward");
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(back, &rev, "{from} -> {to} return");
    }
}

/// A continuous ping (`ping -D -i INTERVAL`) in host `from`'s namespace, its output
/// collected as it comes.
struct Pinger {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pinger {
    fn start(lab: &Lab, from: char, to: &str, interval: &str, count: Option<u32>) -> Pinger {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-h{from}", lab.prefix)])
            .args(["ping", "-n", "-D", "-i", interval, "-W", "1"]);
        if let Some(c) = count {
            cmd.args(["-c", &c.to_string()]);
        }
        let mut child = cmd
            .arg(to)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().expect("ping's stdout");
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
        Pinger {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn replies(&self) -> Vec<(f64, u64)> {
        ping_replies(
            &self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .join("\n"),
        )
    }

    /// Stop it (SIGINT, unless it ended by itself): (requests sent, replies, its output).
    ///
    /// The requests counted as sent are those whose reply was due (`lab::requests_due`):
    /// the last one, in flight when ping was interrupted, is not.
    fn stop(mut self) -> (u64, u64, String) {
        let interrupted_at = if matches!(self.child.try_wait(), Ok(None)) {
            let at = lab::unix_now();
            signal(&self.child.id().to_string(), "INT");
            Some(at)
        } else {
            None
        };
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let out = self
            .lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n");
        // ping's summary: "N packets transmitted, M received".
        let sent = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let replies = ping_replies(&out);
        let due = lab::requests_due(sent, &replies, interrupted_at);
        (due, replies.len() as u64, out)
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `backbone-policy apply FILE` (a file of the lab's state directory); fails when refused.
fn apply(lab: &Lab, file: &str) {
    let policy = policy_bin();
    let out = lab.exec(
        "mgmt",
        &[
            &policy.to_string_lossy(),
            "apply",
            &lab.dir.join(file).to_string_lossy(),
            "--etcd",
            ETCD,
        ],
    );
    assert!(out.status.success(), "policy apply {file}: {}", text(&out));
}

/// The CPE's WAN address changes (a new lease), in the two steps an operator takes: the
/// CPE is given it (`ctl wan-address`: its tunnels send from it at once), then the policy
/// is given it as site C's remote (`backbone-policy set-remote`: the agents replace the
/// edges' tunnels to C). In between the edges drop what C sends (`no_tunnel`: its source is not the
/// tunnel's remote yet). Host A pings host C 20 times a second throughout; then every
/// pair goes through the tunnels again, as placed (the counters, the CPE's too).
fn wan_change(lab: &Lab, summary: &mut Vec<String>) {
    const OLD: &str = "172.16.0.13";
    const NEW: &str = "172.16.0.23";
    let set_remote = |address: &str| {
        lab.exec(
            "mgmt",
            &[
                &policy_bin().to_string_lossy(),
                "set-remote",
                "site-c",
                address,
                "--etcd",
                ETCD,
            ],
        )
    };
    let show = || {
        text(&lab.exec(
            "mgmt",
            &[&policy_bin().to_string_lossy(), "show", "--etcd", ETCD],
        ))
    };
    // An address inside another client's prefixes: refused whole, the field named, the
    // stored document (and its revision) as it was.
    let stored = show();
    assert!(stored.contains("remote = \"172.16.0.13\""), "{stored}");
    let out = set_remote("10.1.0.5");
    assert!(
        !out.status.success() && text(&out).contains("client[2] \"site-c\".remote"),
        "set-remote 10.1.0.5: {}",
        text(&out)
    );
    assert_eq!(show(), stored, "a refused set-remote wrote: {}", text(&out));
    let ping = Pinger::start(lab, 'a', "10.3.0.10", "0.05", None);
    // A steady flow first: the last 10 requests answered.
    wait_until(
        Duration::from_secs(30),
        "pings from A to C answered before the change",
        || {
            let r = ping.replies();
            let newest = r.iter().map(|x| x.1).max().unwrap_or(0);
            newest >= 10 && (newest - 9..=newest).all(|s| r.iter().any(|x| x.1 == s))
        },
    );
    let before = counters(lab);
    let t0 = lab::unix_now();
    let t = Instant::now();
    let g = cpe(lab, &["wan-address", "--port", "wan", OLD, NEW]);
    assert!(g["generation"].as_u64().is_some(), "{g}");
    for tun in cpe(lab, &["tunnels"])["tunnels"]
        .as_array()
        .expect("the CPE's tunnels")
    {
        assert_eq!(tun["local"], NEW, "{tun}");
    }
    let out = set_remote(NEW);
    assert!(out.status.success(), "policy set-remote: {}", text(&out));
    let applied = t.elapsed();
    let remote_at = |e: u8| {
        ctl(lab, e, &["tunnels"])["tunnels"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "site-c").cloned())
            .map(|x| x["remote"].clone())
            .unwrap_or(Value::Null)
    };
    wait_until(
        Duration::from_secs(30),
        "both edges' tunnels to C toward the new address",
        || remote_at(1) == NEW && remote_at(2) == NEW,
    );
    let followed = t.elapsed().as_secs_f64();
    // Where the gap outlasted BFD the sessions went down and C moved to its backup, and
    // back once they are up again: C's traffic as placed (the CPE into its primary, e2
    // into its tunnel to C, e1 across the core to e2), and still so after 10 pings in a
    // row were answered (half a second: longer than BFD takes to find a session down).
    let as_placed = || -> Result<(), String> {
        cpe_routes(lab, "10.1.0.10", "10.1.0.0/16", 2)?;
        cpe_routes(lab, "10.2.0.10", "10.2.0.0/16", 2)?;
        for (e, want) in [(2, "tunnel site-c"), (1, "core 10.255.0.2")] {
            let got = lookup(lab, e, "10.3.0.10");
            if got != want {
                return Err(format!("e{e}: {got}"));
            }
        }
        Ok(())
    };
    let in_a_row = |after: f64| {
        let r = ping.replies();
        let newest = r.iter().filter(|x| x.0 > after).map(|x| x.1).max();
        newest.is_some_and(|n| {
            n >= 10 && (n - 9..=n).all(|s| r.iter().any(|x| x.1 == s && x.0 > after))
        })
    };
    let placed = wait_for(
        Duration::from_secs(60),
        "C's traffic as placed again, for 10 pings in a row",
        || {
            as_placed()?;
            let (when, at) = (t.elapsed().as_secs_f64(), lab::unix_now());
            wait_until(
                Duration::from_secs(30),
                "10 pings from A to C in a row",
                || in_a_row(at),
            );
            as_placed().map(|()| when)
        },
    );
    let (_, _, out) = ping.stop();
    // The outage: from the change to the first reply after the last request lost. Lost:
    // the requests after the last one answered before the change, up to the last one
    // answered (the one in flight when ping stopped is not lost).
    let replies = ping_replies(&out);
    let newest = replies.iter().map(|r| r.1).max().unwrap_or(0);
    let steady = replies
        .iter()
        .filter(|r| r.0 < t0)
        .map(|r| r.1)
        .max()
        .unwrap_or(0);
    let lost: Vec<u64> = (steady + 1..=newest)
        .filter(|seq| !replies.iter().any(|r| r.1 == *seq))
        .collect();
    let back = match lost.last() {
        Some(&last) => replies
            .iter()
            .filter(|r| r.1 > last)
            .map(|r| r.0 - t0)
            .fold(f64::INFINITY, f64::min),
        None => 0.0,
    };
    let after = counters(lab);
    let no_tunnel: u64 = (0..2)
        .map(|i| {
            after[i]["drops"]["no_tunnel"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before[i]["drops"]["no_tunnel"].as_u64().unwrap_or(0))
        })
        .sum();
    let sessions = lab
        .vtysh_json("rc", "show bgp summary json")
        .unwrap_or_default();
    let reset: Vec<&str> = ["169.254.3.1", "169.254.4.1"]
        .into_iter()
        .filter(|p| {
            sessions["ipv4Unicast"]["peers"][*p]["peerUptimeMsec"]
                .as_f64()
                .is_some_and(|ms| ms / 1000.0 < t.elapsed().as_secs_f64())
        })
        .collect();
    // The pairs with C (A and B's own pair is not C's business).
    let mut seen = pairs(lab, &['a', 'c'], 2);
    seen.extend(pairs(lab, &['b', 'c'], 2));
    assert_paths(&seen, |s| match s {
        'a' => 1,
        _ => 2,
    });
    audit_agrees(lab, &seen);
    summary.push(format!(
        "WAN address {OLD} -> {NEW} (ctl wan-address, then set-remote done {:.2} s later): both \
         edges' tunnels to C toward it {followed:.2} s after the change; pings A -> C \
         (20/s) answered again {back:.2} s after the change, {} of {} lost; the edges \
         dropped {no_tunnel} packets as no_tunnel meanwhile; the CPE's BGP sessions that \
         went down and up again: {reset:?}; all as placed again {placed:.2} s after the \
         change; then every pair with C through the tunnels as placed (counters, the \
         CPE's too, and the audit)",
        applied.as_secs_f64(),
        lost.len(),
        newest - steady
    ));
}

/// The share of one core that process `pid` used since it started (its user and system
/// time over its life, from /proc).
fn cpu_share(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command's closing parenthesis: state is field 3, utime 14,
    // stime 15, starttime 22 (proc(5)).
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> f64 { rest.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse().ok())
        .expect("/proc/uptime");
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    let tck: f64 = text(&out).trim().parse().expect("CLK_TCK");
    let life = uptime - field(22) / tck;
    (field(14) + field(15)) / tck / life
}

/// Three appliances (both edges and the CPE) share the machine's two cores: each worker
/// polls adaptively, has slept when idle, and each appliance used well under a core over
/// its life (a worker polling without pause would take a whole core: 1.0).
fn shared_cores(lab: &Lab, summary: &mut Vec<String>) {
    let mut seen = Vec::new();
    for (name, counters) in [
        ("e1", ctl(lab, 1, &["counters"])),
        ("e2", ctl(lab, 2, &["counters"])),
        ("the CPE", cpe(lab, &["counters"])),
    ] {
        let w = &counters["workers"][0];
        assert_eq!(w["poll"], "adaptive", "{name}: {w}");
        assert!(w["idle_sleeps"].as_u64().unwrap_or(0) > 0, "{name}: {w}");
        let pid = lab.pid(match name {
            "e1" => "backbone-e1",
            "e2" => "backbone-e2",
            _ => "backbone-c",
        });
        let share = cpu_share(&pid);
        assert!(
            share < 0.5,
            "{name} used {share:.2} of a core over its life"
        );
        seen.push(format!("{name} {:.0} %", share * 100.0));
    }
    summary.push(format!(
        "three appliances on two cores, each worker polling adaptively (and sleeping when \
         idle): each appliance's CPU over the lab's life, of one core: {}",
        seen.join(", ")
    ));
}

#[test]
fn two_edges_ibgp_symmetric_paths_failover_and_a_new_client() {
    let policy = policy_bin();
    let mut lab = Lab::up(
        "edges-lab.sh",
        "edges-lab",
        "bbx",
        &[("BACKBONE_POLICY", policy.to_string_lossy().into_owned())],
        "backbone-e1.log",
    );
    let t0 = Instant::now();
    let mut summary = Vec::new();

    // Sessions: the route reflector with both edges, each edge with its clients (by the
    // links the policy gives them) and the reflector.
    let established = |ns: &str, peers: &[&str]| -> Result<(), String> {
        let v = lab.vtysh_json(ns, "show bgp summary json")?;
        for p in peers {
            let s = v["ipv4Unicast"]["peers"][*p]["state"].as_str();
            if s != Some("Established") {
                return Err(format!("{ns}: {p} {s:?}"));
            }
        }
        Ok(())
    };
    wait_for(Duration::from_secs(60), "every BGP session", || {
        established("rr", &["10.255.0.1", "10.255.0.2"])?;
        established("e1", &["10.255.0.254", "169.254.1.0", "169.254.4.0"])?;
        established("e2", &["10.255.0.254", "169.254.2.0", "169.254.3.0"])?;
        established("rb", &["169.254.2.1"])?;
        established("rc", &["169.254.3.1", "169.254.4.1"])?;
        let a = lab.birdc_in("ra", "bird-a.ctl", &["show", "protocols", "edge"]);
        if a.contains("Established") {
            Ok(())
        } else {
            Err(a)
        }
    });
    summary.push(format!(
        "every session Established {:.1} s after the lab came up",
        t0.elapsed().as_secs_f64()
    ));

    // Each appliance's [bgp] is the policy's core: the agents compare them (a mismatch
    // would be in their reports).
    for e in [1u8, 2] {
        let bgp = &ctl(&lab, e, &["status"])["bgp"];
        assert_eq!(bgp["ibgp_source"], format!("10.255.0.{e}"), "e{e}: {bgp}");
        assert_eq!(bgp["asn"], 65000, "e{e}: {bgp}");
        let report = wait_for(
            Duration::from_secs(20),
            &format!("agent e{e}'s report"),
            || {
                let out = lab.exec(
                    "mgmt",
                    &[
                        "etcdctl",
                        "--endpoints",
                        ETCD,
                        "get",
                        "--print-value-only",
                        &format!("/backbone/edges/e{e}/status"),
                    ],
                );
                serde_json::from_slice::<Value>(&out.stdout).map_err(|e| e.to_string())
            },
        );
        assert!(report["config_mismatch"].is_null(), "e{e}: {report}");
    }

    // Each router: every other site's prefix through its tunnel; the CPE's tables, from
    // zebra, through its primary (to-e2).
    let via = |site: char| match site {
        'a' => "via 169.254.1.1 dev tun0",
        _ => "via 169.254.2.1 dev tun0",
    };
    for (site, _, _, _) in SITES {
        for (other, host, prefix, _) in SITES {
            if other == site {
                continue;
            }
            wait_for(
                Duration::from_secs(30),
                &format!("router {site} learns {prefix}"),
                || {
                    if site == 'c' {
                        return cpe_routes(&lab, host, prefix, 2);
                    }
                    let r = lab.kernel_route(&format!("r{site}"), prefix);
                    if r.contains(via(site)) {
                        Ok(())
                    } else {
                        Err(r)
                    }
                },
            );
        }
    }
    // Each appliance: a client hosted here into its tunnel, one hosted elsewhere across
    // the core to the core address of its primary's edge (10.255.0.E).
    let placed = |e: u8, primary: u8, site: char| {
        if e == primary {
            format!("tunnel {}", tunnel(site))
        } else {
            format!("core 10.255.0.{primary}")
        }
    };
    for e in [1u8, 2] {
        for (site, host, _, primary) in SITES {
            let want = placed(e, primary, site);
            wait_for(
                Duration::from_secs(30),
                &format!("e{e} routes {host} as the policy places it ({want})"),
                || {
                    let got = lookup(&lab, e, host);
                    if got == want {
                        Ok(())
                    } else {
                        Err(got)
                    }
                },
            );
        }
    }
    summary.push(format!(
        "every router and both appliances route every site as placed {:.1} s after the lab \
         came up",
        t0.elapsed().as_secs_f64()
    ));

    // Every pair, both ways, through the edges of their primaries; the audit agrees.
    let primary = |s: char| SITES.iter().find(|x| x.0 == s).map_or(0, |x| x.3);
    let seen = pairs(&lab, &['a', 'b', 'c'], 2);
    assert_paths(&seen, primary);
    let n = audit_agrees(&lab, &seen);
    summary.push(format!(
        "6 ordered pairs: each pair's requests and replies crossed the same edges by the \
         per-tunnel counters, as placed; audit paths agrees ({n} pairs, all symmetric)"
    ));

    // Site C's host reaches the Internet natively: out of the CPE's WAN port, in none of
    // the tunnels (the CPE's, or the edges' to it).
    assert_eq!(
        cpe_lookup(&lab, WWW),
        ("port wan".into(), "0.0.0.0/0".into())
    );
    let (before, cpe_before) = (counters(&lab), cpe_counters(&lab));
    ping_all(&lab, "hc", WWW, "host C -> the Internet");
    let (after, cpe_after) = (counters(&lab), cpe_counters(&lab));
    let enough = PINGS * PACKET;
    let mut native = Vec::new();
    for f in ["tx_bytes", "rx_bytes"] {
        let g = cpe_grew(&cpe_before, &cpe_after, "port:wan", f);
        assert!(
            g >= enough,
            "the Internet: the CPE's wan {f} grew by {g} only"
        );
        native.push(format!("wan {f} +{g}"));
        for e in [1u8, 2] {
            let t = cpe_tunnel(e);
            let g = cpe_grew(&cpe_before, &cpe_after, &t, f);
            assert!(
                g < enough / 2,
                "the Internet: the CPE's {t} {f} grew by {g}"
            );
            let i = usize::from(e - 1);
            let g = tunnel_counter(&after[i], "site-c", f)
                .saturating_sub(tunnel_counter(&before[i], "site-c", f));
            assert!(
                g < enough / 2,
                "the Internet: e{e}'s site-c {f} grew by {g}"
            );
        }
    }
    summary.push(format!(
        "host C -> the Internet's {WWW}: {PINGS} of {PINGS} answered natively (the CPE's route \
         0.0.0.0/0 out of wan, {}; no tunnel carried them)",
        native.join(", ")
    ));

    // The dual-homed site's primary tunnel cut in the underlay (the CPE's and e2's bridge
    // ports isolated from each other), while hosts A and B ping host C 20 times a second.
    let ping_a = Pinger::start(&lab, 'a', "10.3.0.10", "0.05", None);
    let ping_b = Pinger::start(&lab, 'b', "10.3.0.10", "0.05", None);
    wait_until(
        Duration::from_secs(10),
        "pings answered before the fault",
        || ping_a.replies().len() >= 5 && ping_b.replies().len() >= 5,
    );
    cut(&lab, true);
    let t = Instant::now();
    let mut moved = Vec::new();
    for (what, done) in c_through(&lab, 1) {
        wait_until(Duration::from_secs(15), &what, done);
        moved.push(format!("{what} {:.2} s", t.elapsed().as_secs_f64()));
    }
    let failed_over = lab::unix_now();
    wait_until(
        Duration::from_secs(10),
        "pings answered through the backup",
        || {
            [&ping_a, &ping_b]
                .iter()
                .all(|p| p.replies().iter().filter(|(t, _)| *t > failed_over).count() >= 10)
        },
    );
    let (sent_a, got_a, _) = ping_a.stop();
    let (sent_b, got_b, _) = ping_b.stop();
    summary.push(format!(
        "C's primary tunnel cut: {}; pings to C (20/s) from A: {} of {sent_a} lost, from B: \
         {} of {sent_b} lost",
        moved.join(", "),
        sent_a - got_a,
        sent_b - got_b
    ));
    // Both ways through the backup: C enters and leaves at e1.
    let seen = pairs(&lab, &['a', 'b', 'c'], 1);
    assert_paths(&seen, |s| if s == 'c' { 1 } else { primary(s) });
    audit_agrees(&lab, &seen);
    summary.push(
        "while cut: every pair symmetric through C's backup edge by the counters (the CPE's \
         too), and by the audit"
            .into(),
    );

    // Healed: back to the primary.
    cut(&lab, false);
    let t = Instant::now();
    let mut back = Vec::new();
    for (what, done) in c_through(&lab, 2) {
        wait_until(Duration::from_secs(30), &what, done);
        back.push(format!("{what} {:.2} s", t.elapsed().as_secs_f64()));
    }
    summary.push(format!("healed: {}", back.join(", ")));

    // The dual-homed site's primary edge stops: e2's appliance frozen (SIGSTOP) while host
    // A pings host C 20 times a second. The reflector finds e2 down by BFD (`ibgp_bfd`) and
    // withdraws its routes, so e1 routes C into its own tunnel to C; the CPE finds its
    // session with e2 down by BFD and sends through its tunnel to e1. Within a second,
    // both ways through e1.
    let ping_a = Pinger::start(&lab, 'a', "10.3.0.10", "0.05", None);
    wait_until(
        Duration::from_secs(10),
        "pings answered before e2 stops",
        || ping_a.replies().len() >= 5,
    );
    let e2 = lab.pid("backbone-e2");
    signal(&e2, "STOP");
    let stopped = lab::unix_now();
    let t = Instant::now();
    wait_until(
        Duration::from_secs(15),
        "e1 routes C into its own tunnel",
        || lookup(&lab, 1, "10.3.0.10") == "tunnel site-c",
    );
    let rerouted = t.elapsed().as_secs_f64();
    // The first reply after the stop that came through the backup: the last request e2
    // swallowed is the one before it.
    wait_until(
        Duration::from_secs(15),
        "host A's pings to C answered again",
        || {
            ping_a
                .replies()
                .iter()
                .filter(|(at, _)| *at > stopped)
                .count()
                >= 10
        },
    );
    // The requests e2 swallowed leave a gap in the replies' sequence numbers; the first
    // reply after the gap came through the backup (no gap: nothing was lost).
    let replies = ping_a.replies();
    let back = replies
        .windows(2)
        .find(|w| w[1].0 > stopped && w[1].1 > w[0].1 + 1)
        .map(|w| (w[0].1, w[1].1, w[1].0));
    let gap = back.map_or(0.0, |(_, _, at)| at - stopped);
    let (sent, got, _) = ping_a.stop();
    assert!(
        gap < 1.0,
        "host A -> host C answered again {gap:.2} s after e2 stopped (replies {back:?}): the \
         move to the backup edge must take less than 1 s"
    );
    // e2 cannot be asked while frozen: e1's counters alone show the pair's requests and
    // replies each entering and leaving at e1 through the two tunnels, none on the core.
    let before = lab::fresh_counters(|args| ctl(&lab, 1, args));
    ping_all(&lab, "ha", "10.3.0.10", "host A -> host C with e2 stopped");
    let after = lab::fresh_counters(|args| ctl(&lab, 1, args));
    let grew = |t: &str, f: &str| tunnel_counter(&after, t, f) - tunnel_counter(&before, t, f);
    for (t, f) in [
        ("site-a", "rx_bytes"),
        ("site-c", "tx_bytes"),
        ("site-c", "rx_bytes"),
        ("site-a", "tx_bytes"),
    ] {
        assert!(
            grew(t, f) >= PINGS * PACKET,
            "with e2 stopped, e1's {t} {f} grew by {} only",
            grew(t, f)
        );
    }
    for f in ["rx_bytes", "tx_bytes"] {
        let g = port_counter(&after, "core0", f) - port_counter(&before, "core0", f);
        assert!(
            g < PINGS * PACKET / 2,
            "with e2 stopped, e1's core0 {f} grew by {g}"
        );
    }
    summary.push(format!(
        "C's primary edge e2 stopped (its appliance frozen): e1 routes C into its own tunnel \
         {rerouted:.2} s after; host A's pings to C (20/s) answered again {gap:.2} s after \
         ({} of {sent} lost); A and C both ways through e1 by the counters",
        sent - got
    ));
    signal(&e2, "CONT");
    let t = Instant::now();
    for (what, done) in c_through(&lab, 2) {
        wait_until(Duration::from_secs(30), &what, done);
    }
    wait_until(
        Duration::from_secs(30),
        "router B hears C through e2 again",
        || {
            lab.kernel_route("rb", "10.3.0.0/16")
                .contains("via 169.254.2.1 dev tun0")
        },
    );
    let seen = pairs(&lab, &['a', 'b', 'c'], 2);
    assert_paths(&seen, primary);
    summary.push(format!(
        "e2 thawed: C back at e2 {:.2} s after; every pair through its primary again by the \
         counters",
        t.elapsed().as_secs_f64()
    ));

    // A bad policy document (site D added, but with a GRE key that does not fit 32 bits):
    // refused whole, the field named, nothing written to etcd, nothing changed at e1.
    let bad = lab.dir.join("policy-bad.toml");
    let good = std::fs::read_to_string(lab.dir.join("policy-d.toml")).expect("policy-d.toml");
    assert!(good.contains("key = 400\n"), "{good}");
    std::fs::write(&bad, good.replace("key = 400\n", "key = 4294967296\n")).expect("write");
    let revision = etcd_revision(&lab);
    let out = lab.exec(
        "mgmt",
        &[
            &policy.to_string_lossy(),
            "apply",
            &bad.to_string_lossy(),
            "--etcd",
            ETCD,
        ],
    );
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("site-d") && said.contains("key"),
        "policy apply of a bad document: {said}"
    );
    assert_eq!(etcd_revision(&lab), revision, "etcd was written: {said}");
    assert!(
        !tunnel_names(&lab, 1).iter().any(|n| n == "site-d"),
        "site-d reached e1"
    );
    summary.push(format!(
        "a bad document refused whole: {}; etcd stays at revision {revision}",
        said.lines()
            .find(|l| l.contains("key"))
            .unwrap_or("")
            .trim()
    ));

    // etcd stopped and started again: forwarding unchanged meanwhile (host A pings host B
    // across the core 20 times a second, none lost; neither appliance's tables change),
    // and each agent says so and resumes from its revision once etcd answers.
    let generations = [1u8, 2].map(|e| ctl(&lab, e, &["status"])["generation"].clone());
    assert!(generations.iter().all(Value::is_u64), "{generations:?}");
    let ping = Pinger::start(&lab, 'a', "10.2.0.10", "0.05", None);
    wait_until(
        Duration::from_secs(10),
        "pings answered before etcd stops",
        || ping.replies().len() >= 5,
    );
    let out = lab.script("etcd-stop");
    assert!(out.status.success(), "etcd-stop: {}", text(&out));
    let t = Instant::now();
    for e in [1, 2] {
        wait_for(
            Duration::from_secs(30),
            &format!("agent e{e} finds etcd unreachable"),
            || {
                let log = agent_log(&lab, e);
                if log.contains("etcd unreachable") {
                    Ok(())
                } else {
                    Err(log.lines().last().unwrap_or("").to_owned())
                }
            },
        );
    }
    let down_since = lab::unix_now();
    // Forwarding goes on: a second's pings answered while etcd is known to be down.
    wait_until(
        Duration::from_secs(10),
        "pings answered without etcd",
        || {
            ping.replies()
                .iter()
                .filter(|(at, _)| *at > down_since)
                .count()
                >= 20
        },
    );
    let out = lab.script("etcd-start");
    assert!(out.status.success(), "etcd-start: {}", text(&out));
    let outage = t.elapsed().as_secs_f64();
    for e in [1, 2] {
        wait_for(
            Duration::from_secs(30),
            &format!("agent e{e} resumes"),
            || {
                let log = agent_log(&lab, e);
                match log.lines().rev().find(|l| l.contains("answers again")) {
                    Some(l) if l.contains("resuming from revision") => Ok(()),
                    _ => Err(log.lines().last().unwrap_or("").to_owned()),
                }
            },
        );
    }
    let (sent, got, out) = ping.stop();
    assert_eq!(
        sent,
        got,
        "host A -> host B while etcd was down: {} lost\n{out}",
        sent.saturating_sub(got)
    );
    let after = [1u8, 2].map(|e| ctl(&lab, e, &["status"])["generation"].clone());
    assert_eq!(generations, after, "a table changed while etcd was down");
    summary.push(format!(
        "etcd stopped for {outage:.1} s and started again: both agents said so and resumed; \
         {got} of {sent} pings across the core answered meanwhile; no table changed"
    ));

    // A new client: site D at e1. Hosts A, B and C each start pinging D the moment their
    // router learns D's prefix; nothing of it may be lost. Nor may e1's other sessions go
    // down while its FRR takes D's session (frr-reload.py of what the appliance writes).
    let e1_peers = ["10.255.0.254", "169.254.1.0", "169.254.4.0"];
    let uptimes = |lab: &Lab| -> Vec<f64> {
        let v = lab
            .vtysh_json("e1", "show bgp summary json")
            .unwrap_or_default();
        e1_peers
            .iter()
            .map(|p| {
                v["ipv4Unicast"]["peers"][*p]["peerUptimeMsec"]
                    .as_f64()
                    .unwrap_or(0.0)
                    / 1000.0
            })
            .collect()
    };
    let up_before = uptimes(&lab);
    let t = Instant::now();
    apply(&lab, "policy-d.toml");
    let mut pingers = Vec::new();
    let mut learned = Vec::new();
    let mut waiting: Vec<char> = vec!['a', 'b', 'c'];
    wait_until(
        Duration::from_secs(60),
        "every router learns D's 10.4.0.0/16",
        || {
            waiting.retain(|&s| {
                let holds = if s == 'c' {
                    cpe_routes(&lab, "10.4.0.10", "10.4.0.0/16", 2).is_ok()
                } else {
                    lab.kernel_route(&format!("r{s}"), "10.4.0.0/16")
                        .contains("dev tun")
                };
                if holds {
                    pingers.push((s, Pinger::start(&lab, s, "10.4.0.10", "0.01", Some(200))));
                    learned.push(format!("router {s} {:.2} s", t.elapsed().as_secs_f64()));
                    false
                } else {
                    true
                }
            });
            waiting.is_empty()
        },
    );
    let mut losses = Vec::new();
    for (s, p) in pingers {
        let deadline = Instant::now() + Duration::from_secs(15);
        while p.replies().len() < 200 && Instant::now() < deadline {
            // Waiting for the bounded ping (200 requests, 2 s) to end, with a deadline.
            std::thread::sleep(Duration::from_millis(50));
        }
        let (sent, got, out) = p.stop();
        assert_eq!(
            (sent, got),
            (200, 200),
            "host {s} -> host D, started when router {s} learned D's prefix: lost {}\n{out}",
            sent.saturating_sub(got)
        );
        losses.push(format!("host {s}: {got} of {sent}"));
    }
    // D's session up at e1 proves its FRR took the new configuration.
    wait_for(Duration::from_secs(30), "e1's session with D", || {
        established("e1", &["169.254.5.0"])
    });
    let up_after = uptimes(&lab);
    let elapsed = t.elapsed().as_secs_f64();
    for ((peer, before), after) in e1_peers.iter().zip(&up_before).zip(&up_after) {
        // Up all along: its uptime grew by the time that passed (its clock is read at the
        // two calls; a second of slack for the reads).
        assert!(
            *before > 0.0 && *after + 1.0 >= before + elapsed,
            "e1's session with {peer} went down while D was added: up {before:.1} s before, \
             {after:.1} s after, {elapsed:.1} s later"
        );
    }
    summary.push(format!(
        "new client D: its prefix at {} after policy apply; pings started at that moment \
         answered: {} (none lost); e1's other sessions stayed up",
        learned.join(", "),
        losses.join(", ")
    ));

    // D removed from the policy: withdrawn from every router, and its tunnel gone from e1.
    let t = Instant::now();
    apply(&lab, "policy.toml");
    let mut forgot = Vec::new();
    for s in ['a', 'b', 'c'] {
        wait_for(
            Duration::from_secs(60),
            &format!("router {s} forgets D's 10.4.0.0/16"),
            || {
                if s == 'c' {
                    // The CPE's tables: no route of D's own (the carrier's space, the
                    // primary's 10.0.0.0/8, still covers it).
                    let (via, prefix) = cpe_lookup(&lab, "10.4.0.10");
                    return if prefix == "10.4.0.0/16" {
                        Err(format!("the CPE's lookup 10.4.0.10: {via} by {prefix}"))
                    } else {
                        Ok(())
                    };
                }
                let r = lab.kernel_route(&format!("r{s}"), "10.4.0.0/16");
                if r.trim().is_empty() {
                    Ok(())
                } else {
                    Err(r)
                }
            },
        );
        forgot.push(format!("router {s} {:.2} s", t.elapsed().as_secs_f64()));
    }
    wait_for(
        Duration::from_secs(60),
        "site-d's tunnel gone from e1",
        || {
            let names = tunnel_names(&lab, 1);
            if names.iter().any(|n| n == "site-d") {
                Err(format!("{names:?}"))
            } else {
                Ok(())
            }
        },
    );
    summary.push(format!(
        "D removed from the policy: withdrawn at {}; its tunnel gone from e1 {:.2} s after \
         policy apply",
        forgot.join(", "),
        t.elapsed().as_secs_f64()
    ));

    wan_change(&lab, &mut summary);
    shared_cores(&lab, &mut summary);

    lab.down();
    println!("\n== edges lab");
    for l in &summary {
        println!("{l}");
    }
    let _ = std::fs::remove_dir_all(&lab.dir);
}
