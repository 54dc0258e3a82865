//! The control API: newline-delimited JSON over a Unix-domain socket.
//!
//! One request per line, one response per line. Changes (see
//! [`ControlState::apply`](super::state::ControlState::apply)) answer
//! `{"ok":true,"generation":G}`: G is the snapshot generation that contains them.
//! `{"op":"batch","ops":[...]}` applies many changes as one publication. Queries:
//! `list_tunnels` (each with its `state`: `up`, `unresolved` while its next hop's MAC is
//! unknown, `link-down`), `list_routes` (`"all":true` adds the tunnels' prefixes),
//! `list_neighbors`, `counters`, `generations` (the newest generation and the one each
//! worker has reached), `lookup` (`"dst"`), `interfaces` (each port's driver, MAC, MTU,
//! addresses, queues, link and counters), `status` (versions, file prefix, files, the FPM
//! listener's address). `list_routes` with `"all":true` lists zebra's routes too (source
//! `frr`), and every route with its administrative `distance`; `counters` has `fpm`.
//! Operations: `clear_counters` (later `counters` and `interfaces` answers count from
//! here; `"raw":true` asks for the counters since start), `diff` (how the running
//! configuration differs from the configuration file), `save` (write it to the file),
//! `reload` (make the file the running configuration, as SIGHUP does). Errors answer
//! `{"ok":false,"error":"..."}` and change nothing; an error about a change names it
//! (`change 2 (set_route 10.9.0.0/16): route[3].tunnel: ...`). Every change applied is
//! logged with where it came from (the client's uid and pid) and its generation (see
//! [`audit`](super::audit)).
//!
//! The workers' counters in `counters` are copies each worker makes every few thousand
//! polls. Per worker, `workers[i].copies` says which copy it is (they are numbered from 1)
//! and `workers[i].generation` the generation that worker had reached when it made it:
//! whatever it counted after that copy, it processed under that generation or a newer one.
//! So a client that changed the tables (generation G) and wants counters that include
//! every packet processed under older ones waits for `workers[i].generation >= G`. The
//! answer's `api` is the server's own count of connections, requests (and of those, the
//! ones answered with an error) and requests refused with the connection closed
//! (`too_long`, `cut`, `stalled`); each is counted before its answer is written.
//!
//! A request is a JSON object on one line of at most [`MAX_REQUEST`] bytes, ended by a
//! newline. What is not is refused, and applies nothing: a line that is not JSON or not an
//! object gets an error and the connection goes on; a line longer than the limit, one cut
//! short by the end of the connection, or one stalled mid-way for [`REQUEST_STALL`] gets an
//! error and the connection is closed (what follows an over-long line is never read as
//! requests).
//!
//! The socket is created mode 0600 inside a directory the server creates mode 0700, so
//! other local users can neither connect nor replace it.

use super::appliance::{Appliance, Baseline, Totals};
use super::audit;
use super::progress::{PortTx, PortsHealth, WorkerProgress};
use super::state::ControlState;
use crate::pipeline::{Counters, DropReason, Event, IcmpKind, PuntReason};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest request accepted, in bytes, its newline not counted.
///
/// A batch that replaces a full Internet table must fit: some 600,000 `set_route` changes
/// of 65 (into a tunnel) to 100 bytes (natively, with a next hop) each are 40 to 60 MB of
/// JSON. A client's buffer grows only as far as its request does and is given back after
/// a large one; at most 16 clients (`MAX_CLIENTS`) are served at once, so the worst case
/// is 1 GiB of request buffers (plus the parsed JSON), which only the socket's owner can
/// cause. A table larger than this goes in as a file: `apply_config`.
pub const MAX_REQUEST: usize = 64 << 20;

/// How long a client may pause in the middle of a request before it is refused and
/// disconnected (between requests it may stay idle as long as it likes).
pub const REQUEST_STALL: Duration = Duration::from_secs(10);

/// How long writing an answer may block on a client that does not read it; then the
/// client is dropped, so that it cannot hold up shutdown.
const WRITE_STALL: Duration = Duration::from_secs(10);

/// A request buffer above this size is given back after its request.
const KEEP_BUFFER: usize = 1 << 20;

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

/// What the API reads of the running appliance besides its tables: the workers' progress
/// and counters, and the ports' device counters and links as the control thread last read
/// them.
#[derive(Debug, Clone, Copy)]
pub struct Live<'a> {
    pub workers: &'a [WorkerProgress],
    pub ports: &'a PortsHealth,
    /// What the server counts of its own clients.
    pub api: &'a ApiCounters,
    /// What the appliance is, the control thread's counters, the counters' baseline.
    pub appliance: &'a Appliance,
}

