//! The appliance seen from outside, beside the control API: the metrics endpoint and our
//! DPDK telemetry commands, each served from a thread of the supervisor's scope.

use dataplane::control::server::Live;
use dataplane::control::state::ControlState;
use dataplane::control::telemetry;
use dataplane::dpdk::telemetry as dpdk_telemetry;
use dataplane::dpdk::Eal;
use serde_json::Value;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::thread::Scope;
use std::time::Duration;

/// How long a telemetry command waits for its answer.
const TELEMETRY_WAIT: Duration = Duration::from_secs(2);

/// Add our commands to DPDK's telemetry (they answer `null` until [`serve`] runs).
pub fn register_telemetry(eal: &Eal) {
    for (cmd, help) in telemetry::COMMANDS {
        if let Err(e) = dpdk_telemetry::register(eal, cmd, help) {
            log::warn!("telemetry: {e}");
        }
    }
}

type Request = (String, String, SyncSender<Option<Value>>);

/// Serve the metrics endpoint (where there is a listener) and our telemetry commands
/// until `stop` is set. DPDK calls the commands on its own telemetry thread; they are
/// answered here, where the appliance's state is, and handed back.
pub fn serve<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    metrics: Option<&'env TcpListener>,
    state: &'env Mutex<ControlState>,
    live: Live<'env>,
    stop: &'env AtomicBool,
) {
    if let Some(l) = metrics {
        std::thread::Builder::new()
            .name("backbone-metrics".into())
            .spawn_scoped(scope, move || {
                dataplane::control::metrics::serve(l, state, live, stop)
            })
            .map_err(|e| log::error!("cannot start the metrics thread: {e}"))
            .ok();
    }
    let (tx, rx) = sync_channel::<Request>(16);
    let tx = Mutex::new(tx);
    dpdk_telemetry::set_handler(Some(Box::new(move |cmd: &str, params: &str| {
        let (reply, answer) = sync_channel(1);
        tx.lock()
            .ok()?
            .try_send((cmd.to_owned(), params.to_owned(), reply))
            .ok()?;
        answer.recv_timeout(TELEMETRY_WAIT).ok().flatten()
    })));
    std::thread::Builder::new()
        .name("backbone-telemetry".into())
        .spawn_scoped(scope, move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok((cmd, params, reply)) => {
                        let v = state
                            .lock()
                            .ok()
                            .and_then(|st| telemetry::answer(&cmd, &params, &st, live));
                        let _ = reply.send(v);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            dpdk_telemetry::set_handler(None);
        })
        .map_err(|e| log::error!("cannot start the telemetry thread: {e}"))
        .ok();
}
