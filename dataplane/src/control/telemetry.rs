//! The appliance's own DPDK telemetry commands, beside DPDK's `/ethdev/stats` and the
//! rest: `dpdk-telemetry.py -f PREFIX` lists them (`/`) and runs them
//! (`/backbone/tunnel,acme`). Their counters are those since start (as DPDK's own are),
//! whatever `ctl counters clear` did.

use super::server::{self, Live};
use super::state::ControlState;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// Each command and its help (DPDK's `/help,CMD` shows it).
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "/backbone/info",
        "Version, DPDK version, file prefix, configuration, generation. No parameters",
    ),
    ("/backbone/ports", "Names of the ports. No parameters"),
    (
        "/backbone/port",
        "A port: driver, MAC, MTU, queues, link, counters. Parameter: port name",
    ),
    ("/backbone/tunnels", "Names of the tunnels. No parameters"),
    (
        "/backbone/tunnel",
        "A tunnel: state, next hop and its MAC, MTU, counters. Parameter: tunnel name",
    ),
    (
        "/backbone/drops",
        "Packets dropped, by reason (docs/COUNTERS.md). No parameters",
    ),
    (
        "/backbone/events",
        "Pipeline events, by name. No parameters",
    ),
    (
        "/backbone/punts",
        "Packets punted, by reason. No parameters",
    ),
    (
        "/backbone/control",
        "Control thread: ARP, worker stalls, path MTUs, reloads. No parameters",
    ),
    (
        "/backbone/workers",
        "Per worker: generation reached, packets received. No parameters",
    ),
];

/// The answer to `cmd` with `params`; `None` for what is not ours or names nothing.
pub fn answer(cmd: &str, params: &str, st: &ControlState, live: Live<'_>) -> Option<Value> {
    let params = params.trim();
    let names = |list: &Value, key: &str| -> Value {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x[key].as_str().map(|n| json!(n)))
            .collect()
    };
    match cmd {
        "/backbone/info" => Some(server::status(st, live)),
        "/backbone/ports" => Some(names(&json!(server::interfaces(st, live, true)), "name")),
        "/backbone/port" => server::interfaces(st, live, true)
            .into_iter()
            .find(|p| p["name"] == params),
        "/backbone/tunnels" => Some(names(&server::tunnels(st, live), "name")),
        "/backbone/tunnel" => {
            let mut t = server::tunnels(st, live)
                .as_array()?
                .iter()
                .find(|t| t["name"] == params)
                .cloned()?;
            let counters = server::counters(st, live, true);
            let c = counters["tunnels"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == params)?;
            for (k, v) in c.as_object()? {
                if k != "name" {
                    t[k] = v.clone();
                }
            }
            Some(t)
        }
        "/backbone/drops" | "/backbone/events" | "/backbone/punts" | "/backbone/control" => {
            let key = cmd.trim_start_matches("/backbone/");
            Some(server::counters(st, live, true)[key].clone())
        }
        "/backbone/workers" => Some(json!({
            "generation": live.workers.iter()
                .map(|w| w.generation.load(Ordering::Relaxed)).collect::<Vec<_>>(),
            "rx_packets": live.workers.iter()
                .map(|w| w.rx_packets.load(Ordering::Relaxed)).collect::<Vec<_>>(),
            "polls": live.workers.iter()
                .map(|w| w.polling.load().0).collect::<Vec<_>>(),
            "busy_polls": live.workers.iter()
                .map(|w| w.polling.load().1).collect::<Vec<_>>(),
            "idle_sleeps": live.workers.iter()
                .map(|w| w.polling.load().2).collect::<Vec<_>>(),
            "newest_generation": st.snapshots().current().generation(),
        })),
        _ => None,
    }
}
