//! The control thread's state: the configuration document, the snapshot builder, and the
//! one place where a change becomes a new snapshot.
//!
//! Every change, from the API or from ARP, goes through [`ControlState::apply`]: the edits
//! are made on a copy of the document, the whole result is validated exactly as a file is,
//! the builder brings its tables up to date (copy-on-write), and the new snapshot is
//! published through the [`Publisher`]. Workers pick it up at their next burst; the old one
//! is freed here, on the control side, once no worker can hold it ([`ControlState::reclaim`]:
//! a stalled worker keeps its own snapshot alive, nothing else). On any error nothing
//! changes and the error names the field.

use super::audit;
use super::pmtu::{self, PathMtus};
use crate::config::{builder_from_config, prefix as table_prefix, route_target};
use crate::lpm::{Ipv4Prefix, Ipv6Prefix};
use crate::pipeline::PathMtuReport;
use crate::tables::{
    PortIndex, Publisher, Reader, RouteLayer, RouteTarget, Snapshot, SnapshotBuilder, Target,
};
use crate::wire::EthernetAddress;
use core::net::{Ipv4Addr, Ipv6Addr};
use pipeline_config::{ConfigDocument, Difference, RouteEdit, ValidatedConfig};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What differs between `running` and `new` that only a restart can change: a port
/// (its static neighbours excepted: they change at run time), `[eal]`, `[workers]`.
fn needs_restart(running: &ValidatedConfig, new: &ValidatedConfig) -> Option<String> {
    if new.eal_args != running.eal_args {
        return Some("[eal] args".into());
    }
    if new.worker_lcores != running.worker_lcores {
        return Some("[workers] lcores".into());
    }
    if new.fpm != running.fpm {
        return Some("[fpm]".into());
    }
    if new.ports.len() != running.ports.len() {
        return Some(format!(
            "the number of ports ({} running, {} in the file)",
            running.ports.len(),
            new.ports.len()
        ));
    }
    running
        .ports
        .iter()
        .zip(&new.ports)
        .enumerate()
        .find(|(_, (a, b))| {
            // Neighbours and addresses change while running (a client site's WAN address
            // given anew: the tunnels re-source from it).
            let mut b = (*b).clone();
            b.neighbors.clone_from(&a.neighbors);
            b.neighbors6.clone_from(&a.neighbors6);
            b.addresses.clone_from(&a.addresses);
            **a != b
        })
        .map(|(i, (a, _))| format!("port[{i}] {:?}", a.name))
}

/// Owns the configuration and publishes snapshots.
#[derive(Debug)]
pub struct ControlState {
    doc: ConfigDocument,
    cfg: ValidatedConfig,
    /// DPDK port id and MAC of each configured port, in configuration order.
    ports: Vec<(PortIndex, EthernetAddress)>,
    builder: SnapshotBuilder,
    /// Neighbours learned by ARP (static entries override them).
    learned: HashMap<(PortIndex, Ipv4Addr), EthernetAddress>,
    /// IPv6 next hops learned by Neighbor Discovery (static entries override them).
    learned6: HashMap<(PortIndex, Ipv6Addr), EthernetAddress>,
    snapshots: Publisher<Snapshot>,
    /// The configuration file the appliance runs from (`ctl save`, `ctl diff`, SIGHUP).
    file: Option<PathBuf>,
    /// Routes set through the API since the configuration was last loaded or saved, with
    /// the generation that set them: their source in `list_routes`.
    runtime_routes: HashMap<ipnet::Ipv4Net, u64>,
    /// What the dynamic layer's routes (zebra's) came with: protocol, connection.
    dynamic: HashMap<RoutePrefix, DynamicMeta>,
    /// The routing daemon's connection the dynamic routes count from (see
    /// [`ControlState::begin_dynamic_epoch`]).
    dynamic_epoch: u64,
    /// The host interfaces by name, and our addresses: what a dynamic route may name.
    ifaces: HostInterfaces,
    /// Path MTUs the underlay reported for the tunnels (not configuration: kept across
    /// changes while the tunnel stays the same, and never saved).
    path_mtus: PathMtus,
    /// Tunnels their probes say are down (not configuration: kept across changes while
    /// the tunnel exists). Those that fall back route none of their prefixes.
    down: BTreeSet<String>,
}

/// The tunnels whose health changed (name, down), and the generation that took them into
/// the routes, if one was needed.
pub type HealthApplied = (Vec<(String, bool)>, Option<u64>);

/// A host interface a route from a routing daemon may go out of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostInterface {
    /// `bb-<tunnel>`: into that tunnel.
    Tunnel(String),
    /// `bb-<port>` (a port with `host_interface`): natively out of it, to a gateway.
    Port(PortIndex),
}

/// The host interfaces of the running configuration, and our addresses.
#[derive(Debug, Default)]
struct HostInterfaces {
    by_name: HashMap<String, HostInterface>,
    ours: HashSet<Ipv4Addr>,
}

impl HostInterfaces {
    fn new(cfg: &ValidatedConfig, ports: &[(PortIndex, EthernetAddress)]) -> Self {
        let mut by_name = HashMap::new();
        let mut ours = HashSet::new();
        for t in &cfg.tunnels {
            by_name.insert(
                t.host_interface_name(),
                HostInterface::Tunnel(t.name.clone()),
            );
            ours.extend(t.link.map(|l| l.addr()));
        }
        for (p, &(id, _)) in cfg.ports.iter().zip(ports) {
            if p.host_interface {
                by_name.insert(p.host_interface_name(), HostInterface::Port(id));
            }
            ours.extend(p.addresses.iter().copied());
        }
        HostInterfaces { by_name, ours }
    }
}

/// A route from a routing daemon, translated: where it goes, and which of the daemon's
/// protocols chose it (rtnetlink's `rtm_protocol`: 186 is BGP, 196 FRR's static).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicRoute {
    pub target: RouteTarget,
    pub protocol: u8,
}

/// A route's prefix, of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoutePrefix {
    V4(Ipv4Prefix),
    V6(Ipv6Prefix),
}

impl From<Ipv4Prefix> for RoutePrefix {
    fn from(p: Ipv4Prefix) -> Self {
        RoutePrefix::V4(p)
    }
}

impl From<Ipv6Prefix> for RoutePrefix {
    fn from(p: Ipv6Prefix) -> Self {
        RoutePrefix::V6(p)
    }
}

impl std::str::FromStr for RoutePrefix {
    type Err = crate::lpm::LpmError;

    /// An IPv6 prefix where it holds a colon, else an IPv4 one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(RoutePrefix::V6)
        } else {
            s.parse().map(RoutePrefix::V4)
        }
    }
}

impl std::fmt::Display for RoutePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoutePrefix::V4(p) => p.fmt(f),
            RoutePrefix::V6(p) => p.fmt(f),
        }
    }
}

/// One change a routing daemon asks for: `route` for the prefix, or (`None`) no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicChange {
    pub prefix: RoutePrefix,
    pub route: Option<DynamicRoute>,
}

/// What a dynamic route came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DynamicMeta {
    protocol: u8,
    /// The connection that last sent it.
    epoch: u64,
}

/// What one frame of dynamic changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameApplied {
    /// Routes added or replaced.
    pub added: u64,
    /// Routes removed.
    pub removed: u64,
    /// Removals of prefixes that had no dynamic route (one refused before, say).
    pub unknown_removals: u64,
}

/// What applying frames of dynamic changes did: per frame, what it changed or why it was
/// refused (nothing of a refused frame applies), and the generation that holds them
/// (`None`: none of them changed anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicApplied {
    pub frames: Vec<Result<FrameApplied, String>>,
    pub generation: Option<u64>,
}

/// Whether every change of a request is a route change: those are checked one by one
/// against the running configuration, the rest by validating the whole document.
fn route_changes_only(ops: &[Value]) -> bool {
    !ops.is_empty()
        && ops.iter().all(|op| {
            matches!(
                op.get("op").and_then(Value::as_str),
                Some("set_route" | "add_route" | "remove_route")
            )
        })
}

/// Whether a change names an IPv6 prefix (a route to set or to remove).
fn names_ipv6_prefix(ops: &[Value]) -> bool {
    ops.iter().any(|op| {
        let prefix = op
            .get("prefix")
            .or_else(|| op.get("route").and_then(|r| r.get("prefix")));
        prefix
            .and_then(Value::as_str)
            .is_some_and(|p| p.parse::<ipnet::Ipv6Net>().is_ok())
    })
}

