//! `backbone-policy audit paths`: which edges each client pair's traffic crosses, in
//! each direction, by the edges' live tables; pairs whose forward and return traffic
//! cross different edges are flagged.
//!
//! Each agent publishes what its edge forwards ([`Forwarding`], key
//! `PREFIX/forwarding/EDGE`, under its report's lease): for every prefix of the
//! policy's clients, where its appliance sends the prefix's first address (its
//! `lookup`; a dry-run agent gives what it would apply), and the state of each tunnel
//! it runs. The audit reads those from etcd, so it runs wherever etcd is reachable,
//! without the edges' control sockets (local Unix sockets on each edge host), and sees
//! every edge at one etcd revision.
//!
//! A client's traffic enters the backbone at its primary edge while its tunnel is up
//! there, else at its backup edge while up there (the preferences: a dual-homed
//! client's router prefers its primary). Across the core by BGP (`core_routing =
//! "bgp"`), a client with a session counts as up at an edge only while that edge routes
//! the client's prefixes into its tunnel: the edge then hears them on the session. From
//! there each edge's table decides: into the
//! destination client's tunnel (delivered; that tunnel must be up), or across the core
//! to the edge with that `core_address` (followed), or anything else (broken: no route,
//! a drop, another client's tunnel, a next hop outside the backbone, a loop, an edge
//! without a report).

use crate::model::{CoreRouting, Policy};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What one edge forwards, as its agent read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarding {
    /// The policy revision the agent last made (its tables hold at least that).
    pub revision: i64,
    /// The appliance's generation read (absent for a dry run).
    pub generation: Option<u64>,
    /// Each tunnel the edge runs, by name, and its state (`up`, `unresolved`,
    /// `link-down`, a probed tunnel's health; `dry-run` without an appliance).
    pub tunnels: BTreeMap<String, String>,
    /// For each client prefix of the policy, where the edge sends it:
    /// `{"tunnel": NAME}`, `{"port": PORT, "next_hop": ADDRESS}`, `{"drop": KIND}`, or
    /// `null` (no route).
    pub routes: BTreeMap<String, Value>,
}

/// The states in which a client router's traffic comes through a tunnel.
fn usable(state: &str) -> bool {
    matches!(state, "up" | "dry-run")
}

/// A route's target as [`Forwarding::routes`] gives it, from a `[[route]]` table (or
/// `list_routes` entry).
fn target(route: &Value) -> Value {
    if let Some(t) = route["tunnel"].as_str() {
        json!({"tunnel": t})
    } else if let (Some(p), Some(n)) = (route["port"].as_str(), route["next_hop"].as_str()) {
        json!({"port": p, "next_hop": n})
    } else {
        let kind = ["blackhole", "unreachable", "prohibit"]
            .into_iter()
            .find(|k| route[*k] == Value::Bool(true))
            .unwrap_or("unknown");
        json!({"drop": kind})
    }
}

/// Where each of `prefixes` goes by the longest of `routes` (each a `[[route]]` table,
/// or a tunnel's prefix as `{"prefix": P, "tunnel": NAME}`) that holds all of it.
pub fn lookup(routes: &[Value], prefixes: &[Ipv4Net]) -> BTreeMap<String, Value> {
    let table: std::collections::HashMap<Ipv4Net, &Value> = routes
        .iter()
        .filter_map(|r| Some((r["prefix"].as_str()?.parse::<Ipv4Net>().ok()?.trunc(), r)))
        .collect();
    prefixes
        .iter()
        .map(|p| {
            let best = (0..=p.prefix_len())
                .rev()
                .filter_map(|len| Ipv4Net::new(p.network(), len).ok())
                .find_map(|net| table.get(&net.trunc()));
            (p.to_string(), best.map_or(Value::Null, |r| target(r)))
        })
        .collect()
}

/// One direction of a pair: the edges crossed, in order, or why the traffic does not
/// arrive.
pub type Path = Result<Vec<String>, String>;

/// An ordered client pair: `from`'s traffic to `to` (forward) and `to`'s back (return).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub from: String,
    pub to: String,
    pub forward: Path,
    pub back: Path,
}

impl Pair {
    /// Both directions arrive, and the return crosses the forward's edges backwards.
    pub fn symmetric(&self) -> bool {
        match (&self.forward, &self.back) {
            (Ok(f), Ok(b)) => f.iter().eq(b.iter().rev()),
            _ => false,
        }
    }

