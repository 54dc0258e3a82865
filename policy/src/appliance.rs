//! The appliance's control API, as its client: one JSON request per line over its Unix
//! socket, one JSON answer per line (the protocol is the appliance's
//! `dataplane/src/control/server.rs`).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an answer may take (a large batch is validated and published before the
/// answer comes).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// An appliance reached through its control socket.
#[derive(Debug, Clone)]
pub struct Appliance {
    socket: PathBuf,
}

/// What the appliance runs that the agent compares with its part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Running {
    /// The tunnels' names.
    pub tunnels: BTreeSet<String>,
    /// The explicit routes (not the tunnels' prefixes), by prefix, as `list_routes` gives
    /// them less their `source` fields.
    pub routes: std::collections::BTreeMap<String, Value>,
}

impl Appliance {
    pub fn new(socket: &Path) -> Appliance {
        Appliance {
            socket: socket.to_owned(),
        }
    }

    /// Send one request; its answer when `ok`, else the appliance's error.
    pub fn request(&self, req: &Value) -> Result<Value, String> {
        let at = self.socket.display();
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| format!("{at}: {e}"))?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(|e| format!("{at}: {e}"))?;
        stream
            .write_all(format!("{req}\n").as_bytes())
            .map_err(|e| format!("{at}: {e}"))?;
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .map_err(|e| format!("{at}: {e}"))?;
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| format!("{at}: an answer that is not JSON ({e})"))?;
        if answer["ok"] == Value::Bool(true) {
            Ok(answer)
        } else {
            Err(answer["error"]
                .as_str()
                .unwrap_or("refused without a reason")
                .to_owned())
        }
    }

    /// The tunnels and explicit routes it runs.
    pub fn running(&self) -> Result<Running, String> {
        let tunnels = self.request(&json!({"op": "list_tunnels"}))?;
        let routes = self.request(&json!({"op": "list_routes"}))?;
        Ok(Running {
            tunnels: tunnels["tunnels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect(),
            routes: routes["routes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    let mut r = r.clone();
                    let obj = r.as_object_mut()?;
                    // Where the route came from and its administrative distance are the
                    // appliance's bookkeeping, not the route.
                    obj.remove("source");
                    obj.remove("set_in_generation");
                    obj.remove("distance");
                    Some((obj.get("prefix")?.as_str()?.to_owned(), r))
                })
                .collect(),
        })
    }

    /// Apply `ops` as one batch (one validated publication); the generation that holds it.
    pub fn batch(&self, ops: &[Value]) -> Result<u64, String> {
        let answer = self.request(&json!({"op": "batch", "ops": ops}))?;
        answer["generation"]
            .as_u64()
            .ok_or_else(|| "a batch answer without a generation".to_owned())
    }

    /// The newest generation and the one each worker runs.
    pub fn generations(&self) -> Result<(u64, Vec<u64>), String> {
        let a = self.request(&json!({"op": "generations"}))?;
        let workers = a["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        Ok((a["generation"].as_u64().unwrap_or(0), workers))
    }

    /// Each tunnel's state (`up`, `unresolved`, `link-down`, or a probed tunnel's health).
    pub fn tunnel_states(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let a = self.request(&json!({"op": "list_tunnels"}))?;
        Ok(a["tunnels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["name"].as_str()?.to_owned(),
                    t["state"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }
}
