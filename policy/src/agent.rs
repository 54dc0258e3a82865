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

use crate::appliance::{Appliance, Running};
use crate::diff::count;
use crate::part::{changes, part, EdgePart, Op};
use crate::store::{Store, Stored};
use crate::Policy;
use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};
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
    /// The newest revision whose part runs, held tunnels excepted.
    made_revision: i64,
    /// Tunnels held back (make before announce), and the hold they are under.
    held: Vec<String>,
    hold: Option<Hold>,
    /// `[preferences] make_before_announce_s`.
    hold_limit: Duration,
    /// The edges of the policy, and the other edges' reports.
    policy_edges: Vec<String>,
    others: BTreeMap<String, Value>,
    /// A signal asked it to stop.
    stopping: bool,
}

/// New tunnels held back for one revision (make before announce).
#[derive(Debug, Clone, Copy)]
struct Hold {
    revision: i64,
    since: Instant,
    /// The limit passed: they were brought up anyway (said once).
    expired: bool,
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
            made_revision: 0,
            held: Vec::new(),
            hold: None,
            hold_limit: Duration::ZERO,
            policy_edges: Vec::new(),
            others: BTreeMap::new(),
            stopping: false,
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
        self.policy_edges = policy.edges.iter().map(|e| e.name.clone()).collect();
        self.hold_limit = Duration::from_secs(policy.preferences.make_before_announce_s.into());
    }

    /// Bring the appliance to the desired part; `removals` false while etcd is away.
    ///
    /// Make before announce: a tunnel new at this edge (its client's BGP session and
    /// announcements start with it) is held back until every other edge of the policy
    /// reports the revision made (its routes to the client run on every worker), or
    /// until `[preferences] make_before_announce_s` has passed; everything else of the
    /// revision is applied at once.
    pub fn reconcile(&mut self, removals: bool) {
        let Some(desired) = self.desired.clone() else {
            return;
        };
        let running = match &self.appliance {
            None => None,
            Some(a) => match a.running() {
                Ok(r) => Some(r),
                Err(e) => return self.failed(format!("the appliance: {e}")),
            },
        };
        let held = self.tunnels_to_hold(&desired, running.as_ref());
        let mut target = desired;
        for name in &held {
            let Some(t) = target.tunnels.remove(name) else {
                continue;
            };
            // Until the tunnel comes up here, its prefixes keep the routes this edge ran
            // for them (across the core, to where the client was hosted).
            let prefixes = t["prefixes"].as_array().into_iter().flatten();
            for p in prefixes.filter_map(Value::as_str) {
                if let Some(r) = self.applied.part.routes.get(p) {
                    target
                        .routes
                        .entry(p.to_owned())
                        .or_insert_with(|| r.clone());
                }
            }
        }
        let complete = held.is_empty();
        self.held = held;
        let Some(appliance) = self.appliance.clone() else {
            // Dry run: what the appliance would be told.
            let ops = changes(&self.applied.part, &target);
            if !ops.is_empty() || (complete && self.applied.revision != self.desired_revision) {
                println!(
                    "edge {} revision {}: {} ({}){}",
                    self.opts.edge,
                    self.desired_revision,
                    target.summary(),
                    if ops.is_empty() {
                        "no change".into()
                    } else {
                        count(&ops)
                    },
                    if complete {
                        String::new()
                    } else {
                        format!(", holding {}", self.held.join(", "))
                    }
                );
                if self.opts.print_ops {
                    for op in &ops {
                        println!("{op}");
                    }
                }
            }
            return self.made(target, complete, true);
        };
        let running = running.unwrap_or_default();
        let ops = plan(&self.applied.part, &target, &running, removals);
        if ops.is_empty() {
            if self.generation.is_none() {
                self.generation = appliance.generations().ok().map(|(g, _)| g);
            }
            self.error = None;
            return self.made(target, complete, removals);
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
                self.made(target, complete, removals);
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

    /// The tunnels of `desired` to hold back now: those new at this edge (neither
    /// applied before nor running), while some other edge of the policy does not yet
    /// report the revision made and `[preferences] make_before_announce_s` has not passed
    /// since the revision came (0: never held).
    fn tunnels_to_hold(&mut self, desired: &EdgePart, running: Option<&Running>) -> Vec<String> {
        let new: Vec<String> = desired
            .tunnels
            .keys()
            .filter(|n| !self.applied.part.tunnels.contains_key(*n))
            .filter(|n| running.map_or(true, |r| !r.tunnels.contains(*n)))
            .cloned()
            .collect();
        if new.is_empty() || self.hold_limit.is_zero() {
            self.hold = None;
            return Vec::new();
        }
        if self.others_made() {
            if self.hold.take().is_some_and(|h| !h.expired) {
                log::info!(
                    "revision {}: every other edge routes it: bringing up {}",
                    self.desired_revision,
                    new.join(", ")
                );
            }
            return Vec::new();
        }
        let hold = match self.hold.take() {
            Some(h) if h.revision == self.desired_revision => h,
            previous => {
                log::info!(
                    "revision {}: holding the new tunnel(s) {} until every other edge routes them \
                     (at most {} s)",
                    self.desired_revision,
                    new.join(", "),
                    self.hold_limit.as_secs()
                );
                // A hold that goes on into a newer revision keeps its start: a stream of
                // revisions does not hold a tunnel longer than the limit.
                Hold {
                    revision: self.desired_revision,
                    since: previous
                        .filter(|h| !h.expired)
                        .map_or_else(Instant::now, |h| h.since),
                    expired: false,
                }
            }
        };
        let expired = hold.since.elapsed() >= self.hold_limit;
        if expired && !hold.expired {
            log::warn!(
                "revision {}: not every edge reports it made after {} s ({}): bringing up {} anyway",
                self.desired_revision,
                self.hold_limit.as_secs(),
                self.lagging().join(", "),
                new.join(", ")
            );
        }
        self.hold = Some(Hold { expired, ..hold });
        if expired {
            Vec::new()
        } else {
            new
        }
    }

    /// `target` runs: the revision is made, and applied too when nothing is held.
    fn made(&mut self, target: EdgePart, complete: bool, removals: bool) {
        if !removals {
            // Away from etcd: what was put back is ours, what was not removed too.
            let mut merged = self.applied.part.clone();
            merged.tunnels.extend(target.tunnels);
            merged.routes.extend(target.routes);
            if merged != self.applied.part {
                self.applied.part = merged;
                self.record_dirty = true;
            }
            return;
        }
        self.made_revision = self.desired_revision;
        if self.applied.part != target
            || (complete && self.applied.revision != self.desired_revision)
        {
            self.applied.part = target;
            if complete {
                self.applied.revision = self.desired_revision;
            }
            self.record_dirty = true;
        }
    }

    /// The other edges of the policy that do not report the desired revision made on
    /// every worker of their appliance.
    fn lagging(&self) -> Vec<String> {
        self.policy_edges
            .iter()
            .filter(|e| **e != self.opts.edge)
            .filter(|e| {
                !self.others.get(*e).is_some_and(|r| {
                    r["made_revision"]
                        .as_i64()
                        .is_some_and(|m| m >= self.desired_revision)
                        && r["workers_run_it"] != Value::Bool(false)
                })
            })
            .cloned()
            .collect()
    }

    fn others_made(&self) -> bool {
        self.lagging().is_empty()
    }

    /// Another edge's report, or its removal (`None`).
    pub fn on_report(&mut self, edge: &str, report: Option<Value>) {
        if edge == self.opts.edge {
            return;
        }
        match report {
            Some(r) => self.others.insert(edge.to_owned(), r),
            None => self.others.remove(edge),
        };
    }

    /// Whether new tunnels are held back (so other edges' reports matter now).
    pub fn holding(&self) -> bool {
        self.hold.is_some_and(|h| !h.expired)
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
            "made_revision": self.made_revision,
            "held": self.held,
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
pub fn plan(applied: &EdgePart, desired: &EdgePart, running: &Running, removals: bool) -> Vec<Op> {
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
    let mut stop = Stop::new()?;
    loop {
        match session(&mut agent, &mut stop).await {
            Ok(()) if agent.stopping => return Ok(()),
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
                tokio::select! {
                    _ = tokio::time::sleep(agent.opts.retry) => {}
                    _ = stop.recv() => return Ok(()),
                }
            }
        }
    }
}

/// One connection to etcd: read the policy, apply it, follow it, report; an error ends
/// it (the caller tries again).
async fn session(agent: &mut Agent, stop: &mut Stop) -> Result<(), String> {
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
            agent.made_revision = agent.applied.revision;
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
    // The other edges' reports (make before announce), then every change of them.
    let edges_key = store.edges_key();
    let r = store
        .client()
        .get(edges_key.clone(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| store.etcd(e).to_string())?;
    let reports_from = r.header().map_or(now, |h| h.revision()) + 1;
    agent.others.clear();
    for kv in r.kvs() {
        on_report_event(agent, &edges_key, kv.key(), Some(kv.value()));
    }
    agent.reconcile(true);
    publish(agent, &mut store, lease).await?;
    // `--once`: done, unless new tunnels are held (then once the hold ends, below).
    if opts.once && !agent.holding() {
        let _ = store.client().lease_revoke(lease).await;
        return Ok(());
    }
    let key = store.document_key();
    let mut watch = store
        .client()
        .watch(key, Some(WatchOptions::new().with_start_revision(now + 1)))
        .await
        .map_err(|e| store.etcd(e).to_string())?;
    let mut reports = store
        .client()
        .watch(
            edges_key.clone(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(reports_from),
            ),
        )
        .await
        .map_err(|e| store.etcd(e).to_string())?;
    let mut resync = tokio::time::interval(opts.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let period = Duration::from_secs((opts.lease_ttl as u64 / 3).max(1));
    let mut keepalive = tokio::time::interval(period);
    loop {
        if opts.once && !agent.holding() {
            let _ = store.client().lease_revoke(lease).await;
            return Ok(());
        }
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
            m = reports.message() => {
                let m = m.map_err(|e| store.etcd(e).to_string())?
                    .ok_or_else(|| "etcd closed the watch".to_owned())?;
                if m.canceled() {
                    return Err(format!("etcd cancelled the watch of the reports: {}", m.cancel_reason()));
                }
                for ev in m.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                    on_report_event(agent, &edges_key, kv.key(), value);
                }
                if agent.holding() {
                    agent.reconcile(true);
                    publish(agent, &mut store, lease).await?;
                }
            }
            _ = stop.recv() => {
                log::info!("stopping: the appliance keeps what it runs; the report goes");
                let _ = store.client().lease_revoke(lease).await;
                agent.stopping = true;
                return Ok(());
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

/// A `PREFIX/edges/EDGE/status` key's new value (`None`: deleted), to the agent.
fn on_report_event(agent: &mut Agent, edges_key: &str, key: &[u8], value: Option<&[u8]>) {
    let key = String::from_utf8_lossy(key);
    let Some(edge) = key
        .strip_prefix(edges_key)
        .and_then(|k| k.strip_suffix("/status"))
    else {
        return;
    };
    let report = value.and_then(|v| serde_json::from_slice(v).ok());
    agent.on_report(edge, report);
}

/// SIGTERM or SIGINT.
pub struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stop")
    }
}

impl Stop {
    fn new() -> Result<Stop, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
        Ok(Stop { term, int })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
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

    const EXAMPLE: &str = include_str!("../examples/backbone.toml");

    /// A dry-run agent of `edge` that has read `text` at `revision` and reconciled.
    fn dry_agent(edge: &str, text: &str, revision: i64) -> Agent {
        let mut a = Agent::new(Options {
            edge: edge.into(),
            etcd: String::new(),
            prefix: String::new(),
            socket: None,
            dry_run: true,
            lease_ttl: 10,
            resync: Duration::from_secs(2),
            retry: Duration::from_secs(1),
            once: false,
            print_ops: false,
        });
        a.on_document(Some(Stored {
            text: text.into(),
            revision,
        }));
        a.reconcile(true);
        a
    }

    fn read(a: &mut Agent, text: &str, revision: i64) {
        a.on_document(Some(Stored {
            text: text.into(),
            revision,
        }));
        a.reconcile(true);
    }

    fn tell(a: &mut Agent, edge: &str, report: Value) {
        a.on_report(edge, Some(report));
        a.reconcile(true);
    }

    #[test]
    fn new_tunnels_wait_until_every_other_edge_reports_the_revision_made() {
        // edge-2 of the example hosts globex and hooli; acme's and initech's prefixes go
        // to edge-1, whose agent has not reported yet.
        let mut a = dry_agent("edge-2", EXAMPLE, 5);
        let r = a.report();
        assert_eq!(r["held"], json!(["globex", "hooli"]), "{r}");
        assert_eq!(r["made_revision"], 5, "{r}");
        assert_eq!(r["revision"], 0, "not applied while tunnels are held: {r}");
        assert_eq!(
            (r["tunnels"].clone(), r["routes"].clone()),
            (json!(0), json!(2))
        );
        assert!(a.holding());
        // An older revision made at edge-1, or one not yet run by every worker there,
        // is not enough.
        tell(
            &mut a,
            "edge-1",
            json!({"made_revision": 4, "workers_run_it": true}),
        );
        assert_eq!(a.report()["held"], json!(["globex", "hooli"]));
        tell(
            &mut a,
            "edge-1",
            json!({"made_revision": 5, "workers_run_it": false}),
        );
        assert_eq!(a.report()["held"], json!(["globex", "hooli"]));
        tell(
            &mut a,
            "edge-1",
            json!({"made_revision": 5, "workers_run_it": true}),
        );
        let r = a.report();
        assert_eq!(r["held"], json!([]), "{r}");
        assert_eq!(
            (r["revision"].clone(), r["tunnels"].clone()),
            (json!(5), json!(2))
        );
        assert!(!a.holding());
        // A report about ourselves does not count: edge-1's going away holds the next
        // new tunnel again.
        a.on_report("edge-1", None);
        a.on_report("edge-2", Some(json!({"made_revision": 99})));
        let moved = EXAMPLE.replacen(
            "  edge = \"edge-1\"\n  role = \"primary\"\n  link = \"169.254.1.1/31\"",
            "  edge = \"edge-2\"\n  role = \"primary\"\n  link = \"169.254.1.1/31\"",
            1,
        );
        assert_ne!(moved, EXAMPLE);
        read(&mut a, &moved, 6);
        let r = a.report();
        assert_eq!(r["held"], json!(["acme"]), "{r}");
        assert_eq!(
            (r["revision"].clone(), r["made_revision"].clone()),
            (json!(5), json!(6))
        );
        // acme moves here: until its tunnel comes up, its prefix keeps its route to edge-1.
        assert_eq!(
            a.applied.part.routes["10.1.0.0/16"],
            json!({"prefix": "10.1.0.0/16", "port": "core0", "next_hop": "10.255.0.1"})
        );
        tell(&mut a, "edge-1", json!({"made_revision": 6}));
        assert_eq!(a.report()["revision"], 6);
        assert!(a.applied.part.tunnels.contains_key("acme"));
        assert!(!a.applied.part.routes.contains_key("10.1.0.0/16"));
    }

    #[test]
    fn a_hold_carried_into_a_newer_revision_keeps_its_start() {
        let mut a = dry_agent("edge-2", EXAMPLE, 5);
        assert_eq!(a.report()["held"], json!(["globex", "hooli"]));
        // The hold began 31 s ago (the example's limit is 30 s); a new revision comes.
        let began = Instant::now().checked_sub(Duration::from_secs(31)).unwrap();
        a.hold = a.hold.map(|h| Hold { since: began, ..h });
        let text = EXAMPLE.replacen("key = 200\n", "key = 201\n", 1);
        read(&mut a, &text, 6);
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["held"].clone()),
            (json!(6), json!([])),
            "{r}"
        );
        assert!(!a.holding());
    }

    #[test]
    fn make_before_announce_0_holds_nothing() {
        let text = EXAMPLE.replacen(
            "make_before_announce_s = 30",
            "make_before_announce_s = 0",
            1,
        );
        assert_ne!(text, EXAMPLE);
        let a = dry_agent("edge-2", &text, 5);
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["held"].clone()),
            (json!(5), json!([])),
            "{r}"
        );
        assert_eq!(r["tunnels"], 2);
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