    /// Some direction does not arrive.
    pub fn broken(&self) -> bool {
        self.forward.is_err() || self.back.is_err()
    }

    /// `symmetric`, `asymmetric` or `broken`.
    pub fn verdict(&self) -> &'static str {
        if self.broken() {
            "broken"
        } else if self.symmetric() {
            "symmetric"
        } else {
            "asymmetric"
        }
    }

    /// As JSON: `forward` and `return` the edges crossed (`null` when broken, and
    /// `forward_broken` or `return_broken` says why), and the verdict.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"from": self.from, "to": self.to, "verdict": self.verdict()});
        for (key, path) in [("forward", &self.forward), ("return", &self.back)] {
            match path {
                Ok(edges) => v[key] = json!(edges),
                Err(e) => {
                    v[key] = Value::Null;
                    v[format!("{key}_broken")] = json!(e);
                }
            }
        }
        v
    }

    /// One line for an operator.
    pub fn line(&self) -> String {
        let show = |p: &Path| match p {
            Ok(edges) => edges.join(" > "),
            Err(e) => format!("BROKEN ({e})"),
        };
        let verdict = match self.verdict() {
            "symmetric" => "symmetric".to_owned(),
            other => other.to_uppercase(),
        };
        format!(
            "{} -> {}: forward {}; return {}: {verdict}",
            self.from,
            self.to,
            show(&self.forward),
            show(&self.back)
        )
    }
}

/// The edge where `client`'s traffic enters: its primary while its tunnel is up there,
/// else its backup while up there.
fn ingress(
    policy: &Policy,
    c: usize,
    tables: &BTreeMap<String, Forwarding>,
) -> Result<usize, String> {
    let client = &policy.clients[c];
    let bgp_session = policy.core_routing == CoreRouting::Bgp && client.asn.is_some();
    let mut order: Vec<_> = client.placement.iter().collect();
    order.sort_by_key(|p| p.role != crate::model::Role::Primary);
    let mut seen = Vec::new();
    for p in order {
        let edge = &policy.edges[p.edge].name;
        match tables.get(edge).map(|t| t.tunnels.get(&client.name)) {
            // Across the core by BGP, a client with a session sends where its session is
            // up: there the edge hears the client's own announcement, which it prefers to
            // anything across the core, and routes its prefixes into its tunnel.
            Some(Some(state))
                if usable(state)
                    && bgp_session
                    && !routes_into(&tables[edge], &client.prefixes, &client.name) =>
            {
                seen.push(format!("its session is down at {edge}"));
            }
            Some(Some(state)) if usable(state) => return Ok(p.edge),
            Some(Some(state)) => seen.push(format!("{state} at {edge}")),
            Some(None) => seen.push(format!("not run at {edge}")),
            None => seen.push(format!("{edge} has no report")),
        }
    }
    Err(format!(
        "{}'s tunnel is up at no edge: {}",
        client.name,
        seen.join(", ")
    ))
}

/// Whether `table` routes the first of `prefixes` into tunnel `name`.
fn routes_into(table: &Forwarding, prefixes: &[Ipv4Net], name: &str) -> bool {
    prefixes.first().is_some_and(|p| {
        table
            .routes
            .get(&p.to_string())
            .is_some_and(|r| r["tunnel"].as_str() == Some(name))
    })
}

/// The edges traffic entering at edge `at` for `prefix` of client `to` crosses.
fn trace(
    policy: &Policy,
    tables: &BTreeMap<String, Forwarding>,
    mut at: usize,
    to: usize,
    prefix: &Ipv4Net,
) -> Path {
    let dest = &policy.clients[to].name;
    let mut path: Vec<String> = Vec::new();
    loop {
        let edge = &policy.edges[at].name;
        if path.contains(edge) {
            path.push(edge.clone());
            return Err(format!("{prefix} loops: {}", path.join(" > ")));
        }
        path.push(edge.clone());
        let table = tables
            .get(edge)
            .ok_or_else(|| format!("{edge} has no report"))?;
        let hop = table
            .routes
            .get(&prefix.to_string())
            .unwrap_or(&Value::Null);
        if let Some(t) = hop["tunnel"].as_str() {
            if t != dest {
                return Err(format!(
                    "{edge} sends {prefix} into tunnel {t}, not {dest}'s"
                ));
            }
            return match table.tunnels.get(t) {
                Some(state) if usable(state) => Ok(path),
                Some(state) => Err(format!(
                    "{edge} sends {prefix} into {dest}'s tunnel, which is {state}"
                )),
                None => Err(format!(
                    "{edge} sends {prefix} into {dest}'s tunnel, which it does not run"
                )),
            };
        }
        if let Some(next) = hop["next_hop"].as_str() {
            match policy
                .edges
                .iter()
                .position(|e| e.core_address.to_string() == next)
            {
                Some(e) => {
                    at = e;
                    continue;
                }
                None => {
                    return Err(format!(
                        "{edge} sends {prefix} to {next}, no edge's core address"
                    ))
                }
            }
        }
        return Err(match hop["drop"].as_str() {
            Some(kind) => format!("{edge} drops {prefix} ({kind} route)"),
            None => format!("{edge} has no route for {prefix}"),
        });
    }
}