fn op_str<'a>(op: &'a Value, field: &str) -> Result<&'a str, String> {
    op.get(field).and_then(Value::as_str).ok_or_else(|| {
        format!(
            "{}: missing string field {field:?}",
            op.get("op").and_then(Value::as_str).unwrap_or("request")
        )
    })
}

impl ControlState {
    /// Start from a validated document; builds and returns the first snapshot holder.
    pub fn new(
        doc: ConfigDocument,
        cfg: ValidatedConfig,
        ports: Vec<(PortIndex, EthernetAddress)>,
    ) -> Result<ControlState, String> {
        let mut doc = doc;
        doc.index_routes();
        let mut builder = builder_from_config(&cfg, &ports);
        let first = builder.build().map_err(|e| e.to_string())?;
        Ok(ControlState {
            ifaces: HostInterfaces::new(&cfg, &ports),
            doc,
            cfg,
            ports,
            builder,
            learned: HashMap::new(),
            learned6: HashMap::new(),
            snapshots: Publisher::new(first),
            file: None,
            runtime_routes: HashMap::new(),
            dynamic: HashMap::new(),
            dynamic_epoch: 0,
            path_mtus: PathMtus::default(),
            down: BTreeSet::new(),
        })
    }

    /// The configuration file the appliance runs from: what `save` writes, `diff`
    /// compares with and `reload` reads.
    pub fn set_file(&mut self, path: &Path) {
        self.file = Some(path.to_owned());
    }

    /// The configuration file, where there is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The published snapshots: the current one, and how many old ones are still retained.
    pub fn snapshots(&self) -> &Publisher<Snapshot> {
        &self.snapshots
    }

    /// A worker's handle on the snapshots: it holds the current one and is offered every
    /// later one. Make one per worker before it starts.
    pub fn reader(&mut self) -> Reader<Snapshot> {
        self.snapshots.reader()
    }

    /// Free the old snapshots no worker can hold any more (publication does it too); returns
    /// how many went. Call it on every control tick, so that a worker that moves on after a
    /// stall lets its old tables go without waiting for the next change.
    pub fn reclaim(&mut self) -> usize {
        self.snapshots.reclaim()
    }

    /// DPDK port id and MAC of each configured port, in configuration order.
    pub fn ports(&self) -> &[(PortIndex, EthernetAddress)] {
        &self.ports
    }

    /// The running configuration.
    pub fn config(&self) -> &ValidatedConfig {
        &self.cfg
    }

    /// Apply a batch of changes as one publication; returns the new generation.
    ///
    /// Ops (JSON objects, TOML field names inside `tunnel` and `route`):
    /// `{"op":"add_tunnel","tunnel":{...}}`, `{"op":"remove_tunnel","name":N}`,
    /// `{"op":"set_route","route":{...}}` (adds or replaces the prefix's route),
    /// `{"op":"remove_route","prefix":P}`, `{"op":"set_neighbor","port":N,"ip":I,"mac":M}`,
    /// `{"op":"remove_neighbor","port":N,"ip":I}`, `{"op":"set_address","port":P,"old":O,
    /// "new":N}` (port P's address O becomes N, and every tunnel whose local was O sends
    /// from N), `{"op":"apply_config","path":F}` (a whole new file; ports, EAL arguments and
    /// workers must stay as they are, but for the ports' addresses).
    ///
    /// A request of route changes only costs what it changes: each change is checked on
    /// its own against the running configuration (the same rules, the same errors as the
    /// whole file's validation) and only the changed prefixes are rebuilt. Any other
    /// change validates the whole edited document.
    pub fn apply(&mut self, ops: &[Value]) -> Result<u64, String> {
        // IPv6 routes sit among the IPv4 ones in the document but not in the validated
        // configuration's `routes`: with any of them, route changes validate the whole.
        if route_changes_only(ops) && self.cfg.routes6.is_empty() && !names_ipv6_prefix(ops) {
            let generation = self.apply_routes(ops)?;
            self.note_route_sources(ops, generation);
            return Ok(generation);
        }
        let mut doc = self.doc.clone();
        for (i, op) in ops.iter().enumerate() {
            let at = |e: String| audit::at_change(ops, i, &e);
            let kind = op_str(op, "op").map_err(at)?;
            let r = match kind {
                "add_tunnel" => doc.add_tunnel(op.get("tunnel").cloned().unwrap_or(Value::Null)),
                "remove_tunnel" => doc.remove_tunnel(op_str(op, "name").map_err(at)?),
                "set_route" | "add_route" => {
                    doc.set_route(op.get("route").cloned().unwrap_or(Value::Null))
                }
                "remove_route" => doc.remove_route(op_str(op, "prefix").map_err(at)?),
                "set_neighbor" => doc.set_neighbor(
                    op_str(op, "port").map_err(at)?,
                    op_str(op, "ip").map_err(at)?,
                    op_str(op, "mac").map_err(at)?,
                ),
                "set_address" => doc
                    .set_address(
                        op_str(op, "port").map_err(at)?,
                        op_str(op, "old").map_err(at)?,
                        op_str(op, "new").map_err(at)?,
                    )
                    .map(|_| ()),
                "remove_neighbor" => doc.remove_neighbor(
                    op_str(op, "port").map_err(at)?,
                    op_str(op, "ip").map_err(at)?,
                ),
                "apply_config" => {
                    let path = op_str(op, "path").map_err(at)?;
                    let (new_doc, new_cfg) = ConfigDocument::load(std::path::Path::new(path))
                        .map_err(|e| at(e.to_string()))?;
                    if let Some(what) = needs_restart(&self.cfg, &new_cfg) {
                        return Err(at(format!(
                            "{path}: {what} cannot change while running (restart for that); \
                             ports, [eal] and [workers] stay as they started"
                        )));
                    }
                    doc = new_doc;
                    Ok(())
                }
                other => return Err(at(format!("unknown change {other:?}"))),
            };
            r.map_err(|e| {
                if kind == "apply_config" {
                    at(e.to_string())
                } else {
                    at(audit::without_origin(&e))
                }
            })?;
        }
        let cfg = doc.validate().map_err(|e| audit::blame(&e, ops, &doc))?;
        let generation = self.publish(&cfg)?;
        doc.index_routes();
        self.doc = doc;
        self.cfg = cfg;
        self.note_route_sources(ops, generation);
        Ok(generation)
    }