/// The server's count of its clients and their requests (the `counters` answer's `api`).
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Clients accepted.
    pub connections: AtomicU64,
    /// Request lines answered, errors included.
    pub requests: AtomicU64,
    /// Request lines answered with an error.
    pub errors: AtomicU64,
    /// Requests refused, and their connection closed: longer than [`MAX_REQUEST`].
    pub too_long: AtomicU64,
    /// ... cut short by the end of the connection (whether or not the client was still
    /// there to read the refusal).
    pub cut: AtomicU64,
    /// ... stalled mid-way for [`REQUEST_STALL`].
    pub stalled: AtomicU64,
}

impl ApiCounters {
    /// Count how reading a request ended, and the answer to it.
    fn count(&self, line: Line, response: &Value) {
        let counter = match line {
            Line::Request => {
                if response.get("ok") != Some(&Value::Bool(true)) {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                &self.requests
            }
            Line::TooLong => &self.too_long,
            Line::Cut => &self.cut,
            Line::Stalled => &self.stalled,
            Line::End | Line::Stopped => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "connections": n(&self.connections),
            "requests": n(&self.requests),
            "errors": n(&self.errors),
            "too_long": n(&self.too_long),
            "cut": n(&self.cut),
            "stalled": n(&self.stalled),
        })
    }
}

/// Most clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 16;

/// Serve requests until `stop` is set: a thread per client, so a slow or idle client
/// never holds up another (changes are still applied one at a time, under the lock).
pub fn serve(
    listener: &UnixListener,
    state: &Mutex<ControlState>,
    live: Live<'_>,
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
                    live.api.connections.fetch_add(1, Ordering::Relaxed);
                    clients.fetch_add(1, Ordering::AcqRel);
                    let clients = &clients;
                    scope.spawn(move || {
                        if let Err(e) = handle(stream, state, live, stop) {
                            log::debug!("control client: {e}");
                        }
                        clients.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                // A new client waits at most this long: few wakeups when nobody asks.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    log::warn!("control socket: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    });
}

/// How reading one request line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// A whole line, its newline consumed and not kept.
    Request,
    /// The client closed between requests.
    End,
    /// No newline within [`MAX_REQUEST`] bytes.
    TooLong,
    /// The client closed in the middle of a line.
    Cut,
    /// Nothing more of the line arrived for [`REQUEST_STALL`].
    Stalled,
    /// The server is stopping.
    Stopped,
}

/// Read the next request line into `request` (cleared first), never more than
/// [`MAX_REQUEST`] bytes of it.
fn read_request(
    reader: &mut BufReader<UnixStream>,
    request: &mut Vec<u8>,
    stop: &AtomicBool,
) -> std::io::Result<Line> {
    request.clear();
    let mut stalled_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Line::Stopped);
        }
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            // The read timeout: a chance to notice `stop`, and to give up on a client
            // that stopped sending in the middle of a request.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if !request.is_empty()
                    && stalled_since.get_or_insert_with(Instant::now).elapsed() >= REQUEST_STALL
                {
                    return Ok(Line::Stalled);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if request.is_empty() {
                Line::End
            } else {
                Line::Cut
            });
        }
        stalled_since = None;
        let (len, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if len > MAX_REQUEST - request.len() {
            return Ok(Line::TooLong);
        }
        request.extend_from_slice(&chunk[..len]);
        reader.consume(len + usize::from(newline));
        if newline {
            return Ok(Line::Request);
        }
    }
}

fn refusal(error: String) -> Value {
    json!({"ok": false, "error": error})
}

fn handle(
    stream: UnixStream,
    state: &Mutex<ControlState>,
    live: Live<'_>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let who = peer(&stream);
    // A blocked read wakes up now and then to notice `stop`.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(WRITE_STALL))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut request = Vec::new();
    loop {
        let line = read_request(&mut reader, &mut request, stop)?;
        let response = match line {
            Line::End | Line::Stopped => return Ok(()),
            Line::Request => match serde_json::from_slice::<Value>(&request) {
                Ok(req) => respond_as(&req, state, live, &who),
                Err(e) => refusal(format!("request is not JSON: {e}")),
            },
            Line::TooLong => refusal(format!("request exceeds {MAX_REQUEST} bytes")),
            Line::Cut => {
                refusal("request cut short: the connection ended before its newline".into())
            }
            Line::Stalled => refusal(format!(
                "request incomplete: nothing more of it arrived for {} s",
                REQUEST_STALL.as_secs()
            )),
        };
        // Counted before the answer goes out: a client that has read it sees it counted.
        live.api.count(line, &response);
        let mut answer = response.to_string();
        answer.push('\n');
        let written = writer.write_all(answer.as_bytes());
        if line != Line::Request {
            // Refused, and the connection ends here; the client may be gone already.
            if let Err(e) = written {
                log::debug!("control client: {e}");
            }
            return Ok(());
        }
        written?;
        if request.capacity() > KEEP_BUFFER {
            request = Vec::new();
        }
    }
}

