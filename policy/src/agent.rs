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
use crate::audit::{lookup, Forwarding};
use crate::diff::count;
use crate::model::CoreRouting;
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
    /// Tunnels removed from this edge whose announcements are withdrawn and which
    /// stay until no other edge routes to them (removal ordering), and that wait.
    draining: Vec<String>,
    drain: Option<Hold>,
    /// `[preferences] withdraw_before_remove_s`.
    drain_limit: Duration,
    /// The edges of the policy, and the other edges' reports.
    policy_edges: Vec<String>,
    others: BTreeMap<String, Value>,
    /// A signal asked it to stop.
    stopping: bool,
    /// The policy's client prefixes (what the forwarding report covers).
    client_prefixes: Vec<ipnet::Ipv4Net>,
    /// The last forwarding report written, under which lease.
    forwarded: Option<(i64, Value)>,
    /// The appliance's lookups of the client prefixes, and the generation and
    /// prefixes they were made for.
    looked_up: Option<(u64, Vec<ipnet::Ipv4Net>, BTreeMap<String, Value>)>,
    /// What the appliance's `[bgp]` must say with BGP across the core: the backbone's
    /// AS number and this edge's core address (`ibgp_source`); `None`: static routing.
    core_expected: Option<(u32, std::net::Ipv4Addr)>,
    /// How the appliance's `[bgp]` disagrees with the policy, when it does.
    core_mismatch: Option<String>,
}

