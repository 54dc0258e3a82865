//! Support for the end-to-end tests: pcap files, unique EAL prefixes, the packet oracles.

pub mod e2e;
pub mod lab;
pub mod pcap;

/// A file prefix unique to this process and `tag`, so EAL instances never collide.
pub fn file_prefix(tag: &str) -> String {
    format!("bbt-{tag}-{}", std::process::id())
}

/// A fresh scratch directory under the target directory, removed first if it exists.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("backbone-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The `backbone` binary of this build (target/<profile>/backbone beside the test's deps
/// folder), brought up to date once per test process: `cargo test -p backbone-tests` alone
/// would otherwise run a stale binary.
pub fn backbone_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_bin("dataplane", "backbone"))
        .clone()
}

/// The `backbone-policy` binary of this build, brought up to date as [`backbone_bin`] is.
pub fn policy_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_bin("backbone-policy", "backbone-policy"))
        .clone()
}

/// `cargo build -p PACKAGE --bin BIN` into this build's target directory and profile.
fn build_bin(package: &str, bin: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps/<test>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if let Some(target_dir) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target_dir);
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    profile_dir.join(bin)
}

/// Wait until `probe` answers `Ok`, and return what it answered. It is asked at once, then
/// again and again, a millisecond apart at first and at most 50 ms apart later. If it still
/// answers `Err` after `within`, the test fails naming `what` and showing the last `Err`.
pub fn wait_for<T, E: std::fmt::Display>(
    within: std::time::Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) if start.elapsed() >= within => {
                panic!("waited {within:?} for {what}, in vain: {e}")
            }
            Err(_) => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// Wait until `cond` holds; fail naming `what` if it still does not after `within`.
pub fn wait_until(within: std::time::Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(
        within,
        what,
        || if cond() { Ok(()) } else { Err("not yet") },
    );
}

/// `backbone ctl --json --socket SOCK ARGS...`: the control API's answer, or why there is
/// none (no socket yet, a refusal).
pub fn ctl(sock: &std::path::Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(backbone_bin())
        .arg("ctl")
        .arg("--json")
        .arg(format!("--socket={}", sock.display()))
        .args(args)
        .output()
        .map_err(|e| format!("run backbone ctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "backbone ctl {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("backbone ctl {}: {e}", args.join(" ")))
}

/// Debian's python3, which has scapy (scripts/setup.sh installs python3-scapy).
pub const PYTHON: &str = "/usr/bin/python3";

/// Run `script` with scapy (Debian's python3); fail with its error output.
pub fn scapy(script: &str) {
    let out = std::process::Command::new(PYTHON)
        .args(["-c", script])
        .output()
        .expect("run scapy (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process a test started, killed (by its PID) and reaped if the test ends before it
/// does: an appliance on an endless source must never outlive its test.
#[derive(Debug)]
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    /// Send `signal` (for instance "TERM") and wait for the exit, at most `limit`; returns
    /// its status and whatever of stdout and stderr was piped. A process that does not stop
    /// in time is killed and the test fails.
    pub fn stop(&mut self, signal: &str, limit: std::time::Duration) -> std::process::Output {
        let mut child = self.0.take().expect("a running process");
        let pid = child.id();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let start = std::time::Instant::now();
        while child.try_wait().expect("wait for the process").is_none() {
            if !sent || start.elapsed() > limit {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reap the process");
                panic!(
                    "pid {pid} did not stop on SIG{signal} within {limit:?}:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // Polling for the exit, bounded by `limit`.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().expect("the process's output")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}