/// Who is at the other end of a control connection, for the audit trail:
/// `api uid=0 pid=4242 (backbone)`.
#[cfg(feature = "dpdk")]
fn peer(stream: &UnixStream) -> String {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(c) => {
            let pid = c.pid.as_raw_nonzero().get();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            format!("api uid={} pid={pid} ({comm})", c.uid.as_raw())
        }
        Err(_) => "api".to_owned(),
    }
}

#[cfg(not(feature = "dpdk"))]
fn peer(_stream: &UnixStream) -> String {
    "api".to_owned()
}

/// The answer to one request from an unnamed client.
pub fn respond(req: &Value, state: &Mutex<ControlState>, live: Live<'_>) -> Value {
    respond_as(req, state, live, "api")
}

/// The answer to one request; `who` names the client in the audit trail.
pub fn respond_as(req: &Value, state: &Mutex<ControlState>, live: Live<'_>, who: &str) -> Value {
    let workers = live.workers;
    if !req.is_object() {
        return refusal(
            "request is not a JSON object (expected one like {\"op\":\"list_tunnels\"})".into(),
        );
    }
    let op = match req.get("op") {
        None => "",
        Some(Value::String(op)) => op.as_str(),
        Some(other) => {
            return refusal(format!(
                "field \"op\" must be a string, not {}",
                json_type(other)
            ))
        }
    };
    if op == "trace" || op == "capture" {
        // Waits for packets: never under the state's lock.
        return match tap_session(op, req, state, live) {
            Ok(Value::Object(mut m)) => {
                m.insert("ok".into(), Value::Bool(true));
                Value::Object(m)
            }
            Ok(v) => json!({"ok": true, "result": v}),
            Err(e) => refusal(e),
        };
    }
    let Ok(mut st) = state.lock() else {
        return refusal("control state unavailable".into());
    };
    let result: Result<Value, String> = match op {
        "batch" => match req.get("ops").and_then(Value::as_array) {
            Some(ops) => st
                .apply_as(ops, who)
                .map(|g| json!({"generation": g, "applied": ops.len()})),
            None => Err("batch: missing array field \"ops\"".into()),
        },
        "add_tunnel" | "remove_tunnel" | "set_route" | "add_route" | "remove_route"
        | "set_neighbor" | "remove_neighbor" | "set_address" | "apply_config" => st
            .apply_as(std::slice::from_ref(req), who)
            .map(|g| json!({"generation": g})),
        "list_tunnels" => Ok(json!({"tunnels": tunnels(&st, live)})),
        "list_routes" => Ok(
            json!({"routes": if req.get("all") == Some(&Value::Bool(true)) {
                st.list_all_routes()
            } else {
                st.list_routes()
            }}),
        ),
        "interfaces" => Ok(json!({"interfaces": interfaces(&st, live, false)})),
        "status" => Ok(status(&st, live)),
        "clear_counters" => {
            let generation = st.snapshots().current().generation();
            let (totals, _) = gather(live);
            if let Ok(mut b) = live.appliance.baseline.lock() {
                *b = Some(Baseline {
                    totals,
                    generation,
                    at: std::time::SystemTime::now(),
                });
            }
            log::info!(target: audit::TARGET, "generation {generation}: {who}: counters cleared");
            Ok(json!({"cleared": true, "generation": generation}))
        }
        "diff" => st.diff().map(|(file, differences)| {
            json!({
                "file": file.display().to_string(),
                "generation": st.snapshots().current().generation(),
                "differences": differences.iter().map(|d| json!({
                    "section": d.section,
                    "key": d.key,
                    "change": match &d.change {
                        pipeline_config::Change::Added(_) => "added",
                        pipeline_config::Change::Removed(_) => "removed",
                        pipeline_config::Change::Changed(_) => "changed",
                    },
                    "needs_restart": d.needs_restart(),
                    "text": d.to_string(),
                })).collect::<Vec<_>>(),
            })
        }),
        "save" => st.save(who).map(|(file, changed)| {
            json!({"file": file.display().to_string(), "changed": changed,
                   "generation": st.snapshots().current().generation()})
        }),
        "reload" => {
            let r = st.reload(who);
            let c = &live.appliance.control;
            match &r {
                Ok(_) => c.reloads.fetch_add(1, Ordering::Relaxed),
                Err(_) => c.reload_failures.fetch_add(1, Ordering::Relaxed),
            };
            r.map(|g| match g {
                Some(g) => json!({"generation": g, "changed": true}),
                None => {
                    json!({"generation": st.snapshots().current().generation(), "changed": false})
                }
            })
        }
        "list_neighbors" => Ok(json!({"neighbors": st.list_neighbors()})),
        "lookup" => match req.get("dst").and_then(Value::as_str).map(str::parse) {
            Some(Ok(std::net::IpAddr::V4(dst))) => Ok(st.lookup(dst)),
            Some(Ok(std::net::IpAddr::V6(dst))) => Ok(st.lookup6(dst)),
            _ => Err("lookup: \"dst\" must be an IPv4 or IPv6 address".into()),
        },
        "generations" => {
            let newest = st.snapshots().generation();
            let reached: Vec<u64> = workers
                .iter()
                .map(|w| w.generation.load(Ordering::Relaxed))
                .collect();
            Ok(json!({"generation": newest, "workers": reached}))
        }
        "counters" => Ok(counters(
            &st,
            live,
            req.get("raw") == Some(&Value::Bool(true)),
        )),
        "" => Err("missing field \"op\"".into()),
        other => Err(format!("unknown op {:?}", clipped(other))),
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

/// `trace` (`count`, optional `port` and `tunnel` names, `timeout_ms`): the next
/// `count` packets that match, each with its stages; `capture` (`count`, one of `port` and
/// `tunnel`, `timeout_ms`): their frames, for the client to write as pcapng.
fn tap_session(
    op: &str,
    req: &Value,
    state: &Mutex<ControlState>,
    live: Live<'_>,
) -> Result<Value, String> {
    use super::trace::{self, Ask, Names};
    let count = match req.get("count") {
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=trace::MAX_COUNT).contains(n))
            .ok_or_else(|| {
                format!(
                    "{op}: \"count\" must be a number of packets, 1 to {}",
                    trace::MAX_COUNT
                )
            })?,
        None => return Err(format!("{op}: missing field \"count\"")),
    };
    let timeout = match req.get("timeout_ms") {
        None => trace::DEFAULT_TIMEOUT,
        Some(v) => v
            .as_u64()
            .map(Duration::from_millis)
            .filter(|t| !t.is_zero() && *t <= trace::MAX_TIMEOUT)
            .ok_or_else(|| {
                format!(
                    "{op}: \"timeout_ms\" must be 1 to {} milliseconds",
                    trace::MAX_TIMEOUT.as_millis()
                )
            })?,
    };
    let name = |key: &str| -> Result<Option<&str>, String> {
        match req.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!(
                "{op}: \"{key}\" must be a name, not {}",
                json_type(other)
            )),
        }
    };
    let (port, tunnel) = (name("port")?, name("tunnel")?);
    if op == "capture" && port.is_some() == tunnel.is_some() {
        return Err("capture: give one of \"port\" and \"tunnel\"".into());
    }
    let filter = {
        let st = state
            .lock()
            .map_err(|_| "control state unavailable".to_owned())?;
        let snap = std::sync::Arc::clone(st.snapshots().current());
        let names = Names::new(&st, &snap);
        crate::tap::Filter {
            port: port
                .map(|p| {
                    names.port_id(p).ok_or_else(|| {
                        format!("{op}: port {:?} is not a configured port", clipped(p))
                    })
                })
                .transpose()?,
            tunnel: tunnel
                .map(|t| {
                    names.tunnel_id(t).ok_or_else(|| {
                        format!("{op}: tunnel {:?} is not a configured tunnel", clipped(t))
                    })
                })
                .transpose()?,
        }
    };
    let got = live.appliance.taps.run(
        live.workers,
        Ask {
            filter,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            timeout,
        },
    )?;
    let st = state
        .lock()
        .map_err(|_| "control state unavailable".to_owned())?;
    let snap = std::sync::Arc::clone(st.snapshots().current());
    let names = Names::new(&st, &snap);
    let mut answer = json!({
        "asked": count,
        "seen": got.records.len(),
        "lost": got.lost,
        "timed_out": got.timed_out,
        "timeout_ms": timeout.as_millis() as u64,
    });
    if op == "trace" {
        answer["packets"] = got
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| trace::describe(&names, &st, r, i + 1))
            .collect();
    } else {
        answer["interfaces"] = trace::interfaces(&names, filter)
            .into_iter()
            .map(|(name, link)| json!({"name": name, "linktype": link}))
            .collect();
        let mut packets = Vec::new();
        for r in &got.records {
            let time = got.epoch_unix_ns + u128::from(r.time_ns);
            for (interface, inbound, bytes, len, comment) in trace::frames(&names, r, filter) {
                packets.push(json!({
                    "interface": interface,
                    "inbound": inbound,
                    "time_unix_ns": time.to_string(),
                    "len": len,
                    "data": trace::hex(bytes),
                    "comment": comment,
                }));
            }
        }
        answer["packets"] = Value::Array(packets);
    }
    Ok(answer)
}

