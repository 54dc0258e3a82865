//! Route changes to a running configuration, each checked on its own.
//!
//! A configuration that passed [`validate`](crate::validate) stays valid after a change to
//! its routes exactly when the changed routes pass the rules that involve them: each route's
//! own fields and target (the same code that checks a file's routes), its prefix claimed by
//! no tunnel, and no tunnel's `remote` routed into a tunnel by longest match. Only a route
//! whose prefix holds a remote can change which route holds that remote, so the last rule
//! looks at the remotes inside the changed prefixes and nothing else. The cost of a change
//! follows the change, not the size of the table: what the rules need of the rest (our
//! addresses, the ports and tunnels by name, the tunnels' prefixes and remotes) is indexed
//! once per configuration and kept until something other than a route changes.
//!
//! Errors are the ones validating the whole file would give: the same fields (`route[3]
//! .tunnel`, `tunnel[1] "b".remote`), values and words. A batch is applied in order and
//! checked as a whole; on any error nothing of it stays ([`ConfigDocument::edit_routes`]
//! undoes what it did, in reverse, to the exact order the routes had).

use crate::model::{RouteConfig, RouteTarget, ValidatedConfig};
use crate::schema::RawRoute;
use crate::validate::{port_path, tunnel_path, NameIndex, Validator};
use crate::{ConfigDocument, ConfigError};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// One route change, as the control API gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteEdit {
    /// Add a `[[route]]` table (JSON, TOML field names), or replace the route for its prefix.
    Set(serde_json::Value),
    /// Remove the route for this prefix.
    Remove(String),
}

/// Why a batch of route changes was refused (nothing of it applied).
#[derive(Debug)]
pub struct EditError {
    /// The change that is wrong (counted from 0), or `None` where the changes together
    /// break a rule (a tunnel's remote routed into a tunnel).
    pub change: Option<usize>,
    pub error: ConfigError,
}

/// What an applied batch changed, in order: each prefix with its new target (`None`:
/// removed). Keep it to undo the batch with [`ConfigDocument::undo_routes`].
#[derive(Debug)]
pub struct RouteEdits {
    pub changes: Vec<(Ipv4Net, Option<RouteTarget>)>,
    undo: Vec<Undo>,
}

/// One step of a batch, as it can be taken back.
#[derive(Debug)]
enum Undo {
    /// A route was appended.
    Pushed,
    /// Route `i` was replaced; this was it.
    Replaced(usize, Box<(RawRoute, RouteConfig)>),
    /// Route `i` was removed and the last route moved into its place.
    SwapRemoved(usize, Box<(RawRoute, RouteConfig)>),
}

/// What route changes are checked against: the parts of a validated configuration that
/// only changes to something other than routes can change.
#[derive(Debug, Clone)]
pub(crate) struct RouteContext {
    /// Our addresses, each with the field that configures it.
    ours: HashMap<Ipv4Addr, String>,
    ports: HashMap<String, usize>,
    /// Each port's addresses, by index (a connected route asks ARP from one).
    port_addrs: Vec<Vec<Ipv4Addr>>,
    tunnels: HashMap<String, usize>,
    /// The tunnels' prefixes: the field that claims each, and the tunnel.
    claims: HashMap<Ipv4Net, (String, usize)>,
    /// The tunnels' remotes (host order), each with the tunnels it is the remote of.
    remotes: BTreeMap<u32, Vec<usize>>,
}

impl RouteContext {
    fn new(cfg: &ValidatedConfig) -> Self {
        let mut ours = HashMap::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let path = port_path(i, &p.name);
            for (k, &a) in p.addresses.iter().enumerate() {
                ours.insert(a, format!("{path}.addresses[{k}]"));
            }
        }
        let mut claims = HashMap::new();
        let mut remotes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, t) in cfg.tunnels.iter().enumerate() {
            let path = tunnel_path(i, &t.name);
            if let Some(link) = t.link {
                ours.insert(link.addr(), format!("{path}.link"));
            }
            for (k, &net) in t.prefixes.iter().enumerate() {
                claims.insert(net, (format!("{path}.prefixes[{k}]"), i));
            }
            if t.outer6.is_none() {
                remotes.entry(u32::from(t.remote)).or_default().push(i);
            }
        }
        RouteContext {
            ours,
            ports: cfg
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), i))
                .collect(),
            port_addrs: cfg.ports.iter().map(|p| p.addresses.clone()).collect(),
            tunnels: cfg
                .tunnels
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            claims,
            remotes,
        }
    }
}

impl NameIndex for HashMap<String, usize> {
    fn index_of(&self, name: &str) -> Option<usize> {
        self.get(name).copied()
    }
}

