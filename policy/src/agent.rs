//! The edge agent: follows the policy in etcd from a revision, computes its edge's part,
//! applies what changed to the appliance through its control API (one batch, one
//! validated publication), and reports under an etcd lease.
//!
//! What it owns in the appliance: the tunnels and routes of its part, and those of the
//! parts it applied before (recorded in etcd at `PREFIX/edges/EDGE/applied`, so that a
//! restarted agent still removes what a later policy drops). Everything else in the
//! appliance (its file's ports, routes and tunnels of its own) is left alone.
//!
//! Every `resync` it compares its part with what the appliance runs and puts back what
//! is missing (an appliance restarted on its file). When etcd is unreachable it keeps
//! the appliance on what it last applied: it re-adds what is missing but never removes
//! anything, says so once, and when etcd answers again it reads the policy as it is then
//! and follows it from that revision.

use crate::appliance::Appliance;
use crate::diff::count;
use crate::part::{changes, part, EdgePart, Op};
use crate::store::{Store, Stored};
use crate::Policy;
use etcd_client::{EventType, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Our edge's name in the policy.
    pub edge: String,
    /// etcd endpoints, comma-separated.
    pub etcd: String,
    /// The key prefix.
    pub prefix: String,
    /// The appliance's control socket; `None` for a dry run (no appliance: the part and
    /// its changes are printed).
    pub socket: Option<PathBuf>,
    /// The socket the policy names for the edge is used when `socket` is `None` and not
    /// a dry run.
    pub dry_run: bool,
    /// The report's lease, seconds.
    pub lease_ttl: i64,
    /// How often the appliance is compared with the part (and the report refreshed).
    pub resync: Duration,
    /// How long to wait before trying etcd again.
    pub retry: Duration,
    /// Stop after the first revision has been applied and reported.
    pub once: bool,
    /// Print each change as JSON (dry run), not just a summary.
    pub print_ops: bool,
}

/// `PREFIX/edges/EDGE/applied`: what the agent applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The policy revision the part came from.
    pub revision: i64,
    pub part: EdgePart,
}

/// What the agent knows between sessions with etcd.
#[derive(Debug)]
pub struct Agent {
    opts: Options,
    appliance: Option<Appliance>,
    /// What is applied to the appliance, and from which revision.
    applied: Record,
    /// The part the policy wants (from `desired_revision`), once a policy was read.
    desired: Option<EdgePart>,
    desired_revision: i64,
    /// The newest policy revision seen (valid or not).
    seen_revision: i64,
    /// The appliance's generation that holds what was applied.
    generation: Option<u64>,
    /// The last error, reported until a later success.
    error: Option<String>,
    /// Whether the record in etcd lags behind `applied`.
    record_dirty: bool,
    record_loaded: bool,
    /// The last report written, under which lease.
    reported: Option<(i64, Value)>,
    outage: Option<Instant>,
    /// The last batch the appliance refused, and when: the same batch is not sent again
    /// before [`REFUSED_RETRY`] (its refusal would fill the appliance's audit trail).
    refused: Option<(Vec<Op>, Instant)>,
}

/// How long a batch the appliance refused waits before it is sent again unchanged.
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);

impl Agent {
    pub fn new(opts: Options) -> Agent {
        let appliance = opts
            .socket
            .as_deref()
            .filter(|_| !opts.dry_run)
            .map(Appliance::new);
        Agent {
            opts,
            appliance,
            applied: Record::default(),
            desired: None,
            desired_revision: 0,
            seen_revision: 0,
            generation: None,
            error: None,
            record_dirty: false,
            record_loaded: false,
            reported: None,
            outage: None,
            refused: None,
        }
    }