/// What kind of JSON value `v` is, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 64 characters of a client's string, for echoing it in an error.
fn clipped(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

fn named(items: impl Iterator<Item = (&'static str, u64)>) -> Map<String, Value> {
    items.map(|(k, v)| (k.to_owned(), Value::from(v))).collect()
}

/// Every counter, summed over the workers, as they last copied them; and which copy of
/// each worker's counters that is.
pub fn gather(live: Live<'_>) -> (Totals, Vec<Value>) {
    let mut total = Counters::default();
    let mut tx = PortTx::default();
    let mut copies = Vec::with_capacity(live.workers.len());
    for w in live.workers {
        if let Ok(c) = w.counters.lock() {
            total.merge(&c);
            // Under the lock: which copy `c` is, and from which generation on.
            let (polls, busy_polls, idle_sleeps, idle_sleep_us) = w.polling.load();
            copies.push(json!({
                "copies": w.counters_copies.load(Ordering::Relaxed),
                "generation": w.counters_generation.load(Ordering::Relaxed),
                "poll": match w.poll {
                    super::progress::Poll::Busy => "busy",
                    super::progress::Poll::Adaptive { .. } => "adaptive",
                },
                "polls": polls,
                "busy_polls": busy_polls,
                "busy_share": if polls > 0 { busy_polls as f64 / polls as f64 } else { 0.0 },
                "idle_sleeps": idle_sleeps,
                "idle_sleep_us": idle_sleep_us,
            }));
        } else {
            copies.push(Value::Null);
        }
        if let Ok(t) = w.tx.lock() {
            for (sum, part) in [(&mut tx.sent, &t.sent), (&mut tx.dropped, &t.dropped)] {
                if sum.len() < part.len() {
                    sum.resize(part.len(), 0);
                }
                for (s, p) in sum.iter_mut().zip(part) {
                    *s += p;
                }
            }
        }
    }
    if let Ok(c) = live.appliance.host.pipeline.lock() {
        total.merge_tx(&c);
    }
    let health = live.ports.lock().map(|h| h.clone()).unwrap_or_default();
    (
        Totals {
            counters: total,
            tx,
            health,
        },
        copies,
    )
}

/// The counters since the last `clear_counters` (or since start, with `raw`), and the
/// baseline they count from as JSON (`null`: since start).
fn counted(live: Live<'_>, raw: bool) -> (Totals, Vec<Value>, Value) {
    let (totals, copies) = gather(live);
    let base = if raw {
        None
    } else {
        live.appliance.baseline.lock().ok().and_then(|b| b.clone())
    };
    match base {
        Some(b) => {
            let at =
                b.at.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
            (
                totals.since(&b.totals),
                copies,
                json!({"generation": b.generation, "unix_time": at}),
            )
        }
        None => (totals, copies, Value::Null),
    }
}

/// One port's counters as the API shows them (`counters`, `interfaces`).
fn port_counters(totals: &Totals, i: usize, slot: usize) -> Map<String, Value> {
    let c = totals.counters.ports.get(slot).copied().unwrap_or_default();
    let mut m = Map::new();
    for (k, x) in [
        ("rx_packets", c.rx.packets),
        ("rx_bytes", c.rx.bytes),
        ("tx_packets", c.tx.packets),
        ("tx_bytes", c.tx.bytes),
        ("tx_sent", totals.tx.sent.get(slot).copied().unwrap_or(0)),
        (
            "tx_dropped",
            totals.tx.dropped.get(slot).copied().unwrap_or(0),
        ),
    ] {
        m.insert(k.into(), Value::from(x));
    }
    m.insert(
        "drops".into(),
        Value::Object(named(
            DropReason::ALL
                .iter()
                .map(|r| (r.name(), c.drops[*r as usize]))
                .filter(|(_, n)| *n > 0),
        )),
    );
    if let Some(h) = totals.health.get(i) {
        for (k, x) in [
            ("hw_rx_packets", h.rx_packets),
            ("hw_rx_bytes", h.rx_bytes),
            ("hw_tx_packets", h.tx_packets),
            ("hw_tx_bytes", h.tx_bytes),
            ("rx_errors", h.rx_errors),
            ("rx_missed", h.rx_missed),
            ("rx_no_mbuf", h.rx_no_mbuf),
            ("tx_errors", h.tx_errors),
            ("link_changes", h.link_changes),
        ] {
            m.insert(k.into(), Value::from(x));
        }
        m.insert("link_up".into(), Value::Bool(h.link_up));
    }
    m
}

/// The `counters` answer (since the last `clear_counters`, or since start with `raw`).
pub fn counters(st: &ControlState, live: Live<'_>, raw: bool) -> Value {
    let (totals, copies, since) = counted(live, raw);
    let total = &totals.counters;
    let snap = st.snapshots().current();
    let tunnels: Vec<Value> = snap
        .tunnels()
        .iter()
        .map(|(id, t)| {
            let c = total.tunnels.get(id.index()).copied().unwrap_or_default();
            let d = total
                .tunnel_drops
                .get(id.index())
                .copied()
                .unwrap_or_default();
            json!({"name": t.config.name, "rx_packets": c.rx.packets, "rx_bytes": c.rx.bytes,
                   "tx_packets": c.tx.packets, "tx_bytes": c.tx.bytes,
                   "drops": named(d.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.name(), n)))})
        })
        .collect();
    let ports: Vec<Value> = st
        .config()
        .ports
        .iter()
        .zip(st.ports())
        .enumerate()
        .map(|(i, (p, &(id, _)))| {
            let mut m = Map::new();
            m.insert("name".into(), json!(p.name));
            m.extend(port_counters(&totals, i, usize::from(id)));
            Value::Object(m)
        })
        .collect();
    json!({
        "generation": snap.generation(),
        "since": since,
        "ports": ports,
        "tunnels": tunnels,
        "drops": named(DropReason::ALL.iter().map(|r| (r.name(), total.drop_count(*r)))),
        "events": named(Event::ALL.iter().map(|e| (e.name(), total.event_count(*e)))),
        "punts": named(PuntReason::ALL.iter().map(|p| (p.name(), total.punt_count(*p)))),
        "icmp_sent": named(IcmpKind::ALL.iter().map(|k| (k.name(), total.icmp_count(*k)))),
        "icmp_rate_limited": total.icmp_rate_limited,
        "echo_replies": total.echo_replies,
        "control": named(live.appliance.control.named().into_iter()),
        "neighbors": neighbor_counters(live),
        "fpm": fpm(st, live),
        "host": host_counters(live),
        "workers": copies,
        "api": live.api.to_json(),
    })
}