fn key(r: &RawRoute) -> Option<Ipv4Net> {
    r.prefix.parse().ok()
}

impl ConfigDocument {
    /// Apply route changes to this document and to `cfg`, the configuration it validated
    /// to (kept in step: route `i` of one is route `i` of the other), checking only what
    /// the changes touch. On error nothing changes.
    pub fn edit_routes(
        &mut self,
        cfg: &mut ValidatedConfig,
        edits: &[RouteEdit],
    ) -> Result<RouteEdits, EditError> {
        let mut done = RouteEdits {
            changes: Vec::with_capacity(edits.len()),
            undo: Vec::with_capacity(edits.len()),
        };
        for (i, edit) in edits.iter().enumerate() {
            if let Err(error) = self.edit_route(cfg, edit, &mut done) {
                self.undo_routes(cfg, done);
                return Err(EditError {
                    change: Some(i),
                    error,
                });
            }
        }
        if let Err(error) = self.remotes_stay_out_of_tunnels(cfg, &done.changes) {
            self.undo_routes(cfg, done);
            return Err(EditError {
                change: None,
                error,
            });
        }
        Ok(done)
    }

    /// Take back a batch [`ConfigDocument::edit_routes`] applied (the last one applied
    /// first), leaving the routes in exactly their former order.
    pub fn undo_routes(&mut self, cfg: &mut ValidatedConfig, edits: RouteEdits) {
        for step in edits.undo.into_iter().rev() {
            match step {
                Undo::Pushed => {
                    if let Some(r) = self.raw.routes.pop() {
                        if let Some(k) = key(&r) {
                            self.route_index_mut().remove(&k);
                        }
                    }
                    cfg.routes.pop();
                }
                Undo::Replaced(i, old) => {
                    let (raw, validated) = *old;
                    self.raw.routes[i] = raw;
                    cfg.routes[i] = validated;
                }
                Undo::SwapRemoved(i, old) => {
                    let (raw, validated) = *old;
                    let k = key(&raw);
                    if i == self.raw.routes.len() {
                        self.raw.routes.push(raw);
                        cfg.routes.push(validated);
                    } else {
                        let moved = std::mem::replace(&mut self.raw.routes[i], raw);
                        let moved_key = key(&moved);
                        self.raw.routes.push(moved);
                        let moved_cfg = std::mem::replace(&mut cfg.routes[i], validated);
                        cfg.routes.push(moved_cfg);
                        let last = self.raw.routes.len() - 1;
                        if let Some(m) = moved_key {
                            self.route_index_mut().insert(m, last);
                        }
                    }
                    if let Some(k) = k {
                        self.route_index_mut().insert(k, i);
                    }
                }
            }
        }
    }

    fn route_context(&mut self, cfg: &ValidatedConfig) -> &RouteContext {
        self.route_context
            .get_or_insert_with(|| Box::new(RouteContext::new(cfg)))
    }

    fn edit_route(
        &mut self,
        cfg: &mut ValidatedConfig,
        edit: &RouteEdit,
        done: &mut RouteEdits,
    ) -> Result<(), ConfigError> {
        match edit {
            RouteEdit::Set(table) => {
                let r: RawRoute =
                    crate::document::from_json(self.origin(), "route", table.clone())?;
                let len = self.raw.routes.len();
                let at = key(&r).and_then(|k| self.route_index_mut().get(&k).copied());
                let origin = self.origin().to_owned();
                let ctx = self.route_context(cfg);
                let v = Validator::for_routes(&origin, &ctx.ours);
                let i = at.unwrap_or(len);
                let route = v.route(i, &r, &ctx.ports, &ctx.tunnels, &ctx.port_addrs)?;
                if let Some((field, _)) = ctx.claims.get(&route.prefix) {
                    return Err(v.error(
                        format!("route[{i}].prefix"),
                        route.prefix,
                        format!("is already claimed by {field}"),
                    ));
                }
                done.changes
                    .push((route.prefix, Some(route.target.clone())));
                match at {
                    Some(i) => {
                        let raw = std::mem::replace(&mut self.raw.routes[i], r);
                        let validated = std::mem::replace(&mut cfg.routes[i], route);
                        done.undo
                            .push(Undo::Replaced(i, Box::new((raw, validated))));
                    }
                    None => {
                        let prefix = route.prefix;
                        self.raw.routes.push(r);
                        cfg.routes.push(route);
                        self.route_index_mut().insert(prefix, len);
                        done.undo.push(Undo::Pushed);
                    }
                }
                Ok(())
            }
            RouteEdit::Remove(prefix) => {
                let (i, net) = self.route_position(prefix)?;
                let raw = self.raw.routes.swap_remove(i);
                let validated = cfg.routes.swap_remove(i);
                self.route_index_mut().remove(&net);
                if let Some(moved) = self.raw.routes.get(i).and_then(key) {
                    self.route_index_mut().insert(moved, i);
                }
                done.changes.push((validated.prefix, None));
                done.undo
                    .push(Undo::SwapRemoved(i, Box::new((raw, validated))));
                Ok(())
            }
        }
    }