    /// A new policy document at `revision` (or its deletion: `None`).
    pub fn on_document(&mut self, stored: Option<Stored>) {
        let Some(stored) = stored else {
            log::warn!(
                "no policy document in etcd: nothing to apply; the appliance keeps what it runs"
            );
            return;
        };
        self.seen_revision = self.seen_revision.max(stored.revision);
        let origin = format!("policy revision {}", stored.revision);
        let policy = match Policy::parse_for(&stored.text, &origin, &self.opts.edge) {
            Ok(p) => p,
            Err(e) => {
                log::error!(
                    "{e}; the appliance keeps revision {}",
                    self.applied.revision
                );
                self.error = Some(e.to_string());
                return;
            }
        };
        let Some((e, edge)) = policy.edge(&self.opts.edge) else {
            let e = format!(
                "edge {:?} is not in policy revision {}: nothing applied; the appliance keeps revision {}",
                self.opts.edge, stored.revision, self.applied.revision
            );
            log::error!("{e}");
            self.error = Some(e);
            return;
        };
        if self.appliance.is_none() && !self.opts.dry_run {
            self.appliance = Some(Appliance::new(&edge.control_socket));
        }
        self.desired = Some(part(&policy, e));
        self.desired_revision = stored.revision;
    }

    /// Bring the appliance to the desired part; `removals` false while etcd is away.
    pub fn reconcile(&mut self, removals: bool) {
        let Some(desired) = self.desired.clone() else {
            return;
        };
        let Some(appliance) = self.appliance.clone() else {
            // Dry run: what the appliance would be told.
            let ops = changes(&self.applied.part, &desired);
            if !ops.is_empty() || self.applied.revision != self.desired_revision {
                println!(
                    "edge {} revision {}: {} ({})",
                    self.opts.edge,
                    self.desired_revision,
                    desired.summary(),
                    if ops.is_empty() {
                        "no change".into()
                    } else {
                        count(&ops)
                    }
                );
                if self.opts.print_ops {
                    for op in &ops {
                        println!("{op}");
                    }
                }
                self.set_applied(desired);
            }
            return;
        };
        let running = match appliance.running() {
            Ok(r) => r,
            Err(e) => return self.failed(format!("the appliance: {e}")),
        };
        let ops = plan(&self.applied.part, &desired, &running, removals);
        if ops.is_empty() {
            if self.applied.revision != self.desired_revision && removals {
                self.set_applied(desired);
            }
            if self.generation.is_none() {
                self.generation = appliance.generations().ok().map(|(g, _)| g);
            }
            self.error = None;
            return;
        }
        if self
            .refused
            .as_ref()
            .is_some_and(|(r, at)| *r == ops && at.elapsed() < REFUSED_RETRY)
        {
            return;
        }
        match appliance.batch(&ops) {
            Ok(generation) => {
                log::info!(
                    "revision {}: applied {} in generation {generation}{}",
                    self.desired_revision,
                    count(&ops),
                    if removals {
                        ""
                    } else {
                        " (put back while etcd is away)"
                    }
                );
                self.generation = Some(generation);
                self.error = None;
                self.refused = None;
                if removals {
                    self.set_applied(desired);
                } else {
                    // Away from etcd: what was put back is ours, what was not removed too.
                    let mut merged = self.applied.part.clone();
                    merged.tunnels.extend(desired.tunnels);
                    merged.routes.extend(desired.routes);
                    self.applied.part = merged;
                    self.record_dirty = true;
                }
            }
            Err(e) => {
                self.refused = Some((ops.clone(), Instant::now()));
                self.failed(format!(
                    "the appliance refused revision {} ({}): {e}; it keeps revision {}",
                    self.desired_revision,
                    count(&ops),
                    self.applied.revision
                ))
            }
        }
    }

    fn set_applied(&mut self, part: EdgePart) {
        self.applied = Record {
            revision: self.desired_revision,
            part,
        };
        self.record_dirty = true;
    }

    fn failed(&mut self, e: String) {
        if self.error.as_deref() != Some(&e) {
            log::error!("{e}");
        }
        self.error = Some(e);
    }