/// The FPM listener's counters (routes from zebra): where it listens (`null`: no listener),
/// whether zebra is connected, frames and routes, errors by kind, and the routes zebra's
/// layer holds now (`routes`) and how many of those are `stale` (sent over an earlier
/// connection and not yet again).
pub fn fpm(st: &ControlState, live: Live<'_>) -> Value {
    let c = &live.appliance.fpm;
    let mut m = named(c.named().into_iter());
    let (routes, stale) = st.dynamic_counts();
    m.insert("routes".into(), json!(routes));
    m.insert("stale".into(), json!(stale));
    m.insert("errors".into(), Value::Object(named(c.errors())));
    let listen = c.listen.lock().ok().and_then(|l| *l);
    m.insert("listen".into(), json!(listen.map(|a| a.to_string())));
    Value::Object(m)
}

/// What the workers did with ARP and Neighbor Discovery, all workers together: requests
/// and solicitations answered, ND messages found invalid, neighbours handed to the control
/// thread and those its queue could not take (the names of `backbone run --stats`).
fn neighbor_counters(live: Live<'_>) -> Value {
    let mut sums: Vec<(&'static str, u64)> = crate::control::progress::NeighborCounters::default()
        .named()
        .to_vec();
    for w in live.workers {
        for (sum, (_, v)) in sums.iter_mut().zip(w.neighbors.named()) {
            sum.1 += v;
        }
    }
    Value::Object(named(sums.into_iter()))
}

/// The exception path's counters: what the workers handed it (or could not), what it
/// wrote into the host interfaces and read from them, and its drops by reason.
fn host_counters(live: Live<'_>) -> Value {
    let mut m = named(live.appliance.host.named().into_iter());
    let sum = |f: &dyn Fn(&crate::control::progress::WorkerProgress) -> u64| {
        live.workers.iter().map(f).sum::<u64>()
    };
    m.insert(
        "queued".into(),
        json!(sum(&|w| w.host_queued.load(Ordering::Relaxed))),
    );
    m.insert(
        "queue_full".into(),
        json!(sum(&|w| w.host_queue_full.load(Ordering::Relaxed))),
    );
    m.insert(
        "punt_dropped".into(),
        Value::Object(named(PuntReason::ALL.iter().map(|&r| {
            (
                r.name(),
                sum(&|w| w.punt_dropped[r as usize].load(Ordering::Relaxed)),
            )
        }))),
    );
    let drops = live
        .appliance
        .host
        .pipeline
        .lock()
        .map(|c| {
            named(
                DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), c.drop_count(*r)))
                    .filter(|(_, n)| *n > 0),
            )
        })
        .unwrap_or_default();
    m.insert("drops".into(), Value::Object(drops));
    Value::Object(m)
}

