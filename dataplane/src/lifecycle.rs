//! The appliance as a service: one instance per control socket and per DPDK file prefix,
//! readiness and reloads told to systemd, signals.
//!
//! - Locks: before EAL starts, `run` takes an exclusive `flock` on
//!   `<runtime dir>/backbone.lock` (EAL's runtime directory for its file prefix:
//!   `/var/run/dpdk/PREFIX` as root) and on `<control socket>.lock`; a second instance on
//!   the same prefix or socket refuses to start and names the pid that holds it. The lock
//!   files hold the owner's pid; the socket and its lock are removed at exit.
//! - systemd (`Type=notify`): `READY=1` once every worker runs the first snapshot (the
//!   ports are up, the tables published, the API listening), `RELOADING=1` and `READY=1`
//!   around a reload, `STOPPING=1` on the way out, each with a `STATUS=` line. Sent only
//!   where `NOTIFY_SOCKET` is set.
//! - Signals: SIGINT and SIGTERM stop (final counters, exit 0); SIGHUP reloads the
//!   configuration file (validated and applied as one publication; on any error nothing
//!   changes, the appliance keeps forwarding and the log says why). Others keep their
//!   default action.

use dataplane::control::appliance::Appliance;
use dataplane::control::audit;
use dataplane::control::state::ControlState;
use dataplane::worker::WorkerProgress;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where `run` and `ctl` look for the control socket unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/backbone/control.sock";
/// Where `run` and `check` look for the configuration unless told otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/backbone/backbone.toml";

/// EAL's `--file-prefix` among `args` (`rte` when absent, as EAL has it).
pub fn file_prefix(args: &[String]) -> String {
    let mut it = args.iter();
    let mut prefix = "rte".to_owned();
    while let Some(a) = it.next() {
        if let Some(p) = a.strip_prefix("--file-prefix=") {
            p.clone_into(&mut prefix);
        } else if a == "--file-prefix" {
            if let Some(p) = it.next() {
                p.clone_into(&mut prefix);
            }
        }
    }
    prefix
}

/// EAL's runtime directory for `prefix` (where its telemetry socket lives): under
/// `/var/run` for root, else `$XDG_RUNTIME_DIR` or `/tmp`, as EAL chooses it.
pub fn runtime_dir(prefix: &str) -> PathBuf {
    let base = if rustix::process::getuid().is_root() {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
    };
    base.join("dpdk").join(prefix)
}

