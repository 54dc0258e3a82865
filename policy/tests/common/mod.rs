//! An etcd member of the test's own (Debian's etcd-server): its own data directory and
//! ports, stopped (by its PID) when the test ends.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The `backbone-policy` binary of this build.
pub const POLICY: &str = env!("CARGO_BIN_EXE_backbone-policy");

/// Wait until `probe` answers `Ok`; fail naming `what` after `within`.
pub fn wait_for<T, E: std::fmt::Display>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) if start.elapsed() >= within => {
                panic!("waited {within:?} for {what}, in vain: {e}")
            }
            Err(_) => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A fresh scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("backbone-policy-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The ports [`free_port`] handed out in this process.
static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port free now (the OS's choice, released at once for etcd to bind), and never one
/// this process handed out before: the tests run in parallel, and a port given to one
/// member and not yet bound by it must not go to another.
fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// One etcd member.
pub struct Etcd {
    pub dir: PathBuf,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Etcd {
    /// Start a member in `dir` and wait until it answers. A port that another program
    /// took between [`free_port`] and etcd's bind: a new member on new ports, a few times.
    pub fn start(dir: &Path) -> Etcd {
        let mut attempt = 1;
        loop {
            let mut e = Etcd {
                dir: dir.to_owned(),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            };
            match e.launch() {
                Ok(()) => return e,
                Err(why) if attempt < 5 && why.contains("address already in use") => {
                    e.stop();
                    // Nothing was bootstrapped on those ports that the next one may meet.
                    let _ = std::fs::remove_dir_all(dir.join("etcd-data"));
                    attempt += 1;
                }
                Err(why) => panic!("etcd did not start: {why}"),
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Start it again (same data, same ports) after [`Etcd::stop`].
    pub fn restart(&mut self) {
        if let Err(why) = self.launch() {
            panic!("etcd did not start again: {why}");
        }
    }

    /// Start etcd and wait (30 s at most, else fail) until it answers; `Err` with what it
    /// logged when it exits instead.
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "etcd is running");
        let logged = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.join("etcd-data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.url()))
            .arg(format!("--advertise-client-urls={}", self.url()))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                self.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                self.peer_port
            ))
            .arg(format!(
                "--initial-cluster=test=http://127.0.0.1:{}",
                self.peer_port
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (scripts/setup.sh installs etcd-server)");
        self.child = Some(child);
        // Ok(Err(..)) ends the wait early: etcd exited, and will not answer.
        wait_for(Duration::from_secs(30), "etcd to answer", || {
            let out = self.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                return Ok(Ok(()));
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = self.log();
            let why = format!(
                "{} (exit: {exited:?}); {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.get(logged..).unwrap_or(&log)
            );
            if exited.is_some() {
                Ok(Err(why))
            } else {
                Err(why)
            }
        })
    }

    /// Stop it (SIGTERM to its PID) and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Not a PID that exited already (and may be another process's by now).
            if matches!(child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// `etcdctl` (API v3) against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url()))
            .arg("--dial-timeout=1s")
            .args(args)
            .output()
            .expect("run etcdctl (scripts/setup.sh installs etcd-client)")
    }

    /// The value of `key` as etcdctl reads it, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.etcdctl(&["get", "--print-value-only", key]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // etcdctl ends the value with a newline of its own.
        text.strip_suffix('\n').map(str::to_owned)
    }

    /// The revision that last wrote `key`, as etcdctl reads it.
    pub fn mod_revision(&self, key: &str) -> i64 {
        let out = self.etcdctl(&["get", "-w", "json", key]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["kvs"][0]["mod_revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no {key}: {v}"))
    }

    /// etcd's current revision, as etcdctl reads it.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["Status"]["header"]["revision"].as_i64().unwrap()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `backbone-policy ARGS --etcd URL`: its output.
pub fn policy(etcd: &Etcd, args: &[&str]) -> Output {
    Command::new(POLICY)
        .args(args)
        .env("BACKBONE_ETCD", etcd.url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A child process killed (by its PID) and reaped when the test ends.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