/// A tunnel's state: `up` (next hop resolved, egress link up), `unresolved` (its next
/// hop's MAC is unknown: its packets drop as `no_neighbor`), `link-down`. A probed tunnel
/// that is `up` so shows its probes' health instead (`degraded`, `down`).
pub fn tunnel_state(resolved: bool, link_up: Option<bool>) -> &'static str {
    match (resolved, link_up) {
        (_, Some(false)) => "link-down",
        (false, _) => "unresolved",
        (true, _) => "up",
    }
}

/// The tunnels, each with its state (the tables and the links: no counters, so that two
/// answers differ only when something changed).
pub fn tunnels(st: &ControlState, live: Live<'_>) -> Value {
    let health = live.ports.lock().map(|h| h.clone()).unwrap_or_default();
    let board = live
        .appliance
        .host
        .probes
        .lock()
        .map(|b| crate::control::health::ProbeBoard {
            tunnels: b.tunnels.clone(),
            changes: Vec::new(),
        })
        .unwrap_or_default();
    let mut list = st.list_tunnels();
    for t in list.as_array_mut().into_iter().flatten() {
        let port = t["port"].as_str().unwrap_or("");
        let link_up = st
            .config()
            .ports
            .iter()
            .position(|p| p.name == port)
            .and_then(|i| health.get(i))
            .map(|h| h.link_up);
        let resolved = !t["next_hop_mac"].is_null();
        let mut state = tunnel_state(resolved, link_up);
        let name = t["name"].as_str().unwrap_or("").to_owned();
        if let Some(p) = board.tunnels.get(&name) {
            // A probed tunnel that the tables would use is as healthy as its probes say.
            if state == "up" {
                state = p.health.name();
            }
            t["probe"] = json!({
                "health": p.health.name(),
                "since_ms": p.since.elapsed().as_millis() as u64,
                "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1e3),
                "sent": p.sent,
                "replies": p.replies,
                "lost": p.lost,
                "stale": p.stale,
            });
        }
        t["state"] = json!(state);
    }
    list
}

