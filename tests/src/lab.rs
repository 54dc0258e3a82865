//! What the lab tests share (tests/tests/routing_lab.rs, edges_lab.rs, cpe_lab.rs): a lab script's
//! lab brought up under a namespace prefix and a state directory of the test's own, and
//! torn down when the test ends however it ends; commands in its namespaces; what the
//! routing daemons, the kernel and the appliances say; ping's output read back.

use crate::{backbone_bin, repo_root, scratch_dir, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A command's stdout and stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A lab of `scripts/SCRIPT` (`up`, `down`), up while this lives.
#[derive(Debug)]
pub struct Lab {
    pub dir: PathBuf,
    pub prefix: String,
    pub backbone: PathBuf,
    script: &'static str,
    env: Vec<(String, String)>,
    is_down: bool,
}

impl Lab {
    /// Bring the lab of `scripts/SCRIPT` up: state in a scratch directory named after
    /// `tag`, namespaces named `PREFIX<pid>-...`, the appliance of this build, `env` for the
    /// script besides. Fails, with the script's output and `log` (a file of the state
    /// directory), when it does not come up.
    pub fn up(
        script: &'static str,
        tag: &str,
        prefix: &str,
        env: &[(&str, String)],
        log: &str,
    ) -> Lab {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
            "the lab needs root (namespaces, TUN, routing daemons)"
        );
        let lab = Lab {
            dir: scratch_dir(tag),
            prefix: format!("{prefix}{}", std::process::id() % 100_000),
            backbone: backbone_bin(),
            script,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            is_down: false,
        };
        let out = lab.script("up");
        assert!(
            out.status.success(),
            "scripts/{script} up failed:\n{}\n{log}:\n{}",
            text(&out),
            std::fs::read_to_string(lab.dir.join(log)).unwrap_or_default()
        );
        lab
    }

    /// Run the lab script with `cmd` (its words split at spaces).
    pub fn script(&self, cmd: &str) -> Output {
        Command::new(repo_root().join("scripts").join(self.script))
            .args(cmd.split(' '))
            .env("LAB_DIR", &self.dir)
            .env("LAB_PREFIX", &self.prefix)
            .env("BACKBONE", &self.backbone)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run the lab script")
    }

    /// Tear it down now; fails when the script does.
    pub fn down(&mut self) {
        let out = self.script("down");
        self.is_down = true;
        assert!(out.status.success(), "down: {}", text(&out));
    }

    /// `args` in namespace `ns` (the lab's `PREFIX-ns`).
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// `vtysh -c CMD` of the FRR instance in namespace `ns`, read as JSON.
    pub fn vtysh_json(&self, ns: &str, cmd: &str) -> Result<Value, String> {
        let inst = format!("{}-{ns}", self.prefix);
        let out = self.exec(ns, &["vtysh", "-N", &inst, "-c", cmd]);
        if !out.status.success() {
            return Err(format!("vtysh {cmd}: {}", text(&out)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("vtysh {cmd}: {e}: {}", text(&out)))
    }

    /// `Ok` once the FRR instance in namespace `ns` has its IPv4 BGP session with every
    /// one of `peers` Established and BFD with each up; else what is not yet.
    pub fn frr_sessions_up(&self, ns: &str, peers: &[&str]) -> Result<(), String> {
        let v = self.vtysh_json(ns, "show bgp summary json")?;
        for peer in peers {
            let state = v["ipv4Unicast"]["peers"][peer]["state"].as_str();
            if state != Some("Established") {
                return Err(format!("{peer}: {state:?}"));
            }
        }
        let bfd = self.vtysh_json(ns, "show bfd peers json")?;
        let up = bfd.as_array().cloned().unwrap_or_default();
        for peer in peers {
            if !up.iter().any(|p| p["peer"] == *peer && p["status"] == "up") {
                return Err(format!("BFD with {peer}: {bfd}"));
            }
        }
        Ok(())
    }

    /// `birdc -s CTL ARGS` in namespace `ns` (`ctl`: the control socket's file name in the
    /// state directory).
    pub fn birdc_in(&self, ns: &str, ctl: &str, args: &[&str]) -> String {
        let ctl = self.dir.join(ctl);
        let ctl = ctl.to_string_lossy();
        let mut all = vec!["birdc", "-s", &ctl];
        all.extend_from_slice(args);
        text(&self.exec(ns, &all))
    }

    /// `backbone ctl --json ARGS` of the appliance in namespace `ns` whose control socket
    /// is `socket`; fails when it answers with an error.
    pub fn ctl_in(&self, ns: &str, socket: &Path, args: &[&str]) -> Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .arg(&self.backbone)
            .arg("ctl")
            .arg(format!("--socket={}", socket.display()))
            .arg("--json")
            .args(args)
            .output()
            .expect("backbone ctl");
        assert!(out.status.success(), "ctl {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("ctl JSON")
    }

    /// The kernel routes in namespace `ns` for `prefix`.
    pub fn kernel_route(&self, ns: &str, prefix: &str) -> String {
        text(&self.exec(ns, &["ip", "route", "show", prefix]))
    }

    /// The PID the lab script recorded for one of its processes (`$LAB_DIR/pids/NAME.pid`).
    pub fn pid(&self, name: &str) -> String {
        let f = self.dir.join(format!("pids/{name}.pid"));
        let s = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        s.lines().next().unwrap_or_default().trim().to_owned()
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

/// `kill -SIG PID`; fails when kill does.
pub fn signal(pid: &str, sig: &str) {
    let out = Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .output()
        .expect("kill");
    assert!(out.status.success(), "kill -{sig} {pid}: {}", text(&out));
}

/// A tunnel's counter in `ctl counters`.
pub fn tunnel_counter(counters: &Value, name: &str, field: &str) -> u64 {
    counters["tunnels"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == name))
        .and_then(|t| t[field].as_u64())
        .unwrap_or(0)
}

/// A port's counter in `ctl counters`.
pub fn port_counter(counters: &Value, name: &str, field: &str) -> u64 {
    counters["ports"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .and_then(|p| p[field].as_u64())
        .unwrap_or(0)
}

/// The counters from a copy every worker made after this call (the workers publish theirs
/// every few thousand polls); `ctl` asks the appliance.
pub fn fresh_counters(ctl: impl Fn(&[&str]) -> Value) -> Value {
    let copies = |c: &Value| c["workers"][0]["copies"].as_u64().unwrap_or(0);
    let seen = copies(&ctl(&["counters"]));
    wait_for(Duration::from_secs(10), "a copy of the counters", || {
        let c = ctl(&["counters"]);
        if copies(&c) > seen {
            Ok(c)
        } else {
            Err("not yet")
        }
    })
}

/// The replies a `ping -D` printed, as (unix time, sequence number).
pub fn ping_replies(out: &str) -> Vec<(f64, u64)> {
    out.lines()
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

/// Of the `sent` requests of a ping (`-W 1`) with these replies (`ping_replies`), how many
/// were due an answer. A ping interrupted (at `interrupted_at`, Unix seconds) leaves its last
/// request in flight, sent at most one interval before the signal: that request is not
/// counted when it is unanswered and the one before it was answered less than a second
/// before the signal. Every other unanswered request counts as lost.
pub fn requests_due(sent: u64, replies: &[(f64, u64)], interrupted_at: Option<f64>) -> u64 {
    let answered = |seq: u64| replies.iter().find(|(_, s)| *s == seq).map(|(t, _)| *t);
    let in_flight = match interrupted_at {
        Some(at) if sent > 1 && answered(sent).is_none() => {
            answered(sent - 1).is_some_and(|t| at - t < 1.0)
        }
        _ => false,
    };
    sent - u64::from(in_flight)
}

/// Seconds since the Unix epoch, as `ping -D` prints them.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::requests_due;

    // Requests 1..=3 answered at t = 10.0, 10.05, 10.1 (20 a second).
    const THREE: [(f64, u64); 3] = [(10.0, 1), (10.05, 2), (10.1, 3)];

    #[test]
    fn the_request_in_flight_at_the_interrupt_is_not_due() {
        // Request 4 sent at about 10.15, ping interrupted at 10.16 before its reply.
        assert_eq!(requests_due(4, &THREE, Some(10.16)), 3);
    }

    #[test]
    fn every_other_unanswered_request_is_due() {
        // Ended by itself (`-c`): the last request had its second.
        assert_eq!(requests_due(4, &THREE, None), 4);
        // Request 3 was the last answered, 2 s before the interrupt: 4 and 5 were due.
        assert_eq!(requests_due(5, &THREE, Some(12.1)), 5);
        // The gap is in the middle (2 lost), the last one answered: all 3 due.
        assert_eq!(requests_due(3, &[(10.0, 1), (10.1, 3)], Some(10.11)), 3);
        // The last two unanswered: only the very last may be in flight.
        assert_eq!(requests_due(5, &THREE, Some(10.26)), 5);
        // A single request, unanswered: due.
        assert_eq!(requests_due(1, &[], Some(10.0)), 1);
        assert_eq!(requests_due(0, &[], Some(10.0)), 0);
    }
}
