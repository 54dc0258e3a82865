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
use crate::config::builder_from_config;
use crate::lpm::Ipv4Prefix;
use crate::pipeline::PathMtuReport;
use crate::tables::{PortIndex, Publisher, Reader, RouteTarget, Snapshot, SnapshotBuilder, Target};
use crate::wire::EthernetAddress;
use core::net::Ipv4Addr;
use pipeline_config::{ConfigDocument, Difference, ValidatedConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
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
            let mut b = (*b).clone();
            b.neighbors.clone_from(&a.neighbors);
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
    snapshots: Publisher<Snapshot>,
    /// The configuration file the appliance runs from (`ctl save`, `ctl diff`, SIGHUP).
    file: Option<PathBuf>,
    /// Routes set through the API since the configuration was last loaded or saved, with
    /// the generation that set them: their source in `list_routes`.
    runtime_routes: HashMap<ipnet::Ipv4Net, u64>,
    /// Path MTUs the underlay reported for the tunnels (not configuration: kept across
    /// changes while the tunnel stays the same, and never saved).
    path_mtus: PathMtus,
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
        let mut builder = builder_from_config(&cfg, &ports);
        let first = builder.build().map_err(|e| e.to_string())?;
        Ok(ControlState {
            doc,
            cfg,
            ports,
            builder,
            learned: HashMap::new(),
            snapshots: Publisher::new(first),
            file: None,
            runtime_routes: HashMap::new(),
            path_mtus: PathMtus::default(),
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
    /// `{"op":"remove_neighbor","port":N,"ip":I}`, `{"op":"apply_config","path":F}` (a whole
    /// new file; ports, EAL arguments and workers must stay as they are).
    pub fn apply(&mut self, ops: &[Value]) -> Result<u64, String> {
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
        self.doc = doc;
        self.cfg = cfg;
        self.note_route_sources(ops, generation);
        Ok(generation)
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

    /// Install neighbours learned by ARP (one publication for all); static ones win.
    pub fn learn(
        &mut self,
        entries: &[(PortIndex, Ipv4Addr, EthernetAddress)],
    ) -> Result<u64, String> {
        for &(port, ip, mac) in entries {
            self.learned.insert((port, ip), mac);
        }
        let cfg = self.cfg.clone();
        self.publish(&cfg)
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
    /// tunnel's MTU); returns what became of each, and the generation published, if any.
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
        let cfg = self.cfg.clone();
        let generation = self.publish(&cfg)?;
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
        let cfg = self.cfg.clone();
        let generation = self.publish(&cfg)?;
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

    /// The path MTUs in force.
    pub fn path_mtus(&self) -> &PathMtus {
        &self.path_mtus
    }

    fn publish(&mut self, cfg: &ValidatedConfig) -> Result<u64, String> {
        let mut next = builder_from_config(cfg, &self.ports);
        for (&(port, ip), &mac) in &self.learned {
            if !self.is_static_neighbor(port, ip) {
                next.neighbor(port, ip, mac);
            }
        }
        self.path_mtus.apply(&mut next);
        self.builder.adopt(next);
        match self.builder.build() {
            Ok(snap) => {
                let generation = snap.generation();
                // A tunnel removed or changed forgets what the underlay said of the old one.
                self.path_mtus.retain_tunnels(&snap);
                self.snapshots.publish(snap);
                Ok(generation)
            }
            Err(e) => {
                // Put the running configuration back: nothing half-applied.
                self.builder
                    .adopt(builder_from_config(&self.cfg, &self.ports));
                for (&(port, ip), &mac) in &self.learned {
                    self.builder.neighbor(port, ip, mac);
                }
                self.path_mtus.apply(&mut self.builder);
                Err(e.to_string())
            }
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
                    let path_mtu = t.path_mtu.and(self.path_mtus.get(&c.name)).map(|l| {
                        json!({"mtu": l.mtu, "reported": l.reported, "from": l.from.to_string(),
                               "expires_in_s": l.expires.saturating_duration_since(now).as_secs()})
                    });
                    json!({
                        "id": id.0, "name": c.name,
                        "mode": match c.mode { crate::tables::TunnelMode::Gre => "gre", crate::tables::TunnelMode::Ipip => "ipip" },
                        "local": c.local.to_string(), "remote": c.remote.to_string(), "key": c.key,
                        "sequence": c.sequence, "checksum": c.checksum, "port": self.port_name(c.egress_port),
                        "next_hop": c.next_hop.to_string(), "next_hop_mac": t.next_hop_mac.map(|m| m.to_string()),
                        "mtu": t.mtu, "configured_mtu": c.mtu, "path_mtu": path_mtu,
                        "prefixes": c.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
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
                    let mut v = match t {
                        RouteTarget::Tunnel(name) => json!({"prefix": p.to_string(), "tunnel": name}),
                        RouteTarget::Native { port, next_hop } => {
                            json!({"prefix": p.to_string(), "port": self.port_name(*port), "next_hop": next_hop.to_string()})
                        }
                        RouteTarget::Blackhole => json!({"prefix": p.to_string(), "blackhole": true}),
                        RouteTarget::Unreachable => {
                            json!({"prefix": p.to_string(), "unreachable": true})
                        }
                        RouteTarget::Prohibit => json!({"prefix": p.to_string(), "prohibit": true}),
                    };
                    let net = ipnet::Ipv4Net::new(p.addr(), p.prefix_len()).ok();
                    match net.and_then(|n| self.runtime_routes.get(&n)) {
                        Some(g) => {
                            v["source"] = json!("api");
                            v["set_in_generation"] = json!(g);
                        }
                        None => v["source"] = json!("file"),
                    }
                    v
                })
                .collect(),
        )
    }

    /// Every route the lookup uses: the explicit ones (as [`ControlState::list_routes`])
    /// and each tunnel's prefixes (source `"tunnel"`), sorted by prefix; tunnel routes
    /// carry the tunnel's underlay next hop, its port and whether its MAC is known.
    pub fn list_all_routes(&self) -> Value {
        let mut all = match self.list_routes() {
            Value::Array(v) => v,
            _ => Vec::new(),
        };
        let snap = self.snapshots.current();
        let tunnels: HashMap<&str, _> = snap
            .tunnels()
            .iter()
            .map(|(_, t)| (t.config.name.as_str(), t))
            .collect();
        for (_, t) in snap.tunnels().iter() {
            for p in &t.config.prefixes {
                all.push(
                    json!({"prefix": p.to_string(), "tunnel": t.config.name, "source": "tunnel"}),
                );
            }
        }
        for r in &mut all {
            let Some(t) = r["tunnel"].as_str().and_then(|n| tunnels.get(n)) else {
                continue;
            };
            r["next_hop"] = json!(t.config.next_hop.to_string());
            r["port"] = json!(self.port_name(t.config.egress_port));
            r["resolved"] = json!(t.next_hop_mac.is_some());
        }
        all.sort_by_key(|r| {
            r["prefix"]
                .as_str()
                .and_then(|p| p.parse::<ipnet::Ipv4Net>().ok())
                .map(|n| (u32::from(n.network()), n.prefix_len()))
        });
        Value::Array(all)
    }

    /// The route that decides `dst`: the longest prefix, explicit or a tunnel's, that
    /// holds it, with what it does; `None` when no route holds it.
    fn matching_route(&self, dst: Ipv4Addr) -> Option<Value> {
        let routes = self.builder.routes();
        let tunnel_prefixes: HashMap<Ipv4Prefix, &str> = self
            .builder
            .tunnels()
            .iter()
            .flat_map(|t| t.prefixes.iter().map(move |p| (*p, t.name.as_str())))
            .collect();
        (0..=32u8).rev().find_map(|len| {
            let p = Ipv4Prefix::truncating(dst, len).ok()?;
            if let Some(t) = routes.get(&p) {
                let what = match t {
                    RouteTarget::Tunnel(_) => "tunnel",
                    RouteTarget::Native { .. } => "native",
                    RouteTarget::Blackhole => "blackhole",
                    RouteTarget::Unreachable => "unreachable",
                    RouteTarget::Prohibit => "prohibit",
                };
                return Some(json!({"prefix": p.to_string(), "kind": what, "source": "route"}));
            }
            tunnel_prefixes.get(&p).map(|name| {
                json!({"prefix": p.to_string(), "kind": "tunnel", "source": "tunnel", "tunnel": name})
            })
        })
    }

    /// The neighbours (static and learned).
    pub fn list_neighbors(&self) -> Value {
        let mut v: Vec<_> = self.builder.neighbors().iter().collect();
        v.sort_by_key(|((p, ip), _)| (*p, *ip));
        Value::Array(
            v.into_iter()
                .map(|(&(port, ip), mac)| {
                    json!({"port": self.port_name(port), "ip": ip.to_string(), "mac": mac.to_string(),
                           "static": self.is_static_neighbor(port, ip)})
                })
                .collect(),
        )
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
            Some(Target::Tunnel(id)) => match snap.tunnels().get(id) {
                Some(t) => json!({"tunnel": t.config.name,
                                  "next_hop": t.config.next_hop.to_string(),
                                  "port": self.port_name(t.config.egress_port),
                                  "next_hop_mac": t.next_hop_mac.map(|m| m.to_string())}),
                None => json!({"no_route": true}),
            },
            Some(Target::Native { port, dst_mac, .. }) => {
                let next_hop = self.native_next_hop(dst);
                json!({"port": self.port_name(port), "next_hop": next_hop,
                       "next_hop_mac": dst_mac.map(|m| m.to_string())})
            }
        };
        let mut answer =
            json!({"dst": dst.to_string(), "generation": snap.generation(), "via": what});
        if let Some(r) = self.matching_route(dst) {
            answer["route"] = r;
        }
        answer
    }

    /// The next hop of the native route that holds `dst`.
    fn native_next_hop(&self, dst: Ipv4Addr) -> Option<String> {
        let routes = self.builder.routes();
        (0..=32u8).rev().find_map(|len| {
            let p = Ipv4Prefix::truncating(dst, len).ok()?;
            match routes.get(&p) {
                Some(RouteTarget::Native { next_hop, .. }) => Some(next_hop.to_string()),
                _ => None,
            }
        })
    }
}