/// Each port: what it is, its addresses, queues, link and counters.
pub fn interfaces(st: &ControlState, live: Live<'_>, raw: bool) -> Vec<Value> {
    let (totals, _, _) = counted(live, raw);
    st.config()
        .ports
        .iter()
        .zip(st.ports())
        .enumerate()
        .map(|(i, (p, &(id, mac)))| {
            let info = live.appliance.ports.get(i).cloned().unwrap_or_default();
            let h = totals.health.get(i).copied().unwrap_or_default();
            json!({
                "name": p.name,
                "device": p.device,
                "ethdev": info.device,
                "port_id": id,
                "driver": info.driver,
                "mac": mac.to_string(),
                "mtu": p.mtu,
                "device_mtu": info.device_mtu,
                "addresses": p
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .chain(p.addresses6.iter().map(ToString::to_string))
                    .collect::<Vec<_>>(),
                "link_local": crate::wire::nd::link_local(mac).to_string(),
                "roles": p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "transit": p.transit,
                "rx_queues": info.rx_queues,
                "tx_queues": info.tx_queues,
                "control_queue": info.control_queue,
                "rss": info.rss,
                "link": {
                    "up": h.link_up,
                    "speed_mbps": h.link_speed_mbps,
                    "full_duplex": h.link_full_duplex,
                    "interrupt": info.link_interrupt,
                    "changes": h.link_changes,
                },
                "counters": Value::Object(port_counters(&totals, i, usize::from(id))),
            })
        })
        .collect()
}

