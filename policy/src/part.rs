//! An edge's part of the policy: the tunnels of the clients it hosts and the routes to
//! the clients hosted elsewhere, written as the appliance's control API takes them
//! (the configuration file's field names).
//!
//! - A client whose **primary** is this edge: its tunnel, with the client's `prefixes`
//!   routed into it.
//! - A client whose **backup** is this edge: its tunnel too (the client router keeps it
//!   up, its BGP session and probes run), accepting the client's prefixes as inner
//!   sources (`extra_sources`) but routing them across the core to the primary edge:
//!   traffic for a client goes through the edge preferred for it
//!   (`[preferences]`), in both directions, while the primary is in the policy.
//! - A client hosted elsewhere: each of its prefixes routed natively out of this edge's
//!   core port to the primary edge's `core_address`.
//!
//! With `core_routing = "bgp"` the edges learn the clients hosted elsewhere from each
//! other by iBGP instead: no routes across the core; each tunnel carries the local
//! preference of its placement (`local_pref`); a client with a session has its
//! `prefixes` at its backup too (what the backup's FRR accepts from it) and `fallback`,
//! so that what BGP selects routes its prefixes at every edge.
//!
//! Across the core, packets travel natively (not encapsulated edge to edge): the core is
//! the carrier's own network, and the receiving edge's source check stays the client's
//! own tunnel's (an edge-to-edge tunnel would have to accept every remote client's
//! sources, which the appliance refuses as two owners of one source).

use crate::error::PolicyError;
use crate::model::{CoreRouting, Policy, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What one edge's appliance runs of the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgePart {
    /// Tunnels by name: each a `[[tunnel]]` table as JSON.
    pub tunnels: BTreeMap<String, Value>,
    /// Routes by prefix: each a `[[route]]` table as JSON.
    pub routes: BTreeMap<String, Value>,
}

impl EdgePart {
    /// How many tunnels and routes.
    pub fn summary(&self) -> String {
        format!(
            "{} tunnels, {} routes",
            self.tunnels.len(),
            self.routes.len()
        )
    }
}

/// The part of edge `e` (an index into `policy.edges`).
pub fn part(policy: &Policy, e: usize) -> EdgePart {
    let edge = &policy.edges[e];
    let mut out = EdgePart::default();
    for c in &policy.clients {
        let primary = c.primary();
        let here = c.placement.iter().find(|p| p.edge == e);
        let mut to_primary = || {
            let via = &policy.edges[primary.edge];
            for p in &c.prefixes {
                out.routes.insert(
                    p.to_string(),
                    json!({"prefix": p.to_string(), "port": edge.core_port, "next_hop": via.core_address.to_string()}),
                );
            }
        };
        let bgp = policy.core_routing == CoreRouting::Bgp;
        let Some(p) = here else {
            if !bgp {
                to_primary();
            }
            continue;
        };
        let mut t = serde_json::Map::new();
        t.insert("name".into(), json!(c.name));
        t.insert("mode".into(), json!(c.mode.to_string()));
        t.insert("local".into(), json!(edge.tunnel_endpoint.to_string()));
        t.insert(
            "remote".into(),
            json!(p.remote.unwrap_or(c.remote).to_string()),
        );
        if let Some(k) = c.key {
            t.insert("key".into(), json!(k));
        }
        if c.sequence {
            t.insert("sequence".into(), json!(true));
        }
        if c.checksum {
            t.insert("checksum".into(), json!(true));
        }
        t.insert("port".into(), json!(edge.client_port));
        if let Some(m) = c.mtu {
            t.insert("mtu".into(), json!(m));
        }
        let strings = |v: &[ipnet::Ipv4Net]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut sources = strings(&c.extra_sources);
        match p.role {
            Role::Primary => {
                t.insert("prefixes".into(), json!(strings(&c.prefixes)));
            }
            // Across the core by BGP, a backup with a session accepts the client's
            // announcements (its prefixes bound them), at the backup's preference.
            Role::Backup if bgp && c.asn.is_some() => {
                t.insert("prefixes".into(), json!(strings(&c.prefixes)));
            }
            Role::Backup => {
                sources.splice(0..0, strings(&c.prefixes));
            }
        }
        if !sources.is_empty() {
            t.insert("extra_sources".into(), json!(sources));
        }
        if let Some(link) = p.link {
            t.insert("link".into(), json!(link.to_string()));
        }
        if let Some(asn) = c.asn {
            t.insert("asn".into(), json!(asn));
        }
        if let Some(bfd) = c.bfd {
            t.insert("bfd".into(), json!(bfd));
        }
        if c.probe {
            t.insert("probe".into(), json!(true));
        }
        if bgp {
            let pref = match p.role {
                Role::Primary => policy.preferences.primary_local_pref,
                Role::Backup => policy.preferences.backup_local_pref,
            };
            t.insert("local_pref".into(), json!(pref));
            if c.asn.is_some() {
                // Its prefixes are routed from what BGP selects (zebra's routes), never
                // by the tunnel itself: the backup's go to the primary while it has them.
                t.insert("fallback".into(), json!(true));
            }
        }
        out.tunnels.insert(c.name.clone(), Value::Object(t));
        if p.role == Role::Backup && !bgp {
            to_primary();
        }
    }
    out
}

