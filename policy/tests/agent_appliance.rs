//! The edge agent on a real appliance (the `backbone` binary on net_null ports with its
//! control socket) and a real etcd: the policy's part for the edge appears in the
//! appliance (its new tunnels once the other edge's agent reports the revision made:
//! make before announce); a client added appears, and removed goes, touching nothing
//! else; the appliance's own tunnel is left alone; etcd stopped: the appliance keeps
//! everything (a tunnel deleted by hand meanwhile is put back, nothing is removed), and
//! when etcd returns the agent resumes from its revision and follows the next change.

mod common;

use common::{policy, scratch, text, wait_for, Etcd, KillOnDrop, POLICY};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// The `backbone` binary of this build, brought up to date once.
fn backbone_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "dataplane", "--bin", "backbone"]);
            if let Some(target_dir) = profile_dir.parent() {
                cmd.env("CARGO_TARGET_DIR", target_dir);
            }
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().unwrap().success(),
                "cargo build -p dataplane --bin backbone"
            );
            profile_dir.join("backbone")
        })
        .clone()
}

/// The appliance's own file: two net_null ports, the core and the clients', BGP, and a
/// tunnel of its own that the policy does not know.
fn appliance_config(prefix: &str) -> String {
    format!(
        r#"
[eal]
args = ["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256", "-l", "0-1",
        "--file-prefix={prefix}", "--log-level=lib.eal:error",
        "--vdev=net_null0,no-rx=1", "--vdev=net_null1,no-rx=1"]

[workers]
lcores = [1]

[[port]]
name = "client0"
device = "0"
roles = ["client"]
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1"]

[[port]]
name = "core0"
device = "1"
roles = ["core"]
mac = "02:00:00:00:00:02"
addresses = ["10.255.0.1"]
transit = true

[bgp]
asn = 65000

[[tunnel]]
name = "local1"
mode = "gre"
local = "192.0.2.1"
remote = "198.51.100.99"
key = 999
port = "client0"
prefixes = ["10.99.0.0/16"]
"#
    )
}

/// The policy: edge-1 is the appliance under test, edge-2 another one.
fn policy_text(socket: &Path, with_new: bool) -> String {
    let mut p = format!(
        r#"
[backbone]
asn = 65000

[[edge]]
name = "edge-1"
core_address = "10.255.0.1"
core_port = "core0"
tunnel_endpoint = "192.0.2.1"
client_port = "client0"
control_socket = "{socket}"

[[edge]]
name = "edge-2"
core_address = "10.255.0.2"
core_port = "core0"
tunnel_endpoint = "192.0.2.2"
client_port = "client0"

[[client]]
name = "agt-acme"
mode = "gre"
key = 100
remote = "198.51.100.10"
asn = 65001
prefixes = ["10.1.0.0/16"]
  [[client.placement]]
  edge = "edge-1"
  role = "primary"
  link = "169.254.71.1/31"

[[client]]
name = "agt-globex"
mode = "gre"
key = 200
remote = "198.51.100.20"
prefixes = ["10.2.0.0/16"]
  [[client.placement]]
  edge = "edge-2"
  role = "primary"

[[client]]
name = "agt-hooli"
mode = "gre"
key = 400
remote = "198.51.100.40"
prefixes = ["10.4.0.0/16"]
  [[client.placement]]
  edge = "edge-2"
  role = "primary"
  [[client.placement]]
  edge = "edge-1"
  role = "backup"
"#,
        socket = socket.display()
    );
    if with_new {
        p.push_str(
            r#"
[[client]]
name = "agt-new"
mode = "ipip"
remote = "198.51.100.50"
prefixes = ["10.5.0.0/16"]
  [[client.placement]]
  edge = "edge-1"
  role = "primary"
"#,
        );
    }
    p
}

struct Appliance {
    sock: PathBuf,
    log: PathBuf,
    _proc: KillOnDrop,
}

impl Appliance {
    fn ctl(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(backbone_bin())
            .arg("ctl")
            .arg("--json")
            .arg(format!("--socket={}", self.sock.display()))
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    }