    /// Route changes alone: checked one by one, applied to the document, the running
    /// configuration and the tables in place, undone on any error.
    fn apply_routes(&mut self, ops: &[Value]) -> Result<u64, String> {
        let mut edits = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let at = |e: String| audit::at_change(ops, i, &e);
            edits.push(match op_str(op, "op").map_err(at)? {
                "remove_route" => RouteEdit::Remove(op_str(op, "prefix").map_err(at)?.to_owned()),
                _ => RouteEdit::Set(op.get("route").cloned().unwrap_or(Value::Null)),
            });
        }
        let done = self
            .doc
            .edit_routes(&mut self.cfg, &edits)
            .map_err(|e| match e.change {
                Some(i) => audit::at_change(ops, i, &audit::without_origin(&e.error)),
                None => audit::blame(&e.error, ops, &self.doc),
            })?;
        let mut undo: Vec<(Ipv4Prefix, Option<RouteTarget>)> =
            Vec::with_capacity(done.changes.len());
        for (net, target) in &done.changes {
            let p = table_prefix(net);
            undo.push((p, self.builder.routes().get(&p).cloned()));
            match target {
                Some(t) => {
                    self.builder.route(p, route_target(t, &self.ports));
                }
                None => {
                    self.builder.remove_route(p);
                }
            }
        }
        match self.build() {
            Ok(snap) => {
                let generation = snap.generation();
                self.snapshots.publish(snap);
                Ok(generation)
            }
            Err(e) => {
                for (p, old) in undo.into_iter().rev() {
                    match old {
                        Some(t) => {
                            self.builder.route(p, t);
                        }
                        None => {
                            self.builder.remove_route(p);
                        }
                    }
                }
                self.doc.undo_routes(&mut self.cfg, done);
                Err(if ops.len() == 1 {
                    audit::at_change(ops, 0, &e.to_string())
                } else {
                    format!("the changes together leave the tables invalid: {e}")
                })
            }
        }
    }

    /// Apply `ops` as [`ControlState::apply`] does, and write the audit trail: one log
    /// line per applied change (what, from `who`, which generation), or why it was refused.
    pub fn apply_as(&mut self, ops: &[Value], who: &str) -> Result<u64, String> {
        let before = ops
            .iter()
            .any(|op| op.get("op").and_then(Value::as_str) == Some("apply_config"))
            .then(|| self.doc.clone());
        match self.apply(ops) {
            Ok(generation) => {
                audit::applied(generation, who, ops, before.as_ref(), &self.doc);
                Ok(generation)
            }
            Err(e) => {
                log::info!(target: audit::TARGET, "refused from {who}: {e}");
                Err(e)
            }
        }
    }

    /// Make the configuration file the running configuration (SIGHUP): read, validated
    /// and applied as one publication, as `apply_config` does; `Ok(None)` when it
    /// configures what already runs (nothing is published). Runtime changes not saved in
    /// the file are undone.
    pub fn reload(&mut self, who: &str) -> Result<Option<u64>, String> {
        let path = self.file_or_err()?;
        let (new_doc, _) = ConfigDocument::load(&path).map_err(|e| {
            let e = e.to_string();
            log::info!(target: audit::TARGET, "refused from {who}: {e}");
            e
        })?;
        if new_doc.same_as(&self.doc) {
            self.runtime_routes.clear();
            return Ok(None);
        }
        self.apply_as(
            &[json!({"op": "apply_config", "path": path.display().to_string()})],
            who,
        )
        .map(Some)
    }

    fn file_or_err(&self) -> Result<PathBuf, String> {
        self.file
            .clone()
            .ok_or_else(|| "the appliance runs without a configuration file".to_owned())
    }

    /// How the running configuration differs from the configuration file as it is now
    /// (learned neighbours are not configuration, and not compared).
    pub fn diff(&self) -> Result<(PathBuf, Vec<Difference>), String> {
        let path = self.file_or_err()?;
        let file = ConfigDocument::read(&path).map_err(|e| e.to_string())?;
        Ok((path, file.diff(&self.doc)))
    }

    /// Write the running configuration to the configuration file, atomically (a new
    /// file renamed over the old one), keeping the file's text wherever the two agree;
    /// returns the file and whether it changed. The text is checked to validate to the
    /// running configuration before it replaces the file; on any error the file is as
    /// it was.
    pub fn save(&mut self, who: &str) -> Result<(PathBuf, bool), String> {
        let path = self.file_or_err()?;
        let current = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let text = self.doc.render_over(current.as_deref());
        let (_, cfg) = ConfigDocument::parse(&text, &path.display().to_string()).map_err(|e| {
            format!("the text to save does not validate ({e}); the file is unchanged")
        })?;
        if cfg != self.cfg {
            return Err(
                "the text to save does not describe the running configuration; the file is unchanged"
                    .into(),
            );
        }
        let changed = current.as_deref() != Some(text.as_str());
        if changed {
            audit::write_atomically(&path, &text)?;
        }
        let generation = self.snapshots.current().generation();
        log::info!(
            target: audit::TARGET,
            "generation {generation}: {who}: saved the running configuration to {}{}",
            path.display(),
            if changed { "" } else { " (unchanged)" }
        );
        self.runtime_routes.clear();
        Ok((path, changed))
    }

    /// Remember which routes the API set (their source), and forget removed ones.
    fn note_route_sources(&mut self, ops: &[Value], generation: u64) {
        for op in ops {
            let prefix = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .and_then(|p| p.parse::<ipnet::Ipv4Net>().ok())
            };
            match op.get("op").and_then(Value::as_str) {
                Some("set_route" | "add_route") => {
                    if let Some(p) = prefix(op.get("route").and_then(|r| r.get("prefix"))) {
                        self.runtime_routes.insert(p, generation);
                    }
                }
                Some("remove_route") => {
                    if let Some(p) = prefix(op.get("prefix")) {
                        self.runtime_routes.remove(&p);
                    }
                }
                Some("apply_config") => self.runtime_routes.clear(),
                _ => {}
            }
        }
    }

    /// Install neighbours learned by ARP (one publication for all); static ones win. The
    /// routes are left as they are: the cost follows the tunnels and neighbours.
    pub fn learn(
        &mut self,
        entries: &[(PortIndex, Ipv4Addr, EthernetAddress)],
    ) -> Result<u64, String> {
        for &(port, ip, mac) in entries {
            self.learned.insert((port, ip), mac);
            if !self.is_static_neighbor(port, ip) {
                self.builder.neighbor(port, ip, mac);
            }
        }
        self.publish_built()
    }

    /// Forget neighbours learned by ARP (one publication for all; static ones stay): on-demand
    /// neighbours that stopped answering or left their connected subnet. Returns the new
    /// generation, or `None` when none of them was installed.
    pub fn forget(&mut self, entries: &[(PortIndex, Ipv4Addr)]) -> Result<Option<u64>, String> {
        let mut changed = false;
        for &(port, ip) in entries {
            if self.learned.remove(&(port, ip)).is_some() && !self.is_static_neighbor(port, ip) {
                changed |= self.builder.remove_neighbor(port, ip);
            }
        }
        if !changed {
            return Ok(None);
        }
        self.publish_built().map(Some)
    }

    /// Install IPv6 next hops learned by Neighbor Discovery (one publication for all);
    /// static ones win. The routes are left as they are.
    pub fn learn6(
        &mut self,
        entries: &[(PortIndex, Ipv6Addr, EthernetAddress)],
    ) -> Result<u64, String> {
        for &(port, ip, mac) in entries {
            self.learned6.insert((port, ip), mac);
            if !self.is_static_neighbor6(port, ip) {
                self.builder.neighbor6(port, ip, mac);
            }
        }
        self.publish_built()
    }

    /// Forget IPv6 next hops learned by Neighbor Discovery (one publication for all; static
    /// ones stay): those that stopped answering, or that no route needs any more. Returns
    /// the new generation, or `None` when none of them was installed.
    pub fn forget6(&mut self, entries: &[(PortIndex, Ipv6Addr)]) -> Result<Option<u64>, String> {
        let mut changed = false;
        for &(port, ip) in entries {
            if self.learned6.remove(&(port, ip)).is_some() && !self.is_static_neighbor6(port, ip) {
                changed |= self.builder.remove_neighbor6(port, ip);
            }
        }
        if !changed {
            return Ok(None);
        }
        self.publish_built().map(Some)
    }

    /// Whether an IPv6 neighbour is configured statically.
    pub fn is_static_neighbor6(&self, port: PortIndex, ip: Ipv6Addr) -> bool {
        Self::static6_in(&self.cfg, &self.ports, port, ip)
    }

    fn static6_in(
        cfg: &ValidatedConfig,
        ports: &[(PortIndex, EthernetAddress)],
        port: PortIndex,
        ip: Ipv6Addr,
    ) -> bool {
        cfg.ports
            .iter()
            .zip(ports)
            .any(|(p, &(id, _))| id == port && p.neighbors6.iter().any(|n| n.ip == ip))
    }

    /// Whether a neighbour is configured statically.
    pub fn is_static_neighbor(&self, port: PortIndex, ip: Ipv4Addr) -> bool {
        self.cfg
            .ports
            .iter()
            .zip(&self.ports)
            .any(|(p, &(id, _))| id == port && p.neighbors.iter().any(|n| n.ip == ip))
    }

    /// Take path MTU reports from the workers (one publication for all that lower a
    /// tunnel's MTU: the tunnel table changes, the routes are left as they are); returns
    /// what became of each, and the generation published, if any.
    pub fn path_mtu_reports(
        &mut self,
        reports: &[PathMtuReport],
        now: Instant,
    ) -> Result<(Vec<pmtu::Outcome>, Option<u64>), String> {
        let snap = std::sync::Arc::clone(self.snapshots.current());
        let outcomes: Vec<pmtu::Outcome> = reports
            .iter()
            .map(|r| self.path_mtus.report(&snap, r, now))
            .collect();
        if !outcomes
            .iter()
            .any(|o| matches!(o, pmtu::Outcome::Lowered { .. }))
        {
            return Ok((outcomes, None));
        }
        self.path_mtus.apply(&mut self.builder);
        let generation = self.publish_built()?;
        Ok((outcomes, Some(generation)))
    }

    /// Forget the path MTUs whose ten minutes are up (the tunnels go back to their MTU
    /// with one publication); returns each tunnel's name, the path MTU it had and its MTU
    /// now, and the generation published, if any.
    #[allow(clippy::type_complexity)]
    pub fn expire_path_mtus(
        &mut self,
        now: Instant,
    ) -> Result<(Vec<(String, u16, u16)>, Option<u64>), String> {
        let gone = self.path_mtus.expire(now);
        if gone.is_empty() {
            return Ok((Vec::new(), None));
        }
        for (name, _) in &gone {
            self.builder.forget_path_mtu(name);
        }
        let generation = self.publish_built()?;
        let snap = self.snapshots.current();
        let list = gone
            .into_iter()
            .map(|(name, l)| {
                let now_mtu = snap
                    .tunnels()
                    .by_name(&name)
                    .and_then(|id| snap.tunnels().get(id))
                    .map_or(0, |t| t.mtu);
                (name, l.mtu, now_mtu)
            })
            .collect();
        Ok((list, Some(generation)))
    }

    /// Take the probed tunnels' health: `down` names every probed tunnel that is down
    /// now. Those that changed are marked in the tables, in one publication when one falls
    /// back or comes back (its prefixes leave or rejoin the routes). Returns each change
    /// (tunnel, down) and the generation published, if any.
    pub fn tunnel_health(&mut self, down: &BTreeSet<String>) -> Result<HealthApplied, String> {
        let changes: Vec<(String, bool)> = self
            .down
            .symmetric_difference(down)
            .filter(|n| self.cfg.tunnels.iter().any(|t| &t.name == *n))
            .map(|n| (n.clone(), down.contains(n)))
            .collect();
        if changes.is_empty() {
            return Ok((changes, None));
        }
        let mut moved = false;
        for (name, d) in &changes {
            moved |= self.builder.set_tunnel_down(name, *d)
                && self
                    .cfg
                    .tunnels
                    .iter()
                    .any(|t| &t.name == name && t.fallback);
        }
        if !moved {
            // Nothing routes differently (no fallback): the builder keeps the mark for
            // the next build.
            self.down = down.clone();
            return Ok((changes, None));
        }
        match self.publish_built() {
            Ok(g) => {
                self.down = down.clone();
                Ok((changes, Some(g)))
            }
            Err(e) => {
                // Put the marks back: nothing half-applied.
                for (name, d) in &changes {
                    self.builder.set_tunnel_down(name, !*d);
                }
                Err(e)
            }
        }
    }

    /// The tunnels their probes say are down.
    pub fn tunnels_down(&self) -> &BTreeSet<String> {
        &self.down
    }

    /// The path MTUs in force.
    pub fn path_mtus(&self) -> &PathMtus {
        &self.path_mtus
    }

    /// Build the next snapshot from the builder, first freeing the old snapshots no worker
    /// holds any more: the IPv4 tables are written into the one published two
    /// generations ago once nothing holds it (see `lpm::ipv4`'s flat form), instead of
    /// built anew.
    fn build(&mut self) -> Result<std::sync::Arc<Snapshot>, crate::tables::snapshot::BuildError> {
        self.snapshots.reclaim();
        self.builder.build()
    }

    /// Build and publish what was changed in the builder (neighbours, path MTUs: nothing
    /// a build can refuse).
    fn publish_built(&mut self) -> Result<u64, String> {
        let snap = self.build().map_err(|e| e.to_string())?;
        let generation = snap.generation();
        self.snapshots.publish(snap);
        Ok(generation)
    }

    /// Build and publish the tables for a new configuration (as a whole). Routes from a
    /// routing daemon into a tunnel that `cfg` no longer has are withdrawn with it.
    fn publish(&mut self, cfg: &ValidatedConfig) -> Result<u64, String> {
        let mut next = builder_from_config(cfg, &self.ports);
        for (&(port, ip), &mac) in &self.learned {
            if !cfg
                .ports
                .iter()
                .zip(&self.ports)
                .any(|(p, &(id, _))| id == port && p.neighbors.iter().any(|n| n.ip == ip))
            {
                next.neighbor(port, ip, mac);
            }
        }
        for (&(port, ip), &mac) in &self.learned6 {
            if !Self::static6_in(cfg, &self.ports, port, ip) {
                next.neighbor6(port, ip, mac);
            }
        }
        let names: HashSet<&str> = cfg.tunnels.iter().map(|t| t.name.as_str()).collect();
        let orphan =
            |t: &RouteTarget| matches!(t, RouteTarget::Tunnel(n) if !names.contains(n.as_str()));
        let orphans: Vec<(RoutePrefix, RouteTarget)> = self
            .builder
            .dynamic_routes()
            .iter()
            .filter(|(_, t)| orphan(t))
            .map(|(p, t)| (RoutePrefix::V4(*p), t.clone()))
            .chain(
                self.builder
                    .dynamic_routes6()
                    .iter()
                    .filter(|(_, t)| orphan(t))
                    .map(|(p, t)| (RoutePrefix::V6(*p), t.clone())),
            )
            .collect();
        for (p, _) in &orphans {
            self.remove_dynamic(*p);
        }
        self.path_mtus.apply(&mut next);
        for name in &self.down {
            next.set_tunnel_down(name, true);
        }
        self.builder.adopt(next);
        match self.build() {
            Ok(snap) => {
                let generation = snap.generation();
                // A tunnel removed or changed forgets what the underlay said of the old one.
                self.path_mtus.retain_tunnels(&snap);
                self.snapshots.publish(snap);
                if !orphans.is_empty() {
                    for (p, _) in &orphans {
                        self.dynamic.remove(p);
                    }
                    log::info!(
                        "generation {generation}: {} route(s) from zebra withdrawn with the \
                         tunnel(s) they went into",
                        orphans.len()
                    );
                }
                self.ifaces = HostInterfaces::new(cfg, &self.ports);
                Ok(generation)
            }
            Err(e) => {
                // Put the running configuration back: nothing half-applied.
                self.builder
                    .adopt(builder_from_config(&self.cfg, &self.ports));
                for (&(port, ip), &mac) in &self.learned {
                    if !self.is_static_neighbor(port, ip) {
                        self.builder.neighbor(port, ip, mac);
                    }
                }
                for (&(port, ip), &mac) in &self.learned6 {
                    if !self.is_static_neighbor6(port, ip) {
                        self.builder.neighbor6(port, ip, mac);
                    }
                }
                for (p, t) in orphans {
                    self.set_dynamic(p, t);
                }
                self.path_mtus.apply(&mut self.builder);
                for name in &self.down {
                    self.builder.set_tunnel_down(name, true);
                }
                Err(e.to_string())
            }
        }
    }

    /// The host interface called `name`, where a route from a routing daemon may go out.
    pub fn host_interface(&self, name: &str) -> Option<&HostInterface> {
        self.ifaces.by_name.get(name)
    }

    /// Whether `ip` is one of our addresses (a port's, a tunnel link's).
    pub fn is_our_address(&self, ip: Ipv4Addr) -> bool {
        self.ifaces.ours.contains(&ip)
    }

    /// A routing daemon connected (again): the dynamic routes it sent before are stale
    /// until it sends them again ([`ControlState::remove_stale_dynamic`] removes the rest);
    /// returns the new connection's number.
    pub fn begin_dynamic_epoch(&mut self) -> u64 {
        self.dynamic_epoch += 1;
        self.dynamic_epoch
    }

    /// How many dynamic routes there are, and how many of them are stale.
    pub fn dynamic_counts(&self) -> (usize, usize) {
        let stale = self
            .dynamic
            .values()
            .filter(|m| m.epoch < self.dynamic_epoch)
            .count();
        (self.dynamic.len(), stale)
    }

    /// Apply frames of changes from a routing daemon to the dynamic layer, as one
    /// publication. Each frame is checked on its own (its targets exist, its next hops are
    /// not ours, no tunnel's remote is carried into a tunnel) and refused whole, or applied
    /// whole: a route moved by a removal and an addition in one frame is never missing.
    pub fn apply_dynamic(&mut self, frames: &[Vec<DynamicChange>]) -> DynamicApplied {
        type Undo = (RoutePrefix, Option<RouteTarget>, Option<DynamicMeta>);
        let epoch = self.dynamic_epoch;
        let mut out = DynamicApplied::default();
        let mut all: Vec<Undo> = Vec::new();
        let mut changed = false;
        for frame in frames {
            let mut undo: Vec<Undo> = Vec::with_capacity(frame.len());
            let mut counts = FrameApplied::default();
            let mut refused = None;
            for c in frame {
                if let Some(RouteTarget::Native { next_hop, .. }) =
                    c.route.as_ref().map(|r| &r.target)
                {
                    if self.is_our_address(*next_hop) {
                        refused = Some(format!(
                            "route {}: next hop {next_hop} is our own address",
                            c.prefix
                        ));
                        break;
                    }
                }
                let (old, meta) = match &c.route {
                    Some(r) => {
                        counts.added += 1;
                        (
                            self.set_dynamic(c.prefix, r.target.clone()),
                            self.dynamic.insert(
                                c.prefix,
                                DynamicMeta {
                                    protocol: r.protocol,
                                    epoch,
                                },
                            ),
                        )
                    }
                    None => {
                        let old = self.remove_dynamic(c.prefix);
                        if old.is_some() {
                            counts.removed += 1;
                        } else {
                            counts.unknown_removals += 1;
                        }
                        (old, self.dynamic.remove(&c.prefix))
                    }
                };
                undo.push((c.prefix, old, meta));
            }
            if refused.is_none() {
                let (mut v4, mut v6) = (Vec::new(), Vec::new());
                for c in frame {
                    match c.prefix {
                        RoutePrefix::V4(p) => v4.push(p),
                        RoutePrefix::V6(p) => v6.push(p),
                    }
                }
                refused = self
                    .builder
                    .check(&v4)
                    .and_then(|()| self.builder.check6(&v6))
                    .err()
                    .map(|e| e.to_string());
            }
            match refused {
                Some(e) => {
                    self.undo_dynamic(undo);
                    out.frames.push(Err(e));
                }
                None => {
                    changed |= !undo.is_empty();
                    all.extend(undo);
                    out.frames.push(Ok(counts));
                }
            }
        }
        if !changed {
            return out;
        }
        match self.build() {
            Ok(snap) => {
                out.generation = Some(snap.generation());
                self.snapshots.publish(snap);
            }
            Err(e) => {
                // Each frame was checked: together they should hold. Nothing applies if not.
                log::error!("routes from zebra refused together: {e}");
                self.undo_dynamic(all);
                for f in &mut out.frames {
                    if f.is_ok() {
                        *f = Err(format!("refused with the frames around it: {e}"));
                    }
                }
            }
        }
        out
    }

    /// Set the dynamic route for `p` in the builder; returns the one it replaces.
    fn set_dynamic(&mut self, p: RoutePrefix, t: RouteTarget) -> Option<RouteTarget> {
        match p {
            RoutePrefix::V4(p) => self.builder.dynamic_route(p, t),
            RoutePrefix::V6(p) => self.builder.dynamic_route6(p, t),
        }
    }

    /// Remove the dynamic route for `p` from the builder; returns it.
    fn remove_dynamic(&mut self, p: RoutePrefix) -> Option<RouteTarget> {
        match p {
            RoutePrefix::V4(p) => self.builder.remove_dynamic_route(p),
            RoutePrefix::V6(p) => self.builder.remove_dynamic_route6(p),
        }
    }

    fn undo_dynamic(&mut self, undo: Vec<(RoutePrefix, Option<RouteTarget>, Option<DynamicMeta>)>) {
        for (p, target, meta) in undo.into_iter().rev() {
            match target {
                Some(t) => {
                    self.set_dynamic(p, t);
                }
                None => {
                    self.remove_dynamic(p);
                }
            }
            match meta {
                Some(m) => {
                    self.dynamic.insert(p, m);
                }
                None => {
                    self.dynamic.remove(&p);
                }
            }
        }
    }

    /// Remove the dynamic routes the current connection has not sent again (one
    /// publication); returns how many went, and the generation without them.
    pub fn remove_stale_dynamic(&mut self) -> (usize, Option<u64>) {
        let stale: Vec<DynamicChange> = self
            .dynamic
            .iter()
            .filter(|(_, m)| m.epoch < self.dynamic_epoch)
            .map(|(&prefix, _)| DynamicChange {
                prefix,
                route: None,
            })
            .collect();
        if stale.is_empty() {
            return (0, None);
        }
        let n = stale.len();
        let done = self.apply_dynamic(&[stale]);
        match done.frames.first() {
            Some(Err(e)) => {
                log::error!("stale routes from zebra could not be removed: {e}");
                (0, None)
            }
            _ => (n, done.generation),
        }
    }

    fn port_name(&self, id: PortIndex) -> String {
        self.cfg
            .ports
            .iter()
            .zip(&self.ports)
            .find(|(_, &(pid, _))| pid == id)
            .map_or_else(|| id.to_string(), |(p, _)| p.name.clone())
    }

    /// The tunnels of the running snapshot.
    pub fn list_tunnels(&self) -> Value {
        let snap = self.snapshots.current();
        let now = Instant::now();
        Value::Array(
            snap.tunnels()
                .iter()
                .map(|(id, t)| {
                    let c = &t.config;
                    // IPv4 or IPv6 endpoints, as the tunnel has them.
                    let (local, remote, next_hop) = c.endpoints();
                    let path_mtu = t.path_mtu.and(self.path_mtus.get(&c.name)).map(|l| {
                        json!({"mtu": l.mtu, "reported": l.reported, "from": l.from.to_string(),
                               "expires_in_s": l.expires.saturating_duration_since(now).as_secs()})
                    });
                    json!({
                        "id": id.0, "name": c.name,
                        "mode": match c.mode { crate::tables::TunnelMode::Gre => "gre", crate::tables::TunnelMode::Ipip => "ipip" },
                        "local": local.to_string(), "remote": remote.to_string(), "key": c.key,
                        "sequence": c.sequence, "checksum": c.checksum, "port": self.port_name(c.egress_port),
                        "next_hop": next_hop.to_string(), "next_hop_mac": t.next_hop_mac.map(|m| m.to_string()),
                        "mtu": t.mtu, "configured_mtu": c.mtu, "path_mtu": path_mtu,
                        "prefixes": c.prefixes.iter().map(ToString::to_string)
                            .chain(c.prefixes6.iter().map(ToString::to_string)).collect::<Vec<_>>(),
                        "link6": c.link6.map(|l| l.to_string()),
                        "backup_of": c.backup_of,
                    })
                })
                .collect(),
        )
    }

    /// A route's target as the API shows it.
    fn route_json(&self, p: &impl std::fmt::Display, t: &RouteTarget) -> Value {
        match t {
            RouteTarget::Tunnel(name) => json!({"prefix": p.to_string(), "tunnel": name}),
            RouteTarget::Native { port, next_hop } => {
                json!({"prefix": p.to_string(), "port": self.port_name(*port), "next_hop": next_hop.to_string()})
            }
            RouteTarget::Connected { port, source } => {
                json!({"prefix": p.to_string(), "port": self.port_name(*port), "connected": true,
                       "arp_source": source.to_string()})
            }
            RouteTarget::Native6 { port, next_hop } => {
                json!({"prefix": p.to_string(), "port": self.port_name(*port), "next_hop": next_hop.to_string()})
            }
            RouteTarget::Blackhole => json!({"prefix": p.to_string(), "blackhole": true}),
            RouteTarget::Unreachable => json!({"prefix": p.to_string(), "unreachable": true}),
            RouteTarget::Prohibit => json!({"prefix": p.to_string(), "prohibit": true}),
        }
    }

    /// The explicit routes of the running configuration (tunnel prefixes are listed with
    /// their tunnels), each with its `source`: `"file"` (as the configuration was last
    /// loaded or saved) or `"api"` (set through the control API since, with the
    /// generation that set it).
    pub fn list_routes(&self) -> Value {
        Value::Array(
            self.builder
                .routes()
                .iter()
                .map(|(p, t)| {
                    let mut v = self.route_json(p, t);
                    let net = ipnet::Ipv4Net::new(p.addr(), p.prefix_len()).ok();
                    match net.and_then(|n| self.runtime_routes.get(&n)) {
                        Some(g) => {
                            v["source"] = json!("api");
                            v["set_in_generation"] = json!(g);
                        }
                        None => v["source"] = json!("file"),
                    }
                    v["distance"] = json!(RouteLayer::Static.distance());
                    v
                })
                .chain(self.builder.routes6().iter().map(|(p, t)| {
                    // Changed with the whole configuration only.
                    let mut v = self.route_json(p, t);
                    v["source"] = json!("file");
                    v["distance"] = json!(RouteLayer::Static.distance());
                    v
                }))
                .collect(),
        )
    }

    /// The routes from zebra (the dynamic layer), each with `source` `"frr"`, the
    /// `protocol` that chose it in zebra, whether it is `active` (a tunnel's prefix or a
    /// configured route for the same prefix shadows it: `shadowed_by` says which) and
    /// whether it is `stale` (sent over an earlier connection, not yet again).
    pub fn list_dynamic_routes(&self) -> Vec<Value> {
        let v4 = self
            .builder
            .dynamic_routes()
            .iter()
            .map(|(p, t)| (RoutePrefix::V4(*p), t, self.builder.installed_layer(*p)));
        let v6 = self
            .builder
            .dynamic_routes6()
            .iter()
            .map(|(p, t)| (RoutePrefix::V6(*p), t, self.builder.installed_layer6(*p)));
        v4.chain(v6)
            .map(|(p, t, layer)| {
                let mut v = self.route_json(&p, t);
                let meta = self.dynamic.get(&p);
                v["source"] = json!("frr");
                v["protocol"] = json!(super::fpm::protocol_name(meta.map_or(0, |m| m.protocol)));
                v["distance"] = json!(RouteLayer::Dynamic.distance());
                v["stale"] = json!(meta.is_some_and(|m| m.epoch < self.dynamic_epoch));
                match layer {
                    Some(RouteLayer::Dynamic) => v["active"] = json!(true),
                    Some(layer) => {
                        v["active"] = json!(false);
                        v["shadowed_by"] = json!(match layer {
                            RouteLayer::Tunnel => "tunnel",
                            _ => "route",
                        });
                    }
                    None => v["active"] = json!(false),
                }
                v
            })
            .collect()
    }

    /// Every route: the explicit ones (as [`ControlState::list_routes`]), zebra's (as
    /// [`ControlState::list_dynamic_routes`]) and each tunnel's prefixes (source
    /// `"tunnel"`), sorted by prefix (then by distance); routes into tunnels carry the
    /// tunnel's underlay next hop, its port and whether its MAC is known.
    pub fn list_all_routes(&self) -> Value {
        let mut all = match self.list_routes() {
            Value::Array(v) => v,
            _ => Vec::new(),
        };
        all.extend(self.list_dynamic_routes());
        let snap = self.snapshots.current();
        let tunnels: HashMap<&str, _> = snap
            .tunnels()
            .iter()
            .map(|(_, t)| (t.config.name.as_str(), t))
            .collect();
        for (_, t) in snap.tunnels().iter() {
            // A tunnel that falls back routes its prefixes only while up, and not at all
            // when its client's BGP session routes them: listed, and said why.
            let not_routed = match (t.config.routes_its_prefixes(), t.config.bgp) {
                (true, _) => None,
                (false, true) => Some("its client's BGP session routes it"),
                (false, false) => Some("the tunnel is down and falls back"),
            };
            for p in &t.config.prefixes {
                let mut r = json!({"prefix": p.to_string(), "tunnel": t.config.name,
                                   "source": "tunnel", "distance": RouteLayer::Tunnel.distance()});
                // Down, its prefix is carried by a backup tunnel: listed as well.
                let backup = self
                    .builder
                    .tunnel_route(*p)
                    .filter(|b| b.name != t.config.name);
                if let Some(b) = backup {
                    r["not_routed"] = json!(format!(
                        "the tunnel is down; its backup {} carries it",
                        b.name
                    ));
                    all.push(json!({"prefix": p.to_string(), "tunnel": b.name,
                                    "source": format!("tunnel (backup of {})", t.config.name),
                                    "distance": RouteLayer::Tunnel.distance()}));
                } else if let Some(why) = not_routed {
                    r["not_routed"] = json!(why);
                }
                all.push(r);
            }
            for p in &t.config.prefixes6 {
                let mut r = json!({"prefix": p.to_string(), "tunnel": t.config.name,
                                   "source": "tunnel", "distance": RouteLayer::Tunnel.distance()});
                if !t.config.routes_its_prefixes6() {
                    r["not_routed"] = json!("the tunnel is down and falls back");
                }
                all.push(r);
            }
        }
        for r in &mut all {
            let Some(t) = r["tunnel"].as_str().and_then(|n| tunnels.get(n)) else {
                continue;
            };
            r["next_hop"] = json!(t.config.endpoints().2.to_string());
            r["port"] = json!(self.port_name(t.config.egress_port));
            r["resolved"] = json!(t.next_hop_mac.is_some());
        }
        // IPv4 before IPv6, each by address and length.
        all.sort_by_key(|r| {
            let net = r["prefix"]
                .as_str()
                .and_then(|p| p.parse::<ipnet::IpNet>().ok())
                .map(|n| match n {
                    ipnet::IpNet::V4(n) => (4, u128::from(u32::from(n.network())), n.prefix_len()),
                    ipnet::IpNet::V6(n) => (6, u128::from(n.network()), n.prefix_len()),
                });
            (net, r["distance"].as_u64())
        });
        Value::Array(all)
    }

    /// The installed route that decides `dst`: the longest prefix routed by any layer, and
    /// the layer of least distance for it; `None` when no route holds it.
    fn installed_route(&self, dst: Ipv4Addr) -> Option<(Ipv4Prefix, RouteLayer, RouteTarget)> {
        (0..=32u8).rev().find_map(|len| {
            let p = Ipv4Prefix::truncating(dst, len).ok()?;
            // Routed into its tunnel, or into a backup while that one is down.
            if let Some(t) = self.builder.tunnel_route(p) {
                return Some((p, RouteLayer::Tunnel, RouteTarget::Tunnel(t.name.clone())));
            }
            if let Some(t) = self.builder.routes().get(&p) {
                return Some((p, RouteLayer::Static, t.clone()));
            }
            self.builder
                .dynamic_routes()
                .get(&p)
                .map(|t| (p, RouteLayer::Dynamic, t.clone()))
        })
    }

    /// The route that decides `dst`: the longest prefix, explicit, zebra's or a tunnel's,
    /// that holds it, with what it does; `None` when no route holds it.
    fn matching_route(&self, dst: Ipv4Addr) -> Option<Value> {
        let (p, layer, t) = self.installed_route(dst)?;
        let what = match &t {
            RouteTarget::Tunnel(_) => "tunnel",
            RouteTarget::Native { .. } | RouteTarget::Native6 { .. } => "native",
            RouteTarget::Connected { .. } => "connected",
            RouteTarget::Blackhole => "blackhole",
            RouteTarget::Unreachable => "unreachable",
            RouteTarget::Prohibit => "prohibit",
        };
        Some(match (layer, t) {
            (RouteLayer::Tunnel, RouteTarget::Tunnel(name)) => {
                json!({"prefix": p.to_string(), "kind": "tunnel", "source": "tunnel", "tunnel": name})
            }
            (RouteLayer::Dynamic, _) => {
                let protocol = self
                    .dynamic
                    .get(&RoutePrefix::V4(p))
                    .map_or(0, |m| m.protocol);
                json!({"prefix": p.to_string(), "kind": what, "source": "frr",
                       "protocol": super::fpm::protocol_name(protocol)})
            }
            _ => json!({"prefix": p.to_string(), "kind": what, "source": "route"}),
        })
    }

    /// The neighbours (static and learned).
    /// `on_demand`: learned on a connected subnet (no configured next hop), resolved by ARP
    /// on demand and forgotten when it stops answering (control/ondemand.rs).
    pub fn list_neighbors(&self) -> Value {
        let snap = self.snapshots.current();
        let mut v: Vec<_> = self.builder.neighbors().iter().collect();
        v.sort_by_key(|((p, ip), _)| (*p, *ip));
        Value::Array(
            v.into_iter()
                .map(|(&(port, ip), mac)| {
                    let fixed = self.is_static_neighbor(port, ip);
                    let on_demand = !fixed
                        && !snap.wants_neighbor(port, ip)
                        && snap.on_link(port, ip).is_some();
                    json!({"port": self.port_name(port), "ip": ip.to_string(), "mac": mac.to_string(),
                           "static": fixed, "on_demand": on_demand})
                })
                .chain(self.ipv6_neighbors())
                .collect(),
        )
    }

    /// The IPv6 neighbours: static ones (`[[port.neighbor]]` with an IPv6 `ip`) and next
    /// hops learned by Neighbor Discovery.
    fn ipv6_neighbors(&self) -> Vec<Value> {
        let mut v: Vec<_> = self.builder.neighbors6().iter().collect();
        v.sort_by_key(|((p, ip), _)| (*p, *ip));
        v.into_iter()
            .map(|(&(port, ip), mac)| {
                json!({"port": self.port_name(port), "ip": ip.to_string(), "mac": mac.to_string(),
                       "static": self.is_static_neighbor6(port, ip), "on_demand": false})
            })
            .collect()
    }

    /// The next hop of the IPv6 `port` route that holds `dst` (the longest).
    fn native_next_hop6(&self, dst: std::net::Ipv6Addr) -> Option<String> {
        (0..=128u8).rev().find_map(|len| {
            let p = crate::lpm::Ipv6Prefix::truncating(dst, len).ok()?;
            match self.builder.routes6().get(&p) {
                Some(RouteTarget::Native6 { next_hop, .. }) => Some(next_hop.to_string()),
                _ => None,
            }
        })
    }

    /// Where the running snapshot sends a destination (`via`), and the route that
    /// decides it (`route`: its prefix and kind; absent when no route holds the address).
    /// A blackhole route and a missing route both drop as `no_route`; `via` says which:
    /// `{"blackhole": true, "no_route": true}` or `{"no_route": true}`.
    pub fn lookup(&self, dst: Ipv4Addr) -> Value {
        let snap = self.snapshots.current();
        let target = snap.routes().lookup(dst).map(|nh| snap.target(nh));
        let what = match target {
            None => json!({"no_route": true}),
            Some(Target::Blackhole) => json!({"no_route": true, "blackhole": true}),
            Some(Target::Unreachable) => json!({"no_route": true, "unreachable": true}),
            Some(Target::Prohibit) => json!({"no_route": true, "prohibit": true}),
            Some(Target::Tunnel(id)) => self.via_tunnel(snap, id),
            Some(Target::Native { port, dst_mac, .. }) => {
                let next_hop = self.native_next_hop(dst);
                json!({"port": self.port_name(port), "next_hop": next_hop,
                       "next_hop_mac": dst_mac.map(|m| m.to_string())})
            }
            // On a connected subnet the destination is its own next hop.
            Some(Target::Connected { port, source, .. }) => {
                json!({"port": self.port_name(port), "next_hop": dst.to_string(),
                       "connected": true, "arp_source": source.to_string(),
                       "next_hop_mac": snap.neighbor(port, dst).map(|m| m.to_string())})
            }
        };
        let mut answer =
            json!({"dst": dst.to_string(), "generation": snap.generation(), "via": what});
        if let Some(r) = self.matching_route(dst) {
            answer["route"] = r;
        }
        answer
    }

    /// `via` for a route into the tunnel `id`: the tunnel, its next hop and the way there.
    fn via_tunnel(&self, snap: &Snapshot, id: crate::tables::TunnelId) -> Value {
        match snap.tunnels().get(id) {
            Some(t) => json!({"tunnel": t.config.name,
                              "next_hop": t.config.endpoints().2.to_string(),
                              "port": self.port_name(t.config.egress_port),
                              "next_hop_mac": t.next_hop_mac.map(|m| m.to_string())}),
            None => json!({"no_route": true}),
        }
    }

    /// [`ControlState::lookup`] for an IPv6 destination: the IPv6 routes and the tunnels'
    /// IPv6 prefixes.
    pub fn lookup6(&self, dst: std::net::Ipv6Addr) -> Value {
        let snap = self.snapshots.current();
        let target = snap.routes6().lookup(dst).map(|nh| snap.target6(nh));
        let what = match target {
            None => json!({"no_route": true}),
            Some(Target::Native { port, dst_mac, .. }) => {
                json!({"port": self.port_name(port), "next_hop": self.native_next_hop6(dst),
                       "next_hop_mac": dst_mac.map(|m| m.to_string())})
            }
            Some(Target::Blackhole | Target::Connected { .. }) => {
                json!({"no_route": true, "blackhole": true})
            }
            Some(Target::Unreachable) => json!({"no_route": true, "unreachable": true}),
            Some(Target::Prohibit) => json!({"no_route": true, "prohibit": true}),
            Some(Target::Tunnel(id)) => self.via_tunnel(snap, id),
        };
        let mut answer =
            json!({"dst": dst.to_string(), "generation": snap.generation(), "via": what});
        // The longest prefix that holds it: a tunnel's (routed), a route or zebra's.
        let route = (0..=128u8).rev().find_map(|len| {
            let p = crate::lpm::Ipv6Prefix::truncating(dst, len).ok()?;
            if let Some(t) = self
                .builder
                .tunnels()
                .iter()
                .find(|t| t.routes_its_prefixes6() && t.prefixes6.contains(&p))
            {
                return Some(json!({"prefix": p.to_string(), "kind": "tunnel",
                                   "source": "tunnel", "tunnel": t.name}));
            }
            let kind = |t: &RouteTarget| match t {
                RouteTarget::Tunnel(_) => "tunnel",
                RouteTarget::Native { .. } | RouteTarget::Native6 { .. } => "native",
                RouteTarget::Connected { .. } => "connected",
                RouteTarget::Blackhole => "blackhole",
                RouteTarget::Unreachable => "unreachable",
                RouteTarget::Prohibit => "prohibit",
            };
            if let Some(t) = self.builder.routes6().get(&p) {
                return Some(json!({"prefix": p.to_string(), "kind": kind(t), "source": "route"}));
            }
            self.builder.dynamic_routes6().get(&p).map(|t| {
                let protocol = self
                    .dynamic
                    .get(&RoutePrefix::V6(p))
                    .map_or(0, |m| m.protocol);
                json!({"prefix": p.to_string(), "kind": kind(t), "source": "frr",
                       "protocol": super::fpm::protocol_name(protocol)})
            })
        });
        if let Some(r) = route {
            answer["route"] = r;
        }
        answer
    }

    /// The next hop of the native route that holds `dst`.
    fn native_next_hop(&self, dst: Ipv4Addr) -> Option<String> {
        match self.installed_route(dst)? {
            (_, _, RouteTarget::Native { next_hop, .. }) => Some(next_hop.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod ipv6_tests {
    use super::*;
    use crate::wire::EthernetAddress;
    use pipeline_config::ConfigDocument;
    use serde_json::json;

    const LAB: &str = r#"
        [[port]]
        name = "client0"
        device = "0"
        roles = ["client"]
        addresses = ["192.0.2.1"]
        [[tunnel]]
        name = "acme"
        mode = "gre"
        key = 100
        local = "192.0.2.1"
        remote = "198.51.100.10"
        port = "client0"
        prefixes = ["10.1.0.0/16", "2001:db8:1::/48"]
        link6 = "fd00:1::1/127"
        [[tunnel]]
        name = "globex"
        mode = "ipip"
        local = "192.0.2.1"
        remote = "198.51.100.20"
        port = "client0"
        prefixes = ["10.2.0.0/16"]
        [[route]]
        prefix = "2001:db8:ff::/48"
        tunnel = "globex"
        [[route]]
        prefix = "2001:db8:71::/48"
        prohibit = true
    "#;

    /// LAB and a port with an IPv6 address, a static IPv6 neighbour and a native IPv6
    /// route through it.
    const LAB_NATIVE: &str = r#"
        [[port]]
        name = "inet0"
        device = "1"
        roles = ["internet"]
        addresses = ["203.0.113.1", "2001:db8:100::1"]
        [[port.neighbor]]
        ip = "2001:db8:100::fe"
        mac = "02:00:00:00:bb:01"
        [[route]]
        prefix = "2001:db8:200::/48"
        port = "inet0"
        next_hop = "2001:db8:100::fe"
    "#;

    fn state() -> ControlState {
        let (doc, cfg) = ConfigDocument::parse(LAB, "lab.toml").unwrap();
        ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap()
    }

    #[test]
    fn native_ipv6_routes_and_neighbours_are_shown() {
        // Ports come first in the file: insert inet0 after client0's table.
        let text = LAB.replacen("[[tunnel]]", &format!("{LAB_NATIVE}\n[[tunnel]]"), 1);
        let (doc, cfg) = ConfigDocument::parse(&text, "lab.toml").unwrap();
        let st = ControlState::new(
            doc,
            cfg,
            vec![
                (0, EthernetAddress([2, 0, 0, 0, 0, 1])),
                (1, EthernetAddress([2, 0, 0, 0, 1, 1])),
            ],
        )
        .unwrap();
        let (via_, route) = via(&st, "2001:db8:200::5");
        assert_eq!(
            via_,
            json!({"port": "inet0", "next_hop": "2001:db8:100::fe",
                   "next_hop_mac": "02:00:00:00:bb:01"})
        );
        assert_eq!(route["kind"], "native");
        let n = st.list_neighbors();
        assert!(
            n.as_array()
                .unwrap()
                .iter()
                .any(|e| e["ip"] == "2001:db8:100::fe"
                    && e["mac"] == "02:00:00:00:bb:01"
                    && e["static"] == true),
            "{n}"
        );
    }

    /// A tunnel between IPv6 endpoints: `ctl tunnels` shows its IPv6 local, remote and
    /// next hop, and `ctl lookup` the IPv6 next hop a packet into it goes to.
    #[test]
    fn tunnels_and_lookup_show_ipv6_endpoints() {
        let text = LAB
            .replacen(
                "addresses = [\"192.0.2.1\"]",
                "addresses = [\"192.0.2.1\", \"2001:db8:a::1\"]\n\
                 [[port.neighbor]]\nip = \"2001:db8:a::fe\"\nmac = \"02:00:00:00:bb:fe\"",
                1,
            )
            .replacen(
                "local = \"192.0.2.1\"\n        remote = \"198.51.100.20\"",
                "local = \"2001:db8:a::1\"\n        remote = \"2001:db8:b::20\"\n        \
                 next_hop = \"2001:db8:a::fe\"",
                1,
            );
        assert!(text.contains("2001:db8:b::20"), "{text}");
        let (doc, cfg) = ConfigDocument::parse(&text, "lab.toml").unwrap();
        let st =
            ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap();
        let list = st.list_tunnels();
        let globex = list["tunnels"]
            .as_array()
            .or(list.as_array())
            .and_then(|a| a.iter().find(|t| t["name"] == "globex"))
            .cloned()
            .unwrap_or_else(|| panic!("{list}"));
        assert_eq!(globex["local"], "2001:db8:a::1", "{globex}");
        assert_eq!(globex["remote"], "2001:db8:b::20", "{globex}");
        assert_eq!(globex["next_hop"], "2001:db8:a::fe", "{globex}");
        assert_eq!(globex["next_hop_mac"], "02:00:00:00:bb:fe", "{globex}");
        let a = st.lookup("10.2.0.9".parse().unwrap());
        assert_eq!(a["via"]["tunnel"], "globex", "{a}");
        assert_eq!(a["via"]["next_hop"], "2001:db8:a::fe", "{a}");
    }

    /// The control API's `add_tunnel` takes IPv6 endpoints (the file's validation): a
    /// mix of families is refused naming the field, and nothing changes.
    #[test]
    fn add_tunnel_takes_ipv6_endpoints() {
        let text = LAB.replacen(
            "addresses = [\"192.0.2.1\"]",
            "addresses = [\"192.0.2.1\", \"2001:db8:a::1\"]",
            1,
        );
        let (doc, cfg) = ConfigDocument::parse(&text, "lab.toml").unwrap();
        let mut st =
            ControlState::new(doc, cfg, vec![(0, EthernetAddress([2, 0, 0, 0, 0, 1]))]).unwrap();
        let tunnel = |remote: &str| {
            json!({"op": "add_tunnel", "tunnel": {"name": "v6", "mode": "gre",
                   "local": "2001:db8:a::1", "remote": remote, "port": "client0",
                   "prefixes": ["10.7.0.0/16"]}})
        };
        let before = st.list_tunnels();
        let err = st.apply(&[tunnel("198.51.100.70")]).unwrap_err();
        assert!(
            err.contains(".remote") && err.contains("is an IPv4 address but local"),
            "{err}"
        );
        assert_eq!(st.list_tunnels(), before, "nothing half-applied");
        st.apply(&[tunnel("2001:db8:b::70")]).unwrap();
        let t = st.config().tunnels.iter().find(|t| t.name == "v6").unwrap();
        assert_eq!(t.outer6.unwrap().remote.to_string(), "2001:db8:b::70");
    }

    fn via(st: &ControlState, dst: &str) -> (Value, Value) {
        let a = st.lookup6(dst.parse().unwrap());
        assert_eq!(a["dst"], dst, "{a}");
        (a["via"].clone(), a["route"].clone())
    }

    #[test]
    fn lookup_and_routes_show_ipv6() {
        let mut st = state();
        let (v, r) = via(&st, "2001:db8:1::5");
        assert_eq!(v["tunnel"], "acme", "{v}");
        assert_eq!(
            r,
            json!({"prefix": "2001:db8:1::/48", "kind": "tunnel",
                             "source": "tunnel", "tunnel": "acme"})
        );
        let (v, r) = via(&st, "2001:db8:ff::1");
        assert_eq!(v["tunnel"], "globex", "{v}");
        assert_eq!(r["source"], "route", "{r}");
        let (v, _) = via(&st, "2001:db8:71::1");
        assert_eq!(v, json!({"no_route": true, "prohibit": true}));
        let (v, r) = via(&st, "2001:db8:99::1");
        assert_eq!(v, json!({"no_route": true}));
        assert!(r.is_null(), "{r}");

        let all = st.list_all_routes();
        let find = |p: &str| {
            all.as_array()
                .unwrap()
                .iter()
                .find(|r| r["prefix"] == p)
                .cloned()
                .unwrap_or_else(|| panic!("no {p} in {all}"))
        };
        assert_eq!(find("2001:db8:1::/48")["source"], "tunnel");
        assert_eq!(find("2001:db8:ff::/48")["tunnel"], "globex");
        assert_eq!(find("2001:db8:71::/48")["prohibit"], true);
        // IPv4 first, then IPv6, each in address order.
        let prefixes: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["prefix"].as_str())
            .collect();
        assert_eq!(
            prefixes,
            [
                "10.1.0.0/16",
                "10.2.0.0/16",
                "2001:db8:1::/48",
                "2001:db8:71::/48",
                "2001:db8:ff::/48"
            ]
        );

        // Changes through the API: an IPv6 route set and one removed, and an IPv4 one
        // beside them, each validated with the whole document.
        st.apply(&[
            json!({"op": "set_route", "route": {"prefix": "2001:db8:aa::/48", "tunnel": "acme"}}),
            json!({"op": "remove_route", "prefix": "2001:db8:ff::/48"}),
        ])
        .unwrap();
        assert_eq!(via(&st, "2001:db8:aa::1").0["tunnel"], "acme");
        assert_eq!(via(&st, "2001:db8:ff::1").0, json!({"no_route": true}));
        st.apply(&[json!({"op": "set_route",
                          "route": {"prefix": "10.60.0.0/16", "blackhole": true}})])
            .unwrap();
        assert_eq!(
            st.lookup("10.60.0.1".parse().unwrap())["via"],
            json!({"no_route": true, "blackhole": true})
        );
        // Replacing an IPv6 route keeps one route for the prefix; a bad one is refused
        // with the field named, and nothing changes.
        st.apply(&[json!({"op": "set_route",
                          "route": {"prefix": "2001:db8:aa::/48", "blackhole": true}})])
            .unwrap();
        assert_eq!(
            via(&st, "2001:db8:aa::1").0,
            json!({"no_route": true, "blackhole": true})
        );
        let err = st
            .apply(&[json!({"op": "set_route",
                            "route": {"prefix": "2001:db8:bb::/48", "port": "client0",
                                      "next_hop": "192.0.2.9"}})])
            .unwrap_err();
        assert!(
            err.contains(".next_hop") && err.contains("is not an IPv6 address"),
            "{err}"
        );
        assert_eq!(via(&st, "2001:db8:bb::1").0, json!({"no_route": true}));
    }
}