/// An exclusive lock on a file that holds the owner's pid; released (and the file
/// removed) on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Take the lock at `path` for `what` (named in the refusal); its directory is created
    /// (mode 0700) where missing.
    pub fn take(path: &Path, what: &str) -> Result<Lock, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            }
        }
        // A lock file removed by its owner between our open and our flock would leave us
        // holding a lock nobody else sees: check that the path is still our file.
        for _ in 0..8 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let locked =
                rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
            if locked.is_err() {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(format!(
                    "{what} is in use by another backbone (pid {}, lock {}): stop it first, or \
                     give this one its own",
                    if pid.is_empty() { "unknown" } else { pid },
                    path.display()
                ));
            }
            let same = match (file.metadata(), std::fs::metadata(path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(Lock {
                file,
                path: path.to_owned(),
            });
        }
        Err(format!("{}: the lock file keeps changing", path.display()))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked: a newcomer that opened the old file finds it gone
        // after its flock and tries again (see `take`).
        let _ = std::fs::remove_file(&self.path);
        let _ = rustix::fs::flock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

/// The control socket, claimed: its lock held; the socket (once bound) and the lock
/// removed on drop.
#[derive(Debug)]
pub struct SocketClaim {
    socket: PathBuf,
    _lock: Lock,
}

impl SocketClaim {
    /// Lock `<socket>.lock`. A socket file left by an appliance that died is replaced
    /// when the server binds.
    pub fn take(socket: &Path) -> Result<SocketClaim, String> {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        let lock = Lock::take(
            Path::new(&name),
            &format!("control socket {}", socket.display()),
        )
        .map_err(|e| {
            if e.contains("Permission denied") {
                format!(
                    "{e}: the control socket's directory is root's; run as root, or give \
                     --control-socket PATH (or --no-control-socket)"
                )
            } else {
                e
            }
        })?;
        Ok(SocketClaim {
            socket: socket.to_owned(),
            _lock: lock,
        })
    }
}

impl Drop for SocketClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Tell systemd (`sd_notify`): a datagram of `KEY=VALUE` lines to `$NOTIFY_SOCKET`, when
/// it is set. Returns whether it was sent.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (Linux).
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    match sent {
        Ok(_) => true,
        Err(e) => {
            log::debug!("sd_notify: {e}");
            false
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants it with `RELOADING=1`.
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1000
}

/// Signals and systemd, as the supervisor loop sees them.
#[derive(Debug)]
pub struct Service {
    hup: Arc<AtomicBool>,
    ready: bool,
}

impl Service {
    /// Catch SIGHUP (reload).
    pub fn new() -> Result<Service, String> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
            .map_err(|e| format!("signal handler: {e}"))?;
        Ok(Service { hup, ready: false })
    }

    /// Called from the supervisor loop: say `READY=1` once every worker runs the first
    /// snapshot, and reload the configuration file on SIGHUP.
    pub fn tick(
        &mut self,
        state: &Mutex<ControlState>,
        progress: &[WorkerProgress],
        appliance: &Appliance,
    ) {
        if !self.ready {
            let newest = state
                .lock()
                .map(|s| s.snapshots().current().generation())
                .unwrap_or(u64::MAX);
            if progress
                .iter()
                .all(|p| p.generation.load(Ordering::Relaxed) >= newest)
            {
                self.ready = true;
                log::info!("ready: every worker runs generation {newest}");
                notify(&format!(
                    "READY=1\nSTATUS=forwarding, generation {newest}\nMAINPID={}",
                    std::process::id()
                ));
            }
        }
        if self.hup.swap(false, Ordering::Relaxed) {
            self.reload(state, appliance);
        }
    }

    fn reload(&self, state: &Mutex<ControlState>, appliance: &Appliance) {
        notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
        let Ok(mut st) = state.lock() else { return };
        let file = st
            .file()
            .map_or_else(String::new, |f| f.display().to_string());
        let status = match st.reload("SIGHUP") {
            Ok(Some(g)) => {
                appliance.control.reloads.fetch_add(1, Ordering::Relaxed);
                log::info!("SIGHUP: {file} reloaded: generation {g}");
                format!("forwarding, generation {g} (reloaded)")
            }
            Ok(None) => {
                appliance.control.reloads.fetch_add(1, Ordering::Relaxed);
                log::info!("SIGHUP: {file} unchanged: nothing to apply");
                "forwarding (reloaded: unchanged)".to_owned()
            }
            Err(e) => {
                appliance
                    .control
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("SIGHUP: {file} not reloaded, the running configuration stays: {e}");
                "forwarding; the last reload failed (see the log)".to_owned()
            }
        };
        drop(st);
        log::debug!(target: audit::TARGET, "reload done");
        notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// Say `STOPPING=1`.
    pub fn stopping(&self) {
        notify("STOPPING=1\nSTATUS=stopping");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_prefix_is_read_as_eal_reads_it() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(file_prefix(&args(&["-l", "0-1"])), "rte");
        assert_eq!(file_prefix(&args(&["--file-prefix=lab"])), "lab");
        assert_eq!(
            file_prefix(&args(&["--file-prefix", "lab", "-l", "0"])),
            "lab"
        );
        assert!(runtime_dir("lab").ends_with("dpdk/lab"));
    }

    #[test]
    fn a_lock_is_held_once() {
        let dir = std::env::temp_dir().join(format!("bb-lock-{}", std::process::id()));
        let path = dir.join("x.lock");
        let first = Lock::take(&path, "thing").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        let e = Lock::take(&path, "thing").unwrap_err();
        assert!(
            e.contains("thing is in use") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(first);
        assert!(!path.exists());
        drop(Lock::take(&path, "thing").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notify_writes_datagrams_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("bb-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        // The environment is the process's: this is the only test that sets it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(notify("READY=1"));
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify("READY=1"), "nothing is sent without NOTIFY_SOCKET");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
