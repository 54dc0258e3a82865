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

use crate::config::builder_from_config;
use crate::tables::{PortIndex, Publisher, Reader, RouteTarget, Snapshot, SnapshotBuilder, Target};
use crate::wire::EthernetAddress;
use core::net::Ipv4Addr;
use pipeline_config::{ConfigDocument, ValidatedConfig};
use serde_json::{json, Value};
use std::collections::HashMap;

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
        })
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
            let at = |e: String| {
                if ops.len() > 1 {
                    format!("change {i}: {e}")
                } else {
                    e
                }
            };
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
                    if new_cfg.ports != self.cfg.ports
                        || new_cfg.eal_args != self.cfg.eal_args
                        || new_cfg.worker_lcores != self.cfg.worker_lcores
                    {
                        return Err(at(format!(
                            "{path}: ports, [eal] and [workers] cannot change while running (restart for that)"
                        )));
                    }
                    doc = new_doc;
                    Ok(())
                }
                other => return Err(at(format!("unknown change {other:?}"))),
            };
            r.map_err(|e| at(e.to_string()))?;
        }
        let cfg = doc.validate().map_err(|e| e.to_string())?;
        let generation = self.publish(&cfg)?;
        self.doc = doc;
        self.cfg = cfg;
        Ok(generation)
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

    fn publish(&mut self, cfg: &ValidatedConfig) -> Result<u64, String> {
        let mut next = builder_from_config(cfg, &self.ports);
        for (&(port, ip), &mac) in &self.learned {
            if !self.is_static_neighbor(port, ip) {
                next.neighbor(port, ip, mac);
            }
        }
        self.builder.adopt(next);
        match self.builder.build() {
            Ok(snap) => {
                let generation = snap.generation();
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
        Value::Array(
            snap.tunnels()
                .iter()
                .map(|(id, t)| {
                    let c = &t.config;
                    json!({
                        "id": id.0, "name": c.name,
                        "mode": match c.mode { crate::tables::TunnelMode::Gre => "gre", crate::tables::TunnelMode::Ipip => "ipip" },
                        "local": c.local.to_string(), "remote": c.remote.to_string(), "key": c.key,
                        "sequence": c.sequence, "checksum": c.checksum, "port": self.port_name(c.egress_port),
                        "next_hop": c.next_hop.to_string(), "next_hop_mac": t.next_hop_mac.map(|m| m.to_string()),
                        "mtu": t.mtu, "prefixes": c.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    /// The explicit routes of the running configuration (tunnel prefixes are listed with
    /// their tunnels).
    pub fn list_routes(&self) -> Value {
        Value::Array(
            self.builder
                .routes()
                .iter()
                .map(|(p, t)| match t {
                    RouteTarget::Tunnel(name) => json!({"prefix": p.to_string(), "tunnel": name}),
                    RouteTarget::Native { port, next_hop } => {
                        json!({"prefix": p.to_string(), "port": self.port_name(*port), "next_hop": next_hop.to_string()})
                    }
                    RouteTarget::Blackhole => json!({"prefix": p.to_string(), "blackhole": true}),
                })
                .collect(),
        )
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

    /// Where the running snapshot sends a destination.
    pub fn lookup(&self, dst: Ipv4Addr) -> Value {
        let snap = self.snapshots.current();
        let target = snap.routes().lookup(dst).map(|nh| snap.target(nh));
        let what = match target {
            None | Some(Target::Blackhole) => json!({"no_route": true}),
            Some(Target::Tunnel(id)) => match snap.tunnels().get(id) {
                Some(t) => json!({"tunnel": t.config.name}),
                None => json!({"no_route": true}),
            },
            Some(Target::Native { port, .. }) => json!({"port": self.port_name(port)}),
        };
        json!({"dst": dst.to_string(), "generation": snap.generation(), "via": what})
    }
}
