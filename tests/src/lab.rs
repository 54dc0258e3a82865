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

/// Seconds since the Unix epoch, as `ping -D` prints them.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