    /// The report: the revision applied, the generation every worker runs, each
    /// tunnel's state.
    pub fn report(&self) -> Value {
        let mut r = json!({
            "edge": self.opts.edge,
            "revision": self.applied.revision,
            "policy_revision": self.seen_revision,
            "tunnels": self.applied.part.tunnels.len(),
            "routes": self.applied.part.routes.len(),
            "error": self.error,
            "dry_run": self.appliance.is_none(),
        });
        if let Some(appliance) = &self.appliance {
            match (appliance.generations(), appliance.tunnel_states()) {
                (Ok((newest, workers)), Ok(states)) => {
                    let holds = self.generation.unwrap_or(newest);
                    r["generation"] = json!(holds);
                    r["workers"] = json!(workers);
                    r["workers_run_it"] = json!(workers.iter().all(|&w| w >= holds));
                    let ours: BTreeMap<&String, &String> = states
                        .iter()
                        .filter(|(n, _)| self.applied.part.tunnels.contains_key(*n))
                        .collect();
                    r["tunnel_states"] = json!(ours);
                }
                (Err(e), _) | (_, Err(e)) => r["appliance_error"] = json!(e),
            }
        }
        r
    }

    fn resume_log(&mut self) {
        if let Some(since) = self.outage.take() {
            log::warn!(
                "etcd {} answers again after {:.1} s: resuming from revision {}",
                self.opts.etcd,
                since.elapsed().as_secs_f64(),
                self.applied.revision
            );
        }
    }
}

/// The changes that bring `running` to `desired`, given what the agent applied before:
/// tunnels missing are added; tunnels whose fields changed since they were applied (or
/// that the agent did not apply) are replaced; routes that differ from what runs are
/// set; with `removals`, what was applied and is no longer desired is removed.
pub fn plan(
    applied: &EdgePart,
    desired: &EdgePart,
    running: &crate::appliance::Running,
    removals: bool,
) -> Vec<Op> {
    let mut ops = Vec::new();
    if removals {
        for prefix in applied.routes.keys() {
            if !desired.routes.contains_key(prefix) && running.routes.contains_key(prefix) {
                ops.push(json!({"op": "remove_route", "prefix": prefix}));
            }
        }
        for name in applied.tunnels.keys() {
            if !desired.tunnels.contains_key(name) && running.tunnels.contains(name) {
                ops.push(json!({"op": "remove_tunnel", "name": name}));
            }
        }
    }
    for (name, t) in &desired.tunnels {
        if !running.tunnels.contains(name) {
            ops.push(json!({"op": "add_tunnel", "tunnel": t}));
        } else if applied.tunnels.get(name) != Some(t) {
            ops.push(json!({"op": "remove_tunnel", "name": name}));
            ops.push(json!({"op": "add_tunnel", "tunnel": t}));
        }
    }
    for (prefix, r) in &desired.routes {
        if running.routes.get(prefix) != Some(r) {
            ops.push(json!({"op": "set_route", "route": r}));
        }
    }
    ops
}

/// Run the agent until `once` is done, or forever.
pub async fn run(opts: Options) -> Result<(), String> {
    let mut agent = Agent::new(opts);
    loop {
        match session(&mut agent).await {
            // `--once`: done, and failed if the revision could not be applied.
            Ok(()) => return agent.error.map_or(Ok(()), Err),
            Err(e) => {
                if agent.outage.is_none() {
                    agent.outage = Some(Instant::now());
                    log::warn!(
                        "etcd unreachable ({e}): the appliance keeps forwarding on revision {}; \
                         nothing is removed until etcd answers (trying again every {:?})",
                        agent.applied.revision,
                        agent.opts.retry
                    );
                } else {
                    log::debug!("etcd still unreachable: {e}");
                }
                agent.reported = None;
                agent.reconcile(false);
                tokio::time::sleep(agent.opts.retry).await;
            }
        }
    }
}