/// New tunnels held back for one revision (make before announce), or removed ones
/// kept while the other edges stop routing to them (removal ordering).
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
            draining: Vec::new(),
            drain: None,
            drain_limit: Duration::ZERO,
            policy_edges: Vec::new(),
            others: BTreeMap::new(),
            stopping: false,
            client_prefixes: Vec::new(),
            forwarded: None,
            looked_up: None,
            core_expected: None,
            core_mismatch: None,
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
        self.core_expected =
            (policy.core_routing == CoreRouting::Bgp).then_some((policy.asn, edge.core_address));
        self.desired = Some(part(&policy, e));
        self.desired_revision = stored.revision;
        self.policy_edges = policy.edges.iter().map(|e| e.name.clone()).collect();
        self.client_prefixes = policy
            .clients
            .iter()
            .flat_map(|c| c.prefixes.iter().copied())
            .collect();
        self.hold_limit = Duration::from_secs(policy.preferences.make_before_announce_s.into());
        self.drain_limit = Duration::from_secs(policy.preferences.withdraw_before_remove_s.into());
    }

    /// Bring the appliance to the desired part; `removals` false while etcd is away.
    ///
    /// Make before announce: a tunnel new at this edge (its client's BGP session and
    /// announcements start with it) is held back until every other edge of the policy
    /// reports the revision made (its routes to the client run on every worker), or
    /// until `[preferences] make_before_announce_s` has passed; everything else of the
    /// revision is applied at once.
    ///
    /// Removal ordering: a tunnel removed from this edge that routes prefixes is first
    /// drained (its prefixes no longer announced, the tunnel and a route of each prefix
    /// into it kept) until every other edge reports the revision made and none still
    /// holds a tunnel of that name, or until `[preferences] withdraw_before_remove_s`
    /// has passed; then it is removed.
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
        if let Some(a) = self.appliance.clone() {
            self.check_core(&a);
        }
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
        let draining = if removals {
            self.tunnels_to_drain(&target, running.as_ref())
        } else {
            BTreeMap::new()
        };
        for (name, (tunnel, prefixes)) in &draining {
            target.tunnels.insert(name.clone(), tunnel.clone());
            for p in prefixes {
                target
                    .routes
                    .insert(p.clone(), json!({"prefix": p, "tunnel": name}));
            }
        }
        let complete = held.is_empty() && draining.is_empty();
        self.held = held;
        self.draining = draining.into_keys().collect();
        let Some(appliance) = self.appliance.clone() else {
            // Dry run: what the appliance would be told.
            let ops = changes(&self.applied.part, &target);
            if !ops.is_empty() || (complete && self.applied.revision != self.desired_revision) {
                println!(
                    "edge {} revision {}: {} ({}){}{}",
                    self.opts.edge,
                    self.desired_revision,
                    target.summary(),
                    if ops.is_empty() {
                        "no change".into()
                    } else {
                        count(&ops)
                    },
                    if self.held.is_empty() {
                        String::new()
                    } else {
                        format!(", holding {}", self.held.join(", "))
                    },
                    if self.draining.is_empty() {
                        String::new()
                    } else {
                        format!(", draining {}", self.draining.join(", "))
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

    /// The tunnels to drain now, with the form each runs in meanwhile and the prefixes
    /// routed into it: those applied here and still running that `target` no longer has
    /// and that route prefixes (a backup's tunnel routes none: it goes at once), while
    /// some other edge of the policy does not report the revision made or still holds
    /// a tunnel of that name (it routes the client here until it brings its own up),
    /// and `[preferences] withdraw_before_remove_s` has not passed (0: never drained).
    /// A tunnel that would clash with one of `target`'s (a source, its link, or the
    /// same remote, mode and key: a client renamed) is removed at once too.
    fn tunnels_to_drain(
        &mut self,
        target: &EdgePart,
        running: Option<&Running>,
    ) -> BTreeMap<String, (Value, Vec<String>)> {
        let mut out = BTreeMap::new();
        for (name, t) in &self.applied.part.tunnels {
            if target.tunnels.contains_key(name)
                || running.is_some_and(|r| !r.tunnels.contains(name))
            {
                continue;
            }
            let Some((drained, prefixes)) = drain_form(name, t, &self.applied.part) else {
                continue;
            };
            if let Some(other) = target.tunnels.values().find(|o| clash(&drained, o)) {
                log::info!(
                    "revision {}: tunnel {name} removed at once: tunnel {} takes its place",
                    self.desired_revision,
                    other["name"].as_str().unwrap_or("?")
                );
                continue;
            }
            out.insert(name.clone(), (drained, prefixes));
        }
        let names: Vec<String> = out.keys().cloned().collect();
        if names.is_empty() || self.drain_limit.is_zero() {
            self.drain = None;
            return BTreeMap::new();
        }
        let holders = self.holding_elsewhere(&names);
        if self.others_made() && holders.is_empty() {
            if self.drain.take().is_some_and(|d| !d.expired) {
                log::info!(
                    "revision {}: no other edge routes to {} any more: removing it",
                    self.desired_revision,
                    names.join(", ")
                );
            }
            return BTreeMap::new();
        }
        let drain = match self.drain.take() {
            Some(d) if d.revision == self.desired_revision => d,
            previous => {
                log::info!(
                    "revision {}: {} withdrawn (no longer announced), kept until no other edge \
                     routes to it (at most {} s)",
                    self.desired_revision,
                    names.join(", "),
                    self.drain_limit.as_secs()
                );
                Hold {
                    revision: self.desired_revision,
                    since: previous
                        .filter(|d| !d.expired)
                        .map_or_else(Instant::now, |d| d.since),
                    expired: false,
                }
            }
        };
        let expired = drain.since.elapsed() >= self.drain_limit;
        if expired && !drain.expired {
            let mut lagging = self.lagging();
            lagging.extend(holders.iter().map(|e| format!("{e} (holds its own)")));
            log::warn!(
                "revision {}: after {} s not every other edge has stopped routing to {} ({}): \
                 removing it anyway",
                self.desired_revision,
                self.drain_limit.as_secs(),
                names.join(", "),
                lagging.join(", ")
            );
        }
        self.drain = Some(Hold { expired, ..drain });
        if expired {
            BTreeMap::new()
        } else {
            out
        }
    }

    /// The other edges whose report holds back a tunnel named as one of `names` (make
    /// before announce: they still route that client's prefixes to where it was).
    fn holding_elsewhere(&self, names: &[String]) -> Vec<String> {
        self.others
            .iter()
            .filter(|(e, _)| self.policy_edges.contains(*e))
            .filter(|(_, r)| {
                r["held"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|h| names.iter().any(|n| n == h))
            })
            .map(|(e, _)| e.clone())
            .collect()
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

    /// Whether new tunnels are held back, or removed ones drained (so other edges'
    /// reports matter now).
    pub fn holding(&self) -> bool {
        self.hold.is_some_and(|h| !h.expired) || self.drain.is_some_and(|d| !d.expired)
    }

    /// With BGP across the core, compare the appliance's `[bgp]` with the policy: the other
    /// edges, and `audit paths`, know this edge by its core address, so its iBGP must run
    /// from that address in the backbone's AS. A mismatch is logged when it appears and
    /// reported until it goes; what the policy asks is applied all the same (the local
    /// clients are served either way).
    fn check_core(&mut self, appliance: &Appliance) {
        let found = self.core_expected.and_then(|(asn, core)| {
            match appliance.request(&json!({"op": "status"})) {
                Ok(status) => core_mismatch(&status["bgp"], asn, core),
                // An appliance that does not answer is reported as such elsewhere.
                Err(_) => None,
            }
        });
        if found != self.core_mismatch {
            match &found {
                Some(m) => log::error!("edge {}: {m}", self.opts.edge),
                None if self.core_mismatch.is_some() => {
                    log::info!(
                        "edge {}: the appliance's [bgp] agrees with the policy",
                        self.opts.edge
                    )
                }
                None => {}
            }
            self.core_mismatch = found;
        }
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
            "draining": self.draining,
            "policy_revision": self.seen_revision,
            "tunnels": self.applied.part.tunnels.len(),
            "routes": self.applied.part.routes.len(),
            "error": self.error,
            "dry_run": self.appliance.is_none(),
        });
        if let Some(m) = &self.core_mismatch {
            r["config_mismatch"] = json!(m);
        }
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

    /// What the edge forwards, for `audit paths`: where its tables send each client
    /// prefix of the policy, and its tunnels' states. From the appliance: its `lookup`
    /// of each prefix's first address (what the workers do with it; a table of a
    /// million routes from zebra is not read whole), asked again only when its
    /// generation changed, and `list_tunnels`. A dry run gives what it applied. `None`
    /// when the appliance does not answer.
    pub fn forwarding(&mut self) -> Option<Forwarding> {
        let Some(a) = self.appliance.clone() else {
            let mut routes: Vec<Value> = self.applied.part.routes.values().cloned().collect();
            for (name, t) in &self.applied.part.tunnels {
                for p in t["prefixes"].as_array().into_iter().flatten() {
                    routes.push(json!({"prefix": p, "tunnel": name}));
                }
            }
            let tunnels = self
                .applied
                .part
                .tunnels
                .keys()
                .map(|n| (n.clone(), "dry-run".to_owned()))
                .collect();
            return Some(Forwarding {
                revision: self.made_revision,
                generation: None,
                tunnels,
                routes: lookup(&routes, &self.client_prefixes),
            });
        };
        let generation = a.generations().ok()?.0;
        let tunnels = a.tunnel_states().ok()?;
        let fresh = self
            .looked_up
            .as_ref()
            .is_some_and(|(g, p, _)| *g == generation && *p == self.client_prefixes);
        if !fresh {
            let mut routes = BTreeMap::new();
            for p in &self.client_prefixes {
                let answer = a
                    .request(&json!({"op": "lookup", "dst": p.network().to_string()}))
                    .ok()?;
                routes.insert(p.to_string(), via_target(&answer["via"]));
            }
            self.looked_up = Some((generation, self.client_prefixes.clone(), routes));
        }
        let routes = self.looked_up.as_ref().map(|(_, _, r)| r.clone())?;
        Some(Forwarding {
            revision: self.made_revision,
            generation: Some(generation),
            tunnels,
            routes,
        })
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

/// How an appliance's `[bgp]` (its `status` answer's `bgp`: null when it has none)
/// disagrees with a policy that routes across the core by BGP, in AS `asn`, with this
/// edge's core address `core`; `None` when it agrees.
pub fn core_mismatch(bgp: &Value, asn: u32, core: std::net::Ipv4Addr) -> Option<String> {
    if bgp.is_null() {
        return Some(format!(
            "the policy routes across the core by BGP, but the appliance has no [bgp]: give \
             it asn = {asn}, ibgp_source = \"{core}\" and ibgp_peers"
        ));
    }
    let theirs = bgp["asn"].as_u64();
    if theirs != Some(u64::from(asn)) {
        return Some(format!(
            "the appliance's [bgp] asn is {}, the policy's backbone.asn {asn}",
            theirs.map_or("absent".into(), |a| a.to_string())
        ));
    }
    match bgp["ibgp_source"].as_str() {
        Some(s) if s == core.to_string() => None,
        Some(s) => Some(format!(
            "the appliance's [bgp] ibgp_source is {s}, the policy's core_address for this \
             edge {core}: the other edges would route its clients to {s}, and audit paths \
             would not know that address"
        )),
        None => Some(format!(
            "the appliance's [bgp] has no ibgp_source: the policy routes across the core by \
             BGP from this edge's core_address {core} (give ibgp_source and ibgp_peers)"
        )),
    }
}

/// The appliance's `lookup` answer's `via` as a forwarding table's target.
fn via_target(via: &Value) -> Value {
    if let Some(t) = via["tunnel"].as_str() {
        return json!({"tunnel": t});
    }
    if let (Some(p), Some(n)) = (via["port"].as_str(), via["next_hop"].as_str()) {
        return json!({"port": p, "next_hop": n});
    }
    match ["blackhole", "unreachable", "prohibit"]
        .into_iter()
        .find(|k| via[*k] == Value::Bool(true))
    {
        Some(kind) => json!({"drop": kind}),
        None => Value::Null,
    }
}

/// A removed tunnel as it runs while drained: its prefixes no longer its own (so no
/// longer announced: the edge's FRR configuration announces and accepts the tunnels'
/// `prefixes`) but still accepted as inner sources, each routed into it by a route of
/// its own; with those prefixes. `None` when it routes none (nothing to withdraw).
/// `t` may be the drained form already (then its routes into it are in `applied`).
fn drain_form(name: &str, t: &Value, applied: &EdgePart) -> Option<(Value, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let mut prefixes = strings(&t["prefixes"]);
    for (p, r) in &applied.routes {
        if r["tunnel"].as_str() == Some(name) && !prefixes.contains(p) {
            prefixes.push(p.clone());
        }
    }
    if prefixes.is_empty() {
        return None;
    }
    let mut drained = t.clone();
    let obj = drained.as_object_mut()?;
    obj.remove("prefixes");
    let mut sources = prefixes.clone();
    for s in strings(&t["extra_sources"]) {
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    obj.insert("extra_sources".into(), json!(sources));
    Some((drained, prefixes))
}

/// Whether two tunnels could not run at one edge: a source (prefix, extra source or
/// link) of one overlaps one of the other's, or the same remote, mode and key.
fn clash(a: &Value, b: &Value) -> bool {
    let nets = |t: &Value| -> Vec<ipnet::Ipv4Net> {
        ["prefixes", "extra_sources"]
            .iter()
            .flat_map(|k| t[*k].as_array().cloned().unwrap_or_default())
            .chain(std::iter::once(t["link"].clone()))
            .filter_map(|v| v.as_str().and_then(|s| s.parse::<ipnet::Ipv4Net>().ok()))
            .map(|n| n.trunc())
            .collect()
    };
    let (x, y) = (nets(a), nets(b));
    let overlap = x
        .iter()
        .any(|m| y.iter().any(|n| m.contains(n) || n.contains(m)));
    let id = |t: &Value| (t["remote"].clone(), t["mode"].clone(), t["key"].clone());
    overlap || id(a) == id(b)
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
    let (keeper, kept) = store
        .client()
        .lease_keep_alive(lease)
        .await
        .map_err(|e| store.etcd(e).to_string())?;
    // The lease is kept alive by a task of its own, on the runtime's other thread: a
    // large policy takes the agent's thread for seconds (validation, the part), longer
    // than a loaded machine lets the lease wait.
    let period = Duration::from_secs((opts.lease_ttl as u64 / 3).max(1));
    let mut lease_lost = KeepAlive::start(keeper, kept, period, opts.etcd.clone());
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
            e = &mut lease_lost.lost => {
                return Err(e.unwrap_or_else(|_| "the report's lease keeper stopped".into()));
            }
        }
    }
}

/// The report's lease, kept alive by a task of its own until dropped; `lost` says why
/// it could not be.
struct KeepAlive {
    task: tokio::task::JoinHandle<()>,
    lost: tokio::sync::oneshot::Receiver<String>,
}

impl KeepAlive {
    fn start(
        mut keeper: etcd_client::LeaseKeeper,
        mut kept: etcd_client::LeaseKeepAliveStream,
        period: Duration,
        endpoints: String,
    ) -> KeepAlive {
        let (tx, lost) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let why = loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = keeper.keep_alive().await {
                            break format!("etcd {endpoints}: {e}");
                        }
                    }
                    k = kept.message() => match k {
                        Ok(Some(r)) if r.ttl() > 0 => {}
                        Ok(_) => break "the report's lease expired".to_owned(),
                        Err(e) => break format!("etcd {endpoints}: {e}"),
                    },
                }
            };
            let _ = tx.send(why);
        });
        KeepAlive { task, lost }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
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
    if let Some(f) = agent.forwarding() {
        let value = serde_json::to_value(&f).unwrap_or(Value::Null);
        if agent.forwarded.as_ref() != Some(&(lease, value.clone())) {
            let key = store.forwarding_key(&edge);
            store
                .client()
                .put(
                    key,
                    value.to_string(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
                .map_err(|e| store.etcd(e).to_string())?;
            agent.forwarded = Some((lease, value));
        }
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

    #[test]
    fn the_appliances_bgp_must_be_the_policys_core() {
        let core: std::net::Ipv4Addr = "10.255.0.1".parse().unwrap();
        let bgp = |asn: u32, source: Option<&str>| json!({"asn": asn, "ibgp_source": source});
        assert_eq!(
            core_mismatch(&bgp(65000, Some("10.255.0.1")), 65000, core),
            None
        );
        let said = |v: Value| core_mismatch(&v, 65000, core).expect("a mismatch");
        let m = said(bgp(65000, Some("10.255.0.9")));
        assert!(
            m.contains("ibgp_source is 10.255.0.9") && m.contains("10.255.0.1"),
            "{m}"
        );
        let m = said(bgp(65001, Some("10.255.0.1")));
        assert!(m.contains("asn is 65001") && m.contains("65000"), "{m}");
        let m = said(bgp(65000, None));
        assert!(m.contains("no ibgp_source"), "{m}");
        let m = said(Value::Null);
        assert!(m.contains("no [bgp]"), "{m}");
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

    /// `text` without the client named `name` (its `[[client]]` block).
    fn without_client(text: &str, name: &str) -> String {
        let start = text
            .find(&format!("[[client]]\nname = \"{name}\""))
            .unwrap();
        let end = text[start + 1..]
            .find("[[client]]")
            .map_or(text.len(), |e| start + 1 + e);
        format!("{}{}", &text[..start], &text[end..])
    }

    /// An edge-1 agent running the example at revision 5, edge-2 reporting it made.
    fn edge1_running_example() -> Agent {
        let mut a = dry_agent("edge-1", EXAMPLE, 5);
        tell(
            &mut a,
            "edge-2",
            json!({"made_revision": 5, "workers_run_it": true}),
        );
        assert_eq!(a.report()["revision"], 5);
        assert!(a.applied.part.tunnels["acme"]["prefixes"] == json!(["10.1.0.0/16"]));
        a
    }

    #[test]
    fn a_removed_client_is_withdrawn_first_and_removed_once_no_other_edge_routes_to_it() {
        let mut a = edge1_running_example();
        let before = a.applied.part.clone();
        let text = without_client(EXAMPLE, "acme");
        assert!(!text.contains("acme") && text.contains("initech"));
        read(&mut a, &text, 6);
        // First step: acme's tunnel stays, its prefix no longer its own (so neither
        // announced nor accepted from its BGP session) but still accepted as a source,
        // and routed into it by a route of its own; edge-2 has not yet reported 6.
        let r = a.report();
        assert_eq!(r["draining"], json!(["acme"]), "{r}");
        assert_eq!(
            (r["revision"].clone(), r["made_revision"].clone()),
            (json!(5), json!(6))
        );
        let acme = &a.applied.part.tunnels["acme"];
        assert_eq!(acme.get("prefixes"), None, "{acme}");
        assert_eq!(acme["extra_sources"], json!(["10.1.0.0/16"]));
        assert_eq!(
            (acme["key"].clone(), acme["asn"].clone()),
            (json!(100), json!(65001))
        );
        assert_eq!(
            a.applied.part.routes["10.1.0.0/16"],
            json!({"prefix": "10.1.0.0/16", "tunnel": "acme"})
        );
        let first = changes(&before, &a.applied.part);
        assert!(
            !first.iter().any(|o| o["op"] == "remove_route"),
            "nothing unrouted in the first step: {first:?}"
        );
        let tunnel_ops: Vec<&Value> = first.iter().filter(|o| o["op"] != "set_route").collect();
        assert_eq!(tunnel_ops.len(), 2, "{first:?}");
        assert_eq!(
            tunnel_ops[0],
            &json!({"op": "remove_tunnel", "name": "acme"})
        );
        assert_eq!(
            tunnel_ops[1]["tunnel"]["name"], "acme",
            "added again, in one batch"
        );
        // edge-2 has made revision 6, but not yet on every worker: still drained.
        tell(
            &mut a,
            "edge-2",
            json!({"made_revision": 6, "workers_run_it": false}),
        );
        assert_eq!(a.report()["draining"], json!(["acme"]));
        assert!(
            a.holding(),
            "the other edges' reports matter while draining"
        );
        // Every worker of edge-2 runs it: acme goes, with its route.
        let drained = a.applied.part.clone();
        tell(
            &mut a,
            "edge-2",
            json!({"made_revision": 6, "workers_run_it": true}),
        );
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["draining"].clone()),
            (json!(6), json!([])),
            "{r}"
        );
        assert!(!a.applied.part.tunnels.contains_key("acme"));
        assert!(!a.applied.part.routes.contains_key("10.1.0.0/16"));
        assert_eq!(
            changes(&drained, &a.applied.part),
            vec![
                json!({"op": "remove_route", "prefix": "10.1.0.0/16"}),
                json!({"op": "remove_tunnel", "name": "acme"}),
            ]
        );
        assert!(!a.holding());
    }

    #[test]
    fn a_client_moved_away_is_drained_until_its_new_edge_stops_holding_it() {
        let mut a = edge1_running_example();
        let moved = EXAMPLE.replacen(
            "  edge = \"edge-1\"\n  role = \"primary\"\n  link = \"169.254.1.1/31\"",
            "  edge = \"edge-2\"\n  role = \"primary\"\n  link = \"169.254.1.1/31\"",
            1,
        );
        assert_ne!(moved, EXAMPLE);
        read(&mut a, &moved, 6);
        assert_eq!(a.report()["draining"], json!(["acme"]));
        // edge-2 made 6 but holds acme's new tunnel: it still routes acme's prefix here.
        // Routing it back there now would loop it between the two edges.
        tell(
            &mut a,
            "edge-2",
            json!({"made_revision": 6, "workers_run_it": true, "held": ["acme"]}),
        );
        assert_eq!(a.report()["draining"], json!(["acme"]));
        assert_eq!(a.applied.part.routes["10.1.0.0/16"]["tunnel"], "acme");
        tell(
            &mut a,
            "edge-2",
            json!({"made_revision": 6, "workers_run_it": true, "held": []}),
        );
        assert_eq!(a.report()["draining"], json!([]));
        assert!(!a.applied.part.tunnels.contains_key("acme"));
        assert_eq!(
            a.applied.part.routes["10.1.0.0/16"],
            json!({"prefix": "10.1.0.0/16", "port": "core0", "next_hop": "10.255.0.2"})
        );
    }

    #[test]
    fn a_drain_ends_after_withdraw_before_remove_s_and_0_drains_nothing() {
        let mut a = edge1_running_example();
        read(&mut a, &without_client(EXAMPLE, "acme"), 6);
        assert_eq!(a.report()["draining"], json!(["acme"]));
        // The drain began 31 s ago (the example's limit is 30 s); a new revision comes,
        // edge-2 still silent about it.
        let began = Instant::now().checked_sub(Duration::from_secs(31)).unwrap();
        a.drain = a.drain.map(|d| Hold { since: began, ..d });
        let text = without_client(EXAMPLE, "acme").replacen("key = 400\n", "key = 401\n", 1);
        read(&mut a, &text, 7);
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["draining"].clone()),
            (json!(7), json!([])),
            "{r}"
        );
        assert!(!a.applied.part.tunnels.contains_key("acme"));
        assert!(!a.holding());

        let zero = EXAMPLE.replacen(
            "withdraw_before_remove_s = 30",
            "withdraw_before_remove_s = 0",
            1,
        );
        assert_ne!(zero, EXAMPLE);
        let mut a = dry_agent("edge-1", &zero, 5);
        tell(&mut a, "edge-2", json!({"made_revision": 5}));
        read(&mut a, &without_client(&zero, "acme"), 6);
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["draining"].clone()),
            (json!(6), json!([])),
            "{r}"
        );
        assert!(!a.applied.part.tunnels.contains_key("acme"));
    }

    #[test]
    fn a_backup_placement_removed_goes_at_once() {
        // hooli's tunnel at edge-1 is its backup: no prefix of it is routed or announced
        // there, so there is nothing to withdraw.
        let mut a = edge1_running_example();
        assert!(a.applied.part.tunnels["hooli"].get("prefixes").is_none());
        let text = EXAMPLE.replacen(
            "  [[client.placement]]\n  edge = \"edge-1\"\n  role = \"backup\"\n  link = \"169.254.4.3/31\"\n",
            "",
            1,
        );
        assert_ne!(text, EXAMPLE);
        read(&mut a, &text, 6);
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["draining"].clone()),
            (json!(6), json!([])),
            "{r}"
        );
        assert!(!a.applied.part.tunnels.contains_key("hooli"));
    }

    #[test]
    fn a_renamed_client_is_not_drained_beside_its_new_name() {
        // acme renamed acme2: same router, key and prefix; both cannot run at once. While
        // acme2 is held (make before announce), acme drains; both end together.
        let mut a = edge1_running_example();
        let text = EXAMPLE.replacen("name = \"acme\"", "name = \"acme2\"", 1);
        read(&mut a, &text, 6);
        let r = a.report();
        assert_eq!(
            (r["draining"].clone(), r["held"].clone()),
            (json!(["acme"]), json!(["acme2"])),
            "{r}"
        );
        tell(&mut a, "edge-2", json!({"made_revision": 6}));
        let r = a.report();
        assert_eq!(
            (r["draining"].clone(), r["held"].clone()),
            (json!([]), json!([])),
            "{r}"
        );
        assert!(!a.applied.part.tunnels.contains_key("acme"));
        assert_eq!(
            a.applied.part.tunnels["acme2"]["prefixes"],
            json!(["10.1.0.0/16"])
        );
        // Without make before announce acme2 comes up at once: acme goes at once too.
        let zero = EXAMPLE.replacen(
            "make_before_announce_s = 30",
            "make_before_announce_s = 0",
            1,
        );
        let mut a = dry_agent("edge-1", &zero, 5);
        tell(&mut a, "edge-2", json!({"made_revision": 5}));
        read(
            &mut a,
            &zero.replacen("name = \"acme\"", "name = \"acme2\"", 1),
            6,
        );
        let r = a.report();
        assert_eq!(
            (r["revision"].clone(), r["draining"].clone()),
            (json!(6), json!([])),
            "{r}"
        );
        assert!(!a.applied.part.tunnels.contains_key("acme"));
        assert!(a.applied.part.tunnels.contains_key("acme2"));
    }

    #[test]
    fn the_appliances_lookup_answers_become_targets() {
        // `via` as the appliance's `lookup` gives it (dataplane/src/control/state.rs).
        let cases = [
            (
                json!({"tunnel": "acme", "next_hop": "198.51.100.10", "port": "client0", "next_hop_mac": null}),
                json!({"tunnel": "acme"}),
            ),
            (
                json!({"port": "core0", "next_hop": "10.255.0.2", "next_hop_mac": "02:00:00:00:00:09"}),
                json!({"port": "core0", "next_hop": "10.255.0.2"}),
            ),
            (
                json!({"no_route": true, "blackhole": true}),
                json!({"drop": "blackhole"}),
            ),
            (
                json!({"no_route": true, "prohibit": true}),
                json!({"drop": "prohibit"}),
            ),
            (json!({"no_route": true}), Value::Null),
        ];
        for (via, want) in cases {
            assert_eq!(via_target(&via), want, "{via}");
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