/// The `status` answer.
pub fn status(st: &ControlState, live: Live<'_>) -> Value {
    let a = &live.appliance.about;
    let snap = st.snapshots().current();
    json!({
        "version": a.version,
        "dpdk": a.dpdk,
        "pid": std::process::id(),
        "file_prefix": a.file_prefix,
        "runtime_dir": a.runtime_dir,
        "capture": a.capture,
        "config": st.file().map(|f| f.display().to_string()),
        "control_socket": a.control_socket,
        "metrics": a.metrics,
        "uptime_s": a.started.map_or(0, |t| t.elapsed().as_secs()),
        "generation": snap.generation(),
        "workers": live.workers.len(),
        "ports": st.config().ports.len(),
        "tunnels": snap.tunnels().iter().count(),
        "fpm": live.appliance.fpm.listen.lock().ok().and_then(|l| *l).map(|a| a.to_string()),
        // What the backbone's policy agent compares with the policy (BGP across the core).
        "bgp": st.config().bgp.as_ref().map(|b| json!({
            "asn": b.asn,
            "ibgp_source": b.ibgp_source.map(|a| a.to_string()),
            "ibgp_peers": b.ibgp_peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads requests from what a client writes (on its own thread), the way `handle` does.
    fn lines(client: impl FnOnce(UnixStream) + Send + 'static) -> Vec<(Line, Vec<u8>)> {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let writer = std::thread::spawn(move || client(theirs));
        let mut reader = BufReader::new(ours);
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        loop {
            let mut request = Vec::new();
            let line = read_request(&mut reader, &mut request, &stop).unwrap();
            out.push((line, request));
            if line != Line::Request {
                break;
            }
        }
        drop(reader); // a client still writing gets EPIPE
        writer.join().unwrap();
        out
    }

    #[test]
    fn requests_are_lines() {
        let got = lines(|mut c| c.write_all(b"{\"a\":1}\n\n[2]\r\n").unwrap());
        assert_eq!(
            got,
            [
                (Line::Request, b"{\"a\":1}".to_vec()),
                (Line::Request, vec![]),
                (Line::Request, b"[2]\r".to_vec()),
                (Line::End, vec![]),
            ]
        );
    }

    #[test]
    fn a_line_without_its_newline_is_cut() {
        let got = lines(|mut c| c.write_all(b"{\"op\":\"list_routes\"}").unwrap());
        assert_eq!(got, [(Line::Cut, b"{\"op\":\"list_routes\"}".to_vec())]);
    }

    #[test]
    fn the_limit_holds_exactly() {
        let got = lines(|mut c| {
            let mut bytes = vec![b' '; MAX_REQUEST];
            bytes.push(b'\n');
            c.write_all(&bytes).unwrap();
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, Line::Request);
        assert_eq!(got[0].1.len(), MAX_REQUEST);
        assert_eq!(got[1].0, Line::End);

        // One byte more, then a request: refused at the limit, the request never read.
        let got = lines(|mut c| {
            let mut bytes = vec![b' '; MAX_REQUEST + 1];
            bytes.extend_from_slice(b"{\"op\":\"list_routes\"}\n");
            let _ = c.write_all(&bytes);
        });
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Line::TooLong);
        assert!(got[0].1.len() <= MAX_REQUEST);
    }

    #[test]
    fn a_pause_mid_request_is_not_a_cut() {
        let got = lines(|mut c| {
            c.write_all(b"{\"op\":").unwrap();
            std::thread::sleep(Duration::from_millis(500)); // beyond the read timeout
            c.write_all(b"\"generations\"}\n").unwrap();
        });
        assert_eq!(
            got[0],
            (Line::Request, b"{\"op\":\"generations\"}".to_vec())
        );
    }

    #[test]
    fn echoes_are_short() {
        assert_eq!(json_type(&json!([1])), "an array");
        assert_eq!(clipped(&"x".repeat(100)).len(), 67);
        assert_eq!(clipped("short"), "short");
        assert_eq!(clipped(&"é".repeat(70)).chars().count(), 67);
    }
}