    /// Tunnel names, sorted.
    fn tunnels(&self) -> Vec<String> {
        let mut v: Vec<String> = self.ctl(&["tunnels"]).unwrap()["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    }

    /// Explicit routes, without their source.
    fn routes(&self) -> Vec<Value> {
        let mut v: Vec<Value> = self.ctl(&["routes"]).unwrap()["routes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["source"] != "tunnel")
            .map(|r| {
                let mut r = r.clone();
                let o = r.as_object_mut().unwrap();
                o.retain(|k, _| ["prefix", "port", "next_hop", "tunnel"].contains(&k.as_str()));
                r
            })
            .collect();
        v.sort_by_key(|r| r["prefix"].as_str().unwrap().to_owned());
        v
    }

    fn generation(&self) -> u64 {
        self.ctl(&["generations"]).unwrap()["generation"]
            .as_u64()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Wait for edge-1's report of revision `want`, run by every worker.
fn report(etcd: &Etcd, agent_log: &Path, want: i64) -> Value {
    wait_for(
        PATIENCE,
        &format!("edge-1's report of revision {want}, run by every worker"),
        || {
            let v = etcd
                .get("/backbone/edges/edge-1/status")
                .ok_or_else(|| format!("no report; {}", file_log(agent_log)))?;
            let v: Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
            if v["revision"] == want && v["workers_run_it"] == true {
                Ok(v)
            } else {
                Err(format!("{v}; {}", file_log(agent_log)))
            }
        },
    )
}

fn file_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn the_agent_applies_follows_and_rides_out_etcd() {
    let dir = scratch("agent");
    let mut etcd = Etcd::start(&dir);
    let sock = dir.join("ctl/control.sock");
    let config = dir.join("backbone.toml");
    let prefix = format!("bbt-agent-{}", std::process::id());
    std::fs::write(&config, appliance_config(&prefix)).unwrap();
    let log = dir.join("backbone.log");
    let proc = Command::new(backbone_bin())
        .current_dir(&dir)
        .env("RUST_LOG", "info")
        .args(["run", "--config"])
        .arg(&config)
        .arg("--control-socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let app = Appliance {
        sock: sock.clone(),
        log,
        _proc: KillOnDrop(Some(proc)),
    };
    wait_for(PATIENCE, "the appliance's control API", || {
        app.ctl(&["generations"]).map(|_| ())
    });
    assert_eq!(app.tunnels(), ["local1"]);

    let file = dir.join("policy.toml");
    std::fs::write(&file, policy_text(&sock, false)).unwrap();
    let out = policy(&etcd, &["apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let doc = "/backbone/policy/document";
    let r1 = etcd.mod_revision(doc);

    let agent_log = dir.join("agent.log");
    let _agent = KillOnDrop(Some(
        Command::new(POLICY)
            .args([
                "agent",
                "--edge",
                "edge-1",
                "--etcd",
                &etcd.url(),
                "--resync-ms",
                "200",
                "--retry-ms",
                "200",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap())
            .spawn()
            .unwrap(),
    ));

    // Revision 1: edge-1 hosts agt-acme (primary) and agt-hooli (backup); globex's and
    // hooli's prefixes go across the core to edge-2 (hooli's primary). Make before
    // announce: edge-2 has no agent, so nothing says it routes acme yet, and edge-1
    // holds the new tunnels (their BGP sessions would announce them); the routes across
    // the core run at once.
    let core2 = |prefix: &str| json!({"prefix": prefix, "port": "core0", "next_hop": "10.255.0.2"});
    let v = wait_for(PATIENCE, "edge-1 holding its new tunnels", || {
        let v: Value = serde_json::from_str(
            &etcd
                .get("/backbone/edges/edge-1/status")
                .unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        if v["made_revision"] == r1 && v["workers_run_it"] == true {
            Ok(v)
        } else {
            Err(format!("{v}; {}", file_log(&agent_log)))
        }
    });
    assert_eq!(v["held"], json!(["agt-acme", "agt-hooli"]), "{v}");
    assert_eq!(v["revision"], 0, "{v}");
    assert_eq!(app.tunnels(), ["local1"]);
    assert_eq!(app.routes(), [core2("10.2.0.0/16"), core2("10.4.0.0/16")]);
    // edge-2's agent (a dry run: the other appliance is not part of this test) reports
    // the revision made: edge-1 brings its tunnels up.
    let _agent2 = KillOnDrop(Some(
        Command::new(POLICY)
            .args([
                "agent",
                "--edge",
                "edge-2",
                "--dry-run",
                "--etcd",
                &etcd.url(),
            ])
            .args(["--resync-ms", "200", "--retry-ms", "200"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent-2.log")).unwrap())
            .spawn()
            .unwrap(),
    ));
    let v = report(&etcd, &agent_log, r1);
    assert_eq!(app.tunnels(), ["agt-acme", "agt-hooli", "local1"]);
    assert_eq!(app.routes(), [core2("10.2.0.0/16"), core2("10.4.0.0/16")]);
    let g1 = v["generation"].as_u64().unwrap();
    assert_eq!(v["workers"], json!([g1]), "{v}");
    assert!(v["tunnel_states"]["agt-acme"].is_string(), "{v}");
    assert!(
        v["tunnel_states"].get("local1").is_none(),
        "only the agent's tunnels: {v}"
    );
    assert_eq!(
        app.ctl(&["lookup", "10.1.2.3"]).unwrap()["via"]["tunnel"],
        "agt-acme"
    );
    // Every field of the part, as the appliance saved its running configuration.
    app.ctl(&["save"]).unwrap();
    let saved: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let tunnel = |name: &str| -> toml::Table {
        saved["tunnel"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"].as_str() == Some(name))
            .unwrap()
            .as_table()
            .unwrap()
            .clone()
    };
    let acme = tunnel("agt-acme");
    assert_eq!(acme["asn"].as_integer(), Some(65001));
    assert_eq!(acme["link"].as_str(), Some("169.254.71.1/31"));
    assert_eq!(acme["key"].as_integer(), Some(100));
    assert_eq!(acme["local"].as_str(), Some("192.0.2.1"));
    let hooli = tunnel("agt-hooli");
    assert!(hooli.get("prefixes").is_none(), "{hooli:?}");
    assert_eq!(
        hooli["extra_sources"].as_array().unwrap()[0].as_str(),
        Some("10.4.0.0/16")
    );

    // A client added on edge-1: its tunnel appears, nothing else is touched.
    let acme_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("backbone::audit") && l.contains("agt-acme"))
            .count()
    };
    let acme_before = acme_lines(&app.log());
    std::fs::write(&file, policy_text(&sock, true)).unwrap();
    assert!(policy(&etcd, &["apply", file.to_str().unwrap()])
        .status
        .success());
    let r2 = etcd.mod_revision(doc);
    let v = report(&etcd, &agent_log, r2);
    assert_eq!(
        app.tunnels(),
        ["agt-acme", "agt-hooli", "agt-new", "local1"]
    );
    assert_eq!(
        app.ctl(&["lookup", "10.5.0.1"]).unwrap()["via"]["tunnel"],
        "agt-new"
    );
    assert_eq!(
        v["generation"].as_u64(),
        Some(g1 + 1),
        "one batch, one publication: {v}"
    );
    assert_eq!(
        acme_lines(&app.log()),
        acme_before,
        "agt-acme untouched:\n{}",
        app.log()
    );

    // Removed: it goes.
    std::fs::write(&file, policy_text(&sock, false)).unwrap();
    assert!(policy(&etcd, &["apply", file.to_str().unwrap()])
        .status
        .success());
    let r3 = etcd.mod_revision(doc);
    report(&etcd, &agent_log, r3);
    assert_eq!(app.tunnels(), ["agt-acme", "agt-hooli", "local1"]);
    assert_eq!(app.routes(), [core2("10.2.0.0/16"), core2("10.4.0.0/16")]);

    // etcd stops. The agent notices (its log says so) and keeps the appliance as it is.
    let tunnels = app.tunnels();
    let routes = app.routes();
    etcd.stop();
    wait_for(PATIENCE, "the agent to notice etcd is away", || {
        let l = file_log(&agent_log);
        if l.contains("etcd unreachable") {
            Ok(())
        } else {
            Err(l)
        }
    });
    // It still works the appliance while etcd is away: a tunnel deleted by hand comes
    // back (what it puts back proves it read the appliance after the outage began) ...
    let put_back = |l: &str| {
        l.lines()
            .filter(|l| l.contains("1 tunnel(s) added"))
            .count()
    };
    let before = put_back(&file_log(&agent_log));
    app.ctl(&["tunnel-del", "agt-hooli"]).unwrap();
    wait_for(PATIENCE, "agt-hooli put back", || {
        if app.tunnels() == tunnels && put_back(&file_log(&agent_log)) > before {
            Ok(())
        } else {
            Err(app.tunnels().join(","))
        }
    });
    // ... and nothing else was removed or changed.
    let generation = app.generation();
    assert_eq!(app.tunnels(), tunnels);
    assert_eq!(app.routes(), routes);

    // etcd returns: the agent resumes from its revision, reports again, follows a change.
    etcd.restart();
    wait_for(PATIENCE, "the agent to resume", || {
        let l = file_log(&agent_log);
        if l.contains(&format!("resuming from revision {r3}")) {
            Ok(())
        } else {
            Err(l)
        }
    });
    report(&etcd, &agent_log, r3);
    assert_eq!(app.generation(), generation, "resuming changed nothing");
    assert_eq!(app.tunnels(), tunnels);
    std::fs::write(&file, policy_text(&sock, true)).unwrap();
    assert!(policy(&etcd, &["apply", file.to_str().unwrap()])
        .status
        .success());
    let r4 = etcd.mod_revision(doc);
    report(&etcd, &agent_log, r4);
    assert_eq!(
        app.tunnels(),
        ["agt-acme", "agt-hooli", "agt-new", "local1"]
    );

    // A policy the appliance refuses (a tunnel MTU above its client port's 1500, which
    // the policy cannot know): reported, nothing of it applied, the last revision kept.
    let routes = app.routes();
    let generation = app.generation();
    let big = policy_text(&sock, true)
        + r#"
[[client]]
name = "agt-big"
mode = "ipip"
remote = "198.51.100.60"
mtu = 9000
prefixes = ["10.6.0.0/16"]
  [[client.placement]]
  edge = "edge-1"
  role = "primary"
"#;
    std::fs::write(&file, big).unwrap();
    let out = policy(&etcd, &["apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let r5 = etcd.mod_revision(doc);
    let v = wait_for(PATIENCE, "the refusal reported", || {
        let v: Value = serde_json::from_str(
            &etcd
                .get("/backbone/edges/edge-1/status")
                .unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
        if v["policy_revision"] == r5 && v["error"].is_string() {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("\"agt-big\".mtu"), "{error}");
    assert_eq!(v["revision"], r4, "{v}");
    assert_eq!(
        app.generation(),
        generation,
        "nothing of the refused batch applied"
    );
    assert_eq!(
        app.tunnels(),
        ["agt-acme", "agt-hooli", "agt-new", "local1"]
    );
    assert_eq!(app.routes(), routes);
}
