//! The control API's request decoder and handler on arbitrary bytes, the way the server
//! takes a request line: its bytes parsed as JSON, then `control::server::respond` against a fresh
//! `ControlState` of the lab (fuzz/lab.toml) and two workers' progress.
//!
//! Invariants: never panics; every answer is an object with a boolean `ok`; a refused
//! request (`ok: false`) changes nothing: the same generation, tunnels, routes and
//! neighbours as before. `apply_config` paths are confined to a private directory that
//! holds a few prepared files (the fuzzer must not read the machine's files, /dev/zero
//! least of all).

use crate::{lab, LAB_TOML};
use dataplane::control::appliance::Appliance;
use dataplane::control::progress::{PortHealth, WorkerProgress};
use dataplane::control::server::{respond, ApiCounters, Live};
use dataplane::control::state::ControlState;
use pipeline_config::ConfigDocument;
use serde_json::Value;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The private directory: `same` (the lab), `routes` (the lab with another route),
/// `ports` (another port: refused while running), `bad` (not a configuration).
fn files() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("backbone-fuzz-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let routes =
            format!("{LAB_TOML}\n[[route]]\nprefix = \"10.77.0.0/16\"\nblackhole = true\n");
        let ports = LAB_TOML.replacen("mtu = 1400", "mtu = 1300", 1);
        for (name, text) in [
            ("same", LAB_TOML.to_owned()),
            ("routes", routes),
            ("ports", ports),
            ("bad", "[[port]\nname = 3\n".to_owned()),
        ] {
            std::fs::write(dir.join(name), text).expect("write a prepared file");
        }
        dir
    })
}

/// Rewrite every `"path"` string into the private directory (letters and digits only).
fn confine(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "path" {
                    if let Value::String(s) = x {
                        let name: String = s
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .take(16)
                            .collect();
                        *s = files().join(name).display().to_string();
                    }
                }
                confine(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(confine),
        _ => {}
    }
}

fn new_state() -> ControlState {
    let (doc, cfg) = ConfigDocument::parse(LAB_TOML, "fuzz/lab.toml").expect("the lab parses");
    ControlState::new(doc, cfg, lab().1.clone()).expect("the lab builds")
}

thread_local! {
    /// The lab's control state, reused while requests leave it as it was (queries and
    /// refused changes, which the target checks change nothing); replaced after a change.
    static STATE: RefCell<Option<Mutex<ControlState>>> = const { RefCell::new(None) };
}

/// What a refused request must leave as it was.
fn observable(st: &ControlState) -> (u64, Value, Value, Value) {
    (
        st.snapshots().generation(),
        st.list_tunnels(),
        st.list_routes(),
        st.list_neighbors(),
    )
}

/// The target on one input: panics on a broken invariant.
pub fn run(data: &[u8]) {
    // The server reads one line (up to its newline) and parses its bytes as JSON.
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(mut req) = serde_json::from_slice::<Value>(line) else {
        return;
    };
    confine(&mut req);
    let workers: Vec<WorkerProgress> = (0..2).map(|_| WorkerProgress::default()).collect();
    let st = STATE
        .with(|c| c.borrow_mut().take())
        .unwrap_or_else(|| Mutex::new(new_state()));
    let before = observable(&st.lock().unwrap());
    let ports = Mutex::new(vec![PortHealth::default(); 2]);
    let answer = respond(
        &req,
        &st,
        Live {
            workers: &workers,
            ports: &ports,
            api: &ApiCounters::default(),
            appliance: &Appliance::default(),
        },
    );
    let ok = answer
        .get("ok")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("answer without a boolean \"ok\": {answer}"));
    let after = observable(&st.lock().unwrap());
    if ok {
        // Queries change nothing; a change publishes exactly one new generation.
        assert!(
            after.0 == before.0 || after.0 == before.0 + 1,
            "one publication"
        );
    } else {
        assert!(
            answer.get("error").and_then(Value::as_str).is_some(),
            "{answer}"
        );
        assert_eq!(
            after,
            before,
            "a refused request changed something: {}",
            String::from_utf8_lossy(line)
        );
    }
    // The answer is what the server writes back: it serializes.
    let _ = answer.to_string();
    if after.0 == before.0 {
        STATE.with(|c| *c.borrow_mut() = Some(st));
    }
}