/// One change of the control API (`add_tunnel`, `remove_tunnel`, `set_route`,
/// `remove_route`).
pub type Op = Value;

/// The changes that take an appliance from `from` to `to`, as one batch: removals
/// first, then what is added or replaced (a tunnel that changed is removed and added
/// again in the same batch; a route that changed is set again). What is equal in both is
/// not touched.
pub fn changes(from: &EdgePart, to: &EdgePart) -> Vec<Op> {
    let mut ops = Vec::new();
    for prefix in from.routes.keys().filter(|p| !to.routes.contains_key(*p)) {
        ops.push(json!({"op": "remove_route", "prefix": prefix}));
    }
    for (name, t) in &from.tunnels {
        if to.tunnels.get(name) != Some(t) {
            ops.push(json!({"op": "remove_tunnel", "name": name}));
        }
    }
    for (name, t) in &to.tunnels {
        if from.tunnels.get(name) != Some(t) {
            ops.push(json!({"op": "add_tunnel", "tunnel": t}));
        }
    }
    for (prefix, r) in &to.routes {
        if from.routes.get(prefix) != Some(r) {
            ops.push(json!({"op": "set_route", "route": r}));
        }
    }
    ops
}

/// Check every edge's part (or only one's) against the appliance's own rules: each is written, with the
/// two ports the edge names, as a configuration file and validated by
/// `pipeline-config`, so a policy that an appliance would refuse is refused here, whole.
pub(crate) fn check_parts(
    policy: &Policy,
    origin: &str,
    only: Option<&str>,
) -> Result<(), PolicyError> {
    for (e, edge) in policy.edges.iter().enumerate() {
        if only.is_some_and(|name| name != edge.name) {
            continue;
        }
        let text = edge_config(policy, e);
        if let Err(err) = pipeline_config::parse(&text, "part") {
            let err = err.to_string();
            let err = err.strip_prefix("part: ").unwrap_or(&err);
            return Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                field: format!("edge[{e}] {:?}", edge.name),
                value: None,
                problem: format!("the tunnels and routes it would run are refused by the appliance's rules: {err}"),
            });
        }
    }
    Ok(())
}

/// A configuration file that runs edge `e`'s part on two ports named as the edge names
/// them (one port where they are one), for validation only.
pub fn edge_config(policy: &Policy, e: usize) -> String {
    let edge = &policy.edges[e];
    let part = part(policy, e);
    let mut doc = toml::Table::new();
    let mut ports = Vec::new();
    let port = |name: &str, roles: &[&str], addresses: Vec<String>| {
        let mut p = toml::Table::new();
        p.insert("name".into(), name.into());
        p.insert("device".into(), format!("dev-{name}").into());
        p.insert(
            "roles".into(),
            toml::Value::Array(roles.iter().map(|r| (*r).into()).collect()),
        );
        p.insert(
            "addresses".into(),
            toml::Value::Array(addresses.into_iter().map(Into::into).collect()),
        );
        p.insert("mtu".into(), 9000.into());
        toml::Value::Table(p)
    };
    if edge.core_port == edge.client_port {
        let mut addresses = vec![edge.tunnel_endpoint.to_string()];
        if edge.core_address != edge.tunnel_endpoint {
            addresses.push(edge.core_address.to_string());
        }
        ports.push(port(&edge.client_port, &["client", "core"], addresses));
    } else {
        ports.push(port(
            &edge.client_port,
            &["client"],
            vec![edge.tunnel_endpoint.to_string()],
        ));
        let mut addresses = vec![edge.core_address.to_string()];
        if edge.core_address == edge.tunnel_endpoint {
            addresses.clear();
        }
        ports.push(port(&edge.core_port, &["core"], addresses));
    }
    doc.insert("port".into(), toml::Value::Array(ports));
    let mut bgp = toml::Table::new();
    bgp.insert("asn".into(), i64::from(policy.asn).into());
    doc.insert("bgp".into(), toml::Value::Table(bgp));
    let to_toml = |v: &Value| -> toml::Value {
        toml::Value::try_from(v).unwrap_or_else(|_| toml::Value::Table(toml::Table::new()))
    };
    doc.insert(
        "tunnel".into(),
        toml::Value::Array(part.tunnels.values().map(to_toml).collect()),
    );
    doc.insert(
        "route".into(),
        toml::Value::Array(part.routes.values().map(to_toml).collect()),
    );
    toml::to_string(&doc).unwrap_or_default()
}