    /// No tunnel's remote inside a changed prefix is now routed into a tunnel.
    fn remotes_stay_out_of_tunnels(
        &mut self,
        cfg: &ValidatedConfig,
        changes: &[(Ipv4Net, Option<RouteTarget>)],
    ) -> Result<(), ConfigError> {
        let origin = self.origin().to_owned();
        // Build both lazily first: the checks below only read.
        self.route_index_mut();
        self.route_context(cfg);
        let (Some(index), Some(ctx)) = (self.route_index.as_ref(), self.route_context.as_deref())
        else {
            return Ok(());
        };
        let v = Validator::for_routes(&origin, &ctx.ours);
        for (net, _) in changes {
            let range = u32::from(net.network())..=u32::from(net.broadcast());
            for (&remote, tunnels) in ctx.remotes.range(range) {
                let remote = Ipv4Addr::from(remote);
                let held = (0..=32u8).rev().find_map(|len| {
                    let n = Ipv4Net::new(remote, len).ok()?.trunc();
                    if let Some(&j) = index.get(&n) {
                        let into = match &cfg.routes.get(j)?.target {
                            RouteTarget::Tunnel(t) => Some(t.index),
                            _ => None,
                        };
                        return Some((n, format!("route[{j}].prefix"), into));
                    }
                    ctx.claims
                        .get(&n)
                        .map(|(field, t)| (n, field.clone(), Some(*t)))
                });
                if let Some((n, field, Some(into))) = held {
                    let i = tunnels[0];
                    return Err(v.remote_through_tunnel(
                        i,
                        &cfg.tunnels[i],
                        n,
                        &field,
                        &cfg.tunnels[into].name,
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = r#"
        [[port]]
        name = "p0"
        device = "0"
        roles = ["client"]
        addresses = ["192.0.2.1"]
        [[tunnel]]
        name = "a"
        mode = "gre"
        local = "192.0.2.1"
        remote = "198.51.100.1"
        port = "p0"
        prefixes = ["10.1.0.0/16"]
        [[tunnel]]
        name = "b"
        mode = "gre"
        local = "192.0.2.1"
        remote = "198.51.100.2"
        next_hop = "198.51.100.254"
        port = "p0"
        prefixes = ["10.2.0.0/16"]
        [[route]]
        prefix = "10.50.0.0/16"
        tunnel = "a"
        [[route]]
        prefix = "10.51.0.0/16"
        blackhole = true
        [[route]]
        prefix = "10.52.0.0/16"
        port = "p0"
        next_hop = "198.51.100.9"
    "#;

    fn set(v: serde_json::Value) -> RouteEdit {
        RouteEdit::Set(v)
    }

    /// The document's text validated from scratch: what the incremental edits must equal.
    fn revalidated(doc: &ConfigDocument) -> Result<ValidatedConfig, ConfigError> {
        doc.validate()
    }

    #[test]
    fn accepted_edits_equal_a_whole_validation_and_keep_the_order() {
        let (mut doc, mut cfg) = ConfigDocument::parse(BASE, "t.toml").unwrap();
        let edits = [
            set(json!({"prefix": "10.60.0.0/16", "tunnel": "b"})),
            RouteEdit::Remove("10.50.0.0/16".into()), // the last route moves into slot 0
            set(json!({"prefix": "10.51.0.0/16", "unreachable": true})), // replaced in place
            set(json!({"prefix": "10.61.0.0/16", "port": "p0", "next_hop": "198.51.100.7"})),
        ];
        let done = doc.edit_routes(&mut cfg, &edits).unwrap();
        assert_eq!(done.changes.len(), 4);
        assert_eq!(done.changes[1], ("10.50.0.0/16".parse().unwrap(), None));
        assert_eq!(revalidated(&doc).unwrap(), cfg);
        let order: Vec<String> = cfg.routes.iter().map(|r| r.prefix.to_string()).collect();
        assert_eq!(
            order,
            [
                "10.60.0.0/16",
                "10.51.0.0/16",
                "10.52.0.0/16",
                "10.61.0.0/16"
            ]
        );
    }

    #[test]
    fn a_refused_batch_leaves_the_routes_exactly_as_they_were() {
        let (mut doc, mut cfg) = ConfigDocument::parse(BASE, "t.toml").unwrap();
        let before = cfg.clone();
        let raw_before = doc.raw.routes.clone();
        let edits = [
            RouteEdit::Remove("10.50.0.0/16".into()),
            set(json!({"prefix": "10.51.0.0/16", "tunnel": "b"})),
            set(json!({"prefix": "10.70.0.0/16", "tunnel": "a"})),
            RouteEdit::Remove("10.52.0.0/16".into()),
            set(json!({"prefix": "10.71.0.0/16", "tunnel": "nope"})),
        ];
        let e = doc.edit_routes(&mut cfg, &edits).unwrap_err();
        assert_eq!(e.change, Some(4));
        // The whole file's validation names the same field and words: three routes, less
        // two removed, plus one added, make the new one the third (index 2).
        assert_eq!(
            e.error.to_string(),
            "t.toml: route[2].tunnel: \"nope\" is not a configured tunnel"
        );
        assert_eq!(cfg, before);
        assert_eq!(doc.raw.routes, raw_before);
        // The index follows: every prefix is found where it is.
        let done = doc
            .edit_routes(&mut cfg, &[RouteEdit::Remove("10.52.0.0/16".into())])
            .unwrap();
        assert_eq!(done.changes.len(), 1);
        assert_eq!(revalidated(&doc).unwrap(), cfg);
    }

    #[test]
    fn each_rule_is_the_files_rule() {
        let (mut doc, mut cfg) = ConfigDocument::parse(BASE, "t.toml").unwrap();
        let cases = [
            (
                json!({"prefix": "10.1.0.0/16", "blackhole": true}),
                "route[3].prefix: 10.1.0.0/16 is already claimed by tunnel[0] \"a\".prefixes[0]",
            ),
            (
                json!({"prefix": "10.9.0.1/24", "blackhole": true}),
                "route[3].prefix: \"10.9.0.1/24\" has host bits set (the prefix is 10.9.0.0/24)",
            ),
            (
                json!({"prefix": "10.9.0.0/24", "port": "p0", "next_hop": "192.0.2.1"}),
                "route[3].next_hop: 192.0.2.1 is our own address (port[0] \"p0\".addresses[0])",
            ),
            (
                json!({"prefix": "10.9.0.0/24", "port": "p9", "next_hop": "198.51.100.9"}),
                "route[3].port: \"p9\" is not a configured port",
            ),
            (
                json!({"prefix": "10.9.0.0/24", "tunnel": "a", "blackhole": true}),
                "route[3]: has 2 targets (tunnel, blackhole)",
            ),
            (
                json!({"prefix": "198.51.100.0/24", "tunnel": "a"}),
                "tunnel[0] \"a\".remote: 198.51.100.1 is routed into tunnel \"a\" by \
                 198.51.100.0/24 (route[3].prefix)",
            ),
        ];
        for (table, want) in cases {
            let mut text = BASE.to_owned();
            text.push_str(&format!(
                "\n[[route]]\n{}",
                table
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect::<String>()
            ));
            let whole = crate::parse(&text, "t.toml").unwrap_err().to_string();
            let e = doc.edit_routes(&mut cfg, &[set(table)]).unwrap_err();
            let got = e.error.to_string();
            assert!(whole.contains(want), "the file says {whole}");
            assert!(got.contains(want), "an edit says {got}, not {want}");
        }
        assert_eq!(revalidated(&doc).unwrap(), cfg, "nothing applied");
    }

    #[test]
    fn remotes_are_checked_where_a_change_moves_their_longest_match() {
        let text = format!("{BASE}\n[[route]]\nprefix = \"198.51.100.0/24\"\nblackhole = true\n");
        let (mut doc, mut cfg) = ConfigDocument::parse(&text, "t.toml").unwrap();
        // A covering route into a tunnel is fine while the /24 holds the remotes...
        doc.edit_routes(
            &mut cfg,
            &[set(json!({"prefix": "198.51.0.0/16", "tunnel": "b"}))],
        )
        .unwrap();
        // ... and removing the /24 would expose them to it.
        let e = doc
            .edit_routes(&mut cfg, &[RouteEdit::Remove("198.51.100.0/24".into())])
            .unwrap_err();
        assert_eq!(e.change, None);
        assert!(
            e.error
                .to_string()
                .contains("is routed into tunnel \"b\" by 198.51.0.0/16"),
            "{}",
            e.error
        );
        // Replaced in the same batch by a route that is not into a tunnel: fine.
        doc.edit_routes(
            &mut cfg,
            &[
                RouteEdit::Remove("198.51.100.0/24".into()),
                set(json!({"prefix": "198.51.100.0/25", "port": "p0", "next_hop": "198.51.100.200"})),
            ],
        )
        .unwrap();
        assert_eq!(revalidated(&doc).unwrap(), cfg);
    }
}