/// One connection to etcd: read the policy, apply it, follow it, report; an error ends
/// it (the caller tries again).
async fn session(agent: &mut Agent) -> Result<(), String> {
    let opts = agent.opts.clone();
    let mut store = Store::connect(&opts.etcd, &opts.prefix)
        .await
        .map_err(|e| e.to_string())?;
    let lease = store
        .client()
        .lease_grant(opts.lease_ttl, None)
        .await
        .map_err(|e| store.etcd(e).to_string())?
        .id();
    let (mut keeper, mut kept) = store
        .client()
        .lease_keep_alive(lease)
        .await
        .map_err(|e| store.etcd(e).to_string())?;
    if !agent.record_loaded {
        let key = store.applied_key(&opts.edge);
        let r = store
            .client()
            .get(key.clone(), None)
            .await
            .map_err(|e| store.etcd(e).to_string())?;
        if let Some(kv) = r.kvs().first() {
            agent.applied =
                serde_json::from_slice(kv.value()).map_err(|e| format!("{key}: {e}"))?;
            log::info!(
                "revision {} was applied here before: {}",
                agent.applied.revision,
                agent.applied.part.summary()
            );
        }
        agent.record_loaded = true;
    }
    let (stored, now) = store.document().await.map_err(|e| e.to_string())?;
    agent.resume_log();
    match &stored {
        Some(s) => log::info!("policy revision {} (etcd at {now})", s.revision),
        None => log::info!("no policy yet (etcd at {now})"),
    }
    agent.on_document(stored);
    agent.reconcile(true);
    publish(agent, &mut store, lease).await?;
    if opts.once {
        let _ = store.client().lease_revoke(lease).await;
        return Ok(());
    }
    let key = store.document_key();
    let mut watch = store
        .client()
        .watch(key, Some(WatchOptions::new().with_start_revision(now + 1)))
        .await
        .map_err(|e| store.etcd(e).to_string())?;
    let mut resync = tokio::time::interval(opts.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let period = Duration::from_secs((opts.lease_ttl as u64 / 3).max(1));
    let mut keepalive = tokio::time::interval(period);
    loop {
        tokio::select! {
            m = watch.message() => {
                let m = m.map_err(|e| store.etcd(e).to_string())?
                    .ok_or_else(|| "etcd closed the watch".to_owned())?;
                if m.canceled() {
                    return Err(format!("etcd cancelled the watch: {}", m.cancel_reason()));
                }
                for ev in m.events() {
                    let Some(kv) = ev.kv() else { continue };
                    match ev.event_type() {
                        EventType::Put => agent.on_document(Some(Stored {
                            text: String::from_utf8_lossy(kv.value()).into_owned(),
                            revision: kv.mod_revision(),
                        })),
                        EventType::Delete => agent.on_document(None),
                    }
                }
                agent.reconcile(true);
                publish(agent, &mut store, lease).await?;
            }
            _ = resync.tick() => {
                agent.reconcile(true);
                publish(agent, &mut store, lease).await?;
            }
            _ = keepalive.tick() => {
                keeper.keep_alive().await.map_err(|e| store.etcd(e).to_string())?;
            }
            k = kept.message() => {
                match k.map_err(|e| store.etcd(e).to_string())? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err("the report's lease expired".into()),
                }
            }
        }
    }
}