/// The edges traffic entering at edge `at` for client `to` crosses: the same for each
/// of `to`'s prefixes, or broken.
fn path(policy: &Policy, tables: &BTreeMap<String, Forwarding>, at: usize, to: usize) -> Path {
    let mut first: Option<(Ipv4Net, Vec<String>)> = None;
    for p in &policy.clients[to].prefixes {
        let edges = trace(policy, tables, at, to, p)?;
        match &first {
            None => first = Some((*p, edges)),
            Some((q, e)) if *e != edges => {
                return Err(format!(
                    "{q} crosses {} but {p} crosses {}",
                    e.join(" > "),
                    edges.join(" > ")
                ))
            }
            Some(_) => {}
        }
    }
    first
        .map(|(_, e)| e)
        .ok_or_else(|| format!("{} has no prefixes", policy.clients[to].name))
}

/// Every ordered pair of distinct clients, by the edges' tables. A path depends only
/// on where the traffic enters and on its destination: each is followed once.
pub fn audit(policy: &Policy, tables: &BTreeMap<String, Forwarding>) -> Vec<Pair> {
    let n = policy.clients.len();
    let ingress: Vec<Result<usize, String>> = (0..n).map(|c| ingress(policy, c, tables)).collect();
    let mut paths: std::collections::HashMap<(usize, usize), Path> =
        std::collections::HashMap::new();
    let mut get = |a: usize, b: usize| -> Path {
        let at = ingress[a].clone()?;
        paths
            .entry((at, b))
            .or_insert_with(|| path(policy, tables, at, b))
            .clone()
    };
    let mut out = Vec::with_capacity(n * n.saturating_sub(1));
    for a in 0..n {
        for b in (0..n).filter(|b| *b != a) {
            out.push(Pair {
                from: policy.clients[a].name.clone(),
                to: policy.clients[b].name.clone(),
                forward: get(a, b),
                back: get(b, a),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::part::part;

    const EXAMPLE: &str = include_str!("../examples/backbone.toml");

    /// Each edge's table as it would run the policy's parts, every tunnel up.
    fn tables(policy: &Policy) -> BTreeMap<String, Forwarding> {
        let prefixes: Vec<Ipv4Net> = policy
            .clients
            .iter()
            .flat_map(|c| c.prefixes.clone())
            .collect();
        policy
            .edges
            .iter()
            .enumerate()
            .map(|(e, edge)| {
                let p = part(policy, e);
                let mut routes: Vec<Value> = p.routes.values().cloned().collect();
                for (name, t) in &p.tunnels {
                    for pre in t["prefixes"].as_array().into_iter().flatten() {
                        routes.push(json!({"prefix": pre, "tunnel": name}));
                    }
                }
                let f = Forwarding {
                    revision: 1,
                    generation: None,
                    tunnels: p
                        .tunnels
                        .keys()
                        .map(|n| (n.clone(), "up".to_owned()))
                        .collect(),
                    routes: lookup(&routes, &prefixes),
                };
                (edge.name.clone(), f)
            })
            .collect()
    }

    fn find<'a>(pairs: &'a [Pair], from: &str, to: &str) -> &'a Pair {
        pairs.iter().find(|p| p.from == from && p.to == to).unwrap()
    }

    fn edges(names: &[&str]) -> Path {
        Ok(names.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn the_example_with_its_dual_homed_client_is_symmetric() {
        let policy = Policy::parse(EXAMPLE, "example").unwrap();
        let pairs = audit(&policy, &tables(&policy));
        assert_eq!(pairs.len(), 12, "4 clients: 4 x 3 ordered pairs");
        assert!(pairs.iter().all(Pair::symmetric), "{pairs:#?}");
        // acme on edge-1, hooli on edge-2 (primary) and edge-1 (backup): both ways
        // through hooli's primary, edge-2.
        let p = find(&pairs, "acme", "hooli");
        assert_eq!(p.forward, edges(&["edge-1", "edge-2"]));
        assert_eq!(p.back, edges(&["edge-2", "edge-1"]));
        assert_eq!(find(&pairs, "acme", "initech").forward, edges(&["edge-1"]));
        assert_eq!(find(&pairs, "globex", "hooli").back, edges(&["edge-2"]));
        assert_eq!(
            find(&pairs, "hooli", "acme").line(),
            "hooli -> acme: forward edge-2 > edge-1; return edge-1 > edge-2: symmetric"
        );
    }

    #[test]
    fn a_backup_edge_that_delivers_locally_is_asymmetric() {
        // edge-1 routes hooli's 10.4/16 into hooli's backup tunnel there, instead of
        // across the core to its primary: acme's traffic to hooli stays on edge-1, the
        // answers come through edge-2.
        let policy = Policy::parse(EXAMPLE, "example").unwrap();
        let mut t = tables(&policy);
        let e1 = t.get_mut("edge-1").unwrap();
        for prefix in ["10.4.0.0/16", "10.44.0.0/16"] {
            e1.routes.insert(prefix.into(), json!({"tunnel": "hooli"}));
        }
        let pairs = audit(&policy, &t);
        let p = find(&pairs, "acme", "hooli");
        assert!(!p.symmetric() && !p.broken(), "{p:?}");
        assert_eq!(p.forward, edges(&["edge-1"]));
        assert_eq!(p.back, edges(&["edge-2", "edge-1"]));
        assert!(p.line().ends_with(": ASYMMETRIC"), "{}", p.line());
        let p = find(&pairs, "initech", "hooli");
        assert!(!p.symmetric() && !p.broken(), "{p:?}");
        // Only one of hooli's prefixes so: its two prefixes take different paths.
        t.get_mut("edge-1").unwrap().routes.insert(
            "10.44.0.0/16".into(),
            json!({"port": "core0", "next_hop": "10.255.0.2"}),
        );
        let pairs = audit(&policy, &t);
        assert_eq!(
            find(&pairs, "acme", "hooli").forward,
            Err("10.4.0.0/16 crosses edge-1 but 10.44.0.0/16 crosses edge-1 > edge-2".into())
        );
        // Pairs without hooli are untouched.
        assert!(find(&pairs, "acme", "globex").symmetric());
    }

    #[test]
    fn a_dual_homed_client_enters_at_its_backup_only_when_its_primary_tunnel_is_down() {
        let policy = Policy::parse(EXAMPLE, "example").unwrap();
        let mut t = tables(&policy);
        t.get_mut("edge-2")
            .unwrap()
            .tunnels
            .insert("hooli".into(), "down".into());
        let pairs = audit(&policy, &t);
        // hooli's answers now enter at edge-1; the others still send to edge-2, where
        // hooli's tunnel is down.
        let p = find(&pairs, "hooli", "acme");
        assert_eq!(p.forward, edges(&["edge-1"]));
        assert_eq!(
            p.back,
            Err("edge-2 sends 10.4.0.0/16 into hooli's tunnel, which is down".into())
        );
    }

    #[test]
    fn across_the_core_by_bgp_a_client_enters_where_its_session_is_up() {
        let text = EXAMPLE.replace("asn = 65000 ", "asn = 65000\ncore_routing = \"bgp\" ");
        let policy = Policy::parse(&text, "example").unwrap();
        assert_eq!(policy.core_routing, CoreRouting::Bgp);
        // hooli's session at edge-2 is up: edge-2 routes hooli's prefixes into its tunnel,
        // edge-1 (the backup) across the core to edge-2, as BGP's preferences select.
        let to_edge = |e: u8| json!({"port": "core0", "next_hop": format!("10.255.0.{e}")});
        let mut t = tables(&policy);
        for p in ["10.4.0.0/16", "10.44.0.0/16"] {
            t.get_mut("edge-2")
                .unwrap()
                .routes
                .insert(p.into(), json!({"tunnel": "hooli"}));
            t.get_mut("edge-1")
                .unwrap()
                .routes
                .insert(p.into(), to_edge(2));
        }
        for p in ["10.1.0.0/16", "10.3.0.0/16"] {
            t.get_mut("edge-2")
                .unwrap()
                .routes
                .insert(p.into(), to_edge(1));
        }
        t.get_mut("edge-1")
            .unwrap()
            .routes
            .insert("10.2.0.0/16".into(), to_edge(2));
        let pairs = audit(&policy, &t);
        assert!(pairs.iter().all(Pair::symmetric), "{pairs:?}");
        assert_eq!(
            find(&pairs, "hooli", "acme").forward,
            edges(&["edge-2", "edge-1"])
        );
        // Its session at edge-2 goes down (its tunnel still up there): BGP moves its
        // prefixes to edge-1, which routes them into its own tunnel, edge-2 across the
        // core. hooli's router sends through edge-1: both ways through edge-1.
        for p in ["10.4.0.0/16", "10.44.0.0/16"] {
            t.get_mut("edge-1")
                .unwrap()
                .routes
                .insert(p.into(), json!({"tunnel": "hooli"}));
            t.get_mut("edge-2")
                .unwrap()
                .routes
                .insert(p.into(), to_edge(1));
        }
        let pairs = audit(&policy, &t);
        assert!(pairs.iter().all(Pair::symmetric), "{pairs:?}");
        let p = find(&pairs, "hooli", "acme");
        assert_eq!(
            (&p.forward, &p.back),
            (&edges(&["edge-1"]), &edges(&["edge-1"]))
        );
        let p = find(&pairs, "globex", "hooli");
        assert_eq!(p.forward, edges(&["edge-2", "edge-1"]));
        assert_eq!(p.back, edges(&["edge-1", "edge-2"]));
    }

    #[test]
    fn loops_missing_routes_and_missing_reports_are_broken() {
        let policy = Policy::parse(EXAMPLE, "example").unwrap();
        let mut t = tables(&policy);
        // edge-1 sends acme's prefix to edge-2, which sends it to edge-1.
        t.get_mut("edge-1").unwrap().routes.insert(
            "10.1.0.0/16".into(),
            json!({"port": "core0", "next_hop": "10.255.0.2"}),
        );
        let pairs = audit(&policy, &t);
        assert_eq!(
            find(&pairs, "globex", "acme").forward,
            Err("10.1.0.0/16 loops: edge-2 > edge-1 > edge-2".into())
        );
        t.get_mut("edge-1")
            .unwrap()
            .routes
            .insert("10.1.0.0/16".into(), Value::Null);
        let pairs = audit(&policy, &t);
        assert_eq!(
            find(&pairs, "initech", "acme").forward,
            Err("edge-1 has no route for 10.1.0.0/16".into())
        );
        t.remove("edge-2");
        let pairs = audit(&policy, &t);
        assert_eq!(
            find(&pairs, "globex", "initech").forward,
            Err("globex's tunnel is up at no edge: edge-2 has no report".into())
        );
        assert_eq!(
            find(&pairs, "initech", "globex").forward,
            Err("edge-2 has no report".into())
        );
    }

    #[test]
    fn lookup_takes_the_longest_route_that_holds_the_whole_prefix() {
        let routes = vec![
            json!({"prefix": "0.0.0.0/0", "port": "inet0", "next_hop": "203.0.113.254"}),
            json!({"prefix": "10.1.0.0/16", "tunnel": "acme"}),
            json!({"prefix": "10.1.5.0/24", "blackhole": true}),
        ];
        let p = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let got = lookup(
            &routes,
            &[
                p("10.1.0.0/16"),
                p("10.1.5.0/24"),
                p("10.2.0.0/16"),
                p("10.0.0.0/8"),
            ],
        );
        assert_eq!(
            got["10.1.0.0/16"],
            json!({"tunnel": "acme"}),
            "a more-specific does not decide it"
        );
        assert_eq!(got["10.1.5.0/24"], json!({"drop": "blackhole"}));
        assert_eq!(
            got["10.2.0.0/16"],
            json!({"port": "inet0", "next_hop": "203.0.113.254"})
        );
        assert_eq!(
            got["10.0.0.0/8"],
            json!({"port": "inet0", "next_hop": "203.0.113.254"})
        );
        assert_eq!(
            lookup(&routes[1..], &[p("10.2.0.0/16")])["10.2.0.0/16"],
            Value::Null
        );
    }
}
