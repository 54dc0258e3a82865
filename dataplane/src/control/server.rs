//! The control API: newline-delimited JSON over a Unix-domain socket.
//!
//! One request per line, one response per line. Changes (see
//! [`ControlState::apply`](super::state::ControlState::apply)) answer
//! `{"ok":true,"generation":G}`: G is the snapshot generation that contains them.
//! `{"op":"batch","ops":[...]}` applies many changes as one publication. Queries:
//! `list_tunnels`, `list_routes`, `list_neighbors`, `counters`, `generations` (the newest
//! generation and the one each worker has reached), `lookup` (`"dst"`). Errors answer
//! `{"ok":false,"error":"..."}` and change nothing.
//!
//! The socket is created mode 0600 inside a directory the server creates mode 0700, so
//! other local users can neither connect nor replace it.

use super::progress::WorkerProgress;
use super::state::ControlState;
use crate::pipeline::{Counters, DropReason, Event, PuntReason};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Largest request line accepted.
const MAX_REQUEST: usize = 64 << 20;

/// Create the socket at `path` (parent directory 0700 if we create it, socket 0600).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            // A socket left by an earlier run: replace it.
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Most clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;

/// Serve requests until `stop` is set: a thread per client, so a slow or idle client
/// never holds up another (changes are still applied one at a time, under the lock).
pub fn serve(
    listener: &UnixListener,
    state: &Mutex<ControlState>,
    workers: &[WorkerProgress],
    stop: &AtomicBool,
) {
    let clients = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        while !stop.load(Ordering::Relaxed) {
            if clients.load(Ordering::Acquire) >= MAX_CLIENTS {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    clients.fetch_add(1, Ordering::AcqRel);
                    let clients = &clients;
                    scope.spawn(move || {
                        if let Err(e) = handle(stream, state, workers, stop) {
                            log::debug!("control client: {e}");
                        }
                        clients.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => {
                    log::warn!("control socket: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    });
}

fn handle(
    stream: UnixStream,
    state: &Mutex<ControlState>,
    workers: &[WorkerProgress],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    // A blocked read wakes up now and then to notice `stop`.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        let n = match reader
            .by_ref()
            .take(MAX_REQUEST as u64)
            .read_line(&mut line)
        {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if line.is_empty() {
                    continue;
                }
                return Err(e); // a request cut in the middle by a stalled client
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        let response = match serde_json::from_str::<Value>(&line) {
            Ok(req) => respond(&req, state, workers),
            Err(e) => json!({"ok": false, "error": format!("request is not JSON: {e}")}),
        };
        writer.write_all(response.to_string().as_bytes())?;
        writer.write_all(b"\n")?;
    }
    Ok(())
}

/// The answer to one request.
pub fn respond(req: &Value, state: &Mutex<ControlState>, workers: &[WorkerProgress]) -> Value {
    let Ok(mut st) = state.lock() else {
        return json!({"ok": false, "error": "control state unavailable"});
    };
    let op = req.get("op").and_then(Value::as_str).unwrap_or("");
    let result: Result<Value, String> = match op {
        "batch" => match req.get("ops").and_then(Value::as_array) {
            Some(ops) => st
                .apply(ops)
                .map(|g| json!({"generation": g, "applied": ops.len()})),
            None => Err("batch: missing array field \"ops\"".into()),
        },
        "add_tunnel" | "remove_tunnel" | "set_route" | "add_route" | "remove_route"
        | "set_neighbor" | "remove_neighbor" | "apply_config" => st
            .apply(std::slice::from_ref(req))
            .map(|g| json!({"generation": g})),
        "list_tunnels" => Ok(json!({"tunnels": st.list_tunnels()})),
        "list_routes" => Ok(json!({"routes": st.list_routes()})),
        "list_neighbors" => Ok(json!({"neighbors": st.list_neighbors()})),
        "lookup" => match req.get("dst").and_then(Value::as_str).map(str::parse) {
            Some(Ok(dst)) => Ok(st.lookup(dst)),
            _ => Err("lookup: \"dst\" must be an IPv4 address".into()),
        },
        "generations" => {
            let newest = st.snapshots().load().generation();
            let reached: Vec<u64> = workers
                .iter()
                .map(|w| w.generation.load(Ordering::Relaxed))
                .collect();
            Ok(json!({"generation": newest, "workers": reached}))
        }
        "counters" => Ok(counters(&st, workers)),
        "" => Err("missing field \"op\"".into()),
        other => Err(format!("unknown op {other:?}")),
    };
    match result {
        Ok(Value::Object(mut m)) => {
            m.insert("ok".into(), Value::Bool(true));
            Value::Object(m)
        }
        Ok(v) => json!({"ok": true, "result": v}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

fn named(items: impl Iterator<Item = (&'static str, u64)>) -> Map<String, Value> {
    items.map(|(k, v)| (k.to_owned(), Value::from(v))).collect()
}

fn counters(st: &ControlState, workers: &[WorkerProgress]) -> Value {
    let mut total = Counters::default();
    for w in workers {
        if let Ok(c) = w.counters.lock() {
            total.merge(&c);
        }
    }
    let snap = st.snapshots().load();
    let tunnels: Vec<Value> = snap
        .tunnels()
        .iter()
        .map(|(id, t)| {
            let c = total.tunnels.get(id.index()).copied().unwrap_or_default();
            json!({"name": t.config.name, "rx_packets": c.rx.packets, "rx_bytes": c.rx.bytes,
                   "tx_packets": c.tx.packets, "tx_bytes": c.tx.bytes})
        })
        .collect();
    let ports: Vec<Value> = st
        .config()
        .ports
        .iter()
        .zip(st.ports())
        .map(|(p, &(id, _))| {
            let c = total
                .ports
                .get(usize::from(id))
                .copied()
                .unwrap_or_default();
            json!({"name": p.name, "rx_packets": c.rx.packets, "tx_packets": c.tx.packets})
        })
        .collect();
    json!({
        "generation": snap.generation(),
        "ports": ports,
        "tunnels": tunnels,
        "drops": named(DropReason::ALL.iter().map(|r| (r.name(), total.drop_count(*r)))),
        "events": named(Event::ALL.iter().map(|e| (e.name(), total.event_count(*e)))),
        "punts": named(PuntReason::ALL.iter().map(|p| (p.name(), total.punt_count(*p)))),
    })
}