/// Write the record (if it changed) and the report (if it changed, or the lease is new).
async fn publish(agent: &mut Agent, store: &mut Store, lease: i64) -> Result<(), String> {
    let edge = agent.opts.edge.clone();
    if agent.record_dirty {
        let json = serde_json::to_string(&agent.applied).unwrap_or_default();
        let key = store.applied_key(&edge);
        store
            .client()
            .put(key, json, None)
            .await
            .map_err(|e| store.etcd(e).to_string())?;
        agent.record_dirty = false;
    }
    let report = agent.report();
    if agent.reported.as_ref() != Some(&(lease, report.clone())) {
        let key = store.status_key(&edge);
        store
            .client()
            .put(
                key,
                report.to_string(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| store.etcd(e).to_string())?;
        agent.reported = Some((lease, report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::Running;

    fn tunnel(name: &str, key: u32) -> Value {
        json!({"name": name, "mode": "gre", "local": "192.0.2.1", "remote": "198.51.100.1",
               "key": key, "port": "client0", "prefixes": []})
    }

    fn route(prefix: &str, via: &str) -> Value {
        json!({"prefix": prefix, "port": "core0", "next_hop": via})
    }

    fn part(tunnels: &[Value], routes: &[Value]) -> EdgePart {
        EdgePart {
            tunnels: tunnels
                .iter()
                .map(|t| (t["name"].as_str().unwrap().to_owned(), t.clone()))
                .collect(),
            routes: routes
                .iter()
                .map(|r| (r["prefix"].as_str().unwrap().to_owned(), r.clone()))
                .collect(),
        }
    }

    fn running(tunnels: &[&str], routes: &[Value]) -> Running {
        Running {
            tunnels: tunnels.iter().map(|s| (*s).to_owned()).collect(),
            routes: routes
                .iter()
                .map(|r| (r["prefix"].as_str().unwrap().to_owned(), r.clone()))
                .collect(),
        }
    }

    #[test]
    fn what_runs_as_applied_is_not_touched() {
        let p = part(&[tunnel("a", 1)], &[route("10.2.0.0/16", "10.255.0.2")]);
        let r = running(&["a", "local"], &[route("10.2.0.0/16", "10.255.0.2")]);
        assert!(plan(&p, &p, &r, true).is_empty());
    }

    #[test]
    fn missing_things_are_put_back_and_changed_ones_replaced() {
        let applied = part(
            &[tunnel("a", 1), tunnel("b", 2)],
            &[route("10.2.0.0/16", "10.255.0.2")],
        );
        let desired = part(
            &[tunnel("a", 1), tunnel("b", 3)],
            &[route("10.2.0.0/16", "10.255.0.3")],
        );
        // The appliance restarted without "a"; "b" changed key; the route moved.
        let r = running(&["b"], &[route("10.2.0.0/16", "10.255.0.2")]);
        assert_eq!(
            plan(&applied, &desired, &r, true),
            vec![
                json!({"op": "add_tunnel", "tunnel": tunnel("a", 1)}),
                json!({"op": "remove_tunnel", "name": "b"}),
                json!({"op": "add_tunnel", "tunnel": tunnel("b", 3)}),
                json!({"op": "set_route", "route": route("10.2.0.0/16", "10.255.0.3")}),
            ]
        );
    }

    #[test]
    fn a_tunnel_the_agent_did_not_apply_is_replaced_by_the_policys() {
        let desired = part(&[tunnel("a", 1)], &[]);
        let r = running(&["a"], &[]);
        let ops = plan(&EdgePart::default(), &desired, &r, true);
        assert_eq!(ops[0], json!({"op": "remove_tunnel", "name": "a"}));
        assert_eq!(ops[1]["op"], "add_tunnel");
    }

    #[test]
    fn removals_only_of_what_was_applied_and_only_with_etcd() {
        let applied = part(
            &[tunnel("a", 1), tunnel("gone", 2)],
            &[route("10.9.0.0/16", "10.255.0.2")],
        );
        let desired = part(&[tunnel("a", 1)], &[]);
        // "local" and 10.8/16 are the appliance's own: never removed.
        let r = running(
            &["a", "gone", "local"],
            &[
                route("10.9.0.0/16", "10.255.0.2"),
                route("10.8.0.0/16", "10.255.0.9"),
            ],
        );
        assert_eq!(
            plan(&applied, &desired, &r, true),
            vec![
                json!({"op": "remove_route", "prefix": "10.9.0.0/16"}),
                json!({"op": "remove_tunnel", "name": "gone"}),
            ]
        );
        // While etcd is away nothing is removed.
        assert!(plan(&applied, &desired, &r, false).is_empty());
        // A removal of what no longer runs is not asked for.
        let r = running(&["a"], &[]);
        assert!(plan(&applied, &desired, &r, true).is_empty());
    }
}
